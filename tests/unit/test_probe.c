/* Unit tests of core/probe: dstack's GPU names, canned outputs of the probe script (GPU
 * types, multi-GPU, none, AMD JSON in its three shapes, junk, every truncation), and the
 * script itself run by the local /bin/sh. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../core/probe.h"
#include "../../lib/util.h"
#include "suites.h"

/* ---- names ---- */

struct name_case {
	const char *vendor, *product, *want;
};

static const struct name_case NAMES[] = {
	/* dstack's own test vectors (src/tests/_internal/utils/test_gpu.py) */
	{"nvidia", "NVIDIA GeForce RTX 4060 Ti", "RTX4060Ti"},
	{"nvidia", "NVIDIA GeForce RTX 4060", "RTX4060"},
	{"nvidia", "NVIDIA RTX 4000 Ada Generation", "RTX4000Ada"},
	{"nvidia", "NVIDIA L4", "L4"},
	{"nvidia", "NVIDIA GH200 120GB", "GH200"},
	{"nvidia", "NVIDIA A100-SXM4-80GB", "A100"},
	{"nvidia", "NVIDIA A10G", "A10G"},
	{"nvidia", "NVIDIA L40S", "L40S"},
	{"nvidia", "NVIDIA H100 NVL", "H100NVL"},
	{"nvidia", "NVIDIA H100 80GB HBM3", "H100"},
	{"nvidia", "Tesla T4", "T4"},
	{"amd", "MI300X-O", "MI300X"},
	{"amd", "MI300A", "MI300A"},
	/* more */
	{"nvidia", "NVIDIA GeForce RTX 4090", "RTX4090"},
	{"nvidia", "NVIDIA GeForce RTX 3090 Ti", "RTX3090Ti"},
	{"nvidia", "NVIDIA GeForce RTX 4080 SUPER", "RTX4080SUPER"},
	{"nvidia", "NVIDIA RTX A6000", "A6000"},
	{"nvidia", "NVIDIA RTX A4000", "A4000"},
	{"nvidia", "Quadro RTX 6000", "RTX6000"},
	{"nvidia", "Tesla V100-SXM2-16GB", "V100"},
	{"nvidia", "Tesla P100-PCIE-16GB", "P100"},
	{"nvidia", "NVIDIA A100 80GB PCIe", "A100"},
	{"nvidia", "NVIDIA H100 PCIe", "H100"},
	{"nvidia", "NVIDIA H200", "H200"},
	{"nvidia", "NVIDIA L40", "L40"},
	{"nvidia", "NVIDIA B200", "B200"},
	{"nvidia", "  NVIDIA A10G  ", "A10G"},
	{"nvidia", "", ""},
	{"amd", "AMD Instinct MI300X", "MI300X"},
	{"amd", "AMD Instinct MI300X OAM", "MI300X"},
	{"amd", "AMD Instinct MI250X", "MI250X"},
	{"amd", "Instinct MI210", "MI210"},
	{"amd", "AMD Instinct MI325X", "MI325X"},
	{"amd", "amd instinct mi300x", "mi300x"},
	{"amd", "AMD Instinct MI250X/MI250", "AMD Instinct MI250X/MI250"}, /* no match: kept */
	{"amd", "AMD Radeon Graphics", "AMD Radeon Graphics"},
	{"amd", "MI3000", "MI3000"},
};

START_TEST(test_gpu_names)
{
	for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
		char out[64];
		probe_gpu_name(NAMES[i].vendor, NAMES[i].product, out, sizeof(out));
		ck_assert_msg(strcmp(out, NAMES[i].want) == 0, "%s \"%s\": got \"%s\", want \"%s\"",
			      NAMES[i].vendor, NAMES[i].product, out, NAMES[i].want);
	}
	/* a short buffer cuts, never overflows */
	char small[4];
	probe_gpu_name("nvidia", "NVIDIA GeForce RTX 4090", small, sizeof(small));
	ck_assert_str_eq(small, "RTX");
	probe_gpu_name("amd", "AMD Instinct MI300X", small, sizeof(small));
	ck_assert_str_eq(small, "MI3");
	probe_gpu_name("nvidia", NULL, small, sizeof(small));
	ck_assert_str_eq(small, "");
	/* a very long product name is bounded */
	char longname[1000];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	char out[64];
	probe_gpu_name("nvidia", longname, out, sizeof(out));
	ck_assert_uint_eq(strlen(out), 63);
}
END_TEST

