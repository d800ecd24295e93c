/*
 * The cache's steps of the PRECONTENT handler (core/): the lookup and the
 * serving of a HIT, with the counters of each outcome.
 *
 * A request is looked up after the access phase: bypass rules first (no
 * body read, nothing counted but the bypass), then, for POST and any
 * request with a body, the whole body is read and digested as it arrives
 * (cache_body.c), then the store is asked.  The key digest covers each
 * part of the key text as a field of its own (the key is split at each
 * variable, so `$arg_a$arg_b` with a=ab,b=c and a=a,b=bc differ), the
 * body digest and, with authorized caching, a digest of every credential
 * header present (lib/agw_key.c), so one credential or one prompt never
 * meets another's answer.
 */

#include "cache/ngx_http_ai_gateway_cache.h"
#include "agw_policy.h"
#include "agw_tokens.h"


static void ngx_http_ai_gateway_cache_lookup_done(ngx_http_request_t *r,
    ngx_int_t rc, void *data);
static ngx_flag_t ngx_http_ai_gateway_cache_expired(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);


/*
 * Every line of a request header joined with ", " (RFC 9110 5.3), so a
 * directive on a second Cache-Control line counts as one on the first;
 * NGX_DECLINED if absent.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_request_header(ngx_http_request_t *r,
    const char *name, size_t len, ngx_str_t *out)
{
    u_char           *p, *q;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    out->len = 0;
    out->data = NULL;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != len
            || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
        {
            continue;
        }

        if (out->data == NULL) {
            *out = h[i].value;
            continue;
        }

        p = ngx_pnalloc(r->pool, out->len + 2 + h[i].value.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        q = ngx_cpymem(p, out->data, out->len);
        q = ngx_cpymem(q, ", ", 2);
        ngx_memcpy(q, h[i].value.data, h[i].value.len);

        out->len += 2 + h[i].value.len;
        out->data = p;
    }

    return out->data ? NGX_OK : NGX_DECLINED;
}


/*
 * The credential headers present, in the configured order, every line of
 * a repeated one, each name and value a field of their own: 0 if none.
 * With sha NULL, only whether any is present (an empty value counts).
 */
static ngx_uint_t
ngx_http_ai_gateway_cache_credentials_walk(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_conf_t *conf, agw_sha256_t *sha)
{
    ngx_str_t        *names;
    ngx_uint_t        i, j, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    names = conf->credentials->elts;
    found = 0;

    for (j = 0; j < conf->credentials->nelts; j++) {

        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len != names[j].len
                || ngx_strncasecmp(h[i].key.data, names[j].data,
                                   names[j].len) != 0)
            {
                continue;
            }

            if (sha == NULL) {
                return 1;
            }

            agw_digest_field(sha, 'N', names[j].data, names[j].len);
            agw_digest_field(sha, 'C', h[i].value.data, h[i].value.len);
            found++;
        }
    }

    return found;
}


static agw_bypass_t
ngx_http_ai_gateway_cache_bypass(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_conf_t *conf)
{
    ngx_str_t             cc, pragma;
    agw_request_facts_t   facts;

    ngx_memzero(&facts, sizeof(agw_request_facts_t));

    /* HEAD is looked up as GET (see lookup_key); unknown is never listed */
    facts.method_listed = (r->method != NGX_HTTP_UNKNOWN
                           && (r->method & conf->methods)) ? 1 : 0;
    facts.has_credential =
        ngx_http_ai_gateway_cache_credentials_walk(r, conf, NULL) ? 1 : 0;
    facts.authorized_caching = conf->authorized ? 1 : 0;
    facts.bypass_variable =
        (ngx_http_test_predicates(r, conf->bypass) == NGX_DECLINED);

    switch (ngx_http_ai_gateway_cache_request_header(r, "Cache-Control", 13,
                                                     &cc))
    {
    case NGX_OK:
        facts.cache_control = cc.data;
        facts.cache_control_len = cc.len;
        break;
    case NGX_DECLINED:
        break;
    default:
        /* not all of it could be read: do not guess it allows caching */
        return AGW_BYPASS_REQUEST_CC;
    }

    switch (ngx_http_ai_gateway_cache_request_header(r, "Pragma", 6,
                                                     &pragma))
    {
    case NGX_OK:
        facts.pragma = pragma.data;
        facts.pragma_len = pragma.len;
        break;
    case NGX_DECLINED:
        break;
    default:
        return AGW_BYPASS_REQUEST_CC;
    }

    facts.max_body = conf->max_body;

    if (r->headers_in.content_length_n >= 0) {
        facts.body_len_known = 1;
        facts.body_len = r->headers_in.content_length_n;
    }

    return agw_request_bypass(&facts);
}


static void
ngx_http_ai_gateway_cache_count(ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_http_ai_gateway_cache_stats_t  *stats;

    stats = ctx->store->ref.stats;

    switch (ctx->status) {

    case NGX_HTTP_AI_GATEWAY_CACHE_HIT:
        ngx_http_ai_gateway_count(stats->hits, 1);
        break;

    case NGX_HTTP_AI_GATEWAY_CACHE_MISS:
        ngx_http_ai_gateway_count(stats->misses, 1);
        break;

    default: /* BYPASS */
        ngx_http_ai_gateway_count(stats->bypasses, 1);
    }
}


