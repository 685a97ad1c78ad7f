/*
 * hexad-floor: this machine's physical floor for one commit.
 *
 * A commit acknowledged by a replicated log cannot be faster than one
 * synced write on the storage device plus one network round trip (issue 5,
 * "single-client commit latency against this machine's physical floor").
 * This program measures both, the way the storage nodes and the clients
 * meet them:
 *
 *   fsync: fdatasync() after a 4 KiB pwrite(), in a file in DIR (the data
 *          directory's filesystem). Two shapes: "overwrite" rewrites blocks
 *          of a preallocated, synced file (a WAL that recycles its
 *          segments, PostgreSQL's, and hexad's storage journal); "append"
 *          extends the file, so the size change is flushed too (RocksDB's
 *          WAL).
 *   rtt:   a 64-byte ping-pong over a loopback TCP connection with
 *          TCP_NODELAY, echoed by a thread of this process.
 *   quorum: six threads each overwrite a block of their own preallocated
 *          file and fdatasync it at the same moment, as six storage
 *          journals do; a sample is the time until the 4th is done. On one
 *          machine the six copies of a write share one device, so a 4-of-6
 *          commit cannot beat this (floor_quorum_us = it + rtt).
 *
 * Output: one "key=value" line per figure, microseconds, medians and p99
 * over N samples, then "floor_us" = the lower fsync median + the RTT
 * median. The file it writes in DIR is removed on exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_BLOCK_BYTES 4096
#define FLOOR_PING_BYTES 64
#define FLOOR_SAMPLES_MAX 100000
#define FLOOR_PREALLOC_BLOCKS 256

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: hexad-floor [--dir DIR] [--samples N]\n"
        "\n"
        "Measures the physical floor of a commit on this machine:\n"
        "  fdatasync of a 4 KiB write in DIR (overwrite of a preallocated\n"
        "  file, and append), a 64-byte loopback TCP round trip, and six\n"
        "  concurrent overwrites + fdatasync of preallocated files (time\n"
        "  until the 4th is done).\n"
        "Prints key=value lines in microseconds (median, p99),\n"
        "floor_us = min(fsync medians) + rtt median and\n"
        "floor_quorum_us = 4-of-6 concurrent fsync median + rtt median.\n"
        "\n"
        "  --dir DIR     directory on the filesystem to measure (default .)\n"
        "  --samples N   samples per figure, 1..%d (default 200)\n"
        "  --help        show this help\n",
        FLOOR_SAMPLES_MAX);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts samples in place; prints NAME_p50_us and NAME_p99_us; returns the
 * median in microseconds. */
