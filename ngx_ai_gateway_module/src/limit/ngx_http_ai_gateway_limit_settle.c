/*
 * Token and money zones settled on the real usage (SPEC 7.1, 8.4).
 *
 * A request admitted by a token zone reserved its estimate there
 * (ngx_http_ai_gateway_limit.c).  Its answer is read as it passes, never
 * held back, by base/ngx_http_ai_gateway_answer.c, the reader the
 * metrics share (lib/agw_usage.c: a JSON answer's usage, or a stream's:
 * content events counted, usage merged over its events, each event read
 * as it passes whatever its size).
 *
 * When the request ends (the log phase, which every finalized request
 * reaches), each zone's reservation is settled on what the answer used:
 *
 *   nothing reached the client, or the status is a 5xx    0 (all back)
 *   a stale copy from the cache (the upstream failed)     0
 *   the answer reported usage                             its total
 *   a stream without usage                                one token per
 *                                                         content event,
 *                                                         plus the prompt
 *   another answer that is not a 2xx                      0
 *   a 2xx that said nothing                               the estimate
 *
 * Unused tokens go back, an overrun is taken and may leave the bucket in
 * debt (lib/agw_bucket.c, agw_bucket_settle()); a redis zone is settled by
 * a script, fire and forget.  $ai_gateway_tokens_used is that figure and
 * $ai_gateway_tokens_estimate the reservation.
 */

#include "limit/ngx_http_ai_gateway_limit.h"
#include "base/ngx_http_ai_gateway_answer.h"
#include "base/ngx_http_ai_gateway_request.h"


static ngx_int_t ngx_http_ai_gateway_limit_settle_handler(
    ngx_http_request_t *r);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE void ngx_http_ai_gateway_limit_settle(
    ngx_http_request_t *r, ngx_http_ai_gateway_limit_ctx_t *ctx);
static void ngx_http_ai_gateway_limit_used(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, uint64_t *tokens, uint64_t *usd);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_uint_t
    ngx_http_ai_gateway_limit_used_said(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_http_ai_gateway_answer_t *a,
    uint64_t *tokens, uint64_t *usd);
