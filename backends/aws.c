/* aws: the AWS provider (backend type "aws"): EC2 VMs, as dstack's aws backend makes them.
 *
 * Facts: reference providers-bigclouds.md §0.3 and §1. Calls go through awsapi (SigV4, XML,
 * endpoints, error codes); credentials through awscreds.
 *
 * - Check: STS GetCallerIdentity, then IAM GetInstanceProfile when iam_instance_profile is
 *   set (missing: invalid config), then, when the config names VPCs (vpc_name, vpc_ids,
 *   default_vpcs: false) or private subnets (public_ips: false), the VPC and subnet choice of
 *   every region (dstack's configurator does this too): a region without a usable subnet
 *   makes the config invalid, with the region and the reason.
 * - Offers: the gpuhunt catalog cut to the regions (dstack's 11 when the config sets none)
 *   and to dstack's instance families (plus experimental_instance_types), each offer's
 *   availability from Service Quotas (GetServiceQuota L-1216C47A standard, L-417A185B P,
 *   L-DB2E81BA G and VT on-demand vCPUs, every region at once, every 10 minutes as dstack's
 *   quota cache): a quota below the offer's
 *   vCPUs is no_quota (dstack only looks at quota > 0), a quota AWS does not tell is unknown,
 *   spot offers are unknown (their quotas are not checked, as in dstack). A refresh whose
 *   catalog and quotas are those of the cached offers is "unchanged".
 * - Create (§1.4): the image (os_images, else the newest available of AWS's Deep Learning
 *   Base OSS Nvidia Driver AMI for NVIDIA GPUs, Canonical's Ubuntu 22.04 otherwise: fleetfs
 *   runs no dstack shim, so dstack's own CPU image is not needed), the VPC (vpc_ids[region],
 *   else vpc_name, else the default VPC when default_vpcs), its subnets classified by their
 *   route tables (public: a route to an igw-; private: 0.0.0.0/0 through a NAT gateway,
 *   transit gateway or peering) as public_ips asks, the project's security group (found or
 *   made: SSH from anywhere, all traffic within the group), the fleet's cluster placement
 *   group for `placement: cluster` (members share its zone), the type's EFA interfaces
 *   (DescribeInstanceTypes: dstack's layout, an efa primary and one efa-only interface per
 *   further network card), then RunInstances zone after zone with the cloud-init user data, tags (Name, owner=fleetfs, fleetfs_project,
 *   fleetfs_fleet, fleetfs_instance; then the config's; then the fleet's; invalid ones
 *   dropped), the root volume of the offer's disk, spot (one-time, terminate on
 *   interruption), the IAM instance profile, and a ClientToken derived from the cloud name and
 *   the subnet: the HTTP client may repeat the call and AWS answers the same instance.
 *   Errors: InvalidParameterValue fails the offer (-EINVAL); a refusal of the credentials
 *   stops (-EACCES); no answer stops too (the outcome is unknown: the engine looks the name
 *   up); any other error of a zone tries the next zone; all zones failed is -ENOSPC.
 *   Images, subnets and security groups are remembered 10 minutes, zones for good.
 * - Get: DescribeInstances. An instance AWS does not know yet within a minute of its create
 *   is pending (AWS is eventually consistent: seconds); later it is gone (AWS shows
 *   terminated instances for about an hour, so a terminated one is seen as such first).
 *   The address is the public one with public_ips, else the private one; a running instance
 *   with several interfaces (no public address from AWS) gets an Elastic IP, tagged with its
 *   id so that it is found, not made twice. A terminated member of a placement group deletes
 *   the group when it is the last (InUse left to the last one).
 * - Terminate: the spot request cancelled (if any), then TerminateInstances (an unknown id is
 *   success), then the instance's Elastic IPs released.
 * - list_own: DescribeInstances filtered on tag owner=fleetfs in every region, all pages.
 *
 * backend_data: {"region", "zone", "public_ips", "created_at", "spot_request_id",
 * "placement_group", "eip"}: get and terminate need the region; the rest is what they do
 * more.
 */
#include "backend.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "schemapriv.h"
#include "../lib/ydoc.h"
#include "awsapi.h"
#include "../lib/enc.h"

#define AWS_OWNER_TAG "owner"
#define AWS_OWNER "fleetfs"
#define AWS_OWN_PREFIX "fleetfs-"
#define AWS_USER "ubuntu"
#define AWS_USER_TAG "fleetfs_user" /* the login user, for whoever finds the instance later */
#define AWS_SG_PREFIX "fleetfs_security_group_"
#define AWS_NET_TTL 600   /* subnets, security groups, images: dstack's 10 min caches */
#define AWS_VISIBLE_S 60 /* an instance unknown this long after its create is gone */
#define AWS_MAX_REGIONS 32
#define AWS_MAX_SUBNETS 64
#define AWS_MAX_TAGS 50   /* per resource */
#define AWS_USER_DATA_MAX 16384
#define AWS_PAGES_MAX 1000
#define AWS_ROOT_MIN_GB 8

#define QUOTA_STANDARD "L-1216C47A"
#define QUOTA_P "L-417A185B"
#define QUOTA_G "L-DB2E81BA"

static const char *const quota_codes[3] = {QUOTA_STANDARD, QUOTA_P, QUOTA_G};

/* dstack's _supported_instances: the families fleetfs offers, by name prefix. */
static const char *const families[] = {
	"m7i.",	 "c7i.", "r7i.", "t3.",	 "t2.small", "c5.",  "m5.",  "p6-b300.", "p6-b200.", "p5.",
	"p5e.",	 "p5en.", "p4d.", "p4de.", "g7.",      "g7e.", "g6.",  "g6e.",     "gr6.",     "g5.",
	"g4dn.", NULL};

/* ------------------------------------------------------------------ config */

/* The config's facts, read from the parsed config ctx->config (borrowed: valid during the
 * call). */
struct acfg {
	const struct ydoc *d;
	int root;
	const char *regions[AWS_MAX_REGIONS + 1]; /* configured, else dstack's defaults */
	size_t nregions;
	const char *vpc_name;    /* NULL: none */
	int vpc_ids;             /* map node, 0: none */
	bool default_vpcs, public_ips;
	const char *iam_profile; /* NULL: none */
	int os_images;           /* map node, 0: none */
	int tags;                /* map node, 0: none */
	int experimental;        /* seq node, 0: none */
};

static const char *yget_str(const struct ydoc *d, int map, const char *key)
{
	int n = map ? ydoc_map_get(d, map, key) : 0;
	const char *s = n ? ydoc_str(d, n) : NULL;
	return s && *s ? s : NULL;
}

static bool yget_bool(const struct ydoc *d, int map, const char *key, bool dflt)
{
	int n = map ? ydoc_map_get(d, map, key) : 0;
	bool b = dflt;
	if (n && ydoc_bool(d, n, &b))
		b = dflt;
	return b;
}

static void acfg_free(struct acfg *c)
{
	memset(c, 0, sizeof(*c));
}

static int acfg_load(const struct backend_ctx *ctx, struct acfg *c, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	if (!ctx->config)
		return backend_fail(err, errlen, -EINVAL, "aws: no config.yml");
	c->d = ctx->config->doc;
	c->root = ctx->config->root;
	int seq = ydoc_map_get(c->d, c->root, "regions");
	if (seq && ydoc_kind(c->d, seq) == Y_SEQ) {
		for (size_t i = 0; i < ydoc_len(c->d, seq); i++) {
			const char *r = ydoc_str(c->d, ydoc_seq_at(c->d, seq, i));
			if (!aws_region_ok(r)) {
				acfg_free(c);
				return backend_fail(err, errlen, -EINVAL,
						    "aws: regions[%zu] is not a region name", i);
			}
			if (c->nregions < AWS_MAX_REGIONS)
				c->regions[c->nregions++] = r;
		}
	}
	if (!c->nregions)
		for (size_t i = 0; aws_default_regions[i] && i < AWS_MAX_REGIONS; i++)
			c->regions[c->nregions++] = aws_default_regions[i];
	c->vpc_name = yget_str(c->d, c->root, "vpc_name");
	c->vpc_ids = ydoc_map_get(c->d, c->root, "vpc_ids");
	if (c->vpc_ids && ydoc_kind(c->d, c->vpc_ids) != Y_MAP)
		c->vpc_ids = 0;
	c->default_vpcs = yget_bool(c->d, c->root, "default_vpcs", true);
	c->public_ips = yget_bool(c->d, c->root, "public_ips", true);
	c->iam_profile = yget_str(c->d, c->root, "iam_instance_profile");
	c->os_images = ydoc_map_get(c->d, c->root, "os_images");
	if (c->os_images && ydoc_kind(c->d, c->os_images) != Y_MAP)
		c->os_images = 0;
	c->tags = ydoc_map_get(c->d, c->root, "tags");
	if (c->tags && ydoc_kind(c->d, c->tags) != Y_MAP)
		c->tags = 0;
	c->experimental = ydoc_map_get(c->d, c->root, "experimental_instance_types");
	if (c->experimental && ydoc_kind(c->d, c->experimental) != Y_SEQ)
		c->experimental = 0;
	return 0;
}

/* The config and AWS, for one operation: 0 (free c with acfg_free, close a), or -errno with
 * err and nothing to free. */
static int aws_open(const struct backend_ctx *ctx, struct acfg *c, struct aws_api *a,
		    char *err, size_t errlen)
{
	int r = acfg_load(ctx, c, err, errlen);
	if (r)
		return r;
	r = aws_api_open(a, ctx, err, errlen);
	if (r)
		acfg_free(c);
	return r;
}

/* Does the config name its networks (then the check validates them)? */
static bool acfg_custom_net(const struct acfg *c)
{
	return c->vpc_name || c->vpc_ids || !c->default_vpcs || !c->public_ips;
}

/* ------------------------------------------------------------------ helpers */

/* The memo's "base": the account's key id (another key may be another account). */
static const char *memo_base(const struct aws_api *a)
{
	return a->creds.access_key_id;
}

/* An AWS answer arrived (an error code), as opposed to no answer at all. */
static bool answered(const struct aws_api *a)
{
	return a->code[0] != '\0';
}

/* One EC2 action of one parameter whose answer only says it was done: 0, or -errno with
 * err; -ENOENT (gone already) counts as done. */
