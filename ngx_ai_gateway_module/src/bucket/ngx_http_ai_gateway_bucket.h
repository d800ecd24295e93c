/*
 * The limiter's backends, one interface (DESIGN.md): what the policy
 * (limit/) hands a zone's buckets, and what it gets back.  A backend sees
 * a zone's buckets (its name, its rate and burst, where they live), the
 * request's zones and their costs; never the policy's configuration (keys,
 * headers, directives).
 *
 *   check   would the cost pass now?  nothing is taken (a read; NULL where
 *           reading costs a round trip)
 *   charge  take the cost of every zone of the request that the backend
 *           holds, from all or from none, at once or, by a call to the
 *           batch's done handler, later
 *   refund  give back what charge took (another zone refused the request)
 *   settle  move a token zone's reservation to the answer's real use
 *
 * Request, token and money zones differ only in the cost they pass.  The
 * backends: shared memory (bucket_shm.c), Redis (bucket_redis.c, one
 * script call for all of a request's Redis zones) and, in front of Redis,
 * leases of its tokens kept in shared memory (bucket_lease.c).  The
 * bucket arithmetic itself is lib/agw_bucket.c.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_BUCKET_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_BUCKET_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_stats.h"

#include "agw_bucket.h"
#include "agw_key.h"
#include "agw_sha256.h"


#define NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN  AGW_KEY_SLOT_LEN

#if (AGW_KEY_SLOT_LEN != AGW_SHA256_DIGEST_LEN)
#error "a key slot must hold a whole SHA-256 digest (redis zones)"
#endif

#if (AGW_KEY_SLOT_LEN != 4 * 8)
#error "key slots are compared as four 64-bit words"
#endif

/* when Redis cannot answer (ai_gateway_limit_redis_fail) */
#define NGX_HTTP_AI_GATEWAY_BUCKET_FAIL_OPEN    0
#define NGX_HTTP_AI_GATEWAY_BUCKET_FAIL_CLOSED  1


typedef struct ngx_http_ai_gateway_bucket_backend_s
    ngx_http_ai_gateway_bucket_backend_t;
typedef struct ngx_http_ai_gateway_bucket_batch_s
    ngx_http_ai_gateway_bucket_batch_t;

/* a zone's bucket in shared memory, and the zone's tree (bucket_node.h) */
typedef struct ngx_http_ai_gateway_bucket_node_s
    ngx_http_ai_gateway_bucket_node_t;
typedef struct ngx_http_ai_gateway_bucket_shctx_s
    ngx_http_ai_gateway_bucket_shctx_t;


/* one ai_gateway_limit_zone's buckets, per configuration cycle */
typedef struct {
    ngx_str_t                             name;
    ngx_http_ai_gateway_bucket_backend_t *backend;
    ngx_uint_t                            tokens;  /* a token or money
                                                      zone (t/s, t/m, usd/):
                                                      costs are settled */
    ngx_uint_t                            usd;     /* a money zone: costs
                                                      are micro-dollars */
    uint64_t                              lease;   /* redis lease=N: tokens
                                                      taken at a time */
    agw_bucket_conf_t                     bucket;

    /*
     * the shared memory: the buckets of backend "shm"; for backend "redis"
     * the counters and the keys this nginx charged (see bucket_redis.c)
     */
    ngx_shm_zone_t                       *shm_zone;
    ngx_slab_pool_t                      *shpool;
    ngx_http_ai_gateway_bucket_shctx_t   *sh;

    ngx_http_ai_gateway_limit_ref_t      *ref;     /* as /cachez sees it,
                                                      with the counters */
} ngx_http_ai_gateway_bucket_zone_t;


/* one zone of a request, while it is being decided */
typedef struct {
    ngx_http_ai_gateway_bucket_zone_t    *zone;    /* NULL: does not apply */

    /* what charged the request, to refund or settle; NULL: nothing */
    ngx_http_ai_gateway_bucket_backend_t *charged;

    ngx_http_ai_gateway_bucket_node_t    *node;    /* shm, under the lock */
    uint64_t                              cost;    /* 0: only read */
    agw_bucket_result_t                   res;

    /*
     * redis: the script could not run and the zone lets the request
     * through (ai_gateway_limit_redis_fail open, or a read): res holds no
     * figures and the zone is left out of the RateLimit headers
     */
    u_char                                blind;

    /* dry_run: counted and logged, never vetoes the other zones */
    u_char                                dry;

    /* shm: cost was taken from the bucket (what a refund gives back) */
    u_char                                taken;

    /*
     * lease=: decided here with no round trip: 1 cost spent from this
     * nginx's lease, 2 refused as Redis lately refused the key (beside
     * the flags above: a state is allocated for every zone of every
     * limited request)
     */
    u_char                                leased;

    /* a token zone's reservation of a passed request, to settle */
    uint64_t                              reserved;

    /* lease=: an old lease's tokens handed back with the script call */
    uint64_t                              giveback;

    u_char                                key[
                                        NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN];
} ngx_http_ai_gateway_bucket_state_t;


