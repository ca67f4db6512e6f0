/* seal: AES-256-GCM sealing of secrets at rest, in dstack's stored format.
 *
 * A sealed value is the text "enc:aes:<key name>:<base64(nonce[12] || ciphertext || tag[16])>",
 * which is what dstack stores for encrypted columns. The first key of the ring seals; opening
 * tries every key of the ring (as dstack does, ignoring the name), which is how rotation works.
 * Additional authenticated data binds a sealed value to where it is stored (the record key), so
 * a sealed value copied to another record does not open.
 */
#ifndef FLEETFS_SEAL_H
#define FLEETFS_SEAL_H

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_LEN 32
#define SEAL_MAX_KEYS 16
#define SEAL_NAME_MAX 64

struct seal_key {
	char name[SEAL_NAME_MAX];
	uint8_t key[SEAL_KEY_LEN];
};

struct seal_ring {
	struct seal_key keys[SEAL_MAX_KEYS];
	size_t n;
};

/* Load the key file at path, creating it (0600, 32 random bytes) when absent and create is
 * set. The key is named "local". Returns 0, -ENOENT, -EINVAL (wrong size or mode group/other
 * bits set: message in err), or -errno. */
int seal_keyfile(const char *path, int create, struct seal_key *out, char *err, size_t errlen);

/* Decode a dstack `secret` (base64 of exactly 32 bytes). Returns 0 or -EINVAL. */
int seal_key_from_b64(const char *name, const char *b64, struct seal_key *out);

/* Seal plain (len bytes) under ring->keys[0]; aad may be NULL. Returns a malloc'd
 * NUL-terminated string (caller frees) or NULL on allocation failure. */
char *seal_seal(const struct seal_ring *ring, const char *aad, const void *plain, size_t len);

/* Open a sealed string. On success *out is malloc'd (NUL-terminated past *outlen; caller frees
 * with seal_free_secret). Returns 0, -EINVAL (not a sealed string), -EACCES (no key of the ring
 * opens it), -ENOMEM. */
int seal_open(const struct seal_ring *ring, const char *aad, const char *sealed, char **out,
	      size_t *outlen);

/* Zero and free a secret buffer. NULL is fine. */
void seal_free_secret(char *p, size_t len);


#include "../lib/enc.h" /* b64_encode/b64_decode: sealed text and key files are base64 */

#endif
