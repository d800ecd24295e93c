/*
 * Single flight: waking the waiters, from the worker that wrote.
 *
 * Each worker registers in the flight zone under its slot of the master's
 * process table (ngx_process_slot), with its pid, a registration number
 * and its start time, and binds a datagram socket in Linux's abstract
 * namespace named after its pid, which its event loop watches.  A flight
 * node has a bit per worker slot that has waiters on it.  When the leader
 * publishes (headers, body, its end), it queues the flight's id in the
 * ring of every such worker, in the zone, and sends each of them one byte
 * unless a wake-up is already on its way (the worker's `signaled` flag,
 * cleared when it reads its ring): so a worker is woken once per batch of
 * changes, however many waiters it has and however many flights moved.
 * The woken worker reads its ring, finds its own record of each flight
 * (its followers, in its memory, keyed by the node) and posts the events
 * of that flight's waiters.  Its own waiters are woken by posting the
 * socket's read event, without a system call.  An idle waiter costs
 * nothing: no timer ticks for it, only its lock_timeout.
 *
 * Why sockets named by pid rather than nchan's pipes opened by the master
 * before the fork: a leader may be in an old worker and its waiters in new
 * ones during a reload, or in a worker the master respawned; a name any
 * worker can compute reaches all of them, where an fd table made before
 * one fork reaches only the workers of that fork.  The events stay in
 * shared memory; the datagram only wakes.
 *
 * Once a second, while it follows flights, a worker looks whether their
 * leaders still run (flight_worker.c): the one timer a waiter may cost.
 */

#include <sys/un.h>

#include "base/ngx_http_ai_gateway_event.h"
#include "flight/ngx_http_ai_gateway_flight_zone.h"


#define NGX_HTTP_AI_GATEWAY_FLIGHT_CHECK  1000   /* ms between looks at
                                                    the leaders followed */


/* a flight this worker's waiters follow */
typedef struct {
    ngx_rbtree_node_t                    node;     /* key: the node */
    ngx_queue_t                          all;
    ngx_http_ai_gateway_flight_node_t   *fn;
    uint64_t                             id;
    ngx_queue_t                          waiters;  /* flight_t.queue */
} ngx_http_ai_gateway_flight_follower_t;


static void ngx_http_ai_gateway_flight_wake_handler(ngx_event_t *ev);
static void ngx_http_ai_gateway_flight_check_handler(ngx_event_t *ev);


/* this worker's socket and followers (process memory) */
static ngx_connection_t                  *ngx_http_ai_gateway_flight_conn;
static ngx_socket_t                       ngx_http_ai_gateway_flight_out =
    (ngx_socket_t) -1;
static ngx_event_t                        ngx_http_ai_gateway_flight_check;
static ngx_rbtree_t                       ngx_http_ai_gateway_flight_tree;
static ngx_rbtree_node_t                  ngx_http_ai_gateway_flight_sentinel;
static ngx_queue_t                        ngx_http_ai_gateway_flight_all;
static ngx_http_ai_gateway_flight_wake_t
    ngx_http_ai_gateway_flight_drained[NGX_HTTP_AI_GATEWAY_FLIGHT_RING];


/* the abstract socket name of a worker: "\0ngx_ai_gateway_flight:PID" */
static socklen_t
ngx_http_ai_gateway_flight_addr(struct sockaddr_un *sun, ngx_pid_t pid)
{
    u_char  *p;

    ngx_memzero(sun, sizeof(struct sockaddr_un));
    sun->sun_family = AF_UNIX;

    p = ngx_sprintf((u_char *) sun->sun_path + 1, "ngx_ai_gateway_flight:%P",
                    pid);

    return (socklen_t) (p - (u_char *) sun);
}


