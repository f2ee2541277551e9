#include "callhook/dial_job.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "callhook/ncco.h"

#define JOB_FIELDS                                                            \
    "to, from, random_from_number, text, ncco, answer_url, "                  \
    "machine_detection, ringing_timer, length_timer, idempotency_key and id"

static const char *const known_fields[] = {
    "to",           "from",          "random_from_number", "text",
    "ncco",         "answer_url",    "machine_detection",  "ringing_timer",
    "length_timer", "idempotency_key", "id",
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

const char *
dial_number_normalize(const char *text, size_t len,
                      char out[DIAL_NUMBER_MAX + 1])
{
    size_t digits = 0, i = 0;

    while (i < len && text[i] == ' ')
        i++;
    if (i < len && text[i] == '+')
        i++;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c >= '0' && c <= '9') {
            if (digits == DIAL_NUMBER_MAX)
                return "has more than 15 digits";
            out[digits++] = (char)c;
        } else if (c != ' ' && c != '-' && c != '.' && c != '(' &&
                   c != ')') {
            return "contains a character other than digits, a leading "
                   "'+', spaces, dashes, dots and parentheses";
        }
    }
    out[digits] = '\0';
    if (digits < DIAL_NUMBER_MIN)
        return "has fewer than 7 digits";
    return NULL;
}

const char *
dial_job_check_id(const char *id, size_t len)
{
    if (len == 0)
        return "is empty";
    if (len > DIAL_JOB_ID_MAX)
        return "is longer than 64 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];

        if (!isalnum(c) && c != '-' && c != '_')
            return "contains characters other than letters, digits, '-' "
                   "and '_'";
    }
    return NULL;
}

void
dial_job_free(struct dial_job *job)
{
    if (job == NULL)
        return;
    free(job->text);
    free(job->ncco);
    free(job->answer_url);
    job->text = job->ncco = job->answer_url = NULL;
}

static int
read_number(json_t *root, const char *name, char out[DIAL_NUMBER_MAX + 1],
            char *err, size_t errlen)
{
    json_t *value = json_object_get(root, name);
    const char *reason;

    if (!json_is_string(value))
        return fail(err, errlen,
                    "\"%s\" must be a phone number as a string, such as "
                    "\"14155550100\"",
                    name);
    reason = dial_number_normalize(json_string_value(value),
                                json_string_length(value), out);
    if (reason != NULL)
        return fail(err, errlen,
                    "\"%s\" is not a valid phone number: it %s; use 7 to "
                    "15 digits",
                    name, reason);
    return 0;
}

/* Reads an optional whole number of seconds from 1 to max; 0 if absent. */
static int
read_timer(json_t *root, const char *name, unsigned max, unsigned *out,
           char *err, size_t errlen)
{
    json_t *value = json_object_get(root, name);
    json_int_t v;

    *out = 0;
    if (value == NULL)
        return 0;
    v = json_is_integer(value) ? json_integer_value(value) : 0;
    if (v < 1 || v > (json_int_t)max)
        return fail(err, errlen,
                    "\"%s\" must be a whole number of seconds from 1 to %u",
                    name, max);
    *out = (unsigned)v;
    return 0;
}

static int
valid_url(const char *url, size_t len)
{
    const char *host;

    if (len > DIAL_URL_MAX)
        return 0;
    if (strncmp(url, "https://", 8) == 0)
        host = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        host = url + 7;
    else
        return 0;
    if (*host == '\0' || *host == '/' || *host == '?' || *host == '#')
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];

        if (c <= 0x20 || c >= 0x7f)
            return 0;
    }
    return 1;
}

