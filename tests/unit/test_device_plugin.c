/* Allocate validation through the real handler: a device plugin served on a unix
 * socket in the test's loop, a real gRPC client calling Allocate, and the gRPC status
 * code and message the kubelet would get. A refused request changes nothing (no
 * offer, no socket) and is logged exactly once with the reason it was answered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "grpc/client.h"
#include "handoff/handoff.h"
#include "iommufd/iommufd.h"
#include "kubelet/device_plugin.h"
#include "test_helpers.h"

#include "deviceplugin.pb-c.h"

#define ALLOCATE "/v1beta1.DevicePlugin/Allocate"

struct fixture {
	struct loop *loop;
	char *dir, *socket_dir, *kubelet_dir, *plugin_socket;
	struct kubelet_options options;
	struct iommufd_opener *opener;
	struct handoff *handoff;
	struct device_plugin *plugin;
	struct grpc_client *client;
	/* The last call's answer. */
	bool done;
	enum grpc_status status;
	char *message;
	V1beta1__AllocateResponse *response;
	int fds_before;
};

/* Four devices on /dev/null (best-effort: it has no IOMMU_OPTION, so the fd is
 * handed over unconfigured), with the given missing-device policy. */
static void start(struct fixture *f, enum kubelet_missing_device missing)
{
	struct iommufd_options io;
	struct handoff_options ho;

	kubelet_options_init(&f->options);
	f->options.kubelet_dir = f->kubelet_dir;
	f->options.devices = 4;
	f->options.iommu_device = "/dev/null";
	f->options.missing_device = missing;
	iommufd_options_init(&io);
	io.device_path = "/dev/null";
	io.policy = IOMMUFD_RLIMIT_BEST_EFFORT;
	assert_int_equal(iommufd_opener_new(&io, &f->opener), 0);
	handoff_options_init(&ho);
	ho.socket_dir = f->socket_dir;
	assert_int_equal(handoff_new(f->loop, &ho, &f->handoff), 0);
	assert_int_equal(device_plugin_new(f->loop, &f->options, f->opener, f->handoff, &f->plugin),
			 0);
	assert_int_equal(device_plugin_listen(f->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR,
					      f->plugin_socket, false, NULL, NULL),
			 0);
	assert_int_equal(grpc_client_connect(f->loop, f->plugin_socket, &f->client), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->fds_before = test_count_open_fds();
	assert_int_equal(loop_new(&f->loop), 0);
	f->dir = test_make_temp_dir();
	assert_non_null(f->dir);
	f->socket_dir = xasprintf("%s/fd", f->dir);
	f->kubelet_dir = xasprintf("%s/kubelet", f->dir);
	f->plugin_socket = xasprintf("%s/dp.sock", f->dir);
	*state = f;
	return 0;
}

static void forget_answer(struct fixture *f)
{
	free(f->message);
	f->message = NULL;
	if (f->response)
		v1beta1__allocate_response__free_unpacked(f->response, NULL);
	f->response = NULL;
	f->done = false;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	forget_answer(f);
	grpc_client_free(f->client);
	device_plugin_free(f->plugin);
	handoff_free(f->handoff);
	iommufd_opener_free(f->opener);
	loop_run_once(f->loop, 0); /* what the frees deferred */
	loop_free(f->loop);
	test_remove_tree(f->dir);
	assert_int_equal(test_count_open_fds(), f->fds_before);
	free(f->plugin_socket);
	free(f->kubelet_dir);
	free(f->socket_dir);
	free(f->dir);
	free(f);
	return 0;
}

static void on_message(void *data, const uint8_t *msg, size_t len)
{
	struct fixture *f = data;

	assert_null(f->response);
	f->response = v1beta1__allocate_response__unpack(NULL, len, msg);
	assert_non_null(f->response);
}

static void on_done(void *data, enum grpc_status status, const char *message)
{
	struct fixture *f = data;

	f->done = true;
	f->status = status;
	f->message = xstrdup(message);
}

static bool call_done(void *data)
{
	return ((struct fixture *)data)->done;
}

/* Calls Allocate with containers[i] holding ids[i] (NULL-terminated lists, at most
 * 4 containers) and waits for the answer. */
static void allocate(struct fixture *f, const char *const *const *containers)
{
	V1beta1__ContainerAllocateRequest requests[4];
	V1beta1__ContainerAllocateRequest *pointers[4];
	V1beta1__AllocateRequest request = V1BETA1__ALLOCATE_REQUEST__INIT;
	size_t n = 0;

	forget_answer(f);
	for (; containers[n]; n++) {
		assert_true(n < ARRAY_SIZE(requests));
		v1beta1__container_allocate_request__init(&requests[n]);
		requests[n].devices_ids = (char **)containers[n];
		while (containers[n][requests[n].n_devices_ids])
			requests[n].n_devices_ids++;
		pointers[n] = &requests[n];
	}
	request.container_requests = pointers;
	request.n_container_requests = n;
	assert_int_equal(
	    grpc_client_call(f->client, ALLOCATE, &request.base, on_message, on_done, f), 0);
	assert_true(test_run_until(f->loop, call_done, f, 5000));
}

/* Number of handoff sockets under dir (in the instance dirs in it, or in it). */
static int count_sockets(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.')
			continue;
		if (de->d_type == DT_DIR) {
			char *sub = xasprintf("%s/%s", dir, de->d_name);
			n += count_sockets(sub);
			free(sub);
		} else if (len > 5 && strcmp(de->d_name + len - 5, ".sock") == 0) {
			n++;
		}
	}
	closedir(d);
	return n;
}

