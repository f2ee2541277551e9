#include "dial_request.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "callhook_config.h"

#define RESPONSE_MAX (64 * 1024)
#define RETRY_AFTER_MAX_S 3600

struct dial_request {
    char *body;
    size_t body_len;
    size_t body_pos;
    int body_handed_out; /* some of the body went to curl */
    int request_sent;    /* some of the request reached the socket */
    struct curl_slist *headers;
    char *response;
    size_t response_len;
    char retry_after[64];
};

static size_t
read_body(char *buf, size_t size, size_t nitems, void *arg)
{
    struct dial_request *rq = arg;
    size_t n = size * nitems;

    if (n > rq->body_len - rq->body_pos)
        n = rq->body_len - rq->body_pos;
    memcpy(buf, rq->body + rq->body_pos, n);
    rq->body_pos += n;
    if (n > 0)
        rq->body_handed_out = 1;
    return n;
}

/*
 * curl rewinds the body to send the request again, which it does on its
 * own when a reused connection dies before any response byte arrives.
 * The API may have received the first copy by then, so once any of the
 * body went out the rewind fails and curl reports
 * CURLE_SEND_FAIL_REWIND instead of sending it twice.
 */
static int
seek_body(void *arg, curl_off_t offset, int origin)
{
    struct dial_request *rq = arg;

    if (rq->body_handed_out || origin != SEEK_SET || offset != 0)
        return CURL_SEEKFUNC_FAIL;
    rq->body_pos = 0;
    return CURL_SEEKFUNC_OK;
}

static size_t
write_response(char *data, size_t size, size_t nmemb, void *arg)
{
    struct dial_request *rq = arg;
    size_t n = size * nmemb, keep = n;
    char *grown;

    if (rq->response_len + keep > RESPONSE_MAX)
        keep = RESPONSE_MAX - rq->response_len;
    if (keep == 0)
        return n;
    grown = realloc(rq->response, rq->response_len + keep + 1);
    if (grown == NULL)
        return n;
    rq->response = grown;
    memcpy(rq->response + rq->response_len, data, keep);
    rq->response_len += keep;
    rq->response[rq->response_len] = '\0';
    return n;
}

static size_t
read_header(char *data, size_t size, size_t nitems, void *arg)
{
    struct dial_request *rq = arg;
    size_t n = size * nitems, name_len = strlen("Retry-After:");

    if (n > name_len && strncasecmp(data, "Retry-After:", name_len) == 0) {
        size_t start = name_len, end = n;

        while (start < end && (data[start] == ' ' || data[start] == '\t'))
            start++;
        while (end > start && isspace((unsigned char)data[end - 1]))
            end--;
        if (end - start >= sizeof(rq->retry_after))
            end = start + sizeof(rq->retry_after) - 1;
        memcpy(rq->retry_after, data + start, end - start);
        rq->retry_after[end - start] = '\0';
    }
    return n;
}

/* Notes when request bytes reach the socket; curl calls this only with
 * CURLOPT_VERBOSE, and prints nothing itself with a debug function set. */
static int
watch_sent(CURL *easy, curl_infotype type, char *data, size_t size,
           void *arg)
{
    struct dial_request *rq = arg;

    if (type == CURLINFO_HEADER_OUT || type == CURLINFO_DATA_OUT)
        rq->request_sent = 1;
    return 0;
}

void
dial_request_free(struct dial_request *rq)
{
    if (rq == NULL)
        return;
    curl_slist_free_all(rq->headers);
    free(rq->body);
    free(rq->response);
    free(rq);
}

static int
add_header(struct dial_request *rq, const char *header)
{
    struct curl_slist *list = curl_slist_append(rq->headers, header);

    if (list == NULL)
        return -1;
    rq->headers = list;
    return 0;
}

