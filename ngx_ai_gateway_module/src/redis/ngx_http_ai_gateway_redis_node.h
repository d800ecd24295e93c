/*
 * What the files of the Redis connection share (redis/ only; users see
 * ngx_http_ai_gateway_redis.h): the nodes, the commands in flight and the
 * worker's state, and the functions that pass them between the concerns.
 *
 *   redis_conf.c        ai_gateway_redis, the users' per-worker hooks
 *   redis_connection.c  hiredis on nginx's event loop: connect, handshake,
 *                       the worker's start and exit
 *   redis_breaker.c     failures counted per node, the breaker, back-off
 *   redis_command.c     the command API: queue, timers, replies
 *   redis_cluster.c     the nodes, routing, MOVED and ASK, parking
 *   redis_cluster_map.c the slot map: CLUSTER SLOTS, nodes that leave
 *   redis_scan.c        SCAN over every master
 *   redis_script.c      EVALSHA, and EVAL on NOSCRIPT
 */

#ifndef _NGX_HTTP_AI_GATEWAY_REDIS_NODE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_REDIS_NODE_H_INCLUDED_


#include "base/ngx_http_ai_gateway_event.h"
#include "base/ngx_http_ai_gateway_stats.h"
#include "redis/ngx_http_ai_gateway_redis.h"

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


/* where a MOVED or ASK answer sends a command: an address, as it said */
typedef struct {
    ngx_uint_t                           kind;     /* MOVED, ASK; 0: none */
    ngx_uint_t                           slot;
    in_port_t                            port;
    u_char                               addr[NGX_SOCKADDR_STRLEN + 1];
} ngx_http_ai_gateway_redis_redirect_t;


struct ngx_http_ai_gateway_redis_cmd_s {
    ngx_http_ai_gateway_redis_reply_pt   handler;  /* NULL once done */
    void                                *data;
    ngx_event_t                          timer;
    ngx_pool_cleanup_t                  *cln;      /* in the caller's pool */
    ngx_http_ai_gateway_redis_node_t    *node;     /* sent to */
    unsigned                             write:1;  /* a cache write */
    unsigned                             multi:1;
    unsigned                             noscript:1; /* EVAL sent */
    unsigned                             allocated:1; /* block: ngx_alloc */
    unsigned                             parked:1; /* waits for the map */
    unsigned                             late:1;   /* a write past its
                                                      write_timeout, still
                                                      unanswered */
    ngx_uint_t                           writes_before; /* the node's
                                                      writes_sent when this
                                                      was queued */
    ngx_uint_t                           redirects;
    ngx_http_ai_gateway_redis_redirect_t redirect; /* a queued command's,
                                                      inside MULTI; or where
                                                      a parked one goes */
    ngx_queue_t                          queue;    /* parked */
    ngx_uint_t                           wants;    /* parked: the map it
                                                      waits for (asked) */

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
    ngx_uint_t                           id;         /* never reused */
    ngx_uint_t                           map;        /* the last map that
                                                        named it */
    redisAsyncContext                   *ac;
    redisAsyncContext                   *closing;    /* left the map: its
                                                        connection, until
                                                        its replies are in */
    ngx_event_t                          reconnect;
    ngx_event_t                          connect;    /* and handshake */
    ngx_event_t                          close;      /* bounds closing */
    ngx_uint_t                           failures;   /* in a row */
    ngx_msec_t                           backoff;    /* breaker, ms */

    /*
     * cache writes queued here, and answered (a reply, or the end of
     * their connection): Redis answers in order, so a command queued
     * after the writes_sent-th write waits on it while writes_answered
     * is below that; writes_late of the unanswered are past their
     * write_timeout
     */
    ngx_uint_t                           writes_sent;
    ngx_uint_t                           writes_answered;
    ngx_uint_t                           writes_late;
    unsigned                             tcp:1;      /* connect() done */
    unsigned                             ready:1;    /* handshake done */
    unsigned                             breaker:1;  /* open */
    unsigned                             retired:1;  /* not in the map: no
                                                        command goes here;
                                                        free once closed */
};


typedef struct {
    ngx_http_ai_gateway_redis_conf_t    *conf;
    ngx_http_ai_gateway_shared_stats_t  *stats;
    ngx_log_t                           *log;
    ngx_http_ai_gateway_redis_node_t    *nodes;      /* the seed first */
    ngx_uint_t                           nnodes;
    ngx_uint_t                           nready;
    u_char                              *slots;      /* node of each slot */
    u_char                              *next;       /* the map being read */
    ngx_uint_t                           map;        /* maps read */
    ngx_uint_t                           asked;      /* CLUSTER SLOTS sent */
    ngx_uint_t                           ids;        /* nodes ever made */
    ngx_queue_t                          parked;     /* commands redirected
                                                        to an address not in
                                                        the map, waiting for
                                                        the next map */
    ngx_event_t                          refresh;    /* CLUSTER SLOTS */
    unsigned                             cluster:1;
    unsigned                             mapped:1;   /* slots known */
    unsigned                             refreshing:1;
    unsigned                             exiting:1;
} ngx_http_ai_gateway_redis_worker_t;


/* this worker's connection (redis_connection.c) */
extern ngx_http_ai_gateway_redis_worker_t  ngx_http_ai_gateway_redis_worker;


