/*
 * net/conversation.h — what the daemons say over the channel (net/channel.h),
 * message by message; docs/daemons.md has the same with the reasons.
 *
 *   C->S  hello      (message 3 of the handshake; empty in this version)
 *   S->C  WELCOME    run = the run's id, client = the client's id (from its
 *                    key), round = the last round that included this
 *                    client's upload (0: none), phase = the coordinator's
 *                    dead-peer timeout in seconds; payload: the scenario's
 *                    canonical text
 *   C->S  HEARTBEAT  empty, at least every dead-peer / 3 seconds
 *   per round the client is sampled in, per phase:
 *   S->C  BROADCAST  the core's broadcast message, header and payload as
 *                    fp_algo_server_broadcast made them
 *   C->S  RESULT     the client's report of the exchange: payload
 *                    FP_CONV_REPORT_LEN bytes, the mean training loss as a
 *                    little-endian IEEE 754 double (what the store records)
 *   C->S  UPLOAD     the core's upload message
 *   S->C  RESULT     after the round's commit; payload one byte,
 *                    FP_CONV_INCLUDED or FP_CONV_NOT_INCLUDED
 *   at the end, to every connected client:
 *   S->C  RESULT     round 0; payload FP_CONV_RUN_DONE (every round ran) or
 *                    FP_CONV_RUN_STOPPED (the coordinator was stopped), then
 *                    the final model's SHA-256 in 64 hex digits
 *
 * Either side may send an ERROR (a reason) and close.
 */
#ifndef FP_CONVERSATION_H
#define FP_CONVERSATION_H

#define FP_CONV_REPORT_LEN   8
#define FP_CONV_NOT_INCLUDED 0
#define FP_CONV_INCLUDED     1
#define FP_CONV_RUN_DONE     2
#define FP_CONV_RUN_STOPPED  3
#define FP_CONV_DONE_LEN     (1 + 64)

#endif
