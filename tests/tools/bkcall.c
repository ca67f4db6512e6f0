/* bkcall: one call of a backend's provider interface (backends/backend.h), for the protocol
 * tests of each provider against its fake (tests/fakes/) and for trying a provider by hand.
 *
 *   build/bkcall TYPE NAME CONFIG.yml OP [ARGS]
 *
 *   check                                  the cheap authenticated call
 *   offers                                 the offers (catalog: env FLEETFS_CATALOG = a
 *                                          directory, a base URL or none; unset: gpuhunt's
 *                                          default, GPUHUNT_CATALOG_DIR/URL first)
 *   create OFFER_JSON CLOUD_NAME PUBKEY    OFFER_JSON: an object as in offers.json (backend,
 *                                          type, region, instance, price, spot, gpus {vendor,
 *                                          name, memory_mib, count}, cpus, ...) or @FILE
 *                                          holding one; PUBKEY: a file with the public key
 *   get ID [BACKEND_DATA]
 *   terminate ID [BACKEND_DATA]
 *   list                                   list_own
 *
 * Prints one JSON object on stdout: {"rc": 0 | -errno, "errno": "ENOSPC" | "", "err": "...",
 * and "vm": {...} (create, get), "vms": [...] (list), "offers": [...] with "version",
 * "source", "skipped" (offers)}. Exit status 0 when rc is 0, 1 when it is not, 2 for a usage
 * or setup error (message on stderr). The HTTP client's log lines (never a secret) go to
 * stderr. Environment: whatever the provider and the HTTP client read (FLEETFS_ENDPOINT_<TYPE>,
 * FLEETFS_CA_BUNDLE, FLEETFS_TIME_SCALE), FLEETFS_PROJECT (default "main"), and for create
 * BKCALL_PLACEMENT_GROUP (the fleet's cluster placement group) and BKCALL_FLEET_TAGS
 * ("key=value,key=value": the fleet's tags).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "../../backends/backend.h"
#include "../../backends/catalog.h"
#include "../../backends/http.h"
#include "../../core/offers.h"
#include "../../lib/util.h"

#define FILE_MAX (1u << 20)

static void log_line(const char *line)
{
	fprintf(stderr, "bkcall: %s\n", line);
}

static int usage(void)
{
	fputs("usage: bkcall TYPE NAME CONFIG.yml OP [ARGS]\n"
	      "  OP: check | offers | create OFFER_JSON CLOUD_NAME PUBKEY_FILE |\n"
	      "      get ID [BACKEND_DATA] | terminate ID [BACKEND_DATA] | list\n",
	      stderr);
	return 2;
}

static const char *state_name(enum bk_vm_state s)
{
	static const char *const names[] = {"pending",	   "running",	 "stopped",
					    "terminating", "terminated", "failed"};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static cJSON *vm_json(const struct bk_vm *vm)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "id", vm->id);
	cJSON_AddStringToObject(j, "name", vm->name);
	cJSON_AddStringToObject(j, "state", state_name(vm->state));
	cJSON_AddStringToObject(j, "status", vm->status);
	cJSON_AddStringToObject(j, "ip", vm->ip);
	cJSON_AddStringToObject(j, "internal_ip", vm->internal_ip);
	cJSON_AddStringToObject(j, "region", vm->region);
	cJSON_AddStringToObject(j, "instance", vm->instance);
	cJSON_AddStringToObject(j, "username", vm->username);
	cJSON_AddNumberToObject(j, "ssh_port", vm->ssh_port);
	cJSON_AddStringToObject(j, "backend_data", vm->backend_data);
	return j;
}

/* The whole of a small file (a key, an offer), NUL-terminated; NULL with a message. */
static char *slurp(const char *path)
{
	struct buf b;
	buf_init(&b, FILE_MAX);
	int r = buf_read_file(&b, path);
	if (r) {
		fprintf(stderr, "bkcall: %s: %s\n", path, strerror(-r));
		buf_free(&b);
		return NULL;
	}
	size_t len;
	char *s = buf_steal(&b, &len);
	return s ? s : xstrdup("");
}

