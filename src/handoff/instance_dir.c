/* The instance protocol of the socket dir: how instances beside each other (a
 * rolling update runs two; a crash leaves one behind) share it without talking.
 *
 * The socket dir (--socket-dir) is ours: main makes it root's and 0700 through an
 * O_NOFOLLOW fd before anything else (instance_dir_make_private()), so no other
 * user can create, rename or replace anything in it, and every path below it is
 * one only root could have made.
 *
 * Each process owns one instance dir "<socket_dir>/<12 hex digits>/" holding:
 *   .lock     flock()ed for the process's lifetime. A lock that can be taken means
 *             its owner is dead: whoever takes it adopts the dir (keeps the lock)
 *             and re-serves the "*.sock" sockets left in it, at the same paths.
 *   alive     a listening socket that never accepts. A sibling connects to it and
 *             watches the connection: when the owner's process ends (SIGKILL and
 *             the OOM killer included) the kernel hangs the connection up, and the
 *             sibling re-serves the dead one's offers at once. It works across pid
 *             namespaces, which a pid (pidfd_open) would not: the shipped DaemonSet
 *             has no hostPID, so two pods cannot name each other's processes.
 *   endpoint  "<dev> <ino>\n" of the DevicePlugin socket the instance serves, so a
 *             new instance tells its predecessor from a foreign plugin.
 *   <device>-<n>.sock  one listening socket per pending offer.
 * A dir is made as ".new-<name>", locked and given its alive socket, then renamed
 * into place: every instance dir a sibling sees is complete.
 *
 * ".left-<random>" in the socket dir: dropped by an instance that exits cleanly
 * with offers left, after its locks are free; a sibling watching the dir with
 * inotify rescans. Kept for siblings of a version that does not watch "alive".
 *
 * "*.sock" directly in the socket dir: the layout before instance dirs (and the Go
 * plugin's). A dead one (connect refused) is re-served; a live one is left alone.
 *
 * Never follow: files are opened O_NOFOLLOW, sockets get their mode at bind()
 * (unix_socket_bind_mode()), nothing is chmod-ed by path. */
#include "instance_dir.h"
#include "../basic/error_text.h"
#include "../basic/error.h"
#include "../basic/unix_socket.h"
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

#define LOCK_NAME     ".lock"
#define ENDPOINT_NAME "endpoint"
#define ALIVE_NAME    "alive"
/* Siblings' watching connections wait in this backlog unaccepted: more than a few
 * instances beside each other is a mistake, and a full one only leaves one unwatched. */
#define ALIVE_BACKLOG	  64
#define INSTANCE_NAME_LEN 12

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

int instance_dir_make_private(const char *path, struct error *e)
{
	struct stat st;
	int r = mkdir_parents(path, 0700);

	if (r < 0)
		return error_set(e, r, "cannot create %s: %s", path, error_text(-r));
	cleanup_close int fd =
	    openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ELOOP || r == -ENOTDIR)
			return error_set(e, r, "refusing %s: it is a symlink or not a directory",
					 path);
		return error_set(e, r, "cannot open %s: %s", path, error_text(-r));
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		return error_set(e, r, "cannot stat %s: %s", path, error_text(-r));
	}
	if ((st.st_uid != geteuid() || st.st_gid != getegid()) &&
	    fchown(fd, geteuid(), getegid()) < 0) {
		r = -errno;
		return error_set(e, r, "cannot make %s ours (owned by %u:%u): fchown: %s", path,
				 (unsigned)st.st_uid, (unsigned)st.st_gid, error_text(-r));
	}
	if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0) {
		r = -errno;
		return error_set(e, r, "cannot make %s 0700 (it is %04o): fchmod: %s", path,
				 (unsigned)(st.st_mode & 07777), error_text(-r));
	}
	return 0;
}

/* Binds and listens on dir's alive socket. Returns the fd or -errno. */
static int alive_listen(const char *dir)
{
	cleanup_free char *path = xasprintf("%s/" ALIVE_NAME, dir);
	struct file_id id;
	cleanup_close int fd = unix_socket_bind_mode(path, 0600, &id);

	if (fd < 0)
		return fd;
	if (listen(fd, ALIVE_BACKLOG) < 0)
		return -errno;
	return take_fd(&fd);
}

/* Removes what we made in tmp, the instance dir that did not come to be. */
static void create_undo(const char *tmp)
{
	cleanup_free char *lock = xasprintf("%s/" LOCK_NAME, tmp);
	cleanup_free char *alive = xasprintf("%s/" ALIVE_NAME, tmp);

	(void)unlink(alive);
	(void)unlink(lock);
	(void)rmdir(tmp);
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
	cleanup_close int fd = lock_dir(tmp, true);
	cleanup_close int alive = fd < 0 ? fd : alive_listen(tmp);
	if (fd < 0 || alive < 0 || rename(tmp, path) < 0) {
		r = fd < 0 ? fd : alive < 0 ? alive : -errno;
		error_set(e, r, "cannot set up instance dir %s: %s", path, error_text(-r));
		create_undo(tmp);
		return r;
	}
	struct handoff_dir *d = xcalloc(1, sizeof(*d));
	d->path = take_ptr(path);
	d->lock_fd = take_fd(&fd);
	d->alive_fd = take_fd(&alive);
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
		const char *names[] = {ENDPOINT_NAME, ALIVE_NAME, LOCK_NAME};
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			cleanup_free char *file = xasprintf("%s/%s", d->path, names[i]);
			if (unlink(file) < 0 && errno != ENOENT)
				log_warning("cannot remove %s: %s", file, error_text(errno));
		}
		if (rmdir(d->path) < 0 && errno != ENOENT)
			log_warning("cannot remove instance dir %s: %s", d->path,
				    error_text(errno));
	}
	if (d->alive_fd >= 0)
		close(d->alive_fd);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	free(d->path);
	free(d);
}

void handoff_dirs_each_live(const char *socket_dir, const struct handoff_dir *own,
			    handoff_sibling_fn fn, void *data)
{
	cleanup_closedir DIR *d = opendir(socket_dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!instance_name_valid(de->d_name))
			continue;
		cleanup_free char *path = xasprintf("%s/%s", socket_dir, de->d_name);
		if (own && !strcmp(path, own->path))
			continue;
		if (handoff_dir_is_locked(path))
			fn(data, path, de->d_name);
	}
}

bool handoff_dir_is_locked(const char *path)
{
	int fd = lock_dir(path, false);

	if (fd >= 0)
		close(fd);
	return fd == -EWOULDBLOCK;
}

int handoff_dir_watch_alive(const char *path)
{
	cleanup_free char *alive = xasprintf("%s/" ALIVE_NAME, path);
	struct stat st;

	/* lstat first: the socket dir is ours, but a connect() would follow a symlink. */
	if (lstat(alive, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	return unix_socket_connect(alive);
}

bool handoff_dirs_is_instance(const char *name)
{
	return instance_name_valid(name);
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
		adopted->alive_fd = -1;
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

struct endpoint_search {
	const struct file_id *id;
	bool found;
};

static void endpoint_check(void *data, const char *path, const char *name)
{
	struct endpoint_search *search = data;
	(void)name;

	if (!search->found && endpoint_matches(path, search->id))
		search->found = true;
}

bool handoff_dirs_endpoint_is_instance(const char *socket_dir, const struct handoff_dir *own,
				       const struct file_id *id)
{
	struct endpoint_search search = {.id = id};

	/* Only live instances: a dead one's record means nothing. */
	handoff_dirs_each_live(socket_dir, own, endpoint_check, &search);
	return search.found;
}
