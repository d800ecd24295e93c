"""ai-sim as a realistic inference server (SPEC 8.1, issue 22): decode
slots with a FIFO queue, prefill time per uncached prompt token, a prefix
cache of 16-token blocks, and the load reports a balancer or a scrape
reads (the ORCA endpoint-load-metrics header, /metrics with vLLM's names,
/healthz).

The machine is shared (2 cores): every timing assertion compares figures
an order of magnitude apart, with the margin said next to it, and leans
on lower bounds (a timer never fires early) rather than upper ones."""

import concurrent.futures
import json
import math
import re
import selectors
import shutil
import socket
import subprocess
import time

import pytest
import requests

from ai_sim_client import (assert_error, assert_json, raw_request,
                           raise_nofile, read_response, VALGRIND,
                           assert_valgrind_clean)
from harness.sim import BINARY, Sim

ORCA = re.compile(r"^TEXT named_metrics\.num_requests_running=(\d+), "
                  r"named_metrics\.num_requests_waiting=(\d+), "
                  r"named_metrics\.kv_cache_usage_perc=(\d\.\d{1,6})$")

# vLLM's vllm:time_to_first_token_seconds buckets (v1/metrics/loggers.py)
VLLM_TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25,
                     0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
                     160.0, 640.0, 2560.0]

# a tenant's long system prompt: 8,000 bytes are 2,000 tokens, 125 blocks
SYSTEM = "".join("You are tenant seven's careful assistant, rule %04d. "
                 % i for i in range(160))[:8000]
assert len(SYSTEM) == 8000


def load(r):
    """(running, waiting, kv usage) of an answer's endpoint-load-metrics."""
    v = r.headers.get("endpoint-load-metrics")
    assert v is not None, "no endpoint-load-metrics header: %r" \
        % dict(r.headers)
    m = ORCA.match(v)
    assert m, "endpoint-load-metrics is not vLLM's TEXT form: %r" % v
    return int(m.group(1)), int(m.group(2)), float(m.group(3))


def model_text(messages):
    """The prompt as ai-sim's prefix cache reads it (README): each
    message's role and content, each followed by a newline."""
    return "".join(m["role"] + "\n" + m["content"] + "\n" for m in messages)


def tokens(messages):
    return math.ceil(len(model_text(messages).encode()) / 4)


def tenant(turn):
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": turn}]


def timed_chat(sim, messages, stream, max_tokens=2, delay=0.0):
    """(seconds to the first token, the answer's load header) of one chat
    completion; streamed: the first data event, JSON: the whole answer
    (with --tpot-ms 0 that is the first token too)."""
    time.sleep(delay)
    t0 = time.monotonic()
    r = requests.post(sim.url + "/v1/chat/completions", stream=stream,
                      timeout=60, json={"messages": messages,
                                        "max_tokens": max_tokens,
                                        "stream": stream})
    assert r.status_code == 200, r.text
    if not stream:
        r.content
        return time.monotonic() - t0, load(r)
    ttft = None
    done = False
    for line in r.iter_lines():
        if line.startswith(b"data: ") and ttft is None:
            ttft = time.monotonic() - t0
        done = done or line == b"data: [DONE]"
    assert done, "the stream ended with [DONE]"
    return ttft, load(r)


