/*
 * The flight zone's layout (flight/ only): what flight.c (the table, the
 * buffers) and flight_wake.c (the workers, their wake-ups, recovery)
 * share.  See flight.c for the design.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_FLIGHT_ZONE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_FLIGHT_ZONE_H_INCLUDED_


#include "base/ngx_http_ai_gateway_stats.h"
#include "flight/ngx_http_ai_gateway_flight.h"


/* bumped with any change of the structures below (a reload that brings a
 * module of another layout must not adopt the zone) */
#define NGX_HTTP_AI_GATEWAY_FLIGHT_MAGIC    0x41475746  /* "AGWF" */
#define NGX_HTTP_AI_GATEWAY_FLIGHT_VERSION  2

/* a bit per worker slot (ngx_process_slot < NGX_MAX_PROCESSES) */
#define NGX_HTTP_AI_GATEWAY_FLIGHT_WORDS                                     \
    ((NGX_MAX_PROCESSES + 63) / 64)

/* wake-ups a worker may have queued before it reads them */
#define NGX_HTTP_AI_GATEWAY_FLIGHT_RING     512


typedef struct ngx_http_ai_gateway_flight_chunk_s
    ngx_http_ai_gateway_flight_chunk_t;

/* a piece of an answer's body: slab slots of 256 bytes up to a page */
struct ngx_http_ai_gateway_flight_chunk_s {
    ngx_http_ai_gateway_flight_chunk_t  *next;
    uint32_t                             len;      /* bytes held */
    uint32_t                             cap;      /* bytes it can hold */
    u_char                               data[1];
};


struct ngx_http_ai_gateway_flight_node_s {
    ngx_rbtree_node_t                    node;     /* key: digest prefix */
    ngx_queue_t                          all;      /* every node, for the
                                                      recovery of a dead
                                                      worker's part */
    u_char                               digest[AGW_DIGEST_LEN];
    uint64_t                             id;       /* unique in the zone:
                                                      wake-ups name it */

    /* the leader: its worker's slot and registration, its pid */
    ngx_uint_t                           leader_slot;
    uint64_t                             leader_gen;
    ngx_pid_t                            leader_pid;

    ngx_uint_t                           state;    /* FLIGHT_RUNNING... */

    /* references: the leader's, one per worker that follows the flight
     * (a bit in followed), and the stores' reading the buffer (holds, all
     * from the leader's worker) */
    unsigned                             leading:1;
    unsigned                             in_tree:1;
    unsigned                             headers_ready:1;
    unsigned                             ring:1;   /* keeps only its last
                                                      `keep` bytes */
    unsigned                             trimmed:1;
    ngx_uint_t                           holds;
    ngx_uint_t                           followers;
    uint64_t                             followed[
                                           NGX_HTTP_AI_GATEWAY_FLIGHT_WORDS];

    off_t                                content_length;
    u_char                              *headers;  /* agw headers blob */
    size_t                               headers_len;

    /* the body: bytes [start, len) in the chunks from head to tail */
    ngx_http_ai_gateway_flight_chunk_t  *head;
    ngx_http_ai_gateway_flight_chunk_t  *tail;
    size_t                               start;
    size_t                               len;
    size_t                               keep;
};


/* a wake-up queued for a worker: the flight that moved */
typedef struct {
    ngx_http_ai_gateway_flight_node_t   *node;
    uint64_t                             id;
} ngx_http_ai_gateway_flight_wake_t;


/* a worker slot of the master's process table, as the zone knows it */
typedef struct {
    ngx_pid_t                            pid;      /* 0: none */
    uint64_t                             gen;      /* registration */
    uint64_t                             start;    /* its start time, in
                                                      clock ticks since
                                                      boot (/proc) */
    ngx_uint_t                           signaled; /* a wake-up sent and
                                                      not yet read */
    ngx_uint_t                           nwakes;
    unsigned                             overflow:1; /* more than the ring
                                                      holds: look at all */
    ngx_http_ai_gateway_flight_wake_t   *wakes;    /* the ring */
} ngx_http_ai_gateway_flight_worker_t;


