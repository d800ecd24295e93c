#!/usr/bin/python3
"""Turn k6 end-of-test summaries into a Markdown report.

    scripts/k6-report.py [--strict] SUMMARY.json [SUMMARY.json ...] > report.md

Each SUMMARY.json is the `data` object k6 hands to handleSummary(), as the
scenarios in k6/ write it (k6/lib/common.js: $SUMMARY_DIR/<name>-summary.json).
Per file: the thresholds with their verdicts and the observed figure, the
checks, and the metrics (trends in one table, counters/rates/gauges in
another).  A first table sums up every file.

--strict: exit 1 when a threshold failed (the report is printed anyway).
Standard library only.
"""

import argparse
import json
import os
import re
import sys

TREND_COLS = ["avg", "min", "med", "p(90)", "p(95)", "p(99)", "max"]

# "p(95)<500", "rate>0.8", "count>=10", "avg < 200"
THRESHOLD_RE = re.compile(
    r"^\s*(?P<agg>p\(\d+(?:\.\d+)?\)|avg|min|max|med|rate|count|value)\s*"
    r"(?P<op><=|>=|===|==|!=|<|>)\s*(?P<limit>-?[\d.]+)\s*$")


class ReportError(Exception):
    pass


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ReportError("%s: %s" % (path, e.strerror)) from e
    except ValueError as e:
        raise ReportError("%s: not JSON: %s" % (path, e)) from e
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise ReportError("%s: not a k6 summary (no \"metrics\" object)" % path)
    return data


def name_of(path):
    base = os.path.basename(path)
    for suffix in ("-summary.json", ".json"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def md(text):
    """Escape a cell for a Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def num(value, contains=None):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-" if value is None else md(value)
    if contains == "time":
        return "%.2f ms" % value
    if contains == "data":
        return "%.1f kB" % (value / 1024.0)
    if float(value).is_integer():
        return "%d" % value
    return "%.4g" % value


def thresholds(data):
    """[(metric, expression, ok, observed text)] in metric order."""
    rows = []
    for mname in sorted(data["metrics"]):
        m = data["metrics"][mname]
        values = m.get("values") or {}
        for expr, verdict in sorted((m.get("thresholds") or {}).items()):
            ok = bool(verdict.get("ok")) if isinstance(verdict, dict) else bool(verdict)
            observed = "-"
            match = THRESHOLD_RE.match(expr)
            if match and match.group("agg") in values:
                agg = match.group("agg")
                contains = m.get("contains") if agg != "rate" else None
                observed = "%s = %s" % (agg, num(values[agg], contains))
            rows.append((mname, expr, ok, observed))
    return rows


def checks(group, out=None):
    out = [] if out is None else out
    if not isinstance(group, dict):
        return out
    for c in group.get("checks") or []:
        path = c.get("path") or c.get("name")
        out.append((c.get("name", path), c.get("passes", 0), c.get("fails", 0)))
    for g in group.get("groups") or []:
        checks(g, out)
    return out


def file_section(name, path, data):
    lines = []
    rows = thresholds(data)
    failed = [r for r in rows if not r[2]]
    state = data.get("state") or {}
    duration = state.get("testRunDurationMs")

    lines.append("## %s" % name)
    lines.append("")
    meta = ["source `%s`" % path]
    if isinstance(duration, (int, float)):
        meta.append("duration %.1f s" % (duration / 1000.0))
    meta.append("thresholds: **%s** (%d of %d passed)"
                % ("PASS" if not failed else "FAIL", len(rows) - len(failed), len(rows)))
    lines.append(", ".join(meta))
    lines.append("")

    if rows:
        lines.append("| threshold | metric | observed | result |")
        lines.append("| --- | --- | --- | --- |")
        for mname, expr, ok, observed in rows:
            lines.append("| `%s` | %s | %s | %s |"
                         % (md(expr), md(mname), md(observed), "pass" if ok else "**FAIL**"))
        lines.append("")

    cs = checks(data.get("root_group"))
    if cs:
        lines.append("| check | passes | fails |")
        lines.append("| --- | ---: | ---: |")
        for cname, passes, fails in cs:
            lines.append("| %s | %d | %s |" % (md(cname), passes, fails if not fails else "**%d**" % fails))
        lines.append("")

    metrics = data["metrics"]
    trends = [n for n in sorted(metrics) if metrics[n].get("type") == "trend"]
    others = [n for n in sorted(metrics) if metrics[n].get("type") != "trend"]

    if trends:
        cols = [c for c in TREND_COLS
                if any(c in (metrics[n].get("values") or {}) for n in trends)]
        lines.append("| trend | " + " | ".join(cols) + " |")
        lines.append("| --- |" + " ---: |" * len(cols))
        for n in trends:
            v = metrics[n].get("values") or {}
            contains = metrics[n].get("contains")
            lines.append("| %s | %s |" % (md(n), " | ".join(num(v.get(c), contains) for c in cols)))
        lines.append("")

    if others:
        lines.append("| metric | type | value |")
        lines.append("| --- | --- | --- |")
        for n in others:
            m = metrics[n]
            v = m.get("values") or {}
            t = m.get("type", "?")
            if t == "rate":
                total = (v.get("passes") or 0) + (v.get("fails") or 0)
                value = "%.2f%% (%s of %s)" % (100.0 * (v.get("rate") or 0), num(v.get("passes")), num(total))
            elif t == "counter":
                value = "%s (%s/s)" % (num(v.get("count"), m.get("contains")), num(v.get("rate")))
            else:
                value = ", ".join("%s %s" % (k, num(x, m.get("contains"))) for k, x in sorted(v.items()))
            lines.append("| %s | %s | %s |" % (md(n), t, md(value)))
        lines.append("")

    return lines, len(rows), len(failed)


def report(paths):
    loaded = [(name_of(p), p, load(p)) for p in paths]
    sections = []
    overview = ["# k6 results", "",
                "| scenario | requests | failed requests | thresholds | result |",
                "| --- | ---: | ---: | ---: | --- |"]
    any_failed = False
    for name, path, data in loaded:
        lines, total, failed = file_section(name, path, data)
        sections.extend(lines)
        any_failed = any_failed or failed > 0
        m = data["metrics"]
        reqs = (m.get("http_reqs") or {}).get("values", {}).get("count")
        fail_rate = (m.get("http_req_failed") or {}).get("values", {}).get("rate")
        overview.append("| %s | %s | %s | %d/%d | %s |" % (
            md(name), num(reqs),
            "-" if fail_rate is None else "%.2f%%" % (100.0 * fail_rate),
            total - failed, total, "PASS" if not failed else "**FAIL**"))
    overview.append("")
    return "\n".join(overview + sections).rstrip() + "\n", any_failed


def main(argv):
    ap = argparse.ArgumentParser(description="k6 summary JSON -> Markdown")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 when any threshold failed")
    ap.add_argument("summaries", nargs="+", metavar="SUMMARY.json")
    args = ap.parse_args(argv)
    try:
        text, failed = report(args.summaries)
    except ReportError as e:
        print("k6-report: %s" % e, file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
