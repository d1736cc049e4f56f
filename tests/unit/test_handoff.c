/* Handoff state machine against real unix sockets, real SCM_RIGHTS and real peer
 * processes, driven by the real loop: consumption, retries, timeouts, expiry,
 * replacement, stale sockets, fd leaks and idle timers. */
#include "test_handoff_fixture.h"

static void handoff_kubevirt_like_receiver_consumes_offer_and_socket_is_unlinked(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	start(f);
	const char *path = offer(f, "iommufd0", "/dev/null");
	assert_int_equal(strncmp(path, f->socket_dir, strlen(f->socket_dir)), 0);
	assert_non_null(strstr(path, "/iommufd0-"));
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(handoff_pending(f->handoff), 1);

	struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};
	pid_t pid = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
	expect_child(pid);

	assert_false(path_exists(path));
	assert_int_equal(handoff_pending(f->handoff), 0);
	assert_int_equal(handoff_stats(f->handoff)->offered, 1);
	assert_int_equal(handoff_stats(f->handoff)->peer_gone, 0);
}

static void handoff_any_byte_after_taking_the_fd_acknowledges(void **state)
{
	struct fixture *f = *state;

	start(f);
	const char *path = offer(f, "iommufd0", "/dev/null");
	struct peer_args a = {.path = path, .expected_rdev = f->null_rdev, .ack = "garbage!"};
	pid_t pid = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
	expect_child(pid);
	assert_false(path_exists(path));
}

static void handoff_peer_that_disconnects_before_ack_leaves_offer_for_retry(void **state)
{
	struct fixture *f = *state;
	const struct handoff_stats *s;

	start(f);
	s = handoff_stats(f->handoff);
	const char *path = offer(f, "iommufd0", "/dev/null");
	struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};

	pid_t pid = test_fork(receive_and_hang_up, &a);
	assert_true(run_until_counter(f, &s->peer_gone, 1, 10000));
	expect_child(pid);
	pid = test_fork(connect_and_hang_up, &a);
	assert_true(run_until_counter(f, &s->peer_gone, 2, 10000));
	expect_child(pid);
	assert_int_equal(s->consumed, 0);
	assert_int_equal(handoff_pending(f->handoff), 1);
	assert_true(path_exists(path));

	pid = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &s->consumed, 1, 10000));
	expect_child(pid);
	assert_false(path_exists(path));
}

static void handoff_peer_that_never_acks_times_out(void **state)
{
	struct fixture *f = *state;
	const struct handoff_stats *s;

	f->opts.ack_timeout_usec = 200 * 1000;
	start(f);
	s = handoff_stats(f->handoff);
	const char *path = offer(f, "iommufd0", "/dev/null");
	struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};

	unsigned long long t0 = now_usec();
	pid_t pid = test_fork(receive_and_never_ack, &a);
	assert_true(run_until_counter(f, &s->ack_timeouts, 1, 10000));
	assert_true(now_usec() - t0 >= 200 * 1000);
	expect_child(pid);
	assert_int_equal(s->consumed, 0);
	assert_int_equal(handoff_pending(f->handoff), 1);
	assert_true(path_exists(path));

	pid = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &s->consumed, 1, 10000));
	expect_child(pid);
}

static void handoff_peer_answering_without_taking_the_fd_does_not_consume(void **state)
{
	struct fixture *f = *state;
	const struct handoff_stats *s;

	start(f);
	s = handoff_stats(f->handoff);
	const char *path = offer(f, "iommufd0", "/dev/null");
	struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};

	pid_t pid = test_fork(answer_without_taking_fd, &a);
	assert_true(run_until_counter(f, &s->refused, 1, 10000));
	expect_child(pid);
	assert_int_equal(s->consumed, 0);
	assert_true(path_exists(path));

	pid = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &s->consumed, 1, 10000));
	expect_child(pid);
}

static void handoff_unclaimed_offer_expires_after_ttl(void **state)
{
	struct fixture *f = *state;

	f->opts.ttl_usec = 200 * 1000;
	start(f);
	unsigned long long t0 = now_usec();
	const char *path = offer(f, "iommufd0", "/dev/null");
	assert_true(run_until_counter(f, &handoff_stats(f->handoff)->expired, 1, 10000));
	assert_true(now_usec() - t0 >= 200 * 1000);
	assert_false(path_exists(path));
	assert_int_equal(handoff_pending(f->handoff), 0);
	/* The offered fd is closed too: teardown counts the fds. */
}

