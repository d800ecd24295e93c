"""Helpers of the ai-sim tests (test_ai_sim*.py): requests, assertions on
ai-sim's answers, raw sockets, server-sent events, cut streams and the
valgrind run."""

import json
import re
import resource
import socket
import time

import requests

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


def read_sse(r):
    """[(seconds since start, data payload)] for each SSE event."""
    t0 = time.monotonic()
    events = []
    for line in r.iter_lines():
        if line.startswith(b"data: "):
            events.append((time.monotonic() - t0, line[6:].decode()))
    return events


def stream_chat(sim, contents, max_tokens=8, headers=None, **extra):
    body = {"messages": [{"role": "user", "content": c} for c in contents],
            "stream": True}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    r = requests.post(sim.url + "/v1/chat/completions", json=body,
                      headers=headers or {}, stream=True, timeout=10)
    assert r.status_code == 200, "stream status %d: %s" \
        % (r.status_code, r.text)
    return r


def stream_events(r):
    """The JSON chunks of a complete stream; asserts it ends in [DONE]."""
    events = [d for _, d in read_sse(r)]
    assert events and events[-1] == "[DONE]", \
        "stream ends with [DONE]: %r" % events[-1:]
    return [json.loads(d) for d in events[:-1]]


def content_events(chunks):
    return [c for c in chunks
            if c["choices"] and c["choices"][0]["delta"].get("content")]


def cut_stream_raw(sim, headers=(), max_tokens=6, timeout=10.0):
    """(head, body bytes, closed) of a raw streamed chat request: reads
    until the connection closes, the chunked body ends, or the timeout."""
    c = socket.create_connection(("127.0.0.1", sim.port), timeout=timeout)
    try:
        body = json.dumps({"messages": [{"role": "user", "content": "cut"}],
                           "max_tokens": max_tokens,
                           "stream": True}).encode()
        c.sendall(raw_request("POST", "/v1/chat/completions", body,
                              headers))
        c.settimeout(timeout)
        got = b""
        closed = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = c.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                closed = True
                break
            got += chunk
            if got.endswith(b"\r\n0\r\n\r\n"):
                break
    finally:
        c.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    return head.decode(), rest, closed


def sse_payloads(raw):
    return [line[6:] for line in raw.split(b"\n")
            if line.startswith(b"data: ")]


def cut_pattern(sim, n):
    """For n streams in a row: None for a whole stream, else the number of
    content events it got before the cut."""
    out = []
    for i in range(n):
        _, raw, closed = cut_stream_raw(sim, max_tokens=5)
        events = sse_payloads(raw)
        if b"[DONE]" in events:
            out.append(None)
        else:
            assert closed, "a stream without [DONE] was closed"
            out.append(len(content_events([json.loads(e) for e in events])))
        # jitter and failure draws in between must not move the cuts
        infer(sim, "between %d" % i, 1)
    return out


VALGRIND = [
    "valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
    "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
    "--track-fds=no",
]


def assert_valgrind_clean(rc, out):
    assert rc == 0, "exit code %r under valgrind:\n%s" % (rc, out)
    assert "ERROR SUMMARY: 0 errors" in out, "valgrind errors:\n%s" % out
    for kind in ("definitely", "indirectly"):
        m = re.search(r"%s lost: ([\d,]+) bytes" % kind, out)
        assert m is None or m.group(1) == "0", \
            "%s lost bytes:\n%s" % (kind, out)
