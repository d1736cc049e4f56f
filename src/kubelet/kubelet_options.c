/* The kubelet-facing modules' defaults: a stock kubelet node, and the socket name
 * and paths KubeVirt's own plugin and virt-launcher use. */
#include "kubelet_options.h"

void kubelet_options_init(struct kubelet_options *o)
{
	*o = (struct kubelet_options){
	    .kubelet_dir = KUBELET_DEFAULT_DIR,
	    .socket_name = "kubevirt-iommufd.sock",
	    .resource_name = "devices.kubevirt.io/iommufd",
	    .devices = 110, /* the kubelet's default max pods */
	    .registration = KUBELET_REGISTRATION_KUBELET_SOCKET,
	    .plugins_registry_dir = "/var/lib/kubelet/plugins_registry",
	    .plugin_dir = "/var/lib/kubelet/plugins/kubevirt-iommufd",
	    .missing_device = KUBELET_MISSING_ALLOW,
	    .container_socket_path = "/var/run/kubevirt/iommufd.sock",
	    .expose_device_node = false,
	    .device_node_host_path = KUBELET_DEVICE_NODE_CONTAINER_PATH, /* the node's own /dev */
	};
}