static const char *jstr(const cJSON *o, const char *k, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double jnum(const cJSON *o, const char *k, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* An offer from its JSON (offers.json's fields; gpu_* flat keys work too) into l. */
static int offer_from_json(const char *text, const char *type, const char *name,
			   struct offer_list *l)
{
	cJSON *j = cJSON_Parse(text);
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		fputs("bkcall: OFFER_JSON is not a JSON object\n", stderr);
		return -EINVAL;
	}
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(j, "gpus");
	const cJSON *gs = cJSON_IsObject(g) ? g : j;
	const char *pre = cJSON_IsObject(g) ? "" : "gpu_";
	char k_vendor[16], k_name[16], k_mem[24], k_count[16];
	/* fits: pre is "" or "gpu_" */
	fmt_cut(k_vendor, sizeof(k_vendor), "%svendor", pre);
	fmt_cut(k_name, sizeof(k_name), "%sname", pre);
	fmt_cut(k_mem, sizeof(k_mem), "%smemory_mib", pre);
	fmt_cut(k_count, sizeof(k_count), "%scount", pre);
	struct offer o = {
		.backend = jstr(j, "backend", name),
		.type = jstr(j, "type", type),
		.region = jstr(j, "region", ""),
		.instance = jstr(j, "instance", ""),
		.cpu_arch = jstr(j, "cpu_arch", "x86"),
		.gpu_vendor = jstr(gs, k_vendor, ""),
		.gpu_name = jstr(gs, k_name, ""),
		.availability = jstr(j, "availability", "unknown"),
		.source = jstr(j, "source", "catalog"),
		.price = jnum(j, "price", 0),
		.memory_mib = (uint64_t)jnum(j, "memory_mib", 0),
		.disk_mib = (uint64_t)jnum(j, "disk_mib", 0),
		.gpu_memory_mib = (uint64_t)jnum(gs, k_mem, 0),
		.cpus = (int)jnum(j, "cpus", 0),
		.gpu_count = (int)jnum(gs, k_count, 0),
		.spot = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "spot")),
	};
	int r = offer_list_push(l, &o);
	cJSON_Delete(j);
	return r;
}

static int do_offers(const struct backend_ops *ops, const struct backend_ctx *ctx, cJSON *res,
		     char *err, size_t errlen)
{
	struct bk_offers_req req = {.ctx = *ctx, .known_version = "", .now = (long long)time(NULL)};
	struct bk_offers_res out;
	struct buf b;
	memset(&out, 0, sizeof(out));
	buf_init(&b, (size_t)1 << 30);
	if (!ops->offers)
		return fmt_cut(err, errlen, "type %s lists no offers", ctx->type), -ENOTSUP;
	int r = ops->offers(&req, &out, err, errlen);
	if (!r)
		r = offers_json(&out.list, NULL, &b);
	if (!r) {
		cJSON_AddStringToObject(res, "version", out.version);
		cJSON_AddStringToObject(res, "source", out.source);
		cJSON_AddNumberToObject(res, "skipped", (double)out.skipped);
		cJSON_AddItemToObject(res, "offers", cJSON_Parse(b.data ? b.data : "[]"));
	}
	buf_free(&b);
	bk_offers_res_free(&out);
	return r;
}

static int do_create(const struct backend_ops *ops, const struct backend_ctx *ctx, char **argv,
		     cJSON *res, char *err, size_t errlen)
{
	struct offer_list l = {0};
	struct bk_vm vm;
	char *offer = argv[0][0] == '@' ? slurp(argv[0] + 1) : xstrdup(argv[0]);
	char *pub = slurp(argv[2]);
	char *user_data = NULL;
	int r = offer && pub ? offer_from_json(offer, ctx->type, ctx->name, &l) : -EINVAL;
	if (r) {
		fmt_cut(err, errlen, "bkcall: bad arguments");
		goto out;
	}
	pub[strcspn(pub, "\r\n")] = '\0';
	user_data = backend_cloud_init(pub);
	/* the fleet's tags: "k=v,k=v" */
	const char *tv = getenv("BKCALL_FLEET_TAGS");
	char *tags = tv ? xstrdup(tv) : NULL, *save = NULL;
	struct kv kv[16];
	size_t ntags = 0;
	for (char *t = tags ? strtok_r(tags, ",", &save) : NULL; t && ntags < 16;
	     t = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(t, '=');
		if (eq)
			*eq = '\0';
		kv[ntags++] = (struct kv){.key = t, .value = eq ? eq + 1 : (char *)""};
	}
	struct bk_create_req req = {.offer = &l.v[0],
				    .cloud_name = argv[1],
				    .project = ctx->project,
				    .fleet = "bkcall",
				    .num = 0,
				    .ssh_pubkey = pub,
				    .user_data = user_data,
				    .placement_group = getenv("BKCALL_PLACEMENT_GROUP"),
				    .tags = kv,
				    .ntags = ntags};
	r = ops->create(ctx, &req, &vm, err, errlen);
	free(tags);
	if (!r)
		cJSON_AddItemToObject(res, "vm", vm_json(&vm));
out:
	free(user_data);
	free(pub);
	free(offer);
	offer_list_free(&l);
	return r;
}

