/* hexad-storage: the storage daemon (DESIGN.md "Storage node").
 *
 *   hexad-storage --cluster FILE --id ID
 *   hexad-storage --cluster FILE --id ID --corrupt-records N   (faults)
 *   hexad-storage --cluster FILE --id ID --drop-records N      (faults)
 *
 * Exit status: 0 after SIGTERM/SIGINT (clean shutdown), 1 when it cannot
 * start (bad cluster file, unknown id, data directory, port in use),
 * 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "config.h"
#include "hx_err.h"
#include "log.h"
#include "metrics_http.h"
#include "segment_store.h"
#include "storage_server.h"

/* --corrupt-records and --drop-records spread their damage: one record
 * in this many. */
#define CORRUPT_EVERY 97u

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: hexad-storage --cluster FILE --id ID\n"
            "\n"
            "Runs storage node ID of the cluster described by FILE: listens on\n"
            "its addr and keeps its segments in its data directory (created\n"
            "if missing); serves GET /metrics (Prometheus text format) on its\n"
            "metrics address when the line has one. Stops cleanly on SIGTERM\n"
            "or SIGINT.\n"
            "\n"
            "  --cluster FILE   the cluster file (see README.md, \"The cluster "
            "file\")\n"
            "  --id ID          this node's id, one of the file's storage "
            "lines\n"
            "  --corrupt-records N\n"
            "                   fault injection, with the node stopped: flip a\n"
            "                   byte in N stored records (one in every %u),\n"
            "                   print \"volume pg lsn\" of each and exit; the\n"
            "                   restarted node detects and repairs them\n"
            "  --drop-records N\n"
            "                   fault injection, with the node stopped: delete\n"
            "                   N stored records below their segment's SCL\n"
            "                   (one in every %u), as a lost write would;\n"
            "                   print \"volume pg lsn\" of each and exit; the\n"
            "                   restarted node's scrub finds them missing,\n"
            "                   refuses reads over them and refetches them\n"
            "  --help           show this help\n"
            "\n"
            "Environment: HEXAD_LOG=debug|info|warn|error (default info).\n",
            CORRUPT_EVERY, CORRUPT_EVERY);
}

/* mkdir -p: creates path and its missing parents. */
static int mkdir_p(const char *path, char *err, size_t err_len)
{
    char buf[sizeof ((hx_storage_cfg *)0)->data_dir];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        snprintf(err, err_len, "bad data directory path '%s'", path);
        return HX_ERR_CONFIG;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            snprintf(err, err_len, "cannot create data directory %s: %s",
                     buf, strerror(errno));
            return HX_ERR_IO;
        }
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_len, "data directory %s is not a directory", path);
        return HX_ERR_IO;
    }
    return HX_OK;
}

static int collect_status(void *srv, Hexad__NodeStatus **st)
{
    return storage_server_status(srv, st);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    HX_INFO("signal %d: shutting down", (int)sig);
    event_base_loopbreak(arg);
}

/* --corrupt-records / --drop-records: the store is opened alone (the node
 * must be stopped: RocksDB's lock refuses a second opener). */
static int damage_records(const hx_storage_cfg *self, const char *option,
                          const char *arg, bool drop)
{
    char *end = NULL;
    unsigned long n = strtoul(arg, &end, 10);
    if (end == arg || *end != '\0' || n == 0) {
        fprintf(stderr, "hexad-storage: --%s takes a count > 0\n", option);
        return 2;
    }
    segment_store *s = NULL;
    segment_store_why why = {0};
    segment_store_options o = {
        .journal_bytes = self->journal_mib << 20,
        .record_cache_bytes = self->record_cache_mib << 20};
    int rc = segment_store_open(self->data_dir, self->id, &o, &s, &why);
    size_t done = 0;
    if (rc == HX_OK)
        rc = segment_store_damage_records(
            s, drop ? SEGMENT_STORE_FAULT_DROP : SEGMENT_STORE_FAULT_CORRUPT,
            CORRUPT_EVERY, n, stdout, &done, &why);
    segment_store_close(s);
    if (rc != HX_OK) {
        HX_ERROR("--%s: cannot damage records in %s: %s (stop the node "
                 "first)", option, self->data_dir,
                 why.msg[0] ? why.msg : hx_strerror(rc));
        return 1;
    }
    HX_INFO("%zu record(s) %s in %s", done, drop ? "dropped" : "corrupted",
            self->data_dir);
    return 0;
}

