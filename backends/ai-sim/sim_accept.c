/*
 * ai-sim: the listener, and what it does when accept() fails.
 *
 * libevent's listener is level-triggered and, without an error callback,
 * logs every failed accept() and tries again at once: out of descriptors
 * (EMFILE, ENFILE) with connections waiting in the backlog, that is a busy
 * loop writing the same line to stderr as fast as the disk takes it.  As
 * nginx does in ngx_event_accept(), we stop accepting for a while instead;
 * the pause doubles while the errors go on, and the log says so at most
 * once a second.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/listener.h>

#include "sim.h"


#define SIM_ACCEPT_PAUSE_MIN   100               /* ms */
#define SIM_ACCEPT_PAUSE_MAX   1000              /* ms */
#define SIM_ACCEPT_CALM        2000              /* ms without an error */
#define SIM_ACCEPT_LOG_EVERY   1000              /* ms */


struct sim_accept_s {
    struct evconnlistener    *listener;          /* owned by evhttp */
    struct event             *resume;
    uint64_t                  pause_ms;
    uint64_t                  last_error_ms;
    uint64_t                  last_log_ms;
    uint64_t                  suppressed;        /* errors not logged */
    unsigned                  logged:1;
};


/*
 * evhttp_bind_listener() makes the evhttp object the listener's callback
 * argument, and the error callback gets that same argument; the context
 * comes from here instead.  There is one listener per process.
 */
static sim_ctx_t  *sim_accept_ctx;


static void
sim_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    sim_accept_t  *a;

    (void) fd;
    (void) what;

    a = arg;

    if (evconnlistener_enable(a->listener) != 0) {
        fprintf(stderr, "ai-sim: cannot resume accepting connections\n");
    }
}


static void
sim_accept_error(struct evconnlistener *listener, void *arg)
{
    int             err;
    uint64_t        now;
    sim_accept_t   *a;
    struct timeval  tv;

    (void) arg;

    err = EVUTIL_SOCKET_ERROR();
    a = sim_accept_ctx->accept;
    now = sim_now_ms();

    if (a->last_error_ms == 0 || now - a->last_error_ms > SIM_ACCEPT_CALM) {
        a->pause_ms = SIM_ACCEPT_PAUSE_MIN;

    } else if (a->pause_ms < SIM_ACCEPT_PAUSE_MAX) {
        a->pause_ms *= 2;

        if (a->pause_ms > SIM_ACCEPT_PAUSE_MAX) {
            a->pause_ms = SIM_ACCEPT_PAUSE_MAX;
        }
    }

    a->last_error_ms = now;

    /* the pending connections stay in the backlog meanwhile */
    evconnlistener_disable(listener);

    tv.tv_sec = a->pause_ms / 1000;
    tv.tv_usec = (a->pause_ms % 1000) * 1000;

    if (evtimer_add(a->resume, &tv) != 0) {
        /* no timer, no pause: a busy loop is still better than deafness */
        evconnlistener_enable(listener);
    }

    if (a->logged && now - a->last_log_ms < SIM_ACCEPT_LOG_EVERY) {
        a->suppressed++;
        return;
    }

    fprintf(stderr, "ai-sim: accept() failed: %s; not accepting for %u ms "
            "(%llu similar errors not logged)\n",
            evutil_socket_error_to_string(err), (unsigned) a->pause_ms,
            (unsigned long long) a->suppressed);

    a->logged = 1;
    a->last_log_ms = now;
    a->suppressed = 0;
}


/* the socket is ours from here: closed on failure, or by evhttp_free() */

int
sim_accept_init(sim_ctx_t *ctx, int fd)
{
    sim_accept_t           *a;
    struct evconnlistener  *listener;

    a = calloc(1, sizeof(sim_accept_t));
    if (a == NULL) {
        evutil_closesocket(fd);
        return -1;
    }

    a->resume = evtimer_new(ctx->base, sim_accept_resume, a);
    if (a->resume == NULL) {
        evutil_closesocket(fd);
        free(a);
        return -1;
    }

    /* backlog 0: the socket is already listening with SIM_BACKLOG */
    listener = evconnlistener_new(ctx->base, NULL, NULL,
                                  LEV_OPT_CLOSE_ON_FREE
                                  | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (listener == NULL) {
        evutil_closesocket(fd);
        event_free(a->resume);
        free(a);
        return -1;
    }

    evconnlistener_set_error_cb(listener, sim_accept_error);

    if (evhttp_bind_listener(ctx->http, listener) == NULL) {
        evconnlistener_free(listener);                   /* closes fd */
        event_free(a->resume);
        free(a);
        return -1;
    }

    a->listener = listener;
    ctx->accept = a;
    sim_accept_ctx = ctx;

    return 0;
}


void
sim_accept_free(sim_ctx_t *ctx)
{
    sim_accept_t  *a;

    a = ctx->accept;

    if (a == NULL) {
        return;
    }

    /* the listener itself goes with evhttp_free() */
    event_free(a->resume);
    free(a);

    ctx->accept = NULL;
    sim_accept_ctx = NULL;
}
