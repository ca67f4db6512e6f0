/* records: the typed rows of the store's `fleets` and `instances` databases.
 *
 * The store keeps each row as a JSON object (store_obj_*). This is the only place that knows
 * the JSON keys: everything else reads and writes the structs below. The keys on disk are the
 * ones fleetfs has always written (some short, some long): they are mapped to the fields'
 * names in records.c (the table at its head) and are never renamed without a migration;
 * docs/internals/records.md has the same table.
 *
 * Decoding is tolerant: a missing key, or one of the wrong JSON type, reads as the field's
 * default (0, false, "", NULL: "none"), exactly as the untyped code read it. Keys this
 * version does not know are kept in `extra` and written back by the encoder, so a row written
 * by a newer fleetfs keeps what it does not understand. Encoding writes the fields that are
 * set (optional ones only when not at their default), then the extra keys:
 * decode(encode(r)) == r.
 *
 * Strings are malloc'd and never NULL after a decode (`""` = none); set them with rec_set.
 * *_free releases everything a decode made (and zeroes the struct).
 */
#ifndef FLEETFS_RECORDS_H
#define FLEETFS_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "../cache/store.h"

struct cJSON;

/* ---- fleets: key "<project>/<fleet>" ---- */

struct fleet_rec {
	size_t spec_size;          /* "size": bytes of fleets/<fleet>.yml */
	struct timespec spec_mtime; /* "mt_s", "mt_ns": its mtime */
	double committed_at;       /* "cat": unix time of the last accepted commit */
	char *rejected;            /* "err": reason of the last refused write ("" none) */
	double rejected_at;        /* "errat": when (0 none) */
	char *digest;              /* "dg": keyed digest of the spec bytes (store_digest) */
	bool deleted;              /* "deleted": the spec was unlinked, instances terminate */
	double deleted_at;         /* "deleted_at" (0 none) */
	bool ssh;                  /* "kind": "ssh" (true) or "cloud" (false; also when absent) */
	long long hosts;           /* "hosts": SSH hosts in the spec */
	long long nodes_min;       /* "nodes_min", "nodes_target", "nodes_max": backend fleets' */
	long long nodes_target;    /*   nodes (0 for SSH fleets); nodes_max FS_UNLIMITED (-1) */
	long long nodes_max;       /*   when open */
	struct cJSON *extra;       /* keys not listed here, kept as found (NULL: none) */
};

/* ---- instances: key "<project>/<fleet>/<num:08u>" ---- */

struct gpu_rec {
	char *vendor; /* "vendor": nvidia, amd, ... */
	char *name;   /* "name": A100, ... */
	unsigned long long memory_mib; /* "memory_mib" */
};

/* What the SSH probe found on the host (core/probe.h). */
struct host_res {
	int cpus;                      /* "cpus" */
	char *arch;                    /* "arch" */
	unsigned long long memory_mib; /* "memory_mib" */
	unsigned long long disk_mib;   /* "disk_mib" */
	struct gpu_rec *gpus;          /* "gpus": [{vendor, name, memory_mib}] */
	size_t ngpus;
	char *addrs;                   /* "addrs": the host's addresses, as probed */
};

/* One line of an instance's history (info.yml `history`). */
struct row_event {
	double at;  /* "at" */
	char *what; /* "what" */
};

/* A backend fleet's VM (the row's "cloud" object): the intent, committed before the create
 * call, then what the provider said. */
