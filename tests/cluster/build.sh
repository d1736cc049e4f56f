#!/usr/bin/env bash
# Builds, once, everything the single-node test cluster runs: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl, containerd (+ shim, ctr),
# runc and the CNI plugins, from the versions pinned in tools/ (go.mod + go.sum of three
# modules), and the pause image (pause.c, packed as an OCI archive without any engine).
# Output: /var/cache/iommufd-device-plugin/cluster/<key>/{bin,images}, key = a hash of
# the pins, this script and pause.c, so changing a version rebuilds and an unchanged
# tree is a cache hit that costs one hash. The bin dir is the last line on stdout.
# Usage: tests/cluster/build.sh        (IOMMUFD_CLUSTER_CACHE overrides the cache root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${IOMMUFD_CLUSTER_CACHE:-/var/cache/iommufd-device-plugin}

say() { echo "cluster-build: $*" >&2; }
die() { say "error: $*"; exit 1; }

inputs=(
	tools/go.mod tools/go.sum tools/etcd/go.mod tools/etcd/go.sum
	tools/runtime/go.mod tools/runtime/go.sum build.sh pause.c
)
key=$(cd "$here" && cat "${inputs[@]}" | sha256sum | cut -c1-16) ||
	die "cannot hash the pins in $here/tools"
out=$cache/cluster/$key
if [ -f "$out/done" ]; then
	echo "$out/bin"
	exit 0
fi

[ "$(id -u)" -eq 0 ] || die "needs root (apt-get, and the cache under $cache)"
mkdir -p "$cache/cluster"
# One build at a time: a second caller waits, then finds the first one's result.
exec 9>"$cache/cluster/.lock"
flock 9
if [ -f "$out/done" ]; then
	echo "$out/bin"
	exit 0
fi

# Debian packages: gcc + libseccomp for runc (cgo, seccomp), static libc for pause,
# openssl for cluster.sh's certificates, iptables/iproute2 for the bridge plugin.
packages=(gcc libc6-dev libseccomp-dev pkg-config openssl iproute2 iptables util-linux)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
fi
command -v go >/dev/null || die "no go on PATH (Go 1.26 is needed)"

export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build GOFLAGS=-modcacherw GOTOOLCHAIN=local
# The go.sum files are committed: nothing here may change them.
export GOFLAGS="$GOFLAGS -mod=readonly"
tmp=$out.tmp.$$
rm -rf "$tmp"
mkdir -p "$tmp/bin/cni" "$tmp/images" "$tmp/log/cni"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)

# gobuild MODULE_DIR NAME CGO TAGS PACKAGE [EXTRA LDFLAGS]: one binary into $tmp/bin.
gobuild() {
	local dir=$1 name=$2 cgo=$3 tags=$4 pkg=$5 ldflags="-s -w ${6:-}" t0
	t0=$(date +%s)
	say "building $name ($pkg)"
	if ! (cd "$here/tools/$dir" && CGO_ENABLED=$cgo go build -trimpath -tags "$tags" \
		-ldflags "$ldflags" -o "$tmp/bin/$name" "$pkg") >"$tmp/log/$name.log" 2>&1; then
		cat "$tmp/log/$name.log" >&2
		die "building $name failed"
	fi
	[ -x "$tmp/bin/$name" ] || die "go build gave no $tmp/bin/$name"
	say "built $name in $(($(date +%s) - t0)) s ($(($(stat -c %s "$tmp/bin/$name") / 1048576)) MiB)"
}

# go list -m: the pinned version of MODULE in the module at DIR (for -X version stamps).
modversion() { (cd "$here/tools/$1" && go list -m -f '{{.Version}}' "$2"); }

say "downloading modules"
t_download=$(date +%s)
for d in . etcd runtime; do
	(cd "$here/tools/$d" && go mod download) >"$tmp/log/download.log" 2>&1 || {
		cat "$tmp/log/download.log" >&2
		die "go mod download in tools/$d failed"
	}
done
say "downloaded modules in $(($(date +%s) - t_download)) s"

