/* Unit tests of the segment store's background work (issue 7):
 * coalescing (segment_coalesce.c), garbage collection (segment_gc.c) and
 * scrubbing with repair (segment_scrub.c), and of its write-ahead journal
 * across a crash (segment_checkpoint.c), against a real RocksDB in
 * temporary directories (removed at the end).
 *
 * Reads are compared with a reference model: the page as every record at
 * or below the read point, applied in LSN order, makes it.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "append_request.h"
#include "hx_err.h"
#include "raw_store.h"
#include "record.h"
#include "rm_tree.h"
#include "segment_store.h"
#include "storage_background.h"
#include "store_options.h"

#define PAGE_SIZE 512u
#define PG_PAGES 1000u
#define VOL 1u
#define MAX_LSN 6000u

/* ---- records and the reference model ------------------------------------ */

typedef struct {
    Hexad__Record rec;
    Hexad__Patch patch;
    Hexad__Patch *pp[1];
    uint8_t data[PAGE_SIZE];
} trec;

/* Every record made, by LSN (the model replays them). */
static trec *made[MAX_LSN + 1];

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Record lsn on page: a random patch, or (image) a whole page. */
static trec *mkrec(uint64_t lsn, uint64_t prev, uint64_t page, bool image,
                   uint64_t epoch)
{
    trec *t = calloc(1, sizeof *t);
    assert_non_null(t);
    hexad__record__init(&t->rec);
    hexad__patch__init(&t->patch);
    uint32_t off = 0, len = PAGE_SIZE;
    if (!image) {
        off = (uint32_t)(rnd() % PAGE_SIZE);
        len = 1 + (uint32_t)(rnd() % (PAGE_SIZE - off < 24 ? PAGE_SIZE - off
                                                            : 24));
    }
    for (uint32_t i = 0; i < len; i++)
        t->data[i] = (uint8_t)rnd();
    t->patch.offset = off;
    t->patch.data.data = t->data;
    t->patch.data.len = len;
    t->pp[0] = &t->patch;
    t->rec.lsn = lsn;
    t->rec.prev_lsn = prev;
    t->rec.page_no = page;
    t->rec.flags = (image ? HX_RECORD_IMAGE : 0) |
                   (lsn % 10 == 0 ? HX_RECORD_CPL : 0);
    t->rec.epoch = epoch;
    t->rec.n_patches = 1;
    t->rec.patches = t->pp;
    hx_record_seal(&t->rec);
    free(made[lsn]);
    made[lsn] = t;
    return t;
}

/* The page as of read_lsn by the model; *page_lsn its newest record. */
static void model_page(uint64_t page, uint64_t read_lsn,
                       uint8_t out[PAGE_SIZE], uint64_t *page_lsn)
{
    memset(out, 0, PAGE_SIZE);
    *page_lsn = 0;
    for (uint64_t l = 1; l <= read_lsn && l <= MAX_LSN; l++) {
        if (made[l] == NULL || made[l]->rec.page_no != page)
            continue;
        if (made[l]->rec.flags & HX_RECORD_IMAGE)
            memset(out, 0, PAGE_SIZE);
        assert_int_equal(hx_record_apply(&made[l]->rec, out, PAGE_SIZE),
                         HX_OK);
        *page_lsn = l;
    }
}

static void forget_all(void)
{
    for (size_t i = 0; i <= MAX_LSN; i++) {
        free(made[i]);
        made[i] = NULL;
    }
}

/* Appends records [from, to] (already made) to PG 0 with the given epoch
 * and min_read_lsn. */
static void append_range(segment_store *s, uint64_t from, uint64_t to,
                         uint64_t epoch, uint64_t min_read)
{
    Hexad__Record *ptrs[64];
    for (uint64_t lo = from; lo <= to; lo += 64) {
        size_t n = 0;
        for (uint64_t l = lo; l <= to && n < 64; l++)
            ptrs[n++] = &made[l]->rec;
        Hexad__AppendRecords req;
        Hexad__Geometry geo;
        hx_test_append_request(&req, &geo, VOL, 0, epoch, PAGE_SIZE, PG_PAGES,
                               ptrs, n);
        req.min_read_lsn = min_read;
        segment_store_append_result res;
        assert_int_equal(segment_store_append(s, &req, &res), HX_OK);
    }
}

/* Makes records [from, to] chained, on pages 0..pages-1 at random, one in
 * `image_every` a whole-page image. */
static void make_range(uint64_t from, uint64_t to, uint64_t pages,
                       unsigned image_every, uint64_t epoch)
{
    for (uint64_t l = from; l <= to; l++)
        mkrec(l, l - 1, rnd() % pages, rnd() % image_every == 0, epoch);
}

/* ---- stores in temporary directories ------------------------------------ */

typedef struct {
    char dir[64];
    segment_store *s;
} tstore;

static void ts_open(tstore *t, const char *id)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/hx_test_segbg_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    segment_store_why why = {0};
    assert_int_equal(segment_store_open(t->dir, id, &hx_test_store_options,
                                        &t->s, &why), HX_OK);
}

static void ts_reopen(tstore *t)
{
    segment_store_close(t->s);
    segment_store_why why = {0};
    assert_int_equal(segment_store_open(t->dir, "s1", &hx_test_store_options,
                                        &t->s, &why), HX_OK);
}

static void ts_close(tstore *t)
{
    segment_store_close(t->s);
    hx_test_rm_tree(t->dir);
}

static int get(segment_store *s, uint64_t page, uint64_t read_lsn,
               uint8_t out[PAGE_SIZE], uint64_t *page_lsn)
{
    uint8_t *p = NULL;
    size_t len = 0;
    segment_store_why why = {0};
    int rc = segment_store_get_page(s, VOL, 0, page, read_lsn, &p, &len,
                                    page_lsn, &why);
    if (rc == HX_OK) {
        assert_int_equal(len, PAGE_SIZE);
        memcpy(out, p, PAGE_SIZE);
    }
    free(p);
    return rc;
}

/* Every page in [0, pages) at every `step`-th read point in [lo, hi]
 * (and hi) reads as the model says. Returns the reads done. */
