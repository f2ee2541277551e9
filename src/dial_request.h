/*
 * One POST /v1/calls attempt: the curl easy handle that sends it, and the
 * verdict on how it ended. The verdict rests on one question: can the API
 * have placed the call? Only when it cannot is a retry safe.
 */
#ifndef CALLHOOK_DIAL_REQUEST_H
#define CALLHOOK_DIAL_REQUEST_H

#include <stdint.h>

#include <curl/curl.h>

#include "callhook/call_event.h"

enum dial_verdict {
    DIAL_PLACED,    /* 2xx: the call exists */
    DIAL_RETRY,     /* nothing sent, or 429 or 503: safe to send again */
    DIAL_AMBIGUOUS, /* sent, then no usable response: the call may exist */
    DIAL_FAILED,    /* the API rejected the request */
};

struct dial_result {
    enum dial_verdict verdict;
    long status;             /* HTTP status; 0 when none arrived */
    int throttled;           /* the API returned 429 */
    uint64_t retry_after_ms; /* from Retry-After; 0 when absent */
    char call_uuid[CALL_EVENT_ID_MAX + 1];         /* "" unless placed */
    char conversation_uuid[CALL_EVENT_ID_MAX + 1]; /* "" when absent */
    char error[400]; /* what went wrong, for last_error and logs */
};

struct dial_request;

/*
 * Builds the easy handle that sends body to url with the bearer token.
 * Returns the handle and stores the request state in *out, or returns
 * NULL when out of memory. The request state must outlive the handle.
 */
CURL *dial_request_new(struct dial_request **out, const char *url,
                       const char *body, const char *token,
                       unsigned connect_timeout_ms, unsigned timeout_ms);

/* Judges a finished attempt; easy must not be cleaned up yet. */
void dial_request_result(struct dial_request *request, CURL *easy,
                         CURLcode code, struct dial_result *result);

void dial_request_free(struct dial_request *request);

/*
 * Parses a Retry-After value, delta-seconds or an HTTP date, into
 * milliseconds from now_s (epoch seconds). Returns 0 when it is absent,
 * invalid or in the past; caps the wait at one hour.
 */
uint64_t dial_parse_retry_after(const char *value, int64_t now_s);

#endif
