/* catalog: where gpuhunt-format offer catalogs come from.
 *
 * A location is one of
 *   a directory     <dir>/<provider>.csv, read as is (gpuhunt's GPUHUNT_CATALOG_DIR);
 *   a base URL      http(s)://.../v3: GET <base>/<provider>/version (a short text), then
 *                   GET <base>/<provider>/<version>/catalog.zip, a zip holding
 *                   <provider>.csv (gpuhunt's published layout, reference dstack-core §3.4);
 *   "none"          no catalog: every fetch fails with a clear reason.
 * The default is gpuhunt's public location (CATALOG_DEFAULT_URL), or GPUHUNT_CATALOG_DIR /
 * GPUHUNT_CATALOG_URL when set, as gpuhunt itself reads them.
 *
 * A fetch names the version the caller already holds; when the source still has that
 * version nothing more is read (a directory's version is its file's size and mtime). Zip
 * archives are read with libzip (checksums verified); the CSV is bounded to 256 MiB.
 * Thread-safe: fetches of different callers run in parallel.
 */
#ifndef FLEETFS_CATALOG_H
#define FLEETFS_CATALOG_H

#include <stdbool.h>
#include <stddef.h>

#include "../lib/util.h"

#define CATALOG_DEFAULT_URL "https://dstack-gpu-pricing.s3.eu-west-1.amazonaws.com/v3"
#define CATALOG_VERSION_MAX 128

struct catalog;
struct http_client;

/* loc NULL: the default (environment, then the public URL). -EINVAL with err for a location
 * that is neither "none", an absolute directory path nor an http(s) URL. */
int catalog_new(const char *loc, struct catalog **out, char *err, size_t errlen);
/* The client URL locations download with (set before the first fetch; threads and curl
 * start after the daemon forks, the location is checked before). */
void catalog_set_http(struct catalog *c, struct http_client *http);
void catalog_free(struct catalog *c);
/* The location as given ("none", a directory, or the base URL). */
const char *catalog_location(const struct catalog *c);

struct catalog_fetch {
	struct buf csv;                     /* the provider's CSV (empty when unchanged) */
	char version[CATALOG_VERSION_MAX];  /* the source's current version */
	bool unchanged;                     /* version equals the one the caller holds */
	char source[1024];                  /* file path or zip URL the CSV came from */
};

/* Fetch provider's catalog (known: the version the caller holds, "" for none). 0 with *out
 * filled (release with catalog_fetch_free), or -errno with a readable reason in err:
 * -ENOENT (no catalog for provider there), -EPROTO (a bad version text or a corrupt zip),
 * -EIO (HTTP error status), -ETIMEDOUT, -EFBIG, -ENOTSUP (location "none"), -ENAMETOOLONG
 * (the location with provider and version does not fit a path or URL). */
int catalog_fetch(struct catalog *c, const char *provider, const char *known,
		  struct catalog_fetch *out, char *err, size_t errlen);
void catalog_fetch_free(struct catalog_fetch *f);

/* Extract member name from a zip archive held in memory (data, len) into out (bounded by
 * out's limit). 0, -ENOENT (no such member), -EPROTO (not a zip, or corrupt: bad checksum,
 * truncated), -EFBIG. Exposed for the unit tests. */
int catalog_unzip(const void *data, size_t len, const char *name, struct buf *out, char *err,
		  size_t errlen);

#endif
