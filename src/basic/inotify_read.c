/* Reads inotify records: struct inotify_event followed by len bytes of name. */
#include "inotify_read.h"

#include <errno.h>
#include <unistd.h>

int inotify_read_once(int fd, void (*fn)(void *data, const struct inotify_event *ev), void *data)
{
	char buf[INOTIFY_READ_SIZE] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	do
		n = read(fd, buf, sizeof(buf));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -errno;
	for (char *p = buf; p < buf + n;) {
		const struct inotify_event *ev = (const struct inotify_event *)p;
		p += sizeof(*ev) + ev->len;
		fn(data, ev);
	}
	return (int)n;
}
