/* Unit tests of storage-node/segment_journal.c, the storage node's ring
 * journal, against real files in a temporary directory (removed at the
 * end of every test, failed or not) with real fdatasync.
 *
 * The contract is storage-node/segment_journal.h: each test names the
 * part it checks ("invariant 2", "open", ...). Entry positions are
 * computed from the layout the header states: an entry is a 32-byte header
 * then its payload, with no padding, and position p lives at file offset
 * 4096 + p % ring_bytes. Corruption is done with plain POSIX calls while
 * the journal is closed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hx_err.h"
#include "rm_tree.h"
#include "segment_journal.h"

#define HDR SEGMENT_JOURNAL_HEADER_BYTES
#define MIN_SIZE ((uint64_t)SEGMENT_JOURNAL_MIN_BYTES)
#define ENTRIES_MAX 256u

/* ------------------------------------------------------------------------
 * Helpers: payload lists, a journal in a temporary directory, raw file
 * edits.
 * ---------------------------------------------------------------------- */

/* Owned copies of payloads, in order. */
typedef struct {
    char *p[ENTRIES_MAX];
    size_t len[ENTRIES_MAX];
    size_t n;
} entries;

static void entries_push(entries *e, const char *p, size_t len)
{
    assert_true(e->n < ENTRIES_MAX);
    char *c = malloc(len ? len : 1);
    assert_non_null(c);
    if (len)
        memcpy(c, p, len);
    e->p[e->n] = c;
    e->len[e->n] = len;
    e->n++;
}

static void entries_clear(entries *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->p[i]);
    e->n = 0;
}

typedef struct {
    char dir[64];
    char path[128];
    segment_journal *j;
    entries want; /* appended since the last release, in order */
    entries got;  /* what the last replay applied */
    char *saved;  /* a copy of the journal file, for sub-cases */
    size_t saved_len;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/hx_test_segjournal_XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/journal", f->dir);
    *state = f;
    return 0;
}

/* Runs after every test, also after a failed assertion. */
static int teardown(void **state)
{
    fixture *f = *state;
    segment_journal_close(f->j);
    entries_clear(&f->want);
    entries_clear(&f->got);
    free(f->saved);
    hx_test_rm_tree(f->dir);
    free(f);
    return 0;
}

/* Deterministic bytes that depend on seed and index (zeros included). */
static void pattern(char *buf, size_t len, uint64_t seed)
{
    uint32_t x = (uint32_t)(seed * 2654435761u) ^ 0x9e3779b9u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (char)(x >> 23);
    }
}

static void jopen(fixture *f, uint64_t size_bytes)
{
    assert_null(f->j);
    segment_store_why why = {0};
    int rc = segment_journal_open(f->path, size_bytes, &f->j, &why);
    if (rc != HX_OK)
        fail_msg("open %s: %s: %s", f->path, hx_strerror(rc), why.msg);
    assert_non_null(f->j);
}

static void jclose(fixture *f)
{
    segment_journal_close(f->j);
    f->j = NULL;
}

/* Appends payload (tracked in f->want); checks that head moves by exactly
 * header + payload. Returns the entry's position. */
static uint64_t append_buf(fixture *f, const char *p, size_t len)
{
    uint64_t pos = segment_journal_head(f->j);
    segment_store_why why = {0};
    int rc = segment_journal_append(f->j, p, len, &why);
    if (rc != HX_OK)
        fail_msg("append of %zu bytes at %" PRIu64 ": %s: %s", len, pos,
                 hx_strerror(rc), why.msg);
    assert_int_equal(segment_journal_head(f->j), pos + HDR + len);
    assert_int_equal(segment_journal_used(f->j),
                     segment_journal_head(f->j) - segment_journal_tail(f->j));
    entries_push(&f->want, p, len);
    return pos;
}

static uint64_t append_pat(fixture *f, size_t len, uint64_t seed)
{
    char *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    pattern(buf, len, seed);
    segment_store_why why = {0};
    uint64_t pos = segment_journal_head(f->j);
    int rc = segment_journal_append(f->j, buf, len, &why);
    if (rc == HX_OK)
        entries_push(&f->want, buf, len);
    free(buf);
    if (rc != HX_OK)
        fail_msg("append of %zu bytes at %" PRIu64 ": %s: %s", len, pos,
                 hx_strerror(rc), why.msg);
    assert_int_equal(segment_journal_head(f->j), pos + HDR + len);
    return pos;
}

