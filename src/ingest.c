#include "ingest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/*
 * Spool record payload: u8 format (1), u8 origin, u8 source, u64 arrival
 * time in epoch ms (little-endian), u8 length of the signed token's id,
 * that id, then the event exactly as it arrived. Replaying parses it
 * again, which gives the same digest and fields.
 */
#define RECORD_FORMAT 1
#define RECORD_HEADER 12
#define JTI_MAX 255
#define REPLAY_WINDOW 256

struct submission {
    struct ingest *ingest;
    ingest_done_cb cb;
    void *arg;
    char id[CALL_EVENT_ID_MAX + 1];
    size_t record_len;
    unsigned char record[]; /* spool payload, kept until Redis answers */
};

struct ingest {
    struct event_base *base;
    struct store *store;
    struct spool *spool;
    size_t max_pending;
    size_t inflight;
    struct ingest_stats stats;
    struct log_ratelimit lost_rl;

    struct event *replay_timer;
    struct spool_file *replay_file;
    size_t replay_inflight;
    int replay_failed;
    int replay_exhausted;
    char last_replayed[64]; /* file of the last stopped replay */
    struct log_ratelimit replay_rl;
};

static void replay_pump(struct ingest *ingest);

static void
put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get_u64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void
finish(struct submission *sub, enum ingest_result result)
{
    struct ingest *ingest = sub->ingest;

    ingest->inflight--;
    switch (result) {
    case INGEST_APPLIED:
    case INGEST_DUPLICATE:
        ingest->stats.via_redis++;
        break;
    case INGEST_SPOOLED:
        ingest->stats.via_spool++;
        break;
    case INGEST_UNAVAILABLE:
        ingest->stats.unavailable++;
        break;
    case INGEST_FAILED:
    case INGEST_REPLAYED:
        break;
    }
    sub->cb(sub->arg, result);
    free(sub);
}

static void
spooled(void *arg, int durable)
{
    finish(arg, durable ? INGEST_SPOOLED : INGEST_UNAVAILABLE);
}

static void
to_spool(struct submission *sub)
{
    struct ingest *ingest = sub->ingest;

    if (ingest->spool == NULL ||
        spool_append(ingest->spool, sub->record, sub->record_len, spooled,
                     sub) != 0)
        finish(sub, INGEST_UNAVAILABLE);
}

static void
applied(void *arg, enum store_result result, int status_changed)
{
    struct submission *sub = arg;

    switch (result) {
    case STORE_APPLIED:
        finish(sub, INGEST_APPLIED);
        break;
    case STORE_DUPLICATE:
        finish(sub, INGEST_DUPLICATE);
        break;
    case STORE_UNAVAILABLE:
        to_spool(sub);
        break;
    case STORE_FAILED:
        finish(sub, INGEST_FAILED);
        break;
    case STORE_REPLAYED:
        finish(sub, INGEST_REPLAYED);
        break;
    }
}

void
ingest_submit(struct ingest *ingest, const struct call_event *ev,
              enum call_event_source source, const char *data, size_t len,
              ingest_done_cb cb, void *arg)
{
    size_t jti_len = ev->jti ? strlen(ev->jti) : 0;
    struct submission *sub;
    uint64_t received = ev->received_ms ? ev->received_ms : clock_now_ms();
    struct call_event timed = *ev;

    if (jti_len > JTI_MAX) {
        cb(arg, INGEST_FAILED);
        return;
    }
    sub = malloc(sizeof(*sub) + RECORD_HEADER + jti_len + len);
    if (sub == NULL) {
        cb(arg, INGEST_UNAVAILABLE);
        return;
    }
    sub->ingest = ingest;
    sub->cb = cb;
    sub->arg = arg;
    snprintf(sub->id, sizeof(sub->id), "%s", ev->id);
    sub->record[0] = RECORD_FORMAT;
    sub->record[1] = (unsigned char)ev->origin;
    sub->record[2] = (unsigned char)source;
    put_u64(sub->record + 3, received);
    sub->record[11] = (unsigned char)jti_len;
    memcpy(sub->record + RECORD_HEADER, ev->jti ? ev->jti : "", jti_len);
    memcpy(sub->record + RECORD_HEADER + jti_len, data, len);
    sub->record_len = RECORD_HEADER + jti_len + len;
    ingest->inflight++;

    /* The same arrival time goes to Redis now or from the spool later. */
    timed.received_ms = received;
    /* store_apply() refuses, and counts the event for its outage report,
     * while Redis is not ready. */
    if (ingest->store != NULL &&
        store_pending(ingest->store) < ingest->max_pending &&
        store_apply(ingest->store, &timed, applied, sub) == 0)
        return;
    to_spool(sub);
}

/* ---- replay ------------------------------------------------------------ */

static void
replayed(void *arg, enum store_result result, int status_changed)
{
    struct ingest *ingest = arg;

    ingest->replay_inflight--;
    if (result == STORE_UNAVAILABLE) {
        ingest->replay_failed = 1;
    } else if (result == STORE_FAILED || result == STORE_REPLAYED) {
        ingest->stats.replay_dropped++;
    } else {
        ingest->stats.replayed++;
    }
    replay_pump(ingest);
}

