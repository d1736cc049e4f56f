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
	enum registration_state state = registration_state(reg);

	metrics_counter(w, "registrations_total", "Register calls the kubelet accepted.",
			st->registrations);
	/* registrations only grows, so this does too. */
	metrics_counter(w, "reregistrations_total",
			"Registrations after the first one (the kubelet restarted).",
			st->registrations ? st->registrations - 1 : 0);
	metrics_counter(w, "registration_failures_total",
			"Register attempts that failed (connect, timeout or an error status).",
			st->register_failures);
	metrics_counter(w, "socket_recreations_total",
			"Times our socket was deleted (kubelet restart) and served again.",
			st->socket_recreations);
	metrics_gauge(w, "socket_conflict",
		      "1 while another, foreign device plugin serves our DevicePlugin socket path "
		      "(we stand aside; see docs/operations.md).",
		      state == REGISTRATION_FOREIGN);
	metrics_counter(w, "socket_conflicts_total",
			"Times a foreign device plugin was found serving our DevicePlugin socket "
			"path.",
			st->foreign_conflicts);
	metrics_counter(w, "list_and_watch_ended_by_kubelet_total",
			"Times the kubelet ended our ListAndWatch stream while we served (we "
			"registered again at once).",
			st->streams_ended);
	metrics_counter(w, "stale_endpoint_moves_total",
			"Times the kubelet refused our Register because it held a stale endpoint "
			"on our path, and we moved to the other socket name.",
			st->stale_endpoint_moves);
	metrics_gauge(w, "superseded",
		      "1 once a newer instance of this plugin serves the kubelet in our place.",
		      state == REGISTRATION_SUPERSEDED);
}

void plugin_watcher_metrics_write(struct metrics_writer *w, const void *watcher)
{
	const struct plugin_watcher_stats *st = plugin_watcher_stats(watcher);

	metrics_counter(w, "plugin_watcher_info_requests_total",
			"GetInfo calls from the kubelet's plugin watcher.", st->info_requests);
	metrics_counter(w, "plugin_watcher_registrations_total",
			"Registrations the kubelet reported through the plugin watcher.",
			st->registrations);
	metrics_counter(w, "plugin_watcher_registration_failures_total",
			"Failed registrations the kubelet reported through the plugin watcher.",
			st->registration_failures);
}

void device_plugin_metrics_write(struct metrics_writer *w, const void *plugin)
{
	const struct device_plugin_stats *st = device_plugin_stats(plugin);

	metrics_counter(w, "allocations_total", "Container allocations answered with success.",
			st->allocations);
	metrics_counter(w, "allocation_failures_total", "Allocate calls answered with an error.",
			st->allocation_failures);
	metrics_counter(w, "list_and_watch_streams_opened_total",
			"ListAndWatch streams the kubelet opened.", st->streams_opened);
	metrics_gauge(w, "list_and_watch_streams", "ListAndWatch streams open now.",
		      st->streams_open);
}

void pod_resources_metrics_write(struct metrics_writer *w, const void *pod_resources)
{
	const struct pod_resources_stats *st = pod_resources_stats(pod_resources);

	metrics_counter(w, "pod_resources_lists_total",
			"PodResources List calls made while handoff sockets were pending.",
			st->lists);
	metrics_counter(w, "pod_resources_list_failures_total",
			"PodResources List calls that failed or timed out (the TTL still applies).",
			st->failures);
}
