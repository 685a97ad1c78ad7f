/* Requests that wait for a reply (GetPage, SegmentInfo, SealEpoch,
 * NodeStatus): a list of calls under the volume's mutex.
 *
 * A call is created packed by the API thread, sent by the loop thread when
 * its node is connected, and completed by the reply with its req_id, by the
 * node's connection dropping (HX_ERR_IO) or by the waiter's deadline. The
 * reply is kept packed because the connection frees the unpacked envelope
 * as soon as its callback returns.
 */
#include <stdlib.h>
#include <string.h>

#include "hx_err.h"
#include "volume_internal.h"

vc_call *vc_call_start(hx_volume *v, int node, const Hexad__Envelope *env)
{
    vc_call *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    Hexad__Envelope copy = *env;
    pthread_mutex_lock(&v->mu);
    c->req_id = copy.req_id = ++v->next_req_id;
    pthread_mutex_unlock(&v->mu);
    c->node = node;
    c->out_len = hexad__envelope__get_packed_size(&copy);
    c->out = malloc(c->out_len ? c->out_len : 1);
    if (c->out == NULL) {
        free(c);
        return NULL;
    }
    hexad__envelope__pack(&copy, c->out);
    pthread_mutex_lock(&v->mu);
    if (!v->nodes[node].connected) {
        c->done = true;
        c->rc = HX_ERR_IO;
    }
    c->next = v->calls;
    v->calls = c;
    pthread_mutex_unlock(&v->mu);
    vc_kick(v);
    return c;
}

static void call_unlink(hx_volume *v, vc_call *c)
{
    for (vc_call **pp = &v->calls; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            return;
        }
    }
}

int vc_call_finish(hx_volume *v, vc_call *c, int64_t deadline_ms,
                   Hexad__Envelope **reply)
{
    pthread_mutex_lock(&v->mu);
    while (!c->done && !v->stopping &&
           vc_cv_wait_until(v, deadline_ms) == 0)
        ;
    call_unlink(v, c);
    pthread_mutex_unlock(&v->mu);
    int rc = c->done ? c->rc : HX_ERR_TIMEOUT;
    if (rc == HX_OK) {
        *reply = hexad__envelope__unpack(NULL, c->reply_len, c->reply);
        if (*reply == NULL)
            rc = HX_ERR_PROTOCOL;
    }
    free(c->out);
    free(c->reply);
    free(c);
    return rc;
}

bool vc_calls_on_reply(hx_volume *v, const Hexad__Envelope *env)
{
    for (vc_call *c = v->calls; c != NULL; c = c->next) {
        if (c->req_id != env->req_id || c->done)
            continue;
        c->reply_len = hexad__envelope__get_packed_size(env);
        c->reply = malloc(c->reply_len ? c->reply_len : 1);
        if (c->reply == NULL) {
            c->rc = HX_ERR_NOMEM;
        } else {
            hexad__envelope__pack(env, c->reply);
            c->rc = HX_OK;
        }
        c->done = true;
        vc_broadcast(v);
        return true;
    }
    return false;
}

void vc_calls_on_close(hx_volume *v, int node)
{
    for (vc_call *c = v->calls; c != NULL; c = c->next) {
        if (c->node == node && !c->done) {
            c->done = true;
            c->rc = HX_ERR_IO;
        }
    }
}

void vc_calls_pump(hx_volume *v)
{
    for (vc_call *c = v->calls; c != NULL; c = c->next) {
        if (c->sent || c->done)
            continue;
        vc_node *n = &v->nodes[c->node];
        if (n->conn == NULL || !n->connected) {
            c->done = true;
            c->rc = HX_ERR_IO;
            vc_broadcast(v);
            continue;
        }
        int rc = hx_conn_send_packed(n->conn, c->out, c->out_len);
        c->sent = true;
        if (rc != HX_OK) {
            c->done = true;
            c->rc = rc;
            vc_broadcast(v);
        }
    }
}
