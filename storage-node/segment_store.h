/* The segment store: every segment a storage node holds, in one RocksDB
 * database under <data_dir>/db. No sockets; storage_server.c drives it.
 *
 * Writes are group-committed: segment_store_stage_append() only copies a
 * request, segment_store_flush() applies every staged append in arrival
 * order and persists them with ONE synced write (the node's journal, then
 * RocksDB; segment_store.c invariant 8), then reports each
 * append's result through a callback. A result (and so an ack) exists only
 * after the synced write that holds its records returned.
 *
 * The other writes (seal, truncate) are synced writes of their own. They,
 * and segment_info, refuse with HX_ERR_BUSY while appends are staged: the
 * caller flushes first, so that they observe (and order after) every
 * append received before them.
 *
 * Not thread-safe: one thread (the event loop) owns a store.
 * See segment_store.c for the key layout and the invariants.
 */
#ifndef HX_SEGMENT_STORE_H
#define HX_SEGMENT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hexad.pb-c.h"
#include "node_counters.h"
#include "record_cache.h"
#include "recovery.h" /* hx_lsn_range */

typedef struct segment_store segment_store;

/* Appends staged beyond this many bytes should be flushed before staging
 * more (storage_server.c does): it bounds the memory of one batch. */
#define SEGMENT_STORE_STAGED_BYTES_MAX (64u << 20)
/* Records listed by one segment_info tail (HX_ERR_TOO_BIG past it). */
#define SEGMENT_STORE_TAIL_MAX 2000000u
/* Segments one node may hold. */
#define SEGMENT_STORE_SEGMENTS_MAX (1u << 20)

/* Why a call failed, for the Error reply: a message naming the cause and,
 * for HX_ERR_STALE_EPOCH, the epoch the node holds. */
typedef struct {
    char msg[256];
    uint64_t current_epoch;
} segment_store_why;

/* The outcome of one staged append, reported by segment_store_flush(). */
typedef struct {
    int rc;               /* HX_OK: everything stored is durable */
    uint32_t volume;
    uint32_t pg;
    uint64_t scl;         /* segment state after the whole batch (rc == 0) */
    uint64_t max_lsn;
    uint32_t stored;      /* new records written */
    uint32_t duplicates;  /* already held: skipped, still acknowledged */
    uint32_t dropped;     /* inside a truncated range, older epoch */
    segment_store_why why; /* rc != 0 */
} segment_store_append_result;

/* cookie is what segment_store_stage_append() was given; res is valid only
 * during the call. */
typedef void (*segment_store_append_done)(void *cookie,
                                          const segment_store_append_result *res,
                                          void *arg);

typedef struct {
    /* Size of a new write-ahead journal (data_dir/journal); an existing
     * one of another size is replaced once its entries are replayed. */
    uint64_t journal_bytes;
    /* Memory for records coalescing walked and has yet to apply
     * (record_cache.h); 0 keeps none. */
    uint64_t record_cache_bytes;
    /* Run each checkpoint on the writing thread when it is due, instead of
     * on a thread of its own: a test's crash then comes after it. */
    bool checkpoint_inline;
} segment_store_options;

/* Opens (creating if missing) the store of node node_id under data_dir
 * (the directory itself is created when missing, not its parents),
 * replays its journal into RocksDB, loads every segment's metadata and
 * rebuilds its chain. o is required; why may be NULL. HX_ERR_IO (why->msg holds the
 * reason), HX_ERR_NO_SPACE (no room for the journal), HX_ERR_NOMEM. */
int segment_store_open(const char *data_dir, const char *node_id,
                       const segment_store_options *o, segment_store **out,
                       segment_store_why *why);
/* Staged appends are dropped without results (their senders never got an
 * ack). NULL is a no-op. */
void segment_store_close(segment_store *s);

/* Copies req (the caller may free it on return) for the next flush. The
 * checks that need no state (checksums, backlinks, patch bounds) run now,
 * the others at flush time, in arrival order; either way the result comes
 * from segment_store_flush(). Returns HX_ERR_NOMEM only (nothing staged). */
int segment_store_stage_append(segment_store *s,
                               const Hexad__AppendRecords *req, void *cookie);
