/*
 * ai-sim's prefix cache (backends/ai-sim/sim_prefix.c): block hashing and
 * chains, lookups that stop at the first missing block, the last-token
 * rule, LRU eviction from the chains' ends, pinned blocks, the usage share
 * and the token counters, as tables of scenarios.
 *
 * A prompt is written as a string of blocks: each letter is one full
 * block (64 bytes, 16 tokens) of that letter, '+' is one byte more; so
 * "ab+" is 129 bytes, 33 tokens, 2 full blocks.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "sim_prefix.h"


#define B   SIM_PREFIX_BLOCK_BYTES
#define T   SIM_PREFIX_BLOCK_TOKENS


static char *
prompt_text(const char *spec, size_t *len)
{
    char        *text, *p;
    const char  *s;

    text = malloc(strlen(spec) * B + 1);
    assert_non_null(text);

    for (p = text, s = spec; *s; s++) {
        if (*s == '+') {
            *p++ = '+';

        } else {
            memset(p, *s, B);
            p += B;
        }
    }

    *len = (size_t) (p - text);

    return text;
}


static void
seq_of(sim_prefix_seq_t *seq, const char *spec)
{
    char    *text;
    size_t   len;

    text = prompt_text(spec, &len);
    sim_prefix_seq_init(seq, 1);
    assert_int_equal(sim_prefix_seq_add(seq, text, len), 0);
    free(text);
}


/* hashing */


typedef struct {
    size_t    bytes;
    uint64_t  tokens;                    /* ceil(bytes / 4) */
    size_t    blocks;                    /* full blocks only */
} size_test_t;


static const size_test_t  sizes[] = {
    { 0, 0, 0 },
    { 1, 1, 0 },
    { 4, 1, 0 },
    { 5, 2, 0 },
    { 63, 16, 0 },
    { 64, 16, 1 },
    { 65, 17, 1 },
    { 127, 32, 1 },
    { 128, 32, 2 },
    { 1000, 250, 15 },
    { 8000, 2000, 125 },
};


static void
test_prefix_sizes(void **state)
{
    char              *text;
    size_t             i, j, n;
    sim_prefix_seq_t   whole, bytewise, counted;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        text = malloc(sizes[i].bytes + 1);
        assert_non_null(text);

        for (j = 0; j < sizes[i].bytes; j++) {
            text[j] = (char) ('a' + (j * 7) % 26);
        }

        sim_prefix_seq_init(&whole, 1);
        assert_int_equal(sim_prefix_seq_add(&whole, text, sizes[i].bytes),
                         0);

        /* the same hashes whatever the pieces the text comes in */
        sim_prefix_seq_init(&bytewise, 1);

        for (j = 0; j < sizes[i].bytes; j += n) {
            n = 1 + j % 5;
            if (n > sizes[i].bytes - j) {
                n = sizes[i].bytes - j;
            }

            assert_int_equal(sim_prefix_seq_add(&bytewise, text + j, n), 0);
        }

        /* without a cache the tokens are counted, nothing is hashed */
        sim_prefix_seq_init(&counted, 0);
        assert_int_equal(sim_prefix_seq_add(&counted, text, sizes[i].bytes),
                         0);

        if (sim_prefix_seq_tokens(&whole) != sizes[i].tokens
            || whole.nblocks != sizes[i].blocks)
        {
            print_error("%zu bytes: %llu tokens and %zu blocks, expected "
                        "%llu and %zu\n", sizes[i].bytes,
                        (unsigned long long) sim_prefix_seq_tokens(&whole),
                        whole.nblocks,
                        (unsigned long long) sizes[i].tokens,
                        sizes[i].blocks);
            fail();
        }

        assert_int_equal(bytewise.nblocks, whole.nblocks);

        if (whole.nblocks > 0) {
            assert_memory_equal(bytewise.hashes, whole.hashes,
                                whole.nblocks * sizeof(uint64_t));
        }

        assert_int_equal(sim_prefix_seq_tokens(&counted), sizes[i].tokens);
        assert_int_equal(counted.nblocks, 0);
        assert_null(counted.hashes);

        sim_prefix_seq_free(&whole);
        sim_prefix_seq_free(&bytewise);
        sim_prefix_seq_free(&counted);
        free(text);
    }
}


