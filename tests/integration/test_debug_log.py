"""The module under nginx's debug logging (issue 19).

An operator who turns on `error_log ... debug` (Debian's nginx is built
--with-debug) to look into a problem must get the same gateway, only
noisier.  nginx's event debug lines read the fd of the connection an event's
data points to; a module timer with no data crashed every worker at start,
in a respawn loop, with the module merely loaded.  These tests run every
feature's path (limits in shm and Redis with leases, token zones, both
caches, the near cache, streams, coalesced waiters, stale, purge, /cachez,
money zones, the balancer, the GenAI metrics, Redis lost and found, a
reload) with debug logging on; the sanitizer run runs them under ASan,
where an event whose data is too small to hold a connection's fd would be
reported too.
"""

import concurrent.futures
import json
import re
import time

import pytest
import requests

from harness.nginx import Nginx

IDLE = """
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 200 "plain\\n"; }
    }
"""


@pytest.mark.parametrize("level", ["debug", "debug_event", "debug_http"])
def test_loaded_module_serves_under_debug_logging(nginx_factory, level):
    """Loaded, configured nowhere: answers as stock nginx, no worker dies,
    and no timer of the module runs at all."""
    n = nginx_factory(IDLE, workers=2, level=level)
    for _ in range(20):
        r = requests.get(n.url + "/", timeout=5)
        assert (r.status_code, r.text) == (200, "plain\n")
    log = n.log()
    assert "exited on signal" not in log, log[-3000:]
    if level != "debug_http":
        # the only timers are nginx's own, on connections: a debug line of
        # an event with the dummy ident (-1) would be one of ours
        assert "event timer add: -1:" not in log, \
            "the module arms a timer where nothing is configured"


FEATURES = """
    ai_gateway_redis 127.0.0.1:{redis} timeout=500ms;
    ai_gateway_metrics_models 4;
    ai_gateway_cache_zone zone=main:4m;
    ai_gateway_cache_zone zone=near:1m;
    ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m
                          rate=100r/s burst=1000;
    ai_gateway_limit_zone global zone=tpm:1m rate=100000t/m burst=100000;
    ai_gateway_limit_zone global zone=shared:1m rate=100r/s burst=1000
                          redis lease=50;
    ai_gateway_model_price sim input=0.15 output=0.60;
    ai_gateway_limit_zone global zone=spend:1m rate=100usd/d burst=100usd;

    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}

    upstream balanced {{
        ai_gateway_balance prefix bytes=256;
        server 127.0.0.1:1 down;
        server 127.0.0.1:{sim};
        keepalive 8;
    }}

    server {{
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}
        location = /purge {{ ai_gateway_cache_purge; }}

        location /v1/ {{
            ai_gateway_limit zone=per_client;
            ai_gateway_limit zone=tpm;
            ai_gateway_limit zone=spend;
            ai_gateway_limit_headers all;
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_key_json on;
            proxy_buffering off;
            proxy_pass http://sim;
        }}

        location /stale/ {{
            ai_gateway_limit zone=tpm;
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_use_stale error http_502;
            ai_gateway_cache_stale 60s;
            proxy_pass http://sim/v1/;
        }}

        location /b/ {{
            ai_gateway_body on;
            proxy_buffering off;
            proxy_pass http://balanced/;
        }}

        location /r/ {{
            ai_gateway_limit zone=shared;
            ai_gateway_cache redis;
            ai_gateway_cache_near near ttl=5s;
            ai_gateway_cache_methods POST;
            proxy_buffering off;
            proxy_pass http://sim/;
        }}
    }}
"""


def chat(n, path, prompt, stream=True):
    body = {"model": "sim", "stream": stream, "max_tokens": 8,
            "messages": [{"role": "user", "content": prompt}]}
    r = requests.post(n.url + path, json=body, timeout=10)
    assert r.status_code == 200, (path, r.status_code, r.text[:200])
    return r


