#!/usr/bin/env bash
# A local Redis Cluster for trying `ai_gateway_redis HOST:PORT cluster`:
# 3 masters (and REPLICAS replicas each) from Debian's redis-server, on
# loopback only, no persistence.
#
#   scripts/redis-cluster.sh              in the foreground until Ctrl-C
#   scripts/redis-cluster.sh start DIR    in the background, state in DIR
#   scripts/redis-cluster.sh stop DIR     stop what `start DIR` started
#
# Nodes listen on 127.0.0.1:PORT.. (PORT=7001 by default: 7001, 7002,
# 7003, then the replicas), their cluster bus on PORT+10000...  Point the
# gateway at any node, e.g.
#
#   ai_gateway_redis 127.0.0.1:7001 cluster;
#
# or `make run CACHE=redis-cluster`, which runs this script itself.
# Stops only the redis-server processes it started, by PID.
set -euo pipefail

port=${PORT:-7001}
replicas=${REPLICAS:-0}
masters=3
count=$((masters * (1 + replicas)))

say() { printf 'redis-cluster: %s\n' "$*"; }
die() { printf 'redis-cluster: %s\n' "$*" >&2; exit 1; }

command -v redis-server >/dev/null || die "no redis-server (make deps)"
command -v redis-cli >/dev/null || die "no redis-cli (make deps)"

start() {
    local dir=$1 i p nodes=()
    mkdir -p "$dir"
    for ((i = 0; i < count; i++)); do
        p=$((port + i))
        if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
            die "port $p is already in use"
        fi
        mkdir -p "$dir/$p"
        setsid redis-server --port "$p" --bind 127.0.0.1 --save '' \
            --appendonly no --dir "$dir/$p" --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
            --cluster-port $((p + 10000)) \
            > "$dir/$p/redis.log" 2>&1 < /dev/null &
        echo $! > "$dir/$p/pid"
        nodes+=("127.0.0.1:$p")
    done
    for ((i = 0; i < count; i++)); do
        p=$((port + i))
        for _ in $(seq 100); do
            redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break
            sleep 0.05
        done
        redis-cli -p "$p" ping 2>/dev/null | grep -q PONG \
            || die "node 127.0.0.1:$p did not come up (see $dir/$p/redis.log)"
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas "$replicas" \
        --cluster-yes > "$dir/create.log" 2>&1 \
        || die "cluster create failed (see $dir/create.log)"
    for _ in $(seq 200); do
        redis-cli -p "$port" cluster info 2>/dev/null \
            | grep -q 'cluster_state:ok' && break
        sleep 0.05
    done
    say "up: ${nodes[*]} ($masters masters, $replicas replicas each)"
}

stop() {
    local dir=$1 f pid
    for f in "$dir"/*/pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$f"
    done
    say "stopped"
}

case ${1:-} in
    start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
    "")
        dir=$(mktemp -d /tmp/ai-gateway-redis-cluster.XXXXXX)
        trap 'stop "$dir"' EXIT
        trap 'exit 0' INT TERM
        start "$dir"
        say "gateway: ai_gateway_redis 127.0.0.1:$port cluster;  (Ctrl-C stops)"
        while true; do sleep 3600 & wait $!; done ;;
    *) die "usage: $0 [start DIR | stop DIR]" ;;
esac
