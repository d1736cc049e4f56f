/* The metrics registry: the exact exposition text it renders from its sources (HELP
 * and TYPE lines, counters, gauges, label and help escaping, source order), the
 * registered gauge and /healthz reason of the kubelet readiness, and what /healthz,
 * /livez and an unknown path answer over a real connection. */
#include "test_helpers.h"

#include "kubelet/readiness.h"
#include "metrics/metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <sys/resource.h>

#define BUILD_INFO                                                                                 \
	"# HELP iommufd_device_plugin_build_info Always 1; the version is in the label.\n"         \
	"# TYPE iommufd_device_plugin_build_info gauge\n"                                          \
	"iommufd_device_plugin_build_info{version=\"" PLUGIN_VERSION "\"} 1\n"

/* Renders m; returns the text before the process_* families (the caller frees it) and
 * checks that those follow in the process collector's shape. */
static char *render_without_process(const struct metrics *m)
{
	struct http_response r = {0};
	regex_t re;

	metrics_render(m, &r);
	assert_non_null(r.body);
	char *process = strstr(r.body, "# HELP process_cpu_seconds_total ");
	assert_non_null(process);
	assert_int_equal(
	    regcomp(
		&re,
		"^# HELP process_cpu_seconds_total User and system CPU time spent in seconds\\.\n"
		"# TYPE process_cpu_seconds_total counter\n"
		"process_cpu_seconds_total [0-9]+\\.[0-9]{6}\n"
		"# HELP process_resident_memory_bytes Resident memory size in bytes\\.\n"
		"# TYPE process_resident_memory_bytes gauge\n"
		"process_resident_memory_bytes [1-9][0-9]*\n"
		"# HELP process_open_fds Number of open file descriptors\\.\n"
		"# TYPE process_open_fds gauge\n"
		"process_open_fds [1-9][0-9]*\n"
		"# HELP process_max_fds Maximum number of open file descriptors\\.\n"
		"# TYPE process_max_fds gauge\n"
		"process_max_fds [1-9][0-9]*\n"
		"# HELP process_start_time_seconds Start time of the process since unix epoch "
		"in seconds\\.\n"
		"# TYPE process_start_time_seconds gauge\n"
		"process_start_time_seconds [1-9][0-9]*\\.[0-9]{3}\n$",
		REG_EXTENDED | REG_NOSUB),
	    0);
	int match = regexec(&re, process, 0, NULL, 0);
	regfree(&re);
	if (match != 0)
		fail_msg("process families not as expected:\n%s", process);
	*process = '\0';
	return r.body;
}

/* Asserts that m renders exactly expected before the process families. */
static void assert_rendered(const struct metrics *m, const char *expected)
{
	char *text = render_without_process(m);

	assert_string_equal(text, expected);
	free(text);
}

static void metrics_render_of_an_empty_registry_is_build_info_and_process(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();

	assert_rendered(m, BUILD_INFO);
	metrics_free(m);
}

struct fake_stats {
	unsigned long long requests;
	unsigned long long open;
};

static void write_fake(struct metrics_writer *w, const void *data)
{
	const struct fake_stats *st = data;

	metrics_counter(w, "requests_total", "Requests answered.", st->requests);
	metrics_family(w, "open_things", METRICS_GAUGE, "Things open now.");
	metrics_sample(w, st->open);
}

static void write_labelled(struct metrics_writer *w, const void *data)
{
	(void)data;
	metrics_family(w, "outcomes_total", METRICS_COUNTER, "By outcome.");
	metrics_sample_labelled(w, "outcome", "ok", 3);
	metrics_sample_labelled(w, "outcome", "failed", 0);
}

static void metrics_render_writes_counters_and_gauges_of_each_source_in_order(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct fake_stats st = {.requests = 18446744073709551615ULL, .open = 0};

	metrics_add_source(m, write_fake, &st);
	metrics_add_source(m, write_labelled, NULL);
	assert_rendered(m, BUILD_INFO
			"# HELP iommufd_device_plugin_requests_total Requests answered.\n"
			"# TYPE iommufd_device_plugin_requests_total counter\n"
			"iommufd_device_plugin_requests_total 18446744073709551615\n"
			"# HELP iommufd_device_plugin_open_things Things open now.\n"
			"# TYPE iommufd_device_plugin_open_things gauge\n"
			"iommufd_device_plugin_open_things 0\n"
			"# HELP iommufd_device_plugin_outcomes_total By outcome.\n"
			"# TYPE iommufd_device_plugin_outcomes_total counter\n"
			"iommufd_device_plugin_outcomes_total{outcome=\"ok\"} 3\n"
			"iommufd_device_plugin_outcomes_total{outcome=\"failed\"} 0\n");

	/* Values are read at each scrape, from the source's own stats. */
	st.requests = 1;
	st.open = 2;
	char *text = render_without_process(m);
	assert_non_null(strstr(text, "\niommufd_device_plugin_requests_total 1\n"));
	assert_non_null(strstr(text, "\niommufd_device_plugin_open_things 2\n"));
	free(text);
	metrics_free(m);
}

