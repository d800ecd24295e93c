/*
 * The module's own content handlers: /cachez (cachez.c) and
 * ai_gateway_cache_purge (cache_purge.c).
 */

#ifndef _NGX_HTTP_AI_GATEWAY_HANDLERS_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_HANDLERS_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"


char *ngx_http_ai_gateway_cachez(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_ai_gateway_cachez_handler(ngx_http_request_t *r);

char *ngx_http_ai_gateway_cache_purge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_AI_GATEWAY_HANDLERS_H_INCLUDED_ */
