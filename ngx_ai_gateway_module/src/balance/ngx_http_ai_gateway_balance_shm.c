/*
 * The balancers' shared zone, "ai_gateway_balance": what every worker has
 * in flight on every peer, and the peers' last load reports.
 *
 * Layout.  One block from the zone's slab pool: the context, an array of
 * slots (one per peer: requests and tokens in flight, picks, the last
 * report) and a table of cells, a column per process by a row per slot.
 * Picks and releases add to a slot's totals with atomics, never a lock;
 * a process also adds to its own cells, which only it writes.
 *
 * A worker that dies.  A worker killed with requests in flight never
 * releases them: its share would stay in the totals for good, and
 * least_tokens would shun a peer that is idle.  Its column says what that
 * share is.  A column belongs to a process (its pid in owners[]); when a
 * worker starts (the master respawns one in a dead one's place, or a
 * reload starts new ones) and once a second in every worker, columns
 * whose process is gone (kill(pid, 0) says ESRCH) are claimed for
 * cleaning with a compare-and-set, their cells taken off the totals and
 * zeroed, and freed; a worker starting takes a free column.  A pick adds
 * to the totals before the cell and a release takes from the cell before
 * the totals, so a process killed between the two leaves at most one
 * request's tokens too many, never too few.  Releases never go below
 * zero: they compare and set, and clamp.  Past 64 processes alive at once
 * (many reloads in a row with long streams in the old workers), a worker
 * runs without a column, and its share is not taken off if it dies
 * (logged).
 *
 * Reloads.  nginx reuses a zone whose name, tag and size are unchanged
 * (src/core/ngx_cycle.c), and the size depends only on the number of
 * slots, a power of two at least twice the peers: the old workers still
 * finishing their requests and the new ones share the figures.  Peers
 * are matched to slots by upstream name and address, so a peer that stays
 * keeps its counts whatever moved around it; a new peer takes a free slot,
 * or one no configuration names now and with nothing in flight.  A zone
 * that grows past its power of two starts empty: the old workers release
 * into the old memory they still map, the new ones count from zero, and
 * neither can go negative.  "nginx -t" runs init_zone too: it only sets
 * up memory.
 */

#include "balance/ngx_http_ai_gateway_balance.h"
#include "base/ngx_http_ai_gateway_event.h"


#define NGX_HTTP_AI_GATEWAY_BALANCE_SWEEP_MSEC  1000

#define NGX_HTTP_AI_GATEWAY_BALANCE_NO_COLUMN   ((ngx_uint_t) -1)


static ngx_int_t ngx_http_ai_gateway_balance_init_zone(
    ngx_shm_zone_t *shm_zone, void *data);
static void ngx_http_ai_gateway_balance_place(
    ngx_http_ai_gateway_balance_main_conf_t *bmcf, ngx_log_t *log);
static void ngx_http_ai_gateway_balance_sweep(
    ngx_http_ai_gateway_balance_shctx_t *sh, ngx_log_t *log);
static void ngx_http_ai_gateway_balance_drain(
    ngx_http_ai_gateway_balance_shctx_t *sh, ngx_uint_t column,
    ngx_log_t *log, ngx_pid_t pid);
static void ngx_http_ai_gateway_balance_sweep_handler(ngx_event_t *ev);


/* this process's column, and its sweep timer */
static ngx_uint_t   ngx_http_ai_gateway_balance_column =
                                        NGX_HTTP_AI_GATEWAY_BALANCE_NO_COLUMN;
static ngx_event_t  ngx_http_ai_gateway_balance_sweep_event;


