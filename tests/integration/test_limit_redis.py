"""Token buckets in Redis (SPEC 3.1, 3.3): `ai_gateway_limit_zone ... redis`
and `ai_gateway_limit_redis_fail open|closed`.

Every test runs its own redis-server on a free loopback port (never 6379),
from harness/redis.py.  Rates are 1r/m so that refill during a test is a
small fraction of a token and counts are exact, as in test_limit.py, whose
helpers are reused.  The Redis key of a bucket is computed here from the
key value, so the tests use `$http_x_user` as the key.
"""

import concurrent.futures
import hashlib
import json
import re
import socket
import time

import pytest

from harness import redis as redis_harness
from test_limit import NO_TOKENS, cachez, conf_line, get, server

pytestmark = pytest.mark.skipif(not redis_harness.available(),
                                reason="redis-server not installed")


def redis_conf(r, extra=""):
    return "ai_gateway_redis 127.0.0.1:%d timeout=100ms %s;" % (r.port, extra)


def bucket_key(zone, user, prefix="gw:v1:"):
    return "%srl:%s:%s" % (prefix, zone,
                           hashlib.sha256(user.encode()).hexdigest())


def user(name):
    return {"X-User": name}


def script_calls(cl):
    stats = cl.info("commandstats")
    return sum(stats.get("cmdstat_" + c, {}).get("calls", 0)
               for c in ("evalsha", "eval"))


def test_limit_redis_burst_then_reject_with_headers(nginx_factory,
                                                    redis_server):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=per_user; empty_gif; }",
        redis_conf(redis_server) +
        "ai_gateway_limit_zone $http_x_user zone=per_user:1m "
        "rate=1r/m burst=3 redis;"), workers=2)

    seen = [get(n, "/x", headers=user("alice")) for _ in range(5)]

    # the same figures as test_limit_burst_then_reject_with_headers (shm)
    for i, (status, h, _) in enumerate(seen[:3]):
        assert status == 200, "request %d within burst: %d" % (i, status)
        assert h.get("ratelimit-limit") == "3", h
        assert h.get("ratelimit-remaining") == str(2 - i), \
            "remaining after request %d: %s" % (i, h)
        assert h.get("ratelimit-policy") == '"per_user";q=3;w=180', h
        assert "retry-after" not in h, "Retry-After on a 200: %s" % h

    assert 170 <= int(seen[2][1]["ratelimit-reset"]) <= 180, seen[2][1]

    for status, h, body in seen[3:]:
        assert status == 429, "request over burst: %d" % status
        assert h.get("content-type") == "application/json", h
        assert h.get("ratelimit-scope") == "per_user", h
        assert h.get("ratelimit-remaining") == "0", h
        retry = int(h["retry-after"])
        assert 50 <= retry <= 60, "Retry-After %d" % retry
        assert (retry - 1) * 1000 < int(h["retry-after-ms"]) <= retry * 1000, h
        assert re.fullmatch(r'"per_user";r=0;t=\d+', h["ratelimit"]), h
        assert json.loads(body) == {"error": "rate_limited",
                                    "scope": "per_user",
                                    "retry_after": retry}, body

    status, h, _ = get(n, "/x", headers=user("bob"))
    assert status == 200 and h.get("ratelimit-remaining") == "2", (status, h)

    # the bucket: a hash at the documented key, in units of 60000 per token
    # at 1r/m (3 tokens spent, refilled by 1 unit per ms since), expiring
    # when it would have refilled from empty (180 s) plus a second
    cl = redis_server.client()
    key = bucket_key("per_user", "alice")
    fields = cl.hgetall(key)
    assert set(fields) == {b"level", b"stamp"}, (key, cl.keys("*"))
    assert 0 <= int(fields[b"level"]) < 60000, fields
    redis_ms = int(cl.time()[0]) * 1000
    assert abs(int(fields[b"stamp"]) - redis_ms) < 10000, fields
    assert 170000 < cl.pttl(key) <= 181000, cl.pttl(key)
    assert sorted(cl.keys("gw:v1:rl:*")) == sorted(
        [key.encode(), bucket_key("per_user", "bob").encode()])

    z = cachez(n)["limits"]["per_user"]
    assert z == {"backend": "redis", "unit": "requests", "passed": 4,
                 "rejected": 2, "keys": 2, **NO_TOKENS}, z


