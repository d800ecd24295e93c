/*
 * What a spooled inference body says at its top level (model, max_tokens,
 * stream), read as it passes where a money zone needs the model to price
 * it (body_facts): a request body filter hands each piece nginx reads,
 * before it is written to the temp file, to the push tokenizer of
 * lib/agw_json_push.c, which keeps a few dozen bytes whatever the split.
 * A model name longer than AGW_JSON_TEXT_MAX bytes is not kept (a model
 * nobody priced), and neither is anything of a body that is not one JSON
 * value.
 */

#include "base/ngx_http_ai_gateway_request.h"
#include "agw_json.h"
#include "agw_json_push.h"
#include "agw_json_request.h"


/* the top-level members a spooled body is read for */
enum {
    NGX_HTTP_AI_GATEWAY_WATCH_NONE = 0,
    NGX_HTTP_AI_GATEWAY_WATCH_MODEL,
    NGX_HTTP_AI_GATEWAY_WATCH_MAX_TOKENS,
    NGX_HTTP_AI_GATEWAY_WATCH_MAX_COMPLETION,
    NGX_HTTP_AI_GATEWAY_WATCH_STREAM
};


struct ngx_http_ai_gateway_request_watch_s {
    agw_json_push_t                      json;
    ngx_uint_t                           key;      /* _WATCH_* */
    size_t                               model_len;
    uint64_t                             max_tokens;
    uint64_t                             max_completion;
    unsigned                             has_model:1;
    unsigned                             has_max_tokens:1;
    unsigned                             has_max_completion:1;
    unsigned                             stream:1;
    unsigned                             done:1;   /* the body ended */
    unsigned                             valid:1;  /* as one JSON value */
    u_char                               model[AGW_JSON_TEXT_MAX];
};


static ngx_int_t ngx_http_ai_gateway_request_body_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static int ngx_http_ai_gateway_request_watch_event(void *data,
    const agw_json_event_t *ev);


static ngx_http_request_body_filter_pt  ngx_http_next_request_body_filter;


ngx_int_t
ngx_http_ai_gateway_request_body_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_ai_gateway_request_body_filter;

    return NGX_OK;
}


/*
 * Every piece of a request body nginx reads passes here before it is
 * saved (the filter is installed only where body_facts is set, so that
 * is not asked again here).  An inference body that will not fit
 * client_body_buffer_size (or comes in chunks) is watched: its pieces go
 * through the push tokenizer as they pass, unchanged.
 */

static ngx_int_t
ngx_http_ai_gateway_request_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_buf_t                            *b;
    ngx_chain_t                          *cl;
    ngx_http_core_loc_conf_t             *clcf;
    ngx_http_ai_gateway_request_ctx_t    *ctx;
    ngx_http_ai_gateway_request_watch_t  *w;

    if (r != r->main) {
        return ngx_http_next_request_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_module);
    w = ctx ? ctx->watch : NULL;

    if (w == NULL) {
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        if ((r->headers_in.content_length_n
             <= (off_t) clcf->client_body_buffer_size
             && !r->headers_in.chunked)
            || !ngx_http_ai_gateway_request_inference(r)
            || (ctx && ctx->read))
        {
            return ngx_http_next_request_body_filter(r, in);
        }

        ctx = ngx_http_ai_gateway_request_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        w = ngx_pcalloc(r->pool, sizeof(ngx_http_ai_gateway_request_watch_t));
        if (w == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        agw_json_push_init(&w->json, ngx_http_ai_gateway_request_watch_event,
                           w);
        ctx->watch = w;
    }

    for (cl = in; cl && !w->done; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            (void) agw_json_push_feed(&w->json, b->pos, b->last - b->pos);
        }

        if (b->last_buf) {
            w->done = 1;
            w->valid = (agw_json_push_finish(&w->json) == AGW_JSON_OK);
        }
    }

    return ngx_http_next_request_body_filter(r, in);
}


