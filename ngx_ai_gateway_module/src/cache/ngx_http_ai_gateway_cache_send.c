/*
 * A body sent from where it is kept in shared memory, a piece at a time
 * as the client takes it: a waiter's from its flight (the leader's answer
 * as it arrives), a HIT's or a stale answer's from a large entry of a
 * shared-memory store.  The request has one buffer of
 * NGX_HTTP_AI_GATEWAY_CACHE_PIECE bytes, filled again only once its client
 * has taken all of it, so a thousand waiters or replays of a long answer
 * hold it once, in the zone, and a piece each.
 *
 * The loop runs on the flight's wake-ups (the waiter's event, posted by
 * the worker that wrote) and on the client's write events.  A waiter whose
 * leader stalls for lock_timeout is cut, as is one that fell so far behind
 * that what it had to read next is gone (flight_buffer.c), and one whose
 * leader's answer was cut; its client sees the same cut as the leader's.
 */

#include "cache/ngx_http_ai_gateway_cache.h"


#define NGX_HTTP_AI_GATEWAY_CACHE_PIECE   8192   /* bytes a request holds */
#define NGX_HTTP_AI_GATEWAY_CACHE_ROUNDS  16     /* pieces per event, then
                                                    a turn for the others */


static void ngx_http_ai_gateway_cache_send_write(ngx_http_request_t *r);
static void ngx_http_ai_gateway_cache_send_event(ngx_event_t *ev);


static void
ngx_http_ai_gateway_cache_send_cut(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_int_t rc)
{
    ngx_http_ai_gateway_flight_leave(&ctx->flight);

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }

    ngx_http_finalize_request(r, rc);
}


ngx_int_t
ngx_http_ai_gateway_cache_send_start(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_http_ai_gateway_found_t *replay)
{
    ctx->piece = ngx_create_temp_buf(r->pool, NGX_HTTP_AI_GATEWAY_CACHE_PIECE);
    if (ctx->piece == NULL) {
        ngx_http_ai_gateway_flight_leave(&ctx->flight);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->piece->last = ctx->piece->pos;
    ctx->replay = replay;
    ctx->sent = 0;
    ctx->progress = ngx_current_msec;
    ctx->request = r;

    /* from now on the flight's wake-ups (if any) and turns send more */
    ctx->wait.handler = ngx_http_ai_gateway_cache_send_event;
    ctx->wait.data = r->connection;
    ctx->wait.log = r->connection->log;

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_ai_gateway_cache_send_write;

    ngx_http_ai_gateway_cache_send(r, ctx);

    return NGX_DONE;
}


/*
 * The next piece into buf: *n bytes, *end when it is the last one.
 * NGX_AGAIN: nothing yet (a waiter waits for its leader), NGX_ERROR: cut.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_send_read(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, u_char *buf, size_t size,
    size_t *n, ngx_uint_t *end)
{
    ngx_http_ai_gateway_cache_conf_t   *conf;
    ngx_http_ai_gateway_flight_read_t   out;

    if (ctx->replay) {
        *n = ctx->store->read(ctx->store, ctx->replay, ctx->sent, buf, size);
        ctx->sent += *n;
        *end = (ctx->sent == ctx->replay->entry.body_len);

        return (*n || *end) ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_ai_gateway_flight_read(r, &ctx->flight, buf, size, &out)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (out.lagged) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ai_gateway coalesced answer: the client fell too far "
                      "behind the first one's");
        return NGX_ERROR;
    }

    *n = out.len;
    *end = out.end;

    if (*n || *end) {
        ctx->progress = ngx_current_msec;
        return NGX_OK;
    }

    if (out.state != NGX_HTTP_AI_GATEWAY_FLIGHT_RUNNING) {
        /* the leader's answer was cut after its headers: so is this one */
        return NGX_ERROR;
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    if (ngx_current_msec - ctx->progress >= conf->lock_timeout) {
        /* the leader stalled as long as a waiter may wait: cut */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ai_gateway coalesced answer stalled for "
                      "ai_gateway_cache_lock_timeout");
        return NGX_ERROR;
    }

    if (!ctx->wait.timer_set) {
        ngx_add_timer(&ctx->wait,
                      conf->lock_timeout
                      - (ngx_current_msec - ctx->progress));
    }

    return NGX_AGAIN;
}


