
/*
 * SSE parser: events per the spec's line rules, the same events for every
 * split of the stream (one cut at every byte, and every byte alone),
 * bounded memory, and what events mean (terminal, content, usage).
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "agw_sse.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))


/* the events as text: "type|data;" each, to compare runs */

typedef struct {
    char    log[4096];
    size_t  len;
} sse_log_t;


static int
sse_log(void *ctx, const agw_sse_event_t *ev)
{
    int         n;
    sse_log_t  *l;

    l = ctx;
    n = snprintf(l->log + l->len, sizeof(l->log) - l->len, "%.*s|%.*s;",
                 (int) ev->type_len, (const char *) ev->type,
                 (int) ev->data_len, (const char *) ev->data);

    if (n > 0 && (size_t) n < sizeof(l->log) - l->len) {
        l->len += (size_t) n;
    }

    return 0;
}


/* feed in pieces cut at a and b (a <= b <= len); the finish result */

static int
sse_run(const char *in, size_t len, size_t a, size_t b, size_t cap,
    sse_log_t *l)
{
    int        rc;
    uint8_t    buf[1024];
    agw_sse_t  s;

    memset(l, 0, sizeof(sse_log_t));
    agw_sse_init(&s, buf, cap, sse_log, l);

    agw_sse_feed(&s, (const uint8_t *) in, a);
    agw_sse_feed(&s, (const uint8_t *) in + a, b - a);
    rc = agw_sse_feed(&s, (const uint8_t *) in + b, len - b);

    return rc == AGW_SSE_OK ? agw_sse_finish(&s) : rc;
}


static const struct {
    const char  *in;
    const char  *events;
    int          finish;
} sse_rows[] = {
    { "data: hello\n\n", "message|hello;", 0 },
    { "data:hello\n\n", "message|hello;", 0 },
    { "data:  two spaces\n\n", "message| two spaces;", 0 },
    { "data: a\ndata: b\n\n", "message|a\nb;", 0 },
    { "data: a\r\ndata: b\r\n\r\n", "message|a\nb;", 0 },
    { "data: a\rdata: b\r\r", "message|a\nb;", 0 },
    { "data: a\r\n\rdata: b\n\r\n", "message|a;message|b;", 0 },
    { "event: ping\ndata: {}\n\n", "ping|{};", 0 },
    { "event: x\n\ndata: y\n\n", "message|y;", 0 },
    { ": comment\ndata: z\n\n", "message|z;", 0 },
    { ":\n\n", "", 0 },
    { "data\n\n", "message|;", 0 },
    { "data:\n\n", "message|;", 0 },
    { "data\ndata\n\n", "message|\n;", 0 },
    { "id: 1\nretry: 10\n\n", "", 0 },
    { "id: 1\ndata: q\nunknown: u\ndatax: no\n\n", "message|q;", 0 },
    { "event:\ndata: e\n\n", "message|e;", 0 },
    { "data: a:b: c\n\n", "message|a:b: c;", 0 },
    { "\n\n\ndata: x\n\n\n", "message|x;", 0 },
    { "data: [DONE]\n\n", "message|[DONE];", 0 },
    /* the stream ends inside an event: it is not dispatched */
    { "data: a\n\ndata: b\n", "message|a;", 1 },
    { "data: a\n\ndata: b", "message|a;", 1 },
    { "data: a\n\neve", "message|a;", 1 },
    { "data: a\n\n: ping", "message|a;", 1 },
    { "", "", 0 },
    /* a realistic chat stream */
    { "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n"
      "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
      "data: {\"choices\":[],\"usage\":{\"total_tokens\":12}}\n\n"
      "data: [DONE]\n\n",
      "message|{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]};"
      "message|{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]};"
      "message|{\"choices\":[],\"usage\":{\"total_tokens\":12}};"
      "message|[DONE];", 0 },
};


static void
test_sse_events(void **state)
{
    int        rc;
    size_t     i, len;
    sse_log_t  l;

    for (i = 0; i < nitems(sse_rows); i++) {
        len = strlen(sse_rows[i].in);
        rc = sse_run(sse_rows[i].in, len, len, len, 1024, &l);

        if (rc != sse_rows[i].finish || strcmp(l.log, sse_rows[i].events)) {
            print_error("sse failed: row %zu: expected %d %s, got %d %s\n",
                        i, sse_rows[i].finish, sse_rows[i].events, rc,
                        l.log);
            fail();
        }
    }
}


