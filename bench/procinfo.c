/* /proc readings of the plugin process; see procinfo.h. */
#include "procinfo.h"
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Reads a small /proc file into buf (NUL-terminated). Returns 0 or -errno. */
static int read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = -errno;
			close(fd);
			return r;
		}
		if (n == 0 || len + (size_t)n == size - 1) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return 0;
}

/* The number after "name:" in a /proc/PID/status text. */
static int status_field(const char *text, const char *name, unsigned long long *value)
{
	size_t n = strlen(name);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && p[n] == ':') {
			*value = strtoull(p + n + 1, NULL, 10);
			return 0;
		}
	}
	return -ENODATA;
}

int proc_cpu_ns(pid_t pid, unsigned long long *ns)
{
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	int r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	char *end;
	*ns = strtoull(buf, &end, 10);
	return end == buf ? -ENODATA : 0;
}

static int count_fds(pid_t pid, unsigned long long *count)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	*count = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			(*count)++;
	closedir(d);
	return 0;
}

/* The text of /proc/PID/stat after the ')' that ends the command name. */
static int proc_stat_fields(pid_t pid, char *buf, size_t size, char **fields)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int r = read_small(path, buf, size);
	if (r < 0)
		return r;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -ENODATA;
	*fields = p + 2; /* field 3, the state */
	return 0;
}

/* utime and stime: fields 14 and 15 of /proc/PID/stat. */
static int proc_times(pid_t pid, struct proc_sample *s)
{
	char buf[1024], *p;
	int r = proc_stat_fields(pid, buf, sizeof(buf), &p);
	if (r < 0)
		return r;
	for (int field = 3; field < 14; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -ENODATA;
		p++;
	}
	char *end;
	s->utime = strtoull(p, &end, 10);
	s->stime = strtoull(end, NULL, 10);
	return 0;
}

int proc_sample(pid_t pid, struct proc_sample *s)
{
	char path[64], buf[8192];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((r = read_small(path, buf, sizeof(buf))) < 0)
		return r;
	if ((r = status_field(buf, "VmRSS", &s->rss_kb)) < 0 ||
	    (r = status_field(buf, "VmHWM", &s->hwm_kb)) < 0 ||
	    (r = status_field(buf, "RssAnon", &s->rss_anon_kb)) < 0 ||
	    (r = status_field(buf, "Threads", &s->threads)) < 0 ||
	    (r = status_field(buf, "voluntary_ctxt_switches", &s->voluntary)) < 0 ||
	    (r = status_field(buf, "nonvoluntary_ctxt_switches", &s->nonvoluntary)) < 0)
		return r;
	if ((r = count_fds(pid, &s->fds)) < 0 || (r = proc_times(pid, s)) < 0)
		return r;
	return proc_cpu_ns(pid, &s->cpu_ns);
}

/* The state letter of /proc/PID/stat (after the ')' that ends the command name). */
static int proc_state(pid_t pid, char *state)
{
	char buf[1024], *p;
	int r = proc_stat_fields(pid, buf, sizeof(buf), &p);
	if (r < 0)
		return r;
	*state = p[0];
	return 0;
}

static void sleep_us(long us)
{
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int proc_wait_idle(pid_t pid, int timeout_ms)
{
	unsigned long long deadline = bench_now_ns() + (unsigned long long)timeout_ms * 1000000ULL;
	unsigned long long last = 0;
	int stable = 0;

	while (bench_now_ns() < deadline) {
		char state;
		unsigned long long ns = 0;
		int r = proc_state(pid, &state);
		if (r == 0)
			r = proc_cpu_ns(pid, &ns);
		if (r < 0)
			return r;
		/* Sleeping twice in a row, 200 us apart, with no CPU used in between. */
		if (state == 'S' && ns == last)
			stable++;
		else
			stable = 0;
		if (stable >= 2)
			return 0;
		last = ns;
		sleep_us(200);
	}
	return -ETIMEDOUT;
}

int proc_wait_traced(pid_t pid, int timeout_ms)
{
	unsigned long long deadline = bench_now_ns() + (unsigned long long)timeout_ms * 1000000ULL;
	char path[64], buf[8192];

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	while (bench_now_ns() < deadline) {
		unsigned long long tracer = 0;
		int r = read_small(path, buf, sizeof(buf));
		if (r < 0)
			return r;
		if (status_field(buf, "TracerPid", &tracer) == 0 && tracer != 0)
			return 0;
		sleep_us(1000);
	}
	return -ETIMEDOUT;
}
