/* The kubelet's calls to the plugin: ListAndWatch, GetDevicePluginOptions and
 * Allocate, built and checked with the generated protobuf-c messages. */
#include "calls.h"

#include "deviceplugin.pb-c.h"

#include <string.h>

struct h2c *call_connect(struct bench *b, const char *path)
{
	struct h2c *c;
	int r = h2c_connect(path, BENCH_WAIT_MS, &c);
	if (r < 0)
		bench_die(b, "cannot connect to the plugin on %s: %s", path, strerror(-r));
	return c;
}

void call_list_and_watch(struct bench *b, struct h2c *c, struct h2c_stream *s)
{
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	int devices = b->options.devices;

	if (h2c_start(c, s, "/v1beta1.DevicePlugin/ListAndWatch", &empty.base) < 0 ||
	    h2c_wait_messages(c, s, 1) < 0)
		bench_die(b, "ListAndWatch: %s", h2c_error(c));
	if (s->messages < 1)
		bench_die(b, "ListAndWatch ended without a device list (status %d)", s->status);
	V1beta1__ListAndWatchResponse *response =
	    v1beta1__list_and_watch_response__unpack(NULL, s->msg_len, s->msg);
	if (!response || response->n_devices != (size_t)devices)
		bench_die(b, "ListAndWatch: expected %d devices, got %zu", devices,
			  response ? response->n_devices : 0);
	v1beta1__list_and_watch_response__free_unpacked(response, NULL);
}

void call_round_trip(struct bench *b, struct h2c *c)
{
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	struct h2c_stream s = {0};

	if (h2c_start(c, &s, "/v1beta1.DevicePlugin/GetDevicePluginOptions", &empty.base) < 0 ||
	    h2c_wait_closed(c, &s) < 0)
		bench_die(b, "GetDevicePluginOptions: %s", h2c_error(c));
	if (s.status != 0)
		bench_die(b, "GetDevicePluginOptions: status %d", s.status);
	h2c_stream_reset(&s);
}

unsigned long long call_allocate(struct bench *b, struct h2c *c, const char *device_id,
				 char *host_path, size_t size)
{
	V1beta1__AllocateRequest request = V1BETA1__ALLOCATE_REQUEST__INIT;
	V1beta1__ContainerAllocateRequest container = V1BETA1__CONTAINER_ALLOCATE_REQUEST__INIT;
	V1beta1__ContainerAllocateRequest *containers[] = {&container};
	char *ids[] = {(char *)device_id};
	struct h2c_stream s = {0};

	container.n_devices_ids = 1;
	container.devices_ids = ids;
	request.n_container_requests = 1;
	request.container_requests = containers;
	unsigned long long t0 = bench_now_ns();
	if (h2c_start(c, &s, "/v1beta1.DevicePlugin/Allocate", &request.base) < 0 ||
	    h2c_wait_closed(c, &s) < 0)
		bench_die(b, "Allocate %s: %s", device_id, h2c_error(c));
	unsigned long long latency = s.closed_ns - t0;
	if (s.status != 0 || s.messages != 1)
		bench_die(b, "Allocate %s: status %d, %zu messages", device_id, s.status,
			  s.messages);
	V1beta1__AllocateResponse *response =
	    v1beta1__allocate_response__unpack(NULL, s.msg_len, s.msg);
	if (!response || response->n_container_responses != 1)
		bench_die(b, "Allocate %s: undecodable or wrong-sized AllocateResponse", device_id);
	V1beta1__ContainerAllocateResponse *cr = response->container_responses[0];
	host_path[0] = '\0';
	if (cr->n_mounts == 1 && strlen(cr->mounts[0]->host_path) < size)
		strcpy(host_path, cr->mounts[0]->host_path);
	else if (cr->n_mounts != 0)
		bench_die(b, "Allocate %s: unexpected mounts in the answer", device_id);
	v1beta1__allocate_response__free_unpacked(response, NULL);
	h2c_stream_reset(&s);
	return latency;
}
