#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hx_err.h"

#define LINE_MAX_BYTES 2048
#define WORDS_MAX 16

static int fail(char *err, size_t len, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t len, int line, const char *fmt, ...)
{
    if (err != NULL && len > 0) {
        int n = line > 0 ? snprintf(err, len, "line %d: ", line) : 0;
        if (n < 0 || (size_t)n >= len)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return HX_ERR_CONFIG;
}

static int copy_value(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

static int parse_u64(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || x < min ||
        x > max)
        return -1;
    *out = x;
    return 0;
}

typedef struct {
    const char *key;
    const char *value;
} kv;

static int split_words(char *line, kv *words, int *n_words, const char **kind)
{
    *n_words = 0;
    *kind = NULL;
    char *save = NULL;
    for (char *w = strtok_r(line, " \t\r", &save); w != NULL;
         w = strtok_r(NULL, " \t\r", &save)) {
        if (*kind == NULL) {
            *kind = w;
            continue;
        }
        char *eq = strchr(w, '=');
        if (eq == NULL || eq == w || *n_words == WORDS_MAX)
            return -1;
        *eq = '\0';
        words[*n_words].key = w;
        words[*n_words].value = eq + 1;
        (*n_words)++;
    }
    return 0;
}

static int parse_cluster(const kv *w, int n, hx_cluster_cfg *cfg, char *err,
                         size_t len, int line)
{
    for (int i = 0; i < n; i++) {
        uint64_t x;
        if (strcmp(w[i].key, "name") == 0) {
            if (copy_value(cfg->name, sizeof cfg->name, w[i].value) != 0)
                return fail(err, len, line, "cluster name is empty or too long");
        } else if (strcmp(w[i].key, "volume") == 0) {
            if (parse_u64(w[i].value, 1, UINT32_MAX, &x) != 0)
                return fail(err, len, line, "volume must be a number from 1 to 4294967295");
            cfg->volume = (uint32_t)x;
        } else if (strcmp(w[i].key, "page_size") == 0) {
            if (parse_u64(w[i].value, 512, 65536, &x) != 0 || (x & (x - 1)) != 0)
                return fail(err, len, line, "page_size must be a power of two from 512 to 65536");
            cfg->page_size = (uint32_t)x;
        } else if (strcmp(w[i].key, "pg_pages") == 0) {
            if (parse_u64(w[i].value, 1, UINT64_C(1) << 40, &x) != 0)
                return fail(err, len, line, "pg_pages must be a positive number of pages");
            cfg->pg_pages = x;
        } else if (strcmp(w[i].key, "lal") == 0) {
            if (parse_u64(w[i].value, 16, UINT64_C(1) << 40, &x) != 0)
                return fail(err, len, line, "lal must be a number of LSNs, at least 16");
            cfg->lal = x;
        } else if (strcmp(w[i].key, "commit_timeout_ms") == 0) {
            if (parse_u64(w[i].value, 1, 24 * 3600 * 1000, &x) != 0)
                return fail(err, len, line, "commit_timeout_ms must be from 1 to 86400000");
            cfg->commit_timeout_ms = (int)x;
        } else if (strcmp(w[i].key, "retention_s") == 0) {
            if (parse_u64(w[i].value, 0, UINT64_C(10) * 365 * 24 * 3600, &x) != 0)
                return fail(err, len, line, "retention_s must be a number of seconds from 0 to 315360000");
            cfg->retention_s = x;
        } else if (strcmp(w[i].key, "wire_compression") == 0) {
            if (strcmp(w[i].value, "zstd") == 0)
                cfg->wire_compression = true;
            else if (strcmp(w[i].value, "off") == 0)
                cfg->wire_compression = false;
            else
                return fail(err, len, line, "wire_compression must be zstd or off");
        } else {
            return fail(err, len, line, "unknown cluster key '%s'; known: name volume page_size pg_pages lal commit_timeout_ms retention_s wire_compression", w[i].key);
        }
    }
    return HX_OK;
}

static int parse_storage(const kv *w, int n, hx_cluster_cfg *cfg, char *err,
                         size_t len, int line)
{
    if (cfg->n_storage == HX_MAX_STORAGE_NODES)
        return fail(err, len, line, "more than %d storage nodes", HX_MAX_STORAGE_NODES);
    hx_storage_cfg *s = &cfg->storage[cfg->n_storage];
    memset(s, 0, sizeof *s);
    s->journal_mib = HX_STORAGE_JOURNAL_MIB_DEFAULT;
    s->record_cache_mib = HX_STORAGE_RECORD_CACHE_MIB_DEFAULT;
    for (int i = 0; i < n; i++) {
        int bad;
        if (strcmp(w[i].key, "id") == 0)
            bad = copy_value(s->id, sizeof s->id, w[i].value);
        else if (strcmp(w[i].key, "az") == 0)
            bad = copy_value(s->az, sizeof s->az, w[i].value);
        else if (strcmp(w[i].key, "addr") == 0)
            bad = copy_value(s->addr, sizeof s->addr, w[i].value);
        else if (strcmp(w[i].key, "metrics") == 0)
            bad = copy_value(s->metrics_addr, sizeof s->metrics_addr, w[i].value);
        else if (strcmp(w[i].key, "data") == 0)
            bad = copy_value(s->data_dir, sizeof s->data_dir, w[i].value);
        else if (strcmp(w[i].key, "journal_mib") == 0) {
            if (parse_u64(w[i].value, 1, 65536, &s->journal_mib) != 0)
                return fail(err, len, line, "storage journal_mib must be a number of MiB from 1 to 65536");
            bad = 0;
        } else if (strcmp(w[i].key, "record_cache_mib") == 0) {
            if (parse_u64(w[i].value, 0, 65536, &s->record_cache_mib) != 0)
                return fail(err, len, line, "storage record_cache_mib must be a number of MiB from 0 to 65536");
            bad = 0;
        } else
            return fail(err, len, line, "unknown storage key '%s'; known: id az addr metrics data journal_mib record_cache_mib", w[i].key);
        if (bad)
            return fail(err, len, line, "storage %s is empty or too long", w[i].key);
    }
    if (!s->id[0] || !s->az[0] || !s->addr[0] || !s->data_dir[0])
        return fail(err, len, line, "a storage line needs id=, az=, addr=HOST:PORT and data=DIR");
    if (hx_addr_split(s->addr, s->host, sizeof s->host, &s->port) != HX_OK)
        return fail(err, len, line, "storage %s: addr '%s' is not HOST:PORT", s->id, s->addr);
    char h[96];
    uint16_t p;
    if (s->metrics_addr[0] &&
        hx_addr_split(s->metrics_addr, h, sizeof h, &p) != HX_OK)
        return fail(err, len, line, "storage %s: metrics '%s' is not HOST:PORT", s->id, s->metrics_addr);
    cfg->n_storage++;
    return HX_OK;
}

static int parse_compute(const kv *w, int n, hx_cluster_cfg *cfg, char *err,
                         size_t len, int line)
{
    if (cfg->n_compute == HX_MAX_COMPUTE_NODES)
        return fail(err, len, line, "more than %d compute nodes", HX_MAX_COMPUTE_NODES);
    hx_compute_cfg *c = &cfg->compute[cfg->n_compute];
    memset(c, 0, sizeof *c);
    snprintf(c->role, sizeof c->role, "writer");
    c->cache_mib = HX_COMPUTE_CACHE_MIB_DEFAULT;
    for (int i = 0; i < n; i++) {
        int bad;
        if (strcmp(w[i].key, "id") == 0)
            bad = copy_value(c->id, sizeof c->id, w[i].value);
        else if (strcmp(w[i].key, "role") == 0)
            bad = copy_value(c->role, sizeof c->role, w[i].value);
        else if (strcmp(w[i].key, "az") == 0)
            bad = copy_value(c->az, sizeof c->az, w[i].value);
        else if (strcmp(w[i].key, "addr") == 0)
            bad = copy_value(c->addr, sizeof c->addr, w[i].value);
        else if (strcmp(w[i].key, "password") == 0)
            bad = copy_value(c->password, sizeof c->password, w[i].value);
        else if (strcmp(w[i].key, "metrics") == 0)
            bad = copy_value(c->metrics_addr, sizeof c->metrics_addr, w[i].value);
        else if (strcmp(w[i].key, "cache_mib") == 0) {
            if (parse_u64(w[i].value, 1, UINT64_C(1) << 20, &c->cache_mib) != 0)
                return fail(err, len, line, "compute cache_mib must be a number of MiB from 1 to 1048576");
            bad = 0;
        } else
            return fail(err, len, line, "unknown compute key '%s'; known: id role az addr password cache_mib metrics", w[i].key);
        if (bad)
            return fail(err, len, line, "compute %s is empty or too long", w[i].key);
    }
    if (!c->id[0] || !c->addr[0])
        return fail(err, len, line, "a compute line needs id= and addr=HOST:PORT");
    if (strcmp(c->role, "writer") != 0 && strcmp(c->role, "reader") != 0)
        return fail(err, len, line, "compute %s: role must be writer or reader", c->id);
    if (hx_addr_split(c->addr, c->host, sizeof c->host, &c->port) != HX_OK)
        return fail(err, len, line, "compute %s: addr '%s' is not HOST:PORT", c->id, c->addr);
    char h[96];
    uint16_t p;
    if (c->metrics_addr[0] &&
        hx_addr_split(c->metrics_addr, h, sizeof h, &p) != HX_OK)
        return fail(err, len, line, "compute %s: metrics '%s' is not HOST:PORT", c->id, c->metrics_addr);
    cfg->n_compute++;
    return HX_OK;
}

static int validate(const hx_cluster_cfg *cfg, char *err, size_t len)
{
    for (size_t i = 0; i < cfg->n_storage; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->storage[i].id, cfg->storage[j].id) == 0)
                return fail(err, len, 0, "storage id '%s' appears twice; ids must be unique", cfg->storage[i].id);
            if (strcmp(cfg->storage[i].addr, cfg->storage[j].addr) == 0)
                return fail(err, len, 0, "storage %s and %s share addr %s; give each its own port", cfg->storage[j].id, cfg->storage[i].id, cfg->storage[i].addr);
            if (strcmp(cfg->storage[i].data_dir, cfg->storage[j].data_dir) == 0)
                return fail(err, len, 0, "storage %s and %s share data dir %s", cfg->storage[j].id, cfg->storage[i].id, cfg->storage[i].data_dir);
        }
    }
    for (size_t i = 0; i < cfg->n_compute; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->compute[i].id, cfg->compute[j].id) == 0)
                return fail(err, len, 0, "compute id '%s' appears twice", cfg->compute[i].id);
    return HX_OK;
}

