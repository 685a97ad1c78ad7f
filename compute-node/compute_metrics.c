/* The compute node's metrics in the Prometheus text format (see
 * compute_metrics.h). Names follow the storage node's: hexad_compute_
 * then what is measured; counters end in _total, durations are
 * _seconds_total counters; gauges carry no suffix. */
#include "compute_metrics.h"

#include <stdio.h>

#include "config.h"
#include "hx_err.h"
#include "prom_text.h"

/* A node id escaped, in a label set of up to three such values. */
#define LABEL_VALUE_MAX (2 * HX_ID_MAX + 4)
#define LABELS_MAX (3 * LABEL_VALUE_MAX + 64)

typedef enum { V_COUNT, V_NS } value_kind;

/* One family with one sample labelled node="...". */
typedef struct {
    const char *name;
    const char *type;  /* "counter" or "gauge" */
    const char *help;
    uint64_t v;
    value_kind kind;   /* V_NS: v in nanoseconds, shown in seconds */
} scalar;

static void put_scalars(hx_prom *p, const char *labels, const scalar *s,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        hx_prom_family(p, s[i].name, s[i].type, s[i].help);
        if (s[i].kind == V_NS)
            hx_prom_seconds_ns(p, s[i].name, labels, s[i].v);
        else
            hx_prom_u64(p, s[i].name, labels, s[i].v);
    }
}

#define COUNTER(n, h, val) {"hexad_compute_" n "_total", "counter", h, val, V_COUNT}
#define SECONDS(n, h, val) {"hexad_compute_" n "_seconds_total", "counter", h, val, V_NS}
#define GAUGE(n, h, val) {"hexad_compute_" n, "gauge", h, val, V_COUNT}

static void put_vfs(hx_prom *p, const char *labels, const hx_vfs_stats *v)
{
    const scalar s[] = {
        COUNTER("commits", "Write transactions committed: one MTR each, "
                "handed to the volume.", v->mtrs),
        COUNTER("commits_boxcarred", "Commits made while another session "
                "waited for the writer lock, so the volume client could "
                "ship them together.", v->mtrs_more_coming),
        COUNTER("redo_records", "Redo records in the committed MTRs.",
                v->records),
        COUNTER("image_records", "Of which whole page images.",
                v->image_records),
        COUNTER("redo_payload_bytes", "Payload bytes of the redo records "
                "(patches and images).", v->patch_bytes),
        COUNTER("discarded_transactions", "Write transactions that ended "
                "without a commit after buffering page writes (shipped "
                "nothing).", v->discards),
        COUNTER("cache_hits", "Page reads served by the writer's page "
                "cache.", v->cache_hits),
        COUNTER("cache_misses", "Page reads that went to storage "
                "(GetPage).", v->cache_misses),
        COUNTER("cache_evictions", "Pages evicted from the writer's "
                "page cache.", v->evictions),
        COUNTER("writer_lock_acquisitions", "Times a session took "
                "SQLite's writer lock (RESERVED or more).",
                v->writer_acquisitions),
        SECONDS("writer_lock_held", "Time the writer lock was held, from "
                "each acquisition to its release.", v->writer_held_ns),
        SECONDS("writer_lock_handoff", "Time the writer lock sat free "
                "while a session wanted it: from a release that left one "
                "waiting to the next acquisition.", v->writer_handoff_ns),
        SECONDS("writer_lock_wait", "Time sessions slept waiting for the "
                "writer lock, summed over sessions.", v->writer_wait_ns),
        GAUGE("writer_lock_waiters", "Sessions asleep waiting for the "
              "writer lock now.", v->writer_waiters),
        GAUGE("cache_pages", "Pages in the writer's page cache.",
              v->cache_pages),
        GAUGE("last_commit_lsn", "LSN of the newest commit (durable or "
              "not).", v->last_commit_lsn),
        GAUGE("failed", "1 once handing a commit to the volume failed with "
              "an unknown outcome: writes are refused until a restart.",
              v->failed != 0),
    };
    put_scalars(p, labels, s, sizeof s / sizeof s[0]);
}

