/* vultr: the Vultr provider (backend type "vultr"), API v2.
 *
 * Facts: reference providers-gpuclouds.md §3 and the published spec (reference/specs/
 * vultr.json); where they differ, the spec wins, and where the spec is inconsistent this reads
 * both forms:
 * - GET /plans-metal: the spec's schema names the list "plans", its example (and gpuhunt, and
 *   the API) "plans_metal"; both are read. Its "disk" is a string in the schema, a number in
 *   the example; both are read.
 * - POST /bare-metals answers "baremetal" in the schema, "bare_metal" in the example (and
 *   dstack); POST /vpcs answers "vpc" in the schema, "network" in the example. Both read.
 * - The plans' "hourly_cost", "gpu_vram_gb" and "gpu_type" are not in the spec (gpuhunt reads
 *   them); a plan without hourly_cost is priced monthly_cost / 730 (gpuhunt's older rule).
 * - POST /bare-metals lists no attach_vpc in the spec; dstack sends it, and so does this.
 *
 * - Offers: live, like dstack (gpuhunt's online Vultr provider): GET /plans?type=all and GET
 *   /plans-metal, every page (per_page=500, the cursor in meta.links.next), without the API key
 *   (the plans are public). One offer per plan and location, cut to the config's regions;
 *   gpuhunt's conversion (VM plans vc2/vhf/vhp/voc are CPU-only, vcg are GPU VMs whose GPU is
 *   named by gpu_type; bare-metal GPU plans come from a table, unknown ones skipped), then
 *   dstack's filter (plan name families, no vbm-4c-32gb, no spot). Always `available`.
 * - Create: a VPC per region (description fleetfs-vpc-<region>, found or made), then one
 *   POST /instances or /bare-metals with the label (the cloud name), the cloud-init user data
 *   (base64), the VPC and fleetfs's tags. Images as dstack's: the "docker" marketplace image,
 *   Ubuntu 22.04 (os 1743) for GPU VMs. The user is root; the key goes in with cloud-init.
 * - backend_data says which API a VM lives in: {"plan_type":"bare-metal"|"vm_instance"}
 *   (dstack's). Without it, get and terminate try instances, then bare metals.
 * - Terminate: DELETE; an answer 404 is success (dstack retries it as an error; fleetfs
 *   confirms with get that the VM is gone, so not-found is what was asked for).
 *
 * Errors: Vultr answers {"error": "<text>", "status": N}; err is then "vultr: <text>". 401/403
 * are -EACCES; 400/422 whose text speaks of capacity or availability are -ENOSPC, other 4xx
 * -EINVAL; 404 -ENOENT; 5xx -EIO. Nothing here puts the API key in err (it is also masked
 * out of whatever the provider says) and no request body is ever logged.
 */
#include "backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "http.h"
#include "../lib/enc.h"

#define VULTR_API "https://api.vultr.com/v2"
#define VULTR_USER "root"
#define VULTR_SSH_PORT 22
#define VULTR_OWN_PREFIX "fleetfs-"
#define VULTR_OWN_TAG "fleetfs"
#define VULTR_VPC_PREFIX "fleetfs-vpc-"
#define VULTR_LABEL_MAX 64   /* dstack's MAX_INSTANCE_NAME_LEN for Vultr */
#define VULTR_PER_PAGE "500" /* the spec's maximum */
#define VULTR_MAX_PAGES 1000 /* a list longer than this is not an answer */
#define VULTR_MAX_ITEMS 500000
#define VULTR_CURSOR_MAX 1024
#define VULTR_GPU_OS_ID 1743 /* Ubuntu 22.04: GPU images ship Docker (dstack) */
#define VULTR_IMAGE "docker" /* the "Docker on Ubuntu 22.04" marketplace image */
#define VULTR_HOURS_PER_MONTH 730.0
#define VULTR_USER_DATA_MAX (1u << 20)

/* One operation's view of the provider: the API base and the key (a secret, NULL for the
 * public calls). */
enum vul_kind { VK_UNKNOWN = 0, VK_VM, VK_METAL };

/* ------------------------------------------------------------------ JSON helpers */

/* The number member k of o (a JSON number, or a string holding only a number: the spec types
 * some numbers as strings) into *out; false when absent or not a finite number. */
static bool jnum(const cJSON *o, const char *k, double *out)
{
	const cJSON *v = backend_jget(o, k);
	if (cJSON_IsNumber(v)) {
		*out = v->valuedouble;
		return isfinite(*out);
	}
	if (!cJSON_IsString(v) || !v->valuestring || !*v->valuestring)
		return false;
	char *end = NULL;
	errno = 0;
	double d = strtod(v->valuestring, &end);
	if (errno || *end || !isfinite(d))
		return false;
	*out = d;
	return true;
}

/* ------------------------------------------------------------------ calls and errors */

/* Set up v for one operation: the API base, and the key when need_key (the plans are public).
 * 0, or -EINVAL/-ENAMETOOLONG with err. Close with backend_api_close. */
static int vul_open(struct bk_api *v, const struct backend_ctx *ctx, bool need_key, char *err,
		    size_t errlen)
{
	return backend_api_open(ctx, VULTR_API, need_key, v, err, errlen);
}

