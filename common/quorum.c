/* Writer-side durability bookkeeping: LSN allocation, PGCL, VCL, VDL.
 *
 * DESIGN (the invariants are numbered in quorum.h; this is how they are kept)
 *
 * Every allocated LSN is in exactly one of two states:
 *   outstanding  allocated, above its PG's durable mark (not yet on 4 copies)
 *   durable      at or below its PG's durable mark
 * where a PG's durable mark is the highest pgcl it has ever had. pgcl itself
 * is always the 4th highest current member SCL (invariant 1) and may drop
 * when hx_lsn_set_member_scl() replaces a member's SCL; the mark does not,
 * because a record that once reached a write quorum was acknowledged as
 * durable and VDL never moves back (invariant 3).
 *
 * Structures, each touched O(1) amortized per LSN over its whole life:
 *   pg->out   deque of the PG's outstanding LSNs, ascending. When the PG's
 *             mark rises, LSNs are popped from its front and flagged
 *             durable in the window.
 *   window    one byte per LSN in (vcl, last]: 1 when durable. vcl moves
 *             up over the window's durable prefix (invariant 2).
 *   cpls      deque of allocated CPL LSNs above vdl, ascending. vdl takes
 *             the last CPL popped at or below vcl (invariant 3).
 *   pgs       open-addressing map pg number -> state (PG numbers may be
 *             sparse).
 *
 * Back-pressure (invariant 4): an LSN may be allocated only while it is at
 * or below max(vdl, settled) + lal, where settled = next_lsn - 1 at create.
 * The LSNs in (vdl, settled] were truncated by recovery: nothing is
 * outstanding there, so they do not count against the limit. (Recovery
 * places next_lsn above vdl + lal, so anchoring the limit at vdl alone
 * would refuse the first allocation after every recovery.)
 *
 * Transitions: hx_lsn_alloc() adds an outstanding LSN; hx_lsn_on_ack() and
 * hx_lsn_set_member_scl() move member SCLs, then pgcl, the durable mark,
 * vcl and vdl, in that order (quorum_settle).
 */
#include "quorum.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"

#define QUORUM_DEQUE_CAP_MIN 16u
#define QUORUM_MAP_CAP_MIN 16u

uint64_t hx_quorum_pgcl(const uint64_t scl[HX_PG_MEMBERS])
{
    uint64_t s[HX_PG_MEMBERS];
    memcpy(s, scl, sizeof(s));
    /* Insertion sort, descending: six values. */
    for (int i = 1; i < HX_PG_MEMBERS; i++) {
        uint64_t v = s[i];
        int j = i;
        while (j > 0 && s[j - 1] < v) {
            s[j] = s[j - 1];
            j--;
        }
        s[j] = v;
    }
    return s[HX_WRITE_QUORUM - 1];
}

/* ------------------------------------------------------------------------
 * A growable ring of uint64 (FIFO, values pushed in ascending order).
 * ---------------------------------------------------------------------- */

typedef struct {
    uint64_t *v;
    size_t cap; /* power of two or 0 */
    size_t head;
    size_t len;
} quorum_deque;

static int quorum_deque_reserve(quorum_deque *d)
{
    if (d->len < d->cap)
        return HX_OK;
    size_t ncap = d->cap ? d->cap * 2 : QUORUM_DEQUE_CAP_MIN;
    if (ncap < d->cap || ncap > SIZE_MAX / sizeof(uint64_t))
        return HX_ERR_NOMEM;
    uint64_t *nv = malloc(ncap * sizeof(*nv));
    if (nv == NULL)
        return HX_ERR_NOMEM;
    for (size_t i = 0; i < d->len; i++)
        nv[i] = d->v[(d->head + i) & (d->cap - 1)];
    free(d->v);
    d->v = nv;
    d->cap = ncap;
    d->head = 0;
    return HX_OK;
}

/* Caller reserved first. */
static void quorum_deque_push(quorum_deque *d, uint64_t x)
{
    assert(d->len < d->cap);
    d->v[(d->head + d->len) & (d->cap - 1)] = x;
    d->len++;
}

static uint64_t quorum_deque_at(const quorum_deque *d, size_t i)
{
    assert(i < d->len);
    return d->v[(d->head + i) & (d->cap - 1)];
}

static void quorum_deque_pop(quorum_deque *d)
{
    assert(d->len > 0);
    d->head = (d->head + 1) & (d->cap - 1);
    d->len--;
}

/* ------------------------------------------------------------------------
 * The window: one durable flag per LSN in (vcl, last].
 * ---------------------------------------------------------------------- */

