"""ai-sim's streams: server-sent events one per token, include_usage,
clients leaving mid-stream, and streams cut mid-way (SPEC section 4,
issues 12 and 13)."""

import json
import socket
import time

import pytest
import requests

from ai_sim_client import (FAST, infer, chat, assert_json, assert_error,
                           raw_request, read_sse, stream_chat, stream_events,
                           content_events, cut_stream_raw, sse_payloads,
                           cut_pattern)


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


def test_chat_stream_include_usage(sim):
    # Intent (issue 12): OpenAI's stream_options.include_usage: every chunk
    # says "usage": null, and one last chunk before [DONE] has
    # "choices": [] and the usage; its figures are those of the header and
    # of the non-stream answer, and completion_tokens is the number of
    # content events (what a gateway settles a stream on).
    msgs = ["count my tokens please", "and these"]
    plain = assert_json(chat(sim, msgs, 7), 200)

    r = stream_chat(sim, msgs, 7, stream_options={"include_usage": True})
    total = r.headers.get("X-Usage-Total-Tokens")
    chunks = stream_events(r)

    last = chunks[-1]
    assert last["choices"] == [], "usage chunk has no choices: %r" % last
    assert last["usage"] == plain["usage"], \
        "stream usage %r, non-stream %r" % (last["usage"], plain["usage"])
    assert last["id"] == plain["id"] \
        and last["object"] == "chat.completion.chunk", "usage chunk: %r" % last
    for c in chunks[:-1]:
        assert "usage" in c and c["usage"] is None, \
            "every other chunk carries usage null: %r" % c

    usage = last["usage"]
    assert usage["total_tokens"] == int(total) \
        == usage["prompt_tokens"] + usage["completion_tokens"], \
        "usage %r against X-Usage-Total-Tokens %r" % (usage, total)
    assert usage["completion_tokens"] == len(content_events(chunks)) == 7, \
        "one content event per completion token: %r" % usage
    assert chunks[-2]["choices"][0]["finish_reason"] == "length", \
        "the finish chunk comes before the usage chunk: %r" % chunks[-2]
    text = "".join(c["choices"][0]["delta"].get("content", "")
                   for c in chunks[:-1])
    assert text == plain["choices"][0]["message"]["content"], \
        "same words as the non-stream answer"


@pytest.mark.parametrize("options", [None, {}, {"include_usage": False},
                                     {"include_usage": None}])
def test_chat_stream_without_usage(sim, options):
    # Intent: without include_usage no chunk mentions usage at all.
    extra = {} if options is None else {"stream_options": options}
    chunks = stream_events(stream_chat(sim, ["no usage"], 4, **extra))
    assert all("usage" not in c for c in chunks), \
        "no usage in the stream: %r" % [c for c in chunks if "usage" in c]
    assert len(content_events(chunks)) == 4, "4 content events"


def test_stream_options_ignored_without_stream(sim):
    # ai-sim accepts it on a non-stream request (OpenAI answers 400): the
    # answer carries usage as always.
    body = assert_json(chat(sim, ["x"], 3,
                            stream_options={"include_usage": True}), 200)
    assert body["usage"]["completion_tokens"] == 3, "usage: %r" % body


def test_max_completion_tokens(sim):
    # Intent (issue 12): max_completion_tokens, OpenAI's newer name, caps
    # the completion as max_tokens does; with both, the smaller cap wins;
    # the words are those of the same cap given as max_tokens.
    by_old = assert_json(chat(sim, ["cap me"], 5), 200)
    by_new = assert_json(chat(sim, ["cap me"], None,
                              max_completion_tokens=5), 200)
    both = assert_json(chat(sim, ["cap me"], 9, max_completion_tokens=5),
                       200)
    both2 = assert_json(chat(sim, ["cap me"], 5, max_completion_tokens=9),
                        200)
    for b in (by_new, both, both2):
        assert b["usage"] == by_old["usage"] \
            and b["usage"]["completion_tokens"] == 5, "usage %r" % b["usage"]
        assert b["choices"][0]["message"]["content"] \
            == by_old["choices"][0]["message"]["content"], "same words"

    r = stream_chat(sim, ["cap me"], None, max_completion_tokens=3,
                    stream_options={"include_usage": True})
    assert r.headers.get("X-Usage-Total-Tokens") == "5", \
        "2 prompt + 3 completion tokens: %r" \
        % r.headers.get("X-Usage-Total-Tokens")
    chunks = stream_events(r)
    assert len(content_events(chunks)) == 3 \
        and chunks[-1]["usage"]["completion_tokens"] == 3, \
        "stream capped at 3: %r" % chunks[-1]

    body = assert_json(infer(sim, "x", None, max_completion_tokens=2), 200)
    assert body["usage"]["completion_tokens"] == 2, "/infer honours it too"


# streams cut mid-way (issue 13)


