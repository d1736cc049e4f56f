#!/bin/sh
# Runs the integration suite against one build of the daemon.
#   tests/integration/run.sh [BUILD_DIR] [pytest args...]
# BUILD_DIR (default: <repo>/build) holds iommufd-device-plugin and iommufd-receive;
# PLUGIN_BIN / RECEIVE_BIN in the environment override it. Sanitizer builds are
# detected by the harness; their reports fail the test that produced them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bindir=${1:-$repo/build}
[ $# -gt 0 ] && shift
bindir=$(cd "$bindir" && pwd)
export PLUGIN_BIN="${PLUGIN_BIN:-$bindir/iommufd-device-plugin}"
export RECEIVE_BIN="${RECEIVE_BIN:-$bindir/iommufd-receive}"
for bin in "$PLUGIN_BIN" "$RECEIVE_BIN"; do
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing; build first (meson setup build && ninja -C build)" >&2
    exit 1
  fi
done
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
# /usr/bin/python3: the Debian interpreter that sees python3-grpcio and python3-protobuf.
export PYTHONDONTWRITEBYTECODE=1
cd "$repo"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration "$@"