void
ngx_http_ai_gateway_cache_send(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    size_t                     n;
    ngx_buf_t                 *b;
    ngx_int_t                  rc;
    ngx_uint_t                 round, end;
    ngx_chain_t                out;
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;
    b = ctx->piece;

    if (c->error) {
        ngx_http_ai_gateway_cache_send_cut(r, ctx,
                                           NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    if (c->write->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "client timed out");
        c->timedout = 1;
        ngx_http_ai_gateway_cache_send_cut(r, ctx, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    for (round = 0; round < NGX_HTTP_AI_GATEWAY_CACHE_ROUNDS; round++) {

        if (b->pos != b->last) {
            /* the client has not taken the last piece yet */
            if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
                ngx_http_ai_gateway_cache_send_cut(r, ctx, NGX_ERROR);
                return;
            }

            if (b->pos != b->last) {
                goto wait_write;
            }
        }

        rc = ngx_http_ai_gateway_cache_send_read(r, ctx, b->start,
                                                 b->end - b->start, &n, &end);

        if (rc == NGX_AGAIN) {
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_http_ai_gateway_cache_send_cut(r, ctx, NGX_ERROR);
            return;
        }

        /* an empty one (the end alone) must not say it holds memory */
        b->pos = b->start;
        b->last = b->start + n;
        b->temporary = n ? 1 : 0;
        b->flush = 1;
        b->last_buf = end ? 1 : 0;
        b->last_in_chain = 1;

        out.buf = b;
        out.next = NULL;

        rc = ngx_http_output_filter(r, &out);

        if (end) {
            ngx_http_ai_gateway_flight_leave(&ctx->flight);

            if (ctx->wait.timer_set) {
                ngx_del_timer(&ctx->wait);
            }

            ngx_http_finalize_request(r, rc);
            return;
        }

        if (rc == NGX_ERROR) {
            ngx_http_ai_gateway_cache_send_cut(r, ctx, NGX_ERROR);
            return;
        }
    }

    /* more to send: the others' turn first */
    ngx_post_event(&ctx->wait, &ngx_posted_events);

    return;

wait_write:

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (ngx_handle_write_event(c->write, clcf->send_lowat) != NGX_OK) {
        ngx_http_ai_gateway_cache_send_cut(r, ctx, NGX_ERROR);
        return;
    }

    if (c->write->active && !c->write->ready && !c->write->timer_set) {
        ngx_add_timer(c->write, clcf->send_timeout);
    }
}


static void
ngx_http_ai_gateway_cache_send_event(ngx_event_t *ev)
{
    ngx_connection_t                 *c;
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_ai_gateway_event_owner(ev, ngx_http_ai_gateway_cache_ctx_t,
                                          wait);
    c = ctx->request->connection;

    ev->timedout = 0;

    ngx_http_ai_gateway_cache_send(ctx->request, ctx);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_ai_gateway_cache_send_write(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (r->connection->write->timer_set && r->connection->write->ready) {
        ngx_del_timer(r->connection->write);
    }

    ngx_http_ai_gateway_cache_send(r, ctx);
}


ngx_int_t
ngx_http_ai_gateway_cache_read_all(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_http_ai_gateway_found_t *found)
{
    u_char  *body;
    size_t   n, got, len;

    len = found->entry.body_len;

    body = ngx_pnalloc(r->pool, len ? len : 1);
    if (body == NULL) {
        return NGX_ERROR;
    }

    for (n = 0; n < len; n += got) {
        got = ctx->store->read(ctx->store, found, n, body + n, len - n);

        if (got == 0) {
            return NGX_ERROR;
        }
    }

    found->entry.body = body;

    return NGX_OK;
}
