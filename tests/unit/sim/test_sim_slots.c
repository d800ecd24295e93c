/*
 * ai-sim's decode slots and their FIFO queue (backends/ai-sim/sim_slots.c):
 * tables of arrivals, departures and promotions, with the running and
 * waiting counts and the order in which queued requests start.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "sim_slots.h"


#define N_LINKS  8

enum {
    OP_END = 0,
    OP_ENTER,                /* link: expect its state */
    OP_LEAVE,                /* link */
    OP_NEXT,                 /* expect the link promoted, -1 for none */
    OP_COUNT                 /* expect running, waiting */
};

typedef struct {
    int       op;
    int       link;
    int       a;             /* state, link, or running */
    int       b;             /* waiting */
} op_t;

typedef struct {
    const char  *name;
    unsigned     limit;
    op_t         ops[24];
} scenario_t;


#define R  SIM_SLOT_RUNNING
#define W  SIM_SLOT_WAITING


static const scenario_t  scenarios[] = {

    { "no limit: everything runs, nothing waits", 0, {
        { OP_ENTER, 0, R, 0 }, { OP_ENTER, 1, R, 0 },
        { OP_ENTER, 2, R, 0 }, { OP_COUNT, 0, 3, 0 },
        { OP_NEXT, 0, -1, 0 },
        { OP_LEAVE, 1, 0, 0 }, { OP_COUNT, 0, 2, 0 },
        { OP_END, 0, 0, 0 } } },

    { "two slots: the third and fourth wait, start in arrival order", 2, {
        { OP_ENTER, 0, R, 0 }, { OP_ENTER, 1, R, 0 },
        { OP_ENTER, 2, W, 0 }, { OP_ENTER, 3, W, 0 },
        { OP_COUNT, 0, 2, 2 },
        { OP_NEXT, 0, -1, 0 },                   /* no slot free */
        { OP_LEAVE, 1, 0, 0 }, { OP_COUNT, 0, 1, 2 },
        { OP_NEXT, 0, 2, 0 }, { OP_NEXT, 0, -1, 0 },
        { OP_COUNT, 0, 2, 1 },
        { OP_LEAVE, 0, 0, 0 },
        { OP_NEXT, 0, 3, 0 }, { OP_COUNT, 0, 2, 0 },
        { OP_END, 0, 0, 0 } } },

    { "a client leaving the queue gives its place back", 1, {
        { OP_ENTER, 0, R, 0 }, { OP_ENTER, 1, W, 0 },
        { OP_ENTER, 2, W, 0 }, { OP_ENTER, 3, W, 0 },
        { OP_LEAVE, 2, 0, 0 },                   /* from the middle */
        { OP_COUNT, 0, 1, 2 },
        { OP_LEAVE, 3, 0, 0 },                   /* from the tail */
        { OP_LEAVE, 0, 0, 0 },
        { OP_NEXT, 0, 1, 0 }, { OP_NEXT, 0, -1, 0 },
        { OP_COUNT, 0, 1, 0 },
        { OP_END, 0, 0, 0 } } },

    { "the queue's head leaving: the next in line starts", 1, {
        { OP_ENTER, 0, R, 0 }, { OP_ENTER, 1, W, 0 },
        { OP_ENTER, 2, W, 0 },
        { OP_LEAVE, 1, 0, 0 }, { OP_LEAVE, 0, 0, 0 },
        { OP_NEXT, 0, 2, 0 }, { OP_COUNT, 0, 1, 0 },
        { OP_END, 0, 0, 0 } } },

    { "a newcomer never overtakes a waiting request", 1, {
        { OP_ENTER, 0, R, 0 }, { OP_ENTER, 1, W, 0 },
        { OP_LEAVE, 0, 0, 0 },                   /* slot free, not given */
        { OP_ENTER, 2, W, 0 },
        { OP_NEXT, 0, 1, 0 }, { OP_NEXT, 0, -1, 0 },
        { OP_COUNT, 0, 1, 1 },
        { OP_END, 0, 0, 0 } } },

    { "leaving twice, or never entered, changes nothing", 1, {
        { OP_LEAVE, 5, 0, 0 }, { OP_COUNT, 0, 0, 0 },
        { OP_ENTER, 0, R, 0 }, { OP_ENTER, 1, W, 0 },
        { OP_LEAVE, 1, 0, 0 }, { OP_LEAVE, 1, 0, 0 },
        { OP_COUNT, 0, 1, 0 },
        { OP_LEAVE, 0, 0, 0 }, { OP_LEAVE, 0, 0, 0 },
        { OP_COUNT, 0, 0, 0 }, { OP_NEXT, 0, -1, 0 },
        { OP_END, 0, 0, 0 } } },

    { "a link may enter again once it left", 1, {
        { OP_ENTER, 0, R, 0 }, { OP_LEAVE, 0, 0, 0 },
        { OP_ENTER, 0, R, 0 }, { OP_ENTER, 1, W, 0 },
        { OP_LEAVE, 1, 0, 0 }, { OP_ENTER, 1, W, 0 },
        { OP_COUNT, 0, 1, 1 },
        { OP_END, 0, 0, 0 } } },
};


