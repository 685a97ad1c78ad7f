/* Unit tests for common/quorum.c: LSN allocation, PGCL, VCL, VDL, LAL. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hx_err.h"
#include "quorum.h"

/* Allocates one record and checks the LSN is dense and the backlink is the
 * PG's previous record. */
static uint64_t alloc_ok(hx_lsn_tracker *t, uint32_t pg, bool cpl,
                         uint64_t want_prev)
{
    uint64_t last = hx_lsn_last_allocated(t);
    uint64_t lsn = 0, prev = 99999;
    assert_int_equal(hx_lsn_alloc(t, pg, cpl, &lsn, &prev), HX_OK);
    assert_int_equal(lsn, last + 1);
    assert_int_equal(prev, want_prev);
    hx_lsn_check_invariants(t);
    return lsn;
}

/* Members [first, first + count) of pg acknowledge scl. Returns whether
 * the last ack advanced VDL; earlier acks must not have. */
static bool ack_members(hx_lsn_tracker *t, uint32_t pg, int first, int count,
                        uint64_t scl)
{
    bool advanced = false;
    for (int m = first; m < first + count; m++) {
        assert_false(advanced);
        advanced = hx_lsn_on_ack(t, pg, m, scl);
        hx_lsn_check_invariants(t);
    }
    return advanced;
}

/* DESIGN.md "Vocabulary" (PGCL): the 4th highest SCL of 6. */
static void test_quorum_pgcl_fourth_highest(void **state)
{
    (void)state;
    const uint64_t a[6] = { 1, 2, 3, 4, 5, 6 };
    const uint64_t b[6] = { 9, 9, 9, 0, 0, 0 };
    const uint64_t c[6] = { 9, 9, 9, 9, 0, 0 };
    const uint64_t d[6] = { 7, 0, 7, 3, 7, 5 };
    const uint64_t e[6] = { 0, 0, 0, 0, 0, 0 };
    assert_int_equal(hx_quorum_pgcl(a), 3);
    assert_int_equal(hx_quorum_pgcl(b), 0);
    assert_int_equal(hx_quorum_pgcl(c), 9);
    assert_int_equal(hx_quorum_pgcl(d), 5);
    assert_int_equal(hx_quorum_pgcl(e), 0);
}

/* quorum.h: LSNs are dense across PGs; each record backlinks to the
 * previous record of its own PG (DESIGN.md "Vocabulary", redo record). */
static void test_quorum_alloc_dense_backlinks(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1000);
    assert_non_null(t);
    assert_int_equal(hx_lsn_last_allocated(t), 0);
    assert_int_equal(alloc_ok(t, 0, false, 0), 1);
    assert_int_equal(alloc_ok(t, 1, false, 0), 2);
    assert_int_equal(alloc_ok(t, 0, false, 1), 3);
    assert_int_equal(alloc_ok(t, 2, false, 0), 4);
    assert_int_equal(alloc_ok(t, 1, true, 2), 5);
    assert_int_equal(hx_lsn_pg_tail(t, 0), 3);
    assert_int_equal(hx_lsn_pg_tail(t, 1), 5);
    assert_int_equal(hx_lsn_pg_tail(t, 2), 4);
    assert_int_equal(hx_lsn_pg_tail(t, 3), 0);
    assert_int_equal(hx_lsn_outstanding(t), 5);
    assert_int_equal(hx_lsn_vcl(t), 0);
    assert_int_equal(hx_lsn_vdl(t), 0);
    hx_lsn_tracker_destroy(t);
    hx_lsn_tracker_destroy(NULL); /* STYLE.md: destroy(NULL) is a no-op */
}

/* DESIGN.md "The write path": a write is durable on 4 of 6 copies; acks
 * from 3 segments must NOT advance VDL, the 4th must. */