static const double wait_bounds[] = {0.1, 2.5, 60};

static void write_histogram(struct metrics_writer *w, const void *data)
{
	metrics_histogram(w, "wait_seconds", "Waits.", data, wait_bounds, 3);
}

/* Buckets are cumulative, a bound is inclusive (le), +Inf counts everything. */
static void metrics_render_writes_a_histogram_with_cumulative_buckets(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct metrics_histogram h = {0};
	const double values[] = {0.05, 0.1, 2, 61, 3600};

	for (size_t i = 0; i < 5; i++)
		metrics_histogram_observe(&h, wait_bounds, 3, values[i]);
	metrics_add_source(m, write_histogram, &h);
	assert_rendered(m, BUILD_INFO "# HELP iommufd_device_plugin_wait_seconds Waits.\n"
				      "# TYPE iommufd_device_plugin_wait_seconds histogram\n"
				      "iommufd_device_plugin_wait_seconds_bucket{le=\"0.1\"} 2\n"
				      "iommufd_device_plugin_wait_seconds_bucket{le=\"2.5\"} 3\n"
				      "iommufd_device_plugin_wait_seconds_bucket{le=\"60\"} 3\n"
				      "iommufd_device_plugin_wait_seconds_bucket{le=\"+Inf\"} 5\n"
				      "iommufd_device_plugin_wait_seconds_sum 3663.150000\n"
				      "iommufd_device_plugin_wait_seconds_count 5\n");
	metrics_free(m);
}

/* process_max_fds is the soft RLIMIT_NOFILE, the limit EMFILE comes from. */
static void metrics_process_max_fds_is_the_soft_nofile_limit(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();
	struct http_response r = {0};
	struct rlimit nofile;
	char want[64];

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &nofile), 0);
	snprintf(want, sizeof(want), "\nprocess_max_fds %llu\n",
		 (unsigned long long)nofile.rlim_cur);
	metrics_render(m, &r);
	if (!strstr(r.body, want))
		fail_msg("no '%s' in:\n%s", want + 1, r.body);
	free(r.body);
	metrics_free(m);
}

static void write_awkward(struct metrics_writer *w, const void *data)
{
	(void)data;
	metrics_family(w, "awkward", METRICS_GAUGE,
		       "A \"quoted\" help\\text\nover two lines; {braces} and = stay.");
	metrics_sample_labelled(w, "name", "dev-\"q\"\\\nx", 1);
	metrics_sample_labelled(w, "name", "", 2);
	metrics_sample_labelled(w, "name", "\\", 3);
}

/* The text format 0.0.4: HELP escapes \ and line feed; label values also escape ". */
static void metrics_render_escapes_help_text_and_label_values(void **state)
{
	(void)state;
	struct metrics *m = metrics_new();

	metrics_add_source(m, write_awkward, NULL);
	assert_rendered(m, BUILD_INFO
			"# HELP iommufd_device_plugin_awkward A \"quoted\" help\\\\text\\nover "
			"two lines; {braces} and = stay.\n"
			"# TYPE iommufd_device_plugin_awkward gauge\n"
			"iommufd_device_plugin_awkward{name=\"dev-\\\"q\\\"\\\\\\nx\"} 1\n"
			"iommufd_device_plugin_awkward{name=\"\"} 2\n"
			"iommufd_device_plugin_awkward{name=\"\\\\\"} 3\n");
	metrics_free(m);
}

/* With no registration path registered (here: none configured), /healthz has the
 * plain reason and the registered gauge is 0; both come from one function. */
static void kubelet_readiness_without_a_registered_path_is_not_ready(void **state)
{
	(void)state;
	const struct kubelet_readiness readiness = {0};
	struct metrics *m = metrics_new();

	assert_string_equal(kubelet_readiness_reason(&readiness),
			    "not registered with the kubelet");
	metrics_add_source(m, kubelet_readiness_metrics_write, &readiness);
	assert_rendered(m, BUILD_INFO "# HELP iommufd_device_plugin_registered 1 while "
				      "registered with the kubelet (through any configured "
				      "path), else 0.\n"
				      "# TYPE iommufd_device_plugin_registered gauge\n"
				      "iommufd_device_plugin_registered 0\n");
	metrics_free(m);
}

