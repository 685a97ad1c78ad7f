/* Unit tests for the PostgreSQL v3 codec (compute-node/pgwire.c).
 *
 * Requirement: DESIGN (compute node) "serve the PostgreSQL protocol so psql,
 * pgbench and libpq work unchanged"; wire shapes from the PostgreSQL docs,
 * "Frontend/Backend Protocol: Message Formats".
 *
 * Every parser input is copied into a heap block of exactly its length, so
 * AddressSanitizer catches any read past the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "hx_err.h"
#include "pgwire.h"

/* ---- Test-side frame helpers (independent of the code under test) ---- */

typedef struct bytes {
    uint8_t d[4096];
    size_t n;
} bytes;

static void b_u8(bytes *b, uint8_t v) { b->d[b->n++] = v; }
static void b_u16(bytes *b, uint16_t v) { b_u8(b, (uint8_t)(v >> 8)); b_u8(b, (uint8_t)v); }
static void b_u32(bytes *b, uint32_t v) { b_u16(b, (uint16_t)(v >> 16)); b_u16(b, (uint16_t)v); }
static void b_raw(bytes *b, const void *p, size_t n) { if (n) memcpy(b->d + b->n, p, n); b->n += n; }
static void b_str(bytes *b, const char *s) { b_raw(b, s, strlen(s) + 1); }
static void b_patch_len(bytes *b, size_t at, uint32_t v)
{
    b->d[at] = (uint8_t)(v >> 24); b->d[at + 1] = (uint8_t)(v >> 16);
    b->d[at + 2] = (uint8_t)(v >> 8); b->d[at + 3] = (uint8_t)v;
}

static uint32_t rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* A startup packet with the given NULL-terminated name/value list. */
static bytes startup_packet(uint32_t version, const char *const *kv)
{
    bytes b = { .n = 0 };
    b_u32(&b, 0);
    b_u32(&b, version);
    for (size_t i = 0; kv && kv[i]; i++)
        b_str(&b, kv[i]);
    b_u8(&b, 0);
    b_patch_len(&b, 0, (uint32_t)b.n);
    return b;
}

static bytes typed(uint8_t type, const void *body, size_t n)
{
    bytes b = { .n = 0 };
    b_u8(&b, type);
    b_u32(&b, (uint32_t)(n + 4));
    b_raw(&b, body, n);
    return b;
}

/* Exact-size heap copy so ASan flags overreads. Caller frees. */
static uint8_t *exact(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    assert_non_null(c);
    if (n)
        memcpy(c, p, n);
    return c;
}

static int parse_startup_exact(const uint8_t *p, size_t n, pgw_startup *st,
                               size_t *used)
{
    uint8_t *c = exact(p, n);
    int rc = pgw_parse_startup(c, n, st, used);
    /* Decoded strings point into c; tests that keep them use their own
     * copy of the buffer instead. */
    free(c);
    return rc;
}

static int parse_msg_exact(const uint8_t *p, size_t n, pgw_msg *m, size_t *used)
{
    uint8_t *c = exact(p, n);
    int rc = pgw_parse_message(c, n, m, used);
    free(c);
    return rc;
}

/* Backend message reader over a pgw_buf. */
typedef struct bmsg {
    uint8_t type;
    const uint8_t *body;
    size_t len;
} bmsg;

static size_t read_msgs(const pgw_buf *b, bmsg *out, size_t max)
{
    size_t off = 0, n = 0;
    while (off < b->len) {
        assert_true(b->len - off >= 5);
        uint32_t l = rd_u32(b->data + off + 1);
        assert_true(l >= 4);
        assert_true(b->len - off - 1 >= l);
        assert_true(n < max);
        out[n].type = b->data[off];
        out[n].body = b->data + off + 5;
        out[n].len = l - 4;
        n++;
        off += 1 + l;
    }
    return n;
}

/* ---- Startup ---------------------------------------------------------- */