static int ec2_do(struct aws_api *a, const char *region, const char *action, const char *name,
		  const char *value, char *err, size_t errlen)
{
	struct aws_query q;
	xmlDoc *doc = NULL;
	awsq_init(&q, action);
	awsq_add(&q, name, value);
	int r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
	awsq_free(&q);
	xmlFreeDoc(doc);
	if (r == -ENOENT) {
		r = 0;
		err[0] = '\0';
	}
	return r;
}

/* Run fn(job) for each of n jobs at once, one thread each (jobs of size sz). */
static void run_parallel(void *jobs, size_t n, size_t sz, void *(*fn)(void *))
{
	pthread_t th[AWS_MAX_REGIONS];
	bool started[AWS_MAX_REGIONS] = {0};
	for (size_t i = 0; i < n && i < AWS_MAX_REGIONS; i++)
		started[i] = pthread_create(&th[i], NULL, fn, (char *)jobs + i * sz) == 0;
	for (size_t i = 0; i < n && i < AWS_MAX_REGIONS; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		else
			fn((char *)jobs + i * sz);
	}
}

/* ------------------------------------------------------------------ offers */

static bool supported(const struct acfg *c, const char *instance)
{
	for (size_t i = 0; families[i]; i++)
		if (!strncmp(instance, families[i], strlen(families[i])))
			return true;
	for (size_t i = 0; c->experimental && i < ydoc_len(c->d, c->experimental); i++) {
		const char *s = ydoc_str(c->d, ydoc_seq_at(c->d, c->experimental, i));
		if (s && !strcmp(s, instance))
			return true;
	}
	return false;
}

/* Which on-demand vCPU quota an instance type counts against (dstack: p -> P, g -> G and
 * VT, the rest standard). */
static int quota_of(const char *instance)
{
	return instance[0] == 'p' ? 1 : instance[0] == 'g' ? 2 : 0;
}

struct quota_job {
	struct aws_api a; /* a shallow copy: credentials shared, read only */
	const char *region;
	bool need[3], known[3];
	double value[3];
	int rc; /* -ECANCELED when fleetfs is stopping */
};

static void *quota_run(void *arg)
{
	struct quota_job *j = arg;
	for (int k = 0; k < 3 && !j->rc; k++) {
		char err[512];
		cJSON *body = NULL, *out = NULL;
		if (!j->need[k])
			continue;
		body = cJSON_CreateObject();
		cJSON_AddStringToObject(body, "ServiceCode", "ec2");
		cJSON_AddStringToObject(body, "QuotaCode", quota_codes[k]);
		int r = aws_sq_call(&j->a, j->region, "GetServiceQuota", body, &out, err,
				    sizeof(err));
		const cJSON *v = backend_jget(backend_jget(out, "Quota"), "Value");
		if (!r && cJSON_IsNumber(v)) {
			j->known[k] = true;
			j->value[k] = v->valuedouble;
		}
		if (r == -ECANCELED || (r && !answered(&j->a)))
			j->rc = r; /* stopping, or no answer from the region: its quotas unknown */
		/* anything else leaves the quota unknown, as dstack does for its expected errors
		 * (throttling, access denied, refused keys) and for the unexpected */
		cJSON_Delete(body);
		cJSON_Delete(out);
	}
	return NULL;
}

static void avail_digest(const struct quota_job *jobs, size_t n, unsigned char *md)
{
	struct buf b;
	unsigned int mdlen = 0;
	buf_init(&b, 1u << 20);
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 3; k++)
			(void)buf_printf(&b, "%s %d %d %.17g\n", jobs[i].region, k, jobs[i].known[k],
					 jobs[i].known[k] ? jobs[i].value[k] : 0.0);
	memset(md, 0, BK_DIGEST_MAX);
	(void)EVP_Digest(b.data ? b.data : "", b.len, md, &mdlen, EVP_sha256(), NULL);
	buf_free(&b);
}

/* Cut to the regions and families, then each offer's availability from the quotas. */
static void aws_shape_offers(const struct acfg *c, struct offer_list *l,
			     const struct quota_job *jobs, size_t njobs)
{
	offers_filter_regions(l, c->regions, c->nregions);
	const char *yes = offer_list_intern(l, "available");
	const char *noq = offer_list_intern(l, "no_quota");
	const char *unk = offer_list_intern(l, "unknown");
	size_t k = 0;
	for (size_t i = 0; i < l->n; i++) {
		struct offer *o = &l->v[i];
		if (!supported(c, o->instance))
			continue;
		o->availability = unk;
		int q = quota_of(o->instance);
		for (size_t j = 0; j < njobs && !o->spot; j++)
			if (!strcmp(jobs[j].region, o->region) && jobs[j].known[q])
				o->availability = jobs[j].value[q] >= o->cpus && jobs[j].value[q] > 0
							  ? yes
							  : noq;
		l->v[k++] = *o;
	}
	l->n = k;
}

static int aws_offers(const struct bk_offers_req *req, struct bk_offers_res *res, char *err,
		      size_t errlen)
{
	struct acfg c;
	struct aws_api a;
	struct quota_job jobs[AWS_MAX_REGIONS];
	unsigned char digest[BK_DIGEST_MAX];
	size_t n = 0;
	memset(res, 0, sizeof(*res));
	int r = acfg_load(&req->ctx, &c, err, errlen);
	if (r)
		return r;
	memset(jobs, 0, sizeof(jobs));
	bool have_creds = aws_api_open(&a, &req->ctx, err, errlen) == 0;
	err[0] = '\0';
	for (size_t i = 0; i < c.nregions; i++) {
		jobs[n].a = a;
		jobs[n].a.max_attempts = 2; /* availability is a hint: no long retries */
		jobs[n].region = c.regions[i];
		for (int k = 0; k < 3; k++)
			jobs[n].need[k] = have_creds;
		n++;
	}
	if (have_creds)
		run_parallel(jobs, n, sizeof(jobs[0]), quota_run);
	for (size_t i = 0; i < n; i++)
		if (jobs[i].rc == -ECANCELED)
			r = backend_fail(err, errlen, -ECANCELED, "aws: cancelled: fleetfs is stopping");
	avail_digest(jobs, n, digest);
	struct bk_offers_req cat = *req;
	if (!req->known_version || !backend_offers_seen(&req->ctx, req->known_version, digest))
		cat.known_version = "";
	if (!r)
		r = backend_catalog_offers(&cat, res, err, errlen);
	if (!r) {
		if (!res->unchanged)
			aws_shape_offers(&c, &res->list, jobs, n);
		backend_offers_remember(&req->ctx, res->version, digest);
	} else {
		bk_offers_res_free(res);
		memset(res, 0, sizeof(*res));
	}
	if (have_creds)
		aws_api_close(&a);
	acfg_free(&c);
	return r;
}

/* ------------------------------------------------------------------ check */

struct net {
	char vpc[64];
	size_t n;
	struct {
		char id[64];
		char zone[64];
	} subnets[AWS_MAX_SUBNETS];
};

static int aws_net(struct aws_api *a, const struct acfg *c, const char *region, struct net *net,
		   char *err, size_t errlen);

struct net_job {
	struct aws_api a;
	const struct acfg *c;
	const char *region;
	struct net net;
	int rc;
	char err[512];
};

static void *net_run(void *arg)
{
	struct net_job *j = arg;
	j->rc = aws_net(&j->a, j->c, j->region, &j->net, j->err, sizeof(j->err));
	return NULL;
}

static int aws_check(const struct backend_ctx *ctx, char *err, size_t errlen)
{
	struct acfg c;
	struct aws_api a;
	struct aws_query q;
	xmlDoc *doc = NULL;
	int r = aws_open(ctx, &c, &a, err, errlen);
	if (r)
		return r;
	awsq_init(&q, "GetCallerIdentity");
	r = aws_query(&a, AWS_STS, "us-east-1", &q, true, &doc, err, errlen);
	awsq_free(&q);
	xmlFreeDoc(doc);
	doc = NULL;
	if (!r && c.iam_profile) {
		awsq_init(&q, "GetInstanceProfile");
		awsq_add(&q, "InstanceProfileName", c.iam_profile);
		r = aws_query(&a, AWS_IAM, "us-east-1", &q, true, &doc, err, errlen);
		awsq_free(&q);
		xmlFreeDoc(doc);
		if (r == -ENOENT)
			r = backend_fail(err, errlen, -EINVAL,
					 "aws: iam_instance_profile %s: no such instance profile",
					 c.iam_profile);
	}
	if (!r && acfg_custom_net(&c)) {
		struct net_job *jobs = xcalloc(c.nregions, sizeof(*jobs));
		for (size_t i = 0; i < c.nregions; i++)
			jobs[i] = (struct net_job){.a = a, .c = &c, .region = c.regions[i]};
		run_parallel(jobs, c.nregions, sizeof(*jobs), net_run);
		for (size_t i = 0; i < c.nregions && !r; i++)
			if (jobs[i].rc) {
				r = jobs[i].rc == -ENOENT || jobs[i].rc == -EINVAL ? -EINVAL
										   : jobs[i].rc;
				fmt_cut(err, errlen, "%s", jobs[i].err);
			}
		free(jobs);
	}
	aws_api_close(&a);
	acfg_free(&c);
	return r;
}

/* ------------------------------------------------------------------ zones, VPCs, subnets */

/* The zones of region, comma-separated (remembered for good). */
static int aws_zones(struct aws_api *a, const char *region, char *zones, size_t n, char *err,
		     size_t errlen)
{
	char what[128];
	xmlDoc *doc = NULL;
	struct aws_query q;
	if (fmt(what, sizeof(what), "zones/%s", region))
		return backend_fail(err, errlen, -EINVAL, "aws: region name too long");
	if (backend_memo_get(a->ctx, memo_base(a), what, zones, n))
		return 0;
	awsq_init(&q, "DescribeAvailabilityZones");
	const char *rv[] = {region, NULL};
	awsq_filter(&q, 1, "region-name", rv);
	int r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
	awsq_free(&q);
	if (r)
		return r;
	struct buf b;
	buf_init(&b, 1u << 20);
	xmlNode *set = awsx_child(awsx_root(doc), "availabilityZoneInfo");
	for (xmlNode *it = awsx_first(set); it; it = awsx_next(it)) {
		char z[64], st[32];
		awsx_text(it, "zoneName", z, sizeof(z));
		awsx_text(it, "zoneState", st, sizeof(st));
		if (z[0] && (!st[0] || !strcmp(st, "available")))
			(void)buf_printf(&b, "%s%s", b.len ? "," : "", z);
	}
	xmlFreeDoc(doc);
	int cut = fmt(zones, n, "%.*s", (int)b.len, b.data ? b.data : "");
	buf_free(&b);
	if (cut)
		return backend_fail(err, errlen, -EPROTO, "aws: %s: the zone list is too long",
				    region);
	if (!zones[0])
		return backend_fail(err, errlen, -ENOSPC, "aws: %s has no available zone", region);
	backend_memo_put(a->ctx, memo_base(a), what, zones);
	return 0;
}

