/* Records missing below the SCL: found by the scrub, refused to readers,
 * refetched from a peer (DESIGN.md "Corruption").
 *
 * A segment's SCL says every record of its chain at or below it is stored.
 * A lost write breaks that silently: the batch is gone, and a later batch
 * (its segment metadata) persisted an SCL above it. It happened once
 * through a journal checkpoint that released a batch RocksDB had not yet
 * taken (segment_checkpoint.c); a disk that drops a write would do the
 * same. A GetPage then applies every record of the page but that one, and
 * the page comes back wrong with no checksum to say so.
 *
 * Invariants:
 *  1. The scrub walks records in key order, so within a segment each
 *     record's prev_lsn is normally the record seen just before it; any
 *     other prev_lsn is looked up. A record at or below the SCL whose
 *     predecessor is above the GC point and not stored makes that
 *     predecessor missing. (Records at or below the GC point may be
 *     collected; records above the SCL may wait for gossip; truncated
 *     ranges are never linked across: the new writer links below them.)
 *     The record at the SCL, which nothing links to, is looked up once
 *     the walk has passed its segment (missing_check_tip): a lost batch
 *     may have been the segment's last.
 *  2. From the moment a record is found missing until it is written back,
 *     GetPage refuses read points at or above it (HX_ERR_NOT_COMPLETE: the
 *     writer reads another member), since any page may be the one it
 *     patches.
 *  3. A repair writes the peer's verified copy with its index keys and
 *     drops the page's versions at or above it, which coalescing built
 *     without it, in one synced write. The record's own predecessor is
 *     checked in turn: a lost batch may have held several records of the
 *     segment. So is that of a corrupt record once a peer's copy replaced
 *     it (missing_check_repaired): the scrub could not read its link.
 *  4. The segment's record count is left alone: it counted the record
 *     when its batch was applied (segment_store.c invariant 7).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "log.h"
#include "page_piles.h"
#include "record.h"
#include "segment_store_internal.h"

static bool record_stored(segment_store *s, uint32_t vol, uint32_t pg,
                          uint64_t lsn)
{
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, vol, pg, lsn);
    char *val = NULL;
    size_t vl = 0;
    /* A failed read says nothing: count the record as stored. */
    if (db_get(s, k, kl, &val, &vl, NULL) != HX_OK)
        return true;
    bool found = val != NULL;
    rocksdb_free(val);
    return found;
}

/* Invariant 2: the lowest missing record the segment still wants. */
static void missing_recompute(segment_store *s, segment *g)
{
    g->missing_lsn = 0;
    for (size_t i = 0; i < s->n_repairs; i++) {
        const repair_want *w = &s->repairs[i];
        if (w->kind == SEGMENT_STORE_REPAIR_MISSING && w->vol == g->vol &&
            w->pg == g->pg && (g->missing_lsn == 0 || w->lsn < g->missing_lsn))
            g->missing_lsn = w->lsn;
    }
}

/* Queues record lsn of g, found missing, and refuses reads from it on
 * (invariant 2). linked_from: the record that links to it, 0 for the
 * record at the SCL. */
static void missing_found(segment_store *s, segment *g, uint64_t lsn,
                          uint64_t linked_from)
{
    size_t before = s->n_repairs;
    repair_want_add(s, SEGMENT_STORE_REPAIR_MISSING, g->vol, g->pg, 0, lsn);
    if (g->missing_lsn == 0 || lsn < g->missing_lsn)
        g->missing_lsn = lsn;
    if (s->n_repairs == before)
        return;
    if (linked_from != 0)
        HX_ERROR("segment %u/%u: record %" PRIu64 " is missing though the "
                 "SCL %" PRIu64 " covers it (record %" PRIu64 " links to "
                 "it); reads at or above it are refused until a peer's "
                 "copy is written back", g->vol, g->pg, lsn,
                 hx_chain_scl(g->chain), linked_from);
    else
        HX_ERROR("segment %u/%u: record %" PRIu64 ", the SCL, is missing; "
                 "reads at or above it are refused until a peer's copy is "
                 "written back", g->vol, g->pg, lsn);
}

