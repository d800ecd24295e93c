/*
 * The cache's side of single flight (ai_gateway_cache_lock): a request
 * that missed joins its key's flight (flight.c).  The leader goes on
 * upstream, and the cache filters publish its answer as it passes.  A
 * waiter stays in the PRECONTENT phase, before the limiter, until the
 * leader's headers are in: then it is a COALESCED answer (a HIT to the
 * limiter) and streams the leader's body as it arrives; if the leader's
 * answer fails or is not to be stored first, or lock_timeout passes, the
 * waiter is a MISS and goes upstream itself.  A leader failing once its
 * headers went out cuts its waiters' answers, as its own is cut.
 *
 * Waiters look at the flight's sequence number on a short timer that
 * backs off from 1 ms to 4 ms while nothing moves: one memory read a tick,
 * and an event of the leader reaches a waiter in any worker within a few
 * milliseconds.
 */

#include "cache/ngx_http_ai_gateway_cache.h"


#define NGX_HTTP_AI_GATEWAY_WAIT_MIN  1    /* ms */
#define NGX_HTTP_AI_GATEWAY_WAIT_MAX  4    /* ms */


static void ngx_http_ai_gateway_cache_wait_handler(ngx_event_t *ev);
static void ngx_http_ai_gateway_cache_wait_cleanup(void *data);
static void ngx_http_ai_gateway_cache_wait_write(ngx_http_request_t *r);


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


/*
 * A MISS joins its key's flight: NGX_OK to go upstream (as the leader, or
 * alone), NGX_AGAIN waiting on another request's answer
 */
ngx_int_t
ngx_http_ai_gateway_cache_join(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_uint_t                         role;
    ngx_pool_cleanup_t                *cln;
    ngx_http_ai_gateway_cache_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (conf->flight == NULL || r->method == NGX_HTTP_HEAD) {
        /* a HEAD's answer has no body to share */
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_OK;
    }

    role = ngx_http_ai_gateway_flight_join(r, conf->flight, &ctx->digest,
                                           ctx->store->max_entry_size,
                                           &ctx->flight);

    if (role != NGX_HTTP_AI_GATEWAY_FLIGHT_WAITER) {
        return NGX_OK;
    }

    /* data: the client's connection, whose fd event debug lines print */
    ctx->wait.handler = ngx_http_ai_gateway_cache_wait_handler;
    ctx->wait.data = r->connection;
    ctx->wait.log = r->connection->log;
    ctx->request = r;

    cln->handler = ngx_http_ai_gateway_cache_wait_cleanup;
    cln->data = ctx;

    ctx->wait_start = ngx_current_msec;
    ctx->wait_delay = NGX_HTTP_AI_GATEWAY_WAIT_MIN;

    /* a client that goes away while waiting is noticed */
    r->read_event_handler = ngx_http_test_reading;

    ngx_add_timer(&ctx->wait, ctx->wait_delay);

    return NGX_AGAIN;
}


static void
ngx_http_ai_gateway_cache_wait_cleanup(void *data)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx = data;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }
}


static void
ngx_http_ai_gateway_cache_wait_again(ngx_http_ai_gateway_cache_ctx_t *ctx,
    ngx_uint_t moved)
{
    if (moved) {
        ctx->wait_delay = NGX_HTTP_AI_GATEWAY_WAIT_MIN;

    } else if (ctx->wait_delay < NGX_HTTP_AI_GATEWAY_WAIT_MAX) {
        ctx->wait_delay *= 2;
    }

    ngx_add_timer(&ctx->wait, ctx->wait_delay);
}


