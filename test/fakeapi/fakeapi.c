/*
 * fakeapi: a local Voice API for tests and development. See README.md in
 * this folder for the routes, the control API and an example session.
 */
#include "fakeapi.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "callhook/jwt.h"
#include "log.h"

/* Seconds an "iat" or "nbf" may lie ahead of this machine's clock. */
#define CLOCK_SKEW_S 10

#define MAX_BODY (1024 * 1024)
#define MAX_HEADERS (16 * 1024)
#define REQUEST_TIMEOUT_S 30
#define MODE_COUNT_MAX 1000000

/* Replay protection keeps each jti until its token's exp has passed. */
#define JTI_BUCKETS 4096
#define JTI_MAX 1000000

struct jti_entry {
    struct jti_entry *next;
    int64_t exp;
    char jti[];
};

struct jti_cache {
    struct jti_entry *buckets[JTI_BUCKETS];
    size_t count;
};

struct held_connection {
    struct fakeapi *app;
    struct held_connection *prev, *next;
    struct evhttp_connection *evcon;
    int close_pending;
};

static struct log_ratelimit throttle_log = LOG_RATELIMIT_INIT(1000);

/* ---- small utilities ------------------------------------------------- */

void
format_timestamp(uint64_t epoch_ms, char out[32])
{
    time_t seconds = (time_t)(epoch_ms / 1000);
    struct tm tm;
    size_t n;

    gmtime_r(&seconds, &tm);
    n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(epoch_ms % 1000));
}

unsigned
random_between(unsigned low, unsigned high)
{
    uint32_t r = 0;

    if (high <= low)
        return low;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)rand();
    /* The modulo bias is below 1e-7 for these small ranges. */
    return low + r % (high - low + 1);
}

/* ---- jti replay cache ------------------------------------------------ */

static size_t
jti_bucket(const char *jti)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)jti; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % JTI_BUCKETS;
}

/*
 * Records jti until exp. Returns 0 when it is new, 1 when it was seen
 * before, -1 when the cache is full or out of memory.
 */
static int
jti_remember(struct jti_cache *cache, const char *jti, int64_t exp,
             int64_t now)
{
    struct jti_entry **link = &cache->buckets[jti_bucket(jti)];
    struct jti_entry *entry;
    size_t len = strlen(jti);

    while ((entry = *link) != NULL) {
        if (entry->exp < now) {
            /* A token past its exp fails before this check anyway. */
            *link = entry->next;
            free(entry);
            cache->count--;
            continue;
        }
        if (strcmp(entry->jti, jti) == 0)
            return 1;
        link = &entry->next;
    }
    if (cache->count >= JTI_MAX)
        return -1;
    entry = malloc(sizeof(*entry) + len + 1);
    if (entry == NULL)
        return -1;
    entry->exp = exp;
    memcpy(entry->jti, jti, len + 1);
    entry->next = NULL;
    *link = entry;
    cache->count++;
    return 0;
}

static void
jti_clear(struct jti_cache *cache)
{
    for (size_t i = 0; i < JTI_BUCKETS; i++) {
        struct jti_entry *entry = cache->buckets[i], *next;

        for (; entry != NULL; entry = next) {
            next = entry->next;
            free(entry);
        }
        cache->buckets[i] = NULL;
    }
    cache->count = 0;
}

/* ---- rate window ----------------------------------------------------- */

/* Drops calls older than one second and returns how many remain. */
static size_t
window_prune(struct fakeapi *app, uint64_t now_ms)
{
    while (app->window_count > 0 &&
           app->window[app->window_start] + 1000 <= now_ms) {
        app->window_start = (app->window_start + 1) % app->window_cap;
        app->window_count--;
    }
    return app->window_count;
}

static int
window_push(struct fakeapi *app, uint64_t now_ms)
{
    if (app->window_count == app->window_cap) {
        size_t cap = app->window_cap ? app->window_cap * 2 : 64;
        uint64_t *grown = malloc(cap * sizeof(*grown));

        if (grown == NULL)
            return -1;
        for (size_t i = 0; i < app->window_count; i++)
            grown[i] = app->window[(app->window_start + i) %
                                   app->window_cap];
        free(app->window);
        app->window = grown;
        app->window_cap = cap;
        app->window_start = 0;
    }
    app->window[(app->window_start + app->window_count) % app->window_cap] =
        now_ms;
    app->window_count++;
    if (app->window_count > app->stats.max_calls_per_second)
        app->stats.max_calls_per_second = (unsigned)app->window_count;
    return 0;
}

