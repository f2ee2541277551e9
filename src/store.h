/*
 * The Redis side of callhook: one hiredis async connection on the event
 * loop, the apply script, reconnection with backoff, and the counters an
 * operator needs.
 */
#ifndef CALLHOOK_STORE_H
#define CALLHOOK_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/async.h>

#include "callhook/call_event.h"

struct redis_target {
    char host[256];
    int port;
    char unix_path[108];
    char username[128];
    char password[256];
    int db;
};

/*
 * Parses redis://[[user]:password@]host[:port][/db] or
 * unix:///path/to/socket[?db=N]. Returns 0, or -1 with a message in err
 * that never contains the password.
 */
int redis_target_parse(const char *url, struct redis_target *target,
                       char *err, size_t errlen);

/* Writes the target for logs: scheme, host, port and db, no credentials. */
void redis_target_describe(const struct redis_target *target, char *buf,
                           size_t len);

/* Sorted set of call ids by update time; KEY:STATUS per status. */
#define STORE_INDEX_KEY "calls:updated"

struct store_options {
    unsigned ttl_seconds;  /* set on records at a final status; 0: never */
    unsigned history_max;  /* entries kept per call:{uuid}:events list */
    unsigned command_timeout_ms; /* a reply later than this drops the
                                    connection; 0 waits forever */
    const char *stream_key;  /* stream of applied events; "" for none */
    unsigned stream_maxlen;  /* approximate cap; 0 for no stream */
    /* Called each time the connection becomes ready; may be NULL. */
    void (*on_ready)(void *arg);
    void *on_ready_arg;
};

enum store_result {
    STORE_APPLIED,
    STORE_DUPLICATE,
    STORE_UNAVAILABLE, /* no reply (connection lost or timed out), or an
                          error that passes, such as OOM or LOADING */
    STORE_FAILED,      /* Redis rejected the event for good */
    STORE_REPLAYED,    /* its signed token's id was used before */
};

struct store_stats {
    uint64_t applied;
    uint64_t duplicates;
    uint64_t unavailable; /* requests turned away while Redis was down */
    uint64_t failed;
    uint64_t replayed_tokens;
    uint64_t reconnects;
    uint64_t command_timeouts;
    uint64_t connected; /* 1 while ready, else 0 */
};

/* Called once per store_apply() that returned 0, from the event loop. */
typedef void (*store_apply_cb)(void *arg, enum store_result result,
                               int status_changed);

struct store;

/* Returns NULL only when out of memory. The store does not own target. */
struct store *store_new(struct event_base *base,
                        const struct redis_target *target,
                        const struct store_options *options);

/* Starts connecting; the store keeps reconnecting until store_free(). */
void store_start(struct store *store);

/*
 * Frees the store. Requests still pending get their callbacks with
 * STORE_UNAVAILABLE before this returns.
 */
void store_free(struct store *store);

/* Nonzero when connected, authenticated and the script is loaded. */
int store_ready(const struct store *store);

/* Commands sent and not yet answered. */
size_t store_pending(const struct store *store);

const struct store_stats *store_get_stats(const struct store *store);

/*
 * Queues one event for the apply script. Everything needed is copied, so
 * ev may be freed as soon as this returns. Returns 0 when queued (cb will
 * be called exactly once), or -1 when Redis is not ready (cb is not
 * called, and the request counts as unavailable).
 */
int store_apply(struct store *store, const struct call_event *ev,
                store_apply_cb cb, void *arg);

/*
 * Sends any other command. The reply passed to cb is NULL when the
 * connection was lost; it is owned by hiredis and freed after cb returns.
 * Returns -1 when Redis is not ready.
 */
typedef void (*store_reply_cb)(void *arg, redisReply *reply);
int store_command(struct store *store, store_reply_cb cb, void *arg,
                  int argc, const char **argv, const size_t *argvlen);

/* The apply script's text and its SHA-1, for tools and benchmarks. */
extern const char apply_lua[];
extern const size_t apply_lua_len;

#endif
