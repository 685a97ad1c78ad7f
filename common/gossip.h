/* Gossip decisions, as pure functions (proto/README.md "Gossip").
 *
 * A storage node fills its segments' holes from the PG's peers without the
 * writer re-sending. Two questions have rules worth testing apart from the
 * sockets (storage-node/gossip.c asks them):
 *
 *  - hx_gossip_pick_peer(): which member to pull a segment from now;
 *  - hx_gossip_plan_reply(): what a PulledRecords reply makes the puller
 *    adopt before it stages the records: the peer's higher volume epoch,
 *    and every truncation range the peer recorded that the puller's own
 *    ranges do not already cover.
 *
 * Why adopting is needed: a node that was down while a writer recovered
 * still holds the dead writer's records above the new VDL. The new
 * writer's records link below them, so without the truncation the puller's
 * chain would refuse them as a fork, and it would never catch up.
 *
 * No clock, no I/O: ages and states are inputs.
 */
#ifndef HX_GOSSIP_H
#define HX_GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "recovery.h" /* hx_lsn_range */

/* A peer that reported our own SCL (or less) this recently is skipped:
 * it had nothing for us a moment ago. */
#define HX_GOSSIP_SKIP_SAME_SCL_MS 1000u
/* A report of a higher SCL is trusted for this long: such a peer is
 * preferred, since it is known to have what we lack. */
#define HX_GOSSIP_AHEAD_FRESH_MS 5000u
/* Truncation ranges one reply's plan applies; a puller that lacks more
 * applies the rest on its next pulls (lowest first). */
#define HX_GOSSIP_TRUNCATIONS_MAX 64u

/* What the puller knows of one member of the segment's PG. */
typedef struct {
    bool usable;        /* another node, in the cluster file, whose
                           connection is up or may be tried now */
    bool scl_known;     /* it answered a pull before */
    uint64_t scl;       /* the SCL it last reported */
    uint64_t scl_age_ms;/* how long ago */
} hx_gossip_peer;

/* The member to pull from, or -1 when none is worth asking now.
 * Rules, in order, each scanning members round robin from *rr:
 *  1. a usable member that reported an SCL above own_scl less than
 *     HX_GOSSIP_AHEAD_FRESH_MS ago;
 *  2. a usable member not known to have nothing (it never reported, or
 *     reported above own_scl, or its report of <= own_scl is at least
 *     HX_GOSSIP_SKIP_SAME_SCL_MS old).
 * *rr moves past the chosen member, so successive pulls spread over the
 * members that qualify. */
int hx_gossip_pick_peer(const hx_gossip_peer *members, size_t n,
                        uint64_t own_scl, unsigned *rr);

/* True when one of own (sorted, disjoint, as the store keeps them) holds
 * all of r with an epoch >= r's: applying r would change nothing. */
bool hx_gossip_range_covered(const hx_lsn_range *own, size_t n_own,
                             const hx_lsn_range *r);

typedef struct {
    uint64_t adopt_epoch;   /* > 0: raise the volume epoch to it first */
    size_t n_truncations;   /* ranges to apply, ascending from_lsn */
    hx_lsn_range truncations[HX_GOSSIP_TRUNCATIONS_MAX];
    /* false when a truncation is applied: the reply may have been cut
     * for an SCL that no longer holds. The puller then stages its records
     * only if its SCL did not drop below the pull's after_lsn, and else
     * drops them and pulls again at once from its new SCL. */
    bool stage_records;
} hx_gossip_reply_plan;

/* What to do with a reply: own_epoch and own ranges are the puller's,
 * peer_epoch and peer ranges the reply's, in any order. Ranges with
 * from_lsn == 0 or from_lsn > to_lsn (malformed) are ignored; of those
 * own ranges do not cover, the HX_GOSSIP_TRUNCATIONS_MAX lowest are
 * planned. Stores keep every range they learn (no merging across gaps),
 * so any range a peer sends is one a writer recorded. */
void hx_gossip_plan_reply(uint64_t own_epoch, const hx_lsn_range *own,
                          size_t n_own, uint64_t peer_epoch,
                          const hx_lsn_range *peer, size_t n_peer,
                          hx_gossip_reply_plan *out);

#endif