/* Allocate is refused with status and exactly message; nothing was offered, and the
 * reason was logged once, as sent. */
static void expect_refused(struct fixture *f, const char *const *const *containers,
			   enum grpc_status status, const char *message)
{
	struct test_stderr_capture capture;
	unsigned long long failures = device_plugin_stats(f->plugin)->allocation_failures;

	test_capture_stderr_begin(&capture);
	allocate(f, containers);
	char *log = test_capture_stderr_end(&capture);
	assert_int_equal(f->status, status);
	assert_string_equal(f->message, message);
	assert_null(f->response);
	char *line = xasprintf("Allocate failed: %s\n", message);
	assert_int_equal(test_count_substrings(log, line), 1);
	assert_int_equal(test_count_substrings(log, "\n"), 1); /* and nothing else */
	free(line);
	free(log);
	assert_int_equal(handoff_pending(f->handoff), 0);
	assert_int_equal(handoff_stats(f->handoff)->offered, 0);
	assert_int_equal(count_sockets(f->socket_dir), 0);
	assert_int_equal(device_plugin_stats(f->plugin)->allocation_failures, failures + 1);
	assert_int_equal(device_plugin_stats(f->plugin)->allocations, 0);
}

static void allocate_refuses_a_container_request_without_devices(void **state)
{
	struct fixture *f = *state;
	const char *const none[] = {NULL};
	const char *const one[] = {"iommufd0", NULL};

	start(f, KUBELET_MISSING_ALLOW);
	expect_refused(f, (const char *const *const[]){none, NULL}, GRPC_STATUS_INVALID_ARGUMENT,
		       "container request 0 names no device");
	/* The empty one is found even after a valid container. */
	expect_refused(f, (const char *const *const[]){one, none, NULL},
		       GRPC_STATUS_INVALID_ARGUMENT, "container request 1 names no device");
}

static void allocate_refuses_an_unknown_device_id(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {"gpu0",      "iommufd",  "iommufd-1", "iommufd01",
					  "iommufd1x", "IOMMUFD1", ""};

	start(f, KUBELET_MISSING_ALLOW);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *const ids[] = {bad[i], NULL};
		char *message = xasprintf(
		    "unknown device id \"%s\": this plugin advertises iommufd0..iommufd3", bad[i]);
		expect_refused(f, (const char *const *const[]){ids, NULL},
			       GRPC_STATUS_INVALID_ARGUMENT, message);
		free(message);
	}
}

static void allocate_refuses_a_device_id_out_of_range(void **state)
{
	struct fixture *f = *state;
	const char *const ids[] = {"iommufd4", NULL};
	const char *const huge[] = {"iommufd18446744073709551616", NULL};

	start(f, KUBELET_MISSING_ALLOW);
	expect_refused(f, (const char *const *const[]){ids, NULL}, GRPC_STATUS_INVALID_ARGUMENT,
		       "unknown device id \"iommufd4\": this plugin advertises iommufd0..iommufd3");
	expect_refused(f, (const char *const *const[]){huge, NULL}, GRPC_STATUS_INVALID_ARGUMENT,
		       "unknown device id \"iommufd18446744073709551616\": this plugin "
		       "advertises iommufd0..iommufd3");
}

