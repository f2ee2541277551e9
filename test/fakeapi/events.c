/*
 * Event webhooks of placed calls: the bodies Vonage sends to event_url,
 * delivered with libevent's HTTP client a few milliseconds apart, in
 * order or shuffled, with one duplicate when asked. Nothing is retried:
 * a delivery that fails is counted and logged.
 */
#include "fakeapi.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "callhook/jwt.h"
#include "log.h"

#define EVENTS_PER_CALL 4
#define GAP_MIN_MS 5
#define GAP_MAX_MS 20
#define DELIVERY_TIMEOUT_S 5

/* The rate and network of every fake call, as in the recorded webhooks of
 * test/fixtures/scenarios: 0.0045 per minute on network 310260. */
#define RATE_TEXT "0.00450000"
#define RATE_PER_MINUTE_1E8 450000LL
#define NETWORK "310260"

enum delivery_state {
    DELIVERY_SCHEDULED, /* timer runs send_delivery */
    DELIVERY_IN_FLIGHT, /* request made, no response yet */
    DELIVERY_DONE,      /* timer frees the connection and this */
};

struct delivery {
    struct fakeapi *app;
    struct delivery *prev, *next;
    enum delivery_state state;
    struct event *timer;
    struct evhttp_connection *evcon;
    char host[64]; /* numeric address */
    int port;
    int use_get;
    char *target; /* path and query */
    char *body;   /* NULL for GET */
    char uuid[JWT_UUID_SIZE];
    char status[16];
};

static struct log_ratelimit failure_log = LOG_RATELIMIT_INIT(1000);
static const struct timeval immediately = {0, 0};

static void
unlink_delivery(struct fakeapi *app, struct delivery *d)
{
    if (d->prev != NULL)
        d->prev->next = d->next;
    else
        app->deliveries = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
}

static void
free_delivery(struct delivery *d)
{
    if (d->timer != NULL)
        event_free(d->timer);
    if (d->evcon != NULL)
        evhttp_connection_free(d->evcon);
    free(d->target);
    free(d->body);
    free(d);
}

void
events_cancel_all(struct fakeapi *app)
{
    while (app->deliveries != NULL) {
        struct delivery *d = app->deliveries;

        unlink_delivery(app, d);
        free_delivery(d);
    }
}

size_t
events_pending(const struct fakeapi *app)
{
    size_t n = 0;

    for (const struct delivery *d = app->deliveries; d != NULL; d = d->next) {
        if (d->state != DELIVERY_DONE)
            n++;
    }
    return n;
}

static void
delivery_done(struct evhttp_request *req, void *arg)
{
    struct delivery *d = arg;
    struct fakeapi *app = d->app;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;
    uint64_t suppressed;

    if (code <= 0 || code >= 600) {
        app->stats.webhooks_failed++;
        if (log_ratelimit_pass(&failure_log, &suppressed))
            log_warn("event webhook %s for call %s to %s:%d failed: no HTTP "
                     "response (%llu similar failures not logged)",
                     d->status, d->uuid, d->host, d->port,
                     (unsigned long long)suppressed);
    } else {
        app->stats.webhook_responses[code]++;
        if (code >= 300)
            log_info("event webhook %s for call %s got HTTP %d", d->status,
                     d->uuid, code);
    }

    /* libevent still uses the connection after this returns, so the timer
     * frees it instead. */
    d->state = DELIVERY_DONE;
    evtimer_add(d->timer, &immediately);
}

