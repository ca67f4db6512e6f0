/* Unit tests for core/offers.c: gpuhunt CSV reading (quoted fields, malformed rows, column
 * order, missing columns), §1.9 matching with the §1.8 gpu forms, query parse errors, sort
 * order, names and the YAML/TSV/JSON renderings. */
#include <cjson/cJSON.h>
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../backends/backend.h"
#include "../../cache/store.h"
#include "../../core/offerd.h"
#include "../../core/offers.h"
#include "helpers.h"
#include "suites.h"

/* gpuhunt CATALOG_V2_FIELDS order; rows described in the comments of the tests below. */
static const char fixture[] =
	"instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,"
	"gpu_vendor,flags,cpu_arch,provider_data\r\n"
	"p4d.24xlarge,us-east-1,32.77,96,1152,8,A100,40,False,,nvidia,,,"
	"\"{\"\"a\"\": 1, \"\"b\"\": \"\"x,y\"\"}\"\r\n"
	"p4de.24xlarge,us-east-1,40.96,96,1152,8,A100,80,False,,,,,\n"
	"p4de.24xlarge,us-east-1,12.5,96,1152,8,A100,80,True,,nvidia,,,\n"
	"\"p5.48xlarge\",us-west-2,98.32,192,2048,8,H100,80,false,,nvidia,,x86,\n"
	"g5.xlarge,us-east-1,1.006,4,16,1,A10G,24,False,,nvidia,,,\n"
	"g5.12xlarge,us-east-1,5.672,48,192,4,A10G,24,FALSE,,nvidia,,,\n"
	"g6.xlarge,eu-west-1,0.805,4,16,1,L4,24,False,,nvidia,,,\n"
	"bad.price,us-east-1,abc,4,16,0,,,False,,,,,\n"
	"gpu_2x_a100,us-east-1,2.58,60,450,2,A100,80,False,500,nvidia,,,\n"
	"bad.spot,us-east-1,1,4,16,0,,,maybe,,,,,\n"
	"mi300x.8x,us-east-1,20,128,2048,8,MI300X,192,False,,amd,,,\n"
	"bad.cpu,us-east-1,1,four,16,0,,,False,,,,,\n"
	"c7g.2xlarge,us-east-1,0.29,8,16,0,,,False,,,,arm,\n"
	"bad.arch,us-east-1,1,4,16,0,,,False,,,,mips,\n"
	"m5.large,us-east-1,0.096,2,8,0,,,False,100,,,,\n"
	"gpu.noname,us-east-1,1,4,16,1,,24,False,,,,,\n"
	"m5.large,us-east-1,0.03,2,8,0,,,True,100,,,,\n"
	"short,us-east-1\n"
	"weird name/x,eu-west-1,1.0,2,4,0,,,False,,,,,\n"
	"flagged,us-east-1,0.5,4,16,0,,,False,,,some-flag,,\n"
	"\"a,b\",eu-west-1,0.5,2,4,0,,,False,,,,,\n"
	"oci.spot,us-east-1,0.5,4,16,0,,,True,,,oci-spot,,\n"
	"\n"
	"tpu,us-central1,4.2,96,334,4,tpu-v5e,16,False,,,,,\n";

#define NGOOD 16
#define NBAD 6

static struct offer_list L;

/* Offers of a backend named after its type. */
static const struct offer_origin *org(const char *type)
{
	static struct offer_origin o;
	o = (struct offer_origin){.backend = type, .type = type, .source = "catalog"};
	return &o;
}

static const char *write_csv(const char *name, const char *text)
{
	static char path[512];
	const char *d = tmp_dir("offers");
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/%s", d, name), 0);
	ck_assert_int_eq(file_write(path, text, strlen(text), 0644), 0);
	return path;
}

static void load(void)
{
	char err[256] = "";
	size_t skipped = 0;
	memset(&L, 0, sizeof(L));
	int r = offers_read_csv(write_csv("aws.csv", fixture), org("aws"), &L, &skipped, err,
				sizeof(err));
	ck_assert_msg(r == 0, "read: %d %s", r, err);
	ck_assert_uint_eq(L.n, NGOOD);
	ck_assert_uint_eq(skipped, NBAD);
}

