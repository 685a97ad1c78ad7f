/* Unit tests for common/recovery.c: writer start / crash recovery. */
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
#include "recovery.h"

#define CPL 1u /* HEXAD__RECORD_FLAG__RECORD_FLAG_CPL */

static hx_seg_report seg(uint64_t scl, uint64_t max_lsn, uint64_t last_le,
                         uint64_t cpl_le, const hx_rec_meta *tail,
                         size_t n_tail)
{
    return (hx_seg_report){ .reachable = true, .scl = scl,
                            .max_lsn = max_lsn, .last_lsn_le_limit = last_le,
                            .cpl_le_limit = cpl_le, .tail = tail,
                            .n_tail = n_tail };
}

/* Runs both rounds; round 1 must give want_base. */
static void recover(const hx_pg_report *pgs, size_t n, uint64_t want_base,
                    uint64_t lal, hx_recovery_result *out, uint64_t *tails)
{
    uint64_t base = 12345;
    uint32_t bad = 777;
    assert_int_equal(hx_recovery_base(pgs, n, &base, &bad), HX_OK);
    assert_int_equal(base, want_base);
    assert_int_equal(hx_recovery_plan(pgs, n, base, lal, out, tails, &bad),
                     HX_OK);
    assert_int_equal(bad, 777);
    assert_int_equal(out->base, base);
    assert_int_equal(out->trunc_from, out->vdl + 1);
    assert_int_equal(out->trunc_to, out->next_lsn - 1);
    assert_true(out->vdl <= out->vcl);
    assert_true(out->next_lsn > out->vdl + lal);
}

/* recovery.h hx_recovery_base: C_p is the highest SCL among a PG's
 * reachable segments; base is the lowest C_p. Segments at different SCLs;
 * an unreachable segment's SCL does not count. */
static void test_recovery_base_different_scls(void **state)
{
    (void)state;
    hx_pg_report pgs[2];
    memset(pgs, 0, sizeof(pgs));
    pgs[0].pg = 4;
    pgs[0].seg[0] = seg(10, 12, 0, 0, NULL, 0);
    pgs[0].seg[1] = seg(8, 8, 0, 0, NULL, 0);
    pgs[0].seg[3] = seg(5, 9, 0, 0, NULL, 0);
    pgs[0].seg[5].scl = 99; /* unreachable */
    pgs[1].pg = 9;
    pgs[1].seg[0] = seg(7, 7, 0, 0, NULL, 0);
    pgs[1].seg[1] = seg(3, 3, 0, 0, NULL, 0);
    pgs[1].seg[2] = seg(7, 11, 0, 0, NULL, 0);
    pgs[1].seg[4] = seg(2, 2, 0, 0, NULL, 0);
    uint64_t base = 0;
    assert_int_equal(hx_recovery_base(pgs, 2, &base, NULL), HX_OK);
    assert_int_equal(base, 7);
    pgs[1].seg[4].scl = 30;
    assert_int_equal(hx_recovery_base(pgs, 2, &base, NULL), HX_OK);
    assert_int_equal(base, 10);
}

/* DESIGN.md "Recovery" (read quorum of every PG): a PG with fewer than 3
 * reachable segments stops recovery with HX_ERR_NO_QUORUM, naming it. */
static void test_recovery_no_quorum(void **state)
{
    (void)state;
    hx_pg_report pgs[2];
    memset(pgs, 0, sizeof(pgs));
    pgs[0].pg = 3;
    for (int s = 0; s < 3; s++)
        pgs[0].seg[s] = seg(5, 5, 5, 5, NULL, 0);
    pgs[1].pg = 5;
    pgs[1].seg[0] = seg(5, 5, 5, 5, NULL, 0);
    pgs[1].seg[4] = seg(5, 5, 5, 5, NULL, 0);
    uint64_t base = 0, tails[2];
    uint32_t bad = 0;
    hx_recovery_result r;
    assert_int_equal(hx_recovery_base(pgs, 2, &base, &bad), HX_ERR_NO_QUORUM);
    assert_int_equal(bad, 5);
    bad = 0;
    assert_int_equal(hx_recovery_plan(pgs, 2, 5, 100, &r, tails, &bad),
                     HX_ERR_NO_QUORUM);
    assert_int_equal(bad, 5);
    pgs[1].seg[2] = seg(1, 1, 1, 0, NULL, 0); /* a third one answers */
    assert_int_equal(hx_recovery_base(pgs, 2, &base, &bad), HX_OK);
    assert_int_equal(base, 5);
}

