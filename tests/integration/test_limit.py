"""Token-bucket rate limiting (SPEC 3.1): ai_gateway_limit_zone,
ai_gateway_limit, ai_gateway_limit_status, ai_gateway_limit_headers.

Rates are slow (1r/m, 10r/m) so that refill during a test is at most a
fraction of a token and counts are exact; where a figure depends on
elapsed time, the assert allows for it and says why.  Locations answer
with empty_gif (a content handler, so the PRECONTENT phase runs, unlike
`return`) or proxy to ai-sim.  "Clients" are X-Forwarded-For addresses
trusted from loopback by the realip module, as in the shipped configs.
"""

import concurrent.futures
import http.client
import json
import os
import re
import shutil
import subprocess
import time

import pytest

# a request zone reports no token (or money) figures
NO_TOKENS = {"reserved": 0, "settled": 0, "returned": 0, "overrun": 0,
             "unpriced": 0}

REALIP = """
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
"""


def server(locations, zones, extra=""):
    return """%s
    %s
    %s
    server {
        listen 127.0.0.1:%%%%PORT%%%%;
        location = /cachez { ai_gateway_cachez; }
%s
    }
""" % (REALIP, zones, extra, locations)


class Client:
    """One keep-alive connection; get() returns (status, headers, body)
    with lower-case header names and never raises on a 4xx/5xx."""

    def __init__(self, n):
        self.port = n.port
        self.conn = None

    def request(self, method, path, headers=None, body=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=10)
            try:
                self.conn.request(method, path, body=body,
                                  headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                hdrs = {k.lower(): v for k, v in r.getheaders()}
                if r.will_close:
                    self.close()
                return r.status, hdrs, data
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError):
                # a keep-alive connection closed by a reload: retry once
                self.close()
                if attempt:
                    raise

    def get(self, path, xff=None, headers=None):
        h = dict(headers or {})
        if xff:
            h["X-Forwarded-For"] = xff
        return self.request("GET", path, h)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def get(n, path, xff=None, headers=None):
    """A request on a connection of its own, so that with workers=2 the
    requests of one test land on both workers."""
    c = Client(n)
    try:
        return c.get(path, xff, headers)
    finally:
        c.close()


def cachez(n):
    status, _, body = get(n, "/cachez")
    assert status == 200, "/cachez answered %d" % status
    return json.loads(body)


def conf_line(n, text):
    """The line number of `text` in the rendered nginx.conf."""
    with open(n.conf_path) as f:
        for i, line in enumerate(f, 1):
            if text in line:
                return i
    raise AssertionError("%r not in nginx.conf" % text)


def test_limit_burst_then_reject_with_headers(nginx_factory):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=per_client; empty_gif; }",
        "ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m "
        "rate=1r/m burst=3;"), workers=2)

    # 1r/m: refill during the test is under a token, so exactly burst pass
    seen = []
    for i in range(5):
        seen.append(get(n, "/x", "10.0.0.1"))

    for i, (status, h, _) in enumerate(seen[:3]):
        assert status == 200, "request %d within burst: %d" % (i, status)
        assert h.get("ratelimit-limit") == "3", h
        assert h.get("ratelimit-remaining") == str(2 - i), \
            "remaining after request %d: %s" % (i, h)
        assert h.get("ratelimit-policy") == '"per_client";q=3;w=180', h
        assert "retry-after" not in h, "Retry-After on a 200: %s" % h

    # 3 tokens spent at 1 token/min: full again in 180 s minus elapsed time
    assert 170 <= int(seen[2][1]["ratelimit-reset"]) <= 180, seen[2][1]

    for status, h, body in seen[3:]:
        assert status == 429, "request over burst: %d" % status
        assert h.get("content-type") == "application/json", h
        assert h.get("ratelimit-scope") == "per_client", h
        assert h.get("ratelimit-limit") == "3", h
        assert h.get("ratelimit-remaining") == "0", h
        retry = int(h["retry-after"])
        # one token at 1r/m: under 60 s, less the time since the first take
        assert 50 <= retry <= 60, "Retry-After %d" % retry
        assert (retry - 1) * 1000 < int(h["retry-after-ms"]) <= retry * 1000, h
        assert re.fullmatch(r'"per_client";r=0;t=\d+', h["ratelimit"]), h
        doc = json.loads(body)
        assert doc == {"error": "rate_limited", "scope": "per_client",
                       "retry_after": retry}, doc

    status, h, _ = get(n, "/x", "10.0.0.2")
    assert status == 200, "another client is limited: %d" % status
    assert h.get("ratelimit-remaining") == "2", h

    z = cachez(n)["limits"]["per_client"]
    assert z == {"backend": "shm", "unit": "requests", "passed": 4,
                 "rejected": 2, "keys": 2, **NO_TOKENS}, z


