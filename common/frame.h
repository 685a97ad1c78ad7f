/* Frames on the wire: a 4-byte big-endian length, then one packed
 * hexad.Envelope of that many bytes.
 *
 * A frame whose length is over the limit is rejected from its header,
 * before anything is allocated; one that does not decode is rejected after.
 * Either way the caller closes that connection (and only that one).
 */
#ifndef HX_FRAME_H
#define HX_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "hexad.pb-c.h"

#define HX_FRAME_HEADER_BYTES 4
#define HX_FRAME_MAX_BYTES (64u << 20)

/* The header's byte order (and frame_zstd.h's). */
static inline void hx_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t hx_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
           (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Appends env as one frame. HX_ERR_TOO_BIG over max_bytes, HX_ERR_NOMEM. */
int hx_frame_write(struct evbuffer *out, const Hexad__Envelope *env,
                   size_t max_bytes);

/* Takes one frame off in. Returns 1 with *env set, unpacked with alloc
 * (NULL: malloc; the caller frees it with
 * hexad__envelope__free_unpacked(*env, alloc)), 0 when the frame is not
 * complete yet (nothing drained), HX_ERR_TOO_BIG for a length over
 * max_bytes, HX_ERR_PROTOCOL for a zero length or an envelope that does not
 * decode (the frame is drained). */
int hx_frame_read(struct evbuffer *in, size_t max_bytes,
                  ProtobufCAllocator *alloc, Hexad__Envelope **env);

/* Byte-buffer variants of the above for code without an evbuffer. */
int hx_frame_encode(const Hexad__Envelope *env, size_t max_bytes,
                    uint8_t **out, size_t *out_len); /* free(*out) */
int hx_frame_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                    ProtobufCAllocator *alloc, Hexad__Envelope **env,
                    size_t *consumed);

#endif
