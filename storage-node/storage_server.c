/* The storage node's network side: listener, connections, dispatch.
 *
 * DESIGN
 *
 * Connections. Each accepted socket becomes an hx_conn (common/conn.h)
 * wrapped in a srv_conn. The hx_conn owns the socket and frees itself after
 * on_close; the srv_conn outlives it while acks are still owed to it
 * (`awaiting` > 0), so that a flush never touches a freed connection: the
 * ack of a closed connection is dropped, and the srv_conn freed with the
 * last one. States of a srv_conn: OPEN (conn != NULL) -> DRAINING (conn ==
 * NULL, awaiting > 0) -> freed.
 *
 * Group commit. An AppendRecords is only staged in the segment store
 * (segment_store_stage_append); the first one staged in a loop iteration
 * makes `flush_ev` active. flush_ev is a plain event with no fd, activated
 * with event_active(): libevent appends it to the tail of the active queue
 * of its priority, behind every socket event the current iteration already
 * activated, and runs it in this same iteration. So every append read in
 * one iteration, from every connection, shares ONE synced write (one
 * journal fdatasync), and no append waits for a later iteration. (The alternative, a
 * lower-priority event, starves while some socket is always readable; a
 * zero timer waits for the next iteration and drags that one's reads in
 * too.) The acks are sent from the flush, after the synced write returned:
 * nothing is acknowledged before it is durable.
 *
 * Ordering. Seal, truncate and segment info first flush what is staged:
 * they then observe, and order after, every append received before them.
 * Reads (GetPage, status) see only what is durable, so they need no flush.
 *
 * Gossip (proto/README.md "Gossip"). Every GOSSIP_INTERVAL_MS, for each
 * segment whose members are known, the next member other than self (round
 * robin) is sent PullRecords{after_lsn: our SCL} unless a pull of that
 * segment is outstanding. One outgoing hx_conn per peer (`gpeer`), opened
 * lazily, reopened after a close no sooner than its backoff; sends never
 * block (they queue in the bufferevent, also while connecting). A reply's
 * records are staged like an append (segment_store_stage_pulled) and share
 * the group-commit flush; their results come back to append_done with a
 * pending_ack whose sc is NULL. A reply that stopped below the peer's SCL
 * is followed by another pull at once. Outstanding pulls end with their
 * reply, an Error, the peer connection's close, or GOSSIP_PULL_TIMEOUT_MS.
 * Per-segment state (`gseg`, sorted by (vol, pg)) is only a hint: losing it
 * costs one extra pull. Which member to pull from and what a reply makes
 * us adopt (the peer's higher volume epoch, truncation ranges we missed)
 * are decided by common/gossip.c; adopting flushes what is staged first
 * (seal and truncate order after it), and a reply cut for an SCL that a
 * truncation just lowered is dropped and pulled again at once.
 *
 * Segment lists. Every GOSSIP_LIST_INTERVAL_MS one peer (round robin) is
 * asked ListSegments{node: self}: the segments it holds that we should
 * hold too. One we lack (we were down when the writer created it) is
 * staged as an empty append (segment_gossip.c) and created by the flush;
 * the pulls then fill it. A list cut at SEGMENT_STORE_LIST_MAX is
 * continued at once from its next_key.
 *
 * Limits: frames (hx_conn, HX_FRAME_MAX_BYTES), staged bytes
 * (SEGMENT_STORE_STAGED_BYTES_MAX: flushed early past it), connections
 * (SERVER_CONNS_MAX), per-connection reply backlog
 * (STORAGE_SERVER_PAUSE_READS_BYTES).
 */
#include "storage_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "conn.h"
#include "frame.h"
#include "gossip.h"
#include "hx_err.h"
#include "log.h"
#include "segment_store.h"
#include "storage_background.h"

#define SERVER_CONNS_MAX 4096

#define GOSSIP_INTERVAL_MS 200
#define GOSSIP_PULL_TIMEOUT_MS 5000
#define GOSSIP_LIST_INTERVAL_MS 500
#define GOSSIP_BACKOFF_MIN_MS 200
#define GOSSIP_BACKOFF_MAX_MS 5000

typedef struct srv_conn srv_conn;

/* One outgoing connection to a peer storage node. */
typedef struct {
    storage_server *srv;
    char id[HX_ID_MAX];
    char host[96];
    uint16_t port;
    hx_conn *conn;          /* NULL: not connected */
    uint64_t next_try_ms;   /* no reconnect before */
    unsigned backoff_ms;
    bool list_outstanding;  /* a ListSegments awaits its reply */
    uint64_t list_req_id, list_since_ms;
    uint64_t list_next_key; /* where the next ListSegments starts */
} gpeer;

/* Gossip state of one segment. */
typedef struct {
    uint32_t vol, pg;
    unsigned rr;            /* next member index to try */
    bool outstanding;
    int out_peer;           /* index in gpeers while outstanding */
    uint64_t out_req_id, out_since_ms;
    uint64_t out_after;     /* the outstanding pull's after_lsn */
    uint64_t peer_scl[HX_MAX_STORAGE_NODES];    /* last SCL each peer told */
    uint64_t peer_scl_ms[HX_MAX_STORAGE_NODES]; /* when (0: never) */
} gseg;

struct storage_server {
    struct event_base *base;
    struct evconnlistener *listener;
    segment_store *store;
    struct event *flush_ev;
    bool flush_scheduled;
    hx_storage_cfg self;
    uint32_t volume;        /* the cluster's volume, for NodeStatus */
    uint64_t started_ms;
    srv_conn *conns;        /* open connections, doubly linked */
    size_t n_conns;

