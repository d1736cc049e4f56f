#!/bin/bash
# The VM test: boots a kernel with IOMMUFD (build-kernel.sh) under qemu TCG with an intel-iommu
# and two e1000e, runs tests/vm/init in it with the project's static binaries, a nested QEMU and
# libvirt (build-qemu-rootfs.sh), and prints a table of every check. Exit status 0 only if every check
# passed. --demo: the README's demo instead.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${IOMMUFD_VM_BUILD_DIR:-$repo/build-vm}"
static_build="${IOMMUFD_VM_STATIC_BUILD_DIR:-$repo/build-vm-musl}"
boot_timeout="${IOMMUFD_VM_TIMEOUT:-1200}" # generous: nested QEMU under TCG on a loaded machine
accel="${IOMMUFD_VM_ACCEL:-tcg}" # /dev/kvm on CI machines usually cannot run guests
mode="test"
steps="${IOMMUFD_VM_STEPS:-}" # comma-separated /init steps (e.g. bind_vfio,libvirt_checks), for work on the test

usage() {
	cat >&2 <<-EOF
		usage: $0 [--demo|--shell]
		  --demo   boot the VM and show plugin -> kubelet-sim -> iommufd-receive, no checks
		  --shell  boot the VM to an interactive shell on this terminal (no checks, no timeout)
		environment:
		  IOMMUFD_VM_CACHE            kernel cache (default /var/cache/iommufd-device-plugin)
		  IOMMUFD_VM_BIN_DIR          use the static project binaries from this directory
		  IOMMUFD_VM_BUILD_DIR        scratch output (default $repo/build-vm)
		  IOMMUFD_VM_STATIC_BUILD_DIR meson static musl build dir (default $repo/build-vm-musl)
		  IOMMUFD_VM_TIMEOUT          seconds before the VM is killed (default $boot_timeout)
		  IOMMUFD_VM_ACCEL            qemu accelerator (default tcg)
		  IOMMUFD_VM_ALLOW_MISSING=1  boot even if the project binaries do not build
		  IOMMUFD_VM_STEPS            only these /init steps, comma-separated (bind_vfio first)
	EOF
	exit 2
}

while (($#)); do
	case "$1" in
	--demo) mode=demo ;;
	--shell) mode=shell ;;
	-h | --help) usage ;;
	*) usage ;;
	esac
	shift
done

log() { echo "vm-test: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

for tool in qemu-system-x86_64 cpio cc; do
	command -v "$tool" >/dev/null || die "$tool is not installed"
done
if [[ ! -x /bin/busybox ]] || ! /bin/busybox --list | grep -x poweroff >/dev/null; then
	die "/bin/busybox is missing or not busybox-static (apt-get install busybox-static)"
fi
file_is_static() { ! readelf -l "$1" 2>/dev/null | grep 'Requesting program interpreter' >/dev/null; }
file_is_static /bin/busybox || die "/bin/busybox is dynamically linked; install busybox-static"

t_start=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) - $1" | bc | xargs printf '%.1f'; }

# 1. The kernel (built once per machine, then cached), and the nested QEMU's files (Debian
#    trixie's qemu-system-x86 and its libraries, one cpio archive, cached too).
kernel_dir=$("$here/build-kernel.sh")
t_kernel=$(elapsed "$t_start")
qemu_rootfs=$("$here/build-qemu-rootfs.sh")
t_rootfs=$(elapsed "$t_start")

# 2. The project's binaries, static, from our own build dir. IOMMUFD_VM_ALLOW_MISSING=1 boots
#    without them (only for working on this test: every plugin check then fails).
bins=(iommufd-device-plugin kubelet-sim iommufd-receive)
allow_missing="${IOMMUFD_VM_ALLOW_MISSING:-0}"
missing() {
	[[ $allow_missing == 1 ]] || die "$*"
	log "warning: $* (IOMMUFD_VM_ALLOW_MISSING=1: going on without)"
}
if [[ -n "${IOMMUFD_VM_BIN_DIR:-}" ]]; then
	bin_dir="$IOMMUFD_VM_BIN_DIR"
