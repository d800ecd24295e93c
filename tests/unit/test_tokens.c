
/*
 * Token arithmetic: estimates from request bodies (chat, completion,
 * missing fields, huge max_tokens, not JSON), usage read from answers cut
 * at every byte, and OpenAI's duration format.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agw_json_scan.h"
#include "agw_tokens.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))

#define MAX        AGW_TOKENS_MAX
#define NONE       UINT64_MAX            /* no usage figure */


/* the estimate the module computes: from JSON if it is, else from size */

static uint64_t
estimate(const char *body, uint64_t default_max)
{
    agw_json_request_t  req;

    if (agw_json_scan_request((const uint8_t *) body, strlen(body), &req)
        == AGW_JSON_OK)
    {
        return agw_tokens_estimate(&req, default_max);
    }

    return agw_tokens_estimate_bytes(strlen(body), default_max);
}


static void
test_tokens_estimate(void **state)
{
    size_t    i;
    uint64_t  got;

    static const struct {
        const char  *body;
        uint64_t     default_max;
        uint64_t     expected;
    } rows[] = {
        /* chat: 5 + 8 prompt bytes -> 4 tokens, + max_tokens */
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
          "\"hello\"},{\"role\":\"user\",\"content\":\"12345678\"}],"
          "\"max_tokens\":100}", 256, 104 },
        /* max_completion_tokens wins over max_tokens */
        { "{\"messages\":[{\"content\":\"abcd\"}],\"max_tokens\":5,"
          "\"max_completion_tokens\":50}", 256, 51 },
        /* completion: prompt string, 9 bytes -> 3 */
        { "{\"model\":\"m\",\"prompt\":\"123456789\",\"max_tokens\":7}",
          256, 10 },
        { "{\"prompt\":[\"1234\",\"5\"],\"max_tokens\":0}", 256, 2 },
        /* missing fields: the default */
        { "{\"model\":\"m\",\"prompt\":\"abcd\"}", 256, 257 },
        { "{\"messages\":[]}", 16, 16 },
        /* JSON without any prompt field: its size, 2 bytes -> 1 token */
        { "{}", 256, 257 },
        /* escapes count unescaped: 2 bytes */
        { "{\"prompt\":\"\\u00e9\"}", 0, 1 },
        /* huge max_tokens saturates, never wraps */
        { "{\"max_tokens\":18446744073709551617}", 256, MAX },
        { "{\"prompt\":\"ab\",\"max_tokens\":1099511627775}", 256, MAX },
        { "{\"prompt\":\"ab\",\"max_tokens\":1099511627774}", 256,
          1099511627775ULL },
        { "{}", UINT64_MAX, MAX },
        /* not JSON: ceil(bytes / 4) + default */
        { "hello world", 256, 259 },
        { "{\"prompt\":\"abcd\"", 100, 104 },
        { "", 256, 256 },
    };

    for (i = 0; i < nitems(rows); i++) {
        got = estimate(rows[i].body, rows[i].default_max);

        if (got != rows[i].expected) {
            print_error("estimate failed: row %zu: %s: expected %llu, "
                        "got %llu\n", i, rows[i].body,
                        (unsigned long long) rows[i].expected,
                        (unsigned long long) got);
            fail();
        }
    }

    assert_int_equal(agw_tokens_estimate_bytes(UINT64_MAX, 1), MAX);
    assert_int_equal(agw_tokens_add(MAX - 1, 1), MAX);
    assert_int_equal(agw_tokens_add(MAX - 2, 1), MAX - 1);
    assert_int_equal(agw_tokens_add(UINT64_MAX, UINT64_MAX), MAX);
}


/*
 * Every form a prompt comes in counts (issue 21, item 9): before, each of
 * these bodies was estimated at its max_tokens alone.
 */

