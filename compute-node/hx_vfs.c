/* hx_vfs: SQLite VFS over a hexad volume (see hx_vfs.h).
 *
 * NOTES ON THE DESIGN
 *
 * Objects. One hx_vfs per registered name = one volume. It owns the state
 * every connection of the process shares, under one mutex: the lock table
 * (SQLite's five lock levels, in memory: one process owns the volume), the
 * committed-page cache (page_no -> newest committed image and its LSN, in
 * LRU order), the newest commit LSN, a sticky failure and the statistics
 * (hx_vfs_stats; the writer lock's timings are clock reads taken where
 * the lock changes hands, under that mutex). Each connection
 * opens its own vfs_file for the main database; it owns its dirty buffer
 * (page_no -> image written in the current transaction), touched only by
 * the connection's thread.
 *
 * Reads see: the file's dirty buffer, else the cache, else
 * store->read_page at store->read_point() (inserted into the cache).
 *
 * The commit boundary is SQLITE_FCNTL_COMMIT_PHASETWO. SQLite sends it
 * from pager_end_transaction() for a commit only, after every page write
 * (and the final xTruncate) of the transaction and before it unlocks; also
 * for a write transaction that changed no page (empty buffer: nothing is
 * shipped). SQLITE_FCNTL_SYNC and xSync are no-ops here. FCNTL_SYNC does
 * arrive once per commit whatever the synchronous setting, and xSync after
 * it unless synchronous=OFF, but both also arrive when SQLite rolls back a
 * transaction whose pages it had spilled to the file (pager_playback syncs
 * the restored file), so neither marks a commit. (Observed with SQLite
 * 3.40.1; test_commit_boundary_observed and test_rollback_ships_nothing
 * print it.)
 *
 * Invariants:
 *   1. Nothing reaches the store before the commit boundary: write_mtr is
 *      called only from vfs_commit(), on COMMIT_PHASETWO.
 *   2. One MTR per transaction: COMMIT_PHASETWO arrives once per committed
 *      write transaction, and vfs_commit() empties the buffer it ships.
 *      A transaction that ends without it (ROLLBACK, an error, a closed
 *      connection) has its buffer dropped when it unlocks to SHARED or
 *      NONE: it ships nothing. With locking_mode=EXCLUSIVE SQLite never
 *      unlocks; a rollback then rewrites the spilled pages' old images
 *      into the buffer, which diff to nothing at the next commit.
 *   3. A cached image leaves the cache only when its LSN <= the store's
 *      read point, so re-reading it from storage gives the same bytes.
 *   4. A cached image is the newest committed one: commits overwrite it;
 *      a storage read is inserted only if the page is absent and no commit
 *      happened while it was in flight (the commit generation).
 *   5. Hence cache + store@read_point is the newest committed state
 *      (this process is the volume's only writer).
 *   6. At most one file holds a lock above SHARED; a file holds EXCLUSIVE
 *      only while no other file holds SHARED; no new SHARED is granted while
 *      a file holds PENDING or EXCLUSIVE.
 *   7. Only the main database goes to the store; journals are in memory,
 *      temporary files go to the default VFS, WAL is refused.
 *
 * File states (vfs_file.lock and .dirty):
 *   IDLE      lock NONE.                       xLock(SHARED) -> READING
 *   READING   SHARED; read_lsn fixed.          xLock(RESERVED+) -> WRITING
 *   WRITING   RESERVED..EXCLUSIVE; xWrite and xTruncate fill the buffer.
 *             COMMIT_PHASETWO -> vfs_commit(): ship, install in the cache,
 *             empty the buffer (still WRITING until unlock).
 *             xUnlock(SHARED/NONE) -> READING/IDLE, dropping the buffer.
 * Volume states: OK -> FAILED (sticky, set by vfs_commit when write_mtr
 * fails with an unknown outcome); FAILED refuses writes until the VFS is
 * unregistered and registered again (the volume reopened).
 *
 * Cancel: SQLite holds a connection's mutex while its busy handler waits,
 * so hx_vfs_cancel finds the connection's main file in the VFS's list of
 * open main files (by the handle hx_vfs_open_db noted) instead of asking
 * SQLite. Its cancel flag makes the busy handler give up until the
 * connection's thread clears it (hx_vfs_cancel_clear); the flag touches
 * no lock state: leaving the wait goes through the same exit as a timeout.
 *
 * Visibility: a connection of this process sees every commit of this
 * process at once, durable or not (the cache). Whoever answers a client
 * waits for durability: a commit for hx_vfs_last_commit_lsn(), a read
 * for hx_vfs_read_lsn(); hx_vfs_reply_lsn() is the larger of the two.
 *
 * Size: the database size is the in-header page count (page 1, bytes
 * 28..31, big-endian) of the committed view; a fresh volume (page 1 all
 * zeros) is empty. During a write transaction the file tracks its own size
 * (grown by writes, set by xTruncate), as a real file would. The volume
 * never shrinks; pages past the size are ignored.
 *
 * Not done here: streaming a transaction larger than memory before its
 * commit (DESIGN.md "A transaction larger than memory"); the buffer is
 * capped at HX_VFS_DIRTY_PAGES_MAX pages instead.
 */
#include "hx_vfs.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hx_err.h"
#include "page_diff.h"

/* Pages scanned from the LRU tail per eviction pass beyond the excess. */
#define VFS_EVICT_SCAN_PAGES 64
/* Longest sleep of a writer-lock waiter between looks (vfs_busy_wait). */
#define VFS_WRITER_WAIT_SLICE_MS 20
/* A memory journal larger than this fails with SQLITE_FULL. */
#define VFS_JOURNAL_BYTES_MAX ((size_t)1 << 31)
#define VFS_PATHNAME_MAX 512

/* ==== page maps: page_no -> image =================================== */

typedef struct vfs_page {
    uint64_t page_no;
    uint64_t lsn; /* cache: LSN of this image; dirty buffer: unused */
    uint8_t *image;
    struct vfs_page *hnext;
    struct vfs_page *lru_prev, *lru_next; /* cache only; head = newest */
} vfs_page;

typedef struct {
    vfs_page **buckets;
    size_t n_buckets; /* power of two, or 0 */
    size_t count;
} page_map;

static size_t map_slot(const page_map *m, uint64_t page_no)
{
    uint64_t h = page_no * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & (m->n_buckets - 1);
}

static vfs_page *map_find(const page_map *m, uint64_t page_no)
{
    if (m->n_buckets == 0)
        return NULL;
    for (vfs_page *p = m->buckets[map_slot(m, page_no)]; p; p = p->hnext) {
        if (p->page_no == page_no)
            return p;
    }
    return NULL;
}

/* Grows the bucket array so that count + extra entries fit at load 1.
 * Chained buckets never need this to insert: failure only costs speed. */
static int map_reserve(page_map *m, size_t extra)
{
    size_t want = m->count + extra;
    if (want <= m->n_buckets)
        return HX_OK;
    size_t nb = m->n_buckets ? m->n_buckets : 256;
    while (nb < want)
        nb *= 2;
    vfs_page **b = calloc(nb, sizeof(*b));
    if (!b)
        return HX_ERR_NOMEM;
    page_map grown = {b, nb, m->count};
    for (size_t i = 0; i < m->n_buckets; i++) {
        vfs_page *p = m->buckets[i];
        while (p) {
            vfs_page *next = p->hnext;
            size_t s = map_slot(&grown, p->page_no);
            p->hnext = b[s];
            b[s] = p;
            p = next;
        }
    }
    free(m->buckets);
    *m = grown;
    return HX_OK;
}

/* p must not be in the map. Fails only if the map has no buckets yet and
 * none can be allocated. */
static int map_insert(page_map *m, vfs_page *p)
{
    if (map_reserve(m, 1) != HX_OK && m->n_buckets == 0)
        return HX_ERR_NOMEM;
    size_t s = map_slot(m, p->page_no);
    p->hnext = m->buckets[s];
    m->buckets[s] = p;
    m->count++;
    return HX_OK;
}

static void map_remove(page_map *m, vfs_page *p)
{
    vfs_page **pp = &m->buckets[map_slot(m, p->page_no)];
    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    p->hnext = NULL;
    m->count--;
}

static void page_free(vfs_page *p)
{
    if (p) {
        free(p->image);
        free(p);
    }
}

