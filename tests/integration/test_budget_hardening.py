"""Token budgets that hold (issue 21, items 9 to 13, and which bodies a
token zone reads): every form of a prompt is estimated, an overrun is owed
in full, a key in debt still gets its HITs and an honest 429, a STALE
answer costs nothing, and a Responses stream's usage is read whatever the
size of its last event.

The upstream here is scripted (Upstream): it reports, as a provider would,
usage computed from what the request really holds (token ids one token
each, text at four bytes a token, tool schemas by their size), after a
short delay so that concurrent requests overlap.
"""

import concurrent.futures
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import threading
import time

import pytest

from harness.nginx import private_dir
from test_limit import Client, cachez, server

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"


def real_prompt_tokens(doc):
    """What a provider would count: every string at 4 bytes a token and
    every number (a token id) as one, anywhere in the prompt fields."""
    tokens = 0
    text = 0
    stack = [doc.get(k) for k in ("prompt", "input", "messages", "system",
                                  "instructions", "tools", "functions")]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            text += len(v.encode())
        elif isinstance(v, bool) or v is None:
            continue
        elif isinstance(v, (int, float)):
            tokens += 1
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
    return tokens + -(-text // 4)


class Upstream:
    """A provider that answers every POST with the usage of what it was
    sent: JSON, or (mode "responses_stream") a Responses API stream whose
    response.completed event carries the whole output."""

    def __init__(self, delay=0.0):
        self.delay = delay
        self.mode = "json"
        self.status = 200
        self.output_bytes = 0
        self.extra = 0          # completion tokens beyond max_tokens
        self.requests = 0
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                if up.mode == "early":
                    # answers on the headers, the body unread
                    out = b'{"usage":{"total_tokens":1}}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(out)
                    self.close_connection = True
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                up.requests += 1
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {}
                if up.delay:
                    time.sleep(up.delay)
                prompt = real_prompt_tokens(doc)
                completion = doc.get("max_tokens",
                                     doc.get("max_output_tokens", 1))
                completion += up.extra
                usage = {"prompt_tokens": prompt,
                         "completion_tokens": completion,
                         "total_tokens": prompt + completion}
                if up.mode == "responses_stream":
                    self.stream(prompt, completion)
                    return
                out = json.dumps({"id": "x", "object": "text_completion",
                                  "choices": [{"text": "ok"}],
                                  "usage": usage}).encode()
                self.send_response(up.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_PUT = do_POST
            do_GET = do_POST

            def stream(self, prompt, completion):
                text = "w" * up.output_bytes
                events = [
                    ("response.created", {"type": "response.created",
                                          "response": {"id": "r"}}),
                    ("response.output_text.delta",
                     {"type": "response.output_text.delta", "delta": text}),
                    ("response.completed", {
                        "type": "response.completed",
                        "response": {
                            "id": "r", "status": "completed",
                            "output": [{"type": "message", "content": [
                                {"type": "output_text", "text": text}]}],
                            "usage": {"input_tokens": prompt,
                                      "output_tokens": completion,
                                      "total_tokens": prompt + completion}}}),
                ]
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for name, data in events:
                    chunk = ("event: %s\ndata: %s\n\n"
                             % (name, json.dumps(data))).encode()
                    # in pieces, as a network delivers a big event
                    for i in range(0, len(chunk), 4096):
                        piece = chunk[i:i + 4096]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.stop()


def token_gateway(nginx_factory, port, burst, location_extra="",
                  http_extra="", rate="1t/m", workers=1):
    return nginx_factory(server("""
        location /v1/ {
            ai_gateway_limit zone=tpm;
            ai_gateway_limit_headers all;
            %s
            proxy_pass http://127.0.0.1:%d;
        }
""" % (location_extra, port), """
    ai_gateway_limit_zone $http_x_api_key zone=tpm:1m rate=%s burst=%d;
    %s
""" % (rate, burst, http_extra)), workers=workers)


def post(port, path, doc, key="alice", headers=None, timeout=10):
    body = doc if isinstance(doc, (bytes, str)) else json.dumps(doc)
    h = {"Content-Type": "application/json", "X-Api-Key": key}
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body, h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


# ---------------------------------------------------------------- item 9

# each about 3,000 prompt tokens, in a form the estimate used to miss
BIG_PROMPTS = {
    "completions_token_ids": (COMPLETIONS, {
        "model": "m", "prompt": list(range(3000)), "max_tokens": 1}),
    "completions_arrays_of_ids": (COMPLETIONS, {
        "model": "m", "prompt": [list(range(1500)), list(range(1500))],
        "max_tokens": 1}),
    "responses_input_messages": (RESPONSES, {
        "model": "m", "max_output_tokens": 1,
        "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "abcd" * 3000}]}]}),
    "chat_tools_schemas": (CHAT, {
        "model": "m", "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {
            "name": "f%d" % i, "description": "d" * 1180,
            "parameters": {"type": "object"}}} for i in range(10)]}),
}


@pytest.mark.parametrize("form", sorted(BIG_PROMPTS))
def test_every_prompt_form_reserves_its_size(nginx_factory, form):
    """20 concurrent requests of about 3,000 prompt tokens each against a
    burst of 10,000: only as many as fit are admitted, and what they used
    stays within the budget.  Before, each reserved max_tokens (1 token)
    alone, all 20 were admitted, and they used six times the burst."""
    up = Upstream(delay=1.0)
    try:
        # in memory: a body spooled to a file is counted by its size
        n = token_gateway(nginx_factory, up.port, 10000,
                          "client_body_buffer_size 1m;")
        path, doc = BIG_PROMPTS[form]
        real = real_prompt_tokens(doc) + 1
        assert 2900 < real < 3300, real

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: post(n.port, path, doc),
                                    range(20)))

        admitted = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 429]
        assert len(admitted) + len(refused) == 20, [r[0] for r in results]
        assert 1 <= len(admitted) <= 10000 // real, (
            "%d requests of %d tokens admitted against a burst of 10000"
            % (len(admitted), real))
        for _, h, body in refused:
            assert json.loads(body)["error"] == "rate_limited", body
            assert int(h["retry-after"]) >= 1, h

        z = cachez(n)["limits"]["tpm"]
        assert z["settled"] == len(admitted) * real, z
        assert z["settled"] <= 10000, z
        # the reservation was the real size, within the estimate's error
        assert z["reserved"] >= z["settled"] * 0.9, z
    finally:
        up.stop()