static void put_volume(hx_prom *p, const char *node,
                       const hx_volume_metrics *m)
{
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "node=\"%s\"", node);
    const scalar s[] = {
        GAUGE("volume_epoch", "The writer's volume epoch.", m->epoch),
        GAUGE("vdl", "Volume durable LSN: commits at or below it are "
              "acknowledged.", m->vdl),
        GAUGE("vcl", "Volume complete LSN.", m->vcl),
        GAUGE("last_allocated_lsn", "Newest LSN allocated to a record.",
              m->last_allocated),
        GAUGE("records_not_durable", "Records allocated and not yet on a "
              "write quorum of their PG.", m->outstanding),
        GAUGE("fenced", "1 once a newer writer fenced this one.",
              m->fenced),
    };
    put_scalars(p, labels, s, sizeof s / sizeof s[0]);

    /* Per storage node. */
    static const struct {
        const char *name, *type;
        bool ns; /* a duration in nanoseconds, shown in seconds */
        const char *help;
    } node_fams[] = {
        {"hexad_compute_storage_connected", "gauge", false,
         "1 while the writer is connected to the storage node."},
        {"hexad_compute_appends_sent_total", "counter", false,
         "AppendRecords queued to the storage node (empty SCL polls too)."},
        {"hexad_compute_append_records_sent_total", "counter", false,
         "Records in them (a re-sent record counts again)."},
        {"hexad_compute_append_bytes_sent_total", "counter", false,
         "Their frames' bytes as queued for the socket (compressed with "
         "wire_compression)."},
        {"hexad_compute_append_acks_total", "counter", false,
         "AppendAcks from the storage node to appends that carried "
         "records."},
        {"hexad_compute_append_ack_seconds_total", "counter", true,
         "Time those acks took from their append's queueing: the storage "
         "round trip, its synced write included."},
    };
    for (size_t f = 0; f < sizeof node_fams / sizeof node_fams[0]; f++) {
        hx_prom_family(p, node_fams[f].name, node_fams[f].type,
                       node_fams[f].help);
        for (size_t i = 0; i < m->n_nodes; i++) {
            const hx_node_metrics *n = &m->nodes[i];
            const uint64_t vals[] = {n->connected, n->appends_sent,
                                     n->records_sent, n->bytes_sent,
                                     n->acks, n->ack_ns};
            char id[LABEL_VALUE_MAX];
            hx_prom_label_escape(n->id, id, sizeof id);
            snprintf(labels, sizeof labels, "node=\"%s\",storage=\"%s\"",
                     node, id);
            if (node_fams[f].ns)
                hx_prom_seconds_ns(p, node_fams[f].name, labels, vals[f]);
            else
                hx_prom_u64(p, node_fams[f].name, labels, vals[f]);
        }
    }

    /* Per PG, and per PG member (as this writer's acks show them). */
    static const struct {
        const char *name, *help;
    } pg_fams[] = {
        {"hexad_compute_pg_pgcl", "PG complete LSN, from the members' acks."},
        {"hexad_compute_pg_tail_lsn", "Last LSN allocated in the PG."},
        {"hexad_compute_pg_unacked_records",
         "Records kept to re-send: not yet acknowledged by all six "
         "members."},
        {"hexad_compute_pg_unacked_bytes", "Their bytes."},
    };
    for (size_t f = 0; f < sizeof pg_fams / sizeof pg_fams[0] && m->n_pgs;
         f++) {
        hx_prom_family(p, pg_fams[f].name, "gauge", pg_fams[f].help);
        for (size_t i = 0; i < m->n_pgs; i++) {
            const hx_pg_metrics *g = &m->pgs[i];
            const uint64_t vals[] = {g->pgcl, g->tail, g->unacked_records,
                                     g->unacked_bytes};
            snprintf(labels, sizeof labels, "node=\"%s\",pg=\"%u\"", node,
                     g->pg);
            hx_prom_u64(p, pg_fams[f].name, labels, vals[f]);
        }
    }
    static const struct {
        const char *name, *help;
    } member_fams[] = {
        {"hexad_compute_member_scl",
         "The segment's SCL as its last acknowledgement said."},
        {"hexad_compute_member_inflight_appends",
         "Appends (or the recovery truncation) sent to the segment and not "
         "acknowledged yet."},
    };
    for (size_t f = 0;
         f < sizeof member_fams / sizeof member_fams[0] && m->n_pgs; f++) {
        hx_prom_family(p, member_fams[f].name, "gauge", member_fams[f].help);
        for (size_t i = 0; i < m->n_pgs; i++) {
            for (int k = 0; k < HX_PG_MEMBERS; k++) {
                const hx_member_metrics *mm = &m->pgs[i].members[k];
                const uint64_t vals[] = {mm->scl, (uint64_t)mm->inflight};
                char id[LABEL_VALUE_MAX];
                hx_prom_label_escape(mm->node, id, sizeof id);
                snprintf(labels, sizeof labels,
                         "node=\"%s\",pg=\"%u\",storage=\"%s\"", node,
                         m->pgs[i].pg, id);
                hx_prom_u64(p, member_fams[f].name, labels, vals[f]);
            }
        }
    }
}

