/* The storage node's write-ahead journal: segment_journal.h has the layout
 * and the invariants.
 */
#include "segment_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "crc32c.h"
#include "hx_err.h"
#include "segment_store_internal.h" /* why_set */

#define ENTRY_MAGIC 0x48584a31u /* "HXJ1" */
#define SUPER_MAGIC 0x48584a53u /* "HXJS" */
#define SUPER_VERSION 1u
#define SUPER_SLOT_BYTES 512u
#define SUPER_BYTES 36u /* magic, version, size, generation, tail, crc */
#define ZERO_CHUNK (1u << 20)

struct segment_journal {
    int fd;
    char path[4096];
    uint64_t size, ring;
    _Atomic uint64_t head, tail;
    uint64_t generation; /* of the superblock slot written last */
};

static int errno_rc(int e)
{
    return e == ENOSPC || e == EDQUOT ? HX_ERR_NO_SPACE : HX_ERR_IO;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int pread_full(int fd, void *buf, size_t len, off_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? EIO : errno;
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

static int pwritev_full(int fd, struct iovec *iov, int n, off_t off)
{
    while (n > 0) {
        ssize_t w = pwritev(fd, iov, n, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        off += w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ superblock */

static void super_encode(uint8_t *b, uint64_t size, uint64_t generation,
                         uint64_t tail)
{
    memset(b, 0, SUPER_BYTES);
    put_le32(b, SUPER_MAGIC);
    put_le32(b + 4, SUPER_VERSION);
    put_le64(b + 8, size);
    put_le64(b + 16, generation);
    put_le64(b + 24, tail);
    put_le32(b + 32, hx_crc32c(0, b, 32));
}

/* A slot that holds a valid superblock for a file of size bytes. */
static bool super_decode(const uint8_t *b, uint64_t size,
                         uint64_t *generation, uint64_t *tail)
{
    if (get_le32(b + 32) != hx_crc32c(0, b, 32) || get_le32(b) != SUPER_MAGIC || get_le32(b + 4) != SUPER_VERSION ||
        get_le64(b + 8) != size)
        return false;
    *generation = get_le64(b + 16);
    *tail = get_le64(b + 24);
    return true;
}

static int super_load(segment_journal *j, segment_store_why *why)
{
    uint8_t b[2][SUPER_BYTES];
    bool ok[2];
    uint64_t gen[2] = {0, 0}, tail[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        int e = pread_full(j->fd, b[i], SUPER_BYTES,
                           (off_t)(i * SUPER_SLOT_BYTES));
        if (e != 0) {
            why_set(why, "cannot read the journal %s: %s", j->path,
                    strerror(e));
            return HX_ERR_IO;
        }
        ok[i] = super_decode(b[i], j->size, &gen[i], &tail[i]);
    }
    if (!ok[0] && !ok[1]) {
        why_set(why, "journal %s has no valid superblock: its unflushed "
                "writes cannot be replayed; move the file away to start "
                "this node with an empty journal (its peers refill what it "
                "misses)", j->path);
        return HX_ERR_IO;
    }
    int pick = !ok[0] || (ok[1] && gen[1] > gen[0]);
    j->generation = gen[pick];
    atomic_store(&j->tail, tail[pick]);
    atomic_store(&j->head, tail[pick]);
    return HX_OK;
}

static int super_write(segment_journal *j, uint64_t tail)
{
    uint64_t gen = j->generation + 1;
    uint8_t b[SUPER_BYTES];
    super_encode(b, j->size, gen, tail);
    struct iovec iov = {b, sizeof b};
    int e = pwritev_full(j->fd, &iov, 1, (off_t)((gen % 2) * SUPER_SLOT_BYTES));
    if (e == 0 && fdatasync(j->fd) != 0)
        e = errno;
    if (e == 0)
        j->generation = gen;
    return e;
}

/* -------------------------------------------------------------- creation */

static int sync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return errno;
    int e = fsync(fd) != 0 ? errno : 0;
    close(fd);
    return e;
}

/* Writes every byte of a new file (superblock generation 1 in slot 1,
 * tail 0; zeros elsewhere), syncs it and renames it to path: blocks that
 * are written once are overwritten afterwards without metadata changes. */
static int create_file(const char *path, uint64_t size, segment_store_why *why)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        why_set(why, "cannot create the journal %s: %s", tmp, strerror(e));
        return errno_rc(e);
    }
    uint8_t *zero = calloc(1, ZERO_CHUNK);
    int e = zero == NULL ? ENOMEM : 0;
    for (uint64_t off = 0; e == 0 && off < size; off += ZERO_CHUNK) {
        size_t n = size - off < ZERO_CHUNK ? (size_t)(size - off) : ZERO_CHUNK;
        if (off == 0)
            super_encode(zero + SUPER_SLOT_BYTES, size, 1, 0);
        struct iovec iov = {zero, n};
        e = pwritev_full(fd, &iov, 1, (off_t)off);
        if (off == 0)
            memset(zero + SUPER_SLOT_BYTES, 0, SUPER_BYTES);
    }
    free(zero);
    if (e == 0 && fsync(fd) != 0)
        e = errno;
    close(fd);
    if (e == 0 && rename(tmp, path) != 0)
        e = errno;
    if (e == 0)
        e = sync_dir_of(path);
    if (e != 0) {
        unlink(tmp);
        why_set(why, "cannot write the journal %s (%" PRIu64 " bytes): %s%s",
                path, size, strerror(e),
                e == ENOSPC ? " (free space, or set a smaller journal_mib "
                              "on this node's storage line)" : "");
        return e == ENOMEM ? HX_ERR_NOMEM : errno_rc(e);
    }
    return HX_OK;
}

int segment_journal_open(const char *path, uint64_t size_bytes,
                         segment_journal **out, segment_store_why *why)
{
    *out = NULL;
    if (strlen(path) >= sizeof ((segment_journal *)0)->path) {
        why_set(why, "journal path too long: %s", path);
        return HX_ERR_INVALID;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) {
            int e = errno;
            why_set(why, "cannot stat the journal %s: %s", path, strerror(e));
            return HX_ERR_IO;
        }
        size_bytes -= size_bytes % SEGMENT_JOURNAL_RING_OFFSET;
        if (size_bytes < SEGMENT_JOURNAL_MIN_BYTES) {
            why_set(why, "journal size %" PRIu64 " bytes is below the "
                    "minimum of %u", size_bytes, SEGMENT_JOURNAL_MIN_BYTES);
            return HX_ERR_INVALID;
        }
        int rc = create_file(path, size_bytes, why);
        if (rc != HX_OK)
            return rc;
        if (stat(path, &st) != 0) {
            int e = errno;
            why_set(why, "cannot stat the journal %s: %s", path, strerror(e));
            return HX_ERR_IO;
        }
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < SEGMENT_JOURNAL_MIN_BYTES || size % SEGMENT_JOURNAL_RING_OFFSET) {
        why_set(why, "journal %s has a size of %" PRIu64 " bytes, not a "
                "journal's; move it away to start with an empty journal",
                path, size);
        return HX_ERR_IO;
    }
    segment_journal *j = calloc(1, sizeof *j);
    if (j == NULL) {
        why_set(why, "out of memory");
        return HX_ERR_NOMEM;
    }
    snprintf(j->path, sizeof j->path, "%s", path);
    j->size = size;
    j->ring = size - SEGMENT_JOURNAL_RING_OFFSET;
    j->fd = open(path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0) {
        int e = errno;
        why_set(why, "cannot open the journal %s: %s", path, strerror(e));
        free(j);
        return HX_ERR_IO;
    }
    int rc = super_load(j, why);
    if (rc != HX_OK) {
        segment_journal_close(j);
        return rc;
    }
    *out = j;
    return HX_OK;
}

void segment_journal_close(segment_journal *j)
{
    if (j == NULL)
        return;
    close(j->fd);
    free(j);
}

/* ------------------------------------------------------------ ring I/O */

/* The iovecs that cover len bytes of the ring from position pos (two when
 * they wrap); returns how many, and their physical offsets. */
static int ring_span(const segment_journal *j, uint64_t pos, size_t len,
                     off_t off[2], size_t part[2])
{
    uint64_t at = pos % j->ring;
    off[0] = (off_t)(SEGMENT_JOURNAL_RING_OFFSET + at);
    if (at + len <= j->ring) {
        part[0] = len;
        return 1;
    }
    part[0] = (size_t)(j->ring - at);
    part[1] = len - part[0];
    off[1] = (off_t)SEGMENT_JOURNAL_RING_OFFSET;
    return 2;
}

static int ring_read(const segment_journal *j, uint64_t pos, void *buf,
                     size_t len)
{
    off_t off[2];
    size_t part[2];
    int n = ring_span(j, pos, len, off, part);
    uint8_t *p = buf;
    for (int i = 0; i < n; i++) {
        int e = pread_full(j->fd, p, part[i], off[i]);
        if (e != 0)
            return e;
        p += part[i];
    }
    return 0;
}

/* Writes len bytes gathered from the iovecs src at position pos, wrapping. */
static int ring_write(const segment_journal *j, uint64_t pos,
                      const struct iovec *src, size_t len)
{
    off_t off[2];
    size_t part[2];
    int n = ring_span(j, pos, len, off, part);
    int s = 0;
    size_t s_used = 0;
    for (int i = 0; i < n; i++) {
        struct iovec iov[4];
        int k = 0;
        size_t want = part[i];
        while (want > 0) {
            size_t take = src[s].iov_len - s_used;
            if (take > want)
                take = want;
            iov[k].iov_base = (uint8_t *)src[s].iov_base + s_used;
            iov[k].iov_len = take;
            k++;
            want -= take;
            s_used += take;
            if (s_used == src[s].iov_len) {
                s++;
                s_used = 0;
            }
        }
        int e = pwritev_full(j->fd, iov, k, off[i]);
        if (e != 0)
            return e;
    }
    return 0;
}

static uint32_t entry_crc(const uint8_t *hdr16, const void *payload,
                          size_t len)
{
    return hx_crc32c(hx_crc32c(0, hdr16, 16), payload, len);
}

int segment_journal_append(segment_journal *j, const char *payload,
                           size_t len, segment_store_why *why)
{
    uint64_t head = atomic_load(&j->head);
    uint64_t need = SEGMENT_JOURNAL_HEADER_BYTES + (uint64_t)len;
    if (need > j->ring || len > UINT32_MAX) {
        why_set(why, "a journal entry of %zu bytes exceeds the journal's "
                "ring of %" PRIu64 " bytes (raise journal_mib)", len,
                j->ring);
        return HX_ERR_INVALID;
    }
    if (head + need - atomic_load(&j->tail) > j->ring) {
        why_set(why, "journal %s is full until RocksDB flushes", j->path);
        return HX_ERR_BUSY;
    }
    uint8_t hdr[SEGMENT_JOURNAL_HEADER_BYTES];
    put_le32(hdr, ENTRY_MAGIC);
    put_le32(hdr + 4, (uint32_t)len);
    put_le64(hdr + 8, head);
    put_le32(hdr + 16, entry_crc(hdr, payload, len));
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    int e = ring_write(j, head, iov, (size_t)need);
    if (e == 0 && fdatasync(j->fd) != 0)
        e = errno;
    if (e != 0) {
        why_set(why, "journal %s: write or sync of %zu bytes failed: %s",
                j->path, len, strerror(e));
        return errno_rc(e);
    }
    atomic_store(&j->head, head + need);
    return HX_OK;
}

int segment_journal_withdraw(segment_journal *j, uint64_t pos,
                             segment_store_why *why)
{
    uint64_t head = atomic_load(&j->head);
    if (pos < atomic_load(&j->tail) || pos >= head ||
        head - pos < SEGMENT_JOURNAL_HEADER_BYTES) {
        why_set(why, "journal %s: no entry to withdraw at %" PRIu64, j->path,
                pos);
        return HX_ERR_INVALID;
    }
    uint8_t zero[SEGMENT_JOURNAL_HEADER_BYTES] = {0};
    struct iovec iov[1] = {{zero, sizeof zero}};
    int e = ring_write(j, pos, iov, sizeof zero);
    if (e == 0 && fdatasync(j->fd) != 0)
        e = errno;
    if (e != 0) {
        why_set(why, "journal %s: withdrawing the entry at %" PRIu64
                " failed: %s", j->path, pos, strerror(e));
        return errno_rc(e);
    }
    atomic_store(&j->head, pos);
    return HX_OK;
}

int segment_journal_replay(segment_journal *j,
                           int (*apply)(void *arg, const char *payload,
                                        size_t len),
                           void *arg, uint64_t *n_entries,
                           segment_store_why *why)
{
    uint64_t pos = atomic_load(&j->tail), n = 0;
    char *buf = NULL;
    size_t cap = 0;
    int rc = HX_OK;
    for (;;) {
        uint8_t hdr[SEGMENT_JOURNAL_HEADER_BYTES];
        int e = ring_read(j, pos, hdr, sizeof hdr);
        if (e != 0) {
            why_set(why, "cannot read the journal %s: %s", j->path,
                    strerror(e));
            rc = HX_ERR_IO;
            break;
        }
        uint64_t len = get_le32(hdr + 4);
        if (get_le32(hdr) != ENTRY_MAGIC || get_le64(hdr + 8) != pos ||
            pos - atomic_load(&j->tail) + sizeof hdr + len > j->ring)
            break; /* invariant 2: the end of this lap's entries */
        if (len > cap) {
            char *nb = realloc(buf, (size_t)len);
            if (nb == NULL) {
                why_set(why, "out of memory");
                rc = HX_ERR_NOMEM;
                break;
            }
            buf = nb;
            cap = (size_t)len;
        }
        e = ring_read(j, pos + sizeof hdr, buf, (size_t)len);
        if (e != 0) {
            why_set(why, "cannot read the journal %s: %s", j->path,
                    strerror(e));
            rc = HX_ERR_IO;
            break;
        }
        if (get_le32(hdr + 16) != entry_crc(hdr, buf, (size_t)len))
            break; /* torn: never acknowledged (invariant 3) */
        rc = apply(arg, buf, (size_t)len);
        if (rc != 0)
            break;
        n++;
        pos += sizeof hdr + len;
    }
    free(buf);
    atomic_store(&j->head, pos);
    if (n_entries)
        *n_entries = n;
    return rc;
}

int segment_journal_release(segment_journal *j, uint64_t upto,
                            segment_store_why *why)
{
    if (upto < atomic_load(&j->tail) || upto > atomic_load(&j->head)) {
        why_set(why, "journal release to %" PRIu64 " outside [%" PRIu64
                ", %" PRIu64 "]", upto, atomic_load(&j->tail),
                atomic_load(&j->head));
        return HX_ERR_INVALID;
    }
    int e = super_write(j, upto);
    if (e != 0) {
        why_set(why, "journal %s: superblock write failed: %s", j->path,
                strerror(e));
        return errno_rc(e);
    }
    atomic_store(&j->tail, upto);
    return HX_OK;
}

uint64_t segment_journal_head(const segment_journal *j)
{
    return atomic_load(&j->head);
}

uint64_t segment_journal_tail(const segment_journal *j)
{
    return atomic_load(&j->tail);
}

uint64_t segment_journal_used(const segment_journal *j)
{
    return atomic_load(&j->head) - atomic_load(&j->tail);
}

uint64_t segment_journal_ring_bytes(const segment_journal *j)
{
    return j->ring;
}

uint64_t segment_journal_size(const segment_journal *j)
{
    return j->size;
}
