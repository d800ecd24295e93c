/*
 * The request body of a cacheable POST: read it before the proxy runs (as
 * the mirror module does), then digest all of it, wherever nginx put it —
 * memory buffers, its temp file, or both — so two large prompts that differ
 * only at the end never share a key (unlike proxy_cache with $request_body,
 * which is empty once the body spills to a file).
 */

#include "ngx_http_ai_gateway_cache.h"
#include "agw_sha256.h"


#define NGX_HTTP_AI_GATEWAY_BODY_CHUNK  16384


static void ngx_http_ai_gateway_cache_body_handler(ngx_http_request_t *r);


ngx_int_t
ngx_http_ai_gateway_cache_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_int_t  rc;

    ctx->waiting = 1;

    rc = ngx_http_read_client_request_body(r,
                                       ngx_http_ai_gateway_cache_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* drop the reference the body reader took; its handler resumes us */
    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_ai_gateway_cache_body_handler(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    ctx->waiting = 0;

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
 * The digest of the whole body: NGX_OK, NGX_DECLINED when the body cannot
 * be keyed (not all of it is here, or it is larger than max), NGX_ERROR
 * when reading it back failed.  A body that is discarded, streamed to the
 * upstream unbuffered, or only partly read would key every such request
 * alike, so it is never keyed.
 */
ngx_int_t
ngx_http_ai_gateway_cache_body_digest(ngx_http_request_t *r,
    agw_digest_t *digest, off_t max, off_t *size)
{
    off_t                      offset;
    u_char                    *chunk;
    size_t                     n;
    ssize_t                    got;
    ngx_buf_t                 *b;
    ngx_chain_t               *cl;
    agw_sha256_t               sha;
    ngx_http_request_body_t   *rb;

    rb = r->request_body;

    if (r->discard_body || r->request_body_no_buffering
        || (rb == NULL && r->headers_in.content_length_n > 0)
        || (rb && rb->rest > 0))
    {
        return NGX_DECLINED;
    }

    agw_sha256_init(&sha);
    *size = 0;
    chunk = NULL;

    for (cl = rb ? rb->bufs : NULL; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            *size += b->last - b->pos;

            if (*size > max) {
                return NGX_DECLINED;
            }

            agw_sha256_update(&sha, b->pos, b->last - b->pos);
            continue;
        }

        if (!b->in_file) {
            continue;
        }

        if (*size + (b->file_last - b->file_pos) > max) {
            /* a chunked body that grew past the limit: not even read */
            return NGX_DECLINED;
        }

        /*
         * The body spilled to nginx's temp file, just written and so in the
         * page cache: read it back in chunks, as the static module reads
         * files, without holding the whole body in memory.  The size is
         * bounded by ai_gateway_cache_max_body.
         */
        if (chunk == NULL) {
            chunk = ngx_palloc(r->pool, NGX_HTTP_AI_GATEWAY_BODY_CHUNK);
            if (chunk == NULL) {
                return NGX_ERROR;
            }
        }

        for (offset = b->file_pos; offset < b->file_last; offset += got) {
            n = (size_t) ngx_min(b->file_last - offset,
                                 NGX_HTTP_AI_GATEWAY_BODY_CHUNK);

            got = ngx_read_file(b->file, chunk, n, offset);

            if (got <= 0) {
                return NGX_ERROR;
            }

            agw_sha256_update(&sha, chunk, got);
            *size += got;
        }
    }

    if (r->headers_in.content_length_n >= 0
        && *size != r->headers_in.content_length_n)
    {
        return NGX_DECLINED;
    }

    agw_digest_final(digest, &sha);

    return NGX_OK;
}
