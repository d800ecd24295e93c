/*
 * What a request costs a zone, where limit_start() does not set it itself
 * (it takes a request zone's fixed cost and a token zone's estimate
 * inline, the path of most requests): a money zone's priced estimate, a
 * HIT's, a cost= with variables; and the request's token estimate.
 */

#include "base/ngx_http_ai_gateway_request.h"
#include "limit/ngx_http_ai_gateway_limit.h"


/*
 * The cost of a line that limit_start() does not set itself (a fixed cost,
 * a token zone's estimate): a money zone's, a HIT's, one refused before
 * its body is read, or a cost= with variables.
 */

ngx_int_t
ngx_http_ai_gateway_limit_cost_of(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_http_ai_gateway_limit_t *limit,
    ngx_http_ai_gateway_bucket_state_t *st, ngx_uint_t hit, ngx_uint_t early)
{
    ngx_http_ai_gateway_bucket_zone_t  *bz;

    bz = st->zone;

    if (bz->tokens) {
        ctx->tokens = 1;
    }

    /*
     * a money zone prices the request by its model, to reserve its
     * estimate and to settle on its usage, whatever it is charged
     * (cost= or a HIT)
     */

    if (bz->usd) {
        ctx->usd = 1;

        if (ngx_http_ai_gateway_limit_priced(r, lcf, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (hit && !limit->charge_hits) {
        st->cost = 0;

    } else if (bz->tokens && !limit->cost_set && early) {
        /*
         * refused before the body is read by another zone: only read,
         * the estimate is not known, and the size of an unread body
         * is not it (it must not turn a rate_limited answer into
         * cost_exceeds_limit)
         */
        st->cost = 0;

    } else if (bz->usd && !limit->cost_set) {
        st->cost = ctx->estimate_usd;

    } else if (bz->tokens && !limit->cost_set) {
        if (ngx_http_ai_gateway_limit_estimate(r, lcf, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        st->cost = ctx->estimate;

    } else if (limit->cost_cv == NULL) {
        st->cost = limit->cost;

    } else if (ngx_http_ai_gateway_limit_cost(r, limit, &st->cost)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * cost=$var evaluated per request: an empty value is the default cost 1; a
 * value that is not a number is logged and counts as 1 too (a client must
 * not be able to escape the limit by sending garbage); a number too large
 * to hold is larger than any burst, so it can never fit (never a bypass)
 */

ngx_int_t
ngx_http_ai_gateway_limit_cost(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_t *limit, uint64_t *cost)
{
    u_char     *p, *last;
    uint64_t    n;
    ngx_str_t   value;

    if (ngx_http_complex_value(r, limit->cost_cv, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    *cost = 1;

    if (value.len == 0) {
        return NGX_OK;
    }

    n = 0;
    last = value.data + value.len;

    for (p = value.data; p < last; p++) {
        if (*p < '0' || *p > '9') {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "ai_gateway_limit cost \"%V\" is not a number, "
                          "using 1", &value);
            return NGX_OK;
        }

        if (n > (UINT64_MAX - (*p - '0')) / 10) {
            *cost = UINT64_MAX;
            return NGX_OK;
        }

        n = n * 10 + (*p - '0');
    }

    /* a request never makes itself free: cost=0 is for literal reads */
    *cost = (n == 0) ? 1 : n;

    return NGX_OK;
}


/*
 * The request's token estimate, once: what a token zone without a cost=
 * reserves.  At least 1: a request never makes itself free.
 */

ngx_int_t
ngx_http_ai_gateway_limit_estimate(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    ngx_http_ai_gateway_request_info_t  *info;

    if (ctx->estimated) {
        return NGX_OK;
    }

    info = ngx_http_ai_gateway_request_info(r);
    if (info == NULL) {
        return NGX_ERROR;
    }

    ctx->estimate = ngx_http_ai_gateway_request_estimate(info,
                                                    lcf->tokens_default_max);
    if (ctx->estimate == 0) {
        ctx->estimate = 1;
    }

    ctx->estimated = 1;

    return NGX_OK;
}