/* redis_connection.c */
void ngx_http_ai_gateway_redis_connect(ngx_http_ai_gateway_redis_node_t *node);
void ngx_http_ai_gateway_redis_node_init(ngx_http_ai_gateway_redis_node_t *node,
    ngx_uint_t index, ngx_log_t *log);
/* give the connection up; hiredis defers the free inside a callback */
void ngx_http_ai_gateway_redis_drop(ngx_http_ai_gateway_redis_node_t *node);
/* a node the map no longer names: no new command, close once answered */
void ngx_http_ai_gateway_redis_retire(ngx_http_ai_gateway_redis_node_t *node);
ngx_flag_t ngx_http_ai_gateway_redis_stopping(void);
/* can a command be sent to this node right now? */
ngx_flag_t ngx_http_ai_gateway_redis_usable(
    ngx_http_ai_gateway_redis_node_t *node);

/* redis_breaker.c */
/* a failure: count it, open the breaker or plan a reconnect */
void ngx_http_ai_gateway_redis_failed(ngx_http_ai_gateway_redis_node_t *node,
    ngx_uint_t now);
/* the handshake is done: the node takes commands (the breaker closes) */
void ngx_http_ai_gateway_redis_ready(ngx_http_ai_gateway_redis_node_t *node);

/* redis_command.c */
ngx_http_ai_gateway_redis_cmd_t *ngx_http_ai_gateway_redis_alloc(
    size_t extra);
ngx_int_t ngx_http_ai_gateway_redis_queue(
    ngx_http_ai_gateway_redis_node_t *node,
    ngx_http_ai_gateway_redis_cmd_t *cmd, ngx_uint_t n,
    ngx_http_ai_gateway_redis_argv_t *cmds, ngx_flag_t multi,
    ngx_flag_t asking);
ngx_http_ai_gateway_redis_cmd_t *ngx_http_ai_gateway_redis_start(
    ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_http_ai_gateway_redis_node_t *node, const char *key, size_t keylen,
    ngx_pool_t *pool, ngx_http_ai_gateway_redis_reply_pt handler, void *data,
    ngx_uint_t n, ngx_http_ai_gateway_redis_argv_t *cmds, ngx_flag_t multi);
void ngx_http_ai_gateway_redis_finish(ngx_http_ai_gateway_redis_cmd_t *cmd,
    redisReply *reply, ngx_http_ai_gateway_redis_status_e status);
void ngx_http_ai_gateway_redis_free(ngx_http_ai_gateway_redis_cmd_t *cmd);
void ngx_http_ai_gateway_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);

/* redis_cluster.c */
/* the node of the map at addr:port (addr NUL-ended), or NULL */
ngx_http_ai_gateway_redis_node_t *ngx_http_ai_gateway_redis_node_find(
    u_char *addr, in_port_t port);
/* the node of the map with this id, or NULL */
ngx_http_ai_gateway_redis_node_t *ngx_http_ai_gateway_redis_node_by_id(
    ngx_uint_t id);
/* host[0..len) as a NUL-ended address in buf; NGX_ERROR if not one */
ngx_int_t ngx_http_ai_gateway_redis_address(u_char *host, size_t len,
    u_char *buf);
/* the map was read again (ok), or could not be: parked commands go on */
void ngx_http_ai_gateway_redis_mapped(ngx_flag_t ok);
/* the node that owns a key; the seed while the slots are not known */
ngx_http_ai_gateway_redis_node_t *ngx_http_ai_gateway_redis_route(
    const char *key, size_t len);

/* redis_cluster_map.c */
/* read the slot map after delay ms (0: at once, but not from a reply) */
void ngx_http_ai_gateway_redis_refresh_later(ngx_msec_t delay);
void ngx_http_ai_gateway_redis_refresh_handler(ngx_event_t *ev);
/* MOVED or ASK, and where to: the kind, or 0 for another reply */
ngx_uint_t ngx_http_ai_gateway_redis_redirection(redisReply *reply,
    ngx_http_ai_gateway_redis_redirect_t *rd);
void ngx_http_ai_gateway_redis_queued(redisAsyncContext *ac, void *r,
    void *privdata);
/*
 * send cmd's block again where a MOVED or ASK points: NGX_OK sent,
 * NGX_DONE answered already, NGX_AGAIN parked until the next map (an
 * address not in the map), NGX_ERROR not followed
 */
ngx_int_t ngx_http_ai_gateway_redis_redirect(
    ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_http_ai_gateway_redis_redirect_t *rd);
/* a parked command timed out: no longer parked */
void ngx_http_ai_gateway_redis_unpark(ngx_http_ai_gateway_redis_cmd_t *cmd);
/* the worker exits: parked commands are freed, unanswered */
void ngx_http_ai_gateway_redis_drop_parked(void);
/* a cluster keeps a copy of the commands, to send them again elsewhere */
ngx_int_t ngx_http_ai_gateway_redis_keep(ngx_http_ai_gateway_redis_cmd_t *cmd,
    ngx_uint_t n, ngx_http_ai_gateway_redis_argv_t *cmds);


#endif /* _NGX_HTTP_AI_GATEWAY_REDIS_NODE_H_INCLUDED_ */
