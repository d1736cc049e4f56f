/* Reads inotify records: struct inotify_event followed by len bytes of name. */
#include "inotify_read.h"

#include <errno.h>
#include <unistd.h>

int inotify_read_events(int fd, void (*fn)(void *data, const struct inotify_event *ev), void *data)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return 0;
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			p += sizeof(*ev) + ev->len;
			fn(data, ev);
		}
	}
}
