#!/usr/bin/env bash
# Measures what running the plugin as a pod adds beside the plugin's own process: the
# pod's containerd-shim-runc-v2 and its pause container. A private containerd (Debian's
# containerd and runc packages; its own root, state and socket under a temporary
# directory, the CRI plugin off) runs a pause container and the image's plugin in one
# shim, grouped as the CRI groups a pod's containers (io.containerd.runc.v2.group), and
# VmRSS and Pss of the three processes are read from /proc. A measurement, not a test:
# no figure is judged. docs/install.md, "Without a pod: systemd", has the results.
#   tests/deploy/measure-pod-cost.sh [RUNS]     (needs root; make image first)
# pause is Kubernetes' build/pause/linux/pause.c logic, built like it (gcc -Os -static,
# stripped) against Debian 12's glibc: registry.k8s.io's image is not fetched.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
image=build-image/iommufd-device-plugin-amd64.tar
[ -f "$image" ] || { echo "measure-pod-cost: $image missing: make image" >&2; exit 1; }
for tool in containerd ctr containerd-shim-runc-v2 runc gcc; do
	command -v "$tool" >/dev/null || { echo "measure-pod-cost: $tool missing (apt-get install containerd runc gcc)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/pod-cost.XXXXXX)
containerd_pid=
cleanup() {
	if [ -n "$containerd_pid" ]; then
		for id in $(ctr --address "$work/containerd.sock" task ls -q 2>/dev/null); do
			ctr --address "$work/containerd.sock" task kill -s KILL "$id" >/dev/null 2>&1 || true
		done
		sleep 1
		kill "$containerd_pid" 2>/dev/null || true
		wait "$containerd_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/pause" "$work/plugin/dp" "$work/plugin/fd" "$work/oci"
cat >"$work/pause.c" <<'EOF'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void sigdown(int signo) { (void)signo; _exit(0); }
static void sigreap(int signo) { (void)signo; while (waitpid(-1, NULL, WNOHANG) > 0) ; }
int main(void) {
	if (getpid() != 1) return 1;
	struct sigaction down = {.sa_handler = sigdown}, reap = {.sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP};
	sigaction(SIGINT, &down, NULL); sigaction(SIGTERM, &down, NULL); sigaction(SIGCHLD, &reap, NULL);
	for (;;) pause();
}
EOF
gcc -Os -Wall -Werror -static -o "$work/pause/pause" "$work/pause.c"
strip "$work/pause/pause"
# The image's one layer as the plugin container's root file system.
tar -xf "$image" -C "$work/oci"
layer=$(/usr/bin/python3 -c '
import json, sys
d = sys.argv[1] + "/blobs/sha256/"
m = json.load(open(sys.argv[1] + "/index.json"))["manifests"][0]["digest"].split(":")[1]
print(d + json.load(open(d + m))["layers"][0]["digest"].split(":")[1])' "$work/oci")
tar -xzf "$layer" -C "$work/plugin"

cat >"$work/config.toml" <<EOF
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
EOF
containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
ctr_() { ctr --address "$work/containerd.sock" "$@"; }
for _ in $(seq 100); do ctr_ version >/dev/null 2>&1 && break; sleep 0.1; done

mem() { # mem PID: "VmRSS Pss" in KiB
	echo "$(awk '/^VmRSS/{print $2}' "/proc/$1/status") $(awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup")"
}
printf '%-4s %-26s %-26s %-26s\n' run "containerd-shim RSS/Pss KiB" "pause RSS/Pss KiB" "plugin RSS/Pss KiB"
for run in $(seq "$runs"); do
	ctr_ run -d --rootfs "$work/pause" "pause$run" /pause >/dev/null
	ctr_ run -d --label "io.containerd.runc.v2.group=pause$run" --rootfs "$work/plugin" "plugin$run" \
		/usr/bin/iommufd-device-plugin --kubelet-dir /dp --socket-dir /fd --metrics-address 127.0.0.1:9110 \
		>/dev/null 2>&1
	sleep 2 # settled: the plugin waits for kubelet.sock, the pause container sleeps
	pause_pid=$(ctr_ task ls | awk -v id="pause$run" '$1 == id {print $2}')
	plugin_pid=$(ctr_ task ls | awk -v id="plugin$run" '$1 == id {print $2}')
	shim_pid=$(awk '{print $4}' "/proc/$pause_pid/stat")
	[ "$(awk '{print $4}' "/proc/$plugin_pid/stat")" = "$shim_pid" ] ||
		{ echo "measure-pod-cost: the two containers are not in one shim" >&2; exit 1; }
	printf '%-4s %-26s %-26s %-26s\n' "$run" "$(mem "$shim_pid")" "$(mem "$pause_pid")" "$(mem "$plugin_pid")"
	for id in "plugin$run" "pause$run"; do
		ctr_ task kill -s KILL "$id" >/dev/null
		for _ in $(seq 100); do ctr_ task rm "$id" >/dev/null 2>&1 && break; sleep 0.1; done
		ctr_ container rm "$id" >/dev/null
	done
done
echo "containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"
