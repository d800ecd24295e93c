#!/usr/bin/python3
"""Instructions per request of make bench's rows for several builds of the
module, side by side (issue 20: the layered module against the last
monolithic one, 1b38d1b).

    git worktree add /tmp/old 1b38d1b
    make -C /tmp/old build/ngx_ai_gateway_module.so
    make
    scripts/bench_ir_compare.py 3 \\
        1b38d1b=/tmp/old/build/ngx_ai_gateway_module.so \\
        this=build/ngx_ai_gateway_module.so

Each pass measures every build in turn (one nginx process under callgrind,
one connection, 2 s a row: benchlib.callgrind; CONNS=4 as make bench),
so that a slow moment lands on all of them; the table gives each build's median and its difference
from the first build's, and every pass's figure in the JSON (OUT=, default
build/bench-ir-compare.json).  The rows are make bench's without the POST
and money rows, on a configuration without the money lines, which a build
before money zones cannot parse.  ROWS="a|b" measures only those rows;
note that the configuration holds only the rows measured, and nginx's own
instructions per request move a little with it.
"""

import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from benchlib import main_rows as rows_mod                  # noqa: E402
from benchlib.callgrind import instructions_per_request     # noqa: E402
import harness.nginx as hn                                   # noqa: E402
from harness.sim import Sim                                  # noqa: E402
from harness.redis import RedisServer                        # noqa: E402


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    passes = int(sys.argv[1])
    builds = [a.split("=", 1) for a in sys.argv[2:]]
    for _, so in builds:
        if not os.path.exists(so):
            raise SystemExit("bench-ir-compare: no %s" % so)

    http_tmpl = rows_mod.HTTP
    for pat in (r"\n\s*ai_gateway_model_price[^;]*;",
                r"\n\s*ai_gateway_limit_zone \$binary_remote_addr "
                r"zone=agw_usd[^;]*;"):
        http_tmpl = re.sub(pat, "", http_tmpl)
    rows_mod.HTTP = http_tmpl

    # one connection: every request one turn of nginx's event loop, so the
    # figure repeats to a few instructions (make bench's 4 connections move
    # it by about 1% from run to run, more than the differences measured)
    conns = int(os.environ.get("CONNS", "1"))
    only = os.environ.get("ROWS")
    rows = [r for r in rows_mod.ROWS if not r[0].endswith(", POST")
            and (not only or r[0] in only.split("|"))]
    names = [r[0] for r in rows]

    work = hn.private_dir("agw-ir-compare-")
    rows_mod.docroot(work)
    sim = Sim(None, "sim-bench", "--ttft-ms", "0", "--tpot-ms", "0",
              "--jitter", "0").start()
    redis = RedisServer().start()
    res = {label: [] for label, _ in builds}
    try:
        http, urls = rows_mod.render(rows, work, sim.port,
                                     rows_mod.REDIS_ZONE.format(
                                         port=redis.port))
        for p in range(passes):
            for label, so in builds:
                hn.MODULE = os.path.abspath(so)
                res[label].append(instructions_per_request(
                    http, names, urls, 2, connections=conns))
                print("pass %d %s" % (p + 1, label), flush=True)
    finally:
        sim.stop()
        redis.stop()

    first = builds[0][0]
    print("| row | " + " | ".join(label for label, _ in builds)
          + " | %s vs %s |" % (builds[-1][0], first))
    print("| --- |" + " ---: |" * (len(builds) + 1))
    for name in names:
        base = statistics.median(x[name] for x in res[first])
        cells = [" / ".join("%.0f" % x[name] for x in res[label])
                 for label, _ in builds]
        last = statistics.median(x[name] for x in res[builds[-1][0]])
        print("| %s | %s | %+.2f%% |" % (name, " | ".join(cells),
                                         100 * (last - base) / base))

    out = os.environ.get("OUT", os.path.join(HERE, "..", "build",
                                             "bench-ir-compare.json"))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"builds": dict(builds), "passes": res}, f, indent=1)


if __name__ == "__main__":
    main()
