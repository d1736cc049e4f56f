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

/**
 * plugin_watcher_new() - create the plugin watcher registration
 * @loop:   the loop
 * @config: borrowed, must outlive it
 * @plugin: borrowed, must outlive it
 * @out:    set to it (free with plugin_watcher_free())
 *
 * Nothing is served until plugin_watcher_start().
 *
 * Return: 0; only allocation can fail, and that aborts.
 */
int plugin_watcher_new(struct loop *loop, const struct kubelet_options *config,
		       struct device_plugin *plugin, struct plugin_watcher **out);

/**
 * plugin_watcher_free() - free it
 * @watcher: the plugin watcher registration
 */
void plugin_watcher_free(struct plugin_watcher *watcher);

/**
 * plugin_watcher_start() - serve the DevicePlugin and the registration sockets
 * @watcher: the plugin watcher registration
 *
 * Serves the DevicePlugin socket in --plugin-dir and the registration socket in
 * --plugins-registry-dir (creating both directories).
 *
 * Return: 0 or -errno (logged).
 */
int plugin_watcher_start(struct plugin_watcher *watcher);
/**
 * plugin_watcher_stop() - remove the registration socket (shutdown)
 * @watcher: the plugin watcher registration
 *
 * So the kubelet deregisters us.
 */
void plugin_watcher_stop(struct plugin_watcher *watcher);

/**
 * plugin_watcher_registered() - whether the kubelet last reported a registration
 * @watcher: the plugin watcher registration
 *
 * Return: true if the kubelet's last NotifyRegistrationStatus was a success.
 */
bool plugin_watcher_registered(const struct plugin_watcher *watcher);

/**
 * plugin_watcher_stats() - counters, for metrics
 * @watcher: the plugin watcher registration
 *
 * Return: the counters, valid until plugin_watcher_free().
 */
const struct plugin_watcher_stats *plugin_watcher_stats(const struct plugin_watcher *watcher);

struct metrics_writer;
/**
 * plugin_watcher_metrics_write() - the plugin watcher's metrics
 * @w:       the writer
 * @watcher: a const struct plugin_watcher *
 *
 * A metrics_source_fn: GetInfo calls and the registrations the kubelet reported
 * (kubelet_metrics.c).
 */
void plugin_watcher_metrics_write(struct metrics_writer *w, const void *watcher);