static void test_startup_roundtrip(void **state)
{
    (void)state;
    const char *kv[] = { "user", "alice", "database", "db1",
                         "application_name", "psql", NULL };
    bytes b = startup_packet(PGW_PROTOCOL_3_0, kv);
    uint8_t *c = exact(b.d, b.n);
    pgw_startup st;
    size_t used = 99;
    assert_int_equal(pgw_parse_startup(c, b.n, &st, &used), 1);
    assert_int_equal(used, b.n);
    assert_int_equal(st.kind, PGW_STARTUP);
    assert_int_equal(st.version, PGW_PROTOCOL_3_0);
    assert_int_equal(st.nparams, 3);
    assert_string_equal(pgw_startup_get(&st, "user"), "alice");
    assert_string_equal(pgw_startup_get(&st, "database"), "db1");
    assert_string_equal(pgw_startup_get(&st, "application_name"), "psql");
    assert_null(pgw_startup_get(&st, "options"));
    free(c);
}

static void test_startup_every_prefix_needs_more(void **state)
{
    (void)state;
    const char *kv[] = { "user", "u", NULL };
    bytes b = startup_packet(PGW_PROTOCOL_3_0, kv);
    for (size_t n = 0; n < b.n; n++) {
        pgw_startup st;
        size_t used = 99;
        assert_int_equal(parse_startup_exact(b.d, n, &st, &used), 0);
        assert_int_equal(used, 0);
    }
}

static void test_startup_trailing_bytes_not_consumed(void **state)
{
    (void)state;
    const char *kv[] = { "user", "u", NULL };
    bytes b = startup_packet(PGW_PROTOCOL_3_0, kv);
    size_t first = b.n;
    b_u8(&b, 'Q'); /* start of the next message */
    pgw_startup st;
    size_t used;
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), 1);
    assert_int_equal(used, first);
}

static void test_startup_minor_version_accepted(void **state)
{
    (void)state;
    const char *kv[] = { "user", "u", "_pq_.x", "1", NULL };
    bytes b = startup_packet(3u << 16 | 2, kv);
    pgw_startup st;
    size_t used;
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), 1);
    assert_int_equal(st.version & 0xffff, 2);
}

static void test_encryption_and_cancel_requests(void **state)
{
    (void)state;
    bytes b = { .n = 0 };
    b_u32(&b, 8);
    b_u32(&b, PGW_SSL_REQUEST_CODE);
    pgw_startup st;
    size_t used;
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), 1);
    assert_int_equal(st.kind, PGW_SSL_REQUEST);
    assert_int_equal(used, 8);

    b.n = 0;
    b_u32(&b, 8);
    b_u32(&b, PGW_GSSENC_REQUEST_CODE);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), 1);
    assert_int_equal(st.kind, PGW_GSSENC_REQUEST);

    b.n = 0;
    b_u32(&b, 16);
    b_u32(&b, PGW_CANCEL_REQUEST_CODE);
    b_u32(&b, 4242);
    b_u32(&b, 0xdeadbeef);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), 1);
    assert_int_equal(st.kind, PGW_CANCEL_REQUEST);
    assert_int_equal(used, 16);
    assert_int_equal(st.cancel_pid, 4242);
    assert_int_equal((uint32_t)st.cancel_key, 0xdeadbeefu);
}