static void handoff_reoffer_of_same_device_id_replaces_old_offer(void **state)
{
	struct fixture *f = *state;

	start(f);
	const char *old_path = offer(f, "iommufd3", "/dev/null");
	const char *new_path = offer(f, "iommufd3", "/dev/zero");
	assert_string_not_equal(old_path, new_path);
	assert_false(path_exists(old_path));
	assert_true(path_exists(new_path));
	assert_int_equal(handoff_stats(f->handoff)->replaced, 1);
	assert_int_equal(handoff_pending(f->handoff), 1);

	/* The peer gets the new fd. */
	struct peer_args a = {.path = new_path, .expected_rdev = f->zero_rdev};
	pid_t pid = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
	expect_child(pid);
}

static void bind_and_close(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	assert_int_equal(bind(s, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(s);
}

/* The rescue's fd source: /dev/null, as the device plugin would open the iommufd. */
static int open_null(void *data, const char *device_id, int *fd, struct error *e)
{
	(void)device_id;
	(void)e;
	(*(int *)data)++;
	*fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	return *fd < 0 ? -errno : 0;
}

static bool socket_is_live(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	assert_true(s >= 0);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	bool live = connect(s, (struct sockaddr *)&addr, sizeof(addr)) == 0;
	close(s);
	return live;
}

static void handoff_rescue_reserves_dead_sockets_and_touches_nothing_else(void **state)
{
	struct fixture *f = *state;
	char *run = xasprintf("%s/run", f->dir);
	char *dead = xasprintf("%s/iommufd0-7.sock", f->socket_dir);
	char *nameless = xasprintf("%s/stale.sock", f->socket_dir);
	char *regular = xasprintf("%s/notes.sock", f->socket_dir);
	char *other = xasprintf("%s/other-socket", f->socket_dir);
	int opened = 0;

	assert_int_equal(mkdir(run, 0700), 0);
	assert_int_equal(mkdir(f->socket_dir, 0700), 0);
	bind_and_close(dead);
	bind_and_close(nameless);
	bind_and_close(other);
	int fd = open(regular, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);

	start(f);
	assert_int_equal(handoff_rescue(f->handoff, open_null, &opened), 1);
	assert_int_equal(opened, 1);
	assert_true(socket_is_live(dead));   /* the same path, served again */
	assert_false(path_exists(nameless)); /* no device id in its name: removed */
	assert_true(path_exists(regular));
	assert_true(path_exists(other));
	assert_int_equal(handoff_pending(f->handoff), 1);
	assert_int_equal(handoff_stats(f->handoff)->rescued, 1);
	free(run);
	free(dead);
	free(nameless);
	free(regular);
	free(other);
}

/* Our instance dir's name in the socket dir (12 hex digits). Caller frees. */
static char *own_instance_dir(struct fixture *f)
{
	DIR *d = opendir(f->socket_dir);
	struct dirent *de;
	char *path = NULL;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strlen(de->d_name) == 12 && strspn(de->d_name, "0123456789abcdef") == 12)
			path = xasprintf("%s/%s", f->socket_dir, de->d_name);
	closedir(d);
	assert_non_null(path);
	return path;
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int entries = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		entries++;
	closedir(d);
	return entries == 2; /* "." and ".." */
}

/* Issue 19 Must 1: our instance dir is held by an fd, so a symlink put in its place
 * after start (here by root: the socket dir is 0700) leads nowhere; the offer's
 * socket is made, chowned and labelled in the dir we created. */
static void handoff_offer_follows_no_symlink_put_in_place_of_its_instance_dir(void **state)
{
	struct fixture *f = *state;
	char *target = xasprintf("%s/elsewhere", f->dir);
	char *moved = xasprintf("%s/moved", f->socket_dir);
	struct stat st;

	if (geteuid() == 0) /* the fchownat must not go through the symlink either */
		f->opts.socket_uid = f->opts.socket_gid = 107;
	start(f);
	char *own = own_instance_dir(f);
	assert_int_equal(mkdir(target, 0755), 0);
	assert_int_equal(rename(own, moved), 0);
	assert_int_equal(symlink(target, own), 0);

	const char *path = offer(f, "iommufd0", "/dev/null");
	assert_true(dir_is_empty(target)); /* nothing was made through the symlink */
	assert_int_equal(lstat(target, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0755); /* nor chmod-ed */
	char *real = xasprintf("%s/%s", moved, strrchr(path, '/') + 1);
	assert_int_equal(lstat(real, &st), 0); /* the sentinel: it is in our own dir */
	assert_true(S_ISSOCK(st.st_mode));
	if (geteuid() == 0)
		assert_int_equal(st.st_uid, 107);
	free(real);
	free(own);
	free(moved);
	free(target);
}

/* A symlink named like an instance dir, to a dir with a free lock and a dead socket,
 * is not adopted: nothing is re-served or removed through it. */
static void handoff_rescue_adopts_no_symlink_named_like_an_instance_dir(void **state)
{
	struct fixture *f = *state;
	char *run = xasprintf("%s/run", f->dir);
	char *target = xasprintf("%s/elsewhere", f->dir);
	char *lock = xasprintf("%s/.lock", target);
	char *dead = xasprintf("%s/iommufd0-3.sock", target);
	char *link = xasprintf("%s/0123456789ab", f->socket_dir);
	char *legacy = xasprintf("%s/iommufd1-1.sock", f->socket_dir);
	int opened = 0;

	assert_int_equal(mkdir(run, 0700), 0);
	assert_int_equal(mkdir(f->socket_dir, 0700), 0);
	assert_int_equal(mkdir(target, 0755), 0);
	int fd = open(lock, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	bind_and_close(dead);
	assert_int_equal(symlink(target, link), 0);
	bind_and_close(legacy); /* the sentinel: a real dead socket, re-served */

	start(f);
	assert_int_equal(handoff_rescue(f->handoff, open_null, &opened), 1);
	assert_int_equal(opened, 1);
	assert_true(socket_is_live(legacy));
	assert_true(path_exists(dead));
	assert_false(socket_is_live(dead)); /* not served through the symlink */
	free(legacy);
	free(link);
	free(dead);
	free(lock);
	free(target);
	free(run);
}

static void handoff_creates_socket_dir_0700_and_sockets_with_configured_mode(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	start(f);
	assert_int_equal(stat(f->socket_dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	const char *path = offer(f, "iommufd0", "/dev/null");
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0666);
}

static void handoff_sockets_get_configured_owner_and_mode(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	if (geteuid() != 0)
		skip();
	f->opts.socket_mode = 0600;
	f->opts.socket_uid = 107;
	f->opts.socket_gid = 107;
	start(f);
	const char *path = offer(f, "iommufd0", "/dev/null");
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_uid, 107);
	assert_int_equal(st.st_gid, 107);
}

static void handoff_rejects_device_ids_that_could_escape_the_socket_dir(void **state)
{
	struct fixture *f = *state;
	const char *bad[] = {"../evil",
			     "a/b",
			     "",
			     ".hidden",
			     "x y",
			     "iommufd0\n",
			     "0123456789012345678901234567890123456789012345678901234567890123X"};

	start(f);
	int fds = test_count_open_fds();
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *path = NULL;
		struct error e = {0};
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		assert_int_equal(handoff_offer(f->handoff, bad[i], fd, &path, &e), -EINVAL);
		assert_int_equal(e.code, -EINVAL);
		assert_non_null(strstr(e.message, "invalid device id"));
		assert_null(path);
	}
	/* The fd is taken even on failure. */
	assert_int_equal(test_count_open_fds(), fds);
	assert_int_equal(handoff_pending(f->handoff), 0);
	assert_int_equal(handoff_stats(f->handoff)->offered, 0);
}

static void handoff_free_leaves_pending_sockets_for_the_next_instance(void **state)
{
	struct fixture *f = *state;
	int opened = 0;

	start(f);
	const char *a = offer(f, "iommufd0", "/dev/null");
	const char *b = offer(f, "iommufd1", "/dev/null");
	handoff_free(f->handoff);
	f->handoff = NULL;
	/* Still there, but nobody answers: the container would get ECONNREFUSED... */
	assert_true(path_exists(a));
	assert_false(socket_is_live(a));
	/* ...until the next instance re-serves both at the same paths. */
	start(f);
	assert_int_equal(handoff_rescue(f->handoff, open_null, &opened), 2);
	assert_true(socket_is_live(a));
	assert_true(socket_is_live(b));
	assert_int_equal(handoff_pending(f->handoff), 2);
}

static void handoff_rescue_leaves_a_live_instance_alone(void **state)
{
	struct fixture *f = *state;
	struct handoff *second = NULL;
	int opened = 0;

	start(f);
	const char *a = offer(f, "iommufd0", "/dev/null");
	assert_int_equal(handoff_new(f->loop, &f->opts, &second), 0);
	assert_int_equal(handoff_rescue(second, open_null, &opened), 0);
	assert_int_equal(opened, 0);
	assert_true(socket_is_live(a));
	assert_int_equal(handoff_pending(f->handoff), 1);
	/* A consumed offer's dir goes with its instance; nothing is left for the next. */
	handoff_free(second);
}

static void handoff_keep_holds_an_offer_past_its_ttl(void **state)
{
	struct fixture *f = *state;

	f->opts.ttl_usec = 100000;
	start(f);
	const char *path = offer(f, "iommufd0", "/dev/null");
	handoff_keep(f->handoff, path, now_usec() + 60ULL * 1000000);
	/* Run the loop for well past the TTL: the kept offer stays. */
	loop_run_once(f->loop, 400);
	loop_run_once(f->loop, 100);
	assert_int_equal(handoff_stats(f->handoff)->expired, 0);
	assert_true(socket_is_live(path));
}

static void handoff_withdraw_removes_an_offer_and_counts_it_withdrawn(void **state)
{
	struct fixture *f = *state;

	start(f);
	const char *kept = offer(f, "iommufd0", "/dev/null");
	const char *withdrawn = offer(f, "iommufd1", "/dev/null");
	handoff_withdraw(f->handoff, withdrawn);
	assert_false(path_exists(withdrawn));
	assert_true(path_exists(kept));
	assert_int_equal(handoff_pending(f->handoff), 1);
	/* Counters only go up: the withdrawn offer is counted apart, not subtracted. */
	assert_int_equal(handoff_stats(f->handoff)->offered, 2);
	assert_int_equal(handoff_stats(f->handoff)->withdrawn, 1);
	handoff_withdraw(f->handoff, withdrawn); /* no such offer any more: no-op */
	assert_int_equal(handoff_pending(f->handoff), 1);
	assert_int_equal(handoff_stats(f->handoff)->withdrawn, 1);
}

static void handoff_arms_no_timer_while_nothing_is_pending(void **state)
{
	struct fixture *f = *state;

	start(f);
	assert_int_equal(test_count_armed_timerfds(), 0);
	const char *path = offer(f, "iommufd0", "/dev/null");
	assert_int_equal(test_count_armed_timerfds(), 1); /* the TTL */

	struct peer_args a = {.path = path, .expected_rdev = f->null_rdev};
	pid_t pid = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &handoff_stats(f->handoff)->consumed, 1, 10000));
	expect_child(pid);
	/* Idle: no timer armed, and no fd has anything to say. */
	assert_int_equal(test_count_armed_timerfds(), 0);
	assert_int_equal(loop_run_once(f->loop, 0), 0);
}

