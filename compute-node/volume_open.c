/* Writer start and crash recovery (DESIGN.md "Recovery"), the I/O side of
 * common/recovery.c:
 *   1. connect; ask every node what it holds of the volume (round 1) until
 *      every PG has a read quorum (3 of 6) or the open timeout passes;
 *   2. seal epoch = max seen + 1 on the nodes that answered (a read quorum
 *      of every PG must accept it): from now on the old writer is refused;
 *   3. round 2: every record held above base, per segment, asked of the
 *      sealed nodes only: an unsealed node may take one more of the old
 *      writer's appends after it answered, and that append could complete
 *      a write quorum the survey then missed (no unsealed read quorum can
 *      exist, so 4 acks always include a sealed node that had the record
 *      before its seal and reports it);
 *   4. hx_recovery_plan(): VCL, VDL, truncation range, next LSN, PG tails;
 *   5. truncate (vdl, next_lsn) on every segment, before any append to
 *      it; a member that was away gets it first thing when it reconnects,
 *      before any append or read (volume_client.c design note 6). Open
 *      returns without waiting for the truncations: reads at or below VDL
 *      do not depend on them, and no append goes out before a write quorum
 *      of every PG recorded the range (a commit waits for it).
 * No redo is replayed on the compute node.
 */
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "log.h"
#include "recovery.h"
#include "volume_internal.h"

#define OPEN_CONNECT_GRACE_MS 1500
#define OPEN_ROUND_MS 5000

/* Asks every connected node; fills ans[] (freeing previous answers). */
void vc_ask_all(hx_volume *v, const Hexad__SegmentInfoRequest *req,
                    node_answer *ans)
{
    vc_call *calls[HX_MAX_STORAGE_NODES] = {0};
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.body_case = HEXAD__ENVELOPE__BODY_SEGMENT_INFO_REQ;
    env.segment_info_req = (Hexad__SegmentInfoRequest *)req;
    for (size_t i = 0; i < v->n_nodes; i++) {
        if (ans[i].reply)
            hexad__envelope__free_unpacked(ans[i].reply, NULL);
        ans[i].reply = NULL;
        ans[i].answered = false;
        if (!v->unsealed[i])
            calls[i] = vc_call_start(v, (int)i, &env);
    }
    int64_t deadline = vc_now_ms() + OPEN_ROUND_MS;
    for (size_t i = 0; i < v->n_nodes; i++) {
        Hexad__Envelope *r = NULL;
        if (calls[i] == NULL || vc_call_finish(v, calls[i], deadline, &r) != HX_OK)
            continue;
        if (r->body_case == HEXAD__ENVELOPE__BODY_SEGMENT_INFO) {
            ans[i].answered = true;
            ans[i].reply = r;
        } else {
            if (r->body_case == HEXAD__ENVELOPE__BODY_ERROR)
                HX_WARN("node %s: %s", v->nodes[i].cfg->id, r->error->message);
            hexad__envelope__free_unpacked(r, NULL);
        }
    }
}

static const Hexad__SegmentInfo *find_seg(const node_answer *a, uint32_t pg)
{
    if (!a->answered)
        return NULL;
    const Hexad__SegmentInfoResponse *r = a->reply->segment_info;
    for (size_t i = 0; i < r->n_segments; i++)
        if (r->segments[i]->pg == pg)
            return r->segments[i];
    return NULL;
}

