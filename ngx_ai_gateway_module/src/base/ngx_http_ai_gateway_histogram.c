/*
 * Histograms in shared memory (see the header).
 *
 * The zone holds one block of hash chain heads (label values, series),
 * each dictionary's count of named values and its "other", each set's
 * list of series, newest first, and each set's series of "other" labels;
 * values and series are slab allocations linked in.  Its size is fixed by
 * the caller, so nginx keeps it across a reload (same name, same size),
 * and with it every figure; a value or a series is found by what it is,
 * never by a position a configuration gave it.
 *
 * A writer, under the slab mutex, fills a node, then makes it reachable
 * (after a barrier); a reader walks the chains without a lock and sees a
 * node either whole or not yet.  A reader that misses a node being added
 * takes the mutex and looks again before adding, so nothing is added
 * twice.  A dictionary that has all its named values answers "other"
 * without the mutex: a client sending a new model name with every request
 * costs no lock once the names are taken.
 */

#include "base/ngx_http_ai_gateway_histogram.h"


/* hash chain heads */
#define NGX_HTTP_AI_GATEWAY_HIST_LHASH   512     /* label values */
#define NGX_HTTP_AI_GATEWAY_HIST_SHASH  4096     /* series */

/* bumped when the shared layout below changes */
#define NGX_HTTP_AI_GATEWAY_HIST_VERSION         1


/* what readers follow without a lock */
typedef ngx_http_ai_gateway_label_t *volatile   ngx_http_ai_gateway_lhead_t;
typedef ngx_http_ai_gateway_series_t *volatile  ngx_http_ai_gateway_shead_t;


struct ngx_http_ai_gateway_hist_shm_s {
    uint32_t                       layout;
    ngx_atomic_t                   named[NGX_HTTP_AI_GATEWAY_HIST_DICTS];
    ngx_atomic_t                   refused;
    ngx_http_ai_gateway_label_t   *other[NGX_HTTP_AI_GATEWAY_HIST_DICTS];
    ngx_http_ai_gateway_series_t  *fallback[NGX_HTTP_AI_GATEWAY_HIST_SETS];
    ngx_http_ai_gateway_shead_t    newest[NGX_HTTP_AI_GATEWAY_HIST_SETS];
    ngx_http_ai_gateway_lhead_t    labels[NGX_HTTP_AI_GATEWAY_HIST_LHASH];
    ngx_http_ai_gateway_shead_t    series[NGX_HTTP_AI_GATEWAY_HIST_SHASH];
};


static ngx_int_t ngx_http_ai_gateway_hist_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_ai_gateway_hist_init_shm(
    ngx_http_ai_gateway_hist_t *h);
static ngx_http_ai_gateway_label_t *ngx_http_ai_gateway_hist_find_label(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t dict, u_char *name, size_t len,
    uint32_t hash);
static ngx_http_ai_gateway_label_t *ngx_http_ai_gateway_hist_add_label(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t dict, u_char *name, size_t len,
    uint32_t hash);
static ngx_http_ai_gateway_series_t *ngx_http_ai_gateway_hist_find_series(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t set,
    ngx_http_ai_gateway_label_t **label, ngx_uint_t bucket);
static ngx_http_ai_gateway_series_t *ngx_http_ai_gateway_hist_add_series(
    ngx_http_ai_gateway_hist_t *h, ngx_uint_t set,
    ngx_http_ai_gateway_label_t **label, ngx_uint_t bucket);
static ngx_uint_t ngx_http_ai_gateway_hist_series_bucket(ngx_uint_t set,
    ngx_http_ai_gateway_label_t **label, ngx_uint_t n);


ngx_http_ai_gateway_hist_t *
ngx_http_ai_gateway_hist_create(ngx_conf_t *cf, ngx_str_t *name, size_t size,
    const ngx_http_ai_gateway_hist_set_t *sets, ngx_uint_t nsets,
    ngx_uint_t ndicts, void *tag)
{
    size_t                       off;
    uint32_t                     layout;
    ngx_uint_t                   i, k;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_ai_gateway_hist_t  *h;
    const agw_metrics_bounds_t  *b;

    if (nsets > NGX_HTTP_AI_GATEWAY_HIST_SETS
        || ndicts > NGX_HTTP_AI_GATEWAY_HIST_DICTS)
    {
        return NULL;
    }

    h = ngx_pcalloc(cf->pool, sizeof(ngx_http_ai_gateway_hist_t));
    if (h == NULL) {
        return NULL;
    }

    h->sets = sets;
    h->nsets = nsets;
    h->ndicts = ndicts;

    /* where each histogram's atomics are in a series of its set */

    layout = NGX_HTTP_AI_GATEWAY_HIST_VERSION * 131 + ndicts;

    for (i = 0; i < nsets; i++) {
        off = 0;
        layout = layout * 31 + sets[i].nlabels * 17 + sets[i].nhists;

        for (k = 0; k < sets[i].nhists; k++) {
            b = sets[i].hist[k];
            h->offset[i][k] = off;
            off += b ? b->n + 2 : 1;
            layout = layout * 31 + (b ? b->n : 0);
        }

        h->size[i] = offsetof(ngx_http_ai_gateway_series_t, data)
                     + off * sizeof(ngx_atomic_t);
    }

    h->layout = layout;

    shm_zone = ngx_shared_memory_add(cf, name, size, tag);
    if (shm_zone == NULL) {
        return NULL;
    }

    shm_zone->init = ngx_http_ai_gateway_hist_init_zone;
    shm_zone->data = h;
    h->zone = shm_zone;

    return h;
}


