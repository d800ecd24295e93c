/*
 * SCAN over the whole keyspace (ngx_http_ai_gateway_redis.h).  A Redis
 * Cluster's keys are spread over its masters and SCAN is a command of one
 * node (it names no key, so it cannot be routed): each master is asked in
 * turn, each to the end of its own cursor.  The masters are those the map
 * names when the scan starts, held by their ids, so a node that leaves the
 * map during the scan ends it with an error rather than skipping its keys
 * silently.  A single Redis is its one master.
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"
#include "agw_slot.h"


static void ngx_http_ai_gateway_redis_scanned(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data);


/* the masters of the map (their ids), or the one server; 0: not known */
static ngx_uint_t
ngx_http_ai_gateway_redis_masters(ngx_uint_t *ids, ngx_uint_t max)
{
    ngx_uint_t                           s, n, index;
    ngx_http_ai_gateway_redis_worker_t  *w;
    u_char                               seen[
                                      NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES];

    w = &ngx_http_ai_gateway_redis_worker;

    if (w->nodes == NULL) {
        return 0;
    }

    if (!w->cluster) {
        ids[0] = w->nodes[0].id;
        return 1;
    }

    if (!w->mapped) {
        return 0;
    }

    ngx_memzero(seen, sizeof(seen));
    n = 0;

    for (s = 0; s < AGW_SLOTS; s++) {
        index = w->slots[s];

        if (index == NGX_HTTP_AI_GATEWAY_REDIS_NO_NODE || seen[index]) {
            continue;
        }

        seen[index] = 1;

        if (n == max) {
            return 0;
        }

        ids[n++] = w->nodes[index].id;
    }

    return n;
}


ngx_int_t
ngx_http_ai_gateway_redis_scan_start(ngx_http_ai_gateway_redis_scan_t *scan)
{
    scan->nnodes = ngx_http_ai_gateway_redis_masters(scan->nodes,
                                      NGX_HTTP_AI_GATEWAY_REDIS_SCAN_NODES);
    scan->current = 0;
    scan->cursor_len = 0;
    scan->done = 0;

    if (scan->nnodes == 0) {
        ngx_log_error(NGX_LOG_INFO, ngx_http_ai_gateway_redis_worker.log, 0,
                      "redis: no scan: the cluster's map is not known yet");
        return NGX_ERROR;
    }

    return ngx_http_ai_gateway_redis_scan_next(scan);
}


ngx_int_t
ngx_http_ai_gateway_redis_scan_next(ngx_http_ai_gateway_redis_scan_t *scan)
{
    size_t                               len[6];
    const char                          *argv[6];
    ngx_http_ai_gateway_redis_cmd_t     *cmd;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_argv_t     one;

    if (scan->done || scan->current >= scan->nnodes) {
        return NGX_ERROR;
    }

    node = ngx_http_ai_gateway_redis_node_by_id(scan->nodes[scan->current]);

    if (node == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_http_ai_gateway_redis_worker.log, 0,
                      "redis: scan stopped: a node left the cluster's map");
        return NGX_ERROR;
    }

    if (scan->cursor_len == 0) {
        scan->cursor[0] = '0';
        scan->cursor_len = 1;
    }

    argv[0] = "SCAN";
    len[0] = 4;
    argv[1] = (const char *) scan->cursor;
    len[1] = scan->cursor_len;
    argv[2] = "MATCH";
    len[2] = 5;
    argv[3] = (const char *) scan->pattern.data;
    len[3] = scan->pattern.len;
    argv[4] = "COUNT";
    len[4] = 5;
    argv[5] = (const char *) scan->count.data;
    len[5] = scan->count.len;

    one.argc = 6;
    one.argv = argv;
    one.argvlen = len;

    cmd = ngx_http_ai_gateway_redis_alloc(0);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    /* to this node, whatever its slots: SCAN names no key */
    if (ngx_http_ai_gateway_redis_start(cmd, node, NULL, 0, scan->pool,
                                        ngx_http_ai_gateway_redis_scanned,
                                        scan, 1, &one, 0)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_http_ai_gateway_redis_scanned(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_redis_scan_t *scan = data;

    size_t       i;
    redisReply  *cursor, *keys;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len == 0
        || reply->element[0]->len > NGX_INT64_LEN
        || reply->element[1]->type != REDIS_REPLY_ARRAY)
    {
        scan->handler(scan, NULL, NGX_HTTP_AI_GATEWAY_REDIS_ERROR);
        return;
    }

    cursor = reply->element[0];
    keys = reply->element[1];

    for (i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING) {
            scan->handler(scan, NULL, NGX_HTTP_AI_GATEWAY_REDIS_ERROR);
            return;
        }
    }

    if (cursor->len == 1 && cursor->str[0] == '0') {
        /* this node is done: the next one, from its start */
        scan->cursor_len = 0;

        if (++scan->current == scan->nnodes) {
            scan->done = 1;
        }

    } else {
        scan->cursor_len = cursor->len;
        ngx_memcpy(scan->cursor, cursor->str, cursor->len);
    }

    scan->handler(scan, keys, NGX_HTTP_AI_GATEWAY_REDIS_OK);
}
