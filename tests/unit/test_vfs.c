/* Unit tests for compute-node/hx_vfs.c over compute-node/mem_page_store.c.
 * Requirements: DESIGN.md "Compute nodes" (a transaction's page writes
 * become one MTR; commits are pipelined, the reply waits for VDL) and
 * "Implementation notes" (commit boundary, writer's page cache).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "hx_err.h"
#include "hx_vfs.h"
#include "mem_page_store.h"

#define PS 4096u
#define ROW_BYTES 1000

/* ---- sqlite3_log capture -------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[8192];

static void log_cb(void *arg, int code, const char *msg)
{
    (void)arg;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(log_text);
    if (n + strlen(msg) + 32 < sizeof(log_text))
        snprintf(log_text + n, sizeof(log_text) - n, "[%d] %s\n", code, msg);
    pthread_mutex_unlock(&log_mu);
}

static int log_contains(const char *s)
{
    pthread_mutex_lock(&log_mu);
    int found = strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_mu);
    return found;
}

static void log_reset(void)
{
    pthread_mutex_lock(&log_mu);
    log_text[0] = '\0';
    pthread_mutex_unlock(&log_mu);
}

/* ---- fixture: one mem store, one VFS ---------------------------------- */

typedef struct {
    hx_mem_page_store *ms;
    hx_page_store iface;
    char name[32];
} fx;

static int vfs_counter;

static void fx_new_vfs(fx *f, char *name, size_t n)
{
    snprintf(name, n, "hxtest%d", ++vfs_counter);
    assert_int_equal(hx_vfs_register(name, &f->iface, 0), HX_OK);
}

static int fx_setup_ps(void **state, uint32_t ps)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(mem_page_store_create(ps, &f->ms), HX_OK);
    f->iface = mem_page_store_iface(f->ms);
    fx_new_vfs(f, f->name, sizeof(f->name));
    log_reset();
    *state = f;
    return 0;
}

static int fx_setup(void **state)
{
    return fx_setup_ps(state, PS);
}

static int fx_setup_1k(void **state)
{
    return fx_setup_ps(state, 1024);
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    assert_int_equal(hx_vfs_unregister(f->name), HX_OK);
    mem_page_store_destroy(f->ms);
    free(f);
    return 0;
}

static hx_vfs_stats stats_of(const char *name)
{
    hx_vfs_stats st;
    assert_int_equal(hx_vfs_get_stats(name, &st), HX_OK);
    return st;
}

/* Waits (bounded) until one connection sleeps on the writer lock. */
static void await_writer_waiter(const char *name)
{
    for (int i = 0; i < 5000 && stats_of(name).writer_waiters == 0; i++)
        usleep(1000);
    assert_int_equal(stats_of(name).writer_waiters, 1);
}

/* ---- SQL helpers ------------------------------------------------------ */

static sqlite3 *open_db(const char *vfs)
{
    sqlite3 *db = NULL;
    assert_int_equal(hx_vfs_open_db(vfs, &db), HX_OK);
    assert_non_null(db);
    return db;
}

static int exec_rc(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        print_message("  sql \"%.60s\": %s\n", sql, err ? err : "?");
    sqlite3_free(err);
    return rc;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    assert_int_equal(exec_rc(db, sql), SQLITE_OK);
}

static long long query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void row_bytes(long long id, uint8_t *b)
{
    for (int k = 0; k < ROW_BYTES; k++)
        b[k] = (uint8_t)(id * 31 + k * 7 + (k >> 5));
}

/* Inserts rows [from, to) of table t(id, v) in the current transaction. */
static void insert_rows(sqlite3 *db, long long from, long long to)
{
    sqlite3_stmt *st = NULL;
    uint8_t b[ROW_BYTES];
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t(id, v) VALUES(?, ?)",
                                        -1, &st, NULL), SQLITE_OK);
    for (long long id = from; id < to; id++) {
        row_bytes(id, b);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_blob(st, 2, b, ROW_BYTES, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
}

/* Checks that t holds exactly rows [0, n) with their contents. */
static void check_rows(sqlite3 *db, long long n)
{
    sqlite3_stmt *st = NULL;
    uint8_t b[ROW_BYTES];
    long long next = 0;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT id, v FROM t ORDER BY id",
                                        -1, &st, NULL), SQLITE_OK);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        assert_int_equal(id, next);
        row_bytes(id, b);
        assert_int_equal(sqlite3_column_bytes(st, 1), ROW_BYTES);
        assert_memory_equal(sqlite3_column_blob(st, 1), b, ROW_BYTES);
        next++;
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_finalize(st);
    assert_int_equal(next, n);
    sqlite3_stmt *ic = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &ic,
                                        NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(ic), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(ic, 0), "ok");
    sqlite3_finalize(ic);
}

static void create_table(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
}

/* Rows of ROW_BYTES in about 2 MB. */
#define BIG_ROWS 2100

/* ---- tests ------------------------------------------------------------ */

/* DESIGN.md "Compute nodes": one SQL transaction = one MTR, last = CPL. */
static void test_transaction_ships_one_mtr(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    assert_int_equal(mem_page_store_mtr_count(f->ms), 0); /* pragmas: none */

    exec_ok(db, "BEGIN");
    create_table(db);
    insert_rows(db, 0, 100);
    assert_int_equal(mem_page_store_mtr_count(f->ms), 0);
    exec_ok(db, "COMMIT");

    assert_int_equal(mem_page_store_mtr_count(f->ms), 1);
    size_t n = mem_page_store_record_count(f->ms);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        mem_page_record r;
        assert_int_equal(mem_page_store_record_at(f->ms, i, &r), HX_OK);
        assert_int_equal(r.is_cpl, i + 1 == n);
        if (i > 0) {
            mem_page_record prev;
            mem_page_store_record_at(f->ms, i - 1, &prev);
            assert_true(prev.page_no < r.page_no); /* ascending pages */
        }
    }
    mem_page_record last;
    mem_page_store_record_at(f->ms, n - 1, &last);
    assert_int_equal(hx_vfs_last_commit_lsn(db), last.lsn);
    hx_vfs_stats st = stats_of(f->name);
    assert_int_equal(st.mtrs, 1);
    assert_int_equal(st.records, n);
    check_rows(db, 100);

    /* a small update ships byte patches, not images */
    size_t before = mem_page_store_record_count(f->ms);
    /* changes no byte but page 1's change counters: ships nothing */
    exec_ok(db, "UPDATE t SET id = id WHERE id = 5");
    assert_int_equal(mem_page_store_mtr_count(f->ms), 1);
    exec_ok(db, "INSERT INTO t(id, v) VALUES(100, x'01')");
    exec_ok(db, "DELETE FROM t WHERE id = 100");
    assert_int_equal(mem_page_store_mtr_count(f->ms), 1 + 2);
    for (size_t i = before; i < mem_page_store_record_count(f->ms); i++) {
        mem_page_record r;
        mem_page_store_record_at(f->ms, i, &r);
        assert_int_not_equal(r.page_no, 0); /* page 1: counters only */
    }
    for (size_t i = before; i < mem_page_store_record_count(f->ms); i++) {
        mem_page_record r;
        mem_page_store_record_at(f->ms, i, &r);
        assert_int_equal(r.is_image, 0);
        assert_true(r.payload_bytes < PS / 4);
    }
    sqlite3_close(db);
}

