/*
 * The admin listener: call lookup and readiness. It is meant for loopback
 * or a private network only.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "app.h"
#include "dial_admin.h"
#include "callhook/call_event.h"
#include "metrics.h"

struct lookup {
    struct app *app;
    struct evhttp_request *req;
    uint64_t request_id;
    uint64_t start_us;
};

static void
reply(struct app *app, struct evhttp_request *req, uint64_t rid,
      uint64_t start_us, int code, const char *json)
{
    app_log_admin_request(app, rid, req, code, start_us);
    http_reply_json(req, code, json, strlen(json));
}

static void
reply_error(struct app *app, struct evhttp_request *req, uint64_t rid,
            uint64_t start_us, int code, const char *message)
{
    app_log_admin_request(app, rid, req, code, start_us);
    http_reply_error(req, code, message);
}

/*
 * Replies 200 with value as JSON, or 500 when value is NULL or cannot be
 * written, then frees value and lk.
 */
static void
finish_lookup(struct lookup *lk, json_t *value, size_t flags)
{
    char *text = value ? json_dumps(value, flags) : NULL;

    if (text != NULL)
        reply(lk->app, lk->req, lk->request_id, lk->start_us, 200, text);
    else
        reply_error(lk->app, lk->req, lk->request_id, lk->start_us, 500,
                    "out of memory");
    free(text);
    json_decref(value);
    free(lk);
}

static void
call_loaded(void *arg, redisReply *r)
{
    struct lookup *lk = arg;
    json_t *obj;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        reply_error(lk->app, lk->req, lk->request_id, lk->start_us, 503,
                    "store unavailable, retry later");
        free(lk);
        return;
    }
    if (r->elements == 0) {
        reply_error(lk->app, lk->req, lk->request_id, lk->start_us, 404,
                    "call not found");
        free(lk);
        return;
    }

    obj = json_object();
    for (size_t i = 0; obj != NULL && i + 1 < r->elements; i += 2) {
        redisReply *k = r->element[i], *v = r->element[i + 1];
        char key[CALL_EVENT_NAME_MAX + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
            k->len > CALL_EVENT_NAME_MAX)
            continue;
        memcpy(key, k->str, k->len);
        key[k->len] = '\0';
        /* json_stringn() returns NULL for bytes that are not UTF-8, which
         * only a write from outside callhook can leave in the hash. */
        json_object_set_new(obj, key, json_stringn(v->str, v->len));
    }
    finish_lookup(lk, obj, JSON_COMPACT | JSON_SORT_KEYS);
}

static void
get_call(struct app *app, struct evhttp_request *req, uint64_t rid,
         uint64_t start_us, const char *id)
{
    char key[CALL_EVENT_ID_MAX + 16];
    const char *argv[2];
    size_t lens[2];
    const char *why = call_event_check_id(id, strlen(id));
    struct lookup *lk;

    if (why != NULL) {
        char message[160];

        snprintf(message, sizeof(message), "invalid call uuid: it %s", why);
        reply_error(app, req, rid, start_us, 400, message);
        return;
    }
    snprintf(key, sizeof(key), "call:{%s}", id);
    argv[0] = "HGETALL";
    lens[0] = 7;
    argv[1] = key;
    lens[1] = strlen(key);

    lk = malloc(sizeof(*lk));
    if (lk == NULL) {
        reply_error(app, req, rid, start_us, 500, "out of memory");
        return;
    }
    lk->app = app;
    lk->req = req;
    lk->request_id = rid;
    lk->start_us = start_us;
    if (app->store == NULL ||
        store_command(app->store, call_loaded, lk, 2, argv, lens) != 0) {
        free(lk);
        reply_error(app, req, rid, start_us, 503,
                    "store unavailable, retry later");
    }
}