def test_limit_global_zone_caps_all_clients(nginx_factory):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=global; empty_gif; }",
        "ai_gateway_limit_zone global zone=global:1m rate=1r/m burst=5;"),
        workers=2)

    statuses = [get(n, "/", "10.1.0.%d" % i)[0] for i in range(1, 13)]

    assert statuses.count(200) == 5, "global burst 5: %s" % statuses
    assert statuses.count(429) == 7, statuses
    assert statuses[:5] == [200] * 5, statuses



def test_limit_concurrent_workers_never_overdraw(nginx_factory):
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=a;
            ai_gateway_limit zone=b;
            empty_gif;
        }
""", """
    ai_gateway_limit_zone global zone=a:1m rate=1r/m burst=20;
    ai_gateway_limit_zone $binary_remote_addr zone=b:1m rate=1r/m burst=20;
"""), workers=2)

    # 100 requests at once from 8 threads over both workers: the check and
    # the take of both zones happen under the zones' locks, so exactly
    # the global burst passes (refill at 1r/m adds nothing in a second)
    def one(i):
        return get(n, "/", "10.2.0.%d" % (i % 4 + 1))[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(100)))

    assert statuses.count(200) == 20, "passed: %d" % statuses.count(200)
    assert statuses.count(429) == 80, statuses
    limits = cachez(n)["limits"]
    assert limits["a"]["passed"] == 20 and limits["b"]["passed"] == 20, \
        limits

def test_limit_two_zones_all_or_nothing(nginx_factory):
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=per_client;
            ai_gateway_limit zone=global;
            empty_gif;
        }
        location /peek/global { ai_gateway_limit zone=global cost=0;
                                empty_gif; }
        location /peek/client { ai_gateway_limit zone=per_client cost=0;
                                empty_gif; }
""", """
    ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m
                          rate=1r/m burst=2;
    ai_gateway_limit_zone global zone=global:1m rate=1r/m burst=3;
"""))

    c = Client(n)

    assert c.get("/", "10.0.0.1")[0] == 200
    status, h, _ = c.get("/", "10.0.0.1")
    assert status == 200
    # per_client has 0 left, global 1: the most constrained is per_client
    assert (h["ratelimit-limit"], h["ratelimit-remaining"]) == ("2", "0"), h

    status, h, body = c.get("/", "10.0.0.1")
    assert status == 429 and h["ratelimit-scope"] == "per_client", (status, h)

    # the rejection took nothing from global
    h = c.get("/peek/global")[1]
    assert h["ratelimit-remaining"] == "1", "global charged: %s" % h

    status, h, _ = c.get("/", "10.0.0.2")
    assert status == 200, "second client: %d" % status
    # per_client has 1 left, global 0: the headers describe global
    assert h["ratelimit-policy"] == '"global";q=3;w=180', h
    assert h["ratelimit-remaining"] == "0", h

    status, h, _ = c.get("/", "10.0.0.3")
    assert status == 429 and h["ratelimit-scope"] == "global", (status, h)

    # ... and that rejection took nothing from the third client's bucket
    h = c.get("/peek/client", "10.0.0.3")[1]
    assert h["ratelimit-remaining"] == "2", "per_client charged: %s" % h

    # both reject: the scope is the first zone listed
    status, h, _ = c.get("/", "10.0.0.1")
    assert status == 429 and h["ratelimit-scope"] == "per_client", (status, h)

    limits = cachez(n)["limits"]
    assert limits["per_client"]["passed"] == 3, limits
    assert limits["per_client"]["rejected"] == 2, limits
    assert limits["global"]["passed"] == 3, limits
    assert limits["global"]["rejected"] == 2, limits