ngx_int_t
ngx_http_ai_gateway_balance_zone_add(ngx_conf_t *cf,
    ngx_http_ai_gateway_balance_main_conf_t *bmcf)
{
    size_t                                    size;
    ngx_str_t                                 name;
    ngx_uint_t                                i, j, peers, nslots;
    ngx_shm_zone_t                           *shm_zone;
    ngx_http_ai_gateway_balance_srv_conf_t  **up;

    up = bmcf->upstreams.elts;
    peers = 0;

    for (i = 0; i < bmcf->upstreams.nelts; i++) {
        peers += up[i]->npeers + up[i]->nbackup;
    }

    for (nslots = 32; nslots < 2 * peers; nslots *= 2) { /* void */ }

    /* a function of nslots alone, so that a reload keeps the zone */
    size = 8 * ngx_pagesize
           + sizeof(ngx_http_ai_gateway_balance_shctx_t)
           + nslots * sizeof(ngx_http_ai_gateway_balance_slot_t)
           + nslots * NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS
             * sizeof(ngx_http_ai_gateway_balance_cell_t);

    size = ngx_align(size, ngx_pagesize);

    ngx_str_set(&name, "ai_gateway_balance");

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_ai_gateway_balance_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_ai_gateway_balance_init_zone;
    shm_zone->data = bmcf;

    bmcf->zone = shm_zone;

    /* until the zone is placed (it always is before a request) */
    for (i = 0; i < bmcf->upstreams.nelts; i++) {
        for (j = 0; j < up[i]->npeers + up[i]->nbackup; j++) {
            up[i]->slots[j] = &bmcf->spare;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ai_gateway_balance_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ai_gateway_balance_main_conf_t  *obmcf = data;

    size_t                                    size;
    ngx_uint_t                                nslots, i;
    ngx_slab_pool_t                          *shpool;
    ngx_http_ai_gateway_balance_shctx_t      *sh;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    bmcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (obmcf) {
        /* a reload: the same size, the same slots; the old workers' */
        sh = obmcf->sh;

    } else if (shm_zone->shm.exists) {
        sh = shpool->data;

    } else {
        /* the zone's size was made for this many slots */
        size = shm_zone->shm.size - 8 * ngx_pagesize
               - sizeof(ngx_http_ai_gateway_balance_shctx_t);

        nslots = size / (sizeof(ngx_http_ai_gateway_balance_slot_t)
                         + NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS
                           * sizeof(ngx_http_ai_gateway_balance_cell_t));

        sh = ngx_slab_alloc(shpool,
                         sizeof(ngx_http_ai_gateway_balance_shctx_t)
                         + nslots * sizeof(ngx_http_ai_gateway_balance_slot_t)
                         + nslots * NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS
                           * sizeof(ngx_http_ai_gateway_balance_cell_t));
        if (sh == NULL) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "no memory for the ai_gateway_balance zone");
            return NGX_ERROR;
        }

        ngx_memzero(sh, sizeof(ngx_http_ai_gateway_balance_shctx_t));

        sh->nslots = nslots;
        sh->slots = (ngx_http_ai_gateway_balance_slot_t *) (sh + 1);
        sh->cells = (ngx_http_ai_gateway_balance_cell_t *)
                        (sh->slots + nslots);

        ngx_memzero(sh->slots,
                    nslots * sizeof(ngx_http_ai_gateway_balance_slot_t));
        ngx_memzero(sh->cells, nslots * NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS
                               * sizeof(ngx_http_ai_gateway_balance_cell_t));

        for (i = 0; i < nslots; i++) {
            sh->slots[i].index = i;
        }

        shpool->data = sh;

        shpool->log_ctx = (u_char *) " in ai_gateway_balance zone";
        shpool->log_nomem = 0;
    }

    bmcf->sh = sh;
    bmcf->shpool = shpool;

    ngx_shmtx_lock(&shpool->mutex);
    ngx_http_ai_gateway_balance_place(bmcf, shm_zone->shm.log);
    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* FNV-1a of "upstream\0address", never 0 (a free slot's key) */

static uint64_t
ngx_http_ai_gateway_balance_key(ngx_str_t *upstream, ngx_str_t *addr)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;

    for (i = 0; i < upstream->len; i++) {
        h = (h ^ upstream->data[i]) * 0x100000001b3ULL;
    }

    h = (h ^ 0) * 0x100000001b3ULL;

    for (i = 0; i < addr->len; i++) {
        h = (h ^ addr->data[i]) * 0x100000001b3ULL;
    }

    return h ? h : 1;
}


/*
 * Every peer of the configuration to a slot: first those the zone already
 * knows (by key), then the new ones to free slots, so that no new peer
 * takes the slot of a peer listed after it.
 */

static void
ngx_http_ai_gateway_balance_place(
    ngx_http_ai_gateway_balance_main_conf_t *bmcf, ngx_log_t *log)
{
    uint64_t                                  key;
    ngx_uint_t                                i, j, k, c, pass, gen;
    ngx_http_ai_gateway_balance_slot_t       *slot, *slots;
    ngx_http_ai_gateway_balance_shctx_t      *sh;
    ngx_http_ai_gateway_balance_srv_conf_t  **up, *bcf;

    sh = bmcf->sh;
    slots = sh->slots;
    gen = ++sh->generation;
    up = bmcf->upstreams.elts;

    for (pass = 0; pass < 2; pass++) {

        for (i = 0; i < bmcf->upstreams.nelts; i++) {
            bcf = up[i];

            for (j = 0; j < bcf->npeers + bcf->nbackup; j++) {

                if (pass == 1 && bcf->slots[j] != &bmcf->spare) {
                    continue;
                }

                key = ngx_http_ai_gateway_balance_key(&bcf->upstream->host,
                                                      &bcf->names[j]);
                slot = NULL;

                for (k = 0; k < sh->nslots; k++) {
                    if (pass == 0 && slots[k].key == key) {
                        slot = &slots[k];
                        break;
                    }

                    /* a free slot, or one this configuration does not
                       name and that holds nothing in flight */

                    if (pass == 1
                        && (slots[k].key == 0
                            || (slots[k].generation != gen
                                && slots[k].requests == 0)))
                    {
                        slot = &slots[k];
                        break;
                    }
                }

                if (slot == NULL) {
                    if (pass == 1) {
                        ngx_log_error(NGX_LOG_WARN, log, 0,
                                      "ai_gateway_balance zone is full:"
                                      " peer %V of upstream \"%V\" is"
                                      " balanced on this worker's figures"
                                      " alone", &bcf->names[j],
                                      &bcf->upstream->host);
                    }

                    continue;
                }

                if (pass == 1) {
                    /* the slot of a peer gone: its figures go with it */
                    slot->key = key;
                    slot->requests = 0;
                    slot->tokens = 0;
                    slot->picks = 0;
                    slot->running = 0;
                    slot->waiting = 0;
                    slot->kv_ppm = 0;
                    slot->msec = 0;

                    for (c = 0; c < NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS; c++)
                    {
                        ngx_memzero(&sh->cells[c * sh->nslots + slot->index],
                                 sizeof(ngx_http_ai_gateway_balance_cell_t));
                    }
                }

                slot->generation = gen;
                bcf->slots[j] = slot;
            }
        }
    }
}


/* *a -= n, never below zero */

static ngx_inline void
ngx_http_ai_gateway_balance_sub(ngx_atomic_t *a, ngx_atomic_uint_t n)
{
    ngx_atomic_uint_t  old;

    if (n == 0) {
        return;
    }

    do {
        old = *a;
    } while (!ngx_atomic_cmp_set(a, old, old > n ? old - n : 0));
}


void
ngx_http_ai_gateway_balance_charge(ngx_http_ai_gateway_balance_peer_data_t *bp,
    ngx_http_ai_gateway_balance_slot_t *slot)
{
    ngx_http_ai_gateway_balance_shctx_t      *sh;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    (void) ngx_atomic_fetch_add(&slot->picks, 1);

    /* the totals first: a crash in between leaves too much, not too little */

    (void) ngx_atomic_fetch_add(&slot->requests, 1);
    (void) ngx_atomic_fetch_add(&slot->tokens,
                                (ngx_atomic_int_t) bp->estimate);

    bp->charged = slot;
    bp->cell = NULL;

    bmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                           ngx_http_ai_gateway_balance_module);
    sh = bmcf->sh;

    if (sh == NULL || slot == &bmcf->spare
        || ngx_http_ai_gateway_balance_column
           == NGX_HTTP_AI_GATEWAY_BALANCE_NO_COLUMN)
    {
        return;
    }

    bp->cell = &sh->cells[ngx_http_ai_gateway_balance_column * sh->nslots
                          + slot->index];

    bp->cell->requests++;
    bp->cell->tokens += bp->estimate;
}


