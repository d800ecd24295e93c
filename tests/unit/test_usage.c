
/*
 * An answer's usage read as it passes (lib/agw_usage.c): JSON answers and
 * streams of the three APIs, split at every byte, and events of any size
 * (a Responses API response.completed repeats the whole output before its
 * usage: issue 21, item 13).
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


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))

#define NONE       UINT64_MAX            /* no usage reported */


/* the tokens read from text fed in pieces of `step` bytes (0: whole) */

static uint64_t
read_usage(unsigned mode, const char *text, size_t len, size_t step,
    uint64_t *content)
{
    size_t              i, n;
    uint64_t            tokens;
    agw_usage_t         usage;
    agw_usage_reader_t  u;

    agw_usage_reader_init(&u, mode);

    if (step == 0) {
        step = len ? len : 1;
    }

    for (i = 0; i < len; i += n) {
        n = (len - i < step) ? len - i : step;
        agw_usage_reader_feed(&u, (const uint8_t *) text + i, n);
    }

    if (content) {
        *content = u.content;
    }

    if (!agw_usage_reader_usage(&u, &usage)
        || !agw_usage_tokens(&usage, &tokens))
    {
        return NONE;
    }

    return tokens;
}


static void
test_usage_streams(void **state)
{
    size_t    i, step, len;
    uint64_t  got, content;

    static const struct {
        const char  *what;
        const char  *text;
        uint64_t     tokens;
        uint64_t     content;
    } rows[] = {
        { "chat with include_usage",
          "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],"
          "\"usage\":null}\n\n"
          "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}],"
          "\"usage\":null}\n\n"
          "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
          "\"completion_tokens\":2,\"total_tokens\":7}}\n\n"
          "data: [DONE]\n\n", 7, 2 },
        { "chat without usage: content events counted",
          "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\r\n\r\n"
          "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\r\n\r\n"
          "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}"
          "\r\n\r\ndata: [DONE]\r\n\r\n", NONE, 2 },
        { "Anthropic: message_start input, message_delta output",
          "event: message_start\n"
          "data: {\"type\":\"message_start\",\"message\":{\"usage\":"
          "{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
          "event: content_block_delta\n"
          "data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":"
          "\"x\"}}\n\n"
          "event: message_delta\n"
          "data: {\"type\":\"message_delta\",\"usage\":"
          "{\"output_tokens\":15}}\n\n"
          "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
          40, 1 },
        { "Responses API, usage in response.completed",
          "event: response.output_text.delta\n"
          "data: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}"
          "\n\n"
          "event: response.completed\n"
          "data: {\"type\":\"response.completed\",\"response\":{\"usage\":"
          "{\"input_tokens\":3,\"output_tokens\":4,\"total_tokens\":7}}}"
          "\n\n", 7, 1 },
        { "data on several lines joins with newlines",
          "data: {\"usage\":\ndata: {\"total_tokens\":\ndata: 12}}\n\n",
          12, 0 },
        { "a usage event cut short says nothing",
          "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
          "data: {\"usage\":{\"total_tokens\":9}", NONE, 1 },
        { "a usage in a comment or another field is not one",
          ": {\"usage\":{\"total_tokens\":9}}\n"
          "id: {\"usage\":{\"total_tokens\":9}}\n\n", NONE, 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        len = strlen(rows[i].text);

        for (step = 0; step <= len; step++) {
            got = read_usage(AGW_USAGE_SSE, rows[i].text, len, step,
                             &content);

            if (got != rows[i].tokens || content != rows[i].content) {
                print_error("%s, in pieces of %zu: expected %llu tokens, "
                            "%llu content, got %llu, %llu\n", rows[i].what,
                            step, (unsigned long long) rows[i].tokens,
                            (unsigned long long) rows[i].content,
                            (unsigned long long) got,
                            (unsigned long long) content);
                fail();
            }
        }
    }
}


/*
 * A response.completed event of a megabyte, the whole output repeated
 * before the usage, read in pieces of any size with no buffer at all.
 */

static void
test_usage_big_event(void **state)
{
    char         *text, *p;
    size_t        len, out, steps[] = { 0, 1, 7, 4096, 16384, 65536 };
    size_t        i;
    uint64_t      content;

    out = 1024 * 1024;
    text = malloc(out + 1024);
    assert_non_null(text);

    p = text;
    p += sprintf(p, "event: response.completed\ndata: {\"type\":"
                 "\"response.completed\",\"response\":{\"output\":[{"
                 "\"type\":\"message\",\"content\":[{\"type\":"
                 "\"output_text\",\"text\":\"");
    memset(p, 'w', out);
    p += out;
    p += sprintf(p, "\"}]}],\"usage\":{\"input_tokens\":12,"
                 "\"output_tokens\":262144,\"total_tokens\":262156}}}\n\n");
    len = (size_t) (p - text);

    for (i = 0; i < nitems(steps); i++) {
        assert_int_equal(read_usage(AGW_USAGE_SSE, text, len, steps[i],
                                    &content),
                         262156);
    }

    free(text);
}


static void
test_usage_json(void **state)
{
    size_t       len, step;
    const char  *text;

    text = "{\"id\":\"c\",\"choices\":[{\"message\":{\"content\":"
           "\"usage total_tokens 99\"}}],\"usage\":{\"prompt_tokens\":9,"
           "\"completion_tokens\":12,\"total_tokens\":21}}";
    len = strlen(text);

    for (step = 0; step <= len; step++) {
        assert_int_equal(read_usage(AGW_USAGE_JSON, text, len, step, NULL),
                         21);
    }

    /* an answer cut after its usage still counts it */
    text = "{\"usage\":{\"total_tokens\":5},\"choices\":[";
    assert_int_equal(read_usage(AGW_USAGE_JSON, text, strlen(text), 0, NULL),
                     5);

    text = "{\"choices\":[]}";
    assert_int_equal(read_usage(AGW_USAGE_JSON, text, strlen(text), 0, NULL),
                     NONE);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_usage_streams),
        cmocka_unit_test(test_usage_big_event),
        cmocka_unit_test(test_usage_json),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
