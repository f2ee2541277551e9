/*
 * One Vonage Voice API webhook, decoded from any of its three encodings
 * (JSON body, form body, query string) into the same flat list of fields,
 * validated, and prepared for the apply script: the record it belongs to,
 * the ordering keys that make the result independent of arrival order, and
 * a digest that recognises the same event sent twice.
 *
 * Nothing here does I/O, so the fuzz harnesses call it directly.
 */
#ifndef CALLHOOK_CALL_EVENT_H
#define CALLHOOK_CALL_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define CALL_EVENT_ID_MAX 128
#define CALL_EVENT_NAME_MAX 64
#define CALL_EVENT_STATUS_MAX 64
#define CALL_EVENT_MAX_FIELDS 100

/* Status ranks: a record's status only ever moves to a higher rank. */
#define RANK_NONE 0
#define RANK_FINAL 50

enum call_event_source {
    CALL_EVENT_SOURCE_JSON,
    CALL_EVENT_SOURCE_FORM,
    CALL_EVENT_SOURCE_QUERY,
};

enum call_event_kind {
    CALL_EVENT_KIND_CALL,         /* stored under call:{uuid} */
    CALL_EVENT_KIND_CONVERSATION, /* stored under conversation:{uuid} */
};

/* What sent the event: the answer webhook never sets status. */
enum call_event_origin {
    CALL_EVENT_ORIGIN_EVENT,
    CALL_EVENT_ORIGIN_ANSWER,
    CALL_EVENT_ORIGIN_DIALER,
};

struct call_event_field {
    const char *name;
    const char *value;
    size_t value_len;
};

struct call_event {
    enum call_event_kind kind;
    enum call_event_origin origin;
    const char *id;     /* call or conversation uuid, validated */
    const char *status; /* the status that competes for "status", or NULL */
    int rank;           /* rank of status, RANK_NONE when it has none */
    int64_t timestamp_ms; /* from "timestamp"; 0 when the event has none */
    uint64_t received_ms; /* arrival time (epoch ms); 0 means now */
    const char *jti;      /* id of the signed token it came with, or NULL;
                             set and owned by the caller */

    /* Fields written to the record: non-empty, in arrival order. */
    size_t nfields;
    struct call_event_field fields[CALL_EVENT_MAX_FIELDS + 2];

    /* The event as received, as a JSON object, for the history list. */
    const char *history;
    size_t history_len;

    char digest[41];          /* hex SHA-1 of the canonical field list */
    char field_version[64];   /* timestamp, rank, digest: fixed width */
    char status_version[96];  /* rank, timestamp, status: fixed width */

    /* Private storage; released by call_event_free(). */
    struct call_event_store *store;
};

/*
 * Decodes and validates one event. On success returns 0 and fills ev,
 * which the caller releases with call_event_free(). On failure returns -1,
 * writes a message naming the offending field into err, and leaves
 * nothing to free. data need not be NUL-terminated and is not kept.
 */
int call_event_parse(struct call_event *ev, enum call_event_source source,
                enum call_event_origin origin, const char *data, size_t len,
                char *err, size_t errlen);

/*
 * Builds an event from name/value pairs that callhook made itself (the
 * dialer's record of a placed call). Same contract as call_event_parse().
 */
int call_event_from_pairs(struct call_event *ev, enum call_event_origin origin,
                     const char *const *pairs, size_t npairs, char *err,
                     size_t errlen);

void call_event_free(struct call_event *ev);

/*
 * Returns a malloc'd copy of a JSON text without the white space outside
 * its strings (numbers and key order stay as sent), or NULL when out of
 * memory. The text is not validated.
 */
char *call_event_compact_json(const char *text, size_t len);

/* Returns the i-th ranked status name, or NULL past the last one. */
const char *call_event_ranked_status(size_t i);

/* Returns the rank of a status, RANK_NONE for statuses without one. */
int call_event_status_rank(const char *status);

/*
 * Checks a call or conversation identifier: 1 to CALL_EVENT_ID_MAX bytes of
 * letters, digits, '-', '_', '.' and ':'. Returns NULL when valid, else a
 * reason.
 */
const char *call_event_check_id(const char *id, size_t len);

/*
 * Parses an ISO 8601 date-time as Vonage sends it ("2026-12-04T10:00:00.000Z",
 * any fraction, "Z" or a numeric offset or none for UTC) into epoch
 * milliseconds. Returns 0 on success, -1 when it is not such a date-time.
 */
int call_event_parse_time(const char *text, size_t len, int64_t *ms);

#endif
