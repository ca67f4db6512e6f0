/* digitalocean: DigitalOcean (backend type "digitalocean") and AMD Developer Cloud
 * ("amddevcloud"), API v2: one implementation, two base URLs.
 *
 * Facts: reference providers-gpuclouds.md §6 and the published spec
 * (reference/specs/digitalocean.yaml); where they differ, the spec wins:
 * - pages hold at most 200 items (the reference's per_page=500 is not a value the spec
 *   allows), and every list is read to its end by following links.pages.next;
 * - GET /v2/droplets leaves GPU droplets out unless asked for ?type=gpus, so list_own reads
 *   both kinds;
 * - the droplet create body has no project_id: the spec puts a droplet in a project with
 *   POST /v2/projects/{id}/resources. fleetfs sends project_id as dstack does and then assigns
 *   the droplet the documented way;
 * - a size's disk is its `local` or `boot` disk (the spec: every droplet has one of the two;
 *   `scratch` disks are not kept), else its `disk` in GB.
 *
 * - Offers: live, GET /sizes: one offer per size and region it lists, available when the size
 *   is (`available`). GPUs from gpu_info: model "<vendor>_<name parts>" (nvidia_h100 -> NVIDIA
 *   H100, nvidia_rtx6000_ada -> RTX6000ADA, amd_mi300x -> AMD MI300X); a size with any other
 *   vendor is skipped.
 * - Create: the project key is found by its fingerprint (GET /account/keys/{md5}; the spec
 *   allows only 10 listings of the keys a minute, an offer loop would spend them) or added as
 *   "fleetfs-<project>"; then one POST /droplets with the key, cloud-init user data, fleetfs's
 *   tags and the image dstack picks for the offer. DigitalOcean answers 422 when it cannot
 *   place the droplet: that is -ENOSPC.
 * - Get reads GET /droplets/{id}; list_own reads every droplet and keeps the names fleetfs
 *   gives (droplets made before fleetfs tagged them are found too).
 *
 * Errors: DigitalOcean answers {"id", "message", "request_id"}; err is then
 * "<type>: <id>: <message>". Nothing here puts the token in err (it is also masked out of
 * whatever the provider says) and no request body is ever logged.
 */
#include "backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "http.h"
#include "../lib/enc.h"

#define DGO_API "https://api.digitalocean.com/v2"
#define AMD_API "https://api.devcloud.amd.com/v2"
#define DGO_USER "root"
#define DGO_SSH_PORT 22
#define DGO_OWN_PREFIX "fleetfs-"
#define DGO_PER_PAGE 200  /* the spec's maximum */
#define DGO_MAX_PAGES 100 /* 20,000 items of a kind: past that, -EFBIG */
#define DGO_NAME_MAX 255  /* droplet names and tags */
#define DGO_ID_DIGITS 18  /* droplet and key ids are integers (below 2^53 in JSON) */
#define DGO_PUBKEY_MAX 16384

/* One operation's view of the provider: the API base and the token (a secret). */
struct dgo {
	struct bk_api api;
	const char *label; /* the backend type: the prefix of every err */
};

/* ------------------------------------------------------------------ JSON helpers */

/* The number member k of o when it is a finite number >= 0, else -1. */
static double jnum(const cJSON *o, const char *k)
{
	const cJSON *v = backend_jget(o, k);
	return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 ? v->valuedouble
										    : -1;
}

/* An id of the API (a positive integer; a string of digits is taken too) as text. */
static bool dgo_id_text(const cJSON *v, char *out, size_t outlen)
{
	long long n = 0;
	if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= 9007199254740992.0 &&
	    v->valuedouble == floor(v->valuedouble))
		return !fmt(out, outlen, "%lld", (long long)v->valuedouble);
	if (cJSON_IsString(v) && v->valuestring && strlen(v->valuestring) <= DGO_ID_DIGITS &&
	    !num_parse_ll(v->valuestring, 1, 999999999999999999LL, &n))
		return !fmt(out, outlen, "%lld", n);
	return false;
}

/* ------------------------------------------------------------------ calls and errors */

/* The API of a type: DigitalOcean's, or AMD Developer Cloud's (the same API elsewhere). */
static const char *dgo_default_api(const char *type)
{
	return type && !strcmp(type, "amddevcloud") ? AMD_API : DGO_API;
}

/* Set up d for one operation: 0, or -EINVAL/-ENAMETOOLONG with err. Release with dgo_close. */
static int dgo_open(struct dgo *d, const struct backend_ctx *ctx, char *err, size_t errlen)
{
	d->label = ctx->type ? ctx->type : "digitalocean";
	return backend_api_open(ctx, dgo_default_api(ctx->type), true, &d->api, err, errlen);
}

static void dgo_close(struct dgo *d)
{
	backend_api_close(&d->api);
}

/* Mask every occurrence of the token in err (a provider may echo what it was sent). */
static void dgo_redact(const struct dgo *d, char *err)
{
	backend_redact(d->api.key, err);
}

/* err for an error answer: "<type>: <id>: <message>", or the status when the answer is not
 * DigitalOcean's error body. Provider text is cut and made printable; the query is left out
 * of the path. */
