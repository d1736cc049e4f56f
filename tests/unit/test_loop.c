/* The loop's timers: all of them on one timerfd, fired earliest first, each once;
 * re-arming, disarming and destroying; a callback that arms for a past deadline;
 * and no wake-up while nothing is armed. Orders and counts are asserted, never
 * elapsed times. */
#include "test_helpers.h"

#include "loop/loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define TIMERS 5

struct fixture {
	struct loop *loop;
	struct loop_timer timers[TIMERS];
	int fired[TIMERS]; /* how often each fired */
	int order[16];	   /* the indexes in firing order */
	int order_count;
	int rearm_past;	   /* timer 0 arms itself for a past deadline this often */
	int destroy_other; /* timer 0 destroys this one when it fires, if >= 0 */
};

struct slot {
	struct fixture *f;
	int index;
};

static struct slot slots[TIMERS];

static void fired(void *data)
{
	struct slot *s = data;
	struct fixture *f = s->f;

	f->fired[s->index]++;
	if (f->order_count < (int)ARRAY_SIZE(f->order))
		f->order[f->order_count++] = s->index;
	if (s->index != 0)
		return;
	if (f->destroy_other >= 0)
		loop_timer_destroy(&f->timers[f->destroy_other]);
	if (f->rearm_past > 0) {
		f->rearm_past--;
		loop_timer_arm_at(&f->timers[0], 1); /* long past */
	}
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	assert_int_equal(loop_new(&f->loop), 0);
	f->destroy_other = -1;
	for (int i = 0; i < TIMERS; i++) {
		slots[i] = (struct slot){.f = f, .index = i};
		loop_timer_init(f->loop, &f->timers[i], fired, &slots[i]);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < TIMERS; i++)
		loop_timer_destroy(&f->timers[i]);
	loop_free(f->loop);
	free(f);
	return 0;
}

static bool all_fired(void *data)
{
	struct fixture *f = data;

	for (int i = 0; i < TIMERS; i++)
		if (!f->fired[i])
			return false;
	return true;
}

/* The it_value of this process's one armed timerfd, in microseconds (fdinfo
 * "it_value: (sec, nsec)"); -1 when none or several are armed. */
static long long armed_timerfd_remaining_usec(void)
{
	DIR *d = opendir("/proc/self/fdinfo");
	struct dirent *de;
	long long remaining = -1;
	int armed = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char line[256];
		long long sec, nsec;
		int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		FILE *f = fdopen(fd, "re");
		assert_non_null(f);
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "it_value: (%lld, %lld)", &sec, &nsec) == 2 &&
			    (sec || nsec)) {
				armed++;
				remaining = sec * 1000000 + nsec / 1000;
			}
		fclose(f);
	}
	closedir(d);
	return armed == 1 ? remaining : -1;
}

static void timers_share_one_timerfd_and_fire_earliest_first(void **state)
{
	struct fixture *f = *state;
	unsigned long long now = now_usec();

	/* Armed out of order, seconds ahead so that none can be due while we look: the
	 * one timerfd is armed for the earliest (100 s), not for the first armed (500 s). */
	static const int at_s[TIMERS] = {500, 100, 400, 200, 300};
	for (int i = 0; i < TIMERS; i++)
		loop_timer_arm_at(&f->timers[i], now + (unsigned long long)at_s[i] * 1000000);
	assert_int_equal(test_count_fds_like("anon_inode:[timerfd]"), 1);
	long long remaining = armed_timerfd_remaining_usec();
	assert_true(remaining > 0 && remaining <= 100LL * 1000000);
	assert_true(remaining > 50LL * 1000000); /* not timer 3's, nor any sooner one */
	/* Moved into the past in the same order, all are due at one wake-up: they still
	 * run earliest first, each once. */
	for (int i = 0; i < TIMERS; i++)
		loop_timer_arm_at(&f->timers[i], (unsigned long long)at_s[i]);
	assert_true(test_run_until(f->loop, all_fired, f, 10000));
	static const int expected[TIMERS] = {1, 3, 4, 2, 0};
	for (int i = 0; i < TIMERS; i++) {
		assert_int_equal(f->order[i], expected[i]);
		assert_int_equal(f->fired[i], 1);
		assert_false(loop_timer_armed(&f->timers[i]));
	}
	assert_int_equal(test_count_armed_timerfds(), 0); /* nothing left: disarmed */
}

