/* Compressed frames (common/frame_zstd.h): one zstd stream per connection,
 * a chunk per frame; plain frames mix in; bad chunks close the connection
 * (HX_ERR_PROTOCOL), oversize ones are refused from the header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <zstd.h>

#include "frame.h"
#include "frame_zstd.h"
#include "hx_err.h"

/* Makes an append over HX_ZSTD_MIN_BYTES, so that it is compressed. */
#define FILLER_BYTES 600

/* An append of one record patching a row, as a tpcb-like update makes:
 * a few bytes that change (seq) among a filler that does not. */
typedef struct {
    Hexad__Envelope env;
    Hexad__AppendRecords a;
    Hexad__Record rec, *recs[1];
    Hexad__Patch patch, *patches[1];
    uint8_t row[8 + FILLER_BYTES];
} append_msg;

static void append_init(append_msg *m, uint64_t seq)
{
    hexad__envelope__init(&m->env);
    hexad__append_records__init(&m->a);
    hexad__record__init(&m->rec);
    hexad__patch__init(&m->patch);
    for (int i = 0; i < 8; i++)
        m->row[i] = (uint8_t)(seq >> (8 * i));
    memset(m->row + 8, ' ', FILLER_BYTES);
    m->patch.offset = (uint32_t)(seq % 4000);
    m->patch.data.data = m->row;
    m->patch.data.len = sizeof m->row;
    m->patches[0] = &m->patch;
    m->rec.lsn = 1000 + seq;
    m->rec.prev_lsn = 999 + seq;
    m->rec.page_no = 7 + seq % 50;
    m->rec.n_patches = 1;
    m->rec.patches = m->patches;
    m->rec.checksum = seq * 0x9e3779b97f4a7c15u;
    m->recs[0] = &m->rec;
    m->a.volume = 1;
    m->a.pg = 0;
    m->a.volume_epoch = 3;
    m->a.n_records = 1;
    m->a.records = m->recs;
    m->env.req_id = seq;
    m->env.body_case = HEXAD__ENVELOPE__BODY_APPEND;
    m->env.append = &m->a;
}

static void assert_append(const Hexad__Envelope *env, uint64_t seq)
{
    append_msg want;
    append_init(&want, seq);
    assert_int_equal(env->body_case, HEXAD__ENVELOPE__BODY_APPEND);
    assert_int_equal(env->req_id, seq);
    assert_int_equal(env->append->n_records, 1);
    const Hexad__Record *r = env->append->records[0];
    assert_int_equal(r->lsn, want.rec.lsn);
    assert_int_equal(r->page_no, want.rec.page_no);
    assert_int_equal(r->checksum, want.rec.checksum);
    assert_int_equal(r->n_patches, 1);
    assert_int_equal(r->patches[0]->offset, want.patch.offset);
    assert_int_equal(r->patches[0]->data.len, sizeof want.row);
    assert_memory_equal(r->patches[0]->data.data, want.row, sizeof want.row);
}

/* Frames in, frames out, in order, with plain frames in between; the
 * stream makes the compressed ones much smaller than the plain ones. */
static void test_round_trip_mixed_with_plain(void **state)
{
    (void)state;
    hx_zstd_tx *tx = hx_zstd_tx_new();
    assert_non_null(tx);
    hx_zstd_rx *rx = NULL;
    struct evbuffer *b = evbuffer_new();
    size_t plain_bytes = 0, zstd_bytes = 0;
    for (uint64_t seq = 1; seq <= 300; seq++) {
        append_msg m;
        append_init(&m, seq);
        size_t before = evbuffer_get_length(b);
        if (seq % 10 == 0) {
            assert_int_equal(hx_frame_write(b, &m.env, HX_FRAME_MAX_BYTES),
                             HX_OK);
        } else {
            assert_int_equal(hx_zstd_tx_envelope(tx, b, &m.env,
                                                 HX_FRAME_MAX_BYTES), HX_OK);
            zstd_bytes += evbuffer_get_length(b) - before;
            plain_bytes += HX_FRAME_HEADER_BYTES +
                           hexad__envelope__get_packed_size(&m.env);
        }
        /* Read every other round, so frames also queue up. */
        if (seq % 2 == 0) {
            for (uint64_t want = seq - 1; want <= seq; want++) {
                Hexad__Envelope *env = NULL;
                size_t left = evbuffer_get_length(b);
                hx_frame_sizes sz;
                assert_int_equal(hx_frame_read_any(b, HX_FRAME_MAX_BYTES, &rx,
                                                   NULL, &env, &sz), 1);
                assert_append(env, want);
                assert_int_equal(sz.wire, left - evbuffer_get_length(b));
                assert_int_equal(sz.body,
                                 hexad__envelope__get_packed_size(env));
                hexad__envelope__free_unpacked(env, NULL);
            }
        }
    }
    assert_int_equal(evbuffer_get_length(b), 0);
    assert_true(zstd_bytes * 2 < plain_bytes);
    evbuffer_free(b);
    hx_zstd_rx_free(rx);
    hx_zstd_tx_free(tx);
}

