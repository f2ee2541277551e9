#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wcast-qual"
#include <hiredis/adapters/libevent.h>
#pragma GCC diagnostic pop

#include "log.h"
#include "metrics.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define INDEX_TRIM_MS 60000
#define APPLY_FIXED_ARGS 21 /* EVALSHA sha 5 + 5 keys + 13 values */
#define APPLY_MAX_ARGS (APPLY_FIXED_ARGS + 2 * (CALL_EVENT_MAX_FIELDS + 2))

enum store_state {
    STATE_DISCONNECTED,
    STATE_CONNECTING,
    STATE_HANDSHAKE,
    STATE_READY,
};

struct store {
    struct event_base *base;
    const struct redis_target *target;
    struct store_options options;
    char description[400];

    redisAsyncContext *ac;
    enum store_state state;
    struct event *retry_timer;
    unsigned backoff_ms;
    char script_sha[41];

    /* Outage bookkeeping, so one outage is one warning and one recovery. */
    int outage;
    uint64_t outage_start_ms;
    uint64_t outage_turned_away;
    int ever_ready;

    size_t pending;
    struct store_stats stats;
    struct log_ratelimit error_rl;

    /*
     * Send times of the commands awaiting a reply, oldest first. Redis
     * answers one connection's commands in order, so the oldest reply due
     * is always at the head; a ring buffer is all the bookkeeping needed.
     */
    uint64_t *sent_ms;
    size_t sent_head, sent_count, sent_cap;
    struct event *watchdog;
    uint64_t last_trim_ms;
    int dropping; /* store_drop() is closing the connection */
    int persistence_checked;
};

struct apply_request {
    struct store *store;
    store_apply_cb cb;
    void *arg;
    char *cmd; /* the formatted EVALSHA, kept to resend as EVAL */
    int cmd_len;
    int retried;
    uint64_t sent_us;
    char id[CALL_EVENT_ID_MAX + 1];
};

struct command_request {
    struct store *store;
    store_reply_cb cb;
    void *arg;
};

static void store_connect(struct store *store);

static int
track_send(struct store *store)
{
    if (store->sent_count == store->sent_cap) {
        size_t cap = store->sent_cap ? store->sent_cap * 2 : 1024;
        uint64_t *ring = malloc(cap * sizeof(*ring));

        if (ring == NULL)
            return -1;
        for (size_t i = 0; i < store->sent_count; i++)
            ring[i] = store->sent_ms[(store->sent_head + i) % store->sent_cap];
        free(store->sent_ms);
        store->sent_ms = ring;
        store->sent_head = 0;
        store->sent_cap = cap;
    }
    store->sent_ms[(store->sent_head + store->sent_count) % store->sent_cap] =
        clock_monotonic_ms();
    store->sent_count++;
    return 0;
}

/* Called for every reply that arrives (not for NULL replies). */
static void
track_reply(struct store *store)
{
    if (store->sent_count > 0) {
        store->sent_head = (store->sent_head + 1) % store->sent_cap;
        store->sent_count--;
    }
}

/* ---- URLs ------------------------------------------------------------ */

static int
parse_port(const char *s, size_t len, int *port)
{
    int v = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

static int
parse_db(const char *s, int *db)
{
    char *end;
    long v;

    if (*s == '\0')
        return 0;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < 0 || v > 1000000)
        return -1;
    *db = (int)v;
    return 0;
}

