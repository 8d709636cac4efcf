/*
 * net/peer.c — see peer.h.
 */
#include "peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyfile.h"

int fp_peer_hostport(const char *text, char *host, size_t cap, int *port, struct fp_error *err)
{
    const char *colon = strrchr(text, ':');
    const char *h = text, *hend = colon;
    if (!colon || colon == text)
        return fp_error_set(err, FP_EINVAL, "'%s' is not HOST:PORT (e.g. 127.0.0.1:7400)", text);
    if (text[0] == '[') {
        if (colon[-1] != ']')
            return fp_error_set(err, FP_EINVAL, "'%s' is not [ADDRESS]:PORT", text);
        h = text + 1;
        hend = colon - 1;
    }
    size_t n = (size_t)(hend - h);
    if (n == 0 || n >= cap)
        return fp_error_set(err, FP_EINVAL, "'%s': the host is empty or too long", text);
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 0 || p > 65535)
        return fp_error_set(err, FP_EINVAL, "'%s': the port is not a number from 0 to 65535", text);
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

void fp_peer_addr_name(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        snprintf(out, cap, "?");
    }
}

void fp_peer_fingerprint(const uint8_t key[FP_NOISE_KEY], char out[FP_PEER_FPR])
{
    char hex[FP_KEY_HEX + 1];
    fp_key_to_hex(key, hex);
    memcpy(out, hex, FP_PEER_FPR - 1);
    out[FP_PEER_FPR - 1] = '\0';
}