def test_limit_cost_fixed_and_variable(nginx_factory):
    n = nginx_factory(server("""
        location /five { ai_gateway_limit zone=z cost=5; empty_gif; }
        location /var { ai_gateway_limit zone=z cost=$http_x_cost; empty_gif; }
""", "ai_gateway_limit_zone k zone=z:1m rate=10r/m burst=10;"))

    c = Client(n)

    # 10r/m: one token per 6 s, the test takes well under that
    assert c.get("/five")[1]["ratelimit-remaining"] == "5"
    assert c.get("/var", headers={"X-Cost": "3"})[1]["ratelimit-remaining"] \
        == "2"

    status, h, body = c.get("/var", headers={"X-Cost": "3"})
    assert status == 429, "cost 3 with 2 left: %d" % status
    assert h["ratelimit-remaining"] == "2", "a rejection took tokens: %s" % h
    # one token short at 10r/m: at most 6 s
    assert 1 <= int(h["retry-after"]) <= 6, h

    # not a number: logged, costs 1
    assert c.get("/var", headers={"X-Cost": "lots"})[1][
        "ratelimit-remaining"] == "1"
    assert 'ai_gateway_limit cost "lots" is not a number' in n.log()

    # no header: the default cost 1
    assert c.get("/var")[1]["ratelimit-remaining"] == "0"

    # "0" does not make a request free: it costs 1, and none is left
    assert c.get("/var", headers={"X-Cost": "0"})[0] == 429


def test_limit_dry_run_counts_never_rejects(nginx_factory):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=dry dry_run; empty_gif; }",
        "ai_gateway_limit_zone $binary_remote_addr zone=dry:1m "
        "rate=1r/m burst=1;",
        "log_format lim '$request_uri $ai_gateway_limit_status "
        "$ai_gateway_limit_remaining';"
        "access_log %s/logs/limit.log lim;" % "%%DIR%%"),
        start=False)
    n.http = n.http.replace("%%DIR%%", n.dir)
    n.write_conf()
    n.start()

    for i in range(3):
        status, h, _ = get(n, "/r%d" % i, "10.0.0.1")
        assert status == 200, "dry_run rejected request %d" % i
        assert "retry-after" not in h, h
        assert h["ratelimit-remaining"] == "0", h

    z = cachez(n)["limits"]["dry"]
    assert (z["passed"], z["rejected"]) == (1, 2), z

    n.stop()
    with open(os.path.join(n.dir, "logs", "limit.log")) as f:
        lines = f.read().splitlines()
    assert "/r0 PASSED 0" in lines, lines
    assert "/r1 REJECTED_DRY_RUN 0" in lines, lines
    assert "/r2 REJECTED_DRY_RUN 0" in lines, lines
    assert "/cachez - -" in lines, "unlimited location: %s" % lines


def test_limit_empty_dry_run_zone_never_disables_the_others(nginx_factory):
    # a global zone in dry run, emptied by one client, must not stop the
    # per-client zone from limiting another client
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=pc; "
        "ai_gateway_limit zone=glob dry_run; empty_gif; }",
        "ai_gateway_limit_zone $binary_remote_addr zone=pc:1m "
        "rate=1r/m burst=1;"
        "ai_gateway_limit_zone global zone=glob:1m rate=1r/m burst=1;"),
        workers=2)

    assert get(n, "/", "10.0.0.1")[0] == 200      # empties glob (and a's pc)
    codes = [get(n, "/", "10.0.0.2")[0] for _ in range(4)]
    assert codes == [200, 429, 429, 429], \
        "the real zone must keep limiting while a dry_run zone is empty: %s" \
        % codes
    z = cachez(n)["limits"]
    assert (z["pc"]["passed"], z["pc"]["rejected"]) == (2, 3), z


