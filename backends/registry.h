/* registry: every backend type fleetfs knows, one line each.
 *
 * As curl has one Curl_scheme per URL scheme, fleetfs has one struct backend_type per
 * backend type: its name, the schema its config.yml is checked against, the gpuhunt catalog
 * that prices it, the disk sizes it can be given, how long its offers stay fresh, the
 * provider client (struct backend_ops) and the environment variable that points it at
 * another API base (tests point it at their fakes). Everything that differs by type is read
 * from here: nothing else compares type names.
 *
 * Adding a provider: write backends/<type>.c defining `const struct backend_ops <type>_ops`
 * (backend.h says what each call must do), and add its line to the table in registry.c.
 */
#ifndef FLEETFS_REGISTRY_H
#define FLEETFS_REGISTRY_H

#include <stdbool.h>

#include "../model/offer.h"

struct sch_obj;
struct backend_ops;

struct backend_type {
	const char *name;              /* the `type:` value, and the default directory name */
	const struct sch_obj *schema;   /* the config's fields besides `type` (schemapriv.h) */
	const char *catalog;           /* gpuhunt's provider name for it, NULL: no catalog */
	struct disk_range disk;        /* dstack's CONFIGURABLE_DISK_SIZE, GB */
	int offers_ttl;                /* seconds its offers stay fresh */
	const char *offers_source;     /* "catalog" or "api": the offers' source field */
	const struct backend_ops *ops; /* the provider client (never NULL) */
	const char *endpoint_env;      /* the variable that overrides the API base */
};

/* The type called name, or NULL. */
const struct backend_type *backend_type_find(const char *name);
bool backend_type_known(const char *name);
/* gpuhunt provider name for a backend type (lambda -> lambdalabs, datacrunch -> verda, ...),
 * or NULL when the type has no catalog (or is unknown). */
const char *backend_type_catalog(const char *name);
/* The known type names, alphabetical, NULL-terminated. */
const char *const *backend_type_names(void);

#endif
