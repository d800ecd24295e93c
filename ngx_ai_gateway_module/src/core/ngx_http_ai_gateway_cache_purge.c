/*
 * ai_gateway_cache_purge (SPEC 7.3): a content handler that drops cached
 * entries.  It answers POST with a JSON object
 *
 *     {"cache": "<zone>|redis", "key": "<cache key text>"}
 *     {"cache": "<zone>|redis", "model": "<model>"}
 *     {"cache": "<zone>|redis", "all": true}
 *
 * with {"purged":N}, after the store has gone through its entries in steps
 * (ngx_http_ai_gateway_store.h).  The key is the readable key text (what
 * the Redis `key` field holds): every entry stored under it goes, whatever
 * body or credential was digested with it.  A body that is not such an
 * object, an unknown cache or field, or no selector or two is a 400, any
 * other method a 405, both with a JSON error.
 *
 * The body is read with the canonicaliser (lib/agw_json_canonical.c) rather than a
 * parser of its own: what it writes is strict JSON with sorted members, no
 * whitespace and no duplicate, so the few fields above are picked from it
 * by a scan that only has to know where a string ends.
 */

#include "core/ngx_http_ai_gateway_handlers.h"
#include "store/ngx_http_ai_gateway_store.h"
#include "agw_json.h"
#include "agw_json_canonical.h"


static ngx_int_t ngx_http_ai_gateway_cache_purge_handler(
    ngx_http_request_t *r);
static void ngx_http_ai_gateway_cache_purge_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_ai_gateway_cache_purge_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_main_conf_t *amcf, ngx_http_ai_gateway_store_t *store,
    ngx_http_ai_gateway_purge_by_e by, ngx_str_t *value);
static void ngx_http_ai_gateway_purge_near_done(ngx_http_request_t *r,
    ngx_int_t rc, ngx_uint_t purged);
static void ngx_http_ai_gateway_cache_purge_done(ngx_http_request_t *r,
    ngx_int_t rc, ngx_uint_t purged);
static ngx_int_t ngx_http_ai_gateway_cache_purge_send(ngx_http_request_t *r,
    ngx_uint_t status, const char *error, ngx_str_t *arg, ngx_int_t purged);


typedef struct {
    ngx_str_t                            cache;
    ngx_str_t                            value;
    ngx_http_ai_gateway_purge_by_e       by;
    ngx_uint_t                           selectors;
} ngx_http_ai_gateway_purge_request_t;


