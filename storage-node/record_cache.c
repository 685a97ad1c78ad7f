/* Record cache (record_cache.h): per segment, an array of entries sorted
 * by LSN, live ones in [head, end); a dropped entry in the middle keeps
 * its LSN (so the order holds for binary search) with bytes NULL until a
 * compaction removes it. The head moves past dropped and evicted entries;
 * once half the range [head, end) is dropped, it is compacted. */
#include "record_cache.h"

#include <stdlib.h>
#include <string.h>

#define SLOTS_MIN 64u

typedef struct {
    uint64_t lsn;
    uint8_t *bytes; /* NULL: dropped */
    size_t len;
} entry;

typedef struct {
    uint32_t vol, pg;
    entry *e;
    size_t head, end, cap;
    size_t dropped; /* in [head, end) */
} seg_cache;

struct record_cache {
    size_t max_bytes;
    seg_cache *segs; /* sorted by (vol, pg) */
    size_t n_segs, cap_segs;
    record_cache_stats st;
};

record_cache *record_cache_new(size_t max_bytes)
{
    record_cache *rc = calloc(1, sizeof *rc);
    if (rc != NULL)
        rc->max_bytes = max_bytes;
    return rc;
}

void record_cache_free(record_cache *rc)
{
    if (rc == NULL)
        return;
    for (size_t i = 0; i < rc->n_segs; i++) {
        seg_cache *c = &rc->segs[i];
        for (size_t j = c->head; j < c->end; j++)
            free(c->e[j].bytes);
        free(c->e);
    }
    free(rc->segs);
    free(rc);
}

static int seg_cmp(const seg_cache *c, uint32_t vol, uint32_t pg)
{
    if (c->vol != vol)
        return c->vol < vol ? -1 : 1;
    return c->pg < pg ? -1 : c->pg > pg;
}

