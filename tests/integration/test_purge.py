"""ai_gateway_cache_purge (SPEC 7.3, issue 14): POST {"cache", "key" |
"model" | "all"} -> {"purged":N}, in shared memory (in slices under the
zone lock) and in Redis (SCAN + UNLINK, never KEYS nor DEL); the entries
named go, the others stay; $ai_gateway_model is recorded with each entry;
bad requests are 400/405 JSON errors; a purge under load fails no
request."""

import json
import time

import pytest
import requests

from harness import load
from harness.redis import available

HTTP = """
    ai_gateway_cache_zone zone=main:4m max_entry_size=16k;
    {redis}
    server {{
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location = /cachez/purge {{
            ai_gateway_cache_purge;
            allow 127.0.0.1;
            deny all;
        }}

        location /v1/ {{
            ai_gateway_cache {cache};
            ai_gateway_cache_methods GET POST;
            ai_gateway_cache_key_json on;
            ai_gateway_cache_key_ignore user;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
        location /raw/ {{ return 200 "answer $request_uri"; }}
    }}
"""


def start(nginx_factory, cache="main", redis=None):
    directive = ""
    if redis is not None:
        directive = ("ai_gateway_redis 127.0.0.1:%d timeout=500ms "
                     "write_timeout=1s;" % redis.port)
    return nginx_factory(HTTP.format(cache=cache, redis=directive))