static ngx_int_t
ngx_http_ai_gateway_hist_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ai_gateway_hist_t  *oh = data;

    ngx_http_ai_gateway_hist_t  *h;

    h = shm_zone->data;
    h->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (oh) {
        /* reload: the previous cycle's figures go on */

        if (oh->sh->layout == h->layout) {
            h->sh = oh->sh;
            return NGX_OK;
        }

        /*
         * another build of the module, with other sets: start afresh in
         * the same zone (the old workers may still write to what they
         * had, which stays allocated until the zone is gone)
         */
        ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                      "ai_gateway: the metrics in \"%V\" start afresh:"
                      " their layout changed", &shm_zone->shm.name);

        return ngx_http_ai_gateway_hist_init_shm(h);
    }

    if (shm_zone->shm.exists) {
        h->sh = h->shpool->data;
        return NGX_OK;
    }

    return ngx_http_ai_gateway_hist_init_shm(h);
}


static ngx_int_t
ngx_http_ai_gateway_hist_init_shm(ngx_http_ai_gateway_hist_t *h)
{
    ngx_uint_t                     i, k;
    ngx_slab_pool_t               *shpool;
    ngx_http_ai_gateway_label_t   *other[NGX_HTTP_AI_GATEWAY_HIST_LABELS];
    ngx_http_ai_gateway_series_t  *s;

    shpool = h->shpool;

    /* a full zone is a normal event here, not an error line each time */
    shpool->log_nomem = 0;

    h->sh = ngx_slab_calloc(shpool, sizeof(ngx_http_ai_gateway_hist_shm_t));
    if (h->sh == NULL) {
        return NGX_ERROR;
    }

    h->sh->layout = h->layout;
    shpool->data = h->sh;

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < h->ndicts; i++) {
        if (ngx_http_ai_gateway_hist_add_label(h, i, (u_char *) "", 0,
                                               ngx_crc32_short((u_char *) "",
                                                               0))
            == NULL)
        {
            goto failed;
        }

        h->sh->other[i] = ngx_http_ai_gateway_hist_add_label(h, i,
                              (u_char *) "other", 5,
                              ngx_crc32_short((u_char *) "other", 5));
        if (h->sh->other[i] == NULL) {
            goto failed;
        }
    }

    for (i = 0; i < h->nsets; i++) {
        for (k = 0; k < h->sets[i].nlabels; k++) {
            other[k] = h->sh->other[h->sets[i].dict[k]];
        }

        s = ngx_http_ai_gateway_hist_add_series(h, i, other,
                ngx_http_ai_gateway_hist_series_bucket(i, other,
                                                       h->sets[i].nlabels));
        if (s == NULL) {
            goto failed;
        }

        h->sh->fallback[i] = s;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;

failed:

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_ERROR;
}


ngx_http_ai_gateway_label_t *
ngx_http_ai_gateway_hist_label(ngx_http_ai_gateway_hist_t *h, ngx_uint_t dict,
    u_char *name, size_t len, ngx_uint_t max)
{
    uint32_t                      hash;
    ngx_http_ai_gateway_label_t  *l;

    if (len > NGX_HTTP_AI_GATEWAY_HIST_VALUE) {
        return h->sh->other[dict];
    }

    hash = ngx_crc32_short(name, len);

    l = ngx_http_ai_gateway_hist_find_label(h, dict, name, len, hash);
    if (l) {
        return l;
    }

    if (h->sh->named[dict] >= max) {
        return h->sh->other[dict];
    }

    ngx_shmtx_lock(&h->shpool->mutex);

    l = ngx_http_ai_gateway_hist_find_label(h, dict, name, len, hash);

    if (l == NULL && h->sh->named[dict] < max) {
        l = ngx_http_ai_gateway_hist_add_label(h, dict, name, len, hash);

        if (l) {
            h->sh->named[dict]++;
        }
    }

    ngx_shmtx_unlock(&h->shpool->mutex);

    return l ? l : h->sh->other[dict];
}


ngx_http_ai_gateway_label_t *
ngx_http_ai_gateway_hist_other(ngx_http_ai_gateway_hist_t *h,
    ngx_uint_t dict)
{
    return h->sh->other[dict];
}


static ngx_http_ai_gateway_label_t *
ngx_http_ai_gateway_hist_find_label(ngx_http_ai_gateway_hist_t *h,
    ngx_uint_t dict, u_char *name, size_t len, uint32_t hash)
{
    ngx_http_ai_gateway_label_t  *l;

    l = h->sh->labels[(hash ^ dict) % NGX_HTTP_AI_GATEWAY_HIST_LHASH];

    for ( /* void */ ; l; l = l->next) {
        if (l->hash == hash && l->dict == dict && l->len == len
            && ngx_memcmp(l->name, name, len) == 0)
        {
            return l;
        }
    }

    return NULL;
}


