/* The volume client's loop thread: connections, shipping, acks, reads.
 *
 * DESIGN
 *  1. Every record of an MTR is allocated under one hold of `mu`, so an
 *     MTR's LSNs are contiguous and no other MTR's CPL falls inside it
 *     (otherwise VDL could stop at a foreign CPL with half of ours below).
 *  2. A record stays in its PG's ring until all six members acknowledged an
 *     SCL at or above it; a member that reconnects is re-sent everything
 *     above its last acknowledged SCL. The ring is capped: past the cap the
 *     oldest records that are durable (<= VDL) leave it, and a member that
 *     still lacks them must catch up from its peers.
 *  3. Boxcarring: an API thread queues records and activates kick_ev; the
 *     loop ships everything queued since the last pass in one
 *     AppendRecords per (PG, member), with at most VC_INFLIGHT_MAX
 *     unacknowledged appends per (PG, member): while one append waits for
 *     its fsync the next one fills. An MTR whose writer says another
 *     session waits to commit (HX_MTR_MORE_COMING) is held instead
 *     (boxcar.h), at most VC_BOXCAR_US (box_ev), until an MTR comes that
 *     nobody follows, or until the VC_BOXCAR_MTRS-th; then all of them
 *     ship together. Each held MTR saves every member of its PG one append
 *     and one fsync; a lone session is never held. Only new records are
 *     held: truncations and polls go out as before. Measured (tpcb-like,
 *     8 clients): storage CPU per transaction -29%, tps +20%; holding up
 *     to 16 saved more CPU but cost 8-client tps, as every commit then
 *     waited the full VC_BOXCAR_US (bench/RESULTS.md "Boxcar"; 400 and
 *     500 µs measured no better, "Boxcar timer").
 *  4. VDL only comes from the acks through common/quorum.c; a commit
 *     waiter is released only when VDL >= its LSN (4 of 6 copies).
 *  5. A STALE_EPOCH reply (to an append, a truncation or a read) means a
 *     newer writer sealed the volume: the client turns fenced,
 *     acknowledges nothing more, fails every call and tells its owner
 *     (opts.on_fenced).
 *  6. No append goes out before a write quorum of every PG recorded the
 *     recovery's truncation (trunc_quorum), so that every later recovery
 *     sees our range and allocates above everything we could have
 *     written (common/recovery.c design note 5); and none to a member
 *     before it acknowledged the truncation itself (trunc_pending). No
 *     read goes to a member before that either, unless the recovery
 *     surveyed it and it stayed connected (surveyed): what such a member
 *     holds above VDL cannot show in a read at or below VDL, so SQL is
 *     served while storage applies the truncation (its cost grows with
 *     the segment on storage; commits wait for it through VDL). Truncate
 *     carries our epoch, which the node adopts: it seals and truncates in
 *     one synced write. So a storage node that was down during the
 *     recovery drops the dead writer's leftovers the moment it
 *     reconnects, before it serves us.
 *     Storage adds its own guard: a GetPage with a newer epoch than the
 *     node holds is refused NOT_COMPLETE (the node missed a recovery).
 *     Ranges of still earlier recoveries that such a node missed reach it
 *     by gossip from its peers, each with its own epoch; re-sending them
 *     here would have to carry our epoch, which makes every peer re-apply
 *     them. Until then its SCL (from our acks) stays below any read point
 *     that could see a leftover: a leftover lies inside an old range, and
 *     a PG's tail never does.
 *  7. No PG's tail lags the last allocated LSN by more than about
 *     VC_QUIET_LSNS: a PG that got no record for that long gets a no-op
 *     record (no patch, a CPL of its own, on the PG's first page). Why:
 *     recovery lists every record above base = the lowest PG's highest
 *     SCL (common/recovery.h), so one quiet PG would make a writer start
 *     list the whole log written since it went quiet; with the heartbeat
 *     the survey is bounded whatever the log's size.
 *  8. A member's SCL can rise without an append of ours: gossip fills a
 *     hole below records it already acknowledged (typically the records a
 *     recovery kept from copies the member missed). Acks are the only way
 *     we learn SCLs, so a member that holds records we sent above its
 *     reported SCL, and has nothing in flight, is asked again with an
 *     empty append every VC_POLL_MS (poll_ev); its ack carries the SCL.
 *     Without it a lone commit could wait forever for a VDL storage
 *     already reached.
 *  9. Members and geometry ride only on the first append of a connection
 *     to each PG (members_sent): the node creates the segment from it, and
 *     the appends after it on the same connection reach a node that holds
 *     the segment (TCP keeps their order). A node that lost its data
 *     restarted, so it is a new connection; a refused append drops the
 *     connection. Each AppendRecords is ~40 bytes smaller for it.
 */
#include "volume_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/thread.h>

#include "hx_err.h"
#include "log.h"
#include "placement.h"
#include "record.h"

#define VC_BATCH_RECORDS_MAX 4096
#define VC_BATCH_BYTES_MAX (8u << 20)
#define VC_RING_BYTES_MAX (256u << 20)
#define VC_RETRY_MS_MIN 100
#define VC_RETRY_MS_MAX 1000
#define VC_READ_TRY_MS 2000
#define VC_SEND_BUFFER_MAX (16u << 20)
#define VC_QUIET_LSNS 16384u          /* design note 7 */
#define VC_QUIET_CHECK_LSNS 4096u     /* how often PGs are looked at */
#define VC_POLL_MS 50                 /* design note 8 */
#define VC_BOXCAR_US 1000             /* design note 3 */
#define VC_BOXCAR_MTRS 3              /* held together at most */

