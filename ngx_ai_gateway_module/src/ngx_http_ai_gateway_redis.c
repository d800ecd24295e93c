/*
 * The Redis connection: ai_gateway_redis, one hiredis async context per
 * worker on nginx's event loop, and the command API of
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
 * Failures (a lost or refused connection, a command timeout) are counted;
 * after NGX_HTTP_AI_GATEWAY_REDIS_BREAKER_FAILURES in a row, or a failed
 * handshake, the breaker opens: the connection is dropped, commands are
 * refused at once, and a new connection is tried after a back-off that
 * doubles while it keeps failing.  Its PING answering closes the breaker.
 * The context is only ever freed from our own timers and hooks, or from
 * inside a command callback, where hiredis defers the free until the
 * callback returns; never from the connect callback, which hiredis 0.14.1
 * does not run under its REDIS_IN_CALLBACK guard.
 */

#include "ngx_http_ai_gateway_redis.h"

#include <ngx_sha1.h>
#include <hiredis/async.h>


#define NGX_HTTP_AI_GATEWAY_REDIS_BREAKER_FAILURES  3
#define NGX_HTTP_AI_GATEWAY_REDIS_RECONNECT         100   /* ms */
#define NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MIN       500   /* ms */
#define NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MAX       5000  /* ms */


struct ngx_http_ai_gateway_redis_cmd_s {
    ngx_http_ai_gateway_redis_reply_pt   handler;  /* NULL once done */
    void                                *data;
    ngx_event_t                          timer;
    ngx_pool_cleanup_t                  *cln;      /* in the caller's pool */
    unsigned                             write:1;  /* a cache write */

    /* EVALSHA: the EVAL to send instead on NOSCRIPT, once */
    int                                  argc;
    const char                         **argv;
    size_t                              *argvlen;
};


typedef struct {
    ngx_http_ai_gateway_redis_conf_t    *conf;
    ngx_http_ai_gateway_shared_stats_t  *stats;
    ngx_log_t                           *log;
    redisAsyncContext                   *ac;
    ngx_event_t                          reconnect;
    ngx_event_t                          connect;    /* and handshake */
    ngx_uint_t                           failures;   /* in a row */
    ngx_msec_t                           backoff;    /* breaker, ms */
    unsigned                             tcp:1;      /* connect() done */
    unsigned                             ready:1;    /* handshake done */
    unsigned                             breaker:1;  /* open */
    unsigned                             exiting:1;
} ngx_http_ai_gateway_redis_worker_t;


static void ngx_http_ai_gateway_redis_connect(
    ngx_http_ai_gateway_redis_worker_t *w);
static void ngx_http_ai_gateway_redis_failed(
    ngx_http_ai_gateway_redis_worker_t *w, ngx_uint_t now);
static void ngx_http_ai_gateway_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);


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
ngx_http_ai_gateway_redis_gone(ngx_http_ai_gateway_redis_worker_t *w)
{
    w->ac = NULL;
    w->tcp = 0;

    if (w->ready) {
        w->ready = 0;
        ngx_http_ai_gateway_stats_redis_down(w->stats);
    }

    if (w->connect.timer_set) {
        ngx_del_timer(&w->connect);
    }
}


static void
ngx_http_ai_gateway_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

    ngx_uint_t                           level;
    redisAsyncContext                   *ac;
    ngx_http_ai_gateway_redis_worker_t  *w;

    if (c == NULL) {
        return;
    }

    ac = c->data;
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

    if (ac != w->ac) {
        /* dropped by us: already accounted for */
        return;
    }

    /* lost: refused, reset, closed by the server */

    level = w->breaker ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, w->log, 0, "redis \"%V\": %s: %s",
                  &w->conf->name,
                  w->tcp ? "connection lost" : "connect failed",
                  ac->c.err ? ac->c.errstr : "closed");

    ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

    ngx_http_ai_gateway_redis_gone(w);
    ngx_http_ai_gateway_redis_failed(w, 0);
}


/* give the connection up; hiredis defers the free inside a callback */
static void
ngx_http_ai_gateway_redis_drop(ngx_http_ai_gateway_redis_worker_t *w)
{
    redisAsyncContext  *ac;

    ac = w->ac;

    if (ac == NULL) {
        return;
    }

    ngx_http_ai_gateway_redis_gone(w);

    /* pending commands are called back with NULL, then cleanup runs */
    redisAsyncFree(ac);
}


