
/*
 * Consistent hashing with bounded loads (lib/agw_ring.c): nginx's points,
 * the ring's lookup, how few keys move when a peer goes, weights, and the
 * bound that moves a request off a loaded home to the next peer round.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agw_crc32.h"
#include "agw_ring.h"


#define PPW  AGW_RING_POINTS_PER_WEIGHT


typedef struct {
    const char  *name;
    uint32_t     first[3];               /* the first three points */
    uint32_t     last;                   /* point 159 */
} agw_ring_test_t;


/*
 * as nginx's ngx_http_upstream_init_chash() places them; computed with
 * Python's zlib.crc32(host + b"\0" + port + prev), prev little-endian
 */
static const agw_ring_test_t  vectors[] = {
    { "127.0.0.1:9001", { 0x70533e04, 0x10571e62, 0x1f895401 }, 0xec1fd4bf },
    { "unix:/tmp/sim.sock", { 0x16a0a99c, 0x6d4c98d7, 0x31ecdc18 },
      0x5307cae1 },
    { "backend", { 0x1ae70921, 0xe1e566a4, 0x60b0e5a6 }, 0xe85bde30 },
    { "[::1]:80", { 0x3d4936c4, 0x9d536eea, 0xd9ea90dc }, 0x7c2ff40c },
};


static void
test_ring_points_are_nginx_points(void **state)
{
    size_t            i, n;
    agw_ring_point_t  points[PPW];

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        n = agw_ring_add(points, (const uint8_t *) vectors[i].name,
                         strlen(vectors[i].name), 1, 7);

        assert_int_equal(n, PPW);

        if (points[0].hash != vectors[i].first[0]
            || points[1].hash != vectors[i].first[1]
            || points[2].hash != vectors[i].first[2]
            || points[PPW - 1].hash != vectors[i].last
            || points[0].peer != 7)
        {
            print_error("%s: expected %08x %08x %08x .. %08x, got %08x %08x"
                        " %08x .. %08x\n", vectors[i].name,
                        vectors[i].first[0], vectors[i].first[1],
                        vectors[i].first[2], vectors[i].last,
                        points[0].hash, points[1].hash, points[2].hash,
                        points[PPW - 1].hash);
            fail();
        }
    }
}


typedef struct {
    agw_ring_point_t  points[16 * PPW];
    size_t            n;
    agw_ring_peer_t   peers[16];
    size_t            npeers;
} ring_t;


static void
ring_build(ring_t *r, size_t npeers, const uint32_t *weights)
{
    char    name[32];
    size_t  i, len;

    r->n = 0;
    r->npeers = npeers;

    for (i = 0; i < npeers; i++) {
        len = (size_t) snprintf(name, sizeof(name), "10.0.0.%zu:8000", i + 1);
        r->n += agw_ring_add(r->points + r->n, (const uint8_t *) name, len,
                             weights ? weights[i] : 1, (uint32_t) i);

        memset(&r->peers[i], 0, sizeof(agw_ring_peer_t));
        r->peers[i].weight = weights ? weights[i] : 1;
        r->peers[i].usable = 1;
    }

    r->n = agw_ring_sort(r->points, r->n);
}


static uint32_t
ring_pick(ring_t *r, uint32_t key, uint64_t cost, uint32_t bound, int *home)
{
    return agw_ring_pick(r->points, r->n, agw_crc32(&key, sizeof(key)),
                         r->peers, r->npeers, cost, bound, home);
}


static void
test_ring_sort_and_find(void **state)
{
    size_t            i;
    agw_ring_point_t  p[5] = {
        { 30, 0 }, { 10, 1 }, { 20, 2 }, { 10, 3 }, { 40, 4 }
    };

    assert_int_equal(agw_ring_sort(p, 5), 4);

    /* sorted, the repeated hash kept once (the lower peer) */
    for (i = 0; i < 4; i++) {
        assert_int_equal(p[i].hash, 10 * (i + 1));
    }
    assert_int_equal(p[0].peer, 1);

    assert_int_equal(agw_ring_find(p, 4, 0), 0);
    assert_int_equal(agw_ring_find(p, 4, 10), 0);
    assert_int_equal(agw_ring_find(p, 4, 11), 1);
    assert_int_equal(agw_ring_find(p, 4, 40), 3);
    assert_int_equal(agw_ring_find(p, 4, 41), 0);     /* round the ring */
    assert_int_equal(agw_ring_find(p, 4, UINT32_MAX), 0);
    assert_int_equal(agw_ring_sort(p, 0), 0);
}


static void
test_ring_same_key_same_peer(void **state)
{
    int       home;
    uint32_t  k, a, b;
    ring_t    r;

    ring_build(&r, 3, NULL);

    for (k = 0; k < 1000; k++) {
        a = ring_pick(&r, k, 100, 1250, &home);
        assert_true(home);
        b = ring_pick(&r, k, 5000, 1250, &home);
        assert_int_equal(a, b);
    }
}


