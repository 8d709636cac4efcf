/*
 * tests/faultproxy.c — a TCP proxy that damages connections on purpose, for
 * the daemons' fault tests (tests/e2e_fault.sh; `tc netem` is not
 * available on these machines). It listens on 127.0.0.1 (port 0: the
 * system's choice, written to the ready file) and forwards every
 * connection it accepts to 127.0.0.1:TO, applying the same faults to each:
 *
 *   --delay MS            hold every chunk MS milliseconds before passing it on
 *                         (both directions)
 *   --cut DIR:N           after N bytes in direction DIR, close the connection
 *                         (both sides)
 *   --corrupt DIR:K       flip every bit of the byte at offset K of direction DIR
 *
 * DIR is up (client to server) or down (server to client). Each fault it
 * applies is logged on stderr ("conn 1: up byte 1234 corrupted"), so a
 * test can tell that the fault happened. A thread per direction of each
 * connection; it runs until killed.
 *
 * usage: faultproxy --to PORT --ready FILE [--delay MS] [--cut DIR:N] [--corrupt DIR:K]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { FP__UP = 0, FP__DOWN = 1 };

struct fp__rules {
    long delay_ms;
    int64_t cut[2];     /* -1: never */
    int64_t corrupt[2]; /* -1: never */
};

struct fp__conn {
    int id;
    int fd[2];       /* [0] the client's side, [1] the server's */
    atomic_int left; /* pumps still running; the last one closes both */
};

struct fp__pump {
    struct fp__conn *c;
    int dir; /* FP__UP: fd[0] -> fd[1]; FP__DOWN: fd[1] -> fd[0] */
};

static struct fp__rules fp__r = {.cut = {-1, -1}, .corrupt = {-1, -1}};
static const char *fp__dirname[2] = {"up", "down"};

static int fp__write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *fp__pump_main(void *arg)
{
    struct fp__pump *pu = arg;
    struct fp__conn *c = pu->c;
    const int dir = pu->dir, from = c->fd[dir], to = c->fd[!dir];
    uint8_t buf[16384];
    int64_t off = 0;
    for (;;) {
        ssize_t n = recv(from, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) { /* EOF or error: pass the end on */
            shutdown(to, SHUT_WR);
            break;
        }
        int64_t k = fp__r.corrupt[dir];
        if (k >= off && k < off + n) {
            buf[k - off] ^= 0xFF;
            fprintf(stderr, "faultproxy: conn %d: %s byte %lld corrupted\n", c->id,
                    fp__dirname[dir], (long long)k);
        }
        size_t pass = (size_t)n;
        int cut = fp__r.cut[dir] >= 0 && off + n >= fp__r.cut[dir];
        if (cut)
            pass = (size_t)(fp__r.cut[dir] - off);
        if (fp__r.delay_ms > 0) {
            struct timespec ts = {fp__r.delay_ms / 1000, (fp__r.delay_ms % 1000) * 1000000L};
            while (nanosleep(&ts, &ts) && errno == EINTR)
                ;
        }
        if (fp__write_all(to, buf, pass)) {
            shutdown(from, SHUT_RDWR);
            break;
        }
        off += n;
        if (cut) {
            fprintf(stderr, "faultproxy: conn %d: %s cut after %lld bytes\n", c->id,
                    fp__dirname[dir], (long long)fp__r.cut[dir]);
            /* both sides see the connection end, as if a link went down */
            shutdown(c->fd[0], SHUT_RDWR);
            shutdown(c->fd[1], SHUT_RDWR);
            break;
        }
    }
    if (atomic_fetch_sub(&c->left, 1) == 1) {
        close(c->fd[0]);
        close(c->fd[1]);
        fprintf(stderr, "faultproxy: conn %d: closed\n", c->id);
        free(c);
    }
    free(pu);
    return NULL;
}

static int fp__dir_value(const char *v, int64_t out[2])
{
    int dir = !strncmp(v, "up:", 3) ? FP__UP : !strncmp(v, "down:", 5) ? FP__DOWN : -1;
    if (dir < 0)
        return -1;
    char *end;
    long long n = strtoll(strchr(v, ':') + 1, &end, 10);
    if (*end || n < 0)
        return -1;
    out[dir] = n;
    return 0;
}

static int fp__usage(void)
{
    fprintf(stderr, "usage: faultproxy --to PORT --ready FILE [--delay MS] [--cut up|down:N] "
                    "[--corrupt up|down:K]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int to_port = 0;
    const char *ready = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--to"))
            to_port = atoi(v);
        else if (!strcmp(a, "--ready"))
            ready = v;
        else if (!strcmp(a, "--delay"))
            fp__r.delay_ms = atol(v);
        else if (!strcmp(a, "--cut")       ? fp__dir_value(v, fp__r.cut)
                 : !strcmp(a, "--corrupt") ? fp__dir_value(v, fp__r.corrupt)
                                           : -1)
            return fp__usage();
    }
    if (argc % 2 == 0 || to_port <= 0 || to_port > 65535 || !ready || fp__r.delay_ms < 0)
        return fp__usage();
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 64) ||
        getsockname(ls, (struct sockaddr *)&a, &al)) {
        perror("faultproxy: listen");
        return 1;
    }
    /* the port, atomically: a reader never sees half of it */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", ready);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", ntohs(a.sin_port)) < 0 || fclose(f) || rename(tmp, ready)) {
        perror("faultproxy: the ready file");
        return 1;
    }
    for (int id = 1;; id++) {
        int cfd = accept(ls, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("faultproxy: accept");
            return 1;
        }
        int sfd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in t = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)to_port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (sfd < 0 || connect(sfd, (struct sockaddr *)&t, sizeof t)) {
            fprintf(stderr, "faultproxy: conn %d: cannot reach 127.0.0.1:%d: %s\n", id, to_port,
                    strerror(errno));
            close(cfd);
            if (sfd >= 0)
                close(sfd);
            continue;
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct fp__conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(cfd);
            close(sfd);
            continue;
        }
        *c = (struct fp__conn){.id = id, .fd = {cfd, sfd}};
        atomic_store(&c->left, 2);
        fprintf(stderr, "faultproxy: conn %d: open\n", id);
        for (int dir = 0; dir < 2; dir++) {
            struct fp__pump *pu = malloc(sizeof *pu);
            pthread_t th;
            if (pu)
                *pu = (struct fp__pump){.c = c, .dir = dir};
            if (!pu || pthread_create(&th, NULL, fp__pump_main, pu)) {
                fprintf(stderr, "faultproxy: conn %d: cannot start a thread\n", id);
                exit(1);
            }
            pthread_detach(th);
        }
    }
}
