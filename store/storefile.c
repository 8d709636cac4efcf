/*
 * store/storefile.c — the run store's file below SQLite: shared descriptor,
 * run locks, identity (see storefile.h); and output paths that must not
 * touch a store (fp_store_check_output, store.h).
 */
/* F_OFD_SETLK needs _GNU_SOURCE, which the build defines (meson.build). */
#include "storefile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "store.h"

#define FP__RUN_LOCK_BASE ((off_t)1 << 62)

struct fp__held {
    int64_t run;
    const void *owner;
};

/* A file SQLite keeps beside the store while it is open (-wal, -shm). */
struct fp__companion {
    char *path;
    bool known; /* dev/ino recorded (the file existed once) */
    dev_t dev;
    ino_t ino;
};

struct fp_storefile {
    struct fp_storefile *next;
    dev_t dev;
    ino_t ino;
    struct fp__companion comp[2]; /* -wal, -shm */
    pid_t pid;                    /* an entry inherited through fork() is the parent's */
    int fd;
    unsigned refs;
    struct fp__held *held;
    size_t nheld, cap;
};

static pthread_mutex_t fp__files_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fp_storefile *fp__files;

int fp_storefile_get(const char *path, struct fp_storefile **out, struct fp_error *err)
{
    struct stat st;
    int rc = 0;
    if (stat(path, &st) != 0)
        return fp_error_set(err, FP_EIO, "Run store %s: cannot stat it after opening: %s.", path,
                            strerror(errno));
    pthread_mutex_lock(&fp__files_mu);
    struct fp_storefile *f = fp__files;
    while (f && (f->dev != st.st_dev || f->ino != st.st_ino || f->pid != getpid()))
        f = f->next;
    if (!f) {
        struct stat fst;
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            rc = fp_error_set(err, FP_EIO, "Run store %s: cannot open it for its run locks: %s.",
                              path, strerror(errno));
            goto out;
        }
        if (fstat(fd, &fst) != 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
            /* replaced between stat and open: not the file SQLite has */
            close(fd);
            rc = fp_error_set(err, FP_ESTORE,
                              "Run store %s was replaced by another file while it was being "
                              "opened; try again.",
                              path);
            goto out;
        }
        if (!(f = calloc(1, sizeof *f))) {
            close(fd);
            rc = fp_error_set(err, FP_ENOMEM, "Out of memory opening run store %s.", path);
            goto out;
        }
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->pid = getpid();
        f->fd = fd;
        f->next = fp__files;
        fp__files = f;
    }
    f->refs++;
    *out = f;
out:
    pthread_mutex_unlock(&fp__files_mu);
    return rc;
}

static void fp__lock_byte(int fd, int64_t run_id, short type)
{
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = FP__RUN_LOCK_BASE + run_id, .l_len = 1};
    (void)fcntl(fd, F_OFD_SETLK, &fl); /* unlocking cannot fail on a valid fd */
}

void fp_storefile_put(struct fp_storefile *f, const void *owner)
{
    pthread_mutex_lock(&fp__files_mu);
    for (size_t i = 0; i < f->nheld;) {
        if (f->held[i].owner == owner) {
            fp__lock_byte(f->fd, f->held[i].run, F_UNLCK);
            f->held[i] = f->held[--f->nheld];
        } else {
            i++;
        }
    }
    if (--f->refs == 0) {
        struct fp_storefile **pp = &fp__files;
        while (*pp != f)
            pp = &(*pp)->next;
        *pp = f->next;
        close(f->fd);
        free(f->held);
        for (size_t i = 0; i < 2; i++)
            free(f->comp[i].path);
        free(f);
    }
    pthread_mutex_unlock(&fp__files_mu);
}

/* The process holding an OFD lock on byte `off` of the file (dev, ino), from
 * /proc/PID/fdinfo (the kernel reports no pid for OFD locks elsewhere); 0 if
 * none is found. Only used to word an error message. */
static long fp__lock_holder(dev_t dev, ino_t ino, off_t off)
{
    char want[96], path[300], line[256];
    snprintf(want, sizeof want, " %02x:%02x:%lu %lld ", major(dev), minor(dev), (unsigned long)ino,
             (long long)off);
    DIR *proc = opendir("/proc");
    long found = 0;
    struct dirent *p;
    while (proc && !found && (p = readdir(proc))) {
        char *end;
        long pid = strtol(p->d_name, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid())
            continue;
        snprintf(path, sizeof path, "/proc/%ld/fdinfo", pid);
        DIR *fds = opendir(path);
        struct dirent *q;
        while (fds && !found && (q = readdir(fds))) {
            if (q->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "/proc/%ld/fdinfo/%s", pid, q->d_name);
            FILE *fi = fopen(path, "r");
            while (fi && !found && fgets(line, sizeof line, fi))
                if (strstr(line, "OFDLCK") && strstr(line, want))
                    found = pid;
            if (fi)
                fclose(fi);
        }
        if (fds)
            closedir(fds);
    }
    if (proc)
        closedir(proc);
    return found;
}

