/* Unit tests of storage-node/segment_store.c against a real RocksDB in a
 * temporary directory (removed at the end).
 *
 * Each test names the requirement it checks: a DESIGN.md section or
 * "issue 3" (the storage daemon issue).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "hx_err.h"
#include "log.h"
#include "raw_store.h"
#include "record.h"
#include "rm_tree.h"
#include "segment_journal.h"
#include "segment_store.h"
#include "store_options.h"

#define PAGE_SIZE 512u
#define PG_PAGES 100u
#define VOL 1u

/* ------------------------------------------------------------------------
 * Helpers: records, appends, a store in a temporary directory.
 * ---------------------------------------------------------------------- */

typedef struct {
    Hexad__Record rec;
    Hexad__Patch patch;
    Hexad__Patch *pp[1];
    uint8_t data[PAGE_SIZE];
} trec;

/* A record of one patch: len bytes of `fill` at off (IMAGE: whole page). */
static trec *mkrec(uint64_t lsn, uint64_t prev, uint64_t page, uint32_t flags,
                   uint64_t epoch, uint32_t off, uint8_t fill, size_t len)
{
    trec *t = calloc(1, sizeof *t);
    assert_non_null(t);
    hexad__record__init(&t->rec);
    hexad__patch__init(&t->patch);
    if (flags & HX_RECORD_IMAGE) {
        off = 0;
        len = PAGE_SIZE;
    }
    memset(t->data, fill, len);
    t->patch.offset = off;
    t->patch.data.data = t->data;
    t->patch.data.len = len;
    t->pp[0] = &t->patch;
    t->rec.lsn = lsn;
    t->rec.prev_lsn = prev;
    t->rec.page_no = page;
    t->rec.flags = flags;
    t->rec.epoch = epoch;
    t->rec.n_patches = 1;
    t->rec.patches = t->pp;
    hx_record_seal(&t->rec);
    return t;
}

static const char *members6[6] = {"s1", "s2", "s3", "s4", "s5", "s6"};

typedef struct {
    uint32_t pg;
    uint64_t vepoch, mepoch;
    const char *const *members;
    size_t n_members;
} app_hdr;

#define HDR(pg_) ((app_hdr){(pg_), 1, 1, members6, 6})

static void fill_req(Hexad__AppendRecords *req, Hexad__Geometry *geo,
                     Hexad__Record **ptrs, app_hdr h, trec **recs, size_t n)
{
    hexad__append_records__init(req);
    hexad__geometry__init(geo);
    geo->page_size = PAGE_SIZE;
    geo->pg_pages = PG_PAGES;
    req->volume = VOL;
    req->pg = h.pg;
    req->volume_epoch = h.vepoch;
    req->membership_epoch = h.mepoch;
    req->members = (char **)h.members;
    req->n_members = h.n_members;
    req->geometry = geo;
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &recs[i]->rec;
    req->records = ptrs;
    req->n_records = n;
}

/* Appends (stage + flush); frees the records. */
static int append(segment_store *s, app_hdr h, segment_store_append_result *res,
                  size_t n, ...)
{
    trec *recs[32];
    Hexad__Record *ptrs[32];
    assert_true(n <= 32);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        recs[i] = va_arg(ap, trec *);
    va_end(ap);
    Hexad__AppendRecords req;
    Hexad__Geometry geo;
    fill_req(&req, &geo, ptrs, h, recs, n);
    segment_store_append_result local;
    if (res == NULL)
        res = &local;
    int rc = segment_store_append(s, &req, res);
    for (size_t i = 0; i < n; i++)
        free(recs[i]);
    return rc;
}

/* A chain record on page `page` whose patch writes `fill` at byte 0. */
#define R(lsn, prev, page, fill) mkrec((lsn), (prev), (page), 0, 1, 0, (fill), 4)
#define RC(lsn, prev, page, fill) \
    mkrec((lsn), (prev), (page), HX_RECORD_CPL, 1, 0, (fill), 4)

typedef struct {
    char dir[64];
    segment_store *s;
} fixture;