/* Append rc only (the payload is not tracked). */
static int try_append(fixture *f, size_t len, uint64_t seed)
{
    char *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    pattern(buf, len, seed);
    segment_store_why why = {0};
    int rc = segment_journal_append(f->j, buf, len, &why);
    free(buf);
    return rc;
}

/* Releases everything appended so far: tail = head. */
static void release_all(fixture *f)
{
    uint64_t head = segment_journal_head(f->j);
    segment_store_why why = {0};
    int rc = segment_journal_release(f->j, head, &why);
    if (rc != HX_OK)
        fail_msg("release to %" PRIu64 ": %s: %s", head, hx_strerror(rc),
                 why.msg);
    assert_int_equal(segment_journal_tail(f->j), head);
    assert_int_equal(segment_journal_head(f->j), head);
    assert_int_equal(segment_journal_used(f->j), 0);
    entries_clear(&f->want);
}

static void release_to(fixture *f, uint64_t upto)
{
    segment_store_why why = {0};
    int rc = segment_journal_release(f->j, upto, &why);
    if (rc != HX_OK)
        fail_msg("release to %" PRIu64 ": %s: %s", upto, hx_strerror(rc),
                 why.msg);
    assert_int_equal(segment_journal_tail(f->j), upto);
}

static int collect(void *arg, const char *payload, size_t len)
{
    entries_push(arg, payload, len);
    return 0;
}

/* Replays the open journal into f->got; returns the entry count. */
static uint64_t replay(fixture *f)
{
    entries_clear(&f->got);
    uint64_t n = UINT64_MAX;
    segment_store_why why = {0};
    int rc = segment_journal_replay(f->j, collect, &f->got, &n, &why);
    if (rc != HX_OK)
        fail_msg("replay: %s: %s", hx_strerror(rc), why.msg);
    assert_int_equal(n, f->got.n);
    return n;
}

/* Close, open (the existing file: size_bytes is ignored), check that
 * nothing is replayed by open itself (head == tail), replay. */
static uint64_t reopen_replay(fixture *f)
{
    jclose(f);
    jopen(f, MIN_SIZE);
    assert_int_equal(segment_journal_head(f->j), segment_journal_tail(f->j));
    assert_int_equal(segment_journal_used(f->j), 0);
    return replay(f);
}

/* The last replay applied exactly want[from, from + count), byte for
 * byte, in order. */
static void assert_replayed_n(const entries *want, const entries *got,
                              size_t from, size_t count)
{
    assert_true(from + count <= want->n);
    if (got->n != count)
        fail_msg("replayed %zu entries, want %zu", got->n, count);
    for (size_t i = 0; i < count; i++) {
        if (got->len[i] != want->len[from + i])
            fail_msg("entry %zu: %zu bytes, want %zu", i, got->len[i],
                     want->len[from + i]);
        if (got->len[i] && memcmp(got->p[i], want->p[from + i], got->len[i]))
            fail_msg("entry %zu (%zu bytes): payload differs", i, got->len[i]);
    }
}

/* The last replay applied exactly want[from..], in order. */
static void assert_replayed(const entries *want, const entries *got,
                            size_t from)
{
    assert_true(from <= want->n);
    assert_replayed_n(want, got, from, want->n - from);
}

static uint64_t phys(uint64_t pos, uint64_t ring)
{
    return SEGMENT_JOURNAL_RING_OFFSET + pos % ring;
}

static void file_xor(const char *path, uint64_t off, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b = 0;
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    assert_int_equal(close(fd), 0);
}

static void file_fill(const char *path, uint64_t off, size_t len, uint8_t v)
{
    char buf[4096];
    assert_true(len <= sizeof buf);
    memset(buf, v, len);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Keeps a copy of the (closed) journal file in f->saved. */
static void file_save(fixture *f)
{
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    free(f->saved);
    f->saved_len = (size_t)st.st_size;
    f->saved = malloc(f->saved_len);
    assert_non_null(f->saved);
    int fd = open(f->path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, f->saved, f->saved_len, 0),
                     (ssize_t)f->saved_len);
    assert_int_equal(close(fd), 0);
}

