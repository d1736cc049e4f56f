/* The kubelet protocol's metrics sources: registration on kubelet.sock, the plugin
 * watcher, the DevicePlugin service and the PodResources poller, each written from
 * its module's stats at scrape time. */
#include "device_plugin.h"
#include "plugin_watcher.h"
#include "pod_resources.h"
#include "registration.h"
#include "../metrics/metrics.h"

void registration_metrics_write(struct metrics_writer *w, const void *registration)
{
	const struct registration *reg = registration;
	const struct registration_stats *st = registration_stats(reg);
	enum registration_endpoint endpoint = registration_endpoint_state(reg);

	metrics_family(w, "registrations_total", METRICS_COUNTER,
		       "Register calls the kubelet accepted.");
	metrics_sample(w, st->registrations);
	/* registrations only grows, so this does too. */
	metrics_family(w, "reregistrations_total", METRICS_COUNTER,
		       "Registrations after the first one (the kubelet restarted).");
	metrics_sample(w, st->registrations ? st->registrations - 1 : 0);
	metrics_family(w, "registration_failures_total", METRICS_COUNTER,
		       "Register attempts that failed (connect, timeout or an error status).");
	metrics_sample(w, st->register_failures);
	metrics_family(w, "socket_recreations_total", METRICS_COUNTER,
		       "Times our socket was deleted (kubelet restart) and served again.");
	metrics_sample(w, st->socket_recreations);
	metrics_family(w, "socket_conflict", METRICS_GAUGE,
		       "1 while another, foreign device plugin serves our DevicePlugin socket path "
		       "(we stand aside; see docs/operations.md).");
	metrics_sample(w, endpoint == REGISTRATION_ENDPOINT_FOREIGN);
	metrics_family(w, "socket_conflicts_total", METRICS_COUNTER,
		       "Times a foreign device plugin was found serving our DevicePlugin socket "
		       "path.");
	metrics_sample(w, st->foreign_conflicts);
	metrics_family(w, "superseded", METRICS_GAUGE,
		       "1 once a newer instance of this plugin took over our DevicePlugin socket.");
	metrics_sample(w, endpoint == REGISTRATION_ENDPOINT_SUPERSEDED);
}

void plugin_watcher_metrics_write(struct metrics_writer *w, const void *watcher)
{
	const struct plugin_watcher_stats *st = plugin_watcher_stats(watcher);

	metrics_family(w, "plugin_watcher_info_requests_total", METRICS_COUNTER,
		       "GetInfo calls from the kubelet's plugin watcher.");
	metrics_sample(w, st->info_requests);
	metrics_family(w, "plugin_watcher_registrations_total", METRICS_COUNTER,
		       "Registrations the kubelet reported through the plugin watcher.");
	metrics_sample(w, st->registrations);
	metrics_family(w, "plugin_watcher_registration_failures_total", METRICS_COUNTER,
		       "Failed registrations the kubelet reported through the plugin watcher.");
	metrics_sample(w, st->registration_failures);
}

void device_plugin_metrics_write(struct metrics_writer *w, const void *plugin)
{
	const struct device_plugin_stats *st = device_plugin_stats(plugin);

	metrics_family(w, "allocations_total", METRICS_COUNTER,
		       "Container allocations answered with success.");
	metrics_sample(w, st->allocations);
	metrics_family(w, "allocation_failures_total", METRICS_COUNTER,
		       "Allocate calls answered with an error.");
	metrics_sample(w, st->allocation_failures);
	metrics_family(w, "list_and_watch_streams_opened_total", METRICS_COUNTER,
		       "ListAndWatch streams the kubelet opened.");
	metrics_sample(w, st->streams_opened);
	metrics_family(w, "list_and_watch_streams", METRICS_GAUGE,
		       "ListAndWatch streams open now.");
	metrics_sample(w, st->streams_open);
}

void pod_resources_metrics_write(struct metrics_writer *w, const void *pod_resources)
{
	const struct pod_resources_stats *st = pod_resources_stats(pod_resources);

	metrics_family(w, "pod_resources_lists_total", METRICS_COUNTER,
		       "PodResources List calls made while handoff sockets were pending.");
	metrics_sample(w, st->lists);
	metrics_family(w, "pod_resources_list_failures_total", METRICS_COUNTER,
		       "PodResources List calls that failed or timed out (the TTL still applies).");
	metrics_sample(w, st->failures);
}
