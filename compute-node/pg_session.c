/* PostgreSQL protocol session over SQLite.
 *
 * NOTES ON THE DESIGN OF THE SESSION
 *
 * States (enum pg_session_state), moved only by pg_session_feed():
 *
 *   STARTUP --StartupMessage, password set--> AUTH
 *   STARTUP --StartupMessage, trust, db_open ok--> READY
 *   AUTH    --right password, db_open ok--> READY
 *   STARTUP --SSLRequest / GSSENCRequest--> STARTUP (answered 'N', once each)
 *   any     --Terminate, CancelRequest, bad password, db_open failure,
 *             protocol violation--> CLOSED
 *
 * Invariants:
 *  1. db != NULL exactly in READY (and in CLOSED after READY).
 *  2. Every Query message gets exactly one ReadyForQuery, appended last.
 *  3. failed is set only while a transaction block is open from the
 *     client's point of view: it is set when a statement fails inside a
 *     block and cleared only by COMMIT/END/ROLLBACK/ABORT (which roll back)
 *     or a successful ROLLBACK TO SAVEPOINT. While set, every other
 *     statement is refused with 25P02 and not run. SQLite may already have
 *     rolled the transaction back itself (SQLITE_FULL, SQLITE_IOERR); the
 *     block still reads 'E' until the client ends it.
 *  4. txn_wrote is true when the open SQLite transaction ran a statement
 *     that may write; it is cleared whenever SQLite is back in autocommit.
 *     before_reply runs iff a statement succeeded, left SQLite in
 *     autocommit and was not a rollback; it is told txn_wrote. So every
 *     reply that confirms a transaction, read-only ones included, waits
 *     until what the transaction wrote or read is durable; rows sent
 *     inside an open block are provisional until its COMMIT is answered.
 *     A reply the hook cannot confirm carries no rows and no tag: only the
 *     error (40003 when the deadline passed: outcome unknown).
 *  5. After an extended-protocol message (Parse, Bind, Describe, Execute,
 *     Close) the session answers one 0A000 error, then discards everything
 *     but Terminate until Sync, which gets ReadyForQuery (PostgreSQL's
 *     error recovery for the extended protocol). A lone Sync gets just
 *     ReadyForQuery; Flush and stray CopyData/Done/Fail are ignored.
 *
 * Cancel (hx_vfs_cancel, from the owner's on_cancel): it ends the Query
 * being run when it arrives, as in PostgreSQL: the running statement fails
 * with 57014 (sqlite3_interrupt, or a lock wait the busy handler gave up:
 * SQLITE_BUSY with hx_vfs_cancelled), and so does any later statement of
 * the same string. run_query() forgets a cancel as it starts, so one that
 * arrived while the session was idle touches nothing. A cancelled
 * statement fails like any other: inside a block it aborts the block.
 * A cancel landing after a statement's check and before SQLite starts
 * it still ends it: the connection's progress handler reads the flag
 * (hx_vfs.h HX_VFS_CANCEL_CHECK_OPS), where SQLite's own interrupt flag
 * would be cleared as the statement starts.
 *
 * Statement execution: the query string is cut with sqlite3_prepare_v2()'s
 * tail pointer. Transaction control is recognised by its first keyword
 * and run as canonical SQLite (BEGIN/COMMIT/ROLLBACK) so PostgreSQL forms
 * (START TRANSACTION, BEGIN ISOLATION LEVEL ..., END, ABORT, ... WORK)
 * work, and a redundant BEGIN/COMMIT is a WARNING as in PostgreSQL rather
 * than a SQLite error. Each statement outside a block commits on its own
 * (PostgreSQL would run a multi-statement string as one implicit
 * transaction).
 */
#include "pg_session.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "hx_vfs.h"
#include "sql_shape.h"
#include "stmt_cache.h"

#define PG_SERVER_VERSION "15.0 (hexad)"
#define SQLSTATE_PROTOCOL_VIOLATION "08P01"
#define SQLSTATE_FEATURE_NOT_SUPPORTED "0A000"
#define SQLSTATE_IN_FAILED_TXN "25P02"
#define SQLSTATE_PROGRAM_LIMIT "54000"
#define SQLSTATE_OUT_OF_MEMORY "53200"
#define SQLSTATE_IO_ERROR "58030"
#define SQLSTATE_QUERY_CANCELED "57014"
#define MSG_QUERY_CANCELED "canceling statement due to user request"
/* statement_completion_unknown: the commit may or may not become durable.
 * Class 40 like a serialization failure, but clients must not blindly
 * retry it (the first attempt may have taken effect). */
#define SQLSTATE_COMPLETION_UNKNOWN "40003"

#define KEYWORD_LEN_MAX 24
#define ERRMSG_LEN_MAX 512
#define WHY_LEN_MAX 256

struct pg_session {
    enum pg_session_state state;
    pg_session_opts o;       /* callbacks and ids; o.password is ours */
    char *password;          /* owned copy, NULL for trust */
    char *user;              /* owned */
    char *database;          /* owned */
    char *app_name;          /* owned; startup application_name or "" */
    sqlite3 *db;             /* from o.db_open; invariant 1 */
    stmt_cache *stmts;       /* NULL (out of memory): prepare every time */
    sql_shape *shape;        /* scratch for run_statement(); with stmts */
    bool failed;             /* invariant 3 */
    bool txn_wrote;          /* invariant 4 */
    bool skip_until_sync;    /* invariant 5 */
    bool ssl_refused;        /* each encryption request is answered once */
    bool gss_refused;
    uint64_t statements;     /* pg_session_statements() */
};

/* ======================================================================
 * Small helpers
 * ====================================================================== */

static void slog(pg_session *s, const char *fmt, ...)
{
    if (s->o.log == NULL)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    s->o.log(s->o.arg, line);
}

static const char *state_name(enum pg_session_state st)
{
    switch (st) {
    case PG_SESSION_STARTUP: return "STARTUP";
    case PG_SESSION_AUTH: return "AUTH";
    case PG_SESSION_READY: return "READY";
    case PG_SESSION_CLOSED: return "CLOSED";
    }
    return "?";
}

