/* hexad-compute: the compute-node daemon (DESIGN.md "Compute nodes").
 *
 *   hexad-compute --cluster FILE --id ID
 *
 * Opens the cluster's volume as its writer (crash recovery), registers the
 * hexad SQLite VFS over it and serves PostgreSQL clients on the compute
 * entry's addr, and GET /metrics on its metrics= address if any
 * (compute_metrics.h). Exit status: 0 after SIGTERM/SIGINT, 1 when it cannot
 * start (bad cluster file, unknown id, reader role, volume not
 * recoverable, port in use), 2 on a usage error, 3 when fenced.
 *
 * Fencing: when a storage node refuses us with a newer volume epoch,
 * another writer has recovered the volume. From that moment the volume
 * client fails every write, read and durability wait (so the commit that
 * met the refusal is answered with an error naming the fencing, never
 * with success); this process then logs why and exits 3 after
 * FENCED_GRACE_MS, the time sessions get to send that error. It does not
 * stay up read-only: its cache may hold commits the new writer truncated,
 * and a stale writer serving them would show data that does not exist.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <time.h>

#include "compute_metrics.h"
#include "config.h"
#include "hx_err.h"
#include "hx_vfs.h"
#include "log.h"
#include "metrics_endpoint.h"
#include "pg_server.h"
#include "volume_client.h"

#define VFS_NAME "hexad"
#define FENCED_GRACE_MS 500
#define EXIT_FENCED 3

static const char *usage_text =
    "usage: hexad-compute --cluster FILE --id ID\n"
    "\n"
    "Runs compute node ID of the cluster described by FILE: opens the\n"
    "volume as its writer (crash recovery: a new volume epoch, VDL\n"
    "recomputed, nothing above it kept), runs SQL in SQLite through the\n"
    "hexad VFS and serves PostgreSQL clients (psql, pgbench, libpq) on the\n"
    "node's addr=. A commit is answered once 4 of 6 copies hold it; past\n"
    "the cluster's commit_timeout_ms the client gets an error saying the\n"
    "outcome is unknown. With metrics=HOST:PORT on its line it serves\n"
    "GET /metrics (Prometheus text format: commits, the writer lock's\n"
    "hold and wait times, VDL, per storage node and PG; README.md\n"
    "\"Metrics\").\n"
    "\n"
    "options:\n"
    "  --cluster FILE  the cluster file (default: $HEXAD_CLUSTER, else\n"
    "                  .hexad/cluster.conf)\n"
    "  --id ID         a 'compute' line of FILE with role=writer\n"
    "  --help          this text\n"
    "\n"
    "Logs go to stderr (level from HEXAD_LOG=debug|info|warn|error).\n"
    "SIGTERM or SIGINT: stop accepting, close client connections, exit 0.\n"
    "Fencing: when another hexad-compute starts as the writer of the same\n"
    "volume, it seals a newer volume epoch on storage; this one is refused\n"
    "on its next write, answers that commit with an error naming the\n"
    "fencing, acknowledges nothing more, logs 'fenced' and exits 3.\n"
    "Exit status: 0 after SIGTERM/SIGINT, 1 when it cannot start, 2 on a\n"
    "usage error, 3 when fenced by a newer writer.\n";

static void on_progress(void *arg, const char *line)
{
    (void)arg;
    HX_INFO("volume: %s", line);
}

/* SQLite's error log (sqlite3_log, including the VFS's lines) into ours. */
static void on_sqlite_log(void *arg, int code, const char *msg)
{
    (void)arg;
    switch (code & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_NOTADB:
        HX_ERROR("sqlite (%d): %s", code, msg);
        break;
    case SQLITE_WARNING:
        HX_WARN("sqlite (%d): %s", code, msg);
        break;
    default:
        /* Statement errors (syntax, constraints, busy): the client is told. */
        HX_DEBUG("sqlite (%d): %s", code, msg);
        break;
    }
}

typedef struct {
    struct event_base *base;
    struct event *fence_ev;
    hx_volume *vol;
    uint32_t volume;
    bool fenced;
    /* What a scrape of /metrics reads (render_metrics). */
    const char *id;
    int64_t started_ms;
    bool vfs_registered;
    pg_server *srv;
} compute_ctx;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A scrape of /metrics, on the loop thread: copies the numbers (short
 * lock holds, no I/O), then renders them. */
static int render_metrics(void *arg, struct evbuffer *out)
{
    compute_ctx *cx = arg;
    compute_metrics m = {
        .node = cx->id,
        .uptime_ms = (uint64_t)(mono_ms() - cx->started_ms),
    };
    m.has_vfs = cx->vfs_registered &&
                hx_vfs_get_stats(VFS_NAME, &m.vfs) == HX_OK;
    if (cx->vol != NULL) {
        int rc = hx_volume_metrics_get(cx->vol, &m.vol);
        if (rc != HX_OK)
            return rc;
        m.has_volume = true;
    }
    if (cx->srv != NULL) {
        pg_server_get_stats(cx->srv, &m.sessions);
        m.has_sessions = true;
    }
    int rc = compute_metrics_render(&m, out);
    hx_volume_metrics_free(&m.vol);
    return rc;
}

