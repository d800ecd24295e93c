/*
 * The cache's response filters.  The header filter labels every response of
 * a cached location (X-Cache, and Age on a HIT) and decides whether a MISS
 * may be stored (lib/agw_policy.c) and for how long (lib/agw_fresh.c); if
 * so the body filter copies the body as it passes — never holding it back,
 * so streams stay unbuffered — into the request's flight, the one copy of
 * the answer, in shared memory (flight/), and hands the complete entry to
 * the store at the last buffer, which copies it from there.  With proxy
 * buffering the body is copied as the upstream's pipe reads it instead,
 * before it may be spilled to a temp file.
 *
 * What is stored, and which headers, is decided in cache_capture.c.
 *
 * A stream (text/event-stream) is copied the same way and fed to the SSE
 * parser (lib/agw_sse.c) as it passes: it is stored only if its terminal
 * event went by and the upstream's answer is complete, so a cut stream is
 * never replayed as a whole one.
 *
 * The leader of a flight (cache_wait.c) publishes what it captures, headers
 * then body, for its waiters, and ends the flight when the answer is
 * stored or turns out not storable.  An answer too large to be stored is
 * still shared with those already waiting (the flight keeps its last
 * max_entry_size bytes); a stream that reports an error (lib/agw_sse.c)
 * is never stored, and nobody joins its flight from then on, while those
 * already reading it get the same events as the first client.
 *
 * Stale on error: a request that found its entry expired but within
 * ai_gateway_cache_stale keeps it; if the upstream then fails in a way
 * ai_gateway_cache_use_stale lists (before any of its answer went out),
 * the header filter replaces the failed answer by the entry and the body
 * filter drops the failed body, as proxy_cache_use_stale answers.
 */

#include "base/ngx_http_ai_gateway_request.h"
#include "cache/ngx_http_ai_gateway_cache.h"
#include "agw_policy.h"


static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
    ngx_http_ai_gateway_cache_header(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
    ngx_http_ai_gateway_cache_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_ai_gateway_cache_append(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_buf_t *in);
static void ngx_http_ai_gateway_cache_end(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_flag_t last);
static void ngx_http_ai_gateway_cache_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx);
static void ngx_http_ai_gateway_cache_abandon(
    ngx_http_ai_gateway_cache_ctx_t *ctx);
static ngx_int_t ngx_http_ai_gateway_cache_stale_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_ai_gateway_cache_pass(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_chain_t *in);
static void ngx_http_ai_gateway_cache_drop(ngx_chain_t *in);
static void ngx_http_ai_gateway_cache_leader_read(ngx_http_request_t *r);
static size_t ngx_http_ai_gateway_cache_source_copy(
    ngx_http_ai_gateway_source_t *src, size_t offset, u_char *buf,
    size_t len);
static ngx_http_ai_gateway_source_t *ngx_http_ai_gateway_cache_source_keep(
    ngx_http_ai_gateway_source_t *src);
static void ngx_http_ai_gateway_cache_source_release(
    ngx_http_ai_gateway_source_t *src);


/*
 * What the flight of an answer too large to store keeps of it: at least a
 * megabyte, so that an answer that arrives at once (a JSON body read from
 * a fast upstream) reaches the waiters that have not read it yet; a
 * waiter further behind than that is cut
 */
#define NGX_HTTP_AI_GATEWAY_CACHE_RING(ctx)                                   \
    ngx_max((ctx)->store->max_entry_size, (size_t) 1024 * 1024)


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_ai_gateway_cache_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
    h->lowcase_key = NULL;

    return NGX_OK;
}


/* is the answer still copied into the flight (to store or to share)? */
static ngx_flag_t
ngx_http_ai_gateway_cache_taking(ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    return ctx->capture || ctx->flight.publishing;
}


