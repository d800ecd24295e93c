"""The GenAI metrics (SPEC 8.3, issue 23): the OpenTelemetry GenAI
conventions' histograms in /cachez?format=prometheus, and /cachez JSON's
models and servers, after known requests through real nginx + ai-sim.

What a user relies on: each answer from upstream is counted once, in the
bucket its time falls in (ai-sim's --ttft-ms and --tpot-ms set the times),
under its model, operation and peer; HITs and COALESCED answers are not
server time; token usage is the answer's usage; model names from clients
are bounded and escaped; every worker adds to the same figures and a
reload keeps them; promtool accepts the exposition."""

import concurrent.futures
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
import requests

PROMTOOL = shutil.which("promtool")

TTFT = ("--ttft-ms", "300", "--tpot-ms", "40", "--jitter", "0")
FAST = ("--ttft-ms", "1", "--tpot-ms", "0.2", "--jitter", "0")

HTTP = """
    ai_gateway_cache_zone zone=main:4m;
    {models}

    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    upstream failing {{ server 127.0.0.1:{fail}; }}
    upstream dead {{ server 127.0.0.1:{dead}; }}

    log_format pids '$pid $status';

    server {{
        listen 127.0.0.1:%%PORT%% {listen};
        access_log {log} pids;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location = /cachez {{ ai_gateway_cachez; }}

        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_key_json on;
            ai_gateway_cache_lock on;
            proxy_buffering off;
            proxy_pass http://sim;
        }}

        # not cached: every request goes upstream
        location /direct/ {{
            proxy_buffering off;
            proxy_pass http://sim/;
        }}

        location /fail/ {{ proxy_pass http://failing/; }}
        location /dead/ {{ proxy_pass http://dead/; }}

        location /off/ {{
            ai_gateway_metrics off;
            proxy_pass http://sim/;
        }}
    }}
"""


# ---- reading the exposition ------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"(,|$)')


def unescape(value):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n"
                  else m.group(1), value)


def parse(text):
    """[(name, {label: value}, number)] of every sample line; label values
    unescaped as Prometheus reads them."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        labels, rest = {}, m.group(2) or ""
        while rest:
            lm = LABEL.match(rest)
            assert lm, "bad labels in %r" % line
            labels[lm.group(1)] = unescape(lm.group(2))
            rest = rest[lm.end():]
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def total(samples, name, **match):
    """The sum of the samples of `name` whose labels include `match`."""
    return sum(v for n, labels, v in samples if n == name
               and all(labels.get(k) == w for k, w in match.items()))


def bucket(samples, family, le, **match):
    return total(samples, family + "_bucket", le=le, **match)


def prometheus(n):
    r = requests.get(n.url + "/cachez?format=prometheus", timeout=5)
    assert r.status_code == 200, r.text
    return r.text


def genai(text):
    """The metrics' lines, without the rest of /cachez (uptime...)."""
    return [l for l in text.splitlines()
            if "gen_ai" in l or "ai_gateway_requests_total" in l]


