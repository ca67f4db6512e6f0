/* backend: the interface every provider implements, in one registry (DESIGN §7).
 *
 * This version carries the offers call; checking credentials, create, get, terminate and
 * list-own (for the orphan sweep) join it with the cloud backends. Implementations know
 * nothing of FUSE or of the store: they get what they need in the request and return
 * results and readable errors (never a secret in them).
 */
#ifndef FLEETFS_BACKEND_H
#define FLEETFS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/offers.h"
#include "catalog.h"

struct http_client;

struct bk_offers_req {
	const char *project;
	const char *name;          /* the backend's name */
	const char *type;
	const char *config;        /* its config.yml, plain text (holds credentials) */
	size_t config_len;
	struct catalog *catalog;
	struct http_client *http;
	const char *known_version; /* version of the offers the cache holds, "" for none */
	long long now;             /* unix seconds, stamped on the offers */
};

struct bk_offers_res {
	struct offer_list list;             /* the backend's offers (any order) */
	char version[CATALOG_VERSION_MAX];  /* the source's version ("" when it has none) */
	bool unchanged;                     /* the source still has known_version: no list */
	char source[1024];                  /* where they came from (path or URL, no secret) */
	size_t skipped;                     /* malformed rows */
};

struct backend_ops {
	const char *type;
	/* Seconds offers stay fresh: dstack's 180 s offers cache for live APIs, gpuhunt's
	 * 15 min reload interval for catalogs. */
	int offers_ttl;
	const char *offers_source; /* "catalog" or "api": the offers' source field */
	/* 0 with res filled, or -errno with a readable reason in err. NULL: the type lists no
	 * offers yet. */
	int (*offers)(const struct bk_offers_req *req, struct bk_offers_res *res, char *err,
		      size_t errlen);
};

/* The implementation of a backend type, or NULL for an unknown type. */
const struct backend_ops *backend_find(const char *type);
void bk_offers_res_free(struct bk_offers_res *res);

/* The `regions` list of a backend config (NULL-terminated, caller frees with
 * backend_regions_free); NULL when the config sets none. */
char **backend_regions(const char *config, size_t len);
void backend_regions_free(char **regions);

#endif
