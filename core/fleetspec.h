/* fleetspec: dstack's fleet configuration (`type: fleet`) and resources grammar.
 *
 * Parses and validates fleets/<name>.yml exactly as dstack does (reference: dstack-core.md
 * §1.1–§1.8): unknown keys rejected, nodes in all forms, resources grammar, placement,
 * blocks, backends, regions, availability_zones, instance_types, reservation, spot_policy,
 * retry, max_price, idle_duration, tags, backend_options, env, and ssh_config with user, port,
 * identity_file (read at parse time through ctx, checked to be an unencrypted RSA, ECDSA or
 * Ed25519 private key, and kept in memory for sealing), proxy_jump, network and per-host
 * overrides. Errors are "FILE:LINE: FIELD: message" (ydoc_err), values never echoed.
 */
#ifndef FLEETFS_FLEETSPEC_H
#define FLEETFS_FLEETSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../backends/schema.h"
#include "../lib/ydoc.h"

#define FS_UNLIMITED (-1LL)

/* A closed or half-open range; min/max in the unit of the field (count, GB). */
struct rrange {
	bool set;     /* the field was given (or defaulted) */
	double min;   /* 0 when open below */
	double max;   /* < 0 when unlimited */
};

struct gpu_spec {
	char vendor[16];              /* "" (any), nvidia, amd, google, intel, tenstorrent */
	char **names;                 /* e.g. "A100", "H100" (case as written), may be NULL */
	size_t nnames;
	struct rrange count;
	struct rrange memory;         /* GB per GPU */
	struct rrange total_memory;   /* GB */
	char compute_capability[16];  /* "" or e.g. "8.0" */
};

struct resources {
	bool set;                 /* `resources:` present */
	struct rrange cpu;
	char cpu_arch[8];         /* "" (any), x86, arm */
	struct rrange memory;     /* GB */
	struct rrange shm_size;   /* GB; set=false when absent */
	struct gpu_spec gpu;
	struct rrange disk;       /* GB */
};

/* One SSH endpoint: a fleet host or a proxy_jump host, with everything resolved (host value,
 * else the fleet's ssh_config value, else the default). */
struct ssh_endpoint {
	char *hostname;
	int port;          /* 22 by default */
	char *user;
	char *key;         /* private key text (PEM or OpenSSH), read from identity_file */
	size_t keylen;
	char *key_path;    /* where it was read from (for messages), may be NULL */
};

struct ssh_host {
	struct ssh_endpoint ep;
	struct ssh_endpoint *proxy; /* NULL, or the resolved proxy_jump (host's, else fleet's) */
	char *internal_ip;          /* NULL or a private IP */
	int blocks;                 /* 0 = auto, else >= 1 (host's, else the fleet's) */
};

enum placement { PLACEMENT_ANY = 0, PLACEMENT_CLUSTER };
enum spot_policy { SPOT_ON_DEMAND = 0, SPOT_SPOT, SPOT_AUTO };

/* retry (accepted and kept; dstack's server does not act on it for fleets, §1.2). */
enum { RETRY_NO_CAPACITY = 1u, RETRY_INTERRUPTION = 2u, RETRY_ERROR = 4u };
struct retry_spec {
	bool enabled;        /* `retry: true` or a mapping; false when absent or `retry: false` */
	unsigned on_events;  /* RETRY_* bits; all three when on_events is omitted */
	long long duration;  /* seconds; 3600 (dstack's DEFAULT_RETRY_DURATION) when omitted */
};

/* backend_options: only vastai has options (VastAIProfileOptions). */
struct vastai_options {
	bool set;               /* a vastai entry is present */
	char offer_order[8];    /* "" (not given: dstack uses score), "score", "price" */
	double min_reliability; /* < 0 when not given (dstack uses 0.9) */
	long long min_score;    /* < 0 when not given */
};

struct fleet_spec {
	char name[48];
	bool ssh;                   /* ssh_config given (else a backend fleet with nodes) */
	enum placement placement;
	int blocks;                 /* 0 = auto */
	/* backend fleets (nodes_* are 0 for SSH fleets) */
	long long nodes_min, nodes_target, nodes_max; /* nodes_max = FS_UNLIMITED when open */
	struct resources resources; /* set=false: no `resources:`; the fields then hold dstack's
				     * ResourcesSpec.unconstrained() (cpu 1.., memory 0GB..,
				     * gpu count 0.., no disk constraint) */
	char **backends; size_t nbackends;
	char **regions; size_t nregions;
	char **availability_zones; size_t nazs;
	char **instance_types; size_t ninstance_types;
	char *reservation;
	enum spot_policy spot_policy;
	double max_price;           /* < 0: none */
	long long idle_duration;    /* seconds; -1 = off; default 3 days */
	struct kv *tags; size_t ntags;
	struct retry_spec retry;
	struct vastai_options vastai;
	/* ssh fleets */
	struct ssh_host *hosts; size_t nhosts;
	char *network;              /* NULL or "a.b.c.d/n" (private) */
	struct kv *env; size_t nenv;
};

/* Parse data (len bytes) as the spec of fleet `name` (the file name without .yml); a `name:`
 * inside must agree. fname is the path used in messages, e.g. "projects/main/fleets/gpu.yml".
 * On success *out is owned by the caller (fleetspec_free). Returns 0, -EINVAL / -EFBIG with
 * the reason in err, -ENOMEM. */
int fleetspec_parse(const char *data, size_t len, const char *fname, const char *name,
		    const struct fileref_ctx *ctx, struct fleet_spec **out, char *err, size_t errlen);
void fleetspec_free(struct fleet_spec *f);

/* dstack's in-place update rules (§1.7): can `next` replace `cur` without recreating the
 * fleet? 0, or -EINVAL with the reason ("FIELD: cannot be changed in place ...") in err.
 * Changing kind (ssh <-> backend) is never in place. SSH fleets: hosts may be added or
 * removed; a kept host (same hostname) may not change its connection parameters. */
int fleetspec_update_check(const struct fleet_spec *cur, const struct fleet_spec *next,
			   char *err, size_t errlen);

/* Resources grammar (§1.8) on its own: parse one `gpu:` value string such as "A100:80GB:2",
 * "24GB..", "nvidia:2..4", "H100,A100:8". 0 (then *out is overwritten and owns its names:
 * gpu_spec_free) or -EINVAL with the reason (no file/line, no value) and *out untouched. */
int fleetspec_parse_gpu(const char *s, struct gpu_spec *out, char *err, size_t errlen);
/* A range string like "2..8", "8GB..", "..1TB", "4" in the given unit (1 for counts, GB for
 * memory). 0, or -EINVAL with the reason in err (may be NULL) and *out untouched. */
int fleetspec_parse_range(const char *s, bool memory, struct rrange *out, char *err,
			  size_t errlen);
void gpu_spec_free(struct gpu_spec *g);

#endif
