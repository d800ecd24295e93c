/*
 * Single flight: one request (the leader) goes upstream for a key while
 * identical ones (the waiters), in any worker of this nginx, read its
 * answer from shared memory as it arrives, woken by the worker that wrote
 * it.  The leader's answer passes through its flight's buffer whether or
 * not anyone waits: it is the one copy the store is written from.  See
 * flight.c (the table and the buffers) and flight_wake.c (the wake-ups).
 */

#ifndef _NGX_HTTP_AI_GATEWAY_FLIGHT_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_FLIGHT_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "agw_key.h"


#define NGX_HTTP_AI_GATEWAY_FLIGHT_NONE    0   /* no flight: go alone */
#define NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER  1
#define NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER  2

/* the default size of the flight zone (ai_gateway_cache_lock_zone) */
#define NGX_HTTP_AI_GATEWAY_FLIGHT_SIZE    (64 * 1024 * 1024)


/* where a flight stands */
typedef enum {
    NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING = 0,
    NGX_HTTP_AI_GATEWAY_FLIGHT_DONE,      /* complete: all of it is in */
    NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED,    /* before the headers: go
                                             upstream; after: cut */
    NGX_HTTP_AI_GATEWAY_FLIGHT_STALE      /* the upstream failed and the
                                             leader answers with its stale
                                             entry: so may the waiters */
} ngx_http_ai_gateway_flight_state_e;


typedef struct ngx_http_ai_gateway_flight_node_s
    ngx_http_ai_gateway_flight_node_t;


/* a request's part in a flight, in its pool */
typedef struct {
    ngx_shm_zone_t                      *zone;
    ngx_http_ai_gateway_flight_node_t   *node;
    uint64_t                             id;        /* the node's */
    ngx_uint_t                           role;

    /* a waiter: where it reads, and how it is woken */
    size_t                               offset;    /* body bytes read */
    void                                *cursor;    /* the chunk holding
                                                       offset, if any */
    size_t                               cursor_start;
    ngx_queue_t                          queue;     /* its worker's list of
                                                       the flight's waiters */
    void                                *follower;
    ngx_event_t                         *wake;      /* posted when the
                                                       flight moves */

    unsigned                             headers_seen:1;
    unsigned                             finished:1;
    unsigned                             publishing:1; /* the leader copies
                                                       its answer in */
} ngx_http_ai_gateway_flight_t;


/* one read of a waiter */
typedef struct {
    ngx_http_ai_gateway_flight_state_e   state;
    u_char                              *headers;   /* the first time they
                                                       are there, in the
                                                       request's pool */
    size_t                               headers_len;
    off_t                                content_length; /* -1: unknown */
    size_t                               len;       /* body bytes copied */
    unsigned                             more:1;    /* more body is in */
    unsigned                             end:1;     /* DONE, all read */
    unsigned                             lagged:1;  /* the bytes it had to
                                                       read next are gone */
} ngx_http_ai_gateway_flight_read_t;


/* the flight zone of this configuration, added on first use */
ngx_shm_zone_t *ngx_http_ai_gateway_flight_zone(ngx_conf_t *cf, size_t size);
/* the flight zone of a running cycle, NULL without one */
ngx_shm_zone_t *ngx_http_ai_gateway_flight_find(ngx_cycle_t *cycle);

/* per worker: register with the zone, and the wake-up socket */
ngx_int_t ngx_http_ai_gateway_flight_init_process(ngx_cycle_t *cycle,
    ngx_shm_zone_t *zone);
void ngx_http_ai_gateway_flight_exit_process(ngx_cycle_t *cycle);

/*
 * Leader, waiter or none (no memory).  A flight that is not `shared` is
 * the leader's alone: its buffer only, never in the table.  A waiter is
 * woken by posting ev whenever the flight moves, from whichever worker
 * moved it, until it leaves.  The cleanup is on r->pool.
 */
