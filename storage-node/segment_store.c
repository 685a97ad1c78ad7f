/* The segment store: the segments of many PGs of many volumes in one
 * RocksDB database (DESIGN.md "Storage node", "The write path").
 *
 * NOTES ON THE DESIGN OF THE SEGMENT STORE
 *
 * Key layout. Integers are big-endian, so RocksDB's bytewise order is the
 * numeric order and "newest X <= n" is one reverse seek:
 *
 *   'v' vol(u32)                          -> VolumeMeta (epoch, geometry)
 *   's' vol pg(u32)                       -> SegmentMeta (members,
 *                                            membership_epoch, scl, scl_cpl,
 *                                            geometry)
 *   'r' vol pg lsn(u64)                   -> Record, packed as received (it
 *                                            carries its own checksum)
 *   'p' vol pg page_no(u64) lsn(u64)      -> record flags (u32), packed
 *                                            length (u32): the records of one
 *                                            page, with IMAGE visible without
 *                                            reading the record
 *   'c' vol pg lsn                        -> empty: the CPL records
 *   'g' vol pg page_no lsn                -> page version: checksum, image
 *                                            (segment_coalesce.c)
 *   'b' vol pg                            -> coalesced_lsn, gc_lsn
 *   't' vol pg from(u64)                  -> to, epoch: a truncation range
 *                                            (segment_truncations.c)
 *   'x'                                   -> empty: the store was closed
 *                                            cleanly (segment_verify.c)
 *
 * The 'r' keys live in RocksDB column family "records", every other key
 * in "default" (segment_families.c; why: segment_store_internal.h).
 *
 * The background work lives in its own files, over the structs of
 * segment_store_internal.h: coalescing (segment_coalesce.c), garbage
 * collection (segment_gc.c), scrubbing and repair (segment_scrub.c,
 * segment_missing.c), the chain check after an unclean stop
 * (segment_verify.c).
 *
 * In memory: one `volume` per 'v' key and one `segment` per 's' key, each
 * segment with its hx_chain (common/chain.h) and a count of its records.
 *
 * Invariants:
 *  1. An append is acknowledged (its result reported by
 *     segment_store_flush()) only after the synced write (journal, then
 *     RocksDB: invariant 8) that holds its records returned.
 *  2. The in-memory state never runs ahead of disk where anyone can see
 *     it: a batch is applied to memory and written by the same
 *     segment_store_flush() call, with nothing else running in between; if
 *     the write fails, every volume and segment the batch touched is
 *     reloaded from RocksDB before the call returns.
 *  3. A segment's scl/scl_cpl are persisted in the same batch as the
 *     records they cover, so after a crash the 's' value never claims a
 *     record that is not stored.
 *  4. The 'p' and 'c' keys of a record are written and deleted in the same
 *     batch as its 'r' key.
 *  5. chain(segment) == chain rebuilt from (persisted scl, scl_cpl) plus
 *     every stored record above scl; open and reload rebuild it so.
 *  6. Every record and page version read back is checksum-verified before
 *     it touches a page; a corrupt one is counted and queued for repair.
 *  7. The 's' value's `records` is the number of 'r' keys of the segment:
 *     every batch that adds or deletes records (appends, truncation, GC)
 *     puts the segment's metadata too, so open reads the count and walks
 *     only the records above scl.
 *  8. Every batch is synced to the write-ahead journal before RocksDB
 *     applies it, without RocksDB's WAL; journal entries are dropped only
 *     once RocksDB has flushed them (segment_checkpoint.c). So a synced
 *     write survives a crash exactly as a synced RocksDB write did, and
 *     its fdatasync overwrites a written ring (segment_journal.h).
 *  9. After an unclean stop no segment loaded at open serves a page until
 *     the scrub has walked its records and found every record its SCL
 *     claims, or refuses reads over the ones it lacks (segment_verify.c,
 *     segment_missing.c): a crash is when a write gets lost.
 *
 * States of an append: STAGED (copied by segment_store_stage_append(),
 * stateless checks done) -> APPLIED (segment_store_flush(): stateful checks
 * in arrival order, memory updated, keys put into the batch) -> DURABLE
 * (the synced write returned; result reported) or FAILED (write error:
 * result reports it, memory reloaded). A refused append goes from STAGED
 * straight to a reported error and touches nothing.
 *
 * A write error is not sticky here: RocksDB itself turns read-only after a
 * background error and keeps failing writes, and a full disk may recover;
 * reads keep being served either way.
 */
#include "segment_store.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <rocksdb/c.h>

#include "chain.h"
#include "config.h"
#include "hx_err.h"
#include "log.h"
#include "quorum.h"
#include "record.h"

#include "segment_journal.h"
#include "segment_store_internal.h"

void why_set(segment_store_why *why, const char *fmt, ...)
{
    if (why == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof why->msg, fmt, ap);
    va_end(ap);
}

/* RocksDB's reason -> hx code. The message is logged by the caller. */
int rocks_err(const char *msg)
{
    return strstr(msg, "No space") ? HX_ERR_NO_SPACE : HX_ERR_IO;
}

/* ---- volumes ---------------------------------------------------------- */

static size_t vol_lower(const segment_store *s, uint32_t vol)
{
    size_t lo = 0, hi = s->n_vols;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->vols[mid]->vol < vol)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

volume *vol_find(const segment_store *s, uint32_t vol)
{
    size_t i = vol_lower(s, vol);
    return i < s->n_vols && s->vols[i]->vol == vol ? s->vols[i] : NULL;
}

/* Inserts v (owned from now on). */
static int vol_insert(segment_store *s, volume *v)
{
    if (s->n_vols == s->cap_vols) {
        size_t ncap = s->cap_vols ? s->cap_vols * 2 : 8;
        volume **nv = realloc(s->vols, ncap * sizeof *nv);
        if (nv == NULL)
            return HX_ERR_NOMEM;
        s->vols = nv;
        s->cap_vols = ncap;
    }
    size_t i = vol_lower(s, v->vol);
    memmove(&s->vols[i + 1], &s->vols[i], (s->n_vols - i) * sizeof *s->vols);
    s->vols[i] = v;
    s->n_vols++;
    return HX_OK;
}

static void vol_remove(segment_store *s, uint32_t vol)
{
    size_t i = vol_lower(s, vol);
    if (i == s->n_vols || s->vols[i]->vol != vol)
        return;
    free(s->vols[i]);
    memmove(&s->vols[i], &s->vols[i + 1],
            (s->n_vols - i - 1) * sizeof *s->vols);
    s->n_vols--;
}

/* ---- segments --------------------------------------------------------- */

static int seg_cmp(const segment *g, uint32_t vol, uint32_t pg)
{
    if (g->vol != vol)
        return g->vol < vol ? -1 : 1;
    if (g->pg != pg)
        return g->pg < pg ? -1 : 1;
    return 0;
}

size_t seg_lower(const segment_store *s, uint32_t vol, uint32_t pg)
{
    size_t lo = 0, hi = s->n_segs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg_cmp(s->segs[mid], vol, pg) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

segment *seg_find(const segment_store *s, uint32_t vol, uint32_t pg)
{
    size_t i = seg_lower(s, vol, pg);
    return i < s->n_segs && seg_cmp(s->segs[i], vol, pg) == 0 ? s->segs[i]
                                                               : NULL;
}

static void seg_destroy(segment *g)
{
    if (g == NULL)
        return;
    hx_chain_destroy(g->chain);
    page_piles_free(g->piles);
    free(g->trunc);
    free(g);
}

static int seg_insert(segment_store *s, segment *g)
{
    if (s->n_segs >= SEGMENT_STORE_SEGMENTS_MAX)
        return HX_ERR_TOO_BIG;
    if (s->n_segs == s->cap_segs) {
        size_t ncap = s->cap_segs ? s->cap_segs * 2 : 16;
        segment **ns = realloc(s->segs, ncap * sizeof *ns);
        if (ns == NULL)
            return HX_ERR_NOMEM;
        s->segs = ns;
        s->cap_segs = ncap;
    }
    size_t i = seg_lower(s, g->vol, g->pg);
    memmove(&s->segs[i + 1], &s->segs[i], (s->n_segs - i) * sizeof *s->segs);
    s->segs[i] = g;
    s->n_segs++;
    return HX_OK;
}

/* Takes the segment out of the table without destroying it. */
static void seg_unlink(segment_store *s, uint32_t vol, uint32_t pg)
{
    size_t i = seg_lower(s, vol, pg);
    if (i == s->n_segs || seg_cmp(s->segs[i], vol, pg) != 0)
        return;
    memmove(&s->segs[i], &s->segs[i + 1],
            (s->n_segs - i - 1) * sizeof *s->segs);
    s->n_segs--;
}

/* Geometry of a segment, falling back to its volume's. */
bool seg_geometry(const segment_store *s, const segment *g,
                  uint32_t *page_size, uint64_t *pg_pages)
{
    if (g->page_size != 0) {
        *page_size = g->page_size;
        *pg_pages = g->pg_pages;
        return true;
    }
    const volume *v = vol_find(s, g->vol);
    if (v != NULL && v->page_size != 0) {
        *page_size = v->page_size;
        *pg_pages = v->pg_pages;
        return true;
    }
    return false;
}

static bool geometry_ok(uint32_t page_size, uint64_t pg_pages)
{
    return page_size >= PAGE_SIZE_MIN && page_size <= PAGE_SIZE_MAX &&
           (page_size & (page_size - 1)) == 0 && pg_pages > 0;
}

/* Debug-build invariant checks of one segment (STYLE.md: after every
 * event). Cheap: no I/O. */
static void seg_check(const segment_store *s, const segment *g)
{
#ifndef NDEBUG
    size_t i = seg_lower(s, g->vol, g->pg);
    assert(i < s->n_segs && s->segs[i] == g);
    assert(i == 0 || seg_cmp(s->segs[i - 1], g->vol, g->pg) < 0);
    assert(i + 1 == s->n_segs || seg_cmp(s->segs[i + 1], g->vol, g->pg) > 0);
    assert(g->n_members == 0 || g->n_members == HX_PG_MEMBERS);
    assert(!g->in_batch);
    uint64_t scl = hx_chain_scl(g->chain);
    assert(hx_chain_scl_cpl(g->chain) <= scl);
    assert(hx_chain_max_lsn(g->chain) >= scl);
    assert(g->n_trunc <= g->cap_trunc);
    for (size_t j = 0; j < g->n_trunc; j++) {
        assert(g->trunc[j].from <= g->trunc[j].to);
        assert(j == 0 || g->trunc[j - 1].to < g->trunc[j].from);
    }
#else
    (void)s;
    (void)g;
#endif
}

/* ------------------------------------------------------------------------
 * Packing metadata.
 * ---------------------------------------------------------------------- */

static int put_volume_meta(rocksdb_writebatch_t *wb, const volume *v)
{
    Hexad__VolumeMeta m = HEXAD__VOLUME_META__INIT;
    Hexad__Geometry geo = HEXAD__GEOMETRY__INIT;
    m.epoch = v->epoch;
    if (v->page_size != 0) {
        geo.page_size = v->page_size;
        geo.pg_pages = v->pg_pages;
        m.geometry = &geo;
    }
    uint8_t buf[64];
    size_t len = hexad__volume_meta__get_packed_size(&m);
    if (len > sizeof buf)
        return HX_ERR_INVALID;
    hexad__volume_meta__pack(&m, buf);
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_volume(k, v->vol);
    rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)buf, len);
    return HX_OK;
}

