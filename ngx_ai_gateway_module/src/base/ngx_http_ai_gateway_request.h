/*
 * What is known of a request, for every layer: what an inference request
 * says about itself (the model it names and the figures of the token
 * estimate, SPEC 7.1), read once per request from the JSON body that nginx
 * already holds in memory, and $ai_gateway_model; and what the dispatcher
 * learned of it before the limiter runs (its answer comes from the cache).
 */

#ifndef _NGX_HTTP_AI_GATEWAY_REQUEST_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_REQUEST_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"


typedef struct {
    ngx_str_t                            model;    /* unescaped; empty: none */
    uint64_t                             prompt_bytes;
    uint64_t                             prompt_tokens; /* token ids */
    uint64_t                             max_tokens;
    uint64_t                             body_len; /* as far as known */
    unsigned                             has_max_tokens:1;
    unsigned                             json:1;   /* a JSON body was read */
    unsigned                             stream:1;
    unsigned                             include_usage:1;
} ngx_http_ai_gateway_request_info_t;


/* what a body nginx spools says, read as it passes (request.c) */
typedef struct ngx_http_ai_gateway_request_watch_s
    ngx_http_ai_gateway_request_watch_t;

/* the answer, as it passes (base/ngx_http_ai_gateway_answer.h) */
typedef struct ngx_http_ai_gateway_answer_s  ngx_http_ai_gateway_answer_t;


/*
 * the core module's request ctx; zeroed when made in two parts, info and
 * from watch to the end (request_ctx_with()): nothing between them
 */
typedef struct {
    ngx_http_ai_gateway_request_info_t   info;
    ngx_http_ai_gateway_request_watch_t *watch;
    ngx_str_t                            body;     /* in one piece, once
                                                      asked for */
    ngx_http_ai_gateway_answer_t        *answer;   /* NULL: not read */
    unsigned                             read:1;   /* info is final */
    unsigned                             cached:1;
    unsigned                             stale:1;
} ngx_http_ai_gateway_request_ctx_t;


/* the main request's ctx, of its own (allocated); NULL on failure */
ngx_http_ai_gateway_request_ctx_t *ngx_http_ai_gateway_request_ctx(
    ngx_http_request_t *r);

/*
 * The same, and a block of size bytes from the main request's pool in
 * *extra, not zeroed: allocated with the ctx where the ctx is new (one
 * allocation a request).  NULL on failure.
 */
ngx_http_ai_gateway_request_ctx_t *ngx_http_ai_gateway_request_ctx_with(
    ngx_http_request_t *r, size_t size, void **extra);


/* the request's figures, read on first use; NULL on allocation failure */
ngx_http_ai_gateway_request_info_t *ngx_http_ai_gateway_request_info(
    ngx_http_request_t *r);

/*
 * tokens the request may use: the prompt's (4 bytes a token) plus its
 * max_tokens, else default_max; a body that is not JSON, or was not read,
 * counts by its size
 */
uint64_t ngx_http_ai_gateway_request_estimate(
    ngx_http_ai_gateway_request_info_t *info, uint64_t default_max);

/*
 * Can the body be an inference request, worth reading for its facts?  A
 * POST with a JSON media type (application/json, any +json), none at all,
 * or application/x-www-form-urlencoded (what `curl -d` sends a JSON prompt
 * as).  Other bodies (uploads, other methods: a DAV PUT) are never read
 * for an estimate: they count by their declared size.
 */
ngx_flag_t ngx_http_ai_gateway_request_inference(ngx_http_request_t *r);

/* the prompt alone, in tokens */
uint64_t ngx_http_ai_gateway_request_prompt_tokens(
    ngx_http_ai_gateway_request_info_t *info);

ngx_int_t ngx_http_ai_gateway_request_add_variables(ngx_conf_t *cf);

/*
 * A request body filter that reads the model and max_tokens of inference
 * bodies nginx writes to a temp file, which the facts above cannot read
 * back; for configurations that set body_facts in the main conf
 */
ngx_int_t ngx_http_ai_gateway_request_body_init(ngx_conf_t *cf);

/* a spooled body's facts, as the body filter read them (request_watch.c) */
void ngx_http_ai_gateway_request_spooled(
    ngx_http_ai_gateway_request_ctx_t *ctx,
    ngx_http_ai_gateway_request_info_t *info);

/*
 * The first max bytes of the prompt in the order the model reads it
 * (lib/agw_prompt.h), from an inference body that nginx holds in memory:
 * NGX_OK with prefix set, NGX_DECLINED when there is none (or the body is
 * in a file, or not JSON), NGX_ERROR on allocation failure; for balance/
 */
ngx_int_t ngx_http_ai_gateway_request_prefix(ngx_http_request_t *r,
    size_t max, ngx_str_t *prefix);

/*
 * ai_gateway_body on: the dispatcher's last step reads an inference body
 * before the content phase, as the mirror module does, and resumes the
 * phases.  NGX_DECLINED to go on, NGX_DONE while it comes, or a status.
 */
ngx_int_t ngx_http_ai_gateway_request_read_body(ngx_http_request_t *r);

/*
 * Read the main request's body now and run the phases again once it is
 * in (the proxy then sends the body read here): NGX_DONE, or a status
 */
ngx_int_t ngx_http_ai_gateway_request_read_resume(ngx_http_request_t *r);

/*
 * The request is answered from the cache (a HIT, or another request's
 * flight): the dispatcher (core/) says so after the lookup, and the
 * limiter then reads the buckets of a zone without charging them
 */
void ngx_http_ai_gateway_request_set_cached(ngx_http_request_t *r);


/*
 * The upstream failed and the cache answers with a stale copy (the cache
 * says so as it sends it): the request used nothing of its reservation.
 * NGX_ERROR on allocation failure.
 */
ngx_int_t ngx_http_ai_gateway_request_set_stale(ngx_http_request_t *r);


static ngx_inline ngx_flag_t
ngx_http_ai_gateway_request_stale(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_module);

    return ctx && ctx->stale;
}


static ngx_inline ngx_flag_t
ngx_http_ai_gateway_request_cached(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_module);

    return ctx && ctx->cached;
}


#endif /* _NGX_HTTP_AI_GATEWAY_REQUEST_H_INCLUDED_ */
