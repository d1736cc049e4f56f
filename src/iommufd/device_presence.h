/* Watches whether the iommufd device (/dev/iommu) exists, with inotify on its parent
 * directory inside the loop: no polling. Reports only real changes, so the device
 * plugin can mark its devices healthy or unhealthy. */
#pragma once

#include <stdbool.h>

struct loop;
struct device_presence;

/* Called from the loop when the device appears (present) or disappears. */
typedef void (*device_presence_fn)(void *data, bool present);

/* Starts watching device_path (copied): present means it exists as a character
 * device (stat follows symlinks). on_change(data, present) runs only when that
 * changes, and logs nothing: the owner says what a change means. Read the initial
 * state with device_presence_present(). Returns 0 and *out
 * (free with device_presence_free), or -errno, logged: EINVAL (no file name),
 * ENOENT if the parent directory does not exist, EMFILE/ENOSPC (inotify limits), or
 * epoll's errno. */
int device_presence_new(struct loop *loop, const char *device_path, device_presence_fn on_change,
			void *data, struct device_presence **out);

/* Stops watching and frees. NULL is a no-op. */
void device_presence_free(struct device_presence *presence);

/* Whether the device was present at the last check. */
bool device_presence_present(const struct device_presence *presence);

struct metrics_writer;
/* A metrics_source_fn for a const struct device_presence *: whether the device
 * node exists (iommufd_metrics.c). */
void device_presence_metrics_write(struct metrics_writer *w, const void *presence);
