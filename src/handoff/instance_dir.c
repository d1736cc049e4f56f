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
 * Never follow: nothing in our dirs is reached by path. The handoff holds the socket
 * dir open (O_DIRECTORY|O_NOFOLLOW, instance_dir_open_private()) and each instance
 * dir it uses open relative to that fd (O_DIRECTORY|O_NOFOLLOW: a symlink named like
 * an instance is refused, ELOOP); every file in them is made, opened, renamed and
 * removed with *at() calls on those fds (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW). Sockets
 * get their mode at bind(), their owner with fchownat(AT_SYMLINK_NOFOLLOW). bind()
 * and connect() take a path, so they go through "/proc/self/fd/<dirfd>/<name>"
 * (unix_address_at()): the magic link reaches exactly the dir we hold, wherever it
 * is now, and only <name> is looked up in it. The alternative, binding by the dir's
 * path after checking each component, would trust the socket dir's ancestors, which
 * are not ours (a hostPath's parents), between the check and the bind. The paths we
 * log and hand to peers ("<socket_dir>/<instance>/<name>") are only names for them. */
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

/* Opens and locks the lock file of the dir open as dfd. Returns the fd,
 * -EWOULDBLOCK if a live process holds it, or -errno (-ENOENT: no lock file). */
static int lock_dir(int dfd, bool create)
{
	cleanup_close int fd =
	    openat(dfd, LOCK_NAME,
		   O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_EXCL : 0), 0600);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
	return take_fd(&fd);
}

/* Opens the dir name in the dir open as dfd, never through a symlink. Returns the
 * fd or -errno (-ELOOP: a symlink, -ENOTDIR: no dir). */
static int open_dir_at(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* A listing of the dir open as dfd, through its own open file (readdir's offset is
 * not shared with dfd). NULL with errno on failure. */
static DIR *list_dir(int dfd)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);

	if (fd >= 0 && !d) {
		int saved = errno;
		close(fd);
		errno = saved;
	}
	return d;
}

