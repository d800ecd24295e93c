"""Budgets in money (SPEC 8.4, issue 24): ai_gateway_model_price and zones
with rate=Nusd/d burst=Nusd, a bucket of micro-dollars that reserves the
priced estimate at admission and settles on the priced usage.

ai-sim answers with usage = prompt words + max_tokens (completion); its
prompt_tokens count words while the gateway estimates at four bytes a
token, so prompts here are words of four bytes less one ("abc "), which
both count alike.  Rates are 0.01usd/d (a cent a day): refill during a test
is far below a micro-dollar a second.
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import time

import pytest

from harness import redis as redis_harness
from test_limit import Client, cachez, conf_line, get, server

CHAT = "/v1/chat/completions"

# USD per 1M tokens: micro-dollars per token is the figure / 10^6
PRICES = """
    ai_gateway_model_price sim-small input=0.15 output=0.60 cached_input=0.075;
    ai_gateway_model_price sim-large input=2.50 output=10.00;
"""
SMALL = (150000, 600000, 75000)          # pico-dollars per token
LARGE = (2500000, 10000000, 2500000)


def ceil_div(a, b):
    return -(-a // b)


def micro(price, prompt, completion, cached=0):
    """what lib/agw_price.c computes: pico-dollars summed, rounded up"""
    pin, pout, pcached = price
    return ceil_div((prompt - cached) * pin + cached * pcached
                    + completion * pout, 10 ** 6)


def words(n):
    """a prompt of n words of four bytes with the spaces: n tokens for
    ai-sim's usage and for the gateway's estimate alike ("abc " x n less
    the last space: 4n - 1 bytes -> n tokens)"""
    return " ".join(["abc"] * n)


def chat(prompt, max_tokens, model="sim-small", **extra):
    doc = {"model": model, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": prompt}]}
    doc.update(extra)
    return json.dumps(doc)


def post(port, body, key="alice", headers=None, timeout=10):
    h = {"Content-Type": "application/json", "X-Api-Key": key}
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", CHAT, body, h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def money_gateway(nginx_factory, sim_port, budget="1usd", rate="0.01usd/d",
                  key="$http_x_api_key", location_extra="", http_extra="",
                  prices=PRICES, flags="", workers=1, **kwargs):
    return nginx_factory(server("""
        location /v1/ {
            ai_gateway_limit zone=spend;
            %s
            proxy_pass http://127.0.0.1:%d;
        }
""" % (location_extra, sim_port), """
    log_format cost '$http_x_api_key $ai_gateway_model $status '
                    'cost=$ai_gateway_cost_usd';
    access_log logs/cost.log cost;
    %s
    ai_gateway_limit_zone "%s" zone=spend:1m rate=%s burst=%s %s;
    %s
