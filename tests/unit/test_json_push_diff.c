
/*
 * The push tokenizer (lib/agw_json_push.c) against its reference, the
 * tokenizer as it was before its fast paths (tests/ref/agw_json_push_ref.c):
 * for every input, cut anywhere, the same events in the same order (type,
 * depth, text, full length), the same verdict from every feed and from
 * finish, and the same stop when the handler asks to stop; and with a
 * handler that skips some keys' values (AGW_JSON_SKIP), on JSON, the
 * reference's events less those of the skipped values.  The answer
 * readers (agw_tokens.c, agw_usage.c, the request body watch) see nothing
 * of the tokenizer but its events and its verdicts, so what they read is
 * the same too.
 *
 * Inputs: the answers and events of the three APIs the gateway reads
 * (Chat Completions, Responses, Anthropic Messages), JSON's corners
 * (escapes, surrogates, numbers, literals, depth, whitespace, long texts),
 * and many mutations of them (bytes changed, inserted, deleted, spans
 * repeated, cut short), each fed whole, in two pieces cut at every byte
 * (the realistic ones), byte by byte, and in random pieces.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agw_json_push.h"
#include "../ref/agw_json_push_ref.c"
#include "json_push_corpus.h"


#define AGW_DIFF_MUTANTS   20000
#define AGW_DIFF_MAX       AGW_CORPUS_MAX


static uint64_t  diff_runs;             /* compared, to say how many */
static uint64_t  diff_bytes;
static uint64_t  diff_skim_parted;      /* skimming runs on broken JSON */


/* every event and verdict, as bytes, to compare two runs */

typedef struct {
    uint8_t   *buf;
    size_t     len;
    size_t     cap;
    uint64_t   events;
    uint64_t   stop_at;                  /* 0: never stop */
    unsigned   skims;                    /* some keys' values skipped */
    unsigned   ref;                      /* the reference's log */
    unsigned   pending;                  /* ref: the next value is skipped */
    unsigned   skipping;                 /* ref: inside a skipped container */
    unsigned   skip_depth;               /* ... opened at this depth */
} diff_log_t;


static void
diff_put(diff_log_t *l, const void *p, size_t n)
{
    if (l->len + n > l->cap) {
        l->cap = (l->len + n) * 2 + 256;
        l->buf = realloc(l->buf, l->cap);
        assert_non_null(l->buf);
    }

    memcpy(l->buf + l->len, p, n);
    l->len += n;
}


/*
 * Skipping (AGW_JSON_SKIP): the keys whose value the lib's handler skips,
 * a rule that hits about half of them at every depth.  The lib skims a
 * skipped string or container and says nothing of it; a number or a
 * literal goes by as usual.  The reference knows no skipping: its log
 * leaves out the events the lib's skim would not give.
 */

static int
diff_skipped(const agw_json_event_t *ev)
{
    return ev->type == AGW_JSON_KEY && ev->text_len
           && (ev->text[0] + ev->depth) % 2;
}


/* the reference's events less those of a skipped value: 1 to leave out */

static int
diff_ref_skims(diff_log_t *l, const agw_json_event_t *ev)
{
    if (l->skipping) {
        if ((ev->type == AGW_JSON_OBJECT_END || ev->type == AGW_JSON_ARRAY_END)
            && ev->depth == l->skip_depth)
        {
            l->skipping = 0;
        }

        return 1;
    }

    if (l->pending) {
        l->pending = 0;

        if (ev->type == AGW_JSON_OBJECT || ev->type == AGW_JSON_ARRAY) {
            l->skipping = 1;
            l->skip_depth = ev->depth;
            return 1;
        }

        if (ev->type == AGW_JSON_STRING) {
            return 1;
        }
    }

    l->pending = diff_skipped(ev);

    return 0;
}


static int
diff_event(void *ctx, const agw_json_event_t *ev)
{
    diff_log_t  *l = ctx;

    if (l->skims && l->ref && diff_ref_skims(l, ev)) {
        return 0;
    }

    assert_true(ev->text_len <= AGW_JSON_TEXT_MAX);
    assert_true(ev->text_len <= ev->full_len);

    diff_put(l, "E", 1);
    diff_put(l, &ev->type, sizeof(ev->type));
    diff_put(l, &ev->depth, sizeof(ev->depth));
    diff_put(l, &ev->full_len, sizeof(ev->full_len));
    diff_put(l, &ev->text_len, sizeof(ev->text_len));
    diff_put(l, ev->text, ev->text_len);

    if (++l->events == l->stop_at) {
        return 1;
    }

    return (l->skims && !l->ref && diff_skipped(ev)) ? AGW_JSON_SKIP : 0;
}


static void
diff_rc(diff_log_t *l, char what, int rc)
{
    diff_put(l, &what, 1);
    diff_put(l, &rc, sizeof(rc));
}


/* cuts: the ends of the pieces, the last one len */

