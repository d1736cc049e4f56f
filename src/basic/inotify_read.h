/* The one inotify reader: reads one buffer of a non-blocking inotify fd and hands each event to a
 * callback, so no module parses the kernel's variable-length records itself. */
#pragma once

#include <sys/inotify.h>

/* One read's buffer: many events, and at least one of any name length (NAME_MAX). */
#define INOTIFY_READ_SIZE 4096

/**
 * inotify_read_once() - read one buffer of events of @fd (bounded work per wake-up)
 * @fd:   a non-blocking inotify fd
 * @fn:   called for each event read (IN_Q_OVERFLOW included: events were lost)
 * @data: passed to @fn
 * Return: the bytes read (0: the queue was empty), or -errno of read() (other than
 * EAGAIN/EINTR).
 */
int inotify_read_once(int fd, void (*fn)(void *data, const struct inotify_event *ev), void *data);