/* ---- replies ---------------------------------------------------------- */

static const struct {
    int code;
    const char *title;
    const char *anchor;
} problem_types[] = {
    {200, "OK", NULL},
    {201, "Created", NULL},
    {400, "Bad Request", "bad-request"},
    {401, "Unauthorized", "unauthorized"},
    {403, "Forbidden", "forbidden"},
    {404, "Not Found", "not-found"},
    {405, "Method Not Allowed", "method-not-allowed"},
    {409, "Conflict", "conflict"},
    {413, "Payload Too Large", "payload-too-large"},
    {422, "Unprocessable Entity", "unprocessable-entity"},
    {429, "Too Many Requests", "throttled"},
    {500, "Internal Server Error", "internal-error"},
    {502, "Bad Gateway", "bad-gateway"},
    {503, "Service Unavailable", "service-unavailable"},
    {504, "Gateway Timeout", "gateway-timeout"},
};

static const char *
status_title(int code)
{
    for (size_t i = 0; i < sizeof(problem_types) / sizeof(problem_types[0]);
         i++) {
        if (problem_types[i].code == code)
            return problem_types[i].title;
    }
    return code >= 500 ? "Server Error" : code >= 400 ? "Client Error" : "OK";
}

/*
 * Builds an RFC 7807 problem object. NOTE: only the 401 type URI is known
 * to match the real API. The others follow its pattern.
 */
static json_t *
make_problem(int code, const char *detail)
{
    const char *anchor = code >= 500 ? "internal-error" : "bad-request";
    char type[96];

    for (size_t i = 0; i < sizeof(problem_types) / sizeof(problem_types[0]);
         i++) {
        if (problem_types[i].code == code && problem_types[i].anchor)
            anchor = problem_types[i].anchor;
    }
    snprintf(type, sizeof(type), "https://developer.nexmo.com/api-errors#%s",
             anchor);
    return json_pack("{s:s, s:s, s:s}", "type", type, "title",
                     status_title(code), "detail", detail);
}

static void
send_json(struct evhttp_request *req, int code, json_t *body,
          const char *content_type)
{
    struct evbuffer *buf = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      content_type);
    if (buf != NULL && text != NULL)
        evbuffer_add(buf, text, strlen(text));
    evhttp_send_reply(req, code, status_title(code), buf);
    if (buf != NULL)
        evbuffer_free(buf);
    free(text);
}

/* Sends an API reply and counts it. Takes over the reference to body. */
static void
api_reply(struct fakeapi *app, struct evhttp_request *req, int code,
          json_t *body)
{
    int problem = code >= 400;
    char instance[JWT_UUID_SIZE];

    if (problem && body != NULL && jwt_random_uuid(instance) == 0)
        json_object_set_new(body, "instance", json_string(instance));
    app->stats.responses[code]++;
    send_json(req, code, body,
              problem ? "application/problem+json" : "application/json");
    json_decref(body);
}

static void
api_problem(struct fakeapi *app, struct evhttp_request *req, int code,
            const char *detail)
{
    api_reply(app, req, code, make_problem(code, detail));
}

static void
admin_reply(struct evhttp_request *req, int code, json_t *body)
{
    send_json(req, code, body,
              code >= 400 ? "application/problem+json" : "application/json");
    json_decref(body);
}

/* ---- held connections (stall and close modes) -------------------------- */

static void
unlink_held(struct fakeapi *app, struct held_connection *h)
{
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        app->held = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
}

/* evhttp freed the connection itself. */
static void
held_closed(struct evhttp_connection *evcon, void *arg)
{
    struct held_connection *h = arg;

    unlink_held(h->app, h);
    free(h);
}

static void
release_held(struct fakeapi *app, struct held_connection *h)
{
    unlink_held(app, h);
    evhttp_connection_set_closecb(h->evcon, NULL, NULL);
    /* Frees the unanswered request too. */
    evhttp_connection_free(h->evcon);
    free(h);
}

static void
release_all_held(struct fakeapi *app)
{
    while (app->held != NULL)
        release_held(app, app->held);
}

/* Runs after the request callback has returned, so freeing the
 * connection cannot pull it from under evhttp. */
