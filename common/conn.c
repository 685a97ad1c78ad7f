/* Framed connections; see conn.h for the state machine and ownership. */
#include "conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "arena.h"
#include "frame.h"
#include "frame_zstd.h"
#include "hx_err.h"
#include "log.h"

enum conn_state { CONN_CONNECTING, CONN_OPEN, CONN_CLOSED };

struct hx_conn {
    struct bufferevent *bev;
    enum conn_state state;
    hx_conn_cbs cbs;
    void *arg;
    hx_conn_opts opts;
    int depth;          /* callbacks of this conn on the stack */
    bool reads_paused;
    char peer[64];
    hx_zstd_tx *ztx;    /* opts.compress: this end's stream */
    hx_zstd_rx *zrx;    /* the peer's stream, from its first compressed frame */
    hx_frame_sizes last; /* of the frame on_frame is given */
    /* Set when the stream broke under a send: the close is deferred to the
     * loop, because senders may hold their own locks (conn_event_cb). */
    const char *broken;
    /* Frames read by the outermost read callback are unpacked here and
     * dropped together after on_frame (arena.h); a nested read (on_frame
     * -> write callback -> read) must not reset it under the outer frame,
     * so it unpacks with malloc. */
    hx_arena arena;
};

static void conn_release_if_idle(hx_conn *c)
{
    if (c->state == CONN_CLOSED && c->depth == 0) {
        bufferevent_free(c->bev);
        hx_zstd_tx_free(c->ztx);
        hx_zstd_rx_free(c->zrx);
        hx_arena_destroy(&c->arena);
        free(c);
    }
}

static void conn_to_closed(hx_conn *c, int err, const char *reason)
{
    if (c->state == CONN_CLOSED)
        return;
    bool was_open = c->state == CONN_OPEN;
    c->state = CONN_CLOSED;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    /* A refused connect is the owner's to report (it retries); a dropped
     * open connection, a bad frame or an I/O error is worth a warning. */
    if (err != HX_ERR_CLOSED && was_open)
        HX_WARN("connection %s closed: %s (%s)", c->peer, reason,
                hx_strerror(err));
    else
        HX_DEBUG("connection %s closed: %s", c->peer, reason);
    c->depth++;
    if (c->cbs.on_close)
        c->cbs.on_close(c, err, reason, c->arg);
    c->depth--;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    hx_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->depth++;
    while (c->state == CONN_OPEN && !c->reads_paused) {
        Hexad__Envelope *env = NULL;
        ProtobufCAllocator *alloc = c->depth == 1 ? &c->arena.pb : NULL;
        int rc = hx_frame_read_any(in, c->opts.frame_max_bytes, &c->zrx,
                                   alloc, &env, &c->last);
        if (rc == 0)
            break;
        if (rc < 0) {
            conn_to_closed(c, rc, rc == HX_ERR_TOO_BIG
                                      ? "frame over the size limit"
                                      : "frame does not decode");
            break;
        }
        c->cbs.on_frame(c, env, c->arg);
        if (alloc != NULL)
            hx_arena_reset(&c->arena);
        else
            hexad__envelope__free_unpacked(env, NULL);
    }
    c->depth--;
    conn_release_if_idle(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    hx_conn *c = arg;
    (void)bev;
    if (c->reads_paused && c->state == CONN_OPEN) {
        c->reads_paused = false;
        bufferevent_enable(c->bev, EV_READ);
        /* Frames may already wait in the input buffer. */
        conn_read_cb(c->bev, c);
    }
}

static void set_nodelay(evutil_socket_t fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    hx_conn *c = arg;
    c->depth++;
    if (what & BEV_EVENT_CONNECTED) {
        set_nodelay(bufferevent_getfd(bev));
        c->state = CONN_OPEN;
        HX_DEBUG("connected to %s", c->peer);
        if (c->cbs.on_connected)
            c->cbs.on_connected(c, c->arg);
    } else if (c->broken != NULL) {
        conn_to_closed(c, HX_ERR_IO, c->broken);
    } else if (what & BEV_EVENT_EOF) {
        conn_to_closed(c, HX_ERR_CLOSED, "peer closed the connection");
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        char why[128];
        snprintf(why, sizeof why, "%s",
                 (what & BEV_EVENT_TIMEOUT)
                     ? "timed out"
                     : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_to_closed(c, HX_ERR_IO, why);
    }
    c->depth--;
    conn_release_if_idle(c);
}

static hx_conn *conn_new(struct bufferevent *bev, const char *peer,
                         const hx_conn_opts *opts, const hx_conn_cbs *cbs,
                         void *arg, enum conn_state state)
{
    hx_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    hx_arena_init(&c->arena);
    c->bev = bev;
    c->state = state;
    c->cbs = *cbs;
    c->arg = arg;
    if (opts)
        c->opts = *opts;
    if (c->opts.frame_max_bytes == 0)
        c->opts.frame_max_bytes = HX_FRAME_MAX_BYTES;
    if (c->opts.compress && (c->ztx = hx_zstd_tx_new()) == NULL) {
        hx_arena_destroy(&c->arena);
        free(c);
        return NULL;
    }
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    /* The write callback fires when the output drains to zero; it resumes
     * reads paused by pause_reads_over_bytes. */
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return c;
}

hx_conn *hx_conn_accept(struct event_base *base, evutil_socket_t fd,
                        const char *peer, const hx_conn_opts *opts,
                        const hx_conn_cbs *cbs, void *arg)
{
    evutil_make_socket_nonblocking(fd);
    set_nodelay(fd);
    struct bufferevent *bev =
        bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        evutil_closesocket(fd);
        return NULL;
    }
    hx_conn *c = conn_new(bev, peer, opts, cbs, arg, CONN_OPEN);
    if (c == NULL)
        bufferevent_free(bev);
    return c;
}

hx_conn *hx_conn_connect(struct event_base *base, const char *host,
                         uint16_t port, const char *peer,
                         const hx_conn_opts *opts, const hx_conn_cbs *cbs,
                         void *arg)
{
    struct evutil_addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    if (evutil_getaddrinfo(host, portstr, &hints, &res) != 0 || res == NULL) {
        HX_WARN("cannot resolve %s:%u for %s", host, port, peer);
        return NULL;
    }
    struct bufferevent *bev =
        bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    hx_conn *c = bev ? conn_new(bev, peer, opts, cbs, arg, CONN_CONNECTING)
                     : NULL;
    if (c == NULL) {
        if (bev)
            bufferevent_free(bev);
        evutil_freeaddrinfo(res);
        return NULL;
    }
    c->depth++;
    int rc = bufferevent_socket_connect(bev, res->ai_addr,
                                        (int)res->ai_addrlen);
    evutil_freeaddrinfo(res);
    if (rc != 0)
        conn_to_closed(c, HX_ERR_IO, "connect failed");
    c->depth--;
    if (c->state == CONN_CLOSED) {
        conn_release_if_idle(c);
        return NULL;
    }
    return c;
}

static void conn_after_queue(hx_conn *c, struct evbuffer *out)
{
    if (c->opts.pause_reads_over_bytes > 0 && !c->reads_paused &&
        evbuffer_get_length(out) > c->opts.pause_reads_over_bytes) {
        c->reads_paused = true;
        bufferevent_disable(c->bev, EV_READ);
    }
}

/* A compressed send that failed inside zstd leaves a stream the peer
 * cannot follow: nothing more is sent, and the connection closes from the
 * loop (frame_zstd.h invariant 1: the next connection starts afresh). */
static int conn_sent(hx_conn *c, struct evbuffer *out, int rc)
{
    if (rc == HX_ERR_IO && c->broken == NULL) {
        c->broken = "compression failed";
        bufferevent_trigger_event(c->bev, BEV_EVENT_ERROR,
                                  BEV_TRIG_DEFER_CALLBACKS);
    }
    if (rc == HX_OK)
        conn_after_queue(c, out);
    return rc;
}

int hx_conn_send(hx_conn *c, const Hexad__Envelope *env)
{
    if (c->state == CONN_CLOSED || c->broken != NULL)
        return HX_ERR_CLOSED;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->ztx != NULL)
        return conn_sent(c, out, hx_zstd_tx_envelope(
                                     c->ztx, out, env, c->opts.frame_max_bytes));
    return conn_sent(c, out, hx_frame_write(out, env, c->opts.frame_max_bytes));
}

