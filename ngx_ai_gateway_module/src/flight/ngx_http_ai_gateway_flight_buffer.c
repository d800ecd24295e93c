/*
 * Single flight: the buffer of a flight, which the leader writes its
 * answer into and its waiters and the store read from.
 *
 * The body is a list of chunks (slab slots of 256 bytes, doubling up to a
 * page), appended by the leader and read by the waiters, each from its
 * own offset with a cursor on the chunk that holds it: a waiter copies at
 * most what its own buffer holds per read, under the zone's lock, and
 * keeps no copy of the answer.  An answer larger than an entry may be
 * (not stored, but shareable) turns the list into a ring: it keeps its
 * last `keep` bytes and frees what lies before; from the first byte it
 * lets go nobody may join (a waiter reads from the start), and a waiter
 * so slow that what it had to read next is gone is cut, as a client too
 * slow for send_timeout is.  A chunk is freed only from the head and
 * never the tail, so a cursor at or after the head's offset is valid.
 *
 * The store copies the leader's answer out of the buffer through a hold,
 * which keeps the buffer alive while a store (Redis, a piece at a time)
 * writes it after the request that made it may be gone.
 */

#include "flight/ngx_http_ai_gateway_flight_zone.h"


#define NGX_HTTP_AI_GATEWAY_FLIGHT_CHUNK_MIN  256


void
ngx_http_ai_gateway_flight_free_chunks_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn)
{
    ngx_http_ai_gateway_flight_chunk_t  *chunk, *next;

    for (chunk = fn->head; chunk; chunk = next) {
        next = chunk->next;
        ngx_slab_free_locked(ctx->shpool, chunk);
    }

    ngx_http_ai_gateway_count(ctx->sh->bytes,
                              -(ngx_atomic_int_t) (fn->len - fn->start));

    fn->head = NULL;
    fn->tail = NULL;
    fn->start = fn->len;
}


/* the leader's flight failed for want of memory */
static void
ngx_http_ai_gateway_flight_full_locked(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_t *f, ngx_http_ai_gateway_flight_targets_t *t)
{
    f->finished = 1;
    f->publishing = 0;

    ngx_http_ai_gateway_count(ctx->sh->full, 1);

    ngx_http_ai_gateway_flight_end_locked(ctx, f->node,
                                          NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED,
                                          t);
}


void
ngx_http_ai_gateway_flight_headers(ngx_http_ai_gateway_flight_t *f,
    u_char *headers, size_t len, off_t content_length)
{
    u_char                                *p;
    ngx_http_ai_gateway_flight_ctx_t      *ctx;
    ngx_http_ai_gateway_flight_node_t     *fn;
    ngx_http_ai_gateway_flight_targets_t   t;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return;
    }

    ctx = f->zone->data;
    fn = f->node;
    t.n = 0;
    t.local = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    p = ngx_slab_alloc_locked(ctx->shpool, len ? len : 1);

    if (p == NULL) {
        ngx_http_ai_gateway_flight_full_locked(ctx, f, &t);

    } else {
        ngx_memcpy(p, headers, len);

        fn->headers = p;
        fn->headers_len = len;
        fn->content_length = content_length;
        fn->headers_ready = 1;

        ngx_http_ai_gateway_flight_wake_locked(ctx, fn, &t);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_wake_send(ctx, &t);
}


/* the slab slot of the next chunk: 256 bytes doubling up to a page */
static size_t
ngx_http_ai_gateway_flight_chunk_size(ngx_http_ai_gateway_flight_node_t *fn,
    size_t need)
{
    size_t  size, want;

    want = need + offsetof(ngx_http_ai_gateway_flight_chunk_t, data);

    if (fn->tail == NULL && fn->content_length > 0
        && (size_t) fn->content_length < ngx_pagesize)
    {
        /* a known short answer: one chunk that fits it */
        want = (size_t) fn->content_length
               + offsetof(ngx_http_ai_gateway_flight_chunk_t, data);
    }

    size = fn->tail ? ngx_min((size_t) fn->tail->cap * 2, ngx_pagesize)
                    : NGX_HTTP_AI_GATEWAY_FLIGHT_CHUNK_MIN;

    while (size < want && size < ngx_pagesize) {
        size *= 2;
    }

    return ngx_min(size, ngx_pagesize);
}