static size_t check_reads(segment_store *s, uint64_t pages, uint64_t lo,
                          uint64_t hi, uint64_t step)
{
    size_t n = 0;
    for (uint64_t at = lo;; at = at + step > hi ? hi : at + step) {
        for (uint64_t pg = 0; pg < pages; pg++) {
            uint8_t got[PAGE_SIZE], want[PAGE_SIZE];
            uint64_t got_lsn = 0, want_lsn = 0;
            int rc = get(s, pg, at, got, &got_lsn);
            if (rc != HX_OK)
                fail_msg("page %" PRIu64 " @ %" PRIu64 ": %s", pg, at,
                         hx_strerror(rc));
            model_page(pg, at, want, &want_lsn);
            if (memcmp(got, want, PAGE_SIZE) != 0 || got_lsn != want_lsn)
                fail_msg("page %" PRIu64 " @ %" PRIu64 " differs (page_lsn %"
                         PRIu64 ", model %" PRIu64 ")", pg, at, got_lsn,
                         want_lsn);
            n++;
        }
        if (at == hi)
            break;
    }
    return n;
}

/* Passes until coalescing has reached every segment's SCL (a pass may
 * write no version: its pages have too few records yet). */
static size_t coalesce_all(segment_store *s, size_t per_pass)
{
    size_t total = 0, w = 0;
    segment_store_why why = {0};
    for (int pass = 0; pass < 100000 && segment_store_coalesce_lag(s) > 0;
         pass++) {
        assert_int_equal(segment_store_coalesce(s, per_pass, &w, &why), HX_OK);
        total += w;
    }
    assert_int_equal(segment_store_coalesce_lag(s), 0);
    return total;
}

static uint64_t records_of(segment_store *s)
{
    Hexad__NodeStatus *st = NULL;
    assert_int_equal(segment_store_status(s, &st), HX_OK);
    uint64_t n = st->n_segments ? st->segments[0]->records : 0;
    segment_store_status_free(st);
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- coalescing --------------------------------------------------------- */

/* Issue 7 "Coalescing": GetPage returns the same bytes (and page LSN)
 * before and after, at many read points, with passes of bounded work
 * interleaved with appends, and after a reopen. */
static void test_coalesce_same_bytes(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    make_range(1, 3000, 40, 50, 1);
    append_range(t.s, 1, 1500, 1, 0);
    size_t before = check_reads(t.s, 40, 1, 1500, 97);

    /* Bounded: a pass of 40 * (N + 4) records (N + 4 a page on average,
     * N = SEGMENT_STORE_COALESCE_MIN_RECORDS) writes at most the pages
     * they touch. */
    size_t w = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_coalesce(
                         t.s, 40 * (SEGMENT_STORE_COALESCE_MIN_RECORDS + 4),
                         &w, &why),
                     HX_OK);
    assert_true(w > 0 && w <= 40);
    coalesce_all(t.s, 100);
    check_reads(t.s, 40, 1, 1500, 97);

    append_range(t.s, 1501, 3000, 1, 0);
    coalesce_all(t.s, 333);
    const hx_node_counters *c = segment_store_counters(t.s);
    assert_true(c->coalesce_passes > 10);
    assert_true(c->page_versions_written > 40);
    size_t after = check_reads(t.s, 40, 1, 3000, 61);
    ts_reopen(&t);
    after += check_reads(t.s, 40, 1, 3000, 131);
    assert_true(before + after > 3000); /* thousands of compared reads */
    ts_close(&t);
    forget_all();
}

/* Issue 7: the cost of GetPage does not grow with the page's records. */
static void test_coalesce_bounds_get_page(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    make_range(1, 5000, 1, 1000000, 1);
    append_range(t.s, 1, 5000, 1, 0);
    uint8_t page[PAGE_SIZE];
    uint64_t pl = 0;
    double t0 = now_s();
    for (int i = 0; i < 5; i++)
        assert_int_equal(get(t.s, 0, 5000, page, &pl), HX_OK);
    double replay = now_s() - t0;
    coalesce_all(t.s, 100000);
    t0 = now_s();
    for (int i = 0; i < 5; i++)
        assert_int_equal(get(t.s, 0, 5000, page, &pl), HX_OK);
    double from_version = now_s() - t0;
    check_reads(t.s, 1, 4990, 5000, 1);
    print_message("GetPage of a page with 5000 records: %.2f ms replaying, "
                  "%.3f ms from its version\n", replay * 200, from_version * 200);
    assert_true(from_version * 10 < replay);
    ts_close(&t);
    forget_all();
}

/* Issue 7: never above the SCL: a hole stops coalescing below it, and the
 * record that fills it is then read correctly. */
static void test_coalesce_stops_at_scl(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    make_range(1, 200, 5, 1000, 1);
    append_range(t.s, 1, 99, 1, 0);
    append_range(t.s, 101, 200, 1, 0);
    assert_int_equal(segment_store_scl(t.s, VOL, 0), 99);
    coalesce_all(t.s, 1000);
    append_range(t.s, 100, 100, 1, 0);
    assert_int_equal(segment_store_scl(t.s, VOL, 0), 200);
    check_reads(t.s, 5, 90, 200, 1);
    coalesce_all(t.s, 1000);
    check_reads(t.s, 5, 90, 200, 1);
    ts_close(&t);
    forget_all();
}

/* Issue 7: a truncation drops the versions above its start; records
 * re-written there by the next epoch are read, not the old version. */
static void test_truncate_drops_versions(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    make_range(1, 300, 3, 1000, 1);
    append_range(t.s, 1, 300, 1, 0);
    coalesce_all(t.s, 1000);
    uint64_t scl = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_truncate(t.s, VOL, 0, 2, 201, 400, &scl,
                                            &why), HX_OK);
    assert_int_equal(scl, 200);
    for (uint64_t l = 201; l <= 300; l++) {
        free(made[l]);
        made[l] = NULL;
    }
    check_reads(t.s, 3, 150, 200, 1);
    make_range(201, 250, 3, 1000, 2);
    append_range(t.s, 201, 250, 2, 0);
    check_reads(t.s, 3, 190, 250, 1);
    coalesce_all(t.s, 1000);
    check_reads(t.s, 3, 190, 250, 1);
    ts_close(&t);
    forget_all();
}

/* ---- garbage collection ------------------------------------------------- */

/* Issue 7 "Garbage collection": nothing is removed inside the retention
 * window; then records and versions below the min read point go, every
 * read at or above it still returns the same bytes (also after a
 * reopen), reads below it are refused, and nothing above the SCL (a
 * pending record past a hole) is touched. */