int hx_conn_send_packed(hx_conn *c, const uint8_t *body, size_t len)
{
    if (c->state == CONN_CLOSED || c->broken != NULL)
        return HX_ERR_CLOSED;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->ztx != NULL)
        return conn_sent(c, out, hx_zstd_tx_packed(c->ztx, out, body, len,
                                                   c->opts.frame_max_bytes));
    if (len > c->opts.frame_max_bytes || len > UINT32_MAX)
        return HX_ERR_TOO_BIG;
    uint8_t hdr[HX_FRAME_HEADER_BYTES];
    hx_put_be32(hdr, (uint32_t)len);
    if (evbuffer_add(out, hdr, sizeof hdr) != 0 ||
        evbuffer_add(out, body, len) != 0)
        return HX_ERR_NOMEM;
    conn_after_queue(c, out);
    return HX_OK;
}

hx_frame_sizes hx_conn_frame_sizes(const hx_conn *c)
{
    return c->last;
}

size_t hx_conn_pending_bytes(const hx_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

const char *hx_conn_peer(const hx_conn *c)
{
    return c->peer;
}

int hx_conn_is_open(const hx_conn *c)
{
    return c->state == CONN_OPEN;
}

void hx_conn_close(hx_conn *c, const char *reason)
{
    c->depth++;
    conn_to_closed(c, HX_ERR_CLOSED, reason);
    c->depth--;
    conn_release_if_idle(c);
}

int hx_addr_split(const char *addr, char *host, size_t host_len,
                  uint16_t *port)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= host_len)
        return HX_ERR_CONFIG;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p <= 0 || p > 65535)
        return HX_ERR_CONFIG;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *port = (uint16_t)p;
    return HX_OK;
}