    /* Gossip. */
    struct event *gossip_ev;
    gpeer peers[HX_MAX_STORAGE_NODES];
    size_t n_peers;
    gseg *gsegs;            /* sorted by (vol, pg) */
    size_t n_gsegs, cap_gsegs;
    uint64_t next_req_id;
    unsigned list_rr;       /* next peer asked for a segment list */
    uint64_t next_list_ms;
    /* Adopted from peers (the store counts pulls and records). */
    uint64_t gossip_truncations, gossip_epochs, gossip_segments;
    /* Frames received on the listening port: bytes as they arrived, and
     * what they would have taken plain (header + decoded envelope); the
     * two differ by compression. */
    uint64_t wire_bytes_received, frame_bytes_received;
    storage_bg *bg;         /* coalescing, GC, scrub, repair */
    bool closing;
};

struct srv_conn {
    storage_server *srv;
    hx_conn *conn;          /* NULL once closed (DRAINING) */
    srv_conn *prev, *next;
    size_t awaiting;        /* staged appends whose results are owed */
};

typedef struct {
    srv_conn *sc;           /* NULL: staged by gossip, nobody to answer */
    uint64_t req_id;
    bool learned;           /* gossip: a segment from a peer's list */
} pending_ack;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------
 * Replies.
 * ---------------------------------------------------------------------- */

static void send_env(srv_conn *sc, Hexad__Envelope *env);

static void send_error(srv_conn *sc, uint64_t req_id, int code,
                       const char *msg, uint64_t current_epoch)
{
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__Error e = HEXAD__ERROR__INIT;
    e.code = code;
    e.message = (char *)(msg && msg[0] ? msg : hx_strerror(code));
    e.current_epoch = current_epoch;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_ERROR;
    env.error = &e;
    send_env(sc, &env);
}

static void send_env(srv_conn *sc, Hexad__Envelope *env)
{
    if (sc->conn == NULL)
        return;
    int rc = hx_conn_send(sc->conn, env);
    if (rc == HX_OK || rc == HX_ERR_CLOSED)
        return;
    HX_WARN("reply %" PRIu64 " to %s not sent: %s", env->req_id,
            hx_conn_peer(sc->conn), hx_strerror(rc));
    if (env->body_case != HEXAD__ENVELOPE__BODY_ERROR) {
        char msg[128];
        snprintf(msg, sizeof msg, "the reply could not be sent: %s",
                 hx_strerror(rc));
        send_error(sc, env->req_id, rc, msg, 0);
    }
}

static void srv_conn_release(srv_conn *sc)
{
    if (sc->conn == NULL && sc->awaiting == 0)
        free(sc);
}

/* ------------------------------------------------------------------------
 * Group commit.
 * ---------------------------------------------------------------------- */

static void append_done(void *cookie, const segment_store_append_result *res,
                        void *arg)
{
    (void)arg;
    pending_ack *p = cookie;
    srv_conn *sc = p->sc;
    if (sc == NULL) { /* records a gossip pull brought, or a segment */
        storage_server *srv = arg;
        if (res->rc == HX_OK && p->learned) {
            srv->gossip_segments++;
            HX_INFO("segment %u/%u: learned from a peer's segment list",
                    res->volume, res->pg);
        } else if (res->rc == HX_OK)
            segment_store_counters_mut(srv->store)->gossip_records +=
                res->stored;
        else
            HX_DEBUG("segment %u/%u: pulled records refused: %s",
                     res->volume, res->pg, res->why.msg);
        free(p);
        return;
    }
    if (res->rc == HX_OK) {
        Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
        Hexad__AppendAck ack = HEXAD__APPEND_ACK__INIT;
        ack.volume = res->volume;
        ack.pg = res->pg;
        ack.scl = res->scl;
        ack.max_lsn = res->max_lsn;
        env.req_id = p->req_id;
        env.body_case = HEXAD__ENVELOPE__BODY_APPEND_ACK;
        env.append_ack = &ack;
        send_env(sc, &env);
    } else {
        if (res->rc != HX_ERR_STALE_EPOCH)
            HX_DEBUG("append %" PRIu64 " refused: %s", p->req_id,
                     res->why.msg);
        send_error(sc, p->req_id, res->rc, res->why.msg,
                   res->why.current_epoch);
    }
    sc->awaiting--;
    free(p);
    srv_conn_release(sc);
}

/* One synced write for everything staged, then the acks. */
static void server_flush(storage_server *srv)
{
    if (segment_store_staged_count(srv->store) == 0)
        return;
    segment_store_flush(srv->store, append_done, srv);
}

static void bg_flush(void *arg)
{
    server_flush(arg);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    storage_server *srv = arg;
    srv->flush_scheduled = false;
    server_flush(srv);
}

static void handle_append(srv_conn *sc, uint64_t req_id,
                          const Hexad__AppendRecords *req)
{
    storage_server *srv = sc->srv;
    pending_ack *p = malloc(sizeof *p);
    int rc = p ? segment_store_stage_append(srv->store, req, p)
               : HX_ERR_NOMEM;
    if (rc != HX_OK) {
        free(p);
        send_error(sc, req_id, rc, "cannot stage the append", 0);
        return;
    }
    p->sc = sc;
    p->req_id = req_id;
    sc->awaiting++;
    if (segment_store_staged_bytes(srv->store) >=
        SEGMENT_STORE_STAGED_BYTES_MAX) {
        server_flush(srv); /* bound the batch's memory */
        return;
    }
    if (!srv->flush_scheduled) {
        srv->flush_scheduled = true;
        event_active(srv->flush_ev, EV_TIMEOUT, 0);
    }
}

/* ------------------------------------------------------------------------
 * Other requests.
 * ---------------------------------------------------------------------- */

