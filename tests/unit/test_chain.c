/* Unit tests for common/chain.c: the segment SCL from prev_lsn backlinks. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "chain.h"
#include "hx_err.h"

/* DESIGN.md "Vocabulary" (SCL): records that arrive in order advance the
 * SCL one by one; scl_cpl follows the newest CPL. */
static void test_chain_in_order(void **state)
{
    (void)state;
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    assert_int_equal(hx_chain_add(c, 1, 0, false), 1);
    assert_int_equal(hx_chain_add(c, 2, 1, true), 1);
    assert_int_equal(hx_chain_add(c, 5, 2, false), 1); /* other PGs own 3,4 */
    assert_int_equal(hx_chain_scl(c), 5);
    assert_int_equal(hx_chain_scl_cpl(c), 2);
    assert_int_equal(hx_chain_max_lsn(c), 5);
    assert_int_equal(hx_chain_pending(c), 0);
    hx_chain_destroy(c);
}

/* DESIGN.md "Storage node" (sort and find gaps): a hole stops the SCL at
 * the last record before it; filling the hole advances through everything
 * pending (chain.h invariant 2). */
static void test_chain_hole(void **state)
{
    (void)state;
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    assert_int_equal(hx_chain_add(c, 1, 0, false), 1);
    assert_int_equal(hx_chain_add(c, 7, 4, true), 1); /* 4 is missing */
    assert_int_equal(hx_chain_add(c, 9, 7, false), 1);
    assert_int_equal(hx_chain_scl(c), 1);
    assert_int_equal(hx_chain_scl_cpl(c), 0);
    assert_int_equal(hx_chain_max_lsn(c), 9);
    assert_int_equal(hx_chain_pending(c), 2);
    assert_true(hx_chain_has(c, 1));
    assert_false(hx_chain_has(c, 4));
    assert_true(hx_chain_has(c, 7));
    assert_true(hx_chain_has(c, 9));
    assert_false(hx_chain_has(c, 10));

    assert_int_equal(hx_chain_add(c, 4, 1, false), 1); /* fill the hole */
    assert_int_equal(hx_chain_scl(c), 9);
    assert_int_equal(hx_chain_scl_cpl(c), 7);
    assert_int_equal(hx_chain_pending(c), 0);
    assert_int_equal(hx_chain_max_lsn(c), 9);
    hx_chain_destroy(c);
}

/* chain.h invariants 2-4: records arriving in reverse order stay pending
 * (the hash map grows well past its first size) until the first one
 * arrives; then the SCL jumps to the end, scl_cpl to the newest CPL. */
static void test_chain_out_of_order(void **state)
{
    (void)state;
    enum { N = 5000 };
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    for (uint64_t l = N; l >= 2; l--) {
        /* The PG owns every third LSN: 3, 6, 9, ... (backlink l-3). */
        assert_int_equal(hx_chain_add(c, 3 * l, 3 * (l - 1), l % 10 == 0),
                         1);
        assert_int_equal(hx_chain_scl(c), 0);
    }
    assert_int_equal(hx_chain_pending(c), N - 1);
    assert_int_equal(hx_chain_max_lsn(c), 3 * N);
    for (uint64_t l = 2; l <= N; l++)
        assert_true(hx_chain_has(c, 3 * l));
    assert_false(hx_chain_has(c, 3));
    assert_int_equal(hx_chain_add(c, 3, 0, false), 1);
    assert_int_equal(hx_chain_scl(c), 3 * N);
    assert_int_equal(hx_chain_scl_cpl(c), 3 * N); /* N % 10 == 0 */
    assert_int_equal(hx_chain_pending(c), 0);
    hx_chain_destroy(c);
}

/* chain.h hx_chain_add: a duplicate (at or below scl, or already pending)
 * returns 0 and changes nothing (gossip and retries deliver twice). */
static void test_chain_duplicates(void **state)
{
    (void)state;
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    assert_int_equal(hx_chain_add(c, 1, 0, false), 1);
    assert_int_equal(hx_chain_add(c, 1, 0, false), 0);
    assert_int_equal(hx_chain_add(c, 4, 2, true), 1);
    assert_int_equal(hx_chain_add(c, 4, 2, true), 0);
    assert_int_equal(hx_chain_pending(c), 1);
    assert_int_equal(hx_chain_add(c, 2, 1, false), 1);
    assert_int_equal(hx_chain_scl(c), 4);
    assert_int_equal(hx_chain_add(c, 2, 1, false), 0); /* below scl now */
    assert_int_equal(hx_chain_add(c, 4, 2, true), 0);
    assert_int_equal(hx_chain_scl(c), 4);
    assert_int_equal(hx_chain_scl_cpl(c), 4);
    assert_int_equal(hx_chain_pending(c), 0);
    hx_chain_destroy(c);
}

