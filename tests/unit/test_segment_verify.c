/* Unit tests of storage-node/segment_verify.c: the chain check after an
 * unclean stop, against a real RocksDB in temporary directories (removed
 * at the end).
 *
 * DESIGN.md "Corruption", segment_store.c invariant 9: a crash is when a
 * write gets lost, and a segment whose SCL claims a record it lacks would
 * serve a page without it. So after an unclean stop no segment serves a
 * page until the scrub has walked its records.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "append_request.h"
#include "hx_err.h"
#include "log.h"
#include "raw_store.h"
#include "record.h"
#include "rm_tree.h"
#include "segment_store.h"
#include "store_options.h"

#define PAGE_SIZE 512u
#define PG_PAGES 100u
#define VOL 1u

/* The records: 1..N_RECORDS, alternating between PG 0 (even LSNs) and
 * PG 1 (odd), each PG's chain linking i to i - 2. Every record writes 8
 * bytes of its own (slot) on its PG's first page, so a page shows which
 * records were applied. */
#define N_RECORDS 120u
#define SLOT_BYTES 8u
static uint32_t rec_pg(uint64_t i) { return (uint32_t)(i % 2 ? 1 : 0); }
static uint64_t rec_prev(uint64_t i) { return i > 2 ? i - 2 : 0; }
static uint64_t rec_page(uint64_t i) { return rec_pg(i) * PG_PAGES + 1; }
static uint32_t rec_off(uint64_t i) { return (uint32_t)((i - 1) / 2) * SLOT_BYTES; }
static uint8_t rec_fill(uint64_t i) { return (uint8_t)(i * 37u + 11u); }
/* The newest record of pg at or below lsn. */
static uint64_t pg_newest(uint32_t pg, uint64_t lsn)
{
    return lsn % 2 == (pg ? 1u : 0u) ? lsn : lsn - 1;
}

typedef struct {
    Hexad__Record rec;
    Hexad__Patch patch;
    Hexad__Patch *pp[1];
    uint8_t data[SLOT_BYTES];
} trec;

/* Record i, sealed (the same bytes in every process). */
static void make_rec(trec *t, uint64_t i)
{
    memset(t, 0, sizeof *t);
    hexad__record__init(&t->rec);
    hexad__patch__init(&t->patch);
    memset(t->data, rec_fill(i), SLOT_BYTES);
    t->patch.offset = rec_off(i);
    t->patch.data.data = t->data;
    t->patch.data.len = SLOT_BYTES;
    t->pp[0] = &t->patch;
    t->rec.lsn = i;
    t->rec.prev_lsn = rec_prev(i);
    t->rec.page_no = rec_page(i);
    t->rec.epoch = 1;
    t->rec.n_patches = 1;
    t->rec.patches = t->pp;
    hx_record_seal(&t->rec);
}

static int append_rec(segment_store *s, uint64_t i)
{
    trec t;
    make_rec(&t, i);
    Hexad__Record *ptrs[1] = {&t.rec};
    Hexad__AppendRecords req;
    Hexad__Geometry geo;
    hx_test_append_request(&req, &geo, VOL, rec_pg(i), 1, PAGE_SIZE, PG_PAGES,
                           ptrs, 1);
    segment_store_append_result res;
    int rc = segment_store_append(s, &req, &res);
    return rc != HX_OK ? rc : res.rc;
}

/* GetPage of pg's page at lsn: HX_OK with the page checked against the
 * records at or below lsn, or the refusal (its message in why). */
static int read_checked(segment_store *s, uint32_t pg, uint64_t lsn,
                        segment_store_why *why)
{
    uint8_t *p = NULL;
    size_t len = 0;
    uint64_t page_lsn = 0;
    *why = (segment_store_why){0};
    int rc = segment_store_get_page(s, VOL, pg, pg * PG_PAGES + 1, lsn, &p,
                                    &len, &page_lsn, why);
    if (rc != HX_OK)
        return rc;
    assert_int_equal(len, PAGE_SIZE);
    assert_int_equal(page_lsn, pg_newest(pg, lsn));
    for (uint64_t i = 1; i <= N_RECORDS; i++) {
        if (rec_pg(i) != pg)
            continue;
        for (uint32_t b = 0; b < SLOT_BYTES; b++) {
            uint8_t want = i <= lsn ? rec_fill(i) : 0;
            if (p[rec_off(i) + b] != want)
                fail_msg("PG %u at %" PRIu64 ": record %" PRIu64 " %s", pg,
                         lsn, i, i <= lsn ? "is not applied"
                                          : "is applied, above the read point");
        }
    }
    free(p);
    return HX_OK;
}