/* ---- canned outputs ---- */

#define HEAD                                                                                       \
	"### cpus\n96\n### arch\nx86_64\n### meminfo\nMemTotal:       2113855488 kB\n"             \
	"### disk\nFilesystem     1024-blocks      Used Available Capacity Mounted on\n"           \
	"/dev/nvme0n1p1  1000000000 300000000 600000000      34% /\n"
#define ADDRS                                                                                      \
	"### addrs\n"                                                                              \
	"1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft "         \
	"forever\n"                                                                                \
	"2: eth0    inet 10.0.1.5/24 brd 10.0.1.255 scope global eth0\\       valid_lft forever\n" \
	"3: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\n"

static const char OUT_8XA100[] = HEAD "### nvidia\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "NVIDIA A100-SXM4-80GB, 81920\n"
				      "### amd\n" ADDRS "### end\n";

static int parse(const char *s, struct host_info *hi, char *err, size_t errlen)
{
	return probe_parse(s, strlen(s), hi, err, errlen);
}

START_TEST(test_multi_gpu)
{
	struct host_info hi;
	char err[256];
	ck_assert_int_eq(parse(OUT_8XA100, &hi, err, sizeof(err)), 0);
	ck_assert_int_eq(hi.cpus, 96);
	ck_assert_str_eq(hi.arch, "x86_64");
	ck_assert_uint_eq(hi.memory_mib, 2113855488ull / 1024);
	ck_assert_uint_eq(hi.disk_mib, (300000000ull + 600000000ull) / 1024);
	ck_assert_uint_eq(hi.ngpus, 8);
	for (size_t i = 0; i < hi.ngpus; i++) {
		ck_assert_str_eq(hi.gpus[i].vendor, "nvidia");
		ck_assert_str_eq(hi.gpus[i].name, "A100");
		ck_assert_uint_eq(hi.gpus[i].memory_mib, 81920);
	}
	ck_assert_str_eq(hi.addrs, "10.0.1.5 172.17.0.1");
}
END_TEST

START_TEST(test_gpu_types)
{
	static const char out[] = HEAD "### nvidia\n"
				       "NVIDIA H100 80GB HBM3, 81559\n"
				       "NVIDIA GeForce RTX 4090, 24564\n"
				       "Tesla T4, 15360\n"
				       "NVIDIA L40S, 46068\n"
				       "NVIDIA A10G, 23028\n"
				       "NVIDIA RTX A6000, [N/A]\n"
				       "### amd\n### addrs\n### end\n";
	struct host_info hi;
	ck_assert_int_eq(parse(out, &hi, NULL, 0), 0);
	ck_assert_uint_eq(hi.ngpus, 6);
	const char *names[] = {"H100", "RTX4090", "T4", "L40S", "A10G", "A6000"};
	const uint64_t mem[] = {81559, 24564, 15360, 46068, 23028, 0};
	for (size_t i = 0; i < 6; i++) {
		ck_assert_str_eq(hi.gpus[i].name, names[i]);
		ck_assert_uint_eq(hi.gpus[i].memory_mib, mem[i]);
	}
	ck_assert_str_eq(hi.addrs, "");
}
END_TEST

START_TEST(test_no_gpus)
{
	static const char out[] =
		"### cpus\n2\n### arch\naarch64\n### meminfo\n"
		"MemTotal:        4013452 kB\n### disk\n"
		"Filesystem 1024-blocks Used Available Capacity Mounted on\n"
		"overlay 41152736 9130316 30022420 24% /\n"
		"### nvidia\n### amd\n### addrs\n192.168.1.20 10.8.0.1 fe80::1 ::1\n"
		"### end\n";
	struct host_info hi;
	ck_assert_int_eq(parse(out, &hi, NULL, 0), 0);
	ck_assert_int_eq(hi.cpus, 2);
	ck_assert_str_eq(hi.arch, "aarch64");
	ck_assert_uint_eq(hi.memory_mib, 4013452 / 1024);
	ck_assert_uint_eq(hi.disk_mib, (9130316 + 30022420) / 1024);
	ck_assert_uint_eq(hi.ngpus, 0);
	ck_assert_str_eq(hi.addrs, "192.168.1.20 10.8.0.1"); /* hostname -I form, IPv4 only */
}
END_TEST

