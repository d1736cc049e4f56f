/* plugin-bench: runs the real plugin binary against a fake kubelet in a private
 * directory and prints one table of its costs (median and spread over several runs)
 * next to the goals and the Go plugin's figures; docs/performance.md explains them.
 * --smoke is the test suite's short run: it checks the table is complete, never times. */
#include "figures.h"
#include "h2client.h"
#include "procinfo.h"

#include "basic/unix_socket.h"
#include "grpc/server.h"
#include "loop/loop.h"

#include "deviceplugin.pb-c.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <linux/magic.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RESOURCE_NAME	       "devices.kubevirt.io/iommufd"
#define WAIT_MS		       5000
#define KUBELET_SOCKET	       "kubelet.sock"
#define STREAMS_PER_CONNECTION 500
#define ARRAY_LEN(a)	       (sizeof(a) / sizeof((a)[0]))

struct options {
	const char *plugin;
	const char *size_binary; /* the binary whose stripped size is reported */
	const char *tmpdir;
	const char *device;
	int runs;
	int cycles;
	int batch;
	int devices;
	int restarts;
	int idle_ms;
	int streams;
	int connections;
	int missing_allocations;
	bool smoke;
	bool strace;
	bool keep;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static char *temp_root; /* removed at exit unless --keep or a failure */
static bool keep_temp;
/* Processes we started and have not reaped: killed if we die. */
static volatile pid_t children[4];

static void child_started(pid_t pid)
{
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
		if (!children[i]) {
			children[i] = pid;
			return;
		}
	}
	abort();
}

static void child_reaped(pid_t pid)
{
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++)
		if (children[i] == pid)
			children[i] = 0;
}

