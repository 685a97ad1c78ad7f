/* hexadctl page: one page as every member of its PG serves it at one LSN,
 * to find the copy that differs (a fault experiment's wrong read). Only
 * SegmentInfo and GetPage go to storage: nothing changes there. */
#include "hexadctl_page.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crc32c.h"
#include "hx_err.h"
#include "volume_client.h"

#define PAGE_READ_TIMEOUT_MS 5000

static const char *help_text =
    "usage: hexadctl page --page P [--lsn L] [--dump DIR]\n"
    "\n"
    "Reads page P from every member of its PG as of LSN L (default: the\n"
    "VDL a recovery would find now) and prints, per member, its SCL and\n"
    "the page's CRC-32C, or why it refused (a read point above its SCL is\n"
    "refused). --dump DIR writes each image to DIR/page-P-at-L-NODE.bin\n"
    "for cmp or a hex diff (DIR is created if missing). Changes nothing on\n"
    "storage.\n"
    "\n"
    "Exit status: 0 every member that answered served the same bytes,\n"
    "1 members served different bytes (or none answered, or an image could\n"
    "not be written), 2 usage.\n";

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return -1;
    *out = x;
    return 0;
}

static int dump(const char *dir, uint64_t page_no, uint64_t lsn,
                const char *node, const uint8_t *img, uint32_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/page-%" PRIu64 "-at-%" PRIu64 "-%s.bin",
             dir, page_no, lsn, node);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(img, 1, size, f) != size) {
        fprintf(stderr, "hexadctl page: cannot write %s: %s\n", path,
                strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

int hexadctl_page(const hx_cluster_cfg *cfg, int argc, char **argv)
{
    uint64_t page_no = UINT64_MAX, lsn = 0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(help_text, stdout);
            return 0;
        } else if (strcmp(argv[i], "--page") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], &page_no) != 0) {
                fprintf(stderr, "hexadctl page: --page takes a page number\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--lsn") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], &lsn) != 0 || lsn == 0) {
                fprintf(stderr, "hexadctl page: --lsn takes an LSN > 0\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "hexadctl page: unknown option %s (try --help)\n",
                    argv[i]);
            return 2;
        }
    }
    if (page_no == UINT64_MAX) {
        fprintf(stderr, "hexadctl page: --page P is required (try --help)\n");
        return 2;
    }
    if (dir != NULL && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "hexadctl page: cannot create --dump directory %s: "
                "%s (create it, or name one you can write to)\n", dir,
                strerror(errno));
        return 2;
    }
    hx_volume_opts o = {.cluster = cfg, .mode = HX_VOLUME_PROBE,
                        .open_timeout_ms = cfg->commit_timeout_ms};
    hx_volume *v = NULL;
    int rc = hx_volume_open(&o, &v);
    if (rc != HX_OK) {
        fprintf(stderr, "hexadctl page: cannot open volume %u: %s\n",
                cfg->volume, hx_strerror(rc));
        return 1;
    }
    hx_volume_status st;
    rc = hx_volume_status_get(v, cfg->commit_timeout_ms, &st);
    uint32_t pg = (uint32_t)(page_no / cfg->pg_pages);
    const hx_pg_status *ps = NULL;
    for (size_t i = 0; rc == HX_OK && i < st.n_pgs; i++)
        if (st.pgs[i].pg == pg)
            ps = &st.pgs[i];
    if (rc != HX_OK || ps == NULL) {
        fprintf(stderr, "hexadctl page: %s\n", rc != HX_OK ? hx_strerror(rc) :
                "no storage node answered for that page's PG (a page never "
                "written has no PG yet)");
        if (rc == HX_OK)
            hx_volume_status_free(&st);
        hx_volume_close(v);
        return 1;
    }
    if (lsn == 0)
        lsn = st.vdl;
    printf("page %" PRIu64 " (PG %u) at LSN %" PRIu64 "%s\n", page_no, pg, lsn,
           lsn == st.vdl ? " (the VDL a recovery would find)" : "");
    uint8_t *img = malloc(cfg->page_size);
    uint32_t first_crc = 0;
    int answered = 0, differ = 0, unwritten = 0;
    for (int m = 0; img != NULL && m < HX_PG_MEMBERS; m++) {
        const hx_member_status *ms = &ps->members[m];
        if (ms->node[0] == '\0')
            continue;
        if (!ms->reachable) {
            printf("  %-8s %-6s unreachable\n", ms->node, ms->az);
            continue;
        }
        char msg[200];
        rc = hx_volume_read_page_on(v, ms->node, page_no, lsn,
                                    PAGE_READ_TIMEOUT_MS, img, msg,
                                    sizeof msg);
        printf("  %-8s %-6s SCL %-12" PRIu64, ms->node, ms->az, ms->scl);
        if (rc != HX_OK) {
            printf(" refused: %s\n", msg);
            continue;
        }
        uint32_t crc = hx_crc32c(0, img, cfg->page_size);
        if (answered++ == 0)
            first_crc = crc;
        differ += crc != first_crc;
        printf(" crc32c %08x%s\n", crc, crc != first_crc ? "  DIFFERS" : "");
        if (dir != NULL && dump(dir, page_no, lsn, ms->node, img,
                                cfg->page_size) != 0)
            unwritten++;
    }
    if (img == NULL)
        fprintf(stderr, "hexadctl page: out of memory\n");
    free(img);
    hx_volume_status_free(&st);
    hx_volume_close(v);
    if (answered == 0) {
        printf("no member served the page at that LSN\n");
        return 1;
    }
    printf("%s\n", differ ? "members DIFFER" : "every member that answered "
           "served the same bytes");
    if (unwritten)
        printf("%d image(s) not written to %s (see above)\n", unwritten, dir);
    return differ || unwritten ? 1 : 0;
}