static int
read_content(struct dial_job *job, json_t *root, char *err, size_t errlen)
{
    json_t *text = json_object_get(root, "text");
    json_t *ncco = json_object_get(root, "ncco");
    json_t *url = json_object_get(root, "answer_url");
    int content_fields = (text != NULL) + (ncco != NULL) + (url != NULL);

    if (content_fields != 1)
        return fail(err, errlen,
                    "give exactly one of \"text\", \"ncco\" or "
                    "\"answer_url\" (%d given)",
                    content_fields);
    if (text != NULL) {
        if (!json_is_string(text) || json_string_length(text) == 0)
            return fail(err, errlen, "\"text\" must be a non-empty string");
        job->text = strdup(json_string_value(text));
        if (job->text == NULL)
            return fail(err, errlen, "out of memory");
        return 0;
    }
    if (ncco != NULL) {
        char reason[256];

        if (!json_is_array(ncco))
            return fail(err, errlen,
                        "\"ncco\" must be a JSON array of actions");
        job->ncco = json_dumps(ncco, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (job->ncco == NULL)
            return fail(err, errlen, "out of memory");
        if (ncco_check(job->ncco, strlen(job->ncco), reason,
                       sizeof(reason)) != 0)
            return fail(err, errlen, "invalid \"ncco\": %s", reason);
        return 0;
    }
    if (!json_is_string(url) ||
        !valid_url(json_string_value(url), json_string_length(url)))
        return fail(err, errlen,
                    "\"answer_url\" must be an http:// or https:// URL of "
                    "at most %d bytes without spaces",
                    DIAL_URL_MAX);
    job->answer_url = strdup(json_string_value(url));
    if (job->answer_url == NULL)
        return fail(err, errlen, "out of memory");
    return 0;
}

static int
read_from(struct dial_job *job, json_t *root, char *err, size_t errlen)
{
    json_t *random_from = json_object_get(root, "random_from_number");
    json_t *from = json_object_get(root, "from");

    if (random_from != NULL && !json_is_boolean(random_from))
        return fail(err, errlen,
                    "\"random_from_number\" must be true or false");
    job->random_from_number = json_is_true(random_from);
    if (job->random_from_number) {
        if (from != NULL)
            return fail(err, errlen,
                        "give either \"from\" or \"random_from_number\": "
                        "true, not both");
        return 0;
    }
    if (from == NULL)
        return fail(err, errlen,
                    "\"from\" is missing: give the caller's number, or "
                    "\"random_from_number\": true");
    return read_number(root, "from", job->from, err, errlen);
}

static int
read_options(struct dial_job *job, json_t *root, char *err, size_t errlen)
{
    json_t *md = json_object_get(root, "machine_detection");
    json_t *key = json_object_get(root, "idempotency_key");
    json_t *id = json_object_get(root, "id");

    if (md != NULL) {
        const char *v = json_string_value(md);

        if (v != NULL && strcmp(v, "continue") == 0)
            job->machine_detection = DIAL_MACHINE_DETECTION_CONTINUE;
        else if (v != NULL && strcmp(v, "hangup") == 0)
            job->machine_detection = DIAL_MACHINE_DETECTION_HANGUP;
        else
            return fail(err, errlen, "\"machine_detection\" must be "
                                     "\"continue\" or \"hangup\"");
    }
    if (read_timer(root, "ringing_timer", DIAL_RINGING_TIMER_MAX,
                   &job->ringing_timer, err, errlen) != 0 ||
        read_timer(root, "length_timer", DIAL_LENGTH_TIMER_MAX,
                   &job->length_timer, err, errlen) != 0)
        return -1;

    if (key != NULL) {
        const char *v = json_string_value(key);
        size_t n = json_string_length(key);

        if (v == NULL || n == 0 || n > DIAL_IDEMPOTENCY_KEY_MAX)
            return fail(err, errlen,
                        "\"idempotency_key\" must be a string of 1 to %d "
                        "printable ASCII characters",
                        DIAL_IDEMPOTENCY_KEY_MAX);
        for (size_t i = 0; i < n; i++) {
            /* Braces would become a Redis Cluster hash tag in the key. */
            if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e ||
                v[i] == '{' || v[i] == '}')
                return fail(err, errlen,
                            "\"idempotency_key\" must be a string of 1 to "
                            "%d printable ASCII characters other than braces",
                            DIAL_IDEMPOTENCY_KEY_MAX);
        }
        memcpy(job->idempotency_key, v, n + 1);
    }
    if (id != NULL) {
        const char *reason = json_is_string(id)
                                 ? dial_job_check_id(json_string_value(id),
                                                     json_string_length(id))
                                 : "is not a string";

        if (reason != NULL)
            return fail(err, errlen, "\"id\" %s", reason);
        memcpy(job->id, json_string_value(id), json_string_length(id) + 1);
    }
    return 0;
}

static int
check_fields(json_t *root, char *err, size_t errlen)
{
    const char *name;
    json_t *value;

    json_object_foreach(root, name, value)
    {
        size_t k;

        for (k = 0; k < sizeof(known_fields) / sizeof(known_fields[0]); k++) {
            if (strcmp(name, known_fields[k]) == 0)
                break;
        }
        if (k == sizeof(known_fields) / sizeof(known_fields[0]))
            return fail(err, errlen,
                        "unknown field \"%.40s\"; a job has " JOB_FIELDS,
                        name);
    }
    return 0;
}

