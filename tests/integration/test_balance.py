"""The balancers that know inference (SPEC 8.2, issue 22):
`ai_gateway_balance least_tokens` and `ai_gateway_balance prefix`, on real
ai-sim replicas behind real nginx.

What an operator relies on: a long generation does not draw new requests
to its replica; a replica's own report of its queue counts; a tenant's
prompts stay on the replica that caches their prefix, and move when it is
over the bound; weights, backup, down, max_fails and proxy_next_upstream
behave as with nginx's own balancers; whatever ends a request (answer,
abort, a dead replica, a reload, a killed worker), the figures in flight
come back to zero; /cachez shows them; bad configurations fail nginx -t.

Timing: the tests keep requests in flight with ai-sim's latency model
(--ttft-ms, --tpot-ms), seconds long against picks made milliseconds
apart, so that a loaded machine slows them without changing the order of
events.  Nothing here asserts a duration.
"""

import concurrent.futures
import http.client
import json
import os
import re
import signal
import threading
import time

import pytest
import requests

PROMPT = "You are the assistant of tenant %s. " + "Keep answers short. " * 150


def chat(system, user="hi", max_tokens=1, stream=False, model="sim-small"):
    return {"model": model, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": system},
                         {"role": "user", "content": user}]}


def upstream(sims, balance, params=None, name="pool", extra=""):
    params = params or [""] * len(sims)
    lines = "\n".join("        server 127.0.0.1:%d %s;" % (s.port, p)
                      for s, p in zip(sims, params))
    return """
    upstream %s {
        %s
%s
        %s
    }
""" % (name, balance, lines, extra)


def gateway(nginx_factory, sims, balance="ai_gateway_balance least_tokens;",
            params=None, workers=1, location="", extra_http="", up_extra=""):
    http = upstream(sims, balance, params, extra=up_extra) + extra_http + """
    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
        proxy_next_upstream error timeout non_idempotent;
        proxy_connect_timeout 1s;
        location = /cachez { ai_gateway_cachez; }
        location / {
            proxy_pass http://pool;
            """ + location + """
        }
    }
"""
    return nginx_factory(http, workers=workers)


def ids(sims):
    return {"127.0.0.1:%d" % s.port: s.id for s in sims}


def peers(n, name="pool"):
    """/cachez's peers of an upstream, by address."""
    doc = requests.get(n.url + "/cachez", timeout=10).json()
    return {p["addr"]: p for p in doc["upstreams"][name]["peers"]}


def wait_drained(n, name="pool", timeout=15.0):
    """The peers once nothing is in flight any more (or the last seen)."""
    deadline = time.monotonic() + timeout
    while True:
        ps = peers(n, name)
        if all(p["inflight_requests"] == 0 and p["inflight_tokens"] == 0
               for p in ps.values()) or time.monotonic() > deadline:
            return ps
        time.sleep(0.05)


def assert_drained(n, name="pool", timeout=15.0):
    ps = wait_drained(n, name, timeout)
    for addr, p in ps.items():
        # an unsigned count gone below zero would read as 2^64 - k
        assert p["inflight_requests"] == 0 and p["inflight_tokens"] == 0, \
            "in flight on %s after the load ended: %s" % (addr, ps)
    return ps


