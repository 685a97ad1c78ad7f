#include "frame.h"

#include <stdlib.h>
#include <string.h>

#include "hx_err.h"

int hx_frame_encode(const Hexad__Envelope *env, size_t max_bytes,
                    uint8_t **out, size_t *out_len)
{
    size_t body = hexad__envelope__get_packed_size(env);
    if (body > max_bytes || body > UINT32_MAX)
        return HX_ERR_TOO_BIG;
    uint8_t *buf = malloc(HX_FRAME_HEADER_BYTES + body);
    if (buf == NULL)
        return HX_ERR_NOMEM;
    hx_put_be32(buf, (uint32_t)body);
    hexad__envelope__pack(env, buf + HX_FRAME_HEADER_BYTES);
    *out = buf;
    *out_len = HX_FRAME_HEADER_BYTES + body;
    return HX_OK;
}

int hx_frame_write(struct evbuffer *out, const Hexad__Envelope *env,
                   size_t max_bytes)
{
    size_t body = hexad__envelope__get_packed_size(env);
    if (body > max_bytes || body > UINT32_MAX)
        return HX_ERR_TOO_BIG;
    struct evbuffer_iovec v;
    /* Pack straight into the output buffer: no intermediate copy. */
    if (evbuffer_reserve_space(out, HX_FRAME_HEADER_BYTES + body, &v, 1) < 1)
        return HX_ERR_NOMEM;
    uint8_t *p = v.iov_base;
    hx_put_be32(p, (uint32_t)body);
    hexad__envelope__pack(env, p + HX_FRAME_HEADER_BYTES);
    v.iov_len = HX_FRAME_HEADER_BYTES + body;
    if (evbuffer_commit_space(out, &v, 1) != 0)
        return HX_ERR_NOMEM;
    return HX_OK;
}

int hx_frame_decode(const uint8_t *buf, size_t len, size_t max_bytes,
                    ProtobufCAllocator *alloc, Hexad__Envelope **env,
                    size_t *consumed)
{
    if (len < HX_FRAME_HEADER_BYTES)
        return 0;
    uint32_t body = hx_get_be32(buf);
    if (body > max_bytes)
        return HX_ERR_TOO_BIG;
    if (body == 0) {
        *consumed = HX_FRAME_HEADER_BYTES;
        return HX_ERR_PROTOCOL;
    }
    if (len - HX_FRAME_HEADER_BYTES < body)
        return 0;
    *consumed = HX_FRAME_HEADER_BYTES + body;
    *env = hexad__envelope__unpack(alloc, body, buf + HX_FRAME_HEADER_BYTES);
    return *env == NULL ? HX_ERR_PROTOCOL : 1;
}

int hx_frame_read(struct evbuffer *in, size_t max_bytes,
                  ProtobufCAllocator *alloc, Hexad__Envelope **env)
{
    uint8_t hdr[HX_FRAME_HEADER_BYTES];
    if (evbuffer_copyout(in, hdr, sizeof hdr) < (ev_ssize_t)sizeof hdr)
        return 0;
    uint32_t body = hx_get_be32(hdr);
    if (body > max_bytes)
        return HX_ERR_TOO_BIG;
    size_t total = HX_FRAME_HEADER_BYTES + (size_t)body;
    if (evbuffer_get_length(in) < total)
        return 0;
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
    if (p == NULL)
        return HX_ERR_NOMEM;
    size_t consumed = 0;
    int rc = hx_frame_decode(p, total, max_bytes, alloc, env, &consumed);
    evbuffer_drain(in, total);
    return rc;
}
