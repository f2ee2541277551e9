#include "dial_admin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "app.h"
#include "callhook/dial_job.h"
#include "dial_records.h"
#include "dialer.h"

struct submission {
    struct evhttp_request *req;
    uint64_t request_id;
    struct dial_job job;
    char *json;
};

static struct log_ratelimit rejected_rl = LOG_RATELIMIT_INIT(1000);

/* Replies with an error, logging client errors at a limited rate. */
static void
reply_error(struct evhttp_request *req, uint64_t rid, int code,
            const char *message)
{
    uint64_t suppressed;

    if (code >= 400 && code < 500 &&
        log_ratelimit_pass(&rejected_rl, &suppressed))
        log_warn("rejected POST /calls rid=%" PRIu64 ": %d %s (%" PRIu64
                 " more rejections not logged)",
                 rid, code, message, suppressed);
    http_reply_error(req, code, message);
}

/*
 * Compares the SHA-256 digests of the two tokens, so the time taken
 * depends on neither the expected token's bytes nor its length.
 */
static int
token_matches(const char *given, size_t given_len, const char *expected)
{
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned alen = 0, blen = 0;

    if (!EVP_Digest(given, given_len, a, &alen, EVP_sha256(), NULL) ||
        !EVP_Digest(expected, strlen(expected), b, &blen, EVP_sha256(),
                    NULL) ||
        alen != blen)
        return 0;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

/* Returns 0 when the request carries the admin token, else the status. */
static int
check_token(struct app *app, struct evhttp_request *req,
            const char **reason)
{
    const char *token = app->cfg->admin_token;
    const char *auth = evhttp_find_header(
        evhttp_request_get_input_headers(req), "Authorization");

    if (token == NULL || token[0] == '\0') {
        *reason = "POST /calls is disabled: start callhook with --admin-token "
               "(or CALLHOOK_ADMIN_TOKEN) and send 'Authorization: Bearer "
               "TOKEN'";
        return 403;
    }
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0) {
        *reason = "missing bearer token: send 'Authorization: Bearer TOKEN' "
               "with the --admin-token value";
        return 401;
    }
    auth += 7;
    while (*auth == ' ')
        auth++;
    if (!token_matches(auth, strlen(auth), token)) {
        *reason = "invalid bearer token";
        return 401;
    }
    return 0;
}

static void
submission_free(struct submission *sub)
{
    dial_job_free(&sub->job);
    free(sub->json);
    free(sub);
}

static void
submitted(void *arg, redisReply *r)
{
    struct submission *sub = arg;
    json_t *obj;
    char *text;
    char to[16];

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        if (r != NULL && r->type == REDIS_REPLY_ERROR)
            log_error("dial job %s not queued: redis error: %s",
                      sub->job.id, r->str);
        reply_error(sub->req, sub->request_id, 503,
                    "store unavailable, retry later");
        submission_free(sub);
        return;
    }
    log_mask_number(sub->job.to, to, sizeof(to));
    if (strcmp(r->element[0]->str, "duplicate") == 0)
        log_info("dial job from rid=%" PRIu64 " not queued again: its "
                 "idempotency key belongs to job %s",
                 sub->request_id, r->element[1]->str);
    else
        log_info("dial job %s queued from rid=%" PRIu64 " to %s",
                 sub->job.id, sub->request_id, to);

    obj = json_pack("{s:s}", "job_id", r->element[1]->str);
    text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (text != NULL)
        http_reply_json(sub->req, 202, text, strlen(text));
    else
        reply_error(sub->req, sub->request_id, 500, "out of memory");
    free(text);
    json_decref(obj);
    submission_free(sub);
}

/* Validates the body into sub->job; returns 0 or the status, with the
 * message in err. */
static int
read_job(struct evhttp_request *req, struct submission *sub, char *err,
         size_t errlen)
{
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    const char *data = len ? (const char *)evbuffer_pullup(body, -1) : "";
    char media[80];

    http_media_type(req, media, sizeof(media));
    if (strcmp(media, "application/json") != 0) {
        snprintf(err, errlen, "send the job as application/json");
        return 415;
    }
    if (data == NULL) {
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    if (dial_job_parse(&sub->job, data, len, err, errlen) != 0)
        return 400;
    if (sub->job.id[0] != '\0') {
        snprintf(err, errlen, "\"id\" is set by callhook; leave it out");
        return 400;
    }
    if (dial_new_job_id(sub->job.id) != 0) {
        snprintf(err, errlen, "cannot make a job id");
        return 500;
    }
    sub->json = dial_job_to_json(&sub->job);
    if (sub->json == NULL) {
        snprintf(err, errlen, "out of memory");
        return 500;
    }
    return 0;
}

void
admin_post_call(struct app *app, struct evhttp_request *req, uint64_t rid)
{
    struct submission *sub;
    struct dial_command cmd;
    const char *reason;
    char err[512];
    int code;

    code = check_token(app, req, &reason);
    if (code != 0) {
        if (code == 401)
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "WWW-Authenticate", "Bearer");
        reply_error(req, rid, code, reason);
        return;
    }
    if (!dialer_accepting(app->dialer)) {
        reply_error(req, rid, 503,
                    app->dialer == NULL
                        ? "the dialer is off: start callhook with "
                          "--application-id and --private-key"
                        : "the dialer is shutting down");
        return;
    }

    sub = calloc(1, sizeof(*sub));
    if (sub == NULL) {
        reply_error(req, rid, 500, "out of memory");
        return;
    }
    sub->req = req;
    sub->request_id = rid;
    code = read_job(req, sub, err, sizeof(err));
    if (code != 0) {
        reply_error(req, rid, code, err);
        submission_free(sub);
        return;
    }

    dial_submit_command(&cmd, &sub->job, sub->json, "admin");
    if (app->store == NULL ||
        store_command(app->store, submitted, sub, cmd.argc, cmd.argv,
                      cmd.lens) != 0) {
        reply_error(req, rid, 503, "store unavailable, retry later");
        submission_free(sub);
    }
}
