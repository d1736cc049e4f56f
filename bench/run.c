/* One run, step by step (docs/performance.md, "What it does"): exec -> Register,
 * kubelet restarts, Allocate + handoff cycles (CPU, latency, memory), optionally under
 * strace, RSS growth over cancelled streams and closed connections, idle, then
 * Allocates with the device missing on a second plugin. */
#include "run.h"

#include "calls.h"
#include "fake_kubelet.h"
#include "receiver.h"
#include "strace_parse.h"
#include "supervise.h"

#include "loop/loop.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#define KUBELET_SOCKET "kubelet.sock"
/* nghttp2's rapid-reset guard (CVE-2023-44487) drops a connection after a burst of
 * 1000 RST_STREAMs: a fresh connection every STREAMS_PER_CONNECTION. */
#define STREAMS_PER_CONNECTION 500
#define SOCKET_PATH_SIZE       sizeof(((struct sockaddr_un *)0)->sun_path)

/* The state of one run. */
struct session {
	struct bench *b;
	struct fake_kubelet kubelet;
	struct plugin plugin;
	struct h2c *client;	 /* the kubelet's connection to the plugin */
	struct h2c_stream watch; /* its ListAndWatch */
	char *plugin_socket;
	double *latencies, *handoff_latencies;
	size_t latency_count, handoff_count;
	char (*paths)[SOCKET_PATH_SIZE]; /* one batch's handoff sockets */
};

static int min_int(int a, int b)
{
	return a < b ? a : b;
}

static void session_connect(struct session *s)
{
	free(s->plugin_socket);
	s->plugin_socket = xasprintf("%s/%s", s->kubelet.dir, s->kubelet.endpoint);
	s->client = call_connect(s->b, s->plugin_socket);
	call_list_and_watch(s->b, s->client, &s->watch);
}

static void session_disconnect(struct session *s)
{
	h2c_free(s->client);
	s->client = NULL;
	h2c_stream_reset(&s->watch);
}

/* count Allocates of distinct devices, then count handoffs, each batch timed by the
 * plugin's CPU; with trace_dir, under strace and not recorded. */
static void cycle_batch(struct session *s, int count, unsigned long long *cpu_allocate,
			unsigned long long *cpu_handoff, const char *trace_dir)
{
	struct bench *b = s->b;
	struct tracer tracer;
	char id[32];

	plugin_wait_idle(b, &s->plugin);
	if (trace_dir) {
		cleanup_free char *out = xasprintf("%s/strace-allocate.txt", trace_dir);
		tracer_start(b, &tracer, s->plugin.pid, out);
	}
	unsigned long long c0 = plugin_cpu(b, &s->plugin);
	for (int i = 0; i < count; i++) {
		snprintf(id, sizeof(id), "iommufd%d", i);
		unsigned long long t =
		    call_allocate(b, s->client, id, s->paths[i], sizeof(s->paths[i]));
		if (!s->paths[i][0])
			bench_die(b, "Allocate %s mounted no handoff socket", id);
		if (!trace_dir)
			s->latencies[s->latency_count++] = (double)t;
	}
	plugin_wait_idle(b, &s->plugin);
	unsigned long long c1 = plugin_cpu(b, &s->plugin);
	if (trace_dir) {
		tracer_finish(b, &tracer, "Allocate", count);
		plugin_wait_idle(b, &s->plugin);
		cleanup_free char *out = xasprintf("%s/strace-handoff.txt", trace_dir);
		tracer_start(b, &tracer, s->plugin.pid, out);
		c1 = plugin_cpu(b, &s->plugin);
	}
	for (int i = 0; i < count; i++) {
		unsigned long long t = receiver_handoff(b, s->paths[i]);
		if (!trace_dir)
			s->handoff_latencies[s->handoff_count++] = (double)t;
	}
	plugin_wait_idle(b, &s->plugin);
	unsigned long long c2 = plugin_cpu(b, &s->plugin);
	if (trace_dir)
		tracer_finish(b, &tracer, "handoff", count);
	*cpu_allocate += c1 - c0;
	*cpu_handoff += c2 - c1;
}

