/*
 * Redis Cluster: the nodes and the slot map.  With "cluster" the address
 * is a seed: once it answers, CLUSTER SLOTS tells which node owns which of
 * the 16384 slots, and each node gets its own connection (one per worker,
 * all on the same loop).  A command goes to the owner of its key's slot
 * (the CRC16 of the key, or of its {hash tag}: lib/agw_slot.c), to the
 * seed while the map is not known.  Its command block is kept, so that a
 * MOVED answer (the slot moved: the map is corrected at once and read
 * again) or an ASK answer (the slot is being migrated: ASKING first, the
 * map is left alone) sends it again to the node named, up to
 * NGX_HTTP_AI_GATEWAY_REDIS_REDIRECTS times.  Inside MULTI/EXEC the
 * redirection comes as the answer of a queued command and EXEC answers
 * EXECABORT: the whole block is sent again.
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"
#include "agw_slot.h"


/*
 * The node at host:port (an address: a cluster names its nodes by
 * address), added and connected if new; NULL if it cannot be
 */
ngx_http_ai_gateway_redis_node_t *
ngx_http_ai_gateway_redis_node_get(u_char *host, size_t len, in_port_t port)
{
    u_char                               buf[NGX_SOCKADDR_STRLEN + 1];
    ngx_uint_t                           i;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;
#if (NGX_HAVE_INET6)
    u_char                               addr6[16];
#endif

    w = &ngx_http_ai_gateway_redis_worker;

    if (len == 0 || len > NGX_SOCKADDR_STRLEN || port == 0) {
        return NULL;
    }

    ngx_memcpy(buf, host, len);
    buf[len] = '\0';

    for (i = 0; i < w->nnodes; i++) {
        node = &w->nodes[i];

        if (node->port == port
            && ngx_strcmp(node->addr, buf) == 0)
        {
            return node;
        }
    }

    /* a host name would need a blocking resolve: addresses only */
    if (ngx_inet_addr(buf, len) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_inet6_addr(buf, len, addr6) != NGX_OK
#endif
       )
    {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "redis \"%V\": node \"%s\" is not an address",
                      &w->conf->name, buf);
        return NULL;
    }

    if (w->nnodes == NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "redis \"%V\": more than %d cluster nodes",
                      &w->conf->name, NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES);
        return NULL;
    }

    node = &w->nodes[w->nnodes];

    node->name.data = ngx_pnalloc(ngx_cycle->pool,
                                  len + sizeof(":65535") - 1);
    if (node->name.data == NULL) {
        return NULL;
    }

    node->name.len = ngx_sprintf(node->name.data, "%s:%d", buf, (int) port)
                     - node->name.data;

    ngx_memcpy(node->addr, buf, len + 1);
    node->port = port;

    ngx_http_ai_gateway_redis_node_init(node, w->nnodes, w->log);

    w->nnodes++;

    ngx_http_ai_gateway_redis_connect(node);

    return node;
}


/* the node that owns a key; the seed while the slots are not known */
ngx_http_ai_gateway_redis_node_t *
ngx_http_ai_gateway_redis_route(const char *key, size_t len)
{
    ngx_uint_t                           n;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (!w->cluster || key == NULL) {
        return &w->nodes[0];
    }

    n = w->slots[agw_cluster_slot(key, len)];

    if (n == NGX_HTTP_AI_GATEWAY_REDIS_NO_NODE) {
        return &w->nodes[0];
    }

    return &w->nodes[n];
}


/* "MOVED 3999 127.0.0.1:6381", "ASK 3999 127.0.0.1:6381" */
ngx_uint_t
ngx_http_ai_gateway_redis_redirection(redisReply *reply, ngx_uint_t *slot,
    ngx_http_ai_gateway_redis_node_t **target)
{
    u_char      *p, *last, *colon, *sp;
    ngx_int_t    n, port;
    ngx_uint_t   kind;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return 0;
    }

    p = (u_char *) reply->str;
    last = p + reply->len;

    if (reply->len > 6 && ngx_strncmp(p, "MOVED ", 6) == 0) {
        kind = NGX_HTTP_AI_GATEWAY_REDIS_MOVED;
        p += 6;

    } else if (reply->len > 4 && ngx_strncmp(p, "ASK ", 4) == 0) {
        kind = NGX_HTTP_AI_GATEWAY_REDIS_ASK;
        p += 4;

    } else {
        return 0;
    }

    sp = ngx_strlchr(p, last, ' ');
    if (sp == NULL) {
        return 0;
    }

    n = ngx_atoi(p, sp - p);
    if (n == NGX_ERROR || n >= AGW_SLOTS) {
        return 0;
    }

    p = sp + 1;

    /* the last ':' ends the address: an IPv6 one has more */
    for (colon = last - 1; colon > p && *colon != ':'; colon--) {
        /* void */
    }

    if (colon <= p) {
        return 0;
    }

    port = ngx_atoi(colon + 1, last - colon - 1);
    if (port == NGX_ERROR || port == 0 || port > 65535) {
        return 0;
    }

    *target = ngx_http_ai_gateway_redis_node_get(p, colon - p,
                                                 (in_port_t) port);
    if (*target == NULL) {
        return 0;
    }

    *slot = n;

    return kind;
}


/* the answer to a command queued inside MULTI: a redirection, perhaps */
void
ngx_http_ai_gateway_redis_queued(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_http_ai_gateway_redis_cmd_t  *cmd = privdata;

    ngx_uint_t                         kind, slot;
    ngx_http_ai_gateway_redis_node_t  *target;

    /* NULL: the context is being freed, cmd may be gone already */
    if (r == NULL || cmd->redirect) {
        return;
    }

    kind = ngx_http_ai_gateway_redis_redirection(r, &slot, &target);

    if (kind) {
        cmd->redirect = kind;
        cmd->slot = slot;
        cmd->target = target;
    }
}


