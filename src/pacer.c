#include "pacer.h"

#define CUT_INTERVAL_MS 1000
#define RAISE_INTERVAL_MS 1000

static void
update(struct pacer *p, uint64_t now_ms)
{
    if (now_ms > p->refill_ms) {
        p->tokens += (double)(now_ms - p->refill_ms) * p->rate / 1000.0;
        if (p->tokens > 1.0)
            p->tokens = 1.0;
        p->refill_ms = now_ms;
    }
    if (p->rate < p->max_rate && now_ms >= p->cut_ms + PACER_HOLD_MS &&
        now_ms >= p->raise_ms + RAISE_INTERVAL_MS) {
        p->rate += p->max_rate / 10.0;
        if (p->rate > p->max_rate)
            p->rate = p->max_rate;
        p->raise_ms = now_ms;
    }
}

void
pacer_init(struct pacer *p, double rate, uint64_t now_ms)
{
    p->max_rate = rate;
    p->rate = rate;
    p->tokens = 1.0;
    p->refill_ms = now_ms;
    p->cut_ms = 0;
    p->raise_ms = 0;
    p->paused_until_ms = 0;
}

int
pacer_take(struct pacer *p, uint64_t now_ms)
{
    update(p, now_ms);
    if (now_ms < p->paused_until_ms || p->tokens < 1.0)
        return 0;
    p->tokens -= 1.0;
    return 1;
}

uint64_t
pacer_wait_ms(struct pacer *p, uint64_t now_ms)
{
    uint64_t wait = 0;

    update(p, now_ms);
    if (p->tokens < 1.0)
        wait = (uint64_t)((1.0 - p->tokens) * 1000.0 / p->rate) + 1;
    if (now_ms < p->paused_until_ms && p->paused_until_ms - now_ms > wait)
        wait = p->paused_until_ms - now_ms;
    return wait;
}

int
pacer_throttled(struct pacer *p, uint64_t now_ms, uint64_t retry_after_ms)
{
    double floor = p->max_rate < PACER_MIN_RATE ? p->max_rate : PACER_MIN_RATE;

    update(p, now_ms);
    if (now_ms + retry_after_ms > p->paused_until_ms)
        p->paused_until_ms = now_ms + retry_after_ms;
    if (p->cut_ms != 0 && now_ms < p->cut_ms + CUT_INTERVAL_MS)
        return 0;
    p->rate /= 2.0;
    if (p->rate < floor)
        p->rate = floor;
    if (p->tokens > 0.0)
        p->tokens = 0.0;
    p->cut_ms = now_ms;
    return 1;
}
