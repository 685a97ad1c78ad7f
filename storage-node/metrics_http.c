/* GET /metrics in the Prometheus text format (see metrics_http.h). */
#include "metrics_http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "config.h"
#include "conn.h"
#include "hx_err.h"
#include "log.h"

struct metrics_http {
    struct evhttp *http;
    metrics_http_source src;
};

/* ------------------------------------------------------------------------
 * Rendering.
 * ---------------------------------------------------------------------- */

/* A label value with \, " and newline escaped (exposition format). */
static void label_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; in && *in && o + 3 < len; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

typedef struct {
    const char *name;
    const char *help;
    size_t offset; /* of the uint64_t in Hexad__NodeStatus */
} counter_def;

#define COUNTER(field, help) \
    {"hexad_" #field "_total", help, offsetof(Hexad__NodeStatus, field)}

static const counter_def counters[] = {
    COUNTER(records_received, "Records received in appends, from writers "
                              "and gossip (accepted or not)."),
    COUNTER(bytes_received, "Packed record bytes received in appends."),
    COUNTER(wire_bytes_received, "Frame bytes received on the storage "
                                 "port, as they arrived (compressed)."),
    COUNTER(frame_bytes_received, "The same frames' size uncompressed "
                                  "(4-byte header and envelope)."),
    COUNTER(batches_synced, "Synced group-commit writes of appends."),
    COUNTER(gossip_pulls, "Gossip pull replies that brought records."),
    COUNTER(gossip_records, "Records gossip pulls newly stored."),
    COUNTER(gossip_truncations, "Truncation ranges adopted from a peer."),
    COUNTER(gossip_epochs, "Volume epochs adopted from a peer."),
    COUNTER(gossip_segments, "Segments learned from a peer's list."),
    COUNTER(coalesce_passes, "Coalescing passes run."),
    COUNTER(page_versions_written, "Page versions coalescing wrote."),
    COUNTER(gc_passes, "Garbage collection passes run."),
    COUNTER(gc_records_removed, "Log records garbage collection removed."),
    COUNTER(gc_page_versions_removed, "Page versions garbage collection "
                                      "removed."),
    COUNTER(gc_bytes_removed, "Stored bytes garbage collection removed."),
    COUNTER(gc_compactions, "Compactions garbage collection started."),
    COUNTER(checkpoints, "Memtable flushes that let the journal reuse its "
                         "ring."),
    COUNTER(scrub_passes, "Scrub passes run."),
    COUNTER(checksum_failures, "Stored records or page versions found "
                               "corrupt."),
    COUNTER(repairs, "Corrupt or missing items rewritten from a peer's "
                     "copy."),
    COUNTER(records_missing, "Records found missing below their segment's "
                             "SCL (a lost write)."),
};

int metrics_render(const Hexad__NodeStatus *st, struct evbuffer *out)
{
    char node[2 * HX_ID_MAX + 4];
    label_escape(st->node, node, sizeof node);
    int bad = 0;
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        const counter_def *c = &counters[i];
        uint64_t v = *(const uint64_t *)((const char *)st + c->offset);
        bad |= evbuffer_add_printf(out,
                                   "# HELP %s %s\n# TYPE %s counter\n"
                                   "%s{node=\"%s\"} %" PRIu64 "\n",
                                   c->name, c->help, c->name, c->name, node,
                                   v) < 0;
    }
    bad |= evbuffer_add_printf(out,
                               "# HELP hexad_uptime_seconds Seconds since "
                               "the node started.\n"
                               "# TYPE hexad_uptime_seconds gauge\n"
                               "hexad_uptime_seconds{node=\"%s\"} %" PRIu64
                               ".%03u\n",
                               node, st->uptime_ms / 1000,
                               (unsigned)(st->uptime_ms % 1000)) < 0;
    const struct {
        const char *name, *help;
        uint64_t v;
    } node_gauges[] = {
        {"hexad_volume_epoch", "The node's epoch of the cluster file's volume.",
         st->volume_epoch},
        {"hexad_segments", "Segments the node holds.", st->n_segments},
        {"hexad_journal_used_bytes",
         "Bytes of the journal a crash would replay now.",
         st->journal_used_bytes},
        {"hexad_journal_bytes", "Size of the journal's ring.",
         st->journal_bytes},
        {"hexad_segments_unverified",
         "Segments whose chains are not verified yet after an unclean "
         "stop; they refuse reads.", st->segments_unverified},
    };
    for (size_t i = 0; i < sizeof node_gauges / sizeof node_gauges[0]; i++)
        bad |= evbuffer_add_printf(out,
                                   "# HELP %s %s\n# TYPE %s gauge\n"
                                   "%s{node=\"%s\"} %" PRIu64 "\n",
                                   node_gauges[i].name, node_gauges[i].help,
                                   node_gauges[i].name, node_gauges[i].name,
                                   node, node_gauges[i].v) < 0;
    static const struct {
        const char *name, *help;
    } seg_gauges[] = {
        {"hexad_segment_scl", "Segment complete LSN."},
        {"hexad_segment_records", "Records the segment stores."},
        {"hexad_segment_coalesced_lsn", "Page versions exist up to this LSN."},
        {"hexad_segment_gc_lsn", "Reads below this LSN are refused (GC)."},
        {"hexad_segment_coalesce_lag",
         "LSNs coalescing is behind the point it may reach."},
    };
    for (size_t k = 0; k < sizeof seg_gauges / sizeof seg_gauges[0] &&
                       st->n_segments > 0; k++) {
        bad |= evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s gauge\n",
                                   seg_gauges[k].name, seg_gauges[k].help,
                                   seg_gauges[k].name) < 0;
        for (size_t i = 0; i < st->n_segments; i++) {
            const Hexad__SegmentStatus *g = st->segments[i];
            const uint64_t vals[] = {g->scl, g->records, g->coalesced_lsn,
                                     g->gc_lsn, g->coalesce_lag};
            uint64_t v = vals[k];
            bad |= evbuffer_add_printf(
                       out,
                       "%s{node=\"%s\",volume=\"%u\",pg=\"%u\"} %" PRIu64 "\n",
                       seg_gauges[k].name, node, g->volume, g->pg, v) < 0;
        }
    }
    return bad ? HX_ERR_NOMEM : HX_OK;
}

