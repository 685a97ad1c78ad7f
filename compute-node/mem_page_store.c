/* mem_page_store: see mem_page_store.h.
 *
 * Invariants (checked by mem_check_invariants() in debug builds):
 *   1. Each page's versions are in strictly ascending LSN order, and every
 *      version's LSN is one of the kept records.
 *   2. vdl <= last_lsn, and vdl is 0 or the LSN of a CPL record.
 *   3. Records are kept in ascending LSN order.
 */
#include "mem_page_store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hx_err.h"
#include "page_diff.h"

typedef struct {
    uint64_t lsn;
    uint8_t *image;
} mem_version;

typedef struct {
    mem_version *v;
    size_t n, cap;
} mem_page;

struct hx_mem_page_store {
    pthread_mutex_t mu;
    pthread_cond_t durable_cv;
    uint32_t page_size;
    mem_page *pages; /* indexed by page_no */
    size_t n_pages;
    mem_page_record *records;
    size_t n_records, cap_records;
    size_t n_mtrs;
    uint64_t last_lsn;
    uint64_t vdl;
    int manual;
    int fail_next;
};

/* ---- helpers (called with mu held) ---------------------------------- */

#ifndef NDEBUG
static void mem_check_invariants(const hx_mem_page_store *s)
{
    assert(s->vdl <= s->last_lsn);
    for (size_t i = 1; i < s->n_records; i++)
        assert(s->records[i - 1].lsn < s->records[i].lsn);
    for (size_t p = 0; p < s->n_pages; p++) {
        for (size_t i = 1; i < s->pages[p].n; i++)
            assert(s->pages[p].v[i - 1].lsn < s->pages[p].v[i].lsn);
    }
}
#else
#define mem_check_invariants(s) ((void)(s))
#endif

/* Highest CPL LSN <= lsn among kept records, or 0. */
static uint64_t mem_cpl_at_or_below(const hx_mem_page_store *s, uint64_t lsn)
{
    for (size_t i = s->n_records; i > 0; i--) {
        const mem_page_record *r = &s->records[i - 1];
        if (r->lsn <= lsn && r->is_cpl)
            return r->lsn;
    }
    return 0;
}

static const mem_version *mem_version_at(const mem_page *pg, uint64_t lsn)
{
    for (size_t i = pg->n; i > 0; i--) {
        if (pg->v[i - 1].lsn <= lsn)
            return &pg->v[i - 1];
    }
    return NULL;
}

static int mem_ensure_pages(hx_mem_page_store *s, uint64_t page_no)
{
    if (page_no >= MEM_PAGE_STORE_PAGES_MAX)
        return HX_ERR_TOO_BIG;
    if (page_no < s->n_pages)
        return HX_OK;
    size_t n = s->n_pages ? s->n_pages : 64;
    while (n <= page_no)
        n *= 2;
    if (n > MEM_PAGE_STORE_PAGES_MAX)
        n = MEM_PAGE_STORE_PAGES_MAX;
    mem_page *p = realloc(s->pages, n * sizeof(*p));
    if (!p)
        return HX_ERR_NOMEM;
    memset(p + s->n_pages, 0, (n - s->n_pages) * sizeof(*p));
    s->pages = p;
    s->n_pages = n;
    return HX_OK;
}

/* ---- the page_store interface --------------------------------------- */

static uint64_t mem_read_point(void *ctx)
{
    hx_mem_page_store *s = ctx;
    pthread_mutex_lock(&s->mu);
    uint64_t vdl = s->vdl;
    pthread_mutex_unlock(&s->mu);
    return vdl;
}

