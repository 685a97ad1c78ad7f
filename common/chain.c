/* Segment chain: SCL tracking from prev_lsn backlinks.
 *
 * DESIGN (the invariants are numbered in chain.h; this is how they are kept)
 *
 * Two open-addressing hash maps (linear probing, power-of-two capacity, load
 * at most 1/2, backward-shift deletion so there are no tombstones) hold the
 * pending records, i.e. the held records with lsn > scl (invariant 2):
 *
 *   by_lsn:  lsn      -> prev_lsn, cpl   (duplicate checks, hx_chain_has)
 *   by_prev: prev_lsn -> lsn             (advancing scl: one lookup a step)
 *
 * Both maps always hold the same set of records. A record joins them in
 * hx_chain_add() and leaves them either when scl advances over it
 * (chain_advance) or when hx_chain_truncate() drops it.
 *
 * One writer per PG means a prev_lsn has at most one successor; a second
 * pending record with the same prev_lsn, or a record above scl whose
 * prev_lsn is below scl, would fork the chain and is refused with
 * HX_ERR_INVALID (nothing changes).
 *
 * max_pending is a high-water mark of pending LSNs: it is exact after
 * hx_chain_truncate() (which rescans), and when advancing consumes the
 * highest pending record scl reaches it, so max(scl, max_pending) is always
 * the highest held LSN.
 */
#include "chain.h"

#include <assert.h>
#include <stdlib.h>

#include "hx_err.h"

/* ------------------------------------------------------------------------
 * A small uint64 -> (uint64, bool) open-addressing map.
 * ---------------------------------------------------------------------- */

#define CHAIN_MAP_CAP_MIN 16u

typedef struct {
    uint64_t key;
    uint64_t val;
    bool used;
    bool cpl;
} chain_slot;

typedef struct {
    chain_slot *slots;
    size_t cap; /* power of two, or 0 before the first insert */
    size_t len;
} chain_map;

static size_t chain_hash(uint64_t k)
{
    /* splitmix64 finalizer: consecutive LSNs spread over the table. */
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebULL;
    k ^= k >> 31;
    return (size_t)k;
}

static chain_slot *chain_map_find(const chain_map *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = chain_hash(key) & mask;; i = (i + 1) & mask) {
        chain_slot *s = &m->slots[i];
        if (!s->used)
            return NULL;
        if (s->key == key)
            return s;
    }
}

/* Places key without checking for presence or capacity. */
static void chain_map_place(chain_map *m, uint64_t key, uint64_t val,
                            bool cpl)
{
    size_t mask = m->cap - 1;
    size_t i = chain_hash(key) & mask;
    while (m->slots[i].used)
        i = (i + 1) & mask;
    m->slots[i] = (chain_slot){ .key = key, .val = val, .used = true,
                                .cpl = cpl };
    m->len++;
}

/* Makes room for one more entry; on failure the map is unchanged. */
static int chain_map_reserve(chain_map *m)
{
    if (m->cap != 0 && (m->len + 1) * 2 <= m->cap)
        return HX_OK;
    size_t ncap = m->cap ? m->cap * 2 : CHAIN_MAP_CAP_MIN;
    if (ncap < m->cap)
        return HX_ERR_NOMEM;
    chain_slot *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return HX_ERR_NOMEM;
    chain_map old = *m;
    m->slots = ns;
    m->cap = ncap;
    m->len = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].used)
            chain_map_place(m, old.slots[i].key, old.slots[i].val,
                            old.slots[i].cpl);
    free(old.slots);
    return HX_OK;
}

/* Deletes the slot s points at, shifting later members of its probe run
 * back so lookups never stop early (no tombstones). */
static void chain_map_erase(chain_map *m, chain_slot *s)
{
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(s - m->slots);
    size_t i = hole;
    for (;;) {
        i = (i + 1) & mask;
        if (!m->slots[i].used)
            break;
        size_t home = chain_hash(m->slots[i].key) & mask;
        /* The entry at i may move to the hole unless its home lies
         * cyclically in (hole, i]. */
        bool stays = (hole <= i) ? (home > hole && home <= i)
                                 : (home > hole || home <= i);
        if (!stays) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole].used = false;
    m->len--;
}

/* ------------------------------------------------------------------------
 * The chain.
 * ---------------------------------------------------------------------- */

struct hx_chain {
    uint64_t scl;
    uint64_t scl_cpl;
    uint64_t max_pending; /* see the design note */
    chain_map by_lsn;     /* lsn -> prev_lsn (val), cpl */
    chain_map by_prev;    /* prev_lsn -> lsn (val) */
};

