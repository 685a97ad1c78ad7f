/* The store's write-ahead journal and RocksDB's memtables (segment_store.c
 * invariant 8): every batch is synced to the journal (segment_journal.h),
 * then applied to RocksDB without RocksDB's own WAL. An entry may leave the
 * journal only once RocksDB has flushed the memtables holding its batch.
 *
 * A checkpoint is that flush, then a release of the journal's tail to the
 * head read before the flush started: every batch below it was applied
 * before the flush switched memtables, so it is in an SST file when the
 * flush returns. Hence a checkpoint starts only after the write that
 * triggers it was applied to RocksDB (journal_applied), never between a
 * batch's journal append and its RocksDB write: started there, its flush
 * could switch memtables first, the batch would land in the new memtable,
 * and its journal entry would be released all the same. A crash then lost
 * an acknowledged batch while the segment's persisted SCL, carried by
 * later batches, still covered it: a node served a page without one of
 * its records (seen once in test_writer_crash; test_crash_after_checkpoint
 * replays it). Checkpoints run on a thread of their own, one at a time,
 * once a quarter of the ring is in use, so appends seldom find the ring
 * full; when one does, it waits for the checkpoint (or runs one on the
 * writing thread before appending: everything journaled is applied).
 *
 * Replay is safe to repeat: batches hold only puts and deletes of whole
 * values, so applying a suffix of the journal again, in order, over a
 * store that already holds part of it, gives the same keys and values.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hx_err.h"
#include "log.h"
#include "segment_journal.h"
#include "segment_store_internal.h"

#define CHECKPOINT_AT_FRACTION 4 /* start one at ring / this in use */

/* Flushes every memtable of both column families and waits for it (the
 * caller's thread). One family after the other is enough: the journal is
 * released only after both, so a crash in between replays into both. */
static int flush_memtables(segment_store *s, segment_store_why *why)
{
    char *err = NULL;
    rocksdb_flush_cf(s->db, s->fopts, s->cf_main, &err);
    if (err == NULL)
        rocksdb_flush_cf(s->db, s->fopts, s->cf_records, &err);
    if (err == NULL)
        return HX_OK;
    int rc = rocks_err(err);
    why_set(why, "RocksDB flush failed: %s", err);
    rocksdb_free(err);
    return rc;
}

static int checkpoint(segment_store *s, uint64_t upto, segment_store_why *why)
{
    int rc = flush_memtables(s, why);
    if (rc == HX_OK)
        rc = segment_journal_release(s->journal, upto, why);
    return rc;
}

static void *checkpoint_main(void *arg)
{
    segment_store *s = arg;
    segment_store_why why = {0};
    if (checkpoint(s, s->checkpoint_upto, &why) != HX_OK)
        HX_WARN("segment store %s: checkpoint failed (%s); the journal "
                "keeps its entries and the next one retries", s->path,
                why.msg);
    atomic_store(&s->checkpointing, false);
    return NULL;
}

static void checkpoint_join(segment_store *s)
{
    if (!s->checkpoint_started)
        return;
    pthread_join(s->checkpoint_thread, NULL);
    s->checkpoint_started = false;
}

/* Starts a checkpoint on its own thread once a quarter of the ring is in
 * use, unless one runs. After a failed one (a full disk: the tail did not
 * move) the next waits for another sixteenth of the ring to be written,
 * so a failing flush is retried, and logged, now and then, not on every
 * write. */
void journal_applied(segment_store *s)
{
    segment_journal *j = s->journal;
    uint64_t ring = segment_journal_ring_bytes(j);
    if (atomic_load(&s->checkpointing) ||
        segment_journal_used(j) < ring / CHECKPOINT_AT_FRACTION ||
        segment_journal_head(j) - s->checkpoint_upto < ring / 16)
        return;
    checkpoint_join(s); /* the previous one, finished */
    s->checkpoint_upto = segment_journal_head(j);
    int err = 0;
    if (!s->checkpoint_inline) {
        atomic_store(&s->checkpointing, true);
        err = pthread_create(&s->checkpoint_thread, NULL, checkpoint_main, s);
    }
    if (s->checkpoint_inline || err != 0) {
        atomic_store(&s->checkpointing, false);
        if (err != 0)
            HX_WARN("cannot start a checkpoint thread (%s); checkpointing "
                    "on the event loop", strerror(err));
        segment_store_why why = {0};
        if (checkpoint(s, s->checkpoint_upto, &why) != HX_OK)
            HX_WARN("segment store %s: checkpoint failed (%s)", s->path,
                    why.msg);
        else
            s->counters.checkpoints++;
        return;
    }
    s->checkpoint_started = true;
    s->counters.checkpoints++;
}

