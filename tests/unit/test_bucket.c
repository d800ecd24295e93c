
/*
 * Token bucket: exact refill, rounding of the header figures, clock skew,
 * overflow at the extremes, and no drift between many small steps and one
 * big one.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agw_bucket.h"


#define RPS(r, b)  { (r), 1000, (b) }
#define RPM(r, b)  { (r), 60000, (b) }

#define nitems(a)  (sizeof(a) / sizeof((a)[0]))
#define MAXU       AGW_BUCKET_MAX_UNITS


static const agw_bucket_conf_t  rps1_b5 = RPS(1, 5);


static void
test_bucket_conf_valid(void **state)
{
    size_t  i;
    int     got;

    static const struct {
        agw_bucket_conf_t  conf;
        int                valid;
    } rows[] = {
        { RPS(1, 1), 1 },
        { RPM(1, 1), 1 },
        { RPS(0, 1), 0 },
        { RPS(1, 0), 0 },
        { { 1, 500, 1 }, 0 },
        { { 1, 0, 1 }, 0 },
        { { 1, 3600000, 1 }, 0 },
        { RPS(AGW_BUCKET_MAX_UNITS, 1), 1 },
        { RPS(AGW_BUCKET_MAX_UNITS + 1, 1), 0 },
        { RPS(1, AGW_BUCKET_MAX_UNITS / 1000), 1 },
        { RPS(1, AGW_BUCKET_MAX_UNITS / 1000 + 1), 0 },
        { RPM(1, AGW_BUCKET_MAX_UNITS / 60000), 1 },
        { RPM(1, AGW_BUCKET_MAX_UNITS / 60000 + 1), 0 },
        { RPS(1, UINT64_MAX), 0 },
        { RPS(UINT64_MAX, 1), 0 },
        /* money: micro-dollars, rates in cents a minute, hour, day */
        { { 1, AGW_BUCKET_USD_MINUTE, 1 }, 1 },
        { { 1, AGW_BUCKET_USD_HOUR, 1 }, 1 },
        { { 1, AGW_BUCKET_USD_DAY, 1 }, 1 },
        { { 1, AGW_BUCKET_USD_DAY, AGW_BUCKET_MAX_UNITS / 8640 }, 1 },
        { { 1, AGW_BUCKET_USD_DAY, AGW_BUCKET_MAX_UNITS / 8640 + 1 }, 0 },
        { { 1, 8641, 1 }, 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        got = agw_bucket_conf_valid(&rows[i].conf);

        if (got != rows[i].valid) {
            print_error("conf_valid failed: rate %llu period %llu "
                        "burst %llu: expected %d, got %d\n",
                        (unsigned long long) rows[i].conf.rate,
                        (unsigned long long) rows[i].conf.period_ms,
                        (unsigned long long) rows[i].conf.burst,
                        rows[i].valid, got);
            fail();
        }
    }
}


static void
test_bucket_starts_full(void **state)
{
    agw_bucket_t         b;
    agw_bucket_result_t  res;

    agw_bucket_init(&b, &rps1_b5, 12345);
    agw_bucket_check(&b, &rps1_b5, 0, 12345, &res);

    assert_true(res.allowed);
    assert_int_equal(res.remaining, 5);
    assert_int_equal(res.reset_ms, 0);
    assert_int_equal(res.retry_after_ms, 0);
}


static void
test_bucket_refill(void **state)
{
    agw_bucket_t         b;
    agw_bucket_result_t  res;

    agw_bucket_init(&b, &rps1_b5, 0);
    agw_bucket_take(&b, &rps1_b5, 5, 0);

    agw_bucket_check(&b, &rps1_b5, 1, 0, &res);
    assert_false(res.allowed);
    assert_int_equal(res.remaining, 0);
    assert_int_equal(res.retry_after_ms, 1000);
    assert_int_equal(res.reset_ms, 5000);

    agw_bucket_check(&b, &rps1_b5, 1, 999, &res);
    assert_false(res.allowed);
    assert_int_equal(res.retry_after_ms, 1);

    agw_bucket_check(&b, &rps1_b5, 1, 1000, &res);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 0);
    assert_int_equal(res.reset_ms, 5000);

    agw_bucket_check(&b, &rps1_b5, 1, 3500, &res);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 2);
    assert_int_equal(res.reset_ms, 2500);

    /* capped at burst */

    agw_bucket_check(&b, &rps1_b5, 0, 5000, &res);
    assert_int_equal(res.remaining, 5);
    assert_int_equal(res.reset_ms, 0);

    agw_bucket_check(&b, &rps1_b5, 0, 99000, &res);
    assert_int_equal(res.remaining, 5);

    agw_bucket_take(&b, &rps1_b5, 0, 99000);
    assert_int_equal(b.level, 5000);
    assert_int_equal(b.stamp_ms, 99000);

    agw_bucket_take(&b, &rps1_b5, 1, 99000);
    agw_bucket_check(&b, &rps1_b5, 0, 99000, &res);
    assert_int_equal(res.remaining, 4);
}


