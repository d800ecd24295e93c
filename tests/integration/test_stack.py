"""The stack of SPEC 2.1, as `make run` brings it up: the SHIPPED config
(nginx-conf/gateway.conf.template rendered by scripts/render-conf.sh) in
front of three ai-sim replicas, everything on free loopback ports.

nginx runs from a 0755 temp prefix (workers drop to www-data or nobody and
must reach their temp paths), two workers, and its error log is checked for
[alert]/[emerg]/[crit] and sanitizer reports after every test.
"""

import concurrent.futures
import http.client
import json
import os
import re
import subprocess
import threading
import time

import pytest
import requests

from harness.nginx import Nginx
from test_configs import render_shipped

WORKERS = 2


class Gateway(Nginx):
    """nginx running the rendered shipped config against three replicas."""

    def __init__(self, sims, workers=WORKERS, **env):
        super().__init__(None, workers=workers)
        self.sims = sims
        render_shipped(
            self.dir, LISTEN="127.0.0.1:%d" % self.port,
            SIM1="127.0.0.1:%d" % sims[0].port,
            SIM2="127.0.0.1:%d" % sims[1].port,
            SIM3="127.0.0.1:%d" % sims[2].port,
            ERROR_LOG="logs/error.log", ACCESS_LOG="logs/access.log",
            WORKERS=workers, **env)

    def spread(self, kw):
        """Each request from its own client address (realip trusts
        X-Forwarded-For from loopback), as load scripts spread virtual
        users, so the per-client limit of the stack stays out of the way
        of tests about the upstream path."""
        kw.setdefault("timeout", 10)
        headers = kw["headers"] = dict(kw.get("headers") or {})
        if "X-Forwarded-For" not in headers:
            self.clients = getattr(self, "clients", 0) + 1
            headers["X-Forwarded-For"] = "10.%d.%d.%d" % (
                self.clients >> 16 & 255, self.clients >> 8 & 255,
                self.clients & 255)
        return kw

    def get(self, path, **kw):
        if path.startswith("/cachez"):
            # stats are for loopback: asked as the test itself, unspread
            kw.setdefault("timeout", 10)
            return requests.get(self.url + path, **kw)
        return requests.get(self.url + path, **self.spread(kw))

    def post(self, path, body, **kw):
        return requests.post(self.url + path, json=body, **self.spread(kw))


@pytest.fixture
def gateway_factory(nginx_factory):
    def start(sims, **kw):
        return nginx_factory(sims, cls=Gateway, **kw)

    return start


@pytest.fixture
def gateway(sims, gateway_factory):
    return gateway_factory(sims)


# the stack caches /v1/models: tests about the upstream path bypass it
NO_CACHE = {"Cache-Control": "no-cache"}


def sim_requests(sims):
    return sum(s.healthz()["requests"] for s in sims)


def test_healthz_is_answered_by_nginx_itself(gateway, sims):
    before = sim_requests(sims)
    r = gateway.get("/healthz")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"ok": True, "service": "ai-gateway"}
    assert "X-Server-Id" not in r.headers, "/healthz reached a replica"
    assert sim_requests(sims) == before, "/healthz reached a replica"


def test_load_balancing_reaches_every_replica(gateway):
    seen = {}
    for _ in range(30):
        r = gateway.get("/v1/models", headers=NO_CACHE)
        assert r.status_code == 200, r.text
        sid = r.headers["X-Server-Id"]
        seen[sid] = seen.get(sid, 0) + 1
    assert set(seen) == {"sim-1", "sim-2", "sim-3"}, seen


def upstream_client_ports(sim_ports):
    """Local ports of every TCP connection to a replica that the kernel
    still knows about (ESTABLISHED, and TIME-WAIT for closed ones), seen
    from either end: one entry per connection nginx opened lately."""
    out = subprocess.run(["ss", "-tanH"], capture_output=True,
                         text=True).stdout
    ports = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) < 5 or f[0] == "LISTEN":
            continue
        local, peer = f[3].rpartition(":"), f[4].rpartition(":")
        if not (local[0].endswith("127.0.0.1")
                and peer[0].endswith("127.0.0.1")):
            continue
        lport, pport = int(local[2]), int(peer[2])
        if pport in sim_ports:
            ports.add(lport)
        elif lport in sim_ports:
            ports.add(pport)
    return ports


