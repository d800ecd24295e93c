"""Who may receive a cached answer (SPEC 3.2, issue 11): credentials,
unknown methods, request bodies, unambiguous keys, request Cache-Control,
conditional requests on a HIT, and bodies hashed as they arrive."""

import http.client
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from harness.nginx import free_port, private_dir

KEYS_HTTP = """
    ai_gateway_cache_zone zone=main:1m max_entry_size=64k;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        {listen}
        server_name _;
        client_body_buffer_size 1k;
        client_max_body_size 4m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        # the defaults: GET HEAD, the default credentials, the default key
        location /d/ {{
            ai_gateway_cache main;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /authz/ {{
            ai_gateway_cache main;
            ai_gateway_cache_authorized on;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /custom/ {{
            ai_gateway_cache main;
            ai_gateway_cache_credentials X-Tenant;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /ck/ {{
            ai_gateway_cache main;
            ai_gateway_cache_key $arg_a$arg_b;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}

        location /infer {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_max_body 64k;
            proxy_pass http://sim;
        }}

        # an origin inside this nginx
        location /raw/who {{
            return 200 "[$http_authorization|$http_proxy_authorization|$http_cookie|$http_x_api_key|$http_api_key|$http_x_tenant]";
        }}
        location /raw/args {{ return 200 "$arg_a|$arg_b"; }}
        location /raw/plain {{ return 200 "plain"; }}
        location /raw/scheme {{ return 200 "$http_x_forwarded_proto"; }}
        location /raw/etag {{
            add_header ETag '"v1"';
            add_header Last-Modified "Tue, 01 Dec 2026 10:00:00 GMT";
            return 200 "etag-body";
        }}
    }}
"""


def keys_nginx(nginx_factory, sim, listen=""):
    return nginx_factory(KEYS_HTTP.format(sim=sim.port, listen=listen))


def raw_request(n, method, path, headers=(), body=None):
    """http.client, for what requests cannot send: repeated header lines,
    methods nginx does not know"""
    c = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
    c.putrequest(method, path, skip_accept_encoding=True)
    for k, v in headers:
        c.putheader(k, v)
    if body is not None:
        c.putheader("Content-Length", str(len(body)))
    c.endheaders(body.encode() if body is not None else None)
    r = c.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    c.close()
    return out


def zone(n):
    return requests.get(n.url + "/cachez").json()["caches"]["main"]


# 1. credentials

DEFAULT_CREDENTIALS = ["Authorization", "Proxy-Authorization", "Cookie",
                       "X-Api-Key", "api-key"]


