/* Readiness: registered with the kubelet through any configured path. Both /healthz
 * and the registered gauge answer from kubelet_readiness_reason, so they agree. */
#include "readiness.h"
#include "plugin_watcher.h"
#include "registration.h"
#include "../metrics/metrics.h"

const char *kubelet_readiness_reason(const void *readiness)
{
	const struct kubelet_readiness *k = readiness;

	if ((k->registration && registration_registered(k->registration)) ||
	    (k->plugin_watcher && plugin_watcher_registered(k->plugin_watcher)))
		return NULL;
	switch (k->registration ? registration_state(k->registration) : REGISTRATION_NONE) {
	case REGISTRATION_FOREIGN:
		return "another device plugin serves our socket path (KubeVirt's IOMMUFD feature "
		       "gate?): not registered";
	case REGISTRATION_SUPERSEDED:
		return "a newer instance took over: serving pending handoffs only";
	default:
		return "not registered with the kubelet";
	}
}

void kubelet_readiness_metrics_write(struct metrics_writer *w, const void *readiness)
{
	metrics_gauge(w, "registered",
		      "1 while registered with the kubelet (through any configured path), else 0.",
		      !kubelet_readiness_reason(readiness));
}
