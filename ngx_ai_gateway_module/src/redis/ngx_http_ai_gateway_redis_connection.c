/*
 * The Redis connection: hiredis async contexts on nginx's event loop in
 * every worker, one per node (redis_cluster.c adds a cluster's nodes).
 *
 * The bridge follows nchan's redis_nginx_adapter, fitted to hiredis
 * 0.14.1: the socket is wrapped in an ngx_connection_t whose data is the
 * context; the five ac->ev hooks add and delete level-triggered events
 * (redisAsyncHandleRead() re-adds the read event after every read, so
 * the hooks check ev->active first, as hiredis' ae adapter does); the
 * cleanup hook deletes the events and gives the ngx_connection_t back with
 * ngx_free_connection(), never ngx_close_connection(): hiredis closes the
 * socket itself right after.  hiredis may call cleanup twice, so cleanup
 * clears ac->ev.data and every hook ignores a NULL.  Nothing touches the
 * context after redisAsyncHandleRead()/Write(), which may free it.
 *
 * hiredis 0.14.1 has no timeouts: the connect with its handshake (AUTH,
 * SELECT, PING, sent before any other command so they are first in the
 * pipeline) gets an nginx timer, as every command does (redis_command.c).
 * The context is only ever freed from our own timers and hooks, or from
 * inside a command callback, where hiredis defers the free until the
 * callback returns; never from the connect callback, which hiredis 0.14.1
 * does not run under its REDIS_IN_CALLBACK guard.
 */

#include "redis/ngx_http_ai_gateway_redis_node.h"
#include "agw_slot.h"


ngx_http_ai_gateway_redis_worker_t  ngx_http_ai_gateway_redis_worker;


/* the hiredis bridge: the ac->ev hooks; privdata is the ngx_connection_t */

static void
ngx_http_ai_gateway_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t  *c = rev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, rev->log, 0,
                   "ai_gateway redis read");

    /* may free the context and c: touch neither afterwards */
    redisAsyncHandleRead(c->data);
}


static void
ngx_http_ai_gateway_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t  *c = wev->data;

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, wev->log, 0,
                   "ai_gateway redis write");

    redisAsyncHandleWrite(c->data);
}


static void
ngx_http_ai_gateway_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c == NULL || c->read->active) {
        return;
    }

    /* flag 0: level-triggered, as hiredis reads at most 16 KiB at a time */
    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "ai_gateway redis: cannot add read event");
    }
}


static void
ngx_http_ai_gateway_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c && c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_ai_gateway_redis_add_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c == NULL || c->write->active) {
        return;
    }

    if (ngx_add_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "ai_gateway redis: cannot add write event");
    }
}


static void
ngx_http_ai_gateway_redis_del_write(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c && c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_http_ai_gateway_redis_gone(ngx_http_ai_gateway_redis_node_t *node)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    node->ac = NULL;
    node->tcp = 0;

    if (node->ready) {
        node->ready = 0;

        if (--w->nready == 0) {
            ngx_http_ai_gateway_stats_redis_down(w->stats);
        }
    }

    if (node->connect.timer_set) {
        ngx_del_timer(&node->connect);
    }
}


static void
ngx_http_ai_gateway_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_uint_t                           level;
    redisAsyncContext                   *ac;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    if (c == NULL) {
        return;
    }

    ac = c->data;
    node = ac->data;
    w = &ngx_http_ai_gateway_redis_worker;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, c->log, 0,
                   "ai_gateway redis cleanup fd:%d", c->fd);

    /* hiredis may call cleanup again and add events: make it a no-op */
    ac->ev.data = NULL;

    ngx_http_ai_gateway_redis_del_read(c);
    ngx_http_ai_gateway_redis_del_write(c);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);

    /* hiredis closes the socket; the worker's exit check must not see it */
    c->fd = (ngx_socket_t) -1;

    if (ac == node->closing) {
        /* a node that left the map, closed once its replies were in */
        node->closing = NULL;

        if (node->close.timer_set) {
            ngx_del_timer(&node->close);
        }

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, w->log, 0,
                       "ai_gateway redis \"%V\" closed", &node->name);
        return;
    }

    if (ac != node->ac) {
        /* dropped by us: already accounted for */
        return;
    }

    /* lost: refused, reset, closed by the server */

    level = node->breaker ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, w->log, 0, "redis \"%V\": %s: %s",
                  &node->name,
                  node->tcp ? "connection lost" : "connect failed",
                  ac->c.err ? ac->c.errstr : "closed");

    ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

    ngx_http_ai_gateway_redis_gone(node);
    ngx_http_ai_gateway_redis_failed(node, 0);
}