static void test_gc_keeps_what_reads_need(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    segment_store_set_retention(t.s, 10000);
    make_range(1, 1200, 8, 100, 1);
    append_range(t.s, 1, 1000, 1, 600);
    append_range(t.s, 1002, 1200, 1, 600); /* 1001 missing: a hole */
    coalesce_all(t.s, 250);
    uint64_t held = records_of(t.s);
    assert_int_equal(held, 1199);
    segment_store_why why = {0};

    assert_int_equal(segment_store_gc(t.s, 1000, 100000, &why), HX_OK);
    assert_int_equal(segment_store_gc(t.s, 5000, 100000, &why), HX_OK);
    assert_int_equal(records_of(t.s), held); /* inside the window */
    assert_int_equal(segment_store_gc(t.s, 11000, 100000, &why), HX_OK);
    const hx_node_counters *c = segment_store_counters(t.s);
    assert_true(c->gc_records_removed > 400); /* bases near 500 */
    assert_true(c->gc_bytes_removed > 0);
    assert_int_equal(records_of(t.s), held - c->gc_records_removed);
    uint64_t left = records_of(t.s);
    ts_reopen(&t); /* the count GC wrote comes back (segment_store.c inv. 7) */
    assert_int_equal(records_of(t.s), left);
    check_reads(t.s, 8, 600, 1000, 7);
    uint8_t page[PAGE_SIZE];
    uint64_t pl = 0;
    assert_int_equal(get(t.s, 0, 599, page, &pl), HX_ERR_NOT_FOUND);

    /* Above the SCL: the pending records stay, and the hole still fills. */
    append_range(t.s, 1001, 1001, 1, 600);
    assert_int_equal(segment_store_scl(t.s, VOL, 0), 1200);
    check_reads(t.s, 8, 990, 1200, 3);

    segment_store_compact(t.s);
    ts_reopen(&t);
    check_reads(t.s, 8, 600, 1200, 11);
    assert_int_equal(get(t.s, 3, 599, page, &pl), HX_ERR_NOT_FOUND);
    ts_close(&t);
    forget_all();
}

/* segment_coalesce.c invariant 6: a busy page keeps its newest version
 * and the last of each older span; the rest are deleted as they are
 * superseded, and every read point still reads exactly, the old ones
 * applying more records from an older version. */
static void test_coalesce_supersedes_versions(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    make_range(1, 6000, 2, 1000000, 1);
    append_range(t.s, 1, 6000, 1, 0);
    /* A version of each page every pass: N records each. */
    coalesce_all(t.s, 2 * SEGMENT_STORE_COALESCE_MIN_RECORDS);
    const hx_node_counters *c = segment_store_counters(t.s);
    print_message("%" PRIu64 " versions written, %" PRIu64 " superseded\n",
                  c->page_versions_written, c->page_versions_superseded);
    assert_true(c->page_versions_written >
                3000 / SEGMENT_STORE_COALESCE_MIN_RECORDS);
    /* Spans of 2048 LSNs: at most a few kept per page and span. */
    assert_true(c->page_versions_written - c->page_versions_superseded < 16);
    check_reads(t.s, 2, 1, 6000, 5);
    ts_reopen(&t);
    check_reads(t.s, 2, 1, 6000, 37);
    ts_close(&t);
    forget_all();
}

static uint64_t gc_lsn_of(segment_store *s)
{
    Hexad__NodeStatus *st = NULL;
    assert_int_equal(segment_store_status(s, &st), HX_OK);
    uint64_t n = st->n_segments ? st->segments[0]->gc_lsn : 0;
    segment_store_status_free(st);
    return n;
}

/* Invariant 6 with GC: the version GC kept as a page's base (at or below
 * gc_lsn, the records below it gone) is never superseded, though the next
 * version lies in its span. */
static void test_superseding_keeps_the_gc_base(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    segment_store_set_retention(t.s, 0);
    make_range(1, 1300, 1, 1000000, 1);
    append_range(t.s, 1, 1000, 1, 0);
    coalesce_all(t.s, 16);
    append_range(t.s, 1001, 1001, 1, 1000); /* tells the min read point */
    segment_store_why why = {0};
    for (uint64_t now = 1; now <= 3; now++)
        assert_int_equal(segment_store_gc(t.s, now, 100000, &why), HX_OK);
    uint64_t gc = gc_lsn_of(t.s);
    assert_true(gc >= 990 && gc <= 1001);
    assert_true(segment_store_counters(t.s)->gc_records_removed > 900);

    uint64_t before = segment_store_counters(t.s)->page_versions_superseded;
    uint64_t wbefore = segment_store_counters(t.s)->page_versions_written;
    /* Coalescing stops at the min read point: now past what follows. */
    append_range(t.s, 1002, 1300, 1, 1300);
    coalesce_all(t.s, 16);
    assert_true(segment_store_counters(t.s)->page_versions_written >
                wbefore + 10);
    assert_true(segment_store_counters(t.s)->page_versions_superseded >
                before);
    check_reads(t.s, 1, gc, 1300, 1);
    ts_close(&t);
    forget_all();
}

/* segment_gc.c invariant 5: passes that seek from the GC floors collect
 * what passes from scratch do. After rounds of appends, coalescing and GC,
 * each moving the min read point (and so the kept newest record and CPL),
 * a reopened store, its floors forgotten, finds nothing more to collect at
 * the same GC point. */
