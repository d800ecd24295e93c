/*
 * Reading the shared-memory cache store: lookup, and the body of a large
 * entry a piece at a time.
 *
 * An entry up to NGX_HTTP_AI_GATEWAY_SHM_WHOLE bytes is copied out whole
 * under the lock (into memory taken before, with the lock released) and
 * decoded and checked as the Redis store does, so a corrupt or
 * half-written entry is rejected rather than trusted.  A larger one is not
 * copied: the request takes a reference on it, copies and checks its head
 * (status, key, headers), and reads its body in pieces as its client
 * drains them (cache/), so a long answer replayed to thousands of clients
 * at once is held once, in the zone.  An entry deleted while referenced
 * (evicted, purged, replaced) leaves the tree and the LRU at once, and its
 * memory with its last reference.
 *
 * A reference is recorded with the worker (slot and pid) that holds it:
 * a worker that dies never drops its references, and the worker the
 * master starts in its slot drops them (init_process), so no entry stays
 * pinned until a restart.
 */

#include "store/ngx_http_ai_gateway_store_shm.h"


#define NGX_HTTP_AI_GATEWAY_SHM_WHOLE  16384    /* bytes copied at once */


typedef struct {
    ngx_http_ai_gateway_shm_ctx_t      *ctx;
    ngx_http_ai_gateway_shm_ref_t      *ref;
} ngx_http_ai_gateway_shm_hold_t;


static ngx_int_t ngx_http_ai_gateway_shm_lookup_large(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_http_ai_gateway_found_t *found);
static void ngx_http_ai_gateway_shm_unref(void *data);


/* the slot a worker records its references under */
static ngx_uint_t
ngx_http_ai_gateway_shm_slot_of_worker(void)
{
    return (ngx_process == NGX_PROCESS_WORKER
            && (ngx_uint_t) ngx_process_slot < NGX_MAX_PROCESSES)
           ? (ngx_uint_t) ngx_process_slot : 0;
}


/*
 * Copy entry bytes [offset, offset + len) out of the chain, from the
 * cursor on if it is at or before offset: the lock held, the entry alive
 */
static size_t
ngx_http_ai_gateway_shm_copy_locked(ngx_http_ai_gateway_shm_node_t *sn,
    void **cursor, size_t *cursor_start, size_t offset, u_char *buf,
    size_t len)
{
    size_t                            n, copied, skip;
    ngx_http_ai_gateway_shm_chunk_t  *chunk;

    chunk = *cursor;

    if (chunk == NULL || *cursor_start > offset) {
        chunk = sn->chunks;
        *cursor_start = 0;
    }

    copied = 0;

    while (chunk && copied < len) {
        skip = offset - *cursor_start;

        if (skip >= chunk->len) {
            *cursor_start += chunk->len;
            chunk = chunk->next;
            continue;
        }

        n = ngx_min(chunk->len - skip, len - copied);

        ngx_memcpy(buf + copied, chunk->data + skip, n);
        copied += n;
        offset += n;
    }

    *cursor = chunk;

    return copied;
}