static void set_state(pg_session *s, enum pg_session_state to)
{
    slog(s, "pg_session pid=%d: %s -> %s", (int)s->o.backend_pid,
         state_name(s->state), state_name(to));
    s->state = to;
}

static char *dup_str(const char *p)
{
    size_t n = strlen(p) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, p, n);
    return d;
}

/* Sends FATAL and closes. */
static int fatal(pg_session *s, pgw_buf *out, const char *sqlstate,
                 const char *msg)
{
    slog(s, "pg_session pid=%d: FATAL %s %s", (int)s->o.backend_pid,
         sqlstate, msg);
    pgw_put_error(out, "FATAL", sqlstate, msg, NULL, NULL);
    set_state(s, PG_SESSION_CLOSED);
    return PG_SESSION_CLOSE;
}

char pg_session_txn_status(const pg_session *s)
{
    if (s->failed)
        return 'E';
    if (s->db && !sqlite3_get_autocommit(s->db))
        return 'T';
    return 'I';
}

/* ======================================================================
 * SQL text scanning
 *
 * Just enough lexing to find keywords and statement ends: whitespace,
 * -- and C comments, quoted strings and identifiers ('', "", ``, []).
 * ====================================================================== */

static const char *skip_space(const char *p)
{
    for (;;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
        } else {
            return p;
        }
    }
}

/* Skips empty statements too: whitespace, comments and stray ';'. */
static const char *skip_space_semis(const char *p)
{
    for (;;) {
        p = skip_space(p);
        if (*p != ';')
            return p;
        p++;
    }
}

/* Reads one identifier-like word at p into kw (uppercased, truncated to
 * KEYWORD_LEN_MAX - 1); returns the position after it, or p if there is
 * no word. */
static const char *read_word(const char *p, char kw[KEYWORD_LEN_MAX])
{
    size_t n = 0;
    const char *q = p;
    while (isalnum((unsigned char)*q) || *q == '_') {
        if (n < KEYWORD_LEN_MAX - 1)
            kw[n++] = (char)toupper((unsigned char)*q);
        q++;
    }
    kw[n] = 0;
    return q;
}

/* Past a quoted token starting at p (whose first char is the quote). */
static const char *skip_quoted(const char *p)
{
    char close = *p == '[' ? ']' : *p;
    p++;
    while (*p) {
        if (*p == close) {
            if (close != ']' && p[1] == close) { /* doubled quote */
                p += 2;
                continue;
            }
            return p + 1;
        }
        p++;
    }
    return p;
}

/* Calls fn(word, depth, ctx) for each word in the statement at p, stopping
 * at the statement's ';' or the end, or when fn returns true. Returns the
 * position of the ';' (or the NUL). */
typedef bool (*word_fn)(const char *word, int depth, void *ctx);

static const char *scan_statement(const char *p, word_fn fn, void *ctx)
{
    int depth = 0;
    char kw[KEYWORD_LEN_MAX];
    for (;;) {
        p = skip_space(p);
        char c = *p;
        if (c == 0 || c == ';')
            return p;
        if (c == '\'' || c == '"' || c == '`' || c == '[') {
            p = skip_quoted(p);
        } else if (isalpha((unsigned char)c) || c == '_') {
            p = read_word(p, kw);
            if (fn && fn(kw, depth, ctx))
                fn = NULL; /* keep scanning for the end only */
        } else {
            if (c == '(')
                depth++;
            else if (c == ')' && depth > 0)
                depth--;
            p++;
        }
    }
}

/* ======================================================================
 * Statement classification and command tags
 * ====================================================================== */

enum stmt_class {
    STMT_OTHER,
    STMT_BEGIN,        /* BEGIN ..., START TRANSACTION ... */
    STMT_COMMIT,       /* COMMIT, END [WORK|TRANSACTION] */
    STMT_ROLLBACK,     /* ROLLBACK, ABORT [WORK|TRANSACTION] */
    STMT_ROLLBACK_TO,  /* ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] x */
};

struct classify_ctx {
    int nwords;
    char w[3][KEYWORD_LEN_MAX];  /* first three words */
    bool has_to;                 /* a TO word (ROLLBACK TO) */
    bool only_txn_words;         /* nothing but WORK/TRANSACTION after verb */
    char verb[KEYWORD_LEN_MAX];  /* WITH: the main verb at depth 0 */
};

static bool classify_word(const char *word, int depth, void *vctx)
{
    struct classify_ctx *c = vctx;
    if (c->nwords < 3)
        memcpy(c->w[c->nwords], word, KEYWORD_LEN_MAX);
    if (c->nwords > 0) {
        if (strcmp(word, "TO") == 0)
            c->has_to = true;
        if (strcmp(word, "WORK") != 0 && strcmp(word, "TRANSACTION") != 0)
            c->only_txn_words = false;
    }
    if (c->verb[0] == 0 && depth == 0 && c->nwords > 0 &&
        (strcmp(word, "SELECT") == 0 || strcmp(word, "INSERT") == 0 ||
         strcmp(word, "REPLACE") == 0 || strcmp(word, "UPDATE") == 0 ||
         strcmp(word, "DELETE") == 0 || strcmp(word, "VALUES") == 0))
        memcpy(c->verb, word, KEYWORD_LEN_MAX);
    c->nwords++;
    return c->nwords > 64; /* enough to classify */
}

/* Classifies the statement at p and sets *end to its ';' or NUL. */
static enum stmt_class classify(const char *p, struct classify_ctx *c,
                                const char **end)
{
    memset(c, 0, sizeof(*c));
    c->only_txn_words = true;
    *end = scan_statement(p, classify_word, c);
    const char *w0 = c->w[0];
    if (strcmp(w0, "BEGIN") == 0 ||
        (strcmp(w0, "START") == 0 && strcmp(c->w[1], "TRANSACTION") == 0))
        return STMT_BEGIN;
    if ((strcmp(w0, "COMMIT") == 0 || strcmp(w0, "END") == 0) &&
        c->only_txn_words)
        return STMT_COMMIT;
    if (strcmp(w0, "ROLLBACK") == 0 || strcmp(w0, "ABORT") == 0) {
        if (c->has_to)
            return STMT_ROLLBACK_TO;
        if (c->only_txn_words)
            return STMT_ROLLBACK;
    }
    return STMT_OTHER;
}

