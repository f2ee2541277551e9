#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>

#include "log.h"

struct conn_guard;

/*
 * Open-addressing map from evhttp connection to its guard, so a request
 * handler can find its connection's state. Sized to stay under half full.
 */
struct guard_map {
    const void **keys;
    struct conn_guard **values;
    size_t cap, count;
};

/* One map for every listener: the process has one loop and one thread. */
static struct guard_map guards;

struct http_server {
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
    struct http_limits limits;
    unsigned connections;
    int accept_paused;
    int stopped;
    char address[96];
};

/*
 * Every connection gets a guard. evhttp's own timeout restarts on every
 * read, so a client sending one byte at a time could hold a connection
 * for as long as it likes; the guard instead gives each request
 * request_timeout seconds from its first byte to its last. It watches the
 * connection's input and output buffers: input arms the deadline, the
 * start of a response disarms it. The guard also counts connections, to
 * stop accepting at max_connections.
 */
struct conn_guard {
    struct http_server *srv;
    struct bufferevent *bev;
    const void *evcon;
    unsigned requests;
    struct event *attach;
    struct event *deadline;
    int armed;
    int firing; /* inside deadline_cb: free later, not from under it */
    int closed;
    int headers_seen;   /* this request's header block was inspected */
    int reject_expect;  /* answer 413 to Expect: 100-continue at once */
};

static size_t
map_slot(const struct guard_map *map, const void *key)
{
    uintptr_t h = (uintptr_t)key;

    h ^= h >> 17;
    h *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 7) & (map->cap - 1);
}

static int
map_put(struct guard_map *map, const void *key, struct conn_guard *value)
{
    size_t i;

    if ((map->count + 1) * 2 > map->cap) {
        struct guard_map bigger;

        bigger.cap = map->cap ? map->cap * 2 : 64;
        bigger.count = 0;
        bigger.keys = calloc(bigger.cap, sizeof(*bigger.keys));
        bigger.values = calloc(bigger.cap, sizeof(*bigger.values));
        if (bigger.keys == NULL || bigger.values == NULL) {
            free(bigger.keys);
            free(bigger.values);
            return -1;
        }
        for (size_t k = 0; k < map->cap; k++) {
            if (map->keys[k] != NULL)
                map_put(&bigger, map->keys[k], map->values[k]);
        }
        free(map->keys);
        free(map->values);
        *map = bigger;
    }
    for (i = map_slot(map, key); map->keys[i] != NULL;
         i = (i + 1) & (map->cap - 1))
        ;
    map->keys[i] = key;
    map->values[i] = value;
    map->count++;
    return 0;
}

static struct conn_guard *
map_get(const struct guard_map *map, const void *key)
{
    if (map->cap == 0)
        return NULL;
    for (size_t i = map_slot(map, key); map->keys[i] != NULL;
         i = (i + 1) & (map->cap - 1)) {
        if (map->keys[i] == key)
            return map->values[i];
    }
    return NULL;
}

/* Removes key, shifting later entries of its probe run back into place. */
static void
map_remove(struct guard_map *map, const void *key)
{
    size_t i, j;

    if (map->cap == 0)
        return;
    for (i = map_slot(map, key); map->keys[i] != key;
         i = (i + 1) & (map->cap - 1)) {
        if (map->keys[i] == NULL)
            return;
    }
    map->keys[i] = NULL;
    map->count--;
    for (j = (i + 1) & (map->cap - 1); map->keys[j] != NULL;
         j = (j + 1) & (map->cap - 1)) {
        size_t home = map_slot(map, map->keys[j]);

        /* Move the entry back to the hole unless its home lies
         * cyclically between the hole and its current slot. */
        if ((j > i && (home <= i || home > j)) ||
            (j < i && (home <= i && home > j))) {
            map->keys[i] = map->keys[j];
            map->values[i] = map->values[j];
            map->keys[j] = NULL;
            i = j;
        }
    }
}

