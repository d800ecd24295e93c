"""wrk runs: requests/s, latency percentiles and the worker's CPU time
per request, one URL at a time or several at once."""

import json
import re
import subprocess
import threading

from benchlib.host import cpu_seconds

# url: the wrk Lua script every run on that url uses when its caller
# names none (the main table's rows named ", POST": main_rows.render)
URL_SCRIPTS = {}


def parse_ms(text):
    """wrk prints latencies as 812.00us, 1.20ms, 2.01s or 1.00m"""
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if m is None:
        raise SystemExit("bench: cannot read wrk's latency %r" % text)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
    return float(m.group(1)) * scale[m.group(2)]


def post_script(path, body):
    """A wrk Lua script at path that POSTs body as JSON; returns path."""
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = %s\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                % json.dumps(body))
    return path


def wrk(url, seconds, connections, script=None):
    """wrk -t1 on url: (requests/s, requests, p50 ms, p99 ms, non-2xx/3xx).
    script: a wrk Lua file (the POSTs), else url's in URL_SCRIPTS."""
    script = script or URL_SCRIPTS.get(url)
    out = subprocess.run(["wrk", "-t1", "-c%d" % connections,
                          "-d%ds" % seconds, "--latency"]
                         + (["-s", script] if script else []) + [url],
                         capture_output=True, text=True, check=True).stdout
    if "Latency Distribution" not in out:
        raise SystemExit("bench: wrk %s failed:\n%s" % (url, out))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = parse_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = parse_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, p50, p99, int(non2xx.group(1)) if non2xx else 0


def wrk_with_cpu(url, pid, seconds, connections, script=None):
    """wrk's figures for url, and the worker pid's CPU µs per request."""
    before = cpu_seconds(pid)
    rps, total, p50, p99, _ = wrk(url, seconds, connections, script)
    cpu = cpu_seconds(pid) - before
    return rps, p50, p99, cpu / total * 1e6 if total else 0


def run_at_once(jobs, seconds, connections, script=None):
    """wrk on every (url, worker pid) of jobs at the same time: requests/s
    and the worker's CPU µs per request for each."""
    results = [None] * len(jobs)

    def one(i, url, pid):
        rps, _, _, cpu = wrk_with_cpu(url, pid, seconds, connections, script)
        results[i] = (rps, cpu)

    threads = [threading.Thread(target=one, args=(i, url, pid))
               for i, (url, pid) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
