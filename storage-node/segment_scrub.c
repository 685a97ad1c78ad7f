/* Scrubbing and repair (DESIGN.md "Corruption", issue 7 "Scrubbing").
 *
 * Every stored record carries its writer's checksum (common/record.c) and
 * every page version one over its key and image (segment_coalesce.c).
 * Reads verify them (read_record, version_newest_le), and so does a scrub
 * that walks the store a bounded number of items per call. A corrupt item
 * is counted once and queued (`repairs`); the server fetches a peer's copy
 * (PullRecords from lsn - 1 for a record, GetPage at the version's LSN for
 * a version) and hands it to segment_store_repair_*, which verifies it and
 * rewrites the item with one synced write.
 *
 * Invariants:
 *  1. A read never returns a corrupt item: it answers HX_ERR_CHECKSUM (the
 *     client reads another segment) until the item is repaired.
 *  2. An item is rewritten only with a copy that verifies (the record's own
 *     checksum and LSN; a version's length and page LSN), and only while
 *     the corrupt item is still stored (GC or truncation may have removed
 *     it meanwhile: the want is then dropped).
 *  3. Each corrupt item is in `repairs` at most once.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "log.h"
#include "record.h"
#include "segment_store_internal.h"

/* Corrupt items waiting at once; past it they are counted, and found
 * again by a later scrub. */
#define REPAIRS_MAX 4096u

size_t repair_want_find(const segment_store *s, int kind, uint32_t vol,
                        uint32_t pg, uint64_t page_no, uint64_t lsn)
{
    for (size_t i = 0; i < s->n_repairs; i++) {
        const repair_want *w = &s->repairs[i];
        if (w->kind == kind && w->vol == vol && w->pg == pg &&
            w->lsn == lsn && w->page_no == page_no)
            return i;
    }
    return SIZE_MAX;
}

void repair_want_remove(segment_store *s, size_t i)
{
    memmove(&s->repairs[i], &s->repairs[i + 1],
            (s->n_repairs - i - 1) * sizeof *s->repairs);
    s->n_repairs--;
}

void repair_want_add(segment_store *s, int kind, uint32_t vol, uint32_t pg,
                     uint64_t page_no, uint64_t lsn)
{
    if (repair_want_find(s, kind, vol, pg, page_no, lsn) != SIZE_MAX)
        return;
    if (kind == SEGMENT_STORE_REPAIR_MISSING)
        s->counters.records_missing++;
    else
        s->counters.checksum_failures++;
    if (s->n_repairs == REPAIRS_MAX)
        return;
    if (s->n_repairs == s->cap_repairs) {
        size_t ncap = s->cap_repairs ? s->cap_repairs * 2 : 16;
        repair_want *nr = realloc(s->repairs, ncap * sizeof *nr);
        if (nr == NULL)
            return;
        s->repairs = nr;
        s->cap_repairs = ncap;
    }
    s->repairs[s->n_repairs++] =
        (repair_want){vol, pg, page_no, lsn, kind};
}

size_t segment_store_repair_count(const segment_store *s)
{
    return s->n_repairs;
}

void segment_store_repair_at(const segment_store *s, size_t i,
                             segment_store_repair *out)
{
    const repair_want *w = &s->repairs[i];
    *out = (segment_store_repair){w->kind, w->vol, w->pg, w->page_no, w->lsn};
}

/* ---- scrub ------------------------------------------------------------ */

static bool scrub_record(segment_store *s, const uint8_t *k, const char *v,
                         size_t vl)
{
    uint64_t lsn = get_be64(k + 9);
    Hexad__Record *r = hexad__record__unpack(NULL, vl, (const uint8_t *)v);
    bool ok = r != NULL && r->lsn == lsn && hx_record_verify(r) == HX_OK;
    if (ok)
        missing_check(s, k, r);
    if (r)
        hexad__record__free_unpacked(r, NULL);
    if (!ok)
        repair_want_add(s, SEGMENT_STORE_REPAIR_RECORD, get_be32(k + 1),
                        get_be32(k + 5), 0, lsn);
    return ok;
}

