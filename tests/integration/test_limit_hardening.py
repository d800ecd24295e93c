"""The limiter against hostile input and a moving wall clock (issue 11):
costs that can never fit, a constant empty key, a drained client's body,
and buckets that run on the monotonic clock.
"""

import json
import os
import shutil
import socket
import time

import pytest

from harness.nginx import SANITIZE, private_dir
from test_limit import Client, cachez, conf_line, server

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def test_cost_too_large_to_hold_never_fits(nginx_factory):
    """A cost from client input larger than any number the limiter holds
    is larger than any burst: refused as never fitting, never charged 1."""
    n = nginx_factory(server("""
        location / { ai_gateway_limit zone=z cost=$http_x_cost; empty_gif; }
""", "ai_gateway_limit_zone k zone=z:1m rate=1r/m burst=10;"))
    c = Client(n)

    for cost in ("99999999999999999999", "18446744073709551616",
                 "9223372036854775808" + "0" * 30):
        status, h, body = c.get("/", headers={"X-Cost": cost})
        assert status == 429, "cost %s passed: %s" % (cost, h)
        doc = json.loads(body)
        assert doc == {"error": "cost_exceeds_limit", "scope": "z",
                       "limit": 10}, doc
        assert h["x-should-retry"] == "false", h
        assert "retry-after" not in h and "retry-after-ms" not in h, h
        assert h["ratelimit-scope"] == "z", h
        # nothing was taken
        assert h["ratelimit-remaining"] == "10", h

    assert "not a number" not in n.log()
    assert c.get("/", headers={"X-Cost": "1"})[1]["ratelimit-remaining"] \
        == "9"
    assert cachez(n)["limits"]["z"]["rejected"] == 3


def test_cost_above_burst_never_fits_and_takes_from_no_zone(nginx_factory):
    """A cost above burst can never pass: no Retry-After (OpenAI clients
    would retry at once, forever), x-should-retry: false, a JSON error of
    its own; the other zones of the location are not charged."""
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=other;
            ai_gateway_limit zone=z cost=$http_x_cost;
            empty_gif;
        }
""", """
    ai_gateway_limit_zone k zone=z:1m rate=1r/m burst=10;
    ai_gateway_limit_zone k zone=other:1m rate=1r/m burst=5;
"""))
    c = Client(n)

    status, h, body = c.get("/", headers={"X-Cost": "11"})
    assert status == 429, h
    assert json.loads(body)["error"] == "cost_exceeds_limit", body
    assert h["x-should-retry"] == "false", h
    assert "retry-after" not in h, h
    assert h["ratelimit-scope"] == "z", h

    # a cost that only has to wait is told when to come back
    status, h, _ = c.get("/", headers={"X-Cost": "10"})
    assert status == 200, h
    status, h, body = c.get("/", headers={"X-Cost": "10"})
    assert status == 429 and json.loads(body)["error"] == "rate_limited", h
    assert int(h["retry-after"]) >= 1 and "x-should-retry" not in h, h

    figures = cachez(n)["limits"]
    # "other" paid only for the one request that passed
    assert figures["other"]["passed"] == 1, figures
    assert figures["z"]["rejected"] == 2, figures
    status, h, _ = c.get("/", headers={"X-Cost": "0"})
    assert status == 429 and h["ratelimit-scope"] == "z", h


def test_dry_run_cost_above_burst_never_vetoes(nginx_factory):
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=z cost=$http_x_cost dry_run;
            empty_gif;
        }
""", "ai_gateway_limit_zone k zone=z:1m rate=1r/m burst=10;"))
    status, h, _ = Client(n).get("/", headers={"X-Cost": "99999999999999999999"})
    assert status == 200, h


def test_constant_empty_key_refused(nginx_factory):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=a; empty_gif; }",
        'ai_gateway_limit_zone "" zone=a:1m rate=1r/s burst=1;'), start=False)
    rc, out = n.test_config()
    assert rc != 0, out
    line = conf_line(n, 'ai_gateway_limit_zone ""')
    assert ('the key of "ai_gateway_limit_zone" is an empty string, so the '
            'zone would never apply in %s:%d' % (n.conf_path, line)) in out, out
    n.skip_alerts.append(".")


def partial_post(port, path, xff, declared, sent=b"x" * 100, timeout=3.0):
    """Send a POST's headers and only the start of its body; return what
    nginx answers before the rest of the body would ever arrive."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(("POST %s HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: %s\r\n"
                   "Content-Length: %d\r\nContent-Type: application/json\r\n"
                   "\r\n" % (path, xff, declared)).encode() + sent)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data
    except socket.timeout:
        return b""
    finally:
        s.close()


def test_drained_client_refused_before_its_body_is_read(nginx_factory, sim):
    """A client without tokens for a MISS, on a zone that charges HITs
    too, is refused before nginx reads (and spools, and digests) its body:
    the 429 comes while the body is still on its way.  Before, nginx waited
    for the whole body.  A zone that lets HITs through free cannot refuse
    that early (issue 21, item 11): the body is read and looked up, and the
    drained client still gets its HIT."""
    n = nginx_factory(server("""
        location / {
            ai_gateway_cache c;
            ai_gateway_cache_methods POST;
            ai_gateway_limit zone=per_client charge_hits;
            client_body_buffer_size 8k;
            proxy_pass http://127.0.0.1:%d;
        }

        location /free/ {
            ai_gateway_cache c;
            ai_gateway_cache_methods POST;
            ai_gateway_limit zone=per_client;
            client_body_buffer_size 8k;
            proxy_pass http://127.0.0.1:%d/;
        }
