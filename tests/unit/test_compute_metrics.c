/* Unit tests for compute-node/compute_metrics.c compute_metrics_render():
 * the Prometheus text format of the compute node's state (README.md
 * "Metrics", the compute node's table). */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "compute_metrics.h"
#include "hx_err.h"
#include "metrics_text.h"

/* The rendered text, NUL-terminated (the caller frees it). */
static char *render(const compute_metrics *m)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    assert_int_equal(compute_metrics_render(m, b), HX_OK);
    char *text = hx_test_evbuffer_text(b);
    assert_non_null(text);
    return text;
}

#define LINE(t, l)                                                          \
    do {                                                                    \
        if (!hx_test_has_line((t), (l)))                                            \
            fail_msg("no line \"%s\" in:\n%s", (l), (t));                   \
    } while (0)

/* Every family: a HELP line, a TYPE line, and its samples. */
static void family(const char *t, const char *name, const char *type)
{
    char want[160];
    snprintf(want, sizeof want, "# TYPE %s %s", name, type);
    LINE(t, want);
    snprintf(want, sizeof want, "# HELP %s ", name);
    assert_non_null(strstr(t, want));
}

static compute_metrics sample(void)
{
    compute_metrics m = {.node = "w1", .uptime_ms = 61234};
    m.has_vfs = true;
    m.vfs.mtrs = 1500;
    m.vfs.mtrs_more_coming = 400;
    m.vfs.records = 6000;
    m.vfs.image_records = 12;
    m.vfs.patch_bytes = 987654;
    m.vfs.discards = 3;
    m.vfs.cache_hits = 70000;
    m.vfs.cache_misses = 250;
    m.vfs.evictions = 9;
    m.vfs.cache_pages = 4096;
    m.vfs.writer_waiters = 2;
    m.vfs.last_commit_lsn = 123456;
    m.vfs.failed = HX_ERR_IO;
    m.vfs.writer_acquisitions = 1501;
    m.vfs.writer_held_ns = UINT64_C(2500000001);  /* 2.5 s and 1 ns */
    m.vfs.writer_handoff_ns = 42000;              /* 42 us */
    m.vfs.writer_wait_ns = UINT64_C(7000000000);  /* 7 s */
    return m;
}

/* The VFS part: commits, records, bytes, boxcarred, images, failed,
 * last commit LSN; the writer lock's count and times in seconds. */
static void test_vfs_lines(void **state)
{
    (void)state;
    compute_metrics m = sample();
    char *t = render(&m);
    family(t, "hexad_compute_uptime_seconds", "gauge");
    LINE(t, "hexad_compute_uptime_seconds{node=\"w1\"} 61.234000000");
    family(t, "hexad_compute_commits_total", "counter");
    LINE(t, "hexad_compute_commits_total{node=\"w1\"} 1500");
    LINE(t, "hexad_compute_commits_boxcarred_total{node=\"w1\"} 400");
    LINE(t, "hexad_compute_redo_records_total{node=\"w1\"} 6000");
    LINE(t, "hexad_compute_image_records_total{node=\"w1\"} 12");
    LINE(t, "hexad_compute_redo_payload_bytes_total{node=\"w1\"} 987654");
    LINE(t, "hexad_compute_discarded_transactions_total{node=\"w1\"} 3");
    LINE(t, "hexad_compute_cache_hits_total{node=\"w1\"} 70000");
    LINE(t, "hexad_compute_cache_misses_total{node=\"w1\"} 250");
    LINE(t, "hexad_compute_cache_evictions_total{node=\"w1\"} 9");
    family(t, "hexad_compute_cache_pages", "gauge");
    LINE(t, "hexad_compute_cache_pages{node=\"w1\"} 4096");
    family(t, "hexad_compute_last_commit_lsn", "gauge");
    LINE(t, "hexad_compute_last_commit_lsn{node=\"w1\"} 123456");
    family(t, "hexad_compute_failed", "gauge");
    LINE(t, "hexad_compute_failed{node=\"w1\"} 1"); /* an error code: 1 */

    family(t, "hexad_compute_writer_lock_acquisitions_total", "counter");
    LINE(t, "hexad_compute_writer_lock_acquisitions_total{node=\"w1\"} 1501");
    family(t, "hexad_compute_writer_lock_held_seconds_total", "counter");
    LINE(t, "hexad_compute_writer_lock_held_seconds_total{node=\"w1\"} "
            "2.500000001");
    family(t, "hexad_compute_writer_lock_handoff_seconds_total", "counter");
    LINE(t, "hexad_compute_writer_lock_handoff_seconds_total{node=\"w1\"} "
            "0.000042000");
    family(t, "hexad_compute_writer_lock_wait_seconds_total", "counter");
    LINE(t, "hexad_compute_writer_lock_wait_seconds_total{node=\"w1\"} "
            "7.000000000");
    family(t, "hexad_compute_writer_lock_waiters", "gauge");
    LINE(t, "hexad_compute_writer_lock_waiters{node=\"w1\"} 2");
    /* Nothing of the parts that are absent. */
    assert_null(strstr(t, "hexad_compute_vdl"));
    assert_null(strstr(t, "hexad_compute_statements_total"));
    free(t);

    m.vfs.failed = 0;
    t = render(&m);
    LINE(t, "hexad_compute_failed{node=\"w1\"} 0");
    free(t);
}

