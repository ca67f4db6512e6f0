/* ydoc: bounded YAML documents on top of libyaml's document loader.
 *
 * libyaml's loader builds a node graph in which an alias is a second reference to the anchored
 * node, so nothing is expanded at load time, but a naive walk of "a billion laughs" is still
 * exponential, and `&a [*a]` is a cycle. After loading we run one iterative post-order pass
 * that computes, per node, its alias-expanded size and its depth, and reject the document when
 * either passes the limits or a cycle is found. After that every walk is bounded.
 */
#include "ydoc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "util.h"

struct ydoc {
	yaml_document_t doc;
	char *fname;
};

static yaml_node_t *node_at(const struct ydoc *d, int id)
{
	if (!d || id <= 0)
		return NULL;
	/* yaml_document_get_node takes a non-const document but does not modify it. */
	return yaml_document_get_node((yaml_document_t *)&d->doc, id);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reject duplicate scalar keys in one mapping (PyYAML keeps the last silently; a typo'd
 * duplicate is almost always a mistake, and hidden secrets are worse). */
static int check_dup_keys(struct ydoc *d, int id, char *err, size_t errlen)
{
	yaml_node_t *n = node_at(d, id);
	size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (cnt < 2)
		return 0;
	const char **keys = malloc(cnt * sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < cnt; i++) {
		const char *s = ydoc_str(d, n->data.mapping.pairs.start[i].key);
		if (s)
			keys[k++] = s;
	}
	qsort(keys, k, sizeof(*keys), cmp_str);
	int r = 0;
	for (size_t i = 1; i < k; i++) {
		if (strcmp(keys[i - 1], keys[i]) == 0) {
			char name[STR_REDACT_LEN];
			str_redact(name, sizeof(name), keys[i]);
			/* find the second occurrence for the line number */
			int at = id;
			size_t seen = 0;
			for (size_t j = 0; j < cnt; j++) {
				const char *s = ydoc_str(d, n->data.mapping.pairs.start[j].key);
				if (s && strcmp(s, keys[i]) == 0 && ++seen == 2) {
					at = n->data.mapping.pairs.start[j].key;
					break;
				}
			}
			r = ydoc_err(d, at, NULL, err, errlen, "duplicate key %s", name);
			break;
		}
	}
	free(keys);
	return r;
}

/* Iterative post-order walk computing expanded size and depth per node. */
/* How many children node n has (a mapping's keys and values both count), and the i-th:
 * key, value, key, value... */
static size_t children(const yaml_node_t *n)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (n->type == YAML_MAPPING_NODE)
		return 2 * (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	return 0;
}

static int child_at(const yaml_node_t *n, size_t i)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return n->data.sequence.items.start[i];
	const yaml_node_pair_t *p = &n->data.mapping.pairs.start[i / 2];
	return (i % 2) ? p->value : p->key;
}

