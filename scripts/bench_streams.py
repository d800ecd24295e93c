#!/usr/bin/python3
"""make bench-streams: thousands of streamed chats open at once (issue 25).

For each N (1,000 and 5,000 by default; 10,000 with --n or
BENCH_STREAMS_N), build/agw-load opens N streamed chats at once
(`--hold`, one connection each, opened at a bounded rate, see PACE) and
reads them to the end, against three ai-sim replicas, in turn:

    direct          the client straight to the replicas: the reference
    plain proxy     proxy_pass, unbuffered, as the shipped /v1/ location
    limits + tokens per-client, global and per-key token zones, passing
    cache MISS      ai_gateway_cache with the lock, distinct prompts: each
                    stream is captured and stored when it ends
    shipped /v1/    the shipped config's location: cache and limits
    cache HIT       the same prompts again, replayed from the zone
    coalesced       identical prompts, N/100 of them, each asked 100 times
                    at once: one leader upstream, the rest COALESCED

Each proxied row runs on a fresh nginx (two workers, as the shipped config
on this machine), so that one row's freed memory, which glibc keeps, does
not hide the next row's.  While the N streams are open the workers' memory
is read from /proc: RssAnon (heap and pools: what each open stream costs
the worker) and RssShmem (the shared zones' pages the worker touched)
separately.  Per stream = (RssAnon of the workers when all N are open, or
at its peak while they all are, minus the same workers' RssAnon idle)
divided by N.

The pace is chosen so that the replicas, nginx and the client together
stay within this 2-core machine (ai-sim writes one chunk per token);
see PACE.

Also the client's ceiling: agw-load against the replicas and through
nginx at full speed (no pacing), and against nginx serving a stored
stream as a static file, where only the client limits the rate; its own
CPU for each.

Results: build/bench/streams.json, the section "Ten thousand streams" of
docs/BENCHMARKS.md (replaced between its markers, the rest of the file
kept) and docs/bench-streams.svg.

    scripts/bench_streams.py [--n 1000,5000[,10000]] [--reps 2]
                             [--connect-rate R] [--rows direct,plain,...]
                             [--ceiling-seconds 5 | --no-ceiling]
    scripts/bench_streams.py --charts-only [--results FILE] [--out FILE]
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import bench_streams_report
from bench_streams_report import total
from benchlib import REPO, doc
from benchlib.host import LOAD, cpu_seconds, machine, nginx_version, today
from harness.nginx import Nginx, private_dir
from harness.sim import Sim

RESULTS = os.path.join(REPO, "build", "bench", "streams.json")
OUT_DIR = os.path.join(REPO, "build", "bench", "streams")
DOC = os.path.join(REPO, "docs", "BENCHMARKS.md")

NOFILE = 65536
REPLICAS = 3
TTFT_MS = 500
CEILING_CONNECTIONS = 256

# N: (tokens, ms a token); at most about 20,000 events a second in all
# N: (tokens, ms a token, new connections a second).  A stream lasts
# longer than the opening of all N (so all are open at once, for several
# seconds), and N x 1000 / ms a token, the events a second through every
# process, stays at 10,000-20,000: more starves nginx and the replicas of
# CPU on this shared 2-core machine, and the first event then measures
# the run queue.
PACE = {1000: (40, 50, 2000), 5000: (20, 500, 1000),
        10000: (20, 1000, 1000)}

HTTP = """
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_cache_zone zone=streams:{zone}m max_entry_size=1m;
    ai_gateway_limit_zone $binary_remote_addr zone=per_client:10m
                          rate=100000000r/s burst=100000000;
    ai_gateway_limit_zone global zone=global:1m
                          rate=100000000r/s burst=100000000;
    ai_gateway_limit_zone $http_x_api_key zone=tpm:10m
                          rate=100000000t/s burst=100000000;
    upstream sims {{
        least_conn;
        {servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location /v1/ {{
            {body}
            proxy_pass http://sims;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
        # a stored stream sent as a file; POST to a file is a 405, which
        # error_page turns into a GET of the file
        location = /static-sse {{
            default_type text/event-stream;
            root {static};
            error_page 405 =200 $uri;
        }}
        location = /cachez {{ ai_gateway_cachez; }}
    }}
"""

CACHE = ("ai_gateway_cache streams; ai_gateway_cache_methods POST;"
         " ai_gateway_cache_key_json on; ai_gateway_cache_lock on;"
         " ai_gateway_cache_lock_timeout 300s;")
LIMITS = ("ai_gateway_limit zone=per_client; ai_gateway_limit zone=global;"
          " ai_gateway_limit zone=tpm;")

SHIPPED = (CACHE + " ai_gateway_cache_key_ignore user;"
           " ai_gateway_cache_use_stale error timeout http_500 http_502"
           " http_503 http_504; ai_gateway_cache_stale 10m; " + LIMITS +
           " ai_gateway_limit_headers all;")

# name, label, location body (None: direct), extra client arguments
ROWS = [
    ("direct", "direct to ai-sim (reference)", None, []),
    ("plain", "plain proxy", "", []),
    ("limits", "limits + token zone", LIMITS,
     ["-H", "X-Api-Key: user-{u}", "--users", "1000"]),
    ("miss", "cache MISS (stored at the end)", CACHE, []),
    # the shipped config's /v1/ (nginx-conf/gateway.conf.template): the
    # cache and the limits together; no X-Api-Key, which would bypass
    # the cache (the token zone then does not apply)
    ("shipped", "shipped /v1/: cache + limits", SHIPPED, []),
    ("hit", "cache HIT replay", CACHE, []),
    ("coalesced", "coalesced waiters", CACHE, ["--prompts", "identical"]),
]


class BigNginx(Nginx):
    """The harness's nginx with room for N streams: each holds a client
    and an upstream connection, and accept() does not spread connections
    evenly between workers, so every worker gets room for all of them
    (or as many as the hard descriptor limit allows: a master without
    CAP_SYS_RESOURCE cannot raise it, and says so in an alert)."""

    def __init__(self, http, connections, **kw):
        nofile = min(connections + 1024,
                     resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        self.connections = nofile - 1024
        super().__init__(http, main="worker_rlimit_nofile %d;" % nofile,
                         **kw)

    def render(self, http=None):
        return super().render(http).replace(
            "worker_connections 4096;",
            "worker_connections %d;" % self.connections)


def raise_nofile():
    """Children inherit it: nginx's master, ai-sim, the client.  The hard
    limit goes up only with CAP_SYS_RESOURCE (root outside a container);
    the soft one up to the hard one in any case."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(NOFILE, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def proc_status(pid):
    """RssAnon and RssShmem of a process, KiB."""
    got = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssShmem", "VmRSS"):
                    got[key] = int(value.split()[0])
    except OSError:
        pass
    return got


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def snapshot(pids, fds=False):
    out = {}
    for pid in pids:
        s = proc_status(pid)
        if fds:
            s["fds"] = fd_count(pid)
        out[pid] = s
    return out


class Sampler(threading.Thread):
    """The workers' memory every 100 ms while the client runs."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            self.samples.append((time.monotonic(), snapshot(self.pids)))


def run_client(args, urls, pids, label, timeout, watch=()):
    """agw-load with args against urls.  With the workers' pids: their
    memory when all streams are open (the client's "all-open" line, if
    they all were before the first one ended) and at its peak during the
    run.  With watch (pids of any process): the share of the run each
    was runnable but waited for a CPU.  Returns (report, memory)."""
    os.makedirs(OUT_DIR, exist_ok=True)
    json_path = os.path.join(OUT_DIR, label + ".json")
    cmd = [LOAD, "--json", json_path, "--csv",
           os.path.join(OUT_DIR, label + ".csv"), "--label", label] \
        + args + urls
    sampler = Sampler(pids)
    marks = {}
    waits = {pid: run_queue_wait(pid) for pid in list(pids) + list(watch)}
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    sampler.start()
    lines = []

    def read_stderr():
        for line in p.stderr:
            lines.append(line.rstrip())
            word = line.split()[1] if len(line.split()) > 1 else ""
            if word in ("all-open", "first-done") and word not in marks:
                marks[word] = (time.monotonic(),
                               snapshot(pids, True) if pids else None)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # bounded: the client reports what ran so far on SIGTERM
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    reader.join(timeout=5)
    sampler.stop.set()
    sampler.join()
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit("bench-streams: agw-load failed (%d): %s\n%s"
                         % (p.returncode, " ".join(cmd), "\n".join(lines)))
    with open(json_path) as f:
        report = json.load(f)
    report["cpu_wait"] = {str(pid): (run_queue_wait(pid) - w) / wall
                          for pid, w in waits.items()}

    memory = None
    if pids:
        samples = [s for _, s in sampler.samples]
        samples += [m[1] for m in marks.values()] or [snapshot(pids)]
        memory = {"peak": max(samples, key=lambda s: total(s, "RssAnon")),
                  "end": snapshot(pids)}
        t_open = marks.get("all-open", (None,))[0]
        t_done = marks.get("first-done", (float("inf"),))[0]
        # all N open at once: their headers in before any one ended
        if t_open is not None and t_open <= t_done:
            memory["all_open"] = marks["all-open"][1]
    return report, memory


def run_queue_wait(pid):
    """Seconds pid was runnable but off the CPU (/proc/PID/schedstat)."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def start_sims(args):
    return [Sim(None, "sim-%d" % i, *args).start() for i in range(REPLICAS)]


def sim_urls(sims):
    return ["http://127.0.0.1:%d/v1/chat/completions" % s.port
            for s in sims]


def render(body, sims, static, zone_mb):
    servers = " ".join("server 127.0.0.1:%d max_fails=0;" % s.port
                       for s in sims)
    return HTTP.format(body=body, servers=servers, static=static,
                       zone=zone_mb)


def errors_in_log(n):
    """Counts of the error log's [error] and worse lines, by message."""
    counts = {}
    for line in n.log().splitlines():
        for level in ("[emerg]", "[alert]", "[crit]", "[error]"):
            if level in line:
                msg = line.split(level, 1)[1]
                msg = msg.split(":", 1)[1] if ":" in msg else msg
                msg = msg.split(", client:")[0].strip()
                # "*123 " numbers the connection: the same message
                msg = re.sub(r"^\*\d+ ", "", msg)[:120]
                key = level + " " + msg
                counts[key] = counts.get(key, 0) + 1
    return counts


def measure_row(row, n_streams, sims, fast_sims, static, rate, salt):
    """One row at one N: the client's report, the workers' memory, the
    error log."""
    name, label, body, extra = row
    tokens, tpot, default_rate = PACE[n_streams]
    rate = rate or default_rate
    args = ["--hold", "-n", str(n_streams), "--connect-rate", str(rate),
            "--max-tokens", str(tokens), "--usage", "--timeout", "120",
            "--salt", salt] + extra
    if name == "coalesced":
        args += ["--groups", str(max(1, n_streams // 100))]
    tag = "%s-%d" % (name, n_streams)
    # the whole wave, bounded: connecting, the streams, and some slack
    limit = n_streams / rate + TTFT_MS / 1000 + 4 * tokens * tpot / 1000 \
        + 60

    if body is None:
        report, _ = run_client(args, sim_urls(sims), [], tag, limit,
                               watch=[x.proc.pid for x in sims])
        return {"report": report, "workers": [],
                "replicas": [x.proc.pid for x in sims]}

    # a zone for every answer of the run with room to spare: ~9 KiB each
    zone_mb = max(64, n_streams * 24 // 1024)
    use = fast_sims if name == "hit" else sims
    n = BigNginx(render(body, use, static, zone_mb),
                 connections=4 * n_streams + 4096, workers=2)
    try:
        n.start()
        url = [n.url + "/v1/chat/completions"]
        if name == "hit":
            # store every answer first (fast replicas), then fresh workers
            # (reload keeps the zone) so the idle figure is a new heap's
            run_client(["-c", "64", "-n", str(n_streams), "--max-tokens",
                        str(tokens), "--usage", "--salt", salt], url, [],
                       tag + "-store", limit)
            n.reload()
        warm = ["-c", "4", "-n", "8", "--max-tokens", "4",
                "--salt", salt + "w"]
        run_client(warm, url, [], tag + "-warm", 30)
        time.sleep(0.3)
        pids = n.worker_pids()
        idle = snapshot(pids, True)
        report, memory = run_client(args, url, pids, tag, limit,
                                    watch=[x.proc.pid for x in use])
        cachez = None
        try:
            with urllib.request.urlopen(n.url + "/cachez", timeout=5) as r:
                cachez = json.loads(r.read())
        except (OSError, ValueError):
            pass
    finally:
        n.stop()
        log_errors = errors_in_log(n)
        n.cleanup()
    out = {"report": report, "idle": idle, "memory": memory,
           "log": log_errors, "cachez": cachez, "workers": pids,
           "replicas": [x.proc.pid for x in use]}
    if name == "coalesced":
        out["behind_leader"] = behind_leader(
            os.path.join(OUT_DIR, tag + ".csv"), max(1, n_streams // 100))
    return out


def behind_leader(csv_path, groups):
    """Coalesced waiters: each one's first event behind the first event
    of the request that went upstream for its prompt (the MISS of its
    group), or behind its own start for a waiter that came later: how
    long it waited for what was there.  ms: p50, p99, max."""
    import csv
    firsts, leaders = {}, {}
    with open(csv_path) as f:
        for r in csv.DictReader(f):
            if not r["first_event_ms"]:
                continue
            group = int(r["index"]) % groups
            start = float(r["start_ms"])
            at = start + float(r["first_event_ms"])
            if r["X-Cache"] == "COALESCED":
                firsts.setdefault(group, []).append((start, at))
            elif r["X-Cache"] == "MISS":
                leaders[group] = min(at, leaders.get(group, at))
    delays = sorted(at - max(start, leaders[g])
                    for g, ats in firsts.items() if g in leaders
                    for start, at in ats)
    if not delays:
        return None

    def rank(q):
        return delays[max(0, int(q * len(delays) + 0.999999) - 1)]

    return {"n": len(delays), "p50": rank(0.5), "p99": rank(0.99),
            "max": delays[-1]}


def ceiling(seconds):
    """The client at full speed: against the replicas, through a plain
    proxy, and against nginx sending a stored stream as a file (nothing
    upstream: only the client limits the rate)."""
    fast = start_sims(["--ttft-ms", "0", "--tpot-ms", "0", "--jitter", "0"])
    body = json.dumps({"model": "sim-small", "stream": True,
                       "max_tokens": 40,
                       "messages": [{"role": "user", "content": "ceiling"}]})
    req = urllib.request.Request(sim_urls(fast)[0], data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    static = private_dir("agw-bench-streams-")
    with urllib.request.urlopen(req, timeout=10) as r, \
            open(os.path.join(static, "static-sse"), "wb") as f:
        f.write(r.read())
    os.chmod(os.path.join(static, "static-sse"), 0o644)
    n = BigNginx(render("", fast, static, 64), connections=8192, workers=2)
    out = {}
    try:
        n.start()
        args = ["-c", str(CEILING_CONNECTIONS), "-n", "100000000",
                "--duration", str(seconds),
                "--max-tokens", "40", "--salt", "ceiling"]
        for key, urls in (("direct", sim_urls(fast)),
                          ("nginx", [n.url + "/v1/chat/completions"]),
                          ("static", [n.url + "/static-sse"])):
            cpu0 = sum(cpu_seconds(p, 0.0) for p in n.worker_pids())
            sim0 = sum(cpu_seconds(s.proc.pid, 0.0) for s in fast)
            report, _ = run_client(args, urls, [], "ceiling-" + key,
                                   seconds + 60)
            report["nginx_cpu_s"] = sum(cpu_seconds(p, 0.0)
                                        for p in n.worker_pids()) - cpu0
            report["sim_cpu_s"] = sum(cpu_seconds(s.proc.pid, 0.0)
                                      for s in fast) - sim0
            out[key] = report
            print("ceiling %-7s %7.0f streams/s %8.0f events/s, client CPU "
                  "%.0f%%, loop lag p99 %d ms" % (
                      key, report["rps"], report["events_per_s"],
                      report["client"]["cpu_percent"],
                      report["client"]["loop_lag_ms"]["p99"]), flush=True)
    finally:
        n.stop()
        n.cleanup()
        for s in fast:
            s.stop()
        shutil.rmtree(static, ignore_errors=True)
    return out


def module_version():
    """The last commit of the module's sources, and whether the tree
    differs from it."""
    def git(*args):
        return subprocess.run(["git", "-C", REPO] + list(args),
                              capture_output=True, text=True).stdout.strip()
    commit = git("log", "-1", "--format=%h of %cs", "--",
                 "ngx_ai_gateway_module")
    dirty = git("status", "--porcelain", "--", "ngx_ai_gateway_module")
    return (commit + (", with local changes" if dirty else "")) \
        if commit else "unknown"


def print_row(n_streams, row, res):
    rep = res["report"]
    lat = rep["latency_ms"]["first_event"]
    heap = bench_streams_report.per_stream_kib(res, n_streams, "peak")
    print("N=%-6d %-32s ok %d/%d  first event p50 %.1f p99 %.1f ms  "
          "heap per stream %s KiB  (%.0f s, load %.1f)" % (
              n_streams, row[1], rep["ok"], n_streams, lat.get("p50", -1),
              lat.get("p99", -1), "-" if heap is None else "%.1f" % heap,
              res["seconds"], res["loadavg"]), flush=True)


def run(ns, rows, rate, reps, ceiling_seconds):
    """Every row at every N, the rows interleaved within each repetition
    so that a busy moment of the machine lands on all of them alike."""
    results = {"date": today(), "machine": machine(),
               "nginx": nginx_version(),
               "module": module_version(),
               "connect_rate": rate, "ttft_ms": TTFT_MS, "reps": reps,
               "replicas": REPLICAS, "ceiling_seconds": ceiling_seconds,
               "ceiling_connections": CEILING_CONNECTIONS,
               "rows": [[r[0], r[1], r[2] is not None] for r in rows],
               "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
               "runs": {}}
    if ceiling_seconds:
        results["ceiling"] = ceiling(ceiling_seconds)
    fast = start_sims(["--ttft-ms", "0", "--tpot-ms", "0", "--jitter", "0"])
    try:
        for n_streams in ns:
            tokens, tpot, default_rate = PACE[n_streams]
            sims = start_sims(["--ttft-ms", str(TTFT_MS), "--tpot-ms",
                               str(tpot), "--jitter", "0"])
            by_row = {r[0]: [] for r in rows}
            try:
                # 10,000 streams take minutes a run: one
                for rep in range(reps if n_streams < 10000 else 1):
                    # prompts of their own: nothing cached by an earlier
                    # run or row answers this one
                    salt = "r%x%d" % (int(time.time()), rep)
                    for row in rows:
                        t0 = time.monotonic()
                        load = os.getloadavg()[0]
                        res = measure_row(row, n_streams, sims, fast,
                                          "/nonexistent", rate,
                                          "%s%s" % (salt, row[0]))
                        res["seconds"] = time.monotonic() - t0
                        res["loadavg"] = load
                        by_row[row[0]].append(res)
                        print_row(n_streams, row, res)
            finally:
                for s in sims:
                    s.stop()
            results["runs"][str(n_streams)] = {
                "tokens": tokens, "tpot_ms": tpot,
                "connect_rate": rate or default_rate, "rows": by_row}
    finally:
        for s in fast:
            s.stop()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default=os.environ.get("BENCH_STREAMS_N",
                                                  "1000,5000"),
                    help="comma-separated N, each of %s (default "
                    "1000,5000, or $BENCH_STREAMS_N)" %
                    ",".join(str(k) for k in sorted(PACE)))
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS),
                    help="which locations (default: all)")
    ap.add_argument("--reps", type=int,
                    default=int(os.environ.get("BENCH_STREAMS_REPS", "2")),
                    help="repetitions of every row below N = 10,000, "
                    "which runs once (default 2, or $BENCH_STREAMS_REPS)")
    ap.add_argument("--connect-rate", type=int, default=0,
                    help="new connections a second (default: by N, see "
                    "PACE; a burst beyond nginx's listen backlog, 4096 "
                    "here, loses SYNs, which the client retries a second "
                    "later)")
    ap.add_argument("--ceiling-seconds", type=int, default=5)
    ap.add_argument("--no-ceiling", dest="ceiling_seconds",
                    action="store_const", const=0)
    ap.add_argument("--results", default=RESULTS)
    ap.add_argument("--out", default=DOC)
    ap.add_argument("--note", default=None,
                    help="a paragraph for the section (what this run is "
                    "the figures of); kept in the results")
    ap.add_argument("--charts-only", action="store_true",
                    help="redraw the chart and the section from --results")
    args = ap.parse_args()

    if args.charts_only:
        with open(args.results) as f:
            results = json.load(f)
    else:
        if not os.path.exists(LOAD):
            raise SystemExit("bench-streams: %s missing (make)" % LOAD)
        ns = [int(x) for x in args.n.split(",") if x]
        for n in ns:
            if n not in PACE:
                raise SystemExit("bench-streams: N is one of %s"
                                 % sorted(PACE))
        wanted = args.rows.split(",")
        rows = [r for r in ROWS if r[0] in wanted]
        # the client holds N; each worker 2 per stream of its share
        nofile = raise_nofile()
        if nofile < max(ns, default=0) + 1024:
            raise SystemExit("bench-streams: N = %d needs %d descriptors "
                             "in the client; the hard limit is %d (ulimit "
                             "-Hn)" % (max(ns), max(ns) + 1024, nofile))
        results = run(ns, rows, args.connect_rate, max(1, args.reps),
                      args.ceiling_seconds)
        doc.write_json(args.results, results)

    if args.note is not None:
        results["note"] = args.note
        doc.write_json(args.results, results)
    if results["runs"]:
        try:
            path = bench_streams_report.draw(
                results, os.path.dirname(os.path.abspath(args.out)))
            print("bench-streams: wrote " + path)
        except ImportError:
            print("bench-streams: no chart: python3-matplotlib missing "
                  "(scripts/deps.sh bench)", file=sys.stderr)
    text = bench_streams_report.section(results)
    print(text)
    doc.write_section(text, args.out, bench_streams_report.BEGIN,
                      bench_streams_report.END)


if __name__ == "__main__":
    main()
