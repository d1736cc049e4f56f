/* The loop's inotify source on the device's parent directory: after a batch with an
 * event naming the device (or a queue overflow) re-check with stat() and report a
 * change of presence. */
#include "device_presence.h"
#include "../basic/error_text.h"
#include "../log.h"
#include "../loop/loop_inotify.h"
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
	struct loop_inotify dir_watch;
	bool relevant; /* the batch being read named the device */
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

static void device_presence_event(void *data, const struct inotify_event *ev)
{
	struct device_presence *p = data;

	if (ev->mask & IN_Q_OVERFLOW) {
		p->relevant = true;
	} else if (ev->mask & IN_IGNORED) {
		/* The directory itself is gone: nothing will be reported for it again. */
		log_error("stopped watching %s: its directory was removed", p->device_path);
		p->relevant = true;
	} else if (ev->len && strcmp(ev->name, p->name) == 0) {
		p->relevant = true;
	}
}

static void device_presence_batch_done(void *data)
{
	struct device_presence *p = data;

	if (p->relevant)
		device_presence_recheck(p);
	p->relevant = false;
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

	struct device_presence *p = xcalloc(1, sizeof(*p));
	p->loop = loop;
	p->device_path = xstrdup(device_path);
	p->name = strrchr(p->device_path, '/') ? strrchr(p->device_path, '/') + 1 : p->device_path;
	p->on_change = on_change;
	p->data = data;
	/* Creation, removal, renames in and out, and attribute changes (a node
	 * replaced by chmod/chown games) of entries in the directory. */
	int r = loop_inotify_start(loop, &p->dir_watch, watched,
				   IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB,
				   device_presence_event, device_presence_batch_done, p);
	if (r < 0) {
		log_error("cannot watch %s for device %s: %s", watched, device_path,
			  error_text(-r));
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
	loop_inotify_stop(&p->dir_watch);
	free(p->device_path);
	free(p);
}

bool device_presence_present(const struct device_presence *p)
{
	return p->present;
}
