/* fuzz_digitalocean: backends/digitalocean's handling of DigitalOcean's and AMD Developer
 * Cloud's answers (one implementation, two types) through their real operations — check,
 * offers (/v2/sizes, paged), create (project, keys, droplet, assignment), get, terminate,
 * list (paged) — with each HTTP answer scripted by the input (fuzzlib.h). An input starting
 * with '+' runs as amddevcloud. */
#include <stdint.h>

#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char DO_CONFIG[] = "type: digitalocean\nproject_name: ml\ncreds:\n  type: api_key\n"
				"  api_key: dop_v1_fake1111111111111111111111111111\n"
				"regions: [nyc2, tor1]\n";
static const char AMD_CONFIG[] = "type: amddevcloud\ncreds:\n  type: api_key\n"
				 "  api_key: dop_v1_fake0000000000000000000000000000\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FZ_MAX_INPUT)
		return -1;
	if (size && data[0] == '+')
		fz_backend_run("amddevcloud", AMD_CONFIG, "gpu-mi300x1-192gb", "atl1", data + 1,
			       size - 1);
	else
		fz_backend_run("digitalocean", DO_CONFIG, "gpu-h100x1-80gb", "tor1", data, size);
	return 0;
}