static void
diff_run(const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts,
    uint64_t stop_at, diff_log_t *lib, diff_log_t *ref)
{
    int                   verdict;
    size_t                i, from;
    agw_json_push_t       j;
    agw_json_push_ref_t   r;

    lib->len = 0;
    lib->events = 0;
    lib->stop_at = stop_at;
    lib->ref = 0;
    ref->len = 0;
    ref->events = 0;
    ref->stop_at = stop_at;
    ref->ref = 1;
    ref->skims = lib->skims;
    ref->pending = 0;
    ref->skipping = 0;

    diff_runs++;
    diff_bytes += len;

    agw_json_push_init(&j, diff_event, lib);
    agw_json_push_ref_init(&r, diff_event, ref);

    for (i = 0, from = 0; i < ncuts; i++) {
        diff_rc(lib, 'F', agw_json_push_feed(&j, in + from, cuts[i] - from));
        diff_rc(ref, 'F', agw_json_push_ref_feed(&r, in + from,
                                                 cuts[i] - from));
        from = cuts[i];
    }

    diff_rc(lib, 'Z', agw_json_push_finish(&j));
    verdict = agw_json_push_ref_finish(&r);
    diff_rc(ref, 'Z', verdict);

    /*
     * what the lib skims it does not check: broken JSON may part them
     * (a stop comes before any break the reference found, or it would
     * not be the verdict)
     */

    if (lib->skims && verdict != AGW_JSON_OK && verdict != AGW_JSON_ESTOP) {
        diff_skim_parted++;
        return;
    }

    if (lib->len != ref->len || memcmp(lib->buf, ref->buf, lib->len) != 0) {
        print_error("differs from the reference (%zu pieces, stop at %llu):"
                    " %.*s\n", ncuts, (unsigned long long) stop_at,
                    (int) len, (const char *) in);
        fail();
    }
}


/* whole, two pieces cut at every byte, byte by byte */

static void
diff_every_cut(const uint8_t *in, size_t len, diff_log_t *a, diff_log_t *b)
{
    size_t  i, cuts[AGW_DIFF_MAX];

    cuts[0] = len;
    diff_run(in, len, cuts, 1, 0, a, b);

    for (i = 0; i <= len; i++) {
        cuts[0] = i;
        cuts[1] = len;
        diff_run(in, len, cuts, 2, 0, a, b);
    }

    for (i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }

    diff_run(in, len, cuts, len, 0, a, b);
}


/* random pieces, and a handler that stops at a random event */

static void
diff_random_cuts(const uint8_t *in, size_t len, diff_log_t *a,
    diff_log_t *b)
{
    size_t    i, n, at, cuts[AGW_DIFF_MAX];
    uint64_t  events;

    for (i = 0, n = 0, at = 0; at < len; i++) {
        at += 1 + diff_rand() % (i % 2 ? 3 : 40);

        if (at > len) {
            at = len;
        }

        cuts[n++] = at;
    }

    if (n == 0) {
        cuts[n++] = 0;
    }

    diff_run(in, len, cuts, n, 0, a, b);

    events = a->events;

    if (events) {
        diff_run(in, len, cuts, n, 1 + diff_rand() % events, a, b);
    }
}


/* the corpus, whole and cut; skims: the handler skipping some values */

static void
diff_corpus(unsigned skims)
{
    size_t       i, len;
    diff_log_t   a, b;

    memset(&a, 0, sizeof(diff_log_t));
    memset(&b, 0, sizeof(diff_log_t));
    a.skims = skims;

    for (i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        len = strlen(bases[i]);
        diff_every_cut((const uint8_t *) bases[i], len, &a, &b);
        diff_random_cuts((const uint8_t *) bases[i], len, &a, &b);
    }

    free(a.buf);
    free(b.buf);
}


static void
diff_mutants(unsigned skims)
{
    size_t       i, len;
    uint8_t     *buf;
    diff_log_t   a, b;

    memset(&a, 0, sizeof(diff_log_t));
    memset(&b, 0, sizeof(diff_log_t));
    a.skims = skims;

    buf = malloc(AGW_DIFF_MAX);
    assert_non_null(buf);

    for (i = 0; i < AGW_DIFF_MUTANTS; i++) {
        len = strlen(bases[i % (sizeof(bases) / sizeof(bases[0]))]);
        memcpy(buf, bases[i % (sizeof(bases) / sizeof(bases[0]))], len);

        len = diff_mutate(buf, len);

        if (i % 8 == 0) {
            diff_every_cut(buf, len, &a, &b);
        }

        diff_random_cuts(buf, len, &a, &b);
        diff_random_cuts(buf, len, &a, &b);
    }

    free(buf);
    free(a.buf);
    free(b.buf);
}


static void
test_push_same_as_reference(void **state)
{
    diff_corpus(0);
}


static void
test_push_same_as_reference_when_mutated(void **state)
{
    diff_mutants(0);
}


/* random bytes from JSON's alphabet: mostly errors, at every place */

static void
test_push_same_as_reference_on_noise(void **state)
{
    size_t       i, k, len;
    uint8_t      buf[256];
    diff_log_t   a, b;

    memset(&a, 0, sizeof(diff_log_t));
    memset(&b, 0, sizeof(diff_log_t));

    for (i = 0; i < 4000; i++) {
        len = diff_rand() % sizeof(buf);

        for (k = 0; k < len; k++) {
            buf[k] = (uint8_t) alphabet[diff_rand() % (sizeof(alphabet) - 1)];
        }

        diff_random_cuts(buf, len, &a, &b);
    }

    free(a.buf);
    free(b.buf);
}


/* the same inputs, the handler skipping some keys' values */

static void
test_skim_same_as_reference_less_skipped(void **state)
{
    diff_corpus(1);
    diff_mutants(1);
}


int
main(void)
{
    int                      rc;
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_push_same_as_reference),
        cmocka_unit_test(test_push_same_as_reference_when_mutated),
        cmocka_unit_test(test_push_same_as_reference_on_noise),
        cmocka_unit_test(test_skim_same_as_reference_less_skipped),
    };

    rc = cmocka_run_group_tests(tests, NULL, NULL);

    printf("push tokenizer and reference: %llu runs, %llu bytes, compared"
           " (skimming: %llu runs on broken JSON not compared)\n",
           (unsigned long long) diff_runs, (unsigned long long) diff_bytes,
           (unsigned long long) diff_skim_parted);

    return rc;
}