/* recovery.h (n == 0, a new volume gives 0) and a volume whose PGs hold
 * nothing: VCL = VDL = 0, and new LSNs start above the old limit. */
static void test_recovery_empty_volume(void **state)
{
    (void)state;
    hx_recovery_result r;
    recover(NULL, 0, 0, 1000, &r, NULL);
    assert_int_equal(r.vcl, 0);
    assert_int_equal(r.vdl, 0);
    assert_int_equal(r.next_lsn, 1001);
    assert_int_equal(r.trunc_from, 1);
    assert_int_equal(r.trunc_to, 1000);

    hx_pg_report pg;
    memset(&pg, 0, sizeof(pg));
    for (int s = 0; s < HX_PG_MEMBERS; s++)
        pg.seg[s] = seg(0, 0, 0, 0, NULL, 0);
    uint64_t tail = 99;
    recover(&pg, 1, 0, 1000, &r, &tail);
    assert_int_equal(r.vcl, 0);
    assert_int_equal(r.vdl, 0);
    assert_int_equal(r.next_lsn, 1001);
    assert_int_equal(tail, 0);
}

/* recovery.h (VCL: every LSN in (base, L] held by a reachable segment):
 * segments at different SCLs, and a hole in one PG (LSN 6, held by no
 * reachable segment) caps VCL even though later LSNs are held. */
static void test_recovery_hole_caps_vcl(void **state)
{
    (void)state;
    /* PG 0: 1, 3, 5c, 7c.  PG 1: 2, 4c, 6, 8c. */
    static const hx_rec_meta a_tail[] = { { 7, CPL } };
    static const hx_rec_meta b_tail[] = { { 5, CPL } };
    static const hx_rec_meta d_tail[] = { { 8, CPL }, { 4, CPL } };
    hx_pg_report pgs[2];
    memset(pgs, 0, sizeof(pgs));
    pgs[0].pg = 0;
    pgs[0].seg[0] = seg(3, 7, 3, 0, a_tail, 1); /* missing 5 */
    pgs[0].seg[1] = seg(1, 5, 1, 0, b_tail, 1); /* missing 3 */
    pgs[0].seg[2] = seg(1, 1, 1, 0, NULL, 0);
    pgs[1].pg = 1;
    pgs[1].seg[3] = seg(4, 8, 2, 0, d_tail, 2); /* missing 6 */
    pgs[1].seg[4] = seg(2, 2, 2, 0, NULL, 0);
    pgs[1].seg[5] = seg(2, 2, 2, 0, NULL, 0);
    hx_recovery_result r;
    uint64_t tails[2];
    recover(pgs, 2, 3, 100, &r, tails);
    assert_int_equal(r.vcl, 5);
    assert_int_equal(r.vdl, 5);
    assert_int_equal(tails[0], 5);
    assert_int_equal(tails[1], 4);
    assert_int_equal(r.next_lsn, 106);
    assert_int_equal(r.trunc_from, 6);
    assert_int_equal(r.trunc_to, 105);

    /* VDL only at a CPL: without the CPL flag on 5, VDL falls to 4. */
    static const hx_rec_meta b_tail2[] = { { 5, 0 } };
    pgs[0].seg[1].tail = b_tail2;
    recover(pgs, 2, 3, 100, &r, tails);
    assert_int_equal(r.vcl, 5);
    assert_int_equal(r.vdl, 4);
    assert_int_equal(tails[0], 3);
    assert_int_equal(r.next_lsn, 105);
}

