/* Unit tests for the PostgreSQL protocol session (compute-node/pg_session.c)
 * against a real in-memory SQLite.
 *
 * Requirement: DESIGN (compute node) "serve the PostgreSQL protocol so psql,
 * pgbench and libpq work unchanged"; PostgreSQL docs "Message Flow" (simple
 * query, transaction status in ReadyForQuery) and "Appendix A. Error
 * Codes". Replies are parsed here with a test-side reader, independent of
 * the codec's builders.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
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
#include "pg_session.h"
#include "pgwire.h"

#define TEST_PID 4321
#define TEST_KEY 0x5eed

/* ---- Fixture ---------------------------------------------------------- */

typedef struct fx {
    pg_session *s;
    pgw_buf out;
    size_t read_pos;       /* reader cursor into out */
    int open_calls, close_calls;
    int db_open_rc;        /* what db_open returns */
    char db_user[64], db_name[64];
    int hook_calls;
    int hook_writes;       /* of which for write transactions */
    int hook_rc;           /* what before_reply returns */
    const char *hook_why;  /* detail before_reply writes, or NULL */
    size_t hook_out_len;   /* out.len when the hook last ran */
    int cancel_calls;
    int32_t cancel_pid, cancel_key;
    int last_rc;           /* last pg_session_feed() result */
    const char *vfs;       /* NULL: :memory:; else hx_vfs_open_db on it */
    bool hook_cancels;     /* before_reply cancels the session (on vfs) */
} fx;

static int fx_db_open(void *arg, const char *user, const char *database,
                      sqlite3 **db)
{
    fx *f = arg;
    f->open_calls++;
    snprintf(f->db_user, sizeof(f->db_user), "%s", user);
    snprintf(f->db_name, sizeof(f->db_name), "%s", database);
    if (f->db_open_rc)
        return f->db_open_rc;
    if (f->vfs)
        return hx_vfs_open_db(f->vfs, db);
    if (sqlite3_open(":memory:", db) != SQLITE_OK)
        return HX_ERR_IO;
    return 0;
}

static void fx_db_close(void *arg, sqlite3 *db)
{
    fx *f = arg;
    f->close_calls++;
    /* Refused while any statement is left unfinalized (the cache's). */
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int fx_before_reply(void *arg, pg_session *s, bool wrote, char *why,
                           size_t why_len)
{
    fx *f = arg;
    assert_non_null(pg_session_db(s));
    assert_true(why_len > 0);
    if (f->hook_why)
        snprintf(why, why_len, "%s", f->hook_why);
    f->hook_calls++;
    f->hook_writes += wrote;
    f->hook_out_len = f->out.len;
    if (f->hook_cancels)
        assert_int_equal(hx_vfs_cancel(f->vfs, pg_session_db(s)), HX_OK);
    return f->hook_rc;
}

static void fx_on_cancel(void *arg, int32_t pid, int32_t key)
{
    fx *f = arg;
    f->cancel_calls++;
    f->cancel_pid = pid;
    f->cancel_key = key;
}

static fx *fx_new(const char *password)
{
    fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    pg_session_opts o = {
        .db_open = fx_db_open,
        .db_close = fx_db_close,
        .before_reply = fx_before_reply,
        .on_cancel = fx_on_cancel,
        .arg = f,
        .password = password,
        .backend_pid = TEST_PID,
        .secret_key = TEST_KEY,
    };
    f->s = pg_session_create(&o);
    assert_non_null(f->s);
    pgw_buf_init(&f->out, 0);
    return f;
}

static void fx_free(fx *f)
{
    pg_session_destroy(f->s);
    pgw_buf_free(&f->out);
    free(f);
}

/* ---- Frontend message writers ----------------------------------------- */

typedef struct bytes {
    uint8_t *d;
    size_t n, cap;
} bytes;

static void b_raw(bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->d = realloc(b->d, b->cap);
        assert_non_null(b->d);
    }
    if (n)
        memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void b_u8(bytes *b, uint8_t v) { b_raw(b, &v, 1); }
static void b_u32(bytes *b, uint32_t v)
{
    uint8_t be[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
                      (uint8_t)(v >> 8), (uint8_t)v };
    b_raw(b, be, 4);
}
static void b_str(bytes *b, const char *s) { b_raw(b, s, strlen(s) + 1); }
static void b_patch_u32(bytes *b, size_t at, uint32_t v)
{
    b->d[at] = (uint8_t)(v >> 24); b->d[at + 1] = (uint8_t)(v >> 16);
    b->d[at + 2] = (uint8_t)(v >> 8); b->d[at + 3] = (uint8_t)v;
}

static void w_startup_v(bytes *b, uint32_t version, const char *user,
                        const char *db)
{
    size_t at = b->n;
    b_u32(b, 0);
    b_u32(b, version);
    b_str(b, "user");
    b_str(b, user);
    if (db) {
        b_str(b, "database");
        b_str(b, db);
    }
    b_str(b, "application_name");
    b_str(b, "unit");
    b_u8(b, 0);
    b_patch_u32(b, at, (uint32_t)(b->n - at));
}

static void w_startup(bytes *b, const char *user, const char *db)
{
    w_startup_v(b, PGW_PROTOCOL_3_0, user, db);
}

static void w_typed(bytes *b, uint8_t type, const void *body, size_t n)
{
    b_u8(b, type);
    b_u32(b, (uint32_t)(n + 4));
    b_raw(b, body, n);
}

static void w_query(bytes *b, const char *sql)
{
    w_typed(b, 'Q', sql, strlen(sql) + 1);
}

/* ---- Feeding ---------------------------------------------------------- */

/* Feeds all of b at once; asserts everything was consumed unless the
 * session closed. Returns the feed result. */
static int feed(fx *f, bytes *b)
{
    size_t used = 0;
    f->last_rc = pg_session_feed(f->s, b->d, b->n, &used, &f->out);
    if (f->last_rc == 0)
        assert_int_equal(used, b->n);
    free(b->d);
    memset(b, 0, sizeof(*b));
    return f->last_rc;
}

static int feed_query(fx *f, const char *sql)
{
    bytes b = { 0 };
    w_query(&b, sql);
    return feed(f, &b);
}

/* ---- Backend message reader ------------------------------------------- */

typedef struct bmsg {
    uint8_t type;
    const uint8_t *body;
    size_t len;
} bmsg;

#define MSGS_MAX 512

typedef struct msgs {
    size_t n;
    bmsg m[MSGS_MAX];
    char types[MSGS_MAX + 1]; /* the type bytes as a string */
} msgs;

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Reads every message appended since the last call. A bare 'N' byte (the
 * answer to SSLRequest) is read as type 'n' with no body when raw_n. */
static msgs *read_new(fx *f, bool raw_n)
{
    static msgs ms;
    memset(&ms, 0, sizeof(ms));
    size_t off = f->read_pos;
    const pgw_buf *b = &f->out;
    while (off < b->len) {
        assert_true(ms.n < MSGS_MAX);
        if (raw_n && b->data[off] == 'N') {
            raw_n = false;
            ms.m[ms.n].type = 'n';
            ms.types[ms.n++] = 'n';
            off++;
            continue;
        }
        assert_true(b->len - off >= 5);
        uint32_t l = rd_u32(b->data + off + 1);
        assert_true(l >= 4 && b->len - off - 1 >= l);
        ms.m[ms.n].type = b->data[off];
        ms.m[ms.n].body = b->data + off + 5;
        ms.m[ms.n].len = l - 4;
        ms.types[ms.n] = (char)b->data[off];
        ms.n++;
        off += 1 + l;
    }
    f->read_pos = off;
    return &ms;
}

static msgs *expect(fx *f, const char *types)
{
    msgs *ms = read_new(f, false);
    if (strcmp(ms->types, types) != 0)
        fail_msg("reply types \"%s\", want \"%s\"", ms->types, types);
    return ms;
}

/* ErrorResponse/NoticeResponse field, or NULL. */
static const char *field(const bmsg *m, char code)
{
    const char *p = (const char *)m->body;
    const char *end = p + m->len;
    while (p < end && *p) {
        if (*p == code)
            return p + 1;
        p += strlen(p) + 1;
    }
    return NULL;
}

static const char *tag(const bmsg *m)
{
    assert_int_equal(m->type, 'C');
    return (const char *)m->body;
}

static char rfq(const bmsg *m)
{
    assert_int_equal(m->type, 'Z');
    assert_int_equal(m->len, 1);
    return (char)m->body[0];
}

/* Column i of a DataRow as a string (static), or NULL for SQL NULL. */
static const char *col(const bmsg *m, int i)
{
    static char v[256];
    assert_int_equal(m->type, 'D');
    const uint8_t *p = m->body;
    int n = rd_u16(p);
    assert_true(i < n);
    p += 2;
    for (int k = 0;; k++) {
        int32_t l = (int32_t)rd_u32(p);
        p += 4;
        if (k == i) {
            if (l < 0)
                return NULL;
            assert_true((size_t)l < sizeof(v));
            memcpy(v, p, (size_t)l);
            v[l] = 0;
            return v;
        }
        if (l > 0)
            p += l;
    }
}

/* Field i of a RowDescription: name and type OID. */
static uint32_t desc_oid(const bmsg *m, int i, const char **name)
{
    assert_int_equal(m->type, 'T');
    const uint8_t *p = m->body + 2;
    for (int k = 0;; k++) {
        const char *nm = (const char *)p;
        p += strlen(nm) + 1;
        if (k == i) {
            if (name)
                *name = nm;
            return rd_u32(p + 6);
        }
        p += 18;
    }
}

/* Session after a trust startup, reader positioned after the greeting.
 * vfs: NULL for an in-memory SQLite, else a hexad VFS to open. */
static fx *connected_on(const char *vfs)
{
    fx *f = fx_new(NULL);
    f->vfs = vfs;
    bytes b = { 0 };
    w_startup(&b, "alice", "db1");
    assert_int_equal(feed(f, &b), 0);
    msgs *ms = read_new(f, false);
    assert_true(ms->n > 0);
    assert_int_equal(rfq(&ms->m[ms->n - 1]), 'I');
    return f;
}

static fx *connected(void)
{
    return connected_on(NULL);
}

/* ---- Startup and authentication --------------------------------------- */

static void test_startup_trust(void **state)
{
    (void)state;
    fx *f = fx_new(NULL);
    assert_int_equal(pg_session_state(f->s), PG_SESSION_STARTUP);
    bytes b = { 0 };
    w_startup(&b, "alice", NULL);
    assert_int_equal(feed(f, &b), 0);
    msgs *ms = expect(f, "RSSSSSSSSSSSKZ");
    assert_int_equal(rd_u32(ms->m[0].body), 0); /* AuthenticationOk */

    const char *want[][2] = {
        { "server_version", "15.0 (hexad)" }, { "server_encoding", "UTF8" },
        { "client_encoding", "UTF8" }, { "DateStyle", "ISO" },
        { "integer_datetimes", "on" }, { "standard_conforming_strings", "on" },
        { "application_name", "unit" }, { "session_authorization", "alice" },
    };
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
        bool found = false;
        for (size_t i = 1; i < ms->n - 2; i++) {
            const char *name = (const char *)ms->m[i].body;
            if (strcmp(name, want[w][0]) == 0) {
                assert_string_equal(name + strlen(name) + 1, want[w][1]);
                found = true;
            }
        }
        if (!found)
            fail_msg("missing ParameterStatus %s", want[w][0]);
    }
    const bmsg *k = &ms->m[ms->n - 2];
    assert_int_equal(rd_u32(k->body), TEST_PID);
    assert_int_equal(rd_u32(k->body + 4), TEST_KEY);
    assert_int_equal(rfq(&ms->m[ms->n - 1]), 'I');

    assert_int_equal(pg_session_state(f->s), PG_SESSION_READY);
    assert_int_equal(f->open_calls, 1);
    assert_string_equal(f->db_user, "alice");
    assert_string_equal(f->db_name, "alice"); /* database defaults to user */
    assert_string_equal(pg_session_user(f->s), "alice");
    fx_free(f);
}

