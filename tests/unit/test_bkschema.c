/* Unit tests of backends/schema: every YAML example of dstack's backends page
 * (/work/shared/reference/dstack-backends-doc.md), a minimal valid entry per type, the files
 * under examples/backends/, and the invalid cases with their exact "file:line: field:" prefix.
 *
 * An unchecked fixture makes a temporary HOME holding the files the examples name
 * (~/.kube/config, ~/.oci/private_key.pem, ...), with keys generated here, so no key material
 * lives in the repository.
 */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../backends/registry.h"
#include "../../backends/schema.h"
#include "suites.h"
#include "../../lib/util.h"
#include "../../lib/ydoc.h"

#ifndef FLEETFS_SRCDIR
#define FLEETFS_SRCDIR "."
#endif

#define ERRSZ 1024

static char g_home[256];
static char *g_pem;     /* RSA, unencrypted PKCS#8 */
static char *g_pem_enc; /* RSA, encrypted with "s3cret" */
static char *g_pem_ec;  /* EC P-256 */

/* ---- fixture ---- */

static char *pem_of(EVP_PKEY *pk, const EVP_CIPHER *enc, const char *pass)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p = NULL;
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(PEM_write_bio_PrivateKey(b, pk, enc, (const unsigned char *)pass,
						  pass ? (int)strlen(pass) : 0, NULL, NULL),
			 1);
	long n = BIO_get_mem_data(b, &p);
	char *s = xstrndup(p, (size_t)n);
	BIO_free(b);
	return s;
}

static void keys_once(void)
{
	if (g_pem)
		return;
	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	EVP_PKEY *ec = EVP_EC_gen("P-256");
	ck_assert_ptr_nonnull(rsa);
	ck_assert_ptr_nonnull(ec);
	g_pem = pem_of(rsa, NULL, NULL);
	g_pem_enc = pem_of(rsa, EVP_aes_128_cbc(), "s3cret");
	g_pem_ec = pem_of(ec, NULL, NULL);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
}

static void mkdirs(const char *path)
{
	char tmp[PATH_MAX];
	ck_assert_int_eq(fmt(tmp, sizeof(tmp), "%s", path), 0);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) && errno != EEXIST)
			ck_abort_msg("mkdir %s: %d", tmp, errno);
		*p = '/';
	}
}

/* Write data under g_home/rel, creating parents. */
static void put(const char *rel, const char *data, size_t len)
{
	char path[PATH_MAX];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", g_home, rel), 0);
	mkdirs(path);
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

static void puts_home(const char *rel, const char *s)
{
	put(rel, s, strlen(s));
}

static char *gcp_sa_json(void)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "type", "service_account");
	cJSON_AddStringToObject(o, "project_id", "my-gcp-project");
	cJSON_AddStringToObject(o, "private_key_id", "0123456789abcdef");
	cJSON_AddStringToObject(o, "private_key", g_pem);
	cJSON_AddStringToObject(o, "client_email", "dstack@my-gcp-project.iam.gserviceaccount.com");
	cJSON_AddStringToObject(o, "client_id", "123456789012345678901");
	cJSON_AddStringToObject(o, "token_uri", "https://oauth2.googleapis.com/token");
	char *s = cJSON_Print(o);
	cJSON_Delete(o);
	return s;
}

static char *nebius_json(const char *alg, const char *iss, const char *sub, const char *pem)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *sc = cJSON_AddObjectToObject(o, "subject-credentials");
	cJSON_AddStringToObject(sc, "type", "JWT");
	cJSON_AddStringToObject(sc, "alg", alg);
	cJSON_AddStringToObject(sc, "private-key", pem);
	cJSON_AddStringToObject(sc, "kid", "publickey-e00testtesttesttest");
	cJSON_AddStringToObject(sc, "iss", iss);
	cJSON_AddStringToObject(sc, "sub", sub);
	char *s = cJSON_Print(o);
	cJSON_Delete(o);
	return s;
}

static const char kubeconfig[] = "apiVersion: v1\n"
				 "kind: Config\n"
				 "clusters:\n"
				 "- name: c1\n"
				 "  cluster: {server: 'https://10.0.0.1:6443'}\n"
				 "contexts:\n"
				 "- name: dev\n"
				 "  context: {cluster: c1, user: u1, namespace: dstack}\n"
				 "- name: prod\n"
				 "  context: {cluster: c1, user: u1}\n"
				 "current-context: dev\n"
				 "users:\n"
				 "- name: u1\n"
				 "  user: {token: fake-token}\n";

static const char oci_config[] = "# OCI CLI config\n"
				 "[DEFAULT]\n"
				 "user=ocid1.user.oc1..aaaaaaaafake\n"
				 "fingerprint=11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:00\n"
				 "key_file=~/.oci/private_key.pem\n"
				 "tenancy=ocid1.tenancy.oc1..aaaaaaaafake\n"
				 "region=eu-frankfurt-1\n"
				 "\n"
				 "[WORK]\n"
				 "region = us-ashburn-1\n"
				 "  ; a comment\n";