size_t segment_store_staged_count(const segment_store *s);
size_t segment_store_staged_bytes(const segment_store *s);

/* Applies every staged append and persists them with one synced write,
 * then calls done(cookie, result, arg) for each, in arrival order. Returns
 * HX_OK, or the write's error (HX_ERR_IO, HX_ERR_NO_SPACE), which every
 * append that was not refused on its own also reports; memory is then
 * reloaded from disk. Nothing staged: returns HX_OK at once. */
int segment_store_flush(segment_store *s, segment_store_append_done done,
                        void *arg);

/* stage + flush of one append; HX_ERR_BUSY when others are staged. The
 * append's own result is in *res (and returned). For tools and tests. */
int segment_store_append(segment_store *s, const Hexad__AppendRecords *req,
                         segment_store_append_result *res);

/* The page as of read_lsn: *page (page_size bytes, malloc'd, the caller
 * frees it) and *page_lsn (0 when never written: zeros). HX_ERR_NOT_FOUND
 * (segment unknown), HX_ERR_INVALID (page not in this PG),
 * HX_ERR_NOT_COMPLETE (read_lsn > SCL; read_lsn at or above a record
 * found missing; or the segment's chain is not verified yet after an
 * unclean stop), HX_ERR_CHECKSUM (a stored record is corrupt),
 * HX_ERR_IO. */
int segment_store_get_page(segment_store *s, uint32_t volume, uint32_t pg,
                           uint64_t page_no, uint64_t read_lsn,
                           uint8_t **page, size_t *page_len,
                           uint64_t *page_lsn, segment_store_why *why);

/* What this node holds of req->volume (see SegmentInfo in hexad.proto).
 * A volume the node never heard of gives an empty answer (epoch 0, no
 * segments). Free *out with segment_store_segment_info_free().
 * HX_ERR_TOO_BIG (tail over SEGMENT_STORE_TAIL_MAX), HX_ERR_BUSY, HX_ERR_IO,
 * HX_ERR_NOMEM. */
int segment_store_segment_info(segment_store *s,
                               const Hexad__SegmentInfoRequest *req,
                               Hexad__SegmentInfoResponse **out,
                               segment_store_why *why);
void segment_store_segment_info_free(Hexad__SegmentInfoResponse *r);

/* Raises the volume epoch to new_epoch (synced before returning);
 * *current = the epoch now held. HX_ERR_STALE_EPOCH when new_epoch is below
 * it, HX_ERR_BUSY, HX_ERR_IO, HX_ERR_NO_SPACE. */
int segment_store_seal_epoch(segment_store *s, uint32_t volume,
                             uint64_t new_epoch, uint64_t *current,
                             segment_store_why *why);

/* Drops every record of the PG with from <= lsn <= to, records the range
 * with epoch (later records of an older epoch in it are dropped on
 * arrival) and lowers the SCL below from if it reached it; synced. *scl =
 * the SCL after. A segment the node does not hold yet is created holding
 * just the truncation. HX_ERR_STALE_EPOCH, HX_ERR_INVALID (from > to or
 * from == 0), HX_ERR_BUSY, HX_ERR_IO, HX_ERR_NO_SPACE. */
int segment_store_truncate(segment_store *s, uint32_t volume, uint32_t pg,
                           uint64_t epoch, uint64_t from, uint64_t to,
                           uint64_t *scl, segment_store_why *why);

/* Per-segment state and counters; node, az, uptime_ms and volume_epoch are
 * left for the caller ("" / 0). Free with segment_store_status_free(). */
int segment_store_status(segment_store *s, Hexad__NodeStatus **out);
void segment_store_status_free(Hexad__NodeStatus *st);

/* The volume's epoch (0 when unknown). */
uint64_t segment_store_volume_epoch(const segment_store *s, uint32_t volume);

/* ---- Gossip (proto/README.md "Gossip") ------------------------------- */

/* Largest reply of one pull (packed record bytes). */
#define SEGMENT_STORE_PULL_BYTES_MAX (4u << 20)

