/* Gossip decisions (see gossip.h). */
#include "gossip.h"

#include <string.h>

static bool ahead(const hx_gossip_peer *p, uint64_t own_scl)
{
    return p->scl_known && p->scl > own_scl &&
           p->scl_age_ms < HX_GOSSIP_AHEAD_FRESH_MS;
}

static bool known_empty(const hx_gossip_peer *p, uint64_t own_scl)
{
    return p->scl_known && p->scl <= own_scl &&
           p->scl_age_ms < HX_GOSSIP_SKIP_SAME_SCL_MS;
}

int hx_gossip_pick_peer(const hx_gossip_peer *members, size_t n,
                        uint64_t own_scl, unsigned *rr)
{
    if (n == 0)
        return -1;
    for (int rule = 1; rule <= 2; rule++) {
        for (size_t k = 0; k < n; k++) {
            size_t i = (*rr + k) % n;
            const hx_gossip_peer *p = &members[i];
            if (!p->usable)
                continue;
            if (rule == 1 ? ahead(p, own_scl) : !known_empty(p, own_scl)) {
                *rr = (unsigned)((i + 1) % n);
                return (int)i;
            }
        }
    }
    return -1;
}

bool hx_gossip_range_covered(const hx_lsn_range *own, size_t n_own,
                             const hx_lsn_range *r)
{
    for (size_t i = 0; i < n_own; i++)
        if (own[i].from_lsn <= r->from_lsn && own[i].to_lsn >= r->to_lsn &&
            own[i].epoch >= r->epoch)
            return true;
    return false;
}

void hx_gossip_plan_reply(uint64_t own_epoch, const hx_lsn_range *own,
                          size_t n_own, uint64_t peer_epoch,
                          const hx_lsn_range *peer, size_t n_peer,
                          hx_gossip_reply_plan *out)
{
    memset(out, 0, sizeof *out);
    out->adopt_epoch = peer_epoch > own_epoch ? peer_epoch : 0;
    for (size_t i = 0; i < n_peer; i++) {
        const hx_lsn_range *r = &peer[i];
        if (r->from_lsn == 0 || r->from_lsn > r->to_lsn)
            continue;
        if (hx_gossip_range_covered(own, n_own, r))
            continue;
        /* Insertion keeps them ascending whatever order the peer sent;
         * when full, the highest gives way. */
        size_t j = out->n_truncations;
        if (j == HX_GOSSIP_TRUNCATIONS_MAX) {
            if (out->truncations[j - 1].from_lsn <= r->from_lsn)
                continue;
            j--;
        } else {
            out->n_truncations++;
        }
        while (j > 0 && out->truncations[j - 1].from_lsn > r->from_lsn) {
            out->truncations[j] = out->truncations[j - 1];
            j--;
        }
        out->truncations[j] = *r;
    }
    out->stage_records = out->n_truncations == 0;
}
