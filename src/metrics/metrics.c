/* The registry of metrics sources, the exposition format they write in, and the HTTP
 * handler for /metrics, /healthz and /livez. Metric names follow the Prometheus naming
 * guide: a prefix per program, _total for counters, base units (bytes, seconds),
 * labels for outcomes of one event. */
#include "metrics.h"
#include "../log.h"
#include "../util.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#define PREFIX "iommufd_device_plugin_"
/* The content type of the text format, version 0.0.4 (Prometheus exposition formats). */
#define EXPOSITION_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_source {
	metrics_source_fn fn;
	const void *data;
};

struct metrics {
	struct metrics_source *sources;
	size_t source_count;
	metrics_readiness_fn readiness;
	const void *readiness_data;
	struct http_server *server;
	double start_time;
};

struct metrics_writer {
	struct http_response *response;
	const char *prefix; /* PREFIX, or "" for the process_* families */
	const char *family; /* the current family's name without prefix; NULL before one */
};

/* Appends s with each of the characters in special as a backslash escape: the text
 * format escapes \ and line feed in HELP, and also " in label values. */
static void append_escaped(struct http_response *r, const char *s, const char *special)
{
	for (;;) {
		size_t n = strcspn(s, special);
		http_response_append(r, "%.*s", (int)n, s);
		if (!s[n])
			return;
		http_response_append(r, "\\%c", s[n] == '\n' ? 'n' : s[n]);
		s += n + 1;
	}
}

static bool ends_with_total(const char *name)
{
	size_t n = strlen(name);
	return n >= 6 && strcmp(name + n - 6, "_total") == 0;
}

static void family_start(struct metrics_writer *w, const char *prefix, const char *name,
			 enum metrics_type type, const char *help)
{
	/* The naming guide's rule, which scrapers and people rely on. */
	static const char *const types[] = {
	    [METRICS_COUNTER] = "counter",
	    [METRICS_GAUGE] = "gauge",
	    [METRICS_HISTOGRAM] = "histogram",
	};
	assert(ends_with_total(name) == (type == METRICS_COUNTER));
	w->prefix = prefix;
	w->family = name;
	http_response_append(w->response, "# HELP %s%s ", prefix, name);
	append_escaped(w->response, help, "\\\n");
	http_response_append(w->response, "\n# TYPE %s%s %s\n", prefix, name, types[type]);
}

void metrics_family(struct metrics_writer *w, const char *name, enum metrics_type type,
		    const char *help)
{
	family_start(w, PREFIX, name, type, help);
}

void metrics_sample(struct metrics_writer *w, unsigned long long value)
{
	assert(w->family);
	http_response_append(w->response, "%s%s %llu\n", w->prefix, w->family, value);
}

void metrics_counter(struct metrics_writer *w, const char *name, const char *help,
		     unsigned long long value)
{
	metrics_family(w, name, METRICS_COUNTER, help);
	metrics_sample(w, value);
}

void metrics_gauge(struct metrics_writer *w, const char *name, const char *help,
		   unsigned long long value)
{
	metrics_family(w, name, METRICS_GAUGE, help);
	metrics_sample(w, value);
}

void metrics_sample_labelled(struct metrics_writer *w, const char *label, const char *label_value,
			     unsigned long long value)
{
	assert(w->family);
	http_response_append(w->response, "%s%s{%s=\"", w->prefix, w->family, label);
	append_escaped(w->response, label_value, "\\\"\n");
	http_response_append(w->response, "\"} %llu\n", value);
}

/* A sample with a fractional value (seconds), printed with decimals digits. */
static void sample_fraction(struct metrics_writer *w, int decimals, double value)
{
	assert(w->family);
	http_response_append(w->response, "%s%s %.*f\n", w->prefix, w->family, decimals, value);
}

