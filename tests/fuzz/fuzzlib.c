/* fuzzlib: scratch files and scripted HTTP answers for the libFuzzer targets (fuzzlib.h). */
#include "fuzzlib.h"

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../backends/catalog.h"
#include "../../backends/http.h"
#include "../../lib/util.h"

static char g_scratch[512];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void scratch_remove(void)
{
	if (g_scratch[0])
		(void)nftw(g_scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void fz_remove_tree(const char *path)
{
	(void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what)
{
	fprintf(stderr, "fuzzlib: %s: %s\n", what, strerror(errno));
	exit(2);
}

const char *fz_scratch(void)
{
	if (g_scratch[0])
		return g_scratch;
	/* tmpfs when there is one: the store target syncs on every commit */
	const char *base = getenv("TMPDIR");
	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	if (fmt(g_scratch, sizeof(g_scratch), "%s/fleetfs-fuzz-XXXXXX", base))
		die("TMPDIR too long");
	if (!mkdtemp(g_scratch))
		die(g_scratch);
	atexit(scratch_remove);
	return g_scratch;
}

void fz_write(const char *name, const void *data, size_t len, char *out, size_t outlen)
{
	char path[1024];
	if (fmt(path, sizeof(path), "%s/%s", fz_scratch(), name))
		die("path too long");
	FILE *f = fopen(path, "wb");
	if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f))
		die(path);
	if (out && fmt(out, outlen, "%s", path))
		die("path too long");
}

/* An unencrypted PKCS#8 PEM private key of a new key pair (malloc'd). */
static char *new_key_pem(const char *alg)
{
	EVP_PKEY *pk = !strcmp(alg, "RSA") ? EVP_RSA_gen(2048) : EVP_PKEY_Q_keygen(NULL, NULL, alg);
	BIO *bio = BIO_new(BIO_s_mem());
	char *p = NULL, *out;
	if (!pk || !bio || !PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL)) {
		fprintf(stderr, "fuzzlib: cannot make a %s key\n", alg);
		exit(2);
	}
	long n = BIO_get_mem_data(bio, &p);
	out = fz_strndup((const uint8_t *)p, (size_t)n);
	BIO_free(bio);
	EVP_PKEY_free(pk);
	return out;
}

static void write_str(const char *name, const char *text)
{
	fz_write(name, text, strlen(text), NULL, 0);
}

const struct fileref_ctx *fz_writer_ctx(void)
{
	static struct fileref_ctx ctx;
	static const char *const dirs[] = {".ssh", ".oci", ".dstack", ".dstack/server", ".nebius",
					   ".kube"};
	if (ctx.home)
		return &ctx;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char d[1024];
		if (fmt(d, sizeof(d), "%s/%s", fz_scratch(), dirs[i]) || mkdir(d, 0700))
			die(d);
	}
	char *rsa = new_key_pem("RSA"), *ed = new_key_pem("ED25519");
	write_str(".ssh/id_rsa", rsa);
	write_str(".ssh/bastion_ed25519", ed);
	write_str(".ssh/admin_ed25519", ed);
	write_str(".oci/private_key.pem", rsa);
	char *sa = xasprintf("{\"type\": \"service_account\", \"project_id\": \"p\", "
			     "\"client_email\": \"sa@p.iam.gserviceaccount.com\", "
			     "\"token_uri\": \"https://oauth2.googleapis.com/token\", "
			     "\"private_key\": \"%s\"}",
			     "-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----\\n");
	write_str(".dstack/server/gcp-sa.json", sa);
	free(sa);
	cJSON *nb = cJSON_CreateObject(), *sc = cJSON_AddObjectToObject(nb, "subject-credentials");
	cJSON_AddStringToObject(sc, "alg", "RS256");
	cJSON_AddStringToObject(sc, "private-key", rsa);
	cJSON_AddStringToObject(sc, "kid", "publickey-e00fake");
	cJSON_AddStringToObject(sc, "iss", "serviceaccount-e00fake");
	cJSON_AddStringToObject(sc, "sub", "serviceaccount-e00fake");
	char *nbs = cJSON_Print(nb);
	write_str(".nebius/sa-credentials.json", nbs);
	cJSON_free(nbs);
	cJSON_Delete(nb);
	write_str(".kube/config", "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
				  "clusters:\n- name: c\n  cluster: {server: https://10.0.0.1}\n"
				  "contexts:\n- name: dev\n  context: {cluster: c, user: u}\n"
				  "- name: prod\n  context: {cluster: c, user: u, namespace: p}\n"
				  "users:\n- name: u\n  user: {token: t}\n");
	free(rsa);
	free(ed);
	ctx.home = ctx.cwd = fz_scratch();
	ctx.mountpoint = NULL;
	return &ctx;
}