/* The volume part: VDL, epoch, per storage node and per PG and member. */
static void test_volume_lines(void **state)
{
    (void)state;
    compute_metrics m = {.node = "w1", .has_volume = true};
    m.vol.epoch = 7;
    m.vol.vdl = 5000;
    m.vol.vcl = 5003;
    m.vol.last_allocated = 5010;
    m.vol.outstanding = 10;
    m.vol.n_nodes = 2;
    strcpy(m.vol.nodes[0].id, "s1");
    m.vol.nodes[0].connected = true;
    m.vol.nodes[0].appends_sent = 300;
    m.vol.nodes[0].records_sent = 1200;
    m.vol.nodes[0].bytes_sent = 456789;
    m.vol.nodes[0].acks = 299;
    m.vol.nodes[0].ack_ns = 1234567890;
    strcpy(m.vol.nodes[1].id, "s2");
    hx_pg_metrics pgs[1] = {{.pg = 3, .pgcl = 4999, .tail = 5010,
                             .unacked_records = 11, .unacked_bytes = 2048}};
    const char *ids[HX_PG_MEMBERS] = {"s1", "s2", "s4", "s5", "s7", "s8"};
    for (int k = 0; k < HX_PG_MEMBERS; k++) {
        strcpy(pgs[0].members[k].node, ids[k]);
        pgs[0].members[k].scl = 4990 + (uint64_t)k;
        pgs[0].members[k].inflight = k % 3;
    }
    m.vol.n_pgs = 1;
    m.vol.pgs = pgs;
    char *t = render(&m);
    family(t, "hexad_compute_vdl", "gauge");
    LINE(t, "hexad_compute_vdl{node=\"w1\"} 5000");
    LINE(t, "hexad_compute_vcl{node=\"w1\"} 5003");
    family(t, "hexad_compute_volume_epoch", "gauge");
    LINE(t, "hexad_compute_volume_epoch{node=\"w1\"} 7");
    LINE(t, "hexad_compute_last_allocated_lsn{node=\"w1\"} 5010");
    LINE(t, "hexad_compute_records_not_durable{node=\"w1\"} 10");
    LINE(t, "hexad_compute_fenced{node=\"w1\"} 0");
    family(t, "hexad_compute_storage_connected", "gauge");
    LINE(t, "hexad_compute_storage_connected{node=\"w1\",storage=\"s1\"} 1");
    LINE(t, "hexad_compute_storage_connected{node=\"w1\",storage=\"s2\"} 0");
    family(t, "hexad_compute_appends_sent_total", "counter");
    LINE(t, "hexad_compute_appends_sent_total{node=\"w1\",storage=\"s1\"} 300");
    LINE(t, "hexad_compute_append_records_sent_total{node=\"w1\","
            "storage=\"s1\"} 1200");
    LINE(t, "hexad_compute_append_bytes_sent_total{node=\"w1\","
            "storage=\"s1\"} 456789");
    LINE(t, "hexad_compute_append_bytes_sent_total{node=\"w1\","
            "storage=\"s2\"} 0");
    family(t, "hexad_compute_append_acks_total", "counter");
    LINE(t, "hexad_compute_append_acks_total{node=\"w1\",storage=\"s1\"} 299");
    family(t, "hexad_compute_append_ack_seconds_total", "counter");
    LINE(t, "hexad_compute_append_ack_seconds_total{node=\"w1\","
            "storage=\"s1\"} 1.234567890");
    LINE(t, "hexad_compute_append_ack_seconds_total{node=\"w1\","
            "storage=\"s2\"} 0.000000000");
    family(t, "hexad_compute_pg_pgcl", "gauge");
    LINE(t, "hexad_compute_pg_pgcl{node=\"w1\",pg=\"3\"} 4999");
    LINE(t, "hexad_compute_pg_tail_lsn{node=\"w1\",pg=\"3\"} 5010");
    LINE(t, "hexad_compute_pg_unacked_records{node=\"w1\",pg=\"3\"} 11");
    LINE(t, "hexad_compute_pg_unacked_bytes{node=\"w1\",pg=\"3\"} 2048");
    family(t, "hexad_compute_member_scl", "gauge");
    LINE(t, "hexad_compute_member_scl{node=\"w1\",pg=\"3\",storage=\"s1\"} 4990");
    LINE(t, "hexad_compute_member_scl{node=\"w1\",pg=\"3\",storage=\"s8\"} 4995");
    LINE(t, "hexad_compute_member_inflight_appends{node=\"w1\",pg=\"3\","
            "storage=\"s5\"} 0");
    LINE(t, "hexad_compute_member_inflight_appends{node=\"w1\",pg=\"3\","
            "storage=\"s4\"} 2");
    free(t);

    m.vol.n_pgs = 0; /* no PG yet: no per-PG family at all */
    t = render(&m);
    assert_null(strstr(t, "hexad_compute_pg_"));
    assert_null(strstr(t, "hexad_compute_member_"));
    free(t);
}

