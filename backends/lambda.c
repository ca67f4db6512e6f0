/* lambda: the Lambda Cloud provider (backend type "lambda"), API v1.
 *
 * Facts: reference providers-gpuclouds.md §2 and the published spec
 * (reference/specs/lambda-cloud.yaml); where they differ, the spec wins.
 *
 * - Offers: gpuhunt's catalog, as in dstack, with live availability from GET /instance-types
 *   (an offer is available when its region is among the regions_with_capacity_available of
 *   its instance type). Availability changes between catalog versions: the catalog is read
 *   whole again unless both it and the availability are as the cached offers had them. A
 *   failed availability call fails the refresh: the offers cache keeps the previous offers
 *   and shows the error.
 * - Create: the project key is registered under dstack's name for it (the last 16 hex digits
 *   of the SHA-1 of the key text), so fleetfs and dstack share one key on an account; then one
 *   launch. Lambda takes no cloud-init: the image's user is ubuntu, the key goes in through
 *   ssh_key_names.
 * - Get reads GET /instances/{id}; list_own reads GET /instances (one page: the API has no
 *   paging) and keeps the names fleetfs gives.
 *
 * Errors: Lambda answers {"error": {"code", "message", "suggestion"}}; err is then
 * "lambda: <code>: <message> (<suggestion>)", and the code picks the errno before the HTTP
 * status does. Nothing here puts the API key in err (it is also masked out of whatever the
 * provider says) and no request body is ever logged.
 */
#include "backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "http.h"
#include "../lib/enc.h"

#define LAMBDA_API "https://cloud.lambdalabs.com/api/v1"
#define LAMBDA_USER "ubuntu"
#define LAMBDA_SSH_PORT 22
#define LAMBDA_OWN_PREFIX "fleetfs-"
#define LAMBDA_NAME_MAX 64 /* the spec's instanceName and sshKeyName maxLength */
#define LAMBDA_KEYNAME_HEX 16

/* One operation's view of the provider: the API base and the key (a secret). */
/* ------------------------------------------------------------------ calls and errors */

/* Set up l for one operation: 0, or -EINVAL/-ENAMETOOLONG with err. Close with
 * backend_api_close. */
static int lam_open(struct bk_api *l, const struct backend_ctx *ctx, char *err, size_t errlen)
{
	return backend_api_open(ctx, LAMBDA_API, true, l, err, errlen);
}

/* The errno of a Lambda error answer: the error code when it says something fleetfs acts on,
 * else the HTTP status. */
static int lam_errno(long status, const char *code)
{
	/* clang-format off */
	static const struct {
		const char *code;
		int err;
	} codes[] = {
		{"global/invalid-api-key", -EACCES},
		{"global/account-inactive", -EACCES},
		{"global/quota-exceeded", -ENOSPC},
		{"global/invalid-parameters", -EINVAL},
		{"global/object-does-not-exist", -ENOENT},
	};
	/* clang-format on */
	for (size_t i = 0; code && i < sizeof(codes) / sizeof(codes[0]); i++)
		if (!strcmp(code, codes[i].code))
			return codes[i].err;
	if (code && strstr(code, "capacity")) /* instance-operations/launch/insufficient-capacity */
		return -ENOSPC;
	return backend_http_errno(status);
}

/* err for an error answer: "lambda: <code>: <message> (<suggestion>)", or the status when the
 * answer is not Lambda's error envelope. Provider text is cut and made printable. */
static void lam_errmsg(const char *method, const char *path, long status, const cJSON *doc,
		       char *err, size_t errlen)
{
	const cJSON *e = backend_jget(doc, "error");
	const char *code = backend_jstr(e, "code"), *msg = backend_jstr(e, "message"), *sug = backend_jstr(e, "suggestion");
	char c[96], m[400], s[300];
	if (!code) {
		fmt_cut(err, errlen, "lambda: %s %s: HTTP %ld", method, path, status);
		return;
	}
	str_sanitize(c, sizeof(c), code);
	str_sanitize(m, sizeof(m), msg ? msg : "(no message)");
	str_sanitize(s, sizeof(s), sug ? sug : "");
	fmt_cut(err, errlen, "lambda: %s: %s%s%s%s", c, m, s[0] ? " (" : "", s, s[0] ? ")" : "");
}

