"""What the bench scripts share, and the sections of `make bench`.

scripts/bench.py is the entry point of `make bench`; bench_multi.py,
bench_balance.py and bench_streams.py are the other benches.  Each reads
what it needs from here:

    the plumbing
        host.py        the repository, processes' CPU time, the machine
        wrk.py         wrk runs: requests/s, latency, CPU per request
        callgrind.py   instructions per request under callgrind
        stats.py       ratios, paired callgrind figures, bootstrap
        pairs.py       two nginx side by side: a row against its reference
        doc.py         docs/BENCHMARKS.md and its marked sections
        svg.py         matplotlib set up for reproducible SVG charts

    the sections of make bench
        main_rows.py     the main table's rows and their nginx config
        main_table.py    the main table: run, figures, markdown
        limiter_pairs.py the limiter rows side by side
        ttfb.py          streams through a token zone: first event
        stream_cache.py  streams from the cache and coalesced
        idle_waiters.py  identical streams waiting on one idle flight
        metrics_cost.py  what the GenAI metrics cost (--metrics-only)
        balance_cost.py  what the balancers cost (--balance-only)

Importing the package puts tests/integration on sys.path: the benches
run nginx, ai-sim and redis-server through the integration tests' harness.
"""

import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
_HARNESS = os.path.join(REPO, "tests", "integration")
if _HARNESS not in sys.path:
    sys.path.insert(0, _HARNESS)