static void put_sessions(hx_prom *p, const char *node,
                         const pg_server_stats *st)
{
    char labels[LABELS_MAX];
    snprintf(labels, sizeof labels, "node=\"%s\"", node);
    const scalar s[] = {
        GAUGE("sessions", "PostgreSQL connections served now.",
              (uint64_t)(st->sessions > 0 ? st->sessions : 0)),
        COUNTER("sessions_served", "PostgreSQL connections served.",
                st->sessions_served),
        COUNTER("sessions_refused", "PostgreSQL connections refused: too "
                "many connections.", st->sessions_refused),
        COUNTER("statements", "SQL statements received in queries "
                "(failed ones too).", st->statements),
    };
    put_scalars(p, labels, s, sizeof s / sizeof s[0]);

    /* kind="commit": a transaction that wrote waits for its commit LSN;
     * kind="read": a read-only one for the newest commit it could read. */
    static const struct {
        const char *name, *help;
        bool ns;
    } wait_fams[] = {
        {"hexad_compute_reply_waits_total",
         "Replies held until VDL covered the transaction.", false},
        {"hexad_compute_reply_wait_seconds_total",
         "Time those replies waited for durability.", true},
        {"hexad_compute_reply_wait_failures_total",
         "Of those, waits that failed (commit_timeout_ms passed, fenced): "
         "the client got an error.", false},
    };
    const struct {
        const char *kind;
        const pg_reply_waits *w;
    } kinds[] = {{"commit", &st->commit}, {"read", &st->read}};
    for (size_t f = 0; f < sizeof wait_fams / sizeof wait_fams[0]; f++) {
        hx_prom_family(p, wait_fams[f].name, "counter", wait_fams[f].help);
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            const pg_reply_waits *w = kinds[k].w;
            const uint64_t vals[] = {w->waits, w->wait_ns, w->failures};
            snprintf(labels, sizeof labels, "node=\"%s\",kind=\"%s\"", node,
                     kinds[k].kind);
            if (wait_fams[f].ns)
                hx_prom_seconds_ns(p, wait_fams[f].name, labels, vals[f]);
            else
                hx_prom_u64(p, wait_fams[f].name, labels, vals[f]);
        }
    }
}

int compute_metrics_render(const compute_metrics *m, struct evbuffer *out)
{
    hx_prom p = {.out = out};
    char node[LABEL_VALUE_MAX], labels[LABELS_MAX];
    hx_prom_label_escape(m->node, node, sizeof node);
    snprintf(labels, sizeof labels, "node=\"%s\"", node);
    hx_prom_family(&p, "hexad_compute_uptime_seconds", "gauge",
                   "Seconds since the compute node started.");
    hx_prom_seconds_ns(&p, "hexad_compute_uptime_seconds", labels,
                       m->uptime_ms * 1000000u);
    if (m->has_vfs)
        put_vfs(&p, labels, &m->vfs);
    if (m->has_volume)
        put_volume(&p, node, &m->vol);
    if (m->has_sessions)
        put_sessions(&p, node, &m->sessions);
    return hx_prom_result(&p);
}
