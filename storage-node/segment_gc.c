/* Garbage collection (DESIGN.md "Storage node" (7), issue 7): page versions
 * and log records that no read may need any more are deleted, and RocksDB
 * reclaims their space.
 *
 * The GC point of a segment. The writer sends min_read_lsn with its
 * appends: no read of the volume will ever use a read point below it.
 * Every pass samples it; a sample taken at least the retention window ago
 * (gc_cand_lsn) becomes the new target, so whatever is collected was
 * already below every reader's read point a whole window ago (it is the
 * backtrack window later). The target is capped at coalesced_lsn (so at
 * the SCL: nothing above the complete chain is ever touched).
 *
 * Invariants:
 *  1. g->gc_lsn only grows, and is persisted ('b' key) in the same batch
 *     as the deletions it allows; GetPage refuses read points below it.
 *  2. For every page, the newest version at or below gc_lsn (its base) is
 *     kept, with every record above it: a read at any read_lsn >= gc_lsn
 *     finds the base or a newer version, then the records above it,
 *     exactly as before collection. (Versions above the base may go:
 *     coalescing deletes superseded ones, segment_coalesce.c invariant 6.)
 *  3. Only records of a page at or below its base, and versions below its
 *     base, are deleted; a page without a version at or below gc_lsn loses
 *     nothing.
 *  4. The segment's newest record and newest CPL record at or below gc_lsn
 *     are never deleted: a truncation recomputes the SCL and its CPL as
 *     the newest stored ones below its start (segment_store_truncate), and
 *     everything between gc_lsn and that start is still stored.
 *  5. A page's GC floor (page_piles.h) is set only once the deletions of
 *     its records at or below it are written, and below a record of the
 *     page kept by invariant 4, so that a later pass, seeking the page's
 *     index from above the floor, still finds that record once it may go.
 *     (A record of the page below its floor stored later, by a repair,
 *     is then left until a restart forgets the floors: space, not reads.)
 *
 * Work per pass is bounded by max_pages pages (each: its versions and the
 * index entries up to its base); a cursor per segment resumes where the
 * last pass stopped.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "log.h"
#include "record.h"
#include "segment_store_internal.h"

/* Bytes deleted after which the GC compacts the store, so that disk use
 * follows under a steady load: GC_COMPACT_AFTER_BYTES, or a quarter of the
 * live data when that is more, since each such compaction rewrites all of
 * it (a fixed 32 MiB made a store of a few GB, an hour of tpcb-like load
 * at the default retention, rewrite itself for every 32 MiB collected).
 * It also compacts once a burst of deletions is over (a pass that finds
 * nothing more to delete). Between two,
 * RocksDB's own compaction (and its deletion-triggered one, set at open)
 * reclaims space as it goes. GC's compaction runs on a thread of its own,
 * one at a time (RocksDB takes writes and reads meanwhile): on the event
 * loop it stopped appends for as long as it rewrote the live data, and
 * the members of a PG collect, and so compact, at about the same time.
 * segment_store_close cancels and joins it. */
#define GC_COMPACT_AFTER_BYTES (32u << 20)
#define GC_COMPACT_BURST_MIN_BYTES (1u << 20)
#define GC_COMPACT_LIVE_FRACTION 4

void segment_store_set_retention(segment_store *s, uint64_t retention_ms)
{
    s->retention_ms = retention_ms;
}

const hx_node_counters *segment_store_counters(const segment_store *s)
{
    return &s->counters;
}

hx_node_counters *segment_store_counters_mut(segment_store *s)
{
    return &s->counters;
}

/* The whole store, without holding off RocksDB's own compactions: an
 * exclusive one (the default) lets L0 files pile up behind it for as long
 * as it rewrites the live data, toward the slowdown trigger, where a
 * journal checkpoint's flush waits (RocksDB will not let a flush stall
 * writes) and the journal ring fills (segment_checkpoint.c). */
static void compact_all(segment_store *s)
{
    rocksdb_compactoptions_t *o = rocksdb_compactoptions_create();
    rocksdb_compactoptions_set_exclusive_manual_compaction(o, 0);
    rocksdb_compact_range_cf_opt(s->db, s->cf_main, o, NULL, 0, NULL, 0);
    rocksdb_compact_range_cf_opt(s->db, s->cf_records, o, NULL, 0, NULL, 0);
    rocksdb_compactoptions_destroy(o);
}

void segment_store_compact(segment_store *s)
{
    compact_all(s);
    s->gc_bytes_since_compact = 0;
}

