/* The boxcar's decision (compute-node/boxcar.h): marked commits are held
 * until the cap-th, an unmarked one or the timer; the first held one arms
 * the timer; a lone (unmarked) commit is never held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "boxcar.h"

static void test_unmarked_ships_at_once(void **state)
{
    (void)state;
    hx_boxcar b = {0};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(hx_boxcar_commit(&b, false, 3), HX_BOXCAR_SHIP);
        assert_false(hx_boxcar_holding(&b));
    }
}

/* Cap 3: hold (arming the timer), hold, then the third ships all three;
 * the next marked one starts a new boxcar. */
static void test_cap_ships_the_third(void **state)
{
    (void)state;
    hx_boxcar b = {0};
    for (int round = 0; round < 3; round++) {
        assert_int_equal(hx_boxcar_commit(&b, true, 3), HX_BOXCAR_HOLD_ARM);
        assert_true(hx_boxcar_holding(&b));
        assert_int_equal(hx_boxcar_commit(&b, true, 3), HX_BOXCAR_HOLD);
        assert_true(hx_boxcar_holding(&b));
        assert_int_equal(hx_boxcar_commit(&b, true, 3), HX_BOXCAR_SHIP);
        assert_false(hx_boxcar_holding(&b));
    }
}

/* An unmarked commit takes the held ones with it. */
static void test_unmarked_ends_the_hold(void **state)
{
    (void)state;
    hx_boxcar b = {0};
    assert_int_equal(hx_boxcar_commit(&b, true, 8), HX_BOXCAR_HOLD_ARM);
    assert_int_equal(hx_boxcar_commit(&b, true, 8), HX_BOXCAR_HOLD);
    assert_int_equal(hx_boxcar_commit(&b, false, 8), HX_BOXCAR_SHIP);
    assert_false(hx_boxcar_holding(&b));
    assert_int_equal(hx_boxcar_commit(&b, true, 8), HX_BOXCAR_HOLD_ARM);
}

/* The timer releases what is held; the next marked commit re-arms it. */
static void test_timeout_releases(void **state)
{
    (void)state;
    hx_boxcar b = {0};
    assert_int_equal(hx_boxcar_commit(&b, true, 3), HX_BOXCAR_HOLD_ARM);
    hx_boxcar_timeout(&b);
    assert_false(hx_boxcar_holding(&b));
    assert_int_equal(hx_boxcar_commit(&b, true, 3), HX_BOXCAR_HOLD_ARM);
    assert_int_equal(hx_boxcar_commit(&b, true, 3), HX_BOXCAR_HOLD);
    /* A timeout with nothing held changes nothing. */
    hx_boxcar_timeout(&b);
    hx_boxcar_timeout(&b);
    assert_false(hx_boxcar_holding(&b));
}

/* Cap 1 disables the boxcar: nothing is ever held. */
static void test_cap_one_never_holds(void **state)
{
    (void)state;
    hx_boxcar b = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(hx_boxcar_commit(&b, true, 1), HX_BOXCAR_SHIP);
    assert_false(hx_boxcar_holding(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unmarked_ships_at_once),
        cmocka_unit_test(test_cap_ships_the_third),
        cmocka_unit_test(test_unmarked_ends_the_hold),
        cmocka_unit_test(test_timeout_releases),
        cmocka_unit_test(test_cap_one_never_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
