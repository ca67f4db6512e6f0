/* fleetview: the generated files of fleets (status, ssh_config, known_hosts, instance files).
 * Everything here reads the store only; nothing connects anywhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleets.h"
#include "records.h"

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
static void render_cloud(struct buf *out, const struct instance_row *v)
{
	const struct cloud_vm *cl = v->cloud;
	if (cl) {
		buf_printf(out, "cloud:\n");
		ystr(out, "  ", "backend", cl->backend);
		ystr(out, "  ", "type", cl->type);
		ystr(out, "  ", "offer", cl->offer);
		ystr(out, "  ", "region", cl->region);
		ystr(out, "  ", "zone", cl->zone);
		ystr(out, "  ", "instance", cl->instance);
		ystr(out, "  ", "name", cl->name);
		ystr(out, "  ", "id", cl->id);
		ystr(out, "  ", "detail", cl->detail);
		buf_printf(out, "  price: %g\n  spot: %s\n", cl->price, cl->spot ? "true" : "false");
		ytime(out, "created", cl->created_at, "  ");
	}
	if (!v->ntried)
		return;
	buf_printf(out, "tried:\n");
	for (size_t i = 0; i < v->ntried; i++) {
		ystr(out, "- ", "offer", v->tried[i].offer);
		ystr(out, "  ", "error", v->tried[i].error);
		ytime(out, "at", v->tried[i].at, "  ");
	}
}

static int load(struct store *s, const char *project, const char *fleet, struct fleet_rec *rec,
		struct instance_list *insts)
{
	struct stx *tx = NULL;
	char key[2 * STORE_NAME_MAX + 3];
	memset(insts, 0, sizeof(*insts));
	memset(rec, 0, sizeof(*rec));
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	fmt_cut(key, sizeof(key), "%s/%s", project, fleet); /* fits: two names < STORE_NAME_MAX */
	r = fleet_rec_get(tx, key, rec);
	if (!r) {
		fmt_cut(key, sizeof(key), "%s/%s/", project, fleet); /* fits: as above */
		r = instance_row_list(tx, key, insts);
	}
	store_abort(tx);
	if (r)
		fleet_rec_free(rec);
	return r;
}

