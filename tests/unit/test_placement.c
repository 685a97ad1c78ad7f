/* Unit tests for common/placement.c: six segments over three AZs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hx_err.h"
#include "placement.h"

/* DESIGN.md "Vocabulary" (segment): a PG's six segments are on six
 * distinct nodes, two in each of three AZs, AZs ordered by name. */
static void assert_well_placed(const hx_node_ref *nodes, const int idx[6],
                               const char *az[3])
{
    for (int i = 0; i < HX_PG_MEMBERS; i++) {
        assert_in_range(idx[i], 0, 255);
        assert_string_equal(nodes[idx[i]].az, az[i / 2]);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(idx[i], idx[j]);
    }
}

/* placement.h and DESIGN.md "User surface" (9 storage nodes, 3 per AZ):
 * successive PGs rotate through each AZ's nodes, so each node holds
 * segments of 2/3 of the PGs. */
static void test_placement_nine_nodes_even(void **state)
{
    (void)state;
    /* Interleaved list order: AZ order comes from names, not the list. */
    const hx_node_ref nodes[9] = {
        { "s1", "az-a" }, { "s4", "az-b" }, { "s7", "az-c" },
        { "s2", "az-a" }, { "s5", "az-b" }, { "s8", "az-c" },
        { "s3", "az-a" }, { "s6", "az-b" }, { "s9", "az-c" },
    };
    const char *az[3] = { "az-a", "az-b", "az-c" };
    enum { NPG = 3000 };
    int used[9] = { 0 };
    for (uint32_t pg = 0; pg < NPG; pg++) {
        int idx[6];
        assert_int_equal(hx_placement_choose(nodes, 9, pg, idx), HX_OK);
        assert_well_placed(nodes, idx, az);
        for (int i = 0; i < 6; i++)
            used[idx[i]]++;
    }
    for (int i = 0; i < 9; i++)
        assert_int_equal(used[i], NPG * 2 / 3);

    /* The rotation itself: PG p uses the AZ's nodes p mod 3, p+1 mod 3. */
    int idx[6];
    assert_int_equal(hx_placement_choose(nodes, 9, 2, idx), HX_OK);
    assert_string_equal(nodes[idx[0]].id, "s3");
    assert_string_equal(nodes[idx[1]].id, "s1");
    assert_string_equal(nodes[idx[2]].id, "s6");
    assert_string_equal(nodes[idx[3]].id, "s4");
    assert_string_equal(nodes[idx[4]].id, "s9");
    assert_string_equal(nodes[idx[5]].id, "s7");
}

/* placement.h: with exactly two nodes per AZ every PG uses all six; the
 * two members in an AZ swap order from one PG to the next. */
static void test_placement_six_nodes_three_azs(void **state)
{
    (void)state;
    const hx_node_ref nodes[6] = {
        { "n0", "zeta" }, { "n1", "alpha" }, { "n2", "mid" },
        { "n3", "zeta" }, { "n4", "alpha" }, { "n5", "mid" },
    };
    const char *az[3] = { "alpha", "mid", "zeta" };
    for (uint32_t pg = 0; pg < 10; pg++) {
        int idx[6];
        assert_int_equal(hx_placement_choose(nodes, 6, pg, idx), HX_OK);
        assert_well_placed(nodes, idx, az);
        assert_int_equal(idx[0], pg % 2 ? 4 : 1);
        assert_int_equal(idx[1], pg % 2 ? 1 : 4);
    }
}

/* placement.h (HX_ERR_CONFIG when fewer than three AZs have two nodes):
 * 6 nodes in 2 AZs, 3 AZs with one short, no nodes, a node without AZ. */
static void test_placement_config_errors(void **state)
{
    (void)state;
    int idx[6] = { -7, -7, -7, -7, -7, -7 };
    const hx_node_ref two_azs[6] = {
        { "a1", "a" }, { "a2", "a" }, { "a3", "a" },
        { "b1", "b" }, { "b2", "b" }, { "b3", "b" },
    };
    assert_int_equal(hx_placement_choose(two_azs, 6, 0, idx), HX_ERR_CONFIG);
    const hx_node_ref short_az[7] = {
        { "a1", "a" }, { "a2", "a" }, { "a3", "a" }, { "b1", "b" },
        { "b2", "b" }, { "c1", "c" }, { "d1", "d" },
    };
    assert_int_equal(hx_placement_choose(short_az, 7, 0, idx),
                     HX_ERR_CONFIG);
    assert_int_equal(hx_placement_choose(NULL, 0, 0, idx), HX_ERR_CONFIG);
    const hx_node_ref no_az[6] = {
        { "a1", "a" }, { "a2", "a" }, { "b1", "b" },
        { "b2", "b" }, { "c1", "c" }, { "c2", NULL },
    };
    assert_int_equal(hx_placement_choose(no_az, 6, 0, idx), HX_ERR_CONFIG);
    for (int i = 0; i < 6; i++)
        assert_int_equal(idx[i], -7); /* untouched on error */
}

