#include "callhook/call_event.h"
#include "callhook/form.h"

#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

/*
 * Chunked arena: strings handed out stay where they are while the event
 * lives, so struct call_event can point into it freely.
 */
struct chunk {
    struct chunk *next;
    size_t used, cap;
    char data[];
};

struct call_event_store {
    struct chunk *chunks;
    char *history_owned; /* from json_dumps(), freed with free() */
};

enum value_type {
    VALUE_STRING,
    VALUE_LITERAL, /* JSON number, true or false: kept as written */
    VALUE_NESTED,  /* JSON object or array: kept as compact JSON */
    VALUE_NULL,
};

struct pair {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    enum value_type type;
};

struct builder {
    struct call_event *ev;
    struct pair pairs[CALL_EVENT_MAX_FIELDS];
    size_t npairs;
    int too_many;
    char *err;
    size_t errlen;
};

static const struct {
    const char *status;
    int rank;
} status_ranks[] = {
    {"started", 10},   {"ringing", 20},    {"answered", 30},
    {"disconnected", 40}, {"completed", 50}, {"busy", 60},
    {"cancelled", 60}, {"unanswered", 60}, {"rejected", 60},
    {"failed", 60},    {"timeout", 60},
};

/*
 * Fields callhook computes itself. Network input cannot set them; the
 * event as received still keeps them in the history.
 */
static const char *const reserved_names[] = {
    "created_at", "updated_at", "events", "machine_detection", "job_id",
};

static char *
arena_alloc(struct call_event_store *store, size_t len)
{
    struct chunk *c = store->chunks;
    char *p;

    if (c == NULL || c->cap - c->used < len) {
        size_t cap = len > 4000 ? len : 4000;

        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = store->chunks;
        store->chunks = c;
    }
    p = c->data + c->used;
    c->used += len;
    return p;
}