static void assert_refused(segment_store *s, uint32_t pg, uint64_t lsn,
                           const char *why_part)
{
    segment_store_why why;
    int rc = read_checked(s, pg, lsn, &why);
    if (rc != HX_ERR_NOT_COMPLETE || strstr(why.msg, why_part) == NULL)
        fail_msg("PG %u at %" PRIu64 ": expected a refusal naming '%s', got "
                 "%s: '%s'", pg, lsn, why_part, hx_strerror(rc), why.msg);
}

static void assert_served(segment_store *s, uint32_t pg, uint64_t lsn)
{
    segment_store_why why;
    int rc = read_checked(s, pg, lsn, &why);
    if (rc != HX_OK)
        fail_msg("PG %u at %" PRIu64 ": refused (%s): %s", pg, lsn,
                 hx_strerror(rc), why.msg);
}

static segment_store *open_store(const char *dir)
{
    segment_store *s = NULL;
    segment_store_why why = {0};
    int rc = segment_store_open(dir, "s1", &hx_test_store_options, &s, &why);
    if (rc != HX_OK)
        fail_msg("open %s: %s", dir, why.msg);
    return s;
}

/* The child (`--crash-child DIR`, a fresh process: RocksDB's threads do
 * not survive a fork): appends every record, one synced batch each, then
 * dies by SIGKILL with the store open. */
static void crash_child(const char *dir)
{
    segment_store *s = NULL;
    if (segment_store_open(dir, "s1", &hx_test_store_options, &s, NULL) !=
        HX_OK)
        _exit(3);
    for (uint64_t i = 1; i <= N_RECORDS; i++)
        if (append_rec(s, i) != HX_OK)
            _exit(4);
    raise(SIGKILL);
    _exit(5);
}