class Stream:
    """A streamed chat through nginx: open until finish() or abort(); its
    response headers (X-Server-Id) are in as soon as it is open."""

    def __init__(self, n, body, path="/v1/chat/completions"):
        self.conn = http.client.HTTPConnection("127.0.0.1", n.port,
                                               timeout=60)
        self.conn.request("POST", path, json.dumps(body),
                          {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.server = self.resp.getheader("X-Server-Id")

    def finish(self):
        data = self.resp.read()
        self.conn.close()
        return data

    def abort(self):
        self.conn.sock.close()
        self.conn.close()


def post(n, body, path="/v1/chat/completions", **kw):
    kw.setdefault("timeout", 30)
    return requests.post(n.url + path, json=body, **kw)


# --- least_tokens -----------------------------------------------------------


@pytest.mark.parametrize("balance", ["ai_gateway_balance least_tokens;",
                                     "least_conn;"])
def test_long_generation_steers_new_requests_away(nginx_factory, sim_factory,
                                                  balance):
    """A long generation on one replica (600 tokens): short requests, each
    held 1.5 s by the replicas' time to first token, all go to the other
    two; least_conn, counting connections, sends the third and later ones
    to the long generation's replica too (the control that shows the test
    tells them apart)."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1500", "--tpot-ms", "10",
                        "--jitter", "0") for i in (1, 2, 3)]
    n = gateway(nginx_factory, sims, balance, workers=2)

    long = Stream(n, chat("long", max_tokens=600, stream=True))
    assert long.status == 200 and long.server

    shorts = []
    for i in range(8):
        shorts.append(Stream(n, chat("short %d" % i, stream=True)))
        time.sleep(0.05)

    servers = [s.server for s in shorts]
    for s in shorts:
        s.abort()
    long.abort()

    if balance.startswith("ai_gateway_balance"):
        assert long.server not in servers, (long.server, servers)
        assert len(set(servers)) == 2, servers
        assert_drained(n)
    else:
        assert long.server in servers, (long.server, servers)


def test_reported_queue_counts(nginx_factory, sim_factory):
    """A replica that other clients keep busy (one running, three queued,
    behind --slots 1) says so in its endpoint-load-metrics header: once an
    answer of it came through nginx, least_tokens counts its three waiting
    requests and sends the next ones elsewhere; /cachez shows the report."""
    sims = [sim_factory("sim-%d" % i, "--slots", "1", "--ttft-ms", "1",
                        "--tpot-ms", "10", "--jitter", "0") for i in (1, 2, 3)]
    busy = sims[0]
    n = gateway(nginx_factory, sims)

    # straight to the replica, not through nginx: 1 running, 3 waiting
    direct = []
    for i in range(4):
        c = http.client.HTTPConnection("127.0.0.1", busy.port, timeout=60)
        c.request("POST", "/v1/chat/completions",
                  json.dumps(chat("other %d" % i, max_tokens=2000,
                                  stream=True)),
                  {"Content-Type": "application/json"})
        c.getresponse()
        direct.append(c)
    try:
        h = busy.healthz()
        assert (h["running"], h["waiting"]) == (1, 3), h

        # /v1/models is no inference: every replica answers it at once,
        # report included; round robin reaches the busy one in three
        seen = set()
        for _ in range(3):
            r = requests.get(n.url + "/v1/models", timeout=10)
            assert r.status_code == 200
            assert "endpoint-load-metrics" not in r.headers
            seen.add(r.headers["X-Server-Id"])
        assert busy.id in seen, seen

        # within the report's second: nothing to the busy replica
        got = [post(n, chat("q %d" % i)).headers["X-Server-Id"]
               for i in range(6)]
        assert busy.id not in got, got

        report = peers(n)["127.0.0.1:%d" % busy.port]["report"]
        assert report is not None and report["waiting"] == 3, report
        assert report["running"] == 1, report
    finally:
        for c in direct:
            c.close()


def test_idle_pool_spreads_by_weight(nginx_factory, sim_factory):
    """Nothing in flight between requests: ties, broken as least_conn
    breaks them, round robin by weight (1:3)."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "0.2",
                        "--jitter", "0") for i in (1, 2)]
    n = gateway(nginx_factory, sims, params=["weight=1", "weight=3"])
    got = [post(n, chat("w %d" % i)).headers["X-Server-Id"]
           for i in range(40)]
    assert (got.count("sim-1"), got.count("sim-2")) == (10, 30), got


