/* Handoff socket files: instance dirs with their locks, adopting a dead instance's
 * sockets, and binding each offer's socket with its mode, owner and label before it
 * listens, so no peer can connect to a socket that is not ready. */
#include "handoff_socket.h"
#include "../basic/error_text.h"
#include "handoff.h"
#include "../basic/error.h"
#include "../basic/unix_socket.h"
#include "../selinux/selinux.h"
#include "../log.h"
#include "../util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define HANDOFF_BACKLOG	      16
#define HANDOFF_BIND_ATTEMPTS 8
#define LOCK_NAME	      ".lock"
#define ENDPOINT_NAME	      "endpoint"
#define INSTANCE_NAME_LEN     12

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Instance dir names are exactly 12 lower-case hex digits. */
static bool instance_name_valid(const char *name)
{
	return strlen(name) == INSTANCE_NAME_LEN &&
	       strspn(name, "0123456789abcdef") == INSTANCE_NAME_LEN;
}

static void instance_name(char name[INSTANCE_NAME_LEN + 1])
{
	unsigned char bytes[INSTANCE_NAME_LEN / 2];
	struct timespec ts;

	if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t)sizeof(bytes)) {
		/* No entropy yet (early boot): pid and time differ between instances too. */
		clock_gettime(CLOCK_REALTIME, &ts);
		unsigned long long v = (unsigned long long)ts.tv_nsec ^
				       ((unsigned long long)ts.tv_sec << 20) ^
				       ((unsigned long long)getpid() << 40);
		memcpy(bytes, &v, sizeof(bytes));
	}
	for (size_t i = 0; i < sizeof(bytes); i++)
		snprintf(name + 2 * i, 3, "%02x", bytes[i]);
}

/* Opens and locks dir's lock file. Returns the fd, -EWOULDBLOCK if a live process
 * holds it, or -errno (-ENOENT: no lock file). */
static int lock_dir(const char *dir, bool create)
{
	cleanup_free char *path = xasprintf("%s/" LOCK_NAME, dir);
	cleanup_close int fd =
	    openat(AT_FDCWD, path,
		   O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_EXCL : 0), 0600);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
	return take_fd(&fd);
}

int handoff_dir_create_own(const char *socket_dir, struct handoff_dir **out, struct error *e)
{
	char name[INSTANCE_NAME_LEN + 1];
	int r = mkdir_parents(socket_dir, 0700);

	if (r < 0)
		return error_set(e, r, "cannot create handoff socket dir %s: %s", socket_dir,
				 error_text(-r));
	instance_name(name);
	cleanup_free char *tmp = xasprintf("%s/.new-%s", socket_dir, name);
	cleanup_free char *path = xasprintf("%s/%s", socket_dir, name);
	if (mkdir(tmp, 0700) < 0) {
		r = -errno;
		return error_set(e, r, "cannot create instance dir %s: %s", tmp, error_text(-r));
	}
	int fd = lock_dir(tmp, true);
	if (fd < 0 || rename(tmp, path) < 0) {
		r = fd < 0 ? fd : -errno;
		error_set(e, r, "cannot set up instance dir %s: %s", path, error_text(-r));
		if (fd >= 0)
			close(fd);
		cleanup_free char *lock = xasprintf("%s/" LOCK_NAME, tmp);
		(void)unlink(lock);
		(void)rmdir(tmp);
		return r;
	}
	struct handoff_dir *d = xcalloc(1, sizeof(*d));
	d->path = take_ptr(path);
	d->lock_fd = fd;
	d->own = true;
	*out = d;
	return 0;
}

void handoff_dir_release(struct handoff_dir *d, bool remove)
{
	if (!d)
		return;
	if (remove) {
		/* Unlink before unlocking: nobody can take a lock on a name that is gone. */
		cleanup_free char *lock = xasprintf("%s/" LOCK_NAME, d->path);
		cleanup_free char *endpoint = xasprintf("%s/" ENDPOINT_NAME, d->path);
		if (unlink(endpoint) < 0 && errno != ENOENT)
			log_warning("cannot remove %s: %s", endpoint, error_text(errno));
		if (unlink(lock) < 0 && errno != ENOENT)
			log_warning("cannot remove %s: %s", lock, error_text(errno));
		if (rmdir(d->path) < 0 && errno != ENOENT)
			log_warning("cannot remove instance dir %s: %s", d->path,
				    error_text(errno));
	}
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	free(d->path);
	free(d);
}