int hx_cluster_parse(const char *text, hx_cluster_cfg *cfg, char *err,
                     size_t err_len)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->name, sizeof cfg->name, "hexad");
    cfg->volume = 1;
    cfg->page_size = 4096;
    cfg->pg_pages = 0; /* unless given: HX_PG_BYTES_DEFAULT / page_size */
    cfg->lal = 1000000;
    cfg->commit_timeout_ms = 30000;
    cfg->wire_compression = true;
    cfg->retention_s = 3600;

    int line_no = 0;
    const char *p = text;
    while (*p) {
        line_no++;
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n >= LINE_MAX_BYTES)
            return fail(err, err_len, line_no, "line longer than %d bytes", LINE_MAX_BYTES);
        char line[LINE_MAX_BYTES];
        memcpy(line, p, n);
        line[n] = '\0';
        p += n + (nl ? 1 : 0);
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        kv words[WORDS_MAX];
        int n_words;
        const char *kind;
        if (split_words(line, words, &n_words, &kind) != 0)
            return fail(err, err_len, line_no, "expected KIND key=value ... (at most %d pairs)", WORDS_MAX);
        if (kind == NULL)
            continue;
        int rc;
        if (strcmp(kind, "cluster") == 0)
            rc = parse_cluster(words, n_words, cfg, err, err_len, line_no);
        else if (strcmp(kind, "storage") == 0)
            rc = parse_storage(words, n_words, cfg, err, err_len, line_no);
        else if (strcmp(kind, "compute") == 0)
            rc = parse_compute(words, n_words, cfg, err, err_len, line_no);
        else
            rc = fail(err, err_len, line_no, "unknown line kind '%s'; expected cluster, storage or compute", kind);
        if (rc != HX_OK)
            return rc;
    }
    if (cfg->pg_pages == 0)
        cfg->pg_pages = HX_PG_BYTES_DEFAULT / cfg->page_size;
    return validate(cfg, err, err_len);
}

