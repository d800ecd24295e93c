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
 * Several zones are all-or-nothing.  The zones of each backend (bucket/)
 * are charged together, all or none: the shared-memory zones under their
 * locks, taken in the order of the zones' names (the location's
 * lock_order, the same for every worker, so two requests can never wait
 * for each other); the zones with the "redis" flag, whose buckets live in
 * Redis, shared by every nginx that uses the same Redis, by one script.
 * No lock can be held across a Redis round trip, so a request with zones
 * of both kinds is decided in this order:
 *
 *   1. the shared-memory zones are checked and, if all allow, charged at
 *      once under their locks (a reservation); if one refuses, the request
 *      is decided there and Redis is not asked (its zones do not apply);
 *   2. the redis zones are charged, all or none: from this nginx's leases
 *      where they cover the cost, else by the script;
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

#include "base/ngx_http_ai_gateway_request.h"
#include "limit/ngx_http_ai_gateway_limit.h"


static ngx_int_t ngx_http_ai_gateway_limit_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t **ctxp, ngx_uint_t early);
static ngx_int_t ngx_http_ai_gateway_limit_early(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_uint_t early);
static ngx_int_t ngx_http_ai_gateway_limit_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *slot);
static void ngx_http_ai_gateway_limit_redis_done(
    ngx_http_ai_gateway_bucket_batch_t *batch);
static ngx_int_t ngx_http_ai_gateway_limit_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf, ngx_uint_t *early);
static ngx_uint_t ngx_http_ai_gateway_limit_refuses(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf, ngx_uint_t hits);


ngx_int_t
ngx_http_ai_gateway_limit_check(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    ngx_uint_t                             early;
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
        rc = ngx_http_ai_gateway_limit_read_body(r, lcf, &early);

        if (rc != NGX_DECLINED) {
            return rc;
        }

        rc = ngx_http_ai_gateway_limit_start(r, lcf, &ctx, early);

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
 * it (*early: see limit_refuses()).  NGX_DECLINED to go on now, NGX_DONE
 * while the body comes.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_read_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf, ngx_uint_t *early)
{
    ngx_uint_t                          i;
    ngx_http_ai_gateway_limit_t        *limits;
    ngx_http_ai_gateway_bucket_zone_t  *zone;

    *early = 0;

    if (r->reading_body) {
        return NGX_DONE;        /* the phases ran again meanwhile */
    }

    /*
     * only a body that can be an inference request is read: any other
     * (an upload, a DAV PUT, which needs its body in a file) is estimated
     * by its declared size, unread
     */

    if (r->request_body
        || (r->headers_in.content_length_n <= 0 && !r->headers_in.chunked)
        || !ngx_http_ai_gateway_request_inference(r))
    {
        return NGX_DECLINED;
    }

    limits = lcf->limits.elts;

    /* a token zone's estimate needs it, a money zone's model too */

    for (i = 0; i < lcf->limits.nelts; i++) {
        zone = &((ngx_http_ai_gateway_limit_zone_t *)
                     limits[i].shm_zone->data)->buckets;

        if ((zone->tokens && !limits[i].cost_set) || zone->usd) {
            break;
        }
    }

    if (i == lcf->limits.nelts) {
        return NGX_DECLINED;
    }

    /* no cache answers here: any zone that knows its cost may refuse now */

    *early = ngx_http_ai_gateway_limit_refuses(r, lcf, 0);

    if (*early) {
        return NGX_DECLINED;
    }

    return ngx_http_ai_gateway_request_read_resume(r);
}


/*
 * Before the cache step reads a request body: could a MISS pass?  The
 * shared-memory zones are read, not charged (a Redis zone would cost the
 * very round trip this saves, so it waits for the ordinary check).  Only a
 * zone that charges HITs (charge_hits) may refuse here: any other lets a
 * HIT through free, whatever its bucket holds (SPEC 3.1, 7.1), and which
 * request is a HIT is known only once its body is read and looked up.  If
 * such a zone lacks the tokens, or the cost can never fit, the request is
 * decided now, taking nothing: a drained client's body is never read,
 * spooled, digested or looked up.  Otherwise NGX_DECLINED, and a HIT found
 * next stays free of the other zones.
 */