def test_json_without_a_prompt_field_counts_by_its_size(nginx_factory,
                                                        upstream):
    """A body of an API the gateway does not know (no prompt, input or
    messages) reserves its size at four bytes a token, as a body that is
    not JSON does."""
    n = token_gateway(nginx_factory, upstream.port, 100000)
    doc = {"model": "m", "contents": [{"parts": [{"text": "x" * 4000}]}],
           "max_tokens": 1}
    size = len(json.dumps(doc))

    status, h, _ = post(n.port, "/v1/other", doc)
    assert status == 200, h
    assert int(h["x-ratelimit-remaining-tokens"]) == \
        100000 - (-(-size // 4) + 1), (h, size)


# ---------------------------------------------------------------- item 10

def overrun_gateway(nginx_factory, port, redis=None):
    """60t/m (a token a second), burst 30; cost=1 reserves one token, and
    the upstream reports 1 + max_tokens tokens of usage."""
    backend = ""
    extra = ""
    if redis is not None:
        backend = " redis"
        extra = "ai_gateway_redis 127.0.0.1:%d timeout=500ms;" % redis.port
    return nginx_factory(server("""
        location /v1/ {
            ai_gateway_limit zone=tpm cost=1;
            ai_gateway_limit_headers all;
            proxy_pass http://127.0.0.1:%d;
        }
""" % port, """
    ai_gateway_limit_zone $http_x_api_key zone=tpm:1m rate=60t/m burst=30%s;
    %s
""" % (backend, extra)))


def wait_redis_connected(n, timeout=10):
    """a loaded machine may take a while to connect: a zone that Redis
    cannot answer for passes blind (redis_fail open) and charges nothing"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cachez(n)["redis"]["connected"]:
            return
        time.sleep(0.05)
    raise AssertionError("nginx never connected to Redis")


def assert_owes_the_whole_overrun(n):
    # 1 token reserved, 100 used: 99 owed against the 29 left, a debt of
    # 70 tokens at a token a second before a token is back
    status, h, body = post(n.port, CHAT, {"model": "m", "max_tokens": 1,
                                          "messages": [{"content": "x"}]})
    assert status == 429, (status, body)
    assert json.loads(body)["error"] == "rate_limited", body
    retry = int(h["retry-after"])
    assert 69 <= retry <= 72, (
        "Retry-After %d: the debt beyond one burst was forgiven" % retry)
    assert (retry - 1) * 1000 < int(h["retry-after-ms"]) <= retry * 1000, h
    # the headers say so: nothing left, full again once the debt is paid
    # and the burst refilled
    assert h["ratelimit-remaining"] == "0", h
    assert 98 <= int(h["ratelimit-reset"]) <= 100, h
    assert h["x-ratelimit-remaining-tokens"] == "0", h
    assert h["x-ratelimit-reset-tokens"].startswith("1m3"), h


def test_an_overrun_is_owed_in_full(nginx_factory, upstream):
    """An answer that used 99 tokens beyond its reservation on a 30-token
    burst leaves a debt of 70 tokens: the key waits 70 s, not 31 s (the
    debt was capped at one burst)."""
    n = overrun_gateway(nginx_factory, upstream.port)
    status, h, body = post(n.port, CHAT, {"model": "m", "max_tokens": 99,
                                          "messages": [{"content": "x"}]})
    assert status == 200, body
    assert json.loads(body)["usage"]["total_tokens"] == 100
    assert_owes_the_whole_overrun(n)
    z = cachez(n)["limits"]["tpm"]
    assert z["overrun"] == 99, z


def test_an_overrun_is_owed_in_full_in_redis(nginx_factory, upstream,
                                             redis_server):
    n = overrun_gateway(nginx_factory, upstream.port, redis_server)
    wait_redis_connected(n)
    status, h, body = post(n.port, CHAT, {"model": "m", "max_tokens": 99,
                                          "messages": [{"content": "x"}]})
    assert status == 200, body

    # the settlement is fire and forget: wait until Redis holds the debt
    cl = redis_server.client()
    key = "gw:v1:rl:tpm:" + hashlib.sha256(b"alice").hexdigest()
    deadline = time.monotonic() + 5
    level = None
    while time.monotonic() < deadline:
        level = cl.hget(key, "level")
        if level is not None and int(level) < 0:
            break
        time.sleep(0.05)
    # a token is 60000 units at 60t/m: 70 tokens owed
    assert level is not None and int(level) <= -69 * 60000, level
    # the key lives until the debt is paid and the bucket full again
    assert cl.pttl(key) > 95000, cl.pttl(key)
    assert_owes_the_whole_overrun(n)


def test_a_hostile_usage_figure_never_wraps(nginx_factory, upstream):
    """An upstream reporting a usage of 2^63 leaves a debt at the bound
    (2^53 units), not a wrapped bucket that lets the key through."""
    n = overrun_gateway(nginx_factory, upstream.port)
    up_max = 2 ** 63
    status, h, body = post(n.port, CHAT, {"model": "m", "max_tokens": up_max,
                                          "messages": [{"content": "x"}]})
    assert status == 200, body
    for _ in range(3):
        status, h, body = post(n.port, CHAT, {
            "model": "m", "max_tokens": 1, "messages": [{"content": "x"}]})
        assert status == 429, (status, h)
        # 2^53 units of debt refilled at 60 units a ms: 1.5 * 10^11 s
        assert int(h["retry-after"]) > 10 ** 11, h


# ---------------------------------------------------------------- item 11

def small(prompt):
    return {"model": "m", "max_tokens": 2,
            "messages": [{"role": "user", "content": prompt}]}


def put_in_debt(n, upstream, path):
    """alice's answer uses 200 tokens beyond its reservation: her bucket
    (150 tokens, a token a second) owes about 55."""
    upstream.extra = 200
    status, h, body = post(n.port, path, small("first"), key="alice")
    assert status == 200, body
    upstream.extra = 0
    z = cachez(n)["limits"]["tpm"]
    debt = z["settled"] - 150          # less a token or two of refill
    assert debt > 40, z
    return debt


def assert_rate_limited(h, body, debt):
    assert json.loads(body)["error"] == "rate_limited", body
    assert "x-should-retry" not in h, h
    retry = int(h["retry-after"])
    # the debt paid, and the 2-token request's cost (+ the prompt's token)
    assert debt - 3 <= retry <= debt + 5, (retry, debt)


def wait_redis_debt(redis, zone="tpm", key=b"alice"):
    """a redis settlement is fire and forget: until Redis holds the debt"""
    cl = redis.client()
    name = "gw:v1:rl:%s:%s" % (zone, hashlib.sha256(key).hexdigest())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        level = cl.hget(name, "level")
        if level is not None and int(level) < 0:
            return
        time.sleep(0.05)
    raise AssertionError("no debt in Redis: %r" % cl.hgetall(name))


@pytest.mark.parametrize("backend", ["shm", "redis"])
def test_a_key_in_debt_gets_its_hits_and_an_honest_429(nginx_factory,
                                                       upstream,
                                                       redis_factory,
                                                       backend):
    """A key in debt is not refused before the cache lookup: a HIT is free
    (SPEC 3.1, 7.1), and a MISS is rate_limited with the time its debt
    takes in Retry-After.  Before, the early refusal denied the HIT, and
    estimated the unread body by its size (more than the 150-token burst):
    cost_exceeds_limit, x-should-retry: false, and OpenAI's clients never
    retried a request that was only rate limited."""
    rate, http = "60t/m", "ai_gateway_cache_zone zone=c:1m;"
    if backend == "redis":
        r = redis_factory()
        rate += " redis"
        http += "ai_gateway_redis 127.0.0.1:%d timeout=500ms;" % r.port
    n = token_gateway(nginx_factory, upstream.port, 150, """
            ai_gateway_cache c;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_authorized on;""", http, rate=rate)
    if backend == "redis":
        wait_redis_connected(n)

    # an answer cached for alice (the cache keys on her X-Api-Key)
    status, h, _ = post(n.port, CHAT, small("shared"), key="alice")
    assert status == 200 and h["x-cache"] == "MISS", h
    debt = put_in_debt(n, upstream, CHAT)
    if backend == "redis":
        wait_redis_debt(r)

    # in debt, she is served it free
    status, h, body = post(n.port, CHAT, small("shared"), key="alice")
    assert status == 200, (status, body)
    assert h["x-cache"] == "HIT", h
    assert h["ratelimit-remaining"] == "0", h

    # a MISS of hers is rate limited, honestly
    status, h, body = post(n.port, CHAT, small("new"), key="alice")
    assert status == 429, (status, body)
    assert_rate_limited(h, body, debt)


def test_a_key_in_debt_is_rate_limited_where_nothing_caches(nginx_factory,
                                                            upstream):
    """Where no cache reads the body, the limiter refuses a key in debt
    before reading it (one token is the least it could cost): still
    rate_limited with an honest Retry-After, never cost_exceeds_limit."""
    n = token_gateway(nginx_factory, upstream.port, 150, rate="60t/m")
    debt = put_in_debt(n, upstream, CHAT)

    requests_before = upstream.requests
    status, h, body = post(n.port, CHAT, small("x"), key="alice")
    assert status == 429, (status, body)
    assert_rate_limited(h, body, debt)
    assert upstream.requests == requests_before


# ---------------------------------------------------------------- item 12

def test_a_stale_answer_returns_the_reservation(nginx_factory, upstream):
    """The upstream fails and the cache answers with its stale copy: the
    request used nothing, and its reservation goes back as for the 5xx it
    replaces.  Before, it was charged the stale body's usage."""
    n = token_gateway(nginx_factory, upstream.port, 100000, """
            ai_gateway_cache c;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_authorized on;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_stale 60s;
            ai_gateway_cache_use_stale error http_500;""",
                      "ai_gateway_cache_zone zone=c:1m;")
    doc = {"model": "m", "max_tokens": 500,
           "messages": [{"role": "user", "content": "tell me"}]}

    status, h, body = post(n.port, CHAT, doc)
    assert status == 200 and h["x-cache"] == "MISS", h
    used = json.loads(body)["usage"]["total_tokens"]
    before = cachez(n)["limits"]["tpm"]
    assert before["settled"] == used, before

    time.sleep(2.1)                      # past the TTL, within stale
    upstream.status = 500
    status, h, body = post(n.port, CHAT, doc)
    assert status == 200 and h["x-cache"] == "STALE", (status, h)
    assert json.loads(body)["usage"]["total_tokens"] == used

    z = cachez(n)["limits"]["tpm"]
    assert z["settled"] == before["settled"], (
        "a STALE answer was charged: %s" % z)
    assert z["returned"] - before["returned"] == \
        z["reserved"] - before["reserved"], z


# ---------------------------------------------------------------- item 13

@pytest.mark.parametrize("output_bytes", [100, 40000, 400000])
def test_a_responses_stream_settles_on_its_usage_whatever_its_size(
        nginx_factory, upstream, output_bytes):
    """A Responses API stream ends with response.completed, which repeats
    the whole output before its usage: past 16 KB the usage was lost and
    the stream settled on its content events and prompt estimate."""
    upstream.mode = "responses_stream"
    upstream.output_bytes = output_bytes
    n = token_gateway(nginx_factory, upstream.port, 1000000)
    doc = {"model": "m", "stream": True, "max_output_tokens": 3000,
           "input": [{"role": "user", "content": "write a lot"}]}

    status, h, body = post(n.port, RESPONSES, doc)
    assert status == 200, body
    assert b"response.completed" in body
    usage = None
    for line in body.decode().split("\n"):
        if line.startswith("data: ") and "response.completed" in line:
            usage = json.loads(line[6:])["response"]["usage"]["total_tokens"]
    assert usage == 3000 + real_prompt_tokens(doc), usage

    z = cachez(n)["limits"]["tpm"]
    assert z["settled"] == usage, (z, usage)


# ------------------------------------------- which bodies a token zone reads

def raw_exchange(port, head, body, timeout=2.0):
    """send a request's head and the start of its body; what comes back
    before the rest of the body would ever arrive"""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(head.encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                break
        return data
    except socket.timeout:
        return b""
    finally:
        s.close()


@pytest.mark.parametrize("method,ctype", [
    ("POST", "multipart/form-data; boundary=x"),
    ("POST", "application/octet-stream"),
    ("PUT", "application/json"),
    ("GET", None),
])
def test_only_inference_bodies_are_read(nginx_factory, upstream, method,
                                        ctype):
    """A token zone reads a body only if it can be an inference request (a
    POST of JSON): an upload, or another method, goes upstream unread
    (proxy_request_buffering off streams it on), reserving its declared
    size at four bytes a token plus the default max.  Before, every body
    was read first: the upstream got nothing until its last byte."""
    upstream.mode = "early"
    n = token_gateway(nginx_factory, upstream.port, 10 ** 6,
                      "proxy_request_buffering off; "
                      "proxy_http_version 1.1;")
    head = ("%s /v1/upload HTTP/1.1\r\nHost: t\r\nX-Api-Key: alice\r\n"
            "Content-Length: 100000\r\n%s\r\n"
            % (method, "Content-Type: %s\r\n" % ctype if ctype else ""))
    answer = raw_exchange(n.port, head, b"x" * 1000)
    assert answer.startswith(b"HTTP/1.1 200"), (
        "the body was waited for: %r" % answer[:200])
    assert b"x-ratelimit-remaining-tokens: %d" % (10 ** 6 - 25000 - 256) \
        in answer.lower(), answer


def test_a_json_post_is_read_for_its_estimate(nginx_factory, upstream):
    """The counterpart: a POST of JSON is read (its prompt is the
    estimate), so the upstream sees it only once it is whole."""
    upstream.mode = "early"
    n = token_gateway(nginx_factory, upstream.port, 10 ** 6,
                      "proxy_request_buffering off; "
                      "proxy_http_version 1.1;")
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n"
            "X-Api-Key: alice\r\nContent-Length: 100000\r\n"
            "Content-Type: application/json\r\n\r\n")
    assert raw_exchange(n.port, head, b"{" + b" " * 999, timeout=1.0) == b""


def test_a_dav_put_is_not_read_by_a_token_zone(nginx_factory):
    """nginx's own dav_chunked.t with a token zone at http level: the DAV
    handler needs the body in a file; read into memory first, the PUT
    failed with a 500."""
    root = private_dir("agw-dav-")
    os.chmod(root, 0o777)
    n = nginx_factory("""
    ai_gateway_limit_zone global zone=tpm:1m rate=1000000t/s burst=1000000;
    ai_gateway_limit zone=tpm;
    server {
        listen 127.0.0.1:%%%%PORT%%%%;
        location / {
            root %s;
            dav_methods PUT;
            client_body_buffer_size 1k;
        }
    }
""" % root)
    head = ("PUT /file HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    body = b"a\r\n0123456789\r\n0\r\n\r\n"
    answer = raw_exchange(n.port, head, body)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    with open(os.path.join(root, "file"), "rb") as f:
        assert f.read() == b"0123456789"
    shutil.rmtree(root)