static void test_gc_floors_miss_nothing(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    segment_store_set_retention(t.s, 0);
    make_range(1, 4000, 6, 1000000, 1);
    segment_store_why why = {0};
    uint64_t now = 0;
    for (uint64_t hi = 500; hi <= 4000; hi += 500) {
        append_range(t.s, hi - 499, hi, 1, hi - 100);
        coalesce_all(t.s, 64);
        for (int i = 0; i < 2; i++)
            assert_int_equal(segment_store_gc(t.s, ++now, 100000, &why),
                             HX_OK);
    }
    assert_true(segment_store_counters(t.s)->gc_records_removed > 2500);
    uint64_t gc = gc_lsn_of(t.s), left = records_of(t.s);
    assert_true(gc >= 3000);
    ts_reopen(&t);
    segment_store_set_retention(t.s, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(segment_store_gc(t.s, ++now, 100000, &why), HX_OK);
    assert_int_equal(gc_lsn_of(t.s), gc);
    assert_int_equal(segment_store_counters(t.s)->gc_records_removed, 0);
    assert_int_equal(records_of(t.s), left);
    check_reads(t.s, 6, gc, 4000, 9);
    ts_close(&t);
    forget_all();
}

/* Issue 7: the GC point follows the min read point only; retention 0 and
 * no min read point told (0) collects nothing. */
static void test_gc_needs_min_read_point(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    segment_store_set_retention(t.s, 0);
    make_range(1, 400, 4, 100, 1);
    append_range(t.s, 1, 400, 1, 0);
    coalesce_all(t.s, 1000);
    segment_store_why why = {0};
    for (uint64_t now = 1; now < 5; now++)
        assert_int_equal(segment_store_gc(t.s, now, 100000, &why), HX_OK);
    assert_int_equal(records_of(t.s), 400);
    check_reads(t.s, 4, 1, 400, 13);
    ts_close(&t);
    forget_all();
}

/* Issue 7 with recovery: after GC, a truncation still finds the SCL (and
 * its CPL) just below its start, because GC keeps the newest record and
 * the newest CPL at or below its point. */
static void test_gc_then_truncate(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    segment_store_set_retention(t.s, 0);
    make_range(1, 400, 2, 1000, 1);
    append_range(t.s, 1, 400, 1, 400);
    coalesce_all(t.s, 1000);
    segment_store_why why = {0};
    assert_int_equal(segment_store_gc(t.s, 1, 100000, &why), HX_OK);
    assert_int_equal(segment_store_gc(t.s, 2, 100000, &why), HX_OK);
    assert_true(segment_store_counters(t.s)->gc_records_removed > 300);
    make_range(401, 420, 2, 1000, 1);
    append_range(t.s, 401, 420, 1, 400);
    uint64_t scl = 0;
    assert_int_equal(segment_store_truncate(t.s, VOL, 0, 2, 411, 500, &scl,
                                            &why), HX_OK);
    assert_int_equal(scl, 410);
    assert_int_equal(segment_store_truncate(t.s, VOL, 0, 3, 401, 500, &scl,
                                            &why), HX_OK);
    assert_int_equal(scl, 400);
    for (uint64_t l = 401; l <= 420; l++) {
        free(made[l]);
        made[l] = NULL;
    }
    check_reads(t.s, 2, 400, 400, 1);
    Hexad__SegmentInfoRequest req = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    req.volume = VOL;
    Hexad__SegmentInfoResponse *r = NULL;
    assert_int_equal(segment_store_segment_info(t.s, &req, &r, &why), HX_OK);
    assert_int_equal(r->n_segments, 1);
    assert_int_equal(r->segments[0]->scl, 400);
    assert_int_equal(r->segments[0]->scl_cpl, 400);
    segment_store_segment_info_free(r);
    ts_close(&t);
    forget_all();
}

/* segment_gc.c: after a burst of deletions GC starts a compaction on a
 * thread of its own and returns; appends and reads go on meanwhile, and
 * every read still returns the model's bytes once it is done. A store
 * closed while one runs cancels and joins it (ASan sees any use after
 * the close). */
static void test_gc_compacts_off_the_caller(void **state)
{
    (void)state;
    for (int close_early = 0; close_early < 2; close_early++) {
        tstore t;
        ts_open(&t, "s1");
        segment_store_set_retention(t.s, 0);
        make_range(1, 5000, 40, 2, 1); /* half whole-page images */
        append_range(t.s, 1, 5000, 1, 4900);
        coalesce_all(t.s, 1000);
        segment_store_why why = {0};
        const hx_node_counters *c = segment_store_counters(t.s);
        for (uint64_t now = 1; now < 20 && c->gc_compactions == 0; now++)
            assert_int_equal(segment_store_gc(t.s, now, 100000, &why), HX_OK);
        assert_true(c->gc_bytes_removed >= (1u << 20));
        assert_int_equal(c->gc_compactions, 1);
        if (close_early) { /* maybe mid-compaction */
            ts_close(&t);
            forget_all();
            continue;
        }
        make_range(5001, 5100, 40, 2, 1);
        append_range(t.s, 5001, 5100, 1, 4900);
        check_reads(t.s, 40, 4900, 5100, 13);
        double deadline = now_s() + 60;
        while (segment_store_compacting(t.s) && now_s() < deadline) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        assert_false(segment_store_compacting(t.s));
        check_reads(t.s, 40, 4900, 5100, 7);
        ts_reopen(&t);
        check_reads(t.s, 40, 4900, 5100, 3);
        ts_close(&t);
        forget_all();
    }
}

/* ---- scrubbing and repair ----------------------------------------------- */

/* Flips a byte of the first page version's value (store closed). */
static void corrupt_first_version(tstore *t, uint64_t *page_no, uint64_t *lsn)
{
    segment_store_close(t->s);
    t->s = NULL;
    raw_store r;
    raw_store_open(&r, t->dir);
    char *err = NULL;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(r.db, r.ro, raw_store_cf(&r, 'g'));
    rocksdb_iter_seek(it, "g", 1);
    assert_true(rocksdb_iter_valid(it));
    size_t kl = 0, vl = 0;
    const char *k = rocksdb_iter_key(it, &kl);
    assert_int_equal(kl, 25);
    assert_int_equal(k[0], 'g');
    char key[25];
    memcpy(key, k, 25);
    const char *v = rocksdb_iter_value(it, &vl);
    char *bad = malloc(vl);
    assert_non_null(bad);
    memcpy(bad, v, vl);
    bad[vl - 7] ^= 0x21;
    *page_no = *lsn = 0;
    for (int i = 0; i < 8; i++) {
        *page_no = *page_no << 8 | (uint8_t)key[9 + i];
        *lsn = *lsn << 8 | (uint8_t)key[17 + i];
    }
    rocksdb_iter_destroy(it);
    rocksdb_put_cf(r.db, r.wo, raw_store_cf(&r, 'g'), key, 25, bad, vl, &err);
    assert_null(err);
    free(bad);
    raw_store_close(&r);
    ts_reopen(t);
}

/* version_newest_le: a corrupt version at or below gc_lsn (a page's
 * base: GC may have removed the records under it) is not passed over for
 * an older one. Reads that need it fail with a checksum error, never
 * return other bytes, and the repair is queued; other pages read on. */
static void test_corrupt_gc_base_is_not_passed_over(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    segment_store_set_retention(t.s, 0);
    make_range(1, 1000, 4, 1000000, 1);
    append_range(t.s, 1, 1000, 1, 600);
    coalesce_all(t.s, 100); /* up to the min read point, 600 */
    segment_store_why why = {0};
    assert_int_equal(segment_store_gc(t.s, 1, 100000, &why), HX_OK);
    assert_int_equal(segment_store_gc(t.s, 2, 100000, &why), HX_OK);
    assert_true(segment_store_counters(t.s)->gc_records_removed > 0);
    Hexad__NodeStatus *st = NULL;
    assert_int_equal(segment_store_status(t.s, &st), HX_OK);
    uint64_t gc_lsn = st->segments[0]->gc_lsn;
    segment_store_status_free(st);
    assert_true(gc_lsn > 0 && gc_lsn <= 600);

    uint64_t vpage = 0, vlsn = 0;
    corrupt_first_version(&t, &vpage, &vlsn); /* after GC: a base */
    assert_true(vlsn <= gc_lsn);
    uint8_t page[PAGE_SIZE], want[PAGE_SIZE];
    uint64_t pl = 0, want_lsn = 0;
    assert_int_equal(get(t.s, vpage, gc_lsn, page, &pl), HX_ERR_CHECKSUM);
    assert_int_equal(get(t.s, vpage, 1000, page, &pl), HX_ERR_CHECKSUM);
    assert_int_equal(segment_store_repair_count(t.s), 1);
    /* The other pages read exactly. */
    for (uint64_t p = 0; p < 4; p++) {
        if (p == vpage)
            continue;
        for (uint64_t at = gc_lsn; at <= 1000; at += 40) {
            assert_int_equal(get(t.s, p, at, page, &pl), HX_OK);
            model_page(p, at, want, &want_lsn);
            assert_memory_equal(page, want, PAGE_SIZE);
            assert_int_equal(pl, want_lsn);
        }
    }

    /* Invariant 7 (segment_coalesce.c): coalescing goes on past the page
     * that waits for its repair; the others get versions and read exactly,
     * it still fails. */
    uint64_t versions = segment_store_counters(t.s)->page_versions_written;
    make_range(1001, 1400, 4, 1000000, 1);
    append_range(t.s, 1001, 1400, 1, 1400);
    coalesce_all(t.s, 100);
    assert_int_equal(segment_store_status(t.s, &st), HX_OK);
    assert_int_equal(st->segments[0]->coalesced_lsn, 1400);
    segment_store_status_free(st);
    assert_true(segment_store_counters(t.s)->page_versions_written >=
                versions + 3);
    assert_int_equal(get(t.s, vpage, 1400, page, &pl), HX_ERR_CHECKSUM);
    for (uint64_t p = 0; p < 4; p++) {
        if (p == vpage)
            continue;
        assert_int_equal(get(t.s, p, 1400, page, &pl), HX_OK);
        model_page(p, 1400, want, &want_lsn);
        assert_memory_equal(page, want, PAGE_SIZE);
        assert_int_equal(pl, want_lsn);
    }
    ts_close(&t);
    forget_all();
}

/* The records of the crash test, made alike in both processes. */
static void make_crash_records(void)
{
    rng_state = 0x9E3779B97F4A7C15ull;
    make_range(1, 3000, 50, 2, 1);
    make_range(3001, 6000, 50, 1, 1); /* whole pages: the ring wraps */
}

/* The child of test_journal_replays_after_a_crash, a process of its own
 * (RocksDB's thread pool does not survive a fork): appends, coalesces,
 * appends, then exits without closing the store. */
static int crash_child(const char *dir)
{
    segment_store *s = NULL;
    segment_store_why why = {0};
    if (segment_store_open(dir, "s1", &hx_test_store_options, &s, &why) !=
        HX_OK)
        return 2;
    make_crash_records();
    append_range(s, 1, 3000, 1, 0);
    size_t w = 0;
    if (segment_store_coalesce(s, 100000, &w, &why) != HX_OK || w == 0)
        return 3;
    append_range(s, 3001, 6000, 1, 0);
    _exit(segment_store_counters(s)->checkpoints >= 2 ? 0 : 4);
}

/* segment_store.c invariant 8: a process that dies without closing its
 * store (RocksDB's memtables lost, no final checkpoint) loses no
 * acknowledged write. A child process appends 6000 records (over 2 MiB of
 * batches, so several checkpoints of the 2 MiB journal run, and its ring
 * wraps) and coalesces part of them, then _exits; the store, reopened
 * with a journal of another size (so the old one is replayed, then
 * replaced), holds every record and version: each page reads as the model
 * says at several read points, and the record count is whole. */
static void test_journal_replays_after_a_crash(void **state)
{
    (void)state;
    tstore t;
    snprintf(t.dir, sizeof t.dir, "/tmp/hx_test_segbg_XXXXXX");
    assert_non_null(mkdtemp(t.dir));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_segment_background", "--crash-child",
              t.dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    make_crash_records();
    segment_store_why why = {0};
    segment_store_options bigger = hx_test_store_options;
    bigger.journal_bytes += 1u << 20;
    assert_int_equal(segment_store_open(t.dir, "s1", &bigger, &t.s, &why),
                     HX_OK);
    char journal[128];
    struct stat st;
    snprintf(journal, sizeof journal, "%s/journal", t.dir);
    assert_int_equal(stat(journal, &st), 0);
    assert_int_equal(st.st_size, bigger.journal_bytes);
    assert_int_equal(records_of(t.s), 6000);
    /* The crash left every chain unverified (segment_verify.c): reads
     * wait for the scrub's walk. */
    assert_int_equal(segment_store_segments_unverified(t.s), 1);
    for (int i = 0; i < 100 && segment_store_segments_unverified(t.s) > 0;
         i++)
        assert_int_equal(segment_store_scrub(t.s, 1000, &why), HX_OK);
    assert_int_equal(segment_store_segments_unverified(t.s), 0);
    assert_int_equal(segment_store_counters(t.s)->records_missing, 0);
    check_reads(t.s, 50, 1, 6000, 1499);
    ts_close(&t);
    forget_all();
}

/* A page gets a version only once SEGMENT_STORE_COALESCE_MIN_RECORDS (N)
 * records piled up above its last one (segment_coalesce.c invariant 3);
 * pages with fewer read the same. */
static void test_coalesce_waits_for_records(void **state)
{
    (void)state;
    const uint64_t n = SEGMENT_STORE_COALESCE_MIN_RECORDS;
    tstore t;
    ts_open(&t, "s1");
    /* page 0: 1 record; page 1: N + 1; page 2: N - 1; page 3: 1 */
    uint64_t l = 1;
    mkrec(l, l - 1, 0, 0, 1), l++;
    for (uint64_t i = 0; i < n + 1; i++, l++)
        mkrec(l, l - 1, 1, 0, 1);
    for (uint64_t i = 0; i < n - 1; i++, l++)
        mkrec(l, l - 1, 2, 0, 1);
    mkrec(l, l - 1, 3, 0, 1);
    const uint64_t last = l;
    append_range(t.s, 1, last, 1, 0);
    assert_int_equal(coalesce_all(t.s, 1000), 1); /* page 1 only */
    check_reads(t.s, 4, 1, last, 1);
    /* one more on page 2: N above no version, so it gets one */
    mkrec(last + 1, last, 2, 0, 1);
    append_range(t.s, last + 1, last + 1, 1, 0);
    assert_int_equal(coalesce_all(t.s, 1000), 1);
    assert_int_equal(segment_store_counters(t.s)->page_versions_written, 2);
    check_reads(t.s, 4, 1, last + 1, 1);
    ts_reopen(&t);
    check_reads(t.s, 4, 1, last + 1, 1);
    ts_close(&t);
    forget_all();
}

/* Appends record l (page_no, epoch) alone and coalesces; the versions
 * that pass wrote. */
static size_t append_one_and_coalesce(segment_store *s, uint64_t l,
                                      uint64_t page_no, uint64_t epoch)
{
    mkrec(l, l - 1, page_no, 0, epoch);
    append_range(s, l, l, epoch, 0);
    return coalesce_all(s, 1000);
}

/* Invariant 5: a page that gets one record per pass gets its version at
 * its Nth record (N = SEGMENT_STORE_COALESCE_MIN_RECORDS), whether the
 * count comes from memory or, after a restart, from the page index; a
 * truncation forgets the counts, so records it removed are not counted
 * again. */
static void test_coalesce_counts_across_passes(void **state)
{
    (void)state;
    const uint64_t n = SEGMENT_STORE_COALESCE_MIN_RECORDS;
    tstore t;
    ts_open(&t, "s1");
    for (uint64_t l = 1; l < n; l++) {
        assert_int_equal(append_one_and_coalesce(t.s, l, 7, 1), 0);
        if (l == n / 2)
            ts_reopen(&t); /* the counts are gone: counted from disk */
    }
    assert_int_equal(append_one_and_coalesce(t.s, n, 7, 1), 1);
    check_reads(t.s, 8, 1, n, 1);
    for (uint64_t l = n + 1; l < 2 * n; l++)
        assert_int_equal(append_one_and_coalesce(t.s, l, 7, 1), 0);
    uint64_t scl = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_truncate(t.s, VOL, 0, 2, 2 * n - 1, 100,
                                            &scl, &why), HX_OK);
    assert_int_equal(scl, 2 * n - 2);
    free(made[2 * n - 1]);
    made[2 * n - 1] = NULL;
    /* n+1 .. 2n-2 and the new 2n-1 lie above the version at n: n - 1 */
    assert_int_equal(append_one_and_coalesce(t.s, 2 * n - 1, 7, 2), 0);
    assert_int_equal(append_one_and_coalesce(t.s, 2 * n, 7, 2), 1);
    check_reads(t.s, 8, 1, 2 * n, 1);
    assert_int_equal(segment_store_counters(t.s)->page_versions_written, 2);
    ts_close(&t);
    forget_all();
}

