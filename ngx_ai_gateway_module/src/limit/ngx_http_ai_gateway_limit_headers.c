/*
 * What the limiter tells the client (SPEC 3.1): the RateLimit-* fields on
 * every answer of a limited location, the 429 answer of a rejected
 * request, and the variables $ai_gateway_limit_status and
 * $ai_gateway_limit_remaining.  The figures come from the request's
 * decision (ngx_http_ai_gateway_limit.c); nothing here touches a bucket.
 */

#include "limit/ngx_http_ai_gateway_limit.h"
#include "base/ngx_http_ai_gateway_answer.h"


static ngx_int_t ngx_http_ai_gateway_limit_header(ngx_http_request_t *r,
    ngx_uint_t field, u_char *value, size_t value_len);
static u_char *ngx_http_ai_gateway_limit_uint_back(u_char *end, uint64_t n);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
    ngx_http_ai_gateway_limit_fields(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx);
static ngx_int_t ngx_http_ai_gateway_limit_header_filter(
    ngx_http_request_t *r);
static void ngx_http_ai_gateway_limit_replace(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx);
static ngx_uint_t ngx_http_ai_gateway_limit_written(
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx);
static ngx_int_t ngx_http_ai_gateway_limit_openai(ngx_http_request_t *r,
    ngx_http_ai_gateway_bucket_state_t *s, ngx_uint_t field);
