#!/usr/bin/python3
"""make bench-balance: nginx's balancers and the module's, side by side on
three ai-sim replicas that model inference servers (SPEC 8.2, issue 22).

The replicas: 8 sequences decode at once, the rest queue (--slots 8); a
prompt token not in the replica's prefix cache costs 300 us before the
first token (--prefill-us-per-token 300: a 2,000-token system prompt takes
0.6 s to prefill); the prefix cache holds 16,384 tokens, about eight such
prompts (--prefix-cache-tokens); 20 ms to the first token and 10 ms per
token after it; and each step of the batch (a decode step, or the step
that makes a first token) 1.1 us longer for every token the running
sequences hold, prompts and generated tokens (--decode-us-per-kv-token
1.1): a decode step reads the weights and the whole batch's KV cache, so
with the 16,384-token cache full a step takes 2.8x an idle one, as on a
GPU whose KV cache is 1.8x the size of the weights (Llama-2-13B in fp16
on an 80 GB H100: 26 GB of weights, ~46 GB of KV cache at 800 KiB a
token; docs/BENCHMARKS.md).  So what a request waits for is simulated GPU
time, not this machine's CPU: the comparison holds on a shared 2-core
machine.  (--kv-cache-tokens stays off there: on shared prefixes ai-sim
would count a shared system prompt once per sequence where vLLM holds
its blocks once.)  For mixed lengths, the replicas are also bounded by
their KV cache, as vLLM's are (KV_SIM_ARGS: --slots 64 --kv-cache-tokens
3072, about five long generations); the same workload on the 8-slot
replicas shows the other case, where a long takes a slot as a short
does.

The balancers, each its own upstream{} over the same three replicas, with
`zone` (nginx's balancers then share their counts between the two
workers, as the module's do) and keepalive:

    round robin     (nginx's default)
    least_conn
    least_tokens    ai_gateway_balance least_tokens
    prefix          ai_gateway_balance prefix  (bytes=2048 bound=1.25)

The workloads (build/agw-load, streamed chats, scripts/load/README.md):

    shared prefixes  12 tenants, each with a 2,000-token system prompt,
                     then a 16-word user turn of its own, 16 tokens out;
                     18 clients, one request after another (closed loop)
    mixed lengths    90% short answers (16 tokens), 10% long (512), a
                     short prompt each; 17 requests/s arriving on their
                     own (open loop), on the KV-bound replicas: about
                     what they sustain, so whether a long lands where
                     it fits decides who waits
    mixed lengths,   the same on the 8-slot replicas
      8 slots
    uniform          every request alike (a 64-word prompt, 64 tokens
                     out), distinct prompts; 18 clients, closed loop

Every (workload, balancer) run starts fresh replicas and a fresh nginx
(nothing cached by an earlier run), warms up for a few seconds (not
measured: the first request of each tenant prefills), then measures; the
whole set repeats --reps times, interleaved, so a slow moment of the
machine lands on every balancer alike.  Reported per run, as the median
over the repetitions: time to first token (the first event of the stream,
from the request's start) p50/p90/p99, end-to-end p99, requests/s, and
each replica's prefix-cache hit rate (tokens found over tokens looked up,
ai-sim's /healthz counters over the measured phase); for mixed lengths,
time to first token by class.  Into docs/BENCHMARKS.md between the
`bench-balance` markers (make bench keeps the section), with a chart
(docs/bench-balance.svg); figures in build/bench-balance/results.json.

    scripts/bench_balance.py [--reps 2] [--seconds 20] [--warmup 5]
                             [--workloads shared,mixed,mixed-slots,uniform]
    scripts/bench_balance.py --report-only     redraw from results.json
    scripts/bench_balance.py --kv-bound [--reps 2] [--seconds 60]
                             mixed lengths on the KV-bound replicas at
                             12 to 21 requests/s, its own section
    scripts/bench_balance.py --queueing        the queues sampled, added
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import REPO, balance_queueing, doc, svg
from benchlib.host import machine, nginx_version, today
from harness.nginx import Nginx, free_port
from harness.sim import Sim

LOAD = os.path.join(REPO, "build", "agw-load")
DOC = os.path.join(REPO, "docs", "BENCHMARKS.md")
SVG = "bench-balance.svg"
RESULTS = os.path.join(REPO, "build", "bench-balance", "results.json")
KV_RESULTS = os.path.join(REPO, "build", "bench-balance", "kv-bound.json")

BEGIN = "<!-- bench-balance: begin (scripts/bench_balance.py) -->"
END = "<!-- bench-balance: end -->"
KV_BEGIN = ("<!-- bench-balance-kv: begin "
            "(scripts/bench_balance.py --kv-bound) -->")
KV_END = "<!-- bench-balance-kv: end -->"

SIM_ARGS = ["--slots", "8", "--prefill-us-per-token", "300",
            "--prefix-cache-tokens", "16384", "--ttft-ms", "20",
            "--tpot-ms", "10", "--jitter", "0.1",
            "--decode-us-per-kv-token", "1.1"]

BALANCERS = [
    ("round robin", ""),
    ("least_conn", "least_conn;"),
    ("least_tokens", "ai_gateway_balance least_tokens;"),
    ("prefix", "ai_gateway_balance prefix;"),
]

# Replicas whose batch is bounded by their KV cache, as vLLM's and TGI's
# are (a sequence starts when its prompt and max_tokens fit beside the
# running ones: --kv-cache-tokens), with room for many sequences (--slots
# 64): 3,072 tokens, about 5 long generations of 528 tokens each.  A long
# that does not fit waits at the head of the replica's FIFO queue, and
# every request behind it waits too, as in vLLM's first-come-first-served
# scheduler.
KV_TOKENS = "3072"
KV_SIM_ARGS = ["--slots", "64", "--kv-cache-tokens", KV_TOKENS] + SIM_ARGS[2:]

# the mixed workload's arrivals: below what three KV-bound replicas
# sustain (about 17 a second), where a balancer decides whether a long
# generation lands on a replica whose cache it overflows
MIXED_RATE = "17"
MIXED = ["--mix", "16:90,512:10", "--user-tokens", "16", "-c", "300",
         "--rate", MIXED_RATE]

# name: (title, agw-load arguments (open loop: --rate; closed: clients),
# the replicas' arguments)
WORKLOADS = {
    "shared": ("shared prefixes",
               ["--prompts", "prefix", "--tenants", "12",
                "--prefix-tokens", "2000", "--user-tokens", "16",
                "--max-tokens", "16", "-c", "18"], SIM_ARGS),
    "mixed": ("mixed lengths", MIXED, KV_SIM_ARGS),
    "mixed-slots": ("mixed lengths, 8 slots", MIXED, SIM_ARGS),
    "uniform": ("uniform",
                ["--user-tokens", "64", "--max-tokens", "64", "-c", "18"],
                SIM_ARGS),
}

# --kv-bound: the mixed workload on the KV-bound replicas at several rates
KV_RATES = ["12", "15", "18", "21"]

# the mixed workload's classes, by max_tokens
SHORT, LONG = "16", "512"

HTTP = """
    access_log off;
    client_body_buffer_size 64k;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_read_timeout 300s;
{upstreams}
    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /cachez {{ ai_gateway_cachez; }}
        location / {{ proxy_pass http://balanced; }}
    }}