/*
 * Buffered proxying: capture the body as the upstream module's pipe reads
 * it, while it is still in memory.  Once the client lags, the pipe writes
 * what it read to its temp file and the body filter only ever sees the
 * file; reading it back there would block the worker.  The pipe's input
 * filter is only final after input_filter_init (the proxy module picks
 * its chunked filter there), so that is wrapped first.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_pipe_filter(ngx_event_pipe_t *p, ngx_buf_t *buf)
{
    ngx_int_t                         rc;
    ngx_chain_t                      *cl, **last;
    ngx_http_request_t               *r;
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    r = p->input_ctx;
    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    /*
     * the filter appends what it makes of buf to p->in; p->last_in is
     * only meaningful while p->in is not empty
     */
    last = p->in ? p->last_in : &p->in;

    rc = ctx->pipe_input_filter(p, buf);

    if (rc != NGX_OK || !ngx_http_ai_gateway_cache_taking(ctx)) {
        return rc;
    }

    for (cl = *last; cl; cl = cl->next) {
        if (ngx_http_ai_gateway_cache_append(r, ctx, cl->buf) != NGX_OK) {
            return rc;
        }
    }

    if (p->upstream_done
        || (r->headers_out.content_length_n >= 0
            && ctx->captured == (size_t) r->headers_out.content_length_n))
    {
        ngx_http_ai_gateway_cache_end(r, ctx, 1);
    }

    return rc;
}


ngx_int_t
ngx_http_ai_gateway_cache_input_filter_init(void *data)
{
    ngx_http_request_t *r = data;

    ngx_int_t                         rc;
    ngx_event_pipe_t                 *p;
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    rc = ctx->input_filter_init ? ctx->input_filter_init(data) : NGX_OK;

    p = r->upstream->pipe;

    if (rc == NGX_OK && ngx_http_ai_gateway_cache_taking(ctx)
        && p->input_filter && p->input_ctx == r)
    {
        ctx->pipe_input_filter = p->input_filter;
        p->input_filter = ngx_http_ai_gateway_cache_pipe_filter;
        ctx->pipe = 1;
    }

    return rc;
}


/*
 * A MISS's answer into its flight: headers now, the body as it passes.
 * Not to be stored and not to be shared (an error, no-store, a cookie):
 * the waiters go on their own.  Too large to store: shared with those
 * waiting, if any.
 */
static void
ngx_http_ai_gateway_cache_lead(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    if (ctx->capture
        && ctx->flight.role != NGX_HTTP_AI_GATEWAY_FLIGHT_LEADER)
    {
        /* no room in the flight zone: nowhere to keep it until stored */
        ngx_http_ai_gateway_count(ctx->store->ref.stats->errors, 1);
        ctx->capture = 0;
    }

    if (!ctx->capture && !ctx->shareable) {
        ngx_http_ai_gateway_cache_abandon(ctx);
        return;
    }

    ngx_http_ai_gateway_flight_headers(&ctx->flight, ctx->headers,
                                       ctx->headers_len,
                                       r->headers_out.content_length_n);

    if (!ctx->capture
        && ngx_http_ai_gateway_flight_share_only(&ctx->flight,
                                        NGX_HTTP_AI_GATEWAY_CACHE_RING(ctx))
           != NGX_OK)
    {
        return;
    }

    if (r->read_event_handler != ngx_http_block_reading) {
        ctx->client_read = r->read_event_handler;
        r->read_event_handler = ngx_http_ai_gateway_cache_leader_read;
    }
}


static ngx_int_t
ngx_http_ai_gateway_cache_header_filter(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ctx == NULL || r != r->main
        || ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_NONE)
    {
        return ngx_http_next_header_filter(r);
    }

    return ngx_http_ai_gateway_cache_header(r, ctx);
}


/*
 * Out of line, as cache_body() below: the filters' tests above are all
 * that a request the cache does not look at runs, without these
 * functions' frames
 */