/* under the mutex */

static ngx_http_ai_gateway_label_t *
ngx_http_ai_gateway_hist_add_label(ngx_http_ai_gateway_hist_t *h,
    ngx_uint_t dict, u_char *name, size_t len, uint32_t hash)
{
    ngx_uint_t                    bucket;
    ngx_http_ai_gateway_label_t  *l;

    l = ngx_slab_alloc_locked(h->shpool,
                              offsetof(ngx_http_ai_gateway_label_t, name)
                              + len + 1);
    if (l == NULL) {
        return NULL;
    }

    bucket = (hash ^ dict) % NGX_HTTP_AI_GATEWAY_HIST_LHASH;

    l->hash = hash;
    l->dict = (uint16_t) dict;
    l->len = (uint16_t) len;
    ngx_memcpy(l->name, name, len);
    l->name[len] = '\0';
    l->next = h->sh->labels[bucket];

    ngx_memory_barrier();

    h->sh->labels[bucket] = l;

    return l;
}


ngx_http_ai_gateway_series_t *
ngx_http_ai_gateway_hist_series(ngx_http_ai_gateway_hist_t *h, ngx_uint_t set,
    ngx_http_ai_gateway_label_t **label)
{
    ngx_uint_t                     bucket, refused;
    ngx_http_ai_gateway_series_t  *s;

    static ngx_uint_t              said;

    bucket = ngx_http_ai_gateway_hist_series_bucket(set, label,
                                                    h->sets[set].nlabels);

    s = ngx_http_ai_gateway_hist_find_series(h, set, label, bucket);
    if (s) {
        return s;
    }

    refused = 0;

    ngx_shmtx_lock(&h->shpool->mutex);

    s = ngx_http_ai_gateway_hist_find_series(h, set, label, bucket);

    if (s == NULL) {
        s = ngx_http_ai_gateway_hist_add_series(h, set, label, bucket);

        if (s == NULL) {
            h->sh->refused++;
            s = h->sh->fallback[set];
            refused = 1;
        }
    }

    ngx_shmtx_unlock(&h->shpool->mutex);

    /* once a worker, after the mutex: a log line is a system call */

    if (refused && !said) {
        said = 1;
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "ai_gateway: the shared zone \"%V\" is full: new"
                      " series are counted under \"other\" labels",
                      &h->zone->shm.name);
    }

    return s;
}


static ngx_uint_t
ngx_http_ai_gateway_hist_series_bucket(ngx_uint_t set,
    ngx_http_ai_gateway_label_t **label, ngx_uint_t n)
{
    ngx_uint_t  i, key;

    key = set;

    for (i = 0; i < n; i++) {
        key = key * 31 + label[i]->hash + label[i]->dict;
    }

    return key % NGX_HTTP_AI_GATEWAY_HIST_SHASH;
}


static ngx_http_ai_gateway_series_t *
ngx_http_ai_gateway_hist_find_series(ngx_http_ai_gateway_hist_t *h,
    ngx_uint_t set, ngx_http_ai_gateway_label_t **label, ngx_uint_t bucket)
{
    ngx_uint_t                     i, n;
    ngx_http_ai_gateway_series_t  *s;

    n = h->sets[set].nlabels;

    for (s = h->sh->series[bucket]; s; s = s->next) {
        if (s->set != set) {
            continue;
        }

        for (i = 0; i < n; i++) {
            if (s->label[i] != label[i]) {
                break;
            }
        }

        if (i == n) {
            return s;
        }
    }

    return NULL;
}


/* under the mutex */

static ngx_http_ai_gateway_series_t *
ngx_http_ai_gateway_hist_add_series(ngx_http_ai_gateway_hist_t *h,
    ngx_uint_t set, ngx_http_ai_gateway_label_t **label, ngx_uint_t bucket)
{
    ngx_uint_t                     i;
    ngx_http_ai_gateway_series_t  *s;

    s = ngx_slab_calloc_locked(h->shpool, h->size[set]);
    if (s == NULL) {
        return NULL;
    }

    s->set = set;

    for (i = 0; i < h->sets[set].nlabels; i++) {
        s->label[i] = label[i];
    }

    s->next = h->sh->series[bucket];
    s->older = h->sh->newest[set];

    ngx_memory_barrier();

    h->sh->series[bucket] = s;
    h->sh->newest[set] = s;

    return s;
}


ngx_atomic_uint_t
ngx_http_ai_gateway_hist_refused(ngx_http_ai_gateway_hist_t *h)
{
    return h->sh->refused;
}


ngx_http_ai_gateway_series_t *
ngx_http_ai_gateway_hist_newest(ngx_http_ai_gateway_hist_t *h, ngx_uint_t set)
{
    return h->sh->newest[set];
}