/* Async-signal-safe: also the SIGINT/SIGTERM handler's work. */
static void kill_children(void)
{
	for (size_t i = 0; i < sizeof(children) / sizeof(children[0]); i++) {
		if (children[i] > 0) {
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

static void on_signal(int sig)
{
	kill_children();
	if (temp_root) { /* removing it is not async-signal-safe: say where it is */
		static const char msg[] = "plugin-bench: interrupted; left ";
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)!write(STDERR_FILENO, temp_root, strlen(temp_root));
		(void)!write(STDERR_FILENO, "\n", 1);
	}
	_exit(128 + sig);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		fprintf(stderr, "plugin-bench: cannot remove %s: %s\n", path, strerror(errno));
	return 0;
}

static void remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("plugin-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	kill_children();
	if (temp_root)
		fprintf(stderr, "plugin-bench: kept %s (the plugin's log is plugin.log there)\n",
			temp_root);
	exit(1);
}

static char *xasprintf_bench(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf_bench(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- the fake kubelet: Registration served with the plugin's own gRPC server ---- */

struct kubelet {
	struct loop *loop;
	struct grpc_server *server;
	char *dir;
	char *socket_path;
	unsigned registrations;
	unsigned long long last_register_ns;
	char endpoint[128];
	bool bad_request;
};

static void kubelet_register(void *data, struct grpc_call *call, const ProtobufCMessage *message)
{
	const V1beta1__RegisterRequest *request = (const V1beta1__RegisterRequest *)message;
	struct kubelet *k = data;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	unsigned long long now = bench_now_ns();

	if (strcmp(request->version, "v1beta1") != 0 ||
	    strcmp(request->resource_name, RESOURCE_NAME) != 0 ||
	    strlen(request->endpoint) >= sizeof(k->endpoint)) {
		k->bad_request = true;
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "unexpected RegisterRequest");
		return;
	}
	strcpy(k->endpoint, request->endpoint);
	k->last_register_ns = now;
	k->registrations++;
	grpc_call_send(call, &empty.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const struct grpc_method kubelet_methods[] = {
    {"/v1beta1.Registration/Register", &v1beta1__register_request__descriptor, kubelet_register,
     NULL},
};

/* Starts serving kubelet.sock; returns the time the socket was about to be bound. */
static unsigned long long kubelet_start(struct kubelet *k)
{
	k->server = grpc_server_new(k->loop, kubelet_methods, 1, k);
	unsigned long long t = bench_now_ns();
	int r = grpc_server_listen(k->server, k->socket_path, false, NULL, NULL);
	if (r < 0)
		die("fake kubelet cannot listen on %s: %s", k->socket_path, strerror(-r));
	return t;
}

static void kubelet_stop(struct kubelet *k)
{
	grpc_server_free(k->server);
	k->server = NULL;
	loop_run_once(k->loop, 0); /* deferred frees */
}

/* A starting kubelet removes every socket in its directory, the plugin's too. */
static void kubelet_remove_sockets(struct kubelet *k)
{
	DIR *d = opendir(k->dir);
	if (!d)
		die("cannot list %s: %s", k->dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISSOCK(st.st_mode) && unlinkat(dirfd(d), de->d_name, 0) < 0)
			die("cannot remove %s/%s: %s", k->dir, de->d_name, strerror(errno));
	}
	closedir(d);
}

static void kubelet_wait_register(struct kubelet *k, unsigned count)
{
	unsigned long long deadline = bench_now_ns() + WAIT_MS * 1000000ULL;

	while (k->registrations < count && !k->bad_request) {
		unsigned long long now = bench_now_ns();
		if (now >= deadline)
			die("the plugin did not register within %d ms", WAIT_MS);
		int r = loop_run_once(k->loop, (int)((deadline - now) / 1000000ULL) + 1);
		if (r < 0)
			die("fake kubelet event loop: %s", strerror(-r));
	}
	if (k->bad_request)
		die("the plugin sent an unexpected RegisterRequest");
}

/* ---- the plugin process ---- */

static unsigned long long *exec_stamp; /* shared page: the child's time just before execve */

struct plugin {
	pid_t pid;
	unsigned long long exec_ns;
	char *kubelet_dir, *socket_dir, *log_path;
};

static void plugin_spawn(const struct options *o, struct plugin *p, const char *device)
{
	char devices[16];

	snprintf(devices, sizeof(devices), "%d", o->devices);
	char *argv[] = {(char *)o->plugin, "--kubelet-dir", p->kubelet_dir, "--socket-dir",
			p->socket_dir, "--iommu-device", (char *)device, "--devices", devices,
			/* /dev/null has no IOMMU_OPTION: measure the plugin's own work, not the
			 * refusal that --rlimit-mode=required would answer. */
			"--rlimit-mode", "best-effort", "-v", "0", NULL};
	/* No IOMMUFD_DP_* from our environment: only the sanitizers' settings pass. */
	char *envp[8];
	size_t envc = 0;
	for (char **e = environ; *e && envc < ARRAY_LEN(envp) - 1; e++)
		if (!strncmp(*e, "ASAN_", 5) || !strncmp(*e, "UBSAN_", 6) ||
		    !strncmp(*e, "LSAN_", 5))
			envp[envc++] = *e;
	envp[envc] = NULL;

	int log = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log < 0)
		die("cannot create %s: %s", p->log_path, strerror(errno));
	fflush(NULL);
	p->pid = fork();
	if (p->pid < 0)
		die("fork: %s", strerror(errno));
	if (p->pid == 0) {
		int null = open("/dev/null", O_RDONLY);
		if (null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
			_exit(126);
		if (null > 2)
			close(null);
		*exec_stamp = bench_now_ns();
		execve(o->plugin, argv, envp);
		dprintf(2, "plugin-bench: cannot execute %s: %s\n", o->plugin, strerror(errno));
		_exit(127);
	}
	close(log);
	child_started(p->pid);
	/* The child wrote the stamp before execve, which returned to us only after it. */
	int status;
	if (waitpid(p->pid, &status, WNOHANG) == p->pid)
		die("the plugin exited at once (status 0x%x); see %s", status, p->log_path);
}

/* SIGTERM, then the exit status within 5 s (SIGKILL after). */
static void plugin_stop(struct plugin *p)
{
	int status = 0;

	if (kill(p->pid, SIGTERM) < 0)
		die("cannot signal the plugin (pid %d): %s", (int)p->pid, strerror(errno));
	for (int waited = 0;; waited++) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid) {
			child_reaped(p->pid);
			break;
		}
		if (r < 0)
			die("waitpid %d: %s", (int)p->pid, strerror(errno));
		if (waited == 5000)
			die("the plugin did not exit within 5 s of SIGTERM");
		sleep_ms(1);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("the plugin exited with status 0x%x after SIGTERM; see %s", status,
		    p->log_path);
	p->pid = 0;
}

static void plugin_wait_idle(const struct plugin *p)
{
	int r = proc_wait_idle(p->pid, WAIT_MS);
	if (r < 0)
		die("the plugin (pid %d) did not go idle: %s", (int)p->pid, strerror(-r));
}

static void plugin_sample(const struct plugin *p, struct proc_sample *s)
{
	int r = proc_sample(p->pid, s);
	if (r < 0)
		die("cannot read /proc/%d: %s", (int)p->pid, strerror(-r));
}

static unsigned long long plugin_cpu(const struct plugin *p)
{
	unsigned long long ns;
	int r = proc_cpu_ns(p->pid, &ns);
	if (r < 0)
		die("cannot read /proc/%d/schedstat: %s", (int)p->pid, strerror(-r));
	return ns;
}

/* ---- the kubelet's calls to the plugin ---- */

static struct h2c *plugin_connect(const char *path)
{
	struct h2c *c;
	int r = h2c_connect(path, WAIT_MS, &c);
	if (r < 0)
		die("cannot connect to the plugin on %s: %s", path, strerror(-r));
	return c;
}

/* Opens ListAndWatch on c and waits for the device list. */
static void list_and_watch(struct h2c *c, struct h2c_stream *s, int devices)
{
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;

	if (h2c_start(c, s, "/v1beta1.DevicePlugin/ListAndWatch", &empty.base) < 0 ||
	    h2c_wait_messages(c, s, 1) < 0)
		die("ListAndWatch: %s", h2c_error(c));
	if (s->messages < 1)
		die("ListAndWatch ended without a device list (status %d)", s->status);
	V1beta1__ListAndWatchResponse *response =
	    v1beta1__list_and_watch_response__unpack(NULL, s->msg_len, s->msg);
	if (!response || response->n_devices != (size_t)devices)
		die("ListAndWatch: expected %d devices, got %zu", devices,
		    response ? response->n_devices : 0);
	v1beta1__list_and_watch_response__free_unpacked(response, NULL);
}

/* One unary call that forces the plugin to have processed everything sent before. */
static void round_trip(struct h2c *c)
{
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	struct h2c_stream s = {0};

	if (h2c_start(c, &s, "/v1beta1.DevicePlugin/GetDevicePluginOptions", &empty.base) < 0 ||
	    h2c_wait_closed(c, &s) < 0)
		die("GetDevicePluginOptions: %s", h2c_error(c));
	if (s.status != 0)
		die("GetDevicePluginOptions: status %d", s.status);
	h2c_stream_reset(&s);
}

/* Allocate for one container holding device_id, as the kubelet sends it. Copies the
 * handoff socket's host path into host_path ("" if the answer mounts nothing). */
static unsigned long long allocate(struct h2c *c, const char *device_id, char *host_path,
				   size_t size)
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
		die("Allocate %s: %s", device_id, h2c_error(c));
	unsigned long long latency = s.closed_ns - t0;
	if (s.status != 0 || s.messages != 1)
		die("Allocate %s: status %d, %zu messages", device_id, s.status, s.messages);
	V1beta1__AllocateResponse *response =
	    v1beta1__allocate_response__unpack(NULL, s.msg_len, s.msg);
	if (!response || response->n_container_responses != 1)
		die("Allocate %s: undecodable or wrong-sized AllocateResponse", device_id);
	V1beta1__ContainerAllocateResponse *cr = response->container_responses[0];
	host_path[0] = '\0';
	if (cr->n_mounts == 1 && strlen(cr->mounts[0]->host_path) < size)
		strcpy(host_path, cr->mounts[0]->host_path);
	else if (cr->n_mounts != 0)
		die("Allocate %s: unexpected mounts in the answer", device_id);
	v1beta1__allocate_response__free_unpacked(response, NULL);
	h2c_stream_reset(&s);
	return latency;
}

/* The consumer's side of the handoff (docs/protocol.md): connect, receive one 0x00
 * byte with one fd, ACK with one byte, then wait for the plugin to close. Returns the
 * time from connect to that close. */
static unsigned long long handoff(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	char byte = 1;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};

	if (unix_address(&addr, path) < 0)
		die("handoff socket path too long: %s", path);
	unsigned long long t0 = bench_now_ns();
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		die("cannot connect to the handoff socket %s: %s", path, strerror(errno));
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	if (poll(&pfd, 1, WAIT_MS) != 1)
		die("no fd offered on %s within %d ms", path, WAIT_MS);
	ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
	if (n != 1 || byte != 0)
		die("handoff on %s: expected one 0x00 byte, got %zd bytes", path, n);
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS ||
	    cmsg->cmsg_len != CMSG_LEN(sizeof(int)))
		die("handoff on %s: no single fd in SCM_RIGHTS", path);
	int received;
	memcpy(&received, CMSG_DATA(cmsg), sizeof(int));
	close(received);
	if (send(fd, "", 1, MSG_NOSIGNAL) != 1)
		die("cannot ACK on %s: %s", path, strerror(errno));
	char buf[8];
	if (poll(&pfd, 1, WAIT_MS) != 1 || read(fd, buf, sizeof(buf)) != 0)
		die("the plugin did not close %s after the ACK", path);
	unsigned long long t = bench_now_ns() - t0;
	close(fd);
	return t;
}

