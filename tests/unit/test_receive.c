/* The consumer library against the real handoff (in the loop of this process, the
 * receiver in a child) and against misbehaving servers (in a child, the receiver
 * here, so fd leaks are counted where they would happen). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>

#include "handoff/handoff.h"
#include "iommufd_receive.h"
#include "test_helpers.h"

struct fixture {
	char *dir;
	char *socket_path;
	int listen_fd;
	int fds_before;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct sockaddr_un addr = {.sun_family = AF_UNIX};

	f->fds_before = test_count_open_fds();
	f->dir = test_make_temp_dir();
	assert_non_null(f->dir);
	f->socket_path = xasprintf("%s/server.sock", f->dir);
	f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(f->listen_fd >= 0);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", f->socket_path);
	assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(f->listen_fd, 4), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->listen_fd >= 0)
		close(f->listen_fd);
	test_remove_tree(f->dir);
	free(f->socket_path);
	free(f->dir);
	int fds_before = f->fds_before;
	free(f);
	assert_int_equal(test_count_open_fds(), fds_before);
	return 0;
}

/* What a fake server sends: data bytes and how many fds of /dev/null. */
struct server_script {
	int listen_fd;
	const char *data;
	size_t data_len;
	int fd_count;
	bool stay_silent; /* send nothing, wait for the client to go */
};

/* Accepts one connection, sends as scripted, then reads until the client closes;
 * exits 0 if it saw exactly one ACK byte (10 if none, 11 if more). */
static int fake_server(void *data)
{
	struct server_script *s = data;
	int fds[4];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(fds))];
	} control;
	struct iovec iov = {.iov_base = (void *)s->data, .iov_len = s->data_len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	char buf[16];
	ssize_t total = 0, n;

	int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	CHILD_CHECK(c >= 0);
	if (s->stay_silent) {
		while (read(c, buf, sizeof(buf)) > 0)
			;
		return 0;
	}
	for (int i = 0; i < s->fd_count; i++)
		CHILD_CHECK((fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0);
	if (s->fd_count) {
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)s->fd_count);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)s->fd_count);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)s->fd_count);
	}
	if (s->data_len)
		CHILD_CHECK(sendmsg(c, &msg, MSG_NOSIGNAL) == (ssize_t)s->data_len);
	else
		return 0; /* close without a message */
	while ((n = read(c, buf, sizeof(buf))) > 0)
		total += n;
	return total == 1 ? 0 : total == 0 ? 10 : 11;
}

static int serve(struct fixture *f, struct server_script *s)
{
	s->listen_fd = f->listen_fd;
	return test_fork(fake_server, s);
}

static void receive_from_server_expecting(void **state, struct server_script *script,
					  int expected_errno, int expected_server_status)
{
	struct fixture *f = *state;
	int fd = -1;

	pid_t pid = serve(f, script);
	int fds_before = test_count_open_fds();
	assert_int_equal(iommufd_receive_timeout(f->socket_path, 5000, &fd), -expected_errno);
	assert_int_equal(fd, -1);
	/* Every fd that came with a refused message is closed, and the socket too. */
	assert_int_equal(test_count_open_fds(), fds_before);
	assert_int_equal(test_wait(pid), expected_server_status);
}

static void receive_takes_fd_marks_it_cloexec_and_acks_once(void **state)
{
	struct fixture *f = *state;
	struct server_script s = {.data = "\0", .data_len = 1, .fd_count = 1};
	struct stat st, null_st;
	int fd = -1;

	pid_t pid = serve(f, &s);
	assert_int_equal(iommufd_receive_timeout(f->socket_path, 5000, &fd), 0);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(stat("/dev/null", &null_st), 0);
	assert_true(st.st_rdev == null_st.st_rdev);
	close(fd);
	assert_int_equal(test_wait(pid), 0); /* it saw exactly one ACK byte */
}

static void receive_rejects_two_fds_and_closes_both(void **state)
{
	struct server_script s = {.data = "\0", .data_len = 1, .fd_count = 2};

	receive_from_server_expecting(state, &s, EPROTO, 10);
}

static void receive_rejects_a_nonzero_data_byte(void **state)
{
	struct server_script s = {.data = "\1", .data_len = 1, .fd_count = 1};

	receive_from_server_expecting(state, &s, EPROTO, 10);
}

static void receive_rejects_more_than_one_data_byte(void **state)
{
	struct server_script s = {.data = "\0\0", .data_len = 2, .fd_count = 1};

	receive_from_server_expecting(state, &s, EPROTO, 10);
}

static void receive_rejects_a_message_without_fd(void **state)
{
	struct server_script s = {.data = "\0", .data_len = 1, .fd_count = 0};

	receive_from_server_expecting(state, &s, EPROTO, 10);
}

static void receive_reports_server_closing_without_message(void **state)
{
	struct server_script s = {.data_len = 0};

	receive_from_server_expecting(state, &s, ECONNRESET, 0);
}

