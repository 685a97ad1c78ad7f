/* PostgreSQL v3 wire protocol codec. See pgwire.h for the contracts.
 *
 * Wire shapes used here (PostgreSQL docs, "Message Formats"):
 *   untyped packet:  int32 length (incl. itself) | int32 code | payload
 *   typed message:   byte type | int32 length (incl. itself, not type) | body
 * All integers are big-endian. Strings are NUL-terminated.
 */
#include "pgwire.h"

#include <stdlib.h>
#include <string.h>

#include "hx_err.h"

/* ======================================================================
 * Output buffer
 * ====================================================================== */

void pgw_buf_init(pgw_buf *b, size_t max_bytes)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_bytes = max_bytes;
    b->err = 0;
}

void pgw_buf_free(pgw_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void pgw_buf_drain(pgw_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void pgw_buf_truncate(pgw_buf *b, size_t len)
{
    if (len < b->len)
        b->len = len;
    b->err = 0;
}

/* Makes room for n more bytes, or sets the sticky error. */
static int buf_reserve(pgw_buf *b, size_t n)
{
    if (b->err)
        return b->err;
    size_t max = b->max_bytes ? b->max_bytes : PGW_BUF_BYTES_MAX_DEFAULT;
    if (n > max || b->len > max - n)
        return b->err = HX_ERR_TOO_BIG;
    if (b->len + n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap = cap > max / 2 ? max : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return b->err = HX_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int pgw_buf_put_bytes(pgw_buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n))
        return b->err;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int pgw_buf_put_u8(pgw_buf *b, uint8_t v)
{
    return pgw_buf_put_bytes(b, &v, 1);
}

int pgw_buf_put_u16(pgw_buf *b, uint16_t v)
{
    uint8_t be[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    return pgw_buf_put_bytes(b, be, 2);
}

int pgw_buf_put_u32(pgw_buf *b, uint32_t v)
{
    uint8_t be[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16),
                      (uint8_t)(v >> 8), (uint8_t)v };
    return pgw_buf_put_bytes(b, be, 4);
}

int pgw_buf_put_cstr(pgw_buf *b, const char *s)
{
    return pgw_buf_put_bytes(b, s, strlen(s) + 1);
}

size_t pgw_msg_begin(pgw_buf *b, uint8_t type)
{
    size_t start = b->len;
    pgw_buf_put_u8(b, type);
    pgw_buf_put_u32(b, 0); /* patched by pgw_msg_end */
    return start;
}

int pgw_msg_end(pgw_buf *b, size_t start)
{
    if (b->err)
        return b->err;
    size_t n = b->len - start - 1; /* the length excludes the type byte */
    if (n > INT32_MAX)
        return b->err = HX_ERR_TOO_BIG;
    uint8_t *p = b->data + start + 1;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    return 0;
}

/* ======================================================================
 * Parsers
 * ====================================================================== */

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Length of the NUL-terminated string at p, searching at most n bytes;
 * n when there is no NUL. */
static size_t str_len_bounded(const uint8_t *p, size_t n)
{
    const uint8_t *z = memchr(p, 0, n);
    return z ? (size_t)(z - p) : n;
}

static int startup_fail(pgw_startup *out, int err, const char *why)
{
    out->error = why;
    return err;
}

/* Parameters: (name NUL value NUL)* NUL, filling exactly [p, p + n). */
static int parse_startup_params(const uint8_t *p, size_t n, pgw_startup *out)
{
    size_t off = 0;
    for (;;) {
        if (off >= n)
            return startup_fail(out, HX_ERR_PROTOCOL,
                                "startup packet lacks its final terminator");
        if (p[off] == 0) {
            if (off + 1 != n)
                return startup_fail(out, HX_ERR_PROTOCOL,
                                    "bytes after the startup packet terminator");
            return 0;
        }
        size_t nl = str_len_bounded(p + off, n - off);
        if (off + nl >= n)
            return startup_fail(out, HX_ERR_PROTOCOL,
                                "startup parameter name not terminated");
        const char *name = (const char *)(p + off);
        off += nl + 1;
        if (off >= n)
            return startup_fail(out, HX_ERR_PROTOCOL,
                                "startup parameter without a value");
        size_t vl = str_len_bounded(p + off, n - off);
        if (off + vl >= n)
            return startup_fail(out, HX_ERR_PROTOCOL,
                                "startup parameter value not terminated");
        const char *value = (const char *)(p + off);
        off += vl + 1;
        if (out->nparams == PGW_STARTUP_PARAMS_MAX)
            return startup_fail(out, HX_ERR_TOO_BIG,
                                "too many startup parameters");
        out->params[out->nparams].name = name;
        out->params[out->nparams].value = value;
        out->nparams++;
    }
}

int pgw_parse_startup(const uint8_t *buf, size_t len, pgw_startup *out,
                      size_t *consumed)
{
    memset(out, 0, sizeof(*out));
    *consumed = 0;
    if (len < 4)
        return 0;
    uint32_t n = get_u32(buf);
    if (n < 8)
        return startup_fail(out, HX_ERR_PROTOCOL,
                            "invalid length of startup packet");
    if (n > PGW_STARTUP_LEN_MAX)
        return startup_fail(out, HX_ERR_TOO_BIG, "startup packet too long");
    if (len < n)
        return 0;
    uint32_t code = get_u32(buf + 4);

    if (code == PGW_SSL_REQUEST_CODE || code == PGW_GSSENC_REQUEST_CODE) {
        if (n != 8)
            return startup_fail(out, HX_ERR_PROTOCOL,
                                "invalid length of encryption request");
        out->kind = code == PGW_SSL_REQUEST_CODE ? PGW_SSL_REQUEST
                                                 : PGW_GSSENC_REQUEST;
        *consumed = n;
        return 1;
    }
    if (code == PGW_CANCEL_REQUEST_CODE) {
        if (n != 16)
            return startup_fail(out, HX_ERR_PROTOCOL,
                                "invalid length of cancel request");
        out->kind = PGW_CANCEL_REQUEST;
        out->cancel_pid = (int32_t)get_u32(buf + 8);
        out->cancel_key = (int32_t)get_u32(buf + 12);
        *consumed = n;
        return 1;
    }
    out->kind = PGW_STARTUP;
    out->version = code;
    if (code >> 16 != 3) {
        out->bad_version = true;
        return startup_fail(out, HX_ERR_PROTOCOL,
                            "unsupported frontend protocol: server supports 3.0");
    }
    int rc = parse_startup_params(buf + 8, n - 8, out);
    if (rc)
        return rc;
    *consumed = n;
    return 1;
}

const char *pgw_startup_get(const pgw_startup *st, const char *name)
{
    for (size_t i = 0; i < st->nparams; i++)
        if (strcmp(st->params[i].name, name) == 0)
            return st->params[i].value;
    return NULL;
}

static int msg_fail(pgw_msg *out, int err, const char *why)
{
    out->error = why;
    return err;
}

/* Frontend types the codec knows but the session does not serve. */
static bool type_is_unsupported(uint8_t t)
{
    switch (t) {
    case 'P': case 'B': case 'D': case 'E': case 'S': case 'H': case 'C':
    case 'F': case 'd': case 'c': case 'f':
        return true;
    default:
        return false;
    }
}

int pgw_parse_message(const uint8_t *buf, size_t len, pgw_msg *out,
                      size_t *consumed)
{
    memset(out, 0, sizeof(*out));
    *consumed = 0;
    if (len < 1)
        return 0;
    uint8_t t = buf[0];
    out->type = t;
    if (t == 'Q')
        out->kind = PGW_MSG_QUERY;
    else if (t == 'X')
        out->kind = PGW_MSG_TERMINATE;
    else if (t == 'p')
        out->kind = PGW_MSG_PASSWORD;
    else if (type_is_unsupported(t))
        out->kind = PGW_MSG_UNSUPPORTED;
    else
        return msg_fail(out, HX_ERR_PROTOCOL, "invalid frontend message type");
    if (len < 5)
        return 0;
    uint32_t n = get_u32(buf + 1);
    if (n < 4)
        return msg_fail(out, HX_ERR_PROTOCOL, "invalid message length");
    if (n > PGW_MESSAGE_LEN_MAX)
        return msg_fail(out, HX_ERR_TOO_BIG, "message too long");
    if (len - 1 < n)
        return 0;
    out->body = buf + 5;
    out->body_len = n - 4;
    if (out->kind == PGW_MSG_QUERY || out->kind == PGW_MSG_PASSWORD) {
        /* One string filling the body exactly: its NUL is the last byte. */
        size_t sl = str_len_bounded(out->body, out->body_len);
        if (sl == out->body_len)
            return msg_fail(out, HX_ERR_PROTOCOL,
                            "message string not terminated");
        if (sl + 1 != out->body_len)
            return msg_fail(out, HX_ERR_PROTOCOL,
                            "bytes after the message string");
        out->text = (const char *)out->body;
        out->text_len = sl;
    }
    *consumed = (size_t)n + 1;
    return 1;
}

/* ======================================================================
 * Builders
 * ====================================================================== */

static int put_auth(pgw_buf *b, uint32_t code, const uint8_t *extra,
                    size_t extra_len)
{
    size_t m = pgw_msg_begin(b, 'R');
    pgw_buf_put_u32(b, code);
    pgw_buf_put_bytes(b, extra, extra_len);
    return pgw_msg_end(b, m);
}

int pgw_put_auth_ok(pgw_buf *b)
{
    return put_auth(b, 0, NULL, 0);
}

int pgw_put_auth_cleartext(pgw_buf *b)
{
    return put_auth(b, 3, NULL, 0);
}

int pgw_put_auth_md5(pgw_buf *b, const uint8_t salt[4])
{
    return put_auth(b, 5, salt, 4);
}

int pgw_put_parameter_status(pgw_buf *b, const char *name, const char *value)
{
    size_t m = pgw_msg_begin(b, 'S');
    pgw_buf_put_cstr(b, name);
    pgw_buf_put_cstr(b, value);
    return pgw_msg_end(b, m);
}

int pgw_put_backend_key(pgw_buf *b, int32_t pid, int32_t secret)
{
    size_t m = pgw_msg_begin(b, 'K');
    pgw_buf_put_u32(b, (uint32_t)pid);
    pgw_buf_put_u32(b, (uint32_t)secret);
    return pgw_msg_end(b, m);
}

int pgw_put_ready(pgw_buf *b, char status)
{
    size_t m = pgw_msg_begin(b, 'Z');
    pgw_buf_put_u8(b, (uint8_t)status);
    return pgw_msg_end(b, m);
}

int pgw_put_negotiate_version(pgw_buf *b, uint32_t newest_minor,
                              size_t nunrecognized, const char *const *names)
{
    if (nunrecognized > INT32_MAX)
        return b->err ? b->err : (b->err = HX_ERR_INVALID);
    size_t m = pgw_msg_begin(b, 'v');
    pgw_buf_put_u32(b, newest_minor);
    pgw_buf_put_u32(b, (uint32_t)nunrecognized);
    for (size_t i = 0; i < nunrecognized; i++)
        pgw_buf_put_cstr(b, names[i]);
    return pgw_msg_end(b, m);
}

int16_t pgw_type_len(uint32_t type_oid)
{
    switch (type_oid) {
    case PGW_OID_INT8:
    case PGW_OID_FLOAT8:
        return 8;
    default:
        return -1;
    }
}

int pgw_put_row_description(pgw_buf *b, size_t n, const pgw_field *fields)
{
    if (n > INT16_MAX)
        return b->err ? b->err : (b->err = HX_ERR_INVALID);
    size_t m = pgw_msg_begin(b, 'T');
    pgw_buf_put_u16(b, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        pgw_buf_put_cstr(b, fields[i].name);
        pgw_buf_put_u32(b, 0);                       /* table OID */
        pgw_buf_put_u16(b, 0);                       /* attribute number */
        pgw_buf_put_u32(b, fields[i].type_oid);
        pgw_buf_put_u16(b, (uint16_t)pgw_type_len(fields[i].type_oid));
        pgw_buf_put_u32(b, UINT32_MAX);              /* typmod -1 */
        pgw_buf_put_u16(b, 0);                       /* text format */
    }
    return pgw_msg_end(b, m);
}

size_t pgw_datarow_begin(pgw_buf *b, uint16_t ncols)
{
    size_t m = pgw_msg_begin(b, 'D');
    pgw_buf_put_u16(b, ncols);
    return m;
}

int pgw_datarow_value(pgw_buf *b, const void *p, size_t n)
{
    if (n > INT32_MAX)
        return b->err ? b->err : (b->err = HX_ERR_TOO_BIG);
    pgw_buf_put_u32(b, (uint32_t)n);
    return pgw_buf_put_bytes(b, p, n);
}

int pgw_datarow_null(pgw_buf *b)
{
    return pgw_buf_put_u32(b, UINT32_MAX); /* -1 */
}

int pgw_datarow_bytea(pgw_buf *b, const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n > (INT32_MAX - 2) / 2)
        return b->err ? b->err : (b->err = HX_ERR_TOO_BIG);
    size_t out_len = 2 + 2 * n;
    if (pgw_buf_put_u32(b, (uint32_t)out_len) || buf_reserve(b, out_len))
        return b->err;
    uint8_t *d = b->data + b->len;
    const uint8_t *s = p;
    *d++ = '\\';
    *d++ = 'x';
    for (size_t i = 0; i < n; i++) {
        *d++ = (uint8_t)hex[s[i] >> 4];
        *d++ = (uint8_t)hex[s[i] & 15];
    }
    b->len += out_len;
    return 0;
}

int pgw_put_data_row(pgw_buf *b, uint16_t ncols, const char *const *values,
                     const size_t *lens)
{
    size_t m = pgw_datarow_begin(b, ncols);
    for (uint16_t i = 0; i < ncols; i++) {
        if (values[i] == NULL)
            pgw_datarow_null(b);
        else
            pgw_datarow_value(b, values[i], lens[i]);
    }
    return pgw_msg_end(b, m);
}

int pgw_put_command_complete(pgw_buf *b, const char *tag)
{
    size_t m = pgw_msg_begin(b, 'C');
    pgw_buf_put_cstr(b, tag);
    return pgw_msg_end(b, m);
}

int pgw_put_empty_query(pgw_buf *b)
{
    size_t m = pgw_msg_begin(b, 'I');
    return pgw_msg_end(b, m);
}

static int put_fields(pgw_buf *b, uint8_t type, const char *severity,
                      const char *sqlstate, const char *message,
                      const char *detail, const char *hint)
{
    size_t m = pgw_msg_begin(b, type);
    /* 'S' may be localized; 'V' (protocol 3.0, PostgreSQL 9.6+) never is. */
    pgw_buf_put_u8(b, 'S');
    pgw_buf_put_cstr(b, severity);
    pgw_buf_put_u8(b, 'V');
    pgw_buf_put_cstr(b, severity);
    pgw_buf_put_u8(b, 'C');
    pgw_buf_put_cstr(b, sqlstate);
    pgw_buf_put_u8(b, 'M');
    pgw_buf_put_cstr(b, message);
    if (detail) {
        pgw_buf_put_u8(b, 'D');
        pgw_buf_put_cstr(b, detail);
    }
    if (hint) {
        pgw_buf_put_u8(b, 'H');
        pgw_buf_put_cstr(b, hint);
    }
    pgw_buf_put_u8(b, 0);
    return pgw_msg_end(b, m);
}

int pgw_put_error(pgw_buf *b, const char *severity, const char *sqlstate,
                  const char *message, const char *detail, const char *hint)
{
    return put_fields(b, 'E', severity, sqlstate, message, detail, hint);
}

int pgw_put_notice(pgw_buf *b, const char *severity, const char *sqlstate,
                   const char *message, const char *detail, const char *hint)
{
    return put_fields(b, 'N', severity, sqlstate, message, detail, hint);
}
