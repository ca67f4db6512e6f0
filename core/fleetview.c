/* fleetview: the generated files of fleets (status, ssh_config, known_hosts, instance files).
 * Everything here reads the store only; nothing connects anywhere. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleets.h"
#include "../lib/jsonx.h"

static void ytime(struct buf *out, const char *key, double t, const char *indent)
{
	char ts[32];
	if (t <= 0) {
		buf_printf(out, "%s%s: null\n", indent, key);
		return;
	}
	time_iso((time_t)t, ts, sizeof(ts));
	buf_printf(out, "%s%s: %s\n", indent, key, ts);
}

static void ystr(struct buf *out, const char *indent, const char *key, const char *v)
{
	buf_printf(out, "%s%s: ", indent, key);
	if (v && *v)
		buf_yaml_str(out, v);
	else
		buf_printf(out, "null");
	buf_printf(out, "\n");
}

/* A cloud instance's provider side (the offer, the VM's name, id, zone) and the offers
 * tried in the current round with their errors. */
static void render_cloud(struct buf *out, const cJSON *cl, const cJSON *tried)
{
	static const char *const keys[] = {"backend", "type", "offer", "region", "zone",
					   "instance", "name", "id", "detail"};
	const cJSON *t;
	if (cJSON_IsObject(cl)) {
		buf_printf(out, "cloud:\n");
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			ystr(out, "  ", keys[i], jx_str(cl, keys[i]));
		buf_printf(out, "  price: %g\n  spot: %s\n", jx_num(cl, "price"),
			   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cl, "spot")) ? "true"
											 : "false");
		ytime(out, "created", jx_num(cl, "since"), "  ");
	}
	if (!cJSON_IsArray(tried) || !cJSON_GetArraySize(tried))
		return;
	buf_printf(out, "tried:\n");
	cJSON_ArrayForEach(t, tried)
	{
		ystr(out, "- ", "offer", jx_str(t, "offer"));
		ystr(out, "  ", "error", jx_str(t, "error"));
		ytime(out, "at", jx_num(t, "at"), "  ");
	}
}

static int load(struct store *s, const char *project, const char *fleet, cJSON **rec,
		cJSON **insts)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 3];
	*rec = *insts = NULL;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	fmt(key, sizeof(key), "%s/%s", project, fleet);
	r = store_obj_get(tx, SDB_FLEETS, key, rec);
	if (!r) {
		fmt(key, sizeof(key), "%s/%s/", project, fleet);
		r = store_obj_list(tx, SDB_INSTANCES, key, insts);
	}
	store_abort(tx);
	if (r) {
		cJSON_Delete(*rec);
		*rec = NULL;
	}
	return r;
}