/* What SQLite sends at the commit boundary, for each synchronous setting
 * (reported by the test; the VFS commits on COMMIT_PHASETWO only). */
static void test_commit_boundary_observed(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    static const char *modes[] = {"OFF", "NORMAL", "FULL", "EXTRA"};
    for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", modes[m]);
        exec_ok(db, sql);
        hx_vfs_stats a = stats_of(f->name);
        snprintf(sql, sizeof(sql), "INSERT INTO t(id, v) VALUES(%zu, 'x')", m);
        exec_ok(db, sql);
        hx_vfs_stats b = stats_of(f->name);
        print_message("synchronous=%-6s commit: FCNTL_SYNC %llu, xSync %llu, "
                      "COMMIT_PHASETWO %llu, MTRs %llu\n", modes[m],
                      (unsigned long long)(b.fcntl_syncs - a.fcntl_syncs),
                      (unsigned long long)(b.xsyncs - a.xsyncs),
                      (unsigned long long)(b.phase_twos - a.phase_twos),
                      (unsigned long long)(b.mtrs - a.mtrs));
        assert_int_equal(b.phase_twos - a.phase_twos, 1);
        assert_int_equal(b.fcntl_syncs - a.fcntl_syncs, 1);
        assert_int_equal(b.mtrs - a.mtrs, 1);
        assert_int_equal(b.xsyncs - a.xsyncs, m == 0 ? 0 : 1);
    }
    sqlite3_close(db);
}

static void test_rollback_ships_nothing(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    insert_rows(db, 0, 10);
    size_t mtrs = mem_page_store_mtr_count(f->ms);
    uint64_t lsn = hx_vfs_last_commit_lsn(db);

    /* small: SQLite never wrote to the file */
    exec_ok(db, "BEGIN");
    insert_rows(db, 10, 50);
    exec_ok(db, "ROLLBACK");
    assert_int_equal(mem_page_store_mtr_count(f->ms), mtrs);

    /* large: pages were spilled into the buffer, then restored */
    exec_ok(db, "PRAGMA cache_size=10");
    hx_vfs_stats a = stats_of(f->name);
    exec_ok(db, "BEGIN");
    insert_rows(db, 10, BIG_ROWS);
    exec_ok(db, "ROLLBACK");
    hx_vfs_stats b = stats_of(f->name);
    print_message("rollback after spill: FCNTL_SYNC %llu, xSync %llu, "
                  "COMMIT_PHASETWO %llu, buffers dropped %llu\n",
                  (unsigned long long)(b.fcntl_syncs - a.fcntl_syncs),
                  (unsigned long long)(b.xsyncs - a.xsyncs),
                  (unsigned long long)(b.phase_twos - a.phase_twos),
                  (unsigned long long)(b.discards - a.discards));
    assert_int_equal(b.phase_twos, a.phase_twos);
    assert_int_equal(b.discards - a.discards, 1);
    assert_int_equal(mem_page_store_mtr_count(f->ms), mtrs);
    assert_int_equal(hx_vfs_last_commit_lsn(db), lsn);
    check_rows(db, 10);

    /* closing with an open transaction ships nothing either */
    exec_ok(db, "BEGIN");
    insert_rows(db, 10, BIG_ROWS);
    sqlite3_close(db);
    assert_int_equal(mem_page_store_mtr_count(f->ms), mtrs);
    db = open_db(f->name);
    check_rows(db, 10);
    sqlite3_close(db);
}

/* A transaction larger than SQLite's page cache still ships once. */
static void test_big_transaction_one_mtr(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    exec_ok(db, "PRAGMA cache_size=10");
    exec_ok(db, "BEGIN");
    create_table(db);
    insert_rows(db, 0, BIG_ROWS);
    assert_int_equal(mem_page_store_record_count(f->ms), 0);
    exec_ok(db, "COMMIT");
    assert_int_equal(mem_page_store_mtr_count(f->ms), 1);
    size_t n = mem_page_store_record_count(f->ms);
    print_message("2 MB transaction: one MTR of %zu records\n", n);
    assert_true(n > 2 * 1024 * 1024 / PS);
    check_rows(db, BIG_ROWS);
    assert_true(query_int(db, "PRAGMA page_count") * PS >= 2 * 1024 * 1024);
    sqlite3_close(db);
}

/* A compute restart: a fresh VFS (empty cache) over the same storage. */
static void test_restart_reads_committed(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    exec_ok(db, "PRAGMA cache_size=10");
    create_table(db);
    exec_ok(db, "BEGIN");
    insert_rows(db, 0, BIG_ROWS / 2);
    exec_ok(db, "COMMIT");
    exec_ok(db, "BEGIN");
    insert_rows(db, BIG_ROWS / 2, BIG_ROWS);
    exec_ok(db, "DELETE FROM t WHERE id >= 1000");
    exec_ok(db, "COMMIT");
    long long pages = query_int(db, "PRAGMA page_count");
    sqlite3_close(db);
    assert_int_equal(hx_vfs_unregister(f->name), HX_OK);

    fx_new_vfs(f, f->name, sizeof(f->name));
    db = open_db(f->name);
    check_rows(db, 1000);
    assert_int_equal(query_int(db, "PRAGMA page_count"), pages);
    hx_vfs_stats st = stats_of(f->name);
    assert_true(st.cache_misses > 0);
    assert_int_equal(st.mtrs, 0);
    /* and it can keep writing */
    insert_rows(db, 1000, 1010);
    check_rows(db, 1010);
    sqlite3_close(db);
}

/* A crash before the commit boundary exposes nothing: storage never saw
 * the transaction, even after SQLite spilled pages. */
static void test_crash_before_commit_exposes_nothing(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    insert_rows(db, 0, 10);
    size_t records = mem_page_store_record_count(f->ms);

    exec_ok(db, "PRAGMA cache_size=10");
    exec_ok(db, "BEGIN");
    insert_rows(db, 10, BIG_ROWS);
    exec_ok(db, "UPDATE t SET v = x'00' WHERE id < 10");
    assert_int_equal(mem_page_store_record_count(f->ms), records);

    /* The compute node dies here: all that survives is storage. A new
     * compute node (fresh VFS) recovers (truncate above VDL) and reads. */
    mem_page_store_crash(f->ms);
    char name2[32];
    fx_new_vfs(f, name2, sizeof(name2));
    sqlite3 *db2 = open_db(name2);
    check_rows(db2, 10);
    sqlite3_close(db2);
    assert_int_equal(hx_vfs_unregister(name2), HX_OK);

    /* (the dead node's connection is only cleaned up) */
    sqlite3_close(db);
    assert_int_equal(mem_page_store_record_count(f->ms), records);
}

