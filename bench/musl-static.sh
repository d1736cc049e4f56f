#!/usr/bin/env bash
# Builds the plugin fully static against musl instead of glibc: the recipe behind the
# binary size and RSS figures of docs/performance.md (glibc static: ~1.07 MB, musl:
# ~270 KB stripped). nghttp2 and protobuf-c come from Debian bookworm's own source
# packages (apt-get source through a private sources list), built with musl-gcc into a
# private prefix; the main build is not touched.
# Usage: bench/musl-static.sh [BUILD_DIR]      (default: build-musl)
# Result: BUILD_DIR/iommufd-device-plugin and BUILD_DIR/iommufd-receive, stripped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build-musl}
case "$build" in /*) ;; *) build=$root/$build ;; esac
deps=$build-deps # sources, apt state and the musl prefix
prefix=$deps/prefix
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)

say() { echo "musl-static: $*" >&2; }
fail() {
	say "$*"
	exit 1
}

# Tools: Debian packages, installed when missing if we may.
need=()
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v cmake >/dev/null || need+=(cmake)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v protoc-c >/dev/null || need+=(protobuf-c-compiler)
command -v meson >/dev/null || need+=(meson)
command -v ninja >/dev/null || need+=(ninja-build)
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || fail "missing packages: ${need[*]} (apt-get install them as root)"
	say "installing ${need[*]}"
	apt-get install -y "${need[@]}" >/dev/null || fail "apt-get install ${need[*]} failed"
fi

# Sources: the same upstream versions as the system's -dev packages when installed
# (so both builds link the same nghttp2, Debian's security patches included).
mkdir -p "$deps/apt/lists/partial" "$deps/apt/parts" "$deps/apt/cache/archives/partial" "$deps/src"
cat >"$deps/apt/sources.list" <<EOF
deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
apt_opts=(-o "Dir::Etc::SourceList=$deps/apt/sources.list" -o "Dir::Etc::SourceParts=$deps/apt/parts"
	-o "Dir::State::Lists=$deps/apt/lists" -o "Dir::Cache=$deps/apt/cache")
version_of() { # version_of BINARY_PACKAGE -> "=VERSION" or ""
	local v
	v=$(dpkg-query -W -f='${source:Version}\n' "$1" 2>/dev/null | head -1 || true)
	[ -n "$v" ] && echo "=$v"
}
fetch() { # fetch SOURCE_PACKAGE DEV_PACKAGE -> unpacked dir on stdout
	local src=$1 dev=$2 dir
	dir=$(find "$deps/src" -maxdepth 1 -type d -name "$src-*" | head -1)
	if [ -z "$dir" ]; then
		[ -f "$deps/apt/lists/.updated" ] || {
			apt-get "${apt_opts[@]}" update >&2 || fail "apt-get update (deb-src bookworm) failed"
			touch "$deps/apt/lists/.updated"
		}
		(cd "$deps/src" && apt-get "${apt_opts[@]}" source --download-only "$src$(version_of "$dev")" >&2 &&
			dpkg-source -x "$(ls -t "$src"_*.dsc | head -1)" >&2) ||
			fail "cannot fetch and unpack the $src source package"
		dir=$(find "$deps/src" -maxdepth 1 -type d -name "$src-*" | head -1)
	fi
	echo "$dir"
}
nghttp2_src=$(fetch nghttp2 libnghttp2-dev)
protobufc_src=$(fetch protobuf-c libprotobuf-c-dev)

# nghttp2: the library only, static, for size.
if [ ! -f "$prefix/lib/libnghttp2.a" ]; then
	say "building nghttp2 from $(basename "$nghttp2_src") with musl-gcc"
	cmake -S "$nghttp2_src" -B "$deps/nghttp2-build" -DCMAKE_C_COMPILER=musl-gcc \
		-DENABLE_LIB_ONLY=ON -DENABLE_STATIC_LIB=ON -DENABLE_SHARED_LIB=OFF \
		-DCMAKE_BUILD_TYPE=MinSizeRel -DCMAKE_INSTALL_PREFIX="$prefix" \
		-DCMAKE_C_FLAGS="-ffunction-sections -fdata-sections" >"$deps/nghttp2-cmake.log" 2>&1 ||
		fail "nghttp2 cmake failed: see $deps/nghttp2-cmake.log"
	cmake --build "$deps/nghttp2-build" -j"$(nproc)" >"$deps/nghttp2-build.log" 2>&1 ||
		fail "nghttp2 build failed: see $deps/nghttp2-build.log"
	cmake --install "$deps/nghttp2-build" >/dev/null || fail "nghttp2 install failed"
fi

# protobuf-c: its runtime is one C file; the generator (protoc-c) stays the system's.
if [ ! -f "$prefix/lib/libprotobuf-c.a" ]; then
	say "building the protobuf-c runtime from $(basename "$protobufc_src") with musl-gcc"
	mkdir -p "$prefix/include/protobuf-c" "$prefix/lib/pkgconfig"
	musl-gcc -Os -ffunction-sections -fdata-sections -c "$protobufc_src/protobuf-c/protobuf-c.c" \
		-o "$deps/protobuf-c.o" || fail "protobuf-c compile failed"
	ar rcs "$prefix/lib/libprotobuf-c.a" "$deps/protobuf-c.o"
	cp "$protobufc_src/protobuf-c/protobuf-c.h" "$prefix/include/protobuf-c/"
	version=$(basename "$protobufc_src" | sed 's/^protobuf-c-//')
	cat >"$prefix/lib/pkgconfig/libprotobuf-c.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include
Name: libprotobuf-c
Description: Protocol Buffers C runtime (musl, static)
Version: $version
Libs: -L\${libdir} -lprotobuf-c
Cflags: -I\${includedir}
EOF
fi

# musl-gcc sees no /usr/include: the kernel's uapi headers (linux/, asm/) come from here.
mkdir -p "$prefix/kinclude"
ln -sfn /usr/include/linux "$prefix/kinclude/linux"
ln -sfn "/usr/include/$arch/asm" "$prefix/kinclude/asm"
ln -sfn /usr/include/asm-generic "$prefix/kinclude/asm-generic"

cat >"$deps/musl.ini" <<EOF
[binaries]
c = 'musl-gcc'
[built-in options]
c_args = ['-isystem', '$prefix/kinclude', '-ffunction-sections', '-fdata-sections']
c_link_args = ['-Wl,--gc-sections']
EOF

# Our musl libraries first; the system's .pc files only so that meson setup finds the
# test-only dependencies (cmocka). Only the two shipped binaries are built.
export PKG_CONFIG_LIBDIR=$prefix/lib/pkgconfig:/usr/lib/$arch/pkgconfig:/usr/share/pkgconfig
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" --native-file "$deps/musl.ini" -Dstatic_binary=true \
		-Dbuildtype=minsize -Db_lto=true -Dstrip=true >"$deps/meson-setup.log" 2>&1 ||
		fail "meson setup failed: see $deps/meson-setup.log"
fi
ninja -C "$build" iommufd-device-plugin iommufd-receive >"$deps/ninja.log" 2>&1 ||
	fail "build failed: see $deps/ninja.log"
for bin in iommufd-device-plugin iommufd-receive; do
	strip --strip-all "$build/$bin"
	file "$build/$bin" | grep -q 'statically linked' || fail "$build/$bin is not static"
	say "$build/$bin: $(stat -c %s "$build/$bin") bytes, static, stripped"
done