int put_segment_meta(rocksdb_writebatch_t *wb, const segment *g)
{
    Hexad__SegmentMeta m = HEXAD__SEGMENT_META__INIT;
    Hexad__Geometry geo = HEXAD__GEOMETRY__INIT;
    char *members[HX_PG_MEMBERS];

    m.membership_epoch = g->membership_epoch;
    for (size_t i = 0; i < g->n_members; i++)
        members[i] = (char *)g->members[i];
    m.n_members = g->n_members;
    m.members = members;
    m.scl = hx_chain_scl(g->chain);
    m.scl_cpl = hx_chain_scl_cpl(g->chain);
    m.records = g->records;
    m.records_counted = true;
    /* Truncation ranges live in 't' keys (segment_truncations.c). */
    if (g->page_size != 0) {
        geo.page_size = g->page_size;
        geo.pg_pages = g->pg_pages;
        m.geometry = &geo;
    }
    size_t len = hexad__segment_meta__get_packed_size(&m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return HX_ERR_NOMEM;
    hexad__segment_meta__pack(&m, buf);
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_segment(k, g->vol, g->pg);
    rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)buf, len);
    free(buf);
    return HX_OK;
}

/* ------------------------------------------------------------------------
 * Loading (open, and reload after a failed write).
 * ---------------------------------------------------------------------- */

bool iter_prefix(rocksdb_iterator_t *it, const uint8_t *prefix,
                 size_t plen, const uint8_t **key, size_t *klen)
{
    if (!rocksdb_iter_valid(it))
        return false;
    size_t kl = 0;
    const char *k = rocksdb_iter_key(it, &kl);
    if (kl < plen || memcmp(k, prefix, plen) != 0)
        return false;
    *key = (const uint8_t *)k;
    *klen = kl;
    return true;
}

bool iter_lsn_upto(rocksdb_iterator_t *it, const uint8_t *seg_prefix,
                   uint64_t to, uint64_t *lsn)
{
    const uint8_t *k;
    size_t kl;
    for (; iter_prefix(it, seg_prefix, 9, &k, &kl); rocksdb_iter_next(it)) {
        if (kl != KEY_LSN_LEN)
            continue;
        *lsn = get_be64(k + 9);
        return *lsn <= to;
    }
    return false;
}

int iter_status(rocksdb_iterator_t *it, segment_store_why *why,
                const char *what)
{
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    if (err == NULL)
        return HX_OK;
    int rc = rocks_err(err);
    HX_ERROR("segment store: reading %s failed: %s", what, err);
    why_set(why, "reading %s failed: %s", what, err);
    rocksdb_free(err);
    return rc;
}

static int volume_from_meta(uint32_t vol, const char *val, size_t len,
                            volume **out)
{
    Hexad__VolumeMeta *m =
        hexad__volume_meta__unpack(NULL, len, (const uint8_t *)val);
    if (m == NULL)
        return HX_ERR_CHECKSUM;
    volume *v = calloc(1, sizeof *v);
    if (v == NULL) {
        hexad__volume_meta__free_unpacked(m, NULL);
        return HX_ERR_NOMEM;
    }
    v->vol = vol;
    v->epoch = m->epoch;
    if (m->geometry != NULL && geometry_ok(m->geometry->page_size,
                                           m->geometry->pg_pages)) {
        v->page_size = m->geometry->page_size;
        v->pg_pages = m->geometry->pg_pages;
    }
    hexad__volume_meta__free_unpacked(m, NULL);
    *out = v;
    return HX_OK;
}

/* Rebuilds a segment from its meta plus a scan of its records
 * (invariant 5). */
static int segment_from_meta(segment_store *s, uint32_t vol, uint32_t pg,
                             const char *val, size_t len, segment **out,
                             segment_store_why *why)
{
    Hexad__SegmentMeta *m =
        hexad__segment_meta__unpack(NULL, len, (const uint8_t *)val);
    if (m == NULL) {
        why_set(why, "segment %u/%u: metadata does not decode", vol, pg);
        return HX_ERR_CHECKSUM;
    }
    int rc = HX_OK;
    rocksdb_iterator_t *it = NULL;
    segment *g = calloc(1, sizeof *g);
    if (g == NULL) {
        rc = HX_ERR_NOMEM;
        goto fail;
    }
    g->vol = vol;
    g->pg = pg;
    g->membership_epoch = m->membership_epoch;
    if (m->n_members <= HX_PG_MEMBERS) {
        for (size_t i = 0; i < m->n_members; i++)
            snprintf(g->members[i], HX_ID_MAX, "%s", m->members[i]);
        g->n_members = m->n_members;
    }
    if (m->geometry != NULL &&
        geometry_ok(m->geometry->page_size, m->geometry->pg_pages)) {
        g->page_size = m->geometry->page_size;
        g->pg_pages = m->geometry->pg_pages;
    }
    /* Ranges in the metadata come from a store written before the 't'
     * keys; segment_store_open rewrites them as keys. */
    for (size_t i = 0; rc == HX_OK && i < m->n_truncations; i++) {
        const Hexad__LsnRange *r = m->truncations[i];
        if (r->from_lsn != 0 && r->from_lsn <= r->to_lsn)
            rc = trunc_add(g, r->from_lsn, r->to_lsn, r->epoch);
        g->trunc_legacy = true;
    }
    if (rc == HX_OK)
        rc = trunc_load(s, g, why);
    if (rc != HX_OK)
        goto fail;
    uint64_t scl = m->scl, scl_cpl = m->scl_cpl <= m->scl ? m->scl_cpl : 0;
    g->chain = hx_chain_create(scl, scl_cpl);
    if (g->chain == NULL) {
        rc = HX_ERR_NOMEM;
        goto fail;
    }

    /* The records above scl are fed to the chain. The metadata counts
     * every record (invariant 7); a store from before that count is
     * counted here, by a walk of all of them. */
    bool counted = m->records_counted;
    g->records = counted ? m->records : 0;
    uint8_t prefix[KEY_MAX_LEN];
    key_lsn(prefix, KEY_RECORD, vol, pg, counted ? scl + 1 : 0);
    it = store_iter(s, KEY_RECORD);
    rocksdb_iter_seek(it, (const char *)prefix, KEY_LSN_LEN);
    const uint8_t *k;
    size_t kl;
    for (; iter_prefix(it, prefix, 9, &k, &kl); rocksdb_iter_next(it)) {
        if (kl != KEY_LSN_LEN)
            continue;
        if (!counted)
            g->records++;
        uint64_t lsn = get_be64(k + 9);
        if (lsn <= scl)
            continue;
        size_t vl = 0;
        const char *v = rocksdb_iter_value(it, &vl);
        Hexad__Record *r = hexad__record__unpack(NULL, vl, (const uint8_t *)v);
        if (r == NULL || hx_record_verify(r) != HX_OK || r->lsn != lsn) {
            repair_want_add(s, SEGMENT_STORE_REPAIR_RECORD, vol, pg, 0, lsn);
            HX_ERROR("segment %u/%u: stored record %" PRIu64
                     " is corrupt; left out of the chain", vol, pg, lsn);
            if (r)
                hexad__record__free_unpacked(r, NULL);
            continue;
        }
        int ar = hx_chain_add(g->chain, r->lsn, r->prev_lsn,
                              (r->flags & HX_RECORD_CPL) != 0);
        if (ar < 0)
            HX_WARN("segment %u/%u: stored record %" PRIu64 " (prev %" PRIu64
                    ") does not fit the chain: %s", vol, pg, r->lsn,
                    r->prev_lsn, hx_strerror(ar));
        hexad__record__free_unpacked(r, NULL);
        if (ar == HX_ERR_NOMEM) {
            rc = ar;
            goto fail;
        }
    }
    rc = iter_status(it, why, "records");
    if (rc == HX_OK)
        rc = bg_meta_load(s, g, why);
    if (rc != HX_OK)
        goto fail;
    rocksdb_iter_destroy(it);
    hexad__segment_meta__free_unpacked(m, NULL);
    *out = g;
    return HX_OK;

fail:
    if (it)
        rocksdb_iter_destroy(it);
    seg_destroy(g);
    hexad__segment_meta__free_unpacked(m, NULL);
    if (rc == HX_ERR_NOMEM)
        why_set(why, "out of memory loading segment %u/%u", vol, pg);
    return rc;
}

/* Reads key into a malloc'd buffer (rocksdb_free it). *val NULL: absent. */
int db_get(segment_store *s, const uint8_t *k, size_t kl, char **val,
           size_t *vl, segment_store_why *why)
{
    char *err = NULL;
    *val = rocksdb_get_cf(s->db, s->ropts, store_cf(s, k[0]), (const char *)k,
                          kl, vl, &err);
    if (err != NULL) {
        int rc = rocks_err(err);
        HX_ERROR("segment store: read failed: %s", err);
        why_set(why, "read failed: %s", err);
        rocksdb_free(err);
        return rc;
    }
    return HX_OK;
}

/* A reload that cannot read back what disk holds leaves memory without
 * the object, and the next write would recreate it from scratch over its
 * metadata on disk (a fresh epoch, an empty chain): the process stops
 * instead, and a restart loads everything from disk. */
static void reload_failed(const segment_store *s, const char *what)
{
    HX_ERROR("segment store %s: %s cannot be read back after a failed "
             "write; stopping, so that a restart loads it from disk",
             s->path, what);
    abort();
}

/* Replaces the in-memory volume by what disk holds (or drops it when disk
 * has none). */
static void vol_reload(segment_store *s, uint32_t vol)
{
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_volume(k, vol);
    char *val = NULL;
    size_t vl = 0;
    vol_remove(s, vol);
    if (db_get(s, k, kl, &val, &vl, NULL) != HX_OK)
        reload_failed(s, "a volume's metadata");
    if (val == NULL)
        return;
    volume *v = NULL;
    if (volume_from_meta(vol, val, vl, &v) != HX_OK || vol_insert(s, v) != HX_OK)
        reload_failed(s, "a volume's metadata");
    rocksdb_free(val);
}