static void test_last_commit_lsn_increases(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    assert_int_equal(hx_vfs_last_commit_lsn(db), 0);
    create_table(db);
    uint64_t prev = hx_vfs_last_commit_lsn(db);
    assert_true(prev > 0);
    for (int i = 0; i < 20; i++) {
        char sql[80];
        snprintf(sql, sizeof(sql), "INSERT INTO t(id, v) VALUES(%d, 'r')", i);
        exec_ok(db, sql);
        uint64_t lsn = hx_vfs_last_commit_lsn(db);
        assert_true(lsn > prev);
        assert_int_equal(lsn, mem_page_store_last_lsn(f->ms));
        prev = lsn;
    }
    /* read-only work does not move it; its read LSN covers the commits */
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 20);
    assert_int_equal(hx_vfs_last_commit_lsn(db), prev);
    assert_true(hx_vfs_read_lsn(db) >= prev);
    assert_int_equal(query_int(db, "PRAGMA hexad_last_commit_lsn"),
                     (long long)prev);
    /* not a hexad connection */
    sqlite3 *mem = NULL;
    assert_int_equal(sqlite3_open(":memory:", &mem), SQLITE_OK);
    assert_int_equal(hx_vfs_last_commit_lsn(mem), 0);
    sqlite3_close(mem);
    sqlite3_close(db);
}

typedef struct {
    hx_mem_page_store *ms;
    uint64_t lsn;
} release_arg;

static void *release_later(void *p)
{
    release_arg *a = p;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    mem_page_store_set_durable_lsn(a->ms, a->lsn);
    return NULL;
}

/* DESIGN.md "Compute nodes": commits are pipelined; the commit returns
 * before VDL covers it and the reply waits for wait_durable. */
static void test_commit_is_pipelined(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    mem_page_store_set_manual_durability(f->ms, 1);
    uint64_t vdl = mem_page_store_vdl(f->ms);

    insert_rows(db, 0, 5);
    uint64_t lsn = hx_vfs_last_commit_lsn(db);
    assert_true(lsn > vdl);
    assert_int_equal(mem_page_store_vdl(f->ms), vdl);
    assert_int_equal(f->iface.wait_durable(f->iface.ctx, lsn, 20),
                     HX_ERR_TIMEOUT);

    /* visible to this process at once; a reader's read LSN covers it */
    sqlite3 *rd = open_db(f->name);
    assert_int_equal(query_int(rd, "SELECT count(*) FROM t"), 5);
    assert_true(hx_vfs_read_lsn(rd) >= lsn);
    sqlite3_close(rd);

    pthread_t th;
    release_arg arg = {f->ms, lsn};
    assert_int_equal(pthread_create(&th, NULL, release_later, &arg), 0);
    assert_int_equal(f->iface.wait_durable(f->iface.ctx, lsn, 5000), HX_OK);
    pthread_join(th, NULL);
    assert_true(mem_page_store_vdl(f->ms) >= lsn);
    sqlite3_close(db);
}

/* Issue 4 / DESIGN.md "Compute nodes": a read-only transaction's reply
 * waits until VDL covers the LSN it read at. hx_vfs_reply_lsn says what
 * to wait for: a reader that saw a commit which is not durable yet must
 * wait for it; a write that changed nothing still waits for what it read;
 * once VDL covers it the wait returns at once. */
static void test_reply_lsn_covers_what_was_read(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    insert_rows(db, 0, 3);
    mem_page_store_set_manual_durability(f->ms, 1);
    uint64_t vdl = mem_page_store_vdl(f->ms);

    sqlite3 *rd = open_db(f->name);
    assert_int_equal(query_int(rd, "SELECT count(*) FROM t"), 3);
    assert_true(hx_vfs_reply_lsn(rd) <= vdl); /* read only durable data */
    assert_int_equal(f->iface.wait_durable(f->iface.ctx,
                                           hx_vfs_reply_lsn(rd), 0), HX_OK);

    insert_rows(db, 3, 5); /* shipped, not durable */
    uint64_t lsn = hx_vfs_last_commit_lsn(db);
    assert_true(lsn > vdl);
    assert_int_equal(hx_vfs_reply_lsn(db), lsn);

    /* A read-only transaction that sees the new rows depends on them. */
    exec_ok(rd, "BEGIN");
    assert_int_equal(query_int(rd, "SELECT count(*) FROM t"), 5);
    assert_int_equal(hx_vfs_last_commit_lsn(rd), 0); /* it wrote nothing */
    assert_int_equal(hx_vfs_reply_lsn(rd), lsn);
    exec_ok(rd, "COMMIT");
    assert_int_equal(f->iface.wait_durable(f->iface.ctx,
                                           hx_vfs_reply_lsn(rd), 20),
                     HX_ERR_TIMEOUT);

    /* A write transaction that changed no page ships nothing; its reply
     * still depends on the commit it read. */
    size_t mtrs = mem_page_store_mtr_count(f->ms);
    exec_ok(rd, "UPDATE t SET id = id WHERE id < 0");
    assert_int_equal(mem_page_store_mtr_count(f->ms), mtrs);
    assert_int_equal(hx_vfs_reply_lsn(rd), lsn);

    mem_page_store_set_durable_lsn(f->ms, lsn);
    assert_int_equal(f->iface.wait_durable(f->iface.ctx,
                                           hx_vfs_reply_lsn(rd), 0), HX_OK);
    assert_int_equal(hx_vfs_reply_lsn(NULL), 0);
    sqlite3_close(rd);
    sqlite3_close(db);
}

/* The writer's cache keeps an image until storage can give it back
 * (DESIGN.md "The writer's page cache"). */
static void test_cache_keeps_undurable_pages(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    assert_int_equal(hx_vfs_set_cache_pages(f->name, 8), HX_OK);
    mem_page_store_set_manual_durability(f->ms, 1);

    exec_ok(db, "BEGIN");
    insert_rows(db, 0, 300);
    exec_ok(db, "COMMIT");
    uint64_t lsn = hx_vfs_last_commit_lsn(db);
    hx_vfs_stats st = stats_of(f->name);
    assert_true(st.cache_pages > 60); /* none may leave: not durable */

    /* a new connection (empty SQLite cache) reads through the VFS cache */
    sqlite3 *rd = open_db(f->name);
    check_rows(rd, 300);
    sqlite3_close(rd);

    mem_page_store_set_durable_lsn(f->ms, lsn);
    assert_int_equal(hx_vfs_set_cache_pages(f->name, 8), HX_OK); /* evicts */
    st = stats_of(f->name);
    assert_true(st.cache_pages <= 8);
    assert_true(st.evictions > 0);
    rd = open_db(f->name);
    check_rows(rd, 300); /* from storage at the read point */
    sqlite3_close(rd);

    /* more commits while the cache is tiny and durability lags */
    exec_ok(db, "BEGIN");
    exec_ok(db, "DELETE FROM t WHERE id >= 200");
    exec_ok(db, "COMMIT");
    rd = open_db(f->name);
    check_rows(rd, 200);
    sqlite3_close(rd);
    mem_page_store_set_manual_durability(f->ms, 0);
    sqlite3_close(db);
}

