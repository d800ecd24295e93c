/*
 * Writing an entry into the shared-memory cache store: room made by
 * expiring and evicting from the LRU's end, the entry copied in a piece at
 * a time (the lock held per piece, never across a copy from a temp file),
 * and put in the tree in place of an older entry of the same key only once
 * it is whole.
 */

#include "store/ngx_http_ai_gateway_store_shm.h"


#define NGX_HTTP_AI_GATEWAY_SHM_MAX_EVICT  64
#define NGX_HTTP_AI_GATEWAY_SHM_PIECE      16384   /* bytes copied in per
                                                      hold of the lock */


/* what a save copies in before it takes the lock (one process, one at
 * a time) */
static u_char  ngx_http_ai_gateway_shm_piece[NGX_HTTP_AI_GATEWAY_SHM_PIECE];


/* the slab slot a request of `size` bytes takes: a power of two up to
 * half a page, whole pages above */
static size_t
ngx_http_ai_gateway_shm_slot(size_t size)
{
    size_t  slot;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (slot = 8; slot < size; slot <<= 1) { /* void */ }

    return slot;
}


/*
 * The slot of the next chunk when `len` bytes are left to place: the
 * largest power-of-two slot that the remainder fills, until what is left
 * fits a small slot whole.
 */
static size_t
ngx_http_ai_gateway_shm_chunk_slot(size_t len)
{
    size_t  need, slot;

    need = offsetof(ngx_http_ai_gateway_shm_chunk_t, data) + len;

    if (need <= 64 || need >= ngx_pagesize / 2) {
        return ngx_min(ngx_http_ai_gateway_shm_slot(need), ngx_pagesize / 2);
    }

    for (slot = ngx_pagesize / 2; slot > need; slot >>= 1) { /* void */ }

    return slot;
}


static void
ngx_http_ai_gateway_shm_free_chunks_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_http_ai_gateway_shm_chunk_t *chunk)
{
    ngx_http_ai_gateway_shm_chunk_t  *next;

    for ( /* void */ ; chunk; chunk = next) {
        next = chunk->next;
        ngx_slab_free_locked(ctx->shpool, chunk);
    }
}


/* drop up to `n` expired entries from the LRU tail */
static void
ngx_http_ai_gateway_shm_expire_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    time_t now, ngx_uint_t n)
{
    ngx_queue_t                     *q;
    ngx_http_ai_gateway_shm_node_t  *sn;

    while (n-- && !ngx_queue_empty(&ctx->sh->lru)) {
        q = ngx_queue_last(&ctx->sh->lru);
        sn = ngx_queue_data(q, ngx_http_ai_gateway_shm_node_t, queue);

        if ((time_t) sn->expires > now) {
            return;
        }

        ngx_http_ai_gateway_shm_delete_locked(ctx, sn);
        ngx_http_ai_gateway_count(ctx->sh->stats.expired, 1);
    }
}


/*
 * free the least recently used entry other than `keep` (the valid entry
 * a new one would replace: it goes only once the new one is in place);
 * 0 when nothing else is left
 */
static ngx_uint_t
ngx_http_ai_gateway_shm_evict_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    time_t now, ngx_http_ai_gateway_shm_node_t *keep)
{
    ngx_queue_t                     *q;
    ngx_http_ai_gateway_shm_node_t  *sn;

    q = ngx_queue_last(&ctx->sh->lru);

    if (q == ngx_queue_sentinel(&ctx->sh->lru)) {
        return 0;
    }

    sn = ngx_queue_data(q, ngx_http_ai_gateway_shm_node_t, queue);

    if (sn == keep) {
        q = ngx_queue_prev(q);

        if (q == ngx_queue_sentinel(&ctx->sh->lru)) {
            return 0;
        }

        sn = ngx_queue_data(q, ngx_http_ai_gateway_shm_node_t, queue);
    }

    if ((time_t) sn->expires > now) {
        ngx_http_ai_gateway_count(ctx->sh->stats.evictions, 1);

    } else {
        ngx_http_ai_gateway_count(ctx->sh->stats.expired, 1);
    }

    ngx_http_ai_gateway_shm_delete_locked(ctx, sn);

    return 1;
}


