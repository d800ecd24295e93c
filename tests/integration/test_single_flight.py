"""Single flight (SPEC 7.2, ai_gateway_cache_lock): identical prompts in
flight at once reach the upstream once, across workers, and every client
gets the whole answer (COALESCED), a stream's waiters event by event; a
failing first request, disconnects, the lock timeout and a reload never
leave a client hanging."""

import json
import socket
import statistics
import threading
import time

import requests

HTTP = """
    ai_gateway_cache_zone zone=main:8m;
    {redis}
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 16; }}
    server {{
        listen 127.0.0.1:%%PORT%% backlog=512;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location /v1/ {{
            ai_gateway_cache {store};
            ai_gateway_cache_methods POST;
            {extra}
            proxy_buffering off;
            proxy_pass http://sim;
        }}

        location = /infer {{
            ai_gateway_cache {store};
            ai_gateway_cache_methods POST;
            {extra}
            proxy_pass http://sim;
        }}
    }}
"""


def flight_nginx(nginx_factory, sim, extra="", workers=2, store="main",
                 redis=None):
    line = ("ai_gateway_redis 127.0.0.1:%d;" % redis.port) if redis else ""
    return nginx_factory(HTTP.format(sim=sim.port, extra=extra, store=store,
                                     redis=line), workers=workers)


def slow_sim(sim_factory, ttft=400, tpot=10, *more):
    return sim_factory("slow", "--ttft-ms", str(ttft), "--tpot-ms",
                       str(tpot), "--jitter", "0", *more)


def chat_body(prompt, max_tokens=16, stream=True):
    return {"model": "sim", "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}


def cachez(n):
    return requests.get(n.url + "/cachez", timeout=5).json()["caches"]["main"]


def raw_post(n, path, body, timeout=20, progress=None):
    """One request on a socket of its own: (status, headers, body bytes,
    arrival time of the first `data:` byte, of the end), the body read
    until the server ends it (Connection: close), so a cut shows as a
    short body and a hang as a timeout.  progress["bytes"], if given,
    says how much came so far."""
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", n.port), timeout=timeout)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n"
              b"\r\n%s" % (path.encode(), len(payload), payload))
    data, first, start = b"", None, time.monotonic()
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if progress is not None:
                progress["bytes"] = len(data)
            if first is None and b"data:" in data:
                first = time.monotonic()
    finally:
        s.close()
    end = time.monotonic()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1]) if lines and lines[0] else 0
    except (IndexError, ValueError):
        # what came, to tell a lost status line from a garbled one (seen
        # once under ASan: a first line whose second word was "unknown")
        raise AssertionError("no status line in %r" % data[:400])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        rest = dechunk(rest)
    return {"status": status, "headers": headers, "body": rest,
            "first": first, "end": end, "start": start}


def dechunk(data):
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        try:
            n = int(size, 16)
        except ValueError:
            return out + b"<cut>"
        if n == 0:
            return out
        if len(data) < n + 2:
            return out + data[:n] + b"<cut>"
        out += data[:n]
        data = data[n + 2:]
    return out + b"<cut>"


def burst(n, path, body, count, stagger=0.0):
    results = [None] * count
    failed = []

    def one(i):
        try:
            results[i] = raw_post(n, path, body)
        except BaseException as e:      # raised below, with its cause
            failed.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
        if stagger:
            time.sleep(stagger)
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a client hangs"
    if failed:
        raise failed[0]
    return results


def words(results):
    return sorted(r["headers"].get("x-cache", "") for r in results)


def test_json_burst_reaches_the_upstream_once(nginx_factory, sim_factory):
    sim = slow_sim(sim_factory)
    n = flight_nginx(nginx_factory, sim)

    body = {"prompt": "popular prompt", "max_tokens": 8}
    results = burst(n, "/infer", body, 50)

    assert sim.requests_seen() == 1
    assert all(r["status"] == 200 for r in results)
    assert len({r["body"] for r in results}) == 1, "one identical answer"
    assert json.loads(results[0]["body"])["usage"]
    got = words(results)
    assert got.count("MISS") == 1, got
    assert set(got) <= {"MISS", "COALESCED", "HIT"}, got
    assert cachez(n)["coalesced"] == got.count("COALESCED")
    assert got.count("COALESCED") >= 40, got
    prom = requests.get(n.url + "/cachez?format=prometheus", timeout=5).text
    assert ('ai_gateway_cache_coalesced_total{cache="main",backend="shm"} %d'
            % got.count("COALESCED")) in prom, prom


