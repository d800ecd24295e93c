/*
 * ai-sim: the lifetime of a request that waits on a timer (a delayed JSON
 * answer or a stream), and the clock and jitter of the latency model.
 */

#include <math.h>
#include <stdlib.h>
#include <time.h>

#include <event2/bufferevent.h>

#include "sim.h"


static void sim_req_timer_handler(evutil_socket_t fd, short what, void *arg);
static void sim_req_close_handler(struct evhttp_connection *evcon,
    void *arg);


uint64_t
sim_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


uint64_t
sim_now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


double
sim_jitter(sim_ctx_t *ctx)
{
    double  j;

    j = ctx->conf.jitter;

    if (j == 0) {
        return 1.0;
    }

    /* uniform in [1 - jitter, 1 + jitter] */
    return 1.0 - j + 2.0 * j * sim_rng_uniform(&ctx->rng);
}


/*
 * evhttp 2.1 stops reading a connection once its request is in, and reads
 * again, for close detection only, when the answer starts: a client who
 * leaves while its JSON answer waits would go unseen until the answer is
 * written, and would hold a decode slot or a queue place all that time.
 * So we do now what evhttp_write_buffer() does when an answer starts: no
 * read callback, evhttp's own event callback kept, EV_READ on; an EOF
 * then fails the connection, which calls our close callback.  Sending the
 * answer sets evhttp's callbacks again, and bytes of a pipelined request
 * wait in the input buffer until the answer is out.
 */
static void
sim_req_watch_close(struct evhttp_connection *evcon)
{
    void                  *arg;
    struct bufferevent    *bev;
    bufferevent_data_cb    write_cb;
    bufferevent_event_cb   event_cb;

    bev = evhttp_connection_get_bufferevent(evcon);
    if (bev == NULL) {
        return;
    }

    bufferevent_getcb(bev, NULL, &write_cb, &event_cb, &arg);
    bufferevent_setcb(bev, NULL, write_cb, event_cb, arg);
    (void) bufferevent_enable(bev, EV_READ);
}


sim_req_t *
sim_req_create(sim_ctx_t *ctx, struct evhttp_request *req,
    sim_req_handler_pt handler)
{
    sim_req_t  *r;

    r = calloc(1, sizeof(sim_req_t));
    if (r == NULL) {
        return NULL;
    }

    r->timer = evtimer_new(ctx->base, sim_req_timer_handler, r);
    if (r->timer == NULL) {
        free(r);
        return NULL;
    }

    r->ctx = ctx;
    r->req = req;
    r->evcon = evhttp_request_get_connection(req);
    r->handler = handler;
    r->start_ms = sim_now_ms();
    r->start_us = sim_now_us();
    r->total_tokens = -1;
    r->factor = 1.0;
    sim_prefix_seq_init(&r->seq, 0);

    r->next = ctx->inflight_head;
    if (r->next != NULL) {
        r->next->prev = r;
    }
    ctx->inflight_head = r;
    ctx->inflight++;

    /*
     * The connection can go away while the timer is pending (a client
     * hangs up while queued, decoding or streaming); the close callback
     * is the only notice we get before the request memory is gone.
     *
     * evhttp keeps reading while it answers, to see the client leave (we
     * make it read before the answer starts, too), and its read timeout
     * would cut an answer that takes longer than --idle-timeout; a
     * request in flight gets the long timeout instead.
     */
    if (r->evcon != NULL) {
        evhttp_connection_set_closecb(r->evcon, sim_req_close_handler, r);
        evhttp_connection_set_timeout(r->evcon, SIM_HTTP_TIMEOUT);
        sim_req_watch_close(r->evcon);
    }

    return r;
}


int
sim_req_schedule(sim_req_t *r, double delay_ms)
{
    double          us;
    struct timeval  tv;

    if (!(delay_ms > 0)) {
        delay_ms = 0;
    }

    us = floor(delay_ms * 1000.0);
    tv.tv_sec = (time_t) (us / 1000000.0);
    tv.tv_usec = (suseconds_t) (us - (double) tv.tv_sec * 1000000.0);

    return evtimer_add(r->timer, &tv);
}


