/* Unix stream socket files, once for every module: the address, binding a path
 * without ever taking it from a live server, telling a live socket from a dead one,
 * removing a socket file only while it is still the one we bound, and who the peer
 * on a connection is (SO_PEERCRED). */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

/* Which file a path named when we bound it: a socket file replaced by someone else's
 * has another inode. */
struct file_id {
	dev_t dev;
	ino_t ino;
};

/**
 * unix_address() - fill @addr for @path
 * @addr: the address to fill
 * @path: the socket file's path
 * Return: 0, or -ENAMETOOLONG if @path does not fit sun_path.
 */
int unix_address(struct sockaddr_un *addr, const char *path);

/**
 * unix_socket_connect() - connect to @path without blocking
 * @path: a socket file's path
 * Return: the connected, non-blocking, close-on-exec socket (the caller owns it), or
 * -errno: -EAGAIN if the server's backlog is full, -ECONNREFUSED, -ENOENT,
 * -ENAMETOOLONG, or socket/connect's errno.
 */
int unix_socket_connect(const char *path);

/**
 * unix_socket_probe() - whether a live server listens on @path
 * @path: a socket file's path
 *
 * Connects without blocking and hangs up at once: the server sees a connection that
 * closes before saying anything.
 *
 * Return: 0 if a server listens there (also when its backlog is full), -ENOENT if
 * there is no file, -ECONNREFUSED if it is a socket nobody listens on (its server is
 * gone), -ENOTSOCK if the file is not a socket, or another -errno (socket, connect).
 */
int unix_socket_probe(const char *path);

/**
 * unix_socket_remove_dead() - make path free unless a live server or a non-socket is there
 * @path: the socket path
 *
 * Return: 0 when nothing is at path any more (a dead socket was removed), -EADDRINUSE
 * (a live server), -EEXIST (not a socket), or another -errno.
 */
int unix_socket_remove_dead(const char *path);

/**
 * unix_socket_bind() - bind a new socket to @path, never taking it from a live server
 * @path: where to bind
 * @id: set to the socket file's identity (for unix_socket_is_ours())
 *
 * A socket file already at @path whose server is gone is replaced; a live one is not.
 * The caller sets the file's mode, owner and label and then calls listen(), so no
 * peer can connect before the file is right.
 *
 * The file's mode comes from the process umask at bind().
 *
 * Return: the bound, non-blocking, close-on-exec socket (the caller owns it), or
 * -errno: -EADDRINUSE if a live server holds @path, -EEXIST if a file that is not a
 * socket is there, -ENAMETOOLONG, or socket/bind/lstat's errno.
 */
int unix_socket_bind(const char *path, struct file_id *id);

/**
 * unix_socket_bind_mode() - unix_socket_bind() with the file created at @mode
 * @path: where to bind
 * @mode: the socket file's permission bits, set by bind() itself (a narrow umask
 *        around it), never by a chmod of @path afterwards
 * @id:   set to the socket file's identity
 *
 * Return: as unix_socket_bind().
 */
int unix_socket_bind_mode(const char *path, mode_t mode, struct file_id *id);

/**
 * unix_address_at() - the address of @name in the directory open as @dirfd
 * @addr:  filled with "/proc/self/fd/<dirfd>/<name>", which reaches exactly that
 *         directory wherever it is now (see unix_socket.c for why not its path)
 * @dirfd: an open directory (kept open while the address is used)
 * @name:  a file name in it, no '/'
 *
 * Return: 0, -EINVAL (empty or a '/' in @name) or -ENAMETOOLONG.
 */
int unix_address_at(struct sockaddr_un *addr, int dirfd, const char *name);

/**
 * unix_socket_bind_at() - unix_socket_bind_mode() of @name in the directory @dirfd
 * @dirfd: an open directory
 * @name:  the socket's file name in it
 * @mode:  the socket file's permission bits, set at bind()
 * @id:    set to the socket file's identity
 *
 * Return: as unix_socket_bind(), or -EINVAL for a bad @name.
 */
int unix_socket_bind_at(int dirfd, const char *name, mode_t mode, struct file_id *id);

/**
 * unix_socket_connect_at() - connect to the socket @name in the directory @dirfd
 * @dirfd: an open directory
 * @name:  the socket's file name in it; a symlink or any other non-socket is refused
 *
 * Return: the connected, non-blocking socket (the caller owns it), or -errno:
 * -ENOTSOCK, -ENOENT, connect()'s (-ECONNREFUSED: nobody listens; -EAGAIN: backlog
 * full).
 */
int unix_socket_connect_at(int dirfd, const char *name);

/**
 * unix_socket_probe_at() - unix_socket_probe() of @name in the directory @dirfd
 * @dirfd: an open directory
 * @name:  the socket's file name in it
 *
 * Return: 0 if a live server listens (a full backlog included), else as
 * unix_socket_connect_at().
 */
int unix_socket_probe_at(int dirfd, const char *name);

/**
 * unix_peer_credentials() - the credentials of the peer on a connected unix socket
 * @fd:   the connection
 * @cred: filled from SO_PEERCRED (pid as our pid namespace sees it: 0 when the peer
 *        is outside it); on failure pid 0, uid and gid -1
 *
 * Return: 0 or -errno of getsockopt().
 */
int unix_peer_credentials(int fd, struct ucred *cred);

/**
 * unix_socket_is_ours() - whether @path still names the socket file @id
 * @path: the path we bound
 * @id: what unix_socket_bind() returned for it
 * Return: true if @path exists and is the same file.
 */
bool unix_socket_is_ours(const char *path, const struct file_id *id);

/**
 * unix_socket_unlink_ours() - remove @path if it is still the socket file @id
 * @path: the path we bound
 * @id: what unix_socket_bind() returned for it
 * Return: 0 (also when it is gone or no longer ours) or -errno of unlink().
 */
int unix_socket_unlink_ours(const char *path, const struct file_id *id);
