"""SVG charts of a `make bench` run (scripts/bench.py writes the results as
JSON next to its tables; `bench.py --charts-only` redraws from that file).

    rps.svg    requests/s per row: the median as a bar, the min..max spread
               of the repetitions as an error bar
    peers.svg  each row against its stock nginx peer: requests/s ratio and
               worker-CPU-per-request ratio (1.00 = the same as the peer)

Needs python3-matplotlib (scripts/deps.sh bench).
"""

import json
import os

from benchlib import svg

RPS_SVG = "bench-rps.svg"
PEERS_SVG = "bench-peers.svg"


def load(path):
    with open(path) as f:
        return json.load(f)


def draw(results, outdir):
    """results: {"rows": [{"name", "ceiling", "peer"}...], "med": {name:
    {"rps", "lo", "hi", "cpu", ...}}}.  Returns the paths written."""
    plt = svg.pyplot("ai-gateway-bench")
    import matplotlib.ticker

    os.makedirs(outdir, exist_ok=True)
    rows = [r for r in results["rows"] if r["name"] in results["med"]]
    med = results["med"]
    written = []

    names = [r["name"] for r in rows]
    rps = [med[n]["rps"] for n in names]
    err = [[med[n]["rps"] - med[n]["lo"] for n in names],
           [med[n]["hi"] - med[n]["rps"] for n in names]]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(names) + 1.4))
    y = list(range(len(names)))[::-1]
    ax.barh(y, rps, xerr=err, color="#4878a8", ecolor="#222222", capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("requests/s (median; bar: min..max of the repetitions)")
    ax.set_title("Requests/s per row")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    written.append(svg.save(plt, fig, os.path.join(outdir, RPS_SVG)))

    peered = [r for r in rows if r.get("peer") and r["peer"] in med]
    if peered:
        labels = ["%s\nvs %s" % (r["name"], r["peer"]) for r in peered]
        rps_ratio = [med[r["name"]]["rps"] / med[r["peer"]]["rps"]
                     for r in peered]
        cpu_ratio = [med[r["name"]]["cpu"] / med[r["peer"]]["cpu"]
                     if med[r["peer"]]["cpu"] and med[r["name"]]["cpu"]
                     else 0 for r in peered]
        fig, ax = plt.subplots(figsize=(9, 0.75 * len(peered) + 1.8))
        y = list(range(len(peered)))[::-1]
        h = 0.38
        ax.barh([v + h / 2 for v in y], rps_ratio, height=h,
                color="#4878a8", label="requests/s ratio")
        ax.barh([v - h / 2 for v in y], cpu_ratio, height=h,
                color="#d08040", label="worker CPU per request ratio")
        ax.axvline(1.0, color="#222222", linewidth=1)
        # ratios: 0.5 and 2 are as far from 1 as each other
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _: "%g" % v))
        for v, r, c in zip(y, rps_ratio, cpu_ratio):
            ax.text(r, v + h / 2, " %.2f" % r, va="center", fontsize=7)
            if c:
                ax.text(c, v - h / 2, " %.2f" % c, va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("ratio to the peer (1.00 = the same; CPU: below 1 is cheaper)")
        ax.set_title("Each row against its peer (stock nginx where there is one)")
        ax.legend(fontsize=8, loc="upper center", ncol=2,
                  bbox_to_anchor=(0.5, -0.3 / (0.3 * len(peered) + 0.5)))
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        written.append(svg.save(plt, fig, os.path.join(outdir, PEERS_SVG)))
    return written


def markdown():
    """The lines BENCHMARKS.md embeds the charts with (same directory)."""
    return ["![requests/s per row, median and min..max](%s)" % RPS_SVG, "",
            "![each row against its stock nginx peer](%s)" % PEERS_SVG, ""]
