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

# the shipped /v1/ location's limiters (nginx-conf/gateway.conf.template)
# at rates that never refuse: its token and money zones read the request
# for their estimate and the answer for its usage, as the metrics do, so
# that there the metrics add only their own part, the log phase's update
LIMIT_ZONES = """
    ai_gateway_limit_zone $binary_remote_addr zone=per_client:10m
                          rate=1000000r/s burst=1000000;
    ai_gateway_limit_zone global zone=global:1m rate=1000000r/s
                          burst=1000000;
    ai_gateway_limit_zone $http_x_api_key zone=tpm:10m
                          rate=1000000000t/m burst=1000000000;
    ai_gateway_model_price sim-small input=0.15 output=0.60
                           cached_input=0.075;
    ai_gateway_limit_zone $http_x_api_key zone=spend:10m
                          rate=1000000usd/d burst=1000000usd;
"""
LIMITS = ("ai_gateway_limit zone=per_client; ai_gateway_limit zone=global;"
          " ai_gateway_limit zone=spend; ai_gateway_limit zone=tpm;"
          " ai_gateway_limit_headers all;")
OFF = "ai_gateway_metrics off;"
LIMITED = " behind the shipped limiters"

# name, directives, streamed; each "on" row is followed by its reference
ROWS = [
    ("proxied chat, metrics on", "", False),
    ("proxied chat, metrics off", OFF, False),
    ("proxied stream, metrics on", "", True),
    ("proxied stream, metrics off", OFF, True),
    ("proxied chat" + LIMITED + ", metrics on", LIMITS, False),
    ("proxied chat" + LIMITED + ", metrics off", LIMITS + " " + OFF, False),
    ("proxied stream" + LIMITED + ", metrics on", LIMITS, True),
    ("proxied stream" + LIMITED + ", metrics off", LIMITS + " " + OFF,
     True),
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
    for path in scripts.values():             # the key the zones count
        with open(path, "a") as f:
            f.write('wrk.headers["X-Api-Key"] = "bench"\n')
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
                % sim.port + LIMIT_ZONES))
            pair.start(http, urls)
        for urls in pair.urls():
            for name, _, stream in ROWS:
                pairs.warm(urls[name], connections, scripts[stream], name)
        for on, off in ((0, 1), (2, 3), (4, 5), (6, 7)):
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
        "phase) and off; then the same behind the shipped `/v1/` "
        "location's four limiters (per client, global, the money zone and "
        "the token zone, an X-Api-Key on every request, rates that never "
        "refuse), whose zones read the request and the answer themselves, "
        "so that the metrics add only their log phase's update. Side by side at the same time: two identical "
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
