/* The loop's shared building blocks: deferrals run in queue order; a listener accepts
 * a bounded number per wake-up and honours its connection cap; the deadline list
 * fires in deadline order and re-arms on every change; the log rate limit counts
 * after the first; the inotify source hands over a batch then says it is done.
 * Orders and counts are asserted, never elapsed times. */
#include "test_helpers.h"

#include "loop/deadline_list.h"
#include "loop/log_ratelimit.h"
#include "loop/loop.h"
#include "loop/loop_inotify.h"
#include "util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

struct order {
	char seen[8];
	int count;
	struct loop *loop;
	struct loop_defer *late; /* queued by 'B' while the queue runs */
};

static void record(struct order *o, char c)
{
	assert_true(o->count < (int)sizeof(o->seen) - 1);
	o->seen[o->count++] = c;
}

static void defer_a(void *data)
{
	record(data, 'A');
}
static void defer_d(void *data)
{
	record(data, 'D');
}
static void defer_c(void *data)
{
	record(data, 'C');
}
static void defer_b(void *data)
{
	struct order *o = data;

	record(o, 'B');
	loop_defer(o->loop, o->late, defer_d, o);
}

static void deferred_work_runs_in_the_order_it_was_queued(void **state)
{
	struct loop *loop;
	struct loop_defer a = {0}, b = {0}, c = {0}, d = {0};
	struct order o = {0};
	(void)state;

	assert_int_equal(loop_new(&loop), 0);
	o.loop = loop;
	o.late = &d;
	loop_defer(loop, &a, defer_a, &o);
	loop_defer(loop, &b, defer_b, &o);
	loop_defer(loop, &c, defer_c, &o);
	loop_defer(loop, &a, defer_a, &o); /* already queued: no-op */
	assert_int_equal(loop_run_once(loop, 0), 0);
	assert_string_equal(o.seen, "ABCD");
	loop_free(loop);
}

struct accepted {
	int count;
	int fds[64];
};

static void keep(void *data, int fd)
{
	struct accepted *a = data;

	assert_true(a->count < (int)ARRAY_SIZE(a->fds));
	a->fds[a->count++] = fd;
}

/* A TCP listener on 127.0.0.1 with a backlog for every client, and n clients
 * connected (the kernel completes the handshakes before accept). */
static int listen_and_connect(int n, int *clients)
{
	struct sockaddr_in addr = {.sin_family = AF_INET,
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 128), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &len), 0);
	for (int i = 0; i < n; i++) {
		clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(clients[i] >= 0);
		assert_int_equal(connect(clients[i], (struct sockaddr *)&addr, sizeof(addr)), 0);
	}
	return lfd;
}

static void a_listener_accepts_a_bounded_number_per_wakeup(void **state)
{
	enum { CLIENTS = 40 };
	struct loop *loop;
	struct loop_listener l = {0};
	struct accepted a = {0};
	int clients[CLIENTS];
	(void)state;

	assert_int_equal(loop_new(&loop), 0);
	int lfd = listen_and_connect(CLIENTS, clients);
	assert_int_equal(loop_listener_start(loop, &l, lfd, "test", keep, &a), 0);

	assert_int_equal(loop_run_once(loop, 5000), 1);
	assert_int_equal(a.count, LOOP_ACCEPT_PER_WAKEUP); /* then back to epoll_wait */
	/* Level-triggered: the rest come on the next wake-ups, a bounded batch each. */
	for (int i = 0; i < 10 && a.count < CLIENTS; i++) {
		int before = a.count;
		assert_true(loop_run_once(loop, 5000) >= 1);
		assert_true(a.count - before <= LOOP_ACCEPT_PER_WAKEUP);
	}
	assert_int_equal(a.count, CLIENTS);

	for (int i = 0; i < CLIENTS; i++) {
		close(clients[i]);
		close(a.fds[i]);
	}
	loop_listener_stop(&l);
	close(lfd);
	loop_free(loop);
}

static void sentinel_fired(void *data)
{
	(*(int *)data)++;
}

/* Runs the loop until a timer armed now fires: every fd ready before it (a watched
 * listener with a backlog) has had its wake-up by then. */
static void run_until_sentinel(struct loop *loop)
{
	struct loop_timer t;
	int fired = 0;

	loop_timer_init(loop, &t, sentinel_fired, &fired);
	loop_timer_arm(&t, 1);
	for (int i = 0; i < 100 && !fired; i++)
		assert_true(loop_run_once(loop, 5000) >= 0);
	assert_int_equal(fired, 1);
	loop_timer_destroy(&t);
}

static void the_connection_cap_holds_the_listener_until_one_closes(void **state)
{
	struct loop *loop;
	struct loop_listener l = {0};
	struct accepted a = {0};
	int clients[3];
	(void)state;

	assert_int_equal(loop_new(&loop), 0);
	int lfd = listen_and_connect(3, clients);
	assert_int_equal(loop_listener_start(loop, &l, lfd, "test", keep, &a), 0);
	loop_listener_set_cap(&l, 2);

	run_until_sentinel(loop);
	assert_int_equal(a.count, 2);
	assert_true(loop_listener_full(&l));
	run_until_sentinel(loop); /* the third waits in the backlog */
	assert_int_equal(a.count, 2);

	close(a.fds[0]);
	loop_listener_closed(&l);
	assert_false(loop_listener_full(&l));
	run_until_sentinel(loop);
	assert_int_equal(a.count, 3);

	for (int i = 0; i < 3; i++)
		close(clients[i]);
	for (int i = 1; i < 3; i++)
		close(a.fds[i]);
	loop_listener_stop(&l);
	close(lfd);
	loop_free(loop);
}