/* Replaces the in-memory segment by what disk holds (or drops it). What
 * only memory knows of its chain goes over: a record found missing, a
 * chain not verified yet (segment_verify.c invariant 4). */
static void seg_reload(segment_store *s, uint32_t vol, uint32_t pg)
{
    segment *old = seg_find(s, vol, pg);
    uint64_t missing_lsn = old ? old->missing_lsn : 0;
    bool unverified = old && old->chain_unverified;
    seg_unlink(s, vol, pg);
    seg_destroy(old);
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_segment(k, vol, pg);
    char *val = NULL;
    size_t vl = 0;
    if (db_get(s, k, kl, &val, &vl, NULL) != HX_OK)
        reload_failed(s, "a segment's metadata");
    if (val == NULL)
        return;
    segment *g = NULL;
    segment_store_why why = {0};
    if (segment_from_meta(s, vol, pg, val, vl, &g, &why) != HX_OK) {
        HX_ERROR("segment %u/%u cannot be reloaded: %s", vol, pg, why.msg);
        reload_failed(s, "a segment");
    }
    g->missing_lsn = missing_lsn;
    g->chain_unverified = unverified;
    if (seg_insert(s, g) != HX_OK)
        reload_failed(s, "a segment (out of memory)");
    rocksdb_free(val);
}

static int load_all(segment_store *s, segment_store_why *why)
{
    int rc = HX_OK;
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    const uint8_t *k;
    size_t kl;

    uint8_t vp[1] = {KEY_VOLUME};
    rocksdb_iter_seek(it, (const char *)vp, 1);
    for (; iter_prefix(it, vp, 1, &k, &kl); rocksdb_iter_next(it)) {
        if (kl != KEY_VOLUME_LEN)
            continue;
        size_t vl = 0;
        const char *val = rocksdb_iter_value(it, &vl);
        volume *v = NULL;
        rc = volume_from_meta(get_be32(k + 1), val, vl, &v);
        if (rc == HX_ERR_CHECKSUM) {
            why_set(why, "volume %u: metadata does not decode", get_be32(k + 1));
            goto done;
        }
        if (rc == HX_OK && (rc = vol_insert(s, v)) != HX_OK)
            free(v);
        if (rc != HX_OK)
            goto done;
    }
    if ((rc = iter_status(it, why, "volumes")) != HX_OK)
        goto done;

    uint8_t sp[1] = {KEY_SEGMENT};
    rocksdb_iter_seek(it, (const char *)sp, 1);
    for (; iter_prefix(it, sp, 1, &k, &kl); rocksdb_iter_next(it)) {
        if (kl != KEY_SEGMENT_LEN)
            continue;
        size_t vl = 0;
        const char *val = rocksdb_iter_value(it, &vl);
        segment *g = NULL;
        rc = segment_from_meta(s, get_be32(k + 1), get_be32(k + 5), val, vl,
                               &g, why);
        if (rc == HX_OK && (rc = seg_insert(s, g)) != HX_OK)
            seg_destroy(g);
        if (rc != HX_OK)
            goto done;
    }
    rc = iter_status(it, why, "segments");
    /* Ranges found in old metadata become 't' keys, and the metadata
     * loses them, in one synced batch per segment. */
    for (size_t i = 0; rc == HX_OK && i < s->n_segs; i++) {
        segment *g = s->segs[i];
        if (!g->trunc_legacy)
            continue;
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rc = trunc_put_all(s, wb, g, why);
        if (rc == HX_OK)
            rc = put_segment_meta(wb, g);
        if (rc == HX_OK)
            rc = store_write(s, wb, "truncation ranges as keys", why);
        rocksdb_writebatch_destroy(wb);
        g->trunc_legacy = false;
    }
done:
    rocksdb_iter_destroy(it);
    return rc;
}

/* ------------------------------------------------------------------------
 * Open / close.
 * ---------------------------------------------------------------------- */

int segment_store_open(const char *data_dir, const char *node_id,
                       const segment_store_options *o, segment_store **out,
                       segment_store_why *why)
{
    int rc = HX_OK;
    char *err = NULL;
    segment_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        why_set(why, "out of memory");
        return HX_ERR_NOMEM;
    }
    atomic_init(&s->compacting, false);
    snprintf(s->node_id, sizeof s->node_id, "%s", node_id);
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST) {
        why_set(why, "cannot create %s: %s", data_dir, strerror(errno));
        rc = HX_ERR_IO;
        goto fail;
    }
    int n = snprintf(s->path, sizeof s->path, "%s/db", data_dir);
    if (n < 0 || (size_t)n >= sizeof s->path) {
        why_set(why, "data directory path too long: %s", data_dir);
        rc = HX_ERR_INVALID;
        goto fail;
    }

    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    /* Modest memory: many nodes may share one machine. Under a steady load
     * every L0 -> L1 compaction rewrites nearly all of L1 (each flushed
     * file holds keys of every page), so its cost grows with the store:
     * eight L0 files per compaction instead of four halve how often, and
     * cut compaction CPU per transaction 0.26-0.41 -> 0.03-0.07 ms after a
     * few minutes of tpcb-like load (bench/RESULTS.md "Sustained load").
     * Memtables are flushed by journal checkpoints (a quarter of the
     * ring) before they reach this size in most cases. */
    rocksdb_options_set_write_buffer_size(s->opts, 32u << 20);
    rocksdb_options_set_level0_file_num_compaction_trigger(s->opts, 8);
    rocksdb_options_set_max_open_files(s->opts, 512);
    rocksdb_options_set_keep_log_file_num(s->opts, 4);
    /* RocksDB's info LOG grows with every compaction: bounded too. */
    rocksdb_options_set_max_log_file_size(s->opts, 1u << 20);
    /* Records are small and often compressible; lz4 is cheap. */
    rocksdb_options_set_compression(s->opts, rocksdb_lz4_compression);
    /* No compaction of files dense with deletions: GC's deletions of old
     * records reach every flushed file, and compacting each one at once
     * rewrote the whole retention window every flush (user CPU 41-46 s
     * against 31-34 s for hexad-storage-work --gc-window; bench/
     * RESULTS.md "Records in a column family of their own"). GC's own
     * compaction after a quarter of the live data bounds the disk. */

    s->retention_ms = SEGMENT_STORE_RETENTION_MS_DEFAULT;
    s->wnowal = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(s->wnowal, 1);
    s->fopts = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(s->fopts, 1);
    s->ropts = rocksdb_readoptions_create();
    hx_arena_init(&s->rec_arena);
    s->rcache = record_cache_new(o->record_cache_bytes);
    if (s->rcache == NULL) {
        why_set(why, "out of memory");
        rc = HX_ERR_NOMEM;
        goto fail;
    }

    families_open(s, &err);
    if (err != NULL && strstr(err, "ompression") != NULL) {
        /* lz4 not built into this librocksdb: store uncompressed. */
        rocksdb_free(err);
        err = NULL;
        rocksdb_options_set_compression(s->opts, rocksdb_no_compression);
        families_open(s, &err);
    }
    if (err != NULL) {
        rc = rocks_err(err);
        why_set(why, "cannot open RocksDB at %s: %s%s", s->path, err,
                strstr(err, "lock") ? " (is another hexad-storage using this "
                                      "data directory?)"
                                    : "");
        rocksdb_free(err);
        goto fail;
    }
    s->checkpoint_inline = o->checkpoint_inline;
    rc = journal_open_and_replay(s, data_dir, o->journal_bytes, why);
    if (rc == HX_OK)
        rc = records_move_to_family(s, why);
    if (rc != HX_OK)
        goto fail;
    rc = load_all(s, why);
    if (rc == HX_OK)
        rc = verify_open(s, why);
    if (rc != HX_OK)
        goto fail;
    HX_INFO("segment store %s: %zu volume(s), %zu segment(s)", s->path,
            s->n_vols, s->n_segs);
    s->open_done = true;
    *out = s;
    return HX_OK;

fail:
    segment_store_close(s);
    return rc;
}

static void staged_free(staged_append *a)
{
    free(a->recs);
    free(a->bytes);
}

void segment_store_close(segment_store *s)
{
    if (s == NULL)
        return;
    if (s->n_staged > 0)
        HX_WARN("segment store closed with %zu append(s) staged, never "
                "acknowledged", s->n_staged);
    verify_close(s);
    for (size_t i = 0; i < s->n_staged; i++)
        staged_free(&s->staged[i]);
    free(s->staged);
    free(s->repairs);
    for (size_t i = 0; i < s->n_segs; i++)
        seg_destroy(s->segs[i]);
    free(s->segs);
    for (size_t i = 0; i < s->n_vols; i++)
        free(s->vols[i]);
    free(s->vols);
    if (s->db) {
        compact_join(s);
        journal_close(s);
        if (s->cf_main)
            rocksdb_column_family_handle_destroy(s->cf_main);
        if (s->cf_records)
            rocksdb_column_family_handle_destroy(s->cf_records);
        rocksdb_close(s->db);
    }
    if (s->ropts)
        rocksdb_readoptions_destroy(s->ropts);
    if (s->wnowal)
        rocksdb_writeoptions_destroy(s->wnowal);
    if (s->fopts)
        rocksdb_flushoptions_destroy(s->fopts);
    if (s->opts)
        rocksdb_options_destroy(s->opts);
    record_cache_free(s->rcache);
    hx_arena_destroy(&s->rec_arena);
    free(s);
}

/* One synced write: journal, then RocksDB (invariant 8). Should RocksDB
 * refuse the batch (or an injected failure stand in for it) after its
 * journal entry landed, the entry is withdrawn before the caller reports
 * the failure and reloads memory from RocksDB: left in the ring, a crash
 * would replay it after the later batches had been built on the state
 * without it (a truncation that found nothing to drop, a seal, appends),
 * and apply it out of order. When even the withdrawal fails, the process
 * stops: a restart replays the entry with nothing after it. */
int store_write(segment_store *s, rocksdb_writebatch_t *wb,
                const char *what, segment_store_why *why)
{
    char *err = NULL;
    const char *msg = NULL;
    uint64_t pos = 0;
    segment_store_why jwhy = {0};
    int rc = journal_put(s, wb, &pos, &jwhy);
    if (rc != HX_OK) {
        HX_ERROR("segment store: synced write of %s failed: %s (%s)", what,
                 jwhy.msg, hx_strerror(rc));
        why_set(why, "synced write of %s failed: %s", what, jwhy.msg);
        return rc;
    }
    if (s->inject_count > 0) {
        s->inject_count--;
        msg = s->inject_msg;
    } else {
        rocksdb_write(s->db, s->wnowal, wb, &err);
        msg = err;
    }
    if (msg == NULL) {
        journal_applied(s);
        return HX_OK;
    }
    rc = rocks_err(msg);
    HX_ERROR("segment store: synced write of %s failed: %s (%s)", what, msg,
             hx_strerror(rc));
    why_set(why, "synced write of %s failed: %s", what, msg);
    if (err)
        rocksdb_free(err);
    if (segment_journal_withdraw(s->journal, pos, &jwhy) != HX_OK) {
        HX_ERROR("segment store %s: %s; stopping, so that a restart replays "
                 "the entry before anything else is written", s->path,
                 jwhy.msg);
        abort();
    }
    return rc;
}