/* An envelope under HX_ZSTD_MIN_BYTES goes plain, outside the stream: the
 * frames around it still decode. */
static void test_small_envelope_goes_plain(void **state)
{
    (void)state;
    hx_zstd_tx *tx = hx_zstd_tx_new();
    hx_zstd_rx *rx = NULL;
    struct evbuffer *b = evbuffer_new();
    append_msg m;
    append_init(&m, 1);
    assert_true(hexad__envelope__get_packed_size(&m.env) >= HX_ZSTD_MIN_BYTES);
    Hexad__AppendAck ack = HEXAD__APPEND_ACK__INIT;
    ack.scl = 77;
    Hexad__Envelope small = HEXAD__ENVELOPE__INIT;
    small.req_id = 99;
    small.body_case = HEXAD__ENVELOPE__BODY_APPEND_ACK;
    small.append_ack = &ack;
    assert_int_equal(hx_zstd_tx_envelope(tx, b, &m.env, HX_FRAME_MAX_BYTES),
                     HX_OK);
    size_t before = evbuffer_get_length(b);
    assert_int_equal(hx_zstd_tx_envelope(tx, b, &small, HX_FRAME_MAX_BYTES),
                     HX_OK);
    size_t small_len = hexad__envelope__get_packed_size(&small);
    assert_int_equal(evbuffer_get_length(b) - before,
                     HX_FRAME_HEADER_BYTES + small_len);
    append_init(&m, 2);
    assert_int_equal(hx_zstd_tx_envelope(tx, b, &m.env, HX_FRAME_MAX_BYTES),
                     HX_OK);

    Hexad__Envelope *env = NULL;
    hx_frame_sizes sz;
    assert_int_equal(hx_frame_read_any(b, HX_FRAME_MAX_BYTES, &rx, NULL, &env,
                                       &sz), 1);
    assert_append(env, 1);
    assert_true(sz.wire < sz.body);
    hexad__envelope__free_unpacked(env, NULL);
    assert_int_equal(hx_frame_read_any(b, HX_FRAME_MAX_BYTES, &rx, NULL, &env,
                                       &sz), 1);
    assert_int_equal(env->req_id, 99);
    assert_int_equal(env->append_ack->scl, 77);
    assert_int_equal(sz.wire, HX_FRAME_HEADER_BYTES + small_len);
    hexad__envelope__free_unpacked(env, NULL);
    assert_int_equal(hx_frame_read_any(b, HX_FRAME_MAX_BYTES, &rx, NULL, &env,
                                       &sz), 1);
    assert_append(env, 2);
    hexad__envelope__free_unpacked(env, NULL);
    evbuffer_free(b);
    hx_zstd_rx_free(rx);
    hx_zstd_tx_free(tx);
}

