/* Handoff against hostile peers: a thousand connections that never read or send
 * garbage must not delay another allocation, and one offer serves at most
 * max_peers connections at a time. Real sockets, real peer processes. */
#include "test_handoff_fixture.h"

struct crowd_args {
	const char *path;
	int connections; /* attempts */
	int hold;	 /* connections kept open */
	int ready_fd, done_fd;
};

/* Opens many connections that never read (some send garbage), tells the parent how
 * many connected (the rest found the backlog full), and holds them until the parent
 * says done. */
static int hostile_crowd(void *data)
{
	struct crowd_args *a = data;
	int held[256], count = 0, connected = 0;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	char c;

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", a->path);
	for (int i = 0; i < a->connections; i++) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		CHILD_CHECK(s >= 0);
		if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
			CHILD_CHECK(errno == EAGAIN);
			close(s);
			continue;
		}
		connected++;
		if (i % 10 == 0)
			CHILD_CHECK(write(s, "garbage", 7) == 7);
		if (count < a->hold && count < (int)ARRAY_SIZE(held))
			held[count++] = s;
		else
			close(s);
	}
	CHILD_CHECK(write(a->ready_fd, &connected, sizeof(connected)) == sizeof(connected));
	CHILD_CHECK(read(a->done_fd, &c, 1) >= 0);
	for (int i = 0; i < count; i++)
		close(held[i]);
	return 0;
}

static bool fd_readable(void *data)
{
	struct pollfd p = {.fd = *(int *)data, .events = POLLIN};

	return poll(&p, 1, 0) == 1;
}

static void handoff_thousand_hostile_connects_do_not_block_a_good_peer(void **state)
{
	struct fixture *f = *state;
	int ready[2], done[2];

	start(f);
	const struct handoff_stats *s = handoff_stats(f->handoff);
	const char *hostile_path = offer(f, "iommufd0", "/dev/null");
	const char *good_path = offer(f, "iommufd1", "/dev/zero");
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(done, O_CLOEXEC), 0);
	struct crowd_args c = {.path = hostile_path,
			       .connections = 1000,
			       .hold = 200,
			       .ready_fd = ready[1],
			       .done_fd = done[0]};
	pid_t crowd = test_fork(hostile_crowd, &c);
	assert_true(test_run_until(f->loop, fd_readable, &ready[0], 20000));

	/* The default 10 s ACK timeout holds the crowd's slots; the good peer on the
	 * other allocation must not wait for any of it: it is served while every
	 * hostile slot is still held (no ACK timeout has freed one yet). */
	struct peer_args a = {.path = good_path, .expected_rdev = f->zero_rdev};
	pid_t good = test_fork(receive_like_kubevirt, &a);
	assert_true(run_until_counter(f, &s->consumed, 1, 30000));
	assert_int_equal(s->ack_timeouts, 0);
	expect_child(good);
	assert_false(path_exists(good_path));
	assert_true(path_exists(hostile_path));
	assert_int_equal(handoff_pending(f->handoff), 1);

	assert_int_equal(write(done[1], "d", 1), 1);
	expect_child(crowd);
	close(done[1]);
	close(ready[0]);
	close(ready[1]);
	close(done[0]);
}

static void handoff_serves_at_most_max_peers_connections_per_offer(void **state)
{
	struct fixture *f = *state;
	int ready[2], done[2];

	start(f);
	const struct handoff_stats *s = handoff_stats(f->handoff);
	const char *path = offer(f, "iommufd0", "/dev/null");
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(done, O_CLOEXEC), 0);
	int sockets_before = test_count_fds_like("socket:");
	struct crowd_args c = {
	    .path = path, .connections = 20, .hold = 20, .ready_fd = ready[1], .done_fd = done[0]};
	pid_t crowd = test_fork(hostile_crowd, &c);
	assert_true(test_run_until(f->loop, fd_readable, &ready[0], 10000));
	int connected = 0;
	assert_int_equal(read(ready[0], &connected, sizeof(connected)), sizeof(connected));
	assert_true(connected > HANDOFF_DEFAULT_MAX_PEERS + 2);
	/* The crowd has connected and written all it will: run until nothing is ready.
	 * Peers that sent garbage are refused, the next ones take their places. */
	int rounds = 0;
	while (loop_run_once(f->loop, 0) > 0)
		assert_true(++rounds < 10000);
	assert_true(s->refused >= 1);
	assert_int_equal(test_count_fds_like("socket:") - sockets_before,
			 HANDOFF_DEFAULT_MAX_PEERS);

	assert_int_equal(write(done[1], "d", 1), 1);
	expect_child(crowd);
	close(done[1]);
	/* Every connection ends as refused or gone; none consumed the offer. */
	unsigned long long deadline = now_usec() + 10000000;
	while (s->peer_gone + s->refused < (unsigned)connected && now_usec() < deadline)
		loop_run_once(f->loop, 10);
	assert_int_equal(s->peer_gone + s->refused, connected);
	assert_int_equal(s->consumed, 0);
	assert_true(path_exists(path));
	close(ready[0]);
	close(ready[1]);
	close(done[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(handoff_thousand_hostile_connects_do_not_block_a_good_peer),
	    T(handoff_serves_at_most_max_peers_connections_per_offer),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
