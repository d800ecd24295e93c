
/*
 * A stream's reader with its memo (agw_usage_reader_memo()) against the
 * same reader without: the memo takes an event that starts as the one
 * before it from the reader's state after their shared start, and that
 * must change nothing.  After every piece of every stream, cut anywhere,
 * both give the same usage (each figure and whether it was given), the
 * same counts of content events and events, and the current event's
 * reader says the same (its verdict so far, its content flag, its type).
 * On any input, broken JSON included: the memo's state is the state the
 * same bytes give, whatever they are.
 *
 * The streams are what the memo is for: events that are one corpus answer
 * (json_push_corpus.h) changed a little, each in its own way, so that the
 * shared start ends anywhere (inside a string, an escape, a number, a
 * literal, a key, between tokens, in broken JSON), with now and then
 * another answer, [DONE], an event type, a comment, a data line cut in
 * two, CR LF.
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
#include "json_push_corpus.h"


#define MEMO_STREAMS  16000
#define MEMO_CAP      (AGW_CORPUS_MAX * 16)


static uint64_t  memo_runs;
static uint64_t  memo_events;


static void
memo_same(agw_usage_reader_t *with, agw_usage_reader_t *without)
{
    int          a, b;
    agw_usage_t  ua, ub;

    a = agw_usage_reader_usage(with, &ua);
    b = agw_usage_reader_usage(without, &ub);

    assert_int_equal(a, b);
    assert_int_equal(ua.has_total, ub.has_total);
    assert_int_equal(ua.has_input, ub.has_input);
    assert_int_equal(ua.has_output, ub.has_output);
    assert_int_equal(ua.has_cached, ub.has_cached);
    assert_int_equal(ua.has_cache_read, ub.has_cache_read);
    assert_int_equal(ua.has_cache_write, ub.has_cache_write);
    assert_int_equal(ua.total, ub.total);
    assert_int_equal(ua.input, ub.input);
    assert_int_equal(ua.output, ub.output);
    assert_int_equal(ua.cached, ub.cached);
    assert_int_equal(ua.cache_read, ub.cache_read);
    assert_int_equal(ua.cache_write, ub.cache_write);

    assert_int_equal(with->content, without->content);
    assert_int_equal(with->events, without->events);
    assert_int_equal(with->stream_usage, without->stream_usage);
    assert_int_equal(with->in_event, without->in_event);

    if (with->in_event) {
        assert_int_equal(with->answer.json.rc, without->answer.json.rc);
        assert_int_equal(with->answer.json.state, without->answer.json.state);
        assert_int_equal(with->answer.json.depth, without->answer.json.depth);
        assert_int_equal(with->answer.content, without->answer.content);
        assert_int_equal(with->answer.type, without->answer.type);
        assert_int_equal(with->answer.usage_depth,
                         without->answer.usage_depth);
    }
}


static void
memo_run(const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts)
{
    size_t              i, from;
    agw_usage_memo_t    memo;
    agw_usage_reader_t  with, without;

    memo_runs++;

    agw_usage_reader_init(&with, AGW_USAGE_SSE);
    agw_usage_reader_memo(&with, &memo);
    agw_usage_reader_init(&without, AGW_USAGE_SSE);

    for (i = 0, from = 0; i < ncuts; i++) {
        agw_usage_reader_feed(&with, in + from, cuts[i] - from);
        agw_usage_reader_feed(&without, in + from, cuts[i] - from);
        from = cuts[i];

        memo_same(&with, &without);
    }

    memo_events += without.events;
}


/* every cut once, one byte at a time, and random pieces */

static void
memo_cuts(const uint8_t *in, size_t len, int every)
{
    size_t   i, n, at, *cuts;

    cuts = malloc((len + 2) * sizeof(size_t));
    assert_non_null(cuts);

    cuts[0] = len;
    memo_run(in, len, cuts, 1);

    if (every) {
        for (i = 0; i <= len; i += 1 + diff_rand() % 7) {
            cuts[0] = i;
            cuts[1] = len;
            memo_run(in, len, cuts, 2);
        }

        for (i = 0; i < len; i++) {
            cuts[i] = i + 1;
        }

        memo_run(in, len, cuts, len);
    }

    for (i = 0, n = 0, at = 0; at < len; i++) {
        at += 1 + diff_rand() % (i % 2 ? 7 : 400);

        if (at > len) {
            at = len;
        }

        cuts[n++] = at;
    }

    memo_run(in, len, cuts, n);

    free(cuts);
}


/* one answer, changed a little in a few places (or not at all) */

static size_t
memo_variant(uint8_t *out, const char *base)
{
    size_t  n, k, at;

    n = strlen(base);
    memcpy(out, base, n);

    for (k = diff_rand() % 3; k && n; k--) {
        at = diff_rand() % n;

        switch (diff_rand() % 4) {

        case 0:                          /* a byte that makes sense there */
            out[at] = (uint8_t) "0123456789abcdez\"\\{}[],: \xc3\xa9"
                                [diff_rand() % 27];
            break;

        case 1:                          /* a byte of anything */
            out[at] = (uint8_t) diff_rand();
            break;

        case 2:                          /* a digit or a letter moved on */
            if ((out[at] >= '0' && out[at] < '9')
                || (out[at] >= 'a' && out[at] < 'z'))
            {
                out[at]++;
            }
            break;

        default:                         /* shorter */
            n = at ? at : n;
        }
    }

    return n;
}