static void *compact_main(void *arg)
{
    segment_store *s = arg;
    compact_all(s);
    atomic_store(&s->compacting, false);
    return NULL;
}

/* Starts a compaction on its own thread unless one runs (then the next
 * pass past the threshold asks again). */
static void compact_in_background(segment_store *s)
{
    if (atomic_load(&s->compacting))
        return;
    compact_join(s); /* the previous one, finished */
    atomic_store(&s->compacting, true);
    int err = pthread_create(&s->compact_thread, NULL, compact_main, s);
    if (err != 0) {
        atomic_store(&s->compacting, false);
        HX_WARN("cannot start a compaction thread (%s); compacting on the "
                "event loop", strerror(err));
        segment_store_compact(s);
        return;
    }
    s->compact_started = true;
    s->gc_bytes_since_compact = 0;
    s->counters.gc_compactions++;
}

void compact_join(segment_store *s)
{
    if (!s->compact_started)
        return;
    if (atomic_load(&s->compacting))
        rocksdb_disable_manual_compaction(s->db); /* closing: cut it short */
    pthread_join(s->compact_thread, NULL);
    s->compact_started = false;
}

bool segment_store_compacting(const segment_store *s)
{
    return atomic_load(&s->compacting);
}

/* A pass's deletions, put into its batch in key order. RocksDB inserts a
 * batch into the memtable key by key, and its skip list starts each
 * search from where the previous insert landed: in key order each
 * deletion lands next to the last one, where a record's 'r', 'p' and 'c'
 * keys in turn sent every insert searching from the top (with GC on, the
 * memtable inserts cost the event loop more than anything else). */
typedef struct {
    uint8_t k[KEY_MAX_LEN];
    uint8_t kl;
} gc_key;

typedef struct {
    gc_key *keys;
    size_t n, cap;
} gc_deletes;

static int gc_delete(gc_deletes *d, const uint8_t *k, size_t kl)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        gc_key *nk = realloc(d->keys, cap * sizeof *nk);
        if (nk == NULL)
            return HX_ERR_NOMEM;
        d->keys = nk;
        d->cap = cap;
    }
    memcpy(d->keys[d->n].k, k, kl);
    d->keys[d->n].kl = (uint8_t)kl;
    d->n++;
    return HX_OK;
}

static int gc_key_cmp(const void *a, const void *b)
{
    const gc_key *x = a, *y = b;
    return key_cmp(x->k, x->kl, y->k, y->kl);
}

static void gc_deletes_put(const segment_store *s, gc_deletes *d,
                           rocksdb_writebatch_t *wb)
{
    if (d->n > 1)
        qsort(d->keys, d->n, sizeof *d->keys, gc_key_cmp);
    for (size_t i = 0; i < d->n; i++)
        batch_delete(s, wb, d->keys[i].k, d->keys[i].kl);
}

/* A page whose records at or below floor the pass deletes (invariant 5:
 * its floor once the batch is written). */
typedef struct {
    uint64_t page_no, floor;
} gc_floor;

typedef struct {
    gc_floor *f;
    size_t n, cap;
} gc_floors;

static int gc_floor_add(gc_floors *fl, uint64_t page_no, uint64_t floor)
{
    if (fl->n == fl->cap) {
        size_t cap = fl->cap ? 2 * fl->cap : 256;
        gc_floor *nf = realloc(fl->f, cap * sizeof *nf);
        if (nf == NULL)
            return HX_ERR_NOMEM;
        fl->f = nf;
        fl->cap = cap;
    }
    fl->f[fl->n++] = (gc_floor){page_no, floor};
    return HX_OK;
}

/* Queues the deletion of every record of page_no at or below base (with
 * its index and CPL keys), walking the page index with it (one iterator
 * for the whole pass) from above the page's GC floor. The index value
 * gives each record's flags and size, so no record is read back. *floor
 * becomes what the page's floor may be once the deletions are written. */