static void
set_accepting(struct http_server *srv, int on)
{
    struct evconnlistener *listener;

    if (srv->socket == NULL || srv->stopped)
        return;
    listener = evhttp_bound_socket_get_listener(srv->socket);
    if (on && srv->accept_paused) {
        evconnlistener_enable(listener);
        srv->accept_paused = 0;
    } else if (!on && !srv->accept_paused) {
        evconnlistener_disable(listener);
        srv->accept_paused = 1;
    }
}

static void
guard_destroy(struct conn_guard *guard)
{
    event_free(guard->deadline);
    event_free(guard->attach);
    free(guard);
}

static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct conn_guard *guard = arg;
    struct http_server *srv = guard->srv;

    srv->connections--;
    map_remove(&guards, guard->evcon);
    if (srv->connections < srv->limits.max_connections)
        set_accepting(srv, 1);
    if (guard->firing)
        guard->closed = 1;
    else
        guard_destroy(guard);
}

/*
 * libevent 2.1, with the lingering close that keeps a 413 from becoming a
 * connection reset, reads a too-large body in full before answering. A
 * client that sent "Expect: 100-continue" is waiting to be told whether
 * to send that body at all, so it would stall. Such a request is answered
 * here instead: the 413 goes straight to the socket, whose output is empty
 * while a request is being read, and the connection is closed.
 */