/* amd-smi 6.x: a flat array */
static const char AMD_SMI6[] =
	"[\n"
	"  {\"gpu\": 0, \"asic\": {\"market_name\": \"AMD Instinct MI300X\", \"vendor_id\": "
	"\"0x1002\"}, \"vram\": {\"type\": \"HBM\", \"size\": {\"value\": 196592, \"unit\": "
	"\"MB\"}}},\n"
	"  {\"gpu\": 1, \"asic\": {\"market_name\": \"AMD Instinct MI300X\"}, \"vram\": {\"size\": "
	"{\"value\": 196592, \"unit\": \"MB\"}}}\n"
	"]\n";
/* amd-smi 7.x: wrapped */
static const char AMD_SMI7[] =
	"{\"gpu_data\": [{\"gpu\": 0, \"asic\": {\"market_name\": \"MI300X-O\"}, \"vram\": "
	"{\"size\": \"192 GB\"}}]}\n";
/* rocm-smi --showproductname --showmeminfo vram --json */
static const char ROCM_SMI[] =
	"{\"card0\": {\"Card Series\": \"AMD Instinct MI250X\", \"Card Model\": \"0x740c\", "
	"\"VRAM Total Memory (B)\": \"68702699520\", \"VRAM Total Used Memory (B)\": \"10\"}, "
	"\"card1\": {\"Card series\": \"AMD Instinct MI250X\", \"VRAM Total Memory (B)\": "
	"\"68702699520\"}, \"system\": {\"Driver version\": \"6.7.0\"}}\n";

static void amd_case(const char *json, size_t n, const char *name, uint64_t mib)
{
	char *out = xasprintf("%s### nvidia\n### amd\n%s### addrs\n### end\n", HEAD, json);
	struct host_info hi;
	ck_assert_int_eq(parse(out, &hi, NULL, 0), 0);
	ck_assert_uint_eq(hi.ngpus, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_str_eq(hi.gpus[i].vendor, "amd");
		ck_assert_str_eq(hi.gpus[i].name, name);
		ck_assert_uint_eq(hi.gpus[i].memory_mib, mib);
	}
	free(out);
}

START_TEST(test_amd_json)
{
	amd_case(AMD_SMI6, 2, "MI300X", 196592);
	amd_case(AMD_SMI7, 1, "MI300X", 192 * 1024);
	amd_case(ROCM_SMI, 2, "MI250X", 68702699520ull / (1024 * 1024));
	amd_case("{\"not\": \"gpus\"}\n", 0, "", 0);
	amd_case("[1, \"x\", null, {\"asic\": 5}]\n", 0, "", 0);
	amd_case("{ broken json\n", 0, "", 0);
	/* nesting far past cJSON's limit is refused, not recursed into */
	struct buf b;
	buf_init(&b, 1 << 20);
	for (int i = 0; i < 5000; i++)
		ck_assert_int_eq(buf_append(&b, "[", 1), 0);
	ck_assert_int_eq(buf_append(&b, "\n", 1), 0);
	amd_case(b.data, 0, "", 0);
	buf_free(&b);

	/* NVIDIA wins when both are present (an AMD iGPU next to an NVIDIA card) */
	char *out = xasprintf("%s### nvidia\nNVIDIA L4, 23034\n### amd\n%s### addrs\n### end\n",
			      HEAD, AMD_SMI6);
	struct host_info hi;
	ck_assert_int_eq(parse(out, &hi, NULL, 0), 0);
	ck_assert_uint_eq(hi.ngpus, 1);
	ck_assert_str_eq(hi.gpus[0].name, "L4");
	free(out);
}
END_TEST