ngx_int_t
ngx_http_ai_gateway_cache_lookup(ngx_http_request_t *r)
{
    agw_bypass_t                       bypass;
    ngx_http_ai_gateway_cache_ctx_t   *ctx;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ctx) {
        /* the phases run again after a suspended step */
        return ctx->waiting ? NGX_DONE : NGX_DECLINED;
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (conf->store == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ai_gateway_cache_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_ai_gateway_cache_module);

    ctx->store = conf->store;

    bypass = ngx_http_ai_gateway_cache_bypass(r, conf);

    if (bypass != AGW_BYPASS_NONE) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway cache bypass: %s",
                       agw_bypass_reason(bypass));

        ctx->status = NGX_HTTP_AI_GATEWAY_CACHE_BYPASS;
        ctx->done = 1;
        ngx_http_ai_gateway_cache_count(ctx);
        return NGX_DECLINED;
    }

    /* a POST, or any request with a body, is keyed on its body */
    if (r->method == NGX_HTTP_POST
        || r->headers_in.content_length_n > 0
        || r->headers_in.chunked)
    {
        ctx->body_keyed = 1;
        return ngx_http_ai_gateway_cache_read_body(r, ctx, conf->max_body);
    }

    return ngx_http_ai_gateway_cache_lookup_key(r, ctx);
}


/* the key digest, then the store; NGX_DECLINED to go on, NGX_DONE pending */
ngx_int_t
ngx_http_ai_gateway_cache_lookup_key(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    u_char                            *p;
    size_t                             len;
    ngx_int_t                          rc;
    ngx_str_t                          method, *parts;
    ngx_uint_t                         i, n;
    agw_key_t                          key;
    agw_sha256_t                       sha;
    agw_digest_t                       body, cred, *pbody, *pcred;
    ngx_http_complex_value_t          *cv;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    cv = conf->key->elts;
    n = conf->key->nelts;

    parts = ngx_palloc(r->pool, n * sizeof(ngx_str_t));
    if (parts == NULL) {
        return NGX_ERROR;
    }

    /*
     * HEAD is keyed as GET, as proxy_cache_convert_head does, so a HEAD is
     * answered from the entry a GET stored; a HEAD MISS stores nothing.
     */
    method = r->method_name;

    if (r->method == NGX_HTTP_HEAD) {
        ngx_str_set(&r->method_name, "GET");
    }

    rc = NGX_OK;
    len = 0;

    for (i = 0; i < n; i++) {
        rc = ngx_http_complex_value(r, &cv[i], &parts[i]);
        if (rc != NGX_OK) {
            break;
        }

        len += parts[i].len;
    }

    r->method_name = method;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    /* the readable key text (Redis "key" field, logs) is the parts joined */

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->key.data = p;
    ctx->key.len = len;

    agw_key_init(&key);

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, parts[i].data, parts[i].len);
        agw_key_part(&key, parts[i].data, parts[i].len);
    }

    pbody = NULL;
    pcred = NULL;

    if (ctx->body_keyed) {
        if (ngx_http_ai_gateway_cache_body_digest(r, ctx, &body) != NGX_OK) {
            /*
             * larger than allowed, or not all of it seen: forward it,
             * uncached
             */
            ctx->status = NGX_HTTP_AI_GATEWAY_CACHE_BYPASS;
            ctx->done = 1;
            ngx_http_ai_gateway_cache_count(ctx);
            return NGX_DECLINED;
        }

        pbody = &body;
    }

    /* only reached with ai_gateway_cache_authorized on if any is present */

    agw_sha256_init(&sha);

    if (ngx_http_ai_gateway_cache_credentials_walk(r, conf, &sha)) {
        agw_digest_final(&cred, &sha);
        pcred = &cred;
    }

    agw_key_final(&key, &ctx->digest, pbody, pcred);

    rc = ctx->store->lookup(r, ctx->store, &ctx->digest, &ctx->found,
                            ngx_http_ai_gateway_cache_lookup_done, ctx);

    if (rc == NGX_AGAIN) {
        ctx->waiting = 1;
        return NGX_DONE;
    }

    ngx_http_ai_gateway_cache_lookup_done(r, rc, ctx);

    /* waiting on an identical request's flight (cache_wait.c) */
    return ctx->waiting ? NGX_DONE : NGX_DECLINED;
}


/*
 * The store's answer: NGX_OK found, anything else a MISS (a failing store
 * counted its own error).  Called here when the store answered at once,
 * and by an asynchronous store as the handler its lookup was given, after
 * which the phases resume.
 */
