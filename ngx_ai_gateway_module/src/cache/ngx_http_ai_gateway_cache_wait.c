/*
 * The cache's side of single flight (ai_gateway_cache_lock): a request
 * that missed joins its key's flight (flight/).  The leader goes on
 * upstream, and the cache filters copy its answer into the flight as it
 * passes (it is the copy the store is written from, too).  A waiter stays
 * in the PRECONTENT phase, before the limiter, until the leader's headers
 * are in: then it is a COALESCED answer (a HIT to the limiter) and sends
 * the leader's body as it arrives (cache_send.c); if the leader's answer
 * fails or is not to be shared first, or lock_timeout passes, the waiter
 * is a MISS and goes upstream itself; if the leader's upstream failed and
 * it answers with its stale entry, the waiter answers with the same entry
 * at once (STALE), as it found it in its own lookup.  A leader failing
 * once its headers went out cuts its waiters' answers, as its own is cut.
 *
 * Waiters are woken by the worker that wrote (flight_wake.c): the event a
 * waiter gives its flight is posted when the flight moves.  An idle waiter
 * has no timer but its lock_timeout.
 *
 * What coalesces with what: the requests of one location, with the same
 * cache key digest.  A flight's digest is the request's key digest under
 * the location's own: its place in the configuration, its store (and near
 * zone), its key, key_json, key_ignore and credentials, so that two
 * locations whose keys expand alike (another zone, another upstream,
 * another key_ignore) never answer each other.
 */

#include "cache/ngx_http_ai_gateway_cache.h"


static void ngx_http_ai_gateway_cache_wait_handler(ngx_event_t *ev);
static void ngx_http_ai_gateway_cache_wait_cleanup(void *data);


static ngx_conf_bitmask_t  ngx_http_ai_gateway_cache_stale_mask[] = {
    { ngx_string("error"), NGX_HTTP_AI_GATEWAY_STALE_ERROR },
    { ngx_string("timeout"), NGX_HTTP_AI_GATEWAY_STALE_TIMEOUT },
    { ngx_string("http_500"), NGX_HTTP_AI_GATEWAY_STALE_500 },
    { ngx_string("http_502"), NGX_HTTP_AI_GATEWAY_STALE_502 },
    { ngx_string("http_503"), NGX_HTTP_AI_GATEWAY_STALE_503 },
    { ngx_string("http_504"), NGX_HTTP_AI_GATEWAY_STALE_504 },
    { ngx_string("http_429"), NGX_HTTP_AI_GATEWAY_STALE_429 },
    { ngx_string("off"), NGX_HTTP_AI_GATEWAY_STALE_OFF },
    { ngx_null_string, 0 }
};


char *
ngx_http_ai_gateway_cache_use_stale(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_cache_conf_t *acf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, j;

    if (acf->use_stale != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    acf->use_stale = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        for (j = 0; ngx_http_ai_gateway_cache_stale_mask[j].name.len; j++) {
            if (ngx_strcmp(value[i].data,
                           ngx_http_ai_gateway_cache_stale_mask[j].name.data)
                == 0)
            {
                break;
            }
        }

        if (ngx_http_ai_gateway_cache_stale_mask[j].name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in \"%V\" (expected "
                               "error, timeout, http_500, http_502, "
                               "http_503, http_504, http_429 or off)",
                               &value[i], &cmd->name);
            return NGX_CONF_ERROR;
        }

        acf->use_stale |= ngx_http_ai_gateway_cache_stale_mask[j].mask;
    }

    if ((acf->use_stale & NGX_HTTP_AI_GATEWAY_STALE_OFF)
        && acf->use_stale != NGX_HTTP_AI_GATEWAY_STALE_OFF)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"off\" cannot be combined with other values "
                           "in \"%V\"", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (acf->use_stale == NGX_HTTP_AI_GATEWAY_STALE_OFF) {
        acf->use_stale = 0;
    }

    return NGX_CONF_OK;
}