/* recovery.h ("VCL must pass p's C_p"): PG p is idle at 5 while PG q's
 * records 6..20 are durable; base is 5 but VCL and VDL reach 20. */
static void test_recovery_idle_pg_does_not_cap_vcl(void **state)
{
    (void)state;
    hx_rec_meta q_full[15], q_part[7];
    for (int i = 0; i < 15; i++)
        q_full[i] = (hx_rec_meta){ (uint64_t)(20 - i),
                                   (20 - i) % 10 == 0 ? CPL : 0 };
    for (int i = 0; i < 7; i++)
        q_part[i] = (hx_rec_meta){ (uint64_t)(6 + i),
                                   6 + i == 10 ? CPL : 0 };
    hx_pg_report pgs[2];
    memset(pgs, 0, sizeof(pgs));
    pgs[0].pg = 1; /* p: 1..5, CPL at 5 */
    for (int s = 0; s < 3; s++)
        pgs[0].seg[s] = seg(5, 5, 5, 5, NULL, 0);
    pgs[1].pg = 2; /* q: 6..20 */
    pgs[1].seg[0] = seg(20, 20, 0, 0, q_full, 15);
    pgs[1].seg[2] = seg(20, 20, 0, 0, q_full, 15);
    pgs[1].seg[5] = seg(12, 12, 0, 0, q_part, 7);
    hx_recovery_result r;
    uint64_t tails[2];
    recover(pgs, 2, 5, 50, &r, tails);
    assert_int_equal(r.vcl, 20);
    assert_int_equal(r.vdl, 20);
    assert_int_equal(tails[0], 5);
    assert_int_equal(tails[1], 20);
    assert_int_equal(r.next_lsn, 71);

    /* Only the lagging q segment reachable with two others that hold
     * nothing above 5: VCL stops at 12, VDL at the CPL 10. */
    pgs[1].seg[0] = seg(0, 0, 0, 0, NULL, 0);
    pgs[1].seg[2] = seg(0, 0, 0, 0, NULL, 0);
    recover(pgs, 2, 5, 50, &r, tails);
    assert_int_equal(r.vcl, 12);
    assert_int_equal(r.vdl, 10);
    assert_int_equal(tails[1], 10);
}

/* DESIGN.md "Recovery" (truncation recorded with the epoch) and recovery.h:
 * an earlier truncation range counts as settled and is skipped; a
 * leftover of the cut-off writer inside it (on a segment that missed the
 * truncation) is neither a CPL nor a PG tail. */
