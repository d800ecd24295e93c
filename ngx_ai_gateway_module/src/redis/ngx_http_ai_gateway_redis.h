/*
 * The Redis connection (ai_gateway_redis, SPEC 3.3): one hiredis async
 * connection per worker, driven by nginx's own event loop, with pipelined
 * commands, a timer on every command, reconnects with back-off and a
 * circuit breaker.  Users (the Redis cache store, the Redis limiter) only
 * see the command API below; the connection knows commands and replies,
 * nothing else.  It creates no store and starts none: what its users run
 * in every worker with it, they register (ngx_http_ai_gateway_redis_on_
 * worker()).
 *
 * Contract of a command: ngx_http_ai_gateway_redis_send() and friends
 * return NULL when Redis cannot be used right now (not configured, not
 * connected, breaker open, out of memory): the caller goes on without
 * Redis at once.  Otherwise the handler is called exactly once, later and
 * never from inside the send call, with
 *
 *   NGX_HTTP_AI_GATEWAY_REDIS_OK       reply != NULL, not an error reply
 *   NGX_HTTP_AI_GATEWAY_REDIS_ERROR    reply is an error reply, or NULL
 *                                      when the connection went away
 *   NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT  reply NULL, "timeout" elapsed
 *
 * The reply belongs to hiredis and is freed when the handler returns: copy
 * what is needed.  When `pool` is a request's pool, the command is
 * detached when the pool is destroyed first: the handler is then never
 * called and a late reply is dropped.  The handler runs outside the
 * request's own event handlers (resume the request accordingly).
 */

#ifndef _NGX_HTTP_AI_GATEWAY_REDIS_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>

#include "base/ngx_http_ai_gateway_conf.h"


struct ngx_http_ai_gateway_redis_conf_s {
    ngx_str_t                          name;     /* HOST:PORT as written */
    u_char                            *addr;     /* resolved, NUL-ended */
    in_port_t                          port;
    ngx_uint_t                         db;
    ngx_flag_t                         cluster;  /* a Redis Cluster seed */
    ngx_str_t                          password;
    ngx_str_t                          prefix;   /* of every key */
    ngx_msec_t                         connect_timeout;
    ngx_msec_t                         timeout;  /* of every command */
    ngx_msec_t                         write_timeout; /* of cache writes */
    size_t                             max_entry_size; /* of the cache */
    ngx_array_t                        workers;  /* worker_hook_t */
};


typedef enum {
    NGX_HTTP_AI_GATEWAY_REDIS_OK = 0,
    NGX_HTTP_AI_GATEWAY_REDIS_ERROR,
    NGX_HTTP_AI_GATEWAY_REDIS_TIMEOUT
} ngx_http_ai_gateway_redis_status_e;


typedef struct ngx_http_ai_gateway_redis_cmd_s
    ngx_http_ai_gateway_redis_cmd_t;

typedef void (*ngx_http_ai_gateway_redis_reply_pt)(redisReply *reply,
    ngx_http_ai_gateway_redis_status_e status, void *data);


/* one command of a MULTI/EXEC block */
typedef struct {
    int                                argc;
    const char                       **argv;
    const size_t                      *argvlen;
} ngx_http_ai_gateway_redis_argv_t;


/* a Lua script run with EVALSHA, loaded with EVAL on NOSCRIPT */
typedef struct {
    ngx_str_t                          text;     /* outlives commands */
    u_char                             sha1[41]; /* hex, NUL-ended */
} ngx_http_ai_gateway_redis_script_t;


/*
 * What a user of the connection runs in every worker: start once the
 * worker's connection is set up (before it connects), stop when the worker
 * exits, before the connection is dropped
 */
typedef void (*ngx_http_ai_gateway_redis_start_pt)(ngx_cycle_t *cycle,
    void *data);
typedef void (*ngx_http_ai_gateway_redis_stop_pt)(void *data);

typedef struct {
    ngx_http_ai_gateway_redis_start_pt  start;
    ngx_http_ai_gateway_redis_stop_pt   stop;     /* NULL: none */
    void                               *data;
} ngx_http_ai_gateway_redis_worker_hook_t;


