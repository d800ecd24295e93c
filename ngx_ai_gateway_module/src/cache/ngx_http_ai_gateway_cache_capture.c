/*
 * What a MISS's answer is stored as: the header filter asks here whether
 * the answer may be stored (lib/agw_policy.c) and for how long
 * (lib/agw_fresh.c), and the headers a HIT will replay are taken from it.
 * What is stored is exactly what a HIT replays: an answer with a header
 * that cannot be stored as it is (a control byte) is not stored at all;
 * hop-by-hop headers, those the upstream's Connection header names, and
 * those written fresh on every answer are left out.  A stream
 * (text/event-stream) gets the SSE parser (lib/agw_sse.c), which watches
 * for its terminal event, and for an event that reports an error, as it
 * passes (cache_filter.c).  An answer that may be stored but for its size
 * is shared with the requests waiting on it (cache_wait.c), not stored.
 */

#include "cache/ngx_http_ai_gateway_cache.h"
#include "agw_fresh.h"
#include "agw_policy.h"


#define NGX_HTTP_AI_GATEWAY_MAX_HEADERS  64
#define NGX_HTTP_AI_GATEWAY_MAX_CC       16   /* Cache-Control, Connection
                                                 lines */


#define NGX_HTTP_AI_GATEWAY_SSE_EVENT_MAX  65536  /* bytes of event data
                                                     the parser holds */


static ngx_int_t ngx_http_ai_gateway_cache_sse_init(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);


/* what the capture reads besides the headers it stores */
typedef struct {
    agw_fresh_line_t                   cc[NGX_HTTP_AI_GATEWAY_MAX_CC];
    size_t                             ncc;
    ngx_table_elt_t                   *connection[NGX_HTTP_AI_GATEWAY_MAX_CC];
    ngx_uint_t                         nconnection;
    ngx_table_elt_t                   *expires;
    ngx_table_elt_t                   *date;
    ngx_table_elt_t                   *accel_expires;
} ngx_http_ai_gateway_capture_t;


#define ngx_http_ai_gateway_header_is(h, name)                               \
    ((h)->key.len == sizeof(name) - 1                                        \
     && ngx_strncasecmp((h)->key.data, (u_char *) name, sizeof(name) - 1)    \
        == 0)


/*
 * The upstream's own header lines, as it sent them: Connection (nginx
 * passes the headers it names on as ordinary ones), and Date and
 * X-Accel-Expires, which proxy_hide_header hides from headers_out
 */
static ngx_int_t
ngx_http_ai_gateway_cache_upstream_headers(ngx_http_request_t *r,
    ngx_http_ai_gateway_capture_t *cap)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->upstream == NULL) {
        return NGX_OK;
    }

    part = &r->upstream->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_ai_gateway_header_is(&h[i], "Connection")) {
            if (cap->nconnection == NGX_HTTP_AI_GATEWAY_MAX_CC) {
                return NGX_DECLINED;
            }

            cap->connection[cap->nconnection++] = &h[i];

        } else if (ngx_http_ai_gateway_header_is(&h[i], "Date")) {
            cap->date = &h[i];

        } else if (ngx_http_ai_gateway_header_is(&h[i], "X-Accel-Expires")) {
            cap->accel_expires = &h[i];
        }
    }

    /* proxy_ignore_headers X-Accel-Expires, as proxy_cache honours it */
    if (r->upstream->conf->ignore_headers & NGX_HTTP_UPSTREAM_IGN_XA_EXPIRES) {
        cap->accel_expires = NULL;
    }

    return NGX_OK;
}


/* is the header one of those the upstream's Connection header names? */
static ngx_flag_t
ngx_http_ai_gateway_cache_connection_lists(ngx_http_ai_gateway_capture_t *cap,
    ngx_table_elt_t *h)
{
    ngx_uint_t  i;

    for (i = 0; i < cap->nconnection; i++) {
        if (agw_token_list_has(cap->connection[i]->value.data,
                               cap->connection[i]->value.len,
                               h->key.data, h->key.len))
        {
            return 1;
        }
    }

    return 0;
}


/*
 * The end-to-end headers of the response as an agw headers blob;
 * NGX_DECLINED if the answer is not to be stored: a header that cannot be
 * stored exactly (a control byte in a value) would make the HIT differ
 * from the MISS
 */
