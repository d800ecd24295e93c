"""The section "Balancers: what choosing costs" (issue 22): make bench, or
only it with `bench.py --balance-only`.  (make bench-balance,
scripts/bench_balance.py, measures what the balancers gain.)"""

import os
import statistics

from harness.nginx import free_port

from benchlib import pairs
from benchlib.callgrind import instructions_per_request
from benchlib.host import fast_sim, today
from benchlib.wrk import post_script

BEGIN = ("<!-- bench-balance-cost: begin (scripts/bench.py "
         "--balance-only) -->")
END = "<!-- bench-balance-cost: end -->"

# name, the upstream's balancing directive; the first is the reference
ROWS = [
    ("least_conn", "least_conn;"),
    ("least_tokens", "ai_gateway_balance least_tokens;"),
    ("prefix", "ai_gateway_balance prefix;"),
]

# a chat with a system prompt longer than prefix's 2048 bytes, so that
# prefix hashes all it reads, and a user turn of its own
BODY = ('{"model":"sim-small","max_tokens":8,"messages":['
        '{"role":"system","content":"%s"},'
        '{"role":"user","content":"what balancing costs"}]}'
        % ("You are a helpful assistant. " * 80).strip())

# a row: its upstream of the three replicas and its server
BLOCK = """    upstream pool{k} {{
        {directive}
{servers}        zone pool{k} 64k;
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            proxy_pass http://pool{k};
        }}
    }}
"""


def section(pairs_n, seconds, connections, callgrind_passes):
    """What the balancers cost nginx: the same chat POSTed through an
    upstream of three ai-sim replicas answering at once (no latency, their
    load reports on every answer), balanced by least_conn, least_tokens and
    prefix.  Side by side at the same time on two identical nginx
    (benchlib.pairs), each row against least_conn, and instructions per
    request under callgrind."""
    pair = pairs.Pair("agw-bench-balance-")
    script = post_script(os.path.join(pair.work, "chat.lua"), BODY)
    ratios, passes = {}, []
    try:
        for i in range(3):
            pair.sims.append(fast_sim("sim-balance-%d" % (i + 1)))
        servers = "".join("        server 127.0.0.1:%d;\n" % s.port
                          for s in pair.sims)
        for side in "ab":
            urls, blocks = {}, []
            for k, (name, directive) in enumerate(ROWS):
                port = free_port()
                urls[name] = "http://127.0.0.1:%d/v1/chat/completions" % port
                blocks.append(BLOCK.format(k=k, directive=directive,
                                           servers=servers, port=port))
            pair.start(pairs.http("".join(blocks)), urls)
        for urls in pair.urls():
            for name, _ in ROWS:
                pairs.warm(urls[name], connections, script, name)
        ref = ROWS[0][0]
        for row, _ in ROWS[1:]:
            vals = ratios[(row, ref)] = pairs.against(
                pair.urls(), pair.pids(), row, ref, pairs_n, seconds,
                connections, script)
            print("balance side by side %-14s %.3f of %s" % (
                row, statistics.median(v[0] for v in vals), ref), flush=True)
        # every replica was picked by the module's balancers
        doc = pairs.cachez(pair.sides[0][0].url)
        for k in (1, 2):
            peers = doc["upstreams"]["pool%d" % k]["peers"]
            if pairs_n and not all(p["picks"] for p in peers):
                raise SystemExit("bench: pool%d: a replica never picked: %s"
                                 % (k, peers))
        pair.stop()
        if callgrind_passes:
            print("balance: instructions per request under callgrind...",
                  flush=True)
            _, urls, http = pair.sides[0]
            for _ in range(callgrind_passes):
                passes.append(instructions_per_request(
                    http, [r[0] for r in ROWS], urls, 2, script))
    finally:
        pair.close()

    lines = [
        BEGIN, "", "## Balancers: what choosing costs", "",
        "Produced by `make bench` (or `scripts/bench.py --balance-only`) on "
        "%s. The same chat (a %d-byte body: a system prompt longer than "
        "`prefix`'s 2048 bytes, a user turn, 8 tokens out) POSTed through "
        "an upstream of three ai-sim replicas that answer at once (their "
        "`endpoint-load-metrics` on every answer), with `zone` and "
        "`keepalive`, balanced by `least_conn` (the reference), "
        "`ai_gateway_balance least_tokens` (the body parsed for its "
        "estimate, the tokens counted in shared memory, the load reports "
        "read) and `ai_gateway_balance prefix` (the same, and the prompt's "
        "start hashed onto the ring). Side by side at the same time: two "
        "identical nginx, one worker each, wrk -t1 -c%d on each at once "
        "for %d s, the row on one and least_conn on the other, swapping "
        "every pair; median of %d pairs with the 95%% bootstrap interval "
        "of that median. Instructions per request: one nginx process "
        "under callgrind, 4 connections, median (min..max) of %d passes."
        % (today(), len(BODY), connections, seconds, pairs_n,
           callgrind_passes),
        "",
    ]
    lines += pairs.cost_table(ratios, passes)
    lines += ["", END]
    return "\n".join(lines) + "\n"