/* One API call: method on base + path with the key, body (may be NULL). 0 with *doc, the
 * answer (a JSON object with "data"; caller frees with cJSON_Delete), on a 2xx; else -errno
 * with err (lam_errno's meanings, -EPROTO for a 2xx that is not such an object, or the HTTP
 * client's transport errors) and *doc NULL. */
static int lam_call(struct bk_api *l, const char *method, const char *path, const cJSON *body,
		    cJSON **doc, char *err, size_t errlen)
{
	char url[1024], e[HTTP_ERR_MAX] = "";
	long status = 0;
	cJSON *d = NULL;
	int r;
	*doc = NULL;
	if (fmt(url, sizeof(url), "%s%s", l->base, path))
		return backend_fail(err, errlen, -ENAMETOOLONG, "lambda: URL too long");
	r = backend_json(l->ctx, method, url, l->key, body, &status, &d, e, sizeof(e));
	if (r) {
		fmt_cut(err, errlen, "lambda: %s", e); /* e names the method and the URL */
	} else if (status < 200 || status > 299) {
		r = lam_errno(status, backend_jstr(backend_jget(d, "error"), "code"));
		lam_errmsg(method, path, status, d, err, errlen);
	} else if (!backend_jget(d, "data")) {
		r = -EPROTO;
		fmt_cut(err, errlen, "lambda: %s %s: HTTP %ld without a JSON data member", method,
			path, status);
	}
	if (r) {
		cJSON_Delete(d);
		d = NULL;
		backend_redact(l->key, err);
	}
	*doc = d;
	return r;
}

/* ------------------------------------------------------------------ instances */

static enum bk_vm_state lam_state(const char *status)
{
	/* clang-format off */
	static const struct {
		const char *status;
		enum bk_vm_state state;
	} map[] = {
		{"booting", BK_VM_PENDING},
		{"active", BK_VM_RUNNING},
		{"unhealthy", BK_VM_RUNNING}, /* up, failing Lambda's checks: status says so */
		{"terminating", BK_VM_TERMINATING},
		{"terminated", BK_VM_TERMINATED},
		{"preempted", BK_VM_TERMINATED},
	};
	/* clang-format on */
	for (size_t i = 0; status && i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(status, map[i].status))
			return map[i].state;
	return BK_VM_PENDING; /* a status newer than this code: not up yet as far as we know */
}

/* Copy an address when it is one (IPv4 or IPv6), else leave dst empty. */
static void lam_addr(char *dst, size_t dstlen, const char *s)
{
	unsigned char a[16];
	dst[0] = '\0';
	if (s && (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1))
		fmt_cut(dst, dstlen, "%s", s); /* fits: an address, at most 45 characters */
}

/* An instance object of the API into out. 0, or -EPROTO (no usable id) with err. */
static int lam_vm(const cJSON *inst, struct bk_vm *out, char *err, size_t errlen)
{
	const char *id = backend_jstr(inst, "id");
	memset(out, 0, sizeof(*out));
	if (!backend_id_ok(id))
		return backend_fail(err, errlen, -EPROTO, "lambda: an instance without a usable id");
	fmt_cut(out->id, sizeof(out->id), "%s", id); /* fits: backend_id_ok */
	str_sanitize(out->name, sizeof(out->name), backend_jstr(inst, "name"));
	str_sanitize(out->status, sizeof(out->status), backend_jstr(inst, "status"));
	str_sanitize(out->region, sizeof(out->region), backend_jstr(backend_jget(inst, "region"), "name"));
	str_sanitize(out->instance, sizeof(out->instance),
		     backend_jstr(backend_jget(inst, "instance_type"), "name"));
	lam_addr(out->ip, sizeof(out->ip), backend_jstr(inst, "ip"));
	lam_addr(out->internal_ip, sizeof(out->internal_ip), backend_jstr(inst, "private_ip"));
	out->state = lam_state(backend_jstr(inst, "status"));
	fmt_cut(out->username, sizeof(out->username), "%s", LAMBDA_USER); /* fits: a literal */
	out->ssh_port = LAMBDA_SSH_PORT;
	return 0;
}