static void dgo_errmsg(const struct dgo *d, const char *method, const char *path, long status,
		       const cJSON *doc, char *err, size_t errlen)
{
	const char *id = backend_jstr(doc, "id"), *msg = backend_jstr(doc, "message");
	char i[96], m[400];
	if (!id && !msg) {
		fmt_cut(err, errlen, "%s: %s %.*s: HTTP %ld", d->label, method,
			(int)strcspn(path, "?"), path, status);
		return;
	}
	str_sanitize(i, sizeof(i), id ? id : "error");
	str_sanitize(m, sizeof(m), msg ? msg : "(no message)");
	fmt_cut(err, errlen, "%s: %s: %s", d->label, i, m);
}

/* One API call: method on base + path (with its query) with the token, body (may be NULL).
 * 0 on a 2xx with *doc, the answer (a JSON object; NULL for an empty answer to a DELETE;
 * caller frees with cJSON_Delete); else -errno with err (backend_http_errno's meanings: a
 * 422 is -EINVAL, which the droplet create reads as no capacity; -EPROTO for a 2xx without
 * a JSON object, or the HTTP client's transport errors) and *doc NULL. *status
 * is the answer's status (0 when none came). */
static int dgo_call(struct dgo *d, const char *method, const char *path, const cJSON *body,
		    long *status, cJSON **doc, char *err, size_t errlen)
{
	char url[1024], e[HTTP_ERR_MAX] = "";
	long st = 0;
	cJSON *j = NULL;
	int r;
	*doc = NULL;
	*status = 0;
	if (fmt(url, sizeof(url), "%s%s", d->api.base, path))
		return backend_fail(err, errlen, -ENAMETOOLONG, "%s: URL too long", d->label);
	r = backend_json(d->api.ctx, method, url, d->api.key, body, &st, &j, e, sizeof(e));
	if (r) {
		fmt_cut(err, errlen, "%s: %s", d->label, e); /* e names the method and URL */
	} else if (st < 200 || st > 299) {
		r = backend_http_errno(st);
		dgo_errmsg(d, method, path, st, j, err, errlen);
	} else if (!cJSON_IsObject(j) && (j || strcmp(method, "DELETE"))) {
		r = -EPROTO;
		fmt_cut(err, errlen, "%s: %s %.*s: HTTP %ld without a JSON object", d->label,
			method, (int)strcspn(path, "?"), path, st);
	}
	*status = st;
	if (r) {
		cJSON_Delete(j);
		j = NULL;
		dgo_redact(d, err);
	}
	*doc = j;
	return r;
}

/* The page number of a links.pages.next URL: N > 0, 0 when there is no next page, -1 when
 * the link is there but names no page. Only the number is used: the next request goes to
 * the configured base, whatever host the link names (the token goes nowhere else). */
static long long dgo_next_page(const cJSON *doc)
{
	const char *next = backend_jstr(backend_jget(backend_jget(doc, "links"), "pages"), "next");
	if (!next)
		return 0;
	const char *q = strchr(next, '?');
	while (q && *q) {
		q++;
		size_t n = strcspn(q, "&#");
		if (n > 5 && n < 25 && !strncmp(q, "page=", 5)) {
			char v[24];
			long long page = 0;
			fmt_cut(v, sizeof(v), "%.*s", (int)(n - 5), q + 5); /* fits: n < 25 */
			return num_parse_ll(v, 1, 999999999999LL, &page) ? -1 : page;
		}
		q += n;
		if (*q == '#')
			break;
	}
	return -1;
}

/* Every item of a paged collection: GET path?query&per_page=200, then each next page, the
 * member array of each answer appended to *items (a new JSON array; caller frees). 0, or
 * -errno with err (-EPROTO: an answer without the member list or with a next link that does
 * not move on; -EFBIG: more than DGO_MAX_PAGES pages). */
static int dgo_list(struct dgo *d, const char *path, const char *query, const char *member,
		    cJSON **items, char *err, size_t errlen)
{
	cJSON *all = cJSON_CreateArray();
	long long page = 1;
	int r = 0;
	for (;;) {
		char p[512];
		cJSON *doc = NULL, *arr = NULL;
		long st = 0;
		if (page == 1)
			r = fmt(p, sizeof(p), "%s?%s%sper_page=%d", path, query, *query ? "&" : "",
				DGO_PER_PAGE);
		else
			r = fmt(p, sizeof(p), "%s?%s%sper_page=%d&page=%lld", path, query,
				*query ? "&" : "", DGO_PER_PAGE, page);
		if (r) {
			r = backend_fail(err, errlen, -ENAMETOOLONG, "%s: URL too long", d->label);
			break;
		}
		r = dgo_call(d, "GET", p, NULL, &st, &doc, err, errlen);
		if (!r) {
			arr = cJSON_DetachItemFromObjectCaseSensitive(doc, member);
			if (!cJSON_IsArray(arr))
				r = backend_fail(err, errlen, -EPROTO, "%s: GET %s: no %s list",
					     d->label, path, member);
		}
		while (!r && arr->child)
			cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(arr, arr->child));
		long long next = r ? 0 : dgo_next_page(doc);
		cJSON_Delete(arr);
		cJSON_Delete(doc);
		if (r || next == 0)
			break;
		if (next < 0 || next <= page) {
			r = backend_fail(err, errlen, -EPROTO,
				     "%s: GET %s: links.pages.next names no later page", d->label,
				     path);
			break;
		}
		if (next > DGO_MAX_PAGES) {
			r = backend_fail(err, errlen, -EFBIG, "%s: GET %s: more than %d pages",
				     d->label, path, DGO_MAX_PAGES);
			break;
		}
		page = next;
	}
	if (r) {
		cJSON_Delete(all);
		all = NULL;
	}
	*items = all;
	return r;
}

