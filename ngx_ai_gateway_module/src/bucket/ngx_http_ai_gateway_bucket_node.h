/*
 * What the backends share (bucket/ only; the policy sees
 * ngx_http_ai_gateway_bucket.h): every zone's buckets in its shared memory
 * (bucket_tree.c), a red-black tree keyed by the key value (or its
 * digest) and an LRU queue threaded through the same nodes, as
 * ngx_http_limit_req_module keeps them.  A shared-memory zone holds its
 * buckets there; a redis zone mirrors there the buckets this nginx charged
 * and its leases.
 *
 * Every function below but the zone's init and charge runs with the
 * zone's slab mutex held (ngx_http_ai_gateway_bucket_zone_lock(), so that
 * a request limited by several zones can check all of them and take from
 * all of them under the same locks); charge, for a request with one zone,
 * takes the lock itself.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_BUCKET_NODE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_BUCKET_NODE_H_INCLUDED_


#include "bucket/ngx_http_ai_gateway_bucket.h"


/*
 * bumped whenever the layout of the shared structures below, the order of
 * the tree or the order in which zones are locked changes: a reload never
 * hands a zone to workers that would use it differently
 */
#define NGX_HTTP_AI_GATEWAY_BUCKET_VERSION  6

/* how long this nginx holds tokens leased from a Redis bucket */
#define NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_MS  1000


/*
 * A bucket.  Like limit_req's node it overlays ngx_rbtree_node_t from its
 * "color" byte.  The key is stored in a fixed slot (agw_key_slot(): short
 * values such as an address as they are, long ones as their SHA-256;
 * redis zones always as the SHA-256 that names their Redis key), so every
 * node has the same size: freeing the least recently used node always
 * makes room for a new one, whatever the length of the key value.
 */
struct ngx_http_ai_gateway_bucket_node_s {
    u_char                              color;
    u_char                              dummy;
    u_short                             pad;
    ngx_queue_t                         queue;
    agw_bucket_t                        bucket;
    uint64_t                            lease;     /* redis lease=: tokens
                                                      taken out of Redis and
                                                      not spent yet */
    uint64_t                            lease_end; /* ms, monotonic */
    u_char                              key[
                                        NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN];
};


/* what lives in the zone: shpool->data */
struct ngx_http_ai_gateway_bucket_shctx_s {
    ngx_uint_t                          version;
    ngx_rbtree_t                        rbtree;
    ngx_rbtree_node_t                   sentinel;
    ngx_queue_t                         queue;    /* LRU, newest at head */
    ngx_http_ai_gateway_limit_stats_t   stats;
};


/* the zone's slab mutex, which every function below needs held */

static ngx_inline void
ngx_http_ai_gateway_bucket_zone_lock(ngx_http_ai_gateway_bucket_zone_t *zone)
{
    ngx_shmtx_lock(&zone->shpool->mutex);
}


static ngx_inline void
ngx_http_ai_gateway_bucket_zone_unlock(
    ngx_http_ai_gateway_bucket_zone_t *zone)
{
    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* bucket_tree.c */

/* the bucket of key, or NULL if the key has none; marks it recently used */
ngx_http_ai_gateway_bucket_node_t *ngx_http_ai_gateway_bucket_zone_lookup(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key);

/* the result of taking cost now; node NULL is a new, full bucket */
void ngx_http_ai_gateway_bucket_zone_check(
    ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_node_t *node, uint64_t cost, uint64_t now,
    agw_bucket_result_t *res);

/*
 * lock, find the bucket, check and, if allowed and cost > 0, take, unlock:
 * all that a request with a single shared-memory zone needs; 1 if taken
 */
ngx_uint_t ngx_http_ai_gateway_bucket_zone_charge(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, uint64_t cost,
    uint64_t now, ngx_log_t *log, agw_bucket_result_t *res);

/*
 * store what zone_check() found allowed, creating the bucket if node is
 * NULL; the lock must have been held since the check
 */
ngx_int_t ngx_http_ai_gateway_bucket_zone_commit(
    ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_node_t *node, u_char *key,
    agw_bucket_result_t *res, uint64_t now, ngx_log_t *log);

/* give back cost taken earlier; a bucket forgotten since is full anyway */
void ngx_http_ai_gateway_bucket_zone_refund(
    ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_node_t *node, uint64_t cost, uint64_t now);

/* settle a token zone's reservation on the real use, as agw_bucket_settle */
void ngx_http_ai_gateway_bucket_zone_settle(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, uint64_t reserved,
    uint64_t actual, uint64_t now, ngx_log_t *log);

/* lease=: Redis refused key: its bucket, for a lease time */
void ngx_http_ai_gateway_bucket_zone_refused(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, agw_bucket_t *b,
    uint64_t now, ngx_log_t *log);

/* remember level for key (a Redis bucket as Redis reported it) */
void ngx_http_ai_gateway_bucket_zone_track(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, uint64_t level,
    uint64_t now, uint64_t lease, ngx_log_t *log);


/* bucket_redis.c */

/*
 * Charge the batch's redis zones that no lease decided in one script call:
 * NGX_AGAIN when sent (the reply fills their res and calls the batch's
 * done handler); NGX_OK when Redis cannot be used now and res already
 * says what batch->fail makes of that; NGX_ERROR
 */
ngx_int_t ngx_http_ai_gateway_bucket_redis_check(
    ngx_http_ai_gateway_bucket_batch_t *batch);

/* <prefix>rl:<zone>:<hex>, with the prefix and zone names nginx accepts */
#define NGX_HTTP_AI_GATEWAY_BUCKET_REDIS_KEY_MAX  512

/*
 * a bucket's Redis key: {<prefix>rl}:<zone>:<hex> with a cluster (all of a
 * script call's keys in one slot), <prefix>rl:<zone>:<hex> without
 */
size_t ngx_http_ai_gateway_bucket_redis_key_len(
    ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone);
u_char *ngx_http_ai_gateway_bucket_redis_key(u_char *p,
    ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key);


/* bucket_redis_settle.c */

/* the settle script's SHA1, once (from bucket_redis_init_conf) */
void ngx_http_ai_gateway_bucket_redis_settle_init(void);

/* settle a redis token zone's reservation on the answer's use */
void ngx_http_ai_gateway_bucket_redis_settle(ngx_http_request_t *r,
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t used, uint64_t now);

/* give a Redis bucket units back (or take them, negative): fire and forget */
void ngx_http_ai_gateway_bucket_redis_move(
    ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, int64_t units);


/* bucket_lease.c */

/*
 * lease=: take cost from this nginx's lease of the key's Redis tokens (1,
 * st->res filled), or refuse it while Redis lately refused the key (2),
 * else (0) prepare to ask Redis for a new lease
 */
ngx_uint_t ngx_http_ai_gateway_bucket_lease_take(
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t now);
/* an unsent giveback (st->giveback) back into the key's node, ended */
void ngx_http_ai_gateway_bucket_lease_restore(
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t now);


#endif /* _NGX_HTTP_AI_GATEWAY_BUCKET_NODE_H_INCLUDED_ */
