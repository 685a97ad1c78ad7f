/* hexadctl: talk to a running hexad cluster. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "config.h"
#include "hexadctl_page.h"
#include "hx_err.h"
#include "load_pattern.h"
#include "log.h"
#include "volume_client.h"

static const char *usage_text =
    "usage: hexadctl [--cluster FILE] [--volume N] COMMAND [options]\n"
    "\n"
    "Talks to the storage nodes of the cluster described by FILE\n"
    "(default: $HEXAD_CLUSTER, else .hexad/cluster.conf), about volume N\n"
    "(default: the cluster file's volume, which the SQL writer uses; give\n"
    "load/verify experiments their own volume, e.g. --volume 2).\n"
    "\n"
    "commands:\n"
    "  status [--json]       per PG: members, AZ, SCL, reachability, PGCL;\n"
    "                        the VCL and VDL a recovery would find now\n"
    "  load --count N [--start I] [--window W] [--journal FILE]\n"
    "                        write numbered page patches i = I..I+N-1 (one\n"
    "                        MTR each, W in flight, default 64) as the\n"
    "                        volume's writer; append each acknowledged write\n"
    "                        to FILE as \"i lsn\"; --pages P keeps to pages\n"
    "                        0..P-1 (page numbers modulo P)\n"
    "  verify --journal FILE re-read every journaled write from storage and\n"
    "                        compare byte for byte ([--pages P] as for load)\n"
    "  page --page P [--lsn L] [--dump DIR]\n"
    "                        page P as every member of its PG serves it at\n"
    "                        L (default: the VDL): which copies differ\n"
    "\n"
    "Each command takes --help.\n";

static const char *cluster_path(const char *opt)
{
    if (opt)
        return opt;
    const char *env = getenv("HEXAD_CLUSTER");
    return env ? env : ".hexad/cluster.conf";
}

static void print_progress(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "hexadctl: %s\n", line);
}

static int open_volume(const hx_cluster_cfg *cfg, hx_volume_mode mode,
                       hx_volume **v)
{
    hx_volume_opts o = {
        .cluster = cfg,
        .mode = mode,
        .open_timeout_ms = cfg->commit_timeout_ms,
        .progress = mode == HX_VOLUME_WRITER ? print_progress : NULL,
    };
    int rc = hx_volume_open(&o, v);
    if (rc != HX_OK)
        fprintf(stderr, "hexadctl: cannot open volume %u: %s\n", cfg->volume,
                hx_strerror(rc));
    return rc;
}

/* ---- status ---- */

