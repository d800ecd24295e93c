
/*
 * Cacheability rules: Cache-Control directive matching, request bypass,
 * response storability and the headers never stored with an entry.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "agw_policy.h"


#define nitems(a)  (sizeof(a) / sizeof((a)[0]))


typedef struct {
    const char  *value;
    const char  *name;
    int          has;
} agw_cc_test_t;


static const agw_cc_test_t  cc_rows[] = {
    { "no-store", "no-store", 1 },
    { "No-Store", "no-store", 1 },
    { "NO-STORE", "no-store", 1 },
    { "no-store", "No-Store", 1 },
    { "max-age=0, no-store", "no-store", 1 },
    { "max-age=0,no-store", "no-store", 1 },
    { "no-store,max-age=0", "no-store", 1 },
    { "  no-store  ", "no-store", 1 },
    { "\tno-store\t,", "no-store", 1 },
    { ",,no-store,,", "no-store", 1 },
    { "no-cache", "no-store", 0 },
    { "no-storex", "no-store", 0 },
    { "xno-store", "no-store", 0 },
    { "no-stor", "no-store", 0 },
    { "", "no-store", 0 },
    { ",", "no-store", 0 },

    /* arguments are ignored, the directive counts */
    { "private", "private", 1 },
    { "private=\"set-cookie\"", "private", 1 },
    { "private = \"set-cookie, x\"", "private", 1 },
    { "public, private=\"x\"", "private", 1 },
    { "no-cache=\"x\"", "no-cache", 1 },
    { "no-cache=x", "no-cache", 1 },
    { "max-age=60, no-cache=\"set-cookie\", public", "no-cache", 1 },

    /* nothing inside a quoted string or an argument is a directive */
    { "x=\"no-store\"", "no-store", 0 },
    { "x=\"a, no-store\"", "no-store", 0 },
    { "x=\"a\\\", no-store\"", "no-store", 0 },
    { "x=\"a\\\\\", no-store", "no-store", 1 },
    { "x=\"unterminated, no-store", "no-store", 0 },
    { "x=no-store", "no-store", 0 },
    { "community=\"UCI\", private", "private", 1 },
    { "max-age=\"3, private\"", "private", 0 },
    { "x=\"a\"junk, private", "private", 1 },
    { "\"no-store\"", "no-store", 0 },
    { "\"a\", no-store", "no-store", 1 },
    { "public no-store", "no-store", 0 },
    { "=no-store", "no-store", 0 },
    { "=, no-store", "no-store", 1 },
    { "private, public", "public", 1 },
    { "public", "", 0 },
};


static void
test_cc_has(void **state)
{
    int     got;
    size_t  i;

    for (i = 0; i < nitems(cc_rows); i++) {
        got = agw_cc_has((const uint8_t *) cc_rows[i].value,
                         strlen(cc_rows[i].value), cc_rows[i].name);

        if (got != cc_rows[i].has) {
            print_error("cc_has failed: \"%s\" has \"%s\": expected %d, "
                        "got %d\n", cc_rows[i].value, cc_rows[i].name,
                        cc_rows[i].has, got);
            fail();
        }
    }

    assert_int_equal(agw_cc_has(NULL, 0, "no-store"), 0);

    /* the length bounds the value: "no-store" cut to "no-st" */

    assert_int_equal(agw_cc_has((const uint8_t *) "no-store", 5, "no-st"), 1);
    assert_int_equal(agw_cc_has((const uint8_t *) "no-store", 5, "no-store"),
                     0);
}


typedef struct {
    unsigned      method_listed;
    unsigned      has_credential;
    unsigned      authorized_caching;
    unsigned      bypass_variable;
    const char   *cache_control;
    const char   *pragma;
    unsigned      body_len_known;
    uint64_t      body_len;
    uint64_t      max_body;
    agw_bypass_t  expected;
} agw_bypass_test_t;