typedef void (*ngx_http_ai_gateway_bucket_done_pt)(
    ngx_http_ai_gateway_bucket_batch_t *batch);


/* a request's zones, as charge() is given them */
struct ngx_http_ai_gateway_bucket_batch_s {
    ngx_http_request_t                   *request;
    ngx_http_ai_gateway_bucket_state_t   *st;      /* all the request's */
    ngx_uint_t                           *order;   /* the order st's zones
                                                      are locked in */

    /* a charge that returned NGX_AGAIN reports here, once */
    ngx_http_ai_gateway_bucket_done_pt    done;
    void                                 *data;

    /* packed: the batch lives in every limited request's ctx */
    uint32_t                              n;
    uint32_t                              count;   /* of them, the charged
                                                      backend's */
    unsigned                              fail:1;       /* _FAIL_OPEN,
                                                           _CLOSED */
    unsigned                              refused:1;    /* a zone that is
                                                           not dry_run
                                                           refused */
    unsigned                              refundable:1; /* refund() would
                                                           give something
                                                           back */
};


struct ngx_http_ai_gateway_bucket_backend_s {
    ngx_str_t                             name;
    unsigned                              digest_keys:1; /* keys are their
                                                            SHA-256: the
                                                            same on every
                                                            node */

    void                                (*check)(
                                     ngx_http_ai_gateway_bucket_zone_t *zone,
                                     u_char *key, uint64_t cost, uint64_t now,
                                     agw_bucket_result_t *res);
    ngx_int_t                           (*charge)(
                                     ngx_http_ai_gateway_bucket_batch_t *b);
    void                                (*refund)(
                                     ngx_http_ai_gateway_bucket_state_t *st,
                                     uint64_t now);
    void                                (*settle)(ngx_http_request_t *r,
                                     ngx_http_ai_gateway_bucket_state_t *st,
                                     uint64_t used, uint64_t now);
};


/* the backends a zone is kept by */
extern ngx_http_ai_gateway_bucket_backend_t  ngx_http_ai_gateway_bucket_shm;
extern ngx_http_ai_gateway_bucket_backend_t  ngx_http_ai_gateway_bucket_redis;

/*
 * the shm backend's charge(), by name: the policy's every request with a
 * shared-memory zone calls it, directly rather than through the table
 */
ngx_int_t ngx_http_ai_gateway_bucket_shm_charge(
    ngx_http_ai_gateway_bucket_batch_t *batch);


/*
 * The zone's shared memory, set up (or taken over from the previous cycle,
 * ozone) by its shm_zone->init; "nginx -t" runs it too
 */
ngx_int_t ngx_http_ai_gateway_bucket_zone_init(ngx_shm_zone_t *shm_zone,
    ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_zone_t *ozone);

/* a zone of backend redis: its scripts, loaded once */
void ngx_http_ai_gateway_bucket_redis_init_conf(void);

/*
 * lease=: hand the tokens of ended leases back to Redis, from a timer in
 * every worker; the zones that lease are those zones(ngx_cycle) returns,
 * asked at every sweep (of ngx_http_ai_gateway_bucket_zone_t *; NULL:
 * none)
 */
typedef ngx_array_t *(*ngx_http_ai_gateway_bucket_zones_pt)(
    ngx_cycle_t *cycle);

ngx_int_t ngx_http_ai_gateway_bucket_lease_init_process(ngx_cycle_t *cycle,
    ngx_http_ai_gateway_bucket_zones_pt zones);


/*
 * A key value as the zone stores it.  A redis zone names its bucket by the
 * SHA-256 of the key, the same on every node; a shared-memory zone keeps a
 * short key, such as an address, as it is, with no hashing.
 */

static ngx_inline void
ngx_http_ai_gateway_bucket_key(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *slot, ngx_str_t *key)
{
    if (zone->backend->digest_keys) {
        agw_sha256(key->data, key->len, slot);

    } else {
        agw_key_slot(slot, key->data, key->len);
    }
}


/*
 * The clock of the shared-memory buckets, in milliseconds: nginx's
 * monotonic clock, as limit_req's, so that a wall clock stepped by NTP or
 * by hand neither freezes every bucket (a step back) nor refills them all
 * at once (a step forward).  Every worker reads the same CLOCK_MONOTONIC,
 * which survives a reload; each caches it per event loop turn, so another
 * worker's stamp may lie a few ms ahead, which agw_bucket clamps.
 */

static ngx_inline uint64_t
ngx_http_ai_gateway_bucket_now(void)
{
    return (uint64_t) ngx_current_msec;
}


#endif /* _NGX_HTTP_AI_GATEWAY_BUCKET_H_INCLUDED_ */
