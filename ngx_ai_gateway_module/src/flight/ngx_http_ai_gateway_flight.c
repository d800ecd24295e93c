/*
 * Single flight across the workers of one nginx: the table and the
 * buffers.
 *
 * One shared-memory zone ("ai_gateway_flight", ai_gateway_cache_lock_zone
 * sizes it) holds a table of flights keyed by a digest of the request's
 * cache key and of what the location makes of it (its store and key
 * definition, cache.c).  The first request to miss a key (the leader)
 * creates its flight and, as its answer passes the cache filters, copies
 * the answer's headers and body into it; identical requests (the waiters)
 * find the flight and read what is new whenever the worker that wrote it
 * wakes them (flight_wake.c).  A leader that shares nothing (the lock off)
 * still writes its answer into a flight of its own, out of the table: the
 * buffer is where an answer waits, in shared memory, until the store
 * takes it, so a worker never holds a second whole copy of it.
 *
 * The buffer (flight_buffer.c) is a list of chunks the leader appends to
 * and each waiter reads from at its own pace; an answer too large to be
 * stored is still shared, through a ring that keeps its last bytes.
 *
 * References: the leader's (until it finishes), one per worker that has
 * waiters on the flight (a bit per worker slot, so that a worker that dies
 * can be accounted for: flight_wake.c), and the stores' holds while they
 * write the answer out.  A flight leaves the table when it ends, done or
 * failed: from then on the store answers, or the next request leads a new
 * flight, so nothing is served from a flight past the entry's own lifetime
 * or a purge.  A node is freed when it is out of the table and no longer
 * referenced.
 *
 * Everything is read and written under the zone's lock, held for a lookup
 * or one copy of a bounded size, never across a system call.
 *
 * Reload: a zone of the same name and size is adopted by the new cycle, so
 * the old workers' flights keep their waiters in either generation.
 */

#include "flight/ngx_http_ai_gateway_flight_zone.h"


static ngx_int_t ngx_http_ai_gateway_flight_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static void ngx_http_ai_gateway_flight_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void ngx_http_ai_gateway_flight_cleanup(void *data);


/* the layout's version is in the name: a zone of another is never adopted */
static ngx_str_t  ngx_http_ai_gateway_flight_name =
    ngx_string("ai_gateway_flight_v2");

static ngx_uint_t  ngx_http_ai_gateway_flight_tag;


ngx_shm_zone_t *
ngx_http_ai_gateway_flight_zone(ngx_conf_t *cf, size_t size)
{
    ngx_shm_zone_t                    *zone;
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    zone = ngx_shared_memory_add(cf, &ngx_http_ai_gateway_flight_name, size,
                                 &ngx_http_ai_gateway_flight_tag);
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

    ctx->size = size;

    zone->init = ngx_http_ai_gateway_flight_init_zone;
    zone->data = ctx;

    return zone;
}


ngx_shm_zone_t *
ngx_http_ai_gateway_flight_find(ngx_cycle_t *cycle)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *zone;

    part = &cycle->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag == &ngx_http_ai_gateway_flight_tag) {
            return &zone[i];
        }
    }
}


static ngx_int_t
ngx_http_ai_gateway_flight_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ai_gateway_flight_ctx_t  *octx = data;

    size_t                             len;
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        goto check;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        goto check;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              sizeof(ngx_http_ai_gateway_flight_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->sh->magic = NGX_HTTP_AI_GATEWAY_FLIGHT_MAGIC;
    ctx->sh->version = NGX_HTTP_AI_GATEWAY_FLIGHT_VERSION;

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_ai_gateway_flight_insert_value);
    ngx_queue_init(&ctx->sh->all);

    len = sizeof(" in ai_gateway_cache_lock_zone \"\"")
          + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx,
                " in ai_gateway_cache_lock_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone only sends requests upstream on their own: counted */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;

check:

    if (ctx->sh->magic != NGX_HTTP_AI_GATEWAY_FLIGHT_MAGIC
        || ctx->sh->version != NGX_HTTP_AI_GATEWAY_FLIGHT_VERSION)
    {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "ai_gateway flight zone \"%V\" has another layout, "
                      "restart nginx", &shm_zone->shm.name);
        return NGX_ERROR;
    }

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


