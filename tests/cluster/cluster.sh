#!/usr/bin/env bash
# A real single-node Kubernetes cluster for the test suite, on loopback only: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd (runc, CDI on,
# cgroupfs) and the kubelet, all built by build.sh from the pins in tools/, with a
# locally built pause image (no registry is reachable, and no pod ever pulls).
#
#   cluster.sh up                  start everything, wait for the node to be Ready
#   cluster.sh down                stop exactly what up started, undo what it changed
#   cluster.sh env                 export lines: KUBECONFIG, PATH, the node's name
#   cluster.sh import-image ARCHIVE [NAME]
#                                  import an OCI archive into the node's image store
#                                  (as NAME, e.g. docker.io/library/foo:1.0, where the
#                                  archive names its image by tag only)
#   cluster.sh status              which recorded processes are alive
#
# Everything lives in $IOMMUFD_CLUSTER_STATE (default /var/lib/iommufd-cluster): certs,
# kubeconfigs, configs, etcd data, containerd root/state, logs/<component>.log, pids/.
# The kubelet's root is /var/lib/kubelet (the device plugin API's fixed path). `up` first
# records what the machine had (paths, sysctls, ip_forward, /dev/iommu, cgroups), so
# `down` removes only what the cluster added; `up` after a crash runs `down` first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${IOMMUFD_CLUSTER_STATE:-/var/lib/iommufd-cluster}
node=${IOMMUFD_CLUSTER_NODE:-localhost}
kubelet_root=/var/lib/kubelet
apiserver_port=6443
etcd_port=2379
service_cidr=10.96.0.0/16
service_ip=10.96.0.1
pod_subnet=10.88.0.0/24
bridge=iommufdbr0
timeout_s=${IOMMUFD_CLUSTER_TIMEOUT:-180}
# Paths that the components create outside $state; down removes those that up found absent.
outside_paths=(
	"$kubelet_root" /var/log/pods /var/log/containers /var/lib/cni /run/containerd
	/run/netns /var/run/kubevirt /etc/kubernetes /var/run/cdi
)
# Sysctls the kubelet sets at start (setupKernelTunables) and the bridge plugin
# (ip_forward); down puts back the values up found.
sysctls=(
	vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
	kernel/keys/root_maxkeys kernel/keys/root_maxbytes net/ipv4/ip_forward
	net/ipv4/conf/all/route_localnet
)
# The one Service a pod of ours dials, without kube-proxy: the kubernetes Service
# (in-cluster configuration, e.g. the DRA driver) DNATed to the API server on loopback.
service_chain=IOMMUFD-CLUSTER-SERVICES
cgroup_root=/sys/fs/cgroup

