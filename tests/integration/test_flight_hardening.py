"""Single flight hardened (issue 21, items 1, 3, 5, 6): a flight belongs to
one location (its store and key definition), a stream that reports an
error is never stored nor handed on as a success, waiters get the whole
of an answer too large to store, and a leader that answers stale takes
its waiters with it.  The upstream is scripted (harness/scripted.py), so
that what it sends, and when, is exact."""

import json
import threading
import time

import pytest
import requests

from harness.scripted import Answer, Scripted, sse, stream
from test_single_flight import burst, raw_post, words

CHAT = {"model": "sim", "stream": True, "max_tokens": 8,
        "messages": [{"role": "user", "content": "the same prompt"}]}

CHUNK = json.dumps({"id": "c1", "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {"content": "hi"}}]})


def chat_stream(*extra, first=0.6, gap=0.05):
    """a Chat Completions stream: a token after `first` s, then `extra`
    events, then [DONE]"""
    pieces = [(first, sse(CHUNK))]
    pieces += [(gap, sse(e)) for e in extra]
    pieces.append((gap, sse("[DONE]")))
    return stream(*pieces)


@pytest.fixture
def upstreams():
    started = []

    def start():
        up = Scripted().start()
        started.append(up)
        return up

    yield start
    for up in started:
        up.stop()


def cachez(n):
    return requests.get(n.url + "/cachez", timeout=5).json()


def at(delay, fn):
    """fn() in a thread after delay s; join() gives its result"""
    out = {}

    def run():
        time.sleep(delay)
        try:
            out["r"] = fn()
        except BaseException as e:      # re-raised by join(), with its cause
            out["e"] = e

    t = threading.Thread(target=run)
    t.start()

    class Joined:
        def join(self, timeout=20):
            t.join(timeout)
            assert not t.is_alive(), "a client hangs"
            if "e" in out:
                raise out["e"]
            return out["r"]
    return Joined()


# -- item 1: a flight belongs to one store and one key definition ---------

ITEM1 = """
    ai_gateway_cache_zone zone=za:4m;
    ai_gateway_cache_zone zone=zb:4m;
    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /cachez {{ ai_gateway_cachez; }}
        ai_gateway_cache_methods POST;
        proxy_buffering off;
        # one key text, one body digest for every location below
        ai_gateway_cache_key "k$http_x_k";
        ai_gateway_cache_key_json on;

        location /a/ {{ ai_gateway_cache za;
                       proxy_pass http://127.0.0.1:{a}; }}
        location /a2/ {{ ai_gateway_cache za;
                        proxy_pass http://127.0.0.1:{a}; }}
        location /b/ {{ ai_gateway_cache zb;
                       proxy_pass http://127.0.0.1:{b}; }}
        location /c/ {{ ai_gateway_cache za;
                       proxy_pass http://127.0.0.1:{b}; }}
        location /d/ {{ ai_gateway_cache za;
                       ai_gateway_cache_key_ignore user;
                       proxy_pass http://127.0.0.1:{a}; }}
        {more}
    }}
"""


@pytest.mark.parametrize("other", ["/b/", "/c/", "/d/"],
                         ids=["other-zone-and-upstream", "other-upstream",
                              "other-key-definition"])
def test_locations_never_share_flights(nginx_factory, upstreams, other):
    a, b = upstreams(), upstreams()
    a.script = lambda path, body: chat_stream('"from a"', first=0.8)
    b.script = lambda path, body: chat_stream('"from b"', first=0.1)
    n = nginx_factory(ITEM1.format(a=a.port, b=b.port, more=""), workers=2)

    first = at(0, lambda: raw_post(n, "/a/x", CHAT))
    time.sleep(0.3)                      # /a/ is on its way upstream
    second = raw_post(n, other + "x", CHAT)
    first = first.join()

    assert first["headers"]["x-cache"] == "MISS"
    # its own answer, from its own upstream: never /a/'s
    assert second["headers"]["x-cache"] == "MISS", second["headers"]
    upstream = b if other != "/d/" else a
    assert b'"from %s"' % (b"b" if upstream is b else b"a") \
        in second["body"]
    assert a.requests + b.requests == 2


def test_a_near_zone_is_not_its_cache_zone(nginx_factory, upstreams,
                                           redis_server):
    # za is /a/'s cache and, in front of Redis, /n/'s near zone
    a, b = upstreams(), upstreams()
    a.script = lambda path, body: chat_stream('"from a"', first=0.8)
    b.script = lambda path, body: chat_stream('"from b"', first=0.1)
    more = ("location /n/ { ai_gateway_cache redis; "
            "ai_gateway_cache_near za; proxy_pass http://127.0.0.1:%d; }"
            % b.port)
    http = "ai_gateway_redis 127.0.0.1:%d;" % redis_server.port + \
        ITEM1.format(a=a.port, b=b.port, more=more)
    n = nginx_factory(http, workers=2)

    first = at(0, lambda: raw_post(n, "/a/x", CHAT))
    time.sleep(0.3)
    second = raw_post(n, "/n/x", CHAT)
    first = first.join()
    assert second["headers"]["x-cache"] == "MISS", second["headers"]
    assert b'"from b"' in second["body"]
    assert a.requests == 1 and b.requests == 1


def test_one_location_still_coalesces(nginx_factory, upstreams):
    a, b = upstreams(), upstreams()
    a.script = lambda path, body: chat_stream('"from a"', first=0.8)
    n = nginx_factory(ITEM1.format(a=a.port, b=b.port, more=""), workers=2)
    results = burst(n, "/a/x", CHAT, 10)
    assert a.requests == 1
    assert words(results).count("COALESCED") >= 8
    assert len({r["body"] for r in results}) == 1


# -- item 3: a stream that reported an error is never stored -------------

ITEM3 = """
    ai_gateway_cache_zone zone=main:4m;
    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /cachez {{ ai_gateway_cachez; }}
        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
"""

ERRORS = {
    # what OpenAI and vLLM send when a generation fails: then [DONE]
    "chat-error-object": chat_stream(json.dumps(
        {"error": {"message": "overloaded", "type": "server_error",
                   "code": 500}})),
    "vllm-object-error": chat_stream(json.dumps(
        {"object": "error", "message": "CUDA out of memory",
         "type": "InternalServerError", "code": 500})),
    "anthropic-error-event": stream(
        (0.6, sse(("message_start", '{"type":"message_start"}'))),
        (0.05, sse(("error", '{"type":"error","error":'
                             '{"type":"overloaded_error"}}'))),
        (0.05, sse(("message_stop", '{"type":"message_stop"}')))),
    "responses-failed": stream(
        (0.6, sse(("response.created", '{"type":"response.created"}'))),
        (0.05, sse(("response.failed", '{"type":"response.failed",'
                                       '"response":{"status":"failed"}}'))),
        (0.05, sse(("response.completed",
                    '{"type":"response.completed"}')))),
    "responses-incomplete": stream(
        (0.6, sse('{"type":"response.incomplete","response":'
                  '{"status":"incomplete"}}')),
        (0.05, sse('{"type":"response.completed"}'))),
}


@pytest.mark.parametrize("kind", sorted(ERRORS))
def test_a_stream_that_reported_an_error_is_not_stored(nginx_factory,
                                                       upstreams, kind):
    up = upstreams()
    up.script = lambda path, body: ERRORS[kind]
    n = nginx_factory(ITEM3.format(up=up.port))

    first = raw_post(n, "/v1/chat/completions", CHAT)
    assert first["status"] == 200
    assert first["headers"]["x-cache"] == "MISS"

    again = raw_post(n, "/v1/chat/completions", CHAT)
    assert again["headers"]["x-cache"] == "MISS", "an error was replayed"
    assert up.requests == 2
    assert cachez(n)["caches"]["main"]["stores"] == 0


def test_waiters_of_an_error_stream_get_the_error_not_a_replay(
        nginx_factory, upstreams):
    # the error comes 0.6 s in, the stream ends 0.6 s later
    up = upstreams()
    up.script = lambda path, body: stream(
        (0.6, sse(CHUNK)),
        (0.05, sse(json.dumps({"error": {"message": "overloaded"}}))),
        (0.6, sse("[DONE]")))
    n = nginx_factory(ITEM3.format(up=up.port), workers=2)

    # waiters that joined before the error: the same events, then the end
    waiters = at(0, lambda: burst(n, "/v1/chat/completions", CHAT, 6,
                                  stagger=0.02))
    # one that comes after the error went by: not made a waiter of it
    late = at(0.9, lambda: raw_post(n, "/v1/chat/completions", CHAT))
    results = waiters.join()
    late = late.join()

    leader = [r for r in results if r["headers"]["x-cache"] == "MISS"]
    coalesced = [r for r in results
                 if r["headers"]["x-cache"] == "COALESCED"]
    assert len(leader) == 1 and len(coalesced) == 5, words(results)
    for r in coalesced:
        assert r["body"] == leader[0]["body"]
        assert b'"error"' in r["body"] and r["body"].endswith(
            b"data: [DONE]\n\n")
    assert late["headers"]["x-cache"] == "MISS"
    assert up.requests == 2
    # and nothing of it was kept
    assert raw_post(n, "/v1/chat/completions", CHAT)["headers"][
        "x-cache"] == "MISS"
    assert cachez(n)["caches"]["main"]["stores"] == 0


# -- item 5: an answer too large to store is still shared whole -----------

ITEM5 = """
    ai_gateway_cache_zone zone=main:4m max_entry_size=64k;
    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /cachez {{ ai_gateway_cachez; }}
        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            proxy_buffering off;
            proxy_pass http://127.0.0.1:{up};
        }}
        location /json/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
"""


def long_stream(events=100, size=2000, first=0.5, gap=0.01):
    """about events * size bytes over events * gap s: far past 64k"""
    text = "x" * size
    chunk = json.dumps({"choices": [{"index": 0,
                                     "delta": {"content": text}}]})
    pieces = [(first if i == 0 else gap, sse(chunk)) for i in range(events)]
    pieces.append((gap, sse("[DONE]")))
    return stream(*pieces)


def test_waiters_get_all_of_a_stream_too_large_to_store(nginx_factory,
                                                        upstreams):
    up = upstreams()
    up.script = lambda path, body: long_stream()
    n = nginx_factory(ITEM5.format(up=up.port), workers=2)

    results = burst(n, "/v1/chat/completions", CHAT, 6, stagger=0.02)
    leader = [r for r in results if r["headers"]["x-cache"] == "MISS"]
    coalesced = [r for r in results
                 if r["headers"]["x-cache"] == "COALESCED"]
    assert len(leader) == 1 and len(coalesced) == 5, words(results)
    assert len(leader[0]["body"]) > 180000
    assert leader[0]["body"].endswith(b"data: [DONE]\n\n")
    for r in coalesced:
        assert r["body"] == leader[0]["body"], "a waiter was cut short"
    assert up.requests == 1

    # not stored; and nobody waits on it once its start is gone
    z = cachez(n)["caches"]["main"]
    assert z["stores"] == 0 and z["too_large"] >= 1
    assert raw_post(n, "/v1/chat/completions", CHAT)["headers"][
        "x-cache"] == "MISS"


def test_a_late_request_does_not_wait_on_a_stream_it_cannot_read_whole(
        nginx_factory, upstreams):
    # 1.6 MB over 2 s: the flight keeps its last megabyte (max_entry_size
    # is smaller), so from about 1.3 s on its start is gone
    up = upstreams()
    up.script = lambda path, body: long_stream(events=400, size=4000,
                                               gap=0.005, first=0.2)
    n = nginx_factory(ITEM5.format(up=up.port), workers=2)

    got = {}
    first = at(0, lambda: raw_post(n, "/v1/chat/completions", CHAT,
                                   progress=got))
    deadline = time.monotonic() + 20
    while got.get("bytes", 0) < 1200000:
        assert time.monotonic() < deadline, got
        time.sleep(0.01)
    late = raw_post(n, "/v1/chat/completions", CHAT)
    first = first.join()
    assert late["headers"]["x-cache"] == "MISS"
    assert late["body"] == first["body"]
    assert up.requests == 2


def test_waiters_get_a_json_answer_too_large_to_store(nginx_factory,
                                                      upstreams):
    body = json.dumps({"output": "y" * 150000}).encode()
    up = upstreams()
    # the header late: the waiters joined before the leader knew the
    # answer too large to store (once it knows and nobody waits, nobody
    # may join: test_a_late_request_does_not_wait_on_...)
    up.script = lambda path, b: Answer(
        200, {"Content-Type": "application/json"},
        [(0, body[:1000]), (0.05, body[1000:])], length=len(body),
        delay=0.6)
    n = nginx_factory(ITEM5.format(up=up.port), workers=2)

    results = burst(n, "/json/x", {"prompt": "big"}, 6, stagger=0.02)
    assert up.requests == 1, words(results)
    assert all(r["status"] == 200 and r["body"] == body for r in results)
    assert words(results).count("COALESCED") == 5


# -- item 6: a leader that answers stale takes its waiters with it --------

ITEM6 = """
    ai_gateway_cache_zone zone=main:4m;
    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /cachez {{ ai_gateway_cachez; }}
        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_stale 60s;
            ai_gateway_cache_use_stale error timeout http_500 http_502;
            proxy_pass http://127.0.0.1:{up};
        }}
    }}
"""


def test_waiters_answer_stale_with_their_leader(nginx_factory, upstreams):
    up = upstreams()
    good = json.dumps({"output": "the good answer"}).encode()
    up.script = lambda path, b: Answer(
        200, {"Content-Type": "application/json"}, [(0, good)],
        length=len(good))
    n = nginx_factory(ITEM6.format(up=up.port), workers=2)

    assert raw_post(n, "/v1/x", {"prompt": "p"})["body"] == good
    time.sleep(1.5)                       # past its 1 s TTL: stale

    # the upstream now fails, slowly: 3 s, then a 500
    up.script = lambda path, b: Answer(
        500, {"Content-Type": "application/json"},
        [(0, b'{"error":"down"}')], length=16, delay=3.0)
    before = up.requests
    start = time.monotonic()
    results = burst(n, "/v1/x", {"prompt": "p"}, 20)
    took = time.monotonic() - start

    assert up.requests - before == 1, "the herd went upstream"
    assert all(r["status"] == 200 and r["body"] == good for r in results)
    assert words(results) == ["STALE"] * 20
    assert all("age" in r["headers"] for r in results)
    assert cachez(n)["caches"]["main"]["stale"] == 20
    print("\n20 stale answers in %.2f s (the leader's upstream: 3 s)" % took)
