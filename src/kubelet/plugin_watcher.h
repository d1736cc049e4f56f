/* Registration through the kubelet's plugin watcher (pluginregistration v1): a socket
 * in the plugins_registry directory answers GetInfo with our resource name and the
 * absolute path of a DevicePlugin socket outside the device-plugins directory. The
 * kubelet finds it with inotify and registers the plugin by itself, also after its
 * own restarts, so this path cannot race a restarting kubelet. */
#pragma once

#include "kubelet_options.h"
#include "../loop/loop.h"

#include <stdbool.h>

struct plugin_watcher;
struct device_plugin;

struct plugin_watcher_stats {
	unsigned long long info_requests;	  /* GetInfo calls */
	unsigned long long registrations;	  /* NotifyRegistrationStatus: registered */
	unsigned long long registration_failures; /* NotifyRegistrationStatus: an error */
};

/* Borrowed config and plugin must outlive it. Nothing is served until
 * plugin_watcher_start(). Returns 0 and *out (free with plugin_watcher_free); only
 * allocation can fail, and that aborts. */
int plugin_watcher_new(struct loop *loop, const struct kubelet_options *config,
		       struct device_plugin *plugin, struct plugin_watcher **out);
void plugin_watcher_free(struct plugin_watcher *watcher);

/* Serves the DevicePlugin socket in --plugin-dir and the registration socket in
 * --plugins-registry-dir (creating both directories). Returns 0 or -errno (logged). */
int plugin_watcher_start(struct plugin_watcher *watcher);
/* Removes the registration socket, so the kubelet deregisters us (shutdown). */
void plugin_watcher_stop(struct plugin_watcher *watcher);

/* Whether the kubelet last reported a successful registration. */
bool plugin_watcher_registered(const struct plugin_watcher *watcher);
const struct plugin_watcher_stats *plugin_watcher_stats(const struct plugin_watcher *watcher);

struct metrics_writer;
/* A metrics_source_fn for a const struct plugin_watcher *: GetInfo calls and the
 * registrations the kubelet reported (kubelet_metrics.c). */
void plugin_watcher_metrics_write(struct metrics_writer *w, const void *watcher);
