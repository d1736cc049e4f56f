#!/usr/bin/env bash
# Builds the container images without a Docker engine: the fully static musl binaries
# (meson with the machine file of scripts/musl.sh; arm64 is cross-compiled with
# Debian's gcc-aarch64-linux-gnu and musl-dev:arm64), stripped, on
# an empty base (Containerfile), with Debian's buildah, into two OCI archives:
#   build-image/iommufd-device-plugin-<arch>.tar  the device plugin + iommufd-receive
#   build-image/iommufd-dra-driver-<arch>.tar     the DRA driver + iommufd-receive
# Two images, so nodes that never run DRA never pull mbedTLS and the API client (issue 23
# Must 1); build-image/<arch>/bin keeps all three binaries (the release tarball's).
# Reproducible: file times and the image's created time are SOURCE_DATE_EPOCH
# (default: the last commit's time), the archive is written with sorted names and
# fixed owners and times, so the same sources give the same bytes.
# Usage: scripts/image.sh [--arch amd64|arm64] [--binaries-only]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

arch=$(dpkg --print-architecture)
binaries_only=0
while [ $# -gt 0 ]; do
	case "$1" in
	--arch) arch=${2:?--arch wants amd64 or arm64}; shift 2 ;;
	--arch=*) arch=${1#--arch=}; shift ;;
	--binaries-only) binaries_only=1; shift ;;
	*) echo "usage: scripts/image.sh [--arch amd64|arm64] [--binaries-only]" >&2; exit 2 ;;
	esac
done

host_arch=$(dpkg --print-architecture)
case "$arch" in
amd64 | arm64) ;;
*) echo "image.sh: --arch wants amd64 or arm64, not '$arch'" >&2; exit 2 ;;
esac

