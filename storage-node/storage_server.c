/* The storage node's network side: listener, connections, dispatch.
 *
 * DESIGN
 *
 * Connections. Each accepted socket becomes an hx_conn (common/conn.h)
 * wrapped in a srv_conn. The hx_conn owns the socket and frees itself after
 * on_close; the srv_conn outlives it while acks are still owed to it
 * (`awaiting` > 0), so that a flush never touches a freed connection: the
 * ack of a closed connection is dropped, and the srv_conn freed with the
 * last one. States of a srv_conn: OPEN (conn != NULL) -> DRAINING (conn ==
 * NULL, awaiting > 0) -> freed.
 *
 * Group commit. An AppendRecords is only staged in the segment store
 * (segment_store_stage_append); the first one staged in a loop iteration
 * makes `flush_ev` active. flush_ev is a plain event with no fd, activated
 * with event_active(): libevent appends it to the tail of the active queue
 * of its priority, behind every socket event the current iteration already
 * activated, and runs it in this same iteration. So every append read in
 * one iteration, from every connection, shares ONE synced RocksDB write,
 * and no append waits for a later iteration. (The alternative, a
 * lower-priority event, starves while some socket is always readable; a
 * zero timer waits for the next iteration and drags that one's reads in
 * too.) The acks are sent from the flush, after the synced write returned:
 * nothing is acknowledged before it is durable.
 *
 * Ordering. Seal, truncate and segment info first flush what is staged:
 * they then observe, and order after, every append received before them.
 * Reads (GetPage, status) see only what is durable, so they need no flush.
 *
 * Limits: frames (hx_conn, HX_FRAME_MAX_BYTES), staged bytes
 * (SEGMENT_STORE_STAGED_BYTES_MAX: flushed early past it), connections
 * (SERVER_CONNS_MAX), per-connection reply backlog
 * (STORAGE_SERVER_PAUSE_READS_BYTES).
 */
#include "storage_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "conn.h"
#include "hx_err.h"
#include "log.h"
#include "segment_store.h"

#define SERVER_CONNS_MAX 4096

typedef struct srv_conn srv_conn;

struct storage_server {
    struct event_base *base;
    struct evconnlistener *listener;
    segment_store *store;
    struct event *flush_ev;
    bool flush_scheduled;
    hx_storage_cfg self;
    uint32_t volume;        /* the cluster's volume, for NodeStatus */
    uint64_t started_ms;
    srv_conn *conns;        /* open connections, doubly linked */
    size_t n_conns;
};

struct srv_conn {
    storage_server *srv;
    hx_conn *conn;          /* NULL once closed (DRAINING) */
    srv_conn *prev, *next;
    size_t awaiting;        /* staged appends whose results are owed */
};

typedef struct {
    srv_conn *sc;
    uint64_t req_id;
} pending_ack;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------
 * Replies.
 * ---------------------------------------------------------------------- */

static void send_env(srv_conn *sc, Hexad__Envelope *env);

static void send_error(srv_conn *sc, uint64_t req_id, int code,
                       const char *msg, uint64_t current_epoch)
{
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__Error e = HEXAD__ERROR__INIT;
    e.code = code;
    e.message = (char *)(msg && msg[0] ? msg : hx_strerror(code));
    e.current_epoch = current_epoch;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_ERROR;
    env.error = &e;
    send_env(sc, &env);
}

static void send_env(srv_conn *sc, Hexad__Envelope *env)
{
    if (sc->conn == NULL)
        return;
    int rc = hx_conn_send(sc->conn, env);
    if (rc == HX_OK || rc == HX_ERR_CLOSED)
        return;
    HX_WARN("reply %" PRIu64 " to %s not sent: %s", env->req_id,
            hx_conn_peer(sc->conn), hx_strerror(rc));
    if (env->body_case != HEXAD__ENVELOPE__BODY_ERROR) {
        char msg[128];
        snprintf(msg, sizeof msg, "the reply could not be sent: %s",
                 hx_strerror(rc));
        send_error(sc, env->req_id, rc, msg, 0);
    }
}

static void srv_conn_release(srv_conn *sc)
{
    if (sc->conn == NULL && sc->awaiting == 0)
        free(sc);
}

/* ------------------------------------------------------------------------
 * Group commit.
 * ---------------------------------------------------------------------- */

