/* Writing the Prometheus text exposition format (version 0.0.4) into an
 * evbuffer: a family's HELP and TYPE lines, then its samples
 * `name{labels} value`. Pure: no I/O, no clock.
 *
 * A writer remembers its first failure (out of memory), so a renderer
 * emits every line unchecked and asks hx_prom_result() once at the end.
 *
 * Labels are passed preformatted (`node="w1",pg="0"`, or "" for none);
 * values that come from outside (node ids from the cluster file) go
 * through hx_prom_label_escape() first.
 */
#ifndef HX_PROM_TEXT_H
#define HX_PROM_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

typedef struct {
    struct evbuffer *out;
    bool failed;
} hx_prom;

/* "# HELP name help" and "# TYPE name type" (type: counter or gauge). */
void hx_prom_family(hx_prom *p, const char *name, const char *type,
                    const char *help);

/* One sample of an integer value; labels NULL or "": none. */
void hx_prom_u64(hx_prom *p, const char *name, const char *labels,
                 uint64_t v);

/* One sample of a duration given in nanoseconds, written in seconds with
 * nine decimals (exact: no floating point). */
void hx_prom_seconds_ns(hx_prom *p, const char *name, const char *labels,
                        uint64_t ns);

/* HX_OK, or HX_ERR_NOMEM when any line could not be appended. */
int hx_prom_result(const hx_prom *p);

/* in with \, " and newline escaped as a label value needs, into out
 * (len bytes, NUL-terminated; a value that does not fit is cut). */
void hx_prom_label_escape(const char *in, char *out, size_t len);

#endif
