/* records: fleet records, instance rows and sealed endpoints between their JSON on disk and
 * their structs: the on-disk keys, defaults for missing or mistyped keys, unknown keys kept,
 * decode(encode(r)) == r, and rows exactly as fleetfs wrote them before core/records.c (the
 * rows of tests/integration/data/oldstore-v1). */
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../cache/seal.h"
#include "../../core/records.h"
#include "helpers.h"
#include "suites.h"

/* Rows of the old-store fixture, verbatim (mdb_dump). */
static const char OLD_FLEET[] =
	"{\"size\":318,\"mt_s\":7326287216,\"mt_ns\":829560613,\"cat\":7326287216,\"dg\":"
	"\"a499b61264381255e4fd2252aac3a2d030625073e26db881cf4298001f18daef\",\"deleted\":false,"
	"\"kind\":\"ssh\",\"hosts\":3,\"nodes_min\":0,\"nodes_target\":0,\"nodes_max\":0,\"err\":"
	"\"projects/main/fleets/gpu.yml:14: unknown key\",\"errat\":7326287218}";
static const char OLD_CLOUD_FLEET[] =
	"{\"size\":49,\"mt_s\":7326287218,\"mt_ns\":276050572,\"cat\":7326287218,\"err\":\"\","
	"\"dg\":\"88\",\"deleted\":false,\"kind\":\"cloud\",\"hosts\":0,\"nodes_min\":1,"
	"\"nodes_target\":1,\"nodes_max\":-1}";
static const char OLD_ROW[] =
	"{\"num\":1,\"host\":\"10.200.129.10\",\"port\":22,\"user\":\"fleet\",\"proxy\":"
	"\"fleet@10.216.23.2:22\",\"created\":7326287216,\"attempts\":0,\"hostkey\":\"ssh-ed25519 "
	"AAAAC3\",\"jumpkey\":\"ssh-ed25519 AAAAC4\",\"status\":\"idle\",\"started\":"
	"7326287218.073288,\"next_try\":0,\"reason\":\"ready: 2 cpus, 23 GiB memory, no GPUs\","
	"\"log\":[{\"at\":7326287218,\"what\":\"ready: 2 cpus, 23 GiB memory, no GPUs\"}],"
	"\"checked\":7326287219.490983,\"updated\":7326287219.490983,\"res\":{\"cpus\":2,\"arch\":"
	"\"x86_64\",\"memory_mib\":24105,\"disk_mib\":97985,\"gpus\":[{\"vendor\":\"nvidia\","
	"\"name\":\"A100\",\"memory_mib\":81920}],\"addrs\":\"10.200.129.10\"},\"unreachable\":false,"
	"\"check_error\":\"\"}";
/* Every field set, with keys no version knows (top level, in cloud, in an endpoint). */
static const char FULL_ROW[] =
	"{\"num\":7,\"status\":\"terminating\",\"reason\":\"r\",\"host\":\"h\",\"port\":2222,"
	"\"user\":\"u\",\"proxy\":\"j@p:22\",\"internal_ip\":\"10.0.0.7\",\"hostkey\":\"hk\","
	"\"jumpkey\":\"jk\",\"created\":1.5,\"updated\":2.5,\"started\":3.5,\"checked\":4.25,"
	"\"next_try\":5.125,\"attempts\":3,\"term_attempts\":4,\"unreachable\":true,"
	"\"check_error\":\"ce\",\"last_error\":\"le\",\"last_error_at\":6.5,"
	"\"termination_reason\":\"terminated_by_user\",\"res\":{\"cpus\":8,\"arch\":\"arm64\","
	"\"memory_mib\":1024,\"disk_mib\":2048,\"gpus\":[{\"vendor\":\"amd\",\"name\":\"MI300X\","
	"\"memory_mib\":196608},{\"vendor\":\"nvidia\",\"name\":\"H100\",\"memory_mib\":81920}],"
	"\"addrs\":\"a b\"},\"log\":[{\"at\":1,\"what\":\"one\"},{\"at\":2,\"what\":\"two\"}],"
	"\"cloud\":{\"backend\":\"lambda\",\"type\":\"lambda\",\"offer\":\"o\",\"region\":\"us\","
	"\"zone\":\"us-a\",\"instance\":\"gpu_1x\",\"price\":1.29,\"spot\":true,\"name\":\"n\","
	"\"at\":10.5,\"ended\":11.5,\"id\":\"i-1\",\"backend_data\":\"{}\",\"detail\":\"d\","
	"\"since\":12.5,\"timeout_min\":20,\"term_asked\":13.5,\"future_cloud\":[1,2]},"
	"\"tried\":[{\"offer\":\"o1\",\"error\":\"e1\",\"at\":9}],\"future\":{\"x\":\"y\"}}";

