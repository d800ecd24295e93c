/*
 * Redis Cluster: the slot map.  CLUSTER SLOTS is asked of a node of the
 * map (the seed first, any that is ready), once the seed answers, after a
 * MOVED (at once), after a node failed (a replica may have taken over) and
 * when a command was redirected to an address the map does not know
 * (redis_cluster.c).  Each answer makes the map anew: the slots it does
 * not name are nobody's (the seed's, until a MOVED says), and the nodes
 * it names are the map's.
 *
 * Nodes the answer no longer names (a failover, a node moved or removed)
 * leave: no new command goes to them, their connection is closed once the
 * commands in flight on it are answered (or their time is up), and their
 * place is taken by the next node (ngx_http_ai_gateway_redis_retire()).
 * The seed stays, as configured.  So a long-lived worker follows a
 * cluster whose addresses change, within NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES
 * nodes at a time.
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"
#include "agw_slot.h"


/*
 * A node for an address the map names (never for one a reply names):
 * the place of a node that left and is closed, or a new one, connected
 */
static ngx_http_ai_gateway_redis_node_t *
ngx_http_ai_gateway_redis_node_add(u_char *addr, in_port_t port)
{
    size_t                               len;
    ngx_uint_t                           i;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    node = NULL;

    for (i = 1; i < w->nnodes; i++) {
        if (w->nodes[i].retired && w->nodes[i].closing == NULL) {
            node = &w->nodes[i];
            break;
        }
    }

    if (node == NULL) {
        if (w->nnodes == NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES) {
            ngx_log_error(NGX_LOG_ERR, w->log, 0,
                          "redis \"%V\": more than %d cluster nodes",
                          &w->conf->name,
                          NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES);
            return NULL;
        }

        i = w->nnodes;
        node = &w->nodes[i];
    }

    len = ngx_strlen(addr);

    /* a place's name is allocated once, for any address */
    if (node->name.data == NULL) {
        node->name.data = ngx_pnalloc(ngx_cycle->pool, NGX_SOCKADDR_STRLEN
                                                       + sizeof(":65535"));
        if (node->name.data == NULL) {
            return NULL;
        }
    }

    /* nothing of the one before: its timers, counters and context are
     * gone with its close (ngx_http_ai_gateway_redis_retire()) */
    node->name.len = ngx_sprintf(node->name.data, "%s:%d", addr, (int) port)
                     - node->name.data;

    ngx_memcpy(node->addr, addr, len + 1);
    node->port = port;
    node->id = ++w->ids;
    node->ac = NULL;
    node->closing = NULL;
    node->failures = 0;
    node->backoff = 0;
    node->tcp = 0;
    node->ready = 0;
    node->breaker = 0;
    node->retired = 0;
    node->writes_sent = 0;
    node->writes_answered = 0;
    node->writes_late = 0;

    ngx_http_ai_gateway_redis_node_init(node, i, w->log);

    if (i == w->nnodes) {
        w->nnodes++;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis cluster node \"%V\" added", &node->name);

    ngx_http_ai_gateway_redis_connect(node);

    return node;
}


/* the cluster's map: CLUSTER SLOTS */

/* the master of a range of an answer: its address, NUL-ended, and port */
static ngx_int_t
ngx_http_ai_gateway_redis_range(redisReply *range,
    ngx_http_ai_gateway_redis_node_t *asked, u_char *addr, in_port_t *port)
{
    u_char      *host;
    size_t       len;
    redisReply  *master;

    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
        || range->element[0]->type != REDIS_REPLY_INTEGER
        || range->element[1]->type != REDIS_REPLY_INTEGER
        || range->element[2]->type != REDIS_REPLY_ARRAY
        || range->element[2]->elements < 2
        || range->element[0]->integer < 0
        || range->element[1]->integer >= AGW_SLOTS
        || range->element[0]->integer > range->element[1]->integer)
    {
        return NGX_ERROR;
    }

    master = range->element[2];

    if (master->element[0]->type != REDIS_REPLY_STRING
        || master->element[1]->type != REDIS_REPLY_INTEGER
        || master->element[1]->integer <= 0
        || master->element[1]->integer > 65535)
    {
        return NGX_ERROR;
    }

    /* an empty address is the node asked's own */
    host = (u_char *) master->element[0]->str;
    len = master->element[0]->len;

    if (len == 0) {
        host = asked->addr;
        len = ngx_strlen(asked->addr);
    }

    if (ngx_http_ai_gateway_redis_address(host, len, addr) != NGX_OK) {
        return NGX_ERROR;
    }

    *port = (in_port_t) master->element[1]->integer;

    return NGX_OK;
}


