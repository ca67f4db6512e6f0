/* fuzz_awscreds: backends/awscreds, the AWS SDKs' default credential chain over outside
 * input: the shared credentials and config files (INI through inih, bounded lines and
 * sizes) and the EC2 instance metadata service's answers (IMDSv2 token, role name,
 * credentials JSON). The input (fuzzlib.h's script format):
 *       PROFILE                    AWS_PROFILE (an empty line: unset, "default")
 *       === 0                      the credentials file (a "=== 404" section: no file)
 *       ...
 *       === 0                      the config file (likewise)
 *       ...
 *       === 200                    then IMDS's answers, in turn
 *       ...
 * The environment holds no keys, so the chain reaches the files and then IMDS. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../backends/awscreds.h"
#include "fuzzlib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONFIG[] = "type: aws\ncreds:\n  type: default\nregions: [us-east-1]\n";

static void put_file(const char *name, const char *var, bool present, const char *body,
		     size_t len)
{
	char path[1024];
	if (fmt(path, sizeof(path), "%s/%s", fz_scratch(), name))
		abort();
	if (present)
		fz_write(name, body, len, NULL, 0);
	else
		(void)unlink(path);
	setenv(var, path, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const unset[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
					    "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED",
					    "AWS_EC2_METADATA_SERVICE_ENDPOINT"};
	struct http_client *http = fz_http();
	const char *body = NULL;
	size_t len = 0;
	char *w[1] = {NULL};
	char err[1024];
	struct aws_creds c;
	if (size > 3 * AWS_CREDS_FILE_MAX)
		return -1;
	for (size_t i = 0; i < sizeof(unset) / sizeof(unset[0]); i++)
		unsetenv(unset[i]);
	char *head = fz_script_begin(data, size);
	if (fz_words(head, w, 1) && strlen(w[0]) < 128)
		setenv("AWS_PROFILE", w[0], 1);
	else
		unsetenv("AWS_PROFILE");
	/* the first two sections are the files; a section of status 404 stands for none */
	for (int i = 0; i < 2; i++) {
		long status = 0;
		bool have = fz_script_take(&status, &body, &len);
		put_file(i ? "aws-config" : "aws-credentials",
			 i ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE",
			 have && status != 404, body, len);
	}
	struct backend_config cfg;
	if (backend_config_parse(CONFIG, strlen(CONFIG), &cfg, err, sizeof(err)))
		abort();
	struct backend_ctx ctx = {.project = "main", .name = "aws", .type = "aws", .config = &cfg,
				  .http = http};
	if (aws_creds_resolve(&ctx, http, &c, err, sizeof(err)) == 0)
		aws_creds_free(&c);
	backend_config_free(&cfg);
	fz_script_end();
	free(head);
	return 0;
}
