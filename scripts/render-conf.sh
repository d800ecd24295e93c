#!/usr/bin/env bash
# Render nginx-conf/gateway.conf.template into a full nginx.conf and copy
# nginx-conf/snippets/ next to it (the template includes them by relative
# path, which nginx resolves against the directory of the -c file), and the
# /dashboard page into dashboard/ next to it: nginx-conf/dashboard/'s
# files, and uPlot from build/dashboard/vendor/ (where `make` installs it:
# scripts/install-dashboard.sh) into dashboard/vendor/.  Copies, not paths
# into the checkout: nginx's workers (www-data or nobody) must read them
# wherever the clone is.
#
#   scripts/render-conf.sh OUT_FILE [TEMPLATE]
#
# Only the variables below are substituted (envsubst with an explicit list),
# so nginx's own $variables pass through untouched.  Each can be set in the
# environment; the defaults are the local stack of `make run`:
#
#   AGW_MODULE      absolute path of the module .so   build/ngx_ai_gateway_module.so
#   AGW_LISTEN      nginx's listen address            127.0.0.1:8080
#   AGW_SIM1..3     the ai-sim replicas (host:port)   127.0.0.1:9001..9003
#   AGW_USER        a whole `user ...;` line or ""    root: `user www-data;`
#                                                     (else nobody), others: ""
#   AGW_ERROR_LOG   error_log target                  error.log (under -p)
#   AGW_ACCESS_LOG  access_log target                 access.log (under -p)
#   AGW_WORKERS     worker_processes                  auto
#   AGW_CACHE       the cache store: a zone name      main (shared memory)
#                   or "redis"
#   AGW_REDIS       Redis HOST:PORT (AGW_CACHE=redis)  127.0.0.1:6379
#   AGW_REAL_IP_FROM  proxies whose X-Forwarded-For    none (loopback only)
#                   is believed: addresses or CIDRs,
#                   space-separated (your load balancers)
#   AGW_CACHEZ_ALLOW  addresses or CIDRs allowed to    none (loopback only)
#                   /cachez and /dashboard besides
#                   loopback (scrapers)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 OUT_FILE [TEMPLATE]" >&2
    exit 2
fi

out=$1
template=${2:-$repo/nginx-conf/gateway.conf.template}
snippets=$(dirname "$template")/snippets

command -v envsubst >/dev/null || {
    echo "render-conf: envsubst missing (apt-get install gettext-base)" >&2
    exit 1
}

[ -f "$template" ] || { echo "render-conf: no template $template" >&2; exit 1; }

# Workers started by root drop to an unprivileged user; nginx's compiled-in
# default ("nobody" with group "nobody") does not exist on Debian.
if [ -z "${AGW_USER+set}" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        AGW_USER=
    elif id www-data >/dev/null 2>&1; then
        AGW_USER="user www-data;"
    else
        AGW_USER="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
    fi
fi

export AGW_MODULE=${AGW_MODULE:-$repo/build/ngx_ai_gateway_module.so}
export AGW_LISTEN=${AGW_LISTEN:-127.0.0.1:8080}
export AGW_SIM1=${AGW_SIM1:-127.0.0.1:9001}
export AGW_SIM2=${AGW_SIM2:-127.0.0.1:9002}
export AGW_SIM3=${AGW_SIM3:-127.0.0.1:9003}
export AGW_USER
export AGW_ERROR_LOG=${AGW_ERROR_LOG:-error.log}
export AGW_ACCESS_LOG=${AGW_ACCESS_LOG:-access.log}
export AGW_WORKERS=${AGW_WORKERS:-auto}
export AGW_CACHE=${AGW_CACHE:-main}

# the Redis connection exists only when something uses it
if [ "$AGW_CACHE" = redis ]; then
    AGW_REDIS_DIRECTIVE="ai_gateway_redis ${AGW_REDIS:-127.0.0.1:6379};"
else
    AGW_REDIS_DIRECTIVE=
fi
export AGW_REDIS_DIRECTIVE

# the shared-memory zone exists only when the cache uses it
if [ "$AGW_CACHE" = redis ]; then
    AGW_CACHE_ZONE_DIRECTIVE=
else
    AGW_CACHE_ZONE_DIRECTIVE="ai_gateway_cache_zone zone=$AGW_CACHE:64m max_entry_size=1m;"
fi
export AGW_CACHE_ZONE_DIRECTIVE

# "DIRECTIVE ADDR;" per address of a space-separated list; anything but an
# address or a CIDR is refused here, not left for nginx to misread
directives() {
    local name=$1 directive=$2 list=$3 out= a
    for a in $list; do
        case $a in
            *[!0-9A-Fa-f.:/]*|'')
                echo "render-conf: $name: \"$a\" is not an address or CIDR" >&2
                return 1 ;;
        esac
        out="$out$directive $a; "
    done
    printf '%s' "${out% }"
}
AGW_REAL_IP_FROM_DIRECTIVES=$(directives AGW_REAL_IP_FROM set_real_ip_from \
                              "${AGW_REAL_IP_FROM:-}")