ngx_int_t
ngx_http_ai_gateway_flight_wake_open(ngx_cycle_t *cycle)
{
    socklen_t            len;
    ngx_socket_t         s, out;
    ngx_connection_t    *c;
    struct sockaddr_un   sun;

    s = socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);
    out = socket(AF_UNIX, SOCK_DGRAM|SOCK_NONBLOCK|SOCK_CLOEXEC, 0);

    if (s == (ngx_socket_t) -1 || out == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "ai_gateway flight: socket() failed");
        goto failed;
    }

    len = ngx_http_ai_gateway_flight_addr(&sun, ngx_pid);

    if (bind(s, (struct sockaddr *) &sun, len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "ai_gateway flight: bind() of its wake-up socket "
                      "failed");
        goto failed;
    }

    c = ngx_get_connection(s, cycle->log);
    if (c == NULL) {
        goto failed;
    }

    c->read->handler = ngx_http_ai_gateway_flight_wake_handler;
    c->read->log = cycle->log;
    c->write->log = cycle->log;

    /* level-triggered, as nginx's channel: every datagram is read */
    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_free_connection(c);
        goto failed;
    }

    ngx_http_ai_gateway_flight_conn = c;
    ngx_http_ai_gateway_flight_out = out;

    ngx_rbtree_init(&ngx_http_ai_gateway_flight_tree,
                    &ngx_http_ai_gateway_flight_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&ngx_http_ai_gateway_flight_all);

    ngx_http_ai_gateway_event_init(&ngx_http_ai_gateway_flight_check,
                                   ngx_http_ai_gateway_flight_check_handler,
                                   cycle->log);
    ngx_http_ai_gateway_flight_check.cancelable = 1;

    return NGX_OK;

failed:

    if (s != (ngx_socket_t) -1) {
        (void) ngx_close_socket(s);
    }

    if (out != (ngx_socket_t) -1) {
        (void) ngx_close_socket(out);
    }

    return NGX_ERROR;
}


void
ngx_http_ai_gateway_flight_wake_close(void)
{
    ngx_queue_t                            *q;
    ngx_http_ai_gateway_flight_follower_t  *fl;

    /* the records of a quick exit's waiters, whose pools never end */
    while (ngx_http_ai_gateway_flight_conn
           && !ngx_queue_empty(&ngx_http_ai_gateway_flight_all))
    {
        q = ngx_queue_head(&ngx_http_ai_gateway_flight_all);
        fl = ngx_queue_data(q, ngx_http_ai_gateway_flight_follower_t, all);
        ngx_queue_remove(q);
        ngx_free(fl);
    }

    if (ngx_http_ai_gateway_flight_check.timer_set) {
        ngx_del_timer(&ngx_http_ai_gateway_flight_check);
    }

    if (ngx_http_ai_gateway_flight_conn) {
        ngx_close_connection(ngx_http_ai_gateway_flight_conn);
        ngx_http_ai_gateway_flight_conn = NULL;
    }

    if (ngx_http_ai_gateway_flight_out != (ngx_socket_t) -1) {
        (void) ngx_close_socket(ngx_http_ai_gateway_flight_out);
        ngx_http_ai_gateway_flight_out = (ngx_socket_t) -1;
    }
}


void
ngx_http_ai_gateway_flight_wake_locked(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn,
    ngx_http_ai_gateway_flight_targets_t *t)
{
    uint64_t                              bits;
    ngx_uint_t                            word, slot;
    ngx_http_ai_gateway_flight_worker_t  *w;

    if (fn->followers == 0) {
        return;
    }

    for (word = 0; word < NGX_HTTP_AI_GATEWAY_FLIGHT_WORDS; word++) {

        for (bits = fn->followed[word]; bits; bits &= bits - 1) {
            slot = word * 64 + (ngx_uint_t) __builtin_ctzll(bits);
            w = &ctx->sh->workers[slot];

            if (w->pid == 0) {
                continue;
            }

            if (w->wakes && w->nwakes < NGX_HTTP_AI_GATEWAY_FLIGHT_RING) {
                w->wakes[w->nwakes].node = fn;
                w->wakes[w->nwakes].id = fn->id;
                w->nwakes++;

            } else {
                w->overflow = 1;
            }

            if (w->signaled) {
                continue;
            }

            w->signaled = 1;

            if (w->pid == ngx_pid) {
                /* this worker's own waiters: no system call */
                t->local = 1;

            } else {
                t->pids[t->n++] = w->pid;
            }
        }
    }
}


