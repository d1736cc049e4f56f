#!/usr/bin/env bash
# tests/cluster/build.sh with a progress line every 30 s on stderr (its Go builds take
# minutes each the first time). build.sh itself is part of its cache key, so the
# watching is done from here: the program being built (build.sh's last "building" line)
# and the packages compiled so far (new entries in the Go build cache). Same output and
# exit status as build.sh: the bin dir on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/progress.sh
source "$here/../../scripts/progress.sh"
export PROGRESS_PREFIX=cluster-build
gocache=${IOMMUFD_CLUSTER_CACHE:-/var/cache/iommufd-device-plugin}/go/build
work=$(mktemp -d /tmp/cluster-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
touch "$work/started"

# "building kubelet: 3 programs built, 812 packages compiled": from build.sh's own lines
# and the Go cache's output files (one "-d" file per compiled package) newer than the start.
# shellcheck disable=SC2317 # called by progress_run, by name
describe() {
	local current built packages
	current=$(sed -n 's/^cluster-build: building \([^ ]*\).*/\1/p' "$work/stderr" | tail -n 1)
	built=$(grep -c '^cluster-build: built ' "$work/stderr" || true)
	packages=$(find "$gocache" -type f -name '*-d' -newer "$work/started" 2>/dev/null | wc -l)
	echo "building ${current:-(preparing)}: $built programs built, $packages packages compiled"
}

rc=0
# build.sh's stderr is shown as it comes (tail) and read by describe; stdout is the bin dir.
progress_run 30 describe "$work/stderr" sh -c '"$1" 2>&1 >"$2"' sh "$here/build.sh" "$work/stdout" &
pid=$!
tail -n +1 -F --pid="$pid" "$work/stderr" >&2 2>/dev/null &
wait "$pid" || rc=$?
wait
cat "$work/stdout"
exit "$rc"
