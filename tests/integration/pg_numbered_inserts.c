/* Numbered inserts through the PostgreSQL protocol, with a journal of what
 * was acknowledged, and the checker of that journal (issue 6, tests).
 *
 *   pg_numbered_inserts load  HOST PORT DIR START [TXNS]
 *   pg_numbered_inserts check HOST PORT DIR
 *
 * load: transactions numbered START, START+4, ... each of 1 to 3 rows
 * (row n = txn + i, column rows = the transaction's row count) sent as
 * "BEGIN; INSERT ...; INSERT ...; COMMIT" in one Query. Before sending a
 * transaction it appends "txn rows" to DIR/attempts; after the server
 * acknowledged its COMMIT, to DIR/acked (both line-buffered, flushed
 * before the next transaction, so a SIGKILL of the server never loses a
 * journal line of an acknowledged commit). Stops after TXNS acknowledged
 * commits (0 or absent: until the connection is lost).
 *
 * check: reads both journals and the table, and fails unless
 *   - every acknowledged transaction is present with all its rows;
 *   - no transaction is partial (every txn present has `rows` rows);
 *   - nothing is present that was never attempted (no phantom).
 * It prints one summary line.
 *
 * Exit status: 0 done (load: TXNS acknowledged; check: all invariants
 * hold), 1 a check failed or a statement failed on a live connection
 * (the message says which), 2 usage, 3 cannot connect, 5 load: the
 * connection was lost (the expected end when the server is killed).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define CONNECT_TIMEOUT_S "10"
#define ROWS_MAX 3
#define TXN_STRIDE 4 /* > ROWS_MAX: row numbers never collide */
#define PAD_BYTES 200 /* spreads the table over several pages */
#define EXIT_LOST 5

static const char *usage_text =
    "usage: pg_numbered_inserts load  HOST PORT DIR START [TXNS]\n"
    "       pg_numbered_inserts check HOST PORT DIR\n"
    "\n"
    "load: numbered multi-row transactions into table nums, journaling\n"
    "each attempt to DIR/attempts and each acknowledged COMMIT to\n"
    "DIR/acked; until TXNS commits are acknowledged (0: until the\n"
    "connection is lost, exit 5).\n"
    "check: every acknowledged transaction present in full, no partial\n"
    "transaction, no phantom. Exit 0 when all hold, 1 otherwise.\n";

static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pg_numbered_inserts: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static PGconn *connect_to(const char *host, const char *port)
{
    const char *keys[] = {"host", "port", "user", "dbname",
                          "connect_timeout", NULL};
    const char *vals[] = {host, port, "hexad", "hexad", CONNECT_TIMEOUT_S,
                          NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(c) != CONNECTION_OK)
        die(3, "cannot connect to %s:%s: %s", host, port, PQerrorMessage(c));
    return c;
}

static FILE *journal_open(const char *dir, const char *name, const char *mode)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, mode);
    if (f == NULL && mode[0] == 'r')
        return NULL; /* no journal yet: nothing attempted */
    if (f == NULL)
        die(1, "cannot open %s", path);
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

static int load(PGconn *c, const char *dir, uint64_t start, uint64_t txns)
{
    PGresult *r = PQexec(c, "CREATE TABLE IF NOT EXISTS nums (n INTEGER "
                            "PRIMARY KEY, txn INTEGER NOT NULL, rows INTEGER "
                            "NOT NULL, pad TEXT)");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        bool lost = PQstatus(c) != CONNECTION_OK;
        fprintf(stderr, "pg_numbered_inserts: CREATE TABLE: %s",
                PQresultErrorMessage(r));
        PQclear(r);
        return lost ? EXIT_LOST : 1;
    }
    PQclear(r);
    FILE *att = journal_open(dir, "attempts", "a");
    FILE *ack = journal_open(dir, "acked", "a");
    uint64_t acked = 0;
    int rc = 0;
    for (uint64_t k = 0; txns == 0 || acked < txns; k++) {
        uint64_t txn = start + k * TXN_STRIDE;
        int rows = 1 + (int)(k % ROWS_MAX);
        char sql[1024];
        int len = snprintf(sql, sizeof sql, "BEGIN;");
        for (int i = 0; i < rows; i++)
            len += snprintf(sql + len, sizeof sql - (size_t)len,
                            " INSERT INTO nums VALUES (%llu, %llu, %d, "
                            "printf('%%0%dd', %llu));",
                            (unsigned long long)(txn + (uint64_t)i),
                            (unsigned long long)txn, rows, PAD_BYTES,
                            (unsigned long long)txn);
        snprintf(sql + len, sizeof sql - (size_t)len, " COMMIT");
        fprintf(att, "%llu %d\n", (unsigned long long)txn, rows);
        fflush(att);
        r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_COMMAND_OK &&
            strcmp(PQcmdStatus(r), "COMMIT") == 0) {
            fprintf(ack, "%llu %d\n", (unsigned long long)txn, rows);
            fflush(ack);
            acked++;
            PQclear(r);
            continue;
        }
        if (PQstatus(c) != CONNECTION_OK) {
            fprintf(stderr, "pg_numbered_inserts: connection lost after %llu "
                    "acknowledged commits: %s", (unsigned long long)acked,
                    PQerrorMessage(c));
            rc = EXIT_LOST;
        } else {
            fprintf(stderr, "pg_numbered_inserts: transaction %llu: %s %s",
                    (unsigned long long)txn, PQresStatus(PQresultStatus(r)),
                    PQresultErrorMessage(r));
            rc = 1;
        }
        PQclear(r);
        break;
    }
    fclose(att);
    fclose(ack);
    if (rc == 0)
        printf("load: %llu commits acknowledged from %llu\n",
               (unsigned long long)acked, (unsigned long long)start);
    return rc;
}