/* ------------------------------------------------------------------ droplets */

/* Droplet ids are integers; anything that could leave the path segment is refused. */
static bool dgo_id_ok(const char *id)
{
	size_t n = id ? strlen(id) : 0;
	return n && n <= DGO_ID_DIGITS && strspn(id, "0123456789") == n && id[0] != '0';
}

static enum bk_vm_state dgo_state(const char *status)
{
	/* clang-format off */
	static const struct {
		const char *status;
		enum bk_vm_state state;
	} map[] = {
		{"new", BK_VM_PENDING},
		{"active", BK_VM_RUNNING},
		{"off", BK_VM_STOPPED},
		{"archive", BK_VM_TERMINATED},
	};
	/* clang-format on */
	for (size_t i = 0; status && i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(status, map[i].status))
			return map[i].state;
	return BK_VM_PENDING; /* a status newer than this code: not up yet as far as we know */
}

/* The first networks.v4 address of that type ("public", "private") into dst, or "". */
static void dgo_addr(const cJSON *droplet, const char *type, char *dst, size_t dstlen)
{
	const cJSON *net;
	unsigned char a[16];
	dst[0] = '\0';
	cJSON_ArrayForEach(net, backend_jget(backend_jget(droplet, "networks"), "v4"))
	{
		const char *t = backend_jstr(net, "type"), *ip = backend_jstr(net, "ip_address");
		if (t && !strcmp(t, type) && ip && inet_pton(AF_INET, ip, a) == 1) {
			fmt_cut(dst, dstlen, "%s", ip); /* fits: an IPv4 address, at most 15 */
			return;
		}
	}
}

/* A droplet object of the API into out. 0, or -EPROTO (no usable id) with err. */
static int dgo_vm(const struct dgo *d, const cJSON *droplet, struct bk_vm *out, char *err,
		  size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!dgo_id_text(backend_jget(droplet, "id"), out->id, sizeof(out->id)))
		return backend_fail(err, errlen, -EPROTO, "%s: a droplet without a usable id",
				d->label);
	const char *size = backend_jstr(droplet, "size_slug");
	str_sanitize(out->name, sizeof(out->name), backend_jstr(droplet, "name"));
	str_sanitize(out->status, sizeof(out->status), backend_jstr(droplet, "status"));
	str_sanitize(out->region, sizeof(out->region), backend_jstr(backend_jget(droplet, "region"), "slug"));
	str_sanitize(out->instance, sizeof(out->instance),
		     size ? size : backend_jstr(backend_jget(droplet, "size"), "slug"));
	dgo_addr(droplet, "public", out->ip, sizeof(out->ip));
	dgo_addr(droplet, "private", out->internal_ip, sizeof(out->internal_ip));
	out->state = dgo_state(backend_jstr(droplet, "status"));
	fmt_cut(out->username, sizeof(out->username), "%s", DGO_USER); /* fits: a literal */
	out->ssh_port = DGO_SSH_PORT;
	return 0;
}

/* ------------------------------------------------------------------ offers */

/* MiB in one unit of a disk or VRAM size ("gib" in the spec's examples; GB when absent). */
static double dgo_unit_mib(const char *unit)
{
	if (unit && (!strcasecmp(unit, "mib") || !strcasecmp(unit, "mb")))
		return 1;
	if (unit && (!strcasecmp(unit, "tib") || !strcasecmp(unit, "tb")))
		return 1024.0 * 1024;
	return 1024;
}

/* gpu_info.model "<vendor>_<part>[_<part>...]" -> vendor (nvidia, amd) and the parts
 * upper-cased and joined, as gpuhunt names them. false for another vendor or a bad model. */
