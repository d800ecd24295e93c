"""Redis Cluster (SPEC 7.4, `ai_gateway_redis HOST:PORT cluster`): a real
3-master cluster on loopback; slots discovered from the seed, each command
on the node owning its key, MOVED and ASK followed (also inside MULTI/EXEC),
a killed master degrades to MISS and the limiter to its redis_fail policy,
then both recover."""

import threading
import time

import pytest
import requests

from harness.redis import available
from test_redis import cachez, wait_for

pytestmark = pytest.mark.skipif(not available(),
                                reason="redis-server is not installed")

KIB = "k" * 1024

HTTP = """
    ai_gateway_redis 127.0.0.1:{seed} cluster timeout=1s connect_timeout=1s;
    ai_gateway_cache_zone zone=near:1m;
    ai_gateway_limit_zone $http_x_user zone=a:1m rate=1r/m burst=3 redis;
    ai_gateway_limit_zone $http_x_user zone=b:1m rate=1r/m burst=5 redis;
    server {{
        listen 127.0.0.1:%%PORT%%;

        location = /cachez {{ ai_gateway_cachez; }}

        location /c/ {{
            ai_gateway_cache redis;
            ai_gateway_cache_ttl 60s;
            {near}
            add_header X-Tier $ai_gateway_cache_tier always;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        # two redis zones: one script call, two keys, one hash tag
        location /limit/open {{
            ai_gateway_limit zone=a;
            ai_gateway_limit zone=b;
            empty_gif;
        }}
        location /limit/closed {{
            ai_gateway_limit zone=a;
            ai_gateway_limit_redis_fail closed;
            ai_gateway_limit_status 503;
            empty_gif;
        }}

        location /raw/ {{ return 200 "{kib}"; }}
    }}
"""


def gateway(nginx_factory, cluster, near="", workers=1):
    n = nginx_factory(HTTP.format(seed=cluster.seed.port, near=near, kib=KIB),
                      workers=workers)
    wait_for(lambda: cachez(n)["redis"]["connected"], 10,
             "nginx to connect to the cluster")
    return n


def get(n, path, **kw):
    return requests.get(n.url + path, timeout=5, **kw)


def xcache(r):
    assert r.status_code == 200, (r.status_code, r.text)
    return r.headers["X-Cache"]


def cache_keys(cluster):
    seen = set()
    keys = []
    for node, _, _ in cluster.masters():
        if node.port in seen:
            continue
        seen.add(node.port)
        keys += [(k, node) for k in node.client().keys("gw:v1:*")]
    return keys


@pytest.fixture
def cluster(redis_cluster_factory):
    return redis_cluster_factory(masters=3)


def test_cluster_hit_and_miss_across_two_gateways(nginx_factory, cluster):
    a = gateway(nginx_factory, cluster)
    b = gateway(nginx_factory, cluster, workers=2)

    for i in range(30):
        assert xcache(get(a, "/c/p%d" % i)) == "MISS"
    for i in range(30):
        r = get(b, "/c/p%d" % i)
        assert xcache(r) == "HIT" and r.headers["X-Tier"] == "redis"
        assert r.text == KIB

    # each entry is on the master owning its slot, the keys as documented
    keys = cache_keys(cluster)
    assert len(keys) == 30, keys
    assert len({node.port for _, node in keys}) == 3, \
        "30 keys spread over the 3 masters"
    for key, node in keys:
        assert cluster.owner(key) is node
        assert node.client().ttl(key) > 50
        assert len(key) == len("gw:v1:") + 64

    for n in (a, b):
        z = cachez(n)
        assert z["redis"]["errors"] == 0 and z["redis"]["timeouts"] == 0, z
        assert z["caches"]["redis"]["errors"] == 0, z


def test_cluster_limits_are_shared_and_keys_share_a_hash_tag(nginx_factory,
                                                           cluster):
    a = gateway(nginx_factory, cluster)
    b = gateway(nginx_factory, cluster)
    user = {"X-User": "alice"}

    # zone a: burst 3, shared by both gateways
    statuses = [get(n, "/limit/open", headers=user).status_code
                for n in (a, b, a, b, a)]
    assert statuses == [200, 200, 200, 429, 429], statuses

    keys = cluster.keys("*rl*")
    assert len(keys) == 2, keys
    assert all(k.startswith(b"{gw:v1:rl}:") for k in keys), keys
    assert len({cluster.owner(k).port for k in keys}) == 1
    assert cachez(a)["redis"]["errors"] == 0