int
redis_target_parse(const char *url, struct redis_target *t, char *err,
                   size_t errlen)
{
    const char *rest, *at, *slash, *host_end, *colon;
    size_t host_len;

    memset(t, 0, sizeof(*t));
    t->port = 6379;

    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        const char *q = strchr(path, '?');
        size_t plen = q ? (size_t)(q - path) : strlen(path);

        if (plen == 0 || plen >= sizeof(t->unix_path) || path[0] != '/') {
            snprintf(err, errlen, "invalid --redis URL: unix:// needs an "
                                  "absolute socket path");
            return -1;
        }
        memcpy(t->unix_path, path, plen);
        if (q != NULL) {
            if (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, &t->db) != 0) {
                snprintf(err, errlen,
                         "invalid --redis URL: expected ?db=N after the path");
                return -1;
            }
        }
        return 0;
    }
    if (strncmp(url, "rediss://", 9) == 0) {
        snprintf(err, errlen, "invalid --redis URL: rediss:// (TLS) is not "
                              "supported; use redis:// or unix://");
        return -1;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "invalid --redis URL: expected redis://host:port/db "
                              "or unix:///path");
        return -1;
    }

    rest = url + 8;
    slash = strchr(rest, '/');
    at = memchr(rest, '@', slash ? (size_t)(slash - rest) : strlen(rest));
    if (at != NULL) {
        const char *cred_colon = memchr(rest, ':', (size_t)(at - rest));
        size_t ulen = cred_colon ? (size_t)(cred_colon - rest)
                                 : (size_t)(at - rest);
        const char *pass = cred_colon ? cred_colon + 1 : NULL;
        size_t plen = pass ? (size_t)(at - pass) : 0;

        if (ulen >= sizeof(t->username) || plen >= sizeof(t->password)) {
            snprintf(err, errlen, "invalid --redis URL: credentials too long");
            return -1;
        }
        if (pass == NULL) {
            /* redis://secret@host: a lone value is the password. */
            memcpy(t->password, rest, ulen);
        } else {
            memcpy(t->username, rest, ulen);
            memcpy(t->password, pass, plen);
        }
        rest = at + 1;
    }

    host_end = slash ? slash : rest + strlen(rest);
    if (*rest == '[') {
        const char *close = memchr(rest, ']', (size_t)(host_end - rest));

        if (close == NULL) {
            snprintf(err, errlen, "invalid --redis URL: unclosed '[' in host");
            return -1;
        }
        host_len = (size_t)(close - rest - 1);
        if (host_len == 0 || host_len >= sizeof(t->host)) {
            snprintf(err, errlen, "invalid --redis URL: bad host");
            return -1;
        }
        memcpy(t->host, rest + 1, host_len);
        colon = close + 1 < host_end && close[1] == ':' ? close + 1 : NULL;
        if (colon == NULL && close + 1 != host_end) {
            snprintf(err, errlen, "invalid --redis URL: bad host");
            return -1;
        }
    } else {
        colon = memchr(rest, ':', (size_t)(host_end - rest));
        host_len = colon ? (size_t)(colon - rest) : (size_t)(host_end - rest);
        if (host_len == 0 || host_len >= sizeof(t->host)) {
            snprintf(err, errlen, "invalid --redis URL: missing host");
            return -1;
        }
        memcpy(t->host, rest, host_len);
    }
    if (colon != NULL &&
        parse_port(colon + 1, (size_t)(host_end - colon - 1), &t->port)) {
        snprintf(err, errlen, "invalid --redis URL: port must be 1 to 65535");
        return -1;
    }
    if (slash != NULL && parse_db(slash + 1, &t->db) != 0) {
        snprintf(err, errlen, "invalid --redis URL: database must be a number");
        return -1;
    }
    return 0;
}

void
redis_target_describe(const struct redis_target *t, char *buf, size_t len)
{
    if (t->unix_path[0] != '\0')
        snprintf(buf, len, "unix://%s?db=%d%s", t->unix_path, t->db,
                 t->password[0] ? " (with password)" : "");
    else if (strchr(t->host, ':') != NULL)
        snprintf(buf, len, "redis://[%s]:%d/%d%s", t->host, t->port, t->db,
                 t->password[0] ? " (with password)" : "");
    else
        snprintf(buf, len, "redis://%s:%d/%d%s", t->host, t->port, t->db,
                 t->password[0] ? " (with password)" : "");
}

/* ---- connection ------------------------------------------------------ */

static unsigned
jitter(unsigned ms)
{
    /* +-20%, so many callhook processes do not reconnect in lockstep. */
    unsigned span = ms / 5;

    return span ? ms - span + (unsigned)(random() % (2 * span + 1)) : ms;
}

