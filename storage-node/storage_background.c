/* The background work of a storage node (storage_background.h).
 *
 * Every BG_TICK_MS: the server's staged appends are flushed (the store
 * refuses background work while any are staged), a scrub step (smaller
 * while writers append: storage_bg_scrub_items), and one repair request
 * per wanted item not already asked for (at most REPAIR_INFLIGHT_MAX
 * outstanding); every BG_SLOW_TICKS ticks also a GC pass, and a
 * coalescing pass then or whenever coalescing lags
 * (storage_bg_coalesce_due), followed by more passes COALESCE_GAP_MS
 * apart while it still lags. Each step is bounded (the *_PER_* limits),
 * so a tick never holds the loop long.
 *
 * The startup check. After an unclean stop the store's segments refuse
 * reads until the scrub's first pass has walked their records
 * (segment_verify.c). That pass then runs at full speed from the first
 * loop iteration, load or not: scrub steps of STORAGE_BG_VERIFY_ITEMS
 * back to back, each a timer of 0 s, so the loop's I/O (appends, reads of
 * the segments already verified) runs between two steps. It ends with
 * one INFO line: segments, records walked, time taken. Meanwhile
 * coalescing passes come only with the ticks, not back to back.
 *
 * Repair. A corrupt record is asked of a segment member other than self
 * with PullRecords{after_lsn: lsn - 1, max_bytes: 1} (the reply starts at
 * lsn), a corrupt page version with GetPage{page_no, read_lsn: its lsn};
 * the store verifies the copy before it rewrites anything. Members are
 * tried round robin across attempts; a request with no reply after
 * REPAIR_TIMEOUT_MS, or answered with an Error, is asked again of the next
 * member on a later tick.
 */
#include "storage_background.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "hx_err.h"
#include "log.h"

#define BG_TICK_MS 250
#define BG_SLOW_TICKS 4
/* Small passes: one holds the node's appends while it runs, so while
 * coalescing lags, passes follow each other COALESCE_GAP_MS apart with the
 * loop's I/O in between instead of one long pass per tick. */
#define COALESCE_RECORDS_PER_PASS 2048u
#define COALESCE_GAP_MS 1
#define GC_PAGES_PER_PASS 4096u
#define REPAIR_INFLIGHT_MAX 32u
#define REPAIR_TIMEOUT_MS 5000u
#define PEER_BACKOFF_MS 1000u

typedef struct {
    storage_bg *bg;
    char id[HX_ID_MAX];
    char host[96];
    uint16_t port;
    hx_conn *conn;
    uint64_t next_try_ms;
} bg_peer;

typedef struct {
    uint64_t req_id;
    segment_store_repair want;
    uint64_t since_ms;
    size_t peer;           /* index in peers */
} bg_inflight;