static void
test_tokens_estimate_prompt_forms(void **state)
{
    size_t    i;
    uint64_t  got;

    static const struct {
        const char  *what;
        const char  *body;
        uint64_t     expected;           /* max_tokens 1 in each */
    } rows[] = {
        { "completions prompt as token ids: one token each",
          "{\"model\":\"m\",\"prompt\":[11,22,33,44,55],\"max_tokens\":1}",
          5 + 1 },
        { "an array of prompts given as id arrays",
          "{\"prompt\":[[1,2,3],[4,5]],\"max_tokens\":1}", 5 + 1 },
        { "an array of text prompts",
          "{\"prompt\":[\"abcd\",\"efgh\",\"ijkl\"],\"max_tokens\":1}",
          3 + 1 },
        { "a single id",
          "{\"prompt\":50256,\"max_tokens\":1}", 1 + 1 },
        { "ids that are not plain integers count too",
          "{\"prompt\":[-1,1.5,2e3],\"max_tokens\":1}", 3 + 1 },
        { "Responses input: messages with a string content",
          "{\"model\":\"o\",\"input\":[{\"role\":\"user\",\"content\":"
          "\"12345678\"}],\"max_output_tokens\":1}", 2 + 1 },
        { "Responses input: input_text parts",
          "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":"
          "[{\"type\":\"input_text\",\"text\":\"abcdefgh\"},"
          "{\"type\":\"input_image\",\"image_url\":\"https://x/y.png\"}]}],"
          "\"max_output_tokens\":1}", 2 + 1 },
        { "Responses input: function call items",
          "{\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\","
          "\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1234}\"},"
          "{\"type\":\"function_call_output\",\"call_id\":\"c\","
          "\"output\":\"abcd\"}],\"max_output_tokens\":1}",
          /* arguments {"a":1234}: 10 bytes, output 4: 14 -> 4 */
          4 + 1 },
        { "Responses instructions",
          "{\"instructions\":\"abcdefgh\",\"input\":\"abcd\","
          "\"max_output_tokens\":1}", 3 + 1 },
        { "Anthropic system as a string and as parts",
          "{\"system\":[{\"type\":\"text\",\"text\":\"abcdefgh\"}],"
          "\"messages\":[{\"role\":\"user\",\"content\":\"abcd\"}],"
          "\"max_tokens\":1}", 3 + 1 },
        { "tools: the schemas count by their size",
          "{\"messages\":[],\"tools\":[{\"type\":\"function\","
          "\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
          "\"max_tokens\":1}",
          /* the tools array as written: 61 bytes -> 16 */
          16 + 1 },
        { "functions (legacy) count by their size",
          "{\"messages\":[],\"functions\":[{\"name\":\"abc\"}],"
          "\"max_tokens\":1}",
          /* [{"name":"abc"}]: 16 bytes -> 4 */
          4 + 1 },
        { "tool_calls of an assistant message, and the tool's answer",
          "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
          "[{\"id\":\"1\",\"type\":\"function\",\"function\":{\"name\":"
          "\"f\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\","
          "\"tool_call_id\":\"1\",\"content\":\"abcd\"}],\"max_tokens\":1}",
          /* the tool_calls array: 71 bytes -> 18, content 4 -> 1 */
          18 + 1 + 1 },
        { "Anthropic tool_use input and tool_result content",
          "{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
          "\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":"
          "{\"q\":\"abcdefgh\"}}]},{\"role\":\"user\",\"content\":"
          "[{\"type\":\"tool_result\",\"tool_use_id\":\"t\",\"content\":"
          "\"abcd\"}]}],\"max_tokens\":1}",
          /* input {"q":"abcdefgh"}: 16 bytes, result 4: 20 -> 5 */
          5 + 1 },
        { "a member name with escapes counts by size",
          "{\"messages\":[],\"m\\u0065ssages\":[{\"content\":\"abcd\"}],"
          "\"max_tokens\":1}",
          /* [{"content":"abcd"}]: 20 bytes -> 5 */
          5 + 1 },
        { "JSON of an unknown API: its whole size",
          "{\"contents\":[{\"parts\":[{\"text\":\"abcdefgh\"}]}],"
          "\"max_tokens\":1}",
          /* 61 bytes -> 16 */
          16 + 1 },
    };

    for (i = 0; i < nitems(rows); i++) {
        got = estimate(rows[i].body, 256);

        if (got != rows[i].expected) {
            print_error("%s: %s: expected %llu, got %llu\n", rows[i].what,
                        rows[i].body, (unsigned long long) rows[i].expected,
                        (unsigned long long) got);
            fail();
        }
    }
}


