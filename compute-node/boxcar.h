/* The boxcar's decision (volume_client.c design note 3), without I/O.
 *
 * A commit marked HX_MTR_MORE_COMING (another session waits to commit) is
 * held so that it ships with the next one; an unmarked commit ships at
 * once, taking every held one with it, and so does the cap-th marked one
 * in a row. The caller arms a timer when told HX_BOXCAR_HOLD_ARM (the
 * first commit held) and calls hx_boxcar_timeout when it fires: held
 * commits never wait longer than that timer.
 *
 * Invariant: holding() is true exactly while held > 0; held < cap.
 */
#ifndef HX_BOXCAR_H
#define HX_BOXCAR_H

#include <stdbool.h>

typedef struct {
    unsigned held;  /* commits held now */
} hx_boxcar;

typedef enum {
    HX_BOXCAR_SHIP,      /* ship now, with everything held */
    HX_BOXCAR_HOLD,      /* hold; a timer is already running */
    HX_BOXCAR_HOLD_ARM,  /* hold, the first one: start the timer */
} hx_boxcar_action;

/* One commit. cap >= 1: at most cap commits ship together this way. */
hx_boxcar_action hx_boxcar_commit(hx_boxcar *b, bool more_coming,
                                  unsigned cap);

/* The timer fired: what is held ships. */
void hx_boxcar_timeout(hx_boxcar *b);

/* New records wait while this is true. */
bool hx_boxcar_holding(const hx_boxcar *b);

#endif
