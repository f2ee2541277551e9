#include "dialer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "callhook/call_event.h"
#include "callhook/dial_job.h"
#include "callhook/jwt.h"
#include "curlev.h"
#include "dial_records.h"
#include "dial_request.h"
#include "log.h"
#include "pacer.h"

#define TOKEN_TTL_S 900
#define REDIS_RETRY_MS 500   /* wait before resending a lost Redis write */
#define TAKE_TIMEOUT "1"      /* seconds BLMOVE blocks */
#define TAKE_TIMEOUT_MS 1000
#define TAKE_ERROR_DELAY_MS 5000
#define BACKOFF_BASE_MS 500
#define BACKOFF_MAX_MS 30000
#define LOCK_TTL_MS 10000
#define LOCK_RENEW_MS 2000
#define SCAN_INTERVAL_MS 5000
#define LOCK_WAIT_MS 100 /* retry while the store connects */
/* A record in_flight for longer than the request timeout plus this is an
 * orphan: the process that sent the request stopped before the response.
 * NOTE: this assumes every callhook sharing the Redis database uses the
 * same --dial-timeout or a shorter one. */
#define ORPHAN_MARGIN_MS 5000

/*
 * The step a job is at. A step whose Redis command got no reply is resent
 * after REDIS_RETRY_MS, which is safe because every script is idempotent.
 */
enum job_step {
    STEP_CLAIM,   /* own the element and find or create the record */
    STEP_REJECT,  /* invalid: move the element to dial:failed */
    STEP_RELEASE, /* already ended or a duplicate: drop the element */
    STEP_WAIT,    /* wait for its time, a pacing token and a slot */
    STEP_BEGIN,   /* record in_flight before sending */
    STEP_SEND,    /* the HTTP request is running */
    STEP_REQUEUE, /* back to queued after a retryable failure */
    STEP_FINISH,  /* store the outcome and drop the element */
};

struct job {
    struct dialer *dialer;
    struct job *prev, *next;
    enum job_step step;
    int command_pending;    /* a Redis reply is awaited */
    uint64_t not_before_ms; /* monotonic; the step waits until then */

    struct dial_job spec; /* unused in STEP_REJECT */
    char *raw_element;    /* the element exactly as taken */
    char *element;        /* the element in dial:processing after a claim */
    char *reject_entry;   /* the dial:failed entry, in STEP_REJECT */
    const char *source;   /* "queue" or "scan" */

    const char *expected_state; /* the state that STEP_BEGIN expects */
    char token[DIAL_JOB_ID_SIZE]; /* this attempt's token; "" matches any */
    unsigned attempts;            /* requests sent, from the record */
    unsigned retries;             /* retryable failures in this run */
    uint64_t backoff_ms;

    const char *outcome; /* placed, failed or unknown, in STEP_FINISH */
    char last_error[400];
    char call_uuid[CALL_EVENT_ID_MAX + 1];

    struct dial_request *request; /* in STEP_SEND */
};

struct dialer {
    struct event_base *base;
    struct store *store;       /* shared; NULL after dialer_stop() */
    struct store *queue_store; /* own connection: BLMOVE blocks it */
    struct ingest *ingest;
    struct curlev *curl;
    struct dialer_options options;
    char *api_url, *calls_url, *application_id, *event_url;

    struct job *jobs, *jobs_tail; /* in arrival order */
    size_t njobs;
    size_t sending; /* jobs holding a concurrency slot */
    struct pacer pacer;
    struct event *wake;

    int take_pending;
    uint64_t take_not_before_ms;

    /* dial:lock: only its holder takes and sends jobs. */
    char lock_value[DIAL_JOB_ID_SIZE];
    int leader;
    int lock_pending;
    int unlock_pending; /* shutdown waits for the lock to be released */
    int standby_logged;
    uint64_t lock_next_ms;

    /* The holder scans dial:processing for jobs that no process owns. */
    int scan_pending;
    int scan_logged;
    uint64_t scan_next_ms;

    int draining, stopped;
    int pumping, pump_again;
    int warned_unauthorized;

    struct dialer_stats stats;
    struct log_ratelimit retry_rl, redis_rl, invalid_rl;
};

static void pump(struct dialer *d);

/* ---- jobs ---------------------------------------------------------------- */

static void
job_link(struct dialer *d, struct job *job)
{
    job->dialer = d;
    job->prev = d->jobs_tail;
    if (d->jobs_tail != NULL)
        d->jobs_tail->next = job;
    else
        d->jobs = job;
    d->jobs_tail = job;
    d->njobs++;
}

static void
job_free(struct job *job)
{
    struct dialer *d = job->dialer;

    if (job->prev != NULL)
        job->prev->next = job->next;
    else
        d->jobs = job->next;
    if (job->next != NULL)
        job->next->prev = job->prev;
    else
        d->jobs_tail = job->prev;
    d->njobs--;
    dial_job_free(&job->spec);
    dial_request_free(job->request);
    free(job->raw_element);
    free(job->element);
    free(job->reject_entry);
    free(job);
}

static struct job *
find_job(struct dialer *d, const char *id)
{
    for (struct job *job = d->jobs; job != NULL; job = job->next) {
        if (job->step != STEP_REJECT && strcmp(job->spec.id, id) == 0)
            return job;
    }
    return NULL;
}

