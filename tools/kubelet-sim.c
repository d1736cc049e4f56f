/* kubelet-sim: a small stand-in for the kubelet's device manager, for the demo and
 * the real-kernel test. It serves Registration on <dir>/kubelet.sock, waits for the
 * plugin's Register, opens ListAndWatch, then calls Allocate for the given device ids
 * and prints what came back. Built on the plugin's own gRPC modules and event loop. */
#include "grpc/client.h"
#include "basic/error_text.h"
#include "grpc/server.h"
#include "log.h"
#include "loop/loop.h"
#include "util.h"

#include "deviceplugin.pb-c.h"

#include <getopt.h>
#include <stdio.h>

struct simulator {
	struct loop *loop;
	const char *dir;
	char **ids;
	size_t id_count;
	struct grpc_server *server;
	struct grpc_client *client;
	struct loop_timer deadline;
	bool allocated;
	int exit_code;
};

static void sim_allocate_response(void *data, const uint8_t *msg, size_t len)
{
	V1beta1__AllocateResponse *response = v1beta1__allocate_response__unpack(NULL, len, msg);
	(void)data;

	if (!response) {
		printf("allocate-error 13 undecodable AllocateResponse\n");
		return;
	}
	for (size_t i = 0; i < response->n_container_responses; i++) {
		V1beta1__ContainerAllocateResponse *c = response->container_responses[i];
		if (c->n_mounts == 0 && c->n_devices == 0)
			printf("container %zu: no mounts (device missing, allowed)\n", i);
		for (size_t j = 0; j < c->n_mounts; j++)
			printf("mount %s %s\n", c->mounts[j]->container_path,
			       c->mounts[j]->host_path);
		for (size_t j = 0; j < c->n_devices; j++)
			printf("device %s %s %s\n", c->devices[j]->container_path,
			       c->devices[j]->host_path, c->devices[j]->permissions);
	}
	fflush(stdout);
	v1beta1__allocate_response__free_unpacked(response, NULL);
}

static void sim_allocate_done(void *data, enum grpc_status status, const char *message)
{
	struct simulator *sim = data;

	if (status != GRPC_STATUS_OK) {
		printf("allocate-error %d %s\n", (int)status, message);
		sim->exit_code = 1;
	} else {
		sim->exit_code = 0;
	}
	fflush(stdout);
	loop_quit(sim->loop, 0);
}

static void sim_allocate(struct simulator *sim)
{
	V1beta1__AllocateRequest request = V1BETA1__ALLOCATE_REQUEST__INIT;
	V1beta1__ContainerAllocateRequest container = V1BETA1__CONTAINER_ALLOCATE_REQUEST__INIT;
	V1beta1__ContainerAllocateRequest *containers[] = {&container};

	container.n_devices_ids = sim->id_count;
	container.devices_ids = sim->ids;
	request.n_container_requests = 1;
	request.container_requests = containers;
	printf("Allocate:");
	for (size_t i = 0; i < sim->id_count; i++)
		printf(" %s", sim->ids[i]);
	printf("\n");
	if (grpc_client_call(sim->client, "/v1beta1.DevicePlugin/Allocate", &request.base,
			     sim_allocate_response, sim_allocate_done, sim) < 0) {
		printf("allocate-error 14 connection to the plugin failed\n");
		loop_quit(sim->loop, 0);
	}
}

static void sim_devices(void *data, const uint8_t *msg, size_t len)
{
	struct simulator *sim = data;
	V1beta1__ListAndWatchResponse *response =
	    v1beta1__list_and_watch_response__unpack(NULL, len, msg);

	if (!response) {
		printf("undecodable ListAndWatchResponse\n");
		return;
	}
	size_t healthy = 0;
	for (size_t i = 0; i < response->n_devices; i++)
		healthy += strcmp(response->devices[i]->health, "Healthy") == 0;
	printf("ListAndWatch: %zu devices (%s .. %s), %zu Healthy\n", response->n_devices,
	       response->n_devices ? response->devices[0]->id : "-",
	       response->n_devices ? response->devices[response->n_devices - 1]->id : "-", healthy);
	fflush(stdout);
	v1beta1__list_and_watch_response__free_unpacked(response, NULL);
	if (!sim->allocated) {
		sim->allocated = true;
		sim_allocate(sim);
	}
}

