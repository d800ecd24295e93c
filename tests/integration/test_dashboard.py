"""/dashboard (issue 23, SPEC 8.3): the live page the shipped config
serves, opened in headless Chromium (harness/browser.py).

With the shipped config (rendered as `make run` renders it) in front of
three ai-sim replicas and real traffic (MISSes, HITs, 429s, chats naming
two models, streamed or not): the page loads with no console error and no
failed request, asks nothing of any other origin, shows the figures
/cachez has at that moment (hit ratio, tokens saved, hits and misses per
cache, admitted and rejected per zone, requests, hits, tokens and TTFT
p50/p90/p99 by model and by replica), keeps polling (the figures follow
more traffic, the rate charts show the 429s), and says "no data" for what
this /cachez does not report yet.
/dashboard answers loopback only, as /cachez does, and is neither cached
nor limited.  A screenshot of the page is kept in build/dashboard-test/.

Against a fake /cachez (a JSON file a test nginx serves, beside the same
page files) with the fields of the metrics and balancer issues (models,
servers, upstreams): the tables and the charts show that document's
figures; a model name that is HTML stays text; counters that go down (a
restart) never draw a negative rate; a /cachez with none of the optional
fields, or one that is not JSON, shows "no data" or an error line, never
a JavaScript error.
"""

import concurrent.futures
import json
import os
import re
import time

import pytest
import requests

from harness.browser import Browser, available
from test_configs import REPO, render_shipped
from test_stack import Gateway

VENDOR = os.path.join(REPO, "build", "dashboard", "vendor")
OUT = os.path.join(REPO, "build", "dashboard-test")

# Everything the page shows, read from the DOM: the summary, each table
# ({table: {row key: {field: raw value}}}), each chart's state, series
# and latest points, and how many polls it has made.
READ_PAGE = r"""(() => {
  const stats = {};
  document.querySelectorAll('[data-stat]').forEach((el) => {
    stats[el.dataset.stat] = el.dataset.value === undefined ? null
                                                            : el.dataset.value;
  });
  const tables = {};
  document.querySelectorAll('table[data-table]').forEach((t) => {
    const rows = {};
    for (const tr of t.tBodies[0].rows) {
      const row = {_name: tr.querySelector('th').textContent};
      for (const td of tr.querySelectorAll('td[data-field]')) {
        row[td.dataset.field] = td.dataset.value;
      }
      rows[tr.dataset.key] = row;
    }
    tables[t.dataset.table] = {rows: rows, hidden: t.hidden};
  });
  const charts = {};
  document.querySelectorAll('figure[data-chart]').forEach((f) => {
    const note = f.querySelector('.nodata');
    charts[f.dataset.chart] = {
      state: f.dataset.state,
      series: JSON.parse(f.dataset.series || '[]'),
      last: JSON.parse(f.dataset.last || '[]'),
      canvas: !!f.querySelector('canvas'),
      nodata: note.hidden ? null : note.textContent,
      points: window.agwDashboard.series(f.dataset.chart)
    };
  });
  const status = document.getElementById('status');
  return {stats: stats, tables: tables, charts: charts,
          status: status.dataset.state, statusText: status.textContent,
          polls: +document.getElementById('polled').dataset.polls};
})()"""


def polls(browser):
    return browser.eval("+document.getElementById('polled').dataset.polls")


def next_polls(browser, n=2):
    """Wait until the page has made `n` more polls: the last of them
    started after this call, so it saw everything that happened before."""
    start = polls(browser)
    browser.wait_for("+document.getElementById('polled').dataset.polls >= %d"
                     % (start + n), timeout=30)


def num(raw):
    return None if raw in (None, "") else float(raw)


def without_uptime(doc):
    """The figures without the clocks that move with no traffic: uptime_s,
    and the age of each replica's last load report (upstreams); and the
    flight zone's pages in use, which grow by a page when a worker that
    started after the first read allocates its ring of wake-ups."""
    doc = {k: v for k, v in doc.items() if k != "uptime_s"}
    if isinstance(doc.get("flight"), dict):
        doc["flight"] = {k: v for k, v in doc["flight"].items()
                         if k != "bytes_used"}
    ups = json.loads(json.dumps(doc.get("upstreams") or {}))
    for u in ups.values():
        for p in u.get("peers", []):
            if isinstance(p.get("report"), dict):
                p["report"].pop("age_ms", None)
    if "upstreams" in doc:
        doc["upstreams"] = ups
    return doc


