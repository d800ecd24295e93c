"""Cached streams (SPEC 7.2): a text/event-stream answer is stored only when
it ended cleanly and a HIT replays every event, in both stores; cut and
oversized streams are never stored.

The `openai` package is not installed here: the streams are read as its
client reads them (`data: ` lines, one JSON chunk each, up to `[DONE]`)."""

import json
import socket
import time

import pytest
import requests

HTTP = """
    ai_gateway_cache_zone zone=main:4m max_entry_size={max_entry};
    {redis}
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location /v1/ {{
            ai_gateway_cache {store};
            ai_gateway_cache_methods POST;
            proxy_buffering {buffering};
            proxy_pass http://sim;
        }}

        # complete answers, with and without the protocol's terminal event
        location /origin/ {{
            ai_gateway_cache {store};
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
        location = /raw/noend {{
            default_type text/event-stream;
            return 200 "data: {{\\"a\\":1}}\\n\\n";
        }}
        location = /raw/done {{
            default_type text/event-stream;
            return 200 "data: {{\\"a\\":1}}\\n\\ndata: [DONE]\\n\\n";
        }}
        location = /raw/anthropic {{
            default_type text/event-stream;
            return 200 "event: message_stop\\ndata: {{\\"type\\":\\"message_stop\\"}}\\n\\n";
        }}
    }}
"""


def stream_nginx(nginx_factory, sim, store="main", buffering="off",
                 max_entry="1m", redis=None, workers=1):
    line = ("ai_gateway_redis 127.0.0.1:%d;" % redis.port) if redis else ""
    return nginx_factory(HTTP.format(sim=sim.port, store=store,
                                     buffering=buffering, redis=line,
                                     max_entry=max_entry), workers=workers)


def chat(n, prompt, max_tokens=16, headers=None, timeout=10):
    body = {"model": "sim", "stream": True, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}
    return requests.post(n.url + "/v1/chat/completions", json=body,
                         headers=headers or {}, timeout=timeout, stream=True)


def read_events(r):
    """What the OpenAI client makes of a stream: the JSON chunks, and
    whether [DONE] ended it."""
    chunks, done = [], False
    for line in r.iter_lines(decode_unicode=True):
        if not line or not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            break
        chunks.append(json.loads(data))
    return chunks, done


def text_of(chunks):
    return "".join(c["choices"][0]["delta"].get("content", "") or ""
                   for c in chunks if c.get("choices"))


def cachez(n):
    return requests.get(n.url + "/cachez", timeout=5).json()


def zone(n, name="main"):
    return cachez(n)["caches"][name]


@pytest.mark.parametrize("buffering", ["off", "on"])
def test_stream_miss_then_hit_replays_identical_events(nginx_factory, sim,
                                                       buffering):
    n = stream_nginx(nginx_factory, sim, buffering=buffering)

    first = chat(n, "tell me a story")
    assert first.status_code == 200
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Content-Type"].startswith("text/event-stream")
    raw_miss = first.content

    second = chat(n, "tell me a story")
    assert second.status_code == 200
    assert second.headers["X-Cache"] == "HIT"
    assert second.headers["Content-Type"].startswith("text/event-stream")
    assert "Age" in second.headers
    raw_hit = second.content

    assert raw_hit == raw_miss, "a HIT replays every stored byte"

    chunks_miss, done_miss = read_events(chat(n, "tell me a story"))
    assert done_miss
    assert len(chunks_miss) >= 16
    assert text_of(chunks_miss)
    assert sim.requests_seen() == 1
    z = zone(n)
    assert z["stores"] == 1 and z["hits"] == 2 and z["misses"] == 1, z


def test_stream_hit_from_redis(nginx_factory, sim, redis_server):
    n = stream_nginx(nginx_factory, sim, store="redis", redis=redis_server)

    first = chat(n, "redis story")
    assert first.headers["X-Cache"] == "MISS"
    raw = first.content

    deadline = time.monotonic() + 5
    while True:
        again = chat(n, "redis story")
        body = again.content
        if again.headers["X-Cache"] == "HIT":
            break
        assert time.monotonic() < deadline, "never stored in Redis"
        time.sleep(0.05)

    assert again.headers["Content-Type"].startswith("text/event-stream")
    assert body == raw
    chunks, done = read_events(chat(n, "redis story"))
    assert done and len(chunks) >= 16


@pytest.mark.parametrize("buffering", ["off", "on"])
def test_cut_stream_is_not_stored(nginx_factory, sim, buffering):
    n = stream_nginx(nginx_factory, sim, buffering=buffering)

    cut = chat(n, "cut me", headers={"X-Sim-Cut": "3"})
    assert cut.headers["X-Cache"] == "MISS"
    try:
        chunks, done = read_events(cut)
    except requests.exceptions.ChunkedEncodingError:
        done = False
    assert not done, "the upstream's cut reaches the client as a cut"
    assert sim.streams_cut() == 1

    # the same prompt (X-Sim-Cut is not part of the key): still a MISS
    whole = chat(n, "cut me")
    assert whole.headers["X-Cache"] == "MISS"
    chunks, done = read_events(whole)
    assert done

    assert chat(n, "cut me").headers["X-Cache"] == "HIT"
    assert zone(n)["stores"] == 1


def test_stream_cut_after_done_marker_is_not_stored(nginx_factory, sim):
    # cut after the last token: still no finish chunk and no [DONE]
    n = stream_nginx(nginx_factory, sim)
    r = chat(n, "almost", max_tokens=4, headers={"X-Sim-Cut": "4"})
    try:
        read_events(r)
    except requests.exceptions.ChunkedEncodingError:
        pass
    assert chat(n, "almost", max_tokens=4).headers["X-Cache"] == "MISS"


def test_oversized_stream_is_not_stored(nginx_factory, sim):
    n = stream_nginx(nginx_factory, sim, max_entry="4k")

    big = chat(n, "a long one", max_tokens=200)
    chunks, done = read_events(big)
    assert done and len(chunks) >= 200, "passed on whole, never held back"

    assert chat(n, "a long one", max_tokens=200).headers["X-Cache"] == "MISS"
    z = zone(n)
    assert z["stores"] == 0 and z["too_large"] >= 1, z


def test_stream_events_are_not_held_back(nginx_factory, sim_factory):
    # 20 tokens 50 ms apart: the first event arrives long before the last
    slow = sim_factory("slow", "--ttft-ms", "50", "--tpot-ms", "50",
                       "--jitter", "0")
    n = stream_nginx(nginx_factory, slow)

    start = time.monotonic()
    r = chat(n, "slow story", max_tokens=20)
    first = None
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: ") and first is None:
            first = time.monotonic() - start
    total = time.monotonic() - start
    assert first is not None and first < total / 2, (first, total)


def test_complete_stream_without_terminal_event_is_not_stored(nginx_factory,
                                                              sim):
    n = stream_nginx(nginx_factory, sim)
    for _ in range(2):
        r = requests.get(n.url + "/origin/noend", timeout=5)
        assert r.status_code == 200 and r.text == 'data: {"a":1}\n\n'
        assert r.headers["X-Cache"] == "MISS"

    for path in ("done", "anthropic"):
        first = requests.get(n.url + "/origin/" + path, timeout=5)
        assert first.headers["X-Cache"] == "MISS"
        again = requests.get(n.url + "/origin/" + path, timeout=5)
        assert again.headers["X-Cache"] == "HIT", path
        assert again.text == first.text
        assert again.headers["Content-Type"] == "text/event-stream"
