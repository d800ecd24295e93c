"""The near cache (SPEC 7.4, ai_gateway_cache_near): entries read from or
stored in Redis are also kept in a shared-memory zone for at most ttl, and
never longer than the Redis entry lives; $ai_gateway_cache_tier says where a
HIT came from and /cachez counts near HITs apart."""

import time

import pytest
import requests

from harness.redis import available
from test_redis import cachez, wait_connected, wait_for

pytestmark = pytest.mark.skipif(not available(),
                                reason="redis-server is not installed")

KIB = "k" * 1024

HTTP = """
    ai_gateway_redis 127.0.0.1:{redis};
    ai_gateway_cache_zone zone=near:{size} max_entry_size=8k;
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

        location /raw/ {{ return 200 "{kib}"; }}
    }}
"""


def gateway(nginx_factory, redis, near="ai_gateway_cache_near near ttl=30s;",
            size="1m"):
    n = nginx_factory(HTTP.format(redis=redis.port, near=near, size=size,
                                  kib=KIB))
    wait_connected(n)
    return n


def get(n, path):
    r = requests.get(n.url + path, timeout=5)
    assert r.status_code == 200, r.text
    return r


def tier(r):
    return (r.headers["X-Cache"], r.headers.get("X-Tier", ""))


def near_stored(n, count=1):
    """The near copy of a MISS is written once Redis said it took the
    entry (not before: an entry Redis refused is never served near), a
    moment after the answer went out: wait for it."""
    wait_for(lambda: cachez(n)["caches"]["near"]["stores"] >= count, 5,
             "the near copy")


def redis_key(redis):
    keys = [k for k in redis.client().keys("gw:v1:*")]
    assert len(keys) == 1, keys
    return keys[0]


def test_near_hit_is_served_with_redis_stopped(nginx_factory, redis_server):
    a = gateway(nginx_factory, redis_server, near="")
    b = gateway(nginx_factory, redis_server)

    assert tier(get(a, "/c/x")) == ("MISS", "")
    assert tier(get(a, "/c/x")) == ("HIT", "redis")

    # b has never seen it: Redis answers, and b keeps a near copy
    assert tier(get(b, "/c/x")) == ("HIT", "redis")
    assert tier(get(b, "/c/x")) == ("HIT", "near")

    redis_server.stop()
    r = get(b, "/c/x")
    assert tier(r) == ("HIT", "near"), "the near copy needs no Redis"
    assert r.text == KIB
    # a has no near zone: with Redis gone it is a MISS
    assert tier(get(a, "/c/x")) == ("MISS", "")

    c = cachez(b)["caches"]["redis"]
    assert c["near_hits"] == 2 and c["hits"] == 3, c
    assert cachez(b)["caches"]["near"]["entries"] == 1


def test_a_miss_stored_here_is_a_near_hit_next(nginx_factory, redis_server):
    n = gateway(nginx_factory, redis_server)
    assert tier(get(n, "/c/y")) == ("MISS", "")
    near_stored(n)
    assert tier(get(n, "/c/y")) == ("HIT", "near")


def test_near_copy_expires_after_ttl_and_redis_answers(nginx_factory,
                                                       redis_server):
    n = gateway(nginx_factory, redis_server,
                near="ai_gateway_cache_near near ttl=1s;")
    assert tier(get(n, "/c/z")) == ("MISS", "")
    near_stored(n)
    assert tier(get(n, "/c/z")) == ("HIT", "near")
    time.sleep(2.1)
    assert tier(get(n, "/c/z")) == ("HIT", "redis")
    assert tier(get(n, "/c/z")) == ("HIT", "near")
    assert cachez(n)["caches"]["near"]["expired"] >= 1