/* give the connection up; hiredis defers the free inside a callback */
void
ngx_http_ai_gateway_redis_drop(ngx_http_ai_gateway_redis_node_t *node)
{
    redisAsyncContext  *ac;

    ac = node->ac;

    if (ac == NULL) {
        return;
    }

    ngx_http_ai_gateway_redis_gone(node);

    /* pending commands are called back with NULL, then cleanup runs */
    redisAsyncFree(ac);
}


/*
 * A node the map no longer names (a failover, a node moved or removed):
 * no command is sent to it any more (not usable, not found), and its
 * connection is closed once the commands in flight on it have their
 * replies (redisAsyncDisconnect() waits for them), or once their time is
 * up (the close timer frees it, and the commands hear NULL); only then
 * is its place free for another node.  Never a reconnect.
 */
void
ngx_http_ai_gateway_redis_retire(ngx_http_ai_gateway_redis_node_t *node)
{
    redisAsyncContext                   *ac;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                  "redis \"%V\": cluster node \"%V\" left the map",
                  &w->conf->name, &node->name);

    node->retired = 1;
    node->breaker = 0;

    if (node->reconnect.timer_set) {
        ngx_del_timer(&node->reconnect);
    }

    ac = node->ac;

    if (ac == NULL) {
        return;
    }

    ngx_http_ai_gateway_redis_gone(node);

    node->closing = ac;

    ngx_add_timer(&node->close, ngx_max(w->conf->timeout,
                                        w->conf->write_timeout));

    /* may free it at once (nothing in flight): cleanup clears closing */
    redisAsyncDisconnect(ac);
}


static void
ngx_http_ai_gateway_redis_close_timeout(ngx_event_t *ev)
{
    ngx_http_ai_gateway_redis_node_t  *node;

    node = ngx_http_ai_gateway_event_owner(ev,
                                           ngx_http_ai_gateway_redis_node_t,
                                           close);

    if (node->closing) {
        /* whatever is still in flight hears NULL; cleanup clears closing */
        redisAsyncFree(node->closing);
    }
}


ngx_flag_t
ngx_http_ai_gateway_redis_stopping(void)
{
    return ngx_http_ai_gateway_redis_worker.exiting
           || ngx_exiting || ngx_quit || ngx_terminate;
}


static void
ngx_http_ai_gateway_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_ai_gateway_redis_node_t  *node;

    node = ac->data;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "ai_gateway redis connect status:%d", status);

    /*
     * hiredis 0.14.1 frees the context right after a failed connect and
     * does not guard this callback: never free it here, cleanup tells
     */
    if (ac == node->ac && status == REDIS_OK) {
        node->tcp = 1;
    }
}


/* AUTH, SELECT and PING replies; privdata names the command for logs */
static void
ngx_http_ai_gateway_redis_handshake(redisAsyncContext *ac, void *r,
    void *privdata)
{
    char                                *what = privdata;
    redisReply                          *reply = r;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;
    node = ac->data;

    if (ac != node->ac || reply == NULL) {
        /* an old connection, or this one going away: cleanup tells */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "redis \"%V\": %s failed: %*s", &node->name, what,
                      (size_t) reply->len, reply->str);

        ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

        /* wrong password, wrong db: retrying at once would not help */
        ngx_http_ai_gateway_redis_failed(node, 1);
        return;
    }

    if (ngx_strcmp(what, "PING") == 0) {
        ngx_http_ai_gateway_redis_ready(node);
    }
}


static void
ngx_http_ai_gateway_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_uint_t                           level;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

    node = ngx_http_ai_gateway_event_owner(ev,
                                           ngx_http_ai_gateway_redis_node_t,
                                           connect);
    w = &ngx_http_ai_gateway_redis_worker;

    level = node->breaker ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, w->log, 0, "redis \"%V\": %s timed out after %M ms",
                  &node->name, node->tcp ? "handshake" : "connect",
                  w->conf->connect_timeout);

    ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

    ngx_http_ai_gateway_redis_drop(node);
    ngx_http_ai_gateway_redis_failed(node, 0);
}


static void
ngx_http_ai_gateway_redis_reconnect(ngx_event_t *ev)
{
    ngx_http_ai_gateway_redis_connect(
        ngx_http_ai_gateway_event_owner(ev, ngx_http_ai_gateway_redis_node_t,
                                        reconnect));
}


