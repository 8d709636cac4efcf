/*
 * cli/keygen.c — `fedpress keygen --out FILE` writes a new X25519 secret
 * key (mode 0600, never over an existing file) and prints its public key;
 * `fedpress keygen --public FILE` prints the public key of a key file
 * again. The public key is one line of 64 hex digits: the coordinator's is
 * what clients pin, a client's is what goes into the coordinator's
 * allow-list. One key serves this protocol only.
 */
#include "keygen.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "../core/error.h"
#include "../net/keyfile.h"
#include "args.h"

#define FP_KEYGEN_EXIT_RUNTIME 1

static const char fp__keygen_usage[] =
    "usage: fedpress keygen --out FILE | --public FILE\n"
    "  --out FILE     write a new X25519 secret key to FILE (created with mode 0600;\n"
    "                 an existing FILE is never overwritten) and print its public key\n"
    "  --public FILE  print the public key of the secret key in FILE\n"
    "The public key is printed as one line of 64 hex digits. The key is for fedpress's\n"
    "Noise_XK channel only (docs/protocol.md); keep the secret key file private.\n";

int fp_cli_keygen(int argc, char **argv)
{
    const char *out = NULL, *pub = NULL;
    for (int i = 2; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--out")      ? &out
                           : !strcmp(argv[i], "--public") ? &pub
                                                          : NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(fp__keygen_usage, stdout);
            return 0;
        }
        if (!dst)
            return fp_cli_usage_error("keygen", "unknown argument ", argv[i]);
        if (i + 1 >= argc || !argv[i + 1][0])
            return fp_cli_usage_error("keygen", argv[i], " needs a FILE");
        if (*dst)
            return fp_cli_usage_error("keygen", argv[i], " given twice");
        *dst = argv[++i];
    }
    if (!out == !pub)
        return fp_cli_usage_error("keygen", "give exactly one of --out FILE and --public FILE", "");
    struct fp_error err = {0};
    uint8_t key[FP_NOISE_KEY], pubkey[FP_NOISE_KEY];
    char hex[FP_KEY_HEX + 1];
    if (out) {
        if (fp_keyfile_generate(out, pubkey, &err))
            goto fail;
    } else {
        if (fp_keyfile_read(pub, key, &err))
            goto fail;
        fp_noise_public_key(key, pubkey);
        sodium_memzero(key, sizeof key);
    }
    fp_key_to_hex(pubkey, hex);
    printf("%s\n", hex);
    return 0;
fail:
    fprintf(stderr, "fedpress keygen: %s\n", err.msg);
    return FP_KEYGEN_EXIT_RUNTIME;
}
