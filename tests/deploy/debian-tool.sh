#!/usr/bin/env bash
# Prints the path of a program from a Debian package of another suite, unpacking it
# (dpkg -x, not installed) under build-tools/ the first time. For tools bookworm lacks:
# kustomize is packaged from trixie on. apt-get runs with a private sources list and
# state under build-tools/apt, so the host's apt configuration is not touched; the
# package is verified by apt against the suite's signed Release file.
# Usage: tests/deploy/debian-tool.sh PACKAGE SUITE PROGRAM
set -euo pipefail
cd "$(dirname "$0")/../.."
package=$1 suite=$2 program=$3
tools=$PWD/build-tools
dest=$tools/$package

if [ -x "$dest/usr/bin/$program" ]; then
	echo "$dest/usr/bin/$program"
	exit 0
fi
apt_dir=$tools/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d" \
	"$apt_dir/preferences.d" "$tools/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
	>"$apt_dir/sources.list"
apt_opts=(
	-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
	-o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
	-o "Dir::Etc::preferencesparts=$apt_dir/preferences.d"
	-o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::Cache=$apt_dir/cache"
	-o "Debug::NoLocking=true"
)
apt-get "${apt_opts[@]}" update -qq >&2
(cd "$tools/debs" && apt-get "${apt_opts[@]}" download "$package" >&2)
deb=$(ls -t "$tools/debs/${package}_"*.deb | head -1)
rm -rf "$dest"
dpkg -x "$deb" "$dest"
"$dest/usr/bin/$program" version >&2 || true
echo "$dest/usr/bin/$program"
