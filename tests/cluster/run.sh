#!/usr/bin/env bash
# The real-cluster suite: the pinned cluster is built once (cached under
# /var/cache/iommufd-device-plugin), then tests/cluster/test_*.py bring it up, run the
# plugin's DaemonSet and VM-like pods through it, and take it down. Needs root.
# Ends with pytest's summary line. Usage: tests/cluster/run.sh [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/../.."
echo "cluster: building the pinned Kubernetes, etcd, containerd, runc (cached after the first run)"
tests/cluster/build-progress.sh >/dev/null || { echo "cluster: build failed"; echo "0 passed, 1 failed"; exit 1; }
echo "cluster: running the cluster tests"
export PYTHONDONTWRITEBYTECODE=1
args=()
for a in "$@"; do [ -n "$a" ] && args+=("$a"); done
exec /usr/bin/python3 -m pytest -q -s -p no:cacheprovider tests/cluster "${args[@]}"