/* Does Vultr's error text say the plan cannot be had there now? */
static bool vul_no_capacity(const char *msg)
{
	static const char *const words[] = {"capacity", "unavailable", "not available", "sold out",
					    "out of stock"};
	for (size_t i = 0; msg && i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasestr(msg, words[i]))
			return true;
	return false;
}

/* The errno of an error answer (status, Vultr's error text): a 400/422 that speaks of
 * capacity is no capacity, the rest goes by the status. */
static int vul_errno(long status, const char *msg)
{
	if ((status == 400 || status == 422) && vul_no_capacity(msg))
		return -ENOSPC;
	return backend_http_errno(status);
}

/* One API call: method on base + path (may carry a query) with the key when auth, a JSON body
 * (may be NULL). 0 on a 2xx, with *doc the answer (a JSON object; NULL for an empty 204;
 * caller frees with cJSON_Delete); else -errno with err (vul_errno's meanings, -EPROTO for a
 * 2xx without the expected object, or the HTTP client's transport errors) and *doc NULL. */
static int vul_call(struct bk_api *v, const char *method, const char *path, const cJSON *body,
		    bool auth, cJSON **doc, char *err, size_t errlen)
{
	char url[2048], e[HTTP_ERR_MAX] = "";
	int plen = (int)strcspn(path, "?"); /* errors name the path, not the query */
	long status = 0;
	cJSON *d = NULL;
	int r;
	*doc = NULL;
	if (fmt(url, sizeof(url), "%s%s", v->base, path))
		return backend_fail(err, errlen, -ENAMETOOLONG, "vultr: URL too long");
	r = backend_json(v->ctx, method, url, auth ? v->key : NULL, body, &status, &d, e,
			 sizeof(e));
	if (r) {
		fmt_cut(err, errlen, "vultr: %s", e); /* e names the method and the URL */
	} else if (status < 200 || status > 299) {
		const char *msg = backend_jstr(d, "error");
		char m[400];
		r = vul_errno(status, msg);
		if (msg && *msg) {
			str_sanitize(m, sizeof(m), msg);
			fmt_cut(err, errlen, "vultr: %s", m);
		} else {
			fmt_cut(err, errlen, "vultr: %s %.*s: HTTP %ld", method, plen, path,
				status);
		}
	} else if (!cJSON_IsObject(d) && !(status == 204 && !d)) {
		r = -EPROTO;
		fmt_cut(err, errlen, "vultr: %s %.*s: HTTP %ld without a JSON object", method, plen,
			path, status);
	}
	if (r) {
		cJSON_Delete(d);
		d = NULL;
		backend_redact(v->key, err);
	}
	*doc = d;
	return r;
}

/* Every item of a paginated list: GET path (it has a query already) page after page, the
 * next page's cursor from meta.links.next, each page's array member (or alt, when the page has
 * no member) moved into *items, a new array the caller frees (cJSON_Delete). 0, or -errno
 * with err (vul_call's, -EPROTO for a page without the list or a cursor that does not move,
 * -EFBIG past VULTR_MAX_PAGES pages or VULTR_MAX_ITEMS items) and *items NULL. */
static int vul_list(struct bk_api *v, const char *path, const char *member, const char *alt, bool auth,
		    cJSON **items, char *err, size_t errlen)
{
	cJSON *all = cJSON_CreateArray(), *doc = NULL;
	char *cursor = NULL;
	int r = 0, count = 0;
	int plen = (int)strcspn(path, "?");
	for (int page = 0; !r; page++) {
		char *p = NULL;
		struct buf esc;
		buf_init(&esc, 4096);
		if (page == VULTR_MAX_PAGES) {
			r = backend_fail(err, errlen, -EFBIG, "vultr: GET %.*s: more than %d pages",
				     plen, path, VULTR_MAX_PAGES);
			break;
		}
		if (cursor && pct_encode(&esc, cursor, strlen(cursor), 0)) {
			buf_free(&esc);
			r = backend_fail(err, errlen, -EPROTO, "vultr: a page cursor too long");
			break;
		}
		p = cursor ? xasprintf("%s&cursor=%.*s", path, (int)esc.len, esc.data ? esc.data : "")
			   : xstrdup(path);
		buf_free(&esc);
		r = vul_call(v, "GET", p, NULL, auth, &doc, err, errlen);
		free(p);
		if (r)
			break;
		cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, member);
		if (!arr && alt)
			arr = cJSON_GetObjectItemCaseSensitive(doc, alt);
		if (!cJSON_IsArray(arr)) {
			r = backend_fail(err, errlen, -EPROTO, "vultr: GET %.*s: %s is not a list",
				     plen, path, member);
			break;
		}
		for (cJSON *it; (it = cJSON_DetachItemFromArray(arr, 0));) {
			cJSON_AddItemToArray(all, it);
			count++;
		}
		if (count > VULTR_MAX_ITEMS) {
			r = backend_fail(err, errlen, -EFBIG, "vultr: GET %.*s: more than %d items",
				     plen, path, VULTR_MAX_ITEMS);
			break;
		}
		const char *next = backend_jstr(backend_jget(backend_jget(doc, "meta"), "links"), "next");
		if (!next || !*next)
			break;
		if (strlen(next) > VULTR_CURSOR_MAX || (cursor && !strcmp(cursor, next))) {
			r = backend_fail(err, errlen, -EPROTO,
				     "vultr: GET %.*s: the page cursor is not usable", plen, path);
			break;
		}
		free(cursor);
		cursor = xstrdup(next);
		cJSON_Delete(doc);
		doc = NULL;
	}
	cJSON_Delete(doc);
	free(cursor);
	if (r) {
		cJSON_Delete(all);
		all = NULL;
	}
	*items = all;
	return r;
}