int fp_storefile_lock(struct fp_storefile *f, const void *owner, const char *path, int64_t run_id,
                      struct fp_error *err)
{
    int rc = 0;
    if (run_id < 1 || run_id > INT64_MAX - FP__RUN_LOCK_BASE)
        return fp_error_set(err, FP_EINVAL, "Run store %s: run id %" PRId64 " is out of range.",
                            path, run_id);
    pthread_mutex_lock(&fp__files_mu);
    for (size_t i = 0; i < f->nheld; i++) {
        if (f->held[i].run != run_id)
            continue;
        if (f->held[i].owner != owner)
            rc = fp_error_set(err, FP_STORE_HELD,
                              "Run %" PRId64 " of %s is being run by another handle of this "
                              "process (pid %ld).",
                              run_id, path, (long)getpid());
        goto out;
    }
    if (f->nheld == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 4;
        struct fp__held *h = realloc(f->held, cap * sizeof *h);
        if (!h) {
            rc = fp_error_set(err, FP_ENOMEM, "Out of memory locking run %" PRId64 ".", run_id);
            goto out;
        }
        f->held = h;
        f->cap = cap;
    }
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = FP__RUN_LOCK_BASE + run_id, .l_len = 1};
    if (fcntl(f->fd, F_OFD_SETLK, &fl) != 0) {
        if (errno == EAGAIN || errno == EACCES) {
            long pid = fp__lock_holder(f->dev, f->ino, fl.l_start);
            char who[48] = "";
            if (pid)
                snprintf(who, sizeof who, " (pid %ld)", pid);
            rc = fp_error_set(err, FP_STORE_HELD,
                              "Run %" PRId64 " of %s is being run by another process%s.", run_id,
                              path, who);
        } else {
            rc = fp_error_set(err, FP_EIO, "Run store %s: cannot lock run %" PRId64 ": %s.", path,
                              run_id, strerror(errno));
        }
        goto out;
    }
    f->held[f->nheld++] = (struct fp__held){run_id, owner};
out:
    pthread_mutex_unlock(&fp__files_mu);
    return rc;
}

void fp_storefile_unlock(struct fp_storefile *f, const void *owner, int64_t run_id)
{
    pthread_mutex_lock(&fp__files_mu);
    for (size_t i = 0; i < f->nheld; i++)
        if (f->held[i].run == run_id && f->held[i].owner == owner) {
            fp__lock_byte(f->fd, run_id, F_UNLCK);
            f->held[i] = f->held[--f->nheld];
            break;
        }
    pthread_mutex_unlock(&fp__files_mu);
}

int fp_storefile_watch(struct fp_storefile *f, const char *dbfile, struct fp_error *err)
{
    static const char *const suffix[2] = {"-wal", "-shm"};
    int rc = 0;
    pthread_mutex_lock(&fp__files_mu);
    for (size_t i = 0; i < 2 && !rc; i++) {
        if (f->comp[i].path)
            continue; /* another handle of this process set it: the same file */
        size_t n = strlen(dbfile) + 5;
        if (!(f->comp[i].path = malloc(n))) {
            rc = fp_error_set(err, FP_ENOMEM, "Out of memory opening run store %s.", dbfile);
            break;
        }
        snprintf(f->comp[i].path, n, "%s%s", dbfile, suffix[i]);
        struct stat st;
        if (stat(f->comp[i].path, &st) == 0) {
            f->comp[i].known = true;
            f->comp[i].dev = st.st_dev;
            f->comp[i].ino = st.st_ino;
        }
    }
    pthread_mutex_unlock(&fp__files_mu);
    return rc;
}

/* The -wal and -shm files must stay the ones SQLite has open: deleted (as
 * "junk" beside the store), a process opening the store would make new ones
 * and read and write past this process's uncheckpointed rounds, and the two
 * would damage the store. SQLite never removes them while a connection is
 * open, so any change is someone else's doing. */
static int fp__check_companions(struct fp_storefile *f, const char *path, struct fp_error *err)
{
    static const char *const suffix[2] = {"-wal", "-shm"};
    char real[PATH_MAX], now[PATH_MAX + 8];
    int rc = 0;
    /* The names a process opening path now would use (SQLite resolves the
     * path as realpath does), not the ones of the open: the directory may
     * have been renamed (with the store and its files in it) since. */
    if (!realpath(path, real))
        return 0; /* the store itself is gone: fp_storefile_check said so */
    pthread_mutex_lock(&fp__files_mu);
    for (size_t i = 0; i < 2 && !rc; i++) {
        struct fp__companion *c = &f->comp[i];
        struct stat st;
        if (!c->path)
            continue;
        snprintf(now, sizeof now, "%s%s", real, suffix[i]);
        int found = stat(now, &st) == 0;
        if (!c->known) { /* not there at open: SQLite made it since */
            if (found) {
                c->known = true;
                c->dev = st.st_dev;
                c->ino = st.st_ino;
            }
            continue;
        }
        if (!found || st.st_dev != c->dev || st.st_ino != c->ino)
            rc = fp_error_set(err, FP_ESTORE,
                              "Run store %s: its file %s was %s while this process was writing "
                              "to the store; another process opening the store now would miss "
                              "this run's newest rounds and could damage the store. Stopped "
                              "(never delete a store's -wal or -shm file while fedpress uses "
                              "it).",
                              path, now, found ? "replaced" : "deleted");
    }
    pthread_mutex_unlock(&fp__files_mu);
    return rc;
}