static void handle_get_page(srv_conn *sc, uint64_t req_id,
                            const Hexad__GetPage *req)
{
    /* Epochs of reads (0: a probe, unchecked): an older one comes from a
     * fenced writer; a newer one means this node missed a recovery and may
     * still hold records its truncation drops, so the reader must go to a
     * segment that applied it. */
    uint64_t epoch = segment_store_volume_epoch(sc->srv->store, req->volume);
    if (req->volume_epoch != 0 && req->volume_epoch < epoch) {
        char msg[160];
        snprintf(msg, sizeof msg, "GetPage of volume %u with epoch %" PRIu64
                 " below this node's %" PRIu64 ": a newer writer owns it",
                 req->volume, req->volume_epoch, epoch);
        send_error(sc, req_id, HX_ERR_STALE_EPOCH, msg, epoch);
        return;
    }
    if (req->volume_epoch > epoch) {
        char msg[160];
        snprintf(msg, sizeof msg, "GetPage of volume %u with epoch %" PRIu64
                 " above this node's %" PRIu64 ": it missed a recovery; "
                 "read another segment", req->volume, req->volume_epoch,
                 epoch);
        send_error(sc, req_id, HX_ERR_NOT_COMPLETE, msg, 0);
        return;
    }
    uint8_t *page = NULL;
    size_t len = 0;
    uint64_t page_lsn = 0;
    segment_store_why why = {0};
    int rc = segment_store_get_page(sc->srv->store, req->volume, req->pg,
                                    req->page_no, req->read_lsn, &page, &len,
                                    &page_lsn, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, 0);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__PageData pd = HEXAD__PAGE_DATA__INIT;
    pd.volume = req->volume;
    pd.pg = req->pg;
    pd.page_no = req->page_no;
    pd.read_lsn = req->read_lsn;
    pd.page_lsn = page_lsn;
    pd.data.data = page;
    pd.data.len = len;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_PAGE;
    env.page = &pd;
    send_env(sc, &env);
    free(page);
}

static void handle_segment_info(srv_conn *sc, uint64_t req_id,
                                const Hexad__SegmentInfoRequest *req)
{
    server_flush(sc->srv);
    Hexad__SegmentInfoResponse *info = NULL;
    segment_store_why why = {0};
    int rc = segment_store_segment_info(sc->srv->store, req, &info, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, 0);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_SEGMENT_INFO;
    env.segment_info = info;
    send_env(sc, &env);
    segment_store_segment_info_free(info);
}

static void handle_seal(srv_conn *sc, uint64_t req_id,
                        const Hexad__SealEpoch *req)
{
    server_flush(sc->srv);
    uint64_t current = 0;
    segment_store_why why = {0};
    int rc = segment_store_seal_epoch(sc->srv->store, req->volume,
                                      req->new_epoch, &current, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, why.current_epoch);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__SealAck ack = HEXAD__SEAL_ACK__INIT;
    ack.volume = req->volume;
    ack.volume_epoch = current;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_SEAL_ACK;
    env.seal_ack = &ack;
    send_env(sc, &env);
}

static void handle_truncate(srv_conn *sc, uint64_t req_id,
                            const Hexad__Truncate *req)
{
    server_flush(sc->srv);
    uint64_t scl = 0;
    segment_store_why why = {0};
    int rc = segment_store_truncate(sc->srv->store, req->volume, req->pg,
                                    req->volume_epoch, req->from_lsn,
                                    req->to_lsn, &scl, &why);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, why.current_epoch);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__TruncateAck ack = HEXAD__TRUNCATE_ACK__INIT;
    ack.volume = req->volume;
    ack.pg = req->pg;
    ack.scl = scl;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_TRUNCATE_ACK;
    env.truncate_ack = &ack;
    send_env(sc, &env);
}

static void handle_pull(srv_conn *sc, uint64_t req_id,
                        const Hexad__PullRecords *req)
{
    Hexad__PulledRecords *p = NULL;
    segment_store_why why = {0};
    int rc = segment_store_read_chain(sc->srv->store, req->volume, req->pg,
                                      req->after_lsn, req->max_bytes, &p,
                                      &why);
    if (rc == HX_OK && (rc = segment_store_pulled_add_sync(
                            sc->srv->store, req->after_lsn, p)) != HX_OK) {
        segment_store_pulled_free(p);
        snprintf(why.msg, sizeof why.msg, "out of memory building the reply");
    }
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, why.msg, 0);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_PULLED;
    env.pulled = p;
    send_env(sc, &env);
    segment_store_pulled_free(p);
}

static void handle_list_segments(srv_conn *sc, uint64_t req_id,
                                 const Hexad__ListSegments *req)
{
    Hexad__SegmentList *l = NULL;
    int rc = segment_store_list_segments(sc->srv->store, req, &l);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, "cannot list the segments", 0);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_SEGMENT_LIST;
    env.segment_list = l;
    send_env(sc, &env);
    segment_store_segment_list_free(l);
}

