"""An entry carries its own freshness (issue 21, item 2; SPEC 3.2, 7.2): it
is fresh until the end of the lifetime decided when it was stored
(`fresh_until`), whatever `ai_gateway_cache_stale` the location that reads
it, or a reloaded configuration, says.  Kept longer for stale answers, it
is never a HIT past that time (a location without stale gets a MISS, not
an old answer with a large Age), and a reload that changes `stale` neither
stretches nor shortens the freshness of what is stored.  In Redis the
entry has a `fresh_until` field; an entry without it (an older gateway's)
is fresh for as long as Redis keeps it."""

import time

import pytest
import requests

from harness.redis import available
from test_redis import wait_for, wait_connected
from test_stale import Origin

needs_redis = pytest.mark.skipif(not available(),
                                 reason="redis-server is not installed")

# /a/ and /b/ share the zone and the key (the key names $arg_k only)
HTTP = """
    ai_gateway_cache_zone zone=main:1m;
    server {{
        listen 127.0.0.1:%%PORT%%;

        location = /cachez {{ ai_gateway_cachez; }}

        location /a/ {{
            ai_gateway_cache main;
            ai_gateway_cache_key $arg_k;
            ai_gateway_cache_ttl {ttl};
            ai_gateway_cache_stale {stale};
            ai_gateway_cache_use_stale error http_502;
            proxy_pass http://127.0.0.1:{origin}/;
        }}

        location /b/ {{
            ai_gateway_cache main;
            ai_gateway_cache_key $arg_k;
            ai_gateway_cache_ttl {ttl};
            proxy_pass http://127.0.0.1:{origin}/;
        }}
    }}
"""


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


def conf(origin, ttl="1s", stale="10s"):
    return HTTP.format(origin=origin.port, ttl=ttl, stale=stale)


def get(n, path):
    return requests.get(n.url + path, timeout=5)


def test_a_location_without_stale_never_hits_an_entry_kept_for_stale(
        nginx_factory, origin):
    n = nginx_factory(conf(origin))
    r = get(n, "/a/x?k=1")
    assert r.headers["X-Cache"] == "MISS" and r.text == "v1"
    assert get(n, "/b/x?k=1").headers["X-Cache"] == "HIT"

    time.sleep(2.2)                     # past the 1 s lifetime, kept 10 s

    # the location with stale has it for an upstream failure
    origin.mode = "502"
    r = get(n, "/a/x?k=1")
    assert r.status_code == 200 and r.headers["X-Cache"] == "STALE"
    assert r.text == "v1"

    # the one without asks its upstream
    origin.mode = "ok"
    origin.version = 2
    r = get(n, "/b/x?k=1")
    # before: a HIT with the old answer and "Age: 2" on a 1 s TTL
    assert r.headers["X-Cache"] == "MISS", (r.headers, r.text)
    assert r.text == "v2" and "Age" not in r.headers


def test_a_reload_lowering_stale_does_not_stretch_freshness(nginx_factory,
                                                            origin):
    n = nginx_factory(conf(origin, ttl="1s", stale="10s"))
    assert get(n, "/a/x?k=2").headers["X-Cache"] == "MISS"

    # the zone, and the entry kept 11 s, survive the reload
    n.reload(conf(origin, ttl="1s", stale="1s"))
    time.sleep(2.2)
    origin.version = 2
    r = get(n, "/a/x?k=2")
    # before: judged with the new stale (expiry 11 s - 1 s), a HIT
    assert r.headers["X-Cache"] == "MISS", (r.headers, r.text)
    assert r.text == "v2"


def test_a_reload_raising_stale_does_not_shorten_freshness(nginx_factory,
                                                           origin):
    n = nginx_factory(conf(origin, ttl="20s", stale="1s"))
    assert get(n, "/a/x?k=3").headers["X-Cache"] == "MISS"

    n.reload(conf(origin, ttl="20s", stale="60s"))
    origin.version = 2
    r = get(n, "/a/x?k=3")
    # before: judged with the new stale (expiry 21 s - 60 s), a MISS
    assert r.headers["X-Cache"] == "HIT", (r.headers, r.text)
    assert r.text == "v1"
    assert get(n, "/b/x?k=3").headers["X-Cache"] == "HIT"


REDIS_HTTP = """
    ai_gateway_redis 127.0.0.1:{redis};
    server {{
        listen 127.0.0.1:%%PORT%%;

        location = /cachez {{ ai_gateway_cachez; }}

        location / {{
            ai_gateway_cache redis;
            ai_gateway_cache_ttl 60s;
            proxy_pass http://127.0.0.1:{origin}/;
        }}
    }}
"""


@needs_redis
def test_redis_entries_carry_fresh_until(nginx_factory, origin,
                                         redis_server):
    n = nginx_factory(REDIS_HTTP.format(redis=redis_server.port,
                                        origin=origin.port))
    wait_connected(n)
    rc = redis_server.client()

    assert get(n, "/f").headers["X-Cache"] == "MISS"
    key, = wait_for(lambda: rc.keys("gw:v1:*"), 5, "the entry in Redis")
    h = rc.hgetall(key)
    assert int(h[b"fresh_until"]) == int(h[b"created"]) + 60, h
    assert get(n, "/f").headers["X-Cache"] == "HIT"

    # the entry says it is no longer fresh, though Redis still keeps it:
    # a MISS, whatever the TTL left
    rc.hset(key, "fresh_until", int(time.time()) - 1)
    origin.version = 2
    r = get(n, "/f")
    assert r.headers["X-Cache"] == "MISS", (r.headers, r.text)
    assert r.text == "v2"
    wait_for(lambda: rc.hget(key, "body") == b"v2", 5, "the new entry")
    assert get(n, "/f").headers["X-Cache"] == "HIT"

    # an entry without the field (as an older gateway wrote it) is fresh
    # for as long as Redis keeps it, not an error
    rc.hdel(key, "fresh_until")
    r = get(n, "/f")
    assert r.headers["X-Cache"] == "HIT" and r.text == "v2"
    rc.hset(key, "fresh_until", "soon")
    assert get(n, "/f").headers["X-Cache"] == "MISS"
    z = requests.get(n.url + "/cachez", timeout=5).json()
    assert z["caches"]["redis"]["errors"] == 1, z