/* the wait is over: COALESCED or, going upstream after all, a MISS */
static void
ngx_http_ai_gateway_cache_wait_done(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_uint_t coalesced)
{
    ngx_http_ai_gateway_cache_stats_t  *stats;

    stats = ctx->store->ref.stats;

    ctx->waiting = 0;
    ctx->done = 1;

    r->read_event_handler = ngx_http_block_reading;

    if (coalesced) {
        ctx->status = NGX_HTTP_AI_GATEWAY_CACHE_COALESCED;
        ngx_http_ai_gateway_count(stats->coalesced, 1);

    } else {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ctx->flight.role = NGX_HTTP_AI_GATEWAY_FLIGHT_NONE;
        ctx->status = NGX_HTTP_AI_GATEWAY_CACHE_MISS;
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
    ngx_int_t                           rc;
    ngx_http_ai_gateway_cache_conf_t   *conf;
    ngx_http_ai_gateway_flight_read_t   out;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    rc = ngx_http_ai_gateway_flight_read(r, &ctx->flight, &out);

    if (rc == NGX_OK && out.headers) {
        ctx->headers = out.headers;
        ctx->headers_len = out.headers_len;
        ctx->flight_length = out.content_length;

        /* body bytes read with the headers are served from the start */
        ctx->flight.offset = 0;
        ctx->flight.seq = (ngx_atomic_uint_t) -1;

        ngx_http_ai_gateway_cache_wait_done(r, ctx, 1);
        return;
    }

    if (rc == NGX_OK && out.state != NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway flight failed, going upstream");
        ngx_http_ai_gateway_cache_wait_done(r, ctx, 0);
        return;
    }

    if (ngx_current_msec - ctx->wait_start >= conf->lock_timeout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ai_gateway_cache_lock_timeout: going upstream");
        ngx_http_ai_gateway_cache_wait_done(r, ctx, 0);
        return;
    }

    ngx_http_ai_gateway_cache_wait_again(ctx, rc == NGX_OK);
}


/* after the headers went out: the leader's body as it arrives */
static void
ngx_http_ai_gateway_cache_wait_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_int_t                           rc;
    ngx_buf_t                          *b;
    ngx_chain_t                         out;
    ngx_http_ai_gateway_cache_conf_t   *conf;
    ngx_http_ai_gateway_flight_read_t   rd;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (r->connection->error) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    rc = ngx_http_ai_gateway_flight_read(r, &ctx->flight, &rd);

    if (rc == NGX_AGAIN) {
        if (ngx_current_msec - ctx->flight.progress >= conf->lock_timeout) {
            /* the leader stalled as long as a waiter may wait: cut */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "ai_gateway coalesced answer stalled for "
                          "ai_gateway_cache_lock_timeout");
            ngx_http_ai_gateway_flight_leave(&ctx->flight);
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        /* a slow client's queued bytes move on meanwhile */
        if (r->connection->buffered
            && ngx_http_output_filter(r, NULL) == NGX_ERROR)
        {
            ngx_http_ai_gateway_flight_leave(&ctx->flight);
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        ngx_http_ai_gateway_cache_wait_again(ctx, 0);
        return;
    }

    if (rd.state == NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED) {
        /* the leader's answer was cut: so is this one */
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    b->pos = rd.data;
    b->last = rd.data + rd.len;
    b->memory = rd.len ? 1 : 0;
    b->flush = 1;

    if (rd.state == NGX_HTTP_AI_GATEWAY_FLIGHT_DONE) {
        b->last_buf = 1;
        b->last_in_chain = 1;
    }

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);

    if (rc == NGX_ERROR || rd.state == NGX_HTTP_AI_GATEWAY_FLIGHT_DONE) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_finalize_request(r, rc);
        return;
    }

    ngx_http_ai_gateway_cache_wait_again(ctx, 1);
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

    if (ctx->waiting) {
        ngx_http_ai_gateway_cache_wait_headers(r, ctx);

    } else {
        ngx_http_ai_gateway_cache_wait_body(r, ctx);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_ai_gateway_cache_wait_write(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_finalize_request(r, NGX_ERROR);
    }
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

    ctx->flight_headers = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_ai_gateway_cache_wait_write;

    ctx->wait_delay = NGX_HTTP_AI_GATEWAY_WAIT_MIN;

    /* what the leader has sent so far goes out now */
    ngx_http_ai_gateway_cache_wait_body(r, ctx);

    return NGX_DONE;
}