def test_cluster_follows_ask_and_moved(nginx_factory, cluster):
    """A slot migrated by hand, step by step, with requests in between:
    ASK while the key has moved and the slot not yet, MOVED once the slot
    has; plain HMGET (no near) and MULTI/EXEC (the near lookup)."""
    plain = gateway(nginx_factory, cluster)
    near = gateway(nginx_factory, cluster,
                   near="ai_gateway_cache_near near ttl=1s;")
    assert xcache(get(plain, "/c/moving")) == "MISS"
    (key, src), = cache_keys(cluster)

    masters = {}
    for node, nid, _ in cluster.masters():
        masters[node.port] = (node, nid)
    src_id = masters[src.port][1]
    dst, dst_id = next(v for p, v in masters.items() if p != src.port)
    slot = src.client().execute_command("CLUSTER", "KEYSLOT", key)

    def both_hit():
        for n in (plain, near):
            r = get(n, "/c/moving")
            assert xcache(r) == "HIT", r.headers
            assert r.headers["X-Tier"] == "redis"

    both_hit()  # warms the slot map

    dst.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                 src_id)
    src.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                 dst_id)
    time.sleep(1.1)     # the near copy is gone
    both_hit()          # still on src

    src.client().execute_command("MIGRATE", "127.0.0.1", dst.port, key, 0,
                                 5000)
    time.sleep(1.1)
    both_hit()          # src answers ASK, dst serves it after ASKING

    for node, _ in masters.values():
        node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE",
                                      dst_id)
    time.sleep(1.1)
    both_hit()          # src answers MOVED
    time.sleep(1.1)
    both_hit()          # the map knows

    for n in (plain, near):
        z = cachez(n)
        assert z["caches"]["redis"]["errors"] == 0, z


