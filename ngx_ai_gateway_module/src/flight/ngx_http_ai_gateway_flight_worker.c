/*
 * Single flight: the workers as the flight zone knows them, and what is
 * left of a worker that died.
 *
 * Each worker registers in the zone under its slot of the master's process
 * table (ngx_process_slot), with its pid, a registration number (unique in
 * the zone) and its start time.  Every part a worker takes in a flight is
 * recorded under its slot: its bit in the nodes its waiters follow, the
 * flights it leads, the holds of its stores (flight.c).
 *
 * A worker that crashes never drops that part.  When the master respawns
 * it into the same slot, the new worker finds the slot registered to
 * another pid and releases what the dead one held: its bits, the flights
 * it led (they fail, and their waiters are woken to go on their own) and
 * its stores' holds.  A worker that exits releases its own part the same
 * way.  A leader whose worker died without a successor is found by the
 * workers that follow its flight (flight_wake.c, once a second): its slot
 * must still be registered to the leader's registration, and the pid's
 * start time (/proc/PID/stat) must be the one recorded, so that a pid
 * reused by another process is never taken for the leader (kill(pid, 0)
 * cannot tell, and answers EPERM for a live process of another user).
 */

#include "flight/ngx_http_ai_gateway_flight_zone.h"


static void ngx_http_ai_gateway_flight_recover_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx, ngx_uint_t slot, uint64_t gen,
    ngx_http_ai_gateway_flight_targets_t *t);


/* this worker's registration (process memory) */
static ngx_http_ai_gateway_flight_ctx_t  *ngx_http_ai_gateway_flight_ctx;
static ngx_uint_t                         ngx_http_ai_gateway_flight_slot;
static uint64_t                           ngx_http_ai_gateway_flight_gen;


/*
 * The last leader looked at, and when: the once-a-second check asks about
 * the leader of every flight this worker follows, and flights share their
 * leaders (with two workers, all of them the other one), so a run of one
 * leader's flights reads /proc once per check rather than once a flight
 */
static ngx_pid_t   ngx_http_ai_gateway_flight_seen_pid;
static ngx_msec_t  ngx_http_ai_gateway_flight_seen_at;
static uint64_t    ngx_http_ai_gateway_flight_seen_start;
static ngx_uint_t  ngx_http_ai_gateway_flight_seen_gone;


/* the start time of a process, clock ticks since boot; 0: unknown */
static uint64_t
ngx_http_ai_gateway_flight_start_time(ngx_pid_t pid, ngx_uint_t *gone)
{
    u_char     *p, *last, buf[512], path[64];
    ssize_t     n;
    uint64_t    start;
    ngx_fd_t    fd;
    ngx_err_t   err;
    ngx_uint_t  field;

    *gone = 0;

    ngx_sprintf(path, "/proc/%P/stat%Z", pid);

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        *gone = (err == NGX_ENOENT || err == NGX_ESRCH);
        return 0;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    err = ngx_errno;
    (void) ngx_close_file(fd);

    if (n <= 0) {
        /* a process that ends while its stat is read */
        *gone = (n == 0 || err == NGX_ESRCH);
        return 0;
    }

    last = buf + n;

    /* after the command, which may hold spaces and parentheses */
    for (p = last; p > buf && p[-1] != ')'; p--) { /* void */ }

    if (p == buf) {
        return 0;
    }

    /* fields 3 on, space separated: the 22nd is starttime */
    for (field = 2; p < last && field < 22; p++) {
        if (*p == ' ') {
            field++;
        }
    }

    for (start = 0; p < last && *p >= '0' && *p <= '9'; p++) {
        start = start * 10 + (*p - '0');
    }

    return start;
}


ngx_int_t
ngx_http_ai_gateway_flight_me(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_uint_t *slot, uint64_t *gen)
{
    if (ngx_http_ai_gateway_flight_ctx == NULL
        || ngx_http_ai_gateway_flight_ctx->sh != ctx->sh)
    {
        return NGX_ERROR;
    }

    *slot = ngx_http_ai_gateway_flight_slot;
    *gen = ngx_http_ai_gateway_flight_gen;

    return NGX_OK;
}