static void test_quorum_three_acks_not_durable_four_are(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1000);
    assert_non_null(t);
    alloc_ok(t, 0, true, 0);
    assert_false(ack_members(t, 0, 0, 3, 1));
    assert_int_equal(hx_lsn_pgcl(t, 0), 0);
    assert_int_equal(hx_lsn_vcl(t), 0);
    assert_int_equal(hx_lsn_vdl(t), 0);
    assert_int_equal(hx_lsn_outstanding(t), 1);
    /* Acks from the same three members again change nothing. */
    assert_false(ack_members(t, 0, 0, 3, 1));
    assert_int_equal(hx_lsn_vdl(t), 0);
    assert_true(hx_lsn_on_ack(t, 0, 5, 1)); /* the 4th distinct member */
    hx_lsn_check_invariants(t);
    assert_int_equal(hx_lsn_pgcl(t, 0), 1);
    assert_int_equal(hx_lsn_vcl(t), 1);
    assert_int_equal(hx_lsn_vdl(t), 1);
    assert_int_equal(hx_lsn_outstanding(t), 0);
    /* The remaining members' acks are no news. */
    assert_false(hx_lsn_on_ack(t, 0, 3, 1));
    assert_false(hx_lsn_on_ack(t, 0, 4, 1));
    hx_lsn_tracker_destroy(t);
}

/* quorum.h hx_lsn_on_ack: stale (lower) and repeated acks are ignored and
 * acks may arrive in any order (DESIGN.md "Faults": reorder, duplicate). */
static void test_quorum_stale_and_reordered_acks(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1000);
    assert_non_null(t);
    for (int i = 0; i < 6; i++)
        alloc_ok(t, 0, i % 2 == 1, (uint64_t)i); /* CPLs at 2, 4, 6 */
    assert_false(hx_lsn_on_ack(t, 0, 0, 6));
    assert_false(hx_lsn_on_ack(t, 0, 0, 2)); /* reordered: older SCL */
    assert_int_equal(hx_lsn_member_scl(t, 0, 0), 6);
    assert_false(hx_lsn_on_ack(t, 0, 1, 4));
    assert_false(hx_lsn_on_ack(t, 0, 2, 5));
    assert_true(hx_lsn_on_ack(t, 0, 3, 3)); /* SCLs 6,4,5,3: pgcl 3 */
    assert_int_equal(hx_lsn_pgcl(t, 0), 3);
    assert_int_equal(hx_lsn_vcl(t), 3);
    assert_int_equal(hx_lsn_vdl(t), 2);
    assert_false(hx_lsn_on_ack(t, 0, 3, 1)); /* stale */
    assert_false(hx_lsn_on_ack(t, 0, 3, 3)); /* repeated */
    assert_int_equal(hx_lsn_member_scl(t, 0, 3), 3);
    assert_int_equal(hx_lsn_pgcl(t, 0), 3);
    assert_true(hx_lsn_on_ack(t, 0, 3, 6)); /* 6,4,5,6: pgcl 4 */
    assert_int_equal(hx_lsn_vdl(t), 4);
    assert_false(hx_lsn_on_ack(t, 0, 1, 6)); /* 6,6,5,6: pgcl 5 */
    assert_int_equal(hx_lsn_vcl(t), 5);
    assert_int_equal(hx_lsn_vdl(t), 4); /* 5 is not a CPL */
    hx_lsn_check_invariants(t);
    /* Out-of-range members and unknown PGs are ignored. */
    assert_false(hx_lsn_on_ack(t, 0, 6, 6));
    assert_false(hx_lsn_on_ack(t, 0, -1, 6));
    assert_false(hx_lsn_on_ack(t, 42, 0, 6));
    assert_int_equal(hx_lsn_member_scl(t, 42, 0), 0);
    assert_int_equal(hx_lsn_pgcl(t, 42), 0);
    hx_lsn_tracker_destroy(t);
}

/* DESIGN.md "Vocabulary" (SCL, PGCL): a hole on segments holds their SCL,
 * and so the PGCL and VCL, below it until it is filled. */
static void test_quorum_hole_holds_vcl(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1000);
    assert_non_null(t);
    alloc_ok(t, 0, false, 0);
    alloc_ok(t, 0, false, 1);
    alloc_ok(t, 0, true, 2);
    /* All six hold 1 and 3 but miss 2: their SCL stays at 1. */
    assert_false(ack_members(t, 0, 0, 6, 1));
    assert_int_equal(hx_lsn_vcl(t), 1);
    assert_int_equal(hx_lsn_vdl(t), 0);
    assert_int_equal(hx_lsn_outstanding(t), 2);
    /* Gossip fills the hole on four of them. */
    assert_true(ack_members(t, 0, 2, 4, 3));
    assert_int_equal(hx_lsn_vcl(t), 3);
    assert_int_equal(hx_lsn_vdl(t), 3);
    hx_lsn_tracker_destroy(t);
}

