#include "cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "callhook/call_event.h"
#include "store.h"

static volatile sig_atomic_t interrupted;

static void
on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Opens a blocking connection; fine here, nothing else runs. */
static redisContext *
connect_redis(const char *url, char *err, size_t errlen)
{
    struct redis_target target;
    struct timeval tv = {5, 0};
    redisContext *c;
    redisReply *r;

    if (redis_target_parse(url, &target, err, errlen) != 0)
        return NULL;
    if (target.unix_path[0] != '\0')
        c = redisConnectUnixWithTimeout(target.unix_path, tv);
    else
        c = redisConnectWithTimeout(target.host, target.port, tv);
    if (c == NULL || c->err) {
        snprintf(err, errlen, "cannot connect to Redis: %s",
                 c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (target.password[0] != '\0') {
        r = target.username[0] != '\0'
                ? redisCommand(c, "AUTH %s %s", target.username,
                               target.password)
                : redisCommand(c, "AUTH %s", target.password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis AUTH failed: %s",
                     r ? r->str : c->errstr);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (target.db != 0) {
        r = redisCommand(c, "SELECT %d", target.db);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis SELECT %d failed", target.db);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/*
 * Writes text with control bytes (escape sequences, carriage returns,
 * bells) shown as '?': record values come from the network and must not
 * drive the terminal.
 */
static void
print_clean(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        putchar(c < 0x20 || c == 0x7f ? '?' : c);
    }
}

/* Copies text into dst (size n), with control bytes replaced by '?'. */
static void
clean_copy(char *dst, size_t n, const char *text)
{
    size_t i = 0;

    for (; i + 1 < n && text[i] != '\0'; i++) {
        unsigned char c = (unsigned char)text[i];

        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[i] = '\0';
}

static const char *
default_redis_url(void)
{
    const char *env = getenv("REDIS_URL");

    return env && env[0] ? env : "redis://127.0.0.1:6379/0";
}

static void
format_ms(const char *ms_text, char *buf, size_t len)
{
    char *end;
    unsigned long long ms = strtoull(ms_text, &end, 10);
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;

    if (*end != '\0' || ms_text[0] == '\0') {
        snprintf(buf, len, "%s", ms_text);
        return;
    }
    gmtime_r(&secs, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + strlen(buf), len - strlen(buf), ".%03lluZ", ms % 1000);
}

int
cli_status(int argc, char **argv)
{
    static const struct option opts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = default_redis_url();
    int json_out = 0, c, rc = 1;
    char err[512], key[CALL_EVENT_ID_MAX + 16];
    const char *id, *why;
    redisContext *ctx;
    redisReply *rec = NULL, *hist = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r') {
            url = optarg;
        } else if (c == 'j') {
            json_out = 1;
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "Usage: callhook status [--redis URL] [--json] UUID\n"
                    "Prints a call's record and its event history.\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "callhook status: expected one call uuid; see "
                        "callhook status --help\n");
        return 2;
    }
    id = argv[optind];
    why = call_event_check_id(id, strlen(id));
    if (why != NULL) {
        fprintf(stderr, "callhook status: invalid call uuid: it %s\n", why);
        return 2;
    }

    ctx = connect_redis(url, err, sizeof(err));
    if (ctx == NULL) {
        fprintf(stderr, "callhook status: %s\n", err);
        return 1;
    }
    snprintf(key, sizeof(key), "call:{%s}", id);
    rec = redisCommand(ctx, "HGETALL %s", key);
    snprintf(key, sizeof(key), "call:{%s}:events", id);
    hist = redisCommand(ctx, "LRANGE %s 0 -1", key);
    if (rec == NULL || hist == NULL || rec->type != REDIS_REPLY_ARRAY ||
        hist->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "callhook status: Redis error: %s\n",
                rec && rec->type == REDIS_REPLY_ERROR ? rec->str
                                                      : ctx->errstr);
        goto out;
    }
    if (rec->elements == 0) {
        fprintf(stderr, "callhook status: call %s not found\n", id);
        goto out;
    }

    if (json_out) {
        json_t *root = json_object(), *record = json_object(),
               *events = json_array();
        char *text;

        for (size_t i = 0; i + 1 < rec->elements; i += 2)
            json_object_set_new(record, rec->element[i]->str,
                                json_stringn(rec->element[i + 1]->str,
                                             rec->element[i + 1]->len));
        for (size_t i = 0; i < hist->elements; i++) {
            json_t *ev = json_loadb(hist->element[i]->str,
                                    hist->element[i]->len, 0, NULL);

            json_array_append_new(events, ev ? ev
                                             : json_stringn(
                                                   hist->element[i]->str,
                                                   hist->element[i]->len));
        }
        json_object_set_new(root, "record", record);
        json_object_set_new(root, "events", events);
        text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(root);
    } else {
        printf("call %s\n", id);
        for (size_t i = 0; i + 1 < rec->elements; i += 2) {
            const char *name = rec->element[i]->str;
            const char *value = rec->element[i + 1]->str;
            char when[40];

            if (strcmp(name, "created_at") == 0 ||
                strcmp(name, "updated_at") == 0) {
                format_ms(value, when, sizeof(when));
                value = when;
            }
            printf("  %-18s ", name);
            print_clean(value, strlen(value));
            putchar('\n');
        }
        printf("history (%zu events, oldest first)\n", hist->elements);
        for (size_t i = 0; i < hist->elements; i++) {
            json_t *ev = json_loadb(hist->element[i]->str,
                                    hist->element[i]->len, 0, NULL);
            const char *status = json_string_value(json_object_get(ev,
                                                                   "status"));
            const char *ts = json_string_value(json_object_get(ev,
                                                               "timestamp"));

            char ts_text[40], status_text[40];

            clean_copy(ts_text, sizeof(ts_text), ts ? ts : "-");
            clean_copy(status_text, sizeof(status_text),
                       status ? status : "-");
            printf("  %-26s %-12s ", ts_text, status_text);
            print_clean(hist->element[i]->str,
                        hist->element[i]->len < 200 ? hist->element[i]->len
                                                    : 200);
            putchar('\n');
            json_decref(ev);
        }
    }
    rc = 0;

out:
    freeReplyObject(rec);
    freeReplyObject(hist);
    redisFree(ctx);
    return rc;
}

static const char *
status_colour(const char *status)
{
    int rank = call_event_status_rank(status);

    if (rank >= 60)
        return "\033[31m"; /* failure outcomes: red */
    if (rank == 50)
        return "\033[32m"; /* completed: green */
    if (rank > 0)
        return "\033[33m"; /* in progress: yellow */
    return "";
}

static void
print_entry(redisReply *entry, int colour)
{
    const char *id = "", *kind = "", *status = "", *event = "";
    redisReply *fields = entry->element[1];
    json_t *ev;
    const char *ts = NULL;
    char stamp[32], ts_text[40];
    time_t now = time(NULL);
    struct tm tm;

    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const char *k = fields->element[i]->str;
        const char *v = fields->element[i + 1]->str;

        if (strcmp(k, "id") == 0)
            id = v;
        else if (strcmp(k, "kind") == 0)
            kind = v;
        else if (strcmp(k, "status") == 0)
            status = v;
        else if (strcmp(k, "event") == 0)
            event = v;
    }
    ev = json_loads(event, 0, NULL);
    ts = json_string_value(json_object_get(ev, "timestamp"));
    if (ts != NULL) {
        clean_copy(ts_text, sizeof(ts_text), ts);
        ts = ts_text;
    }
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);

    if (status[0] != '\0')
        printf("%s %-12s %s %s%s%s\n", stamp, kind, id,
               colour ? status_colour(status) : "", status,
               colour ? "\033[0m" : "");
    else
        printf("%s %-12s %s (event at %s, status unchanged)\n", stamp, kind,
               id, ts ? ts : "no timestamp");
    fflush(stdout);
    json_decref(ev);
}

