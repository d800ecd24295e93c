
/*
 * The answer readers (lib/agw_usage.c over lib/agw_tokens.c and the push
 * tokenizer) against their references, the readers as they were before
 * the tokenizer's fast paths (tests/ref/agw_usage_ref.c): for every
 * answer and every stream, cut anywhere, after every piece, the same
 * usage (each figure and whether it was given), the same count of
 * content events (the metrics' first and last content times follow it),
 * the same count of events, and for a JSON answer the same type and,
 * when the reference's is AGW_JSON_OK, the same verdict.
 *
 * The lib's readers skim the values on no path they follow (AGW_JSON_SKIP)
 * where the reference checks every byte, so on broken JSON they may part:
 * the comparison holds as long as the reference has found nothing wrong
 * (a JSON answer's tokenizer, or that of the stream's event being read,
 * still AGW_JSON_OK; no stream event before that was neither JSON nor
 * [DONE]).  On JSON, and on every stream of it, they
 * must agree throughout.  A JSON answer's content flag is not compared:
 * the lib's reader of answers skims "choices", which only streams read.
 *
 * Streams are made of the answers of json_push_corpus.h as SSE events
 * (data lines, event types, [DONE], comments, CR LF), and mutated as
 * whole streams too, so a change can land in the SSE framing as well as
 * in an event's JSON.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agw_usage.h"
#include "../ref/agw_usage_ref.c"
#include "json_push_corpus.h"


#define AGW_DIFF_STREAMS  6000


static uint64_t  diff_runs;              /* compared, to say how many */
static uint64_t  diff_bytes;
static uint64_t  diff_valid;             /* JSON answers the reference took */
static uint64_t  diff_compared;          /* comparisons made */
static uint64_t  diff_parted;            /* ... and left, after broken JSON */


static void
diff_same_usage(const agw_usage_t *a, const agw_usage_t *b)
{
    assert_int_equal(a->has_total, b->has_total);
    assert_int_equal(a->has_input, b->has_input);
    assert_int_equal(a->has_output, b->has_output);
    assert_int_equal(a->has_cached, b->has_cached);
    assert_int_equal(a->has_cache_read, b->has_cache_read);
    assert_int_equal(a->has_cache_write, b->has_cache_write);

    /* a figure not given may hold anything; both readers zero them */

    assert_int_equal(a->total, b->total);
    assert_int_equal(a->input, b->input);
    assert_int_equal(a->output, b->output);
    assert_int_equal(a->cached, b->cached);
    assert_int_equal(a->cache_read, b->cache_read);
    assert_int_equal(a->cache_write, b->cache_write);
}


static void
diff_same(agw_usage_reader_t *lib, agw_usage_ref_reader_t *ref)
{
    int          a, b;
    agw_usage_t  ua, ub;

    if (agw_usage_ref_reader_broken(ref)) {
        diff_parted++;
        return;
    }

    diff_compared++;

    a = agw_usage_reader_usage(lib, &ua);
    b = agw_usage_ref_reader_usage(ref, &ub);

    assert_int_equal(a, b);
    diff_same_usage(&ua, &ub);

    assert_int_equal(lib->content, ref->content);
    assert_int_equal(lib->events, ref->events);
    assert_int_equal(lib->stream_usage, ref->stream_usage);
    assert_int_equal(lib->answer.type, ref->answer.type);

    if (lib->mode == AGW_USAGE_SSE) {
        assert_int_equal(lib->answer.content, ref->answer.content);
    }
}


/* cuts: the ends of the pieces, the last one len */

static void
diff_run(unsigned mode, const uint8_t *in, size_t len, const size_t *cuts,
    size_t ncuts)
{
    size_t                   i, from;
    agw_usage_reader_t       lib;
    agw_usage_ref_reader_t   ref;

    diff_runs++;
    diff_bytes += len;

    agw_usage_reader_init(&lib, mode);
    agw_usage_ref_reader_init(&ref, mode);

    for (i = 0, from = 0; i < ncuts; i++) {
        agw_usage_reader_feed(&lib, in + from, cuts[i] - from);
        agw_usage_ref_reader_feed(&ref, in + from, cuts[i] - from);
        from = cuts[i];

        diff_same(&lib, &ref);
    }

    if (mode == AGW_USAGE_JSON) {
        if (agw_answer_ref_finish(&ref.answer) == AGW_JSON_OK) {
            assert_int_equal(agw_answer_finish(&lib.answer), AGW_JSON_OK);
            diff_valid++;

        } else {
            (void) agw_answer_finish(&lib.answer);
        }

        diff_same(&lib, &ref);
    }
}


