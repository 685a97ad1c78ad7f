/* libpq against a running hexad-compute (issue 4, item 6: "integration
 * tests that drive the server with libpq").
 *
 *   test_libpq HOST PORT [PASSWORD]
 *
 * Run by test_libpq.sh, which starts the cluster and the writer. Checks, in
 * order: connect (trust; with PASSWORD: no password and a wrong one are
 * refused with 28P01, the right one connects); several statements in one
 * query string, each with its command tag; INSERT 0 n / UPDATE n /
 * DELETE n / SELECT n; BEGIN/COMMIT/ROLLBACK/END with PQtransactionStatus
 * after each; ErrorResponse with a SQLSTATE for bad SQL, then the session
 * still works; a failed block ('E') refuses statements with 25P02 until
 * ROLLBACK; PQcancel interrupts a long query (57014) and the session goes
 * on; malformed protocol bytes on raw sockets get an error and a closed
 * connection while a libpq session opened before stays unaffected.
 *
 * Every check prints "ok: ..." or "FAIL: ..." and the first failure exits
 * 1. Every wait has a deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define CONNECT_TIMEOUT_S "10"
#define CANCEL_DEADLINE_MS 60000
#define RAW_DEADLINE_MS 10000

static const char *g_host, *g_port;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    exit(1);
}

static void ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ok: ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static PGconn *connect_pw(const char *password)
{
    const char *keys[] = {"host", "port", "user", "dbname",
                          "connect_timeout", "sslmode", "password", NULL};
    const char *vals[] = {g_host, g_port, "hexad", "hexad",
                          CONNECT_TIMEOUT_S, "disable", password, NULL};
    if (password == NULL)
        keys[6] = NULL;
    return PQconnectdbParams(keys, vals, 0);
}

static PGconn *connect_ok(const char *password)
{
    PGconn *c = connect_pw(password);
    if (PQstatus(c) != CONNECTION_OK)
        fail("connect to %s:%s: %s", g_host, g_port, PQerrorMessage(c));
    return c;
}

static const char *txn_name(PGTransactionStatusType t)
{
    switch (t) {
    case PQTRANS_IDLE: return "IDLE";
    case PQTRANS_ACTIVE: return "ACTIVE";
    case PQTRANS_INTRANS: return "INTRANS";
    case PQTRANS_INERROR: return "INERROR";
    default: return "UNKNOWN";
    }
}

static void expect_txn(PGconn *c, PGTransactionStatusType want,
                       const char *after)
{
    PGTransactionStatusType t = PQtransactionStatus(c);
    if (t != want)
        fail("after %s: PQtransactionStatus %s, want %s", after, txn_name(t),
             txn_name(want));
}

/* Runs sql (one statement); wants status st and, if tag, that command tag. */
static PGresult *run(PGconn *c, const char *sql, ExecStatusType st,
                     const char *tag)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != st)
        fail("'%s': %s, want %s (%s)", sql, PQresStatus(PQresultStatus(r)),
             PQresStatus(st), PQresultErrorMessage(r));
    if (tag && strcmp(PQcmdStatus(r), tag) != 0)
        fail("'%s': command tag '%s', want '%s'", sql, PQcmdStatus(r), tag);
    return r;
}

static void run_free(PGconn *c, const char *sql, ExecStatusType st,
                     const char *tag)
{
    PQclear(run(c, sql, st, tag));
}

/* Runs a query that must return one value; compares it as text. */
static void expect_value(PGconn *c, const char *sql, const char *want)
{
    PGresult *r = run(c, sql, PGRES_TUPLES_OK, NULL);
    if (PQntuples(r) != 1 || PQnfields(r) != 1)
        fail("'%s': %d rows x %d columns, want 1 x 1", sql, PQntuples(r),
             PQnfields(r));
    if (strcmp(PQgetvalue(r, 0, 0), want) != 0)
        fail("'%s' returned '%s', want '%s'", sql, PQgetvalue(r, 0, 0), want);
    PQclear(r);
}