struct storage_bg {
    struct event_base *base;
    segment_store *store;
    char self[HX_ID_MAX];
    struct event *tick_ev;
    struct event *coalesce_ev; /* pending: more passes wanted */
    struct event *verify_ev;   /* pending: the startup check runs */
    uint64_t verify_since_ms;  /* when it started */
    size_t verify_segments;    /* unverified then */
    unsigned ticks;
    bg_peer peers[HX_MAX_STORAGE_NODES];
    size_t n_peers;
    bg_inflight inflight[REPAIR_INFLIGHT_MAX];
    size_t n_inflight;
    uint64_t next_req_id;
    unsigned attempt;      /* round robin over members */
    storage_bg_flush_fn flush;
    void *flush_arg;
    uint64_t fg_records;   /* records_received at the previous tick */
    bool closing;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- peer connections --------------------------------------------------- */

static size_t inflight_find(const storage_bg *bg, uint64_t req_id)
{
    for (size_t i = 0; i < bg->n_inflight; i++)
        if (bg->inflight[i].req_id == req_id)
            return i;
    return SIZE_MAX;
}

static void inflight_remove(storage_bg *bg, size_t i)
{
    bg->inflight[i] = bg->inflight[--bg->n_inflight];
}

static void on_repair_reply(storage_bg *bg, const Hexad__Envelope *env,
                            const char *peer)
{
    size_t i = inflight_find(bg, env->req_id);
    if (i == SIZE_MAX)
        return; /* given up on */
    segment_store_repair w = bg->inflight[i].want;
    inflight_remove(bg, i);
    segment_store_why why = {0};
    int rc = HX_ERR_PROTOCOL;
    if (env->body_case == HEXAD__ENVELOPE__BODY_PULLED &&
        w.kind != SEGMENT_STORE_REPAIR_VERSION) {
        const Hexad__PulledRecords *p = env->pulled;
        for (size_t j = 0; j < p->n_records; j++)
            if (p->records[j]->lsn == w.lsn)
                rc = segment_store_repair_record(bg->store, w.volume, w.pg,
                                                 p->records[j], &why);
        if (rc == HX_ERR_PROTOCOL)
            snprintf(why.msg, sizeof why.msg, "the reply lacks record %"
                     PRIu64 " (the peer's SCL is %" PRIu64 ")", w.lsn, p->scl);
    } else if (env->body_case == HEXAD__ENVELOPE__BODY_PAGE &&
               w.kind == SEGMENT_STORE_REPAIR_VERSION) {
        const Hexad__PageData *pd = env->page;
        if (pd->page_lsn == w.lsn)
            rc = segment_store_repair_version(bg->store, w.volume, w.pg,
                                              w.page_no, pd->page_lsn,
                                              pd->data.data, pd->data.len,
                                              &why);
        else
            snprintf(why.msg, sizeof why.msg, "the peer's page is as of %"
                     PRIu64 ", the version is at %" PRIu64, pd->page_lsn,
                     w.lsn);
    } else if (env->body_case == HEXAD__ENVELOPE__BODY_ERROR) {
        snprintf(why.msg, sizeof why.msg, "%s", env->error->message);
    }
    if (rc != HX_OK)
        HX_WARN("repair of %u/%u %s %" PRIu64 " from %s failed: %s; another "
                "member is asked next", w.volume, w.pg,
                w.kind == SEGMENT_STORE_REPAIR_VERSION ? "version at"
                : w.kind == SEGMENT_STORE_REPAIR_MISSING ? "missing record"
                                                         : "record",
                w.lsn, peer, why.msg);
}

static void peer_on_frame(hx_conn *c, const Hexad__Envelope *env, void *arg)
{
    (void)c;
    bg_peer *pr = arg;
    on_repair_reply(pr->bg, env, pr->id);
}

static void peer_on_close(hx_conn *c, int err, const char *reason, void *arg)
{
    (void)c;
    (void)err;
    (void)reason;
    bg_peer *pr = arg;
    storage_bg *bg = pr->bg;
    pr->conn = NULL;
    pr->next_try_ms = now_ms() + PEER_BACKOFF_MS;
    /* Its requests get no reply now: they are asked again elsewhere. */
    size_t pi = (size_t)(pr - bg->peers);
    for (size_t i = 0; i < bg->n_inflight;) {
        if (bg->inflight[i].peer == pi)
            inflight_remove(bg, i);
        else
            i++;
    }
}

static hx_conn *peer_conn(storage_bg *bg, bg_peer *pr)
{
    if (pr->conn != NULL || bg->closing || now_ms() < pr->next_try_ms)
        return pr->conn;
    hx_conn_opts opts = {0};
    hx_conn_cbs cbs = {.on_frame = peer_on_frame, .on_close = peer_on_close};
    char name[HX_ID_MAX + 16];
    snprintf(name, sizeof name, "repair:%s", pr->id);
    pr->conn = hx_conn_connect(bg->base, pr->host, pr->port, name, &opts,
                               &cbs, pr);
    if (pr->conn == NULL)
        pr->next_try_ms = now_ms() + PEER_BACKOFF_MS;
    return pr->conn;
}

/* ---- repair requests ---------------------------------------------------- */

static bool inflight_has(const storage_bg *bg, const segment_store_repair *w)
{
    for (size_t i = 0; i < bg->n_inflight; i++) {
        const segment_store_repair *o = &bg->inflight[i].want;
        if (o->kind == w->kind && o->volume == w->volume && o->pg == w->pg &&
            o->page_no == w->page_no && o->lsn == w->lsn)
            return true;
    }
    return false;
}

/* The next member of w's segment other than self that we know, or -1. */
static int pick_peer(storage_bg *bg, const segment_store_repair *w)
{
    size_t n = segment_store_segment_count(bg->store);
    for (size_t i = 0; i < n; i++) {
        segment_store_seg_view sv;
        segment_store_segment_at(bg->store, i, &sv);
        if (sv.volume != w->volume || sv.pg != w->pg)
            continue;
        for (size_t t = 0; t < sv.n_members; t++) {
            const char *m = sv.members[bg->attempt++ % sv.n_members];
            if (strcmp(m, bg->self) == 0)
                continue;
            for (size_t p = 0; p < bg->n_peers; p++)
                if (strcmp(bg->peers[p].id, m) == 0)
                    return (int)p;
        }
        return -1;
    }
    return -1;
}

static void ask_repair(storage_bg *bg, const segment_store_repair *w)
{
    int pi = pick_peer(bg, w);
    if (pi < 0)
        return;
    hx_conn *c = peer_conn(bg, &bg->peers[pi]);
    if (c == NULL)
        return;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    Hexad__PullRecords pull = HEXAD__PULL_RECORDS__INIT;
    Hexad__GetPage gp = HEXAD__GET_PAGE__INIT;
    env.req_id = ++bg->next_req_id;
    if (w->kind != SEGMENT_STORE_REPAIR_VERSION) {
        pull.volume = w->volume;
        pull.pg = w->pg;
        pull.after_lsn = w->lsn - 1;
        pull.max_bytes = 1; /* at least one record: the one wanted */
        env.body_case = HEXAD__ENVELOPE__BODY_PULL;
        env.pull = &pull;
    } else {
        gp.volume = w->volume;
        gp.pg = w->pg;
        gp.page_no = w->page_no;
        gp.read_lsn = w->lsn;
        gp.volume_epoch = segment_store_volume_epoch(bg->store, w->volume);
        env.body_case = HEXAD__ENVELOPE__BODY_GET_PAGE;
        env.get_page = &gp;
    }
    /* A send error closes c, and peer_on_close forgets its requests. */
    if (hx_conn_send(c, &env) != HX_OK)
        return;
    bg->inflight[bg->n_inflight++] =
        (bg_inflight){env.req_id, *w, now_ms(), (size_t)pi};
}

static void repair_step(storage_bg *bg)
{
    uint64_t now = now_ms();
    for (size_t i = 0; i < bg->n_inflight;) {
        if (now - bg->inflight[i].since_ms >= REPAIR_TIMEOUT_MS)
            inflight_remove(bg, i); /* a late reply is dropped */
        else
            i++;
    }
    size_t n = segment_store_repair_count(bg->store);
    for (size_t i = 0; i < n && bg->n_inflight < REPAIR_INFLIGHT_MAX; i++) {
        segment_store_repair w;
        segment_store_repair_at(bg->store, i, &w);
        if (!inflight_has(bg, &w))
            ask_repair(bg, &w);
    }
}

/* ---- the tick ----------------------------------------------------------- */

bool storage_bg_coalesce_due(bool slow_tick, uint64_t lag_lsns)
{
    return slow_tick || lag_lsns >= STORAGE_BG_COALESCE_BEHIND_LSNS;
}

unsigned storage_bg_scrub_items(uint64_t fg_records_since_tick)
{
    return fg_records_since_tick > 0 ? STORAGE_BG_SCRUB_BUSY_ITEMS
                                     : STORAGE_BG_SCRUB_IDLE_ITEMS;
}

/* One coalescing pass; another one soon while coalescing still lags. */
static void coalesce_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    storage_bg *bg = arg;
    segment_store_why why = {0};
    bg->flush(bg->flush_arg);
    uint64_t before = segment_store_coalesced_sum(bg->store);
    int rc = segment_store_coalesce(bg->store, COALESCE_RECORDS_PER_PASS,
                                    NULL, &why);
    if (rc != HX_OK && rc != HX_ERR_BUSY)
        HX_WARN("coalescing stopped: %s (%s)", why.msg, hx_strerror(rc));
    /* Again soon only while passes gain: a lag that a pass cannot reduce
     * (a record awaiting repair) waits for the ticks instead of spinning.
     * And not while the startup check runs: reads of whole PGs may wait
     * for it, and a pass holds the loop far longer than one of its
     * steps. */
    if (rc == HX_OK && segment_store_coalesced_sum(bg->store) != before &&
        !event_pending(bg->verify_ev, EV_TIMEOUT, NULL) &&
        storage_bg_coalesce_due(false, segment_store_coalesce_lag(bg->store))) {
        struct timeval gap = {0, COALESCE_GAP_MS * 1000};
        event_add(bg->coalesce_ev, &gap);
    }
}