int fleets_render_status(struct store *s, const char *project, const char *fleet,
			 struct buf *out)
{
	struct fleet_rec rec;
	struct instance_list insts;
	int r = load(s, project, fleet, &rec, &insts);
	if (r)
		return r;
	static const char *const sts[] = {IST_PENDING, IST_PROVISIONING, IST_IDLE, IST_BUSY,
					  IST_TERMINATING, IST_TERMINATED};
	size_t counts[6] = {0}, unreachable = 0;
	double next = 0;
	const char *last_err = "";
	double last_err_at = 0;
	for (size_t j = 0; j < insts.n; j++) {
		const struct instance_row *v = &insts.v[j].row;
		for (size_t i = 0; i < 6; i++)
			counts[i] += !strcmp(v->status, sts[i]);
		unreachable += v->unreachable;
		double nt = v->next_try;
		if (nt > 0 && (!next || nt < next) && strcmp(v->status, IST_IDLE))
			next = nt;
		if (v->last_error_at > last_err_at && *v->last_error) {
			last_err_at = v->last_error_at;
			last_err = v->last_error;
		}
	}
	bool deleted = rec.deleted;
	bool ssh = rec.ssh;
	buf_printf(out, "# fleetfs fleet status (format: docs/fleets.md#status)\n");
	buf_printf(out, "name: %s\nkind: %s\nstatus: %s\n", fleet, ssh ? "ssh" : "cloud",
		   deleted ? "terminating" : "active");
	buf_printf(out, "desired:\n");
	if (ssh)
		buf_printf(out, "  hosts: %lld\n", deleted ? 0LL : rec.hosts);
	else if (rec.nodes_max < 0)
		buf_printf(out, "  nodes: {min: %lld, target: %lld, max: null}\n", rec.nodes_min,
			   rec.nodes_target);
	else
		buf_printf(out, "  nodes: {min: %lld, target: %lld, max: %lld}\n", rec.nodes_min,
			   rec.nodes_target, rec.nodes_max);
	buf_printf(out, "actual:\n");
	for (size_t i = 0; i < 6; i++)
		buf_printf(out, "  %s: %zu\n", sts[i], counts[i]);
	buf_printf(out, "  unreachable: %zu\n", unreachable);
	ytime(out, "next_retry", next, "");
	if (*rec.rejected) {
		buf_printf(out, "last_rejected_write:\n");
		ytime(out, "at", rec.rejected_at, "  ");
		ystr(out, "  ", "message", rec.rejected);
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
	buf_printf(out, "instances:%s\n", insts.n ? "" : " []");
	for (size_t j = 0; j < insts.n; j++) {
		const struct instance_row *v = &insts.v[j].row;
		buf_printf(out, "- num: %u\n", v->num);
		ystr(out, "  ", "host", v->host);
		buf_printf(out, "  status: %s\n", v->status);
		buf_printf(out, "  unreachable: %s\n", v->unreachable ? "true" : "false");
		ystr(out, "  ", "reason", v->reason);
	}
	fleet_rec_free(&rec);
	instance_list_free(&insts);
	return 0;
}

/* Host stanza of one instance (and of its jump host). */
static void stanza(struct buf *out, const char *mnt, const char *project, const char *fleet,
		   const struct instance_row *v)
{
	const char *host = v->host;
	if (!*host)
		return;
	unsigned num = v->num;
	const char *proxy = v->proxy;
	buf_printf(out, "Host %s-%u\n", fleet, num);
	buf_printf(out, "  HostName %s\n", host);
	buf_printf(out, "  Port %d\n", v->port ? v->port : 22);
	buf_printf(out, "  User %s\n", v->user);
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
		const char *u = "", *h = "", *port = "22"; /* the parts, whole: used, not shown */
		int ul = 0, hl = 0;
		const char *at = strchr(proxy, '@');
		const char *colon = strrchr(proxy, ':');
		if (at && colon && colon > at) {
			u = proxy;
			ul = (int)(at - proxy);
			h = at + 1;
			hl = (int)(colon - at - 1);
			port = colon + 1;
		}
		buf_printf(out, "Host %s-%u-jump\n  HostName %.*s\n  Port %s\n  User %.*s\n", fleet,
			   num, hl, h, port, ul, u);
		buf_printf(out, "  IdentityFile \"%s/projects/%s/ssh/id_rsa\"\n", mnt, project);
		buf_printf(out, "  IdentitiesOnly yes\n");
		buf_printf(out, "  UserKnownHostsFile \"%s/projects/%s/ssh/known_hosts\"\n", mnt,
			   project);
		buf_printf(out, "  StrictHostKeyChecking yes\n  BatchMode yes\n\n");
	}
}

static bool stanza_worthy(const struct instance_row *v)
{
	const char *st = v->status;
	return *v->hostkey && (!strcmp(st, IST_IDLE) || !strcmp(st, IST_BUSY) ||
			       !strcmp(st, IST_PROVISIONING));
}

int fleets_render_ssh_config(struct store *s, const char *mnt, const char *project,
			     const char *fleet, struct buf *out)
{
	struct stx *tx = NULL;
	char prefix[2 * STORE_NAME_MAX + 3];
	struct instance_list insts;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	if (fleet)
		fmt_cut(prefix, sizeof(prefix), "%s/%s/", project, fleet); /* fits: two names */
	else
		fmt_cut(prefix, sizeof(prefix), "%s/", project); /* fits: a project name */
	r = instance_row_list(tx, prefix, &insts);
	store_abort(tx);
	if (r)
		return r;
	buf_printf(out, "# fleetfs: ssh -F <this file> <fleet>-<num>, or Include it from "
			"~/.ssh/config\n\n");
	for (size_t j = 0; j < insts.n; j++) {
		const struct instance_row *v = &insts.v[j].row;
		if (!stanza_worthy(v))
			continue;
		char f[STORE_NAME_MAX];
		const char *k = insts.v[j].key + strlen(project) + 1;
		const char *slash = strchr(k, '/');
		if (fmt(f, sizeof(f), "%.*s", slash ? (int)(slash - k) : 0, k))
			continue; /* not a fleet name the store writes */
		stanza(out, mnt, project, f, v);
	}
	instance_list_free(&insts);
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
	struct instance_list insts;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	fmt_cut(prefix, sizeof(prefix), "%s/", project); /* fits: a project name */
	r = instance_row_list(tx, prefix, &insts);
	store_abort(tx);
	if (r)
		return r;
	buf_printf(out, "# fleetfs: host keys pinned at first contact\n");
	for (size_t j = 0; j < insts.n; j++) {
		const struct instance_row *v = &insts.v[j].row;
		known_line(out, v->host, v->port, v->hostkey);
		const char *proxy = v->proxy;
		const char *at = strchr(proxy, '@'), *colon = strrchr(proxy, ':');
		if (at && colon && colon > at) {
			char *h = xstrndup(at + 1, (size_t)(colon - at - 1)); /* whole: it is used */
			long long port = 22;
			num_parse_ll(colon + 1, 1, 65535, &port);
			known_line(out, h, (int)port, v->jumpkey);
			free(h);
		}
	}
	instance_list_free(&insts);
	return 0;
}

