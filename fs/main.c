/* main: command line, mount and daemon life cycle (sshfs conventions).
 *
 *   fleetfs [-f] [-d] [-s] [-o state=DIR] [-o allow_other] MOUNTPOINT
 *   fleetfs STATEDIR MOUNTPOINT -o opts        (as mount.fuse3 runs it from /etc/fstab)
 *
 * Everything that can fail for a user reason (options, state directory, store schema, key
 * file) is checked before daemonizing so the message reaches the terminal. The LMDB
 * environment is closed before fork and opened again in the daemon (LMDB handles don't
 * survive fork); the directory lock is held throughout.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "../backends/backend.h"
#include "../backends/catalog.h"
#include "../backends/http.h"
#include "../core/cloud.h"
#include "../core/offerd.h"
#include "../core/state.h"
#include "fs.h"
#include "internal.h"
#include "offcache.h"

struct options {
	char *state;
	char *catalog;
	char *offers_wait;
	char *positional[2];
	int npos;
	int allow_other;
	int help, version;
};

enum { KEY_HELP, KEY_VERSION, KEY_IGNORE };

#define OPT(t, p) {t, offsetof(struct options, p), 1}
static const struct fuse_opt opt_spec[] = {
	OPT("state=%s", state),
	OPT("catalog=%s", catalog),
	OPT("offers_wait=%s", offers_wait),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	/* fstab-only options that mean nothing to a FUSE daemon */
	FUSE_OPT_KEY("_netdev", KEY_IGNORE),
	FUSE_OPT_KEY("nofail", KEY_IGNORE),
	FUSE_OPT_KEY("noauto", KEY_IGNORE),
	FUSE_OPT_KEY("auto", KEY_IGNORE),
	FUSE_OPT_KEY("user", KEY_IGNORE),
	FUSE_OPT_KEY("users", KEY_IGNORE),
	FUSE_OPT_KEY("defaults", KEY_IGNORE),
	FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;
	(void)outargs;
	switch (key) {
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_VERSION:
		o->version = 1;
		return 0;
	case KEY_IGNORE:
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (o->npos >= 2) {
			fprintf(stderr, "fleetfs: unexpected argument '%s'\n", arg);
			return -1;
		}
		o->positional[o->npos++] = strdup(arg);
		return 0;
	case FUSE_OPT_KEY_OPT:
		if (!strncmp(arg, "x-systemd.", 10) || !strncmp(arg, "comment=", 8))
			return 0;
		if (!strcmp(arg, "allow_other"))
			o->allow_other = 1;
		return 1;
	default:
		return 1;
	}
}

static void usage(const char *prog)
{
	printf("usage: %s [options] MOUNTPOINT\n"
	       "       %s STATEDIR MOUNTPOINT [-o options]   (from /etc/fstab, type fuse.fleetfs)\n"
	       "\n"
	       "fleetfs mounts GPU fleets on many clouds as a tree of files.\n"
	       "\n"
	       "fleetfs options:\n"
	       "    -o state=DIR           state directory (default $XDG_DATA_HOME/fleetfs,\n"
	       "                           or ~/.local/share/fleetfs)\n"
	       "    -o allow_other         let other users list the tree (permissions still apply)\n"
	       "    -o catalog=DIR|URL|none where offers/ reads gpuhunt catalogs: <DIR>/<provider>.csv,\n"
	       "                           or <URL>/<provider>/version and .../catalog.zip\n"
	       "                           (default: $GPUHUNT_CATALOG_DIR, $GPUHUNT_CATALOG_URL,\n"
	       "                           else gpuhunt's public catalog)\n"
	       "    -o offers_wait=SECONDS how long a listing waits for a backend's first offers\n"
	       "                           fetch (default 10)\n"
	       "    -f                     stay in the foreground\n"
	       "    -d                     debug output (implies -f)\n"
	       "    -s                     single-threaded\n"
	       "    -h, --help             this help\n"
	       "    -V, --version          version\n"
	       "\n"
	       "Unmount with: fusermount3 -u MOUNTPOINT (or send SIGTERM to the daemon).\n"
	       "\n"
	       "FUSE options:\n",
	       prog, prog);
	fuse_lowlevel_help();
}

static char *default_state(void)
{
	const char *x = getenv("XDG_DATA_HOME");
	if (x && x[0] == '/')
		return xasprintf("%s/fleetfs", x);
	const char *home = getenv("HOME");
	if (!home || !*home)
		return NULL;
	return xasprintf("%s/.local/share/fleetfs", home);
}

