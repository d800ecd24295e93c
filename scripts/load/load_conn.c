/*
 * agw-load: connections and requests on evhttp's client.
 *
 * Each connection runs its requests one after another (keep-alive) until
 * the run has started --requests of them; with --hold each connection
 * runs exactly one, all at once.  evhttp parses the answer (status line,
 * headers, chunked or sized body); what is ours is only the scan of the
 * body for SSE "data:" lines, which crosses the chunks evhttp hands us.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>

#include "load.h"


static void load_conn_start(evutil_socket_t fd, short what, void *arg);
static void load_conn_send(load_conn_t *conn, uint64_t index, int64_t now);
static int load_conn_headers(struct evhttp_request *req, void *arg);
static void load_conn_body(struct evhttp_request *req, void *arg);
static void load_conn_error(enum evhttp_request_error err, void *arg);
static void load_conn_done(struct evhttp_request *req, void *arg);
static void load_conn_settle(load_ctx_t *ctx, int64_t now);
static void load_conn_finish(load_conn_t *conn, int64_t now);
static void load_conn_release_cb(evutil_socket_t fd, short what, void *arg);
static int load_add_header(load_ctx_t *ctx, struct evkeyvalq *out,
    const load_header_t *h, uint64_t index, load_conn_t *conn,
    load_rec_t *rec);


int64_t
load_now_us(load_ctx_t *ctx)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ((int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec - ctx->t0_ns)
           / 1000;
}


static struct timeval
load_tv_us(int64_t us)
{
    struct timeval  tv;

    if (us < 0) {
        us = 0;
    }

    tv.tv_sec = us / 1000000;
    tv.tv_usec = us % 1000000;

    return tv;
}


int
load_conn_init(load_ctx_t *ctx)
{
    unsigned         i;
    load_conf_t     *conf;
    load_conn_t     *conn;
    load_target_t   *t;
    struct timeval   tv;

    conf = &ctx->conf;

    ctx->conns = calloc(conf->connections, sizeof(load_conn_t));
    ctx->nchunks = (size_t) ((conf->requests >> LOAD_CHUNK_SHIFT) + 1);
    ctx->chunks = calloc(ctx->nchunks, sizeof(load_rec_t *));

    if (ctx->conns == NULL || ctx->chunks == NULL) {
        fprintf(stderr, "agw-load: out of memory for %u connections and "
                "%llu requests\n", conf->connections,
                (unsigned long long) conf->requests);
        return -1;
    }

    tv.tv_sec = (time_t) conf->timeout;
    tv.tv_usec = (suseconds_t) ((conf->timeout - (double) tv.tv_sec) * 1e6);

    for (i = 0; i < conf->connections; i++) {
        conn = &ctx->conns[i];
        conn->ctx = ctx;
        conn->index = i;
        conn->first = 1;

        /* connection i goes to target i mod N: the same share for each */
        t = &conf->targets[i % conf->ntargets];

        conn->evcon = evhttp_connection_base_new(ctx->base, NULL, t->host,
                                                 (unsigned short) t->port);
        conn->timer = evtimer_new(ctx->base, load_conn_start, conn);

        if (conn->evcon == NULL || conn->timer == NULL) {
            fprintf(stderr, "agw-load: cannot set up connection %u to "
                    "%s:%d\n", i, t->host, t->port);
            return -1;
        }

        evhttp_connection_set_timeout_tv(conn->evcon, &tv);
        evhttp_connection_set_retries(conn->evcon, 0);
        (void) evhttp_connection_set_flags(conn->evcon,
                                           EVHTTP_CON_REUSE_CONNECTED_ADDR);

        if (conf->nsources) {
            evhttp_connection_set_local_address(conn->evcon,
                                         conf->sources[i % conf->nsources]);
        }
    }

    ctx->release = evtimer_new(ctx->base, load_conn_release_cb, ctx);

    return (ctx->release != NULL) ? 0 : -1;
}


/*
 * Connection i opens at i / --connect-rate seconds: thousands of SYNs at
 * once overflow the server's listen backlog, and a dropped SYN is retried
 * a whole second later, which would show up as time to first event.
 */
void
load_conn_start_all(load_ctx_t *ctx)
{
    unsigned         i;
    struct timeval   tv;

    for (i = 0; i < ctx->conf.connections; i++) {
        tv = load_tv_us(ctx->conf.connect_rate > 0
                        ? (int64_t) (i * 1e6 / ctx->conf.connect_rate) : 0);
        evtimer_add(ctx->conns[i].timer, &tv);
    }
}


