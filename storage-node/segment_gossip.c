/* The segment store's side of gossip completeness (proto/README.md
 * "Gossip"): the segment lists that let a node learn of segments it
 * should hold but never heard of (it was down when the writer created
 * them). What a pull reply carries besides records is in
 * segment_truncations.c.
 *
 * Invariants:
 *  1. Nothing here writes on its own: a learned segment is staged as an
 *     empty append and created by the next group-commit flush, through
 *     every check of the append path (members must include this node).
 *  2. A learned segment never lowers anything: the append carries the
 *     higher of this node's and the peer's volume epoch, and an existing
 *     segment with members is left alone (its membership changes only by
 *     the writer's appends).
 */
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "segment_store_internal.h"

static bool has_member(const segment *g, const char *node)
{
    for (size_t i = 0; i < g->n_members; i++)
        if (strcmp(g->members[i], node) == 0)
            return true;
    return false;
}

void segment_store_segment_list_free(Hexad__SegmentList *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n_segments; i++) {
        Hexad__SegmentDesc *d = l->segments[i];
        free(d->members); /* the strings belong to the store's copy */
        free(d->geometry);
        free(d);
    }
    free(l->segments);
    free(l);
}

int segment_store_list_segments(const segment_store *s,
                                const Hexad__ListSegments *req,
                                Hexad__SegmentList **out)
{
    size_t max = req->max_segments;
    if (max == 0 || max > SEGMENT_STORE_LIST_MAX)
        max = SEGMENT_STORE_LIST_MAX;
    Hexad__SegmentList *l = calloc(1, sizeof *l);
    if (l == NULL)
        return HX_ERR_NOMEM;
    hexad__segment_list__init(l);
    const char *node = req->node ? req->node : "";
    uint32_t vol0 = (uint32_t)(req->start_key >> 32);
    uint32_t pg0 = (uint32_t)req->start_key;
    int rc = HX_OK;
    /* From the first segment at or after the start key (segs is sorted
     * by (vol, pg)). */
    size_t i = 0, hi = s->n_segs;
    while (i < hi) {
        size_t mid = i + (hi - i) / 2;
        const segment *g = s->segs[mid];
        if (g->vol < vol0 || (g->vol == vol0 && g->pg < pg0))
            i = mid + 1;
        else
            hi = mid;
    }
    for (; i < s->n_segs; i++) {
        const segment *g = s->segs[i];
        if (!has_member(g, node))
            continue;
        if (l->n_segments == max) {
            l->next_key = (uint64_t)g->vol << 32 | g->pg;
            break;
        }
        Hexad__SegmentDesc *d = calloc(1, sizeof *d);
        Hexad__Geometry *geo = calloc(1, sizeof *geo);
        char **members = calloc(g->n_members, sizeof *members);
        Hexad__SegmentDesc **grown =
            realloc(l->segments, (l->n_segments + 1) * sizeof *grown);
        if (grown != NULL)
            l->segments = grown;
        if (d == NULL || geo == NULL || members == NULL || grown == NULL) {
            free(d);
            free(geo);
            free(members);
            rc = HX_ERR_NOMEM;
            break;
        }
        hexad__segment_desc__init(d);
        hexad__geometry__init(geo);
        d->volume = g->vol;
        d->pg = g->pg;
        d->membership_epoch = g->membership_epoch;
        for (size_t m = 0; m < g->n_members; m++)
            members[m] = (char *)g->members[m];
        d->members = members;
        d->n_members = g->n_members;
        if (seg_geometry(s, g, &geo->page_size, &geo->pg_pages))
            d->geometry = geo;
        else
            free(geo);
        const volume *v = vol_find(s, g->vol);
        d->volume_epoch = v ? v->epoch : 0;
        l->segments[l->n_segments++] = d;
    }
    if (rc != HX_OK) {
        segment_store_segment_list_free(l);
        return rc;
    }
    *out = l;
    return HX_OK;
}

int segment_store_stage_learned(segment_store *s, const Hexad__SegmentDesc *d,
                                void *cookie, bool *staged)
{
    *staged = false;
    const segment *g = seg_find(s, d->volume, d->pg);
    if (g != NULL && g->n_members > 0)
        return HX_OK;
    if (d->n_members != HX_PG_MEMBERS || d->geometry == NULL)
        return HX_ERR_INVALID;
    const volume *v = vol_find(s, d->volume);
    Hexad__AppendRecords req = HEXAD__APPEND_RECORDS__INIT;
    req.volume = d->volume;
    req.pg = d->pg;
    req.volume_epoch = v && v->epoch > d->volume_epoch ? v->epoch
                                                       : d->volume_epoch;
    req.membership_epoch = d->membership_epoch;
    req.n_members = d->n_members;
    req.members = d->members;
    req.geometry = d->geometry;
    int rc = segment_store_stage_append(s, &req, cookie);
    if (rc == HX_OK)
        *staged = true;
    return rc;
}