static uint64_t vc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* (loop) A request to member m went out; timed: one that carries records
 * (an empty SCL poll or a truncation is not a commit's round trip). */
static void inflight_push(vc_member *m, bool timed)
{
    m->sent_ns[m->inflight++] = timed ? vc_now_ns() : 0;
}

/* (loop) Its oldest request was answered: how long ago it went out, 0
 * when it was not timed. */
static uint64_t inflight_pop(vc_member *m)
{
    if (m->inflight == 0)
        return 0;
    uint64_t took = m->sent_ns[0] != 0 ? vc_now_ns() - m->sent_ns[0] : 0;
    for (int i = 1; i < m->inflight; i++)
        m->sent_ns[i - 1] = m->sent_ns[i];
    m->inflight--;
    return took;
}

int64_t vc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void vc_progress(const hx_volume_opts *o, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    HX_INFO("%s", line);
    if (o != NULL && o->progress != NULL)
        o->progress(o->progress_arg, line);
}

static int cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                           int64_t deadline_ms)
{
    if (deadline_ms < 0)
        return pthread_cond_wait(cv, mu);
    if (deadline_ms <= vc_now_ms())
        return -1;
    /* Every cv here waits on CLOCK_MONOTONIC, the clock vc_now_ms() reads. */
    struct timespec ts = {deadline_ms / 1000, (deadline_ms % 1000) * 1000000};
    return pthread_cond_timedwait(cv, mu, &ts);
}

int vc_cv_wait_until(hx_volume *v, int64_t deadline_ms)
{
    return cond_wait_until(&v->cv, &v->mu, deadline_ms);
}

static bool durable_wait_over(const hx_volume *v, uint64_t lsn)
{
    return v->fenced || v->stopping ||
           (v->lsn != NULL && hx_lsn_vdl(v->lsn) >= lsn);
}

void vc_broadcast(hx_volume *v)
{
    pthread_cond_broadcast(&v->cv);
    for (vc_durable_waiter *w = v->durable_waiters; w != NULL; w = w->next)
        if (durable_wait_over(v, w->lsn))
            pthread_cond_signal(&w->cv);
}

/* ------------------------------------------------------------------------
 * PGs and records
 * ---------------------------------------------------------------------- */

vc_pg *vc_pg_get(hx_volume *v, uint32_t pg)
{
    return pg < v->n_pgs ? v->pgs[pg] : NULL;
}

int vc_member_index(const vc_pg *p, int node)
{
    for (int i = 0; i < HX_PG_MEMBERS; i++)
        if (p->m[i].node == node)
            return i;
    return -1;
}

vc_pg *vc_pg_create(hx_volume *v, uint32_t pg, uint64_t membership_epoch,
                    char ids[HX_PG_MEMBERS][HX_ID_MAX])
{
    if (pg >= v->n_pgs) {
        size_t n = v->n_pgs ? v->n_pgs : 8;
        while (n <= pg)
            n *= 2;
        vc_pg **np = realloc(v->pgs, n * sizeof *np);
        if (np == NULL)
            return NULL;
        memset(np + v->n_pgs, 0, (n - v->n_pgs) * sizeof *np);
        v->pgs = np;
        v->n_pgs = n;
    }
    vc_pg *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->pg = pg;
    p->membership_epoch = membership_epoch;
    for (int i = 0; i < HX_PG_MEMBERS; i++) {
        memcpy(p->member_ids[i], ids[i], HX_ID_MAX);
        p->m[i].node = hx_cluster_storage_index(&v->cluster, ids[i]);
    }
    v->pgs[pg] = p;
    return p;
}

/* A new PG the writer grows into: placed two per AZ (common/placement.c). */
static vc_pg *pg_place(hx_volume *v, uint32_t pg)
{
    hx_node_ref refs[HX_MAX_STORAGE_NODES];
    for (size_t i = 0; i < v->cluster.n_storage; i++) {
        refs[i].id = v->cluster.storage[i].id;
        refs[i].az = v->cluster.storage[i].az;
    }
    int idx[HX_PG_MEMBERS];
    if (hx_placement_choose(refs, v->cluster.n_storage, pg, idx) != HX_OK)
        return NULL;
    char ids[HX_PG_MEMBERS][HX_ID_MAX];
    for (int i = 0; i < HX_PG_MEMBERS; i++)
        snprintf(ids[i], HX_ID_MAX, "%s", refs[idx[i]].id);
    vc_pg *p = vc_pg_create(v, pg, 1, ids);
    if (p != NULL && hx_lsn_set_pg_tail(v->lsn, pg, 0) != HX_OK)
        return NULL;
    /* A node that was down during the recovery may hold a dead writer's
     * leftovers of this PG: the recovery's range covers them. */
    for (int i = 0; p != NULL && i < HX_PG_MEMBERS; i++)
        p->m[i].trunc_pending = v->trunc_to > 0;
    if (p != NULL)
        HX_INFO("volume grows: PG %u placed on %s %s %s %s %s %s", pg, ids[0],
                ids[1], ids[2], ids[3], ids[4], ids[5]);
    return p;
}

static int ring_push(vc_pg *p, vc_rec *r)
{
    if (p->count == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 64;
        vc_rec **nr = malloc(ncap * sizeof *nr);
        if (nr == NULL)
            return HX_ERR_NOMEM;
        for (size_t i = 0; i < p->count; i++)
            nr[i] = p->ring[(p->head + i) % p->cap];
        free(p->ring);
        p->ring = nr;
        p->cap = ncap;
        p->head = 0;
    }
    p->ring[(p->head + p->count) % p->cap] = r;
    p->count++;
    p->ring_bytes += r->bytes;
    return HX_OK;
}