/* The stored records of the segment's complete chain with after_lsn < lsn
 * <= SCL, ascending, each checksum-verified (a bad one ends the list before
 * it), up to max_bytes of packed records but at least one (0 or above
 * SEGMENT_STORE_PULL_BYTES_MAX: that maximum); (*out)->scl = the SCL. Reads
 * what is durable only. Free *out with segment_store_pulled_free().
 * HX_ERR_NOT_FOUND (segment unknown), HX_ERR_IO, HX_ERR_NOMEM. */
int segment_store_read_chain(segment_store *s, uint32_t volume, uint32_t pg,
                             uint64_t after_lsn, size_t max_bytes,
                             Hexad__PulledRecords **out,
                             segment_store_why *why);
void segment_store_pulled_free(Hexad__PulledRecords *p);

/* Stages pulled records (a peer's read_chain) for the next flush as an
 * append carrying the segment's own members, membership epoch and geometry
 * and this node's volume epoch: every append check applies (checksums,
 * bounds, truncation ranges, chain forks), no epoch or membership changes.
 * The result comes from segment_store_flush() with cookie. HX_ERR_NOT_FOUND
 * when the segment is unknown or has no members yet (nothing staged),
 * HX_ERR_NOMEM. */
int segment_store_stage_pulled(segment_store *s, const Hexad__PulledRecords *p,
                               void *cookie);

/* The segments held, for walking them (index order = (volume, pg) order;
 * indexes shift when segments are created). members point into the store
 * and stay valid until the next call that may change it. */
typedef struct {
    uint32_t volume, pg;
    uint64_t scl;
    size_t n_members;  /* 0: not known yet */
    const char *members[6];
} segment_store_seg_view;

/* ---- Gossip completeness (segment_gossip.c; proto/README.md "Gossip") - */

/* Like segment_store_truncate, but not fenced by the volume epoch: a range
 * a peer recorded (at its own epoch, maybe below ours) and this node
 * missed. Raises the volume epoch when the range's is higher. */
int segment_store_adopt_truncation(segment_store *s, uint32_t volume,
                                   uint32_t pg, uint64_t epoch, uint64_t from,
                                   uint64_t to, uint64_t *scl,
                                   segment_store_why *why);

/* The segment's truncation ranges that reach above after_lsn (to >
 * after_lsn; segment_truncations.c invariant 3), ascending, into *out
 * (malloc'd, the caller frees; NULL and *n = 0 when none or the segment
 * is unknown). HX_ERR_NOMEM. */
int segment_store_truncations(const segment_store *s, uint32_t volume,
                              uint32_t pg, uint64_t after_lsn,
                              hx_lsn_range **out, size_t *n);

/* Adds this node's volume epoch and the segment's truncation ranges that
 * reach above after_lsn (the pull's) to a read_chain reply (freed by
 * segment_store_pulled_free). HX_ERR_NOMEM. */
int segment_store_pulled_add_sync(const segment_store *s, uint64_t after_lsn,
                                  Hexad__PulledRecords *p);

/* The segments held whose members include node, from (volume << 32 | pg)
 * >= req->start_key, at most req->max_segments (0 or above
 * SEGMENT_STORE_LIST_MAX: that maximum); next_key 0 when no more. Free
 * with segment_store_segment_list_free(). HX_ERR_NOMEM. */
#define SEGMENT_STORE_LIST_MAX 1024u
int segment_store_list_segments(const segment_store *s,
                                const Hexad__ListSegments *req,
                                Hexad__SegmentList **out);
void segment_store_segment_list_free(Hexad__SegmentList *l);

/* A segment a peer says this node should hold (it is a member): staged
 * as an append with no records carrying d's members, membership epoch and
 * geometry and the higher of the two volume epochs, so it is created (or
 * a segment that only held a truncation gets its members) by the next
 * flush, with cookie; *staged says whether it was (not when the segment
 * is held with members already). HX_ERR_INVALID when d lacks members or
 * geometry (nothing staged); HX_ERR_NOMEM. */
int segment_store_stage_learned(segment_store *s, const Hexad__SegmentDesc *d,
                                void *cookie, bool *staged);

size_t segment_store_segment_count(const segment_store *s);
void segment_store_segment_at(const segment_store *s, size_t i,
                              segment_store_seg_view *out);
