/* Prepared statements by text. See stmt_cache.h. */
#include "stmt_cache.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *text;          /* NULL: a free slot */
    size_t len;
    uint64_t hash;
    uint64_t used;       /* stmt_cache.tick at its last use */
    sqlite3_stmt *stmt;  /* NULL: its prepare failed */
} stmt_entry;

struct stmt_cache {
    sqlite3 *db;
    uint64_t tick;
    stmt_entry e[STMT_CACHE_ENTRIES];
};

/* FNV-1a: the texts are short and the table is scanned linearly anyway;
 * the hash only spares most memcmp()s. */
static uint64_t text_hash(const char *p, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

stmt_cache *stmt_cache_create(sqlite3 *db)
{
    stmt_cache *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->db = db;
    return c;
}

static void entry_clear(stmt_entry *e)
{
    sqlite3_finalize(e->stmt);
    free(e->text);
    memset(e, 0, sizeof(*e));
}

void stmt_cache_destroy(stmt_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < STMT_CACHE_ENTRIES; i++)
        entry_clear(&c->e[i]);
    free(c);
}

/* A prepared statement of exactly text, or NULL. */
static sqlite3_stmt *prepare_whole(sqlite3 *db, const char *text, size_t len)
{
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v3(db, text, (int)len, SQLITE_PREPARE_PERSISTENT, &st,
                           &tail) != SQLITE_OK)
        return NULL;
    /* One statement, nothing after it: a second one would never run. */
    while (st != NULL && tail < text + len) {
        char ch = *tail++;
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r' && ch != ';') {
            sqlite3_finalize(st);
            return NULL;
        }
    }
    return st;
}

sqlite3_stmt *stmt_cache_get(stmt_cache *c, const char *text, size_t len)
{
    uint64_t h = text_hash(text, len);
    stmt_entry *victim = &c->e[0];
    c->tick++;
    for (size_t i = 0; i < STMT_CACHE_ENTRIES; i++) {
        stmt_entry *e = &c->e[i];
        if (e->text != NULL && e->hash == h && e->len == len &&
            memcmp(e->text, text, len) == 0) {
            e->used = c->tick;
            return e->stmt;
        }
        if (e->used < victim->used)
            victim = e;
    }
    entry_clear(victim);
    victim->text = malloc(len);
    if (victim->text == NULL)
        return NULL;
    memcpy(victim->text, text, len);
    victim->len = len;
    victim->hash = h;
    victim->used = c->tick;
    victim->stmt = prepare_whole(c->db, text, len);
    return victim->stmt;
}

void stmt_cache_drop(stmt_cache *c, sqlite3_stmt *st)
{
    for (size_t i = 0; i < STMT_CACHE_ENTRIES; i++)
        if (c->e[i].stmt == st && st != NULL)
            entry_clear(&c->e[i]);
}

void stmt_cache_forget_failures(stmt_cache *c)
{
    for (size_t i = 0; i < STMT_CACHE_ENTRIES; i++)
        if (c->e[i].text != NULL && c->e[i].stmt == NULL)
            entry_clear(&c->e[i]);
}