def metrics(sim):
    """{(name, labels): value} of /metrics, after checking its form: each
    family has HELP and TYPE before its samples."""
    r = requests.get(sim.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers.get("Content-Type", "").startswith(
        "text/plain; version=0.0.4"), r.headers.get("Content-Type")
    out, typed = {}, {}
    for line in r.text.splitlines():
        m = re.match(r"^# (HELP|TYPE) (\S+) (.+)$", line)
        if m:
            if m.group(1) == "TYPE":
                typed[m.group(2)] = m.group(3)
            continue
        m = re.match(r'^([a-z_:]+)(\{[^}]*\})? (\S+)$', line)
        assert m, "not a sample line: %r" % line
        family = re.sub(r"_(bucket|sum|count)$", "", m.group(1)) \
            if m.group(1) not in typed else m.group(1)
        assert family in typed, "%s has no # TYPE before it" % m.group(1)
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out, typed, r.text


def value(samples, name, le=None):
    labels = '{model_name="sim-small"}' if le is None \
        else '{model_name="sim-small",le="%s"}' % le
    return samples[(name, labels)]


def wait_for(sim, cond, timeout=10.0):
    """The first /healthz for which cond(h) holds, polling."""
    deadline = time.monotonic() + timeout
    h = sim.healthz()
    while not cond(h):
        assert time.monotonic() < deadline, "healthz never matched: %r" % h
        time.sleep(0.02)
        h = sim.healthz()
    return h


def open_requests(sim, n, stream, prompt="x", max_tokens=2):
    """n raw chat requests on n connections, in this order, unread."""
    socks = []
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", sim.port), timeout=30)
        body = json.dumps({"messages": [{"role": "user",
                                         "content": "%s %d" % (prompt, i)}],
                           "max_tokens": max_tokens,
                           "stream": stream}).encode()
        c.sendall(raw_request("POST", "/v1/chat/completions", body,
                              ["Connection: close"]))
        socks.append(c)
    return socks


def read_all(socks, timeout):
    """{socket: everything it received until it closed}."""
    sel = selectors.DefaultSelector()
    data = {}
    for c in socks:
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        data[c] = b""
    left = len(socks)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            try:
                chunk = key.fileobj.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                data[key.fileobj] += chunk
            else:
                sel.unregister(key.fileobj)
                left -= 1
    sel.close()
    return data


# defaults


def test_defaults_unchanged(sim_factory):
    # Intent: without the new flags ai-sim is what it was: no queue (8
    # requests of 500 ms each at once all answer in about 500 ms; one at a
    # time would be 4 s), and a 2,000-token prompt costs no prefill time.
    # The load header and /healthz fields are there, with nothing waiting.
    s = sim_factory("sim-1", "--ttft-ms", "500", "--tpot-ms", "0",
                    "--jitter", "0")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        t0 = time.monotonic()
        runs = list(pool.map(
            lambda i: timed_chat(s, [{"role": "user", "content": "d%d" % i}],
                                 i % 2 == 0),
            range(8)))
        elapsed = time.monotonic() - t0
    assert all(t >= 0.45 for t, _ in runs), \
        "each first token after the 500 ms TTFT: %r" % runs
    # 2 s is four times the expected 0.5 s and half of the queued 4 s
    assert elapsed < 2.0, "8 concurrent requests took %.2f s" % elapsed
    assert all(w == 0 and u == 0 for _, (_, w, u) in runs), \
        "nothing ever waits without --slots, usage 0: %r" % runs
    assert all(1 <= r <= 8 for _, (r, _, _) in runs[::2]), \
        "a stream's header counts the requests in flight, itself " \
        "included: %r" % runs

    # 500 ms TTFT and nothing for the prompt's 2,000 tokens; with the
    # prefill flag it would be a second more
    t, _ = timed_chat(s, tenant("hello"), False)
    assert t < 1.2, "a long prompt took %.2f s without prefill" % t

    h = s.healthz()
    assert (h["running"], h["waiting"], h["prefix_hit_tokens"]) \
        == (0, 0, 0), "healthz load fields: %r" % h


# the queue


def test_queue_grows_ttft(sim_factory):
    # Intent: with --slots 1 a replica decodes one sequence at a time: 4
    # requests sent 100 ms apart each wait for the ones before, so the
    # k-th (0-based) sees its first token (k + 1) x 1 s after the first
    # was sent: the 4th's ~3.7 s against the 1st's ~1 s.  Streams and
    # JSON answers queue alike (they alternate here).
    s = sim_factory("sim-1", "--ttft-ms", "1000", "--tpot-ms", "0",
                    "--jitter", "0", "--slots", "1")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(timed_chat, s,
                               [{"role": "user", "content": "q%d" % k}],
                               k % 2 == 1, 2, 0.1 * k)
                   for k in range(4)]
        h = wait_for(s, lambda h: h["waiting"] == 3)
        assert h["running"] == 1 and h["inflight"] == 4, \
            "one decodes, three wait: %r" % h
        r = requests.get(s.url + "/v1/models", timeout=10)
        assert load(r) == (1, 3, 1.0), \
            "the header of any answer says so (usage: running / slots)"
        runs = [f.result() for f in futures]

    ttft = [t for t, _ in runs]
    for k, t in enumerate(ttft):
        # a timer never fires early: (k + 1) x 1 s minus the 100 ms steps
        # between the sends
        assert t >= 1.0 * (k + 1) - 0.1 * k - 0.05, \
            "request %d's first token after %.2f s: %r" % (k, t, ttft)
    # 2 s: the three seconds of the three before it, minus the sends'
    # 0.3 s, with 0.7 s to spare for a loaded machine
    assert ttft[3] - ttft[0] >= 2.0, \
        "the 4th waits for three others (~2.7 s more): %r" % ttft
    # the streams' headers came on arrival: 2nd and 4th saw their queue
    assert runs[1][1][1] >= 1 and runs[3][1][1] >= 1, \
        "a stream's header counts the queue it joined: %r" % runs

    h = s.wait_idle()
    assert (h["running"], h["waiting"]) == (0, 0), "drained: %r" % h


