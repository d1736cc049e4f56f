/* iommufd-dra-driver: the DRAPlugin service (dra_plugin.c answers
 * NodePrepareResources), registered through the kubelet's plugin watcher, and this
 * node's ResourceSlice kept true as /dev/iommu comes and goes and as a device plugin
 * of our resource appears or leaves (KEP-5004), on the daemon both programs share. */
#include "dra_plugin.h"
#include "node_exclusivity.h"
#include "../daemon/daemon.h"
#include "../basic/error.h"
#include "../basic/error_text.h"
#include "../iommufd/device_presence.h"
#include "../iommufd/iommufd.h"
#include "../kube/kube_client.h"
#include "../kube/resource_slice.h"
#include "../kubelet/plugin_watcher.h"
#include "../log.h"
#include "../metrics/metrics.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

struct dra_daemon {
	struct daemon d;
	struct kube_client *client;
	struct resource_slice *slice;
	struct dra_plugin *plugin;
	struct plugin_watcher *plugin_watcher;
	struct device_presence *presence;
	struct node_exclusivity *exclusivity;
	struct utsname uts;
	bool rlimit_mode_supported;
	struct loop_timer resync_again; /* the second look after a registration */
};

static void dra_stop_serving(void *data, void (*closed)(void *data), void *closed_data)
{
	struct dra_daemon *p = data;

	plugin_watcher_stop(p->plugin_watcher);
	dra_plugin_shutdown(p->plugin, closed, closed_data);
}

/* What the slice says: N devices while /dev/iommu is there and no device plugin of
 * our resource is on this node; none (the slice is deleted) otherwise. */
static void dra_publish(struct dra_daemon *p)
{
	bool present = device_presence_present(p->presence);
	bool conflict = node_exclusivity_conflict(p->exclusivity);
	unsigned n = present && !conflict ? (unsigned)p->d.config.kubelet.devices : 0;

	resource_slice_set_devices(p->slice, n, p->rlimit_mode_supported);
}

/* The kubelet wipes every ResourceSlice of its node when it starts, in the background,
 * and then registers the drivers it finds: each registration (the first, and one after
 * each kubelet restart) puts ours back now, and once more a little later in case the
 * wipe ran after this LIST. */
#define DRA_RESYNC_AGAIN_USEC (10ULL * 1000000)

static void dra_resync_again(void *data)
{
	struct dra_daemon *p = data;

	resource_slice_resync(p->slice);
}

static void dra_registered(void *data)
{
	struct dra_daemon *p = data;

	resource_slice_resync(p->slice);
	loop_timer_arm(&p->resync_again, DRA_RESYNC_AGAIN_USEC);
}

static void dra_device_changed(void *data, bool present)
{
	struct dra_daemon *p = data;

	log_info("%s %s: publishing %s", p->d.config.iommufd.device_path,
		 present ? "appeared" : "disappeared", present ? "our devices" : "no devices");
	dra_publish(p);
}

static void dra_log_conflict(const char *socket)
{
	log_error("a device plugin for our resource serves on this node (%s): one node cannot "
		  "back it with both a device plugin and DRA (KEP-5004), so this driver "
		  "publishes no devices and reports not ready until it is gone",
		  socket);
}

static void dra_exclusivity_changed(void *data, bool conflict, const char *socket)
{
	struct dra_daemon *p = data;

	if (conflict)
		dra_log_conflict(socket);
	else
		log_info("no device plugin for our resource on this node any more: publishing");
	dra_publish(p);
}

/* /healthz: registered with the kubelet, no device plugin beside us, slice synced. */
static const char *dra_readiness_reason(const void *data)
{
	const struct dra_daemon *p = data;

	if (node_exclusivity_conflict(p->exclusivity))
		return "a device plugin for our resource serves on this node";
	if (!plugin_watcher_registered(p->plugin_watcher))
		return "the kubelet has not registered the DRA driver";
	if (!resource_slice_synced(p->slice))
		return "the ResourceSlice is not in sync with the API server";
	return NULL;
}