static void
ngx_http_ai_gateway_redis_slots(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_redis_node_t *asked = data;

    u_char                               addr[NGX_SOCKADDR_STRLEN + 1];
    in_port_t                            port;
    ngx_uint_t                           i, s, n, pass;
    redisReply                          *range;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;
    w->refreshing = 0;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY)
    {
        ngx_http_ai_gateway_redis_refresh_later(
                                           NGX_HTTP_AI_GATEWAY_REDIS_REFRESH);
        ngx_http_ai_gateway_redis_mapped(0);
        return;
    }

    /*
     * Two passes: first the nodes the answer names that are known already,
     * so that those it no longer names leave (and make room) before new
     * ones are added in the second, which also fills the next map.
     */

    w->map++;
    n = 0;

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            if (n == 0) {
                /* nothing usable in it: keep the map we have */
                ngx_http_ai_gateway_redis_refresh_later(
                                           NGX_HTTP_AI_GATEWAY_REDIS_REFRESH);
                ngx_http_ai_gateway_redis_mapped(0);
                return;
            }

            for (i = 1; i < w->nnodes; i++) {
                node = &w->nodes[i];

                if (!node->retired && node->map != w->map) {
                    ngx_http_ai_gateway_redis_retire(node);
                }
            }

            ngx_memset(w->next, NGX_HTTP_AI_GATEWAY_REDIS_NO_NODE, AGW_SLOTS);
            n = 0;
        }

        for (i = 0; i < reply->elements; i++) {
            range = reply->element[i];

            if (ngx_http_ai_gateway_redis_range(range, asked, addr, &port)
                != NGX_OK)
            {
                continue;
            }

            node = ngx_http_ai_gateway_redis_node_find(addr, port);

            if (pass == 0) {
                if (node) {
                    node->map = w->map;
                }

                n++;
                continue;
            }

            if (node == NULL) {
                node = ngx_http_ai_gateway_redis_node_add(addr, port);
                if (node == NULL) {
                    continue;
                }

                node->map = w->map;
            }

            for (s = range->element[0]->integer;
                 s <= (ngx_uint_t) range->element[1]->integer;
                 s++)
            {
                w->next[s] = (u_char) node->index;
            }

            n++;
        }
    }

    ngx_memcpy(w->slots, w->next, AGW_SLOTS);

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis cluster: %ui ranges, %ui nodes",
                   n, w->nnodes);

    if (n) {
        w->mapped = 1;
    }

    ngx_http_ai_gateway_redis_mapped(n != 0);
}


void
ngx_http_ai_gateway_redis_refresh_handler(ngx_event_t *ev)
{
    size_t                               len[2];
    ngx_uint_t                           i;
    const char                          *argv[2];
    ngx_http_ai_gateway_redis_cmd_t     *cmd;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_argv_t     one;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (w->refreshing || ngx_http_ai_gateway_redis_stopping()) {
        return;
    }

    /* any node that answers knows the whole map: a ready one first */
    node = NULL;

    for (i = 0; i < w->nnodes; i++) {
        if (w->nodes[i].ready
            && ngx_http_ai_gateway_redis_usable(&w->nodes[i]))
        {
            node = &w->nodes[i];
            break;
        }
    }

    if (node == NULL) {
        /* the failing nodes' reconnects will ask again */
        ngx_http_ai_gateway_redis_mapped(0);
        return;
    }

    cmd = ngx_calloc(sizeof(ngx_http_ai_gateway_redis_cmd_t), w->log);
    if (cmd == NULL) {
        ngx_http_ai_gateway_redis_mapped(0);
        return;
    }

    argv[0] = "CLUSTER";
    len[0] = 7;
    argv[1] = "SLOTS";
    len[1] = 5;

    one.argc = 2;
    one.argv = argv;
    one.argvlen = len;

    if (ngx_http_ai_gateway_redis_start(cmd, node, NULL, 0, NULL,
                                        ngx_http_ai_gateway_redis_slots, node,
                                        1, &one, 0)
        == NULL)
    {
        ngx_http_ai_gateway_redis_mapped(0);
        return;
    }

    w->refreshing = 1;
    w->asked++;
}


void
ngx_http_ai_gateway_redis_refresh_later(ngx_msec_t delay)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (!w->cluster || w->refreshing || ngx_http_ai_gateway_redis_stopping())
    {
        return;
    }

    if (w->refresh.timer_set) {
        if (delay) {
            return;
        }

        ngx_del_timer(&w->refresh);
    }

    /* 0: at once, but never from inside a reply */
    ngx_add_timer(&w->refresh, delay ? delay : 1);
}
