/*
 * The shared-memory store's own (store/ only): the layout of a zone, which
 * store_shm.c (the zone, lookup, save) and store_shm_purge.c (purge) share.
 */

#ifndef _NGX_HTTP_AI_GATEWAY_STORE_SHM_H_INCLUDED_
#define _NGX_HTTP_AI_GATEWAY_STORE_SHM_H_INCLUDED_


#include "base/ngx_http_ai_gateway_event.h"
#include "store/ngx_http_ai_gateway_store.h"
#include "agw_entry.h"


typedef struct ngx_http_ai_gateway_shm_chunk_s  ngx_http_ai_gateway_shm_chunk_t;

struct ngx_http_ai_gateway_shm_chunk_s {
    ngx_http_ai_gateway_shm_chunk_t    *next;
    uint32_t                            len;      /* data bytes here */
    uint32_t                            slot;     /* bytes allocated */
    u_char                              data[1];
};


typedef struct {
    ngx_rbtree_node_t                   node;     /* key: digest prefix */
    ngx_queue_t                         queue;    /* LRU */
    time_t                              expires;  /* unix seconds */
    uint32_t                            len;      /* entry bytes */
    uint32_t                            size;     /* slab bytes held */
    ngx_http_ai_gateway_shm_chunk_t    *chunks;
    u_char                              digest[sizeof(agw_digest_t)];
    uint64_t                            key_hash;   /* of the key text and */
    uint64_t                            model_hash; /* the model, for purge */
} ngx_http_ai_gateway_shm_node_t;


/*
 * bumped whenever the layout of the zone's structures (this one, the
 * nodes, the counters) or the key digest changes: a reload never hands a
 * zone to workers that would read it differently
 */
#define NGX_HTTP_AI_GATEWAY_SHM_VERSION  4    /* 3: coalesced, stale;
                                                 4: agw-key-v4, entries
                                                 with fresh_until */


typedef struct {
    ngx_uint_t                          version;
    ngx_rbtree_t                        rbtree;
    ngx_rbtree_node_t                   sentinel;
    ngx_queue_t                         lru;
    ngx_http_ai_gateway_cache_stats_t   stats;
} ngx_http_ai_gateway_shm_sh_t;


typedef struct {
    ngx_http_ai_gateway_shm_sh_t       *sh;
    ngx_slab_pool_t                    *shpool;
    ngx_http_ai_gateway_store_t        *store;
} ngx_http_ai_gateway_shm_ctx_t;


/* store_shm.c: drop an entry (the zone's lock held) */
void ngx_http_ai_gateway_shm_delete_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_http_ai_gateway_shm_node_t *sn);

/* store_shm_purge.c */
ngx_int_t ngx_http_ai_gateway_store_shm_purge(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_purge_by_e by,
    ngx_str_t *value, ngx_http_ai_gateway_purge_done_pt done);
/* the 64-bit hash of a key text or a model that purge matches; 0: none */
uint64_t ngx_http_ai_gateway_shm_purge_hash(const u_char *data, size_t len);


#endif /* _NGX_HTTP_AI_GATEWAY_STORE_SHM_H_INCLUDED_ */
