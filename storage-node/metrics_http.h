/* The storage node's Prometheus endpoint: GET /metrics on the `metrics`
 * address of its cluster-file line, served on the node's own event loop
 * by common/metrics_endpoint.h (which says how HTTP is handled). README.md
 * "Metrics" lists the names.
 *
 * The endpoint never blocks the loop: a scrape renders the node's status
 * (memory only, no disk read) into one buffer.
 */
#ifndef HX_METRICS_HTTP_H
#define HX_METRICS_HTTP_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "hexad.pb-c.h"

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