static bool in_list(const char *list, const char *word)
{
	size_t k = strlen(word);
	for (const char *p = list; p && *p;) {
		size_t n = strcspn(p, ",");
		if (n == k && !strncmp(p, word, k))
			return true;
		p += n + (p[n] == ',');
	}
	return false;
}

/* The VPC of region as the config asks: vpc_ids[region], else (default_vpcs) the one named
 * vpc_name, else the default VPC. -EINVAL when the config names none for the region,
 * -ENOENT when AWS has none. */
static int aws_vpc(struct aws_api *a, const struct acfg *c, const char *region, char *vpc,
		   size_t n, char *err, size_t errlen)
{
	const char *id = c->vpc_ids ? yget_str(c->d, c->vpc_ids, region) : NULL;
	struct aws_query q;
	xmlDoc *doc = NULL;
	const char *v[] = {NULL, NULL};
	if (!id && !c->default_vpcs)
		return backend_fail(err, errlen, -EINVAL,
				    "aws: %s: no VPC configured (vpc_ids has no entry and "
				    "default_vpcs is false)", region);
	awsq_init(&q, "DescribeVpcs");
	if (id) {
		v[0] = id;
		awsq_filter(&q, 1, "vpc-id", v);
	} else if (c->vpc_name) {
		v[0] = c->vpc_name;
		awsq_filter(&q, 1, "tag:Name", v);
	} else {
		v[0] = "true";
		awsq_filter(&q, 1, "isDefault", v);
	}
	int r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
	awsq_free(&q);
	if (r == -ENOENT)
		r = 0, doc = NULL; /* InvalidVpcID.NotFound: as no VPC */
	if (r)
		return r;
	xmlNode *it = awsx_first(awsx_child(awsx_root(doc), "vpcSet"));
	if (it)
		awsx_text(it, "vpcId", vpc, n);
	xmlFreeDoc(doc);
	if (!it || !vpc[0])
		return backend_fail(err, errlen, -ENOENT, "aws: %s: %s%s%s", region,
				    id ? "no VPC " : c->vpc_name ? "no VPC named " : "no default VPC",
				    id ? id : c->vpc_name ? c->vpc_name : "",
				    id || c->vpc_name ? "" : " (set vpc_name or vpc_ids)");
	return 0;
}

/* How a route table lets a subnet out: 1 public (a route to an internet gateway), 2 private
 * with egress (0.0.0.0/0 through NAT, transit gateway or peering), 0 neither. */
static int table_egress(const xmlNode *table)
{
	int kind = 0;
	for (xmlNode *rt = awsx_first(awsx_child(table, "routeSet")); rt; rt = awsx_next(rt)) {
		char gw[64], dst[64], nat[64], tgw[64], pcx[64];
		awsx_text(rt, "gatewayId", gw, sizeof(gw));
		awsx_text(rt, "destinationCidrBlock", dst, sizeof(dst));
		awsx_text(rt, "natGatewayId", nat, sizeof(nat));
		awsx_text(rt, "transitGatewayId", tgw, sizeof(tgw));
		awsx_text(rt, "vpcPeeringConnectionId", pcx, sizeof(pcx));
		if (!strncmp(gw, "igw-", 4))
			return 1;
		if (!strcmp(dst, "0.0.0.0/0") && (nat[0] || tgw[0] || pcx[0]))
			kind = 2;
	}
	return kind;
}

/* The egress kind of subnet: its own route tables, else the VPC's main one (§1.4 step 3). */
static int subnet_egress(xmlNode *tables, const char *subnet)
{
	int kind = 0;
	bool own = false;
	for (xmlNode *t = awsx_first(tables); t; t = awsx_next(t))
		for (xmlNode *as = awsx_first(awsx_child(t, "associationSet")); as;
		     as = awsx_next(as)) {
			char s[64];
			awsx_text(as, "subnetId", s, sizeof(s));
			if (!strcmp(s, subnet)) {
				own = true;
				int k = table_egress(t);
				kind = k > kind ? k : kind;
			}
		}
	if (own)
		return kind;
	for (xmlNode *t = awsx_first(tables); t; t = awsx_next(t))
		for (xmlNode *as = awsx_first(awsx_child(t, "associationSet")); as;
		     as = awsx_next(as)) {
			char m[8];
			awsx_text(as, "main", m, sizeof(m));
			if (!strcmp(m, "true"))
				return table_egress(t);
		}
	return 0;
}

/* 0, or -ENAMETOOLONG when it does not fit out (then it is not remembered). */
static int net_encode(const struct net *net, char *out, size_t n)
{
	struct buf b;
	buf_init(&b, 1u << 20);
	(void)buf_printf(&b, "%s", net->vpc);
	for (size_t i = 0; i < net->n; i++)
		(void)buf_printf(&b, ",%s:%s", net->subnets[i].id, net->subnets[i].zone);
	int r = fmt(out, n, "%.*s", (int)b.len, b.data);
	buf_free(&b);
	return r;
}

/* 0, or -ENAMETOOLONG when a part does not fit net (then it is looked up again). */
static int net_decode(const char *s, struct net *net)
{
	memset(net, 0, sizeof(*net));
	size_t k = strcspn(s, ",");
	if (fmt(net->vpc, sizeof(net->vpc), "%.*s", (int)k, s))
		return -ENAMETOOLONG;
	for (const char *p = s + k; *p == ',' && net->n < AWS_MAX_SUBNETS;) {
		p++;
		size_t m = strcspn(p, ",");
		const char *colon = memchr(p, ':', m);
		if (colon) {
			if (fmt(net->subnets[net->n].id, sizeof(net->subnets[0].id), "%.*s",
				(int)(colon - p), p) ||
			    fmt(net->subnets[net->n].zone, sizeof(net->subnets[0].zone), "%.*s",
				(int)(p + m - colon - 1), colon + 1))
				return -ENAMETOOLONG;
			net->n++;
		}
		p += m;
	}
	return 0;
}

/* The VPC and the subnets (with their zones) of region that fleetfs may launch into: public
 * ones with public_ips, private ones with egress otherwise. Remembered 10 minutes. */
static int aws_net(struct aws_api *a, const struct acfg *c, const char *region, struct net *net,
		   char *err, size_t errlen)
{
	char what[512], val[1024];
	const char *id = c->vpc_ids ? yget_str(c->d, c->vpc_ids, region) : NULL;
	memset(net, 0, sizeof(*net));
	if (fmt(what, sizeof(what), "net/%s/%d/%s/%s/%d", region, c->public_ips, id ? id : "",
		c->vpc_name ? c->vpc_name : "", c->default_vpcs))
		return backend_fail(err, errlen, -EINVAL, "aws: %s: vpc_ids or vpc_name too long",
				    region);
	if (backend_memo_get(a->ctx, memo_base(a), what, val, sizeof(val))) {
		if (!net_decode(val, net))
			return 0;
		memset(net, 0, sizeof(*net));
	}
	int r = aws_vpc(a, c, region, net->vpc, sizeof(net->vpc), err, errlen);
	if (r)
		return r;
	struct aws_query q;
	xmlDoc *subs = NULL, *tables = NULL;
	const char *v[] = {net->vpc, NULL};
	awsq_init(&q, "DescribeSubnets");
	awsq_filter(&q, 1, "vpc-id", v);
	r = aws_query(a, AWS_EC2, region, &q, true, &subs, err, errlen);
	awsq_free(&q);
	if (!r) {
		awsq_init(&q, "DescribeRouteTables");
		awsq_filter(&q, 1, "vpc-id", v);
		r = aws_query(a, AWS_EC2, region, &q, true, &tables, err, errlen);
		awsq_free(&q);
	}
	size_t all = 0;
	xmlNode *tset = awsx_child(awsx_root(tables), "routeTableSet");
	for (xmlNode *s = r ? NULL : awsx_first(awsx_child(awsx_root(subs), "subnetSet")); s;
	     s = awsx_next(s)) {
		char sid[64], zone[64], state[32];
		awsx_text(s, "subnetId", sid, sizeof(sid));
		awsx_text(s, "availabilityZone", zone, sizeof(zone));
		awsx_text(s, "state", state, sizeof(state));
		if (!sid[0] || !zone[0] || (state[0] && strcmp(state, "available")))
			continue;
		all++;
		if (subnet_egress(tset, sid) != (c->public_ips ? 1 : 2) ||
		    net->n == AWS_MAX_SUBNETS)
			continue;
		/* fits: the same sizes */
		fmt_cut(net->subnets[net->n].id, sizeof(net->subnets[0].id), "%s", sid);
		fmt_cut(net->subnets[net->n].zone, sizeof(net->subnets[0].zone), "%s", zone);
		net->n++;
	}
	xmlFreeDoc(subs);
	xmlFreeDoc(tables);
	if (r)
		return r;
	if (!net->n)
		return backend_fail(err, errlen, -ENOENT,
				    "aws: %s: VPC %s has no %s subnet (%zu subnets; %s)", region,
				    net->vpc, c->public_ips ? "public" : "private", all,
				    c->public_ips ? "public_ips needs a route to an internet gateway"
						  : "public_ips: false needs a 0.0.0.0/0 route "
						    "through a NAT gateway, transit gateway or "
						    "peering");
	if (!net_encode(net, val, sizeof(val))) /* else looked up again next time */
		backend_memo_put_ttl(a->ctx, memo_base(a), what, val, AWS_NET_TTL);
	return 0;
}

/* ------------------------------------------------------------------ images */

struct image {
	char id[64];
	char root_device[64];
	char user[32]; /* as struct bk_vm's username */
};

