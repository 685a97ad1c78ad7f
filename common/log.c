#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char log_component[32] = "hexad";
static hx_log_level log_min = HX_LOG_INFO;

void hx_log_init(const char *component, hx_log_level min)
{
    snprintf(log_component, sizeof log_component, "%s", component);
    log_min = min;
    const char *env = getenv("HEXAD_LOG");
    if (env == NULL)
        return;
    if (strcmp(env, "debug") == 0)
        log_min = HX_LOG_DEBUG;
    else if (strcmp(env, "info") == 0)
        log_min = HX_LOG_INFO;
    else if (strcmp(env, "warn") == 0)
        log_min = HX_LOG_WARN;
    else if (strcmp(env, "error") == 0)
        log_min = HX_LOG_ERROR;
}

void hx_log(hx_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_min)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: %s\n",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
            tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_component,
            names[level], msg);
}