/* An acknowledged commit survives; an unacknowledged one may be lost, and
 * a restarted node then sees the state before it, never a partial one. */
static void test_undurable_commit_lost_whole(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    insert_rows(db, 0, 10);
    mem_page_store_set_manual_durability(f->ms, 1);
    exec_ok(db, "BEGIN");
    insert_rows(db, 10, 400);
    exec_ok(db, "COMMIT");
    uint64_t lsn = hx_vfs_last_commit_lsn(db);
    assert_int_equal(f->iface.wait_durable(f->iface.ctx, lsn, 0),
                     HX_ERR_TIMEOUT); /* reply still held */
    sqlite3_close(db);

    mem_page_store_crash(f->ms); /* storage recovery truncates above VDL */
    char name2[32];
    fx_new_vfs(f, name2, sizeof(name2));
    sqlite3 *db2 = open_db(name2);
    check_rows(db2, 10);
    insert_rows(db2, 10, 20);
    check_rows(db2, 20);
    sqlite3_close(db2);
    assert_int_equal(hx_vfs_unregister(name2), HX_OK);
    mem_page_store_set_manual_durability(f->ms, 0);
}

/* Two connections of one process: the reader never sees a partial
 * transaction, and the in-memory locks serialize correctly. */
typedef struct {
    const char *vfs;
    int iterations;
    int errors;
    int reads;
} worker_arg;

static void *writer_main(void *p)
{
    worker_arg *a = p;
    sqlite3 *db = NULL;
    if (hx_vfs_open_db(a->vfs, &db) != HX_OK) {
        a->errors++;
        return NULL;
    }
    for (int i = 0; i < a->iterations; i++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "BEGIN IMMEDIATE; UPDATE acct SET bal = bal - %d WHERE id = %d;"
                 " UPDATE acct SET bal = bal + %d WHERE id = %d; COMMIT;",
                 i % 7 + 1, i % 10, i % 7 + 1, (i * 3 + 1) % 10);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            a->errors++;
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        }
    }
    sqlite3_close(db);
    return NULL;
}

static void *reader_main(void *p)
{
    worker_arg *a = p;
    sqlite3 *db = NULL;
    if (hx_vfs_open_db(a->vfs, &db) != HX_OK) {
        a->errors++;
        return NULL;
    }
    for (int i = 0; i < a->iterations; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT sum(bal), count(*) FROM acct", -1,
                               &st, NULL) != SQLITE_OK ||
            sqlite3_step(st) != SQLITE_ROW) {
            a->errors++;
        } else if (sqlite3_column_int64(st, 0) != 1000 ||
                   sqlite3_column_int64(st, 1) != 10) {
            a->errors++;
        } else {
            a->reads++;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return NULL;
}

/* Ten accounts of 100 each: transfers (writer_main) conserve the sum. */
static void create_accounts(sqlite3 *db)
{
    exec_ok(db, "CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER)");
    exec_ok(db, "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 "
                "FROM c WHERE i < 9) INSERT INTO acct SELECT i, 100 FROM c");
}

static void test_writer_and_reader_threads(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_accounts(db);
    sqlite3_close(db);

    worker_arg w = {f->name, 300, 0, 0}, r1 = {f->name, 600, 0, 0},
               r2 = {f->name, 600, 0, 0};
    pthread_t tw, t1, t2;
    assert_int_equal(pthread_create(&tw, NULL, writer_main, &w), 0);
    assert_int_equal(pthread_create(&t1, NULL, reader_main, &r1), 0);
    assert_int_equal(pthread_create(&t2, NULL, reader_main, &r2), 0);
    pthread_join(tw, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(w.errors, 0);
    assert_int_equal(r1.errors, 0);
    assert_int_equal(r2.errors, 0);
    assert_int_equal(r1.reads + r2.reads, 1200);
    /* CREATE, INSERT and one MTR per transfer */
    assert_int_equal(mem_page_store_mtr_count(f->ms), 2 + 300);
}

/* Eight writers and a reader contend for the writer lock: a release wakes
 * one waiting writer (vfs_busy_wait), and still every transaction commits
 * within the busy timeout, none is lost, and money is conserved. */
static void test_many_writers_wake_one(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_accounts(db);
    enum { WRITERS = 8, EACH = 60 };
    worker_arg w[WRITERS], r = {f->name, 300, 0, 0};
    pthread_t tw[WRITERS], tr;
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (worker_arg){f->name, EACH, 0, 0};
        assert_int_equal(pthread_create(&tw[i], NULL, writer_main, &w[i]), 0);
    }
    assert_int_equal(pthread_create(&tr, NULL, reader_main, &r), 0);
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(tw[i], NULL);
        assert_int_equal(w[i].errors, 0);
    }
    pthread_join(tr, NULL);
    assert_int_equal(r.errors, 0);
    assert_int_equal(query_int(db, "SELECT sum(bal) FROM acct"), 1000);
    assert_int_equal(mem_page_store_mtr_count(f->ms), 2 + WRITERS * EACH);
    sqlite3_close(db);
}

/* HX_MTR_MORE_COMING (page_store.h): a commit made while another
 * connection waits for the writer lock says so to the store, so the
 * volume client may boxcar it with the next; a commit nobody waits behind
 * does not, so a lone session is never held. */
typedef struct {
    const char *vfs;
    int rc;
} one_update_arg;

static void *one_update_main(void *p)
{
    one_update_arg *a = p;
    sqlite3 *db = NULL;
    a->rc = SQLITE_CANTOPEN;
    if (hx_vfs_open_db(a->vfs, &db) != HX_OK)
        return NULL;
    a->rc = sqlite3_exec(db, "UPDATE acct SET bal = bal + 1 WHERE id = 1; "
                             "UPDATE acct SET bal = bal - 1 WHERE id = 2",
                         NULL, NULL, NULL);
    sqlite3_close(db);
    return NULL;
}

static unsigned last_mtr_flags(hx_mem_page_store *ms)
{
    mem_page_record r;
    size_t n = mem_page_store_record_count(ms);
    assert_true(n > 0);
    assert_int_equal(mem_page_store_record_at(ms, n - 1, &r), HX_OK);
    assert_true(r.is_cpl);
    return r.mtr_flags;
}

