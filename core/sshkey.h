/* sshkey: is this text an SSH private key fleetfs (and dstack) can use?
 *
 * dstack accepts the key types paramiko loads (RSAKey, ECDSAKey, Ed25519Key) and refuses a key
 * with a passphrase (services/fleets.py::_validate_ssh_key). This module checks the same
 * without doing any cryptography itself: PEM and PKCS#8 keys are loaded with OpenSSL
 * (PEM_read_bio_PrivateKey, never prompting), and the OpenSSH container
 * ("-----BEGIN OPENSSH PRIVATE KEY-----", PROTOCOL.key of OpenSSH) is decoded only far enough
 * to read its cipher, its KDF and its key type. Whether the key's numbers are sound is for the
 * SSH library to find when it connects.
 */
#ifndef FLEETFS_SSHKEY_H
#define FLEETFS_SSHKEY_H

#include <stddef.h>

#define SSHKEY_TYPES "RSA, ECDSA (nistp256/384/521) or Ed25519"

/* Check data (len bytes, NUL-terminated past len) is an unencrypted RSA, ECDSA (P-256, P-384,
 * P-521) or Ed25519 private key in PEM, PKCS#8 or OpenSSH format. Returns 0, -EINVAL with the
 * reason in why (encrypted, unsupported type, a public key, not a key; never key material),
 * or -ENOMEM. */
int sshkey_check(const char *data, size_t len, char *why, size_t whylen);

#endif