static void
test_bucket_cost(void **state)
{
    agw_bucket_t             b;
    agw_bucket_result_t      res;
    static const agw_bucket_conf_t  conf = RPS(10, 10);

    agw_bucket_init(&b, &conf, 0);

    agw_bucket_check(&b, &conf, 4, 0, &res);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 6);
    assert_int_equal(res.reset_ms, 400);
    agw_bucket_take(&b, &conf, 4, 0);

    agw_bucket_check(&b, &conf, 7, 0, &res);
    assert_false(res.allowed);
    assert_int_equal(res.remaining, 6);
    assert_int_equal(res.retry_after_ms, 100);

    agw_bucket_check(&b, &conf, 10, 0, &res);
    assert_false(res.allowed);
    assert_int_equal(res.retry_after_ms, 400);

    agw_bucket_check(&b, &conf, 10, 400, &res);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 0);
    assert_int_equal(res.reset_ms, 1000);

    /* more than burst: never, retry when full */

    agw_bucket_check(&b, &conf, 11, 0, &res);
    assert_false(res.allowed);
    assert_int_equal(res.remaining, 6);
    assert_int_equal(res.retry_after_ms, 400);

    agw_bucket_check(&b, &conf, 11, 1000000, &res);
    assert_false(res.allowed);
    assert_int_equal(res.remaining, 10);
    assert_int_equal(res.retry_after_ms, 0);

    agw_bucket_check(&b, &conf, UINT64_MAX, 0, &res);
    assert_false(res.allowed);
    assert_int_equal(res.retry_after_ms, 400);
}


/* the figures for the response headers, rounded as documented */

typedef struct {
    agw_bucket_conf_t  conf;
    uint64_t           level;            /* units at now */
    uint64_t           cost;
    unsigned           allowed;
    uint64_t           remaining;
    uint64_t           reset_ms;
    uint64_t           retry_after_ms;
} agw_bucket_round_test_t;


static const agw_bucket_round_test_t  round_rows[] = {
    /* conf         level   cost  ok rem reset   retry */
    { RPS(1, 10),       0,   1,   0, 0, 10000,  1000 },
    { RPS(3, 10),       0,   1,   0, 0,  3334,   334 },
    { RPS(3, 10),     999,   1,   0, 0,  3001,     1 },
    { RPS(3, 10),    1000,   1,   1, 0,  3334,     0 },
    { RPS(3, 10),    2500,   1,   1, 1,  2834,     0 },
    { RPS(3, 10),    2999,   2,   1, 0,  3001,     0 },
    { RPS(3, 10),    2999,   3,   0, 2,  2334,     1 },
    { RPS(3, 10),   10000,  10,   1, 0,  3334,     0 },
    { RPS(10, 5),    5000,   5,   1, 0,   500,     0 },
    { RPS(10, 5),    4999,   5,   0, 4,     1,     1 },
    { RPS(10, 5),       0,   6,   0, 0,   500,   500 },
    { RPS(10, 5),       0,   0,   1, 0,   500,     0 },
    { RPS(1000, 1),     0,   1,   0, 0,     1,     1 },
    { RPS(7000, 1),     1,   1,   0, 0,     1,     1 },
    { RPM(30, 1),       0,   1,   0, 0,  2000,  2000 },
    { RPM(30, 1),   59999,   1,   0, 0,     1,     1 },
    { RPM(1, 1),        0,   1,   0, 0, 60000, 60000 },
    { RPM(1, 5),    59999,   1,   0, 0, 240001,    1 },
    { RPM(1, 5),   120000,   1,   1, 1, 240000,    0 },
    { RPM(7, 3),        1,   1,   0, 0, 25715,  8572 },
};


