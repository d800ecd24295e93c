/*
 * GET /cachez: the module's counters as JSON (SPEC 3.4) or, with
 * ?format=prometheus, in Prometheus text exposition format.
 *
 * Modelled on ngx_http_stub_status_handler(): GET and HEAD only, one buffer
 * sized up front, counters read without a lock (they are atomics in shared
 * memory), nothing counted for reading them.  Both formats walk the same
 * field tables so the two can never disagree on what is reported.
 *
 * Every Prometheus family has its # HELP and # TYPE lines (promtool check
 * metrics lints for both).  Figures a backend does not track are left out
 * rather than shown as 0: the Redis cache store counts its entries
 * (a periodic SCAN by worker 0) but not the bytes Redis spends on them,
 * and has no capacity of its own, so its bytes_used and bytes_capacity
 * are absent from both formats.
 */

#include "base/ngx_http_ai_gateway_conf.h"
#include "base/ngx_http_ai_gateway_stats.h"
#include "balance/ngx_http_ai_gateway_balance.h"
#include "core/ngx_http_ai_gateway_handlers.h"
#include "flight/ngx_http_ai_gateway_flight.h"
#include "core/ngx_http_ai_gateway_metrics.h"


typedef struct {
    const char                    *name;    /* JSON field, metric stem */
    const char                    *help;    /* Prometheus # HELP text */
    size_t                         offset;  /* in the stats struct */
    unsigned                       gauge:1;
    unsigned                       shm_only:1;  /* not tracked for Redis */
} ngx_http_ai_gateway_field_t;


static size_t ngx_http_ai_gateway_cachez_size(
    ngx_http_ai_gateway_main_conf_t *amcf);
static u_char *ngx_http_ai_gateway_cachez_json(u_char *p,
    ngx_http_ai_gateway_main_conf_t *amcf,
    ngx_http_ai_gateway_metrics_view_t *metrics);
static u_char *ngx_http_ai_gateway_cachez_prometheus(u_char *p,
    ngx_http_ai_gateway_main_conf_t *amcf,
    ngx_http_ai_gateway_metrics_view_t *metrics);
static u_char *ngx_http_ai_gateway_cachez_flight(u_char *p,
    ngx_uint_t prometheus);


#define ngx_http_ai_gateway_field(type, name, gauge, shm_only, help)         \
    { #name, help, offsetof(type, name), gauge, shm_only }

#define ngx_http_ai_gateway_cache_field(name, gauge, shm_only, help)         \
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, name,       \
                              gauge, shm_only, help)

#define ngx_http_ai_gateway_limit_field(name, gauge, help)                   \
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, name,       \
                              gauge, 0, help)

static ngx_http_ai_gateway_field_t  ngx_http_ai_gateway_cache_fields[] = {
    ngx_http_ai_gateway_cache_field(hits, 0, 0,
        "Lookups answered from the cache."),
    ngx_http_ai_gateway_cache_field(misses, 0, 0,
        "Cacheable lookups not found, sent upstream."),
    ngx_http_ai_gateway_cache_field(bypasses, 0, 0,
        "Requests the cache did not look up (method, stream, no-cache)."),
    ngx_http_ai_gateway_cache_field(stores, 0, 0,
        "Responses written to the cache."),
    ngx_http_ai_gateway_cache_field(evictions, 0, 0,
        "Entries evicted to make room."),
    ngx_http_ai_gateway_cache_field(expired, 0, 0,
        "Entries dropped because their TTL had passed."),
    ngx_http_ai_gateway_cache_field(errors, 0, 0,
        "Lookups or stores that failed in the store."),
    ngx_http_ai_gateway_cache_field(too_large, 0, 0,
        "Responses not stored, larger than max_entry_size."),
    ngx_http_ai_gateway_cache_field(entries, 1, 0,
        "Entries in the cache (Redis: counted every few seconds)."),
    ngx_http_ai_gateway_cache_field(bytes_used, 1, 1,
        "Bytes the entries use (shared-memory caches only)."),
    ngx_http_ai_gateway_cache_field(tokens_saved, 0, 0,
        "LLM tokens (usage.total_tokens) of the answers HITs replayed."),
    ngx_http_ai_gateway_cache_field(near_hits, 0, 0,
        "Of the hits, those answered by the near cache (ai_gateway_cache_near)."),
    ngx_http_ai_gateway_cache_field(coalesced, 0, 0,
        "Requests answered from an identical request in flight."),
    ngx_http_ai_gateway_cache_field(stale, 0, 0,
        "Expired entries served because the upstream failed."),
    { NULL, NULL, 0, 0, 0 }
};

