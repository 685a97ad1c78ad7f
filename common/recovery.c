/* Writer start / crash recovery, as a pure computation.
 *
 * DESIGN (recovery.h explains why the result is exact; this is how it is
 * computed)
 *
 *  1. base = min over PGs of C_p, C_p = the highest SCL among the PG's
 *     reachable segments. Every record at or below base is held by a
 *     reachable segment (the one with SCL C_p), so VCL >= base.
 *  2. Above base, the tails of all reachable segments are merged into one
 *     sorted, deduplicated array U (CPL flags OR-ed), and the truncation
 *     ranges of all reachable segments into sorted, coalesced intervals T.
 *     A tail record inside T is a leftover of a writer an earlier recovery
 *     cut off (a segment that missed that truncation): it is dropped from U
 *     and from the PG tails, because no kept record ever lies in a
 *     truncated range (the writer that recorded the range allocated above
 *     it, and the old writer's kept records lie below it). For the same
 *     reason a last_lsn_le_limit or cpl_le_limit inside T is ignored; the
 *     segments that applied the truncation report the true values.
 *  3. VCL walks up from base over LSNs in U and jumps over intervals of T;
 *     it stops at the first LSN that is in neither (a hole: dense LSNs mean
 *     a record nobody reachable holds).
 *  4. VDL = the highest CPL of U at or below VCL, or the newest CPL at or
 *     below base that a segment reported (cpl_le_limit), whichever is
 *     higher.
 *  5. next_lsn lies above everything the old writer could have used: its
 *     limit vdl + lal, every LSN any segment reported, and to + lal for
 *     every truncation range [from, to]: a writer that recorded it starts
 *     allocating at to + 1 and may run lal ahead of VDL from there
 *     (volume_client.c), and its records that no reachable segment holds
 *     must not share an LSN with ours.
 *  6. A PG's tail is its newest record at or below vdl: the newest of its
 *     tail records in (base, vdl], else the newest chain record at or below
 *     base (last_lsn_le_limit, exact on the segment whose SCL is C_p). When
 *     vdl < base (the writer died inside an MTR after every PG was complete
 *     past its last CPL) and a PG has a record in (vdl, base], the reports
 *     do not say which of its records is the newest at or below vdl:
 *     HX_ERR_NOT_COMPLETE asks the caller for round 2 again at
 *     limit = tail_from = vdl, which gives the same vcl and vdl (every
 *     record in (vdl, base] is then in a tail) and exact tails.
 *
 * Cost: O(N log N) for N = the number of tail records and ranges reported
 * (two sorts), then linear sweeps; no per-LSN loop over gaps.
 */
#include "recovery.h"

#include <stdlib.h>

#include "hx_err.h"

#define RECOVERY_FLAG_CPL 1u /* HEXAD__RECORD_FLAG__RECORD_FLAG_CPL */

static int recovery_check_quorum(const hx_pg_report *pgs, size_t n,
                                 uint32_t *bad_pg)
{
    for (size_t i = 0; i < n; i++) {
        int reachable = 0;
        for (int s = 0; s < HX_PG_MEMBERS; s++)
            reachable += pgs[i].seg[s].reachable;
        if (reachable < HX_READ_QUORUM) {
            if (bad_pg != NULL)
                *bad_pg = pgs[i].pg;
            return HX_ERR_NO_QUORUM;
        }
    }
    return HX_OK;
}

int hx_recovery_base(const hx_pg_report *pgs, size_t n, uint64_t *base,
                     uint32_t *bad_pg)
{
    if ((pgs == NULL && n > 0) || base == NULL)
        return HX_ERR_INVALID;
    int rc = recovery_check_quorum(pgs, n, bad_pg);
    if (rc != HX_OK)
        return rc;
    uint64_t b = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t c = 0;
        for (int s = 0; s < HX_PG_MEMBERS; s++) {
            const hx_seg_report *r = &pgs[i].seg[s];
            if (r->reachable && r->scl > c)
                c = r->scl;
        }
        if (c < b)
            b = c;
    }
    *base = n == 0 ? 0 : b;
    return HX_OK;
}

