/* Helpers shared by the unit tests: temporary directories, open-fd counting for
 * leak checks, driving the loop until a condition holds, child processes that
 * report through their exit status, and capturing stderr. Header-only. */
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loop/loop.h"
#include "util.h"

/* Exit status of a child that wants the test skipped (as automake's). */
#define CHILD_SKIP 77

/* In a forked child, cmocka's asserts would unwind into the child's copy of the test
 * runner: children check with this and report through _exit. */
#define CHILD_CHECK(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "child %s:%d: check failed: %s (errno %s)\n", __FILE__,    \
				__LINE__, #cond, strerror(errno));                                 \
			_exit(1);                                                                  \
		}                                                                                  \
	} while (0)

static inline int test_count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int count = 0;

	if (!d)
		return -1;
	while (readdir(d))
		count++;
	closedir(d);
	return count - 3; /* ".", ".." and the directory's own fd */
}

/* Counts this process's fds whose /proc/self/fd link starts with prefix
 * ("socket:", "anon_inode:[timerfd]"). */
static inline int test_count_fds_like(const char *prefix)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int count = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char target[256];
		ssize_t n = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, prefix, strlen(prefix)) == 0)
			count++;
	}
	closedir(d);
	return count;
}

/* Number of armed timerfds in this process (fdinfo "it_value" not "(0, 0)"). */
static inline int test_count_armed_timerfds(void)
{
	DIR *d = opendir("/proc/self/fdinfo");
	struct dirent *de;
	int armed = 0;

	if (!d)
		return -1;
	while ((de = readdir(d))) {
		char line[256];
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		FILE *f = fdopen(fd, "re");
		if (!f) {
			close(fd);
			continue;
		}
		while (fgets(line, sizeof(line), f))
			if (strncmp(line, "it_value:", 9) == 0 && !strstr(line, "(0, 0)"))
				armed++;
		fclose(f);
	}
	closedir(d);
	return armed;
}

/* Makes a fresh directory under /tmp (on the root filesystem here, not nodev). */
static inline char *test_make_temp_dir(void)
{
	char *dir = xstrdup("/tmp/iommufd-unit-XXXXXX");

	if (!mkdtemp(dir)) {
		free(dir);
		return NULL;
	}
	return dir;
}

static inline int test_remove_entry(const char *path, const struct stat *st, int type,
				    struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

static inline void test_remove_tree(const char *dir)
{
	if (dir)
		nftw(dir, test_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Runs the loop until cond(data) holds or timeout_ms passes; returns cond's value. */
static inline bool test_run_until(struct loop *loop, bool (*cond)(void *data), void *data,
				  int timeout_ms)
{
	unsigned long long deadline = now_usec() + (unsigned long long)timeout_ms * 1000;

	while (!cond(data)) {
		if (now_usec() >= deadline)
			return false;
		if (loop_run_once(loop, 10) < 0)
			return false;
	}
	return true;
}

/* Runs the loop for ms milliseconds. */
static inline void test_run_for(struct loop *loop, int ms)
{
	unsigned long long deadline = now_usec() + (unsigned long long)ms * 1000;

	while (now_usec() < deadline)
		loop_run_once(loop, 10);
}

/* Forks a child that runs fn(data) and exits with its result. */
static inline pid_t test_fork(int (*fn)(void *data), void *data)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn(data));
	return pid;
}

/* Waits for a child; returns its exit status, or 128 + signal. */
static inline int test_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Connects a blocking unix stream socket to path; returns the fd or -1. */
static inline int test_connect(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Captures what is written to stderr between begin and end. */
struct test_stderr_capture {
	int saved_fd;
	int memfd;
};

static inline void test_capture_stderr_begin(struct test_stderr_capture *c)
{
	c->memfd = memfd_create("stderr", MFD_CLOEXEC);
	c->saved_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	dup2(c->memfd, STDERR_FILENO);
}

/* Restores stderr and returns what was captured (caller frees). */
static inline char *test_capture_stderr_end(struct test_stderr_capture *c)
{
	struct stat st;

	dup2(c->saved_fd, STDERR_FILENO);
	close(c->saved_fd);
	fstat(c->memfd, &st);
	char *text = xcalloc(1, (size_t)st.st_size + 1);
	if (pread(c->memfd, text, (size_t)st.st_size, 0) < 0)
		text[0] = '\0';
	close(c->memfd);
	/* Echo it, so test logs still show what happened. */
	fputs(text, stderr);
	return text;
}

static inline int test_count_substrings(const char *text, const char *needle)
{
	int count = 0;

	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		count++;
	return count;
}