static vc_rec *ring_at(const vc_pg *p, size_t i)
{
    return p->ring[(p->head + i) % p->cap];
}

static void ring_pop(vc_pg *p)
{
    vc_rec *r = ring_at(p, 0);
    p->ring_bytes -= r->bytes;
    free(r);
    p->head = (p->head + 1) % p->cap;
    p->count--;
}

/* Drops records every member holds, then (cap) durable ones. */
static void ring_trim(hx_volume *v, vc_pg *p)
{
    uint64_t all = UINT64_MAX;
    for (int i = 0; i < HX_PG_MEMBERS; i++) {
        uint64_t s = hx_lsn_member_scl(v->lsn, p->pg, i);
        if (s < all)
            all = s;
    }
    uint64_t vdl = hx_lsn_vdl(v->lsn);
    while (p->count > 0) {
        uint64_t lsn = ring_at(p, 0)->lsn;
        if (lsn <= all || (p->ring_bytes > VC_RING_BYTES_MAX && lsn <= vdl))
            ring_pop(p);
        else
            break;
    }
}

/* Builds one owned record: patches copied, sealed with its checksum. */
static vc_rec *rec_build(const hx_page_write *w, uint64_t lsn, uint64_t prev,
                         uint64_t epoch, bool cpl)
{
    size_t data = 0;
    for (size_t i = 0; i < w->n_patches; i++)
        data += w->patches[i].len;
    size_t head = sizeof(vc_rec) + w->n_patches * sizeof(Hexad__Patch *);
    size_t total = head + w->n_patches * sizeof(Hexad__Patch) + data;
    vc_rec *r = malloc(total);
    if (r == NULL)
        return NULL;
    Hexad__Patch *patches = (Hexad__Patch *)((uint8_t *)r + head);
    uint8_t *bytes = (uint8_t *)(patches + w->n_patches);
    hexad__record__init(&r->rec);
    r->lsn = lsn;
    r->bytes = total;
    r->rec.lsn = lsn;
    r->rec.prev_lsn = prev;
    r->rec.page_no = w->page_no;
    r->rec.flags = (cpl ? HX_RECORD_CPL : 0) | (w->is_image ? HX_RECORD_IMAGE : 0);
    r->rec.commit_time_us = cpl ? wall_us() : 0;
    r->rec.epoch = epoch;
    r->rec.n_patches = w->n_patches;
    r->rec.patches = r->patch_ptrs;
    for (size_t i = 0; i < w->n_patches; i++) {
        hexad__patch__init(&patches[i]);
        patches[i].offset = w->patches[i].offset;
        patches[i].data.len = w->patches[i].len;
        patches[i].data.data = bytes;
        if (w->patches[i].len > 0)
            memcpy(bytes, w->patches[i].data, w->patches[i].len);
        bytes += w->patches[i].len;
        r->patch_ptrs[i] = &patches[i];
    }
    hx_record_seal(&r->rec);
    return r;
}

/* ------------------------------------------------------------------------
 * Loop side: sending
 * ---------------------------------------------------------------------- */

static void send_truncate(hx_volume *v, vc_pg *p, vc_member *m)
{
    Hexad__Truncate t = HEXAD__TRUNCATE__INIT;
    t.volume = v->cluster.volume;
    t.pg = p->pg;
    t.volume_epoch = v->epoch;
    t.from_lsn = v->trunc_from;
    t.to_lsn = v->trunc_to;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.body_case = HEXAD__ENVELOPE__BODY_TRUNCATE;
    env.truncate = &t;
    env.req_id = ++v->next_req_id;
    if (hx_conn_send(v->nodes[m->node].conn, &env) == HX_OK)
        inflight_push(m, false); /* the TruncateAck frees the slot */
}