/* ------------------------------------------------------------------ offers */

struct vul_gpu {
	const char *name;
	const char *vendor;
	int memory_gb; /* per GPU */
};

/* gpuhunt's known accelerators that Vultr sells or may (names compared case-insensitively);
 * Vultr's A100s are the 80 GB ones (gpuhunt forces it). */
static const struct vul_gpu known_gpus[] = {
	{"A10", "nvidia", 24},	 {"A16", "nvidia", 16},	    {"A40", "nvidia", 48},
	{"A100", "nvidia", 80},	 {"A10G", "nvidia", 24},    {"A6000", "nvidia", 48},
	{"H100", "nvidia", 80},	 {"H100NVL", "nvidia", 94}, {"H200", "nvidia", 141},
	{"B200", "nvidia", 180}, {"GB200", "nvidia", 186},  {"B300", "nvidia", 270},
	{"GH200", "nvidia", 96}, {"L4", "nvidia", 24},	    {"L40", "nvidia", 48},
	{"L40S", "nvidia", 48},	 {"T4", "nvidia", 16},	    {"RTX6000Ada", "nvidia", 48},
	{"MI210", "amd", 64},	 {"MI250", "amd", 128},	    {"MI250X", "amd", 128},
	{"MI300A", "amd", 128},	 {"MI300X", "amd", 192},    {"MI325X", "amd", 288},
	{"MI350X", "amd", 288},	 {"MI355X", "amd", 288},
};

/* gpuhunt's BARE_METAL_GPU_DETAILS: the GPUs of Vultr's bare-metal GPU plans. */
static const struct {
	const char *plan;
	int count;
	const char *gpu;
} metal_gpus[] = {
	{"vbm-48c-1024gb-4-a100-gpu", 4, "A100"},  {"vbm-112c-2048gb-8-h100-gpu", 8, "H100"},
	{"vbm-112c-2048gb-8-a100-gpu", 8, "A100"}, {"vbm-64c-2048gb-8-l40-gpu", 8, "L40S"},
	{"vbm-72c-480gb-gh200-gpu", 1, "GH200"},   {"vbm-256c-2048gb-8-mi300x-gpu", 8, "MI300X"},
};

static const struct vul_gpu *vul_known_gpu(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(known_gpus) / sizeof(known_gpus[0]); i++)
		if (strlen(known_gpus[i].name) == len &&
		    !strncasecmp(known_gpus[i].name, name, len))
			return &known_gpus[i];
	return NULL;
}

/* NVIDIA's superchips (GH200, GB200: an ARM CPU with the GPU) make the plan ARM. */
static const char *vul_arch(const struct vul_gpu *g)
{
	return g && (g->name[0] == 'G') && (g->name[1] == 'H' || g->name[1] == 'B') ? "arm" : "x86";
}

/* dstack's filter of Vultr offers (backends/vultr/compute.py _supported_instances): the plan
 * families fleetfs can run on, as whole-name matches. vbm-4c-32gb cannot join a VPC. */
static const char vul_families[] = "^("
				   "vbm-[0-9]+c-[0-9]+gb-[0-9]+-(a100|h100|l40|mi300x)-gpu"
				   "|vbm-[0-9]+c-[0-9]+gb-amd"
				   "|vbm-[0-9]+c-[0-9]+gb(-v[0-9]+)?"
				   "|vcg-(a16|a40|l40s|a100)-[0-9]+c-[0-9]+g-[0-9]+vram"
				   "|vc2-[0-9]+c-[0-9]+gb(-sc1)?"
				   "|vhf-[0-9]+c-[0-9]+gb(-sc1)?"
				   "|vhp-[0-9]+c-[0-9]+gb-(intel|amd)(-sc1)?"
				   "|voc-[cgms]-[0-9]+c-[0-9]+gb-[0-9]+s-amd(-sc1)?"
				   ")$";
static regex_t families_rx;
static int families_ok = -1;
static pthread_once_t families_once = PTHREAD_ONCE_INIT;

static void vul_families_init(void)
{
	families_ok = regcomp(&families_rx, vul_families, REG_EXTENDED | REG_NOSUB) == 0;
}

static bool vul_supported(const char *plan)
{
	pthread_once(&families_once, vul_families_init);
	if (!strcmp(plan, "vbm-4c-32gb"))
		return false;
	return families_ok == 1 && regexec(&families_rx, plan, 0, NULL, 0) == 0;
}

/* What one plan offers, before it is repeated per location. */
struct vul_plan {
	const char *id;
	double price; /* USD per hour */
	int cpus;
	double ram_mb;
	double disk_gb;
	const struct vul_gpu *gpu;
	int gpu_count;
	double gpu_memory_gb; /* per GPU */
};