static cJSON *parse(const char *s)
{
	cJSON *o = cJSON_Parse(s);
	ck_assert_ptr_nonnull(o);
	return o;
}

/* decode(encode(r)) == r for a row: its encoding is a fixed point */
static void row_fixed_point(const struct instance_row *r)
{
	struct instance_row back;
	cJSON *e1 = instance_row_encode(r);
	instance_row_decode(e1, &back);
	cJSON *e2 = instance_row_encode(&back);
	ck_assert(cJSON_Compare(e1, e2, true));
	ck_assert_uint_eq(back.num, r->num);
	ck_assert_str_eq(back.status, r->status);
	ck_assert(back.checked == r->checked && back.next_try == r->next_try);
	ck_assert_uint_eq(back.nlog, r->nlog);
	ck_assert_uint_eq(back.ntried, r->ntried);
	ck_assert((back.cloud == NULL) == (r->cloud == NULL));
	ck_assert((back.res == NULL) == (r->res == NULL));
	instance_row_free(&back);
	cJSON_Delete(e1);
	cJSON_Delete(e2);
}

START_TEST(test_fleet_old_keys)
{
	cJSON *o = parse(OLD_FLEET);
	struct fleet_rec r;
	fleet_rec_decode(o, &r);
	ck_assert_uint_eq(r.spec_size, 318);
	ck_assert_int_eq((long long)r.spec_mtime.tv_sec, 7326287216LL);
	ck_assert_int_eq(r.spec_mtime.tv_nsec, 829560613);
	ck_assert(r.committed_at == 7326287216.0);
	ck_assert_str_eq(r.rejected, "projects/main/fleets/gpu.yml:14: unknown key");
	ck_assert(r.rejected_at == 7326287218.0);
	ck_assert_str_eq(r.digest,
			 "a499b61264381255e4fd2252aac3a2d030625073e26db881cf4298001f18daef");
	ck_assert(!r.deleted && r.ssh);
	ck_assert_int_eq(r.hosts, 3);
	ck_assert_ptr_null(r.extra);
	/* every key and value comes back (the order may differ: nothing reads it) */
	cJSON *e = fleet_rec_encode(&r);
	ck_assert(cJSON_Compare(o, e, true));
	cJSON_Delete(e);
	fleet_rec_free(&r);
	cJSON_Delete(o);

	o = parse(OLD_CLOUD_FLEET);
	fleet_rec_decode(o, &r);
	ck_assert(!r.ssh);
	ck_assert_int_eq(r.nodes_min, 1);
	ck_assert_int_eq(r.nodes_max, -1);
	ck_assert_str_eq(r.rejected, "");
	e = fleet_rec_encode(&r);
	ck_assert(cJSON_Compare(o, e, true));
	cJSON_Delete(e);
	fleet_rec_free(&r);
	cJSON_Delete(o);
}
END_TEST