static void
test_tokens_duration(void **state)
{
    size_t   i, n;
    uint8_t  buf[AGW_DURATION_LEN + 1];

    static const struct {
        uint64_t     ms;
        const char  *text;
    } rows[] = {
        { 0, "0s" },
        { 1, "1ms" },
        { 20, "20ms" },
        { 120, "120ms" },
        { 999, "999ms" },
        { 1000, "1s" },
        { 1001, "1.001s" },
        { 1010, "1.01s" },
        { 1500, "1.5s" },
        { 59999, "59.999s" },
        { 60000, "1m0s" },
        { 360000, "6m0s" },
        { 61500, "1m1.5s" },
        { 3600000, "1h0m0s" },
        { 3723000, "1h2m3s" },
        { 3723040, "1h2m3.04s" },
        { 86400000, "24h0m0s" },
        { UINT64_MAX, "5124095576030h25m51.615s" },
    };

    for (i = 0; i < nitems(rows); i++) {
        memset(buf, 'x', sizeof(buf));
        n = agw_duration_format(buf, rows[i].ms);

        if (n > AGW_DURATION_LEN || buf[AGW_DURATION_LEN] != 'x'
            || n != strlen(rows[i].text)
            || memcmp(buf, rows[i].text, n) != 0)
        {
            print_error("duration failed: %llu ms: expected %s, got %.*s\n",
                        (unsigned long long) rows[i].ms, rows[i].text,
                        (int) n, buf);
            fail();
        }
    }
}


/* usage of an answer fed in two pieces cut at `split` */

static int
usage_split(const char *body, size_t split, uint64_t *tokens,
    agw_answer_t *a)
{
    size_t  len;

    len = strlen(body);

    agw_answer_init(a);
    agw_answer_feed(a, (const uint8_t *) body, split);
    agw_answer_feed(a, (const uint8_t *) body + split, len - split);

    if (agw_answer_finish(a) != AGW_JSON_OK) {
        return -1;
    }

    return agw_usage_tokens(&a->usage, tokens);
}


static void
test_tokens_usage_split(void **state)
{
    int           rc, whole;
    size_t        i, k, len;
    uint64_t      tokens, got;
    agw_answer_t  a;

    static const struct {
        const char  *body;
        uint64_t     tokens;             /* NONE: no usage */
    } rows[] = {
        { "{\"id\":\"c1\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
          "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,"
          "\"total_tokens\":21}}", 21 },
        { "{\"usage\":{\"total_tokens\":0}}", 0 },
        /* usage before the rest, whitespace everywhere */
        { " { \"usage\" : { \"total_tokens\" : 7 } , \"x\" : [ 1 ] } ", 7 },
        /* OpenAI's names without a total: summed as Anthropic's */
        { "{\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12}}",
          21 },
        /* Anthropic: input + output */
        { "{\"type\":\"message\",\"usage\":{\"input_tokens\":10,"
          "\"output_tokens\":25}}", 35 },
        /* Responses API */
        { "{\"object\":\"response\",\"usage\":{\"input_tokens\":3,"
          "\"output_tokens\":4,\"total_tokens\":7}}", 7 },
        /* the word usage in strings, nested, in the wrong place */
        { "{\"choices\":[{\"message\":{\"content\":\"usage total_tokens "
          "\\\"usage\\\":{\\\"total_tokens\\\":99}\"}}]}", NONE },
        { "{\"choices\":[{\"usage\":{\"total_tokens\":5}}]}", NONE },
        { "{\"x\":{\"usage\":{\"total_tokens\":5}}}", NONE },
        { "{\"usage\":{\"x\":{\"total_tokens\":5}}}", NONE },
        { "{\"usage\":[{\"total_tokens\":5}]}", NONE },
        { "[{\"usage\":{\"total_tokens\":5}}]", NONE },
        { "{\"usage\":null}", NONE },
        { "{\"usage\":{\"total_tokens\":\"5\"}}", NONE },
        { "{\"usage\":{\"total_tokens\":5.5}}", NONE },
        { "{\"usage\":{\"total_tokens\":-5}}", NONE },
        { "{\"\\u0075sage\":{\"total_tokens\":8}}", 8 },
        { "{\"usage\":{\"total_tokens\":99999999999999999999999999999}}",
          MAX },
        /* a key after usage closes does not count */
        { "{\"usage\":{\"input_tokens\":1},\"total_tokens\":50}", 1 },
    };

    for (i = 0; i < nitems(rows); i++) {
        len = strlen(rows[i].body);
        rc = usage_split(rows[i].body, len, &tokens, &a);
        whole = rc;

        if (rc < 0 || (rc == 1 ? tokens : NONE) != rows[i].tokens) {
            print_error("usage failed: row %zu: %s: rc %d, got %llu\n", i,
                        rows[i].body, rc, (unsigned long long) tokens);
            fail();
        }

        for (k = 0; k <= len; k++) {
            rc = usage_split(rows[i].body, k, &got, &a);

            if (rc != whole || (rc == 1 && got != tokens)) {
                print_error("usage split failed: row %zu at %zu: rc %d, "
                            "got %llu\n", i, k, rc, (unsigned long long) got);
                fail();
            }
        }
    }

    /* every byte in its own feed */

    {
        static const char  body[] =
            "{\"a\":\"\\ud83d\\ude00\",\"usage\":{\"total_tokens\":123}}";

        agw_answer_init(&a);

        for (k = 0; k < sizeof(body) - 1; k++) {
            assert_int_equal(agw_answer_feed(&a, (const uint8_t *) body + k,
                                             1), AGW_JSON_OK);
        }

        assert_int_equal(agw_answer_finish(&a), AGW_JSON_OK);
        assert_int_equal(agw_usage_tokens(&a.usage, &tokens), 1);
        assert_int_equal(tokens, 123);
    }
}