int storage_server_status(storage_server *srv, Hexad__NodeStatus **out)
{
    Hexad__NodeStatus *st = NULL;
    int rc = segment_store_status(srv->store, &st);
    if (rc != HX_OK)
        return rc;
    const hx_node_counters *c = segment_store_counters(srv->store);
    st->node = srv->self.id;
    st->az = srv->self.az;
    st->uptime_ms = now_ms() - srv->started_ms;
    st->volume_epoch = segment_store_volume_epoch(srv->store, srv->volume);
    st->records_received = c->records_received;
    st->bytes_received = c->bytes_received;
    st->batches_synced = c->batches_synced;
    st->gossip_pulls = c->gossip_pulls;
    st->gossip_records = c->gossip_records;
    st->coalesce_passes = c->coalesce_passes;
    st->page_versions_written = c->page_versions_written;
    st->page_versions_superseded = c->page_versions_superseded;
    record_cache_stats rcs = segment_store_record_cache_stats(srv->store);
    st->record_cache_hits = rcs.hits;
    st->record_cache_misses = rcs.misses;
    st->record_cache_evicted = rcs.evicted;
    st->record_cache_bytes = rcs.bytes;
    segment_store_family_stats fr, fo;
    segment_store_families(srv->store, &fr, &fo);
    st->records_sst_bytes = fr.sst_bytes;
    st->records_l0_files = fr.l0_files;
    st->other_sst_bytes = fo.sst_bytes;
    st->other_l0_files = fo.l0_files;
    st->gc_passes = c->gc_passes;
    st->gc_records_removed = c->gc_records_removed;
    st->gc_page_versions_removed = c->gc_page_versions_removed;
    st->gc_bytes_removed = c->gc_bytes_removed;
    st->gc_compactions = c->gc_compactions;
    st->checkpoints = c->checkpoints;
    st->journal_used_bytes = segment_store_journal_used(srv->store);
    st->journal_bytes = segment_store_journal_bytes(srv->store);
    st->scrub_passes = c->scrub_passes;
    st->checksum_failures = c->checksum_failures;
    st->repairs = c->repairs;
    st->records_missing = c->records_missing;
    st->gossip_truncations = srv->gossip_truncations;
    st->gossip_epochs = srv->gossip_epochs;
    st->gossip_segments = srv->gossip_segments;
    st->wire_bytes_received = srv->wire_bytes_received;
    st->frame_bytes_received = srv->frame_bytes_received;
    *out = st;
    return HX_OK;
}

void storage_server_status_free(Hexad__NodeStatus *st)
{
    if (st == NULL)
        return;
    st->node = NULL; /* the server's, not the status's */
    st->az = NULL;
    segment_store_status_free(st);
}

static void handle_status(srv_conn *sc, uint64_t req_id)
{
    Hexad__NodeStatus *st = NULL;
    int rc = storage_server_status(sc->srv, &st);
    if (rc != HX_OK) {
        send_error(sc, req_id, rc, "cannot build the status", 0);
        return;
    }
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_STATUS;
    env.status = st;
    send_env(sc, &env);
    storage_server_status_free(st);
}

static const char *body_name(Hexad__Envelope__BodyCase b)
{
    switch (b) {
    case HEXAD__ENVELOPE__BODY__NOT_SET: return "an empty envelope";
    case HEXAD__ENVELOPE__BODY_APPEND: return "AppendRecords";
    case HEXAD__ENVELOPE__BODY_APPEND_ACK: return "AppendAck";
    case HEXAD__ENVELOPE__BODY_GET_PAGE: return "GetPage";
    case HEXAD__ENVELOPE__BODY_PAGE: return "PageData";
    case HEXAD__ENVELOPE__BODY_SEGMENT_INFO_REQ: return "SegmentInfoRequest";
    case HEXAD__ENVELOPE__BODY_SEGMENT_INFO: return "SegmentInfoResponse";
    case HEXAD__ENVELOPE__BODY_SEAL: return "SealEpoch";
    case HEXAD__ENVELOPE__BODY_SEAL_ACK: return "SealAck";
    case HEXAD__ENVELOPE__BODY_TRUNCATE: return "Truncate";
    case HEXAD__ENVELOPE__BODY_TRUNCATE_ACK: return "TruncateAck";
    case HEXAD__ENVELOPE__BODY_STATUS_REQ: return "NodeStatusRequest";
    case HEXAD__ENVELOPE__BODY_STATUS: return "NodeStatus";
    case HEXAD__ENVELOPE__BODY_PULL: return "PullRecords";
    case HEXAD__ENVELOPE__BODY_PULLED: return "PulledRecords";
    case HEXAD__ENVELOPE__BODY_LIST_SEGMENTS: return "ListSegments";
    case HEXAD__ENVELOPE__BODY_SEGMENT_LIST: return "SegmentList";
    case HEXAD__ENVELOPE__BODY_ERROR: return "Error";
    default: return "an unknown message";
    }
}


/* ------------------------------------------------------------------------
 * Gossip.
 * ---------------------------------------------------------------------- */