static int check_limits(struct ydoc *d, char *err, size_t errlen)
{
	int nnodes = (int)(d->doc.nodes.top - d->doc.nodes.start);
	if (nnodes == 0)
		return 0;
	uint8_t *state = calloc((size_t)nnodes + 1, 1);
	uint32_t *size = calloc((size_t)nnodes + 1, sizeof(uint32_t));
	uint16_t *depth = calloc((size_t)nnodes + 1, sizeof(uint16_t));
	/* stack of (node, next child index) */
	struct frame {
		int id;
		size_t next;
	} *stack = malloc(((size_t)nnodes + 1) * sizeof(*stack));
	int r = 0;
	if (!state || !size || !depth || !stack) {
		r = -ENOMEM;
		goto out;
	}
	size_t sp = 0;
	stack[sp++] = (struct frame){1, 0};
	state[1] = 1;
	while (sp) {
		struct frame *f = &stack[sp - 1];
		yaml_node_t *n = node_at(d, f->id);
		size_t nchild = children(n);
		int child = f->next < nchild ? child_at(n, f->next) : 0;
		if (child) {
			f->next++;
			if (state[child] == 1) {
				r = ydoc_err(d, f->id, NULL, err, errlen, "recursive alias");
				goto out;
			}
			if (state[child] == 0) {
				if (sp > YDOC_MAX_DEPTH + 1) {
					r = ydoc_err(d, child, NULL, err, errlen,
						     "nesting deeper than %d levels", YDOC_MAX_DEPTH);
					goto out;
				}
				state[child] = 1;
				stack[sp++] = (struct frame){child, 0};
			}
			continue;
		}
		/* all children done: fold */
		uint64_t sz = 1;
		unsigned dp = 0;
		for (size_t i = 0; i < nchild; i++) {
			int c = child_at(n, i);
			sz += size[c];
			if (depth[c] > dp)
				dp = depth[c];
		}
		if (sz > YDOC_MAX_NODES) {
			r = ydoc_err(d, f->id, NULL, err, errlen,
				     "document too large once aliases are expanded (over %d nodes)",
				     YDOC_MAX_NODES);
			goto out;
		}
		if (dp + 1 > YDOC_MAX_DEPTH) {
			r = ydoc_err(d, f->id, NULL, err, errlen, "nesting deeper than %d levels",
				     YDOC_MAX_DEPTH);
			goto out;
		}
		size[f->id] = (uint32_t)sz;
		depth[f->id] = (uint16_t)(dp + 1);
		state[f->id] = 2;
		if (n->type == YAML_MAPPING_NODE) {
			r = check_dup_keys(d, f->id, err, errlen);
			if (r)
				goto out;
		}
		sp--;
	}
out:
	free(state);
	free(size);
	free(depth);
	free(stack);
	return r;
}

static int parse_error(const yaml_parser_t *p, const char *fname, char *err, size_t errlen)
{
	if (p->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	/* libyaml's problem and context are string literals of its own ("found character that
	 * cannot start any token", "while parsing a block mapping"); the offending input is only
	 * in problem_value/problem_offset, which are never shown. They still go through
	 * str_sanitize and a bound, so a future libyaml that quotes input could at worst show
	 * printable ASCII of a bounded length (and the unit tests would notice). */
	char problem[96], context[96];
	size_t line = p->problem_mark.line + 1;
	if (p->problem_mark.line == 0 && p->context_mark.line)
		line = p->context_mark.line + 1;
	str_sanitize(problem, sizeof(problem), p->problem ? p->problem : "invalid document");
	str_sanitize(context, sizeof(context), p->context ? p->context : "");
	fmt_cut(err, errlen, "%s:%zu: YAML syntax error: %s%s%s", fname, line, problem,
		context[0] ? " " : "", context);
	return -EINVAL;
}

/* A first pass over the event stream, before anything is built: it stops at the first event
 * past the depth limit (libyaml's scanner is quadratic in the nesting depth of flow
 * collections, so a megabyte of '[' must be refused before it is parsed whole), refuses
 * explicit tags (the document API cannot tell `!!str yes` from `yes`, and no configuration
 * needs tags), and bounds the number of nodes written out. */
static int prescan(const char *buf, size_t len, const char *fname, char *err, size_t errlen)
{
	yaml_parser_t p;
	yaml_event_t ev;
	int depth = 0, r = 0;
	size_t events = 0;
	if (!yaml_parser_initialize(&p))
		return -ENOMEM;
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev)) {
			r = parse_error(&p, fname, err, errlen);
			break;
		}
		size_t line = ev.start_mark.line + 1;
		yaml_event_type_t t = ev.type;
		bool tagged = (t == YAML_SCALAR_EVENT && ev.data.scalar.tag) ||
			      (t == YAML_SEQUENCE_START_EVENT && ev.data.sequence_start.tag) ||
			      (t == YAML_MAPPING_START_EVENT && ev.data.mapping_start.tag);
		yaml_event_delete(&ev);
		if (t == YAML_STREAM_END_EVENT)
			break;
		if (tagged) {
			fmt_cut(err, errlen,
				"%s:%zu: explicit YAML tags (!!str, !name) are not supported; "
				"quote the value instead",
				fname, line);
			r = -EINVAL;
			break;
		}
		if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
			if (++depth > YDOC_MAX_DEPTH) {
				fmt_cut(err, errlen, "%s:%zu: nesting deeper than %d levels", fname,
					line, YDOC_MAX_DEPTH);
				r = -EINVAL;
				break;
			}
		} else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
			depth--;
		}
		if (++events > 4 * (size_t)YDOC_MAX_NODES) {
			fmt_cut(err, errlen, "%s:%zu: document has too many nodes (over %d)", fname,
				line, YDOC_MAX_NODES);
			r = -EINVAL;
			break;
		}
	}
	yaml_parser_delete(&p);
	return r;
}