static void
note_failure(struct store *store, const char *what)
{
    if (!store->outage) {
        store->outage = 1;
        store->outage_start_ms = clock_monotonic_ms();
        store->outage_turned_away = 0;
        log_warn("redis unavailable at %s: %s; retrying with backoff",
                 store->description, what);
    } else {
        log_debug("redis still unavailable at %s: %s", store->description,
                  what);
    }
}

static void
schedule_retry(struct store *store)
{
    struct timeval tv;
    unsigned delay = jitter(store->backoff_ms);

    store->state = STATE_DISCONNECTED;
    tv.tv_sec = delay / 1000;
    tv.tv_usec = (delay % 1000) * 1000;
    evtimer_add(store->retry_timer, &tv);
    store->backoff_ms = store->backoff_ms * 2 > BACKOFF_MAX_MS
                            ? BACKOFF_MAX_MS
                            : store->backoff_ms * 2;
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
    store_connect(arg);
}

static void
become_ready(struct store *store)
{
    store->state = STATE_READY;
    store->backoff_ms = BACKOFF_MIN_MS;
    if (store->outage) {
        log_info("redis connected at %s after %.1f s unavailable; %" PRIu64
                 " events could not be sent to it meanwhile",
                 store->description,
                 (double)(clock_monotonic_ms() - store->outage_start_ms) /
                     1000.0,
                 store->outage_turned_away);
        store->outage = 0;
    } else {
        log_info("redis connected at %s", store->description);
    }
    store->stats.connected = 1;
    if (store->ever_ready)
        store->stats.reconnects++;
    store->ever_ready = 1;
    if (store->options.on_ready != NULL)
        store->options.on_ready(store->options.on_ready_arg);
}

static void
handshake_failed(struct store *store, const char *step, redisReply *reply)
{
    char what[300];

    snprintf(what, sizeof(what), "%s failed: %s", step,
             reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "no reply");
    note_failure(store, what);
    /* The disconnect callback schedules the next attempt. */
    if (store->ac != NULL)
        redisAsyncDisconnect(store->ac);
}

static void
persistence_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store *store = privdata;
    redisReply *reply = r;
    const char *aof = NULL, *save = NULL;

    if (reply == NULL)
        return;
    track_reply(store);
    /* CONFIG may be renamed or forbidden; then there is nothing to say. */
    if (reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *k = reply->element[i], *v = reply->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "appendonly") == 0)
            aof = v->str;
        else if (strcmp(k->str, "save") == 0)
            save = v->str;
    }
    if (aof != NULL && save != NULL && strcmp(aof, "no") == 0 &&
        save[0] == '\0')
        log_warn("redis at %s has neither AOF (appendonly) nor RDB "
                 "snapshots (save) enabled: a Redis restart loses every "
                 "call record",
                 store->description);
}

/* Warns once per process when Redis keeps nothing across a restart. */
static void
check_persistence(struct store *store)
{
    if (store->persistence_checked)
        return;
    store->persistence_checked = 1;
    /* Redis 7 takes several names in one CONFIG GET; older servers answer
     * with an error, which persistence_cb ignores. */
    if (redisAsyncCommand(store->ac, persistence_cb, store,
                          "CONFIG GET appendonly save") == REDIS_OK)
        track_send(store);
}

static void
script_load_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store *store = privdata;
    redisReply *reply = r;

    if (reply == NULL)
        return;
    track_reply(store);
    if (store->state != STATE_HANDSHAKE)
        return;
    if (reply->type != REDIS_REPLY_STRING ||
        strcmp(reply->str, store->script_sha) != 0) {
        handshake_failed(store, "SCRIPT LOAD", reply);
        return;
    }
    become_ready(store);
    check_persistence(store);
}

static void
send_script_load(struct store *store)
{
    const char *argv[] = {"SCRIPT", "LOAD", apply_lua};
    size_t lens[] = {6, 4, apply_lua_len};

    if (redisAsyncCommandArgv(store->ac, script_load_cb, store, 3, argv,
                              lens) == REDIS_OK)
        track_send(store);
}

