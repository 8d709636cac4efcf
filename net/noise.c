/*
 * net/noise.c — Noise_XK_25519_ChaChaPoly_SHA256 from libsodium (see
 * noise.h). Section numbers refer to the Noise spec, revision 34.
 */
#include "noise.h"

#include <sodium.h>
#include <string.h>

int fp_noise_init(void)
{
    return sodium_init() < 0 ? FP_EINVAL : 0;
}

void fp_noise_public_key(const uint8_t priv[FP_NOISE_KEY], uint8_t pub[FP_NOISE_KEY])
{
    crypto_scalarmult_base(pub, priv);
}

/* 4.2: the 96-bit nonce is 32 zero bits then n, little-endian. */
static void fp__nonce(uint64_t n, uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES])
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

int fp_noise_cipher_encrypt(struct fp_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *pt, size_t ptlen, uint8_t *out)
{
    if (!cs->has_key) {
        if (out != pt)
            memmove(out, pt, ptlen);
        return 0;
    }
    /* 5.1: n = 2^64-1 is reserved; running into it is an error, never a wrap. */
    if (cs->n == UINT64_MAX)
        return FP_EINVAL;
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    fp__nonce(cs->n, nonce);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + ptlen, NULL, pt, ptlen, ad, adlen,
                                                       NULL, nonce, cs->k);
    cs->n++;
    return 0;
}

int fp_noise_cipher_decrypt(struct fp_noise_cipher *cs, const uint8_t *ad, size_t adlen,
                            const uint8_t *ct, size_t ctlen, uint8_t *out)
{
    if (!cs->has_key) {
        if (out != ct)
            memmove(out, ct, ctlen);
        return 0;
    }
    if (ctlen < FP_NOISE_TAG || cs->n == UINT64_MAX)
        return FP_EFORMAT;
    uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
    fp__nonce(cs->n, nonce);
    /* libsodium checks the tag before it writes a byte of plaintext. */
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, ct, ctlen - FP_NOISE_TAG,
                                                           ct + ctlen - FP_NOISE_TAG, ad, adlen,
                                                           nonce, cs->k) != 0)
        return FP_EFORMAT;
    cs->n++;
    return 0;
}

void fp_noise_cipher_wipe(struct fp_noise_cipher *cs)
{
    sodium_memzero(cs, sizeof *cs);
}

static void fp__hmac(const uint8_t key[FP_NOISE_HASH], const uint8_t *a, size_t alen,
                     const uint8_t *b, size_t blen, uint8_t out[FP_NOISE_HASH])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, FP_NOISE_HASH);
    crypto_auth_hmacsha256_update(&st, a, alen);
    if (blen)
        crypto_auth_hmacsha256_update(&st, b, blen);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof st);
}

/* 4.3 HKDF(chaining_key, input_key_material, 2): two outputs (this pattern
 * never needs the third). */
static void fp__hkdf2(const uint8_t ck[FP_NOISE_HASH], const uint8_t *ikm, size_t ikm_len,
                      uint8_t out1[FP_NOISE_HASH], uint8_t out2[FP_NOISE_HASH])
{
    uint8_t temp[FP_NOISE_HASH];
    const uint8_t one = 1, two = 2;
    fp__hmac(ck, ikm, ikm_len, NULL, 0, temp);
    fp__hmac(temp, &one, 1, NULL, 0, out1);
    fp__hmac(temp, out1, FP_NOISE_HASH, &two, 1, out2);
    sodium_memzero(temp, sizeof temp);
}

static void fp__mix_hash(struct fp_noise_symmetric *ss, const uint8_t *data, size_t len)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, ss->h, FP_NOISE_HASH);
    crypto_hash_sha256_update(&st, data, len);
    crypto_hash_sha256_final(&st, ss->h);
}