/* The newest available image named like pattern owned by owner (for arch when set). */
static int aws_image_lookup(struct aws_api *a, const char *region, const char *pattern,
			    const char *owner, const char *arch, struct image *img, char *err,
			    size_t errlen)
{
	char what[600], val[256];
	if (fmt(what, sizeof(what), "ami/%s/%s/%s/%s", region, owner, arch ? arch : "", pattern))
		return backend_fail(err, errlen, -EINVAL, "aws: %s: image name or owner too long",
				    region);
	if (backend_memo_get(a->ctx, memo_base(a), what, val, sizeof(val))) {
		size_t k = strcspn(val, " ");
		/* fits: remembered below from fields of these sizes */
		fmt_cut(img->id, sizeof(img->id), "%.*s", (int)k, val);
		fmt_cut(img->root_device, sizeof(img->root_device), "%s",
			val[k] ? val + k + 1 : "");
		return 0;
	}
	struct aws_query q;
	xmlDoc *doc = NULL;
	awsq_init(&q, "DescribeImages");
	awsq_add(&q, "Owner.1", owner);
	const char *nv[] = {pattern, NULL}, *av[] = {arch, NULL};
	awsq_filter(&q, 1, "name", nv);
	if (arch)
		awsq_filter(&q, 2, "architecture", av);
	int r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
	awsq_free(&q);
	if (r)
		return r;
	char best[64] = "", when[64] = "", dev[64] = "";
	for (xmlNode *it = awsx_first(awsx_child(awsx_root(doc), "imagesSet")); it;
	     it = awsx_next(it)) {
		char id[64], st[32], cd[64], rd[64];
		awsx_text(it, "imageId", id, sizeof(id));
		awsx_text(it, "imageState", st, sizeof(st));
		awsx_text(it, "creationDate", cd, sizeof(cd));
		awsx_text(it, "rootDeviceName", rd, sizeof(rd));
		if (id[0] && !strcmp(st, "available") && strcmp(cd, when) >= 0) {
			/* fits: the same sizes; ISO dates sort as text */
			fmt_cut(best, sizeof(best), "%s", id);
			fmt_cut(when, sizeof(when), "%s", cd);
			fmt_cut(dev, sizeof(dev), "%s", rd);
		}
	}
	xmlFreeDoc(doc);
	if (!best[0])
		return backend_fail(err, errlen, -ENOENT,
				    "aws: %s: no available image named %s owned by %s", region,
				    pattern, owner);
	/* fits: the same sizes, and val holds 63 + 1 + 63 */
	fmt_cut(img->id, sizeof(img->id), "%s", best);
	fmt_cut(img->root_device, sizeof(img->root_device), "%s", dev);
	fmt_cut(val, sizeof(val), "%s %s", best, dev);
	backend_memo_put_ttl(a->ctx, memo_base(a), what, val, AWS_NET_TTL);
	return 0;
}

/* The image for offer o in region: os_images (cpu or nvidia), else AWS's Deep Learning Base
 * AMI with NVIDIA's driver for NVIDIA GPUs, else Canonical's Ubuntu 22.04. -EINVAL when
 * os_images lacks the category. */
static int aws_image(struct aws_api *a, const struct acfg *c, const struct offer *o,
		     struct image *img, char *err, size_t errlen)
{
	bool nvidia = o->gpu_count > 0 && (!o->gpu_vendor || !*o->gpu_vendor ||
					   !strcasecmp(o->gpu_vendor, "nvidia"));
	bool arm = o->cpu_arch && !strcmp(o->cpu_arch, "arm");
	const char *arch = arm ? "arm64" : "x86_64";
	memset(img, 0, sizeof(*img));
	if (o->gpu_count > 0 && !nvidia)
		return backend_fail(err, errlen, -EINVAL, "aws: no image for %s GPUs",
				    o->gpu_vendor);
	if (c->os_images) {
		const char *cat = nvidia ? "nvidia" : "cpu";
		int m = ydoc_map_get(c->d, c->os_images, cat);
		const char *name = yget_str(c->d, m, "name"), *owner = yget_str(c->d, m, "owner");
		const char *user = yget_str(c->d, m, "user");
		if (!m || !name)
			return backend_fail(err, errlen, -EINVAL,
					    "aws: os_images has no %s image for %s", cat,
					    o->instance);
		if (fmt(img->user, sizeof(img->user), "%s", user ? user : AWS_USER))
			return backend_fail(err, errlen, -EINVAL,
					    "aws: os_images: the %s image's user is too long", cat);
		return aws_image_lookup(a, o->region, name, owner ? owner : "self", NULL, img, err,
					errlen);
	}
	fmt_cut(img->user, sizeof(img->user), AWS_USER); /* fits: a literal */
	if (nvidia)
		return aws_image_lookup(
			a, o->region,
			arm ? "Deep Learning ARM64 Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
			    : "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
			"898082745236", arch, img, err, errlen);
	return aws_image_lookup(a, o->region,
				arm ? "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-arm64-server-*"
				    : "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
				"099720109477", arch, img, err, errlen);
}

/* ------------------------------------------------------------------ security group */

struct rule {
	const char *dir;   /* "ipPermissions" or "ipPermissionsEgress" */
	const char *proto; /* "tcp", "-1" */
	const char *port;  /* "22", NULL for all */
	bool self;         /* from/to the group itself, else 0.0.0.0/0 */
};

static const struct rule sg_rules[] = {
	{"ipPermissions", "tcp", "22", false},
	{"ipPermissions", "-1", NULL, true},
	{"ipPermissionsEgress", "-1", NULL, false},
	{"ipPermissionsEgress", "-1", NULL, true},
};

static bool rule_present(const xmlNode *sg, const struct rule *ru, const char *gid)
{
	for (xmlNode *p = awsx_first(awsx_child(sg, ru->dir)); p; p = awsx_next(p)) {
		char proto[16], from[16];
		awsx_text(p, "ipProtocol", proto, sizeof(proto));
		awsx_text(p, "fromPort", from, sizeof(from));
		if (strcmp(proto, ru->proto) || (ru->port && strcmp(from, ru->port)))
			continue;
		const char *set = ru->self ? "groups" : "ipRanges";
		for (xmlNode *g = awsx_first(awsx_child(p, set)); g; g = awsx_next(g)) {
			char v[64];
			awsx_text(g, ru->self ? "groupId" : "cidrIp", v, sizeof(v));
			if (!strcmp(v, ru->self ? gid : "0.0.0.0/0"))
				return true;
		}
	}
	return false;
}

static void tag_spec(struct aws_query *q, int n, const char *type, const char *const *kv)
{
	awsq_addf(q, type, "TagSpecification.%d.ResourceType", n);
	for (int i = 0; kv[2 * i]; i++) {
		awsq_addf(q, kv[2 * i], "TagSpecification.%d.Tag.%d.Key", n, i + 1);
		awsq_addf(q, kv[2 * i + 1], "TagSpecification.%d.Tag.%d.Value", n, i + 1);
	}
}

static int sg_describe(struct aws_api *a, const char *region, const char *name, const char *vpc,
		       xmlDoc **doc, xmlNode **sg, char *err, size_t errlen)
{
	struct aws_query q;
	const char *nv[] = {name, NULL}, *vv[] = {vpc, NULL};
	awsq_init(&q, "DescribeSecurityGroups");
	awsq_filter(&q, 1, "group-name", nv);
	awsq_filter(&q, 2, "vpc-id", vv);
	int r = aws_query(a, AWS_EC2, region, &q, true, doc, err, errlen);
	awsq_free(&q);
	*sg = r ? NULL : awsx_first(awsx_child(awsx_root(*doc), "securityGroupInfo"));
	return r;
}

/* Add the rules of sg_rules in direction dir (ipPermissions, ipPermissionsEgress) that
 * group gid lacks, all in one call. sg: the group as described (NULL: just made, so it has
 * only AWS's default rule, all traffic out to anywhere). */
static int sg_authorize(struct aws_api *a, const char *region, const xmlNode *sg,
			const char *gid, const char *dir, char *err, size_t errlen)
{
	struct aws_query q;
	bool in = !strcmp(dir, "ipPermissions");
	int k = 0;
	awsq_init(&q, in ? "AuthorizeSecurityGroupIngress" : "AuthorizeSecurityGroupEgress");
	awsq_add(&q, "GroupId", gid);
	for (size_t i = 0; i < sizeof(sg_rules) / sizeof(sg_rules[0]); i++) {
		const struct rule *ru = &sg_rules[i];
		bool dflt = !in && !ru->self; /* the default egress rule */
		if (strcmp(ru->dir, dir) || (sg ? rule_present(sg, ru, gid) : dflt))
			continue;
		k++;
		awsq_addf(&q, ru->proto, "IpPermissions.%d.IpProtocol", k);
		if (ru->port) {
			awsq_addf(&q, ru->port, "IpPermissions.%d.FromPort", k);
			awsq_addf(&q, ru->port, "IpPermissions.%d.ToPort", k);
		}
		if (ru->self)
			awsq_addf(&q, gid, "IpPermissions.%d.Groups.1.GroupId", k);
		else
			awsq_addf(&q, "0.0.0.0/0", "IpPermissions.%d.IpRanges.1.CidrIp", k);
	}
	int r = 0;
	if (k) {
		xmlDoc *doc = NULL;
		r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
		xmlFreeDoc(doc);
		if (r == -EINVAL && !strcmp(a->code, "InvalidPermission.Duplicate"))
			r = 0; /* added meanwhile: it is there */
	}
	awsq_free(&q);
	return r;
}