# Kubernetes: the version stamps its own build (hack/lib/version.sh) sets, so the node
# and kubectl report v1.37.x instead of v0.0.0-master.
kver=$(modversion . k8s.io/kubernetes)
kminor=$(echo "$kver" | cut -d. -f2)
kx=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kx+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kminor -X $pkg.gitTreeState=clean"
done
for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
	gobuild . "$c" 0 "" "k8s.io/kubernetes/cmd/$c" "$kx"
done

gobuild etcd etcd 0 "" go.etcd.io/etcd/server/v3

cver=$(modversion runtime github.com/containerd/containerd/v2)
cx="-X github.com/containerd/containerd/v2/version.Version=$cver -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"
ctags="no_btrfs no_devmapper no_zfs"
gobuild runtime containerd 0 "$ctags" github.com/containerd/containerd/v2/cmd/containerd "$cx"
gobuild runtime containerd-shim-runc-v2 0 "$ctags" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 "$cx"
gobuild runtime ctr 0 "$ctags" github.com/containerd/containerd/v2/cmd/ctr "$cx"
# runc needs cgo (its nsenter is C); seccomp through Debian's libseccomp, as upstream.
rver=$(modversion runtime github.com/opencontainers/runc)
gobuild runtime runc 1 "seccomp urfave_cli_no_docs" github.com/opencontainers/runc "-X main.version=${rver#v}"
for p in ipam/host-local main/bridge main/loopback meta/portmap; do
	gobuild runtime "cni/${p#*/}" 0 "" "github.com/containernetworking/plugins/plugins/$p"
done

# The pause image: pause.c static, one uncompressed layer, an OCI image layout written
# by hand (no engine, no registry), tarred as `ctr images import` reads it.
say "building the pause image"
gcc -static -O2 -Wall -Werror -o "$tmp/bin/pause" "$here/pause.c" || die "compiling pause.c failed"
strip "$tmp/bin/pause"
oci=$tmp/oci
mkdir -p "$oci/blobs/sha256" "$tmp/rootfs"
cp "$tmp/bin/pause" "$tmp/rootfs/pause"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/rootfs" -cf "$tmp/layer.tar" pause
blob() { # FILE MEDIATYPE: moves FILE into blobs/, prints its descriptor
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	mv "$1" "$oci/blobs/sha256/$d"
	printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$d" "$s"
}
diffid=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
layer=$(blob "$tmp/layer.tar" application/vnd.oci.image.layer.v1.tar)
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"created":"1970-01-01T00:00:00Z"}' \
	"$diffid" >"$tmp/config.json"
config=$(blob "$tmp/config.json" application/vnd.oci.image.config.v1+json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
	"$config" "$layer" >"$tmp/manifest.json"
manifest=$(blob "$tmp/manifest.json" application/vnd.oci.image.manifest.v1+json)
pause_ref=localhost/iommufd-cluster/pause:1
printf '{"schemaVersion":2,"manifests":[%s]}' \
	"${manifest%\}},\"annotations\":{\"io.containerd.image.name\":\"$pause_ref\",\"org.opencontainers.image.ref.name\":\"1\"},\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}" \
	>"$oci/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$oci" -cf "$tmp/images/pause.tar" oci-layout index.json blobs
echo "$pause_ref" >"$tmp/images/pause.ref"
rm -rf "$oci" "$tmp/rootfs" "$tmp/config.json" "$tmp/manifest.json"

cat >"$tmp/versions" <<EOF
kubernetes $kver
etcd $(modversion etcd go.etcd.io/etcd/server/v3)
containerd $cver
runc $rver
cni-plugins $(modversion runtime github.com/containernetworking/plugins)
EOF
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
touch "$out/done"
# Keep the three newest builds (another checkout may pin other versions); drop the rest.
# shellcheck disable=SC2012 # the names are hex keys
ls -1dt "$cache/cluster"/*/ | tail -n +4 | while read -r old; do
	say "removing the old build $old"
	rm -rf "$old"
done
say "done in $(($(date +%s) - start)) s: $out"
echo "$out/bin"