/* ------------------------------------------------------------------ SSH keys */

/* dstack's name for a public key: the last 16 hex digits of the SHA-1 of its text. */
static int lam_key_name(const char *pub, size_t len, char out[LAMBDA_KEYNAME_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!EVP_Digest(pub, len, md, &n, EVP_sha1(), NULL) || n < LAMBDA_KEYNAME_HEX / 2)
		return -EIO;
	return hex_encode(md + n - LAMBDA_KEYNAME_HEX / 2, LAMBDA_KEYNAME_HEX / 2, out,
			  LAMBDA_KEYNAME_HEX + 1);
}

/* Is a key named name in a GET /ssh-keys answer? */
static bool lam_has_key(const cJSON *doc, const char *name)
{
	const cJSON *k;
	cJSON_ArrayForEach(k, backend_jget(doc, "data"))
	{
		const char *n = backend_jstr(k, "name");
		if (n && !strcmp(n, name))
			return true;
	}
	return false;
}

static int lam_key_listed(struct bk_api *l, const char *name, bool *have, char *err, size_t errlen)
{
	cJSON *doc = NULL;
	int r = lam_call(l, "GET", "/ssh-keys", NULL, &doc, err, errlen);
	if (!r && !cJSON_IsArray(backend_jget(doc, "data")))
		r = backend_fail(err, errlen, -EPROTO, "lambda: GET /ssh-keys: data is not a list");
	*have = !r && lam_has_key(doc, name);
	cJSON_Delete(doc);
	return r;
}

/* Make sure the account has pub under name: list, add when absent. A create running next to
 * this one may add it first (the add is then refused): the list is read again. */
/* A key known to be registered is not listed again for every create (backend_memo). */
static bool key_known(const struct bk_api *l, const char *name)
{
	char v[8];
	return backend_memo_get(l->ctx, l->base, name, v, sizeof(v));
}

static void key_remember(const struct bk_api *l, const char *name, bool known)
{
	backend_memo_put(l->ctx, l->base, name, known ? "1" : NULL);
}

static int lam_ensure_key_locked(struct bk_api *l, const char *pub, const char *name, char *err,
				 size_t errlen);

/* Creates running at once register the key once: the first looks, the others wait for it. */
static int lam_ensure_key(struct bk_api *l, const char *pub, const char *name, char *err,
			  size_t errlen)
{
	if (key_known(l, name))
		return 0;
	backend_lock(l->ctx, l->base, "ssh key");
	int r = lam_ensure_key_locked(l, pub, name, err, errlen);
	backend_unlock(l->ctx, l->base, "ssh key");
	return r;
}

static int lam_ensure_key_locked(struct bk_api *l, const char *pub, const char *name, char *err,
				 size_t errlen)
{
	bool have = false;
	cJSON *doc = NULL;
	if (key_known(l, name))
		return 0;
	int r = lam_key_listed(l, name, &have, err, errlen);
	if (!r && have)
		key_remember(l, name, true);
	if (r || have)
		return r;
	cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "name", name);
	cJSON_AddStringToObject(body, "public_key", pub);
	r = lam_call(l, "POST", "/ssh-keys", body, &doc, err, errlen);
	cJSON_Delete(body);
	cJSON_Delete(doc);
	if (r == -EINVAL) {
		char e2[256];
		if (!lam_key_listed(l, name, &have, e2, sizeof(e2)) && have)
			r = 0;
	}
	if (!r)
		key_remember(l, name, true);
	return r;
}

/* ------------------------------------------------------------------ operations */

