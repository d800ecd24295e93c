/*
 * GET /cachez: the module's counters as JSON (SPEC 3.4) or, with
 * ?format=prometheus, in Prometheus text exposition format.
 *
 * Modelled on ngx_http_stub_status_handler(): GET and HEAD only, one buffer
 * sized up front, counters read without a lock (they are atomics in shared
 * memory), nothing counted for reading them.  Both formats walk the same
 * field tables so the two can never disagree on what is reported.
 */

#include "ngx_http_ai_gateway_module.h"


typedef struct {
    const char                    *name;    /* JSON field, metric stem */
    size_t                         offset;  /* in the stats struct */
    unsigned                       gauge:1;
} ngx_http_ai_gateway_field_t;


static size_t ngx_http_ai_gateway_cachez_size(
    ngx_http_ai_gateway_main_conf_t *amcf);
static u_char *ngx_http_ai_gateway_cachez_json(u_char *p,
    ngx_http_ai_gateway_main_conf_t *amcf);
static u_char *ngx_http_ai_gateway_cachez_prometheus(u_char *p,
    ngx_http_ai_gateway_main_conf_t *amcf);


#define ngx_http_ai_gateway_field(type, name, gauge)                         \
    { #name, offsetof(type, name), gauge }

static ngx_http_ai_gateway_field_t  ngx_http_ai_gateway_cache_fields[] = {
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, hits, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, misses, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, bypasses, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, stores, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, evictions, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, expired, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, errors, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, too_large, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, entries, 1),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, bytes_used, 1),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, coalesced, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_cache_stats_t, stale, 0),
    { NULL, 0, 0 }
};

static ngx_http_ai_gateway_field_t  ngx_http_ai_gateway_limit_fields[] = {
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, passed, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, rejected, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, keys, 1),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, reserved, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, settled, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, returned, 0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_limit_stats_t, overrun, 0),
    { NULL, 0, 0 }
};

static ngx_http_ai_gateway_field_t  ngx_http_ai_gateway_redis_fields[] = {
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_shared_stats_t, redis_errors,
                              0),
    ngx_http_ai_gateway_field(ngx_http_ai_gateway_shared_stats_t,
                              redis_timeouts, 0),
    { NULL, 0, 0 }
};


#define ngx_http_ai_gateway_read(base, field)                                \
    ((ngx_atomic_uint_t) *(ngx_atomic_t *) ((u_char *) (base)                \
                                            + (field)->offset))

/* room for one field: name, label, number, and Prometheus' HELP/TYPE */
#define NGX_HTTP_AI_GATEWAY_FIELD_LEN  (160 + NGX_ATOMIC_T_LEN)


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
    size_t                            size;
    ngx_int_t                         rc;
    ngx_str_t                         format;
    ngx_buf_t                        *b;
    ngx_uint_t                        prometheus;
    ngx_chain_t                       out;
    ngx_http_ai_gateway_main_conf_t  *amcf;

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

    size = ngx_http_ai_gateway_cachez_size(amcf);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = prometheus ? ngx_http_ai_gateway_cachez_prometheus(b->last, amcf)
                         : ngx_http_ai_gateway_cachez_json(b->last, amcf);
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

    size = 16 * NGX_HTTP_AI_GATEWAY_FIELD_LEN
           + (amcf->caches.nelts + 1) * 12 * NGX_HTTP_AI_GATEWAY_FIELD_LEN
           + amcf->limits.nelts * 9 * NGX_HTTP_AI_GATEWAY_FIELD_LEN
           + 12 * names;

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
    ngx_http_ai_gateway_field_t *fields)
{
    ngx_http_ai_gateway_field_t  *f;

    for (f = fields; f->name; f++) {
        p = ngx_sprintf(p, ",\"%s\":%uA", f->name,
                        base ? ngx_http_ai_gateway_read(base, f) : 0);
    }

    return p;
}


