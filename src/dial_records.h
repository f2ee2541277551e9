/*
 * The Redis keys of dial jobs, and the scripts that move jobs between
 * states. Every state change is one script, so a job record and the
 * lists that hold the job never disagree, even across a crash.
 *
 *   dial:queue       list of job JSON waiting to be taken (LPUSH to add)
 *   dial:processing  list of jobs taken by the dialer and not yet ended
 *   dial:failed      list of {"job": ..., "error": "..."} for invalid jobs
 *   dial:job:{ID}    hash: state, attempts, last_error, call_uuid, job,
 *                    source, created_at, updated_at (epoch ms), and the
 *                    current attempt's token and in_flight_at (epoch ms,
 *                    Redis clock)
 *   dial:idem:{KEY}  the id of the first job submitted with that
 *                    idempotency key
 *   dial:lock        the lock value of the one process that dials; it
 *                    expires unless that process renews it
 *
 * A record's state is queued, in_flight, placed, failed or unknown. The
 * dialer writes in_flight, and waits for Redis to acknowledge it, before
 * it sends the request, so a record still in_flight after a crash is a
 * request that may have reached the API.
 */
#ifndef CALLHOOK_DIAL_RECORDS_H
#define CALLHOOK_DIAL_RECORDS_H

#include <stddef.h>

#include "callhook/dial_job.h"

#define DIAL_QUEUE_KEY "dial:queue"
#define DIAL_PROCESSING_KEY "dial:processing"
#define DIAL_FAILED_KEY "dial:failed"
#define DIAL_LOCK_KEY "dial:lock"

#define DIAL_JOB_ID_SIZE 37 /* a UUID in text form, with its NUL */
#define DIAL_KEY_SIZE (DIAL_IDEMPOTENCY_KEY_MAX + 16)

/* Scripts, run with EVAL; each documents its KEYS, ARGV and reply. */
extern const char dial_submit_lua[];
extern const char dial_claim_lua[];
extern const char dial_begin_lua[];
extern const char dial_lock_lua[];
extern const char dial_requeue_lua[];
extern const char dial_finish_lua[];
extern const char dial_reject_lua[];

/* An EVAL command, its strings borrowed from the caller or held here. */
#define DIAL_COMMAND_MAX_ARGS 16
struct dial_command {
    int argc;
    const char *argv[DIAL_COMMAND_MAX_ARGS];
    size_t lens[DIAL_COMMAND_MAX_ARGS];
    char keys[3][DIAL_KEY_SIZE];
    char now[24];
};

/* Writes "dial:job:{ID}". */
void dial_job_key(char *buf, size_t len, const char *id);

/* Writes "dial:idem:{KEY}". */
void dial_idem_key(char *buf, size_t len, const char *key);

/* Writes a random version 4 UUID. Returns 0, or -1 when RAND_bytes fails. */
int dial_new_job_id(char out[DIAL_JOB_ID_SIZE]);

/* Starts an EVAL of script with three keys; adds nothing else. */
void dial_command_begin(struct dial_command *cmd, const char *script,
                        const char *key1, const char *key2,
                        const char *key3);

/* Appends one argument, which must outlive the command. */
void dial_command_arg(struct dial_command *cmd, const char *value);

/*
 * Builds the submit command: record job (whose id is set) as queued and
 * push json, its canonical form, onto dial:queue, unless its idempotency
 * key names an earlier job. The reply is {"queued", id} or
 * {"duplicate", id of the earlier job}. source is "admin" or "cli".
 */
void dial_submit_command(struct dial_command *cmd, const struct dial_job *job,
                         const char *json, const char *source);

#endif
