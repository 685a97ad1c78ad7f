/* The volume client: a compute node's connection to the six segments of
 * every PG of its volume.
 *
 * A writer opens the volume (crash recovery: seal a new volume epoch on a
 * read quorum of every PG, recompute VCL/VDL, truncate above VDL), then
 * ships MTRs of redo records pipelined and batched, tracks each segment's
 * SCL from the acks (common/quorum.h) and wakes commit waiters when VDL
 * covers them. Reads go to one segment whose SCL covers the read point,
 * same AZ first. A probe (hexadctl status) only connects and asks.
 *
 * Threads: the client runs its own libevent loop thread; every function
 * here may be called from any other thread. None may be called from the
 * loop thread itself.
 */
#ifndef HX_VOLUME_CLIENT_H
#define HX_VOLUME_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "page_store.h"
#include "quorum.h"

typedef struct hx_volume hx_volume;

typedef enum {
    HX_VOLUME_WRITER = 0, /* recovery + epoch bump; may write */
    HX_VOLUME_PROBE = 1,  /* connect only: status, no writes */
} hx_volume_mode;

typedef struct {
    const hx_cluster_cfg *cluster; /* copied */
    hx_volume_mode mode;
    const char *az;        /* reads prefer segments in this AZ; may be NULL */
    int open_timeout_ms;   /* recovery waits this long for quorums */
    /* Called during open with a progress line (may be NULL). */
    void (*progress)(void *arg, const char *line);
    void *progress_arg;
    /* Writer: called once, when a storage node answers with a newer
     * volume epoch (another writer recovered the volume), from one of the
     * client's threads with its lock held: it may only hand the news on
     * (e.g. event_active), never call back into the volume. Every write,
     * read and durability wait fails with HX_ERR_FENCED from then on.
     * May be NULL. */
    void (*on_fenced)(void *arg, uint64_t newer_epoch);
    void *on_fenced_arg;
} hx_volume_opts;

int hx_volume_open(const hx_volume_opts *o, hx_volume **out);
void hx_volume_close(hx_volume *v); /* NULL is a no-op */

uint32_t hx_volume_page_size(const hx_volume *v);
uint64_t hx_volume_epoch(hx_volume *v);
/* True once a newer writer fenced this one (*newer_epoch: the epoch a
 * storage node reported; may be NULL). */
bool hx_volume_fenced(hx_volume *v, uint64_t *newer_epoch);

/* Allocates contiguous LSNs for the MTR (the last record is its CPL),
 * queues the records to the six segments of their PGs and returns the
 * commit LSN without waiting for acks. Blocks only on LAL back-pressure
 * (up to the commit timeout). HX_ERR_FENCED once a newer writer exists.
 * flags: HX_MTR_MORE_COMING (page_store.h) lets the client hold the MTR
 * up to about a millisecond, to ship it with the next one. */
int hx_volume_write_mtr(hx_volume *v, const hx_page_write *w, size_t n,
                        unsigned flags, uint64_t *commit_lsn);

/* Waits until VDL >= lsn. HX_ERR_TIMEOUT past timeout_ms (< 0: forever),
 * HX_ERR_FENCED. */
int hx_volume_wait_durable(hx_volume *v, uint64_t lsn, int timeout_ms);

uint64_t hx_volume_vdl(hx_volume *v);

/* The read point of the oldest read still open on this compute node (0:
 * none). Appends tell storage min(it, VDL) as AppendRecords.min_read_lsn,
 * and storage garbage-collects nothing a read at or above it needs (after
 * the retention window). Without a pin the VDL is sent: a read that stays
 * open longer than the retention window may then be refused by storage
 * (below its GC horizon), never answered with wrong data. */
void hx_volume_set_min_read_lsn(hx_volume *v, uint64_t lsn);

/* Reads page_no as of read_lsn (<= VDL) from one segment whose SCL covers
 * it and that acknowledged the recovery's truncation (a member that was
 * away during the recovery is skipped until it did). A page never written
 * reads as zeros.
 * HX_ERR_FENCED once a newer writer exists. */
int hx_volume_read_page(hx_volume *v, uint64_t page_no, uint64_t read_lsn,
                        uint8_t *buf);

/* Reads page_no as of read_lsn from the storage node named node_id,
 * whatever its SCL (the node refuses a read point above it): for
 * inspection (hexadctl page), not for SQL. On an error msg says why. */
int hx_volume_read_page_on(hx_volume *v, const char *node_id,
                           uint64_t page_no, uint64_t read_lsn,
                           int timeout_ms, uint8_t *buf, char *msg,
                           size_t msg_len);

