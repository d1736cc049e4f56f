/* Receives the iommufd from the plugin's handoff socket: one recvmsg for the 0x00
 * byte and the SCM_RIGHTS fd, one send for the ACK. Blocking, bounded by socket
 * timeouts; every fd it gets is either returned or closed. */
#include "iommufd_receive.h"
#include "fd_message.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

/* Copies the fds msg carries in SCM_RIGHTS to fds and returns their number. They fit:
 * the control buffer holds FD_MESSAGE_MAX_FDS of them at the most. */
static size_t received_fds(struct msghdr *msg, int fds[FD_MESSAGE_MAX_FDS])
{
	size_t total = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		memcpy(fds + total, CMSG_DATA(c), count * sizeof(int));
		total += count;
	}
	return total;
}

static int set_timeouts(int sock, int timeout_ms)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

	if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* A blocking step's -errno, with its timeout (-EAGAIN, or -EINPROGRESS for connect)
 * as -ETIMEDOUT. */
static int timeout_error(int r)
{
	return r == -EAGAIN || r == -EWOULDBLOCK || r == -EINPROGRESS ? -ETIMEDOUT : r;
}

int iommufd_receive_on(int sock, int *fd_out)
{
	unsigned char data[2];
	struct fd_message m;
	int fds[FD_MESSAGE_MAX_FDS];
	ssize_t n;
	int r;

	/* The message is one byte; a 2-byte buffer tells a sender of more apart. */
	fd_message_init(&m, data, sizeof(data));
	do
		n = recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return timeout_error(-errno);
	size_t count = received_fds(&m.msg, fds);
	if (n != 1 || data[0] != 0x00 || count != 1 || (m.msg.msg_flags & MSG_CTRUNC)) {
		for (size_t i = 0; i < count; i++)
			close(fds[i]);
		return n == 0 && count != 1 ? -ECONNRESET : -EPROTO;
	}
	int fd = fds[0];

	unsigned char ack = 0x00;
	do
		n = send(sock, &ack, 1, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != 1) {
		r = n < 0 ? timeout_error(-errno) : -EIO;
		close(fd);
		return r;
	}
	*fd_out = fd;
	return 0;
}

static int receive_on(int sock, const char *socket_path, int timeout_ms, int *fd_out)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	int r;

	if (strlen(socket_path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, socket_path);
	if (timeout_ms > 0 && (r = set_timeouts(sock, timeout_ms)) < 0)
		return r;
	if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return timeout_error(-errno);
	return iommufd_receive_on(sock, fd_out);
}

int iommufd_receive_timeout(const char *socket_path, int timeout_ms, int *fd)
{
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	int r = receive_on(sock, socket_path, timeout_ms, fd);
	close(sock);
	return r;
}

int iommufd_receive(const char *socket_path, int *fd)
{
	return iommufd_receive_timeout(socket_path, IOMMUFD_RECEIVE_DEFAULT_TIMEOUT_MS, fd);
}
