/*
 * The breaker of each Redis node.  Failures (a lost or refused connection,
 * a command timeout) are counted per node; after
 * NGX_HTTP_AI_GATEWAY_REDIS_BREAKER_FAILURES in a row, or a failed
 * handshake, the node's breaker opens: its connection is dropped, commands
 * for it are refused at once, and a new connection is tried after a
 * back-off that doubles while it keeps failing.  Its PING answering closes
 * the breaker.  A failing cluster node also makes the map be read again (a
 * replica may have taken over).
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"


static void
ngx_http_ai_gateway_redis_schedule(ngx_http_ai_gateway_redis_node_t *node,
    ngx_msec_t delay)
{
    if (ngx_http_ai_gateway_redis_stopping()) {
        return;
    }

    ngx_add_timer(&node->reconnect, delay);
}


/* a failure: count it, open the breaker or plan a reconnect */
void
ngx_http_ai_gateway_redis_failed(ngx_http_ai_gateway_redis_node_t *node,
    ngx_uint_t now)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (node->retired) {
        /* it left the map: closing, never reconnected */
        return;
    }

    node->failures++;

    /* a cluster node that fails may have been replaced: read the map */
    ngx_http_ai_gateway_redis_refresh_later(NGX_HTTP_AI_GATEWAY_REDIS_REFRESH);

    if (now || node->breaker
        || node->failures >= NGX_HTTP_AI_GATEWAY_REDIS_BREAKER_FAILURES)
    {
        if (!node->breaker) {
            node->breaker = 1;
            node->backoff = NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MIN;

            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "redis \"%V\" is unavailable after %ui failures, "
                          "not used for %M ms",
                          &node->name, node->failures, node->backoff);

        } else {
            node->backoff = ngx_min(node->backoff * 2,
                                    NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MAX);
        }

        ngx_http_ai_gateway_redis_drop(node);
        ngx_http_ai_gateway_redis_schedule(node, node->backoff);
        return;
    }

    if (node->ac == NULL && !node->reconnect.timer_set) {
        ngx_http_ai_gateway_redis_schedule(node,
                                          NGX_HTTP_AI_GATEWAY_REDIS_RECONNECT);
    }
}


void
ngx_http_ai_gateway_redis_ready(ngx_http_ai_gateway_redis_node_t *node)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (node->connect.timer_set) {
        ngx_del_timer(&node->connect);
    }

    node->ready = 1;
    node->failures = 0;

    if (w->nready++ == 0) {
        ngx_http_ai_gateway_stats_redis_up(w->stats);
    }

    if (w->cluster && !w->mapped) {
        ngx_http_ai_gateway_redis_refresh_later(0);
    }

    if (node->breaker) {
        node->breaker = 0;
        node->backoff = 0;

        ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                      "redis \"%V\" is available again", &node->name);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis \"%V\" ready", &node->name);
}
