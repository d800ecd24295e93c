/*
 * Purge of a shared-memory cache zone (ai_gateway_cache_purge).  The tree
 * is walked in its own order (digest prefix, then the full digest) a
 * slice of entries per hold of the zone's lock; between slices the lock
 * is free and the worker goes back to its event loop for a timer tick, so
 * neither other workers nor this one's connections wait for a large zone.
 * The position is kept as the last digest seen, not as a node pointer: by
 * the next slice that node may be gone.  Entries are matched by a 64-bit
 * hash of their key text or model kept in the node (a false match is a 1
 * in 2^64 chance of one extra MISS).
 *
 * The zone's `purges` count moves as a purge starts and as it ends, so
 * that a near copy of what Redis answered before or during a purge is
 * not written back after it (store_near.c).
 */

#include "store/ngx_http_ai_gateway_store_shm.h"


#define NGX_HTTP_AI_GATEWAY_SHM_PURGE_SLICE  128


typedef struct {
    ngx_http_request_t                 *r;
    ngx_http_ai_gateway_shm_ctx_t      *ctx;
    ngx_http_ai_gateway_purge_done_pt   done;
    ngx_http_ai_gateway_purge_by_e      by;
    uint64_t                            hash;
    ngx_uint_t                          purged;
    ngx_event_t                         event;
    ngx_rbtree_key_t                    key;      /* the last node seen */
    u_char                              digest[sizeof(agw_digest_t)];
    unsigned                            started:1;
} ngx_http_ai_gateway_shm_purge_t;


static void ngx_http_ai_gateway_shm_purge_slice(ngx_event_t *ev);
static void ngx_http_ai_gateway_shm_purge_cleanup(void *data);


uint64_t
ngx_http_ai_gateway_shm_purge_hash(const u_char *data, size_t len)
{
    uint64_t      hash;
    agw_digest_t  digest;
    agw_sha256_t  sha;

    if (len == 0) {
        return 0;
    }

    agw_sha256_init(&sha);
    agw_sha256_update(&sha, data, len);
    agw_digest_final(&digest, &sha);

    ngx_memcpy(&hash, digest.bytes, sizeof(uint64_t));

    /* 0 means none */
    return hash ? hash : 1;
}


ngx_int_t
ngx_http_ai_gateway_store_shm_purge(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_purge_by_e by,
    ngx_str_t *value, ngx_http_ai_gateway_purge_done_pt done)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_ai_gateway_shm_purge_t  *pg;

    pg = ngx_pcalloc(r->pool, sizeof(ngx_http_ai_gateway_shm_purge_t));
    if (pg == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    pg->r = r;
    pg->ctx = store->data;
    pg->done = done;
    pg->by = by;
    pg->hash = (by == NGX_HTTP_AI_GATEWAY_PURGE_ALL)
               ? 0 : ngx_http_ai_gateway_shm_purge_hash(value->data,
                                                        value->len);

    ngx_http_ai_gateway_event_init(&pg->event,
                                   ngx_http_ai_gateway_shm_purge_slice,
                                   r->connection->log);

    cln->handler = ngx_http_ai_gateway_shm_purge_cleanup;
    cln->data = pg;

    ngx_http_ai_gateway_count(pg->ctx->sh->purges, 1);

    /* the first slice once this handler has returned */
    ngx_post_event(&pg->event, &ngx_posted_events);

    return NGX_AGAIN;
}


/* the first node after the last one seen, in the tree's order */
static ngx_rbtree_node_t *
ngx_http_ai_gateway_shm_purge_next_locked(ngx_http_ai_gateway_shm_purge_t *pg)
{
    ngx_int_t                        rc;
    ngx_rbtree_t                    *tree;
    ngx_rbtree_node_t               *node, *sentinel, *found;
    ngx_http_ai_gateway_shm_node_t  *sn;

    tree = &pg->ctx->sh->rbtree;
    node = tree->root;
    sentinel = tree->sentinel;

    if (node == sentinel) {
        return NULL;
    }

    if (!pg->started) {
        return ngx_rbtree_min(node, sentinel);
    }

    found = NULL;

    while (node != sentinel) {

        if (node->key != pg->key) {
            rc = (node->key > pg->key) ? 1 : -1;

        } else {
            sn = (ngx_http_ai_gateway_shm_node_t *) node;
            rc = ngx_memcmp(sn->digest, pg->digest, sizeof(pg->digest));
        }

        if (rc > 0) {
            found = node;
            node = node->left;

        } else {
            node = node->right;
        }
    }

    return found;
}


static void
ngx_http_ai_gateway_shm_purge_slice(ngx_event_t *ev)
{
    time_t                           now;
    uint64_t                         hash;
    ngx_uint_t                       n;
    ngx_rbtree_node_t               *node, *next;
    ngx_http_ai_gateway_shm_ctx_t   *ctx;
    ngx_http_ai_gateway_shm_node_t  *sn;
    ngx_http_ai_gateway_shm_purge_t *pg;

    pg = ngx_http_ai_gateway_event_owner(ev, ngx_http_ai_gateway_shm_purge_t,
                                         event);
    ctx = pg->ctx;
    now = ngx_time();

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = ngx_http_ai_gateway_shm_purge_next_locked(pg);

    for (n = 0; node && n < NGX_HTTP_AI_GATEWAY_SHM_PURGE_SLICE; n++) {
        sn = (ngx_http_ai_gateway_shm_node_t *) node;
        next = ngx_rbtree_next(&ctx->sh->rbtree, node);

        pg->started = 1;
        pg->key = node->key;
        ngx_memcpy(pg->digest, sn->digest, sizeof(pg->digest));

        switch (pg->by) {
        case NGX_HTTP_AI_GATEWAY_PURGE_KEY:
            hash = sn->key_hash;
            break;
        case NGX_HTTP_AI_GATEWAY_PURGE_MODEL:
            hash = sn->model_hash;
            break;
        default: /* ALL */
            hash = 0;
        }

        if (hash == pg->hash) {
            if ((time_t) sn->expires > now) {
                pg->purged++;

            } else {
                ngx_http_ai_gateway_count(ctx->sh->stats.expired, 1);
            }

            ngx_http_ai_gateway_shm_delete_locked(ctx, sn);
        }

        node = next;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (node) {
        /* more: give the lock and the event loop a turn */
        ngx_add_timer(ev, 1);
        return;
    }

    ngx_http_ai_gateway_count(ctx->sh->purges, 1);

    pg->done(pg->r, NGX_OK, pg->purged);
}


static void
ngx_http_ai_gateway_shm_purge_cleanup(void *data)
{
    ngx_http_ai_gateway_shm_purge_t *pg = data;

    if (pg->event.timer_set) {
        ngx_del_timer(&pg->event);
    }

    if (pg->event.posted) {
        ngx_delete_posted_event(&pg->event);
    }
}