static void reopen(fixture *f)
{
    segment_store_close(f->s);
    f->s = NULL;
    segment_store_why why = {0};
    assert_int_equal(segment_store_open(f->dir, "s1", &hx_test_store_options,
                                        &f->s, &why), HX_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/hx_test_segstore_XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    segment_store_why why = {0};
    if (segment_store_open(f->dir, "s1", &hx_test_store_options, &f->s,
                           &why) != HX_OK) {
        fprintf(stderr, "open: %s\n", why.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    segment_store_close(f->s);
    hx_test_rm_tree(f->dir);
    free(f);
    return 0;
}

static void read_page(segment_store *s, uint32_t pg, uint64_t page,
                      uint64_t read_lsn, uint8_t out[PAGE_SIZE],
                      uint64_t *page_lsn)
{
    uint8_t *p = NULL;
    size_t len = 0;
    segment_store_why why = {0};
    int rc = segment_store_get_page(s, VOL, pg, page, read_lsn, &p, &len,
                                    page_lsn, &why);
    if (rc != HX_OK)
        fail_msg("get_page(%" PRIu64 " @ %" PRIu64 "): %s: %s", page,
                 read_lsn, hx_strerror(rc), why.msg);
    assert_int_equal(len, PAGE_SIZE);
    memcpy(out, p, PAGE_SIZE);
    free(p);
}

static int page_rc(segment_store *s, uint32_t pg, uint64_t page,
                   uint64_t read_lsn)
{
    uint8_t *p = NULL;
    size_t len = 0;
    uint64_t pl = 0;
    int rc = segment_store_get_page(s, VOL, pg, page, read_lsn, &p, &len, &pl,
                                    NULL);
    free(p);
    return rc;
}

static const Hexad__SegmentInfo *info_pg(const Hexad__SegmentInfoResponse *r,
                                         uint32_t pg)
{
    for (size_t i = 0; i < r->n_segments; i++)
        if (r->segments[i]->pg == pg)
            return r->segments[i];
    return NULL;
}

static Hexad__SegmentInfoResponse *info(segment_store *s, uint64_t limit,
                                        bool want_tail, uint64_t tail_from)
{
    Hexad__SegmentInfoRequest req = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    req.volume = VOL;
    req.limit_lsn = limit;
    req.want_tail = want_tail;
    req.tail_from = tail_from;
    Hexad__SegmentInfoResponse *r = NULL;
    segment_store_why why = {0};
    int rc = segment_store_segment_info(s, &req, &r, &why);
    if (rc != HX_OK)
        fail_msg("segment_info: %s", why.msg);
    return r;
}

/* After an unclean stop (segment_verify.c): GetPage refuses the store's
 * segments until the scrub walked their records; walks them. */
static void walk_after_crash(segment_store *s, uint32_t pg, uint64_t lsn)
{
    assert_true(segment_store_segments_unverified(s) > 0);
    assert_int_equal(page_rc(s, pg, 1, lsn), HX_ERR_NOT_COMPLETE);
    segment_store_why why = {0};
    for (int i = 0; i < 100 && segment_store_segments_unverified(s) > 0; i++)
        assert_int_equal(segment_store_scrub(s, 1000, &why), HX_OK);
    assert_int_equal(segment_store_segments_unverified(s), 0);
    assert_int_equal(segment_store_counters(s)->records_missing, 0);
}

static uint64_t records_of(segment_store *s, uint32_t pg)
{
    Hexad__NodeStatus *st = NULL;
    assert_int_equal(segment_store_status(s, &st), HX_OK);
    uint64_t n = UINT64_MAX;
    for (size_t i = 0; i < st->n_segments; i++)
        if (st->segments[i]->volume == VOL && st->segments[i]->pg == pg)
            n = st->segments[i]->records;
    segment_store_status_free(st);
    return n;
}

/* ------------------------------------------------------------------------
 * Tests.
 * ---------------------------------------------------------------------- */

/* DESIGN.md "The write path" step 2, vocabulary "SCL"; issue 3: records
 * may arrive out of order, duplicated, with holes; all are stored and the
 * chain computes the SCL; a filled hole advances the SCL past the pending
 * records; duplicates are skipped but still acknowledged. */
static void test_out_of_order_duplicates_holes(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    /* Chain of PG 0: 10 -> 20 -> 30 -> 40 (LSNs between belong to other
     * PGs). */
    assert_int_equal(append(f->s, HDR(0), &res, 3, R(30, 20, 1, 'c'),
                            R(10, 0, 1, 'a'), R(40, 30, 2, 'd')),
                     HX_OK);
    assert_int_equal(res.scl, 10);
    assert_int_equal(res.max_lsn, 40);
    assert_int_equal(res.stored, 3);

    assert_int_equal(append(f->s, HDR(0), &res, 2, R(10, 0, 1, 'a'),
                            R(30, 20, 1, 'c')),
                     HX_OK);
    assert_int_equal(res.duplicates, 2);
    assert_int_equal(res.stored, 0);
    assert_int_equal(res.scl, 10);

    /* The hole (20) filled: SCL runs through the pending 30 and 40. */
    assert_int_equal(append(f->s, HDR(0), &res, 1, R(20, 10, 1, 'b')), HX_OK);
    assert_int_equal(res.scl, 40);
    assert_int_equal(res.max_lsn, 40);
    assert_int_equal(records_of(f->s, 0), 4);

    /* A duplicate inside one append is stored once. */
    assert_int_equal(append(f->s, HDR(0), &res, 2, R(50, 40, 1, 'e'),
                            R(50, 40, 1, 'e')),
                     HX_OK);
    assert_int_equal(res.stored, 1);
    assert_int_equal(res.duplicates, 1);
    assert_int_equal(res.scl, 50);
}

/* Five records out of LSN order, two appends. Page 5: 1 "AAAA"@0,
 * 3 "BB"@2, 5 "C"@1; page 6: 2 "YYYY"@0, 4 "ZZZZ"@0. */
static void append_pages_5_and_6(segment_store *s)
{
    assert_int_equal(
        append(s, HDR(0), NULL, 3,
               mkrec(5, 4, 5, 0, 1, 1, 'C', 1), mkrec(4, 3, 6, 0, 1, 0, 'Z', 4),
               mkrec(3, 2, 5, 0, 1, 2, 'B', 2)),
        HX_OK);
    assert_int_equal(append(s, HDR(0), NULL, 2,
                            mkrec(2, 1, 6, 0, 1, 0, 'Y', 4),
                            mkrec(1, 0, 5, 0, 1, 0, 'A', 4)),
                     HX_OK);
}

/* DESIGN.md "The read path": GetPage takes the newest version at or below
 * read_lsn and applies the page's later records up to read_lsn, in LSN
 * order whatever the arrival order; older read points see older bytes; a
 * page never written reads as zeros with page_lsn 0. */
static void test_get_page_applies_in_lsn_order(void **state)
{
    fixture *f = *state;
    append_pages_5_and_6(f->s);
    uint8_t p[PAGE_SIZE], zero[PAGE_SIZE] = {0};
    uint64_t pl = 99;
    read_page(f->s, 0, 5, 5, p, &pl);
    assert_memory_equal(p, "ACBB", 4);
    assert_memory_equal(p + 4, zero, PAGE_SIZE - 4);
    assert_int_equal(pl, 5);
    read_page(f->s, 0, 5, 4, p, &pl);
    assert_memory_equal(p, "AABB", 4);
    assert_int_equal(pl, 3);
    read_page(f->s, 0, 5, 2, p, &pl);
    assert_memory_equal(p, "AAAA", 4);
    assert_int_equal(pl, 1);
    read_page(f->s, 0, 5, 0, p, &pl);
    assert_memory_equal(p, zero, PAGE_SIZE);
    assert_int_equal(pl, 0);
    read_page(f->s, 0, 6, 5, p, &pl);
    assert_memory_equal(p, "ZZZZ", 4); /* 4 wrote over 2 */
    assert_int_equal(pl, 4);
    read_page(f->s, 0, 6, 3, p, &pl);
    assert_memory_equal(p, "YYYY", 4);
}

/* Issue 3 / DESIGN.md "The read path": reads above the SCL are refused;
 * an unknown segment is NOT_FOUND; a page outside the PG is INVALID. */
static void test_read_refusals(void **state)
{
    fixture *f = *state;
    assert_int_equal(append(f->s, HDR(1), NULL, 2, R(1, 0, 100, 'a'),
                            R(3, 2, 100, 'c')),
                     HX_OK);
    assert_int_equal(page_rc(f->s, 1, 100, 1), HX_OK);
    assert_int_equal(page_rc(f->s, 1, 100, 2), HX_ERR_NOT_COMPLETE);
    assert_int_equal(page_rc(f->s, 1, 100, 3), HX_ERR_NOT_COMPLETE);
    assert_int_equal(page_rc(f->s, 2, 200, 1), HX_ERR_NOT_FOUND);
    assert_int_equal(page_rc(f->s, 1, 5, 1), HX_ERR_INVALID);
    assert_int_equal(page_rc(f->s, 1, 200, 1), HX_ERR_INVALID);
}

/* Issue 3: close + reopen keeps records, SCL (and the pending records
 * above it, so a later fill still advances it) and epochs. */
static void test_reopen_keeps_state(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    app_hdr h = HDR(0);
    h.vepoch = 7;
    h.mepoch = 3;
    assert_int_equal(append(f->s, h, &res, 4, RC(1, 0, 1, 'a'),
                            R(2, 1, 1, 'b'), R(4, 3, 1, 'd'),
                            RC(5, 4, 2, 'e')),
                     HX_OK);
    assert_int_equal(res.scl, 2);
    uint8_t before[PAGE_SIZE], after[PAGE_SIZE];
    uint64_t pl1, pl2;
    read_page(f->s, 0, 1, 2, before, &pl1);

    reopen(f);
    assert_int_equal(segment_store_volume_epoch(f->s, VOL), 7);
    Hexad__SegmentInfoResponse *r = info(f->s, UINT64_MAX, false, 0);
    const Hexad__SegmentInfo *si = info_pg(r, 0);
    assert_non_null(si);
    assert_int_equal(si->scl, 2);
    assert_int_equal(si->scl_cpl, 1);
    assert_int_equal(si->max_lsn, 5);
    assert_int_equal(si->membership_epoch, 3);
    assert_int_equal(si->n_members, 6);
    assert_string_equal(si->members[0], "s1");
    assert_int_equal(r->volume_epoch, 7);
    assert_non_null(r->geometry);
    assert_int_equal(r->geometry->page_size, PAGE_SIZE);
    segment_store_segment_info_free(r);
    assert_int_equal(records_of(f->s, 0), 4);
    read_page(f->s, 0, 1, 2, after, &pl2);
    assert_memory_equal(before, after, PAGE_SIZE);
    assert_int_equal(pl1, pl2);

    /* The hole filled after the restart: the rebuilt chain advances. */
    h.vepoch = 7;
    assert_int_equal(append(f->s, h, &res, 1, R(3, 2, 1, 'c')), HX_OK);
    assert_int_equal(res.scl, 5);
    reopen(f);
    r = info(f->s, UINT64_MAX, false, 0);
    assert_int_equal(info_pg(r, 0)->scl, 5);
    assert_int_equal(info_pg(r, 0)->scl_cpl, 5);
    segment_store_segment_info_free(r);
}

/* DESIGN.md vocabulary "volume epoch" (fences a stale writer): an older
 * epoch is refused with the current one; a higher one is adopted and
 * persisted; SealEpoch raises it and refuses lowering it. */
static void test_volume_epoch_fencing(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    app_hdr h = HDR(0);
    h.vepoch = 5;
    assert_int_equal(append(f->s, h, &res, 1, R(1, 0, 1, 'a')), HX_OK);
    h.vepoch = 3;
    assert_int_equal(append(f->s, h, &res, 1, R(2, 1, 1, 'b')),
                     HX_ERR_STALE_EPOCH);
    assert_int_equal(res.why.current_epoch, 5);
    assert_int_equal(records_of(f->s, 0), 1);

    uint64_t cur = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_seal_epoch(f->s, VOL, 8, &cur, &why),
                     HX_OK);
    assert_int_equal(cur, 8);
    assert_int_equal(segment_store_seal_epoch(f->s, VOL, 6, &cur, &why),
                     HX_ERR_STALE_EPOCH);
    assert_int_equal(why.current_epoch, 8);
    h.vepoch = 5; /* the writer that was sealed out */
    assert_int_equal(append(f->s, h, &res, 1, R(2, 1, 1, 'b')),
                     HX_ERR_STALE_EPOCH);
    assert_int_equal(res.why.current_epoch, 8);

    h.vepoch = 9; /* a newer writer: adopted */
    assert_int_equal(append(f->s, h, &res, 1, R(2, 1, 1, 'b')), HX_OK);
    assert_int_equal(segment_store_volume_epoch(f->s, VOL), 9);
    reopen(f);
    assert_int_equal(segment_store_volume_epoch(f->s, VOL), 9);
    /* Seal of an unknown volume creates it. */
    assert_int_equal(segment_store_seal_epoch(f->s, 42, 3, &cur, NULL), HX_OK);
    assert_int_equal(segment_store_volume_epoch(f->s, 42), 3);
}

/* DESIGN.md vocabulary "membership epoch"; issue 3: an older membership
 * epoch is refused, a newer one brings the new members; a segment is
 * created only with 6 members that include this node. */
static void test_membership_epoch(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    static const char *bad5[5] = {"s1", "s2", "s3", "s4", "s5"};
    static const char *noself[6] = {"s2", "s3", "s4", "s5", "s6", "s7"};
    static const char *newm[6] = {"s1", "s2", "s3", "s4", "s5", "s7"};
    app_hdr h = HDR(0);
    h.members = bad5;
    h.n_members = 5;
    assert_int_equal(append(f->s, h, &res, 1, R(1, 0, 1, 'a')),
                     HX_ERR_INVALID);
    h.members = noself;
    h.n_members = 6;
    assert_int_equal(append(f->s, h, &res, 1, R(1, 0, 1, 'a')),
                     HX_ERR_INVALID);
    assert_int_equal(page_rc(f->s, 0, 1, 0), HX_ERR_NOT_FOUND);

    h = HDR(0);
    h.mepoch = 2;
    assert_int_equal(append(f->s, h, &res, 1, R(1, 0, 1, 'a')), HX_OK);
    h.mepoch = 1;
    assert_int_equal(append(f->s, h, &res, 1, R(2, 1, 1, 'b')),
                     HX_ERR_STALE_MEMBERSHIP);
    h.mepoch = 3;
    h.members = newm;
    assert_int_equal(append(f->s, h, &res, 1, R(2, 1, 1, 'b')), HX_OK);
    reopen(f);
    Hexad__SegmentInfoResponse *r = info(f->s, 0, false, 0);
    const Hexad__SegmentInfo *si = info_pg(r, 0);
    assert_int_equal(si->membership_epoch, 3);
    assert_string_equal(si->members[5], "s7");
    segment_store_segment_info_free(r);
}

/* DESIGN.md "Recovery ... Corruption": every record carries a checksum;
 * issue 3: one bad record refuses the whole append and nothing of it is
 * stored; a backlink not below its LSN is refused. */
static void test_bad_checksum_stores_nothing(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    trec *bad = R(2, 1, 1, 'b');
    bad->data[0] ^= 1; /* after sealing */
    assert_int_equal(append(f->s, HDR(0), &res, 3, R(1, 0, 1, 'a'), bad,
                            R(3, 2, 1, 'c')),
                     HX_ERR_CHECKSUM);
    assert_int_equal(page_rc(f->s, 0, 1, 0), HX_ERR_NOT_FOUND);
    Hexad__SegmentInfoResponse *r = info(f->s, 0, true, 0);
    assert_int_equal(r->n_segments, 0);
    segment_store_segment_info_free(r);

    assert_int_equal(append(f->s, HDR(0), &res, 1, R(1, 0, 1, 'a')), HX_OK);
    assert_int_equal(append(f->s, HDR(0), &res, 2, R(2, 1, 1, 'b'),
                            R(3, 3, 1, 'c')),
                     HX_ERR_INVALID);
    assert_int_equal(records_of(f->s, 0), 1);
}

/* DESIGN.md "Recovery, membership and repair" (truncate what lies above
 * VDL, recorded with the epoch, so a late record from the dead writer is
 * refused): truncate drops the range, lowers the SCL, refuses late records
 * of the old epoch in the range, and survives a reopen. */
static void test_truncate(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    assert_int_equal(append(f->s, HDR(0), &res, 6, RC(1, 0, 1, 'a'),
                            R(2, 1, 1, 'b'), RC(3, 2, 2, 'c'),
                            R(4, 3, 1, 'd'), RC(5, 4, 1, 'e'),
                            R(6, 5, 2, 'f')),
                     HX_OK);
    assert_int_equal(res.scl, 6);
    uint64_t scl = 0;
    segment_store_why why = {0};
    /* Writer at epoch 1 died; recovery at epoch 2 keeps up to 3. */
    assert_int_equal(segment_store_seal_epoch(f->s, VOL, 2, &scl, &why), HX_OK);
    assert_int_equal(segment_store_truncate(f->s, VOL, 0, 1, 4, 1000, &scl,
                                            &why),
                     HX_ERR_STALE_EPOCH);
    assert_int_equal(segment_store_truncate(f->s, VOL, 0, 2, 4, 1000, &scl,
                                            &why),
                     HX_OK);
    assert_int_equal(scl, 3);
    assert_int_equal(records_of(f->s, 0), 3);
    assert_int_equal(page_rc(f->s, 0, 1, 3), HX_OK);
    assert_int_equal(page_rc(f->s, 0, 1, 4), HX_ERR_NOT_COMPLETE);
    uint8_t p[PAGE_SIZE];
    uint64_t pl;
    read_page(f->s, 0, 1, 3, p, &pl);
    assert_memory_equal(p, "bbbb", 4);
    assert_int_equal(pl, 2);

    /* A late record of epoch 1 in the range: dropped, still acked. */
    app_hdr h = HDR(0);
    h.vepoch = 2; /* delivered late by a healthy path */
    assert_int_equal(append(f->s, h, &res, 1, R(4, 3, 1, 'd')), HX_OK);
    assert_int_equal(res.dropped, 1);
    assert_int_equal(res.scl, 3);
    /* The new writer (epoch 2) continues above the range. */
    assert_int_equal(append(f->s, h, &res, 1,
                            mkrec(1001, 3, 1, HX_RECORD_CPL, 2, 0, 'N', 4)),
                     HX_OK);
    assert_int_equal(res.scl, 1001);

    reopen(f);
    Hexad__SegmentInfoResponse *r = info(f->s, UINT64_MAX, true, 0);
    const Hexad__SegmentInfo *si = info_pg(r, 0);
    assert_int_equal(si->scl, 1001);
    assert_int_equal(si->scl_cpl, 1001);
    assert_int_equal(si->n_truncations, 1);
    assert_int_equal(si->truncations[0]->from_lsn, 4);
    assert_int_equal(si->truncations[0]->to_lsn, 1000);
    assert_int_equal(si->truncations[0]->epoch, 2);
    assert_int_equal(si->n_tail, 4);
    assert_int_equal(si->tail[2]->lsn, 3);
    assert_int_equal(si->tail[3]->lsn, 1001);
    segment_store_segment_info_free(r);
    /* Still refused after the reopen. */
    assert_int_equal(append(f->s, h, &res, 1, R(5, 4, 1, 'e')), HX_OK);
    assert_int_equal(res.dropped, 1);
    read_page(f->s, 0, 1, 1001, p, &pl);
    assert_memory_equal(p, "NNNN", 4);
    assert_int_equal(pl, 1001);
    read_page(f->s, 0, 2, 1001, p, &pl);
    assert_memory_equal(p, "cccc", 4);

    /* A segment never seen: recorded, SCL 0; the first append fills it. */
    assert_int_equal(segment_store_truncate(f->s, VOL, 3, 2, 10, 20, &scl,
                                            &why),
                     HX_OK);
    assert_int_equal(scl, 0);
    assert_int_equal(append(f->s, (app_hdr){3, 2, 1, members6, 6}, &res, 2,
                            mkrec(15, 0, 300, 0, 1, 0, 'x', 4),
                            mkrec(21, 0, 300, 0, 2, 0, 'y', 4)),
                     HX_OK);
    assert_int_equal(res.dropped, 1);
    assert_int_equal(res.scl, 21);
    r = info(f->s, 0, false, 0);
    assert_int_equal(info_pg(r, 3)->n_members, 6);
    segment_store_segment_info_free(r);
}

/* Truncating a range below the SCL keeps the records above it, now
 * pending (they no longer connect); the SCL stops below the range. */
static void test_truncate_middle(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    assert_int_equal(append(f->s, HDR(0), &res, 4, R(1, 0, 1, 'a'),
                            R(2, 1, 1, 'b'), R(3, 2, 1, 'c'),
                            R(4, 3, 1, 'd')),
                     HX_OK);
    uint64_t scl = 0;
    assert_int_equal(segment_store_truncate(f->s, VOL, 0, 1, 2, 2, &scl, NULL),
                     HX_OK);
    assert_int_equal(scl, 1);
    Hexad__SegmentInfoResponse *r = info(f->s, UINT64_MAX, false, 0);
    assert_int_equal(info_pg(r, 0)->max_lsn, 4);
    segment_store_segment_info_free(r);
    reopen(f);
    r = info(f->s, UINT64_MAX, false, 0);
    assert_int_equal(info_pg(r, 0)->scl, 1);
    assert_int_equal(info_pg(r, 0)->max_lsn, 4);
    segment_store_segment_info_free(r);
}

/* Issue 3 / hexad.proto SegmentInfo: last_lsn_le_limit and cpl_le_limit
 * are bounded by min(limit, SCL); the tail lists every record held above
 * tail_from with its flags, ascending; an unknown volume answers empty. */
static void test_segment_info(void **state)
{
    fixture *f = *state;
    /* PG 0 chain 2 -> 4(CPL) -> 6 -> 8(CPL) -> 10, and 14 pending. */
    assert_int_equal(append(f->s, HDR(0), NULL, 6, R(2, 0, 1, 'a'),
                            RC(4, 2, 1, 'b'), R(6, 4, 1, 'c'),
                            RC(8, 6, 1, 'd'), R(10, 8, 1, 'e'),
                            RC(14, 12, 1, 'g')),
                     HX_OK);
    Hexad__SegmentInfoResponse *r = info(f->s, 7, true, 6);
    const Hexad__SegmentInfo *si = info_pg(r, 0);
    assert_int_equal(r->volume, VOL);
    assert_int_equal(r->volume_epoch, 1);
    assert_int_equal(r->geometry->pg_pages, PG_PAGES);
    assert_int_equal(si->scl, 10);
    assert_int_equal(si->max_lsn, 14);
    assert_int_equal(si->scl_cpl, 8);
    assert_int_equal(si->last_lsn_le_limit, 6);
    assert_int_equal(si->cpl_le_limit, 4);
    assert_int_equal(si->n_tail, 3);
    assert_int_equal(si->tail[0]->lsn, 8);
    assert_int_equal(si->tail[0]->flags, HX_RECORD_CPL);
    assert_int_equal(si->tail[1]->lsn, 10);
    assert_int_equal(si->tail[1]->flags, 0);
    assert_int_equal(si->tail[2]->lsn, 14);
    segment_store_segment_info_free(r);

    /* The limit above the SCL: bounded by the SCL (14 is not complete). */
    r = info(f->s, 100, false, 0);
    si = info_pg(r, 0);
    assert_int_equal(si->last_lsn_le_limit, 10);
    assert_int_equal(si->cpl_le_limit, 8);
    assert_int_equal(si->n_tail, 0);
    segment_store_segment_info_free(r);
    r = info(f->s, 1, false, 0);
    assert_int_equal(info_pg(r, 0)->last_lsn_le_limit, 0);
    assert_int_equal(info_pg(r, 0)->cpl_le_limit, 0);
    segment_store_segment_info_free(r);

    Hexad__SegmentInfoRequest req = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    req.volume = 77;
    assert_int_equal(segment_store_segment_info(f->s, &req, &r, NULL), HX_OK);
    assert_int_equal(r->n_segments, 0);
    assert_int_equal(r->volume_epoch, 0);
    segment_store_segment_info_free(r);
}

/* hexad.proto RecordFlag IMAGE: a whole-page record resets the page; reads
 * before it still see the older bytes. */
static void test_image_resets_page(void **state)
{
    fixture *f = *state;
    assert_int_equal(
        append(f->s, HDR(0), NULL, 4, mkrec(1, 0, 1, 0, 1, 100, 'a', 8),
               mkrec(2, 1, 1, HX_RECORD_IMAGE, 1, 0, 'I', 0),
               mkrec(3, 2, 1, 0, 1, 0, 'p', 2),
               mkrec(4, 3, 1, HX_RECORD_IMAGE, 1, 0, 'J', 0)),
        HX_OK);
    uint8_t p[PAGE_SIZE], want[PAGE_SIZE];
    uint64_t pl;
    read_page(f->s, 0, 1, 1, p, &pl);
    memset(want, 0, sizeof want);
    memset(want + 100, 'a', 8);
    assert_memory_equal(p, want, PAGE_SIZE);
    read_page(f->s, 0, 1, 3, p, &pl);
    memset(want, 'I', sizeof want);
    memset(want, 'p', 2);
    assert_memory_equal(p, want, PAGE_SIZE);
    assert_int_equal(pl, 3);
    read_page(f->s, 0, 1, 4, p, &pl);
    memset(want, 'J', sizeof want);
    assert_memory_equal(p, want, PAGE_SIZE);
}

/* DESIGN.md "The write path" step 2 (one synced write for many incoming
 * records): appends to several segments staged together are made durable
 * by one write and reported in arrival order. */
typedef struct {
    int order[8];
    int rc[8];
    uint64_t scl[8];
    int n;
} done_log;

static void log_done(void *cookie, const segment_store_append_result *res,
                     void *arg)
{
    done_log *d = arg;
    d->order[d->n] = (int)(intptr_t)cookie;
    d->rc[d->n] = res->rc;
    d->scl[d->n] = res->scl;
    d->n++;
}

static void stage(segment_store *s, app_hdr h, int cookie, trec *t)
{
    Hexad__AppendRecords req;
    Hexad__Geometry geo;
    Hexad__Record *ptrs[1];
    fill_req(&req, &geo, ptrs, h, &t, 1);
    assert_int_equal(segment_store_stage_append(s, &req, (void *)(intptr_t)cookie),
                     HX_OK);
    free(t);
}

static void test_group_commit(void **state)
{
    fixture *f = *state;
    Hexad__NodeStatus *st = NULL;
    stage(f->s, HDR(0), 1, R(1, 0, 1, 'a'));
    stage(f->s, HDR(1), 2, R(2, 0, 100, 'b'));
    stage(f->s, HDR(0), 3, R(3, 1, 2, 'c'));
    app_hdr old = HDR(0);
    old.vepoch = 0;
    stage(f->s, old, 4, R(4, 3, 2, 'd'));
    assert_int_equal(segment_store_staged_count(f->s), 4);
    /* Nothing is visible before the flush. */
    assert_int_equal(page_rc(f->s, 0, 1, 1), HX_ERR_NOT_FOUND);
    uint64_t cur;
    assert_int_equal(segment_store_seal_epoch(f->s, VOL, 1, &cur, NULL),
                     HX_ERR_BUSY);
    done_log d = {0};
    assert_int_equal(segment_store_flush(f->s, log_done, &d), HX_OK);
    assert_int_equal(d.n, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(d.order[i], i + 1);
    assert_int_equal(d.rc[0], HX_OK);
    assert_int_equal(d.scl[0], 3); /* state after the whole batch */
    assert_int_equal(d.scl[1], 2);
    assert_int_equal(d.rc[3], HX_ERR_STALE_EPOCH);
    assert_int_equal(segment_store_status(f->s, &st), HX_OK);
    assert_int_equal(st->batches_synced, 1);
    assert_int_equal(st->records_received, 4);
    assert_int_equal(st->n_segments, 2);
    segment_store_status_free(st);

    /* A batch that changes nothing (duplicates only) is acknowledged
     * without another write: what it names is already durable. */
    stage(f->s, HDR(0), 5, R(3, 1, 2, 'c'));
    d.n = 0;
    assert_int_equal(segment_store_flush(f->s, log_done, &d), HX_OK);
    assert_int_equal(d.rc[0], HX_OK);
    assert_int_equal(d.scl[0], 3);
    assert_int_equal(segment_store_status(f->s, &st), HX_OK);
    assert_int_equal(st->batches_synced, 1);
    segment_store_status_free(st);
}

/* Record i of test_crash_after_checkpoint: 8 bytes of its own at a slot
 * no other record writes, so the page shows whether it was applied. */
#define CRASH_SLOTS (PAGE_SIZE / 8)
#define CRASH_RECORDS_MAX 6000u /* pages 1..94, all in PG 0 */
static uint64_t crash_page(uint32_t i) { return 1 + i / CRASH_SLOTS; }
static uint32_t crash_off(uint32_t i) { return (i % CRASH_SLOTS) * 8; }
static uint8_t crash_fill(uint32_t i) { return (uint8_t)(i * 31u + 7u); }

/* The child (this program run as `--crash-child DIR`, a fresh process:
 * a fork would inherit RocksDB's default Env without its flush threads):
 * appends one record per synced batch until a checkpoint ran, three more,
 * then dies by SIGKILL with the store open. RocksDB has no WAL here, so
 * its memtables die with it; only the journal and SST files remain.
 * Reports on stdout how many appends were acknowledged. */
static void crash_child(const char *dir, int fd)
{
    segment_store_options o = {.journal_bytes = SEGMENT_JOURNAL_MIN_BYTES,
                               .checkpoint_inline = true};
    segment_store *s = NULL;
    if (segment_store_open(dir, "s1", &o, &s, NULL) != HX_OK)
        _exit(3);
    uint32_t after = 0;
    for (uint32_t i = 1; i <= CRASH_RECORDS_MAX; i++) {
        segment_store_append_result res;
        if (append(s, HDR(0), &res, 1,
                   mkrec(i, i - 1, crash_page(i), 0, 1, crash_off(i),
                         crash_fill(i), 8)) != HX_OK || res.rc != HX_OK)
            _exit(4);
        if (after == 0 && segment_store_counters(s)->checkpoints > 0)
            after = i;
        if (after != 0 && i == after + 3) {
            if (write(fd, &i, sizeof i) != sizeof i)
                _exit(5);
            raise(SIGKILL);
        }
    }
    _exit(6); /* no checkpoint came */
}

/* A crash right after the write that triggered a checkpoint loses
 * nothing acknowledged (segment_checkpoint.c): the checkpoint releases
 * only journal entries of batches RocksDB already held when it flushed.
 * Once it started between a batch's journal append and its RocksDB write,
 * so it released that batch's entry while the batch sat in a memtable the
 * flush had not taken; the crash then lost it, and the SCL persisted by
 * the three batches after it still covered its record. Reads wait for the
 * chain check the crash calls for (segment_verify.c), which finds no
 * record missing. */
/* Runs this program as `mode dir` in a child process that ends by
 * SIGKILL after writing a number to its stdout; returns that number. */
static uint32_t run_crash_child(const char *mode, const char *dir)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        if (dup2(p[1], STDOUT_FILENO) < 0)
            _exit(7);
        execl("/proc/self/exe", "test_segment_store", mode, dir,
              (char *)NULL);
        _exit(8);
    }
    close(p[1]);
    uint32_t n = 0;
    ssize_t got = read(p[0], &n, sizeof n);
    close(p[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("the child did not die by SIGKILL (exit status %d)",
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    assert_int_equal(got, sizeof n);
    return n;
}

static void test_crash_after_checkpoint(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/hx_test_ckpt_crash_XXXXXX");
    assert_non_null(mkdtemp(dir));
    uint32_t n = run_crash_child("--crash-child", dir);
    assert_true(n > 3);

    segment_store *s = NULL;
    segment_store_why why = {0};
    assert_int_equal(segment_store_open(dir, "s1", &hx_test_store_options, &s,
                                        &why), HX_OK);
    assert_int_equal(segment_store_scl(s, VOL, 0), n);
    walk_after_crash(s, 0, n);
    uint8_t img[PAGE_SIZE];
    uint64_t page_lsn = 0, cached = 0;
    for (uint32_t i = 1; i <= n; i++) {
        if (crash_page(i) != cached) {
            read_page(s, 0, crash_page(i), n, img, &page_lsn);
            cached = crash_page(i);
        }
        for (uint32_t b = 0; b < 8; b++)
            if (img[crash_off(i) + b] != crash_fill(i))
                fail_msg("record %u of %u (page %" PRIu64 ") was acknowledged "
                         "before the crash but is not applied after it", i, n,
                         crash_page(i));
    }
    segment_store_close(s);
    hx_test_rm_tree(dir);
}

/* The child of test_failed_write_not_replayed: record 1; then record 2
 * on page 7, whose synced write fails after its journal entry landed;
 * then record 2 again, now on page 8, and record 3 on page 8; SIGKILL. */
static void withdrawn_child(const char *dir)
{
    segment_store *s = NULL;
    if (segment_store_open(dir, "s1", &hx_test_store_options, &s, NULL) !=
        HX_OK)
        _exit(3);
    segment_store_append_result res;
    if (append(s, HDR(0), &res, 1, R(1, 0, 1, 'a')) != HX_OK ||
        res.rc != HX_OK)
        _exit(4);
    segment_store_inject_write_error(s, 1, "IO error: EIO");
    append(s, HDR(0), &res, 1, mkrec(2, 1, 7, 0, 1, 0, 'x', 4));
    if (res.rc == HX_OK)
        _exit(5);
    if (append(s, HDR(0), &res, 1, mkrec(2, 1, 8, 0, 1, 0, 'y', 4)) !=
            HX_OK || res.rc != HX_OK ||
        append(s, HDR(0), &res, 1, mkrec(3, 2, 8, 0, 1, 8, 'z', 4)) !=
            HX_OK || res.rc != HX_OK)
        _exit(6);
    uint32_t scl = (uint32_t)segment_store_scl(s, VOL, 0);
    if (write(STDOUT_FILENO, &scl, sizeof scl) != sizeof scl)
        _exit(7);
    raise(SIGKILL);
}

/* A synced write that RocksDB refused after its journal entry landed is
 * not replayed after a crash (segment_store.c store_write): the entry is
 * withdrawn. Replayed, it would come before the writes made on the state
 * without it: here record 2 of page 7, whose index key would survive the
 * later record 2 of page 8 and give page 7 a record it never had. */
static void test_failed_write_not_replayed(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/hx_test_withdrawn_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(run_crash_child("--crash-child-withdrawn", dir), 3);
    segment_store *s = NULL;
    segment_store_why why = {0};
    assert_int_equal(segment_store_open(dir, "s1", &hx_test_store_options, &s,
                                        &why), HX_OK);
    assert_int_equal(segment_store_scl(s, VOL, 0), 3);
    walk_after_crash(s, 0, 3);
    uint8_t img[PAGE_SIZE], zero[PAGE_SIZE] = {0};
    uint64_t page_lsn = 0;
    read_page(s, 0, 7, 3, img, &page_lsn);
    assert_int_equal(page_lsn, 0);
    assert_memory_equal(img, zero, PAGE_SIZE);
    read_page(s, 0, 8, 3, img, &page_lsn);
    assert_int_equal(page_lsn, 3);
    assert_memory_equal(img, "yyyy", 4);
    assert_memory_equal(img + 8, "zzzz", 4);
    segment_store_close(s);
    hx_test_rm_tree(dir);
}

/* Issue 3: a failed synced write (disk full) refuses every append of the
 * batch with its cause, and memory never claims what disk lacks; the
 * store keeps serving and later writes succeed. */
static void test_write_failure_reloads(void **state)
{
    fixture *f = *state;
    segment_store_append_result res;
    assert_int_equal(append(f->s, HDR(0), &res, 1, R(1, 0, 1, 'a')), HX_OK);
    segment_store_inject_write_error(f->s, 1,
                                     "IO error: No space left on device");
    app_hdr h = HDR(0);
    h.vepoch = 4;
    assert_int_equal(append(f->s, h, &res, 1, R(2, 1, 1, 'b')),
                     HX_ERR_NO_SPACE);
    assert_non_null(strstr(res.why.msg, "No space"));
    assert_int_equal(segment_store_volume_epoch(f->s, VOL), 1);
    assert_int_equal(page_rc(f->s, 0, 1, 1), HX_OK);
    assert_int_equal(page_rc(f->s, 0, 1, 2), HX_ERR_NOT_COMPLETE);
    assert_int_equal(records_of(f->s, 0), 1);

    /* A segment created by the failed batch does not survive in memory. */
    segment_store_inject_write_error(f->s, 1, "IO error: EIO");
    assert_int_equal(append(f->s, HDR(1), &res, 1, R(5, 0, 100, 'x')),
                     HX_ERR_IO);
    assert_int_equal(page_rc(f->s, 1, 100, 0), HX_ERR_NOT_FOUND);

    /* Truncate and seal failures roll memory back too. */
    uint64_t scl = 0;
    segment_store_inject_write_error(f->s, 1, "IO error: EIO");
    assert_int_equal(segment_store_truncate(f->s, VOL, 0, 1, 1, 9, &scl, NULL),
                     HX_ERR_IO);
    assert_int_equal(page_rc(f->s, 0, 1, 1), HX_OK);
    segment_store_inject_write_error(f->s, 1, "IO error: EIO");
    assert_int_equal(segment_store_seal_epoch(f->s, VOL, 9, &scl, NULL),
                     HX_ERR_IO);
    assert_int_equal(segment_store_volume_epoch(f->s, VOL), 1);

    assert_int_equal(append(f->s, h, &res, 1, R(2, 1, 1, 'b')), HX_OK);
    assert_int_equal(res.scl, 2);
    assert_int_equal(segment_store_volume_epoch(f->s, VOL), 4);
}

/* DESIGN.md "Corruption": a stored record is verified on every read; a
 * flipped byte is reported as HX_ERR_CHECKSUM, never applied. */
static void test_corrupt_stored_record(void **state)
{
    fixture *f = *state;
    assert_int_equal(append(f->s, HDR(0), NULL, 2, R(1, 0, 1, 'a'),
                            R(2, 1, 1, 'b')),
                     HX_OK);
    segment_store_close(f->s);
    f->s = NULL;

    raw_store r;
    raw_store_open(&r, f->dir);
    char *err = NULL;
    uint8_t key[17] = {'r', 0, 0, 0, VOL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    size_t vl = 0;
    char *v = rocksdb_get_cf(r.db, r.ro, raw_store_cf(&r, 'r'), (char *)key,
                             sizeof key, &vl, &err);
    assert_null(err);
    assert_non_null(v);
    char *b = memmem(v, vl, "bbbb", 4); /* the patch data */
    assert_non_null(b);
    b[1] ^= 0x40;
    rocksdb_put_cf(r.db, r.wo, raw_store_cf(&r, 'r'), (char *)key, sizeof key,
                   v, vl, &err);
    assert_null(err);
    rocksdb_free(v);
    raw_store_close(&r);

    reopen(f);
    assert_int_equal(page_rc(f->s, 0, 1, 1), HX_OK);
    assert_int_equal(page_rc(f->s, 0, 1, 2), HX_ERR_CHECKSUM);
}

/* Counts the 'r' keys in one column family of a raw-opened store. */
static size_t raw_records(raw_store *r, rocksdb_column_family_handle_t *cf)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, r->ro, cf);
    size_t n = 0;
    for (rocksdb_iter_seek(it, "r", 1); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl = 0;
        if (rocksdb_iter_key(it, &kl)[0] != 'r')
            break;
        n++;
    }
    rocksdb_iter_destroy(it);
    return n;
}

/* A store from before the records had a column family of their own holds
 * them in "default": open moves them, and every page reads as before. */
static void test_records_move_to_their_family(void **state)
{
    fixture *f = *state;
    append_pages_5_and_6(f->s);
    segment_store_close(f->s);
    f->s = NULL;

    /* Rewrite it in the old layout: records in "default", no "records". */
    raw_store r;
    raw_store_open(&r, f->dir);
    assert_int_equal(raw_records(&r, r.cf[0]), 0);
    assert_int_equal(raw_records(&r, r.cf[1]), 5);
    char *err = NULL;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r.db, r.ro, r.cf[1]);
    for (rocksdb_iter_seek(it, "r", 1); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        rocksdb_put_cf(r.db, r.wo, r.cf[0], k, kl, v, vl, &err);
        assert_null(err);
    }
    rocksdb_iter_destroy(it);
    rocksdb_drop_column_family(r.db, r.cf[1], &err);
    assert_null(err);
    raw_store_close(&r);

    reopen(f);
    /* Page 5 at its newest, page 6 below its last record. */
    const struct {
        uint64_t page, read_lsn, page_lsn;
        const char *head;
    } want[] = {{5, 5, 5, "ACBB"}, {6, 3, 2, "YYYY"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint8_t p[PAGE_SIZE];
        uint64_t pl = 0;
        read_page(f->s, 0, want[i].page, want[i].read_lsn, p, &pl);
        assert_memory_equal(p, want[i].head, 4);
        assert_int_equal(pl, want[i].page_lsn);
    }
    segment_store_close(f->s);
    f->s = NULL;

    raw_store_open(&r, f->dir);
    assert_int_equal(raw_records(&r, r.cf[0]), 0);
    assert_int_equal(raw_records(&r, r.cf[1]), 5);
    raw_store_close(&r);
    reopen(f);
    /* Closing flushed both families: each holds a file in L0 now. */
    segment_store_family_stats fr, fo;
    segment_store_families(f->s, &fr, &fo);
    assert_true(fr.sst_bytes > 0);
    assert_true(fo.sst_bytes > 0);
    assert_true(fr.l0_files >= 1);
    assert_true(fo.l0_files >= 1);
}

/* Appends record lsn (prev lsn - 1: pending, never a fork, whatever the
 * SCL) of the given epoch with the volume's current epoch; returns how
 * many were dropped as truncated. */
static uint32_t dropped_at(segment_store *s, uint64_t lsn, uint64_t epoch,
                           uint64_t vepoch)
{
    app_hdr h = HDR(0);
    h.vepoch = vepoch;
    segment_store_append_result res;
    assert_int_equal(append(s, h, &res, 1,
                            mkrec(lsn, lsn - 1, 1, 0, epoch, 0, 'x', 4)),
                     HX_OK);
    return res.dropped;
}

/* segment_truncations.c invariant 1: after 100 recoveries (ranges
 * [10k+1, 10k+5] at epoch k+1, far past the 64 a SegmentMeta once held),
 * a dead writer's record inside a range is refused, a record between two
 * ranges is not, before and after a reopen; SegmentInfo lists them all. */
static void test_truncations_never_merge_gaps(void **state)
{
    fixture *f = *state;
    uint64_t scl = 0;
    segment_store_why why = {0};
    for (uint64_t k = 1; k <= 100; k++) {
        assert_int_equal(segment_store_seal_epoch(f->s, VOL, k + 1, &scl,
                                                  &why), HX_OK);
        assert_int_equal(segment_store_truncate(f->s, VOL, 0, k + 1,
                                                10 * k + 1, 10 * k + 5, &scl,
                                                &why), HX_OK);
    }
    for (int pass = 0; pass < 2; pass++) {
        /* Old merging joined [11,15] and [21,25] over the gap 16..20. */
        assert_int_equal(dropped_at(f->s, 13 + 10 * pass, 1, 101), 1);
        assert_int_equal(dropped_at(f->s, 16 + pass, 1, 101), 0);
        assert_int_equal(dropped_at(f->s, 993, 99, 101), 1);
        assert_int_equal(dropped_at(f->s, 994, 100, 101), 0);
        assert_int_equal(dropped_at(f->s, 996 + pass, 1, 101), 0);
        Hexad__SegmentInfoResponse *r = info(f->s, UINT64_MAX, false, 0);
        const Hexad__SegmentInfo *si = info_pg(r, 0);
        assert_int_equal(si->n_truncations, 100);
        for (size_t i = 0; i < si->n_truncations; i++) {
            assert_int_equal(si->truncations[i]->from_lsn, 10 * (i + 1) + 1);
            assert_int_equal(si->truncations[i]->to_lsn, 10 * (i + 1) + 5);
            assert_int_equal(si->truncations[i]->epoch, i + 2);
        }
        segment_store_segment_info_free(r);
        reopen(f);
    }
    /* A pull reply carries only the ranges reaching above its after_lsn. */
    hx_lsn_range *own = NULL;
    size_t n = 0;
    assert_int_equal(segment_store_truncations(f->s, VOL, 0, 975, &own, &n),
                     HX_OK);
    assert_int_equal(n, 3); /* [971,975] ends at 975: not above it */
    assert_int_equal(own[0].from_lsn, 981);
    free(own);
}

/* Closes the store, rewrites PG 0's SegmentMeta with edit (which may
 * also only look), reopens. */
static void edit_segment_meta(fixture *f, void (*edit)(Hexad__SegmentMeta *))
{
    segment_store_close(f->s);
    f->s = NULL;
    raw_store r;
    raw_store_open(&r, f->dir);
    char *err = NULL;
    const uint8_t key[9] = {'s', 0, 0, 0, VOL, 0, 0, 0, 0};
    size_t vl = 0;
    char *v = rocksdb_get(r.db, r.ro, (const char *)key, sizeof key, &vl,
                          &err);
    assert_non_null(v);
    Hexad__SegmentMeta *m =
        hexad__segment_meta__unpack(NULL, vl, (const uint8_t *)v);
    assert_non_null(m);
    size_t n_trunc = m->n_truncations;
    Hexad__LsnRange **trunc = m->truncations;
    edit(m);
    uint8_t buf[512];
    assert_true(hexad__segment_meta__get_packed_size(m) <= sizeof buf);
    size_t len = hexad__segment_meta__pack(m, buf);
    m->n_truncations = n_trunc; /* what the unpacker owns, to free */
    m->truncations = trunc;
    rocksdb_put(r.db, r.wo, (const char *)key, sizeof key, (const char *)buf,
                len, &err);
    assert_null(err);
    hexad__segment_meta__free_unpacked(m, NULL);
    rocksdb_free(v);
    raw_store_close(&r);
    reopen(f);
}

/* The old format: ranges in the metadata. */
static void add_old_ranges(Hexad__SegmentMeta *m)
{
    static Hexad__LsnRange r1 = HEXAD__LSN_RANGE__INIT;
    static Hexad__LsnRange r2 = HEXAD__LSN_RANGE__INIT;
    static Hexad__LsnRange *rp[2] = {&r1, &r2};
    assert_int_equal(m->n_truncations, 0);
    r1.from_lsn = 10, r1.to_lsn = 20, r1.epoch = 2;
    r2.from_lsn = 40, r2.to_lsn = 50, r2.epoch = 3;
    m->truncations = rp;
    m->n_truncations = 2;
}

static void expect_no_ranges(Hexad__SegmentMeta *m)
{
    assert_int_equal(m->n_truncations, 0);
}

/* A SegmentMeta with ranges (a store from before the 't' keys): opening
 * keeps them, as 't' keys, and the metadata no longer holds them. */
static void test_truncations_from_old_metadata(void **state)
{
    fixture *f = *state;
    assert_int_equal(append(f->s, HDR(0), NULL, 1, R(1, 0, 1, 'a')), HX_OK);
    for (int step = 0; step < 2; step++) {
        /* step 0: migrates them; step 1: finds them in the 't' keys */
        edit_segment_meta(f, step == 0 ? add_old_ranges : expect_no_ranges);
        assert_int_equal(dropped_at(f->s, 15, 1, 1), 1);
        assert_int_equal(dropped_at(f->s, 30 + step, 1, 1), 0);
        assert_int_equal(dropped_at(f->s, 45, 2, 1), 1);
    }
}

static void forget_count(Hexad__SegmentMeta *m)
{
    assert_true(m->records_counted);
    m->records = 0;
    m->records_counted = false;
}

/* Invariant 7: the record count comes back from the metadata after a
 * reopen (records above a hole included, those a truncation deleted not),
 * and a store without it is counted by a walk. */
static void test_record_count_survives_reopen(void **state)
{
    fixture *f = *state;
    assert_int_equal(append(f->s, HDR(0), NULL, 5, R(1, 0, 1, 'a'),
                            R(2, 1, 1, 'b'), R(3, 2, 2, 'c'), R(4, 3, 2, 'd'),
                            R(5, 4, 3, 'e')),
                     HX_OK);
    /* 8 and 9 wait above the hole at 6..7. */
    assert_int_equal(append(f->s, HDR(0), NULL, 2, R(8, 7, 1, 'f'),
                            R(9, 8, 1, 'g')),
                     HX_OK);
    assert_int_equal(records_of(f->s, 0), 7);
    reopen(f);
    assert_int_equal(records_of(f->s, 0), 7);
    assert_int_equal(segment_store_scl(f->s, VOL, 0), 5);
    uint64_t scl = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_seal_epoch(f->s, VOL, 2, &scl, &why), HX_OK);
    assert_int_equal(segment_store_truncate(f->s, VOL, 0, 2, 5, 8, &scl, &why),
                     HX_OK);
    assert_int_equal(records_of(f->s, 0), 5); /* 5 and 8 gone; 9 pending */
    reopen(f);
    assert_int_equal(records_of(f->s, 0), 5);
    edit_segment_meta(f, forget_count); /* a store from before the count */
    assert_int_equal(records_of(f->s, 0), 5);
    assert_int_equal(segment_store_scl(f->s, VOL, 0), 4);
}

static void pulled_done(void *cookie, const segment_store_append_result *res,
                        void *arg)
{
    (void)arg;
    *(segment_store_append_result *)cookie = *res;
}

/* Gossip (proto/README.md "Gossip"): store B, which missed records, pulls
 * A's chain after its own SCL in several bounded replies and stages them
 * through the append path: it reaches A's SCL and the same page bytes;
 * its volume epoch and membership are untouched; records above A's SCL
 * (a hole) are not served. */
static void test_gossip_read_chain_ingest(void **state)
{
    fixture *f = *state; /* store A, node s1 */
    enum { N = 40, K = 10, PAGES = 5 };
    /* A: 1..N, plus 43 pending above a hole at 41..42. */
    for (uint64_t l = 1; l <= N; l++)
        assert_int_equal(append(f->s, HDR(0), NULL, 1,
                                l % 7 == 0 ? RC(l, l - 1, l % PAGES,
                                                (uint8_t)l)
                                           : mkrec(l, l - 1, l % PAGES, 0, 1,
                                                   (uint32_t)(l % 50),
                                                   (uint8_t)(l * 3), 20)),
                         HX_OK);
    assert_int_equal(append(f->s, HDR(0), NULL, 1, R(43, 42, 1, 0xee)), HX_OK);
    assert_int_equal(segment_store_scl(f->s, VOL, 0), N);

    /* B: a second store (node s2) holding 1..K, at volume epoch 3. */
    fixture b = {0};
    snprintf(b.dir, sizeof b.dir, "/tmp/hx_test_segstore_XXXXXX");
    assert_non_null(mkdtemp(b.dir));
    segment_store_why why = {0};
    assert_int_equal(segment_store_open(b.dir, "s2", &hx_test_store_options,
                                        &b.s, &why), HX_OK);
    for (uint64_t l = 1; l <= K; l++)
        assert_int_equal(append(b.s, HDR(0), NULL, 1,
                                l % 7 == 0 ? RC(l, l - 1, l % PAGES,
                                                (uint8_t)l)
                                           : mkrec(l, l - 1, l % PAGES, 0, 1,
                                                   (uint32_t)(l % 50),
                                                   (uint8_t)(l * 3), 20)),
                         HX_OK);
    uint64_t cur = 0;
    assert_int_equal(segment_store_seal_epoch(b.s, VOL, 3, &cur, &why), HX_OK);

    /* Unknown segment; nothing above the SCL; max_bytes tiny: one record. */
    Hexad__PulledRecords *p = NULL;
    assert_int_equal(segment_store_read_chain(f->s, VOL, 9, 0, 0, &p, &why),
                     HX_ERR_NOT_FOUND);
    assert_int_equal(segment_store_read_chain(f->s, VOL, 0, N, 0, &p, &why),
                     HX_OK);
    assert_int_equal(p->n_records, 0);
    assert_int_equal(p->scl, N);
    segment_store_pulled_free(p);
    assert_int_equal(segment_store_read_chain(f->s, VOL, 0, 5, 1, &p, &why),
                     HX_OK);
    assert_int_equal(p->n_records, 1);
    assert_int_equal(p->records[0]->lsn, 6);
    segment_store_pulled_free(p);

    /* Pull in ~300-byte replies until B's SCL reaches A's. */
    int rounds = 0;
    while (segment_store_scl(b.s, VOL, 0) < N) {
        uint64_t after = segment_store_scl(b.s, VOL, 0);
        assert_int_equal(segment_store_read_chain(f->s, VOL, 0, after, 300,
                                                  &p, &why),
                         HX_OK);
        assert_true(p->n_records >= 1);
        for (size_t i = 0; i < p->n_records; i++) {
            assert_int_equal(p->records[i]->lsn, after + 1 + i);
            assert_true(p->records[i]->lsn <= N);
        }
        segment_store_append_result res = {0};
        assert_int_equal(segment_store_stage_pulled(b.s, p, &res), HX_OK);
        assert_int_equal(segment_store_flush(b.s, pulled_done, NULL), HX_OK);
        assert_int_equal(res.rc, HX_OK);
        assert_int_equal(res.stored, p->n_records);
        segment_store_pulled_free(p);
        assert_true(++rounds < 100);
    }
    assert_true(rounds > 1);
    assert_int_equal(segment_store_scl(b.s, VOL, 0), N);
    assert_int_equal(segment_store_volume_epoch(b.s, VOL), 3);
    assert_int_equal(records_of(b.s, 0), N);

    /* Re-pulling from 0 only finds duplicates. */
    assert_int_equal(segment_store_read_chain(f->s, VOL, 0, 0, 0, &p, &why),
                     HX_OK);
    assert_int_equal(p->n_records, N);
    segment_store_append_result res = {0};
    assert_int_equal(segment_store_stage_pulled(b.s, p, &res), HX_OK);
    assert_int_equal(segment_store_flush(b.s, pulled_done, NULL), HX_OK);
    assert_int_equal(res.rc, HX_OK);
    assert_int_equal(res.duplicates, N);
    segment_store_pulled_free(p);

    for (uint64_t pg = 0; pg < PAGES; pg++) {
        uint8_t pa[PAGE_SIZE], pb[PAGE_SIZE];
        uint64_t la = 0, lb = 0;
        read_page(f->s, 0, pg, N, pa, &la);
        read_page(b.s, 0, pg, N, pb, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(pa, pb, PAGE_SIZE);
    }

    /* A segment B does not hold cannot take pulled records. */
    Hexad__PulledRecords none = HEXAD__PULLED_RECORDS__INIT;
    none.volume = VOL;
    none.pg = 7;
    assert_int_equal(segment_store_stage_pulled(b.s, &none, NULL),
                     HX_ERR_NOT_FOUND);

    segment_store_close(b.s);
    hx_test_rm_tree(b.dir);
}

int main(int argc, char **argv)
{
    /* The refusals under test log errors on purpose; HEXAD_LOG=info shows
     * everything. */
    hx_log_init("test_segment_store", HX_LOG_WARN);
    if (argc == 3 && strcmp(argv[1], "--crash-child") == 0)
        crash_child(argv[2], STDOUT_FILENO);
    if (argc == 3 && strcmp(argv[1], "--crash-child-withdrawn") == 0)
        withdrawn_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_out_of_order_duplicates_holes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_page_applies_in_lsn_order,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_volume_epoch_fencing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_membership_epoch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_checksum_stores_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_middle, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_segment_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_resets_page, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_reloads, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_stored_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_records_move_to_their_family,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncations_never_merge_gaps,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncations_from_old_metadata,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_count_survives_reopen,
                                        setup, teardown),
        cmocka_unit_test(test_crash_after_checkpoint),
        cmocka_unit_test(test_failed_write_not_replayed),
        cmocka_unit_test_setup_teardown(test_gossip_read_chain_ingest, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("segment_store", tests, NULL, NULL);
}