static void
test_sse_splits(void **state)
{
    int        rc;
    size_t     i, a, b, len;
    uint8_t    buf[1024];
    agw_sse_t  s;
    sse_log_t  l;

    for (i = 0; i < nitems(sse_rows); i++) {
        len = strlen(sse_rows[i].in);

        /* every pair of cuts: any split inside CR LF included */

        for (a = 0; a <= len; a++) {
            for (b = a; b <= len; b++) {
                rc = sse_run(sse_rows[i].in, len, a, b, 1024, &l);

                if (rc != sse_rows[i].finish
                    || strcmp(l.log, sse_rows[i].events) != 0)
                {
                    print_error("sse split failed: row %zu at %zu, %zu: "
                                "got %d %s\n", i, a, b, rc, l.log);
                    fail();
                }
            }
        }

        /* every byte alone */

        memset(&l, 0, sizeof(l));
        agw_sse_init(&s, buf, sizeof(buf), sse_log, &l);

        for (a = 0; a < len; a++) {
            agw_sse_feed(&s, (const uint8_t *) sse_rows[i].in + a, 1);
        }

        assert_int_equal(agw_sse_finish(&s), sse_rows[i].finish);
        assert_string_equal(l.log, sse_rows[i].events);
    }
}


static void
test_sse_bounded(void **state)
{
    int        rc;
    sse_log_t  l;
    char       type[AGW_SSE_TYPE_MAX + 16];

    static const char  in[] = "data: 12345\ndata: 6789\n\n";

    /* "12345\n6789" is 10 bytes: a 10-byte buffer holds it, 9 do not */

    rc = sse_run(in, sizeof(in) - 1, 3, 14, 10, &l);
    assert_int_equal(rc, AGW_SSE_OK);
    assert_string_equal(l.log, "message|12345\n6789;");

    rc = sse_run(in, sizeof(in) - 1, 3, 14, 9, &l);
    assert_int_equal(rc, AGW_SSE_ETOOBIG);
    assert_string_equal(l.log, "");

    rc = sse_run(in, sizeof(in) - 1, 3, 14, 0, &l);
    assert_int_equal(rc, AGW_SSE_ETOOBIG);

    /* the error sticks: later events are not delivered */

    rc = sse_run("data: 123456789012\n\ndata: a\n\n", 29, 0, 0, 8, &l);
    assert_int_equal(rc, AGW_SSE_ETOOBIG);
    assert_string_equal(l.log, "");

    /* an event type longer than the limit */

    memcpy(type, "event: ", 7);
    memset(type + 7, 'x', AGW_SSE_TYPE_MAX + 1);
    memcpy(type + 7 + AGW_SSE_TYPE_MAX + 1, "\n\n", 2);
    rc = sse_run(type, 7 + AGW_SSE_TYPE_MAX + 3, 0, 0, 64, &l);
    assert_int_equal(rc, AGW_SSE_ETOOBIG);

    /* long comments and ignored fields take no memory */

    {
        char  big[4096];

        memset(big, 'c', sizeof(big));
        big[0] = ':';
        big[sizeof(big) - 2] = '\n';
        big[sizeof(big) - 1] = '\n';
        rc = sse_run(big, sizeof(big), 100, 2000, 4, &l);
        assert_int_equal(rc, AGW_SSE_OK);

        memcpy(big, "id: ", 4);
        rc = sse_run(big, sizeof(big), 100, 2000, 4, &l);
        assert_int_equal(rc, AGW_SSE_OK);
    }
}


