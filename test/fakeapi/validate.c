/*
 * Checks of a POST /v1/calls body, after the Voice API's OpenAPI
 * description (CreateCallRequestNcco and CreateCallRequestAnswerUrl).
 * Every problem found is listed in invalid_parameters, not only the
 * first, as the real API does.
 */
#include "fakeapi.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct checker {
    json_t *invalid; /* [{"name": ..., "reason": ...}] */
};

static void report(struct checker *c, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
report(struct checker *c, const char *name, const char *fmt, ...)
{
    char reason[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    json_array_append_new(c->invalid,
                          json_pack("{s:s, s:s}", "name", name, "reason",
                                    reason));
}

int
is_http_url(const char *url)
{
    struct evhttp_uri *uri;
    const char *scheme, *host;
    int ok;

    if (strlen(url) > URL_MAX)
        return 0;
    uri = evhttp_uri_parse_with_flags(url, 0);
    if (uri == NULL)
        return 0;
    scheme = evhttp_uri_get_scheme(uri);
    host = evhttp_uri_get_host(uri);
    ok = scheme != NULL &&
         (strcasecmp(scheme, "http") == 0 ||
          strcasecmp(scheme, "https") == 0) &&
         host != NULL && host[0] != '\0';
    evhttp_uri_free(uri);
    return ok;
}

static void
check_number(struct checker *c, const char *name, json_t *value, char *out)
{
    const char *text = json_string_value(value);
    size_t len = json_string_length(value);

    if (!json_is_string(value)) {
        report(c, name, "must be a string of %d to %d digits",
               NUMBER_MIN_DIGITS, NUMBER_MAX_DIGITS);
        return;
    }
    if (len < NUMBER_MIN_DIGITS || len > NUMBER_MAX_DIGITS) {
        report(c, name, "must have %d to %d digits, not %zu characters",
               NUMBER_MIN_DIGITS, NUMBER_MAX_DIGITS, len);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)text[i])) {
            report(c, name,
                   "must contain digits only, in E.164 form without '+'");
            return;
        }
    }
    memcpy(out, text, len + 1);
}

/*
 * Checks {"type": "phone", "number": ...}. to endpoints may also carry
 * "dtmfAnswer". Other endpoint types (sip, websocket, vbc, app) exist in
 * the real API, but this fake accepts phone endpoints only.
 */
static void
check_phone_endpoint(struct checker *c, const char *name, json_t *endpoint,
                     int allow_dtmf, char *number)
{
    char field[64];
    const char *key;
    json_t *value;

    if (!json_is_object(endpoint)) {
        report(c, name, "must be an endpoint object");
        return;
    }
    json_object_foreach(endpoint, key, value) {
        snprintf(field, sizeof(field), "%s.%.32s", name, key);
        if (strcmp(key, "type") == 0) {
            if (!json_is_string(value) ||
                strcmp(json_string_value(value), "phone") != 0)
                report(c, field, "must be \"phone\"");
        } else if (strcmp(key, "number") == 0) {
            check_number(c, field, value, number);
        } else if (allow_dtmf && strcmp(key, "dtmfAnswer") == 0) {
            if (!json_is_string(value))
                report(c, field, "must be a string");
        } else {
            report(c, field, "is not a parameter of a phone endpoint");
        }
    }
    if (json_object_get(endpoint, "type") == NULL) {
        snprintf(field, sizeof(field), "%s.type", name);
        report(c, field, "is required");
    }
    if (json_object_get(endpoint, "number") == NULL) {
        snprintf(field, sizeof(field), "%s.number", name);
        report(c, field, "is required");
    }
}

static void
check_to(struct checker *c, json_t *to, char *number)
{
    char unused[NUMBER_MAX_DIGITS + 1];
    size_t i;
    json_t *endpoint;

    if (to == NULL) {
        report(c, "to", "is required");
        return;
    }
    if (!json_is_array(to) || json_array_size(to) == 0) {
        report(c, "to", "must be a non-empty array of endpoints");
        return;
    }
    json_array_foreach(to, i, endpoint) {
        char name[32];

        snprintf(name, sizeof(name), "to[%zu]", i);
        /* The call goes to the first endpoint. Later ones are checked
         * but not dialled. */
        check_phone_endpoint(c, name, endpoint, 1, i == 0 ? number : unused);
    }
}

static void
check_from(struct checker *c, json_t *from, json_t *random_from,
           char *number)
{
    if (random_from != NULL && !json_is_boolean(random_from)) {
        report(c, "random_from_number", "must be true or false");
        return;
    }
    if (json_is_true(random_from)) {
        if (from != NULL)
            report(c, "from",
                   "must not be set when random_from_number is true");
        return;
    }
    if (from == NULL) {
        report(c, "from", "is required unless random_from_number is true");
        return;
    }
    check_phone_endpoint(c, "from", from, 0, number);
}

/* Checks [URL]: an array of exactly one absolute http(s) URL. */
static void
check_url_array(struct checker *c, const char *name, json_t *value,
                char *out)
{
    json_t *url = json_array_get(value, 0);

    if (!json_is_array(value) || json_array_size(value) != 1 ||
        !json_is_string(url)) {
        report(c, name, "must be an array of one URL");
        return;
    }
    if (!is_http_url(json_string_value(url))) {
        report(c, name,
               "must contain an absolute http or https URL of at most %d "
               "bytes",
               URL_MAX);
        return;
    }
    if (out != NULL)
        snprintf(out, URL_MAX + 1, "%s", json_string_value(url));
}

