/* The DevicePlugin gRPC service the kubelet calls (deviceplugin v1beta1):
 * GetDevicePluginOptions, ListAndWatch, GetPreferredAllocation, Allocate (the
 * iommufd handoff starts here) and PreStartContainer. */
#pragma once

#include "kubelet_options.h"
#include "../grpc/server.h"
#include "../loop/loop.h"

#include "deviceplugin.pb-c.h"

struct device_plugin;
struct iommufd_opener;
struct handoff;

struct device_plugin_stats {
	unsigned long long allocations;		/* container allocations answered */
	unsigned long long allocation_failures; /* Allocate calls answered with an error */
	unsigned long long streams_opened;
	unsigned long long streams_open;
};

/**
 * device_plugin_new() - create the service (not listening yet)
 * @loop:    the loop
 * @config:  borrowed, must outlive it
 * @opener:  opens the iommufd of each allocation; borrowed, must outlive it
 * @handoff: offers it; borrowed, must outlive it
 * @out:     set to the service (free with device_plugin_free())
 *
 * @opener and @handoff may be NULL only while no Allocate can arrive (tests).
 *
 * Return: 0; only allocation can fail, and that aborts.
 */
int device_plugin_new(struct loop *loop, const struct kubelet_options *config,
		      struct iommufd_opener *opener, struct handoff *handoff,
		      struct device_plugin **out);

/**
 * device_plugin_free() - free the service
 * @plugin: the service
 */
void device_plugin_free(struct device_plugin *plugin);

/* Where the service listens: in the kubelet's device-plugins directory (registered
 * through kubelet.sock; the kubelet deletes it on restart) and/or at an absolute path
 * elsewhere (registered through the plugin watcher; the kubelet leaves it alone). */
enum device_plugin_endpoint {
	DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR,
	DEVICE_PLUGIN_ENDPOINT_PLUGIN_DIR,
	DEVICE_PLUGIN_ENDPOINT_COUNT,
};

/**
 * device_plugin_listen() - serve an endpoint on a path
 * @plugin:       the service
 * @endpoint:     which one
 * @path:         the socket file; a dead socket there is replaced
 * @replace_live: replace a live one too
 * @bound:        as for grpc_server_listen()
 * @data:         passed to @bound
 *
 * Return: 0 or -errno, see grpc_server_listen().
 */
int device_plugin_listen(struct device_plugin *plugin, enum device_plugin_endpoint endpoint,
			 const char *path, bool replace_live, grpc_bound_fn bound, void *data);
/**
 * device_plugin_stop_listening() - stop serving an endpoint
 * @plugin:   the service
 * @endpoint: which one; its socket file is removed if it is still ours
 */
void device_plugin_stop_listening(struct device_plugin *plugin,
				  enum device_plugin_endpoint endpoint);
/**
 * device_plugin_socket_present() - whether an endpoint's socket file is still there
 * @plugin:   the service
 * @endpoint: which one
 *
 * A starting kubelet deletes the one in its directory.
 *
 * Return: true if it is.
 */
bool device_plugin_socket_present(const struct device_plugin *plugin,
				  enum device_plugin_endpoint endpoint);

/**
 * device_plugin_options() - the options both GetDevicePluginOptions and Register carry
 * @options: filled
 */
void device_plugin_options(V1beta1__DevicePluginOptions *options);

/**
 * device_plugin_set_device_present() - the device node appeared or vanished
 * @plugin:  the service
 * @present: whether it exists now
 *
 * Updates health and tells every stream.
 */
void device_plugin_set_device_present(struct device_plugin *plugin, bool present);

/**
 * device_plugin_set_stream_ended() - be told when the kubelet ends a ListAndWatch stream
 * @plugin: the service
 * @fn:     called as fn(data) when a peer ends the last open stream (one we did
 *          not end), while we neither shut down nor went silent; NULL: no longer
 * @data:   passed to @fn
 */
void device_plugin_set_stream_ended(struct device_plugin *plugin, void (*fn)(void *data),
				    void *data);

/**
 * device_plugin_go_silent() - send nothing more on any stream (a newer instance serves)
 * @plugin: the service
 *
 * The streams stay open until shutdown: their end tells the kubelet we are gone.
 */
void device_plugin_go_silent(struct device_plugin *plugin);

/**
 * device_plugin_end_streams() - end every ListAndWatch stream (OK, no last list)
 * @plugin: the service
 *
 * The kubelet then drops our endpoint, so another server on our path can register.
 */
void device_plugin_end_streams(struct device_plugin *plugin);

/**
 * device_plugin_shutdown() - shut down
 * @plugin: the service
 * @done:   called as done(data) once every connection has flushed and closed
 * @data:   passed to @done
 *
 * Sends an empty device list on every ListAndWatch stream, ends the streams with OK
 * and removes our socket.
 */
void device_plugin_shutdown(struct device_plugin *plugin, void (*done)(void *data), void *data);

/**
 * device_plugin_stats() - counters, for metrics
 * @plugin: the service
 *
 * Return: the counters, valid until device_plugin_free().
 */
const struct device_plugin_stats *device_plugin_stats(const struct device_plugin *plugin);

struct metrics_writer;
/**
 * device_plugin_metrics_write() - the device plugin's metrics
 * @w:      the writer
 * @plugin: a const struct device_plugin *
 *
 * A metrics_source_fn: allocations and ListAndWatch streams (kubelet_metrics.c).
 */
void device_plugin_metrics_write(struct metrics_writer *w, const void *plugin);
