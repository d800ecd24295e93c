/*
 * Events the module arms outside a connection (timers, posted events).
 * nginx's event debug lines print the fd of the connection an event's data
 * points to (ngx_event_ident(ev->data)): a NULL data crashed every worker
 * under "error_log ... debug", and an owner struct printed garbage.  Their
 * data is a dummy connection with fd -1, as nginx's cache manager gives its
 * events, and their handler finds its owner from the event's place in it.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_EVENT_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_EVENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


#define ngx_http_ai_gateway_event_owner(ev, type, field)                      \
    ((type *) ((u_char *) (ev) - offsetof(type, field)))

void ngx_http_ai_gateway_event_init(ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_log_t *log);


#endif /* _NGX_HTTP_AI_GATEWAY_EVENT_H_INCLUDED_ */
