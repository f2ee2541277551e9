/* Unit tests for dial job validation, number normalisation and the
 * Voice API request body. */
#include "callhook/dial_job.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

/* Parses text; returns 0 or -1 and leaves the message in err. */
static int
parse(struct dial_job *job, const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    return dial_job_parse(job, text, strlen(text), err, errlen);
}

/* Checks that text is rejected with a message containing needle. */
#define CHECK_REJECTED(text, needle)                                         \
    do {                                                                     \
        struct dial_job rejected_job;                                        \
        char rejected_err[512];                                              \
                                                                             \
        if (CHECK_INT_EQ(parse(&rejected_job, (text), rejected_err,          \
                               sizeof(rejected_err)),                        \
                         -1))                                                \
            CHECK_STR_CONTAINS(rejected_err, (needle));                      \
        else                                                                 \
            dial_job_free(&rejected_job);                                    \
    } while (0)

static void
test_number_normalize_formats(void)
{
    static const struct {
        const char *input;
        const char *expected;
    } cases[] = {
        {"14155550100", "14155550100"},
        {"+1 (415) 555-0100", "14155550100"},
        {"+44 20.7946.0000", "442079460000"},
        {"  +4915112345678", "4915112345678"},
        {"1234567", "1234567"},
        {"123456789012345", "123456789012345"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[DIAL_NUMBER_MAX + 1];
        const char *why = dial_number_normalize(
            cases[i].input, strlen(cases[i].input), out);

        if (CHECK(why == NULL))
            CHECK_STR_EQ(out, cases[i].expected);
    }
}

static void
test_number_normalize_rejects(void)
{
    static const struct {
        const char *input;
        const char *reason;
    } cases[] = {
        {"", "fewer than 7 digits"},
        {"123456", "fewer than 7 digits"},
        {"+-()", "fewer than 7 digits"},
        {"1234567890123456", "more than 15 digits"},
        {"1415555CALL", "character other than digits"},
        {"1415 555 0100 x12", "character other than digits"},
        {"1+4155550100", "character other than digits"},
        {"++14155550100", "character other than digits"},
        {"14155550100/", "character other than digits"},
        {"1415\t5550100", "character other than digits"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[DIAL_NUMBER_MAX + 1];
        const char *why = dial_number_normalize(
            cases[i].input, strlen(cases[i].input), out);

        if (CHECK(why != NULL))
            CHECK_STR_CONTAINS(why, cases[i].reason);
    }
}

static void
test_number_with_nul_rejected(void)
{
    char out[DIAL_NUMBER_MAX + 1];

    CHECK(dial_number_normalize("1415555\0" "0100", 12, out) != NULL);
}

static void
test_parse_text_job(void)
{
    struct dial_job job;
    char err[512];

    if (!CHECK_INT_EQ(parse(&job,
                            "{\"to\":\"+1 (415) 555-0100\",\"from\":"
                            "\"14155550123\",\"text\":\"Hello\"}",
                            err, sizeof(err)),
                      0))
        return;
    CHECK_STR_EQ(job.to, "14155550100");
    CHECK_STR_EQ(job.from, "14155550123");
    CHECK_STR_EQ(job.text, "Hello");
    CHECK(job.ncco == NULL);
    CHECK(job.answer_url == NULL);
    CHECK_STR_EQ(job.id, "");
    CHECK_INT_EQ(job.random_from_number, 0);
    CHECK_INT_EQ(job.machine_detection, DIAL_MACHINE_DETECTION_NONE);
    CHECK_INT_EQ(job.ringing_timer, 0);
    dial_job_free(&job);
}

static void
test_parse_all_options(void)
{
    struct dial_job job;
    char err[512];

    if (!CHECK_INT_EQ(
            parse(&job,
                  "{\"id\":\"job-1_a\",\"to\":\"14155550100\","
                  "\"random_from_number\":true,"
                  "\"answer_url\":\"https://example.com/answer?x=1\","
                  "\"machine_detection\":\"hangup\",\"ringing_timer\":120,"
                  "\"length_timer\":7200,\"idempotency_key\":\"order 42\"}",
                  err, sizeof(err)),
            0))
        return;
    CHECK_STR_EQ(job.id, "job-1_a");
    CHECK_STR_EQ(job.from, "");
    CHECK_INT_EQ(job.random_from_number, 1);
    CHECK_STR_EQ(job.answer_url, "https://example.com/answer?x=1");
    CHECK_INT_EQ(job.machine_detection, DIAL_MACHINE_DETECTION_HANGUP);
    CHECK_INT_EQ(job.ringing_timer, 120);
    CHECK_INT_EQ(job.length_timer, 7200);
    CHECK_STR_EQ(job.idempotency_key, "order 42");
    dial_job_free(&job);
}

static void
test_parse_ncco_job(void)
{
    struct dial_job job;
    char err[512];

    if (!CHECK_INT_EQ(parse(&job,
                            "{\"to\":\"14155550100\",\"from\":\"14155550123\","
                            "\"ncco\":[ {\"action\": \"talk\", \"text\": "
                            "\"Hi\"} ],\"machine_detection\":\"continue\"}",
                            err, sizeof(err)),
                      0))
        return;
    CHECK_STR_EQ(job.ncco, "[{\"action\":\"talk\",\"text\":\"Hi\"}]");
    CHECK_INT_EQ(job.machine_detection, DIAL_MACHINE_DETECTION_CONTINUE);
    dial_job_free(&job);
}

static void
test_parse_rejects_fields(void)
{
    CHECK_REJECTED("", "not valid JSON");
    CHECK_REJECTED("[1]", "must be a JSON object");
    CHECK_REJECTED("{\"from\":\"14155550123\",\"text\":\"Hi\"}",
                   "\"to\" is missing");
    CHECK_REJECTED("{\"to\":14155550100,\"from\":\"14155550123\","
                   "\"text\":\"Hi\"}",
                   "\"to\" must be a phone number as a string");
    CHECK_REJECTED("{\"to\":\"1415555CALL\",\"from\":\"14155550123\","
                   "\"text\":\"Hi\"}",
                   "\"to\" is not a valid phone number");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"text\":\"Hi\"}",
                   "\"from\" is missing");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"123\","
                   "\"text\":\"Hi\"}",
                   "\"from\" is not a valid phone number");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"random_from_number\":true,\"text\":\"Hi\"}",
                   "not both");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"random_from_number\":1,"
                   "\"text\":\"Hi\"}",
                   "\"random_from_number\" must be true or false");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"random_from_number\":false,"
                   "\"text\":\"Hi\"}",
                   "\"from\" is missing");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"text\":\"Hi\",\"colour\":\"red\"}",
                   "unknown field \"colour\"");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"to\":\"14155550101\","
                   "\"from\":\"14155550123\",\"text\":\"Hi\"}",
                   "duplicate");
}

