/* Unit tests for compute-node/page_diff.c.
 * Requirement: DESIGN.md "Compute nodes": a transaction's page writes
 * become redo records of byte patches against the page's previous
 * version, or a full image when that is smaller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hx_err.h"
#include "page_diff.h"

#define PS 4096u

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic for a printed seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void fill_random(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rng_next();
}

static void test_identical_pages_give_no_patches(void **state)
{
    (void)state;
    static uint8_t a[PS], b[PS];
    hx_patch p[PAGE_DIFF_PATCHES_MAX];
    size_t n = 99;
    int img = 99;

    fill_random(a, PS);
    memcpy(b, a, PS);
    assert_int_equal(hx_page_diff(a, b, PS, p, PAGE_DIFF_PATCHES_MAX, &n, &img),
                     HX_OK);
    assert_int_equal(n, 0);
    assert_int_equal(img, 0);

    /* old NULL means zeros: a zero page against it is identical too */
    memset(b, 0, PS);
    assert_int_equal(hx_page_diff(NULL, b, PS, p, PAGE_DIFF_PATCHES_MAX, &n,
                                  &img), HX_OK);
    assert_int_equal(n, 0);
}

static void test_single_byte_change(void **state)
{
    (void)state;
    static uint8_t a[PS], b[PS];
    hx_patch p[PAGE_DIFF_PATCHES_MAX];
    size_t n = 0;
    int img = 1;

    fill_random(a, PS);
    memcpy(b, a, PS);
    b[1234] ^= 0x5a;
    assert_int_equal(hx_page_diff(a, b, PS, p, PAGE_DIFF_PATCHES_MAX, &n, &img),
                     HX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(img, 0);
    assert_int_equal(p[0].offset, 1234);
    assert_int_equal(p[0].len, 1);
    assert_ptr_equal(p[0].data, b + 1234);

    /* first and last bytes of the page */
    memcpy(b, a, PS);
    b[0] ^= 1;
    b[PS - 1] ^= 1;
    assert_int_equal(hx_page_diff(a, b, PS, p, PAGE_DIFF_PATCHES_MAX, &n, &img),
                     HX_OK);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].offset, 0);
    assert_int_equal(p[1].offset, PS - 1);
    assert_int_equal(p[1].len, 1);
}

static void test_scattered_changes_merge(void **state)
{
    (void)state;
    static uint8_t a[PS], b[PS];
    hx_patch p[PAGE_DIFF_PATCHES_MAX];
    size_t n = 0;
    int img = 1;

    memset(a, 7, PS);
    memcpy(b, a, PS);
    b[100] = 1;
    b[104] = 1; /* 3 equal bytes between: merged */
    b[200] = 1; /* 95 equal bytes: separate */
    b[300] = 1;
    b[308] = 1; /* exactly 7 equal bytes (301..307): merged */
    b[400] = 1;
    b[409] = 1; /* 8 equal bytes (401..408): separate */
    assert_int_equal(hx_page_diff(a, b, PS, p, PAGE_DIFF_PATCHES_MAX, &n, &img),
                     HX_OK);
    assert_int_equal(img, 0);
    assert_int_equal(n, 5);
    assert_int_equal(p[0].offset, 100);
    assert_int_equal(p[0].len, 5);
    assert_int_equal(p[1].offset, 200);
    assert_int_equal(p[1].len, 1);
    assert_int_equal(p[2].offset, 300);
    assert_int_equal(p[2].len, 9);
    assert_int_equal(p[3].offset, 400);
    assert_int_equal(p[3].len, 1);
    assert_int_equal(p[4].offset, 409);
    assert_int_equal(p[4].len, 1);
}

static void test_patch_cap_widens_gap(void **state)
{
    (void)state;
    static uint8_t a[PS], b[PS], c[PS];
    hx_patch p[PAGE_DIFF_PATCHES_MAX];
    size_t n = 0;
    int img = 1;

    memset(a, 0, PS);
    memcpy(b, a, PS);
    for (size_t i = 0; i < PS; i += 64)
        b[i] = 0xff; /* 64 runs, 63 equal bytes apart */
    assert_int_equal(hx_page_diff(a, b, PS, p, 8, &n, &img), HX_OK);
    assert_true(n >= 1 && n <= 8);
    assert_int_equal(img, 0);
    memcpy(c, a, PS);
    assert_int_equal(hx_page_apply(c, PS, p, n), HX_OK);
    assert_memory_equal(c, b, PS);

    /* a cap of one always fits: everything merges into one run */
    assert_int_equal(hx_page_diff(a, b, PS, p, 1, &n, &img), HX_OK);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].offset, 0);
    assert_int_equal(p[0].len, PS - 63);
}

