
/*
 * The push tokenizer (lib/agw_json_push.c) against its reference, the
 * tokenizer as it was before its fast paths (tests/ref/agw_json_push_ref.c):
 * for every input, cut anywhere, the same events in the same order (type,
 * depth, text, full length), the same verdict from every feed and from
 * finish, and the same stop when the handler asks to stop.  The answer
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


#define AGW_DIFF_MUTANTS   20000
#define AGW_DIFF_MAX       4096          /* bytes of an input */


static uint64_t  diff_runs;             /* compared, to say how many */
static uint64_t  diff_bytes;


/* every event and verdict, as bytes, to compare two runs */

typedef struct {
    uint8_t   *buf;
    size_t     len;
    size_t     cap;
    uint64_t   events;
    uint64_t   stop_at;                  /* 0: never stop */
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


static int
diff_event(void *ctx, const agw_json_event_t *ev)
{
    diff_log_t  *l = ctx;

    assert_true(ev->text_len <= AGW_JSON_TEXT_MAX);
    assert_true(ev->text_len <= ev->full_len);

    diff_put(l, "E", 1);
    diff_put(l, &ev->type, sizeof(ev->type));
    diff_put(l, &ev->depth, sizeof(ev->depth));
    diff_put(l, &ev->full_len, sizeof(ev->full_len));
    diff_put(l, &ev->text_len, sizeof(ev->text_len));
    diff_put(l, ev->text, ev->text_len);

    return ++l->events == l->stop_at;
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
    size_t                i, from;
    agw_json_push_t       j;
    agw_json_push_ref_t   r;

    lib->len = 0;
    lib->events = 0;
    lib->stop_at = stop_at;
    ref->len = 0;
    ref->events = 0;
    ref->stop_at = stop_at;

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
    diff_rc(ref, 'Z', agw_json_push_ref_finish(&r));

    if (lib->len != ref->len || memcmp(lib->buf, ref->buf, lib->len) != 0) {
        print_error("differs from the reference (%zu pieces, stop at %llu):"
                    " %.*s\n", ncuts, (unsigned long long) stop_at,
                    (int) len, (const char *) in);
        fail();
    }
}


static uint64_t  diff_seed = 0x9e3779b97f4a7c15ULL;


static uint64_t
diff_rand(void)
{
    diff_seed ^= diff_seed << 13;
    diff_seed ^= diff_seed >> 7;
    diff_seed ^= diff_seed << 17;

    return diff_seed;
}


static const char  *bases[] = {
    /* Chat Completions: a stream's chunks (ai-sim's, OpenAI's), its usage */
    "{\"id\":\"chatcmpl-b0de94c403e1317b\",\"object\":\"chat.completion.chunk"
    "\",\"created\":1796613529,\"model\":\"sim-small\",\"server_id\":\"s1\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\""
    ":\"\"},\"finish_reason\":null}],\"usage\":null}",

    "{\"id\":\"chatcmpl-b0de94c403e1317b\",\"object\":\"chat.completion.chunk"
    "\",\"created\":1796613529,\"model\":\"sim-small\",\"server_id\":\"s1\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tenant\"},"
    "\"finish_reason\":null}],\"usage\":null}",

    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":"
    "[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":8,"
    "\"total_tokens\":11,\"prompt_tokens_details\":{\"cached_tokens\":2}}}",

    "{\"choices\":[{\"index\":0,\"text\":\"legacy completion\","
    "\"logprobs\":null,\"finish_reason\":\"length\"}]}",

    /* a whole answer, pretty-printed */
    "{\n  \"id\": \"chatcmpl-2\",\n  \"object\": \"chat.completion\",\n"
    "  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": {\n"
    "        \"role\": \"assistant\",\n        \"content\": \"Hello there,"
    " how may I help you today? A long answer, longer than the text\"\n"
    "      },\n      \"finish_reason\": \"stop\"\n    }\n  ],\n"
    "  \"usage\": {\r\n\t\"prompt_tokens\": 9, \"completion_tokens\": 12,"
    " \"total_tokens\": 21\n  }\n}\n",

    /* Responses API events */
    "{\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\","
    "\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}",

    "{\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\","
    "\"error\":null,\"output\":[{\"type\":\"message\",\"content\":[{\"type\""
    ":\"output_text\",\"text\":\"Hello \\\"world\\\" \\u00e9\\ud83d\\ude00"
    "\"}]}],\"usage\":{\"input_tokens\":5,\"input_tokens_details\":"
    "{\"cached_tokens\":2},\"output_tokens\":7,\"output_tokens_details\":"
    "{\"reasoning_tokens\":0},\"total_tokens\":12}}}",

    /* Anthropic Messages events */
    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":"
    "\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\","
    "\"stop_reason\":null,\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":10,"
    "\"output_tokens\":1}}}",

    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
    "\"text_delta\",\"text\":\"ok\"}}",

    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}",

    "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
    "\"message\":\"Overloaded\"}}",

    /* JSON's corners */
    "[-0,0,-1.5e+10,0.1E-3,12e5,1E+2,-0.0e-0,123456789012345678901234567890"
    "12345678901234567890123,1.00000000000000000000000000000000000000000000"
    "000000001]",

    "{\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f\\u0080"
    "\\u07ff\\u0800\\uffff\\uD834\\uDD1E\",\"utf8\":\"\xc3\xa9\xe2\x82\xac"
    "\xf0\x9f\x98\x80\xff\xfe\",\"k\\u0065y\":\"v\"}",

    "[true,false,null,[],{},[[]],{\"a\":{}},\"\",\"a\"]",

    " \t\r\n{ \"a\" : [ 1 , 2 , { \"b\" : null } ] , \"c\" : true } \n",

    "{\"a_key_that_is_much_longer_than_the_forty_eight_bytes_kept_of_it\":"
    "\"and a value that is longer than forty-eight bytes as well, by far\"}",

    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    "1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",

    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",

    "42",
    "-12.5e3 ",
    "\"top\"",
    "true",
    "nul",
    "",
    "{\"a\":1}{\"b\":2}",
    "{\"a\":\"\\ud800\"}",
    "{\"a\":\"\\udc00\"}",
    "{\"a\":\"\\ud800\\u0041\"}",
    "{\"a\":\"\\ud800x\"}",
    "{\"a\":\"\\x\"}",
    "{\"a\":01}",
    "{\"a\":1.}",
    "{\"a\":1e}",
    "{\"a\":-}",
    "{\"a\":1,}",
    "[1,]",
    "{\"a\" 1}",
    "{,}",
    "[1 2]",
    "{\"a\":[}",
    "{\"a\":\"line\nbreak\"}",
};


/* bytes that matter to JSON, for mutations */

static const char  alphabet[] = "{}[]\":,\\/u0123456789abcdefABCDEF"
                                "eE+-.tfnrulsx \t\n\r";


static size_t
diff_mutate(uint8_t *buf, size_t len)
{
    size_t    i, k, n, at, from;
    unsigned  what;

    k = 1 + diff_rand() % 4;

    for (i = 0; i < k; i++) {
        what = diff_rand() % 6;
        at = len ? diff_rand() % len : 0;

        switch (what) {

        case 0:                          /* a byte changed */
        case 1:
            if (len) {
                buf[at] = (diff_rand() % 4)
                          ? (uint8_t) alphabet[diff_rand()
                                               % (sizeof(alphabet) - 1)]
                          : (uint8_t) diff_rand();
            }
            break;

        case 2:                          /* a byte inserted */
            if (len + 1 < AGW_DIFF_MAX) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t) alphabet[diff_rand()
                                             % (sizeof(alphabet) - 1)];
                len++;
            }
            break;

        case 3:                          /* a byte deleted */
            if (len) {
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
            }
            break;

        case 4:                          /* a span repeated */
            if (len) {
                from = diff_rand() % len;
                n = 1 + diff_rand() % 64;

                if (from + n > len) {
                    n = len - from;
                }

                if (len + n < AGW_DIFF_MAX) {
                    memmove(buf + at + n, buf + at, len - at);
                    memmove(buf + at, buf + (from < at ? from : from + n),
                            n);
                    len += n;
                }
            }
            break;

        default:                         /* cut short */
            len = at;
        }
    }

    return len;
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


static void
test_push_same_as_reference(void **state)
{
    size_t       i, len;
    diff_log_t   a, b;

    memset(&a, 0, sizeof(diff_log_t));
    memset(&b, 0, sizeof(diff_log_t));

    for (i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        len = strlen(bases[i]);
        diff_every_cut((const uint8_t *) bases[i], len, &a, &b);
        diff_random_cuts((const uint8_t *) bases[i], len, &a, &b);
    }

    free(a.buf);
    free(b.buf);
}


static void
test_push_same_as_reference_when_mutated(void **state)
{
    size_t       i, len;
    uint8_t     *buf;
    diff_log_t   a, b;

    memset(&a, 0, sizeof(diff_log_t));
    memset(&b, 0, sizeof(diff_log_t));

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


int
main(void)
{
    int                      rc;
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_push_same_as_reference),
        cmocka_unit_test(test_push_same_as_reference_when_mutated),
        cmocka_unit_test(test_push_same_as_reference_on_noise),
    };

    rc = cmocka_run_group_tests(tests, NULL, NULL);

    printf("push tokenizer and reference: %llu runs, %llu bytes, compared\n",
           (unsigned long long) diff_runs, (unsigned long long) diff_bytes);

    return rc;
}
