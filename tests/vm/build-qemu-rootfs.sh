#!/bin/bash
# Obtains the nested QEMU and libvirt for the VM test: Debian trixie-backports' qemu-system-x86
# (11.x, `-object iommufd`) and libvirt (12.x, iommufd fd passing), downloaded with their dependency
# closure through a private apt configuration (never installed), unpacked with dpkg -x, and reduced
# to qemu-system-x86_64, libvirtd with its QEMU driver module, strace, the shared libraries they load
# (their ELF NEEDED closure), the dynamic loader, SeaBIOS and libvirt's x86 CPU map. The result is
# one newc cpio archive that run.sh appends to the guest's initramfs, and next to it sdk/ (libvirt's
# headers and client libraries, to build the guest's libvirt client on the host). Cached per
# resolved package list (name=version of every package) and this script; prints the archive's path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/vm/lib.sh
source "$here/lib.sh"
cache=$(vm_cache_dir)
suite=trixie-backports # over trixie: apt -t prefers it where it has the package
# --no-install-recommends; seabios comes as a dependency. Debian builds libvirt without the modular
# daemons (no virtqemud): libvirtd runs the same QEMU driver module (libvirt_driver_qemu.so).
packages=(qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-dev strace)
multiarch=usr/lib/x86_64-linux-gnu
# The programs kept, with their NEEDED closure: QEMU, libvirtd, its QEMU driver (dlopen()ed), the
# client libraries for our libvirt-fd-start, and strace (to trace libvirtd's ioctls).
programs=(usr/bin/qemu-system-x86_64 usr/sbin/libvirtd usr/bin/strace
	"$multiarch/libvirt/connection-driver/libvirt_driver_qemu.so"
	"$multiarch/libvirt.so.0" "$multiarch/libvirt-qemu.so.0")
# Firmware QEMU loads for an x86 machine with -nodefaults (pc and q35 alike): SeaBIOS and the
# APIC's vapic option ROM (which it also loads under TCG).
firmware=(usr/share/seabios/bios-256k.bin usr/share/qemu/kvmvapic.bin)

