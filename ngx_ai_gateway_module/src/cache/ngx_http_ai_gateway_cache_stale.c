/*
 * Stale on error (ai_gateway_cache_use_stale): whether the upstream's
 * failure is one the location lists, and the stale entry's headers in
 * place of the failed answer's.  The body filter (cache_filter.c) then
 * sends the entry's body once.
 */

#include "cache/ngx_http_ai_gateway_cache.h"
#include "base/ngx_http_ai_gateway_request.h"


/* did the upstream fail in a way ai_gateway_cache_use_stale lists? */
ngx_flag_t
ngx_http_ai_gateway_cache_stale_applies(ngx_http_request_t *r)
{
    ngx_uint_t                         mask;
    ngx_http_upstream_t               *u;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);
    u = r->upstream;

    if (conf->use_stale == 0 || u == NULL) {
        return 0;
    }

    mask = 0;

    if (u->headers_in.status_n == 0) {
        /* no answer from the upstream: nginx's own error page */
        switch (r->headers_out.status) {
        case NGX_HTTP_GATEWAY_TIME_OUT:
            mask = NGX_HTTP_AI_GATEWAY_STALE_TIMEOUT;
            break;
        case NGX_HTTP_INTERNAL_SERVER_ERROR:
        case NGX_HTTP_BAD_GATEWAY:
        case NGX_HTTP_SERVICE_UNAVAILABLE:
            mask = NGX_HTTP_AI_GATEWAY_STALE_ERROR;
            break;
        }

    } else {
        switch (r->headers_out.status) {
        case NGX_HTTP_INTERNAL_SERVER_ERROR:
            mask = NGX_HTTP_AI_GATEWAY_STALE_500;
            break;
        case NGX_HTTP_BAD_GATEWAY:
            mask = NGX_HTTP_AI_GATEWAY_STALE_502;
            break;
        case NGX_HTTP_SERVICE_UNAVAILABLE:
            mask = NGX_HTTP_AI_GATEWAY_STALE_503;
            break;
        case NGX_HTTP_GATEWAY_TIME_OUT:
            mask = NGX_HTTP_AI_GATEWAY_STALE_504;
            break;
        case NGX_HTTP_TOO_MANY_REQUESTS:
            mask = NGX_HTTP_AI_GATEWAY_STALE_429;
            break;
        }
    }

    return (conf->use_stale & mask) ? 1 : 0;
}


/* the failed answer's headers become the stale entry's */
ngx_int_t
ngx_http_ai_gateway_cache_stale_header(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    agw_entry_t  *e;

    e = &ctx->stale.entry;

    if (ngx_list_init(&r->headers_out.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.status = e->status;
    r->headers_out.status_line.len = 0;
    r->err_status = 0;

    r->headers_out.server = NULL;
    r->headers_out.date = NULL;
    r->headers_out.content_length = NULL;
    r->headers_out.content_encoding = NULL;
    r->headers_out.location = NULL;
    r->headers_out.refresh = NULL;
    r->headers_out.last_modified = NULL;
    r->headers_out.content_range = NULL;
    r->headers_out.accept_ranges = NULL;
    r->headers_out.www_authenticate = NULL;
    r->headers_out.expires = NULL;
    r->headers_out.etag = NULL;
    r->headers_out.override_charset = NULL;
    r->headers_out.content_type_len = 0;
    r->headers_out.content_type.len = 0;
    r->headers_out.content_type.data = NULL;
    r->headers_out.charset.len = 0;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.cache_control.nelts = 0;
    r->headers_out.link.nelts = 0;
    r->headers_out.content_length_n = e->body_len;
    r->headers_out.last_modified_time = -1;

    if (ngx_http_ai_gateway_cache_set_headers(r, e->headers, e->headers_len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->status = NGX_HTTP_AI_GATEWAY_CACHE_STALE;
    ctx->stale_upstream = 1;
    ngx_http_ai_gateway_count(ctx->store->ref.stats->stale, 1);

    /* the limiter gives the reservation back, as for the 5xx it replaces */
    if (ngx_http_ai_gateway_request_set_stale(r) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "ai_gateway cache: upstream failed, answering with a "
                  "stale entry");

    return NGX_OK;
}