static void
select_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store *store = privdata;
    redisReply *reply = r;

    if (reply == NULL)
        return;
    track_reply(store);
    if (store->state != STATE_HANDSHAKE)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        handshake_failed(store, "SELECT", reply);
        return;
    }
    send_script_load(store);
}

static void
send_select_or_load(struct store *store)
{
    if (store->target->db != 0) {
        char db[16];

        snprintf(db, sizeof(db), "%d", store->target->db);
        if (redisAsyncCommand(store->ac, select_cb, store, "SELECT %s",
                              db) == REDIS_OK)
            track_send(store);
    } else {
        send_script_load(store);
    }
}

static void
auth_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct store *store = privdata;
    redisReply *reply = r;

    if (reply == NULL)
        return;
    track_reply(store);
    if (store->state != STATE_HANDSHAKE)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* The reply text never contains the password. */
        handshake_failed(store, "AUTH", reply);
        return;
    }
    send_select_or_load(store);
}

static void
connect_cb(const redisAsyncContext *ac, int status)
{
    struct store *store = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback returns. */
        store->ac = NULL;
        note_failure(store, ac->errstr[0] ? ac->errstr : "connect failed");
        schedule_retry(store);
        return;
    }

    store->state = STATE_HANDSHAKE;
    if (store->target->password[0] != '\0') {
        int rc;

        if (store->target->username[0] != '\0')
            rc = redisAsyncCommand(store->ac, auth_cb, store, "AUTH %s %s",
                                   store->target->username,
                                   store->target->password);
        else
            rc = redisAsyncCommand(store->ac, auth_cb, store, "AUTH %s",
                                   store->target->password);
        if (rc == REDIS_OK)
            track_send(store);
    } else {
        send_select_or_load(store);
    }
}

static void
disconnect_cb(const redisAsyncContext *ac, int status)
{
    struct store *store = ac->data;

    store->ac = NULL;
    store->sent_count = 0;
    store->stats.connected = 0;
    if (store->dropping) {
        store->dropping = 0;
        note_failure(store, "no reply within the command timeout");
        schedule_retry(store);
        return;
    }
    if (store->state == STATE_DISCONNECTED && status == REDIS_OK)
        return; /* store_free() asked for it */
    note_failure(store, ac->errstr[0] ? ac->errstr : "connection closed");
    schedule_retry(store);
}

static void
trim_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    if (r != NULL)
        track_reply(privdata);
}

/*
 * Drops index entries of calls not updated for longer than the record
 * TTL, whose records have expired. Done here, once a minute, rather than
 * in the apply script, where it cost a quarter of each call.
 */
static void
trim_index(struct store *store)
{
    char key[64], horizon[32];
    int64_t cutoff = (int64_t)clock_now_ms() -
                     (int64_t)store->options.ttl_seconds * 1000;
    const char *status;

    snprintf(horizon, sizeof(horizon), "(%" PRId64, cutoff);
    for (size_t i = 0;; i++) {
        status = i == 0 ? "" : call_event_ranked_status(i - 1);
        if (status == NULL)
            break;
        snprintf(key, sizeof(key), "%s%s%s", STORE_INDEX_KEY,
                 status[0] ? ":" : "", status);
        if (redisAsyncCommand(store->ac, trim_reply_cb, store,
                              "ZREMRANGEBYSCORE %s -inf %s", key,
                              horizon) == REDIS_OK)
            track_send(store);
    }
}

/*
 * A Redis that stops answering (SIGSTOP, a long script, a network black
 * hole) keeps its TCP connection open, and hiredis 0.14 has no command
 * timeout. Every 100 ms this checks the oldest unanswered command; past
 * the timeout the connection is dropped, which answers every pending
 * command with a NULL reply so its request can take the spool path.
 */