/* ---- strace -c of a batch ---- */

struct tracer {
	pid_t pid;
	char *out;
};

static void trace_start(struct tracer *t, pid_t target, const char *out)
{
	char pid_text[16];

	snprintf(pid_text, sizeof(pid_text), "%d", (int)target);
	t->out = xasprintf_bench("%s", out);
	fflush(NULL);
	t->pid = fork();
	if (t->pid < 0)
		die("fork: %s", strerror(errno));
	if (t->pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2);
		execlp("strace", "strace", "-c", "-f", "-o", out, "-p", pid_text, (char *)NULL);
		_exit(127);
	}
	child_started(t->pid);
	int r = proc_wait_traced(target, WAIT_MS);
	if (r < 0)
		die("strace did not attach to pid %d: %s (is strace installed?)", (int)target,
		    strerror(-r));
}

/* strace summaries, printed after the table. */
static char *trace_report;
static size_t trace_report_len;
static FILE *trace_out;

/* Stops strace and adds its table, as calls per operation, to the report. */
static void trace_finish(struct tracer *t, const char *what, int ops)
{
	int status;
	FILE *out;

	kill(t->pid, SIGINT);
	waitpid(t->pid, &status, 0);
	child_reaped(t->pid);
	FILE *f = fopen(t->out, "re");
	if (!f)
		die("cannot read %s: %s", t->out, strerror(errno));
	if (!trace_out && !(trace_out = open_memstream(&trace_report, &trace_report_len)))
		die("open_memstream: %s", strerror(errno));
	out = trace_out;
	fprintf(out, "\nstrace -c -f on the plugin, %d %s: syscalls per %s\n", ops, what, what);
	char line[256];
	int dashes = 0;
	double total = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "------", 6) == 0) {
			dashes++;
			continue;
		}
		if (dashes != 1)
			continue;
		char *tok[8];
		int n = 0;
		for (char *save, *p = strtok_r(line, " \n", &save); p && n < 8;
		     p = strtok_r(NULL, " \n", &save))
			tok[n++] = p;
		if (n < 5)
			continue;
		double calls = atof(tok[3]);
		double errors = n == 6 ? atof(tok[4]) : 0;
		total += calls;
		fprintf(out, "  %-16s %6.2f", tok[n - 1], calls / ops);
		if (errors > 0)
			fprintf(out, "  (%.2f failing)", errors / ops);
		fprintf(out, "\n");
	}
	fprintf(out, "  %-16s %6.2f\n", "total", total / ops);
	fclose(f);
	free(t->out);
}

/* ---- one run ---- */

static int min_int(int a, int b)
{
	return a < b ? a : b;
}

struct session {
	const struct options *o;
	struct kubelet kubelet;
	struct plugin plugin;
	struct h2c *client;
	struct h2c_stream watch;
	char *plugin_socket;
	double *latencies, *handoff_latencies;
	size_t latency_count, handoff_count;
	char (*paths)[108];
};

static void session_connect(struct session *s)
{
	free(s->plugin_socket);
	s->plugin_socket = xasprintf_bench("%s/%s", s->kubelet.dir, s->kubelet.endpoint);
	s->client = plugin_connect(s->plugin_socket);
	list_and_watch(s->client, &s->watch, s->o->devices);
}