def test_weights_divide_the_load(nginx_factory, sim_factory):
    """Held requests of equal cost: a weight-3 replica takes three for
    every one of a weight-1 replica."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "3000", "--tpot-ms", "1",
                        "--jitter", "0") for i in (1, 2)]
    n = gateway(nginx_factory, sims, params=["weight=1", "weight=3"])
    held = [Stream(n, chat("same cost", stream=True)) for _ in range(8)]
    servers = [s.server for s in held]
    for s in held:
        s.abort()
    assert (servers.count("sim-1"), servers.count("sim-2")) == (2, 6), servers
    assert_drained(n)


# --- prefix -----------------------------------------------------------------


def test_prefix_keeps_a_tenant_on_one_replica(nginx_factory, sim_factory):
    """Each tenant's requests (a 3 KB system prompt, then turns of their
    own) go to one replica, the same every time; that replica's prefix
    cache answers them (ai-sim reads the prompt in the order the gateway
    hashes it), and the tenants spread over the replicas."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "0.2",
                        "--jitter", "0", "--prefix-cache-tokens", "65536")
            for i in (1, 2, 3)]
    # one worker: the client has a turn's answer a moment before nginx
    # frees its pick, and another worker picking the next turn in that
    # moment would see the home with one request in flight and nothing
    # elsewhere, over the bound (test_prefix_moves_over_the_bound)
    n = gateway(nginx_factory, sims, "ai_gateway_balance prefix;",
                extra_http="client_body_buffer_size 64k;")

    homes = {}
    for t in range(9):
        got = set()
        for turn in range(4):
            r = post(n, chat(PROMPT % t, "turn %d of %d" % (turn, t)))
            assert r.status_code == 200, r.text
            got.add(r.headers["X-Server-Id"])
        assert len(got) == 1, (t, got)
        homes[t] = got.pop()

    assert len(set(homes.values())) >= 2, homes

    # the same prompt with the members written the other way round, as
    # another client library writes it: the same replica
    body = json.dumps({"messages": [{"content": PROMPT % 0, "role": "system"},
                                    {"content": "x", "role": "user"}],
                       "max_tokens": 1})
    r = requests.post(n.url + "/v1/chat/completions", data=body, timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.headers["X-Server-Id"] == homes[0]

    # every replica that has tenants hit their prefixes on all turns but
    # the first: 3 of 4 turns of a 3 KB prompt, hundreds of tokens each
    for s in sims:
        h = s.healthz()
        mine = [t for t, home in homes.items() if home == s.id]
        if mine:
            assert h["prefix_hit_tokens"] >= len(mine) * 3 * 600, (s.id, h)


@pytest.mark.parametrize("bound", ["1.25", "100"])
def test_prefix_moves_over_the_bound(nginx_factory, sim_factory, bound):
    """One tenant sends long requests at once.  With bound=1.25 its home
    holds at most a quarter above its share: the second request goes to
    the next replica round the ring, always the same one, and the home
    takes more again as the others fill; bound=100 keeps them all home
    (the control).  Once they end, the tenant is home again."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "20",
                        "--jitter", "0") for i in (1, 2, 3)]
    n = gateway(nginx_factory, sims,
                "ai_gateway_balance prefix bound=%s;" % bound,
                extra_http="client_body_buffer_size 64k;")

    home = post(n, chat(PROMPT % "hot")).headers["X-Server-Id"]

    held = [Stream(n, chat(PROMPT % "hot", "q%d" % i, max_tokens=400,
                           stream=True)) for i in range(6)]
    servers = [s.server for s in held]
    for s in held:
        s.abort()

    if bound == "100":
        assert servers == [home] * 6, (home, servers)
    else:
        assert servers[0] == home, (home, servers)
        assert servers[1] != home, (home, servers)
        # the overflow has one place: the next replica round the ring
        assert len(set(servers)) >= 2 and servers.count(home) >= 2, servers
        assert servers.count(servers[1]) >= 2, servers

    assert_drained(n)
    assert post(n, chat(PROMPT % "hot")).headers["X-Server-Id"] == home


def test_prefix_weights_share_the_tenants(nginx_factory, sim_factory):
    """160 ring points a unit of weight: a weight-3 replica is home to
    about three times the tenants of a weight-1 replica."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "0.2",
                        "--jitter", "0") for i in (1, 2)]
    n = gateway(nginx_factory, sims, "ai_gateway_balance prefix bytes=64;",
                params=["weight=1", "weight=3"])
    got = [post(n, chat("tenant number %d says" % t)).headers["X-Server-Id"]
           for t in range(80)]
    assert 10 <= got.count("sim-1") <= 30, got.count("sim-1")


def test_prefix_without_a_prompt_goes_least_tokens(nginx_factory, sims):
    """A GET, and a POST that is not JSON, have no prompt to hash: they are
    balanced least_tokens (round robin on an idle pool)."""
    n = gateway(nginx_factory, sims, "ai_gateway_balance prefix;")
    got = {requests.get(n.url + "/v1/models", timeout=10)
           .headers["X-Server-Id"] for _ in range(6)}
    assert got == {"sim-1", "sim-2", "sim-3"}, got
    got = {requests.post(n.url + "/infer", data="prompt=x",
                         timeout=10).headers["X-Server-Id"] for _ in range(6)}
    assert got == {"sim-1", "sim-2", "sim-3"}, got


