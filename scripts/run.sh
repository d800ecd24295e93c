#!/usr/bin/env bash
# `make run`: the local stack of SPEC 2.1 in the foreground.
#
#   three ai-sim replicas   127.0.0.1:9001..9003 (sim-1..3)
#   redis-server            127.0.0.1:6379, db 0, no persistence
#                           (CACHE=redis only)
#   a Redis Cluster         127.0.0.1:7001..7003, bus 17001..17003
#                           (CACHE=redis-cluster: scripts/redis-cluster.sh)
#   nginx + the module      127.0.0.1:8080, config rendered from
#                           nginx-conf/gateway.conf.template
#
# Everything lives in a fresh run directory /tmp/ai-gateway-run.XXXXXX
# (config, logs, pid, nginx's temp files); run/current in the repository
# points at the latest one.  It is under /tmp, not the repository, because
# nginx's workers drop to www-data (or nobody) when started by root and
# must reach their temp paths even when the clone sits in a 0700 home.
#
# Ctrl-C (SIGINT) or SIGTERM stops nginx gracefully (SIGQUIT) and every
# ai-sim (and the redis-server) this script started, by PID.
#
# Environment: CACHE=shm (default: the shared-memory cache) or CACHE=redis
# (the Redis cache store) or CACHE=redis-cluster (the Redis cache store on
# a local 3-master Redis Cluster), AGW_MODULE and AGW_SIM_BIN to run other
# builds, AGW_SIM_ARGS for the replicas' latency flags (step 4).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CACHE:-shm}
nginx_bin=${AGW_NGINX:-/usr/sbin/nginx}
sim_bin=${AGW_SIM_BIN:-$repo/build/ai-sim}
module=${AGW_MODULE:-$repo/build/ngx_ai_gateway_module.so}
listen_port=8080
sim_ports=(9001 9002 9003)

say() { printf 'run: %s\n' "$*"; }
die() { printf 'run: %s\n' "$*" >&2; exit 1; }

redis_port=6379
agw_redis=127.0.0.1:$redis_port
ports=("$listen_port" "${sim_ports[@]}")

case $cache in
    shm) agw_cache=main ;;
    redis)
        agw_cache=redis
        ports+=("$redis_port")
        command -v redis-server >/dev/null || die "no redis-server (make deps)" ;;
    redis-cluster)
        agw_cache=redis
        agw_redis="127.0.0.1:7001 cluster"
        ports+=(7001 7002 7003 17001 17002 17003)
        command -v redis-server >/dev/null || die "no redis-server (make deps)" ;;
    *)
        echo "run: unknown CACHE=\"$cache\" (shm, redis or redis-cluster)" >&2
        exit 2 ;;
esac

