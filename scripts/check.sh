#!/usr/bin/env bash
# The static checkers and the valgrind run: clang-format, the include layers
# (scripts/check-layers.sh), the headers' kernel-doc (scripts/check-kernel-doc.py),
# clang-tidy (.clang-tidy) and cppcheck on the daemon's and tools' sources through a
# clang build's compile_commands.json, then the integration suite with the daemon
# under valgrind memcheck (no error, no definitely lost byte). Ends with
# 'N passed, N failed', one per checker.
# Usage: scripts/check.sh [--no-valgrind] [pytest args for the valgrind run...]
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
logdir=$root/build-logs
mkdir -p "$logdir"

run_valgrind=1
if [ "${1:-}" = --no-valgrind ]; then
	run_valgrind=0
	shift
fi

passed=0
failed=0
result() { # result NAME OK(0/1) [detail]
	if [ "$2" -eq 0 ]; then
		passed=$((passed + 1))
		echo "== $1: ok${3:+ ($3)}"
	else
		failed=$((failed + 1))
		echo "== $1: FAILED${3:+ ($3)}"
	fi
}

# Formatting: every tracked C file as .clang-format has it.
c_files=$(git ls-files '*.c' '*.h')
# shellcheck disable=SC2086
if clang-format --dry-run --Werror $c_files >"$logdir/clang-format.log" 2>&1; then
	result clang-format 0
else
	head -20 "$logdir/clang-format.log"
	result clang-format 1 "run: clang-format -i \$(git ls-files '*.c' '*.h')"
fi

# Layers: no C file includes a header of a layer above its own (docs/architecture.md).
if scripts/check-layers.sh >"$logdir/layers.log" 2>&1; then
	result layers 0 "$(tail -1 "$logdir/layers.log")"
else
	cat "$logdir/layers.log"
	result layers 1
fi

# kernel-doc: every function and macro with arguments declared in a src/ header has a
# kernel-doc comment whose @params match it (scripts/check-kernel-doc.py), and the
# kernel's own kernel-doc (linux-kbuild) finds nothing to warn about.
if scripts/check-kernel-doc.py >"$logdir/kernel-doc.log" 2>&1; then
	result kernel-doc 0 "$(tail -1 "$logdir/kernel-doc.log")"
else
	cat "$logdir/kernel-doc.log"
	result kernel-doc 1
fi

# A clang build: its compile_commands.json has flags clang-tidy understands, and the
# generated protobuf-c headers exist.
tidy_build=$root/build-tidy
if [ ! -f "$tidy_build/build.ninja" ]; then
	CC=clang meson setup "$tidy_build" -Dfuzzing=true >"$logdir/tidy-setup.log" 2>&1 ||
		{ cat "$logdir/tidy-setup.log"; echo "0 passed, 1 failed"; exit 1; }
else
	# --reconfigure: a build dir from before the option existed must learn it first.
	meson setup --reconfigure "$tidy_build" -Dfuzzing=true >"$logdir/tidy-setup.log" 2>&1 ||
		{ cat "$logdir/tidy-setup.log"; echo "0 passed, 1 failed"; exit 1; }
fi
ninja -C "$tidy_build" >"$logdir/tidy-build.log" 2>&1 ||
	{ tail -40 "$logdir/tidy-build.log"; echo "0 passed, 1 failed"; exit 1; }

sources=$(find src tools -name '*.c' | sort)

# clang-tidy: every finding fails, except a file+check pair listed (with its reason) in
# tests/static/clang-tidy-suppressions.txt.
log=$logdir/clang-tidy.log
# shellcheck disable=SC2086
echo $sources | xargs -n 1 -P "$(nproc)" clang-tidy -p "$tidy_build" --quiet >"$log" 2>&1
# The fuzz targets are in the same compile_commands.json (-Dfuzzing=true).
for f in tests/fuzz/*.c; do
	clang-tidy -p "$tidy_build" --quiet "$f" >>"$log" 2>&1
done
sources="$sources $(ls tests/fuzz/*.c)"
fuzz_flags=(-std=gnu11 -D_GNU_SOURCE -Isrc -I"$tidy_build" -Itests/fuzz) # cppcheck's
findings=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): .*\[[^]]+\]$' "$log" |
	sed -E 's|^.*/(src\|tools\|tests)/|\1/|' | sort -u |
	while IFS= read -r line; do
		file=${line%%:*}
		checks=$(echo "$line" | grep -oE '\[[^]]+\]$' | tr -d '[]' | tr ',' '\n' |
			grep -v '^-warnings-as-errors$')
		suppressed=0
		for c in $checks; do
			grep -qE "^$file $c( |$)" tests/static/clang-tidy-suppressions.txt && suppressed=1
		done
		[ "$suppressed" -eq 1 ] || echo "$line"
	done)