int hx_cluster_load(const char *path, hx_cluster_cfg *cfg, char *err,
                    size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return fail(err, err_len, 0, "cannot open cluster file %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0, len = 0;
    char buf[4096];
    size_t got;
    int rc = HX_OK;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (len + got + 1 > cap) {
            cap = (len + got + 1) * 2;
            char *t = realloc(text, cap);
            if (t == NULL) {
                rc = HX_ERR_NOMEM;
                goto out;
            }
            text = t;
        }
        memcpy(text + len, buf, got);
        len += got;
    }
    if (ferror(f)) {
        rc = fail(err, err_len, 0, "cannot read cluster file %s", path);
        goto out;
    }
    if (text == NULL) {
        rc = fail(err, err_len, 0, "cluster file %s is empty", path);
        goto out;
    }
    text[len] = '\0';
    rc = hx_cluster_parse(text, cfg, err, err_len);
    if (rc != HX_OK && err != NULL) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s: %s", path, err);
        snprintf(err, err_len, "%s", tmp);
    }
out:
    free(text);
    fclose(f);
    return rc;
}

const hx_storage_cfg *hx_cluster_storage(const hx_cluster_cfg *cfg,
                                         const char *id)
{
    int i = hx_cluster_storage_index(cfg, id);
    return i < 0 ? NULL : &cfg->storage[i];
}

int hx_cluster_storage_index(const hx_cluster_cfg *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_storage; i++)
        if (strcmp(cfg->storage[i].id, id) == 0)
            return (int)i;
    return -1;
}

const hx_compute_cfg *hx_cluster_compute(const hx_cluster_cfg *cfg,
                                         const char *id)
{
    for (size_t i = 0; i < cfg->n_compute; i++)
        if (strcmp(cfg->compute[i].id, id) == 0)
            return &cfg->compute[i];
    return NULL;
}
