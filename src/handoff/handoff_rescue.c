/* Re-serving what dead instances left: at start-up (handoff_rescue), as soon as a
 * sibling instance's process ends however it ends (its "alive" connection hangs up,
 * see instance_dir.c), and when an older sibling drops a ".left-" file in the socket
 * dir (watched through the loop's inotify source, loop_inotify.h, which also tells
 * us of new siblings). Each such socket is served again at the same path with a fresh
 * fd, so a container created later still gets one. */
#include "handoff_internal.h"
#include "../basic/error_text.h"
#include "../basic/error.h"
#include "../log.h"
#include "../loop/loop_inotify.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>

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
static int rescue_one(struct rescue *rs, struct handoff_dir *dir, int dir_fd, const char *path,
		      const char *name, const char *device_id, struct error *e)
{
	int fd = -1;
	int r = rs->open_fd(rs->data, device_id, &fd, e);

	if (r < 0)
		return r;
	int listen_fd = handoff_socket_listen_at(&rs->h->opts, dir_fd, path, name, e);
	if (listen_fd < 0) {
		close(fd);
		return listen_fd;
	}
	return handoff_offer_start(rs->h, dir, device_id, fd, listen_fd, xstrdup(path), e);
}

static void rescue_socket(void *data, struct handoff_dir *dir, int dir_fd, const char *path,
			  const char *name)
{
	struct rescue *rs = data;
	struct handoff *h = rs->h;
	cleanup_free char *device_id = device_id_from_name(name);
	struct error e = {0};

	if (!device_id) {
		log_warning("removing %s: a dead instance's socket whose name carries no device id",
			    path);
	} else if (rescue_one(rs, dir, dir_fd, path, name, device_id, &e) < 0) {
		log_error_f(LOG_FIELDS(LOG_STR("device", device_id), LOG_STR("socket", path),
				       LOG_NUM("errno", -e.code),
				       LOG_STR("reason", error_message(&e))),
			    "cannot re-serve %s for %s: %s; removing it", path, device_id,
			    error_message(&e));
	} else {
		h->stats.offered++;
		h->stats.rescued++;
		rs->count++;
		log_info_f(LOG_FIELDS(LOG_STR("device", device_id), LOG_STR("socket", path)),
			   "re-serving %s for %s with a fresh iommufd: a dead instance offered it "
			   "and no container has taken it",
			   path, device_id);
		return;
	}
	h->stats.rescue_failures++;
	if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
		log_warning("cannot remove %s: %s", path, error_text(errno));
}

static void sibling_watch(void *data, const char *path, const char *name);

static size_t handoff_rescue_now(struct handoff *h)
{
	struct rescue rs = {.h = h, .open_fd = h->open_fd, .data = h->open_data};
	size_t first = h->adopted_count;

	(void)handoff_dirs_adopt_dead(h->socket_dir_fd, h->opts.socket_dir, h->own_dir,
				      rescue_socket, &rs, &h->adopted, &h->adopted_count);
	/* Dirs that had nothing left to re-serve go at once. */
	for (size_t i = first; i < h->adopted_count;) {
		if (h->adopted[i]->offers == 0) {
			handoff_dir_release(h->adopted[i], true);
			h->adopted[i] = h->adopted[--h->adopted_count];
		} else {
			i++;
		}
	}
	handoff_dirs_each_live(h->socket_dir_fd, h->opts.socket_dir, h->own_dir, sibling_watch, h);
	return rs.count;
}

/* Retries of a dead sibling's lock: its process is gone, but the kernel may close
 * its lock file a moment after its alive socket. 100 x 10 ms. */
#define RESCUE_RETRY_USEC  10000ULL
#define RESCUE_RETRY_LIMIT 100

static bool adopted_by_us(const struct handoff *h, const char *path)
{
	for (size_t i = 0; i < h->adopted_count; i++)
		if (!strcmp(h->adopted[i]->path, path))
			return true;
	return false;
}

static void sibling_forget(struct handoff_sibling *s)
{
	if (s->fd >= 0) {
		loop_watch_remove(s->h->loop, &s->watch);
		close(s->fd);
	}
	s->fd = -1;
	free(s->path);
	free(s->name);
	s->path = s->name = NULL;
}

/* Re-serves what dead instances left; says so when there was something. */
static void rescue_after_exit(struct handoff *h, const char *why)
{
	size_t n = handoff_rescue_now(h);

	if (n)
		log_info("an instance beside us exited with unclaimed handoff sockets: re-served "
			 "%zu (%s)",
			 n, why);
	else
		log_debug(1, "rescan after %s: nothing to re-serve", why);
}

/* Dead siblings whose dir is adopted (or gone) are done; those still locked are
 * tried again shortly. */
