/*
 * The limiter's decision (SPEC 3.1): which zones apply to a request, what
 * each costs, and whether all of them allow it.
 *
 *     ai_gateway_limit_zone KEY zone=NAME:SIZE rate=Nr/s|Nr/m burst=N
 *                           [redis];
 *     ai_gateway_limit zone=NAME [cost=N|$var] [dry_run] [charge_hits];
 *     ai_gateway_limit_status CODE;
 *     ai_gateway_limit_headers on|off;
 *     ai_gateway_limit_redis_fail open|closed;
 *
 * The check is a step of the core module's PRECONTENT handler, after the
 * cache lookup, so that a cache HIT can be let through uncharged.  Each
 * request is decided once (the decision is kept in a ctx that also survives
 * internal redirects, found through a pool cleanup as the realip module
 * does), and a header filter adds the RateLimit-* fields to whatever
 * response the request gets.
 *
 * Several zones are all-or-nothing: every zone that applies is locked (in
 * the order of their names, the same for every worker, so two requests can
 * never wait for each other), all are checked, and tokens are taken from
 * each only if all allow.  Under those locks no other worker can spend the
 * tokens between the check and the take, so a rejected request changes no
 * bucket and a passed one never overdraws.  The locks are held only for
 * tree lookups and arithmetic.
 *
 * Zones with the "redis" flag keep their buckets in Redis, shared by every
 * nginx that uses the same Redis, and are checked and charged together by
 * one script (ngx_http_ai_gateway_limit_redis.c), all-or-nothing among
 * themselves.  No lock can be held across a Redis round trip, so a request
 * with zones of both kinds is decided in this order:
 *
 *   1. the shared-memory zones are checked and, if all allow, charged at
 *      once under their locks (a reservation); if one refuses, the request
 *      is decided there and Redis is not asked (its zones do not apply);
 *   2. the script checks the redis zones and charges all or none;
 *   3. if the request is not passed after all (a redis zone refused, or
 *      Redis failed with ai_gateway_limit_redis_fail closed), the
 *      reservation is given back, which leaves each bucket where it would
 *      be had nothing been taken.
 *
 * Nothing is ever overdrawn: each side is charged atomically and only
 * after it allowed.  The price is that while a request waits for Redis
 * (a round trip, at most its timeout), its reserved tokens are unavailable to
 * others, so a concurrent request may be refused that a sequential order
 * would have passed; the error is on the safe side and confined to that
 * window.  Charging Redis first instead would need a second, compensating
 * Redis call that can itself fail.
 */

#include "ngx_http_ai_gateway_limit.h"
#include "base/ngx_http_ai_gateway_request.h"



/* zones of a request locked in order without allocating the order */
#define NGX_HTTP_AI_GATEWAY_LIMIT_STACK  8


static ngx_int_t ngx_http_ai_gateway_limit_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t **ctxp);
static ngx_int_t ngx_http_ai_gateway_limit_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *slot);
static ngx_int_t ngx_http_ai_gateway_limit_shm(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_uint_t nshm,
    ngx_uint_t *lock_order);
static ngx_int_t ngx_http_ai_gateway_limit_finish(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx);
static ngx_int_t ngx_http_ai_gateway_limit_cost(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_t *limit, uint64_t *cost);
static ngx_http_ai_gateway_limit_state_t *ngx_http_ai_gateway_limit_decide(
    ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_limit_state_t **report);
static ngx_http_ai_gateway_limit_state_t *ngx_http_ai_gateway_limit_refund(
    ngx_http_ai_gateway_limit_ctx_t *ctx);
static ngx_inline ngx_uint_t ngx_http_ai_gateway_limit_lower(
    ngx_http_ai_gateway_limit_state_t *s,
    ngx_http_ai_gateway_limit_state_t *least);
static ngx_inline void ngx_http_ai_gateway_limit_count(
    ngx_http_ai_gateway_limit_state_t *s, ngx_uint_t rejected);
static ngx_int_t ngx_http_ai_gateway_limit_reserve(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx);
static ngx_int_t ngx_http_ai_gateway_limit_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf);
static void ngx_http_ai_gateway_limit_body_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_ai_gateway_limit_refuses(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf);


#if (NGX_DEBUG)
static ngx_str_t  ngx_http_ai_gateway_limit_none = ngx_string("-");
#endif


