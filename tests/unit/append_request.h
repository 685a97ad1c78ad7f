/* The AppendRecords that unit tests and hexad-storage-work send a segment
 * store: a writer at volume_epoch, membership epoch 1, members s1..s6,
 * the given geometry. The request points at geo, at the static member
 * list and at the caller's records, so it lives as long as those. */
#ifndef HX_TEST_APPEND_REQUEST_H
#define HX_TEST_APPEND_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "hexad.pb-c.h"

static inline void hx_test_append_request(Hexad__AppendRecords *req,
                                          Hexad__Geometry *geo, uint32_t vol,
                                          uint32_t pg, uint64_t volume_epoch,
                                          uint32_t page_size,
                                          uint64_t pg_pages,
                                          Hexad__Record **recs, size_t n)
{
    static const char *members[6] = {"s1", "s2", "s3", "s4", "s5", "s6"};
    hexad__append_records__init(req);
    hexad__geometry__init(geo);
    geo->page_size = page_size;
    geo->pg_pages = pg_pages;
    req->volume = vol;
    req->pg = pg;
    req->volume_epoch = volume_epoch;
    req->membership_epoch = 1;
    req->members = (char **)members;
    req->n_members = 6;
    req->geometry = geo;
    req->records = recs;
    req->n_records = n;
}

#endif
