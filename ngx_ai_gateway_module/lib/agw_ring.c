
/*
 * Consistent hashing with bounded loads.
 *
 * The prefix balancer sends requests that start alike to the same replica,
 * where the start is already in the prefix cache.  A plain hash modulo the
 * number of replicas would do that, but would move almost every prefix
 * when a replica is added or removed, and every replica's cache would go
 * cold at once.  Consistent hashing puts points for each replica on a
 * circle of 2^32 hashes and sends a key to the first point at or after its
 * own hash: adding a replica takes over only the arcs before its points,
 * about 1/N of the keys, and the others stay where their caches are.
 *
 * The points are nginx's (`hash $key consistent`,
 * ngx_http_upstream_init_chash(), compatible with Cache::Memcached::Fast):
 * 160 per unit of weight, point j of "host:port" at
 * crc32(host \0 port prev), prev the previous point's hash as 4 bytes,
 * little-endian, 0 for the first.  A server named the same gets the same
 * points here and there.
 *
 * Affinity alone lets one hot prefix pile its requests onto one replica
 * while the others idle.  "Consistent Hashing with Bounded Loads"
 * (Mirrokni, Thorup, Zadimoghaddam, 2016) caps every bin at c times the
 * average load: a key whose bin is full walks on round the circle to the
 * first bin with room.  HAProxy's `hash-balance-factor` does it with
 * connections; here the load is tokens in flight and the bins are
 * weighted: a peer takes the request while its load is at most
 *
 *     c * (L + cost) * w / W
 *
 * (L the usable peers' loads summed, cost the request's own, W their
 * weights).  The request's cost counts in the average, so an idle pool
 * takes a first request at its home peer, and the least loaded peer by
 * weight is always within: the walk always ends.  c = 1.25 moves few
 * requests off their home in steady traffic and never lets a replica
 * carry more than a quarter above its share for long.  A key that moved
 * moves to the same next peer every time, so its overflow too finds a
 * warm cache.  (Float arithmetic for the comparison: loads are integers
 * below 2^40, and the cap needs no more than comparing them.)
 */


#include <stdlib.h>
#include <string.h>

#include "agw_crc32.h"
#include "agw_ring.h"


size_t
agw_ring_add(agw_ring_point_t *points, const uint8_t *name, size_t len,
    uint32_t weight, uint32_t peer)
{
    size_t          j, host_len, port_len, npoints;
    uint8_t         c, prev[4];
    uint32_t        base, hash;
    const uint8_t  *host, *port;

    host = name;
    host_len = len;
    port = NULL;
    port_len = 0;

    if (len >= 5 && (name[0] | 0x20) == 'u' && (name[1] | 0x20) == 'n'
        && (name[2] | 0x20) == 'i' && (name[3] | 0x20) == 'x'
        && name[4] == ':')
    {
        host = name + 5;
        host_len = len - 5;

    } else {
        for (j = 0; j < len; j++) {
            c = name[len - j - 1];

            if (c == ':') {
                host_len = len - j - 1;
                port = name + len - j;
                port_len = j;
                break;
            }

            if (c < '0' || c > '9') {
                break;
            }
        }
    }

    agw_crc32_init(base);
    base = agw_crc32_update(base, host, host_len);
    base = agw_crc32_update(base, "", 1);
    base = agw_crc32_update(base, port, port_len);

    memset(prev, 0, sizeof(prev));
    npoints = (size_t) weight * AGW_RING_POINTS_PER_WEIGHT;

    for (j = 0; j < npoints; j++) {
        hash = agw_crc32_update(base, prev, 4);
        agw_crc32_final(hash);

        points[j].hash = hash;
        points[j].peer = peer;

        prev[0] = (uint8_t) (hash & 0xff);
        prev[1] = (uint8_t) ((hash >> 8) & 0xff);
        prev[2] = (uint8_t) ((hash >> 16) & 0xff);
        prev[3] = (uint8_t) ((hash >> 24) & 0xff);
    }

    return npoints;
}


static int
agw_ring_cmp(const void *one, const void *two)
{
    const agw_ring_point_t  *a = one, *b = two;

    if (a->hash != b->hash) {
        return a->hash < b->hash ? -1 : 1;
    }

    /* equal hashes: the lower peer stays, whatever qsort's order */
    return (a->peer > b->peer) - (a->peer < b->peer);
}


size_t
agw_ring_sort(agw_ring_point_t *points, size_t n)
{
    size_t  i, j;

    if (n == 0) {
        return 0;
    }

    qsort(points, n, sizeof(agw_ring_point_t), agw_ring_cmp);

    for (i = 0, j = 1; j < n; j++) {
        if (points[i].hash != points[j].hash) {
            points[++i] = points[j];
        }
    }

    return i + 1;
}


size_t
agw_ring_find(const agw_ring_point_t *points, size_t n, uint32_t hash)
{
    size_t  i, j, k;

    i = 0;
    j = n;

    while (i < j) {
        k = i + (j - i) / 2;

        if (points[k].hash < hash) {
            i = k + 1;

        } else {
            j = k;
        }
    }

    return i < n ? i : 0;
}


uint32_t
agw_ring_pick(const agw_ring_point_t *points, size_t n, uint32_t hash,
    agw_ring_peer_t *peers, size_t npeers, uint64_t cost, uint32_t bound,
    int *home)
{
    int        first;
    double     pool, share;
    size_t     i, k, left;
    uint32_t   p, best;
    uint64_t   total, weights;

    *home = 0;

    total = 0;
    weights = 0;
    left = 0;
    best = AGW_RING_NONE;

    for (p = 0; p < npeers; p++) {
        peers[p].seen = 0;

        if (!peers[p].usable || peers[p].weight == 0) {
            continue;
        }

        total += peers[p].load;
        weights += peers[p].weight;
        left++;

        /* the least loaded by weight: load_p / w_p < load_best / w_best */

        if (best == AGW_RING_NONE
            || (double) peers[p].load * peers[best].weight
               < (double) peers[best].load * peers[p].weight)
        {
            best = p;
        }
    }

    if (left == 0) {
        return AGW_RING_NONE;
    }

    if (bound < AGW_RING_BOUND_ONE) {
        bound = AGW_RING_BOUND_ONE;
    }

    /* a peer of weight w may hold pool * w */
    pool = (double) bound / AGW_RING_BOUND_ONE
           * ((double) total + (double) cost) / (double) weights;

    first = 1;
    k = (n > 0) ? agw_ring_find(points, n, hash) : 0;

    for (i = 0; i < n && left > 0; i++) {
        p = points[(k + i) % n].peer;

        if (p >= npeers || !peers[p].usable || peers[p].weight == 0
            || peers[p].seen)
        {
            continue;
        }

        peers[p].seen = 1;
        left--;

        share = pool * peers[p].weight;

        if ((double) peers[p].load <= share) {
            *home = first;
            return p;
        }

        first = 0;
    }

    /* a peer without points (every one of its hashes taken): the least */

    return best;
}
