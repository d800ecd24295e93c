/*
 * The near cache (ai_gateway_cache_near ZONE [ttl=5s], SPEC 7.4): a
 * shared-memory zone in front of the Redis cache, so that the prompts that
 * are hot on this nginx answer at shared-memory speed while every gateway
 * still shares Redis.
 *
 * It is a store composed of two, used through the store interface only:
 * a lookup asks the zone first (a HIT there is a "near" HIT,
 * $ai_gateway_cache_tier), then Redis, for the entry and its expiry (the
 * remaining TTL), and keeps what Redis found in the zone for min(ttl,
 * that TTL), unless a purge of the zone started or ended while Redis
 * answered (what Redis read may be what the purge removed); a save
 * writes Redis and, once Redis answered that it took it (not before: an
 * entry Redis refused must not be served here), the zone for min(ttl,
 * the answer's TTL).
 * A near copy therefore never outlives the Redis entry it came from, and
 * a change made in Redis by another gateway is seen here after at most
 * ttl: the staleness bound.  The zone evicts as any cache zone does.
 *
 * Counters: the wrapper counts as the Redis cache ("redis" in /cachez),
 * near HITs are also counted apart, in near_hits; the zone keeps its own
 * entries, evictions and expired.
 */

#include "store/ngx_http_ai_gateway_store_redis.h"
#include "store/ngx_http_ai_gateway_store_shm.h"


typedef struct {
    ngx_http_ai_gateway_store_t         *zone;    /* the shm store */
    ngx_http_ai_gateway_store_t         *redis;   /* set at merge */
    time_t                               ttl;     /* seconds */
    ngx_http_ai_gateway_store_t         *store;   /* the wrapper */
} ngx_http_ai_gateway_store_near_t;


/* a lookup that went on to Redis */
typedef struct {
    ngx_http_ai_gateway_store_near_t    *nr;
    agw_digest_t                         digest;
    ngx_http_ai_gateway_found_t         *found;
    ngx_http_ai_gateway_store_done_pt    done;
    void                                *data;
    ngx_atomic_uint_t                    purges;  /* the zone's, as asked */
} ngx_http_ai_gateway_store_near_lookup_t;


static ngx_int_t ngx_http_ai_gateway_store_near_lookup(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_http_ai_gateway_found_t *found,
    ngx_http_ai_gateway_store_done_pt done, void *data);
static void ngx_http_ai_gateway_store_near_found(ngx_http_request_t *r,
    ngx_int_t rc, void *data);
static void ngx_http_ai_gateway_store_near_keep(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_near_lookup_t *nl, ngx_int_t rc);
static void ngx_http_ai_gateway_store_near_start(ngx_cycle_t *cycle,
    void *data);
static ngx_int_t ngx_http_ai_gateway_store_near_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl);
static size_t ngx_http_ai_gateway_store_near_read(
    ngx_http_ai_gateway_store_t *store, ngx_http_ai_gateway_found_t *found,
    size_t offset, u_char *buf, size_t len);


char *
ngx_http_ai_gateway_store_near(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_store_t **nearp = (ngx_http_ai_gateway_store_t **)
                                          ((char *) conf + cmd->offset);

    time_t                             ttl;
    ngx_str_t                         *value, s;
    ngx_http_ai_gateway_store_t       *zone, *store;
    ngx_http_ai_gateway_store_near_t  *nr;

    if (*nearp != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *nearp = NULL;
        return NGX_CONF_OK;
    }

    zone = ngx_http_ai_gateway_store_shm_find(cf, &value[1]);

    if (zone == NULL || ngx_strcmp(zone->ref.backend.data, "shm") != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown cache zone \"%V\" (declare it with "
                           "ai_gateway_cache_zone before use)", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* a purge of the Redis cache clears this zone too (cache_purge.c) */
    zone->near_zone = 1;

    ttl = 5;

    if (cf->args->nelts == 3) {

        if (ngx_strncmp(value[2].data, "ttl=", 4) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 4;
        s.len = value[2].len - 4;

        ttl = ngx_parse_time(&s, 1);

        if (ttl == (time_t) NGX_ERROR || ttl < 1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid ttl \"%V\": 1s or more expected",
                               &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    store = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_store_t));
    nr = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_store_near_t));
    if (store == NULL || nr == NULL) {
        return NGX_CONF_ERROR;
    }

    nr->zone = zone;
    nr->ttl = ttl;
    nr->store = store;

    ngx_str_set(&store->ref.name, "redis");
    ngx_str_set(&store->ref.backend, "redis");
    store->lookup = ngx_http_ai_gateway_store_near_lookup;
    store->save = ngx_http_ai_gateway_store_near_save;
    store->read = ngx_http_ai_gateway_store_near_read;
    store->data = nr;

    *nearp = store;

    return NGX_CONF_OK;
}


static ngx_flag_t
ngx_http_ai_gateway_store_is_near(ngx_http_ai_gateway_store_t *store)
{
    return store && store->lookup == ngx_http_ai_gateway_store_near_lookup;
}


/*
 * The store a location uses: its cache store, put behind the near zone
 * when that store is Redis.  "explicit" is set when ai_gateway_cache_near
 * was written at this level, where anything but Redis is a mistake.
 */
