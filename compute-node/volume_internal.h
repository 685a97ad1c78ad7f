/* Internals shared by the volume client's files (volume_client.c: loop,
 * connections, shipping and acks; volume_rpc.c: requests and replies;
 * volume_open.c: recovery; volume_status.c: status). Not a public API.
 *
 * Locking: `mu` guards every field below except those marked (loop), which
 * only the loop thread touches (the members' sent_lsn and inflight, which
 * hx_volume_metrics_get reads, it changes only under `mu` as well). API
 * threads never call into libevent: they
 * queue work under `mu` and activate `kick_ev`, which is safe from any
 * thread because evthread_use_pthreads() runs before the base exists.
 */
#ifndef HX_VOLUME_INTERNAL_H
#define HX_VOLUME_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "conn.h"
#include "quorum.h"
#include "recovery.h"
#include "boxcar.h"
#include "volume_client.h"

/* A record shipped to the six segments of its PG, kept until all six
 * acknowledged it (or the ring's cap pushes out a durable one). Built once,
 * sent as many times as members need it. */
typedef struct vc_rec {
    uint64_t lsn;
    size_t bytes;
    Hexad__Record rec;
    Hexad__Patch *patch_ptrs[]; /* followed by the patches and their data */
} vc_rec;

/* Appends (or the truncation) in flight per (PG, member): enough to keep
 * a member busy while the last ack travels, few enough that a slow member
 * is sent large batches rather than many small ones. */
#define VC_INFLIGHT_MAX 2

typedef struct {
    int node;              /* index into vc->nodes */
    uint64_t sent_lsn;     /* (loop) highest LSN sent on this connection */
    int inflight;          /* (loop) appends awaiting an ack */
    /* (loop) When each of them was sent (0: not timed), oldest first: a
     * member answers its requests in order (an error closes the
     * connection). */
    uint64_t sent_ns[VC_INFLIGHT_MAX];
    /* The recovery truncation is not acked yet: no append goes to this
     * member, and no read unless `surveyed` (volume_client.c design
     * note 6). */
    bool trunc_pending;
    /* Sealed and surveyed by the recovery, connected ever since. */
    bool surveyed;
    /* (loop) An append with the members and geometry went out on this
     * connection: later ones leave them out (volume_client.c note 9). */
    bool members_sent;
} vc_member;

typedef struct {
    uint32_t pg;
    uint64_t membership_epoch;
    char member_ids[HX_PG_MEMBERS][HX_ID_MAX];
    vc_member m[HX_PG_MEMBERS];
    vc_rec **ring;         /* records not yet on all six, ascending LSN */
    size_t head, count, cap;
    size_t ring_bytes;
} vc_pg;

typedef struct {
    struct hx_volume *v;
    int idx;
    const hx_storage_cfg *cfg;
    hx_conn *conn;         /* (loop) NULL while disconnected */
    bool connected;        /* guarded by mu: readers choose from it */
    struct event *retry_ev; /* (loop) */
    int retry_ms;          /* (loop) */
    /* Since the client started (volume_metrics.c): AppendRecords queued
     * to this node (empty SCL polls too), the records they carried (a
     * re-sent record counts again) and their frames' bytes as queued for
     * the socket (compressed, with wire_compression). */
    uint64_t appends_sent, records_sent, bytes_sent;
    /* AppendAcks to appends that carried records, and the time each took
     * since its append was queued: the mean is what one storage round
     * trip costs a commit. */
    uint64_t acks, ack_ns;
} vc_node;

/* One request awaiting a reply (RPC): the reply is kept packed, since the
 * connection frees the unpacked envelope when its callback returns. */
typedef struct vc_call {
    struct vc_call *next;
    uint64_t req_id;
    int node;
    uint8_t *out;          /* packed request frame body to send */
    size_t out_len;
    bool sent;             /* (loop) */
    bool done;
    int rc;
    uint8_t *reply;        /* packed reply envelope (owned) */
    size_t reply_len;
} vc_call;

/* A session waiting in hx_volume_wait_durable: woken alone, once VDL
 * reaches lsn or the volume is fenced or stopping (vc_broadcast), not by
 * every ack, so 32 sessions waiting for their commits do not all wake
 * for each VDL step. Lives on the waiter's stack, linked while it waits. */
typedef struct vc_durable_waiter {
    uint64_t lsn;
    pthread_cond_t cv;
    struct vc_durable_waiter *prev, *next;
} vc_durable_waiter;

struct hx_volume {
    hx_cluster_cfg cluster;
    hx_volume_mode mode;
    char az[HX_ID_MAX];

    pthread_mutex_t mu;
    pthread_cond_t cv;     /* any progress: acks, replies, connects */
    pthread_condattr_t cv_attr; /* CLOCK_MONOTONIC, for every cv here */
    vc_durable_waiter *durable_waiters;
    pthread_t thread;
    struct event_base *base;
    struct event *kick_ev;
    struct event *poll_ev; /* VC_POLL_MS: SCLs that rose by gossip */
    /* The boxcar (volume_client.c design note 3): while it holds, new
     * records wait for box_ev or an MTR that ships at once. */
    struct event *box_ev;
    hx_boxcar box;
    bool stopping;

    vc_node nodes[HX_MAX_STORAGE_NODES];
    size_t n_nodes;

