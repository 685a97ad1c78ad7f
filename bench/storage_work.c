/* hexad-storage-work: one storage node's work under a tpcb-like record
 * stream, in one process, without the network and without the other
 * nodes, so that its CPU per transaction can be compared between two
 * builds on a shared machine (bench/RESULTS.md "Storage work").
 *
 * A real segment store (RocksDB files, the journal, fdatasync) in a fresh
 * temporary directory receives appends as the writer sends them: each
 * transaction is an account-page record (pages picked at random, as
 * pgbench picks accounts), a teller-page and a branch-page record (a few
 * hot pages) and a history record (appended to a page that fills up),
 * the last one marked CPL; --batch transactions make one append (the
 * boxcar). Coalescing runs a pass of the storage node's size whenever
 * that many records arrived since the last one, as the node's lag trigger
 * does under load. With --gc-window N, every append says no read needs
 * what is older than the last N transactions (min_read_lsn), retention is
 * 0, and a garbage collection pass of the node's size runs every
 * GC_EVERY_COALESCE coalescing passes (about once a second of a node's
 * tpcb-like load): the state a node reaches once its retention window
 * has filled. It prints, per tenth of the run, the main thread's CPU per
 * transaction in appends, in coalescing and in GC, the whole process's
 * (RocksDB's threads too) and the store's counters; the last tenths are
 * the steady state, once account pages have piled up enough records to
 * get page versions.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "append_request.h"
#include "hexad.pb-c.h"
#include "hx_err.h"
#include "record.h"
#include "rm_tree.h"
#include "segment_store.h"

#define PAGE_SIZE 4096u
#define PG_PAGES 2621440u
#define VOL 1u
#define RECS_PER_TXN 4u
#define BATCH_MAX 64u
#define COALESCE_PASS_RECORDS 2048u /* storage_background.c's pass */
#define GC_PASS_PAGES 4096u         /* storage_background.c's pass */
#define GC_EVERY_COALESCE 4u
#define TELLER_PAGES 3u
#define HISTORY_ROW_BYTES 50u
#define SLICES 10u

typedef struct {
    unsigned long txns, account_pages, batch, seed, cache_mib, gc_window;
    const char *dir;
} opts;

