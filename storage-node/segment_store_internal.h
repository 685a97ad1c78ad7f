/* The segment store's internals, shared by the files that implement it:
 * segment_store.c (appends, reads, truncation, gossip), segment_coalesce.c
 * (page versions), segment_gc.c (garbage collection), segment_scrub.c
 * (checksums and repair) and segment_verify.c (the chain check after an
 * unclean stop). Nothing outside storage-node/segment_*.c includes
 * it. The key layout and the invariants are in segment_store.c's header
 * comment.
 */
#ifndef HX_SEGMENT_STORE_INTERNAL_H
#define HX_SEGMENT_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <rocksdb/c.h>

#include "arena.h"
#include "chain.h"
#include "config.h"
#include "node_counters.h"
#include "page_piles.h"
#include "quorum.h"
#include "record_cache.h"
#include "segment_store.h"

/* ------------------------------------------------------------------------
 * Keys.
 * ---------------------------------------------------------------------- */

#define KEY_VOLUME 'v'
#define KEY_SEGMENT 's'
#define KEY_RECORD 'r'
#define KEY_PAGE 'p'
#define KEY_CPL 'c'
#define KEY_VERSION 'g'   /* page versions (segment_coalesce.c) */
#define KEY_BG 'b'        /* coalesce / GC progress (segment_coalesce.c) */
#define KEY_TRUNC 't'     /* truncation ranges (segment_truncations.c) */
#define KEY_CLEAN 'x'     /* the clean-close mark (segment_verify.c) */

#define KEY_VOLUME_LEN 5u      /* 'v' vol */
#define KEY_SEGMENT_LEN 9u     /* 's' vol pg */
#define KEY_LSN_LEN 17u        /* 'r'|'c' vol pg lsn */
#define KEY_PAGE_PREFIX_LEN 17u /* 'p' vol pg page_no */
#define KEY_PAGE_LEN 25u       /* 'p'|'g' vol pg page_no lsn */
#define KEY_MAX_LEN 25u

#define PAGE_SIZE_MIN 512u
#define PAGE_SIZE_MAX 65536u

static inline void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static inline uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static inline size_t key_volume(uint8_t *k, uint32_t vol)
{
    k[0] = KEY_VOLUME;
    put_be32(k + 1, vol);
    return KEY_VOLUME_LEN;
}

static inline size_t key_segment(uint8_t *k, uint32_t vol, uint32_t pg)
{
    k[0] = KEY_SEGMENT;
    put_be32(k + 1, vol);
    put_be32(k + 5, pg);
    return KEY_SEGMENT_LEN;
}

/* 'r' or 'c' key; with lsn omitted (prefix use) the first 9 bytes. */
static inline size_t key_lsn(uint8_t *k, char tag, uint32_t vol, uint32_t pg,
                      uint64_t lsn)
{
    k[0] = (uint8_t)tag;
    put_be32(k + 1, vol);
    put_be32(k + 5, pg);
    put_be64(k + 9, lsn);
    return KEY_LSN_LEN;
}

/* 'p' key (the page index) or, with tag KEY_VERSION, a page version. */
static inline size_t key_page_tag(uint8_t *k, char tag, uint32_t vol,
                                  uint32_t pg, uint64_t page_no, uint64_t lsn)
{
    k[0] = (uint8_t)tag;
    put_be32(k + 1, vol);
    put_be32(k + 5, pg);
    put_be64(k + 9, page_no);
    put_be64(k + 17, lsn);
    return KEY_PAGE_LEN;
}

static inline size_t key_page(uint8_t *k, uint32_t vol, uint32_t pg,
                              uint64_t page_no, uint64_t lsn)
{
    return key_page_tag(k, KEY_PAGE, vol, pg, page_no, lsn);
}