static bool is_create_modifier(const char *w)
{
    return strcmp(w, "TEMP") == 0 || strcmp(w, "TEMPORARY") == 0 ||
           strcmp(w, "UNIQUE") == 0 || strcmp(w, "VIRTUAL") == 0 ||
           strcmp(w, "UNLOGGED") == 0;
}

/* The CommandComplete tag for a finished statement. rows: rows sent;
 * changes: sqlite3_changes() after it. */
static void make_tag(const struct classify_ctx *c, long long rows,
                     long long changes, char *tag, size_t tag_len)
{
    const char *w0 = c->w[0];
    const char *verb = w0;
    if (strcmp(w0, "WITH") == 0 && c->verb[0])
        verb = c->verb;
    if (strcmp(verb, "SELECT") == 0 || strcmp(verb, "VALUES") == 0)
        snprintf(tag, tag_len, "SELECT %lld", rows);
    else if (strcmp(verb, "INSERT") == 0 || strcmp(verb, "REPLACE") == 0)
        snprintf(tag, tag_len, "INSERT 0 %lld", changes);
    else if (strcmp(verb, "UPDATE") == 0)
        snprintf(tag, tag_len, "UPDATE %lld", changes);
    else if (strcmp(verb, "DELETE") == 0)
        snprintf(tag, tag_len, "DELETE %lld", changes);
    else if (strcmp(w0, "CREATE") == 0 || strcmp(w0, "DROP") == 0 ||
             strcmp(w0, "ALTER") == 0) {
        const char *obj = c->w[1];
        if (strcmp(w0, "CREATE") == 0 && is_create_modifier(obj))
            obj = c->w[2];
        snprintf(tag, tag_len, "%s %s", w0, obj);
    } else if (w0[0] == 0)
        snprintf(tag, tag_len, "%s", rows ? "SELECT" : "OK");
    else
        snprintf(tag, tag_len, "%s", w0);
}

/* ======================================================================
 * SQLite errors
 * ====================================================================== */

/* ASCII case-insensitive substring test (locale-independent). */
static bool contains_nocase(const char *hay, const char *needle)
{
    for (; *hay; hay++) {
        size_t i = 0;
        while (needle[i] && hay[i] &&
               toupper((unsigned char)hay[i]) ==
                   toupper((unsigned char)needle[i]))
            i++;
        if (needle[i] == 0)
            return true;
    }
    return false;
}

/* SQLSTATE for an extended SQLite result code and its message (a cancel,
 * SQLITE_INTERRUPT among them, is put_sqlite_error's to recognise). */
static const char *sqlstate_for(int xrc, const char *msg)
{
    switch (xrc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY: return "23505";
    case SQLITE_CONSTRAINT_NOTNULL: return "23502";
    case SQLITE_CONSTRAINT_FOREIGNKEY: return "23503";
    case SQLITE_CONSTRAINT_CHECK: return "23514";
    default: break;
    }
    switch (xrc & 0xff) {
    case SQLITE_ERROR:
        if (contains_nocase(msg, "syntax error") ||
            contains_nocase(msg, "unrecognized token") ||
            contains_nocase(msg, "incomplete input"))
            return "42601";
        if (contains_nocase(msg, "no such table"))
            return "42P01";
        if (contains_nocase(msg, "no such column"))
            return "42703";
        if (contains_nocase(msg, "no such function"))
            return "42883";
        if (contains_nocase(msg, "already exists"))
            return "42P07";
        return "XX000";
    case SQLITE_CONSTRAINT: return "23000";
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return "40001";
    case SQLITE_FULL: return "53100";
    case SQLITE_IOERR: return "58030";
    case SQLITE_NOMEM: return "53200";
    case SQLITE_READONLY: return "25006";
    case SQLITE_TOOBIG: return "54000";
    case SQLITE_MISMATCH: return "42804";
    case SQLITE_CORRUPT: return "XX001";
    default: return "XX000";
    }
}

/* Reports the error the last SQLite call left on the connection. sql: the
 * statement text, to recognise PostgreSQL catalog queries. */
static void put_sqlite_error(pg_session *s, pgw_buf *out, int rc,
                             const char *sql, const char *sql_end)
{
    char msg[ERRMSG_LEN_MAX];
    int xrc = sqlite3_extended_errcode(s->db);
    if ((xrc & 0xff) != (rc & 0xff)) /* rc is authoritative */
        xrc = rc;
    /* A cancelled lock wait ends in SQLITE_BUSY (the busy handler gave
     * up), not SQLITE_INTERRUPT: both are the client's cancel. */
    if ((xrc & 0xff) == SQLITE_INTERRUPT ||
        ((xrc & 0xff) == SQLITE_BUSY && hx_vfs_cancelled(s->db))) {
        pgw_put_error(out, "ERROR", SQLSTATE_QUERY_CANCELED,
                      MSG_QUERY_CANCELED, NULL, NULL);
        return;
    }
    snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(s->db));
    const char *state = sqlstate_for(xrc, msg);

    /* Catalog queries (psql \d, drivers' introspection) cannot work on
     * SQLite: say so instead of a puzzling syntax error. */
    size_t n = (size_t)(sql_end - sql);
    char head[1024];
    if (n >= sizeof(head))
        n = sizeof(head) - 1;
    memcpy(head, sql, n);
    head[n] = 0;
    if ((xrc & 0xff) == SQLITE_ERROR &&
        (contains_nocase(head, "pg_catalog") ||
         contains_nocase(head, "information_schema"))) {
        pgw_put_error(out, "ERROR", "42P01",
                      "PostgreSQL system catalogs (pg_catalog, "
                      "information_schema) do not exist: hexad runs SQL "
                      "in SQLite", msg,
                      "List tables with: SELECT name FROM sqlite_schema "
                      "WHERE type = 'table'");
        return;
    }
    pgw_put_error(out, "ERROR", state, msg, NULL, NULL);
}