static void
send_delivery(struct delivery *d)
{
    struct fakeapi *app = d->app;
    struct evhttp_request *req;
    struct evkeyvalq *headers;
    char host_header[96];

    d->evcon = evhttp_connection_base_new(app->base, NULL, d->host,
                                          (unsigned short)d->port);
    req = d->evcon ? evhttp_request_new(delivery_done, d) : NULL;
    if (req == NULL) {
        log_error("cannot send event webhook %s for call %s: out of memory",
                  d->status, d->uuid);
        app->stats.webhooks_failed++;
        d->state = DELIVERY_DONE;
        evtimer_add(d->timer, &immediately);
        return;
    }
    evhttp_connection_set_timeout(d->evcon, DELIVERY_TIMEOUT_S);
    headers = evhttp_request_get_output_headers(req);
    snprintf(host_header, sizeof(host_header),
             strchr(d->host, ':') ? "[%s]:%d" : "%s:%d", d->host, d->port);
    evhttp_add_header(headers, "Host", host_header);
    evhttp_add_header(headers, "User-Agent", "callhook-fakeapi");
    if (!d->use_get) {
        evhttp_add_header(headers, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), d->body,
                     strlen(d->body));
    }

    d->state = DELIVERY_IN_FLIGHT;
    app->stats.webhooks_sent++;
    /* NOTE: libevent 2.1 frees req on some failures of this call and not
     * on others, so on failure req is left alone (a possible leak). */
    if (evhttp_make_request(d->evcon, req,
                            d->use_get ? EVHTTP_REQ_GET : EVHTTP_REQ_POST,
                            d->target) != 0) {
        log_error("cannot send event webhook %s for call %s to %s:%d",
                  d->status, d->uuid, d->host, d->port);
        app->stats.webhooks_failed++;
        d->state = DELIVERY_DONE;
        evtimer_add(d->timer, &immediately);
    }
}

static void
delivery_timer(evutil_socket_t fd, short what, void *arg)
{
    struct delivery *d = arg;

    if (d->state == DELIVERY_SCHEDULED) {
        send_delivery(d);
    } else if (d->state == DELIVERY_DONE) {
        unlink_delivery(d->app, d);
        free_delivery(d);
    }
}

/* ---- bodies ----------------------------------------------------------- */

struct call_info {
    const char *from, *to, *uuid, *conversation_uuid;
};

static json_t *
base_event(const struct call_info *info, const char *status,
           uint64_t timestamp_ms)
{
    char timestamp[32];

    format_timestamp(timestamp_ms, timestamp);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "from",
                     info->from, "to", info->to, "uuid", info->uuid,
                     "conversation_uuid", info->conversation_uuid,
                     "direction", "outbound", "status", status, "timestamp",
                     timestamp);
}

/* Builds the logical sequence of events into bodies, with timestamps. */
static size_t
build_events(enum fake_events kind, const struct call_info *info,
             const uint64_t *times, json_t **bodies)
{
    static const char *const normal[] = {"started", "ringing", "answered",
                                         "completed"};
    static const char *const busy[] = {"started", "ringing", "busy",
                                       "completed"};
    const char *const *statuses = kind == EVENTS_BUSY ? busy : normal;
    char start[32], end[32], duration[24], price[32];
    uint64_t seconds;

    for (size_t i = 0; i < EVENTS_PER_CALL; i++)
        bodies[i] = base_event(info, statuses[i], times[i]);

    if (kind == EVENTS_BUSY) {
        json_object_set_new(bodies[2], "detail", json_string("unavailable"));
        json_object_set_new(bodies[2], "sip_code", json_integer(486));
        json_object_set_new(bodies[3], "duration", json_string("0"));
        json_object_set_new(bodies[3], "rate", json_string(RATE_TEXT));
        json_object_set_new(bodies[3], "price", json_string("0.00000000"));
        json_object_set_new(bodies[3], "network", json_string(NETWORK));
        json_object_set_new(bodies[3], "disconnected_by",
                            json_string("platform"));
        return EVENTS_PER_CALL;
    }

    /* Vonage sends these three as null on "answered". */
    json_object_set_new(bodies[2], "start_time", json_null());
    json_object_set_new(bodies[2], "rate", json_null());
    json_object_set_new(bodies[2], "network", json_null());

    /* The call lasts from "answered" to "completed": a few milliseconds,
     * so duration and price are usually 0. */
    seconds = (times[3] - times[2]) / 1000;
    format_timestamp(times[2], start);
    format_timestamp(times[3], end);
    snprintf(duration, sizeof(duration), "%llu", (unsigned long long)seconds);
    snprintf(price, sizeof(price), "%lld.%08lld",
             (long long)seconds * RATE_PER_MINUTE_1E8 / 60 / 100000000,
             (long long)seconds * RATE_PER_MINUTE_1E8 / 60 % 100000000);
    json_object_set_new(bodies[3], "start_time", json_string(start));
    json_object_set_new(bodies[3], "end_time", json_string(end));
    json_object_set_new(bodies[3], "duration", json_string(duration));
    json_object_set_new(bodies[3], "rate", json_string(RATE_TEXT));
    json_object_set_new(bodies[3], "price", json_string(price));
    json_object_set_new(bodies[3], "network", json_string(NETWORK));
    json_object_set_new(bodies[3], "disconnected_by", json_string("user"));
    json_object_set_new(bodies[3], "sip_code", json_integer(200));
    return EVENTS_PER_CALL;
}