/* Ships the records member m lacks, one AppendRecords. */
static void send_member(hx_volume *v, vc_pg *p, vc_member *m, bool poll)
{
    vc_node *n = &v->nodes[m->node];
    if (n->conn == NULL || !n->connected || m->inflight >= VC_INFLIGHT_MAX ||
        hx_conn_pending_bytes(n->conn) > VC_SEND_BUFFER_MAX)
        return;
    if (m->trunc_pending) {
        if (m->inflight == 0)
            send_truncate(v, p, m);
        return;
    }
    if (!v->trunc_quorum)
        return;
    /* Binary search: first ring record above sent_lsn. */
    size_t lo = 0, hi = p->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(p, mid)->lsn <= m->sent_lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n_recs = 0, bytes = 0;
    if (lo < p->count && hx_boxcar_holding(&v->box))
        return; /* held (note 3) */
    if (lo == p->count) {
        /* Nothing new: an empty append asks for the SCL (note 8). */
        if (m->inflight > 0 || !poll ||
            hx_lsn_member_scl(v->lsn, p->pg, (int)(m - p->m)) >= m->sent_lsn)
            return;
    }
    Hexad__Record *batch[VC_BATCH_RECORDS_MAX];
    for (size_t i = lo; i < p->count && n_recs < VC_BATCH_RECORDS_MAX; i++) {
        vc_rec *r = ring_at(p, i);
        if (n_recs > 0 && bytes + r->bytes > VC_BATCH_BYTES_MAX)
            break;
        batch[n_recs++] = &r->rec;
        bytes += r->bytes;
    }
    Hexad__Geometry geo = HEXAD__GEOMETRY__INIT;
    geo.page_size = v->cluster.page_size;
    geo.pg_pages = v->cluster.pg_pages;
    char *ids[HX_PG_MEMBERS];
    for (int i = 0; i < HX_PG_MEMBERS; i++)
        ids[i] = p->member_ids[i];
    Hexad__AppendRecords a = HEXAD__APPEND_RECORDS__INIT;
    a.volume = v->cluster.volume;
    a.pg = p->pg;
    a.volume_epoch = v->epoch;
    a.membership_epoch = p->membership_epoch;
    if (!m->members_sent) {
        a.n_members = HX_PG_MEMBERS;
        a.members = ids;
        a.geometry = &geo;
    }
    a.n_records = n_recs;
    a.records = batch;
    /* No read of ours will use a point below this (storage GC). */
    uint64_t vdl = v->lsn ? hx_lsn_vdl(v->lsn) : 0;
    a.min_read_lsn = v->min_read_pin != 0 && v->min_read_pin < vdl
                         ? v->min_read_pin : vdl;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.body_case = HEXAD__ENVELOPE__BODY_APPEND;
    env.append = &a;
    env.req_id = ++v->next_req_id;
    /* Only this thread drains the output: the growth is this frame. */
    size_t queued = hx_conn_pending_bytes(n->conn);
    int rc = hx_conn_send(n->conn, &env);
    if (rc != HX_OK) {
        HX_WARN("append to %s for PG %u not sent: %s", n->cfg->id, p->pg,
                hx_strerror(rc));
        return;
    }
    n->appends_sent++;
    n->records_sent += n_recs;
    n->bytes_sent += hx_conn_pending_bytes(n->conn) - queued;
    inflight_push(m, n_recs > 0);
    m->members_sent = true;
    if (n_recs > 0)
        m->sent_lsn = batch[n_recs - 1]->lsn;
}

/* poll: also ask members that may hold more than they reported (note 8). */
static void pump(hx_volume *v, bool poll)
{
    if (v->lsn == NULL || v->fenced)
        return;
    for (size_t i = 0; i < v->n_pgs; i++) {
        vc_pg *p = v->pgs[i];
        if (p == NULL)
            continue;
        for (int k = 0; k < HX_PG_MEMBERS; k++)
            if (p->m[k].node >= 0)
                send_member(v, p, &p->m[k], poll);
    }
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    hx_volume *v = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&v->mu);
    if (v->stopping) {
        pthread_mutex_unlock(&v->mu);
        event_base_loopbreak(v->base);
        return;
    }
    vc_calls_pump(v);
    pump(v, false);
    pthread_mutex_unlock(&v->mu);
}

/* The boxcar's time is up (design note 3). */
static void box_cb(evutil_socket_t fd, short what, void *arg)
{
    hx_volume *v = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&v->mu);
    hx_boxcar_timeout(&v->box);
    if (!v->stopping)
        pump(v, false);
    pthread_mutex_unlock(&v->mu);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    hx_volume *v = arg;
    (void)fd;
    (void)what;
    pthread_mutex_lock(&v->mu);
    if (!v->stopping)
        pump(v, true);
    pthread_mutex_unlock(&v->mu);
}

void vc_kick(hx_volume *v)
{
    event_active(v->kick_ev, EV_WRITE, 0);
}

/* ------------------------------------------------------------------------
 * Loop side: replies
 * ---------------------------------------------------------------------- */

static void on_append_ack(hx_volume *v, int node, const Hexad__AppendAck *a)
{
    vc_pg *p = vc_pg_get(v, a->pg);
    int k = p ? vc_member_index(p, node) : -1;
    if (k < 0 || v->lsn == NULL)
        return;
    uint64_t took = inflight_pop(&p->m[k]);
    if (took > 0) {
        v->nodes[node].acks++;
        v->nodes[node].ack_ns += took;
    }
    if (hx_lsn_on_ack(v->lsn, a->pg, k, a->scl))
        vc_broadcast(v);
    ring_trim(v, p);
}

void vc_trunc_quorum_check(hx_volume *v)
{
    if (v->trunc_quorum)
        return;
    for (size_t i = 0; i < v->n_pgs; i++) {
        const vc_pg *p = v->pgs[i];
        int done = 0;
        for (int k = 0; p != NULL && k < HX_PG_MEMBERS; k++)
            done += !p->m[k].trunc_pending;
        if (p != NULL && done < HX_WRITE_QUORUM)
            return;
    }
    v->trunc_quorum = true;
    HX_INFO("recovery truncation recorded on a write quorum of every PG; "
            "writes go out");
}

static void on_truncate_ack(hx_volume *v, int node, const Hexad__TruncateAck *a)
{
    vc_pg *p = vc_pg_get(v, a->pg);
    int k = p ? vc_member_index(p, node) : -1;
    if (k < 0)
        return;
    inflight_pop(&p->m[k]);
    if (p->m[k].trunc_pending) {
        p->m[k].trunc_pending = false;
        /* Resend from what the member really holds now. */
        p->m[k].sent_lsn = a->scl;
        if (v->lsn != NULL)
            hx_lsn_set_member_scl(v->lsn, a->pg, k, a->scl);
        HX_INFO("PG %u: %s applied the recovery truncation (SCL %llu)",
                a->pg, v->nodes[node].cfg->id, (unsigned long long)a->scl);
        vc_trunc_quorum_check(v);
    }
    vc_broadcast(v);
}

