/* iommufd-device-plugin: the DevicePlugin service, its registration (kubelet.sock
 * and/or the plugin watcher), PodResources and the device presence watcher, wired
 * onto the daemon both programs share (src/daemon: loop, signals, drain, handoff). */
#include "daemon/daemon.h"
#include "basic/error_text.h"
#include "iommufd/device_presence.h"
#include "iommufd/iommufd.h"
#include "kubelet/device_plugin.h"
#include "kubelet/plugin_watcher.h"
#include "kubelet/pod_resources.h"
#include "kubelet/readiness.h"
#include "kubelet/registration.h"
#include "log.h"
#include "metrics/metrics.h"

struct device_plugin_daemon {
	struct daemon d;
	struct pod_resources *pod_resources; /* NULL with --pod-resources-interval=0 */
	struct device_plugin *plugin;
	struct device_presence *presence;
	struct registration *registration;     /* NULL with --registration=plugin-watcher */
	struct plugin_watcher *plugin_watcher; /* NULL with --registration=kubelet-socket */
	struct kubelet_readiness readiness;    /* what /healthz answers from */
};

/* The shutdown's first step: advertising stops at once (registration sockets
 * removed, streams ended); PodResources stays, to withdraw the offers whose pods are
 * gone while we drain. */
static void dp_stop_serving(void *data, void (*closed)(void *data), void *closed_data)
{
	struct device_plugin_daemon *p = data;

	if (p->registration)
		registration_stop(p->registration);
	if (p->plugin_watcher)
		plugin_watcher_stop(p->plugin_watcher);
	device_plugin_shutdown(p->plugin, closed, closed_data);
}

/* Under --missing-device=allow a missing device changes nothing the kubelet sees
 * (devices stay Healthy, /healthz 200): this line, at start and at each
 * disappearance, and the device_present gauge are what tell an operator. */
static void dp_warn_if_missing(const struct device_plugin_daemon *p, bool present)
{
	const struct kubelet_options *k = &p->d.config.kubelet;

	if (!present && k->missing_device == KUBELET_MISSING_ALLOW)
		log_warning("%s is missing: with --missing-device=allow the %d devices stay "
			    "Healthy and each Allocate hands over no IOMMUFD fd "
			    "(--missing-device=unhealthy marks them Unhealthy instead)",
			    k->iommu_device, k->devices);
}

static void dp_device_changed(void *data, bool present)
{
	struct device_plugin_daemon *p = data;

	device_plugin_set_device_present(p->plugin, present);
	dp_warn_if_missing(p, present);
}

/* Hands every module's metrics source to a new registry, in the order /metrics has
 * always listed them, and serves it on --metrics-address. Returns 0 or -errno
 * (logged). */
static int dp_serve_metrics(struct device_plugin_daemon *p)
{
	struct metrics *m = p->d.metrics = metrics_new();

	p->readiness = (struct kubelet_readiness){
	    .registration = p->registration,
	    .plugin_watcher = p->plugin_watcher,
	};
	metrics_set_readiness(m, kubelet_readiness_reason, &p->readiness);
	metrics_add_source(m, kubelet_readiness_metrics_write, &p->readiness);
	if (p->registration)
		metrics_add_source(m, registration_metrics_write, p->registration);
	if (p->plugin_watcher)
		metrics_add_source(m, plugin_watcher_metrics_write, p->plugin_watcher);
	metrics_add_source(m, device_presence_metrics_write, p->presence);
	metrics_add_source(m, device_plugin_metrics_write, p->plugin);
	metrics_add_source(m, iommufd_metrics_write, p->d.opener);
	metrics_add_source(m, handoff_metrics_write, p->d.handoff);
	if (p->pod_resources)
		metrics_add_source(m, pod_resources_metrics_write, p->pod_resources);
	return metrics_serve(m, p->d.loop, p->d.config.metrics_address);
}

/* Builds the device plugin's modules on the started daemon. Returns 0 or -errno
 * (already logged). */
static int dp_start(struct device_plugin_daemon *p)
{
	struct daemon *d = &p->d;
	struct config *c = &d->config;
	int r;

	if ((r = daemon_start(d, dp_stop_serving, p)) < 0)
		return r;
	if (c->pod_resources.interval_usec &&
	    (r = pod_resources_new(d->loop, d->handoff, &c->pod_resources, &p->pod_resources)) < 0)
		return r;
	if ((r = device_plugin_new(d->loop, &c->kubelet, d->opener, d->handoff, &p->plugin)) < 0)
		return r;
	if ((r = device_presence_new(d->loop, c->iommufd.device_path, dp_device_changed, p,
				     &p->presence)) < 0)
		return r;
	device_plugin_set_device_present(p->plugin, device_presence_present(p->presence));
	dp_warn_if_missing(p, device_presence_present(p->presence));
	if (kubelet_uses_kubelet_socket(&c->kubelet) &&
	    (r = registration_new(d->loop, &c->kubelet, p->plugin, d->handoff, &p->registration)) <
		0)
		return r;
	if (kubelet_uses_plugin_watcher(&c->kubelet) &&
	    (r = plugin_watcher_new_device_plugin(d->loop, &c->kubelet, p->plugin,
						  &p->plugin_watcher)) < 0)
		return r;
	/* Before registering, so /healthz answers 503 until the kubelet has us. */
	if (c->metrics_address && (r = dp_serve_metrics(p)) < 0)
		return r;
	if (p->plugin_watcher && (r = plugin_watcher_start(p->plugin_watcher)) < 0)
		return r;
	return p->registration ? registration_start(p->registration) : 0;
}

static void dp_stop(struct device_plugin_daemon *p)
{
	metrics_free(p->d.metrics); /* first: it borrows the modules below */
	p->d.metrics = NULL;
	registration_free(p->registration);
	plugin_watcher_free(p->plugin_watcher);
	device_presence_free(p->presence);
	device_plugin_free(p->plugin);
	pod_resources_free(p->pod_resources); /* before the handoff: it listens to it */
	daemon_stop(&p->d);
}

int main(int argc, char **argv)
{
	struct device_plugin_daemon p = {0};
	int exit_code = daemon_configure(&p.d, &config_device_plugin_flavor,
					 "iommufd-device-plugin", argc, argv);

	if (exit_code >= 0)
		return exit_code;
	int r = dp_start(&p);
	if (r == 0)
		r = daemon_run(&p.d);
	if (r < 0)
		log_error("exiting: %s", error_text(-r));
	dp_stop(&p);
	return r < 0 ? 1 : 0;
}
