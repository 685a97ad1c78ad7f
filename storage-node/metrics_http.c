/* GET /metrics in the Prometheus text format (see metrics_http.h). */
#include "metrics_http.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "hx_err.h"
#include "metrics_endpoint.h"
#include "prom_text.h"

struct metrics_http {
    hx_metrics_endpoint *ep;
    metrics_http_source src;
};

/* ------------------------------------------------------------------------
 * Rendering.
 * ---------------------------------------------------------------------- */

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
    COUNTER(page_versions_superseded, "Page versions coalescing deleted: "
                                      "superseded by a newer one of the "
                                      "same LSN span."),
    COUNTER(record_cache_hits, "Record reads the record cache answered."),
    COUNTER(record_cache_misses, "Record reads the record cache could not "
                                 "answer (read from RocksDB)."),
    COUNTER(record_cache_evicted, "Records the record cache dropped to "
                                  "stay within record_cache_mib."),
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
    hx_prom_label_escape(st->node, node, sizeof node);
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
        {"hexad_record_cache_bytes",
         "Bytes the record cache holds (records and their entries).",
         st->record_cache_bytes},
        {"hexad_segments_unverified",
         "Segments whose chains are not verified yet after an unclean "
         "stop; they refuse reads.", st->segments_unverified},
        {"hexad_store_records_sst_bytes",
         "SST bytes of the store's \"records\" column family (log "
         "records).", st->records_sst_bytes},
        {"hexad_store_records_l0_files",
         "Files in level 0 of the \"records\" column family.",
         st->records_l0_files},
        {"hexad_store_other_sst_bytes",
         "SST bytes of the store's \"default\" column family (page "
         "index, page versions, metadata).", st->other_sst_bytes},
        {"hexad_store_other_l0_files",
         "Files in level 0 of the \"default\" column family.",
         st->other_l0_files},
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
 * Serving: common/metrics_endpoint.c, with the node's status as the source.
 * ---------------------------------------------------------------------- */

static int render_status(void *arg, struct evbuffer *out)
{
    metrics_http *m = arg;
    Hexad__NodeStatus *st = NULL;
    int rc = m->src.collect(m->src.arg, &st);
    if (rc == HX_OK)
        rc = metrics_render(st, out);
    if (st != NULL)
        m->src.release(st);
    return rc;
}

int metrics_http_start(struct event_base *base, const char *addr,
                       const metrics_http_source *src, metrics_http **out,
                       char *err, size_t err_len)
{
    metrics_http *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    m->src = *src;
    int rc = hx_metrics_endpoint_start(base, addr, render_status, m, &m->ep,
                                       err, err_len);
    if (rc != HX_OK) {
        free(m);
        return rc;
    }
    *out = m;
    return HX_OK;
}

void metrics_http_stop(metrics_http *m)
{
    if (m == NULL)
        return;
    hx_metrics_endpoint_stop(m->ep);
    free(m);
}
