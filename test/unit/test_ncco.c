/* Unit tests for the NCCO checker and builder. */
#include "callhook/ncco.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static char ncco_error[256];

/* Checks a heap copy of exactly strlen(text) bytes, so that
 * AddressSanitizer reports any read past the end. */
static int
check_ncco(const char *text)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    int rc;

    if (copy == NULL)
        abort();
    memcpy(copy, text, len);
    ncco_error[0] = '\0';
    rc = ncco_check(copy, len, ncco_error, sizeof(ncco_error));
    free(copy);
    return rc;
}

#define CHECK_NCCO_VALID(text)                                              \
    do {                                                                    \
        if (!CHECK_INT_EQ(check_ncco(text), 0))                             \
            fprintf(stderr, "    error: %s\n", ncco_error);                 \
    } while (0)

#define CHECK_NCCO_INVALID(text, fragment)                                  \
    do {                                                                    \
        if (CHECK_INT_EQ(check_ncco(text), -1))                             \
            CHECK_STR_CONTAINS(ncco_error, (fragment));                     \
    } while (0)

static void
test_valid_each_action(void)
{
    CHECK_NCCO_VALID("[{\"action\":\"talk\",\"text\":\"Hello\"}]");
    CHECK_NCCO_VALID("[{\"action\":\"stream\",\"streamUrl\":"
                     "[\"https://example.com/music.mp3\"]}]");
    CHECK_NCCO_VALID("[{\"action\":\"connect\",\"endpoint\":[{\"type\":"
                     "\"phone\",\"number\":\"447700900000\"}]}]");
    CHECK_NCCO_VALID("[{\"action\":\"input\",\"type\":[\"dtmf\"],"
                     "\"dtmf\":{\"maxDigits\":4}}]");
    CHECK_NCCO_VALID("[{\"action\":\"record\",\"eventUrl\":"
                     "[\"https://example.com/recordings\"]}]");
    CHECK_NCCO_VALID("[{\"action\":\"conversation\",\"name\":\"room-1\"}]");
    CHECK_NCCO_VALID("[{\"action\":\"notify\",\"payload\":{\"step\":1},"
                     "\"eventUrl\":[\"https://example.com/notify\"]}]");
    CHECK_NCCO_VALID("[{\"action\":\"wait\",\"timeout\":2}]");
}

static void
test_valid_sequence(void)
{
    CHECK_NCCO_VALID(
        "[\n"
        "  {\"action\": \"talk\", \"text\": \"Press 1\", \"bargeIn\": true},\n"
        "  {\"action\": \"input\", \"type\": [\"dtmf\"],\n"
        "   \"eventUrl\": [\"https://example.com/input\"]},\n"
        "  {\"action\": \"record\"},\n"
        "  {\"action\": \"wait\"}\n"
        "]");
}

static void
test_action_count_limit(void)
{
    static const char action[] = "{\"action\":\"wait\"}";
    char *text = malloc(101 * (sizeof(action) + 1) + 3);
    size_t used = 0;

    if (text == NULL)
        abort();
    text[used++] = '[';
    for (int i = 0; i < 100; i++) {
        if (i > 0)
            text[used++] = ',';
        memcpy(text + used, action, sizeof(action) - 1);
        used += sizeof(action) - 1;
    }
    text[used] = ']';
    text[used + 1] = '\0';
    CHECK_NCCO_VALID(text);

    text[used++] = ',';
    memcpy(text + used, action, sizeof(action) - 1);
    used += sizeof(action) - 1;
    text[used] = ']';
    text[used + 1] = '\0';
    CHECK_NCCO_INVALID(text, "more than 100 actions");
    free(text);
}

static void
test_not_a_non_empty_array(void)
{
    CHECK_NCCO_INVALID("[]", "non-empty JSON array");
    CHECK_NCCO_INVALID("{\"action\":\"talk\",\"text\":\"Hi\"}",
                       "non-empty JSON array");
    CHECK_NCCO_INVALID("\"talk\"", "not valid JSON");
    CHECK_NCCO_INVALID("", "not valid JSON");
    CHECK_NCCO_INVALID("[{\"action\":\"talk\",\"text\":\"Hi\"}",
                       "not valid JSON");
    CHECK_NCCO_INVALID("[{\"action\":\"talk\",\"text\":\"Hi\"}] x",
                       "not valid JSON");
}

static void
test_element_not_object(void)
{
    CHECK_NCCO_INVALID("[1]", "action 0 is not a JSON object");
    CHECK_NCCO_INVALID("[\"talk\"]", "action 0 is not a JSON object");
    CHECK_NCCO_INVALID("[null]", "action 0 is not a JSON object");
    CHECK_NCCO_INVALID("[{\"action\":\"wait\"},[]]",
                       "action 1 is not a JSON object");
}

static void
test_action_missing(void)
{
    CHECK_NCCO_INVALID("[{\"text\":\"Hello\"}]", "action 0 has no");
    CHECK_NCCO_INVALID("[{\"action\":5}]", "action 0 has no");
    CHECK_NCCO_INVALID("[{\"action\":null}]", "action 0 has no");
    CHECK_NCCO_INVALID("[{}]", "\"action\"");
}

static void
test_action_unknown(void)
{
    CHECK_NCCO_INVALID("[{\"action\":\"dance\"}]", "unknown action \"dance\"");
    CHECK_NCCO_INVALID("[{\"action\":\"Talk\",\"text\":\"Hi\"}]",
                       "unknown action \"Talk\"");
    CHECK_NCCO_INVALID("[{\"action\":\"\"}]", "unknown action");
    CHECK_NCCO_INVALID("[{\"action\":\"wait\"},{\"action\":\"jump\"}]",
                       "action 1: unknown action");
}