def test_a_change_in_redis_is_seen_after_at_most_ttl(nginx_factory,
                                                     redis_server):
    writer = gateway(nginx_factory, redis_server, near="")
    reader = gateway(nginx_factory, redis_server,
                     near="ai_gateway_cache_near near ttl=2s;")
    get(writer, "/c/w")
    assert tier(get(reader, "/c/w")) == ("HIT", "redis")

    # another gateway (here: by hand) changes the entry in Redis
    redis_server.client().hset(redis_key(redis_server), "body", "changed")

    seen = time.monotonic()
    assert get(reader, "/c/w").text == KIB, "within ttl the near copy answers"
    changed = wait_for(lambda: get(reader, "/c/w").text == "changed", 5,
                       "the change to reach the reader")
    assert changed and time.monotonic() - seen <= 3.1


def test_near_copy_never_outlives_the_redis_entry(nginx_factory,
                                                  redis_server):
    writer = gateway(nginx_factory, redis_server, near="")
    reader = gateway(nginx_factory, redis_server)   # near ttl=30s
    get(writer, "/c/v")
    # the write is fire and forget: the entry is in Redis a moment after
    deadline = time.monotonic() + 5
    while not redis_server.client().keys("gw:v1:*"):
        assert time.monotonic() < deadline, "the entry never reached Redis"
        time.sleep(0.02)
    redis_server.client().expire(redis_key(redis_server), 2)

    assert tier(get(reader, "/c/v")) == ("HIT", "redis")
    assert tier(get(reader, "/c/v")) == ("HIT", "near")
    time.sleep(2.5)
    assert tier(get(reader, "/c/v")) == ("MISS", ""), \
        "the near copy lives no longer than the Redis entry's TTL"


def test_a_full_near_zone_evicts(nginx_factory, redis_server):
    n = gateway(nginx_factory, redis_server, size="32k")
    for i in range(60):
        assert tier(get(n, "/c/e?i=%d" % i)) == ("MISS", "")
    near_stored(n, 60)
    z = cachez(n)["caches"]["near"]
    assert z["evictions"] > 0 and z["entries"] < 60, z
    assert tier(get(n, "/c/e?i=59")) == ("HIT", "near")
    assert tier(get(n, "/c/e?i=0")) == ("HIT", "redis"), \
        "evicted from the near zone, still in Redis"


def test_near_directive_errors(nginx_factory, redis_server):
    bad = [
        ("ai_gateway_cache_near nope;", "unknown cache zone \"nope\""),
        ("ai_gateway_cache_near near ttl=0s;", "invalid ttl"),
        ("ai_gateway_cache_near near foo=1;", "invalid parameter"),
    ]
    for near, message in bad:
        n = nginx_factory(HTTP.format(redis=redis_server.port, near=near,
                                      size="1m", kib=KIB), start=False)
        n.write_conf()
        rc, out = n.test_config()
        assert rc != 0 and message in out, out

    shm = HTTP.replace("ai_gateway_cache redis;", "ai_gateway_cache near;")
    n = nginx_factory(shm.format(redis=redis_server.port,
                                 near="ai_gateway_cache_near near;",
                                 size="1m", kib=KIB), start=False)
    n.write_conf()
    rc, out = n.test_config()
    assert rc != 0 and "requires \"ai_gateway_cache redis\"" in out, out


def test_purge_of_the_redis_cache_clears_the_near_zone(nginx_factory,
                                                       redis_server):
    """SPEC 7.4: a purge clears both the Redis entries and this gateway's
    near copies (which would otherwise answer for up to their ttl)."""
    n = nginx_factory(HTTP.format(redis=redis_server.port,
                                  near="ai_gateway_cache_near near ttl=30s;",
                                  size="1m", kib=KIB).replace(
        "location /raw/", "location = /purge { ai_gateway_cache_purge; }\n"
        "        location /raw/"))
    wait_connected(n)

    assert tier(get(n, "/c/p"))[0] == "MISS"
    wait_for(lambda: tier(get(n, "/c/p")) == ("HIT", "near"), 5,
             "a near HIT")

    r = requests.post(n.url + "/purge", json={"cache": "redis", "all": True},
                      timeout=5)
    assert r.status_code == 200 and r.json() == {"purged": 1}, r.text

    # neither Redis nor the near zone answers it any more
    assert tier(get(n, "/c/p"))[0] == "MISS"
    assert cachez(n)["caches"]["near"]["entries"] <= 1