/* The project's security group in vpc, made and completed as needed (remembered 10 min). */
static int aws_sg(struct aws_api *a, const char *region, const char *vpc, const char *project,
		  char *gid, size_t n, char *err, size_t errlen)
{
	char name[256], what[512];
	if (fmt(name, sizeof(name), AWS_SG_PREFIX "%s", project))
		return backend_fail(err, errlen, -EINVAL, "aws: project name too long");
	for (char *p = name; *p; p++)
		*p = *p == '-' ? '_' : (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : *p;
	if (fmt(what, sizeof(what), "sg/%s/%s/%s", region, vpc, name))
		return backend_fail(err, errlen, -EINVAL, "aws: %s: VPC id too long", region);
	if (backend_memo_get(a->ctx, memo_base(a), what, gid, n))
		return 0;
	xmlDoc *doc = NULL;
	xmlNode *sg = NULL;
	gid[0] = '\0';
	int r = sg_describe(a, region, name, vpc, &doc, &sg, err, errlen);
	if (!r && sg) {
		awsx_text(sg, "groupId", gid, n);
	} else if (!r) {
		struct aws_query q;
		xmlDoc *cd = NULL;
		const char *tags[] = {AWS_OWNER_TAG, AWS_OWNER, "fleetfs_project", project, NULL};
		awsq_init(&q, "CreateSecurityGroup");
		awsq_add(&q, "GroupName", name);
		awsq_add(&q, "GroupDescription", "Made by fleetfs: SSH in, all traffic within");
		awsq_add(&q, "VpcId", vpc);
		tag_spec(&q, 1, "security-group", tags);
		r = aws_query(a, AWS_EC2, region, &q, false, &cd, err, errlen);
		awsq_free(&q);
		if (!r)
			awsx_text(awsx_root(cd), "groupId", gid, n);
		xmlFreeDoc(cd);
		if (r == -EINVAL && !strcmp(a->code, "InvalidGroup.Duplicate")) {
			/* made meanwhile by another fleetfs: read it as it is */
			xmlFreeDoc(doc);
			doc = NULL;
			r = sg_describe(a, region, name, vpc, &doc, &sg, err, errlen);
			if (!r && sg)
				awsx_text(sg, "groupId", gid, n);
		}
		if (!r && !gid[0])
			r = backend_fail(err, errlen, -EPROTO,
					 "aws: security group %s: no group id", name);
	}
	if (!r)
		r = sg_authorize(a, region, sg, gid, "ipPermissions", err, errlen);
	if (!r)
		r = sg_authorize(a, region, sg, gid, "ipPermissionsEgress", err, errlen);
	xmlFreeDoc(doc);
	if (!r)
		backend_memo_put_ttl(a->ctx, memo_base(a), what, gid, AWS_NET_TTL);
	return r;
}

/* ------------------------------------------------------------------ placement groups */

/* Make the cluster placement group (made already is fine) and find the zone its live members
 * are in ("" when none). */
static int aws_pg(struct aws_api *a, const char *region, const char *name, const char *project,
		  char *zone, size_t n, char *err, size_t errlen)
{
	struct aws_query q;
	xmlDoc *doc = NULL;
	const char *tags[] = {AWS_OWNER_TAG, AWS_OWNER, "fleetfs_project", project, NULL};
	zone[0] = '\0';
	awsq_init(&q, "CreatePlacementGroup");
	awsq_add(&q, "GroupName", name);
	awsq_add(&q, "Strategy", "cluster");
	tag_spec(&q, 1, "placement-group", tags);
	int r = aws_query(a, AWS_EC2, region, &q, false, &doc, err, errlen);
	awsq_free(&q);
	xmlFreeDoc(doc);
	doc = NULL;
	if (r == -EINVAL && !strcmp(a->code, "InvalidPlacementGroup.Duplicate"))
		r = 0;
	if (r)
		return r;
	const char *gv[] = {name, NULL};
	const char *sv[] = {"pending", "running", NULL};
	awsq_init(&q, "DescribeInstances");
	awsq_filter(&q, 1, "placement-group-name", gv);
	awsq_filter(&q, 2, "instance-state-name", sv);
	r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
	awsq_free(&q);
	for (xmlNode *res = r ? NULL : awsx_first(awsx_child(awsx_root(doc), "reservationSet"));
	     res && !zone[0]; res = awsx_next(res)) {
		xmlNode *inst = awsx_first(awsx_child(res, "instancesSet"));
		if (inst)
			awsx_text(inst, "placement/availabilityZone", zone, n);
	}
	xmlFreeDoc(doc);
	return r;
}

/* ------------------------------------------------------------------ instances */

static enum bk_vm_state vm_state(const char *s)
{
	if (!strcmp(s, "running"))
		return BK_VM_RUNNING;
	if (!strcmp(s, "shutting-down"))
		return BK_VM_TERMINATING;
	if (!strcmp(s, "terminated"))
		return BK_VM_TERMINATED;
	if (!strcmp(s, "stopping") || !strcmp(s, "stopped"))
		return BK_VM_STOPPED;
	return BK_VM_PENDING;
}

/* An instance element (RunInstances' or DescribeInstances') into out. */
static int vm_from(const xmlNode *inst, const char *region, bool public_ips, struct bk_vm *out,
		   char *err, size_t errlen)
{
	char pub[64], priv[64];
	memset(out, 0, sizeof(*out));
	awsx_text(inst, "instanceId", out->id, sizeof(out->id));
	if (!backend_id_ok(out->id))
		return backend_fail(err, errlen, -EPROTO, "aws: an instance without a usable id");
	awsx_text(inst, "instanceState/name", out->status, sizeof(out->status));
	out->state = vm_state(out->status);
	awsx_text(inst, "ipAddress", pub, sizeof(pub));
	awsx_text(inst, "privateIpAddress", priv, sizeof(priv));
	/* fits: the same sizes */
	fmt_cut(out->ip, sizeof(out->ip), "%s", public_ips ? pub : priv);
	fmt_cut(out->internal_ip, sizeof(out->internal_ip), "%s", priv);
	if (fmt(out->region, sizeof(out->region), "%s", region))
		return backend_fail(err, errlen, -EINVAL, "aws: region name too long");
	awsx_text(inst, "instanceType", out->instance, sizeof(out->instance));
	awsx_text(inst, "placement/availabilityZone", out->zone, sizeof(out->zone));
	fmt_cut(out->username, sizeof(out->username), AWS_USER); /* fits: a literal */
	for (xmlNode *t = awsx_first(awsx_child(inst, "tagSet")); t; t = awsx_next(t)) {
		char k[32];
		awsx_text(t, "key", k, sizeof(k));
		if (!strcmp(k, "Name"))
			awsx_text(t, "value", out->name, sizeof(out->name));
		else if (!strcmp(k, AWS_USER_TAG))
			awsx_text(t, "value", out->username, sizeof(out->username));
	}
	out->ssh_port = 22;
	return 0;
}

/* How many network interfaces an instance element lists. */
static int network_interfaces(const xmlNode *inst)
{
	int n = 0;
	for (xmlNode *it = awsx_first(awsx_child(inst, "networkInterfaceSet")); it;
	     it = awsx_next(it))
		n++;
	return n;
}

/* backend_data of a VM: 0, or -EPROTO (with err) when it does not fit. */
static int vm_data(struct bk_vm *vm, const char *region, const char *zone, bool public_ips,
		   const char *spot_req, const char *pg, bool eip, char *err, size_t errlen)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "region", region);
	if (zone && *zone)
		cJSON_AddStringToObject(d, "zone", zone);
	cJSON_AddBoolToObject(d, "public_ips", public_ips);
	cJSON_AddNumberToObject(d, "created_at", (double)time(NULL));
	if (spot_req && *spot_req)
		cJSON_AddStringToObject(d, "spot_request_id", spot_req);
	if (pg && *pg)
		cJSON_AddStringToObject(d, "placement_group", pg);
	if (eip)
		cJSON_AddBoolToObject(d, "eip", true);
	char *s = cJSON_PrintUnformatted(d);
	int r = fmt(vm->backend_data, sizeof(vm->backend_data), "%s", s ? s : "{}");
	cJSON_free(s);
	cJSON_Delete(d);
	if (r)
		return backend_fail(err, errlen, -EPROTO,
				    "aws: %s: the instance's data is too long", vm->id);
	return 0;
}

struct vmdata {
	char region[64], zone[64], spot[64], pg[256];
	bool public_ips, eip;
	double created_at;
};

static int vmdata_parse(const char *bd, struct vmdata *v, char *err, size_t errlen)
{
	cJSON *d = bd && *bd ? cJSON_Parse(bd) : NULL;
	const cJSON *pub = backend_jget(d, "public_ips"), *at = backend_jget(d, "created_at");
	memset(v, 0, sizeof(*v));
	bool cut = fmt(v->region, sizeof(v->region), "%s", backend_jstr(d, "region") ?: "") ||
		   fmt(v->zone, sizeof(v->zone), "%s", backend_jstr(d, "zone") ?: "") ||
		   fmt(v->spot, sizeof(v->spot), "%s", backend_jstr(d, "spot_request_id") ?: "") ||
		   fmt(v->pg, sizeof(v->pg), "%s", backend_jstr(d, "placement_group") ?: "");
	v->public_ips = !cJSON_IsFalse(pub);
	v->eip = cJSON_IsTrue(backend_jget(d, "eip"));
	v->created_at = cJSON_IsNumber(at) ? at->valuedouble : 0;
	cJSON_Delete(d);
	if (cut)
		return backend_fail(err, errlen, -EINVAL, "aws: the instance's data is too long");
	if (!aws_region_ok(v->region))
		return backend_fail(err, errlen, -EINVAL, "aws: the instance's data has no region");
	return 0;
}

/* The tags of a new instance: fleetfs's, then the config's, then the fleet's, each only
 * where the key is not taken yet; invalid ones dropped. kv is a NULL-terminated key, value
 * list pointing into req, c and own (the caller's buffers). */
static size_t instance_tags(const struct bk_create_req *req, const struct acfg *c,
			    const char *user, char own[][80], const char **kv, size_t max)
{
	size_t n = 0;
	fmt_cut(own[0], 80, "%u", req->num); /* fits: a number */
	const char *ours[] = {"Name", req->cloud_name, AWS_OWNER_TAG, AWS_OWNER,
			      "fleetfs_project", req->project ? req->project : "",
			      "fleetfs_fleet", req->fleet ? req->fleet : "",
			      "fleetfs_instance", own[0], AWS_USER_TAG, user};
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i += 2) {
		kv[2 * n] = ours[i];
		kv[2 * n + 1] = ours[i + 1];
		n++;
	}
	size_t nc = c->tags ? ydoc_len(c->d, c->tags) : 0;
	for (size_t i = 0; i < nc + req->ntags && n < max; i++) {
		const char *k, *v;
		if (i < nc) {
			k = ydoc_str(c->d, ydoc_map_key(c->d, c->tags, i));
			v = ydoc_str(c->d, ydoc_map_val(c->d, c->tags, i));
		} else {
			k = req->tags[i - nc].key;
			v = req->tags[i - nc].value;
		}
		bool taken = false;
		for (size_t j = 0; j < n && !taken; j++)
			taken = k && !strcmp(kv[2 * j], k);
		if (taken || !aws_tag_valid(k, v ? v : ""))
			continue;
		kv[2 * n] = k;
		kv[2 * n + 1] = v ? v : "";
		n++;
	}
	kv[2 * n] = NULL;
	return n;
}

/* A client token for this name in this subnet: the same create repeated gets the same
 * instance; another subnet is another request. */
