/* A connection's prepared statements, kept by text (a statement's shape,
 * sql_shape.h, or fixed text such as "COMMIT") so that running it again
 * skips SQLite's parser and code generator.
 *
 * Contracts:
 *  - One cache per sqlite3 connection, used by one thread at a time.
 *  - A statement handed out by stmt_cache_get() is reset and unbound; the
 *    caller runs it and calls sqlite3_reset() before anything else runs on
 *    the connection (a statement left stepping holds its read transaction
 *    open). It stays owned by the cache.
 *  - stmt_cache_destroy() finalizes every statement: call it before
 *    sqlite3_close(), which refuses a connection with statements left.
 *  - Text whose prepare failed is remembered as failing, so the caller's
 *    plain path (which reports the error against the client's own text)
 *    runs without a second failed prepare, until stmt_cache_forget_failures()
 *    (a schema change may have made it valid).
 */
#ifndef HX_STMT_CACHE_H
#define HX_STMT_CACHE_H

#include <stddef.h>

#include <sqlite3.h>

/* Per connection: a session runs a handful of statement shapes again and
 * again (pgbench: seven), and each entry holds a compiled program. */
#define STMT_CACHE_ENTRIES 32

typedef struct stmt_cache stmt_cache;

stmt_cache *stmt_cache_create(sqlite3 *db);
void stmt_cache_destroy(stmt_cache *c);

/* The statement for text (len bytes, one statement). Returns NULL when it
 * cannot be prepared (now or before) or memory ran out: run the plain
 * path. The least recently used entry gives way to a new one. */
sqlite3_stmt *stmt_cache_get(stmt_cache *c, const char *text, size_t len);

/* Finalizes and forgets st (a statement of this cache), e.g. after an
 * error that may come from a schema it was compiled against. */
void stmt_cache_drop(stmt_cache *c, sqlite3_stmt *st);

void stmt_cache_forget_failures(stmt_cache *c);

#endif
