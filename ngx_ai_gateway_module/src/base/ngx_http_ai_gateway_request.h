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
    uint64_t                             max_tokens;
    uint64_t                             body_len; /* as far as known */
    unsigned                             has_max_tokens:1;
    unsigned                             json:1;   /* a JSON body was read */
    unsigned                             stream:1;
    unsigned                             include_usage:1;
} ngx_http_ai_gateway_request_info_t;


/* the answer, as it passes (base/ngx_http_ai_gateway_answer.h) */
typedef struct ngx_http_ai_gateway_answer_s  ngx_http_ai_gateway_answer_t;


/* the core module's request ctx */
typedef struct {
    ngx_http_ai_gateway_request_info_t   info;
    ngx_http_ai_gateway_answer_t        *answer;   /* NULL: not read */
    unsigned                             read:1;   /* info is final */
    unsigned                             cached:1;
} ngx_http_ai_gateway_request_ctx_t;


/* the main request's ctx, of its own (allocated); NULL on failure */
ngx_http_ai_gateway_request_ctx_t *ngx_http_ai_gateway_request_ctx(
    ngx_http_request_t *r);


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

/* the prompt alone, in tokens */
uint64_t ngx_http_ai_gateway_request_prompt_tokens(
    ngx_http_ai_gateway_request_info_t *info);

ngx_int_t ngx_http_ai_gateway_request_add_variables(ngx_conf_t *cf);

/*
 * The request is answered from the cache (a HIT, or another request's
 * flight): the dispatcher (core/) says so after the lookup, and the
 * limiter then reads the buckets of a zone without charging them
 */
void ngx_http_ai_gateway_request_set_cached(ngx_http_request_t *r);


static ngx_inline ngx_flag_t
ngx_http_ai_gateway_request_cached(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_module);

    return ctx && ctx->cached;
}


#endif /* _NGX_HTTP_AI_GATEWAY_REQUEST_H_INCLUDED_ */
