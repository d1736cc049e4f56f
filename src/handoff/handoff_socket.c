/* Handoff socket files: binding each offer's socket with its mode (at bind()), owner
 * and label before it listens, so no peer can connect to a socket that is not ready;
 * all through the fd of the dir it is in (never by path, see instance_dir.c). The
 * instance dirs they live in are instance_dir.c's. */
#include "handoff_socket.h"
#include "../basic/error_text.h"
#include "handoff.h"
#include "../basic/error.h"
#include "../basic/unix_socket.h"
#include "../selinux/selinux.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define HANDOFF_BACKLOG	      16
#define HANDOFF_BIND_ATTEMPTS 8
/* Gives the socket name (bound in dir_fd) its owner and label, then listens. */
static int socket_prepare(const struct handoff_options *o, int fd, int dir_fd, const char *path,
			  const char *name, struct error *e)
{
	struct sockaddr_un at;
	int r;

	/* The mode came with bind(); fchownat and lsetxattr do not follow a symlink. */
	if ((o->socket_uid != (uid_t)-1 || o->socket_gid != (gid_t)-1) &&
	    fchownat(dir_fd, name, o->socket_uid, o->socket_gid, AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		return error_set(e, r, "cannot chown handoff socket %s to %d:%d: %s", path,
				 (int)o->socket_uid, (int)o->socket_gid, error_text(-r));
	}
	r = unix_address_at(&at, dir_fd, name);
	if (r >= 0)
		r = selinux_label_path(o->labeler, at.sun_path);
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

/* Prepares the socket bound as name in dir_fd; on failure removes it. Returns the fd
 * or -errno. */
static int socket_finish(const struct handoff_options *o, int bound_fd, int dir_fd,
			 const char *path, const char *name, struct error *e)
{
	cleanup_close int fd = bound_fd;
	int r = socket_prepare(o, fd, dir_fd, path, name, e);

	if (r < 0) {
		if (unlinkat(dir_fd, name, 0) < 0)
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

/* Binds name in dir_fd; peers connect by path, so it must fit in sun_path too. */
static int socket_bind(const struct handoff_options *o, int dir_fd, const char *path,
		       const char *name)
{
	struct sockaddr_un addr;
	struct file_id id;
	int r = unix_address(&addr, path);

	return r < 0 ? r : unix_socket_bind_at(dir_fd, name, o->socket_mode, &id);
}

int handoff_socket_listen(const struct handoff_options *o, const struct handoff_dir *dir,
			  const char *device_id, unsigned long long *counter, char **path_out,
			  struct error *e)
{
	cleanup_free char *path = NULL;
	cleanup_free char *name = NULL;
	int fd = -EADDRINUSE;

	/* EADDRINUSE: a live socket another process put there; move on to the next name. */
	for (int attempt = 0; attempt < HANDOFF_BIND_ATTEMPTS && fd == -EADDRINUSE; attempt++) {
		free(name);
		free(path);
		name = xasprintf("%s-%llu.sock", device_id, (*counter)++);
		path = xasprintf("%s/%s", dir->path, name);
		fd = socket_bind(o, dir->fd, path, name);
	}
	if (fd < 0)
		return bind_error(fd, path, e);
	fd = socket_finish(o, fd, dir->fd, path, name, e);
	if (fd >= 0)
		*path_out = take_ptr(path);
	return fd;
}

int handoff_socket_listen_at(const struct handoff_options *o, int dir_fd, const char *path,
			     const char *name, struct error *e)
{
	int fd = socket_bind(o, dir_fd, path, name);

	if (fd < 0)
		return bind_error(fd, path, e);
	return socket_finish(o, fd, dir_fd, path, name, e);
}
