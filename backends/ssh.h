/* ssh: run one command on a host over SSH (libssh2), optionally through a jump host.
 *
 * Key authentication only, from an in-memory private key (RSA, ECDSA or Ed25519; PEM or the
 * OpenSSH format, no passphrase). The host key is always reported back; when `pin` is set it
 * must match, else the call fails with -EKEYREJECTED before authenticating (a changed host
 * key is never accepted). Every step is bounded by timeout_ms in total (TCP connect,
 * handshake, auth, the command). Through a jump host the connection to the target is a
 * direct-tcpip channel of the jump host's session, and the jump host's key is pinned the
 * same way.
 */
#ifndef FLEETFS_SSH_H
#define FLEETFS_SSH_H

#include <stddef.h>

#define SSHC_HOSTKEY_MAX 2048

struct sshc_endpoint {
	const char *host;
	int port;
	const char *user;
	const char *key;  /* private key text */
	size_t keylen;
	const char *pin;  /* expected host key "TYPE BASE64" (known_hosts form), or NULL */
};

struct sshc_result {
	int exit_status;                 /* the command's exit status (-1 if none) */
	char *out;                       /* stdout, NUL-terminated, malloc'd (caller frees) */
	size_t outlen;
	char *errout;                    /* stderr, same */
	size_t errlen;
	char host_key[SSHC_HOSTKEY_MAX]; /* the target's host key "TYPE BASE64" */
	char jump_key[SSHC_HOSTKEY_MAX]; /* the jump host's, when a jump host was used */
};

/* Run command on target (through jump when non-NULL). Output is capped at max_out bytes per
 * stream (-EFBIG past it). Returns 0 when the command ran (whatever its exit status), else:
 * -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH/-ENETUNREACH, -EKEYREJECTED (host key differs from
 * pin; res->host_key holds the new one), -EACCES (authentication refused), -EPROTO (SSH
 * protocol failure), -EINVAL (bad key), -ENOMEM; a readable reason in err either way.
 * res must be zeroed by the caller; free with sshc_result_free. Thread-safe (call
 * sshc_global_init once first). */
int sshc_run(const struct sshc_endpoint *target, const struct sshc_endpoint *jump,
	     const char *command, int timeout_ms, size_t max_out, struct sshc_result *res,
	     char *err, size_t errlen);
void sshc_result_free(struct sshc_result *res);
int sshc_global_init(void);

/* The public half of a private key, in authorized_keys form ("ssh-ed25519 AAAA... comment").
 * *out malloc'd. 0 or -EINVAL. */
int sshc_public_key(const char *key, size_t keylen, const char *comment, char **out);

/* Generate a new RSA 3072 private key (PEM, "-----BEGIN RSA PRIVATE KEY-----" or PKCS#8) for
 * the project key. *out malloc'd. 0 or -errno. */
int sshc_generate_key(char **out, size_t *outlen);

#endif