static void test_startup_malformed(void **state)
{
    (void)state;
    pgw_startup st;
    size_t used;
    bytes b;

    /* Length below the 8-byte minimum: 0, 3 (< 4) and 7. */
    uint32_t short_lens[] = { 0, 3, 7 };
    for (size_t i = 0; i < 3; i++) {
        b.n = 0;
        b_u32(&b, short_lens[i]);
        assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used),
                         HX_ERR_PROTOCOL);
        assert_non_null(st.error);
    }

    /* Oversize length: refused from the header alone. */
    b.n = 0;
    b_u32(&b, PGW_STARTUP_LEN_MAX + 1);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_TOO_BIG);
    b.n = 0;
    b_u32(&b, 0xffffffffu);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_TOO_BIG);

    /* Unsupported protocol versions. */
    uint32_t versions[] = { 2u << 16, 4u << 16, 0, 1234 };
    for (size_t i = 0; i < 4; i++) {
        const char *kv[] = { "user", "u", NULL };
        b = startup_packet(versions[i], kv);
        assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used),
                         HX_ERR_PROTOCOL);
        assert_true(st.bad_version);
    }

    /* Missing final terminator (8 bytes: header only). */
    b.n = 0;
    b_u32(&b, 8);
    b_u32(&b, PGW_PROTOCOL_3_0);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);
    assert_false(st.bad_version);

    /* Name without a NUL, filling the packet. */
    b.n = 0;
    b_u32(&b, 0);
    b_u32(&b, PGW_PROTOCOL_3_0);
    b_raw(&b, "user", 4);
    b_patch_len(&b, 0, (uint32_t)b.n);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);

    /* Name without a value. */
    b.n = 0;
    b_u32(&b, 0);
    b_u32(&b, PGW_PROTOCOL_3_0);
    b_str(&b, "user");
    b_patch_len(&b, 0, (uint32_t)b.n);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);

    /* Value without its NUL. */
    b.n = 0;
    b_u32(&b, 0);
    b_u32(&b, PGW_PROTOCOL_3_0);
    b_str(&b, "user");
    b_raw(&b, "bob", 3);
    b_patch_len(&b, 0, (uint32_t)b.n);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);

    /* Value then no final terminator. */
    b.n = 0;
    b_u32(&b, 0);
    b_u32(&b, PGW_PROTOCOL_3_0);
    b_str(&b, "user");
    b_str(&b, "bob");
    b_patch_len(&b, 0, (uint32_t)b.n);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);

    /* Bytes after the terminator, inside the declared length. */
    b.n = 0;
    b_u32(&b, 0);
    b_u32(&b, PGW_PROTOCOL_3_0);
    b_str(&b, "user");
    b_str(&b, "bob");
    b_u8(&b, 0);
    b_u8(&b, 'x');
    b_patch_len(&b, 0, (uint32_t)b.n);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);

    /* Encryption and cancel requests with the wrong length. */
    b.n = 0;
    b_u32(&b, 12);
    b_u32(&b, PGW_SSL_REQUEST_CODE);
    b_u32(&b, 0);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);
    b.n = 0;
    b_u32(&b, 12);
    b_u32(&b, PGW_CANCEL_REQUEST_CODE);
    b_u32(&b, 1);
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_PROTOCOL);
}

static void test_startup_too_many_params(void **state)
{
    (void)state;
    static bytes b;
    b.n = 0;
    b_u32(&b, 0);
    b_u32(&b, PGW_PROTOCOL_3_0);
    for (int i = 0; i <= PGW_STARTUP_PARAMS_MAX; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        b_str(&b, name);
        b_str(&b, "v");
    }
    b_u8(&b, 0);
    b_patch_len(&b, 0, (uint32_t)b.n);
    pgw_startup st;
    size_t used;
    assert_int_equal(parse_startup_exact(b.d, b.n, &st, &used), HX_ERR_TOO_BIG);
}

/* ---- Typed messages --------------------------------------------------- */

static void test_query_roundtrip_and_prefixes(void **state)
{
    (void)state;
    const char *sql = "SELECT 1; SELECT 2";
    bytes b = typed('Q', sql, strlen(sql) + 1);
    for (size_t n = 0; n < b.n; n++) {
        pgw_msg m;
        size_t used = 99;
        assert_int_equal(parse_msg_exact(b.d, n, &m, &used), 0);
        assert_int_equal(used, 0);
    }
    uint8_t *c = exact(b.d, b.n);
    pgw_msg m;
    size_t used;
    assert_int_equal(pgw_parse_message(c, b.n, &m, &used), 1);
    assert_int_equal(used, b.n);
    assert_int_equal(m.kind, PGW_MSG_QUERY);
    assert_string_equal(m.text, sql);
    assert_int_equal(m.text_len, strlen(sql));
    free(c);
}

static void test_terminate_password_and_pipelining(void **state)
{
    (void)state;
    bytes all = typed('p', "secret", 7);
    bytes x = typed('X', NULL, 0);
    b_raw(&all, x.d, x.n);
    uint8_t *c = exact(all.d, all.n);
    pgw_msg m;
    size_t used;
    assert_int_equal(pgw_parse_message(c, all.n, &m, &used), 1);
    assert_int_equal(m.kind, PGW_MSG_PASSWORD);
    assert_string_equal(m.text, "secret");
    size_t off = used;
    assert_int_equal(pgw_parse_message(c + off, all.n - off, &m, &used), 1);
    assert_int_equal(m.kind, PGW_MSG_TERMINATE);
    assert_int_equal(off + used, all.n);
    free(c);
}

