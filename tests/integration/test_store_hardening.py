"""Issue 11, the stores and the capture (SPEC 3.2, 3.3, 6): entries read back
from Redis are untrusted, what is stored is exactly what a HIT replays, the
answer's own freshness bounds its TTL, a failed store never loses a valid
entry, slow cache writes never open the breaker the limiter relies on,
/cachez counts only cache entries, and answers spilled to the proxy temp
file are stored."""

import os
import re
import socket
import threading
import time

import pytest
import requests

from harness.nginx import private_dir
from harness.redis import available

needs_redis = pytest.mark.skipif(not available(),
                                 reason="redis-server is not installed")

# an origin inside the same nginx (location /raw/) for the headers ai-sim
# never sends; the gateway's locations proxy to it
ORIGIN = """
        location /raw/ {{
            location /raw/conn {{
                add_header Connection "X-Hop";
                add_header X-Hop "hop-secret";
                add_header X-Keep "kept";
                return 200 "conn";
            }}
            location /raw/ctl {{ add_header X-Ctl "a\x01b"; return 200 "ctl"; }}
            location /raw/nocache {{
                add_header Cache-Control "no-cache"; return 200 "nc"; }}
            location /raw/maxage0 {{
                add_header Cache-Control "max-age=0"; return 200 "m0"; }}
            location /raw/twolines {{
                add_header Cache-Control "public";
                add_header Cache-Control "no-cache";
                return 200 "two";
            }}
            location /raw/maxage1 {{
                add_header Cache-Control "public, max-age=1"; return 200 "m1"; }}
            location /raw/smaxage1 {{
                add_header Cache-Control "max-age=100, s-maxage=1";
                return 200 "s1";
            }}
            location /raw/maxage30 {{
                add_header Cache-Control "max-age=30"; return 200 "m30"; }}
            location /raw/expired {{
                add_header Expires "Thu, 01 Jan 1970 00:00:01 GMT";
                return 200 "ex";
            }}
            location /raw/expires0 {{ add_header Expires "0"; return 200 "e0"; }}
            location /raw/expires1 {{ expires 1s; return 200 "e1"; }}
            location /raw/accel0 {{
                add_header Cache-Control "max-age=100";
                add_header X-Accel-Expires "0";
                return 200 "a0";
            }}
            location /raw/accel1 {{
                add_header Cache-Control "max-age=100";
                add_header X-Accel-Expires "1";
                return 200 "a1";
            }}
            location /raw/plain {{ return 200 "plain"; }}
            location = /raw/pad/k {{
                add_header X-Fill $arg_pad;
                proxy_pass http://sim/slow;
            }}
            location /raw/files/ {{ alias {files}/; }}
            # the same files without a Content-Length: chunked
            location /raw/chunked/ {{
                alias {files}/;
                sub_filter "no-such-text" "";
                sub_filter_types *;
            }}
        }}
"""

SHM_HTTP = """
    ai_gateway_cache_zone zone=main:4m max_entry_size=1m;
    ai_gateway_cache_zone zone=tiny:32k max_entry_size=32k;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%% sndbuf=4k;
        large_client_header_buffers 4 64k;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location /c/ {{
            ai_gateway_cache main;
            ai_gateway_cache_ttl 60s;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /c-ignore/ {{
            ai_gateway_cache main;
            proxy_ignore_headers X-Accel-Expires Expires;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        # small buffers: a client that does not read makes the answer
        # spill to the proxy temp file, sent from there with sendfile
        location /spill/ {{
            ai_gateway_cache main;
            sendfile on;
            proxy_buffer_size 4k;
            proxy_buffers 4 4k;
            proxy_busy_buffers_size 8k;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/files/;
        }}

        location /spill-chunked/ {{
            ai_gateway_cache main;
            sendfile on;
            proxy_buffer_size 4k;
            proxy_buffers 4 4k;
            proxy_busy_buffers_size 8k;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/chunked/;
        }}

        # the key ignores the arguments, which make the answer's size
        location /tiny/ {{
            ai_gateway_cache tiny;
            # two concurrent MISSes of one key must both reach the upstream
            ai_gateway_cache_lock off;
            ai_gateway_cache_key $uri;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/pad/;
        }}
""" + ORIGIN + """
    }}
"""