static int gc_records(segment *g, rocksdb_iterator_t *it, uint64_t page_no,
                      uint64_t base, const uint64_t keep[2], gc_deletes *d,
                      uint64_t *floor, uint64_t *records, uint64_t *bytes,
                      segment_store_why *why)
{
    uint8_t k[KEY_MAX_LEN];
    uint64_t from = g->piles ? page_piles_gc_floor(g->piles, page_no) : 0;
    size_t kl = key_page(k, g->vol, g->pg, page_no, from + 1);
    const uint8_t *ik;
    size_t ikl;
    int rc = HX_OK;
    *floor = base;
    /* Nothing new below the base: no seek, which from a page without live
     * index entries above it would walk on over the next page's tombstones
     * (most pages, most passes). */
    if (from >= base) {
        *floor = from;
        return HX_OK;
    }
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         rc == HX_OK && iter_prefix(it, k, KEY_PAGE_PREFIX_LEN, &ik, &ikl);
         rocksdb_iter_next(it)) {
        if (ikl != KEY_PAGE_LEN)
            continue;
        uint64_t lsn = get_be64(ik + 17);
        if (lsn > base)
            break;
        if (lsn == keep[0] || lsn == keep[1]) {
            if (lsn - 1 < *floor)
                *floor = lsn - 1;
            continue;
        }
        size_t vl = 0;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        uint32_t flags = index_value_flags(v, vl);
        *bytes += index_value_len(v, vl);
        uint8_t rk[KEY_MAX_LEN];
        rc = gc_delete(d, ik, ikl);
        if (rc == HX_OK)
            rc = gc_delete(d, rk, key_lsn(rk, KEY_RECORD, g->vol, g->pg, lsn));
        /* An entry without flags (unreadable) may be a CPL record's. */
        if (rc == HX_OK && (vl < 4 || (flags & HX_RECORD_CPL)))
            rc = gc_delete(d, rk, key_lsn(rk, KEY_CPL, g->vol, g->pg, lsn));
        (*records)++;
    }
    if (rc != HX_OK) {
        why_set(why, "out of memory listing records to collect");
        return rc;
    }
    return iter_status(it, why, "records to collect");
}