int
dial_job_parse(struct dial_job *job, const char *data, size_t len, char *err,
               size_t errlen)
{
    json_error_t jerr;
    json_t *root;
    int rc = -1;

    memset(job, 0, sizeof(*job));
    if (len > DIAL_JOB_MAX_BYTES)
        return fail(err, errlen, "job is larger than %d bytes",
                    DIAL_JOB_MAX_BYTES);
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return fail(err, errlen, "job is not valid JSON: %s", jerr.text);
    if (!json_is_object(root)) {
        fail(err, errlen, "job must be a JSON object");
        goto out;
    }
    if (check_fields(root, err, errlen) != 0)
        goto out;
    if (json_object_get(root, "to") == NULL) {
        fail(err, errlen, "\"to\" is missing: give the number to call");
        goto out;
    }
    if (read_number(root, "to", job->to, err, errlen) != 0 ||
        read_from(job, root, err, errlen) != 0 ||
        read_content(job, root, err, errlen) != 0 ||
        read_options(job, root, err, errlen) != 0)
        goto out;
    rc = 0;

out:
    json_decref(root);
    if (rc != 0)
        dial_job_free(job);
    return rc;
}

static const char *
machine_detection_name(enum dial_machine_detection md)
{
    return md == DIAL_MACHINE_DETECTION_HANGUP ? "hangup" : "continue";
}

/* Adds the optional fields both JSON forms share; returns 0 or -1. */
static int
add_options(json_t *obj, const struct dial_job *job)
{
    int rc = 0;

    if (job->machine_detection != DIAL_MACHINE_DETECTION_NONE)
        rc |= json_object_set_new(
            obj, "machine_detection",
            json_string(machine_detection_name(job->machine_detection)));
    if (job->ringing_timer != 0)
        rc |= json_object_set_new(obj, "ringing_timer",
                                  json_integer(job->ringing_timer));
    if (job->length_timer != 0)
        rc |= json_object_set_new(obj, "length_timer",
                                  json_integer(job->length_timer));
    return rc;
}

static char *
dump_and_release(json_t *obj, int failed)
{
    char *text = NULL;

    if (obj != NULL && !failed)
        text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    return text;
}

char *
dial_job_to_json(const struct dial_job *job)
{
    json_t *obj = json_object();
    int rc = 0;

    if (obj == NULL)
        return NULL;
    if (job->id[0] != '\0')
        rc |= json_object_set_new(obj, "id", json_string(job->id));
    rc |= json_object_set_new(obj, "to", json_string(job->to));
    if (job->random_from_number)
        rc |= json_object_set_new(obj, "random_from_number", json_true());
    else
        rc |= json_object_set_new(obj, "from", json_string(job->from));
    if (job->text != NULL)
        rc |= json_object_set_new(obj, "text", json_string(job->text));
    else if (job->ncco != NULL)
        rc |= json_object_set_new(obj, "ncco",
                                  json_loads(job->ncco, 0, NULL));
    else
        rc |= json_object_set_new(obj, "answer_url",
                                  json_string(job->answer_url));
    rc |= add_options(obj, job);
    if (job->idempotency_key[0] != '\0')
        rc |= json_object_set_new(obj, "idempotency_key",
                                  json_string(job->idempotency_key));
    return dump_and_release(obj, rc);
}

static json_t *
phone_endpoint(const char *number)
{
    return json_pack("{s:s,s:s}", "type", "phone", "number", number);
}

char *
dial_job_request_body(const struct dial_job *job, const char *event_url)
{
    json_t *obj = json_object();
    int rc = 0;

    if (obj == NULL)
        return NULL;
    rc |= json_object_set_new(obj, "to",
                              json_pack("[o]", phone_endpoint(job->to)));
    if (job->random_from_number)
        rc |= json_object_set_new(obj, "random_from_number", json_true());
    else
        rc |= json_object_set_new(obj, "from", phone_endpoint(job->from));
    if (job->text != NULL) {
        char *talk = ncco_talk(job->text);

        rc |= json_object_set_new(obj, "ncco",
                                  talk ? json_loads(talk, 0, NULL) : NULL);
        free(talk);
    } else if (job->ncco != NULL) {
        rc |= json_object_set_new(obj, "ncco",
                                  json_loads(job->ncco, 0, NULL));
    } else {
        rc |= json_object_set_new(obj, "answer_url",
                                  json_pack("[s]", job->answer_url));
    }
    rc |= json_object_set_new(obj, "event_url", json_pack("[s]", event_url));
    rc |= add_options(obj, job);
    return dump_and_release(obj, rc);
}