static void
load_conn_start(evutil_socket_t fd, short what, void *arg)
{
    int64_t         now, due;
    uint64_t        limit;
    load_ctx_t     *ctx;
    load_conn_t    *conn;
    struct timeval  tv;

    (void) fd;
    (void) what;

    conn = arg;
    ctx = conn->ctx;
    limit = ctx->conf.requests;

    if (ctx->stopping || ctx->next >= limit
        || (ctx->conf.hold && !conn->first))
    {
        return;
    }

    now = load_now_us(ctx);

    /* --rate: request k may start at k / rate seconds, not before */
    if (ctx->conf.rate > 0) {
        due = (int64_t) ((double) ctx->next * 1e6 / ctx->conf.rate);

        if (due > now) {
            tv = load_tv_us(due - now);
            evtimer_add(conn->timer, &tv);
            return;
        }
    }

    conn->first = 0;
    load_conn_send(conn, ctx->next++, now);
}


static void
load_conn_send(load_conn_t *conn, uint64_t index, int64_t now)
{
    int                     last;
    unsigned                i;
    load_ctx_t             *ctx;
    load_rec_t             *rec;
    load_conf_t            *conf;
    load_target_t          *t;
    struct evkeyvalq       *out;
    struct evhttp_request  *req;

    ctx = conn->ctx;
    conf = &ctx->conf;
    t = &conf->targets[conn->index % conf->ntargets];

    if (ctx->chunks[index >> LOAD_CHUNK_SHIFT] == NULL) {
        ctx->chunks[index >> LOAD_CHUNK_SHIFT] =
                  calloc((size_t) 1 << LOAD_CHUNK_SHIFT, sizeof(load_rec_t));

        if (ctx->chunks[index >> LOAD_CHUNK_SHIFT] == NULL) {
            fprintf(stderr, "agw-load: out of memory at request %llu\n",
                    (unsigned long long) index);
            exit(1);
        }
    }

    rec = load_rec(ctx, index);
    memset(rec, 0, sizeof(load_rec_t));
    rec->start = now;
    rec->headers = rec->first_byte = rec->first_event = -1;
    rec->last_event = rec->end = -1;
    rec->conn = conn->index;
    conn->rec = rec;

    req = evhttp_request_new(load_conn_done, conn);
    if (req == NULL) {
        goto failed;
    }

    evhttp_request_set_header_cb(req, load_conn_headers);
    evhttp_request_set_chunked_cb(req, load_conn_body);
    evhttp_request_set_error_cb(req, load_conn_error);

    out = evhttp_request_get_output_headers(req);

    /* a connection that will not be used again asks the server to close
     * it: the server's side then keeps the TIME_WAIT, not our ports */
    last = conf->hold || ctx->next >= conf->requests;

    if (evhttp_add_header(out, "Host", t->authority) != 0
        || evhttp_add_header(out, "Content-Type", "application/json") != 0
        || (conf->stream
            && evhttp_add_header(out, "Accept", "text/event-stream") != 0)
        || (last && evhttp_add_header(out, "Connection", "close") != 0))
    {
        evhttp_request_free(req);
        goto failed;
    }

    if (load_body_make(ctx, rec, index,
                       evhttp_request_get_output_buffer(req)) != 0)
    {
        evhttp_request_free(req);
        goto failed;
    }

    for (i = 0; i < conf->nheaders; i++) {
        if (load_add_header(ctx, out, &conf->headers[i], index, conn, rec)
            != 0)
        {
            evhttp_request_free(req);
            goto failed;
        }
    }

    if (evhttp_make_request(conn->evcon, req, EVHTTP_REQ_POST, t->path)
        != 0)
    {
        /* the socket could not be bound (--source ports exhausted); the
         * request is out of the connection's queue and still ours */
        if (conn->rec == rec) {
            evhttp_request_free(req);
            goto failed;
        }
    }

    return;

failed:

    rec->error = LOAD_ERR_CONNECT;
    load_conn_finish(conn, now);
}


/* -H values: {i} the request, {u} the virtual user, {t} the tenant */
static int
load_add_header(load_ctx_t *ctx, struct evkeyvalq *out,
    const load_header_t *h, uint64_t index, load_conn_t *conn,
    load_rec_t *rec)
{
    char         buf[512], *d, *end;
    const char  *s;

    if (!h->templated) {
        return evhttp_add_header(out, h->name, h->value);
    }

    d = buf;
    end = buf + sizeof(buf) - 24;

    for (s = h->value; *s != '\0' && d < end; s++) {
        if (s[0] == '{' && s[1] != '\0' && s[2] == '}') {
            if (s[1] == 'i') {
                d += sprintf(d, "%llu", (unsigned long long) index);
                s += 2;
                continue;
            }

            if (s[1] == 'u') {
                d += sprintf(d, "%u", conn->index % ctx->conf.users);
                s += 2;
                continue;
            }

            if (s[1] == 't') {
                d += sprintf(d, "%u", (unsigned) rec->tenant);
                s += 2;
                continue;
            }
        }

        *d++ = *s;
    }

    *d = '\0';

    return evhttp_add_header(out, h->name, buf);
}


