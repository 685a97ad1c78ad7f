/* Logging to stderr: one line per event, with time, component and level.
 * Thread-safe (one fprintf per line). */
#ifndef HX_LOG_H
#define HX_LOG_H

typedef enum {
    HX_LOG_DEBUG = 0,
    HX_LOG_INFO = 1,
    HX_LOG_WARN = 2,
    HX_LOG_ERROR = 3,
} hx_log_level;

/* component is copied; call once at start-up. Level from HEXAD_LOG
 * (debug|info|warn|error) when set, else min. */
void hx_log_init(const char *component, hx_log_level min);

void hx_log(hx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define HX_DEBUG(...) hx_log(HX_LOG_DEBUG, __VA_ARGS__)
#define HX_INFO(...) hx_log(HX_LOG_INFO, __VA_ARGS__)
#define HX_WARN(...) hx_log(HX_LOG_WARN, __VA_ARGS__)
#define HX_ERROR(...) hx_log(HX_LOG_ERROR, __VA_ARGS__)

#endif
