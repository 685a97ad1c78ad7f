/* Coalescing: page versions materialized from the log (DESIGN.md "The read
 * path", issue 7 "Coalescing").
 *
 * A page version is the page as of the LSN of one of its records:
 *
 *   'g' vol pg page_no lsn -> checksum(u64, over key + image) image
 *   'b' vol pg             -> coalesced_lsn(u64) gc_lsn(u64)
 *
 * Invariants:
 *  1. A version at (page, L) equals what replaying the page's records
 *     <= L gives (segment_store_get_page before coalescing), and L is the
 *     LSN of a record of that page.
 *  2. Versions exist only at or below coalesced_lsn, and coalesced_lsn <=
 *     SCL: a version never contains a record beyond the complete chain, so
 *     no later gap fill or truncation can change what it should hold.
 *     A truncation of [from, ...] deletes every version >= from and lowers
 *     coalesced_lsn below from (coalesce_truncate) in its own batch.
 *  3. Every page with a record at or below coalesced_lsn has a version at
 *     its newest record at or below the cap of the pass that covered it,
 *     or fewer than COALESCE_MIN_RECORDS records above its newest version
 *     at or below that cap; so GetPage applies at most that many records
 *     plus those since the last pass. A page version costs a whole page
 *     written for what may be one small record (a random row update), so
 *     a page is materialized only once its records pile up; GC leaves a
 *     page without a version at or below its point alone (segment_gc.c
 *     invariant 3), so the records of such a page stay, at most
 *     COALESCE_MIN_RECORDS - 1 of them above its last version.
 *  4. The versions of a pass and its new coalesced_lsn are one synced
 *     write: a crash keeps both or neither.
 *  5. g->piles (page_piles.h), where it knows a page, holds the page's
 *     records at or below coalesced_lsn above its newest version; it is
 *     updated only after a pass's write landed and cleared by a
 *     truncation. A page it does not know is counted from the page index.
 *  6. A new version supersedes the one it was built from when both lie in
 *     the same span of COALESCE_KEEP_SPAN_LSNS LSNs and the older is above
 *     gc_lsn: it is deleted in the pass's batch. So a page keeps its newest
 *     version and the last one of each older span. Reads stay exact: a
 *     read below the newest version starts from an older one and applies
 *     the records above it, which GC keeps (it deletes only records at or
 *     below a page's base, the newest version at or below gc_lsn, and that
 *     base is never superseded here since it is not above gc_lsn). Without
 *     this a busy page coalesced by frequent small passes (a light load)
 *     kept a whole page per pass for the whole retention window. Under
 *     heavy load passes are large and a busy page gets about one version
 *     per span anyway (tpcb-like, 8 clients: 46 of 480 versions deleted in
 *     20 s; bench/RESULTS.md "Sustained load").
 *  7. A page whose version or a record of it fails its checksum (its repair
 *     queued by the read) gets no version in that pass, and the pass goes
 *     on with the other pages: one bad copy must not stop coalescing, and
 *     with it GC, of the whole segment while the repair is under way. Its
 *     pile is noted as COALESCE_MIN_RECORDS - 1, so its next record brings
 *     it back to a pass; reads of it fail until the repair lands, exactly
 *     as before the pass (invariant 3 bounds cost, not correctness).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "log.h"
#include "record.h"
#include "segment_store_internal.h"

#define BG_META_LEN 16u
/* Distinct pages one pass may materialize (bounds the batch's memory:
 * this many page images). */
#define COALESCE_PAGES_MAX 1024u
#define PAGE_SET_BITS 11u
#define PAGE_SET_SLOTS (1u << PAGE_SET_BITS) /* 2 * COALESCE_PAGES_MAX */
#define COALESCE_MIN_RECORDS SEGMENT_STORE_COALESCE_MIN_RECORDS
/* Invariant 6: a read at an old read point applies at most the records of
 * its page in one such span (about 500 tpcb-like transactions). */
#define COALESCE_KEEP_SPAN_LSNS 2048u

static size_t key_bg(uint8_t *k, uint32_t vol, uint32_t pg)
{
    k[0] = KEY_BG;
    put_be32(k + 1, vol);
    put_be32(k + 5, pg);
    return 9;
}

