/* The storage node's Prometheus endpoint: GET /metrics over HTTP
 * (libevent's evhttp, on the node's own event loop) on the `metrics`
 * address of its cluster-file line. README.md "Metrics" lists the names.
 * Any other path: 404; methods other than GET and HEAD: 501 (evhttp).
 *
 * The endpoint never blocks the loop: a scrape renders the node's status
 * (memory only, no disk read) into one buffer, and evhttp writes it out
 * as the socket takes it. Slow or idle clients are dropped after
 * METRICS_HTTP_TIMEOUT_S; headers over 8 KiB and request bodies are
 * refused.
 */
#ifndef HX_METRICS_HTTP_H
#define HX_METRICS_HTTP_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "hexad.pb-c.h"

#define METRICS_HTTP_TIMEOUT_S 10
#define METRICS_HTTP_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct metrics_http metrics_http;

/* Where a scrape gets its numbers: collect() returns the node's status
 * (hx_err code on failure), release() frees it. */
typedef struct {
    int (*collect)(void *arg, Hexad__NodeStatus **st);
    void (*release)(Hexad__NodeStatus *st);
    void *arg;
} metrics_http_source;

/* Listens on addr ("host:port"). On failure returns HX_ERR_CONFIG (bad
 * address) or HX_ERR_IO (cannot listen, e.g. the port is taken) with the
 * cause and the fix in err. */
int metrics_http_start(struct event_base *base, const char *addr,
                       const metrics_http_source *src, metrics_http **out,
                       char *err, size_t err_len);
void metrics_http_stop(metrics_http *m); /* NULL is a no-op */

/* The Prometheus text format (version 0.0.4) of st, appended to out.
 * Pure: no I/O. HX_ERR_NOMEM. */
int metrics_render(const Hexad__NodeStatus *st, struct evbuffer *out);

#endif
