/* cloud: the engine's steps for instances of backend fleets (nodes:), on cloud providers.
 *
 * An instance row of a backend fleet goes
 *   pending       choose offers (the project's offers cache, the spec's requirements,
 *                 available ones, cheapest first, at most 25) and create a VM on the first
 *                 that works; each attempt and its error is recorded in the row
 *   provisioning  poll the provider until the VM runs with an address; then the engine's
 *                 SSH step connects with the project key, probes the hardware -> idle
 *   terminating   ask the provider to terminate; the row goes only once the provider says
 *                 the VM is gone; failures are retried with backoff for as long as it takes
 * Never leak, never duplicate: before each create the intent (cloud name, offer, time) is
 * committed; a row found with an intent but no provider id (a crash between the create call
 * and its commit, or a create whose answer was lost) is resolved by looking the name up
 * among the provider's VMs before anything else is created. A name not listed while a
 * request of its create may still be under way at the provider (see intent_deadline in
 * cloud.c) proves nothing: the row waits and looks again; only after that is the intent
 * taken as "not created".
 */
#ifndef FLEETFS_CLOUD_H
#define FLEETFS_CLOUD_H

#include <stdbool.h>

#include "../cache/store.h"

#define CLOUD_MAX_OFFERS 25

struct http_client;
struct catalog;
struct offerd;

struct cloud {
	struct store *s;
	struct http_client *http;
	struct catalog *catalog;
	struct bk_memo *memo;  /* the provider clients' memory (the mount's) */
	struct offerd *offerd; /* may be NULL (offers then come only from the cache) */
	double scale;          /* FLEETFS_TIME_SCALE */
	double started;        /* unix seconds this process started its engine: a create call
				* of an earlier process sent nothing after it */
};

struct instance_row;

/* True for rows of backend fleets (they carry a VM (`cloud`) or no host). */
bool cloud_row(const struct instance_row *row);

/* One step for row key (project p, fleet f, instance num) in its current state. Returns
 * true when the row has an address and the SSH step applies (connect and probe when it was
 * provisioning, the periodic check when idle): the caller runs it at once. */
bool cloud_step(struct cloud *c, const char *key, const char *p, const char *f, unsigned num);

/* The orphan sweep: every VM a backend lists with this project's name prefix
 * (fleetfs-<project>-) that no instance row knows is reported in the project's events (once
 * per VM), and terminated when the backend's config says `orphans: terminate`. */
void cloud_sweep(struct cloud *c);

#endif
