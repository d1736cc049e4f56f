/* Half-close and linger for the connections we answer on; see half_close.h. */
#include "half_close.h"

#include <errno.h>
#include <sys/socket.h>

int half_close_start(int fd)
{
	return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

int half_close_drain(int fd)
{
	char buf[4096];

	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return 1; /* EOF or an error: done either way */
	}
	return 0; /* still sending: more at the next wake-up */
}