static void file_restore(fixture *f)
{
    assert_null(f->j);
    int fd = open(f->path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, f->saved, f->saved_len, 0),
                     (ssize_t)f->saved_len);
    assert_int_equal(close(fd), 0);
}

/* Releases, then appends (and releases) a filler entry so that head lands
 * at ring offset `off`. */
static void land_at(fixture *f, uint64_t off, uint64_t *seed)
{
    uint64_t ring = segment_journal_ring_bytes(f->j);
    release_all(f);
    uint64_t gap = (off + ring - segment_journal_head(f->j) % ring) % ring;
    if (gap == 0)
        return;
    if (gap < HDR + 1) { /* too close for a filler: go around once more */
        append_pat(f, 100, (*seed)++);
        release_all(f);
        gap = (off + ring - segment_journal_head(f->j) % ring) % ring;
    }
    append_pat(f, gap - HDR, (*seed)++);
    release_all(f);
    assert_int_equal(segment_journal_head(f->j) % ring, off);
}

/* ------------------------------------------------------------------------
 * Tests.
 * ---------------------------------------------------------------------- */

/* segment_journal.h open, append and replay, invariant 3: a fresh file
 * replays nothing (also after a reopen, though its ring is all zeros);
 * payloads of 1, 100 and 5000 bytes, binary ones with zeros and one of
 * zeros only come back after a reopen in order and byte-identical, with
 * the right count; head moves by header + payload per append, and after
 * replay equals head before close. */
static void test_append_reopen_replay(void **state)
{
    fixture *f = *state;
    jopen(f, MIN_SIZE);
    assert_int_equal(segment_journal_size(f->j), MIN_SIZE);
    assert_int_equal(segment_journal_ring_bytes(f->j),
                     MIN_SIZE - SEGMENT_JOURNAL_RING_OFFSET);
    const uint64_t start = segment_journal_head(f->j);
    assert_int_equal(segment_journal_tail(f->j), start);
    assert_int_equal(replay(f), 0);
    assert_int_equal(segment_journal_head(f->j), start);
    assert_int_equal(reopen_replay(f), 0);
    assert_int_equal(segment_journal_head(f->j), start);

    char one = 'x';
    char hundred[100];
    char big[5000];
    char bin[300];
    char zeros[1000] = {0};
    pattern(hundred, sizeof hundred, 1);
    pattern(big, sizeof big, 2);
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (char)(i % 3 ? i : 0);
    bin[sizeof bin - 1] = 0;
    append_buf(f, &one, 1);
    append_buf(f, hundred, sizeof hundred);
    append_buf(f, big, sizeof big);
    append_buf(f, bin, sizeof bin);
    append_buf(f, zeros, sizeof zeros);
    const uint64_t head = segment_journal_head(f->j);
    assert_int_equal(head - start, 5 * HDR + 1 + 100 + 5000 + 300 + 1000);
    assert_int_equal(segment_journal_used(f->j), head - start);

    assert_int_equal(reopen_replay(f), 5);
    assert_replayed(&f->want, &f->got, 0);
    assert_int_equal(segment_journal_head(f->j), head);
    assert_int_equal(segment_journal_tail(f->j), start);
    assert_int_equal(segment_journal_used(f->j), head - start);

    /* Appends after a replay follow the replayed entries. */
    append_buf(f, &one, 1);
    assert_int_equal(reopen_replay(f), 6);
    assert_replayed(&f->want, &f->got, 0);
}

/* segment_journal.h layout ("an entry may wrap around the ring's end") and
 * invariant 1: over several laps of the smallest ring, with odd sizes and
 * releases now and then, a reopen replays exactly the entries appended
 * since the last release. Then entries placed at chosen ring offsets: the
 * payload crossing the end, the header split across it, the payload
 * starting at the ring's first byte, an entry ending at the last byte, a
 * header with one byte before the end. */