/* One step of the startup check; the next one at once until every
 * segment is verified. */
static void verify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    storage_bg *bg = arg;
    segment_store_why why = {0};
    bg->flush(bg->flush_arg);
    int rc = segment_store_scrub(bg->store, STORAGE_BG_VERIFY_ITEMS, &why);
    if (rc != HX_OK)
        HX_WARN("startup chain check: scrub failed: %s (%s); retrying in "
                "%d ms", why.msg, hx_strerror(rc), BG_TICK_MS);
    if (segment_store_segments_unverified(bg->store) > 0) {
        struct timeval next = {0, rc == HX_OK ? 0 : BG_TICK_MS * 1000};
        event_add(bg->verify_ev, &next);
        return;
    }
    uint64_t ms = now_ms() - bg->verify_since_ms;
    uint64_t records = segment_store_verify_records(bg->store);
    const hx_node_counters *c = segment_store_counters(bg->store);
    HX_INFO("startup chain check done: %zu segment(s), %" PRIu64 " records "
            "walked in %" PRIu64 " ms (%" PRIu64 " records/s); %" PRIu64
            " missing, %" PRIu64 " corrupt; every segment serves reads",
            bg->verify_segments, records, ms,
            records * 1000 / (ms ? ms : 1), c->records_missing,
            c->checksum_failures);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    storage_bg *bg = arg;
    segment_store_why why = {0};
    int rc;
    bg->flush(bg->flush_arg);
    bool slow = ++bg->ticks % BG_SLOW_TICKS == 0;
    if (!event_pending(bg->coalesce_ev, EV_TIMEOUT, NULL) &&
        storage_bg_coalesce_due(slow, segment_store_coalesce_lag(bg->store)))
        coalesce_cb(-1, 0, bg);
    if (slow) {
        rc = segment_store_gc(bg->store, now_ms(), GC_PAGES_PER_PASS, &why);
        if (rc != HX_OK && rc != HX_ERR_BUSY)
            HX_WARN("garbage collection stopped: %s (%s)", why.msg,
                    hx_strerror(rc));
    }
    uint64_t fg = segment_store_counters(bg->store)->records_received;
    rc = segment_store_scrub(bg->store,
                             storage_bg_scrub_items(fg - bg->fg_records), &why);
    bg->fg_records = fg;
    if (rc != HX_OK)
        HX_WARN("scrub stopped: %s (%s)", why.msg, hx_strerror(rc));
    repair_step(bg);
}

