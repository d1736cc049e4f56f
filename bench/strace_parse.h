/* Syscall counts of one batch: strace -c -f attached to the plugin for the batch,
 * its summary table read back and written as calls per operation into the bench's
 * report (printed after the figures). */
#pragma once

#include "bench.h"

#include <stdio.h>
#include <sys/types.h>

struct tracer {
	pid_t pid;
	char *out; /* strace's summary file (owned) */
};

/* Starts strace -c -f on target, its summary going to out, and waits until it is
 * attached. Dies on failure (strace missing: it never attaches). */
void tracer_start(struct bench *b, struct tracer *t, pid_t target, const char *out);
/* Stops strace (SIGINT: it writes the summary), then adds the summary of ops
 * operations called what to b's report. Dies if the summary cannot be read. */
void tracer_finish(struct bench *b, struct tracer *t, const char *what, int ops);

/* Reads the summary table of strace -c from in and writes each syscall's calls (and
 * failures) per operation, then the total, to out. Returns 0 or -errno of reading in
 * (-EIO). */
int strace_summary_write(FILE *in, FILE *out, const char *what, int ops);
