/* Handoff socket files: mkdir -p of the socket dir, stale socket removal, and
 * binding each offer's socket with its mode, owner and label before it listens, so
 * no peer can connect to a socket that is not ready. */
#include "handoff_socket.h"
#include "handoff.h"
#include "../iommufd/selinux.h"
#include "../log.h"
#include "../util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define HANDOFF_BACKLOG	      16
#define HANDOFF_BIND_ATTEMPTS 8

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int remove_stale_sockets(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		int r = -errno;
		close(dfd);
		return r;
	}
	unsigned removed = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat st;
		if (!has_suffix(de->d_name, ".sock") ||
		    fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		if (unlinkat(dfd, de->d_name, 0) < 0)
			log_warning("cannot remove stale handoff socket %s/%s: %s", dir, de->d_name,
				    strerror(errno));
		else
			removed++;
	}
	closedir(d);
	if (removed)
		log_info("removed %u stale handoff socket(s) from %s", removed, dir);
	return 0;
}

int handoff_socket_dir_prepare(const char *dir)
{
	int r = mkdir_parents(dir, 0700);
	if (r < 0) {
		log_error("cannot create handoff socket dir %s: %s", dir, strerror(-r));
		return r;
	}
	r = remove_stale_sockets(dir);
	if (r < 0)
		log_error("cannot list handoff socket dir %s: %s", dir, strerror(-r));
	return r;
}

static int socket_bind_fresh(const struct handoff_options *o, int fd, const char *device_id,
			     unsigned long long *counter, char **path, char *msg, size_t msg_size)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int r = -EADDRINUSE;

	/* EADDRINUSE: a file another process put there; move on to the next name. */
	for (int attempt = 0; attempt < HANDOFF_BIND_ATTEMPTS && r == -EADDRINUSE; attempt++) {
		free(*path);
		*path = xasprintf("%s/%s-%llu.sock", o->socket_dir, device_id, (*counter)++);
		if (strlen(*path) >= sizeof(addr.sun_path)) {
			snprintf(msg, msg_size, "handoff socket path %s is longer than %zu bytes",
				 *path, sizeof(addr.sun_path) - 1);
			return -ENAMETOOLONG;
		}
		strcpy(addr.sun_path, *path);
		r = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
		if (r == -ENOENT && mkdir_parents(o->socket_dir, 0700) == 0)
			r = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ? -errno : 0;
	}
	if (r < 0)
		snprintf(msg, msg_size, "cannot bind handoff socket %s: %s", *path, strerror(-r));
	return r;
}

static int socket_prepare(const struct handoff_options *o, int fd, const char *path, char *msg,
			  size_t msg_size)
{
	int r;

	if (chmod(path, o->socket_mode) < 0) {
		r = -errno;
		snprintf(msg, msg_size, "cannot chmod handoff socket %s to %04o: %s", path,
			 (unsigned)o->socket_mode, strerror(-r));
		return r;
	}
	if ((o->socket_uid != (uid_t)-1 || o->socket_gid != (gid_t)-1) &&
	    lchown(path, o->socket_uid, o->socket_gid) < 0) {
		r = -errno;
		snprintf(msg, msg_size, "cannot chown handoff socket %s to %d:%d: %s", path,
			 (int)o->socket_uid, (int)o->socket_gid, strerror(-r));
		return r;
	}
	r = selinux_label_path(o->labeler, path);
	if (r < 0) {
		snprintf(msg, msg_size, "cannot label handoff socket %s with %s: %s", path,
			 selinux_label(o->labeler), strerror(-r));
		return r;
	}
	if (listen(fd, HANDOFF_BACKLOG) < 0) {
		r = -errno;
		snprintf(msg, msg_size, "cannot listen on handoff socket %s: %s", path,
			 strerror(-r));
		return r;
	}
	return 0;
}

int handoff_socket_listen(const struct handoff_options *o, const char *device_id,
			  unsigned long long *counter, char **path_out, char *msg, size_t msg_size)
{
	cleanup_close int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cleanup_free char *path = NULL;
	int r;

	if (fd < 0) {
		r = -errno;
		snprintf(msg, msg_size, "cannot create handoff socket: %s", strerror(-r));
		return r;
	}
	r = socket_bind_fresh(o, fd, device_id, counter, &path, msg, msg_size);
	if (r < 0)
		return r;
	r = socket_prepare(o, fd, path, msg, msg_size);
	if (r < 0) {
		if (unlink(path) < 0)
			log_warning("cannot remove handoff socket %s: %s", path, strerror(errno));
		return r;
	}
	*path_out = take_ptr(path);
	return take_fd(&fd);
}