static void
test_bucket_rounding(void **state)
{
    size_t                          i;
    agw_bucket_t                    b;
    agw_bucket_result_t             res;
    const agw_bucket_round_test_t  *t;

    for (i = 0; i < nitems(round_rows); i++) {
        t = &round_rows[i];

        b.level = t->level;
        b.stamp_ms = 1000;

        agw_bucket_check(&b, &t->conf, t->cost, 1000, &res);

        if (res.allowed != t->allowed
            || res.remaining != t->remaining
            || res.reset_ms != t->reset_ms
            || res.retry_after_ms != t->retry_after_ms)
        {
            print_error("rounding failed: row %zu: %llur/%llums burst %llu "
                        "level %llu cost %llu: expected "
                        "{%u, %llu, %llu, %llu}, got {%u, %llu, %llu, %llu}\n",
                        i,
                        (unsigned long long) t->conf.rate,
                        (unsigned long long) t->conf.period_ms,
                        (unsigned long long) t->conf.burst,
                        (unsigned long long) t->level,
                        (unsigned long long) t->cost,
                        t->allowed,
                        (unsigned long long) t->remaining,
                        (unsigned long long) t->reset_ms,
                        (unsigned long long) t->retry_after_ms,
                        (unsigned) res.allowed,
                        (unsigned long long) res.remaining,
                        (unsigned long long) res.reset_ms,
                        (unsigned long long) res.retry_after_ms);
            fail();
        }
    }
}


static void
test_bucket_seconds(void **state)
{
    size_t    i;
    uint64_t  got;

    static const struct {
        uint64_t  ms;
        uint64_t  s;
        uint64_t  retry_s;
    } ms_rows[] = {
        { 0, 0, 1 },
        { 1, 1, 1 },
        { 999, 1, 1 },
        { 1000, 1, 1 },
        { 1001, 2, 2 },
        { 59999, 60, 60 },
        { UINT64_MAX, UINT64_MAX / 1000 + 1, UINT64_MAX / 1000 + 1 },
    };

    static const struct {
        agw_bucket_conf_t  conf;
        uint64_t           window_s;
    } window_rows[] = {
        { RPS(1, 10), 10 },
        { RPS(3, 10), 4 },
        { RPS(100, 1), 1 },
        { RPS(AGW_BUCKET_MAX_UNITS, 1), 1 },
        { RPM(30, 1), 2 },
        { RPM(1, 5), 300 },
        { RPM(7, 3), 26 },
        { RPM(1, AGW_BUCKET_MAX_UNITS / 60000),
          (AGW_BUCKET_MAX_UNITS / 60000) * 60 },
    };

    for (i = 0; i < nitems(ms_rows); i++) {
        got = agw_ms_to_s_ceil(ms_rows[i].ms);

        if (got != ms_rows[i].s) {
            print_error("ms_to_s_ceil failed: %llu: expected %llu, got %llu\n",
                        (unsigned long long) ms_rows[i].ms,
                        (unsigned long long) ms_rows[i].s,
                        (unsigned long long) got);
            fail();
        }

        got = agw_retry_after_s(ms_rows[i].ms);

        if (got != ms_rows[i].retry_s) {
            print_error("retry_after_s failed: %llu: expected %llu, "
                        "got %llu\n",
                        (unsigned long long) ms_rows[i].ms,
                        (unsigned long long) ms_rows[i].retry_s,
                        (unsigned long long) got);
            fail();
        }
    }

    for (i = 0; i < nitems(window_rows); i++) {
        got = agw_bucket_window_s(&window_rows[i].conf);

        if (got != window_rows[i].window_s) {
            print_error("window_s failed: row %zu: expected %llu, got %llu\n",
                        i, (unsigned long long) window_rows[i].window_s,
                        (unsigned long long) got);
            fail();
        }
    }
}


