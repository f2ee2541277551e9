#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int
log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0]));
         i++) {
        if (strcmp(name, level_names[i]) == 0)
            return i;
    }
    if (strcmp(name, "warning") == 0)
        return LOG_WARN;
    return -1;
}

const char *
log_level_name(enum log_level level)
{
    return level_names[level];
}

uint64_t
clock_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
clock_monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
clock_monotonic_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
log_write(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t n;
    int len;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    len = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
                   ts.tv_nsec / 1000000, level_names[level]);
    n += (size_t)len;

    va_start(ap, fmt);
    len = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (len < 0)
        len = 0;
    n += (size_t)len;
    if (n >= sizeof(line) - 1) {
        /* Long lines are cut, never split, so one event stays one line. */
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    }

    /* Control bytes from the network must not forge extra log lines. */
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)line[i] < 0x20)
            line[i] = '?';
    }
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
}

int
log_ratelimit_pass(struct log_ratelimit *rl, uint64_t *suppressed)
{
    uint64_t now = clock_monotonic_ms();

    if (rl->window_start_ms != 0 &&
        now - rl->window_start_ms < rl->interval_ms) {
        rl->suppressed++;
        return 0;
    }
    rl->window_start_ms = now;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return 1;
}

const char *
log_mask_number(const char *number, char *buf, unsigned buflen)
{
    size_t len = number ? strlen(number) : 0;

    if (buflen < 9) {
        if (buflen > 0)
            buf[0] = '\0';
        return buf;
    }
    if (len <= 4) {
        snprintf(buf, buflen, "****");
        return buf;
    }
    snprintf(buf, buflen, "****%s", number + len - 4);
    return buf;
}
