/* hx_vfs: the SQLite VFS whose main database file is a hexad volume.
 *
 * SQLite on a compute node never writes a page to storage: the page writes
 * of one transaction are buffered and, at the commit, become one MTR of
 * redo records (byte patches against each page's previous image, or whole
 * images) handed to a page_store. Commits are pipelined: the commit returns
 * as soon as the MTR is handed over; whoever answers the client holds the
 * reply until store->wait_durable(hx_vfs_reply_lsn(db)) succeeds, for
 * read-only transactions too (they may have read a commit that is not
 * durable yet).
 *
 * Use: hx_vfs_register() once per volume, then hx_vfs_open_db() (or
 * sqlite3_open_v2 with the VFS name and the pragmas hx_vfs_open_db sets).
 * Every main-database name opened through one VFS maps to its volume;
 * temporary files go to the default VFS; journals live in memory;
 * journal_mode=WAL is refused.
 */
#ifndef HX_VFS_H
#define HX_VFS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "page_store.h"

/* Committed page images kept per VFS (soft limit: an image whose LSN is
 * above the store's read point is never evicted). */
#define HX_VFS_CACHE_PAGES_DEFAULT 16384
/* Pages one transaction may modify (SQLITE_FULL beyond). */
#define HX_VFS_DIRTY_PAGES_MAX (1u << 18)
/* SQLite's own page cache per connection set by hx_vfs_open_db. */
#define HX_VFS_SQLITE_CACHE_KIB 8192
/* hx_vfs_open_db's busy timeout for in-process lock waits. */
#define HX_VFS_BUSY_TIMEOUT_MS 5000
/* A connection's statements look at its cancel flag (hx_vfs_cancel) every
 * this many SQLite VM instructions (sqlite3_progress_handler). */
#define HX_VFS_CANCEL_CHECK_OPS 1000

/* Registers a VFS called name over store. The table is copied; store->ctx
 * must outlive the VFS. A store whose write_mtr is NULL is read-only: the
 * database opens read-only (writes fail with SQLITE_READONLY).
 * store->page_size must be a power of two in
 * 512 .. 65536; SQLite's page size must equal it (hx_vfs_open_db sets it;
 * a mismatched page write fails with SQLITE_IOERR and a log line through
 * sqlite3_log). make_default: also make it SQLite's default VFS.
 * HX_ERR_INVALID on bad arguments or an existing VFS of that name. */
int hx_vfs_register(const char *name, const hx_page_store *store,
                    int make_default);

/* Unregisters and frees a VFS made by hx_vfs_register. HX_ERR_BUSY while a
 * database file is open through it, HX_ERR_NOT_FOUND if name is not one. */
int hx_vfs_unregister(const char *name);

/* Opens the volume through VFS vfsname and applies the pragmas the VFS
 * needs: page_size = the store's, journal_mode=MEMORY, locking_mode=NORMAL,
 * synchronous=FULL (irrelevant to durability, which the store provides),
 * cache_size, temp_store=MEMORY, and a busy timeout. Checks that an
 * existing database's page size matches the store (HX_ERR_CONFIG).
 * On failure *db is NULL. Close with sqlite3_close(). */
int hx_vfs_open_db(const char *vfsname, sqlite3 **db);

/* Brackets a statement that may write: on before it runs, off after it
 * returned; a no-op when db is not on a hexad VFS. While on, a refusal of
 * SHARED (another connection is committing) makes the connection wait as
 * one of the writer-lock waiters (woken one at a time, and counted for
 * HX_MTR_MORE_COMING) instead of among the refused readers, all woken
 * together. Off also ends any wait the statement was counted in. */
void hx_vfs_intend_write(sqlite3 *db, int on);

/* Cancels what db is running now (a PostgreSQL CancelRequest, or a
 * shutdown). Any thread, without db's mutex; db must be open and opened by
 * hx_vfs_open_db on vfsname, and the caller keeps it from being closed
 * meanwhile (as for sqlite3_interrupt). Calls sqlite3_interrupt(db), and
 * reaches what that does not: SQLite does not look at its interrupt flag
 * between busy-handler retries, so a statement waiting for a lock would
 * wait out HX_VFS_BUSY_TIMEOUT_MS. Here the connection's cancel flag is
 * set and every lock waiter of the VFS woken; db's busy handler then gives
 * up at once (its statement fails with SQLITE_BUSY) and keeps giving up
 * until hx_vfs_cancel_clear(db), and any statement db runs meanwhile,
 * even one that starts after the call, fails with SQLITE_INTERRUPT
 * within HX_VFS_CANCEL_CHECK_OPS instructions. HX_ERR_NOT_FOUND: no such VFS, or db is
 * not one of its connections (only the interrupt was done). */