def test_upstream_keepalive_reuses_connections(gateway, sims):
    """60 sequential requests through nginx must ride a handful of upstream
    connections (at most one per worker and replica, with slack).  Without
    HTTP/1.1 and `Connection ""` in proxy-upstream.conf, every request
    opens its own connection and leaves a TIME-WAIT entry behind: 60."""
    sim_ports = {s.port for s in sims}
    before = upstream_client_ports(sim_ports)
    n = 60
    with requests.Session() as client:
        for _ in range(n):
            r = client.get(gateway.url + "/v1/models",
                           **gateway.spread({"headers": NO_CACHE}))
            assert r.status_code == 200, r.text
    used = upstream_client_ports(sim_ports) - before
    assert 0 < len(used) <= 2 * WORKERS * len(sims), \
        "%d requests used %d upstream connections" % (n, len(used))

    # the idle pooled connections are still open
    est = subprocess.run(["ss", "-tnH", "state", "established"],
                         capture_output=True, text=True).stdout
    idle = [l for l in est.splitlines()
            if any(l.split()[-1].endswith(":%d" % p) for p in sim_ports)]
    assert idle, "no idle keepalive connection to any replica"


def test_killed_replica_costs_no_request(gateway, sims):
    failures = []

    def infer(i):
        try:
            r = gateway.post("/infer", {"prompt": "kill %d" % i,
                                        "max_tokens": 4})
            if r.status_code != 200:
                failures.append((i, r.status_code, r.text[:200]))
            return r.headers.get("X-Server-Id")
        except requests.RequestException as e:
            failures.append((i, "exception", str(e)))

    for i in range(10):
        infer(i)

    # sequential: the replica goes away between two requests
    sims[0].stop()
    after = [infer(i) for i in range(10, 40)]
    assert not failures, failures
    assert "sim-1" not in after, after

    # concurrent: a burst right after the loss, GETs and POSTs mixed
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(infer, range(40, 120)))
        models = list(pool.map(lambda _: gateway.get("/v1/models",
                                                          headers=NO_CACHE),
                               range(40)))
    assert not failures, failures
    assert [m.status_code for m in models] == [200] * 40