static void
ngx_http_ai_gateway_redis_schedule(ngx_http_ai_gateway_redis_worker_t *w,
    ngx_msec_t delay)
{
    if (w->exiting || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(&w->reconnect, delay);
}


/* a failure: count it, open the breaker or plan a reconnect */
static void
ngx_http_ai_gateway_redis_failed(ngx_http_ai_gateway_redis_worker_t *w,
    ngx_uint_t now)
{
    w->failures++;

    if (now || w->breaker
        || w->failures >= NGX_HTTP_AI_GATEWAY_REDIS_BREAKER_FAILURES)
    {
        if (!w->breaker) {
            w->breaker = 1;
            w->backoff = NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MIN;

            ngx_log_error(NGX_LOG_WARN, w->log, 0,
                          "redis \"%V\" is unavailable after %ui failures, "
                          "not used for %M ms",
                          &w->conf->name, w->failures, w->backoff);

        } else {
            w->backoff = ngx_min(w->backoff * 2,
                                 NGX_HTTP_AI_GATEWAY_REDIS_BACKOFF_MAX);
        }

        ngx_http_ai_gateway_redis_drop(w);
        ngx_http_ai_gateway_redis_schedule(w, w->backoff);
        return;
    }

    if (w->ac == NULL) {
        ngx_http_ai_gateway_redis_schedule(w,
                                          NGX_HTTP_AI_GATEWAY_REDIS_RECONNECT);
    }
}


static void
ngx_http_ai_gateway_redis_ready(ngx_http_ai_gateway_redis_worker_t *w)
{
    if (w->connect.timer_set) {
        ngx_del_timer(&w->connect);
    }

    w->ready = 1;
    w->failures = 0;
    ngx_http_ai_gateway_stats_redis_up(w->stats);

    if (w->breaker) {
        w->breaker = 0;
        w->backoff = 0;

        ngx_log_error(NGX_LOG_NOTICE, w->log, 0,
                      "redis \"%V\" is available again", &w->conf->name);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis \"%V\" ready", &w->conf->name);
}


static void
ngx_http_ai_gateway_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis connect status:%d", status);

    /*
     * hiredis 0.14.1 frees the context right after a failed connect and
     * does not guard this callback: never free it here, cleanup tells
     */
    if (ac == w->ac && status == REDIS_OK) {
        w->tcp = 1;
    }
}


/* AUTH, SELECT and PING replies; privdata names the command for logs */
static void
ngx_http_ai_gateway_redis_handshake(redisAsyncContext *ac, void *r,
    void *privdata)
{
    char                                *what = privdata;
    redisReply                          *reply = r;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (ac != w->ac || reply == NULL) {
        /* an old connection, or this one going away: cleanup tells */
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, w->log, 0,
                      "redis \"%V\": %s failed: %*s", &w->conf->name, what,
                      (size_t) reply->len, reply->str);

        ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

        /* wrong password, wrong db: retrying at once would not help */
        ngx_http_ai_gateway_redis_failed(w, 1);
        return;
    }

    if (ngx_strcmp(what, "PING") == 0) {
        ngx_http_ai_gateway_redis_ready(w);
    }
}


static void
ngx_http_ai_gateway_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_uint_t                           level;
    ngx_http_ai_gateway_redis_worker_t  *w = ev->data;

    level = w->breaker ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, w->log, 0, "redis \"%V\": %s timed out after %M ms",
                  &w->conf->name, w->tcp ? "handshake" : "connect",
                  w->conf->connect_timeout);

    ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

    ngx_http_ai_gateway_redis_drop(w);
    ngx_http_ai_gateway_redis_failed(w, 0);
}


static void
ngx_http_ai_gateway_redis_reconnect(ngx_event_t *ev)
{
    ngx_http_ai_gateway_redis_connect(ev->data);
}


static void
ngx_http_ai_gateway_redis_connect(ngx_http_ai_gateway_redis_worker_t *w)
{
    u_char                            db[NGX_INT_T_LEN];
    size_t                            len[2];
    ngx_uint_t                        level;
    const char                       *argv[2];
    ngx_connection_t                 *c;
    redisAsyncContext                *ac;
    ngx_http_ai_gateway_redis_conf_t *conf;

    if (w->ac || w->exiting || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    conf = w->conf;
    level = w->breaker ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis connect %s:%d",
                   conf->addr, (int) conf->port);

    /* non-blocking: connect(2) returns EINPROGRESS */
    ac = redisAsyncConnect((char *) conf->addr, conf->port);

    if (ac == NULL || ac->err) {
        ngx_log_error(level, w->log, 0, "redis \"%V\": connect failed: %s",
                      &conf->name, ac ? ac->errstr : "out of memory");

        if (ac) {
            redisAsyncFree(ac);
        }

        ngx_http_ai_gateway_count(w->stats->redis_errors, 1);
        ngx_http_ai_gateway_redis_failed(w, 0);
        return;
    }

    c = ngx_get_connection(ac->c.fd, w->log);
    if (c == NULL) {
        redisAsyncFree(ac);
        ngx_http_ai_gateway_redis_failed(w, 0);
        return;
    }

    c->data = ac;
    c->log = w->log;
    c->read->log = w->log;
    c->write->log = w->log;
    c->read->handler = ngx_http_ai_gateway_redis_read_handler;
    c->write->handler = ngx_http_ai_gateway_redis_write_handler;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_ai_gateway_redis_add_read;
    ac->ev.delRead = ngx_http_ai_gateway_redis_del_read;
    ac->ev.addWrite = ngx_http_ai_gateway_redis_add_write;
    ac->ev.delWrite = ngx_http_ai_gateway_redis_del_write;
    ac->ev.cleanup = ngx_http_ai_gateway_redis_cleanup;

    w->ac = ac;
    w->tcp = 0;

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
        ngx_http_ai_gateway_redis_drop(w);
        ngx_http_ai_gateway_redis_failed(w, 0);
        return;
    }

    ngx_add_timer(&w->connect, conf->connect_timeout);
}


