/*
 * Leases of Redis tokens (SPEC 7.4, "ai_gateway_limit_zone ... redis
 * lease=N").
 *
 * A redis zone costs a round trip per request.  With a lease, the script
 * that charges a request takes up to N tokens of the key's Redis bucket at
 * once (ngx_http_ai_gateway_bucket_redis.c) and this nginx keeps what the
 * request did not spend in the key's node of the zone's shared memory, for
 * NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_MS.  The next requests for the key, in
 * any worker, spend the lease under the zone's lock, with no round trip.
 * Tokens leave Redis before they are spent here, so several gateways
 * together never admit more than the shared budget; the price is that a
 * lease held by one gateway is not available to the others until it is
 * spent or handed back.
 *
 * A lease ends when it runs out, or when its time is up.  The tokens of an
 * ended lease go back to Redis: with the next script call for the key
 * (which then takes a new lease), or, for a key that saw no request since,
 * by a timer in every worker that walks the least recently used nodes of
 * each leased zone.  Leases live in the zone's shared memory, so a reload
 * keeps them: the new workers spend and hand back what the old ones took,
 * and nothing is taken twice.  A gateway that stops, or is killed, with
 * leases held loses what they held: at most N tokens per key, which Redis
 * then refills at the bucket's rate as it refills spent tokens.
 */

#include "base/ngx_http_ai_gateway_event.h"
#include "bucket/ngx_http_ai_gateway_bucket_node.h"


/* how often ended leases are looked for, and how many nodes per zone */
#define NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_SWEEP_MS  500
#define NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_SWEEP_N   64


static void ngx_http_ai_gateway_bucket_lease_refund(
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t now);
static void ngx_http_ai_gateway_bucket_lease_sweep(ngx_event_t *ev);
static void ngx_http_ai_gateway_bucket_lease_return(
    ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone, uint64_t now);


/*
 * The leased backend: a charge paid from a lease goes back to the lease;
 * a token reservation settles in Redis, where the bucket is.
 */

static ngx_http_ai_gateway_bucket_backend_t
    ngx_http_ai_gateway_bucket_lease =
{
    ngx_string("lease"),
    1,
    NULL,
    NULL,
    ngx_http_ai_gateway_bucket_lease_refund,
    ngx_http_ai_gateway_bucket_redis_settle
};


static ngx_event_t  ngx_http_ai_gateway_bucket_lease_event;

/* the zones that lease, of the cycle in force (the policy knows them) */
static ngx_http_ai_gateway_bucket_zones_pt  ngx_http_ai_gateway_bucket_leases;


ngx_uint_t
ngx_http_ai_gateway_bucket_lease_take(ngx_http_ai_gateway_bucket_state_t *st,
    uint64_t now)
{
    ngx_uint_t                          taken;
    ngx_http_ai_gateway_bucket_zone_t  *zone;
    ngx_http_ai_gateway_bucket_node_t  *node;

    zone = st->zone;
    taken = 0;

    ngx_http_ai_gateway_bucket_zone_lock(zone);

    node = ngx_http_ai_gateway_bucket_zone_lookup(zone, st->key);

    if (node && node->lease) {

        if (node->lease >= st->cost && now < node->lease_end) {
            node->lease -= st->cost;
            taken = 1;

            /*
             * the figures: what Redis held at the last script call,
             * refilled here, plus what this nginx still holds
             */
            agw_bucket_check(&node->bucket, &zone->bucket, 0, now, &st->res);
            st->res.remaining += node->lease;

        } else {
            /* ended, or too small: back to Redis with the next call */
            st->giveback = node->lease;
            node->lease = 0;
        }

    } else if (node && now < node->lease_end) {

        /*
         * Redis refused this key lately: while its level, refilled here,
         * cannot pay the cost, refuse without asking again.  Tokens other
         * gateways give back meanwhile are seen when the refusal ends:
         * the error is on the side of the budget.
         */

        agw_bucket_check(&node->bucket, &zone->bucket, st->cost, now,
                         &st->res);

        if (!st->res.allowed) {
            taken = 2;
        }
    }

    ngx_http_ai_gateway_bucket_zone_unlock(zone);

    st->leased = (u_char) taken;

    if (taken == 1) {
        st->charged = &ngx_http_ai_gateway_bucket_lease;
    }

    return taken;
}


static void
ngx_http_ai_gateway_bucket_lease_refund(ngx_http_ai_gateway_bucket_state_t *st,
    uint64_t now)
{
    ngx_http_ai_gateway_bucket_node_t  *node;

    ngx_http_ai_gateway_bucket_zone_lock(st->zone);

    node = ngx_http_ai_gateway_bucket_zone_lookup(st->zone, st->key);

    /* an evicted node took its lease with it: nothing to add to */

    if (node) {
        node->lease += st->cost;

        if (node->lease_end <= now) {
            node->lease_end = now + 1;  /* ended: the sweep hands it back */
        }
    }

    ngx_http_ai_gateway_bucket_zone_unlock(st->zone);

    st->leased = 0;
}


