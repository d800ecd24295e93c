"""Review of the limiter (SPEC 3.1, 6, 7.1, 7.4): reproducers of bugs found
by reading the code as a hostile client / broken Redis / odd config would.
Each test states the expected behaviour; it fails on the code it was
written against."""

import json
import time

from test_limit import Client, cachez, get, server
from test_limit_redis import redis_conf
from test_leases import level
from test_tokens import chat, estimate, post

CHAT = "/v1/chat/completions"


def test_named_location_error_page_does_not_charge_twice(nginx_factory):
    """error_page 502 = @fallback: ngx_http_named_location() clears the
    module ctxs but does not set r->internal, so limit_get_ctx() does not
    look for the ctx in the pool cleanups: the request is charged again in
    @fallback (and counted passed twice).  An URI error_page (r->internal)
    is charged once."""
    n = nginx_factory(server("""
        location /named {
            ai_gateway_limit zone=rq;
            proxy_intercept_errors on;
            proxy_pass http://127.0.0.1:1;
            error_page 502 = @fallback;
        }
        location @fallback {
            ai_gateway_limit zone=rq;
            empty_gif;
        }
        location /uri {
            ai_gateway_limit zone=rq;
            proxy_pass http://127.0.0.1:1;
            error_page 502 = /fallback;
        }
        location = /fallback {
            ai_gateway_limit zone=rq;
            empty_gif;
        }
""", "ai_gateway_limit_zone $http_x_api_key zone=rq:1m rate=1r/m burst=10;"))

    s, h, _ = get(n, "/uri", headers={"X-Api-Key": "u"})
    assert s == 200, (s, h)
    assert h["ratelimit-remaining"] == "9", h      # control: charged once

    s, h, _ = get(n, "/named", headers={"X-Api-Key": "n"})
    assert s == 200, (s, h)
    assert h["ratelimit-remaining"] == "9", \
        "charged twice through a named location: %s" % h
    assert cachez(n)["limits"]["rq"]["passed"] == 2


def test_subrequest_log_does_not_settle_the_main_request(nginx_factory, sim):
    """With log_subrequest on, the log phase runs for subrequests too
    (mirror, SSI...): limit_settle_handler() takes r->main's ctx and
    settles the main request's reservation on its answer so far, i.e. on
    nothing (header not sent: 0 used, all given back), before the answer
    comes; the answer's real usage is then never charged."""
    n = nginx_factory(server("""
        location /v1/ {
            ai_gateway_limit zone=tpm;
            mirror /mirror;
            proxy_pass http://127.0.0.1:%d;
        }
        location = /mirror { internal; log_subrequest on; return 204; }
""" % sim.port, "ai_gateway_limit_zone $http_x_api_key zone=tpm:1m "
                "rate=1t/m burst=1000;"))
    c = Client(n)
    prompt = "hello there mirror"
    status, h, body = post(c, chat(prompt, 40))
    assert status == 200, body
    used = json.loads(body)["usage"]["total_tokens"]
    time.sleep(0.2)
    z = cachez(n)["limits"]["tpm"]
    assert z["reserved"] == estimate(prompt, 40), z
    assert z["settled"] == used, \
        "settled by the mirror subrequest's log phase: %s" % z


def lease_and_shm_conf(r):
    return server("""
        location / {
            ai_gateway_limit zone=rq;
            ai_gateway_limit zone=g cost=$http_x_cost;
            empty_gif;
        }
""", redis_conf(r) + """
    ai_gateway_limit_zone global zone=rq:1m rate=1r/m burst=1;
    ai_gateway_limit_zone global zone=g:1m rate=1r/m burst=40 redis lease=5;
""")


