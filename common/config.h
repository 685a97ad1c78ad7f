/* The cluster file: one file describes a cluster, locally or on VMs.
 *
 *   # comment
 *   cluster  name=local volume=1 page_size=4096 pg_pages=2621440 lal=1000000
 *            commit_timeout_ms=30000 retention_s=3600 wire_compression=zstd
 *   storage  id=s1 az=az1 addr=127.0.0.1:7101 metrics=127.0.0.1:7201
 *            data=/var/lib/hexad/s1 journal_mib=64
 *   compute  id=w1 role=writer addr=127.0.0.1:7433 password=secret
 *            cache_mib=512 metrics=127.0.0.1:7200
 *
 * One directive per line (continuations are not supported); key=value
 * words separated by blanks; values have no blanks. README.md documents it.
 */
#ifndef HX_CONFIG_H
#define HX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HX_MAX_STORAGE_NODES 64
#define HX_MAX_COMPUTE_NODES 16
#define HX_ID_MAX 32
/* Aurora's segment size: a PG covers 10 GiB of the volume unless the
 * cluster line says otherwise (pg_pages = this / page_size). Large PGs keep
 * a transaction's records on few PGs, so few nodes and frames per commit. */
#define HX_PG_BYTES_DEFAULT (UINT64_C(10) << 30)
/* A storage node's write-ahead journal (storage-node/segment_journal.h):
 * written in full when created, in the node's data directory. */
#define HX_STORAGE_JOURNAL_MIB_DEFAULT 64
/* Records coalescing walked and has yet to apply (record_cache.h). */
#define HX_STORAGE_RECORD_CACHE_MIB_DEFAULT 128
/* The writer's page cache (hx_vfs): pages a GetPage need not fetch. */
#define HX_COMPUTE_CACHE_MIB_DEFAULT 512

typedef struct {
    char id[HX_ID_MAX];
    char az[HX_ID_MAX];
    char addr[128];          /* host:port of the storage protocol */
    char host[96];
    uint16_t port;
    char metrics_addr[128];  /* host:port of the HTTP metrics, or "" */
    char data_dir[512];
    uint64_t journal_mib;    /* size of a new write-ahead journal */
    uint64_t record_cache_mib; /* the store's record cache; 0: none */
} hx_storage_cfg;

typedef struct {
    char id[HX_ID_MAX];
    char role[16];           /* writer | reader */
    char az[HX_ID_MAX];      /* optional: reads prefer this AZ */
    char addr[128];          /* host:port of the PostgreSQL endpoint */
    char host[96];
    uint16_t port;
    char password[64];       /* "" = trust authentication */
    uint64_t cache_mib;      /* page cache of the compute node */
    char metrics_addr[128];  /* host:port of the HTTP metrics, or "" */
} hx_compute_cfg;

typedef struct {
    char name[64];
    uint32_t volume;
    uint32_t page_size;
    uint64_t pg_pages;
    uint64_t lal;
    int commit_timeout_ms;
    /* Storage keeps log records and page versions at least this long
     * (garbage collection; the backtrack window later). */
    uint64_t retention_s;
    /* The writer compresses what it sends to storage (frame_zstd.h). */
    bool wire_compression;
    size_t n_storage;
    hx_storage_cfg storage[HX_MAX_STORAGE_NODES];
    size_t n_compute;
    hx_compute_cfg compute[HX_MAX_COMPUTE_NODES];
} hx_cluster_cfg;

/* Parses text (NUL-terminated). On failure returns HX_ERR_CONFIG and writes
 * "line N: what is wrong; how to fix it" into err. */
int hx_cluster_parse(const char *text, hx_cluster_cfg *cfg, char *err,
                     size_t err_len);

/* Reads and parses path; err names the file. */
int hx_cluster_load(const char *path, hx_cluster_cfg *cfg, char *err,
                    size_t err_len);

/* The storage node with this id, or NULL. */
const hx_storage_cfg *hx_cluster_storage(const hx_cluster_cfg *cfg,
                                         const char *id);
int hx_cluster_storage_index(const hx_cluster_cfg *cfg, const char *id);
const hx_compute_cfg *hx_cluster_compute(const hx_cluster_cfg *cfg,
                                         const char *id);

#endif