static void test_ssl_and_gss_refused_then_startup(void **state)
{
    (void)state;
    fx *f = fx_new(NULL);
    bytes b = { 0 };
    b_u32(&b, 8);
    b_u32(&b, PGW_GSSENC_REQUEST_CODE);
    assert_int_equal(feed(f, &b), 0);
    assert_int_equal(f->out.len, 1);
    assert_int_equal(f->out.data[0], 'N');
    f->read_pos = 1;
    b_u32(&b, 8);
    b_u32(&b, PGW_SSL_REQUEST_CODE);
    w_startup(&b, "u", "d");
    assert_int_equal(feed(f, &b), 0);
    msgs *ms = read_new(f, true);
    assert_int_equal(ms->types[0], 'n');
    assert_int_equal(ms->types[1], 'R');
    assert_int_equal(ms->types[ms->n - 1], 'Z');

    /* A second SSLRequest on a fresh session after one refusal is fatal. */
    fx *g = fx_new(NULL);
    b_u32(&b, 8);
    b_u32(&b, PGW_SSL_REQUEST_CODE);
    b_u32(&b, 8);
    b_u32(&b, PGW_SSL_REQUEST_CODE);
    assert_int_equal(feed(g, &b), PG_SESSION_CLOSE);
    fx_free(f);
    fx_free(g);
}

static void test_password_success(void **state)
{
    (void)state;
    fx *f = fx_new("s3cret");
    bytes b = { 0 };
    w_startup(&b, "bob", "db");
    assert_int_equal(feed(f, &b), 0);
    msgs *ms = expect(f, "R");
    assert_int_equal(rd_u32(ms->m[0].body), 3); /* cleartext */
    assert_int_equal(pg_session_state(f->s), PG_SESSION_AUTH);
    assert_int_equal(f->open_calls, 0);
    assert_null(pg_session_db(f->s));

    w_typed(&b, 'p', "s3cret", 7);
    assert_int_equal(feed(f, &b), 0);
    ms = expect(f, "RSSSSSSSSSSSKZ");
    assert_int_equal(rd_u32(ms->m[0].body), 0);
    assert_int_equal(pg_session_state(f->s), PG_SESSION_READY);
    fx_free(f);
}

static void test_password_failure(void **state)
{
    (void)state;
    fx *f = fx_new("s3cret");
    bytes b = { 0 };
    w_startup(&b, "bob", "db");
    w_typed(&b, 'p', "s3creT", 7);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    msgs *ms = expect(f, "RE");
    assert_string_equal(field(&ms->m[1], 'S'), "FATAL");
    assert_string_equal(field(&ms->m[1], 'C'), "28P01");
    assert_string_equal(field(&ms->m[1], 'M'),
                        "password authentication failed for user \"bob\"");
    assert_int_equal(pg_session_state(f->s), PG_SESSION_CLOSED);
    assert_int_equal(f->open_calls, 0);

    /* Closed sessions consume nothing. */
    w_query(&b, "select 1");
    size_t used = 7;
    assert_int_equal(pg_session_feed(f->s, b.d, b.n, &used, &f->out),
                     PG_SESSION_CLOSE);
    assert_int_equal(used, 0);
    free(b.d);

    /* A query instead of the password is a protocol violation. */
    fx *g = fx_new("pw");
    bytes c = { 0 };
    w_startup(&c, "bob", "db");
    w_query(&c, "select 1");
    assert_int_equal(feed(g, &c), PG_SESSION_CLOSE);
    ms = expect(g, "RE");
    assert_string_equal(field(&ms->m[1], 'C'), "08P01");
    fx_free(f);
    fx_free(g);
}