/* ------------------------------------------------------------------------
 * HTTP.
 * ---------------------------------------------------------------------- */

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
    metrics_http *m = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || strcmp(path, "/metrics") != 0) {
        reply_text(req, HTTP_NOTFOUND, "Not Found",
                   "not found: this endpoint serves GET /metrics only\n");
        return;
    }
    Hexad__NodeStatus *st = NULL;
    int rc = m->src.collect(m->src.arg, &st);
    struct evbuffer *b = rc == HX_OK ? evbuffer_new() : NULL;
    if (b != NULL)
        rc = metrics_render(st, b);
    if (st != NULL)
        m->src.release(st);
    if (b == NULL || rc != HX_OK) {
        if (b)
            evbuffer_free(b);
        reply_text(req, HTTP_INTERNAL, "Internal Server Error",
                   "cannot collect the metrics (out of memory)\n");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      METRICS_HTTP_CONTENT_TYPE);
    evhttp_send_reply(req, HTTP_OK, "OK", b);
    evbuffer_free(b);
}

int metrics_http_start(struct event_base *base, const char *addr,
                       const metrics_http_source *src, metrics_http **out,
                       char *err, size_t err_len)
{
    char host[96];
    uint16_t port = 0;
    if (hx_addr_split(addr, host, sizeof host, &port) != HX_OK) {
        snprintf(err, err_len, "metrics address '%s' is not HOST:PORT; fix "
                 "the metrics= key of the cluster file", addr);
        return HX_ERR_CONFIG;
    }
    metrics_http *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    m->src = *src;
    m->http = evhttp_new(base);
    if (m->http == NULL) {
        free(m);
        snprintf(err, err_len, "cannot create the HTTP server");
        return HX_ERR_NOMEM;
    }
    evhttp_set_timeout(m->http, METRICS_HTTP_TIMEOUT_S);
    evhttp_set_max_headers_size(m->http, 8192);
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

void metrics_http_stop(metrics_http *m)
{
    if (m == NULL)
        return;
    evhttp_free(m->http);
    free(m);
}
