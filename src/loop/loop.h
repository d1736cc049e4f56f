/* The event loop: one epoll instance that owns every fd the daemon waits on.
 * Sources are embedded in their owners' structs (no allocation per source);
 * a timer is a timerfd, armed only while something is due, so an idle daemon
 * never wakes up. Single-threaded: callbacks run one at a time and must not block. */
#pragma once

#include <stdint.h>

struct loop;

/* Called with the epoll events (EPOLLIN, EPOLLOUT, EPOLLHUP, ...) that fired. */
typedef void (*loop_io_fn)(void *data, uint32_t events);
typedef void (*loop_timer_fn)(void *data);

struct loop_watch {
	loop_io_fn fn;
	void *data;
	int fd;
	uint32_t events;
	int added;
};

/* Work to run once the current batch of callbacks is done: lets a callee that
 * discovers a dead object hand its destruction to a point where no caller up the
 * stack still holds it. */
struct loop_defer {
	struct loop_defer *next;
	void (*fn)(void *data);
	void *data;
	int queued;
};

struct loop_timer {
	struct loop_watch watch;
	loop_timer_fn fn;
	void *data;
	int fd;
};

/* Creates a loop. Returns 0 or -errno (epoll_create1). */
int loop_new(struct loop **out);
/* Runs work still deferred, then frees the loop. */
void loop_free(struct loop *loop);

/* Watches fd for events, calling fn(data, events). The caller keeps owning fd and
 * must loop_watch_remove() before closing it. Returns 0 or -errno (epoll_ctl). */
int loop_watch_add(struct loop *loop, struct loop_watch *watch, int fd, uint32_t events,
		   loop_io_fn fn, void *data);
/* Changes the events of an added watch. Returns 0 or -errno. */
int loop_watch_modify(struct loop *loop, struct loop_watch *watch, uint32_t events);
/* Stops watching; safe to call from any callback, also for a watch whose event is
 * still pending in the current batch (it will not be delivered). No-op if not added. */
void loop_watch_remove(struct loop *loop, struct loop_watch *watch);

/* Creates a disarmed one-shot timer. Returns 0 or -errno (timerfd_create). */
int loop_timer_init(struct loop *loop, struct loop_timer *timer, loop_timer_fn fn, void *data);
/* Arms the timer to fire once after usec microseconds (0 disarms it). */
int loop_timer_arm(struct loop_timer *timer, unsigned long long usec);
/* Removes and closes the timer; safe on a zeroed or already destroyed timer. */
void loop_timer_destroy(struct loop *loop, struct loop_timer *timer);

/* Queues fn(data) to run after the current callback batch; no-op if already queued. */
void loop_defer(struct loop *loop, struct loop_defer *defer, void (*fn)(void *data), void *data);
/* Unqueues a deferral (its owner is going away); no-op if not queued. */
void loop_defer_cancel(struct loop *loop, struct loop_defer *defer);

/* Runs callbacks until loop_quit(). Returns the code given to loop_quit(), or -errno
 * if epoll_wait fails. */
int loop_run(struct loop *loop);
void loop_quit(struct loop *loop, int code);

/* Waits up to timeout_ms (-1: forever) for events and runs their callbacks once,
 * for tests that drive the loop step by step. Returns the number of events (0 on
 * timeout or EINTR) or -errno from epoll_wait. */
int loop_run_once(struct loop *loop, int timeout_ms);

/* Number of epoll_wait returns so far: the benchmark's wake-up counter. */
unsigned long long loop_wakeups(const struct loop *loop);
