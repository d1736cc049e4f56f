/* The handoff tests' fixture (a loop, a handoff in a temporary socket dir, fd leak
 * check at teardown) and the peer processes they fork: a receiver like KubeVirt's
 * and the misbehaving ones. Header-only, shared by test_handoff*.c. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>

#include "basic/error.h"
#include "handoff/handoff.h"
#include "test_helpers.h"

#define MAX_PATHS 8

struct fixture {
	struct loop *loop;
	struct handoff *handoff;
	struct handoff_options opts;
	char *dir;
	char *socket_dir;
	char *paths[MAX_PATHS];
	int path_count;
	int fds_before;
	dev_t null_rdev, zero_rdev;
};

static inline int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct stat st;

	f->fds_before = test_count_open_fds();
	assert_int_equal(loop_new(&f->loop), 0);
	f->dir = test_make_temp_dir();
	assert_non_null(f->dir);
	f->socket_dir = xasprintf("%s/run/fd-sockets", f->dir);
	handoff_options_init(&f->opts);
	f->opts.socket_dir = f->socket_dir;
	f->opts.ttl_usec = 20ULL * 1000000;
	assert_int_equal(stat("/dev/null", &st), 0);
	f->null_rdev = st.st_rdev;
	assert_int_equal(stat("/dev/zero", &st), 0);
	f->zero_rdev = st.st_rdev;
	*state = f;
	return 0;
}

static inline int teardown(void **state)
{
	struct fixture *f = *state;

	handoff_free(f->handoff);
	loop_free(f->loop);
	test_remove_tree(f->dir);
	for (int i = 0; i < f->path_count; i++)
		free(f->paths[i]);
	free(f->socket_dir);
	free(f->dir);
	int fds_before = f->fds_before;
	free(f);
	/* Every socket, peer, timer and offered fd is closed again. */
	assert_int_equal(test_count_open_fds(), fds_before);
	return 0;
}

static inline void start(struct fixture *f)
{
	assert_int_equal(handoff_new(f->loop, &f->opts, &f->handoff), 0);
}

/* Offers a fresh fd of device (e.g. /dev/null) for id; returns a copy of the path. */
static inline const char *offer(struct fixture *f, const char *id, const char *device)
{
	const char *path = NULL;
	struct error e = {0};
	int fd = open(device, O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	int r = handoff_offer(f->handoff, id, fd, &path, &e);
	if (r < 0)
		fail_msg("handoff_offer: %s", error_message(&e));
	assert_true(f->path_count < MAX_PATHS);
	f->paths[f->path_count] = xstrdup(path);
	return f->paths[f->path_count++];
}

static inline bool path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

struct at_least {
	const unsigned long long *counter;
	unsigned long long value;
};

static inline bool counter_reached(void *data)
{
	struct at_least *a = data;

	return *a->counter >= a->value;
}

static inline bool run_until_counter(struct fixture *f, const unsigned long long *counter,
				     unsigned long long value, int timeout_ms)
{
	struct at_least a = {counter, value};

	return test_run_until(f->loop, counter_reached, &a, timeout_ms);
}

struct peer_args {
	const char *path;
	dev_t expected_rdev;
	const char *ack; /* bytes to answer with */
};

/* Receives as KubeVirt's virt-launcher does: one recvmsg with a 32-byte data buffer
 * and a 4096-byte control buffer, checks what arrived, answers, closes. */
static inline int receive_like_kubevirt(void *data)
{
	struct peer_args *a = data;
	char buf[32];
	char control[4096];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control,
			     .msg_controllen = sizeof(control)};
	int fd = -1, fds = 0;
	struct stat st;

	int s = test_connect(a->path);
	CHILD_CHECK(s >= 0);
	ssize_t n = recvmsg(s, &msg, 0);
	CHILD_CHECK(n == 1);
	CHILD_CHECK(buf[0] == 0x00);
	CHILD_CHECK(!(msg.msg_flags & MSG_CTRUNC));
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		CHILD_CHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS);
		fds += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	}
	CHILD_CHECK(fds == 1);
	CHILD_CHECK(fstat(fd, &st) == 0);
	CHILD_CHECK(S_ISCHR(st.st_mode) && st.st_rdev == a->expected_rdev);
	const char *ack = a->ack ? a->ack : "\0";
	size_t ack_len = a->ack ? strlen(a->ack) : 1;
	CHILD_CHECK(write(s, ack, ack_len) == (ssize_t)ack_len);
	close(fd);
	close(s);
	return 0;
}

/* Takes the fd, then hangs up without acknowledging. */
static inline int receive_and_hang_up(void *data)
{
	struct peer_args *a = data;
	char buf[32], control[4096];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control,
			     .msg_controllen = sizeof(control)};

	int s = test_connect(a->path);
	CHILD_CHECK(s >= 0);
	CHILD_CHECK(recvmsg(s, &msg, MSG_CMSG_CLOEXEC) == 1);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	CHILD_CHECK(c && c->cmsg_type == SCM_RIGHTS);
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	close(fd);
	close(s);
	return 0;
}

/* Connects and hangs up at once, reading nothing. */
static inline int connect_and_hang_up(void *data)
{
	struct peer_args *a = data;
	int s = test_connect(a->path);

	CHILD_CHECK(s >= 0);
	close(s);
	return 0;
}

/* Takes the fd and never answers; returns once the plugin closes the connection. */
static inline int receive_and_never_ack(void *data)
{
	struct peer_args *a = data;
	char buf[32], control[4096];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control,
			     .msg_controllen = sizeof(control)};

	int s = test_connect(a->path);
	CHILD_CHECK(s >= 0);
	CHILD_CHECK(recvmsg(s, &msg, MSG_CMSG_CLOEXEC) == 1);
	CHILD_CHECK(read(s, buf, sizeof(buf)) == 0); /* EOF: the plugin gave up on us */
	return 0;
}

/* Answers before reading anything, then waits for the plugin to hang up. */
static inline int answer_without_taking_fd(void *data)
{
	struct peer_args *a = data;
	struct pollfd p = {.events = POLLRDHUP};

	p.fd = test_connect(a->path);
	CHILD_CHECK(p.fd >= 0);
	CHILD_CHECK(write(p.fd, "\0", 1) == 1);
	CHILD_CHECK(poll(&p, 1, 10000) == 1 && (p.revents & POLLRDHUP));
	return 0;
}

static inline void expect_child(pid_t pid)
{
	assert_true(pid > 0);
	assert_int_equal(test_wait(pid), 0);
}
