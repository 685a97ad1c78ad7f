/* Unit tests for common/crc32c.c: CRC-32C's published check values, and
 * that a CRC extended piece by piece equals the one-shot CRC (the journal
 * checks header and payload so). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "crc32c.h"

/* RFC 3720 (iSCSI) B.4 and the common "123456789" check value. */
static void test_crc32c_known_values(void **state)
{
    (void)state;
    uint8_t buf[32];
    assert_int_equal(hx_crc32c(0, "123456789", 9), 0xE3069283u);
    memset(buf, 0, sizeof buf);
    assert_int_equal(hx_crc32c(0, buf, sizeof buf), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(hx_crc32c(0, buf, sizeof buf), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(hx_crc32c(0, buf, sizeof buf), 0x46DD794Eu);
    assert_int_equal(hx_crc32c(0, buf, 0), 0u);
}

/* Every split of a 1000-byte buffer, at every alignment, gives the same
 * CRC as the whole; one flipped bit changes it. */
static void test_crc32c_pieces_equal_whole(void **state)
{
    (void)state;
    uint8_t buf[1001];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t off = 0; off < 2; off++) {
        const uint8_t *p = buf + off;
        uint32_t whole = hx_crc32c(0, p, 1000);
        for (size_t cut = 0; cut <= 1000; cut++)
            assert_int_equal(hx_crc32c(hx_crc32c(0, p, cut), p + cut,
                                       1000 - cut), whole);
        buf[off + 500] ^= 0x10;
        assert_int_not_equal(hx_crc32c(0, p, 1000), whole);
        buf[off + 500] ^= 0x10;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known_values),
        cmocka_unit_test(test_crc32c_pieces_equal_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