static ngx_http_ai_gateway_field_t  ngx_http_ai_gateway_limit_fields[] = {
    ngx_http_ai_gateway_limit_field(passed, 0,
        "Requests the limit let through."),
    ngx_http_ai_gateway_limit_field(rejected, 0,
        "Requests the limit answered with 429."),
    ngx_http_ai_gateway_limit_field(keys, 1,
        "Keys (token buckets) the limit holds."),
    ngx_http_ai_gateway_limit_field(reserved, 0,
        "Token zones: tokens reserved at admission (the estimates);"
        " money zones: micro-dollars."),
    ngx_http_ai_gateway_limit_field(settled, 0,
        "Token zones: tokens the answers used, as settled;"
        " money zones: micro-dollars."),
    ngx_http_ai_gateway_limit_field(returned, 0,
        "Token zones: tokens reserved but not used, given back;"
        " money zones: micro-dollars."),
    ngx_http_ai_gateway_limit_field(overrun, 0,
        "Token zones: tokens used beyond their reservation;"
        " money zones: micro-dollars."),
    ngx_http_ai_gateway_limit_field(unpriced, 0,
        "Money zones: requests of a model without a price, charged at the"
        " highest."),
    { NULL, NULL, 0, 0, 0 }
};

static ngx_http_ai_gateway_field_t  ngx_http_ai_gateway_redis_fields[] = {
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_shared_stats_t, redis_errors,
        0, 0, "Redis commands that failed or found no connection."),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_shared_stats_t,
        redis_timeouts, 0, 0, "Redis commands that timed out."),
    { NULL, NULL, 0, 0, 0 }
};


#define ngx_http_ai_gateway_read(base, field)                                \
    ((ngx_atomic_uint_t) *(ngx_atomic_t *) ((u_char *) (base)                \
                                            + (field)->offset))

/* room for one field: name, label, number, and Prometheus' HELP/TYPE */
#define NGX_HTTP_AI_GATEWAY_FIELD_LEN  (256 + NGX_ATOMIC_T_LEN)

/* every family's HELP and TYPE lines, and the figures without a zone */
#define NGX_HTTP_AI_GATEWAY_FAMILIES   52


/* what the Redis cache store does not track (see the top of this file) */
#define ngx_http_ai_gateway_is_redis(backend)                                \
    ((backend)->len == 5 && ngx_strncmp((backend)->data, "redis", 5) == 0)