ngx_int_t
ngx_http_ai_gateway_shm_lookup(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_http_ai_gateway_found_t *found,
    ngx_http_ai_gateway_store_done_pt done, void *data)
{
    u_char                          *buf;
    void                            *cursor;
    size_t                           start;
    time_t                           now;
    uint32_t                         len;
    const char                      *reason;
    ngx_http_ai_gateway_shm_ctx_t   *ctx;
    ngx_http_ai_gateway_shm_node_t  *sn;

    ctx = store->data;
    now = ngx_time();

    /* first the size, so that the copy's memory is taken unlocked */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sn = ngx_http_ai_gateway_shm_find_locked(ctx, digest->bytes);

    if (sn == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    if ((time_t) sn->expires <= now) {
        ngx_http_ai_gateway_shm_delete_locked(ctx, sn);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_ai_gateway_count(ctx->sh->stats.expired, 1);
        return NGX_DECLINED;
    }

    len = sn->len;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (len > NGX_HTTP_AI_GATEWAY_SHM_WHOLE) {
        return ngx_http_ai_gateway_shm_lookup_large(r, store, digest, found);
    }

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        ngx_http_ai_gateway_count(ctx->sh->stats.errors, 1);
        return NGX_ERROR;
    }

    /* then the copy: the entry may have been replaced or evicted since */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sn = ngx_http_ai_gateway_shm_find_locked(ctx, digest->bytes);

    if (sn == NULL || sn->len > len || (time_t) sn->expires <= now) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_queue_remove(&sn->queue);
    ngx_queue_insert_head(&ctx->sh->lru, &sn->queue);

    len = sn->len;
    found->expires = sn->expires;

    cursor = NULL;
    start = 0;

    if (ngx_http_ai_gateway_shm_copy_locked(sn, &cursor, &start, 0, buf,
                                            len)
        != len)
    {
        len = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    /*
     * the copy is ours: check it (CRC, lengths, headers) outside the lock,
     * and that it may be served as the Redis store checks its entries
     */

    if (len == 0 || agw_entry_decode(buf, len, &found->entry) != 0) {
        reason = "corrupt";

    } else {
        reason = agw_entry_check(&found->entry, store->max_entry_size);

        if (reason == NULL) {
            return NGX_OK;
        }
    }

    /* never serve it; drop it, unless replaced meanwhile */

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sn = ngx_http_ai_gateway_shm_find_locked(ctx, digest->bytes);

    if (sn && sn->len == len && (time_t) sn->expires == found->expires) {
        ngx_http_ai_gateway_shm_delete_locked(ctx, sn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_count(ctx->sh->stats.errors, 1);
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ai_gateway_cache_zone \"%V\": entry dropped: %s",
                  &store->ref.name, reason);

    return NGX_ERROR;
}


/* a large entry: a reference, the head copied and checked, no body */
static ngx_int_t
ngx_http_ai_gateway_shm_lookup_large(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_http_ai_gateway_found_t *found)
{
    u_char                           fixed[AGW_ENTRY_HEADER_SIZE], *head;
    size_t                           len, head_len;
    time_t                           now;
    ngx_uint_t                       slot;
    const char                      *reason;
    ngx_pool_cleanup_t              *cln;
    ngx_http_ai_gateway_shm_ctx_t   *ctx;
    ngx_http_ai_gateway_shm_ref_t   *ref;
    ngx_http_ai_gateway_shm_hold_t  *hold;
    ngx_http_ai_gateway_shm_node_t  *sn;

    ctx = store->data;
    now = ngx_time();
    slot = ngx_http_ai_gateway_shm_slot_of_worker();

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_ai_gateway_shm_hold_t));
    if (cln == NULL) {
        ngx_http_ai_gateway_count(ctx->sh->stats.errors, 1);
        return NGX_ERROR;
    }

    hold = cln->data;
    hold->ctx = ctx;
    hold->ref = NULL;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sn = ngx_http_ai_gateway_shm_find_locked(ctx, digest->bytes);

    if (sn == NULL || (time_t) sn->expires <= now) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    ref = (sn->refs < 0xffff)
          ? ngx_slab_alloc_locked(ctx->shpool,
                                  sizeof(ngx_http_ai_gateway_shm_ref_t))
          : NULL;

    if (ref == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_ai_gateway_count(ctx->sh->stats.errors, 1);
        return NGX_ERROR;
    }

    ref->node = sn;
    ref->pid = ngx_pid;
    ref->slot = slot;
    ngx_queue_insert_tail(&ctx->sh->refs, &ref->queue);
    sn->refs++;

    hold->ref = ref;
    cln->handler = ngx_http_ai_gateway_shm_unref;

    ngx_queue_remove(&sn->queue);
    ngx_queue_insert_head(&ctx->sh->lru, &sn->queue);

    len = sn->len;
    found->expires = sn->expires;
    found->ref = ref;
    found->cursor = NULL;
    found->cursor_start = 0;

    (void) ngx_http_ai_gateway_shm_copy_locked(sn, &found->cursor,
                                               &found->cursor_start, 0,
                                               fixed, sizeof(fixed));

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    /* the entry is ours to read now: its head, then a check of it */

    head_len = agw_entry_head_length(fixed, len);
    head = head_len ? ngx_pnalloc(r->pool, head_len) : NULL;

    if (head == NULL) {
        reason = "corrupt";
        goto failed;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ngx_http_ai_gateway_shm_copy_locked(sn, &found->cursor,
                                            &found->cursor_start, 0, head,
                                            head_len)
        != head_len)
    {
        head_len = 0;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (head_len == 0
        || agw_entry_decode_head(head, head_len, len, &found->entry) != 0)
    {
        reason = "corrupt";
        goto failed;
    }

    reason = agw_entry_check(&found->entry, store->max_entry_size);

    if (reason == NULL) {
        return NGX_OK;
    }

failed:

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (!sn->dead) {
        ngx_http_ai_gateway_shm_delete_locked(ctx, sn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_count(ctx->sh->stats.errors, 1);
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ai_gateway_cache_zone \"%V\": entry dropped: %s",
                  &store->ref.name, reason);

    /* the reference goes with the request's pool */
    found->ref = NULL;

    return NGX_ERROR;
}


size_t
ngx_http_ai_gateway_shm_read(ngx_http_ai_gateway_store_t *store,
    ngx_http_ai_gateway_found_t *found, size_t offset, u_char *buf,
    size_t len)
{
    size_t                           n;
    ngx_http_ai_gateway_shm_ctx_t   *ctx;
    ngx_http_ai_gateway_shm_ref_t   *ref;
    ngx_http_ai_gateway_shm_node_t  *sn;

    ctx = store->data;
    ref = found->ref;

    if (ref == NULL || offset >= found->entry.body_len) {
        return 0;
    }

    sn = ref->node;

    /* the body comes after the head */
    offset += sn->len - found->entry.body_len;
    len = ngx_min(len, sn->len - offset);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    n = ngx_http_ai_gateway_shm_copy_locked(sn, &found->cursor,
                                            &found->cursor_start, offset, buf,
                                            len);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n;
}


static void
ngx_http_ai_gateway_shm_unref_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_http_ai_gateway_shm_ref_t *ref)
{
    ngx_http_ai_gateway_shm_node_t  *sn;

    sn = ref->node;

    ngx_queue_remove(&ref->queue);
    ngx_slab_free_locked(ctx->shpool, ref);

    if (--sn->refs == 0 && sn->dead) {
        ngx_http_ai_gateway_shm_free_locked(ctx, sn);
    }
}


static void
ngx_http_ai_gateway_shm_unref(void *data)
{
    ngx_http_ai_gateway_shm_hold_t  *hold = data;

    ngx_http_ai_gateway_shm_ctx_t  *ctx;

    if (hold->ref == NULL) {
        return;
    }

    ctx = hold->ctx;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ngx_http_ai_gateway_shm_unref_locked(ctx, hold->ref);
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    hold->ref = NULL;
}


/*
 * The references of a worker that is gone (pid 0: any but this one's in
 * the slot) or going (this one), all dropped
 */
static ngx_uint_t
ngx_http_ai_gateway_shm_release_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_uint_t slot, ngx_pid_t pid)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q, *next;
    ngx_http_ai_gateway_shm_ref_t  *ref;

    n = 0;

    for (q = ngx_queue_head(&ctx->sh->refs);
         q != ngx_queue_sentinel(&ctx->sh->refs);
         q = next)
    {
        next = ngx_queue_next(q);
        ref = ngx_queue_data(q, ngx_http_ai_gateway_shm_ref_t, queue);

        if (ref->slot == slot
            && (pid ? ref->pid == pid : ref->pid != ngx_pid))
        {
            ngx_http_ai_gateway_shm_unref_locked(ctx, ref);
            n++;
        }
    }

    return n;
}


ngx_int_t
ngx_http_ai_gateway_shm_init_process(ngx_http_ai_gateway_store_t *store,
    ngx_cycle_t *cycle)
{
    ngx_uint_t                      slot, n;
    ngx_http_ai_gateway_shm_ctx_t  *ctx;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ctx = store->data;
    slot = ngx_http_ai_gateway_shm_slot_of_worker();

    /* a slot is another worker's only once its last one is gone */
    ngx_shmtx_lock(&ctx->shpool->mutex);
    n = ngx_http_ai_gateway_shm_release_locked(ctx, slot, 0);
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "ai_gateway_cache_zone \"%V\": released %ui entries "
                      "a worker that ran in slot %ui was sending",
                      &store->ref.name, n, slot);
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_shm_exit_process(ngx_http_ai_gateway_store_t *store,
    ngx_cycle_t *cycle)
{
    ngx_http_ai_gateway_shm_ctx_t  *ctx;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ctx = store->data;

    /* a quick exit leaves requests whose pools never end */
    ngx_shmtx_lock(&ctx->shpool->mutex);
    (void) ngx_http_ai_gateway_shm_release_locked(ctx,
                                    ngx_http_ai_gateway_shm_slot_of_worker(),
                                    ngx_pid);
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}
