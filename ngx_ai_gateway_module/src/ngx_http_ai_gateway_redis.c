/*
 * The Redis connection: ai_gateway_redis, hiredis async contexts on
 * nginx's event loop in every worker, and the command API of
 * ngx_http_ai_gateway_redis.h.
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
 * hiredis 0.14.1 has no timeouts: every command gets an nginx timer, and
 * so does the connect with its handshake (AUTH, SELECT, PING, sent before
 * any other command so they are first in the pipeline).  A command
 * belongs to hiredis until hiredis calls back (with a reply, or with NULL
 * when the context is freed), and only then is its memory freed; a
 * timeout or the death of the request's pool merely detaches it.
 *
 * Nodes.  A single Redis is one node.  With "cluster" the address is a
 * seed: once it answers, CLUSTER SLOTS tells which node owns which of the
 * 16384 slots, and each node gets its own connection (one per worker, all
 * on the same loop).  A command goes to the owner of its key's slot (the
 * CRC16 of the key, or of its {hash tag}: lib/agw_slot.c), to the seed
 * while the map is not known.  Its command block is kept, so that a MOVED
 * answer (the slot moved: the map is corrected at once and read again) or
 * an ASK answer (the slot is being migrated: ASKING first, the map is
 * left alone) sends it again to the node named, up to
 * NGX_HTTP_AI_GATEWAY_REDIS_REDIRECTS times.  Inside MULTI/EXEC the
 * redirection comes as the answer of a queued command and EXEC answers
 * EXECABORT: the whole block is sent again.
 *
 * Failures (a lost or refused connection, a command timeout) are counted
 * per node; after NGX_HTTP_AI_GATEWAY_REDIS_BREAKER_FAILURES in a row, or
 * a failed handshake, the node's breaker opens: its connection is dropped,
 * commands for it are refused at once, and a new connection is tried after
 * a back-off that doubles while it keeps failing.  Its PING answering
 * closes the breaker.  A failing cluster node also makes the map be read
 * again (a replica may have taken over).  The context is only ever freed
 * from our own timers and hooks, or from inside a command callback, where
 * hiredis defers the free until the callback returns; never from the
 * connect callback, which hiredis 0.14.1 does not run under its
 * REDIS_IN_CALLBACK guard.
 */

#include "ngx_http_ai_gateway_redis.h"
#include "agw_slot.h"

#include <ngx_sha1.h>
#include <hiredis/async.h>


#define NGX_HTTP_AI_GATEWAY_REDIS_BREAKER_FAILURES  3
#define NGX_HTTP_AI_GATEWAY_REDIS_RECONNECT         100   /* ms */
#define NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MIN       500   /* ms */
#define NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MAX       5000  /* ms */
#define NGX_HTTP_AI_GATEWAY_REDIS_MAX_NODES         64
#define NGX_HTTP_AI_GATEWAY_REDIS_NO_NODE           0xff
#define NGX_HTTP_AI_GATEWAY_REDIS_REDIRECTS         5
#define NGX_HTTP_AI_GATEWAY_REDIS_REFRESH           1000  /* ms */

#define NGX_HTTP_AI_GATEWAY_REDIS_MOVED             1
#define NGX_HTTP_AI_GATEWAY_REDIS_ASK               2


typedef struct ngx_http_ai_gateway_redis_node_s
    ngx_http_ai_gateway_redis_node_t;


struct ngx_http_ai_gateway_redis_cmd_s {
    ngx_http_ai_gateway_redis_reply_pt   handler;  /* NULL once done */
    void                                *data;
    ngx_event_t                          timer;
    ngx_pool_cleanup_t                  *cln;      /* in the caller's pool */
    ngx_http_ai_gateway_redis_node_t    *node;     /* sent to */
    unsigned                             write:1;  /* a cache write */
    unsigned                             multi:1;
    unsigned                             noscript:1; /* EVAL sent */
    unsigned                             redirect:2; /* MOVED, ASK */
    unsigned                             allocated:1; /* block: ngx_alloc */
    ngx_uint_t                           redirects;
    ngx_uint_t                           slot;     /* redirected */
    ngx_http_ai_gateway_redis_node_t    *target;  /* redirected to */

    /* EVALSHA: the EVAL to send instead on NOSCRIPT or a redirection */
    int                                  argc;
    const char                         **argv;
    size_t                              *argvlen;
    ngx_http_ai_gateway_redis_argv_t     eval;

    /* cluster: the commands, to send again where redirected */
    ngx_uint_t                           nblock;
    ngx_http_ai_gateway_redis_argv_t    *block;
};