/* Under mu: a storage node holds a newer epoch (design note 5). */
static void vc_fence(hx_volume *v, int node, uint64_t newer_epoch)
{
    if (v->mode != HX_VOLUME_WRITER || v->fenced)
        return;
    v->fenced = true;
    v->fenced_by = newer_epoch;
    HX_ERROR("fenced: storage node %s holds volume epoch %llu, newer than "
             "ours (%llu); another writer owns the volume. This writer "
             "acknowledges nothing more.",
             v->nodes[node].cfg->id, (unsigned long long)newer_epoch,
             (unsigned long long)v->epoch);
    vc_broadcast(v);
    if (v->on_fenced != NULL)
        v->on_fenced(v->on_fenced_arg, newer_epoch);
}

static void on_error(hx_volume *v, int node, const Hexad__Error *e)
{
    if (e->code == HX_ERR_STALE_EPOCH && v->mode == HX_VOLUME_WRITER) {
        vc_fence(v, node, e->current_epoch);
        return;
    }
    HX_WARN("storage node %s refused a request: %s (%s)",
            v->nodes[node].cfg->id, e->message, hx_strerror(e->code));
}

static void conn_frame(hx_conn *c, const Hexad__Envelope *env, void *arg)
{
    vc_node *n = arg;
    hx_volume *v = n->v;
    bool drop = false;
    pthread_mutex_lock(&v->mu);
    switch (env->body_case) {
    case HEXAD__ENVELOPE__BODY_APPEND_ACK:
        on_append_ack(v, n->idx, env->append_ack);
        break;
    case HEXAD__ENVELOPE__BODY_TRUNCATE_ACK:
        on_truncate_ack(v, n->idx, env->truncate_ack);
        break;
    default:
        if (vc_calls_on_reply(v, env))
            break;
        if (env->body_case == HEXAD__ENVELOPE__BODY_ERROR) {
            on_error(v, n->idx, env->error);
            /* An append or truncation was refused (disk full, I/O): drop
             * the connection so the reconnect backoff paces the retry and
             * everything unacknowledged is re-sent. */
            drop = !v->fenced && env->error->code != HX_ERR_STALE_EPOCH;
        }
        break;
    }
    vc_calls_pump(v);
    pump(v, false);
    pthread_mutex_unlock(&v->mu);
    /* After unlocking: closing calls conn_close, which takes mu. */
    if (drop)
        hx_conn_close(c, "a request was refused");
}

static void schedule_retry(vc_node *n)
{
    struct timeval tv = {n->retry_ms / 1000, (n->retry_ms % 1000) * 1000};
    evtimer_add(n->retry_ev, &tv);
    n->retry_ms = n->retry_ms * 2 > VC_RETRY_MS_MAX ? VC_RETRY_MS_MAX
                                                     : n->retry_ms * 2;
}

static void conn_close(hx_conn *c, int err, const char *reason, void *arg)
{
    vc_node *n = arg;
    hx_volume *v = n->v;
    (void)c;
    (void)err;
    pthread_mutex_lock(&v->mu);
    bool was = n->connected;
    n->conn = NULL;
    n->connected = false;
    for (size_t i = 0; i < v->n_pgs; i++) {
        vc_pg *p = v->pgs[i];
        int k = p ? vc_member_index(p, n->idx) : -1;
        if (k < 0)
            continue;
        p->m[k].inflight = 0;
        p->m[k].members_sent = false;
        p->m[k].surveyed = false; /* it may come back as another node */
        p->m[k].sent_lsn = v->lsn ? hx_lsn_member_scl(v->lsn, p->pg, k) : 0;
    }
    vc_calls_on_close(v, n->idx);
    if (was && !v->stopping)
        HX_WARN("lost storage node %s (%s): %s; reconnecting", n->cfg->id,
                n->cfg->addr, reason);
    if (!v->stopping)
        schedule_retry(n);
    vc_broadcast(v);
    pthread_mutex_unlock(&v->mu);
}

static void conn_connected(hx_conn *c, void *arg)
{
    vc_node *n = arg;
    hx_volume *v = n->v;
    (void)c;
    pthread_mutex_lock(&v->mu);
    n->connected = true;
    n->retry_ms = VC_RETRY_MS_MIN;
    HX_INFO("connected to storage node %s (%s, %s)", n->cfg->id, n->cfg->az,
            n->cfg->addr);
    vc_calls_pump(v);
    pump(v, false);
    vc_broadcast(v);
    pthread_mutex_unlock(&v->mu);
}

static const hx_conn_cbs vc_conn_cbs = {
    .on_frame = conn_frame,
    .on_connected = conn_connected,
    .on_close = conn_close,
};

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    vc_node *n = arg;
    (void)fd;
    (void)what;
    if (n->conn != NULL)
        return;
    /* hx_conn_connect may call conn_close synchronously: no lock held. */
    hx_conn_opts opts = {.compress = n->v->cluster.wire_compression};
    hx_conn *c = hx_conn_connect(n->v->base, n->cfg->host, n->cfg->port,
                                 n->cfg->id, &opts, &vc_conn_cbs, n);
    pthread_mutex_lock(&n->v->mu);
    n->conn = c;
    if (c == NULL && !n->v->stopping)
        schedule_retry(n);
    pthread_mutex_unlock(&n->v->mu);
}

