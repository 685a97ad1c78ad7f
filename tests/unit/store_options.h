/* The segment store options of unit tests: a small journal (2 MiB), so that
 * each new store writes little and checkpoints (segment_checkpoint.c) run
 * often enough to be exercised; a small record cache (256 KiB), so that
 * coalescing reads both from it and, once it evicts, from RocksDB. */
#ifndef HX_TEST_STORE_OPTIONS_H
#define HX_TEST_STORE_OPTIONS_H

#include "segment_store.h"

static const segment_store_options hx_test_store_options = {
    .journal_bytes = 2u << 20,
    .record_cache_bytes = 256u << 10,
};

#endif