ngx_int_t
ngx_http_ai_gateway_limit_precheck(ngx_http_request_t *r)
{
    ngx_int_t                              rc;
    ngx_uint_t                             early;
    ngx_http_ai_gateway_limit_ctx_t       *ctx;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    if (lcf->limits.nelts == 0 || ngx_http_ai_gateway_limit_get_ctx(r) != NULL)
    {
        return NGX_DECLINED;
    }

    early = ngx_http_ai_gateway_limit_refuses(r, lcf, 1);

    if (!early) {
        return NGX_DECLINED;
    }

    rc = ngx_http_ai_gateway_limit_start(r, lcf, &ctx, early);

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_ai_gateway_limit_finish(r, ctx);
}


/*
 * Would an enforcing shared-memory zone refuse this request as a MISS,
 * before its body is read?  A read: nothing is charged, and an error
 * reads as "no".  hits: a cache HIT may still answer the request, so only
 * a zone that charges HITs may refuse it.  A token or money zone whose
 * cost is the request's estimate cannot say without the body: refused on
 * a guess, its client would be told a Retry-After for a guess (a drained
 * money budget refused at one micro-dollar said 9 s where 389 s were
 * true), so it waits for the body and decides on the estimate.  Returns
 * the refusing limit's index + 1, or 0.
 */

static ngx_uint_t
ngx_http_ai_gateway_limit_refuses(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf, ngx_uint_t hits)
{
    u_char                              key[
                                            NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN];
    uint64_t                            now, cost;
    ngx_int_t                           rc;
    ngx_uint_t                          i;
    agw_bucket_result_t                 res;
    ngx_http_ai_gateway_limit_t        *limits;
    ngx_http_ai_gateway_limit_zone_t   *zone;
    ngx_http_ai_gateway_bucket_zone_t  *bz;

    limits = lcf->limits.elts;
    now = ngx_http_ai_gateway_bucket_now();

    for (i = 0; i < lcf->limits.nelts; i++) {
        zone = limits[i].shm_zone->data;
        bz = &zone->buckets;

        /* a backend that cannot read without a round trip waits */

        if (limits[i].dry_run || bz->backend->check == NULL
            || (hits && !limits[i].charge_hits)
            || (bz->tokens && !limits[i].cost_set))
        {
            continue;
        }

        rc = ngx_http_ai_gateway_limit_key(r, zone, key);

        if (rc != NGX_OK) {
            continue;
        }

        if (limits[i].cost_cv == NULL) {
            cost = limits[i].cost;

        } else if (ngx_http_ai_gateway_limit_cost(r, &limits[i], &cost)
                   != NGX_OK)
        {
            continue;
        }

        if (cost > bz->bucket.burst) {
            return i + 1;
        }

        bz->backend->check(bz, key, cost, now, &res);

        if (!res.allowed) {
            return i + 1;
        }
    }

    return 0;
}


