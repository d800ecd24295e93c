/*
 * ngx_http_ai_gateway_limit_module: token-bucket rate limiting (SPEC 3.1).
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


/* zones of a request locked in order without allocating the order */
#define NGX_HTTP_AI_GATEWAY_LIMIT_STACK  8


/* where an ai_gateway_limit line is, checked once all zones are known */
typedef struct {
    ngx_shm_zone_t                     *shm_zone;
    ngx_uint_t                          cost;     /* NGX_CONF_UNSET_UINT
                                                     if variable */
    ngx_str_t                           file;
    ngx_uint_t                          line;
} ngx_http_ai_gateway_limit_use_t;


typedef struct {
    ngx_array_t                         uses;     /* limit_use_t */
    ngx_array_t                         zones;    /* limit_zone_t * */
} ngx_http_ai_gateway_limit_main_conf_t;


typedef struct {
    ngx_array_t                         limits;   /* limit_t */
    ngx_uint_t                         *lock_order; /* indexes of limits */
    ngx_uint_t                          status;
    ngx_flag_t                          headers;
    ngx_uint_t                          redis_fail;
} ngx_http_ai_gateway_limit_loc_conf_t;


static ngx_int_t ngx_http_ai_gateway_limit_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t **ctxp);
static ngx_int_t ngx_http_ai_gateway_limit_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *slot);
static ngx_inline void ngx_http_ai_gateway_limit_key_slot(
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *slot, ngx_str_t *key);
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
static ngx_int_t ngx_http_ai_gateway_limit_reject(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_state_t *st);
static ngx_http_ai_gateway_limit_ctx_t *ngx_http_ai_gateway_limit_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_ai_gateway_limit_cleanup(void *data);
static ngx_int_t ngx_http_ai_gateway_limit_header(ngx_http_request_t *r,
    char *name, size_t len, u_char *value, size_t value_len);
static ngx_int_t ngx_http_ai_gateway_limit_header_filter(
    ngx_http_request_t *r);

static ngx_int_t ngx_http_ai_gateway_limit_status_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_ai_gateway_limit_remaining_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);

static void *ngx_http_ai_gateway_limit_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ai_gateway_limit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ai_gateway_limit_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_ai_gateway_limit_lock_order(ngx_conf_t *cf,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf);
static ngx_int_t ngx_http_ai_gateway_limit_key_variable(ngx_conf_t *cf,
    ngx_str_t *key);
