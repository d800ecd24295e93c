/*
 * The shared-memory cache store (ai_gateway_cache_zone).
 *
 * One zone is shared by every worker.  Entries are found by the SHA-256
 * digest of the cache key through an rbtree (keyed by the digest's first
 * bytes, compared in full on collision) and kept on an LRU queue, most
 * recently used at the head.  Expired entries are dropped when met; when the
 * slab pool is full the least recently used entries are evicted until the
 * new one fits.
 *
 * Layout.  The slab allocator rounds every allocation up to a power of two
 * (up to half a page, whole pages above), so a 1.3 KB entry stored in one
 * piece would hold 2 KB.  An entry is therefore written as a short chain of
 * chunks whose sizes are powers of two chosen to cover it closely: a 1 KiB
 * answer with its headers costs about 200 bytes above its own size.  The
 * bytes in the chunks are the agw_entry encoding (lib/agw_entry.c), read
 * back by store_shm_read.c: a small entry copied out whole and checked, a
 * large one read a piece at a time under a reference that keeps it while
 * a request sends it (an entry deleted meanwhile, by eviction, purge or a
 * newer answer, leaves the tree at once and its memory with its last
 * reference).  The writer builds the chain a piece at a time, from the
 * answer where it waits (the flight's buffer, copied through a bounded
 * buffer of this process, never a whole copy), and deletes the entry it
 * replaces only once the new one is in place: a store that fails keeps
 * it.
 *
 * Reload: ngx_cycle.c reuses a zone only if its tag and size match, so a
 * resized zone starts empty; otherwise the new cycle adopts the old tree.
 * "nginx -t" also runs init_zone, which therefore only sets up memory.
 */

#include "store/ngx_http_ai_gateway_store_shm.h"


#define NGX_HTTP_AI_GATEWAY_SHM_MAX_EVICT  64
#define NGX_HTTP_AI_GATEWAY_SHM_PIECE      16384   /* bytes copied in per
                                                      hold of the lock */


/* what a save copies in before it takes the lock (one process, one at
 * a time) */
static u_char  ngx_http_ai_gateway_shm_piece[NGX_HTTP_AI_GATEWAY_SHM_PIECE];


/*
 * the zones' tag: ngx_cycle.c hands a zone to the next cycle only under
 * the same tag, and a limit zone of the same name is another use
 */
static ngx_uint_t  ngx_http_ai_gateway_shm_tag;


static ngx_int_t ngx_http_ai_gateway_shm_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_ai_gateway_shm_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_ai_gateway_shm_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl);


char *
ngx_http_ai_gateway_store_shm_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ssize_t                            size, max_entry_size;
    ngx_str_t                         *value, name, s;
    ngx_uint_t                         i;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_ai_gateway_shm_ctx_t     *ctx;
    ngx_http_ai_gateway_store_t       *store, **stores;
    ngx_http_ai_gateway_main_conf_t   *amcf;

    value = cf->args->elts;

    size = 0;
    max_entry_size = 1024 * 1024;
    name.len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            if (ngx_http_ai_gateway_parse_zone(cf, &value[i], &name, &size)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_entry_size=", 15) == 0) {

            s.data = value[i].data + 15;
            s.len = value[i].len - 15;

            max_entry_size = ngx_parse_size(&s);

            if (max_entry_size == NGX_ERROR || max_entry_size == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_entry_size \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (max_entry_size > size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "max_entry_size %z is larger than zone \"%V\"",
                           max_entry_size, &name);
        return NGX_CONF_ERROR;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    stores = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        if (stores[i]->ref.name.len == name.len
            && ngx_strncmp(stores[i]->ref.name.data, name.data, name.len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate zone \"%V\"", &name);
            return NGX_CONF_ERROR;
        }
    }

    store = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_store_t));
    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_shm_ctx_t));
    if (store == NULL || ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_ai_gateway_shm_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    store->ref.name = name;
    ngx_str_set(&store->ref.backend, "shm");
    store->ref.bytes_capacity = size;
    store->lookup = ngx_http_ai_gateway_shm_lookup;
    store->save = ngx_http_ai_gateway_shm_save;
    store->read = ngx_http_ai_gateway_shm_read;
    store->purge = ngx_http_ai_gateway_store_shm_purge;
    store->init_process = ngx_http_ai_gateway_shm_init_process;
    store->exit_process = ngx_http_ai_gateway_shm_exit_process;
    store->max_entry_size = max_entry_size;
    store->data = ctx;
    ctx->store = store;

    shm_zone->init = ngx_http_ai_gateway_shm_init_zone;
    shm_zone->data = ctx;

    stores = ngx_array_push(&amcf->caches);
    if (stores == NULL) {
        return NGX_CONF_ERROR;
    }

    *stores = store;

    return NGX_CONF_OK;
}


