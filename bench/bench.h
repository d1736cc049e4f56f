/* The benchmark's state, in one struct handed to every part of it: the options, the
 * figures being gathered, the private directory, the processes we started, the page
 * the plugin's exec time is stamped into and the strace summaries. */
#pragma once

#include "figures.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

/* How long any one step may take before the benchmark gives up. */
#define BENCH_WAIT_MS 5000
/* Processes of ours alive at once: the plugin, a second plugin, strace. */
#define BENCH_MAX_CHILDREN 4

struct bench_options {
	const char *plugin;
	const char *size_binary; /* the binary whose stripped size is reported */
	const char *tmpdir;
	const char *device;
	int runs;
	int cycles;
	int batch;
	int devices;
	int starts;
	int restarts;
	int idle_ms;
	int streams;
	int connections;
	int missing_allocations;
	bool smoke;
	bool strace;
	bool keep;
};

struct bench {
	struct bench_options options;
	struct figures figures;
	char *temp_root; /* the private directory; kept if we fail or with --keep */
	/* Processes we started and have not reaped, killed if we die (also from the
	 * signal handler, hence volatile). */
	volatile pid_t children[BENCH_MAX_CHILDREN];
	/* A page shared with the plugin's child: its clock just before execve. */
	unsigned long long *exec_stamp;
	/* strace summaries, printed after the table (open_memstream). */
	FILE *trace_out;
	char *trace_report;
	size_t trace_report_len;
};

/* Says what failed, on what and why (printf-style), kills our children, tells where
 * the private directory was kept and exits 1: the benchmark's one failure policy, since
 * a figure measured after a failed step would mean nothing. */
void bench_die(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* CLOCK_MONOTONIC in ns. */
static inline unsigned long long bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

/* Sleeps ms milliseconds, through signals. */
void bench_sleep_ms(int ms);
