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

/* Creates socket_dir (mkdir -p, 0700) and our own locked instance dir in it
 * (created under a temporary name, locked, then renamed into place, so every
 * instance dir another process sees has its lock). Returns 0 and *out, or -errno
 * with the reason in *e (may be NULL); nothing is logged. */
int handoff_dir_create_own(const char *socket_dir, struct handoff_dir **out, struct error *e);

/* Releases a dir's lock and frees it; with remove, first deletes the lock, the
 * endpoint record and the dir itself (only if no socket is left in it). NULL: no-op. */
void handoff_dir_release(struct handoff_dir *d, bool remove);

/* A socket a dead instance left: its path, the file name, and the dir we adopted it
 * with (NULL for a socket directly in socket_dir, from a version before instance
 * dirs, whose server was found dead by connecting). */
typedef void (*handoff_orphan_fn)(void *data, struct handoff_dir *dir, const char *path,
				  const char *name);

/* Finds what dead instances left in socket_dir: locks each dead instance dir (keeping
 * the lock, so nobody else adopts it), and calls fn for every "*.sock" socket in it
 * and for every dead "*.sock" socket directly in socket_dir. Live instances' dirs and
 * live sockets are not touched. Adopted dirs are appended to *dirs (*count of them;
 * the caller releases them). Returns 0 or -errno (opendir), logged. */
int handoff_dirs_adopt_dead(const char *socket_dir, const struct handoff_dir *own,
			    handoff_orphan_fn fn, void *data, struct handoff_dir ***dirs,
			    size_t *count);

/* Drops ".left-<random>" in socket_dir: an instance that exits with sockets left
 * (after its locks are released) tells a live instance to re-serve them. Returns 0
 * or -errno. */
int handoff_dirs_announce_left(const char *socket_dir);
/* Whether a file name in socket_dir is such an announcement. */
bool handoff_dirs_is_announcement(const char *name);
/* Removes every announcement in socket_dir. */
void handoff_dirs_clear_announcements(const char *socket_dir);

/* Records in our dir that we serve the DevicePlugin socket id (replacing any earlier
 * record). Returns 0 or -errno. */
int handoff_dir_record_endpoint(const struct handoff_dir *own, const struct file_id *id);

/* Whether a live instance in socket_dir (other than own) recorded id as its
 * DevicePlugin socket. */
bool handoff_dirs_endpoint_is_instance(const char *socket_dir, const struct handoff_dir *own,
				       const struct file_id *id);

/* Creates a non-blocking listening socket at a fresh "<dir>/<device_id>-<*counter>.sock"
 * (advancing *counter), with o's mode, owner and label, re-creating dir if it
 * vanished. device_id must be valid already. Returns the listening fd (caller owns)
 * and *path (caller frees), or -errno (ENAMETOOLONG, or the errno of
 * socket/bind/chmod/lchown/lsetxattr/listen) with a one-line reason in *e (may be
 * NULL); nothing is logged but a failed cleanup. */
int handoff_socket_listen(const struct handoff_options *o, const char *dir, const char *device_id,
			  unsigned long long *counter, char **path, struct error *e);

/* The same at exactly path, replacing a dead socket there (a rescue). */
int handoff_socket_listen_at(const struct handoff_options *o, const char *path, struct error *e);
