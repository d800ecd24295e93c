#!/usr/bin/env bash
# Make the base images the Dockerfiles build FROM (debian:12 and
# debian:12-slim) when the engine does not have them and cannot pull them:
# an air-gapped build host, or one whose only way out is a Debian mirror.
#
#   scripts/docker-base-images.sh [--force]
#
# Each missing tag is first pulled; when that fails, a minimal Debian 12
# (bookworm) root file system is made with debootstrap --variant=minbase
# from the Debian mirror apt already uses on this host (or $DEBIAN_MIRROR)
# and imported with `docker import`.  One root file system serves both
# tags: slim differs from the full image only in trimmed docs, which the
# images built here never need.  --force rebuilds both from the mirror.
#
# Needs root (debootstrap), docker, and debootstrap (apt-get install
# debootstrap; installed here when missing).
set -euo pipefail

force=0
[ "${1:-}" = --force ] && force=1

tags=(debian:12 debian:12-slim)
docker=${DOCKER:-docker}

missing=()
for t in "${tags[@]}"; do
    if [ $force -eq 1 ] || ! $docker image inspect "$t" >/dev/null 2>&1; then
        missing+=("$t")
    fi
done
[ ${#missing[@]} -eq 0 ] && { echo "base-images: ${tags[*]} present"; exit 0; }

if [ $force -eq 0 ]; then
    still=()
    for t in "${missing[@]}"; do
        echo "base-images: $t missing, trying docker pull"
        if timeout 60 $docker pull -q "$t" >/dev/null 2>&1; then
            echo "base-images: $t pulled"
        else
            still+=("$t")
        fi
    done
    missing=("${still[@]}")
    [ ${#missing[@]} -eq 0 ] && exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "base-images: debootstrap needs root to make ${missing[*]}" >&2
    exit 1
fi

if ! command -v debootstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# the mirror apt uses: deb822 sources (URIs:) or one-line ones (deb URL ...)
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | awk '$1 == "URIs:" && $2 !~ /security/ { print $2; exit }')
fi
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
             | awk '$1 == "deb" && $0 !~ /security/ {
                        for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')
fi
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/agw-bookworm.XXXXXX)
trap 'rm -rf "$root"' EXIT
# mktemp's 0700 would become the image's / and lock out every non-root user
chmod 755 "$root"

echo "base-images: debootstrap bookworm from $mirror"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" \
        > "$root.log" 2>&1; then
    tail -20 "$root.log" >&2
    rm -f "$root.log"
    echo "base-images: debootstrap failed" >&2
    exit 1
fi
rm -f "$root.log"

# an image, not a machine: no apt caches, no host name of the build host
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/etc/hostname

image=$(tar -C "$root" -c . | $docker import \
            -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'CMD ["bash"]' - "${missing[0]}")
for t in "${missing[@]:1}"; do
    $docker tag "$image" "$t"
done
echo "base-images: made ${missing[*]} ($image)"
