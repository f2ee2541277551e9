/*
 * The outbound dialer: takes jobs from dial:queue (and, on startup, the
 * jobs an earlier run left in dial:processing), places each call with
 * POST /v1/calls, paced to --dial-rate and --dial-concurrency, and stores
 * exactly one outcome per job. See dial_records.h for the Redis layout.
 *
 * A request is retried only when the API cannot have placed the call
 * (nothing was sent, or the API returned 429 or 503). Any other failure
 * after the request was sent ends the job as unknown unless
 * retry_ambiguous is set, so nobody is called twice by mistake.
 */
#ifndef CALLHOOK_DIALER_H
#define CALLHOOK_DIALER_H

#include <stddef.h>

#include <event2/event.h>
#include <openssl/evp.h>

#include "config.h"
#include "ingest.h"
#include "store.h"

struct dialer_options {
    const char *api_url;  /* scheme://host[:port], without a trailing '/' */
    const char *application_id;
    EVP_PKEY *private_key; /* the dialer takes ownership */
    const char *event_url; /* event_url of every call placed */
    unsigned rate;         /* calls per second */
    unsigned concurrency;  /* requests in flight, and jobs held at once */
    unsigned connect_timeout_ms;
    unsigned timeout_ms; /* whole request, connecting included */
    unsigned max_attempts;
    int retry_ambiguous;
    unsigned record_ttl;       /* seconds for ended job records; 0: none */
    unsigned redis_timeout_ms; /* 0 waits forever */
};

struct dialer;

/* Job outcomes and Voice API replies since start, for /metrics. */
struct dialer_stats {
    uint64_t placed, failed, unknown, retries, invalid, duplicates;
    uint64_t api_responses[600]; /* by HTTP status; [0]: no response */
};

/* Returns the counters and the current pacing rate; NULL when off. */
const struct dialer_stats *dialer_get_stats(const struct dialer *dialer,
                                            double *current_rate);

/*
 * Creates the dialer; nothing starts before dialer_start(). Strings are
 * copied. The store and the ingest must outlive the dialer's use of them,
 * which ends with dialer_stop(). Returns NULL when out of memory.
 */
struct dialer *dialer_new(struct event_base *base,
                          const struct redis_target *target,
                          struct store *store, struct ingest *ingest,
                          const struct dialer_options *options);

/* Connects to Redis, resumes the jobs in dial:processing, then takes new
 * ones. */
void dialer_start(struct dialer *dialer);

/*
 * Stops taking jobs and starting requests; requests already sent run to
 * their end and their outcomes are stored. Accepts NULL.
 */
void dialer_drain(struct dialer *dialer);

/* Requests in flight plus outcome writes waiting for Redis; 0 for NULL. */
size_t dialer_busy(const struct dialer *dialer);

/*
 * Aborts what is still running and detaches from the store, so it can be
 * freed. A job whose request was aborted keeps its in_flight record and
 * its place in dial:processing. Accepts NULL.
 */
void dialer_stop(struct dialer *dialer);

/* Frees the dialer after dialer_stop() and store_free(). Accepts NULL. */
void dialer_free(struct dialer *dialer);

/* Nonzero when the dialer can take POST /calls jobs. Accepts NULL. */
int dialer_accepting(const struct dialer *dialer);

/*
 * Creates the dialer from the configuration when --application-id and a
 * private key are both given, and logs whether it is on. Returns 0 with
 * *out set (NULL when the dialer is off), or -1 with a message in err
 * that names the option at fault.
 */
int dialer_from_config(const struct config *cfg, struct event_base *base,
                       const struct redis_target *target, struct store *store,
                       struct ingest *ingest, struct dialer **out, char *err,
                       size_t errlen);

#endif
