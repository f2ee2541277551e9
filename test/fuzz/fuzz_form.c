/*
 * Fuzzes form_decode and form_unescape against a plain reference decoder
 * written from the rules in form.h: both must return the same result and
 * pass on the same pairs in the same order.
 */
#include "callhook/form.h"

#include "fuzz_target.h"

#include <string.h>

/* Pairs as a flat byte log: key length, key, value length, value. */
struct pair_log {
    unsigned char *bytes;
    size_t used, cap;
    size_t npairs;
    size_t stop_after; /* 0: never stop the decoder */
};

static void
log_append(struct pair_log *log, const void *bytes, size_t len)
{
    if (log->cap - log->used < len) {
        size_t cap = log->cap * 2 + len + 64;

        log->bytes = realloc(log->bytes, cap);
        FUZZ_ASSERT(log->bytes != NULL);
        log->cap = cap;
    }
    memcpy(log->bytes + log->used, bytes, len);
    log->used += len;
}

static void
log_pair(struct pair_log *log, const char *key, size_t key_len,
         const char *value, size_t value_len)
{
    log_append(log, &key_len, sizeof(key_len));
    log_append(log, key, key_len);
    log_append(log, &value_len, sizeof(value_len));
    log_append(log, value, value_len);
    log->npairs++;
}

static size_t input_size;

static int
record_pair(void *arg, const char *key, size_t key_len, const char *value,
            size_t value_len)
{
    struct pair_log *log = arg;

    FUZZ_ASSERT(key_len >= 1);
    FUZZ_ASSERT(key_len + value_len <= input_size);
    FUZZ_ASSERT(key[key_len] == '\0');
    FUZZ_ASSERT(value[value_len] == '\0');
    log_pair(log, key, key_len, value, value_len);
    return log->stop_after != 0 && log->npairs == log->stop_after;
}

static int
reference_hex(unsigned char c)
{
    static const char digits[] = "0123456789abcdef";
    const char *p;

    if (c >= 'A' && c <= 'F')
        c = (unsigned char)(c - 'A' + 'a');
    p = c != '\0' ? strchr(digits, c) : NULL;
    return p ? (int)(p - digits) : -1;
}

/* Decodes in[start, end) into out; returns the length or -1. */
static long
reference_unescape(const uint8_t *in, size_t start, size_t end, int plus,
                   char *out)
{
    long n = 0;
    size_t i = start;

    while (i < end) {
        if (in[i] == '%') {
            int hi, lo;

            if (end - i <= 2)
                return -1;
            hi = reference_hex(in[i + 1]);
            lo = reference_hex(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[n++] = (char)(hi * 16 + lo);
            i += 3;
        } else {
            out[n++] = plus && in[i] == '+' ? ' ' : (char)in[i];
            i++;
        }
    }
    return n;
}

static enum form_result
reference_decode(const uint8_t *data, size_t size, struct pair_log *log,
                 char *key, char *value)
{
    size_t start = 0;

    while (start < size) {
        size_t end = start, eq;
        long key_len, value_len = 0;

        while (end < size && data[end] != '&')
            end++;
        if (end == start) {
            start = end + 1;
            continue;
        }
        eq = start;
        while (eq < end && data[eq] != '=')
            eq++;
        key_len = reference_unescape(data, start, eq, 1, key);
        if (key_len < 0)
            return FORM_BAD_PERCENT;
        if (key_len == 0)
            return FORM_EMPTY_KEY;
        if (eq < end)
            value_len = reference_unescape(data, eq + 1, end, 1, value);
        if (value_len < 0)
            return FORM_BAD_PERCENT;
        log_pair(log, key, (size_t)key_len, value, (size_t)value_len);
        start = end + 1;
    }
    return FORM_OK;
}

static void
check_unescape(const uint8_t *data, size_t size, int plus, char *expected)
{
    char *out = malloc(size + 1);
    size_t out_len = 0;
    long expected_len = reference_unescape(data, 0, size, plus, expected);
    enum form_result result;

    FUZZ_ASSERT(out != NULL);
    result = form_unescape((const char *)data, size, plus, out, &out_len);
    if (expected_len < 0) {
        FUZZ_ASSERT(result == FORM_BAD_PERCENT);
    } else {
        FUZZ_ASSERT(result == FORM_OK);
        FUZZ_ASSERT(out_len == (size_t)expected_len);
        FUZZ_ASSERT(memcmp(out, expected, out_len) == 0);
        FUZZ_ASSERT(out[out_len] == '\0');
    }
    free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pair_log actual = {0}, expected = {0}, stopped = {0};
    enum form_result result, expected_result;
    char *key = malloc(size + 1);
    char *value = malloc(size + 1);

    FUZZ_ASSERT(key != NULL && value != NULL);
    input_size = size;

    result = form_decode((const char *)data, size, record_pair, &actual);
    expected_result = reference_decode(data, size, &expected, key, value);
    FUZZ_ASSERT(result == expected_result);
    FUZZ_ASSERT(actual.npairs == expected.npairs);
    FUZZ_ASSERT(actual.used == expected.used);
    FUZZ_ASSERT(actual.used == 0 ||
                memcmp(actual.bytes, expected.bytes, actual.used) == 0);

    /* A callback that stops after the first pair ends the decode there. */
    stopped.stop_after = 1;
    result = form_decode((const char *)data, size, record_pair, &stopped);
    if (expected.npairs > 0)
        FUZZ_ASSERT(result == FORM_STOPPED && stopped.npairs == 1);
    else
        FUZZ_ASSERT(result == expected_result && stopped.npairs == 0);

    check_unescape(data, size, 0, key);
    check_unescape(data, size, 1, key);

    free(actual.bytes);
    free(expected.bytes);
    free(stopped.bytes);
    free(key);
    free(value);
    return 0;
}
