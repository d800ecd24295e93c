/*
 * The configuration every layer shares: the main configuration of the
 * gateway's core module (defined in core/; its main configuration and its
 * request context are kept here, below every other folder), and the
 * helpers of the cache, limit and store directives.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_CONF_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * A function kept out of line: the rare work of a handler that every
 * request passes, so that the requests that skip it leave before that
 * work's frame is set up (the compiler would inline a static function
 * called once, and with it the saving of every register it uses)
 */
#if (defined __GNUC__)
#define NGX_HTTP_AI_GATEWAY_OUT_OF_LINE  __attribute__((noinline))
#else
#define NGX_HTTP_AI_GATEWAY_OUT_OF_LINE
#endif


/* ai_gateway_redis (redis/); only its pointer is kept here */
typedef struct ngx_http_ai_gateway_redis_conf_s
    ngx_http_ai_gateway_redis_conf_t;


typedef struct {
    ngx_shm_zone_t                      *stats_zone;
    ngx_array_t                          caches;  /* cache_ref_t * */
    ngx_array_t                          limits;  /* limit_ref_t * */
    ngx_flag_t                           redis_configured;
    ngx_http_ai_gateway_redis_conf_t    *redis;   /* ai_gateway_redis */
    ngx_flag_t                           body_facts; /* read the facts of
                                                        bodies nginx spools
                                                        (base/request.c) */
} ngx_http_ai_gateway_main_conf_t;


/* the core module's location configuration */
typedef struct {
    ngx_flag_t                           body;    /* ai_gateway_body */
} ngx_http_ai_gateway_loc_conf_t;


/* the core module: what ngx_http_conf_get_module_main_conf() is given */
extern ngx_module_t  ngx_http_ai_gateway_module;


void *ngx_http_ai_gateway_create_main_conf(ngx_conf_t *cf);
void *ngx_http_ai_gateway_create_loc_conf(ngx_conf_t *cf);
char *ngx_http_ai_gateway_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

/* "zone=NAME:SIZE" of ai_gateway_limit_zone and ai_gateway_cache_zone */
ngx_int_t ngx_http_ai_gateway_parse_zone(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *name, ssize_t *size);

ngx_int_t ngx_http_ai_gateway_add_variables(ngx_conf_t *cf,
    ngx_http_variable_t *vars);


#endif /* _NGX_HTTP_AI_GATEWAY_CONF_H_INCLUDED_ */
