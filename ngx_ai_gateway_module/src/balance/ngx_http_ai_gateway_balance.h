/*
 * The upstream balancers that know inference (SPEC 8.2): least_tokens and
 * prefix, built on nginx's round-robin peers as least_conn and hash are,
 * with each peer's load in one shared zone for every worker.
 *
 *   balance_conf.c    the directive, the ring, the module, /cachez figures
 *   balance_shm.c     the shared zone: a slot per peer, kept across
 *                     reloads; a column per process, so a dead worker's
 *                     requests in flight can be taken off
 *   balance_peer.c    init_peer, get, free: the picks
 *   balance_report.c  the replicas' load reports (the ORCA header)
 */

#ifndef _NGX_HTTP_AI_GATEWAY_BALANCE_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_BALANCE_H_INCLUDED_


#include "base/ngx_http_ai_gateway_conf.h"
#include "agw_ring.h"


#define NGX_HTTP_AI_GATEWAY_BALANCE_LEAST_TOKENS  1
#define NGX_HTTP_AI_GATEWAY_BALANCE_PREFIX        2

/* processes (workers of this and earlier generations) that can hold
   requests at once, each in a column of its own */
#define NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS       64

/* a column being emptied of a dead process's requests */
#define NGX_HTTP_AI_GATEWAY_BALANCE_CLEANING      ((ngx_atomic_uint_t) -1)

/* a report older than this is not believed (SPEC 8.2: the last second) */
#define NGX_HTTP_AI_GATEWAY_BALANCE_REPORT_MSEC   1000

/* max_tokens of a request that gives none, as ai_gateway_tokens_default_max */
#define NGX_HTTP_AI_GATEWAY_BALANCE_DEFAULT_MAX   256


/*
 * One peer's figures, for all workers.  The counters are atomics: picks
 * and releases never take a lock.  A slot belongs to the peer whose name
 * ("upstream\0address") its key fingerprints, for as long as a
 * configuration names it.
 */
typedef struct {
    ngx_atomic_t                          requests;  /* in flight */
    ngx_atomic_t                          tokens;    /* estimates in flight */
    ngx_atomic_t                          picks;     /* tries sent to it */

    /* the peer's last report (ORCA), msec 0: none yet */
    ngx_atomic_t                          running;
    ngx_atomic_t                          waiting;
    ngx_atomic_t                          kv_ppm;    /* millionths */
    ngx_atomic_t                          msec;      /* ngx_current_msec */

    /* under the pool's mutex */
    uint64_t                              key;       /* the fingerprint of
                                                        "upstream\0addr";
                                                        0: free */
    ngx_uint_t                            generation; /* last placed */
    ngx_uint_t                            index;
} ngx_http_ai_gateway_balance_slot_t;


/* what one process has in flight on one peer (only it writes it) */
typedef struct {
    ngx_atomic_t                          requests;
    ngx_atomic_t                          tokens;
} ngx_http_ai_gateway_balance_cell_t;


typedef struct {
    ngx_uint_t                            nslots;
    ngx_uint_t                            generation;  /* configurations
                                                          placed */
    ngx_atomic_t                          owners[
                                       NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS];
                                                       /* pid, 0: free */
    ngx_http_ai_gateway_balance_slot_t   *slots;       /* [nslots] */
    ngx_http_ai_gateway_balance_cell_t   *cells;       /* [COLUMNS][nslots] */
} ngx_http_ai_gateway_balance_shctx_t;


/* an upstream{} with ai_gateway_balance: its server conf of this module */
typedef struct {
    ngx_uint_t                            method;  /* 0: not balanced here */
    size_t                                bytes;   /* prefix= bytes */
    ngx_uint_t                            bound;   /* thousandths */

    ngx_http_upstream_srv_conf_t         *upstream;
    ngx_uint_t                            npeers;  /* primary */
    ngx_uint_t                            nbackup;
    ngx_str_t                            *names;   /* [npeers + nbackup] */
    ngx_http_ai_gateway_balance_slot_t  **slots;   /* [npeers + nbackup],
                                                      set with the zone */
    agw_ring_point_t                     *points;  /* prefix: the ring of
                                                      the primary peers */
    size_t                                npoints;

    u_char                               *file;    /* the directive's */
    ngx_uint_t                            line;
    unsigned                              initialized:1;
} ngx_http_ai_gateway_balance_srv_conf_t;


typedef struct {
    ngx_array_t                           upstreams;  /* srv_conf_t * */
    ngx_shm_zone_t                       *zone;
    ngx_http_ai_gateway_balance_shctx_t  *sh;
    ngx_slab_pool_t                      *shpool;
    ngx_http_ai_gateway_balance_slot_t    spare;  /* a peer the zone had no
                                                     room for: this process
                                                     only */
} ngx_http_ai_gateway_balance_main_conf_t;


/* a request's balancing, the upstream's peer data */
typedef struct {
    /* the round robin data must be first */
    ngx_http_upstream_rr_peer_data_t      rrp;
    ngx_http_ai_gateway_balance_srv_conf_t  *conf;
    ngx_http_upstream_rr_peers_t         *primary;
    agw_ring_peer_t                      *ring;    /* prefix: scratch */
    uint64_t                              estimate;  /* tokens */
    uint32_t                              hash;    /* of the prefix */
    ngx_http_ai_gateway_balance_slot_t   *current; /* the last pick */
    ngx_http_ai_gateway_balance_slot_t   *charged; /* in flight, not yet
                                                      released */
    ngx_http_ai_gateway_balance_cell_t   *cell;
    unsigned                              has_prefix:1;
} ngx_http_ai_gateway_balance_peer_data_t;


extern ngx_module_t  ngx_http_ai_gateway_balance_module;


/* balance_shm.c */
ngx_int_t ngx_http_ai_gateway_balance_zone_add(ngx_conf_t *cf,
    ngx_http_ai_gateway_balance_main_conf_t *bmcf);
ngx_int_t ngx_http_ai_gateway_balance_init_process(ngx_cycle_t *cycle);
void ngx_http_ai_gateway_balance_exit_process(ngx_cycle_t *cycle);
void ngx_http_ai_gateway_balance_charge(
    ngx_http_ai_gateway_balance_peer_data_t *bp,
    ngx_http_ai_gateway_balance_slot_t *slot);
void ngx_http_ai_gateway_balance_release(
    ngx_http_ai_gateway_balance_peer_data_t *bp);

/* balance_peer.c */
ngx_int_t ngx_http_ai_gateway_balance_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);

/* balance_report.c */
ngx_int_t ngx_http_ai_gateway_balance_filter_init(ngx_conf_t *cf);


/*
 * /cachez (core/): "upstreams" in JSON, as `,"upstreams":{...}`, and the
 * Prometheus series; the size first, for the buffer
 */
size_t ngx_http_ai_gateway_balance_cachez_size(void);
u_char *ngx_http_ai_gateway_balance_cachez_json(u_char *p);
u_char *ngx_http_ai_gateway_balance_cachez_prometheus(u_char *p);


#endif /* _NGX_HTTP_AI_GATEWAY_BALANCE_H_INCLUDED_ */
