/* Fault injection into a stopped node's store (segment_store.h
 * segment_store_damage_records): the damage a bad disk does, for the tests
 * and for users' fault experiments. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "segment_store_internal.h"

/* Whether record lsn of segment (vol, pg) may be dropped: a later record
 * links to it (below the SCL, so not the newest) and GC keeps it. */
static bool droppable(const segment_store *s, uint32_t vol, uint32_t pg,
                      uint64_t lsn)
{
    const segment *g = seg_find(s, vol, pg);
    return g != NULL && lsn < hx_chain_scl(g->chain) && lsn > g->gc_lsn;
}

/* Puts the damage to one record into wb; false to skip it. */
static bool damage(const segment_store *s, segment_store_fault fault,
                   rocksdb_writebatch_t *wb, const uint8_t *ik, size_t ikl,
                   const char *v, size_t vl)
{
    if (vl == 0)
        return false;
    if (fault == SEGMENT_STORE_FAULT_CORRUPT) {
        char *bad = malloc(vl);
        if (bad == NULL)
            return false;
        memcpy(bad, v, vl);
        bad[vl / 2] ^= (char)0x5a; /* inside the record, not its framing */
        batch_put(s, wb, ik, ikl, bad, vl);
        free(bad);
        return true;
    }
    Hexad__Record *r = hexad__record__unpack(NULL, vl, (const uint8_t *)v);
    if (r == NULL)
        return false;
    uint32_t vol = get_be32(ik + 1), pg = get_be32(ik + 5);
    uint64_t lsn = get_be64(ik + 9);
    uint8_t dk[KEY_MAX_LEN];
    size_t dl = key_page(dk, vol, pg, r->page_no, lsn);
    rocksdb_writebatch_delete(wb, (const char *)dk, dl);
    dl = key_lsn(dk, KEY_CPL, vol, pg, lsn);
    rocksdb_writebatch_delete(wb, (const char *)dk, dl);
    batch_delete(s, wb, ik, ikl);
    hexad__record__free_unpacked(r, NULL);
    return true;
}

int segment_store_damage_records(segment_store *s, segment_store_fault fault,
                                 size_t every, size_t max, FILE *out,
                                 size_t *n, segment_store_why *why)
{
    *n = 0;
    if (every == 0)
        every = 1;
    uint8_t k[1] = {KEY_RECORD};
    rocksdb_iterator_t *it = store_iter(s, KEY_RECORD);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    const uint8_t *ik;
    size_t ikl, seen = 0;
    for (rocksdb_iter_seek(it, (const char *)k, 1);
         *n < max && iter_prefix(it, k, 1, &ik, &ikl);
         rocksdb_iter_next(it)) {
        if (ikl != KEY_LSN_LEN)
            continue;
        uint32_t vol = get_be32(ik + 1), pg = get_be32(ik + 5);
        uint64_t lsn = get_be64(ik + 9);
        if ((fault == SEGMENT_STORE_FAULT_DROP &&
             !droppable(s, vol, pg, lsn)) ||
            seen++ % every != 0)
            continue;
        size_t vl = 0;
        const char *v = rocksdb_iter_value(it, &vl);
        if (!damage(s, fault, wb, ik, ikl, v, vl))
            continue;
        if (out)
            fprintf(out, "%u %u %" PRIu64 "\n", vol, pg, lsn);
        (*n)++;
    }
    int rc = iter_status(it, why, "records to damage");
    rocksdb_iter_destroy(it);
    if (rc == HX_OK && *n > 0)
        rc = store_write(s, wb, "damaged records", why);
    rocksdb_writebatch_destroy(wb);
    return rc;
}