def test_stream_cut_by_header(sim_factory):
    # Intent (issue 13): "X-Sim-Cut: N" sends N content events and closes
    # the connection: no finish chunk, no [DONE], no terminating chunk of
    # the chunked encoding, as a replica dying mid-answer.
    s = sim_factory("sim-1", *FAST)
    before = s.healthz()
    head, raw, closed = cut_stream_raw(s, ["X-Sim-Cut: 3"], max_tokens=6)
    assert head.startswith("HTTP/1.1 200") \
        and "text/event-stream" in head, "a stream was started: %s" % head
    assert closed, "ai-sim closed the connection"
    events = sse_payloads(raw)
    assert b"[DONE]" not in events, "a cut stream has no [DONE]: %r" % raw
    chunks = [json.loads(e) for e in events]
    assert len(chunks) == 4 and len(content_events(chunks)) == 3, \
        "role chunk and 3 content events: %r" % chunks
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks), \
        "no finish chunk"
    assert not raw.endswith(b"0\r\n\r\n"), \
        "no terminating chunk: %r" % raw[-20:]

    h = s.wait_idle()
    assert h["cut"] == before["cut"] + 1, "one cut counted: %r" % h
    assert h["requests"] == before["requests"] + 1, \
        "the cut stream is a request: %r" % h

    # 0: the headers only; more than max_tokens: every token, no end
    head, raw, closed = cut_stream_raw(s, ["X-Sim-Cut: 0"])
    assert closed and head.startswith("HTTP/1.1 200") \
        and sse_payloads(raw) == [], "cut before any event: %r" % raw
    head, raw, closed = cut_stream_raw(s, ["X-Sim-Cut: 99"], max_tokens=4)
    chunks = [json.loads(e) for e in sse_payloads(raw) if e != b"[DONE]"]
    assert closed and len(content_events(chunks)) == 4 \
        and b"[DONE]" not in sse_payloads(raw) \
        and all(c["choices"][0]["finish_reason"] is None for c in chunks), \
        "all tokens, then cut: %r" % raw

    # include_usage does not save a cut stream: no usage chunk either
    r = requests.post(s.url + "/v1/chat/completions", stream=True,
                      timeout=10, headers={"X-Sim-Cut": "2"},
                      json={"messages": [{"role": "user", "content": "u"}],
                            "max_tokens": 5, "stream": True,
                            "stream_options": {"include_usage": True}})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        r.content

    h = s.wait_idle()
    assert h["cut"] == before["cut"] + 4 and h["inflight"] == 0, \
        "four cuts, nothing left in flight: %r" % h
    assert s.streams_cut() == h["cut"] \
        and s.requests_seen() == before["requests"] + 4, \
        "the harness reads the same counters"
    # the same stream without the header is whole, and ai-sim is fine
    chunks = stream_events(stream_chat(s, ["cut"], 6))
    assert len(content_events(chunks)) == 6, "an uncut stream is whole"


@pytest.mark.parametrize("value", ["x", "-1", "", "1.5", "4097",
                                   "99999999999999999999"])
def test_stream_cut_bad_header(sim, value):
    r = requests.post(sim.url + "/v1/chat/completions", timeout=5,
                      headers={"X-Sim-Cut": value},
                      json={"messages": [{"role": "user", "content": "x"}],
                            "stream": True})
    assert_error(r, 400, words="X-Sim-Cut")


def test_stream_cut_header_ignored_without_stream(sim):
    r = requests.post(sim.url + "/v1/chat/completions", timeout=5,
                      headers={"X-Sim-Cut": "1"},
                      json={"messages": [{"role": "user", "content": "x"}],
                            "max_tokens": 3})
    assert assert_json(r, 200)["usage"]["completion_tokens"] == 3, \
        "a JSON answer is never cut"


def test_cut_rate(sim_factory):
    # Intent (issue 13): --cut-rate F cuts about that share of streams, at
    # 1..max_tokens content events, deterministically for one --seed.
    one = sim_factory("sim-1", *FAST, "--cut-rate", "1")
    pattern = cut_pattern(one, 10)
    assert all(p is not None and 1 <= p <= 5 for p in pattern), \
        "--cut-rate 1 cuts every stream mid-way: %r" % pattern
    assert_json(chat(one, ["x"], 3), 200)   # JSON answers are never cut
    assert one.healthz()["cut"] == 10, "10 cuts counted"

    args = ("--ttft-ms", "1", "--tpot-ms", "0.2", "--jitter", "0.5",
            "--cut-rate", "0.5", "--seed", "3")
    a = cut_pattern(sim_factory("sim-a", *args), 30)
    b = cut_pattern(sim_factory("sim-b", *args), 30)
    assert a == b, "one seed, the same cuts:\n%r\n%r" % (a, b)
    cuts = sum(p is not None for p in a)
    assert 5 <= cuts <= 25, "about half of 30 cut: %d" % cuts

    zero = sim_factory("sim-0", *FAST, "--cut-rate", "0")
    assert cut_pattern(zero, 5) == [None] * 5, "--cut-rate 0 never cuts"