/*
 * Frees our state only: the evhttp request stays with its connection,
 * which frees it after the reply or when evhttp_free() runs.
 */
void
sim_req_finalize(sim_req_t *r)
{
    sim_ctx_t  *ctx;

    ctx = r->ctx;

    if (r->prev != NULL) {
        r->prev->next = r->next;

    } else {
        ctx->inflight_head = r->next;
    }

    if (r->next != NULL) {
        r->next->prev = r->prev;
    }

    ctx->inflight--;

    /* its slot and cache blocks go to the next sequence at once */
    sim_sched_leave(r);
    sim_prefix_seq_free(&r->seq);

    if (r->evcon != NULL) {
        evhttp_connection_set_closecb(r->evcon, NULL, NULL);
        sim_http_set_idle(ctx, r->evcon);
    }

    event_free(r->timer);
    cJSON_Delete(r->reply);
    free(r->prefix);

    if (r->chunk != NULL) {
        evbuffer_free(r->chunk);
    }

    free(r);
}


void
sim_req_free_all(sim_ctx_t *ctx)
{
    /* the queue must not start what is about to be freed */
    ctx->stopping = 1;

    while (ctx->inflight_head != NULL) {
        sim_req_finalize(ctx->inflight_head);
    }
}


static void
sim_req_timer_handler(evutil_socket_t fd, short what, void *arg)
{
    sim_req_t  *r;

    (void) fd;
    (void) what;

    r = arg;
    r->handler(r);
}


static void
sim_req_close_handler(struct evhttp_connection *evcon, void *arg)
{
    int                     detached;
    sim_req_t              *r;
    struct evhttp_request  *req;

    (void) evcon;

    r = arg;
    req = r->req;

    /*
     * On EOF with the reply unfinished, evhttp unlinks the request from
     * the dying connection and leaves it to us (req->evcon == NULL);
     * otherwise the connection frees it itself.
     */
    detached = (evhttp_request_get_connection(req) == NULL);

    r->evcon = NULL;
    sim_req_finalize(r);

    if (detached) {
        evhttp_request_free(req);
    }
}


static void
sim_reply_send(sim_req_t *r, int with_latency)
{
    long                    total;
    char                   *body;
    size_t                  len;
    sim_ctx_t              *ctx;
    struct evhttp_request  *req;

    ctx = r->ctx;
    req = r->req;
    total = r->total_tokens;

    if (with_latency) {
        cJSON_AddNumberToObject(r->reply, "latency_ms",
                                (double) (sim_now_ms() - r->start_ms));
    }

    body = sim_json_print(r->reply, &len);

    /* our state goes first: sending may finish the connection */
    sim_req_finalize(r);

    if (body == NULL) {
        sim_http_send_oom(ctx, req);
        return;
    }

    sim_http_send_body(ctx, req, 200, "OK", body, len, total);
    cJSON_free(body);
}


void
sim_reply_with_latency(sim_req_t *r)
{
    sim_reply_send(r, 1);
}


void
sim_reply_plain(sim_req_t *r)
{
    sim_reply_send(r, 0);
}


void
sim_req_delay_reply(sim_ctx_t *ctx, struct evhttp_request *req, cJSON *reply,
    long total_tokens, sim_req_handler_pt handler, double delay_ms)
{
    sim_req_t  *r;

    r = sim_req_create(ctx, req, handler);
    if (r == NULL) {
        cJSON_Delete(reply);
        sim_http_send_oom(ctx, req);
        return;
    }

    r->reply = reply;
    r->total_tokens = total_tokens;

    if (sim_req_schedule(r, delay_ms) != 0) {
        sim_req_finalize(r);
        sim_http_send_oom(ctx, req);
    }
}