/* A client of the served registry, driven from the test's loop. */
struct client {
	int fd;
	char answer[8192];
	size_t len;
	bool closed;
};

static bool client_done(void *data)
{
	struct client *c = data;

	while (!c->closed && c->len < sizeof(c->answer) - 1) {
		ssize_t n =
		    recv(c->fd, c->answer + c->len, sizeof(c->answer) - 1 - c->len, MSG_DONTWAIT);
		if (n > 0)
			c->len += (size_t)n;
		else if (n == 0)
			c->closed = true;
		else
			break; /* EAGAIN: the server has not answered yet */
	}
	c->answer[c->len] = '\0';
	return c->closed;
}

/* GETs path from the server at socket_path; returns the whole answer (freed by the
 * caller). */
static char *get(struct loop *loop, const char *socket_path, const char *path)
{
	struct client c = {.fd = test_connect(socket_path)};
	char *request = xasprintf("GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);

	assert_true(c.fd >= 0);
	assert_int_equal(send(c.fd, request, strlen(request), MSG_NOSIGNAL),
			 (ssize_t)strlen(request));
	free(request);
	assert_true(test_run_until(loop, client_done, &c, 5000));
	assert_int_equal(close(c.fd), 0);
	return xstrdup(c.answer);
}

static const char *reason_from(const void *data)
{
	return *(const char *const *)data;
}

/* The body of an HTTP answer, after its head. */
static const char *body_of(const char *answer)
{
	const char *body = strstr(answer, "\r\n\r\n");
	assert_non_null(body);
	return body + 4;
}

static void metrics_serves_healthz_from_the_readiness_check_and_livez_always(void **state)
{
	(void)state;
	char *dir = test_make_temp_dir();
	assert_non_null(dir);
	char *socket_path = xasprintf("%s/metrics.sock", dir);
	int fds_before = test_count_open_fds();
	struct loop *loop;
	const char *reason = NULL;

	assert_int_equal(loop_new(&loop), 0);
	struct metrics *m = metrics_new();
	assert_int_equal(metrics_serve(m, loop, socket_path), 0);

	char *answer = get(loop, socket_path, "/healthz"); /* no check set: ready */
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	assert_string_equal(body_of(answer), "ok\n");
	free(answer);

	metrics_set_readiness(m, reason_from, &reason);
	answer = get(loop, socket_path, "/healthz");
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	free(answer);
	reason = "not registered with the kubelet";
	answer = get(loop, socket_path, "/healthz");
	assert_true(strncmp(answer, "HTTP/1.1 503 ", 13) == 0);
	assert_string_equal(body_of(answer), "not registered with the kubelet\n");
	free(answer);

	answer = get(loop, socket_path, "/livez"); /* alive whether ready or not */
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	assert_string_equal(body_of(answer), "ok\n");
	free(answer);

	answer = get(loop, socket_path, "/metrics");
	assert_true(strncmp(answer, "HTTP/1.1 200 ", 13) == 0);
	assert_non_null(strstr(answer, "\r\nContent-Type: text/plain; version=0.0.4; "
				       "charset=utf-8\r\n"));
	assert_true(strncmp(body_of(answer), BUILD_INFO, strlen(BUILD_INFO)) == 0);
	free(answer);

	answer = get(loop, socket_path, "/other");
	assert_true(strncmp(answer, "HTTP/1.1 404 ", 13) == 0);
	assert_string_equal(body_of(answer), "not found; try /metrics, /healthz or /livez\n");
	free(answer);

	metrics_free(m);
	loop_free(loop);
	assert_int_equal(test_count_open_fds(), fds_before);
	assert_int_equal(access(socket_path, F_OK), -1); /* the socket file went with it */
	free(socket_path);
	test_remove_tree(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(metrics_render_of_an_empty_registry_is_build_info_and_process),
	    cmocka_unit_test(metrics_render_writes_counters_and_gauges_of_each_source_in_order),
	    cmocka_unit_test(metrics_render_escapes_help_text_and_label_values),
	    cmocka_unit_test(metrics_render_writes_a_histogram_with_cumulative_buckets),
	    cmocka_unit_test(metrics_process_max_fds_is_the_soft_nofile_limit),
	    cmocka_unit_test(kubelet_readiness_without_a_registered_path_is_not_ready),
	    cmocka_unit_test(metrics_serves_healthz_from_the_readiness_check_and_livez_always),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
