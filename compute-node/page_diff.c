#include "page_diff.h"

#include <string.h>

#include "hx_err.h"

static uint8_t page_byte(const uint8_t *page, size_t i)
{
    return page ? page[i] : 0;
}

/* Index of the first byte at or after i where the pages differ, or
 * page_size. Compares 8 bytes at a time where it can. */
static size_t diff_next(const uint8_t *old_page, const uint8_t *new_page,
                        size_t page_size, size_t i)
{
    static const uint8_t zeros[8];

    while (i + 8 <= page_size) {
        const uint8_t *o = old_page ? old_page + i : zeros;
        if (memcmp(o, new_page + i, 8) != 0)
            break;
        i += 8;
    }
    while (i < page_size && page_byte(old_page, i) == new_page[i])
        i++;
    return i;
}

/* Collects runs merging gaps shorter than gap_bytes. Returns the number of
 * runs found, stopping (and returning patches_max + 1) once over the cap. */
static size_t diff_runs(const uint8_t *old_page, const uint8_t *new_page,
                        size_t page_size, size_t gap_bytes, hx_patch *patches,
                        size_t patches_max)
{
    size_t n = 0;
    size_t i = diff_next(old_page, new_page, page_size, 0);

    while (i < page_size) {
        size_t start = i;
        size_t end = i + 1;
        for (;;) {
            /* end of the current changed stretch */
            while (end < page_size && page_byte(old_page, end) != new_page[end])
                end++;
            size_t next = diff_next(old_page, new_page, page_size, end);
            if (next >= page_size || next - end >= gap_bytes) {
                i = next;
                break;
            }
            end = next + 1;
        }
        if (n == patches_max)
            return patches_max + 1;
        patches[n].offset = (uint32_t)start;
        patches[n].len = (uint32_t)(end - start);
        patches[n].data = new_page + start;
        n++;
    }
    return n;
}

int hx_page_diff(const uint8_t *old_page, const uint8_t *new_page,
                 uint32_t page_size, hx_patch *patches, size_t patches_max,
                 size_t *n_patches, int *is_image)
{
    if (!new_page || page_size == 0 || !patches || patches_max == 0 ||
        !n_patches || !is_image)
        return HX_ERR_INVALID;

    size_t gap = PAGE_DIFF_MERGE_GAP_BYTES;
    size_t n;
    for (;;) {
        n = diff_runs(old_page, new_page, page_size, gap, patches,
                      patches_max);
        if (n <= patches_max)
            break;
        /* Too many runs: widen the gap. A gap of page_size merges all
         * changes into one run, which always fits. */
        gap = gap * 4 < page_size ? gap * 4 : page_size;
    }

    *is_image = 0;
    *n_patches = n;
    if (n > 0 && hx_patches_encoded_size(patches, n) >= page_size) {
        patches[0].offset = 0;
        patches[0].len = page_size;
        patches[0].data = new_page;
        *n_patches = 1;
        *is_image = 1;
    }
    return HX_OK;
}

size_t hx_patches_encoded_size(const hx_patch *patches, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += PAGE_DIFF_PATCH_OVERHEAD_BYTES + patches[i].len;
    return total;
}

int hx_page_apply(uint8_t *page, uint32_t page_size, const hx_patch *patches,
                  size_t n)
{
    if (!page || (n > 0 && !patches))
        return HX_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if ((uint64_t)patches[i].offset + patches[i].len > page_size)
            return HX_ERR_INVALID;
        if (patches[i].len > 0 && !patches[i].data)
            return HX_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (patches[i].len > 0)
            memcpy(page + patches[i].offset, patches[i].data, patches[i].len);
    }
    return HX_OK;
}
