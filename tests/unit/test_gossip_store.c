/* Unit tests of gossip completeness on real segment stores
 * (storage-node/segment_gossip.c, segment_store_adopt_truncation, and the
 * rules of common/gossip.c applied to them): a node that missed a
 * recovery, and a node that missed a segment's creation, catch up from a
 * peer's store alone. Two stores in temporary directories: A (node s1,
 * up to date) and B (node s2, stale).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip.h"
#include "hx_err.h"
#include "record.h"
#include "rm_tree.h"
#include "segment_store.h"
#include "store_options.h"

#define PAGE_SIZE 512u
#define PG_PAGES 100u
#define VOL 3u

static char *members6[6] = {"s1", "s2", "s3", "s4", "s5", "s6"};
static char *members_no_s2[6] = {"s1", "s3", "s4", "s5", "s6", "s7"};

typedef struct {
    char dir[2][64];
    segment_store *a, *b;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    segment_store **s[2] = {&f->a, &f->b};
    const char *ids[2] = {"s1", "s2"};
    for (int i = 0; i < 2; i++) {
        snprintf(f->dir[i], sizeof f->dir[i], "/tmp/hx_test_gossip_XXXXXX");
        segment_store_why why = {0};
        if (mkdtemp(f->dir[i]) == NULL ||
            segment_store_open(f->dir[i], ids[i], &hx_test_store_options,
                               s[i], &why) != HX_OK)
            return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    segment_store_close(f->a);
    segment_store_close(f->b);
    for (int i = 0; i < 2; i++)
        hx_test_rm_tree(f->dir[i]);
    free(f);
    return 0;
}

/* Appends records lsns[i] (backlink prev[i]) of page pg * PG_PAGES at
 * epoch; each writes its LSN's low byte at byte 0. */
static int append(segment_store *s, uint32_t pg, uint64_t epoch,
                  char **members, size_t n, const uint64_t *lsns,
                  const uint64_t *prev)
{
    Hexad__Record recs[8], *ptrs[8];
    Hexad__Patch patch[8], *pp[8];
    uint8_t data[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        hexad__record__init(&recs[i]);
        hexad__patch__init(&patch[i]);
        data[i] = (uint8_t)lsns[i];
        patch[i].data.data = &data[i];
        patch[i].data.len = 1;
        pp[i] = &patch[i];
        recs[i].lsn = lsns[i];
        recs[i].prev_lsn = prev[i];
        recs[i].page_no = (uint64_t)pg * PG_PAGES;
        recs[i].flags = HX_RECORD_CPL;
        recs[i].epoch = epoch;
        recs[i].n_patches = 1;
        recs[i].patches = &pp[i];
        hx_record_seal(&recs[i]);
        ptrs[i] = &recs[i];
    }
    Hexad__AppendRecords req = HEXAD__APPEND_RECORDS__INIT;
    Hexad__Geometry geo = HEXAD__GEOMETRY__INIT;
    geo.page_size = PAGE_SIZE;
    geo.pg_pages = PG_PAGES;
    req.volume = VOL;
    req.pg = pg;
    req.volume_epoch = epoch;
    req.membership_epoch = 1;
    req.members = members;
    req.n_members = 6;
    req.geometry = &geo;
    req.records = ptrs;
    req.n_records = n;
    segment_store_append_result res;
    return segment_store_append(s, &req, &res);
}

static int last_rc;
static uint32_t last_stored;

static void done(void *cookie, const segment_store_append_result *res,
                 void *arg)
{
    (void)cookie;
    (void)arg;
    last_rc = res->rc;
    last_stored = res->stored;
}

/* One gossip round B <- A for pg: A answers (with its epoch and ranges),
 * B applies hx_gossip_plan_reply and stages what it may. Returns the plan's
 * stage_records (false: B must pull again from its new SCL). */
