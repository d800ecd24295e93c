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
 *
 * What a spooled body says at its top level (model, max_tokens, stream)
 * is read as it passes instead, where a money zone needs the model to
 * price it: ngx_http_ai_gateway_request_watch.c.
 */

#include "base/ngx_http_ai_gateway_request.h"
#include "agw_json.h"
#include "agw_json_scan.h"
#include "agw_prompt.h"
#include "agw_tokens.h"


/*
 * The ctx of a request that had none when the dispatcher told it is
 * cached (a GET HIT, most often): no allocation for a flag.  Shared and
 * never written: the request's figures get a ctx of their own.
 */
static ngx_http_ai_gateway_request_ctx_t  ngx_http_ai_gateway_request_cached_ctx
    = { .cached = 1 };


static ngx_int_t ngx_http_ai_gateway_request_scan(ngx_http_request_t *r,
    ngx_http_ai_gateway_request_ctx_t *ctx,
    ngx_http_ai_gateway_request_info_t *info);
static ngx_int_t ngx_http_ai_gateway_request_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_request_ctx_t *ctx, ngx_str_t *body);
static void ngx_http_ai_gateway_request_body_handler(ngx_http_request_t *r);
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

    if (ngx_http_ai_gateway_request_scan(r, ctx, info) == NGX_ERROR) {
        return NULL;
    }

    return info;
}


ngx_http_ai_gateway_request_ctx_t *
ngx_http_ai_gateway_request_ctx(ngx_http_request_t *r)
{
    return ngx_http_ai_gateway_request_ctx_with(r, 0, NULL);
}


ngx_http_ai_gateway_request_ctx_t *
ngx_http_ai_gateway_request_ctx_with(ngx_http_request_t *r, size_t size,
    void **extra)
{
    ngx_uint_t                          cached;
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);
    cached = (ctx == &ngx_http_ai_gateway_request_cached_ctx);

    if (ctx != NULL && !cached) {
        if (size) {
            *extra = ngx_palloc(r->pool, size);
            if (*extra == NULL) {
                return NULL;
            }
        }

        return ctx;
    }

    /*
     * one allocation for both: the ctx is zeroed, the caller's block not.
     * Zeroed in two parts: gcc zeroes each (56 and 40 bytes) with a few
     * vector stores, the whole (96) with a rep stosq, an instruction per
     * 8 bytes.
     */

    ctx = ngx_palloc(r->pool, sizeof(ngx_http_ai_gateway_request_ctx_t)
                              + size);
    if (ctx == NULL) {
        return NULL;
    }

    ngx_memzero(&ctx->info, sizeof(ngx_http_ai_gateway_request_info_t));
    ngx_memzero(&ctx->watch, sizeof(ngx_http_ai_gateway_request_ctx_t)
                             - offsetof(ngx_http_ai_gateway_request_ctx_t,
                                        watch));

    if (size) {
        *extra = ctx + 1;
    }

    ctx->cached = cached;

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


ngx_int_t
ngx_http_ai_gateway_request_set_stale(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_request_ctx(r);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->stale = 1;

    return NGX_OK;
}


/* NGX_OK, read or not; NGX_ERROR on allocation failure */

static ngx_int_t
ngx_http_ai_gateway_request_scan(ngx_http_request_t *r,
    ngx_http_ai_gateway_request_ctx_t *ctx,
    ngx_http_ai_gateway_request_info_t *info)
{
    u_char              *p;
    off_t                size;
    ssize_t              n;
    ngx_int_t            rc;
    ngx_str_t            body;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    agw_json_request_t   req;

    if (r->request_body == NULL || r->request_body->bufs == NULL
        || r->request_body->rest)
    {
        return NGX_OK;
    }

    rc = ngx_http_ai_gateway_request_body(r, ctx, &body);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* spooled: counted by its size, read as it passed if watched */

        size = 0;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file) {
                size += b->file_last - b->file_pos;

            } else if (ngx_buf_in_memory(b)) {
                size += b->last - b->pos;
            }
        }

        info->body_len = size;
        ngx_http_ai_gateway_request_spooled(ctx, info);

        return NGX_OK;
    }

    info->body_len = body.len;

    if (body.len == 0) {
        return NGX_OK;
    }

    (void) agw_json_scan_request(body.data, body.len, &req);

    if (!req.valid) {
        return NGX_OK;
    }

    info->json = 1;
    info->prompt_bytes = req.prompt_bytes;
    info->prompt_tokens = req.prompt_tokens;
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