static void fixture_setup(void)
{
	keys_once();
	ck_assert_int_eq(fmt(g_home, sizeof(g_home), "%s", "/tmp/bkschema-test-XXXXXX"), 0);
	ck_assert_ptr_nonnull(mkdtemp(g_home));
	char *sa = gcp_sa_json();
	char *nb = nebius_json("RS256", "serviceaccount-e00test", "serviceaccount-e00test", g_pem);
	char *nb_alg =
		nebius_json("HS256", "serviceaccount-e00test", "serviceaccount-e00test", g_pem);
	char *nb_iss = nebius_json("RS256", "serviceaccount-e00a", "serviceaccount-e00b", g_pem);
	char *nb_ec =
		nebius_json("RS256", "serviceaccount-e00test", "serviceaccount-e00test", g_pem_ec);
	/* the paths dstack's documentation and examples/backends/ name */
	puts_home(".dstack/server/gcp-024ed630eab5.json", sa);
	puts_home(".dstack/server/gcp-sa.json", sa);
	puts_home("path/to/key.pem", g_pem);
	puts_home(".nebius/sa-credentials.json", nb);
	puts_home(".nebius/authkey/private.pem", g_pem);
	puts_home(".oci/private_key.pem", g_pem);
	puts_home(".oci/config", oci_config);
	puts_home(".kube/config", kubeconfig);
	/* broken ones */
	puts_home("bad/not.json", "{\"type\": \"service_account\",");
	puts_home("bad/array.json", "[1, 2]");
	puts_home("bad/not.pem",
		  "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n");
	puts_home("bad/ec.pem", g_pem_ec);
	puts_home("bad/enc.pem", g_pem_enc);
	puts_home("bad/nebius-alg.json", nb_alg);
	puts_home("bad/nebius-iss.json", nb_iss);
	puts_home("bad/nebius-ec.json", nb_ec);
	puts_home("bad/kube-list.yaml", "- a\n- b\n");
	puts_home("bad/kube-syntax.yaml", "clusters: [\n");
	puts_home("bad/kube-nocur.yaml", "apiVersion: v1\nkind: Config\ncontexts:\n- name: dev\n"
					 "  context: {cluster: c1}\n");
	puts_home("bad/kube-pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n");
	puts_home("bad/oci-bad.ini", "[DEFAULT]\nthis line has no equals sign\n");
	puts_home("bad/dir/.keep", "");
	char *big = xmalloc(SCHEMA_MAX_FILE + 1);
	memset(big, ' ', SCHEMA_MAX_FILE + 1);
	put("bad/big.json", big, SCHEMA_MAX_FILE + 1);
	free(big);
	cJSON_free(sa);
	cJSON_free(nb);
	cJSON_free(nb_alg);
	cJSON_free(nb_iss);
	cJSON_free(nb_ec);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void fixture_teardown(void)
{
	if (g_home[0])
		nftw(g_home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	g_home[0] = '\0';
}

/* ---- helpers ---- */

/* The backend entry of a document: projects[0].backends[0] of a full server config.yml,
 * else the root (which may have a `projects:` of its own: Nebius). */
static int entry_node(const struct ydoc *d)
{
	int root = ydoc_root(d);
	int project = ydoc_seq_at(d, ydoc_map_get(d, root, "projects"), 0);
	int backends = ydoc_map_get(d, project, "backends");
	return backends ? ydoc_seq_at(d, backends, 0) : root;
}

/* Validate yaml ("config.yml") with HOME and cwd = g_home unless ctx is given. On success
 * *res holds the result (caller frees) when res is not NULL. */
static int vx(const char *yaml, const char *dirname, const struct fileref_ctx *ctx,
	      struct schema_result *res, char *err)
{
	struct ydoc *d = NULL;
	struct schema_result local;
	struct fileref_ctx dctx = {.cwd = g_home, .home = g_home};
	char lerr[512];
	int r = ydoc_load(yaml, strlen(yaml), "config.yml", &d, lerr, sizeof(lerr));
	ck_assert_msg(r == 0, "test YAML does not load: %s", lerr);
	err[0] = '\0';
	r = schema_validate(d, entry_node(d), dirname, ctx ? ctx : &dctx, res ? res : &local, err,
			ERRSZ);
	if (r == 0 && !res)
		schema_result_free(&local);
	if (r != 0)
		ck_assert_msg(err[0] != '\0', "failure without a message");
	ydoc_free(d);
	return r;
}

#define OK(yaml, dir)                                                                              \
	do {                                                                                       \
		char e_[ERRSZ];                                                                    \
		int r_ = vx((yaml), (dir), NULL, NULL, e_);                                        \
		ck_assert_msg(r_ == 0, "expected valid, got %d: %s", r_, e_);                      \
	} while (0)

#define BAD_CTX(yaml, dir, ctx, prefix)                                                            \
	do {                                                                                       \
		char e_[ERRSZ];                                                                    \
		int r_ = vx((yaml), (dir), (ctx), NULL, e_);                                       \
		ck_assert_msg(r_ == -EINVAL, "expected -EINVAL, got %d (%s)", r_, e_);             \
		ck_assert_msg(strncmp(e_, (prefix), strlen(prefix)) == 0,                          \
			      "expected prefix \"%s\"\n                   got \"%s\"", (prefix),   \
			      e_);                                                                 \
	} while (0)

#define BAD(yaml, dir, prefix) BAD_CTX(yaml, dir, NULL, prefix)

/* Replace "@HOME@" and "@KEY@" (the PEM, indented by `indent` spaces as a block scalar);
 * "@PATH@/x/y.json" up to the next ':' is the path HOME/x/y.json as messages show it
 * (str_redact: a path is user text). */
static char *subst(const char *tmpl, const char *pem, int indent)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	for (const char *p = tmpl; *p;) {
		if (!strncmp(p, "@PATH@", 6)) {
			char shown[STR_REDACT_LEN];
			size_t n = strcspn(p + 6, ":");
			char *path = xasprintf("%s%.*s", g_home, (int)n, p + 6);
			str_redact(shown, sizeof(shown), path);
			ck_assert_int_eq(buf_append(&b, shown, strlen(shown)), 0);
			free(path);
			p += 6 + n;
		} else if (!strncmp(p, "@HOME@", 6)) {
			ck_assert_int_eq(buf_append(&b, g_home, strlen(g_home)), 0);
			p += 6;
		} else if (!strncmp(p, "@KEY@", 5)) {
			for (const char *l = pem; *l;) {
				const char *nl = strchr(l, '\n');
				size_t n = nl ? (size_t)(nl - l) : strlen(l);
				ck_assert_int_eq(buf_printf(&b, "%*s%.*s\n", indent, "", (int)n, l),
						 0);
				l += n + (nl ? 1 : 0);
			}
			p += 5;
		} else {
			ck_assert_int_eq(buf_append(&b, p, 1), 0);
			p++;
		}
	}
	size_t len;
	char *s = buf_steal(&b, &len);
	return s;
}

/* ---- dstack's documentation (dstack-backends-doc.md), verbatim ---- */

struct doc_example {
	int line; /* line of the ```yaml fence in dstack-backends-doc.md */
	const char *yaml;
};

/* The examples stay exactly as the page has them. */
/* clang-format off */
static const struct doc_example doc_examples[] = {
	{34,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: aws\n"
	 "        creds:\n"
	 "          type: default\n"},
	{53,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: aws\n"
	 "        creds:\n"
	 "          type: access_key\n"
	 "          access_key: KKAAUKLIZ5EHKICAOASV\n"
	 "          secret_key: pn158lMqSBJiySwpQ9ubwmI6VUU3/W2fdJdFwfgO\n"},
	{176,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: aws\n"
	 "        creds:\n"
	 "          type: default\n"
	 "\n"
	 "        vpc_name: my-vpc\n"},
	{188,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: aws\n"
	 "        creds:\n"
	 "          type: default\n"
	 "\n"
	 "        default_vpcs: true\n"
	 "        vpc_ids:\n"
	 "          us-east-1: vpc-0a2b3c4d5e6f7g8h\n"
	 "          us-east-2: vpc-9i8h7g6f5e4d3c2b\n"
	 "          us-west-1: vpc-4d3c2b1a0f9e8d7\n"},
	{209,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: aws\n"
	 "        creds:\n"
	 "          type: default\n"
	 "\n"
	 "        public_ips: false\n"},
	{228,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: aws\n"
	 "        creds:\n"
	 "          type: default\n"
	 "\n"
	 "        os_images:\n"
	 "          cpu:\n"
	 "            name: my-ami-for-cpu-instances\n"
	 "            owner: self\n"
	 "            user: dstack\n"
	 "          nvidia:\n"
	 "            name: 'Some ThirdParty CUDA image'\n"
	 "            owner: 123456789012\n"
	 "            user: ubuntu\n"},
	{270,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: azure\n"
	 "        subscription_id: 06c82ce3-28ff-4285-a146-c5e981a9d808\n"
	 "        tenant_id: f84a7584-88e4-4fd2-8e97-623f0a715ee1\n"
	 "        creds:\n"
	 "          type: default\n"},
	{306,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "  - type: azure\n"
	 "    subscription_id: 06c82ce3-28ff-4285-a146-c5e981a9d808\n"
	 "    tenant_id: f84a7584-88e4-4fd2-8e97-623f0a715ee1\n"
	 "    creds:\n"
	 "      type: client\n"
	 "      client_id: acf3f73a-597b-46b6-98d9-748d75018ed0\n"
	 "      client_secret: 1Kb8Q~o3Q2hdEvrul9yaj5DJDFkuL3RG7lger2VQ\n"},
	{377,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: azure\n"
	 "        creds:\n"
	 "          type: default\n"
	 "    regions: [westeurope]\n"
	 "    vpc_ids:\n"
	 "      westeurope: myNetworkResourceGroup/myNetworkName\n"},
	{395,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: azure\n"
	 "        creds:\n"
	 "          type: default\n"
	 "        regions: [westeurope]\n"
	 "        vpc_ids:\n"
	 "          westeurope: myNetworkResourceGroup/myNetworkName\n"
	 "        public_ips: false\n"},
	{427,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: gcp\n"
	 "      project_id: gcp-project-id\n"
	 "      creds:\n"
	 "        type: default\n"},
	{447,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: gcp\n"
	 "      project_id: my-gcp-project\n"
	 "      creds:\n"
	 "        type: service_account\n"
	 "        filename: ~/.dstack/server/gcp-024ed630eab5.json\n"},
	{466,
	 "type: gcp\n"
	 "project_id: my-gcp-project\n"
	 "creds:\n"
	 "  type: service_account\n"
	 "  data: |\n"
	 "    {\n"
	 "      \"type\": \"service_account\",\n"
	 "      \"project_id\": \"my-gcp-project\",\n"
	 "      \"private_key_id\": \"abcd1234efgh5678ijkl9012mnop3456qrst7890\",\n"
	 "      \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEv...rest_of_key...IDAQAB\\n-----END PRIVATE KEY-----\\n\",\n"
	 "      \"client_email\": \"my-service-account@my-gcp-project.iam.gserviceaccount.com\",\n"
	 "      \"client_id\": \"123456789012345678901\",\n"
	 "      \"auth_uri\": \"https://accounts.google.com/o/oauth2/auth\",\n"
	 "      \"token_uri\": \"https://oauth2.googleapis.com/token\",\n"
	 "      \"auth_provider_x509_cert_url\": \"https://www.googleapis.com/oauth2/v1/certs\",\n"
	 "      \"client_x509_cert_url\": \"https://www.googleapis.com/robot/v1/metadata/x509/my-service-account%40my-gcp-project.iam.gserviceaccount.com\",\n"
	 "      \"universe_domain\": \"googleapis.com\"\n"
	 "    }\n"},
	{563,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: gcp\n"
	 "      project_id: gcp-project-id\n"
	 "      creds:\n"
	 "        type: default\n"
	 "\n"
	 "      vpc_name: my-custom-vpc\n"},
	{585,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: gcp\n"
	 "      project_id: gcp-project-id\n"
	 "      creds:\n"
	 "        type: default\n"
	 "\n"
	 "      vpc_name: my-custom-vpc\n"
	 "      vpc_project_id: another-project-id\n"},
	{614,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: gcp\n"
	 "        creds:\n"
	 "          type: default\n"
	 "\n"
	 "        public_ips: false\n"},
	{637,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: lambda\n"
	 "      creds:\n"
	 "        type: api_key\n"
	 "        api_key: eersct_yrpiey-naaeedst-tk-_cb6ba38e1128464aea9bcc619e4ba2a5.iijPMi07obgt6TZ87v5qAEj61RVxhd0p\n"},
	{657,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "  - type: nebius\n"
	 "    creds:\n"
	 "      type: service_account\n"
	 "      service_account_id: serviceaccount-e00dhnv9ftgb3cqmej\n"
	 "      public_key_id: publickey-e00ngaex668htswqy4\n"
	 "      private_key_file: ~/path/to/key.pem\n"},
	{685,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "  - type: nebius\n"
	 "    creds:\n"
	 "      type: service_account\n"
	 "      filename: ~/.nebius/sa-credentials.json\n"},
	{701,
	 "type: nebius\n"
	 "creds:\n"
	 "  type: service_account\n"
	 "  service_account_id: serviceaccount-e00dhnv9ftgb3cqmej\n"
	 "  public_key_id: publickey-e00ngaex668htswqy4\n"
	 "  private_key_content: |\n"
	 "    -----BEGIN PRIVATE KEY-----\n"
	 "    MIIJQQIBADANBgkqhkiG9w0BAQEFAASCCSswggknAgEAAoICAQChwQ5OOhy60N7m\n"
	 "    cPx/9M0oRUyJdRRv2nCALbdU/wSDOo8o5N7sP63zCaxXPeKwLNEzneMd/U0gWSv2\n"
	 "    [...]\n"
	 "    8y1qYDPKQ8LR+DPCUmyhM2I8t6673Vz3GrtEjkLhgQo/KqOVb3yiBFVfkA5Jov5s\n"
	 "    kO7y4T0ynsI8b6wlhCukQTLpIYJ5\n"
	 "    -----END PRIVATE KEY-----\n"},
	{724,
	 "type: nebius\n"
	 "projects:\n"
	 "- project-e00jt6t095t1ahrg4re30\n"
	 "- project-e01iahuh3cklave4ao1nv\n"
	 "creds:\n"
	 "  type: service_account\n"
	 "  service_account_id: serviceaccount-e00dhnv9ftgb3cqmej\n"
	 "  public_key_id: publickey-e00ngaex668htswqy4\n"
	 "  private_key_file: ~/path/to/key.pem\n"},
	{750,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: vultr\n"
	 "        creds:\n"
	 "          type: api_key\n"
	 "          api_key: B57487240a466624b48de22865589\n"},
	{770,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: cudo\n"
	 "        project_id: my-cudo-project\n"
	 "        creds:\n"
	 "          type: api_key\n"
	 "          api_key: 7487240a466624b48de22865589\n"},
	{792,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "  - type: oci\n"
	 "    creds:\n"
	 "      type: default\n"},
	{812,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "  - type: oci\n"
	 "    creds:\n"
	 "      type: client\n"
	 "      user: ocid1.user.oc1..g5vlaeqfu47akmaafq665xsgmyaqjktyfxtacfxc4ftjxuca7aohnd2ev66m\n"
	 "      tenancy: ocid1.tenancy.oc1..ajqsftvk4qarcfaak3ha4ycdsaahxmaita5frdwg3tqo2bcokpd3n7oizwai\n"
	 "      region: eu-frankfurt-1\n"
	 "      fingerprint: 77:32:77:00:49:7c:cb:56:84:75:8e:77:96:7d:53:17\n"
	 "      key_file: ~/.oci/private_key.pem\n"},
	{847,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "  - type: oci\n"
	 "    creds:\n"
	 "      type: default\n"
	 "    compartment_id: ocid1.compartment.oc1..aaaaaaaa\n"},
	{867,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: datacrunch\n"
	 "        creds:\n"
	 "          type: api_key\n"
	 "          client_id: xfaHBqYEsArqhKWX-e52x3HH7w8T\n"
	 "          client_secret: B5ZU5Qx9Nt8oGMlmMhNI3iglK8bjMhagTbylZy4WzncZe39995f7Vxh8\n"},
	{887,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: amddevcloud\n"
	 "      project_name: my-amd-project\n"
	 "      creds:\n"
	 "        type: api_key\n"
	 "        api_key: ...\n"},
	{921,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: digitalocean\n"
	 "      project_name: my-digital-ocean-project\n"
	 "      creds:\n"
	 "        type: api_key\n"
	 "        api_key: ...\n"},
	{956,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: hotaisle\n"
	 "      team_handle: hotaisle-team-handle\n"
	 "      creds:\n"
	 "        type: api_key\n"
	 "        api_key: 9c27a4bb7a8e472fae12ab34.3f2e3c1db75b9a0187fd2196c6b3e56d2b912e1c439ba08d89e7b6fcd4ef1d3f\n"},
	{986,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: cloudrift\n"
	 "        creds:\n"
	 "          type: api_key\n"
	 "          api_key: rift_2prgY1d0laOrf2BblTwx2B2d1zcf1zIp4tZYpj5j88qmNgz38pxNlpX3vAo\n"},
	{1015,
	 "projects:\n"
	 "- name: main\n"
	 "    backends:\n"
	 "    - type: kubernetes\n"
	 "      kubeconfig:\n"
	 "        filename: ~/.kube/config\n"
	 "      proxy_jump:\n"
	 "        hostname: 204.12.171.137\n"
	 "        port: 32000\n"},
	{1085,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: runpod\n"
	 "        creds:\n"
	 "          type: api_key\n"
	 "          api_key: US9XTPDIV8AR42MMINY8TCKRB8S4E7LNRQ6CAUQ9\n"},
	{1121,
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: runpod\n"
	 "        creds:\n"
	 "          type: api_key\n"
	 "          api_key: US9XTPDIV8AR42MMINY8TCKRB8S4E7LNRQ6CAUQ9\n"
	 "        community_cloud: false\n"},
	{1143,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "    - type: vastai\n"
	 "      creds:\n"
	 "        type: api_key\n"
	 "        api_key: d75789f22f1908e0527c78a283b523dd73051c8c7d05456516fc91e9d4efd8c5\n"},
};
/* clang-format on */

/* Examples of the page that are snippets rather than complete entries, and what they lack.
 * Each must fail with this exact error as written, and pass once completed. */
struct doc_defect {
	int line;
	const char *err;   /* expected prefix; NULL: the YAML itself does not parse */
	const char *fixed; /* the same example, completed */
};

static const struct doc_defect doc_defects[] = {
	/* Azure "VPC": regions/vpc_ids are indented at the project level and the entry has no
	 * tenant_id/subscription_id, which dstack's AzureBackendConfig requires. */
	{377, "config.yml:4: tenant_id: required field is missing",
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: azure\n"
	 "        subscription_id: 06c82ce3-28ff-4285-a146-c5e981a9d808\n"
	 "        tenant_id: f84a7584-88e4-4fd2-8e97-623f0a715ee1\n"
	 "        creds:\n"
	 "          type: default\n"
	 "        regions: [westeurope]\n"
	 "        vpc_ids:\n"
	 "          westeurope: myNetworkResourceGroup/myNetworkName\n"},
	/* Azure "Private subnets": no tenant_id/subscription_id. */
	{395, "config.yml:4: tenant_id: required field is missing",
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: azure\n"
	 "        subscription_id: 06c82ce3-28ff-4285-a146-c5e981a9d808\n"
	 "        tenant_id: f84a7584-88e4-4fd2-8e97-623f0a715ee1\n"
	 "        creds:\n"
	 "          type: default\n"
	 "        regions: [westeurope]\n"
	 "        vpc_ids:\n"
	 "          westeurope: myNetworkResourceGroup/myNetworkName\n"
	 "        public_ips: false\n"},
	/* GCP "Private subnets": no project_id, which GCPBackendConfig requires. */
	{614, "config.yml:4: project_id: required field is missing",
	 "projects:\n"
	 "  - name: main\n"
	 "    backends:\n"
	 "      - type: gcp\n"
	 "        project_id: gcp-project-id\n"
	 "        creds:\n"
	 "          type: default\n"
	 "\n"
	 "        public_ips: false\n"},
	/* Kubernetes: `backends:` is indented deeper than `name:`, so the page's file is not
	 * YAML at all ("mapping values are not allowed here"); the entry itself is fine. */
	{1015, NULL,
	 "projects:\n"
	 "- name: main\n"
	 "  backends:\n"
	 "  - type: kubernetes\n"
	 "    kubeconfig:\n"
	 "      filename: ~/.kube/config\n"
	 "    proxy_jump:\n"
	 "      hostname: 204.12.171.137\n"
	 "      port: 32000\n"},
	/* Nebius "User interface": the key is elided with "[...]", so it is not a key. Its
	 * completed form (a real key) is checked in test_doc_nebius_key_content. */
	{701, "config.yml:6: creds.private_key_content: not a PEM private key", NULL},
};

static const struct doc_defect *doc_defect(int line)
{
	for (size_t i = 0; i < sizeof(doc_defects) / sizeof(doc_defects[0]); i++)
		if (doc_defects[i].line == line)
			return &doc_defects[i];
	return NULL;
}

START_TEST(test_doc_examples)
{
	size_t checked = 0;
	for (size_t i = 0; i < sizeof(doc_examples) / sizeof(doc_examples[0]); i++) {
		const struct doc_example *x = &doc_examples[i];
		char err[ERRSZ];
		if (doc_defect(x->line))
			continue;
		int r = vx(x->yaml, NULL, NULL, NULL, err);
		ck_assert_msg(r == 0, "doc example at line %d: %s", x->line, err);
		checked++;
	}
	ck_assert_uint_eq(checked, 30);
}
END_TEST

START_TEST(test_doc_defects)
{
	for (size_t i = 0; i < sizeof(doc_defects) / sizeof(doc_defects[0]); i++) {
		const struct doc_defect *f = &doc_defects[i];
		const char *yaml = NULL;
		for (size_t j = 0; j < sizeof(doc_examples) / sizeof(doc_examples[0]); j++)
			if (doc_examples[j].line == f->line)
				yaml = doc_examples[j].yaml;
		ck_assert_ptr_nonnull(yaml);
		if (f->err) {
			BAD(yaml, NULL, f->err);
		} else {
			struct ydoc *d = NULL;
			char lerr[256];
			ck_assert_int_eq(
				ydoc_load(yaml, strlen(yaml), "config.yml", &d, lerr, sizeof(lerr)),
				-EINVAL);
		}
		if (f->fixed)
			OK(f->fixed, NULL);
	}
}
END_TEST

START_TEST(test_doc_nebius_key_content)
{
	char *y = subst("type: nebius\n"
			"creds:\n"
			"  type: service_account\n"
			"  service_account_id: serviceaccount-e00dhnv9ftgb3cqmej\n"
			"  public_key_id: publickey-e00ngaex668htswqy4\n"
			"  private_key_content: |\n"
			"@KEY@",
			g_pem, 4);
	struct schema_result res;
	char err[ERRSZ];
	ck_assert_msg(vx(y, NULL, NULL, &res, err) == 0, "%s", err);
	ck_assert_uint_eq(res.natt, 0); /* inline content is not an attachment */
	ck_assert_str_eq(res.type, "nebius");
	schema_result_free(&res);
	free(y);
}
END_TEST

/* ---- types and directory names ---- */

struct minimal {
	const char *type;
	const char *yaml; /* as backends/<type>/config.yml, without `type:` */
};

static const struct minimal minimals[] = {
	{"amddevcloud", "creds:\n  api_key: k\n"},
	{"aws", "creds:\n  type: default\n"},
	{"azure", "tenant_id: t\nsubscription_id: s\ncreds:\n  type: default\n"},
	{"cloudrift", "creds:\n  api_key: k\n"},
	{"cudo", "project_id: p\ncreds:\n  api_key: k\n"},
	{"datacrunch", "creds:\n  client_id: i\n  client_secret: s\n"},
	{"digitalocean", "creds:\n  type: api_key\n  api_key: k\n"},
	{"gcp", "project_id: p\ncreds:\n  type: default\n"},
	{"hotaisle", "team_handle: t\ncreds:\n  api_key: k\n"},
	{"kubernetes", "kubeconfig:\n  filename: ~/.kube/config\n"},
	{"lambda", "creds:\n  api_key: k\n"},
	{"nebius", "creds:\n  filename: ~/.nebius/sa-credentials.json\n"},
	{"oci", "creds:\n  type: default\n"},
	{"runpod", "creds:\n  api_key: k\n"},
	{"vastai", "creds:\n  api_key: k\n"},
	{"verda", "creds:\n  client_id: i\n  client_secret: s\n"},
	{"vultr", "creds:\n  api_key: k\n"},
};

START_TEST(test_types_list)
{
	const char *const *t = backend_type_names();
	size_t n = 0;
	for (; t[n]; n++) {
		ck_assert(backend_type_known(t[n]));
		ck_assert_str_eq(t[n], minimals[n].type);
	}
	ck_assert_uint_eq(n, 17);
	ck_assert(!backend_type_known("crusoe"));
	ck_assert(!backend_type_known("AWS"));
	ck_assert(!backend_type_known(NULL));
}
END_TEST

START_TEST(test_minimal_each_type)
{
	for (size_t i = 0; i < sizeof(minimals) / sizeof(minimals[0]); i++) {
		const struct minimal *m = &minimals[i];
		struct schema_result res;
		char err[ERRSZ];
		/* in backends/<type>/config.yml, without `type:` */
		ck_assert_msg(vx(m->yaml, m->type, NULL, &res, err) == 0, "%s: %s", m->type, err);
		ck_assert_str_eq(res.type, m->type);
		schema_result_free(&res);
		/* with `type:` in the root config.yml and in a named backend */
		char *y = xasprintf("type: %s\n%s", m->type, m->yaml);
		ck_assert_msg(vx(y, NULL, NULL, &res, err) == 0, "%s: %s", m->type, err);
		ck_assert_str_eq(res.type, m->type);
		schema_result_free(&res);
		ck_assert_msg(vx(y, "my-backend", NULL, &res, err) == 0, "%s: %s", m->type, err);
		schema_result_free(&res);
		free(y);
		/* no key can be dropped from an entry that only has required keys */
	}
}
END_TEST

START_TEST(test_named_backends)
{
	/* two AWS accounts side by side (dstack#1884) */
	struct schema_result res;
	char err[ERRSZ];
	const char *prod = "type: aws\ncreds:\n  type: access_key\n  access_key: AKIAPROD\n"
			   "  secret_key: prod-secret\nregions: [us-east-1]\n";
	const char *dev = "type: aws\ncreds:\n  type: access_key\n  access_key: AKIADEV\n"
			  "  secret_key: dev-secret\nregions: [eu-west-1]\n";
	ck_assert_int_eq(vx(prod, "aws-prod", NULL, &res, err), 0);
	ck_assert_str_eq(res.type, "aws");
	schema_result_free(&res);
	ck_assert_int_eq(vx(dev, "aws-dev", NULL, &res, err), 0);
	ck_assert_str_eq(res.type, "aws");
	schema_result_free(&res);
	/* a named backend must say its type */
	BAD("creds:\n  type: default\n", "aws-prod",
	    "config.yml:1: type: required field is missing: the directory name is not a backend");
	/* a type-named directory holds that type only */
	BAD("type: gcp\nproject_id: p\ncreds:\n  type: default\n", "aws",
	    "config.yml:1: type: is gcp but the backend directory is named aws");
	BAD("type: verda\ncreds:\n  client_id: i\n  client_secret: s\n", "datacrunch",
	    "config.yml:1: type: is verda but the backend directory is named datacrunch");
	OK("type: aws\ncreds:\n  type: default\n", "aws");
	/* directory names follow dstack's name rule */
	BAD("type: aws\ncreds:\n  type: default\n", "aws prod",
	    "config.yml:1: backend directory name must match");
	/* root config.yml: `type:` required, `name:` optional and checked */
	BAD("creds:\n  type: default\n", NULL, "config.yml:1: type: required field is missing");
	OK("type: aws\nname: aws-prod\ncreds:\n  type: default\n", NULL);
	BAD("type: aws\nname: aws prod\ncreds:\n  type: default\n", NULL,
	    "config.yml:2: name: must match ^[a-zA-Z0-9_-]{1,50}$");
	BAD("type: aws\nname: [x]\ncreds:\n  type: default\n", NULL,
	    "config.yml:2: name: must match");
	OK("type: aws\nname: aws\ncreds:\n  type: default\n", NULL);
	BAD("type: aws\nname: gcp\ncreds:\n  type: default\n", NULL,
	    "config.yml:2: name: is another backend type");
	/* ... but `name:` is not a key of backends/<x>/config.yml */
	BAD("type: aws\nname: aws-prod\ncreds:\n  type: default\n", "aws",
	    "config.yml:2: unknown key \"nam\xe2\x80\xa6\" (4 chars)");
	BAD("name: aws-prod\ncreds:\n  type: default\n", "aws-prod",
	    "config.yml:1: type: required field is missing");
	/* type itself */
	BAD("type: crusoe\n", NULL,
	    "config.yml:1: type: unknown backend type \"cru\xe2\x80\xa6\" (6 chars) (known: "
	    "amddevcloud, aws,");
	/* a near miss is suggested: the suggestion is our word, the value stays redacted */
	BAD("type: lamda\n", NULL,
	    "config.yml:1: type: unknown backend type \"lam\xe2\x80\xa6\" (5 chars) (did you mean "
	    "lambda?) (known: ");
	BAD("type: [aws]\n", NULL, "config.yml:1: type: must be a backend type");
	BAD("type:\ncreds: {type: default}\n", "aws", "config.yml:1: type: must be a backend type");
	BAD("- type: aws\n", NULL, "config.yml:1: a backend entry must be a mapping, not a list");
	BAD("aws\n", "aws", "config.yml:1: a backend entry must be a mapping, not a single value");
}
END_TEST

/* ---- fields ---- */

START_TEST(test_required_and_unknown)
{
	BAD("creds:\n  type: access_key\n  access_key: AKIAFAKE\n", "aws",
	    "config.yml:2: creds.secret_key: required field is missing");
	BAD("regions: [us-east-1]\n", "aws", "config.yml:1: creds: required field is missing");
	BAD("creds:\n", "lambda", "config.yml:1: creds: is required and must not be null");
	BAD("creds:\n  type: default\n", "azure",
	    "config.yml:1: tenant_id: required field is missing");
	BAD("tenant_id: t\ncreds:\n  type: default\n", "azure",
	    "config.yml:1: subscription_id: required field is missing");
	BAD("tenant_id: t\nsubscription_id: s\ncreds:\n  type: client\n  client_id: c\n", "azure",
	    "config.yml:4: creds.client_secret: required field is missing");
	BAD("creds:\n  type: default\n", "gcp",
	    "config.yml:1: project_id: required field is missing");
	BAD("creds:\n  api_key: k\n", "cudo",
	    "config.yml:1: project_id: required field is missing");
	BAD("creds:\n  api_key: k\n", "hotaisle",
	    "config.yml:1: team_handle: required field is missing");
	BAD("creds:\n  client_id: i\n", "verda",
	    "config.yml:2: creds.client_secret: required field is missing");
	BAD("creds: {}\n", "lambda", "config.yml:1: creds.api_key: required field is missing");
	BAD("creds:\n  type: client\n  user: u\n  tenancy: t\n  region: r\n  key_file: "
	    "~/.oci/private_key.pem\n",
	    "oci", "config.yml:2: creds.fingerprint: required field is missing");
	BAD("proxy_jump: {hostname: h}\n", "kubernetes",
	    "config.yml:1: kubeconfig: required field is missing");
	/* unknown keys, top level and nested; dstack forbids extras */
	/* (the key is user text: its parent is named, the key shown redacted, and a near miss
	 * of one of the object's own keys suggested) */
	BAD("creds:\n  type: default\nregion: us-east-1\n", "aws",
	    "config.yml:3: unknown key \"reg\xe2\x80\xa6\" (6 chars) (did you mean regions?)");
	BAD("creds:\n  type: default\n  profile: x\n", "aws",
	    "config.yml:3: creds: unknown key \"pro\xe2\x80\xa6\" (7 chars)");
	BAD("creds:\n  type: default\nos_images:\n  amd: {name: a, user: u}\n", "aws",
	    "config.yml:4: os_images: unknown key \"amd\" (3 chars)");
	BAD("creds:\n  api_key: k\ncommunity_cloud: true\n", "lambda",
	    "config.yml:3: unknown key \"com\xe2\x80\xa6\" (15 chars)");
	BAD("creds:\n  api_key: k\nproject_name: p\n", "vultr",
	    "config.yml:3: unknown key \"pro\xe2\x80\xa6\" (12 chars)");
	BAD("kubeconfig: {filename: ~/.kube/config}\ncontexts:\n- name: dev\n  namespace: x\n",
	    "kubernetes", "config.yml:4: contexts[0]: unknown key \"nam\xe2\x80\xa6\" (9 chars)");
	/* a secret pasted in key position never reaches the message */
	char err[ERRSZ];
	ck_assert_int_eq(vx("creds:\n  api_key: k\n  lmbdSECRETkey7f3a9c1e: 1\n", "lambda", NULL,
			    NULL, err),
			 -EINVAL);
	ck_assert_str_eq(err, "config.yml:3: creds: unknown key \"lmb\xe2\x80\xa6\" (21 chars)");
	/* control characters are never printed */
	ck_assert_int_eq(vx("creds: {type: default}\n\"bad\\x01key\": 1\n", "aws", NULL, NULL, err),
			 -EINVAL);
	ck_assert_str_eq(err, "config.yml:2: unknown key \"bad\xe2\x80\xa6\" (7 chars)");
	ck_assert_int_eq(vx("creds: {type: default}\n\"\\x01\\x02\\x03\": 1\n", "aws", NULL, NULL,
			    err),
			 -EINVAL);
	ck_assert_str_eq(err, "config.yml:2: unknown key \"\xe2\x80\xa6\" (3 chars)");
	char *longkey = xmalloc(301);
	memset(longkey, 'k', 300);
	longkey[300] = '\0';
	char *y = xasprintf("creds: {type: default}\n%s: 1\n", longkey);
	ck_assert_int_eq(vx(y, "aws", NULL, NULL, err), -EINVAL);
	ck_assert_uint_lt(strlen(err), 120);
	free(y);
	free(longkey);
}
END_TEST

START_TEST(test_scalar_types)
{
	BAD("creds:\n  type: default\nregions: us-east-1\n", "aws",
	    "config.yml:3: regions: must be a list of strings");
	BAD("creds:\n  type: default\nregions: [us-east-1, [x]]\n", "aws",
	    "config.yml:3: regions[1]: must be a string, not a list");
	BAD("creds:\n  type: default\nregions:\n- us-east-1\n-\n", "aws",
	    "config.yml:5: regions[1]: must be a string, not null");
	BAD("creds:\n  type: default\npublic_ips: maybe\n", "aws",
	    "config.yml:3: public_ips: must be a boolean (true or false)");
	BAD("creds:\n  type: default\npublic_ips: 'false'\n", "aws",
	    "config.yml:3: public_ips: must be a boolean");
	BAD("creds:\n  type: default\nvpc_name: yes\n", "aws",
	    "config.yml:3: vpc_name: must be a string, not a boolean");
	BAD("creds:\n  type: default\nvpc_name: {a: b}\n", "aws",
	    "config.yml:3: vpc_name: must be a string, not a mapping");
	BAD("creds:\n  type: default\nvpc_ids: [a]\n", "aws",
	    "config.yml:3: vpc_ids: must be a mapping of strings to strings");
	BAD("creds:\n  type: default\nvpc_ids:\n  us-east-1: [vpc-1]\n", "aws",
	    "config.yml:4: vpc_ids[\"us-\xe2\x80\xa6\" (9 chars)]: must be a string, not a list");
	BAD("creds:\n  type: default\nvpc_ids:\n  us-east-1:\n", "aws",
	    "config.yml:4: vpc_ids[\"us-\xe2\x80\xa6\" (9 chars)]: must be a string, not null");
	BAD("creds:\n  type: default\nos_images: [cpu]\n", "aws",
	    "config.yml:3: os_images: must be a mapping, not a list");
	BAD("creds:\n  api_key: [k]\n", "runpod",
	    "config.yml:2: creds.api_key: must be a string, not a list");
	BAD("creds:\n  api_key: k\ncommunity_cloud: nope\n", "vastai",
	    "config.yml:3: community_cloud: must be a boolean");
	BAD("kubeconfig: {filename: ~/.kube/config}\nproxy_jump: {hostname: h, port: 'x'}\n",
	    "kubernetes", "config.yml:2: proxy_jump.port: must be an integer");
	BAD("kubeconfig: {filename: ~/.kube/config}\nproxy_jump: {hostname: h, port: 70000}\n",
	    "kubernetes", "config.yml:2: proxy_jump.port: must be a port number (1-65535)");
	BAD("kubeconfig: {filename: ~/.kube/config}\nproxy_jump: {hostname: h, port: 0}\n",
	    "kubernetes", "config.yml:2: proxy_jump.port: must be a port number");
	/* numbers are text where dstack wants a string (coerce_numbers_to_str); nulls are unset */
	OK("creds:\n  type: default\nvpc_name: 12345\niam_instance_profile: 3.10\n", "aws");
	OK("creds:\n  type: default\nregions:\nvpc_name: ~\npublic_ips: null\ntags:\n", "aws");
	OK("creds:\n  api_key: 123456\n", "lambda");
	OK("creds:\n  api_key: k\ncommunity_cloud: off\n", "runpod");
	/* `y` is a string for PyYAML, not a boolean */
	OK("creds:\n  type: default\nvpc_name: y\n", "aws");
	/* a field with a default may be omitted but not null */
	BAD("creds:\n  type: default\n  profile:\n", "oci",
	    "config.yml:3: creds.profile: must not be null (omit it for the default)");
	BAD("kubeconfig:\n  filename: null\n", "kubernetes",
	    "config.yml:2: kubeconfig.filename: must not be null");
}
END_TEST

START_TEST(test_creds_variants)
{
	/* discriminated unions need `type` */
	BAD("creds:\n  access_key: a\n  secret_key: b\n", "aws",
	    "config.yml:2: creds.type: required field is missing (one of: access_key, default)");
	BAD("creds:\n  type: password\n", "aws",
	    "config.yml:2: creds.type: must be one of: access_key, default; got "
	    "\"pas\xe2\x80\xa6\" (8 chars)");
	/* keys are checked in document order, required ones after them */
	BAD("creds:\n  client_id: c\n  client_secret: s\n", "azure",
	    "config.yml:2: creds.type: required field is missing (one of: client, default)");
	BAD("creds:\n  type: default\n", "azure",
	    "config.yml:1: tenant_id: required field is missing");
	BAD("tenant_id: t\nsubscription_id: s\ncreds:\n  client_id: c\n  client_secret: s\n",
	    "azure",
	    "config.yml:4: creds.type: required field is missing (one of: client, default)");
	BAD("project_id: p\ncreds:\n  type: access_key\n", "gcp",
	    "config.yml:3: creds.type: must be one of: service_account, default");
	BAD("creds:\n  type: [client]\n", "oci",
	    "config.yml:2: creds.type: must be one of: client, default");
	BAD("creds: default\n", "aws",
	    "config.yml:1: creds: must be a mapping with `type` (one of: access_key, default)");
	/* single-variant creds default their type */
	OK("creds:\n  api_key: k\n", "lambda");
	OK("creds:\n  type: api_key\n  api_key: k\n", "lambda");
	BAD("creds:\n  type: token\n  api_key: k\n", "lambda",
	    "config.yml:2: creds.type: must be one of: api_key");
	BAD("creds:\n  type: default\n", "nebius",
	    "config.yml:2: creds.type: must be one of: service_account");
	OK("creds:\n  type: api_key\n  client_id: i\n  client_secret: s\n", "datacrunch");
	/* the variant's own keys only */
	BAD("creds:\n  type: default\n  access_key: a\n", "aws",
	    "config.yml:3: creds: unknown key \"acc\xe2\x80\xa6\" (10 chars)");
	OK("tenant_id: t\nsubscription_id: s\ncreds:\n  type: client\n  client_id: c\n"
	   "  client_secret: x\n  tenant_id: t2\n",
	   "azure");
}
END_TEST

START_TEST(test_aws_rules)
{
	BAD("creds:\n  type: default\nvpc_name: my-vpc\nvpc_ids:\n  us-east-1: vpc-1\n", "aws",
	    "config.yml:5: vpc_ids: cannot be set together with `vpc_name`");
	BAD("creds:\n  type: default\ndefault_vpcs: false\n", "aws",
	    "config.yml:3: default_vpcs: is false, so `vpc_name` or `vpc_ids` must be set");
	OK("creds:\n  type: default\ndefault_vpcs: false\nvpc_name: my-vpc\n", "aws");
	BAD("creds:\n  type: default\ndefault_vpcs: false\nregions: [us-east-1, eu-west-1]\n"
	    "vpc_ids:\n  us-east-1: vpc-1\n",
	    "aws",
	    "config.yml:4: regions[1]: has no entry in `vpc_ids` (and `default_vpcs` is false)");
	OK("creds:\n  type: default\ndefault_vpcs: false\nregions: [us-east-1]\n"
	   "vpc_ids:\n  us-east-1: vpc-1\n",
	   "aws");
	BAD("creds:\n  type: default\ndefault_vpcs: false\nvpc_ids:\n  us-east-1: vpc-1\n", "aws",
	    "config.yml:5: vpc_ids: has no entry for us-east-2; without `regions` every default");
	/* with default VPCs, vpc_ids may cover some regions only */
	OK("creds:\n  type: default\nregions: [us-east-1, eu-west-1]\nvpc_ids:\n  us-east-1: "
	   "vpc-1\n",
	   "aws");
	/* os_images */
	BAD("creds:\n  type: default\nos_images:\n  cpu: {name: ami, owner: '12345', user: u}\n",
	    "aws",
	    "config.yml:4: os_images.cpu.owner: must be a 12-digit AWS account ID or `self`");
	BAD("creds:\n  type: default\nos_images:\n  nvidia:\n    name: ami\n", "aws",
	    "config.yml:5: os_images.nvidia.user: required field is missing");
	OK("creds:\n  type: default\nos_images:\n  nvidia: {name: ami, user: ubuntu}\n", "aws");
	/* tags */
	OK("creds:\n  type: default\ntags:\n  team: ml-infra\n  cost center: '42'\n  Owner: "
	   "a@b.c\n",
	   "aws");
	BAD("creds:\n  type: default\ntags:\n  aws:owner: x\n", "aws",
	    "config.yml:4: tags[\"aws\xe2\x80\xa6\" (9 chars)]: invalid tag key");
	BAD("creds:\n  type: default\ntags:\n  team: 'a!b'\n", "aws",
	    "config.yml:4: tags[\"tea\xe2\x80\xa6\" (4 chars)]: invalid tag value");
	BAD("creds:\n  type: default\ntags:\n  team:\n", "aws",
	    "config.yml:4: tags[\"tea\xe2\x80\xa6\" (4 chars)]: must be a string, not null");
	struct buf b;
	buf_init(&b, 4096);
	ck_assert_int_eq(buf_printf(&b, "creds:\n  type: default\ntags:\n"), 0);
	for (int i = 0; i < 26; i++)
		ck_assert_int_eq(buf_printf(&b, "  t%d: v\n", i), 0);
	BAD(b.data, "aws", "config.yml:4: tags: at most 25 tags are allowed");
	buf_free(&b);
	OK("creds:\n  type: default\nexperimental_instance_types: [p5e.48xlarge]\n"
	   "iam_instance_profile: dstack-ec2\n",
	   "aws");
}
END_TEST

START_TEST(test_azure_rules)
{
	const char *h = "tenant_id: t\nsubscription_id: s\ncreds:\n  type: default\n";
	char *y;
#define AZ(tail) (free(y), y = xasprintf("%s%s", h, tail))
	y = NULL;
	BAD(AZ("regions: [westeurope, mars-1]\n"), "azure",
	    "config.yml:5: regions[1]: must be one of: centralus, eastus,");
	BAD(AZ("vpc_ids:\n  westeurope: justaname\n"), "azure",
	    "config.yml:6: vpc_ids[\"wes\xe2\x80\xa6\" (10 chars)]: must have the form "
	    "networkResourceGroup/networkName");
	BAD(AZ("subnet_ids:\n  westeurope: rg/net\n"), "azure",
	    "config.yml:6: subnet_ids[\"wes\xe2\x80\xa6\" (10 chars)]: must have the form "
	    "networkResourceGroup/networkName/subnetName");
	BAD(AZ("public_ips: false\n"), "azure",
	    "config.yml:5: public_ips: is false, so `vpc_ids` or `subnet_ids` must name networks");
	BAD(AZ("regions: [westeurope]\nvpc_ids:\n  westeurope: rg/net\nsubnet_ids:\n  westeurope: "
	       "rg/net/sub\n"),
	    "azure", "config.yml:9: subnet_ids[\"wes\xe2\x80\xa6\" (10 chars)]: this location is also in `vpc_ids`");
	BAD(AZ("regions: [westeurope, eastus]\nvpc_ids:\n  westeurope: rg/net\n"), "azure",
	    "config.yml:5: regions[1]: has no entry in `vpc_ids` or `subnet_ids`");
	OK(AZ("regions: [westeurope, eastus]\nvpc_ids:\n  westeurope: rg/net\nsubnet_ids:\n"
	      "  eastus: rg/net/sub\npublic_ips: false\n"),
	   "azure");
	BAD(AZ("subnet_ids:\n  eastus: rg/net/sub\n"), "azure",
	    "config.yml:6: subnet_ids: has no entry for centralus; without `regions`");
	BAD(AZ("vm_managed_identity: a/b/c\n"), "azure",
	    "config.yml:5: vm_managed_identity: must have the form "
	    "managedIdentityResourceGroup/managedIdentityName");
	OK(AZ("vm_managed_identity: rg/identity\nresource_group: dstack-rg\n"), "azure");
	BAD(AZ("tags:\n  'a<b': x\n"), "azure", "config.yml:6: tags[\"a<b\" (3 chars)]: invalid tag key");
	OK(AZ("tags:\n  Team: 'ML Infra (Paris)'\n"), "azure");
#undef AZ
	free(y);
}
END_TEST

START_TEST(test_gcp_rules)
{
	const char *h = "project_id: p\ncreds:\n  type: default\n";
	char *y = NULL;
#define GC(tail) (free(y), y = xasprintf("%s%s", h, tail))
	BAD(GC("roce_vpcs: [a, b]\n"), "gcp", "config.yml:4: roce_vpcs: must have at most 1 item");
	BAD(GC("preview_features: [g5]\n"), "gcp",
	    "config.yml:4: preview_features[0]: must be one of: g4");
	OK(GC("preview_features: [g4]\nroce_vpcs: [rdma]\nextra_vpcs: [a, b, c]\nnat_check: false\n"
	      "vm_service_account: sa@p.iam.gserviceaccount.com\n"),
	   "gcp");
	BAD(GC("tags:\n  Env: prod\n"), "gcp", "config.yml:5: tags[\"Env\" (3 chars)]: invalid tag key");
	BAD(GC("tags:\n  env: Prod\n"), "gcp", "config.yml:5: tags[\"env\" (3 chars)]: invalid tag value");
	OK(GC("tags:\n  env: prod\n  team_x: ''\n"), "gcp");
	/* service account */
	BAD("project_id: p\ncreds:\n  type: service_account\n", "gcp",
	    "config.yml:3: creds: either `filename` or `data` is required");
	BAD("project_id: p\ncreds:\n  type: service_account\n  filename: ''\n", "gcp",
	    "config.yml:4: creds.filename: either `filename` or `data` is required");
	BAD("project_id: p\ncreds:\n  type: service_account\n  data: '{oops'\n", "gcp",
	    "config.yml:4: creds.data: not valid JSON");
	BAD("project_id: p\ncreds:\n  type: service_account\n  data: '{\"private_key\": \"k\"}'\n",
	    "gcp",
	    "config.yml:4: creds.data: not a service account key: no string \"client_email\"");
	BAD("project_id: p\ncreds:\n  type: service_account\n  data: '[]'\n", "gcp",
	    "config.yml:4: creds.data: the service account JSON must be an object");
#undef GC
	free(y);
}
END_TEST

START_TEST(test_kubernetes_rules)
{
	const char *k = "kubeconfig:\n  filename: ~/.kube/config\n";
	char *y = NULL;
#define KU(tail) (free(y), y = xasprintf("%s%s", k, tail))
	OK(KU("contexts: [dev, prod]\n"), "kubernetes");
	OK(KU("contexts:\n- dev\n- name: prod\n  proxy_jump: {hostname: 10.0.0.5, port: 30022}\n"),
	   "kubernetes");
	OK(KU("namespace: dstack\nproxy_jump: {hostname: 10.0.0.5}\n"), "kubernetes");
	BAD(KU("contexts: [dev]\nproxy_jump: {hostname: h, port: 30022}\n"), "kubernetes",
	    "config.yml:4: proxy_jump: cannot be set together with `contexts`");
	BAD(KU("contexts: [dev]\nnamespace: dstack\n"), "kubernetes",
	    "config.yml:4: namespace: cannot be set together with `contexts`");
	BAD(KU("contexts:\n- dev\n- name: dev\n"), "kubernetes",
	    "config.yml:5: contexts[1]: duplicate context (also contexts[0])");
	BAD(KU("contexts: [staging]\n"), "kubernetes",
	    "config.yml:3: contexts[0]: no such context in the kubeconfig");
	BAD(KU("contexts:\n- proxy_jump: {port: 30022}\n"), "kubernetes",
	    "config.yml:4: contexts[0].name: required field is missing");
	BAD(KU("contexts:\n- [dev]\n"), "kubernetes",
	    "config.yml:4: contexts[0]: must be a string, not a list");
	BAD("kubeconfig: {}\n", "kubernetes",
	    "config.yml:1: kubeconfig: either `filename` or `data` is required");
	BAD("kubeconfig: ~/.kube/config\n", "kubernetes",
	    "config.yml:1: kubeconfig: must be a mapping, not a single value");
	/* inline data is checked but not attached */
	struct schema_result res;
	char err[ERRSZ];
	ck_assert_int_eq(vx("kubeconfig:\n  data: |\n    apiVersion: v1\n    kind: Config\n"
			    "    contexts: [{name: a, context: {cluster: c}}]\n"
			    "    current-context: a\n",
			    "kubernetes", NULL, &res, err),
			 0);
	ck_assert_uint_eq(res.natt, 0);
	schema_result_free(&res);
	BAD("kubeconfig:\n  data: |\n    apiVersion: v1\n    kind: Config\n"
	    "    contexts: [{name: a, context: {cluster: c}}]\n",
	    "kubernetes", "config.yml:2: kubeconfig.data: kubeconfig has no current-context");
	BAD("kubeconfig:\n  data: 'clusters: ['\n", "kubernetes",
	    "config.yml:2: kubeconfig.data: not a valid kubeconfig: kubeconfig:2: YAML syntax "
	    "error");
#undef KU
	free(y);
}
END_TEST

START_TEST(test_secrets_not_echoed)
{
	static const char *const cases[][2] = {
		{"creds:\n  type: SECRET-TYPE-XYZ\n", "aws"},
		{"creds:\n  type: default\n  token: SECRETTOKEN-XYZ\n", "aws"},
		{"creds:\n  type: access_key\n  access_key: SECRET-XYZ\n", "aws"},
		{"creds:\n  type: default\ntags:\n  team: 'bad!SECRET-XYZ'\n", "aws"},
		{"creds:\n  api_key: yes\n", "lambda"},
		{"type: SECRET-XYZ\n", NULL},
		{"tenant_id: t\nsubscription_id: s\ncreds: {type: default}\n"
		 "vpc_ids: {westeurope: SECRET-XYZ}\n",
		 "azure"},
		{"project_id: p\ncreds:\n  type: service_account\n  data: '{\"x\": "
		 "\"SECRET-XYZ\"}'\n",
		 "gcp"},
		{"creds:\n  type: client\n  user: u\n  tenancy: t\n  fingerprint: f\n  region: r\n"
		 "  key_content: SECRET-XYZ\n",
		 "oci"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[ERRSZ];
		ck_assert_int_eq(vx(cases[i][0], cases[i][1], NULL, NULL, err), -EINVAL);
		ck_assert_msg(!strstr(err, "SECRET"), "case %zu echoes a value: %s", i, err);
	}
}
END_TEST

/* ---- files ---- */

START_TEST(test_file_gcp)
{
	struct schema_result res;
	char err[ERRSZ], path[PATH_MAX];
	const char *y = "project_id: my-gcp-project\ncreds:\n  type: service_account\n"
			"  filename: ~/.dstack/server/gcp-024ed630eab5.json\n";
	ck_assert_msg(vx(y, "gcp", NULL, &res, err) == 0, "%s", err);
	ck_assert_uint_eq(res.natt, 1);
	ck_assert_str_eq(res.att[0].field, "creds.filename");
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/.dstack/server/gcp-024ed630eab5.json", g_home),
			 0);
	ck_assert_str_eq(res.att[0].path, path);
	char *want = gcp_sa_json();
	ck_assert_uint_eq(res.att[0].len, strlen(want));
	ck_assert_str_eq(res.att[0].data, want);
	cJSON_free(want);
	schema_result_free(&res);
	ck_assert_uint_eq(res.natt, 0);
	/* relative paths resolve against the writer's cwd, absolute ones as they are */
	OK("project_id: p\ncreds:\n  type: service_account\n"
	   "  filename: .dstack/server/gcp-sa.json\n",
	   "gcp");
	char *abs = subst("project_id: p\ncreds:\n  type: service_account\n"
			  "  filename: @HOME@/.dstack/server/gcp-sa.json\n",
			  NULL, 0);
	OK(abs, "gcp");
	free(abs);
	/* data wins over filename, as in dstack's fill_data */
	OK("project_id: p\ncreds:\n  type: service_account\n  filename: ~/missing.json\n"
	   "  data: '{\"client_email\": \"a@b\", \"private_key\": \"k\", \"token_uri\": \"u\"}'\n",
	   "gcp");
}
END_TEST

/* creds.filename of a GCP entry naming `file`; the error must start with `want` after
 * "config.yml:4: creds.filename: " (and "@PATH@/p" for HOME/p as str_redact shows it). */
static void bad_gcp_file(const char *file, const struct fileref_ctx *ctx, const char *want)
{
	char *y =
		xasprintf("project_id: p\ncreds:\n  type: service_account\n  filename: %s\n", file);
	char *t = xasprintf("config.yml:4: creds.filename: %s", want);
	char *exp = subst(t, NULL, 0);
	BAD_CTX(y, "gcp", ctx, exp);
	free(exp);
	free(t);
	free(y);
}

START_TEST(test_file_errors)
{
	bad_gcp_file("~/nope.json", NULL, "@PATH@/nope.json: no such file");
	bad_gcp_file("~/bad/not.json", NULL, "@PATH@/bad/not.json: not valid JSON");
	bad_gcp_file("~/bad/array.json", NULL,
		     "@PATH@/bad/array.json: the service account JSON must be an object");
	bad_gcp_file("~/bad/big.json", NULL, "@PATH@/bad/big.json: larger than 1048576 bytes");
	bad_gcp_file("~/bad/dir", NULL, "@PATH@/bad/dir: not a regular file");
	bad_gcp_file("~/.oci/private_key.pem", NULL, "@PATH@/.oci/private_key.pem: not valid JSON");
	bad_gcp_file("~root/sa.json", NULL, "only \"~/\" is supported");
	/* without a home or a cwd, "~/" and relative paths cannot be resolved */
	struct fileref_ctx none = {.cwd = NULL, .home = NULL};
	bad_gcp_file("~/.dstack/server/gcp-sa.json", &none,
		     "cannot expand \"~\": the writer's home is unknown");
	bad_gcp_file("sa.json", &none, "relative path but the writer's directory is unknown");
	bad_gcp_file("[sa.json]", &none, "must be a string, not a list");
}
END_TEST

START_TEST(test_file_nebius)
{
	struct schema_result res;
	char err[ERRSZ];
	ck_assert_int_eq(vx("creds:\n  type: service_account\n"
			    "  filename: ~/.nebius/sa-credentials.json\n",
			    "nebius", NULL, &res, err),
			 0);
	ck_assert_uint_eq(res.natt, 1);
	ck_assert_str_eq(res.att[0].field, "creds.filename");
	schema_result_free(&res);
	ck_assert_int_eq(vx("creds:\n  service_account_id: serviceaccount-e00x\n"
			    "  public_key_id: publickey-e00x\n"
			    "  private_key_file: ~/.nebius/authkey/private.pem\n"
			    "projects: [project-e00a, project-e01b]\nregions: [eu-north1]\n"
			    "fabrics: [fabric-3]\ntags: {team: ml}\n",
			    "nebius", NULL, &res, err),
			 0);
	ck_assert_uint_eq(res.natt, 1);
	ck_assert_str_eq(res.att[0].field, "creds.private_key_file");
	ck_assert_str_eq(res.att[0].data, g_pem);
	schema_result_free(&res);
	char *exp = subst("config.yml:2: creds.filename: @PATH@/bad/nebius-alg.json: "
			  "\"subject-credentials.alg\" must be RS256",
			  NULL, 0);
	BAD("creds:\n  filename: ~/bad/nebius-alg.json\n", "nebius", exp);
	free(exp);
	BAD("creds:\n  filename: ~/bad/nebius-iss.json\n", "nebius",
	    "config.yml:2: creds.filename: ");
	exp = subst("config.yml:2: creds.filename: @PATH@/bad/nebius-ec.json: "
		    "subject-credentials.private-key: the private key is not an RSA key",
		    NULL, 0);
	BAD("creds:\n  filename: ~/bad/nebius-ec.json\n", "nebius", exp);
	free(exp);
	BAD("creds:\n  filename: ~/bad/not.json\n", "nebius", "config.yml:2: creds.filename: ");
	BAD("creds:\n  filename: ~/.dstack/server/gcp-sa.json\n", "nebius",
	    "config.yml:2: creds.filename: ");
	/* without filename the ids and a key are required */
	BAD("creds:\n  public_key_id: p\n  private_key_file: ~/path/to/key.pem\n", "nebius",
	    "config.yml:2: creds.service_account_id: required field is missing (unless `filename` "
	    "is set)");
	BAD("creds:\n  service_account_id: s\n  private_key_file: ~/path/to/key.pem\n", "nebius",
	    "config.yml:2: creds.public_key_id: required field is missing");
	BAD("creds:\n  service_account_id: s\n  public_key_id: p\n", "nebius",
	    "config.yml:2: creds: either `private_key_file` or `private_key_content` is required");
	exp = subst("config.yml:4: creds.private_key_file: @PATH@/bad/ec.pem: the private key is "
		    "not an RSA key",
		    NULL, 0);
	BAD("creds:\n  service_account_id: s\n  public_key_id: p\n  private_key_file: "
	    "~/bad/ec.pem\n",
	    "nebius", exp);
	free(exp);
	exp = subst(
		"config.yml:4: creds.private_key_file: @PATH@/bad/not.pem: not a PEM private key",
		NULL, 0);
	BAD("creds:\n  service_account_id: s\n  public_key_id: p\n  private_key_file: "
	    "~/bad/not.pem\n",
	    "nebius", exp);
	free(exp);
	BAD("creds:\n  filename: ~/.nebius/sa-credentials.json\ntags:\n  Team: x\n", "nebius",
	    "config.yml:4: tags[\"Tea\xe2\x80\xa6\" (4 chars)]: invalid tag key");
}
END_TEST

START_TEST(test_file_oci)
{
	struct schema_result res;
	char err[ERRSZ];
	const char *client = "creds:\n  type: client\n  user: ocid1.user.oc1..u\n"
			     "  tenancy: ocid1.tenancy.oc1..t\n  region: eu-frankfurt-1\n"
			     "  fingerprint: 77:32:77:00:49:7c:cb:56:84:75:8e:77:96:7d:53:17\n";
	char *y = xasprintf("%s  key_file: ~/.oci/private_key.pem\n", client);
	ck_assert_int_eq(vx(y, "oci", NULL, &res, err), 0);
	ck_assert_uint_eq(res.natt, 1);
	ck_assert_str_eq(res.att[0].field, "creds.key_file");
	schema_result_free(&res);
	free(y);
	y = xasprintf("%s  key_file: ~/.oci/private_key.pem\n  key_content: x\n", client);
	BAD(y, "oci", "config.yml:8: creds.key_content: cannot be set together with `key_file`");
	free(y);
	BAD(client, "oci", "config.yml:2: creds: either `key_file` or `key_content` is required");
	y = xasprintf("%s  key_file: ''\n  key_content: ''\n", client);
	BAD(y, "oci",
	    "config.yml:7: creds.key_file: either `key_file` or `key_content` is required");
	free(y);
	char *t = xasprintf("%s  key_content: |\n@KEY@", client);
	y = subst(t, g_pem, 4);
	ck_assert_int_eq(vx(y, "oci", NULL, &res, err), 0);
	ck_assert_uint_eq(res.natt, 0);
	schema_result_free(&res);
	free(y);
	free(t);
	/* an encrypted key needs its pass_phrase */
	y = xasprintf("%s  key_file: ~/bad/enc.pem\n  pass_phrase: s3cret\n", client);
	OK(y, "oci");
	free(y);
	y = xasprintf("%s  key_file: ~/bad/enc.pem\n", client);
	char *exp = subst("config.yml:7: creds.key_file: @PATH@/bad/enc.pem: not a PEM private key "
			  "(or encrypted)",
			  NULL, 0);
	BAD(y, "oci", exp);
	free(exp);
	free(y);
	y = xasprintf("%s  key_file: ~/bad/enc.pem\n  pass_phrase: wrong\n", client);
	BAD(y, "oci", "config.yml:7: creds.key_file: ");
	free(y);
	/* default creds: an explicit `file` is read, and must hold the profile */
	ck_assert_int_eq(
		vx("creds:\n  type: default\n  file: ~/.oci/config\n", "oci", NULL, &res, err), 0);
	ck_assert_uint_eq(res.natt, 1);
	ck_assert_str_eq(res.att[0].field, "creds.file");
	schema_result_free(&res);
	OK("creds:\n  type: default\n  file: ~/.oci/config\n  profile: WORK\n", "oci");
	BAD("creds:\n  type: default\n  file: ~/.oci/config\n  profile: NOPE\n", "oci",
	    "config.yml:3: creds.file: ");
	BAD("creds:\n  type: default\n  file: ~/bad/oci-bad.ini\n", "oci",
	    "config.yml:3: creds.file: ");
	/* regions dstack publishes images in */
	OK("creds:\n  type: default\nregions: [eu-frankfurt-1, us-ashburn-1]\ncompartment_id: "
	   "ocid1.compartment.oc1..c\n",
	   "oci");
	BAD("creds:\n  type: default\nregions: [ap-tokyo-1]\n", "oci",
	    "config.yml:3: regions[0]: must be one of: eu-frankfurt-1,");
}
END_TEST

START_TEST(test_file_kubeconfig)
{
	struct schema_result res;
	char err[ERRSZ], path[PATH_MAX];
	ck_assert_int_eq(
		vx("kubeconfig:\n  filename: ~/.kube/config\n", "kubernetes", NULL, &res, err), 0);
	ck_assert_uint_eq(res.natt, 1);
	ck_assert_str_eq(res.att[0].field, "kubeconfig.filename");
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/.kube/config", g_home), 0);
	ck_assert_str_eq(res.att[0].path, path);
	ck_assert_str_eq(res.att[0].data, kubeconfig);
	schema_result_free(&res);
	char *exp = subst("config.yml:2: kubeconfig.filename: @PATH@/bad/kube-list.yaml: not a "
			  "kubeconfig: not a YAML mapping",
			  NULL, 0);
	BAD("kubeconfig:\n  filename: ~/bad/kube-list.yaml\n", "kubernetes", exp);
	free(exp);
	BAD("kubeconfig:\n  filename: ~/bad/kube-syntax.yaml\n", "kubernetes",
	    "config.yml:2: kubeconfig.filename: ");
	BAD("kubeconfig:\n  filename: ~/bad/kube-pod.yaml\n", "kubernetes",
	    "config.yml:2: kubeconfig.filename: ");
	exp = subst("config.yml:2: kubeconfig.filename: @PATH@/bad/kube-nocur.yaml: kubeconfig has "
		    "no current-context",
		    NULL, 0);
	BAD("kubeconfig:\n  filename: ~/bad/kube-nocur.yaml\n", "kubernetes", exp);
	free(exp);
	OK("kubeconfig:\n  filename: ~/bad/kube-nocur.yaml\ncontexts: [dev]\n", "kubernetes");
	BAD("kubeconfig:\n  filename: ~/nope\n", "kubernetes",
	    "config.yml:2: kubeconfig.filename: ");
}
END_TEST

/* ---- examples/backends/ ---- */

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	char *s = xmalloc(65536);
	*len = fread(s, 1, 65535, f);
	s[*len] = '\0';
	fclose(f);
	return s;
}

