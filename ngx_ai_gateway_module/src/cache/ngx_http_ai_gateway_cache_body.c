/*
 * The request body of a cacheable request: read it before the proxy runs
 * (as the mirror module does) and hash it as it arrives, in a request body
 * filter, so the digest is complete when the last byte is in — whether
 * nginx then keeps the body in memory buffers or spools it to its temp
 * file, chunked or not — and no byte is ever read back from that file.
 * Two large prompts that differ only at the end never share a key (unlike
 * proxy_cache with $request_body, which is empty once the body spills).
 *
 * With ai_gateway_cache_key_json on, the filter keeps a copy of the body
 * in memory instead (up to ai_gateway_cache_max_body, spooled or not):
 * the canonical form needs the whole text (members are sorted), and the
 * copy is what it reads, never the temp file.  The canonical form is
 * hashed in place of the bytes; a body that is not canonicalisable (not
 * JSON, a repeated member, too deep) is hashed as it is.  Bytes and forms
 * are hashed under tags of their own (agw_body_digest_init()), so the two
 * never meet.
 */

#include "cache/ngx_http_ai_gateway_cache.h"
#include "base/ngx_http_ai_gateway_request.h"
#include "agw_json_canonical.h"


static ngx_int_t ngx_http_ai_gateway_cache_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_ai_gateway_cache_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ai_gateway_cache_body_copy(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, u_char *data, size_t size);
static ngx_int_t ngx_http_ai_gateway_cache_body_canonical(
    ngx_http_request_t *r, ngx_http_ai_gateway_cache_ctx_t *ctx,
    agw_sha256_t *sha);


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
    ngx_int_t                          rc;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    ctx->waiting = 1;

    agw_body_digest_init(&ctx->body_sha, AGW_BODY_RAW);
    ctx->body_max = max;
    ctx->body_hashing = 1;
    ctx->body_json = conf->key_json ? 1 : 0;

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

        if (size && ctx->body_json) {
            if (ngx_http_ai_gateway_cache_body_copy(r, ctx, b->pos,
                                                    (size_t) size)
                != NGX_OK)
            {
                /* out of memory: bypassed, not failed */
                ctx->body_hashing = 0;
                break;
            }

            ctx->body_size += size;

        } else if (size) {
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

    if (ctx->body_json
        && ngx_http_ai_gateway_cache_body_canonical(r, ctx, &ctx->body_sha)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    agw_digest_final(digest, &ctx->body_sha);

    return NGX_OK;
}


/*
 * Appends to the in-memory copy: sized by Content-Length when it is known
 * (never above max, which the filter checks first), else grown by
 * doubling up to max.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_body_copy(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, u_char *data, size_t size)
{
    u_char  *p;
    size_t   need, alloc;

    need = (size_t) ctx->body_size + size;

    if (need > ctx->body_copy_size) {

        if (ctx->body_copy == NULL
            && r->headers_in.content_length_n >= (off_t) need
            && r->headers_in.content_length_n <= ctx->body_max)
        {
            alloc = (size_t) r->headers_in.content_length_n;

        } else {
            alloc = ngx_max(ctx->body_copy_size * 2, 4096);

            while (alloc < need) {
                alloc *= 2;
            }

            alloc = ngx_min(alloc, (size_t) ctx->body_max);
        }

        p = ngx_pnalloc(r->pool, alloc);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (ctx->body_copy) {
            ngx_memcpy(p, ctx->body_copy, (size_t) ctx->body_size);
            ngx_pfree(r->pool, ctx->body_copy);
        }

        ctx->body_copy = p;
        ctx->body_copy_size = alloc;
    }

    ngx_memcpy(ctx->body_copy + ctx->body_size, data, size);

    return NGX_OK;
}


static int
ngx_http_ai_gateway_cache_body_sha_write(void *data, const uint8_t *in,
    size_t len)
{
    agw_sha256_update(data, in, len);

    return 0;
}


/*
 * Hashes the copy's canonical form into sha, else its bytes.  The scratch
 * (the canonicaliser's tape) is sized for a real request first, a value
 * every 16 bytes or so, and for the worst case only if that was too small.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_body_canonical(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, agw_sha256_t *sha)
{
    int                                rc;
    void                              *scratch;
    size_t                             len, size, nignore;
    ssize_t                            n;
    u_char                            *p;
    agw_json_str_t                    *ignore;
    agw_json_request_t                 req;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    len = (size_t) ctx->body_size;

    ignore = NULL;
    nignore = 0;

    if (conf->key_ignore) {
        ignore = conf->key_ignore->elts;
        nignore = conf->key_ignore->nelts;
    }

    size = ngx_min((len / 16 + 16) * 12, agw_json_scratch_size(len));

    ngx_memzero(&req, sizeof(agw_json_request_t));

    for ( ;; ) {
        scratch = ngx_palloc(r->pool, size);
        if (scratch == NULL) {
            return NGX_ERROR;
        }

        agw_body_digest_init(sha, AGW_BODY_CANONICAL);

        rc = agw_json_canonical(ctx->body_copy, len, ignore, nignore,
                                scratch, size,
                                ngx_http_ai_gateway_cache_body_sha_write, sha,
                                &req);

        ngx_pfree(r->pool, scratch);

        if (rc != AGW_JSON_ENOMEM || size == agw_json_scratch_size(len)) {
            break;
        }

        size = agw_json_scratch_size(len);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway cache key json: %d, %uz bytes", rc, len);

    if (rc != AGW_JSON_OK) {
        /* not canonicalisable: keyed by its bytes, as with key_json off */
        agw_body_digest_init(sha, AGW_BODY_RAW);

        if (len) {
            agw_sha256_update(sha, ctx->body_copy, len);
        }
    }

    if (!req.valid || req.model == NULL) {
        return NGX_OK;
    }

    /* the model, read in the same pass, for the entry (purge by model) */

    if (!req.model_escaped) {
        ctx->model.data = (u_char *) req.model;
        ctx->model.len = req.model_len;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, req.model_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    n = agw_json_unescape(req.model, req.model_len, p, req.model_len);

    if (n > 0) {
        ctx->model.data = p;
        ctx->model.len = n;
    }

    return NGX_OK;
}


/*
 * The model named by the request: from the canonical pass when it ran,
 * else as $ai_gateway_model reads it (a body nginx holds in memory).
 */
ngx_int_t
ngx_http_ai_gateway_cache_body_model(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_str_t *model)
{
    ngx_http_ai_gateway_request_info_t  *info;

    if (ctx->model.len || ctx->body_json) {
        *model = ctx->model;
        return NGX_OK;
    }

    info = ngx_http_ai_gateway_request_info(r);
    if (info == NULL) {
        return NGX_ERROR;
    }

    *model = info->model;

    return NGX_OK;
}
