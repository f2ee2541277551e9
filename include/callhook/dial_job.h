/*
 * One outbound call job: the JSON object a client submits through
 * POST /calls, the dial:queue list or `callhook dial`, validated and
 * normalised, and the Voice API request body built from it.
 *
 * Nothing here does I/O, so the fuzz harnesses call it directly.
 */
#ifndef CALLHOOK_DIAL_JOB_H
#define CALLHOOK_DIAL_JOB_H

#include <stddef.h>

#define DIAL_JOB_ID_MAX 64
#define DIAL_NUMBER_MIN 7  /* digits */
#define DIAL_NUMBER_MAX 15 /* digits, the E.164 maximum */
#define DIAL_IDEMPOTENCY_KEY_MAX 128
#define DIAL_URL_MAX 2048
#define DIAL_JOB_MAX_BYTES 65536 /* largest job JSON accepted */

#define DIAL_RINGING_TIMER_MAX 120 /* seconds */
#define DIAL_LENGTH_TIMER_MAX 7200 /* seconds */

enum dial_machine_detection {
    DIAL_MACHINE_DETECTION_NONE,
    DIAL_MACHINE_DETECTION_CONTINUE,
    DIAL_MACHINE_DETECTION_HANGUP,
};

struct dial_job {
    char id[DIAL_JOB_ID_MAX + 1]; /* "" until callhook assigns one */
    char to[DIAL_NUMBER_MAX + 1];   /* digits only */
    char from[DIAL_NUMBER_MAX + 1]; /* digits only; "" with random_from */
    int random_from_number;

    /* Exactly one of these three is set; all are owned by the job. */
    char *text;       /* spoken by a talk action */
    char *ncco;       /* compact JSON array, checked by ncco_check() */
    char *answer_url; /* http or https URL that returns the NCCO */

    enum dial_machine_detection machine_detection;
    unsigned ringing_timer; /* seconds; 0 when not set */
    unsigned length_timer;  /* seconds; 0 when not set */
    char idempotency_key[DIAL_IDEMPOTENCY_KEY_MAX + 1]; /* "" when not set */
};

/*
 * Parses and validates one job. On success returns 0 and fills job, which
 * the caller releases with dial_job_free(). On failure returns -1, writes
 * a message naming the offending field into err and leaves nothing to
 * free. data need not be NUL-terminated and is not kept.
 */
int dial_job_parse(struct dial_job *job, const char *data, size_t len,
                   char *err, size_t errlen);

void dial_job_free(struct dial_job *job);

/*
 * Normalises a phone number to the digits the Voice API takes:
 * "+1 (415) 555-0100" becomes "14155550100". A leading '+', spaces,
 * dashes, dots and parentheses are removed; any other character, or a
 * digit count outside DIAL_NUMBER_MIN..DIAL_NUMBER_MAX, is rejected.
 * Returns NULL on success, else the reason, which names no digits.
 */
const char *dial_number_normalize(const char *text, size_t len,
                                  char out[DIAL_NUMBER_MAX + 1]);

/*
 * Checks a job id: 1 to DIAL_JOB_ID_MAX letters, digits, '-' or '_'.
 * Returns NULL when valid, else a reason.
 */
const char *dial_job_check_id(const char *id, size_t len);

/*
 * Returns the job as canonical JSON (normalised numbers, fixed field
 * order, id included when set), or NULL when out of memory. The caller
 * frees it with free(). dial_job_parse() accepts the result again.
 */
char *dial_job_to_json(const struct dial_job *job);

/*
 * Returns the body of POST /v1/calls for the job, with event_url as the
 * call's only event URL, or NULL when out of memory. The caller frees it
 * with free().
 */
char *dial_job_request_body(const struct dial_job *job, const char *event_url);

#endif
