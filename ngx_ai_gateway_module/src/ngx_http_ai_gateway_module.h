/*
 * ngx_http_ai_gateway_module: shared types of the gateway module.
 *
 * One nginx module (type HTTP_AUX_FILTER) split into files by concern:
 * this file and ngx_http_ai_gateway_module.c hold the configuration and
 * the module definition; stats.c the shared counters; cachez.c the
 * /cachez handler.  Pure logic lives in ../lib without nginx headers.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_MODULE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_ai_gateway_stats.h"


typedef struct ngx_http_ai_gateway_redis_conf_s
    ngx_http_ai_gateway_redis_conf_t;


typedef struct {
    ngx_shm_zone_t                      *stats_zone;
    ngx_array_t                          caches;  /* cache_ref_t * */
    ngx_array_t                          limits;  /* limit_ref_t * */
    ngx_flag_t                           redis_configured;
    ngx_http_ai_gateway_redis_conf_t    *redis;   /* ai_gateway_redis */
} ngx_http_ai_gateway_main_conf_t;


extern ngx_module_t  ngx_http_ai_gateway_module;
extern ngx_module_t  ngx_http_ai_gateway_limit_module;
extern ngx_module_t  ngx_http_ai_gateway_cache_module;


/*
 * The steps of the module's PRECONTENT phase handler, run in this order on
 * every request (and again from the top when a suspended step resumes the
 * phases, so each step must notice it already ran):
 *
 *   limit_precheck where the cache would read a request body: refuse now,
 *                  unread, a request that no bucket could pass as a MISS
 *   cache_lookup   decide BYPASS, read and digest the body, look the key up
 *   limit_check    charge (or, for a HIT, just read) the token buckets
 *   cache_serve    answer a HIT from the store
 *
 * A step returns NGX_DECLINED to go on; NGX_DONE when it is waiting (it will
 * call ngx_http_core_run_phases() itself) or has already finalized the
 * request; or an HTTP status / NGX_ERROR for nginx to finalize.
 */
ngx_int_t ngx_http_ai_gateway_cache_lookup(ngx_http_request_t *r);
ngx_int_t ngx_http_ai_gateway_limit_precheck(ngx_http_request_t *r);
ngx_int_t ngx_http_ai_gateway_limit_check(ngx_http_request_t *r);
ngx_int_t ngx_http_ai_gateway_cache_serve(ngx_http_request_t *r);

/* will this request be answered from the cache?  (the limiter asks) */
ngx_flag_t ngx_http_ai_gateway_cache_is_hit(ngx_http_request_t *r);


ngx_http_ai_gateway_shared_stats_t *ngx_http_ai_gateway_shared_stats(
    ngx_http_ai_gateway_main_conf_t *amcf);
/* configuration helpers shared by the limit and cache zones */
ngx_int_t ngx_http_ai_gateway_parse_zone(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *name, ssize_t *size);
ngx_int_t ngx_http_ai_gateway_add_variables(ngx_conf_t *cf,
    ngx_http_variable_t *vars);


/*
 * Events the module arms outside a connection (timers, posted events).
 * nginx's event debug lines print the fd of the connection an event's data
 * points to (ngx_event_ident(ev->data)): a NULL data crashed every worker
 * under "error_log ... debug", and an owner struct printed garbage.  Their
 * data is a dummy connection with fd -1, as nginx's cache manager gives its
 * events, and their handler finds its owner from the event's place in it.
 */
#define ngx_http_ai_gateway_event_owner(ev, type, field)                      \
    ((type *) ((u_char *) (ev) - offsetof(type, field)))

void ngx_http_ai_gateway_event_init(ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_log_t *log);

char *ngx_http_ai_gateway_cachez(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_ai_gateway_cachez_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_AI_GATEWAY_MODULE_H_INCLUDED_ */
