/* The pluginregistration v1 Registration service: GetInfo tells the kubelet who we
 * are (type DevicePlugin or DRAPlugin, name = resource or driver name, endpoint = our
 * service socket's absolute path, versions); NotifyRegistrationStatus tells us how it
 * went. The service socket is served by its owner through a listen callback. */
#include "plugin_watcher.h"
#include "../basic/error_text.h"
#include "device_plugin.h"
#include "registration.h"
#include "../grpc/server.h"
#include "../log.h"
#include "../util.h"

#include "pluginregistration.pb-c.h"

#include <errno.h>
#include <libgen.h>
#include <sys/stat.h>

struct plugin_watcher {
	char *type, *name;
	char *versions[PLUGIN_WATCHER_MAX_VERSIONS];
	size_t version_count;
	plugin_watcher_listen_fn listen;
	void *listen_data;
	void (*registered_fn)(void *data);
	void *registered_data;
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
	(void)request; /* InfoRequest: empty */

	watcher->stats.info_requests++;
	info.type = watcher->type;
	info.name = watcher->name;
	info.endpoint = watcher->endpoint;
	info.n_supported_versions = watcher->version_count;
	info.supported_versions = watcher->versions;
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
		log_info("the kubelet registered %s through the plugin watcher (%s, endpoint %s)",
			 watcher->name, watcher->type, watcher->endpoint);
		plugin_watcher_retire_other(watcher);
		if (watcher->registered_fn)
			watcher->registered_fn(watcher->registered_data);
	} else {
		watcher->stats.registration_failures++;
		log_error("the kubelet refused the plugin watcher registration of %s (%s): %s",
			  watcher->name, watcher->type,
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

int plugin_watcher_new(struct loop *loop, const struct plugin_watcher_endpoint *endpoint,
		       struct plugin_watcher **out)
{
	if (endpoint->version_count > PLUGIN_WATCHER_MAX_VERSIONS)
		return -EINVAL;
	struct plugin_watcher *watcher = xcalloc(1, sizeof(*watcher));

	watcher->type = xstrdup(endpoint->type);
	watcher->name = xstrdup(endpoint->name);
	for (size_t i = 0; i < endpoint->version_count; i++)
		watcher->versions[i] = xstrdup(endpoint->versions[i]);
	watcher->version_count = endpoint->version_count;
	watcher->listen = endpoint->listen;
	watcher->listen_data = endpoint->listen_data;
	watcher->registered_fn = endpoint->registered;
	watcher->registered_data = endpoint->registered_data;
	watcher->endpoint = xstrdup(endpoint->service_socket);
	watcher->registration_socket = xstrdup(endpoint->registration_socket);
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

static int device_plugin_listen_plugin_dir(void *data, const char *path, bool replace_live)
{
	return device_plugin_listen(data, DEVICE_PLUGIN_ENDPOINT_PLUGIN_DIR, path, replace_live,
				    NULL, NULL);
}

int plugin_watcher_new_device_plugin(struct loop *loop, const struct kubelet_options *config,
				     struct device_plugin *plugin, struct plugin_watcher **out)
{
	static const char *const versions[] = {"v1beta1"};
	cleanup_free char *service = xasprintf("%s/%s", config->plugin_dir, config->socket_name);
	cleanup_free char *registration =
	    xasprintf("%s/%s", config->plugins_registry_dir, config->socket_name);
	struct plugin_watcher_endpoint endpoint = {
	    .type = "DevicePlugin",
	    .name = config->resource_name,
	    .versions = versions,
	    .version_count = ARRAY_SIZE(versions),
	    .service_socket = service,
	    .registration_socket = registration,
	    .listen = device_plugin_listen_plugin_dir,
	    .listen_data = plugin,
	};

	return plugin_watcher_new(loop, &endpoint, out);
}

/* mkdir -p of the directory a socket path is in. Returns 0 or -errno (logged). */
static int plugin_watcher_make_dir_of(const char *socket_path)
{
	cleanup_free char *copy = xstrdup(socket_path);
	const char *dir = dirname(copy);
	int r = mkdir_parents(dir, 0750);

	if (r < 0)
		log_error("cannot create %s: %s", dir, error_text(-r));
	return r;
}

int plugin_watcher_start(struct plugin_watcher *watcher)
{
	int r;

	if ((r = plugin_watcher_make_dir_of(watcher->endpoint)) < 0 ||
	    (r = plugin_watcher_make_dir_of(watcher->registration_socket)) < 0)
		return r;
	/* Both paths are this plugin's own (named after it, outside the kubelet's
	 * directory). A live server there is an older instance of ours during a rolling
	 * update: we take the alternate names beside it, since the kubelet keys endpoints
	 * by path (see registration.c), and retire its registration once ours is through.
	 * A third instance would replace a second on the alternate names. */
	r = watcher->listen(watcher->listen_data, watcher->endpoint, false);
	if (r == -EADDRINUSE) {
		char *endpoint = registration_slot_name(watcher->endpoint, 1);
		char *registration = watcher->other_registration_socket;

		free(watcher->endpoint);
		watcher->endpoint = endpoint;
		watcher->other_registration_socket = watcher->registration_socket;
		watcher->registration_socket = registration;
		r = watcher->listen(watcher->listen_data, watcher->endpoint, true);
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
	log_info("serving %s on %s and plugin registration on %s", watcher->type, watcher->endpoint,
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
	for (size_t i = 0; i < watcher->version_count; i++)
		free(watcher->versions[i]);
	free(watcher->type);
	free(watcher->name);
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