static vfs_page *page_alloc(uint64_t page_no, uint32_t page_size)
{
    vfs_page *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->image = malloc(page_size);
    if (!p->image) {
        free(p);
        return NULL;
    }
    p->page_no = page_no;
    return p;
}

/* Frees every page of m and the bucket array. */
static void map_clear(page_map *m)
{
    for (size_t i = 0; i < m->n_buckets; i++) {
        vfs_page *p = m->buckets[i];
        while (p) {
            vfs_page *next = p->hnext;
            page_free(p);
            p = next;
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof(*m));
}

/* ==== objects ======================================================= */

typedef struct vfs_file vfs_file;

typedef struct {
    sqlite3_vfs base; /* first: SQLite hands back &base */
    hx_page_store store;
    char *name;

    pthread_mutex_t mu; /* guards everything below */
    int n_open;         /* our files open (main + journals) */
    int n_main_open;
    vfs_file *mains;    /* the n_main_open main files (hx_vfs_cancel) */
    char *db_name;      /* name of the open main database, while any */
    /* lock table */
    int n_shared;       /* files holding SHARED or more */
    vfs_file *writer;   /* the file holding RESERVED or more */
    /* Bumped and broadcast when a release may grant a refused lock
     * (vfs_main_unlock): a refused connection waits for it instead of
     * sleeping (vfs_busy_wait). */
    uint64_t unlock_gen;
    pthread_cond_t unlocked; /* CLOCK_MONOTONIC */
    /* Connections refused the writer lock wait here instead, and a
     * writer's release wakes one of them, not all: with 32 sessions a
     * broadcast woke ~30 threads per transaction to find the lock taken
     * again (vfs_busy_wait). */
    pthread_cond_t writer_free; /* CLOCK_MONOTONIC */
    /* Connections asleep on writer_free: each will commit soon after it
     * gets the lock, so a commit made while some wait says so to the
     * store (HX_MTR_MORE_COMING). */
    unsigned writer_waiters;
    /* Files whose last lock attempt was refused because another holds
     * the writer lock, and that have neither got it nor given up since
     * (vfs_file.busy_for_writer): asleep in vfs_busy_wait or between two
     * of its sleeps. */
    unsigned writer_wanted;
    /* Writer lock statistics (hx_vfs_stats): when the writer took the
     * lock, and when a release left files wanting it (handoff_open: that
     * gap has not ended in an acquisition yet). */
    uint64_t writer_since_ns;
    uint64_t handoff_since_ns;
    bool handoff_open;
    /* committed-page cache */
    page_map cache;
    vfs_page lru;       /* sentinel */
    size_t cache_pages_max;
    uint64_t commit_gen; /* bumped by every commit (invariant 4) */
    uint64_t last_commit_lsn;
    int failed;
    hx_vfs_stats stats;
} hx_vfs;

struct vfs_file {
    sqlite3_file base; /* first */
    hx_vfs *vfs;
    int lock;          /* SQLITE_LOCK_* this file holds */
    page_map dirty;
    int tx_active;     /* tx_size_pages is the size */
    uint64_t tx_size_pages;
    uint64_t last_commit_lsn; /* under vfs->mu */
    uint64_t read_lsn;        /* under vfs->mu */
    uint64_t busy_gen;        /* under vfs->mu: unlock_gen at the last refusal */
    /* under vfs->mu: refused because another writes; only
     * vfs_set_busy_for_writer changes it (v->writer_wanted) */
    int busy_for_writer;
    uint64_t busy_since_ms;   /* connection thread: start of the current wait */
    int write_intent;         /* under vfs->mu: hx_vfs_intend_write() */
    vfs_file *next_main;      /* under vfs->mu: hx_vfs.mains */
    sqlite3 *db;              /* under vfs->mu: set by hx_vfs_open_db */
    /* hx_vfs_cancel: set under vfs->mu (so a waiter that saw it clear
     * before sleeping is woken), read and cleared by the connection's
     * thread without it. */
    atomic_bool cancelled;
    uint8_t *scratch;  /* page_size bytes: commit base images */
};

typedef struct {
    sqlite3_file base;
    hx_vfs *vfs;
    uint8_t *data;
    size_t size, cap;
} vfs_journal;

static const sqlite3_io_methods vfs_main_methods;
static const sqlite3_io_methods vfs_journal_methods;
static int vfs_open(sqlite3_vfs *pvfs, sqlite3_filename name,
                    sqlite3_file *file, int flags, int *out_flags);

static sqlite3_vfs *vfs_parent(const hx_vfs *v)
{
    return (sqlite3_vfs *)v->base.pAppData;
}

static void vfs_log(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_log(code, "hexad vfs: %s", msg ? msg : fmt);
    sqlite3_free(msg);
}

static int vfs_name_has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

static int vfs_is_journal_name(const char *name)
{
    return name && (vfs_name_has_suffix(name, "-journal") ||
                    vfs_name_has_suffix(name, "-wal"));
}

/* ==== committed-page cache (vfs->mu held) ========================== */

static void lru_unlink(vfs_page *p)
{
    p->lru_prev->lru_next = p->lru_next;
    p->lru_next->lru_prev = p->lru_prev;
}

static void lru_push_head(hx_vfs *v, vfs_page *p)
{
    p->lru_next = v->lru.lru_next;
    p->lru_prev = &v->lru;
    v->lru.lru_next->lru_prev = p;
    v->lru.lru_next = p;
}

/* Drops least recently used images while over the limit, only those the
 * store can give back unchanged (invariant 3). */
static void cache_evict(hx_vfs *v)
{
    if (v->cache.count <= v->cache_pages_max)
        return;
    uint64_t read_point = v->store.read_point(v->store.ctx);
    size_t scan = v->cache.count - v->cache_pages_max + VFS_EVICT_SCAN_PAGES;
    vfs_page *p = v->lru.lru_prev;
    while (p != &v->lru && scan-- > 0 &&
           v->cache.count > v->cache_pages_max) {
        vfs_page *prev = p->lru_prev;
        /* Page 1 stays: its change counters may be newer than storage's
         * (vfs_header_counters_only), and a connection that saw a counter
         * must never see an older one again. */
        if (p->lsn <= read_point && p->page_no != 0) {
            lru_unlink(p);
            map_remove(&v->cache, p);
            page_free(p);
            v->stats.evictions++;
        }
        p = prev;
    }
}

static void cache_clear(hx_vfs *v)
{
    map_clear(&v->cache);
    v->lru.lru_next = v->lru.lru_prev = &v->lru;
}

/* ==== the view: dirty buffer, cache, store ========================= */

static int vfs_sqlite_err(int hx_rc, int io_code)
{
    switch (hx_rc) {
    case HX_OK: return SQLITE_OK;
    case HX_ERR_NOMEM: return SQLITE_NOMEM;
    case HX_ERR_TOO_BIG:
    case HX_ERR_NO_SPACE: return SQLITE_FULL;
    default: return io_code;
    }
}

/* Copies bytes [off, off + len) of page page_no as f sees it. */
static int vfs_view_bytes(vfs_file *f, uint64_t page_no, uint32_t off,
                          uint32_t len, uint8_t *out)
{
    hx_vfs *v = f->vfs;
    uint32_t ps = v->store.page_size;
    assert(off + len <= ps);

    vfs_page *d = map_find(&f->dirty, page_no);
    if (d) {
        memcpy(out, d->image + off, len);
        return SQLITE_OK;
    }

    pthread_mutex_lock(&v->mu);
    vfs_page *c = map_find(&v->cache, page_no);
    if (c) {
        memcpy(out, c->image + off, len);
        lru_unlink(c);
        lru_push_head(v, c);
        v->stats.cache_hits++;
        pthread_mutex_unlock(&v->mu);
        return SQLITE_OK;
    }
    uint64_t gen = v->commit_gen;
    uint64_t read_point = v->store.read_point(v->store.ctx);
    v->stats.cache_misses++;
    pthread_mutex_unlock(&v->mu);

    vfs_page *p = page_alloc(page_no, ps);
    if (!p)
        return SQLITE_IOERR_NOMEM;
    int rc = v->store.read_page(v->store.ctx, page_no, read_point, p->image);
    if (rc) {
        vfs_log(SQLITE_IOERR_READ, "read page %llu at lsn %llu: %s",
                (unsigned long long)page_no, (unsigned long long)read_point,
                hx_strerror(rc));
        page_free(p);
        return vfs_sqlite_err(rc, SQLITE_IOERR_READ);
    }
    memcpy(out, p->image + off, len);

    pthread_mutex_lock(&v->mu);
    if (v->commit_gen == gen && !map_find(&v->cache, page_no) &&
        map_insert(&v->cache, p) == HX_OK) {
        p->lsn = read_point;
        lru_push_head(v, p);
        p = NULL;
        cache_evict(v);
    }
    pthread_mutex_unlock(&v->mu);
    page_free(p);
    return SQLITE_OK;
}

static uint32_t get_be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
           (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Database size in pages as f sees it. */
static int vfs_size_pages(vfs_file *f, uint64_t *pages)
{
    if (f->tx_active) {
        *pages = f->tx_size_pages;
        return SQLITE_OK;
    }
    uint8_t hdr[4];
    int rc = vfs_view_bytes(f, 0, 28, sizeof(hdr), hdr);
    if (rc == SQLITE_OK)
        *pages = get_be32(hdr);
    return rc;
}

/* ==== the commit ==================================================== */

static int page_cmp(const void *a, const void *b)
{
    const vfs_page *x = *(vfs_page *const *)a;
    const vfs_page *y = *(vfs_page *const *)b;
    return x->page_no < y->page_no ? -1 : x->page_no > y->page_no;
}

/* SQLite bumps the file change counter (bytes 24..27 of page 1) and its
 * copy, version-valid-for (92..95), in every write transaction. Only this
 * process's connections use them (to learn that their page caches are
 * stale), and they read page 1 from the cache, where it stays (cache_evict).
 * So a page 1 whose only changes are those counters is not shipped: it would
 * add a record, and often a whole PG, to every commit. Storage's page 1 keeps
 * both counters equal (they change together, and any other change of page 1
 * ships the whole diff), so the in-header size stays valid for readers that
 * open the volume later. */
static int vfs_header_counters_only(const hx_patch *patches, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t lo = patches[i].offset, hi = lo + patches[i].len;
        if (!((lo >= 24 && hi <= 28) || (lo >= 92 && hi <= 96)))
            return 0;
    }
    return 1;
}

/* Moves committed page p (taken out of f's buffer) into the cache at lsn
 * (vfs->mu held; allocates nothing: invariant 4). */
static void cache_install(hx_vfs *v, vfs_file *f, vfs_page *p, uint64_t lsn)
{
    map_remove(&f->dirty, p);
    vfs_page *c = map_find(&v->cache, p->page_no);
    if (c) {
        uint8_t *old = c->image;
        c->image = p->image;
        p->image = old;
        page_free(p);
        lru_unlink(c);
    } else {
        c = p;
        (void)map_insert(&v->cache, c); /* has buckets since register */
    }
    c->lsn = lsn;
    lru_push_head(v, c);
}

static void vfs_drop_buffer(vfs_file *f)
{
    map_clear(&f->dirty);
    f->tx_active = 0;
    f->tx_size_pages = 0;
}

/* The commit boundary: ships the buffer as one MTR (invariants 1, 2) and
 * moves its images into the cache with the commit LSN. */
static int vfs_commit(vfs_file *f)
{
    hx_vfs *v = f->vfs;
    uint32_t ps = v->store.page_size;
    size_t n_dirty = f->dirty.count;
    vfs_page **pages = NULL;
    hx_page_write *writes = NULL;
    hx_patch *patches = NULL;
    size_t *first_patch = NULL;
    size_t n_writes = 0, n_patches = 0, cap_patches = 0;
    vfs_page *header = NULL; /* page 1 with only its counters changed */
    int rc = SQLITE_OK;

    if (n_dirty == 0) {
        vfs_drop_buffer(f);
        return SQLITE_OK;
    }
    pthread_mutex_lock(&v->mu);
    int failed = v->failed;
    pthread_mutex_unlock(&v->mu);
    if (failed)
        return SQLITE_IOERR_WRITE;

    pages = malloc(n_dirty * sizeof(*pages));
    writes = malloc(n_dirty * sizeof(*writes));
    first_patch = malloc(n_dirty * sizeof(*first_patch));
    if (!pages || !writes || !first_patch) {
        rc = SQLITE_IOERR_NOMEM;
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < f->dirty.n_buckets; i++) {
        for (vfs_page *p = f->dirty.buckets[i]; p; p = p->hnext)
            pages[k++] = p;
    }
    assert(k == n_dirty);
    qsort(pages, n_dirty, sizeof(*pages), page_cmp);

    /* Diff each page against its newest committed image. */
    for (size_t i = 0; i < n_dirty; i++) {
        vfs_page *p = pages[i];
        size_t n = 0;
        int is_image = 0;
        if (cap_patches - n_patches < PAGE_DIFF_PATCHES_MAX) {
            /* patches are kept by index until the end: realloc is fine */
            size_t cap = cap_patches ? cap_patches * 2 : 4 * n_dirty;
            if (cap < n_patches + PAGE_DIFF_PATCHES_MAX)
                cap = n_patches + PAGE_DIFF_PATCHES_MAX;
            hx_patch *np = realloc(patches, cap * sizeof(*np));
            if (!np) {
                rc = SQLITE_IOERR_NOMEM;
                goto out;
            }
            patches = np;
            cap_patches = cap;
        }
        /* The dirty page shadows the view: read the base directly. */
        pthread_mutex_lock(&v->mu);
        vfs_page *c = map_find(&v->cache, p->page_no);
        if (c)
            memcpy(f->scratch, c->image, ps);
        uint64_t read_point = v->store.read_point(v->store.ctx);
        pthread_mutex_unlock(&v->mu);
        if (!c) {
            int hrc = v->store.read_page(v->store.ctx, p->page_no,
                                         read_point, f->scratch);
            if (hrc) {
                vfs_log(SQLITE_IOERR_READ, "commit: read base of page %llu: %s",
                        (unsigned long long)p->page_no, hx_strerror(hrc));
                rc = vfs_sqlite_err(hrc, SQLITE_IOERR_READ);
                goto out;
            }
        }
        int hrc = hx_page_diff(f->scratch, p->image, ps, patches + n_patches,
                               PAGE_DIFF_PATCHES_MAX, &n, &is_image);
        if (hrc) {
            rc = SQLITE_IOERR_WRITE;
            goto out;
        }
        if (n == 0)
            continue; /* unchanged: no record */
        if (p->page_no == 0 && vfs_header_counters_only(patches + n_patches, n)) {
            header = p; /* to the cache, not to storage */
            continue;
        }
        writes[n_writes].page_no = p->page_no;
        writes[n_writes].is_image = is_image;
        writes[n_writes].n_patches = n;
        first_patch[n_writes] = n_patches;
        pages[n_writes] = p; /* compacts: pages[0..n_writes) have records */
        n_writes++;
        n_patches += n;
    }
    if (n_writes == 0)
        goto done; /* a counter-only page 1 is dropped: nothing changed */
    for (size_t i = 0; i < n_writes; i++)
        writes[i].patches = patches + first_patch[i];

    uint64_t lsn = 0;
    pthread_mutex_lock(&v->mu);
    unsigned flags = v->writer_waiters > 0 ? HX_MTR_MORE_COMING : 0;
    pthread_mutex_unlock(&v->mu);
    int hrc = v->store.write_mtr(v->store.ctx, writes, n_writes, flags, &lsn);
    if (hrc) {
        vfs_log(SQLITE_IOERR_WRITE, "commit of %llu pages: %s",
                (unsigned long long)n_writes,
                hx_strerror(hrc));
        if (hrc != HX_ERR_BUSY && hrc != HX_ERR_TOO_BIG) {
            pthread_mutex_lock(&v->mu);
            v->failed = hrc;
            pthread_mutex_unlock(&v->mu);
            vfs_log(SQLITE_IOERR_WRITE,
                    "volume %s failed: no writes until it is reopened",
                    v->name);
        }
        rc = vfs_sqlite_err(hrc, SQLITE_IOERR_WRITE);
        goto out;
    }

    /* Install: nothing below allocates or fails (invariant 4). */
    pthread_mutex_lock(&v->mu);
    (void)map_reserve(&v->cache, n_writes + 1);
    if (header)
        cache_install(v, f, header, lsn);
    for (size_t i = 0; i < n_writes; i++) {
        cache_install(v, f, pages[i], lsn);
        v->stats.records++;
        v->stats.image_records += writes[i].is_image != 0;
        for (size_t j = 0; j < writes[i].n_patches; j++)
            v->stats.patch_bytes += writes[i].patches[j].len;
    }
    v->commit_gen++;
    v->stats.mtrs++;
    v->stats.mtrs_more_coming += (flags & HX_MTR_MORE_COMING) != 0;
    if (lsn > v->last_commit_lsn)
        v->last_commit_lsn = lsn;
    f->last_commit_lsn = lsn;
    cache_evict(v);
    pthread_mutex_unlock(&v->mu);

done:
    vfs_drop_buffer(f); /* what is left is unchanged pages */
out:
    free(pages);
    free(writes);
    free(first_patch);
    free(patches);
    return rc;
}

/* ==== writer lock ownership and its statistics ===================== */

static uint64_t vfs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Under mu, no writer: f takes the writer lock (invariant 6). Ends an
 * open hand-off gap, whoever takes the lock. */
static void writer_take(hx_vfs *v, vfs_file *f)
{
    assert(v->writer == NULL);
    uint64_t now = vfs_now_ns();
    v->writer = f;
    v->writer_since_ns = now;
    v->stats.writer_acquisitions++;
    if (v->handoff_open) {
        v->stats.writer_handoff_ns += now - v->handoff_since_ns;
        v->handoff_open = false;
    }
}

/* Under mu: the writer lets the lock go. With files wanting it
 * (writer_wanted) a hand-off gap opens until the next writer_take. */
static void writer_drop(hx_vfs *v)
{
    assert(v->writer != NULL);
    uint64_t now = vfs_now_ns();
    v->stats.writer_held_ns += now - v->writer_since_ns;
    v->writer = NULL;
    if (v->writer_wanted > 0) {
        v->handoff_since_ns = now;
        v->handoff_open = true;
    }
}

/* Under mu: whether f's last lock attempt was refused because another
 * file holds the writer lock; keeps writer_wanted the count of such files.
 * Cleared when f locks again, gives up waiting (vfs_busy_wait) or closes;
 * not when it unlocks: SQLite drops a refused transaction's SHARED lock
 * before it calls the busy handler, which must still know the refusal. */
static void vfs_set_busy_for_writer(vfs_file *f, int on)
{
    if (f->busy_for_writer == on)
        return;
    f->busy_for_writer = on;
    if (on)
        f->vfs->writer_wanted++;
    else
        f->vfs->writer_wanted--;
}

/* ==== main database file methods =================================== */

static int vfs_main_close(sqlite3_file *file)
{
    vfs_file *f = (vfs_file *)file;
    hx_vfs *v = f->vfs;

    pthread_mutex_lock(&v->mu);
    if (f->lock >= SQLITE_LOCK_SHARED)
        v->n_shared--;
    if (v->writer == f)
        writer_drop(v);
    vfs_set_busy_for_writer(f, 0);
    f->lock = SQLITE_LOCK_NONE;
    vfs_file **pp = &v->mains;
    while (*pp != f)
        pp = &(*pp)->next_main;
    *pp = f->next_main;
    v->n_open--;
    if (--v->n_main_open == 0) {
        free(v->db_name);
        v->db_name = NULL;
    }
    pthread_mutex_unlock(&v->mu);
    vfs_drop_buffer(f);
    free(f->scratch);
    f->scratch = NULL;
    return SQLITE_OK;
}

static int vfs_main_read(sqlite3_file *file, void *buf, int amt,
                         sqlite3_int64 off)
{
    vfs_file *f = (vfs_file *)file;
    uint32_t ps = f->vfs->store.page_size;
    uint8_t *out = buf;
    uint64_t size_pages = 0;

    if (amt < 0 || off < 0)
        return SQLITE_IOERR_READ;
    int rc = vfs_size_pages(f, &size_pages);
    if (rc)
        return rc;
    uint64_t size_bytes = size_pages * ps;
    uint64_t pos = (uint64_t)off, end = pos + (uint64_t)amt;
    while (pos < end) {
        if (pos >= size_bytes) {
            /* past the end of the database: zero-fill, as a file would */
            memset(out, 0, end - pos);
            return SQLITE_IOERR_SHORT_READ;
        }
        uint32_t in_page = (uint32_t)(pos % ps);
        uint64_t n = ps - in_page;
        if (n > end - pos)
            n = end - pos;
        rc = vfs_view_bytes(f, pos / ps, in_page, (uint32_t)n, out);
        if (rc)
            return rc;
        out += n;
        pos += n;
    }
    return SQLITE_OK;
}

static int vfs_main_begin_tx(vfs_file *f)
{
    if (f->tx_active)
        return SQLITE_OK;
    uint64_t pages = 0;
    int rc = vfs_size_pages(f, &pages);
    if (rc)
        return rc;
    f->tx_size_pages = pages;
    f->tx_active = 1;
    return SQLITE_OK;
}

static int vfs_main_check_writable(vfs_file *f, const char *what)
{
    hx_vfs *v = f->vfs;
    pthread_mutex_lock(&v->mu);
    int failed = v->failed;
    pthread_mutex_unlock(&v->mu);
    if (failed)
        return SQLITE_IOERR_WRITE;
    if (!v->store.write_mtr)
        return SQLITE_READONLY;
    if (f->lock < SQLITE_LOCK_RESERVED) {
        vfs_log(SQLITE_IOERR_WRITE, "%s without a write lock", what);
        return SQLITE_IOERR_WRITE;
    }
    return SQLITE_OK;
}

static int vfs_main_write(sqlite3_file *file, const void *buf, int amt,
                          sqlite3_int64 off)
{
    vfs_file *f = (vfs_file *)file;
    uint32_t ps = f->vfs->store.page_size;

    /* SQLite writes whole pages at page offsets to the main database. */
    if (amt < 0 || off < 0 || (uint32_t)amt != ps || (uint64_t)off % ps) {
        vfs_log(SQLITE_IOERR_WRITE,
                "write of %d bytes at offset %lld: the volume page size is "
                "%u (set PRAGMA page_size=%u before creating tables)",
                amt, (long long)off, ps, ps);
        return SQLITE_IOERR_WRITE;
    }
    int rc = vfs_main_check_writable(f, "page write");
    if (rc)
        return rc;
    rc = vfs_main_begin_tx(f);
    if (rc)
        return rc;

    uint64_t page_no = (uint64_t)off / ps;
    vfs_page *p = map_find(&f->dirty, page_no);
    if (!p) {
        if (f->dirty.count >= HX_VFS_DIRTY_PAGES_MAX) {
            vfs_log(SQLITE_FULL, "transaction over %u pages",
                    (unsigned)HX_VFS_DIRTY_PAGES_MAX);
            return SQLITE_FULL;
        }
        p = page_alloc(page_no, ps);
        if (!p || map_insert(&f->dirty, p) != HX_OK) {
            page_free(p);
            return SQLITE_IOERR_NOMEM;
        }
    }
    memcpy(p->image, buf, ps);
    if (page_no + 1 > f->tx_size_pages)
        f->tx_size_pages = page_no + 1;
    return SQLITE_OK;
}

static int vfs_main_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    vfs_file *f = (vfs_file *)file;
    uint32_t ps = f->vfs->store.page_size;

    if (size < 0 || (uint64_t)size % ps) {
        vfs_log(SQLITE_IOERR_TRUNCATE, "truncate to %lld bytes: not a "
                "multiple of the page size %u", (long long)size, ps);
        return SQLITE_IOERR_TRUNCATE;
    }
    int rc = vfs_main_check_writable(f, "truncate");
    if (rc)
        return rc;
    rc = vfs_main_begin_tx(f);
    if (rc)
        return rc;
    f->tx_size_pages = (uint64_t)size / ps;
    /* Buffered pages past the new end are gone, as in a file. */
    for (size_t i = 0; i < f->dirty.n_buckets; i++) {
        vfs_page *p = f->dirty.buckets[i];
        while (p) {
            vfs_page *next = p->hnext;
            if (p->page_no >= f->tx_size_pages) {
                map_remove(&f->dirty, p);
                page_free(p);
            }
            p = next;
        }
    }
    return SQLITE_OK;
}

