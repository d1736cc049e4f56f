/* Prometheus metrics (GET /metrics, text exposition format 0.0.4) and the health checks
 * (GET /healthz, /livez) on the optional --metrics-address. This module knows no other:
 * each module that has something to expose registers a source, a function that writes
 * its families from its own stats at scrape time through the helpers below (no timers,
 * no copies, nothing to keep in sync), and whoever knows what "ready" means registers
 * the readiness check behind /healthz. */
#pragma once

#include "../http/http.h"

struct loop;
struct metrics;
/* Where a source writes: the response body and the family being written. */
struct metrics_writer;

enum metrics_type {
	METRICS_COUNTER, /* only ever goes up; its name ends in _total */
	METRICS_GAUGE,	 /* a value now; its name does not end in _total */
};

/* Writes one module's families to w, with metrics_family and metrics_sample*; data is
 * what was given to metrics_add_source. Called from the loop, once per scrape. */
typedef void (*metrics_source_fn)(struct metrics_writer *w, const void *data);

/* NULL while ready (/healthz answers 200 "ok"), else why not: one line without its
 * newline, a static string (503). */
typedef const char *(*metrics_readiness_fn)(const void *data);

/* An empty registry: /metrics has the build and process families only, /healthz
 * answers 200 until metrics_set_readiness says otherwise. Free with metrics_free. */
struct metrics *metrics_new(void);
/* Stops serving (closing open connections) and frees. NULL is a no-op. */
void metrics_free(struct metrics *metrics);

/* Appends a source; /metrics has the sources' families in the order they were added.
 * fn and data are borrowed and must outlive the metrics. */
void metrics_add_source(struct metrics *metrics, metrics_source_fn fn, const void *data);
/* Sets the check /healthz answers from (replacing any earlier one); fn and data are
 * borrowed and must outlive the metrics. */
void metrics_set_readiness(struct metrics *metrics, metrics_readiness_fn fn, const void *data);

/* Serves /metrics, /healthz and /livez on address (see http_address_parse). Logs the
 * cause of a failure. Returns 0, or -errno, see http_server_new. */
int metrics_serve(struct metrics *metrics, struct loop *loop, const char *address);

/* Appends the exposition text of every family to response->body: build_info, the
 * sources in order, then the process_* families. */
void metrics_render(const struct metrics *metrics, struct http_response *response);

/* Starts the family "iommufd_device_plugin_<name>": its HELP line (help escaped as the
 * format wants) and its TYPE line. The samples that follow belong to it. A counter's
 * value must come from a field that is only ever incremented. */
void metrics_family(struct metrics_writer *w, const char *name, enum metrics_type type,
		    const char *help);
/* A family of one sample without labels: metrics_family, then metrics_sample. */
void metrics_counter(struct metrics_writer *w, const char *name, const char *help,
		     unsigned long long value);
void metrics_gauge(struct metrics_writer *w, const char *name, const char *help,
		   unsigned long long value);
/* A sample of the current family without labels. */
void metrics_sample(struct metrics_writer *w, unsigned long long value);
/* A sample of the current family with one label; label_value is escaped (\, ", line
 * feed). */
void metrics_sample_labelled(struct metrics_writer *w, const char *label, const char *label_value,
			     unsigned long long value);
