/* Unit tests for storage-node/record_cache.c: the records coalescing keeps
 * in memory until a page version applies them (record_cache.h). */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "record_cache.h"

/* The bytes a test stores for record lsn of segment pg: its length and
 * contents both depend on both. */
static size_t fill(uint8_t *b, uint32_t pg, uint64_t lsn)
{
    size_t len = 20 + (size_t)((lsn * 7 + pg) % 90);
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(lsn * 31 + pg * 17 + i);
    return len;
}

static void assert_holds(record_cache *rc, uint32_t pg, uint64_t lsn)
{
    uint8_t want[128];
    size_t wl = fill(want, pg, lsn), len = 0;
    const uint8_t *got = record_cache_find(rc, 1, pg, lsn, &len);
    if (got == NULL)
        fail_msg("record %u/%llu is not cached", pg, (unsigned long long)lsn);
    assert_int_equal(len, wl);
    assert_memory_equal(got, want, wl);
}

static bool put(record_cache *rc, uint32_t pg, uint64_t lsn)
{
    uint8_t b[128];
    size_t len = fill(b, pg, lsn);
    return record_cache_put(rc, 1, pg, lsn, b, len);
}

/* A put reads back byte for byte; a drop removes only its entry; a put at
 * or below the segment's newest entry is ignored (invariant 2); the bytes
 * charged follow the entries. */
static void test_put_find_drop(void **state)
{
    (void)state;
    record_cache *rc = record_cache_new(1u << 20);
    assert_non_null(rc);
    for (uint64_t lsn = 10; lsn <= 100; lsn += 10)
        assert_true(put(rc, 0, lsn));
    assert_true(put(rc, 3, 15));
    assert_false(put(rc, 0, 100)); /* not above the newest */
    assert_false(put(rc, 0, 55));
    for (uint64_t lsn = 10; lsn <= 100; lsn += 10)
        assert_holds(rc, 0, lsn);
    assert_holds(rc, 3, 15);
    size_t len = 0;
    assert_null(record_cache_find(rc, 1, 0, 55, &len));
    assert_null(record_cache_find(rc, 1, 3, 10, &len));
    assert_null(record_cache_find(rc, 2, 0, 10, &len)); /* other volume */

    record_cache_drop(rc, 1, 0, 50);
    record_cache_drop(rc, 1, 0, 10); /* the head */
    record_cache_drop(rc, 1, 0, 77); /* absent: nothing */
    assert_null(record_cache_find(rc, 1, 0, 50, &len));
    assert_null(record_cache_find(rc, 1, 0, 10, &len));
    assert_holds(rc, 0, 20);
    assert_holds(rc, 0, 60);
    record_cache_stats st = record_cache_get_stats(rc);
    assert_int_equal(st.entries, 9);
    uint64_t bytes = 0;
    uint8_t b[128];
    for (uint64_t lsn = 20; lsn <= 100; lsn += 10)
        if (lsn != 50)
            bytes += fill(b, 0, lsn) + RECORD_CACHE_ENTRY_BYTES;
    bytes += fill(b, 3, 15) + RECORD_CACHE_ENTRY_BYTES;
    assert_int_equal(st.bytes, bytes);
    assert_true(st.hits > 0 && st.misses == 5);
    record_cache_free(rc);
}

/* Truncation drops the segment's entries at and above from, nothing of
 * another segment, and lets LSNs from on be put again (with other
 * bytes: the new writer's records). */
static void test_truncate(void **state)
{
    (void)state;
    record_cache *rc = record_cache_new(1u << 20);
    for (uint64_t lsn = 1; lsn <= 50; lsn++) {
        assert_true(put(rc, 0, lsn));
        assert_true(put(rc, 1, lsn));
    }
    record_cache_drop(rc, 1, 0, 45); /* a dropped one in the cut range */
    record_cache_truncate(rc, 1, 0, 40);
    size_t len = 0;
    for (uint64_t lsn = 1; lsn <= 50; lsn++) {
        if (lsn < 40)
            assert_holds(rc, 0, lsn);
        else
            assert_null(record_cache_find(rc, 1, 0, lsn, &len));
        assert_holds(rc, 1, lsn);
    }
    uint8_t other[8] = {9, 9, 9};
    assert_true(record_cache_put(rc, 1, 0, 40, other, sizeof other));
    const uint8_t *got = record_cache_find(rc, 1, 0, 40, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof other);
    assert_memory_equal(got, other, sizeof other);
    assert_int_equal(record_cache_get_stats(rc).entries, 39 + 1 + 50);
    record_cache_truncate(rc, 1, 7, 1); /* unknown segment: nothing */
    record_cache_free(rc);
}

/* Over max_bytes the oldest entries go first, across segments by LSN
 * (invariant 3): what stays is the newest ones, and the bytes charged
 * never exceed the limit. max_bytes 0 keeps nothing. */