/* the input and output figures, under either API's names (SPEC 8.3) */

static void
test_tokens_usage_input_output(void **state)
{
    size_t        i;
    uint64_t      tokens;
    agw_answer_t  a;

    static const struct {
        const char  *body;
        uint64_t     input, output;
    } rows[] = {
        /* OpenAI Chat Completions: cached tokens are part of the prompt */
        { "{\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,"
          "\"total_tokens\":21,\"prompt_tokens_details\":"
          "{\"cached_tokens\":4}}}", 9, 12 },
        /* Responses API, Anthropic */
        { "{\"usage\":{\"input_tokens\":3,\"output_tokens\":4,"
          "\"total_tokens\":7}}", 3, 4 },
        { "{\"type\":\"message\",\"usage\":{\"input_tokens\":10,"
          "\"output_tokens\":25}}", 10, 25 },
    };

    for (i = 0; i < nitems(rows); i++) {
        assert_int_equal(usage_split(rows[i].body, 5, &tokens, &a), 1);
        assert_true(a.usage.has_input && a.usage.has_output);
        assert_int_equal(a.usage.input, rows[i].input);
        assert_int_equal(a.usage.output, rows[i].output);
    }
}


static void
test_tokens_usage_merge(void **state)
{
    uint64_t     tokens;
    agw_usage_t  acc, ev;

    memset(&acc, 0, sizeof(acc));
    assert_int_equal(agw_usage_tokens(&acc, &tokens), 0);

    /* Anthropic: message_start's input, then cumulative output */

    memset(&ev, 0, sizeof(ev));
    ev.input = 25;
    ev.has_input = 1;
    ev.output = 1;
    ev.has_output = 1;
    agw_usage_merge(&acc, &ev);

    memset(&ev, 0, sizeof(ev));
    ev.output = 15;
    ev.has_output = 1;
    agw_usage_merge(&acc, &ev);

    assert_int_equal(agw_usage_tokens(&acc, &tokens), 1);
    assert_int_equal(tokens, 40);

    /* a total replaces all */

    memset(&ev, 0, sizeof(ev));
    ev.total = 7;
    ev.has_total = 1;
    agw_usage_merge(&acc, &ev);

    assert_int_equal(agw_usage_tokens(&acc, &tokens), 1);
    assert_int_equal(tokens, 7);
}