def test_every_feature_under_debug_logging(nginx_factory, sim_factory,
                                           redis_server):
    sim = sim_factory("slow", "--ttft-ms", "150", "--tpot-ms", "2",
                      "--jitter", "0")
    http = FEATURES.format(redis=redis_server.port, sim=sim.port)
    n = nginx_factory(http, workers=2, level="debug")

    # shm cache and limits: MISS then HIT, JSON and streamed
    for stream in (False, True):
        first = chat(n, "/v1/chat/completions", "hello %s" % stream, stream)
        assert first.headers["X-Cache"] == "MISS"
        again = chat(n, "/v1/chat/completions", "hello %s" % stream, stream)
        assert again.headers["X-Cache"] == "HIT"
        assert again.content == first.content

    # coalesced waiters: identical slow prompts at once, across workers
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(
            lambda i: chat(n, "/v1/chat/completions", "together"), range(8)))
    states = sorted(a.headers["X-Cache"] for a in answers)
    assert "MISS" in states and "COALESCED" in states, states

    # Redis cache with a near zone, and a leased Redis limiter
    deadline = time.monotonic() + 10
    while chat(n, "/r/v1/chat/completions",
               "through redis").headers["X-Cache"] != "HIT":
        assert time.monotonic() < deadline, "no HIT through Redis"
        time.sleep(0.05)

    # purge in both stores (the shm purge runs in posted slices)
    for cache in ("main", "redis"):
        r = requests.post(n.url + "/purge",
                          json={"cache": cache, "all": True}, timeout=5)
        assert r.status_code == 200, r.text
        assert json.loads(r.text)["purged"] >= 1

    # the balancer: a prompt's prefix on the ring, streamed and not, a GET
    # without one (least_tokens), the replica's load report read
    for stream in (False, True):
        chat(n, "/b/v1/chat/completions", "balanced %s" % stream, stream)
    assert requests.get(n.url + "/b/v1/models", timeout=5).status_code == 200
    peers = requests.get(n.url + "/cachez",
                         timeout=5).json()["upstreams"]["balanced"]["peers"]
    assert [p["picks"] for p in peers] == [0, 3], peers
    assert peers[1]["report"] is not None, peers

    # Redis lost (commands time out, the breaker opens, reconnect timers
    # run) and found again; the gateway keeps answering from upstream
    redis_server.stop()
    for i in range(5):
        chat(n, "/r/v1/chat/completions", "redis is gone %d" % i)
    redis_server.start()

    # stale on error: an expired entry answers STALE once the upstream is
    # gone (sim stopped last: nothing below needs it)
    kept = chat(n, "/stale/chat/completions", "kept for stale", False)
    assert kept.headers["X-Cache"] == "MISS"
    time.sleep(1.5)
    sim.stop()
    stale = chat(n, "/stale/chat/completions", "kept for stale", False)
    assert stale.headers["X-Cache"] == "STALE"
    assert stale.content == kept.content

    for fmt in ("", "?format=prometheus"):
        assert requests.get(n.url + "/cachez" + fmt,
                            timeout=5).status_code == 200

    # the GenAI metrics (issue 23): every answer above went through their
    # header filter and log handler, the streams through the answer reader
    text = requests.get(n.url + "/cachez?format=prometheus", timeout=5).text
    for line in ('ai_gateway_requests_total{gen_ai_request_model="sim",'
                 'cache="coalesced"}',
                 'gen_ai_server_time_per_output_token_seconds_count{'
                 'gen_ai_request_model="sim",gen_ai_operation_name="chat"'):
        assert re.search("^" + re.escape(line) + r".* [1-9]", text, re.M), \
            line
    models = requests.get(n.url + "/cachez", timeout=5).json()["models"]
    assert models["sim"]["hits"] >= 2 and models["sim"]["ttft_ms"]

    n.reload()
    assert requests.get(n.url + "/cachez", timeout=5).status_code == 200
    assert requests.get(n.url + "/cachez", timeout=5).json()["models"] \
        == models

    log = n.log()
    assert "exited on signal" not in log
    # the module's own timers (lease sweep, Redis reconnects and command
    # timers, the purge slices) print the dummy ident, never garbage
    idents = set(re.findall(r"event timer add: (-?\d+):", log))
    assert "-1" in idents, "no module timer was armed"