static void session_disconnect(struct session *s)
{
	h2c_free(s->client);
	s->client = NULL;
	h2c_stream_reset(&s->watch);
}

/* count Allocates of distinct devices, then count handoffs, each batch timed by the
 * plugin's CPU; with trace, under strace and not recorded. */
static void cycle_batch(struct session *s, int count, unsigned long long *cpu_allocate,
			unsigned long long *cpu_handoff, const char *trace_dir)
{
	struct tracer tracer;
	char id[32];

	plugin_wait_idle(&s->plugin);
	if (trace_dir) {
		char *out = xasprintf_bench("%s/strace-allocate.txt", trace_dir);
		trace_start(&tracer, s->plugin.pid, out);
		free(out);
	}
	unsigned long long c0 = plugin_cpu(&s->plugin);
	for (int i = 0; i < count; i++) {
		snprintf(id, sizeof(id), "iommufd%d", i);
		unsigned long long t = allocate(s->client, id, s->paths[i], sizeof(s->paths[i]));
		if (!s->paths[i][0])
			die("Allocate %s mounted no handoff socket", id);
		if (!trace_dir)
			s->latencies[s->latency_count++] = (double)t;
	}
	plugin_wait_idle(&s->plugin);
	unsigned long long c1 = plugin_cpu(&s->plugin);
	if (trace_dir) {
		trace_finish(&tracer, "Allocate", count);
		plugin_wait_idle(&s->plugin);
		char *out = xasprintf_bench("%s/strace-handoff.txt", trace_dir);
		trace_start(&tracer, s->plugin.pid, out);
		free(out);
		c1 = plugin_cpu(&s->plugin);
	}
	for (int i = 0; i < count; i++) {
		unsigned long long t = handoff(s->paths[i]);
		if (!trace_dir)
			s->handoff_latencies[s->handoff_count++] = (double)t;
	}
	plugin_wait_idle(&s->plugin);
	unsigned long long c2 = plugin_cpu(&s->plugin);
	if (trace_dir)
		trace_finish(&tracer, "handoff", count);
	*cpu_allocate += c1 - c0;
	*cpu_handoff += c2 - c1;
}

/* rss, then RssAnon, VmHWM, threads and fds at the figure ids that follow it. */
static void record_sample(const struct proc_sample *p, int rss)
{
	figure_add(rss, (double)p->rss_kb);
	figure_add(rss + 1, (double)p->rss_anon_kb);
	figure_add(rss + 2, (double)p->hwm_kb);
	figure_add(rss + 3, (double)p->threads);
	figure_add(rss + 4, (double)p->fds);
}

/* Cancelled ListAndWatch streams on the kubelet's connection, then whole connections
 * that each open a stream and close: RSS growth per stream and per connection. */
static void measure_growth(struct session *s)
{
	const struct options *o = s->o;
	struct proc_sample before, after;
	int warmup = o->streams / 2 > 50 ? o->streams / 2 : 50;
	struct h2c *c = NULL;

	for (int i = 0; i < warmup + o->streams; i++) {
		/* nghttp2's rapid-reset guard (CVE-2023-44487) drops a connection after a
		 * burst of 1000 RST_STREAMs: a fresh connection every STREAMS_PER_CONNECTION. */
		if (i % STREAMS_PER_CONNECTION == 0) {
			h2c_free(c);
			c = plugin_connect(s->plugin_socket);
		}
		if (i == warmup) {
			round_trip(c);
			plugin_wait_idle(&s->plugin);
			plugin_sample(&s->plugin, &before);
		}
		struct h2c_stream st = {0};
		list_and_watch(c, &st, o->devices);
		if (h2c_cancel(c, &st) < 0)
			die("cancelling ListAndWatch: %s", h2c_error(c));
		h2c_stream_reset(&st);
	}
	round_trip(c);
	plugin_wait_idle(&s->plugin);
	plugin_sample(&s->plugin, &after);
	h2c_free(c); /* after the sample: its fd was open at the first one too */
	if (after.fds != before.fds)
		fprintf(stderr,
			"plugin-bench: warning: open fds went from %llu to %llu over %d "
			"cancelled streams\n",
			before.fds, after.fds, o->streams);
	figure_add(F_STREAM_GROWTH,
		   ((double)after.rss_kb - (double)before.rss_kb) * 1024.0 / o->streams);

	warmup = o->connections / 2 > 50 ? o->connections / 2 : 50;
	for (int i = 0; i < warmup + o->connections; i++) {
		if (i == warmup) {
			plugin_wait_idle(&s->plugin);
			plugin_sample(&s->plugin, &before);
		}
		c = plugin_connect(s->plugin_socket);
		struct h2c_stream st = {0};
		list_and_watch(c, &st, o->devices);
		h2c_free(c);
		h2c_stream_reset(&st);
	}
	round_trip(s->client);
	plugin_wait_idle(&s->plugin);
	plugin_sample(&s->plugin, &after);
	if (after.fds != before.fds)
		fprintf(stderr,
			"plugin-bench: warning: open fds went from %llu to %llu over %d "
			"closed connections\n",
			before.fds, after.fds, o->connections);
	figure_add(F_CONNECTION_GROWTH,
		   ((double)after.rss_kb - (double)before.rss_kb) * 1024.0 / o->connections);
}

/* Allocates while the device is missing (--missing-device=allow): the answer mounts
 * nothing, no fd is opened. A second plugin instance with its own directories and no
 * kubelet.sock: we talk to its socket directly. */