ngx_http_ai_gateway_flight_ctx_t *
ngx_http_ai_gateway_flight_registered(ngx_uint_t *slot)
{
    *slot = ngx_http_ai_gateway_flight_slot;

    return ngx_http_ai_gateway_flight_ctx;
}


ngx_int_t
ngx_http_ai_gateway_flight_init_process(ngx_cycle_t *cycle,
    ngx_shm_zone_t *zone)
{
    uint64_t                               start;
    ngx_uint_t                             slot, gone;
    ngx_http_ai_gateway_flight_ctx_t      *ctx;
    ngx_http_ai_gateway_flight_worker_t   *w;
    ngx_http_ai_gateway_flight_targets_t   t;

    if (zone == NULL
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return NGX_OK;
    }

    ctx = zone->data;
    slot = (ngx_process == NGX_PROCESS_SINGLE) ? 0
                                               : (ngx_uint_t) ngx_process_slot;

    if (slot >= NGX_MAX_PROCESSES) {
        return NGX_OK;
    }

    /* first the socket: the wake-ups below are sent from it */
    if (ngx_http_ai_gateway_flight_wake_open(cycle) != NGX_OK) {
        /* no wake-ups: this worker's requests take no part in flights */
        return NGX_OK;
    }

    start = ngx_http_ai_gateway_flight_start_time(ngx_pid, &gone);

    t.n = 0;
    t.local = 0;
    w = &ctx->sh->workers[slot];

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (w->pid && w->pid != ngx_pid) {
        /* the slot's last worker died without releasing its part */
        ngx_http_ai_gateway_flight_recover_locked(ctx, slot, w->gen, &t);
    }

    if (w->wakes == NULL) {
        w->wakes = ngx_slab_alloc_locked(ctx->shpool,
                               NGX_HTTP_AI_GATEWAY_FLIGHT_RING
                               * sizeof(ngx_http_ai_gateway_flight_wake_t));
    }

    w->pid = ngx_pid;
    w->gen = ++ctx->sh->gen;
    w->start = start;
    w->signaled = 0;
    w->nwakes = 0;
    w->overflow = (w->wakes == NULL);

    ngx_http_ai_gateway_flight_slot = slot;
    ngx_http_ai_gateway_flight_gen = w->gen;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_ctx = ctx;

    /* what the dead one led has failed: its waiters elsewhere are told */
    ngx_http_ai_gateway_flight_wake_send(ctx, &t);

    return NGX_OK;
}