/* placement.h (first three AZs by name with at least two nodes): an AZ
 * with one node is skipped, and a fourth full AZ is not used. */
static void test_placement_skips_small_azs(void **state)
{
    (void)state;
    const hx_node_ref nodes[9] = {
        { "d1", "d" }, { "a1", "a" }, { "b1", "b" }, { "c1", "c" },
        { "d2", "d" }, { "e1", "e" }, { "b2", "b" }, { "c2", "c" },
        { "e2", "e" },
    };
    const char *az[3] = { "b", "c", "d" };
    for (uint32_t pg = 0; pg < 8; pg++) {
        int idx[6];
        assert_int_equal(hx_placement_choose(nodes, 9, pg, idx), HX_OK);
        assert_well_placed(nodes, idx, az);
    }
}

/* placement.h (pure and deterministic: a restarted writer places a PG as
 * its predecessor did): the same list gives the same members; so does a
 * list reordered across AZs with each AZ's own order kept; PG numbers up
 * to UINT32_MAX stay distinct. */
static void test_placement_deterministic(void **state)
{
    (void)state;
    const hx_node_ref a[9] = {
        { "s1", "az1" }, { "s2", "az1" }, { "s3", "az1" },
        { "s4", "az2" }, { "s5", "az2" }, { "s6", "az2" },
        { "s7", "az3" }, { "s8", "az3" }, { "s9", "az3" },
    };
    const hx_node_ref b[9] = {
        { "s7", "az3" }, { "s4", "az2" }, { "s1", "az1" },
        { "s8", "az3" }, { "s2", "az1" }, { "s5", "az2" },
        { "s3", "az1" }, { "s9", "az3" }, { "s6", "az2" },
    };
    const char *az[3] = { "az1", "az2", "az3" };
    const uint32_t pgs[] = { 0, 1, 2, 3, 17, 1000001, UINT32_MAX - 1,
                             UINT32_MAX };
    for (size_t k = 0; k < sizeof(pgs) / sizeof(pgs[0]); k++) {
        int x[6], y[6], z[6];
        assert_int_equal(hx_placement_choose(a, 9, pgs[k], x), HX_OK);
        assert_int_equal(hx_placement_choose(a, 9, pgs[k], y), HX_OK);
        assert_int_equal(hx_placement_choose(b, 9, pgs[k], z), HX_OK);
        assert_memory_equal(x, y, sizeof(x));
        assert_well_placed(a, x, az);
        assert_well_placed(b, z, az);
        for (int i = 0; i < 6; i++)
            assert_string_equal(a[x[i]].id, b[z[i]].id);
    }
}

/* placement.h: a large cluster file (256 nodes over 5 AZs of uneven size)
 * still gives six distinct nodes in the first three AZs by name. */
static void test_placement_many_nodes(void **state)
{
    (void)state;
    enum { N = 256 };
    static char ids[N][8];
    static const char *zones[5] = { "us-e1", "us-e2", "us-e3", "eu-w1",
                                    "ap-s1" };
    hx_node_ref nodes[N];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "n%d", i);
        nodes[i] = (hx_node_ref){ ids[i], zones[(i % 7) % 5] };
    }
    const char *az[3] = { "ap-s1", "eu-w1", "us-e1" };
    for (uint32_t pg = 0; pg < 500; pg++) {
        int idx[6];
        assert_int_equal(hx_placement_choose(nodes, N, pg, idx), HX_OK);
        assert_well_placed(nodes, idx, az);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placement_nine_nodes_even),
        cmocka_unit_test(test_placement_six_nodes_three_azs),
        cmocka_unit_test(test_placement_config_errors),
        cmocka_unit_test(test_placement_skips_small_azs),
        cmocka_unit_test(test_placement_deterministic),
        cmocka_unit_test(test_placement_many_nodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
