/*
 * The shared-memory backend: a zone's buckets in its own shared memory
 * (bucket_tree.c), shared by every worker of this nginx.
 *
 * Several zones are all-or-nothing: every zone of the request that this
 * backend holds is locked (in the order the policy gives, the same for
 * every worker, so two requests can never wait for each other), all are
 * checked, and tokens are taken from each only if all allow.  Under those
 * locks no other worker can spend the tokens between the check and the
 * take, so a rejected request changes no bucket and a passed one never
 * overdraws.  The locks are held only for tree lookups and arithmetic.
 */

#include "bucket/ngx_http_ai_gateway_bucket_node.h"


static void ngx_http_ai_gateway_bucket_shm_check(
    ngx_http_ai_gateway_bucket_zone_t *zone, u_char *key, uint64_t cost,
    uint64_t now, agw_bucket_result_t *res);
static NGX_HTTP_AI_GATEWAY_OUT_OF_LINE ngx_int_t
    ngx_http_ai_gateway_bucket_shm_charge_all(
    ngx_http_ai_gateway_bucket_batch_t *batch, uint64_t now);
static void ngx_http_ai_gateway_bucket_shm_refund(
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t now);
static void ngx_http_ai_gateway_bucket_shm_settle(ngx_http_request_t *r,
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t used, uint64_t now);


/* a zone of the request that applies and that this backend holds */
#define ngx_http_ai_gateway_bucket_shm_holds(s)                              \
    ((s)->zone != NULL                                                       \
     && (s)->zone->backend == &ngx_http_ai_gateway_bucket_shm)


ngx_http_ai_gateway_bucket_backend_t  ngx_http_ai_gateway_bucket_shm = {
    ngx_string("shm"),
    0,
    ngx_http_ai_gateway_bucket_shm_check,
    ngx_http_ai_gateway_bucket_shm_charge,
    ngx_http_ai_gateway_bucket_shm_refund,
    ngx_http_ai_gateway_bucket_shm_settle
};


/* a read: what taking cost now would do; nothing is taken */

static void
ngx_http_ai_gateway_bucket_shm_check(ngx_http_ai_gateway_bucket_zone_t *zone,
    u_char *key, uint64_t cost, uint64_t now, agw_bucket_result_t *res)
{
    ngx_http_ai_gateway_bucket_node_t  *node;

    ngx_http_ai_gateway_bucket_zone_lock(zone);

    node = ngx_http_ai_gateway_bucket_zone_lookup(zone, key);
    ngx_http_ai_gateway_bucket_zone_check(zone, node, cost, now, res);

    ngx_http_ai_gateway_bucket_zone_unlock(zone);
}


/*
 * Check the request's shared-memory zones and, if all allow, charge them
 * (batch->refundable); if one refuses, nothing is taken (batch->refused).
 * NGX_OK, or NGX_ERROR.  Also the backend's charge(); the policy calls it
 * by name (bucket.h), as every request with a shared-memory zone does.
 */

ngx_int_t
ngx_http_ai_gateway_bucket_shm_charge(ngx_http_ai_gateway_bucket_batch_t *batch)
{
    uint64_t                             now;
    ngx_http_ai_gateway_bucket_state_t  *one;

    now = ngx_http_ai_gateway_bucket_now();

    if (batch->count != 1) {
        return ngx_http_ai_gateway_bucket_shm_charge_all(batch, now);
    }

    /*
     * the usual case: one zone, nothing to agree with, one step (apart
     * from the several zones' path, whose array on the stack would give
     * every request a larger frame to set up)
     */

    for (one = batch->st;
         !ngx_http_ai_gateway_bucket_shm_holds(one);
         one++)
    {
        /* void */
    }

    one->taken = ngx_http_ai_gateway_bucket_zone_charge(one->zone, one->key,
                                         one->cost, now,
                                         batch->request->connection->log,
                                         &one->res);

    if (one->taken) {
        one->charged = &ngx_http_ai_gateway_bucket_shm;
    }

    if (one->res.allowed || one->dry) {
        batch->refundable = 1;

    } else {
        batch->refused = 1;
    }

    return NGX_OK;
}


/*
 * several zones: all locked, all checked, then taken from all or none; the
 * zones are walked in the location's lock order, those of other backends
 * (and those that do not apply) skipped
 */

static ngx_int_t
ngx_http_ai_gateway_bucket_shm_charge_all(
    ngx_http_ai_gateway_bucket_batch_t *batch, uint64_t now)
{
    ngx_uint_t                           i, n, allowed;
    ngx_http_ai_gateway_bucket_state_t  *st, *s;

    st = batch->st;
    n = batch->n;

    /*
     * each zone is checked as soon as it is locked; its lock is held until
     * every zone has answered, so that what was checked is what is taken
     */

    allowed = 1;

    for (i = 0; i < n; i++) {
        s = &st[batch->order[i]];

        if (!ngx_http_ai_gateway_bucket_shm_holds(s)) {
            continue;
        }

        ngx_http_ai_gateway_bucket_zone_lock(s->zone);

        s->node = ngx_http_ai_gateway_bucket_zone_lookup(s->zone, s->key);

        ngx_http_ai_gateway_bucket_zone_check(s->zone, s->node, s->cost, now,
                                              &s->res);

        if (!s->res.allowed && !s->dry) {
            allowed = 0;
        }
    }

    /*
     * all allowed: take from each (a dry_run zone that would refuse takes
     * nothing, as if it had refused); otherwise nothing is taken, and the
     * zones that would have allowed report what they hold now, not what
     * they would have held after this request
     */

    for (i = 0; i < n; i++) {
        s = &st[batch->order[i]];

        if (!ngx_http_ai_gateway_bucket_shm_holds(s)) {
            continue;
        }

        if (s->cost && s->res.allowed) {
            if (allowed) {
                s->taken = (ngx_http_ai_gateway_bucket_zone_commit(s->zone,
                                s->node, s->key, &s->res, now,
                                batch->request->connection->log)
                            == NGX_OK);

                if (s->taken) {
                    s->charged = &ngx_http_ai_gateway_bucket_shm;
                }

            } else {
                ngx_http_ai_gateway_bucket_zone_check(s->zone, s->node, 0,
                                                      now, &s->res);
            }
        }

        ngx_http_ai_gateway_bucket_zone_unlock(s->zone);
    }

    if (allowed) {
        batch->refundable = 1;

    } else {
        batch->refused = 1;
    }

    return NGX_OK;
}


static void
ngx_http_ai_gateway_bucket_shm_refund(ngx_http_ai_gateway_bucket_state_t *st,
    uint64_t now)
{
    ngx_http_ai_gateway_bucket_zone_lock(st->zone);

    st->node = ngx_http_ai_gateway_bucket_zone_lookup(st->zone, st->key);

    ngx_http_ai_gateway_bucket_zone_refund(st->zone, st->node, st->cost, now);

    /* the figures reported: what the bucket holds now */
    ngx_http_ai_gateway_bucket_zone_check(st->zone, st->node, 0, now,
                                          &st->res);

    ngx_http_ai_gateway_bucket_zone_unlock(st->zone);
}


static void
ngx_http_ai_gateway_bucket_shm_settle(ngx_http_request_t *r,
    ngx_http_ai_gateway_bucket_state_t *st, uint64_t used, uint64_t now)
{
    ngx_http_ai_gateway_bucket_zone_lock(st->zone);

    ngx_http_ai_gateway_bucket_zone_settle(st->zone, st->key, st->reserved,
                                           used, now, r->connection->log);

    ngx_http_ai_gateway_bucket_zone_unlock(st->zone);
}
