/*
 * The limiter's policy (SPEC 3.1), shared between limit_conf.c (the
 * module, its directives), limit.c (which zones apply to a request and
 * what each costs), limit_decide.c (the decision over all of them),
 * limit_headers.c (what the client is told) and limit_settle.c (token
 * zones settled on the answer's use).
 *
 * The buckets themselves are the backends' (bucket/, one interface): the
 * policy hands them a request's zones and costs, and decides what to do
 * with their answers.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_event.h"
#include "base/ngx_http_ai_gateway_stats.h"

#include "bucket/ngx_http_ai_gateway_bucket.h"
#include "agw_price.h"
#include "agw_tokens.h"


/*
 * how a zone's key is evaluated: a constant ("global") is stored once at
 * configuration time; one variable alone is read directly; anything else
 * goes through the script engine
 */
#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_CONSTANT  0
#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_VARIABLE  1
#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_COMPLEX   2


#define NGX_HTTP_AI_GATEWAY_LIMIT_PASSED            1
#define NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED          2
#define NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED_DRY_RUN  3

/* ai_gateway_limit_headers: which fields, a bit each */
#define NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_IETF    1
#define NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_OPENAI  2


/* one ai_gateway_limit_zone, per configuration cycle: shm_zone->data */
typedef struct {
    ngx_http_ai_gateway_bucket_zone_t   buckets;  /* the backend's part */

    ngx_http_complex_value_t            key;
    ngx_uint_t                          key_kind;  /* _KEY_CONSTANT,
                                                      _VARIABLE, _COMPLEX */
    ngx_int_t                           key_index; /* _VARIABLE: its index */

    /* _CONSTANT: the key as the zone stores it */
    u_char                              key_slot[AGW_KEY_SLOT_LEN];

    /* header values that never change, formatted once */
    ngx_str_t                           limit_value;  /* RateLimit-Limit */
    ngx_str_t                           policy_value; /* RateLimit-Policy */
    ngx_str_t                           fields_start; /* RateLimit up to the
                                                         figures: "NAME";r= */
    ngx_str_t                           scope_json;   /* the name, escaped for
                                                         the 429's body */

    ngx_str_t                           file;     /* where it is declared */
    ngx_uint_t                          line;
} ngx_http_ai_gateway_limit_zone_t;


/* one ai_gateway_limit line */
typedef struct {
    ngx_shm_zone_t                     *shm_zone;
    ngx_http_complex_value_t           *cost_cv;  /* NULL: cost is fixed */
    ngx_uint_t                          cost;     /* tokens */
    unsigned                            cost_set:1; /* cost= given; a token
                                                     zone's cost is else the
                                                     request's estimate */
    unsigned                            dry_run:1;
    unsigned                            charge_hits:1;
    /* set once the zones are known (limit_conf.c) */
    unsigned                            fixed:1;     /* a request zone's,
                                                        cost without
                                                        variables */
    unsigned                            estimated:1; /* a token zone's,
                                                        without cost= */
} ngx_http_ai_gateway_limit_t;


/* where an ai_gateway_limit line is, checked once all zones are known */
typedef struct {
    ngx_shm_zone_t                     *shm_zone;
    ngx_uint_t                          cost;     /* NGX_CONF_UNSET_UINT
                                                     if variable */
    ngx_str_t                           file;
    ngx_uint_t                          line;
} ngx_http_ai_gateway_limit_use_t;


/* one ai_gateway_model_price line */
typedef struct {
    ngx_str_t                           model;
    agw_price_t                         price;
} ngx_http_ai_gateway_limit_price_t;


typedef struct {
    ngx_array_t                         uses;     /* limit_use_t */
    ngx_array_t                         zones;    /* limit_zone_t * */
    ngx_array_t                         leases;   /* bucket_zone_t *: the
                                                     zones that lease */

    /* money (SPEC 8.4): the models' prices, the default and the highest */
    ngx_array_t                         prices;   /* limit_price_t */
    agw_price_t                         price_default;
    agw_price_t                         price_highest;
    unsigned                            has_default:1;
    unsigned                            usd:1;    /* a zone counts money */
} ngx_http_ai_gateway_limit_main_conf_t;


typedef struct {
    ngx_array_t                         limits;   /* limit_t */
    ngx_uint_t                         *lock_order; /* indexes of limits */
    ngx_uint_t                          status;
    ngx_uint_t                          headers;  /* _HEADERS_* bits */
    ngx_uint_t                          redis_fail;
    ngx_uint_t                          tokens_default_max;
} ngx_http_ai_gateway_limit_loc_conf_t;


/*
 * A request's decision, and the figures of its most constrained zone.
 * While Redis is asked, it also holds the state of every zone.
 */
