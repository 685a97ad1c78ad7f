/* Page piles (page_piles.h): open addressing over page_no + 1 (0 marks an
 * empty slot), linear probing, doubled at half load up to PAGE_PILES_MAX
 * entries. Entries are never removed one by one: a page whose records were
 * materialized keeps an entry of 0, which is the common next question. */
#include "page_piles.h"

#include <stdbool.h>
#include <stdlib.h>

#define SLOTS_MIN_BITS 6u
#define SLOTS_MIN (1u << SLOTS_MIN_BITS)

typedef struct {
    uint64_t key;      /* page_no + 1; 0: empty */
    uint64_t gc_floor; /* 0: unknown */
    uint32_t n;
    bool has_n;        /* n is known */
} pile;

struct page_piles {
    pile *slot;
    size_t cap; /* 1 << bits */
    unsigned bits;
    size_t count;
};

/* Fibonacci hashing: the product's high bits, which depend on every bit
 * of the key (page numbers with equal low bits must not share a home). */
static size_t home(uint64_t key, unsigned bits)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

page_piles *page_piles_new(void)
{
    page_piles *pp = calloc(1, sizeof *pp);
    if (pp == NULL)
        return NULL;
    pp->slot = calloc(SLOTS_MIN, sizeof *pp->slot);
    if (pp->slot == NULL) {
        free(pp);
        return NULL;
    }
    pp->cap = SLOTS_MIN;
    pp->bits = SLOTS_MIN_BITS;
    return pp;
}

void page_piles_free(page_piles *pp)
{
    if (pp == NULL)
        return;
    free(pp->slot);
    free(pp);
}

static pile *find(const page_piles *pp, uint64_t key)
{
    for (size_t i = home(key, pp->bits);; i = (i + 1) & (pp->cap - 1)) {
        if (pp->slot[i].key == key || pp->slot[i].key == 0)
            return &pp->slot[i];
    }
}

long page_piles_get(const page_piles *pp, uint64_t page_no)
{
    const pile *p = find(pp, page_no + 1);
    return p->key == 0 || !p->has_n ? -1 : (long)p->n;
}

uint64_t page_piles_gc_floor(const page_piles *pp, uint64_t page_no)
{
    return find(pp, page_no + 1)->gc_floor; /* an empty slot holds 0 */
}

static int grow(page_piles *pp)
{
    size_t ncap = pp->cap * 2;
    pile *ns = calloc(ncap, sizeof *ns);
    if (ns == NULL)
        return -1;
    page_piles old = *pp;
    pp->slot = ns;
    pp->cap = ncap;
    pp->bits++;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slot[i].key != 0)
            *find(pp, old.slot[i].key) = old.slot[i];
    free(old.slot);
    return 0;
}

/* page_no's entry, added (all unknown) when missing; NULL when the map is
 * full or cannot grow. */
static pile *entry(page_piles *pp, uint64_t page_no)
{
    pile *p = find(pp, page_no + 1);
    if (p->key == 0) {
        if (pp->count >= PAGE_PILES_MAX)
            return NULL;
        if (2 * (pp->count + 1) > pp->cap) {
            if (grow(pp) != 0)
                return NULL;
            p = find(pp, page_no + 1);
        }
        *p = (pile){.key = page_no + 1};
        pp->count++;
    }
    return p;
}

void page_piles_set(page_piles *pp, uint64_t page_no, uint32_t n)
{
    pile *p = entry(pp, page_no);
    if (p != NULL) {
        p->n = n;
        p->has_n = true;
    }
}

void page_piles_set_gc_floor(page_piles *pp, uint64_t page_no, uint64_t lsn)
{
    pile *p = entry(pp, page_no);
    if (p != NULL)
        p->gc_floor = lsn;
}

void page_piles_clear(page_piles *pp)
{
    for (size_t i = 0; i < pp->cap; i++)
        pp->slot[i] = (pile){0};
    pp->count = 0;
}

size_t page_piles_count(const page_piles *pp)
{
    return pp->count;
}