static void test_recovery_skips_earlier_truncation(void **state)
{
    (void)state;
    /* Epoch 1: PG 0 odd 1..9, PG 1 even 2..10, CPL at 10; its recovery
     * truncated [11, 30]. Epoch 2 wrote 31, 32 (PG 0, no CPL yet). */
    static const hx_lsn_range trunc[] = { { 11, 30, 2 } };
    static const hx_rec_meta new_recs[] = { { 32, 0 }, { 31, 0 } };
    static const hx_rec_meta stale[] = { { 14, CPL } }; /* epoch 1 leftover */
    hx_pg_report pgs[2];
    memset(pgs, 0, sizeof(pgs));
    pgs[0].pg = 0;
    pgs[0].seg[0] = seg(32, 32, 9, 0, new_recs, 2);
    pgs[0].seg[1] = seg(32, 32, 9, 0, new_recs, 2);
    pgs[0].seg[2] = seg(9, 9, 9, 0, NULL, 0);
    for (int s = 0; s < 3; s++) {
        pgs[0].seg[s].truncations = trunc;
        pgs[0].seg[s].n_truncations = 1;
    }
    pgs[1].pg = 1;
    pgs[1].seg[0] = seg(10, 10, 10, 10, NULL, 0);
    pgs[1].seg[0].truncations = trunc;
    pgs[1].seg[0].n_truncations = 1;
    pgs[1].seg[1] = seg(10, 10, 10, 10, NULL, 0);
    /* Missed the truncation: holds epoch-1 records 12 (on its chain) and
     * 14 (pending); reports no truncation. */
    pgs[1].seg[2] = seg(12, 14, 12, 12, stale, 1);
    hx_recovery_result r;
    uint64_t tails[2];
    recover(pgs, 2, 12, 20, &r, tails);
    assert_int_equal(r.vcl, 32);
    assert_int_equal(r.vdl, 10);
    assert_int_equal(tails[0], 9);
    assert_int_equal(tails[1], 10);
    /* max(10 + 20, 32, 30 + 20, 14) + 1: the epoch-2 writer may have
     * records up to 30 + lal that no reachable segment holds. */
    assert_int_equal(r.next_lsn, 51);
    assert_int_equal(r.trunc_from, 11);
    assert_int_equal(r.trunc_to, 50);

    /* Once epoch 2 has a CPL above the range, VDL reaches it. */
    static const hx_rec_meta new_cpl[] = { { 31, 0 }, { 32, CPL } };
    pgs[0].seg[1].tail = new_cpl;
    recover(pgs, 2, 12, 20, &r, tails);
    assert_int_equal(r.vdl, 32);
    assert_int_equal(tails[0], 32);
    assert_int_equal(tails[1], 10);
    assert_int_equal(r.next_lsn, 53);
}

/* recovery.h (VDL also from cpl_le_limit; round 2 again on
 * HX_ERR_NOT_COMPLETE): one PG holds 1..12 and 500, CPLs at 8 and 500; no
 * reachable copy holds 11. Base is 10 (an SCL, not a CPL): VDL falls back
 * to the CPL 8 below base, and the PG's tail at or below 8 is not in the
 * first reports, so recovery asks again at limit = tail_from = 8. The next
 * LSN clears every LSN any segment reported, even beyond vdl + lal. */
static void test_recovery_vdl_below_base_reasks(void **state)
{
    (void)state;
    /* Round 2 at limit 10. */
    static const hx_rec_meta s1[] = { { 12, 0 } };
    static const hx_rec_meta s4[] = { { 500, CPL } };
    hx_pg_report pg;
    memset(&pg, 0, sizeof(pg));
    pg.pg = 0;
    pg.seg[1] = seg(10, 12, 10, 8, s1, 1);   /* 1..10, 12 */
    pg.seg[3] = seg(9, 9, 9, 8, NULL, 0);    /* 1..9 */
    pg.seg[4] = seg(10, 500, 10, 8, s4, 1);  /* 1..10, 500 */
    uint64_t base = 0, tail = 0;
    assert_int_equal(hx_recovery_base(&pg, 1, &base, NULL), HX_OK);
    assert_int_equal(base, 10);
    hx_recovery_result r;
    assert_int_equal(hx_recovery_plan(&pg, 1, base, 100, &r, &tail, NULL),
                     HX_ERR_NOT_COMPLETE);
    assert_int_equal(r.vcl, 10);
    assert_int_equal(r.vdl, 8);

    /* Round 2 again at limit = tail_from = 8. */
    static const hx_rec_meta s1b[] = { { 9, 0 }, { 10, 0 }, { 12, 0 } };
    static const hx_rec_meta s3b[] = { { 9, 0 } };
    static const hx_rec_meta s4b[] = { { 500, CPL }, { 10, 0 }, { 9, 0 } };
    pg.seg[1] = seg(10, 12, 8, 8, s1b, 3);
    pg.seg[3] = seg(9, 9, 8, 8, s3b, 1);
    pg.seg[4] = seg(10, 500, 8, 8, s4b, 3);
    assert_int_equal(hx_recovery_plan(&pg, 1, r.vdl, 100, &r, &tail, NULL),
                     HX_OK);
    assert_int_equal(r.base, 8);
    assert_int_equal(r.vcl, 10);
    assert_int_equal(r.vdl, 8);
    assert_int_equal(tail, 8);
    assert_int_equal(r.next_lsn, 501);
    assert_int_equal(r.trunc_from, 9);
    assert_int_equal(r.trunc_to, 500);
}

