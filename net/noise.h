/*
 * net/noise.h — Noise_XK_25519_ChaChaPoly_SHA256 (The Noise Protocol
 * Framework, revision 34), built from libsodium: X25519 (crypto_scalarmult),
 * ChaCha20-Poly1305 IETF with nonce = 4 zero bytes || little-endian 64-bit
 * counter, SHA-256, and HKDF from HMAC-SHA-256 (section 4.3 of the spec).
 *
 *   XK:
 *     <- s
 *     ...
 *     -> e, es
 *     <- e, ee
 *     -> s, se
 *
 * Only this one pattern is implemented, in both roles. The states are the
 * spec's CipherState, SymmetricState and HandshakeState (section 5), as
 * plain structs the caller owns (no allocation anywhere in this module).
 * Every secret they hold is wiped by fp_noise_handshake_wipe /
 * fp_noise_cipher_wipe; the caller must call them when done.
 *
 * Deviation allowed by the spec (section 12.1): a DH whose result is all
 * zeros (a low-order public key; libsodium's crypto_scalarmult returns -1)
 * aborts the handshake instead of continuing with a zero secret.
 *
 * This module knows nothing about the fedpress wire (magic, length prefixes,
 * records): net/channel.c adds those. It is pure computation: no I/O, no
 * clock; randomness only for a fresh ephemeral key when the caller did not
 * inject one (the test vectors inject theirs).
 */
#ifndef FP_NOISE_H
#define FP_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"

#define FP_NOISE_KEY      32    /* X25519 keys, ChaChaPoly keys */
#define FP_NOISE_HASH     32    /* SHA-256 */
#define FP_NOISE_TAG      16    /* Poly1305 */
#define FP_NOISE_MSG_MAX  65535 /* any Noise message, handshake or transport */
#define FP_NOISE_PROTOCOL "Noise_XK_25519_ChaChaPoly_SHA256"
/* Overheads of the three XK messages around their payloads. */
#define FP_NOISE_MSG1_OVERHEAD (FP_NOISE_KEY + FP_NOISE_TAG)
#define FP_NOISE_MSG2_OVERHEAD (FP_NOISE_KEY + FP_NOISE_TAG)
#define FP_NOISE_MSG3_OVERHEAD (FP_NOISE_KEY + 2 * FP_NOISE_TAG)

struct fp_noise_cipher {
    uint8_t k[FP_NOISE_KEY];
    uint64_t n;
    int has_key;
};

struct fp_noise_symmetric {
    struct fp_noise_cipher cs;
    uint8_t ck[FP_NOISE_HASH];
    uint8_t h[FP_NOISE_HASH];
};

struct fp_noise_handshake {
    struct fp_noise_symmetric ss;
    int initiator;
    int step; /* messages done: 0..3; 3 = ready to split */
    int has_e;
    uint8_t s_priv[FP_NOISE_KEY], s_pub[FP_NOISE_KEY];
    uint8_t e_priv[FP_NOISE_KEY], e_pub[FP_NOISE_KEY];
    uint8_t rs[FP_NOISE_KEY]; /* the responder's key (initiator: pinned), or
                                 the initiator's once message 3 is read */
    uint8_t re[FP_NOISE_KEY];
};

/* Calls sodium_init() once; 0 or FP_EINVAL if libsodium cannot start. */
int fp_noise_init(void);

/* Derives an X25519 public key from a secret key. */
void fp_noise_public_key(const uint8_t priv[FP_NOISE_KEY], uint8_t pub[FP_NOISE_KEY]);

/* ENCRYPT(k, n++, ad, pt) into out (ptlen + FP_NOISE_TAG bytes; out may not
 * overlap pt unless out == pt). FP_EINVAL once the nonce reached 2^64-1
 * (reserved by the spec), without encrypting. Without a key: copies. */
int fp_noise_cipher_encrypt(struct fp_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *pt, size_t ptlen, uint8_t *out);
/* DECRYPT(k, n++, ad, ct) into out (ctlen - FP_NOISE_TAG bytes). On a bad
 * tag FP_EFORMAT, nothing written and n unchanged. */
int fp_noise_cipher_decrypt(struct fp_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *ct, size_t ctlen, uint8_t *out);
void fp_noise_cipher_wipe(struct fp_noise_cipher *cs);

/* Initializes a handshake (Initialize(), section 5.3) with the protocol
 * name above, the prologue, the local static secret key and, for the
 * initiator, the responder's pinned public key (rs; NULL for a responder). */
void fp_noise_handshake_init(struct fp_noise_handshake *hs, int initiator, const uint8_t *prologue,
                             size_t prologue_len, const uint8_t s_priv[FP_NOISE_KEY],
                             const uint8_t rs[FP_NOISE_KEY]);

/* Uses e_priv as this side's ephemeral key instead of a fresh random one
 * (test vectors only: an ephemeral key used twice breaks forward secrecy).
 * Call before the message that sends e. */
void fp_noise_handshake_set_ephemeral(struct fp_noise_handshake *hs,
                                      const uint8_t e_priv[FP_NOISE_KEY]);

/* WriteMessage: this side's next message with payload into out[cap];
 * *outlen = its size. FP_EINVAL when it is not this side's turn or out is
 * too small or the message would pass FP_NOISE_MSG_MAX; FP_EFORMAT when a
 * DH fails (a low-order key). */
int fp_noise_handshake_write(struct fp_noise_handshake *hs, const uint8_t *payload,
                             size_t payload_len, uint8_t *out, size_t cap, size_t *outlen,
                             struct fp_error *err);

/* ReadMessage: the peer's next message; its payload into payload[cap],
 * *payload_len its size. FP_EFORMAT with a reason for a short message, a
 * bad tag or a low-order key; FP_EINVAL when it is not the peer's turn.
 * After FP_EFORMAT (here or from a write) the state is wiped and dead: every
 * later read or write fails (section 5.3: the handshake has failed). */
int fp_noise_handshake_read(struct fp_noise_handshake *hs, const uint8_t *msg, size_t len,
                            uint8_t *payload, size_t cap, size_t *payload_len,
                            struct fp_error *err);

/* Whether all three messages are done. */
int fp_noise_handshake_done(const struct fp_noise_handshake *hs);

/* Split(): the transport keys, as this side uses them (the initiator sends
 * with the first, the responder with the second), and the handshake hash h.
 * Only after fp_noise_handshake_done. Does not wipe hs. */
void fp_noise_handshake_split(struct fp_noise_handshake *hs, struct fp_noise_cipher *send,
                              struct fp_noise_cipher *recv, uint8_t h[FP_NOISE_HASH]);

void fp_noise_handshake_wipe(struct fp_noise_handshake *hs);

#endif
