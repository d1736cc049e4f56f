/* The DevicePlugin service: advertises --devices virtual devices iommufd0..N-1 and
 * answers Allocate with a per-allocation handoff socket mounted into the container.
 * Allocate is device_plugin_allocate() below. */
#include "device_plugin.h"
#include "../basic/error.h"
#include "../basic/list.h"
#include "../grpc/server.h"
#include "../handoff/handoff.h"
#include "../iommufd/iommufd.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <stdio.h>

#define DEVICE_ID_PREFIX "iommufd"

struct list_and_watch_stream {
	struct grpc_call *call;
	struct list link; /* in device_plugin.streams */
};

struct device_plugin {
	struct loop *loop;
	const struct kubelet_options *config;
	struct iommufd_opener *opener;
	struct handoff *handoff;
	struct grpc_server *servers[DEVICE_PLUGIN_ENDPOINT_COUNT];
	struct list streams; /* struct list_and_watch_stream.link */
	void (*drained)(void *data);
	void *drained_data;
	int draining;			  /* servers still closing their connections */
	void (*stream_ended)(void *data); /* the kubelet ended a stream we still serve */
	void *stream_ended_data;
	bool device_present;
	/* A newer instance of ours serves the kubelet: our streams stay open but carry
	 * nothing more. The kubelet applies a device list to the resource name, whoever
	 * sends it, so anything we sent would overwrite the newer instance's list. */
	bool silent;
	bool closing; /* shutting down or freed: streams end because we end them */
	struct device_plugin_stats stats;
};

void device_plugin_options(V1beta1__DevicePluginOptions *options)
{
	v1beta1__device_plugin_options__init(options);
	options->pre_start_required = false;
	options->get_preferred_allocation_available = true;
}

static bool device_plugin_healthy(const struct device_plugin *plugin)
{
	return plugin->device_present || plugin->config->missing_device == KUBELET_MISSING_ALLOW;
}

/* Sends the device list on one stream, unless we have gone silent. */
static void stream_send_devices(struct device_plugin *plugin, struct grpc_call *call)
{
	if (plugin->silent)
		return;

	V1beta1__ListAndWatchResponse response = V1BETA1__LIST_AND_WATCH_RESPONSE__INIT;
	size_t count = (size_t)plugin->config->devices;
	V1beta1__Device *devices = xcalloc(count, sizeof(*devices));
	V1beta1__Device **pointers = xcalloc(count, sizeof(*pointers));
	char(*ids)[32] = xcalloc(count, sizeof(*ids));
	char *health = device_plugin_healthy(plugin) ? "Healthy" : "Unhealthy";

	for (size_t i = 0; i < count; i++) {
		v1beta1__device__init(&devices[i]);
		snprintf(ids[i], sizeof(ids[i]), DEVICE_ID_PREFIX "%zu", i);
		devices[i].id = ids[i];
		devices[i].health = health;
		pointers[i] = &devices[i];
	}
	response.n_devices = count;
	response.devices = pointers;
	grpc_call_send(call, &response.base);
	free(ids);
	free(pointers);
	free(devices);
}

static void stream_remove(struct device_plugin *plugin, struct list_and_watch_stream *stream)
{
	list_unlink(&stream->link);
	plugin->stats.streams_open--;
	free(stream);
}

static void stream_cancelled(void *data, struct grpc_call *call)
{
	struct device_plugin *plugin = data;

	struct list_and_watch_stream *s;

	list_for_each (s, &plugin->streams, link) {
		if (s->call == call) {
			log_debug(2, "ListAndWatch stream cancelled");
			stream_remove(plugin, s);
			/* The last one: nobody watches our devices any more. */
			if (!plugin->closing && !plugin->silent && plugin->stream_ended &&
			    list_empty(&plugin->streams))
				plugin->stream_ended(plugin->stream_ended_data);
			return;
		}
	}
}

static void handle_list_and_watch(void *data, struct grpc_call *call,
				  const ProtobufCMessage *request)
{
	struct device_plugin *plugin = data;
	(void)request; /* Empty */

	struct list_and_watch_stream *stream = xcalloc(1, sizeof(*stream));
	stream->call = call;
	list_append(&plugin->streams, &stream->link);
	plugin->stats.streams_opened++;
	plugin->stats.streams_open++;
	grpc_call_on_cancel(call, stream_cancelled, plugin);
	log_info("ListAndWatch stream opened by pid %d: %d devices, %s", grpc_call_peer_pid(call),
		 plugin->config->devices, device_plugin_healthy(plugin) ? "Healthy" : "Unhealthy");
	stream_send_devices(plugin, call);
}