/* One record of a batch, with the storage its patches point at. */
typedef struct {
    Hexad__Record rec;
    Hexad__Patch patch[2];
    Hexad__Patch *pp[2];
    uint8_t data[2][64];
} brec;

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double process_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A record of page_no with one patch of len bytes at off (and, for an
 * account row, a second one where SQLite's cell header changes). */
static void make_record(brec *b, uint64_t lsn, uint64_t page_no, uint32_t off,
                        uint32_t len, bool two, bool cpl)
{
    hexad__record__init(&b->rec);
    unsigned n = two ? 2 : 1;
    for (unsigned i = 0; i < n; i++) {
        hexad__patch__init(&b->patch[i]);
        uint32_t l = i == 0 ? len : 8;
        uint32_t o = i == 0 ? off : 8 + (uint32_t)(rnd() % 64) * 2;
        for (uint32_t j = 0; j < l; j++)
            b->data[i][j] = (uint8_t)rnd();
        b->patch[i].offset = o;
        b->patch[i].data.data = b->data[i];
        b->patch[i].data.len = l;
        b->pp[i] = &b->patch[i];
    }
    b->rec.lsn = lsn;
    b->rec.prev_lsn = lsn - 1;
    b->rec.page_no = page_no;
    b->rec.flags = cpl ? HX_RECORD_CPL : 0;
    b->rec.epoch = 1;
    b->rec.n_patches = n;
    b->rec.patches = b->pp;
    hx_record_seal(&b->rec);
}

typedef struct {
    double append_s, coalesce_s, gc_s, process_s;
    unsigned long txns;
} slice;

static int run(const opts *o)
{
    segment_store_options so = {
        .journal_bytes = 64u << 20,
        .record_cache_bytes = (uint64_t)o->cache_mib << 20,
    };
    segment_store *s = NULL;
    segment_store_why why = {0};
    int rc = segment_store_open(o->dir, "s1", &so, &s, &why);
    if (rc != HX_OK) {
        fprintf(stderr, "hexad-storage-work: cannot open a store in %s: %s "
                "(%s)\n", o->dir, why.msg, hx_strerror(rc));
        return 1;
    }
    if (o->gc_window > 0)
        segment_store_set_retention(s, 0);
    brec *recs = calloc(BATCH_MAX * RECS_PER_TXN, sizeof *recs);
    Hexad__Record **ptrs = calloc(BATCH_MAX * RECS_PER_TXN, sizeof *ptrs);
    if (recs == NULL || ptrs == NULL) {
        fprintf(stderr, "hexad-storage-work: out of memory\n");
        return 1;
    }
    /* Pages: 1 branch, tellers, history from 100 on, accounts above. */
    const uint64_t branch = 1, teller0 = 2, history0 = 100;
    const uint64_t account0 = 1000000;
    uint64_t history_page = history0, lsn = 0;
    uint32_t history_off = 0;
    unsigned long done = 0, since_coalesce = 0, coalesce_passes = 0;
    uint64_t gc_now_ms = 0;
    slice sl[SLICES] = {{0}};
    double p0 = process_cpu_s();
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    while (rc == HX_OK && done < o->txns) {
        unsigned long n = o->txns - done < o->batch ? o->txns - done
                                                    : o->batch;
        size_t nr = 0;
        for (unsigned long t = 0; t < n; t++) {
            uint64_t acct = account0 + rnd() % o->account_pages;
            make_record(&recs[nr++], ++lsn, acct,
                        96 + (uint32_t)(rnd() % 36) * 110, 12, true, false);
            make_record(&recs[nr++], ++lsn, teller0 + rnd() % TELLER_PAGES,
                        200 + (uint32_t)(rnd() % 30) * 120, 12, false, false);
            make_record(&recs[nr++], ++lsn, branch,
                        200 + (uint32_t)(rnd() % 10) * 300, 12, false, false);
            if (history_off + HISTORY_ROW_BYTES > PAGE_SIZE - 200) {
                history_page++;
                history_off = 0;
            }
            make_record(&recs[nr++], ++lsn, history_page,
                        PAGE_SIZE - history_off - HISTORY_ROW_BYTES,
                        HISTORY_ROW_BYTES, false, true);
            history_off += HISTORY_ROW_BYTES;
        }
        for (size_t i = 0; i < nr; i++)
            ptrs[i] = &recs[i].rec;
        Hexad__AppendRecords req;
        Hexad__Geometry geo;
        hx_test_append_request(&req, &geo, VOL, 0, 1, PAGE_SIZE, PG_PAGES,
                               ptrs, nr);
        uint64_t window = (uint64_t)o->gc_window * RECS_PER_TXN;
        if (o->gc_window > 0 && lsn > window)
            req.min_read_lsn = lsn - window;

        slice *cur = &sl[done * SLICES / o->txns];
        double t0 = thread_cpu_s();
        segment_store_append_result res;
        rc = segment_store_append(s, &req, &res);
        double t1 = thread_cpu_s();
        cur->append_s += t1 - t0;
        if (rc != HX_OK) {
            fprintf(stderr, "hexad-storage-work: append failed: %s (%s)\n",
                    res.why.msg, hx_strerror(rc));
            break;
        }
        since_coalesce += nr;
        if (since_coalesce >= COALESCE_PASS_RECORDS) {
            since_coalesce = 0;
            rc = segment_store_coalesce(s, COALESCE_PASS_RECORDS, NULL, &why);
            cur->coalesce_s += thread_cpu_s() - t1;
            if (rc != HX_OK)
                fprintf(stderr, "hexad-storage-work: coalescing failed: %s "
                        "(%s)\n", why.msg, hx_strerror(rc));
            if (rc == HX_OK && o->gc_window > 0 &&
                ++coalesce_passes % GC_EVERY_COALESCE == 0) {
                double t2 = thread_cpu_s();
                gc_now_ms += 1000;
                rc = segment_store_gc(s, gc_now_ms, GC_PASS_PAGES, &why);
                cur->gc_s += thread_cpu_s() - t2;
                if (rc != HX_OK)
                    fprintf(stderr, "hexad-storage-work: garbage collection "
                            "failed: %s (%s)\n", why.msg, hx_strerror(rc));
            }
        }
        done += n;
        cur->txns += n;
        double p = process_cpu_s();
        cur->process_s += p - p0;
        p0 = p;
    }
    clock_gettime(CLOCK_MONOTONIC, &w1);

    printf("tenth  txns  append_us/txn  coalesce_us/txn  process_us/txn  "
           "gc_us/txn\n");
    for (unsigned i = 0; i < SLICES; i++)
        if (sl[i].txns > 0)
            printf("%5u %6lu %14.2f %16.2f %15.2f %10.2f\n", i + 1,
                   sl[i].txns, 1e6 * sl[i].append_s / (double)sl[i].txns,
                   1e6 * sl[i].coalesce_s / (double)sl[i].txns,
                   1e6 * sl[i].process_s / (double)sl[i].txns,
                   1e6 * sl[i].gc_s / (double)sl[i].txns);
    const hx_node_counters *c = segment_store_counters(s);
    record_cache_stats rcs = segment_store_record_cache_stats(s);
    printf("records %" PRIu64 ", page versions %" PRIu64 " (%" PRIu64
           " superseded), record cache hits %" PRIu64 " misses %" PRIu64
           " evicted %" PRIu64 "\n", c->records_received,
           c->page_versions_written, c->page_versions_superseded, rcs.hits,
           rcs.misses, rcs.evicted);
    if (o->gc_window > 0)
        printf("garbage collection: %" PRIu64 " records, %" PRIu64
               " page versions, %" PRIu64 " bytes removed; %" PRIu64
               " compactions\n", c->gc_records_removed,
               c->gc_page_versions_removed, c->gc_bytes_removed,
               c->gc_compactions);
    printf("wall %.1f s\n", (double)(w1.tv_sec - w0.tv_sec) +
                                (double)(w1.tv_nsec - w0.tv_nsec) / 1e9);
    segment_store_close(s);
    free(recs);
    free(ptrs);
    return rc == HX_OK ? 0 : 1;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: hexad-storage-work [options]\n"
        "One storage node's work under a tpcb-like record stream, in one\n"
        "process: appends (journal + fdatasync + RocksDB), coalescing and,\n"
        "with --gc-window, garbage collection. Prints the CPU per\n"
        "transaction per tenth of the run.\n"
        "  --txns N           transactions (default 200000)\n"
        "  --account-pages N  pages the account records spread over\n"
        "                     (default 27000, pgbench scale 10)\n"
        "  --batch N          transactions per append, 1..%u (default 3)\n"
        "  --record-cache-mib N  the store's record cache (default 64)\n"
        "  --seed N           random seed (default 1)\n"
        "  --gc-window N      reads need only the last N transactions:\n"
        "                     collect the rest as the node does once its\n"
        "                     retention window is full (default 0: no GC)\n"
        "  --dir DIR          where the store goes; must not exist (default:\n"
        "                     a new directory under $TMPDIR or /tmp, removed\n"
        "                     after)\n"
        "  --help\n", BATCH_MAX);
}