struct ngx_http_ai_gateway_redis_node_s {
    ngx_str_t                            name;       /* for logs */
    u_char                               addr[NGX_SOCKADDR_STRLEN + 1];
    in_port_t                            port;
    ngx_uint_t                           index;
    redisAsyncContext                   *ac;
    ngx_event_t                          reconnect;
    ngx_event_t                          connect;    /* and handshake */
    ngx_uint_t                           failures;   /* in a row */
    ngx_msec_t                           backoff;    /* breaker, ms */
    unsigned                             tcp:1;      /* connect() done */
    unsigned                             ready:1;    /* handshake done */
    unsigned                             breaker:1;  /* open */
};


typedef struct {
    ngx_http_ai_gateway_redis_conf_t    *conf;
    ngx_http_ai_gateway_shared_stats_t  *stats;
    ngx_log_t                           *log;
    ngx_http_ai_gateway_redis_node_t    *nodes;      /* the seed first */
    ngx_uint_t                           nnodes;
    ngx_uint_t                           nready;
    u_char                              *slots;      /* node of each slot */
    ngx_event_t                          refresh;    /* CLUSTER SLOTS */
    unsigned                             cluster:1;
    unsigned                             mapped:1;   /* slots known */
    unsigned                             refreshing:1;
    unsigned                             exiting:1;
} ngx_http_ai_gateway_redis_worker_t;


static void ngx_http_ai_gateway_redis_connect(
    ngx_http_ai_gateway_redis_node_t *node);
static void ngx_http_ai_gateway_redis_failed(
    ngx_http_ai_gateway_redis_node_t *node, ngx_uint_t now);
static void ngx_http_ai_gateway_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_http_ai_gateway_redis_refresh_later(ngx_msec_t delay);
static void ngx_http_ai_gateway_redis_refresh_handler(ngx_event_t *ev);
static ngx_http_ai_gateway_redis_node_t *ngx_http_ai_gateway_redis_node_get(
    u_char *host, size_t len, in_port_t port);


static ngx_http_ai_gateway_redis_worker_t  ngx_http_ai_gateway_redis_worker;


char *
ngx_http_ai_gateway_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ai_gateway_main_conf_t *amcf = conf;

    u_char                            *p;
    ssize_t                            size;
    ngx_int_t                          n;
    ngx_str_t                         *value, s;
    ngx_url_t                          u;
    ngx_uint_t                         i;
    ngx_msec_t                        *msp;
    ngx_http_ai_gateway_redis_conf_t  *rcf;

    if (amcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    /*
     * A host name is resolved here, once, as proxy_pass resolves its
     * upstream: a worker must never block in getaddrinfo() on reconnect.
     */
    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid address \"%V\": %s",
                           &value[1], u.err ? u.err : "cannot parse");
        return NGX_CONF_ERROR;
    }

    if (u.family == AF_UNIX || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address \"%V\": HOST:PORT expected",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* as documented: a forgotten port is a mistake, not 6379 in disguise */
    if (u.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address \"%V\": no port, HOST:PORT "
                           "expected", &value[1]);
        return NGX_CONF_ERROR;
    }

    rcf->name = value[1];
    rcf->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    rcf->addr = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (rcf->addr == NULL) {
        return NGX_CONF_ERROR;
    }

    p = rcf->addr + ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                  rcf->addr, NGX_SOCKADDR_STRLEN, 0);
    *p = '\0';

    ngx_str_set(&rcf->prefix, "gw:v1:");
    rcf->connect_timeout = 100;
    rcf->timeout = 50;
    rcf->write_timeout = 1000;
    rcf->max_entry_size = 1024 * 1024;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "cluster") == 0) {
            rcf->cluster = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {

            n = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (n == NGX_ERROR || n > 1000000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid db \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->db = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {

            rcf->password.data = value[i].data + 9;
            rcf->password.len = value[i].len - 9;

            if (rcf->password.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty password in \"%V\"", &value[1]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_entry_size=", 15) == 0) {

            s.data = value[i].data + 15;
            s.len = value[i].len - 15;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR || size == 0
                || (size_t) size > AGW_ENTRY_MAX_FIELD)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_entry_size \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            rcf->max_entry_size = size;
            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            rcf->prefix.data = value[i].data + 7;
            rcf->prefix.len = value[i].len - 7;
            continue;
        }

        msp = NULL;

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;
            msp = &rcf->connect_timeout;

        } else if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;
            msp = &rcf->timeout;

        } else if (ngx_strncmp(value[i].data, "write_timeout=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;
            msp = &rcf->write_timeout;
        }

        if (msp) {
            *msp = ngx_parse_time(&s, 0);

            if (*msp == (ngx_msec_t) NGX_ERROR || *msp == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid timeout \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rcf->cluster && rcf->db) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"db=\" cannot be used with \"cluster\": "
                           "a Redis Cluster has database 0 only");
        return NGX_CONF_ERROR;
    }

    rcf->store = ngx_http_ai_gateway_store_redis_create(cf, rcf);
    if (rcf->store == NULL) {
        return NGX_CONF_ERROR;
    }

    amcf->redis = rcf;
    amcf->redis_configured = 1;

    return NGX_CONF_OK;
}


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
static void
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


