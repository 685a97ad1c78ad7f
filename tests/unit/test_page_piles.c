/* Unit tests for storage-node/page_piles.c: the per-page record counts
 * coalescing keeps above each page's newest version, and GC's floors. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "page_piles.h"

/* Unknown until set; a set value reads back, including 0 and page 0;
 * clear makes every page unknown again. */
static void test_piles_get_set_clear(void **state)
{
    (void)state;
    page_piles *pp = page_piles_new();
    assert_non_null(pp);
    assert_int_equal(page_piles_get(pp, 0), -1);
    page_piles_set(pp, 0, 3);
    page_piles_set(pp, 17, 0);
    page_piles_set(pp, UINT64_MAX - 1, 2);
    assert_int_equal(page_piles_get(pp, 0), 3);
    assert_int_equal(page_piles_get(pp, 17), 0);
    assert_int_equal(page_piles_get(pp, UINT64_MAX - 1), 2);
    assert_int_equal(page_piles_get(pp, 18), -1);
    page_piles_set(pp, 17, 2);
    assert_int_equal(page_piles_get(pp, 17), 2);
    assert_int_equal(page_piles_count(pp), 3);
    page_piles_clear(pp);
    assert_int_equal(page_piles_count(pp), 0);
    assert_int_equal(page_piles_get(pp, 0), -1);
    assert_int_equal(page_piles_get(pp, 17), -1);
    page_piles_free(pp);
}

/* A GC floor and a pile count are independent: a floor alone leaves the
 * pile unknown, a pile alone leaves the floor 0 (unknown); both survive
 * growth; clear forgets both. */
static void test_piles_gc_floor(void **state)
{
    (void)state;
    page_piles *pp = page_piles_new();
    assert_non_null(pp);
    assert_int_equal(page_piles_gc_floor(pp, 5), 0);
    page_piles_set_gc_floor(pp, 5, 1234);
    assert_int_equal(page_piles_gc_floor(pp, 5), 1234);
    assert_int_equal(page_piles_get(pp, 5), -1);
    page_piles_set(pp, 5, 7);
    page_piles_set(pp, 6, 2);
    assert_int_equal(page_piles_get(pp, 5), 7);
    assert_int_equal(page_piles_gc_floor(pp, 5), 1234);
    assert_int_equal(page_piles_gc_floor(pp, 6), 0);
    for (uint64_t p = 100; p < 5000; p++)
        page_piles_set_gc_floor(pp, p, p * 10);
    assert_int_equal(page_piles_gc_floor(pp, 5), 1234);
    assert_int_equal(page_piles_get(pp, 5), 7);
    assert_int_equal(page_piles_gc_floor(pp, 4999), 49990);
    assert_int_equal(page_piles_get(pp, 4999), -1);
    page_piles_clear(pp);
    assert_int_equal(page_piles_gc_floor(pp, 5), 0);
    assert_int_equal(page_piles_gc_floor(pp, 4999), 0);
    page_piles_free(pp);
}

/* Growth keeps every entry: 100k pages (many doublings, clustered and
 * spread page numbers) all read back their own count. */
static void test_piles_grow_keeps_entries(void **state)
{
    (void)state;
    page_piles *pp = page_piles_new();
    assert_non_null(pp);
    const uint64_t n = 100000;
    for (uint64_t i = 0; i < n; i++)
        page_piles_set(pp, i % 2 ? i : i << 20, (uint32_t)(i % 4));
    assert_int_equal(page_piles_count(pp), n);
    for (uint64_t i = 0; i < n; i++)
        assert_int_equal(page_piles_get(pp, i % 2 ? i : i << 20),
                         (long)(i % 4));
    assert_int_equal(page_piles_get(pp, 2), -1); /* 2 was stored as 2<<20 */
    page_piles_free(pp);
}

/* At PAGE_PILES_MAX entries a new page stays unknown, while pages already
 * tracked still update. */
static void test_piles_full_map_stays_unknown(void **state)
{
    (void)state;
    page_piles *pp = page_piles_new();
    assert_non_null(pp);
    for (uint64_t i = 0; i < PAGE_PILES_MAX; i++)
        page_piles_set(pp, i, 1);
    assert_int_equal(page_piles_count(pp), PAGE_PILES_MAX);
    page_piles_set(pp, PAGE_PILES_MAX, 2);
    assert_int_equal(page_piles_get(pp, PAGE_PILES_MAX), -1);
    page_piles_set(pp, 5, 3);
    assert_int_equal(page_piles_get(pp, 5), 3);
    assert_int_equal(page_piles_count(pp), PAGE_PILES_MAX);
    page_piles_free(pp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piles_get_set_clear),
        cmocka_unit_test(test_piles_gc_floor),
        cmocka_unit_test(test_piles_grow_keeps_entries),
        cmocka_unit_test(test_piles_full_map_stays_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
