/* Registration through the kubelet's plugin watcher (pluginregistration v1): a socket
 * in the plugins_registry directory answers GetInfo with our type, name, versions and
 * the absolute path of the service socket we serve (a DevicePlugin outside the
 * device-plugins directory, or a DRAPlugin). The kubelet finds it with inotify and
 * registers the plugin by itself, also after its own restarts, so this path cannot
 * race a restarting kubelet. */
#pragma once

#include "../loop/loop.h"

#include <stdbool.h>
#include <stddef.h>

struct plugin_watcher;

/* Serves the plugin's service at path (an absolute socket path); replace_live as
 * grpc_server_listen()'s. Returns 0 or -errno (-EADDRINUSE: a live server holds it). */
typedef int (*plugin_watcher_listen_fn)(void *data, const char *path, bool replace_live);

/* What GetInfo tells the kubelet, and where both sockets are. Strings are copied. */
struct plugin_watcher_endpoint {
	const char *type;		 /* "DevicePlugin" or "DRAPlugin" */
	const char *name;		 /* the resource name, or the DRA driver's name */
	const char *const *versions;	 /* supported versions (DRA: gRPC services) */
	size_t version_count;		 /* at most PLUGIN_WATCHER_MAX_VERSIONS */
	const char *service_socket;	 /* absolute path of the service socket */
	const char *registration_socket; /* its path in the plugins_registry dir */
	plugin_watcher_listen_fn listen; /* serves service_socket */
	void *listen_data;		 /* passed to @listen */
	/* NULL, or called after each NotifyRegistrationStatus that says registered (the
	 * kubelet's first, and again after each kubelet restart). */
	void (*registered)(void *data);
	void *registered_data; /* passed to @registered */
};

#define PLUGIN_WATCHER_MAX_VERSIONS 4

struct plugin_watcher_stats {
	unsigned long long info_requests;	  /* GetInfo calls */
	unsigned long long registrations;	  /* NotifyRegistrationStatus: registered */
	unsigned long long registration_failures; /* NotifyRegistrationStatus: an error */
};

/**
 * plugin_watcher_new() - create the plugin watcher registration
 * @loop:     the loop
 * @endpoint: what to register and where; copied
 * @out:      set to it (free with plugin_watcher_free())
 *
 * Nothing is served until plugin_watcher_start().
 *
 * Return: 0, or -EINVAL (more than PLUGIN_WATCHER_MAX_VERSIONS versions); allocation
 * failure aborts.
 */
int plugin_watcher_new(struct loop *loop, const struct plugin_watcher_endpoint *endpoint,
		       struct plugin_watcher **out);

struct kubelet_options;
struct device_plugin;
/**
 * plugin_watcher_new_device_plugin() - the plugin watcher registration of a DevicePlugin
 * @loop:   the loop
 * @config: --plugin-dir, --plugins-registry-dir, --socket-name, --resource-name
 * @plugin: borrowed, must outlive it; serves the DevicePlugin socket
 * @out:    set to it
 *
 * Return: 0; allocation failure aborts.
 */
int plugin_watcher_new_device_plugin(struct loop *loop, const struct kubelet_options *config,
				     struct device_plugin *plugin, struct plugin_watcher **out);

/**
 * plugin_watcher_free() - free it
 * @watcher: the plugin watcher registration
 */
void plugin_watcher_free(struct plugin_watcher *watcher);

/**
 * plugin_watcher_start() - serve the service and the registration sockets
 * @watcher: the plugin watcher registration
 *
 * Serves the service socket (through the endpoint's listen function) and then the
 * registration socket, creating both directories.
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