int ydoc_load(const char *buf, size_t len, const char *fname, struct ydoc **out, char *err,
	      size_t errlen)
{
	*out = NULL;
	if (len > YDOC_MAX_BYTES) {
		fmt_cut(err, errlen, "%s: file is larger than %d bytes", fname, YDOC_MAX_BYTES);
		return -EFBIG;
	}
	if (memchr(buf, '\0', len)) {
		fmt_cut(err, errlen, "%s:1: not a text file (contains NUL bytes)", fname);
		return -EINVAL;
	}
	int pr = prescan(buf, len, fname, err, errlen);
	if (pr)
		return pr;
	struct ydoc *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fname = strdup(fname);
	if (!d->fname) {
		free(d);
		return -ENOMEM;
	}
	yaml_parser_t p;
	int r = 0;
	bool have_doc = false;
	if (!yaml_parser_initialize(&p)) {
		free(d->fname);
		free(d);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&p, &d->doc)) {
		r = parse_error(&p, fname, err, errlen);
		goto out;
	}
	have_doc = true;
	if (yaml_document_get_root_node(&d->doc)) {
		yaml_document_t extra;
		if (!yaml_parser_load(&p, &extra)) {
			r = parse_error(&p, fname, err, errlen);
			goto out;
		}
		bool more = yaml_document_get_root_node(&extra) != NULL;
		yaml_node_t *root2 = yaml_document_get_root_node(&extra);
		size_t line = root2 ? root2->start_mark.line + 1 : 1;
		yaml_document_delete(&extra);
		if (more) {
			fmt_cut(err, errlen, "%s:%zu: more than one YAML document in the file",
				fname, line);
			r = -EINVAL;
			goto out;
		}
		r = check_limits(d, err, errlen);
	}
out:
	yaml_parser_delete(&p);
	if (r) {
		if (have_doc)
			yaml_document_delete(&d->doc);
		free(d->fname);
		free(d);
		return r;
	}
	*out = d;
	return 0;
}

void ydoc_free_secret(struct ydoc *d)
{
	if (!d)
		return;
	for (yaml_node_t *n = d->doc.nodes.start; n && n < d->doc.nodes.top; n++)
		if (n->type == YAML_SCALAR_NODE && n->data.scalar.value)
			explicit_bzero(n->data.scalar.value, n->data.scalar.length);
	ydoc_free(d);
}

void ydoc_free(struct ydoc *d)
{
	if (!d)
		return;
	yaml_document_delete(&d->doc);
	free(d->fname);
	free(d);
}

int ydoc_root(const struct ydoc *d)
{
	if (!d || d->doc.nodes.top == d->doc.nodes.start)
		return 0;
	return 1;
}

const char *ydoc_file(const struct ydoc *d)
{
	return d ? d->fname : "";
}

enum ykind ydoc_kind(const struct ydoc *d, int node)
{
	yaml_node_t *n = node_at(d, node);
	if (!n)
		return Y_NONE;
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return Y_SCALAR;
	case YAML_SEQUENCE_NODE:
		return Y_SEQ;
	case YAML_MAPPING_NODE:
		return Y_MAP;
	default:
		return Y_NONE;
	}
}

size_t ydoc_line(const struct ydoc *d, int node)
{
	yaml_node_t *n = node_at(d, node);
	return n ? n->start_mark.line + 1 : 1;
}

const char *ydoc_str(const struct ydoc *d, int node)
{
	yaml_node_t *n = node_at(d, node);
	if (!n || n->type != YAML_SCALAR_NODE)
		return NULL;
	return (const char *)n->data.scalar.value;
}