static void withdraw_from_the_listener(void *data, size_t pending)
{
	struct fixture *f = data;

	if (pending > 0)
		handoff_withdraw(f->handoff, "/nonexistent.sock"); /* breaks the rule */
}

/* handoff_pending_fn must not offer or withdraw: the handoff asserts it (a debug build's
 * abort) instead of changing its offers in the middle of a change. */
static void handoff_a_pending_listener_that_withdraws_is_stopped(void **state)
{
	struct fixture *f = *state;

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct handoff_pending_listener l = {0};
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO); /* the expected assertion message */
		start(f);
		handoff_add_pending_listener(f->handoff, &l, withdraw_from_the_listener, f);
		offer(f, "iommufd0", "/dev/null");
		_exit(0); /* not stopped: the rule is not enforced */
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(handoff_kubevirt_like_receiver_consumes_offer_and_socket_is_unlinked),
	    T(handoff_any_byte_after_taking_the_fd_acknowledges),
	    T(handoff_peer_that_disconnects_before_ack_leaves_offer_for_retry),
	    T(handoff_peer_that_never_acks_times_out),
	    T(handoff_peer_answering_without_taking_the_fd_does_not_consume),
	    T(handoff_unclaimed_offer_expires_after_ttl),
	    T(handoff_reoffer_of_same_device_id_replaces_old_offer),
	    T(handoff_rescue_reserves_dead_sockets_and_touches_nothing_else),
	    T(handoff_offer_follows_no_symlink_put_in_place_of_its_instance_dir),
	    T(handoff_rescue_adopts_no_symlink_named_like_an_instance_dir),
	    T(handoff_creates_socket_dir_0700_and_sockets_with_configured_mode),
	    T(handoff_sockets_get_configured_owner_and_mode),
	    T(handoff_rejects_device_ids_that_could_escape_the_socket_dir),
	    T(handoff_free_leaves_pending_sockets_for_the_next_instance),
	    T(handoff_rescue_leaves_a_live_instance_alone),
	    T(handoff_keep_holds_an_offer_past_its_ttl),
	    T(handoff_withdraw_removes_an_offer_and_counts_it_withdrawn),
	    T(handoff_arms_no_timer_while_nothing_is_pending),
	    T(handoff_a_pending_listener_that_withdraws_is_stopped),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
