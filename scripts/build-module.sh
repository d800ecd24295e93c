#!/usr/bin/env bash
# Build ngx_ai_gateway_module as a dynamic module of the packaged nginx:
# configure a copy of nginx-dev's source tree with the flags that nginx was
# built with (conf_flags, which include --with-compat), add our module, and
# build only the modules target.
#
#   scripts/build-module.sh OUT_DIR [extra cc flags]
#
# OUT_DIR/ngx_ai_gateway_module.so is the result.  The configured tree is
# kept in OUT_DIR/nginx-src and reconfigured only when the module's
# `config` file or the flags change, so rebuilds are incremental.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
extra_cc=${2:-}
nginx_src=/usr/share/nginx/src
tree=$out/nginx-src
stamp=$tree/.agw-configured

[ -f "$nginx_src/conf_flags" ] || {
    echo "build-module: $nginx_src/conf_flags missing (install nginx-dev)" >&2
    exit 1
}

want="$(cat "$nginx_src/conf_flags" "$repo/ngx_ai_gateway_module/config")
cc: $extra_cc"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    rm -rf "$tree"
    cp -a "$nginx_src" "$tree"
    # shellcheck disable=SC1091
    . "$nginx_src/conf_flags"
    (
        cd "$tree"
        ./configure "${NGX_CONF_FLAGS[@]}" \
            --with-cc-opt="-g -O2 $extra_cc" \
            --with-ld-opt="$extra_cc" \
            --add-dynamic-module="$repo/ngx_ai_gateway_module" \
            > "$tree/configure.log" 2>&1
    ) || { tail -30 "$tree/configure.log" >&2; exit 1; }
    printf '%s' "$want" > "$stamp"
fi

make -s -C "$tree" -f objs/Makefile modules
# a new file renamed over the old: an nginx running the old one keeps its
# mapping (a copy written in place would crash its workers)
cp "$tree/objs/ngx_http_ai_gateway_module.so" "$out/.ngx_ai_gateway_module.so.new"
mv -f "$out/.ngx_ai_gateway_module.so.new" "$out/ngx_ai_gateway_module.so"
