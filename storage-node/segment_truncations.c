/* Truncation ranges of a segment (DESIGN.md "Recovery"): what recoveries
 * cut, kept so that records of a dead writer in a cut range are refused
 * when they arrive late (by gossip from a peer that missed the recovery).
 *
 *   't' vol pg from(u64) -> to(u64) epoch(u64)
 *
 * Invariants:
 *  1. g->trunc is sorted by from and disjoint; overlapping or adjacent
 *     ranges merge (keeping the higher epoch: a writer never allocates
 *     inside its own truncated range, so nothing legitimate is refused by
 *     it). Ranges never merge across a gap: every range is one a writer
 *     recorded, however many recoveries the volume had, so a record
 *     between two ranges is never refused for lying in neither.
 *  2. The 't' keys of a segment equal g->trunc: a truncation rewrites them
 *     all in its own synced batch (truncations are rare; segment_store.c
 *     truncate_range), and the segment metadata written with every append
 *     batch carries none.
 *  3. A range whose `to` is at or below a node's SCL cannot matter to that
 *     node: the chain takes nothing at or below the SCL, and a dead
 *     writer's records never chain past the range they were cut in (the
 *     new writer links from below it, and allocates above it). So pull
 *     replies carry only the ranges reaching above the puller's after_lsn.
 */
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "segment_store_internal.h"

#define TRUNC_VAL_LEN 16u

static size_t key_trunc(uint8_t *k, uint32_t vol, uint32_t pg, uint64_t from)
{
    k[0] = KEY_TRUNC;
    put_be32(k + 1, vol);
    put_be32(k + 5, pg);
    put_be64(k + 9, from);
    return KEY_LSN_LEN;
}

int trunc_add(segment *g, uint64_t from, uint64_t to, uint64_t epoch)
{
    if (g->n_trunc == g->cap_trunc) {
        size_t ncap = g->cap_trunc ? 2 * g->cap_trunc : 8;
        trunc_range *nt = realloc(g->trunc, ncap * sizeof *nt);
        if (nt == NULL)
            return HX_ERR_NOMEM;
        g->trunc = nt;
        g->cap_trunc = ncap;
    }
    /* Insert at its place by from, then merge neighbours in one sweep. */
    size_t at = g->n_trunc;
    while (at > 0 && g->trunc[at - 1].from > from)
        at--;
    memmove(&g->trunc[at + 1], &g->trunc[at],
            (g->n_trunc - at) * sizeof g->trunc[0]);
    g->trunc[at] = (trunc_range){from, to, epoch};
    g->n_trunc++;
    size_t n = 0;
    for (size_t i = 0; i < g->n_trunc; i++) {
        trunc_range r = g->trunc[i];
        if (n > 0 && (g->trunc[n - 1].to == UINT64_MAX ||
                      r.from <= g->trunc[n - 1].to + 1)) {
            trunc_range *p = &g->trunc[n - 1];
            if (r.to > p->to)
                p->to = r.to;
            if (r.epoch > p->epoch)
                p->epoch = r.epoch;
        } else {
            g->trunc[n++] = r;
        }
    }
    g->n_trunc = n;
    return HX_OK;
}

/* Index of the first range whose `to` (by_to) or `from` is above x;
 * n_trunc when none. Both ascend (invariant 1). */