static void test_database_open_failure(void **state)
{
    (void)state;
    fx *f = fx_new(NULL);
    f->db_open_rc = HX_ERR_NOT_FOUND;
    bytes b = { 0 };
    w_startup(&b, "u", "nosuch");
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    msgs *ms = expect(f, "E");
    assert_string_equal(field(&ms->m[0], 'S'), "FATAL");
    assert_string_equal(field(&ms->m[0], 'C'), "3D000");
    assert_string_equal(field(&ms->m[0], 'M'),
                        "database \"nosuch\" does not exist");
    fx_free(f);
}

static void test_startup_errors(void **state)
{
    (void)state;
    /* Protocol 2.0: FATAL 0A000. */
    fx *f = fx_new(NULL);
    bytes b = { 0 };
    w_startup_v(&b, 2u << 16, "u", NULL);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    msgs *ms = expect(f, "E");
    assert_string_equal(field(&ms->m[0], 'C'), "0A000");
    fx_free(f);

    /* Length < 8: FATAL 08P01. */
    f = fx_new(NULL);
    b_u32(&b, 4);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    ms = expect(f, "E");
    assert_string_equal(field(&ms->m[0], 'S'), "FATAL");
    assert_string_equal(field(&ms->m[0], 'C'), "08P01");
    fx_free(f);

    /* No user. */
    f = fx_new(NULL);
    b_u32(&b, 9);
    b_u32(&b, PGW_PROTOCOL_3_0);
    b_u8(&b, 0);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    ms = expect(f, "E");
    assert_string_equal(field(&ms->m[0], 'C'), "28000");
    fx_free(f);
}

static void test_protocol_3_2_negotiated_down(void **state)
{
    (void)state;
    fx *f = fx_new(NULL);
    bytes b = { 0 };
    w_startup_v(&b, 3u << 16 | 2, "u", NULL);
    assert_int_equal(feed(f, &b), 0);
    msgs *ms = read_new(f, false);
    assert_int_equal(ms->types[0], 'v');
    assert_int_equal(rd_u32(ms->m[0].body), 0);     /* newest minor: 0 */
    assert_int_equal(rd_u32(ms->m[0].body + 4), 0); /* no _pq_ options */
    assert_int_equal(ms->types[1], 'R');
    assert_int_equal(ms->types[ms->n - 1], 'Z');
    fx_free(f);
}

static void test_cancel_request(void **state)
{
    (void)state;
    fx *f = fx_new(NULL);
    bytes b = { 0 };
    b_u32(&b, 16);
    b_u32(&b, PGW_CANCEL_REQUEST_CODE);
    b_u32(&b, 99);
    b_u32(&b, 12345);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    assert_int_equal(f->out.len, 0); /* no reply to a cancel */
    assert_int_equal(f->cancel_calls, 1);
    assert_int_equal(f->cancel_pid, 99);
    assert_int_equal(f->cancel_key, 12345);
    fx_free(f);
}

static void test_terminate(void **state)
{
    (void)state;
    fx *f = connected();
    bytes b = { 0 };
    w_typed(&b, 'X', NULL, 0);
    w_query(&b, "select 1"); /* after Terminate: never run */
    size_t used = 0;
    assert_int_equal(pg_session_feed(f->s, b.d, b.n, &used, &f->out),
                     PG_SESSION_CLOSE);
    assert_int_equal(used, 5);
    free(b.d);
    expect(f, "");
    assert_int_equal(pg_session_state(f->s), PG_SESSION_CLOSED);
    fx_free(f);
    /* destroy gave the handle back */
}

static void test_destroy_closes_db(void **state)
{
    (void)state;
    fx *f = connected();
    pg_session_destroy(f->s);
    f->s = NULL;
    assert_int_equal(f->close_calls, 1);
    pgw_buf_free(&f->out);
    free(f);
    pg_session_destroy(NULL);
}

/* ---- Simple query flow ------------------------------------------------ */

static void test_multi_statement_query_and_tags(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int primary key, b text);"
                  "insert into t values (1,'x'),(2,NULL);"
                  "select a, b from t order by a;"
                  "update t set b = 'y' where a = 1;"
                  "delete from t where a = 2;"
                  "create unique index ti on t(b);"
                  "drop index ti;"
                  "drop table t");
    msgs *ms = expect(f, "CCTDDCCCCCCZ");
    assert_string_equal(tag(&ms->m[0]), "CREATE TABLE");
    assert_string_equal(tag(&ms->m[1]), "INSERT 0 2");
    const char *name;
    assert_int_equal(desc_oid(&ms->m[2], 0, &name), PGW_OID_INT8);
    assert_string_equal(name, "a");
    assert_int_equal(desc_oid(&ms->m[2], 1, &name), PGW_OID_TEXT);
    assert_string_equal(name, "b");
    assert_string_equal(col(&ms->m[3], 0), "1");
    assert_string_equal(col(&ms->m[3], 1), "x");
    assert_string_equal(col(&ms->m[4], 0), "2");
    assert_null(col(&ms->m[4], 1));
    assert_string_equal(tag(&ms->m[5]), "SELECT 2");
    assert_string_equal(tag(&ms->m[6]), "UPDATE 1");
    assert_string_equal(tag(&ms->m[7]), "DELETE 1");
    assert_string_equal(tag(&ms->m[8]), "CREATE INDEX");
    assert_string_equal(tag(&ms->m[9]), "DROP INDEX");
    assert_string_equal(tag(&ms->m[10]), "DROP TABLE");
    assert_int_equal(rfq(&ms->m[11]), 'I');
    fx_free(f);
}

static void test_value_types(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "select 1 as i, 1.5 as r, 'x' as t, x'00ff' as b, "
                  "null as n, 0.1 + 0.2 as r2, 1e300 * 1e300 as inf");
    msgs *ms = expect(f, "TDCZ");
    uint32_t want[] = { PGW_OID_INT8, PGW_OID_FLOAT8, PGW_OID_TEXT,
                        PGW_OID_BYTEA, PGW_OID_TEXT, PGW_OID_FLOAT8,
                        PGW_OID_FLOAT8 };
    for (int i = 0; i < 7; i++)
        assert_int_equal(desc_oid(&ms->m[0], i, NULL), want[i]);
    assert_string_equal(col(&ms->m[1], 0), "1");
    assert_string_equal(col(&ms->m[1], 1), "1.5");
    assert_string_equal(col(&ms->m[1], 2), "x");
    assert_string_equal(col(&ms->m[1], 3), "\\x00ff");
    assert_null(col(&ms->m[1], 4));
    assert_string_equal(col(&ms->m[1], 5), "0.30000000000000004");
    assert_string_equal(col(&ms->m[1], 6), "Infinity");
    assert_string_equal(tag(&ms->m[2]), "SELECT 1");

    /* Declared types win over values; no rows still describes columns. */
    feed_query(f, "create table ty(i integer, r real, t varchar(10), b blob);"
                  "select * from ty");
    ms = expect(f, "CTCZ");
    uint32_t decl[] = { PGW_OID_INT8, PGW_OID_FLOAT8, PGW_OID_TEXT,
                        PGW_OID_BYTEA };
    for (int i = 0; i < 4; i++)
        assert_int_equal(desc_oid(&ms->m[1], i, NULL), decl[i]);
    assert_string_equal(tag(&ms->m[2]), "SELECT 0");
    fx_free(f);
}

