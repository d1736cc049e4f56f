/* The DevicePlugin gRPC service the kubelet calls (deviceplugin v1beta1):
 * GetDevicePluginOptions, ListAndWatch, GetPreferredAllocation, Allocate (the
 * iommufd handoff starts here) and PreStartContainer. */
#pragma once

#include "../config/config.h"
#include "../loop/loop.h"

#include "deviceplugin.pb-c.h"

struct device_plugin;
struct iommufd_opener;
struct handoff;

struct device_plugin_stats {
	unsigned long long allocations;	       /* container allocations answered */
	unsigned long long allocation_failures; /* Allocate calls answered with an error */
	unsigned long long streams_opened;
	unsigned long long streams_open;
};

/* Creates the service. config, opener and handoff are borrowed and must outlive it;
 * opener and handoff may be NULL only while no Allocate can arrive (tests). */
struct device_plugin *device_plugin_new(struct loop *loop, const struct config *config,
					struct iommufd_opener *opener, struct handoff *handoff);
void device_plugin_free(struct device_plugin *plugin);

/* Serves on path (replacing a stale socket). Returns 0 or -errno, see grpc_server_listen. */
int device_plugin_listen(struct device_plugin *plugin, const char *path);
/* Whether our socket file is still there (a starting kubelet deletes it). */
bool device_plugin_socket_present(const struct device_plugin *plugin);

/* The options both GetDevicePluginOptions and Register carry. */
void device_plugin_options(V1beta1__DevicePluginOptions *options);

/* The device node appeared or vanished: updates health and tells every stream. */
void device_plugin_set_device_present(struct device_plugin *plugin, bool present);

/* Shutting down: sends an empty device list on every ListAndWatch stream, ends the
 * streams with OK, removes our socket, and calls done(data) once every connection
 * has flushed and closed. */
void device_plugin_shutdown(struct device_plugin *plugin, void (*done)(void *data), void *data);

const struct device_plugin_stats *device_plugin_stats(const struct device_plugin *plugin);