int fp_storefile_check(struct fp_storefile *f, const char *path, struct fp_error *err)
{
    struct stat b;
    if (!fp_storefile_linked(f))
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s was deleted while this process was writing to it: "
                            "what it writes now is lost. Stopped.",
                            path);
    if (stat(path, &b) != 0) {
        if (errno == ENOENT)
            return fp_error_set(err, FP_ESTORE,
                                "Run store %s was moved or renamed while this process was "
                                "writing to it (the path no longer exists). Stopped.",
                                path);
        return fp_error_set(err, FP_ESTORE, "Run store %s: cannot check it is still there: %s.",
                            path, strerror(errno));
    }
    if (b.st_dev != f->dev || b.st_ino != f->ino)
        return fp_error_set(err, FP_ESTORE,
                            "Run store %s was replaced while this process was writing to it: "
                            "the path now names another file. Stopped.",
                            path);
    return fp__check_companions(f, path, err);
}

bool fp_storefile_at(const struct fp_storefile *f, const char *path)
{
    struct stat b;
    return stat(path, &b) == 0 && b.st_dev == f->dev && b.st_ino == f->ino;
}

bool fp_storefile_linked(const struct fp_storefile *f)
{
    struct stat a;
    return fstat(f->fd, &a) != 0 || a.st_nlink > 0; /* fstat cannot fail on an open fd */
}

/* ------------------------------------------------------------------------ */
/* Output paths                                                             */

/* "realpath(dirname(p))/basename(p)": the directory entry p names, without
 * following p itself (it may not exist yet). 0, or -1 if its directory
 * cannot be resolved. */
static int fp__entry(const char *p, char *out, size_t n)
{
    const char *slash = strrchr(p, '/');
    char dir[PATH_MAX], real[PATH_MAX];
    const char *base = slash ? slash + 1 : p;
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", slash == p ? 1 : (int)(slash - p), p);
    else
        snprintf(dir, sizeof dir, ".");
    if (!realpath(dir, real))
        return -1;
    if (*base == '\0' || !strcmp(base, ".") || !strcmp(base, ".."))
        return -1;
    return (size_t)snprintf(out, n, "%s/%s", real, base) < n ? 0 : -1;
}

int fp_store_check_output(const char *store_path, const char *out, struct fp_error *err)
{
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char real[PATH_MAX], c[PATH_MAX + 16], eo[PATH_MAX + 8], ec[PATH_MAX + 24];
    struct stat so, sc;
    const char *bases[2] = {store_path, realpath(store_path, real) ? real : NULL};
    bool out_exists = stat(out, &so) == 0;
    bool have_eo = fp__entry(out, eo, sizeof eo) == 0;
    for (size_t b = 0; b < 2 && bases[b]; b++)
        for (size_t k = 0; k < sizeof suffix / sizeof *suffix; k++) {
            snprintf(c, sizeof c, "%s%s", bases[b], suffix[k]);
            bool same =
                out_exists && stat(c, &sc) == 0 && sc.st_dev == so.st_dev && sc.st_ino == so.st_ino;
            same = same || (have_eo && fp__entry(c, ec, sizeof ec) == 0 && !strcmp(eo, ec));
            if (same && !*suffix[k])
                return fp_error_set(err, FP_EINVAL,
                                    "%s is the run store %s: writing there would destroy the "
                                    "store. Choose another file.",
                                    out, store_path);
            if (same)
                return fp_error_set(err, FP_EINVAL,
                                    "%s is the %s file of the run store %s (%s%s): writing "
                                    "there would damage the store. Choose another file.",
                                    out, suffix[k] + 1, store_path, bases[b], suffix[k]);
        }
    /* Any SQLite database (another run store, another program's): an
     * output renamed over it would destroy it, and a store that another
     * process is writing would go on into the unlinked file. */
    char head[16];
    int fd = out_exists && S_ISREG(so.st_mode) ? open(out, O_RDONLY | O_CLOEXEC) : -1;
    bool sqlite = fd >= 0 && read(fd, head, sizeof head) == (ssize_t)sizeof head &&
                  !memcmp(head, "SQLite format 3", sizeof head);
    if (fd >= 0)
        close(fd);
    if (sqlite)
        return fp_error_set(err, FP_EINVAL,
                            "%s is an SQLite database (a run store?): writing there would "
                            "destroy it. Choose another file, or remove it first if it is "
                            "really not needed.",
                            out);
    return 0;
}
