#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the demo need, once: packages
# already installed are skipped, so a second run costs one dpkg query.
set -euo pipefail

packages=(
	# build
	meson ninja-build pkg-config gcc libc6-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler
	# the DRA driver's TLS to the API server (issue 23)
	libmbedtls-dev
	# unit tests, sanitizers, checkers
	libcmocka-dev clang libclang-rt-14-dev valgrind clang-tidy clang-format cppcheck
	# the kernel's kernel-doc script, run on our headers by scripts/check-kernel-doc.py
	linux-kbuild-6.1
	# integration tests: the official gRPC implementation plays the kubelet
	python3 python3-grpcio python3-protobuf protobuf-compiler python3-pytest
	# the real-kernel test: kernel build and a TCG guest
	qemu-system-x86 busybox-static cpio bc flex bison libelf-dev libssl-dev xz-utils make
	rsync kmod
	# shipping (issue 7): /metrics parsed by the Prometheus client in the integration tests,
	# the image (buildah) and its arm64 build (cross gcc, qemu-user), the manifests'
	# validation; the arm64 -dev packages come through multiarch in scripts/image.sh
	python3-prometheus-client buildah file gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
	qemu-user-static python3-kubernetes python3-yaml python3-jsonschema
	# the musl release (issue 13): musl-gcc, and what scripts/musl.sh needs to build
	# nghttp2, protobuf-c and cmocka from Debian's source packages (the arm64 musl-dev
	# comes through multiarch in scripts/musl.sh)
	musl-tools musl-dev cmake dpkg-dev
	# the systemd unit's checks (issue 13): systemd-analyze verify, security and
	# syscall-filter; strace traces the unit's ExecStart for its filter (and counts the
	# benchmark's syscalls, plugin-bench --strace); setpriv applies its capabilities
	systemd strace util-linux
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "installing: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: need root to install packages (or install them yourself): ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
