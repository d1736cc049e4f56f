/* The on-disk instance protocol of the socket dir (".lock", ".new-", ".left-",
 * "endpoint", "alive"): how instances beside each other tell live from dead, adopt
 * what a dead one left, and notice a sibling's death. The design is explained at the
 * top of instance_dir.c. Internal to the handoff module (and main's start-up check). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct error;
struct file_id;

/* An instance dir we hold the lock of: our own, or a dead instance's we adopted to
 * re-serve its sockets. */
struct handoff_dir {
	char *path;    /* "<socket_dir>/<name>": for logs and the sockets' public paths */
	char *name;    /* its name in the socket dir */
	int fd;	       /* the dir, opened O_DIRECTORY|O_NOFOLLOW relative to parent_fd */
	int parent_fd; /* the socket dir it is in: our own dup of its fd */
	int lock_fd;
	int alive_fd;  /* our own: the listening "alive" socket siblings watch; else -1 */
	size_t offers; /* offers whose socket is in it */
	bool own;
};

/**
 * instance_dir_open_private() - open a directory others could write, made ours
 * @path: the directory (created, with its parents, if missing)
 * @e:    on failure, a one-line reason; may be NULL
 *
 * As instance_dir_make_private(), keeping the O_DIRECTORY|O_NOFOLLOW fd: everything
 * below @path is then reached through it with *at() calls, never by path.
 *
 * Return: the fd (the caller owns it), or -errno as instance_dir_make_private().
 */
int instance_dir_open_private(const char *path, struct error *e);

/**
 * instance_dir_make_private() - make a directory others could write ours, or refuse
 * @path: the directory (created, with its parents, if missing)
 * @e:    on failure, a one-line reason; may be NULL
 *
 * Opens @path with O_DIRECTORY|O_NOFOLLOW and, through that fd, makes it owned by
 * our euid/egid and mode 0700, whatever created it (a hostPath DirectoryOrCreate
 * makes 0755). Nothing is logged.
 *
 * Return: 0, or -errno: -ELOOP or -ENOTDIR if @path is a symlink or no directory,
 * or mkdir/open/fchown/fchmod's errno.
 */
int instance_dir_make_private(const char *path, struct error *e);

/**
 * handoff_dir_create_own() - create our own locked instance dir in the socket dir
 * @socket_dir_fd: the socket dir, from instance_dir_open_private(); kept open by the
 *                 caller as long as the dir is used
 * @socket_dir:    its path, for messages and the dir's path
 * @out:           set to our instance dir
 * @e:          on failure, the reason; may be NULL
 *
 * The instance dir is created under a temporary name, locked, given its "alive"
 * socket, then renamed into place, so every instance dir another process sees has
 * both. Nothing is logged.
 *
 * Return: 0 or -errno.
 */
int handoff_dir_create_own(int socket_dir_fd, const char *socket_dir, struct handoff_dir **out,
			   struct error *e);

/**
 * handoff_dir_release() - release a dir's lock and free it
 * @d:      the dir; NULL: no-op
 * @remove: first delete the lock, the endpoint record, the alive socket and the dir
 *          itself (only if no socket is left in it)
 */
void handoff_dir_release(struct handoff_dir *d, bool remove);

/* A socket a dead instance left: the dir we adopted it with (NULL for a socket
 * directly in socket_dir, from a version before instance dirs, whose server was found
 * dead by connecting), the fd of the dir it is in, its path and its file name. */
typedef void (*handoff_orphan_fn)(void *data, struct handoff_dir *dir, int dir_fd, const char *path,
				  const char *name);

/**
 * handoff_dirs_adopt_dead() - find what dead instances left in the socket dir
 * @socket_dir_fd: the socket dir's fd
 * @socket_dir: its path
 * @own:        our own instance dir, skipped
 * @fn:         called for every "*.sock" socket in each dead instance dir and for
 *              every dead "*.sock" socket directly in @socket_dir
 * @data:       passed to @fn
 * @dirs:       the adopted dirs are appended to *@dirs (the caller releases them)
 * @count:      the number of *@dirs, advanced
 *
 * Locks each dead instance dir (keeping the lock, so nobody else adopts it). Live
 * instances' dirs and live sockets are not touched.
 *
 * Return: 0 or -errno (opendir), logged.
 */
