/* Record cache: packed log records of each segment kept in memory, by LSN,
 * for coalescing (segment_coalesce.c) to apply without reading them back
 * from RocksDB.
 *
 * Why: a page is materialized once COALESCE_MIN_RECORDS of its records
 * piled up above its version. A cold page (tpcb-like's account pages at
 * scale 10) collects them over minutes, by then in SST files, and each
 * was a random point read (an index and a data block per level, LZ4):
 * 18% of a storage node's event loop under sustained load
 * (bench/RESULTS.md "Record cache"). Coalescing's walk reads every
 * record once anyway, and keeps a copy here; applying the records of a
 * page then takes them out.
 *
 * Invariants:
 *  1. An entry (vol, pg, lsn) holds the packed bytes stored for that
 *     record when it was put. LSNs of a segment are reused only above a
 *     truncation point, and record_cache_truncate drops those; the caller
 *     still verifies each record's checksum (a copy of corrupt bytes is
 *     dropped, not served).
 *  2. A segment's entries are in increasing LSN order: a put at or below
 *     the segment's newest entry is ignored (a walk that is repeated after
 *     a failed pass).
 *  3. bytes (records plus a fixed charge per entry) stays at or below
 *     max_bytes: a put evicts the oldest entries, by LSN, of the segment
 *     whose oldest entry is oldest.
 *
 * A cache, never a source of truth: any entry may be missing, and the
 * caller then reads the store. Plain memory, no I/O; one thread.
 */
#ifndef HX_RECORD_CACHE_H
#define HX_RECORD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What one entry costs beyond its bytes, charged against max_bytes: up to
 * 8/3 slots of 24 bytes (record_cache.c) and the allocator's header. */
#define RECORD_CACHE_ENTRY_BYTES 80u

typedef struct record_cache record_cache;

typedef struct {
    uint64_t hits, misses; /* of record_cache_find */
    uint64_t evicted;      /* entries dropped to stay within max_bytes */
    uint64_t bytes;        /* charged now (invariant 3) */
    uint64_t entries;
} record_cache_stats;

/* max_bytes 0: a cache that keeps nothing. NULL when out of memory. */
record_cache *record_cache_new(size_t max_bytes);
void record_cache_free(record_cache *rc);

/* Keeps a copy of record lsn of segment (vol, pg). Nothing is kept (and
 * false returned) when lsn is not above the segment's newest entry, when
 * one entry alone exceeds max_bytes, or when memory runs out. */
bool record_cache_put(record_cache *rc, uint32_t vol, uint32_t pg,
                      uint64_t lsn, const void *bytes, size_t len);

/* The bytes of record lsn, or NULL (*len untouched). Valid until the next
 * call that changes the cache. Counts a hit or a miss. */
const uint8_t *record_cache_find(record_cache *rc, uint32_t vol,
                                 uint32_t pg, uint64_t lsn, size_t *len);

/* Removes the entry (absent: nothing). */
void record_cache_drop(record_cache *rc, uint32_t vol, uint32_t pg,
                       uint64_t lsn);

/* Drops every entry of segment (vol, pg) at or above from. */
void record_cache_truncate(record_cache *rc, uint32_t vol, uint32_t pg,
                           uint64_t from);

record_cache_stats record_cache_get_stats(const record_cache *rc);

#endif