static int recovery_cmp_meta(const void *a, const void *b)
{
    uint64_t x = ((const hx_rec_meta *)a)->lsn;
    uint64_t y = ((const hx_rec_meta *)b)->lsn;
    return (x > y) - (x < y);
}

static int recovery_cmp_range(const void *a, const void *b)
{
    uint64_t x = ((const hx_lsn_range *)a)->from_lsn;
    uint64_t y = ((const hx_lsn_range *)b)->from_lsn;
    return (x > y) - (x < y);
}

/* True when lsn lies in one of the nt sorted, disjoint intervals t. */
static bool recovery_in_ranges(const hx_lsn_range *t, size_t nt, uint64_t lsn)
{
    size_t lo = 0, hi = nt; /* first interval with from_lsn > lsn */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].from_lsn <= lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && t[lo - 1].to_lsn >= lsn;
}

static uint64_t recovery_max(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

int hx_recovery_plan(const hx_pg_report *pgs, size_t n, uint64_t base,
                     uint64_t lal, hx_recovery_result *out, uint64_t *tails,
                     uint32_t *bad_pg)
{
    hx_rec_meta *u = NULL;
    hx_lsn_range *t = NULL;
    int rc = HX_ERR_INVALID;
    if ((pgs == NULL && n > 0) || (tails == NULL && n > 0) || out == NULL)
        goto fail;
    rc = recovery_check_quorum(pgs, n, bad_pg);
    if (rc != HX_OK)
        goto fail;

    /* Sizes, and the highest LSN anyone reported (for next_lsn). */
    size_t nu = 0, nt = 0;
    uint64_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        for (int s = 0; s < HX_PG_MEMBERS; s++) {
            const hx_seg_report *r = &pgs[i].seg[s];
            if (!r->reachable)
                continue;
            if ((r->n_tail > 0 && r->tail == NULL) ||
                (r->n_truncations > 0 && r->truncations == NULL)) {
                rc = HX_ERR_INVALID;
                goto fail;
            }
            seen = recovery_max(seen, r->max_lsn);
            for (size_t k = 0; k < r->n_tail; k++) {
                seen = recovery_max(seen, r->tail[k].lsn);
                nu += r->tail[k].lsn > base;
            }
            for (size_t k = 0; k < r->n_truncations; k++) {
                uint64_t to = r->truncations[k].to_lsn;
                seen = recovery_max(seen, to > UINT64_MAX - lal ? UINT64_MAX
                                                               : to + lal);
            }
            nt += r->n_truncations;
        }
    }

    rc = HX_ERR_NOMEM;
    if (nu > 0 && (u = malloc(nu * sizeof(*u))) == NULL)
        goto fail;
    if (nt > 0 && (t = malloc(nt * sizeof(*t))) == NULL)
        goto fail;
    size_t ku = 0, kt = 0;
    for (size_t i = 0; i < n; i++) {
        for (int s = 0; s < HX_PG_MEMBERS; s++) {
            const hx_seg_report *r = &pgs[i].seg[s];
            if (!r->reachable)
                continue;
            for (size_t k = 0; k < r->n_tail; k++)
                if (r->tail[k].lsn > base)
                    u[ku++] = r->tail[k];
            for (size_t k = 0; k < r->n_truncations; k++)
                if (r->truncations[k].from_lsn <= r->truncations[k].to_lsn)
                    t[kt++] = r->truncations[k];
        }
    }

    /* T: sorted, coalesced (overlapping or adjacent) intervals. */
    if (kt > 0)
        qsort(t, kt, sizeof(*t), recovery_cmp_range);
    nt = 0;
    for (size_t k = 0; k < kt; k++) {
        if (nt > 0 && (t[nt - 1].to_lsn == UINT64_MAX ||
                       t[k].from_lsn <= t[nt - 1].to_lsn + 1)) {
            t[nt - 1].to_lsn = recovery_max(t[nt - 1].to_lsn, t[k].to_lsn);
        } else {
            t[nt++] = t[k];
        }
    }

    /* U: sorted, deduplicated, without leftovers inside T. */
    if (ku > 0)
        qsort(u, ku, sizeof(*u), recovery_cmp_meta);
    nu = 0;
    size_t ti = 0;
    for (size_t k = 0; k < ku; k++) {
        while (ti < nt && t[ti].to_lsn < u[k].lsn)
            ti++;
        if (ti < nt && t[ti].from_lsn <= u[k].lsn)
            continue;
        if (nu > 0 && u[nu - 1].lsn == u[k].lsn)
            u[nu - 1].flags |= u[k].flags;
        else
            u[nu++] = u[k];
    }

    /* VCL: each step consumes an entry of U or an interval of T. */
    uint64_t vcl = base;
    size_t ui = 0;
    ti = 0;
    while (vcl < UINT64_MAX) {
        uint64_t next = vcl + 1;
        while (ui < nu && u[ui].lsn < next)
            ui++;
        while (ti < nt && t[ti].to_lsn < next)
            ti++;
        if (ui < nu && u[ui].lsn == next)
            vcl = next;
        else if (ti < nt && t[ti].from_lsn <= next)
            vcl = t[ti].to_lsn;
        else
            break;
    }

    uint64_t vdl = 0;
    for (size_t k = 0; k < nu && u[k].lsn <= vcl; k++)
        if (u[k].flags & RECOVERY_FLAG_CPL)
            vdl = u[k].lsn;
    for (size_t i = 0; i < n; i++) {
        for (int s = 0; s < HX_PG_MEMBERS; s++) {
            const hx_seg_report *r = &pgs[i].seg[s];
            /* cpl_le_limit answers for limit = base: ignore a report
             * beyond what was asked, or a leftover (design note 2). */
            if (r->reachable && r->cpl_le_limit <= base &&
                !recovery_in_ranges(t, nt, r->cpl_le_limit))
                vdl = recovery_max(vdl, r->cpl_le_limit);
        }
    }

    uint64_t top = recovery_max(seen, vdl > UINT64_MAX - lal ? UINT64_MAX
                                                            : vdl + lal);
    if (top == UINT64_MAX) {
        rc = HX_ERR_INVALID; /* the LSN space is exhausted */
        goto fail;
    }

    /* Design note 6: a PG whose newest record at or below base lies above
     * vdl has an unknown tail. */
    bool reask = false;
    for (size_t i = 0; i < n; i++) {
        uint64_t tail = 0, le_limit = 0;
        for (int s = 0; s < HX_PG_MEMBERS; s++) {
            const hx_seg_report *r = &pgs[i].seg[s];
            if (!r->reachable)
                continue;
            if (r->last_lsn_le_limit <= base &&
                !recovery_in_ranges(t, nt, r->last_lsn_le_limit))
                le_limit = recovery_max(le_limit, r->last_lsn_le_limit);
            for (size_t k = 0; k < r->n_tail; k++) {
                uint64_t l = r->tail[k].lsn;
                if (l <= vdl && l > tail && !recovery_in_ranges(t, nt, l))
                    tail = l;
            }
        }
        if (le_limit > vdl)
            reask = true;
        tails[i] = recovery_max(tail, le_limit);
    }

    out->base = base;
    out->vcl = vcl;
    out->vdl = vdl;
    out->next_lsn = top + 1;
    out->trunc_from = vdl + 1;
    out->trunc_to = top;
    rc = reask ? HX_ERR_NOT_COMPLETE : HX_OK;

fail:
    free(u);
    free(t);
    return rc;
}
