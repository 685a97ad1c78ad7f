/* The numbered writes of `hexadctl load`: write i goes to a unique
 * (page, slot) and holds bytes that depend only on i, so `verify` can
 * recompute what every acknowledged write must read back as. Writes are
 * spread over `span` pages at a time, so a load crosses PGs early. */
#ifndef HX_LOAD_PATTERN_H
#define HX_LOAD_PATTERN_H

#include <stdint.h>

#define HX_LOAD_SLOT_BYTES 32u
#define HX_LOAD_SPAN_PAGES 256u

static inline void hx_load_location(uint64_t i, uint32_t page_size,
                                    uint64_t *page_no, uint32_t *offset)
{
    uint64_t slots = page_size / HX_LOAD_SLOT_BYTES;
    uint64_t per_block = slots * HX_LOAD_SPAN_PAGES;
    uint64_t block = i / per_block, r = i % per_block;
    *page_no = block * HX_LOAD_SPAN_PAGES + r % HX_LOAD_SPAN_PAGES;
    *offset = (uint32_t)((r / HX_LOAD_SPAN_PAGES) * HX_LOAD_SLOT_BYTES);
}

static inline void hx_load_bytes(uint64_t i, uint8_t out[HX_LOAD_SLOT_BYTES])
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
    for (unsigned k = 0; k < HX_LOAD_SLOT_BYTES; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[k] = (uint8_t)x;
    }
    for (unsigned k = 0; k < 8; k++) /* the number itself, readable in a dump */
        out[k] = (uint8_t)(i >> (8 * k));
}

#endif