static void allocate_refuses_a_device_named_twice_in_one_request(void **state)
{
	struct fixture *f = *state;
	const char *const twice[] = {"iommufd1", "iommufd1", NULL};
	const char *const first[] = {"iommufd0", "iommufd1", NULL};
	const char *const second[] = {"iommufd1", NULL};
	const char *const message = "device id \"iommufd1\" is named more than once in the request";

	start(f, KUBELET_MISSING_ALLOW);
	expect_refused(f, (const char *const *const[]){twice, NULL}, GRPC_STATUS_INVALID_ARGUMENT,
		       message);
	/* Across containers too: the second offer would withdraw the first's socket. */
	expect_refused(f, (const char *const *const[]){first, second, NULL},
		       GRPC_STATUS_INVALID_ARGUMENT, message);
}

static void allocate_refuses_more_devices_than_advertised(void **state)
{
	struct fixture *f = *state;
	const char *const all[] = {"iommufd0", "iommufd1", "iommufd2",
				   "iommufd3", "iommufd4", NULL};

	start(f, KUBELET_MISSING_ALLOW);
	expect_refused(f, (const char *const *const[]){all, NULL}, GRPC_STATUS_INVALID_ARGUMENT,
		       "unknown device id \"iommufd4\": this plugin advertises iommufd0..iommufd3");
}

static void allocate_refuses_while_the_device_is_missing_and_unhealthy(void **state)
{
	struct fixture *f = *state;
	const char *const ids[] = {"iommufd0", NULL};
	const char *const twice[] = {"iommufd0", "iommufd0", NULL};

	start(f, KUBELET_MISSING_UNHEALTHY);
	device_plugin_set_device_present(f->plugin, false);
	expect_refused(f, (const char *const *const[]){ids, NULL}, GRPC_STATUS_FAILED_PRECONDITION,
		       "/dev/null is missing and --missing-device=unhealthy: no iommufd to hand "
		       "over");
	/* A malformed request is told so first. */
	expect_refused(f, (const char *const *const[]){twice, NULL}, GRPC_STATUS_INVALID_ARGUMENT,
		       "device id \"iommufd0\" is named more than once in the request");
}

static void allocate_answers_a_valid_request_with_one_socket_per_container(void **state)
{
	struct fixture *f = *state;
	const char *const first[] = {"iommufd0", NULL};
	const char *const second[] = {"iommufd3", "iommufd2", NULL};

	start(f, KUBELET_MISSING_ALLOW);
	allocate(f, (const char *const *const[]){first, second, NULL});
	assert_int_equal(f->status, GRPC_STATUS_OK);
	assert_non_null(f->response);
	assert_int_equal(f->response->n_container_responses, 2);
	for (size_t i = 0; i < 2; i++) {
		const V1beta1__ContainerAllocateResponse *c = f->response->container_responses[i];
		assert_int_equal(c->n_mounts, 1);
		assert_string_equal(c->mounts[0]->container_path, "/var/run/kubevirt/iommufd.sock");
		assert_memory_equal(c->mounts[0]->host_path, f->socket_dir, strlen(f->socket_dir));
		assert_int_equal(c->n_devices, 0);
	}
	assert_string_not_equal(f->response->container_responses[0]->mounts[0]->host_path,
				f->response->container_responses[1]->mounts[0]->host_path);
	assert_int_equal(handoff_pending(f->handoff), 2);
	assert_int_equal(count_sockets(f->socket_dir), 2);
	assert_int_equal(device_plugin_stats(f->plugin)->allocations, 2);
	assert_int_equal(device_plugin_stats(f->plugin)->allocation_failures, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(allocate_refuses_a_container_request_without_devices),
	    T(allocate_refuses_an_unknown_device_id),
	    T(allocate_refuses_a_device_id_out_of_range),
	    T(allocate_refuses_a_device_named_twice_in_one_request),
	    T(allocate_refuses_more_devices_than_advertised),
	    T(allocate_refuses_while_the_device_is_missing_and_unhealthy),
	    T(allocate_answers_a_valid_request_with_one_socket_per_container),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
