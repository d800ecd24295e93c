/*
 * The picks: nginx's upstream peer interface (init_peer, get, free) over
 * the round-robin peers, in the shape of ngx_http_upstream_least_conn_module.c
 * (and of hash's consistent ring for prefix).  What nginx's balancers do,
 * these do too: a peer tried by this request, down, failed max_fails
 * times within fail_timeout, or at max_conns is passed over; when no
 * primary peer is left the backup peers are balanced the same way; every
 * pick ends in free (success, failure, next upstream, abort), which hands
 * the round-robin bookkeeping (fails, conns) to nginx's own free.
 *
 * The load of a peer is the tokens in flight on it (the estimates of the
 * requests all workers sent it and have not seen end), plus, when its
 * last report (the ORCA header, balance_report.c) is less than a second
 * old, its waiting requests, each counted as the average estimate in
 * flight: a replica that other gateways keep busy queues what we send it.
 * A peer of weight w carries load / w.
 *
 * least_tokens: the least loaded; ties (an idle pool, most often) go
 * round robin by weight as least_conn's do, so that idle replicas share
 * the first requests instead of one taking them all.
 *
 * prefix: the peer the consistent hashing ring gives the hash of the
 * prompt's first bytes (in model order), unless its load passes `bound`
 * times its share of the pool's: then the next one round the ring that is
 * within (lib/agw_ring.c).  A request without a prompt the gateway can
 * read (a GET, a body not JSON or in a file) goes least_tokens, and so do
 * the backup peers.
 */

#include "balance/ngx_http_ai_gateway_balance.h"
#include "base/ngx_http_ai_gateway_request.h"
#include "agw_crc32.h"
#include "agw_tokens.h"


static ngx_int_t ngx_http_ai_gateway_balance_get_peer(
    ngx_peer_connection_t *pc, void *data);
static void ngx_http_ai_gateway_balance_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static void ngx_http_ai_gateway_balance_cleanup(void *data);
static void ngx_http_ai_gateway_balance_facts(ngx_http_request_t *r,
    ngx_http_ai_gateway_balance_peer_data_t *bp);


#define ngx_http_ai_gateway_balance_usable(peer, now)                        \
    (!(peer)->down                                                           \
     && !((peer)->max_fails && (peer)->fails >= (peer)->max_fails            \
          && (now) - (peer)->checked <= (peer)->fail_timeout)                \
     && !((peer)->max_conns && (peer)->conns >= (peer)->max_conns))


/*
 * A peer's load: its tokens in flight, plus, while its last report is
 * fresh, its waiting requests each weighing the average estimate.  The
 * same figure for the pick and for the round robin among equals.
 */

static ngx_inline double
ngx_http_ai_gateway_balance_load(ngx_http_ai_gateway_balance_slot_t *slot,
    ngx_atomic_uint_t avg)
{
    double  load;

    load = (double) ngx_min(slot->tokens, AGW_TOKENS_MAX);

    if (slot->msec
        && (ngx_msec_int_t) (ngx_current_msec - slot->msec)
           <= NGX_HTTP_AI_GATEWAY_BALANCE_REPORT_MSEC)
    {
        load += (double) slot->waiting * (double) avg;
    }

    return load;
}