static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    struct store *store = arg;
    uint64_t age;
    redisAsyncContext *ac = store->ac;

    if (store->state == STATE_READY && store->options.ttl_seconds > 0 &&
        clock_monotonic_ms() - store->last_trim_ms >= INDEX_TRIM_MS) {
        store->last_trim_ms = clock_monotonic_ms();
        trim_index(store);
    }
    if (ac == NULL || store->sent_count == 0 ||
        store->options.command_timeout_ms == 0)
        return;
    age = clock_monotonic_ms() - store->sent_ms[store->sent_head];
    if (age < store->options.command_timeout_ms)
        return;

    store->stats.command_timeouts++;
    log_warn("redis at %s sent no reply for %" PRIu64 " ms with %zu "
             "commands waiting; reconnecting",
             store->description, age, store->sent_count);
    store->dropping = 1;
    store->state = STATE_DISCONNECTED;
    redisAsyncFree(ac);
    if (store->ac == ac) {
        /* Never connected, so no disconnect callback ran. */
        store->ac = NULL;
        store->dropping = 0;
        note_failure(store, "no reply within the command timeout");
        schedule_retry(store);
    }
}

static void
store_connect(struct store *store)
{
    redisAsyncContext *ac;

    if (store->target->unix_path[0] != '\0')
        ac = redisAsyncConnectUnix(store->target->unix_path);
    else
        ac = redisAsyncConnect(store->target->host, store->target->port);
    if (ac == NULL) {
        note_failure(store, "out of memory");
        schedule_retry(store);
        return;
    }
    if (ac->err) {
        note_failure(store, ac->errstr);
        redisAsyncFree(ac);
        schedule_retry(store);
        return;
    }

    ac->data = store;
    store->ac = ac;
    store->state = STATE_CONNECTING;
    redisLibeventAttach(ac, store->base);
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
}

struct store *
store_new(struct event_base *base, const struct redis_target *target,
          const struct store_options *options)
{
    struct store *store = calloc(1, sizeof(*store));
    unsigned char md[SHA_DIGEST_LENGTH];

    if (store == NULL)
        return NULL;
    store->base = base;
    store->target = target;
    store->options = *options;
    store->backoff_ms = BACKOFF_MIN_MS;
    store->error_rl = (struct log_ratelimit)LOG_RATELIMIT_INIT(10000);
    redis_target_describe(target, store->description,
                          sizeof(store->description));
    store->retry_timer = evtimer_new(base, retry_cb, store);
    store->watchdog = event_new(base, -1, EV_PERSIST, watchdog_cb, store);
    if (store->retry_timer == NULL || store->watchdog == NULL) {
        if (store->retry_timer != NULL)
            event_free(store->retry_timer);
        if (store->watchdog != NULL)
            event_free(store->watchdog);
        free(store);
        return NULL;
    }

    SHA1((const unsigned char *)apply_lua, apply_lua_len, md);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(store->script_sha + 2 * i, 3, "%02x", md[i]);
    return store;
}

void
store_start(struct store *store)
{
    struct timeval tick = {0, 100000};

    event_add(store->watchdog, &tick);
    store_connect(store);
}

void
store_free(struct store *store)
{
    if (store == NULL)
        return;
    evtimer_del(store->retry_timer);
    event_del(store->watchdog);
    store->state = STATE_DISCONNECTED;
    if (store->ac != NULL) {
        redisAsyncContext *ac = store->ac;

        /* Runs every pending callback with a NULL reply, then frees. */
        store->ac = NULL;
        redisAsyncFree(ac);
    }
    event_free(store->retry_timer);
    event_free(store->watchdog);
    free(store->sent_ms);
    free(store);
}

int
store_ready(const struct store *store)
{
    return store->state == STATE_READY;
}

size_t
store_pending(const struct store *store)
{
    return store->pending;
}

const struct store_stats *
store_get_stats(const struct store *store)
{
    return &store->stats;
}

/* ---- commands -------------------------------------------------------- */

static void
turned_away(struct store *store)
{
    store->stats.unavailable++;
    if (store->outage)
        store->outage_turned_away++;
}

static void
finish_apply(struct apply_request *req, enum store_result result,
             int changed)
{
    struct store *store = req->store;

    store->pending--;
    if (result != STORE_UNAVAILABLE)
        histogram_observe(&metrics.redis_latency,
                          (clock_monotonic_us() - req->sent_us) / 1e6);
    req->cb(req->arg, result, changed);
    redisFreeCommand(req->cmd);
    free(req);
}

