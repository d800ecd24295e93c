/*
 * Single flight across the workers of one nginx.
 *
 * One shared-memory zone ("ai_gateway_flight") holds a table of flights
 * keyed by the cache digest.  The first request to miss a key (the
 * leader) creates its flight and, as its answer passes the cache filters,
 * copies the answer's headers and body into it; identical requests (the
 * waiters) find the flight, and read what is new each time the flight's
 * sequence number moves.  A waiter reads the number without the lock, so
 * a short timer per waiter costs one memory read per tick; the data is
 * copied out under the lock into the waiter's pool.
 *
 * A flight is bounded by the store's max_entry_size: past it, or when the
 * zone is full, the flight fails and its waiters go on their own.  A
 * flight leaves the table when it ends, done or failed: from then on the
 * store answers (or the next request leads a new flight), so nothing is
 * served from a flight past the entry's own lifetime or a purge.  A node
 * is freed when it is out of the table and no request refers to it.  A
 * leader that died (its pid gone) leaves a flight that the next request
 * takes over.
 *
 * Reload: a zone of the same name and size is adopted by the new cycle, so
 * the old workers' flights keep their waiters in either generation.
 */

#include "flight/ngx_http_ai_gateway_flight.h"


#define NGX_HTTP_AI_GATEWAY_FLIGHT_SIZE   (32 * 1024 * 1024)


struct ngx_http_ai_gateway_flight_node_s {
    ngx_rbtree_node_t                    node;      /* key: digest prefix */
    u_char                               digest[AGW_DIGEST_LEN];
    ngx_pid_t                            leader;
    ngx_uint_t                           state;
    ngx_uint_t                           refs;      /* leader + waiters */
    ngx_atomic_t                         seq;       /* moves on a change */
    off_t                                content_length;
    u_char                              *headers;
    size_t                               headers_len;
    u_char                              *body;
    size_t                               body_len;
    size_t                               body_cap;
    size_t                               max;
    unsigned                             headers_ready:1;
    unsigned                             in_tree:1;
};


typedef struct {
    ngx_rbtree_t                         rbtree;
    ngx_rbtree_node_t                    sentinel;
} ngx_http_ai_gateway_flight_sh_t;


typedef struct {
    ngx_http_ai_gateway_flight_sh_t     *sh;
    ngx_slab_pool_t                     *shpool;
} ngx_http_ai_gateway_flight_ctx_t;


static ngx_int_t ngx_http_ai_gateway_flight_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static void ngx_http_ai_gateway_flight_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_ai_gateway_flight_cleanup(void *data);


static ngx_str_t  ngx_http_ai_gateway_flight_name =
    ngx_string("ai_gateway_flight");