START_TEST(test_fleet_defaults_and_extra)
{
	struct fleet_rec r, back;
	/* nothing, or not an object: every default */
	fleet_rec_decode(NULL, &r);
	ck_assert(r.spec_size == 0 && !r.deleted && !r.ssh && r.hosts == 0 && !r.extra);
	ck_assert_str_eq(r.rejected, "");
	ck_assert_str_eq(r.digest, "");
	fleet_rec_free(&r);
	/* mistyped known keys read as their defaults; unknown keys are kept */
	cJSON *o = parse("{\"size\":\"12\",\"deleted\":1,\"kind\":7,\"hosts\":null,"
			 "\"new_key\":{\"a\":[1,\"b\"]},\"other\":\"x\"}");
	fleet_rec_decode(o, &r);
	ck_assert(r.spec_size == 0 && !r.deleted && !r.ssh && r.hosts == 0);
	ck_assert_ptr_nonnull(r.extra);
	cJSON *e = fleet_rec_encode(&r);
	ck_assert(cJSON_Compare(cJSON_GetObjectItem(e, "new_key"),
				cJSON_GetObjectItem(o, "new_key"), true));
	ck_assert_str_eq(cJSON_GetObjectItem(e, "other")->valuestring, "x");
	fleet_rec_decode(e, &back);
	cJSON *e2 = fleet_rec_encode(&back);
	ck_assert(cJSON_Compare(e, e2, true));
	cJSON_Delete(e);
	cJSON_Delete(e2);
	fleet_rec_free(&back);
	fleet_rec_free(&r);
	cJSON_Delete(o);
}
END_TEST

START_TEST(test_row_old_keys)
{
	cJSON *o = parse(OLD_ROW);
	struct instance_row r;
	instance_row_decode(o, &r);
	ck_assert_uint_eq(r.num, 1);
	ck_assert_str_eq(r.status, "idle");
	ck_assert_str_eq(r.host, "10.200.129.10");
	ck_assert_int_eq(r.port, 22);
	ck_assert_str_eq(r.proxy, "fleet@10.216.23.2:22");
	ck_assert_str_eq(r.jumpkey, "ssh-ed25519 AAAAC4");
	ck_assert(r.checked == 7326287219.490983);
	ck_assert(r.started == 7326287218.073288);
	ck_assert_ptr_nonnull(r.res);
	ck_assert_int_eq(r.res->cpus, 2);
	ck_assert_uint_eq(r.res->ngpus, 1);
	ck_assert_str_eq(r.res->gpus[0].name, "A100");
	ck_assert_uint_eq(r.res->gpus[0].memory_mib, 81920);
	ck_assert_uint_eq(r.nlog, 1);
	ck_assert_ptr_null(r.cloud);
	ck_assert_uint_eq(r.ntried, 0);
	ck_assert_ptr_null(r.extra);
	/* the encoding holds every key of the old row with its value (check_error "" is the
	 * same as none: it is left out) */
	cJSON *e = instance_row_encode(&r);
	cJSON_DeleteItemFromObject(o, "check_error");
	ck_assert(cJSON_Compare(o, e, true));
	cJSON_Delete(e);
	row_fixed_point(&r);
	instance_row_free(&r);
	cJSON_Delete(o);
}
END_TEST

START_TEST(test_row_full_round_trip)
{
	cJSON *o = parse(FULL_ROW);
	struct instance_row r;
	instance_row_decode(o, &r);
	ck_assert_uint_eq(r.attempts, 3);
	ck_assert_uint_eq(r.term_attempts, 4);
	ck_assert(r.unreachable);
	ck_assert_str_eq(r.termination_reason, "terminated_by_user");
	ck_assert_ptr_nonnull(r.cloud);
	ck_assert_str_eq(r.cloud->id, "i-1");
	ck_assert(r.cloud->intent_at == 10.5 && r.cloud->create_ended == 11.5);
	ck_assert(r.cloud->created_at == 12.5 && r.cloud->term_asked == 13.5);
	ck_assert(r.cloud->spot && r.cloud->price == 1.29);
	ck_assert_int_eq(r.cloud->timeout_min, 20);
	ck_assert_ptr_nonnull(r.cloud->extra);
	ck_assert_uint_eq(r.ntried, 1);
	ck_assert_str_eq(r.tried[0].error, "e1");
	ck_assert_uint_eq(r.res->ngpus, 2);
	ck_assert_ptr_nonnull(r.extra);
	/* all of it, unknown keys included, encodes back to the same JSON */
	cJSON *e = instance_row_encode(&r);
	ck_assert(cJSON_Compare(o, e, true));
	cJSON_Delete(e);
	row_fixed_point(&r);
	/* the helpers: history and tried keep the newest; dropping cloud and tried */
	for (int i = 0; i < 30; i++)
		instance_row_log(&r, i, "x", 20);
	ck_assert_uint_eq(r.nlog, 20);
	ck_assert(r.log[0].at == 10);
	instance_row_try(&r, "o2", "e2", 1, 1);
	ck_assert_uint_eq(r.ntried, 1);
	ck_assert_str_eq(r.tried[0].offer, "o2");
	instance_row_drop_cloud(&r);
	instance_row_drop_tried(&r);
	e = instance_row_encode(&r);
	ck_assert_ptr_null(cJSON_GetObjectItem(e, "cloud"));
	ck_assert_ptr_null(cJSON_GetObjectItem(e, "tried"));
	ck_assert_ptr_nonnull(cJSON_GetObjectItem(e, "future"));
	cJSON_Delete(e);
	row_fixed_point(&r);
	instance_row_free(&r);
	cJSON_Delete(o);
}
END_TEST

