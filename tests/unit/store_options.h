/* The segment store options of unit tests: a small journal (2 MiB), so that
 * each new store writes little and checkpoints (segment_checkpoint.c) run
 * often enough to be exercised. */
#ifndef HX_TEST_STORE_OPTIONS_H
#define HX_TEST_STORE_OPTIONS_H

#include "segment_store.h"

static const segment_store_options hx_test_store_options = {
    .journal_bytes = 2u << 20,
};

#endif
