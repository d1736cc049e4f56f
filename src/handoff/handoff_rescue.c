/* Re-serving what dead instances left: at start-up (handoff_rescue) and whenever an
 * instance beside us exits with unclaimed sockets (it drops a ".left-" file in the
 * socket dir, which we watch with inotify). Each such socket is served again at the
 * same path with a fresh fd, so a container created later still gets one. */
#include "handoff_internal.h"
#include "../basic/error_text.h"
#include "../basic/error.h"
#include "../basic/inotify_read.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>

/* The device id in a socket name "<device_id>-<n>.sock", or NULL. Caller frees. */
static char *device_id_from_name(const char *name)
{
	cleanup_free char *id = xstrdup(name);
	char *dash = strrchr(id, '-');

	if (!dash || strcmp(dash + 1 + strspn(dash + 1, "0123456789"), ".sock") != 0 ||
	    dash[1] == '.')
		return NULL;
	*dash = '\0';
	return handoff_device_id_valid(id) ? take_ptr(id) : NULL;
}

struct rescue {
	struct handoff *h;
	handoff_open_fn open_fd;
	void *data;
	size_t count;
};

/* Serves path again for device_id with a fresh fd. Returns 0 or -errno with *e. */
static int rescue_one(struct rescue *rs, struct handoff_dir *dir, const char *path,
		      const char *device_id, struct error *e)
{
	int fd = -1;
	int r = rs->open_fd(rs->data, device_id, &fd, e);

	if (r < 0)
		return r;
	int listen_fd = handoff_socket_listen_at(&rs->h->opts, path, e);
	if (listen_fd < 0) {
		close(fd);
		return listen_fd;
	}
	return handoff_offer_start(rs->h, dir, device_id, fd, listen_fd, xstrdup(path), e);
}

static void rescue_socket(void *data, struct handoff_dir *dir, const char *path, const char *name)
{
	struct rescue *rs = data;
	struct handoff *h = rs->h;
	cleanup_free char *device_id = device_id_from_name(name);
	struct error e = {0};

	if (!device_id) {
		log_warning("removing %s: a dead instance's socket whose name carries no device id",
			    path);
	} else if (rescue_one(rs, dir, path, device_id, &e) < 0) {
		log_error("cannot re-serve %s for %s: %s; removing it", path, device_id,
			  error_message(&e));
	} else {
		h->stats.offered++;
		h->stats.rescued++;
		rs->count++;
		log_info("re-serving %s for %s with a fresh iommufd: a dead instance offered it "
			 "and no container has taken it",
			 path, device_id);
		return;
	}
	h->stats.rescue_failures++;
	if (unlink(path) < 0 && errno != ENOENT)
		log_warning("cannot remove %s: %s", path, error_text(errno));
}

static size_t handoff_rescue_now(struct handoff *h)
{
	struct rescue rs = {.h = h, .open_fd = h->open_fd, .data = h->open_data};
	size_t first = h->adopted_count;

	(void)handoff_dirs_adopt_dead(h->opts.socket_dir, h->own_dir, rescue_socket, &rs,
				      &h->adopted, &h->adopted_count);
	/* Dirs that had nothing left to re-serve go at once. */
	for (size_t i = first; i < h->adopted_count;) {
		if (h->adopted[i]->offers == 0) {
			handoff_dir_release(h->adopted[i], true);
			h->adopted[i] = h->adopted[--h->adopted_count];
		} else {
			i++;
		}
	}
	return rs.count;
}

static void handoff_dir_event(void *data, const struct inotify_event *ev)
{
	bool *announced = data;

	if ((ev->mask & IN_Q_OVERFLOW) || (ev->len && handoff_dirs_is_announcement(ev->name)))
		*announced = true;
}

/* Another instance exited with sockets left: re-serve them now. */
static void handoff_dir_changed(void *data, uint32_t events)
{
	struct handoff *h = data;
	bool announced = false;
	(void)events;

	inotify_read_events(h->dir_watch_fd, handoff_dir_event, &announced);
	if (announced) {
		handoff_dirs_clear_announcements(h->opts.socket_dir);
		size_t n = handoff_rescue_now(h);
		log_info(
		    "an instance beside us exited with unclaimed handoff sockets: re-served %zu",
		    n);
	}
}

size_t handoff_rescue(struct handoff *h, handoff_open_fn open_fd, void *data)
{
	h->open_fd = open_fd;
	h->open_data = data;
	if (h->dir_watch_fd < 0) {
		h->dir_watch_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
		if (h->dir_watch_fd < 0 ||
		    inotify_add_watch(h->dir_watch_fd, h->opts.socket_dir,
				      IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0 ||
		    loop_watch_add(h->loop, &h->dir_watch, h->dir_watch_fd, EPOLLIN,
				   handoff_dir_changed, h) < 0)
			log_warning("cannot watch %s for instances exiting with sockets left: %s; "
				    "they are re-served at our next start",
				    h->opts.socket_dir, error_text(errno));
	}
	handoff_dirs_clear_announcements(h->opts.socket_dir);
	return handoff_rescue_now(h);
}

int handoff_record_endpoint(struct handoff *h, const struct file_id *id)
{
	return handoff_dir_record_endpoint(h->own_dir, id);
}

bool handoff_endpoint_is_instance(const struct handoff *h, const struct file_id *id)
{
	return handoff_dirs_endpoint_is_instance(h->opts.socket_dir, h->own_dir, id);
}