def test_client_leaving_frees_its_place(sim_factory):
    # Intent: a client that hangs up while queued gives its place back at
    # once, and one that hangs up while decoding gives its slot to the
    # next in line: D, queued behind A (running, 2 s) and B, C (queued),
    # answers about 2 s after A, B and C leave; were their places kept, it
    # would wait for A's 2 s and B's and C's 2 s each, 8 s in all.
    s = sim_factory("sim-1", "--ttft-ms", "2000", "--tpot-ms", "0",
                    "--jitter", "0", "--slots", "1")
    a, b = open_requests(s, 2, False, "ab")
    c, = open_requests(s, 1, True, "c")
    wait_for(s, lambda h: h["waiting"] == 2)
    d, = open_requests(s, 1, False, "d")
    wait_for(s, lambda h: h["waiting"] == 3)

    b.close()
    c.close()
    h = wait_for(s, lambda h: h["waiting"] == 1)
    assert h["running"] == 1 and h["inflight"] == 2, \
        "B and C left the queue: %r" % h

    t0 = time.monotonic()
    a.close()
    h = wait_for(s, lambda h: h["inflight"] == 1)
    assert (h["running"], h["waiting"]) == (1, 0), \
        "D took A's slot: %r" % h
    head, body = read_response(d, timeout=30)
    waited = time.monotonic() - t0
    d.close()
    assert head.startswith("HTTP/1.1 200"), head
    assert waited < 4.0, \
        "D answered %.2f s after A left (2 s expected, 4+ if kept)" % waited
    # libevent arms timers from the loop's cached clock, up to a few ms
    # behind the request's own start: 1999 is the same 2 s TTFT
    assert json.loads(body)["latency_ms"] >= 1950, "D's own 2 s TTFT"
    assert (lambda h: (h["running"], h["waiting"], h["inflight"]))(
        s.wait_idle()) == (0, 0, 0), "nothing left behind"


# prefill and the prefix cache