/*
 * Room for `size` bytes: a failed allocation evicts one entry from the
 * LRU's end and tries again, up to NGX_HTTP_AI_GATEWAY_SHM_MAX_EVICT
 * times; the valid entry a new one replaces is never the one evicted
 */
static void *
ngx_http_ai_gateway_shm_alloc_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    size_t size, time_t now, const agw_digest_t *digest)
{
    void        *p;
    ngx_uint_t   evicted;

    for (evicted = 0; /* void */; evicted++) {

        p = ngx_slab_alloc_locked(ctx->shpool, size);

        if (p || evicted == NGX_HTTP_AI_GATEWAY_SHM_MAX_EVICT
            || !ngx_http_ai_gateway_shm_evict_locked(ctx, now,
                          ngx_http_ai_gateway_shm_find_locked(ctx,
                                                             digest->bytes)))
        {
            return p;
        }
    }
}


/* the entry's bytes [pos, pos + n): its head, then its body */
static ngx_int_t
ngx_http_ai_gateway_shm_fill(u_char *buf, size_t pos, size_t n,
    u_char *head, size_t head_len, const agw_entry_t *entry,
    ngx_http_ai_gateway_source_t *src)
{
    size_t  k;

    if (pos < head_len) {
        k = ngx_min(n, head_len - pos);
        ngx_memcpy(buf, head + pos, k);
        buf += k;
        pos += k;
        n -= k;
    }

    if (n == 0) {
        return NGX_OK;
    }

    pos -= head_len;

    if (src == NULL) {
        ngx_memcpy(buf, entry->body + pos, n);
        return NGX_OK;
    }

    return (src->copy(src, pos, buf, n) == n) ? NGX_OK : NGX_ERROR;
}


/*
 * The entry is written a piece at a time: each piece is copied into this
 * process's piece buffer with the lock free (from the flight's buffer,
 * which has a lock of its own: the two are never held together), then
 * into chunks under the lock, each chunk a slot of the size that covers
 * what is left closely.  The node goes into the tree last, replacing the
 * entry of the same key, if any: until then no lookup sees it.
 */
