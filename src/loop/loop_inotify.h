/* The loop's inotify source: one inotify fd watching one directory, read from the
 * loop at most one buffer per wake-up, each event handed to the owner and then one
 * "batch done" call, so an owner collects what changed and acts once. Serves device
 * presence (iommufd), the kubelet dir (registration) and the socket dir (rescue). */
#pragma once

#include "loop.h"

#include <stdint.h>
#include <sys/inotify.h>

/* Called for each event of a batch, in the kernel's order. @ev is valid during the
 * call only. IN_Q_OVERFLOW means events were lost: re-check everything; IN_IGNORED
 * means the directory is gone and nothing will be reported again. Must not stop the
 * source (do that from the done callback). */
typedef void (*loop_inotify_event_fn)(void *data, const struct inotify_event *ev);
/* Called once after each batch of events (not after an empty one). May stop the
 * source. */
typedef void (*loop_inotify_done_fn)(void *data);

struct loop_inotify {
	struct loop *loop;
	struct loop_watch watch;
	int fd; /* the inotify fd; -1 when not started */
	loop_inotify_event_fn event;
	loop_inotify_done_fn done;
	void *data;
	char *dir; /* our copy, for logs */
};

/**
 * loop_inotify_start() - watch a directory from the loop
 * @loop:  the loop
 * @in:    the source, embedded in its owner (zeroed or stopped before)
 * @dir:   the directory to watch; IN_ONLYDIR and IN_DONT_FOLLOW are added to @mask,
 *         so a symlink or a non-directory there is refused (ENOTDIR, ELOOP)
 * @mask:  the IN_* events wanted (e.g. IN_CREATE | IN_DELETE | IN_MOVED_TO)
 * @event: called for each event; see loop_inotify_event_fn
 * @done:  called after each batch; may be NULL
 * @data:  passed to @event and @done
 *
 * Unlogged: the caller says what it could not watch and what that means.
 *
 * Return: 0, or -errno of inotify_init1() (EMFILE, ENFILE: too many instances, see
 * fs.inotify.max_user_instances), inotify_add_watch() (ENOENT, ENOTDIR, EACCES,
 * ENOSPC: fs.inotify.max_user_watches) or epoll_ctl().
 */
int loop_inotify_start(struct loop *loop, struct loop_inotify *in, const char *dir, uint32_t mask,
		       loop_inotify_event_fn event, loop_inotify_done_fn done, void *data);

/**
 * loop_inotify_started() - whether the source watches its directory
 * @in: a zeroed, started or stopped source
 *
 * Return: true between a successful loop_inotify_start() and loop_inotify_stop().
 */
bool loop_inotify_started(const struct loop_inotify *in);

/**
 * loop_inotify_stop() - stop watching and close the inotify fd
 * @in: the source; a no-op if zeroed or stopped
 */
void loop_inotify_stop(struct loop_inotify *in);