/* -d: one line per HTTP request (never a header value or a body: backends/http.h). */
static void log_http(const char *line)
{
	fprintf(stderr, "fleetfs: http %s\n", line);
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o;
	struct fuse_cmdline_opts cmd;
	struct fs fs;
	struct fuse_session *se = NULL;
	char err[1024] = "";
	char *state = NULL, *mnt = NULL;
	int ret = 1;
	bool mounted = false, handlers = false;

	/* Offers make large, short-lived buffers (a catalog, a 40 MB offers.json) on any of 64
	 * FUSE threads: with glibc's defaults each thread's arena keeps what it once held and
	 * the adaptive mmap threshold moves big buffers into those arenas. A fixed 1 MiB
	 * threshold gives big buffers back to the system when freed, and few arenas keep the
	 * small allocations (nodes, offers) together. */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
	mallopt(M_ARENA_MAX, 2);
	if (!kinds_check()) {
		fprintf(stderr, "fleetfs: fs/kinds.c's rows are not in enum nkind's order\n");
		return 1;
	}
	memset(&o, 0, sizeof(o));
	memset(&fs, 0, sizeof(fs));
	memset(&cmd, 0, sizeof(cmd));
	pthread_mutex_init(&fs.lock, NULL);
	pthread_mutex_init(&fs.cache_lock, NULL);
	pthread_mutex_init(&fs.offers_lock, NULL);
	pthread_mutex_init(&fs.listings_lock, NULL);
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) == -1)
		goto out;
	if (o.help) {
		usage(argv[0]);
		ret = 0;
		goto out;
	}
	if (o.version) {
		printf("fleetfs version %s\n", FLEETFS_VERSION);
		printf("FUSE library version %s\n", fuse_pkgversion());
		ret = 0;
		goto out;
	}
	if (fuse_parse_cmdline(&args, &cmd) != 0)
		goto out;
	if (o.npos == 0) {
		fprintf(stderr, "fleetfs: no mountpoint given (see %s --help)\n", argv[0]);
		goto out;
	}
	const char *mnt_arg = o.positional[o.npos - 1];
	if (o.state)
		state = strdup(o.state);
	else if (o.npos == 2 && strcmp(o.positional[0], "fleetfs") &&
		 strcmp(o.positional[0], "none"))
		state = strdup(o.positional[0]);
	else
		state = default_state();
	if (!state) {
		fprintf(stderr, "fleetfs: no state directory: set -o state=DIR or HOME\n");
		goto out;
	}
	mnt = realpath(mnt_arg, NULL);
	if (!mnt) {
		fprintf(stderr, "fleetfs: bad mountpoint '%s': %s\n", mnt_arg, strerror(errno));
		goto out;
	}
	if (state[0] != '/') {
		char *abs = realpath(state, NULL);
		if (!abs) {
			char cwd[PATH_MAX];
			abs = getcwd(cwd, sizeof(cwd)) ? xasprintf("%s/%s", cwd, state) : NULL;
		}
		if (abs) {
			free(state);
			state = abs;
		}
	}
	if (o.catalog && o.catalog[0] != '/' && strcmp(o.catalog, "none") &&
	    strncasecmp(o.catalog, "http://", 7) && strncasecmp(o.catalog, "https://", 8)) {
		/* the daemon runs from /: keep the catalog directory absolute */
		char *abs = realpath(o.catalog, NULL);
		if (!abs) {
			fprintf(stderr, "fleetfs: catalog=%s: %s\n", o.catalog, strerror(errno));
			goto out;
		}
		free(o.catalog);
		o.catalog = abs;
	}
	fs.offers_wait_ms = 10000;
	if (o.offers_wait) {
		long long w;
		if (num_parse_ll(o.offers_wait, 0, 3600, &w)) {
			fprintf(stderr, "fleetfs: offers_wait=%s: expected seconds (0..3600)\n",
				o.offers_wait);
			goto out;
		}
		fs.offers_wait_ms = (int)w * 1000;
	}
	if (catalog_new(o.catalog, &fs.catalog, err, sizeof(err)) != 0) {
		fprintf(stderr, "fleetfs: %s\n", err);
		goto out;
	}
	if (store_open(state, &fs.store, err, sizeof(err)) != 0) {
		fprintf(stderr, "fleetfs: %s\n", err);
		goto out;
	}
	store_detach(fs.store); /* reopened after fork */

	fs.uid = getuid();
	fs.gid = getgid();
	fs.allow_other = o.allow_other;
	fs.mountpoint = mnt;
	fs.gen = 1;
	tree_init(&fs);

	fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-ofsname=fleetfs");
	fuse_opt_add_arg(&args, "-osubtype=fleetfs");
	se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), &fs);
	if (!se)
		goto out; /* libfuse printed why (e.g. an unknown option) */
	fs.se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	handlers = true;
	if (fuse_session_mount(se, mnt) != 0)
		goto out;
	mounted = true;
	if (fuse_daemonize(cmd.foreground) != 0)
		goto out;
	if (!cmd.foreground)
		openlog("fleetfs", LOG_PID, LOG_DAEMON);
	if (store_reopen(fs.store, err, sizeof(err)) != 0) {
		if (cmd.foreground)
			fprintf(stderr, "fleetfs: %s\n", err);
		else
			syslog(LOG_ERR, "%s", err);
		goto out;
	}
	state_note(fs.store, "", "mounted on %s (fleetfs %s, pid %ld)", mnt, FLEETFS_VERSION,
		   (long)getpid());
	notify_start(&fs);
	store_set_hook(fs.store, fs_store_changed, &fs);
	if (cmd.debug)
		http_set_logger(log_http);
	fs.http = http_client_new();
	catalog_set_http(fs.catalog, fs.http);
	fs.bkmemo = bk_memo_new();
	fs.offerd = offerd_new(fs.store, fs.catalog, fs.http, fs.bkmemo);
	if (!fs.http || offerd_start(fs.offerd) != 0) {
		if (cmd.foreground)
			fprintf(stderr, "fleetfs: cannot start the offers refresher\n");
		else
			syslog(LOG_ERR, "cannot start the offers refresher");
		goto out;
	}
	struct cloud cloud = {.s = fs.store, .http = fs.http, .catalog = fs.catalog,
			      .memo = fs.bkmemo, .offerd = fs.offerd};
	if (engine_start(fs.store, 8, &cloud, &fs.engine) != 0) {
		if (cmd.foreground)
			fprintf(stderr, "fleetfs: cannot start the engine\n");
		else
			syslog(LOG_ERR, "cannot start the engine");
		goto out;
	}
	if (cmd.singlethread) {
		ret = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, cmd.clone_fd);
		/* live status reads may wait up to 3 s for an SSH check (at most 8 at once, see
		 * engine_check): leave plenty of threads for everything else */
		fuse_loop_cfg_set_max_threads(cfg, cmd.max_threads && cmd.max_threads != UINT_MAX
							   ? cmd.max_threads
							   : 64);
		/* keep workers alive between requests: thread churn costs more than the FUSE
		 * round trip itself */
		fuse_loop_cfg_set_idle_threads(cfg, cmd.max_idle_threads == UINT_MAX
							    ? 10
							    : cmd.max_idle_threads);
		ret = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	http_client_shutdown(fs.http); /* downloads and provider calls in flight end now */
	engine_stop(fs.engine);
	fs.engine = NULL;
	offerd_stop(fs.offerd);
	notify_stop(&fs);
	state_note(fs.store, "", "unmounted");
	/* the loop returns the number of the signal that ended it (SIGTERM, SIGINT): a clean
	 * stop; only a negative value is a failure */
	ret = ret < 0 ? 1 : 0;
out:
	http_client_shutdown(fs.http);
	engine_stop(fs.engine);
	offerd_stop(fs.offerd);
	offerd_free(fs.offerd);
	http_client_free(fs.http);
	bk_memo_free(fs.bkmemo);
	catalog_free(fs.catalog);
	if (mounted)
		fuse_session_unmount(se);
	if (handlers)
		fuse_remove_signal_handlers(se);
	if (se)
		fuse_session_destroy(se);
	if (fs.by_ino) {
		listings_drop(&fs);
		tree_destroy(&fs);
	}
	offcache_destroy(&fs);
	store_close(fs.store);
	free(cmd.mountpoint);
	free(o.state);
	free(o.catalog);
	free(o.offers_wait);
	for (int i = 0; i < o.npos; i++)
		free(o.positional[i]);
	free(state);
	free(mnt);
	fuse_opt_free_args(&args);
	return ret;
}