/* RocksDB's bytewise order of two keys. */
static inline int key_cmp(const uint8_t *a, size_t al, const uint8_t *b,
                          size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

/* The 'p' value: the record's flags, then its packed length (what GC
 * counts as removed without reading the record back). Entries written
 * before the length was added are 4 bytes: length 0. */
#define INDEX_VALUE_LEN 8u

static inline void index_value(uint8_t *v, uint32_t flags, uint32_t len)
{
    put_be32(v, flags);
    put_be32(v + 4, len);
}

static inline uint32_t index_value_flags(const uint8_t *v, size_t vl)
{
    return vl >= 4 ? get_be32(v) : 0;
}

static inline uint32_t index_value_len(const uint8_t *v, size_t vl)
{
    return vl >= INDEX_VALUE_LEN ? get_be32(v + 4) : 0;
}

/* ------------------------------------------------------------------------
 * In-memory state.
 * ---------------------------------------------------------------------- */

typedef struct {
    uint64_t from, to, epoch;
} trunc_range;

typedef struct {
    uint32_t vol;
    uint64_t epoch;
    uint32_t page_size; /* 0: geometry not known yet */
    uint64_t pg_pages;
    bool in_batch;      /* touched by the batch being built */
} volume;

typedef struct {
    uint32_t vol, pg;
    uint64_t membership_epoch;
    size_t n_members;   /* 0: created by a truncate, first append fills */
    char members[HX_PG_MEMBERS][HX_ID_MAX];
    uint32_t page_size; /* 0: geometry not known yet */
    uint64_t pg_pages;
    trunc_range *trunc; /* sorted by from, disjoint (segment_truncations.c) */
    size_t n_trunc, cap_trunc;
    bool trunc_legacy;  /* loaded from an old SegmentMeta: rewrite as 't' */
    hx_chain *chain;
    uint64_t records;   /* records stored */
    bool in_batch;
    /* Background work ('b' key; segment_coalesce.c, segment_gc.c). */
    uint64_t coalesced_lsn; /* every page has a version as of it; <= SCL */
    uint64_t gc_lsn;        /* reads below it are refused (collected) */
    uint64_t min_read_lsn;  /* the writer's lowest read point (in memory) */
    uint64_t gc_cand_lsn, gc_cand_ms; /* min_read_lsn seen at gc_cand_ms */
    uint64_t gc_cursor;     /* next page number a GC pass looks at */
    page_piles *piles;      /* NULL until the first coalescing pass */
    /* Lowest record at or below the SCL found missing and not yet
     * repaired; reads at or above it are refused (0: none). */
    uint64_t missing_lsn;
    /* Loaded after an unclean stop and not yet walked whole by the
     * scrub: reads are refused, nothing is coalesced or collected
     * (segment_verify.c). */
    bool chain_unverified;
} segment;

typedef struct {
    uint64_t lsn, prev_lsn, page_no, epoch;
    uint64_t patch_end; /* highest offset + len of its patches */
    uint32_t flags;
    size_t off, len;    /* its packed bytes in staged_append.bytes */
} staged_rec;

typedef struct {
    void *cookie;
    uint32_t vol, pg;
    uint64_t volume_epoch, membership_epoch;
    size_t n_members;
    char members[HX_PG_MEMBERS][HX_ID_MAX];
    char members_err[128]; /* "" when the list is usable */
    uint32_t page_size;    /* request geometry, 0 when absent */
    uint64_t pg_pages;
    int stage_rc;          /* stateless refusal found when staged */
    char stage_msg[192];
    size_t n_recs;
    staged_rec *recs;
    uint8_t *bytes;
    size_t n_bytes;
    uint64_t min_read_lsn; /* AppendRecords.min_read_lsn, 0 when absent */
    segment_store_append_result res;
} staged_append;

/* A stored record or page version found corrupt, waiting for a peer's
 * copy (segment_scrub.c). */
typedef struct {
    uint32_t vol, pg;
    uint64_t page_no;   /* VERSION only */
    uint64_t lsn;
    int kind;           /* SEGMENT_STORE_REPAIR_* */
} repair_want;

struct segment_store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    /* Column families (store_cf()): the records, and everything else. */
    rocksdb_column_family_handle_t *cf_main, *cf_records;
    rocksdb_writeoptions_t *wnowal; /* the journal is the WAL (invariant 8) */
    rocksdb_flushoptions_t *fopts;
    rocksdb_readoptions_t *ropts;
    char node_id[HX_ID_MAX];
    char path[600];

    volume **vols;   /* sorted by vol */
    size_t n_vols, cap_vols;
    segment **segs;  /* sorted by (vol, pg) */
    size_t n_segs, cap_segs;

    staged_append *staged;
    size_t n_staged, cap_staged;
    size_t staged_bytes;

    hx_node_counters counters;
    uint64_t retention_ms;  /* GC keeps what is younger (segment_gc.c) */
    size_t coalesce_next;   /* segment index the next pass starts at */
    record_cache *rcache;   /* records coalescing walked (record_cache.h) */
    hx_arena rec_arena;     /* the record read_record returned last */
    uint8_t scrub_key[KEY_MAX_LEN]; /* the next key a scrub looks at */
    size_t scrub_key_len;
    uint64_t gc_bytes_since_compact;
    pthread_t compact_thread; /* GC's compaction (segment_gc.c) */
    bool compact_started;     /* compact_thread is to be joined */
    atomic_bool compacting;   /* it runs; cleared by the thread */
    struct segment_journal *journal; /* segment_checkpoint.c */
    pthread_t checkpoint_thread;
    bool checkpoint_started;  /* checkpoint_thread is to be joined */
    atomic_bool checkpointing; /* it runs; cleared by the thread */
    uint64_t checkpoint_upto; /* the journal head it releases to */
    bool checkpoint_inline;   /* segment_store_options.checkpoint_inline */
    repair_want *repairs;   /* corrupt, not yet rewritten */
    /* The record the scrub saw last (segment_missing.c): its segment and
     * LSN, so the next one's prev_lsn can be checked against it. */
    uint32_t scrub_vol, scrub_pg;
    uint64_t scrub_lsn;
    size_t n_repairs, cap_repairs;
    /* The scrub's record walk this pass (segment_verify.c): every segment
     * ordered before (walk_vol, walk_pg) was walked whole; walk_started:
     * the pass has reached a record. */
    uint32_t walk_vol, walk_pg;
    bool walk_started;
    bool verify_active;      /* the startup check runs */
    uint64_t verify_records; /* records it walked */
    bool open_done;          /* segment_store_open succeeded */

    unsigned inject_count;
    char inject_msg[200];
};

