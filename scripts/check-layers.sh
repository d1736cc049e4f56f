#!/usr/bin/env bash
# Dependencies point one way: no C file includes a header of a layer above its own.
# The layers are stated once, in docs/architecture.md between the "layers begin" and
# "layers end" markers: one line per layer, top first, its name and the path prefixes
# of its files. Files of one layer may include each other. Every tracked C file must
# be in a layer; an include that is no file in the tree (a system or generated
# protobuf-c header) is not checked. Prints each violation; exits 1 if there is one.
# Usage: scripts/check-layers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

doc=docs/architecture.md
names=()
prefixes=()
while read -r name rest; do
	[ -n "$name" ] || continue
	names+=("$name")
	prefixes+=("$rest")
done < <(awk '/<!-- layers end -->/ { on = 0 } on && !/^```/ { print } /<!-- layers begin -->/ { on = 1 }' "$doc")
if [ "${#names[@]}" -lt 2 ]; then
	echo "check-layers: no layer table between the markers in $doc" >&2
	exit 1
fi

# layer_of PATH: prints the index of PATH's layer (0 = top), or nothing.
layer_of() {
	local i p
	for i in "${!names[@]}"; do
		for p in ${prefixes[$i]}; do
			case $1 in "$p"*)
				echo "$i"
				return
				;;
			esac
		done
	done
}

violations=0
while IFS= read -r file; do
	own=$(layer_of "$file")
	if [ -z "$own" ]; then
		echo "$file: in no layer (add its folder to the table in $doc)"
		violations=$((violations + 1))
		continue
	fi
	dir=$(dirname "$file")
	while IFS= read -r header; do
		# As the compiler looks: beside the file, then the include path (-Isrc).
		target=
		for candidate in "$dir/$header" "src/$header"; do
			if [ -f "$candidate" ]; then
				target=$(realpath -m --relative-to=. "$candidate")
				break
			fi
		done
		[ -n "$target" ] || continue
		theirs=$(layer_of "$target")
		if [ -n "$theirs" ] && [ "$theirs" -lt "$own" ]; then
			echo "$file (${names[$own]}) includes $target (${names[$theirs]}, a layer above)"
			violations=$((violations + 1))
		fi
	done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/p' "$file")
done < <(git ls-files '*.c' '*.h')

if [ "$violations" -gt 0 ]; then
	echo "check-layers: $violations violation(s); the layers are in $doc"
	exit 1
fi
echo "check-layers: every include points down or across (${#names[@]} layers)"