/* One segment, from its cursor, up to *budget pages. */
static int gc_segment(segment_store *s, segment *g, uint64_t now_ms,
                      size_t *budget, segment_store_why *why)
{
    uint64_t old_gc = g->gc_lsn;
    if (g->gc_cand_ms == 0 || now_ms - g->gc_cand_ms >= s->retention_ms) {
        uint64_t target = g->gc_cand_ms == 0 ? 0 : g->gc_cand_lsn;
        g->gc_cand_lsn = g->min_read_lsn;
        g->gc_cand_ms = now_ms;
        if (target > g->coalesced_lsn)
            target = g->coalesced_lsn;
        if (target > g->gc_lsn)
            g->gc_lsn = target; /* persisted below, with the deletions */
    }
    uint32_t page_size = 0;
    uint64_t pg_pages = 0;
    if (g->gc_lsn == 0 || !seg_geometry(s, g, &page_size, &pg_pages)) {
        g->gc_lsn = old_gc;
        return HX_OK;
    }

    uint64_t keep[2] = {0, 0}; /* invariant 4 */
    int rc = newest_le(s, KEY_RECORD, g->vol, g->pg, g->gc_lsn, &keep[0], why);
    if (rc == HX_OK)
        rc = newest_le(s, KEY_CPL, g->vol, g->pg, g->gc_lsn, &keep[1], why);
    if (rc != HX_OK) {
        g->gc_lsn = old_gc;
        return rc;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    gc_deletes d = {0};
    gc_floors floors = {0};
    uint64_t versions = 0, records = 0, bytes = 0;
    uint8_t k[KEY_MAX_LEN];
    key_page_tag(k, KEY_VERSION, g->vol, g->pg, g->gc_cursor, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    rocksdb_iterator_t *iit = rocksdb_create_iterator(s->db, s->ropts);
    rocksdb_iter_seek(it, (const char *)k, KEY_PAGE_LEN);
    const uint8_t *ik;
    size_t ikl;
    bool wrapped = true;
    while (rc == HX_OK && iter_prefix(it, k, 9, &ik, &ikl)) {
        if (*budget == 0) {
            wrapped = false;
            break;
        }
        if (ikl != KEY_PAGE_LEN) {
            rocksdb_iter_next(it);
            continue;
        }
        uint64_t page_no = get_be64(ik + 9);
        /* The page's versions at or below gc_lsn, ascending: each is
         * deleted once a newer one at or below gc_lsn follows it. */
        uint8_t prev[KEY_MAX_LEN];
        size_t prev_vl = 0;
        uint64_t base = 0;
        for (; rc == HX_OK && iter_prefix(it, k, 9, &ik, &ikl) &&
               ikl == KEY_PAGE_LEN && get_be64(ik + 9) == page_no;
             rocksdb_iter_next(it)) {
            uint64_t lsn = get_be64(ik + 17);
            if (lsn > g->gc_lsn)
                continue;
            if (base != 0) {
                rc = gc_delete(&d, prev, KEY_PAGE_LEN);
                versions++;
                bytes += prev_vl;
            }
            memcpy(prev, ik, KEY_PAGE_LEN);
            rocksdb_iter_value(it, &prev_vl);
            base = lsn;
        }
        if (rc != HX_OK)
            why_set(why, "out of memory listing page versions to collect");
        else if (base != 0) {
            uint64_t floor = 0;
            rc = gc_records(g, iit, page_no, base, keep, &d, &floor, &records,
                            &bytes, why);
            if (rc == HX_OK && gc_floor_add(&floors, page_no, floor) != HX_OK) {
                rc = HX_ERR_NOMEM;
                why_set(why, "out of memory listing pages collected");
            }
        }
        (*budget)--;
        g->gc_cursor = page_no + 1;
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "page versions to collect");
    rocksdb_iter_destroy(iit);
    rocksdb_iter_destroy(it);
    if (wrapped)
        g->gc_cursor = 0;
    gc_deletes_put(s, &d, wb);
    free(d.keys);

    uint64_t old_records = g->records;
    if (rc == HX_OK && (records + versions > 0 || g->gc_lsn != old_gc)) {
        bg_meta_put(wb, g);
        /* The record count goes with the deletions (segment_store.c
         * invariant 7). */
        g->records = g->records >= records ? g->records - records : 0;
        if (records > 0)
            rc = put_segment_meta(wb, g);
        if (rc == HX_OK)
            rc = store_write(s, wb, "a garbage collection", why);
    }
    rocksdb_writebatch_destroy(wb);
    if (rc != HX_OK) {
        g->gc_lsn = old_gc; /* memory follows disk */
        g->records = old_records;
        free(floors.f);
        return rc;
    }
    /* Invariant 5: the deletions are written. */
    if (g->piles == NULL)
        g->piles = page_piles_new(); /* NULL: every floor stays unknown */
    for (size_t i = 0; g->piles != NULL && i < floors.n; i++)
        page_piles_set_gc_floor(g->piles, floors.f[i].page_no,
                                floors.f[i].floor);
    free(floors.f);
    s->counters.gc_records_removed += records;
    s->counters.gc_page_versions_removed += versions;
    s->counters.gc_bytes_removed += bytes;
    s->gc_bytes_since_compact += bytes;
    if (records + versions > 0)
        HX_DEBUG("segment %u/%u: collected %" PRIu64 " record(s), %" PRIu64
                 " page version(s), %" PRIu64 " bytes below %" PRIu64, g->vol,
                 g->pg, records, versions, bytes, g->gc_lsn);
    return HX_OK;
}

static uint64_t compact_after_bytes(segment_store *s)
{
    uint64_t live = 0, part;
    rocksdb_column_family_handle_t *cfs[2] = {s->cf_main, s->cf_records};
    for (size_t i = 0; i < 2; i++)
        if (rocksdb_property_int_cf(s->db, cfs[i],
                                    "rocksdb.estimate-live-data-size",
                                    &part) == 0)
            live += part;
    live /= GC_COMPACT_LIVE_FRACTION;
    return live > GC_COMPACT_AFTER_BYTES ? live : GC_COMPACT_AFTER_BYTES;
}

int segment_store_gc(segment_store *s, uint64_t now_ms, size_t max_pages,
                     segment_store_why *why)
{
    if (s->n_staged > 0) {
        why_set(why, "appends are staged; flush first");
        return HX_ERR_BUSY;
    }
    int rc = HX_OK;
    size_t budget = max_pages;
    uint64_t before = s->gc_bytes_since_compact;
    /* Not an unverified chain: a GC point above a lost record would hide
     * it from the scrub (segment_verify.c invariant 2). */
    for (size_t i = 0; rc == HX_OK && i < s->n_segs; i++)
        if (!s->segs[i]->chain_unverified)
            rc = gc_segment(s, s->segs[i], now_ms, &budget, why);
    s->counters.gc_passes++;
    bool burst_over =
        s->gc_bytes_since_compact >= GC_COMPACT_BURST_MIN_BYTES &&
        s->gc_bytes_since_compact == before;
    if (rc == HX_OK && (burst_over || s->gc_bytes_since_compact >=
                                          compact_after_bytes(s)))
        compact_in_background(s);
    return rc;
}
