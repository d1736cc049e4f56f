/* The on-disk instance protocol (src/handoff/instance_dir.c) and the socket modes
 * given at bind(): a directory is made ours or refused, a sibling's death hangs up its
 * "alive" connection whatever killed it, and a socket's mode never comes from the
 * inherited umask. */
#include "test_helpers.h"

#include "basic/error.h"
#include "basic/unix_socket.h"
#include "handoff/instance_dir.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>

static void a_0777_dir_is_made_0700_and_a_symlink_is_refused(void **state)
{
	(void)state;
	char *dir = test_make_temp_dir();
	char *sub = xasprintf("%s/sockets", dir);
	char *link = xasprintf("%s/link", dir);
	struct stat st;
	struct error e = {0};

	assert_int_equal(mkdir(sub, 0777), 0);
	assert_int_equal(chmod(sub, 0777), 0);
	assert_int_equal(instance_dir_make_private(sub, &e), 0);
	assert_int_equal(lstat(sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(st.st_uid, geteuid());

	assert_int_equal(symlink(sub, link), 0);
	int r = instance_dir_make_private(link, &e);
	assert_true(r == -ELOOP || r == -ENOTDIR);
	assert_non_null(strstr(error_message(&e), "symlink"));

	test_remove_tree(dir);
	free(link);
	free(sub);
	free(dir);
}

struct child {
	const char *socket_dir;
	int pipe_w;
};

/* A sibling instance: makes its dir, says where, and waits to be killed. */
static int sibling(void *data)
{
	struct child *c = data;
	struct handoff_dir *d;

	/* Dies with the test, also when an assertion fails first. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		return 1;
	int sd = instance_dir_open_private(c->socket_dir, NULL);
	if (sd < 0 || handoff_dir_create_own(sd, c->socket_dir, &d, NULL) < 0)
		return 1;
	size_t n = strlen(d->name) + 1;
	if (write(c->pipe_w, d->name, n) != (ssize_t)n)
		return 1;
	for (;;)
		pause();
}

static void a_sigkilled_siblings_alive_connection_hangs_up(void **state)
{
	(void)state;
	char *dir = test_make_temp_dir();
	int p[2];
	char name[256] = {0};

	assert_int_equal(pipe(p), 0);
	struct child c = {.socket_dir = dir, .pipe_w = p[1]};
	pid_t pid = test_fork(sibling, &c);
	assert_true(pid > 0);
	close(p[1]);
	assert_true(read(p[0], name, sizeof(name) - 1) > 0);
	close(p[0]);
	int sd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(sd >= 0);

	assert_true(handoff_dir_is_locked(sd, name));
	int fd = handoff_dir_watch_alive(sd, name);
	assert_true(fd >= 0);
	struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
	assert_int_equal(poll(&pfd, 1, 0), 0); /* alive: nothing to report */

	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(test_wait(pid), 128 + SIGKILL);
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	assert_true(pfd.revents & (POLLHUP | POLLRDHUP));
	assert_false(handoff_dir_is_locked(sd, name)); /* and it can be adopted */

	close(fd);
	close(sd);
	test_remove_tree(dir);
	free(dir);
}

static void a_socket_gets_its_mode_at_bind_whatever_the_umask(void **state)
{
	(void)state;
	char *dir = test_make_temp_dir();
	char *path = xasprintf("%s/s.sock", dir);
	struct file_id id;
	struct stat st;
	mode_t old = umask(0);

	int fd = unix_socket_bind_mode(path, 0600, &id);
	assert_true(fd >= 0);
	assert_int_equal(umask(0), 0); /* the process umask is back as it was */
	umask(old);
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	close(fd);
	test_remove_tree(dir);
	free(path);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_0777_dir_is_made_0700_and_a_symlink_is_refused),
	    cmocka_unit_test(a_sigkilled_siblings_alive_connection_hangs_up),
	    cmocka_unit_test(a_socket_gets_its_mode_at_bind_whatever_the_umask),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