struct owner {
	struct deadline_entry entry;
	char name;
	struct order *o;
};

static void owner_expired(void *data, struct deadline_entry *entry)
{
	struct owner *w = container_of(entry, struct owner, entry);
	(void)data;

	record(w->o, w->name);
}

static void the_deadline_list_fires_in_deadline_order_as_moved(void **state)
{
	struct loop *loop;
	struct deadline_list dl;
	struct order o = {0};
	struct owner w[4] = {{.name = 'A'}, {.name = 'B'}, {.name = 'C'}, {.name = 'D'}};
	(void)state;

	assert_int_equal(loop_new(&loop), 0);
	deadline_list_init(loop, &dl, owner_expired, NULL);
	unsigned long long now = now_usec();
	for (int i = 0; i < 4; i++) {
		w[i].o = &o;
		deadline_entry_init(&w[i].entry);
	}
	/* All in the past, so one wake-up fires every one still set. */
	deadline_set(&dl, &w[0].entry, now - 400);
	deadline_set(&dl, &w[1].entry, now - 300);
	deadline_set(&dl, &w[2].entry, now - 200);
	deadline_set(&dl, &w[3].entry, now - 100);
	deadline_set(&dl, &w[0].entry, now - 50); /* moved: now last */
	deadline_cancel(&dl, &w[2].entry);	  /* cancelled: never fires */
	assert_true(loop_timer_armed(&dl.timer)); /* armed for B, the head */
	assert_int_equal(loop_run_once(loop, 5000), 1);
	assert_string_equal(o.seen, "BDA");
	assert_false(loop_timer_armed(&dl.timer)); /* empty: disarmed */
	deadline_list_destroy(&dl);
	loop_free(loop);
}

static void the_log_rate_limit_logs_the_first_and_counts_the_rest(void **state)
{
	struct loop *loop;
	struct log_ratelimit rl;
	(void)state;

	assert_int_equal(loop_new(&loop), 0);
	log_ratelimit_init(loop, &rl, LOG_RATELIMIT_INTERVAL_USEC, "test events");
	assert_true(log_ratelimit_allow(&rl));
	for (int i = 0; i < 1000; i++)
		assert_false(log_ratelimit_allow(&rl));
	assert_int_equal(rl.suppressed, 1000);
	log_ratelimit_destroy(&rl); /* flushes the count */
	assert_int_equal(rl.suppressed, 0);
	loop_free(loop);
}

struct inotify_seen {
	int events, batches;
};

static void count_inotify_event(void *data, const struct inotify_event *ev)
{
	struct inotify_seen *s = data;

	if (ev->len && strncmp(ev->name, "f", 1) == 0)
		s->events++;
}

static void count_inotify_batch(void *data)
{
	((struct inotify_seen *)data)->batches++;
}

static void the_inotify_source_hands_over_a_batch_then_says_done(void **state)
{
	struct loop *loop;
	struct loop_inotify in = {0};
	struct inotify_seen seen = {0};
	char dir[] = "/tmp/test_loop_inotify.XXXXXX";
	char path[64];
	(void)state;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(loop_new(&loop), 0);
	assert_int_equal(loop_inotify_start(loop, &in, dir, IN_CREATE, count_inotify_event,
					    count_inotify_batch, &seen),
			 0);
	assert_true(loop_inotify_started(&in));
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/f%d", dir, i);
		int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(loop_run_once(loop, 5000), 1);
	assert_int_equal(seen.events, 3);
	assert_int_equal(seen.batches, 1);
	loop_inotify_stop(&in);
	assert_false(loop_inotify_started(&in));
	loop_inotify_stop(&in); /* twice: a no-op */
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/f%d", dir, i);
		unlink(path);
	}
	rmdir(dir);
	/* A symlink is refused. */
	assert_int_equal(symlink("/tmp", dir), 0);
	int r = loop_inotify_start(loop, &in, dir, IN_CREATE, count_inotify_event, NULL, &seen);
	assert_true(r == -ENOTDIR || r == -ELOOP);
	unlink(dir);
	loop_free(loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(deferred_work_runs_in_the_order_it_was_queued),
	    cmocka_unit_test(a_listener_accepts_a_bounded_number_per_wakeup),
	    cmocka_unit_test(the_connection_cap_holds_the_listener_until_one_closes),
	    cmocka_unit_test(the_deadline_list_fires_in_deadline_order_as_moved),
	    cmocka_unit_test(the_log_rate_limit_logs_the_first_and_counts_the_rest),
	    cmocka_unit_test(the_inotify_source_hands_over_a_batch_then_says_done),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