int hx_vfs_cancel(const char *vfsname, sqlite3 *db);

/* On db's own thread: whether a hx_vfs_cancel reached db since the last
 * hx_vfs_cancel_clear (so a SQLITE_BUSY just seen is the cancel's), and
 * forgetting it, which whoever runs statements does when the next request
 * starts: a cancel ends the request running when it arrives, never a later
 * one. false, and a no-op, when db is not on a hexad VFS. */
bool hx_vfs_cancelled(sqlite3 *db);
void hx_vfs_cancel_clear(sqlite3 *db);

/* LSN of the last transaction this connection committed through a hexad
 * VFS, 0 if none (or if db's main file is not on a hexad VFS). A client's
 * commit reply waits for store->wait_durable(this LSN). */
uint64_t hx_vfs_last_commit_lsn(sqlite3 *db);

/* LSN the connection's current or last read transaction depends on: the
 * newest commit of this process or the store's read point when it began.
 * A read-only transaction's reply waits for wait_durable(this LSN). */
uint64_t hx_vfs_read_lsn(sqlite3 *db);

/* What the reply to the connection's last transaction must wait for
 * (wait_durable): max(hx_vfs_last_commit_lsn, hx_vfs_read_lsn). For a
 * write transaction that is its commit LSN (every commit is above the read
 * point it started from); for a read-only one, or a write that changed no
 * page, the newest commit it could have read. 0 when db is not on a hexad
 * VFS. */
uint64_t hx_vfs_reply_lsn(sqlite3 *db);

/* Changes the committed-page cache limit (>= 1). */
int hx_vfs_set_cache_pages(const char *name, size_t pages);

typedef struct {
    uint64_t mtrs;            /* MTRs shipped (one per committed write tx) */
    uint64_t mtrs_more_coming; /* of which shipped with HX_MTR_MORE_COMING */
    uint64_t records;         /* redo records shipped */
    uint64_t image_records;   /* of which whole images */
    uint64_t patch_bytes;     /* payload bytes shipped */
    uint64_t fcntl_syncs;     /* SQLITE_FCNTL_SYNC received */
    uint64_t xsyncs;          /* xSync received on the main file */
    uint64_t phase_twos;      /* SQLITE_FCNTL_COMMIT_PHASETWO received */
    uint64_t discards;        /* buffers dropped at unlock (rollbacks) */
    uint64_t cache_hits;
    uint64_t cache_misses;    /* each one a store read_page */
    uint64_t evictions;
    size_t cache_pages;       /* images cached now */
    unsigned writer_waiters;  /* connections waiting for the writer lock now */
    /* connections refused the writer lock that still want it: asleep on
     * it, or between two sleeps (>= writer_waiters) */
    unsigned writer_wanted;
    uint64_t last_commit_lsn; /* newest commit of this VFS */
    int failed;               /* sticky hx_err after a failed write_mtr */
    /* The writer lock (RESERVED or more; one connection at a time). Its
     * hold time bounds the write rate: held_ns / acquisitions is the mean
     * hold, and 1 s / that the most commits a second. CLOCK_MONOTONIC. */
    uint64_t writer_acquisitions; /* times a connection took it */
    uint64_t writer_held_ns;  /* summed from each acquisition to its release */
    /* Summed from each release that left a connection waiting for the
     * lock to the next acquisition: the hand-off gap, time the lock was
     * free although someone wanted it. */
    uint64_t writer_handoff_ns;
    /* Summed over connections: time asleep waiting for the writer lock
     * (vfs_busy_wait; the retries in between are not counted). */
    uint64_t writer_wait_ns;
} hx_vfs_stats;

int hx_vfs_get_stats(const char *name, hx_vfs_stats *out);

#endif
