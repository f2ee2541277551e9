#include "metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "dialer.h"

struct metrics metrics;

static const double bucket_bounds[METRICS_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   2.5,
};

static const char *const route_names[ROUTE_COUNT] = {
    "/call_events", "/inbound_calls", "/healthz", "/readyz",
    "/calls/{uuid}", "/calls", "/metrics", "other",
};

void
histogram_observe(struct histogram *h, double seconds)
{
    size_t i = 0;

    while (i < METRICS_BUCKETS && seconds > bucket_bounds[i])
        i++;
    h->counts[i]++;
    h->total++;
    h->sum += seconds;
}

enum metrics_route
metrics_route_of(const char *path, int admin)
{
    if (!admin && strcmp(path, "/call_events") == 0)
        return ROUTE_CALL_EVENTS;
    if (!admin && strcmp(path, "/inbound_calls") == 0)
        return ROUTE_INBOUND_CALLS;
    if (strcmp(path, "/healthz") == 0)
        return ROUTE_HEALTHZ;
    if (admin && strcmp(path, "/readyz") == 0)
        return ROUTE_READYZ;
    if (admin && strcmp(path, "/metrics") == 0)
        return ROUTE_METRICS;
    if (admin && strcmp(path, "/calls") == 0)
        return ROUTE_CALLS;
    if (admin && strncmp(path, "/calls/", 7) == 0)
        return ROUTE_CALL_LOOKUP;
    return ROUTE_OTHER;
}

void
metrics_response(enum metrics_route route, int code)
{
    if (code < 100 || code > 599)
        code = 599;
    metrics.responses[route][code]++;
}

static void
header(struct evbuffer *out, const char *name, const char *type,
       const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
                        name, type);
}

static void
counter(struct evbuffer *out, const char *name, const char *help,
        uint64_t value)
{
    header(out, name, "counter", help);
    evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, value);
}

static void
gauge(struct evbuffer *out, const char *name, const char *help, double value)
{
    header(out, name, "gauge", help);
    evbuffer_add_printf(out, "%s %.17g\n", name, value);
}

static void
histogram(struct evbuffer *out, const char *name, const char *help,
          const struct histogram *h)
{
    uint64_t cumulative = 0;

    header(out, name, "histogram", help);
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += h->counts[i];
        evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
                            bucket_bounds[i], cumulative);
    }
    cumulative += h->counts[METRICS_BUCKETS];
    evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name,
                        cumulative);
    evbuffer_add_printf(out, "%s_sum %.17g\n%s_count %" PRIu64 "\n", name,
                        h->sum, name, h->total);
}