void
ngx_http_ai_gateway_flight_wake_send(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_targets_t *t)
{
    u_char              byte;
    ngx_uint_t          i;
    socklen_t           len;
    struct sockaddr_un  sun;

    if (t->local && ngx_http_ai_gateway_flight_conn) {
        ngx_post_event(ngx_http_ai_gateway_flight_conn->read,
                       &ngx_posted_events);
    }

    if (ngx_http_ai_gateway_flight_out == (ngx_socket_t) -1) {
        return;
    }

    byte = 0;

    for (i = 0; i < t->n; i++) {
        len = ngx_http_ai_gateway_flight_addr(&sun, t->pids[i]);

        /*
         * a worker that is gone refuses it, one whose queue is full has
         * a wake-up to read anyway: nothing to do either way
         */
        (void) sendto(ngx_http_ai_gateway_flight_out, &byte, 1, 0,
                      (struct sockaddr *) &sun, len);
    }
}


static ngx_http_ai_gateway_flight_follower_t *
ngx_http_ai_gateway_flight_follower(ngx_http_ai_gateway_flight_node_t *fn,
    uint64_t id)
{
    ngx_rbtree_key_t                        key;
    ngx_rbtree_node_t                      *node, *sentinel;
    ngx_http_ai_gateway_flight_follower_t  *fl;

    key = (ngx_rbtree_key_t) (uintptr_t) fn;

    node = ngx_http_ai_gateway_flight_tree.root;
    sentinel = ngx_http_ai_gateway_flight_tree.sentinel;

    while (node != sentinel) {

        if (key < node->key) {
            node = node->left;
            continue;
        }

        if (key > node->key) {
            node = node->right;
            continue;
        }

        fl = (ngx_http_ai_gateway_flight_follower_t *) node;

        /* the same address may have held another flight before */
        return (fl->id == id) ? fl : NULL;
    }

    return NULL;
}


static void
ngx_http_ai_gateway_flight_wake_follower(
    ngx_http_ai_gateway_flight_follower_t *fl)
{
    ngx_queue_t                   *q;
    ngx_http_ai_gateway_flight_t  *f;

    for (q = ngx_queue_head(&fl->waiters);
         q != ngx_queue_sentinel(&fl->waiters);
         q = ngx_queue_next(q))
    {
        f = ngx_queue_data(q, ngx_http_ai_gateway_flight_t, queue);

        if (!f->wake->posted) {
            ngx_post_event(f->wake, &ngx_posted_events);
        }
    }
}


static void
ngx_http_ai_gateway_flight_wake_handler(ngx_event_t *ev)
{
    u_char                                  buf[64];
    ssize_t                                 n;
    ngx_uint_t                              i, nwakes, overflow, slot;
    ngx_queue_t                            *q;
    ngx_connection_t                       *c;
    ngx_http_ai_gateway_flight_ctx_t       *ctx;
    ngx_http_ai_gateway_flight_wake_t      *wk;
    ngx_http_ai_gateway_flight_worker_t    *w;
    ngx_http_ai_gateway_flight_follower_t  *fl;

    c = ev->data;
    ctx = ngx_http_ai_gateway_flight_registered(&slot);

    /* every datagram: they only say "look" */
    do {
        n = recv(c->fd, buf, sizeof(buf), 0);
    } while (n >= 0);

    if (ctx == NULL) {
        return;
    }

    w = &ctx->sh->workers[slot];

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* cleared before the ring is read: what comes later signals again */
    w->signaled = 0;

    nwakes = w->nwakes;
    overflow = w->overflow;

    if (nwakes) {
        ngx_memcpy(ngx_http_ai_gateway_flight_drained, w->wakes,
                   nwakes * sizeof(ngx_http_ai_gateway_flight_wake_t));
    }

    w->nwakes = 0;
    w->overflow = (w->wakes == NULL);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "ai_gateway flight: woken for %ui flights%s", nwakes,
                   overflow ? " and more" : "");

    if (overflow) {
        for (q = ngx_queue_head(&ngx_http_ai_gateway_flight_all);
             q != ngx_queue_sentinel(&ngx_http_ai_gateway_flight_all);
             q = ngx_queue_next(q))
        {
            fl = ngx_queue_data(q, ngx_http_ai_gateway_flight_follower_t,
                                all);
            ngx_http_ai_gateway_flight_wake_follower(fl);
        }

        return;
    }

    for (i = 0; i < nwakes; i++) {
        wk = &ngx_http_ai_gateway_flight_drained[i];

        /* only flights this worker follows: it holds them, never others */
        fl = ngx_http_ai_gateway_flight_follower(wk->node, wk->id);

        if (fl) {
            ngx_http_ai_gateway_flight_wake_follower(fl);
        }
    }
}