def cachez(n):
    r = requests.get(n.url + "/cachez", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def wait_requests(n, count, timeout=10):
    """The log phase runs right after an answer's last byte: wait until
    every answer the test got has been counted (another worker may serve
    /cachez a moment before)."""
    deadline = time.monotonic() + timeout
    while True:
        text = prometheus(n)
        got = total(parse(text), "ai_gateway_requests_total")
        if got >= count:
            assert got == count, "counted %d requests, sent %d" % (got, count)
            return text
        assert time.monotonic() < deadline, \
            "only %d of %d requests counted:\n%s" % (got, count, text)
        time.sleep(0.05)


def chat(n, path, model, prompt, stream=False, max_tokens=2, **kw):
    body = {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return requests.post(n.url + path, json=body, timeout=20, **kw)


def stream_usage(r):
    """The usage chunk of a streamed answer."""
    for line in r.text.splitlines():
        if line.startswith("data: {") and '"usage":{' in line:
            return json.loads(line[6:])["usage"]
    pytest.fail("no usage chunk in %r" % r.text[-300:])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def gateway(nginx_factory, sim_factory, tmp_path):
    """nginx in front of a replica with a 300 ms time to first token and
    40 ms a token, one that answers 500, and a port nobody listens on."""
    sim = sim_factory("sim-ttft", *TTFT)
    fail = sim_factory("sim-fail", "--fail-rate", "1.0", *FAST)

    def start(workers=1, models="", listen=""):
        n = nginx_factory(HTTP.format(sim=sim.port, fail=fail.port,
                                      dead=free_port(), models=models,
                                      listen=listen,
                                      log=tmp_path / "access.log"),
                          workers=workers)
        n.sim, n.fail, n.access_log = sim, fail, tmp_path / "access.log"
        return n

    return start


# ---- what is counted where -------------------------------------------------

def test_answers_counted_by_model_cache_and_peer(gateway):
    n = gateway()
    sim = "127.0.0.1:%d" % n.sim.port

    # JSON: a MISS then a HIT of the same prompt
    miss = chat(n, "/v1/chat/completions", "m-json", "json prompt")
    assert (miss.status_code, miss.headers["X-Cache"]) == (200, "MISS")
    for _ in range(40):
        hit = chat(n, "/v1/chat/completions", "m-json", "json prompt")
        if hit.headers["X-Cache"] == "HIT":
            break
        time.sleep(0.05)
    assert hit.headers["X-Cache"] == "HIT", hit.headers

    # a stream of 5 tokens with its usage, then two identical streams at
    # once: one goes upstream, the other is answered from its flight
    first = chat(n, "/v1/chat/completions", "m-stream", "stream", stream=True,
                 max_tokens=5)
    assert first.headers["X-Cache"] == "MISS"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        a = pool.submit(chat, n, "/v1/chat/completions", "m-stream",
                        "together", True, 5)
        time.sleep(0.15)
        b = pool.submit(chat, n, "/v1/chat/completions", "m-stream",
                        "together", True, 5)
        pair = sorted(x.result().headers["X-Cache"] for x in (a, b))
    assert pair == ["COALESCED", "MISS"], pair

    # a replica's 500, a replica that is not there (nginx's 502: nobody
    # answered), a location with the metrics off, a GET
    assert chat(n, "/fail/v1/chat/completions", "m-fail", "x").status_code \
        == 500
    assert chat(n, "/dead/v1/chat/completions", "m-dead", "x").status_code \
        == 502
    assert chat(n, "/off/v1/chat/completions", "m-off", "x").status_code \
        == 200
    assert requests.get(n.url + "/v1/models", timeout=5).status_code == 200

    s = parse(wait_requests(n, 7))

    req = "ai_gateway_requests_total"
    assert total(s, req, gen_ai_request_model="m-json", cache="miss") == 1
    assert total(s, req, gen_ai_request_model="m-json", cache="hit") == 1
    assert total(s, req, gen_ai_request_model="m-stream", cache="miss") == 2
    assert total(s, req, gen_ai_request_model="m-stream",
                 cache="coalesced") == 1
    assert total(s, req, gen_ai_request_model="m-fail", cache="none") == 1
    assert total(s, req, gen_ai_request_model="m-dead", cache="none") == 1
    assert total(s, req, gen_ai_request_model="m-off") == 0
    assert total(s, req) == 7, "nothing else counted (GET, metrics off)"

    # server time: answers from upstream only, the HIT and the COALESCED
    # answer are not in it; the 500 in the duration only; the 502 nowhere
    dur = "gen_ai_server_request_duration_seconds"
    ttft = "gen_ai_server_time_to_first_token_seconds"
    tpot = "gen_ai_server_time_per_output_token_seconds"
    assert total(s, dur + "_count", gen_ai_request_model="m-json") == 1
    assert total(s, dur + "_count", gen_ai_request_model="m-stream") == 2
    assert total(s, dur + "_count", gen_ai_request_model="m-fail") == 1
    assert total(s, dur + "_count", gen_ai_request_model="m-dead") == 0
    assert total(s, dur + "_count") == 4
    assert total(s, ttft + "_count", gen_ai_request_model="m-json") == 1
    assert total(s, ttft + "_count", gen_ai_request_model="m-stream") == 2
    assert total(s, ttft + "_count", gen_ai_request_model="m-fail") == 0
    assert total(s, tpot + "_count", gen_ai_request_model="m-stream") == 2
    assert total(s, tpot + "_count", gen_ai_request_model="m-json") == 0

    # labels: the operation from the path, the peer that answered
    for model, peer in (("m-json", sim), ("m-stream", sim),
                        ("m-fail", "127.0.0.1:%d" % n.fail.port)):
        assert total(s, dur + "_count", gen_ai_request_model=model,
                     gen_ai_operation_name="chat", server_address=peer) >= 1

    # /cachez JSON says the same
    doc = cachez(n)
    m = doc["models"]
    assert set(m) == {"m-json", "m-stream", "m-fail", "m-dead"}, m
    assert (m["m-json"]["requests"], m["m-json"]["hits"]) == (2, 1)
    assert (m["m-stream"]["requests"], m["m-stream"]["hits"]) == (3, 0)
    assert m["m-fail"]["ttft_ms"] is None and m["m-dead"]["ttft_ms"] is None
    assert doc["servers"][sim]["requests"] == 3
    assert doc["servers"]["127.0.0.1:%d" % n.fail.port] == \
        {"requests": 1, "ttft_ms": None}


def test_time_to_first_token_and_per_output_token_buckets(gateway):
    """ai-sim: first token after 300 ms, then one every 40 ms.  A stream's
    TTFT is its first content event: in (0.25, 0.5]; a JSON answer comes
    whole after its last token (300 + 2 x 40 ms): in (0.25, 0.5] too.  A
    stream's time per output token is 40 ms: in (0.025, 0.05]."""
    n = gateway()
    assert chat(n, "/direct/v1/chat/completions", "m", "a", stream=True,
                max_tokens=6).status_code == 200
    assert chat(n, "/direct/v1/chat/completions", "m", "b").status_code \
        == 200
    s = parse(wait_requests(n, 2))

    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert bucket(s, ttft, "0.25") == 0
    assert bucket(s, ttft, "0.5") == 2
    assert bucket(s, ttft, "+Inf") == 2
    # the sum is the two times: 300 ms and 380 ms, and a little more
    assert 0.68 <= total(s, ttft + "_sum") < 0.9, total(s, ttft + "_sum")

    tpot = "gen_ai_server_time_per_output_token_seconds"
    assert bucket(s, tpot, "0.025") == 0
    assert bucket(s, tpot, "0.05") == 1
    # the events' times are those of the reads that brought them: on a
    # busy machine two tokens may come in one read, so only the bucket's
    # bounds hold
    assert 0.025 < total(s, tpot + "_sum") <= 0.05

    # the request duration: the stream's last token, 300 + 5 x 40 ms
    dur = "gen_ai_server_request_duration_seconds"
    assert bucket(s, dur, "0.32") == 0 and bucket(s, dur, "0.64") == 2

    # /cachez JSON: p50/p90/p99 interpolated within (250, 500] ms as
    # histogram_quantile() does: 2 observations, ranks 1, 1.8, 1.98
    t = cachez(n)["models"]["m"]["ttft_ms"]
    assert t == {"p50": 375.0, "p90": 475.0, "p99": 497.5}, t


def test_ttft_measured_from_sending_upstream(gateway):
    """A client that takes a second to send its body: the request takes
    over a second, the time to first token stays the replica's 300 ms."""
    n = gateway()
    body = json.dumps({"model": "slow-client", "max_tokens": 1,
                       "messages": [{"role": "user", "content": "slow"}]})
    s = socket.create_connection(("127.0.0.1", n.port), timeout=10)
    s.sendall(("POST /direct/v1/chat/completions HTTP/1.1\r\n"
               "Host: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\nConnection: close\r\n\r\n"
               % len(body)).encode())
    start = time.monotonic()
    time.sleep(1.0)
    s.sendall(body.encode())
    answer = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert time.monotonic() - start > 1.2

    s = parse(wait_requests(n, 1))
    ttft = "gen_ai_server_time_to_first_token_seconds"
    assert bucket(s, ttft, "0.25") == 0 and bucket(s, ttft, "0.5") == 1, \
        [x for x in s if x[0].startswith(ttft)]
    dur = "gen_ai_server_request_duration_seconds"
    assert bucket(s, dur, "0.64") == 1


def test_token_usage_is_the_answers_usage(gateway):
    n = gateway()
    answers = [chat(n, "/direct/v1/chat/completions", "m", "one two three",
                    max_tokens=3),
               chat(n, "/direct/v1/chat/completions", "m", "four five",
                    stream=True, max_tokens=7),
               chat(n, "/direct/v1/chat/completions", "m",
                    "six seven eight nine", max_tokens=12)]
    usage = [answers[0].json()["usage"], stream_usage(answers[1]),
             answers[2].json()["usage"]]
    s = parse(wait_requests(n, 3))

    tok = "gen_ai_client_token_usage"
    inputs = sum(u["prompt_tokens"] for u in usage)
    outputs = sum(u["completion_tokens"] for u in usage)
    assert outputs == 3 + 7 + 12
    assert total(s, tok + "_sum", gen_ai_token_type="input") == inputs
    assert total(s, tok + "_sum", gen_ai_token_type="output") == outputs
    assert total(s, tok + "_count", gen_ai_token_type="output") == 3
    # the conventions' token buckets: 3 in le=4, 7 and 12 in le=16
    assert bucket(s, tok, "1", gen_ai_token_type="output") == 0
    assert bucket(s, tok, "4", gen_ai_token_type="output") == 1
    assert bucket(s, tok, "16", gen_ai_token_type="output") == 3

    m = cachez(n)["models"]["m"]
    assert (m["tokens_input"], m["tokens_output"]) == (inputs, outputs)


def test_operation_from_the_path(gateway):
    n = gateway()
    for path, body in (("/direct/v1/completions",
                        {"model": "c", "prompt": "p", "max_tokens": 1}),
                       ("/direct/infer",
                        {"model": "i", "prompt": "p", "max_tokens": 1})):
        r = requests.post(n.url + path, json=body, timeout=10)
        assert r.status_code in (200, 404), (path, r.status_code)
    s = parse(wait_requests(n, 2))
    dur = "gen_ai_server_request_duration_seconds_count"
    assert total(s, dur, gen_ai_request_model="c",
                 gen_ai_operation_name="text_completion") == 1
    assert total(s, dur, gen_ai_request_model="i",
                 gen_ai_operation_name="other") == 1


# ---- bounds and hostile names ----------------------------------------------

def test_models_past_the_bound_count_as_other(gateway):
    n = gateway()
    for i in range(33):
        assert chat(n, "/fail/v1/chat/completions", "model-%02d" % i,
                    "x").status_code == 500
    # a model named before the bound was reached keeps its name
    assert chat(n, "/fail/v1/chat/completions", "model-00", "x") \
        .status_code == 500
    s = parse(wait_requests(n, 34))

    req = "ai_gateway_requests_total"
    named = {l["gen_ai_request_model"] for name, l, v in s if name == req}
    assert named == {"model-%02d" % i for i in range(32)} | {"other"}, named
    assert total(s, req, gen_ai_request_model="model-00") == 2
    assert total(s, req, gen_ai_request_model="other") == 1
    assert set(cachez(n)["models"]) == named


def test_metrics_models_directive(gateway):
    n = gateway(models="ai_gateway_metrics_models 2;")
    for model in ("a", "b", "c", "d"):
        chat(n, "/fail/v1/chat/completions", model, "x")
    s = parse(wait_requests(n, 4))
    req = "ai_gateway_requests_total"
    assert total(s, req, gen_ai_request_model="a") == 1
    assert total(s, req, gen_ai_request_model="b") == 1
    assert total(s, req, gen_ai_request_model="other") == 2


@pytest.mark.parametrize("value, problem", [
    ("-1", "is not a number of models from 0 to 4096"),
    ("4097", "is not a number of models from 0 to 4096"),
    ("many", "is not a number of models from 0 to 4096"),
])
def test_metrics_models_bad_values_fail_nginx_t(nginx_factory, value,
                                                problem):
    n = nginx_factory("ai_gateway_metrics_models %s;\n"
                      "server { listen 127.0.0.1:%%%%PORT%%%%; }" % value,
                      start=False)
    rc, out = n.test_config()
    assert rc != 0 and "ai_gateway_metrics_models" in out \
        and problem in out, out


HOSTILE = ['quote" and \\ backslash', '</script><img src=x>',
           'label"} 1\nfake_metric{a="b', "nul\u0000byte", "m" * 129,
           "caf\u00e9 \u2615"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing"
                    " (apt-get install prometheus)")
def test_hostile_model_names_are_escaped_or_other(gateway):
    n = gateway()
    for model in HOSTILE:
        assert chat(n, "/direct/v1/chat/completions", model, "x") \
            .status_code == 200
    text = wait_requests(n, len(HOSTILE))

    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout + p.stderr == "", \
        p.stdout + p.stderr + text
    assert "fake_metric" not in text

    s = parse(text)
    req = "ai_gateway_requests_total"
    names = {l["gen_ai_request_model"] for name, l, v in s if name == req}
    # shown as they are, escaped: quotes, backslashes, markup, UTF-8;
    # a line break, a NUL, a name over 128 bytes: "other"
    assert names == {HOSTILE[0], HOSTILE[1], HOSTILE[5], "other"}, names
    assert total(s, req, gen_ai_request_model="other") == 3
    assert '\\"' in text and "\\\\" in text

    doc = cachez(n)         # requests would not parse invalid JSON
    assert set(doc["models"]) == names


# ---- workers and reloads ---------------------------------------------------

def test_two_workers_add_to_the_same_figures(gateway):
    n = gateway(workers=2, listen="reuseport")
    sent = 60

    def one(i):
        # a connection each: the kernel spreads them over both workers
        return chat(n, "/fail/v1/chat/completions", "w", "x %d" % i,
                    headers={"Connection": "close"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(sent))) == {500}
    s = parse(wait_requests(n, sent))
    assert total(s, "gen_ai_server_request_duration_seconds_count") == sent

    with open(n.access_log) as f:
        pids = {line.split()[0] for line in f if line.split()[1] == "500"}
    assert len(pids) == 2, "one worker served them all: %s" % pids


def test_reload_keeps_every_figure(gateway):
    n = gateway(workers=2)
    assert chat(n, "/direct/v1/chat/completions", "before", "x",
                stream=True).status_code == 200
    assert chat(n, "/fail/v1/chat/completions", "before", "y") \
        .status_code == 500
    before = wait_requests(n, 2)
    doc = cachez(n)

    # another configuration: no new model may be named, the upstreams
    # are declared in another order
    http = n.http.replace("upstream sim", "upstream sim_later") \
                 .replace("http://sim", "http://sim_later")
    n.reload("ai_gateway_metrics_models 0;\n" + http)

    assert genai(prometheus(n)) == genai(before)
    after = cachez(n)
    assert after["models"] == doc["models"] and \
        after["servers"] == doc["servers"]

    # counters go on from where they were; the name given before the
    # reload stays, a new one is "other" now
    assert chat(n, "/fail/v1/chat/completions", "before", "z") \
        .status_code == 500
    assert chat(n, "/fail/v1/chat/completions", "new", "z") \
        .status_code == 500
    s = parse(wait_requests(n, 4))
    req = "ai_gateway_requests_total"
    assert total(s, req, gen_ai_request_model="before") == 3
    assert total(s, req, gen_ai_request_model="other") == 1
    for name, labels, value in parse(before):
        now = total(s, name, **labels)
        assert now >= value, (name, labels, value, now)


def test_a_full_zone_counts_every_answer_under_other(gateway):
    """Far more label combinations than the zone holds (4 MiB: each new
    model here takes a series of the server set, 1 KiB): the answers past
    it are counted under "other", none is lost, and the error log says so
    once."""
    n = gateway(models="ai_gateway_metrics_models 4096;")
    sent = 4500

    def one(i):
        with requests.Session() as s:
            for k in range(i, sent, 16):
                r = s.post(n.url + "/fail/v1/chat/completions", timeout=20,
                           json={"model": "m%05d" % k, "max_tokens": 1,
                                 "messages": [{"role": "user",
                                               "content": "x"}]})
                assert r.status_code == 500

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(16)))

    s = parse(wait_requests(n, sent, timeout=30))
    assert total(s, "gen_ai_server_request_duration_seconds_count") == sent
    refused = total(s, "ai_gateway_metrics_refused_total")
    assert refused > 0, "the zone never filled"
    # each set's answers refused a series of their own: in its series of
    # "other" labels
    assert total(s, "gen_ai_server_request_duration_seconds_count",
                 gen_ai_request_model="other",
                 gen_ai_operation_name="other",
                 server_address="other") \
        + total(s, "ai_gateway_requests_total", gen_ai_request_model="other",
                cache="other") == refused
    assert n.log().count("is full: new series are counted under") == 1
