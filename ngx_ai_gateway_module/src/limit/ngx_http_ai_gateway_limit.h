/*
 * The token-bucket limiter, shared between ngx_http_ai_gateway_limit.c
 * (directives, the request-time check, headers, variables),
 * ngx_http_ai_gateway_limit_zone.c (the buckets in shared memory) and
 * ngx_http_ai_gateway_limit_redis.c (the buckets in Redis).
 *
 * The bucket arithmetic itself is lib/agw_bucket.c; the zone file only
 * finds, creates and evicts buckets, and the limit file decides what to do
 * with their answers.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_event.h"
#include "base/ngx_http_ai_gateway_stats.h"

#include "agw_bucket.h"
#include "agw_key.h"
#include "agw_sha256.h"
#include "agw_tokens.h"


/*
 * how a zone's key is evaluated: a constant ("global") is stored once at
 * configuration time; one variable alone is read directly; anything else
 * goes through the script engine
 */
#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_CONSTANT  0
#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_VARIABLE  1
#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_COMPLEX   2

#define NGX_HTTP_AI_GATEWAY_LIMIT_SHM      0
#define NGX_HTTP_AI_GATEWAY_LIMIT_REDIS    1

/*
 * bumped whenever the layout of the shared structures below, the order of
 * the tree or the order in which zones are locked changes: a reload never
 * hands a zone to workers that would use it differently
 */
#define NGX_HTTP_AI_GATEWAY_LIMIT_VERSION  5

/* how long this nginx holds tokens leased from a Redis bucket */
#define NGX_HTTP_AI_GATEWAY_LIMIT_LEASE_MS  1000

#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_LEN  AGW_KEY_SLOT_LEN

#if (AGW_KEY_SLOT_LEN != AGW_SHA256_DIGEST_LEN)
#error "a key slot must hold a whole SHA-256 digest (redis zones)"
#endif

#if (AGW_KEY_SLOT_LEN != 4 * 8)
#error "key slots are compared as four 64-bit words"
#endif

#define NGX_HTTP_AI_GATEWAY_LIMIT_PASSED            1
#define NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED          2
#define NGX_HTTP_AI_GATEWAY_LIMIT_REJECTED_DRY_RUN  3

/* ai_gateway_limit_headers: which fields, a bit each */
#define NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_IETF    1
#define NGX_HTTP_AI_GATEWAY_LIMIT_HEADERS_OPENAI  2

/* ai_gateway_limit_redis_fail */
#define NGX_HTTP_AI_GATEWAY_LIMIT_FAIL_OPEN    0
#define NGX_HTTP_AI_GATEWAY_LIMIT_FAIL_CLOSED  1


/*
 * A bucket.  Like limit_req's node it overlays ngx_rbtree_node_t from its
 * "color" byte.  The key is stored in a fixed slot (agw_key_slot(): short
 * values such as an address as they are, long ones as their SHA-256;
 * redis zones always as the SHA-256 that names their Redis key), so every
 * node has the same size: freeing the least recently used node always
 * makes room for a new one, whatever the length of the key value.
 */
typedef struct {
    u_char                              color;
    u_char                              dummy;
    u_short                             pad;
    ngx_queue_t                         queue;
    agw_bucket_t                        bucket;
    uint64_t                            lease;     /* redis lease=: tokens
                                                      taken out of Redis and
                                                      not spent yet */
    uint64_t                            lease_end; /* ms, monotonic */
    u_char                              key[NGX_HTTP_AI_GATEWAY_LIMIT_KEY_LEN];
} ngx_http_ai_gateway_limit_node_t;


/* what lives in the zone: shpool->data */
typedef struct {
    ngx_uint_t                          version;
    ngx_rbtree_t                        rbtree;
    ngx_rbtree_node_t                   sentinel;
    ngx_queue_t                         queue;    /* LRU, newest at head */
    ngx_http_ai_gateway_limit_stats_t   stats;
} ngx_http_ai_gateway_limit_shctx_t;