void
ngx_http_ai_gateway_redis_connect(ngx_http_ai_gateway_redis_node_t *node)
{
    u_char                               db[NGX_INT_T_LEN];
    size_t                               len[2];
    ngx_uint_t                           level;
    const char                          *argv[2];
    ngx_connection_t                    *c;
    redisAsyncContext                   *ac;
    ngx_http_ai_gateway_redis_conf_t    *conf;
    ngx_http_ai_gateway_redis_worker_t  *w;

    if (node->ac || node->retired || ngx_http_ai_gateway_redis_stopping()) {
        return;
    }

    w = &ngx_http_ai_gateway_redis_worker;
    conf = w->conf;
    level = node->breaker ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis connect %s:%d",
                   node->addr, (int) node->port);

    /* non-blocking: connect(2) returns EINPROGRESS */
    ac = redisAsyncConnect((char *) node->addr, node->port);

    if (ac == NULL || ac->err) {
        ngx_log_error(level, w->log, 0, "redis \"%V\": connect failed: %s",
                      &node->name, ac ? ac->errstr : "out of memory");

        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_http_ai_gateway_count(w->stats->redis_errors, 1);
        ngx_http_ai_gateway_redis_failed(node, 0);
        return;
    }

    c = ngx_get_connection(ac->c.fd, w->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_ai_gateway_redis_failed(node, 0);
        return;
    }

    c->data = ac;
    c->log = w->log;
    c->read->log = w->log;
    c->write->log = w->log;
    c->read->handler = ngx_http_ai_gateway_redis_read_handler;
    c->write->handler = ngx_http_ai_gateway_redis_write_handler;

    ac->data = node;
    ac->ev.data = c;
    ac->ev.addRead = ngx_http_ai_gateway_redis_add_read;
    ac->ev.delRead = ngx_http_ai_gateway_redis_del_read;
    ac->ev.addWrite = ngx_http_ai_gateway_redis_add_write;
    ac->ev.delWrite = ngx_http_ai_gateway_redis_del_write;
    ac->ev.cleanup = ngx_http_ai_gateway_redis_cleanup;

    node->ac = ac;
    node->tcp = 0;

    /* the first write event tells that connect(2) is done */
    (void) redisAsyncSetConnectCallback(ac,
                                        ngx_http_ai_gateway_redis_on_connect);

    /* the handshake goes first in the pipeline, before any command */

    if (conf->password.len) {
        argv[0] = "AUTH";
        len[0] = 4;
        argv[1] = (const char *) conf->password.data;
        len[1] = conf->password.len;

        (void) redisAsyncCommandArgv(ac, ngx_http_ai_gateway_redis_handshake,
                                     "AUTH", 2, argv, len);
    }

    if (conf->db) {
        argv[0] = "SELECT";
        len[0] = 6;
        argv[1] = (const char *) db;
        len[1] = ngx_sprintf(db, "%ui", conf->db) - db;

        (void) redisAsyncCommandArgv(ac, ngx_http_ai_gateway_redis_handshake,
                                     "SELECT", 2, argv, len);
    }

    argv[0] = "PING";
    len[0] = 4;

    if (redisAsyncCommandArgv(ac, ngx_http_ai_gateway_redis_handshake,
                              "PING", 1, argv, len)
        != REDIS_OK)
    {
        ngx_http_ai_gateway_redis_drop(node);
        ngx_http_ai_gateway_redis_failed(node, 0);
        return;
    }

    ngx_add_timer(&node->connect, conf->connect_timeout);
}


void
ngx_http_ai_gateway_redis_node_init(ngx_http_ai_gateway_redis_node_t *node,
    ngx_uint_t index, ngx_log_t *log)
{
    node->index = index;

    /* cancelable: a graceful shutdown does not wait for them */
    ngx_http_ai_gateway_event_init(&node->reconnect,
                                   ngx_http_ai_gateway_redis_reconnect, log);
    node->reconnect.cancelable = 1;

    ngx_http_ai_gateway_event_init(&node->connect,
                                   ngx_http_ai_gateway_redis_connect_timeout,
                                   log);
    node->connect.cancelable = 1;

    ngx_http_ai_gateway_event_init(&node->close,
                                   ngx_http_ai_gateway_redis_close_timeout,
                                   log);
    node->close.cancelable = 1;
}


