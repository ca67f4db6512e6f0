/* bktypes: the field tables of every backend type and their cross-field hooks.
 *
 * Each table restates one of dstack's pydantic models (src/dstack/_internal/core/backends/
 * <type>/models.py, the variant accepted in server/config.yml, "BackendFileConfigWithCreds").
 * The hooks restate the offline part of dstack's configurators (<type>/configurator.py and
 * the tag/label checks in <type>/resources.py): what can be decided without calling a cloud.
 * docs/backends.md documents the same tables for users; keep them in step.
 */
#include "schemapriv.h"

#include <stdbool.h>
#include <string.h>

#include "../lib/ydoc.h"

/* ---- value checks ---- */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_lower(unsigned char c)
{
	return c >= 'a' && c <= 'z';
}

static bool is_alpha(unsigned char c)
{
	return is_lower(c) || (c >= 'A' && c <= 'Z');
}

/* Characters, counting a UTF-8 sequence as one. */
static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* AWS: ^[\w .:/=\-+@]{min,max}$ (Python's \w is Unicode; any non-ASCII byte is taken as a
 * word character). */
static bool aws_tag_ok(const char *s, size_t min, size_t max)
{
	if (!s)
		return false;
	size_t n = utf8_len(s);
	if (n < min || n > max)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (!(*p >= 0x80 || is_alpha(*p) || is_digit(*p) || strchr("_ .:/=-+@", *p)))
			return false;
	return true;
}

bool aws_tag_valid(const char *key, const char *value)
{
	return aws_tag_ok(key, 1, 128) && strncmp(key, "aws:", 4) != 0 &&
	       aws_tag_ok(value ? value : "", 0, 256);
}

/* Azure: key ^(?!.*[<>&\\%?/]).{1,512}$, value .{0,256}$ (no line breaks). */
static bool azure_tag_ok(const char *s, size_t min, size_t max, const char *banned)
{
	size_t n = utf8_len(s);
	if (n < min || n > max || strpbrk(s, "\n\r"))
		return false;
	return !banned || !strpbrk(s, banned);
}

/* GCP labels (Nebius reuses them): key ^[a-z][_\-a-z0-9]{0,62}$, value ^[_\-a-z0-9]{0,63}$. */
static bool gcp_label_ok(const char *s, bool key)
{
	size_t n = strlen(s);
	if (n > 63 || (key && (n == 0 || !is_lower((unsigned char)s[0]))))
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (!(is_lower(*p) || is_digit(*p) || *p == '_' || *p == '-'))
			return false;
	return true;
}

enum tag_rules { TAGS_AWS, TAGS_AZURE, TAGS_GCP };

#define TAGS_MAX_NUM 25 /* dstack base/configurator.py */

static int check_tags(struct schw *w, int val, const char *path, enum tag_rules rules)
{
	static const char *const key_rule[] = {
		[TAGS_AWS] = "1-128 letters, digits, spaces or _.:/=+-@, not starting with aws:",
		[TAGS_AZURE] = "1-512 characters, none of <>&\\%?/ and no line breaks",
		[TAGS_GCP] = "1-63 lowercase letters, digits, _ or -, starting with a letter",
	};
	static const char *const val_rule[] = {
		[TAGS_AWS] = "at most 256 letters, digits, spaces or _.:/=+-@",
		[TAGS_AZURE] = "at most 256 characters, no line breaks",
		[TAGS_GCP] = "at most 63 lowercase letters, digits, _ or -",
	};
	const struct ydoc *d = w->d;
	char kpath[SCHW_PATH];
	size_t n = ydoc_len(d, val);
	if (n > TAGS_MAX_NUM)
		return schw_err(w, val, path, "at most %d tags are allowed", TAGS_MAX_NUM);
	for (size_t i = 0; i < n; i++) {
		int kn = ydoc_map_key(d, val, i), vn = ydoc_map_val(d, val, i);
		const char *k = ydoc_str(d, kn), *v = ydoc_str(d, vn);
		bool kok = false, vok = false;
		switch (rules) {
		case TAGS_AWS:
			kok = aws_tag_ok(k, 1, 128) && strncmp(k, "aws:", 4) != 0;
			vok = aws_tag_ok(v, 0, 256);
			break;
		case TAGS_AZURE:
			kok = azure_tag_ok(k, 1, 512, "<>&\\%?/");
			vok = azure_tag_ok(v, 0, 256, NULL);
			break;
		case TAGS_GCP:
			kok = gcp_label_ok(k, true);
			vok = gcp_label_ok(v, false);
			break;
		}
		ywalk_path_user(kpath, sizeof(kpath), path, k);
		if (!kok)
			return schw_err(w, kn, kpath, "invalid tag key (%s)", key_rule[rules]);
		if (!vok)
			return schw_err(w, vn, kpath, "invalid tag value (%s)", val_rule[rules]);
	}
	return 0;
}

