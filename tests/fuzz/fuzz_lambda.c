/* fuzz_lambda: backends/lambda's handling of Lambda Cloud's answers (JSON bodies, error
 * envelopes, statuses) through its real operations — check, offers (availability from
 * /instance-types over the catalog), create (ssh-keys list/add, launch), get, terminate,
 * list — with each HTTP answer scripted by the input (fuzzlib.h: "op args" line, then
 * "=== STATUS" answers). */
#include <stdint.h>

#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONFIG[] = "type: lambda\ncreds:\n  type: api_key\n"
			     "  api_key: secret_0123456789abcdef.fakefakefake\n"
			     "regions: [us-east-1, us-west-1]\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FZ_MAX_INPUT)
		return -1;
	fz_backend_run("lambda", CONFIG, "gpu_1x_a10", "us-west-1", data, size);
	return 0;
}
