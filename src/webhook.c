/*
 * The public listener: the event webhook, the answer webhook and /healthz.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "app.h"
#include "callhook/call_event.h"
#include "ingest.h"
#include "metrics.h"

#define ALLOW_WEBHOOK "GET, POST"

/* A webhook request waiting for Redis. */
struct webhook_wait {
    struct app *app;
    struct evhttp_request *req;
    uint64_t request_id;
    uint64_t start_us;
    enum call_event_origin origin;
    char id[CALL_EVENT_ID_MAX + 1];
};

/*
 * The path alone, for logs: query strings of webhooks carry whole phone
 * numbers, which logs must not.
 */
static const char *
request_path(struct evhttp_request *req)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    return path && path[0] ? path : "/";
}

static void
log_request(struct app *app, uint64_t request_id, struct evhttp_request *req,
            int code, uint64_t start_us, int admin)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum metrics_route route = metrics_route_of(path ? path : "", admin);
    uint64_t elapsed_us = clock_monotonic_us() - start_us;

    metrics_response(route, code);
    if (route == ROUTE_CALL_EVENTS)
        histogram_observe(&metrics.webhook_latency, elapsed_us / 1e6);
    if (log_min_level > LOG_DEBUG)
        return;
    log_debug("request rid=%" PRIu64 " %s %.200s -> %d in %.3f ms",
              request_id, http_method_name(evhttp_request_get_command(req)),
              request_path(req), code, elapsed_us / 1e3);
}

void
app_log_request(struct app *app, uint64_t request_id,
                struct evhttp_request *req, int code, uint64_t start_us)
{
    log_request(app, request_id, req, code, start_us, 0);
}

void
app_log_admin_request(struct app *app, uint64_t request_id,
                      struct evhttp_request *req, int code,
                      uint64_t start_us)
{
    log_request(app, request_id, req, code, start_us, 1);
}

static void
reply_error(struct app *app, struct evhttp_request *req, uint64_t rid,
            uint64_t start_us, int code, const char *message)
{
    uint64_t suppressed;

    if (code >= 400 && code < 500) {
        app->counters.events_rejected++;
        app->counters.rejected_by_code[code]++;
        if (log_ratelimit_pass(&app->bad_request_rl, &suppressed))
            log_warn("rejected request rid=%" PRIu64 " %s %.100s: %d %s "
                     "(%" PRIu64 " more rejections not logged)",
                     rid, http_method_name(evhttp_request_get_command(req)),
                     request_path(req), code, message, suppressed);
    }
    if (code == 405)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          ALLOW_WEBHOOK);
    app_log_request(app, rid, req, code, start_us);
    http_reply_error(req, code, message);
}

/*
 * Decodes the request into ev. Returns 0, or the HTTP status to answer
 * with, the message in err.
 */
struct raw_event {
    enum call_event_source source;
    const char *data; /* owned by the request */
    size_t len;
};

static int
read_event(struct evhttp_request *req, enum call_event_origin origin,
           struct call_event *ev, struct raw_event *raw, char *err,
           size_t errlen)
{
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    if (method == EVHTTP_REQ_GET) {
        const char *query =
            evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));

        if (query == NULL)
            query = "";
        raw->source = CALL_EVENT_SOURCE_QUERY;
        raw->data = query;
        raw->len = strlen(query);
        return call_event_parse(ev, raw->source, origin, raw->data, raw->len,
                                err, errlen) == 0
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
        raw->source = source;
        raw->data = data;
        raw->len = len;
        return call_event_parse(ev, source, origin, data, len, err,
                                errlen) == 0
                   ? 0
                   : 400;
    }

    snprintf(err, errlen, "method %s not allowed: use GET or POST",
             http_method_name(method));
    return 405;
}

/* ---- signed webhooks ---------------------------------------------------- */

static void
reply_unauthorized(struct app *app, struct evhttp_request *req, uint64_t rid,
                   uint64_t start_us, enum signature_reason why,
                   const char *reason)
{
    char message[200];
    uint64_t suppressed;

    app->counters.signature_failures++;
    app->counters.signature_by_reason[why]++;
    if (log_ratelimit_pass(&app->signature_rl, &suppressed))
        log_warn("rejected request rid=%" PRIu64 " %s %.100s: signature "
                 "check failed: %s (%" PRIu64 " more not logged)",
                 rid, http_method_name(evhttp_request_get_command(req)),
                 request_path(req),
                 reason, suppressed);
    snprintf(message, sizeof(message), "invalid signature: %s", reason);
    evhttp_add_header(evhttp_request_get_output_headers(req),
                      "WWW-Authenticate", "Bearer");
    app_log_request(app, rid, req, 401, start_us);
    http_reply_error(req, 401, message);
}