ngx_int_t
ngx_http_ai_gateway_balance_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_pool_cleanup_t                       *cln;
    ngx_http_ai_gateway_balance_srv_conf_t   *bcf;
    ngx_http_ai_gateway_balance_peer_data_t  *bp;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway balance: init peer");

    bcf = ngx_http_conf_upstream_srv_conf(us,
                                          ngx_http_ai_gateway_balance_module);

    bp = ngx_pcalloc(r->pool, sizeof(ngx_http_ai_gateway_balance_peer_data_t));
    if (bp == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    r->upstream->peer.data = &bp->rrp;

    if (ngx_http_upstream_init_round_robin_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    r->upstream->peer.get = ngx_http_ai_gateway_balance_get_peer;
    r->upstream->peer.free = ngx_http_ai_gateway_balance_free_peer;

    bp->conf = bcf;
    bp->primary = bp->rrp.peers;

    /*
     * however the request ends, free() runs for a pick; should a path
     * finish the request without it, what is still charged goes with the
     * request's pool
     */
    cln->handler = ngx_http_ai_gateway_balance_cleanup;
    cln->data = bp;

    ngx_http_ai_gateway_balance_facts(r, bp);

    if (bp->has_prefix) {
        bp->ring = ngx_palloc(r->pool, bcf->npeers * sizeof(agw_ring_peer_t));
        if (bp->ring == NULL) {
            bp->has_prefix = 0;
        }
    }

    /* for the header filter: the peer that answers */
    ngx_http_set_ctx(r, bp, ngx_http_ai_gateway_balance_module);

    return NGX_OK;
}


/*
 * The request's estimate (SPEC 7.1: its prompt plus what it may generate)
 * and, for prefix, the hash of its prompt's start.  The body was read by
 * the proxy before init_peer runs (or by the cache, the limiter,
 * ai_gateway_body); only a body in memory is read (base/).  A request
 * without a body counts one token: it holds a connection, not a model.
 */

static void
ngx_http_ai_gateway_balance_facts(ngx_http_request_t *r,
    ngx_http_ai_gateway_balance_peer_data_t *bp)
{
    uint64_t                             estimate;
    ngx_str_t                            prefix;
    ngx_http_ai_gateway_request_info_t  *info;

    info = ngx_http_ai_gateway_request_info(r);

    if (info == NULL || (!info->json && info->body_len == 0)) {
        estimate = 1;

    } else {
        estimate = ngx_http_ai_gateway_request_estimate(info,
                                     NGX_HTTP_AI_GATEWAY_BALANCE_DEFAULT_MAX);
    }

    bp->estimate = ngx_max(1, ngx_min(estimate, AGW_TOKENS_MAX));

    if (bp->conf->method != NGX_HTTP_AI_GATEWAY_BALANCE_PREFIX
        || info == NULL || !info->json)
    {
        return;
    }

    if (ngx_http_ai_gateway_request_prefix(r, bp->conf->bytes, &prefix)
        == NGX_OK)
    {
        bp->hash = agw_crc32(prefix.data, prefix.len);
        bp->has_prefix = 1;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ai_gateway balance: estimate %uL, prefix %ui bytes,"
                   " hash %08xD", bp->estimate,
                   bp->has_prefix ? prefix.len : 0, bp->hash);
}


static ngx_int_t
ngx_http_ai_gateway_balance_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_ai_gateway_balance_peer_data_t  *bp = data;

    int                                       home;
    time_t                                    now;
    double                                    load, best_load, l;
    uint32_t                                  pick;
    uintptr_t                                 m;
    ngx_int_t                                 rc, total;
    ngx_uint_t                                i, n, p, many, offset, prefix;
    ngx_atomic_uint_t                         tokens, requests, avg;
    ngx_http_upstream_rr_peer_t              *peer, *best;
    ngx_http_upstream_rr_peers_t             *peers;
    ngx_http_upstream_rr_peer_data_t         *rrp;
    ngx_http_ai_gateway_balance_slot_t      **slots;
    ngx_http_ai_gateway_balance_srv_conf_t   *bcf;

    rrp = &bp->rrp;
    bcf = bp->conf;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "ai_gateway balance: get peer, try: %ui", pc->tries);

    /* a pick not freed (never, by nginx's upstream): not twice charged */
    ngx_http_ai_gateway_balance_release(bp);

    peers = rrp->peers;
    offset = (peers == bp->primary) ? 0 : bcf->npeers;
    slots = bcf->slots + offset;

    if (peers->single) {
        rc = ngx_http_upstream_get_round_robin_peer(pc, rrp);

        if (rc == NGX_OK) {
            bp->current = slots[0];
            ngx_http_ai_gateway_balance_charge(bp, slots[0]);
        }

        return rc;
    }

    pc->cached = 0;
    pc->connection = NULL;

    now = ngx_time();

    ngx_http_upstream_rr_peers_wlock(peers);

    /* the average estimate in flight: what a reported waiting one weighs */

    tokens = 0;
    requests = 0;

    for (i = 0; i < peers->number; i++) {
        tokens += slots[i]->tokens;
        requests += slots[i]->requests;
    }

    avg = requests ? tokens / requests : bp->estimate;

    prefix = (bcf->method == NGX_HTTP_AI_GATEWAY_BALANCE_PREFIX
              && bp->has_prefix && offset == 0);

    best = NULL;
    best_load = 0;
    total = 0;
    many = 0;
    p = 0;

    for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {
        n = i / (8 * sizeof(uintptr_t));
        m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

        load = ngx_http_ai_gateway_balance_load(slots[i], avg);

        if ((rrp->tried[n] & m)
            || !ngx_http_ai_gateway_balance_usable(peer, now))
        {
            if (prefix) {
                bp->ring[i].usable = 0;
            }

            continue;
        }

        if (prefix) {
            bp->ring[i].load = (uint64_t) load;
            bp->ring[i].weight = (uint32_t) ngx_min(peer->weight, 1000000);
            bp->ring[i].usable = 1;
            continue;
        }

        /* the least load per weight; equal ones round robin, as least_conn */

        l = load / (double) peer->weight;

        if (best == NULL || l < best_load) {
            best = peer;
            best_load = l;
            many = 0;
            p = i;

        } else if (l == best_load) {
            many = 1;
        }
    }

    if (prefix) {
        pick = agw_ring_pick(bcf->points, bcf->npoints, bp->hash, bp->ring,
                             bcf->npeers, bp->estimate, (uint32_t) bcf->bound,
                             &home);

        if (pick == AGW_RING_NONE) {
            goto failed;
        }

        for (peer = peers->peer, i = 0; i < pick; peer = peer->next, i++) {
            /* void */
        }

        best = peer;
        p = pick;

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "ai_gateway balance: prefix %08xD to %V (%s),"
                       " load %uL", bp->hash, &best->name,
                       home ? "home" : "over the bound, next",
                       bp->ring[pick].load);

        goto found;
    }

    if (best == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "ai_gateway balance: no peer found");
        goto failed;
    }

    if (many) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "ai_gateway balance: least tokens, many");

        for (peer = best, i = p; peer; peer = peer->next, i++) {
            n = i / (8 * sizeof(uintptr_t));
            m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

            if ((rrp->tried[n] & m)
                || !ngx_http_ai_gateway_balance_usable(peer, now))
            {
                continue;
            }

            load = ngx_http_ai_gateway_balance_load(slots[i], avg);

            if (load / (double) peer->weight != best_load) {
                continue;
            }

            peer->current_weight += peer->effective_weight;
            total += peer->effective_weight;

            if (peer->effective_weight < peer->weight) {
                peer->effective_weight++;
            }

            if (peer->current_weight > best->current_weight) {
                best = peer;
                p = i;
            }
        }
    }

    best->current_weight -= total;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "ai_gateway balance: least tokens to %V, load %.0f",
                   &best->name, best_load * best->weight);