say() { echo "cluster: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}

bin=
find_bin() {
	bin=$("$here/build.sh" | tail -1) || die "build.sh failed"
	[ -x "$bin/kubelet" ] || die "build.sh gave $bin, which has no kubelet"
}

# The PKI and the components' configuration files (make_pki, kubeconfig, write_configs).
# shellcheck source=tests/cluster/cluster-files.sh
. "$here/cluster-files.sh"

# ---------------------------------------------------------------- processes ----

# start NAME BINARY ARGS...: runs it in its own session, logs/NAME.log, pids/NAME.
start() {
	local name=$1
	shift
	mkdir -p "$state/logs" "$state/pids"
	say "starting $name"
	PATH="$bin:$PATH" setsid "$@" >>"$state/logs/$name.log" 2>&1 </dev/null 7<&- 8<&- &
	echo "$! $1" >"$state/pids/$name"
}

# alive PIDFILE: the recorded process still runs the recorded binary (not a reused pid).
alive() {
	local pid exe
	read -r pid exe <"$1" || return 1
	[ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ]
}

# stop_pid PID: SIGTERM, then SIGKILL after a grace period.
stop_pid() {
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	say "pid $pid ignored SIGTERM for 10 s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for _ in $(seq 1 25); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
}

stop_component() {
	local f=$state/pids/$1 pid exe
	[ -f "$f" ] || return 0
	if alive "$f"; then
		read -r pid exe <"$f"
		say "stopping $1 (pid $pid)"
		stop_pid "$pid"
	fi
	rm -f "$f"
}

# wait_for WHAT COMMAND...: retries COMMAND for up to $timeout_s seconds.
wait_for() {
	local what=$1 t0
	shift
	t0=$(date +%s)
	until "$@" >/dev/null 2>&1; do
		if [ $(($(date +%s) - t0)) -ge "$timeout_s" ]; then
			say "$what: not within $timeout_s s"
			return 1
		fi
		sleep 1
	done
	say "$what ($(($(date +%s) - t0)) s)"
}

kubectl_admin() { "$bin/kubectl" --kubeconfig "$state/kubeconfig/admin" "$@"; }
# ctr_k8s ARGS...: ctr on this cluster's containerd, in the CRI's namespace, without its
# one-line cgroup v1 deprecation warning on every call.
ctr_k8s() {
	local rc=0
	"$bin/ctr" --address "$state/containerd/containerd.sock" -n k8s.io "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2) || rc=$?
	return $rc
}

component_dead() { # NAME: fails with its log's tail if NAME has exited
	if ! alive "$state/pids/$1"; then
		say "$1 exited; the end of $state/logs/$1.log:"
		tail -20 "$state/logs/$1.log" >&2
		return 0
	fi
	return 1
}

# wait_up NAME WHAT COMMAND...: like wait_for, but gives up at once if NAME died.
wait_up() {
	local name=$1 what=$2 t0
	shift 2
	t0=$(date +%s)
	until "$@" >/dev/null 2>&1; do
		if component_dead "$name"; then
			cmd_status >&2
			die "$name did not come up (logs: $state/logs)"
		fi
		if [ $(($(date +%s) - t0)) -ge "$timeout_s" ]; then
			tail -20 "$state/logs/$name.log" >&2
			die "$what: not within $timeout_s s (log: $state/logs/$name.log)"
		fi
		sleep 1
	done
	say "$what ($(($(date +%s) - t0)) s)"
}

# ---------------------------------------------------------------- up ----

record_machine() {
	local p s c
	: >"$state/record/created"
	for p in "${outside_paths[@]}"; do
		[ -e "$p" ] || echo "$p" >>"$state/record/created"
	done
	: >"$state/record/sysctls"
	for s in "${sysctls[@]}"; do
		if [ -r "/proc/sys/$s" ]; then
			echo "$s $(cat "/proc/sys/$s")" >>"$state/record/sysctls"
		fi
	done
	: >"$state/record/iptables"
	record_iptables
	: >"$state/record/cgroups"
	# kubepods: the kubelet's (cgroupfs driver); k8s.io: containerd's shims, per namespace.
	for s in "$cgroup_root"/*; do
		for c in kubepods k8s.io; do
			[ -e "$s/$c" ] || echo "$s/$c" >>"$state/record/cgroups"
		done
	done
}

# The kubelet's iptables chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT,
# in both families): down deletes the rules that jump to KUBE-* chains and the chains,
# for each family that had no KUBE- chain before up.
record_iptables() {
	local t
	for t in iptables ip6tables; do
		command -v "$t-save" >/dev/null || continue
		"$t-save" 2>/dev/null | grep '^:KUBE-' >/dev/null || echo "$t" >>"$state/record/iptables"
	done
}

clean_iptables() {
	local t table rule chain
	[ -f "$state/record/iptables" ] || return 0
	while read -r t; do
		for table in filter nat mangle; do
			{ "$t-save" -t "$table" 2>/dev/null || true; } | { grep -E -- '^-A .* -j KUBE-' || true; } |
				sed 's/^-A /-D /' | while read -r rule; do
					eval "$t -w -t $table $rule" || say "warning: $t -t $table $rule failed"
				done
			for chain in $("$t-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
				"$t" -w -t "$table" -F "$chain" && "$t" -w -t "$table" -X "$chain" ||
					say "warning: could not delete $t -t $table $chain"
			done
		done
	done <"$state/record/iptables"
	return 0
}

# /dev/iommu: the plugin opens it; this machine has no IOMMUFD, so a stand-in char
# device (the /dev/null device numbers, as tests/integration does): the plugin's
# RLIMIT_MODE ioctl then fails with ENOTTY, which --rlimit-mode=best-effort tolerates.
# Pods reach $service_ip:443 (the kubernetes Service, what in-cluster configuration
# dials) as the API server's 127.0.0.1:$apiserver_port: a DNAT in PREROUTING for what
# comes from the pod bridge, and route_localnet so the kernel routes to loopback what
# came in on it (down puts the sysctl back and removes the chain). The API server's
# certificate names $service_ip already. This is the part of kube-proxy our pods need.
route_kubernetes_service() {
	unroute_kubernetes_service # a crashed up's, whose record is gone
	echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet || die "cannot set route_localnet"
	iptables -w -t nat -N "$service_chain" || die "iptables: cannot create $service_chain"
	iptables -w -t nat -A "$service_chain" -i "$bridge" -d "$service_ip/32" -p tcp --dport 443 \
		-j DNAT --to-destination "127.0.0.1:$apiserver_port" || die "iptables: DNAT rule failed"
	iptables -w -t nat -I PREROUTING -j "$service_chain" || die "iptables: PREROUTING jump failed"
}

unroute_kubernetes_service() {
	iptables -w -t nat -S "$service_chain" >/dev/null 2>&1 || return 0
	while iptables -w -t nat -D PREROUTING -j "$service_chain" 2>/dev/null; do :; done
	iptables -w -t nat -F "$service_chain" && iptables -w -t nat -X "$service_chain" ||
		say "warning: could not delete the nat chain $service_chain"
}

make_iommu_standin() {
	if [ ! -e /dev/iommu ]; then
		mknod -m 0666 /dev/iommu c 1 3 || die "mknod /dev/iommu failed"
		echo /dev/iommu >>"$state/record/created"
		say "created the stand-in /dev/iommu (char 1:3)"
	fi
}

# -v 2: the device manager's endpoint changes ("Device plugin connected", "Last device
# plugin for this resource disconnected"), which the rolling-update tests read.
start_kubelet() {
	start kubelet "$bin/kubelet" --config "$state/config/kubelet.yaml" \
		--kubeconfig "$state/kubeconfig/kubelet" --hostname-override "$node" \
		--root-dir "$kubelet_root" --v 2
	wait_up kubelet "node $node registered" kubectl_admin get node "$node"
	wait_up kubelet "node $node Ready" kubectl_admin wait --for=condition=Ready "node/$node" --timeout=5s
}

# restart-kubelet: what a node operator's `systemctl restart kubelet` does; pods and
# containers keep running.
cmd_restart_kubelet() {
	find_bin
	[ -f "$state/pids/kubelet" ] || die "no kubelet of ours is running (cluster.sh up first)"
	stop_component kubelet
	start_kubelet
}

cmd_up() {
	[ "$(id -u)" -eq 0 ] || die "needs root"
	[ "$(stat -fc %T "$cgroup_root")" = tmpfs ] ||
		say "warning: $cgroup_root is not cgroup v1 (tmpfs); this script is only tried on v1"
	if [ -d "$state/record" ] || [ -d "$state/pids" ]; then
		local f running=()
		for f in "$state"/pids/*; do
			if [ -e "$f" ] && alive "$f"; then
				running+=("$(basename "$f")")
			fi
		done
		[ ${#running[@]} -eq 0 ] ||
			die "a cluster is already running from $state (${running[*]}): cluster.sh down first"
		say "a crashed cluster left state in $state: taking it down first"
		cmd_down
	fi
	local t0
	t0=$(date +%s)
	find_bin
	mkdir -p "$state/record"
	echo "$bin" >"$state/record/bin"
	record_machine
	make_iommu_standin
	make_pki
	kubeconfig admin admin
	kubeconfig controller-manager controller-manager
	kubeconfig scheduler scheduler
	kubeconfig kubelet kubelet
	write_configs

	start etcd "$bin/etcd" --name default --data-dir "$state/etcd" \
		--listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
		--listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
		--initial-cluster "default=http://127.0.0.1:$((etcd_port + 1))" \
		--unsafe-no-fsync --log-level warn
	wait_up etcd "etcd ready" bash -c "exec 3<>/dev/tcp/127.0.0.1/$etcd_port"

	local p=$state/pki
	# --endpoint-reconciler-type=none: the kubernetes Service's endpoint would be
	# 127.0.0.1, which the API rejects for endpoints; nothing here needs it.
	start kube-apiserver "$bin/kube-apiserver" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$apiserver_port" \
		--endpoint-reconciler-type none \
		--etcd-servers "http://127.0.0.1:$etcd_port" \
		--tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
		--client-ca-file "$p/ca.crt" \
		--kubelet-client-certificate "$p/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$p/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$p/ca.crt" \
		--kubelet-preferred-address-types Hostname \
		--authorization-mode Node,RBAC \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--service-cluster-ip-range "$service_cidr" \
		--enable-admission-plugins NodeRestriction \
		--allow-privileged=true --v 1
	wait_up kube-apiserver "kube-apiserver ready" kubectl_admin get --raw /readyz

	start kube-controller-manager "$bin/kube-controller-manager" \
		--kubeconfig "$state/kubeconfig/controller-manager" \
		--authentication-kubeconfig "$state/kubeconfig/controller-manager" \
		--authorization-kubeconfig "$state/kubeconfig/controller-manager" \
		--bind-address 127.0.0.1 --leader-elect=false \
		--service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
		--use-service-account-credentials \
		--cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
		--controllers '*' --service-cluster-ip-range "$service_cidr" --v 1
	start kube-scheduler "$bin/kube-scheduler" \
		--kubeconfig "$state/kubeconfig/scheduler" \
		--authentication-kubeconfig "$state/kubeconfig/scheduler" \
		--authorization-kubeconfig "$state/kubeconfig/scheduler" \
		--bind-address 127.0.0.1 --leader-elect=false --v 1

	mkdir -p "$state/containerd" "$state/runc"
	start containerd "$bin/containerd" --config "$state/config/containerd.toml"
	wait_up containerd "containerd ready" "$bin/ctr" --address "$state/containerd/containerd.sock" version
	say "importing the pause image"
	ctr_k8s images import "$bin/../images/pause.tar" >/dev/null ||
		die "ctr could not import the pause image"

	route_kubernetes_service
	start_kubelet
	wait_up kube-controller-manager "default service account" kubectl_admin get serviceaccount default
	say "up in $(($(date +%s) - t0)) s; run: eval \"\$($0 env)\""
}

# ---------------------------------------------------------------- down ----

# umount_under PREFIX...: unmounts every mount at or below the prefixes, deepest first.
umount_under() {
	local prefix m
	for prefix in "$@"; do
		[ -n "$prefix" ] || continue
		{ findmnt -rn -o TARGET || true; } | awk -v p="$prefix" '$0 == p || index($0, p "/") == 1' |
			awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2- |
			while read -r m; do
				m=$(printf '%b' "$m") # findmnt escapes spaces as \x20
				umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
					say "warning: could not unmount $m"
			done
	done
}

# kill_shims: the containerd shims of this cluster, running or left by a crashed run:
# the processes whose executable is the recorded bin dir's shim and whose command line
# names this state dir's containerd socket.
kill_shims() {
	local p pids=() shim_bin
	[ -f "$state/record/bin" ] || return 0
	shim_bin=$(cat "$state/record/bin")/containerd-shim-runc-v2
	for p in /proc/[0-9]*; do
		if [ "$(readlink "$p/exe" 2>/dev/null)" = "$shim_bin" ] &&
			tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -F -- "-address $state/containerd/containerd.sock " >/dev/null; then
			pids+=("${p#/proc/}")
		fi
	done
	for p in "${pids[@]}"; do
		say "stopping containerd shim (pid $p)"
		stop_pid "$p"
	done
	return 0
}

# The kubelet's cgroups (kubepods) in every v1 hierarchy: kill what still runs in them
# (containers of a crashed run), then remove them, deepest first, if up created them.
clean_cgroups() {
	local c pid
	[ -f "$state/record/cgroups" ] || return 0
	while read -r c; do
		[ -d "$c" ] || continue
		for pid in $(find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
			kill -KILL "$pid" 2>/dev/null || true
		done
	done <"$state/record/cgroups"
	sleep 0.5
	while read -r c; do
		if [ -d "$c" ]; then
			find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
		fi
		if [ -d "$c" ]; then
			say "warning: could not remove $c"
		fi
	done <"$state/record/cgroups"
	return 0
}

cmd_down() {
	[ "$(id -u)" -eq 0 ] || die "needs root"
	[ -d "$state" ] || {
		say "nothing to take down ($state does not exist)"
		return 0
	}
	say "taking the cluster in $state down"
	local ctr_bin="" c line
	[ -f "$state/pids/containerd" ] && read -r _ c <"$state/pids/containerd" && ctr_bin=$(dirname "$c")/ctr
	stop_component kube-scheduler
	stop_component kube-controller-manager
	stop_component kubelet
	# Containers first, through containerd while it runs: kill and delete every task
	# (that unmounts their root filesystems) and remove the pod sandboxes' networks.
	if [ -f "$state/pids/containerd" ] && alive "$state/pids/containerd" && [ -x "$ctr_bin" ]; then
		local ctr=("$ctr_bin" --address "$state/containerd/containerd.sock" -n k8s.io)
		for c in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
			"${ctr[@]}" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
		done
		sleep 0.5
		for c in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
			"${ctr[@]}" tasks delete -f "$c" >/dev/null 2>&1 || true
		done
	fi
	stop_component containerd
	kill_shims
	stop_component kube-apiserver
	stop_component etcd
	clean_cgroups
	clean_iptables
	unroute_kubernetes_service
	# What a crashed run may have left: mounts under our dirs and the pods' netns.
	local created=()
	[ -f "$state/record/created" ] && mapfile -t created <"$state/record/created"
	umount_under "$state" "$kubelet_root" /run/containerd
	for c in /run/netns/cni-*; do
		[ -e "$c" ] || continue
		umount "$c" 2>/dev/null || umount -l "$c" 2>/dev/null || true
		rm -f "$c"
	done
	if ip link show "$bridge" >/dev/null 2>&1; then
		ip link delete "$bridge" || say "warning: could not delete the bridge $bridge"
	fi
	# Put the sysctls back.
	if [ -f "$state/record/sysctls" ]; then
		while read -r c line; do
			[ "$(cat "/proc/sys/$c")" = "$line" ] || echo "$line" >"/proc/sys/$c" ||
				say "warning: could not restore $c to $line"
		done <"$state/record/sysctls"
	fi
	for c in "${created[@]}"; do
		[ -e "$c" ] || continue
		umount_under "$c"
		rm -rf "$c" || say "warning: could not remove $c"
	done
	# A kubelet root we did not create: still remove what a kubelet leaves in it.
	if [ -d "$kubelet_root" ]; then
		say "note: $kubelet_root existed before up; leaving it"
	fi
	if [ "${IOMMUFD_CLUSTER_KEEP_LOGS:-0}" = 1 ]; then
		find "$state" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
		say "down; logs kept in $state/logs"
	else
		rm -rf "$state"
		say "down"
	fi
}

# ---------------------------------------------------------------- the rest ----

cmd_env() {
	find_bin
	echo "export KUBECONFIG=$state/kubeconfig/admin"
	echo "export PATH=$bin:\$PATH"
	echo "export IOMMUFD_CLUSTER_NODE=$node"
	echo "export CONTAINERD_ADDRESS=$state/containerd/containerd.sock"
	echo "export CONTAINERD_NAMESPACE=k8s.io"
}

cmd_import_image() {
	local archive=${1:?usage: cluster.sh import-image ARCHIVE [NAME]} name=${2:-}
	[ -f "$archive" ] || die "no such archive: $archive"
	find_bin
	alive "$state/pids/containerd" 2>/dev/null || die "containerd is not running (cluster.sh up first)"
	local args=(images import)
	if [ -n "$name" ]; then
		# An archive whose index names its image by tag only (as buildah's oci: push
		# writes it): --base-name makes it NAME's repository with that tag; then NAME.
		args+=(--base-name "${name%:*}")
	fi
	ctr_k8s "${args[@]}" "$archive" || die "ctr could not import $archive"
	if [ -n "$name" ] && ! ctr_k8s images ls -q | grep -xF "$name" >/dev/null; then
		die "imported $archive, but no image is named $name: $(ctr_k8s images ls -q | tr '\n' ' ')"
	fi
	ctr_k8s images ls -q | grep -v '^sha256:' >&2
}

cmd_status() {
	local f
	for f in "$state"/pids/*; do
		[ -e "$f" ] || continue
		if alive "$f"; then echo "$(basename "$f") running"; else echo "$(basename "$f") dead"; fi
	done
}

# up and down, from any caller, one at a time: they share /var/lib/kubelet, the ports and
# the bridge. The lock is on the state dir's parent directory, so no lock file is left.
lock() {
	mkdir -p "$(dirname "$state")"
	exec 8<"$(dirname "$state")"
	flock -w 600 8 || die "another cluster.sh up/down held the lock for 10 minutes"
}

case "${1:-}" in
up) lock; cmd_up ;;
down) lock; cmd_down ;;
env) cmd_env ;;
import-image) shift; cmd_import_image "$@" ;;
restart-kubelet) cmd_restart_kubelet ;;
status) cmd_status ;;
*)
	echo "usage: cluster.sh up|down|env|status|restart-kubelet|import-image ARCHIVE [NAME]" >&2
	exit 2
	;;
esac
