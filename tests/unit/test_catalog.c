/* Unit tests for backends/catalog.c (the zip reader on good and corrupt archives, directory
 * sources and their versions, locations) and backends/backend.c (the catalog offers source:
 * regions, the registry), plus the offers cache's CSV round trip and disk ranges in
 * core/offers.c. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "../../backends/backend.h"
#include "../../backends/catalog.h"
#include "../../core/offers.h"
#include "helpers.h"
#include "suites.h"

static const char csv[] =
	"instance_name,location,price,cpu,memory,gpu_count,gpu_name,gpu_memory,spot,disk_size,"
	"gpu_vendor,flags,cpu_arch,provider_data\n"
	"p4d.24xlarge,us-east-1,32.77,96,1152,8,A100,40,False,,nvidia,,x86,\n"
	"g5.xlarge,us-west-2,1.006,4,16,1,A10G,24,True,,nvidia,,,\n"
	"\"odd,name\",eu-west-1,0.5,2,4,0,,,False,250,,,arm,\"{\"\"k\"\": 1}\"\n"
	"n2,us-central1-a,0.2,2,8,0,,,False,,,,,\n";

/* A zip archive (in a malloc'd buffer) holding member name with text, compressed. */
static char *make_zip(const char *name, const char *text, size_t *len)
{
	char path[512];
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/c.zip", tmp_dir("catalog")), 0);
	int ze = 0;
	zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &ze);
	ck_assert_ptr_nonnull(za);
	zip_source_t *src = zip_source_buffer(za, text, strlen(text), 0);
	ck_assert_ptr_nonnull(src);
	ck_assert_int_ge(zip_file_add(za, name, src, ZIP_FL_OVERWRITE), 0);
	ck_assert_int_eq(zip_close(za), 0);
	struct buf b;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(buf_read_file(&b, path), 0);
	return buf_steal(&b, len);
}

START_TEST(test_unzip)
{
	size_t len = 0;
	char *z = make_zip("aws.csv", csv, &len);
	char err[256] = "";
	struct buf out;
	buf_init(&out, 1 << 20);
	ck_assert_int_eq(catalog_unzip(z, len, "aws.csv", &out, err, sizeof(err)), 0);
	ck_assert_str_eq(out.data, csv);
	buf_free(&out);

	/* no such member */
	buf_init(&out, 1 << 20);
	ck_assert_int_eq(catalog_unzip(z, len, "gcp.csv", &out, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "gcp.csv") != NULL, "%s", err);
	buf_free(&out);

	/* over the limit */
	buf_init(&out, 16);
	ck_assert_int_eq(catalog_unzip(z, len, "aws.csv", &out, err, sizeof(err)), -EFBIG);
	buf_free(&out);

	/* not a zip at all */
	buf_init(&out, 1 << 20);
	err[0] = '\0';
	ck_assert_int_eq(catalog_unzip(csv, strlen(csv), "aws.csv", &out, err, sizeof(err)),
			 -EPROTO);
	ck_assert_msg(strstr(err, "not a zip") != NULL, "%s", err);
	ck_assert_int_eq(catalog_unzip("", 0, "aws.csv", &out, err, sizeof(err)), -EPROTO);
	buf_free(&out);

	/* truncated: the central directory is gone */
	buf_init(&out, 1 << 20);
	ck_assert_int_eq(catalog_unzip(z, len / 2, "aws.csv", &out, err, sizeof(err)), -EPROTO);
	buf_free(&out);

	/* corrupt data: a byte of the compressed member flipped (after the 30-byte local header
	 * and the name): inflate or the CRC check fails, never a silently different CSV */
	char *bad = xmalloc(len);
	memcpy(bad, z, len);
	bad[30 + strlen("aws.csv") + 5] ^= 0x55;
	buf_init(&out, 1 << 20);
	err[0] = '\0';
	ck_assert_int_eq(catalog_unzip(bad, len, "aws.csv", &out, err, sizeof(err)), -EPROTO);
	ck_assert_msg(err[0] != '\0', "no reason");
	buf_free(&out);
	free(bad);
	free(z);
}
END_TEST