static void test_extended_protocol_reported_unsupported(void **state)
{
    (void)state;
    const char types[] = "PBDESHCFdcf";
    for (size_t i = 0; types[i]; i++) {
        bytes b = typed((uint8_t)types[i], "\0\0", 2);
        pgw_msg m;
        size_t used;
        assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), 1);
        assert_int_equal(m.kind, PGW_MSG_UNSUPPORTED);
        assert_int_equal(m.type, (uint8_t)types[i]);
        assert_int_equal(used, b.n);
    }
}

static void test_message_malformed(void **state)
{
    (void)state;
    pgw_msg m;
    size_t used;
    bytes b;

    /* Types no frontend sends: refused from the first byte. */
    const uint8_t garbage[] = { 0, 'Z', 'R', 'T', 'q', 0x80, 0xff, 'G' };
    for (size_t i = 0; i < sizeof(garbage); i++) {
        assert_int_equal(parse_msg_exact(&garbage[i], 1, &m, &used),
                         HX_ERR_PROTOCOL);
        assert_non_null(m.error);
        assert_int_equal(used, 0);
    }

    /* Length < 4. */
    for (uint32_t l = 0; l < 4; l++) {
        b.n = 0;
        b_u8(&b, 'Q');
        b_u32(&b, l);
        assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_PROTOCOL);
    }

    /* Oversize length: refused from the header alone. */
    b.n = 0;
    b_u8(&b, 'Q');
    b_u32(&b, PGW_MESSAGE_LEN_MAX + 1);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_TOO_BIG);
    b.n = 0;
    b_u8(&b, 'P');
    b_u32(&b, 0x7fffffffu);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_TOO_BIG);

    /* Query without its NUL, empty body, bytes after the NUL, and an
     * embedded NUL. */
    b = typed('Q', "SELECT 1", 8);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_PROTOCOL);
    b = typed('Q', NULL, 0);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_PROTOCOL);
    b = typed('Q', "SELECT 1\0x", 10);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_PROTOCOL);
    b = typed('p', "pw\0pw\0", 6);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_PROTOCOL);
    b = typed('p', "pw", 2);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), HX_ERR_PROTOCOL);

    /* Empty query string is valid (the session answers EmptyQuery). */
    b = typed('Q', "", 1);
    assert_int_equal(parse_msg_exact(b.d, b.n, &m, &used), 1);
    assert_int_equal(m.kind, PGW_MSG_QUERY);
    assert_int_equal(m.text_len, 0);
}

/* Seeded garbage: every result is a valid code, consumption stays in
 * bounds, and ASan sees no overread. */
static void test_random_garbage(void **state)
{
    (void)state;
    unsigned seed = 20240601u;
    printf("# test_random_garbage seed=%u\n", seed);
    uint32_t x = seed;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t tmp[64];
        x = x * 1664525u + 1013904223u;
        size_t n = (x >> 24) % sizeof(tmp);
        for (size_t i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            tmp[i] = (uint8_t)(x >> 24);
        }
        /* Bias towards plausible headers half the time. */
        if (n >= 5 && (iter & 1)) {
            tmp[0] = "QXpPS"[iter % 5];
            tmp[1] = 0; tmp[2] = 0; tmp[3] = 0;
            tmp[4] = (uint8_t)(4 + (x >> 8) % 64);
        }
        pgw_startup st;
        pgw_msg m;
        size_t used;
        int rc = parse_startup_exact(tmp, n, &st, &used);
        assert_true(rc == 1 || rc == 0 || rc == HX_ERR_PROTOCOL ||
                    rc == HX_ERR_TOO_BIG);
        assert_true(used <= n);
        assert_true(rc == 1 || used == 0);
        rc = parse_msg_exact(tmp, n, &m, &used);
        assert_true(rc == 1 || rc == 0 || rc == HX_ERR_PROTOCOL ||
                    rc == HX_ERR_TOO_BIG);
        assert_true(used <= n);
        assert_true(rc == 1 || used == 0);
    }
}

/* ---- Builders --------------------------------------------------------- */

