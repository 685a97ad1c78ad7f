/* Unit tests for storage-node/metrics_http.c metrics_render(): the
 * Prometheus text format of a node's status. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "hx_err.h"
#include "metrics_text.h"
#include "metrics_http.h"

/* The rendered text, NUL-terminated (the caller frees it). */
static char *render(const Hexad__NodeStatus *st)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    assert_int_equal(metrics_render(st, b), HX_OK);
    char *text = hx_test_evbuffer_text(b);
    assert_non_null(text);
    return text;
}

/* Every counter: HELP, TYPE counter, one sample labelled with the node. */
static void test_counters(void **state)
{
    (void)state;
    Hexad__NodeStatus st = HEXAD__NODE_STATUS__INIT;
    st.node = "s1";
    st.records_received = 12345;
    st.gc_bytes_removed = 7;
    st.gc_compactions = 2;
    st.checkpoints = 5;
    st.journal_used_bytes = 1048576;
    st.journal_bytes = 67108864;
    st.repairs = 2;
    st.wire_bytes_received = 400;
    st.frame_bytes_received = 900;
    st.gossip_truncations = 3;
    st.segments_unverified = 6;
    st.uptime_ms = 61234;
    st.volume_epoch = 4;
    st.records_sst_bytes = 123456;
    st.other_l0_files = 3;
    char *t = render(&st);
    assert_true(hx_test_has_line(t, "# TYPE hexad_records_received_total counter"));
    assert_true(hx_test_has_line(t, "hexad_records_received_total{node=\"s1\"} 12345"));
    assert_true(hx_test_has_line(t, "hexad_gc_bytes_removed_total{node=\"s1\"} 7"));
    assert_true(hx_test_has_line(t, "hexad_gc_compactions_total{node=\"s1\"} 2"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_checkpoints_total counter"));
    assert_true(hx_test_has_line(t, "hexad_checkpoints_total{node=\"s1\"} 5"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_journal_used_bytes gauge"));
    assert_true(hx_test_has_line(t, "hexad_journal_used_bytes{node=\"s1\"} 1048576"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_journal_bytes gauge"));
    assert_true(hx_test_has_line(t, "hexad_journal_bytes{node=\"s1\"} 67108864"));
    assert_true(hx_test_has_line(t, "hexad_repairs_total{node=\"s1\"} 2"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_wire_bytes_received_total counter"));
    assert_true(hx_test_has_line(t, "hexad_wire_bytes_received_total{node=\"s1\"} 400"));
    assert_true(hx_test_has_line(t, "hexad_frame_bytes_received_total{node=\"s1\"} 900"));
    assert_true(hx_test_has_line(t, "hexad_gossip_truncations_total{node=\"s1\"} 3"));
    assert_true(hx_test_has_line(t, "hexad_checksum_failures_total{node=\"s1\"} 0"));
    assert_true(hx_test_has_line(t, "hexad_uptime_seconds{node=\"s1\"} 61.234"));
    assert_true(hx_test_has_line(t, "hexad_volume_epoch{node=\"s1\"} 4"));
    assert_true(hx_test_has_line(t, "hexad_segments{node=\"s1\"} 0"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_segments_unverified gauge"));
    assert_true(hx_test_has_line(t, "hexad_segments_unverified{node=\"s1\"} 6"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_store_records_sst_bytes gauge"));
    assert_true(hx_test_has_line(t, "hexad_store_records_sst_bytes{node=\"s1\"} 123456"));
    assert_true(hx_test_has_line(t, "hexad_store_other_l0_files{node=\"s1\"} 3"));
    assert_null(strstr(t, "hexad_segment_scl")); /* no segment, no family */
    /* Every line is a comment or "name{labels} value". */
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n"))
        assert_true(line[0] == '#' || strstr(line, "} ") != NULL);
    free(t);
}

/* Per-segment gauges; a label value with a quote or backslash escaped. */
static void test_segments_and_escaping(void **state)
{
    (void)state;
    Hexad__SegmentStatus a = HEXAD__SEGMENT_STATUS__INIT;
    Hexad__SegmentStatus b = HEXAD__SEGMENT_STATUS__INIT;
    a.volume = 2;
    a.pg = 0;
    a.scl = 2010100;
    a.records = 10100;
    a.coalesced_lsn = 2000000;
    a.gc_lsn = 1500000;
    a.coalesce_lag = 10100;
    b.volume = 2;
    b.pg = 1;
    b.scl = 5;
    Hexad__SegmentStatus *segs[2] = {&a, &b};
    Hexad__NodeStatus st = HEXAD__NODE_STATUS__INIT;
    st.node = "a\"b\\c";
    st.segments = segs;
    st.n_segments = 2;
    char *t = render(&st);
    assert_true(hx_test_has_line(t, "hexad_segments{node=\"a\\\"b\\\\c\"} 2"));
    assert_true(hx_test_has_line(
        t, "hexad_segment_scl{node=\"a\\\"b\\\\c\",volume=\"2\",pg=\"0\"} 2010100"));
    assert_true(hx_test_has_line(
        t, "hexad_segment_records{node=\"a\\\"b\\\\c\",volume=\"2\",pg=\"0\"} 10100"));
    assert_true(hx_test_has_line(
        t, "hexad_segment_scl{node=\"a\\\"b\\\\c\",volume=\"2\",pg=\"1\"} 5"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_segment_scl gauge"));
    assert_true(hx_test_has_line(
        t, "hexad_segment_coalesced_lsn{node=\"a\\\"b\\\\c\",volume=\"2\",pg=\"0\"} 2000000"));
    assert_true(hx_test_has_line(
        t, "hexad_segment_gc_lsn{node=\"a\\\"b\\\\c\",volume=\"2\",pg=\"0\"} 1500000"));
    assert_true(hx_test_has_line(t, "# TYPE hexad_segment_gc_lsn gauge"));
    assert_true(hx_test_has_line(
        t, "hexad_segment_coalesce_lag{node=\"a\\\"b\\\\c\",volume=\"2\",pg=\"0\"} 10100"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_segments_and_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
