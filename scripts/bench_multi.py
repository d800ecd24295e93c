#!/usr/bin/python3
"""make bench-multi: what several gateways cost (SPEC 7.4), on loopback.

Four HITs of the same 1 KiB answer, interleaved REPS times so a slow moment
of this shared machine lands on all rows alike, each row driven by wrk:

    shm HIT       ai_gateway_cache ZONE                      (the reference)
    near HIT      ai_gateway_cache redis + ai_gateway_cache_near
    Redis HIT     ai_gateway_cache redis, one redis-server
    cluster HIT   ai_gateway_cache redis, a 3-master Redis Cluster

Two nginx (one worker each): one on the single Redis, one on the cluster.
Prints the median requests/s (min..max), the worker's CPU µs per request
and the ratios the issue asks for: near / shm (>= 0.9) and cluster / Redis
(within 10%).

    scripts/bench_multi.py [--seconds 3] [--reps 5] [--connections 32]
"""

import argparse
import statistics
import subprocess

from benchlib.main_rows import KIB
from benchlib.wrk import wrk_with_cpu
from harness.nginx import Nginx
from harness.redis import RedisCluster, RedisServer

HTTP = """
    access_log off;
    keepalive_requests 1000000;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    ai_gateway_redis 127.0.0.1:{redis} {cluster} timeout=1s;
    ai_gateway_cache_zone zone=shm:16m;
    ai_gateway_cache_zone zone=near:16m;
    ai_gateway_cache_ttl 3600s;
    upstream origin {{ server 127.0.0.1:%%PORT%%; keepalive 64; }}
    server {{
        listen 127.0.0.1:%%PORT%%;
        location = /origin {{ default_type text/plain; return 200 "{kib}"; }}
        location = /shm {{ ai_gateway_cache shm; proxy_pass http://origin/origin; }}
        location = /near {{
            ai_gateway_cache redis;
            ai_gateway_cache_near near ttl=3600s;
            proxy_pass http://origin/origin;
        }}
        location = /redis {{ ai_gateway_cache redis; proxy_pass http://origin/origin; }}
    }}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()

    single = RedisServer().start()
    cluster = RedisCluster(masters=3).start()
    one = Nginx(HTTP.format(redis=single.port, cluster="", kib=KIB))
    many = Nginx(HTTP.format(redis=cluster.seed.port, cluster="cluster",
                             kib=KIB))
    rows = [("shm HIT", one, "/shm"), ("near HIT", one, "/near"),
            ("Redis HIT", one, "/redis"), ("cluster HIT", many, "/redis")]
    results = {name: [] for name, _, _ in rows}
    try:
        one.start()
        many.start()
        for name, n, path in rows:
            for _ in range(3):
                subprocess.run(["curl", "-s", "-o", "/dev/null", n.url + path])
            tier = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null",
                                   n.url + path], capture_output=True,
                                  text=True).stdout
            if "X-Cache: HIT" not in tier:
                raise SystemExit("bench: %s is not a HIT:\n%s" % (name, tier))
        for rep in range(args.reps):
            for name, n, path in rows:
                rps, p50, p99, cpu = wrk_with_cpu(n.url + path,
                                                  n.worker_pids()[0],
                                                  args.seconds,
                                                  args.connections)
                results[name].append((rps, cpu))
                print("rep %d %-12s %9.0f req/s  %6.1f us CPU/req"
                      % (rep + 1, name, rps, cpu), flush=True)
    finally:
        one.stop()
        many.stop()
        one.cleanup()
        many.cleanup()
        cluster.cleanup()
        single.cleanup()

    med = {k: statistics.median(r for r, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
    print("\n| row | requests/s (median, min..max) | worker CPU us/request |")
    print("| --- | --- | --- |")
    for name, _, _ in rows:
        v = [r for r, _ in results[name]]
        print("| %s | %.0f (%.0f..%.0f) | %.1f |"
              % (name, med[name], min(v), max(v), cpu[name]))
    print("\nnear / shm HIT: %.2f (goal >= 0.90)"
          % (med["near HIT"] / med["shm HIT"]))
    print("cluster / single-Redis HIT: %.2f (goal within 10%%)"
          % (med["cluster HIT"] / med["Redis HIT"]))


if __name__ == "__main__":
    main()
