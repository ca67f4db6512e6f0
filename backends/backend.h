/* backend: the interface every provider implements, in one registry (DESIGN §7).
 *
 * Each backend type has one struct backend_ops: check credentials, list offers, create a VM,
 * get its state, terminate it, and list the VMs fleetfs made (for crash recovery and the
 * orphan sweep). Implementations know nothing of FUSE or of the store: they get what they
 * need in the call and return results and readable errors — never a secret in them (an API
 * key, a token, a private key) and never a request body.
 *
 * Errors: 0 or -errno with err set. Meanings shared by all backends:
 *   -EACCES   the provider refused the credentials (err: the provider's reason)
 *   -ENOSPC   no capacity for this offer now (try the next offer)
 *   -ENOENT   no such VM (get), or nothing to do
 *   -EINVAL   the provider refused the request as invalid (try the next offer)
 *   -ETIMEDOUT, -EIO, -ECONNREFUSED, -EHOSTUNREACH ...: could not reach a verdict; retry
 *   -ECANCELED fleetfs is stopping
 */
#ifndef FLEETFS_BACKEND_H
#define FLEETFS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "../model/offer.h"
#include "catalog.h"
#include "registry.h"

struct http_client;
struct ydoc;
struct bk_memo;

/* A backend's config.yml, validated when it was written (backends/schema.c) and parsed once
 * by whoever calls the provider: providers read it, never the text. It holds credentials:
 * backend_config_free wipes it. */
struct backend_config {
	struct ydoc *doc;
	int root;                 /* the top mapping */
	unsigned char digest[32]; /* SHA-256 of the text: a key for what depends on it */
};
/* 0, -EINVAL (not YAML, or not a mapping; reason in err, no value echoed) or -ENOMEM. */
int backend_config_parse(const char *text, size_t len, struct backend_config *out, char *err,
			 size_t errlen);
void backend_config_free(struct backend_config *c);

/* What every call gets: the backend and the means to reach its provider. */
struct backend_ctx {
	const char *project;
	const char *name;          /* the backend's name (its directory) */
	const char *type;
	const struct backend_config *config;
	struct catalog *catalog;
	struct http_client *http;
	struct bk_memo *memo;      /* what the clients remember (NULL: nothing is remembered) */
};

struct bk_share;

struct bk_offers_req {
	struct backend_ctx ctx;
	const char *known_version; /* version of the offers the cache holds, "" for none */
	long long now;             /* unix seconds, stamped on the offers */
	struct bk_share *share;    /* fetches shared with other refreshes (NULL: none) */
};

/* Source fetches shared by many refreshes (core/offerd.c): the first refresh that needs a
 * provider's catalog fetches it, the others that run meanwhile get the same answer (data or
 * error) from memory. One fetch per key at a time: a second caller waits for the first.
 * An answer older than max_age_ms is fetched again. Thread-safe. */
struct bk_share *bk_share_new(long long max_age_ms);
void bk_share_free(struct bk_share *sh);
/* Fetches the share made over its life (for tests and logs). */
unsigned long bk_share_fetches(struct bk_share *sh);
/* Drop the catalog texts the share holds (they are fetched again when needed); versions
 * and errors stay. For idle times: the texts can be tens of MiB. */
void bk_share_trim(struct bk_share *sh);
/* Milliseconds until every answer the share holds is older than its max_age (0: none is
 * usable any more, the share can go). */
long long bk_share_expires_in(struct bk_share *sh);

/* A VM as its provider reports it. */
enum bk_vm_state {
	BK_VM_PENDING = 0, /* being created or booting */
	BK_VM_RUNNING,     /* up (it may still lack an address) */
	BK_VM_STOPPED,     /* off or suspended, not gone */
	BK_VM_TERMINATING, /* going */
	BK_VM_TERMINATED,  /* gone (providers that keep terminated records) */
	BK_VM_FAILED,      /* the provider gave up on it */
};

#define BK_ID_MAX 128