static void fp__mix_key(struct fp_noise_symmetric *ss, const uint8_t ikm[FP_NOISE_KEY])
{
    uint8_t ck[FP_NOISE_HASH], k[FP_NOISE_HASH];
    fp__hkdf2(ss->ck, ikm, FP_NOISE_KEY, ck, k);
    memcpy(ss->ck, ck, FP_NOISE_HASH);
    memcpy(ss->cs.k, k, FP_NOISE_KEY); /* HASHLEN = 32: no truncation */
    ss->cs.n = 0;
    ss->cs.has_key = 1;
    sodium_memzero(ck, sizeof ck);
    sodium_memzero(k, sizeof k);
}

/* DH(), then MixKey() of the result. A low-order public key makes
 * crypto_scalarmult fail: the handshake stops there. */
static int fp__mix_dh(struct fp_noise_symmetric *ss, const uint8_t priv[FP_NOISE_KEY],
                      const uint8_t pub[FP_NOISE_KEY], const char *token, struct fp_error *err)
{
    uint8_t shared[FP_NOISE_KEY];
    if (crypto_scalarmult(shared, priv, pub) != 0) {
        sodium_memzero(shared, sizeof shared);
        return fp_error_set(err, FP_EFORMAT,
                            "handshake: DH %s is zero: the peer's key is a low-order point", token);
    }
    fp__mix_key(ss, shared);
    sodium_memzero(shared, sizeof shared);
    return 0;
}

static int fp__encrypt_and_hash(struct fp_noise_symmetric *ss, const uint8_t *pt, size_t len,
                                uint8_t *out)
{
    int rc = fp_noise_cipher_encrypt(&ss->cs, ss->h, FP_NOISE_HASH, pt, len, out);
    if (rc)
        return rc;
    fp__mix_hash(ss, out, len + (ss->cs.has_key ? FP_NOISE_TAG : 0));
    return 0;
}

static int fp__decrypt_and_hash(struct fp_noise_symmetric *ss, const uint8_t *ct, size_t len,
                                uint8_t *out)
{
    uint8_t h[FP_NOISE_HASH];
    memcpy(h, ss->h, FP_NOISE_HASH);
    /* The hash covers the ciphertext, so mix it before out (which may be
     * the same memory) is written. */
    fp__mix_hash(ss, ct, len);
    return fp_noise_cipher_decrypt(&ss->cs, h, FP_NOISE_HASH, ct, len, out);
}

void fp_noise_handshake_init(struct fp_noise_handshake *hs, int initiator, const uint8_t *prologue,
                             size_t prologue_len, const uint8_t s_priv[FP_NOISE_KEY],
                             const uint8_t rs[FP_NOISE_KEY])
{
    memset(hs, 0, sizeof *hs);
    hs->initiator = initiator;
    /* The name is exactly HASHLEN = 32 bytes: h = name, no padding, no hash. */
    _Static_assert(sizeof FP_NOISE_PROTOCOL - 1 == FP_NOISE_HASH, "protocol name length");
    memcpy(hs->ss.h, FP_NOISE_PROTOCOL, FP_NOISE_HASH);
    memcpy(hs->ss.ck, hs->ss.h, FP_NOISE_HASH);
    fp__mix_hash(&hs->ss, prologue, prologue_len);
    memcpy(hs->s_priv, s_priv, FP_NOISE_KEY);
    fp_noise_public_key(s_priv, hs->s_pub);
    /* Pre-message "<- s": both sides hash the responder's static key. */
    if (initiator) {
        memcpy(hs->rs, rs, FP_NOISE_KEY);
        fp__mix_hash(&hs->ss, hs->rs, FP_NOISE_KEY);
    } else {
        fp__mix_hash(&hs->ss, hs->s_pub, FP_NOISE_KEY);
    }
}

void fp_noise_handshake_set_ephemeral(struct fp_noise_handshake *hs,
                                      const uint8_t e_priv[FP_NOISE_KEY])
{
    memcpy(hs->e_priv, e_priv, FP_NOISE_KEY);
    fp_noise_public_key(hs->e_priv, hs->e_pub);
    hs->has_e = 1;
}