static void test_empty_query(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "");
    msgs *ms = expect(f, "IZ");
    assert_int_equal(rfq(&ms->m[1]), 'I');
    feed_query(f, "  ; ;\n -- only a comment\n ;");
    expect(f, "IZ");
    fx_free(f);
}

static void test_error_stops_query_string(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "select 1; selec 2; select 3");
    msgs *ms = expect(f, "TDCEZ");
    assert_string_equal(field(&ms->m[3], 'S'), "ERROR");
    assert_string_equal(field(&ms->m[3], 'C'), "42601");
    assert_int_equal(rfq(&ms->m[4]), 'I');
    fx_free(f);
}

static void test_sqlstate_mapping(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "pragma foreign_keys = on;"
                  "create table p(id int primary key);"
                  "create table c(id int not null references p(id), "
                  "v int check (v > 0) unique)");
    read_new(f, false);
    const struct {
        const char *sql, *state;
    } cases[] = {
        { "selec 1", "42601" },
        { "select 1::int", "42601" },
        { "select * from nosuch", "42P01" },
        { "select nosuch from p", "42703" },
        { "insert into p values (1); insert into p values (1)", "23505" },
        { "insert into c values (NULL, 1)", "23502" },
        { "insert into c values (7, 1)", "23503" },
        { "insert into c values (1, -1)", "23514" },
        { "insert into c values (1, 5); insert into c values (1, 5)", "23505" },
        { "create table p(x)", "42P07" },
        { "select nosuchfn(1)", "42883" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        feed_query(f, cases[i].sql);
        msgs *ms = read_new(f, false);
        assert_true(ms->n >= 2);
        const bmsg *e = &ms->m[ms->n - 2];
        if (e->type != 'E')
            fail_msg("%s: no error, types %s", cases[i].sql, ms->types);
        if (strcmp(field(e, 'C'), cases[i].state) != 0)
            fail_msg("%s: SQLSTATE %s (%s), want %s", cases[i].sql,
                     field(e, 'C'), field(e, 'M'), cases[i].state);
        assert_int_equal(rfq(&ms->m[ms->n - 1]), 'I');
    }
    fx_free(f);
}

static void test_pg_catalog_query_clear_error(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "SELECT c.relname FROM pg_catalog.pg_class c "
                  "WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$'");
    msgs *ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "42P01");
    assert_non_null(strstr(field(&ms->m[0], 'M'), "pg_catalog"));
    assert_non_null(field(&ms->m[0], 'D')); /* SQLite's own message */
    assert_non_null(field(&ms->m[0], 'H'));

    /* Only compile errors are recast: a constraint error stays 23502. */
    feed_query(f, "create table t(a text not null);"
                  "insert into t values (null) -- pg_catalog");
    ms = expect(f, "CEZ");
    assert_string_equal(field(&ms->m[1], 'C'), "23502");
    fx_free(f);
}

/* ---- Transactions ----------------------------------------------------- */

static void test_txn_status_and_abort(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int primary key)");
    expect(f, "CZ");

    feed_query(f, "BEGIN");
    msgs *ms = expect(f, "CZ");
    assert_string_equal(tag(&ms->m[0]), "BEGIN");
    assert_int_equal(rfq(&ms->m[1]), 'T');

    feed_query(f, "insert into t values (1); insert into t values (1)");
    ms = expect(f, "CEZ");
    assert_string_equal(field(&ms->m[1], 'C'), "23505");
    assert_int_equal(rfq(&ms->m[2]), 'E');
    assert_int_equal(pg_session_txn_status(f->s), 'E');

    feed_query(f, "select 1");
    ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "25P02");
    assert_string_equal(field(&ms->m[0], 'M'),
                        "current transaction is aborted, commands ignored "
                        "until end of transaction block");
    assert_int_equal(rfq(&ms->m[1]), 'E');

    feed_query(f, "ROLLBACK");
    ms = expect(f, "CZ");
    assert_string_equal(tag(&ms->m[0]), "ROLLBACK");
    assert_int_equal(rfq(&ms->m[1]), 'I');

    feed_query(f, "select count(*) from t");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "0"); /* the insert rolled back */
    fx_free(f);
}

static void test_commit_in_failed_block_rolls_back(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int)");
    read_new(f, false);
    feed_query(f, "begin; insert into t values (1); select * from nosuch");
    msgs *ms = expect(f, "CCEZ");
    assert_int_equal(rfq(&ms->m[3]), 'E');
    feed_query(f, "commit");
    ms = expect(f, "CZ");
    assert_string_equal(tag(&ms->m[0]), "ROLLBACK");
    assert_int_equal(rfq(&ms->m[1]), 'I');
    feed_query(f, "select count(*) from t");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "0");
    fx_free(f);
}

static void test_postgres_transaction_forms(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int)");
    read_new(f, false);

    feed_query(f, "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE");
    msgs *ms = expect(f, "CZ");
    assert_string_equal(tag(&ms->m[0]), "BEGIN");
    assert_int_equal(rfq(&ms->m[1]), 'T');
    feed_query(f, "insert into t values (1); END");
    ms = expect(f, "CCZ");
    assert_string_equal(tag(&ms->m[1]), "COMMIT");
    assert_int_equal(rfq(&ms->m[2]), 'I');

    feed_query(f, "BEGIN ISOLATION LEVEL READ COMMITTED; insert into t values (2);"
                  " ABORT WORK");
    ms = expect(f, "CCCZ");
    assert_string_equal(tag(&ms->m[0]), "BEGIN");
    assert_string_equal(tag(&ms->m[2]), "ROLLBACK");
    assert_int_equal(rfq(&ms->m[3]), 'I');

    feed_query(f, "begin work; commit transaction");
    ms = expect(f, "CCZ");
    assert_string_equal(tag(&ms->m[1]), "COMMIT");

    /* Redundant BEGIN / COMMIT / ROLLBACK: warnings, as PostgreSQL. */
    feed_query(f, "begin; begin");
    ms = expect(f, "CNCZ");
    assert_string_equal(field(&ms->m[1], 'S'), "WARNING");
    assert_string_equal(field(&ms->m[1], 'C'), "25001");
    assert_int_equal(rfq(&ms->m[3]), 'T');
    feed_query(f, "commit; commit; rollback");
    ms = expect(f, "CNCNCZ");
    assert_string_equal(tag(&ms->m[0]), "COMMIT");
    assert_string_equal(field(&ms->m[1], 'C'), "25P01");
    assert_string_equal(tag(&ms->m[2]), "COMMIT");
    assert_string_equal(tag(&ms->m[4]), "ROLLBACK");
    assert_int_equal(rfq(&ms->m[5]), 'I');

    feed_query(f, "select count(*) from t");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "1");
    fx_free(f);
}

static void test_rollback_to_savepoint_clears_abort(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int); begin; insert into t values (1);"
                  " savepoint s1; insert into t values (2); selec");
    msgs *ms = expect(f, "CCCCCEZ");
    assert_string_equal(tag(&ms->m[3]), "SAVEPOINT");
    assert_int_equal(rfq(&ms->m[6]), 'E');
    feed_query(f, "rollback to savepoint s1; select count(*) from t; commit");
    ms = expect(f, "CTDCCZ");
    assert_string_equal(tag(&ms->m[0]), "ROLLBACK");
    assert_string_equal(col(&ms->m[2], 0), "1");
    assert_string_equal(tag(&ms->m[4]), "COMMIT");
    assert_int_equal(rfq(&ms->m[5]), 'I');
    fx_free(f);
}