static int resend_as_eval(struct apply_request *req);

/*
 * Errors that say "not now" rather than "never": the same command can
 * succeed later, so the event may wait in the spool.
 */
static int
transient_error(const char *message)
{
    static const char *const prefixes[] = {
        "OOM",     "BUSY",        "LOADING",    "MASTERDOWN", "READONLY",
        "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF",
    };

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);

        if (strncmp(message, prefixes[i], n) == 0 &&
            (message[n] == ' ' || message[n] == '\0'))
            return 1;
    }
    return 0;
}

static void
apply_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct apply_request *req = privdata;
    struct store *store = req->store;
    redisReply *reply = r;
    uint64_t suppressed;

    if (reply == NULL) {
        store->stats.unavailable++;
        finish_apply(req, STORE_UNAVAILABLE, 0);
        return;
    }
    track_reply(store);
    if (reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0 && !req->retried) {
        /* The script cache was flushed under us: send the body once. */
        if (resend_as_eval(req) == 0)
            return;
    }
    if (reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer < 0) {
            store->stats.replayed_tokens++;
            finish_apply(req, STORE_REPLAYED, 0);
        } else if (reply->integer == 0) {
            store->stats.duplicates++;
            finish_apply(req, STORE_DUPLICATE, 0);
        } else {
            store->stats.applied++;
            finish_apply(req, STORE_APPLIED, reply->integer == 2);
        }
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR && transient_error(reply->str)) {
        store->stats.unavailable++;
        if (log_ratelimit_pass(&store->error_rl, &suppressed))
            log_warn("redis could not take the event now call=%s: %s (%" PRIu64
                     " similar errors not logged)",
                     req->id, reply->str, suppressed);
        finish_apply(req, STORE_UNAVAILABLE, 0);
        return;
    }
    store->stats.failed++;
    if (log_ratelimit_pass(&store->error_rl, &suppressed))
        log_error("redis rejected the event call=%s: %s (%" PRIu64
                  " similar errors not logged)",
                  req->id,
                  reply->type == REDIS_REPLY_ERROR ? reply->str
                                                   : "unexpected reply type",
                  suppressed);
    finish_apply(req, STORE_FAILED, 0);
}

static int
resend_as_eval(struct apply_request *req)
{
    struct store *store = req->store;
    const char *p = req->cmd;
    const char *end = req->cmd + req->cmd_len;
    const char *tail;
    char *eval;
    int header_len, n;
    size_t size;

    /* The command is "*N\r\n$7\r\nEVALSHA\r\n$40\r\n<sha>\r\n<rest>":
     * keep "*N\r\n" and <rest>, put EVAL and the script between. */
    tail = memchr(p, '\n', (size_t)(end - p));
    if (tail == NULL || store->ac == NULL)
        return -1;
    header_len = (int)(tail - p + 1);
    tail = p + header_len + strlen("$7\r\nEVALSHA\r\n$40\r\n") + 40 + 2;
    if (tail > end)
        return -1;

    size = (size_t)header_len + 64 + apply_lua_len + (size_t)(end - tail);
    eval = malloc(size);
    if (eval == NULL)
        return -1;
    memcpy(eval, p, (size_t)header_len);
    n = header_len;
    n += snprintf(eval + n, size - (size_t)n, "$4\r\nEVAL\r\n$%zu\r\n",
                  apply_lua_len);
    memcpy(eval + n, apply_lua, apply_lua_len);
    n += (int)apply_lua_len;
    memcpy(eval + n, "\r\n", 2);
    n += 2;
    memcpy(eval + n, tail, (size_t)(end - tail));
    n += (int)(end - tail);

    req->retried = 1;
    if (redisAsyncFormattedCommand(store->ac, apply_reply_cb, req, eval,
                                   (size_t)n) != REDIS_OK) {
        free(eval);
        return -1;
    }
    track_send(store);
    free(eval);
    return 0;
}

