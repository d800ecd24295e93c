/*
 * ai-sim's decode step as a function of the running batch's KV tokens
 * (backends/ai-sim/sim_batch.c, --decode-us-per-kv-token).
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sim_batch.h"


#define EPS  1e-9


/* off (the default): a step is --tpot-ms whatever the batch holds */
static void
test_batch_off(void **state)
{
    sim_batch_t  b;

    sim_batch_init(&b, 0);
    assert_true(sim_batch_step_ms(&b, 10.0) == 10.0);

    sim_batch_hold(&b, 100000);
    assert_true(sim_batch_step_ms(&b, 10.0) == 10.0);
    assert_true(sim_batch_step_ms(&b, 0.0) == 0.0);
}


/* base + tokens x U microseconds, the tokens as held now */
static void
test_batch_step_grows_with_tokens(void **state)
{
    sim_batch_t  b;

    sim_batch_init(&b, 1.5);
    assert_float_equal(sim_batch_step_ms(&b, 10.0), 10.0, EPS);

    /* a 2,000-token prompt: 3 ms more per step */
    sim_batch_hold(&b, 2000);
    assert_float_equal(sim_batch_step_ms(&b, 10.0), 13.0, EPS);

    /* another sequence's 16-token prompt, then 4 decoded tokens */
    sim_batch_hold(&b, 16);
    sim_batch_hold(&b, 1);
    sim_batch_hold(&b, 1);
    sim_batch_hold(&b, 1);
    sim_batch_hold(&b, 1);
    assert_int_equal(b.tokens, 2020);
    assert_float_equal(sim_batch_step_ms(&b, 10.0), 13.03, EPS);

    /* the first token's step: --ttft-ms plus the prefill, plus the reads */
    assert_float_equal(sim_batch_step_ms(&b, 20.0 + 4.8), 24.8 + 3.03, EPS);

    /* the long one ends: the others' steps are fast again */
    sim_batch_release(&b, 2000);
    assert_int_equal(b.tokens, 20);
    assert_float_equal(sim_batch_step_ms(&b, 10.0), 10.03, EPS);

    sim_batch_release(&b, 20);
    assert_int_equal(b.tokens, 0);
    assert_float_equal(sim_batch_step_ms(&b, 10.0), 10.0, EPS);
}


/* more tokens held never make a step shorter */
static void
test_batch_monotonic(void **state)
{
    double       last, step;
    uint64_t     i;
    sim_batch_t  b;

    sim_batch_init(&b, 0.4);
    last = sim_batch_step_ms(&b, 10.0);

    for (i = 0; i < 100000; i++) {
        sim_batch_hold(&b, 1);
        step = sim_batch_step_ms(&b, 10.0);
        assert_true(step >= last);
        last = step;
    }

    /* 100,000 tokens x 0.4 us: 40 ms more */
    assert_float_equal(last, 50.0, 1e-6);
}


/* a release never takes the count below zero */
static void
test_batch_release_saturates(void **state)
{
    sim_batch_t  b;

    sim_batch_init(&b, 1.0);
    sim_batch_release(&b, 5);
    assert_int_equal(b.tokens, 0);

    sim_batch_hold(&b, 3);
    sim_batch_release(&b, 5);
    assert_int_equal(b.tokens, 0);
    assert_float_equal(sim_batch_step_ms(&b, 10.0), 10.0, EPS);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_off),
        cmocka_unit_test(test_batch_step_grows_with_tokens),
        cmocka_unit_test(test_batch_monotonic),
        cmocka_unit_test(test_batch_release_saturates),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