/* The matching offers of L as "instance[*]" joined by spaces (* = spot). */
static char *matching(const char *query)
{
	struct offer_query *q = NULL;
	char err[256] = "";
	int r = offers_query_parse(query, &q, err, sizeof(err));
	ck_assert_msg(r == 0, "query %s: %d %s", query, r, err);
	struct buf b;
	buf_init(&b, 1 << 16);
	for (size_t i = 0; i < L.n; i++)
		if (offers_match(q, &L.v[i]))
			ck_assert_int_eq(buf_printf(&b, "%s%s%s", b.len ? " " : "", L.v[i].instance,
						    L.v[i].spot ? "*" : ""),
					 0);
	offers_query_free(q);
	char *s = buf_steal(&b, NULL);
	return s ? s : xstrdup("");
}

#define MATCH(query, expect)                                                                   \
	do {                                                                                   \
		char *got_ = matching(query);                                                  \
		ck_assert_msg(!strcmp(got_, expect), "%s: got [%s] want [%s]", query, got_,    \
			      expect);                                                         \
		free(got_);                                                                    \
	} while (0)

#define ALL                                                                                    \
	"p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge g5.xlarge g5.12xlarge g6.xlarge " \
	"gpu_2x_a100 mi300x.8x c7g.2xlarge m5.large m5.large* weird name/x a,b oci.spot* tpu"
#define CPU_ONLY "c7g.2xlarge m5.large m5.large* weird name/x a,b oci.spot*"

START_TEST(test_read_fields)
{
	load();
	const struct offer *o = &L.v[0];
	ck_assert_str_eq(o->backend, "aws");
	ck_assert_str_eq(o->region, "us-east-1");
	ck_assert_str_eq(o->instance, "p4d.24xlarge");
	ck_assert(!o->spot);
	ck_assert(o->price == 32.77);
	ck_assert_int_eq(o->cpus, 96);
	ck_assert_str_eq(o->cpu_arch, "x86");
	ck_assert_uint_eq(o->memory_mib, 1152 * 1024);
	ck_assert_uint_eq(o->disk_mib, 100 * 1024); /* no catalog disk: aws's default 100GB */
	ck_assert(!o->disk_fixed);
	ck_assert_str_eq(o->gpu_vendor, "nvidia");
	ck_assert_str_eq(o->gpu_name, "A100");
	ck_assert_int_eq(o->gpu_count, 8);
	ck_assert_uint_eq(o->gpu_memory_mib, 40 * 1024);
	ck_assert_str_eq(o->availability, "unknown");
	ck_assert_str_eq(o->source, "catalog");
	ck_assert_str_eq(L.v[1].gpu_vendor, "nvidia"); /* legacy: empty vendor with GPUs */
	ck_assert(L.v[2].spot);
	ck_assert_str_eq(L.v[3].instance, "p5.48xlarge"); /* quoted */
	ck_assert_uint_eq(L.v[7].disk_mib, 500 * 1024);
	ck_assert(L.v[7].disk_fixed);
	ck_assert_str_eq(L.v[8].gpu_vendor, "amd");
	ck_assert_str_eq(L.v[9].cpu_arch, "arm");
	ck_assert_int_eq(L.v[9].gpu_count, 0);
	ck_assert_str_eq(L.v[9].gpu_vendor, "");
	ck_assert_str_eq(L.v[12].instance, "weird name/x");
	ck_assert_str_eq(L.v[13].instance, "a,b");
	ck_assert_str_eq(L.v[15].gpu_vendor, "google"); /* legacy: tpu- prefix */
	ck_assert_str_eq(L.v[15].gpu_name, "tpu-v5e");
	offer_list_free(&L);
	offer_list_free(&L); /* idempotent */
}
END_TEST

