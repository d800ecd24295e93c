"""Which of the upstream's response headers the cache stores (issue 21,
item 4; SPEC 3.2 "the end-to-end response headers"): those that describe
the answer, never those about the one request or client it answered.  The
upstream's quota (x-ratelimit-*, anthropic-ratelimit-*, Retry-After),
request and trace ids (x-request-id, request-id, cf-ray) and timings
(openai-processing-ms) are not replayed to another client; and where the
module limits, its x-ratelimit-* and RateLimit-* replace the upstream's
fields of the same names instead of joining them ("a, b")."""

import pytest
import requests

from harness.redis import available
from test_redis import wait_for, wait_connected

needs_redis = pytest.mark.skipif(not available(),
                                 reason="redis-server is not installed")

# what OpenAI and Anthropic send with an answer, besides the answer's own
UPSTREAM_HEADERS = """
            add_header x-ratelimit-limit-tokens 30000;
            add_header x-ratelimit-remaining-tokens 29990;
            add_header x-ratelimit-reset-tokens 20ms;
            add_header x-ratelimit-limit-requests 500;
            add_header x-ratelimit-remaining-requests 499;
            add_header x-ratelimit-reset-requests 120ms;
            add_header anthropic-ratelimit-tokens-remaining 7000;
            add_header RateLimit-Remaining 41;
            add_header Retry-After 7;
            add_header x-request-id req_upstream_1;
            add_header request-id req_011CUpstream;
            add_header openai-processing-ms 412;
            add_header openai-organization org-someone;
            add_header cf-ray 8f00-AMS;
            add_header openai-version 2020-10-01;
            add_header X-Model-Answer kept;
"""

PER_REQUEST = ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
               "x-ratelimit-reset-tokens", "x-ratelimit-limit-requests",
               "x-ratelimit-remaining-requests",
               "x-ratelimit-reset-requests",
               "anthropic-ratelimit-tokens-remaining", "RateLimit-Remaining",
               "Retry-After", "x-request-id", "request-id",
               "openai-processing-ms", "openai-organization", "cf-ray"]

HTTP = """
    {redis}
    ai_gateway_cache_zone zone=main:1m;
    ai_gateway_limit_zone $http_x_user zone=rq:1m rate=1r/s burst=50;
    server {{
        listen 127.0.0.1:%%PORT%%;

        location = /cachez {{ ai_gateway_cachez; }}

        location /c/ {{
            ai_gateway_cache {store};
            proxy_pass http://127.0.0.1:%%PORT%%/origin/;
        }}

        # limited and cached, with OpenAI's fields and the IETF ones
        location /lim/ {{
            ai_gateway_cache {store};
            ai_gateway_limit zone=rq;
            ai_gateway_limit_headers all;
            proxy_pass http://127.0.0.1:%%PORT%%/origin/;
        }}

        # limited, not cached
        location /pass/ {{
            ai_gateway_limit zone=rq;
            ai_gateway_limit_headers all;
            proxy_pass http://127.0.0.1:%%PORT%%/origin/;
        }}

        location /origin/ {{
            {upstream_headers}
            default_type application/json;
            return 200 '{{"answer":42}}';
        }}
    }}
"""


def start(nginx_factory, store="main", redis=""):
    return nginx_factory(HTTP.format(store=store, redis=redis,
                                     upstream_headers=UPSTREAM_HEADERS))


def get(n, path, user="a"):
    r = requests.get(n.url + path, headers={"X-User": user}, timeout=5)
    assert r.status_code == 200, (r.status_code, r.text)
    return r


def lines(r, name):
    """Every line of a response header, not joined (requests joins)."""
    return [v for k, v in r.raw.headers.items() if k.lower() == name.lower()]


def test_a_hit_replays_no_per_request_header(nginx_factory):
    n = start(nginx_factory)
    miss = get(n, "/c/x")
    assert miss.headers["X-Cache"] == "MISS"
    # a MISS is the upstream's own answer to this client: passed as it is
    assert miss.headers["x-request-id"] == "req_upstream_1"
    assert miss.headers["x-ratelimit-remaining-tokens"] == "29990"

    hit = get(n, "/c/x", user="b")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.text == '{"answer":42}'
    for name in PER_REQUEST:
        # before: another client's quota and request id, replayed
        assert name not in hit.headers, (name, dict(hit.headers))
    assert hit.headers["openai-version"] == "2020-10-01"
    assert hit.headers["X-Model-Answer"] == "kept"
    assert hit.headers["Content-Type"] == "application/json"


def test_the_module_fields_replace_the_upstreams(nginx_factory):
    n = start(nginx_factory)
    for path in ("/pass/y", "/lim/y"):
        r = get(n, path)
        for name in ("x-ratelimit-limit-requests",
                     "x-ratelimit-remaining-requests",
                     "x-ratelimit-reset-requests", "RateLimit-Remaining"):
            # before: the upstream's line and the module's ("a, b")
            assert len(lines(r, name)) == 1, (path, name, r.raw.headers)
        assert r.headers["x-ratelimit-limit-requests"] == "50", r.headers
        assert int(r.headers["x-ratelimit-remaining-requests"]) < 50
        assert r.headers["RateLimit-Remaining"] == \
            r.headers["x-ratelimit-remaining-requests"]
        # a field the module does not write here is the upstream's
        assert r.headers["x-ratelimit-remaining-tokens"] == "29990"

    # the HIT (not charged): the module's figures, none of the upstream's
    r = get(n, "/lim/y", user="c")
    assert r.headers["X-Cache"] == "HIT"
    assert lines(r, "x-ratelimit-remaining-requests") == ["50"], \
        r.raw.headers
    assert lines(r, "RateLimit-Remaining") == ["50"], r.raw.headers
    assert "x-ratelimit-remaining-tokens" not in r.headers
    assert "x-request-id" not in r.headers


@needs_redis
def test_redis_entries_hold_no_per_request_header(nginx_factory,
                                                  redis_server):
    n = start(nginx_factory, store="redis",
              redis="ai_gateway_redis 127.0.0.1:%d;" % redis_server.port)
    wait_connected(n)
    rc = redis_server.client()
    assert get(n, "/c/z").headers["X-Cache"] == "MISS"
    key, = wait_for(lambda: rc.keys("gw:v1:*"), 5, "the entry in Redis")
    stored = rc.hget(key, "headers").decode().lower()
    for name in PER_REQUEST:
        assert name.lower() + ":" not in stored, (name, stored)
    assert "openai-version: 2020-10-01\r\n" in stored, stored

    # an entry that holds one anyway was not written by a gateway: a MISS
    rc.hset(key, "headers", "Content-Type: application/json\r\n"
                            "x-ratelimit-remaining-tokens: 1\r\n")
    assert get(n, "/c/z").headers["X-Cache"] == "MISS"