static void append_done(void *cookie, const segment_store_append_result *res,
                        void *arg)
{
    (void)arg;
    pending_ack *p = cookie;
    srv_conn *sc = p->sc;
    if (res->rc == HX_OK) {
        Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
        Hexad__AppendAck ack = HEXAD__APPEND_ACK__INIT;
        ack.volume = res->volume;
        ack.pg = res->pg;
        ack.scl = res->scl;
        ack.max_lsn = res->max_lsn;
        env.req_id = p->req_id;
        env.body_case = HEXAD__ENVELOPE__BODY_APPEND_ACK;
        env.append_ack = &ack;
        send_env(sc, &env);
    } else {
        if (res->rc != HX_ERR_STALE_EPOCH)
            HX_DEBUG("append %" PRIu64 " refused: %s", p->req_id,
                     res->why.msg);
        send_error(sc, p->req_id, res->rc, res->why.msg,
                   res->why.current_epoch);
    }
    sc->awaiting--;
    free(p);
    srv_conn_release(sc);
}

/* One synced write for everything staged, then the acks. */
static void server_flush(storage_server *srv)
{
    if (segment_store_staged_count(srv->store) == 0)
        return;
    segment_store_flush(srv->store, append_done, srv);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    storage_server *srv = arg;
    srv->flush_scheduled = false;
    server_flush(srv);
}

static void handle_append(srv_conn *sc, uint64_t req_id,
                          const Hexad__AppendRecords *req)
{
    storage_server *srv = sc->srv;
    pending_ack *p = malloc(sizeof *p);
    int rc = p ? segment_store_stage_append(srv->store, req, p)
               : HX_ERR_NOMEM;
    if (rc != HX_OK) {
        free(p);
        send_error(sc, req_id, rc, "cannot stage the append", 0);
        return;
    }
    p->sc = sc;
    p->req_id = req_id;
    sc->awaiting++;
    if (segment_store_staged_bytes(srv->store) >=
        SEGMENT_STORE_STAGED_BYTES_MAX) {
        server_flush(srv); /* bound the batch's memory */
        return;
    }
    if (!srv->flush_scheduled) {
        srv->flush_scheduled = true;
        event_active(srv->flush_ev, EV_TIMEOUT, 0);
    }
}

/* ------------------------------------------------------------------------
 * Other requests.
 * ---------------------------------------------------------------------- */

static void handle_get_page(srv_conn *sc, uint64_t req_id,
                            const Hexad__GetPage *req)
{
    uint8_t *page = NULL;
    size_t len = 0;
    uint64_t page_lsn = 0;
    segment_store_why why = {0};
    int rc = segment_store_get_page(sc->srv->store, req->volume, req->pg,
                                    req->page_no, req->read_lsn, &page, &len,
                                    &page_lsn, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, 0);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__PageData pd = HEXAD__PAGE_DATA__INIT;
    pd.volume = req->volume;
    pd.pg = req->pg;
    pd.page_no = req->page_no;
    pd.read_lsn = req->read_lsn;
    pd.page_lsn = page_lsn;
    pd.data.data = page;
    pd.data.len = len;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_PAGE;
    env.page = &pd;
    send_env(sc, &env);
    free(page);
}

static void handle_segment_info(srv_conn *sc, uint64_t req_id,
                                const Hexad__SegmentInfoRequest *req)
{
    server_flush(sc->srv);
    Hexad__SegmentInfoResponse *info = NULL;
    segment_store_why why = {0};
    int rc = segment_store_segment_info(sc->srv->store, req, &info, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, 0);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_SEGMENT_INFO;
    env.segment_info = info;
    send_env(sc, &env);
    segment_store_segment_info_free(info);
}

static void handle_seal(srv_conn *sc, uint64_t req_id,
                        const Hexad__SealEpoch *req)
{
    server_flush(sc->srv);
    uint64_t current = 0;
    segment_store_why why = {0};
    int rc = segment_store_seal_epoch(sc->srv->store, req->volume,
                                      req->new_epoch, &current, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, why.current_epoch);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__SealAck ack = HEXAD__SEAL_ACK__INIT;
    ack.volume = req->volume;
    ack.volume_epoch = current;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_SEAL_ACK;
    env.seal_ack = &ack;
    send_env(sc, &env);
}