ngx_int_t
ngx_http_ai_gateway_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_ai_gateway_main_conf_t     *amcf;
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

    ngx_http_ai_gateway_stats_redis_forget_dead(w->stats);

    /* cancelable: a graceful shutdown does not wait for them */
    w->reconnect.handler = ngx_http_ai_gateway_redis_reconnect;
    w->reconnect.data = w;
    w->reconnect.log = cycle->log;
    w->reconnect.cancelable = 1;

    w->connect.handler = ngx_http_ai_gateway_redis_connect_timeout;
    w->connect.data = w;
    w->connect.log = cycle->log;
    w->connect.cancelable = 1;

    ngx_http_ai_gateway_store_redis_init_process(cycle, w->conf, w->stats);

    ngx_http_ai_gateway_redis_connect(w);

    return NGX_OK;
}


void
ngx_http_ai_gateway_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (w->conf == NULL) {
        return;
    }

    /* pending commands are freed without calling their handlers */
    w->exiting = 1;

    ngx_http_ai_gateway_store_redis_exit_process();

    if (w->reconnect.timer_set) {
        ngx_del_timer(&w->reconnect);
    }

    ngx_http_ai_gateway_redis_drop(w);
}


ngx_flag_t
ngx_http_ai_gateway_redis_available(void)
{
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    return w->ac != NULL && !w->breaker && !w->exiting
           && !(w->ac->c.flags & (REDIS_DISCONNECTING|REDIS_FREEING));
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

    ngx_free(cmd);
}


static void
ngx_http_ai_gateway_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                          *reply = r;
    ngx_http_ai_gateway_redis_cmd_t     *cmd = privdata;
    ngx_http_ai_gateway_redis_status_e   status;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ai_gateway redis reply:%p type:%d cmd:%p",
                   reply, reply ? reply->type : 0, cmd);

    if (reply && ac == w->ac) {
        /* Redis answers: whatever the answer, it is alive */
        w->failures = 0;
    }

    if (cmd->handler == NULL || w->exiting) {
        /* timed out, or its request is gone: nobody waits */
        ngx_http_ai_gateway_redis_free(cmd);
        return;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR && cmd->argv
        && reply->len >= 8 && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0
        && ac == w->ac && ngx_http_ai_gateway_redis_available())
    {
        /* the script cache was flushed or Redis restarted: EVAL loads it */
        if (redisAsyncCommandArgv(ac, ngx_http_ai_gateway_redis_reply, cmd,
                                  cmd->argc, cmd->argv, cmd->argvlen)
            == REDIS_OK)
        {
            cmd->argv = NULL;
            return;
        }
    }

    if (reply == NULL) {
        status = NGX_HTTP_AI_GATEWAY_REDIS_ERROR;

    } else if (reply->type == REDIS_REPLY_ERROR) {
        status = NGX_HTTP_AI_GATEWAY_REDIS_ERROR;

        ngx_http_ai_gateway_count(w->stats->redis_errors, 1);

        ngx_log_error(NGX_LOG_ERR, w->log, 0, "redis \"%V\": error reply: %*s",
                      &w->conf->name, (size_t) reply->len, reply->str);

    } else {
        status = NGX_HTTP_AI_GATEWAY_REDIS_OK;
    }

    ngx_http_ai_gateway_redis_finish(cmd, reply, status);
    ngx_http_ai_gateway_redis_free(cmd);
}


