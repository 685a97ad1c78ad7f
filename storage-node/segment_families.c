/* The segment store's two RocksDB column families: "records" for the 'r'
 * keys, "default" for every other key (why: segment_store_internal.h,
 * "Column families"). Opening both, moving an older store's records into
 * theirs, and what each holds on disk.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "log.h"
#include "segment_store_internal.h"

void families_open(segment_store *s, char **err)
{
    const char *names[2] = {"default", "records"};
    const rocksdb_options_t *cf_opts[2] = {s->opts, s->opts};
    rocksdb_column_family_handle_t *h[2] = {NULL, NULL};
    rocksdb_options_set_create_missing_column_families(s->opts, 1);
    s->db = rocksdb_open_column_families(s->opts, s->path, 2, names, cf_opts,
                                         h, err);
    if (*err == NULL) {
        s->cf_main = h[0];
        s->cf_records = h[1];
    }
}

/* Each batch is journaled like any write, so a crash midway resumes here
 * on the next open. Each batch seeks past the last key the one before
 * moved, not over the tombstones that one left. */
int records_move_to_family(segment_store *s, segment_store_why *why)
{
    enum { BATCH_KEYS = 4096 };
    const uint8_t tag[1] = {KEY_RECORD};
    uint8_t from[KEY_MAX_LEN] = {KEY_RECORD};
    size_t from_len = 1;
    uint64_t moved = 0;
    int rc = HX_OK;
    for (;;) {
        rocksdb_iterator_t *it =
            rocksdb_create_iterator_cf(s->db, s->ropts, s->cf_main);
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        const uint8_t *k;
        size_t kl, n = 0;
        for (rocksdb_iter_seek(it, (const char *)from, from_len);
             n < BATCH_KEYS && iter_prefix(it, tag, 1, &k, &kl);
             rocksdb_iter_next(it), n++) {
            size_t vl = 0;
            const char *v = rocksdb_iter_value(it, &vl);
            batch_put(s, wb, k, kl, v, vl);
            rocksdb_writebatch_delete_cf(wb, s->cf_main, (const char *)k, kl);
            from_len = kl < KEY_MAX_LEN ? kl : KEY_MAX_LEN;
            memcpy(from, k, from_len);
        }
        rc = iter_status(it, why, "records to move to their column family");
        rocksdb_iter_destroy(it);
        if (rc == HX_OK && n > 0)
            rc = store_write(s, wb, "records moved to their column family",
                             why);
        rocksdb_writebatch_destroy(wb);
        moved += n;
        if (rc != HX_OK || n < BATCH_KEYS)
            break;
        if (moved % (BATCH_KEYS * 64) == 0)
            HX_INFO("segment store %s: %" PRIu64 " records moved to their "
                    "column family so far", s->path, moved);
    }
    if (rc == HX_OK && moved > 0)
        HX_INFO("segment store %s: %" PRIu64 " records moved to their column "
                "family (a store from an older hexad)", s->path, moved);
    return rc;
}

static void family_stats(const segment_store *s,
                         rocksdb_column_family_handle_t *cf,
                         segment_store_family_stats *out)
{
    uint64_t v = 0;
    out->sst_bytes = rocksdb_property_int_cf(
                         s->db, cf, "rocksdb.total-sst-files-size", &v) == 0
                         ? v
                         : 0;
    /* A string property only: GetIntProperty does not know it. */
    char *l0 = rocksdb_property_value_cf(s->db, cf,
                                         "rocksdb.num-files-at-level0");
    out->l0_files = l0 ? strtoull(l0, NULL, 10) : 0;
    rocksdb_free(l0);
}

void segment_store_families(const segment_store *s,
                            segment_store_family_stats *records,
                            segment_store_family_stats *other)
{
    family_stats(s, s->cf_records, records);
    family_stats(s, s->cf_main, other);
}
