/* The volume client's state for the compute node's /metrics, copied from
 * memory under one hold of the client's lock (see volume_client.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "volume_internal.h"

/* Under mu. */
static void pg_copy(const hx_volume *v, const vc_pg *p, hx_pg_metrics *out)
{
    out->pg = p->pg;
    out->pgcl = v->lsn ? hx_lsn_pgcl(v->lsn, p->pg) : 0;
    out->tail = v->lsn ? hx_lsn_pg_tail(v->lsn, p->pg) : 0;
    out->unacked_records = p->count;
    out->unacked_bytes = p->ring_bytes;
    for (int k = 0; k < HX_PG_MEMBERS; k++) {
        hx_member_metrics *mm = &out->members[k];
        snprintf(mm->node, sizeof mm->node, "%s", p->member_ids[k]);
        mm->scl = v->lsn ? hx_lsn_member_scl(v->lsn, p->pg, k) : 0;
        mm->inflight = p->m[k].inflight;
    }
}

int hx_volume_metrics_get(hx_volume *v, hx_volume_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_lock(&v->mu);
    size_t n = 0;
    for (size_t i = 0; i < v->n_pgs; i++)
        n += v->pgs[i] != NULL;
    m->pgs = n ? calloc(n, sizeof *m->pgs) : NULL;
    if (n > 0 && m->pgs == NULL) {
        pthread_mutex_unlock(&v->mu);
        return HX_ERR_NOMEM;
    }
    m->epoch = v->epoch;
    m->fenced = v->fenced;
    if (v->lsn != NULL) {
        m->vcl = hx_lsn_vcl(v->lsn);
        m->vdl = hx_lsn_vdl(v->lsn);
        m->last_allocated = hx_lsn_last_allocated(v->lsn);
        m->outstanding = hx_lsn_outstanding(v->lsn);
    }
    m->n_nodes = v->n_nodes;
    for (size_t i = 0; i < v->n_nodes; i++) {
        const vc_node *nd = &v->nodes[i];
        hx_node_metrics *nm = &m->nodes[i];
        snprintf(nm->id, sizeof nm->id, "%s", nd->cfg->id);
        nm->connected = nd->connected;
        nm->appends_sent = nd->appends_sent;
        nm->records_sent = nd->records_sent;
        nm->bytes_sent = nd->bytes_sent;
        nm->acks = nd->acks;
        nm->ack_ns = nd->ack_ns;
    }
    for (size_t i = 0; i < v->n_pgs; i++) /* indexed by PG: ascending */
        if (v->pgs[i] != NULL)
            pg_copy(v, v->pgs[i], &m->pgs[m->n_pgs++]);
    pthread_mutex_unlock(&v->mu);
    return HX_OK;
}

void hx_volume_metrics_free(hx_volume_metrics *m)
{
    free(m->pgs);
    m->pgs = NULL;
    m->n_pgs = 0;
}