void
ngx_http_ai_gateway_balance_release(ngx_http_ai_gateway_balance_peer_data_t *bp)
{
    ngx_http_ai_gateway_balance_slot_t  *slot;

    slot = bp->charged;

    if (slot == NULL) {
        return;
    }

    bp->charged = NULL;

    /* the cell first: a crash in between leaves too much, not too little */

    if (bp->cell) {
        bp->cell->requests -= bp->cell->requests ? 1 : 0;
        bp->cell->tokens -= bp->cell->tokens >= bp->estimate
                            ? bp->estimate : bp->cell->tokens;
        bp->cell = NULL;
    }

    ngx_http_ai_gateway_balance_sub(&slot->requests, 1);
    ngx_http_ai_gateway_balance_sub(&slot->tokens, bp->estimate);
}


ngx_int_t
ngx_http_ai_gateway_balance_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                                c;
    ngx_event_t                              *ev;
    ngx_http_ai_gateway_balance_shctx_t      *sh;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;          /* cache manager and loader send nothing */
    }

    bmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                           ngx_http_ai_gateway_balance_module);

    if (bmcf == NULL || bmcf->sh == NULL) {
        return NGX_OK;
    }

    sh = bmcf->sh;

    /* a worker started in a dead one's place takes its share off first */
    ngx_http_ai_gateway_balance_sweep(sh, cycle->log);

    for (c = 0; c < NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS; c++) {
        if (sh->owners[c] == 0
            && ngx_atomic_cmp_set(&sh->owners[c], 0,
                                  (ngx_atomic_uint_t) ngx_pid))
        {
            ngx_http_ai_gateway_balance_column = c;
            break;
        }
    }

    if (ngx_http_ai_gateway_balance_column
        == NGX_HTTP_AI_GATEWAY_BALANCE_NO_COLUMN)
    {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "ai_gateway_balance: %d processes hold requests at"
                      " once; should this worker die, its requests in"
                      " flight stay counted", (int)
                      NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS);
    }

    ev = &ngx_http_ai_gateway_balance_sweep_event;

    ngx_http_ai_gateway_event_init(ev,
                                   ngx_http_ai_gateway_balance_sweep_handler,
                                   cycle->log);

    /* a graceful shutdown does not wait for it */
    ev->cancelable = 1;

    ngx_add_timer(ev, NGX_HTTP_AI_GATEWAY_BALANCE_SWEEP_MSEC);

    return NGX_OK;
}