static const char *
mask(const char *number, char *buf, unsigned len)
{
    return number[0] ? log_mask_number(number, buf, len) : "(random)";
}

/*
 * Copies an error text for the log with every run of 7 or more digits cut
 * to its last 4, because API error details may quote a phone number.
 */
static const char *
mask_digits(const char *text, char *buf, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; text[i] != '\0' && n + 1 < len;) {
        size_t run = strspn(text + i, "0123456789");

        if (run >= DIAL_NUMBER_MIN) {
            n += (size_t)snprintf(buf + n, len - n, "****%.4s",
                                  text + i + run - 4);
            if (n >= len)
                n = len - 1;
            i += run;
        } else if (run > 0) {
            for (size_t k = 0; k < run && n + 1 < len; k++)
                buf[n++] = text[i++];
        } else {
            buf[n++] = text[i++];
        }
    }
    buf[n] = '\0';
    return buf;
}

/* ---- Redis --------------------------------------------------------------- */

static void
redis_lost(struct job *job, const char *step, const redisReply *r)
{
    struct dialer *d = job->dialer;
    uint64_t suppressed;

    job->not_before_ms = clock_monotonic_ms() + REDIS_RETRY_MS;
    if (log_ratelimit_pass(&d->redis_rl, &suppressed))
        log_warn("dial job %s: redis did not store the %s step (%s); "
                 "retrying (%" PRIu64 " similar warnings not logged)",
                 job->spec.id[0] ? job->spec.id : "(invalid)", step,
                 r != NULL && r->type == REDIS_REPLY_ERROR ? r->str
                                                           : "no reply",
                 suppressed);
}

static int
job_command(struct job *job, struct dial_command *cmd,
            store_reply_cb cb, const char *step)
{
    struct dialer *d = job->dialer;

    if (d->store == NULL ||
        store_command(d->store, cb, job, cmd->argc, cmd->argv, cmd->lens) !=
            0) {
        redis_lost(job, step, NULL);
        return -1;
    }
    job->command_pending = 1;
    return 0;
}

/* Common start of every reply callback: returns the job's reply or NULL
 * when the job must wait (lost reply, or the dialer stopped). */
static const redisReply *
reply_for(struct job *job, const redisReply *r, const char *step)
{
    job->command_pending = 0;
    if (job->dialer->stopped)
        return NULL;
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        redis_lost(job, step, r);
        return NULL;
    }
    return r;
}