static void measure_missing_device(const struct options *o, const char *dir)
{
	struct plugin p = {0};
	char host_path[108], id[32];

	p.kubelet_dir = xasprintf_bench("%s/kubelet-missing", dir);
	p.socket_dir = xasprintf_bench("%s/sockets-missing", dir);
	p.log_path = xasprintf_bench("%s/plugin-missing.log", dir);
	char *device = xasprintf_bench("%s/no-iommu", dir);
	char *socket = xasprintf_bench("%s/kubevirt-iommufd.sock", p.kubelet_dir);
	plugin_spawn(o, &p, device);

	struct h2c *c = NULL;
	for (int waited = 0; !c; waited++) {
		if (waited == WAIT_MS)
			die("the plugin did not serve %s within %d ms", socket, WAIT_MS);
		if (h2c_connect(socket, WAIT_MS, &c) < 0) {
			c = NULL;
			sleep_ms(1);
		}
	}
	struct h2c_stream watch = {0};
	list_and_watch(c, &watch, o->devices);
	unsigned long long cpu = 0;
	int done = 0;
	while (done < o->missing_allocations) {
		int count = min_int(o->batch, o->missing_allocations - done);
		plugin_wait_idle(&p);
		unsigned long long c0 = plugin_cpu(&p);
		for (int i = 0; i < count; i++) {
			snprintf(id, sizeof(id), "iommufd%d", i);
			allocate(c, id, host_path, sizeof(host_path));
			if (host_path[0])
				die("Allocate with the device missing mounted %s", host_path);
		}
		plugin_wait_idle(&p);
		cpu += plugin_cpu(&p) - c0;
		done += count;
	}
	figure_add(F_CPU_ALLOCATE_MISSING, (double)cpu / done);
	h2c_free(c);
	h2c_stream_reset(&watch);
	plugin_stop(&p);
	free(p.kubelet_dir);
	free(p.socket_dir);
	free(p.log_path);
	free(device);
	free(socket);
}

static void run_once(const struct options *o, int run, const char *dir)
{
	struct session s = {.o = o};
	struct proc_sample sample;

	s.kubelet.dir = xasprintf_bench("%s/kubelet", dir);
	s.kubelet.socket_path = xasprintf_bench("%s/%s", s.kubelet.dir, KUBELET_SOCKET);
	s.plugin.kubelet_dir = s.kubelet.dir;
	s.plugin.socket_dir = xasprintf_bench("%s/sockets", dir);
	s.plugin.log_path = xasprintf_bench("%s/plugin.log", dir);
	if (mkdir(s.kubelet.dir, 0755) < 0)
		die("cannot create %s: %s", s.kubelet.dir, strerror(errno));
	int r = loop_new(&s.kubelet.loop);
	if (r < 0)
		die("cannot create an event loop: %s", strerror(-r));
	s.latencies = calloc((size_t)o->cycles, sizeof(double));
	s.handoff_latencies = calloc((size_t)o->cycles, sizeof(double));
	s.paths = calloc((size_t)o->batch, sizeof(*s.paths));
	if (!s.latencies || !s.handoff_latencies || !s.paths)
		abort();

	/* exec -> Register: the kubelet is already up, as on a node. */
	kubelet_start(&s.kubelet);
	plugin_spawn(o, &s.plugin, o->device);
	kubelet_wait_register(&s.kubelet, 1);
	figure_add(F_EXEC_REGISTER, (double)(s.kubelet.last_register_ns - *exec_stamp));
	session_connect(&s);
	plugin_wait_idle(&s.plugin);
	plugin_sample(&s.plugin, &sample);
	record_sample(&sample, F_RSS_REGISTER);

	/* Kubelet restarts: its connections die, it removes every socket in its
	 * directory, then binds kubelet.sock again. */
	for (int i = 0; i < o->restarts; i++) {
		session_disconnect(&s);
		kubelet_stop(&s.kubelet);
		kubelet_remove_sockets(&s.kubelet);
		unsigned long long t0 = kubelet_start(&s.kubelet);
		kubelet_wait_register(&s.kubelet, s.kubelet.registrations + 1);
		figure_add(F_RESTART_REGISTER, (double)(s.kubelet.last_register_ns - t0));
		session_connect(&s);
		plugin_wait_idle(&s.plugin);
	}

	/* Allocate + handoff cycles in batches of distinct devices. */
	unsigned long long cpu_allocate = 0, cpu_handoff = 0;
	struct proc_sample cycles_start;
	plugin_sample(&s.plugin, &cycles_start);
	for (int done = 0; done < o->cycles;) {
		int count = min_int(o->batch, o->cycles - done);
		cycle_batch(&s, count, &cpu_allocate, &cpu_handoff, NULL);
		done += count;
	}
	figure_add(F_CPU_ALLOCATE, (double)cpu_allocate / o->cycles);
	figure_add(F_CPU_HANDOFF, (double)cpu_handoff / o->cycles);
	struct proc_sample cycles_end;
	plugin_sample(&s.plugin, &cycles_end);
	unsigned long long user = cycles_end.utime - cycles_start.utime;
	unsigned long long kernel = cycles_end.stime - cycles_start.stime;
	/* Clock ticks: a short run may not see one (NAN prints as n/a). */
	figure_add(F_KERNEL_SHARE,
		   user + kernel > 0 ? 100.0 * (double)kernel / (double)(user + kernel) : NAN);
	qsort(s.latencies, s.latency_count, sizeof(double), compare_double);
	figure_add(F_LATENCY_P50, percentile(s.latencies, s.latency_count, 50));
	figure_add(F_LATENCY_P99, percentile(s.latencies, s.latency_count, 99));
	figure_add(F_LATENCY_MAX, s.latencies[s.latency_count - 1]);
	qsort(s.handoff_latencies, s.handoff_count, sizeof(double), compare_double);
	figure_add(F_HANDOFF_P50, percentile(s.handoff_latencies, s.handoff_count, 50));
	plugin_wait_idle(&s.plugin);
	plugin_sample(&s.plugin, &sample);
	record_sample(&sample, F_RSS_CYCLES);

	if (o->strace && run == 0) {
		unsigned long long ignored = 0;
		cycle_batch(&s, o->batch, &ignored, &ignored, dir);
	}

	measure_growth(&s);

	/* Idle with the kubelet's ListAndWatch stream open. */
	struct proc_sample before, after;
	plugin_wait_idle(&s.plugin);
	plugin_sample(&s.plugin, &before);
	sleep_ms(o->idle_ms);
	plugin_sample(&s.plugin, &after);
	figure_add(F_IDLE_SWITCHES, (double)(after.voluntary + after.nonvoluntary -
					     before.voluntary - before.nonvoluntary));
	figure_add(F_IDLE_CPU, (double)(after.cpu_ns - before.cpu_ns));

	session_disconnect(&s);
	plugin_stop(&s.plugin);
	kubelet_stop(&s.kubelet);
	loop_free(s.kubelet.loop);

	measure_missing_device(o, dir);

	free(s.plugin_socket);
	free(s.kubelet.dir);
	free(s.kubelet.socket_path);
	free(s.plugin.socket_dir);
	free(s.plugin.log_path);
	free(s.latencies);
	free(s.handoff_latencies);
	free(s.paths);
}