static void
test_tokens_tail_total(void **state)
{
    size_t    i;
    uint64_t  got;

    static const struct {
        const char  *body;
        uint64_t     total;
    } rows[] = {
        { "{\"id\":1,\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
          "\"total_tokens\":7}}", 7 },
        { "{\"usage\": {\"total_tokens\" : \n 1234 }}", 1234 },
        /* the last one counts: a stream's final usage event */
        { "data: {\"usage\":{\"total_tokens\":1}}\n\n"
          "data: {\"usage\":{\"total_tokens\":29}}\n\ndata: [DONE]\n\n", 29 },
        { "{\"usage\":null}", 0 },
        { "{\"total_tokens\":\"7\"}", 0 },
        { "{\"total_tokens\":-7}", 0 },
        { "{\"total_tokens\"", 0 },
        { "{\"total_tokens\":", 0 },
        { "\"total_tokens\"", 0 },
        { "", 0 },
        { "total_tokens", 0 },
        { "{\"total_tokens\":99999999999999999999999}", AGW_TOKENS_MAX },
    };

    for (i = 0; i < nitems(rows); i++) {
        got = agw_tokens_tail_total((const uint8_t *) rows[i].body,
                                    strlen(rows[i].body));
        if (got != rows[i].total) {
            print_error("tail_total row %zu: expected %llu, got %llu\n", i,
                        (unsigned long long) rows[i].total,
                        (unsigned long long) got);
            fail();
        }
    }
}


/*
 * The figures money needs (lib/agw_price.c): input and output, and the
 * cached tokens of each API, at every split; only where usage lives.
 */

static void
test_tokens_usage_fields(void **state)
{
    size_t        i, k, len;
    uint64_t      tokens;
    agw_answer_t  a;

    static const struct {
        const char  *body;
        uint64_t     input, output, cached, cache_read, cache_write;
    } rows[] = {
        { "{\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":20,"
          "\"total_tokens\":1020,\"prompt_tokens_details\":{"
          "\"cached_tokens\":768,\"audio_tokens\":0},"
          "\"completion_tokens_details\":{\"reasoning_tokens\":5}}}",
          1000, 20, 768, 0, 0 },
        { "{\"object\":\"response\",\"usage\":{\"input_tokens\":300,"
          "\"input_tokens_details\":{\"cached_tokens\":256},"
          "\"output_tokens\":7,\"total_tokens\":307}}",
          300, 7, 256, 0, 0 },
        { "{\"type\":\"message\",\"usage\":{\"input_tokens\":12,"
          "\"cache_creation_input_tokens\":100,"
          "\"cache_read_input_tokens\":2000,\"output_tokens\":30}}",
          12, 30, 0, 2000, 100 },
        { "{\"type\":\"response.completed\",\"response\":{\"usage\":{"
          "\"input_tokens\":9,\"input_tokens_details\":{\"cached_tokens\":"
          "8},\"output_tokens\":1,\"total_tokens\":10}}}",
          9, 1, 8, 0, 0 },
        /* cached_tokens outside a details object is not the usage's */
        { "{\"usage\":{\"prompt_tokens\":5,\"cached_tokens\":5,"
          "\"x\":{\"cached_tokens\":5}}}", 5, 0, 0, 0, 0 },
        { "{\"prompt_tokens_details\":{\"cached_tokens\":5}}",
          0, 0, 0, 0, 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        len = strlen(rows[i].body);

        for (k = 0; k <= len; k++) {
            (void) usage_split(rows[i].body, k, &tokens, &a);

            if (a.usage.input != rows[i].input
                || a.usage.output != rows[i].output
                || a.usage.cached != rows[i].cached
                || a.usage.cache_read != rows[i].cache_read
                || a.usage.cache_write != rows[i].cache_write)
            {
                print_error("fields row %zu split %zu: got %llu %llu %llu "
                            "%llu %llu\n", i, k,
                            (unsigned long long) a.usage.input,
                            (unsigned long long) a.usage.output,
                            (unsigned long long) a.usage.cached,
                            (unsigned long long) a.usage.cache_read,
                            (unsigned long long) a.usage.cache_write);
                fail();
            }
        }
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_tokens_estimate),
        cmocka_unit_test(test_tokens_estimate_prompt_forms),
        cmocka_unit_test(test_tokens_duration),
        cmocka_unit_test(test_tokens_usage_split),
        cmocka_unit_test(test_tokens_usage_fields),
        cmocka_unit_test(test_tokens_usage_input_output),
        cmocka_unit_test(test_tokens_usage_merge),
        cmocka_unit_test(test_tokens_tail_total),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