static int do_list(const struct backend_ops *ops, const struct backend_ctx *ctx, cJSON *res,
		   char *err, size_t errlen)
{
	struct bk_vm *v = NULL;
	size_t n = 0;
	int r = ops->list_own(ctx, &v, &n, err, errlen);
	if (!r) {
		cJSON *a = cJSON_AddArrayToObject(res, "vms");
		for (size_t i = 0; i < n; i++)
			cJSON_AddItemToArray(a, vm_json(&v[i]));
	}
	free(v);
	return r;
}

/* Run op; 0 or -errno with err; 1 (positive) for a usage error. */
static int run(const struct backend_ops *ops, const struct backend_ctx *ctx, const char *op,
	       int argc, char **argv, cJSON *res, char *err, size_t errlen)
{
	struct bk_vm vm;
	bool needs_vm_ops = strcmp(op, "check") && strcmp(op, "offers");
	if (needs_vm_ops && (!ops->create || !ops->get || !ops->terminate || !ops->list_own))
		return fmt_cut(err, errlen, "type %s cannot provision yet", ctx->type), -ENOTSUP;
	if (!strcmp(op, "check") && argc == 0)
		return ops->check ? ops->check(ctx, err, errlen)
				  : (fmt_cut(err, errlen, "type %s has no check", ctx->type),
				     -ENOTSUP);
	if (!strcmp(op, "offers") && argc == 0)
		return do_offers(ops, ctx, res, err, errlen);
	if (!strcmp(op, "create") && argc == 3)
		return do_create(ops, ctx, argv, res, err, errlen);
	if (!strcmp(op, "list") && argc == 0)
		return do_list(ops, ctx, res, err, errlen);
	if (!strcmp(op, "get") && (argc == 1 || argc == 2)) {
		int r = ops->get(ctx, argv[0], argc == 2 ? argv[1] : "", &vm, err, errlen);
		if (!r)
			cJSON_AddItemToObject(res, "vm", vm_json(&vm));
		return r;
	}
	if (!strcmp(op, "terminate") && (argc == 1 || argc == 2))
		return ops->terminate(ctx, argv[0], argc == 2 ? argv[1] : "", err, errlen);
	return 1;
}

int main(int argc, char **argv)
{
	char err[2048] = "", cerr[512];
	struct catalog *cat = NULL;
	struct http_client *http = NULL;
	char *config = NULL;
	int status = 2;
	if (argc < 5)
		return usage();
	const struct backend_ops *ops = backend_find(argv[1]);
	if (!ops) {
		fprintf(stderr, "bkcall: unknown backend type %s\n", argv[1]);
		return 2;
	}
	if (!(config = slurp(argv[3])))
		return 2;
	http_set_logger(log_line);
	if (!(http = http_client_new())) {
		fputs("bkcall: cannot start the HTTP client\n", stderr);
		goto out;
	}
	if (catalog_new(getenv("FLEETFS_CATALOG"), &cat, cerr, sizeof(cerr))) {
		fprintf(stderr, "bkcall: FLEETFS_CATALOG: %s\n", cerr);
		goto out;
	}
	catalog_set_http(cat, http);
	const char *project = getenv("FLEETFS_PROJECT");
	struct backend_config cfg;
	if (backend_config_parse(config, strlen(config), &cfg, cerr, sizeof(cerr))) {
		fprintf(stderr, "bkcall: %s\n", cerr);
		goto out;
	}
	struct bk_memo *memo = bk_memo_new();
	struct backend_ctx ctx = {.project = project && *project ? project : "main",
				  .name = argv[2],
				  .type = argv[1],
				  .config = &cfg,
				  .catalog = cat,
				  .http = http,
				  .memo = memo};
	cJSON *res = cJSON_CreateObject();
	int r = run(ops, &ctx, argv[4], argc - 5, argv + 5, res, err, sizeof(err));
	backend_config_free(&cfg);
	bk_memo_free(memo);
	if (r > 0) {
		cJSON_Delete(res);
		status = usage();
		goto out;
	}
	const char *en = r ? strerrorname_np(-r) : "";
	cJSON_AddNumberToObject(res, "rc", r);
	cJSON_AddStringToObject(res, "errno", en ? en : "");
	cJSON_AddStringToObject(res, "err", r ? err : "");
	char *text = cJSON_PrintUnformatted(res);
	if (text)
		printf("%s\n", text);
	cJSON_free(text);
	cJSON_Delete(res);
	status = r ? 1 : 0;
out:
	catalog_free(cat);
	http_client_free(http);
	http_global_cleanup();
	if (config) {
		explicit_bzero(config, strlen(config));
		free(config);
	}
	return status;
}