/* rss, then RssAnon, VmHWM, threads and fds at the figure ids that follow it. */
static void record_sample(struct bench *b, const struct proc_sample *p, int rss)
{
	figure_add(&b->figures, rss, (double)p->rss_kb);
	figure_add(&b->figures, rss + 1, (double)p->rss_anon_kb);
	figure_add(&b->figures, rss + 2, (double)p->hwm_kb);
	figure_add(&b->figures, rss + 3, (double)p->threads);
	figure_add(&b->figures, rss + 4, (double)p->fds);
}

/* Warns when the plugin's open fds moved over a series that should leave none. */
static void check_fds(const struct proc_sample *before, const struct proc_sample *after, int count,
		      const char *what)
{
	if (after->fds != before->fds)
		fprintf(stderr,
			"plugin-bench: warning: open fds went from %llu to %llu over %d %s\n",
			before->fds, after->fds, count, what);
}

/* Cancelled ListAndWatch streams on the kubelet's connection, then whole connections
 * that each open a stream and close: RSS growth per stream and per connection. */
static void measure_growth(struct session *s)
{
	struct bench *b = s->b;
	const struct bench_options *o = &b->options;
	struct proc_sample before = {0}, after = {0};
	int warmup = o->streams / 2 > 50 ? o->streams / 2 : 50;
	struct h2c *c = NULL;

	for (int i = 0; i < warmup + o->streams; i++) {
		if (i % STREAMS_PER_CONNECTION == 0) {
			h2c_free(c);
			c = call_connect(b, s->plugin_socket);
		}
		if (i == warmup) {
			call_round_trip(b, c);
			plugin_wait_idle(b, &s->plugin);
			plugin_sample(b, &s->plugin, &before);
		}
		struct h2c_stream st = {0};
		call_list_and_watch(b, c, &st);
		if (h2c_cancel(c, &st) < 0)
			bench_die(b, "cancelling ListAndWatch: %s", h2c_error(c));
		h2c_stream_reset(&st);
	}
	call_round_trip(b, c);
	plugin_wait_idle(b, &s->plugin);
	plugin_sample(b, &s->plugin, &after);
	h2c_free(c); /* after the sample: its fd was open at the first one too */
	check_fds(&before, &after, o->streams, "cancelled streams");
	figure_add(&b->figures, F_STREAM_GROWTH,
		   ((double)after.rss_kb - (double)before.rss_kb) * 1024.0 / o->streams);

	warmup = o->connections / 2 > 50 ? o->connections / 2 : 50;
	for (int i = 0; i < warmup + o->connections; i++) {
		if (i == warmup) {
			plugin_wait_idle(b, &s->plugin);
			plugin_sample(b, &s->plugin, &before);
		}
		c = call_connect(b, s->plugin_socket);
		struct h2c_stream st = {0};
		call_list_and_watch(b, c, &st);
		h2c_free(c);
		h2c_stream_reset(&st);
	}
	call_round_trip(b, s->client);
	plugin_wait_idle(b, &s->plugin);
	plugin_sample(b, &s->plugin, &after);
	check_fds(&before, &after, o->connections, "closed connections");
	figure_add(&b->figures, F_CONNECTION_GROWTH,
		   ((double)after.rss_kb - (double)before.rss_kb) * 1024.0 / o->connections);
}

/* Allocates while the device is missing (--missing-device=allow): the answer mounts
 * nothing, no fd is opened. A second plugin instance with its own directories and no
 * kubelet.sock: we talk to its socket directly. */