/* A price: hourly_cost, else monthly_cost / 730. */
static bool vul_price(const cJSON *plan, double *price)
{
	double m;
	if (jnum(plan, "hourly_cost", price))
		return true;
	if (!jnum(plan, "monthly_cost", &m))
		return false;
	*price = m / VULTR_HOURS_PER_MONTH;
	return true;
}

/* The numbers of a plan are what a machine can have (an absurd answer is skipped, never
 * cast: a double out of int's range is undefined behaviour). */
static bool vul_sane(double cpus, const struct vul_plan *p)
{
	return cpus >= 0 && cpus <= 1e6 && p->ram_mb >= 0 && p->ram_mb <= 1e12 &&
	       p->price >= 0 && p->price <= 1e9;
}

static bool vul_disk_ok(const struct vul_plan *p)
{
	return p->disk_gb >= 0 && p->disk_gb <= 1e9;
}

/* A VM plan (GET /plans) as gpuhunt reads it; false to skip it. */
static bool vul_vm_plan(const cJSON *plan, struct vul_plan *p)
{
	const char *type = backend_jstr(plan, "type");
	double cpus = 0;
	memset(p, 0, sizeof(*p));
	p->id = backend_jstr(plan, "id");
	if (!p->id || !type || !vul_price(plan, &p->price) || !jnum(plan, "vcpu_count", &cpus) ||
	    !jnum(plan, "ram", &p->ram_mb) || !vul_sane(cpus, p))
		return false;
	p->cpus = (int)cpus;
	if (!jnum(plan, "disk", &p->disk_gb))
		p->disk_gb = 0;
	if (!vul_disk_ok(p))
		return false;
	if (!strcmp(type, "vc2") || !strcmp(type, "vhf") || !strcmp(type, "vhp") ||
	    !strcmp(type, "voc"))
		return true;
	if (strcmp(type, "vcg"))
		return false;
	/* "NVIDIA_A100" -> A100: the word after the first '_' */
	const char *gt = backend_jstr(plan, "gpu_type"), *us = gt ? strchr(gt, '_') : NULL;
	double total = 0;
	if (!us || !jnum(plan, "gpu_vram_gb", &total) || total < 0 || total > 1e9)
		return false;
	p->gpu = vul_known_gpu(us + 1, strcspn(us + 1, "_"));
	if (!p->gpu)
		return false;
	/* fractional GPUs (2 GB of an A16) count as one */
	double n = floor(total / p->gpu->memory_gb);
	p->gpu_count = (int)(n < 1 ? 1 : n > OFFER_MAX_GPUS ? OFFER_MAX_GPUS : n);
	p->gpu_memory_gb = total / p->gpu_count;
	return true;
}

/* A bare-metal plan (GET /plans-metal) as gpuhunt reads it; false to skip it. */
static bool vul_metal_plan(const cJSON *plan, struct vul_plan *p)
{
	double cpus = 0;
	memset(p, 0, sizeof(*p));
	p->id = backend_jstr(plan, "id");
	if (!p->id || !vul_price(plan, &p->price) || !jnum(plan, "ram", &p->ram_mb))
		return false;
	if (!jnum(plan, "cpu_threads", &cpus) && !jnum(plan, "cpu_count", &cpus))
		return false;
	if (!vul_sane(cpus, p))
		return false;
	p->cpus = (int)cpus;
	if (!jnum(plan, "disk", &p->disk_gb))
		p->disk_gb = 0;
	if (!vul_disk_ok(p))
		return false;
	if (!strstr(p->id, "gpu"))
		return true;
	for (size_t i = 0; i < sizeof(metal_gpus) / sizeof(metal_gpus[0]); i++)
		if (!strcmp(metal_gpus[i].plan, p->id)) {
			p->gpu = vul_known_gpu(metal_gpus[i].gpu, strlen(metal_gpus[i].gpu));
			p->gpu_count = metal_gpus[i].count;
			p->gpu_memory_gb = p->gpu ? p->gpu->memory_gb : 0;
			return p->gpu != NULL;
		}
	return false; /* a GPU plan whose GPUs are not known */
}

/* One offer per location of the plan. */
static int vul_push_plan(const struct bk_offers_req *req, const cJSON *plan,
			 const struct vul_plan *p, struct offer_list *l)
{
	const cJSON *loc;
	if (p->price <= 0 || !vul_supported(p->id) || p->cpus < 0 || p->ram_mb < 0)
		return 0; /* the free tier would rank above every paid plan (gpuhunt) */
	cJSON_ArrayForEach(loc, backend_jget(plan, "locations"))
	{
		if (!cJSON_IsString(loc) || !loc->valuestring || !*loc->valuestring)
			continue;
		struct offer o = {
			.backend = req->ctx.name,
			.type = req->ctx.type,
			.region = loc->valuestring,
			.instance = p->id,
			.cpu_arch = vul_arch(p->gpu),
			.gpu_vendor = p->gpu ? p->gpu->vendor : "",
			.gpu_name = p->gpu ? p->gpu->name : "",
			.availability = "available",
			.source = "api",
			.price = p->price,
			.fetched_at = req->now,
			.memory_mib = (uint64_t)llround(p->ram_mb), /* MB: gpuhunt's ram/1024 GB */
			.gpu_memory_mib = p->gpu ? (uint64_t)llround(p->gpu_memory_gb * 1024) : 0,
			.cpus = p->cpus,
			.gpu_count = p->gpu ? p->gpu_count : 0,
			.spot = false,
		};
		if (p->disk_gb > 0) {
			o.disk_fixed = true;
			o.disk_mib = (uint64_t)llround(p->disk_gb * 1024);
		} else {
			o.disk_mib = 100 * 1024; /* dstack's default disk request, 100GB.. */
		}
		int r = offer_list_push(l, &o);
		if (r)
			return r;
	}
	return 0;
}