/* SQLITE_FULL rolls the whole SQLite transaction back; the client still
 * sees an aborted block until it ends it. */
static void test_sqlite_full_inside_block(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(b blob); pragma max_page_count = 8");
    read_new(f, false);
    feed_query(f, "begin; insert into t values (zeroblob(100000))");
    msgs *ms = expect(f, "CEZ");
    assert_string_equal(field(&ms->m[1], 'C'), "53100");
    assert_int_equal(rfq(&ms->m[2]), 'E');
    feed_query(f, "commit");
    ms = expect(f, "CZ");
    assert_string_equal(tag(&ms->m[0]), "ROLLBACK");
    assert_int_equal(rfq(&ms->m[1]), 'I');
    fx_free(f);
}

/* ---- Commit hook ------------------------------------------------------ */

static void test_before_reply_hook(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int)");
    expect(f, "CZ");
    assert_int_equal(f->hook_calls, 1); /* DDL in autocommit is a write */
    assert_int_equal(f->hook_writes, 1);

    f->hook_calls = f->hook_writes = 0;
    feed_query(f, "insert into t values (1)");
    expect(f, "CZ");
    assert_int_equal(f->hook_calls, 1);
    assert_int_equal(f->hook_writes, 1);
    /* Called before the CommandComplete was appended. */
    assert_int_equal(f->hook_out_len,
                     f->read_pos - 6 /* Z */ - (5 + sizeof("INSERT 0 1")));

    /* DESIGN "Compute nodes": a read-only transaction's reply waits too.
     * Autocommit SELECT: once, as a read. A read-only block: at its
     * COMMIT only (rows inside the block are provisional). */
    f->hook_calls = f->hook_writes = 0;
    feed_query(f, "select * from t");
    expect(f, "TDCZ");
    assert_int_equal(f->hook_calls, 1);
    assert_int_equal(f->hook_writes, 0);
    f->hook_calls = 0;
    feed_query(f, "begin; select * from t; select 1");
    expect(f, "CTDCTDCZ");
    assert_int_equal(f->hook_calls, 0);
    feed_query(f, "commit");
    expect(f, "CZ");
    assert_int_equal(f->hook_calls, 1);
    assert_int_equal(f->hook_writes, 0);

    f->hook_calls = 0;
    feed_query(f, "begin; insert into t values (2); update t set a = a + 1");
    expect(f, "CCCZ");
    assert_int_equal(f->hook_calls, 0); /* not committed yet */
    feed_query(f, "commit");
    expect(f, "CZ");
    assert_int_equal(f->hook_calls, 1);
    assert_int_equal(f->hook_writes, 1);

    /* A rollback confirms nothing: no wait, read or write. */
    f->hook_calls = f->hook_writes = 0;
    feed_query(f, "begin; insert into t values (3); rollback");
    expect(f, "CCCZ");
    feed_query(f, "begin; select * from t; rollback");
    expect(f, "CTDDCCZ");
    assert_int_equal(f->hook_calls, 0);

    /* RELEASE of the outermost savepoint commits. */
    feed_query(f, "savepoint a; insert into t values (4); release a");
    msgs *ms = expect(f, "CCCZ");
    assert_string_equal(tag(&ms->m[2]), "RELEASE");
    assert_int_equal(f->hook_calls, 1);
    assert_int_equal(f->hook_writes, 1);
    fx_free(f);
}

/* Issue 4.5: past the deadline the client learns the outcome is unknown
 * (40003), the cause and the fix; other failures are 58030. */
static void test_before_reply_failure(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int); insert into t values (7)");
    read_new(f, false);
    f->hook_rc = HX_ERR_TIMEOUT;
    f->hook_why = "commit LSN 9 not covered by VDL 5";
    feed_query(f, "insert into t values (1); select 1");
    msgs *ms = expect(f, "EZ"); /* no INSERT tag, the select never ran */
    assert_string_equal(field(&ms->m[0], 'S'), "ERROR");
    assert_string_equal(field(&ms->m[0], 'C'), "40003");
    assert_non_null(strstr(field(&ms->m[0], 'M'), "outcome unknown"));
    assert_non_null(strstr(field(&ms->m[0], 'M'), "write quorum"));
    assert_non_null(strstr(field(&ms->m[0], 'M'), "may still become durable"));
    assert_string_equal(field(&ms->m[0], 'D'),
                        "commit LSN 9 not covered by VDL 5");
    assert_non_null(strstr(field(&ms->m[0], 'H'), "./hexad status"));
    assert_int_equal(rfq(&ms->m[1]), 'I');

    feed_query(f, "begin; insert into t values (2); commit");
    ms = expect(f, "CCEZ");
    assert_string_equal(field(&ms->m[2], 'C'), "40003");
    assert_int_equal(rfq(&ms->m[3]), 'I');

    /* A read that cannot be confirmed sends no rows, only the error. */
    f->hook_why = NULL;
    feed_query(f, "select a from t where a = 7");
    ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "40003");
    assert_non_null(strstr(field(&ms->m[0], 'M'), "read not confirmed"));
    assert_null(field(&ms->m[0], 'D'));

    f->hook_rc = HX_ERR_NO_QUORUM;
    feed_query(f, "insert into t values (3)");
    ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "58030");
    assert_non_null(strstr(field(&ms->m[0], 'M'),
                           hx_strerror(HX_ERR_NO_QUORUM)));

    /* The session still works once durability is back. */
    f->hook_rc = 0;
    feed_query(f, "select count(*) from t");
    ms = expect(f, "TDCZ");
    assert_string_equal(tag(&ms->m[2]), "SELECT 1");
    fx_free(f);
}

/* ---- Protocol edges --------------------------------------------------- */

static void test_extended_protocol_refused(void **state)
{
    (void)state;
    fx *f = connected();
    bytes b = { 0 };
    w_typed(&b, 'P', "\0select 1\0\0\0", 12);
    w_typed(&b, 'B', "\0\0\0\0\0\0\0\0", 8);
    w_typed(&b, 'D', "P\0", 2);
    w_typed(&b, 'E', "\0\0\0\0\0", 5);
    w_query(&b, "select 1"); /* discarded until Sync */
    w_typed(&b, 'S', NULL, 0);
    w_query(&b, "select 2");
    assert_int_equal(feed(f, &b), 0);
    msgs *ms = expect(f, "EZTDCZ");
    assert_string_equal(field(&ms->m[0], 'C'), "0A000");
    assert_string_equal(field(&ms->m[0], 'M'),
                        "extended query protocol not supported; use simple "
                        "query mode (psql default; pgbench -M simple)");
    assert_int_equal(rfq(&ms->m[1]), 'I');
    assert_string_equal(col(&ms->m[3], 0), "2");

    /* A lone Sync: just ReadyForQuery. */
    w_typed(&b, 'S', NULL, 0);
    feed(f, &b);
    expect(f, "Z");
    fx_free(f);
}