[ -x "$nginx_bin" ] || die "no nginx at $nginx_bin (make deps)"
[ -x "$sim_bin" ] || die "no ai-sim at $sim_bin (run: make)"
[ -f "$module" ] || die "no module at $module (run: make)"
case $module in /*) ;; *) module=$(cd "$(dirname "$module")" && pwd)/$(basename "$module") ;; esac


# 1. the ports must be free before anything starts

busy=0
for port in "${ports[@]}"; do
    holder=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    if [ -n "$holder" ]; then
        echo "run: port $port is already in use:" >&2
        printf '%s\n' "$holder" | sed 's/^/run:     /' >&2
        busy=1
    fi
done
[ "$busy" -eq 0 ] || die "free the port(s) above (or stop the other stack) and retry"


# 2. run directory

rundir=$(mktemp -d /tmp/ai-gateway-run.XXXXXX)
chmod 755 "$rundir"
mkdir -p "$repo/run"
ln -sfn "$rundir" "$repo/run/current"


# 3. cleanup: by PID, only what we started

sim_pids=()
nginx_pid=
redis_pid=

# shellcheck disable=SC2317  # called from traps
stop_all() {
    local pid i

    trap - INT TERM EXIT

    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        say "stopping nginx (pid $nginx_pid, graceful)"
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        for i in $(seq 100); do
            kill -0 "$nginx_pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$nginx_pid" 2>/dev/null; then
            say "nginx still running after 10s, sending TERM"
            kill -TERM "$nginx_pid" 2>/dev/null || true
        fi
        wait "$nginx_pid" 2>/dev/null || true
    fi

    for pid in "${sim_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${sim_pids[@]}"; do
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    [ ${#sim_pids[@]} -eq 0 ] || say "stopped ai-sim (pids ${sim_pids[*]})"

    if [ -n "$redis_pid" ]; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
        say "stopped redis-server (pid $redis_pid)"
    fi
    if [ -d "$rundir/redis-cluster" ]; then
        "$repo/scripts/redis-cluster.sh" stop "$rundir/redis-cluster" || true
    fi
    say "logs kept in $rundir"
}

# shellcheck disable=SC2317  # called from traps
on_signal() {
    echo
    stop_all
    exit 0
}

trap on_signal INT TERM
trap stop_all EXIT


# 4. three ai-sim replicas
#
# setsid: children get their own session, so a Ctrl-C at the terminal
# reaches only this script, which then stops them in order (nginx first,
# with QUIT, so streams in flight finish).
#
# Each replica models a real inference server (SPEC 8.1): 8 sequences
# decode at once, the rest queue; a prompt token not in the replica's
# prefix cache costs 300 us before the first token (a 2,000-token system
# prompt: 0.6 s, cached: nothing); the cache holds 16,384 tokens, the
# system prompts of about eight tenants; each step of the batch takes
# 1.1 us longer per token the running sequences hold (a decode step reads
# their whole KV cache: backends/ai-sim/README.md).  The gateway's prefix
# balancer (gateway.conf.template) keeps each tenant on the replica that
# caches it.  AGW_SIM_ARGS replaces these flags.

sim_args=${AGW_SIM_ARGS:---slots 8 --prefill-us-per-token 300 --prefix-cache-tokens 16384 --decode-us-per-kv-token 1.1}

for i in 1 2 3; do
    port=${sim_ports[$((i - 1))]}
    # shellcheck disable=SC2086  # the flags, split on purpose
    setsid "$sim_bin" --port "$port" --id "sim-$i" $sim_args \
        > "$rundir/sim-$i.log" 2>&1 < /dev/null &
    sim_pids+=($!)
done

for i in 1 2 3; do
    port=${sim_ports[$((i - 1))]}
    pid=${sim_pids[$((i - 1))]}
    ok=0
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz"; then
            ok=1
            break
        fi
        sleep 0.05
    done
    if [ "$ok" -ne 1 ]; then
        echo "run: ai-sim sim-$i did not come up on 127.0.0.1:$port:" >&2
        sed 's/^/run:     /' "$rundir/sim-$i.log" >&2
        exit 1
    fi
    say "sim-$i up on 127.0.0.1:$port (pid $pid)"
done


# 5. CACHE=redis: a throwaway redis-server (no RDB, no AOF)

if [ "$cache" = redis ]; then
    setsid redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$rundir" \
        > "$rundir/redis.log" 2>&1 < /dev/null &
    redis_pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
        kill -0 "$redis_pid" 2>/dev/null || break
        sleep 0.05
    done
    redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG || {
        sed 's/^/run:     /' "$rundir/redis.log" >&2
        die "redis-server did not come up on 127.0.0.1:$redis_port"
    }
    say "redis-server up on 127.0.0.1:$redis_port (pid $redis_pid)"
fi


# 5b. CACHE=redis-cluster: 3 throwaway masters (scripts/redis-cluster.sh)

if [ "$cache" = redis-cluster ]; then
    PORT=7001 "$repo/scripts/redis-cluster.sh" start "$rundir/redis-cluster"
fi


# 6. nginx: render, test, run in the foreground (daemon off)

AGW_MODULE=$module \
AGW_LISTEN=127.0.0.1:$listen_port \
AGW_SIM1=127.0.0.1:${sim_ports[0]} \
AGW_SIM2=127.0.0.1:${sim_ports[1]} \
AGW_SIM3=127.0.0.1:${sim_ports[2]} \
AGW_ERROR_LOG=error.log \
AGW_ACCESS_LOG=access.log \
AGW_CACHE=$agw_cache \
AGW_REDIS=$agw_redis \
    "$repo/scripts/render-conf.sh" "$rundir/nginx.conf"

nginx_args=(-p "$rundir/" -c "$rundir/nginx.conf" -e "$rundir/error.log")

if ! out=$("$nginx_bin" -t "${nginx_args[@]}" 2>&1); then
    echo "run: nginx -t failed:" >&2
    printf '%s\n' "$out" | sed 's/^/run:     /' >&2
    exit 1
fi

setsid "$nginx_bin" "${nginx_args[@]}" < /dev/null &
nginx_pid=$!

ok=0
for _ in $(seq 100); do
    kill -0 "$nginx_pid" 2>/dev/null || break
    if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$listen_port/healthz"; then
        ok=1
        break
    fi
    sleep 0.05
done
if [ "$ok" -ne 1 ]; then
    echo "run: nginx did not come up on 127.0.0.1:$listen_port:" >&2
    tail -20 "$rundir/error.log" 2>/dev/null | sed 's/^/run:     /' >&2
    exit 1
fi

gw=http://127.0.0.1:$listen_port
cat <<EOF

  ai-gateway is up (cache: $cache)

  gateway   $gw          nginx pid $nginx_pid, module $module
  replicas  http://127.0.0.1:${sim_ports[0]}  http://127.0.0.1:${sim_ports[1]}  http://127.0.0.1:${sim_ports[2]}
  run dir   $rundir  (also $repo/run/current)
            nginx.conf, error.log, access.log, sim-N.log

  Try:
    curl -s $gw/healthz
    curl -si $gw/infer -H 'Content-Type: application/json' \\
         -d '{"prompt":"hello","max_tokens":16}'
    curl -si $gw/slow
    curl -s $gw/v1/models
    curl -s $gw/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model":"sim-small","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
    curl -sN $gw/v1/chat/completions -H 'Content-Type: application/json' \\
         -d '{"model":"sim-small","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":8}'
    curl -s $gw/cachez
    curl -s '$gw/cachez?format=prometheus'
$([ "$cache" = redis ] && printf '%s\n' "    redis-cli --scan --pattern 'gw:v1:*'")

  Ctrl-C stops everything started here.

EOF

# nginx exiting on its own (crash, `nginx -s stop`) ends the run too
set +e
wait "$nginx_pid"
rc=$?
set -e
nginx_pid=
say "nginx exited (status $rc)"
tail -5 "$rundir/error.log" 2>/dev/null | sed 's/^/run:     /' >&2 || true
exit "$rc"