static int vfs_main_sync(sqlite3_file *file, int flags)
{
    vfs_file *f = (vfs_file *)file;
    (void)flags;
    pthread_mutex_lock(&f->vfs->mu);
    f->vfs->stats.xsyncs++;
    pthread_mutex_unlock(&f->vfs->mu);
    return SQLITE_OK;
}

static int vfs_main_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    vfs_file *f = (vfs_file *)file;
    uint64_t pages = 0;
    int rc = vfs_size_pages(f, &pages);
    if (rc)
        return rc == SQLITE_IOERR_READ ? SQLITE_IOERR_FSTAT : rc;
    *size = (sqlite3_int64)(pages * f->vfs->store.page_size);
    return SQLITE_OK;
}

#ifndef NDEBUG
static void vfs_check_locks(const hx_vfs *v)
{
    assert(v->n_shared >= 0 && v->n_shared <= v->n_main_open);
    if (v->writer) {
        assert(v->writer->lock > SQLITE_LOCK_SHARED);
        assert(v->writer->lock != SQLITE_LOCK_EXCLUSIVE || v->n_shared == 1);
    }
}
#else
#define vfs_check_locks(v) ((void)(v))
#endif

/* In-memory locks with SQLite's semantics (invariant 6). A refused lock
 * returns SQLITE_BUSY and notes the unlock generation it saw; the busy
 * handler (vfs_busy_wait) retries once that generation moved. */
