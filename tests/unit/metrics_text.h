/* Checks on rendered Prometheus text, shared by the metrics tests. */
#ifndef HX_TEST_METRICS_TEXT_H
#define HX_TEST_METRICS_TEXT_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

/* b's contents as a NUL-terminated string (the caller frees it); frees b.
 * NULL when memory ran out. */
static inline char *hx_test_evbuffer_text(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *text = malloc(n + 1);
    if (text != NULL) {
        evbuffer_remove(b, text, n);
        text[n] = '\0';
    }
    evbuffer_free(b);
    return text;
}

/* Whether text holds line as a whole line. */
static inline bool hx_test_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#endif
