/* The storage node's network side: a listener, one hx_conn per client, and
 * the dispatch of every request to the segment store.
 *
 * Every request is answered on its connection with the same req_id: the
 * matching reply, or an Envelope.error {code, message, current_epoch}.
 * Appends are group-committed across connections: all appends read in one
 * event-loop iteration share one synced RocksDB write, and their acks go
 * out only after it returned (see storage_server.c).
 */
#ifndef HX_STORAGE_SERVER_H
#define HX_STORAGE_SERVER_H

#include <stddef.h>

#include <event2/event.h>

#include "config.h"
#include "hexad.pb-c.h"

typedef struct storage_server storage_server;

/* Per-connection write backlog past which a client's requests stop being
 * read (it does not read its replies). */
#define STORAGE_SERVER_PAUSE_READS_BYTES (32u << 20)

/* Serves storage node `self` (an entry of cluster; both are copied):
 * opens the store in self->data_dir (which must exist) and listens on
 * self->addr. On failure returns a hx_err code with a message naming the
 * cause in err (e.g. the port in use): HX_ERR_IO, HX_ERR_CONFIG, ... */
int storage_server_create(struct event_base *base,
                          const hx_cluster_cfg *cluster,
                          const hx_storage_cfg *self, storage_server **out,
                          char *err, size_t err_len);

/* The node's status and counters (NodeStatus, proto/README.md), as the
 * status request and the metrics endpoint report them. Free with
 * storage_server_status_free(). HX_ERR_NOMEM. */
int storage_server_status(storage_server *srv, Hexad__NodeStatus **out);
void storage_server_status_free(Hexad__NodeStatus *st);

/* Flushes staged appends (their acks are sent if the sockets take them),
 * closes every connection and the listener, closes the store. NULL is a
 * no-op. */
void storage_server_destroy(storage_server *srv);

#endif