static void test_builders_auth_and_status(void **state)
{
    (void)state;
    pgw_buf b;
    pgw_buf_init(&b, 0);
    const uint8_t salt[4] = { 1, 2, 3, 4 };
    assert_int_equal(pgw_put_auth_ok(&b), 0);
    pgw_put_auth_cleartext(&b);
    pgw_put_auth_md5(&b, salt);
    pgw_put_parameter_status(&b, "server_version", "15.0 (hexad)");
    pgw_put_backend_key(&b, 77, -5);
    pgw_put_ready(&b, 'T');
    pgw_put_command_complete(&b, "INSERT 0 1");
    pgw_put_empty_query(&b);
    const char *opts[] = { "_pq_.a" };
    assert_int_equal(pgw_put_negotiate_version(&b, 0, 1, opts), 0);

    bmsg m[16];
    size_t n = read_msgs(&b, m, 16);
    assert_int_equal(n, 9);
    assert_int_equal(m[0].type, 'R');
    assert_int_equal(m[0].len, 4);
    assert_int_equal(rd_u32(m[0].body), 0);
    assert_int_equal(rd_u32(m[1].body), 3);
    assert_int_equal(m[2].len, 8);
    assert_int_equal(rd_u32(m[2].body), 5);
    assert_memory_equal(m[2].body + 4, salt, 4);
    assert_int_equal(m[3].type, 'S');
    assert_string_equal((const char *)m[3].body, "server_version");
    assert_string_equal((const char *)m[3].body + 15, "15.0 (hexad)");
    assert_int_equal(m[4].type, 'K');
    assert_int_equal(rd_u32(m[4].body), 77);
    assert_int_equal((int32_t)rd_u32(m[4].body + 4), -5);
    assert_int_equal(m[5].type, 'Z');
    assert_int_equal(m[5].len, 1);
    assert_int_equal(m[5].body[0], 'T');
    assert_int_equal(m[6].type, 'C');
    assert_string_equal((const char *)m[6].body, "INSERT 0 1");
    assert_int_equal(m[7].type, 'I');
    assert_int_equal(m[7].len, 0);
    assert_int_equal(m[8].type, 'v');
    assert_int_equal(rd_u32(m[8].body), 0);
    assert_int_equal(rd_u32(m[8].body + 4), 1);
    assert_string_equal((const char *)m[8].body + 8, "_pq_.a");
    pgw_buf_free(&b);
}

static void test_builders_rows(void **state)
{
    (void)state;
    pgw_buf b;
    pgw_buf_init(&b, 0);
    pgw_field f[] = { { "a", PGW_OID_INT8 }, { "b", PGW_OID_TEXT },
                      { "c", PGW_OID_BYTEA }, { "d", PGW_OID_FLOAT8 } };
    assert_int_equal(pgw_put_row_description(&b, 4, f), 0);
    size_t r = pgw_datarow_begin(&b, 4);
    pgw_datarow_value(&b, "42", 2);
    pgw_datarow_null(&b);
    pgw_datarow_bytea(&b, "\x00\xff\x10", 3);
    pgw_datarow_value(&b, "", 0);
    assert_int_equal(pgw_msg_end(&b, r), 0);
    const char *vals[] = { "x", NULL };
    size_t lens[] = { 1, 0 };
    assert_int_equal(pgw_put_data_row(&b, 2, vals, lens), 0);

    bmsg m[4];
    assert_int_equal(read_msgs(&b, m, 4), 3);
    /* RowDescription: count, then per field name + 18 bytes. */
    const uint8_t *p = m[0].body;
    assert_int_equal(m[0].type, 'T');
    assert_int_equal(rd_u16(p), 4);
    p += 2;
    uint32_t want_oid[] = { 20, 25, 17, 701 };
    int16_t want_len[] = { 8, -1, -1, 8 };
    for (int i = 0; i < 4; i++) {
        assert_string_equal((const char *)p, f[i].name);
        p += strlen((const char *)p) + 1;
        assert_int_equal(rd_u32(p), 0);             /* table */
        assert_int_equal(rd_u16(p + 4), 0);         /* attnum */
        assert_int_equal(rd_u32(p + 6), want_oid[i]);
        assert_int_equal((int16_t)rd_u16(p + 10), want_len[i]);
        assert_int_equal((int32_t)rd_u32(p + 12), -1); /* typmod */
        assert_int_equal(rd_u16(p + 16), 0);        /* text */
        p += 18;
    }
    assert_ptr_equal(p, m[0].body + m[0].len);

    p = m[1].body;
    assert_int_equal(m[1].type, 'D');
    assert_int_equal(rd_u16(p), 4);
    p += 2;
    assert_int_equal(rd_u32(p), 2);
    assert_memory_equal(p + 4, "42", 2);
    p += 6;
    assert_int_equal((int32_t)rd_u32(p), -1);
    p += 4;
    assert_int_equal(rd_u32(p), 8);
    assert_memory_equal(p + 4, "\\x00ff10", 8);
    p += 12;
    assert_int_equal(rd_u32(p), 0);
    p += 4;
    assert_ptr_equal(p, m[1].body + m[1].len);

    p = m[2].body;
    assert_int_equal(rd_u16(p), 2);
    assert_int_equal(rd_u32(p + 2), 1);
    assert_int_equal(p[6], 'x');
    assert_int_equal((int32_t)rd_u32(p + 7), -1);
    pgw_buf_free(&b);
}

