#!/usr/bin/python3
"""make bench: every row of SPEC 5 side by side in one run, on loopback.

One nginx (one worker, so its CPU time is one process to read) serves every
row from its own location; wrk drives each row in turn, and the whole set
is repeated REPS times interleaved, so a slow moment of this shared machine
lands on all rows alike.  For each row: median requests/s and the spread
(min..max) over the repetitions, median p50/p99 latency, and the worker's
CPU time per request read from /proc/PID/stat before and after each run
(steadier than requests/s when the other core is busy).  Ratios compare
each row's requests/s with the ceiling (`return 200`, or the static file
for the limiter rows, which need a content phase) and with its stock-nginx
peer.  The limiter rows, whose differences are a few percent, are also
measured side by side at the same time on two identical nginx (see
side_by_side), which cancels most of what moves a single run.  The tables
go to stdout and docs/BENCHMARKS.md, the figures to build/bench/results.json
and the charts (scripts/bench_charts.py, SVG) next to docs/BENCHMARKS.md.

    scripts/bench.py [--seconds 4] [--reps 5] [--connections 32]
                     [--pairs 30] [--pair-seconds 2] [--metrics-pairs N]
                     [--callgrind-passes 3 | --no-callgrind]
    scripts/bench.py --callgrind-rows ROW... [--callgrind-passes 3]
                     only these rows' instructions per request
    scripts/bench.py --metrics-only [--metrics-pairs 30] ...
                     only the GenAI metrics' rows (on and off side by
                     side), into their section of docs/BENCHMARKS.md
    scripts/bench.py --balance-only [--balance-pairs 30] ...
                     only the balancers' rows (least_tokens and prefix
                     against least_conn, side by side), into their
                     section of docs/BENCHMARKS.md
    scripts/bench.py --charts-only [--results FILE] [--charts-dir DIR]
                     redraw the charts from a run's results.json
"""

import argparse
import datetime
import glob
import json
import operator
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import bench_charts  # noqa: E402
from harness.nginx import Nginx, free_port, private_dir  # noqa: E402
from harness.sim import Sim  # noqa: E402
try:
    from harness.redis import RedisServer, available as redis_available
except ImportError:  # the Redis store is not built in
    RedisServer = None

KIB = "k" * 1024

HTTP = """
    access_log off;
    keepalive_requests 1000000;
    root {dir}/www;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_cache_zone zone=bench:16m;
    proxy_cache_path {dir}/stock_cache levels=1:2 keys_zone=stock:16m;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_pass:1m
                          rate=100000000r/s burst=100000000;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_429:1m
                          rate=1r/m burst=1;
    limit_req_zone $binary_remote_addr zone=stock_pass:1m rate=100000000r/s;
    limit_req_zone $binary_remote_addr zone=stock_429:1m rate=1r/m;
    ai_gateway_limit_zone global zone=agw_global:1m
                          rate=100000000r/s burst=100000000;
    limit_req_zone global zone=stock_global:1m rate=100000000r/s;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_tokens:1m
                          rate=100000000t/s burst=100000000;
    ai_gateway_model_price default input=0.15 output=0.60;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_usd:1m
                          rate=1000000usd/m burst=1000000usd;
    limit_req_status 429;
    {redis_conf}

    upstream sim {{ server 127.0.0.1:{sim}; keepalive 64; }}
    upstream origin {{ server 127.0.0.1:%%PORT%%; keepalive 64; }}

    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /origin {{ default_type text/plain; return 200 "{kib}"; }}
        location = /cachez {{ ai_gateway_cachez; }}
    }}
{servers}
"""

