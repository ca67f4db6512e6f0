/* probe: see probe.h.
 *
 * The script is one line wrapped in `sh -c '...'`, so that it runs the same under any login
 * shell (csh and fish cannot read multi-line POSIX sh), and it has no single quote or `!`
 * inside. Each GPU tool runs under `timeout 60` when that exists, and its output is printed
 * only when it exited 0 (nvidia-smi prints its failures to stdout). "### end" comes last, so
 * a missing end marker means the output was cut short.
 *
 * Parsing is line-based within sections and never trusts lengths: every copy is bounded by
 * its destination. GPU lines that do not parse are skipped (a tool's noise is not an error);
 * cpus, memory and disk must parse. As in dstack (vendor detection order, #4085), NVIDIA
 * GPUs win: AMD ones are reported only on hosts without NVIDIA GPUs.
 */
#include "probe.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../lib/util.h"

#define PROBE_AMD_JSON_MAX (4 * 1024 * 1024)

/* clang-format off */
static const char PROBE_SCRIPT[] =
	"sh -c '"
	"LC_ALL=C; export LC_ALL; "
	"t() { if command -v timeout >/dev/null 2>&1; then timeout 60 \"$@\"; else \"$@\"; fi; }; "
	"echo \"### cpus\"; "
	"nproc 2>/dev/null || grep -c \"^processor\" /proc/cpuinfo; "
	"echo \"### arch\"; "
	"uname -m; "
	"echo \"### meminfo\"; "
	"grep \"^MemTotal:\" /proc/meminfo; "
	"echo \"### disk\"; "
	"df -Pk / 2>/dev/null; "
	"echo \"### nvidia\"; "
	"if command -v nvidia-smi >/dev/null 2>&1 && o=$(t nvidia-smi "
	"--query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null); "
	"then printf \"%s\\n\" \"$o\"; fi; "
	"echo \"### amd\"; "
	"if command -v amd-smi >/dev/null 2>&1 && o=$(t amd-smi static --json --asic --vram "
	"2>/dev/null); then printf \"%s\\n\" \"$o\"; "
	"elif command -v rocm-smi >/dev/null 2>&1 && o=$(t rocm-smi --showproductname "
	"--showmeminfo vram --json 2>/dev/null); then printf \"%s\\n\" \"$o\"; fi; "
	"echo \"### addrs\"; "
	"ip -4 -o addr show 2>/dev/null || hostname -I 2>/dev/null; "
	"echo \"### end\""
	"'";
/* clang-format on */

const char *probe_command(void)
{
	return PROBE_SCRIPT;
}

/* ---- GPU names (dstack's utils/gpu.py) ---- */

/* Replace every occurrence of from by to (no longer than from) in s, in place. */
static void replace_all(char *s, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to);
	char *p = s;
	while ((p = strstr(p, from)) != NULL) {
		memmove(p + tl, p + fl, strlen(p + fl) + 1);
		memcpy(p, to, tl);
		p += tl;
	}
}

static void copy_nospace(char *out, size_t outlen, const char *s)
{
	size_t o = 0;
	for (; *s && o + 1 < outlen; s++)
		if (*s != ' ')
			out[o++] = *s;
	out[o] = '\0';
}

