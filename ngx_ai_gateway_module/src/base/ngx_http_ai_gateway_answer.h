/*
 * The answer of a request, read as it passes, for whoever asked before its
 * header went out: the limiter settles token zones on its usage (limit/),
 * the metrics time it and count its tokens (core/).  One reader a request,
 * however many ask; a request nobody asked about is not read at all.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_ANSWER_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_ANSWER_H_INCLUDED_


#include "base/ngx_http_ai_gateway_request.h"
#include "agw_usage.h"


#define NGX_HTTP_AI_GATEWAY_ANSWER_OTHER  0   /* neither: timed only */
#define NGX_HTTP_AI_GATEWAY_ANSWER_JSON   1
#define NGX_HTTP_AI_GATEWAY_ANSWER_SSE    2


struct ngx_http_ai_gateway_answer_s {
    ngx_uint_t                          mode;     /* _ANSWER_* */
    agw_usage_reader_t                  reader;   /* JSON, SSE: its usage,
                                                     a stream's content
                                                     events (.content) */
    ngx_msec_t                          first_byte;    /* when they went */
    ngx_msec_t                          first_content; /* by (SSE) */
    ngx_msec_t                          last_content;
    unsigned                            started:1;     /* the header went
                                                          out */
    unsigned                            has_first_byte:1;
};


/*
 * The main request's answer is to be read: from a phase handler, or from
 * a header filter that runs before the reader's (registered after it).
 * NGX_OK, or NGX_ERROR on allocation failure.
 */
ngx_int_t ngx_http_ai_gateway_answer_want(ngx_http_request_t *r);

/*
 * The same, for who needs only what an answer says of its use: from a
 * header filter above the reader's, and only for an answer whose type can
 * say it (JSON, a stream); any other is neither read nor timed, and costs
 * no reader.
 */
ngx_int_t ngx_http_ai_gateway_answer_want_readable(ngx_http_request_t *r);

/*
 * the answer as read so far; NULL if nobody asked or nothing went out.
 * Inline: the settlement and the metrics ask once for every answer.
 */
static ngx_inline ngx_http_ai_gateway_answer_t *
ngx_http_ai_gateway_answer(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_module);

    if (ctx == NULL || ctx->answer == NULL || !ctx->answer->started) {
        return NULL;
    }

    return ctx->answer;
}

/* what it said of its use: 1 with the figures, 0 if it said nothing */
ngx_uint_t ngx_http_ai_gateway_answer_usage(ngx_http_ai_gateway_answer_t *a,
    agw_usage_t *usage);

/* the reader's filters; before any filter that asks for an answer */
ngx_int_t ngx_http_ai_gateway_answer_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_AI_GATEWAY_ANSWER_H_INCLUDED_ */