static void client_token(const char *name, const char *subnet, char *out, size_t n)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char *s = xasprintf("%s\n%s", name, subnet);
	(void)EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL);
	free(s);
	(void)hex_encode(md, mdlen < 20 ? mdlen : 20, out, n);
}

/* ------------------------------------------------------------------ EFA */

/* The EFA interfaces an instance type takes (NetworkInfo.EfaInfo.MaximumEfaInterfaces; 0
 * without EFA), remembered for good. */
static int aws_efa(struct aws_api *a, const char *region, const char *type, int *max, char *err,
		   size_t errlen)
{
	char what[160], val[16];
	*max = 0;
	if (fmt(what, sizeof(what), "efa/%s/%s", region, type))
		return backend_fail(err, errlen, -EINVAL, "aws: %s: instance type name too long",
				    region);
	long long v = 0;
	if (backend_memo_get(a->ctx, memo_base(a), what, val, sizeof(val))) {
		*max = num_parse_ll(val, 0, 1024, &v) ? 0 : (int)v;
		return 0;
	}
	struct aws_query q;
	xmlDoc *doc = NULL;
	const char *yes[] = {"true", NULL};
	awsq_init(&q, "DescribeInstanceTypes");
	awsq_add(&q, "InstanceType.1", type);
	awsq_filter(&q, 1, "network-info.efa-supported", yes);
	int r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
	awsq_free(&q);
	if (r == -EINVAL && !strcmp(a->code, "InvalidInstanceType"))
		r = 0; /* dstack: no EFA; RunInstances says what is wrong with the type */
	if (r)
		return r;
	xmlNode *it = awsx_first(awsx_child(awsx_root(doc), "instanceTypeSet"));
	if (it && awsx_text(it, "networkInfo/efaInfo/maximumEfaInterfaces", val, sizeof(val)) &&
	    !num_parse_ll(val, 0, 1024, &v))
		*max = (int)v;
	xmlFreeDoc(doc);
	fmt_cut(val, sizeof(val), "%d", *max); /* fits: a number */
	backend_memo_put(a->ctx, memo_base(a), what, val);
	return 0;
}

/* dstack's network interfaces for an EFA type: the primary is efa (plain on types whose
 * first network card has no EFA: p6-b300), and with more than one EFA interface, one
 * efa-only interface per further network card (p5.48xlarge: efa on every fourth card). */
static bool efa_on_primary(const char *type)
{
	return strncmp(type, "p6-b300.", 8) != 0;
}

static void add_nics(struct aws_query *q, const char *type, int efa_max, const char *subnet,
		     const char *sg, bool public_ips)
{
	bool multi = efa_max > 1, primary = efa_on_primary(type);
	awsq_add(q, "NetworkInterface.1.DeviceIndex", "0");
	awsq_add(q, "NetworkInterface.1.SubnetId", subnet);
	awsq_add(q, "NetworkInterface.1.SecurityGroupId.1", sg);
	/* AWS gives no public address to an instance with several interfaces: an Elastic IP
	 * is associated once it runs */
	awsq_add(q, "NetworkInterface.1.AssociatePublicIpAddress",
		 public_ips && !multi ? "true" : "false");
	awsq_add(q, "NetworkInterface.1.DeleteOnTermination", "true");
	awsq_add(q, "NetworkInterface.1.InterfaceType",
		 efa_max > 0 && primary ? "efa" : "interface");
	if (!multi)
		return;
	int last = primary ? efa_max - 1 : efa_max;
	for (int i = 1; i <= last; i++) {
		char card[16];
		int n = i + 1;
		fmt_cut(card, sizeof(card), "%d", i); /* fits: a number */
		awsq_addf(q, card, "NetworkInterface.%d.NetworkCardIndex", n);
		awsq_addf(q, "1", "NetworkInterface.%d.DeviceIndex", n);
		awsq_addf(q, subnet, "NetworkInterface.%d.SubnetId", n);
		awsq_addf(q, sg, "NetworkInterface.%d.SecurityGroupId.1", n);
		awsq_addf(q, "false", "NetworkInterface.%d.AssociatePublicIpAddress", n);
		awsq_addf(q, "true", "NetworkInterface.%d.DeleteOnTermination", n);
		awsq_addf(q, !strcmp(type, "p5.48xlarge") && i % 4 == 0 ? "efa" : "efa-only",
			  "NetworkInterface.%d.InterfaceType", n);
	}
}

/* ------------------------------------------------------------------ Elastic IPs */

#define AWS_EIP_TAG "fleetfs_instance_id"

/* The Elastic IPs fleetfs allocated for instance id (tagged with it): their allocation and
 * association ids, public addresses. */
struct eip {
	char alloc[64], assoc[64], ip[64];
};

static int eips_of(struct aws_api *a, const char *region, const char *id, struct eip *out,
		   int max, int *n, char *err, size_t errlen)
{
	struct aws_query q;
	xmlDoc *doc = NULL;
	const char *iv[] = {id, NULL};
	*n = 0;
	awsq_init(&q, "DescribeAddresses");
	awsq_filter(&q, 1, "tag:" AWS_EIP_TAG, iv);
	int r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
	awsq_free(&q);
	for (xmlNode *it = r ? NULL : awsx_first(awsx_child(awsx_root(doc), "addressesSet"));
	     it && *n < max; it = awsx_next(it)) {
		awsx_text(it, "allocationId", out[*n].alloc, sizeof(out[0].alloc));
		awsx_text(it, "associationId", out[*n].assoc, sizeof(out[0].assoc));
		awsx_text(it, "publicIp", out[*n].ip, sizeof(out[0].ip));
		if (out[*n].alloc[0])
			(*n)++;
	}
	xmlFreeDoc(doc);
	return r;
}

/* Disassociate (when associated) and release one Elastic IP; gone already is fine. */
static int eip_release(struct aws_api *a, const char *region, const struct eip *e, char *err,
		       size_t errlen)
{
	int r = e->assoc[0] ? ec2_do(a, region, "DisassociateAddress", "AssociationId", e->assoc,
				     err, errlen)
			    : 0;
	return r ? r : ec2_do(a, region, "ReleaseAddress", "AllocationId", e->alloc, err, errlen);
}

/* The primary network interface of an instance element (card 0, device 0). */
static void primary_eni(const xmlNode *inst, char *eni, size_t n)
{
	eni[0] = '\0';
	for (xmlNode *it = awsx_first(awsx_child(inst, "networkInterfaceSet")); it;
	     it = awsx_next(it)) {
		char dev[8], card[8];
		awsx_text(it, "attachment/deviceIndex", dev, sizeof(dev));
		awsx_text(it, "attachment/networkCardIndex", card, sizeof(card));
		if (!strcmp(dev, "0") && (!card[0] || !strcmp(card, "0"))) {
			awsx_text(it, "networkInterfaceId", eni, n);
			return;
		}
	}
}

/* A running instance with several network interfaces gets its public address as an Elastic
 * IP (dstack's): the one tagged for it when there is one, else a new one, associated with
 * its primary interface. ip: the address. A second caller racing the first finds the
 * association taken and releases its own. */
static int eip_ensure(struct aws_api *a, const struct acfg *c, const char *region,
		      const char *project, const xmlNode *inst, const char *id, char *ip,
		      size_t iplen, char *err, size_t errlen)
{
	struct eip e[4];
	int n = 0;
	char eni[64];
	primary_eni(inst, eni, sizeof(eni));
	if (!eni[0])
		return backend_fail(err, errlen, -EPROTO, "aws: %s has no primary interface", id);
	int r = eips_of(a, region, id, e, 4, &n, err, errlen);
	for (int i = 0; !r && i < n; i++)
		if (e[i].assoc[0]) {
			fmt_cut(ip, iplen, "%s", e[i].ip); /* fits: as large as bk_vm's ip */
			return 0;
		}
	struct eip mine = {0};
	bool made = false;
	if (!r && n) {
		mine = e[0];
	} else if (!r) {
		struct aws_query q;
		xmlDoc *doc = NULL;
		const char *kv[2 * (AWS_MAX_TAGS + 1)];
		size_t k = 0;
		const char *ours[] = {AWS_OWNER_TAG, AWS_OWNER, "fleetfs_project", project,
				      AWS_EIP_TAG, id};
		for (; k < 3; k++) {
			kv[2 * k] = ours[2 * k];
			kv[2 * k + 1] = ours[2 * k + 1];
		}
		for (size_t i = 0; c->tags && i < ydoc_len(c->d, c->tags) && k < AWS_MAX_TAGS; i++) {
			const char *tk = ydoc_str(c->d, ydoc_map_key(c->d, c->tags, i));
			const char *tv = ydoc_str(c->d, ydoc_map_val(c->d, c->tags, i));
			bool taken = false;
			for (size_t j = 0; j < k && !taken; j++)
				taken = tk && !strcmp(kv[2 * j], tk);
			if (!taken && aws_tag_valid(tk, tv ? tv : "")) {
				kv[2 * k] = tk;
				kv[2 * k + 1] = tv ? tv : "";
				k++;
			}
		}
		kv[2 * k] = NULL;
		awsq_init(&q, "AllocateAddress");
		awsq_add(&q, "Domain", "vpc");
		tag_spec(&q, 1, "elastic-ip", kv);
		r = aws_query(a, AWS_EC2, region, &q, false, &doc, err, errlen);
		awsq_free(&q);
		if (!r) {
			awsx_text(awsx_root(doc), "allocationId", mine.alloc, sizeof(mine.alloc));
			awsx_text(awsx_root(doc), "publicIp", mine.ip, sizeof(mine.ip));
			made = true;
		}
		xmlFreeDoc(doc);
	}
	if (!r) {
		struct aws_query q;
		xmlDoc *doc = NULL;
		awsq_init(&q, "AssociateAddress");
		awsq_add(&q, "AllocationId", mine.alloc);
		awsq_add(&q, "NetworkInterfaceId", eni);
		awsq_add(&q, "AllowReassociation", "false");
		r = aws_query(a, AWS_EC2, region, &q, true, &doc, err, errlen);
		awsq_free(&q);
		xmlFreeDoc(doc);
		if (r && made && answered(a)) { /* never keep an address no one uses */
			char e2[256];
			(void)eip_release(a, region, &mine, e2, sizeof(e2));
		}
	}
	if (!r) {
		/* the address as AWS now reports it */
		int m = 0;
		r = eips_of(a, region, id, e, 4, &m, err, errlen);
		for (int i = 0; !r && i < m; i++) /* fits: ip is as large as bk_vm's */
			if (e[i].assoc[0])
				fmt_cut(ip, iplen, "%s", e[i].ip);
	}
	return r;
}