def test_replica_killed_under_concurrent_load(sim_factory, gateway_factory):
    """A replica is SIGKILLed while requests are in flight on it: nginx
    retries each one on another replica.  These are POSTs already sent, so
    only `non_idempotent` in proxy_next_upstream allows the retry; a ttft of
    30 ms keeps a few requests in flight on every replica at any moment."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "30", "--tpot-ms", "1",
                        "--jitter", "0") for i in (1, 2, 3)]
    gateway = gateway_factory(sims)
    stop = threading.Event()
    results, failures = [], []

    def worker(t):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = gateway.post("/infer", {"prompt": "load %d %d" % (t, i),
                                            "max_tokens": 8})
                results.append(r.status_code)
                if r.status_code != 200:
                    failures.append((r.status_code, r.text[:200]))
            except requests.RequestException as e:
                failures.append(("exception", str(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.4)
    sims[0].proc.kill()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(results) > 50, "too little traffic to mean anything"
    assert not failures, failures[:5]


def test_sse_stream_passes_through_token_by_token(sim_factory,
                                                  gateway_factory):
    """20 tokens at ttft 20 ms and tpot 20 ms take ~420 ms to generate.
    Unbuffered, the first event reaches the client after ~20 ms and the
    last after ~420 ms; a buffering proxy would deliver them together.
    The bound (200 ms apart) is half the generation time, loose enough
    for a loaded machine and still impossible if nginx buffered.  (ai-sim
    also sends X-Accel-Buffering: no; test_configs.py checks that the /v1/
    location turns buffering off for upstreams that don't.)"""
    slow = [sim_factory("sim-%d" % i, "--ttft-ms", "20", "--tpot-ms", "20",
                        "--jitter", "0") for i in (1, 2, 3)]
    g = gateway_factory(slow)

    conn = http.client.HTTPConnection("127.0.0.1", g.port, timeout=10)
    body = json.dumps({"model": "sim-small", "stream": True, "max_tokens": 20,
                       "messages": [{"role": "user", "content": "stream"}]})
    start = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body,
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    assert r.getheader("Content-Type", "").startswith("text/event-stream")
    assert r.getheader("X-Server-Id") in ("sim-1", "sim-2", "sim-3")

    events = []
    while True:
        line = r.readline()
        if not line:
            break
        if line.startswith(b"data:"):
            events.append((time.monotonic() - start, line.strip()))
    conn.close()

    assert events, "no data: events"
    assert events[-1][1] == b"data: [DONE]", events[-1]
    tokens = [e for e in events
              if e[1] != b"data: [DONE]"
              and json.loads(e[1][5:])["choices"][0]["delta"].get("content")]
    assert len(tokens) == 20, "expected 20 token events, got %d" % len(tokens)
    first, last = events[0][0], events[-1][0]
    assert last - first >= 0.2, \
        "events arrived together (first %.3fs, last %.3fs): buffered" \
        % (first, last)


def test_routes_are_proxied(gateway):
    r = gateway.get("/v1/models")
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Server-Id") in ("sim-1", "sim-2", "sim-3")
    assert r.json()["object"] == "list"

    r = gateway.post("/infer", {"prompt": "hello gateway", "max_tokens": 8})
    assert r.status_code == 200, r.text
    assert r.json()["server_id"] == r.headers["X-Server-Id"]
    assert r.headers.get("X-Usage-Total-Tokens")

    t = time.monotonic()
    r = gateway.get("/slow?x=1")
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Server-Id") in ("sim-1", "sim-2", "sim-3")
    assert time.monotonic() - t >= 0.08, "/slow answered too fast"

    r = gateway.post("/v1/chat/completions",
                     {"messages": [{"role": "user", "content": "hi"}],
                      "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Server-Id") in ("sim-1", "sim-2", "sim-3")

    # anything else is nginx's own JSON 404, not forwarded
    r = gateway.get("/nope")
    assert r.status_code == 404
    assert "X-Server-Id" not in r.headers


def test_cachez_json_and_prometheus(gateway):
    r = gateway.get("/cachez")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert set(j) >= {"hits", "misses", "bypasses", "hit_ratio", "caches",
                      "limits", "redis", "uptime_s"}, sorted(j)
    assert isinstance(j["caches"], dict) and isinstance(j["limits"], dict)
    assert set(j["redis"]) >= {"configured", "connected", "errors",
                               "timeouts"}, j["redis"]
    assert isinstance(j["uptime_s"], int) and j["uptime_s"] >= 0
    assert 0.0 <= j["hit_ratio"] <= 1.0

    # uptime is whole seconds since start: wait for it to tick
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.3)
        later = gateway.get("/cachez").json()["uptime_s"]
        if later > j["uptime_s"]:
            break
    assert later > j["uptime_s"], "uptime_s does not grow"

    r = gateway.get("/cachez?format=prometheus")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE ai_gateway_uptime_seconds gauge" in r.text, r.text
    assert re.search(r"^ai_gateway_uptime_seconds \d+$", r.text, re.M), r.text
    assert re.search(r"^# TYPE ai_gateway_\w+ (counter|gauge)$", r.text, re.M)


def test_cachez_for_loopback_only(gateway):
    """realip.conf trusts X-Forwarded-For from loopback, so a loopback test
    can present itself as any client; /cachez then sees that address and
    answers loopback only: private networks hold clients too (issue 11)."""
    assert gateway.get("/cachez").status_code == 200
    r = gateway.get("/cachez", headers={"X-Forwarded-For": "127.0.0.9"})
    assert r.status_code == 200, r.text
    for addr in ("10.1.2.3", "192.168.7.7", "172.20.0.1", "203.0.113.7"):
        r = gateway.get("/cachez", headers={"X-Forwarded-For": addr})
        assert r.status_code == 403, "%s reached /cachez" % addr
    # the rest of the gateway stays open to everybody
    r = gateway.get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 200
    assert "client: 203.0.113.7" in gateway.log(), \
        "realip did not rewrite the client address"


def test_large_post_goes_through_the_body_temp_file(gateway):
    """A 200 KiB prompt is larger than client_body_buffer_size (16k), so
    the worker (www-data/nobody) writes it to client_body_temp under the
    run directory before proxying it."""
    prompt = ("lorem ipsum " * 20000)[:200 * 1024]
    r = gateway.post("/infer", {"prompt": prompt, "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 1000
    assert "buffered to a temporary file" in gateway.log(), \
        "the body did not go through client_body_temp"


def test_shipped_cache_answers_repeated_prompts(gateway, sims):
    prompt = {"prompt": "cache me through the stack", "max_tokens": 8}
    first = gateway.post("/infer", prompt)
    assert first.headers["X-Cache"] == "MISS"
    before = sim_requests(sims)
    second = gateway.post("/infer", prompt)
    assert second.headers["X-Cache"] == "HIT"
    assert second.json() == first.json()
    assert sim_requests(sims) == before, "a HIT never reaches a replica"

    assert gateway.get("/slow?stack=1").headers["X-Cache"] == "MISS"
    assert gateway.get("/slow?stack=1").headers["X-Cache"] == "HIT"
    assert gateway.get("/slow?stack=2").headers["X-Cache"] == "MISS"

    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert gateway.post("/v1/chat/completions", chat).headers["X-Cache"] \
        == "MISS"
    assert gateway.post("/v1/chat/completions", chat).headers["X-Cache"] \
        == "HIT"


def test_shipped_streams_are_stored_once_complete(gateway):
    # SPEC 7.2: a stream that ended with data: [DONE] is replayed whole
    chat = {"messages": [{"role": "user", "content": "stream"}],
            "max_tokens": 4, "stream": True}
    first = gateway.post("/v1/chat/completions", chat)
    assert first.headers["X-Cache"] == "MISS"
    assert first.text.rstrip().endswith("data: [DONE]")
    again = gateway.post("/v1/chat/completions", chat)
    assert again.headers["X-Cache"] == "HIT"
    assert again.headers["Content-Type"].startswith("text/event-stream")
    assert again.text == first.text


def test_shipped_per_client_limit(gateway, sims):
    # one client, 80 distinct prompts in a row: burst 40 passes, plus what
    # refills at 20r/s while they run (bounded by the time they took: a
    # loaded machine runs them slower), the rest is 429, never upstream
    client = {"X-Forwarded-For": "192.168.7.7"}
    before = sim_requests(sims)
    codes = []
    start = time.monotonic()
    with requests.Session() as s:
        for i in range(80):
            r = s.post(gateway.url + "/infer",
                       json={"prompt": "limit %d" % i, "max_tokens": 1},
                       headers=client, timeout=10)
            codes.append(r.status_code)
            if r.status_code == 429:
                last = r
    refilled = int(20 * (time.monotonic() - start)) + 1
    passed = codes.count(200)
    assert 40 <= passed <= min(79, 40 + refilled), (refilled, codes)
    assert codes.count(429) == 80 - passed
    assert last.headers["RateLimit-Scope"] == "per_client"
    assert last.headers["RateLimit-Limit"] == "40"
    assert int(last.headers["Retry-After"]) >= 1
    assert last.json()["error"] == "rate_limited"
    assert sim_requests(sims) - before == passed, \
        "rejected requests never reach a replica"

    other = gateway.post("/infer", {"prompt": "another client"})
    assert other.status_code == 200, "another client is unaffected"
    assert other.headers["RateLimit-Policy"].startswith('"per_client";q=40')


def test_shipped_token_budget_per_api_key(gateway):
    """The shipped per-key TPM zone (60000 tokens a minute): a request
    reserves its estimate and settles on the answer's usage; one that can
    never fit is told so; no X-Api-Key, no token zone."""
    key = {"X-Api-Key": "tour-key"}
    chat = {"model": "sim-small", "max_tokens": 100,
            "messages": [{"role": "user", "content": "count my tokens"}]}

    r = gateway.post("/v1/chat/completions", chat, headers=key)
    assert r.status_code == 200, r.text
    estimate = 4 + 100                    # 15 bytes of prompt, max_tokens
    assert r.headers["x-ratelimit-limit-tokens"] == "60000"
    assert int(r.headers["x-ratelimit-remaining-tokens"]) in (
        60000 - estimate, 60000 - estimate + 1), r.headers
    assert r.headers["x-ratelimit-limit-requests"] == "40", r.headers
    used = r.json()["usage"]["total_tokens"]

    tpm = gateway.get("/cachez").json()["limits"]["tpm"]
    assert tpm["unit"] == "tokens"
    assert tpm["reserved"] == estimate and tpm["settled"] == used, tpm

    too_big = dict(chat, max_tokens=70000)
    r = gateway.post("/v1/chat/completions", too_big, headers=key)
    assert r.status_code == 429, r.text
    assert r.json() == {"error": "cost_exceeds_limit", "scope": "tpm",
                        "limit": 60000}
    assert r.headers["x-should-retry"] == "false"
    assert "Retry-After" not in r.headers

    # without a key the zone does not apply: no token figures
    r = gateway.post("/v1/chat/completions", too_big)
    assert "x-ratelimit-limit-tokens" not in r.headers, r.headers


def test_shipped_health_stats_and_slow_are_never_limited(gateway):
    # one client, on loopback so that /cachez answers it
    client = {"X-Forwarded-For": "127.0.8.8"}
    for path in ("/healthz", "/cachez", "/slow?unlimited"):
        for _ in range(45):
            r = gateway.get(path, headers=client)
            assert r.status_code == 200, (path, r.status_code)
        assert "RateLimit-Limit" not in r.headers, path


def test_shipped_config_with_the_redis_store(sims, gateway_factory,
                                             redis_server):
    """make run CACHE=redis: the same template, the cache in Redis."""
    gateway = gateway_factory(sims, CACHE="redis",
                              REDIS="127.0.0.1:%d" % redis_server.port)
    # workers connect to Redis when they start: wait for both
    deadline = time.monotonic() + 5
    while not gateway.get("/cachez").json()["redis"]["connected"]:
        assert time.monotonic() < deadline, "no worker connected to Redis"
        time.sleep(0.05)
    time.sleep(0.2)

    prompt = {"prompt": "through redis", "max_tokens": 4}
    assert gateway.post("/infer", prompt).headers["X-Cache"] == "MISS"
    # the store is written asynchronously (MULTI/HSET/EXPIRE/EXEC after the
    # answer went out), so the next request may come a moment before it
    for _ in range(20):
        hit = gateway.post("/infer", prompt)
        if hit.headers["X-Cache"] == "HIT":
            break
        time.sleep(0.05)
    assert hit.headers["X-Cache"] == "HIT"
    keys = list(redis_server.client().scan_iter("gw:v1:*"))
    assert len(keys) == 1, keys
    z = gateway.get("/cachez").json()
    # a Redis-only stack declares no shared-memory cache zone (64m unused)
    assert list(z["caches"]) == ["redis"], z["caches"]
    assert z["caches"]["redis"]["hits"] == 1
    assert z["caches"]["redis"]["stores"] >= 1
    assert z["redis"]["configured"] is True


def test_shipped_money_budget_per_api_key(gateway):
    """The shipped per-key daily budget on /v1/ (1 USD a day, ai-sim's
    models priced): 55,000 prompt tokens to sim-large (15 USD per 1M) cost
    about 0.83 USD; the key's second such request is refused until the
    budget has refilled, and the access log says what each cost."""
    key = {"X-Api-Key": "spender"}
    big = {"model": "sim-large", "max_tokens": 16,
           "messages": [{"role": "user", "content": "abc " * 55000}]}

    r = gateway.post("/v1/chat/completions", big, headers=key)
    assert r.status_code == 200, r.text[:200]
    usage = r.json()["usage"]
    cost = -(-(usage["prompt_tokens"] * 15000000
               + usage["completion_tokens"] * 75000000) // 10 ** 6)
    assert 800000 < cost < 850000, usage

    r = gateway.post("/v1/chat/completions", big, headers=key)
    assert r.status_code == 429, r.text[:200]
    assert r.headers["RateLimit-Scope"] == "spend", r.headers
    assert r.json()["error"] == "rate_limited"
    # the ~0.65 USD missing, at 1 USD a day: about 16 hours
    assert 14 * 3600 < int(r.headers["Retry-After"]) < 17 * 3600, r.headers

    spend = gateway.get("/cachez").json()["limits"]["spend"]
    assert spend["unit"] == "usd" and spend["settled"] == cost, spend
    assert spend["unpriced"] == 0, spend

    # another key has its own dollar
    r = gateway.post("/v1/chat/completions", big,
                     headers={"X-Api-Key": "another"})
    assert r.status_code == 200, r.text[:200]

    path = os.path.join(gateway.dir, "logs", "access.log")
    deadline = time.monotonic() + 5
    while True:
        with open(path) as f:
            costs = re.findall(r"model=sim-large .* cost=(\S+)", f.read())
        if len(costs) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert costs[:2] == ["%d.%06d" % divmod(cost, 10 ** 6), "0.000000"], \
        costs