static int vultr_offers(const struct bk_offers_req *req, struct bk_offers_res *res, char *err,
			size_t errlen)
{
	struct bk_api v;
	cJSON *plans = NULL, *metal = NULL;
	const cJSON *it;
	struct vul_plan p;
	int r = vul_open(&v, &req->ctx, false, err, errlen);
	if (!r)
		r = vul_list(&v, "/plans?type=all&per_page=" VULTR_PER_PAGE, "plans", NULL, false,
			     &plans, err, errlen);
	if (!r)
		r = vul_list(&v, "/plans-metal?per_page=" VULTR_PER_PAGE, "plans_metal", "plans",
			     false, &metal, err, errlen);
	cJSON_ArrayForEach(it, (r ? NULL : metal))
	{
		if (!r && vul_metal_plan(it, &p))
			r = vul_push_plan(req, it, &p, &res->list);
	}
	cJSON_ArrayForEach(it, (r ? NULL : plans))
	{
		if (!r && vul_vm_plan(it, &p))
			r = vul_push_plan(req, it, &p, &res->list);
	}
	if (r == -ENOMEM)
		fmt_cut(err, errlen, "vultr: out of memory");
	if (!r) {
		backend_cut_regions(&req->ctx, &res->list);
		fmt_cut(res->source, sizeof(res->source), "%s", v.base); /* fits: 512 into 1024 */
		res->version[0] = '\0';
		res->unchanged = false;
	} else {
		bk_offers_res_free(res);
		memset(res, 0, sizeof(*res));
	}
	cJSON_Delete(plans);
	cJSON_Delete(metal);
	backend_api_close(&v);
	return r;
}

/* ------------------------------------------------------------------ VMs */

/* Which API a VM lives in, from its backend_data (dstack's {"plan_type": ...}). */
static enum vul_kind vul_kind_of(const char *backend_data)
{
	cJSON *d = backend_data && *backend_data ? cJSON_Parse(backend_data) : NULL;
	const char *t = backend_jstr(d, "plan_type");
	enum vul_kind k = VK_UNKNOWN;
	if (t && !strcmp(t, "bare-metal"))
		k = VK_METAL;
	else if (t && !strcmp(t, "vm_instance"))
		k = VK_VM;
	cJSON_Delete(d);
	return k;
}

static const char *vul_kind_data(enum vul_kind k)
{
	return k == VK_METAL ? "{\"plan_type\":\"bare-metal\"}" : "{\"plan_type\":\"vm_instance\"}";
}

/* Copy an address when it is one (IPv4 or IPv6; Vultr's 0.0.0.0 placeholder is none), else
 * leave dst empty. */
static void vul_addr(char *dst, size_t dstlen, const char *s)
{
	unsigned char a[16];
	dst[0] = '\0';
	if (!s || !strcmp(s, "0.0.0.0") || !strcmp(s, "::"))
		return;
	if (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1)
		fmt_cut(dst, dstlen, "%s", s); /* fits: an address, at most 45 characters */
}

/* The state of a VM from status (active, pending, suspended, resizing; dstack also knows
 * failed) and power_status (running, stopped). */
static enum bk_vm_state vul_state(const char *status, const char *power)
{
	if (!status)
		return BK_VM_PENDING;
	if (!strcmp(status, "active"))
		return power && !strcmp(power, "stopped") ? BK_VM_STOPPED : BK_VM_RUNNING;
	if (!strcmp(status, "resizing")) /* up before, and again after */
		return BK_VM_RUNNING;
	if (!strcmp(status, "suspended") || !strcmp(status, "stopped"))
		return BK_VM_STOPPED;
	if (!strcmp(status, "failed"))
		return BK_VM_FAILED;
	return BK_VM_PENDING; /* pending, or a status newer than this code */
}