static void
replay_record(struct ingest *ingest, const unsigned char *rec, size_t len)
{
    struct call_event ev;
    char err[256], jti[JTI_MAX + 1];
    size_t jti_len = len >= RECORD_HEADER ? rec[11] : 0;
    uint64_t suppressed;

    if (len < RECORD_HEADER + jti_len || rec[0] != RECORD_FORMAT ||
        rec[1] > CALL_EVENT_ORIGIN_DIALER || rec[2] > CALL_EVENT_SOURCE_QUERY ||
        call_event_parse(&ev, (enum call_event_source)rec[2],
                         (enum call_event_origin)rec[1],
                         (const char *)rec + RECORD_HEADER + jti_len,
                         len - RECORD_HEADER - jti_len, err,
                         sizeof(err)) != 0) {
        ingest->stats.replay_dropped++;
        if (log_ratelimit_pass(&ingest->lost_rl, &suppressed))
            log_error("spool record in %s cannot be replayed and is "
                      "dropped (%" PRIu64 " more not logged)",
                      spool_file_name(ingest->replay_file), suppressed);
        return;
    }
    ev.received_ms = get_u64(rec + 3);
    memcpy(jti, rec + RECORD_HEADER, jti_len);
    jti[jti_len] = '\0';
    ev.jti = jti_len ? jti : NULL;
    if (store_apply(ingest->store, &ev, replayed, ingest) == 0)
        ingest->replay_inflight++;
    else
        ingest->replay_failed = 1;
    call_event_free(&ev);
}

/*
 * Feeds the current spool file to Redis, at most REPLAY_WINDOW commands
 * at a time, in file order. A file is deleted only after every record in
 * it was answered; on any lost answer the file is kept and replayed from
 * its start next time, which the duplicate rule makes harmless.
 */
static void
replay_pump(struct ingest *ingest)
{
    for (;;) {
        if (ingest->replay_file == NULL) {
            int rc;

            if (ingest->spool == NULL || ingest->store == NULL ||
                !store_ready(ingest->store) ||
                !spool_has_backlog(ingest->spool))
                return;
            rc = spool_replay_open(ingest->spool, &ingest->replay_file);
            if (rc != 0) {
                ingest->replay_file = NULL;
                return;
            }
            ingest->replay_failed = 0;
            ingest->replay_exhausted = 0;
            /* A file retried every second while Redis refuses writes
             * would flood the log: only the first attempt is logged. */
            if (strcmp(ingest->last_replayed, spool_file_name(
                                                  ingest->replay_file)) != 0)
                log_info("replaying spool file %s",
                         spool_file_name(ingest->replay_file));
        }

        while (!ingest->replay_failed && !ingest->replay_exhausted &&
               ingest->replay_inflight < REPLAY_WINDOW &&
               ingest->store != NULL && store_ready(ingest->store)) {
            const void *data;
            size_t len;

            if (!spool_file_next(ingest->replay_file, &data, &len)) {
                ingest->replay_exhausted = 1;
                break;
            }
            replay_record(ingest, data, len);
        }
        if (ingest->replay_inflight > 0)
            return;

        if (ingest->replay_failed || !ingest->replay_exhausted) {
            uint64_t suppressed;

            if (strcmp(ingest->last_replayed,
                       spool_file_name(ingest->replay_file)) != 0 ||
                log_ratelimit_pass(&ingest->replay_rl, &suppressed))
                log_warn("replay of spool file %s stopped: redis did not "
                         "take every record; it will be replayed again",
                         spool_file_name(ingest->replay_file));
            snprintf(ingest->last_replayed, sizeof(ingest->last_replayed),
                     "%s", spool_file_name(ingest->replay_file));
            spool_file_release(ingest->replay_file);
            ingest->replay_file = NULL;
            return;
        }
        log_info("spool file %s replayed",
                 spool_file_name(ingest->replay_file));
        spool_file_done(ingest->spool, ingest->replay_file);
        ingest->replay_file = NULL;
    }
}

static void
replay_tick(evutil_socket_t fd, short what, void *arg)
{
    replay_pump(arg);
}

void
ingest_stop(struct ingest *ingest)
{
    event_del(ingest->replay_timer);
    ingest->store = NULL;
}

void
ingest_kick(struct ingest *ingest)
{
    replay_pump(ingest);
}

struct ingest *
ingest_new(struct event_base *base, struct store *store, struct spool *spool,
           size_t max_pending)
{
    struct ingest *ingest = calloc(1, sizeof(*ingest));
    struct timeval tick = {1, 0};

    if (ingest == NULL)
        return NULL;
    ingest->base = base;
    ingest->store = store;
    ingest->spool = spool;
    ingest->max_pending = max_pending;
    ingest->lost_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(10000);
    ingest->replay_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(60000);
    /* Records spooled while Redis was busy, not down, have no "ready"
     * moment to wait for: look for a backlog every second. */
    ingest->replay_timer =
        event_new(base, -1, EV_PERSIST, replay_tick, ingest);
    if (ingest->replay_timer == NULL) {
        free(ingest);
        return NULL;
    }
    event_add(ingest->replay_timer, &tick);
    return ingest;
}

void
ingest_free(struct ingest *ingest)
{
    if (ingest == NULL)
        return;
    event_free(ingest->replay_timer);
    spool_file_release(ingest->replay_file);
    free(ingest);
}

size_t
ingest_inflight(const struct ingest *ingest)
{
    return ingest->inflight;
}

const struct ingest_stats *
ingest_get_stats(const struct ingest *ingest)
{
    return &ingest->stats;
}