/* Token "e" when writing: a fresh (or injected) key pair, its public half
 * sent in clear and hashed. */
static void fp__write_e(struct fp_noise_handshake *hs, uint8_t *out)
{
    if (!hs->has_e) {
        randombytes_buf(hs->e_priv, FP_NOISE_KEY);
        fp_noise_public_key(hs->e_priv, hs->e_pub);
        hs->has_e = 1;
    }
    memcpy(out, hs->e_pub, FP_NOISE_KEY);
    fp__mix_hash(&hs->ss, hs->e_pub, FP_NOISE_KEY);
}

/* 5.3: an error from DH() or DECRYPT() fails the handshake and the state is
 * deleted. Here it is wiped and marked dead (step FP__DEAD): every later call
 * fails, fp_noise_handshake_done stays false, and a caller that retries with
 * other bytes (a well-formed message after a truncated one) gets nowhere. */
#define FP__DEAD 4

static int fp__kill(struct fp_noise_handshake *hs, int rc)
{
    sodium_memzero(hs, sizeof *hs);
    hs->step = FP__DEAD;
    return rc;
}

static int fp__handshake_write(struct fp_noise_handshake *hs, const uint8_t *payload,
                               size_t payload_len, uint8_t *out, size_t cap, size_t *outlen,
                               struct fp_error *err)
{
    /* The initiator writes messages 1 and 3 (steps 0 and 2). */
    int mine = hs->initiator ? (hs->step == 0 || hs->step == 2) : hs->step == 1;
    if (!mine || hs->step > 2)
        return fp_error_set(err, FP_EINVAL, "handshake: not this side's turn to write");
    size_t over = hs->step == 2 ? FP_NOISE_MSG3_OVERHEAD : FP_NOISE_MSG1_OVERHEAD;
    if (payload_len > FP_NOISE_MSG_MAX - over || cap < over + payload_len)
        return fp_error_set(err, FP_EINVAL, "handshake: a payload of %zu bytes does not fit",
                            payload_len);
    size_t off = 0;
    int rc;
    if (hs->step == 0) { /* -> e, es */
        fp__write_e(hs, out);
        off = FP_NOISE_KEY;
        if ((rc = fp__mix_dh(&hs->ss, hs->e_priv, hs->rs, "es", err)))
            return rc;
    } else if (hs->step == 1) { /* <- e, ee */
        fp__write_e(hs, out);
        off = FP_NOISE_KEY;
        if ((rc = fp__mix_dh(&hs->ss, hs->e_priv, hs->re, "ee", err)))
            return rc;
    } else { /* -> s, se */
        if ((rc = fp__encrypt_and_hash(&hs->ss, hs->s_pub, FP_NOISE_KEY, out)))
            return fp_error_set(err, rc, "handshake: nonce exhausted");
        off = FP_NOISE_KEY + FP_NOISE_TAG;
        if ((rc = fp__mix_dh(&hs->ss, hs->s_priv, hs->re, "se", err)))
            return rc;
    }
    if ((rc = fp__encrypt_and_hash(&hs->ss, payload, payload_len, out + off)))
        return fp_error_set(err, rc, "handshake: nonce exhausted");
    *outlen = off + payload_len + FP_NOISE_TAG;
    hs->step++;
    return 0;
}