/*
 * A request met for the first time: its ctx (in *ctxp), the zones' keys and
 * costs, and steps 1 and 2.  early: the index + 1 of a zone that refuses
 * the request before its body is read (limit_refuses()), else 0.  NGX_OK
 * when decided (to finish), NGX_DECLINED when no zone applies, NGX_DONE
 * while Redis is asked, NGX_ERROR.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t **ctxp, ngx_uint_t early)
{
    ngx_int_t                            rc;
    ngx_uint_t                           i, n, nshm, nredis, hit;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_ai_gateway_limit_t         *limits;
    ngx_http_ai_gateway_limit_ctx_t     *ctx;
    ngx_http_ai_gateway_limit_zone_t    *zone;
    ngx_http_ai_gateway_bucket_zone_t   *bz;
    ngx_http_ai_gateway_bucket_state_t  *st;

    limits = lcf->limits.elts;
    n = lcf->limits.nelts;

    /*
     * one allocation for the ctx, its per-zone states and the pool cleanup
     * that finds the ctx again after an internal redirect, linked here as
     * ngx_pool_cleanup_add() would link it (which allocates twice)
     */

    cln = ngx_palloc(r->pool, sizeof(ngx_pool_cleanup_t)
                              + sizeof(ngx_http_ai_gateway_limit_ctx_t)
                              + n * sizeof(ngx_http_ai_gateway_bucket_state_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx = (ngx_http_ai_gateway_limit_ctx_t *) (cln + 1);
    st = (ngx_http_ai_gateway_bucket_state_t *) (ctx + 1);

    ngx_memzero(ctx, offsetof(ngx_http_ai_gateway_limit_ctx_t, never));

    ctx->never = NULL;
    ctx->early = NULL;

    cln->handler = ngx_http_ai_gateway_limit_cleanup;
    cln->data = ctx;
    cln->next = r->pool->cleanup;
    r->pool->cleanup = cln;

    ngx_http_set_ctx(r, ctx, ngx_http_ai_gateway_limit_module);
    *ctxp = ctx;

    ctx->batch.request = r;
    ctx->batch.st = st;
    ctx->batch.n = n;
    ctx->batch.count = 0;
    ctx->batch.order = lcf->lock_order;
    ctx->batch.fail = lcf->redis_fail;
    ctx->batch.done = ngx_http_ai_gateway_limit_redis_done;
    ctx->batch.data = ctx;
    ctx->batch.refused = 0;
    ctx->batch.refundable = 0;

    hit = ngx_http_ai_gateway_request_cached(r);

    /* keys and costs first, outside of any lock */

    nshm = 0;
    nredis = 0;

    for (i = 0; i < n; i++) {

        zone = limits[i].shm_zone->data;
        bz = &zone->buckets;

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
        st[i].zone = bz;
        st[i].node = NULL;
        st[i].blind = 0;
        st[i].taken = 0;
        st[i].leased = 0;
        st[i].giveback = 0;
        st[i].charged = NULL;
        st[i].dry = limits[i].dry_run;

        if (bz->backend == &ngx_http_ai_gateway_bucket_redis) {
            ngx_memzero(&st[i].res, sizeof(agw_bucket_result_t));
        }

        st[i].reserved = 0;

        if (limits[i].fixed) {
            /* the usual line: a request zone, a cost known at startup */
            st[i].cost = (hit && !limits[i].charge_hits) ? 0 : limits[i].cost;

        } else if (limits[i].estimated && !hit && !early) {
            /* a token zone's usual line: the request's estimate */
            ctx->tokens = 1;

            if (ngx_http_ai_gateway_limit_estimate(r, lcf, ctx) != NGX_OK) {
                return NGX_ERROR;
            }

            st[i].cost = ctx->estimate;

        } else if (ngx_http_ai_gateway_limit_cost_of(r, lcf, ctx, &limits[i],
                                                     &st[i], hit, early)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (bz->backend == &ngx_http_ai_gateway_bucket_redis) {
            nredis++;

        } else {
            nshm++;
        }

        /*
         * a cost that no bucket of its zone can ever hold is refused at
         * once, as one that will never fit (no Retry-After: waiting would
         * not help); the zones are then only read, for the figures of the
         * headers.  The first such zone is the one reported.
         */

        if (st[i].cost > bz->bucket.burst && !st[i].dry
            && ctx->never == NULL)
        {
            ctx->never = &st[i];
        }
    }

    if (nshm + nredis == 0) {
        return NGX_DECLINED;
    }

    if (ctx->never == NULL && early && st[early - 1].zone) {
        return ngx_http_ai_gateway_limit_early(r, ctx, early - 1);
    }

    if (ctx->never) {
        for (i = 0; i < n; i++) {
            st[i].cost = 0;
        }
    }

    /* step 1: the shared-memory zones */

    if (nshm) {
        ctx->batch.count = nshm;

        if (ngx_http_ai_gateway_bucket_shm_charge(&ctx->batch) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->batch.refused) {
            /*
             * the request is not passed whatever Redis would say: it is
             * decided by these zones alone, and its redis zones are not
             * asked, nor counted
             */

            for (i = 0; i < n; i++) {
                if (st[i].zone
                    && st[i].zone->backend != &ngx_http_ai_gateway_bucket_shm)
                {
                    st[i].zone = NULL;
                }
            }

            return NGX_OK;
        }
    }

    /* step 2: the redis zones, from a lease or in one script call */

    if (nredis) {
        ctx->batch.count = nredis;

        rc = ngx_http_ai_gateway_bucket_redis.charge(&ctx->batch);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_AGAIN) {
            /* the reply resumes the phases: limit_redis_done() */
            ctx->waiting = 1;
            r->read_event_handler = ngx_http_test_reading;
            return NGX_DONE;
        }
    }

    return NGX_OK;
}


/*
 * A request refused before its body was read, by the zone at index i: the
 * shared-memory zones are only read, for the figures of the headers (the
 * Redis zones are not asked: the round trip is what the early refusal
 * saves), and the refusing zone's answer is read for its lower-bound cost,
 * which says how long to wait.  Refused even if that zone could pass it
 * now (another worker gave tokens back meanwhile): the error is on the
 * safe side, and Retry-After is then 1.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_early(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_uint_t i)
{
    uint64_t                             cost;
    ngx_uint_t                           k, nshm;
    ngx_http_ai_gateway_bucket_state_t  *st, *s;

    st = ctx->batch.st;
    s = &st[i];
    cost = s->cost;
    nshm = 0;

    for (k = 0; k < ctx->batch.n; k++) {
        st[k].cost = 0;

        if (st[k].zone == NULL) {
            continue;
        }

        if (st[k].zone->backend != &ngx_http_ai_gateway_bucket_shm) {
            st[k].zone = NULL;
            continue;
        }

        nshm++;
    }

    ctx->batch.count = nshm;

    if (ngx_http_ai_gateway_bucket_shm_charge(&ctx->batch) != NGX_OK) {
        return NGX_ERROR;
    }

    s->zone->backend->check(s->zone, s->key, cost,
                            ngx_http_ai_gateway_bucket_now(), &s->res);

    s->res.allowed = 0;
    s->cost = cost;
    ctx->early = s;

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
        ngx_memcpy(slot, zone->key_slot, NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN);
        return NGX_OK;

    } else {
        if (ngx_http_complex_value(r, &zone->key, &key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (key.len == 0) {
            return NGX_DECLINED;
        }
    }

    ngx_http_ai_gateway_bucket_key(&zone->buckets, slot, &key);

    return NGX_OK;
}


/*
 * Redis answered, or could not: the request is decided where the phases
 * resume (ngx_http_ai_gateway_limit_check())
 */

static void
ngx_http_ai_gateway_limit_redis_done(ngx_http_ai_gateway_bucket_batch_t *batch)
{
    ngx_connection_t                 *c;
    ngx_http_request_t               *r;
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = batch->data;
    r = batch->request;
    c = r->connection;

    ctx->waiting = 0;
    ctx->replied = 1;

    /*
     * resume as ngx_http_limit_req_delay() does; this runs outside the
     * request's own event handlers, hence the posted requests
     */

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/*
 * an internal redirect (error_page, try_files...) clears module ctxs, but
 * the request must not be charged twice, nor lose its headers: the ctx is
 * found again through its pool cleanup
 */

ngx_http_ai_gateway_limit_ctx_t *
ngx_http_ai_gateway_limit_find_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_ai_gateway_limit_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_ai_gateway_limit_module);
            return ctx;
        }
    }

    return NULL;
}


void
ngx_http_ai_gateway_limit_cleanup(void *data)
{
    /* nothing to free: the handler only marks where the ctx is */
}