static ngx_flag_t
ngx_http_ai_gateway_redis_stopping(void)
{
    return ngx_http_ai_gateway_redis_worker.exiting
           || ngx_exiting || ngx_quit || ngx_terminate;
}


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
static void
ngx_http_ai_gateway_redis_failed(ngx_http_ai_gateway_redis_node_t *node,
    ngx_uint_t now)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

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


static void
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


static void
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

    if (node->ac || ngx_http_ai_gateway_redis_stopping()) {
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


static void
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
}


/*
 * The node at host:port (an address: a cluster names its nodes by
 * address), added and connected if new; NULL if it cannot be
 */
static ngx_http_ai_gateway_redis_node_t *
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


/* can a command be sent to this node right now? */
static ngx_flag_t
ngx_http_ai_gateway_redis_usable(ngx_http_ai_gateway_redis_node_t *node)
{
    return node->ac != NULL && !node->breaker
           && !ngx_http_ai_gateway_redis_worker.exiting
           && !(node->ac->c.flags & (REDIS_DISCONNECTING|REDIS_FREEING));
}


/* the node that owns a key; the seed while the slots are not known */
static ngx_http_ai_gateway_redis_node_t *
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


ngx_int_t
ngx_http_ai_gateway_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_ai_gateway_main_conf_t     *amcf;
    ngx_http_ai_gateway_redis_node_t    *node;
    ngx_http_ai_gateway_redis_worker_t  *w;

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

    if (w->cluster) {
        w->slots = ngx_palloc(cycle->pool, AGW_SLOTS);
        if (w->slots == NULL) {
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
    w->nnodes = 1;

    ngx_http_ai_gateway_redis_node_init(node, 0, cycle->log);

    ngx_http_ai_gateway_store_redis_init_process(cycle, w->conf, w->stats);

    ngx_http_ai_gateway_redis_connect(node);

    return NGX_OK;
}


void
ngx_http_ai_gateway_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                           i;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (w->conf == NULL) {
        return;
    }

    /* pending commands are freed without calling their handlers */
    w->exiting = 1;

    ngx_http_ai_gateway_store_redis_exit_process();

    if (w->refresh.timer_set) {
        ngx_del_timer(&w->refresh);
    }

    for (i = 0; i < w->nnodes; i++) {
        if (w->nodes[i].reconnect.timer_set) {
            ngx_del_timer(&w->nodes[i].reconnect);
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


/* the command API */

static void
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


static void
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


/* "MOVED 3999 127.0.0.1:6381", "ASK 3999 127.0.0.1:6381" */
static ngx_uint_t
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
static void
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


/*
 * Queue the commands on node's connection: NGX_OK (hiredis owns cmd now),
 * NGX_ERROR (nothing queued that refers to cmd), NGX_DONE (hiredis
 * will call back with cmd once: it is freed there, not by the caller)
 */
static ngx_int_t
ngx_http_ai_gateway_redis_queue(ngx_http_ai_gateway_redis_node_t *node,
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


/* send cmd's block again where a MOVED or ASK points; NGX_OK if sent */
static ngx_int_t
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


static void
ngx_http_ai_gateway_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                          *reply = r;
    ngx_int_t                            rc;
    ngx_uint_t                           kind, slot;
    ngx_http_ai_gateway_redis_cmd_t     *cmd = privdata;
    ngx_http_ai_gateway_redis_node_t    *node, *target;
    ngx_http_ai_gateway_redis_worker_t  *w;
    ngx_http_ai_gateway_redis_status_e   status;

    w = &ngx_http_ai_gateway_redis_worker;
    node = ac->data;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis reply:%p type:%d cmd:%p",
                   reply, reply ? reply->type : 0, cmd);

    if (reply && ac == node->ac) {
        /* Redis answers: whatever the answer, it is alive */
        node->failures = 0;
    }

    if (cmd->handler == NULL || w->exiting) {
        /* timed out, or its request is gone: nobody waits */
        ngx_http_ai_gateway_redis_free(cmd);
        return;
    }

    if (w->cluster && reply && reply->type == REDIS_REPLY_ERROR) {

        kind = ngx_http_ai_gateway_redis_redirection(reply, &slot, &target);

        if (kind == 0 && cmd->redirect) {
            /* EXECABORT after a queued command was redirected */
            kind = cmd->redirect;
            slot = cmd->slot;
            target = cmd->target;
        }

        if (kind) {
            rc = ngx_http_ai_gateway_redis_follow(cmd, kind, slot, target);

            if (rc == NGX_OK || rc == NGX_DONE) {
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

    if (cmd->write) {
        /*
         * A slow cache write (up to max_entry_size) is no sign of a dead
         * Redis and must not open the breaker, which would send every
         * "redis_fail closed" limit zone to 429: the store counts an error
         */
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "redis \"%V\": cache write timed out after %M ms",
                      &node->name, w->conf->write_timeout);

        ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                         NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, w->log, 0,
                  "redis \"%V\": command timed out after %M ms",
                  &node->name, w->conf->timeout);

    ngx_http_ai_gateway_count(w->stats->redis_timeouts, 1);

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


static ngx_http_ai_gateway_redis_cmd_t *
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


/* a cluster keeps a copy of the commands, to send them again elsewhere */
static ngx_int_t
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


/*
 * hand cmd over to the node owning key (or to node, if given): hiredis now
 * owns it, or it is freed and NULL returned
 */
static ngx_http_ai_gateway_redis_cmd_t *
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


void
ngx_http_ai_gateway_redis_script_init(
    ngx_http_ai_gateway_redis_script_t *script)
{
    u_char      digest[20];
    ngx_sha1_t  sha1;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, script->text.data, script->text.len);
    ngx_sha1_final(digest, &sha1);

    *ngx_hex_dump(script->sha1, digest, 20) = '\0';
}


ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_eval(ngx_pool_t *pool,
    ngx_http_ai_gateway_redis_reply_pt handler, void *data,
    ngx_http_ai_gateway_redis_script_t *script, ngx_uint_t numkeys,
    int argc, const char **argv, const size_t *argvlen)
{
    u_char                            *p;
    size_t                             size, *lens, sha_len;
    ngx_int_t                          i;
    const char                       **args;
    ngx_http_ai_gateway_redis_cmd_t   *cmd;
    ngx_http_ai_gateway_redis_argv_t   one;

    /* EVAL, the script, numkeys, then argv: copied for the retry */
    size = (argc + 3) * (sizeof(char *) + sizeof(size_t)) + NGX_INT_T_LEN;

    for (i = 0; i < argc; i++) {
        size += argvlen[i];
    }

    cmd = ngx_http_ai_gateway_redis_alloc(size);
    if (cmd == NULL) {
        return NULL;
    }

    args = (const char **) (cmd + 1);
    lens = (size_t *) (args + argc + 3);
    p = (u_char *) (lens + argc + 3);

    args[0] = "EVAL";
    lens[0] = 4;
    args[1] = (const char *) script->text.data;
    lens[1] = script->text.len;
    args[2] = (const char *) p;
    lens[2] = ngx_sprintf(p, "%ui", numkeys) - p;
    p += lens[2];

    for (i = 0; i < argc; i++) {
        args[i + 3] = (const char *) p;
        lens[i + 3] = argvlen[i];
        p = ngx_cpymem(p, argv[i], argvlen[i]);
    }

    cmd->argc = argc + 3;
    cmd->argv = args;
    cmd->argvlen = lens;

    /* where redirected, the EVAL is sent: it loads the script there too */
    cmd->eval.argc = cmd->argc;
    cmd->eval.argv = args;
    cmd->eval.argvlen = lens;
    cmd->block = &cmd->eval;
    cmd->nblock = 1;

    /* EVALSHA first, from a copy of the EVAL vector's head */
    sha_len = 40;

    args[0] = "EVALSHA";
    lens[0] = 7;
    args[1] = (const char *) script->sha1;
    lens[1] = sha_len;

    one.argc = argc + 3;
    one.argv = args;
    one.argvlen = lens;

    /* routed by KEYS[1]: the keys of one script share a hash tag */
    cmd = ngx_http_ai_gateway_redis_start(cmd, NULL,
                                          numkeys ? argv[0] : NULL,
                                          numkeys ? argvlen[0] : 0,
                                          pool, handler, data, 1, &one, 0);

    if (cmd) {
        /* hiredis copied the EVALSHA; turn the vector back into EVAL */
        args[0] = "EVAL";
        lens[0] = 4;
        args[1] = (const char *) script->text.data;
        lens[1] = script->text.len;
    }

    return cmd;
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


static void
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


static void
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
