/*
 * net/peer.h — small helpers both daemons need around a connection: the
 * HOST:PORT syntax of --listen and --connect, a peer's address as text, and
 * a key's fingerprint for log lines.
 */
#ifndef FP_PEER_H
#define FP_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../core/error.h"
#include "noise.h"

/* Splits "HOST:PORT" or "[V6]:PORT" into host[cap] and *port (0..65535):
 * 0 or FP_EINVAL naming what is wrong. */
int fp_peer_hostport(const char *text, char *host, size_t cap, int *port, struct fp_error *err);

/* "1.2.3.4:5678" or "[::1]:5678"; "?" if the family is unknown. */
void fp_peer_addr_name(const struct sockaddr *sa, char *out, size_t cap);

/* The first 16 hex digits of a public key, as they start its line in
 * clients.pub and the output of `fedpress keygen`: enough to find it. */
#define FP_PEER_FPR 17
void fp_peer_fingerprint(const uint8_t key[FP_NOISE_KEY], char out[FP_PEER_FPR]);

#endif
