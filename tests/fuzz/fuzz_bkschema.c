/* fuzz_bkschema: backends/schema, the validation of one backend entry (all 17 types, their
 * tables, the files they name). The input's first line is the entry's directory name: a
 * type ("aws"), a named backend ("aws-prod"), or "-" for an entry of the root config.yml
 * (dirname NULL); the rest is the config.yml, as written through the mount. Files the entry
 * names resolve against a home holding the files the examples name (fuzzlib). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../backends/schema.h"
#include "../../lib/ydoc.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct fileref_ctx *ctx = fz_writer_ctx();
	const uint8_t *nl = memchr(data, '\n', size < 64 ? size : 64);
	char dirname[64] = "";
	struct ydoc *d = NULL;
	struct schema_result res;
	char err[1024];
	if (size > YDOC_MAX_BYTES + 64)
		return -1;
	if (nl) {
		memcpy(dirname, data, (size_t)(nl - data));
		dirname[nl - data] = '\0';
		size -= (size_t)(nl - data) + 1;
		data = nl + 1;
	}
	if (ydoc_load((const char *)data, size, "config.yml", &d, err, sizeof(err)))
		return 0;
	memset(&res, 0, sizeof(res));
	if (schema_validate(d, ydoc_root(d), strcmp(dirname, "-") ? dirname : NULL, ctx, &res, err,
			sizeof(err)) == 0)
		schema_result_free(&res);
	ydoc_free(d);
	return 0;
}