/* The SCL of a segment (0 when unknown). */
uint64_t segment_store_scl(const segment_store *s, uint32_t volume,
                           uint32_t pg);

/* Fault injection (DESIGN.md "Faults are a feature"): the next `count`
 * synced writes fail as if RocksDB had returned `rocksdb_msg` (e.g.
 * "IO error: No space left on device") after their journal entry landed:
 * RocksDB is not written and the entry is withdrawn. count 0 clears. */
void segment_store_inject_write_error(segment_store *s, unsigned count,
                                      const char *rocksdb_msg);

/* ---- Background work (segment_coalesce.c, segment_gc.c,
 * segment_scrub.c). Each call does bounded work and is meant for a timer
 * of the event loop; like the other writes they refuse with HX_ERR_BUSY
 * while appends are staged. ------------------------------------------- */

/* The node's counters (node_counters.h). The mutable form is for the
 * server's own counts (gossip). */
const hx_node_counters *segment_store_counters(const segment_store *s);
/* Bytes of the write-ahead journal a crash would replay now (entries not
 * yet checkpointed, segment_checkpoint.c), and the journal's ring size. */
uint64_t segment_store_journal_used(const segment_store *s);
uint64_t segment_store_journal_bytes(const segment_store *s);
hx_node_counters *segment_store_counters_mut(segment_store *s);
/* The record cache's counts (record_cache.h). */
record_cache_stats segment_store_record_cache_stats(const segment_store *s);
/* What one of the store's RocksDB column families holds on disk: SST
 * bytes and files in L0 (segment_families.c); records: the log records,
 * other: the page index, page versions and metadata. */
typedef struct {
    uint64_t sst_bytes, l0_files;
} segment_store_family_stats;
void segment_store_families(const segment_store *s,
                            segment_store_family_stats *records,
                            segment_store_family_stats *other);

/* A page gets a new version once this many of its records are above its
 * last one (segment_coalesce.c invariant 3). A page version is a whole
 * page read, written and compacted for what may be a few small records.
 * 8, not 4, since session 5; 16, not 8, since session 11: with the record
 * cache holding the records in between, a storage node's CPU per
 * tpcb-like transaction in the steady state fell by a fifth
 * (hexad-storage-work; bench/RESULTS.md "Storage work"). GetPage applies
 * at most this many records more than the newest version holds (plus
 * those since the last pass). */
#define SEGMENT_STORE_COALESCE_MIN_RECORDS 16u

/* Coalescing: looks at up to max_records records above the coalesced LSN
 * of the segments (round robin), never above a segment's SCL, and writes,
 * for every page they touch that has SEGMENT_STORE_COALESCE_MIN_RECORDS
 * records above its last version, the page as of the newest of them (one
 * synced write per segment). GetPage then starts from the newest version at or
 * below its read point. *written = page versions written (may be NULL).
 * HX_ERR_BUSY, HX_ERR_CHECKSUM (a corrupt record stopped the pass: its
 * repair is queued), HX_ERR_IO, HX_ERR_NOMEM. */
int segment_store_coalesce(segment_store *s, size_t max_records,
                           size_t *written, segment_store_why *why);
/* The largest distance, over the segments, from the coalesced LSN to the
 * point coalescing may reach (the SCL, or the writer's min read point
 * when lower): how far coalescing is behind. */
uint64_t segment_store_coalesce_lag(const segment_store *s);
/* The sum of the segments' coalesced LSNs: grows when a pass gains. */
uint64_t segment_store_coalesced_sum(const segment_store *s);

/* Default retention window of the garbage collector. */
#define SEGMENT_STORE_RETENTION_MS_DEFAULT (3600u * 1000u)
/* GC keeps every record and page version that a read at or above the
 * writer's minimum read point of retention_ms ago may need. */
void segment_store_set_retention(segment_store *s, uint64_t retention_ms);
/* Garbage collection: for up to max_pages pages, removes the page
 * versions and records below the segment's GC point (the writer's
 * min_read_lsn as of at least the retention window ago, capped at the
 * coalesced LSN and so at the SCL), keeping for every page its newest
 * version at or below that point. Reads below the GC point are refused
 * from then on (HX_ERR_NOT_FOUND). now_ms: a monotonic clock. */