static void measure_missing_device(struct bench *b, const char *dir)
{
	const struct bench_options *o = &b->options;
	struct plugin p = {0};
	char host_path[SOCKET_PATH_SIZE], id[32];

	p.kubelet_dir = xasprintf("%s/kubelet-missing", dir);
	p.socket_dir = xasprintf("%s/sockets-missing", dir);
	p.log_path = xasprintf("%s/plugin-missing.log", dir);
	cleanup_free char *device = xasprintf("%s/no-iommu", dir);
	cleanup_free char *socket = xasprintf("%s/kubevirt-iommufd-0.sock", p.kubelet_dir);
	plugin_spawn(b, &p, device);

	struct h2c *c = NULL;
	for (int waited = 0; !c; waited++) {
		if (waited == BENCH_WAIT_MS)
			bench_die(b, "the plugin did not serve %s within %d ms", socket,
				  BENCH_WAIT_MS);
		if (h2c_connect(socket, BENCH_WAIT_MS, &c) < 0) {
			c = NULL;
			bench_sleep_ms(1);
		}
	}
	struct h2c_stream watch = {0};
	call_list_and_watch(b, c, &watch);
	unsigned long long cpu = 0;
	int done = 0;
	while (done < o->missing_allocations) {
		int count = min_int(o->batch, o->missing_allocations - done);
		plugin_wait_idle(b, &p);
		unsigned long long c0 = plugin_cpu(b, &p);
		for (int i = 0; i < count; i++) {
			snprintf(id, sizeof(id), "iommufd%d", i);
			call_allocate(b, c, id, host_path, sizeof(host_path));
			if (host_path[0])
				bench_die(b, "Allocate with the device missing mounted %s",
					  host_path);
		}
		plugin_wait_idle(b, &p);
		cpu += plugin_cpu(b, &p) - c0;
		done += count;
	}
	figure_add(&b->figures, F_CPU_ALLOCATE_MISSING, (double)cpu / done);
	h2c_free(c);
	h2c_stream_reset(&watch);
	plugin_stop(b, &p);
	free(p.kubelet_dir);
	free(p.socket_dir);
	free(p.log_path);
}

/* The Allocate + handoff cycles in batches of distinct devices: CPU per call, the
 * kernel's share of it, the client's latencies, memory after. */
static void measure_cycles(struct session *s)
{
	struct bench *b = s->b;
	const struct bench_options *o = &b->options;
	struct figures *f = &b->figures;
	unsigned long long cpu_allocate = 0, cpu_handoff = 0;
	struct proc_sample start, end;

	plugin_sample(b, &s->plugin, &start);
	for (int done = 0; done < o->cycles;) {
		int count = min_int(o->batch, o->cycles - done);
		cycle_batch(s, count, &cpu_allocate, &cpu_handoff, NULL);
		done += count;
	}
	figure_add(f, F_CPU_ALLOCATE, (double)cpu_allocate / o->cycles);
	figure_add(f, F_CPU_HANDOFF, (double)cpu_handoff / o->cycles);
	plugin_sample(b, &s->plugin, &end);
	unsigned long long user = end.utime - start.utime;
	unsigned long long kernel = end.stime - start.stime;
	/* Clock ticks: a short run may not see one (NAN prints as n/a). */
	figure_add(f, F_KERNEL_SHARE,
		   user + kernel > 0 ? 100.0 * (double)kernel / (double)(user + kernel) : NAN);
	qsort(s->latencies, s->latency_count, sizeof(double), compare_double);
	figure_add(f, F_LATENCY_P50, percentile(s->latencies, s->latency_count, 50));
	figure_add(f, F_LATENCY_P99, percentile(s->latencies, s->latency_count, 99));
	figure_add(f, F_LATENCY_MAX, s->latencies[s->latency_count - 1]);
	qsort(s->handoff_latencies, s->handoff_count, sizeof(double), compare_double);
	figure_add(f, F_HANDOFF_P50, percentile(s->handoff_latencies, s->handoff_count, 50));
	plugin_wait_idle(b, &s->plugin);
	plugin_sample(b, &s->plugin, &end);
	record_sample(b, &end, F_RSS_CYCLES);
}