static void render_resources(struct buf *out, const struct host_res *res)
{
	if (!res) {
		buf_printf(out, "resources: null\n");
		return;
	}
	buf_printf(out, "resources:\n  cpus: %d\n  arch: %s\n  memory_mib: %llu\n"
			"  disk_mib: %llu\n",
		   res->cpus, *res->arch ? res->arch : "null", res->memory_mib, res->disk_mib);
	buf_printf(out, "  gpus:%s\n", res->ngpus ? "" : " []");
	for (size_t i = 0; i < res->ngpus; i++)
		buf_printf(out, "  - {vendor: %s, name: %s, memory_mib: %llu}\n",
			   res->gpus[i].vendor, res->gpus[i].name, res->gpus[i].memory_mib);
	ystr(out, "  ", "addresses", res->addrs);
}

int fleets_render_instance(struct store *s, const char *mnt, const char *project,
			   const char *fleet, unsigned num, const char *what, struct buf *out)
{
	struct stx *tx = NULL;
	char key[3 * STORE_NAME_MAX];
	struct instance_row v;
	int r = store_begin(s, false, &tx);
	if (r)
		return r;
	/* fits: two names < STORE_NAME_MAX and a number */
	fmt_cut(key, sizeof(key), "%s/%s/%08u", project, fleet, num);
	r = instance_row_get(tx, key, &v);
	store_abort(tx);
	if (r)
		return r;
	bool unreach = v.unreachable;
	double checked = v.checked;
	if (!strcmp(what, "ssh")) {
		if (stanza_worthy(&v))
			stanza(out, mnt, project, fleet, &v);
		else
			buf_printf(out, "# instance %s-%u is %s: no ssh access yet\n", fleet, num,
				   v.status);
	} else if (!strcmp(what, "status")) {
		buf_printf(out, "status: %s\n", v.status);
		buf_printf(out, "reachable: %s\n",
			   checked <= 0 ? "null" : unreach ? "false" : "true");
		ytime(out, "checked_at", checked, "");
		if (checked > 0) {
			struct timespec now = time_now();
			double age = (double)now.tv_sec + now.tv_nsec / 1e9 - checked;
			buf_printf(out, "check_age_s: %.0f\n", age > 0 ? age : 0.0);
		}
		ystr(out, "", "reason", v.reason);
		ystr(out, "", "check_error", v.check_error);
	} else {
		buf_printf(out, "name: %s-%u\nfleet: %s\nnum: %u\n", fleet, num, fleet, num);
		if (v.cloud && *v.cloud->backend)
			ystr(out, "", "backend", v.cloud->backend);
		else
			buf_printf(out, "backend: %s\n", *v.proxy || *v.host ? "ssh" : "null");
		buf_printf(out, "status: %s\n", v.status);
		buf_printf(out, "unreachable: %s\n", unreach ? "true" : "false");
		ystr(out, "", "reason", v.reason);
		ystr(out, "", "host", v.host);
		buf_printf(out, "port: %d\n", v.port);
		ystr(out, "", "user", v.user);
		ystr(out, "", "proxy_jump", v.proxy);
		ystr(out, "", "internal_ip", v.internal_ip);
		ystr(out, "", "host_key", v.hostkey);
		render_resources(out, v.res);
		ytime(out, "created", v.created, "");
		ytime(out, "started", v.started, "");
		ytime(out, "updated", v.updated, "");
		ytime(out, "checked_at", checked, "");
		buf_printf(out, "attempts: %u\n", v.attempts);
		ytime(out, "next_try", v.next_try, "");
		ystr(out, "", "last_error", v.last_error);
		ystr(out, "", "termination_reason", v.termination_reason);
		render_cloud(out, &v);
		buf_printf(out, "history:%s\n", v.nlog ? "" : " []");
		for (size_t i = 0; i < v.nlog; i++) {
			char ts[32];
			time_iso((time_t)v.log[i].at, ts, sizeof(ts));
			buf_printf(out, "- at: %s\n  what: ", ts);
			buf_yaml_str(out, v.log[i].what);
			buf_printf(out, "\n");
		}
	}
	instance_row_free(&v);
	return 0;
}