/* Index of the first segment at or after (vol, pg). */
static size_t seg_lower(const record_cache *rc, uint32_t vol, uint32_t pg)
{
    size_t lo = 0, hi = rc->n_segs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg_cmp(&rc->segs[mid], vol, pg) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static seg_cache *seg_find(const record_cache *rc, uint32_t vol, uint32_t pg)
{
    size_t i = seg_lower(rc, vol, pg);
    return i < rc->n_segs && seg_cmp(&rc->segs[i], vol, pg) == 0
               ? &rc->segs[i]
               : NULL;
}

static seg_cache *seg_get(record_cache *rc, uint32_t vol, uint32_t pg)
{
    size_t i = seg_lower(rc, vol, pg);
    if (i < rc->n_segs && seg_cmp(&rc->segs[i], vol, pg) == 0)
        return &rc->segs[i];
    if (rc->n_segs == rc->cap_segs) {
        size_t ncap = rc->cap_segs ? 2 * rc->cap_segs : 4;
        seg_cache *ns = realloc(rc->segs, ncap * sizeof *ns);
        if (ns == NULL)
            return NULL;
        rc->segs = ns;
        rc->cap_segs = ncap;
    }
    memmove(&rc->segs[i + 1], &rc->segs[i],
            (rc->n_segs - i) * sizeof *rc->segs);
    rc->segs[i] = (seg_cache){.vol = vol, .pg = pg};
    rc->n_segs++;
    return &rc->segs[i];
}

static void entry_release(record_cache *rc, entry *x)
{
    free(x->bytes);
    x->bytes = NULL;
    rc->st.bytes -= x->len + RECORD_CACHE_ENTRY_BYTES;
    rc->st.entries--;
}

/* Moves the head past dropped entries. */
static void head_settle(seg_cache *c)
{
    while (c->head < c->end && c->e[c->head].bytes == NULL) {
        c->head++;
        c->dropped--;
    }
    if (c->head == c->end)
        c->head = c->end = 0;
}

/* Live entries to the front of the array, in order. */
static void compact(seg_cache *c)
{
    size_t w = 0;
    for (size_t r = c->head; r < c->end; r++)
        if (c->e[r].bytes != NULL)
            c->e[w++] = c->e[r];
    c->head = 0;
    c->end = w;
    c->dropped = 0;
}

/* Evicts the oldest entry of the segment whose oldest is oldest (invariant
 * 3); false when the cache is empty. */
static bool evict_one(record_cache *rc)
{
    seg_cache *oldest = NULL;
    for (size_t i = 0; i < rc->n_segs; i++) {
        seg_cache *c = &rc->segs[i];
        if (c->head < c->end &&
            (oldest == NULL || c->e[c->head].lsn < oldest->e[oldest->head].lsn))
            oldest = c;
    }
    if (oldest == NULL)
        return false;
    entry_release(rc, &oldest->e[oldest->head]);
    oldest->head++;
    head_settle(oldest);
    rc->st.evicted++;
    return true;
}

/* Room for one more entry at c->end. Compacts only when that frees a
 * quarter of the slots, so a put costs O(1) amortized and the slots stay
 * below 8/3 of the live entries (plus SLOTS_MIN). */
static bool make_slot(seg_cache *c)
{
    if (c->end < c->cap)
        return true;
    if (c->cap > 0 && c->head + c->dropped >= c->cap / 4) {
        compact(c);
        return true;
    }
    size_t ncap = c->cap ? 2 * c->cap : SLOTS_MIN;
    entry *ne = realloc(c->e, ncap * sizeof *ne);
    if (ne == NULL)
        return false;
    c->e = ne;
    c->cap = ncap;
    return true;
}

bool record_cache_put(record_cache *rc, uint32_t vol, uint32_t pg,
                      uint64_t lsn, const void *bytes, size_t len)
{
    size_t charge = len + RECORD_CACHE_ENTRY_BYTES;
    if (charge > rc->max_bytes)
        return false;
    seg_cache *c = seg_find(rc, vol, pg);
    if (c != NULL && c->end > c->head && lsn <= c->e[c->end - 1].lsn)
        return false; /* invariant 2 */
    while (rc->st.bytes + charge > rc->max_bytes && evict_one(rc))
        ;
    c = seg_get(rc, vol, pg); /* evictions do not move segments */
    if (c == NULL || !make_slot(c))
        return false;
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return false;
    memcpy(copy, bytes, len);
    c->e[c->end++] = (entry){.lsn = lsn, .bytes = copy, .len = len};
    rc->st.bytes += charge;
    rc->st.entries++;
    return true;
}

/* The live-or-dropped slot holding lsn in c, or NULL. */
static entry *slot_find(const seg_cache *c, uint64_t lsn)
{
    size_t lo = c->head, hi = c->end;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->e[mid].lsn < lsn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->end && c->e[lo].lsn == lsn ? &c->e[lo] : NULL;
}

const uint8_t *record_cache_find(record_cache *rc, uint32_t vol,
                                 uint32_t pg, uint64_t lsn, size_t *len)
{
    const seg_cache *c = seg_find(rc, vol, pg);
    const entry *x = c ? slot_find(c, lsn) : NULL;
    if (x == NULL || x->bytes == NULL) {
        rc->st.misses++;
        return NULL;
    }
    rc->st.hits++;
    *len = x->len;
    return x->bytes;
}

void record_cache_drop(record_cache *rc, uint32_t vol, uint32_t pg,
                       uint64_t lsn)
{
    seg_cache *c = seg_find(rc, vol, pg);
    entry *x = c ? slot_find(c, lsn) : NULL;
    if (x == NULL || x->bytes == NULL)
        return;
    entry_release(rc, x);
    c->dropped++;
    head_settle(c);
    if (c->end - c->head > SLOTS_MIN && 2 * c->dropped > c->end - c->head)
        compact(c);
}

void record_cache_truncate(record_cache *rc, uint32_t vol, uint32_t pg,
                           uint64_t from)
{
    seg_cache *c = seg_find(rc, vol, pg);
    if (c == NULL)
        return;
    while (c->end > c->head && c->e[c->end - 1].lsn >= from) {
        entry *x = &c->e[--c->end];
        if (x->bytes != NULL)
            entry_release(rc, x);
        else
            c->dropped--;
    }
    head_settle(c);
}

record_cache_stats record_cache_get_stats(const record_cache *rc)
{
    return rc->st;
}
