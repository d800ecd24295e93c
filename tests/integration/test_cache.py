"""The shared-memory response cache (SPEC 3.2, 3.4): what is looked up,
stored, bypassed and served, with the counters /cachez reports."""

import json
import re
import threading
import time

import requests

from harness import load

CACHE_HTTP = """
    ai_gateway_cache_zone zone=main:1m max_entry_size=16k;
    log_format cache '$request_uri $ai_gateway_cache_status';
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        access_log {logdir}/cache.log cache;
        client_body_buffer_size 8k;
        client_max_body_size 4m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location / {{
            ai_gateway_cache main;
            ai_gateway_cache_methods GET HEAD POST;
            ai_gateway_cache_bypass $http_x_bypass;
            ai_gateway_cache_max_body 64k;
            {extra}
            proxy_pass http://sim;
        }}

        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            proxy_buffering off;
            proxy_pass http://sim;
        }}

        location /auth/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_authorized on;
            proxy_pass http://sim/;
        }}

        location /ttl/ {{
            ai_gateway_cache main;
            ai_gateway_cache_ttl 1s;
            proxy_pass http://sim/;
        }}

        # an origin inside this nginx for answers ai-sim never gives
        location /origin/ {{
            ai_gateway_cache main;
            proxy_pass http://127.0.0.1:%%PORT%%/raw/;
        }}
        location /raw/cookie {{ add_header Set-Cookie "a=b"; return 200 "c"; }}
        location /raw/nostore {{
            add_header Cache-Control "no-store"; return 200 "n"; }}
        location /raw/private {{
            add_header Cache-Control "private, max-age=60"; return 200 "p"; }}
        location /raw/notfound {{ return 404 "x"; }}
        location /raw/kib {{ return 200 "{kib}"; }}
        location /raw/vary {{ add_header Vary "Authorization"; return 200 "v"; }}
        location /raw/vary-ae {{
            add_header Vary "Accept-Encoding"; return 200 "a"; }}
        location /raw/encoded {{
            add_header Content-Encoding "br"; return 200 "e"; }}
        location /raw/plain {{ add_header X-Origin "yes"; return 200 "plain"; }}
    }}
"""

KIB = "k" * 1024


def cached_nginx(nginx_factory, sim, extra="", workers=1, http=None):
    from harness.nginx import private_dir
    logdir = private_dir("agw-log-")
    block = http or CACHE_HTTP
    n = nginx_factory(block.format(sim=sim.port, logdir=logdir, extra=extra,
                                   kib=KIB),
                      workers=workers)
    n.logdir = logdir
    return n


def cachez(n):
    r = requests.get(n.url + "/cachez")
    assert r.status_code == 200, r.text
    return r.json()


def main_zone(n):
    return cachez(n)["caches"]["main"]


def infer(n, prompt, **kw):
    return requests.post(n.url + "/infer",
                         data=json.dumps({"prompt": prompt, "max_tokens": 8}),
                         headers={"Content-Type": "application/json",
                                  **kw.pop("headers", {})}, **kw)


def end_to_end(headers):
    skip = {"date", "age", "x-cache", "connection", "keep-alive",
            "transfer-encoding", "server"}
    return {k.lower(): v for k, v in headers.items() if k.lower() not in skip}