/* chain.h hx_chain_add and invariant 1 (one writer per PG): a backlink
 * that does not point back, or a record that would fork the chain, is
 * HX_ERR_INVALID and changes nothing. */
static void test_chain_invalid_and_forks(void **state)
{
    (void)state;
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    assert_int_equal(hx_chain_add(c, 5, 5, false), HX_ERR_INVALID);
    assert_int_equal(hx_chain_add(c, 5, 6, false), HX_ERR_INVALID);
    assert_int_equal(hx_chain_add(c, 1, 0, false), 1);
    assert_int_equal(hx_chain_add(c, 3, 1, false), 1);
    assert_int_equal(hx_chain_add(c, 8, 6, false), 1); /* pending */
    /* Same lsn, other backlink. */
    assert_int_equal(hx_chain_add(c, 8, 7, false), HX_ERR_INVALID);
    /* Another successor of 6. */
    assert_int_equal(hx_chain_add(c, 9, 6, false), HX_ERR_INVALID);
    /* prev_lsn below scl, lsn above: the successor of 3 has prev 3. */
    assert_int_equal(hx_chain_add(c, 10, 1, false), HX_ERR_INVALID);
    assert_int_equal(hx_chain_scl(c), 3);
    assert_int_equal(hx_chain_pending(c), 1);
    assert_false(hx_chain_has(c, 9));
    assert_false(hx_chain_has(c, 10));
    hx_chain_destroy(c);
}

/* chain.h hx_chain_create: a chain reopened at a stored SCL continues from
 * it, keeping the stored scl_cpl until a newer CPL arrives. */
static void test_chain_create_at_scl(void **state)
{
    (void)state;
    hx_chain *c = hx_chain_create(100, 90);
    assert_non_null(c);
    assert_true(hx_chain_has(c, 57));
    assert_int_equal(hx_chain_max_lsn(c), 100);
    assert_int_equal(hx_chain_add(c, 50, 40, false), 0);
    assert_int_equal(hx_chain_add(c, 103, 100, false), 1);
    assert_int_equal(hx_chain_scl(c), 103);
    assert_int_equal(hx_chain_scl_cpl(c), 90);
    assert_int_equal(hx_chain_add(c, 104, 103, true), 1);
    assert_int_equal(hx_chain_scl_cpl(c), 104);
    hx_chain_destroy(c);
    hx_chain_destroy(NULL); /* STYLE.md: destroy(NULL) is a no-op */
}

/* DESIGN.md "Recovery" (truncate what lies above VDL): truncation of
 * pending records only leaves the SCL alone; a truncation at or below the
 * SCL takes the caller's new SCL, and the new writer's records chain onto
 * it. */
static void test_chain_truncate(void **state)
{
    (void)state;
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    for (uint64_t l = 1; l <= 10; l++)
        assert_int_equal(hx_chain_add(c, l, l - 1, l == 4 || l == 8), 1);
    assert_int_equal(hx_chain_add(c, 13, 12, true), 1); /* pending */
    assert_int_equal(hx_chain_add(c, 14, 13, false), 1);
    assert_int_equal(hx_chain_scl(c), 10);
    assert_int_equal(hx_chain_max_lsn(c), 14);

    /* Above scl only. */
    hx_chain_truncate(c, 12, 13, 0, 0);
    assert_int_equal(hx_chain_scl(c), 10);
    assert_int_equal(hx_chain_scl_cpl(c), 8);
    assert_int_equal(hx_chain_pending(c), 1);
    assert_false(hx_chain_has(c, 13));
    assert_true(hx_chain_has(c, 14));
    assert_int_equal(hx_chain_max_lsn(c), 14);

    /* Recovered VDL 5: truncate (5, 30]; the caller knows the newest chain
     * record below 6 is 5 and the newest CPL at or below it is 4. */
    hx_chain_truncate(c, 6, 30, 5, 4);
    assert_int_equal(hx_chain_scl(c), 5);
    assert_int_equal(hx_chain_scl_cpl(c), 4);
    assert_int_equal(hx_chain_pending(c), 0);
    assert_int_equal(hx_chain_max_lsn(c), 5);
    assert_false(hx_chain_has(c, 14));

    /* The new writer allocates above the truncated range. */
    assert_int_equal(hx_chain_add(c, 31, 5, true), 1);
    assert_int_equal(hx_chain_scl(c), 31);
    assert_int_equal(hx_chain_scl_cpl(c), 31);

    /* An empty range is a no-op. */
    hx_chain_truncate(c, 40, 39, 0, 0);
    assert_int_equal(hx_chain_scl(c), 31);
    hx_chain_destroy(c);
}

/* chain.h invariant 2 under truncation: dropping a middle range of many
 * pending records (hash-table deletion while scanning) keeps exactly the
 * others, and filling the hole advances up to the truncated range. */