/* An instance or bare-metal object of the API into out. 0, or -EPROTO (no usable id). */
static int vul_vm(const cJSON *o, enum vul_kind kind, struct bk_vm *out, char *err, size_t errlen)
{
	const char *id = backend_jstr(o, "id"), *status = backend_jstr(o, "status");
	const char *power = backend_jstr(o, "power_status");
	memset(out, 0, sizeof(*out));
	if (!backend_id_ok(id))
		return backend_fail(err, errlen, -EPROTO, "vultr: a %s without a usable id",
				kind == VK_METAL ? "bare metal" : "instance");
	fmt_cut(out->id, sizeof(out->id), "%s", id); /* fits: backend_id_ok */
	out->state = vul_state(status, power);
	/* Vultr's word, or its power state when that is what stops it */
	bool halted = out->state == BK_VM_STOPPED && status && !strcmp(status, "active");
	str_sanitize(out->status, sizeof(out->status), halted ? power : status);
	str_sanitize(out->name, sizeof(out->name), backend_jstr(o, "label"));
	str_sanitize(out->region, sizeof(out->region), backend_jstr(o, "region"));
	str_sanitize(out->instance, sizeof(out->instance), backend_jstr(o, "plan"));
	vul_addr(out->ip, sizeof(out->ip), backend_jstr(o, "main_ip"));
	vul_addr(out->internal_ip, sizeof(out->internal_ip), backend_jstr(o, "internal_ip"));
	/* fits: literals */
	fmt_cut(out->username, sizeof(out->username), "%s", VULTR_USER);
	out->ssh_port = VULTR_SSH_PORT;
	fmt_cut(out->backend_data, sizeof(out->backend_data), "%s", vul_kind_data(kind));
	return 0;
}

/* The VM object of an answer: "instance", or for bare metal "bare_metal" ("baremetal" in the
 * spec's schema). */
static const cJSON *vul_vm_obj(const cJSON *doc, enum vul_kind kind)
{
	if (kind != VK_METAL)
		return backend_jget(doc, "instance");
	const cJSON *o = backend_jget(doc, "bare_metal");
	return o ? o : backend_jget(doc, "baremetal");
}

static const char *vul_kind_path(enum vul_kind k)
{
	return k == VK_METAL ? "/bare-metals" : "/instances";
}

/* ------------------------------------------------------------------ VPCs */

struct vpc_q {
	struct bk_api *v;
	const char *region, *want;
};

/* backend_memo_once's maker: find fleetfs's VPC of the region, else create it. */
static int vpc_make(void *arg, char *id, size_t idlen, char *err, size_t errlen)
{
	struct vpc_q *q = arg;
	struct bk_api *v = q->v;
	cJSON *vpcs = NULL, *doc = NULL, *body = NULL;
	const cJSON *it, *vpc = NULL;
	int r = vul_list(v, "/vpcs?per_page=" VULTR_PER_PAGE, "vpcs", NULL, true, &vpcs, err,
			 errlen);
	cJSON_ArrayForEach(it, (r ? NULL : vpcs))
	{
		const char *d = backend_jstr(it, "description");
		if (!vpc && d && !strcmp(d, q->want))
			vpc = it;
	}
	if (!r && !vpc) {
		body = cJSON_CreateObject();
		cJSON_AddStringToObject(body, "region", q->region);
		cJSON_AddStringToObject(body, "description", q->want);
		r = vul_call(v, "POST", "/vpcs", body, true, &doc, err, errlen);
		if (!r && !(vpc = backend_jget(doc, "vpc")))
			vpc = backend_jget(doc, "network");
	}
	if (!r && !backend_id_ok(backend_jstr(vpc, "id")))
		r = backend_fail(err, errlen, -EPROTO, "vultr: a VPC without a usable id");
	if (!r) /* fits: backend_id_ok, and id is BK_ID_MAX */
		fmt_cut(id, idlen, "%s", backend_jstr(vpc, "id"));
	cJSON_Delete(body);
	cJSON_Delete(doc);
	cJSON_Delete(vpcs);
	return r;
}

/* The id of fleetfs's VPC in region (description fleetfs-vpc-<region>), made when there is
 * none: one find-or-create at a time, so two creates in a new region make one VPC. 0 with
 * id, or -errno with err. */
static int vul_vpc(struct bk_api *v, const char *region, char *id, size_t idlen, char *err,
		   size_t errlen)
{
	char want[160];
	if (fmt(want, sizeof(want), VULTR_VPC_PREFIX "%s", region))
		return backend_fail(err, errlen, -EINVAL, "vultr: region name too long");
	struct vpc_q q = {v, region, want};
	return backend_memo_once(v->ctx, v->base, want, 0, vpc_make, &q, id, idlen, err, errlen);
}

/* ------------------------------------------------------------------ operations */

static int vultr_check(const struct backend_ctx *ctx, char *err, size_t errlen)
{
	struct bk_api v;
	cJSON *doc = NULL;
	int r = vul_open(&v, ctx, true, err, errlen);
	if (!r)
		r = vul_call(&v, "GET", "/ssh-keys", NULL, true, &doc, err, errlen);
	cJSON_Delete(doc);
	backend_api_close(&v);
	return r;
}