def test_limit_redis_prefix_and_idle_keys_expire(nginx_factory, redis_server):
    # 60r/s burst 2: a bucket refills from empty in 34 ms, so the key lives
    # about a second (the refill time plus the second of slack)
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=fast; empty_gif; }",
        redis_conf(redis_server, "prefix=t1:") +
        "ai_gateway_limit_zone $http_x_user zone=fast:1m "
        "rate=60r/s burst=2 redis;"))

    assert get(n, "/", headers=user("carol"))[0] == 200
    cl = redis_server.client()
    key = bucket_key("fast", "carol", prefix="t1:")
    assert cl.exists(key), cl.keys("*")
    assert 0 < cl.pttl(key) <= 1034, cl.pttl(key)

    deadline = time.monotonic() + 3
    while cl.exists(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not cl.exists(key), "an idle bucket must expire"

    # a vanished bucket is a full one
    status, h, _ = get(n, "/", headers=user("carol"))
    assert status == 200 and h["ratelimit-remaining"] == "1", h


def test_limit_redis_two_nginx_share_one_budget(nginx_factory, redis_server):
    zones = (redis_conf(redis_server) +
             "ai_gateway_limit_zone global zone=global:1m "
             "rate=1r/m burst=7 redis;")
    loc = "location / { ai_gateway_limit zone=global; empty_gif; }"
    a = nginx_factory(server(loc, zones), workers=2)
    b = nginx_factory(server(loc, zones), workers=2)

    # one request through each node first, so both are known to draw from
    # the bucket whatever the order of the concurrent ones
    statuses = [get(a, "/")[0], get(b, "/")[0]]

    # then 18 requests at once spread over both nodes and all four
    # workers: the script charges atomically in Redis, so exactly one
    # burst passes in all
    def one(i):
        return get(a if i % 2 else b, "/")[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses += list(pool.map(one, range(18)))

    assert statuses.count(200) == 7, statuses
    assert statuses.count(429) == 13, statuses
    passed = (cachez(a)["limits"]["global"]["passed"] +
              cachez(b)["limits"]["global"]["passed"])
    assert passed == 7, passed
    assert cachez(a)["limits"]["global"]["passed"] > 0
    assert cachez(b)["limits"]["global"]["passed"] > 0


def fail_config(r):
    return server("""
        location /open { ai_gateway_limit zone=o; empty_gif; }
        location /closed {
            ai_gateway_limit zone=c;
            ai_gateway_limit_redis_fail closed;
            ai_gateway_limit_status 503;
            empty_gif;
        }
""", redis_conf(r) + """
    ai_gateway_limit_zone $http_x_user zone=o:1m rate=1r/m burst=2 redis;
    ai_gateway_limit_zone $http_x_user zone=c:1m rate=1r/m burst=2 redis;
""")


def wait_limiting(n, path, deadline_s=10):
    """Until a response of `path` (a fail-open location, whose responses
    carry RateLimit headers only when Redis answered) carries them again:
    the connection's back-off is at most a few seconds."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status, h, _ = get(n, path, headers=user("probe"))
        if "ratelimit-limit" in h:
            return status, h
        time.sleep(0.1)
    raise AssertionError("limiting did not resume on %s" % path)


def test_limit_redis_down_open_and_closed(nginx_factory, redis_server):
    n = nginx_factory(fail_config(redis_server))
    assert get(n, "/open", headers=user("u1"))[1]["ratelimit-limit"] == "2"

    redis_server.stop()

    # open: everything passes, without figures; closed: 503, scope c; both
    # answered at once once the breaker is open (a refused connect is
    # immediate anyway)
    start = time.monotonic()
    for _ in range(10):
        status, h, _ = get(n, "/open", headers=user("u1"))
        assert status == 200, status
        assert not any(k.startswith("ratelimit") for k in h), h
        status, h, body = get(n, "/closed", headers=user("u2"))
        assert status == 503, status
        assert h.get("ratelimit-scope") == "c", h
        assert h.get("retry-after") == "1", h
        assert h.get("retry-after-ms") == "1000", h
        assert h.get("ratelimit-remaining") == "0", h
        assert json.loads(body) == {"error": "rate_limited", "scope": "c",
                                    "retry_after": 1}, body
    assert time.monotonic() - start < 3, "a dead Redis must not slow requests"

    doc = cachez(n)
    assert doc["redis"]["errors"] + doc["redis"]["timeouts"] > 0, doc["redis"]
    assert doc["limits"]["o"]["passed"] == 11, doc["limits"]
    assert doc["limits"]["c"]["rejected"] == 10, doc["limits"]

    # Redis back on the same port: limiting resumes without a reload, on
    # an empty Redis (u1's first token was lost with the old server)
    redis_server.start()
    wait_limiting(n, "/open")
    statuses = [get(n, "/closed", headers=user("u3"))[0] for _ in range(3)]
    assert statuses == [200, 200, 503], statuses
    assert redis_server.client().exists(bucket_key("c", "u3"))


def test_limit_redis_slow_times_out_then_breaker(nginx_factory, redis_server):
    n = nginx_factory(fail_config(redis_server))
    assert get(n, "/open", headers=user("u1"))[0] == 200

    # a Redis that accepts but never answers: each command times out after
    # 100 ms until the breaker opens, then requests stop waiting
    redis_server.pause()
    try:
        start = time.monotonic()
        results = [get(n, "/closed" if i % 2 else "/open",
                       headers=user("u1"))[0] for i in range(10)]
        elapsed = time.monotonic() - start
    finally:
        redis_server.resume()

    assert results == [200, 503] * 5, results
    assert elapsed < 1.5, "breaker did not open: %.2f s" % elapsed
    assert cachez(n)["redis"]["timeouts"] >= 1, cachez(n)["redis"]

    wait_limiting(n, "/open")


def test_limit_redis_noscript_recovered(nginx_factory, redis_server):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=u; empty_gif; }",
        redis_conf(redis_server) +
        "ai_gateway_limit_zone $http_x_user zone=u:1m rate=1r/m burst=4 "
        "redis;"))
    cl = redis_server.client()

    assert get(n, "/", headers=user("d"))[1]["ratelimit-remaining"] == "3"
    assert cl.info("memory")["number_of_cached_scripts"] == 1
    cl.script_flush()
    assert cl.info("memory")["number_of_cached_scripts"] == 0

    # EVALSHA answers NOSCRIPT, the EVAL that follows loads the script:
    # the request sees nothing of it, and nothing counts as an error
    status, h, _ = get(n, "/", headers=user("d"))
    assert status == 200 and h["ratelimit-remaining"] == "2", (status, h)
    status, h, _ = get(n, "/", headers=user("d"))
    assert status == 200 and h["ratelimit-remaining"] == "1", (status, h)
    assert cachez(n)["redis"]["errors"] == 0, cachez(n)["redis"]
    assert cl.info("memory")["number_of_cached_scripts"] == 1


def test_limit_redis_mixed_zones_all_or_nothing(nginx_factory, redis_server):
    # local: shared memory, per user, 1 token; shared: Redis, global, 3
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=local;
            ai_gateway_limit zone=shared;
            empty_gif;
        }
        location /peek/local { ai_gateway_limit zone=local cost=0;
                               empty_gif; }
        location /peek/shared { ai_gateway_limit zone=shared cost=0;
                                empty_gif; }
""", redis_conf(redis_server) + """
    ai_gateway_limit_zone $http_x_user zone=local:1m rate=1r/m burst=1;
    ai_gateway_limit_zone global zone=shared:1m rate=1r/m burst=3 redis;
"""), workers=2)

    def peek(zone, who):
        status, h, _ = get(n, "/peek/" + zone, headers=user(who))
        assert status == 200, status
        return int(h["ratelimit-remaining"])

    status, h, _ = get(n, "/", headers=user("a"))
    assert status == 200, status
    # the most constrained zone: local has 0 left, shared 2
    assert h["ratelimit-policy"] == '"local";q=1;w=60', h

    # refused by the shm zone: Redis is not asked, shared keeps its tokens
    cl = redis_server.client()
    evals = script_calls(cl)
    status, h, _ = get(n, "/", headers=user("a"))
    assert status == 429 and h["ratelimit-scope"] == "local", h
    assert script_calls(cl) == evals, "Redis asked for a request shm refused"
    assert peek("shared", "a") == 2

    assert get(n, "/", headers=user("b"))[0] == 200
    assert get(n, "/", headers=user("c"))[0] == 200
    assert peek("shared", "x") == 0

    # refused by the Redis zone: the token local took for d is given back
    status, h, _ = get(n, "/", headers=user("d"))
    assert status == 429 and h["ratelimit-scope"] == "shared", h
    assert h["ratelimit-remaining"] == "0", h
    assert peek("local", "d") == 1, "local was charged for a rejection"
    status, h, _ = get(n, "/peek/local", headers=user("a"))
    assert h["ratelimit-remaining"] == "0", h

    # the Redis bucket holds exactly what three charges left
    level = int(redis_server.client().hget("gw:v1:rl:shared:" + hashlib
                                           .sha256(b"global").hexdigest(),
                                           "level"))
    assert level < 60000, level

    limits = cachez(n)["limits"]
    assert limits["local"] == {"backend": "shm", "unit": "requests",
                               "passed": 3, "rejected": 1, "keys": 4,
                               **NO_TOKENS}, limits
    assert limits["shared"]["backend"] == "redis", limits
    assert limits["shared"]["passed"] == 3, limits
    assert limits["shared"]["rejected"] == 1, limits