int instance_dir_open_private(const char *path, struct error *e)
{
	struct stat st;
	int r = mkdir_parents(path, 0700);

	if (r < 0)
		return error_set(e, r, "cannot create %s: %s", path, error_text(-r));
	cleanup_close int fd = open_dir_at(AT_FDCWD, path);
	if (fd < 0) {
		if (fd == -ELOOP || fd == -ENOTDIR)
			return error_set(e, fd, "refusing %s: it is a symlink or not a directory",
					 path);
		return error_set(e, fd, "cannot open %s: %s", path, error_text(-fd));
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
	return take_fd(&fd);
}

int instance_dir_make_private(const char *path, struct error *e)
{
	int fd = instance_dir_open_private(path, e);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

/* Binds and listens on the alive socket of the dir open as dfd. Returns the fd or
 * -errno. */
static int alive_listen(int dfd)
{
	struct file_id id;
	cleanup_close int fd = unix_socket_bind_at(dfd, ALIVE_NAME, 0600, &id);

	if (fd < 0)
		return fd;
	if (listen(fd, ALIVE_BACKLOG) < 0)
		return -errno;
	return take_fd(&fd);
}

/* Removes what we made in tmp (open as dfd, or -1), the instance dir that did not
 * come to be. */
static void create_undo(int socket_dir_fd, int dfd, const char *tmp)
{
	if (dfd >= 0) {
		(void)unlinkat(dfd, ALIVE_NAME, 0);
		(void)unlinkat(dfd, LOCK_NAME, 0);
	}
	(void)unlinkat(socket_dir_fd, tmp, AT_REMOVEDIR);
}

/* The dir name (open as fd, locked with lock_fd: both taken) in the socket dir, or
 * NULL with -errno in *err (the socket dir's fd could not be duplicated). */
static struct handoff_dir *dir_new(int socket_dir_fd, const char *socket_dir, const char *name,
				   int fd, int lock_fd, int *err)
{
	/* Its own copy: the socket dir may be made again (handoff_offer) while an old
	 * dir still has offers. */
	int parent_fd = fcntl(socket_dir_fd, F_DUPFD_CLOEXEC, 3);

	if (parent_fd < 0) {
		*err = -errno;
		close(fd);
		close(lock_fd);
		return NULL;
	}
	struct handoff_dir *d = xcalloc(1, sizeof(*d));

	d->path = xasprintf("%s/%s", socket_dir, name);
	d->name = xstrdup(name);
	d->fd = fd;
	d->parent_fd = parent_fd;
	d->lock_fd = lock_fd;
	d->alive_fd = -1;
	return d;
}

int handoff_dir_create_own(int socket_dir_fd, const char *socket_dir, struct handoff_dir **out,
			   struct error *e)
{
	char name[INSTANCE_NAME_LEN + 1];
	int r;

	instance_name(name);
	cleanup_free char *tmp = xasprintf(".new-%s", name);
	if (mkdirat(socket_dir_fd, tmp, 0700) < 0) {
		r = -errno;
		return error_set(e, r, "cannot create instance dir %s/%s: %s", socket_dir, tmp,
				 error_text(-r));
	}
	cleanup_close int dfd = open_dir_at(socket_dir_fd, tmp);
	cleanup_close int fd = dfd < 0 ? dfd : lock_dir(dfd, true);
	cleanup_close int alive = fd < 0 ? fd : alive_listen(dfd);
	if (fd < 0 || alive < 0 || renameat(socket_dir_fd, tmp, socket_dir_fd, name) < 0) {
		r = fd < 0 ? fd : alive < 0 ? alive : -errno;
		error_set(e, r, "cannot set up instance dir %s/%s: %s", socket_dir, name,
			  error_text(-r));
		create_undo(socket_dir_fd, dfd, tmp);
		return r;
	}
	struct handoff_dir *d =
	    dir_new(socket_dir_fd, socket_dir, name, take_fd(&dfd), take_fd(&fd), &r);
	if (!d) {
		/* Renamed into place but unlocked: a sibling may adopt the empty dir. */
		return error_set(e, r, "cannot keep instance dir %s/%s: %s", socket_dir, name,
				 error_text(-r));
	}
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
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (unlinkat(d->fd, names[i], 0) < 0 && errno != ENOENT)
				log_warning("cannot remove %s/%s: %s", d->path, names[i],
					    error_text(errno));
		if (unlinkat(d->parent_fd, d->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			log_warning("cannot remove instance dir %s: %s", d->path,
				    error_text(errno));
	}
	if (d->alive_fd >= 0)
		close(d->alive_fd);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	close(d->fd);
	close(d->parent_fd);
	free(d->name);
	free(d->path);
	free(d);
}

void handoff_dirs_each_live(int socket_dir_fd, const char *socket_dir,
			    const struct handoff_dir *own, handoff_sibling_fn fn, void *data)
{
	cleanup_closedir DIR *d = list_dir(socket_dir_fd);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!instance_name_valid(de->d_name) || (own && !strcmp(de->d_name, own->name)))
			continue;
		if (handoff_dir_is_locked(socket_dir_fd, de->d_name)) {
			cleanup_free char *path = xasprintf("%s/%s", socket_dir, de->d_name);
			fn(data, path, de->d_name);
		}
	}
}

bool handoff_dir_is_locked(int socket_dir_fd, const char *name)
{
	cleanup_close int dfd = open_dir_at(socket_dir_fd, name);
	int fd = dfd < 0 ? dfd : lock_dir(dfd, false);

	if (fd >= 0)
		close(fd);
	return fd == -EWOULDBLOCK;
}

int handoff_dir_watch_alive(int socket_dir_fd, const char *name)
{
	cleanup_close int dfd = open_dir_at(socket_dir_fd, name);

	return dfd < 0 ? dfd : unix_socket_connect_at(dfd, ALIVE_NAME);
}

bool handoff_dirs_is_instance(const char *name)
{
	return instance_name_valid(name);
}

/* Calls fn for each socket named *.sock in the dir open as dfd (at path); with probe,
 * only for dead ones. */
static void each_socket(int dfd, const char *path, struct handoff_dir *owner, bool probe,
			handoff_orphan_fn fn, void *data)
{
	cleanup_closedir DIR *d = list_dir(dfd);
	struct dirent *de;

	if (!d) {
		log_warning("cannot list %s: %s", path, error_text(errno));
		return;
	}
	while ((de = readdir(d))) {
		struct stat st;
		if (!has_suffix(de->d_name, ".sock") ||
		    fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		cleanup_free char *file = xasprintf("%s/%s", path, de->d_name);
		if (probe) {
			int r = unix_socket_probe_at(dfd, de->d_name);
			if (r == 0) {
				log_info("leaving %s alone: a live process serves it", file);
				continue;
			}
			if (r != -ECONNREFUSED)
				continue;
		}
		fn(data, owner, dfd, file, de->d_name);
	}
}

int handoff_dirs_adopt_dead(int socket_dir_fd, const char *socket_dir,
			    const struct handoff_dir *own, handoff_orphan_fn fn, void *data,
			    struct handoff_dir ***dirs, size_t *count)
{
	cleanup_closedir DIR *d = list_dir(socket_dir_fd);
	struct dirent *de;

	if (!d) {
		int r = -errno;
		log_error("cannot list handoff socket dir %s: %s", socket_dir, error_text(-r));
		return r;
	}
	/* Sockets of a version before instance dirs: live ones are left alone. */
	each_socket(socket_dir_fd, socket_dir, NULL, true, fn, data);
	while ((de = readdir(d))) {
		if (!instance_name_valid(de->d_name) || !strcmp(de->d_name, own->name))
			continue;
		cleanup_free char *path = xasprintf("%s/%s", socket_dir, de->d_name);
		cleanup_close int dfd = open_dir_at(socket_dir_fd, de->d_name);
		int fd = dfd < 0 ? dfd : lock_dir(dfd, false);
		if (fd == -EWOULDBLOCK) {
			log_debug(1, "instance dir %s belongs to a live instance", path);
			continue;
		}
		if (fd < 0) {
			if (fd == -ELOOP)
				log_warning("not adopting %s: it is a symlink", path);
			else if (fd != -ENOENT && fd != -ENOTDIR)
				log_warning("cannot lock %s/" LOCK_NAME ": %s", path,
					    error_text(-fd));
			continue;
		}
		int r = 0;
		struct handoff_dir *adopted =
		    dir_new(socket_dir_fd, socket_dir, de->d_name, take_fd(&dfd), fd, &r);
		if (!adopted) {
			log_warning("cannot adopt %s: %s", path, error_text(-r));
			continue;
		}
		*dirs = xrealloc(*dirs, (*count + 1) * sizeof(struct handoff_dir *));
		(*dirs)[(*count)++] = adopted;
		log_info("instance dir %s was left by a dead instance: re-serving its sockets",
			 adopted->path);
		each_socket(adopted->fd, adopted->path, adopted, false, fn, data);
	}
	return 0;
}

#define ANNOUNCE_PREFIX ".left-"

int handoff_dirs_announce_left(int socket_dir_fd)
{
	char name[INSTANCE_NAME_LEN + 1];

	instance_name(name);
	cleanup_free char *file = xasprintf(ANNOUNCE_PREFIX "%s", name);
	int fd =
	    openat(socket_dir_fd, file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

bool handoff_dirs_is_announcement(const char *name)
{
	return strncmp(name, ANNOUNCE_PREFIX, strlen(ANNOUNCE_PREFIX)) == 0;
}

void handoff_dirs_clear_announcements(int socket_dir_fd, const char *socket_dir)
{
	cleanup_closedir DIR *d = list_dir(socket_dir_fd);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (handoff_dirs_is_announcement(de->d_name) &&
		    unlinkat(socket_dir_fd, de->d_name, 0) < 0 && errno != ENOENT)
			log_warning("cannot remove %s/%s: %s", socket_dir, de->d_name,
				    error_text(errno));
}

int handoff_dir_record_endpoint(const struct handoff_dir *own, const struct file_id *id)
{
	char text[64];
	int n = snprintf(text, sizeof(text), "%llu %llu\n", (unsigned long long)id->dev,
			 (unsigned long long)id->ino);
	cleanup_close int fd = openat(own->fd, "." ENDPOINT_NAME,
				      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

	if (fd < 0)
		return -errno;
	if (write(fd, text, (size_t)n) != n)
		return errno ? -errno : -EIO;
	if (renameat(own->fd, "." ENDPOINT_NAME, own->fd, ENDPOINT_NAME) < 0)
		return -errno;
	return 0;
}

static bool endpoint_matches(int socket_dir_fd, const char *name, const struct file_id *id)
{
	cleanup_close int dfd = open_dir_at(socket_dir_fd, name);
	cleanup_close int fd =
	    dfd < 0 ? -1 : openat(dfd, ENDPOINT_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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
	int socket_dir_fd;
	const struct file_id *id;
	bool found;
};

static void endpoint_check(void *data, const char *path, const char *name)
{
	struct endpoint_search *search = data;
	(void)path;

	if (!search->found && endpoint_matches(search->socket_dir_fd, name, search->id))
		search->found = true;
}

bool handoff_dirs_endpoint_is_instance(int socket_dir_fd, const char *socket_dir,
				       const struct handoff_dir *own, const struct file_id *id)
{
	struct endpoint_search search = {.socket_dir_fd = socket_dir_fd, .id = id};

	/* Only live instances: a dead one's record means nothing. */
	handoff_dirs_each_live(socket_dir_fd, socket_dir, own, endpoint_check, &search);
	return search.found;
}