struct bk_vm {
	char id[BK_ID_MAX];     /* the provider's id */
	char name[128];         /* the name fleetfs gave it (fleetfs-...) */
	enum bk_vm_state state;
	char status[64];        /* the provider's own word for it (booting, active, new ...) */
	char ip[64];            /* public address ("" until known) */
	char internal_ip[64];
	char region[64];
	char instance[96];      /* instance type / plan / size */
	char username[32];      /* who to log in as (ubuntu, root) */
	int ssh_port;
	char backend_data[512]; /* opaque to fleetfs, handed back to get and terminate */
	int provision_timeout_min; /* create may set it for this VM (Vultr bare metal: 55);
				    * 0: the backend's provision_timeout_min */
	char zone[64];          /* the availability zone, where the provider has them */
	char detail[256];       /* create: what else the user should know ("us-east-1a: no
				 * capacity"), shown in events and info.yml; "" for nothing */
};

/* A create: one offer, one VM. */
struct bk_create_req {
	const struct offer *offer;
	const char *cloud_name;  /* fleetfs-<project>-<fleet>-<num>-<8 random [a-z0-9]> */
	const char *project;     /* for the provider's tags/labels, where it has them */
	const char *fleet;
	unsigned num;
	const char *ssh_pubkey;  /* the project key, one OpenSSH line */
	const char *user_data;   /* #cloud-config with ssh_authorized_keys, for providers that
				  * take cloud-init; others install the key their own way */
	const char *placement_group; /* the fleet's cluster placement group (`placement:
				      * cluster`), made by create where the provider has them;
				      * NULL: none */
	const struct kv *tags;   /* the fleet's `tags` (dstack: added where the provider has
				  * tags, after fleetfs's and the config's) */
	size_t ntags;
};

struct bk_offers_res {
	struct offer_list list;             /* the backend's offers (any order) */
	char version[CATALOG_VERSION_MAX];  /* the source's version ("" when it has none) */
	bool unchanged;                     /* the source still has known_version: no list */
	char source[1024];                  /* where they came from (path or URL, no secret) */
	size_t skipped;                     /* malformed rows */
};

/* A provider client: what backends/<type>.c defines, and registry.c names in the type's line
 * (with everything else about the type: its schema, catalog, disk sizes, offers TTL). */
struct backend_ops {
	/* 0 with res filled, or -errno with a readable reason in err. NULL: the type lists no
	 * offers yet. */
	int (*offers)(const struct bk_offers_req *req, struct bk_offers_res *res, char *err,
		      size_t errlen);
	/* The members below are NULL for types fleetfs cannot provision on yet. */
	/* One cheap authenticated call: 0 valid, -EACCES refused (err: why), else unknown. */
	int (*check)(const struct backend_ctx *ctx, char *err, size_t errlen);
	/* Create one VM for req->offer; on 0, out has at least its id (and whatever else the
	 * answer told). -ENOSPC: no capacity. */
	int (*create)(const struct backend_ctx *ctx, const struct bk_create_req *req,
		      struct bk_vm *out, char *err, size_t errlen);
	/* The VM's current state. -ENOENT: no such VM (gone). */
	int (*get)(const struct backend_ctx *ctx, const char *id, const char *backend_data,
		   struct bk_vm *out, char *err, size_t errlen);
	/* Ask for the VM to go. 0 when asked or already gone (idempotent); the caller confirms
	 * with get. */
	int (*terminate)(const struct backend_ctx *ctx, const char *id, const char *backend_data,
			 char *err, size_t errlen);
	/* Every VM of the account whose name starts with "fleetfs-" (the prefix of every name
	 * fleetfs gives), whatever its state, all pages. *out malloc'd (free). */
	int (*list_own)(const struct backend_ctx *ctx, struct bk_vm **out, size_t *n, char *err,
			size_t errlen);
	/* Minutes a VM may take from create to running with an address (dstack: Lambda 30,
	 * Vultr bare metal 55, others 10). */
	int provision_timeout_min;
	/* Seconds a VM may stay missing from list_own after the create request that made it was
	 * answered or given up on: the provider's eventual consistency, and a create it
	 * finishes after the client stopped waiting. A name not listed is proof that its
	 * create made nothing only once this lag has passed since the last request of the
	 * create could have been under way (core/cloud.c: intent_deadline). Scaled by
	 * FLEETFS_TIME_SCALE like the engine's intervals; the HTTP time it is added to is not. */
	int create_lag_s;
};

