/* Compressed frames: one zstd stream per connection and direction.
 *
 * A compressed frame is
 *
 *   4 bytes  big-endian HX_FRAME_ZSTD_FLAG | chunk length
 *   4 bytes  big-endian length of the envelope before compression
 *   chunk    the next piece of the connection's zstd stream
 *
 * Each chunk ends with a zstd flush, so it decodes to exactly one whole
 * envelope, but only after every earlier chunk of the same connection:
 * a chunk refers back into what the stream already carried (a window of
 * 2^HX_ZSTD_WINDOW_LOG bytes). That is where the ratio comes from: record
 * headers and page patches repeat from frame to frame, little within one.
 *
 * Invariants:
 *  1. A stream's chunks are decoded in the order they were made, each once,
 *     by one decoder that lives exactly as long as the connection. TCP
 *     keeps the order; a connection that closes drops both ends' state, so
 *     a new connection starts a new stream.
 *  2. A chunk that does not decode to exactly its stated length, or that
 *     needs a window over HX_ZSTD_WINDOW_LOG, is HX_ERR_PROTOCOL: the
 *     decoder's memory is bounded whatever a peer sends, and the caller
 *     closes that connection (and only that one).
 *
 * An uncompressed frame never has the flag: its length is at most
 * HX_FRAME_MAX_BYTES (64 MiB), far below it. A compressing sender still
 * sends envelopes under HX_ZSTD_MIN_BYTES plain (outside the stream).
 */
#ifndef HX_FRAME_ZSTD_H
#define HX_FRAME_ZSTD_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "hexad.pb-c.h"

#define HX_FRAME_ZSTD_FLAG 0x80000000u
#define HX_FRAME_ZSTD_HEADER_BYTES 8
#define HX_ZSTD_WINDOW_LOG 17
/* A negative ("fast") level: no entropy coding of literals. Measured on
 * captured tpcb-like appends: 2.06x at 4.4 us per frame, against 2.13x at
 * 9.5 us for level 1 and 1.75x at 1.7 us for LZ4 (bench/RESULTS.md,
 * "Wire compression"). */
#define HX_ZSTD_LEVEL (-1)
/* Smaller envelopes go plain: a lone commit's appends are a few hundred
 * bytes, and on its latency path six compressions cost more (~+0.1 ms per
 * single-client insert, measured) than the bytes they save are worth.
 * Under load the boxcar makes appends larger, and they compress. */
#define HX_ZSTD_MIN_BYTES 512

typedef struct hx_zstd_tx hx_zstd_tx;
typedef struct hx_zstd_rx hx_zstd_rx;

/* NULL when memory runs out. */
hx_zstd_tx *hx_zstd_tx_new(void);
void hx_zstd_tx_free(hx_zstd_tx *z);

/* Appends env as one frame, compressed unless it is under
 * HX_ZSTD_MIN_BYTES. HX_ERR_TOO_BIG when the packed
 * envelope is over max_bytes, HX_ERR_NOMEM, HX_ERR_IO when zstd fails
 * (the stream is then unusable: close the connection). */
int hx_zstd_tx_envelope(hx_zstd_tx *z, struct evbuffer *out,
                        const Hexad__Envelope *env, size_t max_bytes);

/* The same for an envelope already packed (body bytes, no header). */
int hx_zstd_tx_packed(hx_zstd_tx *z, struct evbuffer *out,
                      const uint8_t *body, size_t len, size_t max_bytes);

void hx_zstd_rx_free(hx_zstd_rx *z);

/* Sizes of the frame hx_frame_read_any took: as it came off the wire
 * (headers included), and its envelope's packed bytes once decoded. */
typedef struct {
    size_t wire;
    size_t body;
} hx_frame_sizes;

/* hx_frame_read (frame.h) that also takes compressed frames: *rx is the
 * connection's decoder, created at its first compressed frame (start with
 * *rx == NULL; free it with hx_zstd_rx_free when the connection goes).
 * Returns as hx_frame_read does, with *sizes set when it returns 1; a
 * chunk that does not decode is HX_ERR_PROTOCOL (invariant 2). */
int hx_frame_read_any(struct evbuffer *in, size_t max_bytes, hx_zstd_rx **rx,
                      ProtobufCAllocator *alloc, Hexad__Envelope **env,
                      hx_frame_sizes *sizes);

#endif