static void
check_method(struct checker *c, const char *name, json_t *value, int *get)
{
    const char *method = json_string_value(value);

    if (method != NULL && strcmp(method, "GET") == 0) {
        *get = 1;
    } else if (method != NULL && strcmp(method, "POST") == 0) {
        *get = 0;
    } else {
        report(c, name, "must be \"GET\" or \"POST\"");
    }
}

static void
check_range(struct checker *c, const char *name, json_t *value,
            json_int_t low, json_int_t high)
{
    if (!json_is_integer(value) || json_integer_value(value) < low ||
        json_integer_value(value) > high)
        report(c, name, "must be an integer from %lld to %lld",
               (long long)low, (long long)high);
}

static void
check_ncco(struct checker *c, json_t *ncco)
{
    size_t i;
    json_t *action;

    if (!json_is_array(ncco) || json_array_size(ncco) == 0) {
        report(c, "ncco", "must be a non-empty array of actions");
        return;
    }
    json_array_foreach(ncco, i, action) {
        json_t *name = json_object_get(action, "action");
        char field[32];

        snprintf(field, sizeof(field), "ncco[%zu]", i);
        if (!json_is_object(action))
            report(c, field, "must be an object");
        else if (!json_is_string(name) || json_string_length(name) == 0)
            report(c, field, "must have an \"action\" string");
    }
}

static int
is_known_field(const char *key)
{
    static const char *const known[] = {
        "to",          "from",         "random_from_number",
        "ncco",        "answer_url",   "answer_method",
        "event_url",   "event_method", "machine_detection",
        "length_timer", "ringing_timer", "advanced_machine_detection",
    };

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(key, known[i]) == 0)
            return 1;
    }
    return 0;
}

static void
check_fields(struct checker *c, json_t *body, struct call_request *call)
{
    json_t *ncco = json_object_get(body, "ncco");
    json_t *answer_url = json_object_get(body, "answer_url");
    json_t *value;
    const char *key;
    int answer_get = 0;

    json_object_foreach(body, key, value) {
        if (!is_known_field(key)) {
            char name[64];

            snprintf(name, sizeof(name), "%.63s", key);
            report(c, name, "is not a parameter of this request");
        }
    }

    check_to(c, json_object_get(body, "to"), call->to);
    check_from(c, json_object_get(body, "from"),
               json_object_get(body, "random_from_number"), call->from);

    if (ncco != NULL && answer_url != NULL)
        report(c, "ncco", "must not be set together with answer_url");
    else if (ncco == NULL && answer_url == NULL)
        report(c, "ncco", "either ncco or answer_url is required");
    if (ncco != NULL)
        check_ncco(c, ncco);
    if (answer_url != NULL)
        check_url_array(c, "answer_url", answer_url, NULL);
    if ((value = json_object_get(body, "answer_method")) != NULL) {
        if (answer_url == NULL)
            report(c, "answer_method", "is only valid with answer_url");
        else
            check_method(c, "answer_method", value, &answer_get);
    }

    if ((value = json_object_get(body, "event_url")) != NULL)
        check_url_array(c, "event_url", value, call->event_url);
    if ((value = json_object_get(body, "event_method")) != NULL)
        check_method(c, "event_method", value, &call->event_method_get);

    if ((value = json_object_get(body, "machine_detection")) != NULL) {
        const char *md = json_string_value(value);

        if (md == NULL ||
            (strcmp(md, "continue") != 0 && strcmp(md, "hangup") != 0))
            report(c, "machine_detection",
                   "must be \"continue\" or \"hangup\"");
    }
    /* NOTE: only the type is checked. The members of this newer object
     * are not validated. */
    if ((value = json_object_get(body, "advanced_machine_detection")) !=
            NULL &&
        !json_is_object(value))
        report(c, "advanced_machine_detection", "must be an object");
    if ((value = json_object_get(body, "ringing_timer")) != NULL)
        check_range(c, "ringing_timer", value, 1, 120);
    if ((value = json_object_get(body, "length_timer")) != NULL)
        check_range(c, "length_timer", value, 1, 7200);
}

static json_t *
bad_request(const char *detail, json_t *invalid)
{
    return json_pack("{s:s, s:s, s:s, s:o}", "type",
                     "https://developer.nexmo.com/api-errors#bad-request",
                     "title", "Bad Request", "detail", detail,
                     "invalid_parameters",
                     invalid != NULL ? invalid : json_array());
}

int
validate_call(const char *body, size_t len, struct call_request *call,
              json_t **problem)
{
    struct checker c;
    json_error_t jerr;
    json_t *root;
    char detail[320];

    memset(call, 0, sizeof(*call));
    *problem = NULL;
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(detail, sizeof(detail),
                 "The request body is not valid JSON: %s (line %d, column "
                 "%d)",
                 jerr.text, jerr.line, jerr.column);
        *problem = bad_request(detail, NULL);
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *problem = bad_request("The request body must be a JSON object.",
                               NULL);
        return -1;
    }

    c.invalid = json_array();
    check_fields(&c, root, call);
    json_decref(root);
    if (json_array_size(c.invalid) == 0) {
        json_decref(c.invalid);
        return 0;
    }
    snprintf(detail, sizeof(detail),
             "The request failed validation: %zu invalid parameter%s.",
             json_array_size(c.invalid),
             json_array_size(c.invalid) == 1 ? "" : "s");
    *problem = bad_request(detail, c.invalid);
    return -1;
}