def test_cluster_paths_under_debug_logging(nginx_factory):
    """Redis Cluster paths with debug logging (issue 21): a MOVED to an
    address the map does not know (parked, the map read again, followed),
    the node that left closed (its close timer), a MOVED the new map does
    not confirm (not followed), a purge that scans every master."""
    from harness.fake_redis import FakeRedis, array, cluster_slots, error

    owner = {}
    rogue = FakeRedis()

    def answer(node):
        def reply(args, conn):
            name = args[0].upper()
            if name == b"CLUSTER":
                return cluster_slots((0, 16383, owner["node"].port))
            if name == b"HMGET" and owner.get("moved"):
                return error("MOVED 1 127.0.0.1:%d" % owner["moved"])
            return node.default(args, conn)
        return reply

    nodes = []
    for _ in range(3):
        f = FakeRedis()
        f.answer = answer(f)
        nodes.append(f)
    seed, first, second = nodes
    owner["node"] = first
    try:
        n = nginx_factory("""
            ai_gateway_redis 127.0.0.1:%d cluster timeout=500ms;
            server {
                listen 127.0.0.1:%%%%PORT%%%%;
                location = /cachez { ai_gateway_cachez; }
                location = /purge { ai_gateway_cache_purge; }
                location /c/ {
                    ai_gateway_cache redis;
                    proxy_pass http://127.0.0.1:%%%%PORT%%%%/raw/;
                }
                location /raw/ { return 200 "answer"; }
            }
        """ % seed.port, level="debug")
        n.skip_alerts.append("not in the cluster's map")
        deadline = time.monotonic() + 10
        while first.accepted == 0:
            assert time.monotonic() < deadline, "the map never read"
            time.sleep(0.05)

        owner["node"] = second
        owner["moved"] = second.port
        assert requests.get(n.url + "/c/a", timeout=5).status_code == 200
        owner["moved"] = rogue.port
        assert requests.get(n.url + "/c/b", timeout=5).status_code == 200
        r = requests.post(n.url + "/purge",
                          json={"cache": "redis", "all": True}, timeout=5)
        assert r.status_code == 200, r.text
        assert requests.get(n.url + "/cachez", timeout=5).status_code == 200
        assert rogue.accepted == 0

        log = n.log()
        assert "exited on signal" not in log
        assert "left the map" in log
    finally:
        for f in nodes + [rogue]:
            f.stop()


WAKE = """
    ai_gateway_cache_zone zone=main:4m;
    upstream sim {{ server 127.0.0.1:{sim}; }}
    server {{
        listen 127.0.0.1:%%PORT%% reuseport;     # pinned(): see there
        location = /pid {{ add_header X-Pid $pid; return 204; }}
        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            add_header X-Pid $pid;
            proxy_buffering off;
            proxy_pass http://sim;
        }}
    }}
"""


def test_a_waiter_woken_from_another_worker_under_debug_logging(
        nginx_factory, sim_factory):
    """The leader in one worker, its waiters in the other: every event of
    the stream reaches them through the other worker's wake-up socket
    (issue 21 item 7), and the stream outlasts the once-a-second look at
    the leader, whose timer runs on the dummy ident."""
    from test_flight_lifetimes import pinned, post

    sim = sim_factory("slow", "--ttft-ms", "300", "--tpot-ms", "100",
                      "--jitter", "0")
    n = nginx_factory(WAKE.format(sim=sim.port), workers=2, level="debug")
    body = {"model": "sim", "stream": True, "max_tokens": 15,
            "messages": [{"role": "user", "content": "across workers"}]}

    lead, leader = pinned(n)
    waiters = [pinned(n, avoid=leader)[0] for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, lead, "/v1/chat/completions", body)
        time.sleep(0.1)
        others = [pool.submit(post, w, "/v1/chat/completions", body)
                  for w in waiters]
        first = first.result(20)
        others = [o.result(20) for o in others]

    assert first[1]["x-cache"] == "MISS"
    for status, headers, got in others:
        assert (status, headers["x-cache"]) == (200, "COALESCED")
        assert headers["x-pid"] != str(leader)
        assert got == first[2] and got.endswith(b"data: [DONE]\n\n")

    log = n.log()
    assert "exited on signal" not in log
    woken = re.findall(r"(\d+)#\d+: ai_gateway flight: woken for", log)
    assert woken and str(leader) not in woken, "no wake-up across workers"
    assert "event timer add: -1: 1000:" in log, "the leader was never looked at"