/* ======================================================================
 * Running statements
 * ====================================================================== */

/* Type OID for a result column: from the declared type when it fixes one,
 * else from the first row's value (ty; 0 when there is no row). */
static uint32_t column_oid(sqlite3_stmt *st, int i, int ty)
{
    const char *decl = sqlite3_column_decltype(st, i);
    if (decl && *decl) {
        /* SQLite's affinity rules (datatype3.html, 3.1), in order. */
        if (contains_nocase(decl, "INT"))
            return PGW_OID_INT8;
        if (contains_nocase(decl, "CHAR") || contains_nocase(decl, "CLOB") ||
            contains_nocase(decl, "TEXT"))
            return PGW_OID_TEXT;
        if (contains_nocase(decl, "BLOB"))
            return PGW_OID_BYTEA;
        if (contains_nocase(decl, "REAL") || contains_nocase(decl, "FLOA") ||
            contains_nocase(decl, "DOUB"))
            return PGW_OID_FLOAT8;
        /* NUMERIC affinity: the value decides. */
    }
    switch (ty) {
    case SQLITE_INTEGER: return PGW_OID_INT8;
    case SQLITE_FLOAT: return PGW_OID_FLOAT8;
    case SQLITE_BLOB: return PGW_OID_BYTEA;
    default: return PGW_OID_TEXT;
    }
}

static int put_row_description(pgw_buf *out, sqlite3_stmt *st, int ncols,
                               bool have_row)
{
    pgw_field *f = malloc((size_t)ncols * sizeof(*f));
    if (f == NULL)
        return out->err = HX_ERR_NOMEM;
    for (int i = 0; i < ncols; i++) {
        const char *name = sqlite3_column_name(st, i);
        f[i].name = name ? name : "?column?";
        f[i].type_oid = column_oid(st, i,
                                   have_row ? sqlite3_column_type(st, i) : 0);
    }
    int rc = pgw_put_row_description(out, (size_t)ncols, f);
    free(f);
    return rc;
}

/* float8 text output as PostgreSQL 12+ prints it: the shortest string
 * that reads back as the same double. */