static int lambda_check(const struct backend_ctx *ctx, char *err, size_t errlen)
{
	struct bk_api l;
	cJSON *doc = NULL;
	int r = lam_open(&l, ctx, err, errlen);
	if (!r)
		r = lam_call(&l, "GET", "/instance-types", NULL, &doc, err, errlen);
	cJSON_Delete(doc);
	backend_api_close(&l);
	return r;
}

/* Each offer's availability from a GET /instance-types answer. */
static void lam_set_availability(struct offer_list *list, const cJSON *types)
{
	const char *yes = offer_list_intern(list, "available");
	const char *no = offer_list_intern(list, "not_available");
	for (size_t i = 0; i < list->n; i++) {
		struct offer *o = &list->v[i];
		const cJSON *regions =
			backend_jget(backend_jget(types, o->instance), "regions_with_capacity_available");
		const cJSON *reg;
		o->availability = no;
		if (!cJSON_IsArray(regions))
			continue;
		cJSON_ArrayForEach(reg, regions)
		{
			const char *name = backend_jstr(reg, "name");
			if (name && !strcmp(name, o->region)) {
				o->availability = yes;
				break;
			}
		}
	}
}

/* An order-independent digest of the (instance type, region) pairs with capacity: the XOR
 * of each pair's SHA-1. */
static void lam_avail_digest(const cJSON *types, unsigned char out[BK_DIGEST_MAX])
{
	const cJSON *t, *reg;
	memset(out, 0, BK_DIGEST_MAX);
	cJSON_ArrayForEach(t, types)
	{
		const cJSON *regions = backend_jget(t, "regions_with_capacity_available");
		if (!t->string || !cJSON_IsArray(regions))
			continue;
		cJSON_ArrayForEach(reg, regions)
		{
			const char *name = backend_jstr(reg, "name");
			unsigned char md[EVP_MAX_MD_SIZE];
			unsigned int n = 0;
			char *pair = xasprintf("%s\n%s", t->string, name ? name : "");
			if (EVP_Digest(pair, strlen(pair), md, &n, EVP_sha1(), NULL))
				for (unsigned int i = 0; i < n; i++)
					out[i] ^= md[i];
			free(pair);
		}
	}
}

/* The catalog's offers with live availability: GET /instance-types first (its failure fails
 * the refresh), then the catalog, read whole unless nothing changed since the cached offers. */
static int lambda_offers(const struct bk_offers_req *req, struct bk_offers_res *res, char *err,
			 size_t errlen)
{
	struct bk_offers_req cat = *req;
	unsigned char digest[BK_DIGEST_MAX];
	struct bk_api l;
	cJSON *doc = NULL;
	const cJSON *types = NULL;
	int r = lam_open(&l, &req->ctx, err, errlen);
	if (!r)
		r = lam_call(&l, "GET", "/instance-types", NULL, &doc, err, errlen);
	if (!r && !cJSON_IsObject(types = backend_jget(doc, "data")))
		r = backend_fail(err, errlen, -EPROTO,
			     "lambda: GET /instance-types: data is not an object");
	if (!r) {
		lam_avail_digest(types, digest);
		if (!req->known_version || !backend_offers_seen(&req->ctx, req->known_version, digest))
			cat.known_version = "";
		r = backend_catalog_offers(&cat, res, err, errlen);
	}
	if (!r) {
		if (!res->unchanged)
			lam_set_availability(&res->list, types);
		backend_offers_remember(&req->ctx, res->version, digest);
	} else if (r != -EACCES && !types) {
		/* Lambda did not answer: the catalog's offers still stand, their availability
		 * unknown (the credential check reports a refused key on its own) */
		bk_offers_res_free(res);
		memset(res, 0, sizeof(*res));
		err[0] = '\0';
		r = backend_catalog_offers(&cat, res, err, errlen);
	} else {
		bk_offers_res_free(res);
	}
	cJSON_Delete(doc);
	backend_api_close(&l);
	return r;
}

