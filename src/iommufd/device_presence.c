/* inotify watch on the device's parent directory: on any event naming the device
 * (or a queue overflow) re-check with stat() and report a change of presence. */
#include "device_presence.h"
#include "../basic/error_text.h"
#include "../basic/inotify_read.h"
#include "../log.h"
#include "../loop/loop.h"
#include "../util.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>

struct device_presence {
	struct loop *loop;
	char *device_path;
	char *name; /* points into device_path: the last component */
	int inotify_fd;
	struct loop_watch watch;
	bool present;
	device_presence_fn on_change;
	void *data;
};

static bool device_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISCHR(st.st_mode);
}

static void device_presence_recheck(struct device_presence *p)
{
	bool present = device_exists(p->device_path);

	if (present == p->present)
		return;
	/* Not logged here: the owner decides what the change means and says so. */
	p->present = present;
	p->on_change(p->data, present);
}

struct presence_events {
	struct device_presence *p;
	bool relevant;
};

static void device_presence_event(void *data, const struct inotify_event *ev)
{
	struct presence_events *pe = data;

	if (ev->mask & IN_Q_OVERFLOW) {
		pe->relevant = true;
	} else if (ev->mask & IN_IGNORED) {
		/* The directory itself is gone: nothing will be reported for it again. */
		log_error("stopped watching %s: its directory was removed", pe->p->device_path);
		pe->relevant = true;
	} else if (ev->len && strcmp(ev->name, pe->p->name) == 0) {
		pe->relevant = true;
	}
}

static void device_presence_readable(void *data, uint32_t events)
{
	struct device_presence *p = data;
	struct presence_events pe = {.p = p};

	(void)events;
	int r = inotify_read_events(p->inotify_fd, device_presence_event, &pe);
	if (r < 0)
		log_error("cannot read inotify events for %s: %s", p->device_path, error_text(-r));
	if (pe.relevant)
		device_presence_recheck(p);
}

int device_presence_new(struct loop *loop, const char *device_path, device_presence_fn on_change,
			void *data, struct device_presence **out)
{
	cleanup_free char *dir = xstrdup(device_path);
	char *slash = strrchr(dir, '/');
	const char *watched = ".";

	if (slash) {
		*slash = '\0';
		watched = slash == dir ? "/" : dir;
	}
	if (!(slash ? slash[1] : dir[0])) {
		log_error("cannot watch device %s: the path names no file", device_path);
		return -EINVAL;
	}

	cleanup_close int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	int r;
	if (fd < 0) {
		r = -errno;
		log_error("cannot watch device %s: inotify_init1: %s", device_path, error_text(-r));
		return r;
	}
	/* Creation, removal, renames in and out, and attribute changes (a node
	 * replaced by chmod/chown games) of entries in the directory. */
	if (inotify_add_watch(fd, watched,
			      IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB |
				  IN_ONLYDIR) < 0) {
		r = -errno;
		log_error("cannot watch %s for device %s: %s", watched, device_path,
			  error_text(-r));
		return r;
	}

	struct device_presence *p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	p->device_path = xstrdup(device_path);
	p->name = strrchr(p->device_path, '/') ? strrchr(p->device_path, '/') + 1 : p->device_path;
	p->on_change = on_change;
	p->data = data;
	p->inotify_fd = take_fd(&fd);
	r = loop_watch_add(loop, &p->watch, p->inotify_fd, EPOLLIN, device_presence_readable, p);
	if (r < 0) {
		log_error("cannot watch device %s: %s", device_path, error_text(-r));
		device_presence_free(p);
		return r;
	}
	/* Checked after the watch exists, so no change can fall between the two. */
	p->present = device_exists(p->device_path);
	*out = p;
	return 0;
}

void device_presence_free(struct device_presence *p)
{
	if (!p)
		return;
	loop_watch_remove(p->loop, &p->watch);
	close(p->inotify_fd);
	free(p->device_path);
	free(p);
}

bool device_presence_present(const struct device_presence *p)
{
	return p->present;
}