/* DESIGN.md "Recovery" (allocate new LSNs above the truncated range):
 * the plan feeds the writer's tracker, which allocates next_lsn at once
 * (quorum.h invariant 4) with the recovered tails as backlinks. */
static void test_recovery_feeds_tracker(void **state)
{
    (void)state;
    static const hx_rec_meta a_tail[] = { { 7, CPL } };
    static const hx_rec_meta b_tail[] = { { 5, CPL } };
    static const hx_rec_meta d_tail[] = { { 8, CPL }, { 4, CPL } };
    hx_pg_report pgs[2];
    memset(pgs, 0, sizeof(pgs));
    pgs[0].pg = 10;
    pgs[0].seg[0] = seg(3, 7, 3, 0, a_tail, 1);
    pgs[0].seg[1] = seg(1, 5, 1, 0, b_tail, 1);
    pgs[0].seg[2] = seg(1, 1, 1, 0, NULL, 0);
    pgs[1].pg = 11;
    pgs[1].seg[3] = seg(4, 8, 2, 0, d_tail, 2);
    pgs[1].seg[4] = seg(2, 2, 2, 0, NULL, 0);
    pgs[1].seg[5] = seg(2, 2, 2, 0, NULL, 0);
    hx_recovery_result r;
    uint64_t tails[2];
    recover(pgs, 2, 3, 100, &r, tails);
    hx_lsn_tracker *t = hx_lsn_tracker_create(r.next_lsn, r.vdl, 100);
    assert_non_null(t);
    for (int i = 0; i < 2; i++)
        assert_int_equal(hx_lsn_set_pg_tail(t, pgs[i].pg, tails[i]), HX_OK);
    uint64_t lsn, prev;
    assert_int_equal(hx_lsn_alloc(t, 11, true, &lsn, &prev), HX_OK);
    assert_int_equal(lsn, r.next_lsn);
    assert_int_equal(prev, 4);
    assert_int_equal(hx_lsn_alloc(t, 10, true, &lsn, &prev), HX_OK);
    assert_int_equal(prev, 5);
    hx_lsn_check_invariants(t);
    hx_lsn_tracker_destroy(t);
}

/* ------------------------------------------------------------------------
 * recovery.h ("Why it is exact"): any read quorum of every PG recovers a
 * VDL at least the old writer's acknowledged VDL, and exactly the point
 * the reachable segments can rebuild. Exhaustive over all 3-of-6 choices
 * for two PGs, on random holdings generated from a fixed seed.
 * ---------------------------------------------------------------------- */

enum { SC_PGS = 2, SC_LSNS = 18, SC_LAL = 10 };

typedef struct {
    uint32_t pg_of[SC_LSNS + 1];
    bool cpl[SC_LSNS + 1];
    bool held[SC_PGS][HX_PG_MEMBERS][SC_LSNS + 1];
    hx_rec_meta tail[SC_PGS][HX_PG_MEMBERS][SC_LSNS];
    hx_pg_report rep[SC_PGS];
} sc_world;

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The segment's SCL: its PG's records, in order, while held. */
static uint64_t sc_scl(const sc_world *w, uint32_t pg, int s)
{
    uint64_t scl = 0;
    for (uint64_t l = 1; l <= SC_LSNS; l++) {
        if (w->pg_of[l] != pg)
            continue;
        if (!w->held[pg][s][l])
            break;
        scl = l;
    }
    return scl;
}

