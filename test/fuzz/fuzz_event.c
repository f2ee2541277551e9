/*
 * Fuzzes call_event_parse. The first input byte selects how the rest is
 * parsed: its low two bits pick the encoding (0 JSON, 1 form, 2 query,
 * 3 JSON) and the next two bits the origin (0 event, 1 answer, 2 dialer,
 * 3 event). So '@' is a JSON event, 'A' a form event, 'B' a query event,
 * 'D' a JSON answer, 'E' a form answer, 'F' a query answer and 'H', 'I'
 * and 'J' the same three from the dialer.
 *
 * Every accepted event must satisfy the invariants the store relies on.
 */
#include "callhook/call_event.h"

#include "fuzz_target.h"

#include <string.h>

#include <jansson.h>

static const enum call_event_source sources[4] = {
    CALL_EVENT_SOURCE_JSON,
    CALL_EVENT_SOURCE_FORM,
    CALL_EVENT_SOURCE_QUERY,
    CALL_EVENT_SOURCE_JSON,
};

static const enum call_event_origin origins[4] = {
    CALL_EVENT_ORIGIN_EVENT,
    CALL_EVENT_ORIGIN_ANSWER,
    CALL_EVENT_ORIGIN_DIALER,
    CALL_EVENT_ORIGIN_EVENT,
};

static void
check_fields(const struct call_event *ev)
{
    /* At most CALL_EVENT_MAX_FIELDS fields come from the input. "uuid" and
     * "machine_detection" replace the pairs they are made from, so only
     * "direction", added for the answer webhook, can exceed that. */
    FUZZ_ASSERT(ev->nfields >= 1);
    FUZZ_ASSERT(ev->nfields <= CALL_EVENT_MAX_FIELDS + 1);

    for (size_t i = 0; i < ev->nfields; i++) {
        const struct call_event_field *f = &ev->fields[i];
        size_t name_len;

        FUZZ_ASSERT(f->name != NULL);
        FUZZ_ASSERT(f->value != NULL);
        name_len = strlen(f->name);
        FUZZ_ASSERT(name_len >= 1 && name_len <= CALL_EVENT_NAME_MAX);
        /* Values carry a length, but callers also use them as C strings
         * (the id through strlen), so a NUL may only end them. */
        FUZZ_ASSERT(f->value_len >= 1);
        FUZZ_ASSERT(memchr(f->value, '\0', f->value_len) == NULL);
        FUZZ_ASSERT(f->value[f->value_len] == '\0');
        for (size_t k = 0; k < i; k++)
            FUZZ_ASSERT(strcmp(ev->fields[k].name, f->name) != 0);
        FUZZ_ASSERT(strcmp(f->name, "status") != 0);
        FUZZ_ASSERT(strcmp(f->name, "created_at") != 0);
        FUZZ_ASSERT(strcmp(f->name, "updated_at") != 0);
        FUZZ_ASSERT(strcmp(f->name, "events") != 0);
    }
}

static void
check_id(const struct call_event *ev)
{
    const struct call_event_field *first = &ev->fields[0];

    FUZZ_ASSERT(ev->id != NULL);
    FUZZ_ASSERT(call_event_check_id(ev->id, strlen(ev->id)) == NULL);
    if (ev->kind == CALL_EVENT_KIND_CALL) {
        FUZZ_ASSERT(strcmp(first->name, "uuid") == 0);
        FUZZ_ASSERT(strcmp(first->value, ev->id) == 0);
    } else {
        FUZZ_ASSERT(ev->kind == CALL_EVENT_KIND_CONVERSATION);
        for (size_t i = 0; i < ev->nfields; i++)
            FUZZ_ASSERT(strcmp(ev->fields[i].name, "uuid") != 0);
    }
}

static void
check_versions(const struct call_event *ev)
{
    size_t status_len = ev->status ? strlen(ev->status) : 0;

    FUZZ_ASSERT(strlen(ev->digest) == 40);
    FUZZ_ASSERT(strspn(ev->digest, "0123456789abcdef") == 40);
    FUZZ_ASSERT((ev->status != NULL) == (ev->rank != RANK_NONE));
    if (ev->status != NULL)
        FUZZ_ASSERT(call_event_status_rank(ev->status) == ev->rank);
    if (ev->origin == CALL_EVENT_ORIGIN_ANSWER)
        FUZZ_ASSERT(ev->status == NULL);
    FUZZ_ASSERT(ev->timestamp_ms >= 0);
    FUZZ_ASSERT(strlen(ev->field_version) == 15 + 2 + 40);
    FUZZ_ASSERT(strlen(ev->status_version) == 2 + 15 + status_len);
}

static void
check_history(const struct call_event *ev)
{
    json_t *history;

    FUZZ_ASSERT(ev->history != NULL);
    FUZZ_ASSERT(ev->history_len > 0);
    /* The parser decodes integers as reals too, so a JSON body with an
     * integer past int64 is still a valid history entry. */
    history = json_loadb(ev->history, ev->history_len,
                         JSON_DECODE_INT_AS_REAL, NULL);
    FUZZ_ASSERT(json_is_object(history));
    json_decref(history);
}

/* The same input must give the same event: the digest deduplicates. */
static void
check_repeatable(const struct call_event *ev, enum call_event_source source,
                 const char *body, size_t len)
{
    struct call_event again;
    char err[256];

    FUZZ_ASSERT(call_event_parse(&again, source, ev->origin, body, len, err,
                                 sizeof(err)) == 0);
    FUZZ_ASSERT(strcmp(again.digest, ev->digest) == 0);
    FUZZ_ASSERT(strcmp(again.field_version, ev->field_version) == 0);
    FUZZ_ASSERT(strcmp(again.status_version, ev->status_version) == 0);
    FUZZ_ASSERT(again.nfields == ev->nfields);
    call_event_free(&again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum call_event_source source;
    enum call_event_origin origin;
    struct call_event ev;
    const char *body;
    size_t len;
    char err[256];

    if (size == 0)
        return 0;
    source = sources[data[0] & 3];
    origin = origins[(data[0] >> 2) & 3];
    body = (const char *)data + 1;
    len = size - 1;

    memset(err, 0, sizeof(err));
    if (call_event_parse(&ev, source, origin, body, len, err,
                         sizeof(err)) != 0) {
        FUZZ_ASSERT(err[0] != '\0');
        FUZZ_ASSERT(ev.store == NULL);
        return 0;
    }
    FUZZ_ASSERT(ev.origin == origin);
    check_fields(&ev);
    check_id(&ev);
    check_versions(&ev);
    check_history(&ev);
    check_repeatable(&ev, source, body, len);
    call_event_free(&ev);
    return 0;
}