def test_limit_redis_refusal_refunds_only_what_was_taken(nginx_factory,
                                                        redis_server):
    """A dry_run shm zone that would refuse takes nothing; when a Redis
    zone then refuses the request, the refund must not give that zone a
    token it never gave (it would create tokens from nothing)."""
    n = nginx_factory(server("""
        location /both { ai_gateway_limit zone=d dry_run;
                         ai_gateway_limit zone=r; empty_gif; }
        location /d { ai_gateway_limit zone=d; empty_gif; }
""", redis_conf(redis_server) + """
    ai_gateway_limit_zone global zone=d:1m rate=1r/m burst=1;
    ai_gateway_limit_zone global zone=r:1m rate=1r/m burst=1 redis;
"""))

    assert get(n, "/both")[0] == 200         # takes d's and r's only token
    status, h, _ = get(n, "/both")           # d would refuse, r refuses
    assert status == 429 and h["ratelimit-scope"] == "r", (status, h)

    status, h, _ = get(n, "/d")
    assert status == 429, "the refund gave the dry_run zone a token: %s" % h
    assert h["ratelimit-remaining"] == "0", h


def test_limit_redis_without_redis_directive_is_refused(nginx_factory):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=r; empty_gif; }",
        "ai_gateway_limit_zone global zone=r:1m rate=1r/s burst=1 redis;"),
        start=False)
    rc, out = n.test_config()
    line = conf_line(n, "zone=r:1m")
    assert rc != 0, out
    assert ('ai_gateway_limit_zone "r" has the "redis" flag but '
            '"ai_gateway_redis" is not configured in %s:%d'
            % (n.conf_path, line)) in out, out