static bool dgo_gpu_model(const char *model, char *vendor, size_t vlen, char *name, size_t nlen)
{
	size_t vn = model ? strcspn(model, "_") : 0, k = 0;
	if (!vn || !model[vn] || vn >= vlen)
		return false;
	fmt_cut(vendor, vlen, "%.*s", (int)vn, model); /* fits: vn < vlen */
	for (char *p = vendor; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	if (strcmp(vendor, "nvidia") && strcmp(vendor, "amd"))
		return false;
	for (const char *p = model + vn; *p; p++) {
		if (*p == '_')
			continue;
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9')) ||
		    k + 1 >= nlen)
			return false;
		name[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	}
	name[k] = '\0';
	return k > 0;
}

/* The disk of a size in MiB: its local or boot disks, else `disk` (GB); 0 when unknown. */
static uint64_t dgo_disk_mib(const cJSON *size)
{
	const cJSON *disk;
	double mib = 0;
	cJSON_ArrayForEach(disk, backend_jget(size, "disk_info"))
	{
		const char *t = backend_jstr(disk, "type");
		double amount = jnum(backend_jget(disk, "size"), "amount");
		if (t && (!strcmp(t, "local") || !strcmp(t, "boot")) && amount > 0)
			mib += amount * dgo_unit_mib(backend_jstr(backend_jget(disk, "size"), "unit"));
	}
	if (mib <= 0 && jnum(size, "disk") > 0)
		mib = jnum(size, "disk") * 1024;
	return mib > 0 && mib < 1e15 ? (uint64_t)mib : 0;
}

/* Append one offer per region of a size to l. 0, -ENOMEM, or 1 when the size is skipped
 * (malformed, or a GPU of another vendor). */
static int dgo_size_offers(const struct bk_offers_req *req, const cJSON *size, struct offer_list *l)
{
	const char *slug = backend_jstr(size, "slug");
	const cJSON *gi = backend_jget(size, "gpu_info"), *regions = backend_jget(size, "regions"), *reg;
	double price = jnum(size, "price_hourly"), cpus = jnum(size, "vcpus");
	double mem = jnum(size, "memory"), count = jnum(gi, "count");
	char vendor[16] = "", gpu[64] = "";
	uint64_t gpu_mib = 0;
	if (!slug || !*slug || strlen(slug) > 255 || price < 0 || cpus < 0 || cpus > 1e6 ||
	    mem < 0 || mem > 1e12 || !cJSON_IsArray(regions))
		return 1;
	if (count > OFFER_MAX_GPUS)
		return 1;
	if (count >= 1) {
		const cJSON *vram = backend_jget(gi, "vram");
		double amount = jnum(vram, "amount");
		if (!dgo_gpu_model(backend_jstr(gi, "model"), vendor, sizeof(vendor), gpu, sizeof(gpu)) ||
		    amount < 0 || amount > 1e6)
			return 1;
		gpu_mib = (uint64_t)(amount * dgo_unit_mib(backend_jstr(vram, "unit")));
	}
	struct offer o = {
		.backend = req->ctx.name,
		.type = req->ctx.type,
		.instance = slug,
		.cpu_arch = "x86",
		.gpu_vendor = vendor,
		.gpu_name = gpu,
		.availability =
			cJSON_IsTrue(backend_jget(size, "available")) ? "available" : "not_available",
		.source = "api",
		.price = price,
		.fetched_at = req->now,
		.memory_mib = (uint64_t)mem, /* megabytes, as DigitalOcean gives them */
		.disk_mib = dgo_disk_mib(size),
		.gpu_memory_mib = gpu_mib,
		.cpus = (int)cpus,
		.gpu_count = count >= 1 ? (int)count : 0,
	};
	o.disk_fixed = o.disk_mib > 0;
	cJSON_ArrayForEach(reg, regions)
	{
		if (!cJSON_IsString(reg) || !reg->valuestring[0] || strlen(reg->valuestring) > 64)
			continue;
		o.region = reg->valuestring;
		if (offer_list_push(l, &o))
			return -ENOMEM;
	}
	return 0;
}

/* Live offers: every size (GET /sizes, all pages) in every region it lists, cut to the
 * config's regions. */
static int digitalocean_offers(const struct bk_offers_req *req, struct bk_offers_res *res,
			       char *err, size_t errlen)
{
	struct dgo d;
	cJSON *sizes = NULL;
	const cJSON *size;
	res->version[0] = '\0';
	res->unchanged = false;
	res->skipped = 0;
	int r = dgo_open(&d, &req->ctx, err, errlen);
	if (!r)
		r = dgo_list(&d, "/sizes", "", "sizes", &sizes, err, errlen);
	cJSON_ArrayForEach(size, (r ? NULL : sizes))
	{
		int k = dgo_size_offers(req, size, &res->list);
		if (k < 0) {
			r = backend_fail(err, errlen, k, "%s: out of memory", d.label);
			break;
		}
		res->skipped += (size_t)k;
	}
	if (!r) {
		backend_cut_regions(&req->ctx, &res->list);
		/* fits: base is 512, source 1024 */
		fmt_cut(res->source, sizeof(res->source), "%s/sizes", d.api.base);
	} else {
		bk_offers_res_free(res);
		memset(&res->list, 0, sizeof(res->list));
	}
	cJSON_Delete(sizes);
	dgo_close(&d);
	return r;
}

/* ------------------------------------------------------------------ projects */

/* The id of the DigitalOcean project named name (GET /projects, all pages) into out.
 * -EINVAL with err when there is none. */
static int dgo_project_id(struct dgo *d, const char *name, char *out, size_t outlen, char *err,
			  size_t errlen)
{
	cJSON *all = NULL;
	const cJSON *p;
	char shown[128];
	int r = dgo_list(d, "/projects", "", "projects", &all, err, errlen);
	out[0] = '\0';
	cJSON_ArrayForEach(p, (r ? NULL : all))
	{
		const char *n = backend_jstr(p, "name"), *id = backend_jstr(p, "id");
		if (n && !strcmp(n, name) && id && *id && strlen(id) < outlen &&
		    strspn(id, "0123456789abcdefABCDEF-") == strlen(id)) {
			fmt_cut(out, outlen, "%s", id); /* fits: checked above */
			break;
		}
	}
	cJSON_Delete(all);
	if (!r && !out[0]) {
		str_sanitize(shown, sizeof(shown), name);
		r = backend_fail(err, errlen, -EINVAL, "%s: project_name: no project named \"%s\"",
			     d->label, shown);
	}
	return r;
}

struct project_q {
	struct dgo *d;
	const char *name;
};

/* backend_memo_once's maker for a project's id. */
static int project_make(void *arg, char *val, size_t n, char *err, size_t errlen)
{
	struct project_q *q = arg;
	return dgo_project_id(q->d, q->name, val, n, err, errlen);
}

/* Put a new droplet in the project the documented way (POST /projects/{id}/resources). */
static int dgo_assign(struct dgo *d, const char *project_id, const char *droplet_id, char *err,
		      size_t errlen)
{
	char path[256], urn[64];
	long st = 0;
	cJSON *doc = NULL, *body = cJSON_CreateObject();
	/* fits: a project id is under 128 (dgo_project_id), a droplet id 19 digits at most */
	fmt_cut(path, sizeof(path), "/projects/%s/resources", project_id);
	fmt_cut(urn, sizeof(urn), "do:droplet:%s", droplet_id);
	cJSON_AddItemToArray(cJSON_AddArrayToObject(body, "resources"), cJSON_CreateString(urn));
	int r = dgo_call(d, "POST", path, body, &st, &doc, err, errlen);
	cJSON_Delete(body);
	cJSON_Delete(doc);
	return r;
}

/* ------------------------------------------------------------------ SSH keys */

/* Do two OpenSSH public key lines hold the same key (type and base64 blob; comments aside)? */
static bool dgo_same_key(const char *a, const char *b)
{
	if (!a || !b)
		return false;
	for (int f = 0; f < 2; f++) {
		a += strspn(a, " \t");
		b += strspn(b, " \t");
		size_t na = strcspn(a, " \t\r\n"), nb = strcspn(b, " \t\r\n");
		if (!na || na != nb || memcmp(a, b, na))
			return false;
		a += na;
		b += nb;
	}
	return true;
}

/* DigitalOcean's fingerprint of a public key line: the MD5 of the key blob, colon-separated
 * hex (47 characters). -EINVAL when the line has no base64 blob. */
static int dgo_fingerprint(const char *pub, char out[48])
{
	const char *b = pub + strspn(pub, " \t");
	b += strcspn(b, " \t");
	b += strspn(b, " \t");
	size_t n = strcspn(b, " \t\r\n");
	if (!n || n % 4 || n > DGO_PUBKEY_MAX)
		return -EINVAL;
	uint8_t *blob = NULL;
	size_t len = 0;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char h[33];
	int r = b64_decode_text(b, n, &blob, &len) == 0 && len > 0 &&
			EVP_Digest(blob, len, md, &mdlen, EVP_md5(), NULL) && mdlen == 16 &&
			hex_encode(md, 16, h, sizeof(h)) == 0
		? 0
		: -EINVAL;
	for (unsigned int i = 0; !r && i < 16; i++) {
		out[3 * i] = h[2 * i];
		out[3 * i + 1] = h[2 * i + 1];
		out[3 * i + 2] = i < 15 ? ':' : '\0';
	}
	free(blob);
	return r;
}

/* The id of pub among the account's keys, read whole (GET /account/keys, all pages): 0 with
 * id, -ENOENT when it is not there, else -errno with err. */
static int dgo_find_key(struct dgo *d, const char *pub, char *id, size_t idlen, char *err,
			size_t errlen)
{
	cJSON *all = NULL;
	const cJSON *k;
	int r = dgo_list(d, "/account/keys", "", "ssh_keys", &all, err, errlen);
	if (!r)
		r = -ENOENT;
	cJSON_ArrayForEach(k, (r == -ENOENT ? all : NULL))
	{
		if (dgo_same_key(backend_jstr(k, "public_key"), pub) &&
		    dgo_id_text(backend_jget(k, "id"), id, idlen)) {
			r = 0;
			break;
		}
	}
	cJSON_Delete(all);
	return r;
}

/* The id of the project key on the account, added as "fleetfs-<project>" when absent. Found
 * by its fingerprint: one call that the keys listing's own rate limit (10 a minute) does not
 * count. A key added at the same moment by a create next to this one makes the add fail
 * (422: already in use): the keys are then read whole. */
static int dgo_ensure_key_locked(struct dgo *d, const char *pub, const char *project, char *id,
				 size_t idlen, char *err, size_t errlen);

/* Creates running at once register the key once: the first looks, the others wait for it. */
static int dgo_ensure_key(struct dgo *d, const char *pub, const char *project, char *id,
			  size_t idlen, char *err, size_t errlen)
{
	backend_lock(d->api.ctx, d->api.base, "ssh key");
	int r = dgo_ensure_key_locked(d, pub, project, id, idlen, err, errlen);
	backend_unlock(d->api.ctx, d->api.base, "ssh key");
	return r;
}

static int dgo_ensure_key_locked(struct dgo *d, const char *pub, const char *project, char *id,
				 size_t idlen, char *err, size_t errlen)
{
	char fp[48], path[128], name[128], kname[160], e2[256];
	long st = 0;
	cJSON *doc = NULL, *body = NULL;
	if (dgo_fingerprint(pub, fp))
		return backend_fail(err, errlen, -EINVAL,
				"%s: the SSH public key is not an OpenSSH key", d->label);
	fmt_cut(path, sizeof(path), "key %s", fp); /* fits: fp is under 48 */
	if (backend_memo_get(d->api.ctx, d->api.base, path, id, idlen))
		return 0;
	fmt_cut(path, sizeof(path), "/account/keys/%s", fp); /* fits: fp is under 48 */
	int r = dgo_call(d, "GET", path, NULL, &st, &doc, err, errlen);
	const cJSON *k = backend_jget(doc, "ssh_key");
	if (!r && dgo_same_key(backend_jstr(k, "public_key"), pub) &&
	    dgo_id_text(backend_jget(k, "id"), id, idlen)) {
		cJSON_Delete(doc);
		fmt_cut(path, sizeof(path), "key %s", fp); /* fits: fp is under 48 */
		backend_memo_put(d->api.ctx, d->api.base, path, id);
		return 0;
	}
	cJSON_Delete(doc);
	doc = NULL;
	if (r && r != -ENOENT)
		return r;
	err[0] = '\0';
	str_sanitize(name, sizeof(name), project && *project ? project : "main");
	body = cJSON_CreateObject();
	fmt_cut(kname, sizeof(kname), "fleetfs-%s", name); /* fits: name is under 128 */
	cJSON_AddStringToObject(body, "name", kname);
	cJSON_AddStringToObject(body, "public_key", pub);
	r = dgo_call(d, "POST", "/account/keys", body, &st, &doc, err, errlen);
	cJSON_Delete(body);
	if (!r && !dgo_id_text(backend_jget(backend_jget(doc, "ssh_key"), "id"), id, idlen))
		r = backend_fail(err, errlen, -EPROTO, "%s: POST /account/keys: no ssh_key.id",
			     d->label);
	else if (r && st == 422 && !dgo_find_key(d, pub, id, idlen, e2, sizeof(e2)))
		r = 0; /* already there */
	cJSON_Delete(doc);
	if (!r) {
		err[0] = '\0';
		fmt_cut(path, sizeof(path), "key %s", fp); /* fits: fp is under 48 */
		backend_memo_put(d->api.ctx, d->api.base, path, id);
	}
	return r;
}

/* ------------------------------------------------------------------ operations */

static int digitalocean_check(const struct backend_ctx *ctx, char *err, size_t errlen)
{
	struct dgo d;
	cJSON *doc = NULL;
	long st = 0;
	char pid[128];
	int r = dgo_open(&d, ctx, err, errlen);
	if (!r)
		r = dgo_call(&d, "GET", "/account", NULL, &st, &doc, err, errlen);
	const cJSON *acct = backend_jget(doc, "account");
	if (!r && !cJSON_IsObject(acct))
		r = backend_fail(err, errlen, -EPROTO, "%s: GET /account: no account object", d.label);
	if (!r && backend_jstr(acct, "status") && !strcmp(backend_jstr(acct, "status"), "locked")) {
		char m[300];
		str_sanitize(m, sizeof(m),
			     backend_jstr(acct, "status_message") ? backend_jstr(acct, "status_message") : "");
		r = backend_fail(err, errlen, -EACCES, "%s: the account is locked%s%s", d.label,
			     m[0] && strcmp(m, " ") ? ": " : "", m[0] && strcmp(m, " ") ? m : "");
	}
	cJSON_Delete(doc);
	if (!r) {
		char *project = backend_config_str(ctx, "project_name");
		if (project && *project)
			r = dgo_project_id(&d, project, pid, sizeof(pid), err, errlen);
		backend_secret_free(project);
	}
	dgo_close(&d);
	return r;
}

/* dstack's image for an offer: Ubuntu for CPU-only sizes, DigitalOcean's GPU images else. */
static const char *dgo_image(const struct offer *o)
{
	if (o->gpu_count <= 0)
		return "ubuntu-24-04-x64";
	if (o->gpu_vendor && !strcasecmp(o->gpu_vendor, "amd"))
		return "gpu-amd-base";
	return o->gpu_count == 8 ? "gpu-h100x8-base" : "gpu-h100x1-base";
}

/* A tag: prefix + s with every character DigitalOcean does not allow in tags
 * ([A-Za-z0-9_:-]) as '-', cut to the tag length limit. */
static void dgo_add_tag(cJSON *tags, const char *prefix, const char *s)
{
	char t[DGO_NAME_MAX + 1];
	if (fmt(t, sizeof(t), "%s%s", prefix, s ? s : ""))
		return; /* no tag rather than one with a cut name */
	for (char *p = t; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == ':' || *p == '-'))
			*p = '-';
	cJSON_AddItemToArray(tags, cJSON_CreateString(t));
}