# --- nginx's peer semantics -------------------------------------------------


@pytest.mark.parametrize("method", ["least_tokens", "prefix"])
def test_backup_and_down(nginx_factory, sim_factory, method):
    """A `down` server is never picked; the backup takes nothing while a
    primary lives, and everything once none does."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "0.2",
                        "--jitter", "0") for i in (1, 2, 3)]
    n = gateway(nginx_factory, sims, "ai_gateway_balance %s;" % method,
                params=["", "down", "backup"])
    got = {post(n, chat("tenant %d" % i)).headers["X-Server-Id"]
           for i in range(12)}
    assert got == {"sim-1"}, got

    sims[0].stop()
    got = []
    for i in range(6):
        r = post(n, chat("tenant %d" % i))
        assert r.status_code == 200, r.text
        got.append(r.headers["X-Server-Id"])
    assert set(got) == {"sim-3"}, got

    ps = assert_drained(n)
    assert ps["127.0.0.1:%d" % sims[1].port]["picks"] == 0
    assert ps["127.0.0.1:%d" % sims[2].port]["backup"] is True


@pytest.mark.parametrize("method", ["least_tokens", "prefix"])
def test_max_fails_skips_a_failed_peer(nginx_factory, sim_factory, method):
    """A replica gone: the first request that meets it fails over (no
    error to the client) and marks it failed; for fail_timeout nothing is
    sent to it again: one connect error in the log for 20 requests."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "0.2",
                        "--jitter", "0") for i in (1, 2, 3)]
    n = gateway(nginx_factory, sims, "ai_gateway_balance %s;" % method,
                params=["max_fails=1 fail_timeout=30s"] * 3)
    dead = sims[0]
    dead.stop()
    # 20 tenants: prefix puts some on the dead replica's arc of the ring
    # whatever the ports (5 missed it about one run in eight)
    for i in range(20):
        r = post(n, chat("tenant %d" % i))
        assert r.status_code == 200, r.text
        assert r.headers["X-Server-Id"] != dead.id
    refused = re.findall(r"connect\(\) failed .*127\.0\.0\.1:%d" % dead.port,
                         n.log())
    assert len(refused) == 1, refused
    assert_drained(n)


@pytest.mark.parametrize("method", ["least_tokens", "prefix"])
def test_killed_replica_costs_no_5xx(nginx_factory, sim_factory, method):
    """A replica SIGKILLed with requests in flight on it: proxy_next_upstream
    sends each to another replica (a free with NGX_PEER_FAILED, a new
    pick); no client sees a 5xx, and the dead replica's figures in flight
    go back to zero."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "40", "--tpot-ms", "1",
                        "--jitter", "0") for i in (1, 2, 3)]
    n = gateway(nginx_factory, sims, "ai_gateway_balance %s;" % method,
                workers=2, extra_http="client_body_buffer_size 64k;")
    stop = threading.Event()
    codes, errors = [], []

    def client(t):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = post(n, chat(PROMPT % (t % 3), "q %d %d" % (t, i),
                                 max_tokens=8))
                codes.append(r.status_code)
            except requests.RequestException as e:
                errors.append(str(e))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    sims[0].proc.kill()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(20)
    assert len(codes) > 30, "too little traffic to mean anything"
    assert not errors, errors[:3]
    assert set(codes) == {200}, [c for c in codes if c != 200][:5]
    assert_drained(n)


# --- however a request ends ---------------------------------------------------


def test_client_aborts_release_their_tokens(nginx_factory, sim_factory):
    """Streams closed by their clients mid-answer (and while still waiting
    for their first token) take their tokens out of the figures at once."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "50",
                        "--jitter", "0") for i in (1, 2)]
    sims.append(sim_factory("sim-3", "--ttft-ms", "60000", "--jitter", "0"))
    n = gateway(nginx_factory, sims, workers=2)
    held = [Stream(n, chat("abort %d" % i, max_tokens=1000, stream=True))
            for i in range(9)]
    ps = peers(n)
    assert sum(p["inflight_requests"] for p in ps.values()) == 9, ps
    assert sum(p["inflight_tokens"] for p in ps.values()) >= 9 * 1000, ps
    for s in held:
        s.abort()
    assert_drained(n, timeout=10)