static const agw_bypass_test_t  bypass_rows[] = {
    /* listed, credential, authorized, var, CC, Pragma, known, len, max */
    { 1, 0, 0, 0, NULL, NULL, 0, 0, 1024, AGW_BYPASS_NONE },
    { 0, 0, 0, 0, NULL, NULL, 0, 0, 1024, AGW_BYPASS_METHOD },
    { 1, 0, 0, 0, "no-store", NULL, 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "no-cache", NULL, 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "max-age=0, No-Cache", NULL, 0, 0, 1024,
      AGW_BYPASS_REQUEST_CC },
    /* a client's max-age=0 asks for a fresh answer (issue 11 item 7) */
    { 1, 0, 0, 0, "max-age=0", NULL, 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "MAX-AGE = 000", NULL, 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "max-age=\"0\"", NULL, 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "max-age=", NULL, 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "max-age=-1", NULL, 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "max-age=1", NULL, 0, 0, 1024, AGW_BYPASS_NONE },
    { 1, 0, 0, 0, "max-age=60, x=\"max-age=0\"", NULL, 0, 0, 1024,
      AGW_BYPASS_NONE },
    { 1, 0, 0, 0, "s-maxage=0", NULL, 0, 0, 1024, AGW_BYPASS_NONE },
    /* two Cache-Control lines, joined by the module */
    { 1, 0, 0, 0, "max-age=60, no-cache", NULL, 0, 0, 1024,
      AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, "only-if-cached", NULL, 0, 0, 1024, AGW_BYPASS_NONE },
    { 1, 0, 0, 0, NULL, "no-cache", 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, NULL, "x, NO-CACHE", 0, 0, 1024, AGW_BYPASS_REQUEST_CC },
    { 1, 0, 0, 0, NULL, "x=\"no-cache\"", 0, 0, 1024, AGW_BYPASS_NONE },
    { 1, 0, 0, 0, NULL, "no-store", 0, 0, 1024, AGW_BYPASS_NONE },
    { 1, 0, 0, 1, NULL, NULL, 0, 0, 1024, AGW_BYPASS_VARIABLE },
    { 1, 1, 0, 0, NULL, NULL, 0, 0, 1024, AGW_BYPASS_CREDENTIAL },
    { 1, 1, 1, 0, NULL, NULL, 0, 0, 1024, AGW_BYPASS_NONE },
    { 1, 0, 1, 0, NULL, NULL, 0, 0, 1024, AGW_BYPASS_NONE },
    { 1, 0, 0, 0, NULL, NULL, 1, 1024, 1024, AGW_BYPASS_NONE },
    { 1, 0, 0, 0, NULL, NULL, 1, 1025, 1024, AGW_BYPASS_BODY_TOO_LARGE },
    { 1, 0, 0, 0, NULL, NULL, 0, 1025, 1024, AGW_BYPASS_NONE },
    { 1, 0, 0, 0, NULL, NULL, 1, 0, 0, AGW_BYPASS_NONE },
    { 1, 0, 0, 0, NULL, NULL, 1, UINT64_MAX, 1048576,
      AGW_BYPASS_BODY_TOO_LARGE },

    /* the order of the checks: the first one listed wins */
    { 0, 1, 0, 1, "no-store", "no-cache", 1, 9999, 1, AGW_BYPASS_METHOD },
    { 1, 1, 0, 1, "no-store", NULL, 1, 9999, 1, AGW_BYPASS_REQUEST_CC },
    { 1, 1, 0, 1, NULL, NULL, 1, 9999, 1, AGW_BYPASS_VARIABLE },
    { 1, 1, 0, 0, NULL, NULL, 1, 9999, 1, AGW_BYPASS_CREDENTIAL },
    { 1, 1, 1, 0, NULL, NULL, 1, 9999, 1, AGW_BYPASS_BODY_TOO_LARGE },
};