/* A statement that must fail with SQLSTATE state. */
static void expect_error(PGconn *c, const char *sql, const char *state)
{
    PGresult *r = PQexec(c, sql);
    const char *got = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (PQresultStatus(r) != PGRES_FATAL_ERROR || !got ||
        strcmp(got, state) != 0)
        fail("'%s': %s SQLSTATE %s, want an error with %s (%s)", sql,
             PQresStatus(PQresultStatus(r)), got ? got : "(none)", state,
             PQresultErrorMessage(r));
    PQclear(r);
}

/* ---- the checks ------------------------------------------------------- */

static void check_password(const char *password)
{
    PGconn *c = connect_pw(NULL);
    if (PQstatus(c) == CONNECTION_OK)
        fail("a connection without a password was accepted");
    PQfinish(c);
    c = connect_pw("not-the-password");
    if (PQstatus(c) == CONNECTION_OK)
        fail("a wrong password was accepted");
    if (!strstr(PQerrorMessage(c), "password authentication failed"))
        fail("wrong password: '%s' does not say 'password authentication "
             "failed'", PQerrorMessage(c));
    PQfinish(c);
    c = connect_ok(password);
    PQfinish(c);
    ok("password: none and a wrong one refused, the right one connects");
}

static void check_connect(PGconn *c)
{
    expect_txn(c, PQTRANS_IDLE, "connect");
    const char *v = PQparameterStatus(c, "server_version");
    if (!v || !strstr(v, "hexad"))
        fail("server_version '%s' does not name hexad", v ? v : "(none)");
    if (PQprotocolVersion(c) != 3)
        fail("protocol version %d, want 3", PQprotocolVersion(c));
    if (PQbackendPID(c) == 0)
        fail("no BackendKeyData (PQbackendPID is 0)");
    ok("connected: server_version '%s', backend pid %d", v, PQbackendPID(c));
}

static void check_multi_statement(PGconn *c)
{
    static const char *sql =
        "DROP TABLE IF EXISTS lt; "
        "CREATE TABLE lt (id INTEGER PRIMARY KEY, v INTEGER NOT NULL); "
        "INSERT INTO lt VALUES (1, 10), (2, 20), (3, 30); "
        "SELECT id FROM lt ORDER BY id";
    static const char *tags[] = {"DROP TABLE", "CREATE TABLE", "INSERT 0 3",
                                 "SELECT 3"};
    if (!PQsendQuery(c, sql))
        fail("PQsendQuery: %s", PQerrorMessage(c));
    size_t n = 0;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            fail("multi-statement result %zu: %s (%s)", n, PQresStatus(st),
                 PQresultErrorMessage(r));
        if (n >= 4 || strcmp(PQcmdStatus(r), tags[n]) != 0)
            fail("multi-statement result %zu: tag '%s', want '%s'", n,
                 PQcmdStatus(r), n < 4 ? tags[n] : "(no more)");
        if (n == 3 && (PQntuples(r) != 3 || strcmp(PQgetvalue(r, 2, 0), "3")))
            fail("multi-statement SELECT: %d rows", PQntuples(r));
        PQclear(r);
        n++;
    }
    if (n != 4)
        fail("multi-statement query gave %zu results, want 4", n);
    expect_txn(c, PQTRANS_IDLE, "the multi-statement query");
    ok("4 statements in one query: DROP TABLE, CREATE TABLE, INSERT 0 3, "
       "SELECT 3");
}