static void
close_pending(evutil_socket_t fd, short what, void *arg)
{
    struct fakeapi *app = arg;
    struct held_connection *h = app->held, *next;

    for (; h != NULL; h = next) {
        next = h->next;
        if (h->close_pending)
            release_held(app, h);
    }
}

static int
hold_connection(struct fakeapi *app, struct evhttp_request *req,
                int close_now)
{
    struct held_connection *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return -1;
    h->app = app;
    h->evcon = evhttp_request_get_connection(req);
    h->close_pending = close_now;
    h->next = app->held;
    if (h->next != NULL)
        h->next->prev = h;
    app->held = h;
    evhttp_connection_set_closecb(h->evcon, held_closed, h);
    if (close_now)
        event_active(app->close_event, EV_TIMEOUT, 1);
    return 0;
}

static size_t
count_held(const struct fakeapi *app)
{
    size_t n = 0;

    for (const struct held_connection *h = app->held; h != NULL; h = h->next)
        n++;
    return n;
}

/* ---- POST /v1/calls ----------------------------------------------------- */

static int
claim_integer(json_t *claims, const char *name, int64_t *out)
{
    json_t *value = json_object_get(claims, name);

    if (!json_is_integer(value))
        return -1;
    *out = (int64_t)json_integer_value(value);
    return 0;
}

/*
 * Checks the bearer token. Returns 0 when the request may go on, else
 * writes the reason into detail.
 */
static int
check_token(struct fakeapi *app, struct evhttp_request *req, char *detail,
            size_t detail_len)
{
    const char *header = evhttp_find_header(
        evhttp_request_get_input_headers(req), "Authorization");
    const char *token, *app_id;
    size_t len;
    int64_t now = (int64_t)time(NULL), iat, exp, nbf;
    json_t *claims, *jti;
    enum jwt_result rc;
    int seen, ok = -1;

    if (header == NULL) {
        snprintf(detail, detail_len, "Missing Authorization header: send "
                 "\"Authorization: Bearer <JWT>\".");
        return -1;
    }
    if (strncasecmp(header, "Bearer ", 7) != 0) {
        snprintf(detail, detail_len,
                 "The Authorization header must use the Bearer scheme.");
        return -1;
    }
    token = header + 7;
    while (*token == ' ')
        token++;
    len = strlen(token);
    while (len > 0 && token[len - 1] == ' ')
        len--;

    rc = jwt_verify_rs256(token, len, app->public_key, &claims);
    if (rc != JWT_OK) {
        snprintf(detail, detail_len, "Invalid token: %s.", jwt_strerror(rc));
        return -1;
    }

    app_id = json_string_value(json_object_get(claims, "application_id"));
    jti = json_object_get(claims, "jti");
    if (app_id == NULL) {
        snprintf(detail, detail_len, "The token has no application_id.");
    } else if (strcmp(app_id, app->application_id) != 0) {
        snprintf(detail, detail_len,
                 "The token's application_id does not match this "
                 "application.");
    } else if (claim_integer(claims, "iat", &iat) != 0) {
        snprintf(detail, detail_len, "The token has no integer iat.");
    } else if (iat > now + CLOCK_SKEW_S) {
        snprintf(detail, detail_len,
                 "The token's iat is %lld s in the future.",
                 (long long)(iat - now));
    } else if (claim_integer(claims, "exp", &exp) != 0) {
        snprintf(detail, detail_len, "The token has no integer exp.");
    } else if (exp <= now) {
        snprintf(detail, detail_len, "The token expired %lld s ago.",
                 (long long)(now - exp));
    } else if (claim_integer(claims, "nbf", &nbf) == 0 &&
               nbf > now + CLOCK_SKEW_S) {
        snprintf(detail, detail_len, "The token is not valid yet (nbf).");
    } else if (!json_is_string(jti) || json_string_length(jti) == 0 ||
               json_string_length(jti) > JWT_CLAIM_MAX ||
               strlen(json_string_value(jti)) != json_string_length(jti)) {
        snprintf(detail, detail_len,
                 "The token has no jti of 1 to %d bytes.", JWT_CLAIM_MAX);
    } else if ((seen = jti_remember(app->seen_jti, json_string_value(jti),
                                    exp, now)) == 1) {
        snprintf(detail, detail_len,
                 "The token's jti was used before: sign a new token for "
                 "every request.");
    } else if (seen < 0) {
        snprintf(detail, detail_len,
                 "The fake API's replay cache is full; POST /_fake/reset.");
    } else {
        ok = 0;
    }
    json_decref(claims);
    return ok;
}