static void
test_bucket_clock_backwards(void **state)
{
    agw_bucket_t         b;
    agw_bucket_result_t  res;
    static const agw_bucket_conf_t  conf = RPS(1, 2);

    agw_bucket_init(&b, &conf, 10000);
    agw_bucket_take(&b, &conf, 2, 10000);

    /* a lagging worker sees no time passed and does not rewind the stamp */

    agw_bucket_check(&b, &conf, 1, 9000, &res);
    assert_false(res.allowed);
    assert_int_equal(res.retry_after_ms, 1000);

    agw_bucket_take(&b, &conf, 0, 5000);
    assert_int_equal(b.stamp_ms, 10000);
    assert_int_equal(b.level, 0);

    agw_bucket_check(&b, &conf, 1, 0, &res);
    assert_false(res.allowed);

    /* time from 10000 is credited once, not from the lagging 5000 */

    agw_bucket_check(&b, &conf, 1, 10999, &res);
    assert_false(res.allowed);
    assert_int_equal(res.retry_after_ms, 1);

    agw_bucket_check(&b, &conf, 1, 11000, &res);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 0);

    /* a take while lagging spends tokens but keeps the stamp */

    agw_bucket_take(&b, &conf, 0, 11500);
    assert_int_equal(b.level, 1500);
    agw_bucket_take(&b, &conf, 1, 11400);
    assert_int_equal(b.level, 500);
    assert_int_equal(b.stamp_ms, 11500);

    agw_bucket_check(&b, &conf, 1, 12000, &res);
    assert_true(res.allowed);
}


static void
test_bucket_huge_idle(void **state)
{
    size_t               i;
    uint64_t             gap, cap;
    agw_bucket_t         b;
    agw_bucket_result_t  res;

    static const agw_bucket_conf_t  confs[] = {
        RPS(1, 1),
        RPM(1, 1),
        RPS(3, 10),
        RPS(AGW_BUCKET_MAX_UNITS, 1),
        RPS(1, AGW_BUCKET_MAX_UNITS / 1000),
        RPM(1, AGW_BUCKET_MAX_UNITS / 60000),
        RPM(AGW_BUCKET_MAX_UNITS, AGW_BUCKET_MAX_UNITS / 60000),
    };

    static const struct {
        uint64_t  stamp;
        uint64_t  now;
    } gaps[] = {
        { 0, UINT64_MAX },
        { 1, UINT64_MAX },
        { 0, UINT64_MAX / 2 },
        { 1700000000000ULL, 1700000000000ULL + 10 * 365 * 86400000ULL },
        { UINT64_MAX - 1, UINT64_MAX },
    };

    for (i = 0; i < nitems(confs) * nitems(gaps); i++) {
        const agw_bucket_conf_t  *conf = &confs[i / nitems(gaps)];

        b.level = 0;
        b.stamp_ms = gaps[i % nitems(gaps)].stamp;

        agw_bucket_check(&b, conf, 1, gaps[i % nitems(gaps)].now, &res);

        /* short gaps (one ms, ten years at 1r/s) fill slow buckets partly */

        gap = gaps[i % nitems(gaps)].now - b.stamp_ms;
        cap = conf->burst * conf->period_ms;

        if (gap < cap / conf->rate + (cap % conf->rate != 0)) {
            agw_bucket_take(&b, conf, 0, gaps[i % nitems(gaps)].now);
            assert_int_equal(b.level, gap * conf->rate);
            continue;
        }

        if (!res.allowed || res.remaining != conf->burst - 1) {
            print_error("huge idle failed: conf %zu gap %zu: allowed %u "
                        "remaining %llu\n", i / nitems(gaps),
                        i % nitems(gaps), (unsigned) res.allowed,
                        (unsigned long long) res.remaining);
            fail();
        }

        agw_bucket_take(&b, conf, 0, gaps[i % nitems(gaps)].now);
        assert_int_equal(b.level, conf->burst * conf->period_ms);
        assert_int_equal(b.stamp_ms, gaps[i % nitems(gaps)].now);
    }

    /* a level above capacity (burst lowered by a reload) is clamped */

    b.level = UINT64_MAX;
    b.stamp_ms = 0;
    agw_bucket_check(&b, &rps1_b5, 0, 0, &res);
    assert_int_equal(res.remaining, 5);
    assert_int_equal(res.reset_ms, 0);
}