static void
test_request_bypass(void **state)
{
    size_t                    i;
    agw_bypass_t              got;
    agw_request_facts_t       f;
    const agw_bypass_test_t  *t;

    for (i = 0; i < nitems(bypass_rows); i++) {
        t = &bypass_rows[i];

        memset(&f, 0, sizeof(f));
        f.method_listed = t->method_listed;
        f.has_credential = t->has_credential;
        f.authorized_caching = t->authorized_caching;
        f.bypass_variable = t->bypass_variable;
        f.cache_control = (const uint8_t *) t->cache_control;
        f.cache_control_len = t->cache_control ? strlen(t->cache_control) : 0;
        f.pragma = (const uint8_t *) t->pragma;
        f.pragma_len = t->pragma ? strlen(t->pragma) : 0;
        f.body_len_known = t->body_len_known;
        f.body_len = t->body_len;
        f.max_body = t->max_body;

        got = agw_request_bypass(&f);

        if (got != t->expected) {
            print_error("request_bypass failed: row %zu: expected %s, "
                        "got %s\n", i, agw_bypass_reason(t->expected),
                        agw_bypass_reason(got));
            fail();
        }
    }
}


static void
test_cc_seconds(void **state)
{
    uint64_t        secs;
    size_t          len;
    const uint8_t  *arg;

#define CC(s)  (const uint8_t *) (s), strlen(s)

    secs = 7;
    assert_int_equal(agw_cc_seconds(CC("no-cache"), "max-age", &secs), 0);
    assert_int_equal(secs, 7);
    assert_int_equal(agw_cc_seconds(CC("max-age=60"), "max-age", &secs), 1);
    assert_int_equal(secs, 60);
    assert_int_equal(agw_cc_seconds(CC("public, S-MaxAge=5, max-age=60"),
                                    "s-maxage", &secs), 1);
    assert_int_equal(secs, 5);
    assert_int_equal(agw_cc_seconds(CC("max-age=\"30\""), "max-age", &secs),
                     1);
    assert_int_equal(secs, 30);
    assert_int_equal(agw_cc_seconds(CC("max-age=99999999999999999999999"),
                                    "max-age", &secs), 1);
    assert_int_equal(secs, 0x7fffffff);
    assert_int_equal(agw_cc_seconds(CC("max-age"), "max-age", &secs), -1);
    assert_int_equal(agw_cc_seconds(CC("max-age=1x"), "max-age", &secs), -1);
    assert_int_equal(agw_cc_seconds(CC("x=\"max-age=1\""), "max-age", &secs),
                     0);

    /* the argument, unquoted, and a quoted one cut short */

    assert_int_equal(agw_cc_arg(CC("a=\"b,c\", max-age=4"), "a", &arg, &len),
                     1);
    assert_int_equal(len, 3);
    assert_memory_equal(arg, "b,c", 3);
    assert_int_equal(agw_cc_arg(CC("a=\"bc"), "a", &arg, &len), 1);
    assert_int_equal(len, 2);
    assert_int_equal(agw_cc_arg(CC("a"), "a", &arg, &len), 1);
    assert_null(arg);
    assert_int_equal(len, 0);

#undef CC
}


static void
test_bypass_reason(void **state)
{
    assert_string_equal(agw_bypass_reason(AGW_BYPASS_NONE), "none");
    assert_string_equal(agw_bypass_reason(AGW_BYPASS_METHOD), "method");
    assert_string_equal(agw_bypass_reason(AGW_BYPASS_REQUEST_CC),
                        "cache-control");
    assert_string_equal(agw_bypass_reason(AGW_BYPASS_VARIABLE), "variable");
    assert_string_equal(agw_bypass_reason(AGW_BYPASS_CREDENTIAL),
                        "credential");
    assert_string_equal(agw_bypass_reason(AGW_BYPASS_BODY_TOO_LARGE),
                        "body-too-large");
    assert_string_equal(agw_bypass_reason((agw_bypass_t) 99), "unknown");

    assert_string_equal(agw_store_reason(AGW_STORE_OK), "ok");
    assert_string_equal(agw_store_reason(AGW_STORE_STATUS), "status");
    assert_string_equal(agw_store_reason(AGW_STORE_SET_COOKIE), "set-cookie");
    assert_string_equal(agw_store_reason(AGW_STORE_NO_STORE), "no-store");
    assert_string_equal(agw_store_reason(AGW_STORE_PRIVATE), "private");
    assert_string_equal(agw_store_reason(AGW_STORE_STREAM), "stream");
    assert_string_equal(agw_store_reason(AGW_STORE_TOO_LARGE), "too-large");
    assert_string_equal(agw_store_reason((agw_store_verdict_t) 99),
                        "unknown");
}


