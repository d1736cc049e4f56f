/* Non-blocking output and the graceful end of our stream sockets; see stream_socket.h. */
#include "stream_socket.h"

#include <errno.h>
#include <sys/socket.h>

int stream_send_pending(int fd, const uint8_t *buf, size_t len, size_t *pos)
{
	while (*pos < len) {
		ssize_t n = send(fd, buf + *pos, len - *pos, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		*pos += (size_t)n;
	}
	return 1;
}

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
