/* Cluster status as a user sees it: per PG its members, their AZ, SCL and
 * reachability, PGCL; the VCL and VDL a recovery would find now. Asks and
 * computes only (common/recovery.c); changes nothing on storage. */
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "volume_internal.h"

static void ask_node_status(hx_volume *v, int timeout_ms,
                            hx_volume_status *st)
{
    vc_call *calls[HX_MAX_STORAGE_NODES] = {0};
    Hexad__NodeStatusRequest q = HEXAD__NODE_STATUS_REQUEST__INIT;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.body_case = HEXAD__ENVELOPE__BODY_STATUS_REQ;
    env.status_req = &q;
    for (size_t i = 0; i < v->n_nodes; i++)
        calls[i] = vc_call_start(v, (int)i, &env);
    int64_t deadline = vc_now_ms() + timeout_ms;
    st->n_nodes = v->n_nodes;
    for (size_t i = 0; i < v->n_nodes; i++) {
        const hx_storage_cfg *c = v->nodes[i].cfg;
        snprintf(st->nodes[i].id, sizeof st->nodes[i].id, "%s", c->id);
        snprintf(st->nodes[i].az, sizeof st->nodes[i].az, "%s", c->az);
        snprintf(st->nodes[i].addr, sizeof st->nodes[i].addr, "%s", c->addr);
        Hexad__Envelope *r = NULL;
        if (calls[i] == NULL || vc_call_finish(v, calls[i], deadline, &r) != HX_OK)
            continue;
        if (r->body_case == HEXAD__ENVELOPE__BODY_STATUS) {
            const Hexad__NodeStatus *ns = r->status;
            st->nodes[i].reachable = true;
            st->nodes[i].records_received = ns->records_received;
            st->nodes[i].bytes_received = ns->bytes_received;
            st->nodes[i].batches_synced = ns->batches_synced;
            st->nodes[i].wire_bytes_received = ns->wire_bytes_received;
            st->nodes[i].frame_bytes_received = ns->frame_bytes_received;
            st->nodes[i].gossip_pulls = ns->gossip_pulls;
            st->nodes[i].gossip_records = ns->gossip_records;
            st->nodes[i].gossip_truncations = ns->gossip_truncations;
            st->nodes[i].gossip_epochs = ns->gossip_epochs;
            st->nodes[i].gossip_segments = ns->gossip_segments;
            st->nodes[i].coalesce_passes = ns->coalesce_passes;
            st->nodes[i].page_versions_written = ns->page_versions_written;
            st->nodes[i].gc_passes = ns->gc_passes;
            st->nodes[i].gc_records_removed = ns->gc_records_removed;
            st->nodes[i].gc_page_versions_removed = ns->gc_page_versions_removed;
            st->nodes[i].gc_bytes_removed = ns->gc_bytes_removed;
            st->nodes[i].gc_compactions = ns->gc_compactions;
            st->nodes[i].checkpoints = ns->checkpoints;
            st->nodes[i].journal_used_bytes = ns->journal_used_bytes;
            st->nodes[i].journal_bytes = ns->journal_bytes;
            st->nodes[i].scrub_passes = ns->scrub_passes;
            st->nodes[i].checksum_failures = ns->checksum_failures;
            st->nodes[i].repairs = ns->repairs;
            st->nodes[i].records_missing = ns->records_missing;
            st->nodes[i].segments_unverified = ns->segments_unverified;
            for (size_t k = 0; k < ns->n_segments; k++) {
                const Hexad__SegmentStatus *g = ns->segments[k];
                if (g->volume == v->cluster.volume &&
                    g->coalesce_lag > st->nodes[i].coalesce_lag)
                    st->nodes[i].coalesce_lag = g->coalesce_lag;
            }
        }
        hexad__envelope__free_unpacked(r, NULL);
    }
}

/* The truncation ranges a node reported for pg, summed up in ms. */
static void member_truncations(const Hexad__SegmentInfoResponse *r,
                               uint32_t pg, hx_member_status *ms)
{
    for (size_t k = 0; k < r->n_segments; k++) {
        const Hexad__SegmentInfo *si = r->segments[k];
        if (si->pg != pg)
            continue;
        ms->n_truncations = si->n_truncations;
        for (size_t t = 0; t < si->n_truncations; t++)
            if (si->truncations[t]->to_lsn > ms->truncated_to)
                ms->truncated_to = si->truncations[t]->to_lsn;
    }
}

