/*
 * The public listener: the event webhook, the answer webhook and /healthz.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "app.h"
#include "callhook/call_event.h"

#define ALLOW_WEBHOOK "GET, POST"

/* A webhook request waiting for Redis. */
struct webhook_wait {
    struct app *app;
    struct evhttp_request *req;
    uint64_t request_id;
    uint64_t start_ms;
    enum call_event_origin origin;
    char id[CALL_EVENT_ID_MAX + 1];
};

void
app_log_request(struct app *app, uint64_t request_id,
                struct evhttp_request *req, int code, uint64_t start_ms)
{
    if (log_min_level > LOG_DEBUG)
        return;
    log_debug("request rid=%" PRIu64 " %s %.200s -> %d in %" PRIu64 " ms",
              request_id, http_method_name(evhttp_request_get_command(req)),
              evhttp_request_get_uri(req), code,
              clock_monotonic_ms() - start_ms);
}

static void
reply_error(struct app *app, struct evhttp_request *req, uint64_t rid,
            uint64_t start_ms, int code, const char *message)
{
    uint64_t suppressed;

    if (code >= 400 && code < 500) {
        app->counters.events_rejected++;
        if (log_ratelimit_pass(&app->bad_request_rl, &suppressed))
            log_warn("rejected request rid=%" PRIu64 " %s %.100s: %d %s "
                     "(%" PRIu64 " more rejections not logged)",
                     rid, http_method_name(evhttp_request_get_command(req)),
                     evhttp_request_get_uri(req), code, message, suppressed);
    }
    if (code == 405)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          ALLOW_WEBHOOK);
    app_log_request(app, rid, req, code, start_ms);
    http_reply_error(req, code, message);
}

/*
 * Decodes the request into ev. Returns 0, or the HTTP status to answer
 * with, the message in err.
 */
static int
read_event(struct evhttp_request *req, enum call_event_origin origin,
           struct call_event *ev, char *err, size_t errlen)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    if (method == EVHTTP_REQ_GET) {
        const char *query =
            evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));

        if (query == NULL)
            query = "";
        return call_event_parse(ev, CALL_EVENT_SOURCE_QUERY, origin, query,
                           strlen(query), err, errlen) == 0
                   ? 0
                   : 400;
    }

    if (method == EVHTTP_REQ_POST) {
        struct evbuffer *body = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(body);
        const char *data = len ? (const char *)evbuffer_pullup(body, -1) : "";
        char media[80];
        enum call_event_source source;

        http_media_type(req, media, sizeof(media));
        if (strcmp(media, "application/json") == 0 ||
            (strlen(media) > 5 &&
             strcmp(media + strlen(media) - 5, "+json") == 0)) {
            source = CALL_EVENT_SOURCE_JSON;
        } else if (strcmp(media, "application/x-www-form-urlencoded") == 0) {
            source = CALL_EVENT_SOURCE_FORM;
        } else if (media[0] == '\0') {
            snprintf(err, errlen,
                     "missing Content-Type: send application/json or "
                     "application/x-www-form-urlencoded");
            return 415;
        } else {
            snprintf(err, errlen,
                     "unsupported Content-Type '%.60s': send "
                     "application/json or application/x-www-form-urlencoded",
                     media);
            return 415;
        }
        if (data == NULL) {
            snprintf(err, errlen, "out of memory");
            return 500;
        }
        return call_event_parse(ev, source, origin, data, len, err, errlen) == 0
                   ? 0
                   : 400;
    }

    snprintf(err, errlen, "method %s not allowed: use GET or POST",
             http_method_name(method));
    return 405;
}

static void
event_applied(void *arg, enum store_result result, int status_changed)
{
    struct webhook_wait *wait = arg;
    struct app *app = wait->app;
    struct evhttp_request *req = wait->req;
    uint64_t suppressed;

    app->inflight--;
    switch (result) {
    case STORE_APPLIED:
        app->counters.events_applied++;
        app_log_request(app, wait->request_id, req, 200, wait->start_ms);
        http_reply_json(req, 200, "{\"result\":\"applied\"}", 20);
        break;
    case STORE_DUPLICATE:
        app->counters.events_duplicate++;
        app_log_request(app, wait->request_id, req, 200, wait->start_ms);
        http_reply_json(req, 200, "{\"result\":\"duplicate\"}", 22);
        break;
    case STORE_UNAVAILABLE:
        app->counters.events_unavailable++;
        if (log_ratelimit_pass(&app->unrecorded_rl, &suppressed))
            log_warn("event for %s not stored rid=%" PRIu64
                     ": redis connection lost before it replied; answered "
                     "503 (%" PRIu64 " more not logged)",
                     wait->id, wait->request_id, suppressed);
        app_log_request(app, wait->request_id, req, 503, wait->start_ms);
        http_reply_error(req, 503, "store unavailable, retry later");
        break;
    case STORE_FAILED:
        app->counters.events_failed++;
        app_log_request(app, wait->request_id, req, 500, wait->start_ms);
        http_reply_error(req, 500, "the store rejected the event; see the "
                                   "server log");
        break;
    }
    free(wait);
}

