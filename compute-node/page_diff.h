/* page_diff: turn a page's old and new images into the payload of one redo
 * record (byte patches, or the whole image when that is no bigger), and
 * apply such a payload to a page. Pure functions: no allocation, no I/O.
 */
#ifndef HX_PAGE_DIFF_H
#define HX_PAGE_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "page_store.h"

/* Changed runs separated by fewer than this many equal bytes become one
 * patch: a patch header costs about as much as the bytes it saves. */
#define PAGE_DIFF_MERGE_GAP_BYTES 8
/* Estimated encoded size of one patch besides its data (offset, length,
 * framing); used to choose between patches and a whole image. */
#define PAGE_DIFF_PATCH_OVERHEAD_BYTES 8
/* Upper bound on patches per record that callers should size arrays for. */
#define PAGE_DIFF_PATCHES_MAX 64

/* Computes the patches that turn old_page into new_page (page_size bytes
 * each; old_page NULL means all zeros) into patches[0 .. *n_patches).
 * Patches are ascending, disjoint, and point into new_page: they stay valid
 * as long as new_page does and is unchanged. Identical pages give
 * *n_patches = 0. At most patches_max patches (the merge gap widens until
 * they fit); when their encoded size reaches page_size the result is one
 * whole-image patch {0, page_size, new_page} with *is_image = 1.
 * HX_ERR_INVALID on a NULL new_page, page_size 0 or patches_max 0. */
int hx_page_diff(const uint8_t *old_page, const uint8_t *new_page,
                 uint32_t page_size, hx_patch *patches, size_t patches_max,
                 size_t *n_patches, int *is_image);

/* Estimated encoded size of a list of patches. */
size_t hx_patches_encoded_size(const hx_patch *patches, size_t n);

/* Applies patches in order to page (page_size bytes). Checks every patch
 * first: one out of range (offset + len > page_size) or with len > 0 and
 * NULL data gives HX_ERR_INVALID and leaves page unchanged. */
int hx_page_apply(uint8_t *page, uint32_t page_size, const hx_patch *patches,
                  size_t n);

#endif