static void
test_bucket_per_minute(void **state)
{
    uint64_t             now, taken, last;
    agw_bucket_t         b;
    agw_bucket_result_t  res;
    static const agw_bucket_conf_t  rpm30 = RPM(30, 1);
    static const agw_bucket_conf_t  rpm1 = RPM(1, 1);

    /* 30r/m: a token every 2000 ms exactly, over ten minutes */

    agw_bucket_init(&b, &rpm30, 0);
    agw_bucket_take(&b, &rpm30, 1, 0);

    taken = 0;
    last = 0;

    for (now = 1; now <= 600000; now++) {
        agw_bucket_check(&b, &rpm30, 1, now, &res);

        if (res.allowed) {
            assert_int_equal(now - last, 2000);
            agw_bucket_take(&b, &rpm30, 1, now);
            taken++;
            last = now;

        } else {
            assert_int_equal(res.retry_after_ms, last + 2000 - now);
        }
    }

    assert_int_equal(taken, 300);

    /* 1r/m */

    agw_bucket_init(&b, &rpm1, 0);
    agw_bucket_take(&b, &rpm1, 1, 0);

    agw_bucket_check(&b, &rpm1, 1, 59999, &res);
    assert_false(res.allowed);
    assert_int_equal(res.retry_after_ms, 1);
    assert_int_equal(agw_retry_after_s(res.retry_after_ms), 1);

    agw_bucket_check(&b, &rpm1, 1, 1, &res);
    assert_int_equal(res.retry_after_ms, 59999);
    assert_int_equal(agw_retry_after_s(res.retry_after_ms), 60);

    agw_bucket_check(&b, &rpm1, 1, 60000, &res);
    assert_true(res.allowed);
    assert_int_equal(res.reset_ms, 60000);
}


static void
test_bucket_no_drift(void **state)
{
    size_t        i, c;
    uint64_t      now, step;
    agw_bucket_t  small, big;

    static const agw_bucket_conf_t  confs[] = {
        RPS(3, 10),
        RPS(7, 100),
        RPM(7, 100),
        RPM(1, 3),
        RPM(13, 1000),
    };

    /* 1000 steps of 1 ms against one of 1000 ms, at 3r/s */

    agw_bucket_init(&small, &confs[0], 0);
    agw_bucket_take(&small, &confs[0], 10, 0);
    big = small;

    for (now = 1; now <= 1000; now++) {
        agw_bucket_take(&small, &confs[0], 0, now);
    }

    agw_bucket_take(&big, &confs[0], 0, 1000);

    assert_int_equal(small.level, 3000);
    assert_int_equal(big.level, 3000);
    assert_int_equal(small.stamp_ms, big.stamp_ms);

    /* uneven steps, with the same total, for several rates */

    for (c = 0; c < nitems(confs); c++) {
        agw_bucket_init(&small, &confs[c], 0);
        agw_bucket_take(&small, &confs[c], confs[c].burst, 0);
        big = small;

        now = 0;

        for (i = 0; i < 500; i++) {
            step = (i * 7919) % 37 + 1;
            now += step;
            agw_bucket_take(&small, &confs[c], 0, now);
        }

        agw_bucket_take(&big, &confs[c], 0, now);

        if (small.level != big.level) {
            print_error("drift: conf %zu at %llu ms: steps %llu, "
                        "one %llu\n", c, (unsigned long long) now,
                        (unsigned long long) small.level,
                        (unsigned long long) big.level);
            fail();
        }

        assert_int_equal(small.level,
                         now * confs[c].rate < confs[c].burst
                                               * confs[c].period_ms
                         ? now * confs[c].rate
                         : confs[c].burst * confs[c].period_ms);
    }
}


static void
test_bucket_check_does_not_mutate(void **state)
{
    size_t               i;
    agw_bucket_t         b, copy;
    agw_bucket_result_t  res;

    static const uint64_t  costs[] = { 0, 1, 2, 5, 6, UINT64_MAX };
    static const uint64_t  nows[] = { 0, 500, 1000, 2500, 99999,
                                      UINT64_MAX };

    for (i = 0; i < nitems(costs) * nitems(nows); i++) {
        b.level = 1234;
        b.stamp_ms = 1000;
        copy = b;

        agw_bucket_check(&b, &rps1_b5, costs[i % nitems(costs)],
                         nows[i / nitems(costs)], &res);

        assert_memory_equal(&b, &copy, sizeof(agw_bucket_t));
    }
}