/* ai_gateway_cache_lock_zone SIZE: the flight zone, where answers wait */
char *
ngx_http_ai_gateway_cache_lock_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ai_gateway_cache_main_conf_t *cmcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (cmcf->lock_zone != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    /* room for the zone's tables of workers first, then for answers */
    if (size == NGX_ERROR || size < 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid size \"%V\" in \"%V\" (1m or more)",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    cmcf->lock_zone = size;

    return NGX_CONF_OK;
}


/*
 * The flight zone, and the digest that makes a location's flights its own
 * (see the top of this file)
 */
ngx_int_t
ngx_http_ai_gateway_cache_flight_conf(ngx_conf_t *cf,
    ngx_http_ai_gateway_cache_conf_t *conf)
{
    u_char                                  num[NGX_INT_T_LEN];
    size_t                                  size;
    ngx_str_t                              *names;
    ngx_uint_t                              i;
    agw_sha256_t                            sha;
    agw_json_str_t                         *fields;
    ngx_http_ai_gateway_store_t            *near;
    ngx_http_ai_gateway_cache_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_ai_gateway_cache_module);

    /* numbered as merged: the same configuration numbers them alike */
    cmcf->locations++;

    conf->flight = NULL;

    if (conf->store == NULL) {
        return NGX_OK;
    }

    size = (cmcf->lock_zone == NGX_CONF_UNSET_SIZE)
           ? NGX_HTTP_AI_GATEWAY_FLIGHT_SIZE : cmcf->lock_zone;

    /* every answer to store waits there, whether it is shared or not */
    conf->flight = ngx_http_ai_gateway_flight_zone(cf, size);
    if (conf->flight == NULL) {
        return NGX_ERROR;
    }

    agw_sha256_init(&sha);

    agw_digest_field(&sha, 'L', num,
                     ngx_sprintf(num, "%ui", cmcf->locations) - num);
    agw_digest_field(&sha, 'B', conf->store->ref.backend.data,
                     conf->store->ref.backend.len);
    agw_digest_field(&sha, 'S', conf->store->ref.name.data,
                     conf->store->ref.name.len);

    near = ngx_http_ai_gateway_store_near_zone(conf->store);

    if (near) {
        agw_digest_field(&sha, 'N', near->ref.name.data, near->ref.name.len);
    }

    agw_digest_field(&sha, 'K', conf->key_text.data, conf->key_text.len);
    agw_digest_field(&sha, 'J', (u_char *) (conf->key_json ? "1" : "0"), 1);

    if (conf->key_ignore) {
        fields = conf->key_ignore->elts;

        for (i = 0; i < conf->key_ignore->nelts; i++) {
            agw_digest_field(&sha, 'I', fields[i].data, fields[i].len);
        }
    }

    agw_digest_field(&sha, 'A', (u_char *) (conf->authorized ? "1" : "0"),
                     1);

    names = conf->credentials->elts;

    for (i = 0; i < conf->credentials->nelts; i++) {
        agw_digest_field(&sha, 'C', names[i].data, names[i].len);
    }

    agw_digest_final(&conf->flight_id, &sha);

    return NGX_OK;
}


ngx_int_t
ngx_http_ai_gateway_cache_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_ai_gateway_store_t     **stores;
    ngx_http_ai_gateway_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_ai_gateway_module);
    if (amcf == NULL) {
        return NGX_OK;
    }

    /* a worker that dies leaves its references: its successor drops them */
    stores = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        if (stores[i]->init_process
            && stores[i]->init_process(stores[i], cycle) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_ai_gateway_flight_init_process(cycle,
                                    ngx_http_ai_gateway_flight_find(cycle));
}


void
ngx_http_ai_gateway_cache_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_ai_gateway_store_t     **stores;
    ngx_http_ai_gateway_main_conf_t  *amcf;

    ngx_http_ai_gateway_flight_exit_process(cycle);

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_ai_gateway_module);
    if (amcf == NULL) {
        return;
    }

    stores = amcf->caches.elts;

    for (i = 0; i < amcf->caches.nelts; i++) {
        if (stores[i]->exit_process) {
            (void) stores[i]->exit_process(stores[i], cycle);
        }
    }
}