static void
reject_expect(struct conn_guard *guard)
{
    static const char response[] =
        "HTTP/1.1 413 Request Entity Too Large\r\n"
        "Content-Type: application/json\r\n"
        "Connection: close\r\n"
        "Content-Length: 47\r\n\r\n"
        "{\"error\":\"request body larger than --max-body\"}";
    evutil_socket_t fd = bufferevent_getfd(guard->bev);

    if (fd >= 0 && send(fd, response, sizeof(response) - 1, MSG_NOSIGNAL) < 0)
        log_debug("cannot send 413 for Expect: 100-continue: %s",
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    guard->firing = 1;
    bufferevent_trigger_event(guard->bev,
                              BEV_EVENT_READING | BEV_EVENT_ERROR, 0);
    guard->firing = 0;
}

/* Looks for "name: value" in a header block; returns value or NULL. */
static const char *
header_value(const char *block, const char *name, size_t *len)
{
    size_t nlen = strlen(name);

    for (const char *line = block; *line != '\0';) {
        const char *end = strstr(line, "\r\n");

        if (end == NULL)
            break;
        if ((size_t)(end - line) > nlen && line[nlen] == ':' &&
            strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;

            while (*v == ' ' || *v == '\t')
                v++;
            *len = (size_t)(end - v);
            return v;
        }
        line = end + 2;
    }
    return NULL;
}

/* Inspects a request's header block once it is complete in the buffer. */
static void
inspect_headers(struct conn_guard *guard, struct evbuffer *buf)
{
    struct evbuffer_ptr end = evbuffer_search(buf, "\r\n\r\n", 4, NULL);
    char block[4096];
    const char *v;
    size_t len, n;

    if (end.pos < 0) {
        /* Not complete yet; give up past what a header block can be. */
        if (evbuffer_get_length(buf) > guard->srv->limits.max_headers)
            guard->headers_seen = 1;
        return;
    }
    guard->headers_seen = 1;
    n = (size_t)end.pos + 2 < sizeof(block) ? (size_t)end.pos + 2
                                            : sizeof(block) - 1;
    evbuffer_copyout(buf, block, n);
    block[n] = '\0';

    v = header_value(block, "Expect", &len);
    if (v == NULL || len != 12 || strncasecmp(v, "100-continue", 12) != 0)
        return;
    v = header_value(block, "Content-Length", &len);
    if (v != NULL && strtoull(v, NULL, 10) > guard->srv->limits.max_body) {
        struct timeval now = {0, 0};

        /* Not from here, inside the bufferevent's read: from the loop. */
        guard->reject_expect = 1;
        evtimer_add(guard->deadline, &now);
        guard->armed = 1;
    }
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn_guard *guard = arg;

    guard->armed = 0;
    if (guard->reject_expect) {
        reject_expect(guard);
        if (guard->closed)
            guard_destroy(guard);
        return;
    }
    /* evhttp stops reading while a whole request is with its handler, so
     * reading still enabled means the request has not arrived in full. */
    if (!(bufferevent_get_enabled(guard->bev) & EV_READ))
        return;
    log_debug("dropping a connection that did not send a whole request "
              "within %u s",
              guard->srv->limits.request_timeout);
    guard->firing = 1;
    /* evhttp treats this like its own read timeout and frees the
     * connection, which runs conn_closed() before this returns. */
    bufferevent_trigger_event(guard->bev,
                              BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
    guard->firing = 0;
    if (guard->closed)
        guard_destroy(guard);
}

static void
input_added(struct evbuffer *buf, const struct evbuffer_cb_info *info,
            void *arg)
{
    struct conn_guard *guard = arg;

    if (info->n_added > 0 && !guard->armed) {
        struct timeval tv = {guard->srv->limits.request_timeout, 0};

        evtimer_add(guard->deadline, &tv);
        guard->armed = 1;
    }
    if (info->n_added > 0 && !guard->headers_seen)
        inspect_headers(guard, buf);
}

static void
output_added(struct evbuffer *buf, const struct evbuffer_cb_info *info,
             void *arg)
{
    struct conn_guard *guard = arg;

    if (info->n_added > 0) {
        /* A response has started: the next bytes in are a new request. */
        guard->headers_seen = 0;
        if (guard->armed && !guard->reject_expect) {
            evtimer_del(guard->deadline);
            guard->armed = 0;
        }
    }
}

/*
 * Runs right after evhttp has finished setting up the connection, in the
 * same loop iteration, so no socket event can free it first. evhttp
 * passes the connection as the bufferevent's callback argument.
 */
static void
attach_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn_guard *guard = arg;
    void *evcon = NULL;

    bufferevent_getcb(guard->bev, NULL, NULL, NULL, &evcon);
    guard->evcon = evcon;
    /* A new connection must send its first request within the request
     * timeout too; otherwise silent connections could hold every slot
     * until the idle timeout. */
    if (!guard->armed) {
        struct timeval tv = {guard->srv->limits.request_timeout, 0};

        evtimer_add(guard->deadline, &tv);
        guard->armed = 1;
    }
    if (map_put(&guards, evcon, guard) != 0)
        guard->evcon = NULL; /* out of memory: limits unchecked */
    evhttp_connection_set_closecb(evcon, conn_closed, guard);
}

static struct bufferevent *
bev_cb(struct event_base *base, void *arg)
{
    struct http_server *srv = arg;
    struct conn_guard *guard = calloc(1, sizeof(*guard));
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);

    if (guard == NULL || bev == NULL)
        goto fail;
    guard->srv = srv;
    guard->bev = bev;
    guard->deadline = evtimer_new(base, deadline_cb, guard);
    guard->attach = event_new(base, -1, 0, attach_cb, guard);
    if (guard->deadline == NULL || guard->attach == NULL ||
        evbuffer_add_cb(bufferevent_get_input(bev), input_added, guard) ==
            NULL ||
        evbuffer_add_cb(bufferevent_get_output(bev), output_added, guard) ==
            NULL)
        goto fail;
    /* NOTE: if evhttp fails to set the connection up after this returns
     * (out of memory), it frees bev before attach_cb runs. */
    event_active(guard->attach, EV_TIMEOUT, 1);

    srv->connections++;
    if (srv->connections >= srv->limits.max_connections)
        set_accepting(srv, 0);
    return bev;

fail:
    /* Returning NULL makes evhttp build a plain bufferevent of its own;
     * that connection then runs without the guard. */
    if (bev != NULL)
        bufferevent_free(bev);
    if (guard != NULL) {
        if (guard->deadline != NULL)
            event_free(guard->deadline);
        if (guard->attach != NULL)
            event_free(guard->attach);
        free(guard);
    }
    return NULL;
}