/* Resident memory in bytes, from /proc/self/statm; 0 when unknown. */
static uint64_t
resident_bytes(void)
{
    unsigned long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    int n;

    if (f == NULL)
        return 0;
    n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (n != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

void
metrics_render(const struct app *app, struct evbuffer *out)
{
    const struct store_stats *ss = app->store ? store_get_stats(app->store)
                                              : NULL;
    const struct ingest_stats *is = app->ingest ? ingest_get_stats(app->ingest)
                                                : NULL;
    const struct spool_stats *sp = app->spool ? spool_get_stats(app->spool)
                                              : NULL;

    header(out, "callhook_http_responses_total", "counter",
           "HTTP responses sent, by route and status code.");
    for (int r = 0; r < ROUTE_COUNT; r++) {
        for (int code = 100; code < 600; code++) {
            if (metrics.responses[r][code] == 0)
                continue;
            evbuffer_add_printf(out,
                                "callhook_http_responses_total{route=\"%s\","
                                "code=\"%d\"} %" PRIu64 "\n",
                                route_names[r], code,
                                metrics.responses[r][code]);
        }
    }

    header(out, "callhook_events_total", "counter",
           "Webhook events by outcome: applied, duplicate (already "
           "stored), spooled (on disk, replayed later), rejected (bad "
           "input), unavailable (503), failed (Redis error).");
    evbuffer_add_printf(
        out,
        "callhook_events_total{outcome=\"applied\"} %" PRIu64 "\n"
        "callhook_events_total{outcome=\"duplicate\"} %" PRIu64 "\n"
        "callhook_events_total{outcome=\"spooled\"} %" PRIu64 "\n"
        "callhook_events_total{outcome=\"rejected\"} %" PRIu64 "\n"
        "callhook_events_total{outcome=\"unavailable\"} %" PRIu64 "\n"
        "callhook_events_total{outcome=\"failed\"} %" PRIu64 "\n",
        app->counters.events_applied, app->counters.events_duplicate,
        app->counters.events_spooled, app->counters.events_rejected,
        app->counters.events_unavailable, app->counters.events_failed);
    counter(out, "callhook_events_unranked_total",
            "Events taken in whose status has no rank (record, input, "
            "transfer, human, machine, none or unknown): they never change "
            "a record's status.",
            app->counters.events_unranked);
    header(out, "callhook_events_rejected_total", "counter",
           "Webhook requests rejected for bad input, by reason.");
    {
        static const struct {
            int code;
            const char *reason;
        } reasons[] = {
            {400, "invalid_input"},     {405, "method_not_allowed"},
            {413, "body_too_large"},    {414, "target_too_long"},
            {415, "unsupported_type"},  {431, "too_many_headers"},
        };

        for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
            evbuffer_add_printf(out,
                                "callhook_events_rejected_total{reason=\"%s\"}"
                                " %" PRIu64 "\n",
                                reasons[i].reason,
                                app->counters
                                    .rejected_by_code[reasons[i].code]);
    }
    counter(out, "callhook_answer_webhooks_total",
            "Answer webhooks replied to with the NCCO.",
            app->counters.answers);
    header(out, "callhook_signature_failures_total", "counter",
           "Webhooks rejected with 401, by reason.");
    {
        static const char *const names[SIGNATURE_REASONS] = {
            "missing",  "malformed", "algorithm",    "signature",
            "expired",  "claims",    "payload_hash", "replayed",
        };

        for (int i = 0; i < SIGNATURE_REASONS; i++)
            evbuffer_add_printf(
                out,
                "callhook_signature_failures_total{reason=\"%s\"} %" PRIu64
                "\n",
                names[i], app->counters.signature_by_reason[i]);
    }

    histogram(out, "callhook_webhook_duration_seconds",
              "Time from a whole event webhook request to its reply.",
              &metrics.webhook_latency);
    histogram(out, "callhook_redis_command_duration_seconds",
              "Round trip of one apply-script call to Redis.",
              &metrics.redis_latency);

    gauge(out, "callhook_redis_connected",
          "1 while the Redis connection is ready, else 0.",
          ss ? (double)ss->connected : 0);
    counter(out, "callhook_redis_reconnects_total",
            "Times the Redis connection was rebuilt after being ready.",
            ss ? ss->reconnects : 0);
    counter(out, "callhook_redis_command_timeouts_total",
            "Times a Redis reply took longer than --redis-timeout.",
            ss ? ss->command_timeouts : 0);
    gauge(out, "callhook_redis_pending_commands",
          "Redis commands sent and not yet answered.",
          app->store ? (double)store_pending(app->store) : 0);

    counter(out, "callhook_acked_via_redis_total",
            "Events acknowledged after Redis stored them.",
            is ? is->via_redis : 0);
    counter(out, "callhook_acked_via_spool_total",
            "Events acknowledged after the spool made them durable.",
            is ? is->via_spool : 0);
    counter(out, "callhook_spool_replayed_total",
            "Spooled events applied to Redis by the replay.",
            is ? is->replayed : 0);
    counter(out, "callhook_spool_dropped_total",
            "Spool records that could not be replayed (damaged or "
            "rejected by Redis).",
            (is ? is->replay_dropped : 0) + (sp ? sp->corrupt_skipped : 0));
    gauge(out, "callhook_spool_bytes", "Size of the spool: files and the "
                                       "batch not yet written.",
          sp ? (double)sp->bytes : 0);
    gauge(out, "callhook_spool_files", "Spool files on disk.",
          sp ? (double)sp->files : 0);
    counter(out, "callhook_spool_records_total",
            "Records made durable in the spool since start.",
            sp ? sp->appended : 0);
    counter(out, "callhook_spool_fsyncs_total",
            "Batches written and fsynced to the spool.", sp ? sp->fsyncs : 0);

    if (app->dialer != NULL) {
        double rate = 0;
        const struct dialer_stats *ds = dialer_get_stats(app->dialer, &rate);

        header(out, "callhook_dial_jobs_total", "counter",
               "Dial jobs by outcome: placed, failed, unknown (the call "
               "may exist), invalid (never sent), duplicate (idempotency "
               "key seen before).");
        evbuffer_add_printf(
            out,
            "callhook_dial_jobs_total{outcome=\"placed\"} %" PRIu64 "\n"
            "callhook_dial_jobs_total{outcome=\"failed\"} %" PRIu64 "\n"
            "callhook_dial_jobs_total{outcome=\"unknown\"} %" PRIu64 "\n"
            "callhook_dial_jobs_total{outcome=\"invalid\"} %" PRIu64 "\n"
            "callhook_dial_jobs_total{outcome=\"duplicate\"} %" PRIu64 "\n",
            ds->placed, ds->failed, ds->unknown, ds->invalid,
            ds->duplicates);
        counter(out, "callhook_dial_retries_total",
                "Voice API requests sent again after a failure that could "
                "not have placed the call.",
                ds->retries);
        header(out, "callhook_dial_api_responses_total", "counter",
               "Voice API replies by HTTP status; code 0 means no reply.");
        for (int code = 0; code < 600; code++) {
            if (ds->api_responses[code] == 0)
                continue;
            evbuffer_add_printf(out,
                                "callhook_dial_api_responses_total{code=\"%d\"}"
                                " %" PRIu64 "\n",
                                code, ds->api_responses[code]);
        }
        gauge(out, "callhook_dial_rate_per_second",
              "Current pacing of calls, lowered after 429 replies.", rate);
    }
    gauge(out, "callhook_open_connections",
          "HTTP connections open on both listeners.",
          (double)(http_server_connections(app->public_srv) +
                   http_server_connections(app->admin_srv)));
    gauge(out, "process_resident_memory_bytes", "Resident memory size.",
          (double)resident_bytes());
    gauge(out, "process_start_time_seconds",
          "Start time of the process since the Unix epoch.",
          (double)metrics.start_time_s);
}
