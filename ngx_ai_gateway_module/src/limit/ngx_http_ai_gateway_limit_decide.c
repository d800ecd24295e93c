/*
 * The limiter's decision over all the zones of a request, once each
 * backend answered (limit.c asked them): the request's status, the
 * counters, the reservation given back if the request is not passed, the
 * figures for the headers, the rejection, and the token zones' reservation
 * kept for the answer's settlement (limit_settle.c).
 */

#include "limit/ngx_http_ai_gateway_limit.h"


static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_http_ai_gateway_bucket_state_t *
    ngx_http_ai_gateway_limit_scope(ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_bucket_state_t **report);
static ngx_http_ai_gateway_bucket_state_t *ngx_http_ai_gateway_limit_decide(
    ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_bucket_state_t **report);
static ngx_http_ai_gateway_bucket_state_t *ngx_http_ai_gateway_limit_refund(
    ngx_http_ai_gateway_limit_ctx_t *ctx);
static ngx_inline ngx_uint_t ngx_http_ai_gateway_limit_lower(
    ngx_http_ai_gateway_bucket_state_t *s,
    ngx_http_ai_gateway_bucket_state_t *least);
static ngx_inline void ngx_http_ai_gateway_limit_count(
    ngx_http_ai_gateway_bucket_state_t *s, ngx_uint_t rejected);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
    ngx_http_ai_gateway_limit_reserve(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx);


#if (NGX_DEBUG)
static ngx_str_t  ngx_http_ai_gateway_limit_none = ngx_string("-");
#endif


/*
 * Step 3: the decision over all zones, the counters, the reservation given
 * back if the request is not passed, the figures for the headers, and the
 * rejection.
 */

