"""Streams from the cache and coalesced (SPEC 7.2), a section of make
bench; stream_times() is the streamed chat the stream sections time."""

import re
import socket
import statistics
import threading
import time

from harness.nginx import Nginx
from harness.sim import Sim

HTTP = """
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_cache_zone zone=streams:64m;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 64; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {{
            ai_gateway_cache streams;
            ai_gateway_cache_methods POST;
            proxy_pass http://sim;
            proxy_buffering off;
        }}
    }}
"""


def stream_times(port, body, t0=None, path="/v1/chat/completions",
                 headers=""):
    """One streamed chat through the gateway: (ms to the first event, ms to
    the last, X-Cache, time of the first event), measured from t0
    (perf_counter) if given, else from the request sent.  body: the JSON,
    or a prompt for a 32-token chat."""
    if not body.startswith("{"):
        body = ('{"model":"sim-small","stream":true,"max_tokens":32,'
                '"messages":[{"role":"user","content":"%s"}]}' % body)
    body = body.encode()
    req = ("POST %s HTTP/1.1\r\nHost: b\r\n%s"
           "Content-Type: application/json\r\nContent-Length: %d\r\n"
           "Connection: close\r\n\r\n" % (path, headers, len(body))
           ).encode() + body
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter() if t0 is None else t0
    s.sendall(req)
    data, first = b"", None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if first is None and b"data: " in data:
            first = time.perf_counter()
    end = time.perf_counter()
    s.close()
    if first is None or b"[DONE]" not in data:
        raise SystemExit("bench: the stream through %s did not complete"
                         % path)
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    cache = re.search(r"(?im)^X-Cache: (\w+)", head)
    return ((first - start) * 1000, (end - start) * 1000,
            cache.group(1) if cache else "-", first)


def lines(requests, fanout):
    """Streams from the cache and coalesced (SPEC 7.2): a streamed HIT
    against the same stream live (ai-sim: first token 20 ms, then 1 ms a
    token), and N identical streamed prompts at once: the requests that
    reached ai-sim, and each waiter's first event behind the first
    client's."""
    sim = Sim(None, "sim-streams", "--ttft-ms", "20", "--tpot-ms", "1",
              "--jitter", "0").start()
    n = Nginx(HTTP.format(sim=sim.port), workers=2)
    try:
        n.start()
        live, hit = [], []
        for i in range(requests + 5):
            first, last, status, _ = stream_times(n.port, "live %d" % i)
            assert status == "MISS", status
            again = stream_times(n.port, "live %d" % i)
            if again[2] != "HIT":
                time.sleep(0.05)
                again = stream_times(n.port, "live %d" % i)
            if i >= 5 and again[2] == "HIT":
                live.append((first, last))
                hit.append(again[:2])

        rounds = []
        for r in range(3):
            before = sim.requests_seen()
            results = [None] * fanout
            t0 = time.perf_counter()

            def one(k):
                results[k] = stream_times(n.port, "fan-out %d" % r, t0)

            threads = [threading.Thread(target=one, args=(k,))
                       for k in range(fanout)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            upstream = sim.requests_seen() - before
            firsts = sorted(x[3] for x in results)
            delays = [(f - firsts[0]) * 1000 for f in firsts[1:]]
            statuses = [x[2] for x in results]
            rounds.append((upstream, statuses.count("COALESCED"),
                           statuses.count("HIT"), statuses.count("MISS"),
                           statistics.median(delays), max(delays)))
    finally:
        n.stop()
        n.cleanup()
        sim.stop()

    def med(v, k):
        return statistics.median(x[k] for x in v)

    print("streams: live first %.2f ms, HIT first %.2f ms; fan-out %s"
          % (med(live, 0), med(hit, 0), rounds[0]), flush=True)
    out = [
        "",
        "Streams (SPEC 7.2): %d streamed chats (32 tokens) each live (a "
        "MISS: ai-sim's first token after 20 ms, then 1 ms a token) and "
        "replayed from the shared-memory cache (a HIT), two workers:" %
        len(live),
        "",
        "| stream | first event, median ms | last event, median ms |",
        "| --- | ---: | ---: |",
        "| live (MISS) | %.2f | %.2f |" % (med(live, 0), med(live, 1)),
        "| replayed (HIT) | %.2f | %.2f |" % (med(hit, 0), med(hit, 1)),
        "",
        "Coalescing: %d identical streamed prompts sent at once, three "
        "rounds (a new prompt each): the requests that reached ai-sim, the "
        "answers' X-Cache, and each later client's first event behind the "
        "first client's:" % fanout,
        "",
        "| round | upstream requests | COALESCED | HIT | MISS "
        "| delay behind the first, median ms | max ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, (up, co, hi, mi, dm, dx) in enumerate(rounds, 1):
        out.append("| %d | %d | %d | %d | %d | %.2f | %.2f |"
                     % (i, up, co, hi, mi, dm, dx))
    return out