static void handle_truncate(srv_conn *sc, uint64_t req_id,
                            const Hexad__Truncate *req)
{
    server_flush(sc->srv);
    uint64_t scl = 0;
    segment_store_why why = {0};
    int rc = segment_store_truncate(sc->srv->store, req->volume, req->pg,
                                    req->volume_epoch, req->from_lsn,
                                    req->to_lsn, &scl, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, why.current_epoch);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__TruncateAck ack = HEXAD__TRUNCATE_ACK__INIT;
    ack.volume = req->volume;
    ack.pg = req->pg;
    ack.scl = scl;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_TRUNCATE_ACK;
    env.truncate_ack = &ack;
    send_env(sc, &env);
}

static void handle_status(srv_conn *sc, uint64_t req_id)
{
    storage_server *srv = sc->srv;
    Hexad__NodeStatus *st = NULL;
    int rc = segment_store_status(srv->store, &st);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, "cannot build the status", 0);
        return;
    }
    st->node = srv->self.id;
    st->az = srv->self.az;
    st->uptime_ms = now_ms() - srv->started_ms;
    st->volume_epoch = segment_store_volume_epoch(srv->store, srv->volume);
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_STATUS;
    env.status = st;
    send_env(sc, &env);
    st->node = NULL; /* ours, not the status's */
    st->az = NULL;
    segment_store_status_free(st);
}

static const char *body_name(Hexad__Envelope__BodyCase b)
{
    switch (b) {
    case HEXAD__ENVELOPE__BODY__NOT_SET: return "an empty envelope";
    case HEXAD__ENVELOPE__BODY_APPEND: return "AppendRecords";
    case HEXAD__ENVELOPE__BODY_APPEND_ACK: return "AppendAck";
    case HEXAD__ENVELOPE__BODY_GET_PAGE: return "GetPage";
    case HEXAD__ENVELOPE__BODY_PAGE: return "PageData";
    case HEXAD__ENVELOPE__BODY_SEGMENT_INFO_REQ: return "SegmentInfoRequest";
    case HEXAD__ENVELOPE__BODY_SEGMENT_INFO: return "SegmentInfoResponse";
    case HEXAD__ENVELOPE__BODY_SEAL: return "SealEpoch";
    case HEXAD__ENVELOPE__BODY_SEAL_ACK: return "SealAck";
    case HEXAD__ENVELOPE__BODY_TRUNCATE: return "Truncate";
    case HEXAD__ENVELOPE__BODY_TRUNCATE_ACK: return "TruncateAck";
    case HEXAD__ENVELOPE__BODY_STATUS_REQ: return "NodeStatusRequest";
    case HEXAD__ENVELOPE__BODY_STATUS: return "NodeStatus";
    case HEXAD__ENVELOPE__BODY_ERROR: return "Error";
    default: return "an unknown message";
    }
}

/* ------------------------------------------------------------------------
 * Connections.
 * ---------------------------------------------------------------------- */

static void on_frame(hx_conn *c, const Hexad__Envelope *env, void *arg)
{
    (void)c;
    srv_conn *sc = arg;
    switch (env->body_case) {
    case HEXAD__ENVELOPE__BODY_APPEND:
        handle_append(sc, env->req_id, env->append);
        break;
    case HEXAD__ENVELOPE__BODY_GET_PAGE:
        handle_get_page(sc, env->req_id, env->get_page);
        break;
    case HEXAD__ENVELOPE__BODY_SEGMENT_INFO_REQ:
        handle_segment_info(sc, env->req_id, env->segment_info_req);
        break;
    case HEXAD__ENVELOPE__BODY_SEAL:
        handle_seal(sc, env->req_id, env->seal);
        break;
    case HEXAD__ENVELOPE__BODY_TRUNCATE:
        handle_truncate(sc, env->req_id, env->truncate);
        break;
    case HEXAD__ENVELOPE__BODY_STATUS_REQ:
        handle_status(sc, env->req_id);
        break;
    default: {
        char msg[128];
        snprintf(msg, sizeof msg, "a storage node does not accept %s",
                 body_name(env->body_case));
        HX_WARN("%s: %s (request %" PRIu64 ")", hx_conn_peer(sc->conn), msg,
                env->req_id);
        send_error(sc, env->req_id, HX_ERR_PROTOCOL, msg, 0);
        break;
    }
    }
}