""" % (sim.port, sim.port), """
    ai_gateway_cache_zone zone=c:1m;
    ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m
                          rate=1r/m burst=1;
"""))
    c = Client(n)
    body = json.dumps({"prompt": "hello", "max_tokens": 4})
    status, h, _ = c.request("POST", "/infer", {"X-Forwarded-For": "10.0.0.7",
                                                "Content-Type":
                                                "application/json"}, body)
    assert status == 200, h

    answer = partial_post(n.port, "/infer", "10.0.0.7", 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 429"), \
        "no answer before the body was complete: %r" % answer[:200]
    assert b"\r\nRetry-After: " in answer, answer

    # another client with tokens is read, looked up and answered as ever
    answer = partial_post(n.port, "/infer", "10.0.0.8", 100, b"x" * 100)
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    assert not answer.startswith(b"HTTP/1.1 429"), answer[:200]

    # where HITs are free, a client that spent its token on a MISS...
    status, h, _ = c.request("POST", "/free/infer",
                             {"X-Forwarded-For": "10.0.0.20",
                              "Content-Type": "application/json"}, body)
    assert status == 200 and h.get("x-cache") == "MISS", h

    # ...has its body waited for...
    answer = partial_post(n.port, "/free/infer", "10.0.0.20", 1024 * 1024,
                          timeout=1.0)
    assert answer == b"", "answered before its body came: %r" % answer[:200]

    # ...and its identical prompt is a free HIT, its bucket still empty
    status, h, _ = c.request("POST", "/free/infer",
                             {"X-Forwarded-For": "10.0.0.20",
                              "Content-Type": "application/json"}, body)
    assert status == 200 and h.get("x-cache") == "HIT", h
    assert h["ratelimit-remaining"] == "0", h

    # the identical prompt is still a free HIT for a client with tokens
    status, h, _ = c.request("POST", "/free/infer",
                             {"X-Forwarded-For": "10.0.0.9",
                              "Content-Type": "application/json"}, body)
    assert status == 200 and h.get("x-cache") == "HIT", h
    assert h["ratelimit-remaining"] == "1", "a HIT was charged: %s" % h


@pytest.fixture
def wall_clock():
    """A wall clock offset the test can step: libfaketime preloaded into
    nginx, reading its offset from a file at every call, the monotonic
    clock left alone."""
    if not os.path.exists(FAKETIME):
        pytest.skip("libfaketime is not installed")
    if SANITIZE:
        # both preloads intercept the clock calls and hang nginx at start;
        # the plain run covers this test
        pytest.skip("libfaketime deadlocks with libasan")
    d = private_dir("agw-clock-")      # the workers run as nobody
    path = os.path.join(d, "offset")

    def step(seconds):
        with open(path + ".new", "w") as f:
            f.write("%+d\n" % seconds)
        os.chmod(path + ".new", 0o644)
        os.rename(path + ".new", path)

    step(0)
    step.path = path
    yield step
    shutil.rmtree(d, ignore_errors=True)


def faketime_env(step):
    return {"LD_PRELOAD": FAKETIME,
            "FAKETIME_TIMESTAMP_FILE": step.path,
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def test_buckets_ignore_wall_clock_steps(nginx_factory, wall_clock):
    """Shared-memory buckets refill by the monotonic clock: stepping the
    wall clock back an hour does not freeze them (false 429s for
    everyone), stepping it forward does not refill them at once."""
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=z; empty_gif; }",
        "ai_gateway_limit_zone $binary_remote_addr zone=z:1m "
        "rate=2r/s burst=2;"), env=faketime_env(wall_clock),
        # nginx clears the environment of its workers but for these
        main="env FAKETIME_TIMESTAMP_FILE; env FAKETIME_NO_CACHE;\n"
             "env FAKETIME_DONT_FAKE_MONOTONIC;")
    c = Client(n)

    def drain(xff):
        while c.get("/", xff)[0] == 200:
            pass

    # the preloaded clock is in force: the Date header moves with it
    wall_clock(-3600)
    date = c.get("/", "10.1.0.9")[1]["date"]
    assert abs(time.mktime(time.strptime(date, "%a, %d %b %Y %H:%M:%S GMT"))
               - time.mktime(time.gmtime()) + 3600) < 60, date
    wall_clock(0)

    # back an hour: a drained bucket still refills within a second
    drain("10.1.0.1")
    wall_clock(-3600)
    time.sleep(1.2)
    status, h, _ = c.get("/", "10.1.0.1")
    assert status == 200, "the bucket froze when the clock went back: %s" % h

    # forward a day: a drained bucket is not refilled by it
    wall_clock(0)
    drain("10.1.0.2")
    wall_clock(86400)
    time.sleep(0.05)
    status, h, _ = c.get("/", "10.1.0.2")
    assert status == 429, "the clock step refilled the bucket: %s" % h
