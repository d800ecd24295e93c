/*
 * The buckets of an ai_gateway_limit_zone in shared memory: a red-black
 * tree keyed by the key value (or its digest), and an LRU queue threaded
 * through the same nodes, as ngx_http_limit_req_module keeps them (see
 * ngx_http_ai_gateway_bucket_node.h for the locking).
 *
 * When the slab allocator has no room for a new bucket, the least recently
 * used ones are freed until it has; since all nodes have the same size, the
 * first one freed is enough.  Buckets that have refilled to full are freed
 * on the way as well: a full bucket is exactly what a missing key means, so
 * forgetting it changes no answer and keeps the "keys" gauge meaningful.
 *
 * A zone with the "redis" flag keeps its buckets in Redis; its tree here
 * only mirrors the buckets this nginx charged, for the "keys" gauge (see
 * ngx_http_ai_gateway_bucket_redis.c).
 */

#include "bucket/ngx_http_ai_gateway_bucket_node.h"


/* LRU tail buckets freed on each allocation if they have refilled */
#define NGX_HTTP_AI_GATEWAY_BUCKET_EXPIRE  2


static void ngx_http_ai_gateway_bucket_rbtree_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_http_ai_gateway_bucket_node_t *
    ngx_http_ai_gateway_bucket_zone_alloc(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, uint64_t now,
    ngx_log_t *log);
static ngx_inline ngx_http_ai_gateway_bucket_node_t *
    ngx_http_ai_gateway_bucket_zone_find(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key);
static ngx_uint_t ngx_http_ai_gateway_bucket_zone_expire(
    ngx_http_ai_gateway_bucket_zone_t *zone, ngx_uint_t n, uint64_t now);


/*
 * nginx's ngx_cycle.c hands a zone to the new cycle only when its name, tag
 * and size are unchanged, so a reload that resizes a zone starts it empty
 * (data is NULL then).  "nginx -t" runs this too, so it only sets up memory.
 */