static void *loop_main(void *arg)
{
    hx_volume *v = arg;
    event_base_dispatch(v->base);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Public API
 * ---------------------------------------------------------------------- */

static void volume_free(hx_volume *v)
{
    for (size_t i = 0; i < v->n_pgs; i++) {
        vc_pg *p = v->pgs[i];
        if (p == NULL)
            continue;
        while (p->count > 0)
            ring_pop(p);
        free(p->ring);
        free(p);
    }
    free(v->pgs);
    for (size_t i = 0; i < v->n_nodes; i++)
        if (v->nodes[i].retry_ev)
            event_free(v->nodes[i].retry_ev);
    if (v->kick_ev)
        event_free(v->kick_ev);
    if (v->poll_ev)
        event_free(v->poll_ev);
    if (v->box_ev)
        event_free(v->box_ev);
    if (v->base)
        event_base_free(v->base);
    hx_lsn_tracker_destroy(v->lsn);
    pthread_cond_destroy(&v->cv);
    pthread_condattr_destroy(&v->cv_attr);
    pthread_mutex_destroy(&v->mu);
    free(v);
}

int hx_volume_open(const hx_volume_opts *o, hx_volume **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))evthread_use_pthreads);
    if (o->cluster->n_storage < HX_PG_MEMBERS)
        return HX_ERR_CONFIG;
    hx_volume *v = calloc(1, sizeof *v);
    if (v == NULL)
        return HX_ERR_NOMEM;
    v->cluster = *o->cluster;
    v->mode = o->mode;
    v->on_fenced = o->on_fenced;
    v->on_fenced_arg = o->on_fenced_arg;
    snprintf(v->az, sizeof v->az, "%s", o->az ? o->az : "");
    pthread_mutex_init(&v->mu, NULL);
    pthread_condattr_init(&v->cv_attr);
    pthread_condattr_setclock(&v->cv_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&v->cv, &v->cv_attr);
    int rc = HX_ERR_NOMEM;
    v->base = event_base_new();
    if (v->base == NULL)
        goto fail;
    v->kick_ev = event_new(v->base, -1, 0, kick_cb, v);
    v->poll_ev = event_new(v->base, -1, EV_PERSIST, poll_cb, v);
    v->box_ev = evtimer_new(v->base, box_cb, v);
    if (v->kick_ev == NULL || v->poll_ev == NULL || v->box_ev == NULL)
        goto fail;
    struct timeval poll_tv = {0, VC_POLL_MS * 1000};
    event_add(v->poll_ev, &poll_tv);
    v->n_nodes = v->cluster.n_storage;
    for (size_t i = 0; i < v->n_nodes; i++) {
        vc_node *n = &v->nodes[i];
        n->v = v;
        n->idx = (int)i;
        n->cfg = &v->cluster.storage[i];
        n->retry_ms = VC_RETRY_MS_MIN;
        n->retry_ev = evtimer_new(v->base, retry_cb, n);
        if (n->retry_ev == NULL)
            goto fail;
        struct timeval now = {0, 0};
        evtimer_add(n->retry_ev, &now);
    }
    if (pthread_create(&v->thread, NULL, loop_main, v) != 0) {
        rc = HX_ERR_IO;
        goto fail;
    }
    if (v->mode == HX_VOLUME_WRITER) {
        rc = vc_recover(v, o);
        if (rc != HX_OK) {
            hx_volume_close(v);
            return rc;
        }
    }
    *out = v;
    return HX_OK;
fail:
    volume_free(v);
    return rc;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    hx_volume *v = arg;
    (void)fd;
    (void)what;
    /* Connections close without calling back into a volume being freed. */
    for (size_t i = 0; i < v->n_nodes; i++) {
        vc_node *n = &v->nodes[i];
        evtimer_del(n->retry_ev);
        if (n->conn != NULL)
            hx_conn_close(n->conn, "volume closed");
    }
    event_del(v->poll_ev);
    event_base_loopbreak(v->base);
}

void hx_volume_close(hx_volume *v)
{
    if (v == NULL)
        return;
    pthread_mutex_lock(&v->mu);
    v->stopping = true;
    vc_broadcast(v);
    pthread_mutex_unlock(&v->mu);
    event_base_once(v->base, -1, EV_TIMEOUT, stop_cb, v, NULL);
    vc_kick(v);
    pthread_join(v->thread, NULL);
    while (v->calls != NULL) {
        vc_call *c = v->calls;
        v->calls = c->next;
        free(c->out);
        free(c->reply);
        free(c);
    }
    volume_free(v);
}

uint32_t hx_volume_page_size(const hx_volume *v)
{
    return v->cluster.page_size;
}

uint64_t hx_volume_epoch(hx_volume *v)
{
    pthread_mutex_lock(&v->mu);
    uint64_t e = v->epoch;
    pthread_mutex_unlock(&v->mu);
    return e;
}

bool hx_volume_fenced(hx_volume *v, uint64_t *newer_epoch)
{
    pthread_mutex_lock(&v->mu);
    bool f = v->fenced;
    if (newer_epoch != NULL)
        *newer_epoch = v->fenced_by;
    pthread_mutex_unlock(&v->mu);
    return f;
}

void hx_volume_set_min_read_lsn(hx_volume *v, uint64_t lsn)
{
    pthread_mutex_lock(&v->mu);
    v->min_read_pin = lsn;
    pthread_mutex_unlock(&v->mu);
}

uint64_t hx_volume_vdl(hx_volume *v)
{
    pthread_mutex_lock(&v->mu);
    uint64_t vdl = v->lsn ? hx_lsn_vdl(v->lsn) : 0;
    pthread_mutex_unlock(&v->mu);
    return vdl;
}