START_TEST(test_row_defaults)
{
	struct instance_row r;
	cJSON *o = parse("{\"num\":-3,\"status\":5,\"port\":\"22\",\"res\":[],\"log\":{},"
			 "\"cloud\":\"x\",\"tried\":7,\"attempts\":1e300,\"unreachable\":\"yes\"}");
	instance_row_decode(o, &r);
	ck_assert_uint_eq(r.num, 0);
	ck_assert_str_eq(r.status, "");
	ck_assert_int_eq(r.port, 0);
	ck_assert_ptr_null(r.res);
	ck_assert_uint_eq(r.nlog, 0);
	ck_assert_ptr_null(r.cloud);
	ck_assert_uint_eq(r.ntried, 0);
	ck_assert_uint_eq(r.attempts, 0xffffffffu);
	ck_assert(!r.unreachable);
	ck_assert_str_eq(r.host, "");
	ck_assert_str_eq(r.hostkey, "");
	row_fixed_point(&r);
	instance_row_free(&r);
	cJSON_Delete(o);
	instance_row_decode(NULL, &r);
	row_fixed_point(&r);
	/* a new VM reads as all "" */
	struct cloud_vm *c = instance_row_new_cloud(&r);
	ck_assert_str_eq(c->name, "");
	ck_assert_str_eq(c->id, "");
	row_fixed_point(&r);
	instance_row_free(&r);
}
END_TEST