static bool pull_round(fixture *f, uint32_t pg, bool adopt)
{
    Hexad__PulledRecords *p = NULL;
    segment_store_why why = {0};
    uint64_t after = segment_store_scl(f->b, VOL, pg);
    assert_int_equal(segment_store_read_chain(f->a, VOL, pg, after, 0, &p,
                                              &why), HX_OK);
    assert_int_equal(segment_store_pulled_add_sync(f->a, after, p), HX_OK);
    bool stage = true;
    if (adopt) {
        hx_lsn_range *own = NULL, peer[8];
        size_t n_own = 0;
        assert_int_equal(segment_store_truncations(f->b, VOL, pg, after, &own,
                                                   &n_own), HX_OK);
        assert_true(p->n_truncations <= 8);
        for (size_t i = 0; i < p->n_truncations; i++)
            peer[i] = (hx_lsn_range){p->truncations[i]->from_lsn,
                                     p->truncations[i]->to_lsn,
                                     p->truncations[i]->epoch};
        hx_gossip_reply_plan plan;
        hx_gossip_plan_reply(segment_store_volume_epoch(f->b, VOL), own,
                             n_own, p->volume_epoch, peer, p->n_truncations,
                             &plan);
        free(own);
        uint64_t cur = 0, scl = 0;
        if (plan.adopt_epoch)
            assert_int_equal(segment_store_seal_epoch(
                                 f->b, VOL, plan.adopt_epoch, &cur, &why),
                             HX_OK);
        for (size_t i = 0; i < plan.n_truncations; i++)
            assert_int_equal(segment_store_adopt_truncation(
                                 f->b, VOL, pg, plan.truncations[i].epoch,
                                 plan.truncations[i].from_lsn,
                                 plan.truncations[i].to_lsn, &scl, &why),
                             HX_OK);
        stage = plan.stage_records;
    }
    if (stage && p->n_records > 0) {
        assert_int_equal(segment_store_stage_pulled(f->b, p, NULL), HX_OK);
        assert_int_equal(segment_store_flush(f->b, done, NULL), HX_OK);
    }
    segment_store_pulled_free(p);
    return stage;
}

/* Issue 7 gossip: B held the dead writer's records 6, 7 above the VDL (5)
 * and was down while the new writer truncated [6, 100] at epoch 2 and
 * wrote 101, 102 (backlink 5). Plain pulling forks B's chain forever;
 * adopting A's epoch and range first lets B catch up. */
static void test_missed_recovery(void **state)
{
    fixture *f = *state;
    const uint64_t l1[5] = {1, 2, 3, 4, 5}, p1[5] = {0, 1, 2, 3, 4};
    assert_int_equal(append(f->a, 0, 1, members6, 5, l1, p1), HX_OK);
    assert_int_equal(append(f->b, 0, 1, members6, 5, l1, p1), HX_OK);
    const uint64_t l2[2] = {6, 7}, p2[2] = {5, 6};
    assert_int_equal(append(f->b, 0, 1, members6, 2, l2, p2), HX_OK);
    uint64_t scl = 0, cur = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_seal_epoch(f->a, VOL, 2, &cur, &why), HX_OK);
    assert_int_equal(segment_store_truncate(f->a, VOL, 0, 2, 6, 100, &scl,
                                            &why), HX_OK);
    assert_int_equal(scl, 5);
    const uint64_t l3[2] = {101, 102}, p3[2] = {5, 101};
    assert_int_equal(append(f->a, 0, 2, members6, 2, l3, p3), HX_OK);
    assert_int_equal(segment_store_scl(f->a, VOL, 0), 102);
    assert_int_equal(segment_store_scl(f->b, VOL, 0), 7);

    /* Without adoption: 101 links below B's SCL: refused as a fork. */
    last_rc = HX_OK;
    assert_true(pull_round(f, 0, false));
    assert_int_equal(last_rc, HX_ERR_INVALID);
    assert_int_equal(segment_store_scl(f->b, VOL, 0), 7);

    /* With it: epoch and range adopted, records dropped, pulled again. */
    assert_false(pull_round(f, 0, true));
    assert_int_equal(segment_store_volume_epoch(f->b, VOL), 2);
    assert_int_equal(segment_store_scl(f->b, VOL, 0), 5);
    hx_lsn_range *r = NULL;
    size_t nr = 0;
    assert_int_equal(segment_store_truncations(f->b, VOL, 0, 0, &r, &nr),
                     HX_OK);
    assert_int_equal(nr, 1);
    assert_int_equal(r[0].from_lsn, 6);
    assert_int_equal(r[0].to_lsn, 100);
    assert_int_equal(r[0].epoch, 2);
    free(r);
    assert_true(pull_round(f, 0, true));
    assert_int_equal(last_rc, HX_OK);
    assert_int_equal(last_stored, 2);
    assert_int_equal(segment_store_scl(f->b, VOL, 0), 102);
    /* In step now: nothing more to adopt. */
    assert_true(pull_round(f, 0, true));

    /* Both read the page alike at the new SCL. */
    uint8_t *pa = NULL, *pb = NULL;
    size_t la = 0, lb = 0;
    uint64_t ka = 0, kb = 0;
    assert_int_equal(segment_store_get_page(f->a, VOL, 0, 0, 102, &pa, &la,
                                            &ka, &why), HX_OK);
    assert_int_equal(segment_store_get_page(f->b, VOL, 0, 0, 102, &pb, &lb,
                                            &kb, &why), HX_OK);
    assert_int_equal(ka, kb);
    assert_memory_equal(pa, pb, PAGE_SIZE);
    assert_int_equal(pb[0], 102);
    free(pa);
    free(pb);
}

