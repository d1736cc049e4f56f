/* Unix socket files: address, probe, listen without stealing, unlink only our own,
 * the peer's credentials; by path, or by name in a directory we hold open (*_at). */
#include "unix_socket.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

int unix_address(struct sockaddr_un *addr, const char *path)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(addr->sun_path))
		return -ENAMETOOLONG;
	strcpy(addr->sun_path, path);
	return 0;
}

/* A non-blocking, close-on-exec stream socket and the address of path. Returns the
 * fd (the caller owns it) or -errno. */
static int unix_socket_for(const char *path, struct sockaddr_un *addr)
{
	int r = unix_address(addr, path);

	if (r < 0)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

int unix_socket_connect(const char *path)
{
	struct sockaddr_un addr;
	cleanup_close int fd = unix_socket_for(path, &addr);

	if (fd < 0)
		return fd;
	/* A unix connect completes at once, or fails with EAGAIN when the backlog is full. */
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -errno;
	return take_fd(&fd);
}

/* A probe's answer from its connect's result: a server answered, or its backlog is
 * full (-EAGAIN), so it is alive. */
static int probe_result(int fd)
{
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return fd == -EAGAIN ? 0 : fd;
}

int unix_socket_probe(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	return probe_result(unix_socket_connect(path));
}

int unix_socket_remove_dead(const char *path)
{
	int r = unix_socket_probe(path);

	if (r == 0)
		return -EADDRINUSE;
	if (r == -ENOTSOCK)
		return -EEXIST;
	if (r != -ECONNREFUSED && r != -ENOENT)
		return r;
	/* A dead socket (its server is gone), or one that just went: it may go. */
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* bind() under umask ~mode: for AF_UNIX the kernel gives the new file
 * 0777 & ~umask (unix_bind_bsd(), net/unix/af_unix.c), and fchmod() on a socket fd
 * does not reach the file, so the umask is the only way to create it with its mode
 * (never a chmod by path afterwards, which a symlink renamed over it would follow).
 * The daemon is single-threaded: nothing else creates a file meanwhile. */
static int bind_with_mode(int fd, const struct sockaddr_un *addr, mode_t mode)
{
	mode_t old = umask(~mode & 0777);
	int r = bind(fd, (const struct sockaddr *)addr, sizeof(*addr));
	int saved = errno;

	umask(old);
	errno = saved;
	return r;
}

int unix_socket_bind_mode(const char *path, mode_t mode, struct file_id *id)
{
	struct sockaddr_un addr;
	struct stat st;
	int r;
	cleanup_close int fd = unix_socket_for(path, &addr);

	if (fd < 0)
		return fd;
	if (bind_with_mode(fd, &addr, mode) < 0) {
		if (errno != EADDRINUSE)
			return -errno;
		if ((r = unix_socket_remove_dead(path)) < 0)
			return r;
		if (bind_with_mode(fd, &addr, mode) < 0)
			return -errno;
	}
	if (lstat(path, &st) < 0) {
		r = -errno;
		(void)unlink(path);
		return r;
	}
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	return take_fd(&fd);
}

int unix_socket_bind(const char *path, struct file_id *id)
{
	mode_t mask = umask(0);

	umask(mask);
	return unix_socket_bind_mode(path, 0777 & ~mask, id);
}

/* Why "/proc/self/fd/<dirfd>/<name>" and not the directory's path: Linux has no
 * bindat()/connectat(), and the path is walked again on every call, so a rename or a
 * symlink anywhere above the directory (its ancestors are not ours: a hostPath) would
 * send the socket elsewhere. The magic link resolves to exactly the directory the fd
 * holds, wherever it is now; only <name> is looked up in it, and bind() never follows
 * a symlink there (an existing name is EADDRINUSE). Needs /proc, which every container
 * runtime mounts. */
int unix_address_at(struct sockaddr_un *addr, int dirfd, const char *name)
{
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (!*name || strchr(name, '/'))
		return -EINVAL;
	int n =
	    snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", dirfd, name);
	return n < 0 || (size_t)n >= sizeof(addr->sun_path) ? -ENAMETOOLONG : 0;
}

int unix_socket_bind_at(int dirfd, const char *name, mode_t mode, struct file_id *id)
{
	struct sockaddr_un addr;
	int r = unix_address_at(&addr, dirfd, name);

	return r < 0 ? r : unix_socket_bind_mode(addr.sun_path, mode, id);
}

int unix_socket_connect_at(int dirfd, const char *name)
{
	struct sockaddr_un addr;
	struct stat st;
	int r = unix_address_at(&addr, dirfd, name);

	if (r < 0)
		return r;
	/* connect() follows a symlink: only a socket is connected to. */
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISSOCK(st.st_mode))
		return -ENOTSOCK;
	return unix_socket_connect(addr.sun_path);
}

int unix_socket_probe_at(int dirfd, const char *name)
{
	return probe_result(unix_socket_connect_at(dirfd, name));
}

int unix_peer_credentials(int fd, struct ucred *cred)
{
	socklen_t len = sizeof(*cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0) {
		*cred = (struct ucred){.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
		return -errno;
	}
	return 0;
}

bool unix_socket_is_ours(const char *path, const struct file_id *id)
{
	struct stat st;

	return lstat(path, &st) == 0 && st.st_dev == id->dev && st.st_ino == id->ino;
}

int unix_socket_unlink_ours(const char *path, const struct file_id *id)
{
	if (!unix_socket_is_ours(path, id))
		return 0;
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}