/* Checks that r's predecessor is stored (invariant 1); queues it if not. */
static void missing_check_prev(segment_store *s, segment *g,
                               const Hexad__Record *r, bool just_seen)
{
    if (r->prev_lsn == 0 || r->prev_lsn <= g->gc_lsn ||
        r->lsn > hx_chain_scl(g->chain) || just_seen ||
        record_stored(s, g->vol, g->pg, r->prev_lsn))
        return;
    missing_found(s, g, r->prev_lsn, r->lsn);
}

void missing_check_repaired(segment_store *s, uint32_t vol, uint32_t pg,
                            const Hexad__Record *r)
{
    segment *g = seg_find(s, vol, pg);
    if (g != NULL)
        missing_check_prev(s, g, r, false);
}

void missing_check_tip(segment_store *s, segment *g)
{
    uint64_t scl = hx_chain_scl(g->chain);
    if (scl == 0 || scl <= g->gc_lsn || record_stored(s, g->vol, g->pg, scl))
        return;
    missing_found(s, g, scl, 0);
}

void missing_check(segment_store *s, const uint8_t *k, const Hexad__Record *r)
{
    uint32_t vol = get_be32(k + 1), pg = get_be32(k + 5);
    segment *g = seg_find(s, vol, pg);
    bool same = s->scrub_vol == vol && s->scrub_pg == pg;
    if (g != NULL)
        missing_check_prev(s, g, r, same && r->prev_lsn == s->scrub_lsn);
    s->scrub_vol = vol;
    s->scrub_pg = pg;
    s->scrub_lsn = r->lsn;
}

/* Puts into wb the deletion of page_no's versions at or above lsn. */
static int drop_versions_from(segment_store *s, rocksdb_writebatch_t *wb,
                              const segment *g, uint64_t page_no,
                              uint64_t lsn, segment_store_why *why)
{
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_page_tag(k, KEY_VERSION, g->vol, g->pg, page_no, lsn);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    const uint8_t *ik;
    size_t ikl;
    /* The page's prefix: tag, vol, pg, page_no. */
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         iter_prefix(it, k, KEY_PAGE_LEN - 8, &ik, &ikl);
         rocksdb_iter_next(it))
        rocksdb_writebatch_delete(wb, (const char *)ik, ikl);
    int rc = iter_status(it, why, "page versions over a missing record");
    rocksdb_iter_destroy(it);
    return rc;
}

int missing_repair(segment_store *s, size_t i, const Hexad__Record *r,
                   segment_store_why *why)
{
    repair_want w = s->repairs[i];
    segment *g = seg_find(s, w.vol, w.pg);
    if (g == NULL || r->lsn != w.lsn ||
        record_stored(s, w.vol, w.pg, w.lsn)) {
        /* The segment went, or gossip or a truncation settled it. */
        repair_want_remove(s, i);
        if (g != NULL)
            missing_recompute(s, g);
        return HX_OK;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = put_record_keys(s, wb, w.vol, w.pg, r);
    if (rc == HX_OK)
        rc = drop_versions_from(s, wb, g, r->page_no, r->lsn, why);
    if (rc == HX_OK)
        rc = store_write(s, wb, "a missing record", why);
    rocksdb_writebatch_destroy(wb);
    if (rc != HX_OK)
        return rc;
    repair_want_remove(s, i);
    s->counters.repairs++;
    if (g->piles != NULL) /* the page's pile now counts from older versions */
        page_piles_clear(g->piles);
    HX_INFO("segment %u/%u: missing record %" PRIu64 " (page %" PRIu64
            ") written back from a peer's copy", w.vol, w.pg, r->lsn,
            r->page_no);
    missing_recompute(s, g);
    missing_check_prev(s, g, r, false);
    return HX_OK;
}

void missing_truncated(segment_store *s, segment *g, uint64_t from,
                       uint64_t to)
{
    for (size_t i = 0; i < s->n_repairs;) {
        const repair_want *w = &s->repairs[i];
        if (w->kind == SEGMENT_STORE_REPAIR_MISSING && w->vol == g->vol &&
            w->pg == g->pg && w->lsn >= from && w->lsn <= to)
            repair_want_remove(s, i);
        else
            i++;
    }
    missing_recompute(s, g);
}