/* An adopted range is not fenced by the volume epoch (it was recorded at
 * its own, older epoch); a writer's Truncate still is. */
static void test_adopt_not_fenced(void **state)
{
    fixture *f = *state;
    const uint64_t l[2] = {1, 2}, p[2] = {0, 1};
    assert_int_equal(append(f->b, 0, 3, members6, 2, l, p), HX_OK);
    uint64_t scl = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_truncate(f->b, VOL, 0, 2, 2, 10, &scl,
                                            &why), HX_ERR_STALE_EPOCH);
    assert_int_equal(segment_store_adopt_truncation(f->b, VOL, 0, 2, 2, 10,
                                                    &scl, &why), HX_OK);
    assert_int_equal(scl, 1);
    assert_int_equal(segment_store_volume_epoch(f->b, VOL), 3);
}

/* Issue 7 gossip: B never saw the creation of PGs 0 and 1 (it was down);
 * A's list for s2 names them (not PG 2, whose members exclude s2), in
 * pages; B stages them and holds them, members and geometry included,
 * at A's epoch. A segment B already holds is left alone. */
static void test_learn_segments(void **state)
{
    fixture *f = *state;
    const uint64_t l[1] = {1}, p[1] = {0};
    const uint64_t l1[1] = {2}, p1[1] = {0};
    const uint64_t l2[1] = {3}, p2[1] = {0};
    assert_int_equal(append(f->a, 0, 4, members6, 1, l, p), HX_OK);
    assert_int_equal(append(f->a, 1, 4, members6, 1, l1, p1), HX_OK);
    assert_int_equal(append(f->a, 2, 4, members_no_s2, 1, l2, p2), HX_OK);

    Hexad__ListSegments q = HEXAD__LIST_SEGMENTS__INIT;
    q.node = "s2";
    q.max_segments = 1;
    Hexad__SegmentList *page1 = NULL, *page2 = NULL;
    assert_int_equal(segment_store_list_segments(f->a, &q, &page1), HX_OK);
    assert_int_equal(page1->n_segments, 1);
    assert_int_equal(page1->segments[0]->pg, 0);
    assert_int_equal(page1->next_key, (uint64_t)VOL << 32 | 1);
    q.start_key = page1->next_key;
    assert_int_equal(segment_store_list_segments(f->a, &q, &page2), HX_OK);
    assert_int_equal(page2->n_segments, 1);
    assert_int_equal(page2->segments[0]->pg, 1);
    assert_int_equal(page2->next_key, 0);
    assert_int_equal(page2->segments[0]->volume_epoch, 4);
    assert_int_equal(page2->segments[0]->n_members, 6);
    assert_non_null(page2->segments[0]->geometry);

    Hexad__SegmentList *pages[2] = {page1, page2};
    for (int i = 0; i < 2; i++) {
        bool staged = false;
        assert_int_equal(segment_store_stage_learned(
                             f->b, pages[i]->segments[0], NULL, &staged),
                         HX_OK);
        assert_true(staged);
    }
    last_rc = -99;
    assert_int_equal(segment_store_flush(f->b, done, NULL), HX_OK);
    assert_int_equal(last_rc, HX_OK);
    assert_int_equal(segment_store_segment_count(f->b), 2);
    assert_int_equal(segment_store_volume_epoch(f->b, VOL), 4);
    segment_store_seg_view v;
    segment_store_segment_at(f->b, 1, &v);
    assert_int_equal(v.pg, 1);
    assert_int_equal(v.n_members, 6);
    assert_string_equal(v.members[1], "s2");
    /* Held now: nothing staged again. */
    bool staged = true;
    assert_int_equal(segment_store_stage_learned(f->b, page1->segments[0],
                                                 NULL, &staged), HX_OK);
    assert_false(staged);
    assert_int_equal(segment_store_staged_count(f->b), 0);
    /* The pulls then fill it. */
    assert_true(pull_round(f, 1, true));
    assert_int_equal(segment_store_scl(f->b, VOL, 1), 2);
    segment_store_segment_list_free(page1);
    segment_store_segment_list_free(page2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missed_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_not_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_learn_segments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