/*
 * An ended lease moved into st->giveback to go back with the script call,
 * when that call is not made after all (a shared-memory zone refused the
 * request first, or Redis could not be asked): the tokens are still out
 * of Redis, so they return to the key's node as an ended lease, which the
 * sweep hands back.  Never after a call was sent: Redis may have applied
 * the giveback, and handing it back twice would exceed the budget.
 */

void
ngx_http_ai_gateway_bucket_lease_restore(ngx_http_ai_gateway_bucket_state_t *st,
    uint64_t now)
{
    ngx_http_ai_gateway_bucket_node_t  *node;

    if (st->giveback == 0) {
        return;
    }

    ngx_http_ai_gateway_bucket_zone_lock(st->zone);

    node = ngx_http_ai_gateway_bucket_zone_lookup(st->zone, st->key);

    /* an evicted node took its lease with it, as in lease_refund() */

    if (node) {
        node->lease += st->giveback;

        if (node->lease_end > now) {
            node->lease_end = now;      /* ended: the sweep hands it back */
        }
    }

    ngx_http_ai_gateway_bucket_zone_unlock(st->zone);

    st->giveback = 0;
}


ngx_int_t
ngx_http_ai_gateway_bucket_lease_init_process(ngx_cycle_t *cycle,
    ngx_http_ai_gateway_bucket_zones_pt zones)
{
    ngx_array_t  *leases;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    /* no timer at all where no zone leases: loaded, the module is idle */

    leases = zones(cycle);

    if (leases == NULL || leases->nelts == 0) {
        return NGX_OK;
    }

    ngx_http_ai_gateway_bucket_leases = zones;

    ngx_http_ai_gateway_event_init(&ngx_http_ai_gateway_bucket_lease_event,
                                   ngx_http_ai_gateway_bucket_lease_sweep,
                                   cycle->log);

    /* never what keeps a worker that shuts down alive */
    ngx_http_ai_gateway_bucket_lease_event.cancelable = 1;

    ngx_add_timer(&ngx_http_ai_gateway_bucket_lease_event,
                  NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_SWEEP_MS);

    return NGX_OK;
}


/*
 * The zones are read from the cycle in force at each sweep, never kept:
 * with master_process off a reload replaces the cycle under the same
 * process and frees the old one.
 */

static void
ngx_http_ai_gateway_bucket_lease_sweep(ngx_event_t *ev)
{
    uint64_t                             now;
    ngx_uint_t                           i;
    ngx_array_t                         *leases;
    ngx_http_ai_gateway_bucket_zone_t  **zones;
    ngx_http_ai_gateway_main_conf_t     *amcf;

    if (ngx_exiting) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_SWEEP_MS);

    leases = ngx_http_ai_gateway_bucket_leases((ngx_cycle_t *) ngx_cycle);
    amcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_ai_gateway_module);

    if (leases == NULL || amcf == NULL || amcf->redis == NULL) {
        return;
    }

    now = ngx_http_ai_gateway_bucket_now();
    zones = leases->elts;

    for (i = 0; i < leases->nelts; i++) {
        ngx_http_ai_gateway_bucket_lease_return(amcf->redis, zones[i], now);
    }
}


/*
 * Hand back the ended leases of the least recently used nodes: collected
 * under the lock, sent after it.
 */

static void
ngx_http_ai_gateway_bucket_lease_return(ngx_http_ai_gateway_redis_conf_t *rcf,
    ngx_http_ai_gateway_bucket_zone_t *zone, uint64_t now)
{
    ngx_uint_t                          n, i, seen;
    ngx_queue_t                        *q;
    ngx_http_ai_gateway_bucket_node_t  *node;

    struct {
        u_char    key[NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN];
        uint64_t  tokens;
    } back[NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_SWEEP_N];

    n = 0;
    seen = 0;

    ngx_http_ai_gateway_bucket_zone_lock(zone);

    for (q = ngx_queue_last(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue)
         && n < NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_SWEEP_N
         && seen < 4 * NGX_HTTP_AI_GATEWAY_BUCKET_LEASE_SWEEP_N;
         q = ngx_queue_prev(q), seen++)
    {
        node = ngx_queue_data(q, ngx_http_ai_gateway_bucket_node_t, queue);

        if (node->lease == 0 || now < node->lease_end) {
            continue;
        }

        ngx_memcpy(back[n].key, node->key, NGX_HTTP_AI_GATEWAY_BUCKET_KEY_LEN);
        back[n].tokens = node->lease;
        node->lease = 0;
        n++;
    }

    ngx_http_ai_gateway_bucket_zone_unlock(zone);

    for (i = 0; i < n; i++) {
        ngx_http_ai_gateway_bucket_redis_move(rcf, zone, back[i].key,
                          (int64_t) (back[i].tokens * zone->bucket.period_ms));
    }
}
