/* Unit tests for common/record.c: checksums and the page_no peek. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hx_err.h"
#include "record.h"

static size_t pack(uint64_t lsn, uint64_t page_no, size_t n_patches,
                   uint8_t **out)
{
    Hexad__Record r = HEXAD__RECORD__INIT;
    Hexad__Patch p[3], *pp[3];
    uint8_t data[300];
    memset(data, 0xAB, sizeof data);
    for (size_t i = 0; i < n_patches; i++) {
        hexad__patch__init(&p[i]);
        p[i].offset = (uint32_t)(100 * i);
        p[i].data.data = data;
        p[i].data.len = 50 + 100 * i; /* 150 and 250: two-byte lengths */
        pp[i] = &p[i];
    }
    r.lsn = lsn;
    r.prev_lsn = lsn > 1 ? lsn - 1 : 0;
    r.page_no = page_no;
    r.flags = HX_RECORD_CPL;
    r.n_patches = n_patches;
    r.patches = pp;
    r.commit_time_us = 1764000000000000ull;
    r.epoch = 3;
    hx_record_seal(&r);
    size_t len = hexad__record__get_packed_size(&r);
    *out = malloc(len);
    assert_non_null(*out);
    hexad__record__pack(&r, *out);
    return len;
}

/* The peek agrees with a full unpack, for page 0 (a field protobuf leaves
 * out), one-byte and multi-byte page numbers, with and without patches. */
static void test_peek_matches_unpack(void **state)
{
    (void)state;
    const uint64_t pages[] = {0, 1, 127, 128, 300000, UINT64_MAX >> 1};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        for (size_t np = 0; np <= 3; np++) {
            uint8_t *b = NULL;
            size_t len = pack(1000 + i, pages[i], np, &b);
            uint64_t got = 7;
            assert_int_equal(hx_record_peek_page_no(b, len, &got), HX_OK);
            Hexad__Record *r = hexad__record__unpack(NULL, len, b);
            assert_non_null(r);
            assert_int_equal(got, r->page_no);
            assert_int_equal(got, pages[i]);
            hexad__record__free_unpacked(r, NULL);
            free(b);
        }
    }
}

/* A record cut anywhere inside a field, and bytes that are no message,
 * give HX_ERR_INVALID rather than a page number or a read past the end. */
static void test_peek_refuses_malformed(void **state)
{
    (void)state;
    uint8_t *b = NULL;
    size_t len = pack(42, 9000, 2, &b);
    size_t refused = 0;
    for (size_t cut = 1; cut < len; cut++) {
        uint8_t *t = malloc(cut); /* exact size: ASan sees any overread */
        assert_non_null(t);
        memcpy(t, b, cut);
        uint64_t got;
        if (hx_record_peek_page_no(t, cut, &got) == HX_ERR_INVALID)
            refused++;
        free(t);
    }
    /* Cuts that fall between fields parse as a shorter message; every
     * other cut is refused, and most cuts land inside the patches. */
    assert_true(refused > len / 2);
    const uint8_t bad_wire[] = {0x1B, 0x00};       /* field 3, wire type 3 */
    const uint8_t long_varint[] = {0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                   0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    const uint8_t field_zero[] = {0x00, 0x01};
    const uint8_t len_past_end[] = {0x2A, 0x7F, 0x00};
    uint64_t got;
    assert_int_equal(hx_record_peek_page_no(bad_wire, sizeof bad_wire, &got),
                     HX_ERR_INVALID);
    assert_int_equal(hx_record_peek_page_no(long_varint, sizeof long_varint,
                                            &got), HX_ERR_INVALID);
    assert_int_equal(hx_record_peek_page_no(field_zero, sizeof field_zero,
                                            &got), HX_ERR_INVALID);
    assert_int_equal(hx_record_peek_page_no(len_past_end,
                                            sizeof len_past_end, &got),
                     HX_ERR_INVALID);
    free(b);
}

/* A sealed record verifies; a changed field or patch byte does not. */
static void test_checksum_covers_fields(void **state)
{
    (void)state;
    uint8_t *b = NULL;
    size_t len = pack(5, 77, 1, &b);
    Hexad__Record *r = hexad__record__unpack(NULL, len, b);
    assert_non_null(r);
    assert_int_equal(hx_record_verify(r), HX_OK);
    r->page_no++;
    assert_int_equal(hx_record_verify(r), HX_ERR_CHECKSUM);
    r->page_no--;
    r->patches[0]->data.data[10] ^= 1;
    assert_int_equal(hx_record_verify(r), HX_ERR_CHECKSUM);
    hexad__record__free_unpacked(r, NULL);
    free(b);
}

/* Records sealed before the CRC-32C (a BLAKE2b fold, from the code of
 * session 6: the constant was printed by it) still verify, and a change
 * still fails them; a new seal is a CRC, at most 5 varint bytes. */
static void test_legacy_checksum_still_verifies(void **state)
{
    (void)state;
    static uint8_t data[5] = {'h', 'e', 'l', 'l', 'o'};
    Hexad__Patch p = HEXAD__PATCH__INIT;
    Hexad__Patch *pp[1] = {&p};
    p.offset = 10;
    p.data.data = data;
    p.data.len = sizeof data;
    Hexad__Record r = HEXAD__RECORD__INIT;
    r.lsn = 42;
    r.prev_lsn = 41;
    r.page_no = 7;
    r.flags = 1;
    r.commit_time_us = 123456;
    r.epoch = 3;
    r.n_patches = 1;
    r.patches = pp;
    r.checksum = UINT64_C(8462961890422968592);
    assert_int_equal(hx_record_verify(&r), HX_OK);
    r.epoch = 4;
    assert_int_equal(hx_record_verify(&r), HX_ERR_CHECKSUM);
    r.epoch = 3;
    data[0] = 'j';
    assert_int_equal(hx_record_verify(&r), HX_ERR_CHECKSUM);
    data[0] = 'h';

    hx_record_seal(&r);
    assert_true(r.checksum <= UINT32_MAX);
    assert_int_equal(hx_record_verify(&r), HX_OK);
    Hexad__Record no_sum = r;
    no_sum.checksum = 0;
    /* Tag and varint: at most 6 bytes, where the fold took 10 or 11. */
    assert_true(hexad__record__get_packed_size(&r) -
                    hexad__record__get_packed_size(&no_sum) <= 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peek_matches_unpack),
        cmocka_unit_test(test_peek_refuses_malformed),
        cmocka_unit_test(test_checksum_covers_fields),
        cmocka_unit_test(test_legacy_checksum_still_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