/*
 * Checks the Authorization header of a signed webhook: scheme, then the
 * token itself (algorithm, signature, issuer, age). Returns 0 with the
 * claims, or -1 with the reason in *reason.
 */
static enum signature_reason
classify(enum jwt_result result)
{
    switch (result) {
    case JWT_ERR_ALG:
    case JWT_ERR_TYP:
        return SIGNATURE_ALGORITHM;
    case JWT_ERR_SIGNATURE:
    case JWT_ERR_UNKNOWN_API_KEY:
    case JWT_ERR_EMPTY_SECRET:
        return SIGNATURE_MISMATCH;
    case JWT_ERR_EXPIRED:
    case JWT_ERR_FUTURE:
        return SIGNATURE_EXPIRED;
    case JWT_ERR_ISS:
    case JWT_ERR_IAT:
    case JWT_ERR_JTI:
    case JWT_ERR_PAYLOAD_HASH:
    case JWT_ERR_APPLICATION_ID:
    case JWT_ERR_API_KEY:
        return SIGNATURE_CLAIMS;
    default:
        return SIGNATURE_MALFORMED;
    }
}

static int
verify_token(struct app *app, struct evhttp_request *req,
             struct jwt_webhook_claims *claims, const char **reason,
             enum signature_reason *why)
{
    const char *auth = evhttp_find_header(
        evhttp_request_get_input_headers(req), "Authorization");
    enum jwt_result result;

    if (auth == NULL) {
        *reason = "missing Authorization: Bearer token";
        *why = SIGNATURE_MISSING;
        return -1;
    }
    if (strncasecmp(auth, "Bearer ", 7) != 0) {
        *reason = "Authorization is not a Bearer token";
        *why = SIGNATURE_MISSING;
        return -1;
    }
    auth += 7;
    while (*auth == ' ')
        auth++;
    result = jwt_verify_webhook(auth, strlen(auth), app->secrets,
                                app->nsecrets, (int64_t)time(NULL),
                                (int64_t)app->cfg->signature_max_age, claims);
    if (result != JWT_OK) {
        *reason = jwt_strerror(result);
        *why = classify(result);
        return -1;
    }
    return 0;
}

/*
 * Checks the token's payload_hash against what arrived. A POST body is
 * hashed as received; a JSON body is also accepted in its compact form
 * (white space outside strings removed, key order kept), which is how
 * Vonage's signing side serialises it. A GET is hashed as its query
 * parameters in received order, as a compact JSON object: the history
 * entry the parser built. Nothing depends on the URL, scheme or host.
 */
static int
verify_payload(const struct jwt_webhook_claims *claims,
               const struct raw_event *raw, const struct call_event *ev)
{
    char hash[JWT_SHA256_HEX_SIZE];
    int ok = 0;

    if (raw->source == CALL_EVENT_SOURCE_QUERY) {
        return ev != NULL &&
               sha256_hex(ev->history, ev->history_len, hash) == 0 &&
               CRYPTO_memcmp(hash, claims->payload_hash, 64) == 0;
    }
    if (sha256_hex(raw->data, raw->len, hash) == 0 &&
        CRYPTO_memcmp(hash, claims->payload_hash, 64) == 0)
        return 1;
    if (raw->source == CALL_EVENT_SOURCE_JSON) {
        char *compact = call_event_compact_json(raw->data, raw->len);

        ok = compact != NULL &&
             sha256_hex(compact, strlen(compact), hash) == 0 &&
             CRYPTO_memcmp(hash, claims->payload_hash, 64) == 0;
        free(compact);
    }
    return ok;
}

