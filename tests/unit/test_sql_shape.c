/* Statement shapes (compute-node/sql_shape.c): which literals become
 * parameters, and which stay in the text because binding them would change
 * what the statement means or shows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sql_shape.h"

static sql_shape sh;

static bool shape(const char *sql)
{
    return sql_shape_of(sql, sql + strlen(sql), &sh);
}

static void test_pgbench_statements(void **state)
{
    (void)state;
    assert_true(shape("UPDATE pgbench_accounts SET abalance = abalance + "
                      "-4711 WHERE aid = 123456"));
    assert_string_equal(sh.text, "UPDATE pgbench_accounts SET abalance = "
                                 "abalance + -? WHERE aid = ?");
    assert_int_equal(sh.n_literals, 2);
    assert_int_equal(sh.literals[0].kind, SQL_LITERAL_INT);
    assert_int_equal(sh.literals[0].value, 4711);
    assert_int_equal(sh.literals[1].value, 123456);

    assert_true(shape("SELECT abalance FROM pgbench_accounts WHERE aid = 7"));
    assert_string_equal(sh.text,
                        "SELECT abalance FROM pgbench_accounts WHERE aid = ?");

    assert_true(shape("INSERT INTO pgbench_history (tid, bid, aid, delta, "
                      "mtime) VALUES (3, 1, 45, -123, CURRENT_TIMESTAMP)"));
    assert_string_equal(sh.text, "INSERT INTO pgbench_history (tid, bid, "
                                 "aid, delta, mtime) VALUES (?, ?, ?, -?, "
                                 "CURRENT_TIMESTAMP)");
    assert_int_equal(sh.n_literals, 4);
}

static void test_strings(void **state)
{
    (void)state;
    assert_true(shape("insert into t values ('it''s', '', x'00ff', \"q\")"));
    assert_string_equal(sh.text, "insert into t values (?, ?, x'00ff', \"q\")");
    assert_int_equal(sh.n_literals, 2);
    char buf[16];
    assert_true(sh.literals[0].doubled);
    assert_int_equal(sql_literal_text(&sh.literals[0], buf), 4);
    assert_string_equal(buf, "it's");
    assert_int_equal(sh.literals[1].len, 0);
    assert_int_equal(sql_literal_text(&sh.literals[1], buf), 0);

    /* A quote that never closes is the parser's to report. */
    assert_false(shape("select a from t where b = 'open"));
}

static void test_numbers_that_stay(void **state)
{
    (void)state;
    assert_true(shape("delete from t where a = 1.5 or b = 1e3 or c = 0x1F "
                      "or d = 1234567890123456789 or e = .5 or f = t1.x"));
    assert_string_equal(sh.text,
                        "delete from t where a = 1.5 or b = 1e3 or c = 0x1F "
                        "or d = 1234567890123456789 or e = .5 or f = t1.x");
    assert_int_equal(sh.n_literals, 0);
    assert_true(shape("delete from t where a = 123456789012345678"));
    assert_int_equal(sh.n_literals, 1);
    assert_int_equal(sh.literals[0].value, 123456789012345678);
}

static void test_literals_that_name_or_pick_columns(void **state)
{
    (void)state;
    /* Result columns are named by their text. */
    assert_true(shape("select 1, 'a', (select 2 from u) from t where b = 3"));
    assert_string_equal(sh.text,
                        "select 1, 'a', (select 2 from u) from t where b = ?");
    assert_true(shape("select 1"));
    assert_int_equal(sh.n_literals, 0);
    assert_true(shape("with c(x) as (select 5) select x from c where x = 5"));
    assert_string_equal(sh.text,
                        "with c(x) as (select 5) select x from c where x = ?");

    /* ORDER BY 1 and GROUP BY 1 name a column; RETURNING names results. */
    assert_true(shape("select a, b from t where c = 4 order by 1 limit 3"));
    assert_string_equal(sh.text,
                        "select a, b from t where c = ? order by 1 limit 3");
    assert_true(shape("select a, count(*) from t where c = 4 group by 1"));
    assert_string_equal(sh.text,
                        "select a, count(*) from t where c = ? group by 1");
    assert_true(shape("insert into t values (5) returning a, 6"));
    assert_string_equal(sh.text, "insert into t values (?) returning a, 6");

    /* Every SELECT's result columns, at any depth; IS DISTINCT FROM is
     * not the FROM that ends them. */
    assert_true(shape("select * from (select 5, 'x', a + 1 from t) "
                      "where b = 6"));
    assert_string_equal(sh.text, "select * from (select 5, 'x', a + 1 from "
                                 "t) where b = ?");
    assert_true(shape("select * from t join (select 9) on 1"));
    assert_string_equal(sh.text, "select * from t join (select 9) on ?");
    assert_true(shape("select a is distinct from 5, 7 from t where c = 8"));
    assert_string_equal(sh.text,
                        "select a is distinct from 5, 7 from t where c = ?");
    assert_true(shape("select (select 2 from u where v = 3) from t where "
                      "(select 4) = 4"));
    assert_string_equal(sh.text, "select (select 2 from u where v = 3) from "
                                 "t where (select 4) = ?");

    /* Names that contain keywords are not keywords. */
    assert_true(shape("select a from t where orderly = 2 and fromage = 3"));
    assert_int_equal(sh.n_literals, 2);
}

static void test_not_shaped(void **state)
{
    (void)state;
    assert_false(shape("create table t(a int default 5)"));
    assert_false(shape("pragma cache_size = 100"));
    assert_false(shape("begin"));
    assert_false(shape("  -- only a comment"));
    assert_false(shape(""));
    /* Parameters of their own: numbering would clash. */
    assert_false(shape("select a from t where b = ?"));
    assert_false(shape("select a from t where b = :b"));
    assert_false(shape("select a from t where b = $1"));
    assert_false(shape("select a from t where b = @b"));

    /* Too many literals or too long: not worth a cache slot. */
    char big[SQL_SHAPE_TEXT_MAX + 64] = "insert into t values (0";
    for (int i = 1; i <= SQL_SHAPE_LITERALS_MAX; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), ",%d", i);
    strcat(big, ")");
    assert_false(shape(big));
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    memcpy(big, "select", 6);
    assert_false(shape(big));
}

static void test_comments_and_quoted_names(void **state)
{
    (void)state;
    assert_true(shape("update t /* 5 */ set \"a 1\" = 2 -- 3\n where [b 4] "
                      "= 'x'"));
    assert_string_equal(sh.text, "update t /* 5 */ set \"a 1\" = ? -- 3\n "
                                 "where [b 4] = ?");
    assert_int_equal(sh.n_literals, 2);
    assert_int_equal(sh.literals[0].value, 2);
    assert_int_equal(sh.literals[1].kind, SQL_LITERAL_TEXT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pgbench_statements),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers_that_stay),
        cmocka_unit_test(test_literals_that_name_or_pick_columns),
        cmocka_unit_test(test_not_shaped),
        cmocka_unit_test(test_comments_and_quoted_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