char *fz_strndup(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* ---- scripted answers ---- */

#define FZ_MAX_ANSWERS 256

struct answer {
	long status;
	const char *hdr;
	size_t hdrlen;
	const char *body;
	size_t len;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static char *g_text;
static struct answer g_ans[FZ_MAX_ANSWERS];
static size_t g_n, g_next;

static int responder(void *arg, const struct http_req *req, struct http_resp *resp)
{
	(void)arg;
	(void)req;
	struct answer a;
	pthread_mutex_lock(&g_lock);
	bool have = g_next < g_n;
	if (have)
		a = g_ans[g_next++];
	pthread_mutex_unlock(&g_lock);
	if (!have)
		return -ECONNREFUSED;
	resp->status = a.status;
	int r = 0;
	if (a.hdrlen && memchr(a.hdr, ':', a.hdrlen))
		r = buf_append(&resp->headers, a.hdr, a.hdrlen);
	if (!r && a.hdrlen)
		r = buf_append(&resp->headers, "\n", 1);
	if (!r && a.len)
		r = buf_append(&resp->body, a.body, a.len);
	return r;
}

/* Start of the line after p (or end). */
static const char *next_line(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	return nl ? nl + 1 : end;
}

static bool is_sep(const char *p, const char *end)
{
	return end - p >= 4 && !memcmp(p, "=== ", 4);
}

char *fz_script_begin(const uint8_t *data, size_t size)
{
	static bool installed;
	if (!installed) {
		http_set_responder(responder, NULL);
		installed = true;
	}
	if (size > FZ_MAX_INPUT)
		size = FZ_MAX_INPUT;
	pthread_mutex_lock(&g_lock);
	free(g_text);
	g_text = fz_strndup(data, size);
	g_n = g_next = 0;
	const char *p = g_text, *end = g_text + size;
	/* the head: up to the first separator line */
	const char *q = p;
	while (q < end && !is_sep(q, end))
		q = next_line(q, end);
	size_t headlen = (size_t)(q - p);
	char *head = fz_strndup((const uint8_t *)p, headlen);
	while (q < end && g_n < FZ_MAX_ANSWERS) {
		struct answer *a = &g_ans[g_n++];
		const char *line = q + 4, *eol = next_line(q, end);
		const char *lend = eol > line && eol[-1] == '\n' ? eol - 1 : eol;
		char *num_end = NULL;
		char st[8];
		size_t sl = (size_t)(lend - line) < sizeof(st) - 1 ? (size_t)(lend - line) : sizeof(st) - 1;
		memcpy(st, line, sl);
		st[sl] = '\0';
		a->status = strtol(st, &num_end, 10);
		if (num_end == st || a->status < 0 || a->status > 999)
			a->status = 200;
		const char *h = line + (num_end - st);
		while (h < lend && *h == ' ')
			h++;
		a->hdr = h;
		a->hdrlen = (size_t)(lend - h);
		a->body = eol;
		q = eol;
		while (q < end && !is_sep(q, end))
			q = next_line(q, end);
		/* the newline before the next separator ends the line, not the body */
		a->len = (size_t)(q - eol);
		if (q < end && a->len && q[-1] == '\n')
			a->len--;
	}
	pthread_mutex_unlock(&g_lock);
	return head;
}

void fz_script_end(void)
{
	pthread_mutex_lock(&g_lock);
	g_n = g_next = 0;
	pthread_mutex_unlock(&g_lock);
}

bool fz_script_take(long *status, const char **body, size_t *len)
{
	bool have;
	pthread_mutex_lock(&g_lock);
	have = g_next < g_n;
	if (have) {
		*status = g_ans[g_next].status;
		*body = g_ans[g_next].body;
		*len = g_ans[g_next].len;
		g_next++;
	}
	pthread_mutex_unlock(&g_lock);
	return have;
}

size_t fz_words(char *head, char **w, size_t max)
{
	size_t n = 0;
	char *p = head;
	while (n < max) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (!*p)
			break;
		w[n++] = p;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			p++;
		if (*p)
			*p++ = '\0';
	}
	return n;
}

/* ---- one provider call ---- */

/* A small gpuhunt catalog for the types priced from catalogs (lambda, aws). */
static const char CATALOG_HEADER[] = "instance_name,location,price,cpu,memory,gpu_count,gpu_name,"
				     "gpu_memory,spot,disk_size,gpu_vendor,flags,cpu_arch,"
				     "provider_data\n";
static const char CATALOG_LAMBDA[] = "gpu_1x_a10,us-west-1,0.75,30,200,1,A10,24,False,1400,nvidia,,,\n"
				     "gpu_1x_a10,us-east-1,0.75,30,200,1,A10,24,False,1400,nvidia,,,\n"
				     "gpu_8x_h100_sxm5,us-east-1,23.92,208,1800,8,H100,80,False,"
				     "24780,nvidia,,,\n"
				     "gpu_1x_gh200,us-east-3,1.49,64,432,1,GH200,96,False,4096,"
				     "nvidia,,arm,\n";
static const char CATALOG_AWS[] = "t3.small,us-east-1,0.0208,2,2,0,,,False,,,,,\n"
				  "g5.xlarge,us-east-1,1.006,4,16,1,A10G,24,False,,nvidia,,,\n"
				  "g5.xlarge,us-east-1,0.4,4,16,1,A10G,24,True,,nvidia,,,\n"
				  "p4d.24xlarge,us-west-2,32.77,96,1152,8,A100,40,False,,nvidia,,,\n"
				  "g5g.xlarge,us-east-1,0.42,4,8,1,T4G,16,False,,nvidia,,arm,\n";

static struct http_client *g_http;
static struct catalog *g_catalog;

static void backend_init(void)
{
	char dir[1024], err[256];
	struct buf b;
	if (g_http)
		return;
	/* retries pause for nothing, and nothing logs */
	setenv("FLEETFS_TIME_SCALE", "0", 1);
	g_http = http_client_new();
	if (!g_http) {
		fprintf(stderr, "fuzzlib: no HTTP client\n");
		exit(2);
	}
	if (fmt(dir, sizeof(dir), "%s/catalog", fz_scratch()) || mkdir(dir, 0700))
		die("catalog dir");
	buf_init(&b, 1 << 20);
	(void)buf_append(&b, CATALOG_HEADER, strlen(CATALOG_HEADER));
	(void)buf_append(&b, CATALOG_LAMBDA, strlen(CATALOG_LAMBDA));
	fz_write("catalog/lambdalabs.csv", b.data, b.len, NULL, 0);
	(void)buf_truncate(&b, 0);
	(void)buf_append(&b, CATALOG_HEADER, strlen(CATALOG_HEADER));
	(void)buf_append(&b, CATALOG_AWS, strlen(CATALOG_AWS));
	fz_write("catalog/aws.csv", b.data, b.len, NULL, 0);
	buf_free(&b);
	if (catalog_new(dir, &g_catalog, err, sizeof(err))) {
		fprintf(stderr, "fuzzlib: catalog: %s\n", err);
		exit(2);
	}
	catalog_set_http(g_catalog, g_http);
}

struct http_client *fz_http(void)
{
	backend_init();
	return g_http;
}

static const char PUBKEY[] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx3b1k2bGFtYmRhZnV6emtleWZs"
			     "ZWV0ZnNmdXp6aW5n fleetfs";

void fz_backend_run(const char *type, const char *config, const char *dflt_instance,
		    const char *dflt_region, const uint8_t *data, size_t size)
{
	char name[32], err[1024] = "";
	char *w[4] = {NULL, NULL, NULL, NULL};
	backend_init();
	char *head = fz_script_begin(data, size);
	size_t nw = fz_words(head, w, 4);
	fmt_cut(name, sizeof(name), "fz"); /* fits: a literal */
	const struct backend_ops *ops = backend_find(type);
	struct backend_config cfg;
	if (!ops || backend_config_parse(config, strlen(config), &cfg, err, sizeof(err)))
		abort(); /* the target's own config must parse */
	struct bk_memo *memo = bk_memo_new(); /* empty for every input: the same run each time */
	struct backend_ctx ctx = {.project = "main", .name = name, .type = type, .config = &cfg,
				  .catalog = g_catalog, .http = g_http, .memo = memo};
	const char *op = nw ? w[0] : "get";
	if (!strcmp(op, "check") && ops->check) {
		(void)ops->check(&ctx, err, sizeof(err));
	} else if (!strcmp(op, "offers") && ops->offers) {
		struct bk_offers_req req = {.ctx = ctx, .known_version = nw > 1 ? w[1] : "",
					    .now = 1700000000};
		struct bk_offers_res res;
		memset(&res, 0, sizeof(res));
		if (!ops->offers(&req, &res, err, sizeof(err)))
			bk_offers_res_free(&res);
	} else if (!strcmp(op, "list") && ops->list_own) {
		struct bk_vm *v = NULL;
		size_t n = 0;
		if (!ops->list_own(&ctx, &v, &n, err, sizeof(err)))
			free(v);
	} else if (!strcmp(op, "terminate") && ops->terminate) {
		(void)ops->terminate(&ctx, nw > 1 ? w[1] : "12345", nw > 2 ? w[2] : "", err,
				     sizeof(err));
	} else if (!strcmp(op, "create") && ops->create) {
		struct offer o = {.backend = name, .type = type,
				  .region = nw > 2 ? w[2] : dflt_region,
				  .instance = nw > 1 ? w[1] : dflt_instance,
				  .cpu_arch = "x86", .gpu_vendor = "nvidia", .gpu_name = "A10",
				  .availability = "available", .source = "catalog", .price = 0.75,
				  .memory_mib = 16384, .disk_mib = 102400, .gpu_memory_mib = 24576,
				  .cpus = 4, .gpu_count = 1,
				  .spot = nw > 3 && !strcmp(w[3], "spot")};
		struct kv tags[1] = {{.key = (char *)"team", .value = (char *)"ml"}};
		char *ud = backend_cloud_init(PUBKEY);
		struct bk_create_req req = {.offer = &o, .cloud_name = "fleetfs-main-gpu-0-a1b2c3d4",
					    .project = "main", .fleet = "gpu", .num = 0,
					    .ssh_pubkey = PUBKEY, .user_data = ud,
					    .placement_group = o.spot ? NULL : "fleetfs-main-gpu",
					    .tags = tags, .ntags = 1};
		struct bk_vm vm;
		(void)ops->create(&ctx, &req, &vm, err, sizeof(err));
		free(ud);
	} else if (ops->get) {
		struct bk_vm vm;
		(void)ops->get(&ctx, nw > 1 ? w[1] : "12345", nw > 2 ? w[2] : "", &vm, err,
			       sizeof(err));
	}
	backend_config_free(&cfg);
	bk_memo_free(memo);
	fz_script_end();
	free(head);
}