/* can a command be sent to this node right now? */
ngx_flag_t
ngx_http_ai_gateway_redis_usable(ngx_http_ai_gateway_redis_node_t *node)
{
    return node->ac != NULL && !node->breaker
           && !ngx_http_ai_gateway_redis_worker.exiting
           && !(node->ac->c.flags & (REDIS_DISCONNECTING|REDIS_FREEING));
}


ngx_int_t
ngx_http_ai_gateway_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                                i;
    ngx_http_ai_gateway_main_conf_t          *amcf;
    ngx_http_ai_gateway_redis_node_t         *node;
    ngx_http_ai_gateway_redis_worker_t       *w;
    ngx_http_ai_gateway_redis_worker_hook_t  *hooks;

    /* workers only: not the master, not the cache manager or loader */
    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_ai_gateway_module);

    if (amcf == NULL || amcf->redis == NULL) {
        return NGX_OK;
    }

    w = &ngx_http_ai_gateway_redis_worker;

    ngx_memzero(w, sizeof(ngx_http_ai_gateway_redis_worker_t));

    w->conf = amcf->redis;
    w->stats = ngx_http_ai_gateway_shared_stats(amcf);
    w->log = cycle->log;
    w->cluster = w->conf->cluster;

    w->nodes = ngx_pcalloc(cycle->pool,
                           (w->cluster ? NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES
                                       : 1)
                           * sizeof(ngx_http_ai_gateway_redis_node_t));
    if (w->nodes == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&w->parked);

    if (w->cluster) {
        w->slots = ngx_palloc(cycle->pool, AGW_SLOTS);
        w->next = ngx_palloc(cycle->pool, AGW_SLOTS);
        if (w->slots == NULL || w->next == NULL) {
            return NGX_ERROR;
        }

        ngx_memset(w->slots, NGX_HTTP_AI_GATEWAY_REDIS_NO_NODE, AGW_SLOTS);

        ngx_http_ai_gateway_event_init(&w->refresh,
                                   ngx_http_ai_gateway_redis_refresh_handler,
                                   cycle->log);
        w->refresh.cancelable = 1;
    }

    ngx_http_ai_gateway_stats_redis_forget_dead(w->stats);

    /* the configured address (a cluster's seed) is node 0, named as written */
    node = &w->nodes[0];
    node->name = w->conf->name;
    ngx_cpystrn(node->addr, w->conf->addr, NGX_SOCKADDR_STRLEN + 1);
    node->port = w->conf->port;
    node->id = ++w->ids;
    w->nnodes = 1;

    ngx_http_ai_gateway_redis_node_init(node, 0, cycle->log);

    /* its users' own, in the order they registered */
    hooks = w->conf->workers.elts;

    for (i = 0; i < w->conf->workers.nelts; i++) {
        hooks[i].start(cycle, hooks[i].data);
    }

    ngx_http_ai_gateway_redis_connect(node);

    return NGX_OK;
}


void
ngx_http_ai_gateway_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                                i;
    ngx_http_ai_gateway_redis_worker_t       *w;
    ngx_http_ai_gateway_redis_worker_hook_t  *hooks;

    w = &ngx_http_ai_gateway_redis_worker;

    if (w->conf == NULL) {
        return;
    }

    /* pending commands are freed without calling their handlers */
    w->exiting = 1;

    hooks = w->conf->workers.elts;

    for (i = 0; i < w->conf->workers.nelts; i++) {
        if (hooks[i].stop) {
            hooks[i].stop(hooks[i].data);
        }
    }

    if (w->refresh.timer_set) {
        ngx_del_timer(&w->refresh);
    }

    ngx_http_ai_gateway_redis_drop_parked();

    for (i = 0; i < w->nnodes; i++) {
        if (w->nodes[i].reconnect.timer_set) {
            ngx_del_timer(&w->nodes[i].reconnect);
        }

        if (w->nodes[i].closing) {
            redisAsyncFree(w->nodes[i].closing);
        }

        ngx_http_ai_gateway_redis_drop(&w->nodes[i]);
    }
}


ngx_flag_t
ngx_http_ai_gateway_redis_available(void)
{
    ngx_uint_t                           i;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (w->nodes == NULL) {
        return 0;
    }

    /* a cluster: some node can take commands; each command checks its own */
    for (i = 0; i < w->nnodes; i++) {
        if (ngx_http_ai_gateway_redis_usable(&w->nodes[i])) {
            return 1;
        }
    }

    return 0;
}
