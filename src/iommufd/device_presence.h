/* Watches whether the iommufd device (/dev/iommu) exists, with inotify on its parent
 * directory inside the loop: no polling. Reports only real changes, so the device
 * plugin can mark its devices healthy or unhealthy. */
#pragma once

#include <stdbool.h>

struct loop;
struct device_presence;

/* Called from the loop when the device appears (present) or disappears. */
typedef void (*device_presence_fn)(void *data, bool present);

/**
 * device_presence_new() - start watching whether a device node exists
 * @loop:        the loop
 * @device_path: the node, copied; present means it exists as a character device
 *               (stat follows symlinks)
 * @on_change:   runs as on_change(data, present) only when that changes, and logs
 *               nothing: the owner says what a change means
 * @data:        passed to @on_change
 * @out:         set to the watcher (free with device_presence_free())
 *
 * Read the initial state with device_presence_present().
 *
 * Return: 0, or -errno, logged: EINVAL (no file name), ENOENT if the parent directory
 * does not exist, EMFILE/ENOSPC (inotify limits), or epoll's errno.
 */
int device_presence_new(struct loop *loop, const char *device_path, device_presence_fn on_change,
			void *data, struct device_presence **out);

/**
 * device_presence_free() - stop watching and free
 * @presence: the watcher; NULL is a no-op
 */
void device_presence_free(struct device_presence *presence);

/**
 * device_presence_present() - whether the device was present at the last check
 * @presence: the watcher
 *
 * Return: true if it was.
 */
bool device_presence_present(const struct device_presence *presence);

struct metrics_writer;
/**
 * device_presence_metrics_write() - the device presence's metrics
 * @w:        the writer
 * @presence: a const struct device_presence *
 *
 * A metrics_source_fn: whether the device node exists (iommufd_metrics.c).
 */
void device_presence_metrics_write(struct metrics_writer *w, const void *presence);