ngx_int_t
ngx_http_ai_gateway_limit_check(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    ngx_http_ai_gateway_limit_ctx_t       *ctx;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    if (lcf->limits.nelts == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_ai_gateway_limit_get_ctx(r);

    if (ctx == NULL) {
        rc = ngx_http_ai_gateway_limit_read_body(r, lcf);

        if (rc != NGX_DECLINED) {
            return rc;
        }

        rc = ngx_http_ai_gateway_limit_start(r, lcf, &ctx);

        if (rc != NGX_OK) {
            return rc;
        }

    } else {
        /*
         * the phases ran again: while Redis is asked (a stray write
         * event), once it answered, or after an internal redirect
         */

        if (ctx->waiting) {
            return NGX_DONE;
        }

        if (!ctx->replied) {
            return NGX_DECLINED;
        }

        ctx->replied = 0;
    }

    return ngx_http_ai_gateway_limit_finish(r, ctx);
}


/*
 * A token zone reserves the request's estimate, read from its JSON body
 * (max_tokens, the prompt): where no earlier step read the body, it is
 * read here first, as the mirror module does, and the proxy sends the
 * body read.  A client that no zone could admit anyway is decided without
 * it.  NGX_DECLINED to go on now, NGX_DONE while the body comes.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf)
{
    ngx_int_t                          rc;
    ngx_uint_t                         i;
    ngx_http_ai_gateway_limit_t       *limits;
    ngx_http_ai_gateway_limit_zone_t  *zone;

    if (r->reading_body) {
        return NGX_DONE;        /* the phases ran again meanwhile */
    }

    if (r->request_body
        || (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked))
    {
        return NGX_DECLINED;
    }

    limits = lcf->limits.elts;

    for (i = 0; i < lcf->limits.nelts; i++) {
        zone = limits[i].shm_zone->data;

        if (zone->tokens && !limits[i].cost_set) {
            break;
        }
    }

    if (i == lcf->limits.nelts || ngx_http_ai_gateway_limit_refuses(r, lcf)) {
        return NGX_DECLINED;
    }

    rc = ngx_http_read_client_request_body(r,
                                       ngx_http_ai_gateway_limit_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* drop the reference the body reader took; its handler resumes us */
    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_ai_gateway_limit_body_handler(ngx_http_request_t *r)
{
    /* the proxy sends the body we read */
    r->preserve_body = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * Before the cache step reads a request body: could a MISS pass?  The
 * shared-memory zones are read, not charged (a Redis zone would cost the
 * very round trip this saves, so it waits for the ordinary check).  If an
 * enforcing zone lacks the tokens, or the cost can never fit, the request
 * is decided now by the ordinary check, which takes nothing when it
 * refuses: a drained client's body is never read, spooled, digested or
 * looked up.  Otherwise NGX_DECLINED, and a HIT found next stays free.
 */

ngx_int_t
ngx_http_ai_gateway_limit_precheck(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    if (lcf->limits.nelts == 0 || ngx_http_ai_gateway_limit_get_ctx(r) != NULL
        || !ngx_http_ai_gateway_limit_refuses(r, lcf))
    {
        return NGX_DECLINED;
    }

    return ngx_http_ai_gateway_limit_check(r);
}


/*
 * Would an enforcing shared-memory zone refuse this request as a MISS?  A
 * read: nothing is charged, and an error reads as "no".
 */

static ngx_uint_t
ngx_http_ai_gateway_limit_refuses(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf)
{
    u_char                             key[NGX_HTTP_AI_GATEWAY_LIMIT_KEY_LEN];
    uint64_t                           now, cost;
    ngx_int_t                          rc;
    ngx_uint_t                         i;
    agw_bucket_result_t                res;
    ngx_http_ai_gateway_limit_t       *limits;
    ngx_http_ai_gateway_limit_zone_t  *zone;
    ngx_http_ai_gateway_limit_node_t  *node;

    limits = lcf->limits.elts;
    now = ngx_http_ai_gateway_limit_now();

    for (i = 0; i < lcf->limits.nelts; i++) {
        zone = limits[i].shm_zone->data;

        if (limits[i].dry_run
            || zone->backend != NGX_HTTP_AI_GATEWAY_LIMIT_SHM)
        {
            continue;
        }

        rc = ngx_http_ai_gateway_limit_key(r, zone, key);

        if (rc != NGX_OK) {
            continue;
        }

        if (zone->tokens && !limits[i].cost_set) {
            /*
             * the estimate needs the body: a bucket in debt or empty
             * cannot give even one token
             */
            cost = 1;

        } else if (limits[i].cost_cv == NULL) {
            cost = limits[i].cost;

        } else if (ngx_http_ai_gateway_limit_cost(r, &limits[i], &cost)
                   != NGX_OK)
        {
            continue;
        }

        if (cost > zone->bucket.burst) {
            return 1;
        }

        ngx_http_ai_gateway_limit_zone_lock(zone);

        node = ngx_http_ai_gateway_limit_zone_lookup(zone, key);
        ngx_http_ai_gateway_limit_zone_check(zone, node, cost, now, &res);

        ngx_http_ai_gateway_limit_zone_unlock(zone);

        if (!res.allowed) {
            return 1;
        }
    }

    return 0;
}


/*
 * A request met for the first time: its ctx (in *ctxp), the zones' keys and
 * costs, and steps 1 and 2.  NGX_OK when decided (to finish), NGX_DECLINED when
 * no zone applies, NGX_DONE while Redis is asked, NGX_ERROR.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t **ctxp)
{
    ngx_int_t                           rc;
    ngx_uint_t                          i, n, nshm, nredis, hit;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_ai_gateway_limit_t        *limits;
    ngx_http_ai_gateway_limit_ctx_t    *ctx;
    ngx_http_ai_gateway_limit_zone_t   *zone;
    ngx_http_ai_gateway_limit_state_t  *st;

    limits = lcf->limits.elts;
    n = lcf->limits.nelts;

    /*
     * one allocation for the ctx, its per-zone states and the pool cleanup
     * that finds the ctx again after an internal redirect, linked here as
     * ngx_pool_cleanup_add() would link it (which allocates twice)
     */

    cln = ngx_palloc(r->pool, sizeof(ngx_pool_cleanup_t)
                              + sizeof(ngx_http_ai_gateway_limit_ctx_t)
                              + n * sizeof(ngx_http_ai_gateway_limit_state_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx = (ngx_http_ai_gateway_limit_ctx_t *) (cln + 1);
    st = (ngx_http_ai_gateway_limit_state_t *) (ctx + 1);

    ngx_memzero(ctx, offsetof(ngx_http_ai_gateway_limit_ctx_t, request));

    cln->handler = ngx_http_ai_gateway_limit_cleanup;
    cln->data = ctx;
    cln->next = r->pool->cleanup;
    r->pool->cleanup = cln;

    ngx_http_set_ctx(r, ctx, ngx_http_ai_gateway_limit_module);
    *ctxp = ctx;

    ctx->request = r;
    ctx->st = st;
    ctx->n = n;
    ctx->fail = lcf->redis_fail;

    hit = ngx_http_ai_gateway_request_cached(r);

    /* keys and costs first, outside of any lock */

    nshm = 0;
    nredis = 0;

    for (i = 0; i < n; i++) {

        zone = limits[i].shm_zone->data;

        rc = ngx_http_ai_gateway_limit_key(r, zone, st[i].key);

        if (rc == NGX_DECLINED) {
            /* an empty key: this zone does not apply */
            st[i].zone = NULL;
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        /* res is written by the zone's check */
        st[i].zone = zone;
        st[i].node = NULL;
        st[i].blind = 0;
        st[i].taken = 0;
        st[i].leased = 0;
        st[i].giveback = 0;
        st[i].charged = NULL;
        st[i].dry = limits[i].dry_run;

        if (zone->backend == NGX_HTTP_AI_GATEWAY_LIMIT_REDIS) {
            ngx_memzero(&st[i].res, sizeof(agw_bucket_result_t));
        }

        st[i].reserved = 0;

        if (zone->tokens) {
            ctx->tokens = 1;
        }

        if (hit && !limits[i].charge_hits) {
            st[i].cost = 0;

        } else if (zone->tokens && !limits[i].cost_set) {
            if (ngx_http_ai_gateway_limit_estimate(r, lcf, ctx) != NGX_OK) {
                return NGX_ERROR;
            }

            st[i].cost = ctx->estimate;

        } else if (limits[i].cost_cv == NULL) {
            st[i].cost = limits[i].cost;

        } else if (ngx_http_ai_gateway_limit_cost(r, &limits[i], &st[i].cost)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (zone->backend == NGX_HTTP_AI_GATEWAY_LIMIT_REDIS) {
            nredis++;

        } else {
            nshm++;
        }
    }

    if (nshm + nredis == 0) {
        return NGX_DECLINED;
    }

    /*
     * a cost that no bucket of its zone can ever hold is refused at once,
     * as one that will never fit (no Retry-After: waiting would not help);
     * the zones are then only read, for the figures of the headers
     */

    for (i = 0; i < n; i++) {
        if (st[i].zone && !st[i].dry
            && st[i].cost > st[i].zone->bucket.burst)
        {
            ctx->never = &st[i];
            break;
        }
    }

    if (ctx->never) {
        for (i = 0; i < n; i++) {
            st[i].cost = 0;
        }
    }

    /* lease=: a redis zone whose cost this nginx's lease covers is decided */

    for (i = 0; nredis && i < n; i++) {
        if (st[i].zone && st[i].zone->lease && st[i].cost && !st[i].dry
            && ngx_http_ai_gateway_limit_lease_take(&st[i],
                                             ngx_http_ai_gateway_limit_now()))
        {
            nredis--;
            ctx->leased |= (st[i].leased == 1);
        }
    }

    if (nshm) {
        rc = ngx_http_ai_gateway_limit_shm(r, ctx, nshm, lcf->lock_order);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    /* a shared-memory zone that refused decided the request (step 1) */

    if (nredis && (nshm == 0 || ctx->reserved)) {
        rc = ngx_http_ai_gateway_limit_redis_check(r, ctx);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_AGAIN) {
            /* the reply resumes the phases: see limit_redis.c */
            ctx->waiting = 1;
            r->read_event_handler = ngx_http_test_reading;
            return NGX_DONE;
        }
    }

    return NGX_OK;
}


/*
 * The zone's key for this request, as the zone stores it (see
 * NGX_HTTP_AI_GATEWAY_LIMIT_KEY_*); NGX_DECLINED if it is empty.  An
 * unknown or failing variable is an empty value, as in a complex value.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *slot)
{
    ngx_str_t                   key;
    ngx_http_variable_value_t  *vv;

    if (zone->key_kind == NGX_HTTP_AI_GATEWAY_LIMIT_KEY_VARIABLE) {
        vv = ngx_http_get_flushed_variable(r, zone->key_index);

        if (vv == NULL || vv->not_found || vv->len == 0) {
            return NGX_DECLINED;
        }

        key.len = vv->len;
        key.data = vv->data;

    } else if (zone->key_kind == NGX_HTTP_AI_GATEWAY_LIMIT_KEY_CONSTANT) {
        ngx_memcpy(slot, zone->key_slot, NGX_HTTP_AI_GATEWAY_LIMIT_KEY_LEN);
        return NGX_OK;

    } else {
        if (ngx_http_complex_value(r, &zone->key, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (key.len == 0) {
            return NGX_DECLINED;
        }
    }

    ngx_http_ai_gateway_limit_key_slot(zone, slot, &key);

    return NGX_OK;
}




/*
 * Step 1: check the request's shared-memory zones and, if all allow, charge
 * them.  If one refuses, the request is not passed whatever Redis would
 * say, so its redis zones are dropped (not asked, not counted) and the
 * request is decided by these zones alone.  NGX_OK to go on.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_shm(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_uint_t nshm,
    ngx_uint_t *lock_order)
{
    uint64_t                            now;
    ngx_uint_t                          i, j, n, allowed;
    ngx_http_ai_gateway_limit_state_t  *st, **order, *one, *s;
    ngx_http_ai_gateway_limit_state_t  *stack[NGX_HTTP_AI_GATEWAY_LIMIT_STACK];

    st = ctx->st;
    n = ctx->n;

    now = ngx_http_ai_gateway_limit_now();

    if (nshm == 1) {

        /* the usual case: one zone, nothing to agree with, one step */

        for (one = st; one->zone == NULL
                       || one->zone->backend != NGX_HTTP_AI_GATEWAY_LIMIT_SHM;
             one++)
        {
            /* void */
        }

        one->taken = ngx_http_ai_gateway_limit_zone_charge(one->zone,
                                                           one->key,
                                                           one->cost, now,
                                                           r->connection->log,
                                                           &one->res);

        if (one->taken) {
            one->charged = &ngx_http_ai_gateway_limit_backend_shm;
        }

        allowed = one->res.allowed || one->dry;

        goto done;
    }

    if (nshm <= NGX_HTTP_AI_GATEWAY_LIMIT_STACK) {
        order = stack;

    } else {
        order = ngx_palloc(r->pool,
                           nshm * sizeof(ngx_http_ai_gateway_limit_state_t *));
        if (order == NULL) {
            return NGX_ERROR;
        }
    }

    /* the zones that apply, in the location's lock order */

    for (i = 0, j = 0; i < n; i++) {
        s = &st[lock_order[i]];

        if (s->zone && s->zone->backend == NGX_HTTP_AI_GATEWAY_LIMIT_SHM) {
            order[j++] = s;
        }
    }

    /*
     * each zone is checked as soon as it is locked; its lock is held until
     * every zone has answered, so that what was checked is what is taken
     */

    allowed = 1;

    for (i = 0; i < j; i++) {
        s = order[i];

        ngx_http_ai_gateway_limit_zone_lock(s->zone);

        s->node = ngx_http_ai_gateway_limit_zone_lookup(s->zone, s->key);

        ngx_http_ai_gateway_limit_zone_check(s->zone, s->node, s->cost, now,
                                             &s->res);

        if (!s->res.allowed && !s->dry) {
            allowed = 0;
        }
    }

    /*
     * all allowed: take from each (a dry_run zone that would refuse takes
     * nothing, as if it had refused); otherwise nothing is taken, and the
     * zones that would have allowed report what they hold now, not what
     * they would have held after this request
     */

    for (i = 0; i < j; i++) {
        s = order[i];

        if (s->cost && s->res.allowed) {
            if (allowed) {
                s->taken = (ngx_http_ai_gateway_limit_zone_commit(s->zone,
                                s->node, s->key, &s->res, now,
                                r->connection->log)
                            == NGX_OK);

                if (s->taken) {
                    s->charged = &ngx_http_ai_gateway_limit_backend_shm;
                }

            } else {
                ngx_http_ai_gateway_limit_zone_check(s->zone, s->node, 0, now,
                                                     &s->res);
            }
        }

        ngx_http_ai_gateway_limit_zone_unlock(s->zone);
    }

done:

    if (allowed) {
        ctx->reserved = 1;
        return NGX_OK;
    }

    for (i = 0; i < n; i++) {
        if (st[i].zone
            && st[i].zone->backend == NGX_HTTP_AI_GATEWAY_LIMIT_REDIS)
        {
            if (st[i].charged) {
                st[i].charged->refund(&st[i], now);
                st[i].charged = NULL;
            }

            /* an ended lease that was to go back with the script call */
            ngx_http_ai_gateway_limit_lease_restore(&st[i], now);

            st[i].zone = NULL;
        }
    }

    ctx->leased = 0;

    return NGX_OK;
}


/*
 * Step 3: the decision over all zones, the counters, the reservation given
 * back if the request is not passed, the figures for the headers, and the
 * rejection.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_finish(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    ngx_http_ai_gateway_limit_state_t     *scope, *report, *s;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (ctx->never) {
        scope = ctx->never;
        ctx->status = NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED;
        ngx_http_ai_gateway_count(scope->zone->sh->stats.rejected, 1);

        report = NULL;

        for (s = ctx->st; s < ctx->st + ctx->n; s++) {
            if (s->zone && ngx_http_ai_gateway_limit_lower(s, report)) {
                report = s;
            }
        }

    } else if (ctx->n == 1) {

        /*
         * one zone, which applied (start declined the request otherwise),
         * and no other zone's reservation to give back
         */

        report = ctx->st;
        scope = (report->res.allowed || report->dry) ? NULL : report;

        ctx->status = scope ? NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED
                      : report->res.allowed ? NGX_HTTP_AI_GATEWAY_LIMIT_PASSED
                      : NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED_DRY_RUN;

        ngx_http_ai_gateway_limit_count(report, scope != NULL);

        if (report->blind) {
            report = NULL;
        }

    } else {
        scope = ngx_http_ai_gateway_limit_decide(ctx, &report);

        if ((ctx->reserved || ctx->leased) && scope) {
            report = ngx_http_ai_gateway_limit_refund(ctx);
        }
    }

    if (report) {
        ctx->zone = report->zone;
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
                   ctx->zone ? &ctx->zone->name
                             : &ngx_http_ai_gateway_limit_none,
                   ctx->remaining, ctx->reset);

    if (ctx->status != NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED) {
        return NGX_DECLINED;
    }

    return ngx_http_ai_gateway_limit_reject(r, lcf, scope,
                                            scope == ctx->never);
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

static ngx_http_ai_gateway_limit_state_t *
ngx_http_ai_gateway_limit_decide(ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_limit_state_t **report)
{
    ngx_uint_t                          dry;
    ngx_http_ai_gateway_limit_state_t  *s, *last, *scope, *least;

    dry = 0;
    scope = NULL;
    least = NULL;
    last = ctx->st + ctx->n;

    for (s = ctx->st; s < last; s++) {
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

    for (s = ctx->st; s < last; s++) {
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
ngx_http_ai_gateway_limit_lower(ngx_http_ai_gateway_limit_state_t *s,
    ngx_http_ai_gateway_limit_state_t *least)
{
    return !s->blind
           && (least == NULL || s->res.remaining < least->res.remaining);
}


/* a zone's counters, once it is known whether the request is rejected */

static ngx_inline void
ngx_http_ai_gateway_limit_count(ngx_http_ai_gateway_limit_state_t *s,
    ngx_uint_t rejected)
{
    if (!s->res.allowed) {
        ngx_http_ai_gateway_count(s->zone->sh->stats.rejected, 1);

    } else if (s->cost && !rejected) {
        ngx_http_ai_gateway_count(s->zone->sh->stats.passed, 1);
    }
}


/*
 * A redis zone refused: give the shared-memory zones back what step 1
 * took, and report what they hold now; one lock at a time, as nothing here
 * needs two zones to agree.  Returns the zone to report, as decide() does.
 */

static ngx_http_ai_gateway_limit_state_t *
ngx_http_ai_gateway_limit_refund(ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    uint64_t                            now;
    ngx_http_ai_gateway_limit_state_t  *s, *last, *least;

    now = ngx_http_ai_gateway_limit_now();

    for (s = ctx->st, last = s + ctx->n; s < last; s++) {

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

    ctx->reserved = 0;
    ctx->leased = 0;

    least = NULL;

    for (s = ctx->st; s < last; s++) {
        if (s->zone && ngx_http_ai_gateway_limit_lower(s, least)) {
            least = s;
        }
    }

    return least;
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


/*
 * A request that passes holds what its token zones took until its answer
 * ends (ngx_http_ai_gateway_limit_settle.c); the most constrained zone of
 * each unit is kept for OpenAI's headers.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_reserve(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx)
{
    ngx_uint_t                          any;
    ngx_http_ai_gateway_limit_state_t  *s, *last;

    any = 0;
    last = ctx->st + ctx->n;

    for (s = ctx->st; s < last; s++) {
        if (s->zone == NULL) {
            continue;
        }

        if (s->zone->tokens) {
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
        ngx_http_ai_gateway_count(s->zone->sh->stats.reserved, s->cost);
        any = 1;
    }

    if (any) {
        return ngx_http_ai_gateway_limit_settle_start(r, ctx);
    }

    return NGX_OK;
}


/*
 * cost=$var evaluated per request: an empty value is the default cost 1; a
 * value that is not a number is logged and counts as 1 too (a client must
 * not be able to escape the limit by sending garbage); a number too large
 * to hold is larger than any burst, so it can never fit (never a bypass)
 */

static ngx_int_t
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


ngx_http_ai_gateway_limit_ctx_t *
ngx_http_ai_gateway_limit_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_limit_module);

    /*
     * an internal redirect (error_page, try_files...) clears module ctxs,
     * but the request must not be charged twice, nor lose its headers
     */

    if (ctx == NULL && (r->internal || r->filter_finalize)) {
        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_ai_gateway_limit_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_ai_gateway_limit_module);
                break;
            }
        }
    }

    return ctx;
}


void
ngx_http_ai_gateway_limit_cleanup(void *data)
{
    /* nothing to free: the handler only marks where the ctx is */
}