CURL *
dial_request_new(struct dial_request **out, const char *url,
                 const char *body, const char *token,
                 unsigned connect_timeout_ms, unsigned timeout_ms)
{
    struct dial_request *rq = calloc(1, sizeof(*rq));
    CURL *easy = curl_easy_init();
    size_t auth_len = strlen(token) + 32;
    char *auth = malloc(auth_len);
    int rc = 0;

    if (rq == NULL || easy == NULL || auth == NULL)
        goto fail;
    rq->body = strdup(body);
    rq->body_len = strlen(body);
    snprintf(auth, auth_len, "Authorization: Bearer %s", token);
    if (rq->body == NULL || add_header(rq, auth) != 0 ||
        add_header(rq, "Content-Type: application/json") != 0 ||
        add_header(rq, "Accept: application/json") != 0 ||
        /* The body is small; waiting for 100 Continue only adds delay. */
        add_header(rq, "Expect:") != 0)
        goto fail;
    explicit_bzero(auth, auth_len);
    free(auth);
    auth = NULL;

    rc |= curl_easy_setopt(easy, CURLOPT_URL, url);
    rc |= curl_easy_setopt(easy, CURLOPT_POST, 1L);
    rc |= curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                           (curl_off_t)rq->body_len);
    rc |= curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_body);
    rc |= curl_easy_setopt(easy, CURLOPT_READDATA, rq);
    rc |= curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, seek_body);
    rc |= curl_easy_setopt(easy, CURLOPT_SEEKDATA, rq);
    rc |= curl_easy_setopt(easy, CURLOPT_HTTPHEADER, rq->headers);
    rc |= curl_easy_setopt(easy, CURLOPT_USERAGENT,
                           "callhook/" CALLHOOK_VERSION);
    rc |= curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_response);
    rc |= curl_easy_setopt(easy, CURLOPT_WRITEDATA, rq);
    rc |= curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
    rc |= curl_easy_setopt(easy, CURLOPT_HEADERDATA, rq);
    rc |= curl_easy_setopt(easy, CURLOPT_DEBUGFUNCTION, watch_sent);
    rc |= curl_easy_setopt(easy, CURLOPT_DEBUGDATA, rq);
    rc |= curl_easy_setopt(easy, CURLOPT_VERBOSE, 1L);
    /* HTTP/1.1 keeps one request per connection, so "sent" and "answered"
     * mean the same on every connection and pool. */
    rc |= curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                           (long)CURL_HTTP_VERSION_1_1);
    rc |= curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    rc |= curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                           (long)connect_timeout_ms);
    rc |= curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* Without this, a transfer that ends while its host name is still
     * being resolved makes libcurl (7.87 and 7.88 at least) join the
     * resolver thread, which blocks the loop until the DNS answer. */
    rc |= curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
#endif
    if (rc != CURLE_OK)
        goto fail;
    *out = rq;
    return easy;

fail:
    if (auth != NULL) {
        explicit_bzero(auth, auth_len);
        free(auth);
    }
    if (easy != NULL)
        curl_easy_cleanup(easy);
    dial_request_free(rq);
    return NULL;
}

uint64_t
dial_parse_retry_after(const char *value, int64_t now_s)
{
    size_t i = 0;
    int64_t seconds = 0;
    time_t when;

    if (value == NULL || value[0] == '\0')
        return 0;
    while (isdigit((unsigned char)value[i]) && seconds <= RETRY_AFTER_MAX_S)
        seconds = seconds * 10 + (value[i++] - '0');
    if (i > 0 && (value[i] == '\0' || isdigit((unsigned char)value[i]))) {
        if (seconds > RETRY_AFTER_MAX_S)
            seconds = RETRY_AFTER_MAX_S;
        return (uint64_t)seconds * 1000;
    }
    when = curl_getdate(value, NULL);
    if (when == -1 || (int64_t)when <= now_s)
        return 0;
    seconds = (int64_t)when - now_s;
    if (seconds > RETRY_AFTER_MAX_S)
        seconds = RETRY_AFTER_MAX_S;
    return (uint64_t)seconds * 1000;
}

static void
copy_id(json_t *root, const char *name, char *out, size_t outlen)
{
    const char *value = json_string_value(json_object_get(root, name));

    out[0] = '\0';
    if (value != NULL && strlen(value) < outlen &&
        call_event_check_id(value, strlen(value)) == NULL)
        memcpy(out, value, strlen(value) + 1);
}