int bg_meta_load(segment_store *s, segment *g, segment_store_why *why)
{
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_bg(k, g->vol, g->pg);
    char *val = NULL;
    size_t vl = 0;
    int rc = db_get(s, k, kl, &val, &vl, why);
    if (rc != HX_OK)
        return rc;
    g->coalesced_lsn = g->gc_lsn = 0;
    if (val != NULL && vl == BG_META_LEN) {
        g->coalesced_lsn = get_be64((const uint8_t *)val);
        g->gc_lsn = get_be64((const uint8_t *)val + 8);
    } else if (val != NULL) {
        /* Unknown format: start over; versions are rewritten, and reads
         * below the lost horizon find no base and so must not be served:
         * keep it at the SCL, the safe side. */
        g->gc_lsn = hx_chain_scl(g->chain);
        HX_WARN("segment %u/%u: background metadata of %zu bytes ignored; "
                "reads below %" PRIu64 " refused", g->vol, g->pg, vl,
                g->gc_lsn);
    }
    rocksdb_free(val);
    return HX_OK;
}

void bg_meta_put(rocksdb_writebatch_t *wb, const segment *g)
{
    uint8_t k[KEY_MAX_LEN], v[BG_META_LEN];
    size_t kl = key_bg(k, g->vol, g->pg);
    put_be64(v, g->coalesced_lsn);
    put_be64(v + 8, g->gc_lsn);
    rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)v,
                           sizeof v);
}

/* ---- versions --------------------------------------------------------- */

static uint64_t version_sum(const uint8_t *key, size_t kl, const uint8_t *page,
                            uint32_t page_size, uint8_t *scratch)
{
    memcpy(scratch, key, kl);
    memcpy(scratch + kl, page, page_size);
    return hx_checksum(scratch, kl + page_size);
}

void version_pack(uint8_t *buf, const uint8_t *key, size_t kl,
                  const uint8_t *page, uint32_t page_size)
{
    uint8_t *scratch = buf + 8 + page_size;
    put_be64(buf, version_sum(key, kl, page, page_size, scratch));
    memcpy(buf + 8, page, page_size);
}

int version_verify(const uint8_t *key, size_t kl, const char *val, size_t vl,
                   uint32_t page_size)
{
    if (vl != 8 + (size_t)page_size)
        return HX_ERR_CHECKSUM;
    uint8_t *scratch = malloc(KEY_MAX_LEN + page_size);
    if (scratch == NULL)
        return HX_ERR_NOMEM;
    uint64_t sum = version_sum(key, kl, (const uint8_t *)val + 8, page_size,
                               scratch);
    free(scratch);
    return sum == get_be64((const uint8_t *)val) ? HX_OK : HX_ERR_CHECKSUM;
}

int version_newest_le(segment_store *s, rocksdb_iterator_t *it,
                      const segment *g, uint64_t page_no, uint64_t at,
                      uint8_t *page, uint32_t page_size, uint64_t *lsn,
                      segment_store_why *why)
{
    *lsn = 0;
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_page_tag(k, KEY_VERSION, g->vol, g->pg, page_no, at);
    const uint8_t *ik;
    size_t ikl;
    int rc = HX_OK;
    /* A corrupt version above gc_lsn is passed over for the one before it
     * (or none): GC keeps every record above the page's base, the newest
     * version at or below gc_lsn, so replaying from an older version still
     * reads exactly. At or below gc_lsn, records under it may be gone:
     * the read fails until a peer's copy repairs it. */
    for (rocksdb_iter_seek_for_prev(it, (const char *)k, kl);
         iter_prefix(it, k, KEY_PAGE_PREFIX_LEN, &ik, &ikl);
         rocksdb_iter_prev(it)) {
        if (ikl != KEY_PAGE_LEN)
            continue;
        size_t vl = 0;
        const char *v = rocksdb_iter_value(it, &vl);
        uint64_t vlsn = get_be64(ik + 17);
        rc = version_verify(ik, ikl, v, vl, page_size);
        if (rc == HX_OK) {
            memcpy(page, v + 8, page_size);
            *lsn = vlsn;
            break;
        }
        if (rc != HX_ERR_CHECKSUM)
            break;
        repair_want_add(s, SEGMENT_STORE_REPAIR_VERSION, g->vol, g->pg,
                        page_no, vlsn);
        if (vlsn <= g->gc_lsn) {
            why_set(why, "segment %u/%u: stored version of page %" PRIu64
                    " at %" PRIu64 " fails its checksum", g->vol, g->pg,
                    page_no, vlsn);
            break;
        }
        rc = HX_OK;
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "the page versions");
    return rc;
}

