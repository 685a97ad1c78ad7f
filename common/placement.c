/* Placement of a PG's six segments: two nodes in each of three AZs.
 *
 * DESIGN (the contract is in placement.h)
 *
 *  1. AZs are ordered by name (strcmp); the first three with at least two
 *     nodes are used, in that order, for members 0-1, 2-3 and 4-5.
 *  2. Inside an AZ with k nodes (in node-list order), PG p takes the nodes
 *     at positions p mod k and (p + 1) mod k: distinct because k >= 2, and
 *     over k successive PGs each node is used exactly twice (2/k of PGs).
 *  3. The result depends only on the node list and p: no state, no
 *     allocation. Node lists are small (a cluster file, n <= a few
 *     hundred), so the AZ walk is O(n) per AZ visited, O(n^2) at worst.
 */
#include "placement.h"

#include <string.h>

#include "hx_err.h"

/* The smallest AZ name above `after` (any name when after is NULL), and how
 * many nodes it has; NULL when there is none. */
static const char *placement_next_az(const hx_node_ref *nodes, size_t n,
                                     const char *after, size_t *count)
{
    const char *best = NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *az = nodes[i].az;
        if (after != NULL && strcmp(az, after) <= 0)
            continue;
        int c = best == NULL ? -1 : strcmp(az, best);
        if (c < 0) {
            best = az;
            k = 1;
        } else if (c == 0) {
            k++;
        }
    }
    *count = k;
    return best;
}

/* Index in nodes of the pos-th node (0-based, list order) of AZ az. */
static int placement_nth(const hx_node_ref *nodes, size_t n, const char *az,
                         size_t pos)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(nodes[i].az, az) == 0 && pos-- == 0)
            return (int)i;
    return -1; /* not reached: pos < the AZ's node count */
}

int hx_placement_choose(const hx_node_ref *nodes, size_t n, uint32_t pg,
                        int out_idx[HX_PG_MEMBERS])
{
    if ((nodes == NULL && n > 0) || out_idx == NULL || n > (size_t)INT32_MAX)
        return HX_ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (nodes[i].az == NULL)
            return HX_ERR_CONFIG;

    int idx[HX_PG_MEMBERS];
    int used = 0;
    const char *az = NULL;
    size_t k = 0;
    while (used < HX_PG_MEMBERS &&
           (az = placement_next_az(nodes, n, az, &k)) != NULL) {
        if (k < 2)
            continue;
        size_t pos = (size_t)pg % k;
        idx[used++] = placement_nth(nodes, n, az, pos);
        /* (pos + 1) % k, not (pg + 1) % k: pg + 1 wraps at UINT32_MAX. */
        idx[used++] = placement_nth(nodes, n, az, (pos + 1) % k);
    }
    if (used < HX_PG_MEMBERS)
        return HX_ERR_CONFIG; /* fewer than three AZs with two nodes */
    memcpy(out_idx, idx, sizeof(idx));
    return HX_OK;
}
