
/*
 * What may be cached, as pure functions.
 *
 * The rules of SPEC 3.2 are few but easy to get subtly wrong, and wrong in
 * the worst direction: a response cached when it should not be is served
 * to someone else.  So they live here, away from nginx's request structs,
 * as functions over plain facts the module extracts (a method-listed flag,
 * header values, sizes), where a table-driven unit test can hit every row.
 *
 * Request side, in order, the first match wins and names the reason logged:
 * a method not in ai_gateway_cache_methods (never a method nginx does not
 * know: the module says so); Cache-Control no-store, no-cache or max-age=0
 * (any max-age that is not a positive number), or Pragma: no-cache (what a
 * browser's reload sends); a bypass variable that is non-empty and not "0"
 * (the module decides that while it evaluates the complex values, as
 * proxy_cache_bypass does); a credential header (Authorization, Cookie,
 * X-Api-Key, ... as ai_gateway_cache_credentials lists them) without
 * ai_gateway_cache_authorized; a body known to exceed
 * ai_gateway_cache_max_body.  A bypassed request is not looked up and its
 * response not stored.
 *
 * Response side, in order: only status 200; never with Set-Cookie (one
 * client's session must not become everyone's); never with Cache-Control
 * no-store or private, the origin's explicit say; never a stream
 * (text/event-stream: a token stream is generated per request and its
 * length is open-ended); never larger than max_entry_size.  The module
 * calls agw_response_storable() again as body bytes arrive, with the size so
 * far, and gives up storing as soon as it says TOO_LARGE.
 *
 * Cache-Control is matched as RFC 9111 describes it: a comma-separated
 * list of `token [ "=" ( token / quoted-string ) ]`, names compared without
 * case.  A substring search would be wrong both ways: it would find
 * "no-store" inside `community="no-store-please"`, and it would miss
 * "No-Store".  Arguments are ignored, so `private="Set-Cookie"` counts as
 * private (we never store a partial response, so the qualified form is
 * honoured as the unqualified one); a quoted string is skipped with its
 * backslash escapes, so nothing inside it is ever taken for a directive.
 * Malformed elements are skipped to the next comma outside quotes.  Pragma
 * is the same list syntax, so one parser serves both.
 *
 * Hop-by-hop headers (RFC 7230 6.1) never go into a stored entry, and
 * neither do the headers this module writes fresh on every response (Date,
 * Age, X-Cache, the RateLimit family, Retry-After): a HIT that replayed the
 * stored ones would report stale figures next to the fresh ones.
 */


#include <string.h>

#include "agw_policy.h"


static uint8_t
agw_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t) (c | 0x20) : c;
}


/* s1 of length n against the lowercase C string s2 of the same length */

static int
agw_eq_nocase(const uint8_t *s1, const char *s2, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (agw_lower(s1[i]) != agw_lower((uint8_t) s2[i])) {
            return 0;
        }
    }

    return 1;
}


static int
agw_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}


/* i is at the opening quote; returns the index past the closing one */

static size_t
agw_skip_quoted(const uint8_t *p, size_t len, size_t i)
{
    for (i++; i < len; i++) {

        if (p[i] == '\\') {
            /* quoted-pair: the next byte is literal, even '"' */
            i++;
            continue;
        }

        if (p[i] == '"') {
            return i + 1;
        }
    }

    /* unterminated: the rest of the value was inside the string */

    return len;
}


int
agw_cc_arg(const uint8_t *value, size_t len, const char *name,
    const uint8_t **arg, size_t *arg_len)
{
    int     match;
    size_t  i, start, name_len;

    if (value == NULL) {
        return 0;
    }

    name_len = strlen(name);
    i = 0;

    while (i < len) {

        /* list separators and whitespace before an element */

        while (i < len && (value[i] == ',' || agw_ows(value[i]))) {
            i++;
        }

        if (i == len) {
            break;
        }

        /* directive name */

        start = i;

        while (i < len && value[i] != ',' && value[i] != '='
               && value[i] != '"' && !agw_ows(value[i]))
        {
            i++;
        }

        match = (i - start == name_len && name_len != 0
                 && agw_eq_nocase(value + start, name, name_len));

        *arg = NULL;
        *arg_len = 0;

        while (i < len && agw_ows(value[i])) {
            i++;
        }

        /* optional argument, token or quoted-string */

        if (i < len && value[i] == '=') {
            i++;

            while (i < len && agw_ows(value[i])) {
                i++;
            }

            start = i;

            if (i < len && value[i] == '"') {
                i = agw_skip_quoted(value, len, i);

                /* without the quotes; an unterminated one ends at len */
                *arg = value + start + 1;
                *arg_len = i - start - 1;

                if (*arg_len && value[i - 1] == '"') {
                    (*arg_len)--;
                }

            } else {
                while (i < len && value[i] != ',' && !agw_ows(value[i])) {
                    i++;
                }

                *arg = value + start;
                *arg_len = i - start;
            }
        }

        if (match) {
            return 1;
        }

        /* the rest of the element (junk) up to a comma */

        while (i < len && value[i] != ',') {
            if (value[i] == '"') {
                i = agw_skip_quoted(value, len, i);

            } else {
                i++;
            }
        }
    }

    return 0;
}