def test_stream_burst_is_fanned_out_event_by_event(nginx_factory,
                                                   sim_factory):
    # 40 tokens 20 ms apart: an 0.8 s stream after 300 ms to first token
    sim = slow_sim(sim_factory, 300, 20)
    n = flight_nginx(nginx_factory, sim)

    body = chat_body("popular stream", max_tokens=40)
    results = burst(n, "/v1/chat/completions", body, 50)

    assert sim.requests_seen() == 1
    assert all(r["status"] == 200 for r in results)
    bodies = {r["body"] for r in results}
    assert len(bodies) == 1, "every client gets the whole, identical stream"
    assert results[0]["body"].endswith(b"data: [DONE]\n\n")
    got = words(results)
    assert got.count("MISS") == 1, got
    assert got.count("COALESCED") >= 40, got
    assert all(r["headers"]["content-type"].startswith("text/event-stream")
               for r in results)

    # the waiters read each event as the first client does, not at the end
    leader = [r for r in results if r["headers"]["x-cache"] == "MISS"][0]
    waiters = [r for r in results if r["headers"]["x-cache"] == "COALESCED"]
    delays = [(w["first"] - leader["first"]) * 1000 for w in waiters]
    print("\nwaiters' first event behind the first client's: median %.1f ms,"
          " max %.1f ms (%d waiters, 2 workers)"
          % (statistics.median(delays), max(delays), len(delays)))
    stream_ms = (leader["end"] - leader["first"]) * 1000
    assert all(w["first"] < leader["end"] for w in waiters), \
        "waiters' first events come before the end of the stream"
    assert stream_ms > 500, stream_ms


def test_redis_store_coalesces_within_one_nginx(nginx_factory, sim_factory,
                                                redis_server):
    sim = slow_sim(sim_factory)
    n = flight_nginx(nginx_factory, sim, store="redis", redis=redis_server)
    results = burst(n, "/infer", {"prompt": "redis burst", "max_tokens": 8},
                    20)
    assert sim.requests_seen() == 1
    assert len({r["body"] for r in results}) == 1
    assert words(results).count("MISS") == 1


def test_lock_off_sends_every_copy_upstream(nginx_factory, sim_factory):
    sim = slow_sim(sim_factory, 300)
    n = flight_nginx(nginx_factory, sim, extra="ai_gateway_cache_lock off;")
    results = burst(n, "/infer", {"prompt": "no lock", "max_tokens": 4}, 5)
    assert sim.requests_seen() == 5
    assert words(results) == ["MISS"] * 5


def test_failed_leader_sends_waiters_upstream(nginx_factory, sim_factory):
    # every answer is a 500: the first is not stored, so each waiter asks
    sim = slow_sim(sim_factory, 300, 10, "--fail-rate", "1")
    n = flight_nginx(nginx_factory, sim)

    start = time.monotonic()
    results = burst(n, "/infer", {"prompt": "fails", "max_tokens": 4}, 10)
    assert time.monotonic() - start < 5
    assert all(r["status"] == 500 for r in results), \
        [r["status"] for r in results]
    assert sim.requests_seen() == 10
    assert words(results) == ["MISS"] * 10
    assert cachez(n)["coalesced"] == 0


def test_killed_upstream_leaves_nobody_hanging(nginx_factory, sim_factory):
    sim = slow_sim(sim_factory, 200, 50)
    n = flight_nginx(nginx_factory, sim)
    n.skip_alerts.append("upstream prematurely closed")

    body = chat_body("killed mid-stream", max_tokens=60)
    results = [None] * 6

    def one(i):
        results[i] = raw_post(n, "/v1/chat/completions", body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.6)          # in the middle of a 3 s stream
    sim.proc.kill()
    for t in threads:
        t.join(15)
        assert not t.is_alive(), "a client hangs after the upstream died"

    for r in results:
        assert not r["body"].endswith(b"data: [DONE]\n\n")
    assert cachez(n)["stores"] == 0


def leader_upstream(sim, timeout=10):
    """Wait until the first request reached the upstream: the ones sent
    after it are its waiters, however slow the machine (a fixed sleep let
    a waiter arrive first on a loaded one and lead instead)."""
    deadline = time.monotonic() + timeout
    while sim.requests_seen() < 1:
        assert time.monotonic() < deadline, "the leader never went upstream"
        time.sleep(0.01)