int
cli_watch(int argc, char **argv)
{
    static const struct option opts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"stream-key", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = default_redis_url();
    const char *stream = "callhook:events";
    char last_id[64] = "$", err[512];
    int c, colour = isatty(STDOUT_FILENO), failures = 0;
    redisContext *ctx = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'r') {
            url = optarg;
        } else if (c == 's') {
            stream = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "Usage: callhook watch [--redis URL] [--stream-key KEY]\n"
                    "Follows the event stream and prints each call's "
                    "status changes as they happen.\n");
            return c == 'h' ? 0 : 2;
        }
    }
    signal(SIGINT, on_interrupt);
    signal(SIGTERM, on_interrupt);

    while (!interrupted) {
        redisReply *r;

        if (ctx == NULL) {
            ctx = connect_redis(url, err, sizeof(err));
            if (ctx == NULL) {
                if (failures++ == 0)
                    fprintf(stderr, "callhook watch: %s; retrying\n", err);
                sleep(failures < 5 ? 1 : 3);
                continue;
            }
            if (failures > 0)
                fprintf(stderr, "callhook watch: reconnected; resuming "
                                "after %s\n",
                        last_id);
            failures = 0;
        }
        /* Block for at most a second so Ctrl-C is noticed promptly. */
        r = redisCommand(ctx, "XREAD COUNT 100 BLOCK 1000 STREAMS %s %s",
                         stream, last_id);
        if (r == NULL) {
            redisFree(ctx);
            ctx = NULL;
            continue;
        }
        if (r->type != REDIS_REPLY_ERROR)
            failures = 0;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            redisReply *entries = r->element[0]->element[1];

            for (size_t i = 0; i < entries->elements; i++) {
                redisReply *entry = entries->element[i];

                snprintf(last_id, sizeof(last_id), "%s",
                         entry->element[0]->str);
                print_entry(entry, colour);
            }
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* LOADING after a restart, a replica promoted, a key of the
             * wrong type: report once, then keep trying, slowly. */
            if (failures++ == 0)
                fprintf(stderr, "callhook watch: %s; retrying\n", r->str);
            freeReplyObject(r);
            redisFree(ctx);
            ctx = NULL;
            sleep(1);
            continue;
        } else if (strcmp(last_id, "$") == 0) {
            /* Nothing yet: pin "$" to a real id so a reconnect cannot
             * skip entries added while it was away. */
            redisReply *info = redisCommand(ctx, "XINFO STREAM %s", stream);

            if (info && info->type == REDIS_REPLY_ARRAY) {
                for (size_t i = 0; i + 1 < info->elements; i += 2) {
                    if (strcmp(info->element[i]->str, "last-generated-id") ==
                        0)
                        snprintf(last_id, sizeof(last_id), "%s",
                                 info->element[i + 1]->str);
                }
            }
            freeReplyObject(info);
        }
        freeReplyObject(r);
    }
    redisFree(ctx);
    return 0;
}
