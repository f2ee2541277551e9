/*
 * Pacing of requests to a rate-limited API. A token bucket that contains
 * at most one token spaces requests evenly, so no burst leaves at once.
 * When the API returns 429 the rate halves, at most once per second so
 * that one burst of 429s counts once, and requests pause for its
 * Retry-After. After PACER_HOLD_MS without a 429 the rate climbs back by
 * a tenth of the configured rate per second.
 *
 * Time is passed in as monotonic milliseconds, so the logic is testable.
 */
#ifndef CALLHOOK_PACER_H
#define CALLHOOK_PACER_H

#include <stdint.h>

#define PACER_HOLD_MS 5000
#define PACER_MIN_RATE 0.05 /* calls per second */

struct pacer {
    double max_rate; /* configured calls per second */
    double rate;     /* current calls per second */
    double tokens;   /* 0 to 1 */
    uint64_t refill_ms;
    uint64_t cut_ms;   /* last halving; 0 when never */
    uint64_t raise_ms; /* last recovery step */
    uint64_t paused_until_ms;
};

void pacer_init(struct pacer *p, double rate, uint64_t now_ms);

/* Takes the token and returns 1 when a request may leave now, else 0. */
int pacer_take(struct pacer *p, uint64_t now_ms);

/* Milliseconds until pacer_take() can succeed; 0 when it can now. */
uint64_t pacer_wait_ms(struct pacer *p, uint64_t now_ms);

/*
 * Records a 429: pauses until now + retry_after_ms and halves the rate
 * unless it was halved less than a second ago. Returns 1 when halved.
 */
int pacer_throttled(struct pacer *p, uint64_t now_ms,
                    uint64_t retry_after_ms);

#endif