typedef struct {
    ngx_uint_t                          status;   /* 0: no zone applied */
    ngx_http_ai_gateway_limit_zone_t   *zone;     /* the one reported;
                                                     NULL: no figures */
    uint64_t                            remaining; /* tokens */
    uint64_t                            reset;     /* s */

    /* the most constrained zone of each unit, for OpenAI's headers */
    ngx_http_ai_gateway_bucket_state_t  *report_requests;
    ngx_http_ai_gateway_bucket_state_t  *report_tokens;

    /*
     * token zones: the estimate reserved; money zones: the estimate
     * reserved in micro-dollars (the prices are below)
     */
    uint64_t                            estimate;
    uint64_t                            estimate_usd;

    unsigned                            waiting:1;  /* for Redis */
    unsigned                            replied:1;  /* Redis answered or
                                                       failed: finish */
    unsigned                            estimated:1; /* estimate is set */
    unsigned                            tokens:1;    /* a token zone applies */
    unsigned                            usd:1;       /* a money zone applies */
    unsigned                            priced:1;    /* price, estimate_usd
                                                        are set */
    unsigned                            unpriced:1;  /* the model has no
                                                        price, nor a default */
    unsigned                            settle:1;   /* tokens reserved */
    unsigned                            settled:1;
    unsigned                            own:2;    /* a 429 of ours: its
                                                     fields, first in the
                                                     list (limit_reject()) */

    /*
     * From here on, the ctx is not zeroed when it is created: each field
     * is set before it is read (the part above, 72 bytes, is zeroed with
     * a few vector stores; gcc zeroes 96 bytes or more with a rep stosq,
     * an instruction per 8 bytes).
     *
     * a zone whose cost can never fit (more than its burst, or too large
     * to hold): the request is refused there, whatever the others hold,
     * and every zone is only read; set when the ctx is created
     */
    ngx_http_ai_gateway_bucket_state_t  *never;

    /*
     * a zone that refused the request before its body was read (a bucket
     * in debt or empty): rate limited, every zone only read; set when the
     * ctx is created
     */
    ngx_http_ai_gateway_bucket_state_t  *early;

    /*
     * what the answer used, in tokens and in micro-dollars: set by the
     * settlement, read once settled
     */
    uint64_t                            used;
    uint64_t                            used_usd;

    /*
     * money zones: the request's prices (its model's, in the configuration
     * of this worker's cycle, which lives as long as the request: a reload
     * that changes them settles this request at these); set, and read,
     * only once priced
     */
    const agw_price_t                  *price;

    /*
     * the zones as the backends are given them: the request, its zones
     * (one per limit) and what they report (set when the ctx is created)
     */
    ngx_http_ai_gateway_bucket_batch_t  batch;
} ngx_http_ai_gateway_limit_ctx_t;


/* the policy's zone of a backend's zone */
#define ngx_http_ai_gateway_limit_zone_of(bz)                                \
    ((ngx_http_ai_gateway_limit_zone_t *)                                    \
         ((u_char *) (bz) - offsetof(ngx_http_ai_gateway_limit_zone_t,       \
                                     buckets)))


extern ngx_module_t  ngx_http_ai_gateway_limit_module;


/*
 * Steps of the dispatcher (core/): where the cache would read a request
 * body, refuse now, unread, a request that no bucket charging HITs could
 * pass; after the cache lookup, charge (or, for a cached answer, just
 * read) the buckets.  NGX_DECLINED to go on, NGX_DONE while waiting, or a
 * status.
 */
ngx_int_t ngx_http_ai_gateway_limit_precheck(ngx_http_request_t *r);
ngx_int_t ngx_http_ai_gateway_limit_check(ngx_http_request_t *r);


/* limit.c: the zones of a request, their keys and costs, the backends */
ngx_http_ai_gateway_limit_ctx_t *ngx_http_ai_gateway_limit_find_ctx(
    ngx_http_request_t *r);
void ngx_http_ai_gateway_limit_cleanup(void *data);

/* limit_decide.c: the decision over all zones, once they answered */
ngx_int_t ngx_http_ai_gateway_limit_finish(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx);

/* limit_cost.c: what a request costs a zone, the request's estimate */
ngx_int_t ngx_http_ai_gateway_limit_cost_of(
    ngx_http_request_t *r, ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx, ngx_http_ai_gateway_limit_t *limit,
    ngx_http_ai_gateway_bucket_state_t *st, ngx_uint_t hit, ngx_uint_t early);
ngx_int_t ngx_http_ai_gateway_limit_cost(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_t *limit, uint64_t *cost);
ngx_int_t ngx_http_ai_gateway_limit_estimate(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx);

/* limit_price.c: ai_gateway_model_price, a request's prices */
char *ngx_http_ai_gateway_limit_price(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_ai_gateway_limit_price_init(ngx_conf_t *cf,
    ngx_http_ai_gateway_limit_main_conf_t *lmcf);
ngx_int_t ngx_http_ai_gateway_limit_priced(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx);

/* ngx_http_ai_gateway_limit_settle.c: token zones settled on real usage */
ngx_int_t ngx_http_ai_gateway_limit_settle_init(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_limit_settle_add_variables(ngx_conf_t *cf);

/* ngx_http_ai_gateway_limit_headers.c: what the client is told */
ngx_int_t ngx_http_ai_gateway_limit_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_limit_headers_init(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_limit_reject(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx,
    ngx_http_ai_gateway_bucket_state_t *st, ngx_uint_t never);

extern ngx_str_t  ngx_http_ai_gateway_limit_status_names[];


/*
 * The request's ctx, NULL if no zone applied yet.  Inline: every request
 * of a limited location asks several times (the check, the header filter,
 * the settlement); only after an internal redirect, which clears module
 * ctxs, is it looked for among the pool's cleanups (limit_find_ctx()).
 */
static ngx_inline ngx_http_ai_gateway_limit_ctx_t *
ngx_http_ai_gateway_limit_get_ctx(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_limit_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_limit_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {
        ctx = ngx_http_ai_gateway_limit_find_ctx(r);
    }

    return ctx;
}


/* limit_zone.c: ai_gateway_limit_zone */
char *ngx_http_ai_gateway_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_ */
