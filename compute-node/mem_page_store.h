/* mem_page_store: a page_store held in process memory.
 *
 * A real multi-version store, not a mock: write_mtr allocates one LSN per
 * record (contiguous, from 1), applies each record to the page's newest
 * version and keeps every version, so read_page(page, lsn) returns the page
 * as of any LSN. VDL is the highest CPL made durable. By default a CPL is
 * durable as soon as write_mtr returns; in manual mode VDL moves only when
 * a test calls mem_page_store_set_durable_lsn(), which lets a test see a
 * commit that is shipped but not yet durable. mem_page_store_crash()
 * drops everything above VDL, as crash recovery does.
 *
 * Used by the unit tests and by the sqlite3 shell extension's self-test.
 * Threads: every function may be called from any thread.
 */
#ifndef HX_MEM_PAGE_STORE_H
#define HX_MEM_PAGE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "page_store.h"

/* Highest page number + 1 the store accepts (HX_ERR_TOO_BIG beyond). */
#define MEM_PAGE_STORE_PAGES_MAX (1u << 20)

typedef struct hx_mem_page_store hx_mem_page_store;

/* What the store keeps about one redo record, for tests to inspect. */
typedef struct {
    uint64_t lsn;
    uint64_t page_no;
    int is_image;
    int is_cpl;           /* last record of its MTR */
    unsigned mtr_flags;   /* the write_mtr flags of its MTR */
    size_t n_patches;
    size_t payload_bytes; /* sum of patch lengths */
} mem_page_record;

/* page_size: a power of two, 512 .. 65536. */
int mem_page_store_create(uint32_t page_size, hx_mem_page_store **out);
/* NULL is a no-op. No page_store table obtained from s may be in use. */
void mem_page_store_destroy(hx_mem_page_store *s);

/* The interface table; ctx points to s. Valid until destroy. */
hx_page_store mem_page_store_iface(hx_mem_page_store *s);

/* manual = 1: VDL advances only through set_durable_lsn. Switching back to
 * automatic makes everything written so far durable. */
void mem_page_store_set_manual_durability(hx_mem_page_store *s, int manual);
/* VDL becomes the highest CPL <= lsn (never decreases) and wakes
 * wait_durable callers. */
void mem_page_store_set_durable_lsn(hx_mem_page_store *s, uint64_t lsn);
uint64_t mem_page_store_vdl(hx_mem_page_store *s);
/* Highest LSN allocated (0 when empty). */
uint64_t mem_page_store_last_lsn(hx_mem_page_store *s);

/* The next write_mtr fails with err (a negative hx_err) and ships nothing. */
void mem_page_store_fail_next_write(hx_mem_page_store *s, int err);

/* Crash recovery: drops every record and version above VDL; the next LSN
 * continues after the old highest one, so no LSN is reused. */
void mem_page_store_crash(hx_mem_page_store *s);

size_t mem_page_store_mtr_count(hx_mem_page_store *s);
size_t mem_page_store_record_count(hx_mem_page_store *s);
/* Record i (0 = oldest surviving). HX_ERR_NOT_FOUND past the end. */
int mem_page_store_record_at(hx_mem_page_store *s, size_t i,
                             mem_page_record *out);

#endif
