/* The pluginregistration v1 Registration service: GetInfo tells the kubelet who we
 * are (type DevicePlugin, name = resource name, endpoint = our DevicePlugin socket's
 * absolute path, versions v1beta1); NotifyRegistrationStatus tells us how it went. */
#include "plugin_watcher.h"
#include "../basic/error_text.h"
#include "device_plugin.h"
#include "registration.h"
#include "../grpc/server.h"
#include "../log.h"
#include "../util.h"

#include "pluginregistration.pb-c.h"

#include <errno.h>
#include <sys/stat.h>

struct plugin_watcher {
	const struct kubelet_options *config;
	struct device_plugin *plugin;
	struct grpc_server *server;
	char *registration_socket;
	char *endpoint;
	char *other_registration_socket; /* the other name's, an older instance's */
	bool registered;
	struct plugin_watcher_stats stats;
};

static void handle_get_info(void *data, struct grpc_call *call, const ProtobufCMessage *request)
{
	struct plugin_watcher *watcher = data;
	Pluginregistration__PluginInfo info = PLUGINREGISTRATION__PLUGIN_INFO__INIT;
	char *versions[] = {"v1beta1"};
	(void)request; /* InfoRequest: empty */

	watcher->stats.info_requests++;
	info.type = "DevicePlugin";
	info.name = (char *)watcher->config->resource_name; /* protobuf-c: not written */
	info.endpoint = watcher->endpoint;
	info.n_supported_versions = ARRAY_SIZE(versions);
	info.supported_versions = versions;
	log_debug(1, "plugin watcher: GetInfo from pid %d", grpc_call_peer_pid(call));
	grpc_call_send(call, &info.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* We are registered: an older instance's registration socket under the other name
 * goes, so the kubelet's watcher deregisters its endpoint alone (by path) while ours
 * serves: the resource never drops to 0. The older instance keeps its offers. */
static void plugin_watcher_retire_other(struct plugin_watcher *watcher)
{
	const char *other = watcher->other_registration_socket;
	struct stat st;

	if (lstat(other, &st) < 0 || !S_ISSOCK(st.st_mode))
		return;
	if (unlink(other) < 0 && errno != ENOENT) {
		log_warning("cannot remove the older instance's registration socket %s: %s", other,
			    error_text(errno));
		return;
	}
	log_info("removed %s: the kubelet deregisters the older instance's endpoint", other);
}

static void handle_notify(void *data, struct grpc_call *call, const ProtobufCMessage *request)
{
	const Pluginregistration__RegistrationStatus *status =
	    (const Pluginregistration__RegistrationStatus *)request;
	struct plugin_watcher *watcher = data;
	Pluginregistration__RegistrationStatusResponse response =
	    PLUGINREGISTRATION__REGISTRATION_STATUS_RESPONSE__INIT;

	watcher->registered = status->plugin_registered;
	if (status->plugin_registered) {
		watcher->stats.registrations++;
		log_info("the kubelet registered %s through the plugin watcher (endpoint %s)",
			 watcher->config->resource_name, watcher->endpoint);
		plugin_watcher_retire_other(watcher);
	} else {
		watcher->stats.registration_failures++;
		log_error("the kubelet refused the plugin watcher registration of %s: %s",
			  watcher->config->resource_name,
			  status->error && status->error[0] ? status->error : "(no reason given)");
	}
	grpc_call_send(call, &response.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const struct grpc_method plugin_watcher_methods[] = {
    {"/pluginregistration.Registration/GetInfo", &pluginregistration__info_request__descriptor,
     handle_get_info, NULL},
    {"/pluginregistration.Registration/NotifyRegistrationStatus",
     &pluginregistration__registration_status__descriptor, handle_notify, NULL},
};

int plugin_watcher_new(struct loop *loop, const struct kubelet_options *config,
		       struct device_plugin *plugin, struct plugin_watcher **out)
{
	struct plugin_watcher *watcher = xcalloc(1, sizeof(*watcher));

	watcher->config = config;
	watcher->plugin = plugin;
	watcher->endpoint = xasprintf("%s/%s", config->plugin_dir, config->socket_name);
	watcher->registration_socket =
	    xasprintf("%s/%s", config->plugins_registry_dir, config->socket_name);
	watcher->other_registration_socket =
	    registration_slot_name(watcher->registration_socket, 1);
	int r = grpc_server_new(loop, plugin_watcher_methods, ARRAY_SIZE(plugin_watcher_methods),
				watcher, &watcher->server);
	if (r < 0) {
		plugin_watcher_free(watcher);
		return r;
	}
	*out = watcher;
	return 0;
}

int plugin_watcher_start(struct plugin_watcher *watcher)
{
	const struct kubelet_options *c = watcher->config;
	int r;

	if ((r = mkdir_parents(c->plugin_dir, 0750)) < 0) {
		log_error("cannot create %s: %s", c->plugin_dir, error_text(-r));
		return r;
	}
	if ((r = mkdir_parents(c->plugins_registry_dir, 0750)) < 0) {
		log_error("cannot create %s: %s", c->plugins_registry_dir, error_text(-r));
		return r;
	}
	/* Both paths are this plugin's own (named after it, outside the kubelet's
	 * directory). A live server there is an older instance of ours during a rolling
	 * update: we take the alternate names beside it, since the kubelet keys endpoints
	 * by path (see registration.c), and retire its registration once ours is through.
	 * A third instance would replace a second on the alternate names. */
	r = device_plugin_listen(watcher->plugin, DEVICE_PLUGIN_ENDPOINT_PLUGIN_DIR,
				 watcher->endpoint, false, NULL, NULL);
	if (r == -EADDRINUSE) {
		char *endpoint = registration_slot_name(watcher->endpoint, 1);
		char *registration = watcher->other_registration_socket;

		free(watcher->endpoint);
		watcher->endpoint = endpoint;
		watcher->other_registration_socket = watcher->registration_socket;
		watcher->registration_socket = registration;
		r = device_plugin_listen(watcher->plugin, DEVICE_PLUGIN_ENDPOINT_PLUGIN_DIR,
					 watcher->endpoint, true, NULL, NULL);
	}
	if (r < 0) {
		log_error("cannot serve %s: %s", watcher->endpoint, error_text(-r));
		return r;
	}
	/* Last: the kubelet may call GetInfo the moment this socket appears. */
	r = grpc_server_listen(watcher->server, watcher->registration_socket, true, NULL, NULL);
	if (r < 0) {
		log_error("cannot serve %s: %s", watcher->registration_socket, error_text(-r));
		return r;
	}
	log_info("serving DevicePlugin on %s and plugin registration on %s", watcher->endpoint,
		 watcher->registration_socket);
	return 0;
}

void plugin_watcher_stop(struct plugin_watcher *watcher)
{
	grpc_server_stop_listening(watcher->server, true);
}

void plugin_watcher_free(struct plugin_watcher *watcher)
{
	if (!watcher)
		return;
	grpc_server_free(watcher->server);
	free(watcher->endpoint);
	free(watcher->registration_socket);
	free(watcher->other_registration_socket);
	free(watcher);
}

bool plugin_watcher_registered(const struct plugin_watcher *watcher)
{
	return watcher->registered;
}

const struct plugin_watcher_stats *plugin_watcher_stats(const struct plugin_watcher *watcher)
{
	return &watcher->stats;
}