static ngx_int_t
ngx_http_ai_gateway_cache_capture_headers(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, agw_response_facts_t *facts,
    ngx_http_ai_gateway_capture_t *cap)
{
    u_char           *p;
    size_t            n, len;
    ngx_uint_t        i;
    agw_header_t      hdrs[NGX_HTTP_AI_GATEWAY_MAX_HEADERS];
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;
    len = 0;

    if (ngx_http_ai_gateway_cache_upstream_headers(r, cap) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (r->headers_out.content_type.len) {
        hdrs[n].name = (const uint8_t *) "Content-Type";
        hdrs[n].name_len = sizeof("Content-Type") - 1;
        hdrs[n].value = r->headers_out.content_type.data;
        hdrs[n].value_len = r->headers_out.content_type.len;
        n++;

        facts->content_type = r->headers_out.content_type.data;
        facts->content_type_len = r->headers_out.content_type.len;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        if (ngx_http_ai_gateway_header_is(&h[i], "Set-Cookie")) {
            facts->has_set_cookie = 1;
        }

        if (ngx_http_ai_gateway_header_is(&h[i], "Cache-Control")) {

            /* every line counts (lib/agw_fresh.c) */
            if (cap->ncc == NGX_HTTP_AI_GATEWAY_MAX_CC) {
                return NGX_DECLINED;
            }

            cap->cc[cap->ncc].data = h[i].value.data;
            cap->cc[cap->ncc].len = h[i].value.len;
            cap->ncc++;

            if (agw_cc_has(h[i].value.data, h[i].value.len, "no-store")
                || agw_cc_has(h[i].value.data, h[i].value.len, "private"))
            {
                facts->cache_control = h[i].value.data;
                facts->cache_control_len = h[i].value.len;
            }
        }

        if (ngx_http_ai_gateway_header_is(&h[i], "Expires")
            && cap->expires == NULL
            && !(r->upstream
                 && (r->upstream->conf->ignore_headers
                     & NGX_HTTP_UPSTREAM_IGN_EXPIRES)))
        {
            cap->expires = &h[i];
        }

        /*
         * the key holds no request header: an answer that depends on one
         * (Vary, beyond the Accept-Encoding every gzip-capable server
         * sends) or that is encoded for this client is not kept for others
         */
        if (ngx_http_ai_gateway_header_is(&h[i], "Content-Encoding")
            || (ngx_http_ai_gateway_header_is(&h[i], "Vary")
                && !(h[i].value.len == sizeof("Accept-Encoding") - 1
                     && ngx_strncasecmp(h[i].value.data,
                                        (u_char *) "Accept-Encoding",
                                        h[i].value.len) == 0)))
        {
            facts->varies = 1;
        }

        /* hop-by-hop, and those a HIT would never replay (agw_entry.c) */
        if (agw_header_is_hop_by_hop(h[i].key.data, h[i].key.len)
            || !agw_header_replayable(h[i].key.data, h[i].key.len)
            || ngx_http_ai_gateway_cache_connection_lists(cap, &h[i]))
        {
            continue;
        }

        if (!agw_header_name_valid(h[i].key.data, h[i].key.len)
            || !agw_header_value_valid(h[i].value.data, h[i].value.len))
        {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "ai_gateway cache not storing: header \"%V: %V\" "
                           "cannot be stored exactly",
                           &h[i].key, &h[i].value);
            return NGX_DECLINED;
        }

        if (n == NGX_HTTP_AI_GATEWAY_MAX_HEADERS) {
            /* an answer with this many headers is not worth caching */
            return NGX_DECLINED;
        }

        hdrs[n].name = h[i].key.data;
        hdrs[n].name_len = h[i].key.len;
        hdrs[n].value = h[i].value.data;
        hdrs[n].value_len = h[i].value.len;
        n++;
    }

    len = agw_headers_size(hdrs, n);

    p = ngx_pnalloc(r->pool, len ? len : 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (agw_headers_encode(p, len, hdrs, n) != len) {
        return NGX_DECLINED;
    }

    ctx->headers = p;
    ctx->headers_len = len;

    return NGX_OK;
}


static int64_t
ngx_http_ai_gateway_cache_http_time(ngx_table_elt_t *h)
{
    time_t  t;

    if (h == NULL) {
        return AGW_FRESH_ABSENT;
    }

    t = ngx_parse_http_time(h->value.data, h->value.len);

    return (t == NGX_ERROR) ? AGW_FRESH_INVALID : (int64_t) t;
}


/*
 * Every event-stream server sends "Cache-Control: no-cache" (OpenAI's, and
 * ai-sim as it), as SSE asks, so that no proxy holds the events back: on a
 * stream it is that transport hint, not the origin's word on storing, and
 * its lines are left out; no-store and private still forbid storing
 * (agw_response_storable), and a max-age on a line of its own counts.
 */
static void
ngx_http_ai_gateway_cache_stream_cc(ngx_http_ai_gateway_capture_t *cap)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < cap->ncc; i++) {
        if (!agw_cc_has(cap->cc[i].data, cap->cc[i].len, "no-cache")) {
            cap->cc[n++] = cap->cc[i];
        }
    }

    cap->ncc = n;
}


