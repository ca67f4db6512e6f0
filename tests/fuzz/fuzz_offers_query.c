/* fuzz_offers_query: core/offers' query grammar — the names of query directories under
 * offers/ ("gpu=A100:80GB:2,spot=false"), which any process on the mount can mkdir — and the
 * resources grammar below it (fleetspec_parse_gpu, fleetspec_parse_range). A parsed query
 * is matched against a few offers and rendered. Names are bounded as the kernel bounds
 * them (NAME_MAX 255); longer inputs are cut. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/offers.h"
#include "fuzzlib.h"

#define QUERY_MAX 255

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct offer_list g_offers;

static void offers_init(void)
{
	static const struct offer o[] = {
		{.backend = "lambda", .type = "lambda", .region = "us-east-1",
		 .instance = "gpu_8x_a100_80gb_sxm4", .cpu_arch = "x86", .gpu_vendor = "nvidia",
		 .gpu_name = "A100", .availability = "available", .source = "catalog",
		 .price = 14.32, .memory_mib = 1843200, .disk_mib = 20971520,
		 .gpu_memory_mib = 81920, .cpus = 240, .gpu_count = 8, .disk_fixed = true},
		{.backend = "aws", .type = "aws", .region = "us-east-1", .instance = "g5.xlarge",
		 .cpu_arch = "x86", .gpu_vendor = "nvidia", .gpu_name = "A10G",
		 .availability = "unknown", .source = "catalog", .price = 0.4, .memory_mib = 16384,
		 .gpu_memory_mib = 24576, .cpus = 4, .gpu_count = 1, .spot = true},
		{.backend = "aws-dev", .type = "aws", .region = "eu-west-1a", .instance = "t3.small",
		 .cpu_arch = "x86", .gpu_vendor = "", .gpu_name = "", .availability = "no_quota",
		 .source = "api", .price = 0.02, .memory_mib = 2048, .cpus = 2},
		{.backend = "amddevcloud", .type = "amddevcloud", .region = "atl1",
		 .instance = "gpu-mi300x1-192gb", .cpu_arch = "x86", .gpu_vendor = "amd",
		 .gpu_name = "MI300X", .availability = "available", .source = "api", .price = 1.99,
		 .memory_mib = 245760, .gpu_memory_mib = 196608, .cpus = 20, .gpu_count = 1},
		{.backend = "lambda", .type = "lambda", .region = "us-east-3",
		 .instance = "gpu_1x_gh200", .cpu_arch = "arm", .gpu_vendor = "nvidia",
		 .gpu_name = "GH200", .availability = "available", .source = "catalog",
		 .price = 1.49, .memory_mib = 442368, .gpu_memory_mib = 98304, .cpus = 64,
		 .gpu_count = 1},
	};
	for (size_t i = 0; i < sizeof(o) / sizeof(o[0]); i++)
		if (offer_list_push(&g_offers, &o[i]))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[QUERY_MAX + 1], err[512];
	struct offer_query *q = NULL;
	struct gpu_spec g;
	struct rrange rr;
	if (!g_offers.n)
		offers_init();
	if (size > QUERY_MAX)
		size = QUERY_MAX;
	memcpy(s, data, size);
	s[size] = '\0';
	/* the grammar on its own, as a fleet's gpu:, memory: and cpu: values */
	memset(&g, 0, sizeof(g));
	if (fleetspec_parse_gpu(s, &g, err, sizeof(err)) == 0)
		gpu_spec_free(&g);
	(void)fleetspec_parse_range(s, true, &rr, err, sizeof(err));
	(void)fleetspec_parse_range(s, false, &rr, NULL, 0);
	if (offers_query_parse(s, &q, err, sizeof(err)))
		return 0;
	struct buf b;
	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < g_offers.n; i++) {
		(void)offers_match(q, &g_offers.v[i]);
		(void)offers_disk_for(q, &g_offers.v[i]);
		(void)offer_yaml(&g_offers.v[i], q, &b);
	}
	(void)offers_tsv(&g_offers, q, &b);
	(void)offers_json(&g_offers, q, &b);
	buf_free(&b);
	offers_query_free(q);
	return 0;
}