/* Is name a droplet name DigitalOcean takes (a host name: [A-Za-z0-9.-], starting and
 * ending with a letter or digit)? */
static bool dgo_name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (!n || n > DGO_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum =
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && ((c != '.' && c != '-') || i == 0 || i == n - 1))
			return false;
	}
	return true;
}

/* The create request of dstack's create (reference §6.4), with fleetfs's tags. */
static cJSON *dgo_droplet_body(const struct bk_create_req *req, const char *key_id,
			       const char *user_data, const char *project_id)
{
	cJSON *b = cJSON_CreateObject(), *tags;
	cJSON_AddStringToObject(b, "name", req->cloud_name);
	cJSON_AddStringToObject(b, "region", req->offer->region);
	cJSON_AddStringToObject(b, "size", req->offer->instance);
	cJSON_AddStringToObject(b, "image", dgo_image(req->offer));
	long long kid = 0;
	(void)num_parse_ll(key_id, 1, 9007199254740992LL, &kid); /* dgo_id_text made it */
	cJSON_AddItemToArray(cJSON_AddArrayToObject(b, "ssh_keys"),
			     cJSON_CreateNumber((double)kid));
	cJSON_AddFalseToObject(b, "backups");
	cJSON_AddFalseToObject(b, "ipv6");
	cJSON_AddFalseToObject(b, "monitoring");
	tags = cJSON_AddArrayToObject(b, "tags");
	dgo_add_tag(tags, "fleetfs", "");
	dgo_add_tag(tags, "fleetfs-project-", req->project);
	dgo_add_tag(tags, "fleetfs-fleet-", req->fleet);
	cJSON_AddStringToObject(b, "user_data", user_data);
	if (project_id && *project_id)
		cJSON_AddStringToObject(b, "project_id", project_id);
	return b;
}

