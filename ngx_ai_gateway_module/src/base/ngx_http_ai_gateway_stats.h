/*
 * Counters that /cachez reports, kept in shared memory so that every worker
 * adds to the same figures and they survive "nginx -s reload".
 *
 * Each cache and limit zone keeps its own counter block inside its own zone;
 * what belongs to no zone (start time, the Redis connection, the Redis cache)
 * lives in one small module-wide zone, "ai_gateway_stats".  Counters are
 * ngx_atomic_t bumped with ngx_atomic_fetch_add(), so /cachez reads them
 * without taking a lock, as stub_status does.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_STATS_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_STATS_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"


typedef struct {
    ngx_atomic_t                       hits;
    ngx_atomic_t                       misses;
    ngx_atomic_t                       bypasses;
    ngx_atomic_t                       stores;
    ngx_atomic_t                       evictions;
    ngx_atomic_t                       expired;
    ngx_atomic_t                       errors;
    ngx_atomic_t                       too_large;  /* over max_entry_size */
    ngx_atomic_t                       entries;    /* gauge */
    ngx_atomic_t                       bytes_used; /* gauge, bytes */
    ngx_atomic_t                       tokens_saved; /* usage.total_tokens
                                                       of answers HITs
                                                       replayed */
    ngx_atomic_t                       near_hits;  /* of hits: near zone */
    ngx_atomic_t                       coalesced;  /* answered from another
                                                      request's flight */
    ngx_atomic_t                       stale;      /* expired, served on an
                                                      upstream failure */
} ngx_http_ai_gateway_cache_stats_t;


typedef struct {
    ngx_atomic_t                       passed;
    ngx_atomic_t                       rejected;
    ngx_atomic_t                       keys;       /* gauge */
    /* token zones, in tokens (SPEC 7.1); money zones, micro-dollars */
    ngx_atomic_t                       reserved;   /* taken at admission */
    ngx_atomic_t                       settled;    /* the answers' use */
    ngx_atomic_t                       returned;   /* reserved, unused */
    ngx_atomic_t                       overrun;    /* used beyond reserved */
    ngx_atomic_t                       unpriced;   /* money zones: requests
                                                      of a model without a
                                                      price (SPEC 8.4) */
} ngx_http_ai_gateway_limit_stats_t;


/*
 * A cache or limit zone as /cachez sees it: the conf-time description plus
 * a pointer to its counters, set when the zone's shared memory is
 * initialized (or taken over from the previous cycle on reload).
 */
typedef struct {
    ngx_str_t                          name;
    ngx_str_t                          backend;        /* "shm" or "redis" */
    size_t                             bytes_capacity;
    ngx_http_ai_gateway_cache_stats_t *stats;
} ngx_http_ai_gateway_cache_ref_t;


typedef struct {
    ngx_str_t                          name;
    ngx_str_t                          backend;        /* "shm" or "redis" */
    ngx_str_t                          unit;           /* "requests",
                                                          "tokens", "usd" */
    ngx_http_ai_gateway_limit_stats_t *stats;
} ngx_http_ai_gateway_limit_ref_t;


/*
 * Which workers hold a live Redis connection: a slot per worker number
 * (modulo, past 256 workers) with the worker's pid while it is connected,
 * 0 otherwise.  A count would drift when a worker dies with its connection
 * open (SIGKILL, a crash); a slot is only believed while its pid lives,
 * and the worker started in the dead one's place takes it over.
 */
#define NGX_HTTP_AI_GATEWAY_REDIS_SLOTS  256


/* the module-wide block in the "ai_gateway_stats" zone */
typedef struct {
    time_t                             started;    /* unix seconds */
    ngx_http_ai_gateway_cache_stats_t  redis_cache;
    ngx_atomic_t                       redis_errors;
    ngx_atomic_t                       redis_timeouts;
    ngx_atomic_t                       redis_workers[
                                           NGX_HTTP_AI_GATEWAY_REDIS_SLOTS];
} ngx_http_ai_gateway_shared_stats_t;


ngx_int_t ngx_http_ai_gateway_stats_zone_add(ngx_conf_t *cf);
ngx_http_ai_gateway_shared_stats_t *ngx_http_ai_gateway_shared_stats(
    ngx_http_ai_gateway_main_conf_t *amcf);

/* this worker's Redis connection is up / down */
void ngx_http_ai_gateway_stats_redis_up(
    ngx_http_ai_gateway_shared_stats_t *stats);
void ngx_http_ai_gateway_stats_redis_down(
    ngx_http_ai_gateway_shared_stats_t *stats);
/* a worker that died connected in this worker's slot no longer counts */
void ngx_http_ai_gateway_stats_redis_forget_dead(
    ngx_http_ai_gateway_shared_stats_t *stats);
/* at least one living worker holds a live Redis connection */
ngx_uint_t ngx_http_ai_gateway_stats_redis_connected(
    ngx_http_ai_gateway_shared_stats_t *stats);


#define ngx_http_ai_gateway_count(counter, n)                                  \
    (void) ngx_atomic_fetch_add(&(counter), (ngx_atomic_int_t) (n))


#endif /* _NGX_HTTP_AI_GATEWAY_STATS_H_INCLUDED_ */
