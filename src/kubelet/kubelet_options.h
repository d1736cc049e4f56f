/* What the kubelet-facing modules (device_plugin, registration, plugin_watcher) are
 * told: where the kubelet is, what we register and what an Allocate answer holds.
 * The defaults here are the daemon's (config fills its flags from them). */
#pragma once

#include <stdbool.h>

enum kubelet_registration {
	KUBELET_REGISTRATION_KUBELET_SOCKET, /* Register on kubelet.sock */
	KUBELET_REGISTRATION_PLUGIN_WATCHER, /* a socket in plugins_registry */
	KUBELET_REGISTRATION_BOTH,
};

/* What Allocate does while the device node is missing. */
enum kubelet_missing_device {
	KUBELET_MISSING_ALLOW,	   /* succeed without a socket, as on a node without it */
	KUBELET_MISSING_UNHEALTHY, /* devices are Unhealthy and Allocate fails */
};

struct kubelet_options {
	const char *kubelet_dir;   /* kubelet.sock and our socket */
	const char *socket_name;   /* our DevicePlugin socket's name */
	const char *resource_name; /* domain/name */
	int devices;		   /* virtual devices advertised */
	enum kubelet_registration registration;
	const char *plugins_registry_dir; /* the plugin watcher's directory */
	const char *plugin_dir;		  /* our socket's directory with the plugin watcher */
	const char *iommu_device; /* the device node (no default: the iommufd options have it) */
	enum kubelet_missing_device missing_device;
	const char *container_socket_path; /* the handoff socket's path in the container */
	bool expose_device_node;	   /* also a DeviceSpec for the node itself */
	/* With expose_device_node: the node's path on the node, for the container runtime
	 * (iommu_device is where we open it: in a pod, the node's /dev mounted elsewhere). */
	const char *device_node_host_path;
};

#define KUBELET_DEFAULT_DIR "/var/lib/kubelet/device-plugins"
/* Where an exposed node appears in the container: the kernel's name, which libvirt and
 * QEMU open (drivers/iommu/iommufd/main.c: the misc device "iommu"). */
#define KUBELET_DEVICE_NODE_CONTAINER_PATH "/dev/iommu"

/**
 * kubelet_options_init() - fill options with the defaults
 * @o: the options
 *
 * The defaults are a stock kubelet node and the paths KubeVirt's virt-launcher and
 * the Go plugin use.
 */
void kubelet_options_init(struct kubelet_options *o);

/**
 * kubelet_uses_kubelet_socket() - whether the options ask for kubelet.sock
 * @o: the options
 *
 * Return: true unless only the plugin watcher is asked for.
 */
static inline bool kubelet_uses_kubelet_socket(const struct kubelet_options *o)
{
	return o->registration != KUBELET_REGISTRATION_PLUGIN_WATCHER;
}

/**
 * kubelet_uses_plugin_watcher() - whether the options ask for the plugin watcher
 * @o: the options
 *
 * Return: true unless only kubelet.sock is asked for.
 */
static inline bool kubelet_uses_plugin_watcher(const struct kubelet_options *o)
{
	return o->registration != KUBELET_REGISTRATION_KUBELET_SOCKET;
}
