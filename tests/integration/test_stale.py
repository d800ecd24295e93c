"""Stale on error (SPEC 7.2: ai_gateway_cache_use_stale, ai_gateway_cache_stale):
an entry expired by at most the stale time answers, with X-Cache: STALE and
its Age, when the upstream fails in a listed way, and not after the window
or for a failure not listed."""

import http.server
import threading
import time

import pytest
import requests

HTTP = """
    ai_gateway_cache_zone zone=main:1m;
    server {{
        listen 127.0.0.1:%%PORT%%;

        location = /cachez {{ ai_gateway_cachez; }}

        location /s/ {{
            ai_gateway_cache main;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_stale 3s;
            ai_gateway_cache_use_stale error timeout http_502 http_429;
            proxy_pass http://127.0.0.1:{origin}/;
        }}

        # only here can the upstream time out: elsewhere a loaded test
        # machine must not turn a slow answer into a timeout
        location /t/ {{
            ai_gateway_cache main;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_stale 3s;
            ai_gateway_cache_use_stale timeout;
            proxy_read_timeout 500ms;
            proxy_pass http://127.0.0.1:{origin}/;
        }}

        location /nostale/ {{
            ai_gateway_cache main;
            ai_gateway_cache_ttl 1s;
            ai_gateway_cache_stale 3s;
            proxy_pass http://127.0.0.1:{origin}/;
        }}
    }}
"""


class Origin:
    """An upstream whose answer the test picks: "ok" (200 with a version),
    a status code, or "slow" (past proxy_read_timeout)."""

    def __init__(self):
        self.mode = "ok"
        self.version = 1
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                mode = origin.mode
                if mode == "slow":
                    time.sleep(3)
                    mode = "ok"
                if mode == "ok":
                    body = b"v%d" % origin.version
                    self.send_response(200)
                else:
                    body = b"failed"
                    self.send_response(int(mode))
                self.send_header("Content-Type", "text/plain")
                self.send_header("X-Origin", "yes")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


def stale_nginx(nginx_factory, origin):
    return nginx_factory(HTTP.format(origin=origin.port))


def get(n, path):
    return requests.get(n.url + path, timeout=5)


def stale_count(n):
    return get(n, "/cachez").json()["caches"]["main"]["stale"]


def expire_then(n, origin, path, mode):
    first = get(n, path)
    assert first.headers["X-Cache"] == "MISS" and first.text == "v1"
    time.sleep(1.3)                       # past the 1 s TTL
    origin.mode = mode
    return get(n, path)


@pytest.mark.parametrize("mode", ["502", "429"])
def test_stale_answers_a_listed_upstream_status(nginx_factory, origin, mode):
    n = stale_nginx(nginx_factory, origin)
    r = expire_then(n, origin, "/s/a", mode)
    assert r.status_code == 200
    assert r.headers["X-Cache"] == "STALE"
    assert r.text == "v1"
    assert r.headers["X-Origin"] == "yes"
    assert r.headers["Content-Type"] == "text/plain"
    assert int(r.headers["Age"]) >= 1
    assert stale_count(n) == 1


def test_stale_answers_an_upstream_timeout(nginx_factory, origin):
    n = stale_nginx(nginx_factory, origin)
    r = expire_then(n, origin, "/t/t", "slow")
    assert r.status_code == 200 and r.headers["X-Cache"] == "STALE"
    assert r.text == "v1"


def test_stale_answers_an_upstream_that_is_down(nginx_factory, origin):
    n = stale_nginx(nginx_factory, origin)
    n.skip_alerts.append("Connection refused")
    first = get(n, "/s/d")
    assert first.headers["X-Cache"] == "MISS"
    time.sleep(1.3)
    origin.stop()
    r = get(n, "/s/d")
    assert r.status_code == 200 and r.headers["X-Cache"] == "STALE"
    assert r.text == "v1"


def test_a_failure_not_listed_passes(nginx_factory, origin):
    n = stale_nginx(nginx_factory, origin)
    r = expire_then(n, origin, "/s/u", "503")
    assert r.status_code == 503 and r.headers["X-Cache"] == "MISS"
    assert r.text == "failed"

    origin.mode = "ok"
    r = expire_then(n, origin, "/nostale/u", "502")
    assert r.status_code == 502 and r.headers["X-Cache"] == "MISS"
    assert stale_count(n) == 0


def test_no_stale_past_the_window(nginx_factory, origin):
    n = stale_nginx(nginx_factory, origin)
    first = get(n, "/s/w")
    assert first.headers["X-Cache"] == "MISS"
    time.sleep(4.3)                       # past TTL + stale
    origin.mode = "502"
    r = get(n, "/s/w")
    assert r.status_code == 502 and r.headers["X-Cache"] == "MISS"
    assert stale_count(n) == 0


def test_a_stale_entry_is_refreshed_by_a_good_answer(nginx_factory, origin):
    n = stale_nginx(nginx_factory, origin)
    origin.version = 1
    get(n, "/s/r")
    time.sleep(1.3)
    origin.version = 2
    r = get(n, "/s/r")
    assert r.headers["X-Cache"] == "MISS" and r.text == "v2"
    r = get(n, "/s/r")
    assert r.headers["X-Cache"] == "HIT" and r.text == "v2"


@pytest.mark.parametrize("value", ["http_418", "error off"])
def test_use_stale_rejects_bad_values(nginx_factory, origin, value):
    n = nginx_factory(HTTP.format(origin=origin.port).replace(
        "error timeout http_502 http_429", value), start=False)
    rc, out = n.test_config()
    assert rc != 0
    assert "ai_gateway_cache_use_stale" in out