/* The sessions part: connections, statements, durability waits by kind. */
static void test_session_lines(void **state)
{
    (void)state;
    compute_metrics m = {.node = "w1", .has_sessions = true};
    m.sessions.sessions = 8;
    m.sessions.sessions_served = 20;
    m.sessions.sessions_refused = 1;
    m.sessions.statements = 7000;
    m.sessions.commit = (pg_reply_waits){1000, UINT64_C(1500000000), 2};
    m.sessions.read = (pg_reply_waits){50, 1000, 0};
    char *t = render(&m);
    family(t, "hexad_compute_sessions", "gauge");
    LINE(t, "hexad_compute_sessions{node=\"w1\"} 8");
    LINE(t, "hexad_compute_sessions_served_total{node=\"w1\"} 20");
    LINE(t, "hexad_compute_sessions_refused_total{node=\"w1\"} 1");
    family(t, "hexad_compute_statements_total", "counter");
    LINE(t, "hexad_compute_statements_total{node=\"w1\"} 7000");
    family(t, "hexad_compute_reply_waits_total", "counter");
    LINE(t, "hexad_compute_reply_waits_total{node=\"w1\",kind=\"commit\"} 1000");
    LINE(t, "hexad_compute_reply_waits_total{node=\"w1\",kind=\"read\"} 50");
    family(t, "hexad_compute_reply_wait_seconds_total", "counter");
    LINE(t, "hexad_compute_reply_wait_seconds_total{node=\"w1\","
            "kind=\"commit\"} 1.500000000");
    LINE(t, "hexad_compute_reply_wait_seconds_total{node=\"w1\","
            "kind=\"read\"} 0.000001000");
    LINE(t, "hexad_compute_reply_wait_failures_total{node=\"w1\","
            "kind=\"commit\"} 2");
    free(t);
}

/* A node id is a label value: \ and " are escaped (exposition format). */
static void test_label_escaped(void **state)
{
    (void)state;
    compute_metrics m = sample();
    m.node = "w\"1\\";
    char *t = render(&m);
    LINE(t, "hexad_compute_commits_total{node=\"w\\\"1\\\\\"} 1500");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vfs_lines),
        cmocka_unit_test(test_volume_lines),
        cmocka_unit_test(test_session_lines),
        cmocka_unit_test(test_label_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