static void
test_prefix_chain(void **state)
{
    sim_prefix_seq_t  ab, ac, xb, ab2;

    seq_of(&ab, "abcd");
    seq_of(&ab2, "abcd+");
    seq_of(&ac, "abxd");
    seq_of(&xb, "xbcd");

    /* the same text before a block: the same hash */
    assert_true(ab.hashes[0] == ab2.hashes[0]);
    assert_true(ab.hashes[3] == ab2.hashes[3]);

    /* a block differs: it and every block after it, however alike */
    assert_true(ab.hashes[1] == ac.hashes[1]);
    assert_true(ab.hashes[2] != ac.hashes[2]);
    assert_true(ab.hashes[3] != ac.hashes[3]);

    /* the same block text after another first block: another hash */
    assert_true(ab.hashes[0] != xb.hashes[0]);
    assert_true(ab.hashes[1] != xb.hashes[1]);

    /* the same letters at other positions are other blocks */
    assert_true(ab.hashes[0] != ab.hashes[1]);

    sim_prefix_seq_free(&ab);
    sim_prefix_seq_free(&ab2);
    sim_prefix_seq_free(&ac);
    sim_prefix_seq_free(&xb);
}


/* scenarios of lookups, commits and releases */


enum {
    OP_END = 0,
    OP_LOOKUP,               /* seq, spec: expect hit tokens */
    OP_COMMIT,               /* seq: expect blocks it holds after */
    OP_RELEASE,              /* seq */
    OP_RUN,                  /* seq, spec: lookup, commit and release */
    OP_USED                  /* expect used and pinned blocks */
};

typedef struct {
    int           op;
    int           seq;
    const char   *spec;
    long          a;
    long          b;
} op_t;

typedef struct {
    const char   *name;
    uint64_t      capacity;              /* tokens */
    op_t          ops[24];
    uint64_t      queries;               /* tokens, at the end */
    uint64_t      hits;
} scenario_t;