static bool scrub_version(segment_store *s, const uint8_t *k, const char *v,
                          size_t vl)
{
    const segment *g = seg_find(s, get_be32(k + 1), get_be32(k + 5));
    uint32_t page_size = 0;
    uint64_t pg_pages = 0;
    if (g == NULL || !seg_geometry(s, g, &page_size, &pg_pages))
        return true; /* a segment being reloaded: a later scrub sees it */
    if (version_verify(k, KEY_PAGE_LEN, v, vl, page_size) != HX_ERR_CHECKSUM)
        return true;
    repair_want_add(s, SEGMENT_STORE_REPAIR_VERSION, g->vol, g->pg,
                    get_be64(k + 9), get_be64(k + 17));
    return false;
}

int segment_store_scrub(segment_store *s, size_t max_items,
                        segment_store_why *why)
{
    if (s->scrub_key_len == 0) {
        /* A store's first pass walks its records only: a record lost in
         * a crash (segment_missing.c) is found sooner after a restart,
         * before the page versions, which cost far more to verify, and
         * the chains an unclean stop left unverified are verified
         * (segment_verify.c). */
        s->scrub_key[0] = s->counters.scrub_passes == 0 ? KEY_RECORD
                                                        : KEY_VERSION;
        s->scrub_key_len = 1;
        s->scrub_vol = s->scrub_pg = 0; /* no record seen yet this pass */
        verify_pass_start(s);
    }
    /* A pass walks the versions ('g', in "default"), then the records
     * ('r', in their own column family), each in key order. */
    size_t bad = 0, seen = 0;
    bool done = false;
    int rc = HX_OK;
    while (!done && seen < max_items) {
        const uint8_t tag[1] = {s->scrub_key[0]};
        rocksdb_iterator_t *it = store_iter(s, tag[0]);
        rocksdb_iter_seek(it, (const char *)s->scrub_key, s->scrub_key_len);
        const uint8_t *k;
        size_t kl;
        for (; seen < max_items && iter_prefix(it, tag, 1, &k, &kl);
             seen++, rocksdb_iter_next(it)) {
            size_t vl = 0;
            const char *v = rocksdb_iter_value(it, &vl);
            if (tag[0] == KEY_RECORD && kl == KEY_LSN_LEN) {
                verify_reached(s, get_be32(k + 1), get_be32(k + 5));
                bad += !scrub_record(s, k, v, vl);
            } else if (tag[0] == KEY_VERSION && kl == KEY_PAGE_LEN) {
                bad += !scrub_version(s, k, v, vl);
            }
        }
        rc = iter_status(it, why, "the store (scrub)");
        if (rc != HX_OK) {
            done = true;
        } else if (iter_prefix(it, tag, 1, &k, &kl)) { /* max_items */
            s->scrub_key_len = kl < KEY_MAX_LEN ? kl : KEY_MAX_LEN;
            memcpy(s->scrub_key, k, s->scrub_key_len);
        } else if (tag[0] == KEY_VERSION) {
            s->scrub_key[0] = KEY_RECORD;
            s->scrub_key_len = 1;
        } else {
            done = true;
        }
        rocksdb_iter_destroy(it);
    }
    if (done && rc == HX_OK)
        verify_pass_end(s); /* not when a read error cut the pass short */
    if (done)
        s->scrub_key_len = 0; /* the next call starts over */
    s->counters.scrub_passes++;
    if (bad > 0)
        HX_WARN("scrub: %zu corrupt item(s) found; %zu waiting for a peer's "
                "copy", bad, s->n_repairs);
    return rc;
}

/* ---- repair ----------------------------------------------------------- */

int put_record_keys(const segment_store *s, rocksdb_writebatch_t *wb,
                    uint32_t vol, uint32_t pg, const Hexad__Record *r)
{
    size_t len = hexad__record__get_packed_size(r);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return HX_ERR_NOMEM;
    hexad__record__pack(r, buf);
    uint8_t k[KEY_MAX_LEN], iv[INDEX_VALUE_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, vol, pg, r->lsn);
    batch_put(s, wb, k, kl, buf, len);
    free(buf);
    index_value(iv, r->flags, (uint32_t)len);
    kl = key_page(k, vol, pg, r->page_no, r->lsn);
    rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)iv,
                           sizeof iv);
    if (r->flags & HX_RECORD_CPL) {
        kl = key_lsn(k, KEY_CPL, vol, pg, r->lsn);
        rocksdb_writebatch_put(wb, (const char *)k, kl, "", 0);
    }
    return HX_OK;
}

