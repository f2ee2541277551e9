/*
 * Decoder for application/x-www-form-urlencoded bodies and URI query
 * strings, kept apart from any I/O so it can be fuzzed on its own.
 *
 * Rules, one per case a hostile or sloppy client can produce:
 *   - pairs are separated by '&' only; empty segments ("a=1&&b=2", a
 *     leading or trailing '&') are skipped;
 *   - a segment without '=' is a key with an empty value;
 *   - '+' decodes to a space, "%XX" (either case) to that byte; "%2B" is
 *     a literal '+', and "%2520" decodes once, to "%20";
 *   - '%' not followed by two hex digits is an error, never passed through;
 *   - a key that is empty after decoding is an error;
 *   - decoded bytes are passed on with their length, so "%00" reaches the
 *     callback as a NUL inside the value and the caller decides.
 * Repeated keys are passed on in order; the caller decides what they mean.
 */
#ifndef CALLHOOK_FORM_H
#define CALLHOOK_FORM_H

#include <stddef.h>

enum form_result {
    FORM_OK = 0,
    FORM_BAD_PERCENT,
    FORM_EMPTY_KEY,
    FORM_NOMEM,
    FORM_STOPPED,
};

/*
 * Called once per pair with decoded, NUL-terminated copies (the terminator
 * is not counted in the lengths). The strings live until form_decode
 * returns. A nonzero return stops decoding with FORM_STOPPED.
 */
typedef int (*form_pair_fn)(void *arg, const char *key, size_t key_len,
                            const char *value, size_t value_len);

enum form_result form_decode(const char *input, size_t len, form_pair_fn fn,
                             void *arg);

const char *form_strerror(enum form_result result);

/*
 * Decodes one percent-encoded component into out (which needs len + 1
 * bytes) and stores the decoded length in *out_len. '+' becomes a space
 * when plus_is_space is nonzero. Returns FORM_OK or FORM_BAD_PERCENT.
 */
enum form_result form_unescape(const char *in, size_t len, int plus_is_space,
                               char *out, size_t *out_len);

#endif
