"""/cachez?format=prometheus as a real consumer reads it (SPEC 3.4, issue
16): `promtool check metrics` (Debian's prometheus package) accepts it, lint
included, on a gateway where every counter has moved, and the figures a
backend does not track (the Redis cache's bytes) are left out, not shown
as 0."""

import re
import shutil
import subprocess
import threading
import time

import pytest
import requests

from harness.redis import available

PROMTOOL = shutil.which("promtool")

pytestmark = [
    pytest.mark.skipif(PROMTOOL is None,
                       reason="promtool missing (apt-get install prometheus;"
                              " scripts/deps.sh test installs it)"),
    pytest.mark.skipif(not available(), reason="redis-server is not installed"),
]

BIG = "b" * 3000   # over max_entry_size, under nginx's 4k word limit
TRICKLE = "t" * 150
KIB = "k" * 1024

HTTP = """
    ai_gateway_cache_zone zone=main:32k max_entry_size=2k;
    ai_gateway_cache_zone zone=near:32k max_entry_size=2k;
    ai_gateway_redis 127.0.0.1:{redis} timeout=100ms;
    ai_gateway_limit_zone $binary_remote_addr zone=one:1m rate=1r/m burst=1;
    ai_gateway_limit_zone $binary_remote_addr zone=tok:1m
                          rate=1t/m burst=100000;
    ai_gateway_model_price priced input=1 output=1;
    ai_gateway_limit_zone $binary_remote_addr zone=usd:1m
                          rate=1usd/d burst=1usd;

    upstream balanced {{
        ai_gateway_balance least_tokens;
        server 127.0.0.1:%%PORT%%;
    }}

    server {{
        listen 127.0.0.1:%%PORT%%;

        location = /cachez {{ ai_gateway_cachez; }}

        location /shm/ {{
            ai_gateway_cache main;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_bypass $http_x_bypass;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /redis/ {{
            ai_gateway_cache redis;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /near/ {{
            ai_gateway_cache redis;
            ai_gateway_cache_near near ttl=5s;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location = /limited {{
            ai_gateway_limit zone=one;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/small;
        }}

        # a token zone: the estimate back (returned), a cost too small
        # for the answer's usage (overrun)
        location = /tokens {{
            ai_gateway_limit zone=tok;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/usage;
        }}
        location = /tokens-over {{
            ai_gateway_limit zone=tok cost=1;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/usage;
        }}
        # a money zone: a model without a price (unpriced)
        location = /money {{
            ai_gateway_limit zone=usd;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/usage;
        }}
        location /raw/usage {{
            default_type application/json;
            return 200 '{{"usage":{{"total_tokens":5}}}}';
        }}

        # stale: stored from /raw/small, then /raw/fail's 502 (STALE)
        location /stale/ {{
            ai_gateway_cache main;
            ai_gateway_cache_key $uri;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_stale 30s;
            ai_gateway_cache_use_stale http_502;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/$arg_r;
        }}
        # coalesced: an answer trickling for a second, asked for twice
        location /trickle/ {{
            ai_gateway_cache main;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/trickle;
        }}
        location /raw/trickle {{ limit_rate 100; return 200 "{trickle}"; }}
        # the balancer (upstreams): a pick, and the peer's load report
        location /balanced/ {{ proxy_pass http://balanced/raw/report; }}
        location /raw/report {{
            add_header endpoint-load-metrics "TEXT named_metrics.num_requests_running=2, named_metrics.num_requests_waiting=1, named_metrics.kv_cache_usage_perc=0.5";
            return 200 "r";
        }}
        location /raw/fail {{ return 502; }}
        location /raw/small {{ return 200 "s"; }}
        location /raw/kib {{ return 200 "{kib}"; }}
        location /raw/big {{ return 200 "{big}"; }}
    }}
"""


def cachez(n, fmt=""):
    r = requests.get(n.url + "/cachez" + fmt, timeout=5)
    assert r.status_code == 200, r.text
    return r


