/* epoll event loop; its timers share one timerfd. See loop.h. */
#include "loop.h"
#include "../basic/error_text.h"
#include "../util.h"

#include "../log.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#define LOOP_BATCH 32

struct loop {
	int epoll_fd;
	bool quit;
	int exit_code;
	/* The batch being dispatched, so a removal can cancel events still pending in it. */
	struct epoll_event batch[LOOP_BATCH];
	int batch_count;
	struct list deferred; /* struct loop_defer.link, first queued first */
	struct list starved;  /* listeners waiting for an fd */
	bool released;	      /* a watch was removed (its fd is being closed) */
	struct loop_timer starved_retry;
	int timer_fd;
	struct loop_watch timer_watch;
	struct list timers;		      /* armed, earliest deadline first */
	unsigned long long timer_fd_deadline; /* what timer_fd is set for; 0: disarmed */
	unsigned long long firing_at;	      /* while timers fire: the now they fire for */
};

static void loop_listeners_resume(void *data);
static void loop_timers_fire(void *data, uint32_t events);

int loop_new(struct loop **out)
{
	struct loop *loop = xcalloc(1, sizeof(*loop));
	const char *what = "epoll_create1";
	int r;

	loop->timer_fd = -1;
	list_init(&loop->starved);
	list_init(&loop->deferred);
	list_init(&loop->timers);
	loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epoll_fd < 0)
		goto fail;
	what = "timerfd_create";
	loop->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (loop->timer_fd < 0)
		goto fail;
	what = "epoll_ctl";
	if (loop_watch_add(loop, &loop->timer_watch, loop->timer_fd, EPOLLIN, loop_timers_fire,
			   loop) < 0)
		goto fail;
	loop_timer_init(loop, &loop->starved_retry, loop_listeners_resume, loop);
	*out = loop;
	return 0;
fail:
	r = -errno;
	log_error("cannot create the event loop: %s: %s", what, error_text(-r));
	if (loop->timer_fd >= 0)
		close(loop->timer_fd);
	if (loop->epoll_fd >= 0)
		close(loop->epoll_fd);
	free(loop);
	return r;
}

static void loop_run_deferred(struct loop *loop);

void loop_free(struct loop *loop)
{
	if (!loop)
		return;
	/* Owners freed after the last run may have deferred their final release. */
	loop_run_deferred(loop);
	close(loop->timer_fd);
	close(loop->epoll_fd);
	free(loop);
}

int loop_watch_add(struct loop *loop, struct loop_watch *watch, int fd, uint32_t events,
		   loop_io_fn fn, void *data)
{
	struct epoll_event ev = {.events = events, .data.ptr = watch};

	watch->fn = fn;
	watch->data = data;
	watch->fd = fd;
	watch->events = events;
	if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	watch->added = 1;
	return 0;
}

int loop_watch_modify(struct loop *loop, struct loop_watch *watch, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = watch};

	if (watch->events == events)
		return 0;
	if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, watch->fd, &ev) < 0)
		return -errno;
	watch->events = events;
	return 0;
}

void loop_watch_remove(struct loop *loop, struct loop_watch *watch)
{
	if (!watch->added)
		return;
	/* Cannot fail for an fd we added and still own; nothing to do if it did. */
	(void)epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, watch->fd, NULL);
	watch->added = 0;
	for (int i = 0; i < loop->batch_count; i++)
		if (loop->batch[i].data.ptr == watch)
			loop->batch[i].data.ptr = NULL;
	/* Its fd is about to be closed: starved listeners may accept again once the
	 * batch and its deferred closes are done (loop_dispatch). */
	loop->released = true;
}

/* Sets the timerfd for the earliest armed deadline, or disarms it. A deadline
 * already due makes it fire at once. */