/* Release every Elastic IP fleetfs allocated for instance id. */
static int eips_release(struct aws_api *a, const char *region, const char *id, char *err,
			size_t errlen)
{
	struct eip e[8];
	int n = 0;
	int r = eips_of(a, region, id, e, 8, &n, err, errlen);
	for (int i = 0; !r && i < n; i++)
		r = eip_release(a, region, &e[i], err, errlen);
	return r;
}

struct launch {
	const struct bk_create_req *req;
	const struct acfg *c;
	const struct image *img;
	const char *user_data_b64;
	const char *sg;
	const char *pg;
	const char *const *tags;
	unsigned disk_gb;
	int efa_max; /* EFA interfaces of the type, 0: none */
};

static int run_instance(struct aws_api *a, const struct launch *l, const char *subnet,
			xmlDoc **doc, char *err, size_t errlen)
{
	const struct offer *o = l->req->offer;
	char token[64], size[16];
	struct aws_query q;
	client_token(l->req->cloud_name, subnet, token, sizeof(token));
	fmt_cut(size, sizeof(size), "%u", l->disk_gb); /* fits: a number */
	awsq_init(&q, "RunInstances");
	awsq_add(&q, "ImageId", l->img->id);
	awsq_add(&q, "InstanceType", o->instance);
	awsq_add(&q, "MinCount", "1");
	awsq_add(&q, "MaxCount", "1");
	awsq_add(&q, "ClientToken", token);
	awsq_add(&q, "UserData", l->user_data_b64);
	awsq_add(&q, "BlockDeviceMapping.1.DeviceName",
		 l->img->root_device[0] ? l->img->root_device : "/dev/sda1");
	awsq_add(&q, "BlockDeviceMapping.1.Ebs.VolumeSize", size);
	awsq_add(&q, "BlockDeviceMapping.1.Ebs.VolumeType", "gp2");
	awsq_add(&q, "BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true");
	add_nics(&q, o->instance, l->efa_max, subnet, l->sg, l->c->public_ips);
	tag_spec(&q, 1, "instance", l->tags);
	if (l->c->iam_profile)
		awsq_add(&q, "IamInstanceProfile.Name", l->c->iam_profile);
	if (o->spot) {
		awsq_add(&q, "InstanceMarketOptions.MarketType", "spot");
		awsq_add(&q, "InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time");
		awsq_add(&q, "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
			 "terminate");
	}
	if (l->pg)
		awsq_add(&q, "Placement.GroupName", l->pg);
	int r = aws_query(a, AWS_EC2, o->region, &q, true, doc, err, errlen);
	awsq_free(&q);
	return r;
}

/* RunInstances in the subnets of net, one try per zone of zones (only pg_zone's when the
 * placement group has one), until one launches it: 0 with out, -ENOSPC when every zone
 * failed, or the error that stops trying (refused, invalid, no answer). */
static int launch_in_zones(struct aws_api *a, const struct launch *l, const struct net *net,
			   const char *zones, char *pg_zone, size_t pglen, struct bk_vm *out,
			   char *err, size_t errlen)
{
	const struct offer *o = l->req->offer;
	const char *project = l->req->project ? l->req->project : "";
	char tried[512] = "", skipped[256] = "", last[600] = "";
	for (size_t i = 0; i < net->n; i++) {
		const char *zone = net->subnets[i].zone, *subnet = net->subnets[i].id;
		xmlDoc *doc = NULL;
		if (!in_list(zones, zone) || in_list(tried, zone) || (pg_zone[0] && strcmp(zone, pg_zone)))
			continue; /* one try per zone; a placement group's members share one */
		size_t end = strlen(tried);
		if (fmt(tried + end, sizeof(tried) - end, "%s%s", end ? "," : "", zone)) {
			tried[end] = '\0'; /* no room to note it: not tried */
			continue;
		}
		int r = run_instance(a, l, subnet, &doc, err, errlen);
		if (r && !strcmp(a->code, "InvalidPlacementGroup.Unknown") && l->pg) {
			/* the last member's terminate deleted the group meanwhile: make it again */
			r = aws_pg(a, o->region, l->pg, project, pg_zone, pglen, err, errlen);
			if (!r)
				r = run_instance(a, l, subnet, &doc, err, errlen);
		}
		if (!r) {
			xmlNode *inst = awsx_first(awsx_child(awsx_root(doc), "instancesSet"));
			char spot[64] = "";
			r = inst ? vm_from(inst, o->region, l->c->public_ips, out, err, errlen)
				 : backend_fail(err, errlen, -EPROTO,
						"aws: RunInstances answered no instance");
			if (!r) {
				awsx_text(inst, "spotInstanceRequestId", spot, sizeof(spot));
				r = vm_data(out, o->region, zone, l->c->public_ips, spot, l->pg,
					    l->c->public_ips && l->efa_max > 1, err, errlen);
				/* fits: the same sizes */
				fmt_cut(out->zone, sizeof(out->zone), "%s", zone);
				fmt_cut(out->detail, sizeof(out->detail), "%s", skipped);
			}
			xmlFreeDoc(doc);
			return r;
		}
		if (r == -EACCES || !answered(a) || !strcmp(a->code, "InvalidParameterValue"))
			return r; /* refused, unknown outcome, or an invalid request: stop here */
		fmt_cut(last, sizeof(last), "%s", err); /* capacity, quota ...: next zone */
		size_t k = strlen(skipped);
		fmt_cut(skipped + k, sizeof(skipped) - k, "%s%s: %s", k ? "; " : "", zone,
			a->code[0] ? a->code : "failed");
	}
	if (last[0])
		return backend_fail(err, errlen, -ENOSPC, "aws: %s in %s: no zone could launch it "
							  "(last: %s)",
				    o->instance, o->region, last);
	return backend_fail(err, errlen, -ENOSPC, "aws: %s in %s: no subnet in an available "
						  "zone%s%s",
			    o->instance, o->region, pg_zone[0] ? " of the placement group's zone " : "",
			    pg_zone);
}

static int aws_create(const struct backend_ctx *ctx, const struct bk_create_req *req,
		      struct bk_vm *out, char *err, size_t errlen)
{
	const struct offer *o = req->offer;
	struct acfg c;
	struct aws_api a;
	struct image img;
	struct net net;
	char zones[512], sg[64], pg_zone[64] = "", own[1][80];
	const char *kv[2 * (AWS_MAX_TAGS + 1)];
	char *ci = NULL, *ud = NULL;
	memset(out, 0, sizeof(*out));
	if (!o || !aws_region_ok(o->region) || !o->instance || !*o->instance)
		return backend_fail(err, errlen, -EINVAL, "aws: the offer has no region or type");
	if (!req->cloud_name || !*req->cloud_name)
		return backend_fail(err, errlen, -EINVAL, "aws: no instance name");
	/* what the VM's record and data keep whole: refused before anything is launched */
	if (strlen(req->cloud_name) >= sizeof(out->name) ||
	    strlen(o->instance) >= sizeof(out->instance) ||
	    (req->placement_group &&
	     strlen(req->placement_group) >= sizeof(((struct vmdata *)0)->pg)))
		return backend_fail(err, errlen, -EINVAL,
				    "aws: instance name, type or placement group too long");
	const char *user_data = req->user_data;
	if (!user_data || !*user_data) {
		if (!req->ssh_pubkey || !*req->ssh_pubkey)
			return backend_fail(err, errlen, -EINVAL, "aws: no SSH public key");
		user_data = ci = backend_cloud_init(req->ssh_pubkey);
	}
	if (strlen(user_data) * 4 / 3 + 4 > AWS_USER_DATA_MAX) {
		free(ci);
		return backend_fail(err, errlen, -EFBIG, "aws: user data over 16 KiB");
	}
	int r = aws_open(ctx, &c, &a, err, errlen);
	if (r) {
		free(ci);
		return r;
	}
	ud = b64_encode(user_data, strlen(user_data));
	if (!ud)
		abort(); /* out of memory, as xmalloc */
	/* the region's setup (image, zones, EFA, network, security group, placement group): one
	 * create at a time per region, so that the first fills the memo and the others read it
	 * instead of making the same calls at the same time */
	backend_lock(ctx, memo_base(&a), o->region);
	r = aws_image(&a, &c, o, &img, err, errlen);
	if (r == -ENOENT)
		r = -EINVAL; /* no image: this offer cannot be had */
	if (!r)
		r = aws_zones(&a, o->region, zones, sizeof(zones), err, errlen);
	int efa_max = 0;
	if (!r)
		r = aws_efa(&a, o->region, o->instance, &efa_max, err, errlen);
	if (!r) {
		r = aws_net(&a, &c, o->region, &net, err, errlen);
		if (r == -ENOENT)
			r = -EINVAL;
	}
	if (!r)
		r = aws_sg(&a, o->region, net.vpc, req->project ? req->project : "", sg, sizeof(sg),
			   err, errlen);
	/* t2/t3 have no cluster placement (dstack does not offer it for them) */
	const char *pg = req->placement_group && *req->placement_group &&
					 strncmp(o->instance, "t2.", 3) && strncmp(o->instance, "t3.", 3)
				 ? req->placement_group
				 : NULL;
	if (!r && pg)
		r = aws_pg(&a, o->region, pg, req->project ? req->project : "", pg_zone,
			   sizeof(pg_zone), err, errlen);
	backend_unlock(ctx, memo_base(&a), o->region);
	if (r && answered(&a) && r != -EACCES && r != -EINVAL)
		r = -ENOSPC; /* dstack: a failed network lookup is no capacity here */
	struct launch l = {.req = req, .c = &c, .img = &img, .user_data_b64 = ud, .sg = sg,
			   .pg = pg, .tags = kv, .efa_max = efa_max};
	double gb = (double)o->disk_mib / 1024.0;
	l.disk_gb = gb < AWS_ROOT_MIN_GB ? 100 : (unsigned)(gb + 0.5);
	if (!r)
		instance_tags(req, &c, img.user, own, kv, AWS_MAX_TAGS);
	if (!r)
		r = launch_in_zones(&a, &l, &net, zones, pg_zone, sizeof(pg_zone), out, err, errlen);
	if (!r) {
		if (!out->name[0])
			fmt_cut(out->name, sizeof(out->name), "%s", req->cloud_name);
		if (!out->instance[0])
			fmt_cut(out->instance, sizeof(out->instance), "%s", o->instance);
		fmt_cut(out->username, sizeof(out->username), "%s", img.user);
		if (out->state != BK_VM_RUNNING)
			out->state = BK_VM_PENDING;
	}
	free(ud);
	free(ci);
	aws_api_close(&a);
	acfg_free(&c);
	return r;
}