struct cloud_vm {
	char *backend;      /* "backend": the backend's name in the project */
	char *type;         /* "type": its type (lambda, aws, ...) */
	char *offer;        /* "offer": the offer's name */
	char *region;       /* "region" */
	char *zone;         /* "zone" ("" unknown) */
	char *instance;     /* "instance": the instance type */
	double price;       /* "price": $/h */
	bool spot;          /* "spot" */
	char *name;         /* "name": the VM's name at the provider (fleetfs-<p>-<f>-<n>-...) */
	double intent_at;   /* "at": when the intent was committed */
	double create_ended; /* "ended": when a create with an unknown outcome returned (0) */
	char *id;           /* "id": the provider's id ("" not known yet: an intent) */
	char *backend_data; /* "backend_data": the backend's own opaque data */
	char *detail;       /* "detail": the provider's extra words ("" none) */
	double created_at;  /* "since": when the create succeeded (or the VM was found) */
	int timeout_min;    /* "timeout_min": the provider's provisioning timeout (0 default) */
	double term_asked;  /* "term_asked": when terminate was last asked (0 never) */
	struct cJSON *extra;
};

/* An offer tried in the current round. */
struct tried_offer {
	char *offer; /* "offer" */
	char *error; /* "error" */
	double at;   /* "at" */
};

struct instance_row {
	unsigned num;              /* "num": the instance number (also in the key) */
	char *status;              /* "status": IST_* (core/fleets.h) */
	char *reason;              /* "reason": why it is in that status */
	char *host;                /* "host": address ("" none yet: a backend fleet's VM) */
	int port;                  /* "port" (0 none: 22 for ssh) */
	char *user;                /* "user" */
	char *proxy;               /* "proxy": the jump host, "user@host:port" ("" none) */
	char *internal_ip;         /* "internal_ip" */
	char *hostkey;             /* "hostkey": pinned at first contact ("" not yet) */
	char *jumpkey;             /* "jumpkey": the jump host's, pinned likewise */
	double created;            /* "created": unix time */
	double updated;            /* "updated" */
	double started;            /* "started": when it went idle (0 not yet) */
	double checked;            /* "checked": last SSH check (0 never) */
	double next_try;           /* "next_try": when the engine works on it next (0 now) */
	unsigned attempts;         /* "attempts": failed rounds (provisioning) */
	unsigned term_attempts;    /* "term_attempts": failed terminate calls */
	bool unreachable;          /* "unreachable": the last check failed (idle rows) */
	char *check_error;         /* "check_error": why */
	char *last_error;          /* "last_error" */
	double last_error_at;      /* "last_error_at" */
	char *termination_reason;  /* "termination_reason": dstack's (terminated_by_user, ...) */
	struct host_res *res;      /* "res": probed resources (NULL: not probed) */
	struct row_event *log;     /* "log": history, oldest first */
	size_t nlog;
	struct cloud_vm *cloud;    /* "cloud": backend fleets' VM or intent (NULL: none) */
	struct tried_offer *tried; /* "tried": offers tried this round, oldest first */
	size_t ntried;
	struct cJSON *extra;
};

/* A listed row and its store key. */
struct instance_item {
	char *key;
	struct instance_row row;
};
struct instance_list {
	struct instance_item *v;
	size_t n;
};
struct fleet_item {
	char *key;
	struct fleet_rec rec;
};
struct fleet_list {
	struct fleet_item *v;
	size_t n;
};

/* ---- sealed SSH endpoints (secrets "f/<p>/<fleet>/hosts": an array of them, one per host
 * of the spec; "f/<p>/<fleet>/inst/<num:08u>": one, the row's own). They hold private keys:
 * the text is sealed in the store, and *_free wipes the key. ---- */

struct endpoint_rec {
	char *hostname; /* "hostname" */
	int port;       /* "port" (0 read as 22 by users) */
	char *user;     /* "user" */
	char *key;      /* "key": the private key's text */
	char *key_path; /* "key_path": where it was read from ("" none) */
};

struct host_rec {
	struct endpoint_rec ep;
	struct endpoint_rec *proxy; /* "proxy": the jump host (NULL none) */
	char *internal_ip;          /* "internal_ip" ("" none) */
	long long blocks;           /* "blocks" */
	struct cJSON *extra;
};

/* JSON text <-> struct. decode: -EIO when the text is not JSON of the right shape. encode:
 * malloc'd text (free it with seal_free_secret), NULL when out of memory. */