static int chk_tags_aws(struct schw *w, int val, const char *path)
{
	return check_tags(w, val, path, TAGS_AWS);
}

static int chk_tags_azure(struct schw *w, int val, const char *path)
{
	return check_tags(w, val, path, TAGS_AZURE);
}

static int chk_tags_gcp(struct schw *w, int val, const char *path)
{
	return check_tags(w, val, path, TAGS_GCP);
}

/* AWSOSImage.owner: Field(pattern=r"^(\d{12}|self)$") */
static int chk_aws_owner(struct schw *w, int val, const char *path)
{
	const char *s = ydoc_str(w->d, val);
	size_t i = 0;
	if (!strcmp(s, "self"))
		return 0;
	while (is_digit((unsigned char)s[i]))
		i++;
	if (i == 12 && s[i] == '\0')
		return 0;
	return schw_err(w, val, path, "must be a 12-digit AWS account ID or `self`");
}

/* s is exactly `parts` non-empty pieces separated by '/'. */
static bool slash_parts(const char *s, int parts)
{
	int n = 1;
	if (!*s || *s == '/')
		return false;
	for (const char *p = s; *p; p++) {
		if (*p != '/')
			continue;
		if (p[1] == '/' || p[1] == '\0')
			return false;
		n++;
	}
	return n == parts;
}

static int check_azure_ids(struct schw *w, int val, const char *path, int parts,
			   const char *format)
{
	char kpath[SCHW_PATH];
	for (size_t i = 0; i < ydoc_len(w->d, val); i++) {
		int vn = ydoc_map_val(w->d, val, i);
		if (slash_parts(ydoc_str(w->d, vn), parts))
			continue;
		const char *key = ydoc_str(w->d, ydoc_map_key(w->d, val, i));
		ywalk_path_user(kpath, sizeof(kpath), path, key);
		return schw_err(w, vn, kpath, "must have the form %s", format);
	}
	return 0;
}

static int chk_azure_vpc_ids(struct schw *w, int val, const char *path)
{
	return check_azure_ids(w, val, path, 2, "networkResourceGroup/networkName");
}

static int chk_azure_subnet_ids(struct schw *w, int val, const char *path)
{
	return check_azure_ids(w, val, path, 3, "networkResourceGroup/networkName/subnetName");
}

static int chk_azure_identity(struct schw *w, int val, const char *path)
{
	if (slash_parts(ydoc_str(w->d, val), 2))
		return 0;
	return schw_err(w, val, path,
		       "must have the form managedIdentityResourceGroup/managedIdentityName");
}

static int chk_port(struct schw *w, int val, const char *path)
{
	long long v = 0;
	(void)ydoc_int(w->d, val, &v);
	if (v < 1 || v > 65535)
		return schw_err(w, val, path, "must be a port number (1-65535)");
	return 0;
}

/* ---- cross-field hooks ---- */

const char *const aws_default_regions[] = {
	"us-east-1",    "us-east-2", "us-west-1", "us-west-2", "ap-southeast-1", "ca-central-1",
	"eu-central-1", "eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1",     NULL,
};

