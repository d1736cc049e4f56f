/* One inotify fd per watched directory, read from the loop a buffer per wake-up.
 * See loop_inotify.h. */
#include "loop_inotify.h"
#include "../basic/error_text.h"
#include "../basic/inotify_read.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <sys/epoll.h>

/* One buffer per wake-up: a directory that changes without pause (a peer creating
 * files in a loop) cannot keep the loop; level-triggered epoll brings us back. */
static void loop_inotify_readable(void *data, uint32_t events)
{
	struct loop_inotify *in = data;
	(void)events;

	int r = inotify_read_once(in->fd, in->event, in->data);
	if (r < 0)
		log_error("cannot read inotify events for %s: %s", in->dir, error_text(-r));
	if (r > 0 && in->done)
		in->done(in->data);
}

int loop_inotify_start(struct loop *loop, struct loop_inotify *in, const char *dir, uint32_t mask,
		       loop_inotify_event_fn event, loop_inotify_done_fn done, void *data)
{
	cleanup_close int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (inotify_add_watch(fd, dir, mask | IN_ONLYDIR | IN_DONT_FOLLOW) < 0)
		return -errno;
	*in = (struct loop_inotify){
	    .loop = loop, .fd = -1, .event = event, .done = done, .data = data};
	int r = loop_watch_add(loop, &in->watch, fd, EPOLLIN, loop_inotify_readable, in);
	if (r < 0)
		return r;
	in->fd = take_fd(&fd);
	in->dir = xstrdup(dir);
	return 0;
}

bool loop_inotify_started(const struct loop_inotify *in)
{
	return in->dir != NULL;
}

void loop_inotify_stop(struct loop_inotify *in)
{
	if (!in->dir)
		return;
	loop_watch_remove(in->loop, &in->watch);
	close(in->fd);
	in->fd = -1;
	free(in->dir);
	in->dir = NULL;
}
