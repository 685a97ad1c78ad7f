/* A bump allocator for decoded frames.
 *
 * protobuf-c unpacks an envelope into it (hx_arena_allocator) and the
 * whole message goes at once with hx_arena_reset, instead of one malloc
 * and one free per field, record and patch: an AppendRecords of n records
 * costs a few chunk allocations instead of ~4n mallocs.
 *
 * Invariants: every pointer handed out stays valid until the next reset
 * or destroy; free is a no-op; one chunk of the default size survives a
 * reset, so a connection that keeps receiving small frames allocates
 * nothing, and the memory of a large frame is returned after it. Not
 * thread safe: one arena per connection, used by its loop thread.
 */
#ifndef HX_ARENA_H
#define HX_ARENA_H

#include <protobuf-c/protobuf-c.h>

typedef struct hx_arena_chunk hx_arena_chunk;

typedef struct {
    hx_arena_chunk *chunks; /* newest first; the oldest is kept on reset */
    ProtobufCAllocator pb;
} hx_arena;

void hx_arena_init(hx_arena *a);
/* NULL when out of memory (protobuf-c then fails the unpack). */
void *hx_arena_alloc(hx_arena *a, size_t size);
void hx_arena_reset(hx_arena *a);
void hx_arena_destroy(hx_arena *a);

#endif