/* Azure configurator LOCATIONS: the only accepted locations, and the default set. */
static const char *const azure_locations[] = {
	"centralus", "eastus", "eastus2", "southcentralus", "westus2", "westus3",
	"canadacentral", "francecentral", "germanywestcentral", "northeurope", "swedencentral",
	"uksouth", "westeurope", "southeastasia", "eastasia", "brazilsouth", NULL,
};

/* OCI configurator SUPPORTED_REGIONS (where dstack's images are published). */
static const char *const oci_regions[] = {
	"eu-frankfurt-1", "eu-milan-1",   "me-dubai-1",   "uk-london-1",
	"us-ashburn-1",   "us-chicago-1", "us-phoenix-1", NULL,
};

static const char *const gcp_preview_features[] = {"g4", NULL};

static bool bool_or(const struct schw *w, int node, bool deflt)
{
	bool b = deflt;
	if (node)
		(void)ydoc_bool(w->d, node, &b);
	return b;
}

static bool in_either(const struct schw *w, int a, int b, const char *key)
{
	return (a && ydoc_map_get(w->d, a, key)) || (b && ydoc_map_get(w->d, b, key));
}

/* With custom networks every configured region (all defaults when `regions` is unset) needs
 * an entry in map a or b; at/atpath is where to complain about a default region. */
static int check_covered(struct schw *w, int obj, const char *path, int a, int b, int at,
			 const char *atpath, const char *const *defaults, const char *what)
{
	char rpath[SCHW_PATH], ipath[SCHW_PATH];
	int regions = schw_get(w, obj, "regions");
	if (regions) {
		ywalk_path(rpath, sizeof(rpath), path, "regions");
		for (size_t i = 0; i < ydoc_len(w->d, regions); i++) {
			int it = ydoc_seq_at(w->d, regions, i);
			if (in_either(w, a, b, ydoc_str(w->d, it)))
				continue;
			ywalk_path_idx(ipath, sizeof(ipath), rpath, i);
			return schw_err(w, it, ipath, "has no entry in %s", what);
		}
		return 0;
	}
	for (size_t i = 0; defaults[i]; i++)
		if (!in_either(w, a, b, defaults[i]))
			return schw_err(w, at, atpath,
				       "has no entry for %s; without `regions` every default "
				       "region needs one (or set `regions`)",
				       defaults[i]);
	return 0;
}

/* AWS configurator _check_config_vpc (vpc_name vs vpc_ids is an exclusive pair). */
static int aws_post(struct schw *w, int obj, const char *path)
{
	char p[SCHW_PATH];
	int dv = schw_get(w, obj, "default_vpcs");
	int vi = schw_get(w, obj, "vpc_ids");
	if (bool_or(w, dv, true))
		return 0;
	ywalk_path(p, sizeof(p), path, "default_vpcs");
	if (!vi && !schw_get(w, obj, "vpc_name"))
		return schw_err(w, dv, p, "is false, so `vpc_name` or `vpc_ids` must be set");
	if (!vi)
		return 0;
	ywalk_path(p, sizeof(p), path, "vpc_ids");
	return check_covered(w, obj, path, vi, 0, vi, p, aws_default_regions,
			     "`vpc_ids` (and `default_vpcs` is false)");
}

/* Azure configurator _check_config_vpc. */
static int azure_post(struct schw *w, int obj, const char *path)
{
	char p[SCHW_PATH], kp[SCHW_PATH];
	int pn = schw_get(w, obj, "public_ips");
	int vi = schw_get(w, obj, "vpc_ids");
	int si = schw_get(w, obj, "subnet_ids");
	if (!bool_or(w, pn, true) && !vi && !si) {
		ywalk_path(p, sizeof(p), path, "public_ips");
		return schw_err(w, pn, p,
			       "is false, so `vpc_ids` or `subnet_ids` must name networks with "
			       "outbound connectivity");
	}
	if (vi && si) {
		ywalk_path(p, sizeof(p), path, "subnet_ids");
		for (size_t i = 0; i < ydoc_len(w->d, si); i++) {
			int kn = ydoc_map_key(w->d, si, i);
			const char *k = ydoc_str(w->d, kn);
			if (!ydoc_map_get(w->d, vi, k))
				continue;
			ywalk_path_user(kp, sizeof(kp), p, k);
			return schw_err(w, kn, kp, "this location is also in `vpc_ids`; use one");
		}
	}
	if (!vi && !si)
		return 0;
	ywalk_path(p, sizeof(p), path, vi ? "vpc_ids" : "subnet_ids");
	return check_covered(w, obj, path, vi, si, vi ? vi : si, p, azure_locations,
			     "`vpc_ids` or `subnet_ids`");
}

