/* A storage node's background work on its segment store (DESIGN.md
 * "Storage node" (5), (7), (8)): coalescing, garbage collection, scrubbing,
 * and the repair of corrupt items from a peer's copy. It runs on the
 * server's event loop, a bounded amount per timer tick, and owns its own
 * connections to the peers (opened only while a repair is wanted).
 */
#ifndef HX_STORAGE_BACKGROUND_H
#define HX_STORAGE_BACKGROUND_H

#include <stdbool.h>

#include <event2/event.h>

#include "config.h"
#include "segment_store.h"

typedef struct storage_bg storage_bg;

/* Writes and answers the appends the server has staged. The store refuses
 * background work while appends are staged, and under load some always
 * are when a timer fires, so each tick flushes them first. */
typedef void (*storage_bg_flush_fn)(void *arg);

/* Starts the timers for node self_id of cluster (copied: the peers'
 * addresses, retention_s). The store must outlive the returned object.
 * HX_ERR_NOMEM, HX_ERR_IO (an event could not be created). */
int storage_bg_create(struct event_base *base, segment_store *store,
                      const hx_cluster_cfg *cluster, const char *self_id,
                      storage_bg_flush_fn flush, void *flush_arg,
                      storage_bg **out);
/* Stops the timers and closes the repair connections. NULL is a no-op. */
void storage_bg_destroy(storage_bg *bg);

/* Items one tick may scrub, given the records appended by writers since
 * the previous tick. Foreground first (Aurora: background work yields to
 * foreground load): while writers append, the scrub trickles at
 * STORAGE_BG_SCRUB_BUSY_ITEMS per tick, never zero, so a node under
 * constant load still finishes a pass; when idle it runs at full speed. */
#define STORAGE_BG_SCRUB_IDLE_ITEMS 1000u
#define STORAGE_BG_SCRUB_BUSY_ITEMS 25u
unsigned storage_bg_scrub_items(uint64_t fg_records_since_tick);

/* Items of one step of the startup chain check (segment_verify.c), which
 * runs step after step, load or not, while any segment is unverified:
 * reads of a PG wait for it when all its members crashed, so it does not
 * yield to appends; a step is a few ms, so neither do they wait long. */
#define STORAGE_BG_VERIFY_ITEMS 4096u

/* Whether a coalescing pass runs now: on every slow tick, and while a
 * segment's coalescing lags its SCL by at least
 * STORAGE_BG_COALESCE_BEHIND_LSNS (then pass after pass, with the loop's
 * I/O between them), so that coalescing (and GC, which stops at the
 * coalesced LSN) keeps up with a steady write load. */
#define STORAGE_BG_COALESCE_BEHIND_LSNS 4096u
bool storage_bg_coalesce_due(bool slow_tick, uint64_t lag_lsns);

#endif