found:

    if (now - best->checked > best->fail_timeout) {
        best->checked = now;
    }

    pc->sockaddr = best->sockaddr;
    pc->socklen = best->socklen;
    pc->name = &best->name;

    best->conns++;

    rrp->current = best;

    n = p / (8 * sizeof(uintptr_t));
    m = (uintptr_t) 1 << p % (8 * sizeof(uintptr_t));

    rrp->tried[n] |= m;

    ngx_http_upstream_rr_peers_unlock(peers);

    bp->current = slots[p];
    ngx_http_ai_gateway_balance_charge(bp, slots[p]);

    return NGX_OK;

failed:

    if (peers->next) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "ai_gateway balance: backup servers");

        rrp->peers = peers->next;

        n = (rrp->peers->number + (8 * sizeof(uintptr_t) - 1))
                / (8 * sizeof(uintptr_t));

        for (i = 0; i < n; i++) {
            rrp->tried[i] = 0;
        }

        ngx_http_upstream_rr_peers_unlock(peers);

        rc = ngx_http_ai_gateway_balance_get_peer(pc, bp);

        if (rc != NGX_BUSY) {
            return rc;
        }

        ngx_http_upstream_rr_peers_wlock(peers);
    }

    ngx_http_upstream_rr_peers_unlock(peers);

    pc->name = peers->name;

    return NGX_BUSY;
}


static void
ngx_http_ai_gateway_balance_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_ai_gateway_balance_peer_data_t  *bp = data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "ai_gateway balance: free peer, state %ui", state);

    ngx_http_ai_gateway_balance_release(bp);

    ngx_http_upstream_free_round_robin_peer(pc, &bp->rrp, state);
}


static void
ngx_http_ai_gateway_balance_cleanup(void *data)
{
    ngx_http_ai_gateway_balance_peer_data_t  *bp = data;

    ngx_http_ai_gateway_balance_release(bp);
}