static int vfs_main_lock(sqlite3_file *file, int level)
{
    vfs_file *f = (vfs_file *)file;
    hx_vfs *v = f->vfs;
    int rc = SQLITE_OK;

    pthread_mutex_lock(&v->mu);
    if (f->lock >= level)
        goto out;
    vfs_set_busy_for_writer(f, 0);
    if (level == SQLITE_LOCK_SHARED) {
        /* Refused while a commit holds PENDING or EXCLUSIVE. A connection
         * about to write (hx_vfs_intend_write) then waits as a writer-lock
         * waiter, woken alone when the writer leaves, not with every
         * refused reader: it would ask for the writer lock next anyway. */
        if (v->writer && v->writer->lock >= SQLITE_LOCK_PENDING) {
            rc = SQLITE_BUSY;
            vfs_set_busy_for_writer(f, f->write_intent);
            goto out;
        }
        v->n_shared++;
        f->lock = SQLITE_LOCK_SHARED;
        uint64_t rp = v->store.read_point(v->store.ctx);
        f->read_lsn = rp > v->last_commit_lsn ? rp : v->last_commit_lsn;
        goto out;
    }
    /* RESERVED or EXCLUSIVE: SQLite asks for them only holding SHARED. */
    if (f->lock < SQLITE_LOCK_SHARED || (v->writer && v->writer != f)) {
        rc = SQLITE_BUSY;
        vfs_set_busy_for_writer(f, v->writer != NULL && v->writer != f);
        goto out;
    }
    if (v->writer == NULL)
        writer_take(v, f);
    if (level == SQLITE_LOCK_RESERVED) {
        f->lock = SQLITE_LOCK_RESERVED;
        goto out;
    }
    /* EXCLUSIVE: hold PENDING (no new readers) until the others leave. */
    f->lock = SQLITE_LOCK_PENDING;
    if (v->n_shared > 1) {
        rc = SQLITE_BUSY;
        goto out;
    }
    f->lock = SQLITE_LOCK_EXCLUSIVE;
out:
    if (rc == SQLITE_BUSY)
        f->busy_gen = v->unlock_gen;
    vfs_check_locks(v);
    pthread_mutex_unlock(&v->mu);
    return rc;
}

