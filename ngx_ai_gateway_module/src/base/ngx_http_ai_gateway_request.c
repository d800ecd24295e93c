/*
 * What an inference request says about itself (SPEC 7.1): the model, the
 * prompt's size and the tokens it asks for, read once from its JSON body
 * by lib/agw_json_scan.c and kept in the core module's request ctx, with
 * what the dispatcher tells of the request.
 *
 * Only a body that nginx holds in memory is read: the cache step reads the
 * body of cached locations before the limiter runs, and a body small
 * enough for client_body_buffer_size stays in memory.  A body spooled to
 * a temp file, or not read at all (a location that does not cache), is
 * counted by its size: reading the file would be a blocking read in the
 * worker, and reading the body only to estimate it would hold every
 * request of an uncached location until its last byte arrived.
 */

#include "base/ngx_http_ai_gateway_request.h"
#include "agw_json.h"
#include "agw_json_scan.h"
#include "agw_tokens.h"


/*
 * The ctx of a request that had none when the dispatcher told it is
 * cached (a GET HIT, most often): no allocation for a flag.  Shared and
 * never written: the request's figures get a ctx of their own.
 */
static ngx_http_ai_gateway_request_ctx_t  ngx_http_ai_gateway_request_cached_ctx
    = { .cached = 1 };


static ngx_int_t ngx_http_ai_gateway_request_scan(ngx_http_request_t *r,
    ngx_http_ai_gateway_request_info_t *info);
static ngx_int_t ngx_http_ai_gateway_model_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_ai_gateway_request_vars[] = {

    { ngx_string("ai_gateway_model"), NULL,
      ngx_http_ai_gateway_model_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_ai_gateway_request_add_variables(ngx_conf_t *cf)
{
    return ngx_http_ai_gateway_add_variables(cf,
                                             ngx_http_ai_gateway_request_vars);
}


ngx_http_ai_gateway_request_info_t *
ngx_http_ai_gateway_request_info(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t          *ctx;
    ngx_http_ai_gateway_request_info_t         *info;
    static ngx_http_ai_gateway_request_info_t   none;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);

    if (ctx && ctx->read) {
        return &ctx->info;
    }

    /* no body at all (a GET): nothing to read, nothing to allocate */

    if (r->request_body == NULL && r->headers_in.content_length_n <= 0
        && !r->headers_in.chunked)
    {
        return &none;
    }

    ctx = ngx_http_ai_gateway_request_ctx(r);
    if (ctx == NULL) {
        return NULL;
    }

    info = &ctx->info;
    ngx_memzero(info, sizeof(ngx_http_ai_gateway_request_info_t));

    if (r->headers_in.content_length_n > 0) {
        info->body_len = r->headers_in.content_length_n;
    }

    /* a body not read yet may still be: only what is final is kept */

    if (r->request_body == NULL
        && (r->headers_in.content_length_n > 0 || r->headers_in.chunked))
    {
        return info;
    }

    ctx->read = 1;

    if (ngx_http_ai_gateway_request_scan(r, info) == NGX_ERROR) {
        return NULL;
    }

    return info;
}


ngx_http_ai_gateway_request_ctx_t *
ngx_http_ai_gateway_request_ctx(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx, *shared;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);
    shared = &ngx_http_ai_gateway_request_cached_ctx;

    if (ctx != NULL && ctx != shared) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ai_gateway_request_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->cached = (ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module)
                   == shared);

    ngx_http_set_ctx(r, ctx, ngx_http_ai_gateway_module);

    return ctx;
}


void
ngx_http_ai_gateway_request_set_cached(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);

    if (ctx == NULL) {
        ngx_http_set_ctx(r, &ngx_http_ai_gateway_request_cached_ctx,
                         ngx_http_ai_gateway_module);
        return;
    }

    if (ctx != &ngx_http_ai_gateway_request_cached_ctx) {
        ctx->cached = 1;
    }
}


/* NGX_OK, read or not; NGX_ERROR on allocation failure */

static ngx_int_t
ngx_http_ai_gateway_request_scan(ngx_http_request_t *r,
    ngx_http_ai_gateway_request_info_t *info)
{
    u_char              *body, *p;
    size_t               len;
    ssize_t              n;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    agw_json_request_t   req;

    if (r->request_body == NULL || r->request_body->bufs == NULL
        || r->request_body->rest)
    {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file || !ngx_buf_in_memory(b)) {
            return NGX_OK;      /* spooled: counted by its size */
        }

        len += b->last - b->pos;
    }

    info->body_len = len;

    if (len == 0) {
        return NGX_OK;
    }

    if (r->request_body->bufs->next == NULL) {
        body = r->request_body->bufs->buf->pos;

    } else {
        body = ngx_pnalloc(r->pool, len);
        if (body == NULL) {
            return NGX_ERROR;
        }

        p = body;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    (void) agw_json_scan_request(body, len, &req);

    if (!req.valid) {
        return NGX_OK;
    }

    info->json = 1;
    info->prompt_bytes = req.prompt_bytes;
    info->max_tokens = req.max_tokens;
    info->has_max_tokens = req.has_max_tokens;
    info->stream = req.stream;
    info->include_usage = req.include_usage;

    if (req.model == NULL) {
        return NGX_OK;
    }

    if (!req.model_escaped) {
        info->model.data = (u_char *) req.model;
        info->model.len = req.model_len;
        return NGX_OK;
    }

    /* unescaping never lengthens a string */

    p = ngx_pnalloc(r->pool, req.model_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    n = agw_json_unescape(req.model, req.model_len, p, req.model_len);

    if (n >= 0) {
        info->model.data = p;
        info->model.len = n;
    }

    return NGX_OK;
}


uint64_t
ngx_http_ai_gateway_request_estimate(ngx_http_ai_gateway_request_info_t *info,
    uint64_t default_max)
{
    agw_json_request_t  req;

    if (!info->json) {
        return agw_tokens_estimate_bytes(info->body_len, default_max);
    }

    ngx_memzero(&req, sizeof(agw_json_request_t));

    req.valid = 1;
    req.prompt_bytes = info->prompt_bytes;
    req.max_tokens = info->max_tokens;
    req.has_max_tokens = info->has_max_tokens;

    return agw_tokens_estimate(&req, default_max);
}


uint64_t
ngx_http_ai_gateway_request_prompt_tokens(
    ngx_http_ai_gateway_request_info_t *info)
{
    uint64_t  bytes;

    bytes = info->json ? info->prompt_bytes : info->body_len;

    return bytes / AGW_TOKENS_BYTES_PER_TOKEN
           + (bytes % AGW_TOKENS_BYTES_PER_TOKEN != 0);
}


static ngx_int_t
ngx_http_ai_gateway_model_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ai_gateway_request_info_t  *info;

    info = ngx_http_ai_gateway_request_info(r);

    if (info == NULL) {
        return NGX_ERROR;
    }

    if (info->model.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = info->model.len;
    v->data = info->model.data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
