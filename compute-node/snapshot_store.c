/* snapshot_store: read-only page_store at the volume's durable point (see
 * snapshot_store.h).
 *
 * Invariants:
 *   1. Nothing is sent to storage but SegmentInfo and GetPage requests:
 *      the volume is opened in probe mode (no recovery, no epoch bump).
 *   2. vdl and tails[] never change after open, so every read of a page
 *      returns the same bytes (SQLite's cache and the VFS cache stay
 *      valid), and all reads form one consistent snapshot: the volume as
 *      of the last complete MTR (CPL) at or below VCL.
 *   3. A page of PG p is read at tails[p], p's newest record <= vdl; a
 *      segment serves that only if its SCL covers it (storage refuses a
 *      read point above its SCL), so an incomplete copy is never used.
 */
#include "snapshot_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "recovery.h"
#include "volume_client.h"
#include "volume_internal.h"

/* A member that cannot answer one GetPage in this long is skipped. */
#define SNAP_READ_TRY_MS 5000
/* Survey rounds when the VDL found lies below the first base. */
#define SNAP_SURVEY_RETRIES 3

typedef struct {
    uint32_t pg;
    uint64_t tail;                 /* newest record <= vdl; 0: none */
    int node[HX_PG_MEMBERS];       /* index into the volume's nodes */
} snap_pg;

struct hx_snapshot_store {
    hx_volume *v;
    uint32_t volume;
    uint32_t page_size;
    uint64_t pg_pages;
    uint64_t vdl;
    snap_pg *pgs;                  /* sorted by pg */
    size_t n_pgs;
};

static const snap_pg *snap_find(const hx_snapshot_store *s, uint32_t pg)
{
    size_t lo = 0, hi = s->n_pgs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->pgs[mid].pg == pg)
            return &s->pgs[mid];
        if (s->pgs[mid].pg < pg)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int snap_pg_cmp(const void *a, const void *b)
{
    const snap_pg *x = a, *y = b;
    return x->pg < y->pg ? -1 : x->pg > y->pg;
}

/* Recovery's two survey rounds, computing only (invariant 1). */
static int snap_survey(hx_snapshot_store *s, int timeout_ms, char *err,
                       size_t err_len)
{
    hx_volume *v = s->v;
    node_answer ans[HX_MAX_STORAGE_NODES] = {{0}};
    pg_view *pgs = NULL;
    size_t n = 0;
    hx_pg_report *rep = NULL;
    hx_rec_meta *tails_buf = NULL;
    hx_lsn_range *trunc_buf = NULL;
    uint64_t *tails = NULL;
    uint32_t bad_pg = 0;
    uint64_t base = 0;
    int rc;

    vc_await_connections(v, timeout_ms);
    Hexad__SegmentInfoRequest q = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    q.volume = s->volume;
    vc_ask_all(v, &q, ans);
    if ((rc = vc_collect_pgs(v, ans, &pgs, &n)) != HX_OK)
        goto out;
    rep = calloc(n ? n : 1, sizeof *rep);
    tails = calloc(n ? n : 1, sizeof *tails);
    s->pgs = calloc(n ? n : 1, sizeof *s->pgs);
    if (!rep || !tails || !s->pgs) {
        rc = HX_ERR_NOMEM;
        goto out;
    }
    if ((rc = vc_build_reports(ans, pgs, n, rep, &tails_buf)) != HX_OK)
        goto out;
    if ((rc = hx_recovery_base(rep, n, &base, &bad_pg)) != HX_OK)
        goto out;
    hx_recovery_result res;
    rc = vc_survey_plan(v, ans, pgs, n, rep, base, &tails_buf, &trunc_buf,
                        tails, &res, &bad_pg);
    for (int i = 0; rc == HX_ERR_NOT_COMPLETE && i < SNAP_SURVEY_RETRIES; i++)
        rc = vc_survey_plan(v, ans, pgs, n, rep, res.vdl, &tails_buf,
                            &trunc_buf, tails, &res, &bad_pg);
    if (rc != HX_OK)
        goto out;
    s->vdl = res.vdl;
    for (size_t p = 0; p < n; p++) {
        s->pgs[p].pg = pgs[p].pg;
        s->pgs[p].tail = tails[p];
        memcpy(s->pgs[p].node, pgs[p].node, sizeof s->pgs[p].node);
    }
    s->n_pgs = n;
    qsort(s->pgs, n, sizeof *s->pgs, snap_pg_cmp);
out:
    if (rc == HX_ERR_NO_QUORUM || rc == HX_ERR_NOT_COMPLETE)
        snprintf(err, err_len, "volume %u: PG %u has no read quorum (3 of "
                 "6 copies) reachable; start the storage nodes that are "
                 "down (./hexad status) and load the extension again",
                 s->volume, bad_pg);
    else if (rc != HX_OK)
        snprintf(err, err_len, "volume %u: cannot survey the storage nodes: "
                 "%s", s->volume, hx_strerror(rc));
    vc_free_answers(ans, v->n_nodes);
    free(pgs);
    free(rep);
    free(tails_buf);
    free(trunc_buf);
    free(tails);
    return rc;
}

