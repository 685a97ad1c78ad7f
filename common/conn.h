/* One framed connection over a libevent bufferevent.
 *
 * States: CONNECTING (outgoing only) -> OPEN -> CLOSED. A bad frame, an
 * oversize frame, EOF or a socket error moves to CLOSED with a logged reason;
 * on_close runs once, then the connection frees itself: the owner must drop
 * its pointer inside on_close. hx_conn_close() may be called anywhere,
 * including inside on_frame; the memory is released only once no callback
 * of this connection is on the stack.
 */
#ifndef HX_CONN_H
#define HX_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/util.h>

#include "frame_zstd.h"
#include "hexad.pb-c.h"

typedef struct hx_conn hx_conn;

typedef struct {
    /* A decoded frame; env is freed after the callback returns. */
    void (*on_frame)(hx_conn *c, const Hexad__Envelope *env, void *arg);
    /* Outgoing connection established. May be NULL. */
    void (*on_connected)(hx_conn *c, void *arg);
    /* Closed for `reason` (err: a hx_err code, HX_ERR_CLOSED for EOF or a
     * local close). The connection is freed right after this returns. */
    void (*on_close)(hx_conn *c, int err, const char *reason, void *arg);
} hx_conn_cbs;

typedef struct {
    size_t frame_max_bytes;       /* 0: HX_FRAME_MAX_BYTES */
    /* Stop reading while this many bytes wait to be sent (0: never). A
     * server sets it so a client that does not read its replies cannot make
     * it buffer without bound. */
    size_t pause_reads_over_bytes;
    /* Send compressed frames (frame_zstd.h). Compressed frames are always
     * accepted, whatever this says. */
    bool compress;
} hx_conn_opts;

/* Wraps an accepted socket (owned from now on). NULL on failure (fd closed). */
hx_conn *hx_conn_accept(struct event_base *base, evutil_socket_t fd,
                        const char *peer, const hx_conn_opts *opts,
                        const hx_conn_cbs *cbs, void *arg);

/* Starts connecting to host:port. NULL when the address does not resolve
 * or memory runs out; otherwise on_connected or on_close follows. */
hx_conn *hx_conn_connect(struct event_base *base, const char *host,
                         uint16_t port, const char *peer,
                         const hx_conn_opts *opts, const hx_conn_cbs *cbs,
                         void *arg);

/* Queues env. HX_ERR_CLOSED after close, HX_ERR_TOO_BIG, HX_ERR_NOMEM. */
int hx_conn_send(hx_conn *c, const Hexad__Envelope *env);

/* Queues an envelope already packed (body bytes, no header). */
int hx_conn_send_packed(hx_conn *c, const uint8_t *body, size_t len);

/* Inside on_frame: the frame's size on the wire and decoded. */
hx_frame_sizes hx_conn_frame_sizes(const hx_conn *c);

/* Bytes queued and not yet written to the socket. */
size_t hx_conn_pending_bytes(const hx_conn *c);

const char *hx_conn_peer(const hx_conn *c);
int hx_conn_is_open(const hx_conn *c);

/* Closes (on_close runs with HX_ERR_CLOSED and `reason`). */
void hx_conn_close(hx_conn *c, const char *reason);

/* Splits "host:port". HX_ERR_CONFIG on a malformed address. */
int hx_addr_split(const char *addr, char *host, size_t host_len,
                  uint16_t *port);

#endif