static int gcp_sa_post(struct schw *w, int obj, const char *path)
{
	const struct sch_fill f = {.file = "filename", .data = "data", .kind = SCH_C_GCP_SA};
	return schw_fill(w, obj, path, &f);
}

/* OCIClientCreds.key_file_xor_key_content */
static int oci_client_post(struct schw *w, int obj, const char *path)
{
	const struct sch_fill f = {.file = "key_file",
				  .data = "key_content",
				  .kind = SCH_C_PEM_RSA,
				  .exclusive = true,
				  .pass = schw_str(w, obj, "pass_phrase")};
	return schw_fill(w, obj, path, &f);
}

/* OCIDefaultCreds: an explicit `file` is read and sealed; without it the server's own
 * ~/.oci/config is used at run time, like AWS/GCP/Azure default credentials. */
static int oci_default_post(struct schw *w, int obj, const char *path)
{
	const char *profile = schw_str(w, obj, "profile");
	const struct sch_fill f = {.file = "file",
				  .kind = SCH_C_OCI_CONFIG,
				  .optional = true,
				  .profile = profile ? profile : "DEFAULT"};
	return schw_fill(w, obj, path, &f);
}

/* NebiusServiceAccountFileCreds.fill_data: `filename` (credentials JSON) wins; otherwise
 * the ids are needed (NebiusServiceAccountCreds requires them) and the key comes from
 * private_key_content or private_key_file. */
static int nebius_post(struct schw *w, int obj, const char *path)
{
	static const char *const ids[] = {"service_account_id", "public_key_id", NULL};
	char p[SCHW_PATH];
	const char *fname = schw_str(w, obj, "filename");
	if (fname && *fname) {
		const struct sch_fill f = {.file = "filename", .kind = SCH_C_NEBIUS_SA};
		return schw_fill(w, obj, path, &f);
	}
	for (size_t i = 0; ids[i]; i++) {
		if (schw_get(w, obj, ids[i]))
			continue;
		ywalk_path(p, sizeof(p), path, ids[i]);
		return schw_err(w, obj, p, "required field is missing (unless `filename` is set)");
	}
	const struct sch_fill f = {
		.file = "private_key_file", .data = "private_key_content", .kind = SCH_C_PEM_RSA};
	return schw_fill(w, obj, path, &f);
}

static const char *kube_context_name(const struct schw *w, int item)
{
	if (ydoc_kind(w->d, item) == Y_MAP)
		return schw_str(w, item, "name");
	return ydoc_str(w->d, item);
}

/* Kubernetes configurator _check_config_contexts, then the kubeconfig itself. */
static int kube_post(struct schw *w, int obj, const char *path)
{
	char p[SCHW_PATH], ipath[SCHW_PATH];
	int ctxs = schw_get(w, obj, "contexts");
	ywalk_path(p, sizeof(p), path, "contexts");
	for (size_t i = 0; ctxs && i < ydoc_len(w->d, ctxs); i++) {
		int it = ydoc_seq_at(w->d, ctxs, i);
		const char *name = kube_context_name(w, it);
		for (size_t j = 0; j < i; j++) {
			if (strcmp(name, kube_context_name(w, ydoc_seq_at(w->d, ctxs, j))))
				continue;
			ywalk_path_idx(ipath, sizeof(ipath), p, i);
			return schw_err(w, it, ipath, "duplicate context (also contexts[%zu])", j);
		}
	}
	const struct sch_fill f = {.file = "filename", .data = "data", .kind = SCH_C_KUBECONFIG};
	ywalk_path(p, sizeof(p), path, "kubeconfig");
	return schw_fill(w, schw_get(w, obj, "kubeconfig"), p, &f);
}