static void test_commit_says_more_are_coming(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_accounts(db);
    exec_ok(db, "BEGIN; UPDATE acct SET bal = bal - 1 WHERE id = 3; "
                "UPDATE acct SET bal = bal + 1 WHERE id = 4; COMMIT");
    assert_int_equal(last_mtr_flags(f->ms), 0);
    assert_int_equal(stats_of(f->name).mtrs_more_coming, 0);

    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "UPDATE acct SET bal = bal - 5 WHERE id = 0");
    one_update_arg a = {f->name, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, one_update_main, &a), 0);
    await_writer_waiter(f->name);
    exec_ok(db, "UPDATE acct SET bal = bal + 5 WHERE id = 9; COMMIT");
    size_t mine = mem_page_store_mtr_count(f->ms);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, SQLITE_OK);

    /* Ours was followed; the other two (autocommit), made alone, were not. */
    mem_page_record r;
    size_t n = mem_page_store_record_count(f->ms);
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(mem_page_store_record_at(f->ms, i, &r), HX_OK);
        if (r.is_cpl && ++seen == mine)
            assert_int_equal(r.mtr_flags, HX_MTR_MORE_COMING);
    }
    assert_int_equal(mem_page_store_mtr_count(f->ms), mine + 2);
    assert_int_equal(last_mtr_flags(f->ms), 0);
    hx_vfs_stats st = stats_of(f->name);
    assert_int_equal(st.mtrs_more_coming, 1);
    assert_int_equal(st.writer_waiters, 0);
    assert_int_equal(query_int(db, "SELECT sum(bal) FROM acct"), 1000);
    assert_int_equal(query_int(db, "SELECT bal FROM acct WHERE id = 1"), 101);
    sqlite3_close(db);
}

/* hx_vfs_intend_write: a connection about to write waits for the writer
 * lock as a writer-lock waiter even when it is refused SHARED (the writer
 * is committing, in PENDING behind a reader): so it is woken alone when
 * the writer leaves, and the writer's commit says another is coming. */
typedef struct {
    sqlite3 *db;       /* NULL: open one on vfs */
    const char *vfs;
    const char *sql;
    int intend;
    int rc;
} exec_arg;

static void *exec_main(void *p)
{
    exec_arg *a = p;
    sqlite3 *db = a->db;
    a->rc = SQLITE_CANTOPEN;
    if (db == NULL && hx_vfs_open_db(a->vfs, &db) != HX_OK)
        return NULL;
    hx_vfs_intend_write(db, a->intend);
    a->rc = sqlite3_exec(db, a->sql, NULL, NULL, NULL);
    if (a->db == NULL)
        sqlite3_close(db);
    return NULL;
}

static void test_intending_writer_waits_for_writer(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    sqlite3 *reader = open_db(f->name);
    sqlite3 *probe = open_db(f->name);
    /* Opened before the writer commits: opening reads the database. */
    sqlite3 *intending = open_db(f->name);
    create_accounts(db);
    sqlite3_busy_timeout(probe, 0);

    exec_ok(reader, "BEGIN");
    assert_int_equal(query_int(reader, "SELECT bal FROM acct WHERE id = 1"),
                     100);
    /* The writer's COMMIT holds PENDING until the reader ends. */
    exec_arg w = {NULL, f->name, "BEGIN; UPDATE acct SET bal = bal - 7 "
                           "WHERE id = 1; UPDATE acct SET bal = bal + 7 "
                           "WHERE id = 2; COMMIT", 0, -1};
    pthread_t wt, it;
    assert_int_equal(pthread_create(&wt, NULL, exec_main, &w), 0);
    int pending = 0;
    for (int i = 0; i < 5000 && !pending; i++) {
        pending = exec_rc(probe, "SELECT count(*) FROM acct") == SQLITE_BUSY;
        if (!pending)
            usleep(1000);
    }
    assert_true(pending);

    exec_arg in = {intending, f->name,
                   "UPDATE acct SET bal = bal + 1 WHERE id = 3; "
                   "UPDATE acct SET bal = bal - 1 WHERE id = 4", 1, -1};
    assert_int_equal(pthread_create(&it, NULL, exec_main, &in), 0);
    await_writer_waiter(f->name);

    exec_ok(reader, "COMMIT");
    pthread_join(wt, NULL);
    pthread_join(it, NULL);
    assert_int_equal(w.rc, SQLITE_OK);
    assert_int_equal(in.rc, SQLITE_OK);
    assert_int_equal(stats_of(f->name).mtrs_more_coming, 1);
    assert_int_equal(query_int(db, "SELECT bal FROM acct WHERE id = 1"), 93);
    assert_int_equal(query_int(db, "SELECT bal FROM acct WHERE id = 3"), 101);
    assert_int_equal(query_int(db, "SELECT sum(bal) FROM acct"), 1000);
    sqlite3_close(intending);
    sqlite3_close(probe);
    sqlite3_close(reader);
    sqlite3_close(db);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The writer lock's statistics (hx_vfs_stats; README.md "Metrics",
 * hexad_compute_writer_lock_*): one connection holds the lock while
 * another sleeps on it, then hands it over. Both acquisitions count; the
 * hold covers at least the holder's transaction; the waiter's sleep and
 * the hand-off gap are above zero and within the times they could span. */
static void test_writer_lock_stats(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_accounts(db);
    hx_vfs_stats s0 = stats_of(f->name);
    assert_int_equal(s0.writer_acquisitions, 2); /* CREATE, INSERT */
    assert_true(s0.writer_held_ns > 0);
    assert_int_equal(s0.writer_wait_ns, 0);    /* nobody contended */
    assert_int_equal(s0.writer_handoff_ns, 0);

    exec_ok(db, "BEGIN IMMEDIATE");
    uint64_t t_begin = mono_ns();
    assert_int_equal(stats_of(f->name).writer_acquisitions, 3);
    one_update_arg a = {f->name, -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, one_update_main, &a), 0);
    await_writer_waiter(f->name);
    exec_ok(db, "UPDATE acct SET bal = bal + 5 WHERE id = 9");
    uint64_t t_commit = mono_ns();
    exec_ok(db, "UPDATE acct SET bal = bal - 5 WHERE id = 8; COMMIT");
    pthread_join(th, NULL);
    uint64_t t_joined = mono_ns();
    assert_int_equal(a.rc, SQLITE_OK);

    hx_vfs_stats s1 = stats_of(f->name);
    /* ours, then the other's two autocommit UPDATEs */
    assert_int_equal(s1.writer_acquisitions, 5);
    assert_true(s1.writer_held_ns - s0.writer_held_ns >= t_commit - t_begin);
    assert_true(s1.writer_held_ns - s0.writer_held_ns <= t_joined - t_begin);
    assert_true(s1.writer_wait_ns > 0);
    assert_true(s1.writer_wait_ns <= t_joined - t_begin);
    assert_true(s1.writer_handoff_ns > 0);
    assert_true(s1.writer_handoff_ns <= t_joined - t_commit);
    assert_int_equal(s1.writer_waiters, 0);
    print_message("  writer lock: %llu acquisitions, held %llu ns, waited "
                  "%llu ns, hand-off %llu ns\n",
                  (unsigned long long)s1.writer_acquisitions,
                  (unsigned long long)s1.writer_held_ns,
                  (unsigned long long)s1.writer_wait_ns,
                  (unsigned long long)s1.writer_handoff_ns);

    /* Uncontended again: no more waiting or hand-off time. */
    exec_ok(db, "UPDATE acct SET bal = bal + 0 WHERE id = 0");
    hx_vfs_stats s2 = stats_of(f->name);
    assert_int_equal(s2.writer_acquisitions, 6);
    assert_int_equal(s2.writer_wait_ns, s1.writer_wait_ns);
    assert_int_equal(s2.writer_handoff_ns, s1.writer_handoff_ns);
    assert_int_equal(query_int(db, "SELECT sum(bal) FROM acct"), 1000);
    sqlite3_close(db);
}