/* the index of a recorded header's value in its table, 0 for absent */
static uint8_t
load_intern(load_values_t *t, const char *v)
{
    unsigned  i;

    if (v == NULL) {
        return 0;
    }

    for (i = 1; i <= t->nvalues; i++) {
        if (strcmp(t->values[i], v) == 0) {
            return (uint8_t) i;
        }
    }

    if (t->nvalues == LOAD_MAX_VALUES) {
        return LOAD_VALUE_OTHER;
    }

    t->values[++t->nvalues] = strdup(v);

    return (t->values[t->nvalues] != NULL) ? (uint8_t) t->nvalues
                                           : LOAD_VALUE_OTHER;
}


static int
load_conn_headers(struct evhttp_request *req, void *arg)
{
    int64_t             now;
    unsigned            i;
    const char         *ct;
    load_ctx_t         *ctx;
    load_rec_t         *rec;
    load_conn_t        *conn;
    struct evkeyvalq   *in;
    struct bufferevent *bev;

    conn = arg;
    ctx = conn->ctx;
    rec = conn->rec;

    if (rec == NULL || rec->headers >= 0) {
        return 0;
    }

    now = load_now_us(ctx);
    in = evhttp_request_get_input_headers(req);

    rec->headers = now;
    rec->status = (uint16_t) evhttp_request_get_response_code(req);

    ct = evhttp_find_header(in, "Content-Type");
    rec->stream = (ct != NULL
                   && strncasecmp(ct, "text/event-stream", 17) == 0);

    for (i = 0; i < ctx->conf.nrecorded; i++) {
        rec->values[i] = load_intern(&ctx->values[i],
                            evhttp_find_header(in, ctx->conf.recorded[i]));
    }

    if (++ctx->open > ctx->peak_open) {
        ctx->peak_open = ctx->open;
    }

    /* --hold-pause: the answer waits in the sockets (and in the server)
     * until the streams are released; evhttp reads only what has
     * already arrived with the headers */
    if (ctx->conf.hold_pause && !ctx->released) {
        bev = evhttp_connection_get_bufferevent(conn->evcon);

        if (bev != NULL) {
            bufferevent_disable(bev, EV_READ);
            rec->paused = 1;
        }
    }

    ctx->settled++;
    load_conn_settle(ctx, now);

    return 0;
}


static void
load_conn_body(struct evhttp_request *req, void *arg)
{
    int                 i, n;
    int64_t             now;
    load_rec_t         *rec;
    load_conn_t        *conn;
    struct evbuffer    *buf;
    struct evbuffer_iovec  v[16];

    conn = arg;
    rec = conn->rec;

    if (rec == NULL) {
        return;
    }

    now = load_now_us(conn->ctx);
    buf = evhttp_request_get_input_buffer(req);

    if (rec->first_byte < 0) {
        rec->first_byte = now;
    }

    /* evhttp drains the buffer after this callback: read it in place */
    n = evbuffer_peek(buf, -1, NULL, v, 16);

    if (n > 16) {
        (void) evbuffer_pullup(buf, -1);
        n = evbuffer_peek(buf, -1, NULL, v, 16);
    }

    for (i = 0; i < n && i < 16; i++) {
        rec->bytes += v[i].iov_len;
        load_sse_scan(rec, v[i].iov_base, v[i].iov_len, now);
    }
}


static void
load_conn_error(enum evhttp_request_error err, void *arg)
{
    load_conn_t  *conn;

    conn = arg;

    if (conn->rec == NULL) {
        return;
    }

    switch (err) {
    case EVREQ_HTTP_TIMEOUT:
        conn->rec->error = LOAD_ERR_TIMEOUT;
        break;
    case EVREQ_HTTP_EOF:
        conn->rec->error = LOAD_ERR_EOF;
        break;
    case EVREQ_HTTP_INVALID_HEADER:
        conn->rec->error = LOAD_ERR_INVALID;
        break;
    case EVREQ_HTTP_BUFFER_ERROR:
        conn->rec->error = LOAD_ERR_BUFFER;
        break;
    case EVREQ_HTTP_REQUEST_CANCEL:
        conn->rec->error = LOAD_ERR_CANCEL;
        break;
    case EVREQ_HTTP_DATA_TOO_LONG:
        conn->rec->error = LOAD_ERR_TOO_LONG;
        break;
    default:
        conn->rec->error = LOAD_ERR_EOF;
    }
}