/* ---- a pass ----------------------------------------------------------- */

/* The distinct pages of one pass (open addressing, page_no + 1; 0 empty). */
typedef struct {
    uint64_t slot[PAGE_SET_SLOTS];
    uint32_t slot_idx[PAGE_SET_SLOTS]; /* index into page[] */
    uint64_t page[COALESCE_PAGES_MAX];
    uint32_t records[COALESCE_PAGES_MAX]; /* the page's records walked */
    uint32_t pile[COALESCE_PAGES_MAX];    /* its pile once the pass lands */
    size_t n;
} page_set;

/* false when full and page_no is new. */
static bool page_set_add(page_set *ps, uint64_t page_no)
{
    /* The product's high bits: they depend on every bit of page_no. */
    size_t i = (size_t)((page_no * 0x9E3779B97F4A7C15ull) >>
                        (64 - PAGE_SET_BITS));
    for (;; i = (i + 1) & (PAGE_SET_SLOTS - 1)) {
        if (ps->slot[i] == page_no + 1) {
            ps->records[ps->slot_idx[i]]++;
            return true;
        }
        if (ps->slot[i] == 0)
            break;
    }
    if (ps->n == COALESCE_PAGES_MAX)
        return false;
    ps->slot[i] = page_no + 1;
    ps->slot_idx[i] = (uint32_t)ps->n;
    ps->records[ps->n] = 1;
    ps->page[ps->n++] = page_no;
    return true;
}

/* How many records page_no has at or below cap above its newest version
 * at or below cap, counted up to COALESCE_MIN_RECORDS (it, an iterator of
 * the store, is repositioned). Key-only: neither the version nor a record
 * is read. Asked only for pages g->piles does not know. */
static uint32_t page_records_above_version(rocksdb_iterator_t *it,
                                           const segment *g,
                                           uint64_t page_no, uint64_t cap)
{
    uint8_t k[KEY_MAX_LEN];
    const uint8_t *ik;
    size_t ikl;
    size_t kl = key_page_tag(k, KEY_VERSION, g->vol, g->pg, page_no, cap);
    uint64_t from = 0;
    rocksdb_iter_seek_for_prev(it, (const char *)k, kl);
    if (iter_prefix(it, k, KEY_PAGE_PREFIX_LEN, &ik, &ikl) &&
        ikl == KEY_PAGE_LEN)
        from = get_be64(ik + 17) + 1;
    kl = key_page(k, g->vol, g->pg, page_no, from);
    unsigned n = 0;
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         n < COALESCE_MIN_RECORDS &&
         iter_prefix(it, k, KEY_PAGE_PREFIX_LEN, &ik, &ikl) &&
         ikl == KEY_PAGE_LEN && get_be64(ik + 17) <= cap;
         rocksdb_iter_next(it))
        n++;
    return n;
}

/* The records page i of ps will have above its newest version once the
 * pass's versions land: 0 when the pass writes one. From g->piles, which
 * counts up to the previous coalesced_lsn, plus this pass's records; or
 * from the store when g->piles does not know the page. */
static uint32_t page_pile_after(rocksdb_iterator_t *it, const segment *g,
                                const page_set *ps, size_t i, uint64_t cap)
{
    long known = g->piles ? page_piles_get(g->piles, ps->page[i]) : -1;
    uint32_t n = known >= 0 ? (uint32_t)known + ps->records[i] : 0;
    if (known < 0)
        n = ps->records[i] >= COALESCE_MIN_RECORDS
                ? ps->records[i]
                : page_records_above_version(it, g, ps->page[i], cap);
    return n >= COALESCE_MIN_RECORDS ? 0 : n;
}

/* How far coalescing of g may go: its SCL, or the writer's min read point
 * when lower (a recovery truncates only above it, so the truncation then
 * finds no version to drop whatever the size of the segment). */
static uint64_t coalesce_cap(const segment *g)
{
    uint64_t scl = hx_chain_scl(g->chain);
    return g->min_read_lsn != 0 && g->min_read_lsn < scl ? g->min_read_lsn
                                                         : scl;
}

uint64_t coalesce_lag(const segment *g)
{
    uint64_t cap = coalesce_cap(g);
    return cap > g->coalesced_lsn ? cap - g->coalesced_lsn : 0;
}

