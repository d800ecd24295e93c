"""Packaging checked statically, without a Docker engine or k6 (make
test-docker runs the images for real): scripts/check-static.sh passes on the checkout and fails
on deliberately broken copies of it; scripts/k6-report.py renders k6
summaries as Markdown.

Needs docker-compose and nodejs (Debian packages), like check-static.sh.
"""

import json
import os
import shutil
import subprocess

import pytest

# files only, no module inside: nothing for the sanitizer run to check
pytestmark = pytest.mark.skipif(bool(os.environ.get("AGW_SANITIZE")),
                                reason="static checks; no module involved")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(REPO, "scripts", "check-static.sh")
REPORT = os.path.join(REPO, "scripts", "k6-report.py")

SKIP_DIRS = {"build", "run", ".git", ".pytest_cache", "__pycache__"}


def run_check(root=REPO, only=None):
    env = dict(os.environ)
    if only:
        env["CHECK_STATIC_ONLY"] = only   # the part a broken copy exercises
    return subprocess.run([CHECK, root], stdout=subprocess.PIPE, env=env,
                          stderr=subprocess.STDOUT, text=True, timeout=300)


@pytest.fixture
def tree(tmp_path):
    """A copy of the checkout's sources (no build output, no .git)."""
    dst = tmp_path / "repo"
    shutil.copytree(REPO, dst, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in SKIP_DIRS])
    return dst


def edit(path, old, new):
    text = path.read_text()
    assert old in text, "%s: %r not found" % (path, old)
    path.write_text(text.replace(old, new, 1))


def assert_fails(tree, only, *needles):
    r = run_check(str(tree), only)
    assert r.returncode != 0, r.stdout
    for n in needles:
        assert n in r.stdout, r.stdout


def test_check_static_passes():
    r = run_check()
    assert r.returncode == 0, r.stdout
    assert "check-static: all passed" in r.stdout


def test_copy_passes(tree):
    # the broken-copy tests below mean something only if the copy passes
    r = run_check(str(tree))
    assert r.returncode == 0, r.stdout


def test_js_syntax_error_fails(tree):
    edit(tree / "k6" / "stream.js", "export default function () {",
         "export default function () {{")
    assert_fails(tree, "k6", "k6/stream.js: JavaScript syntax error")


def test_lib_syntax_error_fails(tree):
    edit(tree / "k6" / "lib" / "common.js", "export function header(res, name) {",
         "export function header(res, name) { const = 1;")
    assert_fails(tree, "k6", "k6/lib/common.js: JavaScript syntax error")


def test_missing_handle_summary_fails(tree):
    edit(tree / "k6" / "cache.js", "export function handleSummary(data)",
         "function handleSummaryX(data)")
    assert_fails(tree, "k6", "exports no handleSummary function")


def test_threshold_on_unknown_metric_fails(tree):
    edit(tree / "k6" / "stream.js", "ttft_ms: ['p(95)<500']",
         "ttft_msec: ['p(95)<500']")
    assert_fails(tree, "k6", "threshold on unknown metric ttft_msec")


def test_rate_limit_checks_read_spec_headers(tree):
    # a 429 check looking for the wrong header fails on a SPEC-shaped 429
    edit(tree / "k6" / "rate_limit.js", "header(r, 'retry-after-ms')",
         "header(r, 'retry-after-msec')")
    assert_fails(tree, "k6", "429 retry-after-ms")


def test_compose_missing_dockerfile_fails(tree):
    edit(tree / "compose.yaml", "dockerfile: docker/nginx.Dockerfile",
         "dockerfile: docker/missing.Dockerfile")
    assert_fails(tree, "docker", "docker/missing.Dockerfile does not exist")


def test_compose_invalid_fails(tree):
    edit(tree / "compose.yaml", "    stop_signal: SIGQUIT",
         "    stop_signal: SIGQUIT\n    no_such_option: 1")
    assert_fails(tree, "compose", "compose.yaml rejected by docker-compose config")


def test_dockerfile_missing_copy_source_fails(tree):
    edit(tree / "docker" / "nginx.Dockerfile", "COPY scripts/render-conf.sh",
         "COPY scripts/render-conf-gone.sh")
    assert_fails(tree, "docker", "scripts/render-conf-gone.sh: no such file")


def test_dockerignore_not_sending_uplot_fails(tree):
    # the nginx image copies the uPlot `make` installed: build/ is excluded
    # but for those files, or the image would be built without them
    edit(tree / ".dockerignore", "!build/dashboard/vendor/uPlot.iife.min.js\n", "")
    edit(tree / ".dockerignore", "!build/dashboard/vendor/uPlot.min.css\n", "")
    edit(tree / ".dockerignore", "!build/dashboard/vendor/uPlot.LICENSE\n", "")
    assert_fails(tree, "docker", "COPY build/dashboard/vendor/uPlot*: .dockerignore"
                 " sends no file of build/")