/* Runs sql as pg_session does: bracketed by hx_vfs_intend_write when the
 * statement may write. Returns SQLite's result. */
static int exec_intending(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    int writes = !sqlite3_stmt_readonly(st);
    if (writes)
        hx_vfs_intend_write(db, 1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    }
    if (writes)
        hx_vfs_intend_write(db, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The intent changes only how a refused connection waits, never what is
 * refused: a write to a TEMP table needs just SHARED on main, and gets it
 * while another connection holds the writer lock. And a refusal the
 * statement saw without waiting (a read transaction asking for the
 * writer lock gets BUSY at once) is not left counted as a waiter: the
 * lock sitting free afterwards is no hand-off. */
static void test_write_intent_refuses_nothing_more(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    sqlite3 *other = open_db(f->name);
    create_accounts(db);
    exec_ok(other, "CREATE TEMP TABLE tt(id, bal)");
    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "UPDATE acct SET bal = bal + 1 WHERE id = 1");
    assert_int_equal(exec_intending(other, "INSERT INTO temp.tt SELECT id, "
                                           "bal FROM acct"), SQLITE_OK);
    assert_int_equal(query_int(other, "SELECT count(*) FROM temp.tt"), 10);
    exec_ok(db, "COMMIT");

    exec_ok(other, "BEGIN");
    assert_int_equal(query_int(other, "SELECT bal FROM acct WHERE id = 1"),
                     101);
    exec_ok(db, "BEGIN IMMEDIATE");
    assert_int_equal(exec_intending(other, "UPDATE acct SET bal = 0 WHERE "
                                           "id = 2") & 0xff, SQLITE_BUSY);
    exec_ok(other, "ROLLBACK");
    exec_ok(db, "UPDATE acct SET bal = bal - 1 WHERE id = 1; COMMIT");
    hx_vfs_stats a = stats_of(f->name);
    exec_ok(db, "UPDATE acct SET bal = bal + 0 WHERE id = 1");
    hx_vfs_stats b = stats_of(f->name);
    assert_int_equal(b.writer_handoff_ns, a.writer_handoff_ns);
    assert_int_equal(query_int(db, "SELECT sum(bal) FROM acct"), 1000);
    sqlite3_close(other);
    sqlite3_close(db);
}

/* hx_vfs_cancel (hx_vfs.h; pg_session.h on_cancel: a PostgreSQL
 * CancelRequest ends the running statement, a lock wait included). SQLite
 * does not look at sqlite3_interrupt's flag between busy-handler retries,
 * so without the VFS's own flag a cancelled waiter sleeps out
 * HX_VFS_BUSY_TIMEOUT_MS. Far below it: */
#define CANCEL_BOUND_MS 1000

typedef struct {
    sqlite3 *db;
    const char *sql;
    int rc;
    uint64_t done_ns;   /* mono_ns() when the statement returned */
    atomic_int done;
} cancel_arg;

static void *cancel_exec_main(void *p)
{
    cancel_arg *a = p;
    a->rc = exec_intending(a->db, a->sql);
    a->done_ns = mono_ns();
    atomic_store(&a->done, 1);
    return NULL;
}

/* Cancels a's statement (asleep in the busy handler) and waits, polling
 * with a deadline, for it to return. Joins the thread either way (the busy
 * timeout bounds it) before failing, so nothing outlives the test. */
static void cancel_and_join(const char *vfs, cancel_arg *a, pthread_t th)
{
    uint64_t t_cancel = mono_ns();
    assert_int_equal(hx_vfs_cancel(vfs, a->db), HX_OK);
    uint64_t deadline = t_cancel + CANCEL_BOUND_MS * 1000000ull;
    while (!atomic_load(&a->done) && mono_ns() < deadline)
        usleep(1000);
    pthread_join(th, NULL);
    uint64_t took_ms = (a->done_ns - t_cancel) / 1000000u;
    if (took_ms >= CANCEL_BOUND_MS)
        fail_msg("the cancelled statement returned %llu ms after the "
                 "cancel (bound %d ms, busy timeout %d ms), rc %d",
                 (unsigned long long)took_ms, CANCEL_BOUND_MS,
                 HX_VFS_BUSY_TIMEOUT_MS, a->rc);
}

/* A connection asleep on the writer lock (another holds an open write
 * transaction): the cancel wakes it, its statement fails with SQLITE_BUSY,
 * and it neither sleeps on the lock nor wants it any more, so the holder's
 * release opens no hand-off gap. Once cleared it writes as before. */
static void test_cancel_ends_writer_wait(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    sqlite3 *other = open_db(f->name);
    create_accounts(db);
    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "UPDATE acct SET bal = bal - 5 WHERE id = 0");

    cancel_arg a = {other, "UPDATE acct SET bal = bal + 1 WHERE id = 3",
                    -1, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_exec_main, &a), 0);
    await_writer_waiter(f->name);
    assert_int_equal(stats_of(f->name).writer_wanted, 1);
    cancel_and_join(f->name, &a, th);
    assert_int_equal(a.rc & 0xff, SQLITE_BUSY);
    assert_true(hx_vfs_cancelled(other));
    hx_vfs_stats st = stats_of(f->name);
    assert_int_equal(st.writer_waiters, 0);
    assert_int_equal(st.writer_wanted, 0);

    /* Reads need no wait; the flag stays until cleared (pg_session: at
     * the next Query), and a cleared connection waits and writes. */
    assert_int_equal(query_int(other, "SELECT bal FROM acct WHERE id = 3"),
                     100);
    hx_vfs_cancel_clear(other);
    assert_false(hx_vfs_cancelled(other));
    exec_ok(db, "UPDATE acct SET bal = bal + 5 WHERE id = 9; COMMIT");
    assert_int_equal(stats_of(f->name).writer_handoff_ns,
                     st.writer_handoff_ns);
    assert_int_equal(exec_intending(other, "UPDATE acct SET bal = bal + 1 "
                                           "WHERE id = 3"), SQLITE_OK);
    assert_int_equal(query_int(db, "SELECT bal FROM acct WHERE id = 3"), 101);
    assert_int_equal(query_int(db, "SELECT sum(bal) FROM acct"), 1001);
    sqlite3_close(other);
    sqlite3_close(db);
}