static void receive_times_out_when_server_stays_silent(void **state)
{
	struct fixture *f = *state;
	struct server_script s = {.stay_silent = true};
	int fd = -1;

	pid_t pid = serve(f, &s);
	unsigned long long t0 = now_usec();
	assert_int_equal(iommufd_receive_timeout(f->socket_path, 200, &fd), -ETIMEDOUT);
	assert_true(now_usec() - t0 >= 200 * 1000);
	assert_int_equal(test_wait(pid), 0);
}

static void receive_reports_missing_socket(void **state)
{
	struct fixture *f = *state;
	char *missing = xasprintf("%s/none.sock", f->dir);
	int fd = -1;

	assert_int_equal(iommufd_receive(missing, &fd), -ENOENT);
	free(missing);
}

struct receiver_args {
	const char *path;
	dev_t rdev;
};

static int receive_with_library(void *data)
{
	struct receiver_args *a = data;
	struct stat st;
	int fd;

	CHILD_CHECK(iommufd_receive(a->path, &fd) == 0);
	CHILD_CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	CHILD_CHECK(fstat(fd, &st) == 0 && st.st_rdev == a->rdev);
	close(fd);
	return 0;
}

static bool consumed(void *data)
{
	return handoff_stats(data)->consumed >= 1;
}

static void receive_consumes_a_real_handoff_offer(void **state)
{
	struct fixture *f = *state;
	struct handoff_options o;
	struct handoff *h;
	struct loop *loop;
	const char *path;
	struct stat st;

	char *dir = xasprintf("%s/fd-sockets", f->dir);
	handoff_options_init(&o);
	o.socket_dir = dir;
	assert_int_equal(loop_new(&loop), 0);
	assert_int_equal(handoff_new(loop, &o, &h), 0);
	assert_int_equal(
	    handoff_offer(h, "iommufd0", open("/dev/null", O_RDWR | O_CLOEXEC), &path, NULL), 0);
	assert_int_equal(stat("/dev/null", &st), 0);
	struct receiver_args a = {.path = path, .rdev = st.st_rdev};
	pid_t pid = test_fork(receive_with_library, &a);
	assert_true(test_run_until(loop, consumed, h, 10000));
	assert_int_equal(test_wait(pid), 0);
	assert_int_equal(handoff_pending(h), 0);
	handoff_free(h);
	loop_free(loop);
	free(dir);
}

/* The CLI, when the build tells us where it is (IOMMUFD_RECEIVE_CLI). */
struct cli_args {
	const char *cli;
	const char *path;
	int out_fd;
	bool exec_mode;
};

static int run_cli(void *data)
{
	struct cli_args *a = data;

	CHILD_CHECK(dup2(a->out_fd, STDOUT_FILENO) == STDOUT_FILENO);
	if (a->exec_mode)
		execl(a->cli, a->cli, "--socket", a->path, "--fd", "7", "--", "readlink",
		      "/proc/self/fd/7", (char *)NULL);
	else
		execl(a->cli, a->cli, "--socket", a->path, (char *)NULL);
	return 127;
}

static void cli_prints_fd_and_runs_command_with_it(void **state)
{
	struct fixture *f = *state;
	const char *cli = getenv("IOMMUFD_RECEIVE_CLI");
	struct handoff_options o;
	struct handoff *h;
	struct loop *loop;
	const char *path;
	char out[256];

	if (!cli)
		skip();
	char *dir = xasprintf("%s/fd-sockets", f->dir);
	handoff_options_init(&o);
	o.socket_dir = dir;
	assert_int_equal(loop_new(&loop), 0);
	assert_int_equal(handoff_new(loop, &o, &h), 0);
	for (int exec_mode = 0; exec_mode <= 1; exec_mode++) {
		int pipe_fds[2];
		assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
		assert_int_equal(handoff_offer(h, "iommufd0", open("/dev/null", O_RDWR | O_CLOEXEC),
					       &path, NULL),
				 0);
		struct cli_args a = {cli, path, pipe_fds[1], exec_mode};
		pid_t pid = test_fork(run_cli, &a);
		close(pipe_fds[1]);
		assert_true(test_run_until(loop, consumed, h, 10000));
		assert_int_equal(test_wait(pid), 0);
		ssize_t n = read(pipe_fds[0], out, sizeof(out) - 1);
		close(pipe_fds[0]);
		assert_true(n > 0);
		out[n] = '\0';
		if (exec_mode)
			assert_string_equal(out, "/dev/null\n");
		else
			assert_non_null(strstr(out, "rdev=1:3 rlimit_mode=ENOTTY\n"));
		/* Next round consumes again. */
		handoff_free(h);
		assert_int_equal(handoff_new(loop, &o, &h), 0);
	}
	handoff_free(h);
	loop_free(loop);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(receive_takes_fd_marks_it_cloexec_and_acks_once),
	    T(receive_rejects_two_fds_and_closes_both),
	    T(receive_rejects_a_nonzero_data_byte),
	    T(receive_rejects_more_than_one_data_byte),
	    T(receive_rejects_a_message_without_fd),
	    T(receive_reports_server_closing_without_message),
	    T(receive_times_out_when_server_stays_silent),
	    T(receive_reports_missing_socket),
	    T(receive_consumes_a_real_handoff_offer),
	    T(cli_prints_fd_and_runs_command_with_it),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