static void check_tags(PGconn *c)
{
    PGresult *r = run(c, "UPDATE lt SET v = v + 1 WHERE id <= 2",
                      PGRES_COMMAND_OK, "UPDATE 2");
    if (strcmp(PQcmdTuples(r), "2") != 0)
        fail("UPDATE: PQcmdTuples '%s', want 2", PQcmdTuples(r));
    PQclear(r);
    run_free(c, "DELETE FROM lt WHERE id = 3", PGRES_COMMAND_OK, "DELETE 1");
    run_free(c, "UPDATE lt SET v = 0 WHERE id > 100", PGRES_COMMAND_OK,
             "UPDATE 0");
    r = run(c, "SELECT id, v FROM lt ORDER BY id", PGRES_TUPLES_OK,
            "SELECT 2");
    if (PQntuples(r) != 2 || PQnfields(r) != 2 ||
        strcmp(PQgetvalue(r, 0, 1), "11") || strcmp(PQgetvalue(r, 1, 1), "21"))
        fail("rows after UPDATE/DELETE are not (1,11), (2,21)");
    if (strcmp(PQfname(r, 1), "v") != 0)
        fail("column name '%s', want 'v'", PQfname(r, 1));
    PQclear(r);
    r = run(c, "SELECT NULL AS n, 'x' AS s", PGRES_TUPLES_OK, "SELECT 1");
    if (!PQgetisnull(r, 0, 0) || strcmp(PQgetvalue(r, 0, 1), "x"))
        fail("NULL and text values do not come back as NULL and 'x'");
    PQclear(r);
    ok("command tags: INSERT 0 3, UPDATE 2, DELETE 1, UPDATE 0, SELECT 2; "
       "NULL comes back as NULL");
}

static void check_transactions(PGconn *c)
{
    run_free(c, "BEGIN", PGRES_COMMAND_OK, "BEGIN");
    expect_txn(c, PQTRANS_INTRANS, "BEGIN");
    run_free(c, "INSERT INTO lt VALUES (10, 100)", PGRES_COMMAND_OK,
             "INSERT 0 1");
    expect_txn(c, PQTRANS_INTRANS, "INSERT in a block");
    run_free(c, "ROLLBACK", PGRES_COMMAND_OK, "ROLLBACK");
    expect_txn(c, PQTRANS_IDLE, "ROLLBACK");
    expect_value(c, "SELECT count(*) FROM lt WHERE id = 10", "0");

    run_free(c, "BEGIN", PGRES_COMMAND_OK, "BEGIN");
    run_free(c, "INSERT INTO lt VALUES (11, 110)", PGRES_COMMAND_OK,
             "INSERT 0 1");
    run_free(c, "END", PGRES_COMMAND_OK, "COMMIT");
    expect_txn(c, PQTRANS_IDLE, "END");
    run_free(c, "START TRANSACTION", PGRES_COMMAND_OK, "BEGIN");
    run_free(c, "INSERT INTO lt VALUES (12, 120)", PGRES_COMMAND_OK,
             "INSERT 0 1");
    run_free(c, "COMMIT", PGRES_COMMAND_OK, "COMMIT");
    expect_txn(c, PQTRANS_IDLE, "COMMIT");
    expect_value(c, "SELECT sum(v) FROM lt WHERE id IN (11, 12)", "230");

    /* An error aborts the block: 'E' until ROLLBACK. */
    run_free(c, "BEGIN", PGRES_COMMAND_OK, "BEGIN");
    run_free(c, "INSERT INTO lt VALUES (13, 130)", PGRES_COMMAND_OK,
             "INSERT 0 1");
    expect_error(c, "INSERT INTO lt VALUES (1, 0)", "23505");
    expect_txn(c, PQTRANS_INERROR, "an error inside a block");
    expect_error(c, "SELECT 1", "25P02");
    expect_txn(c, PQTRANS_INERROR, "a statement in a failed block");
    run_free(c, "ROLLBACK", PGRES_COMMAND_OK, "ROLLBACK");
    expect_txn(c, PQTRANS_IDLE, "ROLLBACK of a failed block");
    expect_value(c, "SELECT count(*) FROM lt WHERE id = 13", "0");

    /* COMMIT of a failed block rolls back, as in PostgreSQL. */
    run_free(c, "BEGIN", PGRES_COMMAND_OK, "BEGIN");
    run_free(c, "INSERT INTO lt VALUES (14, 140)", PGRES_COMMAND_OK, NULL);
    expect_error(c, "SELEKT", "42601");
    run_free(c, "COMMIT", PGRES_COMMAND_OK, "ROLLBACK");
    expect_value(c, "SELECT count(*) FROM lt WHERE id = 14", "0");
    ok("BEGIN/COMMIT/ROLLBACK/END/START TRANSACTION; transaction status "
       "I/T/E after each; a failed block refuses with 25P02 until it ends");
}

