/*
 * The token-bucket limiter, shared between ngx_http_ai_gateway_limit.c
 * (directives, the request-time check, headers, variables) and
 * ngx_http_ai_gateway_limit_zone.c (the buckets in shared memory).
 *
 * The bucket arithmetic itself is lib/agw_bucket.c; the zone file only
 * finds, creates and evicts buckets, and the limit file decides what to do
 * with their answers.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_


#include "ngx_http_ai_gateway_module.h"

#include "agw_bucket.h"
#include "agw_sha256.h"


#define NGX_HTTP_AI_GATEWAY_LIMIT_SHM      0
#define NGX_HTTP_AI_GATEWAY_LIMIT_REDIS    1

/* bumped whenever the layout of the shared structures below changes */
#define NGX_HTTP_AI_GATEWAY_LIMIT_VERSION  1

#define NGX_HTTP_AI_GATEWAY_LIMIT_KEY_LEN  AGW_SHA256_DIGEST_LEN


/*
 * A bucket.  Like limit_req's node it overlays ngx_rbtree_node_t from its
 * "color" byte.  The key is stored as its SHA-256 digest, so every node has
 * the same size: freeing the least recently used node always makes room for
 * a new one, whatever the length of the key value.
 */
typedef struct {
    u_char                              color;
    u_char                              dummy;
    u_short                             pad;
    ngx_queue_t                         queue;
    agw_bucket_t                        bucket;
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
    ngx_http_complex_value_t            key;
    agw_bucket_conf_t                   bucket;

    /* backend "shm" */
    ngx_shm_zone_t                     *shm_zone;
    ngx_slab_pool_t                    *shpool;
    ngx_http_ai_gateway_limit_shctx_t  *sh;

    ngx_http_ai_gateway_limit_ref_t    *ref;      /* as /cachez sees it */
} ngx_http_ai_gateway_limit_zone_t;


ngx_int_t ngx_http_ai_gateway_limit_zone_init(ngx_shm_zone_t *shm_zone,
    void *data);

void ngx_http_ai_gateway_limit_zone_lock(
    ngx_http_ai_gateway_limit_zone_t *zone);
void ngx_http_ai_gateway_limit_zone_unlock(
    ngx_http_ai_gateway_limit_zone_t *zone);

/* the bucket of key, or NULL if the key has none; marks it recently used */
ngx_http_ai_gateway_limit_node_t *ngx_http_ai_gateway_limit_zone_lookup(
    ngx_http_ai_gateway_limit_zone_t *zone, u_char *key);

/* the result of taking cost now; node NULL is a new, full bucket */
void ngx_http_ai_gateway_limit_zone_check(
    ngx_http_ai_gateway_limit_zone_t *zone,
    ngx_http_ai_gateway_limit_node_t *node, uint64_t cost, uint64_t now,
    agw_bucket_result_t *res);

/* take cost now, creating the bucket if node is NULL */
ngx_int_t ngx_http_ai_gateway_limit_zone_take(
    ngx_http_ai_gateway_limit_zone_t *zone,
    ngx_http_ai_gateway_limit_node_t *node, u_char *key, uint64_t cost,
    uint64_t now, ngx_log_t *log);


#endif /* _NGX_HTTP_AI_GATEWAY_LIMIT_H_INCLUDED_ */
