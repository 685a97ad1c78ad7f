/* One PostgreSQL client connection: the v3 protocol state machine that runs
 * simple-query SQL in SQLite.
 *
 * Socket-free: the caller reads bytes from the client, passes them to
 * pg_session_feed(), sends what the session appended to the output buffer,
 * and closes the connection when told to. Everything the session does to
 * the outside world goes through the callbacks in pg_session_opts.
 *
 * Served: startup (SSL and GSS encryption refused with 'N'), trust or
 * cleartext password authentication, CancelRequest (handed to on_cancel),
 * the simple query protocol with several statements per query string, and
 * PostgreSQL transaction-block semantics (aborted blocks, 'I'/'T'/'E').
 * Refused with SQLSTATE 0A000: the extended query protocol, FunctionCall
 * and COPY. The SQL dialect is SQLite's; pg_catalog queries fail (42P01).
 */
#ifndef HX_PG_SESSION_H
#define HX_PG_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "pgwire.h"

typedef struct pg_session pg_session;

/* pg_session_feed() result: send the output, then close the connection. */
#define PG_SESSION_CLOSE 1

typedef struct pg_session_opts {
    /* Required. Supplies the SQLite connection once the client has
     * authenticated; user and database are the startup parameters
     * (database defaults to user). Returns 0 and sets *db, or a hexad
     * error: HX_ERR_NOT_FOUND is reported as 3D000 "database does not
     * exist", anything else as 58030 with hx_strerror(). The session uses
     * *db only from inside pg_session_feed() and gives it back through
     * db_close. */
    int (*db_open)(void *arg, const char *user, const char *database,
                   sqlite3 **db);
    /* Optional. Called once from pg_session_destroy() with the handle
     * db_open supplied. NULL: the caller keeps ownership of the handle. */
    void (*db_close)(void *arg, sqlite3 *db);

    /* Optional durability hook: hold the reply until what it reports is
     * durable. Called after a statement that ended a transaction and
     * succeeded (an autocommit statement, COMMIT/END, or RELEASE of the
     * outermost savepoint), before its CommandComplete and ReadyForQuery
     * are appended. wrote: the transaction ran a statement that may write
     * (the hook waits for its commit); otherwise it was read-only (the
     * hook waits for the newest commit it could have read, DESIGN.md
     * "Compute nodes"). The SQLite commit has already happened. Not called
     * for rollbacks, failed statements, or statements inside an open
     * block (their results are provisional until the block's COMMIT).
     * Return 0 to reply success. A hexad error replaces the command's rows
     * and tag with an ErrorResponse and skips the rest of the query
     * string: HX_ERR_TIMEOUT gives SQLSTATE 40003
     * (statement_completion_unknown: the outcome is unknown, the commit
     * may still become durable), anything else 58030; the hook may write
     * a one-line detail (the LSN, VDL, deadline) into why[0 .. why_len).
     * The transaction state stays what SQLite says (normally idle, 'I'). */
    int (*before_reply)(void *arg, pg_session *s, bool wrote, char *why,
                        size_t why_len);

    /* Optional. A CancelRequest arrived on this (fresh) connection; the
     * owner finds the session with this pid and checks the key before
     * acting: hx_vfs_cancel() on that session's connection (from this
     * thread; that session's runs on). Its running Query then fails with
     * 57014 "canceling statement due to user request", a lock wait
     * included; a cancel that finds it idle does nothing. This session
     * then asks to close without a reply, as PostgreSQL does. */
    void (*on_cancel)(void *arg, int32_t pid, int32_t secret);

    /* Optional. One line per state transition and per protocol error;
     * line is only valid during the call. */
    void (*log)(void *arg, const char *line);

    void *arg;              /* passed to every callback */

    /* If non-NULL, clients must send this cleartext password (copied).
     * NULL: trust. Clients that fail get FATAL 28P01. */
    const char *password;

    int32_t backend_pid;    /* sent in BackendKeyData; identifies the */
    int32_t secret_key;     /* session in a CancelRequest */
} pg_session_opts;

/* Connection states; pg_session_feed() is the only function that moves
 * between them. */
enum pg_session_state {
    PG_SESSION_STARTUP,     /* waiting for StartupMessage (or SSL/GSS/cancel) */
    PG_SESSION_AUTH,        /* sent AuthenticationCleartextPassword */
    PG_SESSION_READY,       /* authenticated: serving queries */
    PG_SESSION_CLOSED,      /* told the caller to close; feeds consume nothing */
};

/* NULL on out of memory or when o->db_open is NULL. Copies what it keeps
 * from o. Appends nothing: the client speaks first. */
pg_session *pg_session_create(const pg_session_opts *o);

/* Closes the SQLite handle through db_close (if both exist) and frees the
 * session. NULL is a no-op. */
void pg_session_destroy(pg_session *s);

/* Consumes client bytes and appends replies to out.
 *
 * in/len: every byte received and not yet consumed, contiguous. The
 * session decodes as many complete messages as it finds, answers each,
 * and sets *consumed to the bytes used; the caller drains them and calls
 * again with the rest plus whatever arrives next (a partial message is
 * never consumed). The session keeps no pointer into in.
 *
 * Returns 0 to keep the connection open, PG_SESSION_CLOSE to send out and
 * then close (Terminate, CancelRequest, failed authentication, or a
 * protocol violation, which first gets an ErrorResponse FATAL 08P01), or a
 * negative hexad error (HX_ERR_NOMEM: out could not take even an error
 * message) after which the caller closes without trusting out's tail.
 *
 * out->max_bytes bounds a statement's result: a statement whose rows would
 * overflow it is answered with ERROR 54000 instead of a partial result. */
int pg_session_feed(pg_session *s, const uint8_t *in, size_t len,
                    size_t *consumed, pgw_buf *out);

enum pg_session_state pg_session_state(const pg_session *s);
/* 'I', 'T' or 'E': what the next ReadyForQuery says. */
char pg_session_txn_status(const pg_session *s);
/* NULL before authentication completes. */
sqlite3 *pg_session_db(const pg_session *s);
/* NULL before the startup packet. Valid for the session's life. */
const char *pg_session_user(const pg_session *s);
const char *pg_session_database(const pg_session *s);
int32_t pg_session_backend_pid(const pg_session *s);
/* Statements the session was sent in Query messages, each of a
 * multi-statement string on its own, failed and refused ones too. */
uint64_t pg_session_statements(const pg_session *s);

#endif
