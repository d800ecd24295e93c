/*
 * The dummy connection that the module's own events point to (see
 * ngx_http_ai_gateway_event.h).
 */

#include "base/ngx_http_ai_gateway_event.h"


static ngx_connection_t  ngx_http_ai_gateway_event_ident;


void
ngx_http_ai_gateway_event_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_log_t *log)
{
    ngx_http_ai_gateway_event_ident.fd = (ngx_socket_t) -1;

    ev->handler = handler;
    ev->data = &ngx_http_ai_gateway_event_ident;
    ev->log = log;
}
