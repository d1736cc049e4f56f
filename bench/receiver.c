/* One timed handoff as a consumer does it; see receiver.h. The socket is
 * non-blocking (unix_socket_connect), so each step waits in poll() first. */
#include "receiver.h"

#include "basic/unix_socket.h"
#include "iommufd_receive.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

/* Waits up to BENCH_WAIT_MS for fd to be readable. Returns 0 or -errno. */
static int wait_readable(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int r;

	do
		r = poll(&pfd, 1, BENCH_WAIT_MS);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return r == 0 ? -ETIMEDOUT : 0;
}

unsigned long long receiver_handoff(struct bench *b, const char *path)
{
	unsigned long long t0 = bench_now_ns();
	cleanup_close int sock = unix_socket_connect(path);
	if (sock < 0)
		bench_die(b, "cannot connect to the handoff socket %s: %s", path, strerror(-sock));
	int r = wait_readable(sock);
	if (r < 0)
		bench_die(b, "no fd offered on %s within %d ms: %s", path, BENCH_WAIT_MS,
			  strerror(-r));
	int received;
	r = iommufd_receive_on(sock, &received);
	if (r < 0)
		bench_die(b, "handoff on %s: %s", path, strerror(-r));
	close(received);
	char buf[8];
	ssize_t n = 1;
	if ((r = wait_readable(sock)) == 0)
		n = read(sock, buf, sizeof(buf));
	if (n != 0)
		bench_die(b, "the plugin did not close %s after the ACK: %s", path,
			  r < 0	  ? strerror(-r)
			  : n < 0 ? strerror(errno)
				  : "it sent more");
	return bench_now_ns() - t0;
}