AGW_CACHEZ_ALLOW_DIRECTIVES=$(directives AGW_CACHEZ_ALLOW allow \
                              "${AGW_CACHEZ_ALLOW:-}")
export AGW_REAL_IP_FROM_DIRECTIVES AGW_CACHEZ_ALLOW_DIRECTIVES

case $AGW_MODULE in
    /*) ;;
    *) echo "render-conf: AGW_MODULE must be an absolute path" \
            "(load_module resolves relative ones under nginx's prefix)" >&2
       exit 1 ;;
esac

# shellcheck disable=SC2016  # literal names for envsubst
vars='${AGW_MODULE} ${AGW_LISTEN} ${AGW_SIM1} ${AGW_SIM2} ${AGW_SIM3}'
vars="$vars \${AGW_USER} \${AGW_ERROR_LOG} \${AGW_ACCESS_LOG} \${AGW_WORKERS}"
vars="$vars \${AGW_CACHE} \${AGW_REDIS_DIRECTIVE} \${AGW_CACHE_ZONE_DIRECTIVE}"
vars="$vars \${AGW_REAL_IP_FROM_DIRECTIVES} \${AGW_CACHEZ_ALLOW_DIRECTIVES}"
vars="$vars \${AGW_DASHBOARD_ROOT}"

outdir=$(dirname "$out")
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

# the page's files, by absolute path (nginx would resolve a relative alias
# under its prefix, not next to the config)
export AGW_DASHBOARD_ROOT=$outdir/dashboard

tmp=$(mktemp "$outdir/.render.XXXXXX")
trap 'rm -f "$tmp"' EXIT

envsubst "$vars" < "$template" > "$tmp"

# shellcheck disable=SC2016
if grep -n '\${AGW_' "$tmp" >&2; then
    echo "render-conf: unknown AGW_ variable left in $template" >&2
    exit 1
fi

if [ -d "$snippets" ]; then
    mkdir -p "$outdir/snippets"
    cp "$snippets"/*.conf "$outdir/snippets/"
fi

# /dashboard: the page, and uPlot when make has installed it (without it
# the page still shows its tables, and says why it draws no chart)
dashboard=$(dirname "$template")/dashboard
vendor=$repo/build/dashboard/vendor
if [ -d "$dashboard" ]; then
    mkdir -p "$AGW_DASHBOARD_ROOT/vendor"
    cp "$dashboard"/*.html "$dashboard"/*.js "$dashboard"/*.css \
       "$AGW_DASHBOARD_ROOT/"
    if [ -f "$vendor/uPlot.iife.min.js" ]; then
        cp "$vendor"/* "$AGW_DASHBOARD_ROOT/vendor/"
    else
        echo "render-conf: no uPlot in $vendor (run make): /dashboard" \
             "will show its tables without charts" >&2
    fi
    chmod -R a+rX "$AGW_DASHBOARD_ROOT"
fi

chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
