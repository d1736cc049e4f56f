/* Prometheus metrics (GET /metrics, text exposition format 0.0.4) and the health check
 * (GET /healthz) on the optional --metrics-address. Counters are read from the
 * modules' own stats at scrape time: no timers, no copies, nothing to keep in sync. */
#pragma once

#include "../http/http.h"

struct loop;
struct device_plugin;
struct registration;
struct plugin_watcher;
struct iommufd_opener;
struct handoff;
struct device_presence;

/* The modules whose state is exposed; all borrowed, and any may be NULL (its metrics
 * are then left out). /healthz answers 200 while one of the registration paths given
 * (kubelet.sock, plugin watcher) is registered. */
struct metrics_sources {
	const struct device_plugin *plugin;
	const struct registration *registration;
	const struct plugin_watcher *plugin_watcher;
	const struct iommufd_opener *opener;
	const struct handoff *handoff;
	const struct device_presence *presence;
	const struct pod_resources *pod_resources; /* NULL when the poller is off */
};

struct metrics;

/* Serves /metrics and /healthz on address (see http_address_parse). sources is
 * copied; the modules it points to must outlive the metrics. Logs the cause of a
 * failure. Returns 0 and *out (free with metrics_free) or -errno, see
 * http_server_new. */
int metrics_new(struct loop *loop, const char *address, const struct metrics_sources *sources,
		struct metrics **out);
/* Stops serving (closing open connections) and frees. NULL is a no-op. */
void metrics_free(struct metrics *metrics);

/* Appends the exposition text for sources to response->body; start_time is the
 * process start in seconds since the epoch. */
void metrics_render(const struct metrics_sources *sources, double start_time,
		    struct http_response *response);
