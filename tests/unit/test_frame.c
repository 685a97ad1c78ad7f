/* Framing: a 4-byte big-endian length, then one envelope (issue 3 item 2,
 * DESIGN.md "Shape of the code": a frame over the limit or one that does
 * not decode closes that connection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "arena.h"
#include "frame.h"
#include "hx_err.h"

static struct evbuffer *ack_frame(uint64_t req_id, uint64_t scl)
{
    Hexad__AppendAck a = HEXAD__APPEND_ACK__INIT;
    a.pg = 3;
    a.scl = scl;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.req_id = req_id;
    env.body_case = HEXAD__ENVELOPE__BODY_APPEND_ACK;
    env.append_ack = &a;
    struct evbuffer *b = evbuffer_new();
    assert_int_equal(hx_frame_write(b, &env, HX_FRAME_MAX_BYTES), HX_OK);
    return b;
}

/* Frames unpacked into an arena keep their values until the reset, and a
 * reset arena serves the next frame; a large frame takes its own chunk. */
static void test_arena_unpack(void **state)
{
    (void)state;
    hx_arena a;
    hx_arena_init(&a);
    for (uint64_t round = 1; round <= 3; round++) {
        struct evbuffer *b = ack_frame(round, 100 * round);
        struct evbuffer *b2 = ack_frame(round + 10, 7);
        evbuffer_add_buffer(b, b2);
        Hexad__Envelope *e1 = NULL, *e2 = NULL;
        assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, &a.pb, &e1), 1);
        assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, &a.pb, &e2), 1);
        assert_int_equal(e1->req_id, round);
        assert_int_equal(e1->append_ack->scl, 100 * round);
        assert_int_equal(e2->req_id, round + 10);
        hx_arena_reset(&a);
        evbuffer_free(b);
        evbuffer_free(b2);
    }
    unsigned char *big = hx_arena_alloc(&a, 1u << 20);
    assert_non_null(big);
    memset(big, 0xab, 1u << 20);
    unsigned char *small = hx_arena_alloc(&a, 24);
    assert_non_null(small);
    assert_true(((uintptr_t)small % _Alignof(max_align_t)) == 0);
    hx_arena_destroy(&a);
}

/* Two frames back to back decode in order, each drained exactly. */
static void test_round_trip(void **state)
{
    (void)state;
    struct evbuffer *b = ack_frame(7, 100);
    struct evbuffer *b2 = ack_frame(8, 200);
    evbuffer_add_buffer(b, b2);
    Hexad__Envelope *env = NULL;
    assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, NULL, &env), 1);
    assert_int_equal(env->req_id, 7);
    assert_int_equal(env->body_case, HEXAD__ENVELOPE__BODY_APPEND_ACK);
    assert_int_equal(env->append_ack->scl, 100);
    hexad__envelope__free_unpacked(env, NULL);
    assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, NULL, &env), 1);
    assert_int_equal(env->append_ack->scl, 200);
    hexad__envelope__free_unpacked(env, NULL);
    assert_int_equal(evbuffer_get_length(b), 0);
    evbuffer_free(b);
    evbuffer_free(b2);
}

/* Every strict prefix of a frame is "not yet": nothing drained. */
static void test_truncated(void **state)
{
    (void)state;
    struct evbuffer *full = ack_frame(1, 42);
    size_t len = evbuffer_get_length(full);
    uint8_t *bytes = malloc(len);
    evbuffer_copyout(full, bytes, len);
    for (size_t cut = 0; cut < len; cut++) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, bytes, cut);
        Hexad__Envelope *env = NULL;
        assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, NULL, &env), 0);
        assert_int_equal(evbuffer_get_length(b), cut);
        size_t consumed = 0;
        assert_int_equal(hx_frame_decode(bytes, cut, HX_FRAME_MAX_BYTES, NULL, &env, &consumed), 0);
        evbuffer_free(b);
    }
    free(bytes);
    evbuffer_free(full);
}

/* An oversize length is refused from the header alone, before the body
 * arrives (nothing is allocated for it). */
static void test_oversize(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    uint8_t hdr[4] = {0x7f, 0xff, 0xff, 0xff};
    evbuffer_add(b, hdr, sizeof hdr);
    Hexad__Envelope *env = NULL;
    assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, NULL, &env), HX_ERR_TOO_BIG);
    /* A small limit refuses an ordinary frame too. */
    struct evbuffer *f = ack_frame(1, 1);
    assert_int_equal(hx_frame_read(f, 2, NULL, &env), HX_ERR_TOO_BIG);
    /* And the writer refuses to build one. */
    Hexad__Envelope e = HEXAD__ENVELOPE__INIT;
    e.req_id = UINT64_MAX;
    assert_int_equal(hx_frame_write(b, &e, 2), HX_ERR_TOO_BIG);
    evbuffer_free(f);
    evbuffer_free(b);
}

/* Garbage bodies and a zero length are protocol errors, drained. */
static void test_garbage(void **state)
{
    (void)state;
    uint8_t zero[4] = {0, 0, 0, 0};
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, zero, sizeof zero);
    Hexad__Envelope *env = NULL;
    assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, NULL, &env), HX_ERR_PROTOCOL);
    assert_int_equal(evbuffer_get_length(b), 0);
    /* 0xff bytes: an invalid protobuf varint/wire type. */
    uint8_t junk[4 + 8] = {0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    evbuffer_add(b, junk, sizeof junk);
    assert_int_equal(hx_frame_read(b, HX_FRAME_MAX_BYTES, NULL, &env), HX_ERR_PROTOCOL);
    assert_int_equal(evbuffer_get_length(b), 0);
    /* Seeded random bodies never crash (ASan watches the reads). */
    uint64_t x = 0x6865786164ull;
    for (int i = 0; i < 2000; i++) {
        uint8_t buf[4 + 64];
        size_t n = 1 + (size_t)(i % 64);
        buf[0] = buf[1] = buf[2] = 0;
        buf[3] = (uint8_t)n;
        for (size_t k = 0; k < n; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[4 + k] = (uint8_t)x;
        }
        evbuffer_add(b, buf, 4 + n);
        int rc = hx_frame_read(b, HX_FRAME_MAX_BYTES, NULL, &env);
        assert_true(rc == 1 || rc == HX_ERR_PROTOCOL);
        if (rc == 1)
            hexad__envelope__free_unpacked(env, NULL);
        assert_int_equal(evbuffer_get_length(b), 0);
    }
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_arena_unpack),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
