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
 *
 * Trust (SPEC 3.2: what comes back from Redis is untrusted).  A node, and
 * so a connection that sends AUTH with the password, is only ever made
 * for an address the map names: the seed, and the nodes of the answer to
 * CLUSTER SLOTS asked of a node already in the map.  A MOVED or ASK is a
 * reply like any other: one that names an address the map does not know
 * is never connected to on its word; the command waits (parked) while the
 * map is read again from a node of the map, and is followed only if the
 * new map names that address, else it fails (a MISS, the limiter's
 * redis_fail policy).
 *
 * The map itself, and the nodes that leave it: redis_cluster_map.c.
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"
#include "agw_slot.h"


static void ngx_http_ai_gateway_redis_park(
    ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_http_ai_gateway_redis_redirect_t *rd);


/* the node of the map at addr:port (addr NUL-ended), or NULL */
ngx_http_ai_gateway_redis_node_t *
ngx_http_ai_gateway_redis_node_find(u_char *addr, in_port_t port)
{
    ngx_uint_t                           i;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    for (i = 0; i < w->nnodes; i++) {
        node = &w->nodes[i];

        if (!node->retired && node->port == port
            && ngx_strcmp(node->addr, addr) == 0)
        {
            return node;
        }
    }

    return NULL;
}


/* the node of the map with this id, or NULL */
ngx_http_ai_gateway_redis_node_t *
ngx_http_ai_gateway_redis_node_by_id(ngx_uint_t id)
{
    ngx_uint_t                           i;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    for (i = 0; i < w->nnodes; i++) {
        if (w->nodes[i].id == id && !w->nodes[i].retired) {
            return &w->nodes[i];
        }
    }

    return NULL;
}


/*
 * host[0..len) as a NUL-ended address in buf; NGX_ERROR if it is not one
 * (a host name would need a blocking resolve: a cluster names its nodes
 * by address)
 */
ngx_int_t
ngx_http_ai_gateway_redis_address(u_char *host, size_t len, u_char *buf)
{
#if (NGX_HAVE_INET6)
    u_char  addr6[16];
#endif

    if (len == 0 || len > NGX_SOCKADDR_STRLEN) {
        return NGX_ERROR;
    }

    ngx_memcpy(buf, host, len);
    buf[len] = '\0';

    if (ngx_inet_addr(buf, len) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_inet6_addr(buf, len, addr6) != NGX_OK
#endif
       )
    {
        return NGX_ERROR;
    }

    return NGX_OK;
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
ngx_http_ai_gateway_redis_redirection(redisReply *reply,
    ngx_http_ai_gateway_redis_redirect_t *rd)
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

    if (ngx_http_ai_gateway_redis_address(p, colon - p, rd->addr) != NGX_OK)
    {
        return 0;
    }

    rd->kind = kind;
    rd->slot = n;
    rd->port = (in_port_t) port;

    return kind;
}


/* the answer to a command queued inside MULTI: a redirection, perhaps */
void
ngx_http_ai_gateway_redis_queued(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_http_ai_gateway_redis_cmd_t  *cmd = privdata;

    /* NULL: the context is being freed, cmd may be gone already */
    if (r == NULL || cmd->redirect.kind) {
        return;
    }

    (void) ngx_http_ai_gateway_redis_redirection(r, &cmd->redirect);
}


/* send cmd's block again to target */
static ngx_int_t
ngx_http_ai_gateway_redis_follow(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_uint_t kind, ngx_uint_t slot, ngx_http_ai_gateway_redis_node_t *target)
{
    ngx_int_t                            rc;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

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

    cmd->redirect.kind = 0;

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


/*
 * A MOVED or ASK to rd: followed at once to a node of the map; for an
 * address the map does not know, parked until the map is read again
 */
ngx_int_t
ngx_http_ai_gateway_redis_redirect(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_http_ai_gateway_redis_redirect_t *rd)
{
    ngx_http_ai_gateway_redis_node_t  *target;

    if (cmd->block == NULL
        || ++cmd->redirects > NGX_HTTP_AI_GATEWAY_REDIS_REDIRECTS)
    {
        return NGX_ERROR;
    }

    target = ngx_http_ai_gateway_redis_node_find(rd->addr, rd->port);

    if (target) {
        return ngx_http_ai_gateway_redis_follow(cmd, rd->kind, rd->slot,
                                                target);
    }

    ngx_http_ai_gateway_redis_park(cmd, rd);

    return NGX_AGAIN;
}


static void
ngx_http_ai_gateway_redis_park(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_http_ai_gateway_redis_redirect_t *rd)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    ngx_log_error(NGX_LOG_INFO, w->log, 0,
                  "redis \"%V\": %s to %s:%d, not in the cluster's map: "
                  "reading the map again",
                  &w->conf->name,
                  rd->kind == NGX_HTTP_AI_GATEWAY_REDIS_MOVED ? "MOVED"
                                                              : "ASK",
                  rd->addr, (int) rd->port);

    if (&cmd->redirect != rd) {
        cmd->redirect = *rd;
    }

    /* a map asked before now may not know the address yet */
    cmd->wants = w->asked + 1;
    cmd->parked = 1;
    ngx_queue_insert_tail(&w->parked, &cmd->queue);

    ngx_http_ai_gateway_redis_refresh_later(0);
}