/* DESIGN.md "Vocabulary" (VCL, VDL): with several PGs interleaved, VDL
 * waits for the slowest PG's records below the CPL. */
static void test_quorum_vdl_waits_for_slowest_pg(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1000);
    assert_non_null(t);
    /* One MTR over three PGs: 1 (pg 0), 2 (pg 1), 3 (pg 2), 4 (pg 0, CPL). */
    alloc_ok(t, 0, false, 0);
    alloc_ok(t, 1, false, 0);
    alloc_ok(t, 2, false, 0);
    alloc_ok(t, 0, true, 1);
    assert_false(ack_members(t, 0, 0, 6, 4));
    assert_int_equal(hx_lsn_pgcl(t, 0), 4);
    assert_int_equal(hx_lsn_vcl(t), 1);
    assert_false(ack_members(t, 2, 0, 4, 3));
    assert_int_equal(hx_lsn_pgcl(t, 2), 3);
    assert_int_equal(hx_lsn_vcl(t), 1); /* LSN 2 (pg 1) still missing */
    assert_int_equal(hx_lsn_vdl(t), 0);
    assert_int_equal(hx_lsn_outstanding(t), 1);
    assert_false(ack_members(t, 1, 0, 3, 2));
    assert_int_equal(hx_lsn_vdl(t), 0);
    assert_true(hx_lsn_on_ack(t, 1, 3, 2));
    assert_int_equal(hx_lsn_vcl(t), 4);
    assert_int_equal(hx_lsn_vdl(t), 4);
    hx_lsn_tracker_destroy(t);
}

/* DESIGN.md "Vocabulary" (VDL is the highest CPL at or below VCL; MTRs
 * become visible together): VDL moves only to CPL boundaries. */
static void test_quorum_vdl_only_at_cpl(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1000);
    assert_non_null(t);
    const bool cpl[7] = { false, false, false, true, false, false, true };
    for (uint64_t l = 1; l <= 6; l++)
        alloc_ok(t, 0, cpl[l], l - 1);
    static const uint64_t want_vdl[7] = { 0, 0, 0, 3, 3, 3, 6 };
    for (uint64_t l = 1; l <= 6; l++) {
        bool advanced = ack_members(t, 0, 0, 4, l);
        assert_int_equal(hx_lsn_vcl(t), l);
        assert_int_equal(hx_lsn_vdl(t), want_vdl[l]);
        assert_int_equal(advanced, cpl[l]);
    }
    hx_lsn_tracker_destroy(t);
}

/* DESIGN.md "Vocabulary" (LAL): no LSN beyond VDL + LAL; HX_ERR_BUSY
 * changes nothing, and acks that move VDL unblock allocation. */
static void test_quorum_lal_backpressure(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 4);
    assert_non_null(t);
    alloc_ok(t, 0, false, 0);
    alloc_ok(t, 0, true, 1);
    alloc_ok(t, 1, false, 0);
    alloc_ok(t, 1, true, 3);
    uint64_t lsn = 77, prev = 77;
    assert_int_equal(hx_lsn_alloc(t, 0, true, &lsn, &prev), HX_ERR_BUSY);
    assert_int_equal(lsn, 77);
    assert_int_equal(prev, 77);
    assert_int_equal(hx_lsn_last_allocated(t), 4);
    assert_int_equal(hx_lsn_pg_tail(t, 0), 2);
    assert_int_equal(hx_lsn_outstanding(t), 4);
    hx_lsn_check_invariants(t);

    /* Durable up to a non-CPL: VCL moves, VDL does not, still busy. */
    ack_members(t, 0, 0, 4, 1);
    assert_int_equal(hx_lsn_vcl(t), 1);
    assert_int_equal(hx_lsn_alloc(t, 0, false, &lsn, &prev), HX_ERR_BUSY);
    /* VDL 2: two more LSNs (5, 6) may be allocated, not a third. */
    assert_true(ack_members(t, 0, 0, 4, 2));
    assert_int_equal(hx_lsn_vdl(t), 2);
    alloc_ok(t, 0, false, 2);
    alloc_ok(t, 2, true, 0);
    assert_int_equal(hx_lsn_alloc(t, 2, false, &lsn, &prev), HX_ERR_BUSY);
    assert_true(ack_members(t, 1, 2, 4, 4));
    assert_int_equal(hx_lsn_vdl(t), 4);
    alloc_ok(t, 2, false, 6);
    hx_lsn_tracker_destroy(t);
}

