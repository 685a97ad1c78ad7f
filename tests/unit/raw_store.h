/* For tests that edit a closed segment store's RocksDB directly (a lost
 * write, a flipped byte, an old format): opens it as the store does, with
 * both column families ("default", and "records" for the 'r' keys;
 * storage-node/segment_store_internal.h). Fails the test on any error. */
#ifndef HX_TEST_RAW_STORE_H
#define HX_TEST_RAW_STORE_H

#include <stdint.h>
#include <stdio.h>

#include <rocksdb/c.h>

typedef struct {
    rocksdb_options_t *o;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[2]; /* default, records */
} raw_store;

/* dir: the store's data directory (the database is dir/db). */
static inline void raw_store_open(raw_store *r, const char *dir)
{
    char path[256], *err = NULL;
    snprintf(path, sizeof path, "%s/db", dir);
    const char *names[2] = {"default", "records"};
    r->o = rocksdb_options_create();
    const rocksdb_options_t *cf_opts[2] = {r->o, r->o};
    r->ro = rocksdb_readoptions_create();
    r->wo = rocksdb_writeoptions_create();
    r->db = rocksdb_open_column_families(r->o, path, 2, names, cf_opts, r->cf,
                                         &err);
    assert_null(err);
}

/* The family holding keys tagged `tag`. */
static inline rocksdb_column_family_handle_t *raw_store_cf(const raw_store *r,
                                                           uint8_t tag)
{
    return tag == 'r' ? r->cf[1] : r->cf[0];
}

static inline void raw_store_close(raw_store *r)
{
    for (int i = 0; i < 2; i++)
        if (r->cf[i])
            rocksdb_column_family_handle_destroy(r->cf[i]);
    rocksdb_close(r->db);
    rocksdb_writeoptions_destroy(r->wo);
    rocksdb_readoptions_destroy(r->ro);
    rocksdb_options_destroy(r->o);
}

#endif