/* The gpuhunt catalog source, for the types dstack prices from catalogs: the provider's
 * catalog (ctx->catalog) cut to the config's regions. */
int backend_catalog_offers(const struct bk_offers_req *req, struct bk_offers_res *res,
			   char *err, size_t errlen);

/* Provider clients: backends/<type>.c defines `const struct backend_ops <type>_ops`, and
 * registry.c's table names it (and declares it). For types without a client of their own
 * yet: offers from the gpuhunt catalog (catalog_ops) or none (live_ops); neither
 * provisions. */
extern const struct backend_ops catalog_ops, live_ops;

/* The client of a backend type (registry.c), or NULL for an unknown type. */
const struct backend_ops *backend_find(const char *type);
void bk_offers_res_free(struct bk_offers_res *res);

/* ---- for provider implementations ---- */

struct cJSON;

/* The node at a dotted path of the config ("creds", "os_images.nvidia"), or 0 when absent
 * (or ctx has no config). */
int backend_config_node(const struct backend_ctx *ctx, const char *path);
/* The string at a dotted path of the config ("creds.api_key", "project_name"), malloc'd, or
 * NULL when absent or not a scalar. Free with backend_secret_free (it may be a secret). */
char *backend_config_str(const struct backend_ctx *ctx, const char *path);
void backend_secret_free(char *s);
/* The provider's API base: FLEETFS_ENDPOINT_<TYPE> when set, else dflt. */
const char *backend_endpoint(const struct backend_ctx *ctx, const char *dflt);

/* One JSON API call: method + url, "Authorization: Bearer <bearer>" (never logged), a JSON
 * body (may be NULL), the response parsed into *out (NULL when the body is empty or not JSON;
 * out may be NULL). Returns 0 when a response arrived (*status set, any status), else -errno
 * with err. Retries are the HTTP client's (429/5xx with backoff; POST only when safe). */
int backend_json(const struct backend_ctx *ctx, const char *method, const char *url,
		 const char *bearer, const struct cJSON *body, long *status, struct cJSON **out,
		 char *err, size_t errlen);

/* One operation's view of a JSON API: the backend, the API base, the key (a secret; NULL for
 * public calls). */
struct bk_api {
	const struct backend_ctx *ctx;
	char *key;
	char base[512];
};
/* Open a for ctx: the API base (FLEETFS_ENDPOINT_<TYPE> or dflt, trailing '/' removed) and,
 * when need_key, creds.api_key. 0, -ENAMETOOLONG, -EINVAL (no key), with "<type>: ..." in
 * err. Close it with backend_api_close whatever the result. */
int backend_api_open(const struct backend_ctx *ctx, const char *dflt, bool need_key,
		     struct bk_api *a, char *err, size_t errlen);
void backend_api_close(struct bk_api *a);
/* The errno of an HTTP error status, for answers the provider's own codes say nothing more
 * about: 401/403 -EACCES, 404 -ENOENT, 429 -EAGAIN (still limited after the HTTP client's
 * retries), 5xx -EIO, other 4xx -EINVAL, anything else -EPROTO (1xx, a 3xx left over). */
int backend_http_errno(long status);
/* ---- Provider memory (backends/memo.c) ----
 *
 * Threads: every call of a backend_ops may run on any thread, concurrently with any other
 * call, of the same backend or not: the engine runs up to 8 instance steps at once and the
 * offers refresher its own workers. A provider client therefore keeps nothing in globals of
 * its own: what it learns and wants to keep (the id of the account's SSH key, a VPC per
 * region, credentials until they expire) goes into ctx->memo, which the mount owns (one
 * struct bk_memo per daemon, made at mount and freed at unmount) and which serialises
 * itself. A sequence that must not run twice at once for one backend ("find the key, else
 * register it") runs under backend_lock, or whole through backend_memo_once. Objects a call
 * receives (ctx, its config, the offer) are only read, and only during the call.
 */