/* A writer's min read point below the PG's first record still lets
 * coalescing (and so GC) reach it: nothing lies in between. */
static void test_coalesce_reaches_a_cap_between_records(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    mkrec(100, 0, 1, 0, 1);
    for (uint64_t l = 101; l <= 110; l++)
        mkrec(l, l - 1, 1, 0, 1);
    append_range(t.s, 100, 110, 1, 50);
    assert_int_equal(segment_store_coalesce_lag(t.s), 50);
    coalesce_all(t.s, 1000); /* asserts the lag reaches 0 */
    check_reads(t.s, 2, 100, 110, 1);
    ts_close(&t);
    forget_all();
}

/* Coalescing runs every tick while it lags, and the lag is what is left
 * up to the SCL. */
static void test_coalesce_keeps_up(void **state)
{
    (void)state;
    assert_false(storage_bg_coalesce_due(false, 0));
    assert_false(storage_bg_coalesce_due(false,
                                         STORAGE_BG_COALESCE_BEHIND_LSNS - 1));
    assert_true(storage_bg_coalesce_due(false, STORAGE_BG_COALESCE_BEHIND_LSNS));
    assert_true(storage_bg_coalesce_due(true, 0));

    tstore t;
    ts_open(&t, "s1");
    make_range(1, 3000, 40, 50, 1);
    append_range(t.s, 1, 3000, 1, 0);
    assert_int_equal(segment_store_coalesce_lag(t.s), 3000);
    segment_store_why why = {0};
    assert_int_equal(segment_store_coalesce(t.s, 1000, NULL, &why), HX_OK);
    assert_int_equal(segment_store_coalesce_lag(t.s), 2000);
    coalesce_all(t.s, 1000);
    assert_int_equal(segment_store_coalesce_lag(t.s), 0);
    ts_close(&t);
    forget_all();
}