static int digitalocean_create(const struct backend_ctx *ctx, const struct bk_create_req *req,
			       struct bk_vm *out, char *err, size_t errlen)
{
	const struct offer *o = req->offer;
	const char *type = ctx->type ? ctx->type : "digitalocean";
	char key_id[32] = "", pid[128] = "", e2[256], *pub = NULL, *ud = NULL, *project = NULL;
	struct dgo d;
	long st = 0;
	cJSON *body = NULL, *doc = NULL;
	memset(out, 0, sizeof(*out));
	if (!o || !o->region || !*o->region || !o->instance || !*o->instance)
		return backend_fail(err, errlen, -EINVAL, "%s: the offer has no region or size", type);
	if (!dgo_name_ok(req->cloud_name))
		return backend_fail(err, errlen, -EINVAL,
				"%s: droplet names are 1 to %d letters, digits, '.' and '-'", type,
				DGO_NAME_MAX);
	/* one OpenSSH line */
	size_t len = req->ssh_pubkey ? strcspn(req->ssh_pubkey, "\r\n") : 0;
	while (len && req->ssh_pubkey[len - 1] == ' ')
		len--;
	if (!len || len > DGO_PUBKEY_MAX)
		return backend_fail(err, errlen, -EINVAL, "%s: no SSH public key", type);
	int r = dgo_open(&d, ctx, err, errlen);
	if (r)
		return r;
	pub = xstrndup(req->ssh_pubkey, len);
	ud = req->user_data && *req->user_data ? xstrdup(req->user_data) : backend_cloud_init(pub);
	r = dgo_ensure_key(&d, pub, req->project ? req->project : ctx->project, key_id,
			   sizeof(key_id), err, errlen);
	project = r ? NULL : backend_config_str(ctx, "project_name");
	if (!r && project && *project) {
		char what[300];
		struct project_q q = {&d, project};
		if (fmt(what, sizeof(what), "project %s", project))
			r = backend_fail(err, errlen, -EINVAL, "%s: project_name is too long",
					 d.label);
		else
			r = backend_memo_once(ctx, d.api.base, what, 0, project_make, &q, pid,
					      sizeof(pid), err, errlen);
	}
	if (!r) {
		body = dgo_droplet_body(req, key_id, ud, pid);
		r = dgo_call(&d, "POST", "/droplets", body, &st, &doc, err, errlen);
		if (r && st == 422) /* DigitalOcean's word for "cannot place it now" */
			r = -ENOSPC;
		else if (r == -ENOENT)
			r = -EINVAL;
		if (r == -EINVAL) { /* maybe the key or the project is gone: look again */
			char fp[48], what[300];
			if (!dgo_fingerprint(pub, fp)) {
				/* fits: fp is under 48 */
				fmt_cut(what, sizeof(what), "key %s", fp);
				backend_memo_put(ctx, d.api.base, what, NULL);
			}
			/* a project_name too long was never memoized */
			if (!fmt(what, sizeof(what), "project %s", project ? project : ""))
				backend_memo_put(ctx, d.api.base, what, NULL);
		}
	}
	if (!r)
		r = dgo_vm(&d, backend_jget(doc, "droplet"), out, err, errlen);
	if (!r && pid[0]) /* the droplet exists whatever this answers: it stays ours */
		(void)dgo_assign(&d, pid, out->id, e2, sizeof(e2));
	if (!r) {
		if (!out->name[0])
			str_sanitize(out->name, sizeof(out->name), req->cloud_name);
		if (!out->region[0])
			str_sanitize(out->region, sizeof(out->region), o->region);
		if (!out->instance[0])
			str_sanitize(out->instance, sizeof(out->instance), o->instance);
		if (!out->status[0])
			fmt_cut(out->status, sizeof(out->status), "new");
	}
	cJSON_Delete(body);
	cJSON_Delete(doc);
	backend_secret_free(project);
	free(ud);
	free(pub);
	dgo_close(&d);
	return r;
}

