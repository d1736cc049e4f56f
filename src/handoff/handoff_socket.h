/* The handoff socket files on disk. Each process owns one instance dir in the socket
 * dir, "<socket_dir>/<12 hex digits>/", holding an flock()ed ".lock" for the
 * process's lifetime: a lock that can be taken means its owner is dead, so another
 * instance can tell a live instance's sockets from a dead one's without touching
 * them. The dir also records which DevicePlugin socket the instance serves
 * ("endpoint"), so a new instance can tell its predecessor from a foreign plugin.
 * One fresh listening socket per offer, with its mode, owner and SELinux label set
 * before it listens. Internal to the handoff module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct error;
struct handoff_options;
struct file_id;

/* An instance dir we hold the lock of: our own, or a dead instance's we adopted to
 * re-serve its sockets. */
struct handoff_dir {
	char *path;
	int lock_fd;
	size_t offers; /* offers whose socket is in it */
	bool own;
};

/**
 * handoff_dir_create_own() - create the socket dir and our own locked instance dir
 * @socket_dir: created (mkdir -p, 0700) if missing
 * @out:        set to our instance dir
 * @e:          on failure, the reason; may be NULL
 *
 * The instance dir is created under a temporary name, locked, then renamed into
 * place, so every instance dir another process sees has its lock. Nothing is logged.
 *
 * Return: 0 or -errno.
 */
int handoff_dir_create_own(const char *socket_dir, struct handoff_dir **out, struct error *e);

/**
 * handoff_dir_release() - release a dir's lock and free it
 * @d:      the dir; NULL: no-op
 * @remove: first delete the lock, the endpoint record and the dir itself (only if no
 *          socket is left in it)
 */
void handoff_dir_release(struct handoff_dir *d, bool remove);

/* A socket a dead instance left: its path, the file name, and the dir we adopted it
 * with (NULL for a socket directly in socket_dir, from a version before instance
 * dirs, whose server was found dead by connecting). */
typedef void (*handoff_orphan_fn)(void *data, struct handoff_dir *dir, const char *path,
				  const char *name);

/**
 * handoff_dirs_adopt_dead() - find what dead instances left in the socket dir
 * @socket_dir: the socket dir
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
int handoff_dirs_adopt_dead(const char *socket_dir, const struct handoff_dir *own,
			    handoff_orphan_fn fn, void *data, struct handoff_dir ***dirs,
			    size_t *count);

/**
 * handoff_dirs_announce_left() - drop ".left-<random>" in the socket dir
 * @socket_dir: the socket dir
 *
 * An instance that exits with sockets left (after its locks are released) tells a
 * live instance to re-serve them.
 *
 * Return: 0 or -errno.
 */
int handoff_dirs_announce_left(const char *socket_dir);

/**
 * handoff_dirs_is_announcement() - whether a file name is such an announcement
 * @name: a file name in the socket dir
 *
 * Return: true if it is.
 */
bool handoff_dirs_is_announcement(const char *name);

/**
 * handoff_dirs_clear_announcements() - remove every announcement in the socket dir
 * @socket_dir: the socket dir
 */
void handoff_dirs_clear_announcements(const char *socket_dir);

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
 * @socket_dir: the socket dir
 * @own:        our own instance dir, skipped
 * @id:         a DevicePlugin socket file's identity
 *
 * Return: true if a live instance in @socket_dir (other than @own) recorded @id as
 * its DevicePlugin socket.
 */
bool handoff_dirs_endpoint_is_instance(const char *socket_dir, const struct handoff_dir *own,
				       const struct file_id *id);

/**
 * handoff_socket_listen() - create a listening socket for an offer
 * @o:         the mode, owner and label to give it
 * @dir:       where; re-created if it vanished
 * @device_id: must be valid already
 * @counter:   the socket is "<dir>/<device_id>-<*counter>.sock"; advanced
 * @path:      set to its path (caller frees)
 * @e:         on failure, a one-line reason; may be NULL
 *
 * The socket is non-blocking. Nothing is logged but a failed cleanup.
 *
 * Return: the listening fd (caller owns), or -errno: ENAMETOOLONG, or the errno of
 * socket/bind/chmod/lchown/lsetxattr/listen.
 */
int handoff_socket_listen(const struct handoff_options *o, const char *dir, const char *device_id,
			  unsigned long long *counter, char **path, struct error *e);

/**
 * handoff_socket_listen_at() - handoff_socket_listen() at exactly a path (a rescue)
 * @o:    the mode, owner and label to give it
 * @path: where; a dead socket there is replaced
 * @e:    on failure, a one-line reason; may be NULL
 *
 * Return: the listening fd (caller owns), or -errno as handoff_socket_listen().
 */
int handoff_socket_listen_at(const struct handoff_options *o, const char *path, struct error *e);