/* A frame cut anywhere is "not complete yet" and drains nothing. */
static void test_partial_frame_waits(void **state)
{
    (void)state;
    hx_zstd_tx *tx = hx_zstd_tx_new();
    hx_zstd_rx *rx = NULL;
    struct evbuffer *whole = evbuffer_new();
    append_msg m;
    append_init(&m, 42);
    assert_int_equal(hx_zstd_tx_envelope(tx, whole, &m.env, HX_FRAME_MAX_BYTES),
                     HX_OK);
    size_t len = evbuffer_get_length(whole);
    uint8_t *bytes = malloc(len);
    evbuffer_remove(whole, bytes, len);
    struct evbuffer *b = evbuffer_new();
    Hexad__Envelope *env = NULL;
    hx_frame_sizes sz;
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(hx_frame_read_any(b, HX_FRAME_MAX_BYTES, &rx, NULL,
                                           &env, &sz), 0);
        assert_int_equal(evbuffer_get_length(b), i);
        evbuffer_add(b, bytes + i, 1);
    }
    assert_int_equal(hx_frame_read_any(b, HX_FRAME_MAX_BYTES, &rx, NULL, &env, &sz),
                     1);
    assert_append(env, 42);
    hexad__envelope__free_unpacked(env, NULL);
    free(bytes);
    evbuffer_free(b);
    evbuffer_free(whole);
    hx_zstd_rx_free(rx);
    hx_zstd_tx_free(tx);
}

/* One compressed frame's bytes, header included (malloc'd). */
static uint8_t *one_frame(uint64_t seq, size_t *len)
{
    hx_zstd_tx *tx = hx_zstd_tx_new();
    struct evbuffer *b = evbuffer_new();
    append_msg m;
    append_init(&m, seq);
    assert_int_equal(hx_zstd_tx_envelope(tx, b, &m.env, HX_FRAME_MAX_BYTES),
                     HX_OK);
    *len = evbuffer_get_length(b);
    uint8_t *bytes = malloc(*len);
    evbuffer_remove(b, bytes, *len);
    evbuffer_free(b);
    hx_zstd_tx_free(tx);
    return bytes;
}

static int read_bytes(const uint8_t *bytes, size_t len, size_t max_bytes,
                      size_t *left)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, bytes, len);
    hx_zstd_rx *rx = NULL;
    Hexad__Envelope *env = NULL;
    hx_frame_sizes sz;
    int rc = hx_frame_read_any(b, max_bytes, &rx, NULL, &env, &sz);
    if (rc == 1)
        hexad__envelope__free_unpacked(env, NULL);
    *left = evbuffer_get_length(b);
    evbuffer_free(b);
    hx_zstd_rx_free(rx);
    return rc;
}

/* Invariant 2: a chunk that decodes to another length than its header
 * says, or does not decode, is a protocol error (and the frame drained). */
static void test_bad_chunk_is_protocol_error(void **state)
{
    (void)state;
    size_t len, left;
    uint8_t *good = one_frame(5, &len);
    assert_int_equal(read_bytes(good, len, HX_FRAME_MAX_BYTES, &left), 1);
    uint32_t body = hx_get_be32(good + 4);
    uint8_t *bad = malloc(len);

    for (int delta = -1; delta <= 1; delta += 2) {
        memcpy(bad, good, len);
        hx_put_be32(bad + 4, body + (uint32_t)delta);
        assert_int_equal(read_bytes(bad, len, HX_FRAME_MAX_BYTES, &left),
                         HX_ERR_PROTOCOL);
        assert_int_equal(left, 0);
    }
    memcpy(bad, good, len);
    hx_put_be32(bad + 4, 0);
    assert_int_equal(read_bytes(bad, len, HX_FRAME_MAX_BYTES, &left),
                     HX_ERR_PROTOCOL);

    /* Garbage where the zstd frame header should be. */
    memcpy(bad, good, len);
    memset(bad + HX_FRAME_ZSTD_HEADER_BYTES, 0xa5, 6);
    assert_int_equal(read_bytes(bad, len, HX_FRAME_MAX_BYTES, &left),
                     HX_ERR_PROTOCOL);
    assert_int_equal(left, 0);
    free(bad);
    free(good);
}

/* Oversize: refused from the header, before the chunk arrives or
 * anything is allocated; a sender refuses an envelope over its limit. */
