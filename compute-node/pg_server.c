/* pg_server: listener + one worker thread per PostgreSQL connection.
 * See pg_server.h. */
#include "pg_server.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/listener.h>
#include <event2/util.h>
#include <sodium.h>
#include <sqlite3.h>

#include "hx_err.h"
#include "hx_vfs.h"
#include "log.h"
#include "pg_session.h"
#include "pgwire.h"

/* Connections past max_conns that still get a FATAL 53300 answer; beyond
 * these, an excess connection is closed without a word. */
#define REFUSERS_MAX 16
/* How long a refused client may take to send its startup packet. */
#define REFUSE_WAIT_MS 2000
#define RECV_CHUNK 65536

typedef struct pgs_worker {
    pg_server *srv;
    int fd;
    pthread_t th;
    bool refuse;           /* only answer FATAL 53300 and close */
    bool done;             /* thread finished: join it (under srv->mu) */
    int32_t pid, secret;
    sqlite3 *db;           /* under srv->mu: for cancel */
    char peer[64];
    struct pgs_worker *next;
} pgs_worker;

struct pg_server {
    struct evconnlistener *lev;
    char *vfs_name;
    const hx_page_store *store;
    int commit_timeout_ms;
    char *password;
    int max_conns;

    pthread_mutex_t mu;
    pgs_worker *workers;   /* every thread not yet joined */
    int active;            /* serving workers not done */
    int refusers;          /* refusing workers not done */
    bool stopping;
    int32_t next_pid;
    uint64_t served, refused; /* pg_server_stats */

    /* pg_server_stats, bumped by the workers once per statement batch
     * or reply: atomics, so that no session takes mu to count. */
    atomic_uint_fast64_t statements;
    struct {
        atomic_uint_fast64_t waits, wait_ns, failures;
    } reply_waits[2]; /* [wrote] */
};

/* ---- session callbacks (worker thread) ---- */