int segment_store_gc(segment_store *s, uint64_t now_ms, size_t max_pages,
                     segment_store_why *why);
/* Compacts the key ranges of every segment (RocksDB reclaims what GC
 * deleted), on the caller's thread. segment_store_gc, once enough was
 * deleted, runs one on a thread of its own instead. */
void segment_store_compact(segment_store *s);
/* Whether GC's compaction thread is running. */
bool segment_store_compacting(const segment_store *s);

/* Scrubbing: verifies the checksums of the next max_items stored records
 * and page versions (a cursor walks the whole store, then starts over); a
 * corrupt one is counted and queued for repair. It also follows each
 * record's prev_lsn: a record at or below the SCL whose predecessor is not
 * stored reveals a hole the SCL claims complete (segment_missing.c); it is
 * counted (records_missing), reads at or above it are refused until the
 * record is refetched from a peer, and queued for that repair. A store's
 * first pass walks the records only; it is also the chain check after an
 * unclean stop (segment_verify.c): each segment is verified once the walk
 * has gone past its records. */
int segment_store_scrub(segment_store *s, size_t max_items,
                        segment_store_why *why);

/* Segments whose chains are not verified yet: loaded after an unclean
 * stop (the store lacked its clean-close mark) and not yet walked whole
 * by the scrub. GetPage refuses them (HX_ERR_NOT_COMPLETE); coalescing
 * and GC skip them. 0 after a clean stop. */
size_t segment_store_segments_unverified(const segment_store *s);
/* Records the scrub walked while any chain was unverified (the startup
 * check's work). */
uint64_t segment_store_verify_records(const segment_store *s);

enum {
    SEGMENT_STORE_REPAIR_RECORD = 1,  /* refetch: PullRecords{lsn - 1} */
    SEGMENT_STORE_REPAIR_VERSION = 2, /* refetch: GetPage{page_no, lsn} */
    SEGMENT_STORE_REPAIR_MISSING = 3, /* absent below the SCL: as RECORD */
};

typedef struct {
    int kind;
    uint32_t volume, pg;
    uint64_t page_no; /* VERSION */
    uint64_t lsn;
} segment_store_repair;

/* The corrupt or missing items waiting for a peer's copy. */
size_t segment_store_repair_count(const segment_store *s);
void segment_store_repair_at(const segment_store *s, size_t i,
                             segment_store_repair *out);
/* A peer's copy of a wanted record (corrupt or missing): verified and
 * written (synced); for a missing one, with its index keys, and the page's
 * versions built without it are dropped.
 * HX_ERR_NOT_FOUND when it is not wanted, HX_ERR_CHECKSUM when the copy is
 * bad too, HX_ERR_IO. */
int segment_store_repair_record(segment_store *s, uint32_t volume,
                                uint32_t pg, const Hexad__Record *r,
                                segment_store_why *why);
/* A peer's copy (GetPage at the version's LSN) of a wanted page version. */
int segment_store_repair_version(segment_store *s, uint32_t volume,
                                 uint32_t pg, uint64_t page_no,
                                 uint64_t page_lsn, const uint8_t *page,
                                 size_t len, segment_store_why *why);

/* Fault injection, for tests and experiments (hexad-storage
 * --corrupt-records, --drop-records), in one synced write:
 *  CORRUPT flips one byte of the stored value of every `every`-th record
 *    (checksums catch it: segment_scrub.c);
 *  DROP deletes every `every`-th record at or below its segment's SCL,
 *    above its GC point and not its newest, with its index keys, as a lost
 *    write leaves a store: the SCL still claims it (segment_missing.c).
 * At most max records; writes "vol pg lsn" of each to out (may be NULL);
 * *n = how many. */
typedef enum {
    SEGMENT_STORE_FAULT_CORRUPT,
    SEGMENT_STORE_FAULT_DROP,
} segment_store_fault;
int segment_store_damage_records(segment_store *s, segment_store_fault fault,
                                 size_t every, size_t max, FILE *out,
                                 size_t *n, segment_store_why *why);

#endif