static void
ngx_http_ai_gateway_redis_timeout(ngx_event_t *ev)
{
    ngx_http_ai_gateway_redis_cmd_t     *cmd = ev->data;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;

    if (cmd->write) {
        /*
         * A slow cache write (up to max_entry_size) is no sign of a dead
         * Redis and must not open the breaker, which would send every
         * "redis_fail closed" limit zone to 429: the store counts an error
         */
        ngx_log_error(NGX_LOG_INFO, w->log, 0,
                      "redis \"%V\": cache write timed out after %M ms",
                      &w->conf->name, w->conf->write_timeout);

        ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                         NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, w->log, 0,
                  "redis \"%V\": command timed out after %M ms",
                  &w->conf->name, w->conf->timeout);

    ngx_http_ai_gateway_count(w->stats->redis_timeouts, 1);

    /* hiredis keeps the command until a reply or the free */
    ngx_http_ai_gateway_redis_finish(cmd, NULL,
                                     NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT);

    ngx_http_ai_gateway_redis_failed(w, 0);
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


/* hand cmd over: hiredis now owns it, or it is freed and NULL returned */
static ngx_http_ai_gateway_redis_cmd_t *
ngx_http_ai_gateway_redis_start(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_pool_t *pool, ngx_http_ai_gateway_redis_reply_pt handler, void *data,
    ngx_uint_t n, ngx_http_ai_gateway_redis_argv_t *cmds, ngx_flag_t multi)
{
    ngx_uint_t                           i;
    ngx_pool_cleanup_t                  *cln;
    redisAsyncContext                   *ac;
    ngx_http_ai_gateway_redis_worker_t  *w;

    w = &ngx_http_ai_gateway_redis_worker;
    ac = w->ac;
    cln = NULL;

    if (pool) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            ngx_free(cmd);
            return NULL;
        }
    }

    if (multi) {
        if (redisAsyncCommand(ac, NULL, NULL, "MULTI") != REDIS_OK) {
            ngx_free(cmd);
            return NULL;
        }

        for (i = 0; i < n; i++) {
            if (redisAsyncCommandArgv(ac, NULL, NULL, cmds[i].argc,
                                      cmds[i].argv, cmds[i].argvlen)
                != REDIS_OK)
            {
                break;
            }
        }

        if (i < n) {
            /* never leave the shared connection inside a transaction */
            if (redisAsyncCommand(ac, NULL, NULL, "DISCARD") != REDIS_OK) {
                ngx_http_ai_gateway_redis_drop(w);
                ngx_http_ai_gateway_redis_failed(w, 0);
            }

            ngx_free(cmd);
            return NULL;
        }

        if (redisAsyncCommand(ac, ngx_http_ai_gateway_redis_reply, cmd,
                              "EXEC")
            != REDIS_OK)
        {
            if (redisAsyncCommand(ac, NULL, NULL, "DISCARD") != REDIS_OK) {
                ngx_http_ai_gateway_redis_drop(w);
                ngx_http_ai_gateway_redis_failed(w, 0);
            }

            ngx_free(cmd);
            return NULL;
        }

    } else if (redisAsyncCommandArgv(ac, ngx_http_ai_gateway_redis_reply,
                                     cmd, cmds[0].argc, cmds[0].argv,
                                     cmds[0].argvlen)
               != REDIS_OK)
    {
        ngx_free(cmd);
        return NULL;
    }

    cmd->handler = handler;
    cmd->data = data;

    if (cln) {
        cln->handler = ngx_http_ai_gateway_redis_detach;
        cln->data = cmd;
        cmd->cln = cln;
    }

    cmd->timer.handler = ngx_http_ai_gateway_redis_timeout;
    cmd->timer.data = cmd;
    cmd->timer.log = w->log;

    ngx_add_timer(&cmd->timer,
                  cmd->write ? w->conf->write_timeout : w->conf->timeout);

    return cmd;
}


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

    return ngx_http_ai_gateway_redis_start(cmd, pool, handler, data, 1, &one,
                                           0);
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

    return ngx_http_ai_gateway_redis_start(cmd, pool, handler, data, n, cmds,
                                           1);
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

    return ngx_http_ai_gateway_redis_start(cmd, NULL, handler, data, n, cmds,
                                           1);
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

    /* EVALSHA first, from a copy of the EVAL vector's head */
    sha_len = 40;

    args[0] = "EVALSHA";
    lens[0] = 7;
    args[1] = (const char *) script->sha1;
    lens[1] = sha_len;

    one.argc = argc + 3;
    one.argv = args;
    one.argvlen = lens;

    cmd = ngx_http_ai_gateway_redis_start(cmd, pool, handler, data, 1, &one,
                                          0);

    if (cmd) {
        /* hiredis copied the EVALSHA; turn the vector back into EVAL */
        args[0] = "EVAL";
        lens[0] = 4;
        args[1] = (const char *) script->text.data;
        lens[1] = script->text.len;
    }

    return cmd;
}