void
ngx_http_ai_gateway_balance_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                                c;
    ngx_http_ai_gateway_balance_shctx_t      *sh;
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    c = ngx_http_ai_gateway_balance_column;

    if (c == NGX_HTTP_AI_GATEWAY_BALANCE_NO_COLUMN) {
        return;
    }

    bmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                           ngx_http_ai_gateway_balance_module);
    sh = bmcf->sh;

    /*
     * requests still open when a worker exits (a fast shutdown) are never
     * freed: take them off now, then give the column back
     */

    ngx_http_ai_gateway_balance_drain(sh, c, cycle->log, ngx_pid);

    ngx_memory_barrier();

    sh->owners[c] = 0;
    ngx_http_ai_gateway_balance_column = NGX_HTTP_AI_GATEWAY_BALANCE_NO_COLUMN;
}


static void
ngx_http_ai_gateway_balance_sweep_handler(ngx_event_t *ev)
{
    ngx_http_ai_gateway_balance_main_conf_t  *bmcf;

    bmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                           ngx_http_ai_gateway_balance_module);

    ngx_http_ai_gateway_balance_sweep(bmcf->sh, ev->log);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_AI_GATEWAY_BALANCE_SWEEP_MSEC);
    }
}


/*
 * Columns of processes that are gone.  kill(pid, 0) is the one system call,
 * made with no lock held; ESRCH means no such process.  A column that
 * holds this process's own pid but is not its column belonged to a dead
 * process whose pid the kernel gave to this one.
 */

static void
ngx_http_ai_gateway_balance_sweep(ngx_http_ai_gateway_balance_shctx_t *sh,
    ngx_log_t *log)
{
    ngx_pid_t          pid;
    ngx_uint_t         c;
    ngx_atomic_uint_t  owner;

    for (c = 0; c < NGX_HTTP_AI_GATEWAY_BALANCE_COLUMNS; c++) {
        owner = sh->owners[c];

        if (owner == 0 || owner == NGX_HTTP_AI_GATEWAY_BALANCE_CLEANING
            || c == ngx_http_ai_gateway_balance_column)
        {
            continue;
        }

        pid = (ngx_pid_t) owner;

        if (pid <= 0) {
            continue;
        }

        if (pid != ngx_pid && (kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH)) {
            continue;
        }

        if (!ngx_atomic_cmp_set(&sh->owners[c], owner,
                                NGX_HTTP_AI_GATEWAY_BALANCE_CLEANING))
        {
            continue;           /* another worker is at it */
        }

        ngx_http_ai_gateway_balance_drain(sh, c, log, pid);

        ngx_memory_barrier();

        sh->owners[c] = 0;
    }
}


static void
ngx_http_ai_gateway_balance_drain(ngx_http_ai_gateway_balance_shctx_t *sh,
    ngx_uint_t column, ngx_log_t *log, ngx_pid_t pid)
{
    ngx_uint_t                           i, requests;
    ngx_atomic_uint_t                    tokens;
    ngx_http_ai_gateway_balance_cell_t  *cell;

    requests = 0;
    tokens = 0;

    for (i = 0; i < sh->nslots; i++) {
        cell = &sh->cells[column * sh->nslots + i];

        if (cell->requests == 0 && cell->tokens == 0) {
            continue;
        }

        requests += cell->requests;
        tokens += cell->tokens;

        ngx_http_ai_gateway_balance_sub(&sh->slots[i].requests,
                                        cell->requests);
        ngx_http_ai_gateway_balance_sub(&sh->slots[i].tokens, cell->tokens);

        cell->requests = 0;
        cell->tokens = 0;
    }

    if (requests) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "ai_gateway_balance: %ui requests (%uA tokens) in"
                      " flight of process %P taken off the peers",
                      requests, tokens, pid);
    }
}
