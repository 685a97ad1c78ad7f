/* Writer-side durability bookkeeping: LSN allocation, PGCL, VCL, VDL.
 *
 * Pure state machine over plain structs (no I/O, no clock): the volume
 * client feeds it allocations and acks; it answers which LSNs are durable.
 *
 * LSNs are dense: every allocated LSN is used by exactly one record, so the
 * volume backlink of record L is L-1 and a missing LSN is a hole.
 *
 * Invariants:
 *  1. For each PG, pgcl is the HX_WRITE_QUORUM-th highest member SCL
 *     (4th of 6): every record of the PG at or below pgcl is on 4 copies.
 *  2. vcl is the highest LSN such that every allocated record at or below
 *     it is at or below its PG's pgcl; vcl <= last allocated LSN. A record
 *     stays durable once its PG's pgcl reached it: pgcl may drop later
 *     (hx_lsn_set_member_scl), vcl does not.
 *  3. vdl is the highest CPL at or below vcl; vdl never decreases.
 *  4. No LSN is allocated above max(vdl, next_lsn - 1 at create) + lal
 *     (back-pressure). LSNs below the first one allocated were settled by
 *     recovery (truncated above vdl, nothing outstanding), so they do not
 *     count against the limit; recovery places next_lsn above vdl + lal.
 */
#ifndef HX_QUORUM_H
#define HX_QUORUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HX_PG_MEMBERS 6
#define HX_WRITE_QUORUM 4
#define HX_READ_QUORUM 3

/* The write-quorum point of six member SCLs: the 4th highest. */
uint64_t hx_quorum_pgcl(const uint64_t scl[HX_PG_MEMBERS]);

typedef struct hx_lsn_tracker hx_lsn_tracker;

/* next_lsn: first LSN to allocate; vdl: the durable point recovered (all
 * LSNs below next_lsn are treated as settled: durable up to vdl, truncated
 * above it, so vcl starts at next_lsn - 1). lal: allocation limit above
 * vdl (> 0). NULL on out of memory, or when next_lsn == 0, vdl >= next_lsn
 * or lal == 0. */
hx_lsn_tracker *hx_lsn_tracker_create(uint64_t next_lsn, uint64_t vdl,
                                      uint64_t lal);
void hx_lsn_tracker_destroy(hx_lsn_tracker *t); /* NULL is a no-op */

/* Sets the PG's last record (recovered), so its next record backlinks to
 * it. Also sets every member SCL of the PG to tail: what recovery found is
 * settled. Creates the PG's state when new. HX_ERR_INVALID when tail is
 * not below the first LSN of the tracker or the PG already has records
 * allocated by it; HX_ERR_NOMEM. */
int hx_lsn_set_pg_tail(hx_lsn_tracker *t, uint32_t pg, uint64_t tail);

/* Allocates the next LSN for a record of pg; *prev_lsn gets the PG's
 * previous record (0 for its first). cpl marks the end of an MTR.
 * HX_ERR_BUSY when the LSN would exceed vdl + lal (nothing changes). */
int hx_lsn_alloc(hx_lsn_tracker *t, uint32_t pg, bool cpl, uint64_t *lsn,
                 uint64_t *prev_lsn);

/* Member `member` (0..5) of pg acknowledged SCL scl. Stale (lower or
 * equal) acks, a member out of range and a PG with no state (never
 * allocated in nor given a tail) are ignored. Returns true when vdl
 * advanced. */
bool hx_lsn_on_ack(hx_lsn_tracker *t, uint32_t pg, int member, uint64_t scl);

/* A member's SCL may drop (its node lost unsynced data or was truncated):
 * replace it instead of taking the max. Returns true when vdl advanced. */
bool hx_lsn_set_member_scl(hx_lsn_tracker *t, uint32_t pg, int member,
                           uint64_t scl);

uint64_t hx_lsn_member_scl(const hx_lsn_tracker *t, uint32_t pg, int member);
uint64_t hx_lsn_pgcl(const hx_lsn_tracker *t, uint32_t pg);
uint64_t hx_lsn_vcl(const hx_lsn_tracker *t);
uint64_t hx_lsn_vdl(const hx_lsn_tracker *t);
uint64_t hx_lsn_last_allocated(const hx_lsn_tracker *t);
/* Last LSN allocated in pg (its tail), 0 if none. */
uint64_t hx_lsn_pg_tail(const hx_lsn_tracker *t, uint32_t pg);
/* Records allocated and not yet durable (above their PG's pgcl mark);
 * records durable but above vcl (waiting for another PG) do not count. */
size_t hx_lsn_outstanding(const hx_lsn_tracker *t);

/* Debug builds: asserts invariants 1-4. */
void hx_lsn_check_invariants(const hx_lsn_tracker *t);

#endif