static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
ngx_http_ai_gateway_cache_header(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_str_t  age;

    if (ctx->has_stale && ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_MISS
        && ngx_http_ai_gateway_cache_stale_applies(r))
    {
        /* the waiters answer with the same stale entry, at once */
        ngx_http_ai_gateway_flight_finish(&ctx->flight,
                                          NGX_HTTP_AI_GATEWAY_FLIGHT_STALE);

        if (ngx_http_ai_gateway_cache_stale_header(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_ai_gateway_cache_add_header(r, "X-Cache",
            &ngx_http_ai_gateway_cache_status_names[ctx->status])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_HIT
        || ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_STALE)
    {
        age.data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (age.data == NULL) {
            return NGX_ERROR;
        }

        age.len = ngx_sprintf(age.data, "%T",
                     ngx_max(ngx_time()
                             - (time_t) (ctx->status
                                         == NGX_HTTP_AI_GATEWAY_CACHE_HIT
                                         ? ctx->found.entry.created
                                         : ctx->stale.entry.created), 0))
                  - age.data;

        if (ngx_http_ai_gateway_cache_add_header(r, "Age", &age) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (ctx->status == NGX_HTTP_AI_GATEWAY_CACHE_MISS) {
        ngx_http_ai_gateway_cache_start_capture(r, ctx);
        ngx_http_ai_gateway_cache_lead(r, ctx);
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_ai_gateway_cache_append(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_buf_t *in)
{
    size_t  len;

    len = in->last - in->pos;

    if (ctx->sse && !ctx->stream_error) {
        /* a stream: where its terminal event is (an error just stops it) */
        (void) agw_sse_feed(ctx->sse, in->pos, len);

        if (ctx->stream_error) {
            /* never stored; those reading it see it through, nobody joins */
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "ai_gateway cache not storing: the stream "
                           "reported an error");
            ctx->capture = 0;
            ngx_http_ai_gateway_flight_withdraw(&ctx->flight);

            (void) ngx_http_ai_gateway_flight_share_only(&ctx->flight,
                                        NGX_HTTP_AI_GATEWAY_CACHE_RING(ctx));
        }
    }

    if (ctx->capture
        && ctx->captured + len
           > ctx->store->max_entry_size - ctx->headers_overhead)
    {
        /* too large to be stored: shared with those waiting, if any */
        ngx_http_ai_gateway_count(ctx->store->ref.stats->too_large, 1);
        ctx->capture = 0;

        (void) ngx_http_ai_gateway_flight_share_only(&ctx->flight,
                                        NGX_HTTP_AI_GATEWAY_CACHE_RING(ctx));
    }

    ctx->captured += len;

    if (ngx_http_ai_gateway_flight_publish(&ctx->flight, in->pos, len)
        != NGX_OK)
    {
        /* not copied (the flight zone is full, or nobody reads it) */
        ctx->capture = 0;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The answer went by, whole (last) or not: stored if it may be, then the
 * flight ends, done for the waiters if they got all the first client did
 */
static void
ngx_http_ai_gateway_cache_end(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_flag_t last)
{
    ngx_flag_t  whole;

    whole = last && (r->headers_out.content_length_n < 0
                     || ctx->captured
                        == (size_t) r->headers_out.content_length_n);

    if (ctx->capture && whole) {
        ngx_http_ai_gateway_cache_save(r, ctx);
    }

    ctx->capture = 0;

    ngx_http_ai_gateway_flight_finish(&ctx->flight,
                               whole ? NGX_HTTP_AI_GATEWAY_FLIGHT_DONE
                                     : NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED);
}


void
ngx_http_ai_gateway_cache_source(ngx_http_ai_gateway_cache_ctx_t *ctx,
    ngx_http_ai_gateway_cache_source_t *cs)
{
    cs->src.copy = ngx_http_ai_gateway_cache_source_copy;
    cs->src.keep = ngx_http_ai_gateway_cache_source_keep;
    cs->src.release = ngx_http_ai_gateway_cache_source_release;

    if (ngx_http_ai_gateway_flight_hold(&ctx->flight, &cs->hold) != NGX_OK) {
        cs->hold.node = NULL;
    }
}


static size_t
ngx_http_ai_gateway_cache_source_copy(ngx_http_ai_gateway_source_t *src,
    size_t offset, u_char *buf, size_t len)
{
    ngx_http_ai_gateway_cache_source_t *cs =
                                    (ngx_http_ai_gateway_cache_source_t *) src;

    if (cs->hold.node == NULL) {
        return 0;
    }

    return ngx_http_ai_gateway_flight_copy(&cs->hold, offset, buf, len);
}


/* for a store that writes later: a source of its own, a hold of its own */
static ngx_http_ai_gateway_source_t *
ngx_http_ai_gateway_cache_source_keep(ngx_http_ai_gateway_source_t *src)
{
    ngx_http_ai_gateway_cache_source_t *cs =
                                    (ngx_http_ai_gateway_cache_source_t *) src;

    ngx_http_ai_gateway_cache_source_t  *kept;

    if (cs->hold.node == NULL) {
        return NULL;
    }

    kept = ngx_alloc(sizeof(ngx_http_ai_gateway_cache_source_t),
                     ngx_cycle->log);
    if (kept == NULL) {
        return NULL;
    }

    *kept = *cs;

    if (ngx_http_ai_gateway_flight_hold_more(&cs->hold, &kept->hold)
        != NGX_OK)
    {
        ngx_free(kept);
        return NULL;
    }

    return &kept->src;
}


static void
ngx_http_ai_gateway_cache_source_release(ngx_http_ai_gateway_source_t *src)
{
    ngx_http_ai_gateway_cache_source_t *cs =
                                    (ngx_http_ai_gateway_cache_source_t *) src;

    ngx_http_ai_gateway_flight_release(&cs->hold);
    ngx_free(cs);
}


static void
ngx_http_ai_gateway_cache_save(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    time_t                               ttl;
    ngx_str_t                            model;
    agw_entry_t                          entry;
    ngx_http_ai_gateway_cache_conf_t    *conf;
    ngx_http_ai_gateway_cache_source_t   cs;

    if (r->headers_out.status != NGX_HTTP_OK) {
        /* a later header filter changed the answer (a range, a 304) */
        return;
    }

    if (ctx->stream
        && (!ctx->terminal || ctx->stream_error
            || agw_sse_finish(ctx->sse) != AGW_SSE_OK))
    {
        /* a stream that did not reach its end is not a whole answer */
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "ai_gateway cache not storing: stream without its "
                       "terminal event");
        return;
    }

    ngx_memzero(&entry, sizeof(agw_entry_t));

    entry.status = (uint16_t) r->headers_out.status;
    entry.created = ngx_time();
    entry.fresh_until = entry.created + ctx->ttl;
    entry.key = ctx->key.data;
    entry.key_len = ctx->key.len;
    entry.headers = ctx->headers;
    entry.headers_len = ctx->headers_len;
    entry.body_len = ctx->captured;

    /* recorded beside the entry, for purge by model */
    if (ngx_http_ai_gateway_cache_body_model(r, ctx, &model) == NGX_OK) {
        entry.model = model.data;
        entry.model_len = model.len;
    }

    /*
     * kept past its lifetime for stale answers; the entry says how long it
     * is fresh (fresh_until), whatever the location that reads it says
     */
    conf = ngx_http_get_module_loc_conf(r, ngx_http_ai_gateway_cache_module);

    ttl = ctx->ttl;

    if (conf->stale > 0 && ngx_http_ai_gateway_cache_keeps_stale(ctx->store)) {
        ttl += conf->stale;
    }

    /* the body is where it waits: in the flight's buffer */
    ngx_http_ai_gateway_cache_source(ctx, &cs);

    if (cs.hold.node == NULL) {
        return;
    }

    (void) ctx->store->save(r, ctx->store, &ctx->digest, &entry, &cs.src,
                            ttl);

    ngx_http_ai_gateway_flight_release(&cs.hold);
}


static ngx_int_t
ngx_http_ai_gateway_cache_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    return ngx_http_ai_gateway_cache_body(r, ctx, in);
}


static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
ngx_http_ai_gateway_cache_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    if (ctx->stale_upstream) {
        return ngx_http_ai_gateway_cache_stale_body(r, ctx, in);
    }

    if (!ngx_http_ai_gateway_cache_taking(ctx)) {
        return ngx_http_ai_gateway_cache_pass(r, ctx, in);
    }

    for (cl = in; cl; cl = cl->next) {

        if (ctx->pipe) {
            /* captured as the pipe read it: only its end is awaited */

        } else if (ngx_buf_in_memory(cl->buf)) {
            if (ngx_http_ai_gateway_cache_append(r, ctx, cl->buf) != NGX_OK) {
                break;
            }

        } else if (cl->buf->in_file) {
            /*
             * a file (not from an upstream's pipe): reading it back here
             * would block the worker; not stored, and counted
             */
            ngx_http_ai_gateway_count(ctx->store->ref.stats->errors, 1);
            ctx->capture = 0;
            ngx_http_ai_gateway_cache_abandon(ctx);
            break;
        }

        /*
         * Store before the last bytes go out: once a client has read
         * Content-Length bytes it may ask again at once, while the upstream
         * module only sends the closing empty buffer after that.
         */
        if (cl->buf->last_buf
            || (r->headers_out.content_length_n >= 0
                && ctx->captured
                   == (size_t) r->headers_out.content_length_n))
        {
            ngx_http_ai_gateway_cache_end(r, ctx, 1);
            break;
        }
    }

    return ngx_http_ai_gateway_cache_pass(r, ctx, in);
}


/*
 * A leader whose client went away while others wait on its answer reads
 * on for them: what it can no longer send is dropped here, so that the
 * upstream module carries on as if it had been sent.
 */
static ngx_int_t
ngx_http_ai_gateway_cache_pass(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_int_t  rc;

    if (!ctx->orphan) {
        rc = ngx_http_next_body_filter(r, in);

        if (rc != NGX_ERROR
            || !ngx_http_ai_gateway_flight_waiters(&ctx->flight))
        {
            return rc;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ai_gateway cache: client gone, reading on for the "
                      "requests waiting on this answer");
        ctx->orphan = 1;
    }

    ngx_http_ai_gateway_cache_drop(in);

    return NGX_OK;
}


static void
ngx_http_ai_gateway_cache_drop(ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }
}


/*
 * The leader's client read handler, once its answer is being shared: a
 * client that goes away is not a reason to cut the answer the waiters read
 * (the upstream module would close the upstream connection at once).
 */
static void
ngx_http_ai_gateway_cache_leader_read(ngx_http_request_t *r)
{
    ngx_http_ai_gateway_cache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ai_gateway_cache_module);

    if (ngx_http_ai_gateway_flight_waiters(&ctx->flight)) {
        ngx_http_block_reading(r);
        return;
    }

    ctx->client_read(r);
}


/* the answer will not be stored nor shared: a flight it leads fails */
static void
ngx_http_ai_gateway_cache_abandon(ngx_http_ai_gateway_cache_ctx_t *ctx)
{
    ngx_http_ai_gateway_flight_finish(&ctx->flight,
                                      NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED);
}


/* the failed answer's body is dropped; the stale entry's goes out once */
static ngx_int_t
ngx_http_ai_gateway_cache_stale_body(ngx_http_request_t *r,
    ngx_http_ai_gateway_cache_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  out;

    ngx_http_ai_gateway_cache_drop(in);

    if (ctx->stale_sent) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->stale_sent = 1;

    /* an entry kept in pieces is read whole: a failure's answer, bounded */
    if (ctx->stale.entry.body == NULL && ctx->stale.entry.body_len
        && ngx_http_ai_gateway_cache_read_all(r, ctx, &ctx->stale) != NGX_OK)
    {
        return NGX_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = (u_char *) ctx->stale.entry.body;
    b->last = b->pos + ctx->stale.entry.body_len;
    b->memory = ctx->stale.entry.body_len ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


ngx_int_t
ngx_http_ai_gateway_cache_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_ai_gateway_cache_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_ai_gateway_cache_body_filter;

    return NGX_OK;
}