/* Scrubbing slows to a trickle while writers append and never stops. */
static void test_scrub_yields_to_appends(void **state)
{
    (void)state;
    assert_int_equal(storage_bg_scrub_items(0), STORAGE_BG_SCRUB_IDLE_ITEMS);
    unsigned busy = storage_bg_scrub_items(1);
    assert_true(busy > 0);
    assert_true(busy * 10 <= STORAGE_BG_SCRUB_IDLE_ITEMS);
    assert_int_equal(storage_bg_scrub_items(UINT64_MAX), busy);
}

/* Two stores, s1 and s2, each holding records 1..600 of PG 0 on pages
 * 0..5: a damaged copy and its peer. */
static void two_copies(tstore *a, tstore *b)
{
    ts_open(a, "s1");
    ts_open(b, "s2");
    make_range(1, 600, 6, 100, 1);
    append_range(a->s, 1, 600, 1, 0);
    append_range(b->s, 1, 600, 1, 0);
}

/* Issue 7 "Scrubbing": corrupt records are found by a read and by the
 * scrub, counted once each, never returned, and repaired from a peer's
 * copy; so is a corrupt page version. */
static void test_scrub_and_repair(void **state)
{
    (void)state;
    tstore a, b;
    two_copies(&a, &b);

    size_t n = 0;
    segment_store_why why = {0};
    char *list = NULL;
    size_t list_len = 0;
    FILE *out = open_memstream(&list, &list_len);
    assert_int_equal(segment_store_damage_records(a.s,
                                                  SEGMENT_STORE_FAULT_CORRUPT,
                                                  97, 5, out, &n, &why),
                     HX_OK);
    fclose(out);
    assert_int_equal(n, 5);
    uint64_t bad_lsn[5];
    const char *p = list;
    for (size_t i = 0; i < n; i++) {
        unsigned vol, pg;
        int used = 0;
        assert_int_equal(sscanf(p, "%u %u %" SCNu64 "%n", &vol, &pg,
                                &bad_lsn[i], &used), 3);
        p += used;
    }
    free(list);

    /* A read that needs a corrupt record answers an error, never data. */
    uint8_t page[PAGE_SIZE];
    uint64_t pl = 0;
    uint64_t bad_page = made[bad_lsn[1]]->rec.page_no;
    assert_int_equal(get(a.s, bad_page, bad_lsn[1], page, &pl),
                     HX_ERR_CHECKSUM);
    assert_int_equal(segment_store_counters(a.s)->checksum_failures, 1);

    /* The scrub finds all five (the one read found is not counted again). */
    for (int i = 0; i < 3; i++)
        assert_int_equal(segment_store_scrub(a.s, 250, &why), HX_OK);
    assert_int_equal(segment_store_counters(a.s)->checksum_failures, 5);
    assert_int_equal(segment_store_repair_count(a.s), 5);

    /* Repair from the peer, as storage_background.c does. */
    while (segment_store_repair_count(a.s) > 0) {
        segment_store_repair w;
        segment_store_repair_at(a.s, 0, &w);
        assert_int_equal(w.kind, SEGMENT_STORE_REPAIR_RECORD);
        Hexad__PulledRecords *pr = NULL;
        assert_int_equal(segment_store_read_chain(b.s, VOL, 0, w.lsn - 1, 1,
                                                  &pr, &why), HX_OK);
        assert_true(pr->n_records >= 1);
        assert_int_equal(pr->records[0]->lsn, w.lsn);
        assert_int_equal(segment_store_repair_record(a.s, VOL, 0,
                                                     pr->records[0], &why),
                         HX_OK);
        segment_store_pulled_free(pr);
    }
    assert_int_equal(segment_store_counters(a.s)->repairs, 5);
    check_reads(a.s, 6, 1, 600, 7);
    for (int i = 0; i < 3; i++)
        assert_int_equal(segment_store_scrub(a.s, 250, &why), HX_OK);
    assert_int_equal(segment_store_repair_count(a.s), 0);

    /* A page version. */
    coalesce_all(a.s, 1000);
    coalesce_all(b.s, 1000);
    uint64_t vpage = 0, vlsn = 0;
    corrupt_first_version(&a, &vpage, &vlsn);
    /* Above gc_lsn (0 here) a corrupt version is passed over: the page is
     * replayed from the one before it, exactly, while the repair waits. */
    uint8_t want[PAGE_SIZE];
    uint64_t want_lsn = 0;
    assert_int_equal(get(a.s, vpage, vlsn, page, &pl), HX_OK);
    model_page(vpage, vlsn, want, &want_lsn);
    assert_memory_equal(page, want, PAGE_SIZE);
    assert_int_equal(pl, want_lsn);
    check_reads(a.s, 6, 1, 600, 7);
    assert_int_equal(segment_store_repair_count(a.s), 1);
    segment_store_repair w;
    segment_store_repair_at(a.s, 0, &w);
    assert_int_equal(w.kind, SEGMENT_STORE_REPAIR_VERSION);
    assert_int_equal(w.page_no, vpage);
    assert_int_equal(w.lsn, vlsn);
    uint8_t *peer = NULL;
    size_t len = 0;
    assert_int_equal(segment_store_get_page(b.s, VOL, 0, vpage, vlsn, &peer,
                                            &len, &pl, &why), HX_OK);
    assert_int_equal(pl, vlsn);
    assert_int_equal(segment_store_repair_version(a.s, VOL, 0, vpage, vlsn,
                                                  peer, len, &why), HX_OK);
    free(peer);
    assert_int_equal(segment_store_repair_count(a.s), 0);
    check_reads(a.s, 6, 1, 600, 7);

    /* A bad copy is refused and the want stays. */
    assert_int_equal(segment_store_damage_records(a.s,
                                                  SEGMENT_STORE_FAULT_CORRUPT,
                                                  1, 1, NULL, &n, &why),
                     HX_OK);
    assert_int_equal(segment_store_scrub(a.s, 1000, &why), HX_OK);
    assert_int_equal(segment_store_repair_count(a.s), 1);
    segment_store_repair_at(a.s, 0, &w);
    assert_non_null(made[w.lsn]);
    Hexad__Record forged = made[w.lsn]->rec;
    forged.checksum ^= 1;
    assert_int_equal(segment_store_repair_record(a.s, VOL, 0, &forged, &why),
                     HX_ERR_CHECKSUM);
    assert_int_equal(segment_store_repair_count(a.s), 1);
    ts_close(&a);
    ts_close(&b);
    forget_all();
}