def test_limit_redis_fail_directive_errors(nginx_factory, redis_server):
    n = nginx_factory(server(
        "location / { ai_gateway_limit_redis_fail maybe; empty_gif; }",
        redis_conf(redis_server)), start=False)
    rc, out = n.test_config()
    assert rc != 0, out
    assert ('"ai_gateway_limit_redis_fail" directive must be "open" or '
            '"closed" in %s:%d' % (n.conf_path, conf_line(n, "maybe"))) \
        in out, out

    n.write_conf(server("""
        location / {
            ai_gateway_limit_redis_fail open;
            ai_gateway_limit_redis_fail closed;
            empty_gif;
        }""", redis_conf(redis_server)))
    rc, out = n.test_config()
    assert rc != 0, out
    assert '"ai_gateway_limit_redis_fail" directive is duplicate' in out, out


def test_limit_redis_cache_hits_read_not_charged(nginx_factory, sim,
                                                 redis_server):
    n = nginx_factory(server("""
        location / {
            ai_gateway_cache c;
            ai_gateway_limit zone=per_user;
            ai_gateway_limit zone=abuse charge_hits;
            proxy_pass http://127.0.0.1:%d;
        }
        location /peek { ai_gateway_limit zone=abuse cost=0; empty_gif; }
""" % sim.port, redis_conf(redis_server) + """
    ai_gateway_cache_zone zone=c:1m;
    ai_gateway_limit_zone $http_x_user zone=per_user:1m rate=1r/m burst=3
                          redis;
    ai_gateway_limit_zone global zone=abuse:1m rate=1r/m burst=10 redis;
"""))

    status, h, _ = get(n, "/v1/models", headers=user("e"))
    assert status == 200 and h.get("x-cache") == "MISS", h
    assert h["ratelimit-remaining"] == "2", h

    # a HIT asks Redis with cost 0 for per_user (it reads, charges nothing,
    # and still reports) and with cost 1 for abuse (charge_hits)
    for _ in range(3):
        status, h, _ = get(n, "/v1/models", headers=user("e"))
        assert status == 200 and h.get("x-cache") == "HIT", h
        assert h["ratelimit-policy"] == '"per_user";q=3;w=180', h
        assert h["ratelimit-remaining"] == "2", "HIT charged: %s" % h

    assert get(n, "/peek")[1]["ratelimit-remaining"] == "6"
    z = cachez(n)["limits"]
    assert z["per_user"]["passed"] == 1 and z["abuse"]["passed"] == 4, z

    # Redis gone, closed or not: a zone that only reads never refuses
    redis_server.stop()
    n.write_conf()
    status, h, _ = get(n, "/v1/models", headers=user("e"))
    assert status == 200 and h.get("x-cache") == "HIT", (status, h)
    assert "ratelimit-limit" not in h, h