void
ngx_http_ai_gateway_flight_detach_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn)
{
    if (fn->in_tree) {
        ngx_rbtree_delete(&ctx->sh->rbtree, &fn->node);
        fn->in_tree = 0;
    }
}


void
ngx_http_ai_gateway_flight_unref_locked(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn)
{
    if (fn->leading || fn->followers || fn->holds) {
        return;
    }

    ngx_http_ai_gateway_flight_detach_locked(ctx, fn);

    ngx_queue_remove(&fn->all);

    ngx_http_ai_gateway_flight_free_chunks_locked(ctx, fn);

    if (fn->headers) {
        ngx_slab_free_locked(ctx->shpool, fn->headers);
    }

    ngx_slab_free_locked(ctx->shpool, fn);

    ngx_http_ai_gateway_count(ctx->sh->flights, -1);
}


/* a flight ends: its waiters are woken to see it */
void
ngx_http_ai_gateway_flight_end_locked(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn,
    ngx_http_ai_gateway_flight_state_e state,
    ngx_http_ai_gateway_flight_targets_t *t)
{
    fn->state = state;
    fn->leading = 0;

    ngx_http_ai_gateway_flight_detach_locked(ctx, fn);
    ngx_http_ai_gateway_flight_wake_locked(ctx, fn, t);
    ngx_http_ai_gateway_flight_unref_locked(ctx, fn);
}


ngx_uint_t
ngx_http_ai_gateway_flight_join(ngx_http_request_t *r, ngx_shm_zone_t *zone,
    const agw_digest_t *digest, ngx_flag_t shared, ngx_event_t *ev,
    ngx_http_ai_gateway_flight_t *f)
{
    uint64_t                               gen, bit;
    ngx_uint_t                             slot, word, fresh;
    ngx_pool_cleanup_t                    *cln;
    ngx_http_ai_gateway_flight_ctx_t      *ctx;
    ngx_http_ai_gateway_flight_node_t     *fn;
    ngx_http_ai_gateway_flight_worker_t   *w;
    ngx_http_ai_gateway_flight_targets_t   t;

    ctx = zone->data;

    ngx_memzero(f, sizeof(ngx_http_ai_gateway_flight_t));

    /* a worker that could not register takes no part: it goes alone */
    if (ngx_http_ai_gateway_flight_me(ctx, &slot, &gen) != NGX_OK) {
        return NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
    }

    word = slot / 64;
    bit = (uint64_t) 1 << (slot % 64);
    fresh = 0;
    t.n = 0;
    t.local = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    fn = shared ? ngx_http_ai_gateway_flight_find_locked(ctx, digest->bytes)
                : NULL;

    if (fn && fn->leading) {
        /* a leader whose worker is gone (a crash) never ends its flight */
        w = &ctx->sh->workers[fn->leader_slot];

        if (w->gen != fn->leader_gen) {
            fn->holds = 0;
            ngx_http_ai_gateway_flight_end_locked(ctx, fn,
                                          NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED,
                                          &t);
            fn = NULL;
        }
    }

    if (fn) {
        if (!(fn->followed[word] & bit)) {
            fn->followed[word] |= bit;
            fn->followers++;
            fresh = 1;
        }

        f->role = NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER;
        goto joined;
    }

    fn = ngx_slab_calloc_locked(ctx->shpool,
                                sizeof(ngx_http_ai_gateway_flight_node_t));
    if (fn == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_http_ai_gateway_count(ctx->sh->full, 1);
        ngx_http_ai_gateway_flight_wake_send(ctx, &t);
        return NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
    }

    ngx_memcpy(fn->digest, digest->bytes, AGW_DIGEST_LEN);
    fn->node.key = ngx_http_ai_gateway_flight_hash(digest->bytes);
    fn->id = ++ctx->sh->gen;
    fn->leader_slot = slot;
    fn->leader_gen = gen;
    fn->leader_pid = ngx_pid;
    fn->state = NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING;
    fn->leading = 1;
    fn->content_length = -1;

    ngx_queue_insert_head(&ctx->sh->all, &fn->all);
    ngx_http_ai_gateway_count(ctx->sh->flights, 1);

    if (shared) {
        fn->in_tree = 1;
        ngx_rbtree_insert(&ctx->sh->rbtree, &fn->node);
    }

    f->role = NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER;
    f->publishing = 1;

joined:

    f->zone = zone;
    f->node = fn;
    f->id = fn->id;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_wake_send(ctx, &t);

    if (f->role == NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER
        && ngx_http_ai_gateway_flight_attach(f, ev, fresh) != NGX_OK)
    {
        /* the worker's record of the flight could not be made: alone */
        ngx_shmtx_lock(&ctx->shpool->mutex);

        if (fresh) {
            fn->followed[word] &= ~bit;
            fn->followers--;
            ngx_http_ai_gateway_flight_unref_locked(ctx, fn);
        }

        ngx_shmtx_unlock(&ctx->shpool->mutex);

        f->role = NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
        return NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
    }

    cln->handler = ngx_http_ai_gateway_flight_cleanup;
    cln->data = f;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway flight %p #%uL joined as %s", fn, f->id,
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
    return f->node->followers;
}


