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
#include "segment_store_internal.h"

/* Bytes deleted after which the GC compacts the store, so that disk use
 * follows under a steady load; it also compacts once a burst of deletions
 * is over (a pass that finds nothing more to delete). Between two,
 * RocksDB's own compaction (and its deletion-triggered one, set at open)
 * reclaims space as it goes. GC's compaction runs on a thread of its own,
 * one at a time (RocksDB takes writes and reads meanwhile): on the event
 * loop it stopped appends for as long as it rewrote the live data, and
 * the members of a PG collect, and so compact, at about the same time.
 * segment_store_close cancels and joins it. */
#define GC_COMPACT_AFTER_BYTES (32u << 20)
#define GC_COMPACT_BURST_MIN_BYTES (1u << 20)

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
    rocksdb_compact_range_opt(s->db, o, NULL, 0, NULL, 0);
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

/* Stored size of key k (0 when absent or unreadable). */
static size_t value_len(segment_store *s, const uint8_t *k, size_t kl)
{
    char *val = NULL;
    size_t vl = 0;
    if (db_get(s, k, kl, &val, &vl, NULL) != HX_OK || val == NULL)
        return 0;
    rocksdb_free(val);
    return vl;
}

/* Puts into wb the deletion of every record of page_no at or below base
 * (with its index and CPL keys). */
static int gc_records(segment_store *s, rocksdb_writebatch_t *wb, segment *g,
                      uint64_t page_no, uint64_t base, const uint64_t keep[2],
                      uint64_t *records, uint64_t *bytes,
                      segment_store_why *why)
{
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_page(k, g->vol, g->pg, page_no, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    const uint8_t *ik;
    size_t ikl;
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         iter_prefix(it, k, KEY_PAGE_PREFIX_LEN, &ik, &ikl);
         rocksdb_iter_next(it)) {
        if (ikl != KEY_PAGE_LEN)
            continue;
        uint64_t lsn = get_be64(ik + 17);
        if (lsn > base)
            break;
        if (lsn == keep[0] || lsn == keep[1])
            continue;
        uint8_t rk[KEY_MAX_LEN];
        size_t rkl = key_lsn(rk, KEY_RECORD, g->vol, g->pg, lsn);
        *bytes += value_len(s, rk, rkl);
        rocksdb_writebatch_delete(wb, (const char *)rk, rkl);
        rocksdb_writebatch_delete(wb, (const char *)ik, ikl);
        rkl = key_lsn(rk, KEY_CPL, g->vol, g->pg, lsn);
        rocksdb_writebatch_delete(wb, (const char *)rk, rkl);
        (*records)++;
    }
    int rc = iter_status(it, why, "records to collect");
    rocksdb_iter_destroy(it);
    return rc;
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
    uint64_t versions = 0, records = 0, bytes = 0;
    uint8_t k[KEY_MAX_LEN];
    key_page_tag(k, KEY_VERSION, g->vol, g->pg, g->gc_cursor, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
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
        for (; iter_prefix(it, k, 9, &ik, &ikl) && ikl == KEY_PAGE_LEN &&
               get_be64(ik + 9) == page_no;
             rocksdb_iter_next(it)) {
            uint64_t lsn = get_be64(ik + 17);
            if (lsn > g->gc_lsn)
                continue;
            if (base != 0) {
                rocksdb_writebatch_delete(wb, (const char *)prev,
                                          KEY_PAGE_LEN);
                versions++;
                bytes += prev_vl;
            }
            memcpy(prev, ik, KEY_PAGE_LEN);
            rocksdb_iter_value(it, &prev_vl);
            base = lsn;
        }
        if (base != 0)
            rc = gc_records(s, wb, g, page_no, base, keep, &records, &bytes,
                            why);
        (*budget)--;
        g->gc_cursor = page_no + 1;
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "page versions to collect");
    rocksdb_iter_destroy(it);
    if (wrapped)
        g->gc_cursor = 0;

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
        return rc;
    }
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
    if (rc == HX_OK && (burst_over ||
                        s->gc_bytes_since_compact >= GC_COMPACT_AFTER_BYTES))
        compact_in_background(s);
    return rc;
}