/* Runs the crash child on a new directory (into dir). */
static void crashed_store(char dir[64])
{
    snprintf(dir, 64, "/tmp/hx_test_verify_XXXXXX");
    assert_non_null(mkdtemp(dir));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_segment_verify", "--crash-child", dir,
              (char *)NULL);
        _exit(127);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
        fail_msg("the child did not die by SIGKILL (exit status %d)",
                 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Record lsn of pg's key ('r') or its page index key ('p'). */
static size_t rec_key(uint8_t k[25], char tag, uint32_t pg, uint64_t lsn)
{
    uint64_t page = rec_page(lsn);
    k[0] = (uint8_t)tag;
    for (int b = 0; b < 4; b++) {
        k[1 + b] = (uint8_t)(VOL >> (24 - 8 * b));
        k[5 + b] = (uint8_t)(pg >> (24 - 8 * b));
    }
    for (int b = 0; b < 8; b++) {
        k[9 + b] = (uint8_t)((tag == 'r' ? lsn : page) >> (56 - 8 * b));
        k[17 + b] = (uint8_t)(lsn >> (56 - 8 * b));
    }
    return tag == 'r' ? 17 : 25;
}

/* Straight in the closed store's RocksDB: deletes record lsn of pg and
 * its page index key, as a lost write does, or (corrupt) flips a byte of
 * the stored record. */
static void damage_record(const char *dir, uint32_t pg, uint64_t lsn,
                          bool corrupt)
{
    raw_store r;
    raw_store_open(&r, dir);
    char *err = NULL;
    uint8_t k[25];
    size_t kl = rec_key(k, 'r', pg, lsn);
    if (corrupt) {
        size_t vl = 0;
        char *v = rocksdb_get_cf(r.db, r.ro, raw_store_cf(&r, 'r'),
                                 (const char *)k, kl, &vl, &err);
        assert_null(err);
        assert_non_null(v);
        v[vl / 2] ^= 0x5a;
        rocksdb_put_cf(r.db, r.wo, raw_store_cf(&r, 'r'), (const char *)k, kl,
                       v, vl, &err);
        rocksdb_free(v);
    } else {
        rocksdb_delete_cf(r.db, r.wo, raw_store_cf(&r, 'r'), (const char *)k,
                          kl, &err);
        assert_null(err);
        kl = rec_key(k, 'p', pg, lsn);
        rocksdb_delete_cf(r.db, r.wo, raw_store_cf(&r, 'p'), (const char *)k,
                          kl, &err);
    }
    assert_null(err);
    raw_store_close(&r);
}

/* Scrubs until every chain is verified (a bounded number of steps). */
static void walk_all(segment_store *s)
{
    segment_store_why why = {0};
    for (int i = 0; i < 100 && segment_store_segments_unverified(s) > 0; i++)
        assert_int_equal(segment_store_scrub(s, 1000, &why), HX_OK);
    assert_int_equal(segment_store_segments_unverified(s), 0);
}

static void repair(segment_store *s, uint64_t lsn)
{
    trec t;
    make_rec(&t, lsn);
    segment_store_why why = {0};
    int rc = segment_store_repair_record(s, VOL, rec_pg(lsn), &t.rec, &why);
    if (rc != HX_OK)
        fail_msg("repair of record %" PRIu64 ": %s", lsn, why.msg);
}

/* What SegmentInfo tells a recovering writer about pg: whether its scl
 * may claim a lost record (chain_unverified). */
static bool info_unverified(segment_store *s, uint32_t pg)
{
    Hexad__SegmentInfoRequest req = HEXAD__SEGMENT_INFO_REQUEST__INIT;
    req.volume = VOL;
    Hexad__SegmentInfoResponse *info = NULL;
    segment_store_why why = {0};
    assert_int_equal(segment_store_segment_info(s, &req, &info, &why), HX_OK);
    bool found = false, unverified = false;
    for (size_t i = 0; i < info->n_segments; i++)
        if (info->segments[i]->pg == pg) {
            found = true;
            unverified = info->segments[i]->chain_unverified;
        }
    segment_store_segment_info_free(info);
    assert_true(found);
    return unverified;
}

/* ------------------------------------------------------------------------
 * Tests.
 * ---------------------------------------------------------------------- */

/* segment_store.c invariant 9: a store opened after a crash refuses
 * GetPage on every segment (HX_ERR_NOT_COMPLETE, naming the check) until
 * the scrub has walked its records, then serves every page as its
 * records make it. Coalescing waits for the walk too. */
static void test_crash_refuses_reads_until_walked(void **state)
{
    (void)state;
    char dir[64];
    crashed_store(dir);
    segment_store *s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 2);
    assert_int_equal(segment_store_scl(s, VOL, 0), N_RECORDS);
    assert_int_equal(segment_store_scl(s, VOL, 1), N_RECORDS - 1);
    assert_refused(s, 0, N_RECORDS, "not verified yet");
    assert_refused(s, 1, 1, "not verified yet");
    Hexad__NodeStatus *st = NULL;
    assert_int_equal(segment_store_status(s, &st), HX_OK);
    assert_int_equal(st->segments_unverified, 2);
    segment_store_status_free(st);
    /* Nothing is built from an unverified chain (invariant 2). */
    size_t written = 0;
    segment_store_why why = {0};
    assert_int_equal(segment_store_coalesce(s, 1000, &written, &why), HX_OK);
    assert_int_equal(written, 0);

    walk_all(s);
    assert_int_equal(segment_store_coalesce(s, 1000, &written, &why), HX_OK);
    assert_int_equal(written, 2);
    assert_int_equal(segment_store_counters(s)->records_missing, 0);
    assert_int_equal(segment_store_verify_records(s), N_RECORDS);
    for (uint64_t lsn = 2; lsn <= N_RECORDS; lsn++)
        assert_served(s, rec_pg(lsn), lsn);
    segment_store_close(s);
    hx_test_rm_tree(dir);
}

/* segment_verify.c: each segment is verified as soon as the walk has gone
 * past its own records. A record lost below the SCL (record 40 of PG 0)
 * is then found and the existing machinery takes over: reads below it
 * are served, reads at or above it refused until a peer's copy is back.
 * The record at the SCL itself (119, PG 1's last), which no record links
 * to, is found too. A store closed before its check ran checks again at
 * the next start. */
