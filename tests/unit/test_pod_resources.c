/* The PodResources poller against a real gRPC server on the same loop (our own
 * server, answering List from a message the test sets) and a real handoff module:
 * matching, polling only while offers are pending, audit, withdrawal, fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "grpc/server.h"
#include "handoff/handoff.h"
#include "kubelet/pod_resources.h"
#include "test_helpers.h"

#define RESOURCE "devices.kubevirt.io/iommufd"

struct fixture {
	struct loop *loop;
	char *dir, *socket_dir, *api_socket;
	struct handoff *handoff;
	struct grpc_server *server;
	struct pod_resources *pr;
	/* What List answers: one pod, one container, holding held_ids of resource. */
	const char *resource;
	char *held_ids[2];
	size_t held_count;
	int list_calls;
	int fds_before;
};

static void handle_list(void *data, struct grpc_call *call, const ProtobufCMessage *request)
{
	struct fixture *f = data;
	V1__ContainerDevices devices = V1__CONTAINER_DEVICES__INIT;
	V1__ContainerDevices *device_list[] = {&devices};
	V1__ContainerResources container = V1__CONTAINER_RESOURCES__INIT;
	V1__ContainerResources *containers[] = {&container};
	V1__PodResources pod = V1__POD_RESOURCES__INIT;
	V1__PodResources *pods[] = {&pod};
	V1__ListPodResourcesResponse response = V1__LIST_POD_RESOURCES_RESPONSE__INIT;

	(void)request; /* ListPodResourcesRequest: empty */
	f->list_calls++;
	devices.resource_name = (char *)f->resource;
	devices.device_ids = f->held_ids;
	devices.n_device_ids = f->held_count;
	container.name = "compute";
	container.devices = device_list;
	container.n_devices = 1;
	pod.name = "virt-launcher-vm1";
	pod.namespace_ = "vms";
	pod.containers = containers;
	pod.n_containers = 1;
	response.pod_resources = pods;
	response.n_pod_resources = 1;
	grpc_call_send(call, &response.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const struct grpc_method methods[] = {{"/v1.PodResourcesLister/List",
					      &v1__list_pod_resources_request__descriptor,
					      handle_list, NULL}};

/* A handoff in a temporary dir, our List server, and a poller every 50 ms with a
 * 200 ms grace (serve: whether the API socket is served at all). */
static void start(struct fixture *f, bool serve)
{
	struct handoff_options ho;

	handoff_options_init(&ho);
	ho.socket_dir = f->socket_dir;
	assert_int_equal(handoff_new(f->loop, &ho, &f->handoff), 0);
	assert_int_equal(grpc_server_new(f->loop, methods, 1, f, &f->server), 0);
	if (serve)
		assert_int_equal(grpc_server_listen(f->server, f->api_socket, false, NULL, NULL),
				 0);
	const struct pod_resources_options o = {
	    .socket_path = f->api_socket,
	    .resource_name = RESOURCE,
	    .interval_usec = 50000,
	    .grace_usec = 200000,
	};
	assert_int_equal(pod_resources_new(f->loop, f->handoff, &o, &f->pr), 0);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->fds_before = test_count_open_fds();
	assert_int_equal(loop_new(&f->loop), 0);
	f->dir = test_make_temp_dir();
	assert_non_null(f->dir);
	f->socket_dir = xasprintf("%s/fd", f->dir);
	f->api_socket = xasprintf("%s/kubelet.sock", f->dir);
	f->resource = RESOURCE;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->pr) {
		pod_resources_stop(f->pr);
		loop_run_once(f->loop, 0); /* the loop closes an abandoned List's connection */
	}
	pod_resources_free(f->pr);
	grpc_server_free(f->server);
	handoff_free(f->handoff);
	loop_free(f->loop);
	test_remove_tree(f->dir);
	assert_int_equal(test_count_open_fds(), f->fds_before);
	free(f->socket_dir);
	free(f->api_socket);
	free(f->dir);
	free(f);
	return 0;
}

static const char *offer(struct fixture *f, const char *device_id)
{
	const char *path;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(handoff_offer(f->handoff, device_id, fd, &path, NULL), 0);
	return path;
}

static bool nothing_pending(void *data)
{
	return handoff_pending(((struct fixture *)data)->handoff) == 0;
}

static bool one_abandoned(void *data)
{
	return handoff_stats(((struct fixture *)data)->handoff)->abandoned >= 1;
}

static bool listed(void *data)
{
	return ((struct fixture *)data)->list_calls > 0;
}

/* The sentinel for "no List while nothing is pending": first runs the loop until
 * nothing is ready (whatever was due is done), then offers a device no pod holds
 * and expects exactly one List more than before, the offer's. */
static void expect_one_list_for_a_new_offer(struct fixture *f, int calls_before)
{
	int rounds = 0;

	while (loop_run_once(f->loop, 0) > 0)
		assert_true(++rounds < 1000);
	assert_int_equal(f->list_calls, calls_before);
	f->list_calls = 0;
	const char *path = offer(f, "iommufd2");
	assert_true(test_run_until(f->loop, listed, f, 30000));
	assert_int_equal(f->list_calls, 1);
	handoff_withdraw(f->handoff, path);
}

static bool two_failures(void *data)
{
	return pod_resources_stats(((struct fixture *)data)->pr)->failures >= 2;
}

static void find_holder_matches_only_our_resource_and_device(void **state)
{
	char *ids[] = {"iommufd1", "iommufd2"};
	V1__ContainerDevices gpu = V1__CONTAINER_DEVICES__INIT, ours = V1__CONTAINER_DEVICES__INIT;
	V1__ContainerDevices *devices[] = {&gpu, &ours};
	V1__ContainerResources sidecar = V1__CONTAINER_RESOURCES__INIT,
			       compute = V1__CONTAINER_RESOURCES__INIT;
	V1__ContainerResources *containers[] = {&sidecar, &compute};
	V1__PodResources pod = V1__POD_RESOURCES__INIT;
	V1__PodResources *pods[] = {&pod};
	V1__ListPodResourcesResponse response = V1__LIST_POD_RESOURCES_RESPONSE__INIT;
	struct pod_resources_holder holder;

	(void)state;
	gpu.resource_name = "nvidia.com/gpu";
	gpu.device_ids = (char *[]){"iommufd0"};
	gpu.n_device_ids = 1;
	ours.resource_name = RESOURCE;
	ours.device_ids = ids;
	ours.n_device_ids = 2;
	sidecar.name = "sidecar";
	compute.name = "compute";
	compute.devices = devices;
	compute.n_devices = 2;
	pod.name = "virt-launcher";
	pod.namespace_ = "vms";
	pod.containers = containers;
	pod.n_containers = 2;
	response.pod_resources = pods;
	response.n_pod_resources = 1;

	assert_true(pod_resources_find_holder(&response, RESOURCE, "iommufd2", &holder));
	assert_string_equal(holder.namespace_, "vms");
	assert_string_equal(holder.pod, "virt-launcher");
	assert_string_equal(holder.container, "compute");
	assert_false(pod_resources_find_holder(&response, RESOURCE, "iommufd0", &holder));
	assert_false(pod_resources_find_holder(&response, RESOURCE, "iommufd3", &holder));
	response.n_pod_resources = 0;
	assert_false(pod_resources_find_holder(&response, RESOURCE, "iommufd2", &holder));
}

static void nothing_is_armed_or_listed_while_no_offer_is_pending(void **state)
{
	struct fixture *f = *state;

	start(f, true);
	assert_int_equal(test_count_armed_timerfds(), 0);
	const char *path = offer(f, "iommufd0");
	/* The loop's one timerfd, set for the earlier of the TTL and the poll. */
	assert_int_equal(test_count_armed_timerfds(), 1);
	handoff_withdraw(f->handoff, path);
	assert_int_equal(test_count_armed_timerfds(), 0);
	/* The sentinel: the next offer brings exactly one List, the first of all. */
	expect_one_list_for_a_new_offer(f, 0);
}

static void offer_no_pod_holds_is_withdrawn_after_the_grace(void **state)
{
	struct fixture *f = *state;

	start(f, true);
	char *path = xstrdup(offer(f, "iommufd3"));
	unsigned long long offered = now_usec();
	assert_true(test_run_until(f->loop, nothing_pending, f, 5000));
	assert_true(now_usec() - offered >= 200000); /* not before the grace */
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(handoff_stats(f->handoff)->abandoned, 1);
	/* No polling once nothing is pending: no timer, and the next List is the
	 * sentinel offer's. */
	assert_int_equal(test_count_armed_timerfds(), 0);
	expect_one_list_for_a_new_offer(f, f->list_calls);
	free(path);
}

static void offer_held_by_a_pod_is_kept(void **state)
{
	struct fixture *f = *state;

	f->held_ids[0] = "iommufd1";
	f->held_count = 1;
	start(f, true);
	const char *path = offer(f, "iommufd1");
	/* A sentinel offered with it that no pod holds: once it is withdrawn, the grace
	 * has passed for both, and the held one must still be there. */
	char *unheld = xstrdup(offer(f, "iommufd3"));
	assert_true(test_run_until(f->loop, one_abandoned, f, 30000));
	assert_int_equal(access(unheld, F_OK), -1);
	assert_true(f->list_calls >= 1);
	assert_int_equal(handoff_pending(f->handoff), 1);
	assert_int_equal(access(path, F_OK), 0);
	free(unheld);
}

static void a_device_of_another_resource_does_not_hold_the_offer(void **state)
{
	struct fixture *f = *state;

	f->resource = "nvidia.com/gpu";
	f->held_ids[0] = "iommufd1";
	f->held_count = 1;
	start(f, true);
	offer(f, "iommufd1");
	assert_true(test_run_until(f->loop, nothing_pending, f, 5000));
	assert_true(f->list_calls >= 1);
}

static void unavailable_api_withdraws_nothing(void **state)
{
	struct fixture *f = *state;

	start(f, false);
	const char *path = offer(f, "iommufd0");
	assert_true(test_run_until(f->loop, two_failures, f, 5000));
	test_run_for(f->loop, 300); /* well past the grace */
	assert_int_equal(handoff_pending(f->handoff), 1);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(handoff_stats(f->handoff)->abandoned, 0);
}

static void invalid_options_are_refused(void **state)
{
	struct fixture *f = *state;
	struct handoff_options ho;
	struct pod_resources *pr = NULL;
	struct pod_resources_options o = {
	    .socket_path = "relative.sock", .resource_name = RESOURCE, .interval_usec = 1000};

	handoff_options_init(&ho);
	ho.socket_dir = f->socket_dir;
	assert_int_equal(handoff_new(f->loop, &ho, &f->handoff), 0);
	assert_int_equal(pod_resources_new(f->loop, f->handoff, &o, &pr), -EINVAL);
	o.socket_path = f->api_socket;
	o.interval_usec = 0;
	assert_int_equal(pod_resources_new(f->loop, f->handoff, &o, &pr), -EINVAL);
	assert_null(pr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(find_holder_matches_only_our_resource_and_device),
	    cmocka_unit_test_setup_teardown(nothing_is_armed_or_listed_while_no_offer_is_pending,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(offer_no_pod_holds_is_withdrawn_after_the_grace, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(offer_held_by_a_pod_is_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(a_device_of_another_resource_does_not_hold_the_offer,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(unavailable_api_withdraws_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(invalid_options_are_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
