/*
 * Fuzzes the dial-job validator, which reads jobs from the admin API and
 * from the Redis queue. Whatever it accepts must round-trip: the canonical
 * JSON it writes parses again into the same job, and the request body for
 * the Voice API is valid JSON.
 */
#include <string.h>

#include <jansson.h>

#include "callhook/dial_job.h"
#include "fuzz_target.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dial_job job, again;
    char err[256];
    char *canonical, *body;
    json_t *parsed;

    if (dial_job_parse(&job, (const char *)data, size, err, sizeof(err)) !=
        0) {
        FUZZ_ASSERT(err[0] != '\0');
        return 0;
    }
    FUZZ_ASSERT(strlen(job.to) >= DIAL_NUMBER_MIN);
    FUZZ_ASSERT((job.text != NULL) + (job.ncco != NULL) +
                    (job.answer_url != NULL) ==
                1);

    canonical = dial_job_to_json(&job);
    FUZZ_ASSERT(canonical != NULL);
    FUZZ_ASSERT(dial_job_parse(&again, canonical, strlen(canonical), err,
                               sizeof(err)) == 0);
    FUZZ_ASSERT(strcmp(again.to, job.to) == 0);
    FUZZ_ASSERT(strcmp(again.from, job.from) == 0);
    dial_job_free(&again);

    body = dial_job_request_body(&job, "http://127.0.0.1:3000/call_events");
    FUZZ_ASSERT(body != NULL);
    parsed = json_loads(body, 0, NULL);
    FUZZ_ASSERT(json_is_object(parsed));
    json_decref(parsed);

    free(body);
    free(canonical);
    dial_job_free(&job);
    return 0;
}