static void
handle_event(struct app *app, struct evhttp_request *req, uint64_t rid,
             uint64_t start_ms)
{
    struct webhook_wait *wait;
    struct call_event ev;
    char err[300];
    int code;

    code = read_event(req, CALL_EVENT_ORIGIN_EVENT, &ev, err, sizeof(err));
    if (code != 0) {
        reply_error(app, req, rid, start_ms, code, err);
        return;
    }

    wait = malloc(sizeof(*wait));
    if (wait == NULL) {
        call_event_free(&ev);
        reply_error(app, req, rid, start_ms, 500, "out of memory");
        return;
    }
    wait->app = app;
    wait->req = req;
    wait->request_id = rid;
    wait->start_ms = start_ms;
    wait->origin = CALL_EVENT_ORIGIN_EVENT;
    snprintf(wait->id, sizeof(wait->id), "%s", ev.id);

    if (store_apply(app->store, &ev, event_applied, wait) != 0) {
        call_event_free(&ev);
        free(wait);
        app->counters.events_unavailable++;
        app_log_request(app, rid, req, 503, start_ms);
        http_reply_error(req, 503, "store unavailable, retry later");
        return;
    }
    log_debug("event rid=%" PRIu64 " %s %s status=%s", rid,
              ev.kind == CALL_EVENT_KIND_CALL ? "call" : "conversation", ev.id,
              ev.status ? ev.status : "-");
    call_event_free(&ev);
    app->inflight++;
}

static void
answer_recorded(void *arg, enum store_result result, int status_changed)
{
    struct webhook_wait *wait = arg;
    struct app *app = wait->app;
    uint64_t suppressed;

    app->inflight--;
    if (result != STORE_APPLIED && result != STORE_DUPLICATE &&
        log_ratelimit_pass(&app->unrecorded_rl, &suppressed))
        log_warn("inbound call %s rid=%" PRIu64 " not recorded: %s (%" PRIu64
                 " more not logged)",
                 wait->id, wait->request_id,
                 result == STORE_UNAVAILABLE ? "redis connection lost"
                                             : "redis returned an error",
                 suppressed);
    free(wait);
}

static void
handle_answer(struct app *app, struct evhttp_request *req, uint64_t rid,
              uint64_t start_ms)
{
    struct webhook_wait *wait;
    struct call_event ev;
    char err[300];
    uint64_t suppressed;
    int code;

    code = read_event(req, CALL_EVENT_ORIGIN_ANSWER, &ev, err, sizeof(err));
    if (code == 405 || code == 415) {
        reply_error(app, req, rid, start_ms, code, err);
        return;
    }

    /* Vonage ends the call unless it gets an NCCO within seconds, so the
     * NCCO goes out first and no recording problem can hold it back. */
    app->counters.answers++;
    app_log_request(app, rid, req, 200, start_ms);
    http_reply_json(req, 200, app->answer_ncco, app->answer_ncco_len);

    if (code != 0) {
        if (log_ratelimit_pass(&app->bad_request_rl, &suppressed))
            log_warn("answer webhook rid=%" PRIu64 " answered but not "
                     "recorded: %s (%" PRIu64 " more not logged)",
                     rid, err, suppressed);
        return;
    }

    wait = malloc(sizeof(*wait));
    if (wait != NULL) {
        wait->app = app;
        wait->req = NULL;
        wait->request_id = rid;
        wait->start_ms = start_ms;
        wait->origin = CALL_EVENT_ORIGIN_ANSWER;
        snprintf(wait->id, sizeof(wait->id), "%s", ev.id);
        if (store_apply(app->store, &ev, answer_recorded, wait) == 0) {
            app->inflight++;
        } else {
            if (log_ratelimit_pass(&app->unrecorded_rl, &suppressed))
                log_warn("inbound call %s rid=%" PRIu64 " not recorded: "
                         "redis unavailable (%" PRIu64 " more not logged)",
                         ev.id, rid, suppressed);
            free(wait);
        }
    }
    call_event_free(&ev);
}

void
webhook_handle(struct evhttp_request *req, void *arg)
{
    struct app *app = arg;
    uint64_t rid = ++app->next_request_id;
    uint64_t start_ms = clock_monotonic_ms();
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    app->counters.requests++;
    if (path == NULL)
        path = "";

    if (strcmp(path, "/call_events") == 0) {
        handle_event(app, req, rid, start_ms);
    } else if (strcmp(path, "/inbound_calls") == 0) {
        handle_answer(app, req, rid, start_ms);
    } else if (strcmp(path, "/healthz") == 0) {
        enum evhttp_cmd_type m = evhttp_request_get_command(req);

        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                              "GET, HEAD");
            app_log_request(app, rid, req, 405, start_ms);
            http_reply_error(req, 405, "method not allowed: use GET");
            return;
        }
        app_log_request(app, rid, req, 200, start_ms);
        http_reply_json(req, 200, "{\"status\":\"ok\"}", 15);
    } else {
        app_log_request(app, rid, req, 404, start_ms);
        http_reply_error(req, 404, "not found: webhooks are /call_events and "
                                   "/inbound_calls");
    }
}