void segment_store_inject_write_error(segment_store *s, unsigned count,
                                      const char *rocksdb_msg)
{
    s->inject_count = count;
    snprintf(s->inject_msg, sizeof s->inject_msg, "%s",
             rocksdb_msg ? rocksdb_msg : "IO error: injected");
}

uint64_t segment_store_volume_epoch(const segment_store *s, uint32_t vol)
{
    const volume *v = vol_find(s, vol);
    return v ? v->epoch : 0;
}

/* ------------------------------------------------------------------------
 * Appends: staging.
 * ---------------------------------------------------------------------- */

size_t segment_store_staged_count(const segment_store *s)
{
    return s->n_staged;
}

size_t segment_store_staged_bytes(const segment_store *s)
{
    return s->staged_bytes;
}

static void stage_members(staged_append *a, const Hexad__AppendRecords *req,
                          const char *self)
{
    if (req->n_members != HX_PG_MEMBERS) {
        snprintf(a->members_err, sizeof a->members_err,
                 "a segment needs %d members, got %zu", HX_PG_MEMBERS,
                 req->n_members);
        return;
    }
    bool has_self = false;
    for (size_t i = 0; i < req->n_members; i++) {
        const char *m = req->members[i];
        size_t len = strlen(m);
        if (len == 0 || len >= HX_ID_MAX) {
            snprintf(a->members_err, sizeof a->members_err,
                     "member %zu has a bad id (empty or over %d bytes)", i,
                     HX_ID_MAX - 1);
            return;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->members[j], m) == 0) {
                snprintf(a->members_err, sizeof a->members_err,
                         "member %s is listed twice", m);
                return;
            }
        memcpy(a->members[i], m, len + 1);
        if (strcmp(m, self) == 0)
            has_self = true;
    }
    if (!has_self) {
        snprintf(a->members_err, sizeof a->members_err,
                 "members do not include this node (%s)", self);
        return;
    }
    a->n_members = req->n_members;
}

int segment_store_stage_append(segment_store *s,
                               const Hexad__AppendRecords *req, void *cookie)
{
    if (s->n_staged == s->cap_staged) {
        size_t ncap = s->cap_staged ? s->cap_staged * 2 : 16;
        staged_append *ns = realloc(s->staged, ncap * sizeof *ns);
        if (ns == NULL)
            return HX_ERR_NOMEM;
        s->staged = ns;
        s->cap_staged = ncap;
    }
    staged_append *a = &s->staged[s->n_staged];
    memset(a, 0, sizeof *a);
    a->cookie = cookie;
    a->vol = req->volume;
    a->pg = req->pg;
    a->volume_epoch = req->volume_epoch;
    a->membership_epoch = req->membership_epoch;
    a->min_read_lsn = req->min_read_lsn;
    if (req->geometry != NULL) {
        a->page_size = req->geometry->page_size;
        a->pg_pages = req->geometry->pg_pages;
    }
    stage_members(a, req, s->node_id);

    /* Stateless checks: a refused append stores nothing, so its records
     * are not even copied. */
    for (size_t i = 0; i < req->n_records; i++) {
        const Hexad__Record *r = req->records[i];
        if (hx_record_verify(r) != HX_OK) {
            a->stage_rc = HX_ERR_CHECKSUM;
            snprintf(a->stage_msg, sizeof a->stage_msg,
                     "record %" PRIu64 " (page %" PRIu64
                     ") fails its checksum; nothing of the append stored",
                     r->lsn, r->page_no);
            break;
        }
        if (r->lsn == 0 || r->prev_lsn >= r->lsn) {
            a->stage_rc = HX_ERR_INVALID;
            snprintf(a->stage_msg, sizeof a->stage_msg,
                     "record %" PRIu64 " has prev_lsn %" PRIu64
                     " (must be below its lsn)", r->lsn, r->prev_lsn);
            break;
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < req->n_records; i++)
        total += hexad__record__get_packed_size(req->records[i]);
    s->counters.records_received += req->n_records;
    s->counters.bytes_received += total;

    if (a->stage_rc == HX_OK && req->n_records > 0) {
        a->recs = calloc(req->n_records, sizeof *a->recs);
        a->bytes = malloc(total ? total : 1);
        if (a->recs == NULL || a->bytes == NULL) {
            staged_free(a);
            return HX_ERR_NOMEM;
        }
        size_t off = 0;
        for (size_t i = 0; i < req->n_records; i++) {
            const Hexad__Record *r = req->records[i];
            staged_rec *sr = &a->recs[i];
            sr->lsn = r->lsn;
            sr->prev_lsn = r->prev_lsn;
            sr->page_no = r->page_no;
            sr->epoch = r->epoch;
            sr->flags = r->flags;
            for (size_t j = 0; j < r->n_patches; j++) {
                uint64_t end = (uint64_t)r->patches[j]->offset +
                               r->patches[j]->data.len;
                if (end > sr->patch_end)
                    sr->patch_end = end;
            }
            sr->off = off;
            sr->len = hexad__record__pack(r, a->bytes + off);
            off += sr->len;
        }
        a->n_recs = req->n_records;
        a->n_bytes = off;
    }
    s->staged_bytes += a->n_bytes + sizeof *a;
    s->n_staged++;
    return HX_OK;
}

/* ------------------------------------------------------------------------
 * Appends: applying a batch.
 * ---------------------------------------------------------------------- */

/* An index key ('p' page index or 'c' CPL) of a stored record. */
typedef struct {
    uint8_t k[KEY_MAX_LEN];
    uint8_t kl;
    uint8_t val[INDEX_VALUE_LEN]; /* the 'p' value; a 'c' key has none */
} index_put;

typedef struct {
    segment **segs;  /* touched segments (each once) */
    size_t n_segs, cap_segs;
    uint32_t *vols;  /* touched volumes (each once) */
    size_t n_vols, cap_vols;
    /* Index keys go into the batch after every record, sorted: RocksDB's
     * memtable inserts a key cheaply next to the previous one, and records
     * interleaved with their index keys made every insert a search from
     * the top of the skip list (a fifth of a node's CPU under load). */
    index_put *idx;
    size_t n_idx, cap_idx;  /* cap: two per staged record */
} batch_touch;

static int index_put_cmp(const void *a, const void *b)
{
    const index_put *x = a, *y = b;
    return key_cmp(x->k, x->kl, y->k, y->kl);
}

static void put_index_keys(rocksdb_writebatch_t *wb, batch_touch *t)
{
    if (t->n_idx == 0)
        return;
    qsort(t->idx, t->n_idx, sizeof *t->idx, index_put_cmp);
    for (size_t i = 0; i < t->n_idx; i++) {
        const index_put *e = &t->idx[i];
        rocksdb_writebatch_put(wb, (const char *)e->k, e->kl,
                               (const char *)e->val,
                               e->k[0] == KEY_CPL ? 0 : sizeof e->val);
    }
}

/* An append touches at most one segment and one volume, so lists reserved
 * with one slot per staged append never grow while a batch is applied: an
 * allocation failure cannot leave a change unrecorded (and so unreloaded). */
static void touch_seg(batch_touch *t, segment *g)
{
    if (g->in_batch)
        return;
    assert(t->n_segs < t->cap_segs);
    g->in_batch = true;
    t->segs[t->n_segs++] = g;
}

static void touch_vol(batch_touch *t, volume *v)
{
    if (v->in_batch)
        return;
    assert(t->n_vols < t->cap_vols);
    v->in_batch = true;
    t->vols[t->n_vols++] = v->vol;
}

static void refuse(segment_store_append_result *res, int rc, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));

static void refuse(segment_store_append_result *res, int rc, const char *fmt,
                   ...)
{
    res->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->why.msg, sizeof res->why.msg, fmt, ap);
    va_end(ap);
}

/* Checks a (in the brief's order), then applies it to memory and puts its
 * keys into wb. Refusals touch nothing; a chain fork part-way keeps what
 * came before it (memory and batch agree either way). */
