/* A Prometheus histogram's counts, kept by the module that observes the values and
 * written at scrape time by metrics_histogram(). The bucket bounds are the module's
 * constant array, given at each call, so a zeroed histogram is ready. */
#pragma once

#include <stddef.h>

/* The most finite buckets a histogram has (+Inf is one more). */
#define METRICS_HISTOGRAM_MAX_BUCKETS 16

struct metrics_histogram {
	/* counts[i]: values in (bounds[i-1], bounds[i]]; counts[n]: above bounds[n-1] */
	unsigned long long counts[METRICS_HISTOGRAM_MAX_BUCKETS + 1];
	unsigned long long count;
	double sum;
};

/**
 * metrics_histogram_observe() - count one value
 * @h:      the histogram; zeroed: empty
 * @bounds: the buckets' upper bounds, ascending, at most METRICS_HISTOGRAM_MAX_BUCKETS;
 *          the same array at every call and at metrics_histogram()
 * @n:      how many
 * @value:  the value observed
 */
void metrics_histogram_observe(struct metrics_histogram *h, const double *bounds, size_t n,
			       double value);