/* Calls fn for each socket named *.sock in dir; with probe, only for dead ones. */
static void each_socket(const char *dir, struct handoff_dir *owner, bool probe,
			handoff_orphan_fn fn, void *data)
{
	cleanup_closedir DIR *d = opendir(dir);
	struct dirent *de;

	if (!d) {
		log_warning("cannot list %s: %s", dir, error_text(errno));
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (!has_suffix(de->d_name, ".sock") ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISSOCK(st.st_mode))
			continue;
		cleanup_free char *path = xasprintf("%s/%s", dir, de->d_name);
		if (probe) {
			int r = unix_socket_probe(path);
			if (r == 0) {
				log_info("leaving %s alone: a live process serves it", path);
				continue;
			}
			if (r != -ECONNREFUSED)
				continue;
		}
		fn(data, owner, path, de->d_name);
	}
}

int handoff_dirs_adopt_dead(const char *socket_dir, const struct handoff_dir *own,
			    handoff_orphan_fn fn, void *data, struct handoff_dir ***dirs,
			    size_t *count)
{
	cleanup_closedir DIR *d = opendir(socket_dir);
	struct dirent *de;

	if (!d) {
		int r = -errno;
		log_error("cannot list handoff socket dir %s: %s", socket_dir, error_text(-r));
		return r;
	}
	/* Sockets of a version before instance dirs: live ones are left alone. */
	each_socket(socket_dir, NULL, true, fn, data);
	while ((de = readdir(d))) {
		if (!instance_name_valid(de->d_name))
			continue;
		cleanup_free char *path = xasprintf("%s/%s", socket_dir, de->d_name);
		if (!strcmp(path, own->path))
			continue;
		int fd = lock_dir(path, false);
		if (fd == -EWOULDBLOCK) {
			log_debug(1, "instance dir %s belongs to a live instance", path);
			continue;
		}
		if (fd < 0) {
			if (fd != -ENOENT && fd != -ENOTDIR)
				log_warning("cannot lock %s/" LOCK_NAME ": %s", path,
					    error_text(-fd));
			continue;
		}
		struct handoff_dir *adopted = xcalloc(1, sizeof(*adopted));
		adopted->path = take_ptr(path);
		adopted->lock_fd = fd;
		*dirs = xrealloc(*dirs, (*count + 1) * sizeof(struct handoff_dir *));
		(*dirs)[(*count)++] = adopted;
		log_info("instance dir %s was left by a dead instance: re-serving its sockets",
			 adopted->path);
		each_socket(adopted->path, adopted, false, fn, data);
	}
	return 0;
}

#define ANNOUNCE_PREFIX ".left-"

