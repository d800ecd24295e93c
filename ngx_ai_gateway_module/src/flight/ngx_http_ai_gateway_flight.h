/*
 * Single flight: one request (the leader) goes upstream for a cache key
 * while identical ones (the waiters), in any worker of this nginx, read
 * its answer from shared memory as it arrives.  See flight.c.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_FLIGHT_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_FLIGHT_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "agw_key.h"


#define NGX_HTTP_AI_GATEWAY_FLIGHT_NONE    0   /* no flight: go alone */
#define NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER  1
#define NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER  2


/* what a waiter has read of the leader's answer so far */
typedef enum {
    NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING = 0,
    NGX_HTTP_AI_GATEWAY_FLIGHT_DONE,       /* complete and stored */
    NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED      /* go upstream / cut */
} ngx_http_ai_gateway_flight_state_e;


typedef struct ngx_http_ai_gateway_flight_node_s
    ngx_http_ai_gateway_flight_node_t;


/* a request's part in a flight, in its pool */
typedef struct {
    ngx_shm_zone_t                      *zone;
    ngx_http_ai_gateway_flight_node_t   *node;
    ngx_uint_t                           role;
    ngx_atomic_uint_t                    seq;       /* last seen */
    size_t                               offset;    /* body bytes read */
    ngx_msec_t                           progress;  /* last seen moving */
    ngx_msec_t                           checked;   /* leader last looked
                                                       for */
    unsigned                             headers_seen:1;
    unsigned                             finished:1;
} ngx_http_ai_gateway_flight_t;


/* one read: the headers (once ready) and the body bytes not read before */
typedef struct {
    ngx_http_ai_gateway_flight_state_e   state;
    unsigned                             headers_ready:1;
    u_char                              *headers;   /* agw headers blob */
    size_t                               headers_len;
    off_t                                content_length; /* -1: unknown */
    u_char                              *data;
    size_t                               len;
} ngx_http_ai_gateway_flight_read_t;


/* the one flight zone of this configuration, added on first use */
ngx_shm_zone_t *ngx_http_ai_gateway_flight_zone(ngx_conf_t *cf);

/* leader, waiter or none (no memory): f filled, cleanup on r->pool */
ngx_uint_t ngx_http_ai_gateway_flight_join(ngx_http_request_t *r,
    ngx_shm_zone_t *zone, const agw_digest_t *digest, size_t max,
    ngx_http_ai_gateway_flight_t *f);

/* a leader: how many wait on its running flight */
ngx_uint_t ngx_http_ai_gateway_flight_waiters(ngx_http_ai_gateway_flight_t *f);

/* the leader: its answer's headers, then its body as it passes */
void ngx_http_ai_gateway_flight_headers(ngx_http_ai_gateway_flight_t *f,
    u_char *headers, size_t len, off_t content_length);
void ngx_http_ai_gateway_flight_publish(ngx_http_ai_gateway_flight_t *f,
    u_char *data, size_t len);
void ngx_http_ai_gateway_flight_finish(ngx_http_ai_gateway_flight_t *f,
    ngx_uint_t ok);

/*
 * a waiter: NGX_OK read (out filled, data copied into r->pool), NGX_AGAIN
 * nothing new since the last read
 */
ngx_int_t ngx_http_ai_gateway_flight_read(ngx_http_request_t *r,
    ngx_http_ai_gateway_flight_t *f, ngx_http_ai_gateway_flight_read_t *out);
/* a waiter that stops reading (also done by the pool cleanup) */
void ngx_http_ai_gateway_flight_leave(ngx_http_ai_gateway_flight_t *f);


#endif /* _NGX_HTTP_AI_GATEWAY_FLIGHT_H_INCLUDED_ */
