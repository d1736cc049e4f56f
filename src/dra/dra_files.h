/* Files the DRA driver keeps in directories it does not own alone (the CDI dir) or
 * owns (its claim records): each directory is opened once with O_NOFOLLOW and checked,
 * and files below it are written whole or not at all (temp file, fsync, renameat). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

struct error;

/**
 * dra_dir_open_checked() - open a directory shared with other root daemons, or refuse
 * @path: the directory; created (mode 0755, parents too) if missing
 * @e:    on failure, the reason
 *
 * Opens @path with O_DIRECTORY|O_NOFOLLOW and checks through the fd that it is owned
 * by our euid and writable by nobody else (the CDI dir: the container runtime reads
 * it, other drivers write their own files into it as root).
 *
 * Return: the fd (caller owns it), or -errno: -ELOOP/-ENOTDIR (a symlink or not a
 * directory), -EPERM (another owner, or group/other may write), mkdir/open's errno.
 */
int dra_dir_open_checked(const char *path, struct error *e);

/**
 * dra_file_write_atomic() - replace a file in a directory with new content, atomically
 * @dir_fd:   the directory
 * @dir_path: its path, for messages
 * @name:     the file's name (no '/')
 * @data:     the content
 * @len:      its length
 * @mode:     the file's mode, set on the fd
 * @e:        on failure, the reason
 *
 * Writes a temporary file beside it (O_CREAT|O_EXCL|O_NOFOLLOW), fsyncs it, renames
 * it over @name (a symlink there is replaced, never followed) and fsyncs the
 * directory. A reader sees the old file or the new one, never a part.
 *
 * Return: 0 or -errno (the temporary file is removed).
 */
int dra_file_write_atomic(int dir_fd, const char *dir_path, const char *name, const void *data,
			  size_t len, mode_t mode, struct error *e);

/**
 * dra_file_remove() - remove a file below a directory
 * @dir_fd:   the directory
 * @dir_path: its path, for messages
 * @name:     the file's name
 * @e:        on failure, the reason
 *
 * Return: 0 (also when there was no such file) or -errno.
 */
int dra_file_remove(int dir_fd, const char *dir_path, const char *name, struct error *e);

/**
 * dra_file_read() - read a small regular file below a directory
 * @dir_fd: the directory
 * @name:   the file's name; a symlink is refused (O_NOFOLLOW)
 * @buf:    filled and NUL-terminated
 * @size:   its size; a longer file is -EFBIG
 *
 * Return: the length read, or -errno.
 */
ssize_t dra_file_read(int dir_fd, const char *name, char *buf, size_t size);
