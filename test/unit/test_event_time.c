/*
 * Unit tests for call_event_parse_time and for the version strings that
 * order events: field_version (timestamp, rank, digest) and status_version
 * (rank, timestamp, status).
 */
#include "check.h"
#include "event_helpers.h"

#include <stdio.h>
#include <string.h>

/* 2026-12-04T10:00:00Z in epoch milliseconds (from Python's datetime). */
#define DEC_4_10AM_MS INT64_C(1796378400000)

struct time_case {
    const char *text;
    int64_t ms;
};

static int
parse_time(const char *text, int64_t *ms)
{
    return call_event_parse_time(text, strlen(text), ms);
}

static void
test_time_valid(void)
{
    static const struct time_case cases[] = {
        {"2026-12-04T10:00:00.000Z", DEC_4_10AM_MS},
        {"2026-12-04T10:00:00Z", DEC_4_10AM_MS},
        {"2026-12-04T10:00:00", DEC_4_10AM_MS},
        {"2026-12-04T10:00:00.123Z", DEC_4_10AM_MS + 123},
        {"2026-12-04T10:00:00.1Z", DEC_4_10AM_MS + 100},
        {"2026-12-04T10:00:00.12Z", DEC_4_10AM_MS + 120},
        /* Digits past the millisecond are cut, not rounded. */
        {"2026-12-04T10:00:00.123456Z", DEC_4_10AM_MS + 123},
        {"2026-12-04T10:00:00.999999999Z", DEC_4_10AM_MS + 999},
        {"2026-12-04T10:00:00.000+01:00", DEC_4_10AM_MS - 3600000},
        {"2026-12-04T11:00:00+01:00", DEC_4_10AM_MS},
        {"2026-12-04T11:00:00+0100", DEC_4_10AM_MS},
        {"2026-12-04T04:30:00-05:30", DEC_4_10AM_MS},
        {"2026-12-04T10:00:00+00:00", DEC_4_10AM_MS},
        {"2026-12-04T10:00:00-00:00", DEC_4_10AM_MS},
        {"2026-12-04t10:00:00z", DEC_4_10AM_MS},
        {"2026-12-04 10:00:00Z", DEC_4_10AM_MS},
        {"2026-12-04T10:00:05.000Z", DEC_4_10AM_MS + 5000},
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T00:00:00.001Z", 1},
        {"2024-02-29T23:59:59.999-05:30", INT64_C(1709270999999)},
        {"2000-02-29T00:00:00Z", INT64_C(951782400000)},
        {"9999-12-31T23:59:59.999Z", INT64_C(253402300799999)},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -1;

        if (!CHECK_INT_EQ(parse_time(cases[i].text, &ms), 0)) {
            fprintf(stderr, "    text: %s\n", cases[i].text);
            continue;
        }
        if (!CHECK_INT_EQ(ms, cases[i].ms))
            fprintf(stderr, "    text: %s\n", cases[i].text);
    }
}

static void
test_time_invalid(void)
{
    static const char *const cases[] = {
        "",
        "garbage",
        "2026-12-04",
        "2026-12-04T10:00",
        "2026-12-04T10:00:00.",
        "2026-12-04T10:00:00.Z",
        "2026-12-04T10:00:00Zjunk",
        "2026-12-04T10:00:00.000Z ",
        " 2026-12-04T10:00:00.000Z",
        "2026-12-04T10:00:00+1",
        "2026-12-04T10:00:00+01:",
        "2026-12-04T10:00:00+24:00",
        "2026-12-04T10:00:00+01:60",
        "2026-12-04T10:00:00UTC",
        "2026-02-30T10:00:00Z",
        "2026-02-29T10:00:00Z",
        "2100-02-29T10:00:00Z",
        "2026-04-31T10:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-00-01T10:00:00Z",
        "2026-12-00T10:00:00Z",
        "2026-12-32T10:00:00Z",
        "2026-12-04T24:00:00Z",
        "2026-12-04T10:60:00Z",
        "2026-12-04T10:00:61Z",
        "1969-12-31T23:59:59Z",
        "1970-01-01T00:30:00+01:00",
        "26-12-04T10:00:00Z",
        "2026-1-04T10:00:00Z",
        "2026-12-04X10:00:00Z",
        "2026/12/04T10:00:00Z",
        "2026-12-04T10:00:00.-1Z",
        "+2026-12-04T10:00:00Z",
        "1796378400000",
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = 0;

        if (!CHECK_INT_EQ(parse_time(cases[i], &ms), -1))
            fprintf(stderr, "    text: \"%s\", ms %lld\n", cases[i],
                    (long long)ms);
    }
}