ngx_int_t
ngx_http_ai_gateway_flight_attach(ngx_http_ai_gateway_flight_t *f,
    ngx_event_t *ev, ngx_uint_t fresh)
{
    ngx_http_ai_gateway_flight_follower_t  *fl;

    fl = ngx_http_ai_gateway_flight_follower(f->node, f->id);

    if (fl == NULL) {
        fl = ngx_alloc(sizeof(ngx_http_ai_gateway_flight_follower_t),
                       ngx_cycle->log);
        if (fl == NULL) {
            return NGX_ERROR;
        }

        fl->node.key = (ngx_rbtree_key_t) (uintptr_t) f->node;
        fl->fn = f->node;
        fl->id = f->id;
        ngx_queue_init(&fl->waiters);

        ngx_rbtree_insert(&ngx_http_ai_gateway_flight_tree, &fl->node);
        ngx_queue_insert_tail(&ngx_http_ai_gateway_flight_all, &fl->all);

        if (!ngx_http_ai_gateway_flight_check.timer_set) {
            ngx_add_timer(&ngx_http_ai_gateway_flight_check,
                          NGX_HTTP_AI_GATEWAY_FLIGHT_CHECK);
        }
    }

    f->follower = fl;
    f->wake = ev;

    ngx_queue_insert_tail(&fl->waiters, &f->queue);

    return NGX_OK;
}


ngx_uint_t
ngx_http_ai_gateway_flight_detach_waiter(ngx_http_ai_gateway_flight_t *f)
{
    ngx_http_ai_gateway_flight_follower_t  *fl;

    fl = f->follower;

    if (fl == NULL) {
        return 0;
    }

    f->follower = NULL;
    ngx_queue_remove(&f->queue);

    if (!ngx_queue_empty(&fl->waiters)) {
        return 0;
    }

    ngx_rbtree_delete(&ngx_http_ai_gateway_flight_tree, &fl->node);
    ngx_queue_remove(&fl->all);
    ngx_free(fl);

    if (ngx_queue_empty(&ngx_http_ai_gateway_flight_all)
        && ngx_http_ai_gateway_flight_check.timer_set)
    {
        ngx_del_timer(&ngx_http_ai_gateway_flight_check);
    }

    return 1;
}




/*
 * Once a second while this worker follows flights: is each one's leader
 * still running?  (flight_worker.c)  And its ring is read, in case a
 * wake-up was lost (a datagram the kernel had no room for).
 */
static void
ngx_http_ai_gateway_flight_check_handler(ngx_event_t *ev)
{
    ngx_uint_t                              slot;
    ngx_queue_t                            *q;
    ngx_http_ai_gateway_flight_ctx_t       *ctx;
    ngx_http_ai_gateway_flight_follower_t  *fl;
    ngx_http_ai_gateway_flight_targets_t    t;

    ctx = ngx_http_ai_gateway_flight_registered(&slot);

    if (ctx == NULL || ngx_queue_empty(&ngx_http_ai_gateway_flight_all)) {
        return;
    }

    t.n = 0;
    t.local = 0;

    if (ngx_http_ai_gateway_flight_conn) {
        ngx_http_ai_gateway_flight_wake_handler(
                                        ngx_http_ai_gateway_flight_conn->read);
    }

    for (q = ngx_queue_head(&ngx_http_ai_gateway_flight_all);
         q != ngx_queue_sentinel(&ngx_http_ai_gateway_flight_all);
         q = ngx_queue_next(q))
    {
        fl = ngx_queue_data(q, ngx_http_ai_gateway_flight_follower_t, all);

        /* this worker's bit keeps the node, whatever becomes of it */
        (void) ngx_http_ai_gateway_flight_leader_gone(ctx, fl->fn, &t);
    }

    ngx_http_ai_gateway_flight_wake_send(ctx, &t);

    ngx_add_timer(ev, NGX_HTTP_AI_GATEWAY_FLIGHT_CHECK);
}
