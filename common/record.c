#include "record.h"

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "crc32c.h"
#include "hx_err.h"

#define CHECKSUM_BYTES 16 /* generichash minimum; folded to 64 bits */

static uint64_t fold(const uint8_t h[CHECKSUM_BYTES])
{
    uint64_t a, b;
    memcpy(&a, h, 8);
    memcpy(&b, h + 8, 8);
    return a ^ b;
}

uint64_t hx_checksum(const void *data, size_t len)
{
    uint8_t h[CHECKSUM_BYTES];
    crypto_generichash(h, sizeof h, data, len, NULL, 0);
    return fold(h);
}

typedef void (*feed_fn)(void *st, const uint8_t *b, size_t n);

static void feed_u64(feed_fn feed, void *st, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    feed(st, b, sizeof b);
}

/* Feeds every field of r but the checksum, in the fixed little-endian
 * layout both checksums cover (so a re-encoded record keeps its own). */
static void record_fields(const Hexad__Record *r, feed_fn feed, void *st)
{
    feed_u64(feed, st, r->lsn);
    feed_u64(feed, st, r->prev_lsn);
    feed_u64(feed, st, r->page_no);
    feed_u64(feed, st, r->flags);
    feed_u64(feed, st, r->commit_time_us);
    feed_u64(feed, st, r->epoch);
    feed_u64(feed, st, r->n_patches);
    for (size_t i = 0; i < r->n_patches; i++) {
        const Hexad__Patch *p = r->patches[i];
        feed_u64(feed, st, p->offset);
        feed_u64(feed, st, p->data.len);
        if (p->data.len > 0)
            feed(st, p->data.data, p->data.len);
    }
}

static void feed_blake2b(void *st, const uint8_t *b, size_t n)
{
    crypto_generichash_update(st, b, n);
}

static void feed_crc32c(void *st, const uint8_t *b, size_t n)
{
    uint32_t *crc = st;
    *crc = hx_crc32c(*crc, b, n);
}

/* What records sealed before the CRC-32C carry: a BLAKE2b digest folded
 * to 64 bits. */
static uint64_t legacy_checksum(const Hexad__Record *r)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, CHECKSUM_BYTES);
    record_fields(r, feed_blake2b, &st);
    uint8_t h[CHECKSUM_BYTES];
    crypto_generichash_final(&st, h, sizeof h);
    return fold(h);
}

uint64_t hx_record_checksum(const Hexad__Record *r)
{
    uint32_t crc = 0;
    record_fields(r, feed_crc32c, &crc);
    return crc;
}

void hx_record_seal(Hexad__Record *r)
{
    r->checksum = hx_record_checksum(r);
}

int hx_record_verify(const Hexad__Record *r)
{
    return hx_record_checksum(r) == r->checksum ||
                   legacy_checksum(r) == r->checksum
               ? HX_OK
               : HX_ERR_CHECKSUM;
}

int hx_record_apply(const Hexad__Record *r, uint8_t *page, uint32_t page_size)
{
    for (size_t i = 0; i < r->n_patches; i++) {
        const Hexad__Patch *p = r->patches[i];
        if (p->offset > page_size || p->data.len > page_size - p->offset)
            return HX_ERR_INVALID;
    }
    if (r->flags & HX_RECORD_IMAGE)
        memset(page, 0, page_size);
    for (size_t i = 0; i < r->n_patches; i++) {
        const Hexad__Patch *p = r->patches[i];
        if (p->data.len > 0)
            memcpy(page + p->offset, p->data.data, p->data.len);
    }
    return HX_OK;
}

/* One base-128 varint at *pos; false when it runs past len or past 10 bytes. */
static bool read_varint(const uint8_t *buf, size_t len, size_t *pos,
                        uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
        uint8_t b = buf[(*pos)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0)
            return true;
    }
    return false;
}

int hx_record_peek_page_no(const uint8_t *buf, size_t len, uint64_t *page_no)
{
    enum { WIRE_VARINT = 0, WIRE_64 = 1, WIRE_LEN = 2, WIRE_32 = 5 };
    const uint64_t page_no_field = 3; /* Record.page_no in hexad.proto */
    *page_no = 0;
    size_t pos = 0;
    while (pos < len) {
        uint64_t tag, v;
        if (!read_varint(buf, len, &pos, &tag) || tag >> 3 == 0)
            return HX_ERR_INVALID;
        size_t skip = 0;
        switch (tag & 7) {
        case WIRE_VARINT:
            if (!read_varint(buf, len, &pos, &v))
                return HX_ERR_INVALID;
            if (tag >> 3 == page_no_field)
                *page_no = v;
            break;
        case WIRE_64:
            skip = 8;
            break;
        case WIRE_32:
            skip = 4;
            break;
        case WIRE_LEN:
            if (!read_varint(buf, len, &pos, &v) || v > len)
                return HX_ERR_INVALID;
            skip = (size_t)v;
            break;
        default:
            return HX_ERR_INVALID;
        }
        if (skip > len - pos)
            return HX_ERR_INVALID;
        pos += skip;
    }
    return HX_OK;
}