int fleets_render_status(struct store *s, const char *project, const char *fleet,
			 struct buf *out)
{
	cJSON *rec = NULL, *insts = NULL, *it;
	int r = load(s, project, fleet, &rec, &insts);
	if (r)
		return r;
	static const char *const sts[] = {IST_PENDING, IST_PROVISIONING, IST_IDLE, IST_BUSY,
					  IST_TERMINATING, IST_TERMINATED};
	size_t counts[6] = {0}, unreachable = 0;
	double next = 0;
	const char *last_err = "";
	double last_err_at = 0;
	cJSON_ArrayForEach(it, insts)
	{
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
		for (size_t i = 0; i < 6; i++)
			counts[i] += !strcmp(jx_str(v, "status"), sts[i]);
		unreachable += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "unreachable"));
		double nt = jx_num(v, "next_try");
		if (nt > 0 && (!next || nt < next) && strcmp(jx_str(v, "status"), IST_IDLE))
			next = nt;
		if (jx_num(v, "last_error_at") > last_err_at && *jx_str(v, "last_error")) {
			last_err_at = jx_num(v, "last_error_at");
			last_err = jx_str(v, "last_error");
		}
	}
	bool deleted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "deleted"));
	bool ssh = !strcmp(jx_str(rec, "kind"), "ssh");
	buf_printf(out, "# fleetfs fleet status (format: docs/fleets.md#status)\n");
	buf_printf(out, "name: %s\nkind: %s\nstatus: %s\n", fleet, ssh ? "ssh" : "cloud",
		   deleted ? "terminating" : "active");
	buf_printf(out, "desired:\n");
	if (ssh)
		buf_printf(out, "  hosts: %.0f\n", deleted ? 0.0 : jx_num(rec, "hosts"));
	else if (jx_num(rec, "nodes_max") < 0)
		buf_printf(out, "  nodes: {min: %.0f, target: %.0f, max: null}\n",
			   jx_num(rec, "nodes_min"), jx_num(rec, "nodes_target"));
	else
		buf_printf(out, "  nodes: {min: %.0f, target: %.0f, max: %.0f}\n",
			   jx_num(rec, "nodes_min"), jx_num(rec, "nodes_target"), jx_num(rec, "nodes_max"));
	buf_printf(out, "actual:\n");
	for (size_t i = 0; i < 6; i++)
		buf_printf(out, "  %s: %zu\n", sts[i], counts[i]);
	buf_printf(out, "  unreachable: %zu\n", unreachable);
	ytime(out, "next_retry", next, "");
	if (*jx_str(rec, "err")) {
		buf_printf(out, "last_rejected_write:\n");
		ytime(out, "at", jx_num(rec, "errat"), "  ");
		ystr(out, "  ", "message", jx_str(rec, "err"));
	} else {
		buf_printf(out, "last_rejected_write: null\n");
	}
	if (*last_err) {
		buf_printf(out, "last_error:\n");
		ytime(out, "at", last_err_at, "  ");
		ystr(out, "  ", "message", last_err);
	} else {
		buf_printf(out, "last_error: null\n");
	}
	buf_printf(out, "instances:%s\n", cJSON_GetArraySize(insts) ? "" : " []");
	cJSON_ArrayForEach(it, insts)
	{
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
		buf_printf(out, "- num: %.0f\n", jx_num(v, "num"));
		ystr(out, "  ", "host", jx_str(v, "host"));
		buf_printf(out, "  status: %s\n", jx_str(v, "status"));
		buf_printf(out, "  unreachable: %s\n",
			   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "unreachable")) ? "true"
											    : "false");
		ystr(out, "  ", "reason", jx_str(v, "reason"));
	}
	cJSON_Delete(rec);
	cJSON_Delete(insts);
	return 0;
}

/* Host stanza of one instance (and of its jump host). */
static void stanza(struct buf *out, const char *mnt, const char *project, const char *fleet,
		   const cJSON *v)
{
	const char *host = jx_str(v, "host");
	if (!*host)
		return;
	unsigned num = (unsigned)jx_num(v, "num");
	const char *proxy = jx_str(v, "proxy");
	buf_printf(out, "Host %s-%u\n", fleet, num);
	buf_printf(out, "  HostName %s\n", host);
	buf_printf(out, "  Port %.0f\n", jx_num(v, "port") ? jx_num(v, "port") : 22);
	buf_printf(out, "  User %s\n", jx_str(v, "user"));
	buf_printf(out, "  IdentityFile \"%s/projects/%s/ssh/id_rsa\"\n", mnt, project);
	buf_printf(out, "  IdentitiesOnly yes\n");
	buf_printf(out, "  UserKnownHostsFile \"%s/projects/%s/ssh/known_hosts\"\n", mnt, project);
	buf_printf(out, "  StrictHostKeyChecking yes\n");
	buf_printf(out, "  BatchMode yes\n");
	if (*proxy)
		buf_printf(out, "  ProxyJump %s-%u-jump\n", fleet, num);
	buf_printf(out, "\n");
	if (*proxy) {
		/* user@host:port */
		char u[256] = "", h[256] = "", port[16] = "22";
		const char *at = strchr(proxy, '@');
		const char *colon = strrchr(proxy, ':');
		if (at && colon && colon > at) {
			fmt(u, sizeof(u), "%.*s", (int)(at - proxy), proxy);
			fmt(h, sizeof(h), "%.*s", (int)(colon - at - 1), at + 1);
			fmt(port, sizeof(port), "%s", colon + 1);
		}
		buf_printf(out, "Host %s-%u-jump\n  HostName %s\n  Port %s\n  User %s\n", fleet, num,
			   h, port, u);
		buf_printf(out, "  IdentityFile \"%s/projects/%s/ssh/id_rsa\"\n", mnt, project);
		buf_printf(out, "  IdentitiesOnly yes\n");
		buf_printf(out, "  UserKnownHostsFile \"%s/projects/%s/ssh/known_hosts\"\n", mnt,
			   project);
		buf_printf(out, "  StrictHostKeyChecking yes\n  BatchMode yes\n\n");
	}
}

