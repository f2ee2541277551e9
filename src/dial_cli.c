#include "dial_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "callhook/dial_job.h"
#include "dial_records.h"
#include "store.h"

#define REDIS_TIMEOUT_S 5

enum {
    OPT_TO = 256,
    OPT_FROM,
    OPT_RANDOM_FROM,
    OPT_TEXT,
    OPT_NCCO,
    OPT_ANSWER_URL,
    OPT_MACHINE_DETECTION,
    OPT_RINGING_TIMER,
    OPT_LENGTH_TIMER,
    OPT_IDEMPOTENCY_KEY,
    OPT_REDIS,
};

static void
print_usage(FILE *out)
{
    fprintf(out,
            "Usage: callhook dial --to NUMBER (--from NUMBER | "
            "--random-from-number)\n"
            "                     (--text TEXT | --ncco FILE | --answer-url "
            "URL) [OPTION]...\n"
            "Validates one call job and pushes it onto the Redis list "
            "dial:queue, where a\n"
            "running callhook with the dialer on places the call. Prints "
            "the job id.\n\n"
            "  --to NUMBER               number to call, such as "
            "+14155550100\n"
            "  --from NUMBER             caller number shown to the callee\n"
            "  --random-from-number      let Vonage pick a caller number of "
            "the application\n"
            "  --text TEXT               speak TEXT when the call is "
            "answered\n"
            "  --ncco FILE               JSON file with the NCCO to run\n"
            "  --answer-url URL          URL that returns the NCCO when the "
            "call is answered\n"
            "  --machine-detection MODE  continue or hangup when a machine "
            "answers\n"
            "  --ringing-timer SECONDS   ring for at most SECONDS (1-120)\n"
            "  --length-timer SECONDS    end the call after SECONDS "
            "(1-7200)\n"
            "  --idempotency-key KEY     queue at most one job per KEY\n"
            "  --redis URL               Redis server [REDIS_URL] default: "
            "redis://127.0.0.1:6379/0\n"
            "  --help                    print this help and exit\n");
}

/* Sets a timer from text: a number when it is one, else the text, so
 * the job validation reports it. */
static int
set_timer(json_t *job, const char *name, const char *text)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (text[0] != '\0' && *end == '\0' && errno == 0)
        return json_object_set_new(job, name, json_integer(v));
    return json_object_set_new(job, name, json_string(text));
}