int
agw_cc_has(const uint8_t *value, size_t len, const char *name)
{
    size_t          arg_len;
    const uint8_t  *arg;

    return agw_cc_arg(value, len, name, &arg, &arg_len);
}


int
agw_cc_seconds(const uint8_t *value, size_t len, const char *name,
    uint64_t *secs)
{
    size_t          i, arg_len;
    uint64_t        n;
    const uint8_t  *arg;

    if (!agw_cc_arg(value, len, name, &arg, &arg_len)) {
        return 0;
    }

    if (arg_len == 0) {
        return -1;
    }

    n = 0;

    for (i = 0; i < arg_len; i++) {
        if (arg[i] < '0' || arg[i] > '9') {
            return -1;
        }

        if (n < 0x7fffffff) {
            n = n * 10 + (arg[i] - '0');
        }
    }

    *secs = (n > 0x7fffffff) ? 0x7fffffff : n;

    return 1;
}


agw_bypass_t
agw_request_bypass(const agw_request_facts_t *f)
{
    uint64_t  max_age;

    if (!f->method_listed) {
        return AGW_BYPASS_METHOD;
    }

    /* max-age=0 (or one we cannot read) asks for a fresh answer */

    if (agw_cc_has(f->cache_control, f->cache_control_len, "no-store")
        || agw_cc_has(f->cache_control, f->cache_control_len, "no-cache")
        || agw_cc_has(f->pragma, f->pragma_len, "no-cache"))
    {
        return AGW_BYPASS_REQUEST_CC;
    }

    switch (agw_cc_seconds(f->cache_control, f->cache_control_len,
                           "max-age", &max_age))
    {
    case -1:
        return AGW_BYPASS_REQUEST_CC;
    case 1:
        if (max_age == 0) {
            return AGW_BYPASS_REQUEST_CC;
        }
        break;
    default:
        break;
    }

    if (f->bypass_variable) {
        return AGW_BYPASS_VARIABLE;
    }

    if (f->has_credential && !f->authorized_caching) {
        return AGW_BYPASS_CREDENTIAL;
    }

    if (f->body_len_known && f->body_len > f->max_body) {
        return AGW_BYPASS_BODY_TOO_LARGE;
    }

    return AGW_BYPASS_NONE;
}


const char *
agw_bypass_reason(agw_bypass_t b)
{
    switch (b) {
    case AGW_BYPASS_NONE:
        return "none";
    case AGW_BYPASS_METHOD:
        return "method";
    case AGW_BYPASS_REQUEST_CC:
        return "cache-control";
    case AGW_BYPASS_VARIABLE:
        return "variable";
    case AGW_BYPASS_CREDENTIAL:
        return "credential";
    case AGW_BYPASS_BODY_TOO_LARGE:
        return "body-too-large";
    }

    return "unknown";
}


int
agw_content_type_is_stream(const uint8_t *value, size_t len)
{
    size_t  i, start;

    static const char  stream[] = "text/event-stream";

    if (value == NULL) {
        return 0;
    }

    for (i = 0; i < len && agw_ows(value[i]); i++) {
        /* void */
    }

    start = i;

    while (i < len && value[i] != ';' && !agw_ows(value[i])) {
        i++;
    }

    return i - start == sizeof(stream) - 1
           && agw_eq_nocase(value + start, stream, sizeof(stream) - 1);
}


agw_store_verdict_t
agw_response_storable(const agw_response_facts_t *f)
{
    if (f->status != 200) {
        return AGW_STORE_STATUS;
    }

    if (f->has_set_cookie) {
        return AGW_STORE_SET_COOKIE;
    }

    if (agw_cc_has(f->cache_control, f->cache_control_len, "no-store")) {
        return AGW_STORE_NO_STORE;
    }

    if (agw_cc_has(f->cache_control, f->cache_control_len, "private")) {
        return AGW_STORE_PRIVATE;
    }

    if (agw_content_type_is_stream(f->content_type, f->content_type_len)) {
        return AGW_STORE_STREAM;
    }

    if (f->varies) {
        return AGW_STORE_VARIES;
    }

    if (f->size > f->max_entry_size) {
        return AGW_STORE_TOO_LARGE;
    }

    return AGW_STORE_OK;
}


const char *
agw_store_reason(agw_store_verdict_t v)
{
    switch (v) {
    case AGW_STORE_OK:
        return "ok";
    case AGW_STORE_STATUS:
        return "status";
    case AGW_STORE_SET_COOKIE:
        return "set-cookie";
    case AGW_STORE_NO_STORE:
        return "no-store";
    case AGW_STORE_PRIVATE:
        return "private";
    case AGW_STORE_STREAM:
        return "stream";
    case AGW_STORE_VARIES:
        return "varies";
    case AGW_STORE_TOO_LARGE:
        return "too-large";
    }

    return "unknown";
}