/* one ai_gateway_limit_zone, per configuration cycle: shm_zone->data */
typedef struct {
    ngx_str_t                           name;
    ngx_uint_t                          backend;  /* NGX_HTTP_AI_GATEWAY_
                                                     LIMIT_SHM or _REDIS */
    ngx_uint_t                          tokens;   /* a token zone (t/s,
                                                     t/m): costs are LLM
                                                     tokens, settled */
    uint64_t                            lease;    /* redis lease=N: tokens
                                                     taken at a time */
    ngx_http_complex_value_t            key;
    ngx_uint_t                          key_kind;  /* _KEY_CONSTANT,
                                                      _VARIABLE, _COMPLEX */
    ngx_int_t                           key_index; /* _VARIABLE: its index */

    /* _CONSTANT: the key as the zone stores it */
    u_char                              key_slot[AGW_KEY_SLOT_LEN];
    agw_bucket_conf_t                   bucket;

    /* header values that never change, formatted once */
    ngx_str_t                           limit_value;  /* RateLimit-Limit */
    ngx_str_t                           policy_value; /* RateLimit-Policy */
    ngx_str_t                           fields_start; /* RateLimit up to the
                                                         figures: "NAME";r= */

    /*
     * the shared memory: the buckets of backend "shm"; for backend "redis"
     * the counters and the keys this nginx charged (see limit_redis.c)
     */
    ngx_shm_zone_t                     *shm_zone;
    ngx_slab_pool_t                    *shpool;
    ngx_http_ai_gateway_limit_shctx_t  *sh;

    ngx_http_ai_gateway_limit_ref_t    *ref;      /* as /cachez sees it */

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
} ngx_http_ai_gateway_limit_t;


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
    ngx_uint_t                          headers;  /* _HEADERS_* bits */
    ngx_uint_t                          redis_fail;
    ngx_uint_t                          tokens_default_max;
} ngx_http_ai_gateway_limit_loc_conf_t;


typedef struct ngx_http_ai_gateway_limit_answer_s
    ngx_http_ai_gateway_limit_answer_t;

typedef struct ngx_http_ai_gateway_limit_state_s
    ngx_http_ai_gateway_limit_state_t;


/*
 * The limiter's backends, one interface: what a kind of bucket does with
 * a charge it made for a request.  refund gives it back (another zone
 * refused the request); settle moves a token zone's reservation to the
 * answer's real use.  Charging itself is batched per kind, so that several
 * zones stay all-or-nothing (the shared-memory zones under their locks in
 * one order, the Redis zones in one script call, a lease under its zone's
 * lock: see limit.c), and is not part of the table.
 */
typedef struct {
    ngx_str_t                           name;
    void                              (*refund)(
                                     ngx_http_ai_gateway_limit_state_t *st,
                                     uint64_t now);
    void                              (*settle)(ngx_http_request_t *r,
                                     ngx_http_ai_gateway_limit_state_t *st,
                                     uint64_t used, uint64_t now);
} ngx_http_ai_gateway_limit_backend_t;

extern ngx_http_ai_gateway_limit_backend_t  ngx_http_ai_gateway_limit_backend_shm;
extern ngx_http_ai_gateway_limit_backend_t  ngx_http_ai_gateway_limit_backend_redis;
extern ngx_http_ai_gateway_limit_backend_t  ngx_http_ai_gateway_limit_backend_lease;


/* per zone of a request, while it is being decided */
struct ngx_http_ai_gateway_limit_state_s {
    ngx_http_ai_gateway_limit_zone_t   *zone;     /* NULL: does not apply */

    /* what charged the request, to refund or settle; NULL: nothing */
    ngx_http_ai_gateway_limit_backend_t *charged;

    ngx_http_ai_gateway_limit_node_t   *node;     /* shm, under the lock */
    uint64_t                            cost;     /* 0: only read */
    agw_bucket_result_t                 res;

    /*
     * redis: the script could not run and the zone lets the request
     * through (ai_gateway_limit_redis_fail open, or a read): res holds no
     * figures and the zone is left out of the RateLimit headers
     */
    u_char                              blind;

    /* dry_run: counted and logged, never vetoes the other zones */
    u_char                              dry;

    /* shm: cost was taken from the bucket (what a refund gives back) */
    u_char                              taken;

    /* a token zone's reservation of a passed request, to settle */
    uint64_t                            reserved;