/* ---- binary size ---- */

/* Whether the ELF file has no program interpreter (a static executable). */
static int elf_is_static(const char *path, bool *is_static)
{
	Elf64_Ehdr eh;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = -ENOEXEC;
	if (pread(fd, &eh, sizeof(eh), 0) == sizeof(eh) &&
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64) {
		*is_static = true;
		r = 0;
		for (int i = 0; i < eh.e_phnum; i++) {
			Elf64_Phdr ph;
			if (pread(fd, &ph, sizeof(ph),
				  (off_t)(eh.e_phoff + (Elf64_Off)i * eh.e_phentsize)) !=
			    sizeof(ph)) {
				r = -ENOEXEC;
				break;
			}
			if (ph.p_type == PT_INTERP)
				*is_static = false;
		}
	}
	close(fd);
	return r;
}

static void measure_binary(const struct options *o, const char *dir, bool *is_static)
{
	char *copy = xasprintf_bench("%s/stripped", dir);
	int status;

	if (elf_is_static(o->size_binary, is_static) < 0)
		die("%s is not a 64-bit ELF file", o->size_binary);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		execlp("strip", "strip", "--strip-all", "-o", copy, o->size_binary, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("strip --strip-all -o %s %s failed (is binutils installed?)", copy,
		    o->size_binary);
	struct stat st;
	if (stat(copy, &st) < 0)
		die("cannot stat %s: %s", copy, strerror(errno));
	figure_add(F_BINARY_SIZE, (double)st.st_size);
	free(copy);
}

/* ---- main ---- */

/* The private directory goes on tmpfs when there is one: the handoff sockets live in
 * /var/run (tmpfs on a node), and a socket's bind() on a disk filesystem costs far
 * more (ext4 with discard: ~90 us instead of ~6 us here). */
static const char *default_tmpdir(void)
{
	struct statfs st;
	const char *env = getenv("TMPDIR");

	if (statfs("/dev/shm", &st) == 0 && st.f_type == TMPFS_MAGIC &&
	    access("/dev/shm", W_OK | X_OK) == 0)
		return "/dev/shm";
	return env && *env ? env : "/tmp";
}

static void read_loadavg(char *buf, size_t size)
{
	FILE *f = fopen("/proc/loadavg", "re");

	snprintf(buf, size, "unknown");
	if (f) {
		if (fgets(buf, (int)size, f))
			buf[strcspn(buf, " ")] = '\0'; /* the 1-minute figure */
		fclose(f);
	}
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: plugin-bench [--plugin PATH] [--smoke] [options]\n"
	    "Starts the plugin against a fake kubelet in a private temporary directory and\n"
	    "prints one table of start-up, re-registration, memory, CPU, idle and growth\n"
	    "figures (median and spread over the runs) next to the goals and the Go plugin.\n"
	    "\n"
	    "  --plugin PATH        the plugin binary (default: %s)\n"
	    "  --size-binary PATH   the binary whose stripped size is reported (default: "
	    "--plugin)\n"
	    "  --smoke              a short run for the test suite: 2 runs, 300 cycles, 1 s idle\n"
	    "  --runs N             plugin processes measured one after the other (5)\n"
	    "  --cycles N           Allocate + handoff cycles per run (10000)\n"
	    "  --batch N            Allocates per batch, then as many handoffs (100)\n"
	    "  --restarts N         kubelet restarts per run (5)\n"
	    "  --idle-ms N          idle window with ListAndWatch open (10000)\n"
	    "  --streams N          cancelled ListAndWatch streams (1000)\n"
	    "  --connections N      closed kubelet connections (1000)\n"
	    "  --missing N          Allocates with the device missing (2000)\n"
	    "  --device PATH        --iommu-device for the plugin (/dev/null)\n"
	    "  --tmpdir DIR         where the private directory is made (/dev/shm if tmpfs,\n"
	    "                       else $TMPDIR or /tmp)\n"
	    "  --strace             also count the syscalls of one batch with strace -c -f\n"
	    "  --keep               keep the private directory (plugin logs)\n"
	    "Exit: 0 with a complete table, 1 if any step or figure failed, 2 usage.\n",
	    BENCH_DEFAULT_PLUGIN);
}