def test_waiter_disconnect_does_not_disturb_the_others(nginx_factory,
                                                       sim_factory):
    sim = slow_sim(sim_factory, 200, 20)
    n = flight_nginx(nginx_factory, sim)
    body = chat_body("a waiter leaves", max_tokens=30)
    payload = json.dumps(body).encode()

    leader = {}
    t = threading.Thread(target=lambda: leader.update(
        raw_post(n, "/v1/chat/completions", body)))
    t.start()
    leader_upstream(sim)

    # a waiter that goes away while waiting, one that goes away mid-stream
    for wait in (0.05, 0.4):
        s = socket.create_connection(("127.0.0.1", n.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
        time.sleep(wait)
        s.close()

    others = burst(n, "/v1/chat/completions", body, 5)
    t.join(15)
    assert leader["status"] == 200
    assert leader["body"].endswith(b"data: [DONE]\n\n")
    for r in others:
        assert r["body"] == leader["body"]
    assert sim.requests_seen() == 1


def test_leader_disconnect_sends_waiters_on(nginx_factory, sim_factory):
    sim = slow_sim(sim_factory, 500, 10)
    n = flight_nginx(nginx_factory, sim)
    body = chat_body("the first leaves", max_tokens=10)
    payload = json.dumps(body).encode()

    # the first client goes away before the upstream answers
    s = socket.create_connection(("127.0.0.1", n.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    leader_upstream(sim)
    waiters = []
    t = threading.Thread(target=lambda: waiters.extend(
        burst(n, "/v1/chat/completions", body, 5)))
    t.start()
    time.sleep(0.1)
    s.close()
    t.join(20)
    assert len(waiters) == 5
    for r in waiters:
        assert r["status"] == 200
        assert r["body"].endswith(b"data: [DONE]\n\n"), r
    assert len({r["body"] for r in waiters}) == 1
    # the first request read on for them, and stored the answer
    assert words(waiters) == ["COALESCED"] * 5
    assert sim.requests_seen() == 1
    assert raw_post(n, "/v1/chat/completions", body)["headers"]["x-cache"] \
        == "HIT"


def test_leader_gone_before_the_answer_sends_waiters_upstream(
        nginx_factory, sim_factory):
    # /infer answers JSON after 500 ms: the first client leaves before it
    sim = slow_sim(sim_factory, 500, 10)
    n = flight_nginx(nginx_factory, sim)
    body = {"prompt": "gone early", "max_tokens": 4}
    payload = json.dumps(body).encode()

    s = socket.create_connection(("127.0.0.1", n.port))
    s.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))
    leader_upstream(sim)
    waiters = []
    t = threading.Thread(target=lambda: waiters.extend(
        burst(n, "/infer", body, 3)))
    t.start()
    time.sleep(0.1)
    s.close()
    t.join(20)
    assert [r["status"] for r in waiters] == [200] * 3
    assert len({json.loads(r["body"])["output"] for r in waiters}) == 1
    # the upstream closed with the first client: the waiters went on
    # their own
    assert "MISS" in words(waiters)
    assert sim.requests_seen() >= 2


def test_lock_timeout_sends_waiters_upstream(nginx_factory, sim_factory):
    sim = slow_sim(sim_factory, 1000)
    n = flight_nginx(nginx_factory, sim,
                     extra="ai_gateway_cache_lock_timeout 200ms;")
    results = burst(n, "/infer", {"prompt": "slow one", "max_tokens": 4}, 4,
                    stagger=0.02)
    # the waiters left after 200 ms and went upstream themselves (had they
    # waited for the leader's answer, they would be COALESCED)
    assert sim.requests_seen() == 4
    assert words(results) == ["MISS"] * 4


def test_reload_during_a_coalesced_stream(nginx_factory, sim_factory):
    sim = slow_sim(sim_factory, 200, 30)
    n = flight_nginx(nginx_factory, sim)
    body = chat_body("reload in flight", max_tokens=50)

    results = []
    t = threading.Thread(target=lambda: results.extend(
        burst(n, "/v1/chat/completions", body, 8)))
    t.start()
    time.sleep(0.5)           # streaming, 1.7 s long
    n.reload()
    t.join(20)
    assert len(results) == 8
    assert len({r["body"] for r in results}) == 1
    assert results[0]["body"].endswith(b"data: [DONE]\n\n")
    assert sim.requests_seen() == 1

    hit = raw_post(n, "/v1/chat/completions", body)
    assert hit["headers"]["x-cache"] == "HIT"
    assert hit["body"] == results[0]["body"]


def test_a_stalled_coalesced_stream_is_cut_after_the_lock_timeout(
        nginx_factory, sim_factory):
    # one token 2.5 s after the first: longer than the 1.5 s lock timeout,
    # which bounds a waiter's wait for the leader's next byte
    sim = slow_sim(sim_factory, 20, 2500)
    n = flight_nginx(nginx_factory, sim,
                     extra="ai_gateway_cache_lock_timeout 1500ms;")
    results = burst(n, "/v1/chat/completions",
                    chat_body("stalls", max_tokens=2), 3, stagger=0.05)
    leader = [r for r in results if r["headers"]["x-cache"] == "MISS"]
    waiters = [r for r in results if r["headers"]["x-cache"] == "COALESCED"]
    assert len(leader) == 1 and len(waiters) == 2
    assert leader[0]["body"].endswith(b"data: [DONE]\n\n")
    for w in waiters:
        assert not w["body"].endswith(b"data: [DONE]\n\n")
        assert w["end"] - w["start"] < leader[0]["end"] - leader[0]["start"]