ngx_shm_zone_t *
ngx_http_ai_gateway_flight_zone(ngx_conf_t *cf)
{
    ngx_shm_zone_t                    *zone;
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    zone = ngx_shared_memory_add(cf, &ngx_http_ai_gateway_flight_name,
                                 NGX_HTTP_AI_GATEWAY_FLIGHT_SIZE,
                                 &ngx_http_ai_gateway_flight_name);
    if (zone == NULL) {
        return NULL;
    }

    if (zone->data) {
        /* added by an earlier location of this configuration */
        return zone;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_flight_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    zone->init = ngx_http_ai_gateway_flight_init_zone;
    zone->data = ctx;

    return zone;
}


static ngx_int_t
ngx_http_ai_gateway_flight_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ai_gateway_flight_ctx_t  *octx = data;

    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              sizeof(ngx_http_ai_gateway_flight_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_ai_gateway_flight_insert_value);

    /* a full zone only sends requests upstream on their own */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


static ngx_rbtree_key_t
ngx_http_ai_gateway_flight_hash(const u_char *digest)
{
    ngx_rbtree_key_t  key;

    ngx_memcpy(&key, digest, sizeof(ngx_rbtree_key_t));

    return key;
}


static void
ngx_http_ai_gateway_flight_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                  **p;
    ngx_http_ai_gateway_flight_node_t   *fn, *fnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            fn = (ngx_http_ai_gateway_flight_node_t *) node;
            fnt = (ngx_http_ai_gateway_flight_node_t *) temp;

            p = (ngx_memcmp(fn->digest, fnt->digest, AGW_DIGEST_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_ai_gateway_flight_node_t *
ngx_http_ai_gateway_flight_find_locked(ngx_http_ai_gateway_flight_ctx_t *ctx,
    const u_char *digest)
{
    ngx_int_t                           rc;
    ngx_rbtree_key_t                    key;
    ngx_rbtree_node_t                  *node, *sentinel;
    ngx_http_ai_gateway_flight_node_t  *fn;

    key = ngx_http_ai_gateway_flight_hash(digest);

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        fn = (ngx_http_ai_gateway_flight_node_t *) node;

        rc = ngx_memcmp(digest, fn->digest, AGW_DIGEST_LEN);

        if (rc == 0) {
            return fn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_ai_gateway_flight_free_locked(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn)
{
    if (fn->headers) {
        ngx_slab_free_locked(ctx->shpool, fn->headers);
    }

    if (fn->body) {
        ngx_slab_free_locked(ctx->shpool, fn->body);
    }

    ngx_slab_free_locked(ctx->shpool, fn);
}


/* out of the table: nobody joins it any more; freed once unreferenced */
static void
ngx_http_ai_gateway_flight_detach_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn)
{
    if (fn->in_tree) {
        ngx_rbtree_delete(&ctx->sh->rbtree, &fn->node);
        fn->in_tree = 0;
    }

    if (fn->refs == 0) {
        ngx_http_ai_gateway_flight_free_locked(ctx, fn);
    }
}


static ngx_flag_t
ngx_http_ai_gateway_flight_leader_gone(ngx_http_ai_gateway_flight_node_t *fn)
{
    if (fn->state != NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING
        || fn->leader == ngx_pid)
    {
        return 0;
    }

    return (kill(fn->leader, 0) == -1 && ngx_errno == NGX_ESRCH);
}


/* a leader that died (a crashed worker) never ends its flight: end it */
static ngx_flag_t
ngx_http_ai_gateway_flight_fail_dead_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn)
{
    if (!ngx_http_ai_gateway_flight_leader_gone(fn)) {
        return 0;
    }

    fn->state = NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED;
    fn->refs--;                     /* the dead leader's */
    (void) ngx_atomic_fetch_add(&fn->seq, 1);

    ngx_http_ai_gateway_flight_detach_locked(ctx, fn);

    return 1;
}


ngx_uint_t
ngx_http_ai_gateway_flight_join(ngx_http_request_t *r, ngx_shm_zone_t *zone,
    const agw_digest_t *digest, size_t max, ngx_http_ai_gateway_flight_t *f)
{
    ngx_pool_cleanup_t                 *cln;
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    ctx = zone->data;

    ngx_memzero(f, sizeof(ngx_http_ai_gateway_flight_t));

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    fn = ngx_http_ai_gateway_flight_find_locked(ctx, digest->bytes);

    if (fn && ngx_http_ai_gateway_flight_fail_dead_locked(ctx, fn)) {
        /* its waiters see it fail; this request leads a new one */
        fn = NULL;
    }

    if (fn) {
        fn->refs++;
        f->role = NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER;
        goto joined;
    }

    fn = ngx_slab_calloc_locked(ctx->shpool,
                                sizeof(ngx_http_ai_gateway_flight_node_t));
    if (fn == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
    }

    ngx_memcpy(fn->digest, digest->bytes, AGW_DIGEST_LEN);
    fn->node.key = ngx_http_ai_gateway_flight_hash(digest->bytes);
    fn->leader = ngx_pid;
    fn->state = NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING;
    fn->refs = 1;
    fn->content_length = -1;
    fn->max = max;
    fn->in_tree = 1;

    ngx_rbtree_insert(&ctx->sh->rbtree, &fn->node);

    f->role = NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER;

joined:

    f->seq = (ngx_atomic_uint_t) -1;  /* the first read always looks */
    ngx_shmtx_unlock(&ctx->shpool->mutex);

    f->zone = zone;
    f->node = fn;
    f->progress = ngx_current_msec;
    f->checked = ngx_current_msec;

    cln->handler = ngx_http_ai_gateway_flight_cleanup;
    cln->data = f;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway flight %p joined as %s", fn,
                   f->role == NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER
                   ? "leader" : "waiter");

    return f->role;
}


ngx_uint_t
ngx_http_ai_gateway_flight_waiters(ngx_http_ai_gateway_flight_t *f)
{
    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return 0;
    }

    /* read without the lock: a waiter more or less changes no decision */
    return f->node->refs - 1;
}


void
ngx_http_ai_gateway_flight_headers(ngx_http_ai_gateway_flight_t *f,
    u_char *headers, size_t len, off_t content_length)
{
    u_char                             *p;
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return;
    }

    ctx = f->zone->data;
    fn = f->node;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    p = ngx_slab_alloc_locked(ctx->shpool, len ? len : 1);

    if (p == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_ai_gateway_flight_finish(f, 0);
        return;
    }

    ngx_memcpy(p, headers, len);

    fn->headers = p;
    fn->headers_len = len;
    fn->content_length = content_length;
    fn->headers_ready = 1;

    (void) ngx_atomic_fetch_add(&fn->seq, 1);

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_ai_gateway_flight_publish(ngx_http_ai_gateway_flight_t *f,
    u_char *data, size_t len)
{
    u_char                             *p;
    size_t                              cap;
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER
        || len == 0)
    {
        return;
    }

    ctx = f->zone->data;
    fn = f->node;

    if (fn->body_len + len > fn->max) {
        /* too large to be stored: the waiters go on their own */
        ngx_http_ai_gateway_flight_finish(f, 0);
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (fn->body_cap - fn->body_len < len) {

        cap = fn->body_cap ? fn->body_cap * 2 : 16384;

        if (fn->body_cap == 0 && fn->content_length > 0) {
            cap = (size_t) fn->content_length;
        }

        cap = ngx_min(ngx_max(cap, fn->body_len + len), fn->max);

        p = ngx_slab_alloc_locked(ctx->shpool, cap);
        if (p == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            ngx_http_ai_gateway_flight_finish(f, 0);
            return;
        }

        if (fn->body) {
            ngx_memcpy(p, fn->body, fn->body_len);
            ngx_slab_free_locked(ctx->shpool, fn->body);
        }

        fn->body = p;
        fn->body_cap = cap;
    }

    ngx_memcpy(fn->body + fn->body_len, data, len);
    fn->body_len += len;

    (void) ngx_atomic_fetch_add(&fn->seq, 1);

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_ai_gateway_flight_finish(ngx_http_ai_gateway_flight_t *f,
    ngx_uint_t ok)
{
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return;
    }

    f->finished = 1;

    ctx = f->zone->data;
    fn = f->node;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    fn->state = ok ? NGX_HTTP_AI_GATEWAY_FLIGHT_DONE
                   : NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED;
    fn->refs--;

    (void) ngx_atomic_fetch_add(&fn->seq, 1);

    /* from now on the store answers; the waiters read on until they leave */
    ngx_http_ai_gateway_flight_detach_locked(ctx, fn);

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


ngx_int_t
ngx_http_ai_gateway_flight_read(ngx_http_request_t *r,
    ngx_http_ai_gateway_flight_t *f, ngx_http_ai_gateway_flight_read_t *out)
{
    u_char                             *p;
    size_t                              len;
    ngx_atomic_uint_t                   seq;
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    ngx_memzero(out, sizeof(ngx_http_ai_gateway_flight_read_t));

    ctx = f->zone->data;
    fn = f->node;

    seq = fn->seq;

    if (seq == f->seq) {
        /* a leader killed mid-answer never moves it again */
        if (ngx_current_msec - f->checked >= 1000) {
            f->checked = ngx_current_msec;

            ngx_shmtx_lock(&ctx->shpool->mutex);
            (void) ngx_http_ai_gateway_flight_fail_dead_locked(ctx, fn);
            ngx_shmtx_unlock(&ctx->shpool->mutex);
        }

        return NGX_AGAIN;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    f->seq = fn->seq;
    f->progress = ngx_current_msec;

    out->state = fn->state;
    out->headers_ready = fn->headers_ready;
    out->content_length = fn->content_length;

    if (fn->headers_ready && !f->headers_seen) {
        /* once: the caller keeps them */
        len = fn->headers_len;
        p = ngx_pnalloc(r->pool, len ? len : 1);
        if (p == NULL) {
            goto failed;
        }

        ngx_memcpy(p, fn->headers, len);
        out->headers = p;
        out->headers_len = len;
        f->headers_seen = 1;
    }

    if (fn->body_len > f->offset) {
        len = fn->body_len - f->offset;

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            goto failed;
        }

        ngx_memcpy(p, fn->body + f->offset, len);
        out->data = p;
        out->len = len;
        f->offset += len;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;

failed:

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    out->state = NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED;

    return NGX_OK;
}


void
ngx_http_ai_gateway_flight_leave(ngx_http_ai_gateway_flight_t *f)
{
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER) {
        return;
    }

    f->finished = 1;

    ctx = f->zone->data;
    fn = f->node;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    fn->refs--;

    if (fn->refs == 0 && !fn->in_tree) {
        ngx_http_ai_gateway_flight_free_locked(ctx, fn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static void
ngx_http_ai_gateway_flight_cleanup(void *data)
{
    ngx_http_ai_gateway_flight_t  *f = data;

    if (f->role == NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        ngx_http_ai_gateway_flight_finish(f, 0);

    } else {
        ngx_http_ai_gateway_flight_leave(f);
    }
}