ngx_int_t
ngx_http_ai_gateway_bucket_zone_init(ngx_shm_zone_t *shm_zone,
    ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_zone_t *ozone)
{
    size_t  len;

    if (ozone) {
        if (ozone->sh->version != NGX_HTTP_AI_GATEWAY_BUCKET_VERSION) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "ai_gateway_limit_zone \"%V\" holds buckets of "
                          "version %ui, this module uses version %ui",
                          &shm_zone->shm.name, ozone->sh->version,
                          (ngx_uint_t) NGX_HTTP_AI_GATEWAY_BUCKET_VERSION);
            return NGX_ERROR;
        }

        /* reload: adopt the buckets and counters of the previous cycle */

        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        zone->ref->stats = &zone->sh->stats;

        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        zone->ref->stats = &zone->sh->stats;

        return NGX_OK;
    }

    zone->sh = ngx_slab_calloc(zone->shpool,
                               sizeof(ngx_http_ai_gateway_bucket_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    zone->sh->version = NGX_HTTP_AI_GATEWAY_BUCKET_VERSION;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_ai_gateway_bucket_rbtree_insert_value);

    ngx_queue_init(&zone->sh->queue);

    zone->ref->stats = &zone->sh->stats;

    len = sizeof(" in ai_gateway_limit_zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in ai_gateway_limit_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is normal: the LRU bucket is evicted, nothing is logged */
    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * The tree orders buckets by the first bytes of their key slot, then by
 * the whole slot.  No hash is needed: a red-black tree stays balanced
 * whatever its keys, and the first bytes are the length and an IPv4
 * address whole, or an IPv6 address's prefix, or a long key's SHA-256.
 */

static ngx_inline ngx_rbtree_key_t
ngx_http_ai_gateway_bucket_tree_key(u_char *key)
{
    ngx_rbtree_key_t  k;

    ngx_memcpy(&k, key, sizeof(ngx_rbtree_key_t));

    return k;
}


/*
 * A total order of key slots, by 64-bit words: equality, the usual
 * outcome of a lookup, is a few loads and no memcmp() call.
 */

static ngx_inline uint64_t
ngx_http_ai_gateway_bucket_word(u_char *p)
{
    uint64_t  w;

    ngx_memcpy(&w, p, sizeof(uint64_t));

    return w;
}


static ngx_inline ngx_int_t
ngx_http_ai_gateway_bucket_key_cmp(u_char *a, u_char *b)
{
    uint64_t    x, y;
    ngx_uint_t  i;

    if (((ngx_http_ai_gateway_bucket_word(a)
          ^ ngx_http_ai_gateway_bucket_word(b))
         | (ngx_http_ai_gateway_bucket_word(a + 8)
            ^ ngx_http_ai_gateway_bucket_word(b + 8))
         | (ngx_http_ai_gateway_bucket_word(a + 16)
            ^ ngx_http_ai_gateway_bucket_word(b + 16))
         | (ngx_http_ai_gateway_bucket_word(a + 24)
            ^ ngx_http_ai_gateway_bucket_word(b + 24)))
        == 0)
    {
        return 0;
    }

    for (i = 0; /* void */; i += 8) {
        x = ngx_http_ai_gateway_bucket_word(a + i);
        y = ngx_http_ai_gateway_bucket_word(b + i);

        if (x != y) {
            return (x < y) ? -1 : 1;
        }
    }
}


ngx_http_ai_gateway_bucket_node_t *
ngx_http_ai_gateway_bucket_zone_lookup(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key)
{
    return ngx_http_ai_gateway_bucket_zone_find(zone, key);
}


/* the lookup itself, inline in zone_charge(), the path of most requests */

static ngx_inline ngx_http_ai_gateway_bucket_node_t *
ngx_http_ai_gateway_bucket_zone_find(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key)
{
    ngx_int_t                           rc;
    ngx_rbtree_key_t                    hash;
    ngx_rbtree_node_t                  *node, *sentinel;
    ngx_http_ai_gateway_bucket_node_t  *ln;

    hash = ngx_http_ai_gateway_bucket_tree_key(key);

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

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

        ln = (ngx_http_ai_gateway_bucket_node_t *) &node->color;

        rc = ngx_http_ai_gateway_bucket_key_cmp(key, ln->key);

        if (rc == 0) {
            ngx_queue_remove(&ln->queue);
            ngx_queue_insert_head(&zone->sh->queue, &ln->queue);

            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


void
ngx_http_ai_gateway_bucket_zone_check(ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_node_t *node, uint64_t cost, uint64_t now,
    agw_bucket_result_t *res)
{
    agw_bucket_t  fresh;

    if (node == NULL) {
        /* a key never seen (or forgotten when full) has a full bucket */
        agw_bucket_init(&fresh, &zone->bucket, now);
        agw_bucket_check(&fresh, &zone->bucket, cost, now, res);
        return;
    }

    agw_bucket_check(&node->bucket, &zone->bucket, cost, now, res);
}


ngx_uint_t
ngx_http_ai_gateway_bucket_zone_charge(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key, uint64_t cost, uint64_t now, ngx_log_t *log,
    agw_bucket_result_t *res)
{
    ngx_uint_t                          taken;
    agw_bucket_t                        fresh;
    ngx_http_ai_gateway_bucket_node_t  *node;

    ngx_http_ai_gateway_bucket_zone_lock(zone);

    node = ngx_http_ai_gateway_bucket_zone_find(zone, key);

    if (node) {
        taken = agw_bucket_consume(&node->bucket, &zone->bucket, cost, now,
                                   res)
                && cost;

    } else {

        /* a new key: its bucket is stored only once something is taken */

        agw_bucket_init(&fresh, &zone->bucket, now);

        taken = 0;

        if (agw_bucket_consume(&fresh, &zone->bucket, cost, now, res)
            && cost)
        {
            node = ngx_http_ai_gateway_bucket_zone_alloc(zone, key, now, log);

            if (node) {
                node->bucket = fresh;
                taken = 1;
            }
        }
    }

    ngx_http_ai_gateway_bucket_zone_unlock(zone);

    return taken;
}


ngx_int_t
ngx_http_ai_gateway_bucket_zone_commit(ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_node_t *node, u_char *key,
    agw_bucket_result_t *res, uint64_t now, ngx_log_t *log)
{
    if (node == NULL) {
        node = ngx_http_ai_gateway_bucket_zone_alloc(zone, key, now, log);
        if (node == NULL) {
            return NGX_DECLINED;
        }
    }

    agw_bucket_commit(&node->bucket, res, now);

    return NGX_OK;
}


/*
 * Adding back what agw_bucket_commit() took leaves the bucket exactly where
 * it would be had nothing been taken (charges by others aside): refill
 * clamps at the capacity, and so does the refund.  The caller looks the
 * bucket up again: if it was freed meanwhile (refilled, or evicted from a
 * full zone), the key's bucket is full or new, and a new one is credited
 * at most up to its capacity.
 */

void
ngx_http_ai_gateway_bucket_zone_refund(ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_http_ai_gateway_bucket_node_t *node, uint64_t cost, uint64_t now)
{
    if (node != NULL) {
        agw_bucket_settle(&node->bucket, &zone->bucket, cost, 0, now);
    }
}


/*
 * A token zone's reservation settled on the real use (lock held): the
 * bucket is looked up again, as for a refund; one forgotten since (refilled
 * and evicted) is created again when the use overran, so the debt is not
 * lost with it.
 */

void
ngx_http_ai_gateway_bucket_zone_settle(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key, uint64_t reserved, uint64_t actual, uint64_t now,
    ngx_log_t *log)
{
    ngx_http_ai_gateway_bucket_node_t  *node;

    node = ngx_http_ai_gateway_bucket_zone_lookup(zone, key);

    if (node == NULL) {
        if (actual <= reserved) {
            return;     /* a forgotten bucket is full: nothing to give */
        }

        node = ngx_http_ai_gateway_bucket_zone_alloc(zone, key, now, log);
        if (node == NULL) {
            return;
        }
    }

    agw_bucket_settle(&node->bucket, &zone->bucket, reserved, actual, now);
}


void
ngx_http_ai_gateway_bucket_zone_track(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key, uint64_t level, uint64_t now, uint64_t lease, ngx_log_t *log)
{
    uint64_t                            cap;
    ngx_http_ai_gateway_bucket_node_t  *node;

    node = ngx_http_ai_gateway_bucket_zone_lookup(zone, key);

    if (node == NULL) {
        node = ngx_http_ai_gateway_bucket_zone_alloc(zone, key, now, log);
        if (node == NULL) {
            return;     /* the lease is lost: never more than it took */
        }
    }

    cap = zone->bucket.burst * zone->bucket.period_ms;

    node->bucket.level = (level < cap) ? level : cap;
    node->bucket.stamp_ms = now;
    node->bucket.debt = 0;

    /*
     * added, not set: another worker's lease of the same key may have
     * landed meanwhile, and neither may be lost
     */

    if (lease) {
        node->lease += lease;
        node->lease_end = now + NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_MS;
    }
}


/* a new, full bucket for key, evicting to make room */

static ngx_http_ai_gateway_bucket_node_t *
ngx_http_ai_gateway_bucket_zone_alloc(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key, uint64_t now, ngx_log_t *log)
{
    size_t                              size;
    ngx_rbtree_node_t                  *rn;
    ngx_http_ai_gateway_bucket_node_t  *node;

    (void) ngx_http_ai_gateway_bucket_zone_expire(zone,
                                       NGX_HTTP_AI_GATEWAY_BUCKET_EXPIRE, now);

    size = offsetof(ngx_rbtree_node_t, color)
           + sizeof(ngx_http_ai_gateway_bucket_node_t);

    rn = ngx_slab_alloc_locked(zone->shpool, size);

    while (rn == NULL) {

        /* the zone is full: forget the least recently used bucket */

        if (ngx_http_ai_gateway_bucket_zone_expire(zone, 0, now) == 0) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "ai_gateway_limit_zone \"%V\" has no room for "
                          "a bucket, request not charged", &zone->name);
            return NULL;
        }

        rn = ngx_slab_alloc_locked(zone->shpool, size);
    }

    node = (ngx_http_ai_gateway_bucket_node_t *) &rn->color;

    rn->key = ngx_http_ai_gateway_bucket_tree_key(key);
    ngx_memcpy(node->key, key, NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN);

    agw_bucket_init(&node->bucket, &zone->bucket, now);
    node->lease = 0;
    node->lease_end = 0;

    ngx_rbtree_insert(&zone->sh->rbtree, rn);
    ngx_queue_insert_head(&zone->sh->queue, &node->queue);

    ngx_http_ai_gateway_count(zone->sh->stats.keys, 1);

    return node;
}


/*
 * n == 0: free the least recently used bucket, whatever its level, and
 * return 1 (0 if there is none).  n > 0: free up to n buckets from the LRU
 * tail as long as they have refilled to full; return how many were freed.
 */

static ngx_uint_t
ngx_http_ai_gateway_bucket_zone_expire(ngx_http_ai_gateway_bucket_zone_t *zone,
    ngx_uint_t n, uint64_t now)
{
    ngx_uint_t                          freed;
    ngx_queue_t                        *q;
    ngx_rbtree_node_t                  *rn;
    ngx_http_ai_gateway_bucket_node_t  *node;

    freed = 0;

    while (!ngx_queue_empty(&zone->sh->queue)) {

        q = ngx_queue_last(&zone->sh->queue);
        node = ngx_queue_data(q, ngx_http_ai_gateway_bucket_node_t, queue);

        if (n
            && (node->lease
                || agw_bucket_level(&node->bucket, &zone->bucket, now)
                   < zone->bucket.burst * zone->bucket.period_ms))
        {
            break;
        }

        ngx_queue_remove(q);

        rn = (ngx_rbtree_node_t *)
                 ((u_char *) node - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&zone->sh->rbtree, rn);
        ngx_slab_free_locked(zone->shpool, rn);

        ngx_http_ai_gateway_count(zone->sh->stats.keys, -1);

        freed++;

        if (n == 0 || freed == n) {
            break;
        }
    }

    return freed;
}


static void
ngx_http_ai_gateway_bucket_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                 **p;
    ngx_http_ai_gateway_bucket_node_t  *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {

            p = &temp->left;

        } else if (node->key > temp->key) {

            p = &temp->right;

        } else { /* node->key == temp->key */

            ln = (ngx_http_ai_gateway_bucket_node_t *) &node->color;
            lnt = (ngx_http_ai_gateway_bucket_node_t *) &temp->color;

            p = (ngx_http_ai_gateway_bucket_key_cmp(ln->key, lnt->key) < 0)
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


/* lease=: Redis refused key; remember its bucket for a lease time */

void
ngx_http_ai_gateway_bucket_zone_refused(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key, agw_bucket_t *b, uint64_t now, ngx_log_t *log)
{
    ngx_http_ai_gateway_bucket_node_t  *node;

    node = ngx_http_ai_gateway_bucket_zone_lookup(zone, key);

    if (node == NULL) {
        node = ngx_http_ai_gateway_bucket_zone_alloc(zone, key, now, log);
        if (node == NULL) {
            return;
        }
    }

    node->bucket.level = b->level;
    node->bucket.debt = b->debt;
    node->bucket.stamp_ms = now;
    node->lease_end = now + NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_MS;
}