/* Builds the job object from argv; returns NULL after printing why. */
static json_t *
parse_args(int argc, char **argv, const char **redis_url)
{
    static const struct option longopts[] = {
        {"to", required_argument, NULL, OPT_TO},
        {"from", required_argument, NULL, OPT_FROM},
        {"random-from-number", no_argument, NULL, OPT_RANDOM_FROM},
        {"text", required_argument, NULL, OPT_TEXT},
        {"ncco", required_argument, NULL, OPT_NCCO},
        {"answer-url", required_argument, NULL, OPT_ANSWER_URL},
        {"machine-detection", required_argument, NULL,
         OPT_MACHINE_DETECTION},
        {"ringing-timer", required_argument, NULL, OPT_RINGING_TIMER},
        {"length-timer", required_argument, NULL, OPT_LENGTH_TIMER},
        {"idempotency-key", required_argument, NULL, OPT_IDEMPOTENCY_KEY},
        {"redis", required_argument, NULL, OPT_REDIS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    json_t *job = json_object();
    json_error_t jerr;
    json_t *ncco;
    int c, rc = 0;

    optind = 1;
    opterr = 0;
    while (job != NULL &&
           (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'h':
            print_usage(stdout);
            json_decref(job);
            exit(0);
        case OPT_TO:
            rc |= json_object_set_new(job, "to", json_string(optarg));
            break;
        case OPT_FROM:
            rc |= json_object_set_new(job, "from", json_string(optarg));
            break;
        case OPT_RANDOM_FROM:
            rc |= json_object_set_new(job, "random_from_number", json_true());
            break;
        case OPT_TEXT:
            rc |= json_object_set_new(job, "text", json_string(optarg));
            break;
        case OPT_NCCO:
            ncco = json_load_file(optarg, JSON_REJECT_DUPLICATES, &jerr);
            if (ncco == NULL) {
                fprintf(stderr, "callhook dial: cannot read --ncco %s: %s\n",
                        optarg, jerr.text);
                json_decref(job);
                return NULL;
            }
            rc |= json_object_set_new(job, "ncco", ncco);
            break;
        case OPT_ANSWER_URL:
            rc |= json_object_set_new(job, "answer_url", json_string(optarg));
            break;
        case OPT_MACHINE_DETECTION:
            rc |= json_object_set_new(job, "machine_detection",
                                      json_string(optarg));
            break;
        case OPT_RINGING_TIMER:
            rc |= set_timer(job, "ringing_timer", optarg);
            break;
        case OPT_LENGTH_TIMER:
            rc |= set_timer(job, "length_timer", optarg);
            break;
        case OPT_IDEMPOTENCY_KEY:
            rc |= json_object_set_new(job, "idempotency_key",
                                      json_string(optarg));
            break;
        case OPT_REDIS:
            *redis_url = optarg;
            break;
        default:
            fprintf(stderr,
                    "callhook dial: unknown option or missing value in "
                    "'%s'; see callhook dial --help\n",
                    argv[optind - 1]);
            json_decref(job);
            return NULL;
        }
    }
    if (job != NULL && optind < argc) {
        fprintf(stderr,
                "callhook dial: unexpected argument '%s'; see callhook dial "
                "--help\n",
                argv[optind]);
        json_decref(job);
        return NULL;
    }
    if (job == NULL || rc != 0) {
        fprintf(stderr, "callhook dial: an argument is not valid UTF-8, or "
                        "out of memory\n");
        json_decref(job);
        return NULL;
    }
    return job;
}

static redisContext *
connect_redis(const struct redis_target *t)
{
    struct timeval tv = {REDIS_TIMEOUT_S, 0};
    redisContext *rc;
    redisReply *reply = NULL;

    if (t->unix_path[0] != '\0')
        rc = redisConnectUnixWithTimeout(t->unix_path, tv);
    else
        rc = redisConnectWithTimeout(t->host, t->port, tv);
    if (rc == NULL || rc->err) {
        fprintf(stderr, "callhook dial: cannot connect to redis: %s\n",
                rc ? rc->errstr : "out of memory");
        redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    if (t->password[0] != '\0') {
        if (t->username[0] != '\0')
            reply = redisCommand(rc, "AUTH %s %s", t->username, t->password);
        else
            reply = redisCommand(rc, "AUTH %s", t->password);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(reply);
    }
    if (t->db != 0) {
        reply = redisCommand(rc, "SELECT %d", t->db);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
            goto fail;
        freeReplyObject(reply);
    }
    return rc;

fail:
    /* The reply text never contains the password. */
    fprintf(stderr, "callhook dial: redis refused the connection: %s\n",
            reply ? reply->str : rc->errstr);
    freeReplyObject(reply);
    redisFree(rc);
    return NULL;
}

/* Pushes the job; returns the exit status. */
static int
submit(const struct redis_target *target, const struct dial_job *job,
       const char *json)
{
    struct dial_command cmd;
    redisContext *rc = connect_redis(target);
    redisReply *reply;
    int status = 1;

    if (rc == NULL)
        return 1;
    dial_submit_command(&cmd, job, json, "cli");
    reply = redisCommandArgv(rc, cmd.argc, cmd.argv, cmd.lens);
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 2 || reply->element[1]->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "callhook dial: redis did not queue the job: %s\n",
                reply == NULL                        ? rc->errstr
                : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                     : "unexpected reply");
    } else {
        if (strcmp(reply->element[0]->str, "duplicate") == 0)
            fprintf(stderr,
                    "callhook dial: the idempotency key belongs to job %s; "
                    "not queued again\n",
                    reply->element[1]->str);
        printf("%s\n", reply->element[1]->str);
        status = 0;
    }
    freeReplyObject(reply);
    redisFree(rc);
    return status;
}

int
dial_cli_main(int argc, char **argv)
{
    const char *redis_url = getenv("REDIS_URL");
    struct redis_target target;
    struct dial_job job;
    json_t *obj;
    char *text, *json = NULL;
    char err[512];
    int status = 2;

    if (redis_url == NULL || redis_url[0] == '\0')
        redis_url = "redis://127.0.0.1:6379/0";
    obj = parse_args(argc, argv, &redis_url);
    if (obj == NULL)
        return 2;
    text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (text == NULL) {
        fprintf(stderr, "callhook dial: out of memory\n");
        return 1;
    }
    if (dial_job_parse(&job, text, strlen(text), err, sizeof(err)) != 0) {
        fprintf(stderr, "callhook dial: invalid job: %s\n", err);
        free(text);
        return 2;
    }
    free(text);
    if (redis_target_parse(redis_url, &target, err, sizeof(err)) != 0) {
        fprintf(stderr, "callhook dial: %s (--redis)\n", err);
        goto out;
    }
    status = 1;
    if (dial_new_job_id(job.id) != 0 ||
        (json = dial_job_to_json(&job)) == NULL) {
        fprintf(stderr, "callhook dial: cannot make the job\n");
        goto out;
    }
    status = submit(&target, &job, json);

out:
    free(json);
    dial_job_free(&job);
    return status;
}