/* The create request of dstack's launch_instance (reference §3.4) plus fleetfs's tags. */
static cJSON *vul_create_body(const struct bk_create_req *req, enum vul_kind kind,
			      const char *user_data, const char *vpc_id)
{
	const char *plan = req->offer->instance;
	cJSON *b = cJSON_CreateObject(), *tags;
	char tag[160];
	cJSON_AddStringToObject(b, "region", req->offer->region);
	cJSON_AddStringToObject(b, "plan", plan);
	cJSON_AddStringToObject(b, "label", req->cloud_name);
	if (kind == VK_VM && strstr(plan, "vcg"))
		cJSON_AddNumberToObject(b, "os_id", VULTR_GPU_OS_ID);
	else
		cJSON_AddStringToObject(b, "image_id", VULTR_IMAGE);
	cJSON_AddStringToObject(b, "user_data", user_data);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(b, "attach_vpc"), cJSON_CreateString(vpc_id));
	tags = cJSON_AddArrayToObject(b, "tags");
	cJSON_AddItemToArray(tags, cJSON_CreateString(VULTR_OWN_TAG));
	if (req->project && *req->project) {
		/* no tag rather than one with a cut name */
		if (!fmt(tag, sizeof(tag), VULTR_OWN_TAG "-project-%s", req->project))
			cJSON_AddItemToArray(tags, cJSON_CreateString(tag));
	}
	if (req->fleet && *req->fleet) {
		if (!fmt(tag, sizeof(tag), VULTR_OWN_TAG "-fleet-%s", req->fleet))
			cJSON_AddItemToArray(tags, cJSON_CreateString(tag));
	}
	return b;
}

static int vultr_create(const struct backend_ctx *ctx, const struct bk_create_req *req,
			struct bk_vm *out, char *err, size_t errlen)
{
	const struct offer *o = req->offer;
	char vpc[BK_ID_MAX], *cloud_init = NULL, *ud = NULL;
	struct bk_api v;
	cJSON *body = NULL, *doc = NULL;
	memset(out, 0, sizeof(*out));
	if (!o || !o->region || !*o->region || !o->instance || !*o->instance)
		return backend_fail(err, errlen, -EINVAL, "vultr: the offer has no region or plan");
	if (!req->cloud_name || !*req->cloud_name || strlen(req->cloud_name) > VULTR_LABEL_MAX)
		return backend_fail(err, errlen, -EINVAL, "vultr: labels are 1 to %d characters",
				VULTR_LABEL_MAX);
	const char *user_data = req->user_data;
	if (!user_data || !*user_data) {
		if (!req->ssh_pubkey || !*req->ssh_pubkey)
			return backend_fail(err, errlen, -EINVAL, "vultr: no SSH public key");
		user_data = cloud_init = backend_cloud_init(req->ssh_pubkey);
	}
	if (strlen(user_data) > VULTR_USER_DATA_MAX) {
		free(cloud_init);
		return backend_fail(err, errlen, -EFBIG, "vultr: user data over %u bytes",
				VULTR_USER_DATA_MAX);
	}
	enum vul_kind kind = strstr(o->instance, "vbm") ? VK_METAL : VK_VM;
	int r = vul_open(&v, ctx, true, err, errlen);
	if (r) {
		free(cloud_init);
		return r;
	}
	if (!(ud = b64_encode(user_data, strlen(user_data))))
		r = backend_fail(err, errlen, -ENOMEM, "vultr: out of memory");
	if (!r)
		r = vul_vpc(&v, o->region, vpc, sizeof(vpc), err, errlen);
	if (!r) {
		body = vul_create_body(req, kind, ud, vpc);
		r = vul_call(&v, "POST", vul_kind_path(kind), body, true, &doc, err, errlen);
		if (r == -ENOENT) /* an unknown plan or region: this offer cannot be had */
			r = -EINVAL;
		if (r == -EINVAL) { /* maybe the VPC is gone: look again next time */
			char want[160];
			/* fits: vul_vpc checked it */
			fmt_cut(want, sizeof(want), VULTR_VPC_PREFIX "%s", o->region);
			backend_memo_put(ctx, v.base, want, NULL);
		}
	}
	if (!r)
		r = vul_vm(vul_vm_obj(doc, kind), kind, out, err, errlen);
	if (!r) {
		/* what the answer left out, the request said */
		if (!out->name[0])
			str_sanitize(out->name, sizeof(out->name), req->cloud_name);
		if (!out->region[0])
			str_sanitize(out->region, sizeof(out->region), o->region);
		if (!out->instance[0])
			str_sanitize(out->instance, sizeof(out->instance), o->instance);
		if (out->state != BK_VM_FAILED)
			out->state = BK_VM_PENDING;
		/* dstack: bare metal may take 55 minutes to come up, VMs 10 */
		out->provision_timeout_min = kind == VK_METAL ? 55 : 10;
	}
	cJSON_Delete(body);
	cJSON_Delete(doc);
	free(ud);
	free(cloud_init);
	backend_api_close(&v);
	return r;
}

/* GET one VM of kind (VK_UNKNOWN: an instance, else a bare metal). */
static int vul_get(struct bk_api *v, const char *id, enum vul_kind kind, struct bk_vm *out, char *err,
		   size_t errlen)
{
	char path[BK_ID_MAX + 32];
	cJSON *doc = NULL;
	enum vul_kind k = kind == VK_METAL ? VK_METAL : VK_VM;
	fmt_cut(path, sizeof(path), "%s/%s", vul_kind_path(k), id); /* fits: backend_id_ok */
	int r = vul_call(v, "GET", path, NULL, true, &doc, err, errlen);
	if (r == -ENOENT && kind == VK_UNKNOWN) {
		k = VK_METAL;
		/* fits: backend_id_ok */
		fmt_cut(path, sizeof(path), "%s/%s", vul_kind_path(k), id);
		r = vul_call(v, "GET", path, NULL, true, &doc, err, errlen);
	}
	if (!r)
		r = vul_vm(vul_vm_obj(doc, k), k, out, err, errlen);
	cJSON_Delete(doc);
	return r;
}

