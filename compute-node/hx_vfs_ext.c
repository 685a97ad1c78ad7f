/* hx_vfs_ext: the hexad VFS as a loadable extension of the stock sqlite3
 * shell (libhexad_vfs.so; entry point sqlite3_hexadvfs_init, the name
 * SQLite derives from the file name, so `.load PATH/libhexad_vfs` works).
 *
 *   HEXAD_CLUSTER=.hexad/cluster.conf sqlite3
 *   sqlite> .load build/compute-node/libhexad_vfs
 *   sqlite> .open file:hexad?vfs=hexad
 *
 * Environment, read once when the extension loads (HEXAD_LOG=info shows
 * the volume client's progress; the default is warnings and errors):
 *   HEXAD_CLUSTER   the cluster file (default .hexad/cluster.conf)
 *   HEXAD_VOLUME    the volume number (default: the cluster file's)
 *   HEXAD_VFS_MODE  read (default) or writer
 *
 * read: a snapshot at the volume's durable point (snapshot_store.h): the
 *   running writer is not disturbed; the database opens read-only; commits
 *   made after the load are not seen (load the extension in a new shell).
 * writer: the volume is opened as its writer, with crash recovery and a
 *   new volume epoch, which FENCES the running hexad-compute (its commits
 *   fail from then on; restart it afterwards). Each commit returns only
 *   once VDL covers it (there is no client reply to hold), and fails after
 *   the cluster's commit_timeout_ms.
 *
 * The extension calls the libsqlite3 it is linked with; that must be the
 * library the shell runs on (Debian's sqlite3 links libsqlite3.so.0), which
 * the init function checks.
 */
#define SQLITE_CORE 1 /* only the sqlite3_api_routines type from here */
#include <sqlite3ext.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hx_err.h"
#include "hx_vfs.h"
#include "log.h"
#include "snapshot_store.h"
#include "volume_client.h"

#define EXT_VFS_NAME "hexad"
#define EXT_CLUSTER_DEFAULT ".hexad/cluster.conf"
#define EXT_OPEN_TIMEOUT_MS 30000

/* The volume behind the registered VFS: process-wide, never closed (the
 * extension stays loaded: SQLITE_OK_LOAD_PERMANENTLY). */
static pthread_mutex_t ext_mu = PTHREAD_MUTEX_INITIALIZER;
static int ext_loaded;
static hx_volume *ext_volume;
static hx_snapshot_store *ext_snapshot;
static int ext_commit_timeout_ms;

/* Writer mode: a commit returns once durable (synchronous commit). */
static int ext_write_mtr(void *ctx, const hx_page_write *w, size_t n,
                         unsigned flags, uint64_t *commit_lsn)
{
    int rc = hx_volume_write_mtr(ctx, w, n, flags, commit_lsn);
    if (rc == HX_OK)
        rc = hx_volume_wait_durable(ctx, *commit_lsn, ext_commit_timeout_ms);
    if (rc != HX_OK)
        sqlite3_log(SQLITE_IOERR, "hexad: commit not confirmed durable "
                    "(outcome unknown): %s", hx_strerror(rc));
    return rc;
}

static int ext_open(sqlite3_api_routines const *api, char *err,
                    size_t err_len)
{
    /* The shell's library must be ours: the VFS is registered here. */
    if (api && api->vfs_register != sqlite3_vfs_register) {
        snprintf(err, err_len, "this sqlite3 does not use the shared "
                 "libsqlite3 the extension is linked with (a statically "
                 "linked shell?); use Debian's sqlite3 package");
        return HX_ERR_CONFIG;
    }
    /* The shell's terminal is for results: only warnings and errors. */
    hx_log_init("hexad-vfs", HX_LOG_WARN);
    const char *path = getenv("HEXAD_CLUSTER");
    if (!path || !*path)
        path = EXT_CLUSTER_DEFAULT;
    const char *mode = getenv("HEXAD_VFS_MODE");
    if (!mode || !*mode)
        mode = "read";
    int writer = strcmp(mode, "writer") == 0;
    if (!writer && strcmp(mode, "read") != 0) {
        snprintf(err, err_len, "HEXAD_VFS_MODE=%s: use read (the default, "
                 "a snapshot that leaves the writer alone) or writer (fences "
                 "the running hexad-compute)", mode);
        return HX_ERR_CONFIG;
    }
    hx_cluster_cfg *cfg = malloc(sizeof *cfg);
    if (!cfg) {
        snprintf(err, err_len, "out of memory");
        return HX_ERR_NOMEM;
    }
    char cerr[256];
    int rc = hx_cluster_load(path, cfg, cerr, sizeof cerr);
    if (rc != HX_OK) {
        snprintf(err, err_len, "%s (set HEXAD_CLUSTER to the cluster file, "
                 "e.g. .hexad/cluster.conf after ./hexad up)", cerr);
        free(cfg);
        return rc;
    }
    const char *vol = getenv("HEXAD_VOLUME");
    if (vol && *vol) {
        char *end = NULL;
        unsigned long n = strtoul(vol, &end, 10);
        if (!end || *end || n == 0 || n > 4294967295ul) {
            snprintf(err, err_len, "HEXAD_VOLUME=%s is not a volume number "
                     "1..4294967295", vol);
            free(cfg);
            return HX_ERR_CONFIG;
        }
        cfg->volume = (uint32_t)n;
    }
    ext_commit_timeout_ms = cfg->commit_timeout_ms;

    hx_page_store store;
    if (writer) {
        hx_volume_opts o = {.cluster = cfg, .mode = HX_VOLUME_WRITER,
                            .open_timeout_ms = EXT_OPEN_TIMEOUT_MS};
        rc = hx_volume_open(&o, &ext_volume);
        if (rc != HX_OK) {
            snprintf(err, err_len, "cannot open volume %u as its writer: %s "
                     "(are the storage nodes of %s up? ./hexad status)",
                     cfg->volume, hx_strerror(rc), path);
            free(cfg);
            return rc;
        }
        store = hx_volume_page_store(ext_volume);
        store.write_mtr = ext_write_mtr;
    } else {
        rc = hx_snapshot_store_open(cfg, EXT_OPEN_TIMEOUT_MS, &ext_snapshot,
                                    cerr, sizeof cerr);
        if (rc != HX_OK) {
            snprintf(err, err_len, "%s", cerr);
            free(cfg);
            return rc;
        }
        store = hx_snapshot_store_iface(ext_snapshot);
    }
    free(cfg);
    rc = hx_vfs_register(EXT_VFS_NAME, &store, 0);
    if (rc != HX_OK) {
        snprintf(err, err_len, "cannot register the '%s' VFS: %s",
                 EXT_VFS_NAME, hx_strerror(rc));
        hx_volume_close(ext_volume);
        ext_volume = NULL;
        hx_snapshot_store_close(ext_snapshot);
        ext_snapshot = NULL;
    }
    return rc;
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_hexadvfs_init(sqlite3 *db, char **err_msg,
                          const sqlite3_api_routines *api)
{
    (void)db;
    int rc = HX_OK;
    char err[512] = "";
    pthread_mutex_lock(&ext_mu);
    if (!ext_loaded) {
        rc = ext_open(api, err, sizeof err);
        ext_loaded = rc == HX_OK;
    }
    pthread_mutex_unlock(&ext_mu);
    if (rc != HX_OK) {
        if (err_msg)
            *err_msg = sqlite3_mprintf("hexad: %s", err);
        return SQLITE_ERROR;
    }
    return SQLITE_OK_LOAD_PERMANENTLY;
}
