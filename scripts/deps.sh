#!/usr/bin/env bash
# Install the Debian packages a task needs, by group.  Idempotent and quiet
# when everything is present; uses sudo when not root.
# Why each package: see README.md, "Dependencies".
#
#   scripts/deps.sh [GROUP...]     default: build run test
#
#   build    compile the module and ai-sim (all the Docker build stage has)
#   dashboard  npm: installs uPlot for /dashboard (any npm on PATH will do)
#   run      `make run`: the local stack's Redis, envsubst, readiness checks
#   test     `make test`: unit, fuzz, integration and static checks
#   bench    `make bench`: wrk and the charts
#   docker   `make test-docker`: the engine, compose and debootstrap
#   nginx-tests  `make test-nginx`: the dynamic modules nginx-tests loads
set -euo pipefail

group_build=(
    build-essential        # gcc, make: module and ai-sim
    nginx                  # the nginx binary the module loads into
    nginx-dev              # that nginx's source tree + conf_flags to build against
    libpcre2-dev           # what nginx's configure checks for
    libssl-dev zlib1g-dev  # the same; and lib/'s SHA-256 (libcrypto), CRC-32 (zlib)
    libhiredis-dev         # hiredis async API for the Redis store
    libevent-dev           # ai-sim's event loop and HTTP server (evhttp)
    libcjson-dev           # ai-sim's JSON
)
# npm, added below unless one is on PATH already
group_dashboard=()
group_run=(
    redis-server           # Redis for `make run CACHE=redis` and the tests
    gettext-base           # envsubst: renders nginx-conf/ templates
    curl procps psmisc     # readiness checks, process inspection
)
group_test=(
    libcmocka-dev          # unit tests
    python3-pytest python3-requests python3-redis   # integration tests
    python3-pytest-timeout # a hung test fails alone, with every thread's stack
    python3-pytest-rerunfailures   # one more try for a test that failed
    libfaketime            # a wall clock stepped under nginx
    clang libclang-rt-14-dev   # libFuzzer target
    valgrind               # leak checks of ai-sim
    docker-compose python3-yaml   # static check of compose.yaml (no engine needed)
    prometheus             # promtool: lints /cachez?format=prometheus
    chromium python3-websocket   # /dashboard in headless Chromium, driven
                                 # over DevTools (test_dashboard.py)
)
group_bench=(
    wrk                    # load generator
    python3-matplotlib     # the SVG charts of docs/BENCHMARKS.md
)
group_docker=(
    docker.io              # the engine (dockerd) and its client
    docker-compose         # compose v1; `docker compose` v2 is used when present
    debootstrap            # base images where no registry answers
    curl
)

# Debian builds seven of nginx's modules as =dynamic; nginx-tests loads them
# (TEST_NGINX_MODULES) and nearly every file fails at dlopen() without them
group_nginx_tests=(
    libnginx-mod-http-geoip libnginx-mod-http-image-filter
    libnginx-mod-http-perl libnginx-mod-http-xslt-filter
    libnginx-mod-mail libnginx-mod-stream libnginx-mod-stream-geoip
)

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(build run test)

packages=()
for g in "${groups[@]}"; do
    case $g in
        build|dashboard|run|test|bench|docker|nginx-tests) ;;
        *) echo "deps: unknown group $g (build dashboard run test bench docker nginx-tests)" >&2
           exit 2 ;;
    esac
    declare -n list="group_${g//-/_}"
    packages+=("${list[@]}")
    unset -n list
done

# k6 scripts are syntax-checked with node, and `npm ci` installs uPlot
# for /dashboard (scripts/install-dashboard.sh); any node or npm on PATH
# will do, else Debian's
for g in "${groups[@]}"; do
    if [ "$g" = test ] && ! command -v node >/dev/null; then
        packages+=(nodejs)
    fi
    if [ "$g" = dashboard ] && ! command -v npm >/dev/null; then
        packages+=(npm)
    fi
done

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null \
            | grep -qx installed; then
        missing+=("$p")
    fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

sudo=
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "deps: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    }
    sudo=sudo
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