int hx_snapshot_store_open(const hx_cluster_cfg *cfg, int timeout_ms,
                           hx_snapshot_store **out, char *err,
                           size_t err_len)
{
    *out = NULL;
    hx_snapshot_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    s->volume = cfg->volume;
    s->page_size = cfg->page_size;
    s->pg_pages = cfg->pg_pages;
    hx_volume_opts o = {.cluster = cfg, .mode = HX_VOLUME_PROBE,
                        .open_timeout_ms = timeout_ms};
    int rc = hx_volume_open(&o, &s->v);
    if (rc != HX_OK) {
        snprintf(err, err_len, "cannot open volume %u: %s", cfg->volume,
                 hx_strerror(rc));
        free(s);
        return rc;
    }
    rc = snap_survey(s, timeout_ms, err, err_len);
    if (rc != HX_OK) {
        hx_snapshot_store_close(s);
        return rc;
    }
    *out = s;
    return HX_OK;
}

void hx_snapshot_store_close(hx_snapshot_store *s)
{
    if (!s)
        return;
    hx_volume_close(s->v);
    free(s->pgs);
    free(s);
}

uint64_t hx_snapshot_store_vdl(const hx_snapshot_store *s)
{
    return s->vdl;
}

/* ---- page_store ---------------------------------------------------------- */

static uint64_t snap_read_point(void *ctx)
{
    return ((hx_snapshot_store *)ctx)->vdl;
}

static int snap_read_page(void *ctx, uint64_t page_no, uint64_t read_lsn,
                          uint8_t *buf)
{
    hx_snapshot_store *s = ctx;
    (void)read_lsn; /* always the snapshot's point (invariant 2) */
    uint32_t pgno = (uint32_t)(page_no / s->pg_pages);
    const snap_pg *p = snap_find(s, pgno);
    if (!p || p->tail == 0) {
        memset(buf, 0, s->page_size); /* nothing durable in this PG */
        return HX_OK;
    }
    int rc = HX_ERR_NO_QUORUM;
    for (int m = 0; m < HX_PG_MEMBERS; m++) {
        if (p->node[m] < 0)
            continue;
        rc = vc_get_page(s->v, p->node[m], page_no, p->tail, 0,
                         vc_now_ms() + SNAP_READ_TRY_MS, buf, NULL);
        if (rc == HX_OK)
            return HX_OK;
    }
    return rc;
}

static int snap_wait_durable(void *ctx, uint64_t lsn, int timeout_ms)
{
    (void)timeout_ms;
    /* Everything a snapshot shows is durable; nothing newer will be. */
    return lsn <= ((hx_snapshot_store *)ctx)->vdl ? HX_OK : HX_ERR_INVALID;
}

hx_page_store hx_snapshot_store_iface(hx_snapshot_store *s)
{
    hx_page_store ps = {
        .ctx = s,
        .page_size = s->page_size,
        .read_point = snap_read_point,
        .read_page = snap_read_page,
        .write_mtr = NULL,
        .wait_durable = snap_wait_durable,
    };
    return ps;
}
