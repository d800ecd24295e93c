"""Side by side at the same time: a row and its reference driven at once
on two identical nginx (one worker each, each its own half of the
connections), swapping which nginx serves which every pair, so that a
slow moment of this shared machine (the hypervisor taking the CPU,
another tenant) slows both alike.  The ratio row/reference within each
pair is what the sections report."""

import json
import operator
import random
import shutil
import statistics
import subprocess

from harness.nginx import Nginx, private_dir

from benchlib.stats import median_interval, paired
from benchlib.wrk import run_at_once, wrk

# the http{} of a pair's nginx: what every row shares, and /cachez on the
# harness's port
HTTP = ("    access_log off;\n    keepalive_requests 1000000;\n"
        "    proxy_http_version 1.1;\n"
        "    proxy_set_header Connection \"\";\n"
        "{upstream}"
        "    server { listen 127.0.0.1:%%PORT%%;\n"
        "             location = /cachez { ai_gateway_cachez; } }\n"
        "{blocks}")


def http(blocks, upstream=""):
    """HTTP with the rows' server blocks (and an upstream{} line)."""
    return HTTP.replace("{upstream}", upstream).replace("{blocks}", blocks)


class Pair:
    """The two nginx of a section (one worker each), the ai-sims they
    proxy to and a work directory for their files; close() ends them."""

    def __init__(self, prefix):
        self.work = private_dir(prefix)
        self.sims = []
        self.sides = []             # (nginx, {row: URL}, its http{})

    def start(self, http, urls):
        n = Nginx(http, workers=1)
        self.sides.append((n, urls, http))
        n.start()

    def urls(self):
        return [urls for _, urls, _ in self.sides]

    def pids(self):
        return [n.worker_pids()[0] for n, _, _ in self.sides]

    def stop(self):
        """Stop both nginx (their work done), before callgrind."""
        for n, _, _ in self.sides:
            n.stop()

    def close(self):
        for n, _, _ in self.sides:
            n.stop()
            n.cleanup()
        for sim in self.sims:
            sim.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def warm(url, connections, script, name):
    """One second of wrk on url, which must answer 2xx."""
    _, total, _, _, bad = wrk(url, 1, connections, script)
    if bad or not total:
        raise SystemExit("bench: %s: %d of %d not 2xx" % (name, bad, total))


def against(urls, pids, row, ref, pairs, seconds, connections, script=None):
    """row on one nginx and ref on the other at once, pairs times, swapping
    them every pair.  urls: each nginx's {row: URL}; pids: each one's
    worker.  Per pair: (requests/s ratio, CPU-per-request ratio, row's
    requests/s, ref's requests/s)."""
    vals = []
    for i in range(pairs):
        first, second = (0, 1) if i % 2 == 0 else (1, 0)
        (rps_r, cpu_r), (rps_f, cpu_f) = run_at_once(
            [(urls[first][row], pids[first]),
             (urls[second][ref], pids[second])],
            seconds, connections, script)
        vals.append((rps_r / rps_f, cpu_r / cpu_f, rps_r, rps_f))
    return vals


def cachez(url):
    """GET url/cachez, the JSON."""
    return json.loads(subprocess.run(["curl", "-s", url + "/cachez"],
                                     capture_output=True, text=True).stdout)


def ratio_cells(vals, rng):
    """A table's two cells of the pairs' ratios (against()): requests/s
    and CPU per request, each the median (95% bootstrap interval)."""
    rps = [v[0] for v in vals]
    cpu = [v[1] for v in vals]
    return "%.3f (%.3f..%.3f) | %.3f (%.3f..%.3f)" % (
        statistics.median(rps), *median_interval(rps, rng),
        statistics.median(cpu), *median_interval(cpu, rng))


def cost_table(ratios, passes):
    """The table of the cost sections (metrics, balancers): per (row, ref),
    the ratios' medians with their 95% bootstrap intervals, both rows'
    requests/s and, from the callgrind passes, both rows' instructions
    per request and their difference."""
    rng = random.Random(1)
    lines = [
        "| row | reference | req/s ratio (95% interval) "
        "| worker CPU/req ratio (95% interval) | req/s row, reference "
        "| instructions/req row, reference: difference |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (row, ref), vals in ratios.items():
        lines.append("| %s | %s | %s | %.0f, %.0f | %s |" % (
            row, ref, ratio_cells(vals, rng),
            statistics.median(v[2] for v in vals),
            statistics.median(v[3] for v in vals),
            "%.0f, %.0f: %s" % (
                statistics.median(p[row] for p in passes),
                statistics.median(p[ref] for p in passes),
                paired(passes, row, ref, operator.sub, "%+.0f"))
            if passes else "-"))
    return lines
