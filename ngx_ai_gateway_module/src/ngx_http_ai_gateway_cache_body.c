/*
 * The request body of a cacheable request: read it before the proxy runs
 * (as the mirror module does) and hash it as it arrives, in a request body
 * filter, so the digest is complete when the last byte is in — whether
 * nginx then keeps the body in memory buffers or spools it to its temp
 * file, chunked or not — and no byte is ever read back from that file.
 * Two large prompts that differ only at the end never share a key (unlike
 * proxy_cache with $request_body, which is empty once the body spills).
 */

#include "ngx_http_ai_gateway_cache.h"


static ngx_int_t ngx_http_ai_gateway_cache_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_ai_gateway_cache_body_handler(ngx_http_request_t *r);


static ngx_http_request_body_filter_pt   ngx_http_next_request_body_filter;


ngx_int_t
ngx_http_ai_gateway_cache_body_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_ai_gateway_cache_body_filter;

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_cache_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, off_t max)
{
    ngx_int_t  rc;

    ctx->waiting = 1;

    agw_sha256_init(&ctx->body_sha);
    ctx->body_max = max;
    ctx->body_hashing = 1;

    rc = ngx_http_read_client_request_body(r,
                                       ngx_http_ai_gateway_cache_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* drop the reference the body reader took; its handler resumes us */
    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/*
 * Sees the body bytes once, decoded from chunked and before the save
 * filter copies or writes them; past max it stops hashing (the request
 * is then bypassed) but lets the body through.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                             size;
    ngx_buf_t                        *b;
    ngx_chain_t                      *cl;
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ctx == NULL || !ctx->body_hashing) {
        return ngx_http_next_request_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file && !ngx_buf_in_memory(b)) {
            /* not expected before the save filter: never key on a guess */
            ctx->body_hashing = 0;
            break;
        }

        size = ngx_buf_in_memory(b) ? b->last - b->pos : 0;

        if (ctx->body_size + size > ctx->body_max) {
            ctx->body_hashing = 0;
            break;
        }

        if (size) {
            agw_sha256_update(&ctx->body_sha, b->pos, (size_t) size);
            ctx->body_size += size;
        }

        if (b->last_buf) {
            ctx->body_hashing = 0;
            ctx->body_complete = 1;
            break;
        }
    }

    return ngx_http_next_request_body_filter(r, in);
}


static void
ngx_http_ai_gateway_cache_body_handler(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    ctx->waiting = 0;
    ctx->body_hashing = 0;

    /* the proxy sends the body we read */
    r->preserve_body = 1;

    if (ngx_http_ai_gateway_cache_lookup_key(r, ctx) == NGX_DONE) {
        /* an asynchronous store resumes the phases itself */
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * The digest of the whole body: NGX_OK, or NGX_DECLINED when the body
 * cannot be keyed — larger than max, not all of it seen by the filter
 * (discarded, streamed unbuffered, or read by someone before us) — since
 * keying a partial body would key different requests alike.
 */
ngx_int_t
ngx_http_ai_gateway_cache_body_digest(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, agw_digest_t *digest)
{
    if (!ctx->body_complete
        || r->discard_body
        || r->request_body_no_buffering
        || (r->request_body && r->request_body->rest > 0)
        || (r->headers_in.content_length_n >= 0
            && ctx->body_size != r->headers_in.content_length_n))
    {
        return NGX_DECLINED;
    }

    agw_digest_final(digest, &ctx->body_sha);

    return NGX_OK;
}