START_TEST(test_many_gpus_capped)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(buf_printf(&b, "%s", HEAD "### nvidia\n"), 0);
	for (int i = 0; i < PROBE_MAX_GPUS + 10; i++)
		ck_assert_int_eq(buf_printf(&b, "NVIDIA H100 80GB HBM3, 81559\n"), 0);
	ck_assert_int_eq(buf_printf(&b, "### amd\n### addrs\n"), 0);
	for (int i = 0; i < 100; i++) /* more addresses than fit: cut, still valid */
		ck_assert_int_eq(buf_printf(&b, "10.0.%d.%d ", i, i + 1), 0);
	ck_assert_int_eq(buf_printf(&b, "\n### end\n"), 0);
	struct host_info hi;
	ck_assert_int_eq(probe_parse(b.data, b.len, &hi, NULL, 0), 0);
	ck_assert_uint_eq(hi.ngpus, PROBE_MAX_GPUS);
	ck_assert_uint_lt(strlen(hi.addrs), sizeof(hi.addrs));
	ck_assert(strncmp(hi.addrs, "10.0.0.1 10.0.1.2 ", 18) == 0);
	ck_assert(hi.addrs[strlen(hi.addrs) - 1] != ' ');
	buf_free(&b);
}
END_TEST

START_TEST(test_junk)
{
	struct host_info hi;
	char err[256];
	ck_assert_int_eq(parse("", &hi, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "cpus") != NULL);
	ck_assert_int_eq(probe_parse(NULL, 0, &hi, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(parse("bash: sh: command not found\n", &hi, err, sizeof(err)), -EINVAL);

	/* unparsable numbers are errors */
	char *out = xasprintf("%s", OUT_8XA100);
	char *p = strstr(out, "96\n");
	memcpy(p, "9x", 2);
	ck_assert_int_eq(parse(out, &hi, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "cpu") != NULL);
	free(out);
	out = xasprintf("%s", OUT_8XA100);
	p = strstr(out, "2113855488");
	memcpy(p, "-1", 2);
	ck_assert_int_eq(parse(out, &hi, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "memory") != NULL);
	free(out);
	out = xasprintf("%s", OUT_8XA100);
	p = strstr(out, "/dev/nvme0n1p1");
	memcpy(p + 16, "abc", 3);
	ck_assert_int_eq(parse(out, &hi, err, sizeof(err)), -EINVAL);
	ck_assert(strstr(err, "disk") != NULL);
	free(out);
	ck_assert_int_eq(parse("### cpus\n2\n### arch\nx86 64; rm\n### meminfo\nMemTotal: 1 kB\n"
			       "### disk\nfs 1 1 1 1% /\n### nvidia\n### amd\n### addrs\n### end\n",
			       &hi, err, sizeof(err)),
			 -EINVAL);
	ck_assert(strstr(err, "architecture") != NULL);

	/* noise inside GPU sections is skipped; CRLF, NULs and control bytes are fine */
	static const char noisy[] =
		"### cpus\r\n4\r\n### arch\r\nx86_64\r\n### meminfo\r\nMemTotal: 8192000 kB\r\n"
		"### disk\r\nFilesystem 1024-blocks Used Available Capacity Mounted on\r\n"
		"/dev/sda1 100 40 50 45% /\r\n### nvidia\r\n"
		"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\r\n"
		",\r\n , 12\r\na,b,c\r\nNVIDIA T4\x01\x02, 15360\r\n\x00\xff\xfe junk\r\n"
		"### unknown\r\nNVIDIA A100, 1\r\n### amd\r\n### addrs\r\n999.1.1.1 1.2.3 "
		"127.0.0.5 10.1.1.1/8 10.1.1.1\r\n### end\r\n";
	ck_assert_int_eq(probe_parse(noisy, sizeof(noisy) - 1, &hi, err, sizeof(err)), 0);
	ck_assert_int_eq(hi.cpus, 4);
	ck_assert_uint_eq(hi.memory_mib, 8000);
	ck_assert_uint_eq(hi.disk_mib, 0);
	ck_assert_uint_eq(hi.ngpus, 1);
	ck_assert_str_eq(hi.gpus[0].name, "T4"); /* "T4??" after the control bytes */
	ck_assert_str_eq(hi.addrs, "10.1.1.1");

	/* random bytes never crash */
	unsigned seed = 12345;
	char rnd[2048];
	for (int round = 0; round < 300; round++) {
		size_t n = (size_t)(rand_r(&seed) % (int)sizeof(rnd));
		for (size_t i = 0; i < n; i++) {
			int r = rand_r(&seed) % 8;
			rnd[i] = r == 0 ? '\n' : r == 1 ? '#' : (char)(rand_r(&seed) & 0xff);
		}
		(void)probe_parse(rnd, n, &hi, err, sizeof(err));
		/* and with real markers in between */
		char *mix = xasprintf("### cpus\n%.*s\n### end\n", (int)(n / 2), rnd);
		(void)parse(mix, &hi, err, sizeof(err));
		free(mix);
	}
}
END_TEST

START_TEST(test_truncated)
{
	size_t len = strlen(OUT_8XA100);
	const char *end = strstr(OUT_8XA100, "### end");
	size_t complete = (size_t)(end - OUT_8XA100) + strlen("### end");
	struct host_info hi;
	char err[256];
	for (size_t n = 0; n <= len; n++) {
		/* copy so that ASan sees reads past n */
		char *cut = xmalloc(n ? n : 1);
		memcpy(cut, OUT_8XA100, n);
		int r = probe_parse(cut, n, &hi, err, sizeof(err));
		if (n < complete) {
			ck_assert_msg(r == -EINVAL, "cut at %zu parsed", n);
			ck_assert(err[0] != '\0');
		} else {
			ck_assert_int_eq(r, 0);
			ck_assert_uint_eq(hi.ngpus, 8);
		}
		free(cut);
	}
	/* the error names the missing section */
	ck_assert_int_eq(probe_parse(OUT_8XA100,
				     (size_t)(strstr(OUT_8XA100, "### amd") - OUT_8XA100), &hi, err,
				     sizeof(err)),
			 -EINVAL);
	ck_assert(strstr(err, "amd") != NULL);
	ck_assert(strstr(err, "cut short") != NULL);
}
END_TEST

/* ---- the script, run by the local shell ---- */

START_TEST(test_script_runs_locally)
{
	const char *cmd = probe_command();
	ck_assert(strncmp(cmd, "sh -c '", 7) == 0);
	ck_assert(cmd[strlen(cmd) - 1] == '\'');
	ck_assert(strchr(cmd + 7, '\'') == cmd + strlen(cmd) - 1); /* no quote inside */
	ck_assert(strchr(cmd, '!') == NULL);
	ck_assert(strchr(cmd, '\n') == NULL);
	const char *secs[] = {"cpus", "arch", "meminfo", "disk", "nvidia", "amd", "addrs", "end"};
	for (size_t i = 0; i < 8; i++) {
		char m[32];
		ck_assert_int_eq(fmt(m, sizeof(m), "### %s", secs[i]), 0);
		ck_assert_msg(strstr(cmd, m) != NULL, "%s", m);
	}

	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	struct buf b;
	buf_init(&b, 1 << 20);
	char tmp[4096];
	ssize_t n;
	while ((n = read(pfd[0], tmp, sizeof(tmp))) > 0)
		ck_assert_int_eq(buf_append(&b, tmp, (size_t)n), 0);
	close(pfd[0]);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	struct host_info hi;
	char err[256];
	ck_assert_msg(probe_parse(b.data, b.len, &hi, err, sizeof(err)) == 0, "%s\n%s", err,
		      b.data);
	ck_assert_int_gt(hi.cpus, 0);
	ck_assert(hi.arch[0] != '\0');
	ck_assert_uint_gt(hi.memory_mib, 0);
	ck_assert_uint_gt(hi.disk_mib, 0);
	buf_free(&b);
}
END_TEST

Suite *probe_suite(void)
{
	Suite *s = suite_create("probe");
	TCase *names = tcase_create("names");
	TCase *parsing = tcase_create("parse");
	TCase *script = tcase_create("script");
	tcase_add_test(names, test_gpu_names);
	tcase_add_test(parsing, test_multi_gpu);
	tcase_add_test(parsing, test_gpu_types);
	tcase_add_test(parsing, test_no_gpus);
	tcase_add_test(parsing, test_amd_json);
	tcase_add_test(parsing, test_many_gpus_capped);
	tcase_add_test(parsing, test_junk);
	tcase_add_test(parsing, test_truncated);
	tcase_set_timeout(parsing, 30);
	tcase_add_test(script, test_script_runs_locally);
	tcase_set_timeout(script, 30);
	suite_add_tcase(s, names);
	suite_add_tcase(s, parsing);
	suite_add_tcase(s, script);
	return s;
}