ngx_flag_t
ngx_http_ai_gateway_request_inference(ngx_http_request_t *r)
{
    u_char     *p, *last;
    size_t      len;
    ngx_str_t  *type;

    if (r->method != NGX_HTTP_POST) {
        return 0;
    }

    if (r->headers_in.content_type == NULL) {
        return 1;
    }

    /* the media type, parameters and surrounding spaces aside */

    type = &r->headers_in.content_type->value;
    p = type->data;
    last = p + type->len;

    while (p < last && *p == ' ') {
        p++;
    }

    for (len = 0; p + len < last && p[len] != ';' && p[len] != ' '; len++) {
        /* void */
    }

    if (len == 0) {
        return 1;
    }

    if ((len == sizeof("application/json") - 1
         && ngx_strncasecmp(p, (u_char *) "application/json", len) == 0)
        || (len == sizeof("application/x-www-form-urlencoded") - 1
            && ngx_strncasecmp(p,
                               (u_char *) "application/x-www-form-urlencoded",
                               len)
               == 0))
    {
        return 1;
    }

    return len > 5 && ngx_strncasecmp(p + len - 5, (u_char *) "+json", 5) == 0;
}


/*
 * The whole body in one piece, if nginx holds all of it in memory: its one
 * buffer, or a copy of its buffers (the part read with the headers, then
 * the rest), made once.  NGX_DECLINED: not read, or spooled to a file.
 */

static ngx_int_t
ngx_http_ai_gateway_request_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_request_ctx_t *ctx, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (ctx->body.data) {
        *body = ctx->body;
        return NGX_OK;
    }

    if (r->request_body == NULL || r->request_body->bufs == NULL
        || r->request_body->rest)
    {
        return NGX_DECLINED;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_special(b)) {
            continue;       /* the empty last_buf that ends a chunked body */
        }

        if (b->in_file || !ngx_buf_in_memory(b)) {
            return NGX_DECLINED;    /* spooled: counted by its size */
        }

        len += b->last - b->pos;
    }

    if (r->request_body->bufs->next == NULL) {
        ctx->body.data = r->request_body->bufs->buf->pos;

    } else {
        ctx->body.data = ngx_pnalloc(r->pool, len ? len : 1);
        if (ctx->body.data == NULL) {
            return NGX_ERROR;
        }

        p = ctx->body.data;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            if (!ngx_buf_special(cl->buf)) {
                p = ngx_cpymem(p, cl->buf->pos,
                               cl->buf->last - cl->buf->pos);
            }
        }
    }

    ctx->body.len = len;

    *body = ctx->body;

    return NGX_OK;
}


uint64_t
ngx_http_ai_gateway_request_estimate(ngx_http_ai_gateway_request_info_t *info,
    uint64_t default_max)
{
    agw_json_request_t  req;

    if (!info->json) {
        return agw_tokens_estimate_bytes(info->body_len,
                                         info->has_max_tokens
                                         ? info->max_tokens : default_max);
    }

    ngx_memzero(&req, sizeof(agw_json_request_t));

    req.valid = 1;
    req.prompt_bytes = info->prompt_bytes;
    req.prompt_tokens = info->prompt_tokens;
    req.max_tokens = info->max_tokens;
    req.has_max_tokens = info->has_max_tokens;

    return agw_tokens_estimate(&req, default_max);
}


uint64_t
ngx_http_ai_gateway_request_prompt_tokens(
    ngx_http_ai_gateway_request_info_t *info)
{
    if (!info->json) {
        return agw_tokens_prompt(info->body_len, 0);
    }

    return agw_tokens_prompt(info->prompt_bytes, info->prompt_tokens);
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


ngx_int_t
ngx_http_ai_gateway_request_prefix(ngx_http_request_t *r, size_t max,
    ngx_str_t *prefix)
{
    u_char                             *out;
    size_t                              n;
    ngx_int_t                           rc;
    ngx_str_t                           body;
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    r = r->main;

    if (!ngx_http_ai_gateway_request_inference(r)
        || ngx_http_ai_gateway_request_info(r) == NULL)
    {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);

    if (ctx == NULL || !ctx->info.json) {
        return NGX_DECLINED;
    }

    rc = ngx_http_ai_gateway_request_body(r, ctx, &body);

    if (rc != NGX_OK) {
        return rc;
    }

    /* the text the model reads is never longer than the JSON that says it */

    if (max > body.len) {
        max = body.len;
    }

    out = ngx_pnalloc(r->pool, max ? max : 1);
    if (out == NULL) {
        return NGX_ERROR;
    }

    if (agw_prompt_prefix(body.data, body.len, out, max, &n)
        != AGW_PROMPT_FOUND || n == 0)
    {
        return NGX_DECLINED;
    }

    prefix->data = out;
    prefix->len = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_request_read_body(ngx_http_request_t *r)
{
    if (r != r->main) {
        return NGX_DECLINED;
    }

    if (r->reading_body) {
        return NGX_DONE;        /* the phases ran again meanwhile */
    }

    if (r->request_body
        || (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked)
        || !ngx_http_ai_gateway_request_inference(r))
    {
        return NGX_DECLINED;
    }

    return ngx_http_ai_gateway_request_read_resume(r);
}


ngx_int_t
ngx_http_ai_gateway_request_read_resume(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_read_client_request_body(r,
                                      ngx_http_ai_gateway_request_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* drop the reference the body reader took; its handler resumes us */
    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_ai_gateway_request_body_handler(ngx_http_request_t *r)
{
    /* the proxy sends the body read here */
    r->preserve_body = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}