def test_credential_answer_never_reaches_a_request_without_it(
        nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    alice = requests.get(n.url + "/d/who", headers={"X-Api-Key": "alice"})
    assert alice.status_code == 200
    assert alice.headers["X-Cache"] == "BYPASS"
    assert "alice" in alice.text

    anon = requests.get(n.url + "/d/who")
    assert "alice" not in anon.text, "alice's answer reached another client"
    assert anon.headers["X-Cache"] == "MISS"
    assert requests.get(n.url + "/d/who").headers["X-Cache"] == "HIT"
    assert zone(n)["stores"] == 1


@pytest.mark.parametrize("name", DEFAULT_CREDENTIALS)
def test_each_default_credential_bypasses(nginx_factory, sim, name):
    n = keys_nginx(nginx_factory, sim)
    url = n.url + "/d/who?" + name
    assert requests.get(url).headers["X-Cache"] == "MISS"
    assert requests.get(url).headers["X-Cache"] == "HIT"
    for value in ("secret", ""):
        # present counts, even empty; the name in any case
        status, headers, body = raw_request(n, "GET", "/d/who?" + name,
                                            [(name.upper(), value)])
        assert status == 200
        assert headers["x-cache"] == "BYPASS", (name, value, headers)
    status, headers, body = raw_request(n, "GET", "/d/who?" + name,
                                        [(name, "secret")])
    assert headers["x-cache"] == "BYPASS"
    assert b"secret" in body


def test_authorized_caching_keys_on_every_credential(nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    url = n.url + "/authz/who"

    def ask(**h):
        return requests.get(url, headers=h)

    a = ask(**{"X-Api-Key": "alice"})
    b = ask(**{"X-Api-Key": "bob"})
    assert a.headers["X-Cache"] == "MISS" and "alice" in a.text
    assert b.headers["X-Cache"] == "MISS" and "bob" in b.text
    for _ in range(2):
        a2, b2 = ask(**{"X-Api-Key": "alice"}), ask(**{"X-Api-Key": "bob"})
        assert a2.headers["X-Cache"] == "HIT" and a2.text == a.text
        assert b2.headers["X-Cache"] == "HIT" and b2.text == b.text

    anon = ask()
    assert anon.headers["X-Cache"] == "MISS" and "alice" not in anon.text
    # the same value under another credential name is another client
    c = ask(Cookie="alice")
    assert c.headers["X-Cache"] == "MISS", c.headers
    # alice with a cookie too is not alice alone
    ac = ask(**{"X-Api-Key": "alice", "Cookie": "s=1"})
    assert ac.headers["X-Cache"] == "MISS"
    assert ask(**{"X-Api-Key": "alice", "Cookie": "s=1"}).headers[
        "X-Cache"] == "HIT"
    # an empty credential is present, not absent
    e = ask(**{"X-Api-Key": ""})
    assert e.headers["X-Cache"] == "MISS", e.headers


def test_authorized_caching_counts_every_line_of_a_repeated_credential(
        nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    one = raw_request(n, "GET", "/authz/who", [("Cookie", "a=alice")])
    assert one[1]["x-cache"] == "MISS"
    two = raw_request(n, "GET", "/authz/who",
                      [("Cookie", "a=alice"), ("Cookie", "b=bob")])
    assert two[1]["x-cache"] == "MISS", \
        "a second Cookie line must be part of the key"
    assert raw_request(n, "GET", "/authz/who",
                       [("Cookie", "a=alice"), ("Cookie", "b=bob")]
                       )[1]["x-cache"] == "HIT"
    # the split between lines counts too
    split = raw_request(n, "GET", "/authz/who",
                        [("Cookie", "a=alice, b=bob")])
    assert split[1]["x-cache"] == "MISS"


def test_custom_credentials_list(nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    url = n.url + "/custom/who"
    assert requests.get(url, headers={"X-Tenant": "t1"}).headers[
        "X-Cache"] == "BYPASS"
    assert requests.get(url, headers={"x-tenant": "t1"}).headers[
        "X-Cache"] == "BYPASS"
    # the list replaces the default one
    assert requests.get(url, headers={"X-Api-Key": "k"}).headers[
        "X-Cache"] == "MISS"


CONF_ERRORS = [
    ("ai_gateway_cache_credentials \"X Api\";",
     'invalid header name "X Api" in "ai_gateway_cache_credentials"'),
    ("ai_gateway_cache_credentials X-Api-Key:;",
     'invalid header name "X-Api-Key:"'),
    ("ai_gateway_cache_credentials Cookie cookie;",
     'header "cookie" is listed twice in "ai_gateway_cache_credentials"'),
    ("ai_gateway_cache_credentials Cookie; ai_gateway_cache_credentials a;",
     '"ai_gateway_cache_credentials" directive is duplicate'),
    ("ai_gateway_cache_credentials;",
     'invalid number of arguments in "ai_gateway_cache_credentials"'),
    ("ai_gateway_cache_key \"\";", '"ai_gateway_cache_key" must not be empty'),
    ("ai_gateway_cache_key $a; ai_gateway_cache_key $b;",
     '"ai_gateway_cache_key" directive is duplicate'),
    ("ai_gateway_cache_key ${arg_a;", 'the closing bracket in "arg_a"'),
    ("ai_gateway_cache_key $no_such_var_x;",
     'unknown "no_such_var_x" variable'),
]


@pytest.mark.parametrize("line,message", CONF_ERRORS)
def test_config_errors(nginx_factory, line, message):
    n = nginx_factory("server { listen 127.0.0.1:%%PORT%%; location / { "
                      + line + " } }", start=False)
    rc, out = n.test_config()
    assert rc != 0, line
    assert message in out, (line, out)


# 2. methods and bodies

def test_unknown_method_is_never_cached(nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    first = raw_request(n, "FOO", "/d/plain", body="secretA")
    assert first[0] == 200
    assert first[1]["x-cache"] == "BYPASS", first[1]
    second = raw_request(n, "FOO", "/d/plain", body="otherB")
    assert second[1]["x-cache"] == "BYPASS", second[1]
    assert raw_request(n, "QUERY", "/d/plain")[1]["x-cache"] == "BYPASS"
    assert zone(n)["stores"] == 0


def test_get_with_a_body_is_keyed_by_the_body(nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    assert raw_request(n, "GET", "/d/plain", body="a")[1]["x-cache"] == "MISS"
    assert raw_request(n, "GET", "/d/plain", body="b")[1]["x-cache"] \
        == "MISS", "another body must not share the entry"
    assert raw_request(n, "GET", "/d/plain", body="a")[1]["x-cache"] == "HIT"
    assert raw_request(n, "GET", "/d/plain")[1]["x-cache"] == "MISS"
    assert raw_request(n, "GET", "/d/plain")[1]["x-cache"] == "HIT"


# 3. unambiguous keys

def test_custom_key_variables_do_not_slide_into_each_other(
        nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    a = requests.get(n.url + "/ck/args?a=ab&b=c")
    assert a.headers["X-Cache"] == "MISS" and a.text == "ab|c"
    b = requests.get(n.url + "/ck/args?a=a&b=bc")
    assert b.text == "a|bc", "a=a,b=bc got the entry of a=ab,b=c"
    assert b.headers["X-Cache"] == "MISS"
    assert requests.get(n.url + "/ck/args?a=ab&b=c").text == "ab|c"
    assert requests.get(n.url + "/ck/args?a=a&b=bc").headers[
        "X-Cache"] == "HIT"


@pytest.fixture
def cert():
    d = private_dir("agw-cert-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "1", "-subj", "/CN=example.com",
                    "-keyout", os.path.join(d, "key.pem"),
                    "-out", os.path.join(d, "cert.pem")],
                   check=True, capture_output=True)
    return d


def test_default_key_separates_scheme_from_host(nginx_factory, sim, cert):
    # one server on http and https, as the shipped template: an http
    # request for sexample.com and an https one for example.com were the
    # same key text "GEThttpsexample.com/d/scheme"
    tls = free_port()
    listen = ("listen 127.0.0.1:%d ssl; ssl_certificate %s/cert.pem; "
              "ssl_certificate_key %s/key.pem; "
              "proxy_set_header X-Forwarded-Proto $scheme;"
              % (tls, cert, cert))
    n = keys_nginx(nginx_factory, sim, listen=listen)
    s = requests.get("https://127.0.0.1:%d/d/scheme" % tls,
                     headers={"Host": "example.com"}, verify=False)
    assert s.headers["X-Cache"] == "MISS" and s.text == "https"
    p = requests.get(n.url + "/d/scheme", headers={"Host": "sexample.com"})
    assert p.text == "http", "the plain request got the https answer"
    assert p.headers["X-Cache"] == "MISS"


# 4. request Cache-Control

def test_request_max_age_zero_and_every_cache_control_line(
        nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    assert raw_request(n, "GET", "/d/plain")[1]["x-cache"] == "MISS"
    assert raw_request(n, "GET", "/d/plain")[1]["x-cache"] == "HIT"
    for lines in ([("Cache-Control", "max-age=0")],
                  [("Cache-Control", "max-age=60"),
                   ("Cache-Control", "no-cache")],
                  [("Cache-Control", "public"),
                   ("Cache-Control", "max-age=0")],
                  [("Pragma", "x"), ("Pragma", "no-cache")]):
        assert raw_request(n, "GET", "/d/plain", lines)[1]["x-cache"] \
            == "BYPASS", lines
    assert raw_request(n, "GET", "/d/plain",
                       [("Cache-Control", "max-age=60")])[1]["x-cache"] \
        == "HIT"


# 5. conditional requests on a HIT

def test_hit_answers_conditional_requests_with_304(nginx_factory, sim):
    n = keys_nginx(nginx_factory, sim)
    url = n.url + "/d/etag"
    first = requests.get(url)
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["ETag"] == '"v1"'

    def get(**h):
        r = requests.get(url, headers=h)
        assert r.headers["X-Cache"] == "HIT", r.headers
        return r

    r = get(**{"If-None-Match": '"v1"'})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == '"v1"'
    r = get(**{"If-None-Match": '"other", W/"v1"'})
    assert r.status_code == 304
    r = get(**{"If-None-Match": '"v2"'})
    assert r.status_code == 200 and r.text == "etag-body"
    r = get(**{"If-Modified-Since": "Tue, 01 Dec 2026 10:00:00 GMT"})
    assert r.status_code == 304
    r = get(**{"If-Modified-Since": "Mon, 30 Nov 2026 10:00:00 GMT"})
    assert r.status_code == 200 and r.text == "etag-body"
    assert r.headers["Last-Modified"] == "Tue, 01 Dec 2026 10:00:00 GMT"
    assert r.headers["ETag"] == '"v1"'
    # once each, not twice
    status, headers, body = raw_request(n, "GET", "/d/etag")
    assert status == 200 and body == b"etag-body"
    assert list(headers).count("etag") == 1


# 6. bodies hashed as they arrive, spooled or not

def infer(n, prompt, chunked=False):
    body = json.dumps({"prompt": prompt, "max_tokens": 8}).encode()
    if chunked:
        data = (body[i:i + 3000] for i in range(0, len(body), 3000))
    else:
        data = body
    return requests.post(n.url + "/infer", data=data,
                         headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("chunked", [False, True])
def test_spooled_bodies_key_correctly(nginx_factory, sim, chunked):
    # client_body_buffer_size 1k: these bodies go to the temp file
    n = keys_nginx(nginx_factory, sim)
    base = "word " * 4000
    a = infer(n, base + "one", chunked)
    b = infer(n, base + "two", chunked)
    assert a.headers["X-Cache"] == "MISS" and b.headers["X-Cache"] == "MISS"
    assert a.json()["output"] != b.json()["output"]
    a2 = infer(n, base + "one", chunked)
    assert a2.headers["X-Cache"] == "HIT"
    assert a2.json()["output"] == a.json()["output"]
    # the same prompt chunked or not is the same body
    assert infer(n, base + "two", not chunked).headers["X-Cache"] == "HIT"
    # and past ai_gateway_cache_max_body 64k, chunked: bypassed, not an error
    big = infer(n, "z" * 70000, chunked)
    assert big.status_code == 200 and big.headers["X-Cache"] == "BYPASS"


SPOOL_HTTP = """
    ai_gateway_cache_zone zone=main:1m max_entry_size=64k;
    server {{
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 1k;
        client_max_body_size 4m;
        # the proxy sends the spooled body with sendfile(): a pread() of
        # the temp file can only be the cache reading it back
        sendfile on;
        location /infer {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            proxy_pass http://127.0.0.1:{sim};
        }}
    }}
"""


@pytest.mark.skipif(not shutil.which("strace"), reason="strace is missing")
def test_spooled_body_is_never_read_back(nginx_factory, sim):
    n = nginx_factory(SPOOL_HTTP.format(sim=sim.port), workers=1)
    deadline = time.monotonic() + 10      # the master listens before it forks
    while not n.worker_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    (worker,) = n.worker_pids()
    trace = os.path.join(n.dir, "logs", "strace.out")
    st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=pread64,preadv",
                           "-o", trace, "-p", str(worker)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # attached
        if st.poll() is not None:
            pytest.skip("strace cannot attach: %s" % st.stderr.read())
        base = "word " * 4000
        a = infer(n, base + "one")
        assert a.headers["X-Cache"] == "MISS"
        assert infer(n, base + "one").headers["X-Cache"] == "HIT"
        assert infer(n, base + "two").headers["X-Cache"] == "MISS"
    finally:
        st.terminate()
        st.wait(timeout=10)
    with open(trace) as f:
        reads = [line for line in f if "pread" in line]
    assert reads == [], "the temp file was read back:\n" + "".join(reads)


REDIS_HTTP = """
    ai_gateway_redis 127.0.0.1:{redis};
    server {{
        listen 127.0.0.1:%%PORT%%;
        location /authz/ {{
            ai_gateway_cache redis;
            ai_gateway_cache_ttl 60s;
            ai_gateway_cache_authorized on;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
        location /raw/who {{ return 200 "[$http_x_api_key]"; }}
    }}
"""


def test_redis_entries_per_credential_keep_the_readable_key(
        nginx_factory, sim, redis_factory):
    redis = redis_factory()
    n = nginx_factory(REDIS_HTTP.format(redis=redis.port))
    rc = redis.client()

    def ask(key):
        deadline = time.monotonic() + 5
        while True:
            r = requests.get(n.url + "/authz/who?q=1",
                             headers={"X-Api-Key": key})
            if r.headers["X-Cache"] == "HIT" or time.monotonic() > deadline:
                return r
            time.sleep(0.05)

    a, b = ask("alice-secret"), ask("bob-secret")
    assert a.headers["X-Cache"] == "HIT" and a.text == "[alice-secret]"
    assert b.headers["X-Cache"] == "HIT" and b.text == "[bob-secret]"
    keys = sorted(rc.scan_iter(match="gw:v1:*"))
    assert len(keys) == 2, keys
    for k in keys:
        h = rc.hgetall(k)
        # the text of the key, not the credential
        assert h[b"key"] == b"GEThttp127.0.0.1/authz/who?q=1", h[b"key"]
        assert 0 < rc.ttl(k) <= 60
        assert not any(b"secret" in v for f, v in h.items() if f != b"body")
