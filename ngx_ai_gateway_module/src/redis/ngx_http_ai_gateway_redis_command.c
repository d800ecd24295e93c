/*
 * The command API of ngx_http_ai_gateway_redis.h.  hiredis 0.14.1 has no
 * timeouts: every command gets an nginx timer.  A command belongs to
 * hiredis until hiredis calls back (with a reply, or with NULL when the
 * context is freed), and only then is its memory freed; a timeout or the
 * death of the request's pool merely detaches it.  A command goes to the
 * node that owns its key (redis_cluster.c), which follows MOVED and ASK
 * answers before the handler hears of them.
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"


static ngx_int_t ngx_http_ai_gateway_redis_queue_block(
    ngx_http_ai_gateway_redis_node_t *node,
    ngx_http_ai_gateway_redis_cmd_t *cmd, ngx_uint_t n,
    ngx_http_ai_gateway_redis_argv_t *cmds, ngx_flag_t multi,
    ngx_flag_t asking);


/* the command API */

void
ngx_http_ai_gateway_redis_finish(ngx_http_ai_gateway_redis_cmd_t *cmd,
    redisReply *reply, ngx_http_ai_gateway_redis_status_e status)
{
    void                                *data;
    ngx_http_ai_gateway_redis_reply_pt   handler;

    handler = cmd->handler;
    data = cmd->data;

    cmd->handler = NULL;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    /* detach before the handler, which may destroy the pool */
    if (cmd->cln) {
        cmd->cln->handler = NULL;
        cmd->cln = NULL;
    }

    handler(reply, status, data);
}


void
ngx_http_ai_gateway_redis_free(ngx_http_ai_gateway_redis_cmd_t *cmd)
{
    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }

    if (cmd->cln) {
        cmd->cln->handler = NULL;
    }

    if (cmd->allocated) {
        ngx_free(cmd->block);
    }

    ngx_free(cmd);
}


/*
 * Queue the commands on node's connection: NGX_OK (hiredis owns cmd now),
 * NGX_ERROR (nothing queued that refers to cmd), NGX_DONE (hiredis
 * will call back with cmd once: it is freed there, not by the caller)
 */
ngx_int_t
ngx_http_ai_gateway_redis_queue(ngx_http_ai_gateway_redis_node_t *node,
    ngx_http_ai_gateway_redis_cmd_t *cmd, ngx_uint_t n,
    ngx_http_ai_gateway_redis_argv_t *cmds, ngx_flag_t multi,
    ngx_flag_t asking)
{
    ngx_int_t  rc;

    rc = ngx_http_ai_gateway_redis_queue_block(node, cmd, n, cmds, multi,
                                               asking);

    if (rc == NGX_ERROR) {
        return rc;
    }

    /* one reply (or NULL) for cmd will come: see redis_reply() */

    if (cmd->write) {
        node->writes_sent++;

    } else {
        cmd->writes_before = node->writes_sent;
    }

    return rc;
}


