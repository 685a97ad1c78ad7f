/* Redo records: checksums and applying them to a page.
 *
 * The checksum is a CRC-32C over every field of the record except the
 * checksum itself, in a fixed little-endian layout, so a record re-encoded
 * by protobuf keeps its checksum. A record is sealed once, by the writer
 * that makes it; storage verifies it on receipt and on every read, so a
 * flipped byte anywhere is caught before it reaches a page.
 *
 * Records sealed before carry a BLAKE2b digest of the same layout, folded
 * to 64 bits, and still verify. The CRC (below 2^32) takes 5 bytes as a
 * varint where the fold took 9 or 10, on each of the six copies a record is
 * shipped to and stored as (about a tenth of a tpcb-like transaction's
 * bytes), and costs less CPU on the writer and on storage.
 */
#ifndef HX_RECORD_H
#define HX_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "hexad.pb-c.h"

#define HX_RECORD_CPL HEXAD__RECORD_FLAG__RECORD_FLAG_CPL
#define HX_RECORD_IMAGE HEXAD__RECORD_FLAG__RECORD_FLAG_IMAGE

/* 64-bit checksum of a byte range. */
uint64_t hx_checksum(const void *data, size_t len);

/* The CRC-32C a record is sealed with. */
uint64_t hx_record_checksum(const Hexad__Record *r);
void hx_record_seal(Hexad__Record *r);
/* HX_OK when the checksum is the record's CRC-32C or, for a record sealed
 * before, its BLAKE2b fold; else HX_ERR_CHECKSUM. */
int hx_record_verify(const Hexad__Record *r);

/* Applies the record's patches to page (page_size bytes). HX_ERR_INVALID
 * when a patch reaches past the page (the page is then unchanged). */
int hx_record_apply(const Hexad__Record *r, uint8_t *page, uint32_t page_size);

/* The page_no of a packed Record without unpacking it: walks the fields,
 * skipping the patches (the last page_no wins, as in protobuf; absent: 0).
 * HX_ERR_INVALID when the bytes are not a well-formed message. Neither the
 * checksum nor the other fields are checked. */
int hx_record_peek_page_no(const uint8_t *buf, size_t len, uint64_t *page_no);

#endif