static char *
arena_strndup(struct call_event_store *store, const char *s, size_t len)
{
    char *p = arena_alloc(store, len + 1);

    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static void
arena_free_chunks(struct call_event_store *store)
{
    struct chunk *c, *next;

    for (c = store->chunks; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    store->chunks = NULL;
}

static void
arena_free(struct call_event_store *store)
{
    if (store == NULL)
        return;
    arena_free_chunks(store);
    free(store->history_owned);
    free(store);
}

void
call_event_free(struct call_event *ev)
{
    if (ev == NULL)
        return;
    arena_free(ev->store);
    ev->store = NULL;
}

const char *
call_event_ranked_status(size_t i)
{
    return i < sizeof(status_ranks) / sizeof(status_ranks[0])
               ? status_ranks[i].status
               : NULL;
}

int
call_event_status_rank(const char *status)
{
    for (size_t i = 0; i < sizeof(status_ranks) / sizeof(status_ranks[0]);
         i++) {
        if (strcmp(status, status_ranks[i].status) == 0)
            return status_ranks[i].rank;
    }
    return RANK_NONE;
}

const char *
call_event_check_id(const char *id, size_t len)
{
    if (len == 0)
        return "is empty";
    if (len > CALL_EVENT_ID_MAX)
        return "is longer than 128 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];

        if (!isalnum(c) && c != '-' && c != '_' && c != '.' && c != ':')
            return "contains characters other than letters, digits, '-', "
                   "'_', '.' and ':'";
    }
    return NULL;
}

static int
valid_name(const char *name, size_t len)
{
    if (len == 0 || len > CALL_EVENT_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (!isalnum(c) && c != '_' && c != '-' && c != '.')
            return 0;
    }
    return 1;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int
valid_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
            (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += need + 1;
    }
    return 1;
}

static int fail(struct builder *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
fail(struct builder *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int
days_from_civil(int y, int m, int d, int64_t *days)
{
    /* Days since 1970-01-01 in the proleptic Gregorian calendar. */
    int64_t yy = y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    *days = era * 146097 + doe - 719468;
    return 0;
}

static int
read_digits(const char *s, size_t len, size_t *pos, int count, int *out)
{
    int v = 0;

    for (int i = 0; i < count; i++) {
        if (*pos >= len || !isdigit((unsigned char)s[*pos]))
            return -1;
        v = v * 10 + (s[*pos] - '0');
        (*pos)++;
    }
    *out = v;
    return 0;
}

int
call_event_parse_time(const char *s, size_t len, int64_t *ms)
{
    static const int month_days[] = {31, 29, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31};
    int year, month, day, hour, minute, second, millis = 0;
    int64_t days, offset_min = 0;
    size_t pos = 0;

    if (read_digits(s, len, &pos, 4, &year) || pos >= len || s[pos++] != '-' ||
        read_digits(s, len, &pos, 2, &month) || pos >= len ||
        s[pos++] != '-' || read_digits(s, len, &pos, 2, &day) || pos >= len ||
        (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' '))
        return -1;
    pos++;
    if (read_digits(s, len, &pos, 2, &hour) || pos >= len ||
        s[pos++] != ':' || read_digits(s, len, &pos, 2, &minute) ||
        pos >= len || s[pos++] != ':' || read_digits(s, len, &pos, 2, &second))
        return -1;

    if (pos < len && s[pos] == '.') {
        int digits = 0;

        pos++;
        while (pos < len && isdigit((unsigned char)s[pos])) {
            if (digits < 3)
                millis = millis * 10 + (s[pos] - '0');
            digits++;
            pos++;
        }
        if (digits == 0)
            return -1;
        for (; digits < 3; digits++)
            millis *= 10;
    }

    if (pos < len && (s[pos] == 'Z' || s[pos] == 'z')) {
        pos++;
    } else if (pos < len && (s[pos] == '+' || s[pos] == '-')) {
        int sign = s[pos++] == '-' ? -1 : 1;
        int oh, om;

        if (read_digits(s, len, &pos, 2, &oh))
            return -1;
        if (pos < len && s[pos] == ':')
            pos++;
        if (read_digits(s, len, &pos, 2, &om) || oh > 23 || om > 59)
            return -1;
        offset_min = sign * (oh * 60 + om);
    }
    if (pos != len)
        return -1;

    if (year < 1970 || month < 1 || month > 12 || day < 1 ||
        day > month_days[month - 1] || hour > 23 || minute > 59 ||
        second > 60)
        return -1;
    if (month == 2 && day == 29 &&
        !((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        return -1;

    days_from_civil(year, month, day, &days);
    *ms = ((days * 24 + hour) * 60 + minute - offset_min) * 60000 +
          (int64_t)second * 1000 + millis;
    if (*ms < 0)
        return -1;
    return 0;
}

static int
add_pair(struct builder *b, const char *name, size_t name_len,
         const char *value, size_t value_len, enum value_type type)
{
    struct pair *p;

    if (b->npairs == CALL_EVENT_MAX_FIELDS) {
        b->too_many = 1;
        return -1;
    }
    p = &b->pairs[b->npairs++];
    p->name = arena_strndup(b->ev->store, name, name_len);
    p->name_len = name_len;
    p->value = value ? arena_strndup(b->ev->store, value, value_len) : NULL;
    p->value_len = value_len;
    p->type = type;
    if (p->name == NULL || (value != NULL && p->value == NULL))
        return -1;
    return 0;
}

/* ---- JSON ----------------------------------------------------------- */

/*
 * The raw-text walk below runs only on text jansson has already accepted,
 * so it need not diagnose errors. It exists because jansson re-prints
 * numbers with 17 significant digits ("0.00352500" would come back as
 * "0.0035249999999999999"); callhook stores the digits Vonage sent.
 */
static const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *
skip_string(const char *p, const char *end)
{
    p++;
    while (p < end && *p != '"') {
        if (*p == '\\')
            p++;
        p++;
    }
    return p < end ? p + 1 : end;
}

static const char *
skip_value(const char *p, const char *end)
{
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;

        while (p < end) {
            if (*p == '"') {
                p = skip_string(p, end);
                continue;
            }
            if (*p == '{' || *p == '[')
                depth++;
            else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return end;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
           *p != '\t' && *p != '\n' && *p != '\r')
        p++;
    return p;
}

/* Copies a JSON value without the white space outside its strings. */
static char *
minify(struct call_event_store *store, const char *p, size_t len, size_t *out_len)
{
    char *out = arena_alloc(store, len + 1);
    size_t n = 0;
    int in_string = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];

        if (in_string) {
            out[n++] = c;
            if (c == '\\' && i + 1 < len)
                out[n++] = p[++i];
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
            out[n++] = c;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            out[n++] = c;
        }
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

char *
call_event_compact_json(const char *text, size_t len)
{
    struct call_event_store store = {NULL, NULL};
    size_t n;
    char *compact = minify(&store, text, len, &n);
    char *out = compact ? malloc(n + 1) : NULL;

    if (out != NULL)
        memcpy(out, compact, n + 1);
    arena_free_chunks(&store);
    return out;
}

static int
parse_json(struct builder *b, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *root;
    const char *p, *end = data + len;
    int rc = -1;

    root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL,
                      &jerr);
    if (root == NULL) {
        snprintf(b->err, b->errlen, "body is not valid JSON: %s", jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(b->err, b->errlen, "JSON body must be an object");
        goto out;
    }

    p = skip_ws(data, end);
    p++; /* '{' */
    for (;;) {
        const char *key_start, *key_end, *value_start, *value_end;
        char *key;
        size_t key_len;
        json_t *value;

        p = skip_ws(p, end);
        if (p >= end || *p == '}')
            break;
        key_start = p;
        key_end = skip_string(p, end);
        p = skip_ws(key_end, end) + 1; /* ':' */
        value_start = skip_ws(p, end);
        value_end = skip_value(value_start, end);
        p = skip_ws(value_end, end);
        if (p < end && *p == ',')
            p++;

        if (memchr(key_start, '\\', (size_t)(key_end - key_start)) == NULL) {
            key = arena_strndup(b->ev->store, key_start + 1,
                                (size_t)(key_end - key_start - 2));
        } else {
            /* An escaped key: let jansson decode the string literal. */
            json_t *k = json_loadb(key_start, (size_t)(key_end - key_start),
                                   JSON_DECODE_ANY, NULL);

            key = k ? arena_strndup(b->ev->store, json_string_value(k),
                                    json_string_length(k))
                    : NULL;
            json_decref(k);
        }
        if (key == NULL) {
            snprintf(b->err, b->errlen, "out of memory");
            goto out;
        }
        key_len = strlen(key);
        value = json_object_get(root, key);
        if (value == NULL) {
            snprintf(b->err, b->errlen, "body is not valid JSON");
            goto out;
        }

        if (json_is_string(value)) {
            rc = add_pair(b, key, key_len, json_string_value(value),
                          json_string_length(value), VALUE_STRING);
        } else if (json_is_null(value)) {
            rc = add_pair(b, key, key_len, NULL, 0, VALUE_NULL);
        } else if (json_is_object(value) || json_is_array(value)) {
            size_t n;
            char *m = minify(b->ev->store, value_start,
                             (size_t)(value_end - value_start), &n);

            rc = m ? add_pair(b, key, key_len, m, n, VALUE_NESTED) : -1;
        } else {
            rc = add_pair(b, key, key_len, value_start,
                          (size_t)(value_end - value_start), VALUE_LITERAL);
        }
        if (rc != 0) {
            if (b->too_many)
                snprintf(b->err, b->errlen, "event has more than %d fields",
                         CALL_EVENT_MAX_FIELDS);
            else
                snprintf(b->err, b->errlen, "out of memory");
            goto out;
        }
    }

    /* The history keeps the body exactly as it arrived. */
    b->ev->history = arena_strndup(b->ev->store, data, len);
    b->ev->history_len = len;
    rc = b->ev->history ? 0 : -1;
    if (rc != 0)
        snprintf(b->err, b->errlen, "out of memory");

out:
    json_decref(root);
    return rc;
}

/* ---- form and query --------------------------------------------------- */

static int
form_pair(void *arg, const char *key, size_t key_len, const char *value,
          size_t value_len)
{
    struct builder *b = arg;

    return add_pair(b, key, key_len, value, value_len, VALUE_STRING);
}

static int
parse_form(struct builder *b, const char *data, size_t len)
{
    enum form_result fr = form_decode(data, len, form_pair, b);

    if (fr == FORM_STOPPED && b->too_many) {
        snprintf(b->err, b->errlen, "event has more than %d fields",
                 CALL_EVENT_MAX_FIELDS);
        return -1;
    }
    if (fr != FORM_OK) {
        snprintf(b->err, b->errlen, "%s", form_strerror(fr));
        return -1;
    }
    return 0;
}

/* The history entry for a form or query event: its pairs as JSON. */
static int
build_history(struct builder *b)
{
    json_t *obj = json_object();
    char *text;

    if (obj == NULL)
        return -1;
    for (size_t i = 0; i < b->npairs; i++) {
        const struct pair *p = &b->pairs[i];

        /* Values are valid UTF-8 without NUL here: checked before. */
        json_object_set_new(obj, p->name,
                            json_stringn(p->value, p->value_len));
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (text == NULL)
        return -1;
    b->ev->store->history_owned = text;
    b->ev->history = text;
    b->ev->history_len = strlen(text);
    return 0;
}

/* ---- validation and preparation ----------------------------------------- */

static struct pair *
find_pair(struct builder *b, const char *name)
{
    for (size_t i = 0; i < b->npairs; i++) {
        if (strcmp(b->pairs[i].name, name) == 0)
            return &b->pairs[i];
    }
    return NULL;
}

static int
is_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]);
         i++) {
        if (strcmp(name, reserved_names[i]) == 0)
            return 1;
    }
    return 0;
}

static int
is_empty(const struct pair *p)
{
    return p == NULL || p->type == VALUE_NULL || p->value_len == 0;
}

/* Checks one of the fields that must be a string when present. */
static int
check_string_field(struct builder *b, const struct pair *p)
{
    if (is_empty(p))
        return 0;
    if (p->type != VALUE_STRING)
        return fail(b, "\"%s\" must be a string", p->name);
    return 0;
}

static int
check_id_field(struct builder *b, const struct pair *p)
{
    const char *why;

    if (check_string_field(b, p) != 0)
        return -1;
    if (is_empty(p))
        return 0;
    why = call_event_check_id(p->value, p->value_len);
    if (why != NULL) {
        snprintf(b->err, b->errlen, "\"%s\" %s", p->name, why);
        return -1;
    }
    return 0;
}

static int
compare_pairs(const void *a, const void *b)
{
    const struct pair *pa = *(const struct pair *const *)a;
    const struct pair *pb = *(const struct pair *const *)b;

    return strcmp(pa->name, pb->name);
}

/*
 * The digest covers every non-empty field, sorted by name, with each value
 * in its text form, so the JSON, form and query encodings of one event get
 * the same digest whatever their field order.
 */
static int
compute_digest(struct builder *b)
{
    const struct pair *sorted[CALL_EVENT_MAX_FIELDS];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    static const char hex[] = "0123456789abcdef";
    size_t n = 0, total = 1;
    char *canon, *p;

    for (size_t i = 0; i < b->npairs; i++) {
        if (!is_empty(&b->pairs[i])) {
            sorted[n++] = &b->pairs[i];
            total += b->pairs[i].name_len + b->pairs[i].value_len + 2;
        }
    }
    qsort(sorted, n, sizeof(sorted[0]), compare_pairs);

    /* origin, then name NUL value NUL for each field */
    canon = p = arena_alloc(b->ev->store, total);
    if (canon == NULL)
        return -1;
    *p++ = (char)('0' + b->ev->origin);
    for (size_t i = 0; i < n; i++) {
        memcpy(p, sorted[i]->name, sorted[i]->name_len + 1);
        p += sorted[i]->name_len + 1;
        memcpy(p, sorted[i]->value, sorted[i]->value_len);
        p += sorted[i]->value_len;
        *p++ = '\0';
    }
    if (!EVP_Digest(canon, (size_t)(p - canon), md, &md_len, EVP_sha1(),
                    NULL))
        return -1;
    for (unsigned i = 0; i < md_len; i++) {
        b->ev->digest[2 * i] = hex[md[i] >> 4];
        b->ev->digest[2 * i + 1] = hex[md[i] & 15];
    }
    b->ev->digest[2 * md_len] = '\0';
    return 0;
}

static void
push_field(struct call_event *ev, const char *name, const char *value,
           size_t value_len)
{
    struct call_event_field *f = &ev->fields[ev->nfields++];

    f->name = name;
    f->value = value;
    f->value_len = value_len;
}

static int
finish(struct builder *b)
{
    struct call_event *ev = b->ev;
    struct pair *uuid, *call_uuid, *conv_uuid, *status, *timestamp;
    const struct pair *id_pair;

    for (size_t i = 0; i < b->npairs; i++) {
        struct pair *p = &b->pairs[i];

        if (!valid_name(p->name, p->name_len)) {
            char shown[44];
            size_t n = 0;

            /* Show the name, with bytes that could confuse a reader or a
             * terminal replaced, and cut to a readable length. */
            for (size_t k = 0; k < p->name_len && n < 40; k++) {
                unsigned char c = (unsigned char)p->name[k];

                shown[n++] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c
                                                                : '?';
            }
            if (p->name_len > 40) {
                memcpy(shown + n, "...", 3);
                n += 3;
            }
            shown[n] = '\0';
            return fail(b,
                        "invalid field name \"%s\": names are 1 to %d "
                        "letters, digits, '_', '-' or '.'",
                        shown, CALL_EVENT_NAME_MAX);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(b->pairs[k].name, p->name) == 0)
                return fail(b, "field \"%s\" appears more than once",
                            p->name);
        }
        if (p->value != NULL && memchr(p->value, '\0', p->value_len))
            return fail(b, "field \"%s\" contains a NUL byte", p->name);
        if (p->value != NULL &&
            !valid_utf8((const unsigned char *)p->value, p->value_len))
            return fail(b, "field \"%s\" is not valid UTF-8", p->name);
    }

    uuid = find_pair(b, "uuid");
    call_uuid = find_pair(b, "call_uuid");
    conv_uuid = find_pair(b, "conversation_uuid");
    status = find_pair(b, "status");
    timestamp = find_pair(b, "timestamp");
    if (check_id_field(b, uuid) || check_id_field(b, call_uuid) ||
        check_id_field(b, conv_uuid) || check_string_field(b, status) ||
        check_string_field(b, timestamp))
        return -1;

    if (!is_empty(uuid)) {
        id_pair = uuid;
        ev->kind = CALL_EVENT_KIND_CALL;
    } else if (!is_empty(call_uuid)) {
        id_pair = call_uuid;
        ev->kind = CALL_EVENT_KIND_CALL;
    } else if (!is_empty(conv_uuid)) {
        id_pair = conv_uuid;
        ev->kind = CALL_EVENT_KIND_CONVERSATION;
    } else {
        snprintf(b->err, b->errlen,
                 "missing identifier: the event needs \"uuid\", "
                 "\"call_uuid\" or \"conversation_uuid\"");
        return -1;
    }
    ev->id = id_pair->value;

    ev->timestamp_ms = 0;
    if (!is_empty(timestamp) &&
        call_event_parse_time(timestamp->value, timestamp->value_len,
                         &ev->timestamp_ms) != 0)
        return fail(b, "\"%s\" is not an ISO 8601 date-time", "timestamp");

    ev->status = NULL;
    ev->rank = RANK_NONE;
    if (!is_empty(status)) {
        if (status->value_len > CALL_EVENT_STATUS_MAX)
            return fail(b, "\"%s\" is longer than 64 bytes", "status");
        if (ev->origin != CALL_EVENT_ORIGIN_ANSWER) {
            ev->rank = call_event_status_rank(status->value);
            if (ev->rank != RANK_NONE)
                ev->status = status->value;
        }
    }

    if (compute_digest(b) != 0)
        return fail(b, "out of memory");

    /* The record's own "uuid" is always the call id, even when the first
     * event to arrive names the call only as "call_uuid". */
    ev->nfields = 0;
    if (ev->kind == CALL_EVENT_KIND_CALL)
        push_field(ev, "uuid", ev->id, strlen(ev->id));
    for (size_t i = 0; i < b->npairs; i++) {
        struct pair *p = &b->pairs[i];

        if (is_empty(p) || p == status || p == uuid)
            continue;
        if (p == call_uuid && ev->kind == CALL_EVENT_KIND_CALL)
            continue;
        if (is_reserved(p->name) &&
            !(ev->origin == CALL_EVENT_ORIGIN_DIALER &&
              strcmp(p->name, "job_id") == 0))
            continue;
        push_field(ev, p->name, p->value, p->value_len);
    }
    if (!is_empty(status) && ev->origin != CALL_EVENT_ORIGIN_ANSWER &&
        (strcmp(status->value, "human") == 0 ||
         strcmp(status->value, "machine") == 0))
        push_field(ev, "machine_detection", status->value,
                   status->value_len);
    if (ev->origin == CALL_EVENT_ORIGIN_ANSWER &&
        is_empty(find_pair(b, "direction")))
        push_field(ev, "direction", "inbound", 7);

    snprintf(ev->field_version, sizeof(ev->field_version),
             "%015" PRId64 "%02d%s", ev->timestamp_ms, ev->rank, ev->digest);
    snprintf(ev->status_version, sizeof(ev->status_version),
             "%02d%015" PRId64 "%s", ev->rank, ev->timestamp_ms,
             ev->status ? ev->status : "");
    return 0;
}

static int
begin(struct call_event *ev, struct builder *b, enum call_event_origin origin,
      char *err, size_t errlen)
{
    memset(ev, 0, sizeof(*ev));
    ev->origin = origin;
    ev->store = calloc(1, sizeof(*ev->store));
    b->ev = ev;
    b->npairs = 0;
    b->too_many = 0;
    b->err = err;
    b->errlen = errlen;
    if (ev->store == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int
call_event_parse(struct call_event *ev, enum call_event_source source,
            enum call_event_origin origin, const char *data, size_t len, char *err,
            size_t errlen)
{
    struct builder b;
    int rc;

    if (begin(ev, &b, origin, err, errlen) != 0)
        return -1;
    if (source == CALL_EVENT_SOURCE_JSON)
        rc = parse_json(&b, data, len);
    else
        rc = parse_form(&b, data, len);
    if (rc == 0)
        rc = finish(&b);
    if (rc == 0 && source != CALL_EVENT_SOURCE_JSON && build_history(&b) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc != 0)
        call_event_free(ev);
    return rc;
}

int
call_event_from_pairs(struct call_event *ev, enum call_event_origin origin,
                 const char *const *pairs, size_t npairs, char *err,
                 size_t errlen)
{
    struct builder b;
    int rc = 0;

    if (begin(ev, &b, origin, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < npairs && rc == 0; i++) {
        rc = add_pair(&b, pairs[2 * i], strlen(pairs[2 * i]),
                      pairs[2 * i + 1], strlen(pairs[2 * i + 1]),
                      VALUE_STRING);
    }
    if (rc != 0)
        snprintf(err, errlen, "too many fields or out of memory");
    if (rc == 0)
        rc = finish(&b);
    if (rc == 0 && build_history(&b) != 0) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    }
    if (rc != 0)
        call_event_free(ev);
    return rc;
}
