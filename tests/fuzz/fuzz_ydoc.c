/* fuzz_ydoc: lib/ydoc (YAML documents: every config file, fleet spec and root config of the
 * mount goes through ydoc_load) — loading under its limits, every accessor on every node,
 * structural equality, and emit: what ydoc_emit writes must load again into an equal tree. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/ydoc.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t g_visits;
/* a mapping with a key that is not a scalar, or a key twice: ydoc_equal (by key text, first
 * pair wins) does not claim to compare those, so the equality checks are skipped */
static bool g_irregular;

static void walk(const struct ydoc *d, int node, int depth)
{
	/* the document is a graph (aliases share nodes): ydoc bounds the expanded size, the
	 * visit count keeps a walk of it bounded too */
	if (!node || depth > YDOC_MAX_DEPTH + 2 || ++g_visits > 2 * YDOC_MAX_NODES)
		return;
	bool b;
	long long ll;
	(void)ydoc_line(d, node);
	(void)ydoc_plain(d, node);
	(void)ydoc_is_null(d, node);
	(void)ydoc_bool(d, node, &b);
	(void)ydoc_int(d, node, &ll);
	const char *s = ydoc_str(d, node);
	if (s)
		(void)strlen(s);
	size_t n = ydoc_len(d, node);
	switch (ydoc_kind(d, node)) {
	case Y_SEQ:
		for (size_t i = 0; i < n; i++)
			walk(d, ydoc_seq_at(d, node, i), depth + 1);
		break;
	case Y_MAP:
		for (size_t i = 0; i < n; i++) {
			int k = ydoc_map_key(d, node, i);
			walk(d, k, depth + 1);
			walk(d, ydoc_map_val(d, node, i), depth + 1);
			const char *ks = ydoc_str(d, k);
			int v = ks ? ydoc_map_get(d, node, ks) : 0;
			if (ks && !v)
				abort(); /* a key that is there is found */
			if (!ks || v != ydoc_map_val(d, node, i))
				g_irregular = true;
		}
		break;
	default:
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ydoc *d = NULL, *again = NULL;
	char err[512];
	char *text = NULL;
	size_t len = 0;
	if (size > YDOC_MAX_BYTES + 1)
		return -1;
	if (ydoc_load((const char *)data, size, "fuzz.yml", &d, err, sizeof(err)))
		return 0;
	int root = ydoc_root(d);
	g_visits = 0;
	g_irregular = false;
	walk(d, root, 0);
	if (root) {
		if (!g_irregular && !ydoc_equal(d, root, d, root))
			abort();
		if (ydoc_emit(d, root, &text, &len) == 0 && !g_irregular) {
			/* a null root (a plain empty scalar) is emitted as the empty document,
			 * which reads as null too */
			if (ydoc_load(text, len, "emitted.yml", &again, err, sizeof(err)) == 0 &&
			    !ydoc_equal(d, root, again, ydoc_root(again)) &&
			    !(ydoc_is_null(d, root) && !ydoc_root(again)))
				abort(); /* emit changed the document */
		}
		free(text);
		text = NULL;
		if (ydoc_kind(d, root) == Y_MAP && ydoc_emit_skip(d, root, "name", &text, &len) == 0)
			free(text);
	}
	ydoc_free(again);
	ydoc_free(d);
	return 0;
}