def test_limit_redis_client_gone_while_waiting(nginx_factory, redis_server):
    n = nginx_factory(fail_config(redis_server), workers=1)
    assert get(n, "/closed", headers=user("f"))[0] == 200

    # a client that leaves while its request waits for Redis: the request
    # is freed, its command detached, and the late reply dropped (under
    # ASan, any use of the freed request would be reported)
    redis_server.pause()
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", n.port))
            s.sendall(b"GET /closed HTTP/1.1\r\nHost: x\r\nX-User: f\r\n\r\n")
            time.sleep(0.03)
            s.close()
        time.sleep(0.05)
    finally:
        redis_server.resume()
    time.sleep(0.2)

    wait_limiting(n, "/open")

    # the scripts were already sent when the clients left, and Redis ran
    # them on waking: f's two remaining tokens are spent, and this is a
    # real rejection (a minute to wait), not a Redis failure (a second)
    status, h, _ = get(n, "/closed", headers=user("f"))
    assert status == 503 and h["ratelimit-scope"] == "c", (status, h)
    assert int(h["retry-after"]) > 30, h
    assert cachez(n)["limits"]["c"]["passed"] == 1, cachez(n)["limits"]


def test_limit_redis_dry_run(nginx_factory, redis_server):
    n = nginx_factory(server("""
        location / { ai_gateway_limit zone=d dry_run; empty_gif;
                     add_header X-Limit $ai_gateway_limit_status always; }
""", redis_conf(redis_server) +
        "ai_gateway_limit_zone global zone=d:1m rate=1r/m burst=2 redis;"))

    seen = [get(n, "/")[:2] for _ in range(4)]
    assert [s for s, _ in seen] == [200] * 4, seen
    assert [h.get("x-limit") for _, h in seen] == \
        ["PASSED", "PASSED", "REJECTED_DRY_RUN", "REJECTED_DRY_RUN"], seen
    z = cachez(n)["limits"]["d"]
    assert z["passed"] == 2 and z["rejected"] == 2, z


