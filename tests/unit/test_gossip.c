/* Unit tests for common/gossip.c: which peer to pull from, what a reply
 * makes the puller adopt. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip.h"

static hx_gossip_peer fresh(uint64_t scl, uint64_t age_ms)
{
    return (hx_gossip_peer){.usable = true, .scl_known = true, .scl = scl,
                            .scl_age_ms = age_ms};
}

static const hx_gossip_peer UNKNOWN = {.usable = true};
static const hx_gossip_peer SELF = {.usable = false};

/* Nobody reported yet: plain round robin over the usable members, self
 * (not usable) skipped. */
static void test_pick_round_robin(void **state)
{
    (void)state;
    hx_gossip_peer m[4] = {UNKNOWN, SELF, UNKNOWN, UNKNOWN};
    unsigned rr = 0;
    assert_int_equal(hx_gossip_pick_peer(m, 4, 10, &rr), 0);
    assert_int_equal(hx_gossip_pick_peer(m, 4, 10, &rr), 2);
    assert_int_equal(hx_gossip_pick_peer(m, 4, 10, &rr), 3);
    assert_int_equal(hx_gossip_pick_peer(m, 4, 10, &rr), 0);
}

/* Rule 1: a peer known to be ahead wins over ones never asked, and the
 * ahead ones share the pulls. */
static void test_pick_prefers_ahead(void **state)
{
    (void)state;
    hx_gossip_peer m[5] = {UNKNOWN, fresh(50, 100), SELF, UNKNOWN,
                           fresh(60, 4000)};
    unsigned rr = 0;
    assert_int_equal(hx_gossip_pick_peer(m, 5, 10, &rr), 1);
    assert_int_equal(hx_gossip_pick_peer(m, 5, 10, &rr), 4);
    assert_int_equal(hx_gossip_pick_peer(m, 5, 10, &rr), 1);
    /* A stale "ahead" report no longer counts as ahead (rule 2 then). */
    m[1].scl_age_ms = HX_GOSSIP_AHEAD_FRESH_MS;
    m[4].scl_age_ms = HX_GOSSIP_AHEAD_FRESH_MS + 1;
    rr = 0;
    assert_int_equal(hx_gossip_pick_peer(m, 5, 10, &rr), 0);
}

/* Rule 2: a peer that just said it has no more than we do is skipped
 * until its report is HX_GOSSIP_SKIP_SAME_SCL_MS old. */
static void test_pick_skips_known_empty(void **state)
{
    (void)state;
    hx_gossip_peer m[3] = {fresh(10, 10), SELF, fresh(7, 999)};
    unsigned rr = 0;
    assert_int_equal(hx_gossip_pick_peer(m, 3, 10, &rr), -1);
    m[2].scl_age_ms = HX_GOSSIP_SKIP_SAME_SCL_MS;
    assert_int_equal(hx_gossip_pick_peer(m, 3, 10, &rr), 2);
    /* Unusable (backing off) peers are never picked, even when ahead. */
    m[0] = fresh(99, 0);
    m[0].usable = false;
    m[2].usable = false;
    assert_int_equal(hx_gossip_pick_peer(m, 3, 10, &rr), -1);
    assert_int_equal(hx_gossip_pick_peer(m, 0, 10, &rr), -1);
}

static void test_range_covered(void **state)
{
    (void)state;
    hx_lsn_range own[2] = {{10, 20, 3}, {30, 40, 2}};
    hx_lsn_range r = {12, 20, 3};
    assert_true(hx_gossip_range_covered(own, 2, &r));
    r = (hx_lsn_range){12, 21, 3}; /* pokes out of [10, 20] */
    assert_false(hx_gossip_range_covered(own, 2, &r));
    r = (hx_lsn_range){30, 40, 3}; /* a higher epoch than ours */
    assert_false(hx_gossip_range_covered(own, 2, &r));
    r = (hx_lsn_range){30, 35, 1};
    assert_true(hx_gossip_range_covered(own, 2, &r));
    assert_false(hx_gossip_range_covered(NULL, 0, &r));
}

/* The node missed a recovery: it adopts the epoch and the range, and
 * must not stage the reply's records (cut for its old SCL). */