/* ---- check -------------------------------------------------------- */

typedef struct {
    uint64_t txn;
    int rows;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
} entries;

static void entries_add(entries *s, uint64_t txn, int rows)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->e = realloc(s->e, s->cap * sizeof *s->e);
        if (s->e == NULL)
            die(1, "out of memory");
    }
    s->e[s->n++] = (entry){txn, rows};
}

static int entry_cmp(const void *a, const void *b)
{
    uint64_t x = ((const entry *)a)->txn, y = ((const entry *)b)->txn;
    return (x > y) - (x < y);
}

static entries journal_read(const char *dir, const char *name)
{
    entries s = {0};
    FILE *f = journal_open(dir, name, "r");
    if (f == NULL)
        return s;
    unsigned long long txn;
    int rows;
    while (fscanf(f, "%llu %d", &txn, &rows) == 2)
        entries_add(&s, txn, rows);
    fclose(f);
    qsort(s.e, s.n, sizeof *s.e, entry_cmp);
    return s;
}

static const entry *entries_find(const entries *s, uint64_t txn)
{
    entry key = {txn, 0};
    return bsearch(&key, s->e, s->n, sizeof *s->e, entry_cmp);
}

static int check(PGconn *c, const char *dir)
{
    entries att = journal_read(dir, "attempts");
    entries ack = journal_read(dir, "acked");
    PGresult *r = PQexec(c, "SELECT txn, rows, count(*) FROM nums "
                            "GROUP BY txn, rows ORDER BY txn");
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die(1, "check: SELECT failed: %s", PQresultErrorMessage(r));
    entries have = {0};
    int bad = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        uint64_t txn = strtoull(PQgetvalue(r, i, 0), NULL, 10);
        int rows = atoi(PQgetvalue(r, i, 1));
        int count = atoi(PQgetvalue(r, i, 2));
        if (count != rows) {
            printf("FAIL: partial transaction %llu: %d of %d rows visible\n",
                   (unsigned long long)txn, count, rows);
            bad++;
        }
        if (entries_find(&att, txn) == NULL) {
            printf("FAIL: phantom transaction %llu (never attempted)\n",
                   (unsigned long long)txn);
            bad++;
        }
        if (have.n > 0 && have.e[have.n - 1].txn == txn) {
            printf("FAIL: transaction %llu appears with two row counts\n",
                   (unsigned long long)txn);
            bad++;
            continue;
        }
        entries_add(&have, txn, count);
    }
    PQclear(r);
    size_t lost = 0;
    for (size_t i = 0; i < ack.n; i++) {
        const entry *h = entries_find(&have, ack.e[i].txn);
        if (h == NULL || h->rows != ack.e[i].rows) {
            if (lost++ < 10)
                printf("FAIL: acknowledged transaction %llu (%d rows) %s\n",
                       (unsigned long long)ack.e[i].txn, ack.e[i].rows,
                       h ? "is incomplete" : "is lost");
            bad++;
        }
    }
    printf("check: %zu transactions present, %zu attempted, %zu "
           "acknowledged; %zu acknowledged lost; %s\n", have.n, att.n, ack.n,
           lost, bad ? "FAILED" : "all acknowledged present, no partial, "
           "no phantom");
    free(att.e);
    free(ack.e);
    free(have.e);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
                      strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc >= 6 && argc <= 7 && strcmp(argv[1], "load") == 0) {
        uint64_t start = strtoull(argv[5], NULL, 10);
        uint64_t txns = argc == 7 ? strtoull(argv[6], NULL, 10) : 0;
        if (start == 0)
            die(2, "START must be a positive number");
        PGconn *c = connect_to(argv[2], argv[3]);
        int rc = load(c, argv[4], start, txns);
        PQfinish(c);
        return rc;
    }
    if (argc == 5 && strcmp(argv[1], "check") == 0) {
        PGconn *c = connect_to(argv[2], argv[3]);
        int rc = check(c, argv[4]);
        PQfinish(c);
        return rc;
    }
    fputs(usage_text, stderr);
    return 2;
}