static void test_wrap_around(void **state)
{
    fixture *f = *state;
    jopen(f, MIN_SIZE);
    const uint64_t ring = segment_journal_ring_bytes(f->j);
    const uint64_t start = segment_journal_head(f->j);
    static const size_t sizes[] = {3001, 7777, 1, 12345, 500, 7777, 3001};
    const size_t n_sizes = sizeof sizes / sizeof sizes[0];
    uint64_t seed = 0;
    size_t straddles = 0;

    for (size_t i = 0; segment_journal_head(f->j) - start <= 3 * ring; i++) {
        size_t len = sizes[i % n_sizes];
        if (i % 5 == 4 || segment_journal_used(f->j) + HDR + len > ring)
            release_all(f);
        uint64_t pos = append_pat(f, len, seed++);
        if (pos % ring + HDR + len > ring)
            straddles++;
        assert_true(i < 1000);
    }
    assert_true(straddles >= 3);
    assert_true(f->want.n >= 1);
    uint64_t head = segment_journal_head(f->j);
    assert_int_equal(reopen_replay(f), f->want.n);
    assert_replayed(&f->want, &f->got, 0);
    assert_int_equal(segment_journal_head(f->j), head);

    static const struct {
        uint64_t before_end; /* the entry starts this many bytes before */
        size_t len;
    } cases[] = {
        {1000, 7777},      /* payload crosses the end */
        {16, 3001},        /* header split across the end */
        {HDR, 7777},       /* payload starts at the ring's first byte */
        {HDR + 3001, 3001}, /* ends at the ring's last byte */
        {1, 500},          /* one header byte before the end */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        land_at(f, ring - cases[c].before_end, &seed);
        uint64_t pos = append_pat(f, cases[c].len, seed++);
        assert_int_equal(pos % ring, ring - cases[c].before_end);
        append_pat(f, 1, seed++);
        append_pat(f, 12345, seed++);
        append_pat(f, 3001, seed++);
        head = segment_journal_head(f->j);
        if (reopen_replay(f) != 4)
            fail_msg("case %zu: %zu entries replayed, want 4", c, f->got.n);
        assert_replayed(&f->want, &f->got, 0);
        assert_int_equal(segment_journal_head(f->j), head);
    }
    assert_true(segment_journal_head(f->j) > 3 * ring);
    assert_true(segment_journal_head(f->j) - start > 3 * ring);
}

/* segment_journal.h append: without releases, appends succeed until the
 * ring is full (head - tail may reach ring_bytes, invariant 1), then give
 * HX_ERR_BUSY and change nothing; everything appended replays; after a
 * release an append fits again. An entry larger than ring_bytes - header
 * is HX_ERR_INVALID; exactly that size fits an empty ring. */
static void test_full_ring(void **state)
{
    fixture *f = *state;
    jopen(f, MIN_SIZE);
    const uint64_t ring = segment_journal_ring_bytes(f->j);
    const size_t len = 5000;
    uint64_t seed = 100;
    int rc = HX_OK;
    size_t n = 0;
    while (n < 100) {
        uint64_t head = segment_journal_head(f->j);
        rc = try_append(f, len, seed);
        if (rc != HX_OK) {
            assert_int_equal(segment_journal_head(f->j), head);
            break;
        }
        char buf[5000];
        pattern(buf, len, seed);
        entries_push(&f->want, buf, len);
        seed++;
        n++;
    }
    assert_int_equal(rc, HX_ERR_BUSY);
    assert_int_equal(n, ring / (HDR + len));
    /* The rest of the ring, to the last byte, still takes one entry. */
    uint64_t room = ring - segment_journal_used(f->j);
    assert_true(room > HDR && room < HDR + len);
    append_pat(f, (size_t)(room - HDR), seed++);
    assert_int_equal(segment_journal_used(f->j), ring);
    assert_int_equal(try_append(f, 1, seed), HX_ERR_BUSY);
    uint64_t head = segment_journal_head(f->j);

    assert_int_equal(reopen_replay(f), n + 1);
    assert_replayed(&f->want, &f->got, 0);
    assert_int_equal(segment_journal_head(f->j), head);
    assert_int_equal(try_append(f, 1, seed), HX_ERR_BUSY);

    release_all(f);
    append_pat(f, len, seed++);
    assert_int_equal(reopen_replay(f), 1);
    assert_replayed(&f->want, &f->got, 0);

    /* Too large for any ring state: INVALID, not BUSY. */
    release_all(f);
    assert_int_equal(try_append(f, (size_t)(ring - HDR + 1), seed),
                     HX_ERR_INVALID);
    assert_int_equal(try_append(f, (size_t)(4 * ring), seed), HX_ERR_INVALID);
    assert_int_equal(segment_journal_head(f->j), segment_journal_tail(f->j));
    append_pat(f, (size_t)(ring - HDR), seed++);
    assert_int_equal(segment_journal_used(f->j), ring);
    assert_int_equal(reopen_replay(f), 1);
    assert_replayed(&f->want, &f->got, 0);
}

