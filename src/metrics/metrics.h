/* Prometheus metrics (GET /metrics, text exposition format 0.0.4) and the health checks
 * (GET /healthz, /livez) on the optional --metrics-address. This module knows no other:
 * each module that has something to expose registers a source, a function that writes
 * its families from its own stats at scrape time through the helpers below (no timers,
 * no copies, nothing to keep in sync), and whoever knows what "ready" means registers
 * the readiness check behind /healthz. */
#pragma once

#include "../http/http.h"
#include "histogram.h"

struct loop;
struct metrics;
/* Where a source writes: the response body and the family being written. */
struct metrics_writer;

enum metrics_type {
	METRICS_COUNTER,   /* only ever goes up; its name ends in _total */
	METRICS_GAUGE,	   /* a value now; its name does not end in _total */
	METRICS_HISTOGRAM, /* counts per bucket (metrics_histogram()) */
};

/* Writes one module's families to w, with metrics_family and metrics_sample*; data is
 * what was given to metrics_add_source. Called from the loop, once per scrape. */
typedef void (*metrics_source_fn)(struct metrics_writer *w, const void *data);

/* NULL while ready (/healthz answers 200 "ok"), else why not: one line without its
 * newline, a static string (503). */
typedef const char *(*metrics_readiness_fn)(const void *data);

/**
 * metrics_new() - an empty registry
 *
 * /metrics has the build and process families only, /healthz answers 200 until
 * metrics_set_readiness() says otherwise.
 *
 * Return: the registry (free with metrics_free()).
 */
struct metrics *metrics_new(void);

/**
 * metrics_free() - stop serving (closing open connections) and free
 * @metrics: the registry; NULL is a no-op
 */
void metrics_free(struct metrics *metrics);

/**
 * metrics_add_source() - append a source
 * @metrics: the registry
 * @fn:      writes the source's families; borrowed, must outlive @metrics
 * @data:    passed to @fn; borrowed, must outlive @metrics
 *
 * /metrics has the sources' families in the order they were added.
 */
void metrics_add_source(struct metrics *metrics, metrics_source_fn fn, const void *data);

/**
 * metrics_set_readiness() - set the check /healthz answers from
 * @metrics: the registry
 * @fn:      the check, replacing any earlier one; borrowed, must outlive @metrics
 * @data:    passed to @fn; borrowed, must outlive @metrics
 */
void metrics_set_readiness(struct metrics *metrics, metrics_readiness_fn fn, const void *data);

/**
 * metrics_serve() - serve /metrics, /healthz and /livez
 * @metrics: the registry
 * @loop:    the loop
 * @address: where, see http_address_parse()
 *
 * Logs the cause of a failure.
 *
 * Return: 0, or -errno, see http_server_new().
 */
int metrics_serve(struct metrics *metrics, struct loop *loop, const char *address);

/**
 * metrics_render() - append the exposition text of every family
 * @metrics:  the registry
 * @response: its body gets build_info, the sources in order, then the process_*
 *            families
 */
void metrics_render(const struct metrics *metrics, struct http_response *response);

/**
 * metrics_family() - start the family "iommufd_device_plugin_<name>"
 * @w:    the writer
 * @name: the family's name without the prefix
 * @type: counter or gauge
 * @help: its HELP text, escaped as the format wants
 *
 * Writes its HELP line and its TYPE line. The samples that follow belong to it. A
 * counter's value must come from a field that is only ever incremented.
 */
void metrics_family(struct metrics_writer *w, const char *name, enum metrics_type type,
		    const char *help);

/**
 * metrics_counter() - a counter family of one sample without labels
 * @w:     the writer
 * @name:  as for metrics_family()
 * @help:  as for metrics_family()
 * @value: the sample
 *
 * metrics_family(), then metrics_sample().
 */
void metrics_counter(struct metrics_writer *w, const char *name, const char *help,
		     unsigned long long value);

/**
 * metrics_gauge() - a gauge family of one sample without labels
 * @w:     the writer
 * @name:  as for metrics_family()
 * @help:  as for metrics_family()
 * @value: the sample
 *
 * metrics_family(), then metrics_sample().
 */
void metrics_gauge(struct metrics_writer *w, const char *name, const char *help,
		   unsigned long long value);

/**
 * metrics_sample() - a sample of the current family without labels
 * @w:     the writer
 * @value: the sample
 */
void metrics_sample(struct metrics_writer *w, unsigned long long value);

/**
 * metrics_sample_labelled() - a sample of the current family with one label
 * @w:           the writer
 * @label:       the label's name
 * @label_value: its value, escaped (\, ", line feed)
 * @value:       the sample
 */
void metrics_sample_labelled(struct metrics_writer *w, const char *label, const char *label_value,
			     unsigned long long value);

/**
 * metrics_histogram() - a histogram family without labels
 * @w:      the writer
 * @name:   as for metrics_family(); not ending in _total
 * @help:   as for metrics_family()
 * @h:      its counts
 * @bounds: the upper bounds it was observed with, see metrics_histogram_observe()
 * @n:      how many
 *
 * Writes the cumulative _bucket{le="..."} samples, +Inf last, then _sum and _count.
 */
void metrics_histogram(struct metrics_writer *w, const char *name, const char *help,
		       const struct metrics_histogram *h, const double *bounds, size_t n);
