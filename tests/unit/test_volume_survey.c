/* The writer's recovery survey (compute-node/volume_open.c): what the
 * storage nodes' SegmentInfo answers become in the reports that
 * common/recovery.c computes from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hx_err.h"
#include "volume_internal.h"

typedef struct {
    Hexad__Envelope env[HX_PG_MEMBERS];
    Hexad__SegmentInfoResponse resp[HX_PG_MEMBERS];
    Hexad__SegmentInfo seg[HX_PG_MEMBERS];
    Hexad__SegmentInfo *seg_ptr[HX_PG_MEMBERS];
    node_answer ans[HX_PG_MEMBERS];
    pg_view pg;
} survey;

/* PG 0 on six nodes, each answering with SCL scl[i]; unverified[i]: its
 * chain is not checked yet after an unclean stop. */
static void survey_init(survey *sv, const uint64_t *scl,
                        const bool *unverified)
{
    sv->pg = (pg_view){.pg = 0, .membership_epoch = 1};
    for (int i = 0; i < HX_PG_MEMBERS; i++) {
        hexad__segment_info__init(&sv->seg[i]);
        sv->seg[i].pg = 0;
        sv->seg[i].scl = scl[i];
        sv->seg[i].max_lsn = scl[i];
        sv->seg[i].chain_unverified = unverified[i];
        sv->seg_ptr[i] = &sv->seg[i];
        hexad__segment_info_response__init(&sv->resp[i]);
        sv->resp[i].volume = 1;
        sv->resp[i].volume_epoch = 1;
        sv->resp[i].n_segments = 1;
        sv->resp[i].segments = &sv->seg_ptr[i];
        hexad__envelope__init(&sv->env[i]);
        sv->env[i].body_case = HEXAD__ENVELOPE__BODY_SEGMENT_INFO;
        sv->env[i].segment_info = &sv->resp[i];
        sv->ans[i] = (node_answer){.answered = true, .reply = &sv->env[i]};
        sv->pg.node[i] = i;
    }
}

static int base_of(survey *sv, uint64_t *base, hx_pg_report *rep)
{
    hx_rec_meta *owned = NULL;
    assert_int_equal(vc_build_reports(sv->ans, &sv->pg, 1, rep, &owned),
                     HX_OK);
    free(owned);
    uint32_t bad_pg = 99;
    return hx_recovery_base(rep, 1, base, &bad_pg);
}

/* A member whose chain is unchecked after a crash may claim (SCL) records
 * the crash lost: recovery must not count it, so the base comes from the
 * checked members, and with fewer than three of those it waits. */
static void test_unverified_member_counts_as_unreachable(void **state)
{
    (void)state;
    survey sv;
    hx_pg_report rep;
    uint64_t base = 0;
    const uint64_t scl[HX_PG_MEMBERS] = {100, 100, 100, 300, 90, 90};
    const bool three_checked[HX_PG_MEMBERS] = {false, false, false, true,
                                                true, true};
    survey_init(&sv, scl, three_checked);
    assert_int_equal(base_of(&sv, &base, &rep), HX_OK);
    assert_int_equal(base, 100);
    assert_false(rep.seg[3].reachable);
    assert_true(rep.seg[0].reachable);

    const bool none[HX_PG_MEMBERS] = {false};
    survey_init(&sv, scl, none);
    assert_int_equal(base_of(&sv, &base, &rep), HX_OK);
    assert_int_equal(base, 300);

    const bool two_checked[HX_PG_MEMBERS] = {false, false, true, true,
                                              true, true};
    survey_init(&sv, scl, two_checked);
    assert_int_equal(base_of(&sv, &base, &rep), HX_ERR_NO_QUORUM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unverified_member_counts_as_unreachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
