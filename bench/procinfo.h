/* What the benchmark reads about the plugin process from /proc: memory, threads,
 * context switches, open fds and CPU time (schedstat: nanoseconds, not ticks). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

struct proc_sample {
	unsigned long long rss_kb, hwm_kb, rss_anon_kb;
	unsigned long long threads;
	unsigned long long voluntary, nonvoluntary; /* context switches */
	unsigned long long fds;
	unsigned long long cpu_ns;	 /* sum_exec_runtime from /proc/PID/schedstat */
	unsigned long long utime, stime; /* /proc/PID/stat, clock ticks (user, kernel) */
};

/* Fills s for pid. Returns 0 or -errno (the process is gone, or /proc lacks a field:
 * -ENODATA). */
int proc_sample(pid_t pid, struct proc_sample *s);
/* CPU time pid has run, in ns. Returns 0 or -errno. */
int proc_cpu_ns(pid_t pid, unsigned long long *ns);
/* Waits until pid sleeps and its CPU time stops moving (it is back in epoll_wait
 * with nothing to do), up to timeout_ms. Returns 0, -ETIMEDOUT, or -errno. */
int proc_wait_idle(pid_t pid, int timeout_ms);
/* Waits until pid is traced (TracerPid != 0), up to timeout_ms. */
int proc_wait_traced(pid_t pid, int timeout_ms);
