/* fuzz_fleetspec: core/fleetspec, a fleet's YAML (fleets/<name>.yml: backend and SSH
 * fleets, the resources grammar, identity files read through the writer's context), and the
 * in-place update check of two parses. The input is the file; it is parsed as fleet "gpu"
 * and, when valid, checked as an update of itself and of the examples' cloud fleet. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/fleetspec.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CLOUD[] = "type: fleet\nnodes: 2\nresources:\n  gpu: H100:8\n  disk: 500GB..\n"
			    "spot_policy: auto\nmax_price: 40\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct fileref_ctx *ctx = fz_writer_ctx();
	static struct fleet_spec *cloud;
	struct fleet_spec *f = NULL, *g = NULL;
	char err[1024];
	if (size > YDOC_MAX_BYTES + 1)
		return -1;
	if (!cloud && fleetspec_parse(CLOUD, strlen(CLOUD), "cloud.yml", "cloud", ctx, &cloud, err,
				      sizeof(err)))
		abort();
	if (fleetspec_parse((const char *)data, size, "projects/main/fleets/gpu.yml", "gpu", ctx, &f,
			    err, sizeof(err)))
		return 0;
	if (fleetspec_update_check(f, f, err, sizeof(err)))
		abort(); /* a spec can always replace itself in place */
	(void)fleetspec_update_check(cloud, f, err, sizeof(err));
	(void)fleetspec_update_check(f, cloud, err, sizeof(err));
	if (fleetspec_parse((const char *)data, size, "gpu.yml", "gpu", ctx, &g, err, sizeof(err)))
		abort(); /* the same bytes parse the same way */
	fleetspec_free(g);
	fleetspec_free(f);
	return 0;
}