uint64_t segment_store_coalesced_sum(const segment_store *s)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < s->n_segs; i++)
        sum += s->segs[i]->coalesced_lsn;
    return sum;
}

uint64_t segment_store_coalesce_lag(const segment_store *s)
{
    uint64_t lag = 0;
    for (size_t i = 0; i < s->n_segs; i++)
        if (coalesce_lag(s->segs[i]) > lag)
            lag = coalesce_lag(s->segs[i]);
    return lag;
}

record_cache_stats segment_store_record_cache_stats(const segment_store *s)
{
    return record_cache_get_stats(s->rcache);
}

/* Walks the records above g->coalesced_lsn (at most *budget of them, and
 * the pages they touch within COALESCE_PAGES_MAX), then writes each page
 * as of the last record walked, with the new coalesced_lsn. */
static int coalesce_segment(segment_store *s, segment *g, page_set *ps,
                            size_t *budget, size_t *written,
                            segment_store_why *why)
{
    uint64_t scl = coalesce_cap(g);
    uint32_t page_size = 0;
    uint64_t pg_pages = 0;
    /* An unverified chain may lack a record (segment_verify.c). */
    if (g->coalesced_lsn >= scl || g->chain_unverified ||
        !seg_geometry(s, g, &page_size, &pg_pages))
        return HX_OK;

    memset(ps, 0, sizeof *ps);
    uint64_t cap = g->coalesced_lsn;
    uint8_t k[KEY_MAX_LEN];
    size_t kl = key_lsn(k, KEY_RECORD, g->vol, g->pg, g->coalesced_lsn + 1);
    rocksdb_iterator_t *it = store_iter(s, KEY_RECORD);
    int rc = HX_OK;
    uint64_t lsn;
    bool more = true; /* false: every record up to scl was walked */
    for (rocksdb_iter_seek(it, (const char *)k, kl);
         *budget > 0 && (more = iter_lsn_upto(it, k, scl, &lsn));
         rocksdb_iter_next(it)) {
        size_t vl = 0;
        const char *v = rocksdb_iter_value(it, &vl);
        uint64_t page_no;
        if (hx_record_peek_page_no((const uint8_t *)v, vl, &page_no) !=
            HX_OK) { /* materializing would fail on it: repair first */
            repair_want_add(s, SEGMENT_STORE_REPAIR_RECORD, g->vol, g->pg, 0,
                            lsn);
            break;
        }
        if (!page_set_add(ps, page_no))
            break;
        /* Kept until the page's version applies it (record_cache.h). */
        record_cache_put(s->rcache, g->vol, g->pg, lsn, v, vl);
        cap = lsn;
        (*budget)--;
    }
    rc = iter_status(it, why, "records to coalesce");
    rocksdb_iter_destroy(it);
    /* Nothing left up to scl: the pass covers it, even where no record of
     * this segment lies (a writer's min read point below the PG's next
     * record would otherwise hold coalescing, and GC, forever). */
    if (rc == HX_OK && !more)
        cap = scl;
    if (rc != HX_OK || cap == g->coalesced_lsn)
        return rc;

    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint8_t *val = malloc(8 + (size_t)page_size + KEY_MAX_LEN + page_size);
    if (val == NULL)
        rc = HX_ERR_NOMEM;
    it = rocksdb_create_iterator(s->db, s->ropts);
    size_t n_versions = 0, n_superseded = 0;
    for (size_t i = 0; rc == HX_OK && i < ps->n; i++) {
        ps->pile[i] = page_pile_after(it, g, ps, i, cap);
        if (ps->pile[i] > 0)
            continue; /* invariant 3: too few records to be worth a page */
        uint8_t *page = NULL;
        size_t len = 0;
        uint64_t page_lsn = 0, base = 0;
        rc = get_page_from_version(s, g->vol, g->pg, ps->page[i], cap, true,
                                   it, &page, &len, &page_lsn, &base, why);
        if (rc == HX_ERR_CHECKSUM) {
            /* Invariant 7: the page waits for its repair, the others go on. */
            HX_WARN("segment %u/%u: page %" PRIu64 " gets no version until "
                    "its repair lands: %s", g->vol, g->pg, ps->page[i],
                    why ? why->msg : "a checksum failed");
            ps->pile[i] = COALESCE_MIN_RECORDS - 1;
            rc = HX_OK;
            continue;
        }
        if (rc != HX_OK)
            break;
        kl = key_page_tag(k, KEY_VERSION, g->vol, g->pg, ps->page[i],
                          page_lsn);
        version_pack(val, k, kl, page, page_size);
        rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)val,
                               8 + (size_t)page_size);
        free(page);
        n_versions++;
        if (base > g->gc_lsn && base < page_lsn &&
            base / COALESCE_KEEP_SPAN_LSNS == page_lsn / COALESCE_KEEP_SPAN_LSNS) {
            kl = key_page_tag(k, KEY_VERSION, g->vol, g->pg, ps->page[i], base);
            rocksdb_writebatch_delete(wb, (const char *)k, kl);
            n_superseded++;
        }
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "page versions and the page index");
    rocksdb_iter_destroy(it);
    free(val);
    uint64_t old = g->coalesced_lsn;
    if (rc == HX_OK) {
        g->coalesced_lsn = cap;
        bg_meta_put(wb, g);
        rc = store_write(s, wb, "page versions", why);
        if (rc != HX_OK)
            g->coalesced_lsn = old;
    }
    rocksdb_writebatch_destroy(wb);
    if (rc == HX_OK && g->piles == NULL)
        g->piles = page_piles_new(); /* NULL: every page stays unknown */
    for (size_t i = 0; rc == HX_OK && g->piles != NULL && i < ps->n; i++)
        page_piles_set(g->piles, ps->page[i], ps->pile[i]);
    if (rc == HX_OK) {
        s->counters.page_versions_written += n_versions;
        s->counters.page_versions_superseded += n_superseded;
        *written += n_versions;
        HX_DEBUG("segment %u/%u: coalesced (%" PRIu64 ", %" PRIu64 "]: %zu "
                 "page version(s) for %zu page(s)", g->vol, g->pg, old, cap,
                 n_versions, ps->n);
    }
    return rc;
}