static void
test_sse_inspect(void **state)
{
    size_t           i;
    agw_sse_event_t  ev;
    agw_sse_info_t   info;

    static const struct {
        const char  *type;
        const char  *data;
        int          terminal;
        int          content;
        int          has_usage;
        uint64_t     tokens;
    } rows[] = {
        { "message", "[DONE]", 1, 0, 0, 0 },
        { "message", " [DONE]", 0, 0, 0, 0 },
        { "message", "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}",
          0, 1, 0, 0 },
        { "message", "{\"choices\":[{\"delta\":{\"content\":\"\"}}]}",
          0, 0, 0, 0 },
        { "message", "{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}",
          0, 0, 0, 0 },
        { "message", "{\"choices\":[{\"text\":\"x\",\"index\":0}]}",
          0, 1, 0, 0 },
        { "message", "{\"choices\":[{\"delta\":{}}],\"usage\":null}",
          0, 0, 0, 0 },
        { "message", "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
          "\"completion_tokens\":7,\"total_tokens\":12}}", 0, 0, 1, 12 },
        /* Responses API */
        { "response.output_text.delta",
          "{\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}",
          0, 1, 0, 0 },
        { "response.completed",
          "{\"type\":\"response.completed\",\"response\":{\"usage\":"
          "{\"input_tokens\":4,\"output_tokens\":6,\"total_tokens\":10}}}",
          1, 0, 1, 10 },
        { "message", "{\"type\":\"response.completed\"}", 1, 0, 0, 0 },
        /* Anthropic */
        { "message_start", "{\"type\":\"message_start\",\"message\":"
          "{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}",
          0, 0, 1, 26 },
        { "content_block_delta", "{\"type\":\"content_block_delta\","
          "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}", 0, 1, 0, 0 },
        { "message_delta", "{\"type\":\"message_delta\",\"usage\":"
          "{\"output_tokens\":15}}", 0, 0, 1, 15 },
        { "message_stop", "{\"type\":\"message_stop\"}", 1, 0, 0, 0 },
        { "message", "{\"type\":\"message_stop\"}", 1, 0, 0, 0 },
        /* not JSON, or a type in the wrong place */
        { "message", "hello", 0, 0, 0, 0 },
        { "message", "{\"x\":{\"type\":\"message_stop\"}}", 0, 0, 0, 0 },
        { "message", "{\"choices\":[{\"delta\":{\"content\":\"usage\"}}],"
          "\"x\":\"{\\\"usage\\\":{\\\"total_tokens\\\":9}}\"}",
          0, 1, 0, 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        uint64_t  tokens = 0;

        ev.type = (const uint8_t *) rows[i].type;
        ev.type_len = strlen(rows[i].type);
        ev.data = (const uint8_t *) rows[i].data;
        ev.data_len = strlen(rows[i].data);

        agw_sse_inspect(&ev, &info);
        agw_usage_tokens(&info.usage, &tokens);

        if (info.terminal != rows[i].terminal
            || info.content != rows[i].content
            || info.has_usage != rows[i].has_usage
            || tokens != rows[i].tokens)
        {
            print_error("inspect failed: row %zu: %s: terminal %d content "
                        "%d usage %d tokens %llu\n", i, rows[i].data,
                        info.terminal, info.content, info.has_usage,
                        (unsigned long long) tokens);
            fail();
        }
    }
}


static void
test_sse_error(void **state)
{
    size_t           i;
    agw_sse_event_t  ev;

    static const struct {
        const char  *type;
        const char  *data;
        int          error;
    } rows[] = {
        /* OpenAI and vLLM: an error object, then [DONE] */
        { "message", "{\"error\":{\"message\":\"overloaded\","
          "\"type\":\"server_error\",\"code\":500}}", 1 },
        { "message", "{\"error\":\"overloaded\"}", 1 },
        { "message", "{ \"id\" : \"x\", \"error\" : { } }", 1 },
        { "message", "{\"object\":\"error\",\"message\":\"x\","
          "\"type\":\"BadRequestError\",\"code\":400}", 1 },
        /* Anthropic: the event type, or the data's */
        { "error", "{\"type\":\"error\",\"error\":{\"type\":"
          "\"overloaded_error\"}}", 1 },
        { "error", "{}", 1 },
        { "message", "{\"type\":\"error\",\"error\":{}}", 1 },
        /* Responses API */
        { "response.failed", "{\"type\":\"response.failed\"}", 1 },
        { "response.incomplete", "{}", 1 },
        { "message", "{\"type\":\"response.incomplete\",\"response\":"
          "{\"status\":\"incomplete\"}}", 1 },
        { "message", "{\"type\":\"response.failed\",\"response\":"
          "{\"error\":{\"code\":\"server_error\"}}}", 1 },
        /* not errors: a null error, an error below the top, text */
        { "message", "{\"error\":null,\"choices\":[]}", 0 },
        { "message", "{\"error\":false}", 0 },
        { "response.completed", "{\"type\":\"response.completed\","
          "\"response\":{\"error\":null,\"status\":\"completed\"}}",
          0 },
        { "message", "{\"choices\":[{\"delta\":{\"content\":"
          "\"an error occurred\"}}]}", 0 },
        { "message", "{\"choices\":[{\"delta\":{\"error\":1}}]}", 0 },
        { "message", "{\"x\":{\"type\":\"error\"}}", 0 },
        { "message", "{\"type\":\"errors\"}", 0 },
        { "message", "{\"object\":\"chat.completion.chunk\","
          "\"choices\":[]}", 0 },
        { "message", "[DONE]", 0 },
        { "message", "error", 0 },
        { "errors", "{}", 0 },
        { "message_stop", "{\"type\":\"message_stop\"}", 0 },
    };

    for (i = 0; i < nitems(rows); i++) {
        ev.type = (const uint8_t *) rows[i].type;
        ev.type_len = strlen(rows[i].type);
        ev.data = (const uint8_t *) rows[i].data;
        ev.data_len = strlen(rows[i].data);

        if (agw_sse_error(&ev) != rows[i].error) {
            print_error("error failed: row %zu: %s %s: expected %d\n", i,
                        rows[i].type, rows[i].data, rows[i].error);
            fail();
        }
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_sse_events),
        cmocka_unit_test(test_sse_splits),
        cmocka_unit_test(test_sse_bounded),
        cmocka_unit_test(test_sse_inspect),
        cmocka_unit_test(test_sse_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