def test_dockerignore_sending_what_make_does_not_make_fails(tree):
    edit(tree / ".dockerignore", "!build/dashboard/vendor/uPlot.min.css",
         "!build/dashboard/vendor/uPlot.css")
    assert_fails(tree, "docker", "build/dashboard/vendor/uPlot.css is not made by `make`")


def test_dockerfile_unknown_make_target_fails(tree):
    edit(tree / "docker" / "ai-sim.Dockerfile", "RUN make build/ai-sim",
         "RUN make build/ai-simulator")
    assert_fails(tree, "docker", "make build/ai-simulator: no such target")


def test_dockerfile_non_debian_base_fails(tree):
    edit(tree / "docker" / "redis.Dockerfile", "FROM debian:12-slim",
         "FROM redis:7")
    assert_fails(tree, "docker", "FROM redis:7")


def test_entrypoint_not_executable_fails(tree):
    os.chmod(tree / "docker" / "nginx-entrypoint.sh", 0o644)
    assert_fails(tree, "docker", "not executable")


def test_dashboard_js_syntax_error_fails(tree):
    edit(tree / "nginx-conf" / "dashboard" / "dashboard.js",
         "function isObj(v) {", "function isObj(v) {{")
    assert_fails(tree, "dashboard",
                 "nginx-conf/dashboard/dashboard.js: JavaScript syntax error")


def test_dashboard_from_a_cdn_fails(tree):
    edit(tree / "nginx-conf" / "dashboard" / "index.html",
         'src="/dashboard/vendor/uPlot.iife.min.js"',
         'src="https://cdn.jsdelivr.net/npm/uplot@1.6.32/dist/uPlot.iife.min.js"')
    assert_fails(tree, "dashboard", "is not a file of this nginx",
                 "names another host (https://cdn.jsdelivr.net)")


def test_dashboard_unpinned_uplot_fails(tree):
    edit(tree / "nginx-conf" / "dashboard" / "package.json",
         '"uplot": "1.', '"uplot": "^1.')
    assert_fails(tree, "dashboard", "is not one exact version",
                 "out of step with package.json")


def bookworm():
    try:
        return "VERSION_CODENAME=bookworm" in open("/etc/os-release").read()
    except OSError:
        return False


@pytest.mark.skipif(not bookworm(), reason="apt names are checked on Debian 12 hosts")
def test_unknown_apt_package_fails(tree):
    edit(tree / "docker" / "ai-sim.Dockerfile", "libcjson1", "libcjson-nonexistent1")
    assert_fails(tree, "docker", "apt package libcjson-nonexistent1 does not exist")


@pytest.mark.skipif(not bookworm() or not os.path.exists(os.path.join(REPO, "build", "ai-sim")),
                    reason="needs Debian 12 and build/ai-sim")
def test_missing_runtime_library_fails(tree):
    os.symlink(os.path.join(REPO, "build"), tree / "build")
    edit(tree / "docker" / "ai-sim.Dockerfile", "libevent-2.1-7 libcjson1", "libcjson1")
    assert_fails(tree, "docker", "needs libevent-2.1.so.7 from package libevent-2.1-7")


# ---- scripts/k6-report.py -----------------------------------------------

def k6_summary(ok=True):
    """Shaped like the `data` k6 passes to handleSummary()."""
    return {
        "root_group": {
            "name": "", "path": "", "id": "d41d8cd98f00b204e9800998ecf8427e",
            "groups": [],
            "checks": [
                {"name": "status 200", "path": "::status 200", "id": "a1",
                 "passes": 990, "fails": 10},
                {"name": "X-Cache is HIT, MISS or BYPASS", "path": "::X-Cache",
                 "id": "a2", "passes": 1000, "fails": 0},
            ],
        },
        "options": {"summaryTrendStats": ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"],
                    "summaryTimeUnit": "", "noColor": False},
        "state": {"isStdOutTTY": False, "isStdErrTTY": False, "testRunDurationMs": 30012.5},
        "metrics": {
            "http_req_duration": {
                "type": "trend", "contains": "time",
                "values": {"avg": 12.5, "min": 1.1, "med": 10.0, "max": 250.0,
                           "p(90)": 20.0, "p(95)": 31.25, "p(99)": 120.0},
                "thresholds": {"p(95)<500": {"ok": True}, "p(99)<100": {"ok": False}},
            },
            "http_req_duration{phase:measure}": {
                "type": "trend", "contains": "time",
                "values": {"avg": 5.0, "min": 1.0, "med": 4.0, "max": 50.0,
                           "p(90)": 8.0, "p(95)": 9.0, "p(99)": 30.0},
                "thresholds": {"p(95)<500": {"ok": True}},
            },
            "cache_hits{phase:measure}": {
                "type": "rate", "contains": "default",
                "values": {"rate": 0.97, "passes": 970, "fails": 30},
                "thresholds": {"rate>0.8": {"ok": ok}},
            },
            "http_req_failed": {
                "type": "rate", "contains": "default",
                "values": {"rate": 0.0, "passes": 0, "fails": 1000},
                "thresholds": {"rate<0.01": {"ok": True}},
            },
            "http_reqs": {"type": "counter", "contains": "default",
                          "values": {"count": 1000, "rate": 33.32}},
            "data_received": {"type": "counter", "contains": "data",
                              "values": {"count": 204800, "rate": 6826.0}},
            "vus": {"type": "gauge", "contains": "default",
                    "values": {"value": 1, "min": 1, "max": 20}},
        },
    }


