/* The Prometheus text format (see prom_text.h). */
#include "prom_text.h"

#include <inttypes.h>
#include <stddef.h>

#include "hx_err.h"

void hx_prom_family(hx_prom *p, const char *name, const char *type,
                    const char *help)
{
    p->failed |= evbuffer_add_printf(p->out, "# HELP %s %s\n# TYPE %s %s\n",
                                     name, help, name, type) < 0;
}

/* "name{labels} ", or "name " without labels. */
static void sample_start(hx_prom *p, const char *name, const char *labels)
{
    if (labels == NULL || labels[0] == '\0')
        p->failed |= evbuffer_add_printf(p->out, "%s ", name) < 0;
    else
        p->failed |= evbuffer_add_printf(p->out, "%s{%s} ", name, labels) < 0;
}

void hx_prom_u64(hx_prom *p, const char *name, const char *labels,
                 uint64_t v)
{
    sample_start(p, name, labels);
    p->failed |= evbuffer_add_printf(p->out, "%" PRIu64 "\n", v) < 0;
}

void hx_prom_seconds_ns(hx_prom *p, const char *name, const char *labels,
                        uint64_t ns)
{
    sample_start(p, name, labels);
    p->failed |= evbuffer_add_printf(p->out, "%" PRIu64 ".%09" PRIu64 "\n",
                                     ns / 1000000000u, ns % 1000000000u) < 0;
}

int hx_prom_result(const hx_prom *p)
{
    return p->failed ? HX_ERR_NOMEM : HX_OK;
}

void hx_prom_label_escape(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (; in && *in && o + 3 < len; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}
