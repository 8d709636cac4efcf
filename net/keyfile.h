/*
 * net/keyfile.h — the X25519 key files of the Noise channel: the one part of
 * net/ that touches files (the channel itself only sees bytes).
 *
 * A secret key file is text, created with mode 0600 and never overwritten:
 *
 *   # fedpress X25519 secret key (Noise_XK_25519_ChaChaPoly_SHA256). Keep it secret.
 *   # public 8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a
 *   77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a
 *
 * Lines starting with '#' and blank lines are ignored; exactly one line
 * holds the 32-byte secret key as 64 hex digits. The public key is always
 * derived from the secret one (the comment is for people). A public key is
 * written as one line of 64 hex digits, as `fedpress keygen` prints it.
 * The key serves this protocol only.
 */
#ifndef FP_KEYFILE_H
#define FP_KEYFILE_H

#include <stdint.h>

#include "../core/error.h"
#include "noise.h"

#define FP_KEY_HEX (2 * FP_NOISE_KEY)

/* A fresh key pair into path: FP_EIO if path exists (never overwritten) or
 * cannot be written (nothing is left behind). pub receives the public key. */
int fp_keyfile_generate(const char *path, uint8_t pub[FP_NOISE_KEY], struct fp_error *err);

/* Reads a secret key file (a symbolic link is followed; the mode checked is
 * the file's): FP_EIO if unreadable or readable by group or others,
 * FP_EFORMAT if not a regular file of at most 4 KiB (a FIFO is refused
 * without waiting), if it holds a NUL byte, or if not exactly one key line
 * of 64 hex digits. The
 * caller wipes priv (sodium_memzero) when done. */
int fp_keyfile_read(const char *path, uint8_t priv[FP_NOISE_KEY], struct fp_error *err);

/* 64 lowercase hex digits and a NUL. */
void fp_key_to_hex(const uint8_t key[FP_NOISE_KEY], char hex[FP_KEY_HEX + 1]);
/* Exactly 64 hex digits (surrounding blanks allowed): 0 or FP_EFORMAT. */
int fp_key_from_hex(const char *hex, uint8_t key[FP_NOISE_KEY]);

#endif