static void test_oversize(void **state)
{
    (void)state;
    size_t len, left;
    uint8_t *f = one_frame(9, &len);
    /* Only the 8-byte header: the limit is checked before the chunk. */
    assert_int_equal(read_bytes(f, HX_FRAME_ZSTD_HEADER_BYTES, 16, &left),
                     HX_ERR_TOO_BIG);
    uint8_t hdr[HX_FRAME_ZSTD_HEADER_BYTES];
    hx_put_be32(hdr, HX_FRAME_ZSTD_FLAG | 0x7fffffffu);
    hx_put_be32(hdr + 4, 100);
    assert_int_equal(read_bytes(hdr, sizeof hdr, HX_FRAME_MAX_BYTES, &left),
                     HX_ERR_TOO_BIG);

    hx_zstd_tx *tx = hx_zstd_tx_new();
    struct evbuffer *b = evbuffer_new();
    append_msg m;
    append_init(&m, 9);
    assert_int_equal(hx_zstd_tx_envelope(tx, b, &m.env, 16), HX_ERR_TOO_BIG);
    assert_int_equal(evbuffer_get_length(b), 0);
    /* The refusal left the stream usable. */
    assert_int_equal(hx_zstd_tx_envelope(tx, b, &m.env, HX_FRAME_MAX_BYTES),
                     HX_OK);
    hx_zstd_rx *rx = NULL;
    Hexad__Envelope *env = NULL;
    hx_frame_sizes sz;
    assert_int_equal(hx_frame_read_any(b, HX_FRAME_MAX_BYTES, &rx, NULL, &env, &sz),
                     1);
    assert_append(env, 9);
    hexad__envelope__free_unpacked(env, NULL);
    hx_zstd_rx_free(rx);
    evbuffer_free(b);
    hx_zstd_tx_free(tx);
    free(f);
}

/* A stream that declares a window over HX_ZSTD_WINDOW_LOG is refused, so a
 * peer cannot make the decoder allocate more. */
static void test_window_over_limit_refused(void **state)
{
    (void)state;
    append_msg m;
    append_init(&m, 3);
    size_t body = hexad__envelope__get_packed_size(&m.env);
    uint8_t *packed = malloc(body);
    hexad__envelope__pack(&m.env, packed);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(
        cc, ZSTD_c_windowLog, HX_ZSTD_WINDOW_LOG + 4)));
    size_t cap = HX_FRAME_ZSTD_HEADER_BYTES + ZSTD_compressBound(body);
    uint8_t *frame = malloc(cap);
    ZSTD_inBuffer in = {packed, body, 0};
    ZSTD_outBuffer out = {frame + HX_FRAME_ZSTD_HEADER_BYTES,
                          cap - HX_FRAME_ZSTD_HEADER_BYTES, 0};
    assert_int_equal(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_flush), 0);
    hx_put_be32(frame, HX_FRAME_ZSTD_FLAG | (uint32_t)out.pos);
    hx_put_be32(frame + 4, (uint32_t)body);
    size_t left;
    assert_int_equal(read_bytes(frame, HX_FRAME_ZSTD_HEADER_BYTES + out.pos,
                                HX_FRAME_MAX_BYTES, &left),
                     HX_ERR_PROTOCOL);

    /* The same envelope within the window decodes: the refusal above was
     * the window's, not the test's framing. */
    ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(
        cc, ZSTD_c_windowLog, HX_ZSTD_WINDOW_LOG)));
    in.pos = 0;
    out.pos = 0;
    assert_int_equal(ZSTD_compressStream2(cc, &out, &in, ZSTD_e_flush), 0);
    hx_put_be32(frame, HX_FRAME_ZSTD_FLAG | (uint32_t)out.pos);
    assert_int_equal(read_bytes(frame, HX_FRAME_ZSTD_HEADER_BYTES + out.pos,
                                HX_FRAME_MAX_BYTES, &left), 1);
    ZSTD_freeCCtx(cc);
    free(frame);
    free(packed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_mixed_with_plain),
        cmocka_unit_test(test_small_envelope_goes_plain),
        cmocka_unit_test(test_partial_frame_waits),
        cmocka_unit_test(test_bad_chunk_is_protocol_error),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_window_over_limit_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