static void test_garbage_after_startup_is_fatal(void **state)
{
    (void)state;
    fx *f = connected();
    bytes b = { 0 };
    w_query(&b, "select 1");
    b_u8(&b, 0x7f);
    b_u32(&b, 4);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    msgs *ms = expect(f, "TDCZE");
    assert_string_equal(field(&ms->m[4], 'S'), "FATAL");
    assert_string_equal(field(&ms->m[4], 'C'), "08P01");
    fx_free(f);

    /* Oversize length: refused from the header. */
    f = connected();
    b_u8(&b, 'Q');
    b_u32(&b, PGW_MESSAGE_LEN_MAX + 1);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    ms = expect(f, "E");
    assert_string_equal(field(&ms->m[0], 'C'), "08P01");
    fx_free(f);

    /* Query without its NUL. */
    f = connected();
    w_typed(&b, 'Q', "select 1", 8);
    assert_int_equal(feed(f, &b), PG_SESSION_CLOSE);
    expect(f, "E");
    fx_free(f);
}

/* Delivering the same bytes one at a time gives the same replies. */
static void test_byte_at_a_time(void **state)
{
    (void)state;
    bytes b = { 0 };
    w_startup(&b, "u", "d");
    w_query(&b, "create table t(a int); insert into t values (1);"
                " select * from t");
    w_typed(&b, 'X', NULL, 0);

    fx *whole = fx_new(NULL);
    size_t used;
    assert_int_equal(pg_session_feed(whole->s, b.d, b.n, &used, &whole->out),
                     PG_SESSION_CLOSE);
    assert_int_equal(used, b.n);

    fx *f = fx_new(NULL);
    size_t have = 0, done = 0;
    int rc = 0;
    while (done < b.n && rc == 0) {
        have++; /* one more byte arrived */
        uint8_t *c = malloc(have - done); /* exact size: ASan bounds */
        memcpy(c, b.d + done, have - done);
        rc = pg_session_feed(f->s, c, have - done, &used, &f->out);
        free(c);
        done += used;
    }
    assert_int_equal(rc, PG_SESSION_CLOSE);
    assert_int_equal(done, b.n);
    assert_int_equal(f->out.len, whole->out.len);
    assert_memory_equal(f->out.data, whole->out.data, f->out.len);
    free(b.d);
    fx_free(whole);
    fx_free(f);
}

static void test_result_too_large(void **state)
{
    (void)state;
    fx *f = connected();
    f->out.max_bytes = f->out.len + 4096;
    feed_query(f, "with recursive n(i) as (select 1 union all select i + 1 "
                  "from n where i < 10000) select i, 'padding padding' from n");
    msgs *ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "54000");
    assert_int_equal(rfq(&ms->m[1]), 'I');
    feed_query(f, "select 1");
    expect(f, "TDCZ");
    fx_free(f);
}

static void test_copy_refused(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "copy pgbench_accounts from stdin");
    msgs *ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "0A000");
    fx_free(f);
}

/* ---- pgbench (simple protocol, tpcb-like built-in script) ------------- */

static void test_pgbench_tpcb_like(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f,
        "create table pgbench_branches(bid int primary key, bbalance int, filler char(88));"
        "create table pgbench_tellers(tid int primary key, bid int, tbalance int, filler char(84));"
        "create table pgbench_accounts(aid int primary key, bid int, abalance int, filler char(84));"
        "create table pgbench_history(tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));"
        "insert into pgbench_branches values (1, 0, null);"
        "insert into pgbench_tellers with recursive n(i) as (select 1 union all "
        "select i + 1 from n where i < 10) select i, 1, 0, null from n;"
        "insert into pgbench_accounts values (45, 1, 0, '');");
    msgs *ms = read_new(f, false);
    if (ms->types[ms->n - 2] != 'C')
        fail_msg("setup failed: %s %s", ms->types,
                 field(&ms->m[ms->n - 2], 'M'));

    /* What pgbench -n sends on connect: the scale, then a catalog probe
     * whose failure it ignores. */
    feed_query(f, "select count(*) from pgbench_branches");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "1");
    feed_query(f, "select o.n, p.partstrat, pg_catalog.count(i.inhparent) "
                  "from pg_catalog.pg_class as c "
                  "join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) "
                  "cross join lateral (select pg_catalog.array_position("
                  "pg_catalog.current_schemas(true), n.nspname)) as o(n) "
                  "left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) "
                  "left join pg_catalog.pg_inherits as i on (c.oid = i.inhparent) "
                  "where c.relname = 'pgbench_accounts' and o.n is not null "
                  "group by 1, 2 order by 1 asc limit 1");
    ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "42P01");
    assert_int_equal(rfq(&ms->m[1]), 'I');

    /* One transaction, one Query message per statement. */
    f->hook_calls = 0;
    const struct {
        const char *sql, *types, *tag;
        char status;
    } steps[] = {
        { "BEGIN;", "CZ", "BEGIN", 'T' },
        { "UPDATE pgbench_accounts SET abalance = abalance + -123 WHERE aid = 45;",
          "CZ", "UPDATE 1", 'T' },
        { "SELECT abalance FROM pgbench_accounts WHERE aid = 45;", "TDCZ",
          "SELECT 1", 'T' },
        { "UPDATE pgbench_tellers SET tbalance = tbalance + -123 WHERE tid = 3;",
          "CZ", "UPDATE 1", 'T' },
        { "UPDATE pgbench_branches SET bbalance = bbalance + -123 WHERE bid = 1;",
          "CZ", "UPDATE 1", 'T' },
        { "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
          "VALUES (3, 1, 45, -123, CURRENT_TIMESTAMP);", "CZ", "INSERT 0 1", 'T' },
        { "END;", "CZ", "COMMIT", 'I' },
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        feed_query(f, steps[i].sql);
        ms = expect(f, steps[i].types);
        assert_string_equal(tag(&ms->m[ms->n - 2]), steps[i].tag);
        assert_int_equal(rfq(&ms->m[ms->n - 1]), steps[i].status);
        if (ms->types[0] == 'T')
            assert_string_equal(col(&ms->m[1], 0), "-123");
    }
    assert_int_equal(f->hook_calls, 1); /* once, at END */
    fx_free(f);
}

/* Statements that differ only in their values share a cached program
 * (sql_shape.h, stmt_cache.h): each run must see its own values. */
static void test_cached_statements_bind_each_run(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table kv(k int primary key, v text)");
    expect(f, "CZ");
    const char *vals[] = { "it''s", "", "plain", "x;y", "--not a comment" };
    const char *want[] = { "it's", "", "plain", "x;y", "--not a comment" };
    char sql[256];
    for (int i = 0; i < 5; i++) {
        snprintf(sql, sizeof(sql), "insert into kv values (%d, '%s')",
                 i - 2, vals[i]);
        feed_query(f, sql);
        msgs *ms = expect(f, "CZ");
        assert_string_equal(tag(&ms->m[0]), "INSERT 0 1");
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5; i++) {
            snprintf(sql, sizeof(sql), "select k, v from kv where k = %d",
                     i - 2);
            feed_query(f, sql);
            msgs *ms = expect(f, "TDCZ");
            snprintf(sql, sizeof(sql), "%d", i - 2);
            assert_string_equal(col(&ms->m[1], 0), sql);
            assert_string_equal(col(&ms->m[1], 1), want[i]);
        }
    }
    /* A value too big to bind stays text and means what SQLite says. */
    feed_query(f, "select 18446744073709551616 + 0 from kv where k = 0");
    msgs *ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "1.8446744073709552e+19");

    /* Updates see their own values too, in and out of a block. */
    feed_query(f, "begin; update kv set v = 'a' where k = 1; "
                  "update kv set v = 'b' where k = 2; commit");
    expect(f, "CCCCZ");
    feed_query(f, "select group_concat(v, ',') from kv where k >= 1");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "a,b");
    fx_free(f);
}