START_TEST(test_host_recs)
{
	static const char hosts[] =
		"[{\"hostname\":\"a\",\"port\":22,\"user\":\"u\",\"key\":\"KEY1\",\"key_path\":"
		"\"/k\",\"blocks\":2},{\"hostname\":\"b\",\"port\":2200,\"user\":\"v\",\"key\":"
		"\"KEY2\",\"key_path\":\"\",\"proxy\":{\"hostname\":\"j\",\"port\":22,\"user\":\"w\","
		"\"key\":\"KEY3\",\"key_path\":\"\"},\"internal_ip\":\"10.0.0.2\",\"blocks\":0}]";
	struct host_rec *v = NULL;
	size_t n = 0;
	ck_assert_int_eq(host_recs_decode_text(hosts, strlen(hosts), &v, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(v[0].ep.key, "KEY1");
	ck_assert_str_eq(v[0].ep.key_path, "/k");
	ck_assert_int_eq(v[0].blocks, 2);
	ck_assert_ptr_null(v[0].proxy);
	ck_assert_int_eq(v[1].ep.port, 2200);
	ck_assert_ptr_nonnull(v[1].proxy);
	ck_assert_str_eq(v[1].proxy->user, "w");
	ck_assert_str_eq(v[1].internal_ip, "10.0.0.2");
	char *js = host_recs_encode_text(v, n);
	struct host_rec *w = NULL;
	size_t m = 0;
	ck_assert_int_eq(host_recs_decode_text(js, strlen(js), &w, &m), 0);
	ck_assert_uint_eq(m, 2);
	ck_assert_str_eq(w[1].proxy->key, "KEY3");
	char *js2 = host_recs_encode_text(w, m);
	ck_assert_str_eq(js, js2);
	seal_free_secret(js, strlen(js));
	seal_free_secret(js2, strlen(js2));
	/* one endpoint (the per-row secret, as core/cloud.c writes it: no key_path, no blocks) */
	static const char one[] = "{\"hostname\":\"1.2.3.4\",\"port\":22,\"user\":\"ubuntu\","
				  "\"key\":\"K\"}";
	struct host_rec h;
	ck_assert_int_eq(host_rec_decode_text(one, strlen(one), &h), 0);
	js = host_rec_encode_text(&h);
	cJSON *a = parse(one), *b = parse(js);
	ck_assert(cJSON_Compare(a, b, true));
	cJSON_Delete(a);
	cJSON_Delete(b);
	seal_free_secret(js, strlen(js));
	host_rec_free(&h);
	ck_assert_int_eq(host_rec_decode_text("[]", 2, &h), -EIO);
	ck_assert_int_eq(host_rec_decode_text("nope", 4, &h), -EIO);
	host_recs_free(v, n);
	host_recs_free(w, m);
	ck_assert_int_eq(host_recs_decode_text("{}", 2, &w, &m), -EIO);
	ck_assert_ptr_null(w);
	ck_assert_uint_eq(m, 0);
}
END_TEST

START_TEST(test_store_round_trip)
{
	struct store *s = store_tmp("records");
	struct stx *tx = NULL;
	cJSON *o = parse(FULL_ROW), *back = NULL;
	ck_assert_int_eq(store_begin(s, true, &tx), 0);
	/* a row as an older (or newer) fleetfs stored it */
	ck_assert_int_eq(store_obj_put(tx, SDB_INSTANCES, "main/gpu/00000007", o, "main"), 0);
	struct instance_row r;
	ck_assert_int_eq(instance_row_get(tx, "main/gpu/00000007", &r), 0);
	ck_assert_int_eq(instance_row_put(tx, "main/gpu/00000007", &r, "main"), 0);
	ck_assert_int_eq(store_obj_get(tx, SDB_INSTANCES, "main/gpu/00000007", &back), 0);
	ck_assert(cJSON_Compare(o, back, true));
	instance_row_free(&r);
	struct instance_list l;
	ck_assert_int_eq(instance_row_list(tx, "main/", &l), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.v[0].key, "main/gpu/00000007");
	ck_assert_uint_eq(l.v[0].row.num, 7);
	instance_list_free(&l);
	ck_assert_int_eq(instance_row_get(tx, "main/gpu/00000008", &r), -ENOENT);
	struct fleet_rec f;
	cJSON *fo = parse(OLD_FLEET), *fb = NULL;
	ck_assert_int_eq(store_obj_put(tx, SDB_FLEETS, "main/gpu", fo, "main"), 0);
	ck_assert_int_eq(fleet_rec_get(tx, "main/gpu", &f), 0);
	ck_assert_int_eq(fleet_rec_put(tx, "main/gpu", &f, "main"), 0);
	ck_assert_int_eq(store_obj_get(tx, SDB_FLEETS, "main/gpu", &fb), 0);
	ck_assert(cJSON_Compare(fo, fb, true));
	fleet_rec_free(&f);
	struct fleet_list fl;
	ck_assert_int_eq(fleet_rec_list(tx, "main/", &fl), 0);
	ck_assert_uint_eq(fl.n, 1);
	ck_assert(fl.v[0].rec.ssh);
	fleet_list_free(&fl);
	store_abort(tx);
	cJSON_Delete(o);
	cJSON_Delete(back);
	cJSON_Delete(fo);
	cJSON_Delete(fb);
	store_close(s);
}
END_TEST

Suite *records_suite(void)
{
	Suite *s = suite_create("records");
	TCase *tc = tcase_create("records");
	tcase_add_unchecked_fixture(tc, tmp_root_setup, tmp_root_teardown);
	tcase_add_test(tc, test_fleet_old_keys);
	tcase_add_test(tc, test_fleet_defaults_and_extra);
	tcase_add_test(tc, test_row_old_keys);
	tcase_add_test(tc, test_row_full_round_trip);
	tcase_add_test(tc, test_row_defaults);
	tcase_add_test(tc, test_host_recs);
	tcase_add_test(tc, test_store_round_trip);
	suite_add_tcase(s, tc);
	return s;
}
