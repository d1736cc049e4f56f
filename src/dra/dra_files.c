/* Directory checks and whole-file writes for the CDI dir and the claim records: every
 * path below a directory is reached through its O_NOFOLLOW fd with *at() calls. */
#include "dra_files.h"
#include "../basic/error.h"
#include "../basic/error_text.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

int dra_dir_open_checked(const char *path, struct error *e)
{
	struct stat st;
	int r = mkdir_parents(path, 0755);

	if (r < 0)
		return error_set(e, r, "cannot create %s: %s", path, error_text(-r));
	int fd = openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return error_set(e, -errno, "cannot open the directory %s: %s", path,
				 error_text(errno));
	if (fstat(fd, &st) < 0) {
		r = error_set(e, -errno, "cannot stat %s: %s", path, error_text(errno));
		close(fd);
		return r;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022)) {
		close(fd);
		return error_set(e, -EPERM,
				 "refusing %s: owned by uid %u with mode %04o; it must be ours "
				 "(uid %u) and writable by nobody else",
				 path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
				 (unsigned)geteuid());
	}
	return fd;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

int dra_file_write_atomic(int dir_fd, const char *dir_path, const char *name, const void *data,
			  size_t len, mode_t mode, struct error *e)
{
	static unsigned long counter;
	char tmp[256];
	int r;

	if (snprintf(tmp, sizeof(tmp), ".%s.%d.%lu.tmp", name, (int)getpid(), ++counter) >=
	    (int)sizeof(tmp))
		return error_set(e, -ENAMETOOLONG, "file name too long: %s", name);
	cleanup_close int fd =
	    openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return error_set(e, -errno, "cannot create %s/%s: %s", dir_path, tmp,
				 error_text(errno));
	if (fchmod(fd, mode) < 0)
		r = error_set(e, -errno, "cannot chmod %s/%s: %s", dir_path, tmp,
			      error_text(errno));
	else if ((r = write_all(fd, data, len)) < 0)
		error_set(e, r, "cannot write %s/%s: %s", dir_path, tmp, error_text(-r));
	else if (fsync(fd) < 0)
		r = error_set(e, -errno, "cannot fsync %s/%s: %s", dir_path, tmp,
			      error_text(errno));
	else if (renameat(dir_fd, tmp, dir_fd, name) < 0)
		r = error_set(e, -errno, "cannot rename %s/%s to %s: %s", dir_path, tmp, name,
			      error_text(errno));
	else if (fsync(dir_fd) < 0)
		r = error_set(e, -errno, "cannot fsync %s: %s", dir_path, error_text(errno));
	else
		return 0;
	unlinkat(dir_fd, tmp, 0); /* best effort: nothing else can be done about it */
	return r;
}

int dra_file_remove(int dir_fd, const char *dir_path, const char *name, struct error *e)
{
	if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
		return error_set(e, -errno, "cannot remove %s/%s: %s", dir_path, name,
				 error_text(errno));
	return 0;
}

ssize_t dra_file_read(int dir_fd, const char *name, char *buf, size_t size)
{
	cleanup_close int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	size_t len = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	for (;;) {
		if (len + 1 >= size)
			return -EFBIG; /* full, or longer than the buffer holds */
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}
