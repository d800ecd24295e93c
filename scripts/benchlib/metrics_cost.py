"""The section "GenAI metrics: what measuring costs" (issue 23): make
bench, or only it with `bench.py --metrics-only`."""

import os
import statistics

from harness.nginx import free_port

from benchlib import pairs
from benchlib.callgrind import instructions_per_request
from benchlib.host import fast_sim, today
from benchlib.wrk import post_script

BEGIN = "<!-- bench-metrics: begin (scripts/bench.py --metrics-only) -->"
END = "<!-- bench-metrics: end -->"

# the shipped /v1/ location's shape, without cache or limiter: what is left
# is the proxying and, in the "on" rows, the metrics (the default)
SERVER = """
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            {directive}
            proxy_buffering off;
            proxy_pass http://sim;
        }}
    }}"""

# name, directive, streamed
ROWS = [
    ("proxied chat, metrics on", "", False),
    ("proxied chat, metrics off", "ai_gateway_metrics off;", False),
    ("proxied stream, metrics on", "", True),
    ("proxied stream, metrics off", "ai_gateway_metrics off;", True),
]

BODY = ('{"model":"sim-small","max_tokens":8,%s"messages":'
        '[{"role":"user","content":"what measuring costs"}]}')


def section(pairs_n, seconds, connections, callgrind_passes):
    """The metrics' cost: the same chat, JSON and streamed (8 tokens),
    proxied to ai-sim (no latency) with the metrics on and off.  Side by
    side at the same time on two identical nginx, each with its own ai-sim
    (benchlib.pairs), and instructions per request under callgrind."""
    pair = pairs.Pair("agw-bench-metrics-")
    scripts = {
        False: post_script(os.path.join(pair.work, "chat.lua"), BODY % ""),
        True: post_script(os.path.join(pair.work, "stream.lua"), BODY % (
            '"stream":true,"stream_options":{"include_usage":true},')),
    }
    ratios, passes = {}, []
    try:
        for side in "ab":
            sim = fast_sim("sim-metrics-" + side)
            pair.sims.append(sim)
            urls, servers = {}, []
            for name, directive, _ in ROWS:
                port = free_port()
                urls[name] = "http://127.0.0.1:%d/v1/chat/completions" % port
                servers.append(SERVER.format(port=port, directive=directive))
            http = pairs.http("".join(servers), upstream=(
                "    upstream sim { server 127.0.0.1:%d; keepalive 64; }\n"
                % sim.port))
            pair.start(http, urls)
        for urls in pair.urls():
            for name, _, stream in ROWS:
                pairs.warm(urls[name], connections, scripts[stream], name)
        for on, off in ((0, 1), (2, 3)):
            row, ref = ROWS[on][0], ROWS[off][0]
            vals = ratios[(row, ref)] = pairs.against(
                pair.urls(), pair.pids(), row, ref, pairs_n, seconds,
                connections, scripts[ROWS[on][2]])
            print("metrics side by side %-30s %.3f of %s" % (
                row, statistics.median(v[0] for v in vals), ref), flush=True)
        # the "on" rows were measured, the "off" ones not
        doc = pairs.cachez(pair.sides[0][0].url)
        if doc["models"]["sim-small"]["requests"] == 0:
            raise SystemExit("bench: the metrics counted nothing")
        pair.stop()
        if callgrind_passes:
            print("metrics: instructions per request under callgrind...",
                  flush=True)
            _, urls, http = pair.sides[0]
            for _ in range(callgrind_passes):
                counts = {}
                for stream in (False, True):
                    counts.update(instructions_per_request(
                        http, [r[0] for r in ROWS if r[2] == stream], urls,
                        2, scripts[stream]))
                passes.append(counts)
    finally:
        pair.close()

    lines = [
        BEGIN, "", "## GenAI metrics: what measuring costs", "",
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
        "of %d passes." % (today(), connections, seconds, pairs_n,
                           callgrind_passes),
        "",
    ]
    lines += pairs.cost_table(ratios, passes)
    lines += ["", END]
    return "\n".join(lines) + "\n"
