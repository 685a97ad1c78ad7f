/* snapshot_store: a read-only page_store of a volume as of its durable
 * point, for readers that must not disturb the running writer (the sqlite3
 * shell extension, hx_vfs_ext.c).
 *
 * Opening it changes nothing on storage: no epoch bump, no truncation, so
 * the writer is not fenced. It surveys a read quorum of every PG the way
 * recovery does (common/recovery.h) to learn the VDL a recovery would find
 * now and each PG's newest record at or below it, and then serves every
 * read at that fixed point: GetPage(page, the PG's tail at VDL) from any
 * member; a member not complete to that point refuses (NOT_COMPLETE) and
 * the next one is asked. Commits after the open are not seen; open a new
 * snapshot to see them.
 *
 * Threads: the iface functions may be called from any thread.
 */
#ifndef HX_SNAPSHOT_STORE_H
#define HX_SNAPSHOT_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "page_store.h"

typedef struct hx_snapshot_store hx_snapshot_store;

/* Connects to cfg's storage nodes and fixes the read point. On failure
 * returns a hexad error and writes the cause and the fix into err (for
 * example a PG without a read quorum). timeout_ms bounds the survey. */
int hx_snapshot_store_open(const hx_cluster_cfg *cfg, int timeout_ms,
                           hx_snapshot_store **out, char *err,
                           size_t err_len);

/* NULL is a no-op. No iface obtained from s may be in use. */
void hx_snapshot_store_close(hx_snapshot_store *s);

/* The read point: the VDL found at open. */
uint64_t hx_snapshot_store_vdl(const hx_snapshot_store *s);

/* read_point, read_page and wait_durable; write_mtr is NULL (a read-only
 * store: hx_vfs opens the database read-only). Valid until close. */
hx_page_store hx_snapshot_store_iface(hx_snapshot_store *s);

#endif