/* Repairs every wanted item of a from b's copies, as storage_background.c
 * does; returns how many. */
static size_t repair_from(segment_store *a, segment_store *b, int kind)
{
    size_t n = 0;
    segment_store_why why = {0};
    while (segment_store_repair_count(a) > 0) {
        segment_store_repair w;
        segment_store_repair_at(a, 0, &w);
        assert_int_equal(w.kind, kind);
        Hexad__PulledRecords *pr = NULL;
        assert_int_equal(segment_store_read_chain(b, VOL, 0, w.lsn - 1, 1,
                                                  &pr, &why), HX_OK);
        assert_true(pr->n_records >= 1);
        assert_int_equal(pr->records[0]->lsn, w.lsn);
        assert_int_equal(segment_store_repair_record(a, VOL, 0,
                                                     pr->records[0], &why),
                         HX_OK);
        segment_store_pulled_free(pr);
        n++;
    }
    return n;
}

/* Records the SCL covers but the store lacks (a lost write,
 * segment_missing.c): coalescing builds versions without them, so reads
 * would be wrong with no checksum to tell. The scrub finds each through
 * its successor's prev_lsn and counts it; reads at or above the lowest are
 * refused until a peer's copy is back; the repair drops the versions built
 * without it, and every page then reads as the model says. Two missing in
 * a row are found one after the other. */