int storage_bg_create(struct event_base *base, segment_store *store,
                      const hx_cluster_cfg *cluster, const char *self_id,
                      storage_bg_flush_fn flush, void *flush_arg,
                      storage_bg **out)
{
    storage_bg *bg = calloc(1, sizeof *bg);
    if (bg == NULL)
        return HX_ERR_NOMEM;
    bg->base = base;
    bg->store = store;
    bg->flush = flush;
    bg->flush_arg = flush_arg;
    snprintf(bg->self, sizeof bg->self, "%s", self_id);
    for (size_t i = 0; i < cluster->n_storage; i++) {
        const hx_storage_cfg *sc = &cluster->storage[i];
        if (strcmp(sc->id, self_id) == 0)
            continue;
        bg_peer *pr = &bg->peers[bg->n_peers++];
        pr->bg = bg;
        snprintf(pr->id, sizeof pr->id, "%s", sc->id);
        snprintf(pr->host, sizeof pr->host, "%s", sc->host);
        pr->port = sc->port;
    }
    segment_store_set_retention(store, cluster->retention_s * 1000u);
    bg->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, bg);
    bg->coalesce_ev = evtimer_new(base, coalesce_cb, bg);
    bg->verify_ev = evtimer_new(base, verify_cb, bg);
    if (bg->tick_ev == NULL || bg->coalesce_ev == NULL ||
        bg->verify_ev == NULL) {
        if (bg->tick_ev != NULL)
            event_free(bg->tick_ev);
        if (bg->coalesce_ev != NULL)
            event_free(bg->coalesce_ev);
        if (bg->verify_ev != NULL)
            event_free(bg->verify_ev);
        free(bg);
        return HX_ERR_IO;
    }
    struct timeval tv = {0, BG_TICK_MS * 1000};
    event_add(bg->tick_ev, &tv);
    bg->verify_segments = segment_store_segments_unverified(store);
    if (bg->verify_segments > 0) {
        struct timeval now = {0, 0};
        bg->verify_since_ms = now_ms();
        event_add(bg->verify_ev, &now);
    }
    *out = bg;
    return HX_OK;
}

void storage_bg_destroy(storage_bg *bg)
{
    if (bg == NULL)
        return;
    bg->closing = true;
    event_free(bg->tick_ev);
    event_free(bg->coalesce_ev);
    event_free(bg->verify_ev);
    for (size_t i = 0; i < bg->n_peers; i++)
        if (bg->peers[i].conn != NULL)
            hx_conn_close(bg->peers[i].conn, "node stopping");
    free(bg);
}
