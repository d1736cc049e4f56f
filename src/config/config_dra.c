/* The DRA driver's part of the configuration: its driver name checked, its dirs named
 * after the driver, and what its plugin takes from the flags it shares with the device
 * plugin. */
#include "config_dra.h"
#include "../util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A DNS subdomain (RFC 1123) of at most 63 characters, as resource.k8s.io wants a
 * driver name: lower-case alphanumerics, '-' and '.', alphanumeric at both ends. */
static bool dns_subdomain_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63 || !isalnum((unsigned char)name[0]) ||
	    !isalnum((unsigned char)name[n - 1]))
		return false;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-.") == n;
}

/* The DRA driver's derived settings: dirs named after the driver, what the plugin
 * takes from the shared flags. */
int config_finish_dra(struct config *config, FILE *err)
{
	struct dra_plugin_options *o = &config->dra.plugin;
	const char *node = getenv("NODE_NAME");

	if (!dns_subdomain_valid(o->driver)) {
		fprintf(err,
			"iommufd-dra-driver: --driver-name must be a DNS subdomain of at most 63 "
			"characters (lower case, digits, '-', '.'), not '%s'\n",
			o->driver);
		return -EINVAL;
	}
	if (!config->kubelet.plugin_dir)
		config->kubelet.plugin_dir = xasprintf("/var/lib/kubelet/plugins/%s", o->driver);
	if (!o->state_dir)
		o->state_dir = xasprintf("%s/claims", config->kubelet.plugin_dir);
	if (!o->node_name && node && node[0])
		o->node_name = xstrdup(node);
	if (o->state_dir[0] != '/' || o->cdi_dir[0] != '/') {
		fprintf(err, "iommufd-dra-driver: --state-dir and --cdi-dir must be absolute\n");
		return -EINVAL;
	}
	if (!config->dra.kube_api != !config->dra.kube_ca ||
	    !config->dra.kube_api != !config->dra.kube_token_file) {
		fprintf(err, "iommufd-dra-driver: --kube-api, --kube-ca and --kube-token-file go "
			     "together\n");
		return -EINVAL;
	}
	o->devices = config->kubelet.devices;
	o->container_socket_path = config->kubelet.container_socket_path;
	o->device_node = config->kubelet.expose_device_node ? config->iommufd.device_path : NULL;
	return 0;
}