static void check_errors(PGconn *c)
{
    expect_error(c, "SELEKT 1", "42601");
    expect_txn(c, PQTRANS_IDLE, "an error in autocommit");
    expect_error(c, "SELECT * FROM no_such_table", "42P01");
    expect_error(c, "SELECT no_such_column FROM lt", "42703");
    expect_error(c, "INSERT INTO lt VALUES (1, 1)", "23505");
    expect_error(c, "INSERT INTO lt VALUES (99, NULL)", "23502");
    /* The rest of a query string after an error is not run. */
    PGresult *r = PQexec(c, "INSERT INTO lt VALUES (20, 200); SELEKT; "
                            "INSERT INTO lt VALUES (21, 210)");
    if (PQresultStatus(r) != PGRES_FATAL_ERROR)
        fail("a query string with a bad statement did not fail");
    PQclear(r);
    expect_value(c, "SELECT count(*) FROM lt WHERE id IN (20, 21)", "1");
    expect_value(c, "SELECT 1 + 1", "2");
    ok("bad SQL: ErrorResponse with SQLSTATE 42601/42P01/42703/23505/23502; "
       "the session goes on");
}

static void check_cancel(PGconn *c)
{
    /* Long enough never to finish on its own within the deadline. */
    static const char *sql =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n "
        "WHERE x < 5000000000) SELECT count(*) FROM n";
    PGcancel *cn = PQgetCancel(c);
    if (!cn)
        fail("PQgetCancel returned NULL");
    if (!PQsendQuery(c, sql))
        fail("PQsendQuery: %s", PQerrorMessage(c));
    int64_t t0 = now_ms();
    int sent = 0;
    PGresult *r = NULL;
    /* The query may not have started when the first cancel arrives (a
     * cancel for an idle session is ignored): repeat until it ends. */
    for (;;) {
        if (now_ms() - t0 > CANCEL_DEADLINE_MS)
            fail("the query was not cancelled within %d ms (%d cancel "
                 "requests sent)", CANCEL_DEADLINE_MS, sent);
        char err[256];
        if (!PQcancel(cn, err, sizeof err))
            fail("PQcancel: %s", err);
        sent++;
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        poll(&p, 1, 200);
        if (!PQconsumeInput(c))
            fail("connection lost while cancelling: %s", PQerrorMessage(c));
        if (!PQisBusy(c)) {
            r = PQgetResult(c);
            break;
        }
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (PQresultStatus(r) != PGRES_FATAL_ERROR || !state ||
        strcmp(state, "57014") != 0)
        fail("cancelled query: %s SQLSTATE %s, want 57014 (%s)",
             PQresStatus(PQresultStatus(r)), state ? state : "(none)",
             PQresultErrorMessage(r));
    PQclear(r);
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    PQfreeCancel(cn);
    expect_txn(c, PQTRANS_IDLE, "a cancelled query");
    expect_value(c, "SELECT count(*) FROM lt", "5");
    ok("PQcancel: the running query failed with 57014 after %lld ms (%d "
       "requests); the session goes on", (long long)(now_ms() - t0), sent);
}

/* ---- raw sockets -------------------------------------------------------- */

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(g_port))};
    if (fd < 0 || inet_pton(AF_INET, g_host, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail("raw connect to %s:%s: %s", g_host, g_port, strerror(errno));
    return fd;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A valid StartupMessage for user hexad into b; returns its length. */
static size_t startup_bytes(uint8_t *b)
{
    static const char params[] = "user\0hexad\0database\0hexad\0";
    size_t n = 8 + sizeof(params); /* sizeof counts the final NUL */
    put_u32(b, (uint32_t)n);
    put_u32(b + 4, 196608); /* 3.0 */
    memcpy(b + 8, params, sizeof(params));
    return n;
}

/* Sends bytes on a fresh connection, then reads until the server closes
 * it (deadline; fails if it stays open). Returns 1 if what the server sent
 * includes an ErrorResponse with SQLSTATE 08P01 (protocol_violation). */
static int send_expect_close(const uint8_t *b, size_t n, const char *what)
{
    int fd = raw_connect();
    if (send(fd, b, n, MSG_NOSIGNAL) != (ssize_t)n)
        fail("%s: send: %s", what, strerror(errno));
    uint8_t buf[4096];
    int saw_error = 0;
    int64_t t0 = now_ms();
    for (;;) {
        int64_t left = RAW_DEADLINE_MS - (now_ms() - t0);
        if (left <= 0)
            fail("%s: the server kept the connection open for %d ms", what,
                 RAW_DEADLINE_MS);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k == 0 || (k < 0 && errno == ECONNRESET))
            break;
        if (k < 0)
            fail("%s: recv: %s", what, strerror(errno));
        /* The FATAL ErrorResponse names its SQLSTATE in a 'C' field. */
        if (memchr(buf, 'E', (size_t)k) && memmem(buf, (size_t)k, "C08P01", 6))
            saw_error = 1;
    }
    close(fd);
    return saw_error;
}

static void check_malformed(PGconn *other)
{
    uint8_t b[512];
    size_t n;
    int with_error = 0;

    /* 1. A startup packet whose length is below the minimum. */
    put_u32(b, 4);
    put_u32(b + 4, 196608);
    with_error += send_expect_close(b, 8, "startup length 4");

    /* 2. A startup packet announcing 1 GiB. */
    put_u32(b, 1u << 30);
    put_u32(b + 4, 196608);
    with_error += send_expect_close(b, 8, "startup length 1 GiB");

    /* 3. After a good startup, a Query whose length is negative. */
    n = startup_bytes(b);
    b[n] = 'Q';
    put_u32(b + n + 1, 0x80000000u);
    with_error += send_expect_close(b, n + 5, "Query length 2^31");

    /* 4. After a good startup, a Query without its terminating NUL. */
    n = startup_bytes(b);
    b[n] = 'Q';
    put_u32(b + n + 1, 4 + 8);
    memcpy(b + n + 5, "SELECT 1", 8);
    with_error += send_expect_close(b, n + 13, "Query without NUL");

    /* 5. After a good startup, an unknown message type. */
    n = startup_bytes(b);
    b[n] = '!';
    put_u32(b + n + 1, 4);
    with_error += send_expect_close(b, n + 5, "message type '!'");

    if (with_error < 3)
        fail("only %d of 5 malformed connections got an ErrorResponse 08P01 "
             "before the close", with_error);
    /* The session opened before is unaffected. */
    expect_value(other, "SELECT count(*) FROM lt", "5");
    PGconn *fresh = connect_ok(getenv("PGPASSWORD"));
    expect_value(fresh, "SELECT sum(v) FROM lt", "462");
    PQfinish(fresh);
    ok("5 malformed protocol streams: each connection closed (%d with "
       "ErrorResponse 08P01); other sessions unaffected", with_error);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: test_libpq HOST PORT [PASSWORD]\n"
                "Drives a running hexad-compute with libpq (run by "
                "test_libpq.sh).\n");
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    g_host = argv[1];
    g_port = argv[2];
    const char *password = argc == 4 ? argv[3] : NULL;
    if (password) {
        check_password(password);
        setenv("PGPASSWORD", password, 1);
    } else {
        unsetenv("PGPASSWORD");
    }

    PGconn *c = connect_ok(password);
    check_connect(c);
    check_multi_statement(c);
    check_tags(c);
    check_transactions(c);
    check_errors(c);
    PGconn *other = connect_ok(password);
    check_cancel(c);
    check_malformed(other);
    PQfinish(other);
    PQfinish(c);
    ok("test_libpq: every check passed");
    return 0;
}
