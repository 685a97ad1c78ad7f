/* Compressed frames; the format and invariants are in frame_zstd.h. */
#include "frame_zstd.h"

#include <stdlib.h>

#include <zstd.h>

#include "frame.h"
#include "hx_err.h"

struct hx_zstd_tx {
    ZSTD_CCtx *cctx;
    uint8_t *pack;      /* a packed envelope waiting to be compressed */
    size_t pack_cap;
};

struct hx_zstd_rx {
    ZSTD_DCtx *dctx;
    uint8_t *body;      /* the envelope decoded from the last chunk */
    size_t body_cap;
};

/* Grows *buf to at least need bytes; keeps the contents. */
static int reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need)
        return HX_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(*buf, n);
    if (p == NULL)
        return HX_ERR_NOMEM;
    *buf = p;
    *cap = n;
    return HX_OK;
}

hx_zstd_tx *hx_zstd_tx_new(void)
{
    hx_zstd_tx *z = calloc(1, sizeof *z);
    if (z == NULL)
        return NULL;
    z->cctx = ZSTD_createCCtx();
    if (z->cctx == NULL ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel,
                                            HX_ZSTD_LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_windowLog,
                                            HX_ZSTD_WINDOW_LOG))) {
        hx_zstd_tx_free(z);
        return NULL;
    }
    return z;
}

void hx_zstd_tx_free(hx_zstd_tx *z)
{
    if (z == NULL)
        return;
    ZSTD_freeCCtx(z->cctx);
    free(z->pack);
    free(z);
}

int hx_zstd_tx_packed(hx_zstd_tx *z, struct evbuffer *out,
                      const uint8_t *body, size_t len, size_t max_bytes)
{
    if (len == 0)
        return HX_ERR_INVALID; /* an empty envelope is no frame (frame.h) */
    if (len > max_bytes || len > HX_FRAME_MAX_BYTES)
        return HX_ERR_TOO_BIG;
    if (len < HX_ZSTD_MIN_BYTES) {
        uint8_t hdr[HX_FRAME_HEADER_BYTES];
        hx_put_be32(hdr, (uint32_t)len);
        return evbuffer_add(out, hdr, sizeof hdr) == 0 &&
                       evbuffer_add(out, body, len) == 0
                   ? HX_OK
                   : HX_ERR_NOMEM;
    }
    size_t bound = ZSTD_compressBound(len);
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(out, HX_FRAME_ZSTD_HEADER_BYTES + bound, &v,
                               1) < 1)
        return HX_ERR_NOMEM;
    uint8_t *p = v.iov_base;
    ZSTD_inBuffer in = {body, len, 0};
    ZSTD_outBuffer o = {p + HX_FRAME_ZSTD_HEADER_BYTES, bound, 0};
    /* With room for compressBound the flush completes in one call (0 left);
     * anything else leaves the stream in a state the peer cannot follow. */
    size_t left = ZSTD_compressStream2(z->cctx, &o, &in, ZSTD_e_flush);
    if (ZSTD_isError(left) || left != 0 || in.pos != len)
        return HX_ERR_IO;
    hx_put_be32(p, HX_FRAME_ZSTD_FLAG | (uint32_t)o.pos);
    hx_put_be32(p + 4, (uint32_t)len);
    v.iov_len = HX_FRAME_ZSTD_HEADER_BYTES + o.pos;
    return evbuffer_commit_space(out, &v, 1) == 0 ? HX_OK : HX_ERR_NOMEM;
}

int hx_zstd_tx_envelope(hx_zstd_tx *z, struct evbuffer *out,
                        const Hexad__Envelope *env, size_t max_bytes)
{
    size_t len = hexad__envelope__get_packed_size(env);
    if (len > max_bytes || len > HX_FRAME_MAX_BYTES)
        return HX_ERR_TOO_BIG;
    if (len > 0 && len < HX_ZSTD_MIN_BYTES)
        return hx_frame_write(out, env, max_bytes); /* plain: no copy */
    if (reserve(&z->pack, &z->pack_cap, len ? len : 1) != HX_OK)
        return HX_ERR_NOMEM;
    hexad__envelope__pack(env, z->pack);
    return hx_zstd_tx_packed(z, out, z->pack, len, max_bytes);
}

