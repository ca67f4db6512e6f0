/* fuzz_aws_xml: aws_xml_parse (libxml2 set up for untrusted answers: no network, no DTD,
 * no entity expansion) and the awsx_* readers every EC2/STS/IAM answer goes through, on any
 * bytes. The daemon caps an HTTP body at 16 MiB; inputs are cut at FZ_MAX_INPUT. */
#include <stdint.h>

#include "../../backends/awsapi.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t g_visits;

static void walk(const xmlNode *n, int depth)
{
	char buf[256];
	for (const xmlNode *c = n; c && depth < 256 && g_visits < 100000; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		g_visits++;
		(void)awsx_text(c, "code", buf, sizeof(buf));
		(void)awsx_text(c, "instanceState/name", buf, sizeof(buf));
		for (xmlNode *it = awsx_first(c); it; it = awsx_next(it))
			(void)awsx_text(it, "instanceId", buf, sizeof(buf));
		walk(c->children, depth + 1);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FZ_MAX_INPUT)
		return -1;
	xmlDoc *doc = aws_xml_parse((const char *)data, size);
	if (!doc)
		return 0;
	xmlNode *root = awsx_root(doc);
	char buf[128];
	(void)awsx_text(root, "Errors/Error/Code", buf, sizeof(buf));
	(void)awsx_path(root, "reservationSet/item/instancesSet");
	g_visits = 0;
	walk(root, 0);
	xmlFreeDoc(doc);
	return 0;
}