def test_cluster_resharding_under_load_fails_no_request(nginx_factory,
                                                        cluster):
    n = gateway(nginx_factory, cluster, workers=2)
    paths = ["/c/r%d" % i for i in range(100)]
    for p in paths:
        xcache(get(n, p))
    for p in paths:
        assert xcache(get(n, p)) == "HIT"

    results = {"ok": 0, "hit": 0, "bad": []}
    stop = threading.Event()

    def load(part):
        s = requests.Session()
        i = 0
        while not stop.is_set():
            p = part[i % len(part)]
            i += 1
            try:
                r = s.get(n.url + p, timeout=5)
            except Exception as e:   # noqa: BLE001
                results["bad"].append(repr(e))
                continue
            if r.status_code != 200 or r.text != KIB:
                results["bad"].append(r.status_code)
            else:
                results["ok"] += 1
                results["hit"] += r.headers.get("X-Cache") == "HIT"

    threads = [threading.Thread(target=load, args=(paths[k::2],))
               for k in range(2)]
    for t in threads:
        t.start()

    masters = cluster.masters()
    src, src_id, _ = masters[0]
    dst_id = next(nid for node, nid, _ in masters if node.port != src.port)
    try:
        import subprocess
        subprocess.run(["redis-cli", "--cluster", "reshard",
                        "127.0.0.1:%d" % cluster.seed.port,
                        "--cluster-from", src_id, "--cluster-to", dst_id,
                        "--cluster-slots", "2000", "--cluster-yes",
                        "--cluster-pipeline", "10"],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert results["bad"] == [], results["bad"][:10]
    assert results["ok"] > 100, results
    # MOVED and ASK were followed: the entries stayed HITs throughout
    assert results["hit"] == results["ok"], results
    z = cachez(n)
    assert z["caches"]["redis"]["errors"] == 0, z


def test_cluster_master_killed_degrades_then_recovers(nginx_factory,
                                                     cluster):
    n = gateway(nginx_factory, cluster)
    paths = ["/c/k%d" % i for i in range(30)]
    for p in paths:
        xcache(get(n, p))

    # the master holding the limiter's buckets (one hash tag: one node)
    assert get(n, "/limit/closed", headers={"X-User": "z"}).status_code == 200
    rl, = cluster.keys("*rl*")
    victim = cluster.owner(rl)
    on_victim = {k for k, node in cache_keys(cluster) if node is victim}
    assert 0 < len(on_victim) < 30

    victim.stop()
    t0 = time.monotonic()
    statuses = [xcache(get(n, p)) for p in paths]
    assert statuses.count("MISS") >= len(on_victim), statuses
    assert statuses.count("HIT") >= 30 - len(on_victim) - 2, statuses
    assert time.monotonic() - t0 < 15

    # the limiter follows ai_gateway_limit_redis_fail
    assert get(n, "/limit/closed", headers={"X-User": "y"}).status_code == 503
    assert get(n, "/limit/open", headers={"X-User": "x"}).status_code == 200

    victim.start()   # same port and node id (nodes.conf), no data

    def recovered():
        for p in paths:
            get(n, p)
        return (all(xcache(get(n, p)) == "HIT" for p in paths)
                and get(n, "/limit/closed",
                        headers={"X-User": "w"}).status_code == 200)

    wait_for(recovered, 30, "every entry a HIT and limits again")


# ---- purge and the entries count on a cluster (issue 21, item 14) -------

def purge_gateway(nginx_factory, cluster):
    import test_purge
    n = nginx_factory(test_purge.HTTP.format(
        cache="redis",
        redis="ai_gateway_redis 127.0.0.1:%d cluster timeout=1s "
              "connect_timeout=1s;" % cluster.seed.port))
    wait_for(lambda: cachez(n)["redis"]["connected"], 10,
             "nginx to connect to the cluster")
    return n


def test_cluster_purge_scans_every_master_and_deletes_per_slot(
        nginx_factory, cluster):
    """SCAN runs on every master, each to its end, and the keys of a batch
    are deleted one slot at a time: before, each batch was one script over
    keys of many slots (CROSSSLOT: 503, purged 0) and SCAN was routed by
    its cursor as if it were a key."""
    import test_purge
    n = purge_gateway(nginx_factory, cluster)

    # by model, by key, everything: entries on the three masters
    test_purge.check_purges(n, "redis")

    for i in range(60):
        assert test_purge.ask(n, "/v1/many", "m%d" % (i % 3),
                              "p%d" % i) == "MISS"
    keys = cache_keys(cluster)
    assert len(keys) == 60 and len({nd.port for _, nd in keys}) == 3, keys

    # /cachez counts the entries of every master (before: 0 on a cluster)
    wait_for(lambda: cachez(n)["caches"]["redis"]["entries"] == 60, 10,
             "entries == 60")

    assert test_purge.purge(n, {"cache": "redis", "model": "m1"}) == \
        {"purged": 20}
    assert len(cache_keys(cluster)) == 40
    assert test_purge.purge(n, {"cache": "redis", "all": True}) == \
        {"purged": 40}
    assert cache_keys(cluster) == []
    wait_for(lambda: cachez(n)["caches"]["redis"]["entries"] == 0, 10,
             "entries == 0")
    assert "CROSSSLOT" not in n.log()


def test_cluster_nodes_that_leave_are_closed_new_ones_used(nginx_factory,
                                                          cluster):
    """A resharding onto a node on a new port, and the old master removed:
    the entries keep answering from their new owner, the old master's
    connection is closed (it left the map), and purge scans the new map's
    masters."""
    import subprocess
    import test_purge
    n = purge_gateway(nginx_factory, cluster)
    for i in range(30):
        assert test_purge.ask(n, "/v1/move", "m", "p%d" % i) == "MISS"

    seed_port = cluster.seed.port
    old, old_id, _ = next(m for m in cluster.masters()
                          if m[0].port != seed_port)
    slots = sum(hi - lo + 1 for node, _, (lo, hi) in cluster.masters()
                if node.port == old.port)
    new = cluster.add_master()
    subprocess.run(["redis-cli", "--cluster", "reshard",
                    "127.0.0.1:%d" % seed_port,
                    "--cluster-from", old_id,
                    "--cluster-to", cluster.node_id(new),
                    "--cluster-slots", str(slots), "--cluster-yes",
                    "--cluster-pipeline", "50"],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=120)
    subprocess.run(["redis-cli", "--cluster", "del-node",
                    "127.0.0.1:%d" % seed_port, old_id],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)
    old.stop()          # forgotten by the cluster (and reset, if still up)
    cluster.wait_ok()
    assert all(m[0].port != old.port for m in cluster.masters())

    # every entry answers, from wherever it is now (MOVED, then the map)
    def all_hit():
        return all(test_purge.ask(n, "/v1/move", "m", "p%d" % i) == "HIT"
                   for i in range(30))
    wait_for(all_hit, 15, "every entry a HIT after the resharding")
    wait_for(lambda: 'cluster node "127.0.0.1:%d" left the map' % old.port
             in n.log(), 10, "the old master to leave the map")

    assert test_purge.purge(n, {"cache": "redis", "all": True}) == \
        {"purged": 30}
    assert cache_keys(cluster) == []
