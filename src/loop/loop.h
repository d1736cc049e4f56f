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
 * stack still holds it. Deferrals run in the order they were queued (FIFO). */
struct loop_defer {
	struct list link; /* in the loop's queue while queued */
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
 * @defer: the deferral, embedded in its owner (zeroed or run before); a no-op if
 *         already queued
 * @fn:    the work
 * @data:  passed to @fn
 *
 * Deferrals run first in, first out; one queued while the queue runs runs in the
 * same pass, after those queued before it.
 */
void loop_defer(struct loop *loop, struct loop_defer *defer, void (*fn)(void *data), void *data);

/**
 * loop_defer_cancel() - unqueue a deferral (its owner is going away)
 * @loop:  the loop
 * @defer: the deferral; a no-op if not queued
 */
void loop_defer_cancel(struct loop *loop, struct loop_defer *defer);

/* A listening socket accepted from the loop. Each wake-up accepts at most
 * LOOP_ACCEPT_PER_WAKEUP connections and returns to epoll_wait() (level-triggered:
 * a longer backlog brings it back at once), so a peer that connects and closes in a
 * loop cannot keep the loop from other fds. When accept() fails for want of file
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the one policy applies: the
 * waiting connections stay queued in the backlog, the listener stops watching (no busy
 * loop), the failure is logged once per episode, and every starved listener tries
 * again as soon as the process releases an fd (any watch removed, which precedes every
 * close of a watched fd) or, failing that, after LOOP_LISTENER_RETRY_USEC. The episode
 * ends once the backlog is drained. */
#define LOOP_LISTENER_RETRY_USEC 200000ULL
#define LOOP_ACCEPT_PER_WAKEUP	 16

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
	unsigned cap;  /* the connection cap; 0: none (loop_listener_set_cap()) */
	unsigned open; /* connections accepted and not yet reported closed */
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
 * @held: true to stop accepting, false to resume (the cap still applies)
 */
void loop_listener_hold(struct loop_listener *l, bool held);

/**
 * loop_listener_set_cap() - the connection cap: serve at most @cap at once
 * @l:   a started listener
 * @cap: the most connections open at once; 0: no cap
 *
 * The one connection cap every server uses. Each accepted connection counts as open
 * until the owner calls loop_listener_closed(); while @cap are open the listener
 * stops accepting and further connections wait in the listen backlog. An owner that
 * would rather evict than wait (http.c) closes one of its own from its accept
 * callback once the count reaches the cap (loop_listener_full()).
 */
void loop_listener_set_cap(struct loop_listener *l, unsigned cap);

/**
 * loop_listener_closed() - one connection this listener accepted is closed
 * @l: the listener; also valid after loop_listener_stop()
 */
void loop_listener_closed(struct loop_listener *l);

/**
 * loop_listener_full() - whether the cap is reached
 * @l: the listener
 *
 * Return: true while loop_listener_set_cap()'s cap connections are open.
 */
bool loop_listener_full(const struct loop_listener *l);

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
