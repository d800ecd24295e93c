"""The section "Ten thousand streams" of docs/BENCHMARKS.md and its chart,
from the results of scripts/bench_streams.py (build/bench/streams.json;
`bench_streams.py --charts-only` redraws from that file).

    bench-streams.svg  the nginx workers' heap per open stream, and the
                       first event's p99, per location and N

The section sits between two markers; the rest of BENCHMARKS.md (what
`make bench` writes) is left as it is.  Needs python3-matplotlib for the
chart (scripts/deps.sh bench).
"""

import os
import statistics

from benchlib import svg

SVG = "bench-streams.svg"
BEGIN = "<!-- bench-streams: begin (scripts/bench_streams.py) -->"
END = "<!-- bench-streams: end -->"


def total(snap, key):
    return sum(s.get(key, 0) for s in snap.values())


def per_stream_kib(res, n_streams, at="all_open"):
    """The workers' RssAnon over idle, per stream: when all N were open
    (None if they never all were at once), or at its peak during the run
    over the most streams open at once.  None for the direct row."""
    mem = res.get("memory")
    if not mem or at not in mem:
        return None
    streams = n_streams if at == "all_open" \
        else max(1, res["report"]["open"]["peak"])
    return (total(mem[at], "RssAnon") - total(res["idle"], "RssAnon")) \
        / streams


def cpu_wait(res, who):
    """The largest share of the run any of who's processes (workers,
    replicas) spent runnable but waiting for a CPU."""
    waits = res["report"].get("cpu_wait", {})
    got = [waits[str(pid)] for pid in res.get(who, []) if str(pid) in waits]
    return max(got) if got else None


def shm_kib(res, at="peak"):
    """Shared pages touched: the most of any worker (they map the same
    zones, so a sum would count a page once per worker)."""
    mem = res.get("memory")
    if not mem:
        return None
    return max(s.get("RssShmem", 0) for s in mem[at].values()) - \
        max(s.get("RssShmem", 0) for s in res["idle"].values())


def first_event(res, q):
    return res["report"]["latency_ms"]["first_event"].get(q)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summary(reps, n_streams):
    """One row's figures over its repetitions: medians, and the range of
    the first event's p99."""
    p99 = [first_event(r, "p99") for r in reps]
    end = [r["report"]["latency_ms"]["end"].get("p50") for r in reps]
    last = reps[-1]
    mem = last.get("memory")
    return {
        "ok": min(r["report"]["ok"] for r in reps),
        "failed": max(r["report"]["failed"] for r in reps),
        "5xx": max(sum(v for k, v in r["report"]["status"].items()
                       if k.startswith("5")) for r in reps),
        "x_cache": last["report"]["headers"].get("X-Cache", {}),
        "p50": median(first_event(r, "p50") for r in reps),
        "p99": median(p99),
        "p99_range": (min(v for v in p99 if v is not None),
                      max(v for v in p99 if v is not None))
        if any(v is not None for v in p99) else None,
        "end_p50": median(end),
        "heap_open": median(per_stream_kib(r, n_streams) for r in reps),
        "heap_peak": median(per_stream_kib(r, n_streams, "peak")
                            for r in reps),
        "shm": median(shm_kib(r) for r in reps),
        "fds": [s.get("fds", 0) for s in mem["all_open"].values()]
        if mem and "all_open" in mem else None,
        "lag_p99": max(r["report"]["client"]["loop_lag_ms"]["p99"]
                       for r in reps),
        # the share of the run each was runnable but off the CPU
        "wait_client": max(r["report"]["client"].get("runqueue_wait_s", 0)
                           / max(r["report"]["wall_s"], 1e-9) for r in reps),
        "wait_workers": median(cpu_wait(r, "workers") for r in reps),
        "wait_replicas": median(cpu_wait(r, "replicas") for r in reps),
        "loadavg": [r.get("loadavg") for r in reps],
        "log": merge_logs(reps),
        "behind_leader": [r["behind_leader"] for r in reps
                          if r.get("behind_leader")],
    }