char *
ngx_http_ai_gateway_store_near_merge(ngx_conf_t *cf,
    ngx_http_ai_gateway_store_t **storep, ngx_http_ai_gateway_store_t *near,
    ngx_flag_t explicit)
{
    ngx_http_ai_gateway_store_t       *store;
    ngx_http_ai_gateway_store_near_t  *nr;

    store = *storep;

    if (ngx_http_ai_gateway_store_is_near(store)) {
        /* inherited: this level may name another zone, or none */
        nr = store->data;
        store = nr->redis;
    }

    if (store == NULL) {
        *storep = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(store->ref.backend.data, "redis") != 0) {
        if (explicit && near) {
            return "requires \"ai_gateway_cache redis\"";
        }

        *storep = store;
        return NGX_CONF_OK;
    }

    if (near == NULL) {
        *storep = store;
        return NGX_CONF_OK;
    }

    nr = near->data;

    if (nr->redis == NULL) {
        nr->redis = store;
        near->max_entry_size = store->max_entry_size;

        /* its counters are the Redis cache's, known in each worker */
        if (ngx_http_ai_gateway_redis_on_worker(cf,
                                         ngx_http_ai_gateway_store_near_start,
                                         NULL, near)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    *storep = near;

    return NGX_CONF_OK;
}


/* after the Redis store's, which registered with ai_gateway_redis */

static void
ngx_http_ai_gateway_store_near_start(ngx_cycle_t *cycle, void *data)
{
    ngx_http_ai_gateway_store_t *near = data;

    ngx_http_ai_gateway_store_near_t  *nr;

    nr = near->data;

    near->ref.stats = nr->redis->ref.stats;
}


ngx_http_ai_gateway_store_t *
ngx_http_ai_gateway_store_near_zone(ngx_http_ai_gateway_store_t *store)
{
    ngx_http_ai_gateway_store_near_t  *nr;

    if (!ngx_http_ai_gateway_store_is_near(store)) {
        return NULL;
    }

    nr = store->data;

    return nr->zone;
}


static ngx_int_t
ngx_http_ai_gateway_store_near_lookup(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    ngx_http_ai_gateway_found_t *found,
    ngx_http_ai_gateway_store_done_pt done, void *data)
{
    ngx_int_t                                 rc;
    ngx_http_ai_gateway_store_near_t         *nr;
    ngx_http_ai_gateway_store_near_lookup_t  *nl;

    nr = store->data;

    /* the zone answers at once */
    rc = nr->zone->lookup(r, nr->zone, digest, found, NULL, NULL);

    if (rc == NGX_OK) {
        found->near = 1;
        ngx_http_ai_gateway_count(store->ref.stats->near_hits, 1);
        return NGX_OK;
    }

    /*
     * a near MISS, or a near copy that failed its checks: ask Redis, for
     * the entry and how long it has left
     */

    nl = ngx_palloc(r->pool, sizeof(ngx_http_ai_gateway_store_near_lookup_t));
    if (nl == NULL) {
        return NGX_ERROR;
    }

    nl->nr = nr;
    nl->digest = *digest;
    nl->found = found;
    nl->done = done;
    nl->data = data;
    nl->purges = ngx_http_ai_gateway_store_shm_purges(nr->zone);

    found->expiry = 1;

    rc = nr->redis->lookup(r, nr->redis, digest, found,
                           ngx_http_ai_gateway_store_near_found, nl);

    if (rc != NGX_AGAIN) {
        ngx_http_ai_gateway_store_near_keep(r, nl, rc);
    }

    return rc;
}


static void
ngx_http_ai_gateway_store_near_found(ngx_http_request_t *r, ngx_int_t rc,
    void *data)
{
    ngx_http_ai_gateway_store_near_lookup_t *nl = data;

    ngx_http_ai_gateway_store_near_keep(r, nl, rc);

    nl->done(r, rc, nl->data);
}


/*
 * What Redis found goes into the zone for at most the near ttl and never
 * longer than the entry has left in Redis (expires 0: no TTL)
 */

static void
ngx_http_ai_gateway_store_near_keep(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_near_lookup_t *nl, ngx_int_t rc)
{
    time_t                             ttl;
    ngx_http_ai_gateway_found_t       *found;
    ngx_http_ai_gateway_store_near_t  *nr;

    nr = nl->nr;
    found = nl->found;

    found->expiry = 0;

    if (rc != NGX_OK) {
        return;
    }

    ttl = found->expires ? found->expires - ngx_time() : nr->ttl;
    ttl = ngx_min(ttl, nr->ttl);

    if (ttl > 0) {
        (void) ngx_http_ai_gateway_store_shm_save_since(r, nr->zone,
                                                        &nl->digest,
                                                        &found->entry, NULL,
                                                        ttl, nl->purges);
    }
}


/* Redis took the entry (or not): only then is it kept near */
static void
ngx_http_ai_gateway_store_near_saved(void *data, ngx_int_t rc,
    const agw_digest_t *digest, const agw_entry_t *entry,
    ngx_http_ai_gateway_source_t *src, time_t ttl)
{
    ngx_http_ai_gateway_store_near_t *nr = data;

    if (rc != NGX_OK) {
        return;
    }

    /* a full or failing zone counts for itself; Redis has it anyway */
    (void) nr->zone->save(NULL, nr->zone, digest, entry, src,
                          ngx_min(ttl, nr->ttl));
}


static ngx_int_t
ngx_http_ai_gateway_store_near_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_store_t *store, const agw_digest_t *digest,
    const agw_entry_t *entry, ngx_http_ai_gateway_source_t *src,
    time_t ttl)
{
    ngx_http_ai_gateway_store_near_t  *nr;

    nr = store->data;

    return ngx_http_ai_gateway_store_redis_save_then(r, nr->redis, digest,
                                        entry, src, ttl,
                                        ngx_http_ai_gateway_store_near_saved,
                                        nr);
}


/* an entry found in the zone, read in pieces */
static size_t
ngx_http_ai_gateway_store_near_read(ngx_http_ai_gateway_store_t *store,
    ngx_http_ai_gateway_found_t *found, size_t offset, u_char *buf,
    size_t len)
{
    ngx_http_ai_gateway_store_near_t  *nr;

    nr = store->data;

    return nr->zone->read(nr->zone, found, offset, buf, len);
}