static int vfs_main_unlock(sqlite3_file *file, int level)
{
    vfs_file *f = (vfs_file *)file;
    hx_vfs *v = f->vfs;

    pthread_mutex_lock(&v->mu);
    /* Only two releases can turn a refusal into a grant: the writer
     * leaving (RESERVED, SHARED for PENDING) and the last other reader
     * leaving while a writer waits in PENDING for EXCLUSIVE. Waking on
     * every release would be a storm: a refused BEGIN IMMEDIATE drops its
     * SHARED before it waits, which would wake every waiter again. */
    int wake = 0;
    if (f->lock > SQLITE_LOCK_SHARED && level <= SQLITE_LOCK_SHARED) {
        assert(v->writer == f);
        writer_drop(v);
        wake = 1;
        pthread_cond_signal(&v->writer_free);
    }
    if (level == SQLITE_LOCK_NONE && f->lock >= SQLITE_LOCK_SHARED) {
        v->n_shared--;
        wake = wake || (v->writer && v->writer->lock == SQLITE_LOCK_PENDING &&
                        v->n_shared == 1);
    }
    if (level < f->lock)
        f->lock = level;
    if (wake) {
        v->unlock_gen++;
        pthread_cond_broadcast(&v->unlocked);
    }
    if (f->dirty.count > 0 && level <= SQLITE_LOCK_SHARED)
        v->stats.discards++;
    vfs_check_locks(v);
    pthread_mutex_unlock(&v->mu);

    /* A transaction that ends without COMMIT_PHASETWO ships nothing. */
    if (level <= SQLITE_LOCK_SHARED)
        vfs_drop_buffer(f);
    return SQLITE_OK;
}

static uint64_t vfs_now_ms(void)
{
    return vfs_now_ns() / 1000000u;
}

/* Under mu: f waits no more (timed out or cancelled) and stops counting
 * as wanting the writer lock. A release may have woken f alone
 * (writer_free is signalled, not broadcast): if the lock is free, the
 * wake-up passes to another sleeper rather than leaving it to its slice. */
static void vfs_give_up_wait(vfs_file *f)
{
    hx_vfs *v = f->vfs;
    vfs_set_busy_for_writer(f, 0);
    if (v->writer == NULL && v->writer_waiters > 0)
        pthread_cond_signal(&v->writer_free);
}

/* SQLite's busy handler for a connection of ours (arg: its main file).
 * SQLite's default one sleeps 1, 2, 5 ... 100 ms between retries, which
 * caps concurrent sessions at a few hundred transactions per second;
 * this one sleeps until a release that may grant it happened after the
 * refusal (busy_gen), so a waiter retries the moment the holder is done. Gives
 * up (SQLITE_BUSY to the statement) after HX_VFS_BUSY_TIMEOUT_MS, or at
 * once when the connection is cancelled (hx_vfs_cancel sets the flag and
 * wakes every sleeper under mu; SQLite's own interrupt flag is not looked
 * at between these retries).
 *
 * A connection refused the writer lock waits on writer_free, which a
 * writer's release signals (one waiter), until no writer holds the lock.
 * The wait is a state test, so a release before the wait is not missed;
 * a woken waiter that then does not retry (its statement gave up) would
 * leave the others asleep, so each sleeps at most VFS_WRITER_WAIT_SLICE_MS
 * before it looks again. */
static int vfs_busy_wait(void *arg, int count)
{
    vfs_file *f = arg;
    hx_vfs *v = f->vfs;
    uint64_t now = vfs_now_ms();
    if (count == 0)
        f->busy_since_ms = now;
    uint64_t deadline = f->busy_since_ms + HX_VFS_BUSY_TIMEOUT_MS;
    pthread_mutex_lock(&v->mu);
    if (now >= deadline || atomic_load(&f->cancelled)) {
        vfs_give_up_wait(f);
        pthread_mutex_unlock(&v->mu);
        return 0;
    }
    uint64_t wake = deadline;
    if (f->busy_for_writer && now + VFS_WRITER_WAIT_SLICE_MS < deadline)
        wake = now + VFS_WRITER_WAIT_SLICE_MS;
    struct timespec until = {.tv_sec = (time_t)(wake / 1000),
                             .tv_nsec = (long)(wake % 1000) * 1000000L};
    if (f->busy_for_writer) {
        v->writer_waiters++;
        uint64_t slept_from = vfs_now_ns();
        while (v->writer != NULL && !atomic_load(&f->cancelled) &&
               pthread_cond_timedwait(&v->writer_free, &v->mu, &until) == 0) {
        }
        v->stats.writer_wait_ns += vfs_now_ns() - slept_from;
        v->writer_waiters--;
    } else {
        while (v->unlock_gen == f->busy_gen && !atomic_load(&f->cancelled) &&
               pthread_cond_timedwait(&v->unlocked, &v->mu, &until) == 0) {
        }
    }
    /* Cancelled while asleep: no retry, which could take the lock. */
    int retry = !atomic_load(&f->cancelled);
    if (!retry)
        vfs_give_up_wait(f);
    pthread_mutex_unlock(&v->mu);
    return retry;
}