static void
test_bucket_take_saturates(void **state)
{
    agw_bucket_t  b;

    /* a take the caller did not check (the level fell meanwhile) */

    b.level = 1500;
    b.stamp_ms = 0;
    agw_bucket_take(&b, &rps1_b5, 2, 0);
    assert_int_equal(b.level, 0);

    b.level = 1500;
    agw_bucket_take(&b, &rps1_b5, UINT64_MAX, 0);
    assert_int_equal(b.level, 0);
}


/*
 * consume() is the single-zone shortcut for check() then take() if
 * allowed, and commit() the several-zone one: over a long pseudo-random
 * walk of costs and clock steps (including steps back and costs over the
 * burst), all give the same answers and leave the bucket in the same state
 */
static void
test_bucket_consume_is_check_then_take(void **state)
{
    int                  allowed;
    size_t               c, i;
    uint64_t             now, cost, x;
    agw_bucket_t         a, b, d;
    agw_bucket_result_t  ra, rb, rd;

    static const agw_bucket_conf_t  confs[] = {
        RPS(1, 5), RPS(3, 1), RPM(7, 4), RPS(1000, 50), RPM(1, 1)
    };

    x = 88172645463325252ULL;

    for (c = 0; c < nitems(confs); c++) {
        now = 1000000;
        agw_bucket_init(&a, &confs[c], now);
        b = a;
        d = a;

        for (i = 0; i < 20000; i++) {
            /* xorshift64 */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;

            cost = (x >> 8) % (confs[c].burst + 3);
            now = (x & 0x100) ? now - (x >> 40) % 50 : now + (x >> 40) % 900;

            agw_bucket_check(&a, &confs[c], cost, now, &ra);

            /* as the zones do: a cost of 0 (a cache HIT) only reads */

            if (ra.allowed && cost) {
                agw_bucket_take(&a, &confs[c], cost, now);
            }

            allowed = agw_bucket_consume(&b, &confs[c], cost, now, &rb);

            assert_int_equal(allowed, ra.allowed);
            assert_int_equal(rb.allowed, ra.allowed);
            assert_int_equal(rb.remaining, ra.remaining);
            assert_int_equal(rb.reset_ms, ra.reset_ms);
            assert_int_equal(rb.retry_after_ms, ra.retry_after_ms);

            assert_memory_equal(&b, &a, sizeof(agw_bucket_t));

            /* and so is check() then commit() of what it found */

            agw_bucket_check(&d, &confs[c], cost, now, &rd);

            if (rd.allowed && cost) {
                agw_bucket_commit(&d, &rd, now);
            }

            assert_int_equal(rd.allowed, ra.allowed);
            assert_int_equal(rd.remaining, ra.remaining);
            assert_int_equal(rd.reset_ms, ra.reset_ms);
            assert_int_equal(rd.retry_after_ms, ra.retry_after_ms);
            assert_memory_equal(&d, &a, sizeof(agw_bucket_t));
        }
    }
}


/*
 * A money bucket: 100 USD a day (10^4 cents), burst 10 USD.  A cent a day
 * refills a unit a ms and a micro-dollar is 8640 units, so the day's
 * rate is exact: after a full day the bucket has regained 100 USD (more
 * than its burst: it is full), after 8.64 s one cent.
 */

static void
test_bucket_money(void **state)
{
    agw_bucket_t         b;
    agw_bucket_result_t  res;

    static const agw_bucket_conf_t  conf = { 10000, AGW_BUCKET_USD_DAY,
                                             10000000 };

    agw_bucket_init(&b, &conf, 0);
    assert_true(agw_bucket_consume(&b, &conf, 10000000, 0, &res));
    assert_int_equal(res.remaining, 0);
    /* 10 USD back at 100 USD a day: 2.4 hours */
    assert_int_equal(res.reset_ms, 8640000);

    /* a cent takes 8.64 s */
    agw_bucket_check(&b, &conf, 10000, 8639, &res);
    assert_false(res.allowed);
    assert_int_equal(res.retry_after_ms, 1);
    agw_bucket_check(&b, &conf, 10000, 8640, &res);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 0);

    /* a micro-dollar, 8640 units, after 0.864 ms: rounded to 1 ms */
    agw_bucket_check(&b, &conf, 1, 0, &res);
    assert_int_equal(res.retry_after_ms, 1);
    agw_bucket_check(&b, &conf, 1, 1, &res);
    assert_true(res.allowed);

    assert_int_equal(agw_bucket_window_s(&conf), 8640);
}


