/*
 * agw-load: descriptor limit, signals, the event loop and the output.
 *
 * A load client for streamed chat completions that stays out of the way
 * of what it measures: one libevent loop, evhttp's client for the HTTP,
 * no copy of the answers, a fixed record per request.  See
 * scripts/load/README.md.
 */

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "load.h"


#define LOAD_FDS_SPARE       64                  /* stdio, epoll, files */


/*
 * One descriptor per connection, and a few: the soft limit goes up to
 * the hard one, and the hard one too when we may (root, as nginx's
 * master does for worker_rlimit_nofile).
 */
static int
load_raise_nofile(unsigned connections)
{
    rlim_t         need;
    struct rlimit  rl;

    need = (rlim_t) connections + LOAD_FDS_SPARE;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        perror("getrlimit");
        return -1;
    }

    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (rl.rlim_cur >= need) {
        return 0;
    }

    rl.rlim_cur = rl.rlim_max = need;

    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        (void) getrlimit(RLIMIT_NOFILE, &rl);
        fprintf(stderr, "agw-load: %u connections need %llu descriptors, "
                "the limit is %llu (ulimit -n; as root the hard limit can "
                "be raised up to /proc/sys/fs/nr_open)\n", connections,
                (unsigned long long) need,
                (unsigned long long) rl.rlim_cur);
        return -1;
    }

    return 0;
}


static void
load_signal(evutil_socket_t sig, short what, void *arg)
{
    load_ctx_t  *ctx;

    (void) what;
    ctx = arg;

    if (sig == SIGUSR1) {
        load_conn_release(ctx);
        return;
    }

    /* SIGINT, SIGTERM: the report of what ran so far */
    fprintf(stderr, "agw-load: stopped by signal %d\n", (int) sig);
    ctx->stopping = 1;
    event_base_loopbreak(ctx->base);
}


/*
 * Every 10 ms: how late this timer fires is how long the loop was busy
 * (or the process waited for a CPU).  A client that is not the
 * bottleneck shows a few milliseconds at most; the report says.
 */
static void
load_tick(evutil_socket_t fd, short what, void *arg)
{
    int64_t         now, lag;
    load_ctx_t     *ctx;
    struct timeval  tv;

    (void) fd;
    (void) what;

    ctx = arg;
    now = load_now_us(ctx);
    lag = now - ctx->tick_due;

    if (lag < 0) {
        lag = 0;
    }

    if (lag > ctx->lag_max) {
        ctx->lag_max = lag;
    }

    ctx->lag_hist[lag / 1000 < LOAD_LAG_BUCKETS - 1
                  ? lag / 1000 : LOAD_LAG_BUCKETS - 1]++;

    ctx->tick_due = now + LOAD_TICK_US;
    tv.tv_sec = 0;
    tv.tv_usec = LOAD_TICK_US;
    evtimer_add(ctx->tick, &tv);
}


static void
load_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;

    load_conn_stop(arg);
}


int
main(int argc, char **argv)
{
    int              rc;
    FILE            *f;
    double           wall;
    load_ctx_t       ctx;
    struct timeval   tv;
    struct timespec  ts;

    memset(&ctx, 0, sizeof(ctx));
    ctx.all_open = ctx.first_done = -1;

    if (load_parse_args(argc, argv, &ctx.conf) != 0) {
        return 2;
    }

    if (load_raise_nofile(ctx.conf.connections) != 0) {
        return 1;
    }

    /* a peer closing under us is an error of that request, not a kill */
    signal(SIGPIPE, SIG_IGN);

    ctx.base = event_base_new();
    if (ctx.base == NULL) {
        fprintf(stderr, "agw-load: event_base_new failed\n");
        return 1;
    }

    if (load_body_init(&ctx) != 0 || load_conn_init(&ctx) != 0) {
        return 1;
    }

    ctx.sigusr1 = evsignal_new(ctx.base, SIGUSR1, load_signal, &ctx);
    ctx.sigint = evsignal_new(ctx.base, SIGINT, load_signal, &ctx);
    ctx.sigterm = evsignal_new(ctx.base, SIGTERM, load_signal, &ctx);

    if (ctx.sigusr1 == NULL || ctx.sigint == NULL || ctx.sigterm == NULL
        || evsignal_add(ctx.sigusr1, NULL) != 0
        || evsignal_add(ctx.sigint, NULL) != 0
        || evsignal_add(ctx.sigterm, NULL) != 0)
    {
        fprintf(stderr, "agw-load: cannot set up signals\n");
        return 1;
    }

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ctx.t0_ns = (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;

    if (ctx.conf.duration > 0) {
        ctx.deadline = evtimer_new(ctx.base, load_deadline, &ctx);
        tv.tv_sec = (time_t) ctx.conf.duration;
        tv.tv_usec = (suseconds_t) ((ctx.conf.duration
                                     - (double) tv.tv_sec) * 1e6);

        if (ctx.deadline == NULL || evtimer_add(ctx.deadline, &tv) != 0) {
            return 1;
        }
    }

    ctx.tick = evtimer_new(ctx.base, load_tick, &ctx);
    if (ctx.tick == NULL) {
        return 1;
    }

    ctx.tick_due = 0;
    load_tick(-1, 0, &ctx);
    ctx.lag_hist[0]--;                           /* not a measurement */

    load_conn_start_all(&ctx);

    (void) event_base_dispatch(ctx.base);

    wall = load_now_us(&ctx) / 1e6;
    rc = 0;

    if (ctx.conf.csv_path != NULL) {
        f = fopen(ctx.conf.csv_path, "w");

        if (f == NULL || load_report_csv(&ctx, f) != 0 || fclose(f) != 0) {
            perror(ctx.conf.csv_path);
            rc = 1;
        }
    }

    f = ctx.conf.json_path ? fopen(ctx.conf.json_path, "w") : stdout;

    if (f == NULL || load_report_json(&ctx, f, wall) != 0
        || fflush(f) != 0 || (f != stdout && fclose(f) != 0))
    {
        perror(ctx.conf.json_path ? ctx.conf.json_path : "stdout");
        rc = 1;
    }

    load_conn_free_all(&ctx);
    load_body_free(&ctx);

    if (ctx.deadline != NULL) {
        event_free(ctx.deadline);
    }

    event_free(ctx.tick);
    event_free(ctx.sigusr1);
    event_free(ctx.sigint);
    event_free(ctx.sigterm);
    event_base_free(ctx.base);
    load_conf_free(&ctx.conf);

    return rc;
}