/*
 * SCAN over the whole keyspace: every master of a cluster, each to the end
 * of its own cursor, one after the other (SCAN names no key: it cannot be
 * routed), or the one server.  The caller fills pool (a request's, or
 * NULL), pattern, count (COUNT's argument, as text), handler and data,
 * and calls scan_start().  The handler gets each batch: keys, an array
 * reply of strings (the reply's, freed when the handler returns), with
 * status OK, and done set on the last one; or NULL and ERROR (a node that
 * cannot be asked or left the map, a bad reply), which ends the scan.
 * After a batch that is not the last, the caller asks for the next one
 * with scan_next() once it is ready for it.  Both return NGX_AGAIN (the
 * handler will be called) or NGX_ERROR (it will not).
 */
#define NGX_HTTP_AI_GATEWAY_REDIS_SCAN_NODES  64

typedef struct ngx_http_ai_gateway_redis_scan_s
    ngx_http_ai_gateway_redis_scan_t;

typedef void (*ngx_http_ai_gateway_redis_scan_pt)(
    ngx_http_ai_gateway_redis_scan_t *scan, redisReply *keys,
    ngx_http_ai_gateway_redis_status_e status);

struct ngx_http_ai_gateway_redis_scan_s {
    ngx_pool_t                         *pool;
    ngx_str_t                           pattern;  /* MATCH */
    ngx_str_t                           count;    /* COUNT */
    ngx_http_ai_gateway_redis_scan_pt   handler;
    void                               *data;
    unsigned                            done:1;   /* the last batch */

    /* the scan's own */
    ngx_uint_t                          nodes[
                                        NGX_HTTP_AI_GATEWAY_REDIS_SCAN_NODES];
    ngx_uint_t                          nnodes;
    ngx_uint_t                          current;
    u_char                              cursor[NGX_INT64_LEN];
    size_t                              cursor_len;
};

ngx_int_t ngx_http_ai_gateway_redis_scan_start(
    ngx_http_ai_gateway_redis_scan_t *scan);
ngx_int_t ngx_http_ai_gateway_redis_scan_next(
    ngx_http_ai_gateway_redis_scan_t *scan);


/* ai_gateway_redis: amcf->redis, the connection's configuration */
char *ngx_http_ai_gateway_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
/* registered in the order given; ai_gateway_redis must come first */
ngx_int_t ngx_http_ai_gateway_redis_on_worker(ngx_conf_t *cf,
    ngx_http_ai_gateway_redis_start_pt start,
    ngx_http_ai_gateway_redis_stop_pt stop, void *data);

ngx_int_t ngx_http_ai_gateway_redis_init_process(ngx_cycle_t *cycle);
void ngx_http_ai_gateway_redis_exit_process(ngx_cycle_t *cycle);

/* is a command accepted right now? (no side effects) */
ngx_flag_t ngx_http_ai_gateway_redis_available(void);

ngx_http_ai_gateway_redis_cmd_t *ngx_http_ai_gateway_redis_send(
    ngx_pool_t *pool, ngx_http_ai_gateway_redis_reply_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen);

/* MULTI, the commands, EXEC: the handler gets EXEC's reply */
ngx_http_ai_gateway_redis_cmd_t *ngx_http_ai_gateway_redis_send_multi(
    ngx_pool_t *pool, ngx_http_ai_gateway_redis_reply_pt handler,
    void *data, ngx_uint_t n, ngx_http_ai_gateway_redis_argv_t *cmds);

/*
 * A fire-and-forget cache write, MULTI/EXEC as above with no pool: its own
 * (longer) write_timeout, and its failures never count towards the
 * breaker: a slow write must not stop the limiter from using Redis
 */
ngx_http_ai_gateway_redis_cmd_t *ngx_http_ai_gateway_redis_send_write(
    ngx_http_ai_gateway_redis_reply_pt handler, void *data, ngx_uint_t n,
    ngx_http_ai_gateway_redis_argv_t *cmds);

/* script->sha1 from script->text */
void ngx_http_ai_gateway_redis_script_init(
    ngx_http_ai_gateway_redis_script_t *script);

/*
 * EVALSHA sha1 numkeys argv..., and EVAL text numkeys argv... if Redis
 * answers NOSCRIPT; argv is copied, the script must outlive the command
 */
ngx_http_ai_gateway_redis_cmd_t *ngx_http_ai_gateway_redis_eval(
    ngx_pool_t *pool, ngx_http_ai_gateway_redis_reply_pt handler,
    void *data, ngx_http_ai_gateway_redis_script_t *script,
    ngx_uint_t numkeys, int argc, const char **argv,
    const size_t *argvlen);


#endif /* _NGX_HTTP_AI_GATEWAY_REDIS_H_INCLUDED_ */