static int
split_address(const char *address, char *host, size_t hostlen, int *port)
{
    const char *colon;
    char *end;
    long p;

    if (address[0] == '[') {
        const char *close = strchr(address, ']');

        if (close == NULL || close[1] != ':' ||
            (size_t)(close - address - 1) >= hostlen)
            return -1;
        memcpy(host, address + 1, (size_t)(close - address - 1));
        host[close - address - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(address, ':');
        if (colon == NULL || colon == address ||
            (size_t)(colon - address) >= hostlen)
            return -1;
        memcpy(host, address, (size_t)(colon - address));
        host[colon - address] = '\0';
        if (strchr(host, ':') != NULL)
            return -1; /* IPv6 needs brackets */
    }
    p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

/* Binds with SO_REUSEPORT, which evhttp's own bind does not set. */
static struct evhttp_bound_socket *
bind_reuse_port(struct evhttp *http, struct event_base *base,
                const char *host, int port)
{
    struct evutil_addrinfo hints, *ai = NULL;
    struct evconnlistener *listener;
    struct evhttp_bound_socket *bound;
    char service[8];

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICHOST;
    snprintf(service, sizeof(service), "%d", port);
    if (evutil_getaddrinfo(host, service, &hints, &ai) != 0 || ai == NULL)
        return NULL;
    listener = evconnlistener_new_bind(
        base, NULL, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE |
            LEV_OPT_CLOSE_ON_EXEC,
        -1, ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    if (listener == NULL)
        return NULL;
    bound = evhttp_bind_listener(http, listener);
    if (bound == NULL)
        evconnlistener_free(listener);
    return bound;
}

struct http_server *
http_server_new(struct event_base *base, const char *address,
                const struct http_limits *limits,
                void (*cb)(struct evhttp_request *, void *), void *arg,
                char *err, size_t errlen)
{
    struct http_server *srv;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char host[64], numeric[64];
    int port;
    struct timeval idle;

    if (split_address(address, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen,
                 "invalid listen address '%s': expected host:port, with "
                 "[brackets] around an IPv6 host",
                 address);
        return NULL;
    }

    srv = calloc(1, sizeof(*srv));
    if (srv == NULL || (srv->http = evhttp_new(base)) == NULL) {
        free(srv);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->limits = *limits;

    evhttp_set_gencb(srv->http, cb, arg);
    evhttp_set_bevcb(srv->http, bev_cb, srv);
    evhttp_set_max_body_size(srv->http, (ev_ssize_t)limits->max_body);
    evhttp_set_max_headers_size(srv->http, (ev_ssize_t)limits->max_headers);
    /* Read the rest of an oversized body before closing, so the client
     * sees the 413 instead of a connection reset.
     * NOTE: libevent 2.1 answers malformed requests itself (400, 501, 417,
     * and this 413), with HTML bodies that the metrics do not count. */
    evhttp_set_flags(srv->http, EVHTTP_SERVER_LINGERING_CLOSE);
    idle.tv_sec = limits->idle_timeout;
    idle.tv_usec = 0;
    evhttp_set_timeout_tv(srv->http, &idle);
    /* Every method reaches the callback, which answers 405 itself with an
     * Allow header; evhttp would answer 501 for the ones not listed. */
    evhttp_set_allowed_methods(
        srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                       EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                       EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);

    if (limits->reuse_port)
        srv->socket = bind_reuse_port(srv->http, base, host, port);
    else
        srv->socket = evhttp_bind_socket_with_handle(srv->http, host,
                                                     (ev_uint16_t)port);
    if (srv->socket == NULL) {
        snprintf(err, errlen, "cannot listen on %s: %s", address,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        evhttp_free(srv->http);
        free(srv);
        return NULL;
    }

    getsockname(evhttp_bound_socket_get_fd(srv->socket),
                (struct sockaddr *)&ss, &sslen);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, numeric, sizeof(numeric));
        snprintf(srv->address, sizeof(srv->address), "[%s]:%d", numeric,
                 ntohs(sin6->sin6_port));
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

        inet_ntop(AF_INET, &sin->sin_addr, numeric, sizeof(numeric));
        snprintf(srv->address, sizeof(srv->address), "%s:%d", numeric,
                 ntohs(sin->sin_port));
    }
    return srv;
}

const char *
http_server_address(const struct http_server *srv)
{
    return srv ? srv->address : "off";
}

void
http_server_stop_accepting(struct http_server *srv)
{
    if (srv == NULL)
        return;
    if (srv->socket != NULL) {
        evhttp_del_accept_socket(srv->http, srv->socket);
        srv->socket = NULL;
    }
    srv->stopped = 1;
}

unsigned
http_server_connections(const struct http_server *srv)
{
    return srv ? srv->connections : 0;
}

void
http_server_free(struct http_server *srv)
{
    if (srv == NULL)
        return;
    srv->stopped = 1;
    evhttp_free(srv->http);
    free(srv);
    if (guards.count == 0) {
        free(guards.keys);
        free(guards.values);
        memset(&guards, 0, sizeof(guards));
    }
}

/*
 * Rejects the request framings that two HTTP parsers may read differently
 * (the root of request smuggling): several Content-Length headers, one
 * that is not plain digits, and any Transfer-Encoding but "chunked".
 */
static int
check_framing(const struct evkeyval *kv, unsigned *lengths,
              const char **message)
{
    if (strcasecmp(kv->key, "Content-Length") == 0) {
        const char *v = kv->value;

        if (++*lengths > 1) {
            *message = "more than one Content-Length header";
            return -1;
        }
        if (*v == '\0' || strspn(v, "0123456789") != strlen(v)) {
            *message = "Content-Length is not a plain decimal number";
            return -1;
        }
    } else if (strcasecmp(kv->key, "Transfer-Encoding") == 0 &&
               strcasecmp(kv->value, "chunked") != 0) {
        *message = "Transfer-Encoding other than chunked";
        return -1;
    }
    return 0;
}

int
http_request_begin(struct evhttp_request *req, const char **message)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    struct evkeyval *kv;
    struct conn_guard *guard;
    struct http_server *srv;
    unsigned count = 0, lengths = 0;

    guard = evcon ? map_get(&guards, evcon) : NULL;
    if (guard == NULL)
        return 0;
    srv = guard->srv;

    guard->requests++;
    if (srv->limits.max_requests > 0 &&
        guard->requests >= srv->limits.max_requests)
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Connection", "close");

    if (strlen(evhttp_request_get_uri(req)) > srv->limits.max_uri) {
        *message = "request target too long";
        return 414;
    }
    TAILQ_FOREACH(kv, headers, next)
    {
        if (++count > srv->limits.max_header_count) {
            *message = "too many request headers";
            return 431;
        }
        if (check_framing(kv, &lengths, message) != 0) {
            /* evhttp framed the body one way; a proxy in front may have
             * framed it another. Nothing more on this connection can be
             * trusted, so it closes after the error. */
            evhttp_add_header(evhttp_request_get_output_headers(req),
                              "Connection", "close");
            return 400;
        }
    }
    return 0;
}

void
http_reply_json(struct evhttp_request *req, int code, const char *json,
                size_t len)
{
    struct evbuffer *body = evbuffer_new();
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);

    evhttp_add_header(headers, "Content-Type", "application/json");
    if (body != NULL)
        evbuffer_add(body, json, len);
    evhttp_send_reply(req, code, NULL, body);
    if (body != NULL)
        evbuffer_free(body);
}

void
http_reply_error(struct evhttp_request *req, int code, const char *message)
{
    json_t *obj = json_pack("{s:s}", "error", message);
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

    if (text != NULL)
        http_reply_json(req, code, text, strlen(text));
    else
        http_reply_json(req, code, "{\"error\":\"internal error\"}", 26);
    free(text);
    json_decref(obj);
}

void
http_media_type(struct evhttp_request *req, char *buf, size_t len)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req),
                                        "Content-Type");
    size_t n = 0;

    if (len == 0)
        return;
    buf[0] = '\0';
    if (ct == NULL)
        return;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    while (*ct != '\0' && *ct != ';' && *ct != ' ' && *ct != '\t' &&
           n + 1 < len)
        buf[n++] = (char)tolower((unsigned char)*ct++);
    buf[n] = '\0';
}

const char *
http_method_name(enum evhttp_cmd_type type)
{
    switch (type) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "OTHER";
}