ngx_int_t
ngx_http_ai_gateway_limit_finish(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    ngx_http_ai_gateway_bucket_state_t    *scope, *report;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (ctx->batch.n == 1 && ctx->never == NULL && ctx->early == NULL) {

        /*
         * one zone, which applied (start declined the request otherwise),
         * and no other zone's reservation to give back
         */

        report = ctx->batch.st;
        scope = (report->res.allowed || report->dry) ? NULL : report;

        ctx->status = scope ? NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED
                      : report->res.allowed ? NGX_HTTP_AI_GATEWAY_LIMIT_PASSED
                      : NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED_DRY_RUN;

        ngx_http_ai_gateway_limit_count(report, scope != NULL);

        if (report->blind) {
            report = NULL;
        }

    } else {
        scope = ngx_http_ai_gateway_limit_scope(ctx, &report);
    }

    if (report) {
        ctx->zone = ngx_http_ai_gateway_limit_zone_of(report->zone);
        ctx->remaining = report->res.remaining;
        ctx->reset = agw_ms_to_s_ceil(report->res.reset_ms);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    if ((ctx->tokens || (lcf->headers & NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_OPENAI))
        && ngx_http_ai_gateway_limit_reserve(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway limit: %V, \"%V\" remaining:%uL reset:%uL",
                   &ngx_http_ai_gateway_limit_status_names[ctx->status],
                   ctx->zone ? &ctx->zone->buckets.name
                             : &ngx_http_ai_gateway_limit_none,
                   ctx->remaining, ctx->reset);

    if (ctx->status != NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED) {
        return NGX_DECLINED;
    }

    return ngx_http_ai_gateway_limit_reject(r, lcf, ctx, scope,
                                            scope == ctx->never);
}


/*
 * The decision of a request refused before it was charged (a cost that can
 * never fit, or a bucket drained before its body was read), or of several
 * zones: the zone that rejects it, if one does, and in *report the zone
 * whose figures the response carries.  Out of line: the usual request, one
 * zone, is decided by finish() without the registers these loops need.
 */

static ngx_http_ai_gateway_bucket_state_t *
ngx_http_ai_gateway_limit_scope(ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_bucket_state_t **report)
{
    ngx_http_ai_gateway_bucket_state_t  *scope, *least, *s;

    if (ctx->never || ctx->early) {
        scope = ctx->never ? ctx->never : ctx->early;
        ctx->status = NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED;
        ngx_http_ai_gateway_count(scope->zone->ref->stats->rejected, 1);

        least = NULL;

        for (s = ctx->batch.st; s < ctx->batch.st + ctx->batch.n; s++) {
            if (s->zone && ngx_http_ai_gateway_limit_lower(s, least)) {
                least = s;
            }
        }

        *report = least;

        return scope;
    }

    scope = ngx_http_ai_gateway_limit_decide(ctx, report);

    if (ctx->batch.refundable && scope) {
        *report = ngx_http_ai_gateway_limit_refund(ctx);
    }

    return scope;
}


/*
 * The request's status from the zones' answers, and the counters; returns
 * the zone that rejects it, if one does, and in *report the zone whose
 * figures the response carries.  A zone counts "passed" when it
 * charges the request and "rejected" when it refuses it, dry_run or not (a
 * dry run is meant to show how much would be rejected); a zone that
 * allowed a request another zone rejected, or that only read its bucket
 * for a cache HIT, counts neither.  In a dry run a would-be rejection takes
 * nothing from any zone, as a real one would not.
 *
 * A redis zone that Redis could not answer for counts like the others
 * with what ai_gateway_limit_redis_fail made of it: "open" lets the
 * request through (counted passed if it charges), "closed" refuses it
 * (counted rejected).
 */

static ngx_http_ai_gateway_bucket_state_t *
ngx_http_ai_gateway_limit_decide(ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_bucket_state_t **report)
{
    ngx_uint_t                           dry;
    ngx_http_ai_gateway_bucket_state_t  *s, *last, *scope, *least;

    dry = 0;
    scope = NULL;
    least = NULL;
    last = ctx->batch.st + ctx->batch.n;

    for (s = ctx->batch.st; s < last; s++) {
        if (s->zone == NULL) {
            continue;
        }

        if (ngx_http_ai_gateway_limit_lower(s, least)) {
            least = s;
        }

        if (s->res.allowed) {
            continue;
        }

        if (s->dry) {
            dry = 1;

        } else if (scope == NULL) {
            scope = s;
        }
    }

    *report = least;

    ctx->status = scope ? NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED
                  : dry ? NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED_DRY_RUN
                        : NGX_HTTP_AI_GATEWAY_LIMIT_PASSED;

    for (s = ctx->batch.st; s < last; s++) {
        if (s->zone) {
            ngx_http_ai_gateway_limit_count(s, scope != NULL);
        }
    }

    return scope;
}


/*
 * the figures reported are those of the zone with the fewest tokens left,
 * the first on a tie; a zone that Redis could not answer for has none
 */

static ngx_inline ngx_uint_t
ngx_http_ai_gateway_limit_lower(ngx_http_ai_gateway_bucket_state_t *s,
    ngx_http_ai_gateway_bucket_state_t *least)
{
    return !s->blind
           && (least == NULL || s->res.remaining < least->res.remaining);
}


/* a zone's counters, once it is known whether the request is rejected */

static ngx_inline void
ngx_http_ai_gateway_limit_count(ngx_http_ai_gateway_bucket_state_t *s,
    ngx_uint_t rejected)
{
    if (!s->res.allowed) {
        ngx_http_ai_gateway_count(s->zone->ref->stats->rejected, 1);

    } else if (s->cost && !rejected) {
        ngx_http_ai_gateway_count(s->zone->ref->stats->passed, 1);
    }
}


/*
 * A redis zone refused: give the shared-memory zones back what step 1
 * took, and report what they hold now; one lock at a time, as nothing here
 * needs two zones to agree.  Returns the zone to report, as decide() does.
 */

static ngx_http_ai_gateway_bucket_state_t *
ngx_http_ai_gateway_limit_refund(ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    uint64_t                             now;
    ngx_http_ai_gateway_bucket_state_t  *s, *last, *least;

    now = ngx_http_ai_gateway_bucket_now();

    for (s = ctx->batch.st, last = s + ctx->batch.n; s < last; s++) {

        /*
         * only what was taken: not from a dry_run zone that would have
         * refused, nor from a zone that had no room to store the bucket
         */

        if (s->zone == NULL || s->charged == NULL
            || s->charged->refund == NULL)
        {
            continue;
        }

        s->charged->refund(s, now);
        s->charged = NULL;
    }

    ctx->batch.refundable = 0;

    least = NULL;

    for (s = ctx->batch.st; s < last; s++) {
        if (s->zone && ngx_http_ai_gateway_limit_lower(s, least)) {
            least = s;
        }
    }

    return least;
}


/*
 * A request that passes holds what its token zones took until its answer
 * ends (ngx_http_ai_gateway_limit_settle.c); the most constrained zone of
 * each unit is kept for OpenAI's headers.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_reserve(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    ngx_uint_t                           any;
    ngx_http_ai_gateway_bucket_state_t  *s, *last;

    any = 0;
    last = ctx->batch.st + ctx->batch.n;

    for (s = ctx->batch.st; s < last; s++) {
        if (s->zone == NULL) {
            continue;
        }

        /* OpenAI's fields count requests and tokens, never money */

        if (s->zone->usd) {
            /* void */

        } else if (s->zone->tokens) {
            if (ngx_http_ai_gateway_limit_lower(s, ctx->report_tokens)) {
                ctx->report_tokens = s;
            }

        } else if (ngx_http_ai_gateway_limit_lower(s, ctx->report_requests)) {
            ctx->report_requests = s;
        }

        if (!s->zone->tokens || ctx->status == NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED
            || s->cost == 0 || s->blind || !s->res.allowed)
        {
            continue;
        }

        if (s->charged == NULL) {
            continue;       /* nothing taken (no room for the bucket) */
        }

        s->reserved = s->cost;
        ngx_http_ai_gateway_count(s->zone->ref->stats->reserved, s->cost);

        if (s->zone->usd && ctx->unpriced) {
            ngx_http_ai_gateway_count(s->zone->ref->stats->unpriced, 1);
        }

        any = 1;
    }

    /*
     * tokens reserved: the answer is read for its usage if its type can say
     * it (limit_header_filter() asks for the reader once the type is known)
     */
    if (any) {
        ctx->settle = 1;
    }

    return NGX_OK;
}