struct bk_memo *bk_memo_new(void);
void bk_memo_free(struct bk_memo *m);

/* Small facts a provider client learnt, so a fleet of 50 does not look them up 50 times.
 * Keys are the backend (type, project, name) plus base (the API base, so a test endpoint
 * does not see production's facts) plus what; forget (val NULL) when the provider refuses
 * what the memo said. Bounded (oldest dropped). get: true and val filled when known. Values
 * may be secrets: they are wiped when dropped. With ctx->memo NULL, nothing is kept. */
bool backend_memo_get(const struct backend_ctx *ctx, const char *base, const char *what,
		      char *val, size_t n);
void backend_memo_put(const struct backend_ctx *ctx, const char *base, const char *what,
		      const char *val);
/* The same, forgotten after ttl_s seconds (0: kept until forgotten or pushed out). */
void backend_memo_put_ttl(const struct backend_ctx *ctx, const char *base, const char *what,
			  const char *val, int ttl_s);
/* The lock of the sequence (backend, base, what): one holder at a time (striped: unrelated
 * sequences may share one, so never take two). No-ops with ctx->memo NULL. */
void backend_lock(const struct backend_ctx *ctx, const char *base, const char *what);
void backend_unlock(const struct backend_ctx *ctx, const char *base, const char *what);
/* Find or make a fact once: the memo's value, else make(arg, val, n, err, errlen) under the
 * sequence's lock (a caller that waited finds what the first made), remembered for ttl_s
 * (0: until forgotten) when make returns 0. Returns 0 with val, or make's -errno. */
typedef int (*bk_make_fn)(void *arg, char *val, size_t n, char *err, size_t errlen);
int backend_memo_once(const struct backend_ctx *ctx, const char *base, const char *what,
		      int ttl_s, bk_make_fn make, void *arg, char *val, size_t n, char *err,
		      size_t errlen);
/* Offers built from a catalog plus live facts (Lambda's capacity, AWS's quotas): were the
 * cached offers (catalog version known) built from these facts (digest: BK_DIGEST_MAX bytes)?
 * Then the refresh can answer "unchanged" without reading the catalog. remember records
 * what the offers just built came from (in the memo). */
#define BK_DIGEST_MAX 64
bool backend_offers_seen(const struct backend_ctx *ctx, const char *known,
			 const unsigned char *digest);
void backend_offers_remember(const struct backend_ctx *ctx, const char *version,
			     const unsigned char *digest);
/* err = the formatted message; returns rc (for `return backend_fail(err, n, -EINVAL, ...)`). */
int backend_fail(char *err, size_t errlen, int rc, const char *f, ...)
	__attribute__((format(printf, 4, 5)));
/* Member k of JSON object o (NULL when o is not an object or has no k), and the same when it
 * is a string (NULL when absent, null or not a string). */
const struct cJSON *backend_jget(const struct cJSON *o, const char *k);
const char *backend_jstr(const struct cJSON *o, const char *k);
/* A provider id fleetfs puts in a URL path: 1..BK_ID_MAX-1 of [A-Za-z0-9_-]. */
bool backend_id_ok(const char *id);
/* Mask every occurrence of secret in text with '*' (a provider may echo what it was sent). */
void backend_redact(const char *secret, char *text);

/* cloud-init user data installing one public key: "#cloud-config\nssh_authorized_keys: [...]". */
char *backend_cloud_init(const char *ssh_pubkey);

/* Keep only the offers in the config's `regions` (zones belong to their region); all of them
 * when the config sets none. */
void backend_cut_regions(const struct backend_ctx *ctx, struct offer_list *l);

#endif
