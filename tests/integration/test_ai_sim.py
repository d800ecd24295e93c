"""ai-sim on its own: every route, every bad input, determinism, the
latency model, streaming, concurrency, fault injection and a clean,
leak-free shutdown (SPEC section 4)."""

import json
import re
import resource
import selectors
import shutil
import socket
import subprocess
import time

import pytest
import requests

from harness.sim import BINARY, Sim

FAST = ("--ttft-ms", "1", "--tpot-ms", "0.2", "--jitter", "0")
ERROR_KEYS = {"message", "type", "param", "code"}


def post(sim, path, body, **kw):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(sim.url + path, data=data, timeout=10,
                         headers={"Content-Type": "application/json"}, **kw)


def infer(sim, prompt, max_tokens=None, **extra):
    body = {"prompt": prompt}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return post(sim, "/infer", body)


def chat(sim, contents, max_tokens=8, **extra):
    body = {"messages": [{"role": "user", "content": c} for c in contents],
            "max_tokens": max_tokens}
    body.update(extra)
    return post(sim, "/v1/chat/completions", body)


def assert_json(r, status, sim_id="sim-1"):
    assert r.status_code == status, \
        "expected %d, got %d: %s" % (status, r.status_code, r.text)
    assert r.headers.get("Content-Type") == "application/json", \
        "Content-Type is %r" % r.headers.get("Content-Type")
    assert r.headers.get("X-Server-Id") == sim_id, \
        "X-Server-Id is %r" % r.headers.get("X-Server-Id")
    return r.json()


def assert_error(r, status, etype="invalid_request_error", words=None):
    body = assert_json(r, status)
    assert set(body) == {"error"}, "error body has extra keys: %r" % body
    assert set(body["error"]) == ERROR_KEYS, \
        "error keys are %r" % sorted(body["error"])
    assert body["error"]["type"] == etype, "error type: %r" % body
    assert body["error"]["param"] is None and body["error"]["code"] is None, \
        "param and code must be null: %r" % body
    assert isinstance(body["error"]["message"], str) \
        and body["error"]["message"], "empty error message: %r" % body
    if words:
        assert words in body["error"]["message"], \
            "message %r lacks %r" % (body["error"]["message"], words)
    return body["error"]


def raw_request(method, path, body=b"", headers=()):
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
    for h in headers:
        head += h + "\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
        head += "Content-Length: %d\r\n" % len(body)
    return head.encode() + b"\r\n" + body


