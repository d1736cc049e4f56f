/* The benchmark's figures: samples per figure, their median, spread and percentiles,
 * and the one table plugin-bench prints (with the goal and the Go plugin's figure). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define DASHES "------------------------------------------------"

enum unit { UNIT_MS, UNIT_US, UNIT_KIB, UNIT_BYTES, UNIT_COUNT, UNIT_PERCENT };

struct figure {
	char name[96];
	enum unit unit; /* samples are in ns (MS, US), KiB, bytes or plain counts */
	double *v;
	size_t n, cap;
	bool has_goal;
	double goal; /* a sample passes if <= goal */
	const char *goal_text;
	const char *go_text;
};

enum {
	F_EXEC_REGISTER,
	F_RESTART_REGISTER,
	F_RSS_REGISTER,
	F_ANON_REGISTER,
	F_HWM_REGISTER,
	F_THREADS_REGISTER,
	F_FDS_REGISTER,
	F_RSS_CYCLES,
	F_ANON_CYCLES,
	F_HWM_CYCLES,
	F_THREADS_CYCLES,
	F_FDS_CYCLES,
	F_CPU_ALLOCATE,
	F_CPU_HANDOFF,
	F_CPU_ALLOCATE_MISSING,
	F_KERNEL_SHARE,
	F_LATENCY_P50,
	F_LATENCY_P99,
	F_LATENCY_MAX,
	F_HANDOFF_P50,
	F_IDLE_SWITCHES,
	F_IDLE_CPU,
	F_STREAM_GROWTH,
	F_CONNECTION_GROWTH,
	F_BINARY_SIZE,
	F_COUNT
};

/* Every figure of the benchmark, indexed by the F_* ids. Zero it; figures_free. */
struct figures {
	struct figure f[F_COUNT];
};

/* Names figure id of t (printf-style), its unit, its goal (a sample passes if <= goal;
 * goal_text NULL: no goal) and the Go plugin's figure (NULL: none; both texts are
 * borrowed and must outlive t). */
void figure_define(struct figures *t, int id, enum unit unit, const char *goal_text, double goal,
		   const char *go_text, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* Adds one sample to figure id of t. */
void figure_add(struct figures *t, int id, double value);
/* Frees the samples of t. */
void figures_free(struct figures *t);
int compare_double(const void *a, const void *b);
/* p in 0..1 of n sorted samples. */
double percentile(const double *sorted, size_t n, double p);
/* Prints the table of t to stdout (sorting each figure's samples); returns how many
 * figures have no sample. */
int figures_print_table(struct figures *t);
