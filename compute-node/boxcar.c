/* The boxcar's decision; see boxcar.h. */
#include "boxcar.h"

hx_boxcar_action hx_boxcar_commit(hx_boxcar *b, bool more_coming,
                                  unsigned cap)
{
    if (!more_coming || b->held + 1 >= cap) {
        b->held = 0;
        return HX_BOXCAR_SHIP;
    }
    return b->held++ == 0 ? HX_BOXCAR_HOLD_ARM : HX_BOXCAR_HOLD;
}

void hx_boxcar_timeout(hx_boxcar *b)
{
    b->held = 0;
}

bool hx_boxcar_holding(const hx_boxcar *b)
{
    return b->held > 0;
}