int
store_apply(struct store *store, const struct call_event *ev, store_apply_cb cb,
            void *arg)
{
    const char *argv[APPLY_MAX_ARGS];
    size_t lens[APPLY_MAX_ARGS];
    char keys[3][CALL_EVENT_ID_MAX + 40];
    char now[24], ttl[16], cap[16], maxlen[24];
    const char *prefix = ev->kind == CALL_EVENT_KIND_CALL ? "call" : "conversation";
    struct apply_request *req;
    int argc = 0;

    if (store->state != STATE_READY || store->ac == NULL) {
        turned_away(store);
        return -1;
    }

    snprintf(keys[0], sizeof(keys[0]), "%s:{%s}", prefix, ev->id);
    snprintf(keys[1], sizeof(keys[1]), "%s:{%s}:events", prefix, ev->id);
    snprintf(keys[2], sizeof(keys[2]), "%s:{%s}:versions", prefix, ev->id);
    snprintf(now, sizeof(now), "%" PRIu64,
             ev->received_ms ? ev->received_ms : clock_now_ms());
    snprintf(ttl, sizeof(ttl), "%u", store->options.ttl_seconds);
    snprintf(cap, sizeof(cap), "%u",
             store->options.history_max ? store->options.history_max : 1);

#define ARG(s, n) (argv[argc] = (s), lens[argc] = (n), argc++)
#define ARGS(s) ARG((s), strlen(s))
    snprintf(maxlen, sizeof(maxlen), "%u",
             store->options.stream_key[0] ? store->options.stream_maxlen : 0);
    ARGS("EVALSHA");
    ARG(store->script_sha, 40);
    ARGS("5");
    ARGS(keys[0]);
    ARGS(keys[1]);
    ARGS(keys[2]);
    ARGS(store->options.stream_key[0] ? store->options.stream_key
                                      : "callhook:events");
    ARGS(STORE_INDEX_KEY);
    ARGS(now);
    ARGS(ttl);
    ARGS(ev->kind == CALL_EVENT_KIND_CALL ? "final" : "always");
    ARGS(cap);
    ARGS(ev->digest);
    ARGS(ev->field_version);
    ARGS(ev->status ? ev->status : "");
    ARGS(ev->status ? ev->status_version : "");
    ARG(ev->history, ev->history_len);
    ARGS(ev->jti ? ev->jti : "");
    ARGS(maxlen);
    ARGS(ev->id);
    ARGS(ev->kind == CALL_EVENT_KIND_CALL ? "call" : "conversation");
    for (size_t i = 0; i < ev->nfields; i++) {
        ARGS(ev->fields[i].name);
        ARG(ev->fields[i].value, ev->fields[i].value_len);
    }
#undef ARGS
#undef ARG

    req = calloc(1, sizeof(*req));
    if (req == NULL)
        return -1;
    req->store = store;
    req->cb = cb;
    req->arg = arg;
    req->sent_us = clock_monotonic_us();
    snprintf(req->id, sizeof(req->id), "%s", ev->id);
    req->cmd_len = redisFormatCommandArgv(&req->cmd, argc, argv, lens);
    if (req->cmd_len < 0 ||
        redisAsyncFormattedCommand(store->ac, apply_reply_cb, req, req->cmd,
                                   (size_t)req->cmd_len) != REDIS_OK) {
        redisFreeCommand(req->cmd);
        free(req);
        turned_away(store);
        return -1;
    }
    track_send(store);
    store->pending++;
    return 0;
}

static void
command_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct command_request *req = privdata;

    if (reply != NULL)
        track_reply(req->store);
    req->store->pending--;
    req->cb(req->arg, reply);
    free(req);
}

int
store_command(struct store *store, store_reply_cb cb, void *arg, int argc,
              const char **argv, const size_t *argvlen)
{
    struct command_request *req;

    if (store->state != STATE_READY || store->ac == NULL)
        return -1;
    req = malloc(sizeof(*req));
    if (req == NULL)
        return -1;
    req->store = store;
    req->cb = cb;
    req->arg = arg;
    if (redisAsyncCommandArgv(store->ac, command_reply_cb, req, argc, argv,
                              argvlen) != REDIS_OK) {
        free(req);
        return -1;
    }
    track_send(store);
    store->pending++;
    return 0;
}
