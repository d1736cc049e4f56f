#!/bin/bash
# Obtains a kernel with IOMMUFD for the VM test: builds Debian's linux-source-6.12 (bookworm-backports,
# else trixie, fetched through a private apt sources list, never installed) with tinyconfig plus
# tests/vm/kernel.fragment. Cached per source version and fragment; prints the cache directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fragment="$here/kernel.fragment"
# shellcheck source=tests/vm/lib.sh
source "$here/lib.sh"
# shellcheck source=scripts/progress.sh
source "$here/../../scripts/progress.sh"
export PROGRESS_PREFIX=build-kernel
cache=$(vm_cache_dir)
jobs="${IOMMUFD_VM_JOBS:-$(nproc)}"
# Bump when the way the kernel is built changes (not the fragment: that is hashed itself).
recipe="tinyconfig+fragment+olddefconfig ARCH=x86_64 bzImage headers v1"
pkg="linux-source-6.12"

log() { echo "build-kernel: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# Prints "<version> <suite>" of linux-source-6.12: bookworm-backports preferred, else trixie.
pick_version() {
	local madison suite line
	madison=$(apt-cache "${apt_opts[@]}" madison "$pkg" 2>/dev/null || true)
	for suite in bookworm-backports trixie; do
		line=$(awk -F' *[|] *' -v s=" $suite/" 'index(" " $3, s) { print $2; exit }' <<<"$madison")
		if [[ -n "$line" ]]; then
			echo "$line $suite"
			return 0
		fi
	done
	log "$pkg is in neither bookworm-backports nor trixie (apt-cache madison said: ${madison:-nothing})"
	return 1
}

# Unpacks the source tarball of <version> once; prints the source tree.
unpack_source() {
	local version="$1" suite="$2"
	local srcdir="$cache/src/$version" deb
	if [[ -e "$srcdir/.unpacked" ]]; then
		echo "$srcdir/linux"
		return 0
	fi
	rm -rf "$srcdir"
	mkdir -p "$srcdir/deb"
	log "downloading $pkg=$version from $suite"
	(cd "$srcdir/deb" && apt-get "${apt_opts[@]}" -q download "$pkg=$version" >&2) ||
		die "apt-get download $pkg=$version failed"
	deb=$(ls "$srcdir/deb"/*.deb)
	dpkg -x "$deb" "$srcdir/pkg" || die "dpkg -x $deb failed"
	rm -f "$deb"
	local tarball
	tarball=$(ls "$srcdir/pkg/usr/src/"linux-source-*.tar.*) || die "no source tarball in $deb"
	log "unpacking $tarball"
	mkdir -p "$srcdir/linux"
	tar -xf "$tarball" -C "$srcdir/linux" --strip-components=1 || die "tar -xf $tarball failed"
	rm -rf "$srcdir/pkg"
	touch "$srcdir/.unpacked"
	echo "$srcdir/linux"
}

# Fails unless every CONFIG_X=y of the fragment survived olddefconfig.
verify_config() {
	local config="$1" missing=() opt
	while read -r opt; do
		grep -qx "$opt=y" "$config" || missing+=("$opt (got: $(grep -E "^(# )?${opt}[= ]" "$config" || echo unset))")
	done < <(sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=y$/\1/p' "$fragment")
	if ((${#missing[@]})); then
		printf 'build-kernel:   %s\n' "${missing[@]}" >&2
		die "${#missing[@]} option(s) of $fragment are not =y after olddefconfig (missing dependency?)"
	fi
}

# fallback KEY WHY: offline, or the package is gone: the newest kernel cached for this fragment.
fallback() {
	local found
	# shellcheck disable=SC2012 # our own directory names: <version>-<hex key>
	found=$(ls -1td "$cache/kernel/"*-"$1" 2>/dev/null | head -n 1)
	[[ -n "$found" && -e "$found/bzImage" ]] || die "$2, and no kernel for this fragment is cached"
	log "warning: $2; using the cached $found"
	echo "$found"
}

# The files kbuild compiled so far: its "  CC      path.o" lines (also AS, and CC for
# host tools under HOSTCC, which are not counted).
compiled_count() { grep -cE '^  (CC|AS) ' "$1" || true; }

# bzimage_progress: "building bzImage: N files compiled[ of about M]", M from the last
# build of this kernel version recorded in a build-info (none on a first build).
bzimage_progress() {
	local done=$(($(compiled_count "$work/build.log") - compiled_before)) last
	last=$(sed -n 's/^compiled=//p' "$cache/kernel/"*/build-info 2>/dev/null | sort -n | tail -n 1)
	echo "building bzImage: $done files compiled${last:+ of about $last (the last build here)}"
}

main() {
	[[ -r "$fragment" ]] || die "cannot read $fragment"
	mkdir -p "$cache/kernel"
	exec 9>"$cache/kernel.lock"
	flock 9 || die "cannot lock $cache/kernel.lock"

	local key out version suite
	key=$(printf '%s\n' "$recipe" | cat - "$fragment" | sha256sum | cut -c1-16)
	apt_private_setup "$cache/apt" bookworm-backports trixie
	apt_private_update
	if ! read -r version suite < <(pick_version); then
		fallback "$key" "no version of $pkg known"
		return
	fi
	out="$cache/kernel/$version-$key"
	if [[ -e "$out/bzImage" && -d "$out/headers/include/linux" ]]; then
		log "cached: $out"
		echo "$out"
		return 0
	fi

	local src work start compiled_before
	if ! src=$(unpack_source "$version" "$suite"); then
		fallback "$key" "cannot get the source of $pkg $version"
		return
	fi
	work="$cache/kernel/.build-$version-$key"
	rm -rf "$work"
	mkdir -p "$work/obj"
	local make=(make -C "$src" O="$work/obj" ARCH=x86_64 -j"$jobs")
	start=$(date +%s)
	log "configuring $version (tinyconfig + $fragment)"
	"${make[@]}" tinyconfig >"$work/build.log" 2>&1 || die "make tinyconfig failed, see $work/build.log"
	cat "$fragment" >>"$work/obj/.config"
	"${make[@]}" olddefconfig >>"$work/build.log" 2>&1 ||
		die "make olddefconfig failed, see $work/build.log"
	verify_config "$work/obj/.config"
	log "building bzImage with $jobs jobs (log: $work/build.log; a progress line every 30 s)"
	compiled_before=$(compiled_count "$work/build.log")
	progress_run 30 bzimage_progress "$work/build.log" "${make[@]}" bzImage || {
		tail -n 30 "$work/build.log" >&2
		die "make bzImage failed, see $work/build.log"
	}
	# `make headers` leaves sanitized uapi headers in obj/usr/include (headers_install needs rsync).
	"${make[@]}" headers >>"$work/build.log" 2>&1 || die "make headers failed, see $work/build.log"

	local tmp="$out.tmp"
	rm -rf "$tmp"
	mkdir -p "$tmp/headers"
	cp "$work/obj/arch/x86/boot/bzImage" "$work/obj/.config" "$tmp/"
	cp -r "$work/obj/usr/include" "$tmp/headers/include"
	cp "$fragment" "$tmp/kernel.fragment"
	cat >"$tmp/build-info" <<-EOF
		source=$pkg $version ($suite)
		recipe=$recipe
		build_seconds=$(($(date +%s) - start))
		jobs=$jobs
		bzImage_bytes=$(stat -c %s "$tmp/bzImage")
		compiled=$(($(compiled_count "$work/build.log") - compiled_before))
	EOF
	rm -rf "$out"
	mv "$tmp" "$out"
	rm -rf "$work"
	# Only the current source tree is kept (1.6 GB each); older kernels stay, they are small.
	find "$cache/src" -mindepth 1 -maxdepth 1 ! -name "$version" -exec rm -rf {} +
	log "built in $(($(date +%s) - start)) s: $out"
	echo "$out"
}

main "$@"