bool ydoc_plain(const struct ydoc *d, int node)
{
	yaml_node_t *n = node_at(d, node);
	return n && n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

bool ydoc_is_null(const struct ydoc *d, int node)
{
	if (node == 0)
		return true;
	const char *s = ydoc_str(d, node);
	if (!s || !ydoc_plain(d, node))
		return false;
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

int ydoc_bool(const struct ydoc *d, int node, bool *out)
{
	/* PyYAML's YAML 1.1 resolver: these spellings exactly, nothing else */
	static const char *const yes[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On",
					  "ON"};
	static const char *const no[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off",
					 "OFF"};
	const char *s = ydoc_str(d, node);
	if (!s || !ydoc_plain(d, node))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (!strcmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int ydoc_int(const struct ydoc *d, int node, long long *out)
{
	const char *s = ydoc_str(d, node);
	if (!s || !ydoc_plain(d, node))
		return -EINVAL;
	return num_parse_ll(s, INT64_MIN, INT64_MAX, out);
}

size_t ydoc_len(const struct ydoc *d, int node)
{
	yaml_node_t *n = node_at(d, node);
	if (!n)
		return 0;
	if (n->type == YAML_SEQUENCE_NODE)
		return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	if (n->type == YAML_MAPPING_NODE)
		return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	return 0;
}

int ydoc_seq_at(const struct ydoc *d, int node, size_t i)
{
	yaml_node_t *n = node_at(d, node);
	if (!n || n->type != YAML_SEQUENCE_NODE || i >= ydoc_len(d, node))
		return 0;
	return n->data.sequence.items.start[i];
}

int ydoc_map_key(const struct ydoc *d, int node, size_t i)
{
	yaml_node_t *n = node_at(d, node);
	if (!n || n->type != YAML_MAPPING_NODE || i >= ydoc_len(d, node))
		return 0;
	return n->data.mapping.pairs.start[i].key;
}

int ydoc_map_val(const struct ydoc *d, int node, size_t i)
{
	yaml_node_t *n = node_at(d, node);
	if (!n || n->type != YAML_MAPPING_NODE || i >= ydoc_len(d, node))
		return 0;
	return n->data.mapping.pairs.start[i].value;
}

int ydoc_map_get(const struct ydoc *d, int node, const char *key)
{
	size_t n = ydoc_len(d, node);
	if (ydoc_kind(d, node) != Y_MAP)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const char *k = ydoc_str(d, ydoc_map_key(d, node, i));
		if (k && !strcmp(k, key))
			return ydoc_map_val(d, node, i);
	}
	return 0;
}

int ydoc_err(const struct ydoc *d, int node, const char *field, char *err, size_t errlen,
	     const char *f, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, f);
	vfmt_cut(msg, sizeof(msg), f, ap);
	va_end(ap);
	if (field && *field)
		fmt_cut(err, errlen, "%s:%zu: %s: %s", ydoc_file(d), ydoc_line(d, node), field,
			msg);
	else
		fmt_cut(err, errlen, "%s:%zu: %s", ydoc_file(d), ydoc_line(d, node), msg);
	return -EINVAL;
}

bool ydoc_equal(const struct ydoc *a, int na, const struct ydoc *b, int nb)
{
	enum ykind ka = ydoc_kind(a, na), kb = ydoc_kind(b, nb);
	if (ka != kb)
		return false;
	switch (ka) {
	case Y_NONE:
		return true;
	case Y_SCALAR:
		return strcmp(ydoc_str(a, na), ydoc_str(b, nb)) == 0;
	case Y_SEQ:
		if (ydoc_len(a, na) != ydoc_len(b, nb))
			return false;
		for (size_t i = 0; i < ydoc_len(a, na); i++)
			if (!ydoc_equal(a, ydoc_seq_at(a, na, i), b, ydoc_seq_at(b, nb, i)))
				return false;
		return true;
	case Y_MAP:
		if (ydoc_len(a, na) != ydoc_len(b, nb))
			return false;
		for (size_t i = 0; i < ydoc_len(a, na); i++) {
			const char *k = ydoc_str(a, ydoc_map_key(a, na, i));
			if (!k)
				return false;
			int vb = ydoc_map_get(b, nb, k);
			if (!vb || !ydoc_equal(a, ydoc_map_val(a, na, i), b, vb))
				return false;
		}
		return true;
	}
	return false;
}

static int emit_write(void *data, unsigned char *buffer, size_t size)
{
	return buf_append(data, buffer, size) == 0;
}

static int emit_node(yaml_emitter_t *em, const struct ydoc *d, int node, const char *skip)
{
	yaml_event_t ev;
	yaml_node_t *n = node_at(d, node);
	if (!n)
		return -EINVAL;
	switch (n->type) {
	case YAML_SCALAR_NODE: {
		bool plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		yaml_scalar_style_t st = YAML_ANY_SCALAR_STYLE;
		if (plain)
			st = YAML_PLAIN_SCALAR_STYLE;
		else if (memchr(n->data.scalar.value, '\n', n->data.scalar.length))
			st = YAML_LITERAL_SCALAR_STYLE;
		if (!yaml_scalar_event_initialize(&ev, NULL, NULL, n->data.scalar.value,
						  (int)n->data.scalar.length, plain, 1, st))
			return -ENOMEM;
		break;
	}
	case YAML_SEQUENCE_NODE:
		if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
							  YAML_BLOCK_SEQUENCE_STYLE))
			return -ENOMEM;
		if (!yaml_emitter_emit(em, &ev))
			return -EINVAL;
		for (size_t i = 0; i < ydoc_len(d, node); i++) {
			int r = emit_node(em, d, ydoc_seq_at(d, node, i), NULL);
			if (r)
				return r;
		}
		if (!yaml_sequence_end_event_initialize(&ev))
			return -ENOMEM;
		break;
	case YAML_MAPPING_NODE:
		if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
							 YAML_BLOCK_MAPPING_STYLE))
			return -ENOMEM;
		if (!yaml_emitter_emit(em, &ev))
			return -EINVAL;
		for (size_t i = 0; i < ydoc_len(d, node); i++) {
			const char *k = ydoc_str(d, ydoc_map_key(d, node, i));
			if (skip && k && !strcmp(k, skip))
				continue;
			int r = emit_node(em, d, ydoc_map_key(d, node, i), NULL);
			if (!r)
				r = emit_node(em, d, ydoc_map_val(d, node, i), NULL);
			if (r)
				return r;
		}
		if (!yaml_mapping_end_event_initialize(&ev))
			return -ENOMEM;
		break;
	default:
		return -EINVAL;
	}
	return yaml_emitter_emit(em, &ev) ? 0 : -EINVAL;
}