# rows whose first event waits for a replica's first token as direct's
# does: the others (a replay, a waiter joining a generation under way)
# are not comparable with it
UPSTREAM_ROWS = ("plain", "limits", "miss", "shipped")


def merge_logs(reps):
    out = {}
    for r in reps:
        for msg, count in (r.get("log") or {}).items():
            out[msg] = out.get(msg, 0) + count
    return out


def pct(v):
    return "-" if v is None else "%.0f%%" % (v * 100)


def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


def cache_counts(counts):
    return " ".join("%s %d" % (k, v) for k, v in sorted(counts.items())
                    if k != "-") or "-"


def labels(results):
    return {name: label for name, label, _ in results["rows"]}


def draw(results, outdir):
    """The chart; returns its path."""
    plt = svg.pyplot("ai-gateway-bench-streams")

    ns = sorted(results["runs"], key=int)
    rows = results["rows"]
    # not the HIT row: its replays do not stay open (see the section)
    proxied = [r for r in rows if r[2] and r[0] != "hit"]
    colors = ["#4878a8", "#d08040", "#60a060", "#b04848", "#8868b0"]
    width = 0.8 / max(1, len(ns))
    fig, (mem_ax, lat_ax) = plt.subplots(1, 2, figsize=(11, 4.8))

    for ax, shown, value, title, ylabel, log in (
            (mem_ax, proxied,
             lambda s: s["heap_peak"], "nginx workers' heap per open stream",
             "KiB per stream (RssAnon at its peak)", False),
            # a log scale: a HIT's few ms and a starved run's seconds
            (lat_ax, rows, lambda s: s["p99"], "time to first event, p99",
             "ms from the request (first token: %d ms)"
             % results["ttft_ms"], True)):
        if log:
            ax.set_yscale("log")
        for k, n in enumerate(ns):
            run = results["runs"][n]["rows"]
            xs = [i + k * width for i in range(len(shown))]
            vals = [value(summary(run[r[0]], int(n))) or 0
                    if run.get(r[0]) else 0 for r in shown]
            if log:
                vals = [max(v, 0.1) for v in vals]
            ax.bar(xs, vals, width, label="N = %s" % format(int(n), ","),
                   color=colors[k % len(colors)])
            for x, v in zip(xs, vals):
                ax.text(x, v, "%.0f" % v, ha="center", va="bottom",
                        fontsize=6)
        ax.set_xticks([i + width * (len(ns) - 1) / 2
                       for i in range(len(shown))])
        ax.set_xticklabels([r[1].replace(" (", "\n(") for r in shown],
                           fontsize=7, rotation=20, ha="right")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    fig.tight_layout()
    os.makedirs(outdir, exist_ok=True)
    return svg.save(plt, fig, os.path.join(outdir, SVG))


def ceiling_lines(results):
    ceil = results.get("ceiling")
    if not ceil:
        return []
    lines = [
        "The client is not the bottleneck. agw-load at full speed (%d "
        "connections, keep-alive, 40-token streams, ai-sim without "
        "pacing, %d s each): against the replicas, through nginx to them, "
        "and against nginx sending the same stream stored as a file, "
        "where nothing upstream holds the client back. Its CPU, and its "
        "event loop's lag (how late a 10 ms timer fires):" % (
            results["ceiling_connections"], results["ceiling_seconds"]),
        "",
        "| target | streams/s | events/s | client CPU | client CPU µs per "
        "stream | loop lag p99 / max ms | nginx workers' CPU s "
        "| replicas' CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("direct", "ai-sim replicas, direct"),
                       ("nginx", "nginx plain proxy to them"),
                       ("static", "nginx, the stream as a static file")):
        r = ceil.get(key)
        if not r:
            continue
        c = r["client"]
        lines.append("| %s | %.0f | %.0f | %.0f%% | %.0f | %d / %.0f "
                     "| %.1f | %.1f |" % (
                         label, r["rps"], r["events_per_s"],
                         c["cpu_percent"],
                         c["cpu_s"] / r["ok"] * 1e6 if r["ok"] else 0,
                         c["loop_lag_ms"]["p99"], c["loop_lag_ms"]["max"],
                         r["nginx_cpu_s"], r["sim_cpu_s"]))
    lines.append("")
    return lines