typedef struct {
    ngx_uint_t                           magic;
    ngx_uint_t                           version;
    ngx_rbtree_t                         rbtree;
    ngx_rbtree_node_t                    sentinel;
    ngx_queue_t                          all;
    uint64_t                             gen;      /* ids and registrations */
    ngx_atomic_t                         flights;  /* nodes held */
    ngx_atomic_t                         bytes;    /* body bytes held */
    ngx_atomic_t                         full;     /* no room for a flight
                                                      or its answer */
    ngx_http_ai_gateway_flight_worker_t  workers[NGX_MAX_PROCESSES];
} ngx_http_ai_gateway_flight_sh_t;


typedef struct {
    ngx_http_ai_gateway_flight_sh_t     *sh;
    ngx_slab_pool_t                     *shpool;
    size_t                               size;
} ngx_http_ai_gateway_flight_ctx_t;


/* flight.c, the zone's lock held: drop a reference, free if it was the
 * last one; take the node out of the table; end the flight (its waiters
 * woken, the leader's reference dropped) */
void ngx_http_ai_gateway_flight_unref_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn);
/* out of the table: nobody joins it any more */
void ngx_http_ai_gateway_flight_detach_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn);

typedef struct ngx_http_ai_gateway_flight_targets_s
    ngx_http_ai_gateway_flight_targets_t;

void ngx_http_ai_gateway_flight_end_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn,
    ngx_http_ai_gateway_flight_state_e state,
    ngx_http_ai_gateway_flight_targets_t *t);

/* flight_buffer.c: the body's chunks go (the lock held) */
void ngx_http_ai_gateway_flight_free_chunks_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn);

/*
 * flight_wake.c: queue wake-ups for every worker following fn (the lock
 * held), then send them (the lock released): each worker that follows it
 * gets at most one datagram until it has read its queue
 */
struct ngx_http_ai_gateway_flight_targets_s {
    ngx_uint_t                           n;
    ngx_uint_t                           local;    /* this worker's own */
    ngx_pid_t                            pids[NGX_MAX_PROCESSES];
};

void ngx_http_ai_gateway_flight_wake_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn,
    ngx_http_ai_gateway_flight_targets_t *t);
void ngx_http_ai_gateway_flight_wake_send(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_targets_t *t);

/*
 * flight_worker.c: this worker's slot and registration in the zone
 * (NGX_ERROR: none); the zone it registered with (NULL: none); whether
 * the leader of a flight it follows is gone (its flight then failed)
 */
ngx_int_t ngx_http_ai_gateway_flight_me(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_uint_t *slot, uint64_t *gen);
ngx_http_ai_gateway_flight_ctx_t *ngx_http_ai_gateway_flight_registered(
    ngx_uint_t *slot);
ngx_uint_t ngx_http_ai_gateway_flight_leader_gone(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn,
    ngx_http_ai_gateway_flight_targets_t *t);

/* flight_wake.c: this worker's wake-up socket, opened and closed */
ngx_int_t ngx_http_ai_gateway_flight_wake_open(ngx_cycle_t *cycle);
void ngx_http_ai_gateway_flight_wake_close(void);

/*
 * flight_wake.c: the worker's own record of the flights its waiters
 * follow.  attach() puts a waiter on it (fresh: the worker's bit was just
 * set in the node); detach_waiter() takes it off and says whether it was
 * the worker's last on that flight (its bit is then to be cleared).
 */
ngx_int_t ngx_http_ai_gateway_flight_attach(ngx_http_ai_gateway_flight_t *f,
    ngx_event_t *ev, ngx_uint_t fresh);
ngx_uint_t ngx_http_ai_gateway_flight_detach_waiter(
    ngx_http_ai_gateway_flight_t *f);


#endif /* _NGX_HTTP_AI_GATEWAY_FLIGHT_ZONE_H_INCLUDED_ */