@pytest.fixture
def gateway(sims, nginx_factory):
    """The shipped config in front of three replicas (test_stack.py)."""
    return nginx_factory(sims, cls=Gateway)


@pytest.fixture
def browser():
    if not available():
        pytest.skip("chromium or python3-websocket missing"
                    " (scripts/deps.sh test)")
    b = Browser()
    yield b
    b.close()


def need_uplot():
    assert os.path.isfile(os.path.join(VENDOR, "uPlot.iife.min.js")), \
        "uPlot is not installed in %s: run `make` (scripts/install-dashboard.sh)" \
        % VENDOR


def assert_clean(browser, origin):
    problems = browser.take_problems()
    assert not problems, "the page logged or failed:\n" + "\n".join(problems)
    foreign = [u for u in browser.requests
               if not (u.startswith(origin + "/") or u.startswith("data:"))]
    assert not foreign, "the page asked another origin: %s" % foreign


# ---- the shipped config, real traffic ------------------------------------

def cachez(gw):
    r = gw.get("/cachez")
    assert r.status_code == 200, r.text
    return r.json()


def sample(gw, browser, tries=5):
    """The page's figures and /cachez's at the same moment: /cachez read
    before and after the page's next polls must agree (every answer's
    counters have been counted), else again."""
    for _ in range(tries):
        before = cachez(gw)
        next_polls(browser)
        page = browser.eval(READ_PAGE)
        after = cachez(gw)
        if without_uptime(before) == without_uptime(after):
            return page, after
    pytest.fail("/cachez kept changing without traffic")


def traffic(gw, tag, client, n_burst):
    """A MISS then a HIT of the same prompt, another MISS, then n_burst
    distinct prompts at once from one client address: past the per-client
    burst (40), 429s.  Returns the statuses of the burst."""
    body = {"prompt": "dashboard %s" % tag, "max_tokens": 8}
    assert gw.post("/infer", body).headers["X-Cache"] == "MISS"
    for _ in range(40):     # stored once the first answer has ended
        if gw.post("/infer", body).headers["X-Cache"] == "HIT":
            break
        time.sleep(0.05)
    else:
        pytest.fail("no HIT for a prompt answered before")
    assert gw.post("/infer", {"prompt": "dashboard %s other" % tag,
                              "max_tokens": 8}).status_code == 200

    def one(i):
        return gw.post("/infer", {"prompt": "burst %s %d" % (tag, i),
                                  "max_tokens": 1},
                       headers={"X-Forwarded-For": client}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(n_burst)))