int ydoc_emit_skip(const struct ydoc *d, int node, const char *skip, char **out, size_t *outlen)
{
	yaml_emitter_t em;
	yaml_event_t ev;
	struct buf b;
	int r = -ENOMEM;
	*out = NULL;
	buf_init(&b, 64 * 1024 * 1024);
	if (!yaml_emitter_initialize(&em))
		return -ENOMEM;
	yaml_emitter_set_output(&em, emit_write, &b);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, -1);
	yaml_emitter_set_indent(&em, 2);
	if (!yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) ||
	    !yaml_emitter_emit(&em, &ev))
		goto out;
	if (!yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) ||
	    !yaml_emitter_emit(&em, &ev))
		goto out;
	r = emit_node(&em, d, node, skip);
	if (r)
		goto out;
	r = -EINVAL;
	if (!yaml_document_end_event_initialize(&ev, 1) || !yaml_emitter_emit(&em, &ev))
		goto out;
	if (!yaml_stream_end_event_initialize(&ev) || !yaml_emitter_emit(&em, &ev))
		goto out;
	if (!yaml_emitter_flush(&em))
		goto out;
	r = 0;
out:
	yaml_emitter_delete(&em);
	if (r) {
		buf_free(&b);
		return r;
	}
	*out = buf_steal(&b, outlen);
	if (!*out) {
		*out = xstrdup("");
		*outlen = 0;
	}
	return 0;
}

int ydoc_emit(const struct ydoc *d, int node, char **out, size_t *outlen)
{
	return ydoc_emit_skip(d, node, NULL, out, outlen);
}
