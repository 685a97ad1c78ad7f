/* The frame arena (arena.h). */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

/* Most frames (acks, a few records) fit in the first chunk. */
#define ARENA_CHUNK_BYTES (64u << 10)

struct hx_arena_chunk {
    hx_arena_chunk *next;
    size_t cap, used;
    alignas(max_align_t) unsigned char data[];
};

static void *pb_alloc(void *ctx, size_t size)
{
    return hx_arena_alloc(ctx, size);
}

static void pb_free(void *ctx, void *p)
{
    (void)ctx;
    (void)p; /* freed with the arena */
}

void hx_arena_init(hx_arena *a)
{
    a->chunks = NULL;
    a->pb.alloc = pb_alloc;
    a->pb.free = pb_free;
    a->pb.allocator_data = a;
}

void *hx_arena_alloc(hx_arena *a, size_t size)
{
    const size_t align = alignof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    hx_arena_chunk *c = a->chunks;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = size > ARENA_CHUNK_BYTES ? size : ARENA_CHUNK_BYTES;
        c = malloc(sizeof *c + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

/* Keeps one chunk of the default size, so a large frame's memory goes
 * back when it is done with. */
void hx_arena_reset(hx_arena *a)
{
    hx_arena_chunk *keep = NULL, *c = a->chunks;
    while (c != NULL) {
        hx_arena_chunk *next = c->next;
        if (keep == NULL && c->cap == ARENA_CHUNK_BYTES) {
            keep = c;
            keep->used = 0;
            keep->next = NULL;
        } else {
            free(c);
        }
        c = next;
    }
    a->chunks = keep;
}

void hx_arena_destroy(hx_arena *a)
{
    hx_arena_reset(a);
    free(a->chunks);
    a->chunks = NULL;
}