static void dra_readiness_metrics_write(struct metrics_writer *w, const void *data)
{
	metrics_gauge(w, "ready", "1 when /healthz answers 200", !dra_readiness_reason(data));
}

static int dra_serve_metrics(struct dra_daemon *p)
{
	struct metrics *m = p->d.metrics = metrics_new();

	metrics_set_readiness(m, dra_readiness_reason, p);
	metrics_add_source(m, dra_readiness_metrics_write, p);
	metrics_add_source(m, plugin_watcher_metrics_write, p->plugin_watcher);
	metrics_add_source(m, node_exclusivity_metrics_write, p->exclusivity);
	metrics_add_source(m, device_presence_metrics_write, p->presence);
	metrics_add_source(m, dra_plugin_metrics_write, p->plugin);
	metrics_add_source(m, iommufd_metrics_write, p->d.opener);
	metrics_add_source(m, handoff_metrics_write, p->d.handoff);
	return metrics_serve(m, p->d.loop, p->d.config.metrics_address);
}

/* Whether this kernel has IOMMU_OPTION_RLIMIT_MODE: a GET on a plain open of the
 * device (no SELinux relabelling needed to ask). False when the device is missing. */
static bool dra_probe_rlimit_mode(const char *device_path)
{
	cleanup_close int fd = openat(AT_FDCWD, device_path, O_RDWR | O_CLOEXEC);
	uint64_t mode;

	return fd >= 0 && iommufd_get_rlimit_mode(fd, &mode) == 0;
}

/* --kube-api HOST:PORT with its CA and token, or the in-cluster configuration. */
static int dra_kube_client(struct dra_daemon *p)
{
	const struct config_dra *c = &p->d.config.dra;
	struct kube_client_config kc = {0};
	struct error e = {0};
	cleanup_free char *host = NULL;
	int r;

	if (c->kube_api) {
		const char *colon = strrchr(c->kube_api, ':');
		char *end;
		unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
		if (!colon || colon == c->kube_api || !colon[1] || *end || port == 0 ||
		    port > 65535) {
			log_error("--kube-api wants HOST:PORT, not '%s'", c->kube_api);
			return -EINVAL;
		}
		host = strndup(c->kube_api, (size_t)(colon - c->kube_api));
		if (!host)
			abort();
		kc = (struct kube_client_config){.host = host,
						 .port = (unsigned)port,
						 .ca_file = c->kube_ca,
						 .token_file = c->kube_token_file};
	} else if ((r = kube_client_config_in_cluster(&kc, &e)) < 0) {
		log_error("no API server to talk to: %s (outside a cluster, give --kube-api, "
			  "--kube-ca and --kube-token-file)",
			  error_message(&e));
		return r;
	}
	if ((r = kube_client_new(p->d.loop, &kc, &p->client, &e)) < 0)
		log_error("cannot set up the API client: %s", error_message(&e));
	return r;
}

/* The slice's publisher. Its owner should be our DaemonSet, found from POD_NAME and
 * POD_NAMESPACE through the pod's ownerReferences: the client's contract has no GET
 * of a pod yet, so the slice has no owner (uninstalling leaves it to the node's
 * deletion or an operator). */
static int dra_resource_slice(struct dra_daemon *p)
{
	const struct config *c = &p->d.config;

	if (!c->dra.plugin.node_name) {
		log_error("no node name: give --node-name or set NODE_NAME (the downward API's "
			  "spec.nodeName)");
		return -EINVAL;
	}
	if (uname(&p->uts) < 0)
		return -errno;
	p->rlimit_mode_supported = dra_probe_rlimit_mode(c->iommufd.device_path);
	struct resource_slice_spec spec = {
	    .driver = c->dra.plugin.driver,
	    .node_name = c->dra.plugin.node_name,
	    .kernel_release = p->uts.release,
	    .rlimit_mode =
		c->iommufd.policy == IOMMUFD_RLIMIT_REQUIRED ? "required" : "best-effort",
	};
	return resource_slice_new(p->d.loop, p->client, &spec, &p->slice);
}

