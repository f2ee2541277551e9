/*
 * The process's counters in one place, and their rendering in the
 * Prometheus text exposition format (version 0.0.4). Modules keep their
 * own statistics structs; this file owns what has no module of its own
 * (requests by route and code, latency histograms) and reads the rest
 * when rendering.
 */
#ifndef CALLHOOK_METRICS_H
#define CALLHOOK_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

enum metrics_route {
    ROUTE_CALL_EVENTS,
    ROUTE_INBOUND_CALLS,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_CALL_LOOKUP,
    ROUTE_CALLS,
    ROUTE_METRICS,
    ROUTE_OTHER,
    ROUTE_COUNT,
};

/* Upper bounds in seconds; the last bucket is +Inf. */
#define METRICS_BUCKETS 14

struct histogram {
    uint64_t counts[METRICS_BUCKETS + 1];
    uint64_t total;
    double sum;
};

void histogram_observe(struct histogram *h, double seconds);

struct metrics {
    uint64_t start_time_s; /* epoch seconds */
    uint64_t responses[ROUTE_COUNT][600]; /* by route and status code */
    struct histogram webhook_latency;     /* event webhooks, to the reply */
    struct histogram redis_latency;       /* apply script round trips */
    uint64_t signature_failures[8];       /* by enum in the signature code */
};

extern struct metrics metrics;

enum metrics_route metrics_route_of(const char *path, int admin);

/* Counts one reply. */
void metrics_response(enum metrics_route route, int code);

struct app;

/* Appends the whole exposition to out. */
void metrics_render(const struct app *app, struct evbuffer *out);

#endif