/* Volume client thread, its lock held: only hands the news to the loop. */
static void on_fenced(void *arg, uint64_t newer_epoch)
{
    compute_ctx *cx = arg;
    (void)newer_epoch;
    event_active(cx->fence_ev, EV_TIMEOUT, 0);
}

static void on_fence_ev(evutil_socket_t fd, short what, void *arg)
{
    compute_ctx *cx = arg;
    (void)fd;
    (void)what;
    if (cx->fenced)
        return;
    uint64_t newer = 0;
    if (cx->vol != NULL)
        (void)hx_volume_fenced(cx->vol, &newer);
    cx->fenced = true;
    HX_ERROR("fenced: another writer recovered volume %u (storage holds "
             "epoch %" PRIu64 ", ours %" PRIu64 "); this writer "
             "acknowledges nothing more and exits %d. Connect clients to "
             "the new writer.", cx->volume, newer,
             cx->vol ? hx_volume_epoch(cx->vol) : 0, EXIT_FENCED);
    struct timeval grace = {0, FENCED_GRACE_MS * 1000};
    event_base_loopexit(cx->base, &grace);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *base = arg;
    (void)what;
    HX_INFO("signal %d: shutting down", (int)sig);
    event_base_loopexit(base, NULL);
}

int main(int argc, char **argv)
{
    const char *cluster = NULL, *id = NULL;
    static const struct option opts[] = {
        {"cluster", required_argument, 0, 'c'},
        {"id", required_argument, 0, 'i'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': cluster = optarg; break;
        case 'i': id = optarg; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default:
            fprintf(stderr, "hexad-compute: bad option (try --help)\n");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hexad-compute: unexpected argument '%s' (try --help)\n",
                argv[optind]);
        return 2;
    }
    if (!id) {
        fprintf(stderr, "hexad-compute: --id ID is required (try --help)\n");
        return 2;
    }
    if (!cluster) {
        const char *env = getenv("HEXAD_CLUSTER");
        cluster = env ? env : ".hexad/cluster.conf";
    }

    char comp[64];
    snprintf(comp, sizeof comp, "compute %s", id);
    hx_log_init(comp, HX_LOG_INFO);

    static hx_cluster_cfg cfg;
    char err[512];
    if (hx_cluster_load(cluster, &cfg, err, sizeof err) != HX_OK) {
        fprintf(stderr, "hexad-compute: %s\n", err);
        return 1;
    }
    const hx_compute_cfg *me = hx_cluster_compute(&cfg, id);
    if (!me) {
        fprintf(stderr, "hexad-compute: %s has no compute node '%s' (a line "
                "'compute id=%s role=writer addr=HOST:PORT')\n", cluster, id, id);
        return 1;
    }
    if (strcmp(me->role, "writer") != 0) {
        fprintf(stderr, "hexad-compute: compute node '%s' has role=%s: read "
                "replicas are not supported yet (only role=writer); change "
                "the role in %s or start the writer\n",
                id, me->role[0] ? me->role : "(none)", cluster);
        return 1;
    }

    if (sodium_init() < 0) {
        fprintf(stderr, "hexad-compute: libsodium failed to initialise\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();
    if (sqlite3_config(SQLITE_CONFIG_LOG, on_sqlite_log, NULL) != SQLITE_OK ||
        sqlite3_initialize() != SQLITE_OK) {
        fprintf(stderr, "hexad-compute: SQLite failed to initialise\n");
        return 1;
    }
    if (!sqlite3_threadsafe()) {
        fprintf(stderr, "hexad-compute: this SQLite is built without thread "
                "support (SQLITE_THREADSAFE=0); one connection per thread "
                "needs it\n");
        return 1;
    }

    /* Listen first (PostgreSQL, then metrics): a port in use must fail
     * before recovery bumps the volume epoch (which would fence a writer
     * already running). Clients and scrapes wait in the backlog until the
     * loop runs. */
    static hx_page_store store;
    int exit_code = 1;
    hx_volume *vol = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    pg_server *srv = NULL;
    hx_metrics_endpoint *metrics = NULL;
    static compute_ctx cx;
    cx.id = id;
    cx.started_ms = mono_ms();
    struct event_base *base = event_base_new();
    if (!base || !(cx.fence_ev = event_new(base, -1, 0, on_fence_ev, &cx))) {
        fprintf(stderr, "hexad-compute: cannot create an event loop\n");
        goto out;
    }
    cx.base = base;
    cx.volume = cfg.volume;
    pg_server_opts po = {
        .base = base,
        .host = me->host,
        .port = me->port,
        .vfs_name = VFS_NAME,
        .store = &store,
        .commit_timeout_ms = cfg.commit_timeout_ms,
        .password = me->password[0] ? me->password : NULL,
        .max_conns = PG_SERVER_MAX_CONNS,
    };
    int rc = pg_server_start(&po, &srv, err, sizeof err);
    if (rc != HX_OK) {
        HX_ERROR("%s", err);
        fprintf(stderr, "hexad-compute: %s\n", err);
        goto out;
    }
    cx.srv = srv;
    if (me->metrics_addr[0] &&
        (rc = hx_metrics_endpoint_start(base, me->metrics_addr,
                                        render_metrics, &cx, &metrics, err,
                                        sizeof err)) != HX_OK) {
        HX_ERROR("%s", err);
        fprintf(stderr, "hexad-compute: %s\n", err);
        goto out;
    }

    HX_INFO("hexad-compute %s: opening volume %u as its writer (%zu storage "
            "nodes, timeout %d ms)", id, cfg.volume, cfg.n_storage,
            cfg.commit_timeout_ms);
    hx_volume_opts vo = {
        .cluster = &cfg,
        .mode = HX_VOLUME_WRITER,
        .az = me->az[0] ? me->az : NULL,
        .open_timeout_ms = cfg.commit_timeout_ms,
        .progress = on_progress,
        .on_fenced = on_fenced,
        .on_fenced_arg = &cx,
    };
    rc = hx_volume_open(&vo, &vol);
    if (rc != HX_OK) {
        HX_ERROR("cannot open volume %u as its writer: %s (are the storage "
                 "nodes up, with a read quorum of every PG? try hexadctl "
                 "status)", cfg.volume, hx_strerror(rc));
        fprintf(stderr, "hexad-compute: cannot open volume %u: %s\n",
                cfg.volume, hx_strerror(rc));
        vol = NULL;
        goto out;
    }
    cx.vol = vol;
    store = hx_volume_page_store(vol);
    rc = hx_vfs_register(VFS_NAME, &store, 0);
    if (rc != HX_OK) {
        fprintf(stderr, "hexad-compute: cannot register the SQLite VFS: %s\n",
                hx_strerror(rc));
        goto out;
    }
    cx.vfs_registered = true;
    uint64_t cache_pages = me->cache_mib * (UINT64_C(1) << 20) / cfg.page_size;
    rc = hx_vfs_set_cache_pages(VFS_NAME, (size_t)cache_pages);
    if (rc != HX_OK) {
        fprintf(stderr, "hexad-compute: cannot size the page cache: %s\n",
                hx_strerror(rc));
        goto out;
    }
    HX_INFO("page cache: up to %" PRIu64 " MiB (%" PRIu64 " pages; cache_mib= "
            "on the compute line)", me->cache_mib, cache_pages);

    sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    sigint = evsignal_new(base, SIGINT, on_signal, base);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) != 0 ||
        evsignal_add(sigint, NULL) != 0) {
        fprintf(stderr, "hexad-compute: cannot install signal handlers\n");
        goto out;
    }
    HX_INFO("hexad-compute %s serving PostgreSQL on %s (volume %u, epoch %"
            PRIu64 ")", id, me->addr, cfg.volume, hx_volume_epoch(vol));
    if (event_base_dispatch(base) < 0) {
        HX_ERROR("event loop failed");
        goto out;
    }
    exit_code = cx.fenced ? EXIT_FENCED : 0;

out:
    /* No scrape after this: the server and the volume go next. */
    hx_metrics_endpoint_stop(metrics);
    if (srv) {
        pg_server_stop(srv);
        srv = NULL;
    }
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    hx_vfs_stats vs;
    if (cx.vfs_registered && hx_vfs_get_stats(VFS_NAME, &vs) == HX_OK) {
        HX_INFO("vfs: %" PRIu64 " commits (%" PRIu64 " redo records, %" PRIu64
                " payload bytes; %" PRIu64 " made while another session "
                "waited to commit, so they could be boxcarred), last commit "
                "LSN %" PRIu64 ", VDL %" PRIu64,
                vs.mtrs, vs.records, vs.patch_bytes, vs.mtrs_more_coming,
                vs.last_commit_lsn, hx_volume_vdl(vol));
        if (vs.writer_acquisitions > 0)
            HX_INFO("writer lock: taken %" PRIu64 " times, held %" PRIu64
                    " us on average; sessions waited %" PRIu64 " ms for it "
                    "in all, and it sat free %" PRIu64 " ms while wanted",
                    vs.writer_acquisitions,
                    vs.writer_held_ns / vs.writer_acquisitions / 1000,
                    vs.writer_wait_ns / 1000000,
                    vs.writer_handoff_ns / 1000000);
    }
    rc = cx.vfs_registered ? hx_vfs_unregister(VFS_NAME) : HX_OK;
    if (rc != HX_OK)
        HX_WARN("unregistering the VFS: %s", hx_strerror(rc));
    hx_volume_close(vol); /* no on_fenced after this: fence_ev may go */
    if (cx.fence_ev)
        event_free(cx.fence_ev);
    if (base)
        event_base_free(base);
    HX_INFO("hexad-compute %s stopped (exit %d)", id, exit_code);
    return exit_code;
}
