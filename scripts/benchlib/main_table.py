"""The main table of make bench: every row of SPEC 5 (benchlib.main_rows)
on one nginx with one worker, driven by wrk in turn, the whole set
repeated and interleaved; each row's instructions per request under
callgrind; the document around it (docs/BENCHMARKS.md up to the other
benches' sections), results.json and the charts."""

import json
import operator
import re
import shutil
import statistics
import subprocess
import sys

import bench_charts
from harness.nginx import Nginx, private_dir
try:
    from harness.redis import RedisServer, available as redis_available
except ImportError:  # the Redis store is not built in
    RedisServer = None

from benchlib.callgrind import instructions_per_request
from benchlib.doc import write_json
from benchlib.host import fast_sim, machine, nginx_version, today
from benchlib.main_rows import (KIB, REDIS_ZONE, ROWS, URI, docroot,
                                render)
from benchlib.stats import fmt_ratio, paired
from benchlib.wrk import wrk_with_cpu


class Setup:
    """What the rows run on: their docroot, an ai-sim without latency,
    redis-server (without it, or without the Redis store built in, the
    rows named Redis are left out) and the config rendered for them."""

    def __init__(self):
        self.work = private_dir("agw-bench-")
        docroot(self.work)
        self.sim = fast_sim("sim-bench")
        self.redis = None
        self.rows = list(ROWS)
        if RedisServer is not None and redis_available():
            self.redis = RedisServer().start()
            self.redis_conf = REDIS_ZONE.format(port=self.redis.port)
        else:
            self.redis_conf = ""
            self.rows = [r for r in self.rows if "Redis" not in r[0]]
        self.http, self.urls = render(self.rows, self.work, self.sim.port,
                                      self.redis_conf)

    def stop(self):
        self.sim.stop()
        if self.redis:
            self.redis.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def redis_benchmark(port, seconds):
    """redis-benchmark GET of a 1 KiB value: the floor a Redis HIT sits on."""
    n = max(20000, seconds * 20000)
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get",
                          "-d", "1024", "-n", str(n), "-c", "32", "-q"],
                         capture_output=True, text=True).stdout
    m = re.search(r"GET: ([\d.]+) requests per second", out)
    return float(m.group(1)) if m else None


def measure(setup, reps, seconds, connections):
    """Every row reps times, interleaved.  Returns ({row: [(requests/s,
    p50, p99, CPU µs/req)...]}, redis-benchmark's GET/s or None, the
    /cachez document after the run)."""
    rows, urls = setup.rows, setup.urls
    results = {r[0]: [] for r in rows}
    n = Nginx(setup.http, workers=1)
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
        for rep in range(reps):
            for name, _, _, _, _, conns in rows:
                rps, p50, p99, cpu = wrk_with_cpu(urls[name], worker,
                                                  seconds,
                                                  conns or connections)
                results[name].append((rps, p50, p99, cpu))
                print("rep %d %-32s %10.0f req/s  p50 %.2f ms  p99 %.2f ms"
                      % (rep + 1, name, rps, p50, p99), flush=True)
        redis_get = redis_benchmark(setup.redis.port, seconds) \
            if setup.redis else None
        cachez = subprocess.run(["curl", "-s", n.url + "/cachez"],
                                capture_output=True, text=True).stdout
    finally:
        n.stop()
        n.cleanup()
    return results, redis_get, cachez


def callgrind_passes(setup, passes):
    """passes callgrind passes over every row: [{row: instructions/req}]"""
    names = [r[0] for r in setup.rows]
    return [instructions_per_request(setup.http, names, setup.urls, 2)
            for _ in range(passes)]


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
    sim = fast_sim("sim-bench")
    try:
        http, urls = render(rows, work, sim.port, "")
        runs = [instructions_per_request(http, [r[0] for r in rows], urls, 2)
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


def medians(results):
    """Per row: the median and min..max of requests/s and of CPU µs/req,
    the median p50 and p99."""
    return {k: {"rps": statistics.median(x[0] for x in v),
                "lo": min(x[0] for x in v), "hi": max(x[0] for x in v),
                "p50": statistics.median(x[1] for x in v),
                "p99": statistics.median(x[2] for x in v),
                "cpu": statistics.median(x[3] for x in v),
                "cpu_lo": min(x[3] for x in v),
                "cpu_hi": max(x[3] for x in v)}
            for k, v in results.items()}


def figures(rows, med, results_path, charts_dir):
    """The figures into results_path (JSON) and the charts into
    charts_dir; returns the charts' paths ([] without matplotlib)."""
    figs = {"rows": [{"name": r[0], "ceiling": r[2], "peer": r[3]}
                     for r in rows], "med": med}
    write_json(results_path, figs)
    try:
        return bench_charts.draw(figs, charts_dir)
    except ImportError:
        print("bench: no charts: python3-matplotlib missing "
              "(scripts/deps.sh bench)", file=sys.stderr)
        return []


def document(rows, med, runs, after, redis_get, cachez, charts,
             connections, seconds, reps, callgrind_passes):
    """docs/BENCHMARKS.md up to the other benches' sections: the table of
    rows (med: medians()), what each row adds to its ceiling in
    instructions (runs: callgrind_passes()), the lines of the sections
    measured with it (after), the location bodies, redis-benchmark's GET
    and the zone's bytes per cached answer (cachez: /cachez's JSON)."""
    ir = {k: statistics.median(p[k] for p in runs) for k in runs[0]} \
        if runs else {}
    ir_range = {k: (min(p[k] for p in runs), max(p[k] for p in runs))
                for k in ir}
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
                paired(runs, name, peer, operator.truediv, "%.3f"),
                peer)
        lines.append("| %s | %.0f | %.0f..%.0f | %.2f | %.2f "
                     "| %.1f (%.1f..%.1f) | %s | %s | %s |" % (
                         name, m["rps"], m["lo"], m["hi"], m["p50"],
                         m["p99"], m["cpu"], m["cpu_lo"], m["cpu_hi"],
                         "%.0f (%.0f..%.0f)" % ((ir[name],) + ir_range[name])
                         if name in ir else "-",
                         fmt_ratio(m["rps"], c["rps"]) if c else "-",
                         peer_txt))
    if runs:
        lines.append("")
        lines.append("Instructions each row adds to its ceiling, compared "
                     "within each callgrind pass (median, min..max over the "
                     "passes), which cancels what a whole pass may add (a "
                     "timer, a log rotation check):")
        lines.append("")
        for name, _, ceiling, peer, _, _ in rows:
            if ceiling in ir and name in ir:
                lines.append("- %s: %s over %s" % (
                    name, paired(runs, name, ceiling, operator.sub,
                                 "%+.0f"), ceiling))
    lines += after
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

    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True,
                           text=True).stdout.splitlines()[0]
    header = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (scripts/bench.py) on %s: %s; %s; %s. "
        "wrk -t1 -c%d, %d s per run, %d interleaved "
        "repetitions; nginx with one worker; 1 KiB answers; all on "
        "loopback, so client, server and backend share the cores." % (
            today(), machine(), nginx_version(), wrk_v,
            connections, seconds, reps),
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
        % callgrind_passes,
        "",
    ]
    return "\n".join(header + lines) + "\n"
