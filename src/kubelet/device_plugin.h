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

/* Creates the service (not listening yet). config, opener and handoff are borrowed
 * and must outlive it; opener and handoff may be NULL only while no Allocate can
 * arrive (tests). Returns 0 and *out (free with device_plugin_free); only allocation
 * can fail, and that aborts. */
int device_plugin_new(struct loop *loop, const struct kubelet_options *config,
		      struct iommufd_opener *opener, struct handoff *handoff,
		      struct device_plugin **out);
void device_plugin_free(struct device_plugin *plugin);

/* Where the service listens: in the kubelet's device-plugins directory (registered
 * through kubelet.sock; the kubelet deletes it on restart) and/or at an absolute path
 * elsewhere (registered through the plugin watcher; the kubelet leaves it alone). */
enum device_plugin_endpoint {
	DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR,
	DEVICE_PLUGIN_ENDPOINT_PLUGIN_DIR,
	DEVICE_PLUGIN_ENDPOINT_COUNT,
};

/* Serves endpoint on path (replacing a dead socket; a live one only with
 * replace_live; bound as for grpc_server_listen). Returns 0 or -errno, see
 * grpc_server_listen. */
int device_plugin_listen(struct device_plugin *plugin, enum device_plugin_endpoint endpoint,
			 const char *path, bool replace_live, grpc_bound_fn bound, void *data);
/* Stops serving endpoint without removing the socket file (another server has it). */
void device_plugin_stop_listening(struct device_plugin *plugin,
				  enum device_plugin_endpoint endpoint);
struct file_id;
/* The identity of the endpoint's socket file, or NULL when it is not served. */
const struct file_id *device_plugin_socket_id(const struct device_plugin *plugin,
					      enum device_plugin_endpoint endpoint);
/* Whether the endpoint's socket file is still there (a starting kubelet deletes the
 * one in its directory). */
bool device_plugin_socket_present(const struct device_plugin *plugin,
				  enum device_plugin_endpoint endpoint);

/* The options both GetDevicePluginOptions and Register carry. */
void device_plugin_options(V1beta1__DevicePluginOptions *options);

/* The device node appeared or vanished: updates health and tells every stream. */
void device_plugin_set_device_present(struct device_plugin *plugin, bool present);

/* Shutting down: sends an empty device list on every ListAndWatch stream, ends the
 * streams with OK, removes our socket, and calls done(data) once every connection
 * has flushed and closed. */
void device_plugin_shutdown(struct device_plugin *plugin, void (*done)(void *data), void *data);

const struct device_plugin_stats *device_plugin_stats(const struct device_plugin *plugin);

struct metrics_writer;
/* A metrics_source_fn for a const struct device_plugin *: allocations and
 * ListAndWatch streams (kubelet_metrics.c). */
void device_plugin_metrics_write(struct metrics_writer *w, const void *plugin);