# Each row is its own server on its own port with one location at the same
# URI, so that parsing the request and finding the server and the location
# cost every row the same: only the location's body differs.
SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location = /b {{ {body} }}
    }}"""

URI = "/b"

REDIS_ZONE = """ai_gateway_redis 127.0.0.1:{port} timeout=1s;
    ai_gateway_cache_zone zone=bench_near:16m;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_redis:1m
                          rate=100000000r/s burst=100000000 redis;
    ai_gateway_limit_zone $binary_remote_addr zone=agw_lease:1m
                          rate=100000000r/s burst=100000000 redis lease=1000;"""

RETURN = 'default_type text/plain; return 200 "%s";' % KIB
STATIC = "alias {dir}/www/static.txt;"

ADD_HEADERS = (" add_header RateLimit-Limit 100000000;"
               " add_header RateLimit-Remaining 99999999;"
               " add_header RateLimit-Reset 1;"
               " add_header RateLimit-Policy '\"agw_pass\";q=100000000;w=1';"
               " add_header RateLimit '\"agw_pass\";r=99999999;t=1';")

# name, location body, ceiling row, stock peer row, status expected,
# connections (None: --connections); rows named Redis need redis-server
ROWS = [
    ("nginx return 200 (ceiling)", RETURN, None, None, 200),
    ("plain proxy to ai-sim", "proxy_pass http://sim/v1/models;",
     "nginx return 200 (ceiling)", None, 200),
    ("module shm-cache HIT",
     "ai_gateway_cache bench; proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", "stock proxy_cache HIT", 200),
    ("module Redis-cache HIT",
     "ai_gateway_cache redis; proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", "module shm-cache HIT", 200),
    # one request at a time: nothing to pipeline on the worker's connection
    ("module Redis-cache HIT, 1 connection",
     "ai_gateway_cache redis; proxy_pass http://origin/origin;",
     None, "module Redis-cache HIT", 200, 1),
    # the near cache (SPEC 7.4): a Redis entry kept in shared memory
    ("module near-cache HIT",
     "ai_gateway_cache redis; ai_gateway_cache_near bench_near ttl=3600s;"
     " proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", "module shm-cache HIT", 200),
    ("stock proxy_cache HIT",
     "proxy_cache stock; proxy_cache_valid 200 1h; "
     "proxy_pass http://origin/origin;",
     "nginx return 200 (ceiling)", None, 200),
    ("static file (limiter ceiling)", STATIC, None, None, 200),
    ("module limiter, passing", STATIC + " ai_gateway_limit zone=agw_pass;",
     "static file (limiter ceiling)", "stock limit_req, passing", 200),
    ("module limiter, passing, headers off",
     STATIC + " ai_gateway_limit zone=agw_pass; ai_gateway_limit_headers off;",
     "static file (limiter ceiling)", "stock limit_req, passing", 200),
    ("stock limit_req, passing",
     STATIC + " limit_req zone=stock_pass burst=100000000 nodelay;",
     "static file (limiter ceiling)", None, 200),
    # the shipped config's shape: per client and global
    ("module limiter, 2 zones, passing",
     STATIC + " ai_gateway_limit zone=agw_pass;"
     " ai_gateway_limit zone=agw_global;",
     "static file (limiter ceiling)", "stock limit_req, 2 zones, passing",
     200),
    ("module limiter, 2 zones, passing, headers off",
     STATIC + " ai_gateway_limit zone=agw_pass;"
     " ai_gateway_limit zone=agw_global; ai_gateway_limit_headers off;",
     "static file (limiter ceiling)", "stock limit_req, 2 zones, passing",
     200),
    ("stock limit_req, 2 zones, passing",
     STATIC + " limit_req zone=stock_pass burst=100000000 nodelay;"
     " limit_req zone=stock_global burst=100000000 nodelay;",
     "static file (limiter ceiling)", None, 200),
    # what the five RateLimit headers cost without any limiter: the same
    # lines the limiter sends here, added by stock add_header
    ("static file + the limiter's five headers by add_header",
     STATIC + ADD_HEADERS, "static file (limiter ceiling)", None, 200),
    ("module Redis limiter, passing",
     STATIC + " ai_gateway_limit zone=agw_redis;",
     "static file (limiter ceiling)", "module limiter, passing", 200),
    # SPEC 7.4: a lease of 1000 tokens, one round trip per 1000 requests
    ("module Redis limiter, lease=1000, passing",
     STATIC + " ai_gateway_limit zone=agw_lease;",
     "static file (limiter ceiling)", "module limiter, passing", 200),
    # SPEC 7.1: a token zone reserves the estimate (no body here: the
    # default 256) and settles when the answer ends
    ("module token zone, passing",
     STATIC + " ai_gateway_limit zone=agw_tokens;",
     "static file (limiter ceiling)", "module limiter, passing", 200),
    # SPEC 8.4: a money zone prices a prompt's estimate by its model (a
    # request without a body costs nothing, so these two rows POST a chat
    # request, through the proxy, to compare a money zone and a token
    # zone on the same request; the answer says nothing: settled as
    # reserved)
    ("module token zone, POST",
     "ai_gateway_limit zone=agw_tokens; proxy_pass http://origin/origin;",
     None, None, 200),
    ("module money zone, POST",
     "ai_gateway_limit zone=agw_usd; proxy_pass http://origin/origin;",
     None, "module token zone, POST", 200),
    ("module limiter, 429 path", STATIC + " ai_gateway_limit zone=agw_429;",
     "static file (limiter ceiling)", "stock limit_req, 429 path", 429),
    ("stock limit_req, 429 path", STATIC + " limit_req zone=stock_429;",
     "static file (limiter ceiling)", None, 429),
]

ROWS = [r + (None,) * (6 - len(r)) for r in ROWS]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def parse_ms(text):
    """wrk prints latencies as 812.00us, 1.20ms, 2.01s or 1.00m"""
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if m is None:
        raise SystemExit("bench: cannot read wrk's latency %r" % text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    return float(m.group(1)) * scale[m.group(2)]


# the rows named ", POST" send this chat request (a wrk script written
# next to the docroot by render())
POST_BODY = ('{"model":"bench","max_tokens":16,"messages":'
             '[{"role":"user","content":"what does this cost"}]}')
POST_URLS = {}


def wrk(url, seconds, connections, script=None):
    """script: a wrk Lua file (the metrics rows' POSTs); the rows named
    ", POST" have theirs in POST_URLS"""
    script = script or POST_URLS.get(url)
    out = subprocess.run(["wrk", "-t1", "-c%d" % connections,
                          "-d%ds" % seconds, "--latency"]
                         + (["-s", script] if script else []) + [url],
                         capture_output=True, text=True, check=True).stdout
    if "Latency Distribution" not in out:
        raise SystemExit("bench: wrk %s failed:\n%s" % (url, out))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = parse_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = parse_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, p50, p99, int(non2xx.group(1)) if non2xx else 0


def wrk_with_cpu(url, pid, seconds, connections, script=None):
    """wrk's figures for url, and the worker pid's CPU µs per request."""
    before = cpu_seconds(pid)
    rps, total, p50, p99, _ = wrk(url, seconds, connections, script)
    cpu = cpu_seconds(pid) - before
    return rps, p50, p99, cpu / total * 1e6 if total else 0


def docroot(work):
    """work/www/static.txt, the 1 KiB file of the static rows."""
    os.makedirs(work + "/www")
    with open(work + "/www/static.txt", "w") as f:
        f.write(KIB)


def redis_benchmark(port, seconds):
    """redis-benchmark GET of a 1 KiB value: the floor a Redis HIT sits on."""
    n = max(20000, seconds * 20000)
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get",
                          "-d", "1024", "-n", str(n), "-c", "32", "-q"],
                         capture_output=True, text=True).stdout
    m = re.search(r"GET: ([\d.]+) requests per second", out)
    return float(m.group(1)) if m else None


def render(rows, work, sim_port, redis_conf):
    """The http{} body, and each row's URL on its own port."""
    urls, servers = {}, []
    lua = os.path.join(work, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = %s\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                % json.dumps(POST_BODY))
    for name, body, _, _, _, _ in rows:
        port = free_port()
        urls[name] = "http://127.0.0.1:%d%s" % (port, URI)
        if name.endswith(", POST"):
            POST_URLS[urls[name]] = lua
        servers.append(SERVER.format(port=port, body=body.format(dir=work)))
    http = HTTP.format(dir=work, sim=sim_port, kib=KIB,
                       redis_conf=redis_conf, servers="".join(servers))
    return http, urls


def instructions_per_request(http, rows, urls, seconds, script=None):
    """The same config in one nginx process under callgrind: instructions
    executed per request for each row.  Unlike requests/s these counts do
    not depend on what else the machine is doing; rerunning gives the same
    figures within a fraction of a percent."""
    out = private_dir("agw-callgrind-")
    n = Nginx(http, master=False, wrapper=[
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        "--log-file=%s/valgrind.log" % out,
        "--callgrind-out-file=%s/callgrind.out" % out])
    counts = {}
    try:
        n.start()
        pid = str(n.proc.pid)
        for name, _, _, _, _, _ in rows:
            url = urls[name]
            subprocess.run(["wrk", "-t1", "-c1", "-d1s"]
                           + (["-s", script] if script else []) + [url],
                           capture_output=True)
            for args in (["-z"], ["-i", "on"]):
                subprocess.run(["callgrind_control"] + args + [pid],
                               capture_output=True, check=True)
            _, total, _, _, _ = wrk(url, seconds, 4, script)
            for args in (["-i", "off"], ["-d", "row"]):
                subprocess.run(["callgrind_control"] + args + [pid],
                               capture_output=True, check=True)
            dumps = sorted(glob.glob(out + "/callgrind.out.*"),
                           key=os.path.getmtime)
            with open(dumps[-1]) as f:
                ir = int(re.search(r"^totals: (\d+)", f.read(), re.M)
                         .group(1))
            counts[name] = ir / total if total else 0
    finally:
        n.stop()
        n.cleanup()
        shutil.rmtree(out, ignore_errors=True)
    return counts


def paired(passes, a, b, op, spec):
    """op(row a, row b) within each callgrind pass: median (min..max), so
    that a pass that ran slower as a whole shifts both rows alike."""
    if not passes or a not in passes[0] or b not in passes[0]:
        return "-"
    vals = sorted(op(p[a], p[b]) for p in passes)
    text = spec % statistics.median(vals)
    if len(vals) > 1:
        text += " (%s..%s)" % (spec % vals[0], spec % vals[-1])
    return text


# Pairs measured side by side at the same time: (row, reference).  The
# first compares the reference with itself: the method's own noise.
SIDE_BY_SIDE = [
    ("static file (limiter ceiling)", "static file (limiter ceiling)"),
    ("module limiter, passing", "static file (limiter ceiling)"),
    ("module limiter, passing, headers off", "static file (limiter ceiling)"),
    ("stock limit_req, passing", "static file (limiter ceiling)"),
    ("static file + the limiter's five headers by add_header",
     "static file (limiter ceiling)"),
    ("module token zone, passing", "module limiter, passing"),
    ("module money zone, POST", "module token zone, POST"),
    ("module Redis limiter, passing", "module limiter, passing"),
    ("module Redis limiter, lease=1000, passing", "module limiter, passing"),
]


def run_at_once(jobs, seconds, connections, script=None):
    """wrk on every (url, worker pid) of jobs at the same time: requests/s
    and the worker's CPU µs per request for each."""
    results = [None] * len(jobs)

    def one(i, url, pid):
        rps, _, _, cpu = wrk_with_cpu(url, pid, seconds, connections, script)
        results[i] = (rps, cpu)

    threads = [threading.Thread(target=one, args=(i, url, pid))
               for i, (url, pid) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def median_interval(values, rng, rounds=2000):
    """95% bootstrap interval of the median of values."""
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]


def side_by_side(rows, sim_port, pairs, seconds, connections, redis_conf):
    """Each SIDE_BY_SIDE row and its reference driven at the same time, on
    two identical nginx (one worker each, each its own half of the
    connections), so that a slow moment of this shared machine (the
    hypervisor taking the CPU, another tenant) slows both alike.  Each pair
    swaps which nginx serves which row.  Returns, per (row, reference), the
    per-pair requests/s and CPU-per-request ratios row/reference."""
    present = {r[0] for r in rows}
    wanted = [p for p in SIDE_BY_SIDE if p[0] in present and p[1] in present]
    names = {name for pair in wanted for name in pair}
    rows = [r for r in rows if r[0] in names]
    work = private_dir("agw-bench-pairs-")
    instances = []
    ratios = {pair: [] for pair in wanted}
    try:
        for side in ("a", "b"):
            docroot("%s/%s" % (work, side))
            http, urls = render(rows, "%s/%s" % (work, side), sim_port,
                                redis_conf)
            n = Nginx(http, workers=1)
            instances.append((n, urls))
            n.start()
        pids = [n.worker_pids()[0] for n, _ in instances]
        for _, urls in instances:
            for name in names:
                wrk(urls[name], 1, connections)
        for row, ref in wanted:
            for i in range(pairs):
                first, second = (0, 1) if i % 2 == 0 else (1, 0)
                (rps_r, cpu_r), (rps_f, cpu_f) = run_at_once(
                    [(instances[first][1][row], pids[first]),
                     (instances[second][1][ref], pids[second])],
                    seconds, connections)
                ratios[(row, ref)].append((rps_r / rps_f, cpu_r / cpu_f))
            med = statistics.median(x[0] for x in ratios[(row, ref)])
            print("side by side %-52s %.3f of %s" % (row, med, ref),
                  flush=True)
    finally:
        for n, _ in instances:
            n.stop()
            n.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return ratios


def side_by_side_lines(ratios, pairs, seconds, connections):
    rng = random.Random(1)
    lines = [
        "",
        "Side by side at the same time (the limiter rows, whose differences "
        "are smaller than a single wrk run resolves here): two identical "
        "nginx, one worker each, and wrk -t1 -c%d on each at once for %d s, "
        "the row on one and its reference on the other, swapping nginx "
        "every pair; the ratio is row/reference within each pair (a slow "
        "moment of the machine slows both), median of %d pairs with the 95%% "
        "bootstrap interval of that median. The first line compares the "
        "static file with itself: the noise of the method." % (
            connections, seconds, pairs),
        "",
        "| row | reference | req/s ratio (95% interval) "
        "| worker CPU/req ratio (95% interval) | req/s ratio min..max |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for (row, ref), vals in ratios.items():
        rps = [v[0] for v in vals]
        cpu = [v[1] for v in vals]
        lines.append("| %s | %s | %.3f (%.3f..%.3f) | %.3f (%.3f..%.3f) "
                     "| %.3f..%.3f |" % (
                         row, ref,
                         statistics.median(rps), *median_interval(rps, rng),
                         statistics.median(cpu), *median_interval(cpu, rng),
                         min(rps), max(rps)))
    return lines


TTFB_HTTP = """
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_limit_zone $http_x_api_key zone=ttfb_tokens:1m
                          rate=100000000t/s burst=100000000;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 16; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        location /plain/ {{
            proxy_pass http://sim/;
            proxy_buffering off;
        }}
        location /tokens/ {{
            ai_gateway_limit zone=ttfb_tokens;
            proxy_pass http://sim/;
            proxy_buffering off;
        }}
    }}
"""

TTFB_BODY = ('{"model":"sim-small","stream":true,"max_tokens":32,'
             '"stream_options":{"include_usage":true},'
             '"messages":[{"role":"user","content":"time to first event"}]}')


def first_event_ms(port, path):
    """One streamed chat through a token zone: ms to the first event and
    to the last."""
    first, last, _, _ = stream_times(port, TTFB_BODY, path=path,
                                     headers="X-Api-Key: bench\r\n")
    return first, last


def ttfb_lines(requests):
    """Time to the first streamed event through the gateway, with and
    without a token zone on the location, alternating request by request
    on one nginx (so both see the same machine), against an ai-sim whose
    first token takes 20 ms.  Settlement reads the stream as it passes:
    it must add nothing measurable to the first event."""
    sim = Sim(None, "sim-ttfb", "--ttft-ms", "20", "--tpot-ms", "1",
              "--jitter", "0").start()
    n = Nginx(TTFB_HTTP.format(sim=sim.port), workers=1)
    got = {"/plain/v1/chat/completions": [], "/tokens/v1/chat/completions": []}
    try:
        n.start()
        paths = list(got)
        for i in range(requests + 10):
            for path in (paths if i % 2 else paths[::-1]):
                ms = first_event_ms(n.port, path)
                if i >= 10:           # the first ones warm up connections
                    got[path].append(ms)
    finally:
        n.stop()
        n.cleanup()
        sim.stop()
    plain = got["/plain/v1/chat/completions"]
    tokens = got["/tokens/v1/chat/completions"]

    def med(v, k):
        return statistics.median(x[k] for x in v)

    def p90(v, k):
        xs = sorted(x[k] for x in v)
        return xs[int(len(xs) * 0.9) - 1]

    print("ttfb: plain %.2f ms, token zone %.2f ms (medians)"
          % (med(plain, 0), med(tokens, 0)), flush=True)
    return [
        "",
        "Streams through a token zone: time to the first event and to the "
        "last, %d streamed chats each (32 tokens, `include_usage`), "
        "alternating request by request between a location with a token "
        "zone and the same location without, on one nginx, against an "
        "ai-sim whose first token takes 20 ms and each next one 1 ms:" %
        requests,
        "",
        "| location | first event, median ms | p90 ms | last event, median ms |",
        "| --- | ---: | ---: | ---: |",
        "| proxy, no limiter | %.2f | %.2f | %.2f |" % (
            med(plain, 0), p90(plain, 0), med(plain, 1)),
        "| proxy + token zone (reserve, read, settle) | %.2f | %.2f | %.2f |"
        % (med(tokens, 0), p90(tokens, 0), med(tokens, 1)),
        "",
        "Difference of the medians, first event: %+.2f ms." % (
            med(tokens, 0) - med(plain, 0)),
    ]


STREAM_HTTP = """
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_cache_zone zone=streams:64m;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 64; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        location /v1/ {{
            ai_gateway_cache streams;
            ai_gateway_cache_methods POST;
            proxy_pass http://sim;
            proxy_buffering off;
        }}
    }}
"""


def stream_times(port, body, t0=None, path="/v1/chat/completions",
                 headers=""):
    """One streamed chat through the gateway: (ms to the first event, ms to
    the last, X-Cache, time of the first event), measured from t0
    (perf_counter) if given, else from the request sent.  body: the JSON,
    or a prompt for a 32-token chat."""
    import socket
    import time as _time
    if not body.startswith("{"):
        body = ('{"model":"sim-small","stream":true,"max_tokens":32,'
                '"messages":[{"role":"user","content":"%s"}]}' % body)
    body = body.encode()
    req = ("POST %s HTTP/1.1\r\nHost: b\r\n%s"
           "Content-Type: application/json\r\nContent-Length: %d\r\n"
           "Connection: close\r\n\r\n" % (path, headers, len(body))
           ).encode() + body
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = _time.perf_counter() if t0 is None else t0
    s.sendall(req)
    data, first = b"", None
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
        if first is None and b"data: " in data:
            first = _time.perf_counter()
    end = _time.perf_counter()
    s.close()
    if first is None or b"[DONE]" not in data:
        raise SystemExit("bench: the stream through %s did not complete"
                         % path)
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    cache = re.search(r"(?im)^X-Cache: (\w+)", head)
    return ((first - start) * 1000, (end - start) * 1000,
            cache.group(1) if cache else "-", first)


def stream_lines(requests, fanout):
    """Streams from the cache and coalesced (SPEC 7.2): a streamed HIT
    against the same stream live (ai-sim: first token 20 ms, then 1 ms a
    token), and N identical streamed prompts at once: the requests that
    reached ai-sim, and each waiter's first event behind the first
    client's."""
    import threading
    import time as _time
    sim = Sim(None, "sim-streams", "--ttft-ms", "20", "--tpot-ms", "1",
              "--jitter", "0").start()
    n = Nginx(STREAM_HTTP.format(sim=sim.port), workers=2)
    try:
        n.start()
        live, hit = [], []
        for i in range(requests + 5):
            first, last, status, _ = stream_times(n.port, "live %d" % i)
            assert status == "MISS", status
            again = stream_times(n.port, "live %d" % i)
            if again[2] != "HIT":
                _time.sleep(0.05)
                again = stream_times(n.port, "live %d" % i)
            if i >= 5 and again[2] == "HIT":
                live.append((first, last))
                hit.append(again[:2])

        rounds = []
        for r in range(3):
            before = sim.requests_seen()
            results = [None] * fanout
            t0 = _time.perf_counter()

            def one(k):
                results[k] = stream_times(n.port, "fan-out %d" % r, t0)

            threads = [threading.Thread(target=one, args=(k,))
                       for k in range(fanout)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            upstream = sim.requests_seen() - before
            firsts = sorted(x[3] for x in results)
            delays = [(f - firsts[0]) * 1000 for f in firsts[1:]]
            statuses = [x[2] for x in results]
            rounds.append((upstream, statuses.count("COALESCED"),
                           statuses.count("HIT"), statuses.count("MISS"),
                           statistics.median(delays), max(delays)))
    finally:
        n.stop()
        n.cleanup()
        sim.stop()

    def med(v, k):
        return statistics.median(x[k] for x in v)

    print("streams: live first %.2f ms, HIT first %.2f ms; fan-out %s"
          % (med(live, 0), med(hit, 0), rounds[0]), flush=True)
    lines = [
        "",
        "Streams (SPEC 7.2): %d streamed chats (32 tokens) each live (a "
        "MISS: ai-sim's first token after 20 ms, then 1 ms a token) and "
        "replayed from the shared-memory cache (a HIT), two workers:" %
        len(live),
        "",
        "| stream | first event, median ms | last event, median ms |",
        "| --- | ---: | ---: |",
        "| live (MISS) | %.2f | %.2f |" % (med(live, 0), med(live, 1)),
        "| replayed (HIT) | %.2f | %.2f |" % (med(hit, 0), med(hit, 1)),
        "",
        "Coalescing: %d identical streamed prompts sent at once, three "
        "rounds (a new prompt each): the requests that reached ai-sim, the "
        "answers' X-Cache, and each later client's first event behind the "
        "first client's:" % fanout,
        "",
        "| round | upstream requests | COALESCED | HIT | MISS "
        "| delay behind the first, median ms | max ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, (up, co, hi, mi, dm, dx) in enumerate(rounds, 1):
        lines.append("| %d | %d | %d | %d | %d | %.2f | %.2f |"
                     % (i, up, co, hi, mi, dm, dx))
    return lines

# ---- the GenAI metrics' cost (issue 23) -----------------------------------

METRICS_BEGIN = "<!-- bench-metrics: begin (scripts/bench.py --metrics-only) -->"
METRICS_END = "<!-- bench-metrics: end -->"

# the shipped /v1/ location's shape, without cache or limiter: what is left
# is the proxying and, in the "on" rows, the metrics (the default)
METRICS_SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            {directive}
            proxy_buffering off;
            proxy_pass http://sim;
        }}
    }}"""

# name, directive, streamed
METRICS_ROWS = [
    ("proxied chat, metrics on", "", False),
    ("proxied chat, metrics off", "ai_gateway_metrics off;", False),
    ("proxied stream, metrics on", "", True),
    ("proxied stream, metrics off", "ai_gateway_metrics off;", True),
]

METRICS_BODY = ('{"model":"sim-small","max_tokens":8,%s"messages":'
                '[{"role":"user","content":"what measuring costs"}]}')


def metrics_lines(pairs, seconds, connections, callgrind_passes):
    """The metrics' cost: the same chat, JSON and streamed (8 tokens),
    proxied to ai-sim (no latency) with the metrics on and off.  Side by
    side at the same time on two identical nginx, each with its own ai-sim
    (as side_by_side), and instructions per request under callgrind."""
    work = private_dir("agw-bench-metrics-")
    scripts = {}
    for kind, extra in ((False, ""), (True, '"stream":true,"stream_options":'
                                            '{"include_usage":true},')):
        scripts[kind] = os.path.join(work, "stream.lua" if kind
                                     else "chat.lua")
        with open(scripts[kind], "w") as f:
            f.write('wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    "wrk.body = '%s'\n" % (METRICS_BODY % extra))
    sims, instances, ratios, passes = [], [], {}, []
    try:
        for side in "ab":
            sim = Sim(None, "sim-metrics-" + side, "--ttft-ms", "0",
                      "--tpot-ms", "0", "--jitter", "0").start()
            sims.append(sim)
            urls, servers = {}, []
            for name, directive, _ in METRICS_ROWS:
                port = free_port()
                urls[name] = "http://127.0.0.1:%d/v1/chat/completions" % port
                servers.append(METRICS_SERVER.format(port=port,
                                                     directive=directive))
            http = ("    access_log off;\n    keepalive_requests 1000000;\n"
                    "    proxy_http_version 1.1;\n"
                    "    proxy_set_header Connection \"\";\n"
                    "    upstream sim { server 127.0.0.1:%d; keepalive 64; }\n"
                    "    server { listen 127.0.0.1:%%%%PORT%%%%;\n"
                    "             location = /cachez { ai_gateway_cachez; } }\n"
                    % sim.port) + "".join(servers)
            n = Nginx(http, workers=1)
            instances.append((n, urls, http))
            n.start()
        pids = [n.worker_pids()[0] for n, _, _ in instances]
        for n, urls, _ in instances:
            for name, _, stream in METRICS_ROWS:
                _, total, _, _, bad = wrk(urls[name], 1, connections,
                                          scripts[stream])
                if bad or not total:
                    raise SystemExit("bench: %s: %d of %d not 2xx"
                                     % (name, bad, total))
        for on, off in ((0, 1), (2, 3)):
            row, ref = METRICS_ROWS[on][0], METRICS_ROWS[off][0]
            vals = ratios[(row, ref)] = []
            for i in range(pairs):
                first, second = (0, 1) if i % 2 == 0 else (1, 0)
                (rps_r, cpu_r), (rps_f, cpu_f) = run_at_once(
                    [(instances[first][1][row], pids[first]),
                     (instances[second][1][ref], pids[second])],
                    seconds, connections, scripts[METRICS_ROWS[on][2]])
                vals.append((rps_r / rps_f, cpu_r / cpu_f, rps_r, rps_f))
            print("metrics side by side %-30s %.3f of %s" % (
                row, statistics.median(v[0] for v in vals), ref), flush=True)
        # the "on" rows were measured, the "off" ones not
        doc = json.loads(subprocess.run(
            ["curl", "-s", instances[0][0].url + "/cachez"],
            capture_output=True, text=True).stdout)
        if doc["models"]["sim-small"]["requests"] == 0:
            raise SystemExit("bench: the metrics counted nothing")
        for n, _, _ in instances:
            n.stop()
        if callgrind_passes:
            print("metrics: instructions per request under callgrind...",
                  flush=True)
            _, urls, http = instances[0]
            for _ in range(callgrind_passes):
                counts = {}
                for stream in (False, True):
                    rows = [(r[0],) + (None,) * 5 for r in METRICS_ROWS
                            if r[2] == stream]
                    counts.update(instructions_per_request(
                        http, rows, urls, 2, scripts[stream]))
                passes.append(counts)
    finally:
        for n, _, _ in instances:
            n.stop()
            n.cleanup()
        for sim in sims:
            sim.stop()
        shutil.rmtree(work, ignore_errors=True)

    rng = random.Random(1)
    lines = [
        METRICS_BEGIN, "", "## GenAI metrics: what measuring costs", "",
        "Produced by `make bench` (or `scripts/bench.py --metrics-only`) on "
        "%s. The same chat (8 tokens; JSON, then streamed with its usage) "
        "proxied to ai-sim without latency, through the shipped `/v1/` "
        "location's proxying (no cache, no limiter) with "
        "`ai_gateway_metrics` on (the default: the request body's model, "
        "the answer read as it passes, the histograms updated in the log "
        "phase) and off. Side by side at the same time: two identical "
        "nginx, one worker and one ai-sim each, wrk -t1 -c%d POSTing on "
        "each at once for %d s, the row on one and its reference on the "
        "other, swapping every pair; median of %d pairs with the 95%% "
        "bootstrap interval of that median. Instructions per request: one "
        "nginx process under callgrind, 4 connections, median (min..max) "
        "of %d passes." % (datetime.date.today().isoformat(), connections,
                           seconds, pairs, callgrind_passes),
        "",
        "| row | reference | req/s ratio (95% interval) "
        "| worker CPU/req ratio (95% interval) | req/s row, reference "
        "| instructions/req row, reference: difference |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (row, ref), vals in ratios.items():
        rps = [v[0] for v in vals]
        cpu = [v[1] for v in vals]
        lines.append("| %s | %s | %.3f (%.3f..%.3f) | %.3f (%.3f..%.3f) "
                     "| %.0f, %.0f | %s |" % (
                         row, ref, statistics.median(rps),
                         *median_interval(rps, rng), statistics.median(cpu),
                         *median_interval(cpu, rng),
                         statistics.median(v[2] for v in vals),
                         statistics.median(v[3] for v in vals),
                         "%.0f, %.0f: %s" % (
                             statistics.median(p[row] for p in passes),
                             statistics.median(p[ref] for p in passes),
                             paired(passes, row, ref, operator.sub, "%+.0f"))
                         if passes else "-"))
    lines += ["", METRICS_END]
    return "\n".join(lines) + "\n"


# ---- the balancers' own cost (issue 22) ------------------------------------

BALANCE_BEGIN = ("<!-- bench-balance-cost: begin (scripts/bench.py "
                 "--balance-only) -->")
BALANCE_END = "<!-- bench-balance-cost: end -->"

# name, the upstream's balancing directive; the first is the reference
BALANCE_ROWS = [
    ("least_conn", "least_conn;"),
    ("least_tokens", "ai_gateway_balance least_tokens;"),
    ("prefix", "ai_gateway_balance prefix;"),
]

# a chat with a system prompt longer than prefix's 2048 bytes, so that
# prefix hashes all it reads, and a user turn of its own
BALANCE_BODY = ('{"model":"sim-small","max_tokens":8,"messages":['
                '{"role":"system","content":"%s"},'
                '{"role":"user","content":"what balancing costs"}]}'
                % ("You are a helpful assistant. " * 80).strip())


def balance_lines(pairs, seconds, connections, callgrind_passes):
    """What the balancers cost nginx: the same chat POSTed through an
    upstream of three ai-sim replicas answering at once (no latency, their
    load reports on every answer), balanced by least_conn, least_tokens and
    prefix.  Side by side at the same time on two identical nginx (as
    side_by_side), each row against least_conn, and instructions per
    request under callgrind."""
    work = private_dir("agw-bench-balance-")
    script = os.path.join(work, "chat.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                "wrk.body = '%s'\n" % BALANCE_BODY)
    sims, instances, ratios, passes = [], [], {}, []
    try:
        for i in range(3):
            sims.append(Sim(None, "sim-balance-%d" % (i + 1), "--ttft-ms",
                            "0", "--tpot-ms", "0", "--jitter", "0").start())
        servers = "".join("        server 127.0.0.1:%d;\n" % s.port
                          for s in sims)
        for side in "ab":
            urls, blocks = {}, []
            for k, (name, directive) in enumerate(BALANCE_ROWS):
                port = free_port()
                urls[name] = "http://127.0.0.1:%d/v1/chat/completions" % port
                blocks.append(
                    "    upstream pool%d {\n        %s\n%s"
                    "        zone pool%d 64k;\n        keepalive 64;\n    }\n"
                    "    server {\n        listen 127.0.0.1:%d;\n"
                    "        location = /v1/chat/completions {\n"
                    "            proxy_pass http://pool%d;\n        }\n"
                    "    }\n" % (k, directive, servers, k, port, k))
            http = ("    access_log off;\n    keepalive_requests 1000000;\n"
                    "    proxy_http_version 1.1;\n"
                    "    proxy_set_header Connection \"\";\n"
                    "    server { listen 127.0.0.1:%%PORT%%;\n"
                    "             location = /cachez { ai_gateway_cachez; } }\n"
                    + "".join(blocks))
            n = Nginx(http, workers=1)
            instances.append((n, urls, http))
            n.start()
        pids = [n.worker_pids()[0] for n, _, _ in instances]
        for n, urls, _ in instances:
            for name, _ in BALANCE_ROWS:
                _, total, _, _, bad = wrk(urls[name], 1, connections, script)
                if bad or not total:
                    raise SystemExit("bench: %s: %d of %d not 2xx"
                                     % (name, bad, total))
        ref = BALANCE_ROWS[0][0]
        for row, _ in BALANCE_ROWS[1:]:
            vals = ratios[(row, ref)] = []
            for i in range(pairs):
                first, second = (0, 1) if i % 2 == 0 else (1, 0)
                (rps_r, cpu_r), (rps_f, cpu_f) = run_at_once(
                    [(instances[first][1][row], pids[first]),
                     (instances[second][1][ref], pids[second])],
                    seconds, connections, script)
                vals.append((rps_r / rps_f, cpu_r / cpu_f, rps_r, rps_f))
            print("balance side by side %-14s %.3f of %s" % (
                row, statistics.median(v[0] for v in vals), ref), flush=True)
        # every replica was picked by the module's balancers
        doc = json.loads(subprocess.run(
            ["curl", "-s", instances[0][0].url + "/cachez"],
            capture_output=True, text=True).stdout)
        for k in (1, 2):
            peers = doc["upstreams"]["pool%d" % k]["peers"]
            if pairs and not all(p["picks"] for p in peers):
                raise SystemExit("bench: pool%d: a replica never picked: %s"
                                 % (k, peers))
        for n, _, _ in instances:
            n.stop()
        if callgrind_passes:
            print("balance: instructions per request under callgrind...",
                  flush=True)
            _, urls, http = instances[0]
            rows = [(r[0],) + (None,) * 5 for r in BALANCE_ROWS]
            for _ in range(callgrind_passes):
                passes.append(instructions_per_request(http, rows, urls, 2,
                                                       script))
    finally:
        for n, _, _ in instances:
            n.stop()
            n.cleanup()
        for sim in sims:
            sim.stop()
        shutil.rmtree(work, ignore_errors=True)

    rng = random.Random(1)
    lines = [
        BALANCE_BEGIN, "", "## Balancers: what choosing costs", "",
        "Produced by `make bench` (or `scripts/bench.py --balance-only`) on "
        "%s. The same chat (a %d-byte body: a system prompt longer than "
        "`prefix`'s 2048 bytes, a user turn, 8 tokens out) POSTed through "
        "an upstream of three ai-sim replicas that answer at once (their "
        "`endpoint-load-metrics` on every answer), with `zone` and "
        "`keepalive`, balanced by `least_conn` (the reference), "
        "`ai_gateway_balance least_tokens` (the body parsed for its "
        "estimate, the tokens counted in shared memory, the load reports "
        "read) and `ai_gateway_balance prefix` (the same, and the prompt's "
        "start hashed onto the ring). Side by side at the same time: two "
        "identical nginx, one worker each, wrk -t1 -c%d on each at once "
        "for %d s, the row on one and least_conn on the other, swapping "
        "every pair; median of %d pairs with the 95%% bootstrap interval "
        "of that median. Instructions per request: one nginx process "
        "under callgrind, 4 connections, median (min..max) of %d passes."
        % (datetime.date.today().isoformat(), len(BALANCE_BODY),
           connections, seconds, pairs, callgrind_passes),
        "",
        "| row | reference | req/s ratio (95% interval) "
        "| worker CPU/req ratio (95% interval) | req/s row, reference "
        "| instructions/req row, reference: difference |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (row, ref), vals in ratios.items():
        rps = [v[0] for v in vals]
        cpu = [v[1] for v in vals]
        lines.append("| %s | %s | %.3f (%.3f..%.3f) | %.3f (%.3f..%.3f) "
                     "| %.0f, %.0f | %s |" % (
                         row, ref, statistics.median(rps),
                         *median_interval(rps, rng), statistics.median(cpu),
                         *median_interval(cpu, rng),
                         statistics.median(v[2] for v in vals),
                         statistics.median(v[3] for v in vals),
                         "%.0f, %.0f: %s" % (
                             statistics.median(p[row] for p in passes),
                             statistics.median(p[ref] for p in passes),
                             paired(passes, row, ref, operator.sub, "%+.0f"))
                         if passes else "-"))
    lines += ["", BALANCE_END]
    return "\n".join(lines) + "\n"


def write_section(text, path, begin, end):
    """Replace a marked section of the document, or append it."""
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = "# Benchmarks\n"
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        doc = head + text.rstrip("\n") + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(doc)


IDLE_HTTP = """
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_cache_zone zone=idle:16m;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location /v1/ {{
            ai_gateway_cache idle;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_lock_timeout 120s;
            proxy_pass http://sim;
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
"""


def idle_waiter_lines(waiters, seconds=6.0):
    """Idle waiters (issue 21 item 7): `waiters` identical streamed prompts
    held open by build/agw-load while the one that went upstream waits for
    ai-sim's first token (20 s away): every other request waits on its
    flight, and nothing moves.  The two workers' CPU time (utime + stime
    from /proc) over `seconds` once all are waiting, as a share of one
    core; then the same window with no request at all, the floor."""
    import time as _time
    load = os.environ.get("AGW_LOAD", os.path.join(REPO, "build",
                                                   "agw-load"))
    sim = Sim(None, "sim-idle", "--ttft-ms", "20000", "--tpot-ms", "1",
              "--jitter", "0").start()
    n = Nginx(IDLE_HTTP.format(sim=sim.port), workers=2,
              main="worker_rlimit_nofile 8192;")
    client = None
    try:
        n.start()
        pids = n.worker_pids()

        def cpu():
            return sum(cpu_seconds(p) for p in pids)

        start = cpu()
        _time.sleep(seconds)
        floor = (cpu() - start) / seconds

        client = subprocess.Popen(
            [load, "--hold", "-n", str(waiters), "--connect-rate", "2000",
             "--prompts", "identical", "--max-tokens", "4",
             n.url + "/v1/chat/completions"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # all connected (at 2,000 a second) and the requests parked
        _time.sleep(waiters / 2000 + 2)
        if sim.requests_seen() != 1:
            raise SystemExit("bench: idle waiters: %d requests reached "
                             "ai-sim, expected 1" % sim.requests_seen())
        start = cpu()
        _time.sleep(seconds)
        busy = (cpu() - start) / seconds
    finally:
        if client:
            client.kill()
            client.wait()
        n.stop()
        n.cleanup()
        sim.stop()

    print("idle waiters: %d waiting, workers' CPU %.2f%% of a core "
          "(%.2f%% with none)" % (waiters, busy * 100, floor * 100),
          flush=True)
    return [
        "",
        "Idle waiters (issue 21): %d identical streamed prompts at once "
        "while the first one's upstream has not answered yet (ai-sim's "
        "first token after 20 s), so %d requests wait on its flight and "
        "nothing moves. The two workers' CPU time over %.0f s of that "
        "wait, as a share of one core:" % (waiters, waiters - 1, seconds),
        "",
        "| workers | CPU, % of a core |",
        "| --- | ---: |",
        "| %d requests waiting | %.2f |" % (waiters - 1, busy * 100),
        "| no request (floor) | %.2f |" % (floor * 100),
    ]


def fmt_ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def callgrind_rows(names, passes):
    """--callgrind-rows: the instructions per request of these rows only,
    under callgrind, printed with each row's ratio to its peer (when the
    peer is among them); docs/BENCHMARKS.md is left as it is.  For
    measuring one change without the whole bench."""
    rows = [r for r in ROWS if r[0] in names]
    missing = set(names) - {r[0] for r in rows}
    if missing:
        raise SystemExit("bench: no such row: %s" % ", ".join(sorted(missing)))
    work = private_dir("agw-bench-")
    docroot(work)
    sim = Sim(None, "sim-bench", "--ttft-ms", "0", "--tpot-ms", "0",
              "--jitter", "0").start()
    try:
        http, urls = render(rows, work, sim.port, "")
        runs = [instructions_per_request(http, rows, urls, 2)
                for _ in range(passes)]
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name, _, _, peer, _, _ in rows:
        ir = sorted(run[name] for run in runs)
        line = "%-40s %8.0f instructions/request (%.0f..%.0f)" % (
            name, statistics.median(ir), ir[0], ir[-1])
        if peer in names:
            line += ", x%s of %s" % (paired(runs, name, peer,
                                            operator.truediv, "%.3f"), peer)
        print(line, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--callgrind-passes", type=int, default=3,
                    help="callgrind passes over every row (median, min..max)")
    ap.add_argument("--pairs", type=int, default=30,
                    help="side-by-side pairs for each limiter comparison "
                    "(0: none)")
    ap.add_argument("--pair-seconds", type=int, default=2)
    ap.add_argument("--stream-requests", type=int, default=50,
                    help="streams live and from the cache, each (0: none)")
    ap.add_argument("--fanout", type=int, default=50,
                    help="identical streamed prompts at once")
    ap.add_argument("--idle-waiters", type=int, default=1000,
                    help="identical streams waiting on one idle flight, "
                    "their workers' CPU (0: none)")
    ap.add_argument("--ttfb-requests", type=int, default=100,
                    help="streams through a token zone and without, each "
                    "(0: none)")
    ap.add_argument("--no-callgrind", dest="callgrind", action="store_false",
                    help="skip the instruction counts")
    ap.add_argument("--metrics-pairs", type=int, default=None,
                    help="side-by-side pairs of the metrics rows (default:"
                    " --pairs; 0: none)")
    ap.add_argument("--metrics-only", action="store_true",
                    help="run only the metrics rows, into their section of"
                    " --out")
    ap.add_argument("--balance-pairs", type=int, default=None,
                    help="side-by-side pairs of the balancer rows (default:"
                    " --pairs; 0: none)")
    ap.add_argument("--balance-only", action="store_true",
                    help="run only the balancer rows, into their section "
                    "of --out")
    ap.add_argument("--out", default=os.path.join(REPO, "docs",
                                                  "BENCHMARKS.md"))
    ap.add_argument("--results", default=os.path.join(REPO, "build", "bench",
                                                      "results.json"),
                    help="the run's figures as JSON (written, or read with "
                    "--charts-only)")
    ap.add_argument("--charts-dir", default=None,
                    help="where the SVG charts go (default: next to --out)")
    ap.add_argument("--charts-only", action="store_true",
                    help="draw the charts from --results, run nothing")
    ap.add_argument("--callgrind-rows", nargs="+", metavar="ROW",
                    help="only these rows' instructions per request "
                    "(callgrind), printed; nothing else runs")
    args = ap.parse_args()

    if args.callgrind_rows:
        callgrind_rows(args.callgrind_rows, args.callgrind_passes)
        return
    charts_dir = args.charts_dir or os.path.dirname(os.path.abspath(args.out))

    if args.charts_only:
        for path in bench_charts.draw(bench_charts.load(args.results),
                                      charts_dir):
            print("bench: wrote " + path)
        return

    metrics_pairs = args.pairs if args.metrics_pairs is None \
        else args.metrics_pairs
    metrics = None
    balance_pairs = args.pairs if args.balance_pairs is None \
        else args.balance_pairs
    balance = None
    if args.balance_only:
        balance = balance_lines(balance_pairs, args.pair_seconds,
                                args.connections // 2,
                                args.callgrind_passes if args.callgrind
                                else 0)
        print(balance)
        write_section(balance, args.out, BALANCE_BEGIN, BALANCE_END)
        return
    if args.metrics_only:
        metrics = metrics_lines(metrics_pairs, args.pair_seconds,
                                args.connections // 2,
                                args.callgrind_passes if args.callgrind
                                else 0)
        print(metrics)
        write_section(metrics, args.out, METRICS_BEGIN, METRICS_END)
        return

    work = private_dir("agw-bench-")
    docroot(work)

    sim = Sim(None, "sim-bench", "--ttft-ms", "0", "--tpot-ms", "0",
              "--jitter", "0").start()
    redis = None
    rows = list(ROWS)
    if RedisServer is not None and redis_available():
        redis = RedisServer().start()
        redis_conf = REDIS_ZONE.format(port=redis.port)
    else:
        redis_conf = ""
        rows = [r for r in rows if "Redis" not in r[0]]

    http, urls = render(rows, work, sim.port, redis_conf)
    n = Nginx(http, workers=1)
    ir, ir_range, passes, pair_ratios, ttfb = {}, {}, [], {}, []
    results = {r[0]: [] for r in rows}
    try:
        n.start()
        worker = n.worker_pids()[0]
        # warm the caches and the 429 buckets, and check every row answers
        for name, _, _, _, status, _ in rows:
            for _ in range(3):
                subprocess.run(["curl", "-s", "-o", "/dev/null",
                                urls[name]])
            got = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                                  "%{http_code}", urls[name]],
                                 capture_output=True, text=True).stdout
            if int(got) != status:
                raise SystemExit("bench: %s answered %s, expected %d"
                                 % (name, got, status))
        for rep in range(args.reps):
            for name, _, _, _, _, conns in rows:
                rps, p50, p99, cpu = wrk_with_cpu(urls[name], worker,
                                                  args.seconds,
                                                  conns or args.connections)
                results[name].append((rps, p50, p99, cpu))
                print("rep %d %-32s %10.0f req/s  p50 %.2f ms  p99 %.2f ms"
                      % (rep + 1, name, rps, p50, p99), flush=True)
        redis_get = redis_benchmark(redis.port, args.seconds) if redis \
            else None
        cachez = subprocess.run(["curl", "-s", n.url + "/cachez"],
                                capture_output=True, text=True).stdout
        n.stop()
        if args.pairs:
            pair_ratios = side_by_side(rows, sim.port, args.pairs,
                                       args.pair_seconds,
                                       args.connections // 2, redis_conf)
        if metrics_pairs:
            metrics = metrics_lines(metrics_pairs, args.pair_seconds,
                                    args.connections // 2,
                                    args.callgrind_passes if args.callgrind
                                    else 0)
        if balance_pairs:
            balance = balance_lines(balance_pairs, args.pair_seconds,
                                    args.connections // 2,
                                    args.callgrind_passes if args.callgrind
                                    else 0)
        if args.ttfb_requests:
            ttfb = ttfb_lines(args.ttfb_requests)
        if args.stream_requests:
            ttfb += stream_lines(args.stream_requests, args.fanout)
        if args.idle_waiters:
            ttfb += idle_waiter_lines(args.idle_waiters)
        if args.callgrind:
            print("instructions per request under callgrind...", flush=True)
            passes = [instructions_per_request(http, rows, urls, 2)
                      for _ in range(args.callgrind_passes)]
            ir = {k: statistics.median(p[k] for p in passes)
                  for k in passes[0]}
            ir_range = {k: (min(p[k] for p in passes),
                            max(p[k] for p in passes)) for k in passes[0]}
    finally:
        n.stop()
        sim.stop()
        if redis:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)
        n.cleanup()

    med = {k: {"rps": statistics.median(x[0] for x in v),
               "lo": min(x[0] for x in v), "hi": max(x[0] for x in v),
               "p50": statistics.median(x[1] for x in v),
               "p99": statistics.median(x[2] for x in v),
               "cpu": statistics.median(x[3] for x in v),
               "cpu_lo": min(x[3] for x in v),
               "cpu_hi": max(x[3] for x in v)}
           for k, v in results.items()}

    figures = {"rows": [{"name": r[0], "ceiling": r[2], "peer": r[3]}
                        for r in rows], "med": med}
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(figures, f, indent=1)
    try:
        charts = bench_charts.draw(figures, charts_dir)
    except ImportError:
        print("bench: no charts: python3-matplotlib missing "
              "(scripts/deps.sh bench)", file=sys.stderr)
        charts = []

    lines = bench_charts.markdown() if charts else []
    lines += [
        "| row | req/s (median) | spread min..max | p50 ms | p99 ms "
        "| worker CPU µs/req (min..max) | instructions/req (min..max) "
        "| vs ceiling "
        "| vs stock peer |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, _, ceiling, peer, _, _ in rows:
        m = med[name]
        c = med.get(ceiling)
        p = med.get(peer)
        peer_txt = "-"
        if p:
            peer_txt = "%s req/s, %s CPU, %s instr. (vs %s)" % (
                fmt_ratio(m["rps"], p["rps"]),
                fmt_ratio(m["cpu"], p["cpu"]),
                paired(passes, name, peer, operator.truediv, "%.3f"),
                peer)
        lines.append("| %s | %.0f | %.0f..%.0f | %.2f | %.2f "
                     "| %.1f (%.1f..%.1f) | %s | %s | %s |" % (
                         name, m["rps"], m["lo"], m["hi"], m["p50"],
                         m["p99"], m["cpu"], m["cpu_lo"], m["cpu_hi"],
                         "%.0f (%.0f..%.0f)" % ((ir[name],) + ir_range[name])
                         if name in ir else "-",
                         fmt_ratio(m["rps"], c["rps"]) if c else "-",
                         peer_txt))
    if passes:
        lines.append("")
        lines.append("Instructions each row adds to its ceiling, compared "
                     "within each callgrind pass (median, min..max over the "
                     "passes), which cancels what a whole pass may add (a "
                     "timer, a log rotation check):")
        lines.append("")
        for name, _, ceiling, peer, _, _ in rows:
            if ceiling in ir and name in ir:
                lines.append("- %s: %s over %s" % (
                    name, paired(passes, name, ceiling, operator.sub,
                                 "%+.0f"), ceiling))
    if pair_ratios:
        lines += side_by_side_lines(pair_ratios, args.pairs,
                                    args.pair_seconds, args.connections // 2)
    lines += ttfb
    lines.append("")
    lines.append("Each row is a server of its own on its own port, with the "
                 "same single location `location = %s { ... }`, so that "
                 "request parsing, server and location lookup cost every row "
                 "the same. The location bodies:" % URI)
    lines.append("")
    for name, body, _, _, _, _ in rows:
        lines.append("- %s: `%s`" % (name, body.replace(KIB, "<1 KiB>")
                                     .replace("{dir}/", "")))
    if redis_get:
        lines.append("")
        lines.append("redis-benchmark GET, 1 KiB value, 32 clients, same "
                     "machine: %.0f req/s (the Redis HIT row adds nginx, "
                     "HTTP and the upstream-free answer on top of one such "
                     "GET)." % redis_get)

    # zone bytes per cached 1 KiB answer: the bench zone holds exactly the
    # /shm entry; its stored key and headers are known
    zone = json.loads(cachez)["caches"]["bench"]
    if zone["entries"] == 1:
        key = len("GEThttp127.0.0.1" + URI)
        headers = len("Content-Type: text/plain\r\n")
        payload = key + headers + len(KIB)
        lines.append("")
        lines.append("Shared-memory cache, one cached 1 KiB answer: %d bytes "
                     "of zone (key %d + headers %d + body %d = %d, overhead "
                     "%d bytes)." % (zone["bytes_used"], key, headers,
                                     len(KIB), payload,
                                     zone["bytes_used"] - payload))

    versions = subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True,
                              text=True).stderr.strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True,
                           text=True).stdout.splitlines()[0]
    header = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (scripts/bench.py) on %s: %s, %d cores, "
        "%s; %s; %s. wrk -t1 -c%d, %d s per run, %d interleaved "
        "repetitions; nginx with one worker; 1 KiB answers; all on "
        "loopback, so client, server and backend share the cores." % (
            datetime.date.today().isoformat(), platform.machine(),
            os.cpu_count(), platform.platform(), versions, wrk_v,
            args.connections, args.seconds, args.reps),
        "",
        "`vs ceiling` divides the row's median requests/s by `nginx return "
        "200` with the same body (cache rows) or by the same static file "
        "without a limiter (limiter rows, which need a content phase: "
        "`return` runs before any access-phase module). `vs stock peer` "
        "gives the requests/s, worker-CPU-per-request and instructions ratios "
        "(below 1.00 = cheaper than the peer). `instructions/req` comes "
        "from the same config run in one nginx process under valgrind's "
        "callgrind (instructions executed per request in user space, 4 "
        "connections; median and range of %d passes over every row): the "
        "figure to trust when requests/s and CPU time vary with the load on "
        "this shared machine. It leaves out the kernel's share of a request "
        "(the TCP send and receive), which the CPU column includes. "
        "valgrind's CPU lacks the SHA extensions, so under callgrind "
        "libcrypto hashes the cache rows' keys with its AVX2 code (about "
        "2,300 instructions for a one-block key); the requests/s and CPU "
        "columns use the SHA instructions where the CPU has them."
        % args.callgrind_passes,
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    print()
    print(text)
    print("/cachez after the run: " + cachez)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text + kept_sections(args.out))
    if metrics:
        write_section(metrics, args.out, METRICS_BEGIN, METRICS_END)
    if balance:
        write_section(balance, args.out, BALANCE_BEGIN, BALANCE_END)


def kept_sections(path):
    """The sections other benches own in the same document (make
    bench-streams, bench-balance): each between its own `<!-- NAME: begin`
    and `<!-- NAME: end -->` markers, kept as they are."""
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        return ""
    return "".join("\n" + m.group(0) + "\n" for m in re.finditer(
        r"<!-- ([\w-]+): begin.*?<!-- \1: end -->", doc, re.S))


if __name__ == "__main__":
    main()
