/* awsapi: calls to AWS's query (EC2, STS, IAM) and JSON 1.1 (Service Quotas) APIs for the aws
 * backend: endpoints, SigV4 signing, XML answers and AWS's error codes.
 *
 * Endpoints, as the AWS SDKs choose them:
 *   ec2            https://ec2.<region>.amazonaws.com
 *   sts            https://sts.amazonaws.com          (signed for us-east-1)
 *   iam            https://iam.amazonaws.com          (signed for us-east-1)
 *   servicequotas  https://servicequotas.<region>.amazonaws.com
 * overridden, as in the SDKs, by AWS_ENDPOINT_URL_<SERVICE> (EC2, STS, IAM, SERVICE_QUOTAS),
 * else AWS_ENDPOINT_URL, unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is "true". An overridden
 * endpoint serves every region: the region is in the signature's scope only.
 *
 * Answers: query APIs answer XML, parsed with libxml2 (no network, no entity expansion, no
 * DTD loading); their errors (EC2 Response/Errors/Error, STS and IAM ErrorResponse/Error) and
 * Service Quotas' JSON errors ({"__type", "message"}) give api->code and a readable err
 * "aws: <Action>: <Code>: <Message>" with any secret masked out.
 *
 * Errors (-errno) of a call, by AWS's code:
 *   -EACCES   the credentials were refused (AuthFailure, InvalidClientTokenId,
 *             SignatureDoesNotMatch, UnrecognizedClientException, InvalidSignatureException,
 *             MissingAuthenticationToken, ExpiredToken, RequestExpired, OptInRequired,
 *             UnauthorizedOperation, AccessDenied, AccessDeniedException)
 *   -ENOENT   a *.NotFound, NoSuchEntity, NoSuchResourceException, *.Unknown code
 *   -ENOSPC   InsufficientInstanceCapacity, InsufficientCapacity, InstanceLimitExceeded,
 *             VcpuLimitExceeded, MaxSpotInstanceCountExceeded, SpotMaxPriceTooLow,
 *             InsufficientFreeAddressesInSubnet, Unsupported
 *   -EAGAIN   throttled (RequestLimitExceeded, Throttling, ThrottlingException,
 *             TooManyRequestsException) after the HTTP client's retries
 *   -EIO      any other 5xx;  -EINVAL any other 4xx;  -EPROTO an answer that is not AWS's
 *   and the HTTP client's transport errors (-ETIMEDOUT, -ECONNREFUSED, -ECANCELED ...).
 */
#ifndef FLEETFS_AWSAPI_H
#define FLEETFS_AWSAPI_H

#include <stdbool.h>
#include <stddef.h>

#include <libxml/tree.h>

#include "../lib/util.h"
#include "awscreds.h"

struct backend_ctx;
struct cJSON;

enum aws_service { AWS_EC2 = 0, AWS_STS, AWS_IAM, AWS_SQ };

#define AWS_CODE_MAX 96

/* One operation's view of AWS: the backend and its resolved credentials. */
struct aws_api {
	const struct backend_ctx *ctx;
	struct aws_creds creds;
	char code[AWS_CODE_MAX]; /* AWS's error code of the last failed call, "" for none */
	long status;		 /* HTTP status of the last answer, 0 for none */
	int max_attempts;	 /* per call, the HTTP client's retries included; 0: its default */
};

/* Resolve ctx's credentials (cached for the process: the config's for 5 minutes, the default
 * chain's until 5 minutes before they expire, at most 5 minutes). 0 (close it with
 * aws_api_close), or aws_creds_resolve's -errno with err (a holds nothing to close). */
int aws_api_open(struct aws_api *a, const struct backend_ctx *ctx, char *err, size_t errlen);
void aws_api_close(struct aws_api *a);

/* A query request's form parameters. Its body is written as the AWS SDKs write it (botocore's
 * query serializer): Action, Version, then the name=value pairs in the order added, each name
 * and value form-encoded (A-Z a-z 0-9 - . _ ~ kept, a space '+', any other byte %XX), with
 * Content-Type application/x-www-form-urlencoded; charset=utf-8. AWS would take other
 * encodings; emulators (moto, LocalStack) rebuild the body that way before checking the
 * signature, and refuse any other. */
struct aws_query {
	struct buf b; /* "&name=value" pairs, encoded */
	char action[64];
	bool too_big; /* a parameter did not fit under the cap: aws_query fails with EFBIG */
};
void awsq_init(struct aws_query *q, const char *action);
void awsq_free(struct aws_query *q);
/* Append the body aws_query sends for q to svc to out (a query service: EC2, STS, IAM). */
void awsq_form(const struct aws_query *q, enum aws_service svc, struct buf *out);
void awsq_add(struct aws_query *q, const char *name, const char *value);
/* The name is a format ("Filter.%d.Value.%d"); value is used as it is. */
void awsq_addf(struct aws_query *q, const char *value, const char *namefmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Filter.<n>.Name=name and Filter.<n>.Value.<k>=each of the NULL-terminated values. */
void awsq_filter(struct aws_query *q, int n, const char *name, const char *const *values);

/* POST the query to svc in region (EC2, Service Quotas: the VM's region; STS and IAM ignore
 * it) with the service's API version. idempotent: the call may be repeated (reads, creates
 * with a client token). 0 with *doc the parsed answer (caller frees with xmlFreeDoc), or
 * -errno (see the top) with err, api->code and *doc NULL. */
int aws_query(struct aws_api *a, enum aws_service svc, const char *region,
	      const struct aws_query *q, bool idempotent, xmlDoc **doc, char *err,
	      size_t errlen);

/* Service Quotas' JSON 1.1 call "ServiceQuotasV20190624.<op>" with body in region. 0 with
 * *out (caller frees), or -errno with err and api->code. */
int aws_sq_call(struct aws_api *a, const char *region, const char *op,
		const struct cJSON *body, struct cJSON **out, char *err, size_t errlen);

/* ---- XML answers (element names compared without namespace) ---- */

/* The first element child of n named name, or NULL. */
xmlNode *awsx_child(const xmlNode *n, const char *name);
/* Follow a '/'-separated path of child names from n ("instanceState/name"). */
xmlNode *awsx_path(const xmlNode *n, const char *path);
/* The text of the element at path below n, cut to fit and without control characters, into
 * buf; "" (and false) when absent. */
bool awsx_text(const xmlNode *n, const char *path, char *buf, size_t len);
/* The first and next <item> element of a list element (xxxSet). */
xmlNode *awsx_first(const xmlNode *set);
xmlNode *awsx_next(const xmlNode *item);
/* The root element of an answer. */
xmlNode *awsx_root(xmlDoc *doc);

/* The URL of svc for region (see the top). 0 or -ENAMETOOLONG. */
int aws_endpoint(enum aws_service svc, const char *region, char *url, size_t n);

/* Parse an answer: no network, no DTD loading, entities left unexpanded. NULL when it is not
 * XML. Free with xmlFreeDoc. */
xmlDoc *aws_xml_parse(const char *data, size_t len);

/* Is region a region name AWS could have (letters, digits and '-', 1..32)? Keeps URLs and
 * memo keys clean. */
bool aws_region_ok(const char *region);

#endif