hx_chain *hx_chain_create(uint64_t scl, uint64_t scl_cpl)
{
    hx_chain *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    assert(scl_cpl <= scl);
    c->scl = scl;
    c->scl_cpl = scl_cpl;
    return c;
}

void hx_chain_destroy(hx_chain *c)
{
    if (c == NULL)
        return;
    free(c->by_lsn.slots);
    free(c->by_prev.slots);
    free(c);
}

/* Moves scl along the pending records that continue the chain. */
static void chain_advance(hx_chain *c)
{
    for (;;) {
        chain_slot *p = chain_map_find(&c->by_prev, c->scl);
        if (p == NULL)
            return;
        uint64_t lsn = p->val;
        chain_map_erase(&c->by_prev, p);
        chain_slot *l = chain_map_find(&c->by_lsn, lsn);
        assert(l != NULL);
        bool cpl = l->cpl;
        chain_map_erase(&c->by_lsn, l);
        assert(lsn > c->scl);
        c->scl = lsn;
        if (cpl)
            c->scl_cpl = lsn;
    }
}

int hx_chain_add(hx_chain *c, uint64_t lsn, uint64_t prev_lsn, bool cpl)
{
    if (prev_lsn >= lsn)
        return HX_ERR_INVALID;
    if (lsn <= c->scl)
        return 0;
    chain_slot *dup = chain_map_find(&c->by_lsn, lsn);
    if (dup != NULL)
        return dup->val == prev_lsn ? 0 : HX_ERR_INVALID;
    /* Forks: see the design note. */
    if (prev_lsn < c->scl || chain_map_find(&c->by_prev, prev_lsn) != NULL)
        return HX_ERR_INVALID;

    int rc = chain_map_reserve(&c->by_lsn);
    if (rc != HX_OK)
        goto fail;
    rc = chain_map_reserve(&c->by_prev);
    if (rc != HX_OK)
        goto fail;
    chain_map_place(&c->by_lsn, lsn, prev_lsn, cpl);
    chain_map_place(&c->by_prev, prev_lsn, lsn, false);
    if (lsn > c->max_pending)
        c->max_pending = lsn;
    chain_advance(c);
    assert(c->by_lsn.len == c->by_prev.len);
    return 1;

fail:
    /* A grown map is still a valid map: nothing observable changed. */
    return rc;
}

bool hx_chain_has(const hx_chain *c, uint64_t lsn)
{
    return lsn <= c->scl || chain_map_find(&c->by_lsn, lsn) != NULL;
}

uint64_t hx_chain_scl(const hx_chain *c)
{
    return c->scl;
}

uint64_t hx_chain_scl_cpl(const hx_chain *c)
{
    return c->scl_cpl;
}

uint64_t hx_chain_max_lsn(const hx_chain *c)
{
    if (c->by_lsn.len == 0)
        return c->scl;
    return c->max_pending > c->scl ? c->max_pending : c->scl;
}

size_t hx_chain_pending(const hx_chain *c)
{
    return c->by_lsn.len;
}

void hx_chain_truncate(hx_chain *c, uint64_t from, uint64_t to,
                       uint64_t new_scl, uint64_t new_scl_cpl)
{
    if (from == 0)
        from = 1; /* LSN 0 is "no record", never held */
    if (from > to)
        return;
    /* Erasing slot i may shift a later entry of its probe run into slot i
     * (so look at i again) or into a later slot (scanned later); an
     * entry from a wrapped run start may land here too, but those were
     * already kept. Nothing unscanned moves behind i. */
    for (size_t i = 0; i < c->by_lsn.cap;) {
        chain_slot *s = &c->by_lsn.slots[i];
        if (s->used && s->key >= from && s->key <= to) {
            chain_slot *p = chain_map_find(&c->by_prev, s->val);
            assert(p != NULL && p->val == s->key);
            chain_map_erase(&c->by_prev, p);
            chain_map_erase(&c->by_lsn, s);
            continue;
        }
        i++;
    }
    if (c->scl >= from) {
        assert(new_scl < from);
        assert(new_scl_cpl <= new_scl);
        c->scl = new_scl;
        c->scl_cpl = new_scl_cpl;
    }
    c->max_pending = 0;
    for (size_t i = 0; i < c->by_lsn.cap; i++)
        if (c->by_lsn.slots[i].used && c->by_lsn.slots[i].key > c->max_pending)
            c->max_pending = c->by_lsn.slots[i].key;
    chain_advance(c);
}