static int fp__handshake_read(struct fp_noise_handshake *hs, const uint8_t *msg, size_t len,
                              uint8_t *payload, size_t cap, size_t *payload_len,
                              struct fp_error *err)
{
    int theirs = hs->initiator ? hs->step == 1 : (hs->step == 0 || hs->step == 2);
    if (!theirs || hs->step > 2)
        return fp_error_set(err, FP_EINVAL, "handshake: not the peer's turn to write");
    size_t over = hs->step == 2 ? FP_NOISE_MSG3_OVERHEAD : FP_NOISE_MSG1_OVERHEAD;
    if (len < over || len > FP_NOISE_MSG_MAX)
        return fp_error_set(err, FP_EFORMAT, "handshake message %d: %zu bytes, expected %zu to %d",
                            hs->step + 1, len, over, FP_NOISE_MSG_MAX);
    if (cap < len - over)
        return fp_error_set(err, FP_EINVAL, "handshake message %d: payload buffer too small",
                            hs->step + 1);
    size_t off = FP_NOISE_KEY;
    int rc;
    if (hs->step == 0 || hs->step == 1) { /* e, then es (responder) or ee (initiator) */
        memcpy(hs->re, msg, FP_NOISE_KEY);
        fp__mix_hash(&hs->ss, hs->re, FP_NOISE_KEY);
        rc = hs->step == 0 ? fp__mix_dh(&hs->ss, hs->s_priv, hs->re, "es", err)
                           : fp__mix_dh(&hs->ss, hs->e_priv, hs->re, "ee", err);
        if (rc)
            return rc;
    } else { /* s, se */
        if (fp__decrypt_and_hash(&hs->ss, msg, FP_NOISE_KEY + FP_NOISE_TAG, hs->rs))
            return fp_error_set(err, FP_EFORMAT,
                                "handshake message 3: the client's static key does not "
                                "authenticate (bad tag)");
        off = FP_NOISE_KEY + FP_NOISE_TAG;
        if ((rc = fp__mix_dh(&hs->ss, hs->e_priv, hs->rs, "se", err)))
            return rc;
    }
    if (fp__decrypt_and_hash(&hs->ss, msg + off, len - off, payload))
        return fp_error_set(err, FP_EFORMAT,
                            "handshake message %d does not authenticate (bad tag: another "
                            "key, or altered in transit)",
                            hs->step + 1);
    *payload_len = len - off - FP_NOISE_TAG;
    hs->step++;
    return 0;
}

/* FP_EINVAL (not this side's turn, a buffer too small: the caller's
 * mistake, found before the state is touched) leaves the state alone;
 * FP_EFORMAT (the peer's bytes or key: a length, a tag, a DH) is fatal. */
int fp_noise_handshake_write(struct fp_noise_handshake *hs, const uint8_t *payload,
                             size_t payload_len, uint8_t *out, size_t cap, size_t *outlen,
                             struct fp_error *err)
{
    int rc = fp__handshake_write(hs, payload, payload_len, out, cap, outlen, err);
    return rc == FP_EFORMAT ? fp__kill(hs, rc) : rc;
}

int fp_noise_handshake_read(struct fp_noise_handshake *hs, const uint8_t *msg, size_t len,
                            uint8_t *payload, size_t cap, size_t *payload_len, struct fp_error *err)
{
    int rc = fp__handshake_read(hs, msg, len, payload, cap, payload_len, err);
    return rc == FP_EFORMAT ? fp__kill(hs, rc) : rc;
}

int fp_noise_handshake_done(const struct fp_noise_handshake *hs)
{
    return hs->step == 3;
}

void fp_noise_handshake_split(struct fp_noise_handshake *hs, struct fp_noise_cipher *send,
                              struct fp_noise_cipher *recv, uint8_t h[FP_NOISE_HASH])
{
    struct fp_noise_cipher c1 = {.has_key = 1}, c2 = {.has_key = 1};
    fp__hkdf2(hs->ss.ck, NULL, 0, c1.k, c2.k);
    if (hs->initiator) {
        *send = c1;
        *recv = c2;
    } else {
        *send = c2;
        *recv = c1;
    }
    if (h)
        memcpy(h, hs->ss.h, FP_NOISE_HASH);
    sodium_memzero(&c1, sizeof c1);
    sodium_memzero(&c2, sizeof c2);
}

void fp_noise_handshake_wipe(struct fp_noise_handshake *hs)
{
    sodium_memzero(hs, sizeof *hs);
}