static char *ngx_http_ai_gateway_limit_zone(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ai_gateway_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ai_gateway_limit_redis_fail(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ai_gateway_limit_status_check(ngx_conf_t *cf,
    void *post, void *data);
static ngx_int_t ngx_http_ai_gateway_limit_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_ai_gateway_limit_init(ngx_conf_t *cf);


static ngx_conf_post_t  ngx_http_ai_gateway_limit_status_post = {
    ngx_http_ai_gateway_limit_status_check
};




static ngx_command_t  ngx_http_ai_gateway_limit_commands[] = {

    { ngx_string("ai_gateway_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_ai_gateway_limit_zone,
      0,
      0,
      NULL },

    { ngx_string("ai_gateway_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ai_gateway_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ai_gateway_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_limit_loc_conf_t, status),
      &ngx_http_ai_gateway_limit_status_post },

    { ngx_string("ai_gateway_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ai_gateway_limit_loc_conf_t, headers),
      NULL },

    { ngx_string("ai_gateway_limit_redis_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ai_gateway_limit_redis_fail,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ai_gateway_limit_module_ctx = {
    ngx_http_ai_gateway_limit_add_variables,  /* preconfiguration */
    ngx_http_ai_gateway_limit_init,           /* postconfiguration */

    ngx_http_ai_gateway_limit_create_main_conf, /* create main conf */
    NULL,                                     /* init main configuration */

    NULL,                                     /* create server configuration */
    NULL,                                     /* merge server configuration */

    ngx_http_ai_gateway_limit_create_loc_conf, /* create location conf */
    ngx_http_ai_gateway_limit_merge_loc_conf  /* merge location conf */
};


ngx_module_t  ngx_http_ai_gateway_limit_module = {
    NGX_MODULE_V1,
    &ngx_http_ai_gateway_limit_module_ctx,    /* module context */
    ngx_http_ai_gateway_limit_commands,       /* module directives */
    NGX_HTTP_MODULE,                          /* module type */
    NULL,                                     /* init master */
    NULL,                                     /* init module */
    NULL,                                     /* init process */
    NULL,                                     /* init thread */
    NULL,                                     /* exit thread */
    NULL,                                     /* exit process */
    NULL,                                     /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_ai_gateway_limit_vars[] = {

    { ngx_string("ai_gateway_limit_status"), NULL,
      ngx_http_ai_gateway_limit_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ai_gateway_limit_remaining"), NULL,
      ngx_http_ai_gateway_limit_remaining_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_ai_gateway_limit_status_names[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("REJECTED"),
    ngx_string("REJECTED_DRY_RUN")
};


#if (NGX_DEBUG)
static ngx_str_t  ngx_http_ai_gateway_limit_none = ngx_string("-");
#endif

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


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

    hit = ngx_http_ai_gateway_cache_is_hit(r);

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
        st[i].dry = limits[i].dry_run;

        if (zone->backend == NGX_HTTP_AI_GATEWAY_LIMIT_REDIS) {
            ngx_memzero(&st[i].res, sizeof(agw_bucket_result_t));
        }

        if (hit && !limits[i].charge_hits) {
            st[i].cost = 0;

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
        if (zone->key.value.len == 0) {
            return NGX_DECLINED;
        }

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
 * A key value as the zone stores it.  A redis zone names its bucket by the
 * SHA-256 of the key, the same on every node; a shared-memory zone keeps a
 * short key, such as an address, as it is, with no hashing.
 */

static ngx_inline void
ngx_http_ai_gateway_limit_key_slot(ngx_http_ai_gateway_limit_zone_t *zone,
    u_char *slot, ngx_str_t *key)
{
    if (zone->backend == NGX_HTTP_AI_GATEWAY_LIMIT_REDIS) {
        agw_sha256(key->data, key->len, slot);

    } else {
        agw_key_slot(slot, key->data, key->len);
    }
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
    ngx_time_t                         *tp;
    ngx_http_ai_gateway_limit_state_t  *st, **order, *one, *s;
    ngx_http_ai_gateway_limit_state_t  *stack[NGX_HTTP_AI_GATEWAY_LIMIT_STACK];

    st = ctx->st;
    n = ctx->n;

    tp = ngx_timeofday();
    now = (uint64_t) tp->sec * 1000 + tp->msec;

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
            st[i].zone = NULL;
        }
    }

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
    ngx_http_ai_gateway_limit_state_t     *scope, *report;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (ctx->n == 1) {

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

        if (ctx->reserved && scope) {
            report = ngx_http_ai_gateway_limit_refund(ctx);
        }
    }

    if (report) {
        ctx->zone = report->zone;
        ctx->remaining = report->res.remaining;
        ctx->reset = agw_ms_to_s_ceil(report->res.reset_ms);
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

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    return ngx_http_ai_gateway_limit_reject(r, lcf, scope);
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
    ngx_time_t                         *tp;
    ngx_http_ai_gateway_limit_state_t  *s, *last, *least;

    tp = ngx_timeofday();
    now = (uint64_t) tp->sec * 1000 + tp->msec;

    for (s = ctx->st, last = s + ctx->n; s < last; s++) {

        /*
         * only what was taken: not from a dry_run zone that would have
         * refused, nor from a zone that had no room to store the bucket
         */

        if (s->zone == NULL || !s->taken) {
            continue;
        }

        ngx_http_ai_gateway_limit_zone_lock(s->zone);

        s->node = ngx_http_ai_gateway_limit_zone_lookup(s->zone, s->key);

        ngx_http_ai_gateway_limit_zone_refund(s->zone, s->node, s->cost, now);

        ngx_http_ai_gateway_limit_zone_check(s->zone, s->node, 0, now,
                                             &s->res);

        ngx_http_ai_gateway_limit_zone_unlock(s->zone);
    }

    ctx->reserved = 0;

    least = NULL;

    for (s = ctx->st; s < last; s++) {
        if (s->zone && ngx_http_ai_gateway_limit_lower(s, least)) {
            least = s;
        }
    }

    return least;
}


/*
 * cost=$var evaluated per request: an empty value is the default
 * cost 1, a value that is not a number is logged and counts as 1 too (a
 * client must not be able to escape the limit by sending garbage)
 */

static ngx_int_t
ngx_http_ai_gateway_limit_cost(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_t *limit, uint64_t *cost)
{
    ngx_int_t  n;
    ngx_str_t  value;

    if (ngx_http_complex_value(r, limit->cost_cv, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    *cost = 1;

    if (value.len == 0) {
        return NGX_OK;
    }

    n = ngx_atoi(value.data, value.len);

    if (n == NGX_ERROR) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ai_gateway_limit cost \"%V\" is not a number, "
                      "using 1", &value);
        return NGX_OK;
    }

    /* a request never makes itself free: cost=0 is for literal reads */
    *cost = (n == 0) ? 1 : n;

    return NGX_OK;
}


/*
 * Answer the request here: it must never reach the upstream, and the body
 * is ours, not an error page.  The header filter adds the RateLimit-*
 * fields, as it does to every response.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_reject(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_state_t *st)
{
    u_char       *p, *num, *ms, *last;
    uint64_t      retry;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    retry = agw_retry_after_s(st->res.retry_after_ms);

    num = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN);
    if (num == NULL) {
        return NGX_ERROR;
    }

    ms = ngx_sprintf(num, "%uL", retry);
    last = ngx_sprintf(ms, "%uL", st->res.retry_after_ms);

    if (ngx_http_ai_gateway_limit_header(r, "Retry-After", 11, num, ms - num)
        != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, "retry-after-ms", 14, ms,
                                            last - ms)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_ai_gateway_limit_header(r, "RateLimit-Scope", 15,
                                         st->zone->name.data,
                                         st->zone->name.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    b = ngx_create_temp_buf(r->pool,
                            sizeof("{\"error\":\"rate_limited\",\"scope\":\"")
                            - 1
                            + ngx_escape_json(NULL, st->zone->name.data,
                                              st->zone->name.len)
                            + st->zone->name.len
                            + sizeof("\",\"retry_after\":}\n") - 1
                            + NGX_INT64_LEN);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, "{\"error\":\"rate_limited\",\"scope\":\"",
                   sizeof("{\"error\":\"rate_limited\",\"scope\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, st->zone->name.data,
                                   st->zone->name.len);
    b->last = ngx_sprintf(p, "\",\"retry_after\":%uL}\n", retry);

    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = lcf->status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = sizeof("application/json") - 1;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}


static ngx_http_ai_gateway_limit_ctx_t *
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


static void
ngx_http_ai_gateway_limit_cleanup(void *data)
{
    /* nothing to free: the handler only marks where the ctx is */
}


static ngx_int_t
ngx_http_ai_gateway_limit_header(ngx_http_request_t *r, char *name,
    size_t len, u_char *value, size_t value_len)
{
    ngx_table_elt_t  *h;

    /* value must live as long as the request: the pool or the cycle */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.len = len;
    h->key.data = (u_char *) name;
    h->value.len = value_len;
    h->value.data = value;

    return NGX_OK;
}


/*
 * A number in decimal, written backwards so that it ends at "end", two
 * digits at a time; returns where it starts.  Every response of a limited
 * location carries two numbers, and ngx_sprintf()'s format parsing cost
 * more than the rest of the header filter together.
 */
static u_char *
ngx_http_ai_gateway_limit_uint_back(u_char *end, uint64_t n)
{
    ngx_uint_t  d;

    static const char  pairs[] =
        "00010203040506070809" "10111213141516171819"
        "20212223242526272829" "30313233343536373839"
        "40414243444546474849" "50515253545556575859"
        "60616263646566676869" "70717273747576777879"
        "80818283848586878889" "90919293949596979899";

    while (n >= 100) {
        d = (ngx_uint_t) (n % 100) * 2;
        n /= 100;
        *--end = pairs[d + 1];
        *--end = pairs[d];
    }

    if (n >= 10) {
        d = (ngx_uint_t) n * 2;
        *--end = pairs[d + 1];
        *--end = pairs[d];

    } else {
        *--end = (u_char) ('0' + n);
    }

    return end;
}


static ngx_int_t
ngx_http_ai_gateway_limit_header_filter(ngx_http_request_t *r)
{
    u_char                                *end, *remaining, *remaining_end;
    u_char                                *reset, *fields;
    ngx_http_ai_gateway_limit_ctx_t       *ctx;
    ngx_http_ai_gateway_limit_zone_t      *zone;
    ngx_http_ai_gateway_limit_loc_conf_t  *lcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_limit_module);

    if (!lcf->headers) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_ai_gateway_limit_get_ctx(r);

    /* no zone applied, or none could say (Redis failed open) */

    if (ctx == NULL || ctx->zone == NULL) {
        return ngx_http_next_header_filter(r);
    }

    zone = ctx->zone;

    /*
     * RateLimit: "NAME";r=REMAINING;t=RESET, built from its end; the
     * values of RateLimit-Remaining and RateLimit-Reset are its figures
     */

    fields = ngx_pnalloc(r->pool, zone->fields_start.len + sizeof(";t=") - 1
                                  + 2 * NGX_INT64_LEN);
    if (fields == NULL) {
        return NGX_ERROR;
    }

    end = fields + zone->fields_start.len + sizeof(";t=") - 1
          + 2 * NGX_INT64_LEN;

    reset = ngx_http_ai_gateway_limit_uint_back(end, ctx->reset);

    remaining_end = reset - (sizeof(";t=") - 1);
    ngx_memcpy(remaining_end, ";t=", sizeof(";t=") - 1);

    remaining = ngx_http_ai_gateway_limit_uint_back(remaining_end,
                                                    ctx->remaining);

    fields = remaining - zone->fields_start.len;
    ngx_memcpy(fields, zone->fields_start.data, zone->fields_start.len);

    if (ngx_http_ai_gateway_limit_header(r, "RateLimit-Limit", 15,
                                         zone->limit_value.data,
                                         zone->limit_value.len)
        != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, "RateLimit-Remaining", 19,
                                            remaining,
                                            remaining_end - remaining)
           != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, "RateLimit-Reset", 15,
                                            reset, end - reset)
           != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, "RateLimit-Policy", 16,
                                            zone->policy_value.data,
                                            zone->policy_value.len)
           != NGX_OK
        || ngx_http_ai_gateway_limit_header(r, "RateLimit", 9,
                                            fields, end - fields)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_ai_gateway_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_limit_get_ctx(r->main);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_ai_gateway_limit_status_names[ctx->status].len;
    v->data = ngx_http_ai_gateway_limit_status_names[ctx->status].data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ai_gateway_limit_remaining_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                           *p;
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_limit_get_ctx(r->main);

    if (ctx == NULL || ctx->zone == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%uL", ctx->remaining) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static void *
ngx_http_ai_gateway_limit_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->uses, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_limit_use_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_array_init(&lmcf->zones, cf->pool, 4,
                       sizeof(ngx_http_ai_gateway_limit_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static void *
ngx_http_ai_gateway_limit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ai_gateway_limit_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->limits.elts = NULL;
     *     conf->lock_order = NULL;
     */

    conf->status = NGX_CONF_UNSET_UINT;
    conf->headers = NGX_CONF_UNSET;
    conf->redis_fail = NGX_CONF_UNSET_UINT;

    return conf;
}


/*
 * The order in which a request locks the zones of a location: by zone
 * name.  Every worker, of this configuration or of the one before a reload
 * (the layout version changes with any change of this rule, so the two
 * never share zones across it), takes the locks of any two zones in the
 * same order, so two requests can never each hold a lock the other waits
 * for.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_lock_order(ngx_conf_t *cf,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf)
{
    ngx_str_t                    *a, *b;
    ngx_uint_t                    i, k, n, tmp, *order;
    ngx_http_ai_gateway_limit_t  *limits;

    limits = lcf->limits.elts;
    n = lcf->limits.nelts;

    if (n == 0) {
        return NGX_OK;
    }

    order = ngx_palloc(cf->pool, n * sizeof(ngx_uint_t));
    if (order == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        tmp = i;
        b = &limits[tmp].shm_zone->shm.name;

        for (k = i; k > 0; k--) {
            a = &limits[order[k - 1]].shm_zone->shm.name;

            if (ngx_memn2cmp(a->data, b->data, a->len, b->len) <= 0) {
                break;
            }

            order[k] = order[k - 1];
        }

        order[k] = tmp;
    }

    lcf->lock_order = order;

    return NGX_OK;
}


static char *
ngx_http_ai_gateway_limit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_ai_gateway_limit_loc_conf_t *prev = parent;
    ngx_http_ai_gateway_limit_loc_conf_t *conf = child;

    /* as limit_req: a level with its own lines inherits none */

    if (conf->limits.elts == NULL) {
        conf->limits = prev->limits;
        conf->lock_order = prev->lock_order;
    }

    if (prev->lock_order == NULL
        && ngx_http_ai_gateway_limit_lock_order(cf, prev) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->lock_order == NULL
        && ngx_http_ai_gateway_limit_lock_order(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);

    ngx_conf_merge_value(conf->headers, prev->headers, 1);

    ngx_conf_merge_uint_value(conf->redis_fail, prev->redis_fail,
                              NGX_HTTP_AI_GATEWAY_LIMIT_FAIL_OPEN);

    return NGX_CONF_OK;
}


/*
 * The index of the variable if the key is one variable alone ("$name" or
 * "${name}"), which the request reads without the script engine; otherwise
 * NGX_ERROR.  "$1" is a regex capture, not a variable.
 */

static ngx_int_t
ngx_http_ai_gateway_limit_key_variable(ngx_conf_t *cf, ngx_str_t *key)
{
    u_char     ch;
    size_t     i;
    ngx_str_t  name;

    if (key->len < 2 || key->data[0] != '$') {
        return NGX_ERROR;
    }

    name.data = key->data + 1;
    name.len = key->len - 1;

    if (name.data[0] == '{') {
        if (name.len < 3 || name.data[name.len - 1] != '}') {
            return NGX_ERROR;
        }

        name.data++;
        name.len -= 2;
    }

    if (name.data[0] >= '0' && name.data[0] <= '9') {
        return NGX_ERROR;
    }

    for (i = 0; i < name.len; i++) {
        ch = name.data[i];

        if ((ch < 'a' || ch > 'z') && (ch < 'A' || ch > 'Z')
            && (ch < '0' || ch > '9') && ch != '_')
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_get_variable_index(cf, &name);
}


static char *
ngx_http_ai_gateway_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                                 *p;
    size_t                                  len;
    ssize_t                                 size;
    ngx_int_t                               rate, burst;
    ngx_str_t                              *value, name;
    ngx_uint_t                              i, period, redis;
    ngx_shm_zone_t                         *shm_zone;
    ngx_http_ai_gateway_limit_ref_t        *ref, **refp;
    ngx_http_ai_gateway_limit_zone_t       *zone, **zonep;
    ngx_http_ai_gateway_main_conf_t        *amcf;
    ngx_http_compile_complex_value_t        ccv;
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    value = cf->args->elts;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &zone->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }


    size = 0;
    rate = 0;
    burst = 0;
    period = 0;
    redis = 0;
    name.len = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            if (ngx_http_ai_gateway_parse_zone(cf, &value[i], &name, &size)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            /* the name is quoted in RateLimit-Policy and RateLimit */

            if (ngx_strlchr(name.data, name.data + name.len, '"')
                || ngx_strlchr(name.data, name.data + name.len, '\\'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone name \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {

            len = value[i].len;
            p = value[i].data + len - 3;

            if (len > 8 && ngx_strncmp(p, "r/s", 3) == 0) {
                period = 1000;

            } else if (len > 8 && ngx_strncmp(p, "r/m", 3) == 0) {
                period = 60000;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\", "
                                   "it must be \"Nr/s\" or \"Nr/m\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            rate = ngx_atoi(value[i].data + 5, len - 8);

            if (rate == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (rate < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "rate must be at least 1 in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {

            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (burst == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (burst < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "burst must be at least 1 in \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "redis") == 0) {
            redis = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (period == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"rate\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (burst == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"burst\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone->name = name;
    zone->backend = redis ? NGX_HTTP_AI_GATEWAY_LIMIT_REDIS
                          : NGX_HTTP_AI_GATEWAY_LIMIT_SHM;
    zone->file = cf->conf_file->file.name;
    zone->line = cf->conf_file->line;
    zone->bucket.rate = rate;
    zone->bucket.period_ms = period;
    zone->bucket.burst = burst;

    if (zone->key.lengths == NULL) {
        zone->key_kind = NGX_HTTP_AI_GATEWAY_LIMIT_KEY_CONSTANT;

        if (zone->key.value.len) {
            ngx_http_ai_gateway_limit_key_slot(zone, zone->key_slot,
                                               &zone->key.value);
        }

    } else {
        zone->key_index = ngx_http_ai_gateway_limit_key_variable(cf,
                                                                 &value[1]);

        zone->key_kind = (zone->key_index == NGX_ERROR)
                         ? NGX_HTTP_AI_GATEWAY_LIMIT_KEY_COMPLEX
                         : NGX_HTTP_AI_GATEWAY_LIMIT_KEY_VARIABLE;
    }

    if (!agw_bucket_conf_valid(&zone->bucket)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rate or burst of zone \"%V\" is too large",
                           &name);
        return NGX_CONF_ERROR;
    }

    /*
     * the structured fields quote the zone name; names are checked above
     * to hold no quote or backslash
     */
    p = ngx_pnalloc(cf->pool, NGX_INT64_LEN + sizeof("\"\";q=;w=") - 1
                              + name.len + 2 * NGX_INT64_LEN
                              + sizeof("\"\";r=") - 1 + name.len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->limit_value.data = p;
    p = ngx_sprintf(p, "%uL", burst);
    zone->limit_value.len = p - zone->limit_value.data;

    zone->policy_value.data = p;
    p = ngx_sprintf(p, "\"%V\";q=%uL;w=%uL", &name, burst,
                    agw_bucket_window_s(&zone->bucket));
    zone->policy_value.len = p - zone->policy_value.data;

    zone->fields_start.data = p;
    p = ngx_sprintf(p, "\"%V\";r=", &name);
    zone->fields_start.len = p - zone->fields_start.data;

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_ai_gateway_limit_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    ref = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_limit_ref_t));
    if (ref == NULL) {
        return NGX_CONF_ERROR;
    }

    ref->name = name;

    if (redis) {
        /* ai_gateway_redis may come later: checked in postconfiguration */
        ngx_str_set(&ref->backend, "redis");
        ngx_http_ai_gateway_limit_redis_init_conf();

    } else {
        ngx_str_set(&ref->backend, "shm");
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    refp = ngx_array_push(&amcf->limits);
    if (refp == NULL) {
        return NGX_CONF_ERROR;
    }

    *refp = ref;

    lmcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_ai_gateway_limit_module);

    zonep = ngx_array_push(&lmcf->zones);
    if (zonep == NULL) {
        return NGX_CONF_ERROR;
    }

    *zonep = zone;

    zone->ref = ref;
    zone->shm_zone = shm_zone;

    shm_zone->init = ngx_http_ai_gateway_limit_zone_init;
    shm_zone->data = zone;

    return NGX_CONF_OK;
}


static char *
ngx_http_ai_gateway_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ai_gateway_limit_loc_conf_t *lcf = conf;

    ngx_int_t                               cost;
    ngx_str_t                              *value, s;
    ngx_uint_t                              i;
    ngx_http_ai_gateway_limit_t            *limit, *limits;
    ngx_http_ai_gateway_limit_use_t        *use;
    ngx_http_compile_complex_value_t        ccv;
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    value = cf->args->elts;

    if (lcf->limits.elts == NULL) {
        if (ngx_array_init(&lcf->limits, cf->pool, 2,
                           sizeof(ngx_http_ai_gateway_limit_t))
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    limit = ngx_array_push(&lcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(limit, sizeof(ngx_http_ai_gateway_limit_t));
    limit->cost = 1;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            if (s.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            /* the zone may be declared further down: size 0 finds or adds */

            limit->shm_zone = ngx_shared_memory_add(cf, &s, 0,
                                             &ngx_http_ai_gateway_limit_module);
            if (limit->shm_zone == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "cost=", 5) == 0) {

            s.len = value[i].len - 5;
            s.data = value[i].data + 5;

            if (ngx_http_script_variables_count(&s)) {
                limit->cost_cv = ngx_palloc(cf->pool,
                                        sizeof(ngx_http_complex_value_t));
                if (limit->cost_cv == NULL) {
                    return NGX_CONF_ERROR;
                }

                ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

                ccv.cf = cf;
                ccv.value = &s;
                ccv.complex_value = limit->cost_cv;

                if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
                    return NGX_CONF_ERROR;
                }

                continue;
            }

            cost = ngx_atoi(s.data, s.len);

            if (cost == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid cost \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            limit->cost = cost;

            continue;
        }

        if (ngx_strcmp(value[i].data, "dry_run") == 0) {
            limit->dry_run = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "charge_hits") == 0) {
            limit->charge_hits = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (limit->shm_zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    limits = lcf->limits.elts;

    for (i = 0; i < lcf->limits.nelts - 1; i++) {
        if (limits[i].shm_zone == limit->shm_zone) {
            return "is duplicate";
        }
    }

    /* the zone and the cost are checked once the whole http{} is read */

    lmcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_ai_gateway_limit_module);

    use = ngx_array_push(&lmcf->uses);
    if (use == NULL) {
        return NGX_CONF_ERROR;
    }

    use->shm_zone = limit->shm_zone;
    use->cost = limit->cost_cv ? NGX_CONF_UNSET_UINT : limit->cost;
    use->file = cf->conf_file->file.name;
    use->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/*
 * not ngx_conf_set_enum_slot(): its "invalid value" message does not name
 * the directive, while a string returned here is logged after its name
 */

static char *
ngx_http_ai_gateway_limit_redis_fail(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_limit_loc_conf_t *lcf = conf;

    ngx_str_t  *value;

    if (lcf->redis_fail != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "open") == 0) {
        lcf->redis_fail = NGX_HTTP_AI_GATEWAY_LIMIT_FAIL_OPEN;

    } else if (ngx_strcmp(value[1].data, "closed") == 0) {
        lcf->redis_fail = NGX_HTTP_AI_GATEWAY_LIMIT_FAIL_CLOSED;

    } else {
        return "must be \"open\" or \"closed\"";
    }

    return NGX_CONF_OK;
}


/*
 * not ngx_conf_check_num_bounds(): its message does not name the
 * directive, while a string returned here is logged after its name
 */

static char *
ngx_http_ai_gateway_limit_status_check(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *np = data;

    if (*np < 400 || *np > 599) {
        return "must be between 400 and 599";
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ai_gateway_limit_add_variables(ngx_conf_t *cf)
{
    return ngx_http_ai_gateway_add_variables(cf,
                                             ngx_http_ai_gateway_limit_vars);
}


static ngx_int_t
ngx_http_ai_gateway_limit_init(ngx_conf_t *cf)
{
    ngx_uint_t                              i;
    ngx_http_ai_gateway_limit_use_t        *use;
    ngx_http_ai_gateway_limit_zone_t       *zone, **zones;
    ngx_http_ai_gateway_main_conf_t        *amcf;
    ngx_http_ai_gateway_limit_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_ai_gateway_limit_module);

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    zones = lmcf->zones.elts;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        if (zones[i]->backend == NGX_HTTP_AI_GATEWAY_LIMIT_REDIS
            && amcf->redis == NULL)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "ai_gateway_limit_zone \"%V\" has the \"redis\" "
                          "flag but \"ai_gateway_redis\" is not configured "
                          "in %V:%ui", &zones[i]->name, &zones[i]->file,
                          zones[i]->line);
            return NGX_ERROR;
        }
    }

    use = lmcf->uses.elts;

    for (i = 0; i < lmcf->uses.nelts; i++) {
        zone = use[i].shm_zone->data;

        if (zone == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown ai_gateway_limit_zone \"%V\" in %V:%ui",
                          &use[i].shm_zone->shm.name, &use[i].file,
                          use[i].line);
            return NGX_ERROR;
        }

        /* agw_bucket rejects such a request forever: refuse it now */

        if (use[i].cost != NGX_CONF_UNSET_UINT
            && use[i].cost > zone->bucket.burst)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "cost %ui exceeds burst %uL of zone \"%V\" "
                          "in %V:%ui", use[i].cost, zone->bucket.burst,
                          &zone->name, &use[i].file, use[i].line);
            return NGX_ERROR;
        }
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ai_gateway_limit_header_filter;

    return NGX_OK;
}