char *
ngx_http_ai_gateway_cachez(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_ai_gateway_cachez_handler;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_ai_gateway_cachez_handler(ngx_http_request_t *r)
{
    size_t                               size;
    ngx_int_t                            rc;
    ngx_str_t                            format;
    ngx_buf_t                           *b;
    ngx_uint_t                           prometheus;
    ngx_chain_t                          out;
    ngx_http_ai_gateway_main_conf_t     *amcf;
    ngx_http_ai_gateway_metrics_view_t  *metrics;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    prometheus = 0;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        if (format.len == 10
            && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            prometheus = 1;

        } else if (format.len != 4
                   || ngx_strncmp(format.data, "json", 4) != 0)
        {
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_ai_gateway_module);

    if (prometheus) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    /* the GenAI metrics' series as they are now (metrics_show.c) */
    metrics = ngx_http_ai_gateway_metrics_view(r, prometheus);
    if (metrics == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    size = ngx_http_ai_gateway_cachez_size(amcf)
           + ngx_http_ai_gateway_metrics_size(metrics);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = prometheus
              ? ngx_http_ai_gateway_cachez_prometheus(b->last, amcf, metrics)
              : ngx_http_ai_gateway_cachez_json(b->last, amcf, metrics);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    /* live figures: a cache in front must not keep them */
    r->headers_out.last_modified_time = -1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static size_t
ngx_http_ai_gateway_cachez_size(ngx_http_ai_gateway_main_conf_t *amcf)
{
    size_t                             size, names;
    ngx_uint_t                         i;
    ngx_http_ai_gateway_cache_ref_t  **caches;
    ngx_http_ai_gateway_limit_ref_t  **limits;

    caches = amcf->caches.elts;
    limits = amcf->limits.elts;

    /* every zone name may appear escaped once per field */
    names = 0;

    for (i = 0; i < amcf->caches.nelts; i++) {
        names += 6 * caches[i]->name.len + NGX_HTTP_AI_GATEWAY_FIELD_LEN;
    }

    for (i = 0; i < amcf->limits.nelts; i++) {
        names += 6 * limits[i]->name.len + NGX_HTTP_AI_GATEWAY_FIELD_LEN;
    }

    size = NGX_HTTP_AI_GATEWAY_FAMILIES * NGX_HTTP_AI_GATEWAY_FIELD_LEN
           + (amcf->caches.nelts + 1) * 16 * NGX_HTTP_AI_GATEWAY_FIELD_LEN
           + amcf->limits.nelts * 12 * NGX_HTTP_AI_GATEWAY_FIELD_LEN
           + 16 * names
           + ngx_http_ai_gateway_balance_cachez_size();

    return size;
}


static u_char *
ngx_http_ai_gateway_escaped(u_char *p, ngx_str_t *s)
{
    if (ngx_escape_json(NULL, s->data, s->len) == 0) {
        return ngx_cpymem(p, s->data, s->len);
    }

    return (u_char *) ngx_escape_json(p, s->data, s->len);
}


static void
ngx_http_ai_gateway_totals(ngx_http_ai_gateway_main_conf_t *amcf,
    ngx_atomic_uint_t *hits, ngx_atomic_uint_t *misses,
    ngx_atomic_uint_t *bypasses)
{
    ngx_uint_t                          i;
    ngx_http_ai_gateway_cache_ref_t   **caches;
    ngx_http_ai_gateway_cache_stats_t  *st;

    *hits = 0;
    *misses = 0;
    *bypasses = 0;

    caches = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        st = caches[i]->stats;
        if (st == NULL) {
            continue;
        }

        *hits += st->hits;
        *misses += st->misses;
        *bypasses += st->bypasses;
    }
}


static double
ngx_http_ai_gateway_ratio(ngx_atomic_uint_t hits, ngx_atomic_uint_t misses)
{
    return (hits + misses) ? (double) hits / (double) (hits + misses) : 0.0;
}


static u_char *
ngx_http_ai_gateway_json_fields(u_char *p, void *base,
    ngx_http_ai_gateway_field_t *fields, ngx_uint_t redis)
{
    ngx_http_ai_gateway_field_t  *f;

    for (f = fields; f->name; f++) {
        if (f->shm_only && redis) {
            continue;
        }

        p = ngx_sprintf(p, ",\"%s\":%uA", f->name,
                        base ? ngx_http_ai_gateway_read(base, f) : 0);
    }

    return p;
}


static u_char *
ngx_http_ai_gateway_cachez_json(u_char *p,
    ngx_http_ai_gateway_main_conf_t *amcf,
    ngx_http_ai_gateway_metrics_view_t *metrics)
{
    ngx_uint_t                           i, redis;
    ngx_atomic_uint_t                    hits, misses, bypasses;
    ngx_http_ai_gateway_cache_ref_t    **caches;
    ngx_http_ai_gateway_limit_ref_t    **limits;
    ngx_http_ai_gateway_shared_stats_t  *shared;

    shared = ngx_http_ai_gateway_shared_stats(amcf);

    ngx_http_ai_gateway_totals(amcf, &hits, &misses, &bypasses);

    p = ngx_sprintf(p, "{\"hits\":%uA,\"misses\":%uA,\"bypasses\":%uA,"
                    "\"hit_ratio\":%.4f,\"caches\":{",
                    hits, misses, bypasses,
                    ngx_http_ai_gateway_ratio(hits, misses));

    caches = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        p = ngx_sprintf(p, "%s\"", i ? "," : "");
        p = ngx_http_ai_gateway_escaped(p, &caches[i]->name);
        p = ngx_sprintf(p, "\":{\"backend\":\"%V\"", &caches[i]->backend);

        redis = ngx_http_ai_gateway_is_redis(&caches[i]->backend);

        p = ngx_http_ai_gateway_json_fields(p, caches[i]->stats,
                                            ngx_http_ai_gateway_cache_fields,
                                            redis);
        if (!redis) {
            p = ngx_sprintf(p, ",\"bytes_capacity\":%uz",
                            caches[i]->bytes_capacity);
        }

        *p++ = '}';
    }

    p = ngx_cpymem(p, "},\"limits\":{", sizeof("},\"limits\":{") - 1);

    limits = amcf->limits.elts;

    for (i = 0; i < amcf->limits.nelts; i++) {
        p = ngx_sprintf(p, "%s\"", i ? "," : "");
        p = ngx_http_ai_gateway_escaped(p, &limits[i]->name);
        p = ngx_sprintf(p, "\":{\"backend\":\"%V\",\"unit\":\"%V\"",
                        &limits[i]->backend, &limits[i]->unit);
        p = ngx_http_ai_gateway_json_fields(p, limits[i]->stats,
                                            ngx_http_ai_gateway_limit_fields,
                                            0);
        *p++ = '}';
    }

    *p++ = '}';
    p = ngx_http_ai_gateway_cachez_flight(p, 0);

    /* ,"upstreams":{...} (balance/) */
    p = ngx_http_ai_gateway_balance_cachez_json(p);

    p = ngx_sprintf(p, ",\"redis\":{\"configured\":%s,\"connected\":%s,"
                    "\"errors\":%uA,\"timeouts\":%uA}",
                    amcf->redis_configured ? "true" : "false",
                    ngx_http_ai_gateway_stats_redis_connected(shared)
                    ? "true" : "false",
                    shared->redis_errors, shared->redis_timeouts);

    /* "models" and "servers" */
    p = ngx_http_ai_gateway_metrics_json(p, metrics);

    p = ngx_sprintf(p, ",\"uptime_s\":%T}\n", ngx_time() - shared->started);

    return p;
}


static u_char *
ngx_http_ai_gateway_prometheus_head(u_char *p, const char *prefix,
    const char *name, const char *suffix, const char *type, const char *help)
{
    return ngx_sprintf(p, "# HELP ai_gateway_%s%s%s%s %s\n"
                       "# TYPE ai_gateway_%s%s%s%s %s\n",
                       prefix, *prefix ? "_" : "", name, suffix, help,
                       prefix, *prefix ? "_" : "", name, suffix, type);
}


static u_char *
ngx_http_ai_gateway_prometheus_family(u_char *p, const char *prefix,
    ngx_http_ai_gateway_field_t *f, const char *label, ngx_array_t *refs,
    size_t name_offset, size_t stats_offset)
{
    void        *ref, *base;
    ngx_str_t   *name, *backend;
    ngx_uint_t   i;

    p = ngx_http_ai_gateway_prometheus_head(p, prefix, f->name,
                                           f->gauge ? "" : "_total",
                                           f->gauge ? "gauge" : "counter",
                                           f->help);

    for (i = 0; i < refs->nelts; i++) {
        ref = ((void **) refs->elts)[i];
        name = (ngx_str_t *) ((u_char *) ref + name_offset);
        backend = name + 1;
        base = *(void **) ((u_char *) ref + stats_offset);

        if (f->shm_only && ngx_http_ai_gateway_is_redis(backend)) {
            continue;
        }

        p = ngx_sprintf(p, "ai_gateway_%s_%s%s{%s=\"", prefix, f->name,
                        f->gauge ? "" : "_total", label);
        p = ngx_http_ai_gateway_escaped(p, name);
        p = ngx_sprintf(p, "\",backend=\"%V\"} %uA\n", backend,
                        base ? ngx_http_ai_gateway_read(base, f) : 0);
    }

    return p;
}


static u_char *
ngx_http_ai_gateway_cachez_prometheus(u_char *p,
    ngx_http_ai_gateway_main_conf_t *amcf,
    ngx_http_ai_gateway_metrics_view_t *metrics)
{
    ngx_uint_t                           i;
    ngx_atomic_uint_t                    hits, misses, bypasses;
    ngx_http_ai_gateway_field_t         *f;
    ngx_http_ai_gateway_cache_ref_t    **caches;
    ngx_http_ai_gateway_shared_stats_t  *shared;

    shared = ngx_http_ai_gateway_shared_stats(amcf);

    ngx_http_ai_gateway_totals(amcf, &hits, &misses, &bypasses);

    p = ngx_sprintf(p,
            "# HELP ai_gateway_uptime_seconds Seconds since the module's"
            " shared memory was created (reloads keep it).\n"
            "# TYPE ai_gateway_uptime_seconds gauge\n"
            "ai_gateway_uptime_seconds %T\n"
            "# HELP ai_gateway_hits_total Cache hits, all caches.\n"
            "# TYPE ai_gateway_hits_total counter\n"
            "ai_gateway_hits_total %uA\n"
            "# HELP ai_gateway_misses_total Cache misses, all caches.\n"
            "# TYPE ai_gateway_misses_total counter\n"
            "ai_gateway_misses_total %uA\n"
            "# HELP ai_gateway_bypasses_total Cache bypasses, all caches.\n"
            "# TYPE ai_gateway_bypasses_total counter\n"
            "ai_gateway_bypasses_total %uA\n"
            "# HELP ai_gateway_hit_ratio hits / (hits + misses) since start,"
            " all caches.\n"
            "# TYPE ai_gateway_hit_ratio gauge\n"
            "ai_gateway_hit_ratio %.4f\n",
            ngx_time() - shared->started, hits, misses, bypasses,
            ngx_http_ai_gateway_ratio(hits, misses));

    for (f = ngx_http_ai_gateway_cache_fields; f->name; f++) {
        p = ngx_http_ai_gateway_prometheus_family(p, "cache", f, "cache",
                &amcf->caches,
                offsetof(ngx_http_ai_gateway_cache_ref_t, name),
                offsetof(ngx_http_ai_gateway_cache_ref_t, stats));
    }

    p = ngx_http_ai_gateway_prometheus_head(p, "cache", "bytes_capacity", "",
            "gauge", "Bytes of shared memory the cache zone has"
            " (shared-memory caches only).");

    caches = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        if (ngx_http_ai_gateway_is_redis(&caches[i]->backend)) {
            continue;
        }

        p = ngx_sprintf(p, "ai_gateway_cache_bytes_capacity{cache=\"");
        p = ngx_http_ai_gateway_escaped(p, &caches[i]->name);
        p = ngx_sprintf(p, "\",backend=\"%V\"} %uz\n", &caches[i]->backend,
                        caches[i]->bytes_capacity);
    }

    for (f = ngx_http_ai_gateway_limit_fields; f->name; f++) {
        p = ngx_http_ai_gateway_prometheus_family(p, "limit", f, "zone",
                &amcf->limits,
                offsetof(ngx_http_ai_gateway_limit_ref_t, name),
                offsetof(ngx_http_ai_gateway_limit_ref_t, stats));
    }

    p = ngx_sprintf(p,
            "# HELP ai_gateway_redis_configured 1 when ai_gateway_redis is"
            " set.\n"
            "# TYPE ai_gateway_redis_configured gauge\n"
            "ai_gateway_redis_configured %d\n"
            "# HELP ai_gateway_redis_connected 1 while a worker holds a live"
            " Redis connection.\n"
            "# TYPE ai_gateway_redis_connected gauge\n"
            "ai_gateway_redis_connected %d\n",
            amcf->redis_configured ? 1 : 0,
            ngx_http_ai_gateway_stats_redis_connected(shared) ? 1 : 0);

    for (f = ngx_http_ai_gateway_redis_fields; f->name; f++) {
        p = ngx_http_ai_gateway_prometheus_head(p, "", f->name, "_total",
                                               "counter", f->help);
        p = ngx_sprintf(p, "ai_gateway_%s_total %uA\n",
                        f->name, ngx_http_ai_gateway_read(shared, f));
    }

    p = ngx_http_ai_gateway_cachez_flight(p, 1);

    /* ai_gateway_upstream_* (balance/) */
    p = ngx_http_ai_gateway_balance_cachez_prometheus(p);

    /* the GenAI histograms and ai_gateway_requests_total */
    return ngx_http_ai_gateway_metrics_prometheus(p, metrics);
}


