#!/usr/bin/env bash
# Packs the consumer (built by build.sh: static, CGO_ENABLED=0) into an image from
# scratch, with Debian's buildah and no Docker engine, as an OCI archive that carries
# the image name annotation, so `ctr -n k8s.io images import OUT.tar` (containerd 2.x)
# gives the image its name:
#   tests/cluster/consumer/build-image.sh OUT.tar
# Env: IMAGE (default localhost/iommufd-consumer:test), GOARCH (default the host's:
#   amd64 or arm64), SOURCE_DATE_EPOCH (default: the last commit's time; the image's
#   created time, so the same sources give the same image config).
# The image holds /usr/bin/iommufd-consumer only (entrypoint); no USER is set: the
# pod spec's securityContext chooses the uid.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUT.tar}
case "$out" in /*) ;; *) out=$PWD/$out ;; esac
image=${IMAGE:-localhost/iommufd-consumer:test}
arch=${GOARCH:-$(go env GOARCH 2>/dev/null || dpkg --print-architecture)}
export GOARCH=$arch

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

if ! command -v buildah >/dev/null; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "build-image.sh: buildah missing; apt-get install buildah (needs root)" >&2
		exit 1
	fi
	echo "installing: buildah"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		-o DPkg::Lock::Timeout=600 buildah >/dev/null
fi

work=$(mktemp -d /tmp/iommufd-consumer-image.XXXXXX)
# buildah with its own throw-away storage (vfs: no overlay mounts), so nothing of the
# host's containers storage is touched; removed on exit, the vfs layers included.
bh() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
cleanup() {
	bh rm --all >/dev/null 2>&1 || true
	bh rmi --all --force >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/ctx"
"$here/build.sh" "$work/ctx/iommufd-consumer" >/dev/null
touch -d "@$SOURCE_DATE_EPOCH" "$work/ctx/iommufd-consumer"

ctr=$(bh from --quiet --arch "$arch" --os linux scratch)
bh copy --quiet --chmod 0755 "$ctr" "$work/ctx/iommufd-consumer" /usr/bin/iommufd-consumer
bh config --arch "$arch" --os linux \
	--entrypoint '["/usr/bin/iommufd-consumer"]' --cmd '' \
	--label org.opencontainers.image.title=iommufd-consumer \
	--label org.opencontainers.image.description="KubeVirt v1.9 virt-launcher's iommufd receive (ReceiveIOMMUFD), for iommufd-device-plugin cluster tests" \
	"$ctr"
bh commit --quiet --format oci --squash --identity-label=false \
	--timestamp "$SOURCE_DATE_EPOCH" "$ctr" "$image" >/dev/null

rm -f "$out"
# oci-archive:PATH:NAME writes NAME as org.opencontainers.image.ref.name in index.json,
# which ctr import reads (with --base-name/--index-name unset it uses that name).
bh push --quiet --format oci "$image" "oci-archive:$out:$image"
echo "build-image.sh: $out ($image, linux/$arch, $(stat -c %s "$out") bytes)"
