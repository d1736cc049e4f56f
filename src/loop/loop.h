/* The event loop: one epoll instance that owns every fd the daemon waits on.
 * Sources are embedded in their owners' structs (no allocation per source);
 * every timer shares the loop's one timerfd, which is armed for the earliest
 * deadline only while some timer is armed, so an idle daemon never wakes up. Single-threaded:
 * callbacks run one at a time and must not block. */
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
	struct list link; /* in the loop's armed timers, earliest deadline first */
	struct loop *loop;
	loop_timer_fn fn;
	void *data;
	unsigned long long deadline; /* on the now_usec() clock; 0: disarmed */
};

/**
 * loop_new() - create a loop
 * @out: set to the loop (free with loop_free())
 *
 * Logs the cause of a failure.
 *
 * Return: 0, or -errno of epoll_create1(), timerfd_create() or epoll_ctl().
 */
int loop_new(struct loop **out);

/**
 * loop_free() - run the work still deferred, then free the loop
 * @loop: the loop
 */
void loop_free(struct loop *loop);

/**
 * loop_watch_add() - watch an fd for events
 * @loop:   the loop
 * @watch:  the watch, embedded in its owner
 * @fd:     the fd; the caller keeps owning it and must loop_watch_remove() before
 *          closing it
 * @events: the epoll events to wait for
 * @fn:     called as fn(data, events) when some fire
 * @data:   passed to @fn
 *
 * Return: 0 or -errno of epoll_ctl().
 */
int loop_watch_add(struct loop *loop, struct loop_watch *watch, int fd, uint32_t events,
		   loop_io_fn fn, void *data);

/**
 * loop_watch_modify() - change the events of an added watch
 * @loop:   the loop
 * @watch:  an added watch
 * @events: the epoll events to wait for now
 *
 * Return: 0 or -errno.
 */
int loop_watch_modify(struct loop *loop, struct loop_watch *watch, uint32_t events);

/**
 * loop_watch_remove() - stop watching
 * @loop:  the loop
 * @watch: the watch; a no-op if not added
 *
 * Safe to call from any callback, also for a watch whose event is still pending in
 * the current batch (it will not be delivered).
 */
void loop_watch_remove(struct loop *loop, struct loop_watch *watch);

/**
 * loop_timer_init() - make a disarmed one-shot timer
 * @loop:  the loop
 * @timer: the timer, embedded in its owner
 * @fn:    called as fn(data) when it fires
 * @data:  passed to @fn
 *
 * Takes no fd and no syscall: every timer shares the loop's timerfd, so a timer
 * can neither fail to be made nor cost an fd when fds run out.
 */
void loop_timer_init(struct loop *loop, struct loop_timer *timer, loop_timer_fn fn, void *data);

/**
 * loop_timer_arm() - arm the timer to fire once after @usec microseconds
 * @timer: an initialised timer
 * @usec:  the delay; 0 disarms it
 *
 * Re-arming replaces the previous deadline. The loop's timerfd is set again only
 * when the earliest deadline of all timers changes.
 */
void loop_timer_arm(struct loop_timer *timer, unsigned long long usec);

/**
 * loop_timer_arm_at() - arm the timer for @deadline
 * @timer:    an initialised timer
 * @deadline: on the now_usec() clock; one already due fires on the next dispatch;
 *            0 disarms
 *
 * Costs nothing when it is armed for that deadline already, so owners can call it
 * after every change of their deadlines.
 */
void loop_timer_arm_at(struct loop_timer *timer, unsigned long long deadline);

/**
 * loop_timer_armed() - whether the timer is armed
 * @timer: an initialised or zeroed timer
 *
 * Return: true while it waits to fire.
 */
bool loop_timer_armed(const struct loop_timer *timer);

/**
 * loop_timer_destroy() - disarm the timer for good
 * @timer: the timer; safe on a zeroed or already destroyed timer
 *
 * Arming a destroyed (or zeroed) timer does nothing, so an owner that is stopping
 * need not guard its arms.
 */
void loop_timer_destroy(struct loop_timer *timer);

/**
 * loop_defer() - queue fn(data) to run after the current callback batch
 * @loop:  the loop
 * @defer: the deferral, embedded in its owner; a no-op if already queued
 * @fn:    the work
 * @data:  passed to @fn
 */
void loop_defer(struct loop *loop, struct loop_defer *defer, void (*fn)(void *data), void *data);

/**
 * loop_defer_cancel() - unqueue a deferral (its owner is going away)
 * @loop:  the loop
 * @defer: the deferral; a no-op if not queued
 */
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

/**
 * loop_listener_start() - accept on a listening socket from the loop
 * @loop: the loop
 * @l:    the listener, embedded in its owner
 * @fd:   the listening socket, borrowed: the caller closes it after
 *        loop_listener_stop()
 * @name: borrowed, for logs
 * @fn:   passed each connection as fn(data, fd)
 * @data: passed to @fn
 *
 * Return: 0 or -errno of epoll_ctl().
 */
int loop_listener_start(struct loop *loop, struct loop_listener *l, int fd, const char *name,
			loop_accept_fn fn, void *data);

/**
 * loop_listener_hold() - stop or resume accepting for the owner's own reasons
 * @l:    a started listener
 * @held: true to stop accepting (a connection cap), false to resume
 */
void loop_listener_hold(struct loop_listener *l, bool held);

/**
 * loop_listener_stop() - stop accepting
 * @l: the listener; a no-op if not started
 */
void loop_listener_stop(struct loop_listener *l);

/**
 * loop_run() - run callbacks until loop_quit()
 * @loop: the loop
 *
 * Return: the code given to loop_quit(), or -errno if epoll_wait() fails.
 */
int loop_run(struct loop *loop);

/**
 * loop_quit() - make loop_run() stop and return @code
 * @loop: the loop
 * @code: what loop_run() returns
 */
void loop_quit(struct loop *loop, int code);

/**
 * loop_run_once() - wait for events once and run their callbacks
 * @loop:       the loop
 * @timeout_ms: how long to wait; -1: forever
 *
 * For tests that drive the loop step by step.
 *
 * Return: the number of events (0 on timeout or EINTR), or -errno of epoll_wait().
 */
int loop_run_once(struct loop *loop, int timeout_ms);

/**
 * loop_wakeups() - the number of epoll_wait() returns so far
 * @loop: the loop
 *
 * Return: the count: the benchmark's wake-up counter.
 */
unsigned long long loop_wakeups(const struct loop *loop);