static void
test_required_parameter_missing(void)
{
    CHECK_NCCO_INVALID("[{\"action\":\"talk\"}]", "\"text\"");
    CHECK_NCCO_INVALID("[{\"action\":\"stream\"}]", "\"streamUrl\"");
    CHECK_NCCO_INVALID("[{\"action\":\"connect\"}]", "\"endpoint\"");
    CHECK_NCCO_INVALID("[{\"action\":\"conversation\"}]", "\"name\"");
    CHECK_NCCO_INVALID("[{\"action\":\"notify\",\"payload\":{}}]",
                       "\"eventUrl\"");
    CHECK_NCCO_INVALID("[{\"action\":\"talk\",\"text\":\"a\"},"
                       "{\"action\":\"talk\"}]",
                       "action 1 (talk) needs \"text\"");
}

static void
test_required_parameter_wrong_type(void)
{
    CHECK_NCCO_INVALID("[{\"action\":\"talk\",\"text\":5}]",
                       "needs \"text\" as a string");
    CHECK_NCCO_INVALID("[{\"action\":\"talk\",\"text\":null}]",
                       "needs \"text\" as a string");
    CHECK_NCCO_INVALID("[{\"action\":\"stream\",\"streamUrl\":"
                       "\"https://example.com/a.mp3\"}]",
                       "needs \"streamUrl\" as an array");
    CHECK_NCCO_INVALID("[{\"action\":\"connect\",\"endpoint\":"
                       "{\"type\":\"phone\"}}]",
                       "needs \"endpoint\" as an array");
    CHECK_NCCO_INVALID("[{\"action\":\"conversation\",\"name\":[\"a\"]}]",
                       "needs \"name\" as a string");
    CHECK_NCCO_INVALID("[{\"action\":\"notify\",\"eventUrl\":\"x\"}]",
                       "needs \"eventUrl\" as an array");
}

static void
test_duplicate_keys_rejected(void)
{
    CHECK_NCCO_INVALID("[{\"action\":\"talk\",\"action\":\"wait\","
                       "\"text\":\"Hi\"}]",
                       "duplicate");
}

static void
test_length_bounds_input(void)
{
    static const char text[] = "[{\"action\":\"wait\"}]garbage";

    CHECK_INT_EQ(ncco_check(text, strlen(text) - strlen("garbage"),
                            ncco_error, sizeof(ncco_error)),
                 0);
}

static void
test_small_error_buffer(void)
{
    char err[6];

    memset(err, 'x', sizeof(err));
    CHECK_INT_EQ(ncco_check("[]", 2, err, sizeof(err)), -1);
    CHECK_INT_EQ(strlen(err), sizeof(err) - 1);
}

/* Checks that ncco_talk(text) is a valid NCCO that carries text intact. */
static void
check_talk_round_trip(const char *text)
{
    char *ncco = ncco_talk(text);
    json_t *root, *action;

    if (!CHECK(ncco != NULL))
        return;
    CHECK_NCCO_VALID(ncco);
    root = json_loads(ncco, 0, NULL);
    if (CHECK(json_is_array(root) && json_array_size(root) == 1)) {
        action = json_array_get(root, 0);
        CHECK_STR_EQ(json_string_value(json_object_get(action, "action")),
                     "talk");
        CHECK_STR_EQ(json_string_value(json_object_get(action, "text")),
                     text);
        CHECK_INT_EQ(json_object_size(action), 2);
    }
    json_decref(root);
    free(ncco);
}

static void
test_talk_output(void)
{
    char *ncco = ncco_talk("Hello");

    if (CHECK(ncco != NULL))
        CHECK_STR_EQ(ncco, "[{\"action\":\"talk\",\"text\":\"Hello\"}]");
    free(ncco);
}

static void
test_talk_escapes(void)
{
    char *ncco = ncco_talk("say \"hi\" \\ now");

    if (CHECK(ncco != NULL)) {
        CHECK_STR_CONTAINS(ncco, "say \\\"hi\\\" \\\\ now");
        free(ncco);
    }
    check_talk_round_trip("say \"hi\" \\ now");
    check_talk_round_trip("\"}],[{\"action\":\"connect\"");
    check_talk_round_trip("line\nbreak\ttab");
    check_talk_round_trip("caf\xc3\xa9 \xe2\x82\xac");
    check_talk_round_trip("");
}

static void
test_talk_rejects_invalid_text(void)
{
    char *ncco = ncco_talk("\xff");

    CHECK(ncco == NULL);
    free(ncco);
    CHECK(ncco_talk(NULL) == NULL);
}

int
main(void)
{
    RUN_TEST(test_valid_each_action);
    RUN_TEST(test_valid_sequence);
    RUN_TEST(test_action_count_limit);
    RUN_TEST(test_not_a_non_empty_array);
    RUN_TEST(test_element_not_object);
    RUN_TEST(test_action_missing);
    RUN_TEST(test_action_unknown);
    RUN_TEST(test_required_parameter_missing);
    RUN_TEST(test_required_parameter_wrong_type);
    RUN_TEST(test_duplicate_keys_rejected);
    RUN_TEST(test_length_bounds_input);
    RUN_TEST(test_small_error_buffer);
    RUN_TEST(test_talk_output);
    RUN_TEST(test_talk_escapes);
    RUN_TEST(test_talk_rejects_invalid_text);
    return check_finish();
}
