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
import os

import bench_charts
from benchlib import REPO
from benchlib import (balance_cost, doc, idle_waiters, limiter_pairs,
                      main_table, metrics_cost, stream_cache, ttfb)


def cost_section(module, pairs, args):
    """A cost section (metrics_cost, balance_cost): its markdown."""
    return module.section(pairs, args.pair_seconds, args.connections // 2,
                          args.callgrind_passes if args.callgrind else 0)


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
        main_table.callgrind_rows(args.callgrind_rows, args.callgrind_passes)
        return
    charts_dir = args.charts_dir or os.path.dirname(os.path.abspath(args.out))

    if args.charts_only:
        for path in bench_charts.draw(bench_charts.load(args.results),
                                      charts_dir):
            print("bench: wrote " + path)
        return

    # the cost sections, in the order they run: (module, its pairs, only
    # it); --balance-only wins over --metrics-only
    costs = [(metrics_cost, args.metrics_pairs, args.metrics_only),
             (balance_cost, args.balance_pairs, args.balance_only)]
    costs = [(m, args.pairs if n is None else n, only)
             for m, n, only in costs]
    for module, pairs, only in reversed(costs):
        if only:
            text = cost_section(module, pairs, args)
            print(text)
            doc.write_section(text, args.out, module.BEGIN, module.END)
            return

    setup = main_table.Setup()
    after, runs, written = [], [], {}
    try:
        results, redis_get, cachez = main_table.measure(
            setup, args.reps, args.seconds, args.connections)
        if args.pairs:
            ratios = limiter_pairs.measure(setup.rows, setup.sim.port,
                                           args.pairs, args.pair_seconds,
                                           args.connections // 2,
                                           setup.redis_conf)
            after += limiter_pairs.lines(ratios, args.pairs,
                                         args.pair_seconds,
                                         args.connections // 2)
        for module, pairs, _ in costs:
            if pairs:
                written[module] = cost_section(module, pairs, args)
        if args.ttfb_requests:
            after += ttfb.lines(args.ttfb_requests)
        if args.stream_requests:
            after += stream_cache.lines(args.stream_requests, args.fanout)
        if args.idle_waiters:
            after += idle_waiters.lines(args.idle_waiters)
        if args.callgrind:
            print("instructions per request under callgrind...", flush=True)
            runs = main_table.callgrind_passes(setup, args.callgrind_passes)
    finally:
        setup.stop()

    med = main_table.medians(results)
    charts = main_table.figures(setup.rows, med, args.results, charts_dir)
    text = main_table.document(setup.rows, med, runs, after, redis_get,
                               cachez, charts, args.connections,
                               args.seconds, args.reps,
                               args.callgrind_passes)
    print()
    print(text)
    print("/cachez after the run: " + cachez)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    # read before open(..., "w") empties the file
    kept = doc.kept_sections(args.out)
    with open(args.out, "w") as f:
        f.write(text + kept)
    for module, text in written.items():
        doc.write_section(text, args.out, module.BEGIN, module.END)


if __name__ == "__main__":
    main()
