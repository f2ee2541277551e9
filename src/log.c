#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_min_level = LOG_INFO;
enum log_format log_format = LOG_FORMAT_TEXT;

static const char *const id_keys[] = {"rid", "call", "conversation", "job"};

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

/* Appends text to out as the inside of a JSON string. */
static size_t
json_escape(char *out, size_t cap, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    for (size_t i = 0; i < len && n + 7 < cap; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c >= 0x7f) {
            /* Bytes from the network need not be UTF-8; JSON must be. */
            out[n++] = '?';
        } else if (c < 0x20) {
            memcpy(out + n, "\\u00", 4);
            out[n + 4] = hex[c >> 4];
            out[n + 5] = hex[c & 15];
            n += 6;
        } else {
            out[n++] = (char)c;
        }
    }
    return n;
}

/* Adds "key":"value" for every known id=value token of the message. */
static size_t
json_ids(char *out, size_t cap, const char *msg)
{
    size_t n = 0;

    for (size_t k = 0; k < sizeof(id_keys) / sizeof(id_keys[0]); k++) {
        size_t klen = strlen(id_keys[k]);
        const char *p = msg;

        while ((p = strstr(p, id_keys[k])) != NULL) {
            int starts = p == msg || p[-1] == ' ' || p[-1] == '(';

            if (starts && p[klen] == '=') {
                const char *v = p + klen + 1;
                size_t vlen = strcspn(v, " ,;:)");

                if (n + klen + vlen + 16 < cap) {
                    n += (size_t)snprintf(out + n, cap - n, ",\"%s\":\"",
                                          id_keys[k]);
                    n += json_escape(out + n, cap - n, v, vlen);
                    out[n++] = '"';
                }
                break;
            }
            p += klen;
        }
    }
    return n;
}

void
log_write(enum log_level level, const char *fmt, ...)
{
    char msg[1800], line[4096], stamp[40];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    size_t n;
    int len;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);

    va_start(ap, fmt);
    len = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (len < 0)
        msg[0] = '\0';
    else if ((size_t)len >= sizeof(msg))
        /* Long lines are cut, never split, so one event stays one line. */
        memcpy(msg + sizeof(msg) - 4, "...", 4);

    if (log_format == LOG_FORMAT_JSON) {
        n = (size_t)snprintf(line, sizeof(line),
                             "{\"time\":\"%s\",\"level\":\"%s\","
                             "\"msg\":\"",
                             stamp, level_names[level]);
        n += json_escape(line + n, sizeof(line) - n - 600, msg, strlen(msg));
        line[n++] = '"';
        n += json_ids(line + n, sizeof(line) - n - 4, msg);
        line[n++] = '}';
    } else {
        n = (size_t)snprintf(line, sizeof(line), "%s %-5s %s", stamp,
                             level_names[level], msg);
        if (n >= sizeof(line) - 1)
            n = sizeof(line) - 2;
        /* Control bytes from the network must not forge extra lines. */
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)line[i] < 0x20 ||
                (unsigned char)line[i] >= 0x7f)
                line[i] = '?';
        }
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
