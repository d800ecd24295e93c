"""ai-sim's decode step and admission as functions of the KV cache its
running batch holds (--decode-us-per-kv-token, --kv-cache-tokens;
backends/ai-sim/README.md, "The batch's KV cache"): a replica whose batch
holds many tokens answers a newcomer's first token later and decodes each
token slower, as a vLLM replica does, and with a KV cache limit a
sequence waits until its tokens fit.

The machine is shared (2 cores): timings are compared between figures
several times apart, and the bounds that matter are lower bounds (a timer
never fires early); a late timer only makes a loaded figure larger."""

import json
import math
import shutil
import socket
import subprocess
import time

import pytest
import requests

from ai_sim_client import (assert_valgrind_clean, raw_request,
                           VALGRIND)
from harness.sim import BINARY, Sim

# a tenant's long prompt: 8,000 bytes, 2,000 tokens (4 bytes a token)
LONG = "".join("Hold this context in the KV cache, line %04d. " % i
               for i in range(200))[:8000]
assert len(LONG) == 8000


def prompt_tokens(content):
    """The tokens ai-sim counts for one user message (README: role and
    content, each followed by a newline, in 4-byte pieces)."""
    return math.ceil(len(("user\n" + content + "\n").encode()) / 4)


def wait_for(sim, cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    h = sim.healthz()
    while not cond(h):
        assert time.monotonic() < deadline, "healthz never matched: %r" % h
        time.sleep(0.02)
        h = sim.healthz()
    return h


def open_hog(sim, content, max_tokens):
    """A streamed chat left running (its answer unread), on its own
    connection: a sequence the batch holds until the socket closes."""
    c = socket.create_connection(("127.0.0.1", sim.port), timeout=30)
    body = json.dumps({"messages": [{"role": "user", "content": content}],
                       "max_tokens": max_tokens, "stream": True}).encode()
    c.sendall(raw_request("POST", "/v1/chat/completions", body,
                          ["Connection: close"]))
    return c


def probe(sim, stream, max_tokens=5):
    """(seconds to the first token, seconds per token after it) of one
    short chat: a stream's first data event and the mean gap to its last
    content event; a JSON answer's TPOT from its total time, its TTFT
    None (not visible)."""
    body = {"messages": [{"role": "user", "content": "a short question"}],
            "max_tokens": max_tokens, "stream": stream}
    t0 = time.monotonic()
    r = requests.post(sim.url + "/v1/chat/completions", json=body,
                      stream=stream, timeout=60)
    assert r.status_code == 200, r.text
    if not stream:
        r.content
        return None, time.monotonic() - t0
    times = []
    for line in r.iter_lines():
        if line.startswith(b"data: {") and b'"content"' in line:
            times.append(time.monotonic() - t0)
    assert len(times) >= max_tokens, "%d content events" % len(times)
    # the role chunk and the first token come together; then a token a step
    tokens = times[1:max_tokens + 1]
    return times[0], (tokens[-1] - tokens[0]) / (len(tokens) - 1)


BATCH_SIM = ["--ttft-ms", "20", "--tpot-ms", "20", "--jitter", "0",
             "--decode-us-per-kv-token", "100"]


def test_stream_ttft_and_tpot_grow_with_batch_tokens(sim_factory):
    # Intent: at 100 us per KV token, each running sequence that holds a
    # 2,000-token prompt adds 200 ms to every step of the batch: a short
    # stream's first token comes after 20 ms on an idle replica, 220+ ms
    # beside one such sequence, 420+ ms beside two; each of its tokens
    # after that 22 ms apart, then 220+, then 420+.  The lower bounds
    # below are the model's (timers never fire early); the orderings have
    # 100+ ms of margin at every step.
    s = sim_factory("sim-1", *BATCH_SIM)
    hog_tokens = prompt_tokens(LONG + " 0")

    idle_ttft, idle_tpot = probe(s, True)
    assert s.healthz()["batch_tokens"] == 0, "nothing held when idle"

    hogs, figures = [], []
    try:
        for n in (1, 2):
            hogs.append(open_hog(s, LONG + " %d" % (n - 1), 4000))
            h = wait_for(s, lambda h: h["running"] == n)
            assert h["batch_tokens"] >= n * hog_tokens, \
                "the batch holds the running prompts: %r" % h
            figures.append(probe(s, True))
            h = s.healthz()
            assert h["batch_tokens"] >= n * hog_tokens, h
    finally:
        for c in hogs:
            c.close()

    (one_ttft, one_tpot), (two_ttft, two_tpot) = figures
    assert one_ttft >= 0.02 + hog_tokens * 100e-6 - 0.005, \
        "beside a 2,000-token sequence the first token's step reads its " \
        "KV cache: %.3f s" % one_ttft
    assert two_ttft >= 0.02 + 2 * hog_tokens * 100e-6 - 0.005, \
        "beside two: %.3f s" % two_ttft
    assert one_tpot >= 0.02 + hog_tokens * 100e-6 - 0.005, \
        "each step reads the batch's KV cache: %.3f s a token" % one_tpot
    assert two_tpot >= 0.02 + 2 * hog_tokens * 100e-6 - 0.005, \
        "two sequences, twice the reads: %.3f s a token" % two_tpot
    assert idle_ttft < one_ttft < two_ttft, \
        "TTFT grows with the batch's tokens: %.3f %.3f %.3f s" % (
            idle_ttft, one_ttft, two_ttft)
    assert idle_tpot < one_tpot < two_tpot, \
        "TPOT grows with the batch's tokens: %.3f %.3f %.3f s" % (
            idle_tpot, one_tpot, two_tpot)
    # 220 ms against 22 ms: a loaded machine would have to add 50 ms to
    # every idle step for this to fail
    assert one_tpot >= 3 * idle_tpot, \
        "a step beside 2,000 tokens is about 10x an idle one: %.3f vs " \
        "%.3f s" % (one_tpot, idle_tpot)

    h = wait_for(s, lambda h: h["running"] == 0)
    assert h["batch_tokens"] == 0, "the hogs' tokens went with them: %r" % h


def test_json_answer_decodes_at_the_batch_pace(sim_factory):
    # Intent: a JSON answer decodes step by step as a stream does: 5
    # tokens beside a 2,000-token sequence take the prefill step and five
    # steps of 220+ ms, 1.3 s or more, against about 0.13 s alone.
    s = sim_factory("sim-1", *BATCH_SIM)
    hog_tokens = prompt_tokens(LONG + " 0")

    _, idle = probe(s, False)
    hog = open_hog(s, LONG + " 0", 4000)
    try:
        wait_for(s, lambda h: h["running"] == 1)
        _, loaded = probe(s, False)
    finally:
        hog.close()

    step = 0.02 + hog_tokens * 100e-6
    assert loaded >= 6 * step - 0.03, \
        "the prefill step and 5 decode steps beside the hog: %.3f s" % loaded
    assert loaded >= 3 * idle, \
        "about 10x the idle answer: %.3f vs %.3f s" % (loaded, idle)
    h = wait_for(s, lambda h: h["running"] == 0)
    assert (h["batch_tokens"], h["inflight"]) == (0, 0), h


def test_kv_cache_tokens_admission(sim_factory):
    # Intent: with a KV cache of 3,000 tokens a sequence starts only when
    # its prompt and max_tokens fit beside the running ones: a 2,000-token
    # prompt that may generate 500 runs; a short prompt that may generate
    # 600 waits; a short one with 2 tokens behind it waits too (first
    # come, first served), though it would fit; both start when the long
    # one's client leaves.  No timing involved: /healthz counts.
    s = sim_factory("sim-1", "--ttft-ms", "10", "--tpot-ms", "50",
                    "--jitter", "0", "--kv-cache-tokens", "3000")
    socks = [open_hog(s, LONG, 500)]
    try:
        wait_for(s, lambda h: h["running"] == 1)
        socks.append(open_hog(s, "a question with a long answer", 600))
        wait_for(s, lambda h: h["waiting"] == 1)
        socks.append(open_hog(s, "a short one", 2))
        h = wait_for(s, lambda h: h["waiting"] == 2)
        assert h["running"] == 1, "only the long prompt runs: %r" % h

        socks[0].close()
        h = wait_for(s, lambda h: h["waiting"] == 0 and h["running"] >= 1)
        assert h["batch_tokens"] < 3000, h
    finally:
        for c in socks:
            c.close()
    h = s.wait_idle()
    assert (h["running"], h["waiting"], h["batch_tokens"]) == (0, 0, 0), h


def test_kv_cache_tokens_larger_sequence_runs_alone(sim_factory):
    # Intent: a sequence larger than the whole KV cache is not refused
    # forever: it runs when nothing else does.
    s = sim_factory("sim-1", "--ttft-ms", "5", "--tpot-ms", "1",
                    "--jitter", "0", "--kv-cache-tokens", "100")
    r = requests.post(s.url + "/v1/chat/completions", timeout=30,
                      json={"messages": [{"role": "user", "content": LONG}],
                            "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize("args", [
    ["--decode-us-per-kv-token", "-1"], ["--decode-us-per-kv-token", "x"],
    ["--decode-us-per-kv-token", "1001"], ["--decode-us-per-kv-token", ""],
    ["--kv-cache-tokens", "-1"], ["--kv-cache-tokens", "1k"],
    ["--kv-cache-tokens", "4294967297"],
])
def test_batch_flags_bad_values(args):
    p = subprocess.run([BINARY, "--port", "0", "--id", "a", *args],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2, "%r exits 2, got %d" % (args, p.returncode)
    assert "invalid " + args[0] in p.stderr and "usage:" in p.stderr, \
        p.stderr


@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="valgrind is not installed")
def test_valgrind_batch_and_kv_admission():
    # Intent: the step-by-step decode of JSON answers and streams, the
    # token admission and its queue leak nothing and read nothing
    # uninitialised: answers served, clients leaving while queued for
    # tokens and while decoding, and SIGTERM with sequences in flight.
    s = Sim(None, "sim-vg", "--ttft-ms", "5", "--tpot-ms", "2",
            "--jitter", "0.2", "--decode-us-per-kv-token", "5",
            "--kv-cache-tokens", "2600", wrapper=VALGRIND).start()
    socks = []
    try:
        for stream in (False, True):
            r = requests.post(s.url + "/v1/chat/completions", timeout=60,
                              json={"messages": [{"role": "user",
                                                  "content": "hello"}],
                                    "max_tokens": 6, "stream": stream})
            assert r.status_code == 200, r.text
        r = requests.post(s.url + "/infer", timeout=60,
                          json={"prompt": "x", "max_tokens": 3})
        assert r.status_code == 200, r.text

        # a long one holds the cache; two wait for tokens and leave
        socks.append(open_hog(s, LONG, 500))
        wait_for(s, lambda h: h["running"] == 1, timeout=60)
        gone = [open_hog(s, "gone %d" % i, 600) for i in range(2)]
        wait_for(s, lambda h: h["waiting"] == 2, timeout=60)
        for c in gone:
            c.close()
        wait_for(s, lambda h: h["waiting"] == 0, timeout=60)

        # left in flight at SIGTERM: one decoding, one queued for tokens
        socks.append(open_hog(s, "kept", 600))
        wait_for(s, lambda h: h["waiting"] == 1, timeout=60)
    finally:
        rc = s.stop()
        for c in socks:
            c.close()

    assert_valgrind_clean(rc, s.output())