static int parse_ul(const char *name, const char *v, unsigned long lo,
                    unsigned long hi, unsigned long *out)
{
    char *end = NULL;
    unsigned long x = strtoul(v, &end, 10);
    if (end == v || *end != '\0' || x < lo || x > hi) {
        fprintf(stderr, "hexad-storage-work: %s must be a number from %lu "
                "to %lu, not '%s'\n", name, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {.txns = 200000, .account_pages = 27000, .batch = 3, .seed = 1,
              .cache_mib = 64};
    static const struct option lo[] = {
        {"txns", required_argument, NULL, 't'},
        {"account-pages", required_argument, NULL, 'a'},
        {"batch", required_argument, NULL, 'b'},
        {"record-cache-mib", required_argument, NULL, 'c'},
        {"seed", required_argument, NULL, 's'},
        {"gc-window", required_argument, NULL, 'g'},
        {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 't': bad = parse_ul("--txns", optarg, 1, 100000000, &o.txns); break;
        case 'a': bad = parse_ul("--account-pages", optarg, 1, 1000000, &o.account_pages); break;
        case 'b': bad = parse_ul("--batch", optarg, 1, BATCH_MAX, &o.batch); break;
        case 'c': bad = parse_ul("--record-cache-mib", optarg, 0, 65536, &o.cache_mib); break;
        case 's': bad = parse_ul("--seed", optarg, 1, UINT32_MAX, &o.seed); break;
        case 'g': bad = parse_ul("--gc-window", optarg, 0, 100000000, &o.gc_window); break;
        case 'd': o.dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "hexad-storage-work: unexpected argument '%s'\n",
                argv[optind]);
        usage(stderr);
        return 2;
    }
    rng_state = o.seed * 0x9E3779B97F4A7C15ull;
    char tmpl[512];
    bool own_dir = o.dir == NULL;
    if (own_dir) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/hexad-storage-work-XXXXXX",
                 t && *t ? t : "/tmp");
        if (mkdtemp(tmpl) == NULL) {
            perror("hexad-storage-work: mkdtemp");
            return 1;
        }
        strcat(tmpl, "/store");
        o.dir = tmpl;
    } else if (access(o.dir, F_OK) == 0) {
        fprintf(stderr, "hexad-storage-work: %s exists; give a new directory "
                "(the store is created there)\n", o.dir);
        return 2;
    }
    int rc = run(&o);
    if (own_dir) {
        *strrchr(tmpl, '/') = '\0';
        hx_test_rm_tree(tmpl);
    }
    return rc;
}