static u_char *
ngx_http_ai_gateway_cachez_json(u_char *p,
    ngx_http_ai_gateway_main_conf_t *amcf)
{
    ngx_uint_t                           i;
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
        p = ngx_http_ai_gateway_json_fields(p, caches[i]->stats,
                                            ngx_http_ai_gateway_cache_fields);
        p = ngx_sprintf(p, ",\"bytes_capacity\":%uz}",
                        caches[i]->bytes_capacity);
    }

    p = ngx_cpymem(p, "},\"limits\":{", sizeof("},\"limits\":{") - 1);

    limits = amcf->limits.elts;

    for (i = 0; i < amcf->limits.nelts; i++) {
        p = ngx_sprintf(p, "%s\"", i ? "," : "");
        p = ngx_http_ai_gateway_escaped(p, &limits[i]->name);
        p = ngx_sprintf(p, "\":{\"backend\":\"%V\",\"unit\":\"%V\"",
                        &limits[i]->backend, &limits[i]->unit);
        p = ngx_http_ai_gateway_json_fields(p, limits[i]->stats,
                                            ngx_http_ai_gateway_limit_fields);
        *p++ = '}';
    }

    p = ngx_sprintf(p, "},\"redis\":{\"configured\":%s,\"connected\":%s,"
                    "\"errors\":%uA,\"timeouts\":%uA},\"uptime_s\":%T}\n",
                    amcf->redis_configured ? "true" : "false",
                    ngx_http_ai_gateway_stats_redis_connected(shared)
                    ? "true" : "false",
                    shared->redis_errors, shared->redis_timeouts,
                    ngx_time() - shared->started);

    return p;
}


static u_char *
ngx_http_ai_gateway_prometheus_family(u_char *p, const char *prefix,
    ngx_http_ai_gateway_field_t *f, const char *label, ngx_array_t *refs,
    size_t name_offset, size_t stats_offset)
{
    void        *ref, *base;
    ngx_str_t   *name, *backend;
    ngx_uint_t   i;

    p = ngx_sprintf(p, "# TYPE ai_gateway_%s_%s%s %s\n", prefix, f->name,
                    f->gauge ? "" : "_total", f->gauge ? "gauge" : "counter");

    for (i = 0; i < refs->nelts; i++) {
        ref = ((void **) refs->elts)[i];
        name = (ngx_str_t *) ((u_char *) ref + name_offset);
        backend = name + 1;
        base = *(void **) ((u_char *) ref + stats_offset);

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
    ngx_http_ai_gateway_main_conf_t *amcf)
{
    ngx_uint_t                           i;
    ngx_atomic_uint_t                    hits, misses, bypasses;
    ngx_http_ai_gateway_field_t         *f;
    ngx_http_ai_gateway_cache_ref_t    **caches;
    ngx_http_ai_gateway_shared_stats_t  *shared;

    shared = ngx_http_ai_gateway_shared_stats(amcf);

    ngx_http_ai_gateway_totals(amcf, &hits, &misses, &bypasses);

    p = ngx_sprintf(p,
            "# TYPE ai_gateway_uptime_seconds gauge\n"
            "ai_gateway_uptime_seconds %T\n"
            "# TYPE ai_gateway_hits_total counter\n"
            "ai_gateway_hits_total %uA\n"
            "# TYPE ai_gateway_misses_total counter\n"
            "ai_gateway_misses_total %uA\n"
            "# TYPE ai_gateway_bypasses_total counter\n"
            "ai_gateway_bypasses_total %uA\n"
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

    p = ngx_sprintf(p, "# TYPE ai_gateway_cache_bytes_capacity gauge\n");

    caches = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
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
            "# TYPE ai_gateway_redis_configured gauge\n"
            "ai_gateway_redis_configured %d\n"
            "# TYPE ai_gateway_redis_connected gauge\n"
            "ai_gateway_redis_connected %d\n",
            amcf->redis_configured ? 1 : 0,
            ngx_http_ai_gateway_stats_redis_connected(shared) ? 1 : 0);

    for (f = ngx_http_ai_gateway_redis_fields; f->name; f++) {
        p = ngx_sprintf(p, "# TYPE ai_gateway_%s_total counter\n"
                        "ai_gateway_%s_total %uA\n",
                        f->name, f->name, ngx_http_ai_gateway_read(shared, f));
    }

    return p;
}
