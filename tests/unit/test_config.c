/* The cluster file parser (common/config.c): defaults, and errors that
 * name the line and the fix. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "config.h"
#include "hx_err.h"

#define NODES \
    "storage id=s1 az=a addr=127.0.0.1:1 data=/d/1\n" \
    "compute id=w1 addr=127.0.0.1:9\n"

static hx_cluster_cfg cfg; /* large: not on the stack */

static void test_pg_pages_default_is_10_gib(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(hx_cluster_parse("cluster page_size=4096\n" NODES, &cfg,
                                      err, sizeof err), HX_OK);
    assert_int_equal(cfg.pg_pages, 2621440);
    assert_int_equal(hx_cluster_parse("cluster page_size=65536\n" NODES, &cfg,
                                      err, sizeof err), HX_OK);
    assert_int_equal(cfg.pg_pages, 163840);
    assert_int_equal(hx_cluster_parse("cluster pg_pages=32 page_size=1024\n"
                                      NODES, &cfg, err, sizeof err), HX_OK);
    assert_int_equal(cfg.pg_pages, 32);
}

static void test_cache_mib(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(hx_cluster_parse(NODES, &cfg, err, sizeof err), HX_OK);
    assert_int_equal(hx_cluster_compute(&cfg, "w1")->cache_mib,
                     HX_COMPUTE_CACHE_MIB_DEFAULT);
    assert_int_equal(hx_cluster_parse("compute id=w2 addr=h:1 cache_mib=64\n",
                                      &cfg, err, sizeof err), HX_OK);
    assert_int_equal(hx_cluster_compute(&cfg, "w2")->cache_mib, 64);
    assert_int_equal(hx_cluster_parse("\ncompute id=w2 addr=h:1 cache_mib=0\n",
                                      &cfg, err, sizeof err), HX_ERR_CONFIG);
    assert_non_null(strstr(err, "line 2"));
    assert_non_null(strstr(err, "cache_mib"));
}

/* A storage line's journal_mib: 64 by default, its own value when given,
 * an error naming the line and the key when out of range. */
static void test_journal_mib(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(hx_cluster_parse(NODES, &cfg, err, sizeof err), HX_OK);
    assert_int_equal(cfg.storage[0].journal_mib, HX_STORAGE_JOURNAL_MIB_DEFAULT);
    assert_int_equal(HX_STORAGE_JOURNAL_MIB_DEFAULT, 64);
    assert_int_equal(hx_cluster_parse("storage id=s1 az=a addr=h:1 data=/d "
                                      "journal_mib=4\n", &cfg, err,
                                      sizeof err), HX_OK);
    assert_int_equal(cfg.storage[0].journal_mib, 4);
    assert_int_equal(hx_cluster_parse("\n\nstorage id=s1 az=a addr=h:1 "
                                      "data=/d journal_mib=0\n", &cfg, err,
                                      sizeof err), HX_ERR_CONFIG);
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "journal_mib"));
}

/* A storage line's record_cache_mib: 128 by default, 0 allowed (no cache),
 * an error naming the key when out of range or not a number. */
static void test_record_cache_mib(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(hx_cluster_parse(NODES, &cfg, err, sizeof err), HX_OK);
    assert_int_equal(cfg.storage[0].record_cache_mib, 128);
    assert_int_equal(hx_cluster_parse("storage id=s1 az=a addr=h:1 data=/d "
                                      "record_cache_mib=0\n", &cfg, err,
                                      sizeof err), HX_OK);
    assert_int_equal(cfg.storage[0].record_cache_mib, 0);
    assert_int_equal(hx_cluster_parse("storage id=s1 az=a addr=h:1 data=/d "
                                      "record_cache_mib=70000\n", &cfg, err,
                                      sizeof err), HX_ERR_CONFIG);
    assert_non_null(strstr(err, "record_cache_mib"));
    assert_int_equal(hx_cluster_parse("storage id=s1 az=a addr=h:1 data=/d "
                                      "record_cache_mib=lots\n", &cfg, err,
                                      sizeof err), HX_ERR_CONFIG);
    assert_non_null(strstr(err, "0 to 65536"));
}

/* wire_compression: zstd by default, off when the cluster line says so,
 * an error naming the values otherwise. */
static void test_wire_compression(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(hx_cluster_parse(NODES, &cfg, err, sizeof err), HX_OK);
    assert_true(cfg.wire_compression);
    assert_int_equal(hx_cluster_parse("cluster wire_compression=off\n" NODES,
                                      &cfg, err, sizeof err), HX_OK);
    assert_false(cfg.wire_compression);
    assert_int_equal(hx_cluster_parse("cluster wire_compression=zstd\n" NODES,
                                      &cfg, err, sizeof err), HX_OK);
    assert_true(cfg.wire_compression);
    assert_int_equal(hx_cluster_parse("cluster wire_compression=lz4\n" NODES,
                                      &cfg, err, sizeof err), HX_ERR_CONFIG);
    assert_non_null(strstr(err, "line 1"));
    assert_non_null(strstr(err, "zstd or off"));
}

/* A compute line's metrics=: optional (none by default), kept as given,
 * an error naming the line and HOST:PORT when it is not an address. */
static void test_compute_metrics(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(hx_cluster_parse(NODES, &cfg, err, sizeof err), HX_OK);
    assert_string_equal(hx_cluster_compute(&cfg, "w1")->metrics_addr, "");
    assert_int_equal(hx_cluster_parse("compute id=w2 addr=h:1 "
                                      "metrics=127.0.0.1:7200\n", &cfg, err,
                                      sizeof err), HX_OK);
    assert_string_equal(hx_cluster_compute(&cfg, "w2")->metrics_addr,
                        "127.0.0.1:7200");
    assert_int_equal(hx_cluster_parse("\ncompute id=w2 addr=h:1 "
                                      "metrics=127.0.0.1\n", &cfg, err,
                                      sizeof err), HX_ERR_CONFIG);
    assert_non_null(strstr(err, "line 2"));
    assert_non_null(strstr(err, "metrics '127.0.0.1' is not HOST:PORT"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg_pages_default_is_10_gib),
        cmocka_unit_test(test_cache_mib),
        cmocka_unit_test(test_journal_mib),
        cmocka_unit_test(test_record_cache_mib),
        cmocka_unit_test(test_wire_compression),
        cmocka_unit_test(test_compute_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