if [ -z "$findings" ]; then
	result clang-tidy 0 "$(echo "$sources" | wc -w) files"
else
	echo "$findings"
	result clang-tidy 1 "$(echo "$findings" | wc -l) findings; full output in $log"
fi

# cppcheck: the same files with their real include paths and defines. It does not read
# the system headers, so protobuf-c's version check needs its number.
log=$logdir/cppcheck.log
# A relative project path, so the file names (and --file-filter) are relative too.
cppcheck --project="${tidy_build#"$root"/}/compile_commands.json" --file-filter='src/*' \
	--file-filter='tools/*' \
	--enable=warning,performance,portability --error-exitcode=1 --inline-suppr \
	--suppressions-list=tests/static/cppcheck-suppressions.txt \
	-DPROTOBUF_C_VERSION_NUMBER=1004001 -D__linux__ -D__x86_64__ -j "$(nproc)" --quiet \
	--template='{file}:{line}: {severity}: {message} [{id}]' >"$log" 2>&1
rc=$?
cppcheck "${fuzz_flags[@]/-std=gnu11/--std=c11}" tests/fuzz/*.c \
	--enable=warning,performance,portability --error-exitcode=1 --inline-suppr \
	--suppressions-list=tests/static/cppcheck-suppressions.txt \
	-DPROTOBUF_C_VERSION_NUMBER=1004001 -D__linux__ -D__x86_64__ --quiet \
	--template='{file}:{line}: {severity}: {message} [{id}]' >>"$log" 2>&1 || rc=1
if [ "$rc" -eq 0 ]; then
	result cppcheck 0
else
	cat "$log"
	result cppcheck 1 "see $log"
fi

# valgrind: the integration suite with the daemon under memcheck. Each report is
# wrapped in a line with "ERROR: ", which fails the test that produced it, as the
# sanitizers' reports do (tests/integration/harness.py). Left out: the fd-limit tests
# (test_faults.py and test_restarts.py::*fd_exhaustion*; valgrind reserves fds of its own
# and changes RLIMIT_NOFILE), the load
# tests (test_load.py, thousands of connections: minutes under valgrind) and the tests
# that measure RSS growth (valgrind's RSS is its own). lax-ioctls: valgrind does not
# know IOMMU_OPTION (_IO(';', 0x87), no size in the number) and would print a warning
# into the daemon's log; our struct is initialised before the call anyway.
if [ "$run_valgrind" -eq 1 ]; then
	vg_build=$root/build-vg
	if [ ! -f "$vg_build/build.ninja" ]; then
		meson setup "$vg_build" -Dbuildtype=debug >"$logdir/vg-setup.log" 2>&1 ||
			{ cat "$logdir/vg-setup.log"; echo "$passed passed, $((failed + 1)) failed"; exit 1; }
	fi
	log=$logdir/valgrind-integration.log
	if ninja -C "$vg_build" >"$logdir/vg-build.log" 2>&1; then
		PLUGIN_WRAPPER="valgrind -q --tool=memcheck --error-exitcode=99 --leak-check=full \
--show-leak-kinds=definite --errors-for-leak-kinds=definite --num-callers=30 \
--sim-hints=lax-ioctls --suppressions=$root/tests/static/valgrind.supp \
'--error-markers=ERROR: valgrind memcheck report begins,valgrind memcheck report ends'" \
			tests/integration/run.sh "$vg_build" \
			--ignore=tests/integration/test_faults.py --ignore=tests/integration/test_load.py \
			-k "not 1000_connects and not 110_allocations and not 100_kubelet and not leak_no_fds and not fd_exhaustion" \
			"$@" >"$log" 2>&1
		rc=$?
		summary=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1)
		if [ "$rc" -eq 0 ]; then
			result "integration under valgrind" 0 "$summary"
		else
			tail -60 "$log"
			result "integration under valgrind" 1 "$summary; see $log"
		fi
	else
		tail -40 "$logdir/vg-build.log"
		result "integration under valgrind" 1 "build failed"
	fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