static int parse_count(const char *flag, const char *text, int min)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || *end || v < min || v > 100000000) {
		fprintf(stderr, "plugin-bench: %s wants a number >= %d, not \"%s\"\n", flag, min,
			text);
		exit(2);
	}
	return (int)v;
}

static void print_header(const struct options *o, int argc, char **argv, bool is_static,
			 const char *dir, const char *load_before)
{
	struct statfs fs;
	char load_after[32];
	struct utsname u;
	char cpu[128] = "unknown", date[64];
	time_t now = time(NULL);
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (f) {
		char line[256];
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');
			if (strncmp(line, "model name", 10) == 0 && colon) {
				snprintf(cpu, sizeof(cpu), "%s", colon + 2);
				cpu[strcspn(cpu, "\n")] = '\0';
				break;
			}
		}
		fclose(f);
	}
	uname(&u);
	read_loadavg(load_after, sizeof(load_after));
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
	printf("plugin-bench %s: %s %s, %s, %ld CPUs\n", date, u.sysname, u.release, cpu,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("command:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\nplugin: %s; size of: %s (%s)\n", o->plugin, o->size_binary,
	       is_static ? "static" : "dynamic: build-static has the release figure");
	printf("private dir: %s (%s); load average (1 min) before %s, after %s\n", dir,
	       statfs(dir, &fs) == 0 && fs.f_type == TMPFS_MAGIC ? "tmpfs" : "NOT tmpfs",
	       load_before, load_after);
	printf(
	    "%sruns %d; per run: %d Allocate+handoff cycles in batches of %d, %d kubelet restarts, "
	    "%d ms idle, %d cancelled streams, %d closed connections, %d Allocates with the "
	    "device missing; --iommu-device %s, %d devices\n\n",
	    o->smoke ? "SMOKE RUN, figures not meaningful: " : "", o->runs, o->cycles, o->batch,
	    o->restarts, o->idle_ms, o->streams, o->connections, o->missing_allocations, o->device,
	    o->devices);
}