def test_limit_empty_key_not_limited(nginx_factory):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=keys; empty_gif; }",
        "ai_gateway_limit_zone $http_x_api_key zone=keys:1m "
        "rate=1r/m burst=1;"))

    c = Client(n)

    for i in range(3):
        status, h, _ = c.get("/")
        assert status == 200, "no key, request %d: %d" % (i, status)
        assert "ratelimit-limit" not in h, "headers without a key: %s" % h

    assert c.get("/", headers={"X-Api-Key": "k1"})[0] == 200
    assert c.get("/", headers={"X-Api-Key": "k1"})[0] == 429
    assert c.get("/", headers={"X-Api-Key": "k2"})[0] == 200

    assert cachez(n)["limits"]["keys"]["keys"] == 2


# A key that is one variable is read directly, anything else through the
# script engine: every form must bucket by the value and skip empty values.
@pytest.mark.parametrize("key, send", [
    ("$http_x_api_key", lambda v: ("/", {"X-Api-Key": v})),
    ("${http_x_api_key}", lambda v: ("/", {"X-Api-Key": v})),
    ("$arg_key", lambda v: ("/?key=" + v, {})),
    ("$http_x_api_key$http_x_tenant", lambda v: ("/", {"X-Api-Key": v})),
], ids=["variable", "braced", "prefix-variable", "two-variables"])
def test_limit_key_forms(nginx_factory, key, send):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=keys; empty_gif; }",
        "ai_gateway_limit_zone %s zone=keys:1m rate=1r/m burst=1;" % key))

    c = Client(n)

    for _ in range(2):
        assert c.get("/")[0] == 200, "%s: no key must not be limited" % key

    for value, want in (("k1", 200), ("k1", 429), ("k2", 200)):
        path, headers = send(value)
        assert c.get(path, headers=headers)[0] == want, \
            "%s=%s: expected %d" % (key, value, want)

    assert cachez(n)["limits"]["keys"]["keys"] == 2


def test_limit_keys_sharing_prefixes_are_apart(nginx_factory):
    """Buckets are ordered by their key's first bytes, then the whole key:
    keys alike in those bytes, short ones kept as they are and long ones
    kept as a digest, must still be buckets of their own."""
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=keys; empty_gif; }",
        "ai_gateway_limit_zone $http_x_api_key zone=keys:1m "
        "rate=1r/m burst=1;"))

    c = Client(n)
    keys = ["abcdefgh-1", "abcdefgh-2", "abcdefgh-3",
            "sk-" + "x" * 40 + "1", "sk-" + "x" * 40 + "2"]

    for k in keys:
        assert c.get("/", headers={"X-Api-Key": k})[0] == 200, k

    for k in keys:
        assert c.get("/", headers={"X-Api-Key": k})[0] == 429, k

    assert cachez(n)["limits"]["keys"]["keys"] == len(keys)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_limit_zones_locked_in_one_order_under_load(nginx_factory):
    """Two locations list the same two zones in opposite orders; two
    workers serve both at full speed.  Were the zones locked in the order
    they are listed, one worker would soon hold "a" waiting for "b" while
    the other holds "b" waiting for "a", and both would hang."""
    n = nginx_factory(server("""
        location = /ab { ai_gateway_limit zone=a; ai_gateway_limit zone=b;
                         empty_gif; }
        location = /ba { ai_gateway_limit zone=b; ai_gateway_limit zone=a;
                         empty_gif; }
""", """
    ai_gateway_limit_zone $binary_remote_addr zone=a:1m
                          rate=100000000r/s burst=100000000;
    ai_gateway_limit_zone global zone=b:1m
                          rate=100000000r/s burst=100000000;
"""), workers=2)

    loads = [subprocess.Popen(["wrk", "-t1", "-c8", "-d3s", "--timeout",
                               "2s", n.url + path],
                              stdout=subprocess.PIPE, text=True)
             for path in ("/ab", "/ba")]
    outs = [p.communicate(timeout=30)[0] for p in loads]

    for out in outs:
        assert "Socket errors" not in out or "timeout 0" in out, out

    c = Client(n)
    assert c.get("/ab")[0] == 200, "workers stuck after the load"
    assert c.get("/ba")[0] == 200, "workers stuck after the load"

    z = cachez(n)["limits"]
    assert z["a"]["passed"] == z["b"]["passed"] > 1000, z