"""

UPSTREAM = """
    upstream balanced {{
        {method}
{servers}
        zone balanced 256k;
        keepalive 64;
    }}
"""


def start_sims(ports, sim_args=None):
    sims = []
    for i, port in enumerate(ports):
        s = Sim(None, "sim-%d" % (i + 1), *(sim_args or SIM_ARGS))
        # a fixed port for every run: the prefix ring is placed by
        # address, so every run places the tenants alike
        s.extra_args += ["--port", str(port)]
        sims.append(s.start())
    return sims


def run_load(url, args, seconds, seed, label, rate=None):
    cmd = [LOAD, "--label", label, "--seed", str(seed), "--timeout", "120",
           "--duration", str(seconds), "-n", "100000000"] + args + [url]
    p = subprocess.run(cmd, capture_output=True, text=True,
                       timeout=seconds + 180)
    if p.returncode != 0:
        raise SystemExit("bench-balance: agw-load failed:\n" + p.stderr)
    return json.loads(p.stdout)


def hits(sims):
    return {s.id: s.healthz() for s in sims}


def one_run(workload, balancer, method, ports, seconds, warmup, seed,
            queueing=False, load_args=None):
    label, args, sim_args = WORKLOADS[workload]
    args = load_args or args
    sims = start_sims(ports, sim_args)
    n = None
    try:
        servers = "\n".join("        server 127.0.0.1:%d;" % p
                            for p in ports)
        n = Nginx(HTTP.format(upstreams=UPSTREAM.format(
            method=method, servers=servers)), workers=2)
        n.start()
        url = n.url + "/v1/chat/completions"
        if warmup:
            run_load(url, args, warmup, seed + 1000, "warmup")
        before = hits(sims)
        t0 = time.monotonic()
        probe = balance_queueing.Sampler(
            sims if queueing else [], n.url + "/cachez",
            int(sim_args[sim_args.index("--slots") + 1]))
        if queueing:
            with probe:
                report = run_load(url, args, seconds, seed, "%s %s"
                                  % (label, balancer))
        else:
            report = run_load(url, args, seconds, seed, "%s %s"
                              % (label, balancer))
        wall = time.monotonic() - t0
        after = hits(sims)
    finally:
        if n is not None:
            n.stop()
            n.cleanup()
        for s in sims:
            s.stop()

    replicas = {}
    for sid in sorted(after):
        q = after[sid]["prefix_query_tokens"] - before[sid]["prefix_query_tokens"]
        h = after[sid]["prefix_hit_tokens"] - before[sid]["prefix_hit_tokens"]
        replicas[sid] = {"hit_rate": h / q if q else None,
                         "requests": (report["headers"].get("X-Server-Id", {})
                                      .get(sid, 0))}
    lat = report["latency_ms"]
    out = {"workload": workload, "balancer": balancer, "wall_s": wall,
           "rps": report["rps"], "ok": report["ok"],
           "failed": report["failed"],
           "ttft": {k: lat["first_event"][k] for k in ("p50", "p90", "p99")},
           "e2e_p99": lat["end"]["p99"], "replicas": replicas,
           "classes": {}}
    if queueing:
        out["queueing"] = probe.summary()
    for cls, c in (report.get("classes") or {}).items():
        fe = c["latency_ms"]["first_event"]
        out["classes"][cls] = {"requests": c["requests"],
                               "ttft": {k: fe[k] for k in ("p50", "p90",
                                                           "p99")},
                               "e2e_p99": c["latency_ms"]["end"]["p99"]}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workloads",
                    default="shared,mixed,mixed-slots,uniform")
    ap.add_argument("--balancers", default=",".join(b for b, _ in BALANCERS))
    ap.add_argument("--results", default=RESULTS)
    ap.add_argument("--out", default=DOC)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--kv-bound", action="store_true",
                    help="least_conn and least_tokens on mixed lengths "
                    "on the KV-bound replicas, at %s requests/s (--reps "
                    "runs each, --seconds long); its own section"
                    % ", ".join(KV_RATES))
    ap.add_argument("--queueing", action="store_true",
                    help="one run of least_conn and least_tokens on mixed "
                    "lengths on 8-slot replicas, sampling the replicas' "
                    "queues and /cachez; added to the results and the "
                    "report")
    args = ap.parse_args()

    if args.queueing:
        queueing(args)
        return

    if args.kv_bound:
        kv_bound(args)
        return

    if args.report_only:
        with open(args.results) as f:
            results = json.load(f)
        write(results, args.out)
        return

    if not os.path.exists(LOAD):
        raise SystemExit("bench-balance: no %s (run: make)" % LOAD)

    workloads = args.workloads.split(",")
    wanted = args.balancers.split(",")
    balancers = [b for b in BALANCERS if b[0] in wanted]
    ports = [free_port() for _ in range(3)]
    runs, loads = [], []
    started = time.time()

    for rep in range(args.reps):
        for w in workloads:
            for name, method in balancers:
                loads.append(os.getloadavg()[0])
                r = one_run(w, name, method, ports, args.seconds,
                            args.warmup, seed=rep + 1)
                r["rep"] = rep
                runs.append(r)
                print("rep %d %-22s %-13s %6.1f req/s  ttft p50 %6.0f p90 "
                      "%6.0f p99 %6.0f  e2e p99 %6.0f  hits %s  %s" % (
                          rep + 1, WORKLOADS[w][0], name, r["rps"],
                          r["ttft"]["p50"], r["ttft"]["p90"],
                          r["ttft"]["p99"], r["e2e_p99"],
                          " ".join("%s" % ("-" if v["hit_rate"] is None
                                           else "%.2f" % v["hit_rate"])
                                   for v in r["replicas"].values()),
                          " ".join("%s:%s" % (k, v["ttft"]["p99"])
                                   for k, v in r["classes"].items())),
                      flush=True)

    results = {
        "date": today(), "machine": machine(), "nginx": nginx_version(),
        "reps": args.reps, "seconds": args.seconds, "warmup": args.warmup,
        "minutes": (time.time() - started) / 60,
        "loadavg": [min(loads), max(loads)] if loads else None,
        "sim_args": {w: WORKLOADS[w][2] for w in workloads},
        "load_args": {w: WORKLOADS[w][1] for w in workloads},
        "workloads": workloads,
        "balancers": [b for b, _ in balancers], "runs": runs,
    }
    doc.write_json(args.results, results)
    write(results, args.out)


def queueing(args):
    with open(args.results) as f:
        results = json.load(f)
    ports = [free_port() for _ in range(3)]
    wanted = args.balancers.split(",") \
        if args.balancers != ",".join(b for b, _ in BALANCERS) \
        else ["least_conn", "least_tokens"]
    q = {"loadavg": [], "seconds": args.seconds, "balancers": {}}
    for name, method in BALANCERS:
        if name not in wanted:
            continue
        q["loadavg"].append(os.getloadavg()[0])
        r = one_run("mixed-slots", name, method, ports, args.seconds,
                    args.warmup, seed=1, queueing=True)
        q["balancers"][name] = dict(r["queueing"], rps=r["rps"],
                                    short=r["classes"].get(SHORT, {}))
        print("\n".join(balance_queueing.lines({name: r["queueing"]})),
              flush=True)
    results["queueing"] = q
    doc.write_json(args.results, results)
    write(results, args.out)


def kv_bound(args):
    ports = [free_port() for _ in range(3)]
    kv = {"date": today(), "loadavg": [], "seconds": args.seconds,
          "reps": args.reps, "sim_args": KV_SIM_ARGS, "load_args": MIXED,
          "rates": KV_RATES, "runs": []}
    for rep in range(args.reps):
        for rate in KV_RATES:
            for name, method in BALANCERS:
                if name not in ("least_conn", "least_tokens"):
                    continue
                kv["loadavg"].append(os.getloadavg()[0])
                r = one_run("mixed", name, method, ports, args.seconds,
                            args.warmup, seed=rep + 1,
                            load_args=mixed_at(rate))
                r["rep"], r["rate"] = rep, rate
                kv["runs"].append(r)
                print("kv-bound rep %d %3s/s %-13s ttft p99 %6.0f  short "
                      "p99 %6.0f  long p99 %6.0f  %.1f req/s" % (
                          rep + 1, rate, name, r["ttft"]["p99"],
                          r["classes"][SHORT]["ttft"]["p99"],
                          r["classes"][LONG]["ttft"]["p99"], r["rps"]),
                      flush=True)
    doc.write_json(KV_RESULTS, kv)
    text = kv_bound_section(kv)
    print(text)
    doc.write_section(text, args.out, KV_BEGIN, KV_END)


def mixed_at(rate):
    """The mixed workload's arguments at another rate."""
    i = MIXED.index("--rate") + 1
    return MIXED[:i] + [rate] + MIXED[i + 1:]


