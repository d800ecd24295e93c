"""The GenAI metrics as a real Prometheus reads them (issue 23): the
compose stack's Prometheus configuration and recording rules check with
promtool, and Debian's prometheus, on loopback, scraping a test gateway
every second and evaluating docker/prometheus-rules.yml, gets what
/cachez says: histogram_quantile() over the scraped buckets is /cachez's
ttft_ms p99, and the rules docs/operations.md gives record the TTFT p99
by model and the hit ratio of the traffic sent."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse

import pytest
import requests

from harness.nginx import free_port, wait_port

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIG = os.path.join(REPO, "docker", "prometheus.yml")
RULES = os.path.join(REPO, "docker", "prometheus-rules.yml")
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None or PROMETHEUS is None,
    reason="prometheus missing (apt-get install prometheus; scripts/deps.sh"
           " test installs it)")

HTTP = """
    ai_gateway_cache_zone zone=main:4m;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location = /cachez {{ ai_gateway_cachez; }}
        location /v1/ {{
            ai_gateway_cache main;
            ai_gateway_cache_methods POST;
            proxy_pass http://sim;
        }}
    }}
"""


def test_compose_prometheus_config_and_rules_check():
    for args in (["check", "config", CONFIG], ["check", "rules", RULES]):
        p = subprocess.run([PROMTOOL] + args, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([PROMTOOL, "check", "rules", RULES],
                       capture_output=True, text=True, timeout=60)
    assert "SUCCESS: 4 rules found" in p.stdout, p.stdout


class Prometheus:
    """Debian's prometheus on a loopback port, scraping one target every
    second and evaluating the compose stack's rules; stopped by PID."""

    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="agw-prom-")
        self.port = free_port()
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("""
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: ["%s"]
scrape_configs:
  - job_name: ai-gateway
    metrics_path: /cachez
    params: {format: [prometheus]}
    static_configs: [{targets: ["%s"]}]
""" % (RULES, target))
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + os.path.join(self.dir,
                                                         "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(
                os.path.join(self.dir, "log"), "w"))
        assert wait_port(self.port, timeout=30, proc=self.proc), self.log()
        deadline = time.monotonic() + 30
        while requests.get("http://127.0.0.1:%d/-/ready" % self.port,
                           timeout=5).status_code != 200:
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def log(self):
        with open(os.path.join(self.dir, "log")) as f:
            return f.read()

    def query(self, q):
        r = requests.get("http://127.0.0.1:%d/api/v1/query?query=%s"
                         % (self.port, urllib.parse.quote(q)), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["data"]["result"]

    def scrapes(self):
        """Scrapes of the target so far."""
        r = self.query("count_over_time(up[10m])")
        return int(r[0]["value"][1]) if r else 0

    def wait_scrapes(self, n, timeout=30):
        start = self.scrapes()
        deadline = time.monotonic() + timeout
        while self.scrapes() < start + n:
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def chat(n, model, prompt):
    r = requests.post(n.url + "/v1/chat/completions", timeout=10,
                      json={"model": model, "max_tokens": 1, "messages":
                            [{"role": "user", "content": prompt}]})
    assert r.status_code == 200, r.text
    return r.headers["X-Cache"]


def wait_hit(n, model, prompt):
    """A HIT of a prompt answered before (stored once its answer ended)."""
    for _ in range(40):
        if chat(n, model, prompt) == "HIT":
            return
        time.sleep(0.05)
    pytest.fail("no HIT of %r" % prompt)


def wait_counted(n, count, timeout=10):
    """/cachez once every answer sent is counted (the log phase)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = requests.get(n.url + "/cachez", timeout=5).json()
        got = sum(m["requests"] for m in doc["models"].values())
        if got >= count:
            return doc
        assert time.monotonic() < deadline, (count, doc)
        time.sleep(0.05)


def test_a_real_prometheus_agrees_with_cachez(nginx_factory, sim_factory):
    sim = sim_factory("sim-1", "--ttft-ms", "300", "--tpot-ms", "1",
                      "--jitter", "0")
    n = nginx_factory(HTTP.format(sim=sim.port))
    prom = Prometheus("127.0.0.1:%d" % n.port)
    try:
        # a first scrape with nothing counted: the cache's counters start
        # from zero there
        prom.wait_scrapes(1)

        # Each series' first answer: a series appears with its first
        # count, which rate() cannot tell from one that was always there
        # (Prometheus counts increases of the series it has seen), so the
        # answers below that rates must show come after a scrape of it.
        assert chat(n, "a", "same") == "MISS"
        wait_hit(n, "a", "same")
        assert chat(n, "b", "zero") == "MISS"
        before = wait_counted(n, 3)
        prom.wait_scrapes(2)

        # model a: a MISS and 3 HITs; model b: 2 MISSes
        assert chat(n, "a", "other") == "MISS"
        for _ in range(3):
            wait_hit(n, "a", "same")
        assert chat(n, "b", "one") == "MISS"
        assert chat(n, "b", "two") == "MISS"
        doc = wait_counted(n, sum(m["requests"]
                                  for m in before["models"].values()) + 6)
        prom.wait_scrapes(3)

        # the same buckets, the same interpolation: /cachez's p99 is
        # histogram_quantile(0.99) of the scraped buckets
        got = {r["metric"]["gen_ai_request_model"]: float(r["value"][1])
               for r in prom.query(
                   "histogram_quantile(0.99, sum by (le, gen_ai_request_model)"
                   " (gen_ai_server_time_to_first_token_seconds_bucket))")}
        assert set(got) == {"a", "b"}, got
        for model in ("a", "b"):
            assert abs(got[model] * 1000
                       - doc["models"][model]["ttft_ms"]["p99"]) < 0.01, \
                (model, got, doc["models"])

        # the recording rules of docs/operations.md: TTFT p99 by model
        # over 5 minutes, in the (0.25, 0.5] bucket of a 300 ms replica;
        # the hit ratios of what was sent (3 hits and 3 misses, unless an
        # answer was not stored before it was asked for again)
        rule = ("gen_ai_request_model:gen_ai_server_time_to_first_token"
                "_seconds:p99_rate5m")
        deadline = time.monotonic() + 30
        while True:
            p99 = {r["metric"]["gen_ai_request_model"]: float(r["value"][1])
                   for r in prom.query(rule)}
            ratio = prom.query("ai_gateway:cache_hit_ratio:rate5m")
            by_model = {r["metric"]["gen_ai_request_model"]:
                        float(r["value"][1]) for r in prom.query(
                            "gen_ai_request_model:ai_gateway_cache_hit_ratio"
                            ":rate5m")}
            if set(p99) == {"a", "b"} and ratio and set(by_model) == \
                    {"a", "b"}:
                break
            assert time.monotonic() < deadline, (p99, ratio, by_model,
                                                 prom.log())
            time.sleep(0.5)
        assert all(0.25 < v <= 0.5 for v in p99.values()), p99
        # rate() extrapolates each series over its own first and last
        # samples in the window: series born at different scrapes (a busy
        # machine delays one) give ratios a few hundredths off the counts'
        assert float(ratio[0]["value"][1]) == pytest.approx(
            doc["hits"] / (doc["hits"] + doc["misses"]), abs=0.05), \
            (ratio, doc)
        a, a0 = doc["models"]["a"], before["models"]["a"]
        assert by_model["a"] == pytest.approx(
            (a["hits"] - a0["hits"]) / (a["requests"] - a0["requests"]),
            abs=0.05), (by_model, a0, a)
        assert by_model["b"] == 0, by_model
        # the by-hand queries of docs/operations.md evaluate: output tokens
        # per second by model (the time per output token: no stream here)
        tokens = {r["metric"]["gen_ai_request_model"]: float(r["value"][1])
                  for r in prom.query(
                      "sum by (gen_ai_request_model) (rate("
                      "gen_ai_client_token_usage_sum{gen_ai_token_type="
                      "\"output\"}[5m]))")}
        assert set(tokens) == {"a", "b"} and all(
            v > 0 for v in tokens.values()), tokens
        prom.query("histogram_quantile(0.5, sum by (le, gen_ai_request_model)"
                   " (rate(gen_ai_server_time_per_output_token_seconds_bucket"
                   "[5m])))")
        assert "level=error" not in prom.log(), prom.log()
    finally:
        prom.stop()
