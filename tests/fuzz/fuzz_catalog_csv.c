/* fuzz_catalog_csv: core/offers' gpuhunt CSV reader (offers_parse_csv: every catalog and the
 * offers cache), then what is done with a parsed list: sort, names, the region cut, the
 * three renderings, and the cache's own format, which must read back to as many offers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/offers.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct offer_origin org = {.backend = "aws-dev", .type = "aws",
						.source = "catalog", .fetched_at = 1700000000};
	struct offer_list l, back;
	char err[512], name[512];
	size_t skipped = 0;
	memset(&l, 0, sizeof(l));
	memset(&back, 0, sizeof(back));
	if (size > FZ_MAX_INPUT)
		return -1;
	if (offers_parse_csv((const char *)data, size, &org, &l, &skipped, err, sizeof(err))) {
		offer_list_free(&l);
		return 0;
	}
	offers_sort(&l);
	for (size_t i = 0; i < l.n; i++)
		offer_name(&l.v[i], name, sizeof(name));
	struct buf b;
	buf_init(&b, 64 << 20);
	(void)offers_tsv(&l, NULL, &b);
	(void)offers_json(&l, NULL, &b);
	(void)buf_truncate(&b, 0);
	if (offers_write_csv(&l, &b) == 0) {
		if (offers_parse_csv(b.data ? b.data : "", b.len, &org, &back, NULL, err, sizeof(err)) ||
		    back.n != l.n)
			abort(); /* the offers cache must read back what it wrote */
	}
	buf_free(&b);
	const char *regions[] = {"us-east-1", "EU-WEST-1"};
	offers_filter_regions(&l, regions, 2);
	offer_list_free(&back);
	offer_list_free(&l);
	return 0;
}