/* a parked command timed out: no longer parked */
void
ngx_http_ai_gateway_redis_unpark(ngx_http_ai_gateway_redis_cmd_t *cmd)
{
    ngx_queue_remove(&cmd->queue);
    cmd->parked = 0;
}


/* the worker exits: parked commands are freed, unanswered */
void
ngx_http_ai_gateway_redis_drop_parked(void)
{
    ngx_queue_t                         *q;
    ngx_http_ai_gateway_redis_cmd_t     *cmd;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    while (w->cluster && !ngx_queue_empty(&w->parked)) {
        q = ngx_queue_head(&w->parked);
        cmd = ngx_queue_data(q, ngx_http_ai_gateway_redis_cmd_t, queue);

        ngx_http_ai_gateway_redis_unpark(cmd);
        ngx_http_ai_gateway_redis_free(cmd);
    }
}


/*
 * The map was read again (ok), or could not be: the parked commands go
 * where it says, if it names their address, else fail
 */
void
ngx_http_ai_gateway_redis_mapped(ngx_flag_t ok)
{
    ngx_int_t                            rc;
    ngx_queue_t                         *q, parked;
    ngx_http_ai_gateway_redis_cmd_t     *cmd;
    ngx_http_ai_gateway_redis_node_t    *target;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (ngx_queue_empty(&w->parked)) {
        return;
    }

    /* those parked again while this runs wait for the next map */
    parked = w->parked;
    parked.next->prev = &parked;
    parked.prev->next = &parked;
    ngx_queue_init(&w->parked);

    while (!ngx_queue_empty(&parked)) {
        q = ngx_queue_head(&parked);
        cmd = ngx_queue_data(q, ngx_http_ai_gateway_redis_cmd_t, queue);

        ngx_http_ai_gateway_redis_unpark(cmd);

        if (cmd->handler == NULL || w->exiting) {
            /* its request is gone */
            ngx_http_ai_gateway_redis_free(cmd);
            continue;
        }

        if (ok && cmd->wants > w->asked) {
            /* parked while this map was on its way: the next one */
            cmd->parked = 1;
            ngx_queue_insert_tail(&w->parked, &cmd->queue);
            continue;
        }

        target = ok ? ngx_http_ai_gateway_redis_node_find(cmd->redirect.addr,
                                                          cmd->redirect.port)
                    : NULL;

        if (target) {
            rc = ngx_http_ai_gateway_redis_follow(cmd, cmd->redirect.kind,
                                                  cmd->redirect.slot,
                                                  target);
            if (rc == NGX_OK || rc == NGX_DONE) {
                continue;
            }

        } else {
            ngx_log_error(NGX_LOG_ERR, w->log, 0,
                          "redis \"%V\": %s to %s:%d not followed: not in "
                          "the cluster's map", &w->conf->name,
                          cmd->redirect.kind == NGX_HTTP_AI_GATEWAY_REDIS_MOVED
                          ? "MOVED" : "ASK",
                          cmd->redirect.addr, (int) cmd->redirect.port);
        }

        ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

        ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                         NGX_HTTP_AI_GATEWAY_REDIS_ERROR);
        ngx_http_ai_gateway_redis_free(cmd);
    }

    if (!ngx_queue_empty(&w->parked)) {
        ngx_http_ai_gateway_redis_refresh_later(0);
    }
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
