/* Fuzz target: what consumers of a handoff socket may do, in any order: connect, read
 * the fd or not, answer before or after, hang up half or fully, stall past the ACK
 * timeout or the offer's TTL, while the device is allocated again.
 * Input: 3 bytes of options (TTL, ACK timeout, peers per offer), then one action per
 * byte: the low 3 bits pick the action, the high 5 bits its argument. */
#include "fuzz_common.h"
#include "util.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PEERS 8

struct peer {
	int fd;
	bool took; /* read the 0x00 byte (with or without the fd) */
};

struct world {
	struct loop *loop;
	struct handoff *h;
	char path[108]; /* the newest offer's socket */
	struct peer peers[MAX_PEERS];
	unsigned long long offers;
	dev_t null_rdev;
};

static void settle(struct world *w)
{
	for (int i = 0; loop_run_once(w->loop, 0) > 0; i++)
		fuzz_assert(i < 100000);
}

static void offer(struct world *w, const char *device_id)
{
	const char *path;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	fuzz_assert(fd >= 0);
	fuzz_assert(handoff_offer(w->h, device_id, fd, &path, NULL) == 0);
	fuzz_assert(strlen(path) < sizeof(w->path));
	strcpy(w->path, path);
	w->offers++;
}

static void peer_connect(struct world *w)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};

	for (int i = 0; i < MAX_PEERS; i++) {
		struct peer *p = &w->peers[i];
		if (p->fd >= 0)
			continue;
		memcpy(addr.sun_path, w->path, sizeof(w->path));
		p->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		fuzz_assert(p->fd >= 0);
		p->took = false;
		/* Fails once the offer is gone (ENOENT, ECONNREFUSED) or its backlog is full. */
		if (connect(p->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
			close(p->fd);
			p->fd = -1;
		}
		return;
	}
}

/* Reads the handoff message; with take_fd the fd must be the offered one. */
static void peer_receive(struct world *w, struct peer *p, bool take_fd)
{
	char byte = 1;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} control;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	if (take_fd) {
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
	}
	ssize_t n = recvmsg(p->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return;
	fuzz_assert(n == 1 && byte == 0);
	p->took = true;
	if (!take_fd)
		return;
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	fuzz_assert(cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS);
	fuzz_assert(cmsg->cmsg_len == CMSG_LEN(sizeof(int)));
	fuzz_assert(!CMSG_NXTHDR(&msg, cmsg));
	int fd;
	struct stat st;
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
	fuzz_assert(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == w->null_rdev);
	close(fd);
}

static void check_stats(struct world *w)
{
	const struct handoff_stats *s = handoff_stats(w->h);

	fuzz_assert(s->offered == w->offers);
	fuzz_assert(handoff_pending(w->h) == s->offered - s->consumed - s->expired - s->replaced);
	fuzz_assert(handoff_pending(w->h) <= 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct world w = {0};
	struct handoff_options o;
	struct stat st;
	unsigned long long consumers = 0; /* peers that answered after taking the message */

	if (size < 3 || size > 256)
		return 0;
	fuzz_init();
	int fds_before = fuzz_fd_count();
	fuzz_assert(stat("/dev/null", &st) == 0);
	w.null_rdev = st.st_rdev;
	for (int i = 0; i < MAX_PEERS; i++)
		w.peers[i].fd = -1;

	fuzz_assert(loop_new(&w.loop) == 0);
	handoff_options_init(&o);
	o.socket_dir = fuzz_path("handoff");
	/* Short enough that the wait action lets them expire. */
	o.ttl_usec = 200 + data[0] * 20ULL;
	o.ack_timeout_usec = 100 + data[1] * 10ULL;
	o.max_peers = 1 + data[2] % 4;
	fuzz_assert(handoff_new(w.loop, &o, &w.h) == 0);
	offer(&w, "iommufd0");

	for (size_t i = 3; i < size; i++) {
		unsigned arg = data[i] >> 3;
		struct peer *p = &w.peers[arg % MAX_PEERS];
		char byte = (char)arg;

		switch (data[i] & 7) {
		case 0:
			peer_connect(&w);
			break;
		case 1: /* the ACK, or an answer too early */
			if (p->fd >= 0 && send(p->fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1 &&
			    p->took)
				consumers++;
			break;
		case 2:
			if (p->fd >= 0)
				peer_receive(&w, p, true);
			break;
		case 3: /* the kernel closes an SCM_RIGHTS fd nobody asked for */
			if (p->fd >= 0)
				peer_receive(&w, p, false);
			break;
		case 4:
			if (p->fd >= 0)
				shutdown(p->fd, arg & 1 ? SHUT_WR : SHUT_RD);
			break;
		case 5:
			if (p->fd >= 0)
				close(p->fd);
			p->fd = -1;
			break;
		case 6: /* time passes: timers may fire */
			usleep(arg * 100);
			break;
		case 7:
			offer(&w, arg & 1 ? "iommufd1" : "iommufd0");
			break;
		}
		settle(&w);
		check_stats(&w);
		/* Only a peer that took the message and then answered consumes an offer. */
		fuzz_assert(handoff_stats(w.h)->consumed <= consumers);
	}

	for (int i = 0; i < MAX_PEERS; i++)
		if (w.peers[i].fd >= 0)
			close(w.peers[i].fd);
	settle(&w);
	check_stats(&w);
	handoff_free(w.h);
	loop_run_once(w.loop, 0);
	loop_free(w.loop);
	fuzz_assert(fuzz_fd_count() == fds_before);
	return 0;
}