int handoff_dirs_announce_left(const char *socket_dir)
{
	char name[INSTANCE_NAME_LEN + 1];

	instance_name(name);
	cleanup_free char *path = xasprintf("%s/" ANNOUNCE_PREFIX "%s", socket_dir, name);
	int fd = openat(AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

bool handoff_dirs_is_announcement(const char *name)
{
	return strncmp(name, ANNOUNCE_PREFIX, strlen(ANNOUNCE_PREFIX)) == 0;
}

void handoff_dirs_clear_announcements(const char *socket_dir)
{
	cleanup_closedir DIR *d = opendir(socket_dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (handoff_dirs_is_announcement(de->d_name) &&
		    unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			log_warning("cannot remove %s/%s: %s", socket_dir, de->d_name,
				    error_text(errno));
}

int handoff_dir_record_endpoint(const struct handoff_dir *own, const struct file_id *id)
{
	cleanup_free char *path = xasprintf("%s/" ENDPOINT_NAME, own->path);
	cleanup_free char *tmp = xasprintf("%s/." ENDPOINT_NAME, own->path);
	char text[64];
	int n = snprintf(text, sizeof(text), "%llu %llu\n", (unsigned long long)id->dev,
			 (unsigned long long)id->ino);
	cleanup_close int fd =
	    openat(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -errno;
	if (write(fd, text, (size_t)n) != n)
		return errno ? -errno : -EIO;
	if (rename(tmp, path) < 0)
		return -errno;
	return 0;
}

static bool endpoint_matches(const char *dir, const struct file_id *id)
{
	cleanup_free char *path = xasprintf("%s/" ENDPOINT_NAME, dir);
	cleanup_close int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char text[64], *end;

	if (fd < 0)
		return false;
	ssize_t n = read(fd, text, sizeof(text) - 1);
	if (n <= 0)
		return false;
	text[n] = '\0';
	errno = 0;
	unsigned long long dev = strtoull(text, &end, 10);
	unsigned long long ino = strtoull(end, &end, 10);
	return errno == 0 && *end == '\n' && dev == (unsigned long long)id->dev &&
	       ino == (unsigned long long)id->ino;
}

bool handoff_dirs_endpoint_is_instance(const char *socket_dir, const struct handoff_dir *own,
				       const struct file_id *id)
{
	cleanup_closedir DIR *d = opendir(socket_dir);
	struct dirent *de;

	if (!d)
		return false;
	while ((de = readdir(d))) {
		if (!instance_name_valid(de->d_name))
			continue;
		cleanup_free char *path = xasprintf("%s/%s", socket_dir, de->d_name);
		if (own && !strcmp(path, own->path))
			continue;
		int fd = lock_dir(path, false);
		if (fd >= 0) {
			close(fd); /* dead: its record means nothing */
			continue;
		}
		if (fd == -EWOULDBLOCK && endpoint_matches(path, id))
			return true;
	}
	return false;
}

static int socket_prepare(const struct handoff_options *o, int fd, const char *path,
			  struct error *e)
{
	int r;

	if (chmod(path, o->socket_mode) < 0) {
		r = -errno;
		return error_set(e, r, "cannot chmod handoff socket %s to %04o: %s", path,
				 (unsigned)o->socket_mode, error_text(-r));
	}
	if ((o->socket_uid != (uid_t)-1 || o->socket_gid != (gid_t)-1) &&
	    lchown(path, o->socket_uid, o->socket_gid) < 0) {
		r = -errno;
		return error_set(e, r, "cannot chown handoff socket %s to %d:%d: %s", path,
				 (int)o->socket_uid, (int)o->socket_gid, error_text(-r));
	}
	r = selinux_label_path(o->labeler, path);
	if (r < 0)
		return error_set(e, r, "cannot label handoff socket %s with %s: %s", path,
				 selinux_label(o->labeler), error_text(-r));
	if (listen(fd, HANDOFF_BACKLOG) < 0) {
		r = -errno;
		return error_set(e, r, "cannot listen on handoff socket %s: %s", path,
				 error_text(-r));
	}
	return 0;
}

/* Prepares the socket bound at path; on failure removes it. Returns fd or -errno. */
static int socket_finish(const struct handoff_options *o, int bound_fd, const char *path,
			 struct error *e)
{
	cleanup_close int fd = bound_fd;
	int r = socket_prepare(o, fd, path, e);

	if (r < 0) {
		if (unlink(path) < 0)
			log_warning("cannot remove handoff socket %s: %s", path, error_text(errno));
		return r;
	}
	return take_fd(&fd);
}

static int bind_error(int r, const char *path, struct error *e)
{
	if (r == -ENAMETOOLONG)
		return error_set(e, r, "handoff socket path %s is longer than %zu bytes", path,
				 sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	return error_set(e, r, "cannot bind handoff socket %s: %s", path, error_text(-r));
}

int handoff_socket_listen(const struct handoff_options *o, const char *dir, const char *device_id,
			  unsigned long long *counter, char **path_out, struct error *e)
{
	cleanup_free char *path = NULL;
	struct file_id id;
	int fd = -EADDRINUSE;

	/* EADDRINUSE: a live socket another process put there; move on to the next name. */
	for (int attempt = 0; attempt < HANDOFF_BIND_ATTEMPTS && fd == -EADDRINUSE; attempt++) {
		free(path);
		path = xasprintf("%s/%s-%llu.sock", dir, device_id, (*counter)++);
		fd = unix_socket_bind(path, &id);
		if (fd == -ENOENT && mkdir_parents(dir, 0700) == 0)
			fd = unix_socket_bind(path, &id);
	}
	if (fd < 0)
		return bind_error(fd, path, e);
	fd = socket_finish(o, fd, path, e);
	if (fd >= 0)
		*path_out = take_ptr(path);
	return fd;
}

int handoff_socket_listen_at(const struct handoff_options *o, const char *path, struct error *e)
{
	struct file_id id;
	int fd = unix_socket_bind(path, &id);

	if (fd < 0)
		return bind_error(fd, path, e);
	return socket_finish(o, fd, path, e);
}