/*
 * A MISS joins its key's flight: NGX_OK to go upstream (as the leader, or
 * alone), NGX_AGAIN waiting on another request's answer
 */
ngx_int_t
ngx_http_ai_gateway_cache_join(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_uint_t                         role;
    agw_sha256_t                       sha;
    agw_digest_t                       digest;
    ngx_pool_cleanup_t                *cln;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (conf->flight == NULL || r->method == NGX_HTTP_HEAD) {
        /* a HEAD's answer has no body to keep or share */
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_OK;
    }

    /* the request's key under the location's: its own flights */
    agw_sha256_init(&sha);
    agw_digest_field(&sha, 'F', conf->flight_id.bytes, AGW_DIGEST_LEN);
    agw_digest_field(&sha, 'R', ctx->digest.bytes, AGW_DIGEST_LEN);
    agw_digest_final(&digest, &sha);

    /* data: the client's connection, whose fd event debug lines print */
    ctx->wait.handler = ngx_http_ai_gateway_cache_wait_handler;
    ctx->wait.data = r->connection;
    ctx->wait.log = r->connection->log;
    ctx->request = r;

    cln->handler = ngx_http_ai_gateway_cache_wait_cleanup;
    cln->data = ctx;

    role = ngx_http_ai_gateway_flight_join(r, conf->flight, &digest,
                                           conf->lock, &ctx->wait,
                                           &ctx->flight);

    if (role != NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER) {
        return NGX_OK;
    }

    ctx->wait_start = ngx_current_msec;
    ctx->flight_length = -1;

    /* a client that goes away while waiting is noticed */
    r->read_event_handler = ngx_http_test_reading;

    /* the slow way out; the first look at once: it may have its headers */
    ngx_add_timer(&ctx->wait, conf->lock_timeout);
    ngx_post_event(&ctx->wait, &ngx_posted_events);

    return NGX_AGAIN;
}


static void
ngx_http_ai_gateway_cache_wait_cleanup(void *data)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx = data;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    if (ctx->wait.posted) {
        ngx_delete_posted_event(&ctx->wait);
    }
}