static int vfs_main_check_reserved(sqlite3_file *file, int *out)
{
    vfs_file *f = (vfs_file *)file;
    pthread_mutex_lock(&f->vfs->mu);
    *out = f->vfs->writer != NULL;
    pthread_mutex_unlock(&f->vfs->mu);
    return SQLITE_OK;
}

/* PRAGMAs this VFS answers or refuses; see SQLITE_FCNTL_PRAGMA. */
static int vfs_main_pragma(vfs_file *f, char **args)
{
    const char *name = args[1], *value = args[2];
    uint32_t ps = f->vfs->store.page_size;

    if (sqlite3_stricmp(name, "journal_mode") == 0 && value &&
        sqlite3_stricmp(value, "wal") == 0) {
        args[0] = sqlite3_mprintf("hexad: journal_mode=WAL is not supported "
                                  "(the volume is the log); use MEMORY");
        return SQLITE_ERROR;
    }
    if (sqlite3_stricmp(name, "page_size") == 0 && value &&
        strtoll(value, NULL, 10) != (long long)ps) {
        args[0] = sqlite3_mprintf("hexad: the volume page size is %u", ps);
        return SQLITE_ERROR;
    }
    if (sqlite3_stricmp(name, "hexad_last_commit_lsn") == 0) {
        pthread_mutex_lock(&f->vfs->mu);
        uint64_t lsn = f->last_commit_lsn;
        pthread_mutex_unlock(&f->vfs->mu);
        args[0] = sqlite3_mprintf("%llu", (unsigned long long)lsn);
        return SQLITE_OK;
    }
    return SQLITE_NOTFOUND;
}

static int vfs_main_file_control(sqlite3_file *file, int op, void *arg)
{
    vfs_file *f = (vfs_file *)file;
    hx_vfs *v = f->vfs;

    switch (op) {
    case SQLITE_FCNTL_SYNC:
        /* Also sent when a rollback restored spilled pages: not a commit. */
        pthread_mutex_lock(&v->mu);
        v->stats.fcntl_syncs++;
        pthread_mutex_unlock(&v->mu);
        return SQLITE_OK;
    case SQLITE_FCNTL_COMMIT_PHASETWO:
        pthread_mutex_lock(&v->mu);
        v->stats.phase_twos++;
        pthread_mutex_unlock(&v->mu);
        return vfs_commit(f);
    case SQLITE_FCNTL_PRAGMA:
        return vfs_main_pragma(f, arg);
    case SQLITE_FCNTL_VFSNAME:
        *(char **)arg = sqlite3_mprintf("%s", v->name);
        return SQLITE_OK;
    default:
        return SQLITE_NOTFOUND;
    }
}

static int vfs_main_sector_size(sqlite3_file *file)
{
    return (int)((vfs_file *)file)->vfs->store.page_size;
}

static int vfs_main_device_characteristics(sqlite3_file *file)
{
    (void)file;
    /* A page write never disturbs other pages; nothing else is claimed. */
    return SQLITE_IOCAP_POWERSAFE_OVERWRITE;
}

/* Version 1: no xShm*, so SQLite cannot put the database in WAL mode
 * outside exclusive locking, and no xFetch (no mmap). */
static const sqlite3_io_methods vfs_main_methods = {
    .iVersion = 1,
    .xClose = vfs_main_close,
    .xRead = vfs_main_read,
    .xWrite = vfs_main_write,
    .xTruncate = vfs_main_truncate,
    .xSync = vfs_main_sync,
    .xFileSize = vfs_main_file_size,
    .xLock = vfs_main_lock,
    .xUnlock = vfs_main_unlock,
    .xCheckReservedLock = vfs_main_check_reserved,
    .xFileControl = vfs_main_file_control,
    .xSectorSize = vfs_main_sector_size,
    .xDeviceCharacteristics = vfs_main_device_characteristics,
};

/* ==== rollback journals: process memory ============================= */
/* With journal_mode=MEMORY SQLite keeps its journal itself. In the other
 * rollback modes it opens one through the VFS; keeping it in memory too
 * is correct because the volume is never written before a commit: a crash
 * leaves nothing to roll back. */

static int vfs_journal_close(sqlite3_file *file)
{
    vfs_journal *j = (vfs_journal *)file;
    free(j->data);
    j->data = NULL;
    pthread_mutex_lock(&j->vfs->mu);
    j->vfs->n_open--;
    pthread_mutex_unlock(&j->vfs->mu);
    return SQLITE_OK;
}

static int vfs_journal_read(sqlite3_file *file, void *buf, int amt,
                            sqlite3_int64 off)
{
    vfs_journal *j = (vfs_journal *)file;
    if (amt < 0 || off < 0)
        return SQLITE_IOERR_READ;
    size_t have = (uint64_t)off < j->size ? j->size - (size_t)off : 0;
    if (have > (size_t)amt)
        have = (size_t)amt;
    if (have)
        memcpy(buf, j->data + off, have);
    if (have < (size_t)amt) {
        memset((uint8_t *)buf + have, 0, (size_t)amt - have);
        return SQLITE_IOERR_SHORT_READ;
    }
    return SQLITE_OK;
}

static int vfs_journal_write(sqlite3_file *file, const void *buf, int amt,
                             sqlite3_int64 off)
{
    vfs_journal *j = (vfs_journal *)file;
    if (amt < 0 || off < 0)
        return SQLITE_IOERR_WRITE;
    uint64_t end = (uint64_t)off + (uint64_t)amt;
    if (end > VFS_JOURNAL_BYTES_MAX)
        return SQLITE_FULL;
    if (end > j->cap) {
        size_t cap = j->cap ? j->cap : 65536;
        while (cap < end)
            cap *= 2;
        uint8_t *d = realloc(j->data, cap);
        if (!d)
            return SQLITE_IOERR_NOMEM;
        j->data = d;
        j->cap = cap;
    }
    if ((size_t)off > j->size)
        memset(j->data + j->size, 0, (size_t)off - j->size);
    memcpy(j->data + off, buf, (size_t)amt);
    if (end > j->size)
        j->size = (size_t)end;
    return SQLITE_OK;
}

static int vfs_journal_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    vfs_journal *j = (vfs_journal *)file;
    if (size < 0)
        return SQLITE_IOERR_TRUNCATE;
    if ((uint64_t)size < j->size)
        j->size = (size_t)size;
    return SQLITE_OK;
}

static int vfs_journal_sync(sqlite3_file *file, int flags)
{
    (void)file;
    (void)flags;
    return SQLITE_OK;
}

static int vfs_journal_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    *size = (sqlite3_int64)((vfs_journal *)file)->size;
    return SQLITE_OK;
}

static int vfs_journal_lock(sqlite3_file *file, int level)
{
    (void)file;
    (void)level;
    return SQLITE_OK;
}

static int vfs_journal_check_reserved(sqlite3_file *file, int *out)
{
    (void)file;
    *out = 0;
    return SQLITE_OK;
}

static int vfs_journal_file_control(sqlite3_file *file, int op, void *arg)
{
    (void)file;
    (void)op;
    (void)arg;
    return SQLITE_NOTFOUND;
}

static int vfs_journal_sector_size(sqlite3_file *file)
{
    return (int)((vfs_journal *)file)->vfs->store.page_size;
}

static int vfs_journal_device_characteristics(sqlite3_file *file)
{
    (void)file;
    return SQLITE_IOCAP_POWERSAFE_OVERWRITE;
}

static const sqlite3_io_methods vfs_journal_methods = {
    .iVersion = 1,
    .xClose = vfs_journal_close,
    .xRead = vfs_journal_read,
    .xWrite = vfs_journal_write,
    .xTruncate = vfs_journal_truncate,
    .xSync = vfs_journal_sync,
    .xFileSize = vfs_journal_file_size,
    .xLock = vfs_journal_lock,
    .xUnlock = vfs_journal_lock,
    .xCheckReservedLock = vfs_journal_check_reserved,
    .xFileControl = vfs_journal_file_control,
    .xSectorSize = vfs_journal_sector_size,
    .xDeviceCharacteristics = vfs_journal_device_characteristics,
};

/* ==== VFS methods =================================================== */

