/* Unit tests for the request pacer: even spacing, halving on 429, the
 * Retry-After pause and the gradual recovery. Time is simulated. */
#include "pacer.h"

#include "check.h"

/* Counts the requests pacer_take() lets out in [from, to) ms, polling
 * every millisecond. */
static int
count_taken(struct pacer *p, uint64_t from, uint64_t to)
{
    int taken = 0;

    for (uint64_t t = from; t < to; t++)
        taken += pacer_take(p, t);
    return taken;
}

static void
test_pacer_spaces_requests(void)
{
    struct pacer p;

    pacer_init(&p, 10, 1000);
    CHECK_INT_EQ(pacer_take(&p, 1000), 1);
    CHECK_INT_EQ(pacer_take(&p, 1000), 0);
    CHECK_INT_EQ(pacer_take(&p, 1050), 0);
    CHECK_INT_EQ(pacer_take(&p, 1100), 1);
    /* At most one token is saved up, so an idle second is no burst. */
    CHECK_INT_EQ(pacer_take(&p, 5000), 1);
    CHECK_INT_EQ(pacer_take(&p, 5000), 0);
    CHECK_INT_EQ(count_taken(&p, 5001, 7001), 20);
}

static void
test_pacer_wait(void)
{
    struct pacer p;

    pacer_init(&p, 4, 0);
    CHECK_INT_EQ(pacer_wait_ms(&p, 0), 0);
    CHECK_INT_EQ(pacer_take(&p, 0), 1);
    CHECK(pacer_wait_ms(&p, 0) >= 250);
    CHECK(pacer_wait_ms(&p, 0) <= 251);
    CHECK(pacer_wait_ms(&p, 200) <= 51);
    CHECK_INT_EQ(pacer_take(&p, 251), 1);
}

static void
test_pacer_halves_once_per_second(void)
{
    struct pacer p;

    pacer_init(&p, 8, 10000);
    CHECK_INT_EQ(pacer_throttled(&p, 10000, 0), 1);
    CHECK(p.rate == 4.0);
    /* More 429s from the same burst do not cut again. */
    CHECK_INT_EQ(pacer_throttled(&p, 10100, 0), 0);
    CHECK_INT_EQ(pacer_throttled(&p, 10999, 0), 0);
    CHECK(p.rate == 4.0);
    CHECK_INT_EQ(pacer_throttled(&p, 11000, 0), 1);
    CHECK(p.rate == 2.0);
}

static void
test_pacer_floor(void)
{
    struct pacer p;
    uint64_t t = 1000;

    pacer_init(&p, 1, t);
    for (int i = 0; i < 20; i++, t += 1000)
        pacer_throttled(&p, t, 0);
    CHECK(p.rate == PACER_MIN_RATE);
}

static void
test_pacer_retry_after_pauses(void)
{
    struct pacer p;

    pacer_init(&p, 100, 0);
    pacer_throttled(&p, 0, 3000);
    CHECK_INT_EQ(count_taken(&p, 0, 3000), 0);
    CHECK(pacer_wait_ms(&p, 1000) >= 2000);
    CHECK_INT_EQ(pacer_take(&p, 3000), 1);
}

static void
test_pacer_recovers_gradually(void)
{
    struct pacer p;

    pacer_init(&p, 10, 1000);
    pacer_throttled(&p, 1000, 0);
    CHECK(p.rate == 5.0);
    /* No recovery during the hold. */
    pacer_wait_ms(&p, 1000 + PACER_HOLD_MS - 1);
    CHECK(p.rate == 5.0);
    /* Then a tenth of the configured rate per second. */
    pacer_wait_ms(&p, 1000 + PACER_HOLD_MS);
    CHECK(p.rate == 6.0);
    pacer_wait_ms(&p, 1000 + PACER_HOLD_MS + 500);
    CHECK(p.rate == 6.0);
    pacer_wait_ms(&p, 1000 + PACER_HOLD_MS + 1000);
    CHECK(p.rate == 7.0);
    for (uint64_t t = 1000 + PACER_HOLD_MS; t < 30000; t += 100)
        pacer_wait_ms(&p, t);
    CHECK(p.rate == 10.0);
}

int
main(void)
{
    RUN_TEST(test_pacer_spaces_requests);
    RUN_TEST(test_pacer_wait);
    RUN_TEST(test_pacer_halves_once_per_second);
    RUN_TEST(test_pacer_floor);
    RUN_TEST(test_pacer_retry_after_pauses);
    RUN_TEST(test_pacer_recovers_gradually);
    return check_finish();
}