static int digitalocean_get(const struct backend_ctx *ctx, const char *id, const char *backend_data,
			    struct bk_vm *out, char *err, size_t errlen)
{
	char path[BK_ID_MAX + 16];
	struct dgo d;
	long st = 0;
	cJSON *doc = NULL;
	(void)backend_data; /* DigitalOcean needs none */
	memset(out, 0, sizeof(*out));
	if (!dgo_id_ok(id))
		return backend_fail(err, errlen, -EINVAL, "%s: not a droplet id",
				ctx->type ? ctx->type : "digitalocean");
	fmt_cut(path, sizeof(path), "/droplets/%s", id); /* fits: dgo_id_ok */
	int r = dgo_open(&d, ctx, err, errlen);
	if (!r)
		r = dgo_call(&d, "GET", path, NULL, &st, &doc, err, errlen);
	if (!r)
		r = dgo_vm(&d, backend_jget(doc, "droplet"), out, err, errlen);
	cJSON_Delete(doc);
	dgo_close(&d);
	return r;
}

static int digitalocean_terminate(const struct backend_ctx *ctx, const char *id,
				  const char *backend_data, char *err, size_t errlen)
{
	char path[BK_ID_MAX + 16];
	struct dgo d;
	long st = 0;
	cJSON *doc = NULL;
	(void)backend_data;
	if (!dgo_id_ok(id))
		return backend_fail(err, errlen, -EINVAL, "%s: not a droplet id",
				ctx->type ? ctx->type : "digitalocean");
	fmt_cut(path, sizeof(path), "/droplets/%s", id); /* fits: dgo_id_ok */
	int r = dgo_open(&d, ctx, err, errlen);
	if (!r)
		r = dgo_call(&d, "DELETE", path, NULL, &st, &doc, err, errlen);
	if (r == -ENOENT) { /* gone already: what was asked for */
		r = 0;
		err[0] = '\0';
	}
	cJSON_Delete(doc);
	dgo_close(&d);
	return r;
}