static void on_close(hx_conn *c, int err, const char *reason, void *arg)
{
    (void)c;
    (void)err;
    (void)reason; /* hx_conn logged it */
    srv_conn *sc = arg;
    storage_server *srv = sc->srv;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        srv->conns = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    srv->n_conns--;
    sc->conn = NULL;
    srv_conn_release(sc);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *addr, int socklen, void *arg)
{
    (void)l;
    (void)socklen;
    storage_server *srv = arg;
    char host[64] = "?", peer[96];
    uint16_t port = 0;
    if (addr->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)addr;
        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (addr->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(peer, sizeof peer, "%s:%u", host, port);
    if (srv->n_conns >= SERVER_CONNS_MAX) {
        HX_WARN("refusing connection from %s: %d connections open", peer,
                SERVER_CONNS_MAX);
        evutil_closesocket(fd);
        return;
    }
    srv_conn *sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        evutil_closesocket(fd);
        return;
    }
    sc->srv = srv;
    hx_conn_opts opts = {
        .frame_max_bytes = 0,
        .pause_reads_over_bytes = STORAGE_SERVER_PAUSE_READS_BYTES,
    };
    hx_conn_cbs cbs = {.on_frame = on_frame, .on_close = on_close};
    sc->conn = hx_conn_accept(srv->base, fd, peer, &opts, &cbs, sc);
    if (sc->conn == NULL) {
        HX_WARN("cannot set up connection from %s", peer);
        free(sc);
        return;
    }
    sc->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = sc;
    srv->conns = sc;
    srv->n_conns++;
    HX_DEBUG("connection from %s", peer);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    HX_WARN("accept failed: %s", evutil_socket_error_to_string(e));
}

/* ------------------------------------------------------------------------
 * Lifecycle.
 * ---------------------------------------------------------------------- */

int storage_server_create(struct event_base *base,
                          const hx_cluster_cfg *cluster,
                          const hx_storage_cfg *self, storage_server **out,
                          char *err, size_t err_len)
{
    int rc = HX_OK;
    struct evutil_addrinfo *res = NULL;
    storage_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    srv->base = base;
    srv->self = *self;
    srv->volume = cluster->volume;
    srv->started_ms = now_ms();
    srv->flush_ev = event_new(base, -1, 0, flush_cb, srv);
    if (srv->flush_ev == NULL) {
        snprintf(err, err_len, "cannot create the flush event");
        rc = HX_ERR_NOMEM;
        goto fail;
    }

    segment_store_why why = {0};
    rc = segment_store_open(self->data_dir, self->id, &srv->store, &why);
    if (rc != HX_OK) {
        snprintf(err, err_len, "cannot open the segment store in %s: %s",
                 self->data_dir, why.msg[0] ? why.msg : hx_strerror(rc));
        goto fail;
    }

    struct evutil_addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", self->port);
    int gai = evutil_getaddrinfo(self->host, portstr, &hints, &res);
    if (gai != 0 || res == NULL) {
        snprintf(err, err_len, "cannot resolve listen address %s: %s",
                 self->addr, evutil_gai_strerror(gai));
        rc = HX_ERR_CONFIG;
        goto fail;
    }
    srv->listener = evconnlistener_new_bind(
        base, accept_cb, srv, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, -1,
        res->ai_addr, (int)res->ai_addrlen);
    if (srv->listener == NULL) {
        int e = EVUTIL_SOCKET_ERROR();
        snprintf(err, err_len, "cannot listen on %s: %s%s", self->addr,
                 evutil_socket_error_to_string(e),
                 e == EADDRINUSE ? " (another process holds the port)" : "");
        rc = HX_ERR_IO;
        goto fail;
    }
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    evutil_freeaddrinfo(res);
    *out = srv;
    return HX_OK;

fail:
    if (res)
        evutil_freeaddrinfo(res);
    storage_server_destroy(srv);
    return rc;
}

void storage_server_destroy(storage_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->listener)
        evconnlistener_free(srv->listener);
    /* Staged appends become durable and their acks are queued; whether
     * they reach the client before the sockets close is best effort. */
    if (srv->store)
        server_flush(srv);
    while (srv->conns != NULL)
        hx_conn_close(srv->conns->conn, "server shutting down");
    segment_store_close(srv->store);
    if (srv->flush_ev)
        event_free(srv->flush_ev);
    free(srv);
}