def test_reload_under_load_keeps_counts_sane(nginx_factory, sim_factory):
    """Three reloads while requests flow, the second one adding a replica
    and reordering the servers: old workers finish their requests into the
    same figures (peers are found again by upstream and address), so no
    count goes negative or stays behind; picks of unchanged peers carry
    over."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "20", "--tpot-ms", "5",
                        "--jitter", "0") for i in (1, 2, 3, 4)]
    n = gateway(nginx_factory, sims[:3], "ai_gateway_balance prefix;",
                workers=2, extra_http="client_body_buffer_size 64k;")
    stop = threading.Event()
    codes = []

    def client(t):
        i = 0
        while not stop.is_set():
            i += 1
            try:
                codes.append(post(n, chat(PROMPT % (i % 7), "q %d" % i,
                                          max_tokens=20)).status_code)
            except requests.RequestException as e:
                codes.append(str(e))

    threads = [threading.Thread(target=client, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    before = peers(n)
    n.reload()
    time.sleep(0.3)
    reordered = [sims[3], sims[1], sims[0], sims[2]]
    n.reload(n.http.replace(upstream(sims[:3], "ai_gateway_balance prefix;"),
                            upstream(reordered, "ai_gateway_balance prefix;")))
    time.sleep(0.3)
    n.reload()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(20)

    assert len(codes) > 30 and set(codes) == {200}, \
        [c for c in codes if c != 200][:5]
    after = assert_drained(n)
    assert set(after) == {"127.0.0.1:%d" % s.port for s in reordered}
    for addr, p in before.items():
        assert after[addr]["picks"] >= p["picks"], (addr, before, after)


def test_killed_worker_share_is_taken_off(nginx_factory, sim_factory):
    """A worker SIGKILLed with streams in flight never frees them; the
    worker the master starts in its place finds its column and takes its
    share off the peers; the streams of the other worker end normally:
    then every figure is zero again."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "30",
                        "--jitter", "0") for i in (1, 2, 3)]
    n = gateway(nginx_factory, sims, workers=2)
    n.skip_alerts.append(r"exited on signal 9")

    # connections land on either worker: enough of them reach both
    held = [Stream(n, chat("held %d" % i, max_tokens=100, stream=True))
            for i in range(16)]
    ps = peers(n)
    assert sum(p["inflight_requests"] for p in ps.values()) == 16, ps

    # the worker holding the most sockets holds streams (both workers
    # may accept, or one may take them all)
    def sockets(pid):
        fds = os.listdir("/proc/%d/fd" % pid)
        return sum(os.readlink("/proc/%d/fd/%s" % (pid, fd))
                   .startswith("socket:") for fd in fds)

    victim = max(n.worker_pids(), key=sockets)
    os.kill(victim, signal.SIGKILL)

    for s in held:
        try:
            s.finish()
        except (http.client.HTTPException, OSError):
            pass            # the dead worker's streams end mid-way

    assert_drained(n, timeout=15)
    assert "requests (" in n.log() and "of process %d taken off" % victim \
        in n.log(), n.log()[-2000:]


# --- load reports, /cachez ----------------------------------------------------