static int vfs_open(sqlite3_vfs *pvfs, sqlite3_filename name,
                    sqlite3_file *file, int flags, int *out_flags)
{
    hx_vfs *v = (hx_vfs *)pvfs;
    sqlite3_vfs *parent = vfs_parent(v);

    file->pMethods = NULL;
    if (flags & SQLITE_OPEN_WAL) {
        vfs_log(SQLITE_CANTOPEN, "WAL file %s refused: WAL is not supported",
                name ? name : "?");
        return SQLITE_CANTOPEN;
    }
    if (flags & SQLITE_OPEN_MAIN_JOURNAL) {
        vfs_journal *j = (vfs_journal *)file;
        memset(j, 0, sizeof(*j));
        j->vfs = v;
        pthread_mutex_lock(&v->mu);
        v->n_open++;
        pthread_mutex_unlock(&v->mu);
        j->base.pMethods = &vfs_journal_methods;
        if (out_flags)
            *out_flags = flags;
        return SQLITE_OK;
    }
    if (!(flags & SQLITE_OPEN_MAIN_DB) || !name) {
        /* Temporary databases and journals: the default VFS, which fills
         * in its own file object and methods in our (larger) slot. */
        return parent->xOpen(parent, name, file, flags, out_flags);
    }

    vfs_file *f = (vfs_file *)file;
    memset(f, 0, sizeof(*f));
    f->vfs = v;
    f->scratch = malloc(v->store.page_size);
    if (!f->scratch)
        return SQLITE_NOMEM;
    pthread_mutex_lock(&v->mu);
    if (v->db_name && strcmp(v->db_name, name) != 0) {
        pthread_mutex_unlock(&v->mu);
        vfs_log(SQLITE_CANTOPEN, "%s: volume %s is open as %s", name,
                v->name, v->db_name);
        free(f->scratch);
        f->scratch = NULL;
        return SQLITE_CANTOPEN;
    }
    if (!v->db_name) {
        v->db_name = strdup(name);
        if (!v->db_name) {
            pthread_mutex_unlock(&v->mu);
            free(f->scratch);
            f->scratch = NULL;
            return SQLITE_NOMEM;
        }
    }
    atomic_init(&f->cancelled, false);
    f->next_main = v->mains;
    v->mains = f;
    v->n_main_open++;
    v->n_open++;
    pthread_mutex_unlock(&v->mu);
    f->base.pMethods = &vfs_main_methods;
    /* A store without write_mtr is read-only: SQLite's pager takes the
     * flag from here and refuses writes with SQLITE_READONLY. */
    if (!v->store.write_mtr)
        flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
                SQLITE_OPEN_READONLY;
    if (out_flags)
        *out_flags = flags;
    return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *pvfs, const char *name, int sync_dir)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    if (vfs_is_journal_name(name))
        return SQLITE_OK; /* our journals vanish on close */
    return parent->xDelete(parent, name, sync_dir);
}

static int vfs_access(sqlite3_vfs *pvfs, const char *name, int flags,
                      int *out)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    if (vfs_is_journal_name(name)) {
        *out = 0; /* never a hot journal or WAL to recover */
        return SQLITE_OK;
    }
    return parent->xAccess(parent, name, flags, out);
}

/* Names are volume-relative: no file-system path to resolve. */
static int vfs_full_pathname(sqlite3_vfs *pvfs, const char *name, int n_out,
                             char *out)
{
    (void)pvfs;
    size_t len = strlen(name);
    if (n_out <= 0 || len >= (size_t)n_out)
        return SQLITE_CANTOPEN;
    memcpy(out, name, len + 1);
    return SQLITE_OK;
}

static void *vfs_dl_open(sqlite3_vfs *pvfs, const char *path)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    return parent->xDlOpen(parent, path);
}

static void vfs_dl_error(sqlite3_vfs *pvfs, int n, char *msg)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    parent->xDlError(parent, n, msg);
}

static void (*vfs_dl_sym(sqlite3_vfs *pvfs, void *h, const char *sym))(void)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    return parent->xDlSym(parent, h, sym);
}

static void vfs_dl_close(sqlite3_vfs *pvfs, void *h)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    parent->xDlClose(parent, h);
}

static int vfs_randomness(sqlite3_vfs *pvfs, int n, char *out)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    return parent->xRandomness(parent, n, out);
}

static int vfs_sleep(sqlite3_vfs *pvfs, int us)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    return parent->xSleep(parent, us);
}

static int vfs_current_time(sqlite3_vfs *pvfs, double *out)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    return parent->xCurrentTime(parent, out);
}

static int vfs_get_last_error(sqlite3_vfs *pvfs, int n, char *out)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    return parent->xGetLastError ? parent->xGetLastError(parent, n, out) : 0;
}

static int vfs_current_time_int64(sqlite3_vfs *pvfs, sqlite3_int64 *out)
{
    sqlite3_vfs *parent = vfs_parent((hx_vfs *)pvfs);
    if (parent->iVersion >= 2 && parent->xCurrentTimeInt64)
        return parent->xCurrentTimeInt64(parent, out);
    double now = 0;
    int rc = parent->xCurrentTime(parent, &now);
    *out = (sqlite3_int64)(now * 86400000.0);
    return rc;
}

/* ==== public API ==================================================== */

static hx_vfs *vfs_lookup(const char *name)
{
    sqlite3_vfs *p = name ? sqlite3_vfs_find(name) : NULL;
    return p && p->xOpen == vfs_open ? (hx_vfs *)p : NULL;
}

static void vfs_free(hx_vfs *v)
{
    if (!v)
        return;
    cache_clear(v);
    pthread_cond_destroy(&v->unlocked);
    pthread_cond_destroy(&v->writer_free);
    pthread_mutex_destroy(&v->mu);
    free(v->db_name);
    free(v->name);
    free(v);
}

int hx_vfs_register(const char *name, const hx_page_store *store,
                    int make_default)
{
    if (!name || !*name || !store || !store->read_point ||
        !store->read_page || !store->wait_durable)
        return HX_ERR_INVALID;
    uint32_t ps = store->page_size;
    if (ps < 512 || ps > 65536 || (ps & (ps - 1)) != 0)
        return HX_ERR_INVALID;
    if (sqlite3_initialize() != SQLITE_OK)
        return HX_ERR_IO;
    if (sqlite3_vfs_find(name))
        return HX_ERR_INVALID;
    /* The parent is the real default VFS, never another hexad one. */
    sqlite3_vfs *parent = sqlite3_vfs_find(NULL);
    if (parent && parent->xOpen == vfs_open)
        parent = vfs_parent((hx_vfs *)parent);
    if (!parent)
        return HX_ERR_CONFIG;

    hx_vfs *v = calloc(1, sizeof(*v));
    if (!v)
        return HX_ERR_NOMEM;
    v->name = strdup(name);
    int cond_ok = 0;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) == 0) {
        cond_ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
                  pthread_cond_init(&v->unlocked, &ca) == 0;
        if (cond_ok && pthread_cond_init(&v->writer_free, &ca) != 0) {
            pthread_cond_destroy(&v->unlocked);
            cond_ok = 0;
        }
        pthread_condattr_destroy(&ca);
    }
    if (!v->name || !cond_ok || pthread_mutex_init(&v->mu, NULL) != 0) {
        if (cond_ok) {
            pthread_cond_destroy(&v->unlocked);
            pthread_cond_destroy(&v->writer_free);
        }
        free(v->name);
        free(v);
        return HX_ERR_NOMEM;
    }
    v->store = *store;
    v->lru.lru_next = v->lru.lru_prev = &v->lru;
    if (map_reserve(&v->cache, 256) != HX_OK) {
        vfs_free(v);
        return HX_ERR_NOMEM;
    }
    v->cache_pages_max = HX_VFS_CACHE_PAGES_DEFAULT;

    int sz = (int)sizeof(vfs_file);
    if ((int)sizeof(vfs_journal) > sz)
        sz = (int)sizeof(vfs_journal);
    if (parent->szOsFile > sz)
        sz = parent->szOsFile;
    v->base.iVersion = 2;
    v->base.szOsFile = sz;
    v->base.mxPathname = VFS_PATHNAME_MAX;
    v->base.zName = v->name;
    v->base.pAppData = parent;
    v->base.xOpen = vfs_open;
    v->base.xDelete = vfs_delete;
    v->base.xAccess = vfs_access;
    v->base.xFullPathname = vfs_full_pathname;
    v->base.xDlOpen = vfs_dl_open;
    v->base.xDlError = vfs_dl_error;
    v->base.xDlSym = vfs_dl_sym;
    v->base.xDlClose = vfs_dl_close;
    v->base.xRandomness = vfs_randomness;
    v->base.xSleep = vfs_sleep;
    v->base.xCurrentTime = vfs_current_time;
    v->base.xGetLastError = vfs_get_last_error;
    v->base.xCurrentTimeInt64 = vfs_current_time_int64;

    if (sqlite3_vfs_register(&v->base, make_default ? 1 : 0) != SQLITE_OK) {
        vfs_free(v);
        return HX_ERR_IO;
    }
    return HX_OK;
}

