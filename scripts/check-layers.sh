#!/usr/bin/env bash
# The layering of ngx_ai_gateway_module/src (../shared/DESIGN.md, README
# "Architecture"), checked on every `make test`: every #include runs down
# the layers.  A file may include the headers of its own folder, of the
# folders its row below allows, and of lib/; lib/ includes no src/ header
# and no nginx header.  An include of a src/ header names its folder
# ("base/ngx_http_ai_gateway_conf.h", relative to src/, as the module's
# config sets the include path), so that a reader sees the layer too.
# Exit 1, with file:line and the include, on any include that breaks this.
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

dir=${1:-$(cd "$(dirname "$0")/.." && pwd)/ngx_ai_gateway_module}
root=$(dirname "$dir")
src=$dir/src
lib=$dir/lib
bad=0

complain() {
    echo "$1:$2: $3" >&2
    bad=1
}

row() {
    awk -v f="$1" '$1 == f { $1 = ""; $2 = ""; print; found = 1 }
                   END { exit !found }' <<<"$TABLE"
}

while IFS= read -r file; do
    rel=${file#"$root"/}
    from=${file#"$src"/}
    from=${from%%/*}

    if [[ $from == *.[ch] ]] || ! allowed=$(row "$from"); then
        complain "$rel" 1 "not in a folder of the table"
        continue
    fi

    while IFS=: read -r line text; do
        name=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$text")
        [ -n "$name" ] || continue

        if [[ $name != */* ]] && [ -f "$lib/$name" ]; then
            continue
        fi

        if [[ $name != */* ]] || [ ! -f "$src/$name" ]; then
            complain "$rel" "$line" "$text (not FOLDER/header.h under src/)"
            continue
        fi

        to=${name%%/*}

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
