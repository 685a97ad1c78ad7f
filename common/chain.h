/* Segment chain: the SCL of one segment, from the prev_lsn backlinks.
 *
 * Pure bookkeeping (no I/O, no clock); the storage node feeds it the
 * records it persists and asks it for the SCL it acknowledges.
 *
 * Invariants:
 *  1. scl is 0 or the LSN of a held record whose backlink chain reaches 0
 *     through held records only; every held record at or below scl is on
 *     that chain (a PG has one writer at a time, and recovery truncates
 *     what an old writer left above the recovered point).
 *  2. pending holds exactly the held records with lsn > scl, each indexed by
 *     its prev_lsn, so advancing scl is a lookup per step, not a scan.
 *  3. scl never moves backwards except through hx_chain_truncate().
 *  4. scl_cpl is the newest CPL on the chain at or below scl (0 if none).
 */
#ifndef HX_CHAIN_H
#define HX_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hx_chain hx_chain;

/* A chain whose complete prefix ends at scl (scl_cpl: newest CPL <= scl).
 * Returns NULL when out of memory. */
hx_chain *hx_chain_create(uint64_t scl, uint64_t scl_cpl);
void hx_chain_destroy(hx_chain *c); /* NULL is a no-op */

/* Adds a held record. Returns 1 when the record is new, 0 for a duplicate
 * (lsn <= scl, or already pending with the same prev_lsn), HX_ERR_INVALID
 * when prev_lsn >= lsn or when the record would fork the chain (a pending
 * record with the same lsn but another prev_lsn, or with the same prev_lsn;
 * or prev_lsn < scl < lsn), HX_ERR_NOMEM. Nothing changes on an error.
 * Advances scl (and scl_cpl) through any pending records the new one
 * connects. */
int hx_chain_add(hx_chain *c, uint64_t lsn, uint64_t prev_lsn, bool cpl);

/* True when lsn is already held (at or below scl, or pending). */
bool hx_chain_has(const hx_chain *c, uint64_t lsn);

uint64_t hx_chain_scl(const hx_chain *c);
uint64_t hx_chain_scl_cpl(const hx_chain *c);
/* Highest LSN held, complete or not (scl when nothing is pending). */
uint64_t hx_chain_max_lsn(const hx_chain *c);
/* Number of pending (held, above scl) records. */
size_t hx_chain_pending(const hx_chain *c);

/* Drops pending records with from <= lsn <= to. When scl >= from the caller
 * (who can look at its stored records) supplies new_scl/new_scl_cpl: the
 * newest chain record below from and the newest CPL at or below it; the
 * chain then re-advances through what is still pending. Records that were
 * complete above `to` (to < old scl) are forgotten: re-add them if they
 * are kept. Costs a scan of the pending table. */
void hx_chain_truncate(hx_chain *c, uint64_t from, uint64_t to,
                       uint64_t new_scl, uint64_t new_scl_cpl);

#endif
