/* GET /metrics over evhttp (see metrics_endpoint.h). */
#include "metrics_endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "conn.h"
#include "hx_err.h"
#include "log.h"

struct hx_metrics_endpoint {
    struct evhttp *http;
    hx_metrics_render_fn render;
    void *arg;
};

static void reply_text(struct evhttp_request *req, int code,
                       const char *reason, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    hx_metrics_endpoint *m = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || strcmp(path, "/metrics") != 0) {
        reply_text(req, HTTP_NOTFOUND, "Not Found",
                   "not found: this endpoint serves GET /metrics only\n");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    int rc = b != NULL ? m->render(m->arg, b) : HX_ERR_NOMEM;
    if (rc != HX_OK) {
        if (b)
            evbuffer_free(b);
        char msg[128];
        snprintf(msg, sizeof msg, "cannot collect the metrics: %s\n",
                 hx_strerror(rc));
        reply_text(req, HTTP_INTERNAL, "Internal Server Error", msg);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      HX_METRICS_CONTENT_TYPE);
    evhttp_send_reply(req, HTTP_OK, "OK", b);
    evbuffer_free(b);
}

int hx_metrics_endpoint_start(struct event_base *base, const char *addr,
                              hx_metrics_render_fn render, void *arg,
                              hx_metrics_endpoint **out, char *err,
                              size_t err_len)
{
    char host[96];
    uint16_t port = 0;
    if (hx_addr_split(addr, host, sizeof host, &port) != HX_OK) {
        snprintf(err, err_len, "metrics address '%s' is not HOST:PORT; fix "
                 "the metrics= key of the cluster file", addr);
        return HX_ERR_CONFIG;
    }
    hx_metrics_endpoint *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    m->render = render;
    m->arg = arg;
    m->http = evhttp_new(base);
    if (m->http == NULL) {
        free(m);
        snprintf(err, err_len, "cannot create the HTTP server");
        return HX_ERR_NOMEM;
    }
    evhttp_set_timeout(m->http, HX_METRICS_TIMEOUT_S);
    evhttp_set_max_headers_size(m->http, HX_METRICS_HEADERS_MAX);
    evhttp_set_max_body_size(m->http, 0);
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(m->http, on_request, m);
    if (evhttp_bind_socket(m->http, host, port) != 0) {
        snprintf(err, err_len, "cannot listen for metrics on %s (another "
                 "process holds the port? change metrics= in the cluster "
                 "file)", addr);
        evhttp_free(m->http);
        free(m);
        return HX_ERR_IO;
    }
    HX_INFO("metrics on http://%s/metrics", addr);
    *out = m;
    return HX_OK;
}

void hx_metrics_endpoint_stop(hx_metrics_endpoint *m)
{
    if (m == NULL)
        return;
    evhttp_free(m->http);
    free(m);
}