int main(int argc, char **argv)
{
	static const struct option long_options[] = {
	    {"plugin", required_argument, NULL, 'p'},
	    {"size-binary", required_argument, NULL, 'b'},
	    {"smoke", no_argument, NULL, 's'},
	    {"runs", required_argument, NULL, 'r'},
	    {"cycles", required_argument, NULL, 'c'},
	    {"batch", required_argument, NULL, 'B'},
	    {"restarts", required_argument, NULL, 'R'},
	    {"idle-ms", required_argument, NULL, 'i'},
	    {"streams", required_argument, NULL, 'S'},
	    {"connections", required_argument, NULL, 'C'},
	    {"missing", required_argument, NULL, 'm'},
	    {"device", required_argument, NULL, 'd'},
	    {"tmpdir", required_argument, NULL, 't'},
	    {"strace", no_argument, NULL, 'T'},
	    {"keep", no_argument, NULL, 'k'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	struct options o = {
	    .plugin = BENCH_DEFAULT_PLUGIN,
	    .device = "/dev/null",
	    .runs = 5,
	    .cycles = 10000,
	    .batch = 100,
	    .devices = 110,
	    .restarts = 5,
	    .idle_ms = 10000,
	    .streams = 1000,
	    .connections = 1000,
	    .missing_allocations = 2000,
	};
	int c;

	/* --smoke first sets its defaults; explicit flags after it still win. */
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--smoke") == 0) {
			o.smoke = true;
			o.runs = 2;
			o.cycles = 300;
			o.restarts = 2;
			o.idle_ms = 1000;
			o.streams = 100;
			o.connections = 50;
			o.missing_allocations = 100;
		}
	}
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		switch (c) {
		case 'p':
			o.plugin = optarg;
			break;
		case 'b':
			o.size_binary = optarg;
			break;
		case 's':
			break;
		case 'r':
			o.runs = parse_count("--runs", optarg, 1);
			break;
		case 'c':
			o.cycles = parse_count("--cycles", optarg, 1);
			break;
		case 'B':
			o.batch = parse_count("--batch", optarg, 1);
			break;
		case 'R':
			o.restarts = parse_count("--restarts", optarg, 1);
			break;
		case 'i':
			o.idle_ms = parse_count("--idle-ms", optarg, 0);
			break;
		case 'S':
			o.streams = parse_count("--streams", optarg, 1);
			break;
		case 'C':
			o.connections = parse_count("--connections", optarg, 1);
			break;
		case 'm':
			o.missing_allocations = parse_count("--missing", optarg, 1);
			break;
		case 'd':
			o.device = optarg;
			break;
		case 't':
			o.tmpdir = optarg;
			break;
		case 'T':
			o.strace = true;
			break;
		case 'k':
			o.keep = true;
			break;

		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (o.batch > o.devices)
		o.batch = o.devices;
	if (!o.size_binary)
		o.size_binary = o.plugin;
	if (!o.tmpdir)
		o.tmpdir = default_tmpdir();
	if (access(o.plugin, X_OK) < 0)
		die("cannot execute %s: %s", o.plugin, strerror(errno));
	keep_temp = o.keep;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	exec_stamp = mmap(NULL, sizeof(*exec_stamp), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (exec_stamp == MAP_FAILED)
		die("mmap: %s", strerror(errno));

	char n_cycles[64];
	snprintf(n_cycles, sizeof(n_cycles), "%d", o.cycles);
	figure_define(F_EXEC_REGISTER, UNIT_MS, NULL, 0, NULL, "exec -> Register at the kubelet");
	figure_define(F_RESTART_REGISTER, UNIT_MS, "<= 50 ms", 50e6, "never",
		      "kubelet restart -> Register again");
	figure_define(F_RSS_REGISTER, UNIT_KIB, "<= 1024 KiB", 1024, "11.2 MB",
		      "VmRSS after Register");
	figure_define(F_ANON_REGISTER, UNIT_KIB, NULL, 0, NULL, "RssAnon after Register");
	figure_define(F_HWM_REGISTER, UNIT_KIB, NULL, 0, NULL, "VmHWM after Register");
	figure_define(F_THREADS_REGISTER, UNIT_COUNT, "1", 1, "7", "threads after Register");
	figure_define(F_FDS_REGISTER, UNIT_COUNT, NULL, 0, NULL, "open fds after Register");
	figure_define(F_RSS_CYCLES, UNIT_KIB, "<= 1024 KiB", 1024, NULL,
		      "VmRSS after %s Allocate+handoff", n_cycles);
	figure_define(F_ANON_CYCLES, UNIT_KIB, NULL, 0, NULL, "RssAnon after %s Allocate+handoff",
		      n_cycles);
	figure_define(F_HWM_CYCLES, UNIT_KIB, NULL, 0, NULL, "VmHWM after %s Allocate+handoff",
		      n_cycles);
	figure_define(F_THREADS_CYCLES, UNIT_COUNT, "1", 1, "7",
		      "threads after %s Allocate+handoff", n_cycles);
	figure_define(F_FDS_CYCLES, UNIT_COUNT, NULL, 0, NULL, "open fds after %s Allocate+handoff",
		      n_cycles);
	figure_define(F_CPU_ALLOCATE, UNIT_US, "<= 20 us", 20e3, "491 us (fd path)",
		      "plugin CPU per Allocate (fd path)");
	figure_define(F_CPU_HANDOFF, UNIT_US, NULL, 0, NULL, "plugin CPU per handoff");
	figure_define(F_CPU_ALLOCATE_MISSING, UNIT_US, "<= 20 us", 20e3, "164 us",
		      "plugin CPU per Allocate (no device)");
	figure_define(F_KERNEL_SHARE, UNIT_PERCENT, NULL, 0, NULL,
		      "kernel share of plugin CPU in the cycles");
	figure_define(F_LATENCY_P50, UNIT_US, NULL, 0, NULL, "Allocate latency p50 (client)");
	figure_define(F_LATENCY_P99, UNIT_US, NULL, 0, NULL, "Allocate latency p99 (client)");
	figure_define(F_LATENCY_MAX, UNIT_US, NULL, 0, NULL, "Allocate latency max (client)");
	figure_define(F_HANDOFF_P50, UNIT_US, NULL, 0, NULL,
		      "handoff p50 (connect -> fd -> ACK -> close)");
	figure_define(F_IDLE_SWITCHES, UNIT_COUNT, "0", 0, "~8", "idle: context switches in %d s",
		      o.idle_ms / 1000);
	figure_define(F_IDLE_CPU, UNIT_US, "0 us", 0, NULL, "idle: plugin CPU in %d s",
		      o.idle_ms / 1000);
	/* RSS moves in pages, and an allocator keeps or returns a few of them as it likes
	 * (musl's mallocng swings by 2-3): growth under 4 pages over the whole series is
	 * no per-stream cost. A leak of 16 B per stream shows over 1000 streams. */
	figure_define(F_STREAM_GROWTH, UNIT_BYTES, "0 (<4 pages)", 4 * 4096.0 / o.streams,
		      "~12.5 kB", "RSS growth per cancelled ListAndWatch stream");
	figure_define(F_CONNECTION_GROWTH, UNIT_BYTES, "0 (<4 pages)", 4 * 4096.0 / o.connections,
		      NULL, "RSS growth per closed kubelet connection");
	figure_define(F_BINARY_SIZE, UNIT_KIB, "<= 512 KiB", 512, "10.4 MB",
		      "binary size, stripped");

	char *dir = xasprintf_bench("%s/plugin-bench.XXXXXX", o.tmpdir);
	if (!mkdtemp(dir))
		die("cannot create a directory in %s: %s", o.tmpdir, strerror(errno));
	temp_root = dir;

	char load_before[32];
	read_loadavg(load_before, sizeof(load_before));
	bool is_static = false;
	measure_binary(&o, dir, &is_static);
	figures[F_BINARY_SIZE].v[0] /= 1024.0;
	if (is_static)
		snprintf(figures[F_BINARY_SIZE].name, sizeof(figures[F_BINARY_SIZE].name),
			 "binary size, static and stripped");
	else
		snprintf(figures[F_BINARY_SIZE].name, sizeof(figures[F_BINARY_SIZE].name),
			 "binary size, stripped (DYNAMIC build)");

	for (int run = 0; run < o.runs; run++) {
		char *run_dir = xasprintf_bench("%s/run%d", dir, run);
		if (mkdir(run_dir, 0700) < 0)
			die("cannot create %s: %s", run_dir, strerror(errno));
		run_once(&o, run, run_dir);
		free(run_dir);
	}

	print_header(&o, argc, argv, is_static, dir, load_before);
	int missing = print_table();
	if (trace_out) {
		fclose(trace_out);
		fputs(trace_report, stdout);
		free(trace_report);
	}
	fflush(stdout);
	if (!keep_temp)
		remove_tree(dir);
	else
		fprintf(stderr, "plugin-bench: kept %s\n", dir);
	temp_root = NULL;
	free(dir);
	if (missing) {
		fprintf(stderr, "plugin-bench: %d figure(s) have no sample\n", missing);
		return 1;
	}
	return 0;
}