def ask(n, path, model, prompt="hi"):
    body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    r = requests.post(n.url + path, json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.headers["X-Cache"]


def purge(n, body, status=200):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = requests.post(n.url + "/cachez/purge", data=data, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


# the entries every test stores: (path, model, prompt)
ENTRIES = [("/v1/a", "m1", "p1"), ("/v1/a", "m1", "p2"),
           ("/v1/a", "m2", "p1"), ("/v1/b", "m1", "p1"),
           ("/v1/b", "m2", "p2")]


def fill(n):
    for e in ENTRIES:
        assert ask(n, *e) == "MISS", e
    for e in ENTRIES:
        assert ask(n, *e) == "HIT", e


def remaining(n):
    return [e for e in ENTRIES if ask(n, *e) == "HIT"]


def key_text(n, path):
    # the default key: $request_method$scheme$host$request_uri
    return "POSThttp127.0.0.1" + path


def check_purges(n, cache):
    fill(n)
    assert purge(n, {"cache": cache, "model": "m1"}) == {"purged": 3}
    # the m1 entries went, the others stayed (remaining() stores m1 again)
    assert remaining(n) == [("/v1/a", "m2", "p1"), ("/v1/b", "m2", "p2")]
    assert purge(n, {"cache": cache, "model": "m3"}) == {"purged": 0}
    assert purge(n, {"cache": cache, "all": True}) == {"purged": 5}

    fill(n)
    assert purge(n, {"cache": cache, "key": key_text(n, "/v1/a")}) == \
        {"purged": 3}
    assert remaining(n) == [("/v1/b", "m1", "p1"), ("/v1/b", "m2", "p2")]

    assert purge(n, {"all": True, "cache": cache}) == {"purged": 5}
    assert remaining(n) == []
    assert purge(n, {"cache": cache, "all": True}) == {"purged": 5}


def test_purge_shm(nginx_factory):
    n = start(nginx_factory)
    check_purges(n, "main")
    zone = requests.get(n.url + "/cachez", timeout=5).json()["caches"]["main"]
    assert zone["entries"] == 0 and zone["bytes_used"] == 0, zone


def test_purge_shm_in_slices(nginx_factory):
    """more entries than one slice (128) holds: all go, across slices"""
    n = start(nginx_factory)
    s = requests.Session()
    for i in range(300):
        r = s.get(n.url + "/v1/g%d" % i, timeout=5)
        assert r.headers["X-Cache"] == "MISS"
    assert ask(n, "/v1/keep", "m9") == "MISS"
    assert purge(n, {"cache": "main", "model": "m9"}) == {"purged": 1}
    assert purge(n, {"cache": "main", "key": "GEThttp127.0.0.1/v1/g7"}) == \
        {"purged": 1}
    assert purge(n, {"cache": "main", "all": True}) == {"purged": 299}
    for i in (0, 7, 150, 299):
        assert s.get(n.url + "/v1/g%d" % i, timeout=5) \
            .headers["X-Cache"] == "MISS"
    log = open(n.error_log).read()
    assert "ai_gateway purge: 299 entries" in log


@pytest.mark.parametrize("body, status, error", [
    (b"", 400, "the body must be a JSON object"),
    (b"{nope", 400, "the body must be a JSON object"),
    (b"[1]", 400, "the body must be a JSON object"),
    (b'{"cache":"main","all":true,"all":true}', 400, "a member is repeated"),
    (b'{"all":true}', 400, '"cache" is missing'),
    (b'{"cache":"main"}', 400, 'exactly one of "key", "model" or "all"'),
    (b'{"cache":"main","all":true,"model":"m"}', 400, "exactly one of"),
    (b'{"cache":"main","all":false}', 400, '"all" must be true'),
    (b'{"cache":"main","model":""}', 400, '"model" must be a non-empty'),
    (b'{"cache":"main","key":7}', 400, '"key" must be a non-empty string'),
    (b'{"cache":"nope","all":true}', 400, "unknown cache: nope"),
    (b'{"cache":"main","all":true,"modle":"x"}', 400,
     "unknown field: modle"),
    (b'{"cache":"redis","all":true}', 400, "unknown cache: redis"),
])
def test_purge_bad_requests(nginx_factory, body, status, error):
    n = start(nginx_factory)
    assert ask(n, "/v1/a", "m1") == "MISS"
    answer = purge(n, body, status)
    assert error in answer["error"], answer
    assert "purged" not in answer
    assert ask(n, "/v1/a", "m1") == "HIT"


def test_purge_wrong_method(nginx_factory):
    n = start(nginx_factory)
    for method in ("GET", "PUT", "DELETE"):
        r = requests.request(method, n.url + "/cachez/purge", timeout=5,
                             data=b'{"cache":"main","all":true}')
        assert r.status_code == 405
        assert r.headers["Allow"] == "POST"
        assert r.json() == {"error": "method not allowed, use POST"}


def test_purge_during_load(nginx_factory):
    """purges of everything while clients keep asking: no request fails,
    and the answers are the origin's either way"""
    n = start(nginx_factory)
    url = n.url + "/v1/load"
    count = []

    def action():
        for _ in range(20):
            count.append(purge(n, {"cache": "main", "all": True})["purged"])
            time.sleep(0.02)

    statuses, failures = load.during(url, action, threads=4)
    assert failures == []
    assert len(statuses) > 50
    # identical requests in flight at once share one upstream answer
    # (the single flight is on by default): COALESCED
    assert set(statuses) <= {"HIT", "MISS", "COALESCED"}
    assert "MISS" in statuses[1:]
    assert sum(count) >= 1


pytestmark_redis = pytest.mark.skipif(not available(),
                                      reason="redis-server is not installed")


def redis_keys(rc):
    return sorted(k.decode() for k in rc.scan_iter("gw:v1:*"))


def wait_stored(rc, n, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(redis_keys(rc)) >= n:
            return
        time.sleep(0.02)
    raise AssertionError("entries not in Redis: %r" % redis_keys(rc))


@pytestmark_redis
def test_purge_redis(nginx_factory, redis_server):
    n = start(nginx_factory, cache="redis", redis=redis_server)
    rc = redis_server.client()

    for e in ENTRIES:
        assert ask(n, *e) == "MISS"
    wait_stored(rc, len(ENTRIES))

    # the model is recorded in each hash, beside the readable key
    fields = [rc.hgetall(k) for k in redis_keys(rc)]
    assert sorted(f[b"model"].decode() for f in fields) == \
        ["m1", "m1", "m1", "m2", "m2"]
    assert sorted(f[b"key"].decode() for f in fields) == \
        sorted(key_text(n, p) for p, _, _ in ENTRIES)

    # a key that is not a hash, and one of another prefix, are no trouble
    rc.set("gw:v1:" + "0" * 64, "junk")
    rc.hset("other:" + "1" * 64, mapping={"model": "m1"})

    rc.config_resetstat()

    assert purge(n, {"cache": "redis", "model": "m1"}) == {"purged": 3}
    left = [rc.hget(k, "model") for k in redis_keys(rc)
            if rc.type(k) == b"hash"]
    assert sorted(left) == [b"m2", b"m2"]

    assert purge(n, {"cache": "redis", "key": key_text(n, "/v1/b")}) == \
        {"purged": 1}
    assert [rc.hget(k, "key").decode() for k in redis_keys(rc)
            if rc.type(k) == b"hash"] == [key_text(n, "/v1/a")]
    assert ask(n, "/v1/a", "m2", "p1") == "HIT"

    assert purge(n, {"cache": "redis", "all": True}) == {"purged": 2}
    assert redis_keys(rc) == []
    assert rc.exists("other:" + "1" * 64) == 1

    stats = rc.info("commandstats")
    assert "cmdstat_scan" in stats
    assert "cmdstat_unlink" in stats or "cmdstat_evalsha" in stats
    assert "cmdstat_keys" not in stats
    assert "cmdstat_del" not in stats
    assert "cmdstat_flushdb" not in stats


@pytestmark_redis
def test_purge_redis_many_batches(nginx_factory, redis_server):
    """more keys than one SCAN batch: every one is found"""
    n = start(nginx_factory, cache="redis", redis=redis_server)
    rc = redis_server.client()
    pipe = rc.pipeline(transaction=False)
    for i in range(1200):
        k = "gw:v1:%064x" % i
        pipe.hset(k, mapping={"model": "bulk" if i % 3 else "other",
                              "key": "k%d" % (i % 2)})
    pipe.execute()
    assert purge(n, {"cache": "redis", "model": "bulk"}) == {"purged": 800}
    assert purge(n, {"cache": "redis", "key": "k0"}) == {"purged": 200}
    assert purge(n, {"cache": "redis", "all": True}) == {"purged": 200}
    assert redis_keys(rc) == []


@pytestmark_redis
def test_purge_redis_down(nginx_factory, redis_server):
    n = start(nginx_factory, cache="redis", redis=redis_server)
    redis_server.stop()
    time.sleep(0.2)
    answer = purge(n, {"cache": "redis", "all": True}, 503)
    assert "unavailable" in answer["error"] or "part way" in answer["error"]


def test_shipped_config_canonical_keys_and_purge(sims, nginx_factory):
    """the shipped config: /v1/ keys JSON bodies in canonical form without
    `user`; /cachez/purge answers loopback, and nobody a client address
    was forwarded for, private or not"""
    from test_stack import Gateway

    gw = nginx_factory(sims, cls=Gateway)
    chat = b'{"model":"sim-small","messages":[{"role":"user","content":"hi"}]}'
    again = (b'{ "user": "u-42", "messages": [ {"content": "h\\u0069", '
             b'"role": "user"} ], "model": "sim-small" }')
    h = {"Content-Type": "application/json"}
    url = gw.url + "/v1/chat/completions"
    assert requests.post(url, data=chat, headers=h, timeout=10) \
        .headers["X-Cache"] == "MISS"
    assert requests.post(url, data=again, headers=h, timeout=10) \
        .headers["X-Cache"] == "HIT"

    body = json.dumps({"cache": "main", "model": "sim-small"})
    for addr in ("10.1.2.3", "203.0.113.7"):
        r = requests.post(gw.url + "/cachez/purge", data=body, timeout=10,
                          headers={"X-Forwarded-For": addr})
        assert r.status_code == 403, addr
    assert requests.post(url, data=chat, headers=h, timeout=10) \
        .headers["X-Cache"] == "HIT"

    r = requests.post(gw.url + "/cachez/purge", data=body, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json() == {"purged": 1}
    assert requests.post(url, data=again, headers=h, timeout=10) \
        .headers["X-Cache"] == "MISS"


def test_purge_config_errors(nginx_factory):
    for body, message in (
            ("ai_gateway_cache_purge; ai_gateway_cache_purge;",
             '"ai_gateway_cache_purge" directive is duplicate'),
            ("proxy_pass http://127.0.0.1:1; ai_gateway_cache_purge;",
             '"ai_gateway_cache_purge" directive conflicts with the '
             "location's content handler"),
            ("ai_gateway_cache_purge on;",
             'invalid number of arguments in "ai_gateway_cache_purge"')):
        n = nginx_factory("""
            server {
                listen 127.0.0.1:%%PORT%%;
                location /p { """ + body + """ }
            }""", start=False)
        rc, out = n.test_config()
        assert rc != 0
        assert message in out, out