static void sim_stream_done(void *data, enum grpc_status status, const char *message)
{
	(void)data;
	printf("ListAndWatch ended: status %d %s\n", (int)status, message);
}

static void sim_register(void *data, struct grpc_call *call, const ProtobufCMessage *message)
{
	const V1beta1__RegisterRequest *request = (const V1beta1__RegisterRequest *)message;
	struct simulator *sim = data;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;

	printf("Register: version=%s endpoint=%s resource=%s preferred_allocation=%s\n",
	       request->version, request->endpoint, request->resource_name,
	       request->options && request->options->get_preferred_allocation_available ? "yes"
											: "no");
	fflush(stdout);
	cleanup_free char *endpoint = xasprintf("%s/%s", sim->dir, request->endpoint);
	grpc_call_send(call, &empty.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);

	if (sim->client)
		return;
	int r = grpc_client_connect(sim->loop, endpoint, &sim->client);
	if (r < 0) {
		printf("cannot connect to %s: %s\n", endpoint, error_text(-r));
		sim->exit_code = 1;
		loop_quit(sim->loop, 0);
		return;
	}
	grpc_client_call(sim->client, "/v1beta1.DevicePlugin/ListAndWatch", &empty.base,
			 sim_devices, sim_stream_done, sim);
}

static void sim_timeout(void *data)
{
	struct simulator *sim = data;

	printf("timed out\n");
	sim->exit_code = 3;
	loop_quit(sim->loop, 0);
}

static const struct grpc_method sim_methods[] = {
    {"/v1beta1.Registration/Register", &v1beta1__register_request__descriptor, sim_register, NULL},
};

static void usage(FILE *out)
{
	fputs("Usage: kubelet-sim --kubelet-dir DIR --allocate ID[,ID...] [--timeout SECONDS]\n"
	      "Acts as the kubelet: serves DIR/kubelet.sock, waits for a device plugin to\n"
	      "register, lists its devices and allocates ID... for one container.\n"
	      "Exit: 0 allocated, 1 Allocate failed, 2 usage, 3 timed out.\n",
	      out);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {{"kubelet-dir", required_argument, NULL, 'd'},
						{"allocate", required_argument, NULL, 'a'},
						{"timeout", required_argument, NULL, 't'},
						{"help", no_argument, NULL, 'h'},
						{0}};
	struct simulator sim = {.exit_code = 1};
	cleanup_free char *ids = NULL;
	int timeout = 30, c;

	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case 'd':
			sim.dir = optarg;
			break;
		case 'a':
			free(ids);
			ids = xstrdup(optarg);
			break;
		case 't':
			timeout = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!sim.dir || !ids || timeout <= 0) {
		usage(stderr);
		return 2;
	}
	for (char *save, *id = strtok_r(ids, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
		sim.ids = xrealloc(sim.ids, (sim.id_count + 1) * sizeof(*sim.ids));
		sim.ids[sim.id_count++] = id;
	}
	cleanup_free char *socket_path = xasprintf("%s/kubelet.sock", sim.dir);
	if (loop_new(&sim.loop) < 0)
		return 1; /* logged */
	loop_timer_init(sim.loop, &sim.deadline, sim_timeout, &sim);
	loop_timer_arm(&sim.deadline, (unsigned long long)timeout * 1000000ULL);
	int r = grpc_server_new(sim.loop, sim_methods, ARRAY_SIZE(sim_methods), &sim, &sim.server);
	if (r < 0)
		return 1;
	r = grpc_server_listen(sim.server, socket_path, false, NULL, NULL);
	if (r < 0) {
		fprintf(stderr, "kubelet-sim: cannot listen on %s: %s\n", socket_path,
			error_text(-r));
		return 1;
	}
	printf("kubelet-sim: serving %s\n", socket_path);
	fflush(stdout);
	loop_run(sim.loop);
	grpc_client_free(sim.client);
	grpc_server_stop_listening(sim.server, true);
	grpc_server_free(sim.server);
	loop_run(sim.loop); /* let deferred frees run: nothing else is left to wake us */
	loop_timer_destroy(&sim.deadline);
	loop_free(sim.loop);
	free(sim.ids);
	return sim.exit_code;
}