void
ngx_http_ai_gateway_flight_withdraw(ngx_http_ai_gateway_flight_t *f)
{
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return;
    }

    ctx = f->zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
    ngx_http_ai_gateway_flight_detach_locked(ctx, f->node);
    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_ai_gateway_flight_finish(ngx_http_ai_gateway_flight_t *f,
    ngx_http_ai_gateway_flight_state_e state)
{
    ngx_http_ai_gateway_flight_ctx_t      *ctx;
    ngx_http_ai_gateway_flight_targets_t   t;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        return;
    }

    f->finished = 1;
    f->publishing = 0;

    ctx = f->zone->data;
    t.n = 0;
    t.local = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* from now on the store answers; the waiters read on until they leave */
    ngx_http_ai_gateway_flight_end_locked(ctx, f->node, state, &t);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_wake_send(ctx, &t);
}


void
ngx_http_ai_gateway_flight_leave(ngx_http_ai_gateway_flight_t *f)
{
    ngx_uint_t                          slot, word;
    uint64_t                            gen, bit;
    ngx_http_ai_gateway_flight_ctx_t   *ctx;
    ngx_http_ai_gateway_flight_node_t  *fn;

    if (f->finished || f->role != NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER) {
        return;
    }

    f->finished = 1;

    if (!ngx_http_ai_gateway_flight_detach_waiter(f)) {
        /* other waiters of this worker still read it */
        return;
    }

    ctx = f->zone->data;
    fn = f->node;

    if (ngx_http_ai_gateway_flight_me(ctx, &slot, &gen) != NGX_OK) {
        return;
    }

    word = slot / 64;
    bit = (uint64_t) 1 << (slot % 64);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (fn->followed[word] & bit) {
        fn->followed[word] &= ~bit;
        fn->followers--;
        ngx_http_ai_gateway_flight_unref_locked(ctx, fn);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


static void
ngx_http_ai_gateway_flight_cleanup(void *data)
{
    ngx_http_ai_gateway_flight_t  *f = data;

    if (f->role == NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER) {
        ngx_http_ai_gateway_flight_finish(f,
                                          NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED);

    } else {
        ngx_http_ai_gateway_flight_leave(f);
    }
}


ngx_int_t
ngx_http_ai_gateway_flight_stats(ngx_shm_zone_t *zone,
    ngx_http_ai_gateway_flight_stats_t *st)
{
    ngx_http_ai_gateway_flight_ctx_t  *ctx;

    ngx_memzero(st, sizeof(ngx_http_ai_gateway_flight_stats_t));

    if (zone == NULL) {
        return NGX_DECLINED;
    }

    ctx = zone->data;

    if (ctx->sh == NULL) {
        return NGX_DECLINED;
    }

    st->flights = ctx->sh->flights;
    st->bytes = ctx->sh->bytes;
    st->full = ctx->sh->full;
    st->capacity = ctx->size;

    /* the slab pool's own count of free pages, read without the lock */
    st->used = ctx->size - ctx->shpool->pfree * ngx_pagesize;

    return NGX_OK;
}