static void
load_conn_done(struct evhttp_request *req, void *arg)
{
    int64_t       now;
    load_rec_t   *rec;
    load_conn_t  *conn;

    conn = arg;
    rec = conn->rec;

    if (rec == NULL) {
        return;
    }

    now = load_now_us(conn->ctx);

    if (req == NULL || evhttp_request_get_response_code(req) == 0) {
        /* failed: the error callback said why, or nothing answered */
        if (rec->error == LOAD_ERR_NONE) {
            rec->error = LOAD_ERR_CONNECT;
        }

    } else {
        rec->ended = 1;
        rec->status = (uint16_t) evhttp_request_get_response_code(req);

        if (rec->stream && rec->status / 100 == 2 && !rec->done) {
            rec->error = LOAD_ERR_NO_DONE;
        }
    }

    load_conn_finish(conn, now);
}


/* a request is over, whichever way: account for it, start the next */
static void
load_conn_finish(load_conn_t *conn, int64_t now)
{
    load_ctx_t     *ctx;
    load_rec_t     *rec;
    struct timeval  tv;

    ctx = conn->ctx;
    rec = conn->rec;
    conn->rec = NULL;

    rec->end = now;

    if (rec->headers >= 0) {
        ctx->open--;

    } else {
        ctx->settled++;
        ctx->failed_early++;
    }

    ctx->finished++;

    if (ctx->first_done < 0) {
        ctx->first_done = now;
        fprintf(stderr, "agw-load: first-done t_ms=%.1f\n", now / 1000.0);
        fflush(stderr);
    }

    load_conn_settle(ctx, now);

    if (ctx->finished == ctx->next
        && (ctx->next >= ctx->conf.requests || ctx->stopping))
    {
        event_base_loopexit(ctx->base, NULL);
        return;
    }

    /* the next request on this connection, from the loop, not from
     * inside evhttp's callback */
    if (!ctx->conf.hold) {
        tv = load_tv_us(0);
        evtimer_add(conn->timer, &tv);
    }
}


/* --hold: every stream has its headers (or failed) */
static void
load_conn_settle(load_ctx_t *ctx, int64_t now)
{
    struct timeval  tv;

    if (!ctx->conf.hold || ctx->all_open >= 0
        || ctx->settled < ctx->conf.requests)
    {
        return;
    }

    ctx->all_open = now;

    /* the streams that ended already count as open: they had theirs */
    fprintf(stderr, "agw-load: all-open open=%u ended=%llu failed=%llu "
            "t_ms=%.1f\n", ctx->open,
            (unsigned long long) (ctx->settled - ctx->failed_early
                                  - ctx->open),
            (unsigned long long) ctx->failed_early, now / 1000.0);
    fflush(stderr);

    if (ctx->conf.hold_pause && ctx->conf.hold_ms >= 0) {
        tv = load_tv_us((int64_t) (ctx->conf.hold_ms * 1000));
        evtimer_add(ctx->release, &tv);
    }
}


static void
load_conn_release_cb(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;

    load_conn_release(arg);
}


/* SIGUSR1 or --hold-ms: the paused streams read on */
void
load_conn_release(load_ctx_t *ctx)
{
    unsigned             i;
    load_conn_t         *conn;
    struct bufferevent  *bev;

    if (ctx->released) {
        return;
    }

    ctx->released = 1;

    fprintf(stderr, "agw-load: released t_ms=%.1f\n",
            load_now_us(ctx) / 1000.0);
    fflush(stderr);

    for (i = 0; i < ctx->conf.connections; i++) {
        conn = &ctx->conns[i];

        if (conn->rec == NULL || !conn->rec->paused) {
            continue;
        }

        conn->rec->paused = 0;
        bev = evhttp_connection_get_bufferevent(conn->evcon);

        if (bev != NULL) {
            bufferevent_enable(bev, EV_READ);
        }
    }
}


/* --duration over, or a signal: no new requests */
void
load_conn_stop(load_ctx_t *ctx)
{
    ctx->stopping = 1;

    if (ctx->finished == ctx->next) {
        event_base_loopexit(ctx->base, NULL);
    }
}


void
load_conn_free_all(load_ctx_t *ctx)
{
    unsigned  i;

    if (ctx->conns != NULL) {
        for (i = 0; i < ctx->conf.connections; i++) {
            if (ctx->conns[i].timer != NULL) {
                event_free(ctx->conns[i].timer);
            }

            if (ctx->conns[i].evcon != NULL) {
                evhttp_connection_free(ctx->conns[i].evcon);
            }
        }

        free(ctx->conns);
        ctx->conns = NULL;
    }

    if (ctx->release != NULL) {
        event_free(ctx->release);
        ctx->release = NULL;
    }

    for (i = 0; i < LOAD_MAX_RECORDED; i++) {
        while (ctx->values[i].nvalues > 0) {
            free(ctx->values[i].values[ctx->values[i].nvalues--]);
        }
    }

    if (ctx->chunks != NULL) {
        for (i = 0; i < ctx->nchunks; i++) {
            free(ctx->chunks[i]);
        }

        free(ctx->chunks);
        ctx->chunks = NULL;
    }
}