/* Literals that name or pick result columns stay literals. */
static void test_literal_columns_and_order_by_position(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table t(a int, b int);"
                  "insert into t values (1, 30), (2, 20), (3, 10)");
    expect(f, "CCZ");
    const char *name;
    for (int i = 0; i < 2; i++) {
        feed_query(f, i ? "select 7, 'x' from t where a = 2"
                        : "select 7, 'x' from t where a = 1");
        msgs *ms = expect(f, "TDCZ");
        desc_oid(&ms->m[0], 0, &name);
        assert_string_equal(name, "7");
        desc_oid(&ms->m[0], 1, &name);
        assert_string_equal(name, "'x'");
    }
    /* ORDER BY 2 sorts by b, not by the constant 2. */
    feed_query(f, "select a, b from t where a > 0 order by 2");
    msgs *ms = expect(f, "TDDDCZ");
    assert_string_equal(col(&ms->m[1], 0), "3");
    assert_string_equal(col(&ms->m[3], 0), "1");
    feed_query(f, "select a, b from t where a > 0 order by 1");
    ms = expect(f, "TDDDCZ");
    assert_string_equal(col(&ms->m[1], 0), "1");
    /* Subqueries' columns are named by their text too. */
    const struct {
        const char *sql;
        int col;
        const char *name;
    } named[] = {
        {"select * from (select 5, 'x', a + 1 from t)", 0, "5"},
        {"select * from (select 5, 'x', a + 1 from t)", 1, "'x'"},
        {"select * from (select 5, 'x', a + 1 from t)", 2, "a + 1"},
        {"select a is distinct from 5, 7 from t", 0, "a is distinct from 5"},
        {"select a is distinct from 5, 7 from t", 1, "7"},
        {"select * from t join (select 9) on 1", 2, "9"},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        feed_query(f, named[i].sql);
        ms = read_new(f, false);
        assert_int_equal(ms->types[0], 'T');
        desc_oid(&ms->m[0], named[i].col, &name);
        assert_string_equal(name, named[i].name);
    }
    feed_query(f, "insert into t values (4, 0) returning a, 5");
    ms = expect(f, "TDCZ");
    desc_oid(&ms->m[0], 1, &name);
    assert_string_equal(name, "5");
    fx_free(f);
}

/* A cached program follows schema changes, and a shape that failed runs
 * once the table exists. */
static void test_cached_statements_follow_schema(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "select * from s where a = 1");
    msgs *ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "42P01");
    feed_query(f, "create table s(a int); insert into s values (1)");
    expect(f, "CCZ");
    feed_query(f, "select * from s where a = 1");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "1");

    feed_query(f, "alter table s add column b text default 'new'");
    expect(f, "CZ");
    feed_query(f, "select * from s where a = 1");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 1), "new");

    feed_query(f, "drop table s");
    expect(f, "CZ");
    feed_query(f, "select * from s where a = 1");
    ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "42P01");
    fx_free(f);
}

/* A cached statement that fails leaves nothing open: the next run of the
 * same shape works, and the block state is PostgreSQL's. */
static void test_cached_statement_error(void **state)
{
    (void)state;
    fx *f = connected();
    feed_query(f, "create table u(k int primary key)");
    expect(f, "CZ");
    feed_query(f, "insert into u values (1)");
    expect(f, "CZ");
    feed_query(f, "insert into u values (1)");
    msgs *ms = expect(f, "EZ");
    assert_string_equal(field(&ms->m[0], 'C'), "23505");
    assert_int_equal(rfq(&ms->m[1]), 'I');
    feed_query(f, "insert into u values (2)");
    ms = expect(f, "CZ");
    assert_string_equal(tag(&ms->m[0]), "INSERT 0 1");
    feed_query(f, "begin; insert into u values (2)");
    ms = expect(f, "CEZ");
    assert_int_equal(rfq(&ms->m[2]), 'E');
    feed_query(f, "rollback; select count(*) from u where k > 0");
    ms = expect(f, "CTDCZ");
    assert_string_equal(col(&ms->m[2], 0), "2");
    fx_free(f);
}

/* ---- Cancel (pg_session.h on_cancel, pg_server.c) --------------------- */

/* PostgreSQL "Canceling Requests in Progress": a cancel ends the query
 * running when it arrives with 57014; one that finds the session idle does
 * nothing. These sessions share a hexad VFS (over an in-memory store), as
 * hexad-compute's do, so that they contend for SQLite's writer lock, and
 * are cancelled as pg_server.c does it (hx_vfs_cancel). A session waiting
 * for the lock sleeps in the VFS's busy handler, which SQLite's own
 * interrupt does not reach: without the VFS's cancel it would wait out
 * HX_VFS_BUSY_TIMEOUT_MS and fail with 40001. Far below that: */
#define CANCEL_BOUND_MS 1000

static int vfs_counter;

static hx_mem_page_store *vfs_up(char *name, size_t n)
{
    hx_mem_page_store *ms = NULL;
    assert_int_equal(mem_page_store_create(4096, &ms), HX_OK);
    hx_page_store iface = mem_page_store_iface(ms);
    snprintf(name, n, "pgtest%d", ++vfs_counter);
    assert_int_equal(hx_vfs_register(name, &iface, 0), HX_OK);
    return ms;
}

static void vfs_down(const char *name, hx_mem_page_store *ms)
{
    assert_int_equal(hx_vfs_unregister(name), HX_OK);
    mem_page_store_destroy(ms);
}