/* ---- tables ---- */

#define END {.name = NULL}
#define F_STR(n) {.name = (n), .kind = SCH_STR}
#define F_STR_REQ(n) {.name = (n), .kind = SCH_STR, .flags = SCH_REQ}
#define F_BOOL(n) {.name = (n), .kind = SCH_BOOL}
#define F_LIST(n) {.name = (n), .kind = SCH_LIST}
#define F_OBJ(n, o) {.name = (n), .kind = SCH_OBJ, .obj = (o)}
#define F_CREDS(c) {.name = "creds", .kind = SCH_CREDS, .flags = SCH_REQ, .creds = (c)}
#define F_TAGS(chk) {.name = "tags", .kind = SCH_MAP, .check = (chk)}
#define F_REGIONS F_LIST("regions")
/* fleetfs's own key (not dstack's) for backends it provisions on: what to do with VMs named
 * fleetfs-<project>-... that the store does not know (docs/backends.md#orphans). */
static const char *const orphan_modes[] = {"report", "terminate", NULL};
#define F_ORPHANS {.name = "orphans", .kind = SCH_STR, .oneof = orphan_modes}
#define NO_VARIANT {NULL, NULL}

static const struct sch_field f_empty[] = {END};
static const struct sch_obj o_empty = {.fields = f_empty};

/* {type: api_key, api_key}: Lambda, Vultr, CUDO, DigitalOcean, AMD Developer Cloud, Hot Aisle,
 * CloudRift, RunPod, Vast.ai. A single-variant model: `type` defaults to api_key. */
static const struct sch_field f_api_key[] = {F_STR_REQ("api_key"), END};
static const struct sch_obj o_api_key = {.fields = f_api_key};
static const struct sch_variant v_api_key[] = {{"api_key", &o_api_key}, NO_VARIANT};
static const struct sch_creds c_api_key = {.variants = v_api_key, .deflt = "api_key"};

/* Lambda, Vultr, CloudRift: creds and regions only. */
static const struct sch_field f_api_regions[] = {F_CREDS(&c_api_key), F_REGIONS, F_ORPHANS, END};
const struct sch_obj schema_api_regions = {.fields = f_api_regions};

/* AWS. Discriminated unions (AWS, Azure, GCP, OCI) need `type` in the input. */
static const struct sch_field f_aws_access_key[] = {F_STR_REQ("access_key"),
						   F_STR_REQ("secret_key"), END};
static const struct sch_obj o_aws_access_key = {.fields = f_aws_access_key};
static const struct sch_variant v_aws[] = {
	{"access_key", &o_aws_access_key}, {"default", &o_empty}, NO_VARIANT};
static const struct sch_creds c_aws = {.variants = v_aws};
static const struct sch_field f_aws_image[] = {
	F_STR_REQ("name"),
	{.name = "owner", .kind = SCH_STR, .check = chk_aws_owner},
	F_STR_REQ("user"),
	END,
};
static const struct sch_obj o_aws_image = {.fields = f_aws_image};
static const struct sch_field f_aws_images[] = {F_OBJ("cpu", &o_aws_image),
					       F_OBJ("nvidia", &o_aws_image), END};
static const struct sch_obj o_aws_images = {.fields = f_aws_images};
static const struct sch_excl x_aws[] = {{"vpc_name", "vpc_ids"}, {NULL, NULL}};
static const struct sch_field f_aws[] = {
	F_CREDS(&c_aws),
	F_REGIONS,
	F_STR("vpc_name"),
	{.name = "vpc_ids", .kind = SCH_MAP},
	F_BOOL("default_vpcs"),
	F_BOOL("public_ips"),
	F_STR("iam_instance_profile"),
	F_TAGS(chk_tags_aws),
	F_OBJ("os_images", &o_aws_images),
	F_LIST("experimental_instance_types"),
	F_ORPHANS,
	END,
};
const struct sch_obj schema_aws = {.fields = f_aws, .excl = x_aws, .post = aws_post};