static void test_eviction_oldest_first(void **state)
{
    (void)state;
    const size_t max = 64 * (RECORD_CACHE_ENTRY_BYTES + 110);
    record_cache *rc = record_cache_new(max);
    for (uint64_t lsn = 1; lsn <= 2000; lsn++) {
        assert_true(put(rc, (uint32_t)(lsn % 3), lsn));
        assert_true(record_cache_get_stats(rc).bytes <= max);
    }
    record_cache_stats st = record_cache_get_stats(rc);
    assert_true(st.entries >= 64 && st.entries < 2000);
    assert_int_equal(st.evicted, 2000 - st.entries);
    /* Exactly the newest st.entries records remain. */
    size_t len = 0;
    for (uint64_t lsn = 1; lsn <= 2000; lsn++) {
        if (lsn > 2000 - st.entries)
            assert_holds(rc, (uint32_t)(lsn % 3), lsn);
        else
            assert_null(record_cache_find(rc, 1, (uint32_t)(lsn % 3), lsn,
                                          &len));
    }
    record_cache_free(rc);

    rc = record_cache_new(0);
    assert_false(put(rc, 0, 1));
    assert_int_equal(record_cache_get_stats(rc).entries, 0);
    record_cache_free(rc);
}

/* A model check: random puts (increasing per segment), drops, finds and
 * truncations. With room for everything, the cache answers exactly as the
 * model (a live entry always found with its bytes, a dropped or truncated
 * one never); a small limit only turns answers into misses, never into
 * wrong bytes; the entry count and charged bytes match a recount. Seeded,
 * the seed printed. */
#define MODEL_LSNS 6000u
#define MODEL_SEGS 4u

static void run_model(size_t max_bytes, unsigned seed)
{
    print_message("seed %u, max_bytes %zu\n", seed, max_bytes);
    srand(seed);
    record_cache *rc = record_cache_new(max_bytes);
    static bool live[MODEL_SEGS][MODEL_LSNS + 1];
    memset(live, 0, sizeof live);
    uint64_t next[MODEL_SEGS] = {1, 1, 1, 1};
    for (int step = 0; step < 40000; step++) {
        uint32_t pg = (uint32_t)rand() % MODEL_SEGS;
        int op = rand() % 100;
        if (op < 50 && next[pg] <= MODEL_LSNS) {
            uint64_t lsn = next[pg];
            next[pg] += 1 + (uint64_t)(rand() % 3);
            if (put(rc, pg, lsn))
                live[pg][lsn] = true;
            else
                assert_true(max_bytes == 0);
        } else if (op < 80) {
            uint64_t lsn = 1 + (uint64_t)rand() % MODEL_LSNS;
            size_t len = 0;
            const uint8_t *got = record_cache_find(rc, 1, pg, lsn, &len);
            if (got != NULL) {
                assert_true(live[pg][lsn]);
                assert_holds(rc, pg, lsn);
            } else if (max_bytes >= (size_t)1 << 30) {
                assert_false(live[pg][lsn]);
            } else {
                live[pg][lsn] = false; /* evicted: it stays gone */
            }
        } else if (op < 98) {
            uint64_t lsn = 1 + (uint64_t)rand() % MODEL_LSNS;
            record_cache_drop(rc, 1, pg, lsn);
            live[pg][lsn] = false;
        } else {
            uint64_t from = next[pg] > 50 ? next[pg] - (uint64_t)(rand() % 50)
                                          : 1;
            record_cache_truncate(rc, 1, pg, from);
            for (uint64_t l = from; l <= MODEL_LSNS; l++)
                live[pg][l] = false;
            next[pg] = from;
        }
    }
    /* Recount: every entry found is live in the model, and they add up. */
    uint64_t n = 0, bytes = 0;
    uint8_t b[128];
    for (uint32_t pg = 0; pg < MODEL_SEGS; pg++)
        for (uint64_t lsn = 1; lsn <= MODEL_LSNS; lsn++) {
            size_t len = 0;
            if (record_cache_find(rc, 1, pg, lsn, &len) != NULL) {
                assert_true(live[pg][lsn]);
                n++;
                bytes += fill(b, pg, lsn) + RECORD_CACHE_ENTRY_BYTES;
            } else if (max_bytes >= (size_t)1 << 30) {
                assert_false(live[pg][lsn]);
            }
        }
    record_cache_stats st = record_cache_get_stats(rc);
    assert_int_equal(st.entries, n);
    assert_int_equal(st.bytes, bytes);
    assert_true(st.bytes <= max_bytes);
    if (max_bytes < (size_t)1 << 30 && max_bytes > 0)
        assert_true(st.evicted > 0);
    record_cache_free(rc);
}

static void test_model_unbounded(void **state)
{
    (void)state;
    run_model((size_t)1 << 30, 1);
    run_model((size_t)1 << 30, 2);
}

static void test_model_bounded(void **state)
{
    (void)state;
    run_model(200 * (RECORD_CACHE_ENTRY_BYTES + 64), 3);
    run_model(200 * (RECORD_CACHE_ENTRY_BYTES + 64), 4);
    run_model(0, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_find_drop),
        cmocka_unit_test(test_truncate),
        cmocka_unit_test(test_eviction_oldest_first),
        cmocka_unit_test(test_model_unbounded),
        cmocka_unit_test(test_model_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
