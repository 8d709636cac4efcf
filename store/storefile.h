/*
 * store/storefile.h — the run store's file below SQLite (internal to store/):
 * one shared descriptor per store file and process, the per-run locks on
 * it, and the file's identity.
 *
 * Run locks. Whoever writes a run holds a write lock on one byte of the
 * store's own database file, at 2^62 + run id: an open-file-description lock
 * (F_OFD_SETLK), far above the bytes SQLite locks (0x40000000 + 512). The
 * kernel drops it when the process dies, even by kill -9, so a crash never
 * leaves a stale claim; it belongs to the file, not to the path, so a
 * symlink or "./runs.db" against "runs.db" take the same lock; and no lock
 * file exists that could be deleted under its holder.
 *
 * Closing any descriptor of a file drops every POSIX lock the process holds
 * on it, SQLite's own included. So this process opens each store file once
 * (struct fp_storefile, shared by every writer handle on that file, found by
 * st_dev/st_ino) and closes it only when the last handle puts it back, after
 * that handle's SQLite connection is closed. OFD locks taken through one
 * descriptor do not conflict with each other, so the entry also lists which
 * owner (store handle) holds which run.
 *
 * Ownership: fp_storefile_get hands out a reference; the caller gives it back
 * with fp_storefile_put. Thread-safe (one mutex for all entries).
 */
#ifndef FP_STOREFILE_H
#define FP_STOREFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"

struct fp_storefile;

/* A reference to the shared entry of the file at path, opened now (O_RDWR)
 * if this process has none. Call after SQLite opened the path. */
int fp_storefile_get(const char *path, struct fp_storefile **out, struct fp_error *err);
/* Releases every run lock of owner and the reference; the last one closes
 * the descriptor. */
void fp_storefile_put(struct fp_storefile *f, const void *owner);

/* 0 if owner holds run_id's lock (now or already), FP_STORE_HELD (store.h)
 * if another owner of this process or another process does (err says
 * which pid, when it can be found), or a negative error. path is for
 * messages. */
int fp_storefile_lock(struct fp_storefile *f, const void *owner, const char *path, int64_t run_id,
                      struct fp_error *err);
/* Releases run_id's lock if owner holds it. */
void fp_storefile_unlock(struct fp_storefile *f, const void *owner, int64_t run_id);

/* Records the -wal and -shm files of dbfile (the full path SQLite opened,
 * sqlite3_db_filename) as they are now, to be checked from then on. */
int fp_storefile_watch(struct fp_storefile *f, const char *dbfile, struct fp_error *err);
/* FP_ESTORE, saying what happened, if path no longer names this file
 * (deleted, moved, replaced), or its -wal or -shm file (fp_storefile_watch)
 * was deleted or replaced. */
int fp_storefile_check(struct fp_storefile *f, const char *path, struct fp_error *err);
/* Whether path names this file now. */
bool fp_storefile_at(const struct fp_storefile *f, const char *path);
/* Whether the file still has a name somewhere (it was not deleted). */
bool fp_storefile_linked(const struct fp_storefile *f);

#endif
