/* fuzz_rootcfg: core/rootcfg, the root config.yml (dstack's server config: projects, their
 * backends through bkschema, encryption keys, default_permissions, plugins) applied with
 * state_root_commit to a real store in the scratch directory (tmpfs when there is one), then
 * rendered back with state_root_render, which must be YAML again. The store is made afresh
 * every STORE_RUNS inputs so that it stays small. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/state.h"
#include "../../lib/ydoc.h"
#include "fuzzlib.h"

#define STORE_RUNS 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct store *g_store;
static unsigned g_runs;

static void store_fresh(void)
{
	char dir[1024], err[512];
	if (fmt(dir, sizeof(dir), "%s/state", fz_scratch()))
		abort();
	if (g_store) {
		store_close(g_store);
		g_store = NULL;
	}
	fz_remove_tree(dir);
	if (store_open(dir, &g_store, err, sizeof(err))) {
		fprintf(stderr, "fuzz_rootcfg: %s\n", err);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct fileref_ctx *ctx = fz_writer_ctx();
	char err[2048];
	if (size > STATE_MAX_FILE + 1)
		return -1;
	if (!g_store || ++g_runs % STORE_RUNS == 0)
		store_fresh();
	if (state_root_commit(g_store, (const char *)data, size, ctx, err, sizeof(err)))
		return 0;
	struct buf b;
	struct ydoc *d = NULL;
	buf_init(&b, 16 << 20);
	if (state_root_render(g_store, &b) == 0 &&
	    ydoc_load(b.data ? b.data : "", b.len, "config.yml", &d, err, sizeof(err))) {
		fprintf(stderr, "fuzz_rootcfg: the rendered config.yml does not load: %s\n", err);
		abort();
	}
	ydoc_free(d);
	buf_free(&b);
	return 0;
}