static void handle_get_options(void *data, struct grpc_call *call, const ProtobufCMessage *request)
{
	V1beta1__DevicePluginOptions options;
	(void)data;
	(void)request; /* Empty */

	device_plugin_options(&options);
	grpc_call_send(call, &options.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void handle_pre_start(void *data, struct grpc_call *call, const ProtobufCMessage *request)
{
	V1beta1__PreStartContainerResponse response = V1BETA1__PRE_START_CONTAINER_RESPONSE__INIT;
	(void)data;
	(void)request; /* pre_start_required is false: nothing to prepare */

	grpc_call_send(call, &response.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* The index of id if it is one we advertise ("iommufd" followed by 0..devices-1, no
 * leading zeros), else -1. */
static long device_plugin_index(const struct device_plugin *plugin, const char *id)
{
	const char *digits = id + strlen(DEVICE_ID_PREFIX);
	char *end;

	if (strncmp(id, DEVICE_ID_PREFIX, strlen(DEVICE_ID_PREFIX)) != 0 || !*digits ||
	    (digits[0] == '0' && digits[1]) || digits[0] < '0' || digits[0] > '9')
		return -1;
	errno = 0;
	unsigned long n = strtoul(digits, &end, 10);
	return !errno && !*end && n < (unsigned long)plugin->config->devices ? (long)n : -1;
}

/* A request naming more containers or ids than we advertise devices is refused
 * before any work: each must name distinct devices of ours (security.md, row 8). */
static int device_plugin_check_count(const struct device_plugin *plugin, const char *what,
				     size_t count, struct error *e)
{
	if (count <= (size_t)plugin->config->devices)
		return 0;
	return error_set(e, -EINVAL, "%zu %s in one request: this plugin advertises %d devices",
			 count, what, plugin->config->devices);
}

/* Picks up to want ids, must_include first, each id once, in one pass over both
 * lists: an id is remembered by its index in seen (ids that are not ours are
 * skipped). Writes into out, which has room for want ids. */
static size_t preferred_pick(const struct device_plugin *plugin,
			     const V1beta1__ContainerPreferredAllocationRequest *c, bool *seen,
			     char **out, size_t want)
{
	char *const *lists[] = {c->must_include_deviceids, c->available_deviceids};
	size_t counts[] = {c->n_must_include_deviceids, c->n_available_deviceids};
	size_t n = 0;

	for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
		for (size_t j = 0; j < counts[l] && n < want; j++) {
			long index = device_plugin_index(plugin, lists[l][j]);
			if (index < 0 || seen[index])
				continue;
			seen[index] = true;
			out[n++] = lists[l][j];
		}
	}
	for (size_t j = 0; j < n; j++) /* back to all false for the next container */
		seen[device_plugin_index(plugin, out[j])] = false;
	return n;
}

static void handle_get_preferred_allocation(void *data, struct grpc_call *call,
					    const ProtobufCMessage *message)
{
	const V1beta1__PreferredAllocationRequest *request =
	    (const V1beta1__PreferredAllocationRequest *)message;
	const struct device_plugin *plugin = data;
	struct error e = {0};

	size_t n = request->n_container_requests;
	int r = device_plugin_check_count(plugin, "container requests", n, &e);
	for (size_t i = 0; r == 0 && i < n; i++) {
		const V1beta1__ContainerPreferredAllocationRequest *c =
		    request->container_requests[i];
		r = device_plugin_check_count(plugin, "available ids", c->n_available_deviceids,
					      &e);
		if (r == 0)
			r = device_plugin_check_count(plugin, "must-include ids",
						      c->n_must_include_deviceids, &e);
	}
	if (r < 0) {
		log_warning("GetPreferredAllocation refused: %s", error_message(&e));
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, error_message(&e));
		return;
	}

	V1beta1__PreferredAllocationResponse response =
	    V1BETA1__PREFERRED_ALLOCATION_RESPONSE__INIT;
	V1beta1__ContainerPreferredAllocationResponse *containers = xcalloc(n, sizeof(*containers));
	V1beta1__ContainerPreferredAllocationResponse **pointers = xcalloc(n, sizeof(*pointers));
	cleanup_free bool *seen = xcalloc((size_t)plugin->config->devices, sizeof(*seen));

	for (size_t i = 0; i < n; i++) {
		V1beta1__ContainerPreferredAllocationRequest *c = request->container_requests[i];
		V1beta1__ContainerPreferredAllocationResponse *out = &containers[i];
		size_t want = c->allocation_size > 0 ? (size_t)c->allocation_size : 0;

		if (want > (size_t)plugin->config->devices)
			want = (size_t)plugin->config->devices;
		v1beta1__container_preferred_allocation_response__init(out);
		/* Borrow the request's strings: the response is packed before they go. */
		out->deviceids = xcalloc(want ? want : 1, sizeof(char *));
		out->n_deviceids = preferred_pick(plugin, c, seen, out->deviceids, want);
		pointers[i] = out;
	}
	response.n_container_responses = n;
	response.container_responses = pointers;
	grpc_call_send(call, &response.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	for (size_t i = 0; i < n; i++)
		free(containers[i].deviceids);
	free(pointers);
	free(containers);
}

/* The parts of one ContainerAllocateResponse we own. */
struct container_answer {
	V1beta1__ContainerAllocateResponse response;
	V1beta1__Mount mount;
	V1beta1__Mount *mounts[1];
	V1beta1__DeviceSpec device;
	V1beta1__DeviceSpec *devices[1];
};

/* Prepares the fd and its handoff socket for one container. Returns 0, or -errno
 * with *e filled. */
static int device_plugin_allocate_container(struct device_plugin *plugin,
					    const V1beta1__ContainerAllocateRequest *request,
					    struct container_answer *answer, struct error *e)
{
	const struct kubelet_options *config = plugin->config;
	const char *socket_path;
	int fd;

	v1beta1__container_allocate_response__init(&answer->response);
	if (!plugin->device_present) {
		/* --missing-device=allow: the pod runs without iommufd, as on a node without it. */
		log_info("allocating %s without a socket: %s is missing", request->devices_ids[0],
			 config->iommu_device);
		return 0;
	}
	int r = iommufd_open(plugin->opener, &fd, e);
	if (r == -ENOENT && config->missing_device == KUBELET_MISSING_ALLOW &&
	    access(config->iommu_device, F_OK) < 0 && errno == ENOENT) {
		/* It vanished before inotify told us: missing, so allowed the same way. */
		log_info("allocating %s without a socket: %s has just gone",
			 request->devices_ids[0], config->iommu_device);
		*e = (struct error){0}; /* not a failure after all */
		return 0;
	}
	if (r < 0)
		return r;
	/* A container gets one socket however many ids it holds: the mount path is one. */
	r = handoff_offer(plugin->handoff, request->devices_ids[0], fd, &socket_path, e);
	if (r < 0)
		return r;
	v1beta1__mount__init(&answer->mount);
	answer->mount.container_path = (char *)config->container_socket_path;
	answer->mount.host_path = (char *)socket_path;
	answer->mount.read_only = false;
	answer->mounts[0] = &answer->mount;
	answer->response.n_mounts = 1;
	answer->response.mounts = answer->mounts;
	if (config->expose_device_node) {
		v1beta1__device_spec__init(&answer->device);
		answer->device.container_path = KUBELET_DEVICE_NODE_CONTAINER_PATH;
		answer->device.host_path = (char *)config->device_node_host_path;
		answer->device.permissions = "rw";
		answer->devices[0] = &answer->device;
		answer->response.n_devices = 1;
		answer->response.devices = answer->devices;
	}
	log_info_f(
	    LOG_FIELDS(LOG_STR("device", request->devices_ids[0]), LOG_STR("socket", socket_path)),
	    "allocated %s: handoff socket %s", request->devices_ids[0], socket_path);
	return 0;
}

/* Checks every id before anything is opened, so a bad request changes nothing. A
 * device named twice is refused: its second offer would withdraw the first, whose
 * socket path the first container's answer still points to. Returns 0, or -EINVAL
 * (no device, unknown id, an id twice) or -ENODEV (device missing and
 * --missing-device=unhealthy) with *e filled. */
static int device_plugin_validate(const struct device_plugin *plugin,
				  const V1beta1__AllocateRequest *request, struct error *e)
{
	/* Containers are bounded here; ids by seen: the first id beyond the devices we
	 * advertise is unknown or named twice, so the loop ends within devices + 1. */
	int r = device_plugin_check_count(plugin, "container requests",
					  request->n_container_requests, e);
	if (r < 0)
		return r;
	cleanup_free bool *seen = xcalloc((size_t)plugin->config->devices, sizeof(*seen));

	for (size_t i = 0; i < request->n_container_requests; i++) {
		const V1beta1__ContainerAllocateRequest *c = request->container_requests[i];
		if (c->n_devices_ids == 0)
			return error_set(e, -EINVAL, "container request %zu names no device", i);
		for (size_t j = 0; j < c->n_devices_ids; j++) {
			long index = device_plugin_index(plugin, c->devices_ids[j]);
			if (index < 0)
				return error_set(e, -EINVAL,
						 "unknown device id \"%s\": this plugin advertises "
						 "%s0..%s%d",
						 c->devices_ids[j], DEVICE_ID_PREFIX,
						 DEVICE_ID_PREFIX, plugin->config->devices - 1);
			if (seen[index])
				return error_set(e, -EINVAL,
						 "device id \"%s\" is named more than once in the "
						 "request",
						 c->devices_ids[j]);
			seen[index] = true;
		}
	}
	if (!device_plugin_healthy(plugin))
		return error_set(e, -ENODEV,
				 "%s is missing and --missing-device=unhealthy: no iommufd to hand "
				 "over",
				 plugin->config->iommu_device);
	return 0;
}

/* The gRPC status for why an Allocate failed: the kubelet shows it in pod events. */
static enum grpc_status allocate_status(int r)
{
	switch (-r) {
	case EINVAL:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case EMFILE:
	case ENFILE:
	case ENOSPC:
	case ENOMEM:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case ENODEV:
	case ENOENT:
	case ENOTTY:
	case EOPNOTSUPP:
	case EPERM:
	case EACCES:
	case EROFS:
		return GRPC_STATUS_FAILED_PRECONDITION;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

static void device_plugin_allocate(void *data, struct grpc_call *call,
				   const ProtobufCMessage *message)
{
	const V1beta1__AllocateRequest *request = (const V1beta1__AllocateRequest *)message;
	struct device_plugin *plugin = data;
	struct error e = {0};

	/* Validated before anything is allocated for it: the count is bounded then. */
	int r = device_plugin_validate(plugin, request, &e);
	size_t n = r == 0 ? request->n_container_requests : 0;
	struct container_answer *answers = xcalloc(n ? n : 1, sizeof(*answers));
	V1beta1__ContainerAllocateResponse **pointers = xcalloc(n ? n : 1, sizeof(*pointers));
	for (size_t i = 0; r == 0 && i < n; i++) {
		r = device_plugin_allocate_container(plugin, request->container_requests[i],
						     &answers[i], &e);
		pointers[i] = &answers[i].response;
	}
	if (r < 0) {
		enum grpc_status status = allocate_status(r);
		/* The kubelet gets an error: no container will come for the sockets made
		 * before the failing one, so they must not hold fds until the TTL. */
		for (size_t i = 0; i < n; i++)
			if (answers[i].response.n_mounts)
				handoff_withdraw(plugin->handoff, answers[i].mount.host_path);
		plugin->stats.allocation_failures++;
		log_error_f(
		    LOG_FIELDS(LOG_NUM("errno", -e.code), LOG_STR("reason", error_message(&e))),
		    "Allocate failed: %s", error_message(&e));
		grpc_call_finish(call, status, error_message(&e));
	} else {
		V1beta1__AllocateResponse response = V1BETA1__ALLOCATE_RESPONSE__INIT;
		response.n_container_responses = n;
		response.container_responses = pointers;
		plugin->stats.allocations += n;
		grpc_call_send(call, &response.base);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	}
	free(pointers);
	free(answers);
}

/* An Allocate that did not decode is a failed Allocate too. */
static void device_plugin_allocate_rejected(void *data)
{
	struct device_plugin *plugin = data;

	plugin->stats.allocation_failures++;
}

static const struct grpc_method device_plugin_methods[] = {
    {"/v1beta1.DevicePlugin/GetDevicePluginOptions", &v1beta1__empty__descriptor,
     handle_get_options, NULL},
    {"/v1beta1.DevicePlugin/ListAndWatch", &v1beta1__empty__descriptor, handle_list_and_watch,
     NULL},
    {"/v1beta1.DevicePlugin/GetPreferredAllocation",
     &v1beta1__preferred_allocation_request__descriptor, handle_get_preferred_allocation, NULL},
    {"/v1beta1.DevicePlugin/Allocate", &v1beta1__allocate_request__descriptor,
     device_plugin_allocate, device_plugin_allocate_rejected},
    {"/v1beta1.DevicePlugin/PreStartContainer", &v1beta1__pre_start_container_request__descriptor,
     handle_pre_start, NULL},
};

int device_plugin_new(struct loop *loop, const struct kubelet_options *config,
		      struct iommufd_opener *opener, struct handoff *handoff,
		      struct device_plugin **out)
{
	struct device_plugin *plugin = xcalloc(1, sizeof(*plugin));
	list_init(&plugin->streams);

	plugin->loop = loop;
	plugin->config = config;
	plugin->opener = opener;
	plugin->handoff = handoff;
	plugin->device_present = access(config->iommu_device, F_OK) == 0;
	for (int i = 0; i < DEVICE_PLUGIN_ENDPOINT_COUNT; i++) {
		int r =
		    grpc_server_new(loop, device_plugin_methods, ARRAY_SIZE(device_plugin_methods),
				    plugin, &plugin->servers[i]);
		if (r < 0) {
			device_plugin_free(plugin);
			return r;
		}
	}
	*out = plugin;
	return 0;
}

void device_plugin_free(struct device_plugin *plugin)
{
	if (!plugin)
		return;
	/* Freeing a server cancels its streams, which takes them off our list. */
	plugin->closing = true;
	for (int i = 0; i < DEVICE_PLUGIN_ENDPOINT_COUNT; i++)
		grpc_server_free(plugin->servers[i]);
	free(plugin);
}

int device_plugin_listen(struct device_plugin *plugin, enum device_plugin_endpoint endpoint,
			 const char *path, bool replace_live, grpc_bound_fn bound, void *data)
{
	return grpc_server_listen(plugin->servers[endpoint], path, replace_live, bound, data);
}

void device_plugin_stop_listening(struct device_plugin *plugin,
				  enum device_plugin_endpoint endpoint)
{
	/* Only our own file goes: after a replacement the path is another server's. */
	grpc_server_stop_listening(plugin->servers[endpoint], true);
}

bool device_plugin_socket_present(const struct device_plugin *plugin,
				  enum device_plugin_endpoint endpoint)
{
	return grpc_server_socket_present(plugin->servers[endpoint]);
}

void device_plugin_set_device_present(struct device_plugin *plugin, bool present)
{
	bool was_healthy = device_plugin_healthy(plugin);

	if (plugin->device_present == present)
		return;
	plugin->device_present = present;
	log_info("%s %s", plugin->config->iommu_device, present ? "appeared" : "disappeared");
	if (device_plugin_healthy(plugin) == was_healthy)
		return;
	struct list_and_watch_stream *s;

	list_for_each (s, &plugin->streams, link)
		stream_send_devices(plugin, s->call);
}

static void device_plugin_server_drained(void *data)
{
	struct device_plugin *plugin = data;

	if (--plugin->draining == 0)
		plugin->drained(plugin->drained_data);
}

void device_plugin_set_stream_ended(struct device_plugin *plugin, void (*fn)(void *data),
				    void *data)
{
	plugin->stream_ended = fn;
	plugin->stream_ended_data = data;
}

void device_plugin_go_silent(struct device_plugin *plugin)
{
	plugin->silent = true;
}

void device_plugin_end_streams(struct device_plugin *plugin)
{
	while (!list_empty(&plugin->streams)) {
		struct list_and_watch_stream *stream =
		    list_first(&plugin->streams, struct list_and_watch_stream, link);
		struct grpc_call *call = stream->call;
		stream_remove(plugin, stream);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	}
}

/* The streams end with no last, empty device list: the kubelet takes a stream's end
 * as the plugin's going (the resource drops to 0 when it was the last endpoint), and
 * an empty list would be applied to the resource name, zeroing a newer instance's
 * devices during a rolling update (kubelet devicemanager, genericDeviceUpdateCallback). */
void device_plugin_shutdown(struct device_plugin *plugin, void (*done)(void *data), void *data)
{
	plugin->closing = true;
	device_plugin_end_streams(plugin);
	plugin->drained = done;
	plugin->drained_data = data;
	plugin->draining = DEVICE_PLUGIN_ENDPOINT_COUNT;
	for (int i = 0; i < DEVICE_PLUGIN_ENDPOINT_COUNT; i++) {
		grpc_server_stop_listening(plugin->servers[i], true);
		grpc_server_drain(plugin->servers[i], device_plugin_server_drained, plugin);
	}
}

const struct device_plugin_stats *device_plugin_stats(const struct device_plugin *plugin)
{
	return &plugin->stats;
}