int hx_volume_status_get(hx_volume *v, int timeout_ms, hx_volume_status *st)
{
    memset(st, 0, sizeof *st);
    st->volume = v->cluster.volume;
    vc_await_connections(v, timeout_ms);
    ask_node_status(v, timeout_ms, st);

    node_answer ans[HX_MAX_STORAGE_NODES] = {{0}};
    pg_view *pgs = NULL;
    size_t n = 0;
    hx_pg_report *rep = NULL;
    hx_rec_meta *tails_buf = NULL;
    hx_lsn_range *trunc_buf = NULL;
    uint64_t *tails = NULL;
    Hexad__SegmentInfoRequest q = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    q.volume = v->cluster.volume;
    vc_ask_all(v, &q, ans);
    int rc = vc_collect_pgs(v, ans, &pgs, &n);
    if (rc != HX_OK)
        goto out;
    rep = calloc(n ? n : 1, sizeof *rep);
    st->pgs = calloc(n ? n : 1, sizeof *st->pgs);
    if (rep == NULL || st->pgs == NULL) {
        rc = HX_ERR_NOMEM;
        goto out;
    }
    if ((rc = vc_build_reports(ans, pgs, n, rep, &tails_buf)) != HX_OK)
        goto out;
    for (size_t i = 0; i < v->n_nodes; i++) {
        if (!ans[i].answered)
            continue;
        st->nodes[i].volume_epoch = ans[i].reply->segment_info->volume_epoch;
        if (st->nodes[i].volume_epoch > st->epoch)
            st->epoch = st->nodes[i].volume_epoch;
    }
    /* Rows in PG order. */
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++)
            if (pgs[b].pg < pgs[a].pg) {
                pg_view t = pgs[a];
                pgs[a] = pgs[b];
                pgs[b] = t;
                hx_pg_report r = rep[a];
                rep[a] = rep[b];
                rep[b] = r;
            }
    st->n_pgs = n;
    for (size_t p = 0; p < n; p++) {
        hx_pg_status *ps = &st->pgs[p];
        ps->pg = pgs[p].pg;
        uint64_t scl[HX_PG_MEMBERS];
        int up = 0;
        for (int m = 0; m < HX_PG_MEMBERS; m++) {
            hx_member_status *ms = &ps->members[m];
            snprintf(ms->node, sizeof ms->node, "%s", pgs[p].ids[m]);
            int node = pgs[p].node[m];
            if (node >= 0)
                snprintf(ms->az, sizeof ms->az, "%s", v->nodes[node].cfg->az);
            ms->reachable = rep[p].seg[m].reachable;
            ms->scl = rep[p].seg[m].scl;
            if (node >= 0 && ans[node].answered)
                member_truncations(ans[node].reply->segment_info, ps->pg, ms);
            scl[m] = ms->reachable ? ms->scl : 0;
            up += ms->reachable;
        }
        ps->pgcl = hx_quorum_pgcl(scl);
        ps->has_read_quorum = up >= HX_READ_QUORUM;
    }
    uint64_t base = 0;
    uint32_t bad_pg = 0;
    if (hx_recovery_base(rep, n, &base, &bad_pg) != HX_OK)
        goto out; /* not recoverable now: vcl/vdl stay 0 */
    tails = calloc(n ? n : 1, sizeof *tails);
    if (tails == NULL) {
        rc = HX_ERR_NOMEM;
        goto out;
    }
    hx_recovery_result res;
    int prc = vc_survey_plan(v, ans, pgs, n, rep, base, &tails_buf, &trunc_buf,
                             tails, &res, &bad_pg);
    if (prc == HX_OK || prc == HX_ERR_NOT_COMPLETE) { /* vcl/vdl are final */
        st->recoverable = true;
        st->vcl = res.vcl;
        st->vdl = res.vdl;
    }
out:
    vc_free_answers(ans, v->n_nodes);
    free(pgs);
    free(rep);
    free(tails_buf);
    free(trunc_buf);
    free(tails);
    if (rc != HX_OK)
        hx_volume_status_free(st);
    return rc;
}

void hx_volume_status_free(hx_volume_status *st)
{
    free(st->pgs);
    st->pgs = NULL;
    st->n_pgs = 0;
}