static void loop_timers_program(struct loop *loop)
{
	unsigned long long deadline =
	    list_empty(&loop->timers)
		? 0
		: list_first(&loop->timers, struct loop_timer, link)->deadline;

	if (deadline == loop->timer_fd_deadline || loop->firing_at)
		return; /* while firing: loop_timers_fire sets it once at the end */
	struct itimerspec its = {
	    .it_value.tv_sec = (time_t)(deadline / 1000000ULL),
	    .it_value.tv_nsec = (long)(deadline % 1000000ULL) * 1000L,
	};
	/* Only EINVAL or EFAULT are possible here, i.e. a bug of ours. */
	if (timerfd_settime(loop->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
		log_error("cannot set the loop's timerfd: %s", error_text(errno));
		return;
	}
	loop->timer_fd_deadline = deadline;
}

/* Runs every timer due at this wake-up, earliest first. One that a callback arms
 * again, even for a deadline already past, waits for the next wake-up. */
static void loop_timers_fire(void *data, uint32_t events)
{
	struct loop *loop = data;
	uint64_t expirations;

	(void)events;
	/* Drain the expiration count; EAGAIN means it was set again meanwhile. */
	if (read(loop->timer_fd, &expirations, sizeof(expirations)) != sizeof(expirations))
		return;
	loop->timer_fd_deadline = 0; /* a one-shot that fired is disarmed */
	loop->firing_at = now_usec();
	while (!list_empty(&loop->timers) && !loop->quit) {
		struct loop_timer *t = list_first(&loop->timers, struct loop_timer, link);
		if (t->deadline > loop->firing_at)
			break;
		list_unlink(&t->link);
		t->deadline = 0;
		t->fn(t->data);
	}
	loop->firing_at = 0;
	loop_timers_program(loop);
}

void loop_timer_init(struct loop *loop, struct loop_timer *timer, loop_timer_fn fn, void *data)
{
	list_init(&timer->link);
	timer->loop = loop;
	timer->fn = fn;
	timer->data = data;
	timer->deadline = 0;
}

void loop_timer_arm_at(struct loop_timer *timer, unsigned long long deadline)
{
	struct loop *loop = timer->loop;

	if (!loop || timer->deadline == deadline)
		return; /* destroyed (or never made), or no change */
	list_unlink(&timer->link);
	timer->deadline = deadline;
	if (deadline) {
		/* Armed from a timer callback for a past deadline: the next wake-up. */
		if (loop->firing_at && timer->deadline <= loop->firing_at)
			timer->deadline = loop->firing_at + 1;
		struct list *pos = loop->timers.next;
		while (pos != &loop->timers &&
		       list_entry(pos, struct loop_timer, link)->deadline <= timer->deadline)
			pos = pos->next;
		list_append(pos, &timer->link); /* i.e. insert before pos */
	}
	loop_timers_program(loop);
}

void loop_timer_arm(struct loop_timer *timer, unsigned long long usec)
{
	loop_timer_arm_at(timer, usec ? now_usec() + usec : 0);
}

bool loop_timer_armed(const struct loop_timer *timer)
{
	return timer->deadline != 0;
}

void loop_timer_destroy(struct loop_timer *timer)
{
	loop_timer_arm_at(timer, 0);
	timer->loop = NULL; /* arming it again does nothing */
}

void loop_defer(struct loop *loop, struct loop_defer *defer, void (*fn)(void *data), void *data)
{
	if (defer->queued)
		return;
	defer->fn = fn;
	defer->data = data;
	defer->queued = 1;
	list_append(&loop->deferred, &defer->link);
}

void loop_defer_cancel(struct loop *loop, struct loop_defer *defer)
{
	(void)loop;
	if (!defer->queued)
		return;
	list_unlink(&defer->link);
	defer->queued = 0;
}

static void loop_run_deferred(struct loop *loop)
{
	while (!list_empty(&loop->deferred)) {
		struct loop_defer *defer = list_first(&loop->deferred, struct loop_defer, link);
		list_unlink(&defer->link);
		defer->queued = 0;
		defer->fn(defer->data);
	}
}

/* Waits up to timeout_ms for events, dispatches them, then runs the deferred work. */
static int loop_dispatch(struct loop *loop, int timeout_ms)
{
	/* Work deferred outside a batch (start-up, between runs) must not wait for an event. */
	loop_run_deferred(loop);
	if (loop->quit)
		return 0;
	int n = epoll_wait(loop->epoll_fd, loop->batch, LOOP_BATCH, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	loop->batch_count = n;
	for (int i = 0; i < n && !loop->quit; i++) {
		struct loop_watch *watch = loop->batch[i].data.ptr;
		if (watch)
			watch->fn(watch->data, loop->batch[i].events);
	}
	loop->batch_count = 0;
	loop_run_deferred(loop);
	if (loop->released && !list_empty(&loop->starved))
		loop_listeners_resume(loop);
	loop->released = false;
	return n;
}

int loop_run(struct loop *loop)
{
	while (!loop->quit) {
		int r = loop_dispatch(loop, -1);
		if (r < 0)
			return r;
	}
	loop_run_deferred(loop);
	return loop->exit_code;
}

int loop_run_once(struct loop *loop, int timeout_ms)
{
	return loop_dispatch(loop, timeout_ms);
}

void loop_quit(struct loop *loop, int code)
{
	loop->quit = true;
	loop->exit_code = code;
}

bool loop_listener_full(const struct loop_listener *l)
{
	return l->cap && l->open >= l->cap;
}

static void listener_update(struct loop_listener *l)
{
	if (!l->watch.added)
		return;
	uint32_t events = l->held || l->starved || loop_listener_full(l) ? 0 : EPOLLIN;
	int r = loop_watch_modify(l->loop, &l->watch, events);

	if (r < 0)
		log_error("cannot %s accepting on %s: %s", events ? "resume" : "pause", l->name,
			  error_text(-r));
}

static void listener_starve(struct loop_listener *l, int error)
{
	struct loop *loop = l->loop;

	if (!l->failing)
		log_error("cannot accept on %s: %s; the waiting connections stay queued until "
			  "an fd is free",
			  l->name, error_text(error));
	l->failing = true;
	l->starved = true;
	list_unlink(&l->starved_link);
	list_append(&loop->starved, &l->starved_link);
	listener_update(l);
	/* The fallback for fds released without a watch. */
	loop_timer_arm(&loop->starved_retry, LOOP_LISTENER_RETRY_USEC);
}

/* Accepts at most LOOP_ACCEPT_PER_WAKEUP connections, then returns to epoll_wait():
 * level-triggered, a longer backlog brings it back after the other ready fds. */
static void listener_acceptable(void *data, uint32_t events)
{
	struct loop_listener *l = data;
	(void)events;

	for (int n = 0; n < LOOP_ACCEPT_PER_WAKEUP; n++) {
		if (l->held || l->starved || loop_listener_full(l) || !l->watch.added)
			break;
		int fd = accept4(l->watch.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			l->open++;
			l->fn(l->data, fd);
			listener_update(l); /* held at the cap */
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN) {
			if (l->failing)
				log_info("accepting on %s again", l->name);
			l->failing = false;
			break;
		}
		listener_starve(l, errno);
	}
}

static void loop_listeners_resume(void *data)
{
	struct loop *loop = data;

	while (!list_empty(&loop->starved)) {
		struct loop_listener *l =
		    list_first(&loop->starved, struct loop_listener, starved_link);
		list_unlink(&l->starved_link);
		l->starved = false;
		listener_update(l);
	}
	loop_timer_arm(&loop->starved_retry, 0);
}

int loop_listener_start(struct loop *loop, struct loop_listener *l, int fd, const char *name,
			loop_accept_fn fn, void *data)
{
	l->loop = loop;
	l->fn = fn;
	l->data = data;
	l->name = name;
	l->held = l->starved = l->failing = false;
	l->cap = l->open = 0;
	list_init(&l->starved_link);
	return loop_watch_add(loop, &l->watch, fd, EPOLLIN, listener_acceptable, l);
}

void loop_listener_hold(struct loop_listener *l, bool held)
{
	if (l->held == held)
		return;
	l->held = held;
	listener_update(l);
}

void loop_listener_set_cap(struct loop_listener *l, unsigned cap)
{
	l->cap = cap;
	listener_update(l);
}

void loop_listener_closed(struct loop_listener *l)
{
	bool was_full = loop_listener_full(l);

	if (l->open)
		l->open--;
	if (was_full)
		listener_update(l);
}

void loop_listener_stop(struct loop_listener *l)
{
	if (!l->watch.added)
		return;
	list_unlink(&l->starved_link);
	l->starved = false;
	loop_watch_remove(l->loop, &l->watch);
}
