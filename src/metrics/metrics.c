/* Renders the modules' counters as Prometheus text and answers the health check.
 * Metric names follow the Prometheus naming guide: a prefix per program, _total for
 * counters, base units (bytes, seconds), labels for outcomes of one event. */
#include "metrics.h"
#include "../handoff/handoff.h"
#include "../iommufd/device_presence.h"
#include "../iommufd/iommufd.h"
#include "../kubelet/device_plugin.h"
#include "../kubelet/plugin_watcher.h"
#include "../kubelet/pod_resources.h"
#include "../kubelet/registration.h"
#include "../log.h"
#include "../util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>

#define PREFIX "iommufd_device_plugin_"
/* The content type of the text format, version 0.0.4 (Prometheus exposition formats). */
#define EXPOSITION_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics {
	struct metrics_sources sources;
	struct http_server *server;
	double start_time;
};

static void family(struct http_response *r, const char *name, const char *type, const char *help)
{
	http_response_append(r, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s %s\n", name, help,
			     name, type);
}

static void sample(struct http_response *r, const char *name, unsigned long long value)
{
	http_response_append(r, PREFIX "%s %llu\n", name, value);
}

static void labelled(struct http_response *r, const char *name, const char *label,
		     const char *label_value, unsigned long long value)
{
	http_response_append(r, PREFIX "%s{%s=\"%s\"} %llu\n", name, label, label_value, value);
}

/* Registered through any configured path: what /healthz reports. */
static bool metrics_registered(const struct metrics_sources *s)
{
	return (s->registration && registration_registered(s->registration)) ||
	       (s->plugin_watcher && plugin_watcher_registered(s->plugin_watcher));
}

static void render_registration(struct http_response *r, const struct registration *reg)
{
	const struct registration_stats *st = registration_stats(reg);

	family(r, "registrations_total", "counter", "Register calls the kubelet accepted.");
	sample(r, "registrations_total", st->registrations);
	family(r, "reregistrations_total", "counter",
	       "Registrations after the first one (the kubelet restarted).");
	sample(r, "reregistrations_total", st->registrations ? st->registrations - 1 : 0);
	family(r, "registration_failures_total", "counter",
	       "Register attempts that failed (connect, timeout or an error status).");
	sample(r, "registration_failures_total", st->register_failures);
	family(r, "socket_recreations_total", "counter",
	       "Times our socket was deleted (kubelet restart) and served again.");
	sample(r, "socket_recreations_total", st->socket_recreations);
	family(r, "socket_conflict", "gauge",
	       "1 while another, foreign device plugin serves our DevicePlugin socket path (we "
	       "stand aside; see docs/operations.md).");
	sample(r, "socket_conflict",
	       registration_endpoint_state(reg) == REGISTRATION_ENDPOINT_FOREIGN);
	family(r, "socket_conflicts_total", "counter",
	       "Times a foreign device plugin was found serving our DevicePlugin socket path.");
	sample(r, "socket_conflicts_total", st->foreign_conflicts);
	family(r, "superseded", "gauge",
	       "1 once a newer instance of this plugin took over our DevicePlugin socket.");
	sample(r, "superseded",
	       registration_endpoint_state(reg) == REGISTRATION_ENDPOINT_SUPERSEDED);
}

static void render_plugin_watcher(struct http_response *r, const struct plugin_watcher *w)
{
	const struct plugin_watcher_stats *st = plugin_watcher_stats(w);

	family(r, "plugin_watcher_info_requests_total", "counter",
	       "GetInfo calls from the kubelet's plugin watcher.");
	sample(r, "plugin_watcher_info_requests_total", st->info_requests);
	family(r, "plugin_watcher_registrations_total", "counter",
	       "Registrations the kubelet reported through the plugin watcher.");
	sample(r, "plugin_watcher_registrations_total", st->registrations);
	family(r, "plugin_watcher_registration_failures_total", "counter",
	       "Failed registrations the kubelet reported through the plugin watcher.");
	sample(r, "plugin_watcher_registration_failures_total", st->registration_failures);
}