int vc_collect_pgs(hx_volume *v, const node_answer *ans, pg_view **out,
                       size_t *n_out)
{
    pg_view *pgs = NULL;
    size_t n = 0;
    for (size_t i = 0; i < v->n_nodes; i++) {
        if (!ans[i].answered)
            continue;
        const Hexad__SegmentInfoResponse *r = ans[i].reply->segment_info;
        for (size_t s = 0; s < r->n_segments; s++) {
            const Hexad__SegmentInfo *si = r->segments[s];
            if (si->n_members != HX_PG_MEMBERS)
                continue; /* a truncation-only placeholder */
            size_t k = 0;
            while (k < n && pgs[k].pg != si->pg)
                k++;
            if (k == n) {
                pg_view *np = realloc(pgs, (n + 1) * sizeof *np);
                if (np == NULL) {
                    free(pgs);
                    return HX_ERR_NOMEM;
                }
                pgs = np;
                memset(&pgs[n], 0, sizeof pgs[n]);
                pgs[n].pg = si->pg;
                n++;
            } else if (si->membership_epoch <= pgs[k].membership_epoch) {
                continue;
            }
            pgs[k].membership_epoch = si->membership_epoch;
            for (int m = 0; m < HX_PG_MEMBERS; m++) {
                snprintf(pgs[k].ids[m], HX_ID_MAX, "%s", si->members[m]);
                pgs[k].node[m] = hx_cluster_storage_index(&v->cluster,
                                                          si->members[m]);
            }
        }
    }
    *out = pgs;
    *n_out = n;
    return HX_OK;
}

/* Fills reports from the answers; tails/truncs point into them. */
int vc_build_reports(const node_answer *ans, const pg_view *pgs, size_t n,
                     hx_pg_report *rep, hx_rec_meta **owned)
{
    size_t total = 0;
    for (size_t p = 0; p < n; p++)
        for (int m = 0; m < HX_PG_MEMBERS; m++)
            if (pgs[p].node[m] >= 0) {
                const Hexad__SegmentInfo *si = find_seg(&ans[pgs[p].node[m]], pgs[p].pg);
                if (si)
                    total += si->n_tail + si->n_truncations;
            }
    hx_rec_meta *buf = malloc((total ? total : 1) * sizeof *buf);
    if (buf == NULL)
        return HX_ERR_NOMEM;
    *owned = buf;
    size_t used = 0;
    for (size_t p = 0; p < n; p++) {
        memset(&rep[p], 0, sizeof rep[p]);
        rep[p].pg = pgs[p].pg;
        for (int m = 0; m < HX_PG_MEMBERS; m++) {
            int node = pgs[p].node[m];
            hx_seg_report *sr = &rep[p].seg[m];
            if (node < 0 || !ans[node].answered)
                continue;
            const Hexad__SegmentInfo *si = find_seg(&ans[node], pgs[p].pg);
            /* A chain its node has not checked since a crash may claim a
             * record it lost: that member counts as unreachable until the
             * check is done (the survey then waits for a read quorum). */
            if (si != NULL && si->chain_unverified)
                continue;
            sr->reachable = true; /* a node without the segment holds nothing */
            if (si == NULL)
                continue;
            sr->scl = si->scl;
            sr->max_lsn = si->max_lsn;
            sr->last_lsn_le_limit = si->last_lsn_le_limit;
            sr->cpl_le_limit = si->cpl_le_limit;
            sr->tail = buf + used;
            sr->n_tail = si->n_tail;
            for (size_t t = 0; t < si->n_tail; t++) {
                buf[used].lsn = si->tail[t]->lsn;
                buf[used].flags = si->tail[t]->flags;
                used++;
            }
            sr->n_truncations = 0; /* vc_fill_truncations() sets them */
        }
    }
    return HX_OK;
}

int vc_fill_truncations(const node_answer *ans, const pg_view *pgs,
                        size_t n, hx_pg_report *rep, hx_lsn_range **owned)
{
    size_t total = 0;
    for (size_t p = 0; p < n; p++)
        for (int m = 0; m < HX_PG_MEMBERS; m++)
            if (pgs[p].node[m] >= 0) {
                const Hexad__SegmentInfo *si = find_seg(&ans[pgs[p].node[m]], pgs[p].pg);
                if (si)
                    total += si->n_truncations;
            }
    hx_lsn_range *buf = malloc((total ? total : 1) * sizeof *buf);
    if (buf == NULL)
        return HX_ERR_NOMEM;
    *owned = buf;
    size_t used = 0;
    for (size_t p = 0; p < n; p++)
        for (int m = 0; m < HX_PG_MEMBERS; m++) {
            int node = pgs[p].node[m];
            const Hexad__SegmentInfo *si = node >= 0 ? find_seg(&ans[node], pgs[p].pg) : NULL;
            if (si == NULL)
                continue;
            rep[p].seg[m].truncations = buf + used;
            rep[p].seg[m].n_truncations = si->n_truncations;
            for (size_t t = 0; t < si->n_truncations; t++) {
                buf[used].from_lsn = si->truncations[t]->from_lsn;
                buf[used].to_lsn = si->truncations[t]->to_lsn;
                buf[used].epoch = si->truncations[t]->epoch;
                used++;
            }
        }
    return HX_OK;
}