static void
event_stored(void *arg, enum ingest_result result)
{
    struct webhook_wait *wait = arg;
    struct app *app = wait->app;
    struct evhttp_request *req = wait->req;
    uint64_t suppressed;

    app->inflight--;
    switch (result) {
    case INGEST_APPLIED:
        app->counters.events_applied++;
        app_log_request(app, wait->request_id, req, 200, wait->start_us);
        http_reply_json(req, 200, "{\"result\":\"applied\"}", 20);
        break;
    case INGEST_DUPLICATE:
        app->counters.events_duplicate++;
        app_log_request(app, wait->request_id, req, 200, wait->start_us);
        http_reply_json(req, 200, "{\"result\":\"duplicate\"}", 22);
        break;
    case INGEST_SPOOLED:
        app->counters.events_spooled++;
        app_log_request(app, wait->request_id, req, 200, wait->start_us);
        http_reply_json(req, 200, "{\"result\":\"spooled\"}", 20);
        break;
    case INGEST_UNAVAILABLE:
        app->counters.events_unavailable++;
        if (log_ratelimit_pass(&app->unrecorded_rl, &suppressed))
            log_warn("event not stored call=%s rid=%" PRIu64
                     ": neither redis nor the spool could take it; answered "
                     "503 (%" PRIu64 " more not logged)",
                     wait->id, wait->request_id, suppressed);
        app_log_request(app, wait->request_id, req, 503, wait->start_us);
        http_reply_error(req, 503, "store unavailable, retry later");
        break;
    case INGEST_FAILED:
        app->counters.events_failed++;
        app_log_request(app, wait->request_id, req, 500, wait->start_us);
        http_reply_error(req, 500, "the store rejected the event; see the "
                                   "server log");
        break;
    case INGEST_REPLAYED:
        app->counters.signature_failures++;
        app->counters.signature_by_reason[SIGNATURE_REPLAYED]++;
        log_warn("rejected request rid=%" PRIu64 " call=%s: signed token "
                 "replayed (its jti was used before)",
                 wait->request_id, wait->id);
        app_log_request(app, wait->request_id, req, 401, wait->start_us);
        http_reply_error(req, 401, "invalid signature: token replayed");
        break;
    }
    free(wait);
}

static struct webhook_wait *
new_wait(struct app *app, struct evhttp_request *req, uint64_t rid,
         uint64_t start_us, const struct call_event *ev)
{
    struct webhook_wait *wait = malloc(sizeof(*wait));

    if (wait == NULL)
        return NULL;
    wait->app = app;
    wait->req = req;
    wait->request_id = rid;
    wait->start_us = start_us;
    wait->origin = ev->origin;
    snprintf(wait->id, sizeof(wait->id), "%s", ev->id);
    return wait;
}

static void
handle_event(struct app *app, struct evhttp_request *req, uint64_t rid,
             uint64_t start_us)
{
    struct webhook_wait *wait;
    struct call_event ev;
    struct raw_event raw;
    struct jwt_webhook_claims claims;
    enum signature_reason why;
    const char *reason;
    char err[300];
    int code;

    if (app->nsecrets > 0 &&
        verify_token(app, req, &claims, &reason, &why) != 0) {
        reply_unauthorized(app, req, rid, start_us, why, reason);
        return;
    }
    code = read_event(req, CALL_EVENT_ORIGIN_EVENT, &ev, &raw, err,
                      sizeof(err));
    if (code != 0) {
        reply_error(app, req, rid, start_us, code, err);
        return;
    }
    if (app->nsecrets > 0) {
        if (!verify_payload(&claims, &raw, &ev)) {
            call_event_free(&ev);
            reply_unauthorized(app, req, rid, start_us,
                               SIGNATURE_PAYLOAD_HASH,
                               "payload_hash does not match the payload");
            return;
        }
        ev.jti = claims.jti;
    }
    wait = new_wait(app, req, rid, start_us, &ev);
    if (wait == NULL) {
        call_event_free(&ev);
        reply_error(app, req, rid, start_us, 500, "out of memory");
        return;
    }
    if (ev.rank == RANK_NONE)
        app->counters.events_unranked++;
    log_debug("event rid=%" PRIu64 " %s=%s status=%s", rid,
              ev.kind == CALL_EVENT_KIND_CALL ? "call" : "conversation",
              ev.id, ev.status ? ev.status : "-");
    app->inflight++;
    ingest_submit(app->ingest, &ev, raw.source, raw.data, raw.len,
                  event_stored, wait);
    call_event_free(&ev);
}