def test_miss_then_hit_same_body_headers_and_growing_age(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    first = requests.get(n.url + "/slow?a=1")
    assert first.status_code == 200
    assert first.headers["X-Cache"] == "MISS", first.headers
    assert "Age" not in first.headers

    second = requests.get(n.url + "/slow?a=1")
    assert second.headers["X-Cache"] == "HIT", second.headers
    assert second.content == first.content, "a HIT must replay the body"
    assert end_to_end(second.headers) == end_to_end(first.headers), \
        "a HIT must replay the stored end-to-end headers"
    assert int(second.headers["Age"]) >= 0

    # Age counts whole seconds since the store: wait past one second
    time.sleep(1.2)
    third = requests.get(n.url + "/slow?a=1")
    assert third.headers["X-Cache"] == "HIT"
    assert int(third.headers["Age"]) >= 1, third.headers


def test_hit_does_not_reach_upstream(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    assert infer(n, "count me").headers["X-Cache"] == "MISS"
    before = sim.healthz()["requests"]
    for _ in range(5):
        r = infer(n, "count me")
        assert r.headers["X-Cache"] == "HIT"
    assert sim.healthz()["requests"] == before, \
        "HITs must be answered without contacting ai-sim"


def test_query_string_is_part_of_the_key(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    assert requests.get(n.url + "/slow?q=1").headers["X-Cache"] == "MISS"
    assert requests.get(n.url + "/slow?q=2").headers["X-Cache"] == "MISS"
    assert requests.get(n.url + "/slow?q=1").headers["X-Cache"] == "HIT"


def test_different_prompts_miss_separately(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    a = infer(n, "alpha")
    b = infer(n, "beta")
    assert a.headers["X-Cache"] == "MISS" and b.headers["X-Cache"] == "MISS"
    assert a.json()["output"] != b.json()["output"]
    assert infer(n, "alpha").json()["output"] == a.json()["output"]
    assert infer(n, "beta").json()["output"] == b.json()["output"]


def test_large_prompts_differing_at_the_end_do_not_share_a_key(
        nginx_factory, sim):
    # 40 KiB bodies, larger than client_body_buffer_size 8k: nginx spools
    # them to its temp file, and the digest must still cover every byte
    n = cached_nginx(nginx_factory, sim)
    base = "word " * 8000
    a = infer(n, base + "ending-one")
    b = infer(n, base + "ending-two")
    assert a.headers["X-Cache"] == "MISS"
    assert b.headers["X-Cache"] == "MISS", \
        "a prompt differing only at its end must not hit another's entry"
    assert a.json()["output"] != b.json()["output"]
    again = infer(n, base + "ending-two")
    assert again.headers["X-Cache"] == "HIT"
    assert again.json()["output"] == b.json()["output"]


def test_chunked_post_body_is_keyed(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)

    def chunks(prompt):
        body = json.dumps({"prompt": prompt, "max_tokens": 8}).encode()
        yield body[:10]
        yield body[10:]

    a = requests.post(n.url + "/infer", data=chunks("chunked one"))
    b = requests.post(n.url + "/infer", data=chunks("chunked two"))
    assert a.headers["X-Cache"] == "MISS" and b.headers["X-Cache"] == "MISS"
    c = requests.post(n.url + "/infer", data=chunks("chunked one"))
    assert c.headers["X-Cache"] == "HIT"
    assert c.json()["output"] == a.json()["output"]


def test_request_bypass_rules(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    url = n.url + "/slow?bypass"
    assert requests.get(url).headers["X-Cache"] == "MISS"
    assert requests.get(url).headers["X-Cache"] == "HIT"

    cases = [
        {"Cache-Control": "no-cache"},
        {"Cache-Control": "max-age=0, no-store"},
        {"Pragma": "no-cache"},
        {"X-Bypass": "1"},
        {"Authorization": "Bearer sk-test"},
    ]
    for headers in cases:
        before = sim.healthz()["requests"]
        r = requests.get(url, headers=headers)
        assert r.status_code == 200
        assert r.headers["X-Cache"] == "BYPASS", (headers, r.headers)
        assert sim.healthz()["requests"] == before + 1, \
            "a bypassed request goes upstream: %r" % headers

    # X-Bypass: 0 and empty do not bypass
    assert requests.get(url, headers={"X-Bypass": "0"}).headers["X-Cache"] \
        == "HIT"


def test_bypassed_answers_are_not_stored(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    url = n.url + "/slow?bypass-store"
    r = requests.get(url, headers={"Cache-Control": "no-cache"})
    assert r.headers["X-Cache"] == "BYPASS"
    assert requests.get(url).headers["X-Cache"] == "MISS", \
        "the answer to a bypassed request must not have been stored"


def test_unlisted_methods_bypass(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    r = requests.put(n.url + "/infer", data="{}")
    assert r.headers["X-Cache"] == "BYPASS"
    assert r.status_code == 405


def test_post_not_listed_bypasses(nginx_factory, sim):
    http = CACHE_HTTP.replace("ai_gateway_cache_methods GET HEAD POST;",
                              "ai_gateway_cache_methods GET HEAD;")
    n = cached_nginx(nginx_factory, sim, http=http)
    assert infer(n, "x").headers["X-Cache"] == "BYPASS"
    assert infer(n, "x").headers["X-Cache"] == "BYPASS"


def test_body_over_max_body_bypasses(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    r = infer(n, "z" * 70000)  # over ai_gateway_cache_max_body 64k
    assert r.status_code == 200
    assert r.headers["X-Cache"] == "BYPASS"


def test_never_stored_responses(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    for path in ("cookie", "nostore", "private", "notfound", "vary",
                 "encoded"):
        url = n.url + "/origin/" + path
        first = requests.get(url)
        assert first.headers["X-Cache"] == "MISS", (path, first.headers)
        second = requests.get(url)
        assert second.headers["X-Cache"] == "MISS", \
            "%s answers must never be stored" % path
    assert main_zone(n)["stores"] == 0


def test_stored_entry_keeps_origin_headers(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    requests.get(n.url + "/origin/plain")
    r = requests.get(n.url + "/origin/plain")
    assert r.headers["X-Cache"] == "HIT"
    assert r.headers["X-Origin"] == "yes"
    assert r.text == "plain"
    assert r.headers["Content-Type"].startswith("text/plain")


def test_oversized_entries_are_counted_and_skipped(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    big = {"prompt": "big", "max_tokens": 4000}  # ~25 KB, over 16k
    r = requests.post(n.url + "/infer", json=big)
    assert r.status_code == 200 and len(r.content) > 16384
    again = requests.post(n.url + "/infer", json=big)
    assert again.headers["X-Cache"] == "MISS"
    assert again.json()["output"] == r.json()["output"], \
        "the answer itself is untouched"
    z = main_zone(n)
    assert z["too_large"] == 2, z
    assert z["stores"] == 0, z


def test_head_after_get_is_a_hit_without_body(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    get = requests.get(n.url + "/slow?head")
    assert get.headers["X-Cache"] == "MISS"
    head = requests.head(n.url + "/slow?head")
    assert head.headers["X-Cache"] == "HIT", head.headers
    assert head.content == b""
    assert int(head.headers["Content-Length"]) == len(get.content)


def test_head_miss_stores_nothing(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    assert requests.head(n.url + "/slow?h2").headers["X-Cache"] == "MISS"
    assert requests.get(n.url + "/slow?h2").headers["X-Cache"] == "MISS"
    assert requests.get(n.url + "/slow?h2").headers["X-Cache"] == "HIT"


def test_stream_through_cached_location_is_streamed_then_stored(
        nginx_factory, sim_factory):
    sim = sim_factory("sim-s", "--ttft-ms", "20", "--tpot-ms", "20",
                      "--jitter", "0")
    n = cached_nginx(nginx_factory, sim)
    body = {"messages": [{"role": "user", "content": "stream me"}],
            "max_tokens": 20, "stream": True}
    start = time.monotonic()
    times = []
    with requests.post(n.url + "/v1/chat/completions", json=body,
                       stream=True) as r:
        assert r.headers["X-Cache"] == "MISS"
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(b"data:"):
                times.append(time.monotonic() - start)
    # 20 tokens at 20 ms: the first event must come well before the last
    assert len(times) >= 20
    assert times[-1] - times[0] > 0.2, times
    # a stream that ended with [DONE] is stored (SPEC 7.2) and replayed
    again = requests.post(n.url + "/v1/chat/completions", json=body)
    assert again.headers["X-Cache"] == "HIT"
    assert again.text.rstrip().endswith("data: [DONE]")
    assert main_zone(n)["stores"] == 1


def test_authorized_caching_never_crosses_credentials(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    body = json.dumps({"prompt": "secret", "max_tokens": 8})

    def ask(token):
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        return requests.post(n.url + "/auth/infer", data=body, headers=h)

    assert ask("alice").headers["X-Cache"] == "MISS"
    assert ask("alice").headers["X-Cache"] == "HIT"
    assert ask("bob").headers["X-Cache"] == "MISS", \
        "another credential must never receive alice's entry"
    assert ask(None).headers["X-Cache"] == "MISS", \
        "no credential must never receive alice's entry"
    assert ask("bob").headers["X-Cache"] == "HIT"


def test_ttl_expiry(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    url = n.url + "/ttl/slow"
    assert requests.get(url).headers["X-Cache"] == "MISS"
    assert requests.get(url).headers["X-Cache"] == "HIT"
    # ttl 1s: an entry is gone once the second it was stored in has passed
    time.sleep(2.1)
    assert requests.get(url).headers["X-Cache"] == "MISS"
    assert main_zone(n)["expired"] >= 1


def test_lru_eviction_in_a_small_zone_keeps_serving(nginx_factory, sim):
    http = CACHE_HTTP.replace("zone=main:1m max_entry_size=16k",
                              "zone=main:32k max_entry_size=8k")
    n = cached_nginx(nginx_factory, sim, http=http)
    for i in range(120):
        r = requests.get(n.url + "/origin/kib?i=%d" % i)
        assert r.status_code == 200 and r.text == KIB
    z = main_zone(n)
    assert z["evictions"] > 0, z
    assert z["entries"] < 120, z
    assert z["bytes_used"] <= z["bytes_capacity"], z
    # the most recent entry is still there, the first one was evicted
    assert requests.get(n.url + "/origin/kib?i=119").headers["X-Cache"] == "HIT"
    assert requests.get(n.url + "/origin/kib?i=0").headers["X-Cache"] == "MISS"


def test_recently_used_entries_survive_eviction(nginx_factory, sim):
    http = CACHE_HTTP.replace("zone=main:1m max_entry_size=16k",
                              "zone=main:32k max_entry_size=8k")
    n = cached_nginx(nginx_factory, sim, http=http)
    requests.get(n.url + "/origin/kib?keep")
    for i in range(60):
        requests.get(n.url + "/origin/kib?i=%d" % i)
        # touching the entry keeps it at the head of the LRU queue
        assert requests.get(n.url + "/origin/kib?keep").headers["X-Cache"] \
            == "HIT", i


def test_entry_overhead_per_1k_answer(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    requests.get(n.url + "/origin/kib?overhead")
    r = requests.get(n.url + "/origin/kib?overhead")
    assert r.headers["X-Cache"] == "HIT"
    z = main_zone(n)
    assert z["entries"] == 1
    key = len("GEThttp127.0.0.1/origin/kib?overhead")
    headers = len("Content-Type: text/plain\r\n")
    overhead = z["bytes_used"] - (key + headers + len(KIB))
    assert 0 < overhead < 256, "zone bytes per 1 KiB entry: %d" % \
        z["bytes_used"]


def test_counters_exact_after_known_sequence(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim, workers=2)
    for _ in range(3):
        requests.get(n.url + "/slow?count")              # MISS, then 2 HITs
    requests.get(n.url + "/slow?count", headers={"Pragma": "no-cache"})
    infer(n, "p1")                                         # MISS
    infer(n, "p1")                                         # HIT
    z = cachez(n)
    assert (z["hits"], z["misses"], z["bypasses"]) == (3, 2, 1), z
    assert abs(z["hit_ratio"] - 0.6) < 1e-6, z
    m = z["caches"]["main"]
    assert m["backend"] == "shm"
    assert (m["hits"], m["misses"], m["bypasses"], m["stores"]) == \
        (3, 2, 1, 2), m
    assert m["entries"] == 2 and m["bytes_used"] > 0
    assert m["bytes_capacity"] == 1024 * 1024
    # reading /cachez changes nothing
    assert cachez(n) == z or cachez(n)["uptime_s"] >= z["uptime_s"]
    again = cachez(n)
    again.pop("uptime_s"), z.pop("uptime_s")
    assert again == z

    prom = requests.get(n.url + "/cachez?format=prometheus").text
    assert 'ai_gateway_cache_hits_total{cache="main",backend="shm"} 3' in prom
    assert 'ai_gateway_cache_misses_total{cache="main",backend="shm"} 2' \
        in prom
    assert 'ai_gateway_cache_entries{cache="main",backend="shm"} 2' in prom
    assert "ai_gateway_hits_total 3" in prom


def test_cache_status_variable_in_access_log(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    requests.get(n.url + "/slow?log")
    requests.get(n.url + "/slow?log")
    requests.get(n.url + "/slow?log", headers={"Pragma": "no-cache"})
    n.stop()
    with open(n.logdir + "/cache.log") as f:
        lines = [l.split() for l in f.read().splitlines()]
    assert [l[1] for l in lines if l[0] == "/slow?log"] == \
        ["MISS", "HIT", "BYPASS"]


def test_concurrent_misses_of_one_key_leave_one_valid_entry(
        nginx_factory, sim_factory):
    sim = sim_factory("sim-c", "--ttft-ms", "50", "--tpot-ms", "0",
                      "--jitter", "0")
    n = cached_nginx(nginx_factory, sim, workers=2)
    results = []

    def worker():
        results.append(infer(n, "same key"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results)
    outputs = {r.json()["output"] for r in results}
    assert len(outputs) == 1
    hit = infer(n, "same key")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.json()["output"] in outputs
    assert main_zone(n)["entries"] == 1


def test_survives_reload_under_load(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim, workers=2)
    assert requests.get(n.url + "/slow?reload").headers["X-Cache"] == "MISS"

    def reload_twice():
        n.reload()
        time.sleep(0.3)
        n.reload()

    statuses, failures = load.during(n.url + "/slow?reload", reload_twice)
    assert not failures, failures
    assert len(statuses) > 20
    r = requests.get(n.url + "/slow?reload")
    assert r.headers["X-Cache"] == "HIT", "the zone's entries survive reload"
    assert main_zone(n)["hits"] >= len(statuses) - 1


CONF_ERRORS = [
    ("ai_gateway_cache_zone zone=main:1m; server { listen 127.0.0.1:%%PORT%%;"
     " location / { ai_gateway_cache other; } }",
     'unknown cache zone "other"'),
    ("ai_gateway_cache_zone zone=main:1m; ai_gateway_cache_zone zone=main:2m;",
     'duplicate zone "main"'),
    ("ai_gateway_cache_zone zone=main:abc;", 'invalid zone size "zone=main:abc"'),
    ("ai_gateway_cache_zone zone=main:4k;", 'zone "zone=main:4k" is too small'),
    ("ai_gateway_cache_zone zone=main:1m max_entry_size=2m;",
     'max_entry_size 2097152 is larger than zone "main"'),
    ("ai_gateway_cache_zone main:1m;", 'invalid parameter "main:1m"'),
    ("ai_gateway_cache_zone max_entry_size=1k;",
     '"ai_gateway_cache_zone" must have "zone" parameter'),
    ("ai_gateway_cache_ttl 0s;", '"ai_gateway_cache_ttl" directive must be at'
     ' least 1s'),
    ("ai_gateway_cache_ttl forever;", '"ai_gateway_cache_ttl" directive'
     ' invalid value'),
    ("ai_gateway_cache_methods GET PUT;", 'invalid value "PUT"'),
]


def test_config_errors_name_the_directive(nginx_factory):
    for block, message in CONF_ERRORS:
        n = nginx_factory(block, start=False)
        rc, out = n.test_config()
        assert rc != 0, block
        assert message in out, (block, out)
        assert re.search(r"nginx\.conf:\d+", out), out


def test_cachez_is_never_cached_or_limited(nginx_factory, sim):
    # cache and limit inherited from the server level must not touch /cachez
    n = nginx_factory("""
        ai_gateway_cache_zone zone=main:1m;
        ai_gateway_limit_zone global zone=all:1m rate=1r/m burst=1;
        server {
            listen 127.0.0.1:%%PORT%%;
            ai_gateway_cache main;
            ai_gateway_limit zone=all;
            location = /cachez { ai_gateway_cachez; }
        }
    """)
    first = requests.get(n.url + "/cachez")
    for _ in range(5):
        r = requests.get(n.url + "/cachez")
        assert r.status_code == 200, r.text
        assert "X-Cache" not in r.headers and "RateLimit-Limit" not in r.headers
    z = r.json()
    assert z["caches"]["main"]["misses"] == 0 and z["hits"] == 0
    assert z["limits"]["all"]["passed"] == 0
    assert first.json()["limits"] == z["limits"]


def test_vary_accept_encoding_alone_is_stored(nginx_factory, sim):
    n = cached_nginx(nginx_factory, sim)
    assert requests.get(n.url + "/origin/vary-ae").headers["X-Cache"] == "MISS"
    hit = requests.get(n.url + "/origin/vary-ae")
    assert hit.headers["X-Cache"] == "HIT"
    assert hit.headers["Vary"] == "Accept-Encoding"


def test_range_request_never_stores_a_fragment(nginx_factory, sim):
    from harness.nginx import private_dir
    www = private_dir("agw-www-")
    with open(www + "/f.txt", "w") as f:
        f.write("0123456789")
    n = nginx_factory("""
        ai_gateway_cache_zone zone=main:1m;
        server {
            listen 127.0.0.1:%%PORT%%;
            location / { ai_gateway_cache main; root ROOT; }
        }
    """.replace("ROOT", www))
    part = requests.get(n.url + "/f.txt", headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.text == "0123"
    whole = requests.get(n.url + "/f.txt")
    assert whole.status_code == 200 and whole.text == "0123456789", \
        "a ranged MISS must not be stored as the whole answer"
    hit = requests.get(n.url + "/f.txt")
    assert hit.headers["X-Cache"] == "HIT" and hit.text == "0123456789"
