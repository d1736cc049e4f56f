/* Process supervision: every process the benchmark starts is recorded in the bench
 * and killed if it fails or is interrupted; the plugin under test is started, watched
 * and stopped here, and read through /proc (procinfo.h). */
#pragma once

#include "bench.h"
#include "procinfo.h"

#include <sys/types.h>

/* One plugin process and its paths (owned by whoever fills them). */
struct plugin {
	pid_t pid; /* 0 when not running */
	char *kubelet_dir, *socket_dir, *log_path;
};

/* Maps the exec stamp page and installs the SIGINT/SIGTERM handler that kills b's
 * children (b must outlive the process); SIGPIPE is ignored. Dies on failure. */
void supervise_init(struct bench *b);
/* Forgets pid once reaped. */
void supervise_child_reaped(struct bench *b, pid_t pid);
/* Forks a child that will be ours, for what (in the failure's message): flushes
 * stdio first; returns 0 in the child, and in the parent the pid, recorded (reap it
 * with supervise_child_reaped). Dies if fork fails. */
pid_t supervise_fork(struct bench *b, const char *what);
/* Points the child's stderr at /dev/null (best effort: it only hides noise). */
void supervise_child_quiet(void);
/* Removes the directory tree at path, saying on stderr what could not be removed. */
void supervise_remove_tree(const char *path);

/* Starts b's plugin binary on p's directories with --iommu-device device, output to
 * p->log_path, an environment holding only the sanitizers' settings; the child stamps
 * the clock into b->exec_stamp just before execve. Dies on failure. */
void plugin_spawn(struct bench *b, struct plugin *p, const char *device);
/* SIGTERM, then the exit status within 5 s; dies unless it is 0. */
void plugin_stop(struct bench *b, struct plugin *p);
/* Waits until the plugin sleeps with its CPU time still (proc_wait_idle). */
void plugin_wait_idle(struct bench *b, const struct plugin *p);
/* Reads the plugin's /proc figures into s. */
void plugin_sample(struct bench *b, const struct plugin *p, struct proc_sample *s);
/* The plugin's CPU time so far, in ns. */
unsigned long long plugin_cpu(struct bench *b, const struct plugin *p);