START_TEST(test_read_columns)
{
	char err[256] = "";
	size_t skipped = 0;
	struct offer_list l = {0};
	/* any column order, optional columns absent, unknown columns ignored */
	const char *p = write_csv("x.csv", "\xEF\xBB\xBF"
					   "spot,extra,gpu_count,memory,cpu,price,location,"
					   "instance_name,gpu_name,gpu_memory\n"
					   "True,zz,1,30,8,0.75,FIN-01,1V100.6V,V100,16\n");
	ck_assert_int_eq(offers_read_csv(p, org("verda"), &l, &skipped, err, sizeof(err)), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_uint_eq(skipped, 0);
	ck_assert_str_eq(l.v[0].instance, "1V100.6V");
	ck_assert_str_eq(l.v[0].region, "FIN-01");
	ck_assert_str_eq(l.v[0].gpu_vendor, "nvidia");
	ck_assert_str_eq(l.v[0].cpu_arch, "x86");
	ck_assert(l.v[0].spot);
	ck_assert_uint_eq(l.v[0].gpu_memory_mib, 16384);

	/* missing a required column: -EINVAL naming it, the list untouched */
	p = write_csv("y.csv", "instance_name,location,cpu,memory,gpu_count,spot\n"
			       "a,b,1,1,0,False\n");
	err[0] = '\0';
	ck_assert_int_eq(offers_read_csv(p, org("verda"), &l, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "price") != NULL, "%s", err);
	ck_assert_uint_eq(l.n, 1);
	p = write_csv("z.csv", "");
	ck_assert_int_eq(offers_read_csv(p, org("verda"), &l, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(offers_read_csv("/nonexistent/aws.csv", org("aws"), &l, NULL, err,
					 sizeof(err)),
			 -ENOENT);
	ck_assert_uint_eq(l.n, 1);
	offer_list_free(&l);
}
END_TEST

START_TEST(test_providers)
{
	ck_assert_str_eq(backend_type_catalog("lambda"), "lambdalabs");
	ck_assert_str_eq(backend_type_catalog("datacrunch"), "verda");
	ck_assert_str_eq(backend_type_catalog("verda"), "verda");
	static const char *const same[] = {"aws",    "azure", "gcp",	   "nebius",
					   "oci",    "runpod", "cloudrift"};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
		ck_assert_str_eq(backend_type_catalog(same[i]), same[i]);
	ck_assert_ptr_null(backend_type_catalog("vastai"));
	ck_assert_ptr_null(backend_type_catalog("lambdalabs"));
	ck_assert_ptr_null(backend_type_catalog(NULL));
}
END_TEST

/* The §1.8 gpu forms. */
START_TEST(test_match_gpu)
{
	load();
	MATCH("", ALL);
	MATCH("gpu=A100:80GB:2", "gpu_2x_a100");
	MATCH("gpu=a100", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* gpu_2x_a100");
	MATCH("gpu=A10", ""); /* exact names: A10 is not A10G */
	MATCH("gpu=24GB..",
	      "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge g5.xlarge g5.12xlarge "
	      "g6.xlarge gpu_2x_a100 mi300x.8x");
	MATCH("gpu=24GB..80GB", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge g5.xlarge "
				"g5.12xlarge g6.xlarge gpu_2x_a100");
	MATCH("gpu=nvidia:2..4", "g5.12xlarge gpu_2x_a100");
	MATCH("gpu=H100,A100:8", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge");
	MATCH("gpu=H100+A100:8", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge");
	MATCH("gpu=H100,A100:8,spot=false", "p4d.24xlarge p4de.24xlarge p5.48xlarge");
	MATCH("spot=false,gpu=H100,A100:8", "p4d.24xlarge p4de.24xlarge p5.48xlarge");
	MATCH("gpu=H100:8", "p5.48xlarge");
	MATCH("gpu=0", CPU_ONLY);
	MATCH("gpu=8", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge mi300x.8x");
	MATCH("gpu=1..", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge g5.xlarge "
			 "g5.12xlarge g6.xlarge gpu_2x_a100 mi300x.8x tpu");
	MATCH("gpu=amd:MI300X:8", "mi300x.8x");
	MATCH("gpu=AMD:8", "mi300x.8x");
	MATCH("gpu=A10G,L4:1..2", "g5.xlarge g6.xlarge");
	MATCH("gpu=tpu:4", "tpu");
	/* count 0.. with a vendor: CPU-only offers are kept (#3264), other vendors are not */
	MATCH("gpu=0..:nvidia",
	      "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge g5.xlarge g5.12xlarge "
	      "g6.xlarge gpu_2x_a100 c7g.2xlarge m5.large m5.large* weird name/x a,b oci.spot*");
	/* compute capability: NVIDIA with a known name only; CPU-only skip GPU checks */
	MATCH("gpu=1..,compute_capability=8.9", "p5.48xlarge g6.xlarge");
	MATCH("gpu=1..,compute_capability=8", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* "
					      "p5.48xlarge g5.xlarge g5.12xlarge g6.xlarge "
					      "gpu_2x_a100");
	offer_list_free(&L);
}
END_TEST

/* The rest of §1.9 and the §3.2 filters. */
START_TEST(test_match_other)
{
	load();
	MATCH("cpu=arm:8..", "c7g.2xlarge");
	MATCH("cpu=ARM", "c7g.2xlarge");
	MATCH("cpu=96..128", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* mi300x.8x tpu");
	MATCH("cpu=x86:2,memory=..4GB", "weird name/x a,b");
	MATCH("memory=64GB..", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge "
			       "g5.12xlarge gpu_2x_a100 mi300x.8x tpu");
	MATCH("memory=1TB..2TB", "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge "
				 "mi300x.8x");
	/* disk is checked only when known: m5 has 100 GB, gpu_2x_a100 500 GB */
	MATCH("disk=500GB..1TB",
	      "p4d.24xlarge p4de.24xlarge p4de.24xlarge* p5.48xlarge g5.xlarge g5.12xlarge "
	      "g6.xlarge gpu_2x_a100 mi300x.8x c7g.2xlarge weird name/x a,b oci.spot* tpu");
	MATCH("spot=true", "p4de.24xlarge* m5.large* oci.spot*");
	MATCH("spot=auto", ALL);
	MATCH("max_price=1",
	      "g6.xlarge c7g.2xlarge m5.large m5.large* weird name/x a,b oci.spot*");
	MATCH("max_price=0.5,spot=false", "c7g.2xlarge m5.large a,b");
	MATCH("backends=lambda", "");
	MATCH("backends=AWS", ALL);
	MATCH("backends=lambda+aws,gpu=L4", "g6.xlarge");
	MATCH("backends=lambda,aws,gpu=L4", "g6.xlarge");
	MATCH("regions=EU-WEST-1", "g6.xlarge weird name/x a,b");
	MATCH("regions=eu-west-1+us-west-2,gpu=1..", "p5.48xlarge g6.xlarge");
	MATCH("instance_types=M5.LARGE", "m5.large m5.large*");
	MATCH("instance_types=m5.large,c7g.2xlarge,spot=false", "c7g.2xlarge m5.large");
	ck_assert(offers_match(NULL, &L.v[0]));

	/* backend names match the gpuhunt provider name too */
	struct offer_list l = {0};
	char err[128];
	const char *p = write_csv("lambdalabs.csv",
				  "instance_name,location,price,cpu,memory,gpu_count,gpu_name,"
				  "gpu_memory,spot,disk_size,gpu_vendor,flags,cpu_arch,provider_data\n"
				  "gpu_1x_gh200,us-east-3,1.49,64,432,1,GH200,96,False,4096,nvidia,"
				  "lambda-arm,arm,\n");
	ck_assert_int_eq(offers_read_csv(p, org("lambda"), &l, NULL, err, sizeof(err)), 0);
	ck_assert_uint_eq(l.n, 1);
	struct offer_query *q = NULL;
	ck_assert_int_eq(offers_query_parse("backends=lambdalabs,gpu=GH200", &q, err,
					    sizeof(err)),
			 0);
	ck_assert(offers_match(q, &l.v[0]));
	offers_query_free(q);
	ck_assert_int_eq(offers_query_parse("backends=lambda,cpu=x86", &q, err, sizeof(err)), 0);
	ck_assert(!offers_match(q, &l.v[0]));
	offers_query_free(q);
	offer_list_free(&l);
	offer_list_free(&L);
}
END_TEST

START_TEST(test_query_errors)
{
	static const char *const bad[] = {
		"gpu",		 "gpu=",	   "foo=1",	     "gpu=1,gpu=2",
		"gpu=A100:A10G", "gpu=8:4",	   "gpu=A100,",	     ",",
		"spot=maybe",	 "cpu=mips",	   "cpu=2:4",	     "memory=..",
		"memory=8GiB",	 "disk=2..1",	   "max_price=-1",   "max_price=x",
		"compute_capability=x.y", "backends=a++b", "regions=", "A100,gpu=1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct offer_query *q = NULL;
		char err[256] = "";
		int r = offers_query_parse(bad[i], &q, err, sizeof(err));
		ck_assert_msg(r == -EINVAL, "%s: %d", bad[i], r);
		ck_assert_msg(err[0] != '\0', "%s: no reason", bad[i]);
		ck_assert_ptr_null(q);
	}
	struct offer_query *q = NULL;
	char err[256];
	ck_assert_int_eq(offers_query_parse("", &q, err, sizeof(err)), 0);
	offers_query_free(q);
	offers_query_free(NULL);
}
END_TEST

START_TEST(test_sort_and_names)
{
	load();
	offers_sort(&L);
	for (size_t i = 1; i < L.n; i++)
		ck_assert(L.v[i - 1].price <= L.v[i].price);
	ck_assert_str_eq(L.v[0].instance, "m5.large");
	ck_assert(L.v[0].spot);
	/* ties keep catalog order: a,b before oci.spot (both 0.5) */
	ck_assert_str_eq(L.v[3].instance, "a,b");
	ck_assert_str_eq(L.v[4].instance, "oci.spot");
	ck_assert_str_eq(L.v[L.n - 1].instance, "p5.48xlarge");

	char name[128];
	struct offer o = L.v[0];
	offer_name(&o, name, sizeof(name));
	ck_assert_str_eq(name, "aws:us-east-1:m5.large:spot");
	for (size_t i = 0; i < L.n; i++) {
		offer_name(&L.v[i], name, sizeof(name));
		if (!strcmp(L.v[i].instance, "a,b"))
			ck_assert_str_eq(name, "aws:eu-west-1:a_b");
		if (!strcmp(L.v[i].instance, "weird name/x"))
			ck_assert_str_eq(name, "aws:eu-west-1:weird_name_x");
		if (!strcmp(L.v[i].instance, "p5.48xlarge"))
			ck_assert_str_eq(name, "aws:us-west-2:p5.48xlarge");
		ck_assert(strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				       "0123456789._-:") == strlen(name));
	}
	char small[8];
	offer_name(&o, small, sizeof(small));
	ck_assert_str_eq(small, "aws:us-");
	offer_list_free(&L);
}
END_TEST

START_TEST(test_render)
{
	load();
	struct buf b;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(offer_yaml(&L.v[0], NULL, &b), 0);
	ck_assert_str_eq(b.data, "backend: \"aws\"\ntype: aws\nregion: \"us-east-1\"\n"
				 "instance: \"p4d.24xlarge\"\nspot: false\nprice: 32.77\n"
				 "gpus:\n  vendor: \"nvidia\"\n  name: \"A100\"\n"
				 "  memory_mib: 40960\n  count: 8\ncpus: 96\ncpu_arch: x86\n"
				 "memory_mib: 1179648\ndisk_mib: 102400\navailability: unknown\n"
				 "source: catalog\nfetched_at: null\n");
	buf_free(&b);

	struct offer_query *q = NULL;
	char err[128];
	ck_assert_int_eq(offers_query_parse("gpu=A100", &q, err, sizeof(err)), 0);
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(offers_tsv(&L, q, &b), 0);
	ck_assert_uint_eq(str_count(b.data, "\n"), 5);
	ck_assert_ptr_eq(strstr(b.data, "name\tbackend\tregion\tinstance\tspot\tprice\t"
					"gpu_vendor\tgpu_name\tgpu_memory_mib\tgpu_count\tcpus\t"
					"cpu_arch\tmemory_mib\tdisk_mib\tavailability\tsource\t"
					"fetched_at\n"),
			 b.data);
	ck_assert_msg(strstr(b.data, "\naws:us-east-1:gpu_2x_a100\taws\tus-east-1\tgpu_2x_a100\t"
				     "false\t2.58\tnvidia\tA100\t81920\t2\t60\tx86\t460800\t"
				     "512000\tunknown\tcatalog\t\n") != NULL,
		      "%s", b.data);
	ck_assert(strstr(b.data, "aws:us-east-1:p4de.24xlarge:spot\t") != NULL);
	buf_free(&b);

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(offers_json(&L, q, &b), 0);
	cJSON *j = cJSON_Parse(b.data);
	ck_assert_ptr_nonnull(j);
	ck_assert(cJSON_IsArray(j));
	ck_assert_int_eq(cJSON_GetArraySize(j), 4);
	cJSON *e = cJSON_GetArrayItem(j, 3);
	ck_assert_str_eq(cJSON_GetObjectItem(e, "name")->valuestring, "aws:us-east-1:gpu_2x_a100");
	ck_assert_str_eq(cJSON_GetObjectItem(e, "backend")->valuestring, "aws");
	ck_assert_str_eq(cJSON_GetObjectItem(e, "instance")->valuestring, "gpu_2x_a100");
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(e, "spot")));
	ck_assert(cJSON_GetObjectItem(e, "price")->valuedouble == 2.58);
	cJSON *g = cJSON_GetObjectItem(e, "gpus");
	ck_assert_str_eq(cJSON_GetObjectItem(g, "vendor")->valuestring, "nvidia");
	ck_assert_str_eq(cJSON_GetObjectItem(g, "name")->valuestring, "A100");
	ck_assert_int_eq(cJSON_GetObjectItem(g, "memory_mib")->valueint, 81920);
	ck_assert_int_eq(cJSON_GetObjectItem(g, "count")->valueint, 2);
	ck_assert_int_eq(cJSON_GetObjectItem(e, "cpus")->valueint, 60);
	ck_assert_str_eq(cJSON_GetObjectItem(e, "cpu_arch")->valuestring, "x86");
	ck_assert_int_eq(cJSON_GetObjectItem(e, "memory_mib")->valueint, 460800);
	ck_assert_int_eq(cJSON_GetObjectItem(e, "disk_mib")->valueint, 512000);
	ck_assert_str_eq(cJSON_GetObjectItem(e, "availability")->valuestring, "unknown");
	ck_assert_str_eq(cJSON_GetObjectItem(e, "source")->valuestring, "catalog");
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 2), "spot")));
	cJSON_Delete(j);
	buf_free(&b);
	offers_query_free(q);

	/* no query: every offer; a tiny limit is -EFBIG */
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(offers_json(&L, NULL, &b), 0);
	j = cJSON_Parse(b.data);
	ck_assert_int_eq(cJSON_GetArraySize(j), NGOOD);
	cJSON_Delete(j);
	buf_free(&b);
	buf_init(&b, 64);
	ck_assert_int_eq(offers_tsv(&L, NULL, &b), -EFBIG);
	buf_free(&b);
	offer_list_free(&L);
}
END_TEST

/* A backend's offers source: catalog types share "catalog/<provider>"; API types are keyed by
 * the endpoint and a keyed digest of the credentials, never the credentials themselves. */
START_TEST(test_source_keys)
{
	struct store *s = store_tmp("srckey");
	char a[OFFERD_SOURCE_MAX], b[OFFERD_SOURCE_MAX], c[OFFERD_SOURCE_MAX];
	const char *rp = "type: runpod\ncreds:\n  type: api_key\n  api_key: RPkey1234\n";
	const char *l1 = "type: lambda\ncreds:\n  type: api_key\n  api_key: SECRETlambda1\n";
	const char *l1r = "type: lambda\nregions: [us-east-1]\ncreds:\n  type: api_key\n"
			  "  api_key: SECRETlambda1\n";
	const char *l2 = "type: lambda\ncreds:\n  type: api_key\n  api_key: SECRETlambda2\n";
	ck_assert_int_eq(offerd_source_key(s, "runpod", rp, strlen(rp), a, sizeof(a)), 0);
	ck_assert_str_eq(a, "catalog/runpod");
	ck_assert_int_eq(offerd_source_key(s, "datacrunch", "", 0, a, sizeof(a)), 0);
	ck_assert_str_eq(a, "catalog/verda");
	ck_assert_int_eq(offerd_source_key(s, "lambda", l1, strlen(l1), a, sizeof(a)), 0);
	ck_assert_int_eq(offerd_source_key(s, "lambda", l1r, strlen(l1r), b, sizeof(b)), 0);
	ck_assert_int_eq(offerd_source_key(s, "lambda", l2, strlen(l2), c, sizeof(c)), 0);
	ck_assert_str_eq(a, b); /* regions are a cut of the same fetch */
	ck_assert_str_ne(a, c); /* other credentials, another source */
	ck_assert_ptr_null(strstr(a, "SECRET"));
	ck_assert_int_eq((int)strlen(a), (int)strlen("lambda/") + 16);
	ck_assert_int_eq(offerd_source_key(s, "vastai", "", 0, a, sizeof(a)), -ENOTSUP);
	store_close(s);
}
END_TEST

/* Refreshes that share a bk_share fetch a catalog once: the answer (data or error) is copied
 * to the others, "unchanged" still works per caller. */
START_TEST(test_share_fetches_once)
{
	const char *d = tmp_dir("share");
	char path[512], err[256];
	struct catalog *cat = NULL;
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/runpod.csv", d), 0);
	ck_assert_int_eq(file_write(path, fixture, strlen(fixture), 0644), 0);
	ck_assert_int_eq(catalog_new(d, &cat, err, sizeof(err)), 0);
	struct bk_share *sh = bk_share_new(60000);
	struct bk_offers_req req = {.ctx = {.project = "p", .name = "runpod", .type = "runpod",
					    .catalog = cat},
				    .known_version = "", .now = 1, .share = sh};
	struct bk_offers_res r1, r2, r3;
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	memset(&r3, 0, sizeof(r3));
	ck_assert_int_eq(backend_catalog_offers(&req, &r1, err, sizeof(err)), 0);
	ck_assert_int_eq(unlink(path), 0); /* gone: only the share can answer now */
	req.ctx.project = "q";
	ck_assert_int_eq(backend_catalog_offers(&req, &r2, err, sizeof(err)), 0);
	ck_assert_uint_eq(r1.list.n, r2.list.n);
	ck_assert_uint_gt(r2.list.n, 0);
	ck_assert_str_eq(r1.version, r2.version);
	req.known_version = r1.version;
	ck_assert_int_eq(backend_catalog_offers(&req, &r3, err, sizeof(err)), 0);
	ck_assert(r3.unchanged);
	ck_assert_uint_eq(bk_share_fetches(sh), 1);
	bk_offers_res_free(&r1);
	bk_offers_res_free(&r2);
	bk_offers_res_free(&r3);
	bk_share_free(sh);
	/* a failure is shared the same way */
	sh = bk_share_new(60000);
	req.share = sh;
	req.known_version = "";
	memset(&r1, 0, sizeof(r1));
	ck_assert_int_eq(backend_catalog_offers(&req, &r1, err, sizeof(err)), -ENOENT);
	ck_assert_int_eq(file_write(path, fixture, strlen(fixture), 0644), 0);
	err[0] = '\0';
	ck_assert_int_eq(backend_catalog_offers(&req, &r1, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "runpod.csv"));
	ck_assert_uint_eq(bk_share_fetches(sh), 1);
	bk_share_free(sh);
	catalog_free(cat);
}
END_TEST

Suite *offers_suite(void)
{
	Suite *s = suite_create("offers");
	TCase *csv = tcase_create("csv");
	TCase *match = tcase_create("match");
	TCase *out = tcase_create("render");
	TCase *all[] = {csv, match, out};
	for (size_t i = 0; i < 3; i++) {
		tcase_add_unchecked_fixture(all[i], tmp_root_setup, tmp_root_teardown);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(csv, test_read_fields);
	tcase_add_test(csv, test_read_columns);
	tcase_add_test(csv, test_providers);
	tcase_add_test(match, test_match_gpu);
	tcase_add_test(match, test_match_other);
	tcase_add_test(match, test_query_errors);
	tcase_add_test(out, test_sort_and_names);
	tcase_add_test(out, test_render);
	tcase_add_test(csv, test_source_keys);
	tcase_add_test(csv, test_share_fetches_once);
	return s;
}
