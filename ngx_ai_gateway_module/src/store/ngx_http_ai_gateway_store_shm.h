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
    uint32_t                            expires;  /* unix seconds (to 2106:
                                                     the node stays within
                                                     a 128-byte slot) */
    uint16_t                            refs;     /* requests reading it in
                                                     pieces */
    uint16_t                            dead;     /* out of the tree and the
                                                     LRU, freed with its
                                                     last reference */
    uint32_t                            len;      /* entry bytes */
    uint32_t                            size;     /* slab bytes held */
    ngx_http_ai_gateway_shm_chunk_t    *chunks;
    u_char                              digest[sizeof(agw_digest_t)];
    uint64_t                            key_hash;   /* of the key text and */
    uint64_t                            model_hash; /* the model, for purge */
} ngx_http_ai_gateway_shm_node_t;


/*
 * A reference on an entry, recorded with the worker (slot and pid) that
 * holds it, so that the references of a worker that died can be dropped
 * by the worker the master starts in its place (store_shm_read.c)
 */
typedef struct {
    ngx_queue_t                         queue;    /* the zone's */
    ngx_http_ai_gateway_shm_node_t     *node;
    ngx_pid_t                           pid;
    ngx_uint_t                          slot;
} ngx_http_ai_gateway_shm_ref_t;


/*
 * bumped whenever the layout of the zone's structures (this one, the
 * nodes, the counters) or the key digest changes: a reload never hands a
 * zone to workers that would read it differently
 */
#define NGX_HTTP_AI_GATEWAY_SHM_VERSION  5    /* 3: coalesced, stale;
                                                 4: agw-key-v4, entries
                                                 with fresh_until;
                                                 5: references, purges */


typedef struct {
    ngx_uint_t                          version;
    ngx_rbtree_t                        rbtree;
    ngx_rbtree_node_t                   sentinel;
    ngx_queue_t                         lru;
    ngx_http_ai_gateway_cache_stats_t   stats;
    ngx_atomic_t                        purges;   /* bumped as a purge starts
                                                     and as it ends */
    ngx_queue_t                         refs;     /* shm_ref_t */
} ngx_http_ai_gateway_shm_sh_t;


typedef struct {
    ngx_http_ai_gateway_shm_sh_t       *sh;
    ngx_slab_pool_t                    *shpool;
    ngx_http_ai_gateway_store_t        *store;
} ngx_http_ai_gateway_shm_ctx_t;


/* store_shm.c: drop an entry (the zone's lock held); a referenced one
 * leaves the tree and the LRU now and its memory with its last reference */
void ngx_http_ai_gateway_shm_delete_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_http_ai_gateway_shm_node_t *sn);
void ngx_http_ai_gateway_shm_free_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_http_ai_gateway_shm_node_t *sn);
ngx_http_ai_gateway_shm_node_t *ngx_http_ai_gateway_shm_find_locked(
    ngx_http_ai_gateway_shm_ctx_t *ctx, const u_char *digest);

/* the tree's key: the digest's first bytes (a SHA-256 is uniform) */
static ngx_inline ngx_rbtree_key_t
ngx_http_ai_gateway_shm_hash(const u_char *digest)
{
    ngx_rbtree_key_t  key;

    ngx_memcpy(&key, digest, sizeof(ngx_rbtree_key_t));

    return key;
}


/* store_shm_save.c: the store's save (store->save) */
ngx_int_t ngx_http_ai_gateway_store_shm_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl);

/*
 * store_shm.c: save, as the store's save(), but only if no purge of the
 * zone started or ended since it read `purges` (a near copy of what Redis
 * answered before a purge must not come back after it)
 */
ngx_int_t ngx_http_ai_gateway_store_shm_save_since(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src, time_t ttl,
    ngx_atomic_uint_t purges);
ngx_atomic_uint_t ngx_http_ai_gateway_store_shm_purges(
    ngx_http_ai_gateway_store_t *store);

/* store_shm_read.c: lookup, read in pieces, and the references */
ngx_int_t ngx_http_ai_gateway_shm_lookup(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_http_ai_gateway_found_t *found,
    ngx_http_ai_gateway_store_done_pt done, void *data);
size_t ngx_http_ai_gateway_shm_read(ngx_http_ai_gateway_store_t *store,
    ngx_http_ai_gateway_found_t *found, size_t offset, u_char *buf,
    size_t len);
ngx_int_t ngx_http_ai_gateway_shm_init_process(
    ngx_http_ai_gateway_store_t *store, ngx_cycle_t *cycle);
ngx_int_t ngx_http_ai_gateway_shm_exit_process(
    ngx_http_ai_gateway_store_t *store, ngx_cycle_t *cycle);

/* store_shm_purge.c */
ngx_int_t ngx_http_ai_gateway_store_shm_purge(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_purge_by_e by,
    ngx_str_t *value, ngx_http_ai_gateway_purge_done_pt done);
/* the 64-bit hash of a key text or a model that purge matches; 0: none */
uint64_t ngx_http_ai_gateway_shm_purge_hash(const u_char *data, size_t len);


#endif /* _NGX_HTTP_AI_GATEWAY_STORE_SHM_H_INCLUDED_ */
