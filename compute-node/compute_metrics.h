/* The compute node's Prometheus metrics: what its writer does, served on
 * the `metrics=HOST:PORT` of its cluster-file line (common/
 * metrics_endpoint.h). README.md "Metrics" lists the names; each sample
 * carries node="ID" (the compute line's id), and per storage node,
 * protection group or PG member also storage="sN" and pg="N".
 *
 * A scrape copies the numbers first (compute_main.c: hx_vfs_get_stats,
 * hx_volume_metrics_get, pg_server_get_stats, each one short lock hold,
 * no I/O) into a compute_metrics, then renders it here.
 */
#ifndef HX_COMPUTE_METRICS_H
#define HX_COMPUTE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "hx_vfs.h"
#include "pg_server.h"
#include "volume_client.h"

typedef struct {
    const char *node;          /* the compute line's id */
    uint64_t uptime_ms;
    /* Each part is rendered only when present (before the volume is
     * open there is no VFS and no volume yet). */
    bool has_vfs, has_volume, has_sessions;
    hx_vfs_stats vfs;
    hx_volume_metrics vol;     /* pgs owned by the caller */
    pg_server_stats sessions;
} compute_metrics;

/* Appends the Prometheus text (format 0.0.4) of m to out. Pure: no I/O,
 * no clock. HX_ERR_NOMEM. */
int compute_metrics_render(const compute_metrics *m, struct evbuffer *out);

#endif