static ngx_int_t
ngx_http_ai_gateway_redis_queue_block(ngx_http_ai_gateway_redis_node_t *node,
    ngx_http_ai_gateway_redis_cmd_t *cmd, ngx_uint_t n,
    ngx_http_ai_gateway_redis_argv_t *cmds, ngx_flag_t multi,
    ngx_flag_t asking)
{
    ngx_uint_t          i;
    redisAsyncContext  *ac;
    redisCallbackFn    *queued;

    ac = node->ac;

    if (asking && redisAsyncCommand(ac, NULL, NULL, "ASKING") != REDIS_OK) {
        return NGX_ERROR;
    }

    if (!multi) {
        if (redisAsyncCommandArgv(ac, ngx_http_ai_gateway_redis_reply, cmd,
                                  cmds[0].argc, cmds[0].argv,
                                  cmds[0].argvlen)
            != REDIS_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    /* a cluster learns of a redirection from the queued commands */
    queued = ngx_http_ai_gateway_redis_worker.cluster
             ? ngx_http_ai_gateway_redis_queued : NULL;

    if (redisAsyncCommand(ac, NULL, NULL, "MULTI") != REDIS_OK) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (redisAsyncCommandArgv(ac, queued, cmd, cmds[i].argc,
                                  cmds[i].argv, cmds[i].argvlen)
            != REDIS_OK)
        {
            break;
        }
    }

    if (i == n
        && redisAsyncCommand(ac, ngx_http_ai_gateway_redis_reply, cmd,
                             "EXEC")
           == REDIS_OK)
    {
        return NGX_OK;
    }

    /* never leave the shared connection inside a transaction */

    if (redisAsyncCommand(ac, ngx_http_ai_gateway_redis_reply, cmd,
                          "DISCARD")
        == REDIS_OK)
    {
        return NGX_DONE;
    }

    ngx_http_ai_gateway_redis_drop(node);
    ngx_http_ai_gateway_redis_failed(node, 0);

    return NGX_ERROR;
}


void
ngx_http_ai_gateway_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                            *reply = r;
    ngx_int_t                              rc;
    ngx_http_ai_gateway_redis_cmd_t       *cmd = privdata;
    ngx_http_ai_gateway_redis_node_t      *node;
    ngx_http_ai_gateway_redis_worker_t    *w;
    ngx_http_ai_gateway_redis_redirect_t   rd;
    ngx_http_ai_gateway_redis_status_e     status;

    w = &ngx_http_ai_gateway_redis_worker;
    node = ac->data;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis reply:%p type:%d cmd:%p",
                   reply, reply ? reply->type : 0, cmd);

    if (reply && ac == node->ac) {
        /* Redis answers: whatever the answer, it is alive */
        node->failures = 0;
    }

    if (cmd->write) {
        /* answered, or its connection ended: later commands wait no more */
        node->writes_answered++;

        if (cmd->late) {
            cmd->late = 0;
            node->writes_late--;
        }
    }

    if (cmd->handler == NULL || w->exiting) {
        /* timed out, or its request is gone: nobody waits */
        ngx_http_ai_gateway_redis_free(cmd);
        return;
    }

    if (w->cluster && reply && reply->type == REDIS_REPLY_ERROR) {

        rd.kind = 0;

        if (ngx_http_ai_gateway_redis_redirection(reply, &rd) == 0
            && cmd->redirect.kind)
        {
            /* EXECABORT after a queued command was redirected */
            rd = cmd->redirect;
        }

        if (rd.kind) {
            rc = ngx_http_ai_gateway_redis_redirect(cmd, &rd);

            if (rc == NGX_OK || rc == NGX_DONE || rc == NGX_AGAIN) {
                /* sent again, answered, or parked until the next map */
                return;
            }
        }
    }

    if (reply && reply->type == REDIS_REPLY_ERROR && cmd->argv
        && !cmd->noscript
        && reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0
        && ac == node->ac && ngx_http_ai_gateway_redis_usable(node))
    {
        /* the script cache was flushed or Redis restarted: EVAL loads it */
        if (redisAsyncCommandArgv(ac, ngx_http_ai_gateway_redis_reply, cmd,
                                  cmd->argc, cmd->argv, cmd->argvlen)
            == REDIS_OK)
        {
            cmd->noscript = 1;
            return;
        }
    }

    if (reply == NULL) {
        status = NGX_HTTP_AI_GATEWAY_REDIS_ERROR;

    } else if (reply->type == REDIS_REPLY_ERROR) {
        status = NGX_HTTP_AI_GATEWAY_REDIS_ERROR;

        ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

        ngx_log_error(NGX_LOG_ERR, w->log, 0, "redis \"%V\": error reply: %*s",
                      &node->name, (size_t) reply->len, reply->str);

    } else {
        status = NGX_HTTP_AI_GATEWAY_REDIS_OK;
    }

    ngx_http_ai_gateway_redis_finish(cmd, reply, status);
    ngx_http_ai_gateway_redis_free(cmd);
}


static void
ngx_http_ai_gateway_redis_timeout(ngx_event_t *ev)
{
    ngx_http_ai_gateway_redis_cmd_t     *cmd;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    cmd = ngx_http_ai_gateway_event_owner(ev, ngx_http_ai_gateway_redis_cmd_t,
                                          timer);
    w = &ngx_http_ai_gateway_redis_worker;
    node = cmd->node;

    if (cmd->parked) {
        /* waited for the map, not on a node: ours to free */
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "redis \"%V\": command timed out after %M ms waiting "
                      "for the cluster's map", &w->conf->name,
                      cmd->write ? w->conf->write_timeout : w->conf->timeout);

        if (!cmd->write) {
            ngx_http_ai_gateway_count(w->stats->redis_timeouts, 1);
        }

        ngx_http_ai_gateway_redis_unpark(cmd);
        ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                         NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT);
        ngx_http_ai_gateway_redis_free(cmd);
        return;
    }

    if (cmd->write) {
        /*
         * A slow cache write (up to max_entry_size) is no sign of a dead
         * Redis and must not open the breaker, which would send every
         * "redis_fail closed" limit zone to 429: the store counts an error.
         * Still unanswered, it is late: commands behind it are no longer
         * excused (below).
         */
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "redis \"%V\": cache write timed out after %M ms",
                      &node->name, w->conf->write_timeout);

        cmd->late = 1;
        node->writes_late++;

        ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                         NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT);
        return;
    }

    ngx_http_ai_gateway_count(w->stats->redis_timeouts, 1);

    /*
     * Redis answers a connection's commands in order: one queued behind a
     * cache write that is still unanswered (a write Redis holds back, as
     * CLIENT PAUSE WRITE does, or a large one) waits on that write, and
     * its timeout says nothing of a dead Redis, unless the write is late
     * itself or Redis already failed to answer a command that waited on
     * nothing.  It is counted in /cachez, not towards the breaker.
     */
    if (node->writes_answered < cmd->writes_before
        && node->writes_late == 0 && node->failures == 0)
    {
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "redis \"%V\": command timed out after %M ms "
                      "behind a cache write", &node->name, w->conf->timeout);

        ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                         NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, w->log, 0,
                  "redis \"%V\": command timed out after %M ms",
                  &node->name, w->conf->timeout);

    /* hiredis keeps the command until a reply or the free */
    ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                     NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT);

    ngx_http_ai_gateway_redis_failed(node, 0);
}