def test_prefix_hit_shrinks_ttft(sim_factory):
    # Intent: at 500 us a token, a tenant's 2,000-token system prompt
    # costs a second of prefill the first time; the second request with
    # the same system prompt finds its 125 blocks in the prefix cache and
    # prefills only its few new tokens: ~1 s against ~15 ms.  /metrics and
    # /healthz count the hit in tokens (125 x 16) and every prompt token
    # as queried.
    s = sim_factory("sim-1", "--ttft-ms", "10", "--tpot-ms", "0",
                    "--jitter", "0", "--prefill-us-per-token", "500",
                    "--prefix-cache-tokens", "100000")
    first, second = tenant("What is a token bucket?"), \
        tenant("And a prefix cache?")

    cold, _ = timed_chat(s, first, True)
    warm, (_, _, usage) = timed_chat(s, second, False)

    assert cold >= 0.01 + tokens(first) * 0.0005 - 0.02, \
        "the cold prompt prefilled %d tokens in %.3f s only" \
        % (tokens(first), cold)
    # 0.5 s is a third of the cold TTFT and 30 times the warm one
    assert warm < 0.5, "the warm prompt took %.3f s" % warm
    assert cold - warm >= 0.8, \
        "the hit saved about the prefill of 2,000 tokens (1 s): cold " \
        "%.3f s, warm %.3f s" % (cold, warm)

    samples, _, _ = metrics(s)
    hits = value(samples, "vllm:prefix_cache_hits_total")
    queries = value(samples, "vllm:prefix_cache_queries_total")
    assert hits == 125 * 16, "hit tokens: %r" % hits
    assert queries == tokens(first) + tokens(second), \
        "queried tokens: the prompts' text in 4-byte pieces, roles " \
        "included: %r" % queries
    h = s.healthz()
    assert h["prefix_hit_tokens"] == hits \
        and h["prefix_query_tokens"] == queries, \
        "/healthz agrees with /metrics: %r" % h

    # the 125 full blocks the two prompts share are cached; neither has a
    # 126th full block (8,037 and 8,033 bytes)
    assert usage == round(125 / (100000 // 16), 6), \
        "kv usage: cached blocks / capacity, %r" % usage

    # TTFT histogram: the cold one above 1 s, the warm one below 0.5 s
    assert value(samples, "vllm:time_to_first_token_seconds_count") == 2
    assert value(samples, "vllm:time_to_first_token_seconds_bucket",
                 "0.5") == 1
    assert value(samples, "vllm:time_to_first_token_seconds_bucket",
                 "2560") == 2
    assert cold + warm - 0.1 \
        <= value(samples, "vllm:time_to_first_token_seconds_sum") \
        <= cold + warm, "the histogram's sum is the two TTFTs"


def test_prefix_cache_model(sim_factory):
    # Intent: the cache works on the prompt as the model reads it and
    # matches whole chains: another system prompt, or the same one under
    # another role, hits nothing; /infer's prompt shares nothing with a
    # chat's; and an evicted prefix must be prefilled again.  A cache of
    # 2,048 tokens (128 blocks) holds one tenant's 125 blocks, not two.
    s = sim_factory("sim-1", "--ttft-ms", "1", "--tpot-ms", "0",
                    "--jitter", "0", "--prefill-us-per-token", "1",
                    "--prefix-cache-tokens", "2048")

    def hits():
        return s.healthz()["prefix_hit_tokens"]

    assert_json(requests.post(s.url + "/v1/chat/completions", timeout=10,
                              json={"messages": tenant("a")}), 200)
    assert hits() == 0
    other_role = [{"role": "developer", "content": SYSTEM},
                  {"role": "user", "content": "a"}]
    assert_json(requests.post(s.url + "/v1/chat/completions", timeout=10,
                              json={"messages": other_role}), 200)
    assert hits() == 0, "another role, another text: no hit"
    r = requests.post(s.url + "/infer", json={"prompt": SYSTEM}, timeout=10)
    assert_json(r, 200)
    assert hits() == 0, "/infer's prompt is not a chat's text"

    # the first tenant's blocks were evicted by the two others (LRU)
    assert_json(requests.post(s.url + "/v1/chat/completions", timeout=10,
                              json={"messages": tenant("b")}), 200)
    assert hits() == 0, "evicted, prefilled again"
    assert_json(requests.post(s.url + "/v1/chat/completions", timeout=10,
                              json={"messages": tenant("c")}), 200)
    assert hits() == 125 * 16, "and cached again"
    _, _, usage = load(requests.get(s.url + "/healthz", timeout=10))
    assert usage == 1.0, "the cache is full: %r" % usage


# the load reports


def test_load_header_on_every_answer(sim_factory):
    # Intent: every answer says how loaded the replica is, in vLLM's ORCA
    # text form: streams when they start (themselves included), JSON
    # answers when they are sent (themselves done), errors and /metrics
    # too; with --slots 2 and no cache, usage is running / slots.
    s = sim_factory("sim-1", "--ttft-ms", "1500", "--tpot-ms", "0",
                    "--jitter", "0", "--slots", "2")
    streams = []
    for i in range(3):
        r = requests.post(s.url + "/v1/chat/completions", stream=True,
                          timeout=30, json={"messages": [
                              {"role": "user", "content": "s%d" % i}],
                              "max_tokens": 2, "stream": True})
        streams.append(r)
    assert [load(r) for r in streams] \
        == [(1, 0, 0.5), (2, 0, 1.0), (2, 1, 1.0)], \
        "each stream's header counts the streams before it and itself"

    for r in (requests.get(s.url + "/healthz", timeout=10),
              requests.get(s.url + "/metrics", timeout=10),
              requests.get(s.url + "/nope", timeout=10),
              requests.post(s.url + "/infer", data=b"{bad", timeout=10)):
        assert load(r) == (2, 1, 1.0), "%s %d" % (r.url, r.status_code)

    for r in streams:
        r.content
    r = requests.post(s.url + "/infer", json={"prompt": "x"}, timeout=10)
    assert_json(r, 200)
    assert load(r) == (0, 0, 0.0), \
        "a JSON answer reports the load once it is done"

    h = s.healthz()
    assert (h["running"], h["waiting"]) == (0, 0), h


def test_metrics_promtool(sim_factory):
    # Intent: /metrics is Prometheus text a scrape written for vLLM reads
    # unchanged: vLLM's names, types and TTFT buckets, HELP and TYPE for
    # each family, cumulative buckets ending at +Inf == _count; promtool
    # parses it and finds nothing to lint but the colons of vLLM's own
    # names (promtool 2.42 flags every "vllm:" name as vLLM serves it).
    s = sim_factory("sim-1", "--ttft-ms", "20", "--tpot-ms", "0",
                    "--jitter", "0", "--slots", "4",
                    "--prefix-cache-tokens", "4096",
                    "--prefill-us-per-token", "10")
    for turn in ("a", "b", "c"):
        assert_json(requests.post(s.url + "/v1/chat/completions",
                                  json={"messages": tenant(turn)},
                                  timeout=10), 200)
    samples, typed, text = metrics(s)

    assert typed == {
        "vllm:num_requests_running": "gauge",
        "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge",
        "vllm:prefix_cache_queries_total": "counter",
        "vllm:prefix_cache_hits_total": "counter",
        "vllm:time_to_first_token_seconds": "histogram",
    }, "families: %r" % typed
    assert text.count("# HELP ") == len(typed), "one HELP per family"

    les = [k[1] for k in samples
           if k[0] == "vllm:time_to_first_token_seconds_bucket"]
    bounds = [float(re.search(r'le="([^"]+)"', le).group(1)) for le in les]
    assert bounds == VLLM_TTFT_BUCKETS + [float("inf")], \
        "vLLM's buckets in order: %r" % bounds
    counts = [samples[("vllm:time_to_first_token_seconds_bucket", le)]
              for le in les]
    assert counts == sorted(counts) and counts[-1] == 3 \
        == value(samples, "vllm:time_to_first_token_seconds_count"), \
        "cumulative buckets, +Inf == count == 3 requests: %r" % counts
    assert value(samples, "vllm:prefix_cache_hits_total") == 2 * 125 * 16
    assert value(samples, "vllm:num_requests_running") == 0
    assert 0 < value(samples, "vllm:kv_cache_usage_perc") <= 1

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (scripts/deps.sh test installs it)")
    p = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    out = (p.stdout + p.stderr).strip().splitlines()
    assert p.returncode in (0, 3), "promtool could not parse it: %s" % out
    others = [line for line in out
              if not line.endswith("metric names should not contain ':'")]
    assert others == [], "promtool found more than vLLM's colons: %s" % out
    assert len(out) == len(typed), "one colon note per family: %s" % out


# scale and the command line


def test_ten_thousand_connections(sim_factory):
    # Intent: 10,000 clients hold a stream open at once (another issue
    # benchmarks 10,000 streams through nginx against ai-sim): with
    # --slots 5000, 5,000 decode and 5,000 wait, all connected within the
    # first round's 4 s; every one is served in turn, none is lost in the
    # backlog or the queue, and the second round's TTFT (~8 s) includes
    # its wait.
    n = 10000
    if raise_nofile(n + 500) < n + 500:
        pytest.skip("cannot open %d sockets here" % n)

    s = sim_factory("sim-1", "--ttft-ms", "4000", "--tpot-ms", "50",
                    "--jitter", "0", "--slots", "5000")
    socks = []
    try:
        socks = open_requests(s, n, True, "c10k")
        h = wait_for(s, lambda h: h["requests"] == n, timeout=60)
        assert (h["inflight"], h["running"], h["waiting"]) \
            == (n, 5000, 5000), "all held at once: %r" % h
        data = read_all(socks, timeout=120)
    finally:
        for c in socks:
            c.close()

    done = sum(1 for v in data.values()
               if b"data: [DONE]" in v and v.endswith(b"\r\n0\r\n\r\n"))
    assert done == n, "%d of %d streams ended with [DONE]" % (done, n)
    samples, _, _ = metrics(s)
    assert value(samples, "vllm:time_to_first_token_seconds_count") == n
    # the first round's TTFT is 4 s, under 5 s; the second round's is
    # 8 s less the time its clients took to connect (under a second here,
    # three at most): above 5 s
    assert value(samples, "vllm:time_to_first_token_seconds_bucket",
                 "5") == 5000, "the second round's TTFT includes its wait"
    h = s.wait_idle(timeout=30)
    assert (h["inflight"], h["running"], h["waiting"]) == (0, 0, 0), h


@pytest.mark.parametrize("args", [
    ["--slots", "-1"], ["--slots", "x"], ["--slots", "1000001"],
    ["--slots", ""], ["--prefill-us-per-token", "-1"],
    ["--prefill-us-per-token", "fast"],
    ["--prefill-us-per-token", "1000001"],
    ["--prefix-cache-tokens", "15"], ["--prefix-cache-tokens", "-16"],
    ["--prefix-cache-tokens", "16777217"], ["--prefix-cache-tokens", "1k"],
])
def test_new_flags_bad_values(args):
    p = subprocess.run([BINARY, "--port", "0", "--id", "a", *args],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, "%r exits 2, got %d" % (args, p.returncode)
    assert "invalid " + args[0] in p.stderr and "usage:" in p.stderr, \
        p.stderr


def test_new_flags_limits(sim_factory):
    # the largest values start (a cache of 16M tokens is 1M blocks)
    s = sim_factory("sim-1", "--slots", "1000000", "--prefill-us-per-token",
                    "0.5", "--prefix-cache-tokens", "16777216",
                    "--ttft-ms", "1", "--tpot-ms", "0", "--jitter", "0")
    assert_json(requests.post(s.url + "/infer", json={"prompt": "x"},
                              timeout=10), 200)
    assert_error(requests.post(s.url + "/infer", json={"prompt": 1},
                               timeout=10), 400)


@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="valgrind is not installed")
def test_valgrind_queue_and_cache():
    # Intent: the queue, the prefix cache and the metrics leak nothing:
    # requests served through one slot, clients leaving while queued and
    # while decoding, prefix hits and evictions, and SIGTERM with a queue.
    s = Sim(None, "sim-vg", "--ttft-ms", "30", "--tpot-ms", "2",
            "--jitter", "0.2", "--slots", "1", "--prefill-us-per-token",
            "20", "--prefix-cache-tokens", "256", wrapper=VALGRIND).start()
    socks = []
    try:
        # 16 blocks: the first 16 of a tenant's 125 are cached (then hit),
        # /infer's prompt evicts them
        for turn in ("a", "b", "c"):
            r = requests.post(s.url + "/v1/chat/completions", timeout=60,
                              json={"messages": tenant(turn),
                                    "stream": turn == "b"})
            assert r.status_code == 200, r.text
        assert s.healthz()["prefix_hit_tokens"] == 2 * 16 * 16
        r = requests.post(s.url + "/infer", json={"prompt": SYSTEM},
                          timeout=60)
        assert r.status_code == 200, r.text
        assert requests.get(s.url + "/metrics", timeout=60).status_code \
            == 200

        # queued and decoding clients leaving
        gone = open_requests(s, 3, False, "gone", max_tokens=4000) \
            + open_requests(s, 2, True, "gone-stream", max_tokens=4000)
        wait_for(s, lambda h: h["inflight"] == 5, timeout=60)
        for c in gone:
            c.close()
        wait_for(s, lambda h: h["inflight"] == 0, timeout=60)

        # left in flight at SIGTERM: one decoding, three queued
        socks = open_requests(s, 2, False, "kept", max_tokens=4000) \
            + open_requests(s, 2, True, "kept-stream", max_tokens=4000)
        h = wait_for(s, lambda h: h["waiting"] == 3, timeout=60)
        assert h["running"] == 1, h
    finally:
        rc = s.stop()
        for c in socks:
            c.close()

    assert_valgrind_clean(rc, s.output())