/* A cancel that lands before the statement starts (sqlite3_interrupt is
 * then lost: SQLite clears its flag as a statement starts with none
 * running) still ends it, through the progress handler, and long before
 * it would finish; once cleared, the same statement runs to its end. */
#define COUNT_TO(n) "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 " \
                    "FROM c WHERE x < " #n ") SELECT count(*) FROM c"

static void test_cancel_before_statement_starts(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    assert_int_equal(hx_vfs_cancel(f->name, db), HX_OK);
    uint64_t t0 = mono_ns();
    assert_int_equal(exec_rc(db, COUNT_TO(10000000)), SQLITE_INTERRUPT);
    uint64_t took_ms = (mono_ns() - t0) / 1000000u;
    if (took_ms >= CANCEL_BOUND_MS)
        fail_msg("interrupted after %llu ms", (unsigned long long)took_ms);
    hx_vfs_cancel_clear(db);
    assert_int_equal(query_int(db, COUNT_TO(100000)), 100000);
    sqlite3_close(db);
}

/* The other busy wait: a COMMIT waiting in PENDING for a reader to leave
 * (on the VFS's unlocked condition). Cancelled, the COMMIT fails with
 * SQLITE_BUSY at once and the transaction can be rolled back. */
static void test_cancel_ends_commit_wait(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    sqlite3 *reader = open_db(f->name);
    /* Opened, and its schema read, before the COMMIT holds PENDING: both
     * need SHARED (a stale schema would read as "no such table"). */
    sqlite3 *probe = open_db(f->name);
    sqlite3_busy_timeout(probe, 0);
    create_accounts(db);
    assert_int_equal(query_int(probe, "SELECT count(*) FROM acct"), 10);
    exec_ok(reader, "BEGIN");
    assert_int_equal(query_int(reader, "SELECT bal FROM acct WHERE id = 1"),
                     100);
    exec_ok(db, "BEGIN; UPDATE acct SET bal = 0 WHERE id = 1");

    cancel_arg a = {db, "COMMIT", -1, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_exec_main, &a), 0);
    /* Polls, bounded, for the COMMIT to hold PENDING: new readers are
     * refused from then on. */
    int pending = 0;
    for (int i = 0; i < 5000 && !pending; i++) {
        pending = exec_rc(probe, "SELECT count(*) FROM acct") == SQLITE_BUSY;
        if (!pending)
            usleep(1000);
    }
    assert_true(pending);
    cancel_and_join(f->name, &a, th);
    assert_int_equal(a.rc & 0xff, SQLITE_BUSY);

    hx_vfs_cancel_clear(db);
    exec_ok(db, "ROLLBACK");
    exec_ok(reader, "COMMIT");
    assert_int_equal(query_int(probe, "SELECT bal FROM acct WHERE id = 1"),
                     100);
    assert_int_equal(stats_of(f->name).writer_waiters, 0);
    sqlite3_close(probe);
    sqlite3_close(reader);
    sqlite3_close(db);
}

/* Locks: an open read transaction keeps the writer from committing; it
 * commits once the reader ends, and the reader then sees the change. */
static void test_reader_blocks_commit(void **state)
{
    fx *f = *state;
    sqlite3 *w = open_db(f->name);
    sqlite3 *r = open_db(f->name);
    create_table(w);
    insert_rows(w, 0, 3);
    sqlite3_busy_timeout(w, 0);

    exec_ok(r, "BEGIN");
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 3);
    exec_ok(w, "BEGIN");
    insert_rows(w, 3, 4);
    assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_BUSY);
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 3);
    exec_ok(r, "COMMIT");
    exec_ok(w, "COMMIT");
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), 4);
    /* a second writer waits for the first */
    exec_ok(w, "BEGIN IMMEDIATE");
    sqlite3_busy_timeout(r, 0);
    assert_int_equal(sqlite3_exec(r, "BEGIN IMMEDIATE", NULL, NULL, NULL),
                     SQLITE_BUSY);
    exec_ok(w, "COMMIT");
    sqlite3_close(r);
    sqlite3_close(w);
}

static void test_page_size_mismatch_rejected(void **state)
{
    fx *f = *state; /* 1024-byte volume */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2("x", &db, SQLITE_OPEN_READWRITE |
                                     SQLITE_OPEN_CREATE, f->name), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=MEMORY");
    int rc = exec_rc(db, "CREATE TABLE t(a)"); /* 4096-byte pages */
    assert_int_equal(rc & 0xff, SQLITE_IOERR);
    assert_true(log_contains("the volume page size is 1024"));
    assert_int_equal(exec_rc(db, "PRAGMA page_size=4096"), SQLITE_ERROR);
    sqlite3_close(db);
    assert_int_equal(mem_page_store_mtr_count(f->ms), 0);

    db = open_db(f->name);
    assert_int_equal(query_int(db, "PRAGMA page_size"), 1024);
    create_table(db);
    insert_rows(db, 0, 50);
    check_rows(db, 50);
    sqlite3_close(db);
}

/* locking_mode=EXCLUSIVE never unlocks between transactions: a rollback
 * after a spill leaves the restored images in the buffer, which must diff
 * to nothing at the next commit. */
static void test_exclusive_locking_rollback(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    exec_ok(db, "PRAGMA locking_mode=EXCLUSIVE; PRAGMA cache_size=10");
    create_table(db);
    insert_rows(db, 0, 20);
    size_t records = mem_page_store_record_count(f->ms);
    exec_ok(db, "BEGIN");
    insert_rows(db, 20, BIG_ROWS);
    exec_ok(db, "ROLLBACK");
    assert_int_equal(mem_page_store_record_count(f->ms), records);
    check_rows(db, 20);
    insert_rows(db, 20, 21);
    /* page 1 and the one leaf that holds the new row */
    assert_true(mem_page_store_record_count(f->ms) - records <= 3);
    check_rows(db, 21);
    sqlite3_close(db);

    char name2[32];
    fx_new_vfs(f, name2, sizeof(name2));
    db = open_db(name2);
    check_rows(db, 21);
    sqlite3_close(db);
    assert_int_equal(hx_vfs_unregister(name2), HX_OK);
}

static void test_wal_refused(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    assert_int_equal(exec_rc(db, "PRAGMA journal_mode=WAL"), SQLITE_ERROR);
    exec_ok(db, "PRAGMA locking_mode=EXCLUSIVE");
    assert_int_equal(exec_rc(db, "PRAGMA journal_mode=wal"), SQLITE_ERROR);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 0);
    sqlite3_close(db);
}