int hx_vfs_unregister(const char *name)
{
    hx_vfs *v = vfs_lookup(name);
    if (!v)
        return HX_ERR_NOT_FOUND;
    pthread_mutex_lock(&v->mu);
    int busy = v->n_open > 0;
    pthread_mutex_unlock(&v->mu);
    if (busy)
        return HX_ERR_BUSY;
    sqlite3_vfs_unregister(&v->base);
    vfs_free(v);
    return HX_OK;
}

int hx_vfs_set_cache_pages(const char *name, size_t pages)
{
    hx_vfs *v = vfs_lookup(name);
    if (!v || pages == 0)
        return v ? HX_ERR_INVALID : HX_ERR_NOT_FOUND;
    pthread_mutex_lock(&v->mu);
    v->cache_pages_max = pages;
    cache_evict(v);
    pthread_mutex_unlock(&v->mu);
    return HX_OK;
}

int hx_vfs_get_stats(const char *name, hx_vfs_stats *out)
{
    hx_vfs *v = vfs_lookup(name);
    if (!v || !out)
        return v ? HX_ERR_INVALID : HX_ERR_NOT_FOUND;
    pthread_mutex_lock(&v->mu);
    *out = v->stats;
    out->cache_pages = v->cache.count;
    out->writer_waiters = v->writer_waiters;
    out->writer_wanted = v->writer_wanted;
    out->last_commit_lsn = v->last_commit_lsn;
    out->failed = v->failed;
    pthread_mutex_unlock(&v->mu);
    return HX_OK;
}

/* The main file of db if it is on a hexad VFS, else NULL. */
static vfs_file *vfs_db_file(sqlite3 *db)
{
    sqlite3_file *file = NULL;
    if (!db || sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER,
                                    &file) != SQLITE_OK)
        return NULL;
    return file && file->pMethods == &vfs_main_methods ? (vfs_file *)file
                                                       : NULL;
}

void hx_vfs_intend_write(sqlite3 *db, int on)
{
    vfs_file *f = vfs_db_file(db);
    if (!f)
        return;
    pthread_mutex_lock(&f->vfs->mu);
    f->write_intent = on;
    /* Its statement returned: whatever refusal it met, it waits no more
     * (SQLite answers BUSY without the busy handler to a transaction
     * that already read, and that refusal must not look like a waiter). */
    if (!on)
        vfs_set_busy_for_writer(f, 0);
    pthread_mutex_unlock(&f->vfs->mu);
}

int hx_vfs_cancel(const char *vfsname, sqlite3 *db)
{
    if (!db)
        return HX_ERR_INVALID;
    sqlite3_interrupt(db);
    hx_vfs *v = vfs_lookup(vfsname);
    if (!v)
        return HX_ERR_NOT_FOUND;
    int rc = HX_ERR_NOT_FOUND;
    pthread_mutex_lock(&v->mu);
    for (vfs_file *f = v->mains; f; f = f->next_main) {
        if (f->db == db) {
            atomic_store(&f->cancelled, true);
            rc = HX_OK;
        }
    }
    /* Its waits are on these two; the others woken recheck and sleep on. */
    if (rc == HX_OK) {
        pthread_cond_broadcast(&v->writer_free);
        pthread_cond_broadcast(&v->unlocked);
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

bool hx_vfs_cancelled(sqlite3 *db)
{
    vfs_file *f = vfs_db_file(db);
    return f && atomic_load(&f->cancelled);
}

void hx_vfs_cancel_clear(sqlite3 *db)
{
    vfs_file *f = vfs_db_file(db);
    if (f)
        atomic_store(&f->cancelled, false);
}

uint64_t hx_vfs_last_commit_lsn(sqlite3 *db)
{
    vfs_file *f = vfs_db_file(db);
    if (!f)
        return 0;
    pthread_mutex_lock(&f->vfs->mu);
    uint64_t lsn = f->last_commit_lsn;
    pthread_mutex_unlock(&f->vfs->mu);
    return lsn;
}

uint64_t hx_vfs_read_lsn(sqlite3 *db)
{
    vfs_file *f = vfs_db_file(db);
    if (!f)
        return 0;
    pthread_mutex_lock(&f->vfs->mu);
    uint64_t lsn = f->read_lsn;
    pthread_mutex_unlock(&f->vfs->mu);
    return lsn;
}

uint64_t hx_vfs_reply_lsn(sqlite3 *db)
{
    vfs_file *f = vfs_db_file(db);
    if (!f)
        return 0;
    pthread_mutex_lock(&f->vfs->mu);
    uint64_t lsn = f->last_commit_lsn > f->read_lsn ? f->last_commit_lsn
                                                    : f->read_lsn;
    pthread_mutex_unlock(&f->vfs->mu);
    return lsn;
}

static int vfs_exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        vfs_log(rc, "%s: %s", sql, err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    return rc;
}

/* SQLite's progress handler: a nonzero return interrupts the statement.
 * sqlite3_interrupt alone misses a cancel that lands just before a
 * statement starts (SQLite clears its flag when a statement starts with
 * none running); the connection's own flag stays set until cleared. */
static int vfs_progress_cancel(void *arg)
{
    return atomic_load(&((vfs_file *)arg)->cancelled) ? 1 : 0;
}

int hx_vfs_open_db(const char *vfsname, sqlite3 **db)
{
    if (!db)
        return HX_ERR_INVALID;
    *db = NULL;
    hx_vfs *v = vfs_lookup(vfsname);
    if (!v)
        return HX_ERR_NOT_FOUND;
    uint32_t ps = v->store.page_size;
    sqlite3 *d = NULL;
    int rc = HX_OK;
    char sql[256];

    if (sqlite3_open_v2(vfsname, &d, SQLITE_OPEN_READWRITE |
                        SQLITE_OPEN_CREATE, vfsname) != SQLITE_OK) {
        vfs_log(SQLITE_CANTOPEN, "open %s: %s", vfsname,
                d ? sqlite3_errmsg(d) : "out of memory");
        rc = HX_ERR_IO;
        goto fail;
    }
    sqlite3_file *main_file = NULL;
    if (sqlite3_file_control(d, "main", SQLITE_FCNTL_FILE_POINTER,
                             &main_file) != SQLITE_OK || !main_file ||
        main_file->pMethods != &vfs_main_methods) {
        vfs_log(SQLITE_CANTOPEN, "open %s: main file is not a hexad file",
                vfsname);
        rc = HX_ERR_IO;
        goto fail;
    }
    pthread_mutex_lock(&v->mu);
    ((vfs_file *)main_file)->db = d;
    pthread_mutex_unlock(&v->mu);
    sqlite3_busy_handler(d, vfs_busy_wait, main_file);
    sqlite3_progress_handler(d, HX_VFS_CANCEL_CHECK_OPS, vfs_progress_cancel,
                             main_file);
    snprintf(sql, sizeof(sql),
             "PRAGMA page_size=%u; PRAGMA journal_mode=MEMORY; "
             "PRAGMA locking_mode=NORMAL; PRAGMA synchronous=FULL; "
             "PRAGMA cache_size=-%d; PRAGMA temp_store=MEMORY;",
             ps, HX_VFS_SQLITE_CACHE_KIB);
    if (vfs_exec(d, sql) != SQLITE_OK) {
        rc = HX_ERR_IO;
        goto fail;
    }
    /* An existing database keeps its page size: check it. */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(d, "PRAGMA page_size", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        rc = HX_ERR_IO;
        goto fail;
    }
    long long have = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (have != (long long)ps) {
        vfs_log(SQLITE_MISMATCH, "database page size %lld != volume page "
                "size %u", have, ps);
        rc = HX_ERR_CONFIG;
        goto fail;
    }
    *db = d;
    return HX_OK;
fail:
    sqlite3_close(d);
    return rc;
}