/* quorum.h invariant 4 after recovery: recovery places next_lsn above
 * vdl + lal; the truncated LSNs below next_lsn are settled, so the limit
 * counts from next_lsn - 1 until VDL passes it. */
static void test_quorum_lal_after_recovery(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(101, 50, 10);
    assert_non_null(t);
    assert_int_equal(hx_lsn_vcl(t), 100);
    assert_int_equal(hx_lsn_vdl(t), 50);
    assert_int_equal(hx_lsn_set_pg_tail(t, 0, 49), HX_OK);
    for (uint64_t l = 101; l <= 110; l++)
        alloc_ok(t, 0, l % 2 == 0, l == 101 ? 49 : l - 1);
    uint64_t lsn, prev;
    assert_int_equal(hx_lsn_alloc(t, 0, false, &lsn, &prev), HX_ERR_BUSY);
    assert_true(ack_members(t, 0, 0, 4, 104));
    assert_int_equal(hx_lsn_vcl(t), 104);
    assert_int_equal(hx_lsn_vdl(t), 104);
    for (uint64_t l = 111; l <= 114; l++)
        alloc_ok(t, 0, false, l - 1);
    assert_int_equal(hx_lsn_alloc(t, 0, false, &lsn, &prev), HX_ERR_BUSY);
    hx_lsn_tracker_destroy(t);
}

/* quorum.h hx_lsn_set_member_scl: a member's SCL may drop (lost unsynced
 * data); its lower SCL then counts, so the PG needs another member for a
 * quorum; what was already durable stays durable (invariants 2, 3). */
static void test_quorum_set_member_scl_lowering(void **state)
{
    (void)state;
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1000);
    assert_non_null(t);
    alloc_ok(t, 0, false, 0);
    alloc_ok(t, 0, true, 1);
    alloc_ok(t, 0, false, 2);
    alloc_ok(t, 0, true, 3);
    assert_false(ack_members(t, 0, 0, 3, 4));
    assert_true(hx_lsn_on_ack(t, 0, 3, 2)); /* 4,4,4,2: pgcl 2 */
    assert_int_equal(hx_lsn_vdl(t), 2);

    /* Member 0 lost 3 and 4: an ordinary (lower) ack would be ignored. */
    assert_false(hx_lsn_on_ack(t, 0, 0, 2));
    assert_int_equal(hx_lsn_member_scl(t, 0, 0), 4);
    assert_false(hx_lsn_set_member_scl(t, 0, 0, 2));
    assert_int_equal(hx_lsn_member_scl(t, 0, 0), 2);
    hx_lsn_check_invariants(t);
    /* Member 3 catches up: 2,4,4,4 is only three copies of LSN 4. */
    assert_false(hx_lsn_on_ack(t, 0, 3, 4));
    assert_int_equal(hx_lsn_pgcl(t, 0), 2);
    assert_int_equal(hx_lsn_vdl(t), 2);
    assert_true(hx_lsn_on_ack(t, 0, 4, 4));
    assert_int_equal(hx_lsn_pgcl(t, 0), 4);
    assert_int_equal(hx_lsn_vdl(t), 4);

    /* Two members drop to 0 (2,0,0,4,4,0): pgcl drops, VCL and VDL do
     * not. */
    assert_false(hx_lsn_set_member_scl(t, 0, 1, 0));
    assert_false(hx_lsn_set_member_scl(t, 0, 2, 0));
    assert_int_equal(hx_lsn_pgcl(t, 0), 0);
    assert_int_equal(hx_lsn_vcl(t), 4);
    assert_int_equal(hx_lsn_vdl(t), 4);
    hx_lsn_check_invariants(t);
    /* A new record needs four members at its LSN again. */
    alloc_ok(t, 0, true, 4);
    assert_false(hx_lsn_on_ack(t, 0, 3, 5));
    assert_false(hx_lsn_on_ack(t, 0, 4, 5));
    assert_false(hx_lsn_on_ack(t, 0, 5, 5));
    assert_int_equal(hx_lsn_vdl(t), 4);
    assert_true(hx_lsn_set_member_scl(t, 0, 1, 5));
    assert_int_equal(hx_lsn_vdl(t), 5);
    hx_lsn_tracker_destroy(t);
}

/* quorum.h hx_lsn_set_pg_tail and hx_lsn_tracker_create (DESIGN.md
 * "Recovery": allocate new LSNs above the truncated range): a recovered
 * PG's next record backlinks to its recovered tail, and its members count
 * as complete up to it. */
