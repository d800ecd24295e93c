#!/usr/bin/env bash
# Entrypoint of the nginx image (docker/nginx.Dockerfile).
#
# Renders nginx-conf/gateway.conf.template with scripts/render-conf.sh, the
# same template and script `make run` uses, the AGW_* variables coming from
# the container's environment (see the Dockerfile's ENV and compose.yaml),
# then replaces itself with nginx in the foreground: the template already
# says `daemon off;`, so nginx is PID 1 and `docker stop` (SIGQUIT, the
# image's STOPSIGNAL) shuts it down gracefully.
#
#   nginx-entrypoint.sh [NGINX_OPTION...]   render, then run nginx with them
#   nginx-entrypoint.sh COMMAND [ARG...]    run COMMAND instead (a shell, ...)
set -euo pipefail

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

app=${AGW_APP_DIR:-/opt/ai-gateway}
prefix=${AGW_PREFIX:-/var/cache/ai-gateway/}
prefix=${prefix%/}/
conf=${prefix}nginx.conf

mkdir -p "$prefix"
"$app/scripts/render-conf.sh" "$conf"

echo "nginx-entrypoint: $conf rendered (listen ${AGW_LISTEN:-?}," \
     "upstreams ${AGW_SIM1:-?} ${AGW_SIM2:-?} ${AGW_SIM3:-?}," \
     "cache ${AGW_CACHE:-main})" >&2

exec "${AGW_NGINX:-nginx}" -p "$prefix" -c "$conf" -e "${AGW_ERROR_LOG:-/dev/stderr}" "$@"