int main(int argc, char **argv)
{
    const char *cluster_path = NULL, *id = NULL, *corrupt = NULL,
               *drop = NULL;
    static const struct option longopts[] = {
        {"cluster", required_argument, NULL, 'c'},
        {"id", required_argument, NULL, 'i'},
        {"corrupt-records", required_argument, NULL, 'C'},
        {"drop-records", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "c:i:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': cluster_path = optarg; break;
        case 'i': id = optarg; break;
        case 'C': corrupt = optarg; break;
        case 'D': drop = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "hexad-storage: unexpected argument '%s'\n",
                argv[optind]);
        usage(stderr);
        return 2;
    }
    if (cluster_path == NULL || id == NULL) {
        fprintf(stderr, "hexad-storage: --cluster and --id are required\n");
        usage(stderr);
        return 2;
    }
    char component[64];
    snprintf(component, sizeof component, "storage/%s", id);
    hx_log_init(component, HX_LOG_INFO);

    static hx_cluster_cfg cfg; /* large: not on the stack */
    char err[1024];
    if (hx_cluster_load(cluster_path, &cfg, err, sizeof err) != HX_OK) {
        HX_ERROR("%s", err);
        return 1;
    }
    const hx_storage_cfg *self = hx_cluster_storage(&cfg, id);
    if (self == NULL) {
        char ids[1024] = "";
        size_t off = 0;
        for (size_t i = 0; i < cfg.n_storage && off < sizeof ids; i++) {
            int w = snprintf(ids + off, sizeof ids - off, "%s%s",
                             i ? ", " : "", cfg.storage[i].id);
            if (w < 0)
                break;
            off += (size_t)w;
        }
        HX_ERROR("%s has no storage node with id '%s' (storage ids: %s)",
                 cluster_path, id, cfg.n_storage ? ids : "none");
        return 1;
    }
    if (corrupt != NULL && drop != NULL) {
        fprintf(stderr, "hexad-storage: give --corrupt-records or "
                "--drop-records, not both\n");
        return 2;
    }
    if (corrupt != NULL)
        return damage_records(self, "corrupt-records", corrupt, false);
    if (drop != NULL)
        return damage_records(self, "drop-records", drop, true);
    if (self->data_dir[0] == '\0') {
        HX_ERROR("%s: storage node %s has no data= directory", cluster_path,
                 id);
        return 1;
    }
    if (mkdir_p(self->data_dir, err, sizeof err) != HX_OK) {
        HX_ERROR("%s", err);
        return 1;
    }

    /* A client that vanishes must not kill us on write. */
    signal(SIGPIPE, SIG_IGN);
    struct event_base *base = event_base_new();
    if (base == NULL) {
        HX_ERROR("cannot create the event loop");
        return 1;
    }
    storage_server *srv = NULL;
    if (storage_server_create(base, &cfg, self, &srv, err, sizeof err) !=
        HX_OK) {
        HX_ERROR("%s", err);
        event_base_free(base);
        return 1;
    }
    metrics_http *metrics = NULL;
    metrics_http_source msrc = {
        .collect = collect_status,
        .release = storage_server_status_free,
        .arg = srv,
    };
    if (self->metrics_addr[0] &&
        metrics_http_start(base, self->metrics_addr, &msrc, &metrics, err,
                           sizeof err) != HX_OK) {
        HX_ERROR("%s", err);
        storage_server_destroy(srv);
        event_base_free(base);
        return 1;
    }
    struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *sigint = evsignal_new(base, SIGINT, on_signal, base);
    if (sigterm == NULL || sigint == NULL || evsignal_add(sigterm, NULL) ||
        evsignal_add(sigint, NULL)) {
        HX_ERROR("cannot install signal handlers");
        metrics_http_stop(metrics);
        storage_server_destroy(srv);
        event_base_free(base);
        return 1;
    }
    HX_INFO("hexad-storage %s listening on %s (az %s, data %s)", self->id,
            self->addr, self->az, self->data_dir);

    int rc = event_base_dispatch(base);
    metrics_http_stop(metrics);
    storage_server_destroy(srv);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(base);
    if (rc < 0) {
        HX_ERROR("event loop failed");
        return 1;
    }
    HX_INFO("stopped");
    return 0;
}