static int
reply_is(const redisReply *r, const char *text)
{
    return r != NULL &&
           (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           strcmp(r->str, text) == 0;
}

static void
job_key(const struct job *job, char *buf, size_t len)
{
    dial_job_key(buf, len, job->spec.id);
}

static const char *
idem_key(const struct job *job, char *buf, size_t len, const char *fallback)
{
    if (job->spec.idempotency_key[0] == '\0')
        return fallback;
    dial_idem_key(buf, len, job->spec.idempotency_key);
    return buf;
}

/* ---- outcomes ------------------------------------------------------------ */

static void
set_outcome(struct job *job, const char *outcome, const char *error)
{
    job->outcome = outcome;
    snprintf(job->last_error, sizeof(job->last_error), "%s", error);
    job->step = STEP_FINISH;
    job->not_before_ms = 0;
}

static void
finish_done(void *arg, redisReply *reply)
{
    struct job *job = arg;
    struct dialer *d = job->dialer;
    const redisReply *r = reply_for(job, reply, "outcome");
    char to[16], error[sizeof(job->last_error)];

    if (r == NULL) {
        pump(d);
        return;
    }
    if (!reply_is(r, "ok")) {
        log_warn("dial job %s: outcome %s not stored: the record is now %s",
                 job->spec.id, job->outcome,
                 r->type == REDIS_REPLY_STRING ? r->str : "unreadable");
        job_free(job);
        pump(d);
        return;
    }
    mask(job->spec.to, to, sizeof(to));
    if (strcmp(job->outcome, "placed") == 0) {
        d->stats.placed++;
        log_info("dial job %s placed: call %s to %s (attempts: %u)",
                 job->spec.id, job->call_uuid[0] ? job->call_uuid : "-", to,
                 job->attempts);
    } else if (strcmp(job->outcome, "failed") == 0) {
        d->stats.failed++;
        log_warn("dial job %s to %s failed: %s", job->spec.id, to,
                 mask_digits(job->last_error, error, sizeof(error)));
    } else {
        d->stats.unknown++;
        log_warn("dial job %s to %s ended unknown, not dialed again: %s",
                 job->spec.id, to,
                 mask_digits(job->last_error, error, sizeof(error)));
    }
    job_free(job);
    pump(d);
}

static void
send_finish(struct job *job)
{
    struct dialer *d = job->dialer;
    struct dial_command cmd;
    char record[DIAL_KEY_SIZE], idem[DIAL_KEY_SIZE], ttl[16];

    job_key(job, record, sizeof(record));
    snprintf(ttl, sizeof(ttl), "%u", d->options.record_ttl);
    dial_command_begin(&cmd, dial_finish_lua, DIAL_PROCESSING_KEY, record,
                       idem_key(job, idem, sizeof(idem), record));
    dial_command_arg(&cmd, job->element);
    dial_command_arg(&cmd, job->token);
    dial_command_arg(&cmd, job->outcome);
    dial_command_arg(&cmd, job->last_error);
    dial_command_arg(&cmd, job->call_uuid);
    dial_command_arg(&cmd, cmd.now);
    dial_command_arg(&cmd, ttl);
    dial_command_arg(&cmd, job->spec.idempotency_key[0] ? "1" : "0");
    job_command(job, &cmd, finish_done, "outcome");
}

/* ---- the call record ----------------------------------------------------- */

static struct log_ratelimit record_rl = LOG_RATELIMIT_INIT(10000);

static void
call_recorded(void *arg, enum ingest_result result)
{
    char *id = arg;
    uint64_t suppressed;

    if ((result == INGEST_UNAVAILABLE || result == INGEST_FAILED) &&
        log_ratelimit_pass(&record_rl, &suppressed))
        log_warn("placed call %s not recorded: %s (%" PRIu64
                 " more not logged)",
                 id,
                 result == INGEST_UNAVAILABLE
                     ? "neither redis nor the spool could take it"
                     : "redis returned an error",
                 suppressed);
    free(id);
}

/*
 * Records the placed call the way a webhook would, because the call's
 * first event may arrive before the API's response. The event carries no
 * timestamp, so every webhook field wins over it.
 */
static void
record_call(struct job *job, const struct dial_result *res)
{
    struct dialer *d = job->dialer;
    const char *pairs[14];
    size_t n = 0;
    struct call_event ev;
    char err[256];
    char *id;

#define PAIR(name, value)                                                     \
    (pairs[2 * n] = (name), pairs[2 * n + 1] = (value), n++)
    PAIR("uuid", res->call_uuid);
    if (res->conversation_uuid[0] != '\0')
        PAIR("conversation_uuid", res->conversation_uuid);
    PAIR("status", "started");
    PAIR("direction", "outbound");
    PAIR("to", job->spec.to);
    if (job->spec.from[0] != '\0')
        PAIR("from", job->spec.from);
    PAIR("job_id", job->spec.id);
#undef PAIR

    if (call_event_from_pairs(&ev, CALL_EVENT_ORIGIN_DIALER, pairs, n, err,
                              sizeof(err)) != 0) {
        log_error("placed call %s not recorded: %s", res->call_uuid, err);
        return;
    }
    id = strdup(res->call_uuid);
    if (id == NULL) {
        call_event_free(&ev);
        return;
    }
    /* The history entry is the event as JSON, which the spool replays. */
    ingest_submit(d->ingest, &ev, CALL_EVENT_SOURCE_JSON, ev.history,
                  ev.history_len, call_recorded, id);
    call_event_free(&ev);
}

/* ---- retries ------------------------------------------------------------- */

static uint64_t
backoff_ms(unsigned retries, uint64_t retry_after_ms)
{
    uint64_t delay = BACKOFF_BASE_MS;

    for (unsigned i = 1; i < retries && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    /* Jitter over the upper half keeps retries of one burst apart. */
    delay = delay / 2 + (uint64_t)random() % (delay / 2 + 1);
    return delay > retry_after_ms ? delay : retry_after_ms;
}

static void
requeue_done(void *arg, redisReply *reply)
{
    struct job *job = arg;
    struct dialer *d = job->dialer;
    const redisReply *r = reply_for(job, reply, "requeue");

    if (r == NULL) {
        pump(d);
        return;
    }
    if (!reply_is(r, "ok")) {
        log_warn("dial job %s not retried: the record is now %s",
                 job->spec.id,
                 r->type == REDIS_REPLY_STRING ? r->str : "unreadable");
        job_free(job);
        pump(d);
        return;
    }
    job->step = STEP_WAIT;
    job->expected_state = "queued";
    job->not_before_ms = clock_monotonic_ms() + job->backoff_ms;
    pump(d);
}

static void
send_requeue(struct job *job)
{
    struct dial_command cmd;
    char record[DIAL_KEY_SIZE];

    job_key(job, record, sizeof(record));
    dial_command_begin(&cmd, dial_requeue_lua, record, record, record);
    dial_command_arg(&cmd, job->token);
    dial_command_arg(&cmd, job->last_error);
    dial_command_arg(&cmd, cmd.now);
    job_command(job, &cmd, requeue_done, "requeue");
}

static void
retry_later(struct job *job, const struct dial_result *res)
{
    struct dialer *d = job->dialer;
    char masked[sizeof(res->error)];
    uint64_t suppressed;

    if (job->attempts >= d->options.max_attempts) {
        char error[sizeof(job->last_error)];

        snprintf(error, sizeof(error), "gave up after %u attempts: %.300s",
                 job->attempts, res->error);
        set_outcome(job, "failed", error);
        return;
    }
    job->retries++;
    d->stats.retries++;
    job->backoff_ms = backoff_ms(job->retries, res->retry_after_ms);
    snprintf(job->last_error, sizeof(job->last_error), "%s", res->error);
    if (log_ratelimit_pass(&d->retry_rl, &suppressed))
        log_info("dial job %s attempt %u: %s; retrying in %" PRIu64
                 " ms (%" PRIu64 " similar lines not logged)",
                 job->spec.id, job->attempts,
                 mask_digits(res->error, masked, sizeof(masked)),
                 job->backoff_ms,
                 suppressed);
    job->step = STEP_REQUEUE;
    job->not_before_ms = 0;
}

const struct dialer_stats *
dialer_get_stats(const struct dialer *d, double *current_rate)
{
    if (d == NULL)
        return NULL;
    *current_rate = d->pacer.rate;
    return &d->stats;
}

/* ---- the request --------------------------------------------------------- */

static void
note_throttled(struct dialer *d, const struct dial_result *res)
{
    uint64_t now = clock_monotonic_ms();

    if (pacer_throttled(&d->pacer, now, res->retry_after_ms))
        log_warn("Voice API rate limit reached (HTTP 429): pacing cut to "
                 "%.2f calls/s, pausing %" PRIu64 " ms; it recovers "
                 "gradually",
                 d->pacer.rate, res->retry_after_ms);
}

static void
request_done(void *arg, CURL *easy, CURLcode code)
{
    struct job *job = arg;
    struct dialer *d = job->dialer;
    struct dial_result res;

    dial_request_result(job->request, easy, code, &res);
    d->sending--;
    d->stats.api_responses[res.status >= 100 && res.status < 600
                               ? res.status
                               : 0]++;
    if (res.throttled)
        note_throttled(d, &res);
    if (res.status == 401 && !d->warned_unauthorized) {
        d->warned_unauthorized = 1;
        log_error("the Voice API rejected the token (HTTP 401): check that "
                  "--private-key is the private key of application %s "
                  "(--application-id) and that the application has not "
                  "been deleted",
                  d->application_id);
    }

    switch (res.verdict) {
    case DIAL_PLACED:
        snprintf(job->call_uuid, sizeof(job->call_uuid), "%s",
                 res.call_uuid);
        if (res.call_uuid[0] != '\0')
            record_call(job, &res);
        set_outcome(job, "placed", res.error);
        break;
    case DIAL_RETRY:
        retry_later(job, &res);
        break;
    case DIAL_AMBIGUOUS:
        if (d->options.retry_ambiguous) {
            retry_later(job, &res);
            break;
        }
        set_outcome(job, "unknown", res.error);
        break;
    case DIAL_FAILED:
        set_outcome(job, "failed", res.error);
        break;
    }
    /* curlev cleans the handle up after this returns; the request state
     * goes with the next step. */
    pump(d);
}

static void
send_request(struct job *job)
{
    struct dialer *d = job->dialer;
    char err[256];
    char *body, *token;
    CURL *easy = NULL;

    token = jwt_sign_rs256(d->options.private_key, d->application_id,
                           (int64_t)time(NULL), TOKEN_TTL_S, err,
                           sizeof(err));
    body = dial_job_request_body(&job->spec, d->event_url);
    dial_request_free(job->request);
    job->request = NULL;
    if (token != NULL && body != NULL)
        easy = dial_request_new(&job->request, d->calls_url, body, token,
                                d->options.connect_timeout_ms,
                                d->options.timeout_ms);
    if (token != NULL) {
        explicit_bzero(token, strlen(token));
        free(token);
    } else {
        log_error("dial job %s: cannot sign the API token: %s", job->spec.id,
                  err);
    }
    free(body);

    job->step = STEP_SEND;
    if (easy == NULL || curlev_add(d->curl, easy, request_done, job) != 0) {
        if (easy != NULL)
            curl_easy_cleanup(easy);
        d->sending--;
        /* Nothing was sent, but the same failure would repeat. */
        set_outcome(job, "failed",
                    token == NULL ? "cannot sign the API token"
                                  : "cannot start the request: out of memory");
    }
}

static void
begin_done(void *arg, redisReply *reply)
{
    struct job *job = arg;
    struct dialer *d = job->dialer;
    const redisReply *r = reply_for(job, reply, "in_flight");

    if (r == NULL) {
        pump(d);
        return;
    }
    if (reply_is(r, "standby")) {
        /* The lock holder's scan takes the job over. */
        log_info("dial job %s left to the process that owns %s",
                 job->spec.id, DIAL_LOCK_KEY);
        d->sending--;
        job_free(job);
        pump(d);
        return;
    }
    if (!reply_is(r, "ok")) {
        log_warn("dial job %s not dialed: its record is %s, not %s",
                 job->spec.id,
                 r->type == REDIS_REPLY_STRING ? r->str : "unreadable",
                 job->expected_state);
        d->sending--;
        job_free(job);
        pump(d);
        return;
    }
    /* Redis has acknowledged in_flight: only now may the request leave. */
    job->attempts++;
    send_request(job);
    pump(d);
}

static void
send_begin(struct job *job)
{
    struct dial_command cmd;
    char record[DIAL_KEY_SIZE];

    job_key(job, record, sizeof(record));
    dial_command_begin(&cmd, dial_begin_lua, record, DIAL_LOCK_KEY, record);
    dial_command_arg(&cmd, job->expected_state);
    dial_command_arg(&cmd, job->token);
    dial_command_arg(&cmd, cmd.now);
    dial_command_arg(&cmd, job->dialer->lock_value);
    job_command(job, &cmd, begin_done, "in_flight");
}

/* ---- taking jobs --------------------------------------------------------- */

static void
release_done(void *arg, redisReply *reply)
{
    struct job *job = arg;
    struct dialer *d = job->dialer;

    if (reply_for(job, reply, "release") == NULL) {
        pump(d);
        return;
    }
    job_free(job);
    pump(d);
}

static void
send_release(struct job *job)
{
    const char *argv[4] = {"LREM", DIAL_PROCESSING_KEY, "1", job->element};
    size_t lens[4] = {4, strlen(DIAL_PROCESSING_KEY), 1,
                      strlen(job->element)};
    struct dialer *d = job->dialer;

    if (d->store == NULL ||
        store_command(d->store, release_done, job, 4, argv, lens) != 0) {
        redis_lost(job, "release", NULL);
        return;
    }
    job->command_pending = 1;
}

static void
reject_done(void *arg, redisReply *reply)
{
    struct job *job = arg;
    struct dialer *d = job->dialer;

    if (reply_for(job, reply, "reject") == NULL) {
        pump(d);
        return;
    }
    d->stats.invalid++;
    job_free(job);
    pump(d);
}

static void
send_reject(struct job *job)
{
    struct dial_command cmd;

    dial_command_begin(&cmd, dial_reject_lua, DIAL_PROCESSING_KEY,
                       DIAL_FAILED_KEY, DIAL_FAILED_KEY);
    dial_command_arg(&cmd, job->raw_element);
    dial_command_arg(&cmd, job->reject_entry);
    job_command(job, &cmd, reject_done, "reject");
}

static void
claimed(struct job *job, const char *state, const char *value,
        long long in_flight_ms)
{
    struct dialer *d = job->dialer;

    if (strcmp(state, "gone") == 0) {
        /* An earlier claim of the same element got there first. */
        job_free(job);
        return;
    }
    if (strcmp(state, "duplicate") == 0) {
        d->stats.duplicates++;
        log_info("dial job %s not dialed: its idempotency key belongs to "
                 "job %s",
                 job->spec.id, value);
        job_free(job);
        return;
    }
    job->attempts = (unsigned)strtoul(value, NULL, 10);
    if (strcmp(state, "queued") == 0) {
        job->step = STEP_WAIT;
        job->expected_state = "queued";
    } else if (strcmp(state, "in_flight") == 0) {
        if (in_flight_ms < (long long)d->options.timeout_ms +
                               ORPHAN_MARGIN_MS) {
            /* Its request may still be running in the process that sent
             * it; a later scan looks again. */
            job_free(job);
            return;
        }
        /* The process that sent the request stopped before it got the
         * response. */
        if (d->options.retry_ambiguous) {
            log_warn("dial job %s was left in flight by a stopped process; "
                     "dialing again (--retry-ambiguous)",
                     job->spec.id);
            job->step = STEP_WAIT;
            job->expected_state = "in_flight";
        } else {
            job->token[0] = '\0';
            set_outcome(job, "unknown",
                        "callhook stopped while the request may have "
                        "reached the API; not dialed again (see "
                        "--retry-ambiguous)");
        }
    } else {
        log_info("dial job %s already ended as %s; dropping its copy from "
                 "%s",
                 job->spec.id, state, DIAL_PROCESSING_KEY);
        job->step = STEP_RELEASE;
    }
}

static void
claim_done(void *arg, redisReply *reply)
{
    struct job *job = arg;
    struct dialer *d = job->dialer;
    const redisReply *r = reply_for(job, reply, "claim");

    if (r == NULL) {
        pump(d);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        log_error("dial job %s: unexpected reply to the claim script; "
                  "left in %s",
                  job->spec.id, DIAL_PROCESSING_KEY);
        job_free(job);
        pump(d);
        return;
    }
    claimed(job, r->element[0]->str, r->element[1]->str,
            r->element[2]->integer);
    pump(d);
}

static void
send_claim(struct job *job)
{
    struct dial_command cmd;
    char record[DIAL_KEY_SIZE], idem[DIAL_KEY_SIZE];

    job_key(job, record, sizeof(record));
    dial_command_begin(&cmd, dial_claim_lua, DIAL_PROCESSING_KEY, record,
                       idem_key(job, idem, sizeof(idem), record));
    dial_command_arg(&cmd, job->raw_element);
    dial_command_arg(&cmd, job->element);
    dial_command_arg(&cmd, job->spec.id);
    dial_command_arg(&cmd, cmd.now);
    dial_command_arg(&cmd, job->spec.idempotency_key[0] ? "1" : "0");
    dial_command_arg(&cmd, job->source);
    job_command(job, &cmd, claim_done, "claim");
}

/* Builds {"job": JOB, "error": ERROR}, JOB as JSON when it parses. */
static char *
reject_entry(const char *data, size_t len, const char *error)
{
    json_t *job = json_loadb(data, len, JSON_DECODE_ANY, NULL);
    json_t *entry;
    char *text;

    if (job == NULL)
        job = json_stringn(data, len);
    if (job == NULL)
        job = json_string("(not valid UTF-8)");
    entry = json_pack("{s:o,s:s}", "job", job, "error", error);
    text = entry ? json_dumps(entry, JSON_COMPACT | JSON_PRESERVE_ORDER)
                 : NULL;
    json_decref(entry);
    return text;
}

/* Starts handling one element of dial:processing. */
static void
take_element(struct dialer *d, const char *data, size_t len,
             const char *source)
{
    struct job *job = calloc(1, sizeof(*job));
    char err[512];
    uint64_t suppressed;

    if (job == NULL || (job->raw_element = strndup(data, len)) == NULL) {
        free(job);
        log_error("out of memory: a dial job stays in %s until the next "
                  "start",
                  DIAL_PROCESSING_KEY);
        return;
    }
    job->source = source;
    job_link(d, job);

    if (dial_job_parse(&job->spec, data, len, err, sizeof(err)) != 0) {
        if (log_ratelimit_pass(&d->invalid_rl, &suppressed))
            log_warn("invalid dial job from %s moved to %s: %s (%" PRIu64
                     " more not logged)",
                     DIAL_QUEUE_KEY, DIAL_FAILED_KEY, err, suppressed);
        job->reject_entry = reject_entry(data, len, err);
        job->step = STEP_REJECT;
        if (job->reject_entry == NULL)
            job_free(job);
        return;
    }
    if (job->spec.id[0] == '\0' && dial_new_job_id(job->spec.id) != 0) {
        log_error("cannot make a job id: the random generator failed");
        job_free(job);
        return;
    }
    if (find_job(d, job->spec.id) != job) {
        if (strcmp(source, "scan") == 0) {
            /* This process owns the job already. */
            job_free(job);
            return;
        }
        log_warn("dial job %s taken twice; dropping the second copy",
                 job->spec.id);
        job->element = strdup(job->raw_element);
        job->step = STEP_RELEASE;
    } else {
        job->element = dial_job_to_json(&job->spec);
        job->step = STEP_CLAIM;
    }
    if (job->element == NULL)
        job_free(job);
}

static void
blmove_done(void *arg, redisReply *r)
{
    struct dialer *d = arg;

    d->take_pending = 0;
    if (d->stopped || d->draining || !d->leader) {
        /* An element moved now stays in dial:processing, where the next
         * scan of the lock holder finds it. */
        return;
    }
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        take_element(d, r->str, r->len, "queue");
    } else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        log_error("cannot take dial jobs: BLMOVE failed: %s (it needs "
                  "Redis 6.2 or later); trying again in %d s",
                  r->str, TAKE_ERROR_DELAY_MS / 1000);
        d->take_not_before_ms = clock_monotonic_ms() + TAKE_ERROR_DELAY_MS;
    }
    pump(d);
}