static size_t first_above(const segment *g, uint64_t x, bool by_to)
{
    size_t lo = 0, hi = g->n_trunc;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((by_to ? g->trunc[mid].to : g->trunc[mid].from) <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool in_truncated(const segment *g, uint64_t lsn, uint64_t epoch)
{
    /* Only the range before the first one starting above lsn may hold it. */
    size_t i = first_above(g, lsn, false);
    return i > 0 && lsn <= g->trunc[i - 1].to && epoch < g->trunc[i - 1].epoch;
}

size_t trunc_first_above(const segment *g, uint64_t after_lsn)
{
    return first_above(g, after_lsn, true);
}

int trunc_put_all(segment_store *s, rocksdb_writebatch_t *wb,
                  const segment *g, segment_store_why *why)
{
    uint8_t k[KEY_MAX_LEN], v[TRUNC_VAL_LEN];
    key_trunc(k, g->vol, g->pg, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    const uint8_t *ik;
    size_t ikl;
    for (rocksdb_iter_seek(it, (const char *)k, KEY_LSN_LEN);
         iter_prefix(it, k, 9, &ik, &ikl); rocksdb_iter_next(it))
        rocksdb_writebatch_delete(wb, (const char *)ik, ikl);
    int rc = iter_status(it, why, "truncation ranges");
    rocksdb_iter_destroy(it);
    for (size_t i = 0; rc == HX_OK && i < g->n_trunc; i++) {
        size_t kl = key_trunc(k, g->vol, g->pg, g->trunc[i].from);
        put_be64(v, g->trunc[i].to);
        put_be64(v + 8, g->trunc[i].epoch);
        rocksdb_writebatch_put(wb, (const char *)k, kl, (const char *)v,
                               sizeof v);
    }
    return rc;
}

int trunc_load(segment_store *s, segment *g, segment_store_why *why)
{
    uint8_t k[KEY_MAX_LEN];
    key_trunc(k, g->vol, g->pg, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator(s->db, s->ropts);
    const uint8_t *ik;
    size_t ikl;
    int rc = HX_OK;
    for (rocksdb_iter_seek(it, (const char *)k, KEY_LSN_LEN);
         rc == HX_OK && iter_prefix(it, k, 9, &ik, &ikl);
         rocksdb_iter_next(it)) {
        size_t vl = 0;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        uint64_t from = ikl == KEY_LSN_LEN ? get_be64(ik + 9) : 0;
        if (vl != TRUNC_VAL_LEN || from == 0 || get_be64(v) < from) {
            why_set(why, "segment %u/%u: a truncation range key does not "
                    "decode", g->vol, g->pg);
            rc = HX_ERR_CHECKSUM;
            break;
        }
        rc = trunc_add(g, from, get_be64(v), get_be64(v + 8));
    }
    if (rc == HX_OK)
        rc = iter_status(it, why, "truncation ranges");
    rocksdb_iter_destroy(it);
    return rc;
}

/* ---- what gossip sees ------------------------------------------------- */

int segment_store_truncations(const segment_store *s, uint32_t vol,
                              uint32_t pg, uint64_t after_lsn,
                              hx_lsn_range **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    const segment *g = seg_find(s, vol, pg);
    size_t first = g ? trunc_first_above(g, after_lsn) : 0;
    if (g == NULL || first == g->n_trunc)
        return HX_OK;
    hx_lsn_range *r = malloc((g->n_trunc - first) * sizeof *r);
    if (r == NULL)
        return HX_ERR_NOMEM;
    for (size_t i = first; i < g->n_trunc; i++)
        r[i - first] = (hx_lsn_range){g->trunc[i].from, g->trunc[i].to,
                                      g->trunc[i].epoch};
    *out = r;
    *n = g->n_trunc - first;
    return HX_OK;
}

int segment_store_pulled_add_sync(const segment_store *s, uint64_t after_lsn,
                                  Hexad__PulledRecords *p)
{
    const volume *v = vol_find(s, p->volume);
    const segment *g = seg_find(s, p->volume, p->pg);
    p->volume_epoch = v ? v->epoch : 0;
    size_t first = g ? trunc_first_above(g, after_lsn) : 0;
    if (g == NULL || first == g->n_trunc)
        return HX_OK;
    /* One block: the pointer array, then the messages it points to. */
    size_t n = g->n_trunc - first;
    void *block = malloc(n * (sizeof(Hexad__LsnRange *) +
                              sizeof(Hexad__LsnRange)));
    if (block == NULL)
        return HX_ERR_NOMEM;
    Hexad__LsnRange **ptrs = block;
    Hexad__LsnRange *r = (Hexad__LsnRange *)(ptrs + n);
    for (size_t i = 0; i < n; i++) {
        hexad__lsn_range__init(&r[i]);
        r[i].from_lsn = g->trunc[first + i].from;
        r[i].to_lsn = g->trunc[first + i].to;
        r[i].epoch = g->trunc[first + i].epoch;
        ptrs[i] = &r[i];
    }
    p->truncations = ptrs;
    p->n_truncations = n;
    return HX_OK;
}