/* Under mu, after an MTR: design note 7. HX_ERR_NOMEM is fatal as in
 * hx_volume_write_mtr (an LSN allocated without its record). */
static int heartbeat_quiet_pgs(hx_volume *v)
{
    uint64_t last = hx_lsn_last_allocated(v->lsn);
    if (last < v->next_quiet_check)
        return HX_OK;
    v->next_quiet_check = last + VC_QUIET_CHECK_LSNS;
    for (size_t i = 0; i < v->n_pgs; i++) {
        vc_pg *p = v->pgs[i];
        if (p == NULL || hx_lsn_pg_tail(v->lsn, p->pg) + VC_QUIET_LSNS > last)
            continue;
        hx_page_write noop = {.page_no = (uint64_t)p->pg * v->cluster.pg_pages};
        uint64_t lsn, prev;
        if (hx_lsn_alloc(v->lsn, p->pg, true, &lsn, &prev) != HX_OK)
            return HX_OK; /* at the LAL: the next check tries again */
        vc_rec *r = rec_build(&noop, lsn, prev, v->epoch, true);
        if (r == NULL || ring_push(p, r) != HX_OK) {
            free(r);
            HX_ERROR("out of memory while queuing LSN %llu; stopping writes",
                     (unsigned long long)lsn);
            v->fenced = true;
            vc_broadcast(v);
            return HX_ERR_NOMEM;
        }
    }
    return HX_OK;
}

int hx_volume_write_mtr(hx_volume *v, const hx_page_write *w, size_t n,
                        unsigned flags, uint64_t *commit_lsn)
{
    if (n == 0)
        return HX_ERR_INVALID;
    if (v->mode != HX_VOLUME_WRITER)
        return HX_ERR_INVALID;
    if (n > v->cluster.lal)
        return HX_ERR_TOO_BIG;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < w[i].n_patches; k++)
            if (w[i].patches[k].offset > v->cluster.page_size ||
                w[i].patches[k].len >
                    v->cluster.page_size - w[i].patches[k].offset)
                return HX_ERR_INVALID;
    int64_t deadline = vc_now_ms() + v->cluster.commit_timeout_ms;
    hx_boxcar_action act = HX_BOXCAR_SHIP;
    pthread_mutex_lock(&v->mu);
    int rc = HX_OK;
    /* Back-pressure (LAL) for the whole MTR at once: see DESIGN 1. */
    while (!v->fenced && !v->stopping &&
           hx_lsn_last_allocated(v->lsn) + n >
               hx_lsn_vdl(v->lsn) + v->cluster.lal &&
           hx_lsn_last_allocated(v->lsn) + n > v->trunc_to + v->cluster.lal) {
        if (vc_cv_wait_until(v, deadline) != 0 && vc_now_ms() >= deadline) {
            rc = HX_ERR_TIMEOUT;
            goto out;
        }
    }
    if (v->fenced || v->stopping) {
        rc = v->fenced ? HX_ERR_FENCED : HX_ERR_CLOSED;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t pgno = (uint32_t)(w[i].page_no / v->cluster.pg_pages);
        vc_pg *p = vc_pg_get(v, pgno);
        if (p == NULL && (p = pg_place(v, pgno)) == NULL) {
            rc = HX_ERR_NOMEM;
            goto out;
        }
        uint64_t lsn, prev;
        rc = hx_lsn_alloc(v->lsn, pgno, i == n - 1, &lsn, &prev);
        if (rc != HX_OK)
            goto out; /* cannot happen after the check above */
        vc_rec *r = rec_build(&w[i], lsn, prev, v->epoch, i == n - 1);
        if (r == NULL || ring_push(p, r) != HX_OK) {
            /* An allocated LSN without its record would stall VCL forever:
             * the volume cannot go on, so fail like a fenced writer. */
            free(r);
            HX_ERROR("out of memory while queuing LSN %llu; stopping writes",
                     (unsigned long long)lsn);
            v->fenced = true;
            vc_broadcast(v);
            rc = HX_ERR_NOMEM;
            goto out;
        }
        *commit_lsn = lsn;
    }
    rc = heartbeat_quiet_pgs(v);
    /* Design note 3: hold, or ship everything held with this one. */
    act = hx_boxcar_commit(&v->box, flags & HX_MTR_MORE_COMING,
                           VC_BOXCAR_MTRS);
out:
    pthread_mutex_unlock(&v->mu);
    if (rc == HX_OK && act == HX_BOXCAR_HOLD_ARM) {
        struct timeval tv = {0, VC_BOXCAR_US};
        evtimer_add(v->box_ev, &tv);
    } else if (rc == HX_OK && act == HX_BOXCAR_SHIP) {
        vc_kick(v);
    }
    return rc;
}