def test_load_report_is_read_and_not_passed_on(nginx_factory, sim_factory):
    """The replicas' endpoint-load-metrics header is read into /cachez and
    taken out of the answer, the cached answer included (the balancer's
    filter runs before the cache stores the headers)."""
    sims = [sim_factory("sim-%d" % i, "--ttft-ms", "1", "--tpot-ms", "0.2",
                        "--jitter", "0", "--slots", "4") for i in (1, 2)]
    n = gateway(nginx_factory, sims,
                extra_http="ai_gateway_cache_zone zone=main:1m;",
                location="ai_gateway_cache main;"
                         " ai_gateway_cache_methods POST;")
    body = chat("cached")
    first = post(n, body)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    assert "endpoint-load-metrics" not in first.headers
    second = post(n, body)
    assert second.headers["X-Cache"] == "HIT", second.headers
    assert "endpoint-load-metrics" not in second.headers

    ps = peers(n)
    answered = "127.0.0.1:%d" % [s for s in sims
                                 if s.id == first.headers["X-Server-Id"]][0].port
    rep = ps[answered]["report"]
    assert rep is not None, ps
    assert set(rep) == {"running", "waiting", "kv_cache_usage", "age_ms"}
    assert rep["waiting"] == 0 and rep["age_ms"] >= 0
    assert rep["kv_cache_usage"] == 0.0          # --slots 4, none running
    other = [a for a in ps if a != answered][0]
    assert ps[other]["report"] is None and ps[other]["picks"] == 0
    doc = requests.get(n.url + "/cachez", timeout=10).json()
    assert doc["upstreams"]["pool"]["balance"] == "least_tokens"
    assert set(ps[answered]) == {"addr", "backup", "picks",
                                 "inflight_requests", "inflight_tokens",
                                 "report"}

    prom = requests.get(n.url + "/cachez?format=prometheus", timeout=10).text
    assert ('ai_gateway_upstream_picks_total{upstream="pool",peer="%s"} 1'
            % answered) in prom, prom
    assert ('ai_gateway_upstream_peer_waiting{upstream="pool",peer="%s"} 0'
            % answered) in prom
    assert 'ai_gateway_upstream_peer_waiting{upstream="pool",peer="%s"}' \
        % other not in prom


def test_header_passes_where_not_balanced(nginx_factory, sim):
    """Where nginx's own balancing is used, the header is left alone."""
    n = nginx_factory("""
        server {
            listen 127.0.0.1:%%PORT%%;
            location / { proxy_pass http://127.0.0.1:""" + str(sim.port) + """; }
        }
    """)
    r = requests.get(n.url + "/v1/models", timeout=10)
    assert "endpoint-load-metrics" in r.headers


# --- ai_gateway_body and routing by model -----------------------------------


ROUTED = """
    map $ai_gateway_model $pool {
        default  pool_small;
        big      pool_big;
    }
    upstream pool_small {
        ai_gateway_balance least_tokens;
        server 127.0.0.1:%d;
    }
    upstream pool_big {
        ai_gateway_balance least_tokens;
        server 127.0.0.1:%d;
    }
    log_format routed '$ai_gateway_model $ai_gateway_tokens_estimate $pool';
    server {
        listen 127.0.0.1:%%%%PORT%%%%;
        location = /cachez { ai_gateway_cachez; }
        location / {
            ai_gateway_body %s;
            access_log %s routed;
            proxy_pass http://$pool;
        }
    }
"""


@pytest.mark.parametrize("body", ["on", "off"])
def test_route_by_model(nginx_factory, sims, body):
    """ai_gateway_body on: the body is read before proxy_pass picks its
    upstream, so `map $ai_gateway_model $pool` routes by the model the
    request names, and $ai_gateway_tokens_estimate is known.  Off (the
    default), the body is not read yet when the map is looked up: every
    request goes to the default pool (the control)."""
    n = nginx_factory("", start=False)
    log = os.path.join(n.dir, "logs", "routed.log")
    n.http = ROUTED % (sims[0].port, sims[1].port, body, log)
    n.write_conf()
    n.start()

    big = post(n, chat("x", model="big", max_tokens=7))
    small = post(n, chat("x", model="small"))
    other = requests.post(n.url + "/v1/chat/completions", timeout=10,
                          data=json.dumps(chat("x", model="big")),
                          headers={"Content-Type": "text/plain"})
    assert small.headers["X-Server-Id"] == "sim-1"
    assert other.headers["X-Server-Id"] == "sim-1", \
        "a body that does not say it is JSON is not read"
    if body == "on":
        assert big.headers["X-Server-Id"] == "sim-2"
        with open(log) as f:
            lines = f.read().splitlines()
        assert lines[0].startswith("big ") and lines[0].endswith(" pool_big")
        assert int(lines[0].split()[1]) >= 7, lines[0]
    else:
        assert big.headers["X-Server-Id"] == "sim-1"


