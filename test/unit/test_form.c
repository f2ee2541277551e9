/* Unit tests for the form and query-string decoder. */
#include "callhook/form.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PAIRS 16
#define MAX_TEXT 64

struct decoded_pair {
    char key[MAX_TEXT];
    size_t key_len;
    char value[MAX_TEXT];
    size_t value_len;
};

/* Pairs seen by the callback during one decode() call. */
static struct decoded_pair pairs[MAX_PAIRS];
static size_t npairs;
static size_t stop_after; /* 0: never ask the decoder to stop */
static int unterminated;  /* the callback saw a key or value without NUL */

static int
collect_pair(void *arg, const char *key, size_t key_len, const char *value,
             size_t value_len)
{
    struct decoded_pair *p;

    (void)arg;
    if (key[key_len] != '\0' || value[value_len] != '\0')
        unterminated = 1;
    if (npairs == MAX_PAIRS || key_len >= MAX_TEXT || value_len >= MAX_TEXT)
        abort();
    p = &pairs[npairs++];
    memcpy(p->key, key, key_len + 1);
    p->key_len = key_len;
    memcpy(p->value, value, value_len + 1);
    p->value_len = value_len;
    return stop_after != 0 && npairs == stop_after;
}

/* Decodes len bytes of input, which need not be NUL-terminated. */
static enum form_result
decode_bytes(const char *input, size_t len)
{
    char *copy = malloc(len ? len : 1);
    enum form_result result;

    /* A heap copy of exactly len bytes lets AddressSanitizer catch any
     * read past the end. */
    if (copy == NULL)
        abort();
    memcpy(copy, input, len);
    npairs = 0;
    unterminated = 0;
    result = form_decode(copy, len, collect_pair, NULL);
    free(copy);
    CHECK(!unterminated);
    return result;
}

static enum form_result
decode(const char *input)
{
    return decode_bytes(input, strlen(input));
}

#define CHECK_PAIR(index, expected_key, expected_value)                     \
    do {                                                                    \
        CHECK_MEM_EQ(pairs[index].key, pairs[index].key_len,                \
                     expected_key, strlen(expected_key));                   \
        CHECK_MEM_EQ(pairs[index].value, pairs[index].value_len,            \
                     expected_value, strlen(expected_value));               \
    } while (0)