/* A made-up caller id for random_from_number. */
static void
random_number(char out[NUMBER_MAX_DIGITS + 1])
{
    snprintf(out, NUMBER_MAX_DIGITS + 1, "1415555%04u",
             random_between(0, 9999));
}

static void
count_destination(struct fakeapi *app, const char *number)
{
    json_t *count = json_object_get(app->stats.destinations, number);

    json_object_set_new(app->stats.destinations, number,
                        json_integer(count ? json_integer_value(count) + 1
                                           : 1));
}

/* Places the call: ids, statistics, the rate window and the webhooks. */
static void
place_call(struct fakeapi *app, const struct call_request *call,
           uint64_t now_ms, char uuid[JWT_UUID_SIZE],
           char conversation_uuid[JWT_UUID_SIZE + 4])
{
    char from[NUMBER_MAX_DIGITS + 1], masked[24];
    char conversation_id[JWT_UUID_SIZE];

    jwt_random_uuid(uuid);
    jwt_random_uuid(conversation_id);
    snprintf(conversation_uuid, JWT_UUID_SIZE + 4, "CON-%s",
             conversation_id);
    if (call->from[0] != '\0')
        memcpy(from, call->from, sizeof(from));
    else
        random_number(from);

    app->stats.calls_placed++;
    count_destination(app, call->to);
    if (window_push(app, now_ms) != 0)
        log_error("out of memory: call %s is missing from the rate window",
                  uuid);
    log_info("placed call %s to %s", uuid,
             log_mask_number(call->to, masked, sizeof(masked)));
    events_schedule(app, call, from, uuid, conversation_uuid);
}

/* Applies the control mode. Returns nonzero when it has handled req. */
static int
apply_mode(struct fakeapi *app, struct evhttp_request *req,
           const struct call_request *call, uint64_t now_ms)
{
    enum fake_mode mode = app->mode;
    char uuid[JWT_UUID_SIZE], conversation_uuid[JWT_UUID_SIZE + 4];
    char detail[160];

    if (mode == MODE_OK)
        return 0;
    if (--app->mode_remaining == 0)
        app->mode = MODE_OK;

    switch (mode) {
    case MODE_STATUS:
        snprintf(detail, sizeof(detail),
                 "Simulated failure: the fake API was told to answer %d.",
                 app->mode_status);
        api_problem(app, req, app->mode_status, detail);
        break;
    case MODE_STALL:
        if (hold_connection(app, req, 0) != 0) {
            api_problem(app, req, 500, "Out of memory.");
            break;
        }
        app->stats.stalled++;
        log_info("holding a create-call request without an answer");
        break;
    case MODE_CLOSE:
        if (hold_connection(app, req, 1) != 0) {
            api_problem(app, req, 500, "Out of memory.");
            break;
        }
        app->stats.closed++;
        log_info("closing a create-call connection without an answer");
        break;
    case MODE_STATUS_AFTER_PLACE:
        place_call(app, call, now_ms, uuid, conversation_uuid);
        snprintf(detail, sizeof(detail),
                 "Simulated failure after the call was placed: the fake API "
                 "was told to answer %d.",
                 app->mode_status);
        api_problem(app, req, app->mode_status, detail);
        break;
    case MODE_OK:
        break;
    }
    return 1;
}

