/* fuzz_probe: core/probe, the output of the probe script that SSH hosts send back (cpus,
 * meminfo, disk, nvidia-smi CSV, amd-smi / rocm-smi JSON, arch, addresses). Output is
 * bounded as the SSH runner bounds it; larger inputs are rejected. */
#include <stdint.h>
#include <string.h>

#include "../../core/probe.h"
#include "fuzzlib.h"

/* core/engine.c's SSH_MAX_OUT: the probe's output is cut there */
#define PROBE_OUT_MAX (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct host_info hi;
	char err[512];
	if (size > PROBE_OUT_MAX)
		return -1;
	memset(&hi, 0, sizeof(hi));
	if (probe_parse((const char *)data, size, &hi, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < hi.ngpus; i++) {
			char name[64];
			probe_gpu_name(hi.gpus[i].vendor, hi.gpus[i].name, name, sizeof(name));
		}
	}
	return 0;
}