static void
queue_take(struct dialer *d)
{
    const char *argv[] = {"BLMOVE", DIAL_QUEUE_KEY, DIAL_PROCESSING_KEY,
                          "RIGHT", "LEFT", TAKE_TIMEOUT};
    size_t lens[6];

    if (d->draining || d->stopped || !d->leader || d->take_pending ||
        d->njobs >= d->options.concurrency ||
        clock_monotonic_ms() < d->take_not_before_ms ||
        !store_ready(d->queue_store))
        return;
    for (size_t i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    if (store_command(d->queue_store, blmove_done, d, 6, argv, lens) == 0)
        d->take_pending = 1;
}

static void
scanned(void *arg, redisReply *r)
{
    struct dialer *d = arg;
    size_t before = d->njobs;

    d->scan_pending = 0;
    if (d->stopped || r == NULL)
        return; /* scanned again once the connection is back */
    if (r->type != REDIS_REPLY_ARRAY) {
        log_error("cannot read %s: %s",
                  DIAL_PROCESSING_KEY,
                  r->type == REDIS_REPLY_ERROR ? r->str : "not a list");
    } else if (d->leader && !d->draining) {
        for (size_t i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_STRING)
                take_element(d, r->element[i]->str, r->element[i]->len,
                             "scan");
        }
        /* The scan repeats every few seconds until those jobs settle:
         * only the first find goes to the info log. */
        if (d->njobs > before && !d->scan_logged) {
            d->scan_logged = 1;
            log_info("checking %zu dial jobs in %s that no running process "
                     "owns",
                     d->njobs - before, DIAL_PROCESSING_KEY);
        } else if (d->njobs > before) {
            log_debug("checking %zu dial jobs in %s that no running process "
                      "owns",
                      d->njobs - before, DIAL_PROCESSING_KEY);
        }
    }
    pump(d);
}