static void
test_simple_pairs(void)
{
    CHECK_INT_EQ(decode("a=1&b=2"), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_PAIR(0, "a", "1");
    CHECK_PAIR(1, "b", "2");
}

static void
test_empty_input(void)
{
    CHECK_INT_EQ(decode(""), FORM_OK);
    CHECK_INT_EQ(npairs, 0);
}

static void
test_plus_is_space(void)
{
    CHECK_INT_EQ(decode("text=hello+world&first+name=a++b"), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_PAIR(0, "text", "hello world");
    CHECK_PAIR(1, "first name", "a  b");
}

static void
test_encoded_plus(void)
{
    CHECK_INT_EQ(decode("to=%2B447700900000&sum=1%2b1"), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_PAIR(0, "to", "+447700900000");
    CHECK_PAIR(1, "sum", "1+1");
}

static void
test_encoded_space(void)
{
    CHECK_INT_EQ(decode("a=x%20y"), FORM_OK);
    CHECK_INT_EQ(npairs, 1);
    CHECK_PAIR(0, "a", "x y");
}

static void
test_double_encoding_once(void)
{
    CHECK_INT_EQ(decode("a=%2520&b=%252B"), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_PAIR(0, "a", "%20");
    CHECK_PAIR(1, "b", "%2B");
}

static void
test_encoded_separators(void)
{
    CHECK_INT_EQ(decode("k%3D=x%26y%3Dz"), FORM_OK);
    CHECK_INT_EQ(npairs, 1);
    CHECK_PAIR(0, "k=", "x&y=z");
}

static void
test_value_with_equals(void)
{
    CHECK_INT_EQ(decode("a=b=c"), FORM_OK);
    CHECK_INT_EQ(npairs, 1);
    CHECK_PAIR(0, "a", "b=c");
}

static void
test_empty_segments_skipped(void)
{
    CHECK_INT_EQ(decode("a=b&&c=d"), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_PAIR(0, "a", "b");
    CHECK_PAIR(1, "c", "d");

    CHECK_INT_EQ(decode("&a=b"), FORM_OK);
    CHECK_INT_EQ(npairs, 1);
    CHECK_PAIR(0, "a", "b");

    CHECK_INT_EQ(decode("a=b&"), FORM_OK);
    CHECK_INT_EQ(npairs, 1);
    CHECK_PAIR(0, "a", "b");

    CHECK_INT_EQ(decode("&&&"), FORM_OK);
    CHECK_INT_EQ(npairs, 0);
}

static void
test_key_without_equals(void)
{
    CHECK_INT_EQ(decode("flag&a=1&other"), FORM_OK);
    CHECK_INT_EQ(npairs, 3);
    CHECK_PAIR(0, "flag", "");
    CHECK_PAIR(1, "a", "1");
    CHECK_PAIR(2, "other", "");
}

static void
test_empty_value(void)
{
    CHECK_INT_EQ(decode("a=&b="), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_PAIR(0, "a", "");
    CHECK_PAIR(1, "b", "");
}

static void
test_repeated_keys_in_order(void)
{
    CHECK_INT_EQ(decode("a=1&b=2&a=3&a=4"), FORM_OK);
    CHECK_INT_EQ(npairs, 4);
    CHECK_PAIR(0, "a", "1");
    CHECK_PAIR(1, "b", "2");
    CHECK_PAIR(2, "a", "3");
    CHECK_PAIR(3, "a", "4");
}

static void
test_invalid_percent(void)
{
    static const char *const inputs[] = {
        "a=%",    "a=%2",    "a=%zz",  "a=%2z", "a=%z2",  "a=%g0",
        "a=1%",   "a=1%4",   "%=1",    "%4=1",  "a%zz=1", "a=%%41",
        "a=%-1",  "a=% 1",   "a=%+1",  "a=%0x", "%",      "a=%&b=1",
    };

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        if (!CHECK_INT_EQ(decode(inputs[i]), FORM_BAD_PERCENT))
            fprintf(stderr, "    input: %s\n", inputs[i]);
        CHECK_INT_EQ(npairs, 0);
    }
}

static void
test_invalid_percent_after_good_pair(void)
{
    /* Pairs before the bad one have already been passed on. The error
     * still reaches the caller, which discards them. */
    CHECK_INT_EQ(decode("x=1&a=%zz&y=2"), FORM_BAD_PERCENT);
    CHECK_INT_EQ(npairs, 1);
    CHECK_PAIR(0, "x", "1");
}

static void
test_percent_at_segment_end(void)
{
    /* '&' is a separator even right after '%', so "%2&6" is not "%26". */
    CHECK_INT_EQ(decode("a=%2&6"), FORM_BAD_PERCENT);
}

static void
test_nul_byte_passed_on(void)
{
    CHECK_INT_EQ(decode("a=x%00y&%00=z"), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_MEM_EQ(pairs[0].key, pairs[0].key_len, "a", 1);
    CHECK_MEM_EQ(pairs[0].value, pairs[0].value_len, "x\0y", 3);
    CHECK_MEM_EQ(pairs[1].key, pairs[1].key_len, "\0", 1);
    CHECK_MEM_EQ(pairs[1].value, pairs[1].value_len, "z", 1);
}

static void
test_raw_nul_in_input(void)
{
    CHECK_INT_EQ(decode_bytes("a=1\0b&c=2", 9), FORM_OK);
    CHECK_INT_EQ(npairs, 2);
    CHECK_MEM_EQ(pairs[0].value, pairs[0].value_len, "1\0b", 3);
    CHECK_PAIR(1, "c", "2");
}

static void
test_empty_key(void)
{
    CHECK_INT_EQ(decode("=x"), FORM_EMPTY_KEY);
    CHECK_INT_EQ(npairs, 0);
    CHECK_INT_EQ(decode("="), FORM_EMPTY_KEY);
    CHECK_INT_EQ(decode("a=1&=x"), FORM_EMPTY_KEY);
    CHECK_INT_EQ(npairs, 1);
}

static void
test_hex_case(void)
{
    CHECK_INT_EQ(decode("a=%2b%2B&b=%c3%A9&c=%Ff%fF&d=%aA%Aa"), FORM_OK);
    CHECK_INT_EQ(npairs, 4);
    CHECK_PAIR(0, "a", "++");
    CHECK_PAIR(1, "b", "\xc3\xa9");
    CHECK_PAIR(2, "c", "\xff\xff");
    CHECK_PAIR(3, "d", "\xaa\xaa");
}

static void
test_all_hex_digits(void)
{
    CHECK_INT_EQ(decode("a=%01%23%45%67%89%AB%CD%EF%ab%cd%ef"), FORM_OK);
    CHECK_INT_EQ(npairs, 1);
    CHECK_MEM_EQ(pairs[0].value, pairs[0].value_len,
                 "\x01\x23\x45\x67\x89\xab\xcd\xef\xab\xcd\xef", 11);
}

static void
test_length_bounds_input(void)
{
    /* Only the first len bytes count, even when more follow. */
    CHECK_INT_EQ(decode_bytes("a=1&b=2", 3), FORM_OK);
    CHECK_INT_EQ(npairs, 1);
    CHECK_PAIR(0, "a", "1");

    CHECK_INT_EQ(decode_bytes("a=%41", 4), FORM_BAD_PERCENT);
}

static void
test_callback_stops_decoding(void)
{
    stop_after = 2;
    CHECK_INT_EQ(decode("a=1&b=2&c=3"), FORM_STOPPED);
    CHECK_INT_EQ(npairs, 2);
    stop_after = 0;
}

static void
test_unescape_plus_flag(void)
{
    char out[16];
    size_t out_len = 99;

    CHECK_INT_EQ(form_unescape("a+b%2B", 6, 0, out, &out_len), FORM_OK);
    CHECK_MEM_EQ(out, out_len, "a+b+", 4);
    CHECK_INT_EQ(out[out_len], '\0');

    CHECK_INT_EQ(form_unescape("a+b%2B", 6, 1, out, &out_len), FORM_OK);
    CHECK_MEM_EQ(out, out_len, "a b+", 4);
}

static void
test_unescape_empty(void)
{
    char out[1] = {'x'};
    size_t out_len = 99;

    CHECK_INT_EQ(form_unescape("", 0, 1, out, &out_len), FORM_OK);
    CHECK_INT_EQ(out_len, 0);
    CHECK_INT_EQ(out[0], '\0');
}

static void
test_unescape_invalid(void)
{
    char out[8];
    size_t out_len;

    CHECK_INT_EQ(form_unescape("%", 1, 1, out, &out_len), FORM_BAD_PERCENT);
    CHECK_INT_EQ(form_unescape("ab%4", 4, 1, out, &out_len),
                 FORM_BAD_PERCENT);
    CHECK_INT_EQ(form_unescape("%4g", 3, 1, out, &out_len),
                 FORM_BAD_PERCENT);
    /* The second hex digit lies past len, so it must not be read. */
    CHECK_INT_EQ(form_unescape("%41", 2, 1, out, &out_len),
                 FORM_BAD_PERCENT);
}

static void
test_strerror(void)
{
    static const enum form_result results[] = {
        FORM_OK, FORM_BAD_PERCENT, FORM_EMPTY_KEY, FORM_NOMEM, FORM_STOPPED,
    };
    size_t n = sizeof(results) / sizeof(results[0]);

    for (size_t i = 0; i < n; i++) {
        const char *text = form_strerror(results[i]);

        if (!CHECK(text != NULL))
            continue;
        CHECK(text[0] != '\0');
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(text, form_strerror(results[k])) != 0);
    }
    CHECK_STR_CONTAINS(form_strerror(FORM_BAD_PERCENT), "percent");
    CHECK_STR_EQ(form_strerror((enum form_result)99), "unknown error");
}

int
main(void)
{
    RUN_TEST(test_simple_pairs);
    RUN_TEST(test_empty_input);
    RUN_TEST(test_plus_is_space);
    RUN_TEST(test_encoded_plus);
    RUN_TEST(test_encoded_space);
    RUN_TEST(test_double_encoding_once);
    RUN_TEST(test_encoded_separators);
    RUN_TEST(test_value_with_equals);
    RUN_TEST(test_empty_segments_skipped);
    RUN_TEST(test_key_without_equals);
    RUN_TEST(test_empty_value);
    RUN_TEST(test_repeated_keys_in_order);
    RUN_TEST(test_invalid_percent);
    RUN_TEST(test_invalid_percent_after_good_pair);
    RUN_TEST(test_percent_at_segment_end);
    RUN_TEST(test_nul_byte_passed_on);
    RUN_TEST(test_raw_nul_in_input);
    RUN_TEST(test_empty_key);
    RUN_TEST(test_hex_case);
    RUN_TEST(test_all_hex_digits);
    RUN_TEST(test_length_bounds_input);
    RUN_TEST(test_callback_stops_decoding);
    RUN_TEST(test_unescape_plus_flag);
    RUN_TEST(test_unescape_empty);
    RUN_TEST(test_unescape_invalid);
    RUN_TEST(test_strerror);
    return check_finish();
}
