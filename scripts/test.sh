#!/usr/bin/env bash
# Runs every test: unit tests (cmocka) and the integration suite (pytest, with
# Debian's python3-grpcio as the kubelet) against a normal (glibc), an ASan+UBSan
# (glibc: the sanitizers need it) and a static musl build (what the release ships),
# then the real-kernel test in a qemu guest. Ends with one line 'N passed, N failed'.
# Then the real-cluster suite (tests/cluster: a single-node Kubernetes built from
# pinned sources). Usage: scripts/test.sh [--no-vm] [--no-cluster]
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

run_vm=1
run_cluster=1
for arg in "$@"; do
	case "$arg" in
	--no-vm) run_vm=0 ;;
	--no-cluster) run_cluster=0 ;;
	*) echo "usage: scripts/test.sh [--no-vm] [--no-cluster]" >&2; exit 2 ;;
	esac
done

scripts/deps.sh || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
failures=()
logdir=$root/build-logs
mkdir -p "$logdir"

# count SUITE PASSED FAILED
count() {
	passed=$((passed + $2))
	failed=$((failed + $3))
	[ "$3" -eq 0 ] || failures+=("$1: $3 failed")
	echo "== $1: $2 passed, $3 failed"
}

build() { # build DIR [meson options...]
	local dir=$1; shift
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" --werror "$@" >"$logdir/$(basename "$dir")-setup.log" 2>&1 ||
			{ cat "$logdir/$(basename "$dir")-setup.log"; return 1; }
	fi
	ninja -C "$dir" >"$logdir/$(basename "$dir")-build.log" 2>&1 ||
		{ cat "$logdir/$(basename "$dir")-build.log"; return 1; }
}

# Unit tests: cmocka prints TAP with CMOCKA_MESSAGE_OUTPUT=tap; count its ok/not ok lines.
unit_tests() { # unit_tests BUILD_DIR NAME
	local log=$logdir/$2-unit.log
	CMOCKA_MESSAGE_OUTPUT=tap meson test -C "$1" --print-errorlogs --verbose >"$log" 2>&1
	local rc=$?
	local ok bad
	ok=$(grep -acE '^ok [0-9]+' "$log")
	bad=$(grep -acE '^not ok [0-9]+' "$log")
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		bad=1 # a test binary crashed before reporting
		tail -40 "$log"
	fi
	[ "$bad" -eq 0 ] || grep -a -m 40 -E '^not ok|ERROR|FAIL' "$log"
	count "unit ($2)" "$ok" "$bad"
}

# A pytest suite: its summary line gives the counts.
pytest_suite() { # pytest_suite RUNNER BUILD_DIR NAME
	local log=$logdir/${3// /-}.log
	"$1" "$2" >"$log" 2>&1
	local rc=$?
	local summary ok bad
	summary=$(grep -aE '^(=+ )?[0-9]+ (passed|failed)|[0-9]+ (passed|failed|error)' "$log" | tail -1)
	ok=$(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || true)
	bad=$(($(echo "$summary" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0) +
		$(echo "$summary" | grep -oE '[0-9]+ errors?' | grep -oE '[0-9]+' || echo 0)))
	ok=${ok:-0}
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	[ "$bad" -eq 0 ] || tail -80 "$log"
	count "$3" "$ok" "$bad"
}

for variant in "build:normal" "build-asan:asan" "build-musl:musl"; do
	dir=${variant%%:*}
	name=${variant##*:}
	opts=()
	[ "$name" = asan ] && opts=(-Db_sanitize=address,undefined -Db_lundef=false)
	if [ "$name" = musl ]; then
		# The release's configuration (scripts/image.sh), unstripped. Its unit tests
		# include the fuzz corpus replays (tests/fuzz/replay.c); fuzzing itself stays
		# glibc: libFuzzer is clang's, built against glibc.
		musl_file=$(scripts/musl.sh 2>"$logdir/musl-deps.log") || { cat "$logdir/musl-deps.log"; musl_file=/nonexistent; }
		opts=(--native-file "$musl_file" -Dstatic_binary=true -Dbuildtype=release -Doptimization=2)
		grep -qsF "$musl_file" "$dir/meson-private/cmd_line.txt" || rm -rf "$dir"
	fi
	if build "$dir" "${opts[@]}"; then
		export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
		export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
		unit_tests "$dir" "$name"
		pytest_suite tests/integration/run.sh "$dir" "integration ($name)"
		unset ASAN_OPTIONS UBSAN_OPTIONS
		if [ "$name" = normal ]; then
			# The image, the manifests (kustomize + typed validation), the release tarball.
			pytest_suite tests/deploy/run.sh "$dir" "shipping"
			# The benchmark's short run: every figure must be produced; no time is judged.
			if "$dir/bench/plugin-bench" --smoke >"$logdir/bench-smoke.log" 2>&1; then
				count "benchmark smoke run" 1 0
			else
				tail -20 "$logdir/bench-smoke.log"
				count "benchmark smoke run" 0 1
			fi
		fi
	else
		count "build ($name)" 0 1
	fi
done

# Fuzzing (regressions replayed, each target FUZZ_SECONDS) and the static checkers +
# valgrind run: each prints 'N passed, N failed'.
for suite in "fuzz:tests/fuzz/run.sh ${FUZZ_SECONDS:-60}" "checks:scripts/check.sh"; do
	name=${suite%%:*}
	log=$logdir/$name.log
	${suite#*:} >"$log" 2>&1
	rc=$?
	line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	ok=$(echo "$line" | grep -oE '^[0-9]+' || echo 0)
	bad=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
	if [ "$rc" -ne 0 ] && [ "${bad:-0}" -eq 0 ]; then bad=1; fi
	[ "${bad:-0}" -eq 0 ] || grep -a -m 40 -E '^== .*FAILED|ERROR|invariant' "$log"
	count "$name" "${ok:-0}" "${bad:-0}"
done

if [ "$run_vm" -eq 1 ]; then
	log=$logdir/vm.log
	tests/vm/run.sh 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	ok=$(echo "$line" | grep -oE '^[0-9]+' || echo 0)
	bad=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0)
	if [ "$rc" -ne 0 ] && [ "${bad:-0}" -eq 0 ]; then bad=1; fi
	count "real kernel (qemu)" "${ok:-0}" "${bad:-0}"
fi

if [ "$run_cluster" -eq 1 ]; then
	# After the fast suites: it builds the cluster's programs the first time.
	echo "== real cluster: building the pinned cluster (the first time only), then its tests (see $logdir/real-cluster.log)"
	tests/cluster/build-progress.sh >/dev/null || true # progress on the terminal; a failure is the suite's
	pytest_suite tests/cluster/run.sh "" "real cluster"
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