void metrics_histogram_observe(struct metrics_histogram *h, const double *bounds, size_t n,
			       double value)
{
	size_t i = 0;

	assert(n <= METRICS_HISTOGRAM_MAX_BUCKETS);
	while (i < n && value > bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += value;
}

void metrics_histogram(struct metrics_writer *w, const char *name, const char *help,
		       const struct metrics_histogram *h, const double *bounds, size_t n)
{
	unsigned long long cumulative = 0;

	assert(n <= METRICS_HISTOGRAM_MAX_BUCKETS);
	metrics_family(w, name, METRICS_HISTOGRAM, help);
	for (size_t i = 0; i <= n; i++) {
		cumulative += h->counts[i];
		if (i < n)
			http_response_append(w->response, "%s%s_bucket{le=\"%g\"} %llu\n",
					     w->prefix, name, bounds[i], cumulative);
		else
			http_response_append(w->response, "%s%s_bucket{le=\"+Inf\"} %llu\n",
					     w->prefix, name, cumulative);
	}
	http_response_append(w->response, "%s%s_sum %.6f\n%s%s_count %llu\n", w->prefix, name,
			     h->sum, w->prefix, name, h->count);
}

/* Resident memory and open fds from /proc/self, CPU from getrusage: what the
 * DaemonSet's requests and limits are sized from. Names and help as the Prometheus
 * client libraries' process collector has them, so dashboards find them. */
static void write_process(struct metrics_writer *w, double start_time)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		family_start(w, "", "process_cpu_seconds_total", METRICS_COUNTER,
			     "User and system CPU time spent in seconds.");
		sample_fraction(w, 6,
				(double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
				    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	}
	/* statm: size resident shared ... in pages (proc(5)). */
	int fd = openat(AT_FDCWD, "/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char statm[128];
		ssize_t n = read(fd, statm, sizeof(statm) - 1);
		close(fd);
		if (n > 0) {
			char *end;
			statm[n] = '\0';
			(void)strtoull(statm, &end, 10);
			unsigned long long resident = strtoull(end, NULL, 10);
			family_start(w, "", "process_resident_memory_bytes", METRICS_GAUGE,
				     "Resident memory size in bytes.");
			metrics_sample(w, resident * (unsigned long long)sysconf(_SC_PAGESIZE));
		}
	}
	cleanup_closedir DIR *d = opendir("/proc/self/fd");
	if (d) {
		unsigned long long n = 0;
		for (struct dirent *de; (de = readdir(d));)
			n += de->d_name[0] != '.';
		family_start(w, "", "process_open_fds", METRICS_GAUGE,
			     "Number of open file descriptors.");
		metrics_sample(w, n ? n - 1 : 0); /* opendir's own fd is listed too */
	}
	/* The soft limit: the one EMFILE comes from (setrlimit(2)). */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
		family_start(w, "", "process_max_fds", METRICS_GAUGE,
			     "Maximum number of open file descriptors.");
		metrics_sample(w, nofile.rlim_cur == RLIM_INFINITY
				      ? ULLONG_MAX
				      : (unsigned long long)nofile.rlim_cur);
	}
	family_start(w, "", "process_start_time_seconds", METRICS_GAUGE,
		     "Start time of the process since unix epoch in seconds.");
	sample_fraction(w, 3, start_time);
}

void metrics_render(const struct metrics *m, struct http_response *response)
{
	struct metrics_writer w = {.response = response};

	metrics_family(&w, "build_info", METRICS_GAUGE, "Always 1; the version is in the label.");
	metrics_sample_labelled(&w, "version", PLUGIN_VERSION, 1);
	for (size_t i = 0; i < m->source_count; i++)
		m->sources[i].fn(&w, m->sources[i].data);
	write_process(&w, m->start_time);
}

static void metrics_handle(void *data, const struct http_request *request,
			   struct http_response *response)
{
	struct metrics *m = data;

	if (http_path_is(request, "/metrics")) {
		response->content_type = EXPOSITION_CONTENT_TYPE;
		metrics_render(m, response);
	} else if (http_path_is(request, "/healthz")) {
		/* Answered from the loop, so an answer also proves the loop is turning. */
		const char *reason = m->readiness ? m->readiness(m->readiness_data) : NULL;
		response->status = reason ? 503 : 200;
		http_response_append(response, "%s\n", reason ? reason : "ok");
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

struct metrics *metrics_new(void)
{
	struct metrics *m = xcalloc(1, sizeof(*m));
	struct timespec ts;

	/* CLOCK_REALTIME cannot fail with a valid pointer; 0 would be the fallback. */
	if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
		m->start_time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	return m;
}

void metrics_add_source(struct metrics *m, metrics_source_fn fn, const void *data)
{
	m->sources = xrealloc(m->sources, (m->source_count + 1) * sizeof(*m->sources));
	m->sources[m->source_count++] = (struct metrics_source){.fn = fn, .data = data};
}

void metrics_set_readiness(struct metrics *m, metrics_readiness_fn fn, const void *data)
{
	m->readiness = fn;
	m->readiness_data = data;
}

int metrics_serve(struct metrics *m, struct loop *loop, const char *address)
{
	int r = http_server_new(loop, address, metrics_handle, m, &m->server);
	if (r < 0)
		return r;
	log_info("serving /metrics, /healthz and /livez on %s", address);
	return 0;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	http_server_free(m->server);
	free(m->sources);
	free(m);
}
