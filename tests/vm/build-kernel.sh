#!/bin/bash
# Obtains a kernel with IOMMUFD for the VM test: builds Debian's linux-source-6.12 (bookworm-backports,
# else trixie, fetched through a private apt sources list, never installed) with tinyconfig plus
# tests/vm/kernel.fragment. Cached per source version and fragment; prints the cache directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fragment="$here/kernel.fragment"
if [[ -n "${IOMMUFD_VM_CACHE:-}" ]]; then
	cache="$IOMMUFD_VM_CACHE"
elif mkdir -p /var/cache/iommufd-device-plugin 2>/dev/null && [[ -w /var/cache/iommufd-device-plugin ]]; then
	cache=/var/cache/iommufd-device-plugin
else
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/iommufd-device-plugin" # not root
fi
jobs="${IOMMUFD_VM_JOBS:-$(nproc)}"
# Bump when the way the kernel is built changes (not the fragment: that is hashed itself).
recipe="tinyconfig+fragment+olddefconfig ARCH=x86_64 bzImage headers v1"
pkg="linux-source-6.12"
# Refresh the private package lists when they are older than this (seconds).
lists_max_age="${IOMMUFD_VM_LISTS_MAX_AGE:-86400}"

log() { echo "build-kernel: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

apt_dir="$cache/apt"
apt_opts=(
	-o "Dir::Etc::SourceList=$apt_dir/sources.list"
	-o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
	-o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::Cache=$apt_dir/cache"
	-o "Debug::NoLocking=true"
	-o "APT::Sandbox::User=$(id -un)" # the cache dir is ours; _apt could not write there
)

setup_apt() {
	mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
	local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	cat >"$apt_dir/sources.list.new" <<-EOF
		deb [signed-by=$keyring] http://deb.debian.org/debian bookworm-backports main
		deb [signed-by=$keyring] http://deb.debian.org/debian trixie main
	EOF
	mv "$apt_dir/sources.list.new" "$apt_dir/sources.list"
}

# Refresh the private lists if missing or stale; an offline machine keeps using old lists.
update_lists() {
	local stamp="$apt_dir/lists/.updated" now age
	now=$(date +%s)
	age=$((now - $(stat -c %Y "$stamp" 2>/dev/null || echo 0)))
	if [[ "${IOMMUFD_VM_REFRESH:-0}" != 1 && $age -lt $lists_max_age ]]; then
		return 0
	fi
	log "updating private package lists in $apt_dir/lists"
	if apt-get "${apt_opts[@]}" -q --error-on=any update >"$apt_dir/update.log" 2>&1; then
		touch "$stamp"
	elif [[ -e "$stamp" ]]; then
		log "warning: apt-get update failed (see $apt_dir/update.log); using the old lists"
	else
		tail -n 5 "$apt_dir/update.log" >&2
		log "warning: apt-get update with the private sources list $apt_dir/sources.list failed"
	fi
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

main() {
	[[ -r "$fragment" ]] || die "cannot read $fragment"
	mkdir -p "$cache/kernel"
	exec 9>"$cache/kernel.lock"
	flock 9 || die "cannot lock $cache/kernel.lock"

	local key out version suite
	key=$(printf '%s\n' "$recipe" | cat - "$fragment" | sha256sum | cut -c1-16)
	setup_apt
	update_lists
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

	local src work start
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
	log "building bzImage with $jobs jobs (log: $work/build.log)"
	"${make[@]}" bzImage >>"$work/build.log" 2>&1 || {
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