typedef struct {
    unsigned             status;
    unsigned             has_set_cookie;
    const char          *cache_control;
    const char          *content_type;
    uint64_t             size;
    uint64_t             max_entry_size;
    agw_store_verdict_t  expected;
} agw_store_test_t;


static const agw_store_test_t  store_rows[] = {
    { 200, 0, NULL, "application/json", 100, 1048576, AGW_STORE_OK },
    { 200, 0, NULL, NULL, 0, 1048576, AGW_STORE_OK },
    { 200, 0, "public, max-age=60", "text/plain", 100, 100, AGW_STORE_OK },
    { 201, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 203, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 204, 0, NULL, NULL, 0, 1048576, AGW_STORE_STATUS },
    { 206, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 301, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 304, 0, NULL, NULL, 0, 1048576, AGW_STORE_STATUS },
    { 404, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 429, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 500, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 0, 0, NULL, NULL, 100, 1048576, AGW_STORE_STATUS },
    { 200, 1, NULL, NULL, 100, 1048576, AGW_STORE_SET_COOKIE },
    { 200, 0, "no-store", NULL, 100, 1048576, AGW_STORE_NO_STORE },
    { 200, 0, "max-age=0, No-Store", NULL, 100, 1048576,
      AGW_STORE_NO_STORE },
    { 200, 0, "private", NULL, 100, 1048576, AGW_STORE_PRIVATE },
    { 200, 0, "private=\"Set-Cookie\"", NULL, 100, 1048576,
      AGW_STORE_PRIVATE },
    { 200, 0, "public, PRIVATE", NULL, 100, 1048576, AGW_STORE_PRIVATE },
    { 200, 0, "no-cache", NULL, 100, 1048576, AGW_STORE_OK },
    { 200, 0, "x=\"private\"", NULL, 100, 1048576, AGW_STORE_OK },
    { 200, 0, NULL, "text/event-stream", 100, 1048576, AGW_STORE_STREAM },
    { 200, 0, NULL, "Text/Event-Stream", 100, 1048576, AGW_STORE_STREAM },
    { 200, 0, NULL, "text/event-stream; charset=utf-8", 100, 1048576,
      AGW_STORE_STREAM },
    { 200, 0, NULL, "text/event-stream;charset=utf-8", 100, 1048576,
      AGW_STORE_STREAM },
    { 200, 0, NULL, " text/event-stream ", 100, 1048576, AGW_STORE_STREAM },
    { 200, 0, NULL, "text/event-streams", 100, 1048576, AGW_STORE_OK },
    { 200, 0, NULL, "text/event", 100, 1048576, AGW_STORE_OK },
    { 200, 0, NULL, "application/x-ndjson", 100, 1048576, AGW_STORE_OK },
    { 200, 0, NULL, "text/plain; x=text/event-stream", 100, 1048576,
      AGW_STORE_OK },
    { 200, 0, NULL, NULL, 1048576, 1048576, AGW_STORE_OK },
    { 200, 0, NULL, NULL, 1048577, 1048576, AGW_STORE_TOO_LARGE },
    { 200, 0, NULL, NULL, UINT64_MAX, 1048576, AGW_STORE_TOO_LARGE },

    /* the order of the checks: the first one listed wins */
    { 500, 1, "no-store, private", "text/event-stream", 9, 1,
      AGW_STORE_STATUS },
    { 200, 1, "no-store, private", "text/event-stream", 9, 1,
      AGW_STORE_SET_COOKIE },
    { 200, 0, "private, no-store", "text/event-stream", 9, 1,
      AGW_STORE_NO_STORE },
    { 200, 0, "private", "text/event-stream", 9, 1, AGW_STORE_PRIVATE },
    { 200, 0, NULL, "text/event-stream", 9, 1, AGW_STORE_STREAM },
};