static void test_quorum_recovered_tails(void **state)
{
    (void)state;
    assert_null(hx_lsn_tracker_create(0, 0, 10));
    assert_null(hx_lsn_tracker_create(10, 10, 10));
    assert_null(hx_lsn_tracker_create(10, 5, 0));
    hx_lsn_tracker *t = hx_lsn_tracker_create(201, 90, 100);
    assert_non_null(t);
    assert_int_equal(hx_lsn_last_allocated(t), 200);
    assert_int_equal(hx_lsn_outstanding(t), 0);
    assert_int_equal(hx_lsn_set_pg_tail(t, 7, 90), HX_OK);
    assert_int_equal(hx_lsn_set_pg_tail(t, 3, 88), HX_OK);
    assert_int_equal(hx_lsn_set_pg_tail(t, 9, 201), HX_ERR_INVALID);
    for (int m = 0; m < HX_PG_MEMBERS; m++)
        assert_int_equal(hx_lsn_member_scl(t, 7, m), 90);
    assert_int_equal(hx_lsn_pgcl(t, 7), 90);
    assert_int_equal(hx_lsn_pg_tail(t, 3), 88);
    hx_lsn_check_invariants(t);

    alloc_ok(t, 7, false, 90);
    alloc_ok(t, 3, true, 88);
    assert_int_equal(hx_lsn_set_pg_tail(t, 7, 90), HX_ERR_INVALID);
    assert_false(ack_members(t, 3, 0, 4, 202));
    assert_int_equal(hx_lsn_vcl(t), 200);
    assert_true(ack_members(t, 7, 2, 4, 201));
    assert_int_equal(hx_lsn_vcl(t), 202);
    assert_int_equal(hx_lsn_vdl(t), 202);
    hx_lsn_tracker_destroy(t);
}

/* quorum.h: PG numbers may be sparse and many (storage auto-scaling adds
 * PGs); each keeps its own backlinks and quorum. */
static void test_quorum_sparse_and_many_pgs(void **state)
{
    (void)state;
    enum { NPG = 3000 };
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 1u << 20);
    assert_non_null(t);
    const uint32_t sparse[3] = { 0, 1000000, UINT32_MAX };
    for (int i = 0; i < 3; i++)
        alloc_ok(t, sparse[i], false, 0);
    /* Invariant checks walk every PG: run them per phase, not per call. */
    uint64_t lsn, prev;
    for (uint32_t p = 1; p <= NPG; p++) {
        assert_int_equal(hx_lsn_alloc(t, p * 7919u, p == NPG, &lsn, &prev),
                         HX_OK);
        assert_int_equal(lsn, 3 + p);
        assert_int_equal(prev, 0);
    }
    for (uint32_t p = 1; p <= NPG; p++) {
        assert_int_equal(hx_lsn_alloc(t, p * 7919u, p == NPG, &lsn, &prev),
                         HX_OK);
        assert_int_equal(prev, 3 + p);
    }
    hx_lsn_check_invariants(t);
    assert_int_equal(hx_lsn_pg_tail(t, UINT32_MAX), 3);
    assert_int_equal(hx_lsn_pg_tail(t, 7919u * 5), 3 + NPG + 5);
    for (int i = 0; i < 3; i++)
        ack_members(t, sparse[i], 0, 4, (uint64_t)i + 1);
    assert_int_equal(hx_lsn_vcl(t), 3);
    /* Second records first: every PG's member SCL covers both records. */
    for (uint32_t p = NPG; p >= 1; p--) {
        for (int m = 0; m < 4; m++)
            hx_lsn_on_ack(t, p * 7919u, m, 3 + NPG + p);
        if (p > 1)
            assert_int_equal(hx_lsn_vcl(t), 3);
    }
    hx_lsn_check_invariants(t);
    assert_int_equal(hx_lsn_vcl(t), 3 + 2 * NPG);
    assert_int_equal(hx_lsn_vdl(t), 3 + 2 * NPG);
    assert_int_equal(hx_lsn_outstanding(t), 0);
    hx_lsn_tracker_destroy(t);
}

/* quorum.h (acks cost amortized O(1)): a long pipelined run, acked in
 * batches, keeps exact counts while the rings wrap and grow. */