/* What a storage node answers: round 1, or round 2 when base is given. */
static void sc_report(sc_world *w, const unsigned mask[SC_PGS], bool round2,
                      uint64_t base)
{
    for (uint32_t p = 0; p < SC_PGS; p++) {
        w->rep[p].pg = p;
        for (int s = 0; s < HX_PG_MEMBERS; s++) {
            hx_seg_report *r = &w->rep[p].seg[s];
            memset(r, 0, sizeof(*r));
            r->reachable = (mask[p] >> s) & 1u;
            r->scl = sc_scl(w, p, s);
            for (uint64_t l = 1; l <= SC_LSNS; l++)
                if (w->held[p][s][l])
                    r->max_lsn = l;
            if (!round2)
                continue;
            uint64_t lim = base < r->scl ? base : r->scl;
            for (uint64_t l = 1; l <= lim; l++) {
                if (w->pg_of[l] != p)
                    continue;
                r->last_lsn_le_limit = l;
                if (w->cpl[l])
                    r->cpl_le_limit = l;
            }
            /* Descending, to exercise the merge. */
            for (uint64_t l = SC_LSNS; l > base; l--)
                if (w->held[p][s][l])
                    w->tail[p][s][r->n_tail++] =
                        (hx_rec_meta){ l, w->cpl[l] ? CPL : 0 };
            r->tail = w->tail[p][s];
        }
    }
}

static void test_recovery_any_read_quorum_exhaustive(void **state)
{
    (void)state;
    const uint64_t seed = 0x853c49e6748fea9bULL;
    print_message("test_recovery_any_read_quorum_exhaustive seed=0x%016llx\n",
                  (unsigned long long)seed);
    uint64_t rng = seed;
    unsigned masks[20], nm = 0;
    for (unsigned m = 0; m < 64; m++)
        if (__builtin_popcount(m) == HX_READ_QUORUM)
            masks[nm++] = m;
    assert_int_equal(nm, 20);

    sc_world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    unsigned reasks = 0;
    for (int round = 0; round < 25; round++) {
        memset(w, 0, sizeof(*w));
        for (uint64_t l = 1; l <= SC_LSNS; l++) {
            w->pg_of[l] = (uint32_t)(xorshift64(&rng) % SC_PGS);
            w->cpl[l] = xorshift64(&rng) % 3 == 0;
            /* Early records were written to a quorum; later ones are
             * in flight on any number of copies. */
            unsigned copies = l <= 8 ? 4 + (unsigned)(xorshift64(&rng) % 3)
                                     : (unsigned)(xorshift64(&rng) % 7);
            for (unsigned c = 0; c < copies;) {
                int s = (int)(xorshift64(&rng) % HX_PG_MEMBERS);
                if (!w->held[w->pg_of[l]][s][l]) {
                    w->held[w->pg_of[l]][s][l] = true;
                    c++;
                }
            }
        }
        /* The old writer's VDL: the highest CPL with all below on >= 4. */
        uint64_t acked = 0;
        for (uint64_t l = 1; l <= SC_LSNS; l++) {
            int copies = 0;
            for (int s = 0; s < HX_PG_MEMBERS; s++)
                copies += w->held[w->pg_of[l]][s][l];
            if (copies < HX_WRITE_QUORUM)
                break;
            if (w->cpl[l])
                acked = l;
        }
        for (unsigned a = 0; a < nm; a++) {
            for (unsigned b = 0; b < nm; b++) {
                const unsigned mask[SC_PGS] = { masks[a], masks[b] };
                uint64_t base;
                sc_report(w, mask, false, 0);
                assert_int_equal(hx_recovery_base(w->rep, SC_PGS, &base,
                                                  NULL), HX_OK);
                sc_report(w, mask, true, base);
                hx_recovery_result r;
                uint64_t tails[SC_PGS];
                int rc = hx_recovery_plan(w->rep, SC_PGS, base, SC_LAL, &r,
                                          tails, NULL);
                if (rc == HX_ERR_NOT_COMPLETE) {
                    /* Round 2 again at the VDL: same VCL and VDL. */
                    assert_true(r.vdl < base);
                    uint64_t vcl1 = r.vcl, vdl1 = r.vdl;
                    sc_report(w, mask, true, r.vdl);
                    rc = hx_recovery_plan(w->rep, SC_PGS, vdl1, SC_LAL, &r,
                                          tails, NULL);
                    assert_int_equal(r.vcl, vcl1);
                    assert_int_equal(r.vdl, vdl1);
                    reasks++;
                }
                assert_int_equal(rc, HX_OK);
                /* Nothing acknowledged is lost. */
                assert_true(r.vdl >= acked);
                /* VCL is exactly the first LSN no reachable copy holds,
                 * minus one; VDL the highest CPL at or below it. */
                uint64_t vcl = 0, vdl = 0;
                for (uint64_t l = 1; l <= SC_LSNS; l++) {
                    uint32_t p = w->pg_of[l];
                    bool any = false;
                    for (int s = 0; s < HX_PG_MEMBERS; s++)
                        any |= ((mask[p] >> s) & 1u) && w->held[p][s][l];
                    if (!any)
                        break;
                    vcl = l;
                    if (w->cpl[l])
                        vdl = l;
                }
                assert_int_equal(r.vcl, vcl);
                assert_int_equal(r.vdl, vdl);
                for (uint32_t p = 0; p < SC_PGS; p++) {
                    uint64_t want = 0;
                    for (uint64_t l = 1; l <= vdl; l++)
                        if (w->pg_of[l] == p)
                            want = l;
                    assert_int_equal(tails[p], want);
                }
                /* New LSNs clear everything any copy holds. */
                for (uint32_t p = 0; p < SC_PGS; p++)
                    for (int s = 0; s < HX_PG_MEMBERS; s++)
                        if ((mask[p] >> s) & 1u)
                            assert_true(r.next_lsn >
                                        w->rep[p].seg[s].max_lsn);
                assert_int_equal(r.trunc_from, vdl + 1);
            }
        }
    }
    print_message("  re-asked round 2 in %u of %u cases\n", reasks,
                  25 * nm * nm);
    assert_true(reasks > 0);
    free(w);
}

