/* fuzz_vultr: backends/vultr's handling of Vultr's answers (plans and bare-metal plans,
 * instances and bare-metal servers, VPCs, errors) through its real operations — check,
 * offers, create, get, terminate, list — with each HTTP answer scripted by the input
 * (fuzzlib.h). get/terminate take BACKEND_DATA as their third word ({"kind": ...}). */
#include <stdint.h>

#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONFIG[] = "type: vultr\ncreds:\n  type: api_key\n"
			     "  api_key: FAKEB57487240A466624B48DE22865589\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FZ_MAX_INPUT)
		return -1;
	fz_backend_run("vultr", CONFIG, "vcg-a100-1c-6g-4vram", "ewr", data, size);
	return 0;
}