char *
ngx_http_ai_gateway_cache_purge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_ai_gateway_cache_purge_handler) {
        return "is duplicate";
    }

    if (clcf->handler) {
        return "conflicts with the location's content handler "
               "(proxy_pass or the like)";
    }

    clcf->handler = ngx_http_ai_gateway_cache_purge_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ai_gateway_cache_purge_handler(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    if (r->method != NGX_HTTP_POST) {

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "POST");

        return ngx_http_ai_gateway_cache_purge_send(r,
                                               NGX_HTTP_NOT_ALLOWED,
                                               "method not allowed, use POST",
                                               NULL, -1);
    }

    rc = ngx_http_read_client_request_body(r,
                                       ngx_http_ai_gateway_cache_purge_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The string at *p (a '"' of the canonical form), unescaped into r's pool;
 * *p moves past it.  NGX_DECLINED if *p is not a string.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_purge_string(ngx_http_request_t *r, u_char **p,
    u_char *last, ngx_str_t *out)
{
    u_char     *q, *start;
    ptrdiff_t   n;

    q = *p;

    if (q == last || *q != '"') {
        return NGX_DECLINED;
    }

    start = ++q;

    while (q < last && *q != '"') {
        q += (*q == '\\') ? 2 : 1;
    }

    if (q >= last) {
        return NGX_DECLINED;
    }

    out->data = ngx_pnalloc(r->pool, (q - start) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    n = agw_json_unescape(start, q - start, out->data, (q - start) + 1);
    if (n < 0) {
        return NGX_DECLINED;
    }

    out->len = n;
    *p = q + 1;

    return NGX_OK;
}


/* NULL, or the error to answer with (arg: what it names) */
static const char *
ngx_http_ai_gateway_cache_purge_parse(ngx_http_request_t *r, u_char *in,
    size_t len, ngx_http_ai_gateway_purge_request_t *pr, ngx_str_t *arg)
{
    int             rc;
    u_char         *p, *last, *out;
    size_t          size, out_size;
    void           *scratch;
    ngx_int_t       n;
    ngx_str_t       name, value;
    agw_json_buf_t  buf;

    /* numbers may grow (1e20 is written out), strings never do */
    out_size = 8 * len + 64;
    size = agw_json_scratch_size(len);

    out = ngx_pnalloc(r->pool, out_size);
    scratch = ngx_palloc(r->pool, size);
    if (out == NULL || scratch == NULL) {
        return "out of memory";
    }

    buf.pos = out;
    buf.end = out + out_size;

    rc = agw_json_canonical(in, len, NULL, 0, scratch, size,
                            agw_json_buf_write, &buf, NULL);

    if (rc == AGW_JSON_EDUP) {
        return "a member is repeated";
    }

    if (rc != AGW_JSON_OK || out[0] != '{') {
        return "the body must be a JSON object";
    }

    p = out + 1;
    last = buf.pos - 1;  /* the closing '}' */

    while (p < last) {

        n = ngx_http_ai_gateway_cache_purge_string(r, &p, last, &name);
        if (n == NGX_ERROR) {
            return "out of memory";
        }

        if (n != NGX_OK || p >= last || *p++ != ':') {
            return "the body must be a JSON object";
        }

        if (name.len == 3 && ngx_strncmp(name.data, "all", 3) == 0) {

            if (last - p < 4 || ngx_strncmp(p, "true", 4) != 0) {
                return "\"all\" must be true";
            }

            p += 4;
            pr->by = NGX_HTTP_AI_GATEWAY_PURGE_ALL;
            pr->selectors++;

        } else {
            n = ngx_http_ai_gateway_cache_purge_string(r, &p, last, &value);
            if (n == NGX_ERROR) {
                return "out of memory";
            }

            if (name.len == 5 && ngx_strncmp(name.data, "cache", 5) == 0) {
                if (n != NGX_OK) {
                    return "\"cache\" must be a string";
                }

                pr->cache = value;

            } else if (name.len == 3
                       && ngx_strncmp(name.data, "key", 3) == 0)
            {
                if (n != NGX_OK || value.len == 0) {
                    return "\"key\" must be a non-empty string";
                }

                pr->by = NGX_HTTP_AI_GATEWAY_PURGE_KEY;
                pr->value = value;
                pr->selectors++;

            } else if (name.len == 5
                       && ngx_strncmp(name.data, "model", 5) == 0)
            {
                if (n != NGX_OK || value.len == 0) {
                    return "\"model\" must be a non-empty string";
                }

                pr->by = NGX_HTTP_AI_GATEWAY_PURGE_MODEL;
                pr->value = value;
                pr->selectors++;

            } else {
                *arg = name;
                return "unknown field";
            }
        }

        if (p < last && *p == ',') {
            p++;
        }
    }

    if (pr->cache.data == NULL) {
        return "\"cache\" is missing";
    }

    if (pr->selectors != 1) {
        return "exactly one of \"key\", \"model\" or \"all\" is needed";
    }

    return NULL;
}


static void
ngx_http_ai_gateway_cache_purge_body(ngx_http_request_t *r)
{
    u_char                               *body, *p;
    size_t                                len;
    ngx_int_t                             rc;
    ngx_str_t                             arg;
    ngx_uint_t                            i;
    ngx_chain_t                          *cl;
    const char                           *error;
    ngx_http_ai_gateway_store_t          *store, **stores;
    ngx_http_ai_gateway_main_conf_t      *amcf;
    ngx_http_ai_gateway_purge_request_t   pr;

    ngx_memzero(&pr, sizeof(ngx_http_ai_gateway_purge_request_t));
    arg.len = 0;

    len = 0;

    for (cl = r->request_body ? r->request_body->bufs : NULL;
         cl;
         cl = cl->next)
    {
        if (cl->buf->in_file) {
            /* larger than client_body_buffer_size: not a purge request */
            ngx_http_finalize_request(r,
                ngx_http_ai_gateway_cache_purge_send(r,
                                                NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                                "the body is too large",
                                                NULL, -1));
            return;
        }

        if (ngx_buf_in_memory(cl->buf)) {
            len += cl->buf->last - cl->buf->pos;
        }
    }

    body = ngx_pnalloc(r->pool, len + 1);
    if (body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = body;

    for (cl = r->request_body ? r->request_body->bufs : NULL;
         cl;
         cl = cl->next)
    {
        if (ngx_buf_in_memory(cl->buf)) {
            p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }
    }

    error = ngx_http_ai_gateway_cache_purge_parse(r, body, len, &pr, &arg);

    if (error) {
        ngx_http_finalize_request(r,
                       ngx_http_ai_gateway_cache_purge_send(r,
                                              NGX_HTTP_BAD_REQUEST, error,
                                              arg.len ? &arg : NULL, -1));
        return;
    }

    amcf = ngx_http_get_module_main_conf(r, ngx_http_ai_gateway_module);

    store = NULL;
    stores = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        if (stores[i]->ref.name.len == pr.cache.len
            && ngx_strncmp(stores[i]->ref.name.data, pr.cache.data,
                           pr.cache.len) == 0)
        {
            store = stores[i];
            break;
        }
    }

    if (store == NULL || store->purge == NULL) {
        ngx_http_finalize_request(r,
                       ngx_http_ai_gateway_cache_purge_send(r,
                                              NGX_HTTP_BAD_REQUEST,
                                              "unknown cache", &pr.cache,
                                              -1));
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "ai_gateway purge of cache \"%V\" %s \"%V\"",
                  &pr.cache,
                  pr.by == NGX_HTTP_AI_GATEWAY_PURGE_KEY ? "by key" :
                  pr.by == NGX_HTTP_AI_GATEWAY_PURGE_MODEL ? "by model"
                                                             : "all",
                  &pr.value);

    rc = ngx_http_ai_gateway_cache_purge_start(r, amcf, store, pr.by,
                                               &pr.value);

    if (rc == NGX_AGAIN) {
        /* the store calls purge_done, which finalizes */
        return;
    }

    ngx_http_finalize_request(r,
                   ngx_http_ai_gateway_cache_purge_send(r,
                                          NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "the cache is unavailable",
                                          &pr.cache, -1));
}


/*
 * A purge of the Redis cache also clears, here, the near zones kept in
 * front of it (ai_gateway_cache_near): one after the other, once Redis is
 * done, each in its own slices.  The answer counts the Redis entries; the
 * near copies are copies.  Other gateways' near copies expire within their
 * ttl.  The chain's state hangs on a pool cleanup, found again as the
 * limiter finds its ctx (no module ctx slot is free here).
 */

typedef struct {
    ngx_http_ai_gateway_main_conf_t    *amcf;
    ngx_http_ai_gateway_purge_by_e      by;
    ngx_str_t                           value;
    ngx_uint_t                          next;     /* in amcf->caches */
    ngx_uint_t                          purged;   /* from Redis */
} ngx_http_ai_gateway_purge_near_t;


static void
ngx_http_ai_gateway_purge_near_cleanup(void *data)
{
    /* nothing to free: the handler only marks where the state is */
}


static ngx_http_ai_gateway_purge_near_t *
ngx_http_ai_gateway_purge_near_state(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_ai_gateway_purge_near_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


static void
ngx_http_ai_gateway_purge_near_next(ngx_http_request_t *r)
{
    ngx_uint_t                         i;
    ngx_http_ai_gateway_store_t      **stores;
    ngx_http_ai_gateway_purge_near_t  *pn;

    pn = ngx_http_ai_gateway_purge_near_state(r);
    stores = pn->amcf->caches.elts;

    for (i = pn->next; i < pn->amcf->caches.nelts; i++) {
        if (!stores[i]->near_zone || stores[i]->purge == NULL) {
            continue;
        }

        pn->next = i + 1;

        if (stores[i]->purge(r, stores[i], pn->by, &pn->value,
                             ngx_http_ai_gateway_purge_near_done)
            == NGX_AGAIN)
        {
            return;
        }
    }

    ngx_http_ai_gateway_cache_purge_done(r, NGX_OK, pn->purged);
}


static void
ngx_http_ai_gateway_purge_near_done(ngx_http_request_t *r, ngx_int_t rc,
    ngx_uint_t purged)
{
    ngx_http_ai_gateway_purge_near_next(r);
}


static void
ngx_http_ai_gateway_purge_redis_done(ngx_http_request_t *r, ngx_int_t rc,
    ngx_uint_t purged)
{
    ngx_http_ai_gateway_purge_near_t  *pn;

    if (rc != NGX_OK) {
        ngx_http_ai_gateway_cache_purge_done(r, rc, purged);
        return;
    }

    pn = ngx_http_ai_gateway_purge_near_state(r);
    pn->purged = purged;

    ngx_http_ai_gateway_purge_near_next(r);
}


static ngx_int_t
ngx_http_ai_gateway_cache_purge_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_main_conf_t *amcf, ngx_http_ai_gateway_store_t *store,
    ngx_http_ai_gateway_purge_by_e by, ngx_str_t *value)
{
    ngx_pool_cleanup_t                *cln;
    ngx_http_ai_gateway_purge_near_t  *pn;

    if (ngx_strcmp(store->ref.backend.data, "redis") != 0) {
        return store->purge(r, store, by, value,
                            ngx_http_ai_gateway_cache_purge_done);
    }

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_ai_gateway_purge_near_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    pn = cln->data;
    pn->amcf = amcf;
    pn->by = by;
    pn->value = *value;
    pn->next = 0;
    pn->purged = 0;

    cln->handler = ngx_http_ai_gateway_purge_near_cleanup;

    return store->purge(r, store, by, value,
                        ngx_http_ai_gateway_purge_redis_done);
}


static void
ngx_http_ai_gateway_cache_purge_done(ngx_http_request_t *r, ngx_int_t rc,
    ngx_uint_t purged)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_log_error(NGX_LOG_NOTICE, c->log, 0,
                  "ai_gateway purge: %ui entries%s", purged,
                  rc == NGX_OK ? "" : ", stopped by an error");

    if (rc == NGX_OK) {
        rc = ngx_http_ai_gateway_cache_purge_send(r, NGX_HTTP_OK, NULL,
                                                  NULL, purged);

    } else {
        rc = ngx_http_ai_gateway_cache_purge_send(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "the purge stopped part way",
                                             NULL, purged);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * {"purged":N}, {"error":"..."} or {"error":"...","purged":N}; arg, if
 * any, is appended to the error after ": "
 */
static ngx_int_t
ngx_http_ai_gateway_cache_purge_send(ngx_http_request_t *r,
    ngx_uint_t status, const char *error, ngx_str_t *arg, ngx_int_t purged)
{
    u_char       *p;
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    len = sizeof("{\"error\":\": \",\"purged\":}\n") + NGX_INT_T_LEN;

    if (error) {
        len += ngx_strlen(error) * 6;
    }

    if (arg) {
        len += ngx_escape_json(NULL, arg->data, arg->len) + arg->len;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(b->last, "{", 1);

    if (error) {
        p = ngx_cpymem(p, "\"error\":\"", sizeof("\"error\":\"") - 1);
        p = (u_char *) ngx_escape_json(p, (u_char *) error,
                                       ngx_strlen(error));

        if (arg) {
            p = ngx_cpymem(p, ": ", 2);
            p = (u_char *) ngx_escape_json(p, arg->data, arg->len);
        }

        *p++ = '"';
    }

    if (purged >= 0) {
        p = ngx_sprintf(p, "%s\"purged\":%i", error ? "," : "", purged);
    }

    p = ngx_cpymem(p, "}\n", 2);

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