int journal_put(segment_store *s, rocksdb_writebatch_t *wb, uint64_t *pos,
                segment_store_why *why)
{
    size_t len = 0;
    const char *rep = rocksdb_writebatch_data(wb, &len);
    *pos = segment_journal_head(s->journal);
    int rc = segment_journal_append(s->journal, rep, len, why);
    if (rc == HX_ERR_BUSY) {
        /* The ring is full: the running checkpoint frees it, or one on
         * this thread does. */
        checkpoint_join(s);
        rc = segment_journal_append(s->journal, rep, len, why);
    }
    if (rc == HX_ERR_BUSY) {
        rc = checkpoint(s, segment_journal_head(s->journal), why);
        if (rc == HX_OK) {
            s->counters.checkpoints++;
            rc = segment_journal_append(s->journal, rep, len, why);
        }
    }
    return rc;
}

static int replay_apply(void *arg, const char *payload, size_t len)
{
    segment_store *s = arg;
    char *err = NULL;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create_from(payload, len);
    rocksdb_write(s->db, s->wnowal, wb, &err);
    rocksdb_writebatch_destroy(wb);
    if (err == NULL)
        return 0;
    HX_ERROR("segment store %s: replayed batch not applied: %s", s->path,
             err);
    rocksdb_free(err);
    return HX_ERR_IO;
}

int journal_open_and_replay(segment_store *s, const char *data_dir,
                            uint64_t journal_bytes, segment_store_why *why)
{
    char path[700];
    snprintf(path, sizeof path, "%s/journal", data_dir);
    int rc = segment_journal_open(path, journal_bytes, &s->journal, why);
    if (rc != HX_OK)
        return rc;
    uint64_t n = 0, bytes = segment_journal_tail(s->journal);
    rc = segment_journal_replay(s->journal, replay_apply, s, &n, why);
    if (rc != HX_OK) {
        if (why && !why->msg[0])
            why_set(why, "journal replay into RocksDB failed");
        return rc;
    }
    bytes = segment_journal_head(s->journal) - bytes;
    bool resize = segment_journal_size(s->journal) !=
                  journal_bytes - journal_bytes % SEGMENT_JOURNAL_RING_OFFSET;
    if (n > 0)
        HX_INFO("segment store %s: %" PRIu64 " journal entries (%" PRIu64
                " bytes) replayed", s->path, n, bytes);
    if (n == 0 && !resize)
        return HX_OK;
    rc = checkpoint(s, segment_journal_head(s->journal), why);
    if (rc != HX_OK || !resize)
        return rc;
    HX_INFO("segment store %s: journal resized from %" PRIu64 " to %" PRIu64
            " bytes", s->path, segment_journal_size(s->journal),
            journal_bytes);
    segment_journal_close(s->journal);
    s->journal = NULL;
    if (unlink(path) != 0) {
        why_set(why, "cannot replace the journal %s: %s", path,
                strerror(errno));
        return HX_ERR_IO;
    }
    return segment_journal_open(path, journal_bytes, &s->journal, why);
}

void journal_close(segment_store *s)
{
    if (s->journal == NULL)
        return;
    checkpoint_join(s);
    /* A clean stop leaves nothing to replay. */
    segment_store_why why = {0};
    if (s->db && segment_journal_used(s->journal) > 0 &&
        checkpoint(s, segment_journal_head(s->journal), &why) != HX_OK)
        HX_WARN("segment store %s: final checkpoint failed (%s); the next "
                "open replays the journal", s->path, why.msg);
    segment_journal_close(s->journal);
    s->journal = NULL;
}

uint64_t segment_store_journal_used(const segment_store *s)
{
    return s->journal ? segment_journal_used(s->journal) : 0;
}

uint64_t segment_store_journal_bytes(const segment_store *s)
{
    return s->journal ? segment_journal_ring_bytes(s->journal) : 0;
}