/* ------------------------------------------------------------------ get, terminate */

static int describe_one(struct aws_api *a, const char *region, const char *id, xmlDoc **doc,
			xmlNode **inst, char *err, size_t errlen)
{
	struct aws_query q;
	awsq_init(&q, "DescribeInstances");
	awsq_add(&q, "InstanceId.1", id);
	int r = aws_query(a, AWS_EC2, region, &q, true, doc, err, errlen);
	awsq_free(&q);
	xmlNode *res = r ? NULL : awsx_first(awsx_child(awsx_root(*doc), "reservationSet"));
	*inst = awsx_first(awsx_child(res, "instancesSet"));
	if (!r && !*inst)
		r = backend_fail(err, errlen, -ENOENT, "aws: no instance %s", id);
	return r;
}

/* Delete a placement group once its last member is gone (in use: a member still is). */
static void pg_cleanup(struct aws_api *a, const char *region, const char *pg)
{
	char err[256];
	(void)ec2_do(a, region, "DeletePlacementGroup", "GroupName", pg, err, sizeof(err));
}

/* What get and terminate start with: a usable id, the VM's data, AWS open (close it when
 * 0 is returned). */
static int vm_open(const struct backend_ctx *ctx, const char *id, const char *backend_data,
		   struct vmdata *v, struct aws_api *a, char *err, size_t errlen)
{
	if (!backend_id_ok(id))
		return backend_fail(err, errlen, -EINVAL, "aws: not an instance id");
	int r = vmdata_parse(backend_data, v, err, errlen);
	return r ? r : aws_api_open(a, ctx, err, errlen);
}

static int aws_get(const struct backend_ctx *ctx, const char *id, const char *backend_data,
		   struct bk_vm *out, char *err, size_t errlen)
{
	struct vmdata v;
	struct aws_api a;
	xmlDoc *doc = NULL;
	xmlNode *inst = NULL;
	memset(out, 0, sizeof(*out));
	int r = vm_open(ctx, id, backend_data, &v, &a, err, errlen);
	if (r)
		return r;
	r = describe_one(&a, v.region, id, &doc, &inst, err, errlen);
	if (!r)
		r = vm_from(inst, v.region, v.public_ips, out, err, errlen);
	if (!r && v.eip && out->state == BK_VM_RUNNING && !out->ip[0]) {
		/* several interfaces: its public address is an Elastic IP, made now */
		struct acfg c;
		char e2[512] = "";
		int er = acfg_load(ctx, &c, e2, sizeof(e2));
		if (!er) {
			er = eip_ensure(&a, &c, v.region, ctx->project ? ctx->project : "", inst, id,
					out->ip, sizeof(out->ip), e2, sizeof(e2));
			acfg_free(&c);
		}
		if (er) /* it stays without an address: shown, and timed out if it lasts */
			fmt_cut(out->status, sizeof(out->status), "running, no Elastic IP yet");
		if (er == -ECANCELED)
			r = er;
	}
	if (r == -ENOENT && v.created_at > 0 && time(NULL) - v.created_at < AWS_VISIBLE_S) {
		/* not visible yet: AWS's describe lags its creates */
		memset(out, 0, sizeof(*out));
		fmt_cut(out->id, sizeof(out->id), "%s", id); /* fits: backend_id_ok */
		fmt_cut(out->status, sizeof(out->status), "not visible yet");
		/* fits: aws_region_ok (vmdata_parse) */
		fmt_cut(out->region, sizeof(out->region), "%s", v.region);
		out->state = BK_VM_PENDING;
		err[0] = '\0';
		r = 0;
	}
	if (!r && fmt(out->backend_data, sizeof(out->backend_data), "%s", backend_data))
		r = backend_fail(err, errlen, -EINVAL, "aws: the instance's data is too long");
	if ((r == -ENOENT || (!r && out->state == BK_VM_TERMINATED)) && v.pg[0])
		pg_cleanup(&a, v.region, v.pg);
	xmlFreeDoc(doc);
	aws_api_close(&a);
	return r;
}

static int aws_terminate(const struct backend_ctx *ctx, const char *id, const char *backend_data,
			 char *err, size_t errlen)
{
	struct vmdata v;
	struct aws_api a;
	int r = vm_open(ctx, id, backend_data, &v, &a, err, errlen);
	if (r)
		return r;
	if (v.spot[0]) /* the request goes first, so that it cannot start another instance */
		r = ec2_do(&a, v.region, "CancelSpotInstanceRequests", "SpotInstanceRequestId.1",
			   v.spot, err, errlen);
	if (!r)
		r = ec2_do(&a, v.region, "TerminateInstances", "InstanceId.1", id, err, errlen);
	if (!r && v.eip)
		r = eips_release(&a, v.region, id, err, errlen);
	aws_api_close(&a);
	return r;
}

/* ------------------------------------------------------------------ list_own */

struct list_job {
	struct aws_api a;
	const char *region;
	bool public_ips;
	struct bk_vm *vms;
	size_t n, cap;
	int rc;
	char err[512];
};

static void *list_run(void *arg)
{
	struct list_job *j = arg;
	char token[4096] = "";
	const char *own[] = {AWS_OWNER, NULL};
	const char *states[] = {"pending", "running", "shutting-down", "stopping", "stopped", NULL};
	for (int page = 0; page < AWS_PAGES_MAX; page++) {
		struct aws_query q;
		xmlDoc *doc = NULL;
		awsq_init(&q, "DescribeInstances");
		awsq_filter(&q, 1, "tag:" AWS_OWNER_TAG, own);
		awsq_filter(&q, 2, "instance-state-name", states);
		awsq_add(&q, "MaxResults", "1000");
		if (token[0])
			awsq_add(&q, "NextToken", token);
		j->rc = aws_query(&j->a, AWS_EC2, j->region, &q, true, &doc, j->err, sizeof(j->err));
		awsq_free(&q);
		if (j->rc)
			return NULL;
		xmlNode *root = awsx_root(doc);
		for (xmlNode *res = awsx_first(awsx_child(root, "reservationSet")); res;
		     res = awsx_next(res))
			for (xmlNode *it = awsx_first(awsx_child(res, "instancesSet")); it;
			     it = awsx_next(it)) {
				struct bk_vm vm;
				char e[128];
				if (vm_from(it, j->region, j->public_ips, &vm, e, sizeof(e)) ||
				    strncmp(vm.name, AWS_OWN_PREFIX, strlen(AWS_OWN_PREFIX)))
					continue;
				char zone[64], spot[64], pg[256];
				awsx_text(it, "placement/availabilityZone", zone, sizeof(zone));
				awsx_text(it, "spotInstanceRequestId", spot, sizeof(spot));
				awsx_text(it, "placement/groupName", pg, sizeof(pg));
				/* one that cannot be described fails the list: skipped, it
				 * could be taken for gone */
				if (vm_data(&vm, j->region, zone, j->public_ips, spot, pg,
					    j->public_ips && network_interfaces(it) > 1, j->err,
					    sizeof(j->err))) {
					j->rc = -EPROTO;
					xmlFreeDoc(doc);
					return NULL;
				}
				if (j->n == j->cap) {
					j->cap = j->cap ? 2 * j->cap : 16;
					j->vms = xrealloc(j->vms, j->cap * sizeof(*j->vms));
				}
				j->vms[j->n++] = vm;
			}
		char next[4096];
		bool more = awsx_text(root, "nextToken", next, sizeof(next)) && next[0];
		xmlFreeDoc(doc);
		if (!more)
			return NULL;
		if (!strcmp(next, token)) {
			j->rc = backend_fail(j->err, sizeof(j->err), -EPROTO,
					     "aws: DescribeInstances: the page token does not move");
			return NULL;
		}
		fmt_cut(token, sizeof(token), "%s", next); /* fits: the same sizes */
	}
	j->rc = backend_fail(j->err, sizeof(j->err), -EFBIG, "aws: DescribeInstances: over %d pages",
			     AWS_PAGES_MAX);
	return NULL;
}

static int aws_list_own(const struct backend_ctx *ctx, struct bk_vm **out, size_t *n, char *err,
			size_t errlen)
{
	struct acfg c;
	struct aws_api a;
	*out = NULL;
	*n = 0;
	int r = aws_open(ctx, &c, &a, err, errlen);
	if (r)
		return r;
	struct list_job *jobs = xcalloc(c.nregions, sizeof(*jobs));
	for (size_t i = 0; i < c.nregions; i++)
		jobs[i] = (struct list_job){.a = a, .region = c.regions[i],
					    .public_ips = c.public_ips};
	run_parallel(jobs, c.nregions, sizeof(*jobs), list_run);
	size_t total = 0;
	for (size_t i = 0; i < c.nregions; i++) {
		if (jobs[i].rc && !r) {
			r = jobs[i].rc;
			fmt_cut(err, errlen, "%s", jobs[i].err);
		}
		total += jobs[i].n;
	}
	if (!r) {
		struct bk_vm *all = xcalloc(total + 1, sizeof(*all));
		size_t k = 0;
		for (size_t i = 0; i < c.nregions; i++) {
			if (jobs[i].n) /* a region with none has no array (memcpy from NULL is UB) */
				memcpy(all + k, jobs[i].vms, jobs[i].n * sizeof(*all));
			k += jobs[i].n;
		}
		*out = all;
		*n = k;
	}
	for (size_t i = 0; i < c.nregions; i++)
		free(jobs[i].vms);
	free(jobs);
	aws_api_close(&a);
	acfg_free(&c);
	return r;
}

const struct backend_ops aws_ops = {
	.offers = aws_offers,
	.check = aws_check,
	.create = aws_create,
	.get = aws_get,
	.terminate = aws_terminate,
	.list_own = aws_list_own,
	.provision_timeout_min = 10,
	/* EC2's Describe* are eventually consistent: an instance RunInstances made may be
	 * missing for seconds, at worst about a minute (aws_get counts on the same minute) */
	.create_lag_s = 60,
};
