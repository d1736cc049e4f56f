/* The DRA driver's part of the configuration: its own flags, its defaults, its driver
 * name checked, its dirs named after the driver, and what its plugin takes from the
 * flags it shares with the device plugin. Linked only into iommufd-dra-driver (through
 * config_dra_flavor), so the device plugin carries none of it. */
#include "config_table.h"
#include "../util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Its own flags; --help lists them after the shared ones. */
static const struct option_spec dra_specs[] = {
    {"driver-name", KIND_STRING, FIELD(dra.plugin.driver), "NAME",
     "the DRA driver's name (a DNS subdomain): ResourceSlices, claims' results, CDI kind", NULL, 0,
     0},
    {"node-name", KIND_STRING, FIELD(dra.plugin.node_name), "NAME",
     "this node's name: our ResourceSlice's pool; default: $NODE_NAME", NULL, 0, 0},
    {"cdi-dir", KIND_STRING, FIELD(dra.plugin.cdi_dir), "DIR",
     "where CDI specs of prepared claims are written (root's, writable by nobody else)", NULL, 0,
     0},
    {"state-dir", KIND_STRING, FIELD(dra.plugin.state_dir), "DIR",
     "where prepared claims are recorded (made root's 0700); default: --plugin-dir/claims", NULL, 0,
     0},
    {"kube-api", KIND_STRING, FIELD(dra.kube_api), "HOST:PORT",
     "the API server; default: in-cluster configuration (KUBERNETES_SERVICE_HOST)", NULL, 0, 0},
    {"kube-ca", KIND_STRING, FIELD(dra.kube_ca), "FILE",
     "with --kube-api: the PEM bundle that verifies the API server", NULL, 0, 0},
    {"kube-token-file", KIND_STRING, FIELD(dra.kube_token_file), "FILE",
     "with --kube-api: the bearer token's file", NULL, 0, 0},
};

_Static_assert(ARRAY_SIZE(dra_specs) <= CONFIG_FLAVOR_MAX_SPECS, "too many DRA flags");

/* The DRA driver: the plugin watcher alone, no PodResources (the kubelet unprepares a
 * claim when its pod is gone), its socket dir named after the driver (finish). */
static void config_defaults_dra(struct config *config)
{
	config->kubelet.registration = KUBELET_REGISTRATION_PLUGIN_WATCHER;
	config->kubelet.plugin_dir = NULL;
	config->pod_resources.interval_usec = 0;
	config->dra.plugin.driver = DRA_DEFAULT_DRIVER_NAME;
	config->dra.plugin.cdi_dir = DRA_DEFAULT_CDI_DIR;
	config->dra.plugin.lookup_timeout_ms = DRA_LOOKUP_TIMEOUT_MS;
}

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
static int config_finish_dra(struct config *config, FILE *err)
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
	o->device_node =
	    config->kubelet.expose_device_node ? config->kubelet.device_node_host_path : NULL;
	return 0;
}

const struct config_flavor config_dra_flavor = {
    .program = CONFIG_DRA_DRIVER,
    .name = "iommufd-dra-driver",
    .summary = "Kubernetes DRA driver that hands pods an IOMMUFD file descriptor with\n"
	       "IOMMU_OPTION_RLIMIT_MODE set to per-process accounting.",
    .specs = dra_specs,
    .n_specs = ARRAY_SIZE(dra_specs),
    .defaults = config_defaults_dra,
    .finish = config_finish_dra,
};