def promtool(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def samples(text):
    """{(metric name, labels text): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        assert m, "not a sample line: %r" % line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


@pytest.fixture
def busy_gateway(nginx_factory, redis_server):
    """A gateway whose every counter moved: hits, misses, bypasses, stores,
    evictions, expired, errors, too_large, passed, rejected, the token
    figures, and the Redis connection's errors and timeouts."""
    n = nginx_factory(HTTP.format(redis=redis_server.port, kib=KIB, big=BIG,
                                  trickle=TRICKLE))
    deadline = time.monotonic() + 5
    while not cachez(n).json()["redis"]["connected"]:
        assert time.monotonic() < deadline, "nginx did not connect to Redis"
        time.sleep(0.05)

    def get(path, **kw):
        r = requests.get(n.url + path, timeout=5, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r

    # shm: miss + store, hit, bypass, too large, expired, evictions
    assert get("/shm/small").headers["X-Cache"] == "MISS"
    assert get("/shm/small").headers["X-Cache"] == "HIT"
    # an answer with usage, replayed: tokens_saved (the location's TTL is
    # 1 s: a slow machine may see it expire between the two)
    assert get("/shm/usage").headers["X-Cache"] == "MISS"
    deadline = time.monotonic() + 5
    while get("/shm/usage").headers["X-Cache"] != "HIT":
        assert time.monotonic() < deadline, "no HIT of /shm/usage"
    get("/shm/small", headers={"X-Bypass": "1"})
    get("/shm/big")
    for i in range(60):
        get("/shm/kib?i=%d" % i)
    # coalesced (single flight) and stale (SPEC 7.2)
    assert get("/stale/x?r=small").headers["X-Cache"] == "MISS"
    trickled = []
    leader = threading.Thread(target=lambda: trickled.append(
        get("/trickle/a").headers["X-Cache"]))
    leader.start()
    time.sleep(0.3)
    trickled.append(get("/trickle/a").headers["X-Cache"])
    leader.join()
    assert sorted(trickled) == ["COALESCED", "MISS"], trickled
    time.sleep(2.1)
    get("/shm/small")
    assert get("/stale/x?r=fail").headers["X-Cache"] == "STALE"

    # limits: one passed, one rejected
    assert requests.get(n.url + "/limited").status_code == 200
    assert requests.get(n.url + "/limited").status_code == 429

    # token zone: reserved, settled, returned and overrun
    get("/tokens")
    get("/tokens-over")

    # money zone: a model nobody priced
    assert requests.post(n.url + "/money", timeout=5,
                         json={"model": "unknown", "prompt": "x",
                               "max_tokens": 1}).status_code == 200
    # the balancer: a pick, its peer's report read (and not passed on)
    assert "endpoint-load-metrics" not in get("/balanced/x").headers

    # Redis cache: miss + store, hit (SCAN counts the entry every 3 s)
    assert get("/redis/small").headers["X-Cache"] == "MISS"
    deadline = time.monotonic() + 5
    while get("/redis/small").headers["X-Cache"] != "HIT":
        assert time.monotonic() < deadline, "no Redis HIT"
        time.sleep(0.05)

    # near cache: stored in Redis, then here once Redis took it, then
    # answered from here (the first HITs may come from Redis)
    assert get("/near/small").headers["X-Cache"] == "MISS"
    deadline = time.monotonic() + 5
    while not any(c.get("near_hits")
                  for c in cachez(n).json()["caches"].values()):
        assert time.monotonic() < deadline, "no near HIT"
        assert get("/near/small").headers["X-Cache"] == "HIT"
        time.sleep(0.05)

    # a Redis that never answers (timeouts), then one that is gone (errors):
    # requests still answered, from upstream
    redis_server.pause()
    try:
        get("/redis/small?frozen")
    finally:
        redis_server.resume()
    redis_server.stop()
    get("/redis/small?gone")
    get("/redis/small?gone-again")

    n.skip_alerts = []
    return n


def test_promtool_accepts_cachez_with_every_counter_moved(busy_gateway):
    text = cachez(busy_gateway, "?format=prometheus").text
    rc, out = promtool(text)
    assert rc == 0, "promtool check metrics exited %d:\n%s\n%s" % (rc, out, text)
    assert out.strip() == "", "promtool lint:\n" + out

    values = samples(text)
    # every counter family has a non-zero sample: the lint ran on real data
    families = {name for name, _ in values if name.endswith("_total")}
    for family in sorted(families):
        assert any(v > 0 for (name, _), v in values.items()
                   if name == family), "%s is 0 everywhere:\n%s" % (family, text)
    for family in ("ai_gateway_cache_hits_total", "ai_gateway_cache_misses_total",
                   "ai_gateway_cache_bypasses_total",
                   "ai_gateway_cache_stores_total",
                   "ai_gateway_cache_evictions_total",
                   "ai_gateway_cache_expired_total",
                   "ai_gateway_cache_errors_total",
                   "ai_gateway_cache_too_large_total",
                   "ai_gateway_limit_passed_total",
                   "ai_gateway_limit_rejected_total",
                   "ai_gateway_redis_errors_total",
                   "ai_gateway_redis_timeouts_total",
                   "ai_gateway_upstream_picks_total"):
        assert family in families, family
    for family in ("ai_gateway_upstream_inflight_requests",
                   "ai_gateway_upstream_inflight_tokens",
                   "ai_gateway_upstream_peer_running",
                   "ai_gateway_upstream_peer_waiting",
                   "ai_gateway_upstream_peer_kv_cache_usage_ratio",
                   "ai_gateway_upstream_peer_report_age_seconds"):
        assert any(name == family for name, _ in values), family
    peer = '{upstream="balanced",peer="127.0.0.1:%d"}' % busy_gateway.port
    assert values[("ai_gateway_upstream_peer_waiting", peer)] == 1
    assert values[("ai_gateway_upstream_peer_kv_cache_usage_ratio", peer)] \
        == 0.5
    assert values[("ai_gateway_upstream_inflight_requests", peer)] == 0

    # every family has its HELP and TYPE, once, before its samples (a
    # histogram's _bucket, _sum and _count samples are of one family)
    histograms = set(re.findall(r"^# TYPE (\S+) histogram$", text, re.M))
    for name in {name for name, _ in values}:
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        kinds = "histogram" if family in histograms else "counter|gauge"
        if family not in histograms:
            family = name
        assert len(re.findall(r"^# HELP %s \S" % family, text, re.M)) == 1, family
        assert len(re.findall(r"^# TYPE %s (%s)$" % (family, kinds), text,
                              re.M)) == 1, family


def test_promtool_lint_catches_a_missing_help_line(busy_gateway):
    """The check above would fail on a family without HELP (the old
    output): promtool's lint reports it and exits non-zero."""
    text = cachez(busy_gateway, "?format=prometheus").text
    broken = re.sub(r"^# HELP ai_gateway_cache_hits_total .*\n", "", text,
                    flags=re.M)
    assert broken != text
    rc, out = promtool(broken)
    assert rc != 0 and "no help text" in out, (rc, out)


def test_redis_cache_bytes_are_not_reported_as_zero(busy_gateway):
    doc = cachez(busy_gateway).json()
    shm, rds = doc["caches"]["main"], doc["caches"]["redis"]
    assert shm["bytes_used"] > 0 and shm["bytes_capacity"] > 0, shm
    assert rds["backend"] == "redis" and rds["stores"] >= 1, rds
    # not tracked for Redis: absent, not a 0 that reads as "empty"
    assert "bytes_used" not in rds and "bytes_capacity" not in rds, rds
    assert "entries" in rds, rds

    text = cachez(busy_gateway, "?format=prometheus").text
    assert re.search(r'^ai_gateway_cache_bytes_used\{cache="main",backend="shm"\}'
                     r' [1-9]', text, re.M), text
    assert 'cache="redis"' in text
    assert not re.search(r'^ai_gateway_cache_bytes_(used|capacity)\{cache="redis"',
                         text, re.M), text
