#!/usr/bin/env bash
# The plugin's main job, end to end: a kubelet simulator registers the plugin, lists
# its devices and calls Allocate; a consumer (iommufd-receive, as virt-launcher would)
# connects to the handoff socket and receives the iommufd over SCM_RIGHTS.
# On a host without /dev/iommu the demo boots a kernel with IOMMUFD in qemu and runs
# there, so the ioctl really happens. --host forces the host run (with /dev/null as a
# stand-in device when there is no /dev/iommu).
set -euo pipefail
cd "$(dirname "$0")/.."

where=auto
case "${1:-}" in
--host) where=host ;;
--vm) where=vm ;;
"") ;;
*) echo "usage: scripts/demo.sh [--host|--vm]" >&2; exit 2 ;;
esac

scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

if [ "$where" = vm ] || { [ "$where" = auto ] && [ ! -e /dev/iommu ]; }; then
	echo "This host has no /dev/iommu: running the demo in a qemu guest whose kernel has IOMMUFD."
	exec tests/vm/demo.sh
fi

device=/dev/iommu
rlimit_mode=required
if [ ! -e "$device" ]; then
	device=/dev/null
	# The default, required, would fail the Allocate on /dev/null; the demo wants the handoff.
	rlimit_mode=best-effort
	echo "NOTE: no /dev/iommu here; /dev/null stands in (the RLIMIT_MODE ioctl will fail with ENOTTY,"
	echo "      so the plugin runs with --rlimit-mode best-effort and hands over an unconfigured fd)."
fi
work=$(mktemp -d /tmp/iommufd-demo.XXXXXX)
plugin_pid=
cleanup() {
	[ -n "$plugin_pid" ] && kill "$plugin_pid" 2>/dev/null && wait "$plugin_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/kubelet"

echo "== 1. the kubelet simulator serves $work/kubelet/kubelet.sock"
build/kubelet-sim --kubelet-dir "$work/kubelet" --allocate iommufd0 --timeout 20 >"$work/sim.out" &
sim_pid=$!
sleep 0.2
echo "== 2. the plugin starts, registers, answers ListAndWatch and Allocate"
build/iommufd-device-plugin --kubelet-dir "$work/kubelet" --socket-dir "$work/sockets" \
	--iommu-device "$device" --rlimit-mode "$rlimit_mode" 2>"$work/plugin.log" &
plugin_pid=$!
wait "$sim_pid" || { cat "$work/sim.out" "$work/plugin.log"; exit 1; }
sed 's/^/   kubelet-sim: /' "$work/sim.out"
socket=$(awk '$1 == "mount" { print $3 }' "$work/sim.out")
echo "== 3. a consumer connects to $socket and receives the fd"
build/iommufd-receive --socket "$socket" | sed 's/^/   iommufd-receive: /'
echo "== the plugin's log"
sleep 0.1
sed 's/^/   /' "$work/plugin.log"