static ngx_int_t
ngx_http_ai_gateway_shm_write(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src, time_t ttl,
    ngx_flag_t since, ngx_atomic_uint_t purges)
{
    u_char                           *head;
    size_t                            len, head_len, pos, n, k, held, slot,
                                      room;
    time_t                            now;
    uint64_t                          key_hash, model_hash;
    ngx_int_t                         rc;
    ngx_log_t                        *log;
    ngx_http_ai_gateway_shm_ctx_t    *ctx;
    ngx_http_ai_gateway_shm_node_t   *sn, *old;
    ngx_http_ai_gateway_shm_chunk_t  *chunks, *chunk, **last;

    ctx = store->data;
    now = ngx_time();
    log = r ? r->connection->log : ngx_cycle->log;

    len = agw_entry_size(entry);

    if (len == 0 || len > store->max_entry_size || len > 0xffffffff) {
        ngx_http_ai_gateway_count(ctx->sh->stats.too_large, 1);
        return NGX_DECLINED;
    }

    head_len = agw_entry_head_size(entry);

    head = ngx_alloc(head_len, log);
    if (head == NULL
        || agw_entry_encode_head(head, head_len, entry) != head_len)
    {
        ngx_http_ai_gateway_count(ctx->sh->stats.errors, 1);
        rc = NGX_ERROR;
        goto done;
    }

    key_hash = ngx_http_ai_gateway_shm_purge_hash(entry->key, entry->key_len);
    model_hash = ngx_http_ai_gateway_shm_purge_hash(entry->model,
                                                    entry->model_len);

    sn = NULL;
    chunks = NULL;
    chunk = NULL;
    last = &chunks;
    held = 0;
    rc = NGX_ERROR;

    for (pos = 0; pos < len; pos += n) {
        n = ngx_min(len - pos, NGX_HTTP_AI_GATEWAY_SHM_PIECE);

        if (ngx_http_ai_gateway_shm_fill(ngx_http_ai_gateway_shm_piece, pos,
                                         n, head, head_len, entry, src)
            != NGX_OK)
        {
            /* the answer is no longer where it waited */
            goto failed;
        }

        ngx_shmtx_lock(&ctx->shpool->mutex);

        if (sn == NULL) {
            ngx_http_ai_gateway_shm_expire_locked(ctx, now, 2);

            sn = ngx_http_ai_gateway_shm_alloc_locked(ctx,
                                 sizeof(ngx_http_ai_gateway_shm_node_t), now,
                                 digest);
            if (sn == NULL) {
                goto failed_locked;
            }
        }

        for (k = 0; k < n; k += room) {

            room = chunk ? chunk->slot - chunk->len
                           - offsetof(ngx_http_ai_gateway_shm_chunk_t, data)
                         : 0;

            if (room == 0) {
                slot = ngx_http_ai_gateway_shm_chunk_slot(len - pos - k);

                chunk = ngx_http_ai_gateway_shm_alloc_locked(ctx, slot, now,
                                                             digest);
                if (chunk == NULL) {
                    goto failed_locked;
                }

                chunk->next = NULL;
                chunk->len = 0;
                chunk->slot = slot;
                held += slot;

                *last = chunk;
                last = &chunk->next;

                room = slot - offsetof(ngx_http_ai_gateway_shm_chunk_t, data);
            }

            room = ngx_min(n - k, room);

            ngx_memcpy(chunk->data + chunk->len,
                       ngx_http_ai_gateway_shm_piece + k, room);
            chunk->len += room;
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (since && ctx->sh->purges != purges) {
        /* a purge started or ended meanwhile: what was read may be gone */
        rc = NGX_DECLINED;
        goto failed_locked;
    }

    /* a concurrent MISS of the same key stored first: replace it */
    old = ngx_http_ai_gateway_shm_find_locked(ctx, digest->bytes);

    if (old) {
        ngx_http_ai_gateway_shm_delete_locked(ctx, old);
    }

    ngx_memzero(sn, sizeof(ngx_http_ai_gateway_shm_node_t));

    sn->node.key = ngx_http_ai_gateway_shm_hash(digest->bytes);
    ngx_memcpy(sn->digest, digest->bytes, sizeof(sn->digest));
    sn->expires = (uint32_t) (now + ttl);
    sn->len = len;
    sn->size = held + ngx_http_ai_gateway_shm_slot(
                                     sizeof(ngx_http_ai_gateway_shm_node_t));
    sn->chunks = chunks;
    sn->key_hash = key_hash;
    sn->model_hash = model_hash;

    ngx_rbtree_insert(&ctx->sh->rbtree, &sn->node);
    ngx_queue_insert_head(&ctx->sh->lru, &sn->queue);

    ngx_http_ai_gateway_count(ctx->sh->stats.entries, 1);
    ngx_http_ai_gateway_count(ctx->sh->stats.bytes_used, sn->size);
    ngx_http_ai_gateway_count(ctx->sh->stats.stores, 1);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    rc = NGX_OK;
    goto done;

failed:

    ngx_shmtx_lock(&ctx->shpool->mutex);

failed_locked:

    if (sn) {
        ngx_slab_free_locked(ctx->shpool, sn);
    }

    ngx_http_ai_gateway_shm_free_chunks_locked(ctx, chunks);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (rc == NGX_ERROR) {
        ngx_http_ai_gateway_count(ctx->sh->stats.errors, 1);
    }

done:

    if (head) {
        ngx_free(head);
    }

    return rc;
}


ngx_int_t
ngx_http_ai_gateway_store_shm_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl)
{
    return ngx_http_ai_gateway_shm_write(r, store, digest, entry, src, ttl,
                                         0, 0);
}


ngx_int_t
ngx_http_ai_gateway_store_shm_save_since(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src, time_t ttl,
    ngx_atomic_uint_t purges)
{
    return ngx_http_ai_gateway_shm_write(r, store, digest, entry, src, ttl,
                                         1, purges);
}
