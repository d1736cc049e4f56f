#!/usr/bin/env bash
# The cluster's own check, end to end: build (cached), up, a pod with the local pause
# image reaches Running, the plugin's image (make image) runs as the DaemonSet of
# deploy/ and the node advertises devices.kubevirt.io/iommufd, a pod that requests one
# gets it (a real kubelet's Allocate), down, up again, down. Leaves the machine as found.
# Usage: tests/cluster/smoke.sh            (needs root; ends with 'N passed, N failed')
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cluster=$here/cluster.sh
passed=0
failed=0

check() { # NAME COMMAND...: one named check
	local name=$1
	shift
	if "$@"; then
		echo "ok: $name"
		passed=$((passed + 1))
	else
		echo "FAILED: $name"
		failed=$((failed + 1))
	fi
}

# The machine has one kubelet root: wait for any other user of the cluster (the pytest
# session in conftest.py holds the same lock from up to down).
exec 7>/run/iommufd-cluster.lock
if ! flock -n 7; then
	echo "smoke: waiting for another user of the cluster (/run/iommufd-cluster.lock)"
	flock 7
fi

cleanup() { "$cluster" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$here/build.sh" >/dev/null
(cd "$root" && make image) >/dev/null
archive=$root/build-image/iommufd-device-plugin-$(dpkg --print-architecture).tar
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$root/meson.build" | head -1)
image=docker.io/library/iommufd-device-plugin:$version

up() {
	"$cluster" up || return 1
	eval "$("$cluster" env)"
}

pause_pod_runs() {
	kubectl run smoke-pause --image=localhost/iommufd-cluster/pause:1 --image-pull-policy=Never \
		--restart=Never >/dev/null &&
		kubectl wait --for=condition=Ready pod/smoke-pause --timeout=60s >/dev/null
}

plugin_advertises() {
	local overlay n
	overlay=$(mktemp -d)
	# An overlay of deploy/: the imported image, never pulled, and best-effort RLIMIT_MODE
	# (this node's /dev/iommu is a stand-in without the ioctl).
	cat >"$overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$overlay" "$root/deploy")
images:
  - name: set-your-registry.invalid/iommufd-device-plugin
    newName: ${image%:*}
    newTag: $version
patches:
  - target: {kind: DaemonSet, name: iommufd-device-plugin}
    patch: |
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: IOMMUFD_DP_RLIMIT_MODE, value: best-effort}
      - op: replace
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: Never
EOF
	"$cluster" import-image "$archive" "$image" >/dev/null 2>&1 &&
		kubectl apply -k "$overlay" >/dev/null &&
		kubectl -n kube-system rollout status ds/iommufd-device-plugin --timeout=90s >/dev/null || return 1
	rm -rf "$overlay"
	for _ in $(seq 1 30); do
		n=$(kubectl get node "$IOMMUFD_CLUSTER_NODE" -o jsonpath='{.status.allocatable.devices\.kubevirt\.io/iommufd}')
		if [ -n "$n" ] && [ "$n" -gt 0 ]; then
			echo "node $IOMMUFD_CLUSTER_NODE allocatable devices.kubevirt.io/iommufd: $n"
			return 0
		fi
		sleep 1
	done
	return 1
}

allocation_works() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: smoke-consumer}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: localhost/iommufd-cluster/pause:1
    imagePullPolicy: Never
    resources:
      limits: {devices.kubevirt.io/iommufd: "1"}
EOF
	kubectl wait --for=condition=Ready pod/smoke-consumer --timeout=60s >/dev/null &&
		kubectl -n kube-system logs ds/iommufd-device-plugin | grep 'allocated iommufd' >/dev/null
}

t0=$(date +%s)
check "up" up
check "a pod with the local pause image is Running" pause_pod_runs
check "the plugin's DaemonSet runs and the node advertises the resource" plugin_advertises
check "a pod requesting devices.kubevirt.io/iommufd gets one" allocation_works
check "down" "$cluster" down
check "up again" up
check "a pod runs after the second up" pause_pod_runs
check "down again" "$cluster" down
check "down left no kubelet root, state dir or bridge" \
	bash -c '! [ -e /var/lib/kubelet ] && ! [ -e "${IOMMUFD_CLUSTER_STATE:-/var/lib/iommufd-cluster}" ] && ! ip link show iommufdbr0 >/dev/null 2>&1'
echo "smoke: $(($(date +%s) - t0)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
