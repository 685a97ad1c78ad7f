/* Writer start / crash recovery, as a pure computation.
 *
 * Inputs: what a read quorum (3 of 6) of every PG reports (SegmentInfo).
 * Output: the recovered VCL and VDL, the truncation range, the next LSN to
 * allocate, and each PG's tail (newest record kept).
 *
 * Why it is exact: LSNs are dense (quorum.h), so VCL is the highest L such
 * that every LSN in (base, L] is held by some reachable segment or lies in
 * a recorded truncation range, where base = min over PGs of the highest
 * reachable SCL (below base every PG is complete on some reachable node).
 * A tail record inside a recorded truncation range is a leftover of a
 * writer that an earlier recovery cut off (a segment missed that
 * truncation): it counts neither as a CPL nor as a PG tail (nor does a
 * last_lsn_le_limit or cpl_le_limit inside such a range).
 * Any record acknowledged under a 4/6 write quorum is held by at least one
 * of any 3 segments of its PG, so the recovered VDL is >= every VDL the old
 * writer ever reported.
 *
 * The computation runs in two rounds of questions to storage:
 *   round 1: each segment's scl and max_lsn     -> hx_recovery_base()
 *   round 2: with tail_from = base and limit_lsn = base, each segment's
 *            tail records, truncations, last_lsn_le_limit, cpl_le_limit
 *                                               -> hx_recovery_plan()
 *   round 2 again, only when hx_recovery_plan() returns
 *            HX_ERR_NOT_COMPLETE: with tail_from = limit_lsn = out->vdl,
 *            then hx_recovery_plan() with base = out->vdl.
 */
#ifndef HX_RECOVERY_H
#define HX_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quorum.h"

typedef struct {
    uint64_t lsn;
    uint32_t flags; /* HEXAD__RECORD_FLAG__RECORD_FLAG_CPL bit = 1 */
} hx_rec_meta;

typedef struct {
    uint64_t from_lsn, to_lsn, epoch;
} hx_lsn_range;

typedef struct {
    bool reachable;
    uint64_t scl;
    uint64_t max_lsn;
    /* round 2 (limit = base): */
    uint64_t last_lsn_le_limit;
    uint64_t cpl_le_limit;
    const hx_rec_meta *tail; /* records held above base, any order */
    size_t n_tail;
    const hx_lsn_range *truncations;
    size_t n_truncations;
} hx_seg_report;

typedef struct {
    uint32_t pg;
    hx_seg_report seg[HX_PG_MEMBERS];
} hx_pg_report;

typedef struct {
    uint64_t base;      /* min over PGs of the max reachable SCL */
    uint64_t vcl;
    uint64_t vdl;
    uint64_t trunc_from; /* vdl + 1 */
    uint64_t trunc_to;   /* next_lsn - 1 */
    uint64_t next_lsn;   /* > every LSN the old writer could have used */
} hx_recovery_result;

/* Round 1. HX_ERR_NO_QUORUM when some PG has fewer than HX_READ_QUORUM
 * reachable segments (*bad_pg names it). n == 0 (a new volume) gives 0. */
int hx_recovery_base(const hx_pg_report *pgs, size_t n, uint64_t *base,
                     uint32_t *bad_pg);

/* Round 2. base: the limit_lsn and tail_from the reports answer (any
 * value at or below the round 1 base gives the same vcl and vdl). lal: the
 * allocation limit the old writer ran under (the next LSN is placed above
 * max(every reported max_lsn, vdl + lal, to + lal of every reported
 * truncation range)): an old writer that no read quorum saw write may
 * still have records on other segments. tails[i] receives PG i's newest
 * record at or below vdl. HX_ERR_NO_QUORUM as above. HX_ERR_NOT_COMPLETE
 * when vdl < base and some PG has a record in (vdl, base], so its newest
 * record at or below vdl is not in the reports: *out is filled (vcl and
 * vdl are final) but tails[] is not valid; ask round 2 again with
 * limit_lsn = tail_from = out->vdl and call again with base = out->vdl.
 * HX_ERR_INVALID for NULL arguments or an exhausted LSN space;
 * HX_ERR_NOMEM. */
int hx_recovery_plan(const hx_pg_report *pgs, size_t n, uint64_t base,
                     uint64_t lal, hx_recovery_result *out, uint64_t *tails,
                     uint32_t *bad_pg);

#endif
