/* probe: what a host has (cpus, memory, disk, GPUs), from one shell command's output.
 *
 * probe_command() is the POSIX sh script the engine runs over SSH; its output has sections
 * ("### cpus", "### meminfo", "### disk", "### nvidia", "### amd", "### arch", "### addrs")
 * that probe_parse() reads. GPUs come from `nvidia-smi --query-gpu=name,memory.total
 * --format=csv,noheader,nounits` and `amd-smi static --json` (or rocm-smi) output as in the
 * reference (dstack-core.md §4.4). A missing tool is not an error (no GPUs of that vendor).
 */
#ifndef FLEETFS_PROBE_H
#define FLEETFS_PROBE_H

#include <stddef.h>
#include <stdint.h>

#define PROBE_MAX_GPUS 64

struct probe_gpu {
	char vendor[16];   /* nvidia, amd */
	char name[64];     /* as dstack names it, e.g. "A100", "H100", "RTX4090", "MI300X" */
	uint64_t memory_mib;
};

struct host_info {
	int cpus;
	char arch[16];        /* x86_64, aarch64 */
	uint64_t memory_mib;
	uint64_t disk_mib;    /* free+used size of the filesystem holding / (or the data dir) */
	struct probe_gpu gpus[PROBE_MAX_GPUS];
	size_t ngpus;
	char addrs[256];      /* space-separated IPv4 addresses of the host (not loopback) */
};

const char *probe_command(void);
/* Parse the output of probe_command(). 0, or -EINVAL with a reason (e.g. a section missing
 * or unparsable numbers). */
int probe_parse(const char *out, size_t len, struct host_info *hi, char *err, size_t errlen);
/* dstack's GPU name from a driver's product name ("NVIDIA A100-SXM4-80GB" -> "A100"). */
void probe_gpu_name(const char *vendor, const char *product, char *out, size_t outlen);

#endif