static void render_device_plugin(struct http_response *r, const struct device_plugin *plugin)
{
	const struct device_plugin_stats *st = device_plugin_stats(plugin);

	family(r, "allocations_total", "counter", "Container allocations answered with success.");
	sample(r, "allocations_total", st->allocations);
	family(r, "allocation_failures_total", "counter", "Allocate calls answered with an error.");
	sample(r, "allocation_failures_total", st->allocation_failures);
	family(r, "list_and_watch_streams_opened_total", "counter",
	       "ListAndWatch streams the kubelet opened.");
	sample(r, "list_and_watch_streams_opened_total", st->streams_opened);
	family(r, "list_and_watch_streams", "gauge", "ListAndWatch streams open now.");
	sample(r, "list_and_watch_streams", st->streams_open);
}

static void render_iommufd(struct http_response *r, const struct iommufd_opener *opener)
{
	const struct iommufd_stats *st = iommufd_opener_stats(opener);

	family(r, "rlimit_mode_outcomes_total", "counter",
	       "Opens of the iommufd device by outcome of IOMMU_OPTION_RLIMIT_MODE: set, "
	       "unsupported (ENOTTY/EOPNOTSUPP), no_capability (EPERM), failed, open_failed.");
	for (int o = 0; o < IOMMUFD_OUTCOME_COUNT; o++)
		labelled(r, "rlimit_mode_outcomes_total", "outcome", iommufd_outcome_name(o),
			 st->outcomes[o]);
}

static void render_handoff(struct http_response *r, const struct handoff *h)
{
	const struct handoff_stats *st = handoff_stats(h);

	family(r, "handoff_offers_total", "counter", "Handoff sockets created for allocations.");
	sample(r, "handoff_offers_total", st->offered);
	family(r, "handoffs_total", "counter",
	       "Ended handoff offers by outcome: consumed (fd taken and acknowledged), expired "
	       "(unclaimed after --handoff-ttl), replaced (the device was allocated again), "
	       "abandoned (no pod holds the device any more, per the PodResources API), "
	       "withdrawn (its Allocate failed before the kubelet was told).");
	labelled(r, "handoffs_total", "outcome", "consumed", st->consumed);
	labelled(r, "handoffs_total", "outcome", "expired", st->expired);
	labelled(r, "handoffs_total", "outcome", "replaced", st->replaced);
	labelled(r, "handoffs_total", "outcome", "abandoned", st->abandoned);
	labelled(r, "handoffs_total", "outcome", "withdrawn", st->withdrawn);
	family(r, "handoff_rescues_total", "counter",
	       "Sockets a dead instance left that were served again with a fresh iommufd "
	       "(outcome ok), or removed because that failed (outcome failed).");
	labelled(r, "handoff_rescues_total", "outcome", "ok", st->rescued);
	labelled(r, "handoff_rescues_total", "outcome", "failed", st->rescue_failures);
	family(r, "handoff_connections_failed_total", "counter",
	       "Consumer connections that did not consume the fd: peer_gone (hung up before "
	       "acknowledging), ack_timeout (no ACK within --ack-timeout), refused, unauthorized "
	       "(a uid not in --allowed-uids).");
	labelled(r, "handoff_connections_failed_total", "reason", "peer_gone", st->peer_gone);
	labelled(r, "handoff_connections_failed_total", "reason", "ack_timeout", st->ack_timeouts);
	labelled(r, "handoff_connections_failed_total", "reason", "refused", st->refused);
	labelled(r, "handoff_connections_failed_total", "reason", "unauthorized", st->unauthorized);
	family(r, "handoff_pending_sockets", "gauge",
	       "Handoff sockets waiting for their consumer now.");
	sample(r, "handoff_pending_sockets", handoff_pending(h));
}

/* Resident memory and open fds from /proc/self, CPU from getrusage: what the
 * DaemonSet's requests and limits are sized from. */
static void render_process(struct http_response *r, double start_time)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		http_response_append(
		    r, "# HELP process_cpu_seconds_total User and system CPU time "
		       "spent in seconds.\n# TYPE process_cpu_seconds_total counter\n");
		http_response_append(r, "process_cpu_seconds_total %.6f\n",
				     (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
					 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	}
	/* statm: size resident shared ... in pages (proc(5)). */
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char statm[128];
		ssize_t n = read(fd, statm, sizeof(statm) - 1);
		close(fd);
		if (n > 0) {
			char *end;
			statm[n] = '\0';
			(void)strtoull(statm, &end, 10);
			unsigned long long resident = strtoull(end, NULL, 10);
			http_response_append(
			    r,
			    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
			    "# TYPE process_resident_memory_bytes gauge\n"
			    "process_resident_memory_bytes %llu\n",
			    resident * (unsigned long long)sysconf(_SC_PAGESIZE));
		}
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		long n = -1; /* opendir's own fd is listed too */
		for (struct dirent *de; (de = readdir(d));)
			n += de->d_name[0] != '.';
		closedir(d);
		http_response_append(r,
				     "# HELP process_open_fds Number of open file descriptors.\n"
				     "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n",
				     n);
	}
	http_response_append(r,
			     "# HELP process_start_time_seconds Start time of the process since "
			     "unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n"
			     "process_start_time_seconds %.3f\n",
			     start_time);
}