/* Seals `epoch` on every node that answered; HX_OK when a read quorum of
 * every PG (and at least HX_READ_QUORUM nodes) accepted. */
static int seal(hx_volume *v, uint64_t epoch, const node_answer *ans,
                const pg_view *pgs, size_t n)
{
    bool sealed[HX_MAX_STORAGE_NODES] = {0};
    vc_call *calls[HX_MAX_STORAGE_NODES] = {0};
    Hexad__SealEpoch s = HEXAD__SEAL_EPOCH__INIT;
    s.volume = v->cluster.volume;
    s.new_epoch = epoch;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.body_case = HEXAD__ENVELOPE__BODY_SEAL;
    env.seal = &s;
    for (size_t i = 0; i < v->n_nodes; i++)
        if (ans[i].answered)
            calls[i] = vc_call_start(v, (int)i, &env);
    int64_t deadline = vc_now_ms() + OPEN_ROUND_MS;
    size_t total = 0;
    for (size_t i = 0; i < v->n_nodes; i++) {
        Hexad__Envelope *r = NULL;
        if (calls[i] == NULL || vc_call_finish(v, calls[i], deadline, &r) != HX_OK)
            continue;
        if (r->body_case == HEXAD__ENVELOPE__BODY_SEAL_ACK) {
            sealed[i] = true;
            total++;
        } else if (r->body_case == HEXAD__ENVELOPE__BODY_ERROR) {
            HX_WARN("node %s refused epoch %llu: %s", v->nodes[i].cfg->id,
                    (unsigned long long)epoch, r->error->message);
        }
        hexad__envelope__free_unpacked(r, NULL);
    }
    for (size_t i = 0; i < v->n_nodes; i++)
        v->unsealed[i] = !sealed[i];
    if (total < HX_READ_QUORUM)
        return HX_ERR_NO_QUORUM;
    for (size_t p = 0; p < n; p++) {
        int ok = 0;
        for (int m = 0; m < HX_PG_MEMBERS; m++)
            ok += pgs[p].node[m] >= 0 && sealed[pgs[p].node[m]];
        if (ok < HX_READ_QUORUM)
            return HX_ERR_NO_QUORUM;
    }
    return HX_OK;
}

int vc_survey_plan(hx_volume *v, node_answer *ans, const pg_view *pgs,
                   size_t n, hx_pg_report *rep, uint64_t at,
                   hx_rec_meta **tails_buf, hx_lsn_range **trunc_buf,
                   uint64_t *tails, hx_recovery_result *res, uint32_t *bad_pg)
{
    Hexad__SegmentInfoRequest q = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    q.volume = v->cluster.volume;
    q.limit_lsn = at;
    q.tail_from = at;
    q.want_tail = true;
    vc_ask_all(v, &q, ans);
    free(*tails_buf);
    *tails_buf = NULL;
    free(*trunc_buf);
    *trunc_buf = NULL;
    int rc;
    if ((rc = vc_build_reports(ans, pgs, n, rep, tails_buf)) != HX_OK ||
        (rc = vc_fill_truncations(ans, pgs, n, rep, trunc_buf)) != HX_OK)
        return rc;
    return hx_recovery_plan(rep, n, at, v->cluster.lal, res, tails, bad_pg);
}