    uint64_t epoch;
    bool fenced;
    uint64_t fenced_by;
    void (*on_fenced)(void *arg, uint64_t newer_epoch);
    void *on_fenced_arg;
    hx_lsn_tracker *lsn;   /* writer only, after recovery */
    uint64_t min_read_pin; /* oldest open read's point; 0: none */
    uint64_t next_quiet_check; /* volume_client.c design note 7 */
    uint64_t trunc_from, trunc_to; /* the recovery truncation range */
    /* A write quorum of every PG recorded the truncation: appends may go
     * out (volume_client.c design note 6). */
    bool trunc_quorum;
    /* Recovery: nodes that did not accept the new epoch. Their survey
     * answers are ignored (vc_ask_all): an unsealed node may still take
     * the old writer's appends after it answered. */
    bool unsealed[HX_MAX_STORAGE_NODES];
    vc_pg **pgs;           /* indexed by PG number; NULL = not created */
    size_t n_pgs;

    vc_call *calls;        /* outstanding requests */
    uint64_t next_req_id;
};

/* volume_client.c */
void vc_kick(hx_volume *v); /* under mu or not: wakes the loop */
vc_pg *vc_pg_get(hx_volume *v, uint32_t pg); /* under mu; NULL if absent */
/* Creates the PG's state with these members (ids), under mu. */
vc_pg *vc_pg_create(hx_volume *v, uint32_t pg, uint64_t membership_epoch,
                    char ids[HX_PG_MEMBERS][HX_ID_MAX]);
int vc_member_index(const vc_pg *p, int node);
/* Under mu: sets trunc_quorum once a write quorum of every PG acknowledged
 * the recovery truncation. */
void vc_trunc_quorum_check(hx_volume *v);
void vc_progress(const hx_volume_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int64_t vc_now_ms(void);
/* Under mu: waits on cv until woken or deadline_ms (absolute vc_now_ms();
 * < 0: no deadline). Non-zero once the deadline has passed. */
int vc_cv_wait_until(hx_volume *v, int64_t deadline_ms);
/* Progress (under v->mu): wakes every waiter on v->cv, and the durability
 * waiters whose wait is over. */
void vc_broadcast(hx_volume *v);

/* volume_rpc.c: requests and replies (under no lock; they take mu). */
/* Sends env to node; returns the call (NULL: out of memory). */
vc_call *vc_call_start(hx_volume *v, int node, const Hexad__Envelope *env);
/* Waits until the call is done or deadline_ms (absolute, vc_now_ms()),
 * unpacks the reply (caller frees with hexad__envelope__free_unpacked).
 * Returns 0 with *reply set, or an hx_err (HX_ERR_TIMEOUT, HX_ERR_IO when
 * the connection dropped). Frees the call either way. */
int vc_call_finish(hx_volume *v, vc_call *c, int64_t deadline_ms,
                   Hexad__Envelope **reply);
/* Loop side: a reply arrived (returns true if it matched a call). */
bool vc_calls_on_reply(hx_volume *v, const Hexad__Envelope *env);
/* Loop side: node's connection dropped; fail its calls. */
void vc_calls_on_close(hx_volume *v, int node);
/* Loop side: send calls not yet sent to connected nodes. */
void vc_calls_pump(hx_volume *v);

/* volume_get_page.c: one GetPage to node at read_lsn, carrying epoch
 * (0: no epoch guard). HX_OK with buf filled; a node's refusal returns
 * its code with *err (may be NULL) saying why; else a transport error. */
typedef struct {
    uint64_t current_epoch; /* HX_ERR_STALE_EPOCH: the node's epoch */
    char message[160];
} vc_page_error;
int vc_get_page(hx_volume *v, int node, uint64_t page_no, uint64_t read_lsn,
                uint64_t epoch, int64_t deadline_ms, uint8_t *buf,
                vc_page_error *err);

/* volume_open.c: recovery, and the survey it shares with status. */
int vc_recover(hx_volume *v, const hx_volume_opts *o);

typedef struct {
    bool answered;
    Hexad__Envelope *reply; /* SegmentInfoResponse, owned */
} node_answer;

/* A PG as the answers show it, with its newest member list. */
typedef struct {
    uint32_t pg;
    uint64_t membership_epoch;
    char ids[HX_PG_MEMBERS][HX_ID_MAX];
    int node[HX_PG_MEMBERS]; /* index into nodes, -1 if not in the file */
} pg_view;

/* Asks every node (replacing ans[]) but those marked unsealed;
 * unanswered nodes stay !answered. */
void vc_ask_all(hx_volume *v, const Hexad__SegmentInfoRequest *req,
                node_answer *ans);
void vc_free_answers(node_answer *ans, size_t n);
/* Round 2 of the survey: asks every node what it holds above `at`,
 * rebuilds rep[] (its tails and truncations then live in *tails_buf and
 * *trunc_buf, replaced each call) and runs hx_recovery_plan() at `at`. */
int vc_survey_plan(hx_volume *v, node_answer *ans, const pg_view *pgs,
                   size_t n, hx_pg_report *rep, uint64_t at,
                   hx_rec_meta **tails_buf, hx_lsn_range **trunc_buf,
                   uint64_t *tails, hx_recovery_result *res, uint32_t *bad_pg);
/* Waits until every node is connected or grace_ms passed. */
void vc_await_connections(hx_volume *v, int grace_ms);
int vc_collect_pgs(hx_volume *v, const node_answer *ans, pg_view **out,
                   size_t *n_out);
/* rep[] from the answers; *owned holds the tail arrays (free it). */
int vc_build_reports(const node_answer *ans, const pg_view *pgs, size_t n,
                     hx_pg_report *rep, hx_rec_meta **owned);
int vc_fill_truncations(const node_answer *ans, const pg_view *pgs,
                        size_t n, hx_pg_report *rep, hx_lsn_range **owned);

#endif