static double report(const char *name, uint64_t *ns, int n)
{
    qsort(ns, (size_t)n, sizeof *ns, cmp_u64);
    double p50 = (double)ns[n / 2] / 1000.0;
    double p99 = (double)ns[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1000.0;
    printf("%s_p50_us=%.1f\n%s_p99_us=%.1f\n", name, p50, name, p99);
    return p50;
}

/* ------------------------------------------------------------- fsync */

static int write_full(int fd, const char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, buf, len, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* append: each sample writes the next block past the end (the file grows);
 * otherwise it rewrites block i % FLOOR_PREALLOC_BLOCKS of a file that was
 * filled and synced first. */
static int measure_fsync(const char *path, int append, uint64_t *ns, int n)
{
    static char block[FLOOR_BLOCK_BYTES];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        fprintf(stderr, "hexad-floor: cannot create %s: %s; pass --dir DIR of a writable directory\n",
                path, strerror(errno));
        return -1;
    }
    memset(block, 'x', sizeof block);
    if (!append) {
        for (int b = 0; b < FLOOR_PREALLOC_BLOCKS; b++)
            if (write_full(fd, block, sizeof block, (off_t)b * FLOOR_BLOCK_BYTES) != 0)
                goto fail;
        if (fsync(fd) != 0)
            goto fail;
    }
    for (int i = 0; i < n; i++) {
        off_t off = (off_t)(append ? i : i % FLOOR_PREALLOC_BLOCKS) * FLOOR_BLOCK_BYTES;
        block[0] = (char)i;
        uint64_t t0 = now_ns();
        if (write_full(fd, block, sizeof block, off) != 0 || fdatasync(fd) != 0)
            goto fail;
        ns[i] = now_ns() - t0;
    }
    close(fd);
    unlink(path);
    return 0;
fail:
    fprintf(stderr, "hexad-floor: write/fdatasync on %s failed: %s\n", path, strerror(errno));
    close(fd);
    unlink(path);
    return -1;
}

/* ----------------------------------------------------- quorum fsync */

#define FLOOR_COPIES 6
#define FLOOR_QUORUM 4

typedef struct {
    pthread_barrier_t *start, *end;
    char path[4160];
    int n;
    uint64_t *done_ns; /* per sample: when this copy's fdatasync returned */
    int failed;
} quorum_copy;

static void *quorum_copy_main(void *arg)
{
    quorum_copy *c = arg;
    static _Thread_local char block[FLOOR_BLOCK_BYTES];
    int fd = open(c->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    c->failed = fd < 0;
    memset(block, 'q', sizeof block);
    /* Written and synced once, so the samples overwrite mapped blocks. */
    for (int b = 0; !c->failed && b < FLOOR_PREALLOC_BLOCKS; b++)
        c->failed = write_full(fd, block, sizeof block,
                               (off_t)b * FLOOR_BLOCK_BYTES) != 0;
    if (!c->failed && fsync(fd) != 0)
        c->failed = 1;
    for (int i = 0; i < c->n; i++) {
        pthread_barrier_wait(c->start);
        off_t off = (off_t)(i % FLOOR_PREALLOC_BLOCKS) * FLOOR_BLOCK_BYTES;
        if (!c->failed &&
            (write_full(fd, block, sizeof block, off) != 0 ||
             fdatasync(fd) != 0))
            c->failed = 1;
        c->done_ns[i] = now_ns();
        pthread_barrier_wait(c->end);
    }
    if (fd >= 0)
        close(fd);
    unlink(c->path);
    return NULL;
}

static int measure_quorum(const char *path, uint64_t *ns, int n)
{
    pthread_barrier_t start, end;
    quorum_copy copy[FLOOR_COPIES];
    pthread_t th[FLOOR_COPIES];
    uint64_t *done = calloc((size_t)n * FLOOR_COPIES, sizeof *done);
    int started = 0, rc = -1;
    if (done == NULL || pthread_barrier_init(&start, NULL, FLOOR_COPIES + 1) != 0)
        goto out_free;
    if (pthread_barrier_init(&end, NULL, FLOOR_COPIES + 1) != 0) {
        pthread_barrier_destroy(&start);
        goto out_free;
    }
    for (; started < FLOOR_COPIES; started++) {
        quorum_copy *c = &copy[started];
        c->start = &start;
        c->end = &end;
        c->n = n;
        c->done_ns = done + (size_t)started * (size_t)n;
        c->failed = 0;
        snprintf(c->path, sizeof c->path, "%s.q%d", path, started);
        if (pthread_create(&th[started], NULL, quorum_copy_main, c) != 0)
            break;
    }
    if (started < FLOOR_COPIES) {
        /* Threads that started wait at a barrier that cannot fill. */
        fprintf(stderr, "hexad-floor: cannot start %d threads\n", FLOOR_COPIES);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        uint64_t t[FLOOR_COPIES];
        pthread_barrier_wait(&start);
        uint64_t t0 = now_ns();
        pthread_barrier_wait(&end);
        for (int c = 0; c < FLOOR_COPIES; c++)
            t[c] = copy[c].done_ns[i];
        qsort(t, FLOOR_COPIES, sizeof t[0], cmp_u64);
        ns[i] = t[FLOOR_QUORUM - 1] > t0 ? t[FLOOR_QUORUM - 1] - t0 : 0;
    }
    rc = 0;
    for (int c = 0; c < FLOOR_COPIES; c++) {
        pthread_join(th[c], NULL);
        if (copy[c].failed)
            rc = -1;
    }
    if (rc != 0)
        fprintf(stderr, "hexad-floor: concurrent write/fdatasync in %s.q* failed\n", path);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&end);
out_free:
    free(done);
    return rc;
}

/* -------------------------------------------------------------- rtt */

static int read_full(int fd, char *buf, size_t len)
{
    while (len > 0) {
        ssize_t r = read(fd, buf, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        len -= (size_t)r;
    }
    return 0;
}

static int send_full(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Echoes fixed-size pings until the peer closes. */
static void *echo_main(void *arg)
{
    int lfd = *(int *)arg, fd;
    char buf[FLOOR_PING_BYTES];
    fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    while (read_full(fd, buf, sizeof buf) == 0)
        if (send_full(fd, buf, sizeof buf) != 0)
            break;
    close(fd);
    return NULL;
}

static int measure_rtt(uint64_t *ns, int n)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    int lfd = -1, fd = -1, one = 1, rc = -1;
    pthread_t th;
    int have_thread = 0;
    char buf[FLOOR_PING_BYTES] = { 0 };

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
        goto fail;
    if (pthread_create(&th, NULL, echo_main, &lfd) != 0)
        goto fail;
    have_thread = 1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        goto fail;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        if (send_full(fd, buf, sizeof buf) != 0 || read_full(fd, buf, sizeof buf) != 0)
            goto fail;
        ns[i] = now_ns() - t0;
    }
    rc = 0;
fail:
    if (rc != 0)
        fprintf(stderr, "hexad-floor: loopback TCP round trip failed: %s\n", strerror(errno));
    if (fd >= 0)
        close(fd);
    if (have_thread) {
        if (rc != 0)
            shutdown(lfd, SHUT_RDWR);
        pthread_join(th, NULL);
    }
    if (lfd >= 0)
        close(lfd);
    return rc;
}

/* ------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    const char *dir = ".";
    int n = 200;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 1 || v > FLOOR_SAMPLES_MAX) {
                fprintf(stderr, "hexad-floor: --samples needs a number 1..%d, got '%s'\n",
                        FLOOR_SAMPLES_MAX, argv[i]);
                return 2;
            }
            n = (int)v;
        } else {
            fprintf(stderr, "hexad-floor: unknown argument '%s'; see --help\n", argv[i]);
            return 2;
        }
    }

    uint64_t *ns = calloc((size_t)n, sizeof *ns);
    char path[4096];
    if (ns == NULL) {
        fprintf(stderr, "hexad-floor: out of memory for %d samples\n", n);
        return 1;
    }
    if (snprintf(path, sizeof path, "%s/hexad-floor.%ld", dir, (long)getpid()) >= (int)sizeof path) {
        fprintf(stderr, "hexad-floor: --dir path too long\n");
        free(ns);
        return 2;
    }

    double over, app, rtt, quorum;
    printf("samples=%d\nblock_bytes=%d\n", n, FLOOR_BLOCK_BYTES);
    if (measure_fsync(path, 0, ns, n) != 0)
        goto fail;
    over = report("fsync_overwrite", ns, n);
    if (measure_fsync(path, 1, ns, n) != 0)
        goto fail;
    app = report("fsync_append", ns, n);
    if (measure_rtt(ns, n) != 0)
        goto fail;
    rtt = report("rtt", ns, n);
    if (measure_quorum(path, ns, n) != 0)
        goto fail;
    quorum = report("fsync_quorum4of6", ns, n);
    printf("floor_us=%.1f\n", (over < app ? over : app) + rtt);
    printf("floor_quorum_us=%.1f\n", quorum + rtt);
    free(ns);
    return 0;
fail:
    free(ns);
    return 1;
}