/* segment_journal.h invariant 2 (torn tail): three entries, then the file
 * damaged while closed. (a) a flipped payload byte of the 3rd: the first 2
 * replay, head stops at the 3rd's position, and a new append there
 * replays after entry 2 on the next reopen; (b) the 2nd's header magic
 * damaged: only the 1st replays; (c) the last header byte (hash) of the
 * 3rd damaged: the first 2 replay; (d) header byte 7 of the 3rd (the top
 * of a little-endian length after a 4-byte magic: a length of about
 * 128 MiB) damaged: the first 2 replay. Every header byte is magic, length,
 * position or hash, so any flip must end the replay there. */
static void test_torn_tail(void **state)
{
    fixture *f = *state;
    jopen(f, MIN_SIZE);
    const uint64_t ring = segment_journal_ring_bytes(f->j);
    uint64_t p[3];
    p[0] = append_pat(f, 100, 1);
    p[1] = append_pat(f, 5000, 2);
    p[2] = append_pat(f, 3000, 3);
    assert_int_equal(p[1], p[0] + HDR + 100);
    assert_int_equal(p[2], p[1] + HDR + 5000);
    jclose(f);
    file_save(f);

    /* (a) */
    file_xor(f->path, phys(p[2] + HDR + 1500, ring), 0x01);
    assert_int_equal(reopen_replay(f), 2);
    assert_replayed_n(&f->want, &f->got, 0, 2);
    assert_int_equal(segment_journal_head(f->j), p[2]);
    /* want becomes entries 1, 2 and the new one (the 3rd is gone). */
    f->want.n--;
    free(f->want.p[f->want.n]);
    assert_int_equal(append_pat(f, 777, 4), p[2]);
    uint64_t head = segment_journal_head(f->j);
    assert_int_equal(reopen_replay(f), 3);
    assert_replayed(&f->want, &f->got, 0);
    assert_int_equal(segment_journal_head(f->j), head);
    jclose(f);

    /* (b) */
    file_restore(f);
    file_xor(f->path, phys(p[1], ring), 0xff);
    jopen(f, MIN_SIZE);
    assert_int_equal(replay(f), 1);
    assert_replayed_n(&f->want, &f->got, 0, 1);
    assert_int_equal(segment_journal_head(f->j), p[1]);
    jclose(f);

    /* (c) */
    file_restore(f);
    file_xor(f->path, phys(p[2] + HDR - 1, ring), 0x80);
    jopen(f, MIN_SIZE);
    assert_int_equal(replay(f), 2);
    assert_replayed_n(&f->want, &f->got, 0, 2);
    assert_int_equal(segment_journal_head(f->j), p[2]);
    jclose(f);

    /* (d) */
    file_restore(f);
    file_xor(f->path, phys(p[2] + 7, ring), 0x08);
    jopen(f, MIN_SIZE);
    assert_int_equal(replay(f), 2);
    assert_replayed_n(&f->want, &f->got, 0, 2);
    assert_int_equal(segment_journal_head(f->j), p[2]);
}

/* segment_journal.h invariant 2 (earlier laps): entries of exactly 1/16
 * of the ring fill 1.5 laps with releases as they go, so that the ring
 * offset of head holds a complete, intact entry of the previous lap. After
 * a release to head and a reopen nothing replays and head == tail == the
 * released position; one new entry then replays alone, though the old
 * lap's next entry follows it intact. Then the same with odd sizes. */