static void
test_parse_rejects_content(void)
{
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\"}",
                   "exactly one of \"text\", \"ncco\" or \"answer_url\" "
                   "(0 given)");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"text\":\"Hi\",\"answer_url\":\"https://a.example\"}",
                   "(2 given)");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"text\":\"\"}",
                   "\"text\" must be a non-empty string");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"text\":\"a\\u0000b\"}",
                   "not valid JSON");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"ncco\":{\"action\":\"talk\"}}",
                   "\"ncco\" must be a JSON array");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"ncco\":[{\"action\":\"talk\"}]}",
                   "invalid \"ncco\": NCCO action 0 (talk) needs \"text\"");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"answer_url\":\"ftp://example.com/a\"}",
                   "\"answer_url\" must be an http:// or https:// URL");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"answer_url\":\"https://\"}",
                   "\"answer_url\" must be");
    CHECK_REJECTED("{\"to\":\"14155550100\",\"from\":\"14155550123\","
                   "\"answer_url\":\"https://a.example/x y\"}",
                   "\"answer_url\" must be");
}

static void
test_parse_rejects_options(void)
{
    static const char prefix[] =
        "{\"to\":\"14155550100\",\"from\":\"14155550123\",\"text\":\"Hi\",";
    static const struct {
        const char *tail;
        const char *needle;
    } cases[] = {
        {"\"machine_detection\":\"detect\"}", "\"machine_detection\" must"},
        {"\"machine_detection\":true}", "\"machine_detection\" must"},
        {"\"ringing_timer\":0}", "\"ringing_timer\" must be a whole number "
                                 "of seconds from 1 to 120"},
        {"\"ringing_timer\":121}", "\"ringing_timer\" must"},
        {"\"ringing_timer\":5.5}", "\"ringing_timer\" must"},
        {"\"ringing_timer\":\"5\"}", "\"ringing_timer\" must"},
        {"\"length_timer\":7201}", "from 1 to 7200"},
        {"\"length_timer\":-1}", "\"length_timer\" must"},
        {"\"idempotency_key\":\"\"}", "\"idempotency_key\" must"},
        {"\"idempotency_key\":\"tab\\there\"}", "\"idempotency_key\" must"},
        {"\"idempotency_key\":\"caf\\u00e9\"}", "\"idempotency_key\" must"},
        {"\"idempotency_key\":7}", "\"idempotency_key\" must"},
        {"\"id\":\"\"}", "\"id\" is empty"},
        {"\"id\":\"a/b\"}", "\"id\" contains characters"},
        {"\"id\":12}", "\"id\" is not a string"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[512];

        snprintf(text, sizeof(text), "%s%s", prefix, cases[i].tail);
        CHECK_REJECTED(text, cases[i].needle);
    }
}

static void
test_parse_limits(void)
{
    size_t len = DIAL_JOB_MAX_BYTES + 1;
    char *big = malloc(len + 1);
    char key[DIAL_IDEMPOTENCY_KEY_MAX + 2];
    char text[512];
    struct dial_job job;
    char err[256];

    if (!CHECK(big != NULL))
        return;
    memset(big, ' ', len);
    big[len] = '\0';
    big[0] = '{';
    big[len - 1] = '}';
    CHECK_REJECTED(big, "larger than 65536 bytes");
    free(big);

    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    snprintf(text, sizeof(text),
             "{\"to\":\"14155550100\",\"from\":\"14155550123\","
             "\"text\":\"Hi\",\"idempotency_key\":\"%s\"}",
             key);
    CHECK_REJECTED(text, "1 to 128 printable");

    key[sizeof(key) - 2] = '\0';
    snprintf(text, sizeof(text),
             "{\"to\":\"14155550100\",\"from\":\"14155550123\","
             "\"text\":\"Hi\",\"idempotency_key\":\"%s\"}",
             key);
    if (CHECK_INT_EQ(parse(&job, text, err, sizeof(err)), 0)) {
        CHECK_INT_EQ(strlen(job.idempotency_key), DIAL_IDEMPOTENCY_KEY_MAX);
        dial_job_free(&job);
    }
}

static void
test_to_json_round_trip(void)
{
    struct dial_job job, again;
    char err[512];
    char *text, *text_again;

    if (!CHECK_INT_EQ(parse(&job,
                            "{\"text\":\"Hi\",\"from\":\"+1 415 555 0123\","
                            "\"to\":\"(415) 555-0100 \",\"ringing_timer\":30,"
                            "\"idempotency_key\":\"k1\"}",
                            err, sizeof(err)),
                      0))
        return;
    memcpy(job.id, "abc", 4);
    text = dial_job_to_json(&job);
    CHECK_STR_EQ(text, "{\"id\":\"abc\",\"to\":\"4155550100\",\"from\":"
                       "\"14155550123\",\"text\":\"Hi\",\"ringing_timer\":30,"
                       "\"idempotency_key\":\"k1\"}");
    if (text != NULL &&
        CHECK_INT_EQ(parse(&again, text, err, sizeof(err)), 0)) {
        text_again = dial_job_to_json(&again);
        CHECK_STR_EQ(text_again, text);
        free(text_again);
        dial_job_free(&again);
    }
    free(text);
    dial_job_free(&job);
}

static void
test_request_body_text(void)
{
    struct dial_job job;
    char err[512];
    char *body;

    if (!CHECK_INT_EQ(parse(&job,
                            "{\"to\":\"14155550100\",\"from\":\"14155550123\","
                            "\"text\":\"Hello \\\"you\\\"\","
                            "\"machine_detection\":\"continue\","
                            "\"length_timer\":60}",
                            err, sizeof(err)),
                      0))
        return;
    body = dial_job_request_body(&job, "https://hooks.example/call_events");
    CHECK_STR_EQ(body,
                 "{\"to\":[{\"type\":\"phone\",\"number\":\"14155550100\"}],"
                 "\"from\":{\"type\":\"phone\",\"number\":\"14155550123\"},"
                 "\"ncco\":[{\"action\":\"talk\",\"text\":\"Hello "
                 "\\\"you\\\"\"}],"
                 "\"event_url\":[\"https://hooks.example/call_events\"],"
                 "\"machine_detection\":\"continue\",\"length_timer\":60}");
    free(body);
    dial_job_free(&job);
}

static void
test_request_body_answer_url(void)
{
    struct dial_job job;
    char err[512];
    char *body;

    if (!CHECK_INT_EQ(parse(&job,
                            "{\"to\":\"14155550100\","
                            "\"random_from_number\":true,"
                            "\"answer_url\":\"http://a.example/ncco\"}",
                            err, sizeof(err)),
                      0))
        return;
    body = dial_job_request_body(&job, "http://127.0.0.1:3000/call_events");
    CHECK_STR_EQ(body,
                 "{\"to\":[{\"type\":\"phone\",\"number\":\"14155550100\"}],"
                 "\"random_from_number\":true,"
                 "\"answer_url\":[\"http://a.example/ncco\"],"
                 "\"event_url\":[\"http://127.0.0.1:3000/call_events\"]}");
    free(body);
    dial_job_free(&job);
}

static void
test_request_body_ncco(void)
{
    struct dial_job job;
    char err[512];
    char *body;

    if (!CHECK_INT_EQ(parse(&job,
                            "{\"to\":\"14155550100\",\"from\":\"14155550123\","
                            "\"ncco\":[{\"action\":\"stream\",\"streamUrl\":"
                            "[\"https://a.example/a.mp3\"],\"level\":0.5}]}",
                            err, sizeof(err)),
                      0))
        return;
    body = dial_job_request_body(&job, "https://h.example/call_events");
    CHECK_STR_CONTAINS(body, "\"ncco\":[{\"action\":\"stream\",\"streamUrl\":"
                             "[\"https://a.example/a.mp3\"],\"level\":0.5}]");
    free(body);
    dial_job_free(&job);
}

static void
test_check_id(void)
{
    CHECK(dial_job_check_id("0f8e2c1a-9b7d-4c6e-8f5a-3b2d1c0e9f8a", 36) ==
          NULL);
    CHECK(dial_job_check_id("a", 1) == NULL);
    CHECK(dial_job_check_id("", 0) != NULL);
    CHECK(dial_job_check_id("a:b", 3) != NULL);
    CHECK(dial_job_check_id("a{b}", 4) != NULL);
    CHECK(dial_job_check_id("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                            "aaaaaaaaaaaaaaaaa",
                            65) != NULL);
}

int
main(void)
{
    RUN_TEST(test_number_normalize_formats);
    RUN_TEST(test_number_normalize_rejects);
    RUN_TEST(test_number_with_nul_rejected);
    RUN_TEST(test_parse_text_job);
    RUN_TEST(test_parse_all_options);
    RUN_TEST(test_parse_ncco_job);
    RUN_TEST(test_parse_rejects_fields);
    RUN_TEST(test_parse_rejects_content);
    RUN_TEST(test_parse_rejects_options);
    RUN_TEST(test_parse_limits);
    RUN_TEST(test_to_json_round_trip);
    RUN_TEST(test_request_body_text);
    RUN_TEST(test_request_body_answer_url);
    RUN_TEST(test_request_body_ncco);
    RUN_TEST(test_check_id);
    return check_finish();
}