""" % (prices, key, rate, budget, flags, http_extra)), workers=workers,
                         **kwargs)


def cost_log(n, count, key="alice"):
    """the access log's lines of a key's requests, /cachez's left out,
    once there are `count` of them (nginx writes a line after the answer
    went out, so a client can read the file first)"""
    path = os.path.join(n.dir, "logs", "cost.log")
    deadline = time.monotonic() + 5
    while True:
        with open(path) as f:
            lines = [line.split() for line in f.read().splitlines()
                     if line.startswith(key + " ")]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines


def test_a_request_reserves_its_priced_estimate_and_settles_its_usage(
        nginx_factory, sim):
    n = money_gateway(nginx_factory, sim.port)
    prompt = words(1000)

    status, h, body = post(n.port, chat(prompt, 500))
    assert status == 200, body
    usage = json.loads(body)["usage"]
    assert usage["prompt_tokens"] == 1000, usage

    reserved = micro(SMALL, 1000, 500)
    settled = micro(SMALL, usage["prompt_tokens"],
                    usage["completion_tokens"])
    assert reserved == 150 + 300

    # the RateLimit fields count micro-dollars: the budget, less the
    # reservation
    assert h["ratelimit-limit"] == "1000000", h
    assert h["ratelimit-remaining"] == str(1000000 - reserved), h
    assert h["ratelimit-policy"] == '"spend";q=1000000;w=8640000', h

    z = cachez(n)["limits"]["spend"]
    assert z["unit"] == "usd", z
    assert z["reserved"] == reserved, z
    assert z["settled"] == settled, z
    assert z["returned"] == reserved - settled, z
    assert z["unpriced"] == 0, z

    line = cost_log(n, 1)[-1]
    assert line[:3] == ["alice", "sim-small", "200"], line
    assert line[3] == "cost=%d.%06d" % divmod(settled, 10 ** 6), line


def test_concurrent_requests_never_exceed_the_budget(nginx_factory,
                                                     sim_factory):
    """100 requests at once, over two workers, against a budget that fits
    10 of their estimates: at most 10 are admitted, and since each answer
    uses no more than its estimate, what they cost stays within the
    budget.  A check after the fact (LiteLLM's max_budget) would have let
    all 100 through."""
    slow = sim_factory("sim-slow", "--ttft-ms", "1500", "--tpot-ms", "0",
                       "--jitter", "0")
    each = micro(SMALL, 100, 50)                     # 15 + 30 = 45
    n = money_gateway(nginx_factory, slow.port,
                      budget="%d.%06dusd" % divmod(10 * each, 10 ** 6),
                      workers=2)
    body = chat(words(100), 50)

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        results = list(pool.map(lambda _: post(n.port, body, timeout=30),
                                range(100)))

    statuses = [r[0] for r in results]
    admitted = statuses.count(200)
    assert admitted + statuses.count(429) == 100, statuses
    assert 1 <= admitted <= 10, admitted
    for status, h, data in results:
        if status == 429:
            assert json.loads(data)["error"] == "rate_limited", data

    z = cachez(n)["limits"]["spend"]
    assert z["reserved"] == admitted * each, z
    assert z["settled"] <= 10 * each, z
    assert z["settled"] == admitted * each, z
    assert z["passed"] == admitted and z["rejected"] == 100 - admitted, z


def test_a_stream_with_include_usage_settles_its_priced_usage(nginx_factory,
                                                              sim):
    n = money_gateway(nginx_factory, sim.port)
    conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
    conn.request("POST", CHAT, chat(words(40), 30, stream=True,
                                    stream_options={"include_usage": True}),
                 {"Content-Type": "application/json", "X-Api-Key": "bob"})
    r = conn.getresponse()
    data = r.read().decode()
    conn.close()
    assert r.status == 200

    usage = [json.loads(line[6:])["usage"] for line in data.split("\n")
             if line.startswith("data: {") and '"usage":{' in line]
    assert len(usage) == 1, data[-400:]
    u = usage[0]

    z = cachez(n)["limits"]["spend"]
    assert z["reserved"] == micro(SMALL, 40, 30), z
    assert z["settled"] == micro(SMALL, u["prompt_tokens"],
                                 u["completion_tokens"]), (z, u)
    assert cost_log(n, 1, "bob")[-1][3] == \
        "cost=%d.%06d" % divmod(z["settled"], 10 ** 6)


def test_cached_prompt_tokens_are_priced_at_the_cached_price(nginx_factory,
                                                             sim_factory):
    """ai-sim with a prefix cache reports the prompt tokens it held
    (usage.prompt_tokens_details.cached_tokens): a repeated prompt costs
    them at cached_input, 0.075 USD per 1M instead of 0.15."""
    sim = sim_factory("sim-pc", "--ttft-ms", "1", "--tpot-ms", "0",
                      "--jitter", "0", "--prefix-cache-tokens", "65536")
    n = money_gateway(nginx_factory, sim.port)
    body = chat(words(2000), 10)

    status, h, first = post(n.port, body)
    assert status == 200, first
    before = cachez(n)["limits"]["spend"]["settled"]

    status, h, second = post(n.port, body)
    assert status == 200, second
    u = json.loads(second)["usage"]
    cached = u["prompt_tokens_details"]["cached_tokens"]
    assert 1900 < cached < 2000, u

    spent = cachez(n)["limits"]["spend"]["settled"] - before
    assert spent == micro(SMALL, u["prompt_tokens"], u["completion_tokens"],
                          cached), (spent, u)
    assert spent < before, "the cached prompt cost no less: %d %d" % (
        spent, before)


def test_a_model_without_a_price_is_charged_the_highest(nginx_factory, sim):
    """no line for "mystery" and no default: priced at the highest listed
    price of each kind (sim-large's input and output, the highest cached
    price), and counted unpriced"""
    n = money_gateway(nginx_factory, sim.port)

    status, h, body = post(n.port, chat(words(100), 50, model="mystery"))
    assert status == 200, body

    z = cachez(n)["limits"]["spend"]
    assert z["unpriced"] == 1, z
    assert z["reserved"] == micro(LARGE, 100, 50), z
    assert z["settled"] == micro(LARGE, 100, 50), z

    status, h, body = post(n.port, chat(words(100), 50))
    assert cachez(n)["limits"]["spend"]["unpriced"] == 1


def test_a_default_price_prices_the_models_not_listed(nginx_factory, sim):
    n = money_gateway(nginx_factory, sim.port, prices=PRICES + """
    ai_gateway_model_price default input=1 output=2;
""")
    status, h, body = post(n.port, chat(words(100), 50, model="mystery"))
    assert status == 200, body
    z = cachez(n)["limits"]["spend"]
    assert z["unpriced"] == 0, z
    assert z["reserved"] == micro((1000000, 2000000, 1000000), 100, 50), z


def test_a_budget_below_one_estimate_never_fits(nginx_factory, sim):
    """a request whose priced estimate is above the whole budget can
    never pass: cost_exceeds_limit, x-should-retry: false"""
    n = money_gateway(nginx_factory, sim.port, budget="0.0001usd")

    status, h, body = post(n.port, chat(words(1000), 500))
    assert status == 429, body
    assert json.loads(body) == {"error": "cost_exceeds_limit",
                                "scope": "spend", "limit": 100}, body
    assert h["x-should-retry"] == "false", h
    assert "retry-after" not in h, h
    assert sim.requests_seen() == 0


def test_a_spent_budget_is_rate_limited_until_it_refills(nginx_factory, sim):
    """a budget of 3 requests: the fourth is refused with the time the
    refill takes in Retry-After (a cent a day: 45 micro-dollars take
    389 s)"""
    each = micro(SMALL, 100, 50)
    n = money_gateway(nginx_factory, sim.port,
                      budget="0.%06dusd" % (3 * each))
    for _ in range(3):
        status, h, body = post(n.port, chat(words(100), 50))
        assert status == 200, body

    status, h, body = post(n.port, chat(words(100), 50))
    assert status == 429, body
    assert json.loads(body)["error"] == "rate_limited", body
    # 45 micro-dollars at 10^4 per 86400 s
    assert int(h["retry-after"]) == ceil_div(each * 86400, 10 ** 4), h
    assert h["ratelimit-remaining"] == "0", h


def test_hits_are_free_unless_charge_hits(nginx_factory, sim):
    cache = """
            ai_gateway_cache c;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_authorized on;"""
    n = money_gateway(nginx_factory, sim.port, location_extra=cache,
                      http_extra="ai_gateway_cache_zone zone=c:1m;")
    body = chat(words(100), 50)
    status, h, _ = post(n.port, body)
    assert status == 200 and h["x-cache"] == "MISS", h
    before = cachez(n)["limits"]["spend"]
    status, h, _ = post(n.port, body)
    assert status == 200 and h["x-cache"] == "HIT", h
    after = cachez(n)["limits"]["spend"]
    assert after["reserved"] == before["reserved"], (before, after)
    assert after["settled"] == before["settled"], (before, after)


def test_a_failed_answer_returns_the_reservation(nginx_factory, sim_factory):
    failing = sim_factory("sim-f", "--ttft-ms", "1", "--tpot-ms", "0",
                          "--fail-rate", "1.0")
    n = money_gateway(nginx_factory, failing.port)
    status, h, body = post(n.port, chat(words(100), 50))
    assert status >= 500, (status, body)
    z = cachez(n)["limits"]["spend"]
    assert z["reserved"] == micro(SMALL, 100, 50), z
    assert z["settled"] == 0 and z["returned"] == z["reserved"], z
    assert cost_log(n, 1)[-1][3] == "cost=0.000000", cost_log(n, 1)


def test_keys_that_combine_variables_give_a_budget_per_model(nginx_factory,
                                                             sim):
    """"$http_x_api_key:$ai_gateway_model": alice's budget for sim-small is
    not her budget for sim-large, nor bob's"""
    each = micro(LARGE, 100, 50)
    n = money_gateway(nginx_factory, sim.port,
                      budget="0.%06dusd" % each,
                      key="$http_x_api_key:$ai_gateway_model")

    assert post(n.port, chat(words(100), 50, "sim-large"))[0] == 200
    assert post(n.port, chat(words(100), 50, "sim-large"))[0] == 429
    # her other model, and bob's same model, each have a budget
    assert post(n.port, chat(words(100), 50, "sim-small"))[0] == 200
    assert post(n.port, chat(words(100), 50, "sim-large"),
                key="bob")[0] == 200
    assert cachez(n)["limits"]["spend"]["keys"] == 3


ZONE = ("ai_gateway_limit_zone $http_x_api_key zone=spend:1m "
        "rate=1usd/d burst=1usd;\n")

MONEY_CONFIG_ERRORS = [
    # (http, message, the line it names; None: the message names no line)
    ("ai_gateway_model_price m input=-1 output=1;",
     'invalid price "input=-1" in "ai_gateway_model_price"', "input=-1"),
    ("ai_gateway_model_price m input=1 output=1.5e3;",
     'invalid price "output=1.5e3" in "ai_gateway_model_price"', "1.5e3"),
    ("ai_gateway_model_price m input=0.0000001 output=1;",
     'invalid price "input=0.0000001" in "ai_gateway_model_price"',
     "0.0000001"),
    ("ai_gateway_model_price m input=1000000.01 output=1;",
     'invalid price "input=1000000.01"', "1000000.01"),
    ("ai_gateway_model_price m input=cheap output=1;",
     'invalid price "input=cheap"', "cheap"),
    ("ai_gateway_model_price m input=1 output=1;\n"
     "    ai_gateway_model_price m input=2 output=2;",
     'duplicate "ai_gateway_model_price" for model "m"', "input=2"),
    ("ai_gateway_model_price default input=1 output=1;\n"
     "    ai_gateway_model_price default input=2 output=2;",
     'duplicate "ai_gateway_model_price" for the default price', "input=2"),
    ("ai_gateway_model_price m input=1;",
     '"ai_gateway_model_price" of model "m" must have "input" and "output"',
     "input=1;"),
    ("ai_gateway_model_price m input=1 output=1 input=2;",
     '"ai_gateway_model_price" of model "m" has "input=2" twice', "input=2"),
    ("ai_gateway_model_price m input=1 output=1 batch=0.5;",
     'invalid parameter "batch=0.5" in "ai_gateway_model_price"',
     "batch"),
    ("ai_gateway_limit_zone k zone=s:1m rate=1usd/w burst=1usd;",
     'invalid rate "rate=1usd/w"', "usd/w"),
    ("ai_gateway_limit_zone k zone=s:1m rate=-1usd/d burst=1usd;",
     'invalid rate "rate=-1usd/d"', "-1usd"),
    ("ai_gateway_limit_zone k zone=s:1m rate=0.001usd/d burst=1usd;",
     'rate "rate=0.001usd/d" must be a whole number of cents', "0.001usd"),
    ("ai_gateway_limit_zone k zone=s:1m rate=1usd/d burst=1000;",
     'zone "s" counts money: its burst must be in dollars too',
     "burst=1000"),
    ("ai_gateway_limit_zone k zone=s:1m rate=10t/m burst=1usd;",
     'zone "s" has a burst in dollars but its rate is not', "t/m"),
    ("ai_gateway_limit_zone k zone=s:1m rate=1usd/d burst=-1usd;",
     'invalid burst "burst=-1usd"', "-1usd"),
    ("ai_gateway_limit_zone k zone=s:1m rate=1usd/d burst=2000000usd;",
     'rate or burst of zone "s" is too large: a bucket holds up to 1042499 '
     'USD a day', "2000000usd"),
    (ZONE, 'counts money ("rate=...usd/...") but no '
     '"ai_gateway_model_price" is set', None),
]


@pytest.mark.parametrize("http,message,where", MONEY_CONFIG_ERRORS,
                         ids=[e[1][:40] for e in MONEY_CONFIG_ERRORS])
def test_money_config_errors(nginx_factory, http, message, where):
    n = nginx_factory(server("location / { empty_gif; }", http),
                      start=False)
    rc, out = n.test_config()
    assert rc != 0, "nginx -t accepted:\n%s" % n.render()
    if where is None:
        assert re.search(r"\[emerg\] (\d+#\d+: )?.*%s" % re.escape(message),
                         out), out
    else:
        line = conf_line(n, where)
        assert re.search(r"\[emerg\] (\d+#\d+: )?%s.* in %s:%d$"
                         % (re.escape(message), re.escape(n.conf_path),
                            line), out, re.M), \
            "expected %r at nginx.conf:%d, got:\n%s" % (message, line, out)
    n.skip_alerts.append(".")


def test_prices_at_the_edges(nginx_factory, sim_factory):
    """A free model costs nothing and passes a spent budget; a model at
    a million dollars per 1M tokens prices a modest request above any
    budget (cost_exceeds_limit), with no wrap; a body of a million
    tokens is priced, not overflowed."""
    sim = sim_factory("sim-big", "--ttft-ms", "1", "--tpot-ms", "0",
                      "--max-body", "8m")
    n = money_gateway(nginx_factory, sim.port, budget="100usd", prices="""
    ai_gateway_model_price free input=0 output=0;
    ai_gateway_model_price gold input=1000000 output=1000000;
    ai_gateway_model_price sim-small input=0.15 output=0.60;
""", location_extra="client_max_body_size 8m; "
                    "client_body_buffer_size 8m;")

    status, h, body = post(n.port, chat(words(100), 50, model="free"))
    assert status == 200, body
    assert cost_log(n, 1)[-1][3] == "cost=0.000000", cost_log(n, 1)

    # 150 tokens at a dollar each: 150 USD, above the 100 USD budget
    status, h, body = post(n.port, chat(words(100), 50, model="gold"))
    assert status == 429, body
    assert json.loads(body)["error"] == "cost_exceeds_limit", body

    # a million tokens of sim-small: 0.15 USD of prompt, priced exactly
    status, h, body = post(n.port, chat(words(1000000), 1))
    assert status == 200, (status, body[:200])
    z = cachez(n)["limits"]["spend"]
    assert z["reserved"] == micro(SMALL, 1000000, 1), z
    assert z["settled"] == micro(SMALL, 1000000, 1), z

    # the spent budget does not stop a free model
    status, h, body = post(n.port, chat(words(100), 50, model="free"))
    assert status == 200, body


def wait_redis_connected(n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cachez(n)["redis"]["connected"]:
            return
        time.sleep(0.05)
    raise AssertionError("nginx never connected to Redis")


@pytest.mark.skipif(not redis_harness.available(),
                    reason="redis-server not installed")
@pytest.mark.parametrize("lease", ["", "lease=45"])
def test_two_gateways_share_one_redis_budget(nginx_factory, sim,
                                             redis_server, lease):
    """A budget of 4 requests in Redis, spent through two nginx in turn:
    4 pass whichever gateway they cross, the fifth is refused by both.
    With leases, a gateway holds at most a lease beyond what it spent:
    never more than the budget is admitted in all."""
    each = micro(SMALL, 100, 50)
    redis = "ai_gateway_redis 127.0.0.1:%d timeout=500ms;" % redis_server.port
    gws = [money_gateway(nginx_factory, sim.port,
                         budget="0.%06dusd" % (4 * each),
                         flags="redis " + lease, http_extra=redis)
           for _ in range(2)]
    for n in gws:
        wait_redis_connected(n)

    statuses = [post(gws[i % 2].port, chat(words(100), 50))[0]
                for i in range(8)]
    admitted = statuses.count(200)
    if lease:
        assert 2 <= admitted <= 4, statuses
    else:
        assert statuses == [200] * 4 + [429] * 4, statuses

    cl = redis_server.client()
    key = "gw:v1:rl:spend:" + hashlib.sha256(b"alice").hexdigest()
    level = int(cl.hget(key, "level"))
    # what Redis holds, in units of 1/8640 micro-dollar (a day's scale),
    # and a micro-dollar of refill (a cent a day: a unit a millisecond)
    assert level <= ((4 - admitted) * each + 1) * 8640, (level, admitted)
    settled = sum(cachez(n)["limits"]["spend"]["settled"] for n in gws)
    assert settled == admitted * each


def test_a_reload_that_changes_prices_settles_in_flight_at_the_old(
        nginx_factory, sim_factory):
    """A request admitted before a reload that multiplies the prices by
    ten settles at the prices it reserved with; the next one at the new."""
    slow = sim_factory("sim-slow", "--ttft-ms", "2000", "--tpot-ms", "0",
                       "--jitter", "0")
    n = money_gateway(nginx_factory, slow.port, budget="10usd")
    old_prices = n.http
    new = old_prices.replace("input=0.15 output=0.60 cached_input=0.075",
                             "input=1.50 output=6.00 cached_input=0.75")
    assert new != old_prices

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        inflight = pool.submit(post, n.port, chat(words(100), 50),
                               "alice", None, 30)
        time.sleep(0.7)
        n.reload(new)
        status, h, body = inflight.result()
    assert status == 200, body

    z = cachez(n)["limits"]["spend"]
    assert z["reserved"] == micro(SMALL, 100, 50), z
    assert z["settled"] == micro(SMALL, 100, 50), z
    assert cost_log(n, 1)[-1][3] == "cost=0.000045", cost_log(n, 1)

    status, h, body = post(n.port, chat(words(100), 50), timeout=30)
    assert status == 200, body
    z = cachez(n)["limits"]["spend"]
    assert z["settled"] == micro(SMALL, 100, 50) * 11, z
    assert cost_log(n, 2)[-1][3] == "cost=0.000450", cost_log(n, 2)


def test_a_fixed_cost_reserves_it_and_settles_the_priced_usage(
        nginx_factory, sim):
    """cost= on a money zone is the reservation (micro-dollars); the
    answer still settles at its model's prices"""
    n = money_gateway(nginx_factory, sim.port)
    n.reload(n.http.replace("ai_gateway_limit zone=spend;",
                            "ai_gateway_limit zone=spend cost=1000;"))
    status, h, body = post(n.port, chat(words(100), 50))
    assert status == 200, body
    z = cachez(n)["limits"]["spend"]
    assert z["reserved"] == 1000, z
    assert z["settled"] == micro(SMALL, 100, 50), z
    assert z["unpriced"] == 0, z


@pytest.mark.parametrize("chunked", [False, True])
def test_a_spooled_body_is_priced_by_its_model(nginx_factory, sim, chunked):
    """A prompt larger than client_body_buffer_size goes to a temp file,
    which nginx cannot read back without blocking: its model and
    max_tokens are read as the body passes, its prompt counts by size.
    The model comes last, as OpenAI's Python SDK writes it."""
    n = money_gateway(nginx_factory, sim.port,
                      location_extra="client_body_buffer_size 1k;")
    doc = json.dumps({"messages": [{"role": "user",
                                    "content": words(2000)}],
                      "max_tokens": 50, "model": "sim-large"}).encode()

    conn = http.client.HTTPConnection("127.0.0.1", n.port, timeout=10)
    h = {"Content-Type": "application/json", "X-Api-Key": "alice"}
    if chunked:
        conn.putrequest("POST", CHAT)
        for k, v in h.items():
            conn.putheader(k, v)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for i in range(0, len(doc), 3000):
            piece = doc[i:i + 3000]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
    else:
        conn.request("POST", CHAT, doc, h)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200, body
    usage = json.loads(body)["usage"]

    z = cachez(n)["limits"]["spend"]
    assert z["unpriced"] == 0, z
    # the prompt by its size, max_tokens read: sim-large's prices
    assert z["reserved"] == micro(LARGE, ceil_div(len(doc), 4), 50), z
    assert z["settled"] == micro(LARGE, usage["prompt_tokens"],
                                 usage["completion_tokens"]), (z, usage)
    assert "buffered to a temporary file" in n.log()


def test_a_request_without_a_body_costs_nothing(nginx_factory, sim):
    """GET /v1/models is no inference: no model to price, nothing
    reserved, nothing counted unpriced, and it passes a spent budget"""
    n = money_gateway(nginx_factory, sim.port, budget="0.000045usd")
    c = Client(n)
    for _ in range(3):
        status, h, body = c.get("/v1/models", headers={"X-Api-Key": "alice"})
        assert status == 200, body
    assert post(n.port, chat(words(100), 50))[0] == 200
    status, h, body = c.get("/v1/models", headers={"X-Api-Key": "alice"})
    assert status == 200, body
    z = cachez(n)["limits"]["spend"]
    assert z["reserved"] == micro(SMALL, 100, 50), z
    assert z["unpriced"] == 0, z
    assert cost_log(n, 5)[0][3] == "cost=0.000000", cost_log(n, 5)
