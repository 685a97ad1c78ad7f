/* A storage node's counters (issue 7 "Metrics"): owned by its segment
 * store, read by status and metrics (NodeStatus, the Prometheus endpoint).
 * Every field only grows while the process runs; a restart starts them at
 * zero (Prometheus counters, so rate() copes with the reset). Plain
 * integers: one thread (the event loop) owns the store and its counters.
 */
#ifndef HX_NODE_COUNTERS_H
#define HX_NODE_COUNTERS_H

#include <stdint.h>

typedef struct {
    /* Receive path (appends from writers). */
    uint64_t records_received;
    uint64_t bytes_received;
    uint64_t batches_synced;
    /* Gossip: pulls answered by a peer, and the records they brought. */
    uint64_t gossip_pulls;
    uint64_t gossip_records;
    /* Coalescing (segment_coalesce.c). */
    uint64_t coalesce_passes;
    uint64_t page_versions_written;
    /* ... and deleted again in the same batch: superseded within their
     * span (segment_coalesce.c invariant 6). */
    uint64_t page_versions_superseded;
    /* Garbage collection (segment_gc.c): records and page versions
     * removed, and their stored bytes (values, keys excluded). */
    uint64_t gc_passes;
    uint64_t gc_records_removed;
    uint64_t gc_page_versions_removed;
    uint64_t gc_bytes_removed;
    /* Compactions GC started once enough was deleted (on their own
     * thread). */
    uint64_t gc_compactions;
    /* Memtable flushes that let the journal reuse its ring
     * (segment_checkpoint.c). */
    uint64_t checkpoints;
    /* Scrubbing (segment_scrub.c): stored records or page versions found
     * corrupt on a read or a scrub, and the ones rewritten from a peer's
     * verified copy. */
    uint64_t scrub_passes;
    uint64_t checksum_failures;
    uint64_t repairs;
    /* Records found missing at or below their segment's SCL (a lost
     * write; segment_missing.c), each then refetched (counted in repairs). */
    uint64_t records_missing;
} hx_node_counters;

#endif
