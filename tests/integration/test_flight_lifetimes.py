"""Lifetimes (issue 21, item 8): what a worker that dies held is given
back (its waiters' part in flights, the flights it led, the large
entries it was sending), a near copy never outlives a purge nor comes
before Redis took the entry."""

import http.client
import json
import os
import signal
import threading
import time

import socket

import pytest
import requests

from harness.proxy import HoldingProxy
from harness.redis import available
from harness.scripted import Answer, Scripted
from test_redis import wait_connected, wait_for
from test_single_flight import chat_body, raw_post, slow_sim, words


def cachez(n):
    return requests.get(n.url + "/cachez", timeout=5).json()


def flight(n):
    return cachez(n)["flight"]


def pinned(n, want=None, avoid=None, tries=200):
    """a keep-alive connection served by worker `want` (or not `avoid`),
    and that worker's pid.  The configurations that use it listen with
    `reuseport`: the kernel then spreads new connections over the workers'
    sockets by their addresses, where on one shared socket the worker that
    is first back in epoll_wait() can take nearly all of them (seen: 200
    connections in a row to one worker, on a loaded machine)."""
    for _ in range(tries):
        c = http.client.HTTPConnection("127.0.0.1", n.port, timeout=30)
        c.request("GET", "/pid")
        r = c.getresponse()
        r.read()
        pid = int(r.getheader("X-Pid"))
        if (want is None or pid == want) and pid != avoid:
            return c, pid
        c.close()
    raise AssertionError("no connection to the worker wanted")


def post(c, path, body):
    payload = json.dumps(body).encode()
    c.request("POST", path, body=payload,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), \
        r.read()


