/* The base library: unix socket files that are never taken from a live server, the
 * listener's fd-exhaustion policy, and the one inotify reader. */
#include "test_helpers.h"

#include "basic/inotify_read.h"
#include "basic/unix_socket.h"
#include "loop/loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

struct dir {
	char *path;
	char *sock;
	int fds_before;
};

static int setup(void **state)
{
	struct dir *d = xcalloc(1, sizeof(*d));

	d->fds_before = test_count_open_fds();
	d->path = test_make_temp_dir();
	assert_non_null(d->path);
	d->sock = xasprintf("%s/s.sock", d->path);
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dir *d = *state;
	int before = d->fds_before;

	test_remove_tree(d->path);
	free(d->sock);
	free(d->path);
	free(d);
	assert_int_equal(test_count_open_fds(), before);
	return 0;
}

static void unix_socket_bind_replaces_a_dead_socket_but_never_a_live_one(void **state)
{
	struct dir *d = *state;
	struct file_id first, second;

	int live = unix_socket_bind(d->sock, &first);
	assert_true(live >= 0);
	assert_int_equal(listen(live, 4), 0);
	assert_int_equal(unix_socket_probe(d->sock), 0);
	assert_int_equal(unix_socket_bind(d->sock, &second), -EADDRINUSE);
	assert_true(unix_socket_is_ours(d->sock, &first));

	close(live); /* its server is gone: the file stays, dead */
	assert_int_equal(unix_socket_probe(d->sock), -ECONNREFUSED);
	int again = unix_socket_bind(d->sock, &second);
	assert_true(again >= 0);
	assert_int_equal(listen(again, 4), 0);
	assert_int_equal(unix_socket_probe(d->sock), 0); /* the new one answers */
	assert_true(unix_socket_is_ours(d->sock, &second));
	/* A file someone else put there is not ours: unlinking leaves it. (The inode
	 * number of a replaced file may be reused at once, so the other file is made
	 * while ours still exists.) */
	cleanup_free char *other = xasprintf("%s/other", d->path);
	int f = open(other, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(f >= 0);
	close(f);
	assert_int_equal(rename(other, d->sock), 0);
	assert_false(unix_socket_is_ours(d->sock, &second));
	assert_int_equal(unix_socket_unlink_ours(d->sock, &second), 0);
	assert_int_equal(unix_socket_probe(d->sock), -ENOTSOCK);
	assert_int_equal(unlink(d->sock), 0);
	assert_int_equal(unix_socket_probe(d->sock), -ENOENT);
	close(again);
}

static void unix_socket_bind_refuses_a_file_that_is_not_a_socket(void **state)
{
	struct dir *d = *state;
	struct file_id id;
	int fd = open(d->sock, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(unix_socket_probe(d->sock), -ENOTSOCK);
	assert_int_equal(unix_socket_bind(d->sock, &id), -EEXIST);
	struct stat st;
	assert_int_equal(lstat(d->sock, &st), 0);
	assert_true(S_ISREG(st.st_mode));
}

static void unix_address_refuses_a_path_longer_than_sun_path(void **state)
{
	struct sockaddr_un addr;
	char path[sizeof(addr.sun_path) + 8];
	(void)state;

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(unix_address(&addr, path), -ENAMETOOLONG);
	path[sizeof(addr.sun_path) - 1] = '\0';
	assert_int_equal(unix_address(&addr, path), 0);
	assert_string_equal(addr.sun_path, path);
}

struct accepted {
	int count;
	int fds[8];
};

static void keep_fd(void *data, int fd)
{
	struct accepted *a = data;

	assert_true(a->count < 8);
	a->fds[a->count++] = fd;
}

static void loop_listener_waits_for_an_fd_and_resumes_when_one_is_released(void **state)
{
	struct dir *d = *state;
	struct loop *loop;
	struct loop_listener l = {0};
	struct loop_watch released = {0};
	struct accepted a = {0};
	struct file_id id;
	struct rlimit saved;
	struct sockaddr_un addr;
	int pipefd[2];

	assert_int_equal(loop_new(&loop), 0);
	int lfd = unix_socket_bind(d->sock, &id);
	assert_true(lfd >= 0);
	assert_int_equal(listen(lfd, 8), 0);
	assert_int_equal(loop_listener_start(loop, &l, lfd, "test", keep_fd, &a), 0);
	/* A watched fd to release later. */
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	assert_int_equal(loop_watch_add(loop, &released, pipefd[0], 0, NULL, NULL), 0);
	int peer = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(peer >= 0);
	assert_int_equal(unix_address(&addr, d->sock), 0);

	/* No fd left: the peer connects and waits in the backlog. */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	int highest = fcntl(0, F_DUPFD_CLOEXEC, 0); /* the lowest free fd number */
	assert_true(highest >= 0);
	close(highest);
	struct rlimit tight = {.rlim_cur = (rlim_t)highest, .rlim_max = saved.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
	int connected = connect(peer, (struct sockaddr *)&addr, sizeof(addr));
	loop_run_once(loop, 1000);
	int accepted_while_starved = a.count;
	bool starved = l.starved;

	/* Releasing a watched fd resumes it after that batch. */
	loop_watch_remove(loop, &released);
	close(pipefd[0]);
	close(pipefd[1]);
	loop_run_once(loop, 0);
	bool resumed = !l.starved;
	for (int i = 0; i < 20 && a.count == 0; i++)
		loop_run_once(loop, 100);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);

	assert_int_equal(connected, 0);
	assert_int_equal(accepted_while_starved, 0);
	assert_true(starved);
	assert_true(resumed);
	assert_int_equal(a.count, 1);
	for (int i = 0; i < a.count; i++)
		close(a.fds[i]);
	close(peer);
	loop_listener_stop(&l);
	close(lfd);
	loop_free(loop);
}

static void count_event(void *data, const struct inotify_event *ev)
{
	if (ev->len && strcmp(ev->name, "a") == 0)
		(*(int *)data)++;
}

static void inotify_read_once_hands_over_every_queued_event(void **state)
{
	struct dir *d = *state;
	int seen = 0;
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

	assert_true(fd >= 0);
	assert_true(inotify_add_watch(fd, d->path, IN_CREATE | IN_DELETE) >= 0);
	cleanup_free char *a = xasprintf("%s/a", d->path);
	for (int i = 0; i < 3; i++) {
		int f = open(a, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		assert_true(f >= 0);
		close(f);
		assert_int_equal(unlink(a), 0);
	}
	assert_true(inotify_read_once(fd, count_event, &seen) > 0); /* one buffer holds all */
	assert_int_equal(seen, 6); /* three creations, three deletions */
	assert_int_equal(inotify_read_once(fd, count_event, &seen), 0); /* empty: no-op */
	assert_int_equal(seen, 6);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		unix_socket_bind_replaces_a_dead_socket_but_never_a_live_one, setup, teardown),
	    cmocka_unit_test_setup_teardown(unix_socket_bind_refuses_a_file_that_is_not_a_socket,
					    setup, teardown),
	    cmocka_unit_test(unix_address_refuses_a_path_longer_than_sun_path),
	    cmocka_unit_test_setup_teardown(
		loop_listener_waits_for_an_fd_and_resumes_when_one_is_released, setup, teardown),
	    cmocka_unit_test_setup_teardown(inotify_read_once_hands_over_every_queued_event, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