static int format_double(double v, char *buf, size_t n)
{
    if (isnan(v))
        return snprintf(buf, n, "NaN");
    if (isinf(v))
        return snprintf(buf, n, v > 0 ? "Infinity" : "-Infinity");
    int len = 0;
    for (int prec = 1; prec <= 17; prec++) {
        len = snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return len;
}

static int put_data_row(pgw_buf *out, sqlite3_stmt *st, int ncols)
{
    size_t m = pgw_datarow_begin(out, (uint16_t)ncols);
    for (int i = 0; i < ncols; i++) {
        char num[40];
        int len;
        switch (sqlite3_column_type(st, i)) {
        case SQLITE_NULL:
            pgw_datarow_null(out);
            break;
        case SQLITE_INTEGER:
            len = snprintf(num, sizeof(num), "%lld",
                           (long long)sqlite3_column_int64(st, i));
            pgw_datarow_value(out, num, (size_t)len);
            break;
        case SQLITE_FLOAT:
            len = format_double(sqlite3_column_double(st, i), num,
                                sizeof(num));
            pgw_datarow_value(out, num, (size_t)len);
            break;
        case SQLITE_BLOB: {
            const void *p = sqlite3_column_blob(st, i);
            int n = sqlite3_column_bytes(st, i);
            pgw_datarow_bytea(out, p ? p : "", (size_t)n);
            break;
        }
        default: {
            const unsigned char *p = sqlite3_column_text(st, i);
            int n = sqlite3_column_bytes(st, i);
            if (p == NULL) /* out of memory converting */
                return out->err ? out->err : (out->err = HX_ERR_NOMEM);
            pgw_datarow_value(out, p, (size_t)n);
            break;
        }
        }
    }
    return pgw_msg_end(out, m);
}

/* Runs one prepared statement and streams its rows. Returns 0 on success
 * (*rows set), an SQLite error code (error not yet reported), or a
 * negative hexad error from the output buffer (nothing reported). */
static int step_statement(sqlite3_stmt *st, pgw_buf *out, long long *rows)
{
    *rows = 0;
    int rc = sqlite3_step(st);
    /* Counted after the first step: a cached statement whose schema
     * changed is compiled again inside it ("select *" after ADD COLUMN). */
    int ncols = sqlite3_column_count(st);
    if (ncols > 0 && (rc == SQLITE_ROW || rc == SQLITE_DONE)) {
        if (ncols > INT16_MAX)
            return SQLITE_TOOBIG;
        if (put_row_description(out, st, ncols, rc == SQLITE_ROW))
            return out->err;
    }
    while (rc == SQLITE_ROW) {
        if (ncols > 0) {
            if (put_data_row(out, st, ncols))
                return out->err;
            (*rows)++;
        }
        rc = sqlite3_step(st);
    }
    return rc == SQLITE_DONE ? 0 : rc;
}

/* The cached statement for text, or NULL: prepare one for this run. */
static sqlite3_stmt *cached_stmt(pg_session *s, const char *text, size_t len)
{
    return s->stmts != NULL ? stmt_cache_get(s->stmts, text, len) : NULL;
}

/* Done with st: a cached statement is reset and unbound for its next run
 * (stmt_cache.h), or dropped after an error, which may come from a schema
 * it was compiled against; any other is finalized. */
static void release_stmt(pg_session *s, sqlite3_stmt *st, bool cached,
                         bool failed)
{
    if (!cached) {
        sqlite3_finalize(st);
    } else if (failed) {
        stmt_cache_drop(s->stmts, st);
    } else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Binds a shape's literals in order. The unquoted text of a literal is
 * bound in place: it lives in the client's query, which outlives the run,
 * and release_stmt() unbinds it. */
static int bind_literals(sqlite3_stmt *st, const sql_shape *sh)
{
    if ((size_t)sqlite3_bind_parameter_count(st) != sh->n_literals)
        return SQLITE_RANGE;
    for (size_t i = 0; i < sh->n_literals; i++) {
        const sql_literal *l = &sh->literals[i];
        int idx = (int)i + 1, rc;
        if (l->kind == SQL_LITERAL_INT) {
            rc = sqlite3_bind_int64(st, idx, l->value);
        } else if (!l->doubled) {
            rc = sqlite3_bind_text64(st, idx, l->text, l->len, SQLITE_STATIC,
                                     SQLITE_UTF8);
        } else {
            char *b = malloc(l->len + 1);
            if (b == NULL)
                return SQLITE_NOMEM;
            size_t n = sql_literal_text(l, b);
            rc = sqlite3_bind_text64(st, idx, b, n, free, SQLITE_UTF8);
        }
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

/* Runs canonical SQL (transaction control) on the connection. Returns an
 * SQLite result code. */
static int exec_simple(pg_session *s, const char *sql)
{
    sqlite3_stmt *st = cached_stmt(s, sql, strlen(sql));
    bool cached = st != NULL;
    int rc = cached ? SQLITE_OK : sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE || rc == SQLITE_ROW)
            rc = SQLITE_OK;
    }
    release_stmt(s, st, cached, false);
    return rc;
}

/* What a statement did, for the caller's bookkeeping. */
enum stmt_outcome {
    STMT_OK,       /* tag appended; continue with the next statement */
    STMT_FAILED,   /* error appended; skip the rest of the string */
    STMT_NOMEM,    /* even the error could not be appended */
};

/* Calls before_reply after a successful statement that left SQLite in
 * autocommit, unless it was a rollback (invariant 4). Returns 0 or the
 * hook's error; *wrote tells what kind of transaction the reply confirms. */
static int reply_hook(pg_session *s, bool was_rollback, bool *wrote,
                      char *why, size_t why_len)
{
    *wrote = s->txn_wrote;
    if (!sqlite3_get_autocommit(s->db))
        return 0;
    s->txn_wrote = false;
    if (was_rollback || s->o.before_reply == NULL)
        return 0;
    return s->o.before_reply(s->o.arg, s, *wrote, why, why_len);
}

/* The hook could not confirm the reply: everything the statement appended
 * since mark (rows) gives way to an error that says what is known, why,
 * and what to do. */
static void put_unconfirmed(pgw_buf *out, size_t mark, int rc, bool wrote,
                            const char *why)
{
    bool late = rc == HX_ERR_TIMEOUT;
    bool fenced = rc == HX_ERR_FENCED;
    const char *cause = late ? "the storage write quorum (4 of 6 copies) "
                               "did not confirm it before the deadline "
                               "(commit_timeout_ms)"
                             : hx_strerror(rc);
    char msg[ERRMSG_LEN_MAX];
    if (fenced)
        snprintf(msg, sizeof(msg), "%s outcome unknown: this writer was "
                 "fenced: a newer writer recovered the volume and owns it; "
                 "this server acknowledges nothing more and exits",
                 wrote ? "commit" : "read");
    else if (wrote)
        snprintf(msg, sizeof(msg), "commit outcome unknown: %s; the "
                 "transaction committed on the writer and may still "
                 "become durable", cause);
    else
        snprintf(msg, sizeof(msg), "read not confirmed durable: %s; what "
                 "this transaction read includes commits that may be lost "
                 "if the writer crashes", cause);
    const char *hint =
        fenced ? "Connect to the new writer (the cluster file's compute "
                 "line that started last) and read the data back to learn "
                 "whether the transaction took effect before retrying it."
        : wrote ? "Make 4 of every 6 storage copies reachable "
                  "(./hexad status shows the nodes that are down; "
                  "./hexad start NODE), then read the data back to "
                  "learn whether the transaction took effect before "
                  "retrying it."
                : "Make 4 of every 6 storage copies reachable "
                  "(./hexad status; ./hexad start NODE), then run "
                  "the query again.";
    pgw_buf_truncate(out, mark);
    pgw_put_error(out, "ERROR",
                  late || fenced ? SQLSTATE_COMPLETION_UNKNOWN
                                 : SQLSTATE_IO_ERROR,
                  msg, why[0] ? why : NULL, hint);
}

/* Appends CommandComplete, or, when the reply hook fails, an error in
 * place of everything appended since mark. */
static enum stmt_outcome finish_ok(pg_session *s, pgw_buf *out,
                                   const char *tag, bool was_rollback,
                                   size_t mark)
{
    char why[WHY_LEN_MAX] = "";
    bool wrote = false;
    int hrc = reply_hook(s, was_rollback, &wrote, why, sizeof(why));
    if (hrc) {
        slog(s, "pg_session pid=%d: before_reply (%s) failed: %s",
             (int)s->o.backend_pid, wrote ? "commit" : "read",
             hx_strerror(hrc));
        put_unconfirmed(out, mark, hrc, wrote, why);
        return STMT_FAILED;
    }
    pgw_put_command_complete(out, tag);
    return STMT_OK;
}

/* An error inside a transaction block aborts the block (invariant 3). */
static void note_failure(pg_session *s, bool in_block_before)
{
    if (in_block_before || !sqlite3_get_autocommit(s->db))
        s->failed = true;
    if (sqlite3_get_autocommit(s->db))
        s->txn_wrote = false;
}

static enum stmt_outcome run_txn_control(pg_session *s, pgw_buf *out,
                                         enum stmt_class k,
                                         const struct classify_ctx *c)
{
    bool in_txn = !sqlite3_get_autocommit(s->db);
    int rc;
    if (k == STMT_BEGIN) {
        if (s->failed) {
            pgw_put_error(out, "ERROR", SQLSTATE_IN_FAILED_TXN,
                          "current transaction is aborted, commands ignored "
                          "until end of transaction block", NULL, NULL);
            return STMT_FAILED;
        }
        if (in_txn) {
            pgw_put_notice(out, "WARNING", "25001",
                           "there is already a transaction in progress",
                           NULL, NULL);
            return finish_ok(s, out, "BEGIN", false, out->len);
        }
        /* Keep SQLite's own lock modes; PostgreSQL options map to BEGIN. */
        const char *sql = "BEGIN";
        if (strcmp(c->w[1], "IMMEDIATE") == 0)
            sql = "BEGIN IMMEDIATE";
        else if (strcmp(c->w[1], "EXCLUSIVE") == 0)
            sql = "BEGIN EXCLUSIVE";
        rc = exec_simple(s, sql);
        if (rc != SQLITE_OK) {
            put_sqlite_error(s, out, rc, sql, sql + strlen(sql));
            return STMT_FAILED;
        }
        s->txn_wrote = false;
        return finish_ok(s, out, "BEGIN", false, out->len);
    }

    /* COMMIT or ROLLBACK. */
    if (!in_txn && !s->failed) {
        pgw_put_notice(out, "WARNING", "25P01",
                       "there is no transaction in progress", NULL, NULL);
        return finish_ok(s, out, k == STMT_COMMIT ? "COMMIT" : "ROLLBACK",
                         true, out->len);
    }
    if (s->failed || k == STMT_ROLLBACK) {
        /* COMMIT of an aborted block rolls back, as in PostgreSQL. */
        s->failed = false;
        if (in_txn) {
            rc = exec_simple(s, "ROLLBACK");
            if (rc != SQLITE_OK) {
                put_sqlite_error(s, out, rc, "", "");
                note_failure(s, true);
                return STMT_FAILED;
            }
        }
        return finish_ok(s, out, "ROLLBACK", true, out->len);
    }
    rc = exec_simple(s, "COMMIT");
    if (rc != SQLITE_OK) {
        /* A failed COMMIT ends the block in PostgreSQL; SQLite may keep
         * it open (SQLITE_BUSY, deferred foreign keys), so roll back. */
        put_sqlite_error(s, out, rc, "", "");
        if (!sqlite3_get_autocommit(s->db))
            exec_simple(s, "ROLLBACK");
        s->txn_wrote = false;
        return STMT_FAILED;
    }
    return finish_ok(s, out, "COMMIT", false, out->len);
}

/* Runs the statement starting at *pp (not empty) and advances *pp past
 * it. */
static enum stmt_outcome run_statement(pg_session *s, const char **pp,
                                       pgw_buf *out)
{
    const char *p = *pp;
    const char *end;
    struct classify_ctx c;
    enum stmt_class k = classify(p, &c, &end);

    /* Cancelled after an earlier statement of this string ended. */
    if (hx_vfs_cancelled(s->db)) {
        *pp = *end ? end + 1 : end;
        pgw_put_error(out, "ERROR", SQLSTATE_QUERY_CANCELED,
                      MSG_QUERY_CANCELED, NULL, NULL);
        note_failure(s, !sqlite3_get_autocommit(s->db));
        return STMT_FAILED;
    }
    if (s->failed && k != STMT_COMMIT && k != STMT_ROLLBACK &&
        k != STMT_ROLLBACK_TO) {
        *pp = *end ? end + 1 : end;
        pgw_put_error(out, "ERROR", SQLSTATE_IN_FAILED_TXN,
                      "current transaction is aborted, commands ignored "
                      "until end of transaction block", NULL, NULL);
        return STMT_FAILED;
    }
    if (k == STMT_BEGIN || k == STMT_COMMIT || k == STMT_ROLLBACK) {
        *pp = *end ? end + 1 : end;
        return run_txn_control(s, out, k, &c);
    }
    bool in_block = !sqlite3_get_autocommit(s->db);
    if (strcmp(c.w[0], "COPY") == 0) {
        *pp = *end ? end + 1 : end;
        pgw_put_error(out, "ERROR", SQLSTATE_FEATURE_NOT_SUPPORTED,
                      "COPY is not supported", NULL,
                      "Load rows with INSERT (pgbench: create the tables "
                      "with SQL instead of pgbench -i).");
        note_failure(s, in_block);
        return STMT_FAILED;
    }

    /* A statement of a known shape runs its cached program with this
     * text's literals bound (sql_shape.h); any other is prepared. */
    bool shaped = s->stmts != NULL && sql_shape_of(p, end, s->shape);
    sqlite3_stmt *st = shaped ? cached_stmt(s, s->shape->text, s->shape->len)
                              : NULL;
    bool cached = st != NULL;
    if (cached && bind_literals(st, s->shape) != SQLITE_OK) {
        release_stmt(s, st, true, true);
        st = NULL;
        cached = false;
    }
    int rc;
    if (cached) {
        *pp = *end ? end + 1 : end;
    } else {
        const char *tail = NULL;
        rc = sqlite3_prepare_v2(s->db, p, -1, &st, &tail);
        if (rc != SQLITE_OK) {
            /* The tail is unreliable after a failed prepare; the rest of
             * the string is skipped anyway. */
            *pp = p + strlen(p);
            put_sqlite_error(s, out, rc, p, end);
            note_failure(s, in_block);
            return STMT_FAILED;
        }
        *pp = tail;
        if (st == NULL) /* only comments: nothing to run */
            return STMT_OK;
    }

    size_t mark = out->len;
    long long rows = 0;
    bool writes = !sqlite3_stmt_readonly(st);
    if (writes)
        hx_vfs_intend_write(s->db, 1);
    rc = step_statement(st, out, &rows);
    if (writes)
        hx_vfs_intend_write(s->db, 0);
    if (rc < 0) {
        /* The result overflowed out (or memory ran out): drop the partial
         * result, abandon the statement, report it instead. */
        int err = rc;
        release_stmt(s, st, cached, true);
        pgw_buf_truncate(out, mark);
        if (err == HX_ERR_TOO_BIG)
            pgw_put_error(out, "ERROR", SQLSTATE_PROGRAM_LIMIT,
                          "statement result too large for the reply buffer",
                          NULL, "Select fewer rows or use LIMIT.");
        else
            pgw_put_error(out, "ERROR", SQLSTATE_OUT_OF_MEMORY,
                          hx_strerror(err), NULL, NULL);
        note_failure(s, in_block);
        return out->err ? STMT_NOMEM : STMT_FAILED;
    }
    if (rc != SQLITE_OK) {
        put_sqlite_error(s, out, rc, p, end); /* before finalize clears it */
        release_stmt(s, st, cached, true);
        note_failure(s, in_block);
        return STMT_FAILED;
    }
    release_stmt(s, st, cached, false);
    if (writes)
        s->txn_wrote = true;
    /* A statement that is not a shape may have changed the schema, and so
     * made a shape that failed to prepare valid. */
    if (!shaped && s->stmts != NULL)
        stmt_cache_forget_failures(s->stmts);

    if (k == STMT_ROLLBACK_TO) {
        s->failed = false;
        return finish_ok(s, out, "ROLLBACK", false, mark);
    }
    char tag[64];
    make_tag(&c, rows, (long long)sqlite3_changes(s->db), tag, sizeof(tag));
    return finish_ok(s, out, tag, false, mark);
}

/* Runs a Query message's string: every statement until the first error,
 * then ReadyForQuery (invariant 2). */
static int run_query(pg_session *s, const char *sql, pgw_buf *out)
{
    hx_vfs_cancel_clear(s->db); /* a cancel while idle does nothing */
    const char *p = skip_space_semis(sql);
    if (*p == 0) {
        pgw_put_empty_query(out);
    } else {
        while (*p) {
            s->statements++;
            enum stmt_outcome r = run_statement(s, &p, out);
            if (r == STMT_NOMEM)
                return HX_ERR_NOMEM;
            if (r == STMT_FAILED)
                break;
            p = skip_space_semis(p);
        }
    }
    pgw_put_ready(out, pg_session_txn_status(s));
    return out->err;
}

/* ======================================================================
 * Startup and authentication
 * ====================================================================== */

static int put_parameters(pg_session *s, pgw_buf *out)
{
    static const char *const fixed[][2] = {
        { "server_version", PG_SERVER_VERSION },
        { "server_encoding", "UTF8" },
        { "client_encoding", "UTF8" },
        { "DateStyle", "ISO" },
        { "integer_datetimes", "on" },
        { "standard_conforming_strings", "on" },
        { "TimeZone", "UTC" },          /* SQLite's CURRENT_TIMESTAMP */
        { "IntervalStyle", "postgres" },
        { "is_superuser", "off" },
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        pgw_put_parameter_status(out, fixed[i][0], fixed[i][1]);
    pgw_put_parameter_status(out, "application_name", s->app_name);
    pgw_put_parameter_status(out, "session_authorization", s->user);
    return out->err;
}

/* Authentication succeeded: get the database and greet the client. */
static int enter_ready(pg_session *s, pgw_buf *out)
{
    sqlite3 *db = NULL;
    int rc = s->o.db_open(s->o.arg, s->user, s->database, &db);
    if (rc != 0 || db == NULL) {
        char msg[256];
        if (rc == HX_ERR_NOT_FOUND) {
            snprintf(msg, sizeof(msg), "database \"%s\" does not exist",
                     s->database);
            return fatal(s, out, "3D000", msg);
        }
        snprintf(msg, sizeof(msg), "cannot open database \"%s\": %s",
                 s->database, hx_strerror(rc ? rc : HX_ERR_INVALID));
        return fatal(s, out, SQLSTATE_IO_ERROR, msg);
    }
    s->db = db;
    s->stmts = stmt_cache_create(db);
    s->shape = s->stmts != NULL ? malloc(sizeof(*s->shape)) : NULL;
    if (s->shape == NULL) {
        stmt_cache_destroy(s->stmts);
        s->stmts = NULL;
    }
    pgw_put_auth_ok(out);
    put_parameters(s, out);
    pgw_put_backend_key(out, s->o.backend_pid, s->o.secret_key);
    pgw_put_ready(out, 'I');
    set_state(s, PG_SESSION_READY);
    return 0;
}

/* Compares in time independent of where the strings differ. */
static bool password_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned diff = (unsigned)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned)(unsigned char)a[i] ^
                (unsigned)(unsigned char)b[lb ? i % lb : 0];
    return diff == 0;
}

static int on_startup(pg_session *s, const pgw_startup *st, pgw_buf *out)
{
    switch (st->kind) {
    case PGW_SSL_REQUEST:
    case PGW_GSSENC_REQUEST: {
        bool *done = st->kind == PGW_SSL_REQUEST ? &s->ssl_refused
                                                 : &s->gss_refused;
        if (*done)
            return fatal(s, out, SQLSTATE_PROTOCOL_VIOLATION,
                         "duplicate encryption request");
        *done = true;
        pgw_buf_put_u8(out, 'N'); /* a bare byte, not a message */
        return 0;
    }
    case PGW_CANCEL_REQUEST:
        slog(s, "pg_session pid=%d: cancel request for pid %d",
             (int)s->o.backend_pid, (int)st->cancel_pid);
        if (s->o.on_cancel)
            s->o.on_cancel(s->o.arg, st->cancel_pid, st->cancel_key);
        set_state(s, PG_SESSION_CLOSED);
        return PG_SESSION_CLOSE;
    case PGW_STARTUP:
        break;
    }

    const char *user = pgw_startup_get(st, "user");
    if (user == NULL || *user == 0)
        return fatal(s, out, "28000",
                     "no PostgreSQL user name specified in startup packet");
    const char *database = pgw_startup_get(st, "database");
    if (database == NULL || *database == 0)
        database = user;
    const char *app_name = pgw_startup_get(st, "application_name");
    s->user = dup_str(user);
    s->database = dup_str(database);
    s->app_name = dup_str(app_name ? app_name : "");
    if (s->user == NULL || s->database == NULL || s->app_name == NULL)
        return HX_ERR_NOMEM;

    /* 3.x with x > 0, or _pq_. protocol options: we speak 3.0 only. */
    const char *unknown[PGW_STARTUP_PARAMS_MAX];
    size_t nunknown = 0;
    for (size_t i = 0; i < st->nparams; i++)
        if (strncmp(st->params[i].name, "_pq_.", 5) == 0)
            unknown[nunknown++] = st->params[i].name;
    if ((st->version & 0xffff) != 0 || nunknown > 0)
        pgw_put_negotiate_version(out, 0, nunknown,
                                  (const char *const *)unknown);

    slog(s, "pg_session pid=%d: startup user=%s database=%s",
         (int)s->o.backend_pid, s->user, s->database);
    if (s->password) {
        pgw_put_auth_cleartext(out);
        set_state(s, PG_SESSION_AUTH);
        return 0;
    }
    return enter_ready(s, out);
}

static int on_password(pg_session *s, const pgw_msg *m, pgw_buf *out)
{
    if (m->kind != PGW_MSG_PASSWORD) {
        if (m->kind == PGW_MSG_TERMINATE) {
            set_state(s, PG_SESSION_CLOSED);
            return PG_SESSION_CLOSE;
        }
        return fatal(s, out, SQLSTATE_PROTOCOL_VIOLATION,
                     "expected password response");
    }
    if (!password_equal(m->text, s->password)) {
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "password authentication failed for user \"%s\"", s->user);
        return fatal(s, out, "28P01", msg);
    }
    return enter_ready(s, out);
}

