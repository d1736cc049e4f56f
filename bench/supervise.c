/* The processes the benchmark starts: recorded so that a failure or a signal kills
 * them, the plugin's start (fork + execve, its exec time stamped into a shared page)
 * and stop, and its /proc readings, each failure fatal. */
#include "supervise.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* The one file-scope pointer: a signal handler gets no argument. */
static struct bench *interrupted_bench;

/* Records pid as ours, to be killed if we die. */
static void supervise_child_started(struct bench *b, pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(b->children); i++) {
		if (!b->children[i]) {
			b->children[i] = pid;
			return;
		}
	}
	abort(); /* more children than BENCH_MAX_CHILDREN: a bug of ours */
}

void supervise_child_reaped(struct bench *b, pid_t pid)
{
	for (size_t i = 0; i < ARRAY_SIZE(b->children); i++)
		if (b->children[i] == pid)
			b->children[i] = 0;
}

pid_t supervise_fork(struct bench *b, const char *what)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		bench_die(b, "cannot fork for %s: %s", what, strerror(errno));
	if (pid > 0)
		supervise_child_started(b, pid);
	return pid;
}

void supervise_child_quiet(void)
{
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null >= 0 && null != 2) {
		dup2(null, 2);
		close(null);
	}
}

/* Async-signal-safe: also the SIGINT/SIGTERM handler's work. */
static void kill_children(struct bench *b)
{
	for (size_t i = 0; i < ARRAY_SIZE(b->children); i++) {
		if (b->children[i] > 0) {
			kill(b->children[i], SIGKILL);
			waitpid(b->children[i], NULL, 0);
			b->children[i] = 0;
		}
	}
}

static void on_signal(int sig)
{
	struct bench *b = interrupted_bench;

	kill_children(b);
	if (b->temp_root) { /* removing it is not async-signal-safe: say where it is */
		static const char msg[] = "plugin-bench: interrupted; left ";
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)!write(STDERR_FILENO, b->temp_root, strlen(b->temp_root));
		(void)!write(STDERR_FILENO, "\n", 1);
	}
	_exit(128 + sig);
}

void supervise_init(struct bench *b)
{
	interrupted_bench = b;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	b->exec_stamp = mmap(NULL, sizeof(*b->exec_stamp), PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (b->exec_stamp == MAP_FAILED)
		bench_die(b, "cannot map the exec stamp page: %s", strerror(errno));
}

void bench_die(struct bench *b, const char *fmt, ...)
{
	va_list ap;

	fputs("plugin-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	kill_children(b);
	if (b->temp_root)
		fprintf(stderr, "plugin-bench: kept %s (the plugin's log is plugin.log there)\n",
			b->temp_root);
	exit(1);
}

void bench_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
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

void supervise_remove_tree(const char *path)
{
	if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
		fprintf(stderr, "plugin-bench: cannot walk %s to remove it: %s\n", path,
			strerror(errno));
}

void plugin_spawn(struct bench *b, struct plugin *p, const char *device)
{
	const struct bench_options *o = &b->options;
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
	for (char **e = environ; *e && envc < ARRAY_SIZE(envp) - 1; e++)
		if (!strncmp(*e, "ASAN_", 5) || !strncmp(*e, "UBSAN_", 6) ||
		    !strncmp(*e, "LSAN_", 5))
			envp[envc++] = *e;
	envp[envc] = NULL;

	int log = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log < 0)
		bench_die(b, "cannot create %s: %s", p->log_path, strerror(errno));
	p->pid = supervise_fork(b, "the plugin");
	if (p->pid == 0) {
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
			_exit(126);
		if (null > 2)
			close(null);
		*b->exec_stamp = bench_now_ns();
		execve(o->plugin, argv, envp);
		dprintf(2, "plugin-bench: cannot execute %s: %s\n", o->plugin, strerror(errno));
		_exit(127);
	}
	close(log);
	/* The child wrote the stamp before execve, which returned to us only after it. */
	int status;
	if (waitpid(p->pid, &status, WNOHANG) == p->pid)
		bench_die(b, "the plugin exited at once (status 0x%x); see %s", status,
			  p->log_path);
}

void plugin_stop(struct bench *b, struct plugin *p)
{
	int status = 0;

	if (kill(p->pid, SIGTERM) < 0)
		bench_die(b, "cannot signal the plugin (pid %d): %s", (int)p->pid, strerror(errno));
	for (int waited = 0;; waited++) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid) {
			supervise_child_reaped(b, p->pid);
			break;
		}
		if (r < 0)
			bench_die(b, "waitpid %d: %s", (int)p->pid, strerror(errno));
		if (waited == 5000)
			bench_die(b, "the plugin did not exit within 5 s of SIGTERM");
		bench_sleep_ms(1);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		bench_die(b, "the plugin exited with status 0x%x after SIGTERM; see %s", status,
			  p->log_path);
	p->pid = 0;
}

void plugin_wait_idle(struct bench *b, const struct plugin *p)
{
	int r = proc_wait_idle(p->pid, BENCH_WAIT_MS);
	if (r < 0)
		bench_die(b, "the plugin (pid %d) did not go idle: %s", (int)p->pid, strerror(-r));
}

void plugin_sample(struct bench *b, const struct plugin *p, struct proc_sample *s)
{
	int r = proc_sample(p->pid, s);
	if (r < 0)
		bench_die(b, "cannot read /proc/%d: %s", (int)p->pid, strerror(-r));
}

unsigned long long plugin_cpu(struct bench *b, const struct plugin *p)
{
	unsigned long long ns;
	int r = proc_cpu_ns(p->pid, &ns);
	if (r < 0)
		bench_die(b, "cannot read /proc/%d/schedstat: %s", (int)p->pid, strerror(-r));
	return ns;
}