/* Azure */
static const struct sch_field f_azure_client[] = {
	F_STR_REQ("client_id"), F_STR_REQ("client_secret"), F_STR("tenant_id"), END};
static const struct sch_obj o_azure_client = {.fields = f_azure_client};
static const struct sch_variant v_azure[] = {
	{"client", &o_azure_client}, {"default", &o_empty}, NO_VARIANT};
static const struct sch_creds c_azure = {.variants = v_azure};
static const struct sch_field f_azure[] = {
	F_STR_REQ("tenant_id"),
	F_STR_REQ("subscription_id"),
	F_CREDS(&c_azure),
	F_STR("resource_group"),
	{.name = "regions", .kind = SCH_LIST, .oneof = azure_locations},
	{.name = "vpc_ids", .kind = SCH_MAP, .check = chk_azure_vpc_ids},
	{.name = "subnet_ids", .kind = SCH_MAP, .check = chk_azure_subnet_ids},
	F_BOOL("public_ips"),
	{.name = "vm_managed_identity", .kind = SCH_STR, .check = chk_azure_identity},
	F_TAGS(chk_tags_azure),
	END,
};
const struct sch_obj schema_azure = {.fields = f_azure, .post = azure_post};

/* GCP. service_account takes `filename` (read into `data`) or `data` itself. */
static const struct sch_field f_gcp_sa[] = {F_STR("filename"), F_STR("data"), END};
static const struct sch_obj o_gcp_sa = {.fields = f_gcp_sa, .post = gcp_sa_post};
static const struct sch_variant v_gcp[] = {
	{"service_account", &o_gcp_sa}, {"default", &o_empty}, NO_VARIANT};
static const struct sch_creds c_gcp = {.variants = v_gcp};
static const struct sch_field f_gcp[] = {
	F_STR_REQ("project_id"),
	F_CREDS(&c_gcp),
	F_REGIONS,
	F_STR("vpc_name"),
	F_LIST("extra_vpcs"),
	{.name = "roce_vpcs", .kind = SCH_LIST, .max = 1},
	F_STR("vpc_project_id"),
	F_BOOL("public_ips"),
	F_BOOL("nat_check"),
	F_STR("vm_service_account"),
	F_TAGS(chk_tags_gcp),
	{.name = "preview_features", .kind = SCH_LIST, .oneof = gcp_preview_features, .max = 1},
	END,
};
const struct sch_obj schema_gcp = {.fields = f_gcp};

/* Nebius: one creds model, so `type` defaults to service_account. */
static const struct sch_field f_nebius_sa[] = {
	F_STR("service_account_id"), F_STR("public_key_id"), F_STR("private_key_file"),
	F_STR("private_key_content"), F_STR("filename"), END,
};
static const struct sch_obj o_nebius_sa = {.fields = f_nebius_sa, .post = nebius_post};
static const struct sch_variant v_nebius[] = {{"service_account", &o_nebius_sa}, NO_VARIANT};
static const struct sch_creds c_nebius = {.variants = v_nebius, .deflt = "service_account"};
static const struct sch_field f_nebius[] = {
	F_CREDS(&c_nebius), F_LIST("projects"), F_REGIONS, F_LIST("fabrics"),
	F_TAGS(chk_tags_gcp), END,
};
const struct sch_obj schema_nebius = {.fields = f_nebius};

