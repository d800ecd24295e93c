
/*
 * Cacheability rules (SPEC 3.2) as pure functions over values the module
 * has already extracted from the request and the response.
 */


#ifndef _AGW_POLICY_H_INCLUDED_
#define _AGW_POLICY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * does a Cache-Control (or Pragma) value contain directive `name`?
 * Case-insensitive token match in a comma list; arguments are ignored, so
 * "private" matches `private="set-cookie"` and "no-cache" `no-cache="x"`;
 * quoted strings are skipped, so `x="no-store"` does not match "no-store"
 */
int agw_cc_has(const uint8_t *value, size_t len, const char *name);

/*
 * the argument of the first directive `name`, unquoted (escapes left as
 * they are): 1 and *arg, *arg_len set (*arg NULL and 0 for no argument),
 * or 0 if the directive is absent
 */
int agw_cc_arg(const uint8_t *value, size_t len, const char *name,
    const uint8_t **arg, size_t *arg_len);

/*
 * delta-seconds of directive `name` (max-age, s-maxage): 1 and *secs set
 * (capped at 2^31 - 1, as RFC 9111 1.2.2 allows), 0 if absent, -1 if
 * present without a valid number
 */
int agw_cc_seconds(const uint8_t *value, size_t len, const char *name,
    uint64_t *secs);


typedef enum {
    AGW_BYPASS_NONE = 0,
    AGW_BYPASS_METHOD,
    AGW_BYPASS_REQUEST_CC,
    AGW_BYPASS_VARIABLE,
    AGW_BYPASS_CREDENTIAL,
    AGW_BYPASS_BODY_TOO_LARGE
} agw_bypass_t;


typedef struct {
    unsigned        method_listed:1;
    unsigned        has_credential:1;    /* a header listed by
                                            ai_gateway_cache_credentials */
    unsigned        authorized_caching:1;
    unsigned        bypass_variable:1;   /* some ai_gateway_cache_bypass value
                                            was non-empty and not "0" */
    unsigned        body_len_known:1;

    const uint8_t  *cache_control;       /* request Cache-Control, every line
                                            joined with ", ", or NULL */
    size_t          cache_control_len;
    const uint8_t  *pragma;              /* request Pragma, the same */
    size_t          pragma_len;

    uint64_t        body_len;            /* bytes */
    uint64_t        max_body;            /* bytes */
} agw_request_facts_t;


/* the first rule that bypasses the cache, in the order of agw_bypass_t */
agw_bypass_t agw_request_bypass(const agw_request_facts_t *f);

/* "none", "method", "cache-control", "variable", "credential",
   "body-too-large", for logs */
const char *agw_bypass_reason(agw_bypass_t b);


typedef enum {
    AGW_STORE_OK = 0,
    AGW_STORE_STATUS,
    AGW_STORE_SET_COOKIE,
    AGW_STORE_NO_STORE,
    AGW_STORE_PRIVATE,
    AGW_STORE_STREAM,
    AGW_STORE_VARIES,
    AGW_STORE_TOO_LARGE
} agw_store_verdict_t;


typedef struct {
    unsigned        status;
    unsigned        has_set_cookie:1;
    unsigned        varies:1;            /* Vary beyond Accept-Encoding, or
                                            Content-Encoding: the answer
                                            depends on request headers the
                                            key does not hold */

    const uint8_t  *cache_control;       /* response Cache-Control, joined
                                            with ", " if several, or NULL */
    size_t          cache_control_len;
    const uint8_t  *content_type;        /* or NULL */
    size_t          content_type_len;

    uint64_t        size;                /* encoded entry or body so far,
                                            bytes */
    uint64_t        max_entry_size;      /* bytes */
} agw_response_facts_t;


/* the first rule that forbids storing, in the order of agw_store_verdict_t */
agw_store_verdict_t agw_response_storable(const agw_response_facts_t *f);

/* "ok", "status", "set-cookie", "no-store", "private", "stream",
   "varies", "too-large", for logs */
const char *agw_store_reason(agw_store_verdict_t v);

/* 1 if the media type (parameters ignored) is text/event-stream */
int agw_content_type_is_stream(const uint8_t *value, size_t len);

/*
 * 1 if a response header is not stored with a cached entry: hop-by-hop
 * headers (Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization,
 * TE, Trailer, Transfer-Encoding, Upgrade) and those the module regenerates
 * on every response (Date, Server, Content-Length, Age, X-Cache,
 * RateLimit*, Retry-After, retry-after-ms); case-insensitive
 */
int agw_header_is_hop_by_hop(const uint8_t *name, size_t len);

/*
 * 1 if a response header describes the one request or client it answered
 * rather than the content, so it is never stored nor replayed to another:
 * the upstream's quota (x-ratelimit-*, anthropic-ratelimit-*, RateLimit*,
 * Retry-After, retry-after-ms, x-should-retry), request and trace ids
 * (x-request-id, request-id, cf-ray, traceparent, ...), that request's
 * timings (openai-processing-ms, server-timing, ...) and its account
 * (openai-organization, openai-project, anthropic-organization-id); the
 * list is in agw_policy.c; case-insensitive
 */
int agw_header_per_request(const uint8_t *name, size_t len);


#endif /* _AGW_POLICY_H_INCLUDED_ */
