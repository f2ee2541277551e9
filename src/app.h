/*
 * The process-wide state shared by the request handlers, and the handlers'
 * entry points.
 */
#ifndef CALLHOOK_APP_H
#define CALLHOOK_APP_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "callhook/jwt.h"
#include "config.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "store.h"

struct app_counters {
    uint64_t requests;
    uint64_t events_applied;
    uint64_t events_duplicate;
    uint64_t events_spooled;     /* 200 from the spool */
    uint64_t events_rejected;    /* 4xx: bad input */
    uint64_t events_unavailable; /* 503 */
    uint64_t events_failed;      /* 500: Redis returned an error */
    uint64_t answers;
    uint64_t signature_failures; /* 401 */
    uint64_t events_unranked;    /* applied without a ranked status */
    uint64_t rejected_by_code[600];
    uint64_t signature_by_reason[16];
};

/* Reason a signed webhook got 401, a label of the metric of that name. */
enum signature_reason {
    SIGNATURE_MISSING,
    SIGNATURE_MALFORMED,
    SIGNATURE_ALGORITHM,
    SIGNATURE_MISMATCH,
    SIGNATURE_EXPIRED,
    SIGNATURE_CLAIMS,
    SIGNATURE_PAYLOAD_HASH,
    SIGNATURE_REPLAYED,
    SIGNATURE_REASONS,
};

struct app {
    struct event_base *base;
    const struct config *cfg;
    struct redis_target redis;
    struct store *store;
    struct spool *spool; /* NULL when --spool-dir is empty */
    struct ingest *ingest;
    struct http_server *public_srv;
    struct http_server *admin_srv;
    struct dialer *dialer; /* NULL when the dialer is off */

    /* Signature secrets; none means webhooks are not signed. */
    struct jwt_secret *secrets;
    size_t nsecrets;

    char *answer_ncco; /* the NCCO /inbound_calls returns */
    size_t answer_ncco_len;

    uint64_t next_request_id;
    size_t inflight; /* webhook requests waiting for Redis */
    int announced_ready;
    int shutting_down;

    struct app_counters counters;
    struct log_ratelimit bad_request_rl;
    struct log_ratelimit unrecorded_rl;
    struct log_ratelimit signature_rl;
};

/* Generic callbacks of the two listeners. */
void webhook_handle(struct evhttp_request *req, void *arg);
void admin_handle(struct evhttp_request *req, void *arg);

/*
 * Counts one reply in the metrics and logs it at debug level: method,
 * path, code and duration. One for each listener, since both serve
 * /healthz.
 */
void app_log_request(struct app *app, uint64_t request_id,
                     struct evhttp_request *req, int code,
                     uint64_t start_us);
void app_log_admin_request(struct app *app, uint64_t request_id,
                           struct evhttp_request *req, int code,
                           uint64_t start_us);

#endif
