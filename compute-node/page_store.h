/* page_store: the storage interface the SQLite VFS (hx_vfs.c) writes to.
 *
 * A volume is an array of fixed-size pages numbered from 0; volume page n
 * holds SQLite page n + 1 (byte offset n * page_size of the database file).
 * The VFS never writes a page: it hands the store one mini-transaction
 * (MTR) of redo records per SQL transaction and reads pages back at a read
 * point. Two implementations: the network volume client
 * (volume_client.h, hx_volume_page_store()) and an in-memory multi-version
 * store for tests and the shell self-test (mem_page_store.h).
 *
 * Threads: every function may be called from any thread, concurrently.
 */
#ifndef HX_PAGE_STORE_H
#define HX_PAGE_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Bytes [offset, offset + len) of the page become data[0 .. len). */
typedef struct {
    uint32_t offset;
    uint32_t len;
    const uint8_t *data;
} hx_patch;

/* One redo record. is_image = 1: the patches describe the whole page; bytes
 * no patch covers are zero (in practice one patch {0, page_size}).
 * is_image = 0: the patches apply to the page's previous version. */
typedef struct {
    uint64_t page_no;
    int is_image;
    size_t n_patches;
    const hx_patch *patches;
} hx_page_write;

/* write_mtr flags. MORE_COMING: another session waits to commit, so the
 * store may hold this MTR a moment to ship it with the next one (one
 * append and one fsync per storage node for both). */
#define HX_MTR_MORE_COMING 1u

typedef struct hx_page_store {
    void *ctx;
    uint32_t page_size;
    /* Newest durable, visible LSN (an MTR boundary, <= VDL) a new read
     * may use. Never decreases. */
    uint64_t (*read_point)(void *ctx);
    /* Copies page page_no as of read_lsn into buf (page_size bytes);
     * zero-filled if never written. 0 or a negative hx_err. */
    int (*read_page)(void *ctx, uint64_t page_no, uint64_t read_lsn,
                     uint8_t *buf);
    /* Ships one MTR: n >= 1 records in order, the last one is the CPL.
     * Returns at once with the commit LSN (the CPL's LSN); it does not wait
     * for durability (pipelined commits). The store copies what it needs
     * before returning: w and everything it points to stay the caller's.
     * On HX_ERR_BUSY or HX_ERR_TOO_BIG nothing was shipped; after any
     * other error what reached storage is unknown, and the caller must stop
     * writing until the volume is reopened (recovery truncates above VDL,
     * so a partial MTR never becomes visible). NULL in a read-only store
     * (snapshot_store.h). */
    int (*write_mtr)(void *ctx, const hx_page_write *w, size_t n,
                     unsigned flags, uint64_t *commit_lsn);
    /* Waits until VDL >= lsn. HX_ERR_TIMEOUT after timeout_ms (< 0: no
     * limit). */
    int (*wait_durable)(void *ctx, uint64_t lsn, int timeout_ms);
} hx_page_store;

#endif