static int dra_start(struct dra_daemon *p)
{
	struct daemon *d = &p->d;
	struct config *c = &d->config;
	static const char *const versions[] = {"v1.DRAPlugin", "v1beta1.DRAPlugin"};
	struct error e = {0};
	int r;

	if ((r = daemon_start(d, dra_stop_serving, p)) < 0 || (r = dra_kube_client(p)) < 0)
		return r;
	/* After the rescue (daemon_start): the recorded claims' sockets are served again. */
	if ((r = dra_plugin_new(d->loop, &c->dra.plugin, d->opener, d->handoff, p->client,
				&p->plugin, &e)) < 0) {
		log_error("%s", error_message(&e));
		return r;
	}
	cleanup_free char *service = xasprintf("%s/" DRA_SOCKET_NAME, c->kubelet.plugin_dir);
	cleanup_free char *registration = xasprintf(
	    "%s/%s" DRA_REGISTRATION_SUFFIX, c->kubelet.plugins_registry_dir, c->dra.plugin.driver);
	struct plugin_watcher_endpoint endpoint = {
	    .type = "DRAPlugin",
	    .name = c->dra.plugin.driver,
	    .versions = versions,
	    .version_count = ARRAY_SIZE(versions),
	    .service_socket = service,
	    .registration_socket = registration,
	    .listen = dra_plugin_listen,
	    .listen_data = p->plugin,
	    .registered = dra_registered,
	    .registered_data = p,
	};
	loop_timer_init(d->loop, &p->resync_again, dra_resync_again, p);
	if ((r = plugin_watcher_new(d->loop, &endpoint, &p->plugin_watcher)) < 0)
		return r;
	if ((r = device_presence_new(d->loop, c->iommufd.device_path, dra_device_changed, p,
				     &p->presence)) < 0)
		return r;
	/* Watched for a device plugin's registration: made now, not by plugin_watcher_start. */
	if ((r = mkdir_parents(c->kubelet.plugins_registry_dir, 0750)) < 0) {
		log_error("cannot create %s: %s", c->kubelet.plugins_registry_dir, error_text(-r));
		return r;
	}
	node_exclusivity_new(d->loop, &c->kubelet, dra_exclusivity_changed, p, &p->exclusivity);
	if (node_exclusivity_conflict(p->exclusivity))
		dra_log_conflict(node_exclusivity_socket(p->exclusivity));
	if ((r = dra_resource_slice(p)) < 0)
		return r;
	dra_publish(p);
	/* Before registering, so /healthz answers 503 until the kubelet has us. */
	if (c->metrics_address && (r = dra_serve_metrics(p)) < 0)
		return r;
	return plugin_watcher_start(p->plugin_watcher);
}

static void dra_stop(struct dra_daemon *p)
{
	metrics_free(p->d.metrics); /* first: it borrows the modules below */
	p->d.metrics = NULL;
	loop_timer_destroy(&p->resync_again);
	resource_slice_free(p->slice);
	node_exclusivity_free(p->exclusivity);
	device_presence_free(p->presence);
	plugin_watcher_free(p->plugin_watcher);
	kube_client_free(p->client); /* before the plugin: pending lookups end in it */
	dra_plugin_free(p->plugin);
	daemon_stop(&p->d);
}

int main(int argc, char **argv)
{
	struct dra_daemon p = {0};
	int exit_code =
	    daemon_configure(&p.d, &config_dra_flavor, "iommufd-dra-driver", argc, argv);

	if (exit_code >= 0)
		return exit_code;
	int r = dra_start(&p);
	if (r == 0)
		r = daemon_run(&p.d);
	if (r < 0)
		log_error("exiting: %s", error_text(-r));
	dra_stop(&p);
	return r < 0 ? 1 : 0;
}