def test_limit_buckets_and_counters_survive_reload(nginx_factory):
    http = server(
        "location / { ai_gateway_limit zone=per_client; empty_gif; }",
        "ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m "
        "rate=1r/m burst=5;")
    n = nginx_factory(http, workers=2)

    for i in range(2):
        get(n, "/", "10.0.0.1")

    n.reload()

    status, h, _ = get(n, "/", "10.0.0.1")
    assert status == 200
    assert h["ratelimit-remaining"] == "2", "bucket reset by reload: %s" % h
    z = cachez(n)["limits"]["per_client"]
    assert (z["passed"], z["keys"]) == (3, 1), "counters reset: %s" % z

    # a new burst is a new figure for the same bucket, not a new bucket
    n.reload(http.replace("burst=5", "burst=4"))

    status, h, _ = get(n, "/", "10.0.0.1")
    assert (h["ratelimit-limit"], h["ratelimit-remaining"]) == ("4", "1"), h


def test_limit_key_change_refused_on_reload(nginx_factory):
    http = server(
        "location / { ai_gateway_limit zone=per_client; empty_gif; }",
        "ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m "
        "rate=1r/m burst=5;")
    n = nginx_factory(http)
    n.skip_alerts.append(r'uses the "\$http_x_key" key while previously '
                         r'it used the "\$binary_remote_addr" key')

    assert get(n, "/", "10.0.0.1")[1]["ratelimit-remaining"] == "4"

    old = n.worker_pids()
    n.write_conf(http.replace("$binary_remote_addr", "$http_x_key"))
    n.proc.send_signal(1)  # SIGHUP

    # the new cycle fails in init_zone; give the master time to give up
    deadline = time.monotonic() + 5
    while "previously it used" not in n.log() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert 'ai_gateway_limit_zone "per_client" uses the "$http_x_key" key ' \
        'while previously it used the "$binary_remote_addr" key' in n.log()
    assert n.worker_pids() == old, "the old workers should keep serving"
    assert get(n, "/", "10.0.0.1")[1]["ratelimit-remaining"] == "3"