/* Appends "name=value" pairs of a flat JSON object to a query string. */
static char *
query_from_json(const char *existing, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    const char *key;
    json_t *value;
    char *out = NULL;
    size_t len;

    if (buf == NULL)
        return NULL;
    if (existing != NULL && existing[0] != '\0')
        evbuffer_add_printf(buf, "%s", existing);
    json_object_foreach(body, key, value) {
        char number[32];
        const char *text = NULL;
        char *encoded;

        if (json_is_string(value)) {
            text = json_string_value(value);
        } else if (json_is_integer(value)) {
            snprintf(number, sizeof(number), "%lld",
                     (long long)json_integer_value(value));
            text = number;
        }
        if (text == NULL)
            continue; /* null values are left out of GET webhooks */
        encoded = evhttp_uriencode(text, -1, 0);
        if (encoded == NULL)
            continue;
        evbuffer_add_printf(buf, "%s%s=%s",
                            evbuffer_get_length(buf) ? "&" : "", key,
                            encoded);
        free(encoded);
    }
    len = evbuffer_get_length(buf);
    out = malloc(len + 1);
    if (out != NULL) {
        evbuffer_remove(buf, out, len);
        out[len] = '\0';
    }
    evbuffer_free(buf);
    return out;
}

/* ---- destinations ----------------------------------------------------- */

struct destination {
    char host[64];
    int port;
    char path[URL_MAX + 1];
    const char *query;
};

/*
 * Accepts only http URLs whose host is a loopback address: 127.0.0.0/8,
 * ::1, or "localhost", which is sent to 127.0.0.1 without a DNS lookup.
 * Returns NULL when accepted, else the reason.
 */
static const char *
parse_destination(const struct evhttp_uri *uri, struct destination *dest)
{
    const char *scheme = evhttp_uri_get_scheme(uri);
    const char *host = evhttp_uri_get_host(uri);
    const char *path = evhttp_uri_get_path(uri);
    struct in_addr v4;
    struct in6_addr v6;
    size_t len;

    if (scheme == NULL || strcasecmp(scheme, "http") != 0)
        return "only http:// event URLs are delivered";
    if (host == NULL)
        return "the event URL has no host";
    len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        host++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(dest->host))
        return "the event URL host is not a loopback address";
    memcpy(dest->host, host, len);
    dest->host[len] = '\0';

    if (strcasecmp(dest->host, "localhost") == 0) {
        strcpy(dest->host, "127.0.0.1");
    } else if (inet_pton(AF_INET, dest->host, &v4) == 1) {
        if ((ntohl(v4.s_addr) >> 24) != 127)
            return "the event URL host is not a loopback address";
    } else if (inet_pton(AF_INET6, dest->host, &v6) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&v6))
            return "the event URL host is not a loopback address";
    } else {
        return "the event URL host is not a loopback address";
    }

    dest->port = evhttp_uri_get_port(uri);
    if (dest->port <= 0)
        dest->port = 80;
    snprintf(dest->path, sizeof(dest->path), "%s",
             path != NULL && path[0] != '\0' ? path : "/");
    dest->query = evhttp_uri_get_query(uri);
    return NULL;
}

/* ---- scheduling ------------------------------------------------------- */

/* Shuffles order. A result equal to the input is changed too, so
 * "shuffle" always changes the delivery order. */
static void
shuffle_order(size_t *order, size_t n)
{
    size_t before[EVENTS_PER_CALL + 1];
    size_t tmp;

    memcpy(before, order, n * sizeof(*order));
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = random_between(0, (unsigned)i);

        tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    if (memcmp(before, order, n * sizeof(*order)) == 0) {
        tmp = order[0];
        order[0] = order[n - 1];
        order[n - 1] = tmp;
    }
}