/* The launch request of dstack's create (reference §2.4). */
static cJSON *lam_launch_body(const struct bk_create_req *req, const char *key_name)
{
	cJSON *b = cJSON_CreateObject();
	cJSON *keys = cJSON_AddArrayToObject(b, "ssh_key_names");
	cJSON_AddStringToObject(b, "region_name", req->offer->region);
	cJSON_AddStringToObject(b, "instance_type_name", req->offer->instance);
	cJSON_AddItemToArray(keys, cJSON_CreateString(key_name));
	cJSON_AddArrayToObject(b, "file_system_names");
	cJSON_AddNumberToObject(b, "quantity", 1);
	cJSON_AddStringToObject(b, "name", req->cloud_name);
	return b;
}

/* The id of a launch answer: data.instance_ids[0]. */
static int lam_launched_id(const cJSON *doc, struct bk_vm *out, char *err, size_t errlen)
{
	const cJSON *ids = backend_jget(backend_jget(doc, "data"), "instance_ids");
	const cJSON *first = cJSON_IsArray(ids) ? cJSON_GetArrayItem(ids, 0) : NULL;
	if (cJSON_IsArray(ids) && !first) /* "fewer than the requested quantity" (spec) */
		return backend_fail(err, errlen, -ENOSPC, "lambda: launch started no instance");
	if (!cJSON_IsString(first) || !backend_id_ok(first->valuestring))
		return backend_fail(err, errlen, -EPROTO,
				"lambda: launch answered without a usable instance id");
	fmt_cut(out->id, sizeof(out->id), "%s", first->valuestring); /* fits: backend_id_ok */
	return 0;
}

static int lambda_create(const struct backend_ctx *ctx, const struct bk_create_req *req,
			 struct bk_vm *out, char *err, size_t errlen)
{
	const struct offer *o = req->offer;
	char key_name[LAMBDA_KEYNAME_HEX + 1], *pub = NULL;
	struct bk_api l;
	cJSON *body = NULL, *doc = NULL;
	memset(out, 0, sizeof(*out));
	if (!o || !o->region || !*o->region || !o->instance || !*o->instance)
		return backend_fail(err, errlen, -EINVAL,
				"lambda: the offer has no region or instance type");
	if (!req->cloud_name || !*req->cloud_name || strlen(req->cloud_name) > LAMBDA_NAME_MAX)
		return backend_fail(err, errlen, -EINVAL,
				"lambda: instance names are 1 to %d characters", LAMBDA_NAME_MAX);
	/* one OpenSSH line; a trailing newline must not change the key's name */
	size_t len = req->ssh_pubkey ? strcspn(req->ssh_pubkey, "\r\n") : 0;
	while (len && req->ssh_pubkey[len - 1] == ' ')
		len--;
	if (!len)
		return backend_fail(err, errlen, -EINVAL, "lambda: no SSH public key");
	int r = lam_open(&l, ctx, err, errlen);
	if (r)
		return r;
	pub = xstrndup(req->ssh_pubkey, len);
	r = lam_key_name(pub, len, key_name);
	if (r)
		fmt_cut(err, errlen, "lambda: cannot hash the SSH key (SHA-1)");
	if (!r)
		r = lam_ensure_key(&l, pub, key_name, err, errlen);
	if (!r) {
		body = lam_launch_body(req, key_name);
		r = lam_call(&l, "POST", "/instance-operations/launch", body, &doc, err, errlen);
		if (r == -ENOENT) /* an unknown type, region or key: this offer cannot be had */
			r = -EINVAL;
		if (r == -EINVAL) /* maybe the key was deleted: look again next time */
			key_remember(&l, key_name, false);
	}
	if (!r)
		r = lam_launched_id(doc, out, err, errlen);
	if (!r) {
		str_sanitize(out->name, sizeof(out->name), req->cloud_name);
		str_sanitize(out->region, sizeof(out->region), o->region);
		str_sanitize(out->instance, sizeof(out->instance), o->instance);
		/* fits: a literal */
		fmt_cut(out->username, sizeof(out->username), "%s", LAMBDA_USER);
		out->ssh_port = LAMBDA_SSH_PORT;
		out->state = BK_VM_PENDING;
	}
	cJSON_Delete(body);
	cJSON_Delete(doc);
	free(pub);
	backend_api_close(&l);
	return r;
}