/* the zone is the one this worker registered with, if it did */
void
ngx_http_ai_gateway_flight_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_ai_gateway_flight_ctx_t      *ctx;
    ngx_http_ai_gateway_flight_worker_t   *w;
    ngx_http_ai_gateway_flight_targets_t   t;

    ctx = ngx_http_ai_gateway_flight_ctx;

    if (ctx == NULL) {
        return;
    }

    /* what this worker still holds (a quick exit) goes, as if it died */
    t.n = 0;
    t.local = 0;
    w = &ctx->sh->workers[ngx_http_ai_gateway_flight_slot];

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_recover_locked(ctx,
                                              ngx_http_ai_gateway_flight_slot,
                                              ngx_http_ai_gateway_flight_gen,
                                              &t);

    if (w->gen == ngx_http_ai_gateway_flight_gen) {
        w->pid = 0;

        if (w->wakes) {
            ngx_slab_free_locked(ctx->shpool, w->wakes);
            w->wakes = NULL;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_ai_gateway_flight_ctx = NULL;

    ngx_http_ai_gateway_flight_wake_send(ctx, &t);
    ngx_http_ai_gateway_flight_wake_close();
}


/*
 * Release the part of the worker registered in `slot` as `gen`: its bits
 * (its waiters' references), the flights it led (they fail, and their
 * waiters are woken) and the holds of its stores.
 */
static void
ngx_http_ai_gateway_flight_recover_locked(
    ngx_http_ai_gateway_flight_ctx_t *ctx, ngx_uint_t slot, uint64_t gen,
    ngx_http_ai_gateway_flight_targets_t *t)
{
    uint64_t                              bit;
    ngx_uint_t                            word, n;
    ngx_queue_t                          *q, *next;
    ngx_http_ai_gateway_flight_node_t    *fn;
    ngx_http_ai_gateway_flight_worker_t  *w;

    word = slot / 64;
    bit = (uint64_t) 1 << (slot % 64);
    n = 0;

    for (q = ngx_queue_head(&ctx->sh->all);
         q != ngx_queue_sentinel(&ctx->sh->all);
         q = next)
    {
        next = ngx_queue_next(q);
        fn = ngx_queue_data(q, ngx_http_ai_gateway_flight_node_t, all);

        if (fn->followed[word] & bit) {
            fn->followed[word] &= ~bit;
            fn->followers--;
            n++;
        }

        if (fn->leader_slot == slot && fn->leader_gen == gen) {
            n += fn->holds;
            fn->holds = 0;

            if (fn->leading) {
                fn->state = NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED;
                fn->leading = 0;
                ngx_http_ai_gateway_flight_detach_locked(ctx, fn);
                ngx_http_ai_gateway_flight_wake_locked(ctx, fn, t);
                n++;
            }
        }

        /* `next` is another node: this one may go */
        ngx_http_ai_gateway_flight_unref_locked(ctx, fn);
    }

    w = &ctx->sh->workers[slot];

    if (n && w->pid != ngx_pid) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "ai_gateway flight: released %ui references of the "
                      "worker %P that ran in slot %ui", n, w->pid, slot);
    }

    w->signaled = 0;
    w->nwakes = 0;
    w->overflow = 0;
}


/*
 * Is the leader of fn gone?  If so its flight fails (1): its waiters go
 * on their own.  The caller's worker follows fn (so it stays).
 */
ngx_uint_t
ngx_http_ai_gateway_flight_leader_gone(ngx_http_ai_gateway_flight_ctx_t *ctx,
    ngx_http_ai_gateway_flight_node_t *fn,
    ngx_http_ai_gateway_flight_targets_t *t)
{
    uint64_t                              gen, start, id, now;
    ngx_pid_t                             pid;
    ngx_uint_t                            dead, gone, leading;
    ngx_http_ai_gateway_flight_worker_t  *w;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    pid = fn->leader_pid;
    gen = fn->leader_gen;
    id = fn->id;
    w = &ctx->sh->workers[fn->leader_slot];
    start = w->start;

    leading = fn->leading && pid != ngx_pid;
    dead = leading && (w->pid != pid || w->gen != gen);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (leading && !dead && start) {
        if (pid != ngx_http_ai_gateway_flight_seen_pid
            || ngx_current_msec != ngx_http_ai_gateway_flight_seen_at)
        {
            /* outside the lock: a read of /proc */
            ngx_http_ai_gateway_flight_seen_start =
                         ngx_http_ai_gateway_flight_start_time(pid,
                                   &ngx_http_ai_gateway_flight_seen_gone);
            ngx_http_ai_gateway_flight_seen_pid = pid;
            ngx_http_ai_gateway_flight_seen_at = ngx_current_msec;
        }

        now = ngx_http_ai_gateway_flight_seen_start;
        gone = ngx_http_ai_gateway_flight_seen_gone;
        dead = gone || (now && now != start);
    }

    if (!dead) {
        return 0;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* still the same flight and leader: nothing ended it meanwhile */
    dead = (fn->id == id && fn->leading && fn->leader_gen == gen);

    if (dead) {
        fn->state = NGX_HTTP_AI_GATEWAY_FLIGHT_FAILED;
        fn->leading = 0;
        fn->holds = 0;
        ngx_http_ai_gateway_flight_detach_locked(ctx, fn);
        ngx_http_ai_gateway_flight_wake_locked(ctx, fn, t);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (dead) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "ai_gateway flight: its leader, worker %P, is gone: "
                      "its waiters go on their own", pid);
    }

    return dead;
}