static void test_chain_truncate_many(void **state)
{
    (void)state;
    enum { N = 4000, FROM = 500, TO = 1700 };
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    for (uint64_t l = 2; l <= N; l++) /* hole at 1 */
        assert_int_equal(hx_chain_add(c, l, l - 1, false), 1);
    hx_chain_truncate(c, FROM, TO, 0, 0);
    assert_int_equal(hx_chain_pending(c), (N - 1) - (TO - FROM + 1));
    for (uint64_t l = 2; l <= N; l++)
        assert_int_equal(hx_chain_has(c, l), l < FROM || l > TO);
    assert_int_equal(hx_chain_max_lsn(c), N);

    assert_int_equal(hx_chain_add(c, 1, 0, true), 1);
    assert_int_equal(hx_chain_scl(c), FROM - 1);
    assert_int_equal(hx_chain_scl_cpl(c), 1);
    assert_int_equal(hx_chain_pending(c), N - TO); /* orphans above TO */

    hx_chain_truncate(c, TO + 1, UINT64_MAX, 0, 0);
    assert_int_equal(hx_chain_pending(c), 0);
    assert_int_equal(hx_chain_max_lsn(c), FROM - 1);
    hx_chain_destroy(c);
}

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* chain.h invariants 1-4 against a brute-force model: random delivery
 * order with duplicates, and random truncations of pending ranges (which
 * gossip may later refill), on a PG owning a sparse set of LSNs. */
static void test_chain_random_model(void **state)
{
    (void)state;
    enum { N = 3000, STEPS = 20000 };
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    print_message("test_chain_random_model seed=0x%016llx\n",
                  (unsigned long long)seed);
    uint64_t rng = seed;
    uint64_t lsn[N + 1]; /* lsn[0] = 0: "no record" */
    bool cpl[N + 1], held[N + 1];
    lsn[0] = 0;
    for (int i = 1; i <= N; i++) {
        lsn[i] = lsn[i - 1] + 1 + xorshift64(&rng) % 4;
        cpl[i] = xorshift64(&rng) % 5 == 0;
        held[i] = false;
    }
    hx_chain *c = hx_chain_create(0, 0);
    assert_non_null(c);
    int k = 0; /* model: scl = lsn[k] */
    for (int step = 0; step < STEPS; step++) {
        uint64_t r = xorshift64(&rng) % 100;
        if (r < 97) {
            int i = 1 + (int)(xorshift64(&rng) % N);
            int rc = hx_chain_add(c, lsn[i], lsn[i - 1], cpl[i]);
            assert_int_equal(rc, held[i] ? 0 : 1);
            held[i] = true;
        } else {
            /* Truncate a pending range (above scl): no new SCL needed. */
            int a = k + 1 + (int)(xorshift64(&rng) % (uint64_t)(N - k + 1));
            int b = a + (int)(xorshift64(&rng) % 200);
            if (a > N)
                continue;
            if (b > N)
                b = N;
            hx_chain_truncate(c, lsn[a], lsn[b], 0, 0);
            for (int i = a; i <= b; i++)
                held[i] = false;
        }
        while (k < N && held[k + 1])
            k++;
        uint64_t scl_cpl = 0, max = lsn[k];
        size_t pending = 0;
        for (int i = 1; i <= k; i++)
            if (cpl[i])
                scl_cpl = lsn[i];
        for (int i = k + 1; i <= N; i++) {
            if (held[i]) {
                pending++;
                max = lsn[i];
            }
        }
        assert_int_equal(hx_chain_scl(c), lsn[k]);
        assert_int_equal(hx_chain_scl_cpl(c), scl_cpl);
        assert_int_equal(hx_chain_pending(c), pending);
        assert_int_equal(hx_chain_max_lsn(c), max);
        if (step % 500 == 0)
            for (int i = 1; i <= N; i++)
                assert_int_equal(hx_chain_has(c, lsn[i]), i <= k || held[i]);
    }
    /* Gossip fills every hole at last (backwards: all pending first). */
    for (int i = N; i >= 1; i--)
        assert_int_equal(hx_chain_add(c, lsn[i], lsn[i - 1], cpl[i]),
                         held[i] || i <= k ? 0 : 1);
    assert_int_equal(hx_chain_scl(c), lsn[N]);
    assert_int_equal(hx_chain_pending(c), 0);
    hx_chain_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_in_order),
        cmocka_unit_test(test_chain_hole),
        cmocka_unit_test(test_chain_out_of_order),
        cmocka_unit_test(test_chain_duplicates),
        cmocka_unit_test(test_chain_invalid_and_forks),
        cmocka_unit_test(test_chain_create_at_scl),
        cmocka_unit_test(test_chain_truncate),
        cmocka_unit_test(test_chain_truncate_many),
        cmocka_unit_test(test_chain_random_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