static void copy_span(char *out, size_t outlen, const char *s, size_t n)
{
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

static bool is_word(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* convert_nvidia_gpu_name: drop the brand words, join suffixes, take the first
 * [AHLPTV]<digits><word chars> token ("NVIDIA H100 80GB HBM3" -> "H100"). */
static void nvidia_name(const char *product, char *out, size_t outlen)
{
	char s[128];
	fmt_cut(s, sizeof(s), "%s", product); /* fits: probe_gpu_name's trimmed[128] */
	replace_all(s, "NVIDIA ", "");
	replace_all(s, "Tesla ", "");
	replace_all(s, "Quadro ", "");
	replace_all(s, "GeForce ", "");
	if (strstr(s, "GH200")) {
		fmt_cut(out, outlen, "GH200"); /* fits: out holds a GPU name */
		return;
	}
	if (strstr(s, "RTX A")) {
		replace_all(s, "RTX A", "A");
		for (const char *p = s; *p; p++)
			if (*p == 'A' && isdigit((unsigned char)p[1])) {
				size_t n = 1;
				while (isdigit((unsigned char)p[n]))
					n++;
				copy_span(out, outlen, p, n);
				return;
			}
		copy_nospace(out, outlen, s);
		return;
	}
	replace_all(s, " Ti", "Ti");
	replace_all(s, " NVL", "NVL");
	replace_all(s, " Ada Generation", "Ada");
	replace_all(s, "RTX ", "RTX");
	for (const char *p = s; *p; p++)
		if (strchr("AHLPTV", *p) && isdigit((unsigned char)p[1])) {
			size_t n = 1;
			while (isdigit((unsigned char)p[n]))
				n++;
			while (is_word(p[n]))
				n++;
			copy_span(out, outlen, p, n);
			return;
		}
	copy_nospace(out, outlen, s);
}

static bool skip_word_ci(const char **p, const char *w)
{
	size_t n = strlen(w);
	if (strncasecmp(*p, w, n) != 0)
		return false;
	*p += n;
	return true;
}

/* convert_amd_gpu_name: ^(AMD )?(Instinct )?(MI\d{1,3}[A-Z]?(-\w+)?)(\s|$), case-insensitive;
 * MI300X-O is MI300X; anything else is kept as is. */
static void amd_name(const char *product, char *out, size_t outlen)
{
	const char *p = product;
	(void)skip_word_ci(&p, "AMD ");
	(void)skip_word_ci(&p, "Instinct ");
	const char *name = p;
	size_t n = 0;
	if (strncasecmp(p, "MI", 2) == 0) {
		const char *q = p + 2;
		size_t digits = 0;
		while (isdigit((unsigned char)q[digits]))
			digits++;
		if (digits >= 1 && digits <= 3) {
			q += digits;
			if (isalpha((unsigned char)*q))
				q++;
			bool ok = true;
			if (*q == '-') {
				size_t w = 0;
				while (is_word(q[1 + w]))
					w++;
				if (w == 0)
					ok = false;
				q += 1 + w;
			}
			if (ok && (*q == '\0' || isspace((unsigned char)*q)))
				n = (size_t)(q - p);
		}
	}
	if (n == 0) {
		fmt_cut(out, outlen, "%s", product); /* a name to show: cut to the field */
		return;
	}
	if (n == 8 && strncmp(name, "MI300X-O", 8) == 0)
		n = 6;
	copy_span(out, outlen, name, n);
}

void probe_gpu_name(const char *vendor, const char *product, char *out, size_t outlen)
{
	if (!out || outlen == 0)
		return;
	out[0] = '\0';
	if (!product)
		return;
	while (isspace((unsigned char)*product))
		product++;
	char trimmed[128];
	/* a product name is shown, and its name read from the first words: cut to fit */
	fmt_cut(trimmed, sizeof(trimmed), "%s", product);
	size_t tl = strlen(trimmed);
	while (tl && isspace((unsigned char)trimmed[tl - 1]))
		trimmed[--tl] = '\0';
	if (vendor && strcmp(vendor, "amd") == 0)
		amd_name(trimmed, out, outlen);
	else if (!vendor || strcmp(vendor, "nvidia") == 0)
		nvidia_name(trimmed, out, outlen);
	else
		fmt_cut(out, outlen, "%s", trimmed); /* a name to show: cut to the field */
}

/* ---- sections ---- */

enum sec {
	SEC_CPUS,
	SEC_ARCH,
	SEC_MEMINFO,
	SEC_DISK,
	SEC_NVIDIA,
	SEC_AMD,
	SEC_ADDRS,
	SEC_END,
	SEC_N
};
static const char *const SEC_NAMES[SEC_N] = {"cpus",   "arch", "meminfo", "disk",
					     "nvidia", "amd",  "addrs",	  "end"};

struct span {
	const char *p;
	size_t n;
	bool seen;
};

/* Find each "### name" line; a section runs to the next marker. */
static void split_sections(const char *out, size_t len, struct span sec[SEC_N])
{
	int cur = -1;
	const char *end = out + len;
	const char *line = out;
	while (line < end) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *le = nl ? nl : end;
		size_t ll = (size_t)(le - line);
		if (ll && line[ll - 1] == '\r')
			ll--;
		if (ll > 4 && memcmp(line, "### ", 4) == 0) {
			int found = -1;
			for (int i = 0; i < SEC_N; i++)
				if (ll - 4 == strlen(SEC_NAMES[i]) &&
				    memcmp(line + 4, SEC_NAMES[i], ll - 4) == 0)
					found = i;
			if (found >= 0 && !sec[found].seen) {
				cur = found;
				sec[cur].seen = true;
				sec[cur].p = nl ? nl + 1 : end;
				sec[cur].n = 0;
				line = nl ? nl + 1 : end;
				continue;
			}
			cur = -1; /* unknown or repeated marker: ignore what follows */
		} else if (cur >= 0) {
			sec[cur].n = (size_t)((nl ? nl + 1 : end) - sec[cur].p);
		}
		line = nl ? nl + 1 : end;
	}
}

/* The next line of a span into buf (cut to buflen-1, CR dropped); false at the end. */
static bool next_line(struct span *s, char *buf, size_t buflen)
{
	if (s->n == 0)
		return false;
	const char *nl = memchr(s->p, '\n', s->n);
	size_t ll = nl ? (size_t)(nl - s->p) : s->n;
	size_t adv = nl ? ll + 1 : ll;
	if (ll && s->p[ll - 1] == '\r')
		ll--;
	copy_span(buf, buflen, s->p, ll);
	for (char *c = buf; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = (*c == '\t') ? ' ' : '?';
	s->p += adv;
	s->n -= adv;
	return true;
}

/* Split buf on whitespace into at most max tokens (buf is modified). */
static size_t tokens(char *buf, char **tok, size_t max)
{
	size_t n = 0;
	char *p = buf;
	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (n == max)
			return n + 1; /* more than max */
		tok[n++] = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = '\0';
	}
	return n;
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	size_t i = 0;
	while (isspace((unsigned char)s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

static int parse_u64(const char *s, uint64_t *v)
{
	long long x;
	if (num_parse_ll(s, 0, (long long)1 << 53, &x))
		return -EINVAL;
	*v = (uint64_t)x;
	return 0;
}

static int parse_cpus(struct span s, struct host_info *hi)
{
	char line[64];
	long long v;
	while (next_line(&s, line, sizeof(line))) {
		trim(line);
		if (!line[0])
			continue;
		if (num_parse_ll(line, 1, 1 << 20, &v))
			return -EINVAL;
		hi->cpus = (int)v;
		return 0;
	}
	return -EINVAL;
}

static int parse_arch(struct span s, struct host_info *hi)
{
	char line[64];
	while (next_line(&s, line, sizeof(line))) {
		trim(line);
		if (!line[0])
			continue;
		size_t n = strlen(line);
		if (n >= sizeof(hi->arch))
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			if (!is_word(line[i]) && line[i] != '-')
				return -EINVAL;
		memcpy(hi->arch, line, n + 1);
		return 0;
	}
	return -EINVAL;
}

static int parse_meminfo(struct span s, struct host_info *hi)
{
	char line[128];
	char *tok[4];
	while (next_line(&s, line, sizeof(line))) {
		size_t n = tokens(line, tok, 4);
		uint64_t kb;
		if (n >= 2 && strcmp(tok[0], "MemTotal:") == 0) {
			if (parse_u64(tok[1], &kb) || (n >= 3 && strcmp(tok[2], "kB") != 0) ||
			    n > 3)
				return -EINVAL;
			hi->memory_mib = kb / 1024;
			return 0;
		}
	}
	return -EINVAL;
}

/* df -Pk: "Filesystem 1024-blocks Used Available Capacity Mounted-on"; the filesystem name
 * may hold spaces, so fields count from the end. Size = used + available. */
static int parse_disk(struct span s, struct host_info *hi)
{
	char line[512];
	char *tok[32];
	while (next_line(&s, line, sizeof(line))) {
		size_t n = tokens(line, tok, 32);
		uint64_t total, used, avail;
		if (n < 6 || n > 32)
			continue;
		if (parse_u64(tok[n - 5], &total) || parse_u64(tok[n - 4], &used) ||
		    parse_u64(tok[n - 3], &avail))
			continue; /* the header */
		hi->disk_mib = (used + avail) / 1024;
		return 0;
	}
	return -EINVAL;
}

static void add_gpu(struct host_info *hi, const char *vendor, const char *product, uint64_t mib)
{
	if (hi->ngpus >= PROBE_MAX_GPUS)
		return;
	struct probe_gpu *g = &hi->gpus[hi->ngpus];
	char name[sizeof(g->name)];
	probe_gpu_name(vendor, product, name, sizeof(name));
	if (!name[0])
		return;
	memset(g, 0, sizeof(*g));
	/* fits: a vendor the parsers name (nvidia, amd ...); name is as large */
	fmt_cut(g->vendor, sizeof(g->vendor), "%s", vendor);
	fmt_cut(g->name, sizeof(g->name), "%s", name);
	g->memory_mib = mib;
	hi->ngpus++;
}

/* "NVIDIA A100-SXM4-80GB, 81920" per GPU; the memory may be "[N/A]". */
static void parse_nvidia(struct span s, struct host_info *hi)
{
	char line[256];
	while (next_line(&s, line, sizeof(line))) {
		char *comma = strrchr(line, ',');
		if (!comma)
			continue;
		*comma = '\0';
		char *mem = comma + 1;
		trim(line);
		trim(mem);
		uint64_t mib = 0;
		if (!line[0] || strchr(line, ','))
			continue;
		if (parse_u64(mem, &mib))
			mib = 0;
		add_gpu(hi, "nvidia", line, mib);
	}
}

/* A size as amd-smi prints it: a number of MiB, {"value": N, "unit": "MB"}, or "N MB". */
static uint64_t amd_size_mib(const cJSON *v)
{
	double x = -1;
	const char *unit = "MB";
	char ubuf[8];
	if (cJSON_IsNumber(v)) {
		x = v->valuedouble;
	} else if (cJSON_IsObject(v)) {
		const cJSON *val = cJSON_GetObjectItem(v, "value");
		const cJSON *u = cJSON_GetObjectItem(v, "unit");
		if (cJSON_IsNumber(val))
			x = val->valuedouble;
		else if (cJSON_IsString(val))
			x = strtod(val->valuestring, NULL);
		if (cJSON_IsString(u))
			unit = u->valuestring;
	} else if (cJSON_IsString(v)) {
		char *end = NULL;
		x = strtod(v->valuestring, &end);
		if (end == v->valuestring)
			return 0;
		while (*end == ' ')
			end++;
		if (fmt(ubuf, sizeof(ubuf), "%s", end))
			return 0; /* not a unit: as for a value that is not a number */
		unit = ubuf;
	}
	if (!(x > 0) || x > 1e12)
		return 0;
	if (strcasecmp(unit, "GB") == 0 || strcasecmp(unit, "GiB") == 0)
		x *= 1024;
	else if (strcasecmp(unit, "KB") == 0 || strcasecmp(unit, "KiB") == 0)
		x /= 1024;
	else if (strcasecmp(unit, "B") == 0)
		x /= 1024.0 * 1024.0;
	return (uint64_t)x;
}

static const char *json_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItem(o, key); /* case-insensitive */
	return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static void parse_amd_gpu(struct host_info *hi, const cJSON *g)
{
	if (!cJSON_IsObject(g))
		return;
	const cJSON *asic = cJSON_GetObjectItem(g, "asic");
	const char *name = json_str(asic, "market_name");
	if (name) { /* amd-smi */
		const cJSON *vram = cJSON_GetObjectItem(g, "vram");
		add_gpu(hi, "amd", name, amd_size_mib(cJSON_GetObjectItem(vram, "size")));
		return;
	}
	name = json_str(g, "Card Series"); /* rocm-smi */
	if (!name)
		name = json_str(g, "Card SKU");
	if (!name)
		return;
	const char *bytes = json_str(g, "VRAM Total Memory (B)");
	uint64_t b = 0;
	if (bytes && parse_u64(bytes, &b))
		b = 0;
	add_gpu(hi, "amd", name, b / (1024 * 1024));
}

/* amd-smi 6: [ {gpu...}, ... ]; amd-smi 7: {"gpu_data": [...]}; rocm-smi: {"card0": {...}}. */
static void parse_amd(struct span s, struct host_info *hi)
{
	if (s.n == 0 || s.n > PROBE_AMD_JSON_MAX)
		return;
	cJSON *j = cJSON_ParseWithLength(s.p, s.n);
	if (!j)
		return;
	const cJSON *arr = cJSON_IsArray(j) ? j : cJSON_GetObjectItem(j, "gpu_data");
	const cJSON *g;
	if (cJSON_IsArray(arr)) {
		cJSON_ArrayForEach(g, arr)
		{
			parse_amd_gpu(hi, g);
		}
	} else if (cJSON_IsObject(j)) {
		cJSON_ArrayForEach(g, j)
		{
			if (g->string && strncasecmp(g->string, "card", 4) == 0)
				parse_amd_gpu(hi, g);
		}
	}
	cJSON_Delete(j);
}

static void add_addr(struct host_info *hi, char *a)
{
	char *slash = strchr(a, '/');
	if (slash)
		*slash = '\0';
	struct in_addr in;
	if (inet_pton(AF_INET, a, &in) != 1 || (ntohl(in.s_addr) >> 24) == 127)
		return;
	size_t cur = strlen(hi->addrs);
	/* no duplicates */
	for (const char *p = hi->addrs; (p = strstr(p, a)) != NULL; p++)
		if ((p == hi->addrs || p[-1] == ' ') && (p[strlen(a)] == ' ' || !p[strlen(a)]))
			return;
	size_t need = (cur ? 1 : 0) + strlen(a) + 1;
	if (cur + need > sizeof(hi->addrs))
		return;
	/* fits: checked above */
	fmt_cut(hi->addrs + cur, sizeof(hi->addrs) - cur, "%s%s", cur ? " " : "", a);
}

/* `ip -4 -o addr`: "2: eth0    inet 10.0.1.5/24 brd ..."; `hostname -I`: "10.0.1.5 fe80::1". */
static void parse_addrs(struct span s, struct host_info *hi)
{
	char line[512];
	char *tok[64];
	while (next_line(&s, line, sizeof(line))) {
		size_t n = tokens(line, tok, 64);
		if (n > 64)
			n = 64;
		bool ip = false;
		for (size_t i = 0; i + 1 < n; i++)
			if (strcmp(tok[i], "inet") == 0) {
				add_addr(hi, tok[i + 1]);
				ip = true;
				break;
			}
		if (!ip)
			for (size_t i = 0; i < n; i++)
				add_addr(hi, tok[i]);
	}
}

int probe_parse(const char *out, size_t len, struct host_info *hi, char *err, size_t errlen)
{
	struct span sec[SEC_N];
	memset(sec, 0, sizeof(sec));
	if (err && errlen)
		err[0] = '\0';
	if (!hi)
		return -EINVAL;
	memset(hi, 0, sizeof(*hi));
	if (!out)
		len = 0;
	split_sections(out ? out : "", len, sec);
	for (int i = 0; i < SEC_N; i++)
		if (!sec[i].seen) {
			if (err && errlen)
				fmt_cut(err, errlen, "probe output has no \"%s\" section%s",
					SEC_NAMES[i], sec[SEC_END].seen ? "" : " (cut short?)");
			return -EINVAL;
		}
	const char *bad = NULL;
	if (parse_cpus(sec[SEC_CPUS], hi))
		bad = "cpu count";
	else if (parse_arch(sec[SEC_ARCH], hi))
		bad = "architecture";
	else if (parse_meminfo(sec[SEC_MEMINFO], hi))
		bad = "memory size (MemTotal)";
	else if (parse_disk(sec[SEC_DISK], hi))
		bad = "disk size (df)";
	if (bad) {
		if (err && errlen)
			fmt_cut(err, errlen, "probe output: unparsable %s", bad);
		memset(hi, 0, sizeof(*hi));
		return -EINVAL;
	}
	parse_nvidia(sec[SEC_NVIDIA], hi);
	if (hi->ngpus == 0)
		parse_amd(sec[SEC_AMD], hi);
	parse_addrs(sec[SEC_ADDRS], hi);
	return 0;
}
