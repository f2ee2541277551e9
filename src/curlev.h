/*
 * libcurl's multi interface on the libevent loop. The sockets and the
 * timeout that curl requests become libevent events, and
 * curl_multi_socket_action() runs only from those events, so no transfer
 * blocks the loop. One multi handle keeps its connection cache, so
 * requests to the same host reuse connections.
 */
#ifndef CALLHOOK_CURLEV_H
#define CALLHOOK_CURLEV_H

#include <stddef.h>

#include <curl/curl.h>
#include <event2/event.h>

/*
 * Called once per transfer when it ends, from the loop and never from
 * inside curlev_add(). easy is still valid for curl_easy_getinfo(); curlev
 * cleans it up after the callback returns. The callback may start new
 * transfers but must not free the curlev.
 */
typedef void (*curlev_done_cb)(void *arg, CURL *easy, CURLcode result);

struct curlev;

/*
 * Returns NULL when out of memory or when libcurl cannot be initialised.
 * max_host_connections caps the connections open to one host at once; 0
 * leaves it unlimited.
 */
struct curlev *curlev_new(struct event_base *base, long max_host_connections);

/*
 * Aborts every transfer still running, without calling its callback, and
 * frees everything. Must not be called from a curlev_done_cb.
 */
void curlev_free(struct curlev *cev);

/*
 * Starts a transfer and takes ownership of easy, whose CURLOPT_PRIVATE
 * curlev uses. Returns 0, or -1 when curl refused the handle; then easy
 * stays the caller's and cb is not called.
 */
int curlev_add(struct curlev *cev, CURL *easy, curlev_done_cb cb, void *arg);

/* Transfers added and not yet reported. */
size_t curlev_running(const struct curlev *cev);

/*
 * Writes how the linked libcurl resolves host names: "threaded",
 * "c-ares VERSION", or "synchronous", which blocks the loop for as long
 * as a DNS answer takes. Returns buf.
 */
const char *curlev_resolver_name(char *buf, size_t len);

/* Nonzero when name resolution runs off the loop (threaded or c-ares). */
int curlev_resolver_is_async(void);

#endif
