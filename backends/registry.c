/* registry: see registry.h. The one table of backend types. */
#include "registry.h"

#include <string.h>

#include "backend.h"
#include "schemapriv.h"

/* How long offers stay fresh, and where they come from. gpuhunt reloads a catalog every 15
 * minutes; dstack caches a live API's offers 180 s, and AWS quotas 10 minutes (the offers of
 * AWS, quotas and the catalog's version check, which downloads nothing when unchanged,
 * refresh as often). */
#define CATALOG (15 * 60), "catalog"
#define LIVE 180, "api"
#define AWS_Q (10 * 60), "catalog"
/* Disk sizes, GB (dstack's CONFIGURABLE_DISK_SIZE); ANY: 1.. unbounded. */
#define GB(lo, hi) {lo, hi}
#define ANY {0, 0}

/* The table, alphabetical. One line per type:
 *   T(name, ENDPOINT, schema_<schema>, gpuhunt catalog, disk, offers, <ops>_ops)
 * where FLEETFS_ENDPOINT_<ENDPOINT> overrides the provider's API base. */
#define BACKEND_TYPES(T)                                                                   \
	T("amddevcloud", AMDDEVCLOUD, do, NULL, ANY, LIVE, digitalocean)                 \
	T("aws", AWS, aws, "aws", GB(100, 16384), AWS_Q, aws)                            \
	T("azure", AZURE, azure, "azure", GB(30, 4095), CATALOG, catalog)               \
	T("cloudrift", CLOUDRIFT, api_regions, "cloudrift", ANY, CATALOG, catalog)       \
	T("cudo", CUDO, cudo, NULL, ANY, LIVE, live)                                     \
	T("datacrunch", DATACRUNCH, verda, "verda", GB(50, -1), CATALOG, catalog)        \
	T("digitalocean", DIGITALOCEAN, do, NULL, ANY, LIVE, digitalocean)               \
	T("gcp", GCP, gcp, "gcp", GB(20, 32768), CATALOG, catalog)                       \
	T("hotaisle", HOTAISLE, hotaisle, NULL, ANY, LIVE, live)                         \
	T("kubernetes", KUBERNETES, kube, NULL, ANY, LIVE, live)                         \
	T("lambda", LAMBDA, api_regions, "lambdalabs", ANY, CATALOG, lambda)             \
	T("nebius", NEBIUS, nebius, "nebius", GB(40, 8192), CATALOG, catalog)            \
	T("oci", OCI, oci, "oci", GB(50, 32768), CATALOG, catalog)                       \
	T("runpod", RUNPOD, community, "runpod", ANY, CATALOG, catalog)                  \
	T("vastai", VASTAI, community, NULL, ANY, LIVE, live)                            \
	T("verda", VERDA, verda, "verda", GB(50, -1), CATALOG, catalog)                  \
	T("vultr", VULTR, api_regions, NULL, ANY, LIVE, vultr)

/* Each client, declared by its line. */
#define DECLARE(name, env, schema, cat, disk, offers, ops)                                  \
	extern const struct backend_ops ops##_ops;
BACKEND_TYPES(DECLARE)

#define ROW(name, env, schema, cat, disk, offers, ops)                                     \
	{name, &schema_##schema, cat, disk, offers, &ops##_ops, "FLEETFS_ENDPOINT_" #env},
#define NAME(name, ...) name,

static const struct backend_type types[] = {BACKEND_TYPES(ROW)};
static const char *const names[] = {BACKEND_TYPES(NAME) NULL};

#define NTYPES (sizeof(types) / sizeof(types[0]))

const struct backend_type *backend_type_find(const char *name)
{
	for (size_t i = 0; name && i < NTYPES; i++)
		if (!strcmp(types[i].name, name))
			return &types[i];
	return NULL;
}

bool backend_type_known(const char *name)
{
	return backend_type_find(name) != NULL;
}

const char *backend_type_catalog(const char *name)
{
	const struct backend_type *t = backend_type_find(name);
	return t ? t->catalog : NULL;
}

const char *const *backend_type_names(void)
{
	return names;
}