static hx_vfs_stats vfs_stats(const char *name)
{
    hx_vfs_stats st;
    assert_int_equal(hx_vfs_get_stats(name, &st), HX_OK);
    return st;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* One Query fed on another thread (the session's own, as in pg_server). */
typedef struct {
    fx *f;
    bytes msg;
    int rc;
    uint64_t done_ms;
    atomic_int done;
} query_arg;

static void *query_main(void *p)
{
    query_arg *a = p;
    size_t used = 0;
    a->rc = pg_session_feed(a->f->s, a->msg.d, a->msg.n, &used, &a->f->out);
    a->done_ms = mono_ms();
    atomic_store(&a->done, 1);
    return NULL;
}

static void query_start(query_arg *a, fx *f, const char *sql, pthread_t *th)
{
    memset(a, 0, sizeof(*a));
    a->f = f;
    a->rc = -1;
    w_query(&a->msg, sql);
    assert_int_equal(pthread_create(th, NULL, query_main, a), 0);
}

/* Polls, bounded, until a's query sleeps on the writer lock. */
static void await_lock_waiter(const char *vfs, query_arg *a, pthread_t th)
{
    uint64_t deadline = mono_ms() + HX_VFS_BUSY_TIMEOUT_MS;
    while (vfs_stats(vfs).writer_waiters == 0 && !atomic_load(&a->done) &&
           mono_ms() < deadline)
        usleep(1000);
    if (vfs_stats(vfs).writer_waiters == 1)
        return;
    pthread_join(th, NULL);
    msgs *ms = read_new(a->f, false);
    const char *state = ms->n > 0 && ms->m[0].type == 'E'
                            ? field(&ms->m[0], 'C') : "none";
    fail_msg("the query did not wait for the writer lock: reply \"%s\", "
             "SQLSTATE %s", ms->types, state);
}

/* Polls until the query returned, at most bound_ms after since_ms; joins
 * the thread either way (the busy timeout bounds it) before failing. */
static void query_join(query_arg *a, pthread_t th, uint64_t since_ms,
                       const char *what)
{
    while (!atomic_load(&a->done) && mono_ms() < since_ms + CANCEL_BOUND_MS)
        usleep(1000);
    pthread_join(th, NULL);
    free(a->msg.d);
    if (a->done_ms - since_ms >= CANCEL_BOUND_MS)
        fail_msg("%s: the query returned after %llu ms (bound %d ms, busy "
                 "timeout %d ms)", what,
                 (unsigned long long)(a->done_ms - since_ms),
                 CANCEL_BOUND_MS, HX_VFS_BUSY_TIMEOUT_MS);
    assert_int_equal(a->rc, 0);
}

/* Runs sql on f until it waits for the writer lock, cancels f, and checks
 * that the query returned promptly and the VFS counts no waiter. */
static void cancel_lock_wait(const char *vfs, fx *f, const char *sql)
{
    query_arg a;
    pthread_t th;
    query_start(&a, f, sql, &th);
    await_lock_waiter(vfs, &a, th);
    uint64_t t_cancel = mono_ms();
    assert_int_equal(hx_vfs_cancel(vfs, pg_session_db(f->s)), HX_OK);
    query_join(&a, th, t_cancel, sql);
    hx_vfs_stats st = vfs_stats(vfs);
    assert_int_equal(st.writer_waiters, 0);
    assert_int_equal(st.writer_wanted, 0);
}

static void assert_cancelled(const bmsg *e)
{
    assert_int_equal(e->type, 'E');
    assert_string_equal(field(e, 'S'), "ERROR");
    assert_string_equal(field(e, 'C'), "57014");
    assert_string_equal(field(e, 'M'),
                        "canceling statement due to user request");
}

static void test_cancel_ends_lock_wait(void **state)
{
    (void)state;
    char vfs[32];
    hx_mem_page_store *store = vfs_up(vfs, sizeof(vfs));
    fx *a = connected_on(vfs);
    fx *b = connected_on(vfs);
    feed_query(a, "create table t(x int)");
    expect(a, "CZ");
    feed_query(a, "begin; insert into t values (1)");
    expect(a, "CCZ"); /* a holds the writer lock */

    /* An autocommit statement: cancelled, the session is idle again. */
    cancel_lock_wait(vfs, b, "insert into t values (2)");
    msgs *ms = expect(b, "EZ");
    assert_cancelled(&ms->m[0]);
    assert_int_equal(rfq(&ms->m[1]), 'I');

    /* Inside a block: aborted like any failed statement, and the rest of
     * the string is not run. */
    cancel_lock_wait(vfs, b, "begin; insert into t values (3); select 1");
    ms = expect(b, "CEZ");
    assert_cancelled(&ms->m[1]);
    assert_int_equal(rfq(&ms->m[2]), 'E');
    feed_query(b, "rollback");
    ms = expect(b, "CZ");
    assert_int_equal(rfq(&ms->m[1]), 'I');

    /* The next statements are not cancelled; the holder commits. */
    feed_query(b, "select count(*) from t");
    ms = expect(b, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "0");
    feed_query(a, "commit");
    ms = expect(a, "CZ");
    assert_string_equal(tag(&ms->m[0]), "COMMIT");
    feed_query(b, "insert into t values (2); select count(*) from t");
    ms = expect(b, "CTDCZ");
    assert_string_equal(col(&ms->m[2], 0), "2");
    fx_free(b);
    fx_free(a);
    vfs_down(vfs, store);
}

static void test_cancel_while_idle_is_ignored(void **state)
{
    (void)state;
    char vfs[32];
    hx_mem_page_store *store = vfs_up(vfs, sizeof(vfs));
    fx *a = connected_on(vfs);
    fx *b = connected_on(vfs);
    feed_query(a, "create table t(x int)");
    expect(a, "CZ");
    assert_int_equal(hx_vfs_cancel(vfs, pg_session_db(b->s)), HX_OK);

    /* b's next query waits for the writer lock, uncancelled, and gets it
     * when a commits. */
    feed_query(a, "begin; insert into t values (1)");
    expect(a, "CCZ");
    query_arg q;
    pthread_t th;
    query_start(&q, b, "insert into t values (2)", &th);
    await_lock_waiter(vfs, &q, th);
    uint64_t t_commit = mono_ms();
    feed_query(a, "commit");
    expect(a, "CZ");
    query_join(&q, th, t_commit, "the query after an idle cancel");
    msgs *ms = expect(b, "CZ");
    assert_string_equal(tag(&ms->m[0]), "INSERT 0 1");
    assert_int_equal(rfq(&ms->m[1]), 'I');
    feed_query(b, "select count(*) from t");
    ms = expect(b, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "2");
    fx_free(b);
    fx_free(a);
    vfs_down(vfs, store);
}

/* A cancel that arrives between two statements of one query string (here
 * from the reply hook of the first, which has finished) ends the string:
 * PostgreSQL cancels the query, not one statement. SQLite would run the
 * second: its interrupt flag is reset when a statement starts. */
static void test_cancel_between_statements(void **state)
{
    (void)state;
    char vfs[32];
    hx_mem_page_store *store = vfs_up(vfs, sizeof(vfs));
    fx *f = connected_on(vfs);
    feed_query(f, "create table t(x int)");
    expect(f, "CZ");
    f->hook_cancels = true;
    feed_query(f, "insert into t values (1); insert into t values (2)");
    msgs *ms = expect(f, "CEZ");
    assert_cancelled(&ms->m[1]);
    assert_int_equal(rfq(&ms->m[2]), 'I');
    f->hook_cancels = false;
    feed_query(f, "select count(*) from t");
    ms = expect(f, "TDCZ");
    assert_string_equal(col(&ms->m[1], 0), "1");
    fx_free(f);
    vfs_down(vfs, store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_startup_trust),
        cmocka_unit_test(test_ssl_and_gss_refused_then_startup),
        cmocka_unit_test(test_password_success),
        cmocka_unit_test(test_password_failure),
        cmocka_unit_test(test_database_open_failure),
        cmocka_unit_test(test_startup_errors),
        cmocka_unit_test(test_protocol_3_2_negotiated_down),
        cmocka_unit_test(test_cancel_request),
        cmocka_unit_test(test_terminate),
        cmocka_unit_test(test_destroy_closes_db),
        cmocka_unit_test(test_multi_statement_query_and_tags),
        cmocka_unit_test(test_value_types),
        cmocka_unit_test(test_empty_query),
        cmocka_unit_test(test_error_stops_query_string),
        cmocka_unit_test(test_sqlstate_mapping),
        cmocka_unit_test(test_pg_catalog_query_clear_error),
        cmocka_unit_test(test_txn_status_and_abort),
        cmocka_unit_test(test_commit_in_failed_block_rolls_back),
        cmocka_unit_test(test_postgres_transaction_forms),
        cmocka_unit_test(test_rollback_to_savepoint_clears_abort),
        cmocka_unit_test(test_sqlite_full_inside_block),
        cmocka_unit_test(test_before_reply_hook),
        cmocka_unit_test(test_before_reply_failure),
        cmocka_unit_test(test_extended_protocol_refused),
        cmocka_unit_test(test_garbage_after_startup_is_fatal),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_result_too_large),
        cmocka_unit_test(test_copy_refused),
        cmocka_unit_test(test_pgbench_tpcb_like),
        cmocka_unit_test(test_cached_statements_bind_each_run),
        cmocka_unit_test(test_literal_columns_and_order_by_position),
        cmocka_unit_test(test_cached_statements_follow_schema),
        cmocka_unit_test(test_cached_statement_error),
        cmocka_unit_test(test_cancel_ends_lock_wait),
        cmocka_unit_test(test_cancel_while_idle_is_ignored),
        cmocka_unit_test(test_cancel_between_statements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