/* ------------------------------------------------------------------------
 * Column families. The 'r' keys have a family of their own, "records";
 * every other key lives in "default". Within a segment records are keyed
 * by LSN and appends arrive in LSN order, so a memtable of records flushes
 * to a file that overlaps only the newest of the older files, and leveled
 * compaction moves it down instead of rewriting them; in one family with
 * the page index and the versions, whose keys spread over every page,
 * each L0 -> L1 compaction rewrote every record the store held (bench/
 * RESULTS.md "Records in a column family of their own"). Batches that
 * span both families are atomic all the same.
 * ---------------------------------------------------------------------- */

static inline rocksdb_column_family_handle_t *store_cf(const segment_store *s,
                                                       uint8_t tag)
{
    return tag == KEY_RECORD ? s->cf_records : s->cf_main;
}

/* An iterator over the family that holds the keys tagged `tag`. */
static inline rocksdb_iterator_t *store_iter(const segment_store *s,
                                             uint8_t tag)
{
    return rocksdb_create_iterator_cf(s->db, s->ropts, store_cf(s, tag));
}

static inline void batch_put(const segment_store *s, rocksdb_writebatch_t *wb,
                             const uint8_t *k, size_t kl, const void *v,
                             size_t vl)
{
    rocksdb_writebatch_put_cf(wb, store_cf(s, k[0]), (const char *)k, kl,
                              (const char *)v, vl);
}

static inline void batch_delete(const segment_store *s,
                                rocksdb_writebatch_t *wb, const uint8_t *k,
                                size_t kl)
{
    rocksdb_writebatch_delete_cf(wb, store_cf(s, k[0]), (const char *)k, kl);
}

/* ---- segment_families.c ----------------------------------------------- */

/* Opens s->path with both families (s->cf_main, s->cf_records), creating
 * "records" in a store from before it; *err as rocksdb_open's. */
void families_open(segment_store *s, char **err);
/* Moves the 'r' keys an older store kept in "default" into "records", a
 * journaled batch at a time (after the journal replay: it may add some). */
int records_move_to_family(segment_store *s, segment_store_why *why);

/* ---- helpers defined in segment_store.c ------------------------------- */

/* Puts g's 's' key (SegmentMeta, with its record count) into wb. */
int put_segment_meta(rocksdb_writebatch_t *wb, const segment *g);

