#!/usr/bin/python3
"""What the GenAI metrics cost a gateway whose worker is the bottleneck:
one nginx, one worker, make bench's two locations (the same chat proxied
to one ai-sim without latency, `ai_gateway_metrics` on and off), and wrk
-t1 -c16 on one location then the other, 2 s windows, the order swapped
every pair.  Each pair gives the requests/s ratio (on/off) and the
worker's CPU time per request ratio (utime + stime from /proc).  Then the
same behind the shipped /v1/ location's limiters (a request zone per
client, a global one, a money zone and a token zone, at rates that never
refuse), which read the request and the answer themselves: there the
metrics add only their own part.  A control row measures "off" against
"off" the same way: how far the method itself moves.

make bench's metrics section runs two nginx side by side, each with its
own ai-sim and wrk, on this 2-core machine: there the worker is one of
six busy processes and its cost is diluted in the requests/s; here both
rows share one worker, one ai-sim and one wrk, so its CPU per request is
the figure to read.

    scripts/bench_metrics_alternate.py [--pairs 30] [--seconds 2]
"""

import argparse
import os
import random
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from benchlib import metrics_cost, pairs                   # noqa: E402
from benchlib.host import fast_sim                          # noqa: E402
from benchlib.stats import median_interval                  # noqa: E402
from benchlib.wrk import post_script, wrk_with_cpu          # noqa: E402
from harness.nginx import Nginx, free_port, private_dir     # noqa: E402


STREAM = '"stream":true,"stream_options":{"include_usage":true},'

OFF = metrics_cost.OFF
LIMITS = metrics_cost.LIMITS         # the shipped /v1/ location's limiters

# title, the measured location's directives, its reference's, streamed
ROWS = [
    ("chat, metrics on vs off", "", OFF, False),
    ("stream, metrics on vs off", "", OFF, True),
    ("chat behind the shipped limiters, metrics on vs off", LIMITS,
     LIMITS + " " + OFF, False),
    ("stream behind the shipped limiters, metrics on vs off", LIMITS,
     LIMITS + " " + OFF, True),
    ("control: chat, off vs off", OFF, OFF, False),
]


def measure(row, work, n_pairs, seconds):
    title, measured, reference, stream = row
    script = post_script(os.path.join(work, "body.lua"),
                         metrics_cost.BODY % (STREAM if stream else ""))
    with open(script, "a") as f:
        f.write('wrk.headers["X-Api-Key"] = "bench"\n')
    sim = fast_sim("sim-alternate")
    nginx = None
    try:
        urls, servers = [], []
        for directive in (measured, reference):
            port = free_port()
            urls.append("http://127.0.0.1:%d/v1/chat/completions" % port)
            servers.append(metrics_cost.SERVER.format(port=port,
                                                      directive=directive))
        nginx = Nginx(pairs.http("".join(servers), upstream=(
            "    upstream sim { server 127.0.0.1:%d; keepalive 64; }\n"
            % sim.port + metrics_cost.LIMIT_ZONES)), workers=1)
        nginx.start()
        pid = nginx.worker_pids()[0]
        for url in urls:                          # both answer 2xx
            pairs.warm(url, 16, script, title)
        rps, cpu, per = [], [], []
        for i in range(n_pairs):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            got = {}
            for k in order:
                r, _, _, c = wrk_with_cpu(urls[k], pid, seconds, 16, script)
                got[k] = (r, c)
            rps.append(got[0][0] / got[1][0])
            cpu.append(got[0][1] / got[1][1])
            per.append(got[1][1])
    finally:
        if nginx:
            nginx.stop()
            nginx.cleanup()
        sim.stop()
    return title, rps, cpu, statistics.median(per)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--rows", help="only the rows whose title has this")
    args = ap.parse_args()
    work = private_dir("agw-bench-alternate-")
    rng = random.Random(1)
    print("| row | req/s ratio (95% interval) | worker CPU/req ratio (95%"
          " interval) | reference's worker CPU µs/req |")
    print("| --- | ---: | ---: | ---: |")
    for row in ROWS:
        if args.rows and args.rows not in row[0]:
            continue
        title, rps, cpu, per = measure(row, work, args.pairs, args.seconds)
        print("| %s | %.3f (%.3f..%.3f) | %.3f (%.3f..%.3f) | %.1f |" % (
            title, statistics.median(rps), *median_interval(rps, rng),
            statistics.median(cpu), *median_interval(cpu, rng), per),
            flush=True)


if __name__ == "__main__":
    main()
