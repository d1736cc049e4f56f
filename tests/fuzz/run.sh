#!/usr/bin/env bash
# Builds the libFuzzer targets with meson (-Dfuzzing=true: clang, ASan+UBSan, coverage
# on the daemon's core; tests/fuzz/meson.build) in build-fuzz/, replays every committed regression input, then fuzzes each target for a
# bounded time from its seed corpus. Any crash, leak, sanitizer report or broken
# invariant fails that target. Ends with 'N passed, N failed' (one per target).
# Usage: tests/fuzz/run.sh [seconds-per-target]   (default 40; FUZZ_JOBS targets at once)
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
seconds=${1:-40}
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${FUZZ_JOBS:-$(nproc)}
here=$root/tests/fuzz
out=$build/fuzz
targets=(grpc_server device_plugin_requests handoff_peer http_parse http_server grpc_frame)

mkdir -p "$out"
log=$out/build.log
if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" --werror -Dfuzzing=true -Db_sanitize=address,undefined \
		-Db_lundef=false -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all' \
		>"$log" 2>&1 || { cat "$log"; echo "0 passed, ${#targets[@]} failed"; exit 1; }
else
	# --reconfigure: a build dir from before the option existed must learn it first.
	meson setup --reconfigure "$build" -Dfuzzing=true >"$log" 2>&1 ||
		{ cat "$log"; echo "0 passed, ${#targets[@]} failed"; exit 1; }
fi
# shellcheck disable=SC2046
ninja -C "$build" $(printf 'tests/fuzz/fuzz_%s ' "${targets[@]}") >>"$log" 2>&1 ||
	{ tail -40 "$log"; echo "0 passed, ${#targets[@]} failed"; exit 1; }
for t in "${targets[@]}"; do
	ln -sf "$build/tests/fuzz/fuzz_$t" "$out/fuzz_$t"
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

# fuzz_one TARGET: replays the regressions, then fuzzes; the log is $out/TARGET.log.
fuzz_one() {
	local t=$1 bin=$out/fuzz_$t tlog=$out/$t.log
	local work=$out/corpus/$t artifacts=$out/artifacts/$t/
	mkdir -p "$work" "$artifacts"
	: >"$tlog"
	local regressions=("$here/regressions/$t"/*)
	if [ -e "${regressions[0]}" ]; then
		"$bin" -runs=1 "${regressions[@]}" >>"$tlog" 2>&1 ||
			{ echo "REGRESSION REPLAY FAILED" >>"$tlog"; return 1; }
	fi
	local dict=()
	[ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
	# New inputs go to the work corpus; the committed seeds are only read.
	"$bin" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-detect_leaks=1 -print_final_stats=1 -artifact_prefix="$artifacts" \
		"$work" "$here/corpus/$t" >>"$tlog" 2>&1
}

pids=()
running=0
for t in "${targets[@]}"; do
	fuzz_one "$t" &
	pids+=($!)
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
done

passed=0
failed=0
for i in "${!targets[@]}"; do
	t=${targets[$i]}
	wait "${pids[$i]}"
	rc=$?
	tlog=$out/$t.log
	execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$tlog" | grep -oE '[0-9]+$')
	cov=$(grep -oE '(INITED|DONE|#[0-9]+).* cov: [0-9]+ ft: [0-9]+' "$tlog" | tail -1 |
		grep -oE 'cov: [0-9]+ ft: [0-9]+')
	if [ "$rc" -eq 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$tlog"; then
		passed=$((passed + 1))
		echo "== fuzz_$t: ok (${execs:-?} execs, ${cov:-no coverage line})"
	else
		failed=$((failed + 1))
		echo "== fuzz_$t: FAILED (log $tlog)"
		grep -m 20 -E 'ERROR|runtime error|invariant|Test unit written|REGRESSION' "$tlog"
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