REDIS_HTTP = """
    ai_gateway_redis 127.0.0.1:{redis} {args};
    ai_gateway_limit_zone $http_x_user zone=users:1m rate=600r/m burst=100
                          redis;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location /c/ {{
            ai_gateway_cache redis;
            ai_gateway_cache_ttl 120s;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location / {{
            ai_gateway_cache redis;
            ai_gateway_cache_ttl 60s;
            ai_gateway_limit zone=users;
            ai_gateway_limit_redis_fail closed;
            proxy_pass http://sim;
        }}
""" + ORIGIN + """
    }}
"""


def shm_nginx(nginx_factory, sim, files=None):
    files = files or private_dir("agw-files-")
    n = nginx_factory(SHM_HTTP.format(sim=sim.port, files=files))
    n.files = files
    return n


def redis_nginx(nginx_factory, sim, redis, args="timeout=100ms"):
    files = private_dir("agw-files-")
    return nginx_factory(REDIS_HTTP.format(sim=sim.port, redis=redis.port,
                                           args=args, files=files))


def cachez(n):
    r = requests.get(n.url + "/cachez", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def wait_connected(n):
    wait_for(lambda: cachez(n)["redis"]["connected"], 5, "Redis")


def xcache(n, path, **kw):
    r = requests.get(n.url + path, timeout=5, **kw)
    assert r.status_code == 200, (path, r.status_code)
    return r.headers["X-Cache"]


# ---- 4: entries read back from Redis are untrusted ----------------------

@needs_redis
def test_hostile_redis_entries_are_misses_never_served(nginx_factory, sim,
                                                       redis_server):
    n = redis_nginx(nginx_factory, sim, redis_server)
    wait_connected(n)
    rc = redis_server.client()

    good = requests.get(n.url + "/slow?hostile", timeout=5)
    assert good.headers["X-Cache"] == "MISS"
    # the key the gateway looks up, however the key is built
    key = wait_for(lambda: [k for k in rc.keys("gw:v1:*")
                            if b":rl:" not in k], 5, "the entry")[0]
    assert xcache(n, "/slow?hostile") == "HIT"
    fields = rc.hgetall(key)

    hostile = {
        "status 101, Transfer-Encoding and Content-Length": {
            "status": "101",
            "headers": "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "body": "0\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: 1\r\n\r\n"},
        "a 404": {"status": "404"},
        "Content-Length": {"headers": "Content-Length: 5\r\n"},
        "Transfer-Encoding": {"headers": "Transfer-Encoding: chunked\r\n"},
        "Connection": {"headers": "Connection: close\r\n"},
        "Upgrade": {"headers": "Upgrade: websocket\r\n"},
        "Proxy-Connection": {"headers": "Proxy-Connection: keep-alive\r\n"},
        "Set-Cookie": {"headers": "Set-Cookie: session=alice\r\n"},
        "a body over max_entry_size (1m)": {"body": "x" * (1024 * 1024 + 1)},
        "a bad header name": {"headers": "Bad Name: x\r\n"},
        "CR LF in a value": {"headers": "X-A: a\r\nX-Injected: 1\r\n\r\n"},
        "a control byte in a value": {"headers": "X-A: a\x01b\r\n"},
    }

    for what, change in hostile.items():
        rc.delete(key)
        rc.hset(key, mapping={**fields, **change})
        z = cachez(n)["caches"]["redis"]
        errors, stores = z["errors"], z["stores"]

        s = socket.create_connection(("127.0.0.1", n.port), timeout=5)
        s.sendall(b"GET /slow?hostile HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Connection: close\r\n\r\n")
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
        s.close()

        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK", (what, lines[0])
        names = [l.split(b":")[0].lower() for l in lines[1:]]
        assert b"x-cache: miss" in [l.lower() for l in lines[1:]], \
            (what, head)
        assert names.count(b"content-length") \
            + names.count(b"transfer-encoding") == 1, (what, head)
        assert b"x-injected" not in raw.lower(), (what, raw[:300])
        assert b"set-cookie" not in names, (what, head)
        assert body.endswith(good.content), (what, body[-200:])
        assert cachez(n)["caches"]["redis"]["errors"] == errors + 1, what
        # the MISS rewrites the entry: let it land before the next one
        wait_for(lambda: cachez(n)["caches"]["redis"]["stores"] == stores + 1,
                 5, "the store after " + what)

    log = n.log()
    assert "status is not 200" in log, log[-2000:]
    assert "hop-by-hop or framing header" in log
    assert "larger than max_entry_size" in log


@needs_redis
def test_redis_max_entry_size_parameter(nginx_factory, sim, redis_server):
    n = redis_nginx(nginx_factory, sim, redis_server,
                    args="timeout=100ms max_entry_size=2k")
    wait_connected(n)
    rc = redis_server.client()
    assert xcache(n, "/slow?small") == "MISS"
    key = wait_for(lambda: [k for k in rc.keys("gw:v1:*")
                            if b":rl:" not in k], 5, "the entry")[0]
    assert xcache(n, "/slow?small") == "HIT"
    rc.hset(key, "body", "x" * 2048)
    assert xcache(n, "/slow?small") == "MISS", "over max_entry_size=2k"


# ---- 5: headers named by Connection are not stored ----------------------

def test_headers_named_by_connection_are_not_stored(nginx_factory, sim):
    n = shm_nginx(nginx_factory, sim)
    miss = requests.get(n.url + "/c/conn", timeout=5)
    assert miss.headers["X-Cache"] == "MISS"
    assert miss.headers["X-Keep"] == "kept"
    hit = requests.get(n.url + "/c/conn", timeout=5)
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.content == b"conn"
    assert hit.headers["X-Keep"] == "kept", "end-to-end headers are replayed"
    assert "X-Hop" not in hit.headers, \
        "a header the upstream's Connection names is never replayed"


@needs_redis
def test_headers_named_by_connection_are_not_in_redis(nginx_factory, sim,
                                                      redis_server):
    n = redis_nginx(nginx_factory, sim, redis_server)
    wait_connected(n)
    assert xcache(n, "/c/conn") == "MISS"
    rc = redis_server.client()
    key = wait_for(lambda: rc.keys("gw:v1:*"), 5, "the entry")[0]
    headers = rc.hget(key, "headers").decode()
    assert "X-Keep: kept\r\n" in headers, headers
    assert "X-Hop" not in headers and "Connection" not in headers, headers


# ---- 19: headers that cannot be stored exactly: not stored --------------

def test_answer_with_a_control_byte_header_is_not_stored(nginx_factory, sim):
    n = shm_nginx(nginx_factory, sim)
    for _ in range(3):
        r = requests.get(n.url + "/c/ctl", timeout=5)
        assert r.status_code == 200 and r.content == b"ctl"
        assert r.headers["X-Cache"] == "MISS", \
            "stored without X-Ctl, the HIT would differ from the MISS"
        assert r.headers["X-Ctl"] == "a\x01b"
    assert cachez(n)["caches"]["main"]["stores"] == 0


# ---- 7: the answer's own freshness --------------------------------------

def test_freshness_of_the_answer_bounds_what_is_stored(nginx_factory, sim):
    n = shm_nginx(nginx_factory, sim)

    for path in ("nocache", "maxage0", "twolines", "expired", "expires0",
                 "accel0"):
        assert xcache(n, "/c/" + path) == "MISS"
        assert xcache(n, "/c/" + path) == "MISS", \
            "%s must not be stored" % path
    assert cachez(n)["caches"]["main"]["stores"] == 0

    # lifetimes of 1 s under a 60 s ai_gateway_cache_ttl
    short = ("maxage1", "smaxage1", "expires1", "accel1")
    for path in short:
        assert xcache(n, "/c/" + path) == "MISS"
        assert xcache(n, "/c/" + path) == "HIT", path
    assert xcache(n, "/c/plain") == "MISS"
    time.sleep(2.2)
    for path in short:
        assert xcache(n, "/c/" + path) == "MISS", \
            "%s expired with its own lifetime" % path
    assert xcache(n, "/c/plain") == "HIT", "the configured TTL otherwise"

    # proxy_ignore_headers X-Accel-Expires Expires: as proxy_cache does
    for path in ("accel0", "expired"):
        assert xcache(n, "/c-ignore/" + path) == "MISS"
        assert xcache(n, "/c-ignore/" + path) == "HIT", path


@needs_redis
def test_freshness_sets_the_redis_ttl(nginx_factory, sim, redis_server):
    n = redis_nginx(nginx_factory, sim, redis_server)
    wait_connected(n)
    rc = redis_server.client()
    assert xcache(n, "/c/maxage30") == "MISS"
    key = wait_for(lambda: rc.keys("gw:v1:*"), 5, "the entry")[0]
    assert 25 <= rc.ttl(key) <= 30, rc.ttl(key)
    rc.delete(key)
    assert xcache(n, "/c/plain") == "MISS"
    key = wait_for(lambda: rc.keys("gw:v1:*"), 5, "the entry")[0]
    assert 110 <= rc.ttl(key) <= 120, "ai_gateway_cache_ttl 120s otherwise"
    assert xcache(n, "/c/nocache") == "MISS"
    time.sleep(0.3)
    assert len(rc.keys("gw:v1:*")) == 1, "no-cache is not stored"


# ---- 13: a failed store keeps the valid entry ---------------------------

def test_a_store_that_cannot_fit_keeps_the_old_entry(nginx_factory, sim):
    n = shm_nginx(nginx_factory, sim)
    # two MISSes of one key (the key is the URI only) while the upstream
    # takes 120 ms: the first stores a small answer, the second brings one
    # the 32k zone cannot hold
    results = {}

    def get(name, pad):
        results[name] = requests.get(n.url + "/tiny/k?pad=" + pad, timeout=5)

    small = threading.Thread(target=get, args=("small", "s"))
    big = threading.Thread(target=get, args=("big", "b" * 30000))
    small.start()
    time.sleep(0.05)
    big.start()
    small.join()
    big.join()
    assert results["small"].headers["X-Cache"] == "MISS"
    assert results["big"].headers["X-Cache"] == "MISS"
    assert len(results["big"].headers.get("X-Fill", "")) == 30000, (results["big"].status_code, results["big"].headers)

    z = cachez(n)["caches"]["tiny"]
    assert z["stores"] == 1 and z["errors"] == 1, z
    hit = requests.get(n.url + "/tiny/k", timeout=5)
    assert hit.headers["X-Cache"] == "HIT", \
        "the valid entry survives a store that failed"
    assert hit.headers["X-Fill"] == "s"
    assert cachez(n)["caches"]["tiny"]["entries"] == 1


# ---- 12: slow cache writes never open the breaker -----------------------

@needs_redis
def test_slow_cache_writes_do_not_open_the_breaker(nginx_factory, sim,
                                                   redis_server):
    n = redis_nginx(nginx_factory, sim, redis_server, args="timeout=50ms")
    wait_connected(n)
    rc = redis_server.client()
    assert requests.get(n.url + "/v1/models?warm",
                        headers={"X-User": "u"}).status_code == 200

    # writes (MULTI/EXEC) wait 400 ms; reads (the lookups) do not
    rc.execute_command("CLIENT", "PAUSE", "400", "WRITE")
    results = []

    def one(i):
        r = requests.get(n.url + "/slow?w=%d" % i, timeout=5)
        results.append((r.status_code, r.headers.get("X-Cache")))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(200, "MISS")] * 6, results
    time.sleep(0.8)

    z = cachez(n)
    assert "is unavailable after" not in n.log(), \
        "slow cache writes opened the breaker"
    # a lookup that went out after a held write waited on it (Redis answers
    # in order): counted, as a timeout behind a cache write, and only that
    assert z["redis"]["timeouts"] == n.log().count("behind a cache write"), \
        (z, n.log())
    assert z["redis"]["connected"] is True, z
    # with the breaker closed, a "redis_fail closed" zone still passes
    for _ in range(5):
        r = requests.get(n.url + "/v1/models?after",
                         headers={"X-User": "u"}, timeout=5)
        assert r.status_code == 200, r.status_code
    wait_for(lambda: cachez(n)["caches"]["redis"]["stores"] >= 7, 5,
             "the slow writes to be counted as stores")


@needs_redis
def test_lookups_behind_a_held_write_do_not_open_the_breaker(nginx_factory,
                                                             sim,
                                                             redis_server):
    """Issue 21: lookups queued on the connection behind a cache write that
    Redis holds back time out, but they only waited on that write: no sign
    of a dead Redis, so the breaker stays closed (they are counted in
    /cachez timeouts)."""
    n = redis_nginx(nginx_factory, sim, redis_server, args="timeout=50ms")
    wait_connected(n)
    rc = redis_server.client()
    assert xcache(n, "/c/plain?warm") == "MISS"
    wait_for(lambda: cachez(n)["caches"]["redis"]["stores"] == 1, 5,
             "the first store")

    # held for less than write_timeout (1 s): the writes are not late
    t0 = time.monotonic()
    rc.execute_command("CLIENT", "PAUSE", "900", "WRITE")
    # its lookup is answered (a read); its write is held
    assert xcache(n, "/c/plain?w=0") == "MISS"
    # each lookup is queued behind the held write(s): it times out
    for i in range(1, 6):
        assert xcache(n, "/c/plain?w=%d" % i) == "MISS"

    log = n.log()
    assert "is unavailable after" not in log, \
        "lookups behind a held write opened the breaker"
    z = cachez(n)
    assert z["redis"]["timeouts"] >= 5, z
    assert z["redis"]["timeouts"] == log.count("behind a cache write"), \
        (z, log)
    assert z["redis"]["connected"] is True, z
    # once the writes go through, their entries answer
    time.sleep(max(0, 1.0 - (time.monotonic() - t0)))
    wait_for(lambda: cachez(n)["caches"]["redis"]["stores"] == 7, 5,
             "the held writes to be stored")
    for i in range(6):
        assert xcache(n, "/c/plain?w=%d" % i) == "HIT"


# ---- 18: /cachez counts only cache entries ------------------------------

@needs_redis
def test_entries_count_only_cache_keys(nginx_factory, sim, redis_server):
    n = redis_nginx(nginx_factory, sim, redis_server)
    wait_connected(n)
    for i in range(3):
        for user in ("a", "b", "c", "d"):
            r = requests.get(n.url + "/slow?e=%d" % i,
                             headers={"X-User": user + str(i)}, timeout=5)
            assert r.status_code == 200
    rc = redis_server.client()
    keys = [k.decode() for k in rc.keys("gw:v1:*")]
    cache = [k for k in keys if re.match(r"^gw:v1:[0-9a-f]{64}$", k)]
    assert len(cache) == 3, keys
    assert len(keys) > len(cache), "limiter buckets share the prefix"
    time.sleep(3.5)
    wait_for(lambda: cachez(n)["caches"]["redis"]["entries"] == 3, 8,
             "entries == 3 (cache keys only)")


# ---- 15: HOST without a port ---------------------------------------------

def test_redis_address_without_port_is_refused(nginx_factory):
    n = nginx_factory("ai_gateway_redis 127.0.0.1;", start=False)
    rc, out = n.test_config()
    assert rc != 0, out
    assert 'invalid address "127.0.0.1": no port, HOST:PORT expected' in out, \
        out
    assert re.search(r"nginx\.conf:\d+", out), out
    n = nginx_factory("ai_gateway_redis localhost:6390 max_entry_size=0;",
                      start=False)
    rc, out = n.test_config()
    assert rc != 0 and 'invalid max_entry_size "max_entry_size=0"' in out, out
    n = nginx_factory("ai_gateway_redis localhost:6390 write_timeout=x;",
                      start=False)
    rc, out = n.test_config()
    assert rc != 0 and 'invalid timeout "write_timeout=x"' in out, out


# ---- 20: answers spilled to the proxy temp file -------------------------

def test_answer_spilled_to_the_temp_file_is_stored(nginx_factory, sim):
    files = private_dir("agw-files-")
    data = os.urandom(400 * 1024)
    path = os.path.join(files, "big.bin")
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    n = shm_nginx(nginx_factory, sim, files=files)

    for path in ("/spill/", "/spill-chunked/"):
        # a client that reads nothing for a while: nginx spills to its temp
        # file and sends the rest from there
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", n.port))
        s.sendall(b"GET " + path.encode() + b"big.bin HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)
        s.settimeout(10)
        raw = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            raw += chunk
        s.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"X-Cache: MISS" in head, head
        if path == "/spill/":
            assert body == data
        else:
            assert b"Transfer-Encoding: chunked" in head, head
        assert n.log().count("buffered to a temporary file") == \
            (1 if path == "/spill/" else 2), \
            "the answer did not spill: the test proves nothing"

        hit = requests.get(n.url + path + "big.bin", timeout=10)
        assert hit.headers["X-Cache"] == "HIT", \
            "an answer spilled to the temp file is stored all the same"
        assert hit.content == data, path
    assert cachez(n)["caches"]["main"]["errors"] == 0