static void apply_append(segment_store *s, rocksdb_writebatch_t *wb,
                         batch_touch *t, staged_append *a)
{
    segment_store_append_result *res = &a->res;
    res->volume = a->vol;
    res->pg = a->pg;

    volume *v = vol_find(s, a->vol);
    if (v != NULL && a->volume_epoch < v->epoch) {
        res->why.current_epoch = v->epoch;
        refuse(res, HX_ERR_STALE_EPOCH,
               "volume %u: append carries epoch %" PRIu64
               ", this node holds epoch %" PRIu64, a->vol, a->volume_epoch,
               v->epoch);
        return;
    }
    segment *g = seg_find(s, a->vol, a->pg);
    bool has_members = g != NULL && g->n_members > 0;
    if (has_members && a->membership_epoch < g->membership_epoch) {
        refuse(res, HX_ERR_STALE_MEMBERSHIP,
               "segment %u/%u: append carries membership epoch %" PRIu64
               ", the segment is at %" PRIu64, a->vol, a->pg,
               a->membership_epoch, g->membership_epoch);
        return;
    }
    bool take_members = !has_members || a->membership_epoch > g->membership_epoch;
    if (take_members && a->members_err[0] != '\0') {
        refuse(res, HX_ERR_INVALID, "segment %u/%u: %s", a->vol, a->pg,
               a->members_err);
        return;
    }
    uint32_t page_size = 0;
    uint64_t pg_pages = 0;
    if (g == NULL || !seg_geometry(s, g, &page_size, &pg_pages)) {
        if (v != NULL && v->page_size != 0) {
            page_size = v->page_size;
            pg_pages = v->pg_pages;
        } else if (geometry_ok(a->page_size, a->pg_pages)) {
            page_size = a->page_size;
            pg_pages = a->pg_pages;
        } else {
            refuse(res, HX_ERR_INVALID,
                   "segment %u/%u: no valid geometry (page_size %u, "
                   "pg_pages %" PRIu64 ")", a->vol, a->pg, a->page_size,
                   a->pg_pages);
            return;
        }
    }
    if (a->stage_rc != HX_OK) {
        refuse(res, a->stage_rc, "segment %u/%u: %s", a->vol, a->pg,
               a->stage_msg);
        return;
    }
    for (size_t i = 0; i < a->n_recs; i++) {
        const staged_rec *r = &a->recs[i];
        if (r->page_no / pg_pages != a->pg) {
            refuse(res, HX_ERR_INVALID,
                   "record %" PRIu64 ": page %" PRIu64
                   " is not in PG %u (%" PRIu64 " pages per PG)",
                   r->lsn, r->page_no, a->pg, pg_pages);
            return;
        }
        if (r->patch_end > page_size) {
            refuse(res, HX_ERR_INVALID,
                   "record %" PRIu64 ": a patch reaches byte %" PRIu64
                   " of a %u-byte page", r->lsn, r->patch_end, page_size);
            return;
        }
    }

    /* Accepted: from here on memory and the batch change together. */
    if (v == NULL) {
        v = calloc(1, sizeof *v);
        if (v != NULL) {
            v->vol = a->vol;
            v->epoch = a->volume_epoch;
        }
        if (v == NULL || vol_insert(s, v) != HX_OK) {
            free(v);
            refuse(res, HX_ERR_NOMEM, "out of memory");
            return;
        }
        touch_vol(t, v);
    } else if (a->volume_epoch > v->epoch) {
        HX_INFO("volume %u: epoch %" PRIu64 " -> %" PRIu64 " (append)",
                a->vol, v->epoch, a->volume_epoch);
        v->epoch = a->volume_epoch;
        touch_vol(t, v);
    }
    if (v->page_size == 0) {
        v->page_size = page_size;
        v->pg_pages = pg_pages;
        touch_vol(t, v);
    }
    if (g == NULL) {
        g = calloc(1, sizeof *g);
        if (g != NULL)
            g->chain = hx_chain_create(0, 0);
        if (g == NULL || g->chain == NULL) {
            seg_destroy(g);
            refuse(res, HX_ERR_NOMEM, "out of memory");
            return;
        }
        g->vol = a->vol;
        g->pg = a->pg;
        int ir = seg_insert(s, g);
        if (ir != HX_OK) {
            seg_destroy(g);
            refuse(res, ir, "cannot hold another segment (%zu held)",
                   s->n_segs);
            return;
        }
        touch_seg(t, g);
    }
    if (take_members) {
        touch_seg(t, g);
        if (has_members)
            HX_INFO("segment %u/%u: membership epoch %" PRIu64 " -> %" PRIu64,
                    a->vol, a->pg, g->membership_epoch, a->membership_epoch);
        memcpy(g->members, a->members, sizeof g->members);
        g->n_members = a->n_members;
        g->membership_epoch = a->membership_epoch;
    }
    if (g->page_size == 0) {
        g->page_size = page_size;
        g->pg_pages = pg_pages;
        touch_seg(t, g);
    }
    /* Only ever raised: a late append with an older value must not let GC
     * keep less (in memory only: after a restart GC waits for the writer). */
    if (a->min_read_lsn > g->min_read_lsn)
        g->min_read_lsn = a->min_read_lsn;

    for (size_t i = 0; i < a->n_recs; i++) {
        const staged_rec *r = &a->recs[i];
        if (in_truncated(g, r->lsn, r->epoch)) {
            res->dropped++;
            continue;
        }
        if (hx_chain_has(g->chain, r->lsn)) {
            res->duplicates++;
            continue;
        }
        int ar = hx_chain_add(g->chain, r->lsn, r->prev_lsn,
                              (r->flags & HX_RECORD_CPL) != 0);
        if (ar == 0) {
            res->duplicates++;
            continue;
        }
        if (ar < 0) {
            refuse(res, ar,
                   "segment %u/%u: record %" PRIu64 " (prev_lsn %" PRIu64
                   ") forks the chain (SCL %" PRIu64 "); %u earlier record(s) "
                   "of the append kept", a->vol, a->pg, r->lsn, r->prev_lsn,
                   hx_chain_scl(g->chain), res->stored);
            HX_WARN("%s", res->why.msg);
            break;
        }
        uint8_t k[KEY_MAX_LEN];
        size_t kl = key_lsn(k, KEY_RECORD, a->vol, a->pg, r->lsn);
        batch_put(s, wb, k, kl, a->bytes + r->off, r->len);
        assert(t->n_idx + 2 <= t->cap_idx);
        index_put *e = &t->idx[t->n_idx++];
        e->kl = (uint8_t)key_page(e->k, a->vol, a->pg, r->page_no, r->lsn);
        index_value(e->val, r->flags, (uint32_t)r->len);
        if (r->flags & HX_RECORD_CPL) {
            e = &t->idx[t->n_idx++];
            e->kl = (uint8_t)key_lsn(e->k, KEY_CPL, a->vol, a->pg, r->lsn);
        }
        g->records++;
        res->stored++;
        touch_seg(t, g);
    }
}

int segment_store_flush(segment_store *s, segment_store_append_done done,
                        void *arg)
{
    if (s->n_staged == 0)
        return HX_OK;
    int wrc = HX_OK;
    segment_store_why wwhy = {0};
    batch_touch t = {0};
    t.segs = calloc(s->n_staged, sizeof *t.segs);
    t.vols = calloc(s->n_staged, sizeof *t.vols);
    t.cap_segs = t.cap_vols = s->n_staged;
    for (size_t i = 0; i < s->n_staged; i++)
        t.cap_idx += 2 * s->staged[i].n_recs;
    t.idx = malloc((t.cap_idx ? t.cap_idx : 1) * sizeof *t.idx);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

    for (size_t i = 0; i < s->n_staged; i++) {
        if (t.segs == NULL || t.vols == NULL || t.idx == NULL)
            refuse(&s->staged[i].res, HX_ERR_NOMEM, "out of memory");
        else
            apply_append(s, wb, &t, &s->staged[i]);
    }
    put_index_keys(wb, &t);

    /* Invariant 3: the chain state goes into the same batch. */
    for (size_t i = 0; i < t.n_segs && wrc == HX_OK; i++)
        wrc = put_segment_meta(wb, t.segs[i]);
    for (size_t i = 0; i < t.n_vols && wrc == HX_OK; i++)
        wrc = put_volume_meta(wb, vol_find(s, t.vols[i]));
    if (wrc != HX_OK) {
        why_set(&wwhy, "out of memory building the batch");
    } else if (rocksdb_writebatch_count(wb) > 0) {
        /* A batch of duplicates only changes nothing: no write needed,
         * what it acknowledges is already durable. */
        char what[64];
        snprintf(what, sizeof what, "%zu append(s)", s->n_staged);
        wrc = store_write(s, wb, what, &wwhy);
        if (wrc == HX_OK)
            s->counters.batches_synced++;
    }
    rocksdb_writebatch_destroy(wb);

    if (wrc == HX_OK) {
        for (size_t i = 0; i < t.n_segs; i++) {
            t.segs[i]->in_batch = false;
            seg_check(s, t.segs[i]);
        }
        for (size_t i = 0; i < t.n_vols; i++) {
            volume *v = vol_find(s, t.vols[i]);
            if (v)
                v->in_batch = false;
        }
    } else {
        /* Invariant 2: forget what disk does not hold. Segment pointers in
         * t.segs die in seg_reload, so collect the ids first. */
        size_t n = t.n_segs;
        uint32_t (*ids)[2] = calloc(n ? n : 1, sizeof *ids);
        for (size_t i = 0; ids != NULL && i < n; i++) {
            ids[i][0] = t.segs[i]->vol;
            ids[i][1] = t.segs[i]->pg;
        }
        for (size_t i = 0; ids != NULL && i < n; i++)
            seg_reload(s, ids[i][0], ids[i][1]);
        if (ids == NULL) /* cannot even reload: drop them all */
            for (size_t i = 0; i < n; i++) {
                segment *g = t.segs[i];
                seg_unlink(s, g->vol, g->pg);
                seg_destroy(g);
            }
        free(ids);
        for (size_t i = 0; i < t.n_vols; i++)
            vol_reload(s, t.vols[i]);
        HX_ERROR("segment store: %zu append(s) refused after the failed "
                 "write; %zu segment(s) reloaded from disk", s->n_staged, n);
    }

    for (size_t i = 0; i < s->n_staged; i++) {
        staged_append *a = &s->staged[i];
        if (a->res.rc == HX_OK && wrc != HX_OK) {
            a->res.rc = wrc;
            a->res.why = wwhy;
            a->res.stored = 0;
        }
        segment *g = seg_find(s, a->vol, a->pg);
        if (g != NULL) {
            a->res.scl = hx_chain_scl(g->chain);
            a->res.max_lsn = hx_chain_max_lsn(g->chain);
        }
    }
    free(t.segs);
    free(t.vols);
    free(t.idx);

    /* Results are reported after the staged list is detached, so that a
     * callback may stage (or flush) again. */
    staged_append *list = s->staged;
    size_t n = s->n_staged;
    s->staged = NULL;
    s->n_staged = s->cap_staged = 0;
    s->staged_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (done)
            done(list[i].cookie, &list[i].res, arg);
        staged_free(&list[i]);
    }
    free(list);
    return wrc;
}

typedef struct {
    segment_store_append_result *res;
} append_one;

static void append_one_done(void *cookie,
                            const segment_store_append_result *res, void *arg)
{
    (void)arg;
    append_one *o = cookie;
    *o->res = *res;
}

int segment_store_append(segment_store *s, const Hexad__AppendRecords *req,
                         segment_store_append_result *res)
{
    memset(res, 0, sizeof *res);
    if (s->n_staged > 0) {
        res->rc = HX_ERR_BUSY;
        snprintf(res->why.msg, sizeof res->why.msg, "appends are staged");
        return HX_ERR_BUSY;
    }
    append_one o = {res};
    int rc = segment_store_stage_append(s, req, &o);
    if (rc != HX_OK) {
        res->rc = rc;
        snprintf(res->why.msg, sizeof res->why.msg, "%s", hx_strerror(rc));
        return rc;
    }
    segment_store_flush(s, append_one_done, NULL);
    return res->rc;
}

/* ------------------------------------------------------------------------
 * Reads.
 * ---------------------------------------------------------------------- */

/* Newest key `tag vol pg lsn` with lsn <= at ('r' or 'c'); 0 when none. */
int newest_le(segment_store *s, char tag, uint32_t vol, uint32_t pg,
              uint64_t at, uint64_t *lsn, segment_store_why *why)
{
    *lsn = 0;
    if (at == 0)
        return HX_OK;
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, tag, vol, pg, at);
    rocksdb_iterator_t *it = store_iter(s, (uint8_t)tag);
    rocksdb_iter_seek_for_prev(it, (const char *)k, kl);
    const uint8_t *ik;
    size_t ikl;
    if (iter_prefix(it, k, 9, &ik, &ikl) && ikl == KEY_LSN_LEN)
        *lsn = get_be64(ik + 9);
    int rc = iter_status(it, why, "the record index");
    rocksdb_iter_destroy(it);
    return rc;
}

/* Unpacks (into s->rec_arena) and verifies record lsn from bytes
 * (invariant 6); NULL when they are not that record intact. */