def kv_bound_section(kv):
    out = [KV_BEGIN, "", "### Mixed lengths on KV-bound replicas, by arrival "
           "rate", "",
           "Produced by `/usr/bin/python3 scripts/bench_balance.py "
           "--kv-bound --reps %d --seconds %d` on %s (load average %s): "
           "the mixed-lengths workload on the KV-bound replicas above "
           "(`%s`) at %s requests/s, least_conn and least_tokens. TTFT "
           "p99 in ms, each run (seeds 1..%d: the same arrivals for both "
           "balancers)." % (
               kv["reps"], kv["seconds"], kv["date"],
               "..".join("%.1f" % v for v in (min(kv["loadavg"]),
                                              max(kv["loadavg"]))),
               " ".join(kv["sim_args"]), ", ".join(kv["rates"]),
               kv["reps"]),
           "",
           "| requests/s offered | balancer | short requests' TTFT p99 "
           "| long requests' TTFT p99 | TTFT p99, all | requests/s |",
           "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for rate in kv["rates"]:
        for b in ("least_conn", "least_tokens"):
            runs = [r for r in kv["runs"]
                    if r["balancer"] == b and r["rate"] == rate]
            out.append("| %s | %s | %s | %s | %s | %s |" % (
                rate, b,
                " / ".join("%.0f" % r["classes"][SHORT]["ttft"]["p99"]
                           for r in runs),
                " / ".join("%.0f" % r["classes"][LONG]["ttft"]["p99"]
                           for r in runs),
                " / ".join("%.0f" % r["ttft"]["p99"] for r in runs),
                " / ".join("%.1f" % r["rps"] for r in runs)))
    out += ["", KV_END]
    return "\n".join(out) + "\n"


def queueing_section(results):
    q = results.get("queueing")
    if not q:
        return []
    out = ["### Queueing on mixed lengths, 8 slots", "",
           "Produced by `/usr/bin/python3 scripts/bench_balance.py "
           "--queueing` (after the run above; load average %s): one run "
           "per balancer of mixed lengths on the 8-slot replicas, %d s, "
           "each replica's /healthz "
           "(`running` and `waiting`, the figures of its /metrics' "
           "`vllm:num_requests_running` and `vllm:num_requests_waiting`, "
           "and `batch_tokens`, the KV tokens its batch holds) and "
           "nginx's /cachez read every 200 ms." % (
               "..".join("%.1f" % v for v in q["loadavg"]), q["seconds"]),
           ""]
    out += balance_queueing.lines(q["balancers"])
    out.append("")
    for b, s in q["balancers"].items():
        sh = s.get("short", {}).get("ttft", {})
        if sh:
            out.append("- %s: short requests' TTFT p50 %.0f ms, p99 %.0f ms, "
                       "%.1f req/s." % (b, sh["p50"], sh["p99"], s["rps"]))
        if s.get("example"):
            out.append("  A sample where a replica queued while another "
                       "had a free slot: /healthz %s; /cachez peers %s." % (
                           ", ".join("%s running %d waiting %d batch %d "
                                     "tokens" % (x["id"], x["running"],
                                                 x["waiting"],
                                                 x["batch_tokens"])
                                     for x in s["example"]["healthz"]),
                           ", ".join("%s: %s requests, %s tokens in "
                                     "flight, last report %s" % (
                                         p["addr"], p["inflight_requests"],
                                         p["inflight_tokens"],
                                         json.dumps(p["report"]))
                                     for p in s["example"]["cachez"])
                           or "none (nginx's own balancers keep no "
                           "per-peer figures there)"))
    out.append("")
    return out


# --- the report ---------------------------------------------------------------


def median_of(runs, get):
    vals = [get(r) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summary(results):
    """{(workload, balancer): medians over the repetitions}"""
    out = {}
    for w in results["workloads"]:
        for b in results["balancers"]:
            runs = [r for r in results["runs"]
                    if r["workload"] == w and r["balancer"] == b]
            if not runs:
                continue
            s = {"rps": median_of(runs, lambda r: r["rps"]),
                 "failed": sum(r["failed"] for r in runs),
                 "e2e_p99": median_of(runs, lambda r: r["e2e_p99"])}
            for k in ("p50", "p90", "p99"):
                s[k] = median_of(runs, lambda r, k=k: r["ttft"][k])
            ids = sorted(runs[0]["replicas"])
            s["hit_rates"] = [median_of(runs, lambda r, i=i:
                                        r["replicas"][i]["hit_rate"])
                              for i in ids]
            s["requests"] = [median_of(runs, lambda r, i=i:
                                       r["replicas"][i]["requests"])
                             for i in ids]
            s["classes"] = {}
            for cls in runs[0]["classes"]:
                s["classes"][cls] = {
                    k: median_of(runs, lambda r, c=cls, k=k:
                                 r["classes"][c]["ttft"][k])
                    for k in ("p50", "p90", "p99")}
            out[(w, b)] = s
    return out


def goals(s):
    """The issue's goals, each (text, met or not, figures)."""
    out = []

    def get(w, b):
        return s.get((w, b))

    lc, px = get("shared", "least_conn"), get("shared", "prefix")
    if lc and px:
        ratio = lc["p90"] / px["p90"] if px["p90"] else float("inf")
        out.append(("shared prefixes: prefix's TTFT p90 at least 3x lower "
                    "than least_conn's, at equal or higher requests/s",
                    ratio >= 3 and px["rps"] >= lc["rps"],
                    "%.1fx lower (%.0f vs %.0f ms), %.1f vs %.1f req/s" % (
                        ratio, px["p90"], lc["p90"], px["rps"], lc["rps"])))
        rates = [h for h in px["hit_rates"] if h is not None]
        out.append(("shared prefixes: each replica's prefix-cache hit rate "
                    "above 80% with prefix",
                    len(rates) == 3 and min(rates) > 0.8,
                    ", ".join("%.1f%%" % (100 * h) for h in rates)))
    lc, lt = get("mixed", "least_conn"), get("mixed", "least_tokens")
    if lc and lt and SHORT in lc["classes"] and SHORT in lt["classes"]:
        a, b = lc["classes"][SHORT]["p99"], lt["classes"][SHORT]["p99"]
        ratio = a / b if b else float("inf")
        out.append(("mixed lengths: least_tokens's TTFT p99 of the short "
                    "requests at least 1.5x lower than least_conn's",
                    ratio >= 1.5,
                    "%.1fx lower (%.0f vs %.0f ms)" % (ratio, b, a)))
    lc, lt = get("mixed-slots", "least_conn"), get("mixed-slots", "least_tokens")
    if lc and lt and SHORT in lc["classes"] and SHORT in lt["classes"]:
        a, b = lc["classes"][SHORT]["p99"], lt["classes"][SHORT]["p99"]
        out.append(("mixed lengths on 8 slots, for comparison (no goal): "
                    "least_tokens's TTFT p99 of the short requests",
                    None, "%.0f vs least_conn's %.0f ms" % (b, a)))
    lc = get("uniform", "least_conn")
    for b in ("least_tokens", "prefix"):
        x = get("uniform", b)
        if lc and x:
            ratio = x["rps"] / lc["rps"]
            out.append(("uniform: %s no more than 5%% below least_conn in "
                        "requests/s" % b, ratio >= 0.95,
                        "%.1f vs %.1f req/s (%+.1f%%)" % (
                            x["rps"], lc["rps"], 100 * (ratio - 1))))
    return out


def per_rep(results):
    """Each repetition's short-request TTFT p99 on mixed lengths, least_conn
    against least_tokens: how much the median of three hides."""
    pairs = []
    for rep in range(results["reps"]):
        x = {r["balancer"]: r for r in results["runs"]
             if r["workload"] == "mixed" and r["rep"] == rep}
        if "least_conn" in x and "least_tokens" in x:
            a = x["least_conn"]["classes"][SHORT]["ttft"]["p99"]
            b = x["least_tokens"]["classes"][SHORT]["ttft"]["p99"]
            pairs.append("%.0f vs %.0f ms (%.1fx)" % (
                b, a, a / b if b else float("inf")))
    if not pairs:
        return []
    return [("mixed lengths, each repetition: least_tokens's short TTFT p99 "
             "against least_conn's", None, "; ".join(pairs))]


def fmt(v, spec="%.0f"):
    return "-" if v is None else spec % v


def model_note(sim_args):
    """What the batch-dependent step of the replicas stands for, when the
    run used it."""
    if "--decode-us-per-kv-token" not in sim_args:
        return []
    u = float(sim_args[sim_args.index("--decode-us-per-kv-token") + 1])
    tpot = float(sim_args[sim_args.index("--tpot-ms") + 1])
    cache = int(sim_args[sim_args.index("--prefix-cache-tokens") + 1])
    full = (tpot + cache * u / 1000) / tpot
    return ["The replicas' steps depend on their batch, as a GPU's do: a "
            "decode step reads the weights and the KV cache of every token "
            "the running sequences hold, so with `--decode-us-per-kv-token "
            "%g` each step (the one that makes a first token included) "
            "takes %g us longer per token held, prompts and generated "
            "tokens; with the replica's %d-token cache full a step takes "
            "%.1fx an idle one. That is the ratio of Llama-2-13B in fp16 on "
            "an 80 GB H100 (3.35 TB/s): 26 GB of weights (7.8 ms a step), "
            "~46 GB of KV cache at 800 KiB a token (+13.7 ms when full), "
            "scaled to this replica's cache (backends/ai-sim/README.md, "
            "\"The batch's KV cache\")." % (u, u, cache, full), "",
            "Two batch limits. For shared prefixes and uniform, and for "
            "mixed lengths on 8 slots, 8 sequences decode at once and the "
            "rest queue (`--slots 8`, as TGI's `--max-batch-size` or "
            "llama.cpp's `-np`), and `--kv-cache-tokens` stays off (ai-sim "
            "would count a shared system prompt once per sequence, where "
            "vLLM holds its blocks once). For mixed lengths the replicas "
            "are bounded by their KV cache instead, as vLLM's batches are: "
            "a sequence starts when its prompt and max_tokens fit in the "
            "replica's %s tokens beside the running ones (`--slots 64 "
            "--kv-cache-tokens %s`, about five long generations), and a "
            "long that does not fit waits at the head of the FIFO queue, "
            "every request behind it waiting too, as in vLLM's "
            "first-come-first-served scheduler. On 8 slots a long "
            "generation takes a slot as a short one does, so the count of "
            "connections measures a replica's load; in a KV cache it takes "
            "33 times a short one's room, and tokens in flight measure it."
            % (KV_TOKENS, KV_TOKENS), ""]


def sim_args_of(results, w):
    """The replicas' arguments of workload w in a run's results (a run
    before there were two kinds of replicas kept one list)."""
    a = results["sim_args"]
    return a if isinstance(a, list) else a.get(w, SIM_ARGS)


def section(results):
    s = summary(results)
    cmd = "make bench-balance"
    if results["reps"] != 2:
        cmd += ' BENCH_BALANCE_ARGS="--reps %d"' % results["reps"]
    lines = [BEGIN, "", "## Balancing inference replicas", "",
             "Produced by `%s` (scripts/bench_balance.py; the " % cmd +
             "client is build/agw-load) on %s: %s; %s. Three ai-sim replicas "
             "(`%s` unless a workload says otherwise); nginx with two workers, each balancer its own upstream "
             "with `zone` and `keepalive`; streamed chats. Each "
             "(workload, balancer) run starts fresh replicas and nginx, "
             "warms up %d s, then measures %d s; %d interleaved repetitions, "
             "medians shown. TTFT is the stream's first event from the "
             "request's start. Hit rate: each replica's prefix-cache tokens "
             "found over looked up during the measured phase (sim-1, sim-2, "
             "sim-3). Load average of the machine when the runs started: "
             "%.1f..%.1f on %d cores (other work shares them; what the "
             "requests wait for is the replicas' simulated time)." % (
                 results["date"], results["machine"], results["nginx"],
                 " ".join(sim_args_of(results, "shared")), results["warmup"],
                 results["seconds"], results["reps"],
                 results["loadavg"][0], results["loadavg"][1],
                 os.cpu_count()),
             ""]
    lines += model_note(SIM_ARGS)
    for w in results["workloads"]:
        label = WORKLOADS[w][0]
        wargs = results.get("load_args", {}).get(w, WORKLOADS[w][1])
        mixed = w.startswith("mixed")
        lines += ["### %s" % label.capitalize(), "",
                  "`agw-load %s`" % " ".join(wargs), "",
                  "Replicas: `ai-sim %s`" % " ".join(sim_args_of(results, w)),
                  "",
                  "| balancer | req/s | TTFT p50 ms | p90 | p99 "
                  "| end-to-end p99 ms | failed | requests per replica "
                  "| prefix-cache hit rate per replica |" + (
                      " short TTFT p50 / p99 | long TTFT p99 |"
                      if mixed else ""),
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                  "| ---: |" + (" ---: | ---: |" if mixed else "")]
        for b in results["balancers"]:
            x = s.get((w, b))
            if not x:
                continue
            row = "| %s | %.1f | %s | %s | %s | %s | %d | %s | %s |" % (
                b, x["rps"], fmt(x["p50"]), fmt(x["p90"]), fmt(x["p99"]),
                fmt(x["e2e_p99"]), x["failed"],
                " / ".join(fmt(v) for v in x["requests"]),
                " / ".join(fmt(None if v is None else 100 * v, "%.0f%%")
                           for v in x["hit_rates"]))
            if mixed:
                sh = x["classes"].get(SHORT, {})
                lg = x["classes"].get(LONG, {})
                row += " %s / %s | %s |" % (fmt(sh.get("p50")),
                                            fmt(sh.get("p99")),
                                            fmt(lg.get("p99")))
            lines.append(row)
        lines.append("")
    lines += ["Goals (issue 22), measured in this run:", ""]
    for text, met, figures in goals(s) + per_rep(results):
        if met is None:
            lines.append("- %s: %s." % (text, figures))
        else:
            lines.append("- %s: **%s**, %s." % (text, "met" if met else
                                               "not met", figures))
    lines.append("")
    lines += queueing_section(results)
    lines += ["![TTFT p90 and p99 by balancer and workload](%s)" % SVG,
              "", END]
    return "\n".join(lines) + "\n"


def draw(results, outdir):
    plt = svg.pyplot("ai-gateway-bench-balance")

    s = summary(results)
    ws = results["workloads"]
    bs = results["balancers"]
    fig, axes = plt.subplots(1, len(ws), figsize=(4.2 * len(ws), 4.4))
    if len(ws) == 1:
        axes = [axes]
    width = 0.38
    for ax, w in zip(axes, ws):
        xs = range(len(bs))
        if w.startswith("mixed"):
            p90 = [s[(w, b)]["classes"].get(SHORT, {}).get("p90") or 0
                   for b in bs]
            p99 = [s[(w, b)]["classes"].get(SHORT, {}).get("p99") or 0
                   for b in bs]
            title = WORKLOADS[w][0] + ": short requests"
        else:
            p90 = [s[(w, b)]["p90"] for b in bs]
            p99 = [s[(w, b)]["p99"] for b in bs]
            title = WORKLOADS[w][0]
        ax.bar([x - width / 2 for x in xs], p90, width, label="TTFT p90")
        ax.bar([x + width / 2 for x in xs], p99, width, label="TTFT p99")
        for x, b in zip(xs, bs):
            ax.annotate("%.0f/s" % s[(w, b)]["rps"], (x, 0),
                        xytext=(0, -28), textcoords="offset points",
                        ha="center", fontsize=8, color="#555")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(bs, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("ms")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Time to first token by balancer (requests/s under the "
                 "bars)", fontsize=10)
    fig.tight_layout()
    return svg.save(plt, fig, os.path.join(outdir, SVG))


def write(results, path):
    text = section(results)
    print(text)
    try:
        draw(results, os.path.dirname(os.path.abspath(path)))
    except ImportError:
        print("bench-balance: no chart: python3-matplotlib missing "
              "(scripts/deps.sh bench)", file=sys.stderr)
    doc.write_section(text, path, BEGIN, END)


if __name__ == "__main__":
    main()