ngx_http_ai_gateway_store_t *
ngx_http_ai_gateway_store_shm_find(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                         i;
    ngx_http_ai_gateway_store_t      **stores;
    ngx_http_ai_gateway_main_conf_t   *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ai_gateway_module);

    stores = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        if (stores[i]->ref.name.len == name->len
            && ngx_strncmp(stores[i]->ref.name.data, name->data, name->len)
               == 0)
        {
            return stores[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_http_ai_gateway_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ai_gateway_shm_ctx_t  *octx = data;

    size_t                          len;
    ngx_http_ai_gateway_shm_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        if (octx->sh->version != NGX_HTTP_AI_GATEWAY_SHM_VERSION) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "ai_gateway_cache_zone \"%V\" holds entries of "
                          "version %ui, this module uses version %ui",
                          &shm_zone->shm.name, octx->sh->version,
                          (ngx_uint_t) NGX_HTTP_AI_GATEWAY_SHM_VERSION);
            return NGX_ERROR;
        }

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        goto done;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        goto done;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool,
                              sizeof(ngx_http_ai_gateway_shm_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->sh->version = NGX_HTTP_AI_GATEWAY_SHM_VERSION;

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_ai_gateway_shm_insert_value);
    ngx_queue_init(&ctx->sh->lru);

    ngx_queue_init(&ctx->sh->refs);

    len = sizeof(" in ai_gateway_cache_zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in ai_gateway_cache_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is normal for a cache: evict, don't log */
    ctx->shpool->log_nomem = 0;

done:

    ctx->store->ref.stats = &ctx->sh->stats;

    return NGX_OK;
}


static ngx_rbtree_key_t
ngx_http_ai_gateway_shm_hash(const u_char *digest)
{
    ngx_rbtree_key_t  key;

    ngx_memcpy(&key, digest, sizeof(ngx_rbtree_key_t));

    return key;
}


/* equal hashes are ordered by the full digest, as the lookup walks them */
static void
ngx_http_ai_gateway_shm_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t               **p;
    ngx_http_ai_gateway_shm_node_t   *sn, *snt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            sn = (ngx_http_ai_gateway_shm_node_t *) node;
            snt = (ngx_http_ai_gateway_shm_node_t *) temp;

            p = (ngx_memcmp(sn->digest, snt->digest, sizeof(sn->digest)) < 0)
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


ngx_http_ai_gateway_shm_node_t *
ngx_http_ai_gateway_shm_find_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    const u_char *digest)
{
    ngx_int_t                        rc;
    ngx_rbtree_key_t                 hash;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_ai_gateway_shm_node_t  *sn;

    hash = ngx_http_ai_gateway_shm_hash(digest);

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        /* hash == node->key */

        sn = (ngx_http_ai_gateway_shm_node_t *) node;

        rc = ngx_memcmp(digest, sn->digest, sizeof(sn->digest));

        if (rc == 0) {
            return sn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


void
ngx_http_ai_gateway_shm_delete_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_http_ai_gateway_shm_node_t *sn)
{
    if (sn->dead) {
        return;
    }

    ngx_queue_remove(&sn->queue);
    ngx_rbtree_delete(&ctx->sh->rbtree, &sn->node);

    ngx_http_ai_gateway_count(ctx->sh->stats.entries, -1);

    if (sn->refs) {
        /* being sent: gone for every lookup, kept for its readers */
        sn->dead = 1;
        return;
    }

    ngx_http_ai_gateway_shm_free_locked(ctx, sn);
}


void
ngx_http_ai_gateway_shm_free_locked(ngx_http_ai_gateway_shm_ctx_t *ctx,
    ngx_http_ai_gateway_shm_node_t *sn)
{
    ngx_http_ai_gateway_shm_chunk_t  *chunk, *next;

    for (chunk = sn->chunks; chunk; chunk = next) {
        next = chunk->next;
        ngx_slab_free_locked(ctx->shpool, chunk);
    }

    ngx_http_ai_gateway_count(ctx->sh->stats.bytes_used,
                              -(ngx_atomic_int_t) sn->size);

    ngx_slab_free_locked(ctx->shpool, sn);
}


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


static ngx_int_t
ngx_http_ai_gateway_shm_save(ngx_http_request_t *r,
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


ngx_atomic_uint_t
ngx_http_ai_gateway_store_shm_purges(ngx_http_ai_gateway_store_t *store)
{
    ngx_http_ai_gateway_shm_ctx_t  *ctx;

    ctx = store->data;

    return ctx->sh->purges;
}
