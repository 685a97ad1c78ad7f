/* CRC-32C (Castagnoli): a cheap checksum for data that only needs to be
 * told apart from a torn or stale write or a flipped bit, not from a
 * forgery: the storage journal's entries and redo records (record.h);
 * page versions keep their BLAKE2b (segment_coalesce.c).
 * Uses the CPU's crc32 instruction where there is one (x86-64 SSE4.2),
 * a table otherwise; both give the same values. */
#ifndef HX_CRC32C_H
#define HX_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes of data. */
uint32_t hx_crc32c(uint32_t crc, const void *data, size_t len);

#endif