static size_t gseg_lower(const storage_server *srv, uint32_t vol, uint32_t pg)
{
    size_t lo = 0, hi = srv->n_gsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gseg *g = &srv->gsegs[mid];
        if (g->vol < vol || (g->vol == vol && g->pg < pg))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static gseg *gseg_find(storage_server *srv, uint32_t vol, uint32_t pg)
{
    size_t i = gseg_lower(srv, vol, pg);
    return i < srv->n_gsegs && srv->gsegs[i].vol == vol &&
                   srv->gsegs[i].pg == pg
               ? &srv->gsegs[i]
               : NULL;
}

/* Finds or adds; NULL when out of memory. Pointers into gsegs die on the
 * next add. */
static gseg *gseg_get(storage_server *srv, uint32_t vol, uint32_t pg)
{
    size_t i = gseg_lower(srv, vol, pg);
    if (i < srv->n_gsegs && srv->gsegs[i].vol == vol &&
        srv->gsegs[i].pg == pg)
        return &srv->gsegs[i];
    if (srv->n_gsegs == srv->cap_gsegs) {
        size_t ncap = srv->cap_gsegs ? srv->cap_gsegs * 2 : 16;
        gseg *ng = realloc(srv->gsegs, ncap * sizeof *ng);
        if (ng == NULL)
            return NULL;
        srv->gsegs = ng;
        srv->cap_gsegs = ncap;
    }
    memmove(&srv->gsegs[i + 1], &srv->gsegs[i],
            (srv->n_gsegs - i) * sizeof *srv->gsegs);
    srv->n_gsegs++;
    gseg *g = &srv->gsegs[i];
    memset(g, 0, sizeof *g);
    g->vol = vol;
    g->pg = pg;
    g->out_peer = -1;
    return g;
}

static int peer_index(const storage_server *srv, const char *id)
{
    for (size_t i = 0; i < srv->n_peers; i++)
        if (strcmp(srv->peers[i].id, id) == 0)
            return (int)i;
    return -1;
}

static void gossip_pull(storage_server *srv, gseg *g, int pi,
                        uint64_t after_lsn);

static void schedule_flush(storage_server *srv)
{
    if (segment_store_staged_bytes(srv->store) >=
        SEGMENT_STORE_STAGED_BYTES_MAX) {
        server_flush(srv);
    } else if (!srv->flush_scheduled) {
        srv->flush_scheduled = true;
        event_active(srv->flush_ev, EV_TIMEOUT, 0);
    }
}

typedef enum {
    ADOPT_STAGE,    /* nothing adopted that invalidates the records */
    ADOPT_REPULL,   /* a truncation lowered the SCL: pull again now */
    ADOPT_FAILED,   /* a synced write or memory failed: the next round retries */
} adopt_outcome;

/* Adopts what a reply says this node missed: the peer's higher volume
 * epoch, its truncation ranges ours do not cover (gossip.h
 * hx_gossip_plan_reply). after: the pull's after_lsn; the reply stays
 * usable when no range lowered our SCL below it. */
static adopt_outcome adopt_from_reply(storage_server *srv, gpeer *pr,
                                      const Hexad__PulledRecords *p,
                                      uint64_t after)
{
    /* Ours that reach above the pull's after_lsn: a peer range they
     * could cover reaches there too (segment_truncations.c invariant 3). */
    hx_lsn_range *own = NULL, *peer = NULL;
    size_t n_own = 0, n_peer = 0;
    if (segment_store_truncations(srv->store, p->volume, p->pg, after, &own,
                                  &n_own) != HX_OK ||
        (p->n_truncations > 0 &&
         (peer = malloc(p->n_truncations * sizeof *peer)) == NULL)) {
        free(own);
        HX_WARN("segment %u/%u: out of memory planning a reply of %s",
                p->volume, p->pg, pr->id);
        return ADOPT_FAILED;
    }
    for (size_t i = 0; i < p->n_truncations; i++)
        peer[n_peer++] = (hx_lsn_range){p->truncations[i]->from_lsn,
                                        p->truncations[i]->to_lsn,
                                        p->truncations[i]->epoch};
    hx_gossip_reply_plan plan;
    hx_gossip_plan_reply(segment_store_volume_epoch(srv->store, p->volume),
                         own, n_own, p->volume_epoch, peer, n_peer, &plan);
    free(own);
    free(peer);
    if (plan.adopt_epoch == 0 && plan.n_truncations == 0)
        return ADOPT_STAGE;
    server_flush(srv); /* seal and truncate order after what is staged */
    segment_store_why why = {0};
    if (plan.adopt_epoch != 0) {
        uint64_t cur = 0;
        int rc = segment_store_seal_epoch(srv->store, p->volume,
                                          plan.adopt_epoch, &cur, &why);
        if (rc != HX_OK) {
            HX_WARN("volume %u: epoch %" PRIu64 " of %s not adopted: %s",
                    p->volume, plan.adopt_epoch, pr->id, why.msg);
            return ADOPT_FAILED;
        }
        srv->gossip_epochs++;
        HX_INFO("volume %u: adopted epoch %" PRIu64 " from %s", p->volume,
                plan.adopt_epoch, pr->id);
    }
    for (size_t i = 0; i < plan.n_truncations; i++) {
        const hx_lsn_range *r = &plan.truncations[i];
        uint64_t scl = 0;
        int rc = segment_store_adopt_truncation(srv->store, p->volume, p->pg,
                                                r->epoch, r->from_lsn,
                                                r->to_lsn, &scl, &why);
        if (rc != HX_OK) {
            HX_WARN("segment %u/%u: truncation [%" PRIu64 ", %" PRIu64
                    "] of %s not adopted: %s", p->volume, p->pg, r->from_lsn,
                    r->to_lsn, pr->id, why.msg);
            return ADOPT_FAILED;
        }
        srv->gossip_truncations++;
        HX_INFO("segment %u/%u: adopted truncation [%" PRIu64 ", %" PRIu64
                "] at epoch %" PRIu64 " from %s; SCL now %" PRIu64, p->volume,
                p->pg, r->from_lsn, r->to_lsn, r->epoch, pr->id, scl);
    }
    if (plan.stage_records ||
        segment_store_scl(srv->store, p->volume, p->pg) >= after)
        return ADOPT_STAGE;
    return ADOPT_REPULL;
}

static void handle_pulled(storage_server *srv, gpeer *pr, uint64_t req_id,
                          const Hexad__PulledRecords *p)
{
    gseg *g = gseg_find(srv, p->volume, p->pg);
    int pi = (int)(pr - srv->peers);
    if (g == NULL || !g->outstanding || g->out_req_id != req_id)
        return; /* late reply of a pull given up on */
    g->outstanding = false;
    g->out_peer = -1;
    g->peer_scl[pi] = p->scl;
    g->peer_scl_ms[pi] = now_ms();
    switch (adopt_from_reply(srv, pr, p, g->out_after)) {
    case ADOPT_STAGE:
        break;
    case ADOPT_REPULL: /* cut for an SCL that no longer holds */
        if ((g = gseg_find(srv, p->volume, p->pg)) != NULL)
            gossip_pull(srv, g, pi,
                        segment_store_scl(srv->store, p->volume, p->pg));
        return;
    case ADOPT_FAILED:
        return;
    }
    if (p->n_records == 0)
        return;
    pending_ack *pa = calloc(1, sizeof *pa);
    int rc = pa ? segment_store_stage_pulled(srv->store, p, pa) : HX_ERR_NOMEM;
    if (rc != HX_OK) {
        free(pa);
        HX_DEBUG("segment %u/%u: pulled records not staged: %s", p->volume,
                 p->pg, hx_strerror(rc));
        return;
    }
    segment_store_counters_mut(srv->store)->gossip_pulls++;
    schedule_flush(srv);
    /* Stopped below the peer's SCL: more to pull, from the same peer. */
    uint64_t last = p->records[p->n_records - 1]->lsn;
    if (last < p->scl && (g = gseg_find(srv, p->volume, p->pg)) != NULL)
        gossip_pull(srv, g, pi, last);
}

static void peer_forget_pulls(storage_server *srv, int pi, uint64_t req_id,
                              bool all)
{
    for (size_t i = 0; i < srv->n_gsegs; i++) {
        gseg *g = &srv->gsegs[i];
        if (g->outstanding && g->out_peer == pi &&
            (all || g->out_req_id == req_id)) {
            g->outstanding = false;
            g->out_peer = -1;
        }
    }
}

static void gossip_list(storage_server *srv, gpeer *pr);

static void handle_segment_list(storage_server *srv, gpeer *pr,
                                uint64_t req_id, const Hexad__SegmentList *l)
{
    if (!pr->list_outstanding || pr->list_req_id != req_id)
        return;
    pr->list_outstanding = false;
    for (size_t i = 0; i < l->n_segments; i++) {
        pending_ack *pa = calloc(1, sizeof *pa);
        bool staged = false;
        int rc = pa ? segment_store_stage_learned(srv->store, l->segments[i],
                                                  pa, &staged)
                    : HX_ERR_NOMEM;
        if (!staged) {
            free(pa);
            if (rc != HX_OK)
                HX_DEBUG("segment %u/%u listed by %s not learned: %s",
                         l->segments[i]->volume, l->segments[i]->pg, pr->id,
                         hx_strerror(rc));
            continue;
        }
        pa->learned = true;
        schedule_flush(srv);
    }
    pr->list_next_key = l->next_key;
    if (l->next_key != 0)
        gossip_list(srv, pr); /* the rest of a long list, at once */
}

static void peer_on_frame(hx_conn *c, const Hexad__Envelope *env, void *arg)
{
    (void)c;
    gpeer *pr = arg;
    storage_server *srv = pr->srv;
    int pi = (int)(pr - srv->peers);
    switch (env->body_case) {
    case HEXAD__ENVELOPE__BODY_PULLED:
        handle_pulled(srv, pr, env->req_id, env->pulled);
        break;
    case HEXAD__ENVELOPE__BODY_SEGMENT_LIST:
        handle_segment_list(srv, pr, env->req_id, env->segment_list);
        break;
    case HEXAD__ENVELOPE__BODY_ERROR:
        HX_DEBUG("request %" PRIu64 " refused by %s: %s", env->req_id,
                 pr->id, env->error->message);
        if (pr->list_outstanding && pr->list_req_id == env->req_id)
            pr->list_outstanding = false;
        else
            peer_forget_pulls(srv, pi, env->req_id, false);
        break;
    default:
        break;
    }
}

static void peer_on_connected(hx_conn *c, void *arg)
{
    (void)c;
    gpeer *pr = arg;
    pr->backoff_ms = 0;
    HX_DEBUG("gossip: connected to %s", pr->id);
}

static void peer_on_close(hx_conn *c, int err, const char *reason, void *arg)
{
    (void)c;
    (void)err;
    (void)reason;
    gpeer *pr = arg;
    storage_server *srv = pr->srv;
    pr->conn = NULL;
    pr->backoff_ms = pr->backoff_ms == 0 ? GOSSIP_BACKOFF_MIN_MS
                     : pr->backoff_ms * 2 > GOSSIP_BACKOFF_MAX_MS
                         ? GOSSIP_BACKOFF_MAX_MS
                         : pr->backoff_ms * 2;
    pr->next_try_ms = now_ms() + pr->backoff_ms;
    pr->list_outstanding = false;
    peer_forget_pulls(srv, (int)(pr - srv->peers), 0, true);
}

/* The peer's connection, opened when missing and its backoff is over;
 * NULL otherwise. */
static hx_conn *peer_conn(storage_server *srv, gpeer *pr)
{
    if (pr->conn != NULL || srv->closing)
        return pr->conn;
    if (now_ms() < pr->next_try_ms)
        return NULL;
    hx_conn_opts opts = {
        .frame_max_bytes = 0,
        .pause_reads_over_bytes = 0,
    };
    hx_conn_cbs cbs = {.on_frame = peer_on_frame,
                       .on_connected = peer_on_connected,
                       .on_close = peer_on_close};
    char name[HX_ID_MAX + 16];
    snprintf(name, sizeof name, "gossip:%s", pr->id);
    pr->conn = hx_conn_connect(srv->base, pr->host, pr->port, name, &opts,
                               &cbs, pr);
    if (pr->conn == NULL) {
        pr->backoff_ms = GOSSIP_BACKOFF_MAX_MS;
        pr->next_try_ms = now_ms() + pr->backoff_ms;
    }
    return pr->conn;
}

static void gossip_pull(storage_server *srv, gseg *g, int pi,
                        uint64_t after_lsn)
{
    gpeer *pr = &srv->peers[pi];
    hx_conn *c = peer_conn(srv, pr);
    if (c == NULL)
        return;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__PullRecords req = HEXAD__PULL_RECORDS__INIT;
    req.volume = g->vol;
    req.pg = g->pg;
    req.after_lsn = after_lsn;
    req.max_bytes = SEGMENT_STORE_PULL_BYTES_MAX;
    env.req_id = ++srv->next_req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_PULL;
    env.pull = &req;
    /* May close c (and run peer_on_close) on a send error. */
    if (hx_conn_send(c, &env) != HX_OK)
        return;
    g->outstanding = true;
    g->out_peer = pi;
    g->out_req_id = env.req_id;
    g->out_since_ms = now_ms();
    g->out_after = after_lsn;
}

/* Asks pr which segments we should hold (handle_segment_list). */
static void gossip_list(storage_server *srv, gpeer *pr)
{
    hx_conn *c = peer_conn(srv, pr);
    if (c == NULL)
        return;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__ListSegments req = HEXAD__LIST_SEGMENTS__INIT;
    req.node = srv->self.id;
    req.start_key = pr->list_next_key;
    env.req_id = ++srv->next_req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_LIST_SEGMENTS;
    env.list_segments = &req;
    if (hx_conn_send(c, &env) != HX_OK)
        return;
    pr->list_outstanding = true;
    pr->list_req_id = env.req_id;
    pr->list_since_ms = now_ms();
}

static bool peer_usable(const gpeer *pr, uint64_t now)
{
    return pr->conn != NULL || now >= pr->next_try_ms;
}

/* One peer per GOSSIP_LIST_INTERVAL_MS, round robin over the usable. */
static void gossip_list_tick(storage_server *srv, uint64_t now)
{
    if (srv->n_peers == 0 || now < srv->next_list_ms)
        return;
    srv->next_list_ms = now + GOSSIP_LIST_INTERVAL_MS;
    for (size_t k = 0; k < srv->n_peers; k++) {
        gpeer *pr = &srv->peers[srv->list_rr++ % srv->n_peers];
        if (pr->list_outstanding &&
            now - pr->list_since_ms >= GOSSIP_PULL_TIMEOUT_MS)
            pr->list_outstanding = false; /* given up on */
        if (pr->list_outstanding || !peer_usable(pr, now))
            continue;
        gossip_list(srv, pr);
        return;
    }
}

static void gossip_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    storage_server *srv = arg;
    uint64_t now = now_ms();
    size_t n = segment_store_segment_count(srv->store);
    for (size_t i = 0; i < n; i++) {
        segment_store_seg_view sv;
        segment_store_segment_at(srv->store, i, &sv);
        if (sv.n_members == 0)
            continue;
        gseg *g = gseg_get(srv, sv.volume, sv.pg);
        if (g == NULL)
            break;
        if (g->outstanding) {
            if (now - g->out_since_ms < GOSSIP_PULL_TIMEOUT_MS)
                continue;
            g->outstanding = false; /* given up on; a late reply is dropped */
            g->out_peer = -1;
        }
        hx_gossip_peer view[HX_PG_MEMBERS] = {{0}};
        int pidx[HX_PG_MEMBERS];
        for (size_t m = 0; m < sv.n_members; m++) {
            int pi = strcmp(sv.members[m], srv->self.id) == 0
                         ? -1
                         : peer_index(srv, sv.members[m]);
            pidx[m] = pi;
            if (pi < 0)
                continue; /* self, or not in the cluster file */
            view[m].usable = peer_usable(&srv->peers[pi], now);
            view[m].scl_known = g->peer_scl_ms[pi] != 0;
            view[m].scl = g->peer_scl[pi];
            view[m].scl_age_ms = now - g->peer_scl_ms[pi];
        }
        int k = hx_gossip_pick_peer(view, sv.n_members, sv.scl, &g->rr);
        if (k >= 0)
            gossip_pull(srv, g, pidx[k], sv.scl);
    }
    gossip_list_tick(srv, now);
}