static ngx_int_t ngx_http_ai_gateway_limit_status_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_ai_gateway_limit_remaining_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_ai_gateway_limit_vars[] = {

    { ngx_string("ai_gateway_limit_status"), NULL,
      ngx_http_ai_gateway_limit_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ai_gateway_limit_remaining"), NULL,
      ngx_http_ai_gateway_limit_remaining_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* the fields the limiter writes, with the lower case names filters match */

typedef struct {
    ngx_str_t                           name;
    u_char                             *lowcase;
} ngx_http_ai_gateway_limit_field_name_t;


enum {
    NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT = 0,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_REMAINING,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_RESET,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_POLICY,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_FIELDS,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_RETRY_AFTER,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_RETRY_AFTER_MS,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_SCOPE,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_SHOULD_RETRY,
    /* OpenAI's, in threes: limit, remaining, reset */
    NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT_REQUESTS,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_REMAINING_REQUESTS,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_RESET_REQUESTS,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT_TOKENS,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_REMAINING_TOKENS,
    NGX_HTTP_AI_GATEWAY_LIMIT_H_RESET_TOKENS
};


static ngx_http_ai_gateway_limit_field_name_t
    ngx_http_ai_gateway_limit_field_names[] =
{
    { ngx_string("RateLimit-Limit"), (u_char *) "ratelimit-limit" },
    { ngx_string("RateLimit-Remaining"), (u_char *) "ratelimit-remaining" },
    { ngx_string("RateLimit-Reset"), (u_char *) "ratelimit-reset" },
    { ngx_string("RateLimit-Policy"), (u_char *) "ratelimit-policy" },
    { ngx_string("RateLimit"), (u_char *) "ratelimit" },
    { ngx_string("Retry-After"), (u_char *) "retry-after" },
    { ngx_string("retry-after-ms"), (u_char *) "retry-after-ms" },
    { ngx_string("RateLimit-Scope"), (u_char *) "ratelimit-scope" },
    { ngx_string("x-should-retry"), (u_char *) "x-should-retry" },
    { ngx_string("x-ratelimit-limit-requests"),
      (u_char *) "x-ratelimit-limit-requests" },
    { ngx_string("x-ratelimit-remaining-requests"),
      (u_char *) "x-ratelimit-remaining-requests" },
    { ngx_string("x-ratelimit-reset-requests"),
      (u_char *) "x-ratelimit-reset-requests" },
    { ngx_string("x-ratelimit-limit-tokens"),
      (u_char *) "x-ratelimit-limit-tokens" },
    { ngx_string("x-ratelimit-remaining-tokens"),
      (u_char *) "x-ratelimit-remaining-tokens" },
    { ngx_string("x-ratelimit-reset-tokens"),
      (u_char *) "x-ratelimit-reset-tokens" }
};


ngx_str_t  ngx_http_ai_gateway_limit_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("REJECTED"),
    ngx_string("REJECTED_DRY_RUN")
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_http_ai_gateway_limit_add_variables(ngx_conf_t *cf)
{
    if (ngx_http_ai_gateway_add_variables(cf, ngx_http_ai_gateway_limit_vars)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_ai_gateway_limit_settle_add_variables(cf);
}


ngx_int_t
ngx_http_ai_gateway_limit_headers_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ai_gateway_limit_header_filter;

    return NGX_OK;
}


/*
 * Answer the request here: it must never reach the upstream, and the body
 * is ours, not an error page.  The header filter adds the RateLimit-*
 * fields, as it does to every response.  A request whose cost can never
 * fit is told so, without Retry-After and with x-should-retry: false,
 * which OpenAI's client libraries honour: retrying would never help.
 */

ngx_int_t
ngx_http_ai_gateway_limit_reject(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_bucket_state_t *st, ngx_uint_t never)
{
    u_char                             *p, *num, *ms, *last;
    size_t                              len;
    uint64_t                            retry;
    ngx_int_t                           rc;
    ngx_buf_t                          *b;
    ngx_uint_t                          first;
    ngx_chain_t                         out;
    ngx_http_ai_gateway_limit_zone_t   *lz;
    ngx_http_ai_gateway_bucket_zone_t  *zone;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    /* no field yet: the ones below come first (see limit_replace()) */
    first = (r->headers_out.headers.part.nelts == 0);

    zone = st->zone;
    lz = ngx_http_ai_gateway_limit_zone_of(zone);
    retry = agw_retry_after_s(st->res.retry_after_ms);

    /* the figures as limit_uint_back() writes them: no format to parse */

    num = NULL;
    ms = NULL;

    if (never) {
        if (ngx_http_ai_gateway_limit_header(r,
                                    NGX_HTTP_AI_GATEWAY_LIMIT_H_SHOULD_RETRY,
                                    (u_char *) "false", 5)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        last = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN);
        if (last == NULL) {
            return NGX_ERROR;
        }

        last += 2 * NGX_INT64_LEN;

        ms = ngx_http_ai_gateway_limit_uint_back(last,
                                                 st->res.retry_after_ms);
        num = ngx_http_ai_gateway_limit_uint_back(ms, retry);

        if (ngx_http_ai_gateway_limit_header(r,
                                     NGX_HTTP_AI_GATEWAY_LIMIT_H_RETRY_AFTER,
                                     num, ms - num)
            != NGX_OK
            || ngx_http_ai_gateway_limit_header(r,
                                  NGX_HTTP_AI_GATEWAY_LIMIT_H_RETRY_AFTER_MS,
                                  ms, last - ms)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_ai_gateway_limit_header(r, NGX_HTTP_AI_GATEWAY_LIMIT_H_SCOPE,
                                         zone->name.data, zone->name.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (first && r->headers_out.headers.part.next == NULL) {
        ctx->own = r->headers_out.headers.part.nelts;
    }

    len = sizeof("{\"error\":\"cost_exceeds_limit\",\"scope\":\"") - 1
          + lz->scope_json.len
          + sizeof("\",\"retry_after\":}\n") - 1 + NGX_INT64_LEN;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    if (never) {
        p = ngx_cpymem(b->last, "{\"error\":\"cost_exceeds_limit\",\"scope\":\"",
                       sizeof("{\"error\":\"cost_exceeds_limit\",\"scope\":\"")
                       - 1);
        p = ngx_cpymem(p, lz->scope_json.data, lz->scope_json.len);
        b->last = ngx_sprintf(p, "\",\"limit\":%uL}\n", zone->bucket.burst);

    } else {
        p = ngx_cpymem(b->last, "{\"error\":\"rate_limited\",\"scope\":\"",
                       sizeof("{\"error\":\"rate_limited\",\"scope\":\"") - 1);
        p = ngx_cpymem(p, lz->scope_json.data, lz->scope_json.len);
        p = ngx_cpymem(p, "\",\"retry_after\":",
                       sizeof("\",\"retry_after\":") - 1);
        p = ngx_cpymem(p, num, ms - num);
        *p++ = '}';
        *p++ = LF;
        b->last = p;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = lcf->status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}


static ngx_int_t
ngx_http_ai_gateway_limit_header(ngx_http_request_t *r, ngx_uint_t field,
    u_char *value, size_t value_len)
{
    ngx_table_elt_t                         *h;
    ngx_http_ai_gateway_limit_field_name_t  *f;

    /* value must live as long as the request: the pool or the cycle */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    f = &ngx_http_ai_gateway_limit_field_names[field];

    /* other filters, and nginx from 1.23 on, read lowcase_key and next */
    h->hash = 1;
    h->key = f->name;
    h->lowcase_key = f->lowcase;
    h->value.len = value_len;
    h->value.data = value;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * A number in decimal, written backwards so that it ends at "end", two
 * digits at a time; returns where it starts.  Every response of a limited
 * location carries two numbers, and ngx_sprintf()'s format parsing cost
 * more than the rest of the header filter together.
 */
static u_char *
ngx_http_ai_gateway_limit_uint_back(u_char *end, uint64_t n)
{
    ngx_uint_t  d;

    static const char  pairs[] =
        "00010203040506070809" "10111213141516171819"
        "20212223242526272829" "30313233343536373839"
        "40414243444546474849" "50515253545556575859"
        "60616263646566676869" "70717273747576777879"
        "80818283848586878889" "90919293949596979899";

    while (n >= 100) {
        d = (ngx_uint_t) (n % 100) * 2;
        n /= 100;
        *--end = pairs[d + 1];
        *--end = pairs[d];
    }

    if (n >= 10) {
        d = (ngx_uint_t) n * 2;
        *--end = pairs[d + 1];
        *--end = pairs[d];

    } else {
        *--end = (u_char) ('0' + n);
    }

    return end;
}


/*
 * OpenAI's three fields of one unit, from its most constrained zone: the
 * capacity, what is left after this request, and the time until the
 * bucket is full again as OpenAI writes durations ("6m0s", "120ms")
 */

static ngx_int_t
ngx_http_ai_gateway_limit_openai(ngx_http_request_t *r,
    ngx_http_ai_gateway_bucket_state_t *s, ngx_uint_t field)
{
    u_char                            *p, *remaining, *reset;
    ngx_http_ai_gateway_limit_zone_t  *zone;

    if (s == NULL) {
        return NGX_OK;
    }

    zone = ngx_http_ai_gateway_limit_zone_of(s->zone);

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + AGW_DURATION_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    remaining = p;
    reset = ngx_sprintf(p, "%uL", s->res.remaining);
    p = reset + agw_duration_format(reset, s->res.reset_ms);

    if (ngx_http_ai_gateway_limit_header(r, field,
                                         zone->limit_value.data,
                                         zone->limit_value.len)
        != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, field + 1, remaining,
                                            reset - remaining)
           != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, field + 2, reset, p - reset)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ai_gateway_limit_header_filter(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_limit_ctx_t       *ctx;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_ai_gateway_limit_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    /* no zone applied, or none could say (Redis failed open) */

    if (ctx->settle || (lcf->headers && ctx->zone != NULL)) {
        return ngx_http_ai_gateway_limit_fields(r, lcf, ctx);
    }

    return ngx_http_next_header_filter(r);
}


/*
 * The answer of a request with tokens reserved is to be read, and the
 * fields the location asked for are written; then the next filter.  Out
 * of line: a request that needs neither (headers off) passes the filter
 * above without this function's frame.
 */

static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
ngx_http_ai_gateway_limit_fields(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    u_char                            *end, *remaining, *remaining_end;
    u_char                            *reset, *fields;
    ngx_http_ai_gateway_limit_zone_t  *zone;

    /*
     * tokens reserved: the answer's usage settles them, if its type can
     * say it (the reader's filter is below this one)
     */

    if (ctx->settle && ngx_http_ai_gateway_answer_want_readable(r) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!lcf->headers || ctx->zone == NULL) {
        return ngx_http_next_header_filter(r);
    }

    /*
     * fields of the same names come from an upstream, or from a cached
     * answer of one: nginx's own content handlers write none, and
     * add_header's filter runs after this one
     */

    if (r->upstream != NULL || ngx_http_ai_gateway_request_cached(r)) {
        ngx_http_ai_gateway_limit_replace(r, lcf, ctx);
    }

    if ((lcf->headers & NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_OPENAI)
        && (ngx_http_ai_gateway_limit_openai(r, ctx->report_requests,
                                       NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT_REQUESTS)
            != NGX_OK
            || ngx_http_ai_gateway_limit_openai(r, ctx->report_tokens,
                                       NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT_TOKENS)
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    if (!(lcf->headers & NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_IETF)) {
        return ngx_http_next_header_filter(r);
    }

    zone = ctx->zone;

    /*
     * RateLimit: "NAME";r=REMAINING;t=RESET, built from its end; the
     * values of RateLimit-Remaining and RateLimit-Reset are its figures
     */

    fields = ngx_pnalloc(r->pool, zone->fields_start.len + sizeof(";t=") - 1
                                  + 2 * NGX_INT64_LEN);
    if (fields == NULL) {
        return NGX_ERROR;
    }

    end = fields + zone->fields_start.len + sizeof(";t=") - 1
          + 2 * NGX_INT64_LEN;

    reset = ngx_http_ai_gateway_limit_uint_back(end, ctx->reset);

    remaining_end = reset - (sizeof(";t=") - 1);
    ngx_memcpy(remaining_end, ";t=", sizeof(";t=") - 1);

    remaining = ngx_http_ai_gateway_limit_uint_back(remaining_end,
                                                    ctx->remaining);

    fields = remaining - zone->fields_start.len;
    ngx_memcpy(fields, zone->fields_start.data, zone->fields_start.len);

    if (ngx_http_ai_gateway_limit_header(r, NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT,
                                         zone->limit_value.data,
                                         zone->limit_value.len)
        != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, NGX_HTTP_AI_GATEWAY_LIMIT_H_REMAINING,
                                            remaining,
                                            remaining_end - remaining)
           != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, NGX_HTTP_AI_GATEWAY_LIMIT_H_RESET,
                                            reset, end - reset)
           != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, NGX_HTTP_AI_GATEWAY_LIMIT_H_POLICY,
                                            zone->policy_value.data,
                                            zone->policy_value.len)
           != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, NGX_HTTP_AI_GATEWAY_LIMIT_H_FIELDS,
                                            fields, end - fields)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/* the fields the header filter writes, a bit each */

static ngx_uint_t
ngx_http_ai_gateway_limit_written(ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    ngx_uint_t  fields;

    fields = 0;

    if (lcf->headers & NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_IETF) {
        fields |= 0x1f << NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT;
    }

    if (lcf->headers & NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_OPENAI) {
        if (ctx->report_requests) {
            fields |= 7 << NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT_REQUESTS;
        }

        if (ctx->report_tokens) {
            fields |= 7 << NGX_HTTP_AI_GATEWAY_LIMIT_H_LIMIT_TOKENS;
        }
    }

    return fields;
}


/*
 * The fields the header filter is about to write replace the upstream's of
 * the same name: an upstream that limits too (OpenAI behind the gateway)
 * sends its own x-ratelimit-*, and two lines of one field read as "a, b"
 * to an SDK.  Where the module limits, its figures apply; hash 0 is how
 * nginx's filters skip a header.  The limiter's own 429 carries no other
 * field as a rule, only its own (Retry-After, retry-after-ms or
 * x-should-retry, RateLimit-Scope: none of them one that is dropped), and
 * they are not walked: three names as long as ours, compared with each
 * field written, cost more than the rest of the filter.
 */
static void
ngx_http_ai_gateway_limit_replace(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    ngx_uint_t                               i, f, fields;
    ngx_list_part_t                         *part;
    ngx_table_elt_t                         *h;
    ngx_http_ai_gateway_limit_field_name_t  *names;

    /*
     * a bit per field written, as ngx_http_ai_gateway_limit_field_names;
     * worked out at the first header that could be one (most answers have
     * none)
     */

    fields = 0;
    names = ngx_http_ai_gateway_limit_field_names;

    part = &r->headers_out.headers.part;
    h = part->elts;

    /* the 429's own fields, if they are still the first (its scope last) */

    i = ctx->own;

    if (i && (i > part->nelts
              || h[i - 1].key.data
                 != names[NGX_HTTP_AI_GATEWAY_LIMIT_H_SCOPE].name.data))
    {
        i = 0;
    }

    for ( /* void */ ; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        /* every name written is "RateLimit" long or longer */
        if (h[i].hash == 0 || h[i].key.len < sizeof("RateLimit") - 1) {
            continue;
        }

        if (fields == 0) {
            fields = ngx_http_ai_gateway_limit_written(lcf, ctx);
        }

        for (f = 0; fields >> f; f++) {
            /* the last byte first: the names share their beginnings */
            if ((fields >> f & 1)
                && h[i].key.len == names[f].name.len
                && ngx_tolower(h[i].key.data[h[i].key.len - 1])
                   == names[f].lowcase[h[i].key.len - 1]
                && ngx_strncasecmp(h[i].key.data, names[f].lowcase,
                                   h[i].key.len)
                   == 0)
            {
                h[i].hash = 0;
                break;
            }
        }
    }
}


static ngx_int_t
ngx_http_ai_gateway_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_limit_get_ctx(r->main);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_ai_gateway_limit_status_names[ctx->status].len;
    v->data = ngx_http_ai_gateway_limit_status_names[ctx->status].data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ai_gateway_limit_remaining_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                           *p;
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_limit_get_ctx(r->main);

    if (ctx == NULL || ctx->zone == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uL", ctx->remaining) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