static void
handle_create_call(struct fakeapi *app, struct evhttp_request *req)
{
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(input);
    const char *body = (const char *)evbuffer_pullup(input, -1);
    char uuid[JWT_UUID_SIZE], conversation_uuid[JWT_UUID_SIZE + 4];
    uint64_t now_ms = clock_monotonic_ms();
    struct call_request call;
    char detail[256];
    json_t *problem;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "POST");
        api_problem(app, req, 405, "Only POST is supported on /v1/calls.");
        return;
    }
    if (check_token(app, req, detail, sizeof(detail)) != 0) {
        log_info("create-call request rejected with 401: %s", detail);
        api_problem(app, req, 401, detail);
        return;
    }
    if (validate_call(body ? body : "", len, &call, &problem) != 0) {
        log_info("create-call request rejected with 400: %s",
                 json_string_value(json_object_get(problem, "detail")));
        api_reply(app, req, 400, problem);
        return;
    }

    if (app->rate > 0 && window_prune(app, now_ms) >= app->rate) {
        uint64_t suppressed;

        if (app->retry_after > 0) {
            char seconds[16];

            snprintf(seconds, sizeof(seconds), "%u", app->retry_after);
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "Retry-After", seconds);
        }
        if (log_ratelimit_pass(&throttle_log, &suppressed))
            log_info("create-call request throttled: over %u calls per "
                     "second (%llu more not logged)",
                     app->rate, (unsigned long long)suppressed);
        snprintf(detail, sizeof(detail),
                 "Rate limit exceeded: at most %u calls per second.",
                 app->rate);
        api_problem(app, req, 429, detail);
        return;
    }
    window_prune(app, now_ms);

    if (apply_mode(app, req, &call, now_ms))
        return;

    place_call(app, &call, now_ms, uuid, conversation_uuid);
    api_reply(app, req, 201,
              json_pack("{s:s, s:s, s:s, s:s}", "uuid", uuid, "status",
                        "started", "direction", "outbound",
                        "conversation_uuid", conversation_uuid));
}

/* ---- /_fake/ control routes ------------------------------------------ */

static const char *const mode_names[] = {
    "ok", "status", "stall", "close", "status_after_place",
};

static const char *const events_names[] = {"normal", "busy", "none"};

static json_t *
settings_json(const struct fakeapi *app)
{
    json_t *obj = json_pack("{s:s, s:s, s:b, s:b}", "mode",
                            mode_names[app->mode], "events",
                            events_names[app->events], "shuffle",
                            app->shuffle, "duplicate", app->duplicate);

    if (app->mode != MODE_OK)
        json_object_set_new(obj, "count", json_integer(app->mode_remaining));
    if (app->mode == MODE_STATUS || app->mode == MODE_STATUS_AFTER_PLACE)
        json_object_set_new(obj, "status", json_integer(app->mode_status));
    return obj;
}

static int
lookup_name(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; name != NULL && i < n; i++) {
        if (strcmp(names[i], name) == 0)
            return (int)i;
    }
    return -1;
}

/*
 * Validates a whole POST /_fake/mode body before changing anything, so
 * a rejected body leaves the settings as they were.
 */
static const char *
set_mode(struct fakeapi *app, json_t *body)
{
    json_t *mode = json_object_get(body, "mode");
    json_t *status = json_object_get(body, "status");
    json_t *count = json_object_get(body, "count");
    json_t *events = json_object_get(body, "events");
    json_t *shuffle = json_object_get(body, "shuffle");
    json_t *duplicate = json_object_get(body, "duplicate");
    int new_mode = app->mode, new_events = app->events;
    const char *key;
    json_t *value;

    json_object_foreach(body, key, value) {
        if (lookup_name((const char *const[]){"mode", "status", "count",
                                              "events", "shuffle",
                                              "duplicate"},
                        6, key) < 0)
            return "unknown member: use mode, status, count, events, "
                   "shuffle or duplicate";
    }
    if (mode != NULL) {
        new_mode = lookup_name(mode_names, 5, json_string_value(mode));
        if (new_mode < 0)
            return "\"mode\" must be \"ok\", \"status\", \"stall\", "
                   "\"close\" or \"status_after_place\"";
    }
    if ((new_mode == MODE_STATUS || new_mode == MODE_STATUS_AFTER_PLACE) &&
        (mode != NULL || status != NULL) &&
        (!json_is_integer(status) || json_integer_value(status) < 400 ||
         json_integer_value(status) > 599))
        return "this mode needs \"status\": an integer from 400 to 599";
    if (status != NULL && new_mode != MODE_STATUS &&
        new_mode != MODE_STATUS_AFTER_PLACE)
        return "\"status\" is only valid with the modes \"status\" and "
               "\"status_after_place\"";
    if (count != NULL &&
        (mode == NULL || new_mode == MODE_OK || !json_is_integer(count) ||
         json_integer_value(count) < 1 ||
         json_integer_value(count) > MODE_COUNT_MAX))
        return "\"count\" must go with a mode other than \"ok\" and be an "
               "integer from 1 to 1000000";
    if (events != NULL) {
        new_events = lookup_name(events_names, 3, json_string_value(events));
        if (new_events < 0)
            return "\"events\" must be \"normal\", \"busy\" or \"none\"";
    }
    if ((shuffle != NULL && !json_is_boolean(shuffle)) ||
        (duplicate != NULL && !json_is_boolean(duplicate)))
        return "\"shuffle\" and \"duplicate\" must be true or false";

    if (mode != NULL) {
        app->mode = (enum fake_mode)new_mode;
        app->mode_remaining =
            count ? (unsigned)json_integer_value(count) : 1;
    }
    if (status != NULL)
        app->mode_status = (int)json_integer_value(status);
    app->events = (enum fake_events)new_events;
    if (shuffle != NULL)
        app->shuffle = json_is_true(shuffle);
    if (duplicate != NULL)
        app->duplicate = json_is_true(duplicate);
    return NULL;
}