static void
test_response_storable(void **state)
{
    size_t                   i;
    agw_store_verdict_t      got;
    agw_response_facts_t     f;
    const agw_store_test_t  *t;

    for (i = 0; i < nitems(store_rows); i++) {
        t = &store_rows[i];

        memset(&f, 0, sizeof(f));
        f.status = t->status;
        f.has_set_cookie = t->has_set_cookie;
        f.cache_control = (const uint8_t *) t->cache_control;
        f.cache_control_len = t->cache_control ? strlen(t->cache_control) : 0;
        f.content_type = (const uint8_t *) t->content_type;
        f.content_type_len = t->content_type ? strlen(t->content_type) : 0;
        f.size = t->size;
        f.max_entry_size = t->max_entry_size;

        got = agw_response_storable(&f);

        if (got != t->expected) {
            print_error("response_storable failed: row %zu (%u, cc \"%s\", "
                        "ct \"%s\"): expected %s, got %s\n", i, t->status,
                        t->cache_control ? t->cache_control : "",
                        t->content_type ? t->content_type : "",
                        agw_store_reason(t->expected), agw_store_reason(got));
            fail();
        }
    }
}


typedef struct {
    const char  *name;
    int          skip;
} agw_hop_test_t;


static const agw_hop_test_t  hop_rows[] = {
    { "Connection", 1 },
    { "connection", 1 },
    { "CONNECTION", 1 },
    { "Keep-Alive", 1 },
    { "Proxy-Authenticate", 1 },
    { "Proxy-Authorization", 1 },
    { "TE", 1 },
    { "Trailer", 1 },
    { "Transfer-Encoding", 1 },
    { "Upgrade", 1 },
    { "Date", 1 },
    { "Server", 1 },
    { "Content-Length", 1 },
    { "Age", 1 },
    { "X-Cache", 1 },
    { "x-cache", 1 },
    { "RateLimit", 1 },
    { "RateLimit-Limit", 1 },
    { "ratelimit-remaining", 1 },
    { "RateLimit-Reset", 1 },
    { "RateLimit-Policy", 1 },
    { "RateLimit-Scope", 1 },
    { "Retry-After", 1 },
    { "retry-after-ms", 1 },
    { "Retry-After-Ms", 1 },

    { "Content-Type", 0 },
    { "Cache-Control", 0 },
    { "ETag", 0 },
    { "Vary", 0 },
    { "Trailers", 0 },
    { "T", 0 },
    { "TE2", 0 },
    { "Ag", 0 },
    { "Ages", 0 },
    { "X-Cache-Status", 0 },
    { "Rate", 0 },
    { "RateLimi", 0 },
    { "X-RateLimit-Limit", 0 },
    { "Retry", 0 },
    { "Retry-After-S", 0 },
    { "Set-Cookie", 0 },
    { "", 0 },
};


static void
test_hop_by_hop(void **state)
{
    int     got;
    size_t  i;

    for (i = 0; i < nitems(hop_rows); i++) {
        got = agw_header_is_hop_by_hop((const uint8_t *) hop_rows[i].name,
                                       strlen(hop_rows[i].name));

        if (got != hop_rows[i].skip) {
            print_error("hop_by_hop failed: \"%s\": expected %d, got %d\n",
                        hop_rows[i].name, hop_rows[i].skip, got);
            fail();
        }
    }

    assert_int_equal(agw_header_is_hop_by_hop(NULL, 0), 0);

    /* the length bounds the name */

    assert_int_equal(agw_header_is_hop_by_hop((const uint8_t *) "Agent", 3),
                     1);
}