ngx_uint_t ngx_http_ai_gateway_flight_join(ngx_http_request_t *r,
    ngx_shm_zone_t *zone, const agw_digest_t *digest, ngx_flag_t shared,
    ngx_event_t *ev, ngx_http_ai_gateway_flight_t *f);

/* a leader: does anyone follow its flight? */
ngx_uint_t ngx_http_ai_gateway_flight_waiters(ngx_http_ai_gateway_flight_t *f);

/* the leader: its answer's headers, then its body as it passes */
void ngx_http_ai_gateway_flight_headers(ngx_http_ai_gateway_flight_t *f,
    u_char *headers, size_t len, off_t content_length);
/* NGX_OK, or NGX_DECLINED: no room (the flight failed) */
ngx_int_t ngx_http_ai_gateway_flight_publish(ngx_http_ai_gateway_flight_t *f,
    u_char *data, size_t len);
/*
 * an answer that will not be stored but may be shared (larger than any
 * entry): from now on the buffer keeps its last `keep` bytes, and once
 * it lets the first go nobody joins.  NGX_DECLINED: nobody waits, the
 * flight ended (publish nothing more).
 */
ngx_int_t ngx_http_ai_gateway_flight_share_only(
    ngx_http_ai_gateway_flight_t *f, size_t keep);
/* out of the table: identical requests lead a flight of their own */
void ngx_http_ai_gateway_flight_withdraw(ngx_http_ai_gateway_flight_t *f);
void ngx_http_ai_gateway_flight_finish(ngx_http_ai_gateway_flight_t *f,
    ngx_http_ai_gateway_flight_state_e state);

/*
 * The leader's answer as a store reads it: a hold keeps the buffer while
 * a store writes it out, after the request that wrote it may be gone
 */
typedef struct {
    ngx_shm_zone_t                      *zone;
    ngx_http_ai_gateway_flight_node_t   *node;
    void                                *cursor;
    size_t                               cursor_start;
} ngx_http_ai_gateway_flight_hold_t;

ngx_int_t ngx_http_ai_gateway_flight_hold(ngx_http_ai_gateway_flight_t *f,
    ngx_http_ai_gateway_flight_hold_t *hold);
/* another hold on the same buffer, released on its own */
ngx_int_t ngx_http_ai_gateway_flight_hold_more(
    ngx_http_ai_gateway_flight_hold_t *from,
    ngx_http_ai_gateway_flight_hold_t *hold);
void ngx_http_ai_gateway_flight_release(
    ngx_http_ai_gateway_flight_hold_t *hold);
/* bytes [offset, offset + len) of the body into buf: bytes copied */
size_t ngx_http_ai_gateway_flight_copy(
    ngx_http_ai_gateway_flight_hold_t *hold, size_t offset, u_char *buf,
    size_t len);

/*
 * A waiter: each read says where the flight stands and copies what is
 * new, up to size body bytes into buf (NGX_ERROR: no memory)
 */
ngx_int_t ngx_http_ai_gateway_flight_read(ngx_http_request_t *r,
    ngx_http_ai_gateway_flight_t *f, u_char *buf, size_t size,
    ngx_http_ai_gateway_flight_read_t *out);
/* a waiter that stops reading (also done by the pool cleanup) */
void ngx_http_ai_gateway_flight_leave(ngx_http_ai_gateway_flight_t *f);


/* what /cachez shows of the zone */
typedef struct {
    ngx_uint_t                           flights;
    size_t                               bytes;     /* answers held */
    size_t                               used;      /* zone pages used */
    size_t                               capacity;
    ngx_uint_t                           full;
} ngx_http_ai_gateway_flight_stats_t;

ngx_int_t ngx_http_ai_gateway_flight_stats(ngx_shm_zone_t *zone,
    ngx_http_ai_gateway_flight_stats_t *st);


#endif /* _NGX_HTTP_AI_GATEWAY_FLIGHT_H_INCLUDED_ */
