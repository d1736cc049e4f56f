/* Putting the gRPC server's listening socket at its path without a moment in which
 * the path is missing or half-ready: bound under a hidden temporary name, identified,
 * listening, then renamed or linked into place (see server_socket.h). */
#include "server_socket.h"
#include "../basic/error_text.h"
#include "../basic/unix_socket.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The kubelet's gRPC sockets: at the connection cap with every connection busy, a peer
 * waits in this backlog. Not SOMAXCONN, which is the libc's (glibc 4096, musl 128: the
 * release's build refused non-blocking connects behind 128 queued peers); the kernel
 * caps it at net.core.somaxconn. */
#define GRPC_LISTEN_BACKLOG 4096

/* The temporary name for path: beside it, hidden (a leading '.'), so the kubelet's
 * plugin watcher, which skips such names, never tries to register it. */
static char *server_temporary_path(const char *path)
{
	const char *slash = strrchr(path, '/');
	int dir_len = slash ? (int)(slash - path + 1) : 0;

	return xasprintf("%.*s.%s.%d.new", dir_len, path, path + dir_len, (int)getpid());
}

/* Links the listening socket at tmp to path unless a live server is there (a dead
 * socket is replaced), and removes tmp. Returns 0 or -errno (-EADDRINUSE: live). */
static int server_publish(const char *tmp, const char *path)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (link(tmp, path) == 0) {
			if (unlink(tmp) < 0 && errno != ENOENT)
				log_warning("cannot remove %s: %s", tmp, error_text(errno));
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
		int r = unix_socket_remove_dead(path);
		if (r < 0)
			return r;
	}
	return -EADDRINUSE;
}

int grpc_server_socket_open(const char *path, bool replace_live, struct file_id *id,
			    grpc_bound_fn bound, void *data)
{
	cleanup_free char *tmp = server_temporary_path(path);
	struct stat st;

	/* A rename replaces any file: only ever a socket. */
	if (replace_live && lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return -EEXIST;
	cleanup_close int fd = unix_socket_bind(tmp, id);

	if (fd < 0)
		return fd;
	if (bound)
		bound(data, id);
	int r = listen(fd, GRPC_LISTEN_BACKLOG) < 0 ? -errno : 0;
	if (r == 0)
		r = replace_live ? (rename(tmp, path) < 0 ? -errno : 0) : server_publish(tmp, path);
	if (r < 0) {
		(void)unlink(tmp);
		return r;
	}
	return take_fd(&fd);
}