/* the answer's own lifetime against ai_gateway_cache_ttl; 0: not stored */
static time_t
ngx_http_ai_gateway_cache_fresh(ngx_http_request_t *r,
    ngx_http_ai_gateway_capture_t *cap)
{
    int64_t                            ttl;
    const char                        *why;
    agw_fresh_facts_t                  fresh;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    fresh.cache_control = cap->cc;
    fresh.ncache_control = cap->ncc;
    fresh.accel_expires = cap->accel_expires
                          ? cap->accel_expires->value.data : NULL;
    fresh.accel_expires_len = cap->accel_expires
                              ? cap->accel_expires->value.len : 0;
    fresh.expires = ngx_http_ai_gateway_cache_http_time(cap->expires);
    fresh.date = ngx_http_ai_gateway_cache_http_time(cap->date);
    fresh.now = ngx_time();
    fresh.max_ttl = conf->ttl;

    why = NULL;
    ttl = agw_fresh_ttl(&fresh, &why);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway cache ttl:%L by %s", ttl,
                   why ? why : "ai_gateway_cache_ttl");

    return (time_t) ttl;
}


void
ngx_http_ai_gateway_cache_start_capture(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    size_t                          overhead;
    time_t                          ttl;
    ngx_http_upstream_t            *u;
    agw_store_verdict_t             verdict;
    agw_response_facts_t            facts;
    ngx_http_ai_gateway_capture_t   cap;

    if (r->header_only) {
        /* a HEAD MISS has no body to store */
        return;
    }

    if (r->headers_in.range) {
        /*
         * the range filter, after this one, may turn the answer into a
         * 206 and slice its body before it reaches the body filter: a
         * fragment must never be kept as the whole answer
         */
        return;
    }

    if (r->headers_out.status != NGX_HTTP_OK) {
        return;
    }

    ngx_memzero(&facts, sizeof(agw_response_facts_t));
    ngx_memzero(&cap, sizeof(ngx_http_ai_gateway_capture_t));

    facts.status = r->headers_out.status;
    facts.max_entry_size = ctx->store->max_entry_size;

    if (ngx_http_ai_gateway_cache_capture_headers(r, ctx, &facts, &cap)
        != NGX_OK)
    {
        return;
    }

    overhead = agw_entry_size(&(agw_entry_t) {
                                  .key = ctx->key.data,
                                  .key_len = ctx->key.len,
                                  .headers = ctx->headers,
                                  .headers_len = ctx->headers_len });

    facts.size = overhead;

    if (r->headers_out.content_length_n > 0) {
        facts.size += r->headers_out.content_length_n;
    }

    verdict = agw_response_storable(&facts);

    if (verdict == AGW_STORE_STREAM) {
        /* streams are stored when they end cleanly: the other rules hold */
        facts.content_type = NULL;
        facts.content_type_len = 0;

        verdict = agw_response_storable(&facts);

        if (verdict == AGW_STORE_OK
            && ngx_http_ai_gateway_cache_sse_init(r, ctx) != NGX_OK)
        {
            return;
        }
    }

    if (verdict == AGW_STORE_TOO_LARGE) {
        ngx_http_ai_gateway_count(ctx->store->ref.stats->too_large, 1);
    }

    if (verdict != AGW_STORE_OK && verdict != AGW_STORE_TOO_LARGE) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway cache not storing: %s",
                       agw_store_reason(verdict));
        return;
    }

    if (ctx->stream) {
        ngx_http_ai_gateway_cache_stream_cc(&cap);
    }

    ttl = ngx_http_ai_gateway_cache_fresh(r, &cap);

    if (ttl <= 0) {
        return;
    }

    ctx->headers_overhead = overhead;

    if (verdict == AGW_STORE_TOO_LARGE) {
        /* storable but for its size: those waiting for it may have it */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway cache not storing: too-large, shared");
        ctx->shareable = 1;

    } else {
        ctx->capture = 1;
        ctx->ttl = ttl;
    }

    u = r->upstream;

    if (u && u->buffering && u->pipe && u->pipe->input_ctx == r
        && u->input_filter_ctx == r)
    {
        ctx->input_filter_init = u->input_filter_init;
        u->input_filter_init = ngx_http_ai_gateway_cache_input_filter_init;
    }
}


static int
ngx_http_ai_gateway_cache_sse_event(void *data, const agw_sse_event_t *ev)
{
    ngx_http_ai_gateway_cache_ctx_t *ctx = data;

    agw_sse_info_t  info;

    agw_sse_inspect(ev, &info);

    /* anything after the terminal event is kept; the end stays seen */
    if (info.terminal) {
        ctx->terminal = 1;
    }

    /* a generation that failed: nothing after it is read */
    if (agw_sse_error(ev)) {
        ctx->stream_error = 1;
        return 1;
    }

    return 0;
}


static ngx_int_t
ngx_http_ai_gateway_cache_sse_init(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    u_char  *data;

    ctx->sse = ngx_palloc(r->pool, sizeof(agw_sse_t));
    data = ngx_pnalloc(r->pool, NGX_HTTP_AI_GATEWAY_SSE_EVENT_MAX);

    if (ctx->sse == NULL || data == NULL) {
        return NGX_ERROR;
    }

    agw_sse_init(ctx->sse, data, NGX_HTTP_AI_GATEWAY_SSE_EVENT_MAX,
                 ngx_http_ai_gateway_cache_sse_event, ctx);

    ctx->stream = 1;

    return NGX_OK;
}