static void test_plan_adopts_epoch_and_truncation(void **state)
{
    (void)state;
    hx_lsn_range peer[2] = {{1000101, 2000100, 3}, {101, 1000100, 2}};
    hx_lsn_range own[1] = {{101, 1000100, 2}};
    hx_gossip_reply_plan p;
    hx_gossip_plan_reply(2, own, 1, 3, peer, 2, &p);
    assert_int_equal(p.adopt_epoch, 3);
    assert_int_equal(p.n_truncations, 1);
    assert_int_equal(p.truncations[0].from_lsn, 1000101);
    assert_int_equal(p.truncations[0].to_lsn, 2000100);
    assert_int_equal(p.truncations[0].epoch, 3);
    assert_false(p.stage_records);

    /* Nothing in own: both, ascending whatever the peer's order. */
    hx_gossip_plan_reply(1, NULL, 0, 3, peer, 2, &p);
    assert_int_equal(p.n_truncations, 2);
    assert_int_equal(p.truncations[0].from_lsn, 101);
    assert_int_equal(p.truncations[1].from_lsn, 1000101);
}

/* In step with the peer: nothing to adopt, records staged. A lower peer
 * epoch is never adopted; malformed ranges are ignored. */
static void test_plan_nothing_to_adopt(void **state)
{
    (void)state;
    hx_lsn_range own[1] = {{101, 500, 4}};
    hx_lsn_range peer[3] = {{101, 500, 4}, {0, 9, 9}, {70, 60, 9}};
    hx_gossip_reply_plan p;
    hx_gossip_plan_reply(4, own, 1, 3, peer, 3, &p);
    assert_int_equal(p.adopt_epoch, 0);
    assert_int_equal(p.n_truncations, 0);
    assert_true(p.stage_records);
    /* An epoch bump alone (a writer restart that truncated nothing new)
     * still lets the records be staged. */
    hx_gossip_plan_reply(4, own, 1, 5, peer, 1, &p);
    assert_int_equal(p.adopt_epoch, 5);
    assert_true(p.stage_records);
}

/* A reply with more missing ranges than one plan applies: the lowest
 * HX_GOSSIP_TRUNCATIONS_MAX, ascending, whatever the reply's order (here
 * descending), never written past the plan's array; the next plan, with
 * those applied, takes the rest. */
static void test_plan_caps_ranges(void **state)
{
    (void)state;
    size_t n = HX_GOSSIP_TRUNCATIONS_MAX + 10;
    hx_lsn_range *peer = calloc(n, sizeof *peer);
    assert_non_null(peer);
    for (size_t i = 0; i < n; i++)
        peer[i] = (hx_lsn_range){10 * (n - 1 - i) + 1, 10 * (n - 1 - i) + 5,
                                 1};
    hx_gossip_reply_plan p;
    hx_gossip_plan_reply(1, NULL, 0, 1, peer, n, &p);
    assert_int_equal(p.n_truncations, HX_GOSSIP_TRUNCATIONS_MAX);
    assert_false(p.stage_records);
    for (size_t i = 0; i < p.n_truncations; i++)
        assert_int_equal(p.truncations[i].from_lsn, 10 * i + 1);
    hx_lsn_range own[HX_GOSSIP_TRUNCATIONS_MAX];
    memcpy(own, p.truncations, sizeof own);
    hx_gossip_plan_reply(1, own, HX_GOSSIP_TRUNCATIONS_MAX, 1, peer, n, &p);
    assert_int_equal(p.n_truncations, 10);
    for (size_t i = 0; i < p.n_truncations; i++)
        assert_int_equal(p.truncations[i].from_lsn,
                         10 * (HX_GOSSIP_TRUNCATIONS_MAX + i) + 1);
    free(peer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_round_robin),
        cmocka_unit_test(test_pick_prefers_ahead),
        cmocka_unit_test(test_pick_skips_known_empty),
        cmocka_unit_test(test_range_covered),
        cmocka_unit_test(test_plan_adopts_epoch_and_truncation),
        cmocka_unit_test(test_plan_nothing_to_adopt),
        cmocka_unit_test(test_plan_caps_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
