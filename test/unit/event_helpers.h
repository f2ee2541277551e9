/* Shorthands shared by the call_event unit tests. Include after check.h. */
#ifndef CALLHOOK_TEST_EVENT_HELPERS_H
#define CALLHOOK_TEST_EVENT_HELPERS_H

#include "callhook/call_event.h"

#include <stdlib.h>
#include <string.h>

static char event_error[256];

/*
 * Parses text from a heap copy of exactly strlen(text) bytes, so that
 * AddressSanitizer reports any read past the end of the input.
 */
static inline int
parse_event(struct call_event *ev, enum call_event_source source,
            enum call_event_origin origin, const char *text)
{
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    int rc;

    if (copy == NULL)
        abort();
    memcpy(copy, text, len);
    event_error[0] = '\0';
    rc = call_event_parse(ev, source, origin, copy, len, event_error,
                          sizeof(event_error));
    free(copy);
    return rc;
}

static inline const struct call_event_field *
find_field(const struct call_event *ev, const char *name)
{
    for (size_t i = 0; i < ev->nfields; i++) {
        if (strcmp(ev->fields[i].name, name) == 0)
            return &ev->fields[i];
    }
    return NULL;
}

static inline size_t
count_fields(const struct call_event *ev, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < ev->nfields; i++)
        n += strcmp(ev->fields[i].name, name) == 0;
    return n;
}

/* Checks that the event has exactly one field name, with that value. */
#define CHECK_FIELD(ev, name, expected)                                     \
    do {                                                                    \
        const struct call_event_field *found_ = find_field((ev), (name));   \
        if (CHECK(found_ != NULL)) {                                        \
            CHECK_MEM_EQ(found_->value, found_->value_len, (expected),      \
                         strlen(expected));                                 \
            CHECK_INT_EQ(found_->value_len, strlen(found_->value));         \
        }                                                                   \
        CHECK_INT_EQ(count_fields((ev), (name)), 1);                        \
    } while (0)

#define CHECK_NO_FIELD(ev, name) CHECK(find_field((ev), (name)) == NULL)

/* Checks that parsing fails with a message containing fragment and leaves
 * nothing to free. */
#define CHECK_REJECTS(source, origin, text, fragment)                       \
    do {                                                                    \
        struct call_event rejected_;                                        \
        if (!CHECK_INT_EQ(parse_event(&rejected_, (source), (origin),       \
                                      (text)),                              \
                          -1)) {                                            \
            call_event_free(&rejected_);                                    \
            break;                                                          \
        }                                                                   \
        CHECK_STR_CONTAINS(event_error, (fragment));                        \
        CHECK(rejected_.store == NULL);                                     \
    } while (0)

#define CHECK_JSON_REJECTS(text, fragment)                                  \
    CHECK_REJECTS(CALL_EVENT_SOURCE_JSON, CALL_EVENT_ORIGIN_EVENT, text,    \
                  fragment)
#define CHECK_FORM_REJECTS(text, fragment)                                  \
    CHECK_REJECTS(CALL_EVENT_SOURCE_FORM, CALL_EVENT_ORIGIN_EVENT, text,    \
                  fragment)
#define CHECK_QUERY_REJECTS(text, fragment)                                 \
    CHECK_REJECTS(CALL_EVENT_SOURCE_QUERY, CALL_EVENT_ORIGIN_EVENT, text,   \
                  fragment)

/* Parses text that must be accepted, and prints the parser's message
 * when it is rejected. */
#define CHECK_PARSES(ev, source, origin, text)                              \
    (CHECK_INT_EQ(parse_event((ev), (source), (origin), (text)), 0)         \
         ? 1                                                                \
         : (fprintf(stderr, "    error: %s\n", event_error), 0))

#define CHECK_JSON_PARSES(ev, text)                                         \
    CHECK_PARSES(ev, CALL_EVENT_SOURCE_JSON, CALL_EVENT_ORIGIN_EVENT, text)
#define CHECK_FORM_PARSES(ev, text)                                         \
    CHECK_PARSES(ev, CALL_EVENT_SOURCE_FORM, CALL_EVENT_ORIGIN_EVENT, text)
#define CHECK_QUERY_PARSES(ev, text)                                        \
    CHECK_PARSES(ev, CALL_EVENT_SOURCE_QUERY, CALL_EVENT_ORIGIN_EVENT, text)

#endif