static void
test_time_uses_length(void)
{
    int64_t ms = 0;

    /* The text need not be NUL-terminated: only len bytes count. */
    CHECK_INT_EQ(call_event_parse_time("2026-12-04T10:00:00Zjunk", 20, &ms),
                 0);
    CHECK_INT_EQ(ms, DEC_4_10AM_MS);
    CHECK_INT_EQ(call_event_parse_time("2026-12-04T10:00:00Z", 19, &ms), 0);
    CHECK_INT_EQ(call_event_parse_time("2026-12-04T10:00:00Z", 18, &ms), -1);
    CHECK_INT_EQ(call_event_parse_time("2026-12-04\0T10:00:00Z", 21, &ms),
                 -1);
}

static void
test_event_timestamp_parsed(void)
{
    struct call_event ev;

    if (CHECK_QUERY_PARSES(&ev, "uuid=u1&timestamp=2026-12-04T10:00:00.250Z")) {
        CHECK_INT_EQ(ev.timestamp_ms, DEC_4_10AM_MS + 250);
        call_event_free(&ev);
    }
    if (CHECK_QUERY_PARSES(&ev, "uuid=u1&timestamp=")) {
        CHECK_INT_EQ(ev.timestamp_ms, 0);
        call_event_free(&ev);
    }
    if (CHECK_QUERY_PARSES(&ev, "uuid=u1")) {
        CHECK_INT_EQ(ev.timestamp_ms, 0);
        call_event_free(&ev);
    }
}

static void
test_event_timestamp_invalid(void)
{
    CHECK_QUERY_REJECTS("uuid=u1&timestamp=yesterday", "\"timestamp\"");
    CHECK_QUERY_REJECTS("uuid=u1&timestamp=2026-02-30T10:00:00Z",
                        "\"timestamp\"");
    CHECK_JSON_REJECTS("{\"uuid\":\"u1\",\"timestamp\":1796378400000}",
                       "\"timestamp\"");
}

/* Parses a form event; returns 0 after a failed check. */
static int
parse_form_event(struct call_event *ev, const char *status,
                 const char *timestamp)
{
    char body[200];

    snprintf(body, sizeof(body), "uuid=u1&status=%s&timestamp=%s", status,
             timestamp);
    return CHECK_FORM_PARSES(ev, body);
}

static void
test_version_fixed_width(void)
{
    static const char *const timestamps[] = {
        "1970-01-01T00:00:00Z", "1970-01-01T00:00:09Z",
        "2026-12-04T10:00:00Z", "9999-12-31T23:59:59.999Z",
    };

    for (size_t i = 0; i < sizeof(timestamps) / sizeof(timestamps[0]); i++) {
        struct call_event ev;

        if (!parse_form_event(&ev, "ringing", timestamps[i]))
            continue;
        /* 15 digits of milliseconds, 2 of rank, 40 of digest */
        CHECK_INT_EQ(strlen(ev.field_version), 15 + 2 + 40);
        CHECK_INT_EQ(strlen(ev.status_version), 2 + 15 + strlen("ringing"));
        call_event_free(&ev);
    }
}

static void
test_version_layout(void)
{
    struct call_event ev;
    char expected[128];

    if (!parse_form_event(&ev, "answered", "2026-12-04T10:00:00.000Z"))
        return;
    snprintf(expected, sizeof(expected), "%015lld%02d%s",
             (long long)DEC_4_10AM_MS, ev.rank, ev.digest);
    CHECK_STR_EQ(ev.field_version, expected);
    snprintf(expected, sizeof(expected), "%02d%015lldanswered", ev.rank,
             (long long)DEC_4_10AM_MS);
    CHECK_STR_EQ(ev.status_version, expected);
    call_event_free(&ev);
}

static void
test_field_version_later_wins(void)
{
    struct call_event early, late;

    /* 9000 ms and 10000 ms differ in digit count: only a fixed width
     * keeps the string order equal to the numeric order. */
    if (!parse_form_event(&early, "completed", "1970-01-01T00:00:09Z"))
        return;
    if (parse_form_event(&late, "ringing", "1970-01-01T00:00:10Z")) {
        CHECK(strcmp(late.field_version, early.field_version) > 0);
        call_event_free(&late);
    }
    call_event_free(&early);

    if (!parse_form_event(&early, "ringing", "2026-12-04T10:00:00.999Z"))
        return;
    if (parse_form_event(&late, "ringing", "2026-12-04T10:00:01.000Z")) {
        CHECK(strcmp(late.field_version, early.field_version) > 0);
        call_event_free(&late);
    }
    call_event_free(&early);
}