/* what one request or client was told is never stored for another */
static void
test_header_per_request(void **state)
{
    size_t  i;

    static const char  *per_request[] = {
        "x-ratelimit-limit-requests", "X-RateLimit-Remaining-Tokens",
        "x-ratelimit-reset-tokens", "x-ratelimit-limit-project-tokens",
        "anthropic-ratelimit-requests-limit",
        "Anthropic-RateLimit-Tokens-Reset", "RateLimit", "RateLimit-Policy",
        "Retry-After", "retry-after-ms", "x-should-retry",
        "x-request-id", "X-Request-ID", "request-id", "x-amzn-requestid",
        "apim-request-id", "cf-ray", "traceparent", "tracestate",
        "openai-processing-ms", "server-timing",
        "x-envoy-upstream-service-time", "openai-organization",
        "openai-project", "anthropic-organization-id",
        /* the rest of agw_policy.c's names: its gate must let each by */
        "x-amz-request-id", "X-MS-Request-Id", "x-amz-cf-id",
        "x-amzn-trace-id", "x-cloud-trace-context", "x-response-time",
        "Retry-After-Ms", "Server-Timing", "Traceparent", "CF-Ray",
        "Openai-Project", "Apim-Request-Id"
    };

    static const char  *content[] = {
        "Content-Type", "ETag", "Last-Modified", "Cache-Control", "Vary",
        "openai-version", "x-server-id", "x-ratelimit", "x-ratelimits",
        "anthropic-ratelimit", "request-ids", "x-request", "retry",
        "cf-cache-status", "Link", "", "openai-model", "servers",
        "trace", "anthropic-version", "x-server-id"
    };

    for (i = 0; i < nitems(per_request); i++) {
        if (!agw_header_per_request((const uint8_t *) per_request[i],
                                    strlen(per_request[i])))
        {
            print_error("\"%s\" would be stored\n", per_request[i]);
            fail();
        }
    }

    for (i = 0; i < nitems(content); i++) {
        if (agw_header_per_request((const uint8_t *) content[i],
                                   strlen(content[i])))
        {
            print_error("\"%s\" would not be stored\n", content[i]);
            fail();
        }
    }

    assert_int_equal(agw_header_per_request(NULL, 0), 0);

    /* the length bounds the name */
    assert_int_equal(agw_header_per_request((const uint8_t *) "cf-rayX", 6),
                     1);
    assert_int_equal(agw_header_per_request((const uint8_t *) "cf-ray", 5),
                     0);
}


/* an answer that depends on request headers the key lacks is not stored */
static void
test_response_varies(void **state)
{
    agw_response_facts_t  f;

    (void) state;

    memset(&f, 0, sizeof(f));
    f.status = 200;
    f.max_entry_size = 1024;
    f.size = 10;
    assert_int_equal(agw_response_storable(&f), AGW_STORE_OK);

    f.varies = 1;
    assert_int_equal(agw_response_storable(&f), AGW_STORE_VARIES);
    assert_string_equal(agw_store_reason(AGW_STORE_VARIES), "varies");

    /* a stream is reported as a stream, whatever else it does */
    f.content_type = (const uint8_t *) "text/event-stream";
    f.content_type_len = sizeof("text/event-stream") - 1;
    assert_int_equal(agw_response_storable(&f), AGW_STORE_STREAM);
}

int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_cc_has),
        cmocka_unit_test(test_request_bypass),
        cmocka_unit_test(test_cc_seconds),
        cmocka_unit_test(test_bypass_reason),
        cmocka_unit_test(test_response_storable),
        cmocka_unit_test(test_response_varies),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_header_per_request),
    };

    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
