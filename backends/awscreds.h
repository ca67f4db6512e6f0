/* awscreds: the AWS credentials of an aws backend, from its config.yml `creds`.
 *
 * `{type: access_key, access_key, secret_key}`: the static key of the config.
 * `{type: default}`: the AWS SDKs' default chain, first found wins:
 *   1. environment: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *   2. shared files, profile AWS_PROFILE or "default": ~/.aws/credentials (or
 *      AWS_SHARED_CREDENTIALS_FILE) section [name], then ~/.aws/config (or AWS_CONFIG_FILE)
 *      section [profile name] ([default] too for the default profile); keys
 *      aws_access_key_id, aws_secret_access_key, aws_session_token (key names are
 *      case-insensitive, as Python's configparser has them). The credentials file wins over
 *      the config file for the same profile. A profile named by AWS_PROFILE that neither file
 *      has is an error, as in the SDKs (no fall-through to IMDS);
 *   3. EC2 instance metadata, IMDSv2 only (a session token first, no IMDSv1 fallback), at
 *      AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254, 1 s to connect, 2 s in
 *      all, one attempt per request; skipped when AWS_EC2_METADATA_DISABLED is "true".
 * Not covered (yet): assume-role profiles, web identity, SSO, credential_process, the ECS
 * container endpoint.
 * ~ is $HOME, else the home directory of the process's user in the password database.
 *
 * The INI files are read with inih (libinih), whole lines up to AWS_CREDS_LINE_MAX, each file
 * up to AWS_CREDS_FILE_MAX bytes. Debian's inih takes its options from process-wide
 * variables: this module sets them once (no other module uses inih).
 */
#ifndef FLEETFS_AWSCREDS_H
#define FLEETFS_AWSCREDS_H

#include <stddef.h>

struct backend_ctx;
struct http_client;

#define AWS_CREDS_LINE_MAX 16384
#define AWS_CREDS_FILE_MAX (1024 * 1024)

struct aws_creds {
	char access_key_id[128];
	char *secret_access_key; /* malloc'd, secret */
	char *session_token;	 /* malloc'd, secret; NULL when none */
	char source[64];	 /* "config", "env", "profile <name>", "imds <role>" (cut to fit) */
	char region[32];	 /* `region` of the profile in the config file (type default); "" */
	long long expires;	 /* unix seconds the credentials expire (IMDS), 0 none */
};

/* Resolve the credentials of ctx (ctx->config: creds.type access_key|default, access_key,
 * secret_key). http is the client for IMDS (NULL: ctx->http; both NULL: IMDS is skipped).
 * out is overwritten; on 0 free it with aws_creds_free; on error it holds nothing to free.
 * Returns 0, or -errno with a reason in err (never a secret):
 *   -EACCES  the chain found nothing (err lists what was tried), or IMDS refused
 *   -EINVAL  a bad config.yml creds, a partial key (an id without its secret), a shared file
 *            that exists but cannot be read or parsed, an IMDS answer that is not credentials
 *   -EFBIG   a shared file over AWS_CREDS_FILE_MAX */
int aws_creds_resolve(const struct backend_ctx *ctx, struct http_client *http,
		      struct aws_creds *out, char *err, size_t errlen);

/* Wipe the secrets (explicit_bzero) and free them; c is left zeroed. NULL is fine. */
void aws_creds_free(struct aws_creds *c);

#endif