static bool stanza_worthy(const cJSON *v)
{
	const char *st = jx_str(v, "status");
	return *jx_str(v, "hostkey") && (!strcmp(st, IST_IDLE) || !strcmp(st, IST_BUSY) ||
				       !strcmp(st, IST_PROVISIONING));
}

int fleets_render_ssh_config(struct store *s, const char *mnt, const char *project,
			     const char *fleet, struct buf *out)
{
	struct stx *tx = NULL;
	char prefix[2 * STORE_NAME_MAX + 3];
	cJSON *insts = NULL, *it;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	if (fleet)
		fmt(prefix, sizeof(prefix), "%s/%s/", project, fleet);
	else
		fmt(prefix, sizeof(prefix), "%s/", project);
	r = store_obj_list(tx, SDB_INSTANCES, prefix, &insts);
	store_abort(tx);
	if (r)
		return r;
	buf_printf(out, "# fleetfs: ssh -F <this file> <fleet>-<num>, or Include it from "
			"~/.ssh/config\n\n");
	cJSON_ArrayForEach(it, insts)
	{
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
		if (!stanza_worthy(v))
			continue;
		char f[STORE_NAME_MAX];
		const char *k = jx_str(it, "key") + strlen(project) + 1;
		const char *slash = strchr(k, '/');
		fmt(f, sizeof(f), "%.*s", slash ? (int)(slash - k) : 0, k);
		stanza(out, mnt, project, f, v);
	}
	cJSON_Delete(insts);
	return 0;
}

static void known_line(struct buf *out, const char *host, int port, const char *key)
{
	if (!*host || !*key)
		return;
	if (port && port != 22)
		buf_printf(out, "[%s]:%d %s\n", host, port, key);
	else
		buf_printf(out, "%s %s\n", host, key);
}

int fleets_render_known_hosts(struct store *s, const char *project, struct buf *out)
{
	struct stx *tx = NULL;
	char prefix[STORE_NAME_MAX + 2];
	cJSON *insts = NULL, *it;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	fmt(prefix, sizeof(prefix), "%s/", project);
	r = store_obj_list(tx, SDB_INSTANCES, prefix, &insts);
	store_abort(tx);
	if (r)
		return r;
	buf_printf(out, "# fleetfs: host keys pinned at first contact\n");
	cJSON_ArrayForEach(it, insts)
	{
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
		known_line(out, jx_str(v, "host"), (int)jx_num(v, "port"), jx_str(v, "hostkey"));
		const char *proxy = jx_str(v, "proxy");
		const char *at = strchr(proxy, '@'), *colon = strrchr(proxy, ':');
		if (at && colon && colon > at) {
			char h[256];
			fmt(h, sizeof(h), "%.*s", (int)(colon - at - 1), at + 1);
			long long port = 22;
			num_parse_ll(colon + 1, 1, 65535, &port);
			known_line(out, h, (int)port, jx_str(v, "jumpkey"));
		}
	}
	cJSON_Delete(insts);
	return 0;
}

static void render_resources(struct buf *out, const cJSON *res)
{
	if (!cJSON_IsObject(res)) {
		buf_printf(out, "resources: null\n");
		return;
	}
	buf_printf(out, "resources:\n  cpus: %.0f\n  arch: %s\n  memory_mib: %.0f\n"
			"  disk_mib: %.0f\n",
		   jx_num(res, "cpus"), *jx_str(res, "arch") ? jx_str(res, "arch") : "null",
		   jx_num(res, "memory_mib"), jx_num(res, "disk_mib"));
	const cJSON *gpus = cJSON_GetObjectItemCaseSensitive(res, "gpus"), *g;
	buf_printf(out, "  gpus:%s\n", cJSON_GetArraySize(gpus) ? "" : " []");
	cJSON_ArrayForEach(g, gpus)
	buf_printf(out, "  - {vendor: %s, name: %s, memory_mib: %.0f}\n", jx_str(g, "vendor"),
		   jx_str(g, "name"), jx_num(g, "memory_mib"));
	ystr(out, "  ", "addresses", jx_str(res, "addrs"));
}