static void
diff_cuts(unsigned mode, const uint8_t *in, size_t len, int every)
{
    size_t  i, n, at, cuts[AGW_CORPUS_MAX * 4];

    cuts[0] = len;
    diff_run(mode, in, len, cuts, 1);

    if (every) {
        for (i = 0; i <= len; i++) {
            cuts[0] = i;
            cuts[1] = len;
            diff_run(mode, in, len, cuts, 2);
        }

        for (i = 0; i < len; i++) {
            cuts[i] = i + 1;
        }

        diff_run(mode, in, len, cuts, len);
    }

    for (i = 0, n = 0, at = 0; at < len; i++) {
        at += 1 + diff_rand() % (i % 2 ? 5 : 90);

        if (at > len) {
            at = len;
        }

        cuts[n++] = at;
    }

    if (n) {
        diff_run(mode, in, len, cuts, n);
    }
}


/* a stream of events made of corpus answers, its framing varied */

static size_t
diff_stream(uint8_t *buf, size_t cap)
{
    size_t       len, k, events;
    const char  *b, *eol;

    len = 0;
    events = 1 + diff_rand() % 8;
    eol = (diff_rand() % 4) ? "\n" : "\r\n";

    for (k = 0; k < events; k++) {
        b = (diff_rand() % 10 == 0) ? "[DONE]"
                                    : bases[diff_rand() % AGW_CORPUS_BASES];

        if (!diff_sse_event(buf, &len, cap, eol, (const uint8_t *) b,
                            strlen(b)))
        {
            break;
        }
    }

    return len;
}


static void
test_usage_same_as_reference_for_answers(void **state)
{
    size_t    i, len;
    uint8_t  *buf;

    buf = malloc(AGW_CORPUS_MAX);
    assert_non_null(buf);

    for (i = 0; i < AGW_CORPUS_BASES; i++) {
        len = strlen(bases[i]);
        diff_cuts(AGW_USAGE_JSON, (const uint8_t *) bases[i], len, 1);
    }

    for (i = 0; i < AGW_DIFF_STREAMS; i++) {
        len = strlen(bases[i % AGW_CORPUS_BASES]);
        memcpy(buf, bases[i % AGW_CORPUS_BASES], len);
        len = diff_mutate(buf, len);
        diff_cuts(AGW_USAGE_JSON, buf, len, i % 16 == 0);
    }

    free(buf);
}


static void
test_usage_same_as_reference_for_streams(void **state)
{
    size_t    i, len;
    uint8_t  *buf;

    buf = malloc(AGW_CORPUS_MAX * 4);
    assert_non_null(buf);

    for (i = 0; i < AGW_DIFF_STREAMS; i++) {
        len = diff_stream(buf, AGW_CORPUS_MAX * 4);

        if (i % 2) {
            if (len >= AGW_CORPUS_MAX) {
                len = AGW_CORPUS_MAX - 1;
            }

            len = diff_mutate(buf, len);
        }

        diff_cuts(AGW_USAGE_SSE, buf, len, i % 8 == 0 && len <= 1024);
    }

    free(buf);
}


int
main(void)
{
    int                      rc;
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_usage_same_as_reference_for_answers),
        cmocka_unit_test(test_usage_same_as_reference_for_streams),
    };

    rc = cmocka_run_group_tests(tests, NULL, NULL);

    printf("answer readers and reference: %llu runs, %llu bytes, compared"
           " (%llu whole JSON answers; %llu comparisons made, %llu left"
           " after broken JSON)\n",
           (unsigned long long) diff_runs, (unsigned long long) diff_bytes,
           (unsigned long long) diff_valid,
           (unsigned long long) diff_compared,
           (unsigned long long) diff_parted);

    return rc;
}