static void test_missing_records_found_and_repaired(void **state)
{
    (void)state;
    tstore a, b;
    two_copies(&a, &b);
    size_t n = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_damage_records(a.s, SEGMENT_STORE_FAULT_DROP,
                                                  97, 3, NULL, &n, &why),
                     HX_OK);
    assert_int_equal(n, 3); /* LSNs 1, 98, 195 */
    coalesce_all(a.s, 1000);
    assert_int_equal(segment_store_scl(a.s, VOL, 0), 600);

    assert_int_equal(segment_store_scrub(a.s, 100000, &why), HX_OK);
    assert_int_equal(segment_store_counters(a.s)->records_missing, 3);
    assert_int_equal(segment_store_counters(a.s)->checksum_failures, 0);
    assert_int_equal(segment_store_repair_count(a.s), 3);
    uint8_t page[PAGE_SIZE];
    uint64_t pl = 0;
    assert_int_equal(get(a.s, 0, 1, page, &pl), HX_ERR_NOT_COMPLETE);
    assert_int_equal(get(a.s, 0, 600, page, &pl), HX_ERR_NOT_COMPLETE);
    /* A second scrub counts nothing again. */
    assert_int_equal(segment_store_scrub(a.s, 100000, &why), HX_OK);
    assert_int_equal(segment_store_counters(a.s)->records_missing, 3);

    assert_int_equal(repair_from(a.s, b.s, SEGMENT_STORE_REPAIR_MISSING), 3);
    assert_int_equal(segment_store_counters(a.s)->repairs, 3);
    check_reads(a.s, 6, 1, 600, 7);

    /* Two in a row: the scrub sees the upper one; its repair reveals the
     * lower one. */
    assert_int_equal(segment_store_damage_records(a.s, SEGMENT_STORE_FAULT_DROP,
                                                  1, 2, NULL, &n, &why),
                     HX_OK);
    assert_int_equal(n, 2);
    coalesce_all(a.s, 1000);
    assert_int_equal(segment_store_scrub(a.s, 100000, &why), HX_OK);
    assert_int_equal(segment_store_repair_count(a.s), 1);
    assert_int_equal(repair_from(a.s, b.s, SEGMENT_STORE_REPAIR_MISSING), 2);
    assert_int_equal(segment_store_counters(a.s)->records_missing, 5);
    check_reads(a.s, 6, 1, 600, 7);
    assert_int_equal(segment_store_scrub(a.s, 100000, &why), HX_OK);
    assert_int_equal(segment_store_repair_count(a.s), 0);
    ts_close(&a);
    ts_close(&b);
    forget_all();
}

/* record_cache.h: records of pages that get fewer than N per pass wait in
 * the record cache, and the pass that finally writes their page's version
 * applies them from there (taking them out); reads stay exact, also after
 * a reopen empties the cache. A copy that differs from the store is never
 * served as another record: truncated LSNs written again by a new epoch
 * read as the new records (test_coalesce_counts_across_passes too). */
static void test_record_cache_serves_coalescing(void **state)
{
    (void)state;
    tstore t;
    ts_open(&t, "s1");
    /* 60 pages, 60 records per pass: about one record a page a pass. */
    make_range(1, 1800, 60, 1000000, 1);
    for (uint64_t lo = 1; lo <= 1800; lo += 60) {
        append_range(t.s, lo, lo + 59, 1, 0);
        coalesce_all(t.s, 1000);
    }
    record_cache_stats st = segment_store_record_cache_stats(t.s);
    print_message("record cache: %" PRIu64 " hits, %" PRIu64 " misses, %"
                  PRIu64 " entries (%" PRIu64 " bytes), %" PRIu64
                  " evicted\n", st.hits, st.misses, st.entries, st.bytes,
                  st.evicted);
    uint64_t versions = segment_store_counters(t.s)->page_versions_written;
    assert_true(versions > 60);
    /* Every record a version applied came from the cache (it is large
     * enough here), and was taken out. */
    assert_true(st.hits >= versions * SEGMENT_STORE_COALESCE_MIN_RECORDS);
    assert_int_equal(st.misses, 0);
    assert_int_equal(st.evicted, 0);
    assert_true(st.entries < 60 * SEGMENT_STORE_COALESCE_MIN_RECORDS);
    check_reads(t.s, 60, 1, 1800, 37);

    /* A truncation inside the cached records, the LSNs written again. */
    uint64_t scl = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_truncate(t.s, VOL, 0, 2, 1781, 1900, &scl,
                                            &why), HX_OK);
    assert_int_equal(scl, 1780);
    make_range(1781, 1860, 60, 1000000, 2);
    append_range(t.s, 1781, 1860, 2, 0);
    coalesce_all(t.s, 1000);
    check_reads(t.s, 60, 1700, 1860, 7);
    ts_reopen(&t);
    make_range(1861, 2400, 60, 1000000, 2);
    append_range(t.s, 1861, 2400, 2, 0);
    coalesce_all(t.s, 1000);
    check_reads(t.s, 60, 1, 2400, 53);
    ts_close(&t);
    forget_all();
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--crash-child") == 0)
        return crash_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coalesce_same_bytes),
        cmocka_unit_test(test_coalesce_bounds_get_page),
        cmocka_unit_test(test_coalesce_stops_at_scl),
        cmocka_unit_test(test_truncate_drops_versions),
        cmocka_unit_test(test_gc_keeps_what_reads_need),
        cmocka_unit_test(test_gc_floors_miss_nothing),
        cmocka_unit_test(test_gc_needs_min_read_point),
        cmocka_unit_test(test_coalesce_supersedes_versions),
        cmocka_unit_test(test_superseding_keeps_the_gc_base),
        cmocka_unit_test(test_gc_then_truncate),
        cmocka_unit_test(test_corrupt_gc_base_is_not_passed_over),
        cmocka_unit_test(test_gc_compacts_off_the_caller),
        cmocka_unit_test(test_scrub_and_repair),
        cmocka_unit_test(test_missing_records_found_and_repaired),
        cmocka_unit_test(test_scrub_yields_to_appends),
        cmocka_unit_test(test_coalesce_keeps_up),
        cmocka_unit_test(test_coalesce_waits_for_records),
        cmocka_unit_test(test_coalesce_reaches_a_cap_between_records),
        cmocka_unit_test(test_coalesce_counts_across_passes),
        cmocka_unit_test(test_record_cache_serves_coalescing),
        cmocka_unit_test(test_journal_replays_after_a_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