static void
ngx_http_ai_gateway_cache_lookup_done(ngx_http_request_t *r, ngx_int_t rc,
    void *data)
{
    ngx_http_ai_gateway_cache_ctx_t *ctx = data;

    ngx_uint_t         resume;
    ngx_connection_t  *c;

    resume = ctx->waiting;

    if (resume && r->main->count == 0) {
        /*
         * terminated while waiting, its pool kept alive a little longer
         * (an HTTP/2 stream with frames still queued): nothing to resume
         */
        return;
    }

    ctx->waiting = 0;
    ctx->done = 1;

    if (rc == NGX_OK && ngx_http_ai_gateway_cache_expired(r, ctx)) {
        /* a MISS (the entry may be kept for an upstream failure) */
        rc = NGX_DECLINED;
    }

    ctx->status = (rc == NGX_OK) ? NGX_HTTP_AI_GATEWAY_CACHE_HIT
                                 : NGX_HTTP_AI_GATEWAY_CACHE_MISS;

    if (ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_MISS
        && ngx_http_ai_gateway_cache_join(r, ctx) == NGX_AGAIN)
    {
        /* counted, and the phases resumed, once the wait is over */
        ctx->waiting = 1;
        ctx->done = 0;
        return;
    }

    ngx_http_ai_gateway_cache_count(ctx);

    if (resume) {
        /* r may be freed by the time the phases return */
        c = r->connection;

        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        ngx_http_run_posted_requests(c);
    }
}


/* does the store keep entries ai_gateway_cache_stale past their TTL? */
ngx_flag_t
ngx_http_ai_gateway_cache_keeps_stale(ngx_http_ai_gateway_store_t *store)
{
    return store->ref.backend.len == 3
           && ngx_strncmp(store->ref.backend.data, "shm", 3) == 0;
}


/*
 * Is the entry found past its own lifetime?  The entry carries it
 * (fresh_until, decided when it was stored): a store may keep it longer
 * for stale answers (cache_filter.c), but it is never fresh again,
 * whatever this location's ai_gateway_cache_stale says, nor stale while
 * it is fresh.  Past it, it is kept in ctx->stale to answer an upstream
 * failure (cache_filter.c) if it is within this location's
 * ai_gateway_cache_stale: the location that reads decides how stale an
 * answer it accepts, the one that stored how long it is kept.  An entry
 * without fresh_until (written to Redis by an older gateway) is fresh for
 * as long as the store keeps it.
 */
static ngx_flag_t
ngx_http_ai_gateway_cache_expired(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    uint64_t                           now, fresh_until;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    fresh_until = ctx->found.entry.fresh_until;
    now = (uint64_t) ngx_time();

    if (fresh_until == 0 || fresh_until > now) {
        return 0;
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (conf->stale > 0 && now - fresh_until < (uint64_t) conf->stale) {
        ctx->stale = ctx->found;
        ctx->has_stale = 1;
    }

    return 1;
}


/* the tokens the upstream did not spend again (SPEC 7.1), from the end */
static uint64_t
ngx_http_ai_gateway_cache_tokens(ngx_http_ai_gateway_cache_ctx_t *ctx,
    ngx_http_ai_gateway_found_t *found)
{
    u_char        tail[AGW_TOKENS_TAIL];
    size_t        n, len;
    agw_entry_t  *e;

    e = &found->entry;

    if (e->body) {
        return agw_tokens_tail_total((const uint8_t *) e->body, e->body_len);
    }

    len = ngx_min(e->body_len, sizeof(tail));

    n = ctx->store->read(ctx->store, found, e->body_len - len, tail, len);

    return agw_tokens_tail_total(tail, n);
}


/*
 * A HIT, or a waiter's stale answer (its leader's upstream failed): the
 * entry this request found, whole from memory or, when large, a piece at
 * a time from the zone (cache_send.c)
 */
ngx_int_t
ngx_http_ai_gateway_cache_serve(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_chain_t                       out;
    agw_entry_t                      *e;
    ngx_http_ai_gateway_found_t      *found;
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ctx == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    switch (ctx->status) {

    case NGX_HTTP_AI_GATEWAY_CACHE_COALESCED:
        return ngx_http_ai_gateway_cache_serve_coalesced(r, ctx);

    case NGX_HTTP_AI_GATEWAY_CACHE_HIT:
        found = &ctx->found;
        break;

    case NGX_HTTP_AI_GATEWAY_CACHE_STALE:
        found = &ctx->stale;
        break;

    default:
        return NGX_DECLINED;
    }

    e = &found->entry;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_HIT) {
        ngx_http_ai_gateway_count(ctx->store->ref.stats->tokens_saved,
                               ngx_http_ai_gateway_cache_tokens(ctx, found));
    }

    r->headers_out.status = e->status;
    r->headers_out.content_length_n = e->body_len;

    if (ngx_http_ai_gateway_cache_set_headers(r, e->headers, e->headers_len)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    if (e->body == NULL && e->body_len) {
        /* a large entry: as the client takes it, from the zone */
        rc = ngx_http_ai_gateway_cache_send_start(r, ctx, found);

        if (rc != NGX_DONE) {
            ngx_http_finalize_request(r, rc);
        }

        return NGX_DONE;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) e->body;
    b->last = (u_char *) e->body + e->body_len;
    b->memory = e->body_len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}