static void
test_ring_removing_a_peer_moves_only_its_keys(void **state)
{
    int       home;
    size_t    moved, owned;
    uint32_t  k, before[4000], after;
    ring_t    r;

    ring_build(&r, 4, NULL);

    owned = 0;

    for (k = 0; k < 4000; k++) {
        before[k] = ring_pick(&r, k, 1, 1250, &home);
        owned += (before[k] == 2);
    }

    /* each of 4 peers holds about a quarter */
    assert_in_range(owned, 700, 1300);

    /* peer 2 goes (down, or removed from the ring: the same keys move) */
    r.peers[2].usable = 0;
    moved = 0;

    for (k = 0; k < 4000; k++) {
        after = ring_pick(&r, k, 1, 1250, &home);
        assert_int_not_equal(after, 2);

        if (before[k] != 2) {
            /* nobody else's key moves */
            assert_int_equal(after, before[k]);

        } else {
            moved++;
        }
    }

    assert_int_equal(moved, owned);
}


static void
test_ring_weights_share_the_keys(void **state)
{
    int       home;
    size_t    count[3];
    uint32_t  k, w[3] = { 1, 2, 5 };
    ring_t    r;

    ring_build(&r, 3, w);
    memset(count, 0, sizeof(count));

    for (k = 0; k < 8000; k++) {
        count[ring_pick(&r, k, 1, 1250, &home)]++;
    }

    /* 1/8, 2/8, 5/8 of 8000, give or take the ring's unevenness */
    assert_in_range(count[0], 700, 1300);
    assert_in_range(count[1], 1600, 2400);
    assert_in_range(count[2], 4400, 5600);
}


static void
test_ring_bound_moves_off_a_loaded_home(void **state)
{
    int       home;
    uint32_t  k, owner, next;
    ring_t    r;

    ring_build(&r, 3, NULL);

    k = 42;
    owner = ring_pick(&r, k, 100, 1250, &home);
    assert_true(home);

    /*
     * the home holds 1000 of 1000 tokens in flight: its share is
     * 1.25 * (1000 + 100) / 3 = 458, so the request moves on
     */
    r.peers[owner].load = 1000;
    next = ring_pick(&r, k, 100, 1250, &home);
    assert_int_not_equal(next, owner);
    assert_false(home);

    /* always to the same next peer round the ring */
    assert_int_equal(ring_pick(&r, k, 100, 1250, &home), next);

    /* within the bound, the home keeps it: 450 <= 1.25 * 1100 / 3 */
    r.peers[owner].load = 450;
    r.peers[(owner + 1) % 3].load = 650;
    assert_int_equal(ring_pick(&r, k, 100, 1250, &home), owner);
    assert_true(home);

    /* a looser bound keeps a hotter home */
    r.peers[owner].load = 1000;
    r.peers[(owner + 1) % 3].load = 0;
    assert_int_equal(ring_pick(&r, k, 100, 3000, &home), owner);
}


static void
test_ring_bound_always_finds_a_peer(void **state)
{
    int       home;
    size_t    i, usable;
    uint32_t  k, p, least;
    uint64_t  total;
    ring_t    r;

    ring_build(&r, 5, NULL);

    /* whatever the loads, a usable peer within the bound exists */
    for (k = 0; k < 2000; k++) {
        least = 0;

        for (i = 0; i < 5; i++) {
            r.peers[i].load = (uint64_t) agw_crc32(&k, sizeof(k)) * (i + 1)
                              % 100000;
            r.peers[i].usable = ((k >> i) & 3) != 0;

            if (r.peers[i].usable
                && (!r.peers[least].usable
                    || r.peers[i].load < r.peers[least].load))
            {
                least = (uint32_t) i;
            }
        }

        p = ring_pick(&r, k, 10, 1000, &home);

        if (!r.peers[least].usable) {
            assert_int_equal(p, AGW_RING_NONE);
            continue;
        }

        assert_int_not_equal(p, AGW_RING_NONE);
        assert_true(r.peers[p].usable);

        /* with c = 1, nothing above the average (cost in) is picked */
        total = 10;
        usable = 0;

        for (i = 0; i < 5; i++) {
            if (r.peers[i].usable) {
                total += r.peers[i].load;
                usable++;
            }
        }

        assert_true(r.peers[p].load * usable <= total);
    }
}


static void
test_ring_nothing_usable(void **state)
{
    int       home;
    size_t    i;
    ring_t    r;

    ring_build(&r, 3, NULL);

    for (i = 0; i < 3; i++) {
        r.peers[i].usable = 0;
    }

    assert_int_equal(ring_pick(&r, 1, 1, 1250, &home), AGW_RING_NONE);

    /* no points at all: the least loaded usable peer */
    r.peers[1].usable = 1;
    assert_int_equal(agw_ring_pick(r.points, 0, 5, r.peers, 3, 1, 1250,
                                   &home), 1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_points_are_nginx_points),
        cmocka_unit_test(test_ring_sort_and_find),
        cmocka_unit_test(test_ring_same_key_same_peer),
        cmocka_unit_test(test_ring_removing_a_peer_moves_only_its_keys),
        cmocka_unit_test(test_ring_weights_share_the_keys),
        cmocka_unit_test(test_ring_bound_moves_off_a_loaded_home),
        cmocka_unit_test(test_ring_bound_always_finds_a_peer),
        cmocka_unit_test(test_ring_nothing_usable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