static void
ngx_http_ai_gateway_redis_detach(void *data)
{
    ngx_http_ai_gateway_redis_cmd_t  *cmd = data;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "ai_gateway redis detach cmd:%p", cmd);

    cmd->handler = NULL;
    cmd->cln = NULL;

    if (cmd->timer.timer_set) {
        ngx_del_timer(&cmd->timer);
    }
}


ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_alloc(size_t extra)
{
    ngx_http_ai_gateway_redis_cmd_t  *cmd;

    if (!ngx_http_ai_gateway_redis_available()) {
        return NULL;
    }

    cmd = ngx_calloc(sizeof(ngx_http_ai_gateway_redis_cmd_t) + extra,
                     ngx_http_ai_gateway_redis_worker.log);

    return cmd;
}


/*
 * hand cmd over to the node owning key (or to node, if given): hiredis now
 * owns it, or it is freed and NULL returned
 */
ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_start(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_http_ai_gateway_redis_node_t *node, const char *key, size_t keylen,
    ngx_pool_t *pool, ngx_http_ai_gateway_redis_reply_pt handler, void *data,
    ngx_uint_t n, ngx_http_ai_gateway_redis_argv_t *cmds, ngx_flag_t multi)
{
    ngx_int_t                            rc;
    ngx_pool_cleanup_t                  *cln;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (node == NULL) {
        node = ngx_http_ai_gateway_redis_route(key, keylen);
    }

    if (!ngx_http_ai_gateway_redis_usable(node)) {
        /* this key's node is down or its breaker open */
        ngx_free(cmd);
        return NULL;
    }

    cln = NULL;

    if (pool) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            ngx_free(cmd);
            return NULL;
        }
    }

    if (w->cluster && cmd->block == NULL
        && ngx_http_ai_gateway_redis_keep(cmd, n, cmds) != NGX_OK)
    {
        ngx_free(cmd);
        return NULL;
    }

    cmd->multi = multi;

    rc = ngx_http_ai_gateway_redis_queue(node, cmd, n, cmds, multi, 0);

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            if (cmd->allocated) {
                ngx_free(cmd->block);
            }

            ngx_free(cmd);
        }

        return NULL;
    }

    cmd->node = node;
    cmd->handler = handler;
    cmd->data = data;

    if (cln) {
        cln->handler = ngx_http_ai_gateway_redis_detach;
        cln->data = cmd;
        cmd->cln = cln;
    }

    ngx_http_ai_gateway_event_init(&cmd->timer,
                                   ngx_http_ai_gateway_redis_timeout, w->log);

    ngx_add_timer(&cmd->timer,
                  cmd->write ? w->conf->write_timeout : w->conf->timeout);

    return cmd;
}


/* the key a command is routed by: its first argument */
#define ngx_http_ai_gateway_redis_key(c)                                      \
    ((c)->argc > 1 ? (c)->argv[1] : NULL), ((c)->argc > 1 ? (c)->argvlen[1] : 0)


ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_send(ngx_pool_t *pool,
    ngx_http_ai_gateway_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_ai_gateway_redis_cmd_t   *cmd;
    ngx_http_ai_gateway_redis_argv_t   one;

    cmd = ngx_http_ai_gateway_redis_alloc(0);
    if (cmd == NULL) {
        return NULL;
    }

    one.argc = argc;
    one.argv = argv;
    one.argvlen = argvlen;

    return ngx_http_ai_gateway_redis_start(cmd, NULL,
                                           ngx_http_ai_gateway_redis_key(&one),
                                           pool, handler, data, 1, &one, 0);
}


ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_send_multi(ngx_pool_t *pool,
    ngx_http_ai_gateway_redis_reply_pt handler, void *data, ngx_uint_t n,
    ngx_http_ai_gateway_redis_argv_t *cmds)
{
    ngx_http_ai_gateway_redis_cmd_t  *cmd;

    cmd = ngx_http_ai_gateway_redis_alloc(0);
    if (cmd == NULL) {
        return NULL;
    }

    /* every key of the block must be in one slot: routed by the first */
    return ngx_http_ai_gateway_redis_start(cmd, NULL,
                                           ngx_http_ai_gateway_redis_key(cmds),
                                           pool, handler, data, n, cmds, 1);
}


ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_send_write(
    ngx_http_ai_gateway_redis_reply_pt handler, void *data, ngx_uint_t n,
    ngx_http_ai_gateway_redis_argv_t *cmds)
{
    ngx_http_ai_gateway_redis_cmd_t  *cmd;

    cmd = ngx_http_ai_gateway_redis_alloc(0);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->write = 1;

    return ngx_http_ai_gateway_redis_start(cmd, NULL,
                                           ngx_http_ai_gateway_redis_key(cmds),
                                           NULL, handler, data, n, cmds, 1);
}