    /*
     * lease=: decided here with no round trip: 1 cost spent from this
     * nginx's lease, 2 refused as Redis lately refused the key
     */
    u_char                              leased;
    /* lease=: an old lease's tokens handed back with the script call */
    uint64_t                            giveback;

    u_char                              key[NGX_HTTP_AI_GATEWAY_LIMIT_KEY_LEN];
};


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
    ngx_http_ai_gateway_limit_state_t  *report_requests;
    ngx_http_ai_gateway_limit_state_t  *report_tokens;

    /* token zones: the estimate reserved and what the answer says */
    uint64_t                            estimate;
    uint64_t                            used;     /* once settled */
    ngx_http_ai_gateway_limit_answer_t *answer;  /* NULL: not read */

    unsigned                            waiting:1;  /* for Redis */
    unsigned                            replied:1;  /* Redis answered or
                                                       failed: finish */
    unsigned                            reserved:1; /* shm zones charged */
    unsigned                            estimated:1; /* estimate is set */
    unsigned                            tokens:1;    /* a token zone applies */
    unsigned                            leased:1;    /* a lease paid a zone */
    unsigned                            settle:1;   /* tokens reserved */
    unsigned                            settled:1;

    /*
     * a zone whose cost can never fit (more than its burst, or too large
     * to hold): the request is refused there, whatever the others hold,
     * and every zone is only read
     */
    ngx_http_ai_gateway_limit_state_t  *never;

    /* set when the ctx is created: not zeroed */
    ngx_http_request_t                 *request;
    ngx_http_ai_gateway_limit_state_t  *st;       /* one per limit */
    ngx_uint_t                          n;
    ngx_uint_t                          fail;     /* _FAIL_OPEN, _CLOSED */
} ngx_http_ai_gateway_limit_ctx_t;


extern ngx_module_t  ngx_http_ai_gateway_limit_module;


/*
 * Steps of the dispatcher (core/): where the cache would read a request
 * body, refuse now, unread, a request that no bucket could pass as a MISS;
 * after the cache lookup, charge (or, for a cached answer, just read) the
 * buckets.  NGX_DECLINED to go on, NGX_DONE while waiting, or a status.
 */
ngx_int_t ngx_http_ai_gateway_limit_precheck(ngx_http_request_t *r);
ngx_int_t ngx_http_ai_gateway_limit_check(ngx_http_request_t *r);


/* ngx_http_ai_gateway_limit.c: the decision */
ngx_http_ai_gateway_limit_ctx_t *ngx_http_ai_gateway_limit_get_ctx(
    ngx_http_request_t *r);
void ngx_http_ai_gateway_limit_cleanup(void *data);

ngx_int_t ngx_http_ai_gateway_limit_estimate(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_ctx_t *ctx);

/* ngx_http_ai_gateway_limit_settle.c: token zones settled on real usage */
ngx_int_t ngx_http_ai_gateway_limit_settle_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx);
ngx_int_t ngx_http_ai_gateway_limit_settle_init(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_limit_settle_add_variables(ngx_conf_t *cf);

/* ngx_http_ai_gateway_limit_headers.c: what the client is told */
ngx_int_t ngx_http_ai_gateway_limit_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_limit_headers_init(ngx_conf_t *cf);
ngx_int_t ngx_http_ai_gateway_limit_reject(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_loc_conf_t *lcf,
    ngx_http_ai_gateway_limit_state_t *st, ngx_uint_t never);

extern ngx_str_t  ngx_http_ai_gateway_limit_status_names[];

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


ngx_int_t ngx_http_ai_gateway_limit_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);


/*
 * The clock of the shared-memory buckets, in milliseconds: nginx's
 * monotonic clock, as limit_req's, so that a wall clock stepped by NTP or
 * by hand neither freezes every bucket (a step back) nor refills them all
 * at once (a step forward).  Every worker reads the same CLOCK_MONOTONIC,
 * which survives a reload; each caches it per event loop turn, so another
 * worker's stamp may lie a few ms ahead, which agw_bucket clamps.
 */

static ngx_inline uint64_t
ngx_http_ai_gateway_limit_now(void)
{
    return (uint64_t) ngx_current_msec;
}

/* the zone's slab mutex, which every function below needs held */