START_TEST(test_locations)
{
	struct catalog *c = NULL;
	char err[256];
	static const char *const bad[] = {"relative/dir", "ftp://x/y", "file:///tmp"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(catalog_new(bad[i], &c, err, sizeof(err)) == -EINVAL, "%s", bad[i]);
	ck_assert_int_eq(catalog_new("https://example.invalid/v3/", &c, err, sizeof(err)), 0);
	ck_assert_str_eq(catalog_location(c), "https://example.invalid/v3");
	catalog_free(c);

	/* the default: gpuhunt's environment variables, then the public catalog */
	unsetenv("GPUHUNT_CATALOG_DIR");
	unsetenv("GPUHUNT_CATALOG_URL");
	ck_assert_int_eq(catalog_new(NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(catalog_location(c), CATALOG_DEFAULT_URL);
	catalog_free(c);
	setenv("GPUHUNT_CATALOG_URL", "http://127.0.0.1:1/v3", 1);
	ck_assert_int_eq(catalog_new(NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(catalog_location(c), "http://127.0.0.1:1/v3");
	catalog_free(c);
	setenv("GPUHUNT_CATALOG_DIR", "/srv/catalog", 1);
	ck_assert_int_eq(catalog_new(NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(catalog_location(c), "/srv/catalog");
	catalog_free(c);
	unsetenv("GPUHUNT_CATALOG_DIR");
	unsetenv("GPUHUNT_CATALOG_URL");

	/* none: every fetch fails with a reason */
	struct catalog_fetch f;
	ck_assert_int_eq(catalog_new("none", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(catalog_fetch(c, "aws", "", &f, err, sizeof(err)), -ENOTSUP);
	ck_assert_msg(strstr(err, "none") != NULL, "%s", err);
	catalog_free(c);
}
END_TEST

START_TEST(test_dir_source)
{
	const char *d = tmp_dir("catdir");
	char path[512], err[256] = "";
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/aws.csv", d), 0);
	ck_assert_int_eq(file_write(path, csv, strlen(csv), 0644), 0);
	struct catalog *c = NULL;
	struct catalog_fetch f;
	ck_assert_int_eq(catalog_new(d, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(catalog_fetch(c, "aws", "", &f, err, sizeof(err)), 0);
	ck_assert(!f.unchanged);
	ck_assert_str_eq(f.csv.data, csv);
	ck_assert_str_eq(f.source, path);
	char v1[CATALOG_VERSION_MAX];
	ck_assert_int_eq(fmt(v1, sizeof(v1), "%s", f.version), 0);
	ck_assert(v1[0] != '\0');
	catalog_fetch_free(&f);

	/* the same version: nothing read */
	ck_assert_int_eq(catalog_fetch(c, "aws", v1, &f, err, sizeof(err)), 0);
	ck_assert(f.unchanged);
	ck_assert_uint_eq(f.csv.len, 0);
	catalog_fetch_free(&f);

	/* a new file is a new version */
	ck_assert_int_eq(file_write(path, csv, strlen(csv) - 10, 0644), 0);
	ck_assert_int_eq(catalog_fetch(c, "aws", v1, &f, err, sizeof(err)), 0);
	ck_assert(!f.unchanged);
	ck_assert_str_ne(f.version, v1);
	catalog_fetch_free(&f);

	/* a provider without a file */
	ck_assert_int_eq(catalog_fetch(c, "gcp", "", &f, err, sizeof(err)), -ENOENT);
	ck_assert_msg(strstr(err, "gcp.csv") != NULL, "%s", err);
	catalog_free(c);
}
END_TEST

START_TEST(test_backend_offers)
{
	const char *d = tmp_dir("catoffers");
	char path[512], err[256] = "";
	ck_assert_int_eq(fmt(path, sizeof(path), "%s/gcp.csv", d), 0);
	ck_assert_int_eq(file_write(path, csv, strlen(csv), 0644), 0);
	struct catalog *c = NULL;
	ck_assert_int_eq(catalog_new(d, &c, err, sizeof(err)), 0);
	const struct backend_ops *ops = backend_find("gcp");
	ck_assert_ptr_nonnull(ops);
	ck_assert_ptr_nonnull(ops->offers);
	ck_assert_int_eq(backend_type_find("gcp")->offers_ttl, 15 * 60);
	ck_assert_str_eq(backend_type_find("gcp")->offers_source, "catalog");
	ck_assert_ptr_null(backend_find("nosuch"));
	ck_assert_ptr_null(backend_type_find("nosuch"));
	ck_assert_int_eq(backend_type_find("vultr")->offers_ttl, 180);

	/* regions cut the catalog; a zone belongs to its region */
	static const char cfg[] = "type: gcp\nproject_id: p\nregions: [us-central1, eu-west-1]\n"
				  "creds:\n  type: default\n";
	struct backend_config bc, bc2;
	ck_assert_int_eq(backend_config_parse(cfg, strlen(cfg), &bc, err, sizeof(err)), 0);
	struct bk_offers_req req = {.ctx = {.project = "main", .name = "gcp-eu", .type = "gcp",
					    .config = &bc, .catalog = c},
				    .known_version = "", .now = 1700000000};
	struct bk_offers_res res;
	memset(&res, 0, sizeof(res));
	ck_assert_int_eq(ops->offers(&req, &res, err, sizeof(err)), 0);
	ck_assert_uint_eq(res.list.n, 2);
	ck_assert_str_eq(res.list.v[0].instance, "odd,name");
	ck_assert_str_eq(res.list.v[0].backend, "gcp-eu");
	ck_assert_str_eq(res.list.v[0].type, "gcp");
	ck_assert_int_eq(res.list.v[0].fetched_at, 1700000000);
	ck_assert_str_eq(res.list.v[1].region, "us-central1-a");
	ck_assert_uint_eq(res.list.v[1].disk_mib, 100 * 1024); /* gcp: 20GB..32TB ∩ 100GB.. */
	char version[CATALOG_VERSION_MAX];
	ck_assert_int_eq(fmt(version, sizeof(version), "%s", res.version), 0);
	bk_offers_res_free(&res);

	/* unchanged source: no list */
	memset(&res, 0, sizeof(res));
	req.known_version = version;
	ck_assert_int_eq(ops->offers(&req, &res, err, sizeof(err)), 0);
	ck_assert(res.unchanged);
	ck_assert_uint_eq(res.list.n, 0);
	bk_offers_res_free(&res);

	/* no regions: everything */
	static const char cfg2[] = "type: gcp\nproject_id: p\ncreds:\n  type: default\n";
	memset(&res, 0, sizeof(res));
	req.known_version = "";
	ck_assert_int_eq(backend_config_parse(cfg2, strlen(cfg2), &bc2, err, sizeof(err)), 0);
	req.ctx.config = &bc2;
	ck_assert_int_eq(ops->offers(&req, &res, err, sizeof(err)), 0);
	ck_assert_uint_eq(res.list.n, 4);
	bk_offers_res_free(&res);
	backend_config_free(&bc);
	backend_config_free(&bc2);
	catalog_free(c);
}
END_TEST

START_TEST(test_cache_roundtrip)
{
	struct offer_origin org = {.backend = "aws-dev", .type = "aws", .source = "catalog",
				   .fetched_at = 42};
	struct offer_list a = {0}, b = {0};
	char err[256];
	size_t skipped = 0;
	ck_assert_int_eq(offers_parse_csv(csv, strlen(csv), &org, &a, &skipped, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(a.n, 4);
	a.v[1].availability = offer_list_intern(&a, "no_quota");
	/* interned: equal strings share one copy */
	ck_assert_ptr_eq(a.v[0].backend, a.v[3].backend);
	ck_assert_ptr_eq(a.v[0].source, a.v[2].source);
	struct buf out;
	buf_init(&out, 1 << 20);
	ck_assert_int_eq(offers_write_csv(&a, &out), 0);
	ck_assert_int_eq(offers_parse_csv(out.data, out.len, &org, &b, &skipped, err, sizeof(err)),
			 0);
	ck_assert_uint_eq(skipped, 0);
	ck_assert_uint_eq(b.n, a.n);
	for (size_t i = 0; i < a.n; i++) {
		const struct offer *x = &a.v[i], *y = &b.v[i];
		ck_assert_str_eq(x->instance, y->instance);
		ck_assert_str_eq(x->region, y->region);
		ck_assert(x->price == y->price);
		ck_assert_int_eq(x->cpus, y->cpus);
		ck_assert_uint_eq(x->memory_mib, y->memory_mib);
		ck_assert_uint_eq(x->disk_mib, y->disk_mib);
		ck_assert_int_eq(x->disk_fixed, y->disk_fixed);
		ck_assert_str_eq(x->gpu_vendor, y->gpu_vendor);
		ck_assert_str_eq(x->gpu_name, y->gpu_name);
		ck_assert_int_eq(x->gpu_count, y->gpu_count);
		ck_assert_uint_eq(x->gpu_memory_mib, y->gpu_memory_mib);
		ck_assert_int_eq(x->spot, y->spot);
		ck_assert_str_eq(x->cpu_arch, y->cpu_arch);
		ck_assert_str_eq(x->availability, y->availability);
		ck_assert_int_eq(y->fetched_at, 42);
	}
	ck_assert_str_eq(b.v[1].availability, "no_quota");
	buf_free(&out);
	offer_list_free(&b);

	/* filtering by region keeps zones of the region, case-insensitively */
	const char *regions[] = {"US-CENTRAL1", "eu-west-1"};
	offers_filter_regions(&a, regions, 2);
	ck_assert_uint_eq(a.n, 2);
	offer_list_free(&a);
}
END_TEST

START_TEST(test_disk_ranges)
{
	const struct disk_range *az = &backend_type_find("azure")->disk;
	ck_assert(az->min == 30 && az->max == 4095);
	const struct disk_range *rp = &backend_type_find("runpod")->disk;
	ck_assert(disk_range_pick(rp, 0.5, -1) == 1); /* {0, 0}: 1.. unbounded */
	ck_assert(disk_range_pick(rp, 50000, -1) == 50000);
	ck_assert(disk_range_pick(az, 5000, -1) < 0);
	ck_assert(disk_range_pick(az, -1, -1) == 100); /* dstack's default request */
	struct offer_origin org = {.backend = "aws", .type = "aws", .source = "catalog",
				   .disk = backend_type_find("aws")->disk};
	struct offer_list l = {0};
	char err[256];
	ck_assert_int_eq(offers_parse_csv(csv, strlen(csv), &org, &l, NULL, err, sizeof(err)), 0);
	const struct offer *nodisk = &l.v[0], *fixed = &l.v[2];
	struct offer_query *q = NULL;
	/* no disk in the catalog: the lower bound of the request within aws's 100GB..16TB */
	ck_assert_int_eq(offers_query_parse("disk=200GB..", &q, err, sizeof(err)), 0);
	ck_assert(offers_match(q, nodisk));
	ck_assert_uint_eq(offers_disk_for(q, nodisk), 200 * 1024);
	ck_assert(offers_match(q, fixed)); /* 250GB from the catalog */
	ck_assert_uint_eq(offers_disk_for(q, fixed), 250 * 1024);
	offers_query_free(q);
	ck_assert_int_eq(offers_query_parse("disk=..50GB", &q, err, sizeof(err)), 0);
	ck_assert(!offers_match(q, nodisk)); /* aws cannot give less than 100GB */
	ck_assert(!offers_match(q, fixed));
	ck_assert_uint_eq(offers_disk_for(q, nodisk), 0);
	offers_query_free(q);
	ck_assert_int_eq(offers_query_parse("disk=20TB..", &q, err, sizeof(err)), 0);
	ck_assert(!offers_match(q, nodisk)); /* over aws's 16TB */
	offers_query_free(q);
	ck_assert_int_eq(offers_query_parse("disk=50GB..120GB", &q, err, sizeof(err)), 0);
	ck_assert(offers_match(q, nodisk));
	ck_assert_uint_eq(offers_disk_for(q, nodisk), 100 * 1024);
	offers_query_free(q);
	offer_list_free(&l);
}
END_TEST

Suite *catalog_suite(void)
{
	Suite *s = suite_create("catalog");
	TCase *tc = tcase_create("catalog");
	tcase_add_test(tc, test_unzip);
	tcase_add_test(tc, test_locations);
	tcase_add_test(tc, test_dir_source);
	tcase_add_test(tc, test_backend_offers);
	tcase_add_test(tc, test_cache_roundtrip);
	tcase_add_test(tc, test_disk_ranges);
	suite_add_tcase(s, tc);
	return s;
}