/* Other rollback-journal modes keep their journal in memory too. */
static void test_journal_mode_delete_in_memory(void **state)
{
    fx *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2("jtest.db", &db, SQLITE_OPEN_READWRITE |
                                     SQLITE_OPEN_CREATE, f->name), SQLITE_OK);
    exec_ok(db, "PRAGMA journal_mode=DELETE; PRAGMA cache_size=10");
    create_table(db);
    exec_ok(db, "BEGIN");
    insert_rows(db, 0, 500);
    assert_int_equal(access("jtest.db-journal", F_OK), -1);
    exec_ok(db, "ROLLBACK");
    exec_ok(db, "BEGIN");
    insert_rows(db, 0, 500);
    exec_ok(db, "COMMIT");
    assert_int_equal(mem_page_store_mtr_count(f->ms), 2);
    check_rows(db, 500);
    /* temporary tables and statement journals go to the default VFS */
    exec_ok(db, "CREATE TEMP TABLE tt AS SELECT * FROM t");
    exec_ok(db, "BEGIN; UPDATE t SET v = x'02' WHERE id < 100; COMMIT");
    assert_int_equal(query_int(db, "SELECT count(*) FROM tt"), 500);
    assert_int_equal(mem_page_store_mtr_count(f->ms), 3);
    /* a write transaction that changes no byte ships nothing */
    exec_ok(db, "UPDATE t SET v = x'02' WHERE id < 100");
    assert_int_equal(mem_page_store_mtr_count(f->ms), 3);
    sqlite3_close(db);
    assert_int_equal(access("jtest.db", F_OK), -1);
    assert_int_equal(access("jtest.db-journal", F_OK), -1);
}

static void test_write_failure(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    insert_rows(db, 0, 5);

    /* back-pressure: nothing shipped, the next commit works */
    mem_page_store_fail_next_write(f->ms, HX_ERR_BUSY);
    assert_int_not_equal(exec_rc(db, "INSERT INTO t(id, v) VALUES(5, 'a')"),
                         SQLITE_OK);
    assert_int_equal(stats_of(f->name).failed, 0);
    check_rows(db, 5);
    insert_rows(db, 5, 6);
    check_rows(db, 6);

    /* an unknown outcome fails the volume until it is reopened */
    size_t mtrs = mem_page_store_mtr_count(f->ms);
    mem_page_store_fail_next_write(f->ms, HX_ERR_IO);
    assert_int_not_equal(exec_rc(db, "INSERT INTO t(id, v) VALUES(6, 'a')"),
                         SQLITE_OK);
    assert_int_equal(stats_of(f->name).failed, HX_ERR_IO);
    assert_int_not_equal(exec_rc(db, "INSERT INTO t(id, v) VALUES(6, 'a')"),
                         SQLITE_OK);
    assert_int_equal(mem_page_store_mtr_count(f->ms), mtrs);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), 6);
    sqlite3_close(db);
    assert_int_equal(hx_vfs_unregister(f->name), HX_OK);
    fx_new_vfs(f, f->name, sizeof(f->name));
    db = open_db(f->name);
    insert_rows(db, 6, 7);
    check_rows(db, 7);
    sqlite3_close(db);
}

/* VACUUM shrinks the database: xTruncate, then one commit. */
static void test_vacuum_shrinks(void **state)
{
    fx *f = *state;
    sqlite3 *db = open_db(f->name);
    create_table(db);
    exec_ok(db, "BEGIN");
    insert_rows(db, 0, 800);
    exec_ok(db, "COMMIT");
    long long big = query_int(db, "PRAGMA page_count");
    exec_ok(db, "DELETE FROM t WHERE id >= 100");
    size_t mtrs = mem_page_store_mtr_count(f->ms);
    exec_ok(db, "VACUUM");
    assert_int_equal(mem_page_store_mtr_count(f->ms), mtrs + 1);
    long long small = query_int(db, "PRAGMA page_count");
    assert_true(small < big / 4);
    check_rows(db, 100);
    sqlite3_close(db);

    char name2[32];
    fx_new_vfs(f, name2, sizeof(name2));
    db = open_db(name2);
    assert_int_equal(query_int(db, "PRAGMA page_count"), small);
    check_rows(db, 100);
    insert_rows(db, 100, 900); /* grows over the old, stale pages */
    check_rows(db, 900);
    sqlite3_close(db);
    assert_int_equal(hx_vfs_unregister(name2), HX_OK);
}

static void test_register_rejects_bad_arguments(void **state)
{
    fx *f = *state;
    hx_page_store bad = f->iface;
    bad.page_size = 3000;
    assert_int_equal(hx_vfs_register("hxbad", &bad, 0), HX_ERR_INVALID);
    assert_int_equal(hx_vfs_register(f->name, &f->iface, 0), HX_ERR_INVALID);
    assert_int_equal(hx_vfs_register(NULL, &f->iface, 0), HX_ERR_INVALID);
    assert_int_equal(hx_vfs_unregister("unix"), HX_ERR_NOT_FOUND);
    sqlite3 *db = open_db(f->name);
    assert_int_equal(hx_vfs_unregister(f->name), HX_ERR_BUSY);
    sqlite3_close(db);
    sqlite3 *x = NULL;
    assert_int_equal(hx_vfs_open_db("no-such-vfs", &x), HX_ERR_NOT_FOUND);
    assert_null(x);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    sqlite3_config(SQLITE_CONFIG_LOG, log_cb, NULL);
    if (getenv("HX_TEST_FILTER"))
        cmocka_set_test_filter(getenv("HX_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        T(test_transaction_ships_one_mtr),
        T(test_commit_boundary_observed),
        T(test_rollback_ships_nothing),
        T(test_big_transaction_one_mtr),
        T(test_restart_reads_committed),
        T(test_crash_before_commit_exposes_nothing),
        T(test_last_commit_lsn_increases),
        T(test_commit_is_pipelined),
        T(test_reply_lsn_covers_what_was_read),
        T(test_cache_keeps_undurable_pages),
        T(test_undurable_commit_lost_whole),
        T(test_many_writers_wake_one),
        T(test_writer_and_reader_threads),
        T(test_commit_says_more_are_coming),
        T(test_intending_writer_waits_for_writer),
        T(test_write_intent_refuses_nothing_more),
        T(test_writer_lock_stats),
        T(test_cancel_ends_writer_wait),
        T(test_cancel_ends_commit_wait),
        T(test_cancel_before_statement_starts),
        T(test_reader_blocks_commit),
        cmocka_unit_test_setup_teardown(test_page_size_mismatch_rejected,
                                        fx_setup_1k, fx_teardown),
        T(test_exclusive_locking_rollback),
        T(test_wal_refused),
        T(test_journal_mode_delete_in_memory),
        T(test_write_failure),
        T(test_vacuum_shrinks),
        T(test_register_rejects_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