/* recovery.h (round 2 is O(n log n)): about a million tail entries (3 PGs,
 * 3 reachable copies each) recover in one sort; a single missing LSN near
 * the end caps VCL. */
static void test_recovery_large(void **state)
{
    (void)state;
    enum { N = 330000, HOLE = N - 5 };
    hx_rec_meta *tail[3];
    size_t nt[3] = { 0, 0, 0 };
    for (int p = 0; p < 3; p++) {
        tail[p] = malloc(sizeof(hx_rec_meta) * (N / 3 + 1));
        assert_non_null(tail[p]);
    }
    for (uint64_t l = N; l >= 1; l--) /* descending: sort does the work */
        if (l != HOLE)
            tail[l % 3][nt[l % 3]++] =
                (hx_rec_meta){ l, l % 10 == 0 ? CPL : 0 };
    hx_pg_report pgs[3];
    memset(pgs, 0, sizeof(pgs));
    for (int p = 0; p < 3; p++) {
        pgs[p].pg = (uint32_t)p;
        for (int s = 0; s < 3; s++)
            pgs[p].seg[s * 2] = seg(0, N, 0, 0, tail[p], nt[p]);
    }
    hx_recovery_result r;
    uint64_t tails[3];
    recover(pgs, 3, 0, 1000, &r, tails);
    assert_int_equal(r.vcl, HOLE - 1);
    assert_int_equal(r.vdl, (HOLE - 1) / 10 * 10);
    assert_int_equal(r.next_lsn, r.vdl + 1000 + 1); /* vdl + lal > N */
    for (int p = 0; p < 3; p++) {
        uint64_t want = r.vdl;
        while (want % 3 != (uint64_t)p)
            want--;
        assert_int_equal(tails[p], want);
        free(tail[p]);
    }
}