static void
run_scenario(const scenario_t *sc)
{
    int               i;
    unsigned          state;
    const op_t       *op;
    sim_slots_t       s;
    sim_slot_link_t   links[N_LINKS], *l;

    memset(links, 0, sizeof(links));
    sim_slots_init(&s, sc->limit);

    for (i = 0, op = sc->ops; op->op != OP_END; i++, op++) {

        switch (op->op) {

        case OP_ENTER:
            state = sim_slots_enter(&s, &links[op->link]);
            if (state != (unsigned) op->a) {
                print_error("%s: step %d: link %d entered as %u, "
                            "expected %d\n", sc->name, i, op->link, state,
                            op->a);
                fail();
            }
            break;

        case OP_LEAVE:
            sim_slots_leave(&s, &links[op->link]);
            assert_int_equal(links[op->link].state, SIM_SLOT_IDLE);
            break;

        case OP_NEXT:
            l = sim_slots_next(&s);
            if ((op->a < 0 && l != NULL)
                || (op->a >= 0 && l != &links[op->a]))
            {
                print_error("%s: step %d: promoted link %d, expected %d\n",
                            sc->name, i,
                            l ? (int) (l - links) : -1, op->a);
                fail();
            }

            if (l != NULL) {
                assert_int_equal(l->state, SIM_SLOT_RUNNING);
            }
            break;

        case OP_COUNT:
            if (s.running != (unsigned) op->a
                || s.waiting != (unsigned) op->b)
            {
                print_error("%s: step %d: running %u waiting %u, expected "
                            "%d and %d\n", sc->name, i, s.running,
                            s.waiting, op->a, op->b);
                fail();
            }
            break;
        }

        if (sc->limit > 0) {
            assert_true(s.running <= sc->limit);
        }
    }
}


static void
test_slots_scenarios(void **state)
{
    size_t  i;

    for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        run_scenario(&scenarios[i]);
    }
}


/* thousands waiting, leaving from everywhere: the counts stay exact */
static void
test_slots_many(void **state)
{
    size_t            i, n, started, last, idx;
    sim_slots_t       s;
    sim_slot_link_t  *l, *running[10];

    static sim_slot_link_t  links[5000];

    sim_slots_init(&s, 10);

    for (i = 0; i < 5000; i++) {
        sim_slots_enter(&s, &links[i]);
    }

    assert_int_equal(s.running, 10);
    assert_int_equal(s.waiting, 4990);

    /* every third waiting client gives up */
    for (i = 10; i < 5000; i += 3) {
        sim_slots_leave(&s, &links[i]);
    }

    assert_int_equal(s.waiting, 4990 - 1664);

    for (n = 0; n < 10; n++) {
        running[n] = &links[n];
    }

    /* the running ones finish one at a time, and the queue drains */
    started = 0;
    last = 9;

    while (n > 0) {
        sim_slots_leave(&s, running[--n]);

        while ((l = sim_slots_next(&s)) != NULL) {
            /* oldest first, and none of those who left */
            idx = (size_t) (l - links);
            assert_true(idx > last);
            assert_true(idx % 3 != 1);
            last = idx;
            running[n++] = l;
            started++;
        }

        assert_true(s.running == n);
    }

    assert_int_equal(started, 4990 - 1664);
    assert_int_equal(s.running, 0);
    assert_int_equal(s.waiting, 0);
}