/* ======================================================================
 * Query phase
 * ====================================================================== */

/* Extended protocol, FunctionCall and copy messages (invariant 5). */
static int on_unsupported(pg_session *s, uint8_t type, pgw_buf *out)
{
    switch (type) {
    case 'd': case 'c': case 'f':
        return 0; /* copy data outside COPY: ignored, as PostgreSQL does */
    case 'H':
        return 0; /* Flush: nothing is pending */
    case 'S':
        /* A Sync with no failed batch before it: just ReadyForQuery. */
        return pgw_put_ready(out, pg_session_txn_status(s));
    default:
        break;
    }
    pgw_put_error(out, "ERROR", SQLSTATE_FEATURE_NOT_SUPPORTED,
                  "extended query protocol not supported; use simple "
                  "query mode (psql default; pgbench -M simple)",
                  NULL, NULL);
    note_failure(s, !sqlite3_get_autocommit(s->db));
    if (type == 'F') /* FunctionCall stands alone: no Sync follows */
        pgw_put_ready(out, pg_session_txn_status(s));
    else
        s->skip_until_sync = true;
    return out->err;
}

static int on_message(pg_session *s, const pgw_msg *m, pgw_buf *out)
{
    if (m->kind == PGW_MSG_TERMINATE) {
        set_state(s, PG_SESSION_CLOSED);
        return PG_SESSION_CLOSE;
    }
    if (s->skip_until_sync) {
        if (m->type == 'S') {
            s->skip_until_sync = false;
            pgw_put_ready(out, pg_session_txn_status(s));
        }
        return out->err;
    }
    switch (m->kind) {
    case PGW_MSG_QUERY:
        return run_query(s, m->text, out);
    case PGW_MSG_PASSWORD:
        return fatal(s, out, SQLSTATE_PROTOCOL_VIOLATION,
                     "unexpected password message");
    case PGW_MSG_UNSUPPORTED:
        return on_unsupported(s, m->type, out);
    case PGW_MSG_TERMINATE:
        break;
    }
    return 0;
}

