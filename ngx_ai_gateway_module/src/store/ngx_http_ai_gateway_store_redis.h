/*
 * The Redis store's own (store/ only): what store_redis.c (the entries,
 * lookup, save, the entries count) and store_redis_purge.c (purge) share.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_STORE_REDIS_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_STORE_REDIS_H_INCLUDED_


#include "base/ngx_http_ai_gateway_event.h"
#include "redis/ngx_http_ai_gateway_redis.h"
#include "store/ngx_http_ai_gateway_store.h"
#include "agw_entry.h"
#include "agw_key.h"


/* store_redis.c: the SCAN pattern of the cache's keys, and none other */
ngx_int_t ngx_http_ai_gateway_store_redis_pattern(ngx_pool_t *pool,
    ngx_http_ai_gateway_redis_conf_t *rcf, ngx_str_t *pattern);

/*
 * store_redis_save.c: the store's save(), and a save that says when Redis
 * took the entry (or did not): done is called once, later, with the
 * entry and its body's source as the save kept them (valid during the
 * call only)
 */
typedef void (*ngx_http_ai_gateway_store_saved_pt)(void *data, ngx_int_t rc,
    const agw_digest_t *digest, const agw_entry_t *entry,
    ngx_http_ai_gateway_source_t *src, time_t ttl);

ngx_int_t ngx_http_ai_gateway_store_redis_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl);
ngx_int_t ngx_http_ai_gateway_store_redis_save_then(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl, ngx_http_ai_gateway_store_saved_pt done, void *data);

/* store_redis_purge.c */
ngx_int_t ngx_http_ai_gateway_store_redis_purge(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_purge_by_e by,
    ngx_str_t *value, ngx_http_ai_gateway_purge_done_pt done);


#endif /* _NGX_HTTP_AI_GATEWAY_STORE_REDIS_H_INCLUDED_ */