static int cb_db_open(void *arg, const char *user, const char *database,
                      sqlite3 **db)
{
    pgs_worker *w = arg;
    (void)user;
    (void)database; /* one volume, one database: every name maps to it */
    int rc = hx_vfs_open_db(w->srv->vfs_name, db);
    if (rc != HX_OK) {
        HX_ERROR("pg %s pid=%d: cannot open the database: %s", w->peer,
                 (int)w->pid, hx_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&w->srv->mu);
    w->db = *db;
    pthread_mutex_unlock(&w->srv->mu);
    return HX_OK;
}

static void cb_db_close(void *arg, sqlite3 *db)
{
    pgs_worker *w = arg;
    pthread_mutex_lock(&w->srv->mu);
    w->db = NULL;
    pthread_mutex_unlock(&w->srv->mu);
    sqlite3_close(db);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Pipelined commit: hold the reply until VDL covers what the transaction
 * wrote (its commit LSN) or, read-only, the newest commit it could read. */
static int cb_before_reply(void *arg, pg_session *s, bool wrote, char *why,
                           size_t why_len)
{
    pgs_worker *w = arg;
    pg_server *srv = w->srv;
    sqlite3 *db = pg_session_db(s);
    uint64_t lsn = db ? hx_vfs_reply_lsn(db) : 0;
    if (lsn == 0)
        return HX_OK;
    const char *what = wrote ? "commit" : "read point";
    int64_t t0 = mono_ns();
    int rc = srv->store->wait_durable(srv->store->ctx, lsn,
                                     srv->commit_timeout_ms);
    int64_t dt = mono_ns() - t0;
    atomic_fetch_add_explicit(&srv->reply_waits[wrote].waits, 1,
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&srv->reply_waits[wrote].wait_ns,
                              (uint64_t)dt, memory_order_relaxed);
    if (rc != HX_OK)
        atomic_fetch_add_explicit(&srv->reply_waits[wrote].failures, 1,
                                  memory_order_relaxed);
    if (rc == HX_ERR_TIMEOUT) {
        snprintf(why, why_len, "%s LSN %" PRIu64 " not covered by VDL %"
                 PRIu64 " after commit_timeout_ms=%d", what, lsn,
                 srv->store->read_point(srv->store->ctx),
                 srv->commit_timeout_ms);
        HX_ERROR("pg %s pid=%d: %s: write quorum lost? (outcome unknown)",
                 w->peer, (int)w->pid, why);
    } else if (rc != HX_OK) {
        snprintf(why, why_len, "%s LSN %" PRIu64 ": %s", what, lsn,
                 hx_strerror(rc));
        HX_ERROR("pg %s pid=%d: %s (outcome unknown)", w->peer, (int)w->pid,
                 why);
    } else if (dt > INT64_C(1000000000)) {
        HX_WARN("pg %s pid=%d: %s LSN %" PRIu64 " durable after "
                "%" PRId64 " ms", w->peer, (int)w->pid, what, lsn,
                dt / 1000000);
    }
    return rc;
}

static void cb_on_cancel(void *arg, int32_t pid, int32_t secret)
{
    pgs_worker *w = arg;
    pg_server *srv = w->srv;
    bool found = false;
    pthread_mutex_lock(&srv->mu);
    for (pgs_worker *o = srv->workers; o; o = o->next) {
        if (!o->done && !o->refuse && o->pid == pid && o->secret == secret) {
            if (o->db)
                (void)hx_vfs_cancel(srv->vfs_name, o->db);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    HX_INFO("pg %s: cancel request for pid=%d: %s", w->peer, (int)pid,
            found ? "interrupting" : "no such session (ignored)");
}

static void cb_log(void *arg, const char *line)
{
    (void)arg;
    HX_DEBUG("%s", line);
}

/* ---- socket I/O (worker thread) ---- */

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Over the connection limit: read the startup packet (bounded wait), answer
 * FATAL 53300 as PostgreSQL does, close. */
static void refuse_conn(pgs_worker *w)
{
    struct timeval tv = {.tv_sec = REFUSE_WAIT_MS / 1000,
                         .tv_usec = (REFUSE_WAIT_MS % 1000) * 1000};
    setsockopt(w->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[1024];
    ssize_t k;
    do {
        k = recv(w->fd, buf, sizeof buf, 0);
    } while (k < 0 && errno == EINTR);
    if (k > 0) {
        pgw_buf out;
        pgw_buf_init(&out, 0);
        char msg[96];
        snprintf(msg, sizeof msg, "sorry, too many clients already (limit %d)",
                 w->srv->max_conns);
        if (pgw_put_error(&out, "FATAL", "53300", msg, NULL,
                          "retry later or close idle connections") == 0)
            (void)send_all(w->fd, out.data, out.len);
        pgw_buf_free(&out);
    }
    shutdown(w->fd, SHUT_WR);
}

static void serve_conn(pgs_worker *w)
{
    pg_server *srv = w->srv;
    pg_session_opts so = {
        .db_open = cb_db_open,
        .db_close = cb_db_close,
        .before_reply = cb_before_reply,
        .on_cancel = cb_on_cancel,
        .log = cb_log,
        .arg = w,
        .password = srv->password,
        .backend_pid = w->pid,
        .secret_key = w->secret,
    };
    pg_session *s = pg_session_create(&so);
    if (!s) {
        HX_ERROR("pg %s: out of memory creating a session", w->peer);
        return;
    }
    uint8_t *in = NULL;
    size_t in_len = 0, in_cap = 0;
    pgw_buf out;
    pgw_buf_init(&out, 0);
    const char *why = "client closed the connection";
    uint64_t statements = 0; /* of s, added to the server's count */

    for (;;) {
        if (in_cap - in_len < RECV_CHUNK) {
            size_t ncap = in_cap ? in_cap * 2 : 2 * RECV_CHUNK;
            while (ncap - in_len < RECV_CHUNK)
                ncap *= 2;
            uint8_t *ni = realloc(in, ncap);
            if (!ni) {
                why = "out of memory";
                break;
            }
            in = ni;
            in_cap = ncap;
        }
        ssize_t k = recv(w->fd, in + in_len, in_cap - in_len, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k < 0)
                why = strerror(errno);
            break;
        }
        in_len += (size_t)k;

        size_t consumed = 0;
        int rc = pg_session_feed(s, in, in_len, &consumed, &out);
        uint64_t ran = pg_session_statements(s);
        if (ran != statements) {
            atomic_fetch_add_explicit(&srv->statements, ran - statements,
                                      memory_order_relaxed);
            statements = ran;
        }
        if (consumed > 0) {
            memmove(in, in + consumed, in_len - consumed);
            in_len -= consumed;
        }
        if (rc < 0) {
            why = hx_strerror(rc);
            break;
        }
        if (out.len > 0) {
            if (send_all(w->fd, out.data, out.len) != 0) {
                why = strerror(errno);
                break;
            }
            pgw_buf_drain(&out, out.len);
        }
        if (rc == PG_SESSION_CLOSE) {
            why = "session closed";
            break;
        }
        /* A huge buffer from one big message: give the memory back. */
        if (in_len == 0 && in_cap > 8 * RECV_CHUNK) {
            free(in);
            in = NULL;
            in_cap = 0;
        }
    }
    HX_INFO("pg %s pid=%d: disconnected (%s)", w->peer, (int)w->pid, why);
    pgw_buf_free(&out);
    free(in);
    pg_session_destroy(s);
}

static void *worker_main(void *arg)
{
    pgs_worker *w = arg;
    pg_server *srv = w->srv;
    if (w->refuse)
        refuse_conn(w);
    else
        serve_conn(w);
    pthread_mutex_lock(&srv->mu);
    close(w->fd);
    w->fd = -1;
    w->done = true;
    if (w->refuse)
        srv->refusers--;
    else
        srv->active--;
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* ---- accept (loop thread) ---- */

/* Joins finished workers. Caller holds nothing; takes srv->mu. */
static void reap(pg_server *srv)
{
    pgs_worker *dead = NULL;
    pthread_mutex_lock(&srv->mu);
    for (pgs_worker **pp = &srv->workers; *pp;) {
        pgs_worker *w = *pp;
        if (w->done) {
            *pp = w->next;
            w->next = dead;
            dead = w;
        } else {
            pp = &w->next;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    while (dead) {
        pgs_worker *w = dead;
        dead = w->next;
        pthread_join(w->th, NULL);
        free(w);
    }
}

static void format_peer(const struct sockaddr *sa, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        evutil_inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        evutil_inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(out, n, "%s:%u", host, port);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd,
                      struct sockaddr *sa, int salen, void *arg)
{
    pg_server *srv = arg;
    (void)lev;
    (void)salen;
    reap(srv);

    pgs_worker *w = calloc(1, sizeof *w);
    if (!w) {
        HX_ERROR("pg: out of memory accepting a connection; closing it");
        close(fd);
        return;
    }
    w->srv = srv;
    w->fd = fd;
    format_peer(sa, w->peer, sizeof w->peer);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);

    pthread_mutex_lock(&srv->mu);
    if (srv->stopping) {
        pthread_mutex_unlock(&srv->mu);
        close(fd);
        free(w);
        return;
    }
    if (srv->active >= srv->max_conns) {
        if (srv->refusers >= REFUSERS_MAX) {
            srv->refused++;
            pthread_mutex_unlock(&srv->mu);
            HX_WARN("pg %s: too many connections (%d served, %d being "
                    "refused); closed without a reply", w->peer,
                    srv->max_conns, REFUSERS_MAX);
            close(fd);
            free(w);
            return;
        }
        w->refuse = true;
        srv->refusers++;
        srv->refused++;
    } else {
        srv->active++;
        srv->served++;
        w->pid = srv->next_pid++;
        if (srv->next_pid <= 0)
            srv->next_pid = 1000;
        w->secret = (int32_t)(randombytes_random() & 0x7fffffffu);
    }
    /* Linked before the thread starts: it only marks itself done. */
    w->next = srv->workers;
    srv->workers = w;
    pthread_mutex_unlock(&srv->mu);

    if (w->refuse)
        HX_WARN("pg %s: too many connections (limit %d): refusing with "
                "FATAL 53300", w->peer, srv->max_conns);
    else
        HX_INFO("pg %s pid=%d: connected", w->peer, (int)w->pid);

    /* Workers never take the process's termination signals: those go to
     * the loop thread's signal events. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&w->th, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        HX_ERROR("pg %s: cannot start a worker thread: %s; closing the "
                 "connection", w->peer, strerror(err));
        pthread_mutex_lock(&srv->mu);
        for (pgs_worker **pp = &srv->workers; *pp; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        }
        if (w->refuse)
            srv->refusers--;
        else
            srv->active--;
        pthread_mutex_unlock(&srv->mu);
        close(fd);
        free(w);
    }
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    (void)lev;
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    /* EMFILE and friends: libevent retries on the next readiness. */
    HX_WARN("pg: accept failed: %s", evutil_socket_error_to_string(e));
}

/* ---- public ---- */

int pg_server_start(const pg_server_opts *o, pg_server **out, char *err,
                    size_t err_len)
{
    *out = NULL;
    if (!o || !o->base || !o->host || !o->vfs_name || !o->store ||
        o->port == 0 || o->port > 65535) {
        snprintf(err, err_len, "pg_server_start: bad arguments");
        return HX_ERR_INVALID;
    }
    pg_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    srv->vfs_name = strdup(o->vfs_name);
    srv->password = o->password && o->password[0] ? strdup(o->password) : NULL;
    srv->store = o->store;
    srv->commit_timeout_ms = o->commit_timeout_ms;
    srv->max_conns = o->max_conns > 0 ? o->max_conns : PG_SERVER_MAX_CONNS;
    srv->next_pid = 1000;
    pthread_mutex_init(&srv->mu, NULL);
    if (!srv->vfs_name || (o->password && o->password[0] && !srv->password)) {
        snprintf(err, err_len, "out of memory");
        pg_server_stop(srv);
        return HX_ERR_NOMEM;
    }

    char port[8];
    snprintf(port, sizeof port, "%u", o->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(o->host, port, &hints, &res);
    if (gai != 0 || !res) {
        snprintf(err, err_len, "cannot resolve listen address %s:%s: %s",
                 o->host, port, gai ? gai_strerror(gai) : "no address");
        pg_server_stop(srv);
        return HX_ERR_CONFIG;
    }
    srv->lev = evconnlistener_new_bind(
        o->base, on_accept, srv,
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
            LEV_OPT_LEAVE_SOCKETS_BLOCKING,
        128, res->ai_addr, (int)res->ai_addrlen);
    int e = errno;
    freeaddrinfo(res);
    if (!srv->lev) {
        if (e == EADDRINUSE)
            snprintf(err, err_len, "cannot listen on %s:%s: the port is "
                     "already in use by another process (see: ss -ltnp "
                     "'sport = :%s'); stop it or change addr= in the cluster "
                     "file", o->host, port, port);
        else
            snprintf(err, err_len, "cannot listen on %s:%s: %s", o->host,
                     port, strerror(e));
        pg_server_stop(srv);
        return HX_ERR_IO;
    }
    evconnlistener_set_error_cb(srv->lev, on_accept_error);
    *out = srv;
    return HX_OK;
}

int pg_server_active(pg_server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->active;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void reply_waits_load(pg_server *s, int wrote, pg_reply_waits *out)
{
    out->waits = atomic_load_explicit(&s->reply_waits[wrote].waits,
                                      memory_order_relaxed);
    out->wait_ns = atomic_load_explicit(&s->reply_waits[wrote].wait_ns,
                                        memory_order_relaxed);
    out->failures = atomic_load_explicit(&s->reply_waits[wrote].failures,
                                         memory_order_relaxed);
}

void pg_server_get_stats(pg_server *s, pg_server_stats *out)
{
    pthread_mutex_lock(&s->mu);
    out->sessions = s->active;
    out->sessions_served = s->served;
    out->sessions_refused = s->refused;
    pthread_mutex_unlock(&s->mu);
    out->statements = atomic_load_explicit(&s->statements,
                                           memory_order_relaxed);
    reply_waits_load(s, 1, &out->commit);
    reply_waits_load(s, 0, &out->read);
}

void pg_server_stop(pg_server *s)
{
    if (!s)
        return;
    if (s->lev) {
        evconnlistener_free(s->lev);
        s->lev = NULL;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    int n = 0;
    for (pgs_worker *w = s->workers; w; w = w->next) {
        if (!w->done && w->fd >= 0) {
            shutdown(w->fd, SHUT_RDWR);
            /* Ends a statement, a lock wait too, so the join below
             * does not wait out the busy timeout. */
            if (w->db)
                (void)hx_vfs_cancel(s->vfs_name, w->db);
            n++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (n > 0)
        HX_INFO("pg: closing %d client connection%s", n, n == 1 ? "" : "s");
    pthread_mutex_lock(&s->mu);
    pgs_worker *all = s->workers;
    s->workers = NULL;
    pthread_mutex_unlock(&s->mu);
    while (all) {
        pgs_worker *w = all;
        all = w->next;
        pthread_join(w->th, NULL);
        free(w);
    }
    pthread_mutex_destroy(&s->mu);
    free(s->vfs_name);
    free(s->password);
    free(s);
}
