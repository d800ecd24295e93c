"""Soak (issue 25): streams opened and cut at random for a couple of minutes
through a cached location, then everything given back.

Clients ask a small pool of prompts at random, so that leaders, COALESCED
waiters and HIT replays mix; some answers are larger than the zone's
max_entry_size (shared, not stored), some leave mid-stream, some read
slowly, some ask ai-sim to cut their stream (X-Sim-Cut); the zone is
purged now and then while entries are being sent, and one worker is
killed half way (its successor gives back what it held).  At the end, with
no request left: no flight and no answer bytes left in the flight zone, an
empty cache zone after a purge, workers' memory back near its level after
the warm-up, and (under `make soak`, with ASan) no sanitizer report.

It runs in `make soak` (AGW_SOAK=1, the module under AddressSanitizer,
called by .ci/run), not in `make test`: AGW_SOAK_SECONDS bounds it (120 by
default)."""

import os
import random
import signal
import socket
import threading
import time

import pytest
import requests

from harness.nginx import SANITIZE
from test_redis import wait_for

pytestmark = pytest.mark.skipif(not os.environ.get("AGW_SOAK"),
                                reason="the soak runs in make soak")

SECONDS = int(os.environ.get("AGW_SOAK_SECONDS", "120"))

HTTP = """
    ai_gateway_cache_zone zone=soak:8m max_entry_size=12k;
    ai_gateway_cache_lock_zone 8m;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 16; }}
    server {{
        listen 127.0.0.1:%%PORT%% backlog=1024 sndbuf=16k;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location = /cachez {{ ai_gateway_cachez; }}
        location = /purge {{ ai_gateway_cache_purge; }}
        location /v1/ {{
            ai_gateway_cache soak;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_ttl 20s;
            proxy_buffering off;
            proxy_pass http://sim;
        }}
        location /buffered/ {{
            ai_gateway_cache soak;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_lock_timeout 5s;
            proxy_pass http://sim/v1/;
        }}
        location /nolock/ {{
            ai_gateway_cache soak;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_lock off;
            proxy_buffering off;
            proxy_pass http://sim/v1/;
        }}
    }}
"""

PATHS = ["/v1/chat/completions"] * 4 + ["/buffered/chat/completions",
                                        "/nolock/chat/completions"]


def request(port, path, body, headers=b""):
    return (b"POST %s HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n%s"
            b"\r\n%s" % (path.encode(), len(body), headers, body))


def one(port, rng, counts):
    prompt = rng.randrange(24)
    # most answers fit an entry; one in six is larger than max_entry_size
    tokens = rng.choice([4, 8, 16, 30, 60, 120])
    stream = rng.random() < 0.85
    body = (b'{"model":"sim","stream":%s,"max_tokens":%d,"messages":'
            b'[{"role":"user","content":"soak prompt %d"}]}'
            % (b"true" if stream else b"false", tokens, prompt))
    action = rng.random()
    headers = b""
    if action < 0.05:
        headers = b"X-Sim-Cut: %d\r\n" % rng.randrange(0, tokens)
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        if action > 0.9:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.sendall(request(port, rng.choice(PATHS), body, headers))
        limit = rng.randrange(1, 3000) if 0.05 <= action < 0.2 else None
        got = 0
        while True:
            data = s.recv(4096)
            if not data:
                break
            got += len(data)
            if limit is not None and got >= limit:
                counts["aborted"] += 1      # the client leaves mid-answer
                return
            if action > 0.9:
                time.sleep(0.01)            # a slow reader
        counts["done"] += 1
    except OSError:
        counts["errors"] += 1
    finally:
        s.close()


def rss(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cachez(n):
    return requests.get(n.url + "/cachez", timeout=10).json()


def test_streams_cut_at_random_give_everything_back(nginx_factory,
                                                    sim_factory):
    sim = sim_factory("soak", "--ttft-ms", "30", "--tpot-ms", "3",
                      "--jitter", "0.2")
    n = nginx_factory(HTTP.format(sim=sim.port), workers=2)
    n.skip_alerts.append("exited on signal 9")

    counts = {"done": 0, "aborted": 0, "errors": 0}
    stop = threading.Event()

    def client(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            one(n.port, rng, counts)

    def settle():
        """no request left: flights all gone"""
        wait_for(lambda: cachez(n)["flight"]["flights"] == 0, 30,
                 "the flights to end")

    threads = [threading.Thread(target=client, args=(i,))
               for i in range(16)]
    for t in threads:
        t.start()

    # warm up: glibc's arenas and nginx's free lists reach their level
    time.sleep(min(20, SECONDS / 6))
    warm = rss(n.worker_pids())
    start = time.monotonic()
    killed = False
    purges = 0
    while time.monotonic() - start < SECONDS:
        time.sleep(2)
        r = requests.post(n.url + "/purge", json={"cache": "soak",
                                                  "all": True}, timeout=10)
        assert r.status_code == 200, r.text
        purges += 1
        if not killed and time.monotonic() - start > SECONDS / 2:
            # a worker dies with its waiters, leaders and replays
            os.kill(n.worker_pids()[0], signal.SIGKILL)
            killed = True
    stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a client hangs"

    settle()
    f = cachez(n)["flight"]
    assert f["flights"] == 0 and f["bytes"] == 0, f
    r = requests.post(n.url + "/purge", json={"cache": "soak", "all": True},
                      timeout=10)
    assert r.status_code == 200
    z = cachez(n)["caches"]["soak"]
    assert z["entries"] == 0 and z["bytes_used"] == 0, z
    assert z["coalesced"] > 0 and z["hits"] > 0 and z["too_large"] > 0, z

    # the worker killed half way was replaced: compare like with like
    end = rss(n.worker_pids())
    print("\nsoak %d s: %d answered, %d left mid-answer, %d errors, %d "
          "purges; workers' RssAnon %d KiB after the warm-up, %d KiB at "
          "the end; flight zone %s"
          % (SECONDS, counts["done"], counts["aborted"], counts["errors"],
             purges, warm, end, f))
    assert counts["done"] > 100, counts
    if not SANITIZE:
        # what the requests held went back (glibc keeps some of it)
        assert end < warm * 1.5 + 8192, (warm, end)
