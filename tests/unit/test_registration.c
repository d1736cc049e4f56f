/* Registration against a real kubelet-side gRPC server on the same loop (our own
 * server, failing Register as often as the test says): the backoff schedule, retries
 * only while kubelet.sock exists, registering again at once when a kubelet starts,
 * and the backoff starting over after a success. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "grpc/server.h"
#include "handoff/handoff.h"
#include "kubelet/device_plugin.h"
#include "kubelet/registration.h"
#include "log.h"
#include "test_helpers.h"

/* Generous: the machine may be loaded; only behaviour is asserted, never a time. */
#define DEADLINE_MS 30000

struct fixture {
	struct loop *loop;
	char *dir, *kubelet_socket;
	struct kubelet_options options;
	struct handoff *handoff;
	struct device_plugin *plugin;
	struct registration *reg;
	struct grpc_server *kubelet;
	int register_calls;
	int fail_next; /* Register calls still to be refused */
	char endpoint[64];
};

static void kubelet_register(void *data, struct grpc_call *call, const ProtobufCMessage *message)
{
	const V1beta1__RegisterRequest *request = (const V1beta1__RegisterRequest *)message;
	struct fixture *f = data;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;

	f->register_calls++;
	snprintf(f->endpoint, sizeof(f->endpoint), "%s", request->endpoint);
	if (f->fail_next > 0) {
		f->fail_next--;
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "not now");
		return;
	}
	grpc_call_send(call, &empty.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const struct grpc_method kubelet_methods[] = {{"/v1beta1.Registration/Register",
						      &v1beta1__register_request__descriptor,
						      kubelet_register, NULL}};

static void kubelet_start(struct fixture *f)
{
	assert_int_equal(grpc_server_new(f->loop, kubelet_methods, 1, f, &f->kubelet), 0);
	assert_int_equal(grpc_server_listen(f->kubelet, f->kubelet_socket, false, NULL, NULL), 0);
}

static void kubelet_stop(struct fixture *f)
{
	grpc_server_stop_listening(f->kubelet, true);
	grpc_server_free(f->kubelet);
	f->kubelet = NULL;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct handoff_options ho;

	assert_int_equal(loop_new(&f->loop), 0);
	f->dir = test_make_temp_dir();
	assert_non_null(f->dir);
	f->kubelet_socket = xasprintf("%s/kubelet.sock", f->dir);
	kubelet_options_init(&f->options);
	f->options.kubelet_dir = f->dir;
	f->options.iommu_device = "/dev/null";
	handoff_options_init(&ho);
	cleanup_free char *socket_dir = xasprintf("%s/fd", f->dir);
	ho.socket_dir = socket_dir;
	assert_int_equal(handoff_new(f->loop, &ho, &f->handoff), 0);
	assert_int_equal(device_plugin_new(f->loop, &f->options, NULL, f->handoff, &f->plugin), 0);
	assert_int_equal(registration_new(f->loop, &f->options, f->plugin, f->handoff, &f->reg), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	registration_free(f->reg);
	device_plugin_free(f->plugin);
	handoff_free(f->handoff);
	if (f->kubelet)
		kubelet_stop(f);
	loop_run_once(f->loop, 0);
	loop_free(f->loop);
	test_remove_tree(f->dir);
	free(f->dir);
	free(f->kubelet_socket);
	free(f);
	return 0;
}

static bool registered(void *data)
{
	struct fixture *f = data;

	return registration_registered(f->reg);
}

static bool refused_once_more(void *data)
{
	struct fixture *f = data;

	return f->fail_next == 0 && registration_stats(f->reg)->register_failures > 0;
}

static bool refused_once_more_any(void *data)
{
	struct fixture *f = data;

	return registration_stats(f->reg)->register_failures > 0;
}

/* Idle: no timer armed, and then nothing ready. In that order: a timerfd that
 * expired but is not yet dispatched reads as disarmed in fdinfo, and is readable. */
static bool idle_without_timers(void *data)
{
	struct fixture *f = data;

	return test_count_armed_timerfds() == 0 && loop_run_once(f->loop, 0) == 0;
}

static void registration_backoff_doubles_from_5_ms_up_to_10_s(void **state)
{
	unsigned long long wait = 0, last = 0;
	(void)state;

	assert_int_equal(registration_backoff_next(0), 5000);
	assert_int_equal(registration_backoff_next(5000), 10000);
	assert_int_equal(registration_backoff_next(10000), 20000);
	for (int i = 0; i < 40; i++) {
		wait = registration_backoff_next(wait);
		assert_true(wait >= last);
		last = wait;
	}
	assert_int_equal(wait, 10000000);
	assert_int_equal(registration_backoff_next(10000000), 10000000);
	assert_int_equal(registration_backoff_next(6000000), 10000000);
}

static void registration_retries_refused_registers_with_growing_waits(void **state)
{
	struct fixture *f = *state;
	struct test_stderr_capture capture;

	kubelet_start(f);
	f->fail_next = 3;
	test_capture_stderr_begin(&capture);
	assert_int_equal(registration_start(f->reg), 0);
	bool ok = test_run_until(f->loop, registered, f, DEADLINE_MS);
	char *log = test_capture_stderr_end(&capture);
	assert_true(ok);
	assert_int_equal(f->register_calls, 4);
	assert_int_equal(registration_stats(f->reg)->register_failures, 3);
	assert_int_equal(registration_stats(f->reg)->registrations, 1);
	assert_string_equal(f->endpoint, "kubevirt-iommufd-0.sock");
	/* The schedule, in order, without timing it. */
	const char *a = strstr(log, "retrying Register in 5 ms");
	const char *b = a ? strstr(a, "retrying Register in 10 ms") : NULL;
	const char *c = b ? strstr(b, "retrying Register in 20 ms") : NULL;
	assert_non_null(c);
	assert_null(strstr(c, "retrying Register in 40 ms"));
	free(log);
	/* Registered: nothing is left armed to wake the daemon. */
	assert_int_equal(test_count_armed_timerfds(), 0);
}

struct failures_after {
	struct fixture *f;
	unsigned long long base;
};

static bool failed_once_more(void *data)
{
	const struct failures_after *fa = data;

	return registration_stats(fa->f->reg)->register_failures > fa->base;
}

static void registration_waits_for_kubelet_sock_instead_of_retrying(void **state)
{
	struct fixture *f = *state;
	struct test_stderr_capture capture;

	kubelet_start(f);
	f->fail_next = 1000; /* a retry before the kubelet goes is refused too */
	assert_int_equal(registration_start(f->reg), 0);
	assert_true(test_run_until(f->loop, refused_once_more_any, f, DEADLINE_MS));
	/* The kubelet goes away: the next attempt (the retry, or the Register in flight
	 * ending) fails, finds no kubelet.sock, and arms nothing: no timer polls for it.
	 * Run until no timer is left (a polling retry never gets there). */
	kubelet_stop(f);
	struct failures_after fa = {f, registration_stats(f->reg)->register_failures};
	test_capture_stderr_begin(&capture);
	bool failed = test_run_until(f->loop, failed_once_more, &fa, DEADLINE_MS);
	bool idle = failed && test_run_until(f->loop, idle_without_timers, f, DEADLINE_MS);
	char *log = test_capture_stderr_end(&capture);
	assert_true(failed);
	assert_true(idle);
	int calls = f->register_calls;
	assert_false(registration_registered(f->reg));
	assert_int_equal(test_count_substrings(log, "waiting for"), 1);
	assert_null(strstr(log, "retrying Register"));
	free(log);
	/* The sentinel: a kubelet starts (kubelet.sock appears): exactly one Register,
	 * at once, accepted; nothing registered in between. */
	f->fail_next = 0;
	kubelet_start(f);
	assert_true(test_run_until(f->loop, registered, f, DEADLINE_MS));
	assert_int_equal(f->register_calls, calls + 1);
}

static void registration_backoff_starts_over_after_a_success(void **state)
{
	struct fixture *f = *state;
	struct test_stderr_capture capture;

	kubelet_start(f);
	f->fail_next = 2;
	assert_int_equal(registration_start(f->reg), 0);
	assert_true(test_run_until(f->loop, registered, f, DEADLINE_MS));
	/* The kubelet restarts (a new kubelet.sock) and refuses once: 5 ms again. */
	kubelet_stop(f);
	f->fail_next = 1;
	test_capture_stderr_begin(&capture);
	kubelet_start(f);
	assert_true(test_run_until(f->loop, refused_once_more, f, DEADLINE_MS));
	bool ok = test_run_until(f->loop, registered, f, DEADLINE_MS);
	char *log = test_capture_stderr_end(&capture);
	assert_true(ok);
	assert_non_null(strstr(log, "retrying Register in 5 ms"));
	assert_null(strstr(log, "retrying Register in 10 ms"));
	assert_int_equal(registration_stats(f->reg)->registrations, 2);
	free(log);
}

/* Issue 22: the lifecycle is one state, and a move it does not have is refused. */
static void registration_set_state_refuses_moves_the_lifecycle_lacks(void **state)
{
	struct fixture *f = *state;
	struct test_stderr_capture capture;

	assert_int_equal(registration_state(f->reg), REGISTRATION_NONE);
	log_set_verbosity(2);
	test_capture_stderr_begin(&capture);
	/* Registered without serving or a Register: refused, nothing changes. */
	int refused = registration_set_state(f->reg, REGISTRATION_REGISTERED);
	int serving = registration_set_state(f->reg, REGISTRATION_SERVING);
	int again = registration_set_state(f->reg, REGISTRATION_SERVING);
	int superseded = registration_set_state(f->reg, REGISTRATION_SUPERSEDED);
	/* Superseded is final: a newer instance serves the kubelet. */
	int back = registration_set_state(f->reg, REGISTRATION_SERVING);
	char *log = test_capture_stderr_end(&capture);
	log_set_verbosity(0);
	assert_int_equal(refused, -EINVAL);
	assert_int_equal(serving, 0);
	assert_int_equal(again, 0);
	assert_int_equal(superseded, 0);
	assert_int_equal(back, -EINVAL);
	assert_int_equal(registration_state(f->reg), REGISTRATION_SUPERSEDED);
	assert_false(registration_registered(f->reg));
	/* Each move is logged once, each refusal once; staying is silent. */
	assert_non_null(strstr(log, "refusing the move from none to registered"));
	assert_non_null(strstr(log, "refusing the move from superseded to serving"));
	assert_int_equal(test_count_substrings(log, "registration: none -> serving"), 1);
	assert_int_equal(test_count_substrings(log, "registration: serving -> superseded"), 1);
	assert_int_equal(test_count_substrings(log, "registration: serving -> serving"), 0);
	free(log);
	/* Every state has a name, and none moves to itself through the table. */
	for (int s = 0; s < REGISTRATION_STATE_COUNT; s++) {
		assert_string_not_equal(registration_state_name(s), "invalid");
		assert_false(registration_transition_allowed(s, s));
		assert_false(registration_transition_allowed(REGISTRATION_SUPERSEDED, s));
	}
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(registration_backoff_doubles_from_5_ms_up_to_10_s),
	    T(registration_retries_refused_registers_with_growing_waits),
	    T(registration_waits_for_kubelet_sock_instead_of_retrying),
	    T(registration_backoff_starts_over_after_a_success),
	    T(registration_set_state_refuses_moves_the_lifecycle_lacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