static void test_stale_lap(void **state)
{
    fixture *f = *state;
    jopen(f, MIN_SIZE);
    const uint64_t ring = segment_journal_ring_bytes(f->j);
    const size_t len = (size_t)(ring / 16 - HDR);
    uint64_t seed = 7;
    land_at(f, 0, &seed);
    for (int i = 0; i < 24; i++) {
        if (i % 4 == 0)
            release_all(f);
        append_pat(f, len, seed++);
    }
    release_all(f);
    uint64_t rel = segment_journal_head(f->j);
    assert_int_equal(rel % ring, 8 * (ring / 16));
    assert_int_equal(reopen_replay(f), 0);
    assert_int_equal(segment_journal_head(f->j), rel);
    assert_int_equal(segment_journal_tail(f->j), rel);

    append_pat(f, len, seed++);
    assert_int_equal(reopen_replay(f), 1);
    assert_replayed(&f->want, &f->got, 0);
    assert_int_equal(segment_journal_head(f->j), rel + HDR + len);

    /* Odd sizes over more than a lap. */
    static const size_t sizes[] = {3001, 7777, 1, 12345, 500};
    for (size_t i = 0; i < 25; i++) {
        size_t l = sizes[i % 5];
        if (i % 3 == 0 || segment_journal_used(f->j) + HDR + l > ring)
            release_all(f);
        append_pat(f, l, seed++);
    }
    release_all(f);
    rel = segment_journal_head(f->j);
    assert_int_equal(reopen_replay(f), 0);
    assert_int_equal(segment_journal_head(f->j), rel);
    assert_int_equal(segment_journal_tail(f->j), rel);
}

/* segment_journal.h layout and release: a release writes the superblock
 * slot not written last, so after two releases the slots hold the two
 * latest tails. Intact, open takes the newer one. One slot damaged
 * (either): open still succeeds from the older or the newer tail, and
 * every entry replayed is intact and in order. Both damaged: HX_ERR_IO
 * with a message. */
static void test_superblock_slots(void **state)
{
    fixture *f = *state;
    jopen(f, MIN_SIZE);
    uint64_t p[6];
    for (int i = 0; i < 6; i++)
        p[i] = append_pat(f, 1000 + 100 * (size_t)i, 40 + (uint64_t)i);
    const uint64_t head = segment_journal_head(f->j);
    release_to(f, p[2]);
    release_to(f, p[4]);
    assert_int_equal(segment_journal_head(f->j), head);
    jclose(f);
    file_save(f);

    jopen(f, MIN_SIZE);
    assert_int_equal(segment_journal_tail(f->j), p[4]);
    assert_int_equal(replay(f), 2);
    assert_replayed(&f->want, &f->got, 4);
    assert_int_equal(segment_journal_head(f->j), head);
    jclose(f);

    static const uint64_t slot[2] = {0, 512};
    for (int s = 0; s < 2; s++) {
        file_restore(f);
        file_fill(f->path, slot[s], 512, 0xa5);
        jopen(f, MIN_SIZE);
        uint64_t tail = segment_journal_tail(f->j);
        if (tail != p[2] && tail != p[4])
            fail_msg("slot %d damaged: tail %" PRIu64 ", want %" PRIu64
                     " or %" PRIu64, s, tail, p[2], p[4]);
        uint64_t n = replay(f);
        assert_int_equal(n, tail == p[2] ? 4 : 2);
        assert_replayed(&f->want, &f->got, tail == p[2] ? 2 : 4);
        assert_int_equal(segment_journal_head(f->j), head);
        jclose(f);
    }

    file_restore(f);
    file_fill(f->path, 0, 512, 0xa5);
    file_fill(f->path, 512, 512, 0x5a);
    segment_store_why why = {0};
    segment_journal *j = NULL;
    int rc = segment_journal_open(f->path, MIN_SIZE, &j, &why);
    if (rc == HX_OK)
        segment_journal_close(j);
    assert_int_equal(rc, HX_ERR_IO);
    assert_true(why.msg[0] != '\0');
}

/* segment_journal.h open: a new file's size is rounded down to 4 KiB and
 * written in full; a size that is below SEGMENT_JOURNAL_MIN_BYTES is
 * HX_ERR_INVALID and creates nothing; an existing file keeps its size
 * whatever size_bytes says; a file without a valid superblock (all
 * zeros) is HX_ERR_IO; a missing directory is HX_ERR_IO with a message
 * naming the path. */