void run_once(struct bench *b, int run, const char *dir)
{
	const struct bench_options *o = &b->options;
	struct session s = {.b = b, .kubelet.bench = b};
	struct proc_sample sample;

	s.kubelet.dir = xasprintf("%s/kubelet", dir);
	s.kubelet.socket_path = xasprintf("%s/%s", s.kubelet.dir, KUBELET_SOCKET);
	s.plugin.kubelet_dir = s.kubelet.dir;
	s.plugin.socket_dir = xasprintf("%s/sockets", dir);
	s.plugin.log_path = xasprintf("%s/plugin.log", dir);
	if (mkdir(s.kubelet.dir, 0755) < 0)
		bench_die(b, "cannot create %s: %s", s.kubelet.dir, strerror(errno));
	int r = loop_new(&s.kubelet.loop);
	if (r < 0)
		bench_die(b, "cannot create an event loop: %s", strerror(-r));
	s.latencies = xcalloc((size_t)o->cycles, sizeof(double));
	s.handoff_latencies = xcalloc((size_t)o->cycles, sizeof(double));
	s.paths = xcalloc((size_t)o->batch, sizeof(*s.paths));

	/* exec -> Register, --starts times (each plugin but the last stopped with SIGTERM):
	 * the kubelet is already up, as on a node. */
	fake_kubelet_start(&s.kubelet);
	for (int i = 0; i < o->starts; i++) {
		if (i)
			plugin_stop(b, &s.plugin);
		plugin_spawn(b, &s.plugin, o->device);
		fake_kubelet_wait_register(&s.kubelet, s.kubelet.registrations + 1);
		figure_add(&b->figures, F_EXEC_REGISTER,
			   (double)(s.kubelet.last_register_ns - *b->exec_stamp));
	}
	session_connect(&s);
	plugin_wait_idle(b, &s.plugin);
	plugin_sample(b, &s.plugin, &sample);
	record_sample(b, &sample, F_RSS_REGISTER);

	/* Kubelet restarts: its connections die, it removes every socket in its
	 * directory, then binds kubelet.sock again. */
	for (int i = 0; i < o->restarts; i++) {
		session_disconnect(&s);
		fake_kubelet_stop(&s.kubelet);
		fake_kubelet_remove_sockets(&s.kubelet);
		unsigned long long t0 = fake_kubelet_start(&s.kubelet);
		fake_kubelet_wait_register(&s.kubelet, s.kubelet.registrations + 1);
		figure_add(&b->figures, F_RESTART_REGISTER,
			   (double)(s.kubelet.last_register_ns - t0));
		session_connect(&s);
		plugin_wait_idle(b, &s.plugin);
	}

	measure_cycles(&s);
	if (o->strace && run == 0) {
		unsigned long long ignored = 0;
		cycle_batch(&s, o->batch, &ignored, &ignored, dir);
	}
	measure_growth(&s);

	/* Idle with the kubelet's ListAndWatch stream open. */
	struct proc_sample before, after;
	plugin_wait_idle(b, &s.plugin);
	plugin_sample(b, &s.plugin, &before);
	bench_sleep_ms(o->idle_ms);
	plugin_sample(b, &s.plugin, &after);
	figure_add(&b->figures, F_IDLE_SWITCHES,
		   (double)(after.voluntary + after.nonvoluntary - before.voluntary -
			    before.nonvoluntary));
	figure_add(&b->figures, F_IDLE_CPU, (double)(after.cpu_ns - before.cpu_ns));

	session_disconnect(&s);
	plugin_stop(b, &s.plugin);
	fake_kubelet_stop(&s.kubelet);
	loop_free(s.kubelet.loop);

	measure_missing_device(b, dir);

	free(s.plugin_socket);
	free(s.kubelet.dir);
	free(s.kubelet.socket_path);
	free(s.plugin.socket_dir);
	free(s.plugin.log_path);
	free(s.latencies);
	free(s.handoff_latencies);
	free(s.paths);
}
