/* The device plugin's part of the configuration: its own flags (the extended resource,
 * how it registers, the missing-device policy, the PodResources poll) and its resource
 * name checked. Linked only into iommufd-device-plugin (through
 * config_device_plugin_flavor), as config_dra.c is only into the DRA driver. */
#include "config_table.h"
#include "../util.h"

#include <errno.h>
#include <string.h>

static const struct choice missing_choices[] = {
    {"allow", KUBELET_MISSING_ALLOW}, {"unhealthy", KUBELET_MISSING_UNHEALTHY}, {0}};
static const struct choice registration_choices[] = {
    {"kubelet-socket", KUBELET_REGISTRATION_KUBELET_SOCKET},
    {"plugin-watcher", KUBELET_REGISTRATION_PLUGIN_WATCHER},
    {"both", KUBELET_REGISTRATION_BOTH},
    {0}};

/* Its own flags; --help lists them after the shared ones. */
static const struct option_spec device_plugin_specs[] = {
    {"resource-name", KIND_STRING, FIELD(kubelet.resource_name), "NAME",
     "the extended resource registered with the kubelet", NULL, 0, 0},
    {"registration", KIND_CHOICE, FIELD(kubelet.registration), "MODE",
     "kubelet-socket: Register on kubelet.sock; plugin-watcher: a socket in "
     "--plugins-registry-dir the kubelet finds itself; both",
     registration_choices, 0, 0},
    {"missing-device", KIND_CHOICE, FIELD(kubelet.missing_device), "POLICY",
     "allow: Allocate succeeds without a socket while the device is missing; unhealthy: "
     "devices are Unhealthy and Allocate fails",
     missing_choices, 0, 0},
    {"pod-resources-socket", KIND_STRING, FIELD(pod_resources.socket_path), "PATH",
     "the kubelet's PodResources API, asked which pod holds a pending handoff's device", NULL, 0,
     0},
    {"pod-resources-interval", KIND_DURATION, FIELD(pod_resources.interval_usec), "DURATION",
     "how often the PodResources API is asked while handoff sockets are pending (never "
     "while none are); 0: never, only --handoff-ttl removes them",
     NULL, 0, 0},
    {"pod-resources-grace", KIND_DURATION, FIELD(pod_resources.grace_usec), "DURATION",
     "an unclaimed handoff socket that no pod holds is removed once it is this old (the "
     "kubelet records an allocation only after Allocate returns)",
     NULL, 0, 0},
};

_Static_assert(ARRAY_SIZE(device_plugin_specs) <= CONFIG_FLAVOR_MAX_SPECS,
	       "too many device plugin flags");

static int config_finish_device_plugin(struct config *config, FILE *err)
{
	if (!strchr(config->kubelet.resource_name, '/')) {
		fprintf(err, "iommufd-device-plugin: --resource-name must be domain/name\n");
		return -EINVAL;
	}
	return 0;
}

const struct config_flavor config_device_plugin_flavor = {
    .program = CONFIG_DEVICE_PLUGIN,
    .name = "iommufd-device-plugin",
    .summary = "Kubernetes device plugin that hands pods an IOMMUFD file descriptor with\n"
	       "IOMMU_OPTION_RLIMIT_MODE set to per-process accounting.",
    .specs = device_plugin_specs,
    .n_specs = ARRAY_SIZE(device_plugin_specs),
    .finish = config_finish_device_plugin,
};