static void rearming_replaces_and_disarming_the_earliest_moves_the_timerfd(void **state)
{
	struct fixture *f = *state;

	loop_timer_arm(&f->timers[0], 1000);		/* the earliest ... */
	loop_timer_arm(&f->timers[1], 20000);		/* fires */
	loop_timer_arm(&f->timers[2], 60ULL * 1000000); /* a minute: never in this test */
	loop_timer_arm(&f->timers[3], 2000);
	loop_timer_arm(&f->timers[3], 60ULL * 1000000); /* re-armed later: not at 2 ms */
	loop_timer_arm(&f->timers[0], 0);		/* ... disarmed */
	assert_false(loop_timer_armed(&f->timers[0]));
	assert_true(loop_timer_armed(&f->timers[3]));
	/* The first wake-up is timer 1's: the timerfd left timer 0's deadline with it. */
	assert_true(loop_run_once(f->loop, 10000) > 0);
	assert_int_equal(f->fired[1], 1);
	assert_int_equal(f->order_count, 1); /* timer 1 alone: 0 and 3 did not fire */
	assert_int_equal(f->order[0], 1);
	assert_int_equal(test_count_armed_timerfds(), 1); /* for timers 2 and 3 */
	loop_timer_arm(&f->timers[2], 0);
	loop_timer_arm(&f->timers[3], 0);
	assert_int_equal(test_count_armed_timerfds(), 0);
}

static void nothing_armed_means_no_wakeup(void **state)
{
	struct fixture *f = *state;

	loop_timer_arm(&f->timers[0], 1000);
	loop_timer_arm(&f->timers[0], 0);
	assert_int_equal(test_count_armed_timerfds(), 0);
	assert_int_equal(loop_run_once(f->loop, 200), 0); /* no event: epoll_wait timed out */
	assert_int_equal(f->order_count, 0);
}

static void a_callback_arming_for_a_past_deadline_fires_on_the_next_wakeup(void **state)
{
	struct fixture *f = *state;

	f->rearm_past = 3;
	loop_timer_arm_at(&f->timers[0], 1); /* due long ago */
	/* Each wake-up fires it once, then it is due again: never a loop within one. */
	for (int i = 1; i <= 4; i++) {
		assert_true(loop_run_once(f->loop, 10000) > 0);
		assert_int_equal(f->fired[0], i);
	}
	assert_false(loop_timer_armed(&f->timers[0]));
	assert_int_equal(test_count_armed_timerfds(), 0);
}

static void a_timer_destroyed_by_another_does_not_fire_and_cannot_be_armed(void **state)
{
	struct fixture *f = *state;
	unsigned long long due = now_usec() + 1000;

	/* Due together (armed in this order: run in this order); timer 0 destroys 1. */
	f->destroy_other = 1;
	loop_timer_arm_at(&f->timers[0], due);
	loop_timer_arm_at(&f->timers[1], due);
	loop_timer_arm_at(&f->timers[2], due + 30000);
	while (!f->fired[2])
		assert_true(loop_run_once(f->loop, 10000) > 0);
	assert_int_equal(f->fired[0], 1);
	assert_int_equal(f->fired[1], 0);
	loop_timer_arm(&f->timers[1], 1000); /* destroyed: does nothing */
	assert_false(loop_timer_armed(&f->timers[1]));
	assert_int_equal(test_count_armed_timerfds(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(timers_share_one_timerfd_and_fire_earliest_first, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		rearming_replaces_and_disarming_the_earliest_moves_the_timerfd, setup, teardown),
	    cmocka_unit_test_setup_teardown(nothing_armed_means_no_wakeup, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		a_callback_arming_for_a_past_deadline_fires_on_the_next_wakeup, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		a_timer_destroyed_by_another_does_not_fire_and_cannot_be_armed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
