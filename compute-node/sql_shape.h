/* The shape of a statement: its text with literals turned into parameters,
 * so that statements which differ only in their values share one prepared
 * statement (stmt_cache.h).
 *
 * Clients of the simple query protocol (psql, pgbench -M simple, most
 * drivers without server-side prepare) send every value inline: each
 * "UPDATE t SET a = a + 37 WHERE id = 4711" is new text, and SQLite's
 * parser and code generator ran for each one, while the transaction held
 * the volume's writer lock (sqlite3_prepare_v2() was 13% of a compute
 * node's CPU under pgbench). Binding the values into a cached statement
 * runs the same program on the same values.
 *
 * A literal becomes a parameter only where that cannot change what the
 * statement means or shows (sql_shape_of() says which); everything else is
 * left in the text, so such statements are cached under their own text or
 * not at all.
 */
#ifndef HX_SQL_SHAPE_H
#define HX_SQL_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longer statements (bulk INSERTs, mostly) are rarely repeated: not cached. */
#define SQL_SHAPE_TEXT_MAX 2048
#define SQL_SHAPE_LITERALS_MAX 64

typedef enum {
    SQL_LITERAL_INT,   /* a decimal integer of at most 18 digits */
    SQL_LITERAL_TEXT,  /* a '...' string */
} sql_literal_kind;

typedef struct {
    sql_literal_kind kind;
    int64_t value;     /* SQL_LITERAL_INT */
    const char *text;  /* SQL_LITERAL_TEXT: inside the statement, quotes
                        * excluded, '' pairs still doubled */
    size_t len;
    bool doubled;      /* the text holds '' pairs */
} sql_literal;

typedef struct {
    char text[SQL_SHAPE_TEXT_MAX + 1]; /* NUL-terminated; "?" per literal */
    size_t len;
    size_t n_literals;
    sql_literal literals[SQL_SHAPE_LITERALS_MAX]; /* in parameter order */
} sql_shape;

/* Shapes the one statement [sql, end) (no ';' inside but in quotes).
 * Returns false when it should not be cached at all: not SELECT, INSERT,
 * UPDATE, DELETE, REPLACE or WITH; parameters already in the text (?, :,
 * @, $); an unterminated quote; longer than the limits. On true, out->text
 * run with out->literals bound in order means what [sql, end) means, and
 * the literals point into [sql, end).
 *
 * Left in the text (so still part of the cache key):
 *  - the result columns of every SELECT, subqueries and CTEs included,
 *    up to its own FROM (not the FROM of IS [NOT] DISTINCT FROM) or the
 *    ')' that closes it: a column's name is its expression's text
 *    ("SELECT 1", "SELECT * FROM (SELECT 5)");
 *  - everything from the first ORDER, GROUP or RETURNING on ("ORDER BY 1"
 *    names a column; RETURNING names the result columns);
 *  - numbers that are not plain decimal integers (1.5, 1e3, 0x1F, long
 *    ones: their exact value is SQLite's to parse) and prefixed strings
 *    (X'00' is a blob).
 */
bool sql_shape_of(const char *sql, const char *end, sql_shape *out);

/* Copies a TEXT literal's value with '' undoubled into buf (lit->len + 1
 * bytes at least); returns its length. */
size_t sql_literal_text(const sql_literal *lit, char *buf);

#endif
