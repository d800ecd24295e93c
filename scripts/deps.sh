#!/usr/bin/env bash
# Install the Debian packages the build, the local stack and the tests need.
# Idempotent and quiet when everything is present; uses sudo when not root.
# Why each package: see README.md, "Dependencies".
set -euo pipefail

packages=(
    build-essential        # gcc, make: module and ai-sim
    nginx                  # the nginx binary the module loads into
    nginx-dev              # that nginx's source tree + conf_flags to build against
    libpcre2-dev libssl-dev zlib1g-dev   # what nginx's configure checks for
    libhiredis-dev         # hiredis async API for the Redis store
    redis-server           # Redis for `make run CACHE=redis` and the tests
    libevent-dev           # ai-sim's event loop and HTTP server (evhttp)
    libcjson-dev           # ai-sim's JSON
    libcmocka-dev          # unit tests
    python3-pytest python3-requests python3-redis   # integration tests
    gettext-base           # envsubst: renders nginx-conf/ templates
    curl procps psmisc     # readiness checks, process inspection
    wrk                    # make bench
    libfaketime            # tests: a wall clock stepped under nginx
    clang libclang-rt-14-dev   # libFuzzer target
    valgrind               # leak checks of ai-sim
    docker-compose         # static check of compose.yaml (no engine needed)
)

# k6 scripts are syntax-checked with node; any node on PATH will do
command -v node >/dev/null || packages+=(nodejs)

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