static void
handle_mode(struct fakeapi *app, struct evhttp_request *req)
{
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(input);
    const char *text = (const char *)evbuffer_pullup(input, -1);
    json_error_t jerr;
    const char *reason;
    json_t *body;

    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        admin_reply(req, 200, settings_json(app));
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        admin_reply(req, 405, make_problem(405, "Use GET or POST."));
        return;
    }
    body = json_loadb(text ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(body)) {
        json_decref(body);
        admin_reply(req, 400,
                    make_problem(400, "The body must be a JSON object."));
        return;
    }
    reason = set_mode(app, body);
    json_decref(body);
    if (reason != NULL) {
        admin_reply(req, 400, make_problem(400, reason));
        return;
    }
    log_info("control: mode %s, events %s%s%s", mode_names[app->mode],
             events_names[app->events], app->shuffle ? ", shuffled" : "",
             app->duplicate ? ", with a duplicate" : "");
    admin_reply(req, 200, settings_json(app));
}

static json_t *
codes_json(const uint64_t *counts)
{
    json_t *obj = json_object();

    for (int code = 100; code < 600; code++) {
        char key[8];

        if (counts[code] == 0)
            continue;
        snprintf(key, sizeof(key), "%d", code);
        json_object_set_new(obj, key, json_integer((json_int_t)counts[code]));
    }
    return obj;
}

static void
handle_stats(struct fakeapi *app, struct evhttp_request *req)
{
    const struct fake_stats *s = &app->stats;
    json_t *body;

    window_prune(app, clock_monotonic_ms());
    body = json_pack(
        "{s:I, s:I, s:O, s:o, s:I, s:I, s:I, s:i, "
        "s:{s:I, s:I, s:I, s:o, s:I}, s:o}",
        "requests", (json_int_t)s->requests, "calls_placed",
        (json_int_t)s->calls_placed, "destinations", s->destinations,
        "responses", codes_json(s->responses), "closed",
        (json_int_t)s->closed, "stalled", (json_int_t)s->stalled,
        "held_connections", (json_int_t)count_held(app),
        "max_calls_per_second", (int)s->max_calls_per_second, "webhooks",
        "sent", (json_int_t)s->webhooks_sent, "failed",
        (json_int_t)s->webhooks_failed, "refused",
        (json_int_t)s->webhooks_refused, "responses",
        codes_json(s->webhook_responses), "pending",
        (json_int_t)events_pending(app), "settings", settings_json(app));
    admin_reply(req, 200, body);
}

static void
reset_state(struct fakeapi *app)
{
    release_all_held(app);
    events_cancel_all(app);
    jti_clear(app->seen_jti);
    json_decref(app->stats.destinations);
    memset(&app->stats, 0, sizeof(app->stats));
    app->stats.destinations = json_object();
    app->window_count = 0;
    app->window_start = 0;
    app->mode = MODE_OK;
    app->mode_remaining = 0;
    app->events = EVENTS_NORMAL;
    app->shuffle = 0;
    app->duplicate = 0;
}

static void
handle_request(struct evhttp_request *req, void *arg)
{
    struct fakeapi *app = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    if (path == NULL || path[0] == '\0')
        path = "/";
    if (strncmp(path, "/_fake/", 7) == 0) {
        if (strcmp(path, "/_fake/mode") == 0) {
            handle_mode(app, req);
        } else if (strcmp(path, "/_fake/stats") == 0 &&
                   method == EVHTTP_REQ_GET) {
            handle_stats(app, req);
        } else if (strcmp(path, "/_fake/reset") == 0 &&
                   method == EVHTTP_REQ_POST) {
            reset_state(app);
            log_info("control: reset");
            admin_reply(req, 200, json_pack("{s:b}", "reset", 1));
        } else {
            admin_reply(req, 404,
                        make_problem(404, "Control routes: GET or POST "
                                          "/_fake/mode, GET /_fake/stats, "
                                          "POST /_fake/reset."));
        }
        return;
    }

    app->stats.requests++;
    if (strcmp(path, "/v1/calls") == 0 || strcmp(path, "/v1/calls/") == 0)
        handle_create_call(app, req);
    else
        api_problem(app, req, 404,
                    "This fake Voice API serves only POST /v1/calls.");
}