static int lambda_get(const struct backend_ctx *ctx, const char *id, const char *backend_data,
		      struct bk_vm *out, char *err, size_t errlen)
{
	char path[BK_ID_MAX + 16];
	struct bk_api l;
	cJSON *doc = NULL;
	(void)backend_data; /* Lambda needs none */
	memset(out, 0, sizeof(*out));
	if (!backend_id_ok(id))
		return backend_fail(err, errlen, -EINVAL, "lambda: not an instance id");
	fmt_cut(path, sizeof(path), "/instances/%s", id); /* fits: backend_id_ok */
	int r = lam_open(&l, ctx, err, errlen);
	if (!r)
		r = lam_call(&l, "GET", path, NULL, &doc, err, errlen);
	if (!r)
		r = lam_vm(backend_jget(doc, "data"), out, err, errlen);
	cJSON_Delete(doc);
	backend_api_close(&l);
	return r;
}

static int lambda_terminate(const struct backend_ctx *ctx, const char *id, const char *backend_data,
			    char *err, size_t errlen)
{
	struct bk_api l;
	cJSON *doc = NULL, *body = NULL;
	(void)backend_data;
	if (!backend_id_ok(id))
		return backend_fail(err, errlen, -EINVAL, "lambda: not an instance id");
	int r = lam_open(&l, ctx, err, errlen);
	if (r)
		return r;
	body = cJSON_CreateObject();
	cJSON_AddItemToArray(cJSON_AddArrayToObject(body, "instance_ids"), cJSON_CreateString(id));
	r = lam_call(&l, "POST", "/instance-operations/terminate", body, &doc, err, errlen);
	if (r == -ENOENT) { /* gone already: what was asked for */
		r = 0;
		err[0] = '\0';
	}
	cJSON_Delete(body);
	cJSON_Delete(doc);
	backend_api_close(&l);
	return r;
}

static int lambda_list_own(const struct backend_ctx *ctx, struct bk_vm **out, size_t *n, char *err,
			   size_t errlen)
{
	struct bk_api l;
	cJSON *doc = NULL;
	const cJSON *inst, *data;
	struct bk_vm *v = NULL;
	size_t k = 0;
	char e2[128];
	*out = NULL;
	*n = 0;
	int r = lam_open(&l, ctx, err, errlen);
	if (!r)
		r = lam_call(&l, "GET", "/instances", NULL, &doc, err, errlen);
	data = backend_jget(doc, "data");
	if (!r && !cJSON_IsArray(data))
		r = backend_fail(err, errlen, -EPROTO, "lambda: GET /instances: data is not a list");
	if (!r && !(v = calloc((size_t)cJSON_GetArraySize(data) + 1, sizeof(*v))))
		r = backend_fail(err, errlen, -ENOMEM, "lambda: out of memory");
	if (r)
		data = NULL;
	cJSON_ArrayForEach(inst, data)
	{
		const char *name = backend_jstr(inst, "name");
		if (name && !strncmp(name, LAMBDA_OWN_PREFIX, strlen(LAMBDA_OWN_PREFIX)) &&
		    !lam_vm(inst, &v[k], e2, sizeof(e2)))
			k++;
	}
	if (r) {
		free(v);
	} else {
		*out = v;
		*n = k;
	}
	cJSON_Delete(doc);
	backend_api_close(&l);
	return r;
}

const struct backend_ops lambda_ops = {
	.offers = lambda_offers,
	.check = lambda_check,
	.create = lambda_create,
	.get = lambda_get,
	.terminate = lambda_terminate,
	.list_own = lambda_list_own,
	.provision_timeout_min = 30,
	/* a launch answers with the id and GET /instances lists it at once; the margin is for a
	 * launch Lambda completes after fleetfs stopped waiting for its answer */
	.create_lag_s = 30,
};