static Hexad__Record *record_unpack_verified(segment_store *s,
                                             const uint8_t *bytes, size_t len,
                                             uint64_t lsn)
{
    Hexad__Record *r = hexad__record__unpack(&s->rec_arena.pb, len, bytes);
    return r != NULL && r->lsn == lsn && hx_record_verify(r) == HX_OK ? r
                                                                      : NULL;
}

/* Reads, unpacks and verifies record lsn (invariant 6): from s->rcache
 * when it holds an intact copy, else from RocksDB. */
int read_record(segment_store *s, uint32_t vol, uint32_t pg,
                uint64_t lsn, bool take, Hexad__Record **out,
                segment_store_why *why)
{
    hx_arena_reset(&s->rec_arena);
    size_t cl = 0;
    const uint8_t *cached = record_cache_find(s->rcache, vol, pg, lsn, &cl);
    Hexad__Record *r =
        cached ? record_unpack_verified(s, cached, cl, lsn) : NULL;
    if (cached != NULL && (take || r == NULL)) /* a bad copy is not kept */
        record_cache_drop(s->rcache, vol, pg, lsn);
    if (r != NULL) {
        *out = r;
        return HX_OK;
    }
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, vol, pg, lsn);
    char *val = NULL;
    size_t vl = 0;
    int rc = db_get(s, k, kl, &val, &vl, why);
    if (rc != HX_OK)
        return rc;
    if (val == NULL) {
        HX_ERROR("segment %u/%u: record %" PRIu64 " is indexed but missing",
                 vol, pg, lsn);
        why_set(why, "segment %u/%u: record %" PRIu64 " is indexed but "
                "missing", vol, pg, lsn);
        return HX_ERR_IO;
    }
    r = record_unpack_verified(s, (const uint8_t *)val, vl, lsn);
    rocksdb_free(val);
    if (r == NULL) {
        repair_want_add(s, SEGMENT_STORE_REPAIR_RECORD, vol, pg, 0, lsn);
        HX_ERROR("segment %u/%u: stored record %" PRIu64 " fails its "
                 "checksum (%" PRIu64 " bad records or versions seen); "
                 "refetching it from a peer", vol, pg, lsn,
                 s->counters.checksum_failures);
        why_set(why, "segment %u/%u: stored record %" PRIu64 " fails its "
                "checksum", vol, pg, lsn);
        return HX_ERR_CHECKSUM;
    }
    *out = r;
    return HX_OK;
}

int segment_store_get_page(segment_store *s, uint32_t vol, uint32_t pg,
                           uint64_t page_no, uint64_t read_lsn,
                           uint8_t **page, size_t *page_len,
                           uint64_t *page_lsn, segment_store_why *why)
{
    uint64_t base;
    return get_page_from_version(s, vol, pg, page_no, read_lsn, false, NULL,
                                 page, page_len, page_lsn, &base, why);
}

/* Page-index entries get_page_from_version holds without a malloc (a page
 * has fewer than COALESCE_MIN_RECORDS above its version when coalescing
 * keeps up). */
#define PAGE_INDEX_INLINE 32

/* One page-index entry above the base, for get_page_from_version. */
typedef struct {
    uint64_t lsn;
    uint32_t flags;
} index_entry;

int get_page_from_version(segment_store *s, uint32_t vol, uint32_t pg,
                          uint64_t page_no, uint64_t read_lsn, bool take,
                          rocksdb_iterator_t *shared_it, uint8_t **page,
                          size_t *page_len, uint64_t *page_lsn,
                          uint64_t *base_lsn, segment_store_why *why)
{
    *base_lsn = 0;
    segment *g = seg_find(s, vol, pg);
    uint32_t page_size = 0;
    uint64_t pg_pages = 0;
    if (g == NULL || !seg_geometry(s, g, &page_size, &pg_pages)) {
        why_set(why, "segment %u/%u is not held by this node", vol, pg);
        return HX_ERR_NOT_FOUND;
    }
    if (page_no / pg_pages != pg) {
        why_set(why, "page %" PRIu64 " is not in PG %u (%" PRIu64
                " pages per PG)", page_no, pg, pg_pages);
        return HX_ERR_INVALID;
    }
    uint64_t scl = hx_chain_scl(g->chain);
    if (read_lsn > scl) {
        why_set(why, "segment %u/%u is complete to %" PRIu64
                ", read point %" PRIu64 " is above it", vol, pg, scl,
                read_lsn);
        return HX_ERR_NOT_COMPLETE;
    }
    if (g->chain_unverified) {
        why_set(why, "segment %u/%u: its chain is not verified yet: the "
                "node stopped uncleanly and may have lost a write the SCL "
                "%" PRIu64 " claims; the startup check is walking the "
                "records (%zu segment(s) to go)", vol, pg, scl,
                segment_store_segments_unverified(s));
        return HX_ERR_NOT_COMPLETE;
    }
    if (g->missing_lsn != 0 && read_lsn >= g->missing_lsn) {
        why_set(why, "segment %u/%u lacks record %" PRIu64 " below its SCL "
                "(a lost write the scrub found); reads at or above it wait "
                "for a peer's copy", vol, pg, g->missing_lsn);
        return HX_ERR_NOT_COMPLETE;
    }
    if (read_lsn < g->gc_lsn) {
        why_set(why, "segment %u/%u: read point %" PRIu64 " is below its "
                "garbage-collected horizon %" PRIu64 " (older than the "
                "retention window and every reader's read point)", vol, pg,
                read_lsn, g->gc_lsn);
        return HX_ERR_NOT_FOUND;
    }
    uint8_t *buf = calloc(1, page_size);
    if (buf == NULL)
        return HX_ERR_NOMEM;

    /* The newest page version at or below read_lsn is the base: only the
     * page's records above it are applied, so the cost is bounded by what
     * came since the last coalescing, not by the page's history. */
    rocksdb_iterator_t *it =
        shared_it ? shared_it : rocksdb_create_iterator(s->db, s->ropts);
    uint64_t base = 0;
    int rc = version_newest_le(s, it, g, page_no, read_lsn, buf, page_size,
                               &base, why);

    /* The page index above the base, read once (forward: a memtable
     * iterator's Prev is a search from the top, its Next a step). The
     * newest IMAGE at or below read_lsn, else the first entry, is where
     * applying starts. */
    index_entry one[PAGE_INDEX_INLINE], *ents = one;
    size_t n = 0, cap = PAGE_INDEX_INLINE, start = 0;
    bool from_image = false;
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_page(k, vol, pg, page_no, base + 1);
    const uint8_t *ik;
    size_t ikl;
    if (rc == HX_OK)
        rocksdb_iter_seek(it, (const char *)k, kl);
    for (; rc == HX_OK && iter_prefix(it, k, KEY_PAGE_PREFIX_LEN, &ik, &ikl);
         rocksdb_iter_next(it)) {
        if (ikl != KEY_PAGE_LEN)
            continue;
        uint64_t lsn = get_be64(ik + 17);
        if (lsn > read_lsn)
            break;
        if (n == cap) {
            index_entry *ne = malloc(2 * cap * sizeof *ne);
            if (ne == NULL) {
                rc = HX_ERR_NOMEM;
                break;
            }
            memcpy(ne, ents, n * sizeof *ne);
            if (ents != one)
                free(ents);
            ents = ne;
            cap *= 2;
        }
        size_t vl = 0;
        const char *v = rocksdb_iter_value(it, &vl);
        ents[n].lsn = lsn;
        ents[n].flags = index_value_flags((const uint8_t *)v, vl);
        if (ents[n].flags & HX_RECORD_IMAGE) {
            start = n;
            from_image = true;
        }
        n++;
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "the page index");
    if (shared_it == NULL)
        rocksdb_iter_destroy(it);
    if (from_image) /* as if applied to a never-written page */
        memset(buf, 0, page_size);

    /* Apply forward, each record verified. */
    uint64_t applied = 0;
    for (size_t i = start; rc == HX_OK && i < n; i++) {
        Hexad__Record *r = NULL;
        rc = read_record(s, vol, pg, ents[i].lsn, take, &r, why);
        if (rc != HX_OK)
            break;
        if (r->page_no != page_no) {
            rc = HX_ERR_CHECKSUM;
            why_set(why, "record %" PRIu64 " is indexed under page %" PRIu64
                    " but is for page %" PRIu64, ents[i].lsn, page_no,
                    r->page_no);
        } else if ((rc = hx_record_apply(r, buf, page_size)) != HX_OK) {
            why_set(why, "record %" PRIu64 " does not fit a %u-byte page",
                    ents[i].lsn, page_size);
        }
        if (rc == HX_OK)
            applied = ents[i].lsn;
    }
    if (ents != one)
        free(ents);
    if (rc != HX_OK) {
        free(buf);
        return rc;
    }
    *page = buf;
    *page_len = page_size;
    *page_lsn = applied != 0 ? applied : base;
    *base_lsn = base;
    return HX_OK;
}

/* ---- segment_info ----------------------------------------------------- */

/* Wrappers own what the messages point at; the message comes first so the
 * free functions can cast back (C11 6.7.2.1p15). */
typedef struct {
    Hexad__SegmentInfo msg;
    char *member_ptrs[HX_PG_MEMBERS];
    char members[HX_PG_MEMBERS][HX_ID_MAX];
    Hexad__LsnRange *trunc_items;  /* msg.truncations points into it */
    Hexad__RecordMeta *tail_items; /* msg.tail points into it */
} info_seg;

typedef struct {
    Hexad__SegmentInfoResponse msg;
    Hexad__Geometry geometry;
} info_resp;

void segment_store_segment_info_free(Hexad__SegmentInfoResponse *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_segments; i++) {
        info_seg *is = (info_seg *)r->segments[i];
        free(is->trunc_items);
        free(is->msg.truncations);
        free(is->tail_items);
        free(is->msg.tail);
        free(is);
    }
    free(r->segments);
    free((info_resp *)r);
}

