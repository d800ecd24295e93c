/*
 * The answer of a request, read as it passes, never held back: a body
 * filter hands each buffer in memory to lib/agw_usage.c (a JSON answer's
 * usage, or a stream's: content events counted, usage merged over its
 * events, each event read as it passes whatever its size), times the
 * content events, and passes the chain on unchanged, so a stream reaches
 * the client byte for byte when it would have anyway.
 *
 * Any answer asked for is timed (its first body byte); only a JSON answer
 * (application/json, or a +json type) or a stream (text/event-stream) is
 * parsed, since only they can say what they used.  Times are nginx's
 * millisecond clock (ngx_current_msec) when the bytes went by this filter,
 * which runs in the same event as the upstream's read that brought them.
 */

#include "base/ngx_http_ai_gateway_answer.h"


static ngx_int_t ngx_http_ai_gateway_answer_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_ai_gateway_answer_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
    ngx_http_ai_gateway_answer_read(ngx_http_request_t *r,
    ngx_http_ai_gateway_answer_t *a, ngx_chain_t *in);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE void ngx_http_ai_gateway_answer_start(
    ngx_http_request_t *r, ngx_http_ai_gateway_answer_t *a);
static ngx_int_t ngx_http_ai_gateway_answer_want_mode(ngx_http_request_t *r,
    ngx_uint_t mode);
static ngx_uint_t ngx_http_ai_gateway_answer_mode(ngx_http_request_t *r);
static ngx_inline ngx_uint_t ngx_http_ai_gateway_answer_type(
    ngx_str_t *type, char *name);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_ai_gateway_answer_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ai_gateway_answer_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_ai_gateway_answer_body_filter;

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_answer_want(ngx_http_request_t *r)
{
    return ngx_http_ai_gateway_answer_want_mode(r,
                                            NGX_HTTP_AI_GATEWAY_ANSWER_OTHER);
}


ngx_int_t
ngx_http_ai_gateway_answer_want_readable(ngx_http_request_t *r)
{
    ngx_uint_t                          mode;
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    /* a reader asked for already (the metrics'): its header decides */

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_module);

    if (ctx != NULL && ctx->answer != NULL) {
        return NGX_OK;
    }

    mode = ngx_http_ai_gateway_answer_mode(r);

    if (mode == NGX_HTTP_AI_GATEWAY_ANSWER_OTHER) {
        return NGX_OK;
    }

    return ngx_http_ai_gateway_answer_want_mode(r, mode);
}


/* the reader, its mode known (_JSON, _SSE) or left to the header (_OTHER) */

static ngx_int_t
ngx_http_ai_gateway_answer_want_mode(ngx_http_request_t *r, ngx_uint_t mode)
{
    void                               *a;
    ngx_http_ai_gateway_answer_t       *answer;
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_ai_gateway_module);

    if (ctx != NULL && ctx->answer != NULL) {
        return NGX_OK;
    }

    /*
     * not zeroed whole: the reader (its JSON and SSE state, most of the
     * struct) is initialized by the header filter for an answer it will
     * parse, and of it an answer of another type reads only .content
     */

    ctx = ngx_http_ai_gateway_request_ctx_with(r,
                                         sizeof(ngx_http_ai_gateway_answer_t),
                                         &a);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    answer = a;

    answer->mode = mode;
    answer->reader.content = 0;
    answer->first_byte = 0;
    answer->first_content = 0;
    answer->last_content = 0;
    answer->started = 0;
    answer->has_first_byte = 0;

    ctx->answer = answer;

    return NGX_OK;
}


ngx_uint_t
ngx_http_ai_gateway_answer_usage(ngx_http_ai_gateway_answer_t *a,
    agw_usage_t *usage)
{
    if (a->mode == NGX_HTTP_AI_GATEWAY_ANSWER_OTHER) {
        return 0;
    }

    return agw_usage_reader_usage(&a->reader, usage) ? 1 : 0;
}


/* the header is going out: what the body will be read as */

static ngx_int_t
ngx_http_ai_gateway_answer_header_filter(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    if (r == r->main) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);

        /* once: a second header (an error page after it) is not read again */

        if (ctx != NULL && ctx->answer != NULL && !ctx->answer->started) {
            ngx_http_ai_gateway_answer_start(r, ctx->answer);
        }
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Out of line: an answer nobody asked about passes the filter above
 * without this function's frame
 */

