/* pg_server: the PostgreSQL endpoint of a compute node.
 *
 * An evconnlistener on the caller's event loop accepts connections; each
 * accepted connection gets its own worker thread that owns one pg_session
 * and one SQLite connection (hx_vfs_open_db over the hexad VFS) and does
 * blocking recv/send on the socket. The loop thread only accepts, so SQL
 * and storage I/O never block it (DESIGN.md "Implementation notes",
 * Threads).
 *
 * Pipelined commits: after a statement that committed a write transaction
 * the worker holds the reply until store->wait_durable(commit LSN) says
 * VDL covers it (4 of 6 copies), at most commit_timeout_ms; past that the
 * client gets ERROR 40003 (statement_completion_unknown: the commit may
 * still become durable). The reply of a read-only transaction (or of a
 * SELECT in autocommit) likewise waits until VDL covers the newest commit
 * it could have read (hx_vfs_reply_lsn), since commits are visible on the
 * writer before they are durable.
 *
 * At most PG_SERVER_MAX_CONNS connections are served; one more is answered
 * FATAL 53300 "too many connections" and closed.
 */
#ifndef HX_PG_SERVER_H
#define HX_PG_SERVER_H

#include <event2/event.h>

#include "page_store.h"

#define PG_SERVER_MAX_CONNS 128

typedef struct pg_server pg_server;

typedef struct {
    struct event_base *base;     /* loop that runs the listener */
    const char *host;            /* address to bind (numeric or a name) */
    unsigned port;
    const char *vfs_name;        /* a VFS made by hx_vfs_register */
    /* The VFS's store, for wait_durable. Held by reference: it may be
     * filled in after pg_server_start (bind first, so that a port in use
     * fails before the volume is opened and its epoch bumped) but before
     * the loop runs, and must outlive the server. */
    const hx_page_store *store;
    int commit_timeout_ms;       /* reply hold limit; < 0: no limit */
    const char *password;        /* NULL or "": trust authentication */
    int max_conns;               /* 0: PG_SERVER_MAX_CONNS */
} pg_server_opts;

/* Binds and listens (SO_REUSEADDR); connections wait in the backlog until
 * the loop runs. On failure returns a hexad error and
 * writes a one-line reason into err (for example the port is in use). */
int pg_server_start(const pg_server_opts *o, pg_server **out, char *err,
                    size_t err_len);

/* Connections being served now. */
int pg_server_active(pg_server *s);

/* Replies held for durability (the before_reply hook with an LSN to wait
 * for): how many, the time they waited in wait_durable, and how many it
 * failed (commit_timeout_ms passed, fenced, closing). */
typedef struct {
    uint64_t waits;
    uint64_t wait_ns;      /* CLOCK_MONOTONIC */
    uint64_t failures;
} pg_reply_waits;

/* Since the server started (the compute node's /metrics). */
typedef struct {
    int sessions;              /* connections served now */
    uint64_t sessions_served;  /* connections served (not refused) */
    uint64_t sessions_refused; /* over max_conns: 53300, or closed */
    uint64_t statements;       /* pg_session_statements(), summed */
    pg_reply_waits commit;     /* replies to transactions that wrote */
    pg_reply_waits read;       /* replies to read-only transactions */
} pg_server_stats;

/* Any thread; holds the server's lock only to copy three numbers. */
void pg_server_get_stats(pg_server *s, pg_server_stats *out);

/* Closes the listener, shuts down every client socket (a worker waiting
 * for durability finishes that wait first), joins every worker and frees
 * the server. Call from the loop's thread with the loop not running the
 * listener's callback (for example after event_base_loopexit). NULL is a
 * no-op. */
void pg_server_stop(pg_server *s);

#endif