else
	bin_dir="$static_build"
	mkdir -p "$out"
	musl_file=$("$repo/scripts/musl.sh") || musl_file=
	# A meson build dir made with another machine file (glibc, older musl libraries) is made again.
	if [[ -f "$static_build/meson-private/cmd_line.txt" ]] &&
		! grep -qF "${musl_file:-none}" "$static_build/meson-private/cmd_line.txt"; then
		rm -rf "$static_build"
	fi
	if [[ ! -e "$static_build/build.ninja" ]]; then
		{ [[ -n $musl_file ]] &&
			meson setup "$static_build" "$repo" --native-file "$musl_file" -Dstatic_binary=true; } \
			>"$out/meson-setup.log" 2>&1 ||
			{ [[ $allow_missing == 1 ]] || cat "$out/meson-setup.log" >&2; }
	fi
	if [[ -e "$static_build/build.ninja" ]]; then
		ninja -C "$static_build" "${bins[@]}" >"$out/ninja.log" 2>&1 || {
			[[ $allow_missing == 1 ]] || cat "$out/ninja.log" >&2
			missing "building the static project binaries in $static_build failed"
		}
	else
		missing "meson setup $static_build (musl, -Dstatic_binary=true) failed ($out/meson-setup.log)"
	fi
fi
present_bins=()
for b in "${bins[@]}"; do
	if [[ ! -x "$bin_dir/$b" ]]; then
		missing "$bin_dir/$b is missing"
	elif ! file_is_static "$bin_dir/$b"; then
		die "$bin_dir/$b is not statically linked"
	else
		present_bins+=("$b")
	fi
done

# 3. Guest test programs, against the test kernel's uapi headers.
mkdir -p "$out/guest"
for prog in iommufd-check run-as qmp; do
	src="$here/guest/$prog.c"
	if [[ ! "$out/guest/$prog" -nt "$src" || ! "$out/guest/$prog" -nt "$kernel_dir/bzImage" ]]; then
		cc -static -std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
			-Wmissing-prototypes -D_GNU_SOURCE \
			-isystem "$kernel_dir/headers/include" -o "$out/guest/$prog" "$src" ||
			die "compiling $src failed"
	fi
done

# The libvirt client, dynamic: against trixie-backports' libvirt headers and the guest's libvirt.so
# (in sdk/ next to the QEMU archive), run by the guest's loader. Only libvirt's own symbols are
# left for the guest to resolve (--allow-shlib-undefined: its libraries need trixie's glibc).
sdk="$(dirname "$qemu_rootfs")/sdk"
src="$here/guest/libvirt-fd-start.c"
if [[ ! "$out/guest/libvirt-fd-start" -nt "$src" || ! "$out/guest/libvirt-fd-start" -nt "$sdk/lib/libvirt.so.0" ]]; then
	cc -std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
		-D_GNU_SOURCE -isystem "$sdk/include" -o "$out/guest/libvirt-fd-start" "$src" \
		"$sdk/lib/libvirt-qemu.so.0" "$sdk/lib/libvirt.so.0" -Wl,--allow-shlib-undefined ||
		die "compiling $src failed"
fi

# 4. The initramfs: busybox, /init, the binaries and QEMU; uncompressed newc archives (boots faster
#    under TCG than a compressed one; the kernel's built-in initramfs already has /dev/console).
root="$out/initramfs"
rm -rf "$root"
mkdir -p "$root"/{bin,usr/local/bin,dev,proc,sys,run,tmp,var,etc}
# libvirt looks its user up (getpwuid): root and KubeVirt's qemu user, uid/gid 107.
printf 'root:x:0:0:root:/root:/bin/sh\nqemu:x:107:107:qemu:/run/pod:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nqemu:x:107:\n' >"$root/etc/group"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$here/init" "$root/init"
install -m 0644 "$here/init-qemu" "$root/init-qemu"
install -m 0644 "$here/init-libvirt" "$root/init-libvirt"
for b in "${present_bins[@]}"; do
	cp "$bin_dir/$b" "$root/usr/local/bin/"
done
cp "$out/guest/iommufd-check" "$out/guest/run-as" "$out/guest/qmp" "$out/guest/libvirt-fd-start" \
	"$here/guest/in-container" "$here/guest/launcher" "$root/usr/local/bin/"
# The QEMU archive follows ours: the kernel unpacks concatenated newc archives in turn (cpio pads
# each to 512 bytes, and the unpacker skips zeros between them).
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
	cat - "$qemu_rootfs" >"$out/initramfs.cpio" || die "cpio of $root failed"