static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE void
ngx_http_ai_gateway_answer_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_answer_t *a)
{
    agw_usage_memo_t  *memo;

    a->started = 1;

    /* answer_want_readable() knew it already */

    if (a->mode == NGX_HTTP_AI_GATEWAY_ANSWER_OTHER) {
        a->mode = ngx_http_ai_gateway_answer_mode(r);
    }

    if (a->mode == NGX_HTTP_AI_GATEWAY_ANSWER_JSON) {
        agw_usage_reader_init(&a->reader, AGW_USAGE_JSON);

    } else if (a->mode == NGX_HTTP_AI_GATEWAY_ANSWER_SSE) {
        agw_usage_reader_init(&a->reader, AGW_USAGE_SSE);

        /* without memory for it, every event is read from its start */

        memo = ngx_palloc(r->pool, sizeof(agw_usage_memo_t));

        if (memo != NULL) {
            agw_usage_reader_memo(&a->reader, memo);
        }
    }
}


/*
 * What the answer's Content-Type says it can be read as: a stream
 * (text/event-stream), JSON (application/json, or a +json type), or
 * neither, which says nothing of its use
 */

static ngx_uint_t
ngx_http_ai_gateway_answer_mode(ngx_http_request_t *r)
{
    ngx_str_t  *type;

    type = &r->headers_out.content_type;

    if (ngx_http_ai_gateway_answer_type(type, "text/event-stream")) {
        return NGX_HTTP_AI_GATEWAY_ANSWER_SSE;
    }

    if (type->len > 12 && (type->data[0] | 0x20) == 'a'
        && (ngx_http_ai_gateway_answer_type(type, "application/json")
            || ngx_strlcasestrn(type->data, type->data + type->len,
                                (u_char *) "+json", 5 - 1)
               != NULL))
    {
        return NGX_HTTP_AI_GATEWAY_ANSWER_JSON;
    }

    return NGX_HTTP_AI_GATEWAY_ANSWER_OTHER;
}


/*
 * the media type, parameters aside, in any case (servers send it in lower
 * case: compared as bytes first); inline, so that the name's length is a
 * constant, not a strlen() on every answer
 */

static ngx_inline ngx_uint_t
ngx_http_ai_gateway_answer_type(ngx_str_t *type, char *name)
{
    size_t  len;

    len = ngx_strlen(name);

    return type->len >= len
           && (ngx_memcmp(type->data, name, len) == 0
               || ngx_strncasecmp(type->data, (u_char *) name, len) == 0)
           && (type->len == len || type->data[len] == ';'
               || type->data[len] == ' ');
}


/* read, never change: every buffer goes on as it came */

static ngx_int_t
ngx_http_ai_gateway_answer_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_http_ai_gateway_request_ctx_t  *ctx;

    if (r == r->main && in != NULL) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);

        if (ctx != NULL && ctx->answer != NULL && ctx->answer->started) {
            return ngx_http_ai_gateway_answer_read(r, ctx->answer, in);
        }
    }

    return ngx_http_next_body_filter(r, in);
}


/*
 * Out of line, and the filter's next in its place (a tail call either
 * way): the filter's tests above are all that an answer nobody asked about
 * runs, without a frame
 */

static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
ngx_http_ai_gateway_answer_read(ngx_http_request_t *r,
    ngx_http_ai_gateway_answer_t *a, ngx_chain_t *in)
{
    size_t        len;
    uint64_t      content;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        /* a buffer nginx spooled to its temp file is not read back here */

        if (!ngx_buf_in_memory(b)) {
            if (!a->has_first_byte && ngx_buf_size(b) > 0) {
                a->first_byte = ngx_current_msec;
                a->has_first_byte = 1;
            }

            continue;
        }

        len = b->last - b->pos;

        if (len == 0) {
            continue;
        }

        if (!a->has_first_byte) {
            a->first_byte = ngx_current_msec;
            a->has_first_byte = 1;
        }

        /*
         * the events a buffer completes went by when it did: the content
         * events' times are the times of the buffers that brought them
         */

        content = a->reader.content;

        if (a->mode != NGX_HTTP_AI_GATEWAY_ANSWER_OTHER) {
            agw_usage_reader_feed(&a->reader, b->pos, len);
        }

        if (a->reader.content > content) {
            if (content == 0) {
                a->first_content = ngx_current_msec;
            }

            a->last_content = ngx_current_msec;
        }
    }

    return ngx_http_next_body_filter(r, in);
}