static void status_json(const hx_volume_status *st)
{
    printf("{\"volume\":%u,\"epoch\":%" PRIu64 ",\"recoverable\":%s,"
           "\"vcl\":%" PRIu64 ",\"vdl\":%" PRIu64 ",\"nodes\":[",
           st->volume, st->epoch, st->recoverable ? "true" : "false", st->vcl,
           st->vdl);
    for (size_t i = 0; i < st->n_nodes; i++) {
        const struct hx_node_status *n = &st->nodes[i];
        printf("%s{\"id\":\"%s\",\"az\":\"%s\",\"addr\":\"%s\",\"reachable\":%s,"
               "\"volume_epoch\":%" PRIu64 ","
               "\"records_received\":%" PRIu64 ",\"bytes_received\":%" PRIu64
               ",\"batches_synced\":%" PRIu64 ",\"gossip_pulls\":%" PRIu64
               ",\"gossip_records\":%" PRIu64 ",\"gossip_truncations\":%" PRIu64
               ",\"gossip_epochs\":%" PRIu64 ",\"gossip_segments\":%" PRIu64
               ",\"coalesce_passes\":%" PRIu64
               ",\"page_versions_written\":%" PRIu64 ",\"gc_passes\":%" PRIu64
               ",\"gc_records_removed\":%" PRIu64
               ",\"gc_page_versions_removed\":%" PRIu64
               ",\"gc_bytes_removed\":%" PRIu64 ",\"gc_compactions\":%" PRIu64
               ",\"scrub_passes\":%" PRIu64
               ",\"checksum_failures\":%" PRIu64 ",\"repairs\":%" PRIu64
               ",\"records_missing\":%" PRIu64
               ",\"segments_unverified\":%" PRIu64
               ",\"checkpoints\":%" PRIu64
               ",\"journal_used_bytes\":%" PRIu64
               ",\"journal_bytes\":%" PRIu64
               ",\"wire_bytes_received\":%" PRIu64
               ",\"frame_bytes_received\":%" PRIu64
               ",\"coalesce_lag\":%" PRIu64 "}",
               i ? "," : "", n->id, n->az, n->addr,
               n->reachable ? "true" : "false", n->volume_epoch,
               n->records_received, n->bytes_received, n->batches_synced,
               n->gossip_pulls, n->gossip_records, n->gossip_truncations,
               n->gossip_epochs, n->gossip_segments, n->coalesce_passes,
               n->page_versions_written, n->gc_passes, n->gc_records_removed,
               n->gc_page_versions_removed, n->gc_bytes_removed,
               n->gc_compactions, n->scrub_passes, n->checksum_failures,
               n->repairs, n->records_missing, n->segments_unverified,
               n->checkpoints, n->journal_used_bytes,
               n->journal_bytes, n->wire_bytes_received,
               n->frame_bytes_received, n->coalesce_lag);
    }
    printf("],\"pgs\":[");
    for (size_t p = 0; p < st->n_pgs; p++) {
        const hx_pg_status *ps = &st->pgs[p];
        printf("%s{\"pg\":%u,\"pgcl\":%" PRIu64 ",\"read_quorum\":%s,\"members\":[",
               p ? "," : "", ps->pg, ps->pgcl,
               ps->has_read_quorum ? "true" : "false");
        for (int m = 0; m < HX_PG_MEMBERS; m++)
            printf("%s{\"node\":\"%s\",\"az\":\"%s\",\"scl\":%" PRIu64
                   ",\"reachable\":%s,\"truncations\":%zu,"
                   "\"truncated_to\":%" PRIu64 "}",
                   m ? "," : "", ps->members[m].node, ps->members[m].az,
                   ps->members[m].scl,
                   ps->members[m].reachable ? "true" : "false",
                   ps->members[m].n_truncations, ps->members[m].truncated_to);
        printf("]}");
    }
    printf("]}\n");
}

static void status_table(const hx_volume_status *st)
{
    printf("volume %u  epoch %" PRIu64 "  ", st->volume, st->epoch);
    if (st->recoverable)
        printf("VCL %" PRIu64 "  VDL %" PRIu64 "\n", st->vcl, st->vdl);
    else
        printf("VCL/VDL unknown: some PG has no read quorum (3 of 6)\n");
    /* Counters since each node started; all of them: --json, or the
     * node's /metrics. */
    printf("\nnode  az     address              state  epoch records  bytes"
           "       gossip(rec) coal-lag journal wire  gc-bytes  cksum-bad "
           "missing repairs\n");
    for (size_t i = 0; i < st->n_nodes; i++) {
        const struct hx_node_status *n = &st->nodes[i];
        if (!n->reachable) {
            printf("%-5s %-6s %-20s DOWN\n", n->id, n->az, n->addr);
            continue;
        }
        /* journal: the share of the ring a crash would replay now */
        unsigned journal_pct =
            n->journal_bytes
                ? (unsigned)(n->journal_used_bytes * 100 / n->journal_bytes)
                : 0;
        /* wire: frame bytes as they arrived, a share of their size
         * uncompressed (under 100%: the writer compresses) */
        unsigned wire_pct =
            n->frame_bytes_received
                ? (unsigned)(n->wire_bytes_received * 100 /
                             n->frame_bytes_received)
                : 100;
        /* state: check while the node's startup chain check has not
         * verified every segment (segments_unverified in --json) */
        printf("%-5s %-6s %-20s %-6s %-5" PRIu64 " %-8" PRIu64 " %-11" PRIu64
               " %-11" PRIu64 " %-8" PRIu64 " %3u%%    %3u%%  %-9" PRIu64
               " %-9" PRIu64 " %-7" PRIu64 " %" PRIu64 "\n",
               n->id, n->az, n->addr,
               n->segments_unverified > 0 ? "check" : "up",
               n->volume_epoch, n->records_received,
               n->bytes_received, n->gossip_records, n->coalesce_lag,
               journal_pct, wire_pct, n->gc_bytes_removed,
               n->checksum_failures, n->records_missing, n->repairs);
    }
    printf("\nPG    PGCL        members (node/az: SCL)\n");
    for (size_t p = 0; p < st->n_pgs; p++) {
        const hx_pg_status *ps = &st->pgs[p];
        printf("%-5u %-11" PRIu64, ps->pg, ps->pgcl);
        for (int m = 0; m < HX_PG_MEMBERS; m++) {
            if (ps->members[m].reachable)
                printf(" %s/%s:%" PRIu64, ps->members[m].node,
                       ps->members[m].az, ps->members[m].scl);
            else
                printf(" %s/%s:DOWN", ps->members[m].node, ps->members[m].az);
        }
        printf("%s\n", ps->has_read_quorum ? "" : "  (no read quorum)");
    }
    if (st->n_pgs == 0)
        printf("(no PG yet: the volume is empty)\n");
}