static ngx_int_t ngx_http_ai_gateway_tokens_estimate_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_ai_gateway_tokens_used_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_ai_gateway_cost_usd_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_ai_gateway_limit_settle_vars[] = {

    { ngx_string("ai_gateway_tokens_estimate"), NULL,
      ngx_http_ai_gateway_tokens_estimate_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ai_gateway_tokens_used"), NULL,
      ngx_http_ai_gateway_tokens_used_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ai_gateway_cost_usd"), NULL,
      ngx_http_ai_gateway_cost_usd_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_ai_gateway_limit_settle_add_variables(ngx_conf_t *cf)
{
    return ngx_http_ai_gateway_add_variables(cf,
                                        ngx_http_ai_gateway_limit_settle_vars);
}


ngx_int_t
ngx_http_ai_gateway_limit_settle_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_ai_gateway_limit_settle_handler;

    return NGX_OK;
}


/*
 * What the answer used, in tokens and, for a priced request, in
 * micro-dollars (see the table at the top; a usage is priced by
 * lib/agw_price.c, its cached tokens at their price).  The same figures
 * whenever asked: by the access log, which may run first, and by the
 * settlement.
 */

static void
ngx_http_ai_gateway_limit_used(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, uint64_t *tokens, uint64_t *usd)
{
    ngx_uint_t                     status;
    ngx_http_ai_gateway_answer_t  *a;

    if (ctx->settled) {
        *tokens = ctx->used;
        *usd = ctx->used_usd;
        return;
    }

    *tokens = 0;
    *usd = 0;

    status = r->err_status ? r->err_status : r->headers_out.status;

    if (!r->header_sent || status >= NGX_HTTP_INTERNAL_SERVER_ERROR
        || status == 0 || ngx_http_ai_gateway_request_stale(r))
    {
        return;
    }

    a = ngx_http_ai_gateway_answer(r);

    /* an answer not read, or neither JSON nor a stream, says nothing */

    if (a != NULL && a->mode != NGX_HTTP_AI_GATEWAY_ANSWER_OTHER
        && ngx_http_ai_gateway_limit_used_said(r, ctx, a, tokens, usd))
    {
        return;
    }

    if (status < NGX_HTTP_OK || status >= NGX_HTTP_SPECIAL_RESPONSE) {
        return;
    }

    *tokens = ctx->estimate;
    *usd = ctx->estimate_usd;
}


/*
 * What a JSON answer or a stream said of its use: 1 with the figures, 0
 * if it said nothing.  Out of line: its usage on the stack would cost
 * limit_used() a guarded frame for every answer, read or not.
 */

static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_uint_t
ngx_http_ai_gateway_limit_used_said(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_http_ai_gateway_answer_t *a,
    uint64_t *tokens, uint64_t *usd)
{
    uint64_t                             prompt;
    agw_usage_t                          usage;
    ngx_http_ai_gateway_request_info_t  *info;

    if (ngx_http_ai_gateway_answer_usage(a, &usage)
        && agw_usage_tokens(&usage, tokens))
    {
        if (ctx->priced) {
            (void) agw_price_usage(ctx->price, &usage, usd);
        }

        return 1;
    }

    if (a->mode == NGX_HTTP_AI_GATEWAY_ANSWER_SSE && a->reader.content) {

        /* a stream without usage: its content events and the prompt */

        info = ngx_http_ai_gateway_request_info(r);
        prompt = info ? ngx_http_ai_gateway_request_prompt_tokens(info) : 0;

        *tokens = agw_tokens_add(a->reader.content, prompt);

        if (ctx->priced) {
            *usd = agw_price_cost(ctx->price, prompt, 0, a->reader.content);
        }

        return 1;
    }

    return 0;
}


static ngx_int_t
ngx_http_ai_gateway_limit_settle_handler(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    /*
     * with log_subrequest on, the log phase runs for subrequests (mirror,
     * SSI) too, possibly before the main answer came: only the main
     * request settles its reservation
     */

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_ai_gateway_limit_get_ctx(r);

    if (ctx == NULL || !ctx->settle || ctx->settled) {
        return NGX_OK;
    }

    ngx_http_ai_gateway_limit_settle(r, ctx);

    return NGX_OK;
}


/*
 * Out of line: the handler's test above is all that most requests run,
 * without this function's frame
 */

static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE void
ngx_http_ai_gateway_limit_settle(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    uint64_t                             used, now;
    ngx_http_ai_gateway_bucket_state_t  *s, *last;

    ngx_http_ai_gateway_limit_used(r, ctx, &ctx->used, &ctx->used_usd);
    ctx->settled = 1;

    now = ngx_http_ai_gateway_bucket_now();

    for (s = ctx->batch.st, last = s + ctx->batch.n; s < last; s++) {
        if (s->zone == NULL || s->reserved == 0 || s->charged == NULL) {
            continue;
        }

        used = s->zone->usd ? ctx->used_usd : ctx->used;

        ngx_http_ai_gateway_count(s->zone->ref->stats->settled, used);

        if (used < s->reserved) {
            ngx_http_ai_gateway_count(s->zone->ref->stats->returned,
                                      s->reserved - used);

        } else if (used > s->reserved) {
            ngx_http_ai_gateway_count(s->zone->ref->stats->overrun,
                                      used - s->reserved);

        } else {
            continue;       /* nothing moves */
        }

        s->charged->settle(r, s, used, now);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway limit: settled %uL tokens of %uL, "
                   "%uL micro-USD of %uL", ctx->used, ctx->estimate,
                   ctx->used_usd, ctx->estimate_usd);
}


static ngx_int_t
ngx_http_ai_gateway_limit_token_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uint64_t n)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uL", n) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/* the reservation of a request that met a token zone, else what it would be */

static ngx_int_t
ngx_http_ai_gateway_tokens_estimate_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ai_gateway_limit_ctx_t       *ctx;
    ngx_http_ai_gateway_request_info_t    *info;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    ctx = ngx_http_ai_gateway_limit_get_ctx(r->main);

    if (ctx && ctx->estimated) {
        return ngx_http_ai_gateway_limit_token_variable(r, v, ctx->estimate);
    }

    info = ngx_http_ai_gateway_request_info(r);
    if (info == NULL) {
        return NGX_ERROR;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    return ngx_http_ai_gateway_limit_token_variable(r, v,
               ngx_http_ai_gateway_request_estimate(info,
                                                    lcf->tokens_default_max));
}


static ngx_int_t
ngx_http_ai_gateway_tokens_used_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    uint64_t                          tokens, usd;
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_limit_get_ctx(r->main);

    if (ctx == NULL || !ctx->settle) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_ai_gateway_limit_used(r->main, ctx, &tokens, &usd);

    return ngx_http_ai_gateway_limit_token_variable(r, v, tokens);
}


/*
 * The settled cost of a request a money zone priced, in USD with 6
 * decimals: what its budget was charged in the end, so 0 for a request
 * that reserved nothing (refused, a free HIT, a model priced at 0)
 */

static ngx_int_t
ngx_http_ai_gateway_cost_usd_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                           *p;
    uint64_t                          tokens, usd;
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_limit_get_ctx(r->main);

    if (ctx == NULL || !ctx->priced) {
        v->not_found = 1;
        return NGX_OK;
    }

    usd = 0;

    if (ctx->settle) {
        ngx_http_ai_gateway_limit_used(r->main, ctx, &tokens, &usd);
    }

    p = ngx_pnalloc(r->pool, AGW_PRICE_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = agw_price_format(p, usd);
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
