#!/usr/bin/env bash
# The layering of ngx_ai_gateway_module/src (../shared/DESIGN.md, README
# "Architecture"), checked on every `make test`: every #include runs down
# the layers.  A file may include the headers of its own folder, of the
# folders its row below allows, and of lib/; lib/ includes no src/ header
# and no nginx header.  Exit 1, with file:line and the include, on any
# include that runs up or sideways.
#
#   scripts/check-layers.sh [MODULE_DIR]   default: ngx_ai_gateway_module
set -euo pipefail

# folder   layer       may include (besides itself and lib/)
TABLE='
core       core        cache limit balance flight store bucket redis base
cache      policy      flight store base
limit      policy      bucket base
balance    policy      base
flight     mechanism   base
store      mechanism   redis base
bucket     mechanism   redis base
redis      mechanism   base
base       base
'

# Until the files are in their folders: where each one goes (by name)
OLD_LAYOUT='
ngx_http_ai_gateway_module.c          core
ngx_http_ai_gateway_module.h          core
ngx_http_ai_gateway_cachez.c          core
ngx_http_ai_gateway_cache_purge.c     core
ngx_http_ai_gateway_stats.c           base
ngx_http_ai_gateway_stats.h           base
ngx_http_ai_gateway_request.c         base
ngx_http_ai_gateway_request.h         base
ngx_http_ai_gateway_cache.c           cache
ngx_http_ai_gateway_cache.h           cache
ngx_http_ai_gateway_cache_body.c      cache
ngx_http_ai_gateway_cache_filter.c    cache
ngx_http_ai_gateway_cache_wait.c      cache
ngx_http_ai_gateway_flight.c          flight
ngx_http_ai_gateway_flight.h          flight
ngx_http_ai_gateway_store.h           store
ngx_http_ai_gateway_store_shm.c       store
ngx_http_ai_gateway_store_redis.c     store
ngx_http_ai_gateway_store_near.c      store
ngx_http_ai_gateway_redis.c           redis
ngx_http_ai_gateway_redis.h           redis
ngx_http_ai_gateway_limit_zone.c      bucket
ngx_http_ai_gateway_limit_redis.c     bucket
ngx_http_ai_gateway_limit_lease.c     bucket
'

dir=${1:-$(cd "$(dirname "$0")/.." && pwd)/ngx_ai_gateway_module}
root=$(dirname "$dir")
src=$dir/src
lib=$dir/lib
bad=0

# the folder of a file under src/: its old-layout place, else its directory
folder() {
    local f=${1#"$src"/} old
    old=$(awk -v n="${f##*/}" '$1 == n { print $2 }' <<<"$OLD_LAYOUT")
    if [ -n "$old" ]; then echo "$old"; elif [[ $f == */* ]]; then
        echo "${f%%/*}"; fi
}

# where a quoted include is found: next to the file, or on the include
# path of the module's config (src/, lib/), as the compiler looks
resolve() {
    local from=$1 name=$2 d
    for d in "$(dirname "$from")" "$src" "$src/limit" "$lib"; do
        if [ -f "$d/$name" ]; then echo "$d/$name"; return; fi
    done
}

complain() {
    echo "$1:$2: $3" >&2
    bad=1
}

while IFS= read -r file; do
    from=$(folder "$file")
    rel=${file#"$root"/}
    allowed=$(awk -v f="$from" '$1 == f { $1 = ""; $2 = ""; print }' \
                  <<<"$TABLE")

    if [ -z "$from" ] || ! awk -v f="$from" '$1 == f { ok = 1 }
                                            END { exit !ok }' <<<"$TABLE"
    then
        complain "$rel" 1 "not in a folder of the table"
        continue
    fi

    while IFS=: read -r line text; do
        name=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$text")
        [ -n "$name" ] || continue

        header=$(resolve "$file" "$name")

        if [ -z "$header" ]; then
            complain "$rel" "$line" "$text (not found)"
            continue
        fi

        case $header in "$lib"/*) continue ;; esac

        to=$(folder "$header")

        if [ "$to" != "$from" ] && ! grep -qw -- "$to" <<<"$allowed"; then
            complain "$rel" "$line" "$text ($from may not include $to)"
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$file" || true)
done < <(find "$src" -name '*.[ch]' | sort)

# lib/: pure C, on its own
while IFS=: read -r file line text; do
    name=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]\([^">]*\)[">].*/\1/p' <<<"$text")
    case $text in
    *'"'*) [ -f "$lib/$name" ] \
               || complain "${file#"$root"/}" "$line" "$text (lib/ includes lib/ only)" ;;
    *'<ngx_'*|*'<nginx'*)
           complain "${file#"$root"/}" "$line" "$text (no nginx header in lib/)" ;;
    esac
done < <(grep -Hn '^[[:space:]]*#[[:space:]]*include' "$lib"/*.[ch] || true)

if [ "$bad" != 0 ]; then
    echo "check-layers: includes that run up the layers (see DESIGN.md)" >&2
    exit 1
fi

echo "check-layers: every include runs down the layers"