static int vultr_get(const struct backend_ctx *ctx, const char *id, const char *backend_data,
		     struct bk_vm *out, char *err, size_t errlen)
{
	struct bk_api v;
	memset(out, 0, sizeof(*out));
	if (!backend_id_ok(id))
		return backend_fail(err, errlen, -EINVAL, "vultr: not an instance id");
	int r = vul_open(&v, ctx, true, err, errlen);
	if (!r)
		r = vul_get(&v, id, vul_kind_of(backend_data), out, err, errlen);
	backend_api_close(&v);
	return r;
}

static int vultr_terminate(const struct backend_ctx *ctx, const char *id, const char *backend_data,
			   char *err, size_t errlen)
{
	char path[BK_ID_MAX + 32];
	struct bk_api v;
	cJSON *doc = NULL;
	enum vul_kind kind = vul_kind_of(backend_data);
	if (!backend_id_ok(id))
		return backend_fail(err, errlen, -EINVAL, "vultr: not an instance id");
	int r = vul_open(&v, ctx, true, err, errlen);
	if (r)
		return r;
	fmt_cut(path, sizeof(path), "%s/%s", vul_kind_path(kind), id); /* fits: backend_id_ok */
	r = vul_call(&v, "DELETE", path, NULL, true, &doc, err, errlen);
	if (r == -ENOENT && kind == VK_UNKNOWN) {
		/* fits: backend_id_ok */
		fmt_cut(path, sizeof(path), "%s/%s", vul_kind_path(VK_METAL), id);
		r = vul_call(&v, "DELETE", path, NULL, true, &doc, err, errlen);
	}
	if (r == -ENOENT) { /* gone already: what was asked for */
		r = 0;
		err[0] = '\0';
	}
	cJSON_Delete(doc);
	backend_api_close(&v);
	return r;
}

/* Is this VM object one fleetfs made: a fleetfs- label, or the fleetfs tag? */
static bool vul_own(const cJSON *o)
{
	const char *label = backend_jstr(o, "label");
	const cJSON *t;
	if (label && !strncmp(label, VULTR_OWN_PREFIX, strlen(VULTR_OWN_PREFIX)))
		return true;
	cJSON_ArrayForEach(t, backend_jget(o, "tags"))
	{
		if (cJSON_IsString(t) && t->valuestring && !strcmp(t->valuestring, VULTR_OWN_TAG))
			return true;
	}
	return false;
}

static int vultr_list_own(const struct backend_ctx *ctx, struct bk_vm **out, size_t *n, char *err,
			  size_t errlen)
{
	struct bk_api v;
	cJSON *vms = NULL, *metals = NULL;
	const cJSON *it;
	struct bk_vm *vv = NULL;
	size_t k = 0;
	char e2[128];
	*out = NULL;
	*n = 0;
	int r = vul_open(&v, ctx, true, err, errlen);
	if (!r)
		r = vul_list(&v, "/instances?per_page=" VULTR_PER_PAGE, "instances", NULL, true,
			     &vms, err, errlen);
	if (!r)
		r = vul_list(&v, "/bare-metals?per_page=" VULTR_PER_PAGE, "bare_metals", NULL, true,
			     &metals, err, errlen);
	if (!r) {
		size_t total = (size_t)cJSON_GetArraySize(vms) + (size_t)cJSON_GetArraySize(metals);
		if (!(vv = calloc(total + 1, sizeof(*vv))))
			r = backend_fail(err, errlen, -ENOMEM, "vultr: out of memory");
	}
	cJSON_ArrayForEach(it, (r ? NULL : vms))
	{
		if (vul_own(it) && !vul_vm(it, VK_VM, &vv[k], e2, sizeof(e2)))
			k++;
	}
	cJSON_ArrayForEach(it, (r ? NULL : metals))
	{
		if (vul_own(it) && !vul_vm(it, VK_METAL, &vv[k], e2, sizeof(e2)))
			k++;
	}
	if (r) {
		free(vv);
	} else {
		*out = vv;
		*n = k;
	}
	cJSON_Delete(vms);
	cJSON_Delete(metals);
	backend_api_close(&v);
	return r;
}

const struct backend_ops vultr_ops = {
	.offers = vultr_offers,
	.check = vultr_check,
	.create = vultr_create,
	.get = vultr_get,
	.terminate = vultr_terminate,
	.list_own = vultr_list_own,
	/* dstack: 55 min for bare metal (vbm), 10 for VMs; one number per type here, so the
	 * longer (a VM that never comes up is terminated after 55 min, not 10) */
	.provision_timeout_min = 10, /* bare metal: 55, set per VM by create */
	/* an instance is listed once its create answers; the margin: a create Vultr finishes
	 * after fleetfs stopped waiting for its answer */
	.create_lag_s = 30,
};