int segment_store_coalesce(segment_store *s, size_t max_records,
                           size_t *written, segment_store_why *why)
{
    size_t dummy = 0;
    if (written == NULL)
        written = &dummy;
    *written = 0;
    if (s->n_staged > 0) {
        why_set(why, "appends are staged; flush first");
        return HX_ERR_BUSY;
    }
    page_set *ps = malloc(sizeof *ps);
    if (ps == NULL)
        return HX_ERR_NOMEM;
    int rc = HX_OK;
    size_t budget = max_records;
    for (size_t visited = 0;
         rc == HX_OK && budget > 0 && visited < s->n_segs; visited++) {
        size_t i = s->coalesce_next++ % s->n_segs;
        rc = coalesce_segment(s, s->segs[i], ps, &budget, written, why);
    }
    free(ps);
    s->counters.coalesce_passes++;
    return rc;
}

int coalesce_truncate(segment_store *s, rocksdb_writebatch_t *wb, segment *g,
                      uint64_t from, segment_store_why *why)
{
    /* LSNs from on may come back as other records (record_cache.h
     * invariant 1); a walk of a failed pass may have cached some above
     * coalesced_lsn. */
    record_cache_truncate(s->rcache, g->vol, g->pg, from);
    /* Invariant 2: no version lies above coalesced_lsn. */
    if (g->coalesced_lsn < from)
        return HX_OK;
    uint8_t k[KEY_MAX_LEN];
    key_page_tag(k, KEY_VERSION, g->vol, g->pg, 0, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    const uint8_t *ik;
    size_t ikl;
    uint64_t dropped = 0;
    for (rocksdb_iter_seek(it, (const char *)k, 9);
         iter_prefix(it, k, 9, &ik, &ikl); rocksdb_iter_next(it)) {
        if (ikl == KEY_PAGE_LEN && get_be64(ik + 17) >= from) {
            rocksdb_writebatch_delete(wb, (const char *)ik, ikl);
            dropped++;
        }
    }
    int rc = iter_status(it, why, "page versions to truncate");
    rocksdb_iter_destroy(it);
    if (rc != HX_OK)
        return rc;
    if (g->coalesced_lsn >= from)
        g->coalesced_lsn = from - 1;
    if (g->piles != NULL) /* versions and records above from are gone */
        page_piles_clear(g->piles);
    bg_meta_put(wb, g);
    if (dropped > 0)
        HX_INFO("segment %u/%u: %" PRIu64 " page version(s) at or above %"
                PRIu64 " dropped with the truncation", g->vol, g->pg, dropped,
                from);
    return HX_OK;
}
