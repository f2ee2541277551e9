/*
 * A local stand-in for the Vonage Voice API's POST /v1/calls, for tests
 * and development: it checks the RS256 bearer token and the request body
 * as the real API does, answers like it, can be told to fail in the ways
 * the real one fails, and sends each placed call's event webhooks.
 */
#ifndef FAKEAPI_H
#define FAKEAPI_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/evp.h>

/* E.164 digits without '+', as the Voice API takes them. */
#define NUMBER_MIN_DIGITS 7
#define NUMBER_MAX_DIGITS 15

#define URL_MAX 2048

/* How the fake responds to the next API requests (POST /_fake/mode). */
enum fake_mode {
    MODE_OK,
    MODE_STATUS,             /* respond with a status and a problem body */
    MODE_STALL,              /* read the request, never respond */
    MODE_CLOSE,              /* read the request, close the connection */
    MODE_STATUS_AFTER_PLACE, /* place the call, then respond with a status */
};

/* Which lifecycle events a placed call sends to its event_url. */
enum fake_events {
    EVENTS_NORMAL, /* started, ringing, answered, completed */
    EVENTS_BUSY,   /* started, ringing, busy, completed */
    EVENTS_NONE,
};

/* A create-call request that passed validation. */
struct call_request {
    char to[NUMBER_MAX_DIGITS + 1];
    char from[NUMBER_MAX_DIGITS + 1]; /* "" when random_from_number */
    char event_url[URL_MAX + 1];      /* "" when absent */
    int event_method_get;             /* event_method "GET" */
};

struct fake_stats {
    uint64_t requests;      /* to the API, not to /_fake/ */
    uint64_t calls_placed;
    uint64_t responses[600]; /* by status code */
    uint64_t closed;         /* connections closed without a response */
    uint64_t stalled;        /* requests held without a response */
    unsigned max_calls_per_second;
    json_t *destinations; /* number -> calls placed */

    uint64_t webhooks_sent;
    uint64_t webhooks_failed;  /* no HTTP response */
    uint64_t webhooks_refused; /* event_url not on loopback */
    uint64_t webhook_responses[600];
};

struct held_connection;
struct delivery;

struct fakeapi {
    struct event_base *base;
    struct evhttp *http;
    EVP_PKEY *public_key;
    const char *application_id;
    unsigned rate;        /* calls per second, 0 for no limit */
    unsigned retry_after; /* seconds for Retry-After, 0 for none */

    enum fake_mode mode;
    int mode_status;
    unsigned mode_remaining;
    enum fake_events events;
    int shuffle;
    int duplicate;

    /* Monotonic milliseconds of the calls placed in the last second,
     * oldest first, in a ring buffer that grows when full. */
    uint64_t *window;
    size_t window_cap, window_start, window_count;

    struct jti_cache *seen_jti;
    struct fake_stats stats;

    struct held_connection *held;
    struct event *close_event;
    struct delivery *deliveries; /* scheduled or in flight */
};

/* ---- validate.c ------------------------------------------------------- */

/*
 * Checks a create-call body. Returns 0 and fills call when it is valid.
 * Otherwise returns -1 and stores in *problem a new 400 problem object
 * (type, title, detail, invalid_parameters) for the caller to send.
 */
int validate_call(const char *body, size_t len, struct call_request *call,
                  json_t **problem);

/* Returns nonzero when url is an absolute http or https URL. */
int is_http_url(const char *url);

/* ---- events.c --------------------------------------------------------- */

/*
 * Schedules the event webhooks of a placed call a few milliseconds apart,
 * shaped by app->events, app->shuffle and app->duplicate. Nothing
 * is sent when the call has no event_url or the URL is not on loopback.
 */
void events_schedule(struct fakeapi *app, const struct call_request *call,
                     const char *from, const char *uuid,
                     const char *conversation_uuid);

/* Cancels scheduled webhooks and drops those in flight. */
void events_cancel_all(struct fakeapi *app);

/* Webhooks scheduled or in flight. */
size_t events_pending(const struct fakeapi *app);

/* ---- fakeapi.c -------------------------------------------------------- */

/* Writes epoch_ms in UTC as "2026-12-04T10:00:00.000Z" into out. */
void format_timestamp(uint64_t epoch_ms, char out[32]);

/* A uniformly distributed integer in [low, high], from RAND_bytes(). */
unsigned random_between(unsigned low, unsigned high);

#endif