static void validate_example(const char *dir, const char *name)
{
	char path[PATH_MAX], type[64], err[ERRSZ], lerr[512];
	size_t len, n = strlen(name) - 4;
	struct ydoc *d = NULL;
	struct schema_result res;
	struct fileref_ctx ctx = {.cwd = g_home, .home = g_home};
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", dir, name), 0);
	ck_assert_int_eq(fmt(type, sizeof(type), "%.*s", (int)n, name), 0);
	char *s = slurp(path, &len);
	ck_assert_msg(ydoc_load(s, len, path, &d, lerr, sizeof(lerr)) == 0, "%s", lerr);
	int r = schema_validate(d, ydoc_root(d), type, &ctx, &res, err, sizeof(err));
	ck_assert_msg(r == 0, "%s", err);
	if (backend_type_known(type))
		ck_assert_str_eq(res.type, type);
	schema_result_free(&res);
	ydoc_free(d);
	free(s);
}

START_TEST(test_examples_dir)
{
	const char *dir = FLEETFS_SRCDIR "/examples/backends";
	char name[80];
	size_t seen = 0;
	for (const char *const *t = backend_type_names(); *t; t++) {
		ck_assert_int_eq(fmt(name, sizeof(name), "%s.yml", *t), 0);
		validate_example(dir, name);
	}
	DIR *dp = opendir(dir);
	ck_assert_msg(dp != NULL, "cannot open %s", dir);
	for (struct dirent *de; (de = readdir(dp));) {
		size_t n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 4, ".yml"))
			continue;
		validate_example(dir, de->d_name);
		seen++;
	}
	closedir(dp);
	ck_assert_uint_ge(seen, 17);
}
END_TEST