/* send cmd's block again where a MOVED or ASK points; NGX_OK if sent */
ngx_int_t
ngx_http_ai_gateway_redis_follow(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_uint_t kind, ngx_uint_t slot, ngx_http_ai_gateway_redis_node_t *target)
{
    ngx_int_t                            rc;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (cmd->block == NULL
        || ++cmd->redirects > NGX_HTTP_AI_GATEWAY_REDIS_REDIRECTS)
    {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis %s slot:%ui to \"%V\"",
                   kind == NGX_HTTP_AI_GATEWAY_REDIS_MOVED ? "MOVED" : "ASK",
                   slot, &target->name);

    if (kind == NGX_HTTP_AI_GATEWAY_REDIS_MOVED) {
        /* this slot at once, the others with the next map */
        w->slots[slot] = (u_char) target->index;
        ngx_http_ai_gateway_redis_refresh_later(0);
    }

    if (!ngx_http_ai_gateway_redis_usable(target)) {
        return NGX_ERROR;
    }

    cmd->redirect = 0;
    cmd->target = NULL;

    rc = ngx_http_ai_gateway_redis_queue(target, cmd, cmd->nblock, cmd->block,
                                         cmd->multi,
                                         kind == NGX_HTTP_AI_GATEWAY_REDIS_ASK);
    if (rc == NGX_OK) {
        cmd->node = target;
        return NGX_OK;
    }

    if (rc == NGX_DONE) {
        /* DISCARD's reply frees it: nobody is told twice */
        ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                         NGX_HTTP_AI_GATEWAY_REDIS_ERROR);
        return NGX_DONE;
    }

    return NGX_ERROR;
}


/* a cluster keeps a copy of the commands, to send them again elsewhere */
ngx_int_t
ngx_http_ai_gateway_redis_keep(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_uint_t n, ngx_http_ai_gateway_redis_argv_t *cmds)
{
    u_char                            *p;
    size_t                             size, *lens;
    ngx_uint_t                         i;
    ngx_int_t                          j;
    const char                       **args;
    ngx_http_ai_gateway_redis_argv_t  *block;

    size = n * sizeof(ngx_http_ai_gateway_redis_argv_t);

    for (i = 0; i < n; i++) {
        size += cmds[i].argc * (sizeof(char *) + sizeof(size_t));

        for (j = 0; j < cmds[i].argc; j++) {
            size += cmds[i].argvlen[j];
        }
    }

    block = ngx_alloc(size, ngx_http_ai_gateway_redis_worker.log);
    if (block == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) (block + n);

    for (i = 0; i < n; i++) {
        args = (const char **) p;
        lens = (size_t *) (args + cmds[i].argc);
        p = (u_char *) (lens + cmds[i].argc);

        for (j = 0; j < cmds[i].argc; j++) {
            args[j] = (const char *) p;
            lens[j] = cmds[i].argvlen[j];
            p = ngx_cpymem(p, cmds[i].argv[j], cmds[i].argvlen[j]);
        }

        block[i].argc = cmds[i].argc;
        block[i].argv = args;
        block[i].argvlen = lens;
    }

    cmd->block = block;
    cmd->nblock = n;
    cmd->allocated = 1;

    return NGX_OK;
}


/* the cluster's map: CLUSTER SLOTS */

static void
ngx_http_ai_gateway_redis_slots(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data)
{
    ngx_http_ai_gateway_redis_node_t *asked = data;

    size_t                               len;
    u_char                              *host;
    ngx_uint_t                           i, s, n;
    redisReply                          *range, *addr;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;
    w->refreshing = 0;

    if (status != NGX_HTTP_AI_GATEWAY_REDIS_OK
        || reply->type != REDIS_REPLY_ARRAY)
    {
        ngx_http_ai_gateway_redis_refresh_later(
                                           NGX_HTTP_AI_GATEWAY_REDIS_REFRESH);
        return;
    }

    n = 0;

    for (i = 0; i < reply->elements; i++) {
        range = reply->element[i];

        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
            || range->element[0]->type != REDIS_REPLY_INTEGER
            || range->element[1]->type != REDIS_REPLY_INTEGER
            || range->element[2]->type != REDIS_REPLY_ARRAY
            || range->element[2]->elements < 2
            || range->element[0]->integer < 0
            || range->element[1]->integer >= AGW_SLOTS
            || range->element[0]->integer > range->element[1]->integer)
        {
            continue;
        }

        addr = range->element[2];

        if (addr->element[0]->type != REDIS_REPLY_STRING
            || addr->element[1]->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }

        /* an empty address is the node asked's own */
        host = (u_char *) addr->element[0]->str;
        len = addr->element[0]->len;

        if (len == 0) {
            host = asked->addr;
            len = ngx_strlen(asked->addr);
        }

        node = ngx_http_ai_gateway_redis_node_get(host, len,
                                       (in_port_t) addr->element[1]->integer);
        if (node == NULL) {
            continue;
        }

        for (s = range->element[0]->integer;
             s <= (ngx_uint_t) range->element[1]->integer;
             s++)
        {
            w->slots[s] = (u_char) node->index;
        }

        n++;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis cluster: %ui ranges, %ui nodes",
                   n, w->nnodes);

    if (n) {
        w->mapped = 1;
    }
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
        return;
    }

    cmd = ngx_calloc(sizeof(ngx_http_ai_gateway_redis_cmd_t), w->log);
    if (cmd == NULL) {
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
        != NULL)
    {
        w->refreshing = 1;
    }
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