void metrics_render(const struct metrics_sources *s, double start_time, struct http_response *r)
{
	family(r, "build_info", "gauge", "Always 1; the version is in the label.");
	http_response_append(r, PREFIX "build_info{version=\"%s\"} 1\n", PLUGIN_VERSION);
	family(r, "registered", "gauge",
	       "1 while registered with the kubelet (through any configured path), else 0.");
	sample(r, "registered", metrics_registered(s));
	if (s->registration)
		render_registration(r, s->registration);
	if (s->plugin_watcher)
		render_plugin_watcher(r, s->plugin_watcher);
	if (s->presence) {
		family(r, "device_present", "gauge", "1 while the iommufd device node exists.");
		sample(r, "device_present", device_presence_present(s->presence));
	}
	if (s->plugin)
		render_device_plugin(r, s->plugin);
	if (s->opener)
		render_iommufd(r, s->opener);
	if (s->handoff)
		render_handoff(r, s->handoff);
	if (s->pod_resources) {
		const struct pod_resources_stats *st = pod_resources_stats(s->pod_resources);
		family(r, "pod_resources_lists_total", "counter",
		       "PodResources List calls made while handoff sockets were pending.");
		sample(r, "pod_resources_lists_total", st->lists);
		family(r, "pod_resources_list_failures_total", "counter",
		       "PodResources List calls that failed or timed out (the TTL still applies).");
		sample(r, "pod_resources_list_failures_total", st->failures);
	}
	render_process(r, start_time);
}

static void metrics_handle(void *data, const struct http_request *request,
			   struct http_response *response)
{
	struct metrics *m = data;

	if (http_path_is(request, "/metrics")) {
		response->content_type = EXPOSITION_CONTENT_TYPE;
		metrics_render(&m->sources, m->start_time, response);
	} else if (http_path_is(request, "/healthz")) {
		/* Answered from the loop, so an answer also proves the loop is turning. */
		bool registered = metrics_registered(&m->sources);
		enum registration_endpoint endpoint =
		    m->sources.registration ? registration_endpoint_state(m->sources.registration)
					    : REGISTRATION_ENDPOINT_SERVING;
		response->status = registered ? 200 : 503;
		if (registered)
			http_response_append(response, "ok\n");
		else if (endpoint == REGISTRATION_ENDPOINT_FOREIGN)
			http_response_append(
			    response, "another device plugin serves our socket path (KubeVirt's "
				      "IOMMUFD feature gate?): not registered\n");
		else if (endpoint == REGISTRATION_ENDPOINT_SUPERSEDED)
			http_response_append(response,
					     "a newer instance took over: serving pending handoffs "
					     "only\n");
		else
			http_response_append(response, "not registered with the kubelet\n");
	} else if (http_path_is(request, "/livez")) {
		/* Alive while the loop turns, whoever has the socket path: a restart would not
		 * end a conflict with another plugin, and would cut a superseded instance's
		 * drain short. */
		http_response_append(response, "ok\n");
	} else {
		response->status = 404;
		http_response_append(response, "not found; try /metrics, /healthz or /livez\n");
	}
}

int metrics_new(struct loop *loop, const char *address, const struct metrics_sources *sources,
		struct metrics **out)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	struct timeval tv;

	m->sources = *sources;
	gettimeofday(&tv, NULL);
	m->start_time = (double)tv.tv_sec + tv.tv_usec / 1e6;
	int r = http_server_new(loop, address, metrics_handle, m, &m->server);
	if (r < 0) {
		free(m);
		return r;
	}
	log_info("serving /metrics and /healthz on %s", address);
	*out = m;
	return 0;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	http_server_free(m->server);
	free(m);
}