static void
test_field_version_same_time_rank(void)
{
    struct call_event low, high;

    if (!parse_form_event(&low, "ringing", "2026-12-04T10:00:00Z"))
        return;
    if (parse_form_event(&high, "answered", "2026-12-04T10:00:00Z")) {
        CHECK(strcmp(high.field_version, low.field_version) > 0);
        call_event_free(&high);
    }
    call_event_free(&low);
}

static void
test_field_version_without_timestamp(void)
{
    struct call_event none, dated;

    if (!CHECK_QUERY_PARSES(&none, "uuid=u1&status=completed"))
        return;
    CHECK(strncmp(none.field_version, "000000000000000", 15) == 0);
    if (parse_form_event(&dated, "started", "1970-01-01T00:00:00.001Z")) {
        CHECK(strcmp(dated.field_version, none.field_version) > 0);
        call_event_free(&dated);
    }
    call_event_free(&none);
}

static void
test_status_version_rank_wins(void)
{
    struct call_event completed, answered;

    /* A late "answered" must not replace an earlier "completed". */
    if (!parse_form_event(&completed, "completed", "2026-12-04T10:00:00Z"))
        return;
    if (parse_form_event(&answered, "answered", "2026-12-04T11:00:00Z")) {
        CHECK(strcmp(completed.status_version, answered.status_version) > 0);
        call_event_free(&answered);
    }
    call_event_free(&completed);
}

static void
test_status_version_same_rank_later(void)
{
    struct call_event busy, failed;

    if (!CHECK_INT_EQ(call_event_status_rank("busy"),
                      call_event_status_rank("failed")))
        return;
    if (!parse_form_event(&failed, "failed", "1970-01-01T00:00:09Z"))
        return;
    if (parse_form_event(&busy, "busy", "1970-01-01T00:00:10Z")) {
        CHECK(strcmp(busy.status_version, failed.status_version) > 0);
        call_event_free(&busy);
    }
    call_event_free(&failed);
}

static void
test_status_version_without_status(void)
{
    struct call_event none, started;

    if (!CHECK_QUERY_PARSES(&none,
                            "uuid=u1&timestamp=2026-12-04T12:00:00Z"))
        return;
    CHECK(strncmp(none.status_version, "00", 2) == 0);
    CHECK_INT_EQ(strlen(none.status_version), 2 + 15);
    if (parse_form_event(&started, "started", "1970-01-01T00:00:00Z")) {
        CHECK(strcmp(started.status_version, none.status_version) > 0);
        call_event_free(&started);
    }
    call_event_free(&none);
}

static void
test_versions_match_across_encodings(void)
{
    struct call_event json, query;

    if (!CHECK_JSON_PARSES(&json, "{\"uuid\":\"u1\",\"status\":\"busy\","
                                  "\"timestamp\":\"2026-12-04T10:00:00Z\"}"))
        return;
    if (CHECK_QUERY_PARSES(&query, "timestamp=2026-12-04T10%3A00%3A00Z"
                                   "&status=busy&uuid=u1")) {
        CHECK_STR_EQ(json.field_version, query.field_version);
        CHECK_STR_EQ(json.status_version, query.status_version);
        call_event_free(&query);
    }
    call_event_free(&json);
}

int
main(void)
{
    RUN_TEST(test_time_valid);
    RUN_TEST(test_time_invalid);
    RUN_TEST(test_time_uses_length);
    RUN_TEST(test_event_timestamp_parsed);
    RUN_TEST(test_event_timestamp_invalid);
    RUN_TEST(test_version_fixed_width);
    RUN_TEST(test_version_layout);
    RUN_TEST(test_field_version_later_wins);
    RUN_TEST(test_field_version_same_time_rank);
    RUN_TEST(test_field_version_without_timestamp);
    RUN_TEST(test_status_version_rank_wins);
    RUN_TEST(test_status_version_same_rank_later);
    RUN_TEST(test_status_version_without_status);
    RUN_TEST(test_versions_match_across_encodings);
    return check_finish();
}