void vc_await_connections(hx_volume *v, int grace_ms)
{
    int64_t grace = vc_now_ms() + grace_ms;
    pthread_mutex_lock(&v->mu);
    for (;;) {
        size_t up = 0;
        for (size_t i = 0; i < v->n_nodes; i++)
            up += v->nodes[i].connected;
        /* Connects broadcast cv. */
        if (up == v->n_nodes || vc_cv_wait_until(v, grace) != 0)
            break;
    }
    pthread_mutex_unlock(&v->mu);
}

void vc_free_answers(node_answer *ans, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ans[i].reply)
            hexad__envelope__free_unpacked(ans[i].reply, NULL);
}

int vc_recover(hx_volume *v, const hx_volume_opts *o)
{
    int64_t start = vc_now_ms();
    int64_t deadline = start + (o->open_timeout_ms > 0 ? o->open_timeout_ms : 30000);
    node_answer ans[HX_MAX_STORAGE_NODES] = {{0}};
    pg_view *pgs = NULL;
    size_t n = 0;
    hx_pg_report *rep = NULL;
    hx_rec_meta *tails_buf = NULL;
    hx_lsn_range *trunc_buf = NULL;
    uint64_t *tails = NULL;
    int rc;

    /* Give every node a moment to connect, then go with who is there. */
    vc_await_connections(v, OPEN_CONNECT_GRACE_MS);

    /* Round 1, repeated until every PG shows a read quorum. */
    uint64_t max_epoch = 0, base = 0;
    Hexad__SegmentInfoRequest q = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    q.volume = v->cluster.volume;
    for (;;) {
        vc_ask_all(v, &q, ans);
        free(pgs);
        pgs = NULL;
        if ((rc = vc_collect_pgs(v, ans, &pgs, &n)) != HX_OK)
            goto out;
        free(rep);
        rep = calloc(n ? n : 1, sizeof *rep);
        if (rep == NULL) {
            rc = HX_ERR_NOMEM;
            goto out;
        }
        free(tails_buf);
        tails_buf = NULL;
        if ((rc = vc_build_reports(ans, pgs, n, rep, &tails_buf)) != HX_OK)
            goto out;
        size_t answered = 0, checking = 0;
        max_epoch = 0;
        for (size_t i = 0; i < v->n_nodes; i++) {
            if (!ans[i].answered)
                continue;
            answered++;
            const Hexad__SegmentInfoResponse *r = ans[i].reply->segment_info;
            if (r->volume_epoch > max_epoch)
                max_epoch = r->volume_epoch;
            for (size_t j = 0; j < r->n_segments; j++)
                checking += r->segments[j]->chain_unverified;
        }
        uint32_t bad_pg = 0;
        rc = hx_recovery_base(rep, n, &base, &bad_pg);
        if (rc == HX_OK && answered >= HX_READ_QUORUM)
            break;
        if (vc_now_ms() >= deadline) {
            if (rc == HX_OK)
                vc_progress(o, "recovery: only %zu storage nodes answer; "
                            "start more (at least %d)", answered, HX_READ_QUORUM);
            else if (checking > 0)
                vc_progress(o, "recovery: PG %u has no read quorum (3 of 6) "
                            "of checked members: %zu segment(s) are still "
                            "checking their chains after an unclean stop "
                            "(their nodes log \"startup chain check done\"); "
                            "start the writer again once they are done",
                            bad_pg, checking);
            else
                vc_progress(o, "recovery: PG %u has no read quorum (3 of 6); "
                            "start more of its storage nodes", bad_pg);
            rc = HX_ERR_NO_QUORUM;
            goto out;
        }
        vc_progress(o, "recovery: waiting for storage nodes (%zu of %zu "
                    "answer; %zu segment(s) checking their chains)",
                    answered, v->n_nodes, checking);
        struct timespec ts = {0, 500 * 1000000};
        nanosleep(&ts, NULL); /* pacing between rounds, not a condition */
    }

    /* Fence the previous writer before learning what it left. */
    uint64_t epoch = max_epoch + 1;
    if ((rc = seal(v, epoch, ans, pgs, n)) != HX_OK) {
        vc_progress(o, "recovery: could not seal volume epoch %llu on a read "
                    "quorum of every PG", (unsigned long long)epoch);
        goto out;
    }

    /* Round 2: what lies above base. */
    tails = calloc(n ? n : 1, sizeof *tails);
    if (tails == NULL) {
        rc = HX_ERR_NOMEM;
        goto out;
    }
    hx_recovery_result res;
    uint32_t bad_pg = 0;
    rc = vc_survey_plan(v, ans, pgs, n, rep, base, &tails_buf, &trunc_buf,
                        tails, &res, &bad_pg);
    /* VDL fell below base (the old writer died inside an MTR): the tails
     * must be asked again at VDL (recovery.h). Another read quorum may
     * answer the next round, hence a few tries. */
    for (int again = 0; rc == HX_ERR_NOT_COMPLETE && again < 3; again++)
        rc = vc_survey_plan(v, ans, pgs, n, rep, res.vdl, &tails_buf,
                            &trunc_buf, tails, &res, &bad_pg);
    if (rc != HX_OK) {
        vc_progress(o, "recovery: PG %u lost its read quorum during recovery; "
                    "retry", bad_pg);
        goto out;
    }

    pthread_mutex_lock(&v->mu);
    memset(v->unsealed, 0, sizeof v->unsealed);
    v->epoch = epoch;
    v->trunc_from = res.trunc_from;
    v->trunc_to = res.trunc_to;
    v->lsn = hx_lsn_tracker_create(res.next_lsn, res.vdl, v->cluster.lal);
    rc = v->lsn ? HX_OK : HX_ERR_NOMEM;
    for (size_t p = 0; p < n && rc == HX_OK; p++) {
        vc_pg *vp = vc_pg_create(v, pgs[p].pg, pgs[p].membership_epoch, pgs[p].ids);
        if (vp == NULL || hx_lsn_set_pg_tail(v->lsn, pgs[p].pg, tails[p]) != HX_OK) {
            rc = HX_ERR_NOMEM;
            break;
        }
        for (int m = 0; m < HX_PG_MEMBERS; m++) {
            const hx_seg_report *sr = &rep[p].seg[m];
            uint64_t scl = sr->reachable ? (sr->scl < tails[p] ? sr->scl : tails[p]) : 0;
            hx_lsn_set_member_scl(v->lsn, pgs[p].pg, m, scl);
            vp->m[m].trunc_pending = true;
            vp->m[m].surveyed = sr->reachable; /* sealed: vc_ask_all */
            vp->m[m].sent_lsn = scl;
        }
    }
    if (rc == HX_OK)
        vc_trunc_quorum_check(v); /* a new volume: no PG to wait for */
    pthread_mutex_unlock(&v->mu);
    if (rc != HX_OK)
        goto out;
    vc_kick(v);
    vc_progress(o, "recovery: epoch %llu, %zu PGs, VCL %llu, VDL %llu, "
                "truncating (%llu..%llu]", (unsigned long long)epoch, n,
                (unsigned long long)res.vcl, (unsigned long long)res.vdl,
                (unsigned long long)res.vdl,
                (unsigned long long)res.trunc_to);
    vc_progress(o, "recovery: done in %lld ms; writes start at LSN %llu, "
                "acknowledged once a write quorum of their PG applied the "
                "truncation", (long long)(vc_now_ms() - start),
                (unsigned long long)res.next_lsn);
out:
    pthread_mutex_lock(&v->mu);
    memset(v->unsealed, 0, sizeof v->unsealed);
    pthread_mutex_unlock(&v->mu);
    vc_free_answers(ans, v->n_nodes);
    free(pgs);
    free(rep);
    free(tails_buf);
    free(trunc_buf);
    free(tails);
    return rc;
}