/* the wait is over: COALESCED, STALE or, going upstream after all, a MISS */
static void
ngx_http_ai_gateway_cache_wait_done(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx,
    ngx_http_ai_gateway_cache_status_e status)
{
    ngx_http_ai_gateway_cache_stats_t  *stats;

    stats = ctx->store->ref.stats;

    ctx->waiting = 0;
    ctx->done = 1;
    ctx->status = status;

    r->read_event_handler = ngx_http_block_reading;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    switch (status) {

    case NGX_HTTP_AI_GATEWAY_CACHE_COALESCED:
        ngx_http_ai_gateway_count(stats->coalesced, 1);
        break;

    case NGX_HTTP_AI_GATEWAY_CACHE_STALE:
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_ai_gateway_count(stats->stale, 1);
        break;

    default: /* MISS */
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ctx->flight.role = NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
        ngx_http_ai_gateway_count(stats->misses, 1);
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/* before the leader's headers: wait for them, fail over, or time out */
static void
ngx_http_ai_gateway_cache_wait_headers(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_http_ai_gateway_cache_conf_t   *conf;
    ngx_http_ai_gateway_flight_read_t   out;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (ngx_http_ai_gateway_flight_read(r, &ctx->flight, NULL, 0, &out)
        != NGX_OK)
    {
        ngx_http_ai_gateway_cache_wait_done(r, ctx,
                                            NGX_HTTP_AI_GATEWAY_CACHE_MISS);
        return;
    }

    if (out.headers && out.state != NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED) {
        ctx->headers = out.headers;
        ctx->headers_len = out.headers_len;
        ctx->flight_length = out.content_length;

        ngx_http_ai_gateway_cache_wait_done(r, ctx,
                                        NGX_HTTP_AI_GATEWAY_CACHE_COALESCED);
        return;
    }

    if (out.state == NGX_HTTP_AI_GATEWAY_FLIGHT_STALE && ctx->has_stale) {
        /* the leader answers with the entry this request found too */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway flight answered stale, so does this one");
        ngx_http_ai_gateway_cache_wait_done(r, ctx,
                                            NGX_HTTP_AI_GATEWAY_CACHE_STALE);
        return;
    }

    if (out.state != NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway flight failed, going upstream");
        ngx_http_ai_gateway_cache_wait_done(r, ctx,
                                            NGX_HTTP_AI_GATEWAY_CACHE_MISS);
        return;
    }

    if (ngx_current_msec - ctx->wait_start >= conf->lock_timeout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ai_gateway_cache_lock_timeout: going upstream");
        ngx_http_ai_gateway_cache_wait_done(r, ctx,
                                            NGX_HTTP_AI_GATEWAY_CACHE_MISS);
        return;
    }

    if (!ctx->wait.timer_set) {
        ngx_add_timer(&ctx->wait,
                      conf->lock_timeout
                      - (ngx_current_msec - ctx->wait_start));
    }
}


static void
ngx_http_ai_gateway_cache_wait_handler(ngx_event_t *ev)
{
    ngx_connection_t                 *c;
    ngx_http_request_t               *r;
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_event_owner(ev, ngx_http_ai_gateway_cache_ctx_t,
                                          wait);
    r = ctx->request;
    c = r->connection;

    ev->timedout = 0;

    /* once the wait is over, wake-ups wait for the headers to go out */
    if (ctx->waiting) {
        ngx_http_ai_gateway_cache_wait_headers(r, ctx);
    }

    ngx_http_run_posted_requests(c);
}


/* the stored (or the leader's) headers, as a HIT replays them */
ngx_int_t
ngx_http_ai_gateway_cache_set_headers(ngx_http_request_t *r,
    const u_char *headers, size_t len)
{
    size_t            pos;
    agw_header_t      hdr;
    ngx_table_elt_t  *h;

    pos = 0;

    /* a blob that decoded, or the leader's own, is known well formed */
    while (agw_headers_next(headers, len, &pos, &hdr) == 1) {

        if (hdr.name_len == sizeof("Content-Type") - 1
            && ngx_strncasecmp((u_char *) hdr.name, (u_char *) "Content-Type",
                               hdr.name_len) == 0)
        {
            r->headers_out.content_type.data = (u_char *) hdr.value;
            r->headers_out.content_type.len = hdr.value_len;
            r->headers_out.content_type_len = hdr.value_len;
            continue;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->key.data = (u_char *) hdr.name;
        h->key.len = hdr.name_len;
        h->value.data = (u_char *) hdr.value;
        h->value.len = hdr.value_len;
        h->lowcase_key = NULL;

        /* where the not-modified filter looks, so it can answer 304 */

        if (hdr.name_len == sizeof("ETag") - 1
            && ngx_strncasecmp(h->key.data, (u_char *) "ETag",
                               hdr.name_len) == 0)
        {
            r->headers_out.etag = h;

        } else if (hdr.name_len == sizeof("Last-Modified") - 1
                   && ngx_strncasecmp(h->key.data, (u_char *) "Last-Modified",
                                      hdr.name_len) == 0)
        {
            r->headers_out.last_modified = h;
            r->headers_out.last_modified_time =
                            ngx_parse_http_time(h->value.data, h->value.len);
        }
    }

    return NGX_OK;
}




ngx_int_t
ngx_http_ai_gateway_cache_serve_coalesced(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        return rc;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = ctx->flight_length;

    if (ngx_http_ai_gateway_cache_set_headers(r, ctx->headers,
                                              ctx->headers_len)
        != NGX_OK)
    {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    ctx->flight_headers = 1;

    /* what the leader has sent so far goes out now, the rest as it comes */
    return ngx_http_ai_gateway_cache_send_start(r, ctx, NULL);
}
