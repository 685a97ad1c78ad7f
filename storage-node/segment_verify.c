/* The chain check after an unclean stop (DESIGN.md "Corruption";
 * segment_missing.c).
 *
 * A crash is when a write gets lost: a batch the journal let go before
 * RocksDB held it (the checkpoint race of segment_checkpoint.c), or a
 * disk that acknowledged and dropped it. Its segment's persisted SCL,
 * carried by a later batch, still claims the record, and a GetPage would
 * apply every record of the page but that one. The scrub finds such a
 * hole (segment_missing.c), but only once it gets there, which on a large
 * store at the idle scrub rate is a long time to serve wrong pages.
 *
 * So a store knows whether its previous run stopped cleanly: the key
 * 'x' (empty value) is written by segment_store_close, after everything
 * else and before the final checkpoint, and removed by the next open
 * before anything else is written. Its absence at open means a crash
 * (or a store written before the mark existed, or one closed before its
 * check finished: both are checked again). The journal alone cannot tell:
 * a crash right after a checkpoint leaves nothing to replay, and a clean
 * close that follows an unfinished check leaves nothing either.
 *
 * States of a segment: VERIFIED (created in this run, or loaded after a
 * clean close) and UNVERIFIED (loaded without the mark) -> VERIFIED once
 * the scrub's record walk went past its records (verify_reached,
 * verify_pass_end). The first pass of a store walks the records only
 * (segment_scrub.c), and the storage node runs it back to back right
 * after start (storage_background.c), so a segment is verified as soon as
 * its own records were walked, whatever the size of the others.
 *
 * Invariants:
 *  1. GetPage refuses an unverified segment (HX_ERR_NOT_COMPLETE: the
 *     writer reads another member), and SegmentInfo marks it
 *     (chain_unverified, as it marks a segment with a record known
 *     missing: a recovering writer counts the member as unreachable,
 *     compute-node/volume_open.c). Appends, gossip, truncation and
 *     repair go on as usual.
 *  2. Nothing is derived from an unverified chain nor collected from it:
 *     coalescing and GC skip the segment, since a page version built
 *     without a lost record, or a GC point above it, would hide the hole
 *     from the walk (missing_check ignores what lies below the GC point).
 *  3. A segment is verified only by a pass that walked its records from
 *     the first: each pass starts at the start of the keys, and a pass
 *     that ends on a read error settles nothing.
 *  4. The mark is written only when no segment is unverified and none is
 *     known to miss a record, so a clean close never hides a hole the
 *     next start should look for. A failed reload (segment_store.c
 *     seg_reload) keeps the segment's state.
 *
 * Every segment the walk passes, verified or not, also has its tip
 * checked (missing_check_tip): the record at the SCL is the one record of
 * the chain that no later record links to.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "hx_err.h"
#include "log.h"
#include "segment_store_internal.h"

static const uint8_t clean_key[1] = {KEY_CLEAN};

int verify_open(segment_store *s, segment_store_why *why)
{
    char *val = NULL;
    size_t vl = 0;
    int rc = db_get(s, clean_key, sizeof clean_key, &val, &vl, why);
    if (rc != HX_OK)
        return rc;
    bool clean = val != NULL;
    rocksdb_free(val);
    if (clean) {
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rocksdb_writebatch_delete(wb, (const char *)clean_key,
                                  sizeof clean_key);
        rc = store_write(s, wb, "the removal of the clean-close mark", why);
        rocksdb_writebatch_destroy(wb);
        return rc;
    }
    for (size_t i = 0; i < s->n_segs; i++)
        s->segs[i]->chain_unverified = true;
    s->verify_active = s->n_segs > 0;
    if (s->verify_active)
        HX_INFO("segment store %s: the previous run did not close cleanly "
                "(or closed before its chains were checked): %zu "
                "segment(s) refuse reads until the scrub has walked their "
                "records", s->path, s->n_segs);
    return HX_OK;
}

void verify_close(segment_store *s)
{
    if (!s->open_done)
        return;
    size_t unverified = 0, missing = 0;
    for (size_t i = 0; i < s->n_segs; i++) {
        unverified += s->segs[i]->chain_unverified;
        missing += s->segs[i]->missing_lsn != 0;
    }
    if (unverified + missing > 0) {
        HX_INFO("segment store %s: closed with %zu segment(s) unverified "
                "and %zu missing a record; the next start checks every "
                "chain", s->path, unverified, missing);
        return;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)clean_key, sizeof clean_key,
                           "", 0);
    segment_store_why why = {0};
    if (store_write(s, wb, "the clean-close mark", &why) != HX_OK)
        HX_WARN("segment store %s: no clean-close mark (%s); the next "
                "start checks every chain", s->path, why.msg);
    rocksdb_writebatch_destroy(wb);
}

size_t segment_store_segments_unverified(const segment_store *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n_segs; i++)
        n += s->segs[i]->chain_unverified;
    return n;
}

uint64_t segment_store_verify_records(const segment_store *s)
{
    return s->verify_records;
}

/* ---- the scrub's record walk ------------------------------------------ */

/* Segments [lo, hi) were walked whole. */
static void settle(segment_store *s, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        segment *g = s->segs[i];
        missing_check_tip(s, g);
        g->chain_unverified = false;
    }
}

static size_t walk_lower(const segment_store *s)
{
    return s->walk_started ? seg_lower(s, s->walk_vol, s->walk_pg) : 0;
}

void verify_pass_start(segment_store *s)
{
    s->walk_started = false;
}

void verify_reached(segment_store *s, uint32_t vol, uint32_t pg)
{
    if (s->verify_active)
        s->verify_records++;
    if (s->walk_started && s->walk_vol == vol && s->walk_pg == pg)
        return;
    settle(s, walk_lower(s), seg_lower(s, vol, pg));
    s->walk_vol = vol;
    s->walk_pg = pg;
    s->walk_started = true;
}

void verify_pass_end(segment_store *s)
{
    settle(s, walk_lower(s), s->n_segs);
    s->walk_started = false;
    s->verify_active = false;
}