static int
schedule_one(struct fakeapi *app, const struct destination *dest,
             int use_get, json_t *body, const char *uuid, uint64_t delay_ms)
{
    struct delivery *d = calloc(1, sizeof(*d));
    struct timeval tv = {(time_t)(delay_ms / 1000),
                         (suseconds_t)(delay_ms % 1000 * 1000)};

    if (d == NULL)
        return -1;
    d->app = app;
    d->state = DELIVERY_SCHEDULED;
    d->timer = evtimer_new(app->base, delivery_timer, d);
    snprintf(d->host, sizeof(d->host), "%s", dest->host);
    d->port = dest->port;
    d->use_get = use_get;
    snprintf(d->uuid, sizeof(d->uuid), "%s", uuid);
    snprintf(d->status, sizeof(d->status), "%s",
             json_string_value(json_object_get(body, "status")));
    if (use_get) {
        char *query = query_from_json(dest->query, body);

        if (query != NULL &&
            asprintf(&d->target, "%s?%s", dest->path, query) < 0)
            d->target = NULL;
        free(query);
    } else {
        d->body = json_dumps(body, JSON_COMPACT);
        if (dest->query != NULL &&
            asprintf(&d->target, "%s?%s", dest->path, dest->query) < 0)
            d->target = NULL;
        else if (dest->query == NULL)
            d->target = strdup(dest->path);
    }
    if (d->timer == NULL || d->target == NULL ||
        (!use_get && d->body == NULL)) {
        free_delivery(d);
        return -1;
    }
    d->next = app->deliveries;
    if (d->next != NULL)
        d->next->prev = d;
    app->deliveries = d;
    evtimer_add(d->timer, &tv);
    return 0;
}

void
events_schedule(struct fakeapi *app, const struct call_request *call,
                const char *from, const char *uuid,
                const char *conversation_uuid)
{
    struct call_info info = {from, call->to, uuid, conversation_uuid};
    json_t *bodies[EVENTS_PER_CALL];
    uint64_t times[EVENTS_PER_CALL + 1], delays[EVENTS_PER_CALL + 1];
    size_t order[EVENTS_PER_CALL + 1], n = EVENTS_PER_CALL;
    struct destination dest;
    struct evhttp_uri *uri;
    uint64_t base_ms = clock_now_ms(), total = 0;
    const char *reason;

    if (app->events == EVENTS_NONE)
        return;
    if (call->event_url[0] == '\0') {
        log_info("call %s has no event_url: no events sent", uuid);
        return;
    }
    uri = evhttp_uri_parse_with_flags(call->event_url, 0);
    reason = uri ? parse_destination(uri, &dest) : "the event URL is invalid";
    if (reason != NULL) {
        log_warn("not sending the events of call %s: %s", uuid, reason);
        app->stats.webhooks_refused += EVENTS_PER_CALL;
        if (uri != NULL)
            evhttp_uri_free(uri);
        return;
    }

    for (size_t i = 0; i <= EVENTS_PER_CALL; i++) {
        total += random_between(GAP_MIN_MS, GAP_MAX_MS);
        delays[i] = total;
        times[i] = base_ms + total;
    }
    build_events(app->events, &info, times, bodies);

    for (size_t i = 0; i < EVENTS_PER_CALL; i++)
        order[i] = i;
    if (app->duplicate) {
        /* Without shuffling, the copy follows its original directly. */
        size_t dup = random_between(0, EVENTS_PER_CALL - 1);

        memmove(order + dup + 1, order + dup,
                (EVENTS_PER_CALL - dup) * sizeof(order[0]));
        n++;
    }
    if (app->shuffle)
        shuffle_order(order, n);

    for (size_t k = 0; k < n; k++) {
        if (bodies[order[k]] == NULL ||
            schedule_one(app, &dest, call->event_method_get,
                         bodies[order[k]], uuid, delays[k]) != 0) {
            log_error("cannot schedule event webhook %zu of call %s: out "
                      "of memory",
                      k, uuid);
            app->stats.webhooks_failed++;
        }
    }
    for (size_t i = 0; i < EVENTS_PER_CALL; i++)
        json_decref(bodies[i]);
    evhttp_uri_free(uri);
}
