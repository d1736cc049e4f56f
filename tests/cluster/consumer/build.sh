#!/usr/bin/env bash
# Builds the consumer as a static, stripped binary.
# Usage: tests/cluster/consumer/build.sh [OUT]   (default: tests/cluster/consumer/out/iommufd-consumer)
# Env: GOARCH (default: the host's). The module and build caches live under
# /var/cache/iommufd-device-plugin/go, shared across checkouts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out/iommufd-consumer}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
mkdir -p "$(dirname "$out")"

cache=/var/cache/iommufd-device-plugin/go
mkdir -p "$cache/mod" "$cache/build"
export GOMODCACHE=$cache/mod GOCACHE=$cache/build
export CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=${GOTOOLCHAIN:-local}

command -v go >/dev/null || { echo "build.sh: go not found (PATH=$PATH)" >&2; exit 1; }
cd "$here"
go build -trimpath -buildvcs=false -ldflags='-s -w' -o "$out" .
if ! file -b "$out" 2>/dev/null | grep 'statically linked' >/dev/null; then
	command -v file >/dev/null && { echo "build.sh: $out is not statically linked" >&2; exit 1; }
fi
echo "$out"