static int mem_read_page(void *ctx, uint64_t page_no, uint64_t read_lsn,
                         uint8_t *buf)
{
    hx_mem_page_store *s = ctx;
    int rc = HX_OK;

    pthread_mutex_lock(&s->mu);
    if (read_lsn > s->last_lsn) {
        rc = HX_ERR_NOT_COMPLETE;
    } else {
        const mem_version *v = NULL;
        if (page_no < s->n_pages)
            v = mem_version_at(&s->pages[page_no], read_lsn);
        if (v)
            memcpy(buf, v->image, s->page_size);
        else
            memset(buf, 0, s->page_size);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int mem_write_mtr(void *ctx, const hx_page_write *w, size_t n,
                         unsigned flags, uint64_t *commit_lsn)
{
    hx_mem_page_store *s = ctx;
    int rc = HX_OK;
    uint8_t **images = NULL;

    if (!w || n == 0 || !commit_lsn)
        return HX_ERR_INVALID;

    pthread_mutex_lock(&s->mu);
    if (s->fail_next) {
        rc = s->fail_next;
        s->fail_next = 0;
        goto out;
    }

    /* Build every new version first so that a bad record ships nothing. */
    images = calloc(n, sizeof(*images));
    if (!images) {
        rc = HX_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rc = mem_ensure_pages(s, w[i].page_no);
        if (rc)
            goto out;
        images[i] = malloc(s->page_size);
        if (!images[i]) {
            rc = HX_ERR_NOMEM;
            goto out;
        }
        /* base: this MTR's earlier record of the page, else newest version */
        const uint8_t *base = NULL;
        for (size_t j = i; j > 0; j--) {
            if (w[j - 1].page_no == w[i].page_no) {
                base = images[j - 1];
                break;
            }
        }
        const mem_page *pg = &s->pages[w[i].page_no];
        if (!base && pg->n > 0)
            base = pg->v[pg->n - 1].image;
        if (base && !w[i].is_image)
            memcpy(images[i], base, s->page_size);
        else
            memset(images[i], 0, s->page_size);
        rc = hx_page_apply(images[i], s->page_size, w[i].patches,
                           w[i].n_patches);
        if (rc)
            goto out;
    }

    /* Make room, then commit: nothing below can fail. */
    if (s->n_records + n > s->cap_records) {
        size_t cap = s->cap_records ? s->cap_records : 256;
        while (cap < s->n_records + n)
            cap *= 2;
        mem_page_record *r = realloc(s->records, cap * sizeof(*r));
        if (!r) {
            rc = HX_ERR_NOMEM;
            goto out;
        }
        s->records = r;
        s->cap_records = cap;
    }
    for (size_t i = 0; i < n; i++) {
        mem_page *pg = &s->pages[w[i].page_no];
        if (pg->n == pg->cap) {
            size_t cap = pg->cap ? pg->cap * 2 : 4;
            mem_version *v = realloc(pg->v, cap * sizeof(*v));
            if (!v) {
                rc = HX_ERR_NOMEM;
                goto out;
            }
            pg->v = v;
            pg->cap = cap;
        }
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t lsn = ++s->last_lsn;
        mem_page *pg = &s->pages[w[i].page_no];
        pg->v[pg->n].lsn = lsn;
        pg->v[pg->n].image = images[i];
        pg->n++;
        images[i] = NULL;
        mem_page_record *r = &s->records[s->n_records++];
        r->lsn = lsn;
        r->page_no = w[i].page_no;
        r->is_image = w[i].is_image;
        r->is_cpl = i + 1 == n;
        r->mtr_flags = flags;
        r->n_patches = w[i].n_patches;
        r->payload_bytes = 0;
        for (size_t k = 0; k < w[i].n_patches; k++)
            r->payload_bytes += w[i].patches[k].len;
    }
    s->n_mtrs++;
    *commit_lsn = s->last_lsn;
    if (!s->manual) {
        s->vdl = s->last_lsn;
        pthread_cond_broadcast(&s->durable_cv);
    }
    mem_check_invariants(s);

out:
    pthread_mutex_unlock(&s->mu);
    if (images) {
        for (size_t i = 0; i < n; i++)
            free(images[i]);
        free(images);
    }
    return rc;
}

static int mem_wait_durable(void *ctx, uint64_t lsn, int timeout_ms)
{
    hx_mem_page_store *s = ctx;
    struct timespec deadline;
    int rc = HX_OK;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&s->mu);
    while (s->vdl < lsn) {
        if (timeout_ms == 0) {
            rc = HX_ERR_TIMEOUT;
            break;
        }
        int e = timeout_ms < 0
                    ? pthread_cond_wait(&s->durable_cv, &s->mu)
                    : pthread_cond_timedwait(&s->durable_cv, &s->mu, &deadline);
        if (e == ETIMEDOUT && s->vdl < lsn) {
            rc = HX_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- creation and test hooks ---------------------------------------- */

int mem_page_store_create(uint32_t page_size, hx_mem_page_store **out)
{
    if (!out || page_size < 512 || page_size > 65536 ||
        (page_size & (page_size - 1)) != 0)
        return HX_ERR_INVALID;
    hx_mem_page_store *s = calloc(1, sizeof(*s));
    if (!s)
        return HX_ERR_NOMEM;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        pthread_condattr_destroy(&attr);
        free(s);
        return HX_ERR_NOMEM;
    }
    if (pthread_cond_init(&s->durable_cv, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return HX_ERR_NOMEM;
    }
    pthread_condattr_destroy(&attr);
    s->page_size = page_size;
    *out = s;
    return HX_OK;
}

void mem_page_store_destroy(hx_mem_page_store *s)
{
    if (!s)
        return;
    for (size_t p = 0; p < s->n_pages; p++) {
        for (size_t i = 0; i < s->pages[p].n; i++)
            free(s->pages[p].v[i].image);
        free(s->pages[p].v);
    }
    free(s->pages);
    free(s->records);
    pthread_cond_destroy(&s->durable_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

hx_page_store mem_page_store_iface(hx_mem_page_store *s)
{
    hx_page_store t = {
        .ctx = s,
        .page_size = s->page_size,
        .read_point = mem_read_point,
        .read_page = mem_read_page,
        .write_mtr = mem_write_mtr,
        .wait_durable = mem_wait_durable,
    };
    return t;
}

void mem_page_store_set_manual_durability(hx_mem_page_store *s, int manual)
{
    pthread_mutex_lock(&s->mu);
    s->manual = manual;
    if (!manual) {
        s->vdl = s->last_lsn;
        pthread_cond_broadcast(&s->durable_cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void mem_page_store_set_durable_lsn(hx_mem_page_store *s, uint64_t lsn)
{
    pthread_mutex_lock(&s->mu);
    uint64_t cpl = mem_cpl_at_or_below(s, lsn);
    if (cpl > s->vdl) {
        s->vdl = cpl;
        pthread_cond_broadcast(&s->durable_cv);
    }
    mem_check_invariants(s);
    pthread_mutex_unlock(&s->mu);
}

uint64_t mem_page_store_vdl(hx_mem_page_store *s)
{
    return mem_read_point(s);
}

uint64_t mem_page_store_last_lsn(hx_mem_page_store *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t lsn = s->last_lsn;
    pthread_mutex_unlock(&s->mu);
    return lsn;
}

void mem_page_store_fail_next_write(hx_mem_page_store *s, int err)
{
    pthread_mutex_lock(&s->mu);
    s->fail_next = err < 0 ? err : HX_ERR_IO;
    pthread_mutex_unlock(&s->mu);
}

void mem_page_store_crash(hx_mem_page_store *s)
{
    pthread_mutex_lock(&s->mu);
    for (size_t p = 0; p < s->n_pages; p++) {
        mem_page *pg = &s->pages[p];
        while (pg->n > 0 && pg->v[pg->n - 1].lsn > s->vdl) {
            free(pg->v[pg->n - 1].image);
            pg->n--;
        }
    }
    while (s->n_records > 0 && s->records[s->n_records - 1].lsn > s->vdl)
        s->n_records--;
    mem_check_invariants(s);
    pthread_mutex_unlock(&s->mu);
}

size_t mem_page_store_mtr_count(hx_mem_page_store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n_mtrs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t mem_page_store_record_count(hx_mem_page_store *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->n_records;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int mem_page_store_record_at(hx_mem_page_store *s, size_t i,
                             mem_page_record *out)
{
    int rc = HX_ERR_NOT_FOUND;
    pthread_mutex_lock(&s->mu);
    if (i < s->n_records) {
        *out = s->records[i];
        rc = HX_OK;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}