/* The lock holder resumes what stopped processes left in
 * dial:processing: at once when it takes the lock, then periodically. */
static void
scan_processing(struct dialer *d, uint64_t now)
{
    const char *argv[] = {"LRANGE", DIAL_PROCESSING_KEY, "0", "-1"};
    size_t lens[] = {6, strlen(DIAL_PROCESSING_KEY), 1, 2};

    if (!d->leader || d->draining || d->scan_pending ||
        now < d->scan_next_ms || !store_ready(d->queue_store))
        return;
    if (store_command(d->queue_store, scanned, d, 4, argv, lens) == 0) {
        d->scan_pending = 1;
        d->scan_next_ms = now + SCAN_INTERVAL_MS;
    }
}

static void
locked(void *arg, redisReply *r)
{
    struct dialer *d = arg;
    int has_lock;

    d->lock_pending = 0;
    if (d->stopped)
        return;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        /* Keep acting as the holder until the lock could have expired:
         * the fence in the in_flight step stops any request after that. */
        d->lock_next_ms = clock_monotonic_ms() + REDIS_RETRY_MS;
        pump(d);
        return;
    }
    has_lock = r->integer == 1;
    if (has_lock && !d->leader) {
        log_info("dialer active: this process owns %s and takes jobs "
                 "from %s",
                 DIAL_LOCK_KEY, DIAL_QUEUE_KEY);
        d->scan_next_ms = 0;
    } else if (!has_lock && d->leader) {
        log_warn("dialer lost %s to another process: it stops taking jobs; "
                 "requests in flight finish",
                 DIAL_LOCK_KEY);
    } else if (!has_lock && !d->standby_logged) {
        log_info("dialer standby: another callhook process owns %s; this "
                 "one takes over if it stops renewing it",
                 DIAL_LOCK_KEY);
        d->standby_logged = 1;
    }
    d->leader = has_lock;
    pump(d);
}

