/*
 * cli/keygen.h — `fedpress keygen`: the X25519 key of the Noise channel
 * (net/keyfile.h has the file format, docs/protocol.md the protocol).
 */
#ifndef FP_CLI_KEYGEN_H
#define FP_CLI_KEYGEN_H

/* argv[1] is "keygen". Returns the exit code: 0 done (the public key on
 * stdout), 1 runtime error (file exists, unreadable, not a key), 2 usage
 * error. Messages go to stderr. */
int fp_cli_keygen(int argc, char **argv);

#endif