Suite *bkschema_suite(void)
{
	Suite *s = suite_create("bkschema");
	TCase *docs = tcase_create("docs");
	TCase *types = tcase_create("types");
	TCase *fields = tcase_create("fields");
	TCase *files = tcase_create("files");
	TCase *tcs[] = {docs, types, fields, files};
	for (size_t i = 0; i < sizeof(tcs) / sizeof(tcs[0]); i++) {
		tcase_add_unchecked_fixture(tcs[i], fixture_setup, fixture_teardown);
		tcase_set_timeout(tcs[i], 60);
		suite_add_tcase(s, tcs[i]);
	}
	tcase_add_test(docs, test_doc_examples);
	tcase_add_test(docs, test_doc_defects);
	tcase_add_test(docs, test_doc_nebius_key_content);
	tcase_add_test(docs, test_examples_dir);
	tcase_add_test(types, test_types_list);
	tcase_add_test(types, test_minimal_each_type);
	tcase_add_test(types, test_named_backends);
	tcase_add_test(fields, test_required_and_unknown);
	tcase_add_test(fields, test_scalar_types);
	tcase_add_test(fields, test_creds_variants);
	tcase_add_test(fields, test_aws_rules);
	tcase_add_test(fields, test_azure_rules);
	tcase_add_test(fields, test_gcp_rules);
	tcase_add_test(fields, test_kubernetes_rules);
	tcase_add_test(fields, test_secrets_not_echoed);
	tcase_add_test(files, test_file_gcp);
	tcase_add_test(files, test_file_errors);
	tcase_add_test(files, test_file_nebius);
	tcase_add_test(files, test_file_oci);
	tcase_add_test(files, test_file_kubeconfig);
	return s;
}