def test_limit_redis_dry_run_zone_never_vetoes(nginx_factory, redis_server):
    # an empty dry_run zone in the same script must not stop the real one
    n = nginx_factory(server("""
        location / { ai_gateway_limit zone=per_user;
                     ai_gateway_limit zone=g dry_run; empty_gif; }
""", redis_conf(redis_server) + """
    ai_gateway_limit_zone $http_x_user zone=per_user:1m rate=1r/m burst=1
                          redis;
    ai_gateway_limit_zone global zone=g:1m rate=1r/m burst=1 redis;
"""))

    assert get(n, "/", headers=user("a"))[0] == 200    # empties g
    codes = [get(n, "/", headers=user("b"))[0] for _ in range(3)]
    assert codes == [200, 429, 429], codes


def test_limit_redis_two_redis_zones_one_script(nginx_factory, redis_server):
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=per_user;
            ai_gateway_limit zone=global cost=2;
            empty_gif;
        }
        location /peek { ai_gateway_limit zone=global cost=0; empty_gif; }
""", redis_conf(redis_server) + """
    ai_gateway_limit_zone $http_x_user zone=per_user:1m rate=1r/m burst=1
                          redis;
    ai_gateway_limit_zone global zone=global:1m rate=1r/m burst=5 redis;
"""), workers=2)

    # both zones in one script: a refusal by either charges neither
    assert get(n, "/", headers=user("a"))[0] == 200
    status, h, _ = get(n, "/", headers=user("a"))
    assert status == 429 and h["ratelimit-scope"] == "per_user", h
    assert get(n, "/peek")[1]["ratelimit-remaining"] == "3"

    assert get(n, "/", headers=user("b"))[0] == 200
    status, h, _ = get(n, "/", headers=user("c"))
    assert status == 429 and h["ratelimit-scope"] == "global", h
    # 1 token left: cost 2 waits for one more token, under a minute
    assert 50 <= int(h["retry-after"]) <= 60, h
    cl = redis_server.client()
    assert not cl.exists(bucket_key("per_user", "c")), \
        "per_user was charged for a request global refused"
    assert cl.exists(bucket_key("per_user", "b"))

    limits = cachez(n)["limits"]
    assert limits["per_user"]["passed"] == 2, limits
    assert limits["per_user"]["rejected"] == 1, limits
    assert limits["global"]["passed"] == 2, limits
    assert limits["global"]["rejected"] == 1, limits


def test_limit_redis_taken_without_room_is_a_broken_reply(nginx_factory):
    """A Redis (or a proxy in front of one) answering the script with
    "taken" for a zone whose level has no room for the cost contradicts
    itself: the reply is not the script's, and is treated as Redis
    failing (the location's redis_fail: open passes without figures,
    closed refuses), never as this zone refusing the client (before: a 429
    with the zone's name, from a Redis that said it took the token)."""
    from harness.fake_redis import FakeRedis, array

    def answer(args, conn):
        if args[0].upper() in (b"EVALSHA", b"EVAL"):
            return array([1, 0, 1])          # taken, level 0, got 1
        if args[0].upper() == b"SCRIPT":
            return b"$40\r\n" + b"0" * 40 + b"\r\n"
        return fake.default(args, conn)

    fake = FakeRedis()
    fake.answer = answer
    try:
        n = nginx_factory(fail_config(fake))
        n.skip_alerts.append("unexpected reply from the redis script")
        for _ in range(3):
            status, h, _ = get(n, "/open", headers=user("u1"))
            assert status == 200, (status, h)
            assert "ratelimit-limit" not in h, h
            status, h, _ = get(n, "/closed", headers=user("u1"))
            assert status == 503 and h.get("ratelimit-scope") == "c", h
        assert "unexpected reply from the redis script" in n.log()
        doc = cachez(n)
        assert doc["limits"]["o"]["rejected"] == 0, doc["limits"]
    finally:
        fake.stop()