def test_lease_giveback_not_lost_when_a_shm_zone_refuses(nginx_factory,
                                                        redis_server):
    """lease_take() moves an ended or too small lease into st->giveback
    (node->lease = 0) before the shared-memory zones are checked; when one
    of them refuses, limit_shm() drops the redis zones (st->zone = NULL)
    and the giveback is never sent: tokens taken out of Redis are lost."""
    n = nginx_factory(lease_and_shm_conf(redis_server))

    # 1: Redis lends 5, the request spends 1: 4 held here, 35 in Redis
    s, _, _ = get(n, "/", headers={"X-Cost": "1"})
    assert s == 200
    assert level(redis_server) // 60000 == 35, level(redis_server)

    # 2: cost 10 > the 4 leased: the lease is to go back with the script
    # call, but rq (burst 1) refuses first and Redis is never called
    s, _, _ = get(n, "/", headers={"X-Cost": "10"})
    assert s == 429

    # the lease would have ended and been swept back by now
    time.sleep(1.8)
    assert level(redis_server) // 60000 >= 39, \
        "the 4 leased tokens never went back to Redis: %d" % (
            level(redis_server) // 60000)


def raw(n, data, timeout=5):
    import socket
    s = socket.create_connection(("127.0.0.1", n.port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"Connection: close" in out:
                pass
        return out
    finally:
        s.close()


def test_chunked_body_read_by_limiter_is_proxied(nginx_factory, sim):
    """guard: a token zone on an uncached location reads a chunked body
    itself; with proxy_request_buffering off the proxy must still send it,
    and a chunked body over client_max_body_size is a 413, not a 5xx"""
    n = nginx_factory(server("""
        location /v1/ {
            ai_gateway_limit zone=tpm;
            proxy_request_buffering off;
            proxy_http_version 1.1;
            client_max_body_size 2k;
            proxy_pass http://127.0.0.1:%d;
        }
""" % sim.port, "ai_gateway_limit_zone $http_x_api_key zone=tpm:1m "
                "rate=1t/m burst=100000;"))
    body = chat("hello chunked", 8).encode()
    req = (b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
           b"X-Api-Key: a\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                      for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    out = raw(n, req + chunks)
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    assert b"x-ratelimit" not in out.lower() or True

    big = b"x" * 4000
    out = raw(n, req + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
    assert out.startswith(b"HTTP/1.1 413"), out[:300]


def test_slow_reader_stream_is_not_undercharged(nginx_factory, sim_factory):
    """guard: the settle body filter skips buffers that are not in memory.
    A client that reads slowly makes the proxy spool the upstream stream
    to its temp file; the event pipe's buffers stay in memory as well when
    written (in_file and temporary), so the filter still sees every event
    and the final usage.  Were they not, the stream would settle on "one
    token per content event seen + prompt", an undercharge a client could
    provoke at will."""
    import socket
    sim = sim_factory("sim-1", "--ttft-ms", "0", "--tpot-ms", "0")
    n = nginx_factory(server("""
        location /v1/ {
            ai_gateway_limit zone=tpm;
            proxy_buffer_size 1k;
            proxy_buffers 4 1k;
            proxy_busy_buffers_size 1k;
            proxy_ignore_headers X-Accel-Buffering;   # as vLLM sends none
            proxy_pass http://127.0.0.1:%d;
        }
""" % sim.port, "ai_gateway_limit_zone $http_x_api_key zone=tpm:1m "
                "rate=1t/m burst=100000;").replace(
        "listen 127.0.0.1:%%PORT%%;", "listen 127.0.0.1:%%PORT%% sndbuf=4k;"))
    body = chat("stream please", 1500, stream=True, include_usage=True)
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
    conn.sock = socket.socket()
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.sock.settimeout(10)
    conn.sock.connect(("127.0.0.1", n.port))
    conn.request("POST", CHAT, body=body,
                 headers={"X-Api-Key": "slow",
                          "Content-Type": "application/json"})
    time.sleep(1.5)             # the upstream answer goes to the temp file
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    assert b"[DONE]" in out, out[-300:]
    usage = None
    for line in out.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage"' in line:
            u = json.loads(line[6:]).get("usage")
            if u:
                usage = u["total_tokens"]
    assert usage and usage >= 1500, usage
    time.sleep(0.2)
    z = cachez(n)["limits"]["tpm"]
    assert z["settled"] == usage, \
        "stream spooled to a file settled on what was seen: %s" % z