static bool key_present(segment_store *s, const uint8_t *k, size_t kl)
{
    char *val = NULL;
    size_t vl = 0;
    if (db_get(s, k, kl, &val, &vl, NULL) != HX_OK || val == NULL)
        return false;
    rocksdb_free(val);
    return true;
}

int segment_store_repair_record(segment_store *s, uint32_t vol, uint32_t pg,
                                const Hexad__Record *r,
                                segment_store_why *why)
{
    size_t i = repair_want_find(s, SEGMENT_STORE_REPAIR_RECORD, vol, pg, 0,
                                r->lsn);
    size_t m = repair_want_find(s, SEGMENT_STORE_REPAIR_MISSING, vol, pg, 0,
                                r->lsn);
    if (i == SIZE_MAX && m != SIZE_MAX) {
        if (hx_record_verify(r) != HX_OK) {
            why_set(why, "the peer's copy of record %" PRIu64 " fails its "
                    "checksum", r->lsn);
            return HX_ERR_CHECKSUM;
        }
        return missing_repair(s, m, r, why);
    }
    if (i == SIZE_MAX) {
        why_set(why, "record %" PRIu64 " of %u/%u is not waiting for repair",
                r->lsn, vol, pg);
        return HX_ERR_NOT_FOUND;
    }
    if (hx_record_verify(r) != HX_OK) {
        why_set(why, "the peer's copy of record %" PRIu64 " fails its "
                "checksum too", r->lsn);
        return HX_ERR_CHECKSUM;
    }
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, vol, pg, r->lsn);
    if (!key_present(s, k, kl)) { /* collected or truncated meanwhile */
        repair_want_remove(s, i);
        return HX_OK;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = put_record_keys(s, wb, vol, pg, r);
    if (rc == HX_OK)
        rc = store_write(s, wb, "a repaired record", why);
    rocksdb_writebatch_destroy(wb);
    if (rc != HX_OK)
        return rc;
    repair_want_remove(s, i);
    s->counters.repairs++;
    HX_INFO("segment %u/%u: record %" PRIu64 " repaired from a peer's copy "
            "(%" PRIu64 " repair(s), %" PRIu64 " checksum failure(s))", vol,
            pg, r->lsn, s->counters.repairs, s->counters.checksum_failures);
    missing_check_repaired(s, vol, pg, r);
    return HX_OK;
}

int segment_store_repair_version(segment_store *s, uint32_t vol, uint32_t pg,
                                 uint64_t page_no, uint64_t page_lsn,
                                 const uint8_t *page, size_t len,
                                 segment_store_why *why)
{
    size_t i = repair_want_find(s, SEGMENT_STORE_REPAIR_VERSION, vol, pg, page_no,
                         page_lsn);
    const segment *g = seg_find(s, vol, pg);
    uint32_t page_size = 0;
    uint64_t pg_pages = 0;
    if (i == SIZE_MAX || g == NULL ||
        !seg_geometry(s, g, &page_size, &pg_pages)) {
        why_set(why, "version %" PRIu64 "@%" PRIu64 " of %u/%u is not "
                "waiting for repair", page_no, page_lsn, vol, pg);
        return HX_ERR_NOT_FOUND;
    }
    if (len != page_size) {
        why_set(why, "the peer's page has %zu bytes, pages have %u", len,
                page_size);
        return HX_ERR_INVALID;
    }
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_page_tag(k, KEY_VERSION, vol, pg, page_no, page_lsn);
    if (!key_present(s, k, kl)) {
        repair_want_remove(s, i);
        return HX_OK;
    }
    uint8_t *val = malloc(8 + (size_t)page_size + KEY_MAX_LEN + page_size);
    if (val == NULL)
        return HX_ERR_NOMEM;
    version_pack(val, k, kl, page, page_size);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)val,
                           8 + (size_t)page_size);
    int rc = store_write(s, wb, "a repaired page version", why);
    rocksdb_writebatch_destroy(wb);
    free(val);
    if (rc != HX_OK)
        return rc;
    repair_want_remove(s, i);
    s->counters.repairs++;
    HX_INFO("segment %u/%u: version of page %" PRIu64 " at %" PRIu64
            " repaired from a peer's copy (%" PRIu64 " repair(s))", vol, pg,
            page_no, page_lsn, s->counters.repairs);
    return HX_OK;
}