def test_route_by_model_of_a_chunked_body(nginx_factory, sims):
    """A client that sends its JSON chunked (Transfer-Encoding: chunked, as
    HTTP libraries do for a body they stream) is routed by its model as
    one that sends a Content-Length: nginx ends a chunked body with an
    empty buffer of its own, which is not a body spooled to a file."""
    n = nginx_factory("", start=False)
    log = os.path.join(n.dir, "logs", "routed.log")
    n.http = ROUTED % (sims[0].port, sims[1].port, "on", log)
    n.write_conf()
    n.start()

    data = json.dumps(chat("x", model="big", max_tokens=7)).encode()
    pieces = iter([data[:20], data[20:]])
    r = requests.post(n.url + "/v1/chat/completions", data=pieces,
                      headers={"Content-Type": "application/json"},
                      timeout=30)
    assert r.status_code == 200
    assert r.headers["X-Server-Id"] == "sim-2", "the chunked body's model"
    # nginx logs the request once the answer went out: the client may
    # read the file first
    deadline = time.monotonic() + 10
    lines = []
    while not lines and time.monotonic() < deadline:
        with open(log) as f:
            lines = f.read().splitlines()
        time.sleep(0.02)
    assert lines and lines[0].startswith("big ") \
        and lines[0].endswith(" pool_big"), lines


# --- nginx -t -----------------------------------------------------------------


CONF_ERRORS = [
    ("server { listen 127.0.0.1:%%PORT%%; ai_gateway_balance least_tokens; }",
     '"ai_gateway_balance" directive is not allowed here'),
    ("upstream u { ai_gateway_balance least_tokens; ai_gateway_balance"
     " prefix; server 127.0.0.1:1; }",
     '"ai_gateway_balance" directive is duplicate'),
    ("upstream u { ai_gateway_balance round_robin; server 127.0.0.1:1; }",
     'invalid balancing method "round_robin" (least_tokens or prefix)'),
    ("upstream u { ai_gateway_balance least_tokens bytes=10;"
     " server 127.0.0.1:1; }",
     'invalid parameter "bytes=10": least_tokens takes none'),
    ("upstream u { ai_gateway_balance prefix bytes=0; server 127.0.0.1:1; }",
     'invalid bytes "bytes=0" (1 to 1m)'),
    ("upstream u { ai_gateway_balance prefix bytes=2m; server 127.0.0.1:1; }",
     'invalid bytes "bytes=2m" (1 to 1m)'),
    ("upstream u { ai_gateway_balance prefix bound=0.9; server 127.0.0.1:1; }",
     'invalid bound "bound=0.9" (a factor of the average load from 1 to 100,'
     ' such as 1.25)'),
    ("upstream u { ai_gateway_balance prefix bound=x; server 127.0.0.1:1; }",
     'invalid bound "bound=x"'),
    ("upstream u { ai_gateway_balance prefix size=1; server 127.0.0.1:1; }",
     'invalid parameter "size=1"'),
    ("upstream u { least_conn; ai_gateway_balance prefix;"
     " server 127.0.0.1:1; }",
     '"ai_gateway_balance" follows another load balancing method or'
     ' "keepalive" in upstream "u"'),
    ("upstream u { server 127.0.0.1:1; keepalive 8;"
     " ai_gateway_balance prefix; }",
     '"ai_gateway_balance" follows another load balancing method or'
     ' "keepalive" in upstream "u"'),
    ("upstream u { ai_gateway_balance least_tokens; hash $uri consistent;"
     " server 127.0.0.1:1; }",
     '"ai_gateway_balance" in upstream "u" is replaced by a load balancing'
     ' method set after it in'),
    ("upstream u { ai_gateway_balance prefix; ip_hash; server 127.0.0.1:1; }",
     '"ai_gateway_balance" in upstream "u" is replaced by a load balancing'
     ' method set after it in'),
]


@pytest.mark.parametrize("block,message", CONF_ERRORS)
def test_config_errors_name_the_directive(nginx_factory, block, message):
    n = nginx_factory(block, start=False)
    rc, out = n.test_config()
    assert rc != 0, block
    assert message in out, (block, out)
    assert re.search(r"nginx\.conf:\d+", out), out


def test_config_accepts_keepalive_and_zone_after(nginx_factory, sims):
    """keepalive and zone after ai_gateway_balance, as nginx documents for
    its own methods: accepted, and the balancer still balances (through
    keepalive's get and free)."""
    n = gateway(nginx_factory, sims,
                "ai_gateway_balance prefix bytes=512 bound=2;",
                up_extra="zone pool 64k; keepalive 8;")
    for i in range(6):
        assert post(n, chat("tenant %d" % i)).status_code == 200
    ps = assert_drained(n)
    assert sum(p["picks"] for p in ps.values()) == 6