static size_t
memo_stream(uint8_t *buf, size_t cap)
{
    size_t       len, n, k, events;
    uint8_t      ev[AGW_CORPUS_MAX];
    const char  *base, *eol;

    len = 0;
    events = 2 + diff_rand() % 24;
    eol = (diff_rand() % 4) ? "\n" : "\r\n";
    base = bases[diff_rand() % AGW_CORPUS_BASES];

    for (k = 0; k < events; k++) {

        switch (diff_rand() % 16) {

        case 0:
            n = 6;
            memcpy(ev, "[DONE]", 6);
            break;

        case 1:                          /* the stream moves to another */
            base = bases[diff_rand() % AGW_CORPUS_BASES];
            /* fall through */

        default:
            n = memo_variant(ev, base);

            if (diff_rand() % 8 == 0) {
                n = diff_mutate(ev, n);  /* inserted, deleted, repeated */
            }
        }

        if (!diff_sse_event(buf, &len, cap, eol, ev, n)) {
            break;
        }
    }

    return len;
}


static void
test_memo_changes_nothing(void **state)
{
    size_t    i, len;
    uint8_t  *buf;

    buf = malloc(MEMO_CAP);
    assert_non_null(buf);

    for (i = 0; i < MEMO_STREAMS; i++) {
        len = memo_stream(buf, MEMO_CAP);
        memo_cuts(buf, len, i % 40 == 0);
    }

    free(buf);
}


/*
 * An OpenAI stream whose content events share their start up to the
 * content's opening quote (escapes and an empty content among them): the
 * figures it reports, with the memo, cut every way
 */

static void
test_memo_reads_a_chat_stream(void **state)
{
    size_t              i, len;
    uint8_t             buf[8192];
    agw_usage_t         usage;
    agw_usage_memo_t    memo;
    agw_usage_reader_t  u;

    static const char  head[] =
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
        "\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
        "\"delta\":{\"content\":\"";
    static const char  *tokens[] = {
        "Hello", " wor", "ld", "", " \\\"quoted\\\"", " \\u00e9", "!"
    };

    len = 0;

    for (i = 0; i < 7; i++) {
        len += (size_t) snprintf((char *) buf + len, sizeof(buf) - len,
                                 "%s%s\"},\"finish_reason\":null}]}\n\n",
                                 head, tokens[i]);
    }

    len += (size_t) snprintf((char *) buf + len, sizeof(buf) - len,
                             "data: {\"id\":\"chatcmpl-1\",\"choices\":[],"
                             "\"usage\":{\"prompt_tokens\":5,"
                             "\"completion_tokens\":6,\"total_tokens\":11}}"
                             "\n\ndata: [DONE]\n\n");

    agw_usage_reader_init(&u, AGW_USAGE_SSE);
    agw_usage_reader_memo(&u, &memo);

    for (i = 0; i < len; i += 97) {
        agw_usage_reader_feed(&u, buf + i, len - i < 97 ? len - i : 97);
    }

    assert_int_equal(u.content, 6);      /* the empty content is none */
    assert_int_equal(u.events, 9);
    assert_int_equal(agw_usage_reader_usage(&u, &usage), 1);
    assert_int_equal(usage.total, 11);
    assert_int_equal(usage.output, 6);

    memo_cuts(buf, len, 1);
}


/* the memo's start, as it is after each event of a plain stream */

static void
test_memo_ends_after_a_quote(void **state)
{
    size_t              i, len;
    uint8_t             buf[1024];
    agw_usage_memo_t    memo;
    agw_usage_reader_t  u;

    static const char  *events[] = {
        "data: {\"a\":\"x\",\"choices\":[{\"delta\":"
            "{\"role\":\"r\"}}]}\n\n",
        "data: {\"a\":\"x\",\"choices\":[{\"delta\":"
            "{\"content\":\"one\"}}]}\n\n",
        "data: {\"a\":\"x\",\"choices\":[{\"delta\":"
            "{\"content\":\"two\"}}]}\n\n",
        "data: {\"a\":\"x\",\"choices\":[{\"delta\":"
            "{\"content\":\"tee\"}}]}\n\n",
        "data: {\"b\":1}\n\n"
    };
    static const char  *memos[] = {
        "",
        "{\"a\":\"x\",\"choices\":[{\"delta\":{\"",
        "{\"a\":\"x\",\"choices\":[{\"delta\":{\"content\":\"",
        "{\"a\":\"x\",\"choices\":[{\"delta\":{\"content\":\"",
        ""
    };

    agw_usage_reader_init(&u, AGW_USAGE_SSE);
    agw_usage_reader_memo(&u, &memo);

    for (i = 0; i < 5; i++) {
        len = strlen(events[i]);
        memcpy(buf, events[i], len);
        agw_usage_reader_feed(&u, buf, len);

        assert_int_equal(memo.len, strlen(memos[i]));
        assert_memory_equal(memo.bytes, memos[i], memo.len);
    }

    assert_int_equal(u.content, 3);
}


int
main(void)
{
    int                      rc;
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_memo_ends_after_a_quote),
        cmocka_unit_test(test_memo_reads_a_chat_stream),
        cmocka_unit_test(test_memo_changes_nothing),
    };

    rc = cmocka_run_group_tests(tests, NULL, NULL);

    printf("stream readers with and without the memo: %llu runs, %llu"
           " events, the same after every piece\n",
           (unsigned long long) memo_runs,
           (unsigned long long) memo_events);

    return rc;
}