/* ---- start-up ----------------------------------------------------------- */

struct options {
    const char *listen;
    const char *public_key;
    const char *application_id;
    unsigned rate;
    unsigned retry_after;
};

static void
usage(FILE *out)
{
    fprintf(out,
            "usage: fakeapi --public-key FILE --application-id ID "
            "[options]\n"
            "\n"
            "A local stand-in for the Vonage Voice API's POST /v1/calls.\n"
            "\n"
            "  --listen HOST:PORT     loopback address to listen on "
            "(default\n"
            "                         127.0.0.1:0; port 0 picks a free "
            "port)\n"
            "  --public-key FILE      PEM RSA public key (or private key) "
            "that\n"
            "                         verifies the RS256 bearer tokens\n"
            "  --application-id ID    application_id the tokens must "
            "carry\n"
            "  --rate N               calls accepted per second, 0 for no "
            "limit\n"
            "                         (default 0); more get 429\n"
            "  --retry-after N        seconds sent in Retry-After with a "
            "429\n"
            "                         (default: no header)\n"
            "  --help                 show this help\n"
            "\n"
            "On start it prints \"fakeapi listening on HOST:PORT\" to "
            "stderr.\n"
            "Control routes: POST /_fake/mode, GET /_fake/stats, "
            "POST /_fake/reset.\n");
}

static int
parse_count(const char *name, const char *text, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' ||
        v > 1000000) {
        fprintf(stderr,
                "fakeapi: invalid %s \"%s\": expected an integer from 0 to "
                "1000000\n",
                name, text);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int
parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"public-key", required_argument, NULL, 'k'},
        {"application-id", required_argument, NULL, 'a'},
        {"rate", required_argument, NULL, 'r'},
        {"retry-after", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(opt, 0, sizeof(*opt));
    opt->listen = "127.0.0.1:0";
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            opt->listen = optarg;
            break;
        case 'k':
            opt->public_key = optarg;
            break;
        case 'a':
            opt->application_id = optarg;
            break;
        case 'r':
            if (parse_count("--rate", optarg, &opt->rate) != 0)
                return -1;
            break;
        case 't':
            if (parse_count("--retry-after", optarg, &opt->retry_after) != 0)
                return -1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fakeapi: unexpected argument \"%s\"\n",
                argv[optind]);
        return -1;
    }
    if (opt->public_key == NULL || opt->application_id == NULL ||
        opt->application_id[0] == '\0') {
        fprintf(stderr, "fakeapi: --public-key and --application-id are "
                        "required (see --help)\n");
        return -1;
    }
    return 0;
}

/* Never prompts on the terminal for an encrypted key. */
static int
no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    return -1;
}