/* Reads the uuids of a placed call from the 201 body. */
static void
read_placed(const struct dial_request *rq, struct dial_result *res)
{
    json_t *root = rq->response
                       ? json_loadb(rq->response, rq->response_len, 0, NULL)
                       : NULL;

    copy_id(root, "uuid", res->call_uuid, sizeof(res->call_uuid));
    copy_id(root, "conversation_uuid", res->conversation_uuid,
            sizeof(res->conversation_uuid));
    if (res->call_uuid[0] == '\0')
        snprintf(res->error, sizeof(res->error),
                 "HTTP %ld: the API placed the call but its response has "
                 "no valid uuid",
                 res->status);
    json_decref(root);
}

/*
 * Describes an error response: "HTTP 400: title: detail" from an RFC 7807
 * problem document, with the first invalid parameter when there is one.
 */
static void
describe_problem(const struct dial_request *rq, struct dial_result *res)
{
    json_t *root = rq->response
                       ? json_loadb(rq->response, rq->response_len, 0, NULL)
                       : NULL;
    const char *title = json_string_value(json_object_get(root, "title"));
    const char *detail = json_string_value(json_object_get(root, "detail"));
    json_t *params = json_object_get(root, "invalid_parameters");
    json_t *first = json_array_get(params, 0);
    const char *pname = json_string_value(json_object_get(first, "name"));
    const char *preason = json_string_value(json_object_get(first, "reason"));
    int n;

    n = snprintf(res->error, sizeof(res->error), "HTTP %ld", res->status);
    if (title != NULL)
        n += snprintf(res->error + n, sizeof(res->error) - (size_t)n,
                      ": %.100s", title);
    if (detail != NULL && n < (int)sizeof(res->error))
        n += snprintf(res->error + n, sizeof(res->error) - (size_t)n,
                      ": %.150s", detail);
    if (pname != NULL && preason != NULL && n < (int)sizeof(res->error))
        snprintf(res->error + n, sizeof(res->error) - (size_t)n,
                 " (%.40s: %.80s)", pname, preason);
    /* Control bytes from the network must not reach logs or Redis. */
    for (char *p = res->error; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    }
    json_decref(root);
}

static void
judge_status(struct dial_request *rq, struct dial_result *res)
{
    long status = res->status;

    if (status >= 200 && status < 300) {
        res->verdict = DIAL_PLACED;
        read_placed(rq, res);
        return;
    }
    describe_problem(rq, res);
    if (status == 429 || status == 503) {
        /* Both mean the API turned the request away without acting. */
        res->verdict = DIAL_RETRY;
        res->throttled = status == 429;
        res->retry_after_ms =
            dial_parse_retry_after(rq->retry_after, (int64_t)time(NULL));
    } else if (status >= 400 && status < 500) {
        res->verdict = DIAL_FAILED;
    } else if (status >= 300 && status < 400) {
        /* A redirect is not followed: the API acted on nothing. */
        res->verdict = DIAL_FAILED;
    } else {
        /* 500, 502, 504 and anything unexpected: the call may exist. */
        res->verdict = DIAL_AMBIGUOUS;
    }
}

void
dial_request_result(struct dial_request *rq, CURL *easy, CURLcode code,
                    struct dial_result *res)
{
    memset(res, 0, sizeof(*res));
    /* No more debug callbacks into rq while the handle is torn down. */
    curl_easy_setopt(easy, CURLOPT_VERBOSE, 0L);
    curl_easy_setopt(easy, CURLOPT_DEBUGFUNCTION, NULL);

    if (code == CURLE_OK) {
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res->status);
        judge_status(rq, res);
        return;
    }
    if (!rq->request_sent) {
        res->verdict = DIAL_RETRY;
        snprintf(res->error, sizeof(res->error),
                 "request not sent: %s", curl_easy_strerror(code));
        return;
    }
    res->verdict = DIAL_AMBIGUOUS;
    snprintf(res->error, sizeof(res->error),
             "no response after the request was sent: %s",
             curl_easy_strerror(code));
}