int host_rec_decode_text(const char *js, size_t len, struct host_rec *out);
char *host_rec_encode_text(const struct host_rec *h);
int host_recs_decode_text(const char *js, size_t len, struct host_rec **out, size_t *n);
char *host_recs_encode_text(const struct host_rec *v, size_t n);
void host_rec_free(struct host_rec *h);
void host_recs_free(struct host_rec *v, size_t n);

/* Replace *dst by a copy of v (NULL: ""). */
void rec_set(char **dst, const char *v);

/* cJSON <-> struct. decode never fails (anything but an object decodes as all defaults);
 * encode returns a new object (NULL only when out of memory). */
void fleet_rec_decode(const struct cJSON *o, struct fleet_rec *out);
struct cJSON *fleet_rec_encode(const struct fleet_rec *r);
void fleet_rec_free(struct fleet_rec *r);
void instance_row_decode(const struct cJSON *o, struct instance_row *out);
struct cJSON *instance_row_encode(const struct instance_row *r);
void instance_row_free(struct instance_row *r);
/* A new empty "cloud" object for r (the old one freed). */
struct cloud_vm *instance_row_new_cloud(struct instance_row *r);
void instance_row_drop_cloud(struct instance_row *r);
void instance_row_drop_tried(struct instance_row *r);
/* Append to "log" / "tried", dropping the oldest past max. */
void instance_row_log(struct instance_row *r, double at, const char *what, size_t max);
void instance_row_try(struct instance_row *r, const char *offer, const char *error, double at,
		      size_t max);
/* Replace "res". */
void instance_row_set_res(struct instance_row *r, struct host_res *res /* taken */);
void host_res_free(struct host_res *res);

/* The store: get/put one row, list the rows under a key prefix (in key order). get: 0,
 * -ENOENT, -EIO (not JSON), or a store error; the struct is zeroed on failure. */
int fleet_rec_get(struct stx *tx, const char *key, struct fleet_rec *out);
int fleet_rec_put(struct stx *tx, const char *key, const struct fleet_rec *r,
		  const char *project);
int fleet_rec_list(struct stx *tx, const char *prefix, struct fleet_list *out);
void fleet_list_free(struct fleet_list *l);
int instance_row_get(struct stx *tx, const char *key, struct instance_row *out);
int instance_row_put(struct stx *tx, const char *key, const struct instance_row *r,
		     const char *project);
int instance_row_list(struct stx *tx, const char *prefix, struct instance_list *out);
void instance_list_free(struct instance_list *l);
/* Append (key copied, row taken: *row is zeroed). */
void instance_list_add(struct instance_list *l, const char *key, struct instance_row *row);

/* ---- offers: key "m/<project>/<backend>" (core/offerd.c) ---- */

/* What the offers cache knows of one backend's offers and credentials. */
struct offers_meta {
	char *digest;      /* "digest": the config digest the record is for */
	char *src;         /* "src": the source key the offers came from (offerd_source_key) */
	double data_at;    /* "data_at": when the cached offers were fetched (0: none cached) */
	double checked_at; /* "checked_at": the last refresh that reached its source */
	double attempt_at; /* "attempt_at": the last refresh tried */
	char *version;     /* "version": the source's version of the cached offers */
	char *source;      /* "source": where they came from (path or URL) */
	double count;      /* "count": offers cached */
	double skipped;    /* "skipped": malformed catalog rows */
	char *error;       /* "error": the last refresh's failure ("" none) */
	double error_at;   /* "error_at" */
	char *cred;        /* "cred": the credential check: valid, invalid, unknown, "" never */
	char *cred_reason; /* "cred_reason": the provider's reason ("" none) */
	double cred_at;    /* "cred_at" */
	struct cJSON *extra;
};

void offers_meta_decode(const struct cJSON *o, struct offers_meta *out);
struct cJSON *offers_meta_encode(const struct offers_meta *m);
void offers_meta_free(struct offers_meta *m);

#endif