/* a ring: the chunks no waiter may still need are freed */
static void
ngx_http_ai_gateway_flight_trim_locked(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn)
{
    ngx_http_ai_gateway_flight_chunk_t  *chunk;

    /* the tail is never freed: a cursor on it stays valid */
    while (fn->head != fn->tail
           && fn->len - (fn->start + fn->head->len) >= fn->keep)
    {
        chunk = fn->head;
        fn->head = chunk->next;
        fn->start += chunk->len;

        ngx_http_ai_gateway_count(ctx->sh->bytes,
                                  -(ngx_atomic_int_t) chunk->len);
        ngx_slab_free_locked(ctx->shpool, chunk);

        if (!fn->trimmed) {
            /* a waiter joining now could not read from the start */
            fn->trimmed = 1;
            ngx_http_ai_gateway_flight_detach_locked(ctx, fn);
        }
    }
}


ngx_int_t
ngx_http_ai_gateway_flight_publish(ngx_http_ai_gateway_flight_t *f,
    u_char *data, size_t len)
{
    size_t                                 n, size;
    ngx_int_t                              rc;
    ngx_http_ai_gateway_flight_ctx_t      *ctx;
    ngx_http_ai_gateway_flight_node_t     *fn;
    ngx_http_ai_gateway_flight_chunk_t    *chunk;
    ngx_http_ai_gateway_flight_targets_t   t;

    if (f->finished || !f->publishing) {
        return NGX_DECLINED;
    }

    if (len == 0) {
        return NGX_OK;
    }

    ctx = f->zone->data;
    fn = f->node;
    rc = NGX_OK;
    t.n = 0;
    t.local = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (fn->ring && fn->trimmed && fn->followers == 0) {
        /* shared only, nobody reads it any more, nobody can join: over */
        f->finished = 1;
        f->publishing = 0;
        ngx_http_ai_gateway_flight_end_locked(ctx, fn,
                                          NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED,
                                          &t);
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    while (len) {
        chunk = fn->tail;

        if (chunk == NULL || chunk->len == chunk->cap) {
            size = ngx_http_ai_gateway_flight_chunk_size(fn, len);

            chunk = ngx_slab_alloc_locked(ctx->shpool, size);
            if (chunk == NULL) {
                ngx_http_ai_gateway_flight_full_locked(ctx, f, &t);
                rc = NGX_DECLINED;
                break;
            }

            chunk->next = NULL;
            chunk->len = 0;
            chunk->cap = size - offsetof(ngx_http_ai_gateway_flight_chunk_t,
                                         data);

            if (fn->tail) {
                fn->tail->next = chunk;

            } else {
                fn->head = chunk;
            }

            fn->tail = chunk;
        }

        n = ngx_min(len, (size_t) (chunk->cap - chunk->len));

        ngx_memcpy(chunk->data + chunk->len, data, n);
        chunk->len += n;
        fn->len += n;
        data += n;
        len -= n;

        ngx_http_ai_gateway_count(ctx->sh->bytes, n);
    }

    if (rc == NGX_OK) {
        if (fn->ring) {
            ngx_http_ai_gateway_flight_trim_locked(ctx, fn);
        }

        ngx_http_ai_gateway_flight_wake_locked(ctx, fn, &t);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_wake_send(ctx, &t);

    return rc;
}


ngx_int_t
ngx_http_ai_gateway_flight_share_only(ngx_http_ai_gateway_flight_t *f,
    size_t keep)
{
    ngx_int_t                              rc;
    ngx_http_ai_gateway_flight_ctx_t      *ctx;
    ngx_http_ai_gateway_flight_node_t     *fn;
    ngx_http_ai_gateway_flight_targets_t   t;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return NGX_DECLINED;
    }

    ctx = f->zone->data;
    fn = f->node;
    rc = NGX_OK;
    t.n = 0;
    t.local = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (fn->followers == 0) {
        /* nobody to share it with, and nobody can join from now on */
        f->finished = 1;
        f->publishing = 0;
        ngx_http_ai_gateway_flight_end_locked(ctx, fn,
                                          NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED,
                                          &t);
        rc = NGX_DECLINED;

    } else {
        fn->ring = 1;
        fn->keep = ngx_max(keep, 1);
        ngx_http_ai_gateway_flight_trim_locked(ctx, fn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_wake_send(ctx, &t);

    return rc;
}


ngx_int_t
ngx_http_ai_gateway_flight_hold(ngx_http_ai_gateway_flight_t *f,
    ngx_http_ai_gateway_flight_hold_t *hold)
{
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    if (f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return NGX_DECLINED;
    }

    ctx = f->zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    f->node->holds++;
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    hold->zone = f->zone;
    hold->node = f->node;
    hold->cursor = NULL;
    hold->cursor_start = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_flight_hold_more(ngx_http_ai_gateway_flight_hold_t *from,
    ngx_http_ai_gateway_flight_hold_t *hold)
{
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    ctx = from->zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (from->node->holds == 0) {
        /* the holds were dropped: the worker was taken for dead */
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    from->node->holds++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    hold->zone = from->zone;
    hold->node = from->node;
    hold->cursor = NULL;
    hold->cursor_start = 0;

    return NGX_OK;
}


void
ngx_http_ai_gateway_flight_release(ngx_http_ai_gateway_flight_hold_t *hold)
{
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    if (hold->node == NULL) {
        return;
    }

    ctx = hold->zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* 0 when the worker was taken for dead (flight_wake.c): not ours */
    if (hold->node->holds) {
        hold->node->holds--;
        ngx_http_ai_gateway_flight_unref_locked(ctx, hold->node);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    hold->node = NULL;
}


/*
 * Copy body bytes from `*offset` on, moving the cursor along: the lock
 * held, the cursor's chunk alive (at or after the first one kept).
 */
static size_t
ngx_http_ai_gateway_flight_copy_locked(ngx_http_ai_gateway_flight_node_t *fn,
    void **cursor, size_t *cursor_start, size_t *offset, u_char *buf,
    size_t size)
{
    size_t                               n, copied, skip;
    ngx_http_ai_gateway_flight_chunk_t  *chunk;

    chunk = *cursor;

    if (chunk == NULL || *cursor_start < fn->start) {
        chunk = fn->head;
        *cursor_start = fn->start;
    }

    copied = 0;

    while (chunk && copied < size && *offset < fn->len) {
        skip = *offset - *cursor_start;

        if (skip >= chunk->len) {
            if (chunk->next == NULL) {
                break;
            }

            *cursor_start += chunk->len;
            chunk = chunk->next;
            continue;
        }

        n = ngx_min(chunk->len - skip, size - copied);

        ngx_memcpy(buf + copied, chunk->data + skip, n);
        copied += n;
        *offset += n;
    }

    /* a chunk read to its end is left for the next one, if there is one */
    if (chunk && *offset - *cursor_start == chunk->len && chunk->next) {
        *cursor_start += chunk->len;
        chunk = chunk->next;
    }

    *cursor = chunk;

    return copied;
}


size_t
ngx_http_ai_gateway_flight_copy(ngx_http_ai_gateway_flight_hold_t *hold,
    size_t offset, u_char *buf, size_t len)
{
    size_t                              n;
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    ctx = hold->zone->data;
    fn = hold->node;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (offset < fn->start) {
        n = 0;

    } else {
        if (hold->cursor && offset < hold->cursor_start) {
            /* read again from an earlier place */
            hold->cursor = NULL;
        }

        n = ngx_http_ai_gateway_flight_copy_locked(fn, &hold->cursor,
                                                   &hold->cursor_start,
                                                   &offset, buf, len);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return n;
}


ngx_int_t
ngx_http_ai_gateway_flight_read(ngx_http_request_t *r,
    ngx_http_ai_gateway_flight_t *f, u_char *buf, size_t size,
    ngx_http_ai_gateway_flight_read_t *out)
{
    u_char                             *headers, *p;
    size_t                              len;
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    ngx_memzero(out, sizeof(ngx_http_ai_gateway_flight_read_t));

    ctx = f->zone->data;
    fn = f->node;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    out->state = fn->state;
    out->content_length = fn->content_length;

    headers = (fn->headers_ready && !f->headers_seen) ? fn->headers : NULL;
    len = fn->headers_len;

    if (f->offset < fn->start) {
        out->lagged = 1;

    } else if (size && f->headers_seen) {
        out->len = ngx_http_ai_gateway_flight_copy_locked(fn, &f->cursor,
                                                         &f->cursor_start,
                                                         &f->offset, buf,
                                                         size);
    }

    out->more = (f->offset < fn->len);
    out->end = (fn->state == NGX_HTTP_AI_GATEWAY_FLIGHT_DONE && !out->more);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (headers) {
        /* set once and kept as long as the node: read outside the lock */
        p = ngx_pnalloc(r->pool, len ? len : 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, headers, len);
        out->headers = p;
        out->headers_len = len;
        f->headers_seen = 1;
    }

    return NGX_OK;
}