static void test_open_sizes(void **state)
{
    fixture *f = *state;
    segment_store_why why = {0};
    segment_journal *j = NULL;
    static const uint64_t small[] = {0, 4096, MIN_SIZE - 4096, MIN_SIZE - 1};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        memset(&why, 0, sizeof why);
        int rc = segment_journal_open(f->path, small[i], &j, &why);
        if (rc != HX_ERR_INVALID) {
            if (rc == HX_OK)
                segment_journal_close(j);
            fail_msg("size %" PRIu64 ": %s, want HX_ERR_INVALID", small[i],
                     hx_strerror(rc));
        }
    }

    const uint64_t size = MIN_SIZE + 3 * 4096;
    jopen(f, size + 100);
    assert_int_equal(segment_journal_size(f->j), size);
    assert_int_equal(segment_journal_ring_bytes(f->j),
                     size - SEGMENT_JOURNAL_RING_OFFSET);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, size);
    assert_true((uint64_t)st.st_blocks * 512 >= size); /* not sparse */
    append_pat(f, 10, 1);
    jclose(f);

    jopen(f, MIN_SIZE);
    assert_int_equal(segment_journal_size(f->j), size);
    jclose(f);
    jopen(f, 64 * MIN_SIZE);
    assert_int_equal(segment_journal_size(f->j), size);
    assert_int_equal(replay(f), 1);
    assert_replayed(&f->want, &f->got, 0);
    jclose(f);
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, size);

    /* All zeros: no valid superblock. */
    char zpath[160];
    snprintf(zpath, sizeof zpath, "%s/zeros", f->dir);
    int fd = open(zpath, O_CREAT | O_RDWR | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)MIN_SIZE), 0);
    assert_int_equal(close(fd), 0);
    memset(&why, 0, sizeof why);
    int rc = segment_journal_open(zpath, MIN_SIZE, &j, &why);
    if (rc == HX_OK)
        segment_journal_close(j);
    assert_int_equal(rc, HX_ERR_IO);
    assert_true(why.msg[0] != '\0');

    char missing[160], mpath[192];
    snprintf(missing, sizeof missing, "%s/no-such-dir", f->dir);
    snprintf(mpath, sizeof mpath, "%s/journal", missing);
    memset(&why, 0, sizeof why);
    rc = segment_journal_open(mpath, MIN_SIZE, &j, &why);
    if (rc == HX_OK)
        segment_journal_close(j);
    assert_int_equal(rc, HX_ERR_IO);
    if (strstr(why.msg, missing) == NULL)
        fail_msg("message \"%s\" does not name %s", why.msg, missing);
}

typedef struct {
    int calls;
    int stop_at; /* 1-based call that returns ret */
    int ret;
} stopper;

static int stop_apply(void *arg, const char *payload, size_t len)
{
    (void)payload;
    (void)len;
    stopper *s = arg;
    s->calls++;
    return s->calls == s->stop_at ? s->ret : 0;
}

/* segment_journal.h replay: apply returning non-zero stops the replay
 * (apply is not called again) and replay returns that value, positive or
 * negative; a stopped replay loses nothing: a later full replay sees every
 * entry. */
static void test_apply_stops_replay(void **state)
{
    fixture *f = *state;
    jopen(f, MIN_SIZE);
    append_pat(f, 10, 1);
    append_pat(f, 20, 2);
    append_pat(f, 30, 3);
    segment_store_why why = {0};

    jclose(f);
    jopen(f, MIN_SIZE);
    stopper s = {0, 2, 7};
    assert_int_equal(segment_journal_replay(f->j, stop_apply, &s, NULL, &why),
                     7);
    assert_int_equal(s.calls, 2);

    jclose(f);
    jopen(f, MIN_SIZE);
    stopper s2 = {0, 1, HX_ERR_CHECKSUM};
    uint64_t n = 0;
    assert_int_equal(segment_journal_replay(f->j, stop_apply, &s2, &n, &why),
                     HX_ERR_CHECKSUM);
    assert_int_equal(s2.calls, 1);

    assert_int_equal(reopen_replay(f), 3);
    assert_replayed(&f->want, &f->got, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_reopen_replay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrap_around, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_lap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superblock_slots, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_open_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apply_stops_replay, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