static void test_whole_image_fallback(void **state)
{
    (void)state;
    static uint8_t a[PS], b[PS];
    hx_patch p[PAGE_DIFF_PATCHES_MAX];
    size_t n = 0;
    int img = 0;

    fill_random(b, PS);
    b[0] |= 1; /* differs from zero at both ends */
    b[PS - 1] |= 1;
    assert_int_equal(hx_page_diff(NULL, b, PS, p, PAGE_DIFF_PATCHES_MAX, &n,
                                  &img), HX_OK);
    assert_int_equal(img, 1);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].offset, 0);
    assert_int_equal(p[0].len, PS);
    assert_ptr_equal(p[0].data, b);

    /* almost everything changed, in pieces: still one image */
    memset(a, 0, PS);
    memset(b, 1, PS);
    for (size_t i = 0; i < PS; i += 512)
        b[i] = 0;
    assert_int_equal(hx_page_diff(a, b, PS, p, PAGE_DIFF_PATCHES_MAX, &n, &img),
                     HX_OK);
    assert_int_equal(img, 1);
    assert_int_equal(n, 1);
}

static void test_apply_round_trip_random(void **state)
{
    (void)state;
    static uint8_t a[PS], b[PS], c[PS];
    hx_patch p[PAGE_DIFF_PATCHES_MAX];
    size_t images = 0, patched = 0;

    for (int iter = 0; iter < 2000; iter++) {
        int from_zero = iter % 10 == 0;
        if (from_zero)
            memset(a, 0, PS);
        else
            fill_random(a, PS);
        memcpy(b, a, PS);
        if (iter % 7 == 0)
            fill_random(b, PS); /* a rewritten page */
        int edits = (int)(rng_next() % 40);
        for (int e = 0; e < edits; e++) {
            size_t off = rng_next() % PS;
            size_t len = 1 + rng_next() % (iter % 3 == 0 ? 300 : 12);
            if (off + len > PS)
                len = PS - off;
            fill_random(b + off, len);
        }
        size_t cap = 1 + rng_next() % PAGE_DIFF_PATCHES_MAX;
        size_t n = 0;
        int img = 0;
        assert_int_equal(hx_page_diff(from_zero ? NULL : a, b, PS, p, cap, &n,
                                      &img), HX_OK);
        assert_true(n <= cap);
        for (size_t i = 1; i < n; i++)
            assert_true(p[i - 1].offset + p[i - 1].len < p[i].offset);
        if (img) {
            images++;
            assert_true(n == 1 && p[0].len == PS);
        } else if (n > 0) {
            patched++;
            assert_true(hx_patches_encoded_size(p, n) < PS);
        }
        memcpy(c, a, PS);
        assert_int_equal(hx_page_apply(c, PS, p, n), HX_OK);
        assert_memory_equal(c, b, PS);
    }
    print_message("round trip: %zu images, %zu patched\n", images, patched);
    assert_true(images > 0);
    assert_true(patched > 0);
}

static void test_apply_rejects_out_of_range(void **state)
{
    (void)state;
    static uint8_t page[PS], before[PS];
    uint8_t data[16] = {1, 2, 3};
    fill_random(page, PS);
    memcpy(before, page, PS);

    hx_patch ok_then_bad[2] = {{0, 3, data}, {PS - 5, 10, data}};
    assert_int_equal(hx_page_apply(page, PS, ok_then_bad, 2), HX_ERR_INVALID);
    assert_memory_equal(page, before, PS); /* nothing applied */

    hx_patch wrap = {UINT32_MAX, 2, data};
    assert_int_equal(hx_page_apply(page, PS, &wrap, 1), HX_ERR_INVALID);
    hx_patch null_data = {0, 1, NULL};
    assert_int_equal(hx_page_apply(page, PS, &null_data, 1), HX_ERR_INVALID);
    assert_memory_equal(page, before, PS);

    hx_patch edge = {PS - 16, 16, data};
    assert_int_equal(hx_page_apply(page, PS, &edge, 1), HX_OK);
    assert_memory_equal(page + PS - 16, data, 16);
    hx_patch empty = {PS, 0, NULL};
    assert_int_equal(hx_page_apply(page, PS, &empty, 1), HX_OK);
}

static void test_diff_rejects_bad_arguments(void **state)
{
    (void)state;
    static uint8_t b[PS];
    hx_patch p[4];
    size_t n;
    int img;
    assert_int_equal(hx_page_diff(NULL, NULL, PS, p, 4, &n, &img),
                     HX_ERR_INVALID);
    assert_int_equal(hx_page_diff(NULL, b, 0, p, 4, &n, &img), HX_ERR_INVALID);
    assert_int_equal(hx_page_diff(NULL, b, PS, p, 0, &n, &img),
                     HX_ERR_INVALID);
}

int main(void)
{
    uint64_t seed = 0x6865786164ull; /* "hexad" */
    const char *env = getenv("HX_TEST_SEED");
    if (env)
        seed = strtoull(env, NULL, 0);
    if (seed == 0)
        seed = 1;
    rng_state = seed;
    printf("test_page_diff seed: 0x%llx (HX_TEST_SEED to replay)\n",
           (unsigned long long)seed);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_pages_give_no_patches),
        cmocka_unit_test(test_single_byte_change),
        cmocka_unit_test(test_scattered_changes_merge),
        cmocka_unit_test(test_patch_cap_widens_gap),
        cmocka_unit_test(test_whole_image_fallback),
        cmocka_unit_test(test_apply_round_trip_random),
        cmocka_unit_test(test_apply_rejects_out_of_range),
        cmocka_unit_test(test_diff_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
