/* Placement of a PG's six segments: two nodes in each of three AZs.
 *
 * Pure and deterministic: the same node list and PG number give the same
 * members, so a writer that restarts places a new PG as its predecessor
 * would have. Successive PGs rotate through the nodes of each AZ, spreading
 * segments evenly (with three nodes per AZ, each node holds 2/3 of PGs).
 */
#ifndef HX_PLACEMENT_H
#define HX_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "quorum.h"

typedef struct {
    const char *id;
    const char *az;
} hx_node_ref;

/* Fills out_idx[0..5] with indexes into nodes: members 0,1 in the first AZ
 * (AZs ordered by name), 2,3 in the second, 4,5 in the third. Uses the
 * first three AZs (by name) that have at least two nodes.
 * HX_ERR_CONFIG when fewer than three AZs have two nodes. */
int hx_placement_choose(const hx_node_ref *nodes, size_t n, uint32_t pg,
                        int out_idx[HX_PG_MEMBERS]);

#endif