static void
renew_lock(struct dialer *d, uint64_t now)
{
    const char *argv[] = {"EVAL", dial_lock_lua, "1", DIAL_LOCK_KEY,
                          d->lock_value, NULL};
    size_t lens[6];
    char ttl[16];

    if (d->draining || d->lock_pending || now < d->lock_next_ms)
        return;
    snprintf(ttl, sizeof(ttl), "%d", LOCK_TTL_MS);
    argv[5] = ttl;
    for (size_t i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    d->lock_next_ms = now + LOCK_RENEW_MS;
    if (d->store != NULL &&
        store_command(d->store, locked, d, 6, argv, lens) == 0)
        d->lock_pending = 1;
    else
        d->lock_next_ms = now + LOCK_WAIT_MS;
}

static void
queue_ready(void *arg)
{
    pump(arg);
}

static void
unlocked(void *arg, redisReply *r)
{
    struct dialer *d = arg;

    d->unlock_pending = 0;
}

/* Gives dial:lock up, so a new process need not wait for it to expire. */
static void
release_lock(struct dialer *d)
{
    static const char script[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
        "    redis.call('DEL', KEYS[1])\n"
        "end\n"
        "return 0\n";
    const char *argv[] = {"EVAL", script, "1", DIAL_LOCK_KEY, d->lock_value};
    size_t lens[5];

    for (size_t i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    if (d->store != NULL &&
        store_command(d->store, unlocked, d, 5, argv, lens) == 0)
        d->unlock_pending = 1;
}

/* ---- the pump ------------------------------------------------------------ */

/* Runs the next step of every job that can move; returns when to look
 * again (monotonic ms), UINT64_MAX for "when something happens". */
static uint64_t
advance_jobs(struct dialer *d, uint64_t now)
{
    uint64_t wake = UINT64_MAX;
    int no_token = 0;
    struct job *job, *next;

    for (job = d->jobs; job != NULL; job = next) {
        next = job->next;
        if (job->command_pending || job->step == STEP_SEND)
            continue;
        if (job->not_before_ms > now) {
            if (job->not_before_ms < wake)
                wake = job->not_before_ms;
            continue;
        }
        switch (job->step) {
        case STEP_CLAIM:
            send_claim(job);
            break;
        case STEP_REJECT:
            send_reject(job);
            break;
        case STEP_RELEASE:
            send_release(job);
            break;
        case STEP_WAIT:
            if (!d->leader) {
                /* It stays in dial:processing for the lock holder. */
                job_free(job);
                continue;
            }
            if (d->draining || no_token ||
                d->sending >= d->options.concurrency)
                break;
            if (!pacer_take(&d->pacer, now)) {
                uint64_t at = now + pacer_wait_ms(&d->pacer, now);

                no_token = 1;
                if (at < wake)
                    wake = at;
                break;
            }
            if (dial_new_job_id(job->token) != 0) {
                log_error("cannot make an attempt token: the random "
                          "generator failed");
                break;
            }
            d->sending++;
            job->step = STEP_BEGIN;
            send_begin(job);
            break;
        case STEP_BEGIN:
            send_begin(job);
            break;
        case STEP_REQUEUE:
            send_requeue(job);
            break;
        case STEP_FINISH:
            send_finish(job);
            break;
        case STEP_SEND:
            break;
        }
        if (job->not_before_ms > now && job->not_before_ms < wake)
            wake = job->not_before_ms;
    }
    return wake;
}

static void
pump(struct dialer *d)
{
    uint64_t wake, now;

    if (d->stopped)
        return;
    if (d->pumping) {
        d->pump_again = 1;
        return;
    }
    d->pumping = 1;
    do {
        d->pump_again = 0;
        now = clock_monotonic_ms();
        wake = advance_jobs(d, now);
        renew_lock(d, now);
        scan_processing(d, now);
        queue_take(d);
        if (d->take_not_before_ms > now && d->take_not_before_ms < wake)
            wake = d->take_not_before_ms;
        if (!d->draining && !d->lock_pending && d->lock_next_ms < wake)
            wake = d->lock_next_ms > now ? d->lock_next_ms : now;
        /* Without a connection, queue_ready() pumps when it is back. */
        if (d->leader && !d->draining && !d->scan_pending &&
            store_ready(d->queue_store) && d->scan_next_ms < wake)
            wake = d->scan_next_ms > now ? d->scan_next_ms : now;
    } while (d->pump_again);
    d->pumping = 0;

    evtimer_del(d->wake);
    if (wake != UINT64_MAX) {
        uint64_t delay = wake > now ? wake - now : 0;
        struct timeval tv = {(time_t)(delay / 1000),
                             (suseconds_t)(delay % 1000) * 1000};

        evtimer_add(d->wake, &tv);
    }
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

/* ---- lifecycle ----------------------------------------------------------- */

struct dialer *
dialer_new(struct event_base *base, const struct redis_target *target,
           struct store *store, struct ingest *ingest,
           const struct dialer_options *options)
{
    struct dialer *d = calloc(1, sizeof(*d));
    struct store_options queue_options;
    size_t url_len;

    if (d == NULL)
        return NULL;
    d->base = base;
    d->store = store;
    d->ingest = ingest;
    d->options = *options;
    d->api_url = strdup(options->api_url);
    d->application_id = strdup(options->application_id);
    d->event_url = strdup(options->event_url);
    url_len = strlen(options->api_url) + sizeof("/v1/calls");
    d->calls_url = malloc(url_len);
    if (d->calls_url != NULL)
        snprintf(d->calls_url, url_len, "%s/v1/calls", options->api_url);
    d->retry_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(1000);
    d->redis_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(10000);
    d->invalid_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(1000);
    pacer_init(&d->pacer, options->rate, clock_monotonic_ms());

    memset(&queue_options, 0, sizeof(queue_options));
    queue_options.ttl_seconds = 0;
    queue_options.history_max = 1;
    /* BLMOVE delays its reply for up to TAKE_TIMEOUT by design. */
    queue_options.command_timeout_ms =
        options->redis_timeout_ms ? options->redis_timeout_ms +
                                        TAKE_TIMEOUT_MS
                                  : 0;
    queue_options.on_ready = queue_ready;
    queue_options.on_ready_arg = d;
    d->queue_store = store_new(base, target, &queue_options);
    d->curl = curlev_new(base, (long)options->concurrency);
    d->wake = evtimer_new(base, wake_cb, d);
    if (dial_new_job_id(d->lock_value) != 0 || d->api_url == NULL ||
        d->application_id == NULL ||
        d->event_url == NULL || d->calls_url == NULL ||
        d->queue_store == NULL || d->curl == NULL || d->wake == NULL) {
        d->options.private_key = NULL; /* still the caller's */
        dialer_stop(d);
        dialer_free(d);
        return NULL;
    }
    return d;
}

void
dialer_start(struct dialer *d)
{
    store_start(d->queue_store);
    pump(d);
}

void
dialer_drain(struct dialer *d)
{
    if (d == NULL || d->draining)
        return;
    d->draining = 1;
    /* Jobs in flight keep their records: another process treats them as
     * orphans only after the request timeout. */
    if (d->leader)
        release_lock(d);
    log_info("dialer draining: %zu requests in flight; %zu taken jobs not "
             "yet sent stay in %s for the next start",
             d->sending, d->njobs - d->sending, DIAL_PROCESSING_KEY);
    pump(d);
}

size_t
dialer_busy(const struct dialer *d)
{
    size_t busy = 0;

    if (d == NULL)
        return 0;
    busy = (size_t)d->unlock_pending;
    for (const struct job *job = d->jobs; job != NULL; job = job->next) {
        if (job->step == STEP_BEGIN || job->step == STEP_SEND ||
            job->step == STEP_REQUEUE || job->step == STEP_FINISH)
            busy++;
    }
    return busy;
}

int
dialer_accepting(const struct dialer *d)
{
    return d != NULL && !d->draining && !d->stopped;
}

void
dialer_stop(struct dialer *d)
{
    size_t abandoned;

    if (d == NULL || d->stopped)
        return;
    abandoned = d->curl ? curlev_running(d->curl) : 0;
    d->stopped = 1;
    if (d->wake != NULL)
        evtimer_del(d->wake);
    if (abandoned > 0)
        log_warn("dialer stopped with %zu requests in flight; their jobs "
                 "stay in_flight in %s and end as unknown at the next start",
                 abandoned, DIAL_PROCESSING_KEY);
    curlev_free(d->curl);
    d->curl = NULL;
    /* Runs the pending BLMOVE callback with a NULL reply. */
    store_free(d->queue_store);
    d->queue_store = NULL;
    d->store = NULL;
    if (d->api_url != NULL)
        log_info("dialer stopped: %" PRIu64 " placed, %" PRIu64
                 " failed, %" PRIu64 " unknown, %" PRIu64 " retries, %" PRIu64
                 " invalid, %" PRIu64 " duplicates",
                 d->stats.placed, d->stats.failed, d->stats.unknown,
                 d->stats.retries, d->stats.invalid, d->stats.duplicates);
}

void
dialer_free(struct dialer *d)
{
    if (d == NULL)
        return;
    while (d->jobs != NULL)
        job_free(d->jobs);
    if (d->wake != NULL)
        event_free(d->wake);
    EVP_PKEY_free(d->options.private_key);
    free(d->api_url);
    free(d->calls_url);
    free(d->application_id);
    free(d->event_url);
    free(d);
}
