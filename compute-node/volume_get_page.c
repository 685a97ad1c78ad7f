/* One GetPage to one storage node: the request every page read sends
 * (the volume's read path, the read-only snapshot, hexadctl page). */
#include "volume_internal.h"

#include <stdio.h>
#include <string.h>

#include "hx_err.h"

int vc_get_page(hx_volume *v, int node, uint64_t page_no, uint64_t read_lsn,
                uint64_t epoch, int64_t deadline_ms, uint8_t *buf,
                vc_page_error *err)
{
    Hexad__GetPage g = HEXAD__GET_PAGE__INIT;
    g.volume = v->cluster.volume;
    g.pg = (uint32_t)(page_no / v->cluster.pg_pages);
    g.page_no = page_no;
    g.read_lsn = read_lsn;
    g.volume_epoch = epoch;
    Hexad__Envelope env = HEXAD__ENVELOPE__INIT;
    env.body_case = HEXAD__ENVELOPE__BODY_GET_PAGE;
    env.get_page = &g;
    if (err != NULL)
        *err = (vc_page_error){0};
    vc_call *c = vc_call_start(v, node, &env);
    if (c == NULL)
        return HX_ERR_NOMEM;
    Hexad__Envelope *reply = NULL;
    int rc = vc_call_finish(v, c, deadline_ms, &reply);
    if (rc != HX_OK)
        return rc;
    if (reply->body_case == HEXAD__ENVELOPE__BODY_PAGE &&
        reply->page->data.len == v->cluster.page_size) {
        memcpy(buf, reply->page->data.data, v->cluster.page_size);
    } else if (reply->body_case == HEXAD__ENVELOPE__BODY_ERROR) {
        rc = reply->error->code < 0 ? reply->error->code : HX_ERR_PROTOCOL;
        if (err != NULL) {
            err->current_epoch = reply->error->current_epoch;
            snprintf(err->message, sizeof err->message, "%s",
                     reply->error->message ? reply->error->message : "");
        }
    } else {
        rc = HX_ERR_PROTOCOL;
    }
    hexad__envelope__free_unpacked(reply, NULL);
    return rc;
}

int hx_volume_read_page_on(hx_volume *v, const char *node_id,
                           uint64_t page_no, uint64_t read_lsn,
                           int timeout_ms, uint8_t *buf, char *msg,
                           size_t msg_len)
{
    int node = hx_cluster_storage_index(&v->cluster, node_id);
    if (node < 0) {
        snprintf(msg, msg_len, "no storage node %s in the cluster file",
                 node_id);
        return HX_ERR_INVALID;
    }
    vc_page_error err;
    int rc = vc_get_page(v, node, page_no, read_lsn, 0,
                         vc_now_ms() + timeout_ms, buf, &err);
    snprintf(msg, msg_len, "%s", rc == HX_OK ? "" :
             err.message[0] ? err.message : hx_strerror(rc));
    return rc;
}