static void test_quorum_long_pipeline(void **state)
{
    (void)state;
    enum { N = 200000, BATCH = 997, PGS = 5 };
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, 5000);
    assert_non_null(t);
    uint64_t acked = 0;
    for (uint64_t l = 1; l <= N; l++) {
        uint64_t lsn, prev;
        int rc = hx_lsn_alloc(t, (uint32_t)(l % PGS), l % 3 == 0, &lsn,
                              &prev);
        if (rc == HX_ERR_BUSY) {
            /* Ack everything allocated so far, PG by PG. */
            uint64_t last = hx_lsn_last_allocated(t);
            for (uint32_t p = 0; p < PGS; p++)
                for (int m = 0; m < HX_PG_MEMBERS; m++)
                    hx_lsn_on_ack(t, p, m, hx_lsn_pg_tail(t, p));
            assert_int_equal(hx_lsn_vcl(t), last);
            assert_int_equal(hx_lsn_outstanding(t), 0);
            acked = last;
            rc = hx_lsn_alloc(t, (uint32_t)(l % PGS), l % 3 == 0, &lsn,
                              &prev);
        }
        assert_int_equal(rc, HX_OK);
        assert_int_equal(lsn, l);
        if (l % BATCH == 0)
            hx_lsn_check_invariants(t);
    }
    assert_true(acked > 0);
    hx_lsn_tracker_destroy(t);
}

/* ------------------------------------------------------------------------
 * Randomized property test (DESIGN.md "The write path" and "Faults":
 * delays, reordering, duplicates): VDL never exceeds the highest CPL whose
 * every record at or below it has acks from >= 4 members of its PG, and
 * with no SCL ever lowered it equals it exactly.
 * ---------------------------------------------------------------------- */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

enum { RP_PGS = 3, RP_MAX = 4000, RP_STEPS = 40000, RP_LAL = 40 };

typedef struct {
    uint32_t pg;
    int member;
    uint64_t scl;
} rp_ack;

typedef struct {
    uint32_t pg_of[RP_MAX + 1];
    bool cpl[RP_MAX + 1];
    bool delivered[RP_PGS][HX_PG_MEMBERS][RP_MAX + 1];
    uint64_t acked[RP_PGS][HX_PG_MEMBERS]; /* highest SCL the tracker saw */
    rp_ack inflight[RP_MAX * 4];
    size_t n_inflight;
} rp_world;

/* Brute force: the member's SCL over what was delivered to it. */
static uint64_t rp_member_scl(const rp_world *w, uint64_t last, uint32_t pg,
                              int m)
{
    uint64_t scl = 0;
    for (uint64_t l = 1; l <= last; l++) {
        if (w->pg_of[l] != pg)
            continue;
        if (!w->delivered[pg][m][l])
            break;
        scl = l;
    }
    return scl;
}

/* Brute force: the highest CPL C such that every record <= C has an ack
 * covering it from >= 4 members of its PG. */
static uint64_t rp_oracle_vdl(const rp_world *w, uint64_t last)
{
    uint64_t vdl = 0;
    for (uint64_t l = 1; l <= last; l++) {
        int copies = 0;
        for (int m = 0; m < HX_PG_MEMBERS; m++)
            copies += w->acked[w->pg_of[l]][m] >= l;
        if (copies < HX_WRITE_QUORUM)
            break;
        if (w->cpl[l])
            vdl = l;
    }
    return vdl;
}