# The same inputs must give the same bytes: pin every time to the last commit's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -1)
# release.sh passes REVISION, so a build from a copy of the tree without .git matches.
revision=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
# The OCI source/url/vendor labels. The project has no public home yet: set
# IMAGE_SOURCE_URL when you publish (release.sh passes it through); the default is a
# placeholder under .invalid (RFC 2606), never a wrong place.
source_url=${IMAGE_SOURCE_URL:-https://source.invalid/iommufd-device-plugin}
vendor=${IMAGE_VENDOR:-iommufd-device-plugin authors}
out=$root/build-image
mkdir -p "$out"

# install_packages PACKAGE...: apt-get what is missing (the cross toolchain, buildah).
install_packages() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "image.sh: need root to install ${missing[*]} (or install them yourself)" >&2
		return 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

# The musl toolchain and libraries for $arch (scripts/musl.sh installs and caches them,
# multiarch included); its meson machine file is in $machine_file.
machine_file=
ensure_toolchain() {
	scripts/deps.sh
	machine_file=$(scripts/musl.sh --arch "$arch") || return 1
	[ "$arch" = "$host_arch" ] || install_packages qemu-user-static
}

# Builds and strips the binaries into build-image/<arch>/bin; their names in $binaries.
binaries=()
build_binaries() {
	local dir strip_tool setup
	# -O2, Debian's level: -O3 adds 4 KiB (of a 300 KiB budget) to code whose CPU time
	# is ~80% the kernel's (docs/performance.md).
	local options=(-Dstatic_binary=true -Dbuildtype=release -Doptimization=2)
	if [ "$arch" = "$host_arch" ]; then
		dir=build-ship-$arch
		strip_tool=strip
		setup=(--native-file "$machine_file" "${options[@]}")
	elif [ "$host_arch" = amd64 ] && [ "$arch" = arm64 ]; then
		dir=build-ship-$arch
		strip_tool=aarch64-linux-gnu-strip
		setup=(--cross-file "$machine_file" "${options[@]}")
	else
		echo "image.sh: cross builds are set up for amd64 to arm64 only, not $host_arch to $arch" >&2
		return 1
	fi
	local log=$out/$arch-build.log
	# A dir set up with another machine file (older musl libraries) is set up again.
	grep -qsF "$machine_file" "$dir/meson-private/cmd_line.txt" || rm -rf "$dir"
	if ! { [ -f "$dir/build.ninja" ] || meson setup "$dir" --werror "${setup[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		echo "image.sh: setting up $dir failed (log: $log)" >&2
		return 1
	fi
	binaries=(iommufd-device-plugin iommufd-receive iommufd-dra-driver)
	if ! ninja -C "$dir" "${binaries[@]}" >>"$log" 2>&1; then
		cat "$log" >&2
		echo "image.sh: building the $arch binaries failed (log: $log)" >&2
		return 1
	fi
	local bin=$out/$arch/bin
	rm -rf "$bin"
	mkdir -p "$bin"
	for b in "${binaries[@]}"; do
		# --strip-all: the symbols are a third of the file and nobody debugs from the image.
		"$strip_tool" --strip-all -o "$bin/$b" "$dir/$b"
		chmod 0755 "$bin/$b"
		if ! file -b "$bin/$b" | grep 'statically linked' >/dev/null; then
			echo "image.sh: $dir/$b is not statically linked" >&2
			return 1
		fi
	done
	touch -h -d "@$SOURCE_DATE_EPOCH" "$bin"/*
}

# buildah with its own storage under build-image/, so it touches nothing of the host's
# containers and two checkouts never share state; vfs needs no overlay mounts.
buildah_private() {
	buildah --root "$out/storage" --runroot "$out/run" --storage-driver vfs "$@"
}

# tar_reproducibly DIR FILE: FILE is the tar of DIR's contents (names without "./",
# as image tools expect of an OCI archive), same bytes every time.
tar_reproducibly() {
	find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
		--format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$1" -cf "$2" $(cd "$1" && LC_ALL=C ls -A)
}

# build_image PROGRAM TITLE DESCRIPTION: build-image/PROGRAM-<arch>.tar, the image of
# PROGRAM (its entrypoint) and iommufd-receive, with the notices and SBOM of those two
# alone (scripts/licenses.sh on a bin dir of its own), staged in build-image/<arch>/PROGRAM.
build_image() {
	local program=$1 title=$2 description=$3
	local dir=$out/$arch/$program name=localhost/$program:$version-$arch
	rm -rf "$dir"
	mkdir -p "$dir/bin" "$dir/context"
	cp -p "$out/$arch/bin/$program" "$out/$arch/bin/iommufd-receive" "$dir/bin/"
	# Our license and the notices of what is linked in (musl, nghttp2, protobuf-c; mbedTLS
	# for the DRA driver), from the Debian packages the build used; the SBOM beside them.
	scripts/licenses.sh --arch "$arch" "$dir/bin" "$dir"
	cp -p "$dir/bin/"* "$dir/context/"
	cp -rp "$dir/licenses" "$dir/context/licenses"
	cp -p "$dir/sbom.spdx.json" "$dir/context/licenses/sbom.spdx.json"
	find "$dir/context" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

	buildah_private rmi -f "$name" >/dev/null 2>&1 || true
	# --squash: one layer; --timestamp: created time and file times from SOURCE_DATE_EPOCH;
	# --identity-label=false: no buildah version label, so another buildah gives the same.
	buildah_private bud --quiet --squash --no-cache --identity-label=false \
		--timestamp "$SOURCE_DATE_EPOCH" --platform "linux/$arch" --target "$program" \
		--build-arg "PROGRAM=$program" --build-arg "TITLE=$title" --build-arg "DESCRIPTION=$description" \
		--build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
		--build-arg "SOURCE=$source_url" --build-arg "VENDOR=$vendor" \
		-f "$root/Containerfile" -t "$name" "$dir/context" >/dev/null
	buildah_private push --quiet --format oci "$name" "oci:$dir/oci:$version" >/dev/null
	tar_reproducibly "$dir/oci" "$out/$program-$arch.tar"
	buildah_private rmi -f "$name" >/dev/null 2>&1 || true
	echo "image.sh: $out/$program-$arch.tar ($(stat -c %s "$out/$program-$arch.tar") bytes)"
}

ensure_toolchain
build_binaries
# The notices and SBOM of all three binaries, for the release tarball (scripts/release.sh).
scripts/licenses.sh --arch "$arch" "$out/$arch/bin" "$out/$arch"
if [ "$binaries_only" -eq 0 ]; then
	install_packages buildah
	build_image iommufd-device-plugin iommufd-device-plugin \
		"Kubernetes device plugin handing KubeVirt VMs an IOMMUFD fd with per-process pinned-memory accounting"
	build_image iommufd-dra-driver iommufd-dra-driver \
		"Kubernetes DRA driver handing KubeVirt VMs an IOMMUFD fd with per-process pinned-memory accounting"
else
	echo "image.sh: binaries in $out/$arch/bin"
fi