/*
 * --kv-cache-tokens: a sequence starts only while its tokens fit beside
 * the running ones; the queue stays FIFO; one larger than the cache runs
 * alone; leaving gives the tokens back.
 */
static void
test_slots_kv_tokens(void **state)
{
    sim_slots_t       s;
    sim_slot_link_t   links[N_LINKS];

    memset(links, 0, sizeof(links));
    sim_slots_init(&s, 0);
    sim_slots_set_token_limit(&s, 100);

    links[0].tokens = 60;                /* a long generation */
    links[1].tokens = 50;                /* does not fit beside it */
    links[2].tokens = 10;                /* would fit, but comes after */
    links[3].tokens = 150;               /* larger than the cache */
    links[4].tokens = 30;

    assert_int_equal(sim_slots_enter(&s, &links[0]), R);
    assert_int_equal(sim_slots_enter(&s, &links[1]), W);
    assert_int_equal(sim_slots_enter(&s, &links[2]), W);
    assert_true(s.tokens == 60);
    assert_null(sim_slots_next(&s));

    /* the long one ends: both start, in their order */
    sim_slots_leave(&s, &links[0]);
    assert_true(s.tokens == 0);
    assert_ptr_equal(sim_slots_next(&s), &links[1]);
    assert_ptr_equal(sim_slots_next(&s), &links[2]);
    assert_null(sim_slots_next(&s));
    assert_true(s.tokens == 60);
    assert_int_equal(s.running, 2);

    /* too large for the cache: waits until nothing runs, then runs alone */
    assert_int_equal(sim_slots_enter(&s, &links[3]), W);
    assert_int_equal(sim_slots_enter(&s, &links[4]), W);
    sim_slots_leave(&s, &links[1]);
    assert_null(sim_slots_next(&s));
    sim_slots_leave(&s, &links[2]);
    assert_ptr_equal(sim_slots_next(&s), &links[3]);
    assert_null(sim_slots_next(&s));
    assert_true(s.tokens == 150);

    /* a queued sequence that leaves reserves nothing */
    sim_slots_leave(&s, &links[4]);
    sim_slots_leave(&s, &links[3]);
    assert_true(s.tokens == 0);
    assert_int_equal(s.running, 0);
    assert_int_equal(s.waiting, 0);

    /* with both limits, the slot count still holds */
    sim_slots_init(&s, 1);
    sim_slots_set_token_limit(&s, 100);
    links[0].tokens = 10;
    links[1].tokens = 10;
    assert_int_equal(sim_slots_enter(&s, &links[0]), R);
    assert_int_equal(sim_slots_enter(&s, &links[1]), W);
    assert_null(sim_slots_next(&s));
}


/* without a token limit the tokens of a link change nothing */
static void
test_slots_tokens_ignored_without_limit(void **state)
{
    sim_slots_t       s;
    sim_slot_link_t   links[N_LINKS];

    memset(links, 0, sizeof(links));
    sim_slots_init(&s, 2);

    links[0].tokens = 1000000;
    links[1].tokens = 1000000;
    assert_int_equal(sim_slots_enter(&s, &links[0]), R);
    assert_int_equal(sim_slots_enter(&s, &links[1]), R);
    assert_int_equal(sim_slots_enter(&s, &links[2]), W);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_scenarios),
        cmocka_unit_test(test_slots_many),
        cmocka_unit_test(test_slots_kv_tokens),
        cmocka_unit_test(test_slots_tokens_ignored_without_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