/* Appends every record of g above tail_from to is (ascending). */
static int collect_tail(segment_store *s, const segment *g, uint64_t from,
                        info_seg *is, size_t *total, segment_store_why *why)
{
    if (from == UINT64_MAX)
        return HX_OK;
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, g->vol, g->pg, from + 1);
    size_t n = 0, cap = 0;
    Hexad__RecordMeta *items = NULL;
    int rc = HX_OK;
    rocksdb_iterator_t *it = store_iter(s, KEY_RECORD);
    const uint8_t *ik;
    size_t ikl;
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         iter_prefix(it, k, 9, &ik, &ikl); rocksdb_iter_next(it)) {
        if (ikl != KEY_LSN_LEN)
            continue;
        if (*total >= SEGMENT_STORE_TAIL_MAX) {
            why_set(why, "tail over %u records; ask from a higher LSN",
                    SEGMENT_STORE_TAIL_MAX);
            rc = HX_ERR_TOO_BIG;
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            Hexad__RecordMeta *ni = realloc(items, ncap * sizeof *ni);
            if (ni == NULL) {
                rc = HX_ERR_NOMEM;
                break;
            }
            items = ni;
            cap = ncap;
        }
        size_t vl = 0;
        const char *v = rocksdb_iter_value(it, &vl);
        Hexad__Record *r = hexad__record__unpack(NULL, vl, (const uint8_t *)v);
        hexad__record_meta__init(&items[n]);
        items[n].lsn = get_be64(ik + 9);
        items[n].flags = r ? r->flags : 0;
        if (r)
            hexad__record__free_unpacked(r, NULL);
        n++;
        (*total)++;
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "records");
    rocksdb_iter_destroy(it);
    Hexad__RecordMeta **ptrs = NULL;
    if (rc == HX_OK && n > 0 && (ptrs = calloc(n, sizeof *ptrs)) == NULL)
        rc = HX_ERR_NOMEM;
    if (rc != HX_OK) {
        free(items);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &items[i];
    is->tail_items = items;
    is->msg.tail = ptrs;
    is->msg.n_tail = n;
    return HX_OK;
}

int segment_store_segment_info(segment_store *s,
                               const Hexad__SegmentInfoRequest *req,
                               Hexad__SegmentInfoResponse **out,
                               segment_store_why *why)
{
    if (s->n_staged > 0) {
        why_set(why, "appends are staged; flush first");
        return HX_ERR_BUSY;
    }
    info_resp *ir = calloc(1, sizeof *ir);
    if (ir == NULL)
        return HX_ERR_NOMEM;
    hexad__segment_info_response__init(&ir->msg);
    hexad__geometry__init(&ir->geometry);
    ir->msg.volume = req->volume;
    const volume *v = vol_find(s, req->volume);
    if (v != NULL) {
        ir->msg.volume_epoch = v->epoch;
        if (v->page_size != 0) {
            ir->geometry.page_size = v->page_size;
            ir->geometry.pg_pages = v->pg_pages;
            ir->msg.geometry = &ir->geometry;
        }
    }
    size_t first = seg_lower(s, req->volume, 0), count = 0;
    while (first + count < s->n_segs && s->segs[first + count]->vol == req->volume)
        count++;
    int rc = HX_OK;
    size_t total = 0;
    if (count > 0) {
        ir->msg.segments = calloc(count, sizeof *ir->msg.segments);
        if (ir->msg.segments == NULL) {
            rc = HX_ERR_NOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < count; i++) {
        const segment *g = s->segs[first + i];
        info_seg *is = calloc(1, sizeof *is);
        if (is == NULL) {
            rc = HX_ERR_NOMEM;
            goto fail;
        }
        hexad__segment_info__init(&is->msg);
        ir->msg.segments[ir->msg.n_segments++] = &is->msg;
        Hexad__SegmentInfo *m = &is->msg;
        uint64_t scl = hx_chain_scl(g->chain);
        m->pg = g->pg;
        m->scl = scl;
        m->max_lsn = hx_chain_max_lsn(g->chain);
        m->scl_cpl = hx_chain_scl_cpl(g->chain);
        m->membership_epoch = g->membership_epoch;
        /* Its scl vouches for nothing while the check is pending or a
         * record it covers is known lost (segment_verify.c). */
        m->chain_unverified = g->chain_unverified || g->missing_lsn != 0;
        for (size_t j = 0; j < g->n_members; j++) {
            memcpy(is->members[j], g->members[j], HX_ID_MAX);
            is->member_ptrs[j] = is->members[j];
        }
        m->n_members = g->n_members;
        m->members = is->member_ptrs;
        if (g->n_trunc > 0) {
            is->trunc_items = calloc(g->n_trunc, sizeof *is->trunc_items);
            m->truncations = calloc(g->n_trunc, sizeof *m->truncations);
            if (is->trunc_items == NULL || m->truncations == NULL) {
                rc = HX_ERR_NOMEM;
                goto fail;
            }
        }
        for (size_t j = 0; j < g->n_trunc; j++) {
            hexad__lsn_range__init(&is->trunc_items[j]);
            is->trunc_items[j].from_lsn = g->trunc[j].from;
            is->trunc_items[j].to_lsn = g->trunc[j].to;
            is->trunc_items[j].epoch = g->trunc[j].epoch;
            m->truncations[j] = &is->trunc_items[j];
        }
        m->n_truncations = g->n_trunc;
        uint64_t limit = req->limit_lsn < scl ? req->limit_lsn : scl;
        rc = newest_le(s, KEY_RECORD, g->vol, g->pg, limit,
                       &m->last_lsn_le_limit, why);
        if (rc == HX_OK)
            rc = newest_le(s, KEY_CPL, g->vol, g->pg, limit,
                           &m->cpl_le_limit, why);
        if (rc == HX_OK && req->want_tail)
            rc = collect_tail(s, g, req->tail_from, is, &total, why);
        if (rc != HX_OK)
            goto fail;
    }
    *out = &ir->msg;
    return HX_OK;

fail:
    if (rc == HX_ERR_NOMEM)
        why_set(why, "out of memory building the segment info");
    segment_store_segment_info_free(&ir->msg);
    return rc;
}

/* ---- status ----------------------------------------------------------- */

typedef struct {
    Hexad__SegmentStatus msg;
    char *member_ptrs[HX_PG_MEMBERS];
    char members[HX_PG_MEMBERS][HX_ID_MAX];
} status_seg;

int segment_store_status(segment_store *s, Hexad__NodeStatus **out)
{
    Hexad__NodeStatus *st = calloc(1, sizeof *st);
    if (st == NULL)
        return HX_ERR_NOMEM;
    hexad__node_status__init(st);
    st->records_received = s->counters.records_received;
    st->bytes_received = s->counters.bytes_received;
    st->batches_synced = s->counters.batches_synced;
    st->segments_unverified = segment_store_segments_unverified(s);
    if (s->n_segs > 0) {
        st->segments = calloc(s->n_segs, sizeof *st->segments);
        if (st->segments == NULL)
            goto fail;
    }
    for (size_t i = 0; i < s->n_segs; i++) {
        const segment *g = s->segs[i];
        status_seg *ss = calloc(1, sizeof *ss);
        if (ss == NULL)
            goto fail;
        hexad__segment_status__init(&ss->msg);
        st->segments[st->n_segments++] = &ss->msg;
        ss->msg.volume = g->vol;
        ss->msg.pg = g->pg;
        ss->msg.scl = hx_chain_scl(g->chain);
        ss->msg.max_lsn = hx_chain_max_lsn(g->chain);
        ss->msg.membership_epoch = g->membership_epoch;
        ss->msg.records = g->records;
        ss->msg.coalesced_lsn = g->coalesced_lsn;
        ss->msg.gc_lsn = g->gc_lsn;
        ss->msg.coalesce_lag = coalesce_lag(g);
        for (size_t j = 0; j < g->n_members; j++) {
            memcpy(ss->members[j], g->members[j], HX_ID_MAX);
            ss->member_ptrs[j] = ss->members[j];
        }
        ss->msg.n_members = g->n_members;
        ss->msg.members = ss->member_ptrs;
    }
    *out = st;
    return HX_OK;
fail:
    segment_store_status_free(st);
    return HX_ERR_NOMEM;
}

void segment_store_status_free(Hexad__NodeStatus *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->n_segments; i++)
        free((status_seg *)st->segments[i]);
    free(st->segments);
    free(st);
}

/* ------------------------------------------------------------------------
 * Seal and truncate: synced writes of their own.
 * ---------------------------------------------------------------------- */

int segment_store_seal_epoch(segment_store *s, uint32_t vol,
                             uint64_t new_epoch, uint64_t *current,
                             segment_store_why *why)
{
    if (s->n_staged > 0) {
        why_set(why, "appends are staged; flush first");
        return HX_ERR_BUSY;
    }
    volume *v = vol_find(s, vol);
    if (v != NULL && new_epoch < v->epoch) {
        *current = v->epoch;
        if (why)
            why->current_epoch = v->epoch;
        why_set(why, "volume %u: seal to epoch %" PRIu64 " is below the "
                "epoch held, %" PRIu64, vol, new_epoch, v->epoch);
        return HX_ERR_STALE_EPOCH;
    }
    if (v != NULL && new_epoch == v->epoch) {
        *current = v->epoch;
        return HX_OK;
    }
    if (v == NULL) {
        v = calloc(1, sizeof *v);
        if (v != NULL)
            v->vol = vol;
        if (v == NULL || vol_insert(s, v) != HX_OK) {
            free(v);
            return HX_ERR_NOMEM;
        }
    }
    uint64_t old = v->epoch;
    v->epoch = new_epoch;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = put_volume_meta(wb, v);
    if (rc == HX_OK)
        rc = store_write(s, wb, "a volume seal", why);
    rocksdb_writebatch_destroy(wb);
    if (rc != HX_OK) {
        vol_reload(s, vol);
        return rc;
    }
    HX_INFO("volume %u: sealed at epoch %" PRIu64 " (was %" PRIu64 ")", vol,
            new_epoch, old);
    *current = new_epoch;
    return HX_OK;
}

/* fence: refuse a range of an epoch below the volume's (a Truncate from
 * a writer); a range adopted from a peer (gossip) is not fenced: it was
 * recorded at its own, possibly older, epoch by a writer that held it. */
