# shellcheck shell=bash
# Shared by build-kernel.sh and build-qemu-rootfs.sh (sourced, not run): the cache directory and a
# private apt configuration in it, so Debian packages of another release can be downloaded and
# unpacked without touching the host's apt state or installing anything.

# vm_cache_dir: prints the cache directory (IOMMUFD_VM_CACHE, else the system cache if writable,
# else the user's).
vm_cache_dir() {
	if [[ -n "${IOMMUFD_VM_CACHE:-}" ]]; then
		echo "$IOMMUFD_VM_CACHE"
	elif mkdir -p /var/cache/iommufd-device-plugin 2>/dev/null && [[ -w /var/cache/iommufd-device-plugin ]]; then
		echo /var/cache/iommufd-device-plugin
	else
		echo "${XDG_CACHE_HOME:-$HOME/.cache}/iommufd-device-plugin" # not root
	fi
}

# apt_private_setup DIR SUITE...: a private apt configuration in DIR listing deb.debian.org's SUITEs
# (main). Sets the array apt_opts for apt-get/apt-cache. Its dpkg status is DIR/status, empty: to
# that apt nothing is installed, so it resolves a package's whole dependency closure.
apt_private_setup() {
	apt_dir="$1"
	shift
	mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
	[[ -e "$apt_dir/status" ]] || : >"$apt_dir/status"
	local keyring=/usr/share/keyrings/debian-archive-keyring.gpg suite
	for suite in "$@"; do
		echo "deb [signed-by=$keyring] http://deb.debian.org/debian $suite main"
	done >"$apt_dir/sources.list.new"
	mv "$apt_dir/sources.list.new" "$apt_dir/sources.list"
	apt_opts=(
		-o "Dir::Etc::SourceList=$apt_dir/sources.list"
		-o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
		-o "Dir::State::Lists=$apt_dir/lists"
		-o "Dir::State::status=$apt_dir/status"
		-o "Dir::Cache=$apt_dir/cache"
		-o "APT::Architecture=amd64"
		-o "APT::Architectures::=amd64"
		-o "Debug::NoLocking=true"
		-o "APT::Sandbox::User=$(id -un)" # the cache dir is ours; _apt could not write there
	)
}

# apt_private_update: refreshes the private lists if missing or older than
# IOMMUFD_VM_LISTS_MAX_AGE seconds (a day; IOMMUFD_VM_REFRESH=1: now). An offline machine keeps
# using old lists. Needs log() from the caller.
apt_private_update() {
	local stamp="$apt_dir/lists/.updated" now age
	now=$(date +%s)
	age=$((now - $(stat -c %Y "$stamp" 2>/dev/null || echo 0)))
	if [[ "${IOMMUFD_VM_REFRESH:-0}" != 1 && $age -lt ${IOMMUFD_VM_LISTS_MAX_AGE:-86400} ]]; then
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