static int
ngx_http_ai_gateway_request_watch_event(void *data,
    const agw_json_event_t *ev)
{
    ngx_http_ai_gateway_request_watch_t *w = data;

    u_char          c;
    size_t          i;
    uint64_t        v;
    const u_char   *t;

    if (ev->depth != 1) {
        return 0;
    }

    t = ev->text;

    switch (ev->type) {

    case AGW_JSON_KEY:
        w->key = NGX_HTTP_AI_GATEWAY_WATCH_NONE;

        if (ev->full_len != ev->text_len) {
            break;
        }

        if (ev->text_len == 5 && ngx_strncmp(t, "model", 5) == 0) {
            w->key = NGX_HTTP_AI_GATEWAY_WATCH_MODEL;

        } else if (ev->text_len == 10
                   && ngx_strncmp(t, "max_tokens", 10) == 0)
        {
            w->key = NGX_HTTP_AI_GATEWAY_WATCH_MAX_TOKENS;

        } else if ((ev->text_len == 21
                    && ngx_strncmp(t, "max_completion_tokens", 21) == 0)
                   || (ev->text_len == 17
                       && ngx_strncmp(t, "max_output_tokens", 17) == 0))
        {
            w->key = NGX_HTTP_AI_GATEWAY_WATCH_MAX_COMPLETION;

        } else if (ev->text_len == 6 && ngx_strncmp(t, "stream", 6) == 0) {
            w->key = NGX_HTTP_AI_GATEWAY_WATCH_STREAM;
        }

        break;

    case AGW_JSON_STRING:
        if (w->key == NGX_HTTP_AI_GATEWAY_WATCH_MODEL) {
            /* the last one, as in the scanner; too long: not kept */
            w->has_model = (ev->full_len == ev->text_len);
            w->model_len = ev->text_len;
            ngx_memcpy(w->model, t, ev->text_len);
        }

        break;

    case AGW_JSON_NUMBER:
        if (w->key != NGX_HTTP_AI_GATEWAY_WATCH_MAX_TOKENS
            && w->key != NGX_HTTP_AI_GATEWAY_WATCH_MAX_COMPLETION)
        {
            break;
        }

        /* digits only, saturating as the scanner does */

        for (i = 0, v = 0; i < ev->text_len; i++) {
            c = t[i];

            if (c < '0' || c > '9') {
                return 0;
            }

            v = v * 10 + (c - '0');

            if (v >= AGW_JSON_MAX_INT) {
                v = AGW_JSON_MAX_INT;
                break;
            }
        }

        if (ev->full_len != ev->text_len) {
            v = AGW_JSON_MAX_INT;
        }

        if (w->key == NGX_HTTP_AI_GATEWAY_WATCH_MAX_TOKENS) {
            w->max_tokens = v;
            w->has_max_tokens = 1;

        } else {
            w->max_completion = v;
            w->has_max_completion = 1;
        }

        break;

    case AGW_JSON_TRUE:
    case AGW_JSON_FALSE:
        if (w->key == NGX_HTTP_AI_GATEWAY_WATCH_STREAM) {
            w->stream = (ev->type == AGW_JSON_TRUE);
        }

        break;
    }

    return 0;
}


/*
 * A spooled body's facts, as the body filter read them: its model, what it
 * may write, whether it streams; its prompt stays counted by its size
 */

void
ngx_http_ai_gateway_request_spooled(ngx_http_ai_gateway_request_ctx_t *ctx,
    ngx_http_ai_gateway_request_info_t *info)
{
    ngx_http_ai_gateway_request_watch_t  *w;

    w = ctx->watch;

    if (w == NULL || !w->done || !w->valid) {
        return;
    }

    if (w->has_model) {
        info->model.data = w->model;
        info->model.len = w->model_len;
    }

    if (w->has_max_completion) {
        info->max_tokens = w->max_completion;
        info->has_max_tokens = 1;

    } else if (w->has_max_tokens) {
        info->max_tokens = w->max_tokens;
        info->has_max_tokens = 1;
    }

    info->stream = w->stream;
}