def test_k6_report_markdown(tmp_path):
    path = tmp_path / "cache-summary.json"
    path.write_text(json.dumps(k6_summary()))
    r = subprocess.run(["/usr/bin/python3", REPORT, str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 0, r.stderr
    md = r.stdout
    lines = md.splitlines()
    assert lines[0] == "# k6 results"
    # overview row: requests, failure rate, thresholds passed / total
    assert "| cache | 1000 | 0.00% | 4/5 | **FAIL** |" in lines
    assert "## cache" in lines
    assert "| threshold | metric | observed | result |" in lines
    assert "| `p(95)<500` | http_req_duration | p(95) = 31.25 ms | pass |" in lines
    assert "| `p(99)<100` | http_req_duration | p(99) = 120.00 ms | **FAIL** |" in lines
    assert "| `rate>0.8` | cache_hits{phase:measure} | rate = 0.97 | pass |" in lines
    assert "| status 200 | 990 | **10** |" in lines
    assert any(l.startswith("| http_req_duration | 12.50 ms |") for l in lines)
    assert "| http_reqs | counter | 1000 (33.32/s) |" in lines
    # every table row has as many cells as its header
    for block in md.split("\n\n"):
        rows = [l for l in block.splitlines() if l.startswith("|")]
        if rows:
            n = rows[0].count(" | ")
            assert all(r_.replace("\\|", "").count(" | ") == n for r_ in rows), block


def test_k6_report_strict_and_errors(tmp_path):
    good = tmp_path / "baseline-summary.json"
    good.write_text(json.dumps(k6_summary(ok=True)))
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    # p(99)<100 fails in the sample: --strict turns that into exit 1
    r = subprocess.run(["/usr/bin/python3", REPORT, "--strict", str(good)],
                       stdout=subprocess.PIPE, text=True)
    assert r.returncode == 1 and "## baseline" in r.stdout
    r = subprocess.run(["/usr/bin/python3", REPORT, str(bad)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode == 2 and "not JSON" in r.stderr


# ---- scripts/bench_charts.py (make bench's SVG charts) -------------------

def have_matplotlib():
    return subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not have_matplotlib(),
                    reason="python3-matplotlib missing (scripts/deps.sh bench)")
def test_bench_charts_from_results(tmp_path):
    """`bench.py --charts-only` draws both charts from a run's results.json
    (synthetic here: the full bench takes 15 minutes of both cores)."""
    def m(rps, cpu):
        return {"rps": rps, "lo": rps * 0.9, "hi": rps * 1.1, "p50": 1.0,
                "p99": 2.0, "cpu": cpu, "cpu_lo": cpu, "cpu_hi": cpu}
    results = {
        "rows": [{"name": "nginx return 200", "ceiling": None, "peer": None},
                 {"name": "shm cache HIT", "ceiling": "nginx return 200",
                  "peer": "proxy_cache HIT"},
                 {"name": "proxy_cache HIT", "ceiling": "nginx return 200",
                  "peer": None}],
        "med": {"nginx return 200": m(50000, 20.0),
                "shm cache HIT": m(40000, 25.0),
                "proxy_cache HIT": m(30000, 33.0)},
    }
    src = tmp_path / "results.json"
    src.write_text(json.dumps(results))
    out = tmp_path / "charts"
    r = subprocess.run(["/usr/bin/python3", os.path.join(REPO, "scripts",
                                                         "bench.py"),
                        "--charts-only", "--results", str(src),
                        "--charts-dir", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rps = (out / "bench-rps.svg").read_text()
    peers = (out / "bench-peers.svg").read_text()
    assert rps.startswith("<?xml") and "<svg" in rps
    for name in ("nginx return 200", "shm cache HIT", "proxy_cache HIT"):
        assert name in rps, name
    # only rows with a stock peer are in the ratio chart
    assert "vs proxy_cache HIT" in peers and "nginx return 200\n" not in peers

    # the same results draw the same bytes (the charts are committed)
    again = tmp_path / "again"
    subprocess.run(["/usr/bin/python3", os.path.join(REPO, "scripts",
                                                     "bench.py"),
                    "--charts-only", "--results", str(src),
                    "--charts-dir", str(again)], check=True,
                   capture_output=True, timeout=120)
    assert (again / "bench-rps.svg").read_text() == rps