static void rescue_dead_siblings(struct handoff *h)
{
	bool waiting = false;

	rescue_after_exit(h, "a sibling's process ended");
	for (size_t i = 0; i < HANDOFF_MAX_SIBLINGS; i++) {
		struct handoff_sibling *s = &h->siblings[i];
		struct stat st;
		if (!s->path || s->fd >= 0)
			continue;
		if (fstatat(h->socket_dir_fd, s->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !adopted_by_us(h, s->path) &&
		    handoff_dir_is_locked(h->socket_dir_fd, s->name)) {
			waiting = true;
			continue;
		}
		sibling_forget(s);
	}
	if (!waiting) {
		h->rescue_retries = 0;
	} else if (++h->rescue_retries <= RESCUE_RETRY_LIMIT) {
		loop_timer_arm(&h->rescue_retry, RESCUE_RETRY_USEC);
	} else {
		log_warning("a sibling instance's process ended but its instance dir is still "
			    "locked; its sockets are re-served when a rescan finds it free");
		h->rescue_retries = 0;
		for (size_t i = 0; i < HANDOFF_MAX_SIBLINGS; i++)
			if (h->siblings[i].path && h->siblings[i].fd < 0)
				sibling_forget(&h->siblings[i]);
	}
}

static void rescue_retry_fired(void *data)
{
	rescue_dead_siblings(data);
}

/* The alive connection hung up: the sibling's process has ended. */
static void sibling_gone(void *data, uint32_t events)
{
	struct handoff_sibling *s = data;
	struct handoff *h = s->h;
	(void)events;

	log_info("the instance of %s has ended: re-serving what it left", s->path);
	loop_watch_remove(h->loop, &s->watch);
	close(s->fd);
	s->fd = -1;
	h->rescue_retries = 0;
	rescue_dead_siblings(h);
}

static void sibling_watch(void *data, const char *path, const char *name)
{
	struct handoff *h = data;
	struct handoff_sibling *free_slot = NULL;

	if (adopted_by_us(h, path))
		return;
	for (size_t i = 0; i < HANDOFF_MAX_SIBLINGS; i++) {
		if (h->siblings[i].path && !strcmp(h->siblings[i].path, path))
			return;
		if (!h->siblings[i].path && !free_slot)
			free_slot = &h->siblings[i];
	}
	if (!free_slot) {
		log_warning("not watching instance %s: %d siblings are watched already", path,
			    HANDOFF_MAX_SIBLINGS);
		return;
	}
	int fd = handoff_dir_watch_alive(h->socket_dir_fd, name);
	if (fd < 0) {
		/* -ENOENT: an older version; -ECONNREFUSED: it died meanwhile (the next
		 * rescan adopts it). */
		log_debug(1, "cannot watch instance %s: %s", path, error_text(-fd));
		return;
	}
	free_slot->h = h;
	free_slot->fd = fd;
	if (loop_watch_add(h->loop, &free_slot->watch, fd, EPOLLRDHUP, sibling_gone, free_slot) <
	    0) {
		log_warning("cannot watch instance %s: %s", path, error_text(errno));
		close(fd);
		free_slot->fd = -1;
		return;
	}
	free_slot->path = xstrdup(path);
	free_slot->name = xstrdup(name);
	log_debug(1, "watching instance %s", path);
}

/* One batch of socket dir events, noted by handoff_dir_event and acted on once by
 * handoff_dir_changed. */
static void handoff_dir_event(void *data, const struct inotify_event *ev)
{
	struct handoff *h = data;

	if (ev->mask & IN_Q_OVERFLOW)
		h->dir_seen_announced = h->dir_seen_instance = true;
	else if (ev->len && handoff_dirs_is_announcement(ev->name))
		h->dir_seen_announced = true;
	else if (ev->len && handoff_dirs_is_instance(ev->name))
		h->dir_seen_instance = true;
}

/* An older instance exited with sockets left, or a new instance appeared. */
static void handoff_dir_changed(void *data)
{
	struct handoff *h = data;
	bool announced = h->dir_seen_announced, instance = h->dir_seen_instance;

	h->dir_seen_announced = h->dir_seen_instance = false;
	if (announced) {
		handoff_dirs_clear_announcements(h->socket_dir_fd, h->opts.socket_dir);
		rescue_after_exit(h, "a .left- announcement");
	} else if (instance) {
		handoff_dirs_each_live(h->socket_dir_fd, h->opts.socket_dir, h->own_dir,
				       sibling_watch, h);
	}
}

void handoff_rescue_watch_dir(struct handoff *h)
{
	if (!h->open_fd)
		return;
	loop_inotify_stop(&h->dir_watch);
	h->dir_seen_announced = h->dir_seen_instance = false;
	int r =
	    loop_inotify_start(h->loop, &h->dir_watch, h->opts.socket_dir, IN_CREATE | IN_MOVED_TO,
			       handoff_dir_event, handoff_dir_changed, h);
	if (r < 0)
		log_warning("cannot watch %s for instances exiting with sockets left: %s; they "
			    "are re-served at our next start",
			    h->opts.socket_dir, error_text(-r));
}

size_t handoff_rescue(struct handoff *h, handoff_open_fn open_fd, void *data)
{
	if (!h->open_fd) {
		for (size_t i = 0; i < HANDOFF_MAX_SIBLINGS; i++)
			h->siblings[i] = (struct handoff_sibling){.h = h, .fd = -1};
		loop_timer_init(h->loop, &h->rescue_retry, rescue_retry_fired, h);
	}
	h->open_fd = open_fd;
	h->open_data = data;
	if (!loop_inotify_started(&h->dir_watch))
		handoff_rescue_watch_dir(h);
	handoff_dirs_clear_announcements(h->socket_dir_fd, h->opts.socket_dir);
	return handoff_rescue_now(h);
}

void handoff_rescue_stop(struct handoff *h)
{
	loop_inotify_stop(&h->dir_watch);
	if (!h->open_fd)
		return;
	for (size_t i = 0; i < HANDOFF_MAX_SIBLINGS; i++)
		sibling_forget(&h->siblings[i]);
	loop_timer_destroy(&h->rescue_retry);
}

int handoff_record_endpoint(struct handoff *h, const struct file_id *id)
{
	return handoff_dir_record_endpoint(h->own_dir, id);
}

bool handoff_endpoint_is_instance(const struct handoff *h, const struct file_id *id)
{
	return handoff_dirs_endpoint_is_instance(h->socket_dir_fd, h->opts.socket_dir, h->own_dir,
						 id);
}
