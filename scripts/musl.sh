#!/usr/bin/env bash
# The one way to get the musl toolchain and the libraries the release links against.
# Prints the path of a meson machine file (a native file for the host's architecture,
# a cross file for arm64 on amd64) that builds fully static musl binaries:
#   meson setup DIR --native-file "$(scripts/musl.sh)" -Dstatic_binary=true
#   meson setup DIR --cross-file "$(scripts/musl.sh --arch arm64)" -Dstatic_binary=true
#
# The compilers are Debian's: musl-gcc (musl-tools) for amd64, aarch64-linux-musl-gcc
# (musl-dev:arm64, a wrapper that runs gcc-aarch64-linux-gnu with musl's specs) for
# arm64. nghttp2, protobuf-c's runtime, mbedTLS (the DRA driver's TLS) and cmocka (for
# the unit tests) are built with
# them from Debian's own source packages, of the versions installed as -dev packages
# (so Debian's security patches, e.g. nghttp2's CVE-2023-44487 fix, are in), fetched
# with `apt-get source` through a private sources list and unpacked with dpkg-source.
#
# Cached in $IOMMUFD_CACHE (default /var/cache/iommufd-device-plugin) under
#   musl/<arch>-<key>/
# where <key> is the first 16 hex digits of the sha256 of key.txt beside it: the four
# source package versions, the architecture, the compiler's and musl's versions and
# this script's recipe version. A change to any of them builds a new prefix; the same
# inputs reuse it (a cold build takes ~1 min per architecture).
# Usage: scripts/musl.sh [--arch amd64|arm64]
set -euo pipefail
cd "$(dirname "$0")/.."

arch=$(dpkg --print-architecture)
case "${1:-}" in
"") ;;
--arch) arch=${2:?--arch wants amd64 or arm64} ;;
--arch=*) arch=${1#--arch=} ;;
*) echo "usage: scripts/musl.sh [--arch amd64|arm64]" >&2; exit 2 ;;
esac
host_arch=$(dpkg --print-architecture)
# Bump when the recipe below changes what lands in the prefix.
recipe=6

say() { echo "musl.sh: $*" >&2; }
fail() {
	say "$*"
	exit 1
}

case "$host_arch:$arch" in
amd64:amd64)
	cc=musl-gcc
	packages=(musl-tools musl-dev)
	multiarch=x86_64-linux-gnu
	cross=0
	;;
amd64:arm64)
	cc=aarch64-linux-musl-gcc
	packages=(musl-dev:arm64 gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu linux-libc-dev:arm64)
	multiarch=aarch64-linux-gnu
	cross=1
	;;
*) fail "set up for amd64 builds and amd64 -> arm64 cross builds, not $host_arch -> $arch" ;;
esac
packages+=(cmake dpkg-dev libnghttp2-dev libprotobuf-c-dev libcmocka-dev libmbedtls-dev)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep '^install ok installed$' >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || fail "missing packages: ${missing[*]} (apt-get install them as root)"
	if [ "$cross" -eq 1 ] && ! dpkg --print-foreign-architectures | grep -x "$arch" >/dev/null; then
		dpkg --add-architecture "$arch"
		apt-get update -qq
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null ||
		fail "apt-get install ${missing[*]} failed"
fi

# source_version DEV_PACKAGE: the version of its source package, as installed (amd64's).
source_version() {
	dpkg-query -W -f='${source:Version}\n' "$1:$host_arch" 2>/dev/null | head -1
}
nghttp2_version=$(source_version libnghttp2-dev)
protobufc_version=$(source_version libprotobuf-c-dev)
cmocka_version=$(source_version libcmocka-dev)
mbedtls_version=$(source_version libmbedtls-dev)
[ -n "$nghttp2_version" ] && [ -n "$protobufc_version" ] && [ -n "$cmocka_version" ] &&
	[ -n "$mbedtls_version" ] ||
	fail "cannot read the installed versions of libnghttp2-dev, libprotobuf-c-dev, libcmocka-dev, libmbedtls-dev"

cache=${IOMMUFD_CACHE:-/var/cache/iommufd-device-plugin}/musl
mkdir -p "$cache"
key_text="recipe $recipe
arch $arch
nghttp2 $nghttp2_version
protobuf-c $protobufc_version
cmocka $cmocka_version
mbedtls $mbedtls_version
musl-dev $(dpkg-query -W -f='${Version}\n' "musl-dev:$arch" | head -1)
compiler $("$cc" --version | head -1)"
key=$(printf '%s\n' "$key_text" | sha256sum | cut -c1-16)
prefix=$cache/$arch-$key
machine_file=$prefix/meson-$arch.ini

if [ -f "$machine_file" ]; then
	echo "$machine_file"
	exit 0
fi