FLIGHTS = """
    ai_gateway_cache_zone zone=main:8m;
    upstream sim {{ server 127.0.0.1:{sim}; }}
    server {{
        listen 127.0.0.1:%%PORT%% backlog=512 reuseport;
        location = /cachez {{ ai_gateway_cachez; }}
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


def test_a_killed_worker_leaves_no_flight_behind(nginx_factory,
                                                 sim_factory):
    sim = slow_sim(sim_factory, 1500, 20)
    n = nginx_factory(FLIGHTS.format(sim=sim.port), workers=2)
    n.skip_alerts.append("exited on signal 9")
    # JSON answers, after 1.5 s: no headers out when the worker dies, so
    # the waiters of a flight it led go on their own
    body = chat_body("a worker dies", max_tokens=20, stream=False)

    # waiters in both workers, the leader in one of them
    first, victim = pinned(n)
    conns = [first] + [pinned(n, want=victim)[0] for _ in range(5)]
    conns += [pinned(n, avoid=victim)[0] for _ in range(6)]
    results = [None] * len(conns)

    def one(i):
        try:
            results[i] = post(conns[i], "/v1/chat/completions", body)
        except (OSError, http.client.HTTPException) as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,))
               for i in range(len(conns))]
    for t in threads:
        t.start()
        time.sleep(0.01)
    time.sleep(0.5)
    assert flight(n)["flights"] == 1

    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(20)
        assert not t.is_alive(), "a client hangs"

    # what the dead worker held is given back by the one that replaces it
    wait_for(lambda: flight(n)["flights"] == 0, 10,
             "the flights to be freed")
    f = flight(n)
    assert f["bytes"] == 0, f
    assert "released" in n.log(), "nothing recovered?"
    # those of the surviving worker all got an answer
    done = results[6:]
    assert all(isinstance(r, tuple) and r[0] == 200
               and json.loads(r[2])["choices"] for r in done), done


def test_waiters_go_on_when_their_leader_is_killed(nginx_factory,
                                                   sim_factory):
    sim = slow_sim(sim_factory, 2000, 10)
    n = nginx_factory(FLIGHTS.format(sim=sim.port), workers=2)
    n.skip_alerts.append("exited on signal 9")
    body = chat_body("the leader dies", max_tokens=4, stream=False)

    lead, leader_pid = pinned(n)
    waiters = [pinned(n, avoid=leader_pid) for _ in range(3)]

    # the leader's request, never read: its worker dies under it
    payload = json.dumps(body).encode()
    lead.request("POST", "/v1/chat/completions", body=payload,
                 headers={"Content-Type": "application/json"})
    time.sleep(0.3)

    out = [None] * len(waiters)

    def wait(i):
        try:
            out[i] = post(waiters[i][0], "/v1/chat/completions", body)
        except Exception as e:
            out[i] = (0, {"error": repr(e)}, b"")

    ts = [threading.Thread(target=wait, args=(i,))
          for i in range(len(waiters))]
    for x in ts:
        x.start()
    time.sleep(0.3)
    start = time.monotonic()
    os.kill(leader_pid, signal.SIGKILL)
    for x in ts:
        x.join(20)
        assert not x.is_alive()

    # they went upstream themselves, long before the 60 s lock timeout
    assert all(o[0] == 200 and json.loads(o[2])["choices"] for o in out), \
        out
    assert "MISS" in [o[1]["x-cache"] for o in out]
    assert time.monotonic() - start < 10
    assert sim.requests_seen() >= 2


# -- the large entries a worker was sending --------------------------------

LARGE = """
    ai_gateway_cache_zone zone=main:8m max_entry_size=1m;
    server {{
        # small socket buffers: a client that reads nothing keeps its
        # replay in the worker
        listen 127.0.0.1:%%PORT%% sndbuf=4k;
        location = /cachez {{ ai_gateway_cachez; }}
        location = /purge {{ ai_gateway_cache_purge; }}
        location /j/ {{
            ai_gateway_cache main;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
"""


def test_a_killed_worker_does_not_pin_the_entry_it_was_sending(
        nginx_factory):
    big = json.dumps({"output": "z" * 400000}).encode()
    up = Scripted().start()
    up.script = lambda path, b: Answer(
        200, {"Content-Type": "application/json"}, [(0, big)],
        length=len(big))
    try:
        n = nginx_factory(LARGE.format(up=up.port), workers=1)
        n.skip_alerts.append("exited on signal 9")
        assert requests.get(n.url + "/j/big").content == big
        z = cachez(n)["caches"]["main"]
        assert z["entries"] == 1 and z["bytes_used"] > len(big)

        # a HIT replay whose client reads nothing: it stays in the worker
        s = socket.create_connection(("127.0.0.1", n.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /j/big HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                  % n.port)
        time.sleep(0.5)
        worker = n.worker_pids()[0]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: n.worker_pids() and n.worker_pids()[0] != worker,
                 10, "a new worker")
        s.close()

        r = requests.post(n.url + "/purge", json={"cache": "main",
                                                  "all": True})
        assert r.json() == {"purged": 1}
        # its memory came back: no reference of the dead one keeps it
        z = cachez(n)["caches"]["main"]
        assert z["entries"] == 0 and z["bytes_used"] == 0, z
    finally:
        up.stop()


def test_an_entry_purged_while_sent_is_sent_whole_then_freed(
        nginx_factory):
    big = json.dumps({"output": "q" * 300000}).encode()
    up = Scripted().start()
    up.script = lambda path, b: Answer(
        200, {"Content-Type": "application/json"}, [(0, big)],
        length=len(big))
    try:
        n = nginx_factory(LARGE.format(up=up.port), workers=1)
        assert requests.get(n.url + "/j/q").content == big

        s = socket.create_connection(("127.0.0.1", n.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /j/q HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                  b"Connection: close\r\n\r\n" % n.port)
        time.sleep(0.3)
        # purged (and evicted, replaced...) while a client still reads it
        assert requests.post(n.url + "/purge",
                             json={"cache": "main", "all": True}).json() \
            == {"purged": 1}
        assert cachez(n)["caches"]["main"]["entries"] == 0
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, got = data.partition(b"\r\n\r\n")
        assert b"X-Cache: HIT" in head
        assert got == big, "the replay was cut"
        assert cachez(n)["caches"]["main"]["bytes_used"] == 0
    finally:
        up.stop()


# -- the near zone: after Redis took it, never after a purge --------------

NEAR = """
    ai_gateway_redis 127.0.0.1:{redis} timeout=5s;
    ai_gateway_cache_zone zone=near:1m max_entry_size=8k;
    server {{
        listen 127.0.0.1:%%PORT%% reuseport;
        location = /cachez {{ ai_gateway_cachez; }}
        location = /purge {{ ai_gateway_cache_purge; }}
        location = /pid {{ add_header X-Pid $pid; return 204; }}
        location /c/ {{
            ai_gateway_cache redis;
            ai_gateway_cache_ttl 60s;
            ai_gateway_cache_near near ttl={ttl};
            add_header X-Pid $pid;
            add_header X-Tier $ai_gateway_cache_tier always;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
        location /raw/ {{ return 200 "an answer"; }}
    }}
"""

needs_redis = pytest.mark.skipif(not available(),
                                 reason="redis-server is not installed")


@needs_redis
def test_the_near_copy_waits_for_redis_to_take_the_entry(nginx_factory,
                                                         redis_server):
    n = nginx_factory(NEAR.format(redis=redis_server.port, ttl="30s"))
    wait_connected(n)
    r = requests.get(n.url + "/c/r")
    assert r.headers["X-Cache"] == "MISS"
    redis = redis_server.client()
    # the entry goes to Redis after the answer (fire and forget)
    keys = wait_for(lambda: redis.keys("gw:v1:*"), 5, "the entry in Redis")
    assert len(keys) == 1

    # the key now holds what no hash write can replace (WRONGTYPE)
    assert requests.post(n.url + "/purge",
                         json={"cache": "redis", "all": True}).ok
    redis.set(keys[0], "not a hash")

    assert requests.get(n.url + "/c/r").headers["X-Cache"] == "MISS"
    time.sleep(0.5)                       # Redis refused it by now
    r = requests.get(n.url + "/c/r")
    assert (r.headers["X-Cache"], r.headers.get("X-Tier")) \
        != ("HIT", "near"), \
        "served near what Redis refused"
    assert cachez(n)["caches"]["near"]["entries"] == 0


@needs_redis
def test_a_purge_is_not_undone_by_a_lookup_answered_before_it(
        nginx_factory, redis_server):
    proxy = HoldingProxy(redis_server.port).start()
    try:
        n = nginx_factory(NEAR.format(redis=proxy.port, ttl="1s"),
                          workers=2)
        wait_connected(n)
        a, pid = pinned(n)
        b, _ = pinned(n, avoid=pid)

        a.request("GET", "/c/p")
        r = a.getresponse()
        r.read()
        assert r.getheader("X-Cache") == "MISS"
        time.sleep(1.5)                   # the near copy expired

        # worker a asks Redis; Redis's answer (the entry) comes late
        proxy.hold_next(b"HMGET", 1.5)
        got = {}

        def lookup():
            a.request("GET", "/c/p")
            r = a.getresponse()
            r.read()
            got["tier"] = (r.getheader("X-Cache"), r.getheader("X-Tier"))

        t = threading.Thread(target=lookup)
        t.start()
        time.sleep(0.4)
        # meanwhile worker b purges Redis and the near zone
        b.request("POST", "/purge", body=json.dumps(
                  {"cache": "redis", "all": True}),
                  headers={"Content-Type": "application/json"})
        r = b.getresponse()
        assert json.loads(r.read()) == {"purged": 1}
        t.join(10)
        assert proxy.held == 1
        assert got["tier"] == ("HIT", "redis")   # read before the purge

        # what Redis read before the purge is not kept near after it
        a.request("GET", "/c/p")
        r = a.getresponse()
        r.read()
        assert r.getheader("X-Cache") == "MISS", r.getheader("X-Tier")
    finally:
        proxy.stop()