log() { echo "build-qemu-rootfs: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# Prints "name=version" for every package apt would install, sorted (the cache key's input).
# Resolving the closure from an empty status takes apt some seconds, so the answer is kept until
# the lists change.
resolve() {
	local memo="$apt_dir/resolved.txt" stamp="$apt_dir/lists/.updated"
	if [[ -s "$memo" && -e "$stamp" && "$memo" -nt "$stamp" ]] &&
		[[ "$(head -n 1 "$memo")" == "# ${packages[*]}" ]]; then
		tail -n +2 "$memo"
		return
	fi
	apt-get "${apt_opts[@]}" -s -q -t "$suite" --no-install-recommends install "${packages[@]}" \
		2>"$apt_dir/resolve.log" |
		sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1=\2/p' | LC_ALL=C sort >"$memo.new"
	[[ -s "$memo.new" ]] || return 1
	{
		echo "# ${packages[*]}"
		cat "$memo.new"
	} >"$memo"
	rm -f "$memo.new"
	tail -n +2 "$memo"
}

# needed_closure STAGE FILE...: prints the paths (in STAGE, relative) of every shared library the
# FILEs load, transitively, by DT_NEEDED soname in STAGE's multiarch directory. Fails on a soname
# no unpacked package has.
needed_closure() {
	local stage="$1" file soname
	shift
	local -A seen=()
	local queue=("$@")
	while ((${#queue[@]})); do
		file=${queue[0]}
		queue=("${queue[@]:1}")
		for soname in $(readelf -d "$stage/$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
			[[ -z "${seen[$soname]:-}" ]] || continue
			seen[$soname]=1
			[[ -e "$stage/$multiarch/$soname" ]] || die "$file needs $soname, which no unpacked package has"
			echo "$multiarch/$soname"
			queue+=("$multiarch/$soname")
		done
	done
}

# fallback WHY: offline, or the lists are unusable: the newest rootfs cached.
fallback() {
	local found
	# shellcheck disable=SC2012 # our own directory names
	found=$(ls -1td "$cache/qemu-rootfs/"*/ 2>/dev/null | head -n 1)
	[[ -n "$found" && -e "$found/rootfs.cpio" && -d "$found/sdk/include" ]] ||
		die "$1, and no QEMU and libvirt rootfs is cached"
	log "warning: $1; using the cached $found"
	echo "${found%/}/rootfs.cpio"
}

build() {
	local out="$1" work="$2" start debs bytes
	shift 2
	start=$(date +%s)
	rm -rf "$work"
	mkdir -p "$work/debs" "$work/stage" "$work/root"
	log "downloading ${#list[@]} packages of $suite (${packages[*]} and their dependencies)"
	(cd "$work/debs" && apt-get "${apt_opts[@]}" -q download "${list[@]}" >"$work/download.log" 2>&1) || {
		tail -n 5 "$work/download.log" >&2
		die "apt-get download failed (see $work/download.log)"
	}
	bytes=$(cat "$work/debs"/*.deb | wc -c)
	local t_download
	t_download=$(($(date +%s) - start))
	for debs in "$work/debs"/*.deb; do
		dpkg -x "$debs" "$work/stage" || die "dpkg -x $debs failed"
	done
	local stage="$work/stage" root="$work/root" f
	local bin=usr/bin/qemu-system-x86_64
	for f in "${programs[@]}"; do
		[[ -e "$stage/$f" ]] || die "no $f in the unpacked packages"
	done
	mapfile -t libs < <(needed_closure "$stage" "${programs[@]}" | LC_ALL=C sort -u)
	# The loader: the PT_INTERP path (/lib64/...) points at the multiarch copy, as on Debian.
	local interp
	interp=$(readelf -l "$stage/$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
	[[ "$interp" == /lib64/ld-linux-x86-64.so.2 ]] || die "unexpected program interpreter '$interp'"
	# libvirt's CPU map (x86 only): its QEMU driver reads it for the host and guest CPU models.
	local cpu_map=()
	mapfile -t cpu_map < <(cd "$stage" && ls usr/share/libvirt/cpu_map/index.xml usr/share/libvirt/cpu_map/x86_*.xml)
	for f in "${programs[@]}" "${libs[@]}" "$multiarch/ld-linux-x86-64.so.2" "${firmware[@]}" "${cpu_map[@]}"; do
		mkdir -p "$root/$(dirname "$f")"
		cp -L "$stage/$f" "$root/$f" || die "cannot copy $f"
	done
	mkdir -p "$root/lib64"
	ln -s "../$multiarch/ld-linux-x86-64.so.2" "$root/lib64/ld-linux-x86-64.so.2"
	# It must run from these files alone: the loader restricted to our libraries.
	local version
	version=$("$root/$multiarch/ld-linux-x86-64.so.2" --inhibit-cache --library-path "$root/$multiarch" \
		"$root/$bin" --version | head -n 1) || die "the unpacked $bin does not run"
	log "$version"
	local libvirt_version
	libvirt_version=$("$root/$multiarch/ld-linux-x86-64.so.2" --inhibit-cache --library-path "$root/$multiarch" \
		"$root/usr/sbin/libvirtd" --version | sed 's/.*(libvirt) /libvirt /') ||
		die "the unpacked libvirtd does not run"
	log "$libvirt_version"
	local tmp="$out.tmp"
	rm -rf "$tmp"
	mkdir -p "$tmp/sdk/lib" "$tmp/sdk/include"
	# The guest client's build needs libvirt's headers and the client libraries to link against.
	cp -r "$stage/usr/include/libvirt" "$tmp/sdk/include/" || die "libvirt-dev has no usr/include/libvirt"
	cp -L "$stage/$multiarch/libvirt.so.0" "$stage/$multiarch/libvirt-qemu.so.0" "$tmp/sdk/lib/"
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
		>"$tmp/rootfs.cpio" || die "cpio of $root failed"
	printf '%s\n' "${list[@]}" >"$tmp/packages.txt"
	(cd "$root" && find . ! -type d | LC_ALL=C sort) >"$tmp/files.txt"
	cat >"$tmp/build-info" <<-EOF
		qemu=$version
		libvirt=$libvirt_version
		packages=${#list[@]}
		download_bytes=$bytes
		download_seconds=$t_download
		build_seconds=$(($(date +%s) - start))
		rootfs_cpio_bytes=$(stat -c %s "$tmp/rootfs.cpio")
	EOF
	rm -rf "$out"
	mv "$tmp" "$out"
	rm -rf "$work"
	# Keep this archive and the one before it (~140 MB each), so that two checkouts of different
	# versions of this script do not remove each other's on every run.
	# shellcheck disable=SC2012 # our own directory names
	ls -1td "$cache/qemu-rootfs/"*/ | tail -n +3 | xargs -r rm -rf
	log "built in $(($(date +%s) - start)) s ($((bytes / 1000000)) MB downloaded): $out"
}

main() {
	mkdir -p "$cache/qemu-rootfs"
	exec 9>"$cache/qemu-rootfs.lock"
	flock 9 || die "cannot lock $cache/qemu-rootfs.lock"
	apt_private_setup "$cache/apt-$suite" trixie "$suite"
	apt_private_update
	if ! mapfile -t list < <(resolve) || ((${#list[@]} == 0)); then
		fallback "apt cannot resolve ${packages[*]} from $suite ($apt_dir/resolve.log)"
		return
	fi
	local qemu_version libvirt_version key out
	qemu_version=$(printf '%s\n' "${list[@]}" | sed -n 's/^qemu-system-x86=\(.*\)/\1/p' | tr ':~' '__')
	libvirt_version=$(printf '%s\n' "${list[@]}" | sed -n 's/^libvirt0=\(.*\)/\1/p' | tr ':~' '__')
	key=$(printf '%s\n' "${list[@]}" | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
	out="$cache/qemu-rootfs/$qemu_version-libvirt$libvirt_version-$key"
	if [[ ! -e "$out/rootfs.cpio" ]]; then
		build "$out" "$cache/qemu-rootfs/.build-$key"
	else
		log "cached: $out"
	fi
	echo "$out/rootfs.cpio"
}

main "$@"