int
agw_header_is_hop_by_hop(const uint8_t *name, size_t len)
{
    size_t  i;

    static const char  *names[] = {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",

        /* regenerated on every response */
        "date",
        "server",
        "content-length",
        "age",
        "x-cache",
        "retry-after",
        "retry-after-ms",
        NULL
    };

    static const char  ratelimit[] = "ratelimit";

    if (name == NULL) {
        return 0;
    }

    for (i = 0; names[i] != NULL; i++) {
        if (strlen(names[i]) == len && agw_eq_nocase(name, names[i], len)) {
            return 1;
        }
    }

    /* RateLimit, RateLimit-Limit, -Remaining, -Reset, -Policy, -Scope */

    return len >= sizeof(ratelimit) - 1
           && agw_eq_nocase(name, ratelimit, sizeof(ratelimit) - 1);
}


/*
 * What an answer says about one request or one client rather than about
 * its content.  Replayed from the cache it would be false: another
 * client's quota (an SDK backs off, or trusts a budget that is not its
 * own), another request's id in a support ticket or a trace, another
 * account's organization.  So it is never stored:
 *
 *   the upstream's quota: x-ratelimit-* (OpenAI, Azure OpenAI, vLLM and
 *     most gateways), anthropic-ratelimit-*, RateLimit*, Retry-After,
 *     retry-after-ms, x-should-retry; the module writes its own where it
 *     limits (src/limit/)
 *   request and trace ids: x-request-id, request-id (Anthropic),
 *     x-amzn-requestid, x-amz-request-id, apim-request-id (Azure),
 *     x-ms-request-id, cf-ray, x-amz-cf-id, x-amzn-trace-id, traceparent,
 *     tracestate, x-cloud-trace-context
 *   timings of that request: openai-processing-ms, server-timing,
 *     x-envoy-upstream-service-time, x-response-time
 *   the account the request was made with: openai-organization,
 *     openai-project, anthropic-organization-id
 *
 * Kept: what describes the answer (Content-Type, ETag, Last-Modified,
 * Cache-Control, openai-version, x-server-id and the like).
 */

#define agw_name(s)  { s, sizeof(s) - 1 }

typedef struct {
    const char  *name;
    size_t       len;
} agw_name_t;


int
agw_header_per_request(const uint8_t *name, size_t len)
{
    size_t  i;

    /* every HIT checks each stored header: lengths first */

    static const agw_name_t  names[] = {
        agw_name("retry-after"),
        agw_name("retry-after-ms"),
        agw_name("x-should-retry"),
        agw_name("x-request-id"),
        agw_name("request-id"),
        agw_name("x-amzn-requestid"),
        agw_name("x-amz-request-id"),
        agw_name("apim-request-id"),
        agw_name("x-ms-request-id"),
        agw_name("cf-ray"),
        agw_name("x-amz-cf-id"),
        agw_name("x-amzn-trace-id"),
        agw_name("traceparent"),
        agw_name("tracestate"),
        agw_name("x-cloud-trace-context"),
        agw_name("openai-processing-ms"),
        agw_name("server-timing"),
        agw_name("x-envoy-upstream-service-time"),
        agw_name("x-response-time"),
        agw_name("openai-organization"),
        agw_name("openai-project"),
        agw_name("anthropic-organization-id")
    };

    static const agw_name_t  prefixes[] = {
        agw_name("ratelimit"),
        agw_name("x-ratelimit-"),
        agw_name("anthropic-ratelimit-")
    };

    if (name == NULL || len == 0) {
        return 0;
    }

    /*
     * most stored names (Content-Type, ETag, openai-version) are none of
     * the above, and their first letter and length say so before any
     * comparison: the letters and lengths of names[], and the prefixes'
     * shortest (kept in step with the lists: test_policy.c tries each)
     */

    switch (name[0] | 0x20) {
    case 'a':
        if (len != 15 && len < 20) {
            return 0;
        }
        break;
    case 'c':
        if (len != 6) {
            return 0;
        }
        break;
    case 'o':
        if (len != 14 && len != 19 && len != 20) {
            return 0;
        }
        break;
    case 'r':
        if (len < 9) {
            return 0;
        }
        break;
    case 's':
        if (len != 13) {
            return 0;
        }
        break;
    case 't':
        if (len != 10 && len != 11) {
            return 0;
        }
        break;
    case 'x':
        if (len < 11) {
            return 0;
        }
        break;
    default:
        return 0;
    }

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        if (len >= prefixes[i].len
            && agw_eq_nocase(name, prefixes[i].name, prefixes[i].len))
        {
            return 1;
        }
    }

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].len == len && agw_eq_nocase(name, names[i].name, len)) {
            return 1;
        }
    }

    return 0;
}
