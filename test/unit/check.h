/*
 * Minimal assertions for the unit test programs. Each failed check prints
 * file:line, the test function, the expression and the values involved,
 * and the run continues, so one run lists every failure. A program ends
 * with `return check_finish();`, which exits non-zero after any failure.
 *
 *     static void
 *     test_something(void)
 *     {
 *         CHECK_INT_EQ(1 + 1, 2);
 *     }
 *
 *     int
 *     main(void)
 *     {
 *         RUN_TEST(test_something);
 *         return check_finish();
 *     }
 */
#ifndef CALLHOOK_TEST_CHECK_H
#define CALLHOOK_TEST_CHECK_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *check_current_test = "?";
static int check_count;
static int check_failures;

static inline int
check_report(int ok, const char *file, int line)
{
    check_count++;
    if (ok)
        return 1;
    check_failures++;
    fprintf(stderr, "%s:%d: in %s: ", file, line, check_current_test);
    return 0;
}

/* Prints at most 200 bytes of s, with non-printable bytes as \xNN. */
static inline void
check_print_bytes(const char *s, size_t len)
{
    if (s == NULL) {
        fputs("NULL", stderr);
        return;
    }
    fputc('"', stderr);
    for (size_t i = 0; i < len && i < 200; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs(len > 200 ? "\"..." : "\"", stderr);
}

static inline int
check_true(int ok, const char *expr, const char *file, int line)
{
    if (check_report(ok, file, line))
        return 1;
    fprintf(stderr, "CHECK(%s) failed\n", expr);
    return 0;
}

static inline int
check_int_eq(intmax_t actual, intmax_t expected, const char *actual_expr,
             const char *expected_expr, const char *file, int line)
{
    if (check_report(actual == expected, file, line))
        return 1;
    fprintf(stderr, "%s == %s failed: %" PRIdMAX " != %" PRIdMAX "\n",
            actual_expr, expected_expr, actual, expected);
    return 0;
}

static inline int
check_mem_eq(const char *actual, size_t actual_len, const char *expected,
             size_t expected_len, const char *actual_expr,
             const char *expected_expr, const char *file, int line)
{
    int ok;

    if (actual == NULL || expected == NULL)
        ok = actual == expected;
    else
        ok = actual_len == expected_len &&
             memcmp(actual, expected, actual_len) == 0;
    if (check_report(ok, file, line))
        return 1;
    fprintf(stderr, "%s == %s failed:\n    actual:   ", actual_expr,
            expected_expr);
    check_print_bytes(actual, actual_len);
    fputs("\n    expected: ", stderr);
    check_print_bytes(expected, expected_len);
    fputc('\n', stderr);
    return 0;
}

static inline int
check_str_eq(const char *actual, const char *expected,
             const char *actual_expr, const char *expected_expr,
             const char *file, int line)
{
    return check_mem_eq(actual, actual ? strlen(actual) : 0, expected,
                        expected ? strlen(expected) : 0, actual_expr,
                        expected_expr, file, line);
}

static inline int
check_str_contains(const char *haystack, const char *needle,
                   const char *haystack_expr, const char *file, int line)
{
    int ok = haystack != NULL && strstr(haystack, needle) != NULL;

    if (check_report(ok, file, line))
        return 1;
    fprintf(stderr, "%s does not contain \"%s\": ", haystack_expr, needle);
    check_print_bytes(haystack, haystack ? strlen(haystack) : 0);
    fputc('\n', stderr);
    return 0;
}

/* Prints the totals and returns the exit status for main(). */
static inline int
check_finish(void)
{
    fprintf(stderr, "%d checks, %d failed\n", check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

/* Each CHECK macro returns 1 when the check passed, so a test can skip
 * checks that would only repeat the same failure. */
#define CHECK(expr) check_true(!!(expr), #expr, __FILE__, __LINE__)
#define CHECK_INT_EQ(actual, expected)                                      \
    check_int_eq((intmax_t)(actual), (intmax_t)(expected), #actual,         \
                 #expected, __FILE__, __LINE__)
#define CHECK_STR_EQ(actual, expected)                                      \
    check_str_eq((actual), (expected), #actual, #expected, __FILE__,        \
                 __LINE__)
#define CHECK_MEM_EQ(actual, actual_len, expected, expected_len)            \
    check_mem_eq((actual), (actual_len), (expected), (expected_len),        \
                 #actual, #expected, __FILE__, __LINE__)
#define CHECK_STR_CONTAINS(haystack, needle)                                \
    check_str_contains((haystack), (needle), #haystack, __FILE__, __LINE__)

#define RUN_TEST(fn)                                                        \
    do {                                                                    \
        check_current_test = #fn;                                           \
        fn();                                                               \
    } while (0)

#endif