/* Every droplet named fleetfs-...: the plain ones and the GPU ones (the API lists those only
 * when asked for type=gpus), all pages, each once. */
static int digitalocean_list_own(const struct backend_ctx *ctx, struct bk_vm **out, size_t *n,
				 char *err, size_t errlen)
{
	static const char *const kinds[] = {"", "type=gpus"};
	struct dgo d;
	cJSON *lists[2] = {NULL, NULL};
	struct bk_vm *v = NULL;
	size_t k = 0, total = 0;
	char e2[128];
	*out = NULL;
	*n = 0;
	int r = dgo_open(&d, ctx, err, errlen);
	for (size_t i = 0; !r && i < 2; i++)
		r = dgo_list(&d, "/droplets", kinds[i], "droplets", &lists[i], err, errlen);
	for (size_t i = 0; !r && i < 2; i++)
		total += (size_t)cJSON_GetArraySize(lists[i]);
	if (!r && !(v = calloc(total + 1, sizeof(*v))))
		r = backend_fail(err, errlen, -ENOMEM, "%s: out of memory", d.label);
	for (size_t i = 0; !r && i < 2; i++) {
		const cJSON *drop;
		cJSON_ArrayForEach(drop, lists[i])
		{
			const char *name = backend_jstr(drop, "name");
			bool dup = false;
			if (!name || strncmp(name, DGO_OWN_PREFIX, strlen(DGO_OWN_PREFIX)) ||
			    dgo_vm(&d, drop, &v[k], e2, sizeof(e2)))
				continue;
			for (size_t j = 0; j < k && !dup; j++)
				dup = !strcmp(v[j].id, v[k].id);
			if (!dup)
				k++;
		}
	}
	if (r) {
		free(v);
	} else {
		*out = v;
		*n = k;
	}
	cJSON_Delete(lists[0]);
	cJSON_Delete(lists[1]);
	dgo_close(&d);
	return r;
}

/* One implementation, two types (digitalocean, amddevcloud): only the default base URL
 * differs (dgo_default_api). */
const struct backend_ops digitalocean_ops = {
	.offers = digitalocean_offers,
	.check = digitalocean_check,
	.create = digitalocean_create,
	.get = digitalocean_get,
	.terminate = digitalocean_terminate,
	.list_own = digitalocean_list_own,
	.provision_timeout_min = 10,
	/* a droplet is listed once its create answers 202; the margin: a create finished after
	 * fleetfs stopped waiting for its answer */
	.create_lag_s = 30,
};