def test_limit_full_zone_evicts_lru(nginx_factory):
    # 8 pages, the smallest zone allowed: room for a few hundred buckets
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=tiny; empty_gif; }",
        "ai_gateway_limit_zone $binary_remote_addr zone=tiny:%d "
        "rate=1r/m burst=2;" % (8 * os.sysconf("SC_PAGE_SIZE"))))

    c = Client(n)
    for i in range(3000):
        status = c.get("/", "10.%d.%d.1" % (i // 250, i % 250))[0]
        assert status == 200, "new client %d: %d" % (i, status)

    z = cachez(n)["limits"]["tiny"]
    assert 0 < z["keys"] < 400, "keys gauge not bounded: %s" % z
    assert z["passed"] == 3000, z

    # the most recent client is still remembered and still limited
    xff = "10.%d.%d.1" % (2999 // 250, 2999 % 250)
    assert c.get("/", xff)[0] == 200
    assert c.get("/", xff)[0] == 429

    assert "no memory" not in n.log(), "slab failures logged"


def test_limit_proxied_rejections_never_reach_upstream(nginx_factory, sim):
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=per_client;
            proxy_pass http://127.0.0.1:%d;
        }
""" % sim.port, "ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m "
       "rate=1r/m burst=2;"))

    before = sim.healthz()["requests"]
    c = Client(n)

    for i in range(2):
        status, h, body = c.get("/v1/models", "10.0.0.1")
        assert status == 200, "within burst: %d %r" % (status, body)
        assert h.get("x-server-id") == "sim-1", "not proxied: %s" % h
        assert h.get("ratelimit-remaining") == str(1 - i), \
            "no headers on a proxied response: %s" % h
        assert h.get("ratelimit-policy") == '"per_client";q=2;w=120', h

    # a POST with a body: rejected, its body discarded, connection kept
    for i in range(3):
        status, h, body = c.request(
            "POST", "/infer",
            {"X-Forwarded-For": "10.0.0.1",
             "Content-Type": "application/json"},
            json.dumps({"prompt": "hello " * 200, "max_tokens": 4}))
        assert status == 429, "over burst: %d" % status
        assert json.loads(body)["scope"] == "per_client"
        assert "x-server-id" not in h, "a rejection reached ai-sim"

    assert c.get("/v1/models", "10.0.0.2")[0] == 200

    after = sim.healthz()["requests"]
    assert after - before == 3, "ai-sim saw %d requests, not 3" % (
        after - before)


def test_limit_status_and_headers_off(nginx_factory):
    n = nginx_factory(server("""
        location /s { ai_gateway_limit zone=z; ai_gateway_limit_status 503;
                      empty_gif; }
        location /q { ai_gateway_limit zone=z; ai_gateway_limit_headers off;
                      empty_gif; }
""", "ai_gateway_limit_zone $uri zone=z:1m rate=1r/m burst=1;"))

    c = Client(n)

    assert c.get("/s")[0] == 200
    status, h, body = c.get("/s")
    assert status == 503, "ai_gateway_limit_status 503: %d" % status
    assert json.loads(body)["error"] == "rate_limited"
    assert "ratelimit-limit" in h

    status, h, _ = c.get("/q")
    assert status == 200
    assert not [k for k in h if k.startswith("ratelimit")], \
        "headers off: %s" % h

    status, h, _ = c.get("/q")
    assert status == 429
    assert "retry-after" in h, "Retry-After must stay with headers off"
    assert not [k for k in h if k.startswith("ratelimit-l")
                or k.startswith("ratelimit-r") or k == "ratelimit"], h


def test_limit_cachez_json_and_prometheus(nginx_factory):
    n = nginx_factory(server(
        "location / { ai_gateway_limit zone=one; empty_gif; }",
        """
    ai_gateway_limit_zone $binary_remote_addr zone=one:1m rate=1r/m burst=1;
    ai_gateway_limit_zone $binary_remote_addr zone=unused:1m rate=1r/s
                          burst=1;
"""))

    get(n, "/", "10.0.0.1")
    get(n, "/", "10.0.0.1")
    get(n, "/", "10.0.0.2")

    limits = cachez(n)["limits"]
    assert limits == {
        "one": {"backend": "shm", "unit": "requests", "passed": 2,
                "rejected": 1, "keys": 2, **NO_TOKENS},
        "unused": {"backend": "shm", "unit": "requests", "passed": 0,
                   "rejected": 0, "keys": 0, **NO_TOKENS},
    }, limits

    status, _, body = get(n, "/cachez?format=prometheus")
    text = body.decode()
    for metric, value in (("passed_total", 2), ("rejected_total", 1),
                          ("keys", 2)):
        assert re.search(r'^ai_gateway_limit_%s\{zone="one",backend="shm"\} '
                         r'%d$' % (metric, value), text, re.M), \
            "%s missing:\n%s" % (metric, text)

    # reading /cachez is neither limited nor counted
    assert cachez(n)["limits"]["one"]["passed"] == 2



def test_limit_inherited_and_zone_declared_after_use(nginx_factory):
    # http-level lines reach every location without lines of its own;
    # the zone may be declared after the line that uses it
    n = nginx_factory(REALIP + """
    ai_gateway_limit zone=late;
    ai_gateway_limit_status 418;
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { empty_gif; }
        location /own { ai_gateway_limit zone=other; empty_gif; }
        location = /cachez { ai_gateway_cachez; }
    }
    ai_gateway_limit_zone $binary_remote_addr zone=late:1m rate=1r/m burst=1;
    ai_gateway_limit_zone $binary_remote_addr zone=other:1m rate=1r/m
                          burst=2;
""")

    assert get(n, "/", "10.0.0.1")[0] == 200
    status, h, _ = get(n, "/", "10.0.0.1")
    assert status == 418, "inherited status: %d" % status
    assert h["ratelimit-scope"] == "late", h

    # a location with its own line inherits none from above
    status, h, _ = get(n, "/own", "10.0.0.1")
    assert status == 200 and h["ratelimit-policy"].startswith('"other"'), h

def test_limit_internal_redirect_charged_once(nginx_factory):
    # a 404 from a missing root goes to error_page: the ctx that nginx
    # clears on the redirect is found again, so the request pays once
    n = nginx_factory(server("""
        location / {
            ai_gateway_limit zone=z;
            root /nonexistent;
            error_page 404 = @fallback;
        }
        location /uri {
            ai_gateway_limit zone=z;
            root /nonexistent;
            error_page 404 /fallback;
        }
        location @fallback { ai_gateway_limit zone=z; empty_gif; }
        location = /fallback { ai_gateway_limit zone=z; empty_gif; }
""", "ai_gateway_limit_zone k zone=z:1m rate=1r/m burst=5;"))

    c = Client(n)

    status, h, _ = c.get("/missing")
    assert status == 200, "named fallback: %d" % status
    assert h.get("ratelimit-remaining") == "4", "charged twice: %s" % h

    # error_page without "=" keeps the 404 of the first location
    status, h, _ = c.get("/uri/missing")
    assert status == 404, "uri fallback: %d" % status
    assert h.get("ratelimit-remaining") == "3", "charged twice: %s" % h

    assert cachez(n)["limits"]["z"]["passed"] == 2


def test_limit_cache_hits_read_not_charged(nginx_factory, sim):
    http = server("""
        location / {
            ai_gateway_cache c;
            ai_gateway_limit zone=per_client;
            ai_gateway_limit zone=abuse charge_hits;
            proxy_pass http://127.0.0.1:%d;
        }
        location /peek { ai_gateway_limit zone=abuse cost=0; empty_gif; }
""" % sim.port, """
    ai_gateway_cache_zone zone=c:1m;
    ai_gateway_limit_zone $binary_remote_addr zone=per_client:1m
                          rate=1r/m burst=3;
    ai_gateway_limit_zone global zone=abuse:1m rate=1r/m burst=10;
""")
    n = nginx_factory(http, start=False)
    rc, out = n.test_config()
    if rc != 0 and "unknown directive" in out:
        pytest.skip("the cache module is not built in: %s" % out.strip())
    n.start()

    c = Client(n)
    before = sim.healthz()["requests"]

    status, h, _ = c.get("/v1/models", "10.0.0.1")
    assert status == 200 and h.get("x-cache") == "MISS", h
    assert h["ratelimit-remaining"] == "2", h

    for i in range(3):
        status, h, _ = c.get("/v1/models", "10.0.0.1")
        assert status == 200 and h.get("x-cache") == "HIT", h
        # a HIT reads per_client without charging it, and still says so
        assert h["ratelimit-policy"] == '"per_client";q=3;w=180', h
        assert h["ratelimit-remaining"] == "2", "HIT charged: %s" % h

    # charge_hits: the abuse zone paid for the MISS and the three HITs
    assert c.get("/peek")[1]["ratelimit-remaining"] == "6"

    # a bypass is charged
    status, h, _ = c.get("/v1/models", "10.0.0.1",
                         {"Cache-Control": "no-cache"})
    assert status == 200 and h.get("x-cache") == "BYPASS", h
    assert h["ratelimit-remaining"] == "1", h

    assert sim.healthz()["requests"] - before == 2, "HITs reached ai-sim"


CONFIG_ERRORS = [
    ("ai_gateway_limit_zone $binary_remote_addr zone=a:1m rate=1r/s burst=1;",
     "location / { ai_gateway_limit zone=nope; empty_gif; }",
     'unknown ai_gateway_limit_zone "nope"', "zone=nope"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=1;\n"
     "    ai_gateway_limit_zone k zone=a:1m rate=2r/s burst=1;",
     "", 'duplicate zone "a"', "rate=2r/s"),
    ("ai_gateway_limit_zone k zone=a rate=1r/s burst=1;",
     "", 'invalid zone size "zone=a"', "zone=a "),
    ("ai_gateway_limit_zone k zone=a:lots rate=1r/s burst=1;",
     "", 'invalid zone size "zone=a:lots"', "zone=a:lots"),
    ("ai_gateway_limit_zone k zone=a:4k rate=1r/s burst=1;",
     "", 'zone "zone=a:4k" is too small', "zone=a:4k"),
    ("ai_gateway_limit_zone k rate=1r/s burst=1;",
     "", '"ai_gateway_limit_zone" must have "zone" parameter', "rate=1r/s"),
    ("ai_gateway_limit_zone k zone=a:1m rate=5 burst=1;",
     "", 'invalid rate "rate=5"', "rate=5 "),
    ("ai_gateway_limit_zone k zone=a:1m rate=xr/s burst=1;",
     "", 'invalid rate "rate=xr/s"', "rate=xr/s"),
    ("ai_gateway_limit_zone k zone=a:1m rate=0r/m burst=1;",
     "", 'rate must be at least 1 in "rate=0r/m"', "rate=0r/m"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=0;",
     "", 'burst must be at least 1 in "burst=0"', "burst=0"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=x;",
     "", 'invalid burst "burst=x"', "burst=x"),
    ("ai_gateway_limit_zone k zone=a:1m burst=1;",
     "", '"ai_gateway_limit_zone" must have "rate" parameter', "burst=1;"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s;",
     "", '"ai_gateway_limit_zone" must have "burst" parameter', "rate=1r/s;"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=1 fast;",
     "", 'invalid parameter "fast"', "fast;"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit zone=a cost=x; empty_gif; }",
     'invalid cost "cost=x"', "cost=x"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit zone=a cost=3; empty_gif; }",
     'cost 3 exceeds burst 2 of zone "a"', "cost=3"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit zone=a nodelay; empty_gif; }",
     'invalid parameter "nodelay"', "nodelay"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit cost=1; empty_gif; }",
     '"ai_gateway_limit" must have "zone" parameter', "cost=1;"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit zone=a;\n"
     "            ai_gateway_limit zone=a dry_run; empty_gif; }",
     '"ai_gateway_limit" directive is duplicate', "dry_run;"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit_status 200; empty_gif; }",
     '"ai_gateway_limit_status" directive must be between 400 and 599',
     "status 200"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit_status many; empty_gif; }",
     '"ai_gateway_limit_status" directive invalid number', "status many"),
    ("ai_gateway_limit_zone k zone=a:1m rate=1r/s burst=2;",
     "location / { ai_gateway_limit_headers maybe; empty_gif; }",
     'invalid value "maybe" in "ai_gateway_limit_headers" directive',
     "maybe"),
]


@pytest.mark.parametrize("zones,locations,message,where", CONFIG_ERRORS,
                         ids=[e[2][:40] for e in CONFIG_ERRORS])
def test_limit_config_errors(nginx_factory, zones, locations, message, where):
    n = nginx_factory(server(locations, zones), start=False)

    rc, out = n.test_config()

    assert rc != 0, "nginx -t accepted:\n%s" % n.render()
    line = conf_line(n, where)
    assert re.search(r"\[emerg\] (\d+#\d+: )?%s.* in %s:%d$"
                     % (re.escape(message), re.escape(n.conf_path), line),
                     out, re.M), \
        "expected %r at nginx.conf:%d, got:\n%s" % (message, line, out)
    n.skip_alerts.append(".")
