"""ai-sim on its own: every route, every bad input, determinism, the
latency model, concurrency and fault injection (SPEC section 4).  Streams
are in test_ai_sim_streams.py, the process (command line, descriptors,
valgrind) in test_ai_sim_process.py, the inference server's model (slots,
prefill, prefix cache, load reports) in test_ai_sim_server.py."""

import json
import re
import selectors
import socket
import time

import pytest
import requests

from ai_sim_client import (FAST, post, infer, chat, assert_json, assert_error,
                           raw_request, read_response, raise_nofile)


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
    (b'{"messages": [{"role": "user", "content": "x"}], '
     b'"max_completion_tokens": 0}', "max_completion_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], '
     b'"max_completion_tokens": 4097}', "max_completion_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], '
     b'"max_completion_tokens": "8"}', "max_completion_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 8, '
     b'"max_completion_tokens": 1.5}', "max_completion_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": true, '
     b'"stream_options": true}', "stream_options"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": true, '
     b'"stream_options": {"include_usage": "yes"}}', "include_usage"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": true, '
     b'"stream_options": {"include_usage": 1}}', "include_usage"),
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
    ("POST", "/v1/chat/completions/x"), ("GET", "/v1/models/sim-small"),
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
