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


/*
 * the zones' tag: ngx_cycle.c hands a zone to the next cycle only under
 * the same tag, and a limit zone of the same name is another use
 */
static ngx_uint_t  ngx_http_ai_gateway_shm_tag;


static ngx_int_t ngx_http_ai_gateway_shm_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_ai_gateway_shm_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);


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
    store->save = ngx_http_ai_gateway_store_shm_save;
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


ngx_atomic_uint_t
ngx_http_ai_gateway_store_shm_purges(ngx_http_ai_gateway_store_t *store)
{
    ngx_http_ai_gateway_shm_ctx_t  *ctx;

    ctx = store->data;

    return ctx->sh->purges;
}