/* ------------------------------------------------------------------------
 * Connections.
 * ---------------------------------------------------------------------- */

static void on_frame(hx_conn *c, const Hexad__Envelope *env, void *arg)
{
    srv_conn *sc = arg;
    hx_frame_sizes sz = hx_conn_frame_sizes(c);
    sc->srv->wire_bytes_received += sz.wire;
    sc->srv->frame_bytes_received += HX_FRAME_HEADER_BYTES + sz.body;
    switch (env->body_case) {
    case HEXAD__ENVELOPE__BODY_APPEND:
        handle_append(sc, env->req_id, env->append);
        break;
    case HEXAD__ENVELOPE__BODY_GET_PAGE:
        handle_get_page(sc, env->req_id, env->get_page);
        break;
    case HEXAD__ENVELOPE__BODY_SEGMENT_INFO_REQ:
        handle_segment_info(sc, env->req_id, env->segment_info_req);
        break;
    case HEXAD__ENVELOPE__BODY_SEAL:
        handle_seal(sc, env->req_id, env->seal);
        break;
    case HEXAD__ENVELOPE__BODY_TRUNCATE:
        handle_truncate(sc, env->req_id, env->truncate);
        break;
    case HEXAD__ENVELOPE__BODY_STATUS_REQ:
        handle_status(sc, env->req_id);
        break;
    case HEXAD__ENVELOPE__BODY_PULL:
        handle_pull(sc, env->req_id, env->pull);
        break;
    case HEXAD__ENVELOPE__BODY_LIST_SEGMENTS:
        handle_list_segments(sc, env->req_id, env->list_segments);
        break;
    default: {
        char msg[128];
        snprintf(msg, sizeof msg, "a storage node does not accept %s",
                 body_name(env->body_case));
        HX_WARN("%s: %s (request %" PRIu64 ")", hx_conn_peer(sc->conn), msg,
                env->req_id);
        send_error(sc, env->req_id, HX_ERR_PROTOCOL, msg, 0);
        break;
    }
    }
}