/* DESIGN.md "Recovery" (a late record of the dead writer is refused): the
 * second recovery after a writer whose records were cut off. Segment X was
 * down during the first recovery (range [11, 30] at epoch 2): it still
 * holds the epoch-1 records 11..14 (14 a CPL) and a late 29, and reports
 * no range. The epoch-2 writer wrote 31..40 (CPL 40) on the others, and one
 * late epoch-2 record 45 (no CPL, a hole at 41..44) reached one segment
 * before it died. Recovery: VDL 40; X's leftovers count for nothing (not
 * for VCL, not as a CPL, not as the PG tail), even when X answers with
 * two peers that hold nothing above 10; the late 45 is cut. */
static void test_recovery_late_records_of_old_epochs(void **state)
{
    (void)state;
    static const hx_lsn_range r1[] = { { 11, 30, 2 } };
    hx_rec_meta full[10], late[11];
    for (int i = 0; i < 10; i++)
        full[i] = late[i] = (hx_rec_meta){ (uint64_t)(31 + i),
                                           31 + i == 40 ? CPL : 0 };
    late[10] = (hx_rec_meta){ 45, 0 };
    static const hx_rec_meta x_tail[] = { { 14, CPL }, { 12, 0 }, { 13, 0 },
                                          { 29, CPL }, { 11, 0 } };
    hx_pg_report pg;
    memset(&pg, 0, sizeof(pg));
    pg.seg[0] = seg(40, 40, 10, 10, full, 10);
    pg.seg[1] = seg(40, 45, 10, 10, late, 11);
    pg.seg[2] = seg(14, 29, 10, 10, x_tail, 5); /* X */
    pg.seg[0].truncations = pg.seg[1].truncations = r1;
    pg.seg[0].n_truncations = pg.seg[1].n_truncations = 1;
    hx_recovery_result res;
    uint64_t tail = 0;
    /* base = 40; ask the tails from below to see X's leftovers. */
    assert_int_equal(hx_recovery_plan(&pg, 1, 10, 100, &res, &tail, NULL),
                     HX_OK);
    assert_int_equal(res.vcl, 40);
    assert_int_equal(res.vdl, 40);
    assert_int_equal(tail, 40);
    assert_int_equal(res.trunc_from, 41);
    assert_int_equal(res.next_lsn, 141); /* vdl + lal + 1 > 45, 30 + lal */

    /* X with two segments that hold nothing above 10 (a read quorum that
     * does not see epoch 2's records): the leftovers still count for
     * nothing, since a peer reports the range [11, 30]. */
    hx_pg_report q;
    memset(&q, 0, sizeof(q));
    q.seg[0] = seg(10, 10, 10, 10, NULL, 0);
    q.seg[0].truncations = r1;
    q.seg[0].n_truncations = 1;
    q.seg[1] = seg(10, 10, 10, 10, NULL, 0);
    q.seg[2] = pg.seg[2];
    assert_int_equal(hx_recovery_plan(&q, 1, 10, 100, &res, &tail, NULL),
                     HX_OK);
    assert_int_equal(res.vdl, 10);
    assert_int_equal(tail, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovery_base_different_scls),
        cmocka_unit_test(test_recovery_no_quorum),
        cmocka_unit_test(test_recovery_empty_volume),
        cmocka_unit_test(test_recovery_hole_caps_vcl),
        cmocka_unit_test(test_recovery_idle_pg_does_not_cap_vcl),
        cmocka_unit_test(test_recovery_skips_earlier_truncation),
        cmocka_unit_test(test_recovery_vdl_below_base_reasks),
        cmocka_unit_test(test_recovery_feeds_tracker),
        cmocka_unit_test(test_recovery_any_read_quorum_exhaustive),
        cmocka_unit_test(test_recovery_large),
        cmocka_unit_test(test_recovery_late_records_of_old_epochs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