typedef struct {
    uint8_t *v;
    size_t cap; /* power of two or 0 */
    size_t head; /* slot of LSN vcl + 1 */
    size_t len;  /* last - vcl */
} quorum_window;

static int quorum_window_reserve(quorum_window *w)
{
    if (w->len < w->cap)
        return HX_OK;
    size_t ncap = w->cap ? w->cap * 2 : QUORUM_DEQUE_CAP_MIN;
    if (ncap < w->cap)
        return HX_ERR_NOMEM;
    uint8_t *nv = malloc(ncap);
    if (nv == NULL)
        return HX_ERR_NOMEM;
    for (size_t i = 0; i < w->len; i++)
        nv[i] = w->v[(w->head + i) & (w->cap - 1)];
    free(w->v);
    w->v = nv;
    w->cap = ncap;
    w->head = 0;
    return HX_OK;
}

static uint8_t *quorum_window_at(const quorum_window *w, size_t i)
{
    assert(i < w->len);
    return &w->v[(w->head + i) & (w->cap - 1)];
}

/* ------------------------------------------------------------------------
 * Per-PG state and the PG map.
 * ---------------------------------------------------------------------- */

typedef struct {
    uint32_t id;
    uint64_t member_scl[HX_PG_MEMBERS];
    uint64_t pgcl;         /* 4th highest member_scl */
    uint64_t durable_mark; /* highest pgcl ever; see the design note */
    uint64_t tail;         /* last LSN of this PG, 0 if none */
    quorum_deque out;      /* outstanding LSNs, ascending */
} quorum_pg;

typedef struct {
    quorum_pg **slots; /* NULL = empty */
    size_t cap;        /* power of two or 0 */
    size_t len;
} quorum_pg_map;

struct hx_lsn_tracker {
    uint64_t last;     /* last allocated LSN */
    uint64_t settled;  /* next_lsn - 1 at create */
    uint64_t vcl;
    uint64_t vdl;
    uint64_t lal;
    size_t outstanding;
    quorum_window window;
    quorum_deque cpls;
    quorum_pg_map pgs;
};

static size_t quorum_hash(uint32_t k)
{
    uint64_t x = k;
    x *= 0x9e3779b97f4a7c15ULL;
    return (size_t)(x >> 32);
}

static quorum_pg *quorum_pg_find(const hx_lsn_tracker *t, uint32_t id)
{
    const quorum_pg_map *m = &t->pgs;
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = quorum_hash(id) & mask;; i = (i + 1) & mask) {
        quorum_pg *p = m->slots[i];
        if (p == NULL)
            return NULL;
        if (p->id == id)
            return p;
    }
}

static void quorum_pg_place(quorum_pg_map *m, quorum_pg *p)
{
    size_t mask = m->cap - 1;
    size_t i = quorum_hash(p->id) & mask;
    while (m->slots[i] != NULL)
        i = (i + 1) & mask;
    m->slots[i] = p;
    m->len++;
}

/* Finds or creates the PG's state; NULL when out of memory. PGs are never
 * removed, so the map needs no deletion. */