def model_traffic(gw, tag):
    """Chats naming two models, through the gateway's /v1/ location and
    its three replicas: for each model two MISSes, a HIT, and a stream
    with its usage (SPEC 8.3's figures by model and by replica)."""
    def chat(model, prompt, stream=False):
        body = {"model": model, "max_tokens": 4,
                "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        r = gw.post("/v1/chat/completions", body)
        assert r.status_code == 200, r.text
        return r.headers["X-Cache"]

    for model in ("sim-small", "sim-large"):
        assert chat(model, "%s %s one" % (model, tag)) == "MISS"
        assert chat(model, "%s %s two" % (model, tag)) == "MISS"
        for _ in range(40):
            if chat(model, "%s %s one" % (model, tag)) == "HIT":
                break
            time.sleep(0.05)
        else:
            pytest.fail("no HIT for a chat answered before")
        assert chat(model, "%s %s stream" % (model, tag), True) == "MISS"


def assert_models_and_replicas_match(page, doc):
    """The tables by model and by replica, and the TTFT charts' latest
    points, show /cachez's models and servers as they are."""
    for table, fields in (("models", ("requests", "hits", "tokens_input",
                                      "tokens_output")),
                          ("servers", ("requests",))):
        rows = page["tables"][table]["rows"]
        assert list(rows) == list(doc[table]), (table, rows, doc[table])
        for name, m in doc[table].items():
            row = rows[name]
            assert row["_name"] == name
            for f in fields:
                assert num(row[f]) == m[f], (table, name, f, row, m)
            for p in ("p50", "p90", "p99"):
                want = m["ttft_ms"][p] if m["ttft_ms"] else None
                assert num(row["ttft_" + p]) == want, (table, name, p, row)

    for chart, table in (("ttft_model", "models"),
                         ("ttft_server", "servers")):
        c = page["charts"][chart]
        assert c["state"] == "ok" and c["canvas"], (chart, c)
        want = []
        for name, m in doc[table].items():
            t = m["ttft_ms"] or {}
            want += [(name + " p50", t.get("p50")),
                     (name + " p99", t.get("p99"))]
        assert list(zip(c["series"], c["last"])) == want, (chart, c, want)


def assert_page_matches(page, doc):
    stats = page["stats"]
    assert num(stats["hit_ratio"]) == doc["hit_ratio"], (stats, doc)
    for f in ("hits", "misses", "bypasses"):
        assert num(stats[f]) == doc[f], (f, stats, doc)
    saved = sum(c["tokens_saved"] for c in doc["caches"].values())
    assert num(stats["tokens_saved"]) == saved, (stats, doc["caches"])
    assert num(stats["uptime_s"]) is not None

    caches = page["tables"]["caches"]["rows"]
    assert set(caches) == set(doc["caches"])
    for name, c in doc["caches"].items():
        row = caches[name]
        assert row["backend"] == c["backend"]
        for f in ("hits", "misses", "tokens_saved", "entries"):
            assert num(row[f]) == c[f], (name, f, row, c)
        assert num(row["hit_ratio"]) == pytest.approx(
            c["hits"] / (c["hits"] + c["misses"]))

    limits = page["tables"]["limits"]["rows"]
    assert list(limits) == list(doc["limits"]), "zones, in /cachez's order"
    for name, z in doc["limits"].items():
        row = limits[name]
        assert row["unit"] == z.get("unit", "requests"), (name, row)
        for f in ("passed", "rejected", "keys"):
            assert num(row[f]) == z[f], (name, f, row, z)

    redis = doc["redis"]
    want = ("off" if not redis["configured"] else
            "connected" if redis["connected"] else "disconnected")
    assert stats["redis"] == want


def assert_no_data_where_absent(page, doc):
    """What this module's /cachez does not report is shown as "no data":
    models and servers (the metrics issue), upstreams (the balancer)."""
    for field, table, chart_names in (
            ("models", "models", ["ttft_model"]),
            ("servers", "servers", ["ttft_server"]),
            ("upstreams", "peers", ["replica_requests", "replica_tokens"])):
        t = page["tables"][table]
        if field in doc:
            continue    # reported: the fake-document tests cover the figures
        assert t["hidden"] and not t["rows"], (table, t)
        for name in chart_names:
            c = page["charts"][name]
            assert c["state"] == "nodata" and c["series"] == [], (name, c)
            assert not c["canvas"] and ('no "%s"' % field) in c["nodata"], c


def test_dashboard_shows_cachez_live(gateway, browser):
    need_uplot()
    statuses = traffic(gateway, "before", "10.200.0.1", 70)
    assert 429 in statuses and 200 in statuses, statuses
    model_traffic(gateway, "before")

    browser.goto(gateway.url + "/dashboard")     # -> 301 /dashboard/
    assert browser.eval("location.pathname") == "/dashboard/"
    page, doc = sample(gateway, browser)
    assert page["status"] == "ok", page["statusText"]
    assert doc["limits"]["per_client"]["rejected"] > 0, doc
    assert_page_matches(page, doc)
    assert_no_data_where_absent(page, doc)

    # by model and by replica (SPEC 8.3): the two models named, each
    # answered upstream and from the cache; every replica that answered
    assert set(doc["models"]) == {"sim-small", "sim-large"}, doc["models"]
    for m in doc["models"].values():
        assert m["requests"] == 4 and m["hits"] == 1, m
        assert m["tokens_output"] == 3 * 4 and m["ttft_ms"]["p99"] > 0, m
    replicas = {"127.0.0.1:%d" % s.port for s in gateway.sims}
    assert set(doc["servers"]) <= replicas and len(doc["servers"]) >= 2, \
        doc["servers"]
    assert_models_and_replicas_match(page, doc)

    for name in ("hit_ratio", "tokens_saved", "limit_passed",
                 "limit_rejected"):
        c = page["charts"][name]
        assert c["state"] == "ok" and c["canvas"], (name, c)
    assert page["charts"]["hit_ratio"]["series"] == ["all caches", "main"]
    assert page["charts"]["limit_rejected"]["series"] == \
        ["per_client", "global", "tpm", "spend"]

    # it keeps polling: more traffic, after the page opened, shows in its
    # figures, and the rate charts draw the interval's HITs and 429s
    statuses = traffic(gateway, "after", "10.200.0.2", 70)
    assert 429 in statuses, statuses
    model_traffic(gateway, "after")
    page2, doc2 = sample(gateway, browser)
    assert page2["polls"] > page["polls"]
    assert doc2["hits"] > doc["hits"] and doc2["limits"]["per_client"][
        "rejected"] > doc["limits"]["per_client"]["rejected"]
    assert_page_matches(page2, doc2)
    assert doc2["models"]["sim-small"]["requests"] == 8
    assert_models_and_replicas_match(page2, doc2)

    def series(chart, label):
        pts = page2["charts"][chart]["points"]
        return pts["values"][pts["labels"].index(label)]

    rejected = [v for v in series("limit_rejected", "per_client")
                if v is not None]
    assert rejected and max(rejected) > 0, rejected
    ratio = [v for v in series("hit_ratio", "all caches") if v is not None]
    assert ratio and max(ratio) > 0 and all(0 <= v <= 100 for v in ratio)
    for name, c in page2["charts"].items():
        for values in (c["points"] or {"values": []})["values"]:
            assert all(v is None or v >= 0 for v in values), (name, values)

    path = browser.screenshot(os.path.join(OUT, "screenshot.png"))
    print("\ndashboard screenshot: %s" % path)
    assert_clean(browser, gateway.url)


def test_dashboard_loopback_only_and_never_limited(gateway):
    need_uplot()
    url = gateway.url
    files = {"/dashboard/": "text/html",
             "/dashboard/dashboard.js": "text/javascript",
             "/dashboard/dashboard.css": "text/css",
             "/dashboard/vendor/uPlot.iife.min.js": "text/javascript",
             "/dashboard/vendor/uPlot.min.css": "text/css"}

    # from elsewhere (realip believes X-Forwarded-For from loopback):
    # refused, the redirect of /dashboard included, as /cachez is
    away = {"X-Forwarded-For": "203.0.113.7"}
    for path in ["/dashboard", "/cachez"] + list(files):
        r = requests.get(url + path, headers=away, allow_redirects=False,
                         timeout=10)
        assert r.status_code == 403, (path, r.status_code)
        assert "uPlot" not in r.text and "agwDashboard" not in r.text

    r = requests.get(url + "/dashboard", allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["Location"] == "/dashboard/"

    before = cachez(gateway)
    # 60 loads from one client: past the per-client burst (40), were the
    # page limited; and nothing in /cachez moves
    with requests.Session() as s:
        for i in range(60):
            path = list(files)[i % len(files)]
            r = s.get(url + path, timeout=10)
            assert r.status_code == 200, (path, r.status_code)
            assert r.headers["Content-Type"].split(";")[0] == files[path]
            assert r.headers["Cache-Control"] == "no-cache"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            csp = r.headers["Content-Security-Policy"]
            assert "default-src 'none'" in csp and \
                "connect-src 'self'" in csp and "script-src 'self'" in csp
            assert "X-Cache" not in r.headers
            assert not any(h.lower().startswith("ratelimit")
                           for h in r.headers)
    assert without_uptime(cachez(gateway)) == without_uptime(before)

    # the page loads its files from here, by path: no CDN, no other host
    page = requests.get(url + "/dashboard/", timeout=10).text
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(links) == 5, links
    assert all(l.startswith("/dashboard/") or l == "data:," for l in links), \
        links
    with open(os.path.join(VENDOR, "uPlot.iife.min.js"), "rb") as f:
        assert requests.get(url + "/dashboard/vendor/uPlot.iife.min.js",
                            timeout=10).content == f.read()


# ---- a fake /cachez with the coming fields ---------------------------------

class FakeCachez:
    """A test nginx serving the shipped page files and snippet (rendered
    by render-conf.sh into shipped/) and a JSON file as /cachez, which
    the test rewrites between polls."""

    def __init__(self, nginx_factory):
        self.n = nginx_factory("""
    server {
        listen 127.0.0.1:%%PORT%%;
        default_type application/json;
        location = /cachez {
            alias %%DIR%%/cachez.json;
        }
        location = /dashboard {
            alias %%DIR%%/shipped/dashboard;
            absolute_redirect off;
        }
        location /dashboard/ {
            alias %%DIR%%/shipped/dashboard/;
            include shipped/snippets/dashboard-files.conf;
        }
    }
""", start=False)
        render_shipped(os.path.join(self.n.dir, "shipped"))
        self.n.http = self.n.http.replace("%%DIR%%", self.n.dir)
        self.n.write_conf()
        self.path = os.path.join(self.n.dir, "cachez.json")
        self.put({})
        self.n.start()
        self.url = self.n.url

    def put(self, doc):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)


@pytest.fixture
def fake(nginx_factory):
    return FakeCachez(nginx_factory)


HOSTILE = '<img src=x onerror="console.error(1)">'


def full_doc(scale=1, uptime=100):
    """/cachez with every field of SPEC 3.4, 7.x, 8.2 and 8.3; counters
    times `scale`; no uptime_s with uptime=None."""
    s = scale
    doc = {
        "hits": 30 * s, "misses": 10 * s, "bypasses": 2 * s,
        "hit_ratio": 0.75,
        "caches": {
            "main": {"backend": "shm", "hits": 20 * s, "misses": 5 * s,
                     "bypasses": s, "stores": 5 * s, "evictions": 0,
                     "expired": 0, "errors": 0, "entries": 5,
                     "bytes_used": 4096, "bytes_capacity": 67108864,
                     "tokens_saved": 400 * s, "coalesced": 0, "stale": 0},
            "redis": {"backend": "redis", "hits": 10 * s, "misses": 5 * s,
                      "bypasses": s, "stores": 5 * s, "evictions": 0,
                      "expired": 0, "errors": 0, "entries": 7,
                      "tokens_saved": 150 * s},
        },
        "limits": {
            "per_client": {"backend": "shm", "unit": "requests",
                           "passed": 100 * s, "rejected": 7 * s, "keys": 3},
            "tpm": {"backend": "redis", "unit": "tokens", "passed": 90 * s,
                    "rejected": 2 * s, "keys": 2, "reserved": 9000 * s,
                    "settled": 5000 * s, "returned": 4000 * s, "overrun": 0},
        },
        "redis": {"configured": True, "connected": True, "errors": 0,
                  "timeouts": 0},
        "models": {
            "sim-small": {"requests": 40 * s, "hits": 30 * s,
                          "tokens_input": 800 * s, "tokens_output": 320 * s,
                          "ttft_ms": {"p50": 12.5, "p90": 30.0, "p99": 95.0}},
            "meta-llama/Llama-3.1-8B": {
                "requests": 5 * s, "hits": 0, "tokens_input": 100 * s,
                "tokens_output": 64 * s,
                "ttft_ms": {"p50": 40.0, "p90": 80.0, "p99": 250.0}},
            HOSTILE: {"requests": 1, "hits": 0, "tokens_input": 1,
                      "tokens_output": 1, "ttft_ms": None},
        },
        "servers": {
            "127.0.0.1:9001": {"requests": 20 * s,
                               "ttft_ms": {"p50": 10.0, "p90": 20.0,
                                           "p99": 60.0}},
            "127.0.0.1:9002": {"requests": 25 * s,
                               "ttft_ms": {"p50": 15.0, "p90": 35.0,
                                           "p99": 120.0}},
        },
        "upstreams": {
            "ai_sim": {"balance": "least_tokens", "peers": [
                {"addr": "127.0.0.1:9001", "picks": 20 * s,
                 "inflight_requests": 3, "inflight_tokens": 900,
                 "report": {"running": 2, "waiting": 1,
                            "kv_cache_usage": 0.42, "age_ms": 350}},
                {"addr": "127.0.0.1:9002", "picks": 25 * s,
                 "inflight_requests": 1, "inflight_tokens": 120,
                 "report": None},
                {"addr": "127.0.0.1:9003", "picks": 0,
                 "inflight_requests": 0, "inflight_tokens": 0},
            ]},
        },
    }
    if uptime is not None:
        doc["uptime_s"] = uptime
    return doc


def test_dashboard_draws_models_servers_and_replicas(fake, browser):
    need_uplot()
    doc = full_doc()
    fake.put(doc)
    browser.goto(fake.url + "/dashboard/")
    next_polls(browser)
    page = browser.eval(READ_PAGE)
    assert page["status"] == "ok", page["statusText"]

    # models: every figure of the document, names as text (the HTML one
    # too: no element made of it, no handler run)
    models = page["tables"]["models"]["rows"]
    assert list(models) == list(doc["models"])
    for name, m in doc["models"].items():
        row = models[name]
        assert row["_name"] == name
        for f in ("requests", "hits", "tokens_input", "tokens_output"):
            assert num(row[f]) == m[f], (name, f)
        for p in ("p50", "p90", "p99"):
            want = m["ttft_ms"][p] if m["ttft_ms"] else None
            assert num(row["ttft_" + p]) == want, (name, p, row)
    assert browser.eval("document.querySelectorAll('img').length") == 0

    servers = page["tables"]["servers"]["rows"]
    assert list(servers) == list(doc["servers"])
    for name, s in doc["servers"].items():
        assert num(servers[name]["requests"]) == s["requests"]
        for p in ("p50", "p90", "p99"):
            assert num(servers[name]["ttft_" + p]) == s["ttft_ms"][p]

    for chart, src in (("ttft_model", doc["models"]),
                       ("ttft_server", doc["servers"])):
        c = page["charts"][chart]
        assert c["state"] == "ok" and c["canvas"], c
        want = []
        for name, m in src.items():
            t = m["ttft_ms"] or {}
            want += [(name + " p50", t.get("p50")),
                     (name + " p99", t.get("p99"))]
        assert list(zip(c["series"], c["last"])) == want, c

    # replicas: the balancer's view, a peer without a report as "no report"
    peers = page["tables"]["peers"]["rows"]
    want_peers = doc["upstreams"]["ai_sim"]["peers"]
    assert list(peers) == ["ai_sim " + p["addr"] for p in want_peers]
    for p in want_peers:
        row = peers["ai_sim " + p["addr"]]
        assert row["_name"] == p["addr"] and row["upstream"] == "ai_sim"
        assert row["balance"] == "least_tokens"
        for f in ("picks", "inflight_requests", "inflight_tokens"):
            assert num(row[f]) == p[f], (p["addr"], f)
        rep = p.get("report") or {}
        for f in ("running", "waiting", "kv_cache_usage", "age_ms"):
            assert num(row[f]) == rep.get(f), (p["addr"], f, row)
    c = page["charts"]["replica_requests"]
    assert list(zip(c["series"], c["last"])) == [
        ("127.0.0.1:9001 in flight", 3), ("127.0.0.1:9001 running", 2),
        ("127.0.0.1:9001 waiting", 1), ("127.0.0.1:9002 in flight", 1),
        ("127.0.0.1:9003 in flight", 0)], c
    c = page["charts"]["replica_tokens"]
    assert list(zip(c["series"], c["last"])) == [
        ("127.0.0.1:9001", 900), ("127.0.0.1:9002", 120),
        ("127.0.0.1:9003", 0)], c

    # the rest of the document, as in the live test
    assert page["stats"]["redis"] == "connected"
    assert num(page["stats"]["tokens_saved"]) == 550
    assert num(page["tables"]["limits"]["rows"]["tpm"]["settled"]) == 5000
    assert page["tables"]["limits"]["rows"]["tpm"]["unit"] == "tokens"

    # Counters grow: positive rates.  They go down (no uptime to tell a
    # restart by): a gap, never a negative rate; then grow again.  Then a
    # restart told by uptime_s going down, after which the counters are
    # already above the old ones: a gap too, not a spike of 3,800/s.
    for d in (full_doc(scale=3, uptime=102), full_doc(scale=1, uptime=None),
              full_doc(scale=2, uptime=None), full_doc(scale=2, uptime=50),
              full_doc(scale=40, uptime=1), full_doc(scale=41, uptime=3)):
        fake.put(d)
        next_polls(browser)
    page = browser.eval(READ_PAGE)
    for name in ("limit_passed", "limit_rejected", "tokens_saved",
                 "hit_ratio"):
        pts = page["charts"][name]["points"]
        for label, values in zip(pts["labels"], pts["values"]):
            assert all(v is None or v >= 0 for v in values), (name, label,
                                                             values)
            assert any(v is not None and v > 0 for v in values), \
                (name, label, values)
    # at most 200 passed between two documents, a second or so apart
    pts = page["charts"]["limit_passed"]["points"]
    passed = pts["values"][pts["labels"].index("per_client")]
    assert max(v for v in passed if v is not None) < 1000, passed
    assert num(page["tables"]["limits"]["rows"]["per_client"]["passed"]) \
        == 4100
    os.makedirs(OUT, exist_ok=True)
    print("\nfake-document screenshot: %s" % browser.screenshot(
        os.path.join(OUT, "screenshot-fake.png")))
    assert_clean(browser, fake.url)


def test_dashboard_without_optional_fields_says_no_data(fake, browser):
    need_uplot()
    # the oldest /cachez: no caches, no limits, no Redis, nothing of 8.x
    fake.put({"hits": 0, "misses": 0, "bypasses": 0, "hit_ratio": 0,
              "uptime_s": 5})
    browser.goto(fake.url + "/dashboard/")
    next_polls(browser)
    page = browser.eval(READ_PAGE)
    assert page["status"] == "ok", page["statusText"]
    for name, c in page["charts"].items():
        if name == "hit_ratio":     # "all caches" from the top-level counters
            assert c["series"] == ["all caches"], c
            continue
        assert c["state"] == "nodata" and c["nodata"], (name, c)
    for name, t in page["tables"].items():
        assert t["hidden"] and not t["rows"], (name, t)
    assert page["stats"]["tokens_saved"] is None or \
        page["stats"]["tokens_saved"] == ""
    assert page["stats"]["redis"] == ""

    # configured but empty: other words, still no error
    fake.put({"hits": 0, "misses": 0, "bypasses": 0, "hit_ratio": 0,
              "caches": {}, "limits": {}, "models": {}, "servers": {},
              "upstreams": {"ai_sim": {"balance": "prefix", "peers": []}},
              "redis": {"configured": False, "connected": False,
                        "errors": 0, "timeouts": 0}, "uptime_s": 6})
    next_polls(browser)
    page = browser.eval(READ_PAGE)
    assert page["charts"]["ttft_model"]["nodata"] == \
        "No request has named a model yet."
    assert page["charts"]["replica_tokens"]["nodata"] == \
        "No upstream peers are reported."
    assert page["charts"]["limit_passed"]["nodata"] == \
        "No limit zone is configured."
    assert page["stats"]["redis"] == "off"

    # not JSON, then JSON again: an error line, then live again
    fake.put("<html>not json</html>")
    browser.wait_for("document.getElementById('status').dataset.state"
                     " === 'error'")
    fake.put(full_doc())
    browser.wait_for("document.getElementById('status').dataset.state"
                     " === 'ok'")
    next_polls(browser)
    page = browser.eval(READ_PAGE)
    assert page["charts"]["ttft_model"]["state"] == "ok"
    assert_clean(browser, fake.url)