static const scenario_t  scenarios[] = {

    { "a prompt seen before hits its full blocks", 1024, {
        { OP_LOOKUP, 0, "ab+", 0, 0 }, { OP_COMMIT, 0, NULL, 2, 0 },
        { OP_USED, 0, NULL, 2, 2 },
        { OP_RELEASE, 0, NULL, 0, 0 }, { OP_USED, 0, NULL, 2, 0 },
        { OP_LOOKUP, 1, "ab+", 2 * T, 0 }, { OP_USED, 0, NULL, 2, 2 },
        { OP_RELEASE, 1, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 33 + 33, 2 * T },

    { "a longer prompt hits the shared prefix, adds its own blocks", 1024, {
        { OP_RUN, 0, "ab+", 0, 0 },
        { OP_LOOKUP, 1, "abcd+", 2 * T, 0 }, { OP_COMMIT, 1, NULL, 4, 0 },
        { OP_RELEASE, 1, NULL, 0, 0 }, { OP_USED, 0, NULL, 4, 0 },
        { OP_LOOKUP, 2, "abcx+", 3 * T, 0 }, { OP_RELEASE, 2, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 33 + 65 + 65, 5 * T },

    { "a chain: a different first block misses everything", 1024, {
        { OP_RUN, 0, "abc+", 0, 0 },
        { OP_LOOKUP, 1, "xbc+", 0, 0 }, { OP_RELEASE, 1, NULL, 0, 0 },
        { OP_LOOKUP, 2, "axc+", 1 * T, 0 }, { OP_RELEASE, 2, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 3 * 49, 1 * T },

    { "the last token is always computed: an exact repeat of 2 blocks "
      "hits 1", 1024, {
        { OP_RUN, 0, "ab", 0, 0 },
        { OP_LOOKUP, 1, "ab", 1 * T, 0 }, { OP_RELEASE, 1, NULL, 0, 0 },
        { OP_LOOKUP, 2, "a", 0, 0 }, { OP_RELEASE, 2, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 32 + 32 + 16, 1 * T },

    { "full: the least recently used blocks go first", 4 * T, {
        { OP_RUN, 0, "ab+", 0, 0 },
        { OP_RUN, 1, "cd+", 0, 0 }, { OP_USED, 0, NULL, 4, 0 },
        { OP_RUN, 2, "ab+", 2 * T, 0 },          /* refreshes a, b */
        { OP_RUN, 3, "ef+", 0, 0 },              /* evicts c, d */
        { OP_USED, 0, NULL, 4, 0 },
        { OP_RUN, 4, "ab+", 2 * T, 0 },
        { OP_RUN, 5, "cd+", 0, 0 },              /* evicts e, f */
        { OP_END, 0, NULL, 0, 0 } }, 6 * 33, 4 * T },

    { "a chain is evicted from its end, its start stays", 4 * T, {
        { OP_RUN, 0, "abc+", 0, 0 }, { OP_USED, 0, NULL, 3, 0 },
        { OP_RUN, 1, "xy+", 0, 0 },              /* one new, evicts c */
        { OP_USED, 0, NULL, 4, 0 },
        { OP_LOOKUP, 2, "abc+", 2 * T, 0 }, { OP_RELEASE, 2, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 49 + 33 + 49, 2 * T },

    { "pinned blocks are never evicted; a prompt that cannot fit is "
      "not cached", 2 * T, {
        { OP_LOOKUP, 0, "ab+", 0, 0 }, { OP_COMMIT, 0, NULL, 2, 0 },
        { OP_USED, 0, NULL, 2, 2 },
        { OP_LOOKUP, 1, "cd+", 0, 0 }, { OP_COMMIT, 1, NULL, 0, 0 },
        { OP_RELEASE, 1, NULL, 0, 0 },
        { OP_LOOKUP, 2, "ab+", 2 * T, 0 },       /* still all there */
        { OP_RELEASE, 2, NULL, 0, 0 }, { OP_USED, 0, NULL, 2, 2 },
        { OP_RELEASE, 0, NULL, 0, 0 }, { OP_USED, 0, NULL, 2, 0 },
        { OP_LOOKUP, 3, "cd+", 0, 0 }, { OP_COMMIT, 3, NULL, 2, 0 },
        { OP_RELEASE, 3, NULL, 0, 0 },
        { OP_LOOKUP, 4, "ab+", 0, 0 }, { OP_RELEASE, 4, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 5 * 33, 2 * T },

    { "a chain stops at the first block that does not fit", 3 * T, {
        { OP_LOOKUP, 0, "ab+", 0, 0 }, { OP_COMMIT, 0, NULL, 2, 0 },
        { OP_LOOKUP, 1, "wxyz+", 0, 0 }, { OP_COMMIT, 1, NULL, 1, 0 },
        { OP_USED, 0, NULL, 3, 3 },
        { OP_RELEASE, 0, NULL, 0, 0 }, { OP_RELEASE, 1, NULL, 0, 0 },
        { OP_USED, 0, NULL, 3, 0 },
        { OP_LOOKUP, 2, "wxyz+", 1 * T, 0 }, { OP_RELEASE, 2, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 33 + 65 + 65, 1 * T },

    { "the same prompt twice at once: one copy of its blocks", 1024, {
        { OP_LOOKUP, 0, "abc+", 0, 0 }, { OP_LOOKUP, 1, "abc+", 0, 0 },
        { OP_COMMIT, 0, NULL, 3, 0 }, { OP_COMMIT, 1, NULL, 3, 0 },
        { OP_USED, 0, NULL, 3, 3 },
        { OP_RELEASE, 0, NULL, 0, 0 }, { OP_USED, 0, NULL, 3, 3 },
        { OP_RELEASE, 1, NULL, 0, 0 }, { OP_USED, 0, NULL, 3, 0 },
        { OP_RUN, 2, "abc+", 3 * T, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 3 * 49, 3 * T },

    { "a capacity below one block is no cache", 15, {
        { OP_RUN, 0, "ab+", 0, 0 }, { OP_RUN, 1, "ab+", 0, 0 },
        { OP_USED, 0, NULL, 0, 0 },
        { OP_END, 0, NULL, 0, 0 } }, 0, 0 },
};


static void
check_used(const char *name, int step, sim_prefix_cache_t *c, long used,
    long pinned)
{
    double  share;

    share = (c->capacity > 0) ? (double) used / c->capacity : 0;

    if (c->used != (uint32_t) used || c->pinned != (uint32_t) pinned
        || sim_prefix_usage(c) != share)
    {
        print_error("%s: step %d: %u blocks used, %u pinned, usage %f; "
                    "expected %ld, %ld, %f\n", name, step, c->used,
                    c->pinned, sim_prefix_usage(c), used, pinned, share);
        fail();
    }
}


static void
run_scenario(const scenario_t *sc)
{
    int                 i, k;
    uint64_t            hit;
    const op_t         *op;
    sim_prefix_seq_t    seqs[8];
    sim_prefix_cache_t  c;

    assert_int_equal(sim_prefix_cache_init(&c, sc->capacity), 0);

    for (k = 0; k < 8; k++) {
        sim_prefix_seq_init(&seqs[k], 1);
    }

    for (i = 0, op = sc->ops; op->op != OP_END; i++, op++) {

        switch (op->op) {

        case OP_RUN:
        case OP_LOOKUP:
            sim_prefix_seq_free(&seqs[op->seq]);
            seq_of(&seqs[op->seq], op->spec);

            hit = sim_prefix_lookup(&c, &seqs[op->seq]);

            if (hit != (uint64_t) op->a) {
                print_error("%s: step %d: \"%s\" hit %llu tokens, "
                            "expected %ld\n", sc->name, i, op->spec,
                            (unsigned long long) hit, op->a);
                fail();
            }

            if (op->op == OP_RUN) {
                sim_prefix_commit(&c, &seqs[op->seq]);
                sim_prefix_release(&c, &seqs[op->seq]);
            }

            break;

        case OP_COMMIT:
            sim_prefix_commit(&c, &seqs[op->seq]);

            if (seqs[op->seq].pinned != (uint32_t) op->a) {
                print_error("%s: step %d: sequence %d holds %u blocks, "
                            "expected %ld\n", sc->name, i, op->seq,
                            seqs[op->seq].pinned, op->a);
                fail();
            }

            break;

        case OP_RELEASE:
            sim_prefix_release(&c, &seqs[op->seq]);
            assert_int_equal(seqs[op->seq].pinned, 0);
            break;

        case OP_USED:
            check_used(sc->name, i, &c, op->a, op->b);
            break;
        }

        assert_true(c.used <= c.capacity);
        assert_true(c.pinned <= c.used);
    }

    if (c.query_tokens != sc->queries || c.hit_tokens != sc->hits) {
        print_error("%s: %llu tokens queried, %llu hit; expected %llu and "
                    "%llu\n", sc->name,
                    (unsigned long long) c.query_tokens,
                    (unsigned long long) c.hit_tokens,
                    (unsigned long long) sc->queries,
                    (unsigned long long) sc->hits);
        fail();
    }

    for (k = 0; k < 8; k++) {
        sim_prefix_seq_free(&seqs[k]);
    }

    sim_prefix_cache_free(&c);
}


static void
test_prefix_scenarios(void **state)
{
    size_t  i;

    for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        run_scenario(&scenarios[i]);
    }
}


/*
 * Many prompts through a small cache, in and out of order: the LRU list
 * and the hash table stay consistent (every cached block is found, the
 * counts add up), under ASan.
 */
static void
test_prefix_churn(void **state)
{
    int                 i, k;
    char                spec[8];
    uint64_t            hit;
    sim_prefix_seq_t    seqs[4];
    sim_prefix_cache_t  c;

    assert_int_equal(sim_prefix_cache_init(&c, 20 * T), 0);

    for (k = 0; k < 4; k++) {
        sim_prefix_seq_init(&seqs[k], 1);
    }

    for (i = 0; i < 2000; i++) {
        k = i % 4;

        sim_prefix_release(&c, &seqs[k]);
        sim_prefix_seq_free(&seqs[k]);

        /* 5 tenants' prefixes of 3 blocks, each with its own turn */
        spec[0] = (char) ('a' + (i * 3) % 5);
        spec[1] = (char) ('h' + (i * 3) % 5);
        spec[2] = (char) ('o' + (i * 3) % 5);
        spec[3] = (char) ('A' + i % 26);
        spec[4] = '+';
        spec[5] = '\0';

        seq_of(&seqs[k], spec);
        hit = sim_prefix_lookup(&c, &seqs[k]);
        assert_true(hit % T == 0 && hit <= 3 * T);
        sim_prefix_commit(&c, &seqs[k]);

        assert_true(c.used <= c.capacity);
        assert_true(c.pinned <= c.used);
    }

    for (k = 0; k < 4; k++) {
        sim_prefix_release(&c, &seqs[k]);
        sim_prefix_seq_free(&seqs[k]);
    }

    assert_int_equal(c.pinned, 0);
    assert_int_equal(c.used, 20);
    assert_true(c.hit_tokens > 0 && c.hit_tokens < c.query_tokens);

    sim_prefix_cache_free(&c);
}


static void
test_prefix_no_cache(void **state)
{
    sim_prefix_seq_t    seq;
    sim_prefix_cache_t  c;

    assert_int_equal(sim_prefix_cache_init(&c, 0), 0);

    seq_of(&seq, "ab+");
    assert_int_equal(sim_prefix_lookup(&c, &seq), 0);
    sim_prefix_commit(&c, &seq);
    sim_prefix_release(&c, &seq);
    sim_prefix_seq_free(&seq);

    assert_int_equal(c.query_tokens, 0);
    assert_int_equal(c.hit_tokens, 0);
    assert_true(sim_prefix_usage(&c) == 0);

    sim_prefix_cache_free(&c);

    /* above the largest size, the cache is the largest */
    assert_int_equal(sim_prefix_cache_init(&c, UINT64_MAX), 0);
    assert_int_equal(c.capacity, SIM_PREFIX_MAX_TOKENS / T);
    sim_prefix_cache_free(&c);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_sizes),
        cmocka_unit_test(test_prefix_chain),
        cmocka_unit_test(test_prefix_scenarios),
        cmocka_unit_test(test_prefix_churn),
        cmocka_unit_test(test_prefix_no_cache),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
