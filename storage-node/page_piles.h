/* Page piles: per page of a segment, how many records lie above its newest
 * page version, as far as coalescing has walked (segment_coalesce.c
 * invariant 3). Coalescing asks it instead of seeking the page's index in
 * RocksDB, which cost a seek-for-prev and a seek per page per pass.
 *
 * Each page also has a GC floor: garbage collection has deleted the
 * page's records at or below it (segment_gc.c invariant 5), so its next
 * pass seeks the page's index above it instead of over the tombstones
 * of everything it deleted before. 0 is unknown: from the start.
 *
 * A hint with an honest "unknown": a page missing from the map (a fresh
 * start, a cleared map, a full map) is counted from the store. A count that
 * is too low (a version dropped by repair) only delays the next version;
 * it never makes a read wrong, since GetPage replays whatever records lie
 * above the version it finds. Plain memory, no I/O.
 */
#ifndef HX_PAGE_PILES_H
#define HX_PAGE_PILES_H

#include <stddef.h>
#include <stdint.h>

/* Most pages one map tracks (24 bytes each); past it, pages stay unknown. */
#define PAGE_PILES_MAX ((size_t)1 << 20)

typedef struct page_piles page_piles;

/* NULL when out of memory. */
page_piles *page_piles_new(void);
void page_piles_free(page_piles *pp);

/* The count for page_no, or -1 when unknown. */
long page_piles_get(const page_piles *pp, uint64_t page_no);
/* Records n for page_no; silently stays unknown when the map is full or
 * cannot grow. */
void page_piles_set(page_piles *pp, uint64_t page_no, uint32_t n);
/* The GC floor of page_no; 0 when unknown. */
uint64_t page_piles_gc_floor(const page_piles *pp, uint64_t page_no);
/* Records the GC floor of page_no; silently stays unknown when the map is
 * full or cannot grow. */
void page_piles_set_gc_floor(page_piles *pp, uint64_t page_no, uint64_t lsn);
/* Every page unknown again (a truncation changed what lies above them). */
void page_piles_clear(page_piles *pp);
size_t page_piles_count(const page_piles *pp);

#endif
