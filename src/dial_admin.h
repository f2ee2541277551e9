/*
 * POST /calls on the admin listener: validates a dial job, records it,
 * queues it on dial:queue and replies 202 with the job id.
 */
#ifndef CALLHOOK_DIAL_ADMIN_H
#define CALLHOOK_DIAL_ADMIN_H

#include <stdint.h>

#include <event2/http.h>

struct app;

/* Handles one POST /calls; request_id is for the log lines. */
void admin_post_call(struct app *app, struct evhttp_request *req,
                     uint64_t request_id);

#endif
