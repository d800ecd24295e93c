
/*
 * Consistent hashing with bounded loads, for the prefix balancer (SPEC
 * 8.2).  See agw_ring.c.
 */


#ifndef _AGW_RING_H_INCLUDED_
#define _AGW_RING_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* points a unit of weight puts on the ring, as nginx's hash consistent */
#define AGW_RING_POINTS_PER_WEIGHT  160

/* bounds are carried in thousandths: 1250 is 1.25 */
#define AGW_RING_BOUND_ONE          1000

#define AGW_RING_NONE               ((uint32_t) -1)


typedef struct {
    uint32_t  hash;
    uint32_t  peer;                      /* index into the peers */
} agw_ring_point_t;


/* a peer as the pick sees it */
typedef struct {
    uint64_t  load;                      /* tokens in flight, or any figure
                                            that adds up over the peers */
    uint32_t  weight;                    /* > 0 */
    unsigned  usable:1;                  /* may take this request */
    unsigned  seen:1;                    /* scratch of agw_ring_pick() */
} agw_ring_peer_t;


/*
 * Appends weight * AGW_RING_POINTS_PER_WEIGHT points for peer number
 * `peer` named name[0..len) ("host:port", "unix:/path"), as nginx's
 * ngx_http_upstream_init_chash() places a server's; returns the points
 * written.  points has room for them.
 */
size_t agw_ring_add(agw_ring_point_t *points, const uint8_t *name,
    size_t len, uint32_t weight, uint32_t peer);

/* sorts the points by hash, drops repeated hashes; returns how many stay */
size_t agw_ring_sort(agw_ring_point_t *points, size_t n);

/* the first point at or after hash, going round: 0..n-1 (n > 0) */
size_t agw_ring_find(const agw_ring_point_t *points, size_t n,
    uint32_t hash);

/*
 * The peer for a request of `cost` hashed to `hash`: the first usable
 * peer from that point on round the ring whose load is within `bound`
 * (thousandths, >= 1000) times its share of the pool's load, the request
 * counted in:
 *
 *     load <= bound * (sum of usable loads + cost) * weight / usable weight
 *
 * The least loaded peer (by weight) is always within, so a usable peer
 * is always found; AGW_RING_NONE when none is usable.  *home is set when
 * the peer is the first usable one on the ring (the request's own, not
 * moved by the bound).
 */
uint32_t agw_ring_pick(const agw_ring_point_t *points, size_t n,
    uint32_t hash, agw_ring_peer_t *peers, size_t npeers, uint64_t cost,
    uint32_t bound, int *home);


#endif /* _AGW_RING_H_INCLUDED_ */
