#!/usr/bin/env bash
# Builds the Go DRA driver that bench/dra/run.sh measures ours against (peer/go.mod:
# Kubernetes' DRA test driver at the cluster's version, from the Go module proxy, checked
# against peer/go.sum) into OUT, static, stripped, as tests/cluster/build.sh builds.
#   bench/dra/build-peer.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-peer.sh OUT}
cache=${IOMMUFD_CLUSTER_CACHE:-/var/cache/iommufd-device-plugin}
export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOTOOLCHAIN=local
# go.sum is committed: nothing here may change it.
export GOFLAGS="-modcacherw -mod=readonly"
command -v go >/dev/null || { echo "build-peer.sh: no go on PATH (Go 1.26 is needed)" >&2; exit 1; }
cd "$here/peer"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out" k8s.io/kubernetes/test/e2e/dra/test-driver
echo "build-peer.sh: $out ($(go list -m -f '{{.Path}} {{.Version}}' k8s.io/kubernetes), $(stat -c %s "$out") bytes)"
