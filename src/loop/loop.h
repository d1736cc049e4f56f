/* The event loop: one epoll instance that owns every fd the daemon waits on.
 * Sources are embedded in their owners' structs (no allocation per source);
 * a timer is a timerfd, armed only while something is due, so an idle daemon
 * never wakes up. Single-threaded: callbacks run one at a time and must not block. */
#pragma once

#include "../basic/list.h"

#include <stdbool.h>
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
	unsigned long long armed_for; /* loop_timer_arm_at's deadline; 0: none */
};

/* Creates a loop. Returns 0 and *out (free with loop_free), or -errno (epoll_create1),
 * logged. */
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
/* The earliest-deadline timer: arms it for deadline on the now_usec() clock (one
 * already due fires at once; 0 disarms), skipping the syscall when it is armed for
 * that deadline already, so owners can call it after every change of their deadlines.
 * Returns 0 or -errno. */
int loop_timer_arm_at(struct loop_timer *timer, unsigned long long deadline);
/* Removes and closes the timer; safe on a zeroed or already destroyed timer. */
void loop_timer_destroy(struct loop *loop, struct loop_timer *timer);

/* Queues fn(data) to run after the current callback batch; no-op if already queued. */
void loop_defer(struct loop *loop, struct loop_defer *defer, void (*fn)(void *data), void *data);
/* Unqueues a deferral (its owner is going away); no-op if not queued. */
void loop_defer_cancel(struct loop *loop, struct loop_defer *defer);

/* A listening socket accepted from the loop, with the one policy every listener
 * follows when accept() fails for want of file descriptors or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM): the waiting connections stay queued in the backlog, the listener
 * stops watching (no busy loop), the failure is logged once per episode, and every
 * starved listener tries again as soon as the process releases an fd (any watch
 * removed, which precedes every close of a watched fd) or, failing that, after
 * LOOP_LISTENER_RETRY_USEC. The episode ends once the backlog is drained. */
#define LOOP_LISTENER_RETRY_USEC 200000ULL

/* Takes ownership of the accepted fd (non-blocking, close-on-exec). It may hold or
 * stop other listeners and hold its own, but must not stop its own listener. */
typedef void (*loop_accept_fn)(void *data, int fd);

struct loop_listener {
	struct loop_watch watch;
	struct loop *loop;
	loop_accept_fn fn;
	void *data;
	const char *name; /* borrowed, for logs */
	bool held;	  /* its owner wants no more connections for now */
	bool starved;	  /* accept failed for want of fds: waiting for one */
	bool failing;	  /* this starvation episode was logged */
	struct list starved_link;
	unsigned long long accept_errors; /* accept() failures, for metrics */
};

/* Accepts on the listening socket fd (borrowed: the caller closes it after
 * loop_listener_stop) and passes each connection to fn(data, fd). Returns 0 or
 * -errno (epoll_ctl). */
int loop_listener_start(struct loop *loop, struct loop_listener *l, int fd, const char *name,
			loop_accept_fn fn, void *data);
/* Stops or resumes accepting for the owner's own reasons (a connection cap). */
void loop_listener_hold(struct loop_listener *l, bool held);
/* Stops accepting; no-op if not started. */
void loop_listener_stop(struct loop_listener *l);

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
