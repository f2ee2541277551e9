/*
 * Getting an event safely stored: straight to Redis when it can take the
 * write, else into the local spool, and from the spool into Redis once it
 * is back. A caller gets one answer per event: stored (in Redis or on
 * disk) or not.
 */
#ifndef CALLHOOK_INGEST_H
#define CALLHOOK_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "callhook/call_event.h"
#include "spool.h"
#include "store.h"

enum ingest_result {
    INGEST_APPLIED,     /* Redis acknowledged the write */
    INGEST_DUPLICATE,   /* Redis had it already */
    INGEST_SPOOLED,     /* on disk in the spool, replayed later */
    INGEST_UNAVAILABLE, /* neither Redis nor the spool could take it */
    INGEST_FAILED,      /* Redis rejected it for good */
    INGEST_REPLAYED,    /* its signed token was used before */
};

struct ingest_stats {
    uint64_t via_redis;
    uint64_t via_spool;
    uint64_t replayed;
    uint64_t replay_dropped; /* unreadable or rejected spool records */
    uint64_t unavailable;
};

typedef void (*ingest_done_cb)(void *arg, enum ingest_result result);

struct ingest;

/* spool may be NULL: then an event Redis cannot take is refused. */
struct ingest *ingest_new(struct event_base *base, struct store *store,
                          struct spool *spool, size_t max_pending);
void ingest_free(struct ingest *ingest);

/*
 * Stores ev, whose raw form (data, len, as it arrived in the given
 * encoding) is what goes to the spool if needed. Copies what it keeps.
 * cb is called exactly once, possibly before this returns.
 */
void ingest_submit(struct ingest *ingest, const struct call_event *ev,
                   enum call_event_source source, const char *data,
                   size_t len, ingest_done_cb cb, void *arg);

/*
 * Detaches from the store before it is freed: replay stops and later
 * submissions go to the spool. Callbacks of commands still pending in the
 * store must still find the ingest alive, so free it after the store.
 */
void ingest_stop(struct ingest *ingest);

/* Starts replaying the spool if Redis is ready and there is a backlog. */
void ingest_kick(struct ingest *ingest);

/* Events submitted and not yet answered, replay excluded. */
size_t ingest_inflight(const struct ingest *ingest);

const struct ingest_stats *ingest_get_stats(const struct ingest *ingest);

#endif
