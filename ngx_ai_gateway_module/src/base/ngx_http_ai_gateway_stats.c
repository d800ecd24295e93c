/*
 * The module-wide counter zone.  nginx's ngx_cycle.c reuses a shared zone
 * across a reload only when its tag and size match, so the size here is a
 * constant: the block is adopted by the new cycle and counters (and the
 * start time behind uptime_s) survive "nginx -s reload".  "nginx -t" also
 * runs init_zone, so it does nothing but set up memory.
 */

#include "base/ngx_http_ai_gateway_stats.h"


#define NGX_HTTP_AI_GATEWAY_STATS_ZONE_SIZE  (8 * ngx_pagesize)


static ngx_int_t ngx_http_ai_gateway_stats_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_str_t  ngx_http_ai_gateway_stats_zone_name =
    ngx_string("ai_gateway_stats");


ngx_int_t
ngx_http_ai_gateway_stats_zone_add(ngx_conf_t *cf)
{
    ngx_shm_zone_t                   *shm_zone;
    ngx_http_ai_gateway_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_ai_gateway_stats_zone_name,
                                     NGX_HTTP_AI_GATEWAY_STATS_ZONE_SIZE,
                                     &ngx_http_ai_gateway_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_ai_gateway_stats_init_zone;
    shm_zone->data = amcf;
    amcf->stats_zone = shm_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ai_gateway_stats_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t                     *shpool;
    ngx_http_ai_gateway_shared_stats_t  *stats;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data) {
        /* reload: the previous cycle's block lives on in the same zone */
        shm_zone->data = data;
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    stats = ngx_slab_calloc(shpool, sizeof(ngx_http_ai_gateway_shared_stats_t));
    if (stats == NULL) {
        return NGX_ERROR;
    }

    stats->started = ngx_time();

    shpool->data = stats;
    shm_zone->data = stats;

    return NGX_OK;
}


ngx_http_ai_gateway_shared_stats_t *
ngx_http_ai_gateway_shared_stats(ngx_http_ai_gateway_main_conf_t *amcf)
{
    return amcf->stats_zone->data;
}


static ngx_atomic_t *
ngx_http_ai_gateway_stats_redis_slot(ngx_http_ai_gateway_shared_stats_t *stats)
{
    return &stats->redis_workers[ngx_worker % NGX_HTTP_AI_GATEWAY_REDIS_SLOTS];
}


void
ngx_http_ai_gateway_stats_redis_up(ngx_http_ai_gateway_shared_stats_t *stats)
{
    *ngx_http_ai_gateway_stats_redis_slot(stats) = (ngx_atomic_uint_t) ngx_pid;
}


void
ngx_http_ai_gateway_stats_redis_down(ngx_http_ai_gateway_shared_stats_t *stats)
{
    /* unless a newer worker of the same number took the slot (reload) */

    (void) ngx_atomic_cmp_set(ngx_http_ai_gateway_stats_redis_slot(stats),
                              (ngx_atomic_uint_t) ngx_pid, 0);
}


/* the slot's worker is alive; if it is not, the slot is emptied */

static ngx_uint_t
ngx_http_ai_gateway_stats_redis_alive(ngx_atomic_t *slot)
{
    ngx_pid_t  pid;

    pid = (ngx_pid_t) *slot;

    if (pid == 0) {
        return 0;
    }

    if (kill(pid, 0) == 0 || ngx_errno == NGX_EPERM) {
        return 1;
    }

    (void) ngx_atomic_cmp_set(slot, (ngx_atomic_uint_t) pid, 0);

    return 0;
}


void
ngx_http_ai_gateway_stats_redis_forget_dead(
    ngx_http_ai_gateway_shared_stats_t *stats)
{
    (void) ngx_http_ai_gateway_stats_redis_alive(
                                   ngx_http_ai_gateway_stats_redis_slot(stats));
}


ngx_uint_t
ngx_http_ai_gateway_stats_redis_connected(
    ngx_http_ai_gateway_shared_stats_t *stats)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_AI_GATEWAY_REDIS_SLOTS; i++) {
        if (ngx_http_ai_gateway_stats_redis_alive(&stats->redis_workers[i])) {
            return 1;
        }
    }

    return 0;
}
