"""Idle waiters (issue 21 item 7), a section of make bench: what identical
streams waiting on one flight cost the workers while nothing moves."""

import subprocess
import time

from harness.nginx import Nginx
from harness.sim import Sim

from benchlib.host import LOAD, cpu_seconds

HTTP = """
    access_log off;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_cache_zone zone=idle:16m;
    upstream sim {{ server 127.0.0.1:{sim}; keepalive 8; }}
    server {{
        listen 127.0.0.1:%%PORT%% backlog=4096;
        location /v1/ {{
            ai_gateway_cache idle;
            ai_gateway_cache_methods POST;
            ai_gateway_cache_lock_timeout 120s;
            proxy_pass http://sim;
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
"""


def lines(waiters, seconds=6.0):
    """Idle waiters (issue 21 item 7): `waiters` identical streamed prompts
    held open by build/agw-load while the one that went upstream waits for
    ai-sim's first token (20 s away): every other request waits on its
    flight, and nothing moves.  The two workers' CPU time (utime + stime
    from /proc) over `seconds` once all are waiting, as a share of one
    core; then the same window with no request at all, the floor."""
    sim = Sim(None, "sim-idle", "--ttft-ms", "20000", "--tpot-ms", "1",
              "--jitter", "0").start()
    n = Nginx(HTTP.format(sim=sim.port), workers=2,
              main="worker_rlimit_nofile 8192;")
    client = None
    try:
        n.start()
        pids = n.worker_pids()

        def cpu():
            return sum(cpu_seconds(p) for p in pids)

        start = cpu()
        time.sleep(seconds)
        floor = (cpu() - start) / seconds

        client = subprocess.Popen(
            [LOAD, "--hold", "-n", str(waiters), "--connect-rate", "2000",
             "--prompts", "identical", "--max-tokens", "4",
             n.url + "/v1/chat/completions"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # all connected (at 2,000 a second) and the requests parked
        time.sleep(waiters / 2000 + 2)
        if sim.requests_seen() != 1:
            raise SystemExit("bench: idle waiters: %d requests reached "
                             "ai-sim, expected 1" % sim.requests_seen())
        start = cpu()
        time.sleep(seconds)
        busy = (cpu() - start) / seconds
    finally:
        if client:
            client.kill()
            client.wait()
        n.stop()
        n.cleanup()
        sim.stop()

    print("idle waiters: %d waiting, workers' CPU %.2f%% of a core "
          "(%.2f%% with none)" % (waiters, busy * 100, floor * 100),
          flush=True)
    return [
        "",
        "Idle waiters (issue 21): %d identical streamed prompts at once "
        "while the first one's upstream has not answered yet (ai-sim's "
        "first token after 20 s), so %d requests wait on its flight and "
        "nothing moves. The two workers' CPU time over %.0f s of that "
        "wait, as a share of one core:" % (waiters, waiters - 1, seconds),
        "",
        "| workers | CPU, % of a core |",
        "| --- | ---: |",
        "| %d requests waiting | %.2f |" % (waiters - 1, busy * 100),
        "| no request (floor) | %.2f |" % (floor * 100),
    ]