# One builder at a time per cache; a second caller waits, then finds the result.
exec 9>"$cache/.lock"
flock 9
if [ -f "$machine_file" ]; then
	echo "$machine_file"
	exit 0
fi

# Sources, shared by the architectures: Debian bookworm's source packages.
src=$cache/src
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/parts" "$apt_dir/cache/archives/partial" "$src"
cat >"$apt_dir/sources.list" <<EOF
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
	-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
fetched_lists=0
# fetch SOURCE_PACKAGE VERSION -> the unpacked tree on stdout
fetch() {
	local package=$1 version=$2 dir=$src/$1_$2
	if [ ! -d "$dir" ]; then
		if [ "$fetched_lists" -eq 0 ]; then
			apt-get "${apt_opts[@]}" update >&2 || fail "apt-get update (deb-src bookworm) failed"
			fetched_lists=1
		fi
		local work
		work=$(mktemp -d "$src/.fetch.XXXXXX")
		(cd "$work" && apt-get "${apt_opts[@]}" source --download-only "$package=$version" >&2 &&
			dpkg-source -x ./*.dsc tree >&2) || fail "cannot fetch and unpack $package $version"
		mv "$work/tree" "$dir"
		rm -rf "$work"
	fi
	echo "$dir"
}
nghttp2_src=$(fetch nghttp2 "$nghttp2_version")
protobufc_src=$(fetch protobuf-c "$protobufc_version")
cmocka_src=$(fetch cmocka "$cmocka_version")
mbedtls_src=$(fetch mbedtls "$mbedtls_version")

# Built in a scratch directory, moved into place when complete.
work=$(mktemp -d "$cache/.build-$arch.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/prefix
mkdir -p "$stage/lib/pkgconfig" "$stage/include"
# For size (the release's budget is 300 KiB): -Os, sections so the linker drops what we
# do not call, and no unwind tables (.eh_frame was 28 KiB: C without exceptions never
# unwinds; debuggers and perf use debug info or frame pointers). Their CPU share is
# small (the plugin's time is mostly in the kernel).
cflags="-Os -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables -fno-unwind-tables"
cmake_cross=()
if [ "$cross" -eq 1 ]; then
	cmake_cross=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64
		-DCMAKE_AR="$(command -v aarch64-linux-gnu-ar)" -DCMAKE_RANLIB="$(command -v aarch64-linux-gnu-ranlib)")
fi
cmake_build() { # cmake_build NAME SOURCE [cmake options...]
	local name=$1 source=$2
	shift 2
	say "building $name ($(basename "$source")) for $arch with $cc"
	cmake -S "$source" -B "$work/$name" -DCMAKE_C_COMPILER="$cc" "${cmake_cross[@]}" \
		-DCMAKE_BUILD_TYPE=None -DCMAKE_C_FLAGS="$cflags" -DCMAKE_INSTALL_PREFIX="$stage" \
		-DCMAKE_INSTALL_LIBDIR=lib "$@" >"$work/$name-cmake.log" 2>&1 ||
		{ tail -30 "$work/$name-cmake.log" >&2; fail "$name: cmake failed"; }
	cmake --build "$work/$name" -j"$(nproc)" >"$work/$name-build.log" 2>&1 ||
		{ tail -30 "$work/$name-build.log" >&2; fail "$name: build failed"; }
	cmake --install "$work/$name" >/dev/null || fail "$name: install failed"
}

# nghttp2: the library only, static.
cmake_build nghttp2 "$nghttp2_src" -DENABLE_LIB_ONLY=ON -DENABLE_STATIC_LIB=ON -DENABLE_SHARED_LIB=OFF
# mbedTLS, linked only into iommufd-dra-driver: the three static libraries, from
# Debian's source (its security patches are in it) with Debian's config.h less what a
# TLS 1.2 client of one API server never uses: the server side, DTLS, TLS 1.0/1.1,
# renegotiation, key exchanges other than ECDHE (src/tls/tls.c offers only ECDHE with
# AEAD ciphers), ciphers and curves no such suite needs, writers, debug output. The
# #undefs go into a copy of config.h just before its check_config.h, so the library and
# everything that includes its headers see the same configuration (struct layouts
# depend on it) and mbedTLS itself checks the result is consistent.
cp -a "$mbedtls_src" "$work/mbedtls-src"
mbedtls_trim="$work/mbedtls-trim.h"
cat >"$mbedtls_trim" <<'EOF'
/* scripts/musl.sh: what the DRA driver's TLS client does not use (mbedTLS 2.28 names) */
#undef MBEDTLS_SSL_SRV_C
#undef MBEDTLS_SSL_PROTO_DTLS
#undef MBEDTLS_SSL_DTLS_ANTI_REPLAY
#undef MBEDTLS_SSL_DTLS_HELLO_VERIFY
#undef MBEDTLS_SSL_DTLS_CLIENT_PORT_REUSE
#undef MBEDTLS_SSL_DTLS_BADMAC_LIMIT
#undef MBEDTLS_SSL_COOKIE_C
#undef MBEDTLS_SSL_TICKET_C
#undef MBEDTLS_SSL_CACHE_C
#undef MBEDTLS_SSL_SESSION_TICKETS
#undef MBEDTLS_SSL_RENEGOTIATION
#undef MBEDTLS_SSL_PROTO_TLS1
#undef MBEDTLS_SSL_PROTO_TLS1_1
#undef MBEDTLS_SSL_CBC_RECORD_SPLITTING
#undef MBEDTLS_SSL_FALLBACK_SCSV
#undef MBEDTLS_SSL_TRUNCATED_HMAC
#undef MBEDTLS_SSL_EXPORT_KEYS
#undef MBEDTLS_SSL_CONTEXT_SERIALIZATION
#undef MBEDTLS_KEY_EXCHANGE_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_DHE_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDHE_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_RSA_PSK_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_DHE_RSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDH_ECDSA_ENABLED
#undef MBEDTLS_KEY_EXCHANGE_ECDH_RSA_ENABLED
#undef MBEDTLS_DHM_C
#undef MBEDTLS_CAMELLIA_C
#undef MBEDTLS_ARIA_C
#undef MBEDTLS_DES_C
#undef MBEDTLS_BLOWFISH_C
#undef MBEDTLS_XTEA_C
#undef MBEDTLS_ARC4_C
#undef MBEDTLS_CCM_C
#undef MBEDTLS_CMAC_C
#undef MBEDTLS_NIST_KW_C
#undef MBEDTLS_CIPHER_MODE_CFB
#undef MBEDTLS_CIPHER_MODE_OFB
#undef MBEDTLS_CIPHER_MODE_XTS
#undef MBEDTLS_RIPEMD160_C
#undef MBEDTLS_PKCS12_C
#undef MBEDTLS_PKCS5_C
#undef MBEDTLS_PEM_WRITE_C
#undef MBEDTLS_PK_WRITE_C
#undef MBEDTLS_X509_CREATE_C
#undef MBEDTLS_X509_CRT_WRITE_C
#undef MBEDTLS_X509_CSR_WRITE_C
#undef MBEDTLS_X509_CSR_PARSE_C
#undef MBEDTLS_X509_CRL_PARSE_C
#undef MBEDTLS_GENPRIME
#undef MBEDTLS_ECJPAKE_C
#undef MBEDTLS_ECP_DP_SECP192R1_ENABLED
#undef MBEDTLS_ECP_DP_SECP224R1_ENABLED
#undef MBEDTLS_ECP_DP_SECP192K1_ENABLED
#undef MBEDTLS_ECP_DP_SECP224K1_ENABLED
#undef MBEDTLS_ECP_DP_SECP256K1_ENABLED
#undef MBEDTLS_ECP_DP_BP256R1_ENABLED
#undef MBEDTLS_ECP_DP_BP384R1_ENABLED
#undef MBEDTLS_ECP_DP_BP512R1_ENABLED
#undef MBEDTLS_ECP_DP_CURVE448_ENABLED
#undef MBEDTLS_NET_C
#undef MBEDTLS_TIMING_C
#undef MBEDTLS_HAVEGE_C
#undef MBEDTLS_DEBUG_C
#undef MBEDTLS_SELF_TEST
#undef MBEDTLS_VERSION_FEATURES
#undef MBEDTLS_PSA_CRYPTO_C
#undef MBEDTLS_PSA_CRYPTO_STORAGE_C
#undef MBEDTLS_PSA_ITS_FILE_C
#undef MBEDTLS_USE_PSA_CRYPTO
EOF
awk -v trim="$mbedtls_trim" '/#include "mbedtls\/check_config.h"/ { while ((getline l < trim) > 0) print l } { print }' \
	"$mbedtls_src/include/mbedtls/config.h" >"$work/mbedtls-src/include/mbedtls/config.h"
grep -q 'MBEDTLS_SSL_SRV_C' "$mbedtls_trim" && grep -q '^#undef MBEDTLS_SSL_SRV_C' "$work/mbedtls-src/include/mbedtls/config.h" ||
	fail "mbedtls: cannot trim config.h"
cmake_build mbedtls "$work/mbedtls-src" -DENABLE_PROGRAMS=OFF -DENABLE_TESTING=OFF \
	-DUSE_STATIC_MBEDTLS_LIBRARY=ON -DUSE_SHARED_MBEDTLS_LIBRARY=OFF -DMBEDTLS_FATAL_WARNINGS=OFF
cat >"$stage/lib/pkgconfig/mbedtls.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include
Name: mbedtls
Description: mbedTLS (musl, static)
Version: ${mbedtls_version%%-*}
Libs: -L\${libdir} -lmbedtls -lmbedx509 -lmbedcrypto
Cflags: -I\${includedir}
EOF
# cmocka, for the unit tests: static only (the shared library it also builds is removed,
# so the linker takes the archive). cmocka.h typedefs uintptr_t itself unless told the
# libc has it (its guess is wrong for musl on aarch64): its users are told too.
cflags_saved=$cflags
cflags="$cflags -D_UINTPTR_T_DEFINED"
cmake_build cmocka "$cmocka_src" -DWITH_STATIC_LIB=ON -DUNIT_TESTING=OFF -DWITH_EXAMPLES=OFF \
	-DPICKY_DEVELOPER=OFF
cflags=$cflags_saved
rm -f "$stage"/lib/libcmocka.so*
sed -i 's|^Cflags: .*|& -D_UINTPTR_T_DEFINED|' "$stage/lib/pkgconfig/cmocka.pc"
[ -f "$stage/lib/libcmocka.a" ] || [ ! -f "$stage/lib/libcmocka-static.a" ] ||
	mv "$stage/lib/libcmocka-static.a" "$stage/lib/libcmocka.a"

# protobuf-c: its runtime is one C file; the generator (protoc-c) stays the system's.
say "building the protobuf-c runtime ($(basename "$protobufc_src")) for $arch with $cc"
mkdir -p "$stage/include/protobuf-c"
# shellcheck disable=SC2086 # cflags is a list of flags
"$cc" $cflags -c "$protobufc_src/protobuf-c/protobuf-c.c" -o "$work/protobuf-c.o" ||
	fail "protobuf-c: compile failed"
if [ "$cross" -eq 1 ]; then ar="aarch64-linux-gnu-ar"; else ar="ar"; fi
"$ar" rcsD "$stage/lib/libprotobuf-c.a" "$work/protobuf-c.o"
cp "$protobufc_src/protobuf-c/protobuf-c.h" "$stage/include/protobuf-c/"
cat >"$stage/lib/pkgconfig/libprotobuf-c.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include
Name: libprotobuf-c
Description: Protocol Buffers C runtime (musl, static)
Version: ${protobufc_version%%-*}
Libs: -L\${libdir} -lprotobuf-c
Cflags: -I\${includedir}
EOF
# The .pc files name the final prefix, not the scratch one.
sed -i "s|$stage|$prefix|g" "$stage"/lib/pkgconfig/*.pc

# musl's specs search no /usr/include: the kernel's uapi headers (linux/, asm/) for this
# architecture come from here.
mkdir -p "$stage/kinclude"
ln -sfn /usr/include/linux "$stage/kinclude/linux"
ln -sfn "/usr/include/$multiarch/asm" "$stage/kinclude/asm"
ln -sfn /usr/include/asm-generic "$stage/kinclude/asm-generic"

# The meson machine file. Only our prefix's .pc files are seen: nothing of glibc's can
# be linked by accident.
{
	echo "# Written by scripts/musl.sh: fully static musl builds for $arch."
	echo "[binaries]"
	echo "c = '$cc'"
	if [ "$cross" -eq 1 ]; then
		echo "ar = 'aarch64-linux-gnu-ar'"
		echo "strip = 'aarch64-linux-gnu-strip'"
		echo "pkgconfig = 'pkg-config'"
		echo "exe_wrapper = 'qemu-aarch64-static'"
	fi
	echo "[properties]"
	echo "pkg_config_libdir = '$prefix/lib/pkgconfig'"
	echo "[built-in options]"
	echo "c_args = ['-isystem', '$prefix/kinclude', '-ffunction-sections', '-fdata-sections'," \
		"'-fno-asynchronous-unwind-tables', '-fno-unwind-tables']"
	# -z norelro: a static non-PIE musl binary has no dynamic linker to mprotect a
	# PT_GNU_RELRO segment, so it protects nothing; and its end is aligned to the
	# 64 KiB max page size of aarch64, 41 KiB of padding (322 -> 281 KiB stripped).
	echo "c_link_args = ['-Wl,--gc-sections', '-Wl,-z,norelro']"
	if [ "$cross" -eq 1 ]; then
		echo "[host_machine]"
		echo "system = 'linux'"
		echo "cpu_family = 'aarch64'"
		echo "cpu = 'armv8-a'"
		echo "endian = 'little'"
	fi
} >"$stage/meson-$arch.ini"
printf '%s\n' "$key_text" >"$stage/key.txt"
rm -rf "$prefix"
mv "$stage" "$prefix"
say "musl prefix for $arch: $prefix"
echo "$machine_file"
