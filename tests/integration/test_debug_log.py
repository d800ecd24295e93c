"""The module under nginx's debug logging (issue 19).

An operator who turns on `error_log ... debug` (Debian's nginx is built
--with-debug) to look into a problem must get the same gateway, only
noisier.  nginx's event debug lines read the fd of the connection an event's
data points to; a module timer with no data crashed every worker at start,
in a respawn loop, with the module merely loaded.  These tests run every
feature's path (limits in shm and Redis with leases, token zones, both
caches, the near cache, streams, coalesced waiters, stale, purge, /cachez,
the GenAI metrics, Redis lost and found, a reload) with debug logging on;
the sanitizer run runs them under ASan, where an event whose data is too
small to hold a connection's fd would be reported too.
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

    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}

    server {{
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}
        location = /purge {{ ai_gateway_cache_purge; }}

        location /v1/ {{
            ai_gateway_limit zone=per_client;
            ai_gateway_limit zone=tpm;
            ai_gateway_limit_headers all;
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_key_json on;
            proxy_buffering off;
            proxy_pass http://sim;
        }}

        location /stale/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_use_stale error http_502;
            ai_gateway_cache_stale 60s;
            proxy_pass http://sim/v1/;
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