/* ======================================================================
 * Public API
 * ====================================================================== */

pg_session *pg_session_create(const pg_session_opts *o)
{
    if (o == NULL || o->db_open == NULL)
        return NULL;
    pg_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->o = *o;
    s->o.password = NULL;
    s->state = PG_SESSION_STARTUP;
    if (o->password) {
        s->password = dup_str(o->password);
        if (s->password == NULL) {
            free(s);
            return NULL;
        }
    }
    return s;
}

void pg_session_destroy(pg_session *s)
{
    if (s == NULL)
        return;
    stmt_cache_destroy(s->stmts); /* before the close: it finalizes */
    free(s->shape);
    if (s->db && s->o.db_close)
        s->o.db_close(s->o.arg, s->db);
    free(s->password);
    free(s->user);
    free(s->database);
    free(s->app_name);
    free(s);
}

int pg_session_feed(pg_session *s, const uint8_t *in, size_t len,
                    size_t *consumed, pgw_buf *out)
{
    *consumed = 0;
    while (s->state != PG_SESSION_CLOSED && *consumed < len) {
        const uint8_t *p = in + *consumed;
        size_t n = len - *consumed, used = 0;
        int rc;
        if (s->state == PG_SESSION_STARTUP) {
            pgw_startup st;
            rc = pgw_parse_startup(p, n, &st, &used);
            if (rc == 0)
                break;
            if (rc < 0)
                return fatal(s, out, st.bad_version ?
                             SQLSTATE_FEATURE_NOT_SUPPORTED :
                             SQLSTATE_PROTOCOL_VIOLATION, st.error);
            *consumed += used;
            rc = on_startup(s, &st, out);
        } else {
            pgw_msg m;
            rc = pgw_parse_message(p, n, &m, &used);
            if (rc == 0)
                break;
            if (rc < 0)
                return fatal(s, out, SQLSTATE_PROTOCOL_VIOLATION, m.error);
            *consumed += used;
            rc = s->state == PG_SESSION_AUTH ? on_password(s, &m, out)
                                             : on_message(s, &m, out);
        }
        if (rc != 0)
            return rc;
    }
    if (out->err)
        return out->err;
    return s->state == PG_SESSION_CLOSED ? PG_SESSION_CLOSE : 0;
}

enum pg_session_state pg_session_state(const pg_session *s)
{
    return s->state;
}

sqlite3 *pg_session_db(const pg_session *s)
{
    return s->db;
}

const char *pg_session_user(const pg_session *s)
{
    return s->user;
}

const char *pg_session_database(const pg_session *s)
{
    return s->database;
}

int32_t pg_session_backend_pid(const pg_session *s)
{
    return s->o.backend_pid;
}

uint64_t pg_session_statements(const pg_session *s)
{
    return s->statements;
}
