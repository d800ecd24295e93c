#!/usr/bin/env bash
# Install what /dashboard needs from the npm registry: uPlot, at the exact
# version nginx-conf/dashboard/package-lock.json pins (`npm ci`: that
# version, its integrity hash checked, no install scripts run), then copy
# the two files the page loads, and uPlot's licence, into DIR/vendor/.
# scripts/render-conf.sh copies DIR/vendor/ next to the rendered config,
# where nginx serves it as /dashboard/vendor/: the page loads nothing from
# anywhere but this nginx.
#
#   scripts/install-dashboard.sh DIR      `make` runs it with build/dashboard;
#                                         docker/nginx.Dockerfile copies the
#                                         vendor/ files from there
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
src=$repo/nginx-conf/dashboard

command -v npm >/dev/null || {
    echo "install-dashboard: npm missing (scripts/deps.sh dashboard)" >&2
    exit 1
}

mkdir -p "$dir"
cp "$src/package.json" "$src/package-lock.json" "$dir/"
npm ci --prefix "$dir" --ignore-scripts --no-audit --no-fund --loglevel=warn

dist=$dir/node_modules/uplot/dist
mkdir -p "$dir/vendor"
cp "$dist/uPlot.iife.min.js" "$dist/uPlot.min.css" "$dir/vendor/"
cp "$dir/node_modules/uplot/LICENSE" "$dir/vendor/uPlot.LICENSE"
chmod 644 "$dir"/vendor/*
