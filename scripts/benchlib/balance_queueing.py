"""make bench-balance's queueing probe (scripts/bench_balance.py
--queueing): while a workload runs, every 200 ms, each replica's /healthz
(running, waiting, batch_tokens: the figures of its /metrics'
vllm:num_requests_running and vllm:num_requests_waiting, and the KV tokens
its batch holds) and nginx's /cachez upstream peers.  What it tells: how
often a request waits on one replica while another has a free slot (the
balancer sent it to a full replica), and how far apart the replicas'
batches are."""

import json
import statistics
import threading
import time
import urllib.request

PERIOD = 0.2


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


class Sampler:
    def __init__(self, sims, cachez_url, slots):
        self.sims = sims
        self.cachez_url = cachez_url
        self.slots = slots
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                hs = [_get(s.url + "/healthz") for s in self.sims]
                cz = _get(self.cachez_url)
            except OSError:
                hs = None
            if hs is not None:
                self.samples.append((hs, cz))
            self._stop.wait(PERIOD)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self):
        n = len(self.samples)
        out = {"samples": n, "replicas": {}, "queueing": 0,
               "queueing_with_free_slot": 0, "example": None}
        if not n:
            return out
        for i, s in enumerate(self.sims):
            col = [h[i] for h, _ in self.samples]
            out["replicas"][s.id] = {
                "running": statistics.mean(x["running"] for x in col),
                "waiting": statistics.mean(x["waiting"] for x in col),
                "waiting_share": sum(x["waiting"] > 0 for x in col) / n,
                "batch_tokens": statistics.mean(x["batch_tokens"]
                                                for x in col),
                "batch_tokens_max": max(x["batch_tokens"] for x in col)}
        for hs, cz in self.samples:
            if not any(x["waiting"] > 0 for x in hs):
                continue
            out["queueing"] += 1
            if any(x["running"] < self.slots for x in hs):
                out["queueing_with_free_slot"] += 1
                if out["example"] is None:
                    peers = (cz.get("upstreams", {}).get("balanced", {})
                             .get("peers", []))
                    out["example"] = {
                        "healthz": [{k: x[k] for k in ("id", "running",
                                                       "waiting",
                                                       "batch_tokens")}
                                    for x in hs],
                        "cachez": [{k: p.get(k) for k in (
                            "addr", "inflight_requests", "inflight_tokens",
                            "report")} for p in peers]}
        return out


def lines(q):
    """Markdown of a --queueing result: {balancer: summary}."""
    out = ["| balancer | samples | a replica queueing | ... while another "
           "had a free slot | per replica: running / waiting (mean), "
           "share of samples waiting, batch tokens mean (max) |",
           "| --- | ---: | ---: | ---: | --- |"]
    for b, s in q.items():
        n = s["samples"] or 1
        per = "; ".join(
            "%s %.1f / %.1f, %.0f%%, %.0f (%d)" % (
                rid, r["running"], r["waiting"], 100 * r["waiting_share"],
                r["batch_tokens"], r["batch_tokens_max"])
            for rid, r in sorted(s["replicas"].items()))
        out.append("| %s | %d | %.0f%% | %.0f%% of those | %s |" % (
            b, s["samples"], 100 * s["queueing"] / n,
            100 * s["queueing_with_free_slot"] / max(s["queueing"], 1),
            per))
    return out