static ngx_inline void
ngx_http_ai_gateway_limit_zone_lock(ngx_http_ai_gateway_limit_zone_t *zone)
{
    ngx_shmtx_lock(&zone->shpool->mutex);
}


static ngx_inline void
ngx_http_ai_gateway_limit_zone_unlock(ngx_http_ai_gateway_limit_zone_t *zone)
{
    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* the bucket of key, or NULL if the key has none; marks it recently used */
ngx_http_ai_gateway_limit_node_t *ngx_http_ai_gateway_limit_zone_lookup(
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *key);

/* the result of taking cost now; node NULL is a new, full bucket */
void ngx_http_ai_gateway_limit_zone_check(
    ngx_http_ai_gateway_limit_zone_t *zone,
    ngx_http_ai_gateway_limit_node_t *node, uint64_t cost, uint64_t now,
    agw_bucket_result_t *res);

/*
 * lock, find the bucket, check and, if allowed and cost > 0, take, unlock:
 * all that a request with a single shared-memory zone needs; 1 if taken
 */
ngx_uint_t ngx_http_ai_gateway_limit_zone_charge(
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *key, uint64_t cost,
    uint64_t now, ngx_log_t *log, agw_bucket_result_t *res);

/*
 * store what zone_check() found allowed, creating the bucket if node is
 * NULL; the lock must have been held since the check
 */
ngx_int_t ngx_http_ai_gateway_limit_zone_commit(
    ngx_http_ai_gateway_limit_zone_t *zone,
    ngx_http_ai_gateway_limit_node_t *node, u_char *key,
    agw_bucket_result_t *res, uint64_t now, ngx_log_t *log);

/* give back cost taken earlier; a bucket forgotten since is full anyway */
void ngx_http_ai_gateway_limit_zone_refund(
    ngx_http_ai_gateway_limit_zone_t *zone,
    ngx_http_ai_gateway_limit_node_t *node, uint64_t cost, uint64_t now);

/* settle a token zone's reservation on the real use, as agw_bucket_settle */
void ngx_http_ai_gateway_limit_zone_settle(
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *key, uint64_t reserved,
    uint64_t actual, uint64_t now, ngx_log_t *log);

/* lease=: Redis refused key: its bucket, for a lease time */
void ngx_http_ai_gateway_limit_zone_refused(
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *key, agw_bucket_t *b,
    uint64_t now, ngx_log_t *log);

/* remember level for key (a Redis bucket as Redis reported it) */
void ngx_http_ai_gateway_limit_zone_track(
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *key, uint64_t level,
    uint64_t now, uint64_t lease, ngx_log_t *log);


/* limit_redis.c */
void ngx_http_ai_gateway_limit_redis_init_conf(void);

/*
 * Charge the request's redis zones (those in ctx->st with backend redis)
 * in one script call: NGX_AGAIN when sent (the reply fills their st[].res
 * and resumes the request with ctx->replied set); NGX_OK when Redis cannot
 * be used now and st[].res already says what ctx->fail makes of that;
 * NGX_ERROR
 */
ngx_int_t ngx_http_ai_gateway_limit_redis_check(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_ctx_t *ctx);

/*
 * lease=: take cost from this nginx's lease of the key's Redis tokens (1,
 * st->res filled), or refuse it while Redis lately refused the key (2),
 * else (0) prepare to ask Redis for a new lease
 */
ngx_uint_t ngx_http_ai_gateway_limit_lease_take(
    ngx_http_ai_gateway_limit_state_t *st, uint64_t now);
/* an unsent giveback (st->giveback) back into the key's node, ended */
void ngx_http_ai_gateway_limit_lease_restore(
    ngx_http_ai_gateway_limit_state_t *st, uint64_t now);
/* hand the tokens of ended leases back, from a timer in every worker */
ngx_int_t ngx_http_ai_gateway_limit_lease_init_process(ngx_cycle_t *cycle);

/* settle a redis token zone's reservation on the answer's use */
void ngx_http_ai_gateway_limit_redis_settle(ngx_http_request_t *r,
    ngx_http_ai_gateway_limit_state_t *st, uint64_t used, uint64_t now);

/* give a Redis bucket units back (or take them, negative): fire and forget */
void ngx_http_ai_gateway_limit_redis_move(
    ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *key, int64_t units);


#endif /* _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_ */