def run_lines(results, n):
    run = results["runs"][n]
    n_int = int(n)
    rows = {name: summary(reps, n_int) for name, reps in run["rows"].items()
            if reps}
    d99 = rows["direct"]["p99"] if "direct" in rows else None
    reps = max(len(r) for r in run["rows"].values())
    lines = [
        "**N = %s** (%d tokens, one every %d ms, %s new connections a "
        "second; %s):" % (
            format(n_int, ","), run["tokens"], run["tpot_ms"],
            format(run.get("connect_rate", results["connect_rate"]), ","),
            "median of %d runs, p99's range in brackets" % reps
            if reps > 1 else "one run"),
        "",
        "| location | ok | 5xx | failed | X-Cache | first event p50 ms "
        "| first event p99 ms | p99 vs direct | end p50 s | heap per "
        "stream, all open / peak KiB | shm MiB | workers' fds | waiting "
        "for a CPU: workers / replicas / client |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    for name, label, _ in results["rows"]:
        s = rows.get(name)
        if s is None:
            continue
        p99 = fmt(s["p99"])
        if reps > 1 and s["p99_range"]:
            p99 += " (%.0f..%.0f)" % s["p99_range"]
        lines.append(
            "| %s | %d | %d | %d | %s | %s | %s | %s | %s | %s / %s | %s "
            "| %s | %s / %s / %s |" % (
                label, s["ok"], s["5xx"], s["failed"],
                cache_counts(s["x_cache"]), fmt(s["p50"]), p99,
                "-" if name not in UPSTREAM_ROWS or d99 is None
                or s["p99"] is None else "%+.1f" % (s["p99"] - d99),
                fmt(s["end_p50"] / 1000 if s["end_p50"] else None, "%.2f"),
                fmt(s["heap_open"]), fmt(s["heap_peak"]),
                fmt(s["shm"] / 1024 if s["shm"] is not None else None),
                " + ".join(str(f) for f in s["fds"]) if s["fds"] else "-",
                pct(s["wait_workers"]), pct(s["wait_replicas"]),
                pct(s["wait_client"])))
    lines.append("")
    lines.append("`p99 vs direct` only where each request waits for a "
                 "replica's first token as direct's do: a HIT replays at "
                 "once, and a waiter that joins a generation already under "
                 "way gets the events so far at once. A HIT's whole answer "
                 "is written at once and fits in the socket buffers, so no "
                 "HIT stream stays open in nginx: its heap figure is that "
                 "of finished requests.")
    lines.append("")

    behind = rows.get("coalesced", {}).get("behind_leader")
    if behind:
        lines.append(
            "Coalesced waiters: each waiter's first event behind the first "
            "event of the request that went upstream for its prompt (or "
            "behind its own start, for a waiter that came after it): p50 "
            "%s ms, p99 %s ms, max %s ms (%d waiters%s)." % (
                fmt(median(b["p50"] for b in behind), "%.2f"),
                fmt(median(b["p99"] for b in behind), "%.2f"),
                fmt(max(b["max"] for b in behind), "%.2f"),
                behind[-1]["n"],
                ", median of %d runs" % len(behind)
                if len(behind) > 1 else ""))
        lines.append("")

    logs = {}
    for name, s in rows.items():
        for msg, count in s["log"].items():
            logs.setdefault(msg, []).append("%s: %d" % (
                labels(results)[name], count))
    if logs:
        lines.append("nginx's error log at N = %s (lines at `error` and "
                     "above, all runs):" % format(n_int, ","))
        lines.append("")
        for msg, where in sorted(logs.items()):
            lines.append("- `%s`: %s" % (msg, "; ".join(where)))
        lines.append("")
    else:
        lines += ["nginx's error log at N = %s: no line at `error` or "
                  "above." % format(n_int, ","), ""]
    return lines


def findings(results):
    """The figures the issue asks for, as sentences from this run."""
    out = []
    for n in sorted(results["runs"], key=int):
        run = results["runs"][n]["rows"]
        n_int = int(n)
        s = {name: summary(reps, n_int) for name, reps in run.items()
             if reps}
        plain = s.get("plain", {}).get("heap_peak")
        # not the HIT row: its replays do not stay open
        for name in ("limits", "miss", "shipped", "coalesced"):
            other = s.get(name, {}).get("heap_peak")
            if plain is not None and other is not None:
                out.append("- N = %s, %s: %.1f KiB per open stream "
                           "against %.1f on the plain proxy (%+.1f KiB)."
                           % (format(n_int, ","), labels(results)[name],
                              other, plain, other - plain))
        d99 = s.get("direct", {}).get("p99")
        if d99 is not None:
            worst = [(v["p99"] - d99, name) for name, v in s.items()
                     if name in UPSTREAM_ROWS and v["p99"] is not None]
            if worst:
                w, name = max(worst)
                busy = max(v["wait_workers"] or 0 for v in s.values())
                out.append("- N = %s: first event p99 through nginx, at "
                           "worst %+.1f ms from direct (%s)%s." % (
                               format(n_int, ","), w,
                               labels(results)[name],
                               "; the workers waited for a CPU up to %.0f%% "
                               "of a run: the run queue, not a verdict on "
                               "the gateway" % (busy * 100)
                               if busy > 0.2 else ""))
    if not out:
        return []
    return ["Read from this run (the issue's goals: a cached stream at "
            "most 16 KiB more than a plain one, whatever its length; at "
            "10,000 streams the first event within 5 ms p99 of direct):",
            ""] + out + [""]


def section(results):
    loads = [r.get("loadavg") for run in results["runs"].values()
             for reps in run["rows"].values() for r in reps
             if r.get("loadavg") is not None]
    lines = [BEGIN, "", "## Ten thousand streams", ""]
    lines.append(
        "Produced by `make bench-streams` (scripts/bench_streams.py; the "
        "client is build/agw-load, scripts/load/README.md) on %s: %s; %s. "
        "N streamed chats opened at once, one connection each (at a "
        "bounded rate of new connections: a burst beyond the listen "
        "backlog loses SYNs), then read to the end; %d ai-sim replicas "
        "behind `least_conn`, first token after %d ms, no jitter; nginx "
        "with two workers, a fresh one for each location and run. `first "
        "event` is from the request's start (connecting included) to its "
        "first `data:` line. `heap per stream`: the two workers' RssAnon "
        "(heap and pools) over the same workers idle: when all N had "
        "their headers (if that came before any stream ended) divided by "
        "N, and at its peak during the run divided by the most streams "
        "open at once. `shm`: the shared memory (cache and flight zones, "
        "one copy for all workers) the busiest worker touched. `workers' "
        "fds`: descriptors each worker held when all N were open. "
        "`waiting for a CPU`: the share of the run the busiest worker, "
        "the busiest replica and the client were runnable while another "
        "process had the CPU (/proc/PID/schedstat): where it is high, "
        "time to first event measures this machine's run queue, not the "
        "gateway.%s" % (
            results["date"], results["machine"], results.get("nginx", ""),
            results.get("replicas", 3),
            results["ttft_ms"],
            " The machine's load average when the rows started: "
            "%.1f..%.1f (other work shares its 2 cores)."
            % (min(loads), max(loads)) if loads else ""))
    lines.append("")
    if results.get("module"):
        lines += ["The module as of commit %s (the last change to "
                  "ngx_ai_gateway_module/)." % results["module"], ""]
    if results.get("note"):
        lines += [results["note"], ""]
    lines += ceiling_lines(results)
    for n in sorted(results["runs"], key=int):
        lines += run_lines(results, n)
    lines += findings(results)
    if results["runs"]:
        lines += ["![heap per open stream and first event p99, per "
                  "location and N](%s)" % SVG, ""]
    lines.append(END)
    return "\n".join(lines) + "\n"