/*
 * Settlement of token reservations: unused tokens go back (never above
 * capacity), an overrun is taken into debt whole (issue 21, item 10: it
 * was capped at one capacity, so a key that overran by ten windows
 * waited one), refill pays the debt before it fills, and a request waits
 * while in debt.  The debt saturates at 2^53 - capacity, never wraps.
 * Bucket 1 token/s, burst 10; every row starts full at t=0, takes
 * `reserved` at t=0 and settles at t=0 on `actual`; then a check of cost 1
 * at `later` ms.
 */

static void
test_bucket_settle(void **state)
{
    size_t               i;
    agw_bucket_t         b;
    agw_bucket_result_t  res;

    static const agw_bucket_conf_t  conf = RPS(1, 10);

    static const struct {
        uint64_t  reserved, actual;
        uint64_t  level, debt;      /* units after the settlement */
        uint64_t  later;            /* ms */
        int       allowed;
        uint64_t  remaining, reset_ms, retry_after_ms;
    } rows[] = {
        /* exact: nothing moves */
        { 5, 5, 5000, 0, 0, 1, 4, 6000, 0 },
        /* fewer used: the rest goes back */
        { 5, 2, 8000, 0, 0, 1, 7, 3000, 0 },
        /* none used (a 5xx, no answer): all goes back, capped */
        { 5, 0, 10000, 0, 0, 1, 9, 1000, 0 },
        { 10, 0, 10000, 0, 0, 1, 9, 1000, 0 },
        /* more used: taken down to 0 */
        { 5, 10, 0, 0, 0, 0, 0, 10000, 1000 },
        /* and into debt: 2 tokens owed, 3 s until one token */
        { 5, 12, 0, 2000, 0, 0, 0, 12000, 3000 },
        { 5, 12, 0, 2000, 2000, 0, 0, 10000, 1000 },
        { 5, 12, 0, 2000, 3000, 1, 0, 10000, 0 },
        /* refill pays the debt, then fills */
        { 5, 12, 0, 2000, 12000, 1, 9, 1000, 0 },
        /*
         * three capacities of overrun are owed whole: 30 tokens of debt,
         * paid after 30 s, then the bucket refills
         */
        { 5, 40, 0, 30000, 0, 0, 0, 40000, 31000 },
        { 5, 40, 0, 30000, 29999, 0, 0, 10001, 1001 },
        { 5, 40, 0, 30000, 30000, 0, 0, 10000, 1000 },
        { 5, 40, 0, 30000, 31000, 1, 0, 10000, 0 },
        { 5, 1000000, 0, 999990000, 0, 0, 0, 1000000000, 999991000 },
        /*
         * whatever the upstream claims, the debt saturates at 2^53 less
         * the capacity: capacity + debt is exactly 2^53, no wrap
         */
        { 5, UINT64_MAX, 0, MAXU - 10000, 0, 0, 0, MAXU, MAXU - 9000 },
        { 0, UINT64_MAX, 0, MAXU - 10000, 0, 0, 0, MAXU, MAXU - 9000 },
        { 10, UINT64_MAX, 0, MAXU - 10000, 0, 0, 0, MAXU, MAXU - 9000 },
        { 10, MAXU, 0, MAXU - 10000, 0, 0, 0, MAXU, MAXU - 9000 },
        /* and is paid by time like any other */
        { 10, UINT64_MAX, 0, MAXU - 10000, MAXU - 10000, 0, 0, 10000,
          1000 },
        { 10, UINT64_MAX, 0, MAXU - 10000, MAXU, 1, 9, 1000, 0 },
        { 10, UINT64_MAX, 0, MAXU - 10000, UINT64_MAX, 1, 9, 1000, 0 },
        /* an absurd reservation given back fills the bucket, no more */
        { 0, 0, 10000, 0, 0, 1, 9, 1000, 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        agw_bucket_init(&b, &conf, 0);
        agw_bucket_take(&b, &conf, rows[i].reserved, 0);
        agw_bucket_settle(&b, &conf, rows[i].reserved, rows[i].actual, 0);

        if (b.level != rows[i].level || b.debt != rows[i].debt) {
            print_error("settle row %zu: reserved %llu actual %llu: "
                        "expected level %llu debt %llu, got %llu %llu\n",
                        i, (unsigned long long) rows[i].reserved,
                        (unsigned long long) rows[i].actual,
                        (unsigned long long) rows[i].level,
                        (unsigned long long) rows[i].debt,
                        (unsigned long long) b.level,
                        (unsigned long long) b.debt);
            fail();
        }

        agw_bucket_check(&b, &conf, 1, rows[i].later, &res);

        if (res.allowed != rows[i].allowed
            || res.remaining != rows[i].remaining
            || res.reset_ms != rows[i].reset_ms
            || res.retry_after_ms != rows[i].retry_after_ms)
        {
            print_error("settle row %zu at %llu ms: expected allowed %d "
                        "remaining %llu reset %llu retry %llu, got %d %llu "
                        "%llu %llu\n", i,
                        (unsigned long long) rows[i].later, rows[i].allowed,
                        (unsigned long long) rows[i].remaining,
                        (unsigned long long) rows[i].reset_ms,
                        (unsigned long long) rows[i].retry_after_ms,
                        res.allowed, (unsigned long long) res.remaining,
                        (unsigned long long) res.reset_ms,
                        (unsigned long long) res.retry_after_ms);
            fail();
        }
    }

    /* a reservation given back to a bucket that refilled meanwhile */
    agw_bucket_init(&b, &conf, 0);
    agw_bucket_take(&b, &conf, 4, 0);
    agw_bucket_settle(&b, &conf, 4, 0, 3000);
    assert_int_equal(b.level, 10000);

    /*
     * a read (cost 0, a cache HIT) passes in debt too, and reports the
     * debt: nothing left, full once it is paid and the burst refilled
     */
    agw_bucket_init(&b, &conf, 0);
    agw_bucket_settle(&b, &conf, 0, 25, 0);
    agw_bucket_check(&b, &conf, 0, 1000, &res);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 0);
    assert_int_equal(res.reset_ms, 24000);
    assert_int_equal(res.debt, 14000);
    assert_true(agw_bucket_consume(&b, &conf, 0, 1000, &res));
    assert_int_equal(b.debt, 15000);            /* a read writes nothing */

    /* a second overrun adds to the first */
    agw_bucket_init(&b, &conf, 0);
    agw_bucket_settle(&b, &conf, 0, 25, 0);
    agw_bucket_settle(&b, &conf, 0, 25, 0);
    assert_int_equal(b.debt, 40000);
    assert_int_equal(agw_bucket_max_debt(&conf), MAXU - 10000);

    /* a debt at the bound, settled again, stays at the bound */
    agw_bucket_settle(&b, &conf, 0, UINT64_MAX, 0);
    agw_bucket_settle(&b, &conf, 0, UINT64_MAX, 0);
    assert_int_equal(b.debt, MAXU - 10000);

    /* debt paid by time, in exact units, across many small steps */
    agw_bucket_init(&b, &conf, 0);
    agw_bucket_take(&b, &conf, 10, 0);
    agw_bucket_settle(&b, &conf, 0, 5, 0);
    assert_int_equal(b.debt, 5000);
    agw_bucket_settle(&b, &conf, 0, 0, 1234);
    assert_int_equal(b.debt, 3766);
    assert_int_equal(b.level, 0);
    agw_bucket_settle(&b, &conf, 0, 0, 6000);
    assert_int_equal(b.debt, 0);
    assert_int_equal(b.level, 1000);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_bucket_conf_valid),
        cmocka_unit_test(test_bucket_starts_full),
        cmocka_unit_test(test_bucket_refill),
        cmocka_unit_test(test_bucket_cost),
        cmocka_unit_test(test_bucket_rounding),
        cmocka_unit_test(test_bucket_seconds),
        cmocka_unit_test(test_bucket_clock_backwards),
        cmocka_unit_test(test_bucket_huge_idle),
        cmocka_unit_test(test_bucket_per_minute),
        cmocka_unit_test(test_bucket_no_drift),
        cmocka_unit_test(test_bucket_check_does_not_mutate),
        cmocka_unit_test(test_bucket_take_saturates),
        cmocka_unit_test(test_bucket_consume_is_check_then_take),
        cmocka_unit_test(test_bucket_settle),
        cmocka_unit_test(test_bucket_money),
    };

    return cmocka_run_group_tests_name("bucket", tests, NULL, NULL);
}
