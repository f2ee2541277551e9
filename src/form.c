#include "callhook/form.h"

#include <stdlib.h>
#include <string.h>

static int
hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum form_result
form_unescape(const char *in, size_t len, int plus_is_space, char *out,
              size_t *out_len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3)
                return FORM_BAD_PERCENT;
            hi = hex_value((unsigned char)in[i + 1]);
            lo = hex_value((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return FORM_BAD_PERCENT;
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[n++] = ' ';
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    *out_len = n;
    return FORM_OK;
}

enum form_result
form_decode(const char *input, size_t len, form_pair_fn fn, void *arg)
{
    enum form_result result = FORM_OK;
    char *scratch;
    size_t pos = 0;

    /* Decoding never makes a component longer, so one buffer the size of
     * the input (plus two terminators) holds any key and value. */
    scratch = malloc(len + 2);
    if (scratch == NULL)
        return FORM_NOMEM;

    while (pos < len) {
        const char *segment = input + pos;
        const char *amp = memchr(segment, '&', len - pos);
        size_t seg_len = amp ? (size_t)(amp - segment) : len - pos;
        const char *eq;
        size_t key_raw, value_raw, key_len, value_len;
        char *key, *value;

        pos += seg_len + 1;
        if (seg_len == 0)
            continue;

        eq = memchr(segment, '=', seg_len);
        key_raw = eq ? (size_t)(eq - segment) : seg_len;
        value_raw = eq ? seg_len - key_raw - 1 : 0;

        key = scratch;
        result = form_unescape(segment, key_raw, 1, key, &key_len);
        if (result != FORM_OK)
            break;
        if (key_len == 0) {
            result = FORM_EMPTY_KEY;
            break;
        }
        value = key + key_len + 1;
        result = form_unescape(eq ? eq + 1 : segment + seg_len, value_raw, 1,
                               value, &value_len);
        if (result != FORM_OK)
            break;
        if (fn(arg, key, key_len, value, value_len) != 0) {
            result = FORM_STOPPED;
            break;
        }
    }

    free(scratch);
    return result;
}

const char *
form_strerror(enum form_result result)
{
    switch (result) {
    case FORM_OK:
        return "ok";
    case FORM_BAD_PERCENT:
        return "invalid percent-encoding ('%' must be followed by two hex "
               "digits)";
    case FORM_EMPTY_KEY:
        return "a parameter has an empty name";
    case FORM_NOMEM:
        return "out of memory";
    case FORM_STOPPED:
        return "stopped";
    }
    return "unknown error";
}