static void
calls_listed(void *arg, redisReply *r)
{
    struct lookup *lk = arg;
    json_t *list;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        reply_error(lk->app, lk->req, lk->request_id, lk->start_us, 503,
                    "store unavailable, retry later");
        free(lk);
        return;
    }
    list = json_array();
    for (size_t i = 0; list != NULL && i + 1 < r->elements; i += 2) {
        json_t *item = json_object();

        json_object_set_new(item, "uuid",
                            json_stringn(r->element[i]->str,
                                         r->element[i]->len));
        json_object_set_new(item, "updated_at",
                            json_integer(strtoll(r->element[i + 1]->str,
                                                 NULL, 10)));
        json_array_append_new(list, item);
    }
    finish_lookup(lk, json_pack("{s:o}", "calls", list),
                  JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/*
 * GET /calls?status=S&since=T&limit=N: call ids updated at or after T
 * (epoch milliseconds or an ISO 8601 date-time; default: all), newest
 * first, optionally only those whose status is S, at most N (default
 * 100, at most 1000). Reads the sorted sets the apply script keeps.
 */
static void
list_calls(struct app *app, struct evhttp_request *req, uint64_t rid,
           uint64_t start_us)
{
    struct evkeyvalq params;
    const char *status, *since, *limit_text;
    char key[128], min[32], limit[16];
    long long since_ms = 0;
    long count = 100;
    const char *argv[8];
    size_t lens[8];
    struct lookup *lk;
    const char *query =
        evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));

    if (evhttp_parse_query_str(query ? query : "", &params) != 0) {
        reply_error(app, req, rid, start_us, 400, "invalid query string");
        goto out;
    }
    status = evhttp_find_header(&params, "status");
    since = evhttp_find_header(&params, "since");
    limit_text = evhttp_find_header(&params, "limit");

    if (status != NULL && call_event_status_rank(status) == RANK_NONE) {
        reply_error(app, req, rid, start_us, 400,
                    "invalid status: expected started, ringing, answered, "
                    "disconnected, completed, busy, cancelled, unanswered, "
                    "rejected, failed or timeout");
        goto out;
    }
    if (since != NULL) {
        char *end;
        int64_t parsed;

        since_ms = strtoll(since, &end, 10);
        if (since[0] == '\0' || *end != '\0' || since_ms < 0) {
            if (call_event_parse_time(since, strlen(since), &parsed) != 0) {
                reply_error(app, req, rid, start_us, 400,
                            "invalid since: expected epoch milliseconds or "
                            "an ISO 8601 date-time");
                goto out;
            }
            since_ms = parsed;
        }
    }
    if (limit_text != NULL) {
        char *end;

        count = strtol(limit_text, &end, 10);
        if (limit_text[0] == '\0' || *end != '\0' || count < 1 ||
            count > 1000) {
            reply_error(app, req, rid, start_us, 400,
                        "invalid limit: expected 1 to 1000");
            goto out;
        }
    }

    if (status != NULL)
        snprintf(key, sizeof(key), "%s:%s", STORE_INDEX_KEY, status);
    else
        snprintf(key, sizeof(key), "%s", STORE_INDEX_KEY);
    snprintf(min, sizeof(min), "%lld", since_ms);
    snprintf(limit, sizeof(limit), "%ld", count);
    argv[0] = "ZREVRANGEBYSCORE";
    argv[1] = key;
    argv[2] = "+inf";
    argv[3] = min;
    argv[4] = "WITHSCORES";
    argv[5] = "LIMIT";
    argv[6] = "0";
    argv[7] = limit;
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);

    lk = malloc(sizeof(*lk));
    if (lk == NULL) {
        reply_error(app, req, rid, start_us, 500, "out of memory");
        goto out;
    }
    lk->app = app;
    lk->req = req;
    lk->request_id = rid;
    lk->start_us = start_us;
    if (app->store == NULL ||
        store_command(app->store, calls_listed, lk, 8, argv, lens) != 0) {
        free(lk);
        reply_error(app, req, rid, start_us, 503,
                    "store unavailable, retry later");
    }

out:
    evhttp_clear_headers(&params);
}

void
admin_handle(struct evhttp_request *req, void *arg)
{
    struct app *app = arg;
    uint64_t rid = ++app->next_request_id;
    uint64_t start_us = clock_monotonic_us();
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    const char *limit_message;
    int limit_code;

    if (path == NULL)
        path = "";
    limit_code = http_request_begin(req, &limit_message);
    if (limit_code != 0) {
        reply_error(app, req, rid, start_us, limit_code, limit_message);
        return;
    }

    if (strcmp(path, "/calls") == 0 && method == EVHTTP_REQ_POST) {
        admin_post_call(app, req, rid);
        return;
    }
    if (strcmp(path, "/readyz") != 0 && strcmp(path, "/healthz") != 0 &&
        strcmp(path, "/metrics") != 0 && strcmp(path, "/calls") != 0 &&
        strncmp(path, "/calls/", 7) != 0) {
        reply_error(app, req, rid, start_us, 404,
                    "not found: admin routes are /calls/{uuid}, /readyz, "
                    "/healthz and /metrics");
        return;
    }
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "GET, HEAD");
        reply_error(app, req, rid, start_us, 405,
                    "method not allowed: use GET");
        return;
    }

    if (strcmp(path, "/calls") == 0) {
        list_calls(app, req, rid, start_us);
    } else if (strcmp(path, "/metrics") == 0) {
        struct evbuffer *body = evbuffer_new();

        if (body == NULL) {
            reply_error(app, req, rid, start_us, 500, "out of memory");
            return;
        }
        app_log_admin_request(app, rid, req, 200, start_us);
        metrics_render(app, body);
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", body);
        evbuffer_free(body);
    } else if (strcmp(path, "/healthz") == 0) {
        reply(app, req, rid, start_us, 200, "{\"status\":\"ok\"}");
    } else if (strcmp(path, "/readyz") == 0) {
        /* Ready when an event can be made safe: Redis takes it, or the
         * spool does. The dialer's key was checked at startup. */
        int redis = app->store != NULL && store_ready(app->store);
        int spool = app->spool != NULL && spool_writable(app->spool);
        const char *spool_state = "off";
        char body[160];

        if (app->spool != NULL)
            spool_state = spool ? "writable" : "full";
        snprintf(body, sizeof(body),
                 "{\"status\":\"%s\",\"redis\":\"%s\",\"spool\":\"%s\","
                 "\"dialer\":\"%s\"}",
                 redis || spool ? "ready" : "unavailable",
                 redis ? "connected" : "unavailable", spool_state,
                 app->dialer != NULL ? "on" : "off");
        reply(app, req, rid, start_us, redis || spool ? 200 : 503, body);
    } else {
        size_t len = 0;
        char *id = evhttp_uridecode(path + 7, 0, &len);

        if (id == NULL) {
            reply_error(app, req, rid, start_us, 500, "out of memory");
            return;
        }
        if (strlen(id) != len)
            reply_error(app, req, rid, start_us, 400,
                        "invalid call uuid: it contains a NUL byte");
        else
            get_call(app, req, rid, start_us, id);
        free(id);
    }
}