static hx_zstd_rx *rx_new(void)
{
    hx_zstd_rx *z = calloc(1, sizeof *z);
    if (z == NULL)
        return NULL;
    z->dctx = ZSTD_createDCtx();
    if (z->dctx == NULL ||
        ZSTD_isError(ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax,
                                            HX_ZSTD_WINDOW_LOG))) {
        hx_zstd_rx_free(z);
        return NULL;
    }
    return z;
}

void hx_zstd_rx_free(hx_zstd_rx *z)
{
    if (z == NULL)
        return;
    ZSTD_freeDCtx(z->dctx);
    free(z->body);
    free(z);
}

/* Decodes one chunk into z->body; invariant 2. */
static int rx_inflate(hx_zstd_rx *z, const uint8_t *chunk, size_t chunk_len,
                      size_t body_len)
{
    /* One byte of slack shows a chunk that decodes to more than it said. */
    if (reserve(&z->body, &z->body_cap, body_len + 1) != HX_OK)
        return HX_ERR_NOMEM;
    ZSTD_inBuffer in = {chunk, chunk_len, 0};
    ZSTD_outBuffer o = {z->body, body_len + 1, 0};
    /* All input is present and the output has room, so each call makes
     * progress; the bound only guards against a decoder that would not. */
    for (int i = 0; i < 8 && in.pos < in.size; i++) {
        size_t rc = ZSTD_decompressStream(z->dctx, &o, &in);
        if (ZSTD_isError(rc) || o.pos > body_len)
            return HX_ERR_PROTOCOL;
    }
    return in.pos == in.size && o.pos == body_len ? HX_OK : HX_ERR_PROTOCOL;
}

int hx_frame_read_any(struct evbuffer *in, size_t max_bytes, hx_zstd_rx **rx,
                      ProtobufCAllocator *alloc, Hexad__Envelope **env,
                      hx_frame_sizes *sizes)
{
    uint8_t hdr[HX_FRAME_ZSTD_HEADER_BYTES];
    if (evbuffer_copyout(in, hdr, HX_FRAME_HEADER_BYTES) <
        (ev_ssize_t)HX_FRAME_HEADER_BYTES)
        return 0;
    uint32_t word = hx_get_be32(hdr);
    if (!(word & HX_FRAME_ZSTD_FLAG)) {
        sizes->body = word;
        sizes->wire = HX_FRAME_HEADER_BYTES + (size_t)word;
        return hx_frame_read(in, max_bytes, alloc, env);
    }
    if (evbuffer_copyout(in, hdr, sizeof hdr) < (ev_ssize_t)sizeof hdr)
        return 0;
    size_t chunk_len = word & ~HX_FRAME_ZSTD_FLAG;
    size_t body_len = hx_get_be32(hdr + 4);
    if (body_len > max_bytes || chunk_len > ZSTD_compressBound(max_bytes))
        return HX_ERR_TOO_BIG;
    size_t total = HX_FRAME_ZSTD_HEADER_BYTES + chunk_len;
    if (evbuffer_get_length(in) < total)
        return 0;
    const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
    if (p == NULL)
        return HX_ERR_NOMEM;
    int rc = HX_ERR_PROTOCOL;
    if (body_len > 0 && chunk_len > 0) {
        if (*rx == NULL)
            *rx = rx_new();
        rc = *rx == NULL ? HX_ERR_NOMEM
                         : rx_inflate(*rx, p + HX_FRAME_ZSTD_HEADER_BYTES,
                                      chunk_len, body_len);
    }
    evbuffer_drain(in, total);
    if (rc != HX_OK)
        return rc;
    *env = hexad__envelope__unpack(alloc, body_len, (*rx)->body);
    sizes->wire = total;
    sizes->body = body_len;
    return *env == NULL ? HX_ERR_PROTOCOL : 1;
}
