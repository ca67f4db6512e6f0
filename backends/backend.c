/* backend: see backend.h. The registry and the catalog offers source. */
#include "backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ydoc.h"

#define CATALOG_TTL (15 * 60)
#define LIVE_TTL 180

char **backend_regions(const char *config, size_t len)
{
	struct ydoc *d = NULL;
	char e[8];
	char **v = NULL;
	if (ydoc_load(config, len, "config.yml", &d, e, sizeof(e)))
		return NULL;
	int seq = ydoc_map_get(d, ydoc_root(d), "regions");
	size_t n = seq && ydoc_kind(d, seq) == Y_SEQ ? ydoc_len(d, seq) : 0, k = 0;
	if (n) {
		v = xcalloc(n + 1, sizeof(*v));
		for (size_t i = 0; i < n; i++) {
			const char *s = ydoc_str(d, ydoc_seq_at(d, seq, i));
			if (s && *s)
				v[k++] = xstrdup(s);
		}
	}
	ydoc_free(d);
	return v;
}

void backend_regions_free(char **regions)
{
	for (size_t i = 0; regions && regions[i]; i++)
		free(regions[i]);
	free(regions);
}

void bk_offers_res_free(struct bk_offers_res *res)
{
	offer_list_free(&res->list);
}

/* The gpuhunt catalog source (aws, azure, gcp, oci, nebius, lambda, verda/datacrunch,
 * runpod, cloudrift): the provider's catalog, cut to the config's regions. */
static int catalog_offers(const struct bk_offers_req *req, struct bk_offers_res *res,
			  char *err, size_t errlen)
{
	const char *prov = offers_catalog_provider(req->type);
	struct catalog_fetch f;
	if (!prov || !req->catalog)
		return fmt(err, errlen, "no catalog for backend type %s", req->type), -ENOTSUP;
	int r = catalog_fetch(req->catalog, prov, req->known_version, &f, err, errlen);
	if (r)
		return r;
	(void)fmt(res->version, sizeof(res->version), "%s", f.version);
	(void)fmt(res->source, sizeof(res->source), "%s", f.source);
	res->unchanged = f.unchanged;
	if (!f.unchanged) {
		struct offer_origin org = {.backend = req->name, .type = req->type,
					   .source = "catalog", .fetched_at = req->now};
		r = offers_parse_csv(f.csv.data ? f.csv.data : "", f.csv.len, &org, &res->list,
				     &res->skipped, err, errlen);
		if (!r) {
			char **regions = backend_regions(req->config, req->config_len);
			size_t n = 0;
			while (regions && regions[n])
				n++;
			offers_filter_regions(&res->list, regions, n);
			backend_regions_free(regions);
		}
	}
	catalog_fetch_free(&f);
	return r;
}

static const struct backend_ops registry[] = {
	{"aws", CATALOG_TTL, "catalog", catalog_offers},
	{"azure", CATALOG_TTL, "catalog", catalog_offers},
	{"gcp", CATALOG_TTL, "catalog", catalog_offers},
	{"oci", CATALOG_TTL, "catalog", catalog_offers},
	{"nebius", CATALOG_TTL, "catalog", catalog_offers},
	{"lambda", CATALOG_TTL, "catalog", catalog_offers},
	{"verda", CATALOG_TTL, "catalog", catalog_offers},
	{"datacrunch", CATALOG_TTL, "catalog", catalog_offers},
	{"runpod", CATALOG_TTL, "catalog", catalog_offers},
	{"cloudrift", CATALOG_TTL, "catalog", catalog_offers},
	{"vastai", LIVE_TTL, "api", NULL},
	{"vultr", LIVE_TTL, "api", NULL},
	{"digitalocean", LIVE_TTL, "api", NULL},
	{"amddevcloud", LIVE_TTL, "api", NULL},
	{"hotaisle", LIVE_TTL, "api", NULL},
	{"cudo", LIVE_TTL, "api", NULL},
	{"kubernetes", LIVE_TTL, "api", NULL},
};

const struct backend_ops *backend_find(const char *type)
{
	for (size_t i = 0; type && i < sizeof(registry) / sizeof(registry[0]); i++)
		if (!strcmp(registry[i].type, type))
			return &registry[i];
	return NULL;
}