int handoff_dirs_adopt_dead(int socket_dir_fd, const char *socket_dir,
			    const struct handoff_dir *own, handoff_orphan_fn fn, void *data,
			    struct handoff_dir ***dirs, size_t *count);

/* A live sibling instance dir: its path and name. */
typedef void (*handoff_sibling_fn)(void *data, const char *path, const char *name);

/**
 * handoff_dirs_each_live() - call @fn for each live instance dir but ours
 * @socket_dir_fd: the socket dir's fd
 * @socket_dir: its path
 * @own:        our own instance dir, skipped
 * @fn:         called with each dir whose lock a live process holds
 * @data:       passed to @fn
 */
void handoff_dirs_each_live(int socket_dir_fd, const char *socket_dir,
			    const struct handoff_dir *own, handoff_sibling_fn fn, void *data);

/**
 * handoff_dir_watch_alive() - connect to a live instance dir's "alive" socket
 * @socket_dir_fd: the socket dir's fd
 * @name: the instance dir's name in it (a symlink is refused: -ELOOP)
 *
 * The connection is never accepted: it sits in the sibling's backlog until the
 * sibling's process ends (however: SIGKILL included), when the kernel hangs it up
 * and the fd reports EPOLLHUP.
 *
 * Return: the connected fd (the caller owns it), or -errno (-ENOENT: an instance of a
 * version without it, -ECONNREFUSED: already dead).
 */
int handoff_dir_watch_alive(int socket_dir_fd, const char *name);

/**
 * handoff_dir_is_locked() - whether a live process (or we) holds a dir's lock
 * @socket_dir_fd: the socket dir's fd
 * @name: the instance dir's name in it
 *
 * Return: true if its lock is taken.
 */
bool handoff_dir_is_locked(int socket_dir_fd, const char *name);

/**
 * handoff_dirs_announce_left() - drop ".left-<random>" in the socket dir
 * @socket_dir_fd: the socket dir's fd
 *
 * An instance that exits with sockets left (after its locks are released) tells a
 * live instance of an older version (which does not watch "alive") to re-serve them.
 *
 * Return: 0 or -errno.
 */
int handoff_dirs_announce_left(int socket_dir_fd);

/**
 * handoff_dirs_is_announcement() - whether a file name is such an announcement
 * @name: a file name in the socket dir
 *
 * Return: true if it is.
 */
bool handoff_dirs_is_announcement(const char *name);

/**
 * handoff_dirs_is_instance() - whether a file name is an instance dir's
 * @name: a file name in the socket dir
 *
 * Return: true for exactly 12 lower-case hex digits.
 */
bool handoff_dirs_is_instance(const char *name);

/**
 * handoff_dirs_clear_announcements() - remove every announcement in the socket dir
 * @socket_dir_fd: the socket dir's fd
 * @socket_dir: its path, for messages
 */
void handoff_dirs_clear_announcements(int socket_dir_fd, const char *socket_dir);

/**
 * handoff_dir_record_endpoint() - record in our dir the DevicePlugin socket we serve
 * @own: our instance dir
 * @id:  the socket file's identity, replacing any earlier record
 *
 * Return: 0 or -errno.
 */
int handoff_dir_record_endpoint(const struct handoff_dir *own, const struct file_id *id);

/**
 * handoff_dirs_endpoint_is_instance() - whether a live instance recorded a socket
 * @socket_dir_fd: the socket dir's fd
 * @socket_dir: its path
 * @own:        our own instance dir, skipped
 * @id:         a DevicePlugin socket file's identity
 *
 * Return: true if a live instance in @socket_dir (other than @own) recorded @id as
 * its DevicePlugin socket.
 */
bool handoff_dirs_endpoint_is_instance(int socket_dir_fd, const char *socket_dir,
				       const struct handoff_dir *own, const struct file_id *id);