# 5. Boot. q35 with an intel-iommu doing interrupt remapping (vfio-pci needs IOMMU groups) and
#    two e1000e for the guest to bind to vfio-pci. 3.5 GiB: the 90 MB of QEMU and libvirt in the
#    initramfs and two nested libvirt VMs of 1152 MiB with their pinned RAM (init-libvirt).
console="$out/console-$mode.log"
# loglevel=5 prints KERN_WARNING, so a kernel WARN() reaches the console and fails the test.
loglevel=5
[[ $mode == demo ]] && loglevel=1
cmdline="console=ttyS0 rdinit=/init panic=-1 loglevel=$loglevel vmtest=$mode${steps:+ vmsteps=$steps}"
# shellcheck disable=SC2054 # the commas belong to qemu's option syntax
qemu=(qemu-system-x86_64 -machine q35,kernel-irqchip=split -accel "$accel" -cpu max -smp 1 -m 3584
	-nodefaults -display none -no-reboot
	-device intel-iommu,intremap=on,caching-mode=on
	-device e1000e,id=nic0 -device e1000e,id=nic1
	-kernel "$kernel_dir/bzImage" -initrd "$out/initramfs.cpio" -append "$cmdline")
qemu_pid=
cleanup() {
	if [[ -n "$qemu_pid" ]] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $mode == shell ]]; then
	log "booting $kernel_dir/bzImage with a shell on this terminal (Ctrl-A X quits qemu)"
	exec "${qemu[@]}" -serial mon:stdio
fi

log "booting $kernel_dir/bzImage (console: $console)"
t_boot=$(date +%s.%N)
timeout -k 5 "$boot_timeout" "${qemu[@]}" -serial stdio -monitor none </dev/null >"$console" 2>&1 &
qemu_pid=$!
if [[ $mode == demo ]]; then
	# Show the guest's output as it comes, minus qemu's and the test's bookkeeping lines.
	tail -n +1 -f --pid="$qemu_pid" "$console" | tr -d '\r' |
		grep --line-buffered -v -e '^VMTEST ' -e '^LOG ' -e '^qemu-system-x86_64: warning' \
		-e '^reboot: Power down' || true
fi
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=
t_vm=$(elapsed "$t_boot")
tr -d '\r' <"$console" >"$console.tmp" && mv "$console.tmp" "$console"

if ! grep -q '^VMTEST DONE' "$console"; then
	tail -n 40 "$console" >&2
	if ((qemu_rc == 124)); then
		die "the VM did not finish within $boot_timeout s (console: $console)"
	fi
	die "the VM stopped before the test finished (qemu status $qemu_rc, console: $console)"
fi
if [[ $mode == demo ]]; then
	log "demo done in $t_vm s (kernel ready after $t_kernel s)"
	exit 0
fi

# 6. The table. The kernel must not have warned or oopsed on the way.
kwarn=$(grep -cE '(WARNING|BUG|Oops|Call Trace):' "$console" || true)
{
	grep -E '^CHECK ' "$console"
	echo "CHECK kernel.no_warnings_or_oops expected=0 seen=$kwarn"
} | awk -v console="$console" '
	{
		name = $2; want = substr($3, 10); seen = substr($4, 6)
		ok = (want == seen) ? "ok" : "FAIL"
		n++; if (ok == "ok") pass++; else fail++
		row[n] = sprintf("%-52s | %-18s | %-18s | %s", name, want, seen, ok)
	}
	END {
		printf "%-52s | %-18s | %-18s | %s\n", "check", "expected", "seen", "ok"
		printf "%s\n", "-----------------------------------------------------+--------------------+--------------------+-----"
		for (i = 1; i <= n; i++) print row[i]
		printf "%d passed, %d failed (guest console: %s)\n", pass, fail, console
		exit (fail > 0 || n == 0) ? 1 : 0
	}' || {
	log "failed; guest logs are the LOG lines in $console"
	exit 1
}
boot_s=$(sed -n 's/^VMTEST uptime-at-init \([0-9.]*\).*/\1/p' "$console")
sed -n 's/^FIGURE /vm-test: figure: /p' "$console" >&2
log "timings: kernel ready ${t_kernel}s, QEMU rootfs ready ${t_rootfs}s, VM ${t_vm}s (guest reached /init after ${boot_s:-?}s), total $(elapsed "$t_start")s"
