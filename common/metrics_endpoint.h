/* A Prometheus endpoint: GET /metrics over HTTP (libevent's evhttp, on
 * the caller's event loop), at the `metrics=HOST:PORT` of a cluster-file
 * line. The daemon supplies the text through a render callback; this file
 * only serves it. Any other path: 404; methods other than GET and HEAD:
 * 501 (evhttp).
 *
 * The endpoint never blocks the loop as long as render() does not: a
 * scrape renders into one buffer, and evhttp writes it out as the socket
 * takes it. Slow or idle clients are dropped after HX_METRICS_TIMEOUT_S;
 * headers over HX_METRICS_HEADERS_MAX bytes and request bodies are
 * refused.
 *
 * Used by hexad-storage (storage-node/metrics_http.c) and hexad-compute
 * (compute-node/compute_metrics.h).
 */
#ifndef HX_METRICS_ENDPOINT_H
#define HX_METRICS_ENDPOINT_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>

#define HX_METRICS_TIMEOUT_S 10
#define HX_METRICS_HEADERS_MAX 8192
#define HX_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct hx_metrics_endpoint hx_metrics_endpoint;

/* Appends the Prometheus text (format 0.0.4) of the daemon's state to out.
 * Runs on the loop thread for every scrape: must not block (memory only,
 * short locks). Returns HX_OK or an hx_err code (the client then gets
 * 500 and nothing of out). */
typedef int (*hx_metrics_render_fn)(void *arg, struct evbuffer *out);

/* Listens on addr ("host:port"); every scrape calls render(arg, ...).
 * On failure returns HX_ERR_CONFIG (bad address) or HX_ERR_IO (cannot
 * listen, e.g. the port is taken) with the cause and the fix in err. */
int hx_metrics_endpoint_start(struct event_base *base, const char *addr,
                              hx_metrics_render_fn render, void *arg,
                              hx_metrics_endpoint **out, char *err,
                              size_t err_len);

/* Stops listening and drops open scrapes. NULL is a no-op. */
void hx_metrics_endpoint_stop(hx_metrics_endpoint *m);

#endif
