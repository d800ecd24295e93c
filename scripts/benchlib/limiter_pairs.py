"""The limiter rows side by side (make bench): their differences are a few
percent, less than a single wrk run resolves here, so each is measured
against its reference at the same time on two identical nginx
(benchlib.pairs), which cancels most of what moves a single run."""

import random
import statistics

from benchlib import pairs as side
from benchlib.main_rows import docroot, render
from benchlib.wrk import wrk

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


def measure(rows, sim_port, pairs, seconds, connections, redis_conf):
    """Each SIDE_BY_SIDE row and its reference driven at the same time, on
    two identical nginx (one worker each, each its own half of the
    connections), so that a slow moment of this shared machine (the
    hypervisor taking the CPU, another tenant) slows both alike.  Each pair
    swaps which nginx serves which row.  Returns, per (row, reference), the
    per-pair requests/s and CPU-per-request ratios row/reference (and
    both rows' requests/s: benchlib.pairs.against)."""
    present = {r[0] for r in rows}
    wanted = [p for p in SIDE_BY_SIDE if p[0] in present and p[1] in present]
    names = {name for pair in wanted for name in pair}
    rows = [r for r in rows if r[0] in names]
    pair = side.Pair("agw-bench-pairs-")
    ratios = {}
    try:
        for half in ("a", "b"):
            docroot("%s/%s" % (pair.work, half))
            pair.start(*render(rows, "%s/%s" % (pair.work, half), sim_port,
                               redis_conf))
        for urls in pair.urls():
            for name in names:
                wrk(urls[name], 1, connections)
        for row, ref in wanted:
            ratios[(row, ref)] = side.against(
                pair.urls(), pair.pids(), row, ref, pairs, seconds,
                connections)
            med = statistics.median(x[0] for x in ratios[(row, ref)])
            print("side by side %-52s %.3f of %s" % (row, med, ref),
                  flush=True)
    finally:
        pair.close()
    return ratios


def lines(ratios, pairs, seconds, connections):
    """The section's paragraph and table."""
    rng = random.Random(1)
    out = [
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
        out.append("| %s | %s | %s | %.3f..%.3f |" % (
            row, ref, side.ratio_cells(vals, rng), min(rps), max(rps)))
    return out