static void test_lost_records_found_by_the_startup_check(void **state)
{
    (void)state;
    char dir[64];
    crashed_store(dir);
    /* Opened and closed before any walk: still unverified afterwards, so
     * no clean-close mark is written. */
    segment_store *s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 2);
    segment_store_close(s);
    damage_record(dir, 0, 40, false);
    damage_record(dir, 1, N_RECORDS - 1, false);
    s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 2);
    /* Served now, the page would lack record 40 (read_checked says so). */
    assert_refused(s, 0, N_RECORDS, "not verified yet");
    assert_refused(s, 1, 1, "not verified yet");
    assert_true(info_unverified(s, 0));
    assert_true(info_unverified(s, 1));

    /* PG 0 keeps 59 records; the walk's 60th is PG 1's first: PG 0 is
     * verified, PG 1 not yet. */
    segment_store_why why = {0};
    assert_int_equal(segment_store_scrub(s, N_RECORDS / 2, &why), HX_OK);
    assert_int_equal(segment_store_segments_unverified(s), 1);
    assert_int_equal(segment_store_counters(s)->records_missing, 1);
    assert_served(s, 0, 38);
    assert_refused(s, 0, 40, "lacks record 40");
    assert_refused(s, 0, N_RECORDS, "lacks record 40");
    /* Walked, but its SCL still claims record 40: not sound for recovery
     * until the record is back. */
    assert_true(info_unverified(s, 0));
    assert_refused(s, 1, 1, "not verified yet");

    walk_all(s);
    assert_int_equal(segment_store_counters(s)->records_missing, 2);
    assert_int_equal(segment_store_repair_count(s), 2);
    assert_served(s, 1, N_RECORDS - 3);
    assert_refused(s, 1, N_RECORDS - 1, "lacks record 119");

    repair(s, 40);
    repair(s, N_RECORDS - 1);
    assert_int_equal(segment_store_repair_count(s), 0);
    assert_false(info_unverified(s, 0));
    assert_false(info_unverified(s, 1));
    for (uint64_t lsn = 2; lsn <= N_RECORDS; lsn++)
        assert_served(s, rec_pg(lsn), lsn);

    /* Verified and whole: closed cleanly, it serves at once. */
    segment_store_close(s);
    s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 0);
    assert_served(s, 0, N_RECORDS);
    assert_served(s, 1, N_RECORDS - 1);
    segment_store_close(s);
    hx_test_rm_tree(dir);
}

/* A corrupt record (44) hides its link to its predecessor from the walk;
 * once it is rewritten from a peer's copy, that link is followed, and a
 * predecessor lost with it (42) is found then. */
static void test_link_of_a_repaired_record_followed(void **state)
{
    (void)state;
    char dir[64];
    crashed_store(dir);
    segment_store *s = open_store(dir);
    segment_store_close(s);
    damage_record(dir, 0, 42, false);
    damage_record(dir, 0, 44, true);
    s = open_store(dir);
    walk_all(s);
    assert_int_equal(segment_store_counters(s)->checksum_failures, 1);
    assert_int_equal(segment_store_counters(s)->records_missing, 0);
    segment_store_why why;
    assert_int_equal(read_checked(s, 0, 44, &why), HX_ERR_CHECKSUM);
    repair(s, 44);
    assert_int_equal(segment_store_counters(s)->records_missing, 1);
    assert_refused(s, 0, 44, "lacks record 42");
    repair(s, 42);
    assert_served(s, 0, 44);
    assert_served(s, 0, N_RECORDS);
    segment_store_close(s);
    hx_test_rm_tree(dir);
}

/* After a clean stop nothing is unverified: a reopened store serves at
 * once, and so do the segments an unclean start creates (nothing of
 * theirs was written before the crash); appends and scrubbing do not
 * wait for the check. */
static void test_clean_reopen_serves_at_once(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/hx_test_verify_XXXXXX");
    assert_non_null(mkdtemp(dir));
    segment_store *s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 0);
    for (uint64_t i = 1; i <= N_RECORDS; i++)
        assert_int_equal(append_rec(s, i), HX_OK);
    segment_store_close(s);
    s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 0);
    assert_served(s, 0, N_RECORDS);
    assert_served(s, 1, N_RECORDS - 1);
    segment_store_close(s);
    hx_test_rm_tree(dir);

    crashed_store(dir);
    s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 2);
    /* An append to an unverified segment is taken. */
    assert_int_equal(append_rec(s, N_RECORDS + 2), HX_OK);
    assert_int_equal(segment_store_scl(s, VOL, 0), N_RECORDS + 2);
    assert_int_equal(segment_store_segments_unverified(s), 2);
    walk_all(s);
    segment_store_close(s);
    s = open_store(dir);
    assert_int_equal(segment_store_segments_unverified(s), 0);
    segment_store_close(s);
    hx_test_rm_tree(dir);
}

int main(int argc, char **argv)
{
    hx_log_init("test_segment_verify", HX_LOG_WARN);
    if (argc == 3 && strcmp(argv[1], "--crash-child") == 0)
        crash_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_refuses_reads_until_walked),
        cmocka_unit_test(test_lost_records_found_by_the_startup_check),
        cmocka_unit_test(test_link_of_a_repaired_record_followed),
        cmocka_unit_test(test_clean_reopen_serves_at_once),
    };
    return cmocka_run_group_tests_name("segment_verify", tests, NULL, NULL);
}
