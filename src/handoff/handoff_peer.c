/* The server side of the handoff wire protocol (docs/protocol.md), per connection:
 * who the peer is (SO_PEERCRED, /proc/PID/cgroup, --allowed-uids), the one message
 * (0x00 + the fd in SCM_RIGHTS) and its one-byte ACK, checked with SIOCOUTQ. */
#include "handoff_peer.h"
#include "../basic/error_text.h"
#include "handoff.h"
#include "../basic/unix_socket.h"
#include "../receive/fd_message.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* Copies the path of one /proc/PID/cgroup line ("ID:CONTROLLERS:PATH") into out. */
static void cgroup_line_path(const char *line, size_t len, char *out, size_t size)
{
	const char *first = memchr(line, ':', len);
	const char *second =
	    first ? memchr(first + 1, ':', len - (size_t)(first + 1 - line)) : NULL;

	if (!second)
		return;
	const char *path = second + 1;
	size_t n = len - (size_t)(path - line);
	if (n == 0)
		return;
	if (n >= size)
		n = size - 1;
	memcpy(out, path, n);
	out[n] = '\0';
}

/* The cgroup of pid into out ("?" if it cannot be read: gone, or not in our pid
 * namespace): the first path naming kubepods (the pod, on a kubelet node, whichever
 * hierarchy carries it), else the cgroup v2 "0::" path, else the first line's. */
static void peer_cgroup(pid_t pid, char *out, size_t size)
{
	char path[64], buf[4096];
	ssize_t n = -1;

	snprintf(out, size, "?");
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	/* openat: no extra fcntl(F_SETFD) under musl, see iommufd.c's open_direct(). */
	cleanup_close int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd >= 0) {
		do
			n = read(fd, buf, sizeof(buf) - 1);
		while (n < 0 && errno == EINTR);
	}
	if (n <= 0) {
		log_debug(1, "cannot read %s: %s", path, n < 0 ? error_text(errno) : "empty");
		return;
	}
	buf[n] = '\0';
	bool have_first = false, have_unified = false;
	for (char *line = buf; *line;) {
		char *end = strchrnul(line, '\n');
		size_t len = (size_t)(end - line);
		bool unified = len >= 3 && memcmp(line, "0::", 3) == 0;
		if (memmem(line, len, "kubepods", strlen("kubepods"))) {
			cgroup_line_path(line, len, out, size);
			return;
		}
		if ((unified && !have_unified) || !have_first) {
			cgroup_line_path(line, len, out, size);
			have_unified |= unified;
			have_first = true;
		}
		line = *end ? end + 1 : end;
	}
}

void handoff_peer_identify(int fd, const char *socket_path, struct handoff_peer_identity *id)
{
	int r = unix_peer_credentials(fd, &id->cred);

	if (r < 0)
		log_warning("cannot read the credentials of a peer on %s: %s", socket_path,
			    error_text(-r));
	peer_cgroup(id->cred.pid, id->cgroup, sizeof(id->cgroup));
}

bool handoff_peer_allowed(const struct handoff_options *o, const struct handoff_peer_identity *id)
{
	if (o->allowed_uid_count == 0)
		return true;
	if (id->cred.uid == (uid_t)-1)
		return false;
	for (size_t i = 0; i < o->allowed_uid_count; i++)
		if (o->allowed_uids[i] == id->cred.uid)
			return true;
	return false;
}

int handoff_peer_send_fd(int sock, int fd)
{
	char byte = 0;
	struct fd_message m;
	ssize_t n;

	fd_message_init(&m, &byte, 1);
	fd_message_put_fd(&m, fd);
	do
		n = sendmsg(sock, &m.msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

int handoff_peer_read_ack(int sock)
{
	char buf[16];
	int unread = 0;
	ssize_t n = read(sock, buf, sizeof(buf));

	if (n < 0)
		return errno == EINTR ? -EAGAIN : -errno;
	if (n == 0)
		return -ECONNRESET;
	/* Any byte is the ACK, but only once the peer has taken our message: our unread
	 * bytes (SIOCOUTQ, unix_outq_len()) must be 0, else it answered without receiving
	 * the fd and the offer must not be consumed. */
	if (ioctl(sock, SIOCOUTQ, &unread) == 0 && unread > 0)
		return -EBADMSG;
	return 0;
}