def read_response(sock, timeout=10.0):
    """One HTTP/1.1 response with a Content-Length from a raw socket."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the headers: %r" % buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(rest) < n:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    return head.decode(), rest[:n]


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# /healthz and /v1/models


def test_healthz(sim):
    r = requests.get(sim.url + "/healthz", timeout=5)
    body = assert_json(r, 200)
    assert body["ok"] is True and body["service"] == "ai-sim", \
        "healthz identity: %r" % body
    assert body["id"] == "sim-1", "healthz id: %r" % body
    for k in ("uptime_ms", "inflight", "requests"):
        assert isinstance(body[k], int) and body[k] >= 0, \
            "healthz %s: %r" % (k, body)
    assert "X-Usage-Total-Tokens" not in r.headers, \
        "healthz is not an inference answer"

    r = requests.head(sim.url + "/healthz", timeout=5)
    assert r.status_code == 200 and r.content == b"", "HEAD /healthz: %r" % r
    assert r.headers.get("X-Server-Id") == "sim-1", "HEAD X-Server-Id"


def test_models(sim):
    body = assert_json(requests.get(sim.url + "/v1/models", timeout=5), 200)
    assert body == {"object": "list", "data": [{
        "id": "sim-small", "object": "model", "created": 1700000000,
        "owned_by": "ai-sim"}]}, "model list: %r" % body


def test_healthz_counts_requests_but_not_itself(sim):
    before = sim.healthz()["requests"]
    for _ in range(3):
        sim.healthz()
    assert sim.healthz()["requests"] == before, \
        "/healthz must not count itself"

    infer(sim, "count me", 1)
    requests.get(sim.url + "/nowhere", timeout=5)
    requests.delete(sim.url + "/infer", timeout=5)
    requests.get(sim.url + "/v1/models", timeout=5)
    after = sim.healthz()
    assert after["requests"] == before + 4, \
        "4 requests (ok, 404, 405, models) sent: %r" % after
    assert after["inflight"] == 0, "nothing left in flight: %r" % after


# /infer


def test_infer_shape(sim):
    r = infer(sim, "the quick  brown\tfox\n", 5)
    body = assert_json(r, 200)
    assert set(body) == {"id", "server_id", "model", "output", "usage",
                         "latency_ms"}, "infer keys: %r" % sorted(body)
    assert re.fullmatch(r"infer-[0-9a-f]{16}", body["id"]), \
        "id format: %r" % body["id"]
    assert body["server_id"] == "sim-1" and body["model"] == "sim-small", \
        "server_id/model: %r" % body
    words = body["output"].split(" ")
    assert len(words) == 5 and all(words), \
        "5 words with single spaces: %r" % body["output"]
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 5,
                             "total_tokens": 9}, "usage: %r" % body["usage"]
    assert r.headers.get("X-Usage-Total-Tokens") == "9", \
        "X-Usage-Total-Tokens: %r" % r.headers.get("X-Usage-Total-Tokens")
    assert isinstance(body["latency_ms"], int) and body["latency_ms"] >= 0, \
        "latency_ms: %r" % body["latency_ms"]


def test_infer_defaults_and_token_counts(sim):
    body = assert_json(infer(sim, "one"), 200)
    assert body["usage"]["completion_tokens"] == 16, \
        "max_tokens defaults to 16: %r" % body["usage"]
    assert len(body["output"].split(" ")) == 16, "16 words by default"

    body = assert_json(infer(sim, "", 1), 200)
    assert body["usage"]["prompt_tokens"] == 0, "empty prompt costs 0"

    body = assert_json(infer(sim, " \t ", 1), 200)
    assert body["usage"]["prompt_tokens"] == 1, \
        "a non-empty blank prompt costs at least 1"

    body = assert_json(infer(sim, "x", 4096, model="sim-large"), 200)
    assert body["model"] == "sim-large", "model is echoed: %r" % body["model"]
    assert len(body["output"].split(" ")) == 4096, "max_tokens 4096 is valid"

    body = assert_json(post(sim, "/infer", {"prompt": "x", "max_tokens": None,
                                            "model": None}), 200)
    assert body["usage"]["completion_tokens"] == 16 \
        and body["model"] == "sim-small", "null means default: %r" % body


def test_infer_deterministic_across_runs_and_replicas(sim_factory):
    a = sim_factory("sim-a", *FAST)
    b = sim_factory("sim-b", *FAST, "--seed", "7")

    first = assert_json(infer(a, "same prompt", 12), 200, "sim-a")
    again = assert_json(infer(a, "same prompt", 12), 200, "sim-a")
    other = assert_json(infer(b, "same prompt", 12), 200, "sim-b")

    assert first["output"] == again["output"] == other["output"], \
        "same request, same output everywhere: %r %r %r" \
        % (first["output"], again["output"], other["output"])
    assert first["id"] == other["id"], "id is a hash of the request"
    assert other["server_id"] == "sim-b", "server_id names the replica"

    diff = assert_json(infer(a, "another prompt", 12), 200, "sim-a")
    assert diff["output"] != first["output"], \
        "a different prompt gives a different output"
    model = assert_json(infer(a, "same prompt", 12, model="m2"), 200,
                        "sim-a")
    assert model["output"] != first["output"], \
        "the model is part of the hash"


# /slow and the latency model


def test_latency_model(sim_factory):
    # Intent: a 100 ms time to first token is served by a timer, so the
    # answer cannot come back much sooner (10 ms slack for clock rounding).
    s = sim_factory("sim-1", "--ttft-ms", "100", "--tpot-ms", "0",
                    "--jitter", "0")
    t0 = time.monotonic()
    body = assert_json(infer(s, "wait for it", 3), 200)
    elapsed = (time.monotonic() - t0) * 1000
    assert elapsed >= 90, "answered after %.1f ms, ttft is 100" % elapsed
    assert body["latency_ms"] >= 90, "latency_ms %r" % body["latency_ms"]

    # Intent: tpot adds per completion token: 10 tokens x 10 ms.
    s2 = sim_factory("sim-2", "--ttft-ms", "0", "--tpot-ms", "10",
                     "--jitter", "0")
    t0 = time.monotonic()
    assert_json(infer(s2, "tokens", 10), 200, "sim-2")
    elapsed = (time.monotonic() - t0) * 1000
    assert elapsed >= 90, "10 tokens at 10 ms took only %.1f ms" % elapsed


def test_slow(sim):
    # Intent: /slow is a fixed 120 ms timer whatever the query string says.
    t0 = time.monotonic()
    r = requests.get(sim.url + "/slow?x=1&delay=0", timeout=5)
    elapsed = (time.monotonic() - t0) * 1000
    body = assert_json(r, 200)
    assert elapsed >= 100, "/slow answered after %.1f ms" % elapsed
    assert body == {"ok": True, "server_id": "sim-1", "path": "/slow",
                    "delay_ms": 120}, "slow body: %r" % body

    r = requests.head(sim.url + "/slow", timeout=5)
    assert r.status_code == 200 and r.content == b"", "HEAD /slow: %r" % r
    assert r.headers.get("X-Server-Id") == "sim-1", "HEAD /slow X-Server-Id"


def test_many_requests_in_flight(sim_factory):
    # Intent: 1000 requests, each held 500 ms by a timer, run concurrently
    # on one event loop: the batch takes about 500 ms, nowhere near
    # 1000 x 500 ms, and /healthz sees them in flight meanwhile.
    n = 1000
    if raise_nofile(n + 100) < n + 100:
        pytest.skip("cannot open %d sockets" % n)

    s = sim_factory("sim-1", "--ttft-ms", "500", "--tpot-ms", "0",
                    "--jitter", "0")
    t0 = time.monotonic()
    socks = []
    try:
        for i in range(n):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            body = json.dumps({"prompt": "p%d" % i, "max_tokens": 2}).encode()
            c.sendall(raw_request("POST", "/infer", body,
                                  ["Connection: close"]))
            socks.append(c)

        inflight = s.healthz()["inflight"]
        assert inflight >= n // 2, \
            "expected most of %d requests in flight, saw %d" % (n, inflight)

        sel = selectors.DefaultSelector()
        data = {}
        for c in socks:
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            data[c] = b""
        open_ = n
        deadline = time.monotonic() + 20
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                chunk = key.fileobj.recv(65536)
                if chunk:
                    data[key.fileobj] += chunk
                else:
                    sel.unregister(key.fileobj)
                    open_ -= 1
        sel.close()
        elapsed = time.monotonic() - t0
    finally:
        for c in socks:
            c.close()

    ok = sum(1 for v in data.values() if v.startswith(b"HTTP/1.1 200 "))
    assert ok == n, "%d of %d requests answered 200" % (ok, n)
    assert elapsed < 10, "1000 x 500 ms requests took %.1f s" % elapsed
    assert s.wait_idle()["inflight"] == 0, "all requests left flight"


# /v1/chat/completions


def test_chat_shape(sim):
    r = chat(sim, ["hello there", "how are you"], 6)
    body = assert_json(r, 200)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{16}", body["id"]), \
        "id format: %r" % body["id"]
    assert body["object"] == "chat.completion", "object: %r" % body
    assert abs(body["created"] - time.time()) < 60, "created is unix time"
    assert body["model"] == "sim-small" and body["server_id"] == "sim-1", \
        "model/server_id: %r" % body
    assert len(body["choices"]) == 1, "one choice: %r" % body["choices"]
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] == "length", \
        "choice: %r" % choice
    assert choice["message"]["role"] == "assistant", "role: %r" % choice
    assert len(choice["message"]["content"].split(" ")) == 6, \
        "6 words: %r" % choice["message"]["content"]
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 6,
                             "total_tokens": 11}, "usage: %r" % body["usage"]
    assert r.headers.get("X-Usage-Total-Tokens") == "11", \
        "X-Usage-Total-Tokens: %r" % r.headers.get("X-Usage-Total-Tokens")


def test_chat_prompt_is_contents_joined(sim):
    c = assert_json(chat(sim, ["alpha beta", "gamma"], 9), 200)
    i = assert_json(infer(sim, "alpha beta\ngamma", 9), 200)
    assert c["choices"][0]["message"]["content"] == i["output"], \
        "chat generates from the contents joined with newlines"

    again = assert_json(chat(sim, ["alpha beta", "gamma"], 9), 200)
    assert again["choices"][0]["message"]["content"] \
        == c["choices"][0]["message"]["content"], "chat is deterministic"


def read_sse(r):
    """[(seconds since start, data payload)] for each SSE event."""
    t0 = time.monotonic()
    events = []
    for line in r.iter_lines():
        if line.startswith(b"data: "):
            events.append((time.monotonic() - t0, line[6:].decode()))
    return events


def test_chat_stream(sim_factory):
    # Intent: with 20 ms ttft and 20 ms per token, 20 tokens are spread
    # over ~400 ms; the first event must arrive long before the last, which
    # proves chunks are written as timers fire, not buffered to the end.
    s = sim_factory("sim-1", "--ttft-ms", "20", "--tpot-ms", "20",
                    "--jitter", "0")
    msgs = ["stream this please"]
    expect = assert_json(chat(s, msgs, 20), 200)
    content = expect["choices"][0]["message"]["content"]

    t0 = time.monotonic()
    r = requests.post(s.url + "/v1/chat/completions", timeout=10,
                      stream=True,
                      json={"messages": [{"role": "user", "content": m}
                                         for m in msgs],
                            "max_tokens": 20, "stream": True})
    assert r.status_code == 200, "stream status %d" % r.status_code
    assert r.headers.get("Content-Type") == "text/event-stream", \
        "stream Content-Type: %r" % r.headers.get("Content-Type")
    assert r.headers.get("Cache-Control") == "no-cache", "Cache-Control"
    assert r.headers.get("X-Accel-Buffering") == "no", "X-Accel-Buffering"
    assert r.headers.get("X-Server-Id") == "sim-1", "stream X-Server-Id"
    assert r.headers.get("X-Usage-Total-Tokens") == "23", \
        "stream X-Usage-Total-Tokens: %r" \
        % r.headers.get("X-Usage-Total-Tokens")
    headers_at = time.monotonic() - t0

    events = read_sse(r)
    assert events and events[-1][1] == "[DONE]", \
        "stream ends with [DONE]: %r" % events[-1:]
    chunks = [json.loads(d) for _, d in events[:-1]]

    assert headers_at < 0.3, "headers came only after %.3f s" % headers_at
    first, last = events[0][0], events[-1][0]
    assert last - first >= 0.25, \
        "events spread over %.3f s only, expected ~0.4 s" % (last - first)

    for c in chunks:
        assert c["object"] == "chat.completion.chunk", "chunk: %r" % c
        assert c["id"] == expect["id"], "chunk id matches the completion"
        assert c["model"] == "sim-small", "chunk model: %r" % c

    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0].get("role") == "assistant", "first delta: %r" % deltas[0]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" \
        and deltas[-1] == {}, "last chunk: %r" % chunks[-1]
    tokens = [d["content"] for d in deltas[1:-1]]
    assert len(tokens) == 20, "one chunk per token: %d" % len(tokens)
    assert "".join(d.get("content", "") for d in deltas) == content, \
        "deltas concatenate to the non-stream content"


def test_chat_stream_client_disconnect(sim_factory):
    s = sim_factory("sim-1", "--ttft-ms", "1", "--tpot-ms", "5",
                    "--jitter", "0")
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        body = json.dumps({"messages": [{"role": "user", "content": "x"}],
                           "max_tokens": 4000, "stream": True}).encode()
        c.sendall(raw_request("POST", "/v1/chat/completions", body))
        got = b""
        while got.count(b"data: ") < 3:
            chunk = c.recv(4096)
            assert chunk, "stream ended early"
            got += chunk
        c.close()

    h = s.wait_idle(timeout=10)
    assert h["inflight"] == 0, \
        "aborted streams must be dropped, not run to the end: %r" % h
    assert s.alive(), "ai-sim survived clients leaving mid-stream"
    assert_json(chat(s, ["still fine"], 2), 200)


def test_keepalive(sim):
    c = socket.create_connection(("127.0.0.1", sim.port), timeout=5)
    try:
        for i in range(3):
            body = json.dumps({"prompt": "k%d" % i, "max_tokens": 2}).encode()
            c.sendall(raw_request("POST", "/infer", body))
            head, data = read_response(c)
            assert head.startswith("HTTP/1.1 200"), "keep-alive #%d: %s" \
                % (i, head)
            assert json.loads(data)["usage"]["total_tokens"] == 3, \
                "keep-alive answer %d" % i
    finally:
        c.close()


# bad input


BAD_INFER = [
    (b"{not json", "valid JSON"),
    (b"", "empty"),
    (b"[1, 2]", "object"),
    (b'"prompt"', "object"),
    (b"{}", "prompt"),
    (b'{"prompt": 5}', "prompt"),
    (b'{"prompt": null}', "prompt"),
    (b'{"prompt": "x", "max_tokens": 0}', "max_tokens"),
    (b'{"prompt": "x", "max_tokens": 4097}', "max_tokens"),
    (b'{"prompt": "x", "max_tokens": -3}', "max_tokens"),
    (b'{"prompt": "x", "max_tokens": 2.5}', "max_tokens"),
    (b'{"prompt": "x", "max_tokens": "5"}', "max_tokens"),
    (b'{"prompt": "x", "max_tokens": true}', "max_tokens"),
    (b'{"prompt": "x", "model": 3}', "model"),
    (b'{"prompt": "x", "model": ""}', "model"),
]


@pytest.mark.parametrize("body,words", BAD_INFER)
def test_infer_bad_input(sim, body, words):
    assert_error(post(sim, "/infer", body), 400, words=words)


BAD_CHAT = [
    (b"{oops", "valid JSON"),
    (b"{}", "messages"),
    (b'{"messages": []}', "messages"),
    (b'{"messages": "hi"}', "messages"),
    (b'{"messages": [1]}', "message"),
    (b'{"messages": [{"role": "user"}]}', "content"),
    (b'{"messages": [{"role": 1, "content": "x"}]}', "role"),
    (b'{"messages": [{"role": "user", "content": null}]}', "content"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
     "stream"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
     "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "model": []}',
     "model"),
]


@pytest.mark.parametrize("body,words", BAD_CHAT)
def test_chat_bad_input(sim, body, words):
    assert_error(post(sim, "/v1/chat/completions", body), 400, words=words)


def test_body_too_large(sim_factory):
    s = sim_factory("sim-1", *FAST, "--max-body", "1k")
    ok = json.dumps({"prompt": "a" * 900, "max_tokens": 1})
    assert_json(post(s, "/infer", ok), 200)

    for size in (1100, 4096, 600 * 1024):
        big = json.dumps({"prompt": "a" * size, "max_tokens": 1})
        for path in ("/infer", "/v1/chat/completions"):
            assert_error(post(s, path, big), 413, words="1024")

    assert s.alive(), "ai-sim survives large bodies"


@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/infer", "POST"),
    ("PUT", "/infer", "POST"),
    ("PATCH", "/infer", "POST"),
    ("OPTIONS", "/infer", "POST"),
    ("GET", "/v1/chat/completions", "POST"),
    ("DELETE", "/v1/chat/completions", "POST"),
    ("POST", "/healthz", "GET, HEAD"),
    ("POST", "/slow", "GET, HEAD"),
    ("PATCH", "/slow", "GET, HEAD"),
    ("POST", "/v1/models", "GET, HEAD"),
])
def test_wrong_method(sim, method, path, allow):
    r = requests.request(method, sim.url + path, timeout=5)
    err = assert_error(r, 405, words=method)
    assert r.headers.get("Allow") == allow, \
        "Allow on %s is %r" % (path, r.headers.get("Allow"))
    assert path in err["message"], "message names the path: %r" % err


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/nope"), ("POST", "/v1/completions"),
    ("GET", "/healthz/extra"), ("PATCH", "/x"),
])
def test_unknown_path(sim, method, path):
    r = requests.request(method, sim.url + path, timeout=5)
    assert_error(r, 404, words="unknown path")


# fault injection


def test_fail_rate_one(sim_factory):
    s = sim_factory("sim-1", *FAST, "--fail-rate", "1")
    for r in (infer(s, "x", 2), chat(s, ["x"], 2),
              chat(s, ["x"], 2, stream=True),
              requests.get(s.url + "/slow", timeout=5)):
        assert_error(r, 500, etype="server_error", words="injected failure")
    assert_json(requests.get(s.url + "/healthz", timeout=5), 200)
    assert_json(requests.get(s.url + "/v1/models", timeout=5), 200)
    # bad input is the client's fault: still a 400, never an injected 500
    assert_error(infer(s, 1), 400, words="prompt")


def test_fail_rate_zero(sim_factory):
    s = sim_factory("sim-1", *FAST, "--fail-rate", "0")
    codes = [infer(s, "p%d" % i, 1).status_code for i in range(50)]
    assert codes == [200] * 50, "fail-rate 0 never fails: %r" % codes


def test_fail_rate_half(sim_factory):
    s = sim_factory("sim-1", *FAST, "--fail-rate", "0.5", "--seed", "1")
    codes = [infer(s, "p", 1).status_code for _ in range(100)]
    fails = codes.count(500)
    assert 20 <= fails <= 80 and fails + codes.count(200) == 100, \
        "fail-rate 0.5 fails about half: %d of 100" % fails


# process


def test_command_line():
    def run(*args):
        return subprocess.run([BINARY, *args], capture_output=True,
                              text=True, timeout=10)

    for args in ([], ["--port", "0"], ["--id", "x"],
                 ["--port", "x", "--id", "a"],
                 ["--port", "70000", "--id", "a"],
                 ["--port", "0", "--id", "a", "--jitter", "2"],
                 ["--port", "0", "--id", "a", "--fail-rate", "-1"],
                 ["--port", "0", "--id", "a", "--max-body", "1q"],
                 ["--port", "0", "--id", "a", "--ttft-ms", "abc"],
                 ["--port", "0", "--id", "a", "--bogus"],
                 ["--port", "0", "--id", "a", "extra"]):
        p = run(*args)
        assert p.returncode == 2, "%r exits 2, got %d" % (args, p.returncode)
        assert "usage:" in p.stderr, "%r prints usage on stderr" % args
        assert p.stdout == "", "%r prints nothing on stdout" % args


def test_ephemeral_port_and_options(sim_factory):
    s = sim_factory("sim-9", "--ttft-ms", "0.5", "--tpot-ms", "0",
                    "--max-body", "512k", "--jitter", "1", "--seed", "42")
    assert s.port > 0 and s.url == "http://127.0.0.1:%d" % s.port, \
        "listening line parsed: %r" % s.url
    assert_json(infer(s, "x", 1), 200, "sim-9")
    s2 = sim_factory("sim-10", *FAST, "--max-body", "1m")
    assert s2.port != s.port, "two replicas, two ports"


def test_sigterm_with_requests_in_flight(sim_factory):
    s = Sim(None, "sim-1", "--ttft-ms", "5000", "--jitter", "0").start()
    socks = []
    try:
        for _ in range(5):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(raw_request("POST", "/infer", b'{"prompt":"x"}'))
            socks.append(c)
        deadline = time.monotonic() + 5
        while s.healthz()["inflight"] < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        rc = s.stop()
        assert rc == 0, "SIGTERM exits 0, got %r: %s" % (rc, s.output())
        assert time.monotonic() - t0 < 2, "exit does not wait for timers"
    finally:
        s.stop()
        for c in socks:
            c.close()


VALGRIND = [
    "valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
    "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
    "--track-fds=no",
]


@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="valgrind is not installed")
def test_valgrind_clean():
    s = Sim(None, "sim-vg", "--ttft-ms", "20", "--tpot-ms", "2",
            "--jitter", "0.2", wrapper=VALGRIND).start()
    socks = []
    try:
        # completed answers of every kind, good and bad
        assert_json(requests.get(s.url + "/healthz", timeout=30), 200,
                    "sim-vg")
        assert_json(requests.get(s.url + "/v1/models", timeout=30), 200,
                    "sim-vg")
        assert_json(requests.get(s.url + "/slow", timeout=30), 200, "sim-vg")
        assert_json(infer(s, "hello world", 8), 200, "sim-vg")
        assert_json(chat(s, ["a", "b"], 8), 200, "sim-vg")
        r = requests.post(s.url + "/v1/chat/completions", timeout=30,
                          json={"messages": [{"role": "user",
                                              "content": "s"}],
                                "max_tokens": 10, "stream": True})
        assert r.text.endswith("data: [DONE]\n\n"), "full stream"
        for body in (b"{bad", b"{}", b'{"prompt":"x","max_tokens":0}',
                     b"x" * (2 * 1024 * 1024)):
            assert post(s, "/infer", body).status_code in (400, 413), \
                "bad body rejected"
        assert post(s, "/v1/chat/completions", b'{"messages":[]}') \
            .status_code == 400, "bad chat rejected"
        assert requests.patch(s.url + "/infer", timeout=30).status_code \
            == 405, "PATCH is 405"
        assert requests.get(s.url + "/x", timeout=30).status_code == 404

        # a client leaving mid-stream, and one leaving before its answer
        c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        c.sendall(raw_request("POST", "/v1/chat/completions", json.dumps(
            {"messages": [{"role": "user", "content": "x"}],
             "max_tokens": 4096, "stream": True}).encode()))
        got = b""
        while got.count(b"data: ") < 2:
            chunk = c.recv(4096)
            assert chunk, "stream ended early"
            got += chunk
        c.close()
        c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        c.sendall(raw_request("POST", "/infer", b'{"prompt":"gone"}'))
        c.close()
        # the stream would run 8 s; idle within 5 s proves it was dropped
        assert s.wait_idle(timeout=5)["inflight"] == 0, \
            "aborted requests freed"

        # left in flight at SIGTERM: delayed answers and a live stream
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
            c.sendall(raw_request("POST", "/infer",
                                  b'{"prompt":"x","max_tokens":4096}'))
            socks.append(c)
        c = socket.create_connection(("127.0.0.1", s.port), timeout=30)
        c.sendall(raw_request("POST", "/v1/chat/completions", json.dumps(
            {"messages": [{"role": "user", "content": "x"}],
             "max_tokens": 4096, "stream": True}).encode()))
        c.settimeout(30)
        assert c.recv(4096), "stream started"
        socks.append(c)
        deadline = time.monotonic() + 30
        while s.healthz()["inflight"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.healthz()["inflight"] == 4, "4 requests left in flight"
    finally:
        rc = s.stop()
        for c in socks:
            c.close()

    out = s.output()
    assert rc == 0, "exit code %r under valgrind:\n%s" % (rc, out)
    assert "ERROR SUMMARY: 0 errors" in out, "valgrind errors:\n%s" % out
    for kind in ("definitely", "indirectly"):
        m = re.search(r"%s lost: ([\d,]+) bytes" % kind, out)
        assert m is None or m.group(1) == "0", \
            "%s lost bytes:\n%s" % (kind, out)