static int truncate_range(segment_store *s, uint32_t vol, uint32_t pg,
                          uint64_t epoch, uint64_t from, uint64_t to,
                          bool fence, uint64_t *scl_out,
                          segment_store_why *why)
{
    if (s->n_staged > 0) {
        why_set(why, "appends are staged; flush first");
        return HX_ERR_BUSY;
    }
    if (from == 0 || from > to) {
        why_set(why, "bad truncation range [%" PRIu64 ", %" PRIu64 "]",
                from, to);
        return HX_ERR_INVALID;
    }
    volume *v = vol_find(s, vol);
    if (fence && v != NULL && epoch < v->epoch) {
        if (why)
            why->current_epoch = v->epoch;
        why_set(why, "volume %u: truncate carries epoch %" PRIu64
                ", this node holds epoch %" PRIu64, vol, epoch, v->epoch);
        return HX_ERR_STALE_EPOCH;
    }
    int rc = HX_OK;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_iterator_t *it = NULL;
    if (v == NULL) {
        v = calloc(1, sizeof *v);
        if (v != NULL) {
            v->vol = vol;
            v->epoch = epoch;
        }
        if (v == NULL || vol_insert(s, v) != HX_OK) {
            free(v);
            rc = HX_ERR_NOMEM;
            goto done;
        }
        rc = put_volume_meta(wb, v);
    } else if (epoch > v->epoch) {
        v->epoch = epoch;
        rc = put_volume_meta(wb, v);
    }
    if (rc != HX_OK)
        goto done;
    segment *g = seg_find(s, vol, pg);
    if (g == NULL) {
        g = calloc(1, sizeof *g);
        if (g != NULL) {
            g->vol = vol;
            g->pg = pg;
            g->chain = hx_chain_create(0, 0);
        }
        if (g == NULL || g->chain == NULL ||
            (rc = seg_insert(s, g)) != HX_OK) {
            seg_destroy(g);
            rc = rc != HX_OK ? rc : HX_ERR_NOMEM;
            goto done;
        }
    }

    /* Delete the range's keys (invariant 4). */
    uint64_t deleted = 0;
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, vol, pg, from);
    it = store_iter(s, KEY_RECORD);
    uint64_t lsn;
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         iter_lsn_upto(it, k, to, &lsn); rocksdb_iter_next(it)) {
        size_t vl = 0;
        const char *val = rocksdb_iter_value(it, &vl);
        Hexad__Record *r =
            hexad__record__unpack(NULL, vl, (const uint8_t *)val);
        uint8_t dk[KEY_MAX_LEN];
        if (r != NULL) {
            size_t dl = key_page(dk, vol, pg, r->page_no, lsn);
            rocksdb_writebatch_delete(wb, (const char *)dk, dl);
            hexad__record__free_unpacked(r, NULL);
        } else {
            HX_WARN("segment %u/%u: record %" PRIu64 " does not decode; its "
                    "page index entry stays", vol, pg, lsn);
        }
        size_t dl = key_lsn(dk, KEY_RECORD, vol, pg, lsn);
        batch_delete(s, wb, dk, dl);
        dl = key_lsn(dk, KEY_CPL, vol, pg, lsn);
        rocksdb_writebatch_delete(wb, (const char *)dk, dl);
        deleted++;
    }
    rc = iter_status(it, why, "records to truncate");
    if (rc != HX_OK)
        goto done;

    /* The chain: cut below from when the SCL reached it. */
    uint64_t old_scl = hx_chain_scl(g->chain);
    uint64_t new_scl = old_scl, new_cpl = hx_chain_scl_cpl(g->chain);
    if (old_scl >= from) {
        rc = newest_le(s, KEY_RECORD, vol, pg, from - 1, &new_scl, why);
        if (rc == HX_OK)
            rc = newest_le(s, KEY_CPL, vol, pg, new_scl, &new_cpl, why);
        if (rc != HX_OK)
            goto done;
    }
    hx_chain_truncate(g->chain, from, to, new_scl, new_cpl);
    /* Records kept above the range but once below the SCL are held again
     * as pending (chain invariant 2). */
    if (old_scl >= from && to < old_scl) {
        kl = key_lsn(k, KEY_RECORD, vol, pg, to + 1);
        for (rocksdb_iter_seek(it, (const char *)k, kl);
             iter_lsn_upto(it, k, old_scl, &lsn); rocksdb_iter_next(it)) {
            size_t vl = 0;
            const char *val = rocksdb_iter_value(it, &vl);
            Hexad__Record *r =
                hexad__record__unpack(NULL, vl, (const uint8_t *)val);
            if (r == NULL)
                continue;
            int ar = hx_chain_add(g->chain, r->lsn, r->prev_lsn,
                                  (r->flags & HX_RECORD_CPL) != 0);
            hexad__record__free_unpacked(r, NULL);
            if (ar == HX_ERR_NOMEM) {
                rc = ar;
                goto done;
            }
        }
        rc = iter_status(it, why, "records above the truncation");
        if (rc != HX_OK)
            goto done;
    }
    /* Page versions at or above from may hold truncated records. */
    rc = coalesce_truncate(s, wb, g, from, why);
    if (rc != HX_OK)
        goto done;
    g->records = g->records >= deleted ? g->records - deleted : 0;
    missing_truncated(s, g, from, to);
    rc = trunc_add(g, from, to, epoch);
    if (rc == HX_OK)
        rc = trunc_put_all(s, wb, g, why);
    if (rc == HX_OK)
        rc = put_segment_meta(wb, g);
    if (rc == HX_OK)
        rc = store_write(s, wb, "a truncation", why);
    if (rc == HX_OK) {
        HX_INFO("segment %u/%u: truncated [%" PRIu64 ", %" PRIu64 "] at epoch "
                "%" PRIu64 ": %" PRIu64 " record(s) dropped, SCL %" PRIu64
                " -> %" PRIu64, vol, pg, from, to, epoch, deleted, old_scl,
                hx_chain_scl(g->chain));
        *scl_out = hx_chain_scl(g->chain);
        seg_check(s, g);
    }

done:
    if (it)
        rocksdb_iter_destroy(it);
    rocksdb_writebatch_destroy(wb);
    if (rc != HX_OK) {
        /* Invariant 2: memory goes back to what disk holds. */
        seg_reload(s, vol, pg);
        vol_reload(s, vol);
        if (rc == HX_ERR_NOMEM)
            why_set(why, "out of memory");
    }
    return rc;
}

int segment_store_truncate(segment_store *s, uint32_t vol, uint32_t pg,
                           uint64_t epoch, uint64_t from, uint64_t to,
                           uint64_t *scl_out, segment_store_why *why)
{
    return truncate_range(s, vol, pg, epoch, from, to, true, scl_out, why);
}

int segment_store_adopt_truncation(segment_store *s, uint32_t vol,
                                   uint32_t pg, uint64_t epoch, uint64_t from,
                                   uint64_t to, uint64_t *scl_out,
                                   segment_store_why *why)
{
    return truncate_range(s, vol, pg, epoch, from, to, false, scl_out, why);
}

/* ------------------------------------------------------------------------
 * Gossip: serving pulls and staging what a pull brought.
 * ---------------------------------------------------------------------- */

_Static_assert(HX_PG_MEMBERS == 6, "segment_store_seg_view holds 6 members");

void segment_store_pulled_free(Hexad__PulledRecords *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_records; i++)
        hexad__record__free_unpacked(p->records[i], NULL);
    free(p->records);
    free(p->truncations); /* one block (segment_store_pulled_add_sync) */
    free(p);
}

int segment_store_read_chain(segment_store *s, uint32_t vol, uint32_t pg,
                             uint64_t after_lsn, size_t max_bytes,
                             Hexad__PulledRecords **out,
                             segment_store_why *why)
{
    const segment *g = seg_find(s, vol, pg);
    if (g == NULL) {
        why_set(why, "segment %u/%u is not held by this node", vol, pg);
        return HX_ERR_NOT_FOUND;
    }
    if (max_bytes == 0 || max_bytes > SEGMENT_STORE_PULL_BYTES_MAX)
        max_bytes = SEGMENT_STORE_PULL_BYTES_MAX;
    Hexad__PulledRecords *p = calloc(1, sizeof *p);
    if (p == NULL)
        return HX_ERR_NOMEM;
    hexad__pulled_records__init(p);
    p->volume = vol;
    p->pg = pg;
    /* The chain's SCL covers durable records only (invariant 2). */
    uint64_t scl = hx_chain_scl(g->chain);
    p->scl = scl;
    *out = p;
    if (after_lsn >= scl)
        return HX_OK;

    int rc = HX_OK;
    size_t cap = 0, bytes = 0;
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, vol, pg, after_lsn + 1);
    rocksdb_iterator_t *it = store_iter(s, KEY_RECORD);
    uint64_t lsn;
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         iter_lsn_upto(it, k, scl, &lsn); rocksdb_iter_next(it)) {
        size_t vl = 0;
        const char *v = rocksdb_iter_value(it, &vl);
        if (p->n_records > 0 && bytes + vl > max_bytes)
            break;
        Hexad__Record *r = hexad__record__unpack(NULL, vl, (const uint8_t *)v);
        if (r == NULL || r->lsn != lsn || hx_record_verify(r) != HX_OK) {
            repair_want_add(s, SEGMENT_STORE_REPAIR_RECORD, vol, pg, 0, lsn);
            HX_ERROR("segment %u/%u: stored record %" PRIu64 " fails its "
                     "checksum; pull reply ends before it", vol, pg, lsn);
            if (r)
                hexad__record__free_unpacked(r, NULL);
            break;
        }
        if (p->n_records == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            Hexad__Record **nr = realloc(p->records, ncap * sizeof *nr);
            if (nr == NULL) {
                hexad__record__free_unpacked(r, NULL);
                rc = HX_ERR_NOMEM;
                break;
            }
            p->records = nr;
            cap = ncap;
        }
        p->records[p->n_records++] = r;
        bytes += vl;
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "records to pull");
    rocksdb_iter_destroy(it);
    if (rc != HX_OK) {
        if (rc == HX_ERR_NOMEM)
            why_set(why, "out of memory reading the chain");
        segment_store_pulled_free(p);
        *out = NULL;
    }
    return rc;
}

int segment_store_stage_pulled(segment_store *s, const Hexad__PulledRecords *p,
                               void *cookie)
{
    const segment *g = seg_find(s, p->volume, p->pg);
    if (g == NULL || g->n_members == 0)
        return HX_ERR_NOT_FOUND;
    Hexad__AppendRecords req = HEXAD__APPEND_RECORDS__INIT;
    Hexad__Geometry geo = HEXAD__GEOMETRY__INIT;
    char *members[HX_PG_MEMBERS];
    req.volume = p->volume;
    req.pg = p->pg;
    /* The node's own epochs: a pull never raises either. */
    req.volume_epoch = segment_store_volume_epoch(s, p->volume);
    req.membership_epoch = g->membership_epoch;
    for (size_t i = 0; i < g->n_members; i++)
        members[i] = (char *)g->members[i];
    req.n_members = g->n_members;
    req.members = members;
    if (seg_geometry(s, g, &geo.page_size, &geo.pg_pages))
        req.geometry = &geo;
    req.n_records = p->n_records;
    req.records = p->records;
    return segment_store_stage_append(s, &req, cookie);
}

size_t segment_store_segment_count(const segment_store *s)
{
    return s->n_segs;
}

void segment_store_segment_at(const segment_store *s, size_t i,
                              segment_store_seg_view *out)
{
    const segment *g = s->segs[i];
    memset(out, 0, sizeof *out);
    out->volume = g->vol;
    out->pg = g->pg;
    out->scl = hx_chain_scl(g->chain);
    out->n_members = g->n_members;
    for (size_t j = 0; j < g->n_members; j++)
        out->members[j] = g->members[j];
}

uint64_t segment_store_scl(const segment_store *s, uint32_t vol, uint32_t pg)
{
    const segment *g = seg_find(s, vol, pg);
    return g ? hx_chain_scl(g->chain) : 0;
}
