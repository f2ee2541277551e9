/*
 * HTTP plumbing shared by the public and admin listeners: binding with
 * limits, a per-connection guard against slow clients, and replies.
 */
#ifndef CALLHOOK_HTTP_H
#define CALLHOOK_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

struct http_limits {
    size_t max_body;        /* bytes; larger bodies get 413 */
    size_t max_headers;     /* bytes of request line plus headers */
    unsigned request_timeout; /* seconds to send one whole request */
    unsigned idle_timeout;  /* seconds a connection may sit idle */
    unsigned max_connections; /* across this listener */
    unsigned max_header_count; /* request headers; more gets 431 */
    unsigned max_uri;          /* bytes of request target; more gets 414 */
    unsigned max_requests;     /* per connection, then it is closed */
    int reuse_port; /* SO_REUSEPORT: several processes share the port */
};

struct http_server;

/*
 * Binds a listener on "host:port" ("[v6]:port" for IPv6; port 0 picks a
 * free one). The generic callback receives every request. Returns NULL
 * and writes a message into err on failure.
 */
struct http_server *http_server_new(struct event_base *base,
                                    const char *address,
                                    const struct http_limits *limits,
                                    void (*cb)(struct evhttp_request *,
                                               void *),
                                    void *arg, char *err, size_t errlen);

/* The bound address, with the real port when 0 was asked for; "off" for
 * NULL. The functions below accept NULL too and do nothing. */
const char *http_server_address(const struct http_server *srv);

/* Stops accepting new connections; open ones are served to the end. */
void http_server_stop_accepting(struct http_server *srv);

/* Open connections right now. */
unsigned http_server_connections(const struct http_server *srv);

/* Frees the listener and every connection it still has. */
void http_server_free(struct http_server *srv);

/*
 * Applies the per-request limits evhttp lacks. Returns 0, or the HTTP
 * status to reject the request with and a message in *message. Also asks
 * for the connection to close after this reply once it has carried
 * max_requests requests.
 */
int http_request_begin(struct evhttp_request *req, const char **message);

/* Sends a reply with a JSON body and Content-Type: application/json. */
void http_reply_json(struct evhttp_request *req, int code, const char *json,
                     size_t len);

/* Sends {"error": message} with the given status code. */
void http_reply_error(struct evhttp_request *req, int code,
                      const char *message);

/* Returns the value of Content-Type without parameters, lowercased. */
void http_media_type(struct evhttp_request *req, char *buf, size_t len);

const char *http_method_name(enum evhttp_cmd_type type);

#endif