static void on_close(hx_conn *c, int err, const char *reason, void *arg)
{
    (void)c;
    (void)err;
    (void)reason; /* hx_conn logged it */
    srv_conn *sc = arg;
    storage_server *srv = sc->srv;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        srv->conns = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    srv->n_conns--;
    sc->conn = NULL;
    srv_conn_release(sc);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *addr, int socklen, void *arg)
{
    (void)l;
    (void)socklen;
    storage_server *srv = arg;
    char host[64] = "?", peer[96];
    uint16_t port = 0;
    if (addr->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)addr;
        evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (addr->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(peer, sizeof peer, "%s:%u", host, port);
    if (srv->n_conns >= SERVER_CONNS_MAX) {
        HX_WARN("refusing connection from %s: %d connections open", peer,
                SERVER_CONNS_MAX);
        evutil_closesocket(fd);
        return;
    }
    srv_conn *sc = calloc(1, sizeof *sc);
    if (sc == NULL) {
        evutil_closesocket(fd);
        return;
    }
    sc->srv = srv;
    hx_conn_opts opts = {
        .frame_max_bytes = 0,
        .pause_reads_over_bytes = STORAGE_SERVER_PAUSE_READS_BYTES,
    };
    hx_conn_cbs cbs = {.on_frame = on_frame, .on_close = on_close};
    sc->conn = hx_conn_accept(srv->base, fd, peer, &opts, &cbs, sc);
    if (sc->conn == NULL) {
        HX_WARN("cannot set up connection from %s", peer);
        free(sc);
        return;
    }
    sc->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = sc;
    srv->conns = sc;
    srv->n_conns++;
    HX_DEBUG("connection from %s", peer);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    HX_WARN("accept failed: %s", evutil_socket_error_to_string(e));
}

/* ------------------------------------------------------------------------
 * Lifecycle.
 * ---------------------------------------------------------------------- */

int storage_server_create(struct event_base *base,
                          const hx_cluster_cfg *cluster,
                          const hx_storage_cfg *self, storage_server **out,
                          char *err, size_t err_len)
{
    int rc = HX_OK;
    struct evutil_addrinfo *res = NULL;
    storage_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    srv->base = base;
    srv->self = *self;
    srv->volume = cluster->volume;
    srv->started_ms = now_ms();
    srv->flush_ev = event_new(base, -1, 0, flush_cb, srv);
    srv->gossip_ev = event_new(base, -1, EV_PERSIST, gossip_cb, srv);
    if (srv->flush_ev == NULL || srv->gossip_ev == NULL) {
        snprintf(err, err_len, "cannot create the flush or gossip event");
        rc = HX_ERR_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cluster->n_storage; i++) {
        const hx_storage_cfg *sc = &cluster->storage[i];
        if (strcmp(sc->id, self->id) == 0)
            continue;
        gpeer *pr = &srv->peers[srv->n_peers++];
        pr->srv = srv;
        snprintf(pr->id, sizeof pr->id, "%s", sc->id);
        snprintf(pr->host, sizeof pr->host, "%s", sc->host);
        pr->port = sc->port;
    }

    segment_store_why why = {0};
    segment_store_options o = {
        .journal_bytes = self->journal_mib << 20,
        .record_cache_bytes = self->record_cache_mib << 20};
    rc = segment_store_open(self->data_dir, self->id, &o, &srv->store, &why);
    if (rc != HX_OK) {
        snprintf(err, err_len, "cannot open the segment store in %s: %s",
                 self->data_dir, why.msg[0] ? why.msg : hx_strerror(rc));
        goto fail;
    }

    struct evutil_addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", self->port);
    int gai = evutil_getaddrinfo(self->host, portstr, &hints, &res);
    if (gai != 0 || res == NULL) {
        snprintf(err, err_len, "cannot resolve listen address %s: %s",
                 self->addr, evutil_gai_strerror(gai));
        rc = HX_ERR_CONFIG;
        goto fail;
    }
    srv->listener = evconnlistener_new_bind(
        base, accept_cb, srv, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, -1,
        res->ai_addr, (int)res->ai_addrlen);
    if (srv->listener == NULL) {
        int e = EVUTIL_SOCKET_ERROR();
        snprintf(err, err_len, "cannot listen on %s: %s%s", self->addr,
                 evutil_socket_error_to_string(e),
                 e == EADDRINUSE ? " (another process holds the port)" : "");
        rc = HX_ERR_IO;
        goto fail;
    }
    evconnlistener_set_error_cb(srv->listener, accept_error_cb);
    evutil_freeaddrinfo(res);
    res = NULL;
    rc = storage_bg_create(base, srv->store, cluster, self->id, bg_flush,
                           srv, &srv->bg);
    if (rc != HX_OK) {
        snprintf(err, err_len, "cannot start the background work: %s",
                 hx_strerror(rc));
        goto fail;
    }
    struct timeval tv = {0, GOSSIP_INTERVAL_MS * 1000};
    event_add(srv->gossip_ev, &tv);
    *out = srv;
    return HX_OK;

fail:
    if (res)
        evutil_freeaddrinfo(res);
    storage_server_destroy(srv);
    return rc;
}

void storage_server_destroy(storage_server *srv)
{
    if (srv == NULL)
        return;
    srv->closing = true;
    storage_bg_destroy(srv->bg);
    if (srv->gossip_ev)
        event_free(srv->gossip_ev);
    for (size_t i = 0; i < srv->n_peers; i++)
        if (srv->peers[i].conn)
            hx_conn_close(srv->peers[i].conn, "server shutting down");
    if (srv->listener)
        evconnlistener_free(srv->listener);
    /* Staged appends become durable and their acks are queued; whether
     * they reach the client before the sockets close is best effort. */
    if (srv->store)
        server_flush(srv);
    while (srv->conns != NULL)
        hx_conn_close(srv->conns->conn, "server shutting down");
    segment_store_close(srv->store);
    if (srv->flush_ev)
        event_free(srv->flush_ev);
    free(srv->gsegs);
    free(srv);
}