static quorum_pg *quorum_pg_get(hx_lsn_tracker *t, uint32_t id)
{
    quorum_pg *p = quorum_pg_find(t, id);
    if (p != NULL)
        return p;
    quorum_pg_map *m = &t->pgs;
    if (m->cap == 0 || (m->len + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : QUORUM_MAP_CAP_MIN;
        quorum_pg **ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return NULL;
        quorum_pg_map old = *m;
        m->slots = ns;
        m->cap = ncap;
        m->len = 0;
        for (size_t i = 0; i < old.cap; i++)
            if (old.slots[i] != NULL)
                quorum_pg_place(m, old.slots[i]);
        free(old.slots);
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->id = id;
    quorum_pg_place(m, p);
    return p;
}

/* ------------------------------------------------------------------------
 * The tracker.
 * ---------------------------------------------------------------------- */

hx_lsn_tracker *hx_lsn_tracker_create(uint64_t next_lsn, uint64_t vdl,
                                      uint64_t lal)
{
    if (next_lsn == 0 || vdl >= next_lsn || lal == 0)
        return NULL;
    hx_lsn_tracker *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->last = next_lsn - 1;
    t->settled = next_lsn - 1;
    t->vcl = next_lsn - 1; /* every LSN below next_lsn is settled */
    t->vdl = vdl;
    t->lal = lal;
    return t;
}

void hx_lsn_tracker_destroy(hx_lsn_tracker *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->pgs.cap; i++) {
        if (t->pgs.slots[i] != NULL) {
            free(t->pgs.slots[i]->out.v);
            free(t->pgs.slots[i]);
        }
    }
    free(t->pgs.slots);
    free(t->window.v);
    free(t->cpls.v);
    free(t);
}

int hx_lsn_set_pg_tail(hx_lsn_tracker *t, uint32_t pg, uint64_t tail)
{
    /* Only what recovery settled (below the first new LSN) can be a
     * recovered tail, and only before the PG has new records. */
    if (tail > t->settled)
        return HX_ERR_INVALID;
    quorum_pg *p = quorum_pg_find(t, pg);
    if (p != NULL && p->tail > t->settled)
        return HX_ERR_INVALID;
    if (p == NULL) {
        p = quorum_pg_get(t, pg);
        if (p == NULL)
            return HX_ERR_NOMEM;
    }
    p->tail = tail;
    for (int i = 0; i < HX_PG_MEMBERS; i++)
        p->member_scl[i] = tail;
    p->pgcl = tail;
    if (tail > p->durable_mark)
        p->durable_mark = tail;
    return HX_OK;
}

static bool quorum_advance(hx_lsn_tracker *t);

static uint64_t quorum_limit(const hx_lsn_tracker *t)
{
    uint64_t anchor = t->vdl > t->settled ? t->vdl : t->settled;
    if (t->lal > UINT64_MAX - anchor)
        return UINT64_MAX;
    return anchor + t->lal;
}

int hx_lsn_alloc(hx_lsn_tracker *t, uint32_t pg, bool cpl, uint64_t *lsn,
                 uint64_t *prev_lsn)
{
    if (t->last == UINT64_MAX || t->last + 1 > quorum_limit(t))
        return HX_ERR_BUSY;
    int rc = HX_ERR_NOMEM;
    /* Reserve everything first so a failure changes nothing observable
     * (an empty PG state left behind is invisible: tail 0, SCLs 0). */
    quorum_pg *p = quorum_pg_get(t, pg);
    if (p == NULL)
        goto fail;
    if ((rc = quorum_deque_reserve(&p->out)) != HX_OK)
        goto fail;
    if ((rc = quorum_window_reserve(&t->window)) != HX_OK)
        goto fail;
    if (cpl && (rc = quorum_deque_reserve(&t->cpls)) != HX_OK)
        goto fail;

    uint64_t l = ++t->last;
    *lsn = l;
    *prev_lsn = p->tail;
    p->tail = l;
    /* A correct segment never acknowledges past its PG's tail, so a fresh
     * LSN lies above the PG's durable mark. Should a member have done so
     * anyway, the record counts as durable at once: the bookkeeping stays
     * exact either way. */
    t->window.len++;
    uint8_t *flag = quorum_window_at(&t->window, t->window.len - 1);
    if (l <= p->durable_mark) {
        *flag = 1;
    } else {
        *flag = 0;
        quorum_deque_push(&p->out, l);
        t->outstanding++;
    }
    if (cpl)
        quorum_deque_push(&t->cpls, l);
    if (*flag)
        (void)quorum_advance(t);
    return HX_OK;

fail:
    return rc;
}

/* Moves the PG's durable mark to its pgcl if higher, then vcl and vdl.
 * Returns true when vdl advanced. */
static bool quorum_settle(hx_lsn_tracker *t, quorum_pg *p)
{
    p->pgcl = hx_quorum_pgcl(p->member_scl);
    if (p->pgcl <= p->durable_mark)
        return false;
    p->durable_mark = p->pgcl;
    while (p->out.len > 0 && quorum_deque_at(&p->out, 0) <= p->durable_mark) {
        uint64_t l = quorum_deque_at(&p->out, 0);
        quorum_deque_pop(&p->out);
        assert(l > t->vcl && l <= t->last);
        *quorum_window_at(&t->window, (size_t)(l - t->vcl - 1)) = 1;
        t->outstanding--;
    }
    return quorum_advance(t);
}

/* Moves vcl over the window's durable prefix, then vdl to the last CPL at
 * or below vcl. Returns true when vdl advanced. */
static bool quorum_advance(hx_lsn_tracker *t)
{
    quorum_window *w = &t->window;
    while (w->len > 0 && *quorum_window_at(w, 0)) {
        w->head = (w->head + 1) & (w->cap - 1);
        w->len--;
        t->vcl++;
    }
    uint64_t old_vdl = t->vdl;
    while (t->cpls.len > 0 && quorum_deque_at(&t->cpls, 0) <= t->vcl) {
        t->vdl = quorum_deque_at(&t->cpls, 0);
        quorum_deque_pop(&t->cpls);
    }
    return t->vdl > old_vdl;
}

bool hx_lsn_on_ack(hx_lsn_tracker *t, uint32_t pg, int member, uint64_t scl)
{
    if (member < 0 || member >= HX_PG_MEMBERS)
        return false;
    quorum_pg *p = quorum_pg_find(t, pg);
    if (p == NULL || scl <= p->member_scl[member])
        return false; /* unknown PG, or a stale or repeated ack */
    p->member_scl[member] = scl;
    return quorum_settle(t, p);
}

bool hx_lsn_set_member_scl(hx_lsn_tracker *t, uint32_t pg, int member,
                           uint64_t scl)
{
    if (member < 0 || member >= HX_PG_MEMBERS)
        return false;
    quorum_pg *p = quorum_pg_find(t, pg);
    if (p == NULL)
        return false;
    p->member_scl[member] = scl;
    return quorum_settle(t, p);
}

uint64_t hx_lsn_member_scl(const hx_lsn_tracker *t, uint32_t pg, int member)
{
    if (member < 0 || member >= HX_PG_MEMBERS)
        return 0;
    const quorum_pg *p = quorum_pg_find(t, pg);
    return p ? p->member_scl[member] : 0;
}

uint64_t hx_lsn_pgcl(const hx_lsn_tracker *t, uint32_t pg)
{
    const quorum_pg *p = quorum_pg_find(t, pg);
    return p ? p->pgcl : 0;
}

uint64_t hx_lsn_vcl(const hx_lsn_tracker *t)
{
    return t->vcl;
}

uint64_t hx_lsn_vdl(const hx_lsn_tracker *t)
{
    return t->vdl;
}

uint64_t hx_lsn_last_allocated(const hx_lsn_tracker *t)
{
    return t->last;
}

uint64_t hx_lsn_pg_tail(const hx_lsn_tracker *t, uint32_t pg)
{
    const quorum_pg *p = quorum_pg_find(t, pg);
    return p ? p->tail : 0;
}

size_t hx_lsn_outstanding(const hx_lsn_tracker *t)
{
    return t->outstanding;
}

void hx_lsn_check_invariants(const hx_lsn_tracker *t)
{
#ifdef NDEBUG
    (void)t;
#else
    size_t outstanding = 0;
    size_t npgs = 0;
    for (size_t i = 0; i < t->pgs.cap; i++) {
        const quorum_pg *p = t->pgs.slots[i];
        if (p == NULL)
            continue;
        npgs++;
        assert(quorum_pg_find(t, p->id) == p);
        /* 1: pgcl is the write-quorum point of the member SCLs. */
        assert(p->pgcl == hx_quorum_pgcl(p->member_scl));
        assert(p->durable_mark >= p->pgcl);
        /* 2: every outstanding record lies above vcl and the PG's mark,
         * ascending, and is not flagged durable. */
        uint64_t prev = 0;
        for (size_t k = 0; k < p->out.len; k++) {
            uint64_t l = quorum_deque_at(&p->out, k);
            assert(l > prev && l > p->durable_mark);
            assert(l > t->vcl && l <= t->last && l <= p->tail);
            assert(*quorum_window_at(&t->window, (size_t)(l - t->vcl - 1))
                   == 0);
            prev = l;
        }
        outstanding += p->out.len;
    }
    assert(npgs == t->pgs.len);
    assert(outstanding == t->outstanding);
    /* 2: vcl <= last, the window spans (vcl, last], and vcl + 1 (if
     * allocated) is not durable, so vcl is the highest such point. */
    assert(t->vcl <= t->last);
    assert(t->window.len == t->last - t->vcl);
    size_t not_durable = 0;
    for (size_t k = 0; k < t->window.len; k++)
        not_durable += *quorum_window_at(&t->window, k) == 0;
    assert(not_durable == t->outstanding);
    if (t->window.len > 0)
        assert(*quorum_window_at(&t->window, 0) == 0);
    /* 3: vdl <= vcl, and no pending CPL could still raise it. */
    assert(t->vdl <= t->vcl);
    uint64_t prev = t->vdl;
    for (size_t k = 0; k < t->cpls.len; k++) {
        uint64_t l = quorum_deque_at(&t->cpls, k);
        assert(l > prev && l > t->vcl && l <= t->last);
        prev = l;
    }
    /* 4: nothing allocated past the limit. */
    assert(t->last == t->settled || t->last <= quorum_limit(t));
#endif
}