int hx_volume_wait_durable(hx_volume *v, uint64_t lsn, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : vc_now_ms() + timeout_ms;
    pthread_mutex_lock(&v->mu);
    int rc = HX_OK;
    vc_durable_waiter w = {.lsn = lsn};
    bool linked = false;
    while (v->lsn == NULL || hx_lsn_vdl(v->lsn) < lsn) {
        if (v->fenced) {
            rc = HX_ERR_FENCED;
            break;
        }
        if (v->stopping) {
            rc = HX_ERR_CLOSED;
            break;
        }
        if (!linked) {
            pthread_cond_init(&w.cv, &v->cv_attr);
            w.next = v->durable_waiters;
            if (w.next != NULL)
                w.next->prev = &w;
            v->durable_waiters = &w;
            linked = true;
        }
        if (cond_wait_until(&w.cv, &v->mu, deadline) != 0 && deadline >= 0 &&
            vc_now_ms() >= deadline) {
            rc = HX_ERR_TIMEOUT;
            break;
        }
    }
    if (linked) {
        if (w.prev != NULL)
            w.prev->next = w.next;
        else
            v->durable_waiters = w.next;
        if (w.next != NULL)
            w.next->prev = w.prev;
        pthread_cond_destroy(&w.cv);
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

/* ------------------------------------------------------------------------
 * Reads: one segment whose SCL covers the read point, same AZ first.
 * ---------------------------------------------------------------------- */

/* Members ordered by preference: connected, SCL >= need, same AZ first. */
static int read_candidates(hx_volume *v, const vc_pg *p, uint64_t need,
                           int order[HX_PG_MEMBERS])
{
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < HX_PG_MEMBERS; k++) {
            int node = p->m[k].node;
            if (node < 0 || !v->nodes[node].connected ||
                (p->m[k].trunc_pending && !p->m[k].surveyed))
                continue;
            if (v->lsn && hx_lsn_member_scl(v->lsn, p->pg, k) < need)
                continue;
            bool local = v->az[0] && strcmp(v->nodes[node].cfg->az, v->az) == 0;
            if ((pass == 0) == local)
                order[n++] = k;
        }
    }
    return n;
}

int hx_volume_read_page(hx_volume *v, uint64_t page_no, uint64_t read_lsn,
                        uint8_t *buf)
{
    uint32_t pgno = (uint32_t)(page_no / v->cluster.pg_pages);
    int64_t deadline = vc_now_ms() + v->cluster.commit_timeout_ms;
    pthread_mutex_lock(&v->mu);
    vc_pg *p = vc_pg_get(v, pgno);
    if (p == NULL) {
        pthread_mutex_unlock(&v->mu);
        memset(buf, 0, v->cluster.page_size);
        return HX_OK;
    }
    /* A PG whose last record is below read_lsn reads the same at its tail:
     * a segment complete to the tail serves it (storage refuses a read
     * point above its SCL, and a quiet PG's SCL stays at its tail). */
    uint64_t need = read_lsn;
    if (v->lsn && hx_lsn_pg_tail(v->lsn, pgno) < need)
        need = hx_lsn_pg_tail(v->lsn, pgno);
    int rc = HX_ERR_NO_QUORUM;
    while (vc_now_ms() < deadline && !v->stopping && !v->fenced) {
        int order[HX_PG_MEMBERS];
        int n = read_candidates(v, p, need, order);
        for (int i = 0; i < n; i++) {
            int node = p->m[order[i]].node;
            uint64_t scl = v->lsn ? hx_lsn_member_scl(v->lsn, pgno, order[i])
                                  : 0;
            uint64_t epoch = v->epoch;
            pthread_mutex_unlock(&v->mu);
            vc_page_error err;
            rc = vc_get_page(v, node, page_no, need, epoch,
                             vc_now_ms() + VC_READ_TRY_MS, buf, &err);
            if (rc == HX_OK) {
                HX_DEBUG("page %llu at %llu read from %s (its SCL %llu)",
                         (unsigned long long)page_no,
                         (unsigned long long)need, v->nodes[node].cfg->id,
                         (unsigned long long)scl);
            } else if (rc == HX_ERR_STALE_EPOCH) {
                pthread_mutex_lock(&v->mu);
                vc_fence(v, node, err.current_epoch);
                pthread_mutex_unlock(&v->mu);
                rc = HX_ERR_FENCED;
            } else if (err.message[0]) {
                HX_WARN("read of page %llu from %s failed: %s",
                        (unsigned long long)page_no, v->nodes[node].cfg->id,
                        err.message);
            }
            if (rc == HX_OK || rc == HX_ERR_FENCED)
                return rc;
            pthread_mutex_lock(&v->mu);
        }
        /* Nobody could serve it now: wait for a connect or an ack. */
        vc_cv_wait_until(v, vc_now_ms() + 200 < deadline ? vc_now_ms() + 200
                                                      : deadline);
    }
    if (v->fenced)
        rc = HX_ERR_FENCED;
    pthread_mutex_unlock(&v->mu);
    return rc == HX_OK ? HX_ERR_TIMEOUT : rc;
}

/* ------------------------------------------------------------------------
 * page_store adapter for the SQLite VFS
 * ---------------------------------------------------------------------- */

static uint64_t ps_read_point(void *ctx)
{
    return hx_volume_vdl(ctx);
}

static int ps_read_page(void *ctx, uint64_t page_no, uint64_t read_lsn,
                        uint8_t *buf)
{
    return hx_volume_read_page(ctx, page_no, read_lsn, buf);
}

static int ps_write_mtr(void *ctx, const hx_page_write *w, size_t n,
                        unsigned flags, uint64_t *commit_lsn)
{
    return hx_volume_write_mtr(ctx, w, n, flags, commit_lsn);
}

static int ps_wait_durable(void *ctx, uint64_t lsn, int timeout_ms)
{
    return hx_volume_wait_durable(ctx, lsn, timeout_ms);
}

hx_page_store hx_volume_page_store(hx_volume *v)
{
    hx_page_store s = {
        .ctx = v,
        .page_size = v->cluster.page_size,
        .read_point = ps_read_point,
        .read_page = ps_read_page,
        .write_mtr = ps_write_mtr,
        .wait_durable = ps_wait_durable,
    };
    return s;
}