/*
 * The flight zone (ai_gateway_cache_lock_zone): flights held (running, or
 * ended with waiters still reading), the answers' bytes they hold, the
 * zone's pages in use, its size, and (JSON) the times it had no room
 */
static u_char *
ngx_http_ai_gateway_cachez_flight(u_char *p, ngx_uint_t prometheus)
{
    ngx_http_ai_gateway_flight_stats_t  st;

    if (ngx_http_ai_gateway_flight_stats(
                             ngx_http_ai_gateway_flight_find(
                                                   (ngx_cycle_t *) ngx_cycle),
                             &st)
        != NGX_OK)
    {
        return p;
    }

    if (!prometheus) {
        return ngx_sprintf(p, ",\"flight\":{\"flights\":%ui,\"bytes\":%uz,"
                           "\"bytes_used\":%uz,\"bytes_capacity\":%uz,"
                           "\"full\":%ui}",
                           st.flights, st.bytes, st.used, st.capacity,
                           st.full);
    }

    return ngx_sprintf(p,
            "# HELP ai_gateway_flight_flights Flights in the flight zone"
            " (running, or ended with waiters still reading).\n"
            "# TYPE ai_gateway_flight_flights gauge\n"
            "ai_gateway_flight_flights %ui\n"
            "# HELP ai_gateway_flight_bytes Bytes of answers the flights"
            " hold.\n"
            "# TYPE ai_gateway_flight_bytes gauge\n"
            "ai_gateway_flight_bytes %uz\n"
            "# HELP ai_gateway_flight_bytes_used Bytes of the flight zone in"
            " use.\n"
            "# TYPE ai_gateway_flight_bytes_used gauge\n"
            "ai_gateway_flight_bytes_used %uz\n"
            "# HELP ai_gateway_flight_bytes_capacity Bytes of the flight zone"
            " (ai_gateway_cache_lock_zone).\n"
            "# TYPE ai_gateway_flight_bytes_capacity gauge\n"
            "ai_gateway_flight_bytes_capacity %uz\n",
            st.flights, st.bytes, st.used, st.capacity);
}