static void test_quorum_random_property(void **state)
{
    (void)state;
    const uint64_t seed = 0x2545f4914f6cdd1dULL;
    print_message("test_quorum_random_property seed=0x%016llx\n",
                  (unsigned long long)seed);
    uint64_t rng = seed;
    rp_world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    hx_lsn_tracker *t = hx_lsn_tracker_create(1, 0, RP_LAL);
    assert_non_null(t);
    uint64_t busy = 0, last_vdl = 0;
    for (int step = 0; step < RP_STEPS; step++) {
        uint64_t last = hx_lsn_last_allocated(t);
        uint64_t r = xorshift64(&rng) % 100;
        if (r < 20 && last < RP_MAX) {
            uint32_t pg = (uint32_t)(xorshift64(&rng) % RP_PGS);
            bool cpl = xorshift64(&rng) % 3 == 0;
            uint64_t lsn, prev;
            int rc = hx_lsn_alloc(t, pg, cpl, &lsn, &prev);
            if (rc == HX_ERR_BUSY) {
                assert_true(last + 1 > hx_lsn_vdl(t) + RP_LAL);
                busy++;
            } else {
                assert_int_equal(rc, HX_OK);
                assert_int_equal(lsn, last + 1);
                assert_true(lsn <= hx_lsn_vdl(t) + RP_LAL);
                w->pg_of[lsn] = pg;
                w->cpl[lsn] = cpl;
            }
        } else if (r < 60 && last > 0) {
            /* A record reaches one member (member 5 is slow, 4 slower):
             * half the time a random recent one (out of order), else the
             * member's oldest hole in a random PG (gossip fills it). */
            int m = (int)(xorshift64(&rng) % HX_PG_MEMBERS);
            if ((m == 5 && xorshift64(&rng) % 4 != 0) ||
                (m == 4 && xorshift64(&rng) % 8 != 0))
                continue;
            uint64_t l;
            if (xorshift64(&rng) % 2 == 0) {
                uint64_t recent = last - hx_lsn_vdl(t) + 8;
                l = last - xorshift64(&rng) % (recent > last ? last : recent);
            } else {
                uint32_t hp = (uint32_t)(xorshift64(&rng) % RP_PGS);
                for (l = 1; l <= last; l++)
                    if (w->pg_of[l] == hp && !w->delivered[hp][m][l])
                        break;
                if (l > last)
                    continue;
            }
            uint32_t pg = w->pg_of[l];
            if (w->delivered[pg][m][l])
                continue;
            w->delivered[pg][m][l] = true;
            rp_ack a = { pg, m, rp_member_scl(w, last, pg, m) };
            if (a.scl > 0 && w->n_inflight < RP_MAX * 4)
                w->inflight[w->n_inflight++] = a;
        } else if (w->n_inflight > 0) {
            /* Deliver a random in-flight ack (reordering); sometimes keep
             * it in flight to deliver it again (duplication). */
            size_t i = (size_t)(xorshift64(&rng) % w->n_inflight);
            rp_ack a = w->inflight[i];
            if (xorshift64(&rng) % 10 != 0)
                w->inflight[i] = w->inflight[--w->n_inflight];
            uint64_t before = hx_lsn_vdl(t);
            bool adv = hx_lsn_on_ack(t, a.pg, a.member, a.scl);
            if (a.scl > w->acked[a.pg][a.member])
                w->acked[a.pg][a.member] = a.scl;
            assert_int_equal(adv, hx_lsn_vdl(t) > before);
            assert_int_equal(hx_lsn_member_scl(t, a.pg, a.member),
                             w->acked[a.pg][a.member]);
        }
        hx_lsn_check_invariants(t);
        last = hx_lsn_last_allocated(t);
        uint64_t oracle = rp_oracle_vdl(w, last);
        uint64_t vdl = hx_lsn_vdl(t);
        assert_true(vdl <= oracle);
        assert_int_equal(vdl, oracle);
        assert_true(vdl >= last_vdl);
        assert_true(vdl <= hx_lsn_vcl(t));
        last_vdl = vdl;
    }
    print_message("  last=%llu vdl=%llu busy=%llu\n",
                  (unsigned long long)hx_lsn_last_allocated(t),
                  (unsigned long long)last_vdl, (unsigned long long)busy);
    assert_true(busy > 0);          /* back-pressure was exercised */
    assert_true(last_vdl > RP_LAL); /* and released after acks */
    hx_lsn_tracker_destroy(t);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quorum_pgcl_fourth_highest),
        cmocka_unit_test(test_quorum_alloc_dense_backlinks),
        cmocka_unit_test(test_quorum_three_acks_not_durable_four_are),
        cmocka_unit_test(test_quorum_stale_and_reordered_acks),
        cmocka_unit_test(test_quorum_hole_holds_vcl),
        cmocka_unit_test(test_quorum_vdl_waits_for_slowest_pg),
        cmocka_unit_test(test_quorum_vdl_only_at_cpl),
        cmocka_unit_test(test_quorum_lal_backpressure),
        cmocka_unit_test(test_quorum_lal_after_recovery),
        cmocka_unit_test(test_quorum_set_member_scl_lowering),
        cmocka_unit_test(test_quorum_recovered_tails),
        cmocka_unit_test(test_quorum_sparse_and_many_pgs),
        cmocka_unit_test(test_quorum_long_pipeline),
        cmocka_unit_test(test_quorum_random_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
