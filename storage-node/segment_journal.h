/* The storage node's write-ahead journal: a ring file, written in full
 * once when it is created, so that every later write overwrites blocks
 * the filesystem already maps. fdatasync then flushes data only, never the
 * file's size or extents: on this project's ext4 machines that halves the
 * latency of every synced write (bench/RESULTS.md, "Storage journal"),
 * which is on the path of every commit. The segment store writes each
 * RocksDB batch here before it applies it to RocksDB without RocksDB's own
 * WAL (segment_store.c invariant 8).
 *
 * Layout: bytes [0, 4096) hold two superblock slots, at 0 and 512 (each
 * within one sector, so a torn write damages at most one); the ring is
 * [4096, size). A position is a byte offset into an endless log; position
 * p lives at 4096 + p % ring_bytes. An entry is a 20-byte header (magic,
 * payload length, its own position, a CRC-32C of those and the payload)
 * then the payload; an entry may wrap around the ring's end. CRC-32C, not
 * BLAKE2b: it only tells a complete entry from a torn or stale one, and
 * every byte a node stores passes through it (BLAKE2b here took libsodium
 * from 4.4% to 6.4% of a storage node's CPU samples under tpcb-like
 * load).
 *
 * Invariants:
 *  1. tail <= head and head - tail <= ring_bytes: the entries in
 *     [tail, head) are intact on disk; the superblock's tail is the oldest
 *     entry a replay needs.
 *  2. An entry is valid at position p only if its header names p and its
 *     CRC matches: bytes of an earlier lap name an older position, so a
 *     replay stops at the first entry not completely written in this lap.
 *  3. segment_journal_append returns HX_OK only after fdatasync: its entry
 *     is replayed after any crash, until a release moves the tail past it.
 *
 * Threads: one thread appends and replays; another may call
 * segment_journal_release (one release at a time); head and tail are
 * atomic.
 */
#ifndef HX_SEGMENT_JOURNAL_H
#define HX_SEGMENT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "segment_store.h"

#define SEGMENT_JOURNAL_HEADER_BYTES 20u
#define SEGMENT_JOURNAL_RING_OFFSET 4096u
/* Smallest file: the superblock block and a ring of 64 KiB. */
#define SEGMENT_JOURNAL_MIN_BYTES (SEGMENT_JOURNAL_RING_OFFSET + (64u << 10))

typedef struct segment_journal segment_journal;

/* Opens the journal at path. A missing file is created with size_bytes
 * (rounded down to 4 KiB, at least SEGMENT_JOURNAL_MIN_BYTES): written in
 * full with zeros, synced, then renamed into place, its directory synced.
 * An existing file keeps its own size (segment_journal_size tells it).
 * Nothing is replayed yet: head == tail == the superblock's tail.
 * HX_ERR_IO (why names the file and the cause; a file without a valid
 * superblock is refused so), HX_ERR_NO_SPACE, HX_ERR_INVALID (size), or
 * HX_ERR_NOMEM. */
int segment_journal_open(const char *path, uint64_t size_bytes,
                         segment_journal **out, segment_store_why *why);
void segment_journal_close(segment_journal *j);

/* Calls apply(arg, payload, len) for every valid entry from the tail, in
 * order, and leaves head after the last one (invariant 2). apply returning
 * non-zero stops the replay and is returned (head is then left at that
 * entry, the first not applied). *n_entries (may be NULL)
 * counts the entries applied. HX_ERR_IO on a read error. */
int segment_journal_replay(segment_journal *j,
                           int (*apply)(void *arg, const char *payload,
                                        size_t len),
                           void *arg, uint64_t *n_entries,
                           segment_store_why *why);

/* Writes one entry at head and fdatasyncs it (invariant 3). HX_ERR_BUSY
 * when it does not fit between head and tail (release first), and
 * HX_ERR_INVALID when it could never fit (len > ring_bytes - header);
 * HX_ERR_IO / HX_ERR_NO_SPACE on a failed write or sync (nothing is then
 * acknowledged, and the next append rewrites the same position). */
int segment_journal_append(segment_journal *j, const char *payload,
                           size_t len, segment_store_why *why);

/* Withdraws the newest entry, which begins at pos (the head before it was
 * appended): zeroes its header on disk and fdatasyncs, so no replay
 * finds it, then moves the head back to pos. For a batch the store could
 * not apply after journaling it: replayed later, after batches written
 * on top of the state without it, it would be applied out of order.
 * HX_ERR_INVALID when pos is not the newest entry's; HX_ERR_IO. */
int segment_journal_withdraw(segment_journal *j, uint64_t pos,
                             segment_store_why *why);

/* Moves the tail to upto (tail <= upto <= head, as read by the caller
 * before everything below upto was made durable elsewhere): writes the
 * superblock slot not written last and fdatasyncs it. HX_ERR_IO. */
int segment_journal_release(segment_journal *j, uint64_t upto,
                            segment_store_why *why);

uint64_t segment_journal_head(const segment_journal *j);
uint64_t segment_journal_tail(const segment_journal *j);
/* Bytes between tail and head (entries a crash would replay). */
uint64_t segment_journal_used(const segment_journal *j);
uint64_t segment_journal_ring_bytes(const segment_journal *j);
/* The file's size in bytes. */
uint64_t segment_journal_size(const segment_journal *j);

#endif
