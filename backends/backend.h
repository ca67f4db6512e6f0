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

#include "../core/offers.h"
#include "catalog.h"

struct http_client;

/* What every call gets: the backend and the means to reach its provider. */
struct backend_ctx {
	const char *project;
	const char *name;          /* the backend's name (its directory) */
	const char *type;
	const char *config;        /* its config.yml, plain text (holds credentials) */
	size_t config_len;
	struct catalog *catalog;
	struct http_client *http;
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

/* Provider clients (backends/<type>.c), registered in backend.c. */
extern const struct backend_ops lambda_ops;
extern const struct backend_ops digitalocean_ops, amddevcloud_ops;
extern const struct backend_ops vultr_ops;
extern const struct backend_ops aws_ops;

/* The implementation of a backend type, or NULL for an unknown type. */
const struct backend_ops *backend_find(const char *type);
void bk_offers_res_free(struct bk_offers_res *res);

/* ---- for provider implementations ---- */

struct cJSON;

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
/* A process-wide memo of small facts a provider client learnt (the id of the project's SSH
 * key, a VPC per region, a project's id), so a fleet of 50 does not look them up 50 times.
 * Keys are built by the client from the backend (project, name, endpoint) and the fact;
 * forget (val NULL) when the provider refuses what the memo said. Bounded (oldest dropped);
 * thread-safe. get: true and val filled when known. */
bool backend_memo_get(const struct backend_ctx *ctx, const char *base, const char *what,
		      char *val, size_t n);
void backend_memo_put(const struct backend_ctx *ctx, const char *base, const char *what,
		      const char *val);
/* The same, forgotten after ttl_s seconds (0: kept until forgotten or pushed out). Values are
 * cut to BK_MEMO_VAL_MAX - 1 bytes. */
#define BK_MEMO_VAL_MAX 1024
void backend_memo_put_ttl(const struct backend_ctx *ctx, const char *base, const char *what,
			  const char *val, int ttl_s);
/* Offers built from a catalog plus live facts (Lambda's capacity, AWS's quotas): were the
 * cached offers (catalog version known) built from these facts (digest: BK_DIGEST_MAX bytes)?
 * Then the refresh can answer "unchanged" without reading the catalog. remember records
 * what the offers just built came from. */
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