static void
answer_recorded(void *arg, enum ingest_result result)
{
    struct webhook_wait *wait = arg;
    struct app *app = wait->app;
    uint64_t suppressed;

    app->inflight--;
    if ((result == INGEST_UNAVAILABLE || result == INGEST_FAILED ||
         result == INGEST_REPLAYED) &&
        log_ratelimit_pass(&app->unrecorded_rl, &suppressed))
        log_warn("inbound call not recorded call=%s rid=%" PRIu64 ": %s (%" PRIu64
                 " more not logged)",
                 wait->id, wait->request_id,
                 result == INGEST_UNAVAILABLE
                     ? "neither redis nor the spool could take it"
                     : "redis returned an error",
                 suppressed);
    free(wait);
}

static void
handle_answer(struct app *app, struct evhttp_request *req, uint64_t rid,
              uint64_t start_us)
{
    struct webhook_wait *wait;
    struct call_event ev;
    struct raw_event raw;
    struct jwt_webhook_claims claims;
    enum signature_reason why;
    const char *reason;
    char err[300];
    uint64_t suppressed;
    int code;

    if (app->nsecrets > 0 &&
        verify_token(app, req, &claims, &reason, &why) != 0) {
        reply_unauthorized(app, req, rid, start_us, why, reason);
        return;
    }
    code = read_event(req, CALL_EVENT_ORIGIN_ANSWER, &ev, &raw, err,
                      sizeof(err));
    if (code == 405 || code == 415) {
        reply_error(app, req, rid, start_us, code, err);
        return;
    }
    if (app->nsecrets > 0) {
        if (!verify_payload(&claims, &raw, code == 0 ? &ev : NULL)) {
            if (code == 0)
                call_event_free(&ev);
            reply_unauthorized(app, req, rid, start_us,
                               SIGNATURE_PAYLOAD_HASH,
                               "payload_hash does not match the payload");
            return;
        }
        if (code == 0)
            ev.jti = claims.jti;
    }

    /* Vonage ends the call unless it gets an NCCO within seconds, so the
     * NCCO goes out first and no recording problem can hold it back. The
     * copy of the body for the spool is taken before the reply frees it. */
    app->counters.answers++;
    if (code != 0) {
        if (log_ratelimit_pass(&app->bad_request_rl, &suppressed))
            log_warn("answer webhook rid=%" PRIu64 " replied to but not "
                     "recorded: %s (%" PRIu64 " more not logged)",
                     rid, err, suppressed);
        app_log_request(app, rid, req, 200, start_us);
        http_reply_json(req, 200, app->answer_ncco, app->answer_ncco_len);
        return;
    }

    wait = new_wait(app, NULL, rid, start_us, &ev);
    if (wait != NULL) {
        app->inflight++;
        ingest_submit(app->ingest, &ev, raw.source, raw.data, raw.len,
                      answer_recorded, wait);
    }
    call_event_free(&ev);
    app_log_request(app, rid, req, 200, start_us);
    http_reply_json(req, 200, app->answer_ncco, app->answer_ncco_len);
}

void
webhook_handle(struct evhttp_request *req, void *arg)
{
    struct app *app = arg;
    uint64_t rid = ++app->next_request_id;
    uint64_t start_us = clock_monotonic_us();
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    const char *limit_message;
    int limit_code;

    app->counters.requests++;
    if (path == NULL)
        path = "";
    limit_code = http_request_begin(req, &limit_message);
    if (limit_code != 0) {
        reply_error(app, req, rid, start_us, limit_code, limit_message);
        return;
    }

    if (strcmp(path, "/call_events") == 0) {
        handle_event(app, req, rid, start_us);
    } else if (strcmp(path, "/inbound_calls") == 0) {
        handle_answer(app, req, rid, start_us);
    } else if (strcmp(path, "/healthz") == 0) {
        enum evhttp_cmd_type m = evhttp_request_get_command(req);

        if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                              "GET, HEAD");
            app_log_request(app, rid, req, 405, start_us);
            http_reply_error(req, 405, "method not allowed: use GET");
            return;
        }
        app_log_request(app, rid, req, 200, start_us);
        http_reply_json(req, 200, "{\"status\":\"ok\"}", 15);
    } else {
        app_log_request(app, rid, req, 404, start_us);
        http_reply_error(req, 404, "not found: webhooks are /call_events and "
                                   "/inbound_calls");
    }
}