int fleets_render_instance(struct store *s, const char *mnt, const char *project,
			   const char *fleet, unsigned num, const char *what, struct buf *out)
{
	struct stx *tx = NULL;
	char key[3 * STORE_NAME_MAX];
	cJSON *v = NULL;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	fmt(key, sizeof(key), "%s/%s/%08u", project, fleet, num);
	r = store_obj_get(tx, SDB_INSTANCES, key, &v);
	store_abort(tx);
	if (r)
		return r;
	bool unreach = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "unreachable"));
	double checked = jx_num(v, "checked");
	if (!strcmp(what, "ssh")) {
		if (stanza_worthy(v))
			stanza(out, mnt, project, fleet, v);
		else
			buf_printf(out, "# instance %s-%u is %s: no ssh access yet\n", fleet, num,
				   jx_str(v, "status"));
	} else if (!strcmp(what, "status")) {
		buf_printf(out, "status: %s\n", jx_str(v, "status"));
		buf_printf(out, "reachable: %s\n",
			   checked <= 0 ? "null" : unreach ? "false" : "true");
		ytime(out, "checked_at", checked, "");
		if (checked > 0) {
			struct timespec now = time_now();
			double age = (double)now.tv_sec + now.tv_nsec / 1e9 - checked;
			buf_printf(out, "check_age_s: %.0f\n", age > 0 ? age : 0.0);
		}
		ystr(out, "", "reason", jx_str(v, "reason"));
		ystr(out, "", "check_error", jx_str(v, "check_error"));
	} else {
		buf_printf(out, "name: %s-%u\nfleet: %s\nnum: %u\n", fleet, num, fleet, num);
		const cJSON *cl = cJSON_GetObjectItemCaseSensitive(v, "cloud");
		if (cJSON_IsObject(cl) && *jx_str(cl, "backend"))
			ystr(out, "", "backend", jx_str(cl, "backend"));
		else
			buf_printf(out, "backend: %s\n",
				   *jx_str(v, "proxy") || *jx_str(v, "host") ? "ssh" : "null");
		buf_printf(out, "status: %s\n", jx_str(v, "status"));
		buf_printf(out, "unreachable: %s\n", unreach ? "true" : "false");
		ystr(out, "", "reason", jx_str(v, "reason"));
		ystr(out, "", "host", jx_str(v, "host"));
		buf_printf(out, "port: %.0f\n", jx_num(v, "port"));
		ystr(out, "", "user", jx_str(v, "user"));
		ystr(out, "", "proxy_jump", jx_str(v, "proxy"));
		ystr(out, "", "internal_ip", jx_str(v, "internal_ip"));
		ystr(out, "", "host_key", jx_str(v, "hostkey"));
		render_resources(out, cJSON_GetObjectItemCaseSensitive(v, "res"));
		ytime(out, "created", jx_num(v, "created"), "");
		ytime(out, "started", jx_num(v, "started"), "");
		ytime(out, "updated", jx_num(v, "updated"), "");
		ytime(out, "checked_at", checked, "");
		buf_printf(out, "attempts: %.0f\n", jx_num(v, "attempts"));
		ytime(out, "next_try", jx_num(v, "next_try"), "");
		ystr(out, "", "last_error", jx_str(v, "last_error"));
		ystr(out, "", "termination_reason", jx_str(v, "termination_reason"));
		render_cloud(out, cl, cJSON_GetObjectItemCaseSensitive(v, "tried"));
		const cJSON *log = cJSON_GetObjectItemCaseSensitive(v, "log"), *e;
		buf_printf(out, "history:%s\n", cJSON_GetArraySize(log) ? "" : " []");
		cJSON_ArrayForEach(e, log)
		{
			char ts[32];
			time_iso((time_t)jx_num(e, "at"), ts, sizeof(ts));
			buf_printf(out, "- at: %s\n  what: ", ts);
			buf_yaml_str(out, jx_str(e, "what"));
			buf_printf(out, "\n");
		}
	}
	cJSON_Delete(v);
	return 0;
}
