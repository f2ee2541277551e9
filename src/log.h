/*
 * One logger for the whole process: levelled lines on stderr, with the time
 * in RFC 3339 (milliseconds, UTC). The level is checked before any
 * formatting, so a debug line costs one comparison when debug is off.
 */
#ifndef CALLHOOK_LOG_H
#define CALLHOOK_LOG_H

#include <stdarg.h>
#include <stdint.h>

enum log_level {
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
};

extern enum log_level log_min_level;

enum log_format {
    LOG_FORMAT_TEXT, /* time level message */
    LOG_FORMAT_JSON, /* one JSON object a line, for log collectors */
};

extern enum log_format log_format;

/*
 * In JSON lines, tokens of the message written as id=value, for the ids
 * below, also become fields of their own: rid (request id), call,
 * conversation, job. Messages write ids that way in both formats.
 */

/* Parse "debug", "info", "warn" or "error"; returns -1 for anything else. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

void log_write(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_at(level, ...)                                                    \
    do {                                                                      \
        if ((level) >= log_min_level)                                         \
            log_write((level), __VA_ARGS__);                                  \
    } while (0)

#define log_debug(...) log_at(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_at(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_at(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOG_ERROR, __VA_ARGS__)

/*
 * Rate limit for one call site that can fire once per request. The first
 * occurrence in a window is logged; later ones are only counted, and the
 * count is reported with the next line that gets through.
 */
struct log_ratelimit {
    uint64_t window_start_ms;
    uint64_t suppressed;
    unsigned interval_ms;
};

#define LOG_RATELIMIT_INIT(interval_ms) {0, 0, (interval_ms)}

/*
 * Returns nonzero when the caller may log now, and stores in *suppressed
 * how many occurrences were skipped since the last logged one.
 */
int log_ratelimit_pass(struct log_ratelimit *rl, uint64_t *suppressed);

/* Masks a phone number to its last four digits, as "****0100". */
const char *log_mask_number(const char *number, char *buf, unsigned buflen);

uint64_t clock_now_ms(void);
uint64_t clock_monotonic_ms(void);
uint64_t clock_monotonic_us(void);

#endif
