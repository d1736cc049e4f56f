# shellcheck shell=bash
# Sourced by the long set-up builds (tests/vm/build-kernel.sh, tests/cluster/build-progress.sh):
# runs a command with its output in a log and prints a progress line to stderr at a fixed
# interval, so a terminal never stays silent for minutes.

# progress_run EVERY DESCRIBE LOG CMD...: runs CMD with stdout and stderr appended to LOG;
# every EVERY seconds while it runs, prints "$PROGRESS_PREFIX: $(DESCRIBE) (Nm Ns)" to
# stderr (DESCRIBE is a command, e.g. a function that counts objects in LOG). Returns
# CMD's exit status.
progress_run() {
	local every=$1 describe=$2 log=$3 pid rc=0 start=$SECONDS next
	shift 3
	"$@" >>"$log" 2>&1 &
	pid=$!
	next=$((SECONDS + every))
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		if [ "$SECONDS" -ge "$next" ]; then
			local elapsed=$((SECONDS - start))
			echo "${PROGRESS_PREFIX:-progress}: $("$describe" 2>/dev/null) ($((elapsed / 60))m$((elapsed % 60))s)" >&2
			next=$((SECONDS + every))
		fi
	done
	wait "$pid" || rc=$?
	return "$rc"
}