static int cmd_status(const hx_cluster_cfg *cfg, int argc, char **argv)
{
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: hexadctl status [--json]\n\nAsks every storage node; "
                   "prints per PG its members, their AZ, SCL and reachability,\n"
                   "the PGCL, and the VCL/VDL a recovery would find now.\n");
            return 0;
        } else {
            fprintf(stderr, "hexadctl status: unknown option %s (try --help)\n", argv[i]);
            return 2;
        }
    }
    hx_volume *v = NULL;
    if (open_volume(cfg, HX_VOLUME_PROBE, &v) != HX_OK)
        return 1;
    hx_volume_status st;
    int rc = hx_volume_status_get(v, 1500, &st);
    hx_volume_close(v);
    if (rc != HX_OK) {
        fprintf(stderr, "hexadctl: status failed: %s\n", hx_strerror(rc));
        return 1;
    }
    if (json)
        status_json(&st);
    else
        status_table(&st);
    hx_volume_status_free(&st);
    return 0;
}

/* ---- load / verify ---- */

static int parse_u64_arg(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = x;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cmd_load(const hx_cluster_cfg *cfg, int argc, char **argv)
{
    uint64_t count = 0, start = 0, window = 64, pages = 0;
    const char *journal = NULL;
    static const struct option opts[] = {
        {"count", required_argument, 0, 'n'}, {"start", required_argument, 0, 's'},
        {"window", required_argument, 0, 'w'}, {"journal", required_argument, 0, 'j'},
        {"pages", required_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t *dst = c == 'n' ? &count : c == 's' ? &start : c == 'w' ? &window
                        : c == 'p' ? &pages : NULL;
        if (dst && parse_u64_arg(optarg, dst) == 0)
            continue;
        if (c == 'j') {
            journal = optarg;
            continue;
        }
        if (c == 'h') {
            printf("usage: hexadctl load --count N [--start I] [--window W] [--journal FILE]\n"
                   "                     [--pages P]\n\n"
                   "Opens the volume as its writer (recovery first), writes numbered\n"
                   "32-byte page patches i = I..I+N-1, one MTR each, with up to W\n"
                   "unacknowledged at once, and appends \"i lsn\" to FILE for every\n"
                   "write acknowledged (VDL >= its LSN: on 4 of 6 copies).\n"
                   "--pages P wraps page numbers modulo P: the same P pages are\n"
                   "updated over and over (verify then needs the same --pages).\n");
            return 0;
        }
        fprintf(stderr, "hexadctl load: bad option or value (try --help)\n");
        return 2;
    }
    if (count == 0 || window == 0) {
        fprintf(stderr, "hexadctl load: --count N (> 0) is required (try --help)\n");
        return 2;
    }
    FILE *jf = NULL;
    if (journal && (jf = fopen(journal, "a")) == NULL) {
        fprintf(stderr, "hexadctl load: cannot open journal %s: %s\n", journal,
                strerror(errno));
        return 1;
    }
    hx_volume *v = NULL;
    if (open_volume(cfg, HX_VOLUME_WRITER, &v) != HX_OK) {
        if (jf)
            fclose(jf);
        return 1;
    }
    uint64_t *fifo_i = calloc(window, sizeof *fifo_i);
    uint64_t *fifo_lsn = calloc(window, sizeof *fifo_lsn);
    int rc = fifo_i && fifo_lsn ? HX_OK : HX_ERR_NOMEM;
    uint64_t head = 0, len = 0, acked = 0, next = start;
    int64_t t0 = now_ms(), last_note = t0;
    while (rc == HX_OK && acked < count) {
        if (next < start + count && len < window) {
            uint8_t bytes[HX_LOAD_SLOT_BYTES];
            hx_load_bytes(next, bytes);
            uint64_t page;
            uint32_t off;
            hx_load_location(next, cfg->page_size, &page, &off);
            if (pages > 0)
                page %= pages;
            hx_patch patch = {.offset = off, .len = HX_LOAD_SLOT_BYTES, .data = bytes};
            hx_page_write w = {.page_no = page, .is_image = 0, .n_patches = 1, .patches = &patch};
            uint64_t lsn;
            rc = hx_volume_write_mtr(v, &w, 1, 0, &lsn);
            if (rc != HX_OK)
                break;
            fifo_i[(head + len) % window] = next;
            fifo_lsn[(head + len) % window] = lsn;
            len++;
            next++;
            continue;
        }
        /* Window full or all sent: wait for the oldest (VDL is monotonic,
         * so acknowledgements come in LSN order). */
        rc = hx_volume_wait_durable(v, fifo_lsn[head], 1000);
        if (rc == HX_ERR_TIMEOUT) {
            rc = HX_OK;
            fprintf(stderr, "hexadctl: waiting for write quorum: %" PRIu64
                    " of %" PRIu64 " acknowledged (VDL %" PRIu64 ")\n",
                    acked, count, hx_volume_vdl(v));
            continue;
        }
        if (rc != HX_OK)
            break;
        if (jf) {
            fprintf(jf, "%" PRIu64 " %" PRIu64 "\n", fifo_i[head], fifo_lsn[head]);
            fflush(jf);
        }
        head = (head + 1) % window;
        len--;
        acked++;
        if (now_ms() - last_note >= 1000) {
            last_note = now_ms();
            fprintf(stderr, "hexadctl: %" PRIu64 "/%" PRIu64 " acknowledged\n",
                    acked, count);
        }
    }
    int64_t ms = now_ms() - t0;
    if (rc == HX_OK)
        printf("loaded %" PRIu64 " writes in %lld ms (%.0f writes/s), VDL %" PRIu64 "\n",
               acked, (long long)ms, ms > 0 ? acked * 1000.0 / (double)ms : 0.0,
               hx_volume_vdl(v));
    else
        fprintf(stderr, "hexadctl load: stopped after %" PRIu64 " acknowledged "
                "writes: %s\n", acked, hx_strerror(rc));
    free(fifo_i);
    free(fifo_lsn);
    hx_volume_close(v);
    if (jf)
        fclose(jf);
    return rc == HX_OK ? 0 : 1;
}

static int cmd_verify(const hx_cluster_cfg *cfg, int argc, char **argv)
{
    const char *journal = NULL;
    uint64_t pages = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--journal") == 0 && i + 1 < argc) {
            journal = argv[++i];
        } else if (strcmp(argv[i], "--pages") == 0 && i + 1 < argc) {
            if (parse_u64_arg(argv[++i], &pages) != 0 || pages == 0) {
                fprintf(stderr, "hexadctl verify: --pages takes a number > 0\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: hexadctl verify --journal FILE [--pages P]\n\nOpens the volume "
                   "(recovery first), reads back every write FILE lists and\n"
                   "compares it byte for byte with what load wrote. With --pages P\n"
                   "(as given to load) only the last write of each page slot is\n"
                   "checked: the earlier ones were overwritten.\n");
            return 0;
        } else {
            fprintf(stderr, "hexadctl verify: unknown option %s (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (journal == NULL) {
        fprintf(stderr, "hexadctl verify: --journal FILE is required\n");
        return 2;
    }
    FILE *jf = fopen(journal, "r");
    if (jf == NULL) {
        fprintf(stderr, "hexadctl verify: cannot open %s: %s\n", journal, strerror(errno));
        return 1;
    }
    hx_volume *v = NULL;
    if (open_volume(cfg, HX_VOLUME_WRITER, &v) != HX_OK) {
        fclose(jf);
        return 1;
    }
    uint64_t read_lsn = hx_volume_vdl(v);
    uint8_t *page = malloc(cfg->page_size);
    uint64_t cached = UINT64_MAX, n = 0, i, lsn;
    int bad = 0, rc = page ? HX_OK : HX_ERR_NOMEM;
    /* --pages: the last write of each (page, slot), in slot order. */
    uint64_t slots = cfg->page_size / HX_LOAD_SLOT_BYTES, at = 0;
    uint64_t *last_i = NULL, *last_lsn = NULL;
    if (rc == HX_OK && pages > 0) {
        last_i = malloc(pages * slots * sizeof *last_i);
        last_lsn = malloc(pages * slots * sizeof *last_lsn);
        if (last_i == NULL || last_lsn == NULL)
            rc = HX_ERR_NOMEM;
        for (uint64_t k = 0; rc == HX_OK && k < pages * slots; k++)
            last_i[k] = UINT64_MAX;
        while (rc == HX_OK &&
               fscanf(jf, "%" SCNu64 " %" SCNu64, &i, &lsn) == 2) {
            uint64_t page_no;
            uint32_t off;
            hx_load_location(i, cfg->page_size, &page_no, &off);
            uint64_t k = (page_no % pages) * slots + off / HX_LOAD_SLOT_BYTES;
            last_i[k] = i;
            last_lsn[k] = lsn;
        }
    }
    while (rc == HX_OK) {
        if (pages > 0) {
            while (at < pages * slots && last_i[at] == UINT64_MAX)
                at++;
            if (at == pages * slots)
                break;
            i = last_i[at];
            lsn = last_lsn[at++];
        } else if (fscanf(jf, "%" SCNu64 " %" SCNu64, &i, &lsn) != 2) {
            break;
        }
        uint64_t page_no;
        uint32_t off;
        hx_load_location(i, cfg->page_size, &page_no, &off);
        if (pages > 0)
            page_no %= pages;
        if (page_no != cached) {
            rc = hx_volume_read_page(v, page_no, read_lsn, page);
            if (rc != HX_OK) {
                fprintf(stderr, "hexadctl verify: reading page %" PRIu64 ": %s\n",
                        page_no, hx_strerror(rc));
                break;
            }
            cached = page_no;
        }
        uint8_t want[HX_LOAD_SLOT_BYTES];
        hx_load_bytes(i, want);
        if (lsn > read_lsn || memcmp(page + off, want, sizeof want) != 0) {
            fprintf(stderr, "hexadctl verify: write %" PRIu64 " (LSN %" PRIu64
                    ", page %" PRIu64 " offset %u) does not read back at VDL %"
                    PRIu64 "\n", i, lsn, page_no, off, read_lsn);
            bad++;
            if (bad >= 10)
                break;
        }
        n++;
    }
    fclose(jf);
    free(page);
    free(last_i);
    free(last_lsn);
    hx_volume_close(v);
    if (rc != HX_OK || bad) {
        fprintf(stderr, "hexadctl verify: FAILED (%d bad of %" PRIu64 " checked)\n", bad, n);
        return 1;
    }
    printf("verified %" PRIu64 " writes\n", n);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    uint64_t volume = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--cluster") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--volume") == 0 && i + 1 < argc) {
            if (parse_u64_arg(argv[++i], &volume) != 0 || volume == 0 ||
                volume > UINT32_MAX) {
                fprintf(stderr, "hexadctl: --volume takes a number from 1 to 4294967295\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "hexadctl: unknown option %s\n\n%s", argv[i], usage_text);
            return 2;
        }
    }
    if (i >= argc) {
        fputs(usage_text, stderr);
        return 2;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    bool help = false;
    for (int k = 1; k < sub_argc; k++)
        help |= strcmp(sub_argv[k], "--help") == 0;
    int (*fn)(const hx_cluster_cfg *, int, char **) =
        strcmp(cmd, "status") == 0 ? cmd_status
        : strcmp(cmd, "load") == 0 ? cmd_load
        : strcmp(cmd, "verify") == 0 ? cmd_verify
        : strcmp(cmd, "page") == 0 ? hexadctl_page : NULL;
    if (fn == NULL) {
        fprintf(stderr, "hexadctl: unknown command '%s'\n\n%s", cmd, usage_text);
        return 2;
    }
    hx_log_init("hexadctl", HX_LOG_WARN);
    if (sodium_init() < 0) {
        fprintf(stderr, "hexadctl: libsodium failed to initialize\n");
        return 1;
    }
    static hx_cluster_cfg cfg;
    if (help) /* needs no cluster file */
        return fn(&cfg, sub_argc, sub_argv);
    char err[512];
    if (hx_cluster_load(cluster_path(path), &cfg, err, sizeof err) != HX_OK) {
        fprintf(stderr, "hexadctl: %s\n(pass --cluster FILE, or start a local "
                "cluster with ./hexad up)\n", err);
        return 1;
    }
    if (volume != 0)
        cfg.volume = (uint32_t)volume;
    return fn(&cfg, sub_argc, sub_argv);
}