/* OCI */
static const struct sch_field f_oci_client[] = {
	F_STR_REQ("user"),    F_STR_REQ("tenancy"),     F_STR("key_file"), F_STR("key_content"),
	F_STR("pass_phrase"), F_STR_REQ("fingerprint"), F_STR_REQ("region"), END,
};
static const struct sch_obj o_oci_client = {.fields = f_oci_client, .post = oci_client_post};
static const struct sch_field f_oci_default[] = {
	{.name = "file", .kind = SCH_STR, .flags = SCH_NOTNULL},
	{.name = "profile", .kind = SCH_STR, .flags = SCH_NOTNULL},
	END,
};
static const struct sch_obj o_oci_default = {.fields = f_oci_default, .post = oci_default_post};
static const struct sch_variant v_oci[] = {
	{"client", &o_oci_client}, {"default", &o_oci_default}, NO_VARIANT};
static const struct sch_creds c_oci = {.variants = v_oci};
static const struct sch_field f_oci[] = {
	F_CREDS(&c_oci),
	{.name = "regions", .kind = SCH_LIST, .oneof = oci_regions},
	F_STR("compartment_id"),
	END,
};
const struct sch_obj schema_oci = {.fields = f_oci};

/* Verda / DataCrunch: {type: api_key, client_id, client_secret} */
static const struct sch_field f_verda_key[] = {F_STR_REQ("client_id"),
					      F_STR_REQ("client_secret"), END};
static const struct sch_obj o_verda_key = {.fields = f_verda_key};
static const struct sch_variant v_verda[] = {{"api_key", &o_verda_key}, NO_VARIANT};
static const struct sch_creds c_verda = {.variants = v_verda, .deflt = "api_key"};
static const struct sch_field f_verda[] = {F_CREDS(&c_verda), F_REGIONS, END};
const struct sch_obj schema_verda = {.fields = f_verda};

/* CUDO (deprecated in dstack, kept): project_id is required. */
static const struct sch_field f_cudo[] = {F_CREDS(&c_api_key), F_REGIONS,
					 F_STR_REQ("project_id"), END};
const struct sch_obj schema_cudo = {.fields = f_cudo};

/* DigitalOcean and AMD Developer Cloud (digitalocean_base) */
static const struct sch_field f_do[] = {F_CREDS(&c_api_key), F_STR("project_name"), F_REGIONS,
				       F_ORPHANS, END};
const struct sch_obj schema_do = {.fields = f_do};

static const struct sch_field f_hotaisle[] = {F_CREDS(&c_api_key), F_STR_REQ("team_handle"),
					     F_REGIONS, END};
const struct sch_obj schema_hotaisle = {.fields = f_hotaisle};

/* RunPod (community_cloud defaults to false) and Vast.ai (defaults to true) */
static const struct sch_field f_community[] = {F_CREDS(&c_api_key), F_REGIONS,
					      F_BOOL("community_cloud"), END};
const struct sch_obj schema_community = {.fields = f_community};

/* Kubernetes: no creds; kubeconfig {filename, data}. */
static const struct sch_field f_proxy_jump[] = {
	F_STR("hostname"),
	{.name = "port", .kind = SCH_INT, .check = chk_port},
	END,
};
static const struct sch_obj o_proxy_jump = {.fields = f_proxy_jump};
static const struct sch_field f_kube_context[] = {F_STR_REQ("name"),
						 F_OBJ("proxy_jump", &o_proxy_jump), END};
static const struct sch_obj o_kube_context = {.fields = f_kube_context};
static const struct sch_field f_kubeconfig[] = {
	{.name = "filename", .kind = SCH_STR, .flags = SCH_NOTNULL},
	F_STR("data"),
	END,
};
static const struct sch_obj o_kubeconfig = {.fields = f_kubeconfig};
static const struct sch_excl x_kube[] = {
	{"contexts", "proxy_jump"}, {"contexts", "namespace"}, {NULL, NULL}};
static const struct sch_field f_kube[] = {
	{.name = "kubeconfig", .kind = SCH_OBJ, .flags = SCH_REQ, .obj = &o_kubeconfig},
	{.name = "contexts", .kind = SCH_LIST, .obj = &o_kube_context},
	F_OBJ("proxy_jump", &o_proxy_jump),
	F_STR("namespace"),
	END,
};
const struct sch_obj schema_kube = {.fields = f_kube, .excl = x_kube, .post = kube_post};