/* A page_store (for the SQLite VFS) backed by this volume. */
hx_page_store hx_volume_page_store(hx_volume *v);

/* ---- Observability ---- */

typedef struct {
    char node[HX_ID_MAX];
    char az[HX_ID_MAX];
    bool reachable;
    uint64_t scl;
    /* The truncation ranges the segment recorded: how many, and the
     * highest LSN they reach (equal on every member once gossip spread
     * the recoveries' truncations). */
    size_t n_truncations;
    uint64_t truncated_to;
} hx_member_status;

typedef struct {
    uint32_t pg;
    uint64_t pgcl;
    bool has_read_quorum;
    hx_member_status members[HX_PG_MEMBERS];
} hx_pg_status;

typedef struct {
    uint32_t volume;
    uint64_t epoch;
    bool recoverable;     /* every PG has a read quorum */
    uint64_t vcl, vdl;
    size_t n_nodes;
    struct hx_node_status {
        char id[HX_ID_MAX];
        char az[HX_ID_MAX];
        char addr[128];
        bool reachable;
        uint64_t volume_epoch;  /* the node's epoch of the volume */
        /* Counters since the node started (NodeStatus, proto/README.md). */
        uint64_t records_received, bytes_received, batches_synced;
        uint64_t wire_bytes_received, frame_bytes_received;
        uint64_t gossip_pulls, gossip_records, gossip_truncations;
        uint64_t gossip_epochs, gossip_segments;
        uint64_t coalesce_passes, page_versions_written;
        uint64_t gc_passes, gc_records_removed, gc_page_versions_removed;
        uint64_t gc_bytes_removed, gc_compactions;
        uint64_t scrub_passes, checksum_failures, repairs, records_missing;
        uint64_t checkpoints;
        /* Gauges: journal bytes a crash would replay now; ring size;
         * segments not verified yet after an unclean stop. */
        uint64_t journal_used_bytes, journal_bytes, segments_unverified;
        /* Largest coalescing lag over the node's segments of the volume
         * (SegmentStatus.coalesce_lag). */
        uint64_t coalesce_lag;
    } nodes[HX_MAX_STORAGE_NODES];
    size_t n_pgs;
    hx_pg_status *pgs;    /* n_pgs entries; free with hx_volume_status_free */
} hx_volume_status;

/* Asks every node (timeout_ms) and computes what a recovery would find.
 * Works in both modes; changes nothing on storage. */
int hx_volume_status_get(hx_volume *v, int timeout_ms, hx_volume_status *st);
void hx_volume_status_free(hx_volume_status *st);

/* What this client knows now, from memory only (no request to storage,
 * unlike hx_volume_status_get): the compute node's /metrics. One short
 * hold of the client's lock, copying O(PGs x 6) numbers. SCLs are the
 * ones the members acknowledged to this writer. */
typedef struct {
    char id[HX_ID_MAX];
    bool connected;
    /* Since the client started: AppendRecords queued to the node (empty
     * SCL polls too), the records they carried (re-sent ones again) and
     * their frames' bytes as queued for the socket (after compression,
     * with wire_compression; storage's frame_bytes_received has the size
     * before). */
    uint64_t appends_sent, records_sent, bytes_sent;
    /* AppendAcks from the node to appends that carried records, and the
     * nanoseconds they took from their append's queueing (storage round
     * trip, its synced write included; empty SCL polls not counted). */
    uint64_t acks, ack_ns;
} hx_node_metrics;

typedef struct {
    char node[HX_ID_MAX];
    uint64_t scl;           /* as its last acknowledgement said */
    int inflight;           /* appends (or the truncation) not acked yet */
} hx_member_metrics;

typedef struct {
    uint32_t pg;
    uint64_t pgcl;
    uint64_t tail;          /* last LSN allocated in the PG */
    /* Records kept to re-send: not yet acknowledged by all six members. */
    size_t unacked_records, unacked_bytes;
    hx_member_metrics members[HX_PG_MEMBERS];
} hx_pg_metrics;

typedef struct {
    uint64_t epoch;
    uint64_t vcl, vdl;
    uint64_t last_allocated;
    size_t outstanding;     /* records allocated and not yet durable */
    bool fenced;
    size_t n_nodes;
    hx_node_metrics nodes[HX_MAX_STORAGE_NODES];
    size_t n_pgs;
    hx_pg_metrics *pgs;     /* ascending PG; free with hx_volume_metrics_free */
} hx_volume_metrics;

/* Fills m (HX_ERR_NOMEM: m holds nothing to free). */
int hx_volume_metrics_get(hx_volume *v, hx_volume_metrics *m);
void hx_volume_metrics_free(hx_volume_metrics *m); /* keeps m reusable */

#endif