static void test_builders_error_and_notice(void **state)
{
    (void)state;
    pgw_buf b;
    pgw_buf_init(&b, 0);
    pgw_put_error(&b, "ERROR", "0A000", "no", NULL, "use simple mode");
    pgw_put_notice(&b, "WARNING", "25P01", "none", "d", NULL);
    bmsg m[2];
    assert_int_equal(read_msgs(&b, m, 2), 2);
    const char *want_e[] = { "SERROR", "VERROR", "C0A000", "Mno",
                             "Huse simple mode" };
    const char *want_n[] = { "SWARNING", "VWARNING", "C25P01", "Mnone", "Dd" };
    const char *const *want[] = { want_e, want_n };
    for (int k = 0; k < 2; k++) {
        const char *p = (const char *)m[k].body;
        for (int i = 0; i < 5; i++) {
            assert_string_equal(p, want[k][i]);
            p += strlen(p) + 1;
        }
        assert_int_equal(*p, 0); /* terminator */
        assert_ptr_equal(p + 1, (const char *)m[k].body + m[k].len);
    }
    assert_int_equal(m[0].type, 'E');
    assert_int_equal(m[1].type, 'N');
    pgw_buf_free(&b);
}

static void test_buf_limit_sticky_and_truncate(void **state)
{
    (void)state;
    pgw_buf b;
    pgw_buf_init(&b, 32);
    assert_int_equal(pgw_put_command_complete(&b, "SELECT 1"), 0);
    size_t mark = b.len;
    assert_int_equal(pgw_put_command_complete(&b, "a tag far too long to fit here"),
                     HX_ERR_TOO_BIG);
    assert_int_equal(b.err, HX_ERR_TOO_BIG);
    assert_int_equal(pgw_put_ready(&b, 'I'), HX_ERR_TOO_BIG); /* sticky */
    pgw_buf_truncate(&b, mark);
    assert_int_equal(b.err, 0);
    assert_int_equal(pgw_put_ready(&b, 'I'), 0);
    bmsg m[4];
    assert_int_equal(read_msgs(&b, m, 4), 2);
    assert_int_equal(m[1].type, 'Z');

    pgw_buf_drain(&b, mark);
    assert_int_equal(read_msgs(&b, m, 4), 1);
    assert_int_equal(m[0].type, 'Z');
    pgw_buf_drain(&b, 1000);
    assert_int_equal(b.len, 0);
    pgw_buf_free(&b);
    pgw_buf_free(NULL);
}

static void test_row_description_too_many_fields(void **state)
{
    (void)state;
    pgw_buf b;
    pgw_buf_init(&b, 0);
    assert_int_equal(pgw_put_row_description(&b, 40000, NULL), HX_ERR_INVALID);
    pgw_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_startup_roundtrip),
        cmocka_unit_test(test_startup_every_prefix_needs_more),
        cmocka_unit_test(test_startup_trailing_bytes_not_consumed),
        cmocka_unit_test(test_startup_minor_version_accepted),
        cmocka_unit_test(test_encryption_and_cancel_requests),
        cmocka_unit_test(test_startup_malformed),
        cmocka_unit_test(test_startup_too_many_params),
        cmocka_unit_test(test_query_roundtrip_and_prefixes),
        cmocka_unit_test(test_terminate_password_and_pipelining),
        cmocka_unit_test(test_extended_protocol_reported_unsupported),
        cmocka_unit_test(test_message_malformed),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_builders_auth_and_status),
        cmocka_unit_test(test_builders_rows),
        cmocka_unit_test(test_builders_error_and_notice),
        cmocka_unit_test(test_buf_limit_sticky_and_truncate),
        cmocka_unit_test(test_row_description_too_many_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