/* Reads an RSA public key, or the public half of a private key. */
static EVP_PKEY *
load_public_key(const char *path)
{
    FILE *f = fopen(path, "rb");
    EVP_PKEY *key;

    if (f == NULL) {
        fprintf(stderr, "fakeapi: cannot open --public-key %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    if (key == NULL) {
        rewind(f);
        key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    }
    fclose(f);
    if (key == NULL) {
        fprintf(stderr,
                "fakeapi: --public-key %s holds no PEM public key (\"BEGIN "
                "PUBLIC KEY\") or unencrypted private key\n",
                path);
        return NULL;
    }
    if (EVP_PKEY_base_id(key) != EVP_PKEY_RSA) {
        fprintf(stderr, "fakeapi: --public-key %s is not an RSA key\n", path);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

/*
 * Splits "HOST:PORT" or "[V6]:PORT" and accepts only loopback hosts, so
 * the fake API is never reachable from another machine.
 */
static int
parse_listen(const char *address, char *host, size_t hostlen,
             unsigned short *port)
{
    const char *colon = strrchr(address, ':');
    const char *start = address, *end = colon;
    struct in_addr v4;
    struct in6_addr v6;
    char *stop;
    long p;

    if (colon == NULL)
        return -1;
    if (address[0] == '[') {
        start = address + 1;
        if (colon == address || colon[-1] != ']')
            return -1;
        end = colon - 1;
    }
    if (end <= start || (size_t)(end - start) >= hostlen)
        return -1;
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    errno = 0;
    p = strtol(colon + 1, &stop, 10);
    if (errno != 0 || stop == colon + 1 || *stop != '\0' || p < 0 ||
        p > 65535)
        return -1;
    *port = (unsigned short)p;

    if (strcmp(host, "localhost") == 0)
        snprintf(host, hostlen, "127.0.0.1");
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127 ? 0 : -1;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) ? 0 : -1;
    return -1;
}

static int
bound_port(struct evhttp_bound_socket *socket)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(socket);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *base = arg;

    log_info("received signal %d: stopping", (int)sig);
    event_base_loopbreak(base);
}

static int
start_server(struct fakeapi *app, const char *listen)
{
    struct evhttp_bound_socket *socket;
    unsigned short port;
    char host[64];
    int real_port;

    if (parse_listen(listen, host, sizeof(host), &port) != 0) {
        fprintf(stderr,
                "fakeapi: invalid --listen \"%s\": expected HOST:PORT with a "
                "loopback host (127.0.0.1, [::1] or localhost)\n",
                listen);
        return -1;
    }
    app->http = evhttp_new(app->base);
    if (app->http == NULL)
        return -1;
    evhttp_set_max_body_size(app->http, MAX_BODY);
    evhttp_set_max_headers_size(app->http, MAX_HEADERS);
    evhttp_set_timeout(app->http, REQUEST_TIMEOUT_S);
    evhttp_set_gencb(app->http, handle_request, app);
    socket = evhttp_bind_socket_with_handle(app->http, host, port);
    if (socket == NULL) {
        fprintf(stderr, "fakeapi: cannot listen on %s: %s\n", listen,
                strerror(errno));
        return -1;
    }
    real_port = bound_port(socket);
    fprintf(stderr,
            strchr(host, ':') ? "fakeapi listening on [%s]:%d\n"
                              : "fakeapi listening on %s:%d\n",
            host, real_port);
    fflush(stderr);
    return 0;
}

static void
free_app(struct fakeapi *app)
{
    release_all_held(app);
    events_cancel_all(app);
    if (app->http != NULL)
        evhttp_free(app->http);
    if (app->close_event != NULL)
        event_free(app->close_event);
    if (app->seen_jti != NULL) {
        jti_clear(app->seen_jti);
        free(app->seen_jti);
    }
    json_decref(app->stats.destinations);
    free(app->window);
    EVP_PKEY_free(app->public_key);
}

int
main(int argc, char **argv)
{
    struct fakeapi app;
    struct options opt;
    struct event *sigterm = NULL, *sigint = NULL;
    int rc = 1;

    if (parse_options(argc, argv, &opt) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);

    memset(&app, 0, sizeof(app));
    app.application_id = opt.application_id;
    app.rate = opt.rate;
    app.retry_after = opt.retry_after;
    app.public_key = load_public_key(opt.public_key);
    app.base = event_base_new();
    app.seen_jti = calloc(1, sizeof(*app.seen_jti));
    app.stats.destinations = json_object();
    if (app.public_key == NULL || app.base == NULL || app.seen_jti == NULL ||
        app.stats.destinations == NULL)
        goto out;
    app.close_event = event_new(app.base, -1, 0, close_pending, &app);
    sigterm = evsignal_new(app.base, SIGTERM, on_signal, app.base);
    sigint = evsignal_new(app.base, SIGINT, on_signal, app.base);
    if (app.close_event == NULL || sigterm == NULL || sigint == NULL ||
        evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0)
        goto out;
    if (start_server(&app, opt.listen) != 0)
        goto out;

    log_info("fakeapi started: application %s, rate %u/s%s",
             app.application_id, app.rate, app.rate ? "" : " (no limit)");
    event_base_dispatch(app.base);
    log_info("fakeapi stopped after %llu requests",
             (unsigned long long)app.stats.requests);
    rc = 0;

out:
    free_app(&app);
    if (sigterm != NULL)
        event_free(sigterm);
    if (sigint != NULL)
        event_free(sigint);
    if (app.base != NULL)
        event_base_free(app.base);
    return rc;
}