void why_set(segment_store_why *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int rocks_err(const char *msg);
volume *vol_find(const segment_store *s, uint32_t vol);
segment *seg_find(const segment_store *s, uint32_t vol, uint32_t pg);
/* Index of the first segment at or after (vol, pg) in s->segs. */
size_t seg_lower(const segment_store *s, uint32_t vol, uint32_t pg);
bool seg_geometry(const segment_store *s, const segment *g,
                  uint32_t *page_size, uint64_t *pg_pages);
bool iter_prefix(rocksdb_iterator_t *it, const uint8_t *prefix, size_t plen,
                 const uint8_t **key, size_t *klen);
/* Moves it to the segment's next record-style key (tag vol pg lsn: the
 * first 9 bytes of seg_prefix) at or after its position, skipping keys of
 * other lengths; *lsn = its LSN. False past the segment or past `to`. */
bool iter_lsn_upto(rocksdb_iterator_t *it, const uint8_t *seg_prefix,
                   uint64_t to, uint64_t *lsn);
int iter_status(rocksdb_iterator_t *it, segment_store_why *why,
                const char *what);
int db_get(segment_store *s, const uint8_t *k, size_t kl, char **val,
           size_t *vl, segment_store_why *why);
int store_write(segment_store *s, rocksdb_writebatch_t *wb, const char *what,
                segment_store_why *why);

/* ---- segment_checkpoint.c: the journal under RocksDB (invariant 8) ---- */

/* Opens data_dir/journal (a new one of journal_bytes), replays it into
 * RocksDB and checkpoints what it replayed; an existing journal of another
 * size is replaced then. */
int journal_open_and_replay(segment_store *s, const char *data_dir,
                            uint64_t journal_bytes, segment_store_why *why);
/* Syncs wb's batch to the journal (waiting for room if the ring is full)
 * at *pos; the caller then applies wb with wnowal and, once RocksDB took
 * it, calls journal_applied, or else segment_journal_withdraw(pos). */
int journal_put(segment_store *s, rocksdb_writebatch_t *wb, uint64_t *pos,
                segment_store_why *why);
/* After a journaled batch was applied to RocksDB: starts a checkpoint when
 * the ring fills up (on the caller's thread with checkpoint_inline). */
void journal_applied(segment_store *s);
/* Joins a running checkpoint, checkpoints the rest, closes the journal
 * (before RocksDB closes). NULL journal: no-op. */
void journal_close(segment_store *s);
/* take: the record is applied to a page version being written, so its
 * copy in s->rcache is no longer wanted (coalescing). *out lives in
 * s->rec_arena until the next read_record (unpacking into an arena saves
 * a malloc and a free per field and patch on coalescing's hot path). */
int read_record(segment_store *s, uint32_t vol, uint32_t pg, uint64_t lsn,
                bool take, Hexad__Record **out, segment_store_why *why);
/* Newest key `tag vol pg lsn` with lsn <= at ('r' or 'c'); 0 when none. */
int newest_le(segment_store *s, char tag, uint32_t vol, uint32_t pg,
              uint64_t at, uint64_t *lsn, segment_store_why *why);

/* ---- segment_gc.c ----------------------------------------------------- */

/* Waits for GC's compaction thread, cancelling a running compaction
 * (before the database closes). */
void compact_join(segment_store *s);

/* ---- segment_truncations.c ------------------------------------------- */

/* Adds [from, to]@epoch to g's ranges (invariant 1); HX_ERR_NOMEM leaves
 * them as they were. */
int trunc_add(segment *g, uint64_t from, uint64_t to, uint64_t epoch);
/* Whether a record (lsn, epoch) lies in a range of a higher epoch. */
bool in_truncated(const segment *g, uint64_t lsn, uint64_t epoch);
/* Index of g's first range with to > after_lsn (n_trunc when none). */
size_t trunc_first_above(const segment *g, uint64_t after_lsn);
/* Replaces g's 't' keys by its ranges, in wb (invariant 2). */
int trunc_put_all(segment_store *s, rocksdb_writebatch_t *wb,
                  const segment *g, segment_store_why *why);
/* Adds g's 't' keys to its ranges. */
int trunc_load(segment_store *s, segment *g, segment_store_why *why);

/* ---- segment_coalesce.c ----------------------------------------------- */

/* LSNs coalescing of g may still cover (segment_store_coalesce_lag). */
uint64_t coalesce_lag(const segment *g);
/* Loads g's 'b' key (coalesced_lsn, gc_lsn); absent: both 0. */
int bg_meta_load(segment_store *s, segment *g, segment_store_why *why);
/* Puts g's 'b' key into wb. */
void bg_meta_put(rocksdb_writebatch_t *wb, const segment *g);
/* segment_store_get_page that also tells the LSN of the page version it
 * started from (*base_lsn; 0 when none was stored at or below read_lsn).
 * take: see read_record. it: an iterator of s->db to use (repositioned),
 * or NULL for one of its own; a coalescing pass shares one across its
 * pages, since creating one costs a seek structure per memtable and file. */
int get_page_from_version(segment_store *s, uint32_t vol, uint32_t pg,
                          uint64_t page_no, uint64_t read_lsn, bool take,
                          rocksdb_iterator_t *it, uint8_t **page,
                          size_t *page_len, uint64_t *page_lsn,
                          uint64_t *base_lsn, segment_store_why *why);
/* The newest verified page version of page_no at or below at, into page
 * (page_size bytes), found with it (an iterator of s->db, repositioned);
 * *lsn = its LSN, 0 (page untouched) when none. A
 * corrupt one is counted and its repair queued; above g->gc_lsn it is
 * passed over for an older one. HX_ERR_CHECKSUM (a corrupt one at or
 * below g->gc_lsn), HX_ERR_IO. */
int version_newest_le(segment_store *s, rocksdb_iterator_t *it,
                      const segment *g, uint64_t page_no, uint64_t at,
                      uint8_t *page, uint32_t page_size, uint64_t *lsn,
                      segment_store_why *why);
/* A page version's value: checksum over its key and image, then the
 * image. buf holds the value (8 + page_size bytes) followed by scratch
 * room (KEY_MAX_LEN + page_size bytes). */
void version_pack(uint8_t *buf, const uint8_t *key, size_t kl,
                  const uint8_t *page, uint32_t page_size);
/* HX_OK when val (vl bytes) is a sound version for key of a page_size page. */
int version_verify(const uint8_t *key, size_t kl, const char *val, size_t vl,
                   uint32_t page_size);
/* For a truncation of [from, ...]: puts into wb the deletion of every
 * page version of g at or above from (they may hold truncated records) and
 * lowers g->coalesced_lsn below from. */
int coalesce_truncate(segment_store *s, rocksdb_writebatch_t *wb, segment *g,
                      uint64_t from, segment_store_why *why);

/* ---- segment_scrub.c -------------------------------------------------- */

/* Records a corrupt record (kind SEGMENT_STORE_REPAIR_RECORD), page
 * version or missing record; counts a checksum failure (a missing record:
 * records_missing) the first time it is seen. */
void repair_want_add(segment_store *s, int kind, uint32_t vol, uint32_t pg,
                     uint64_t page_no, uint64_t lsn);
/* Puts record r and its index keys into wb, as an append writes them
 * (segment_store.c invariant 4). HX_ERR_NOMEM. */
int put_record_keys(const segment_store *s, rocksdb_writebatch_t *wb,
                    uint32_t vol, uint32_t pg, const Hexad__Record *r);
/* Index of a wanted item, SIZE_MAX when none; removes one. */
size_t repair_want_find(const segment_store *s, int kind, uint32_t vol,
                        uint32_t pg, uint64_t page_no, uint64_t lsn);
void repair_want_remove(segment_store *s, size_t i);

/* ---- segment_missing.c ------------------------------------------------ */

/* The scrub saw record r (verified) under key k: checks its prev_lsn
 * against the record seen before it and, if the predecessor is missing at
 * or below the SCL, queues it and refuses reads from it on. */
void missing_check(segment_store *s, const uint8_t *k,
                   const Hexad__Record *r);
/* Writes the peer's copy r of the missing record wanted at index i. */
int missing_repair(segment_store *s, size_t i, const Hexad__Record *r,
                   segment_store_why *why);
/* A truncation of [from, to] removed whatever of g was missing there. */
void missing_truncated(segment_store *s, segment *g, uint64_t from,
                       uint64_t to);
/* A corrupt record was rewritten from a peer's copy r: the scrub could
 * not follow its prev_lsn while it was corrupt, so it is followed now. */
void missing_check_repaired(segment_store *s, uint32_t vol, uint32_t pg,
                            const Hexad__Record *r);
/* The record at g's SCL, which no later record of the chain links to,
 * must be stored (when above the GC point); if not, it is queued and
 * reads from it on are refused, as for a missing predecessor. */
void missing_check_tip(segment_store *s, segment *g);

/* ---- segment_verify.c ------------------------------------------------- */

/* At open, after the segments are loaded: with the clean-close mark
 * present, removes it (synced: a crash from now on finds none); without
 * it, marks every segment chain_unverified. HX_ERR_IO. */
int verify_open(segment_store *s, segment_store_why *why);
/* At close: writes the clean-close mark when the store opened, no chain
 * is unverified and no record is known missing. */
void verify_close(segment_store *s);
/* The scrub starts a pass; reaches a record of segment (vol, pg) (in key
 * order); ends a pass that walked every record. Every segment the walk
 * passed has its tip checked and its chain verified. */
void verify_pass_start(segment_store *s);
void verify_reached(segment_store *s, uint32_t vol, uint32_t pg);
void verify_pass_end(segment_store *s);

#endif
