/* One message of the handoff protocol (docs/protocol.md) as sendmsg/recvmsg take it:
 * one iovec for the data byte and a control buffer for SCM_RIGHTS. The plugin sends
 * with it and the consumer receives with it, so it uses libc only, as src/receive. */
#pragma once

#include <string.h>
#include <sys/socket.h>

/* Room for more fds than the protocol sends, so a misbehaving sender's extra fds
 * arrive (and get closed) instead of being dropped silently with MSG_CTRUNC. */
#define FD_MESSAGE_MAX_FDS 16

struct fd_message {
	struct msghdr msg;
	struct iovec iov;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * FD_MESSAGE_MAX_FDS)];
	} control;
};

/**
 * fd_message_init() - a message over @data with an empty control buffer
 * @m:    the message; it points into itself, so it must not be copied after this
 * @data: the data bytes to send, or the buffer to receive them in
 * @size: their number
 *
 * The control buffer is the whole room, for recvmsg(); fd_message_put_fd() shrinks
 * it to the one fd it carries, for sendmsg().
 */
static inline void fd_message_init(struct fd_message *m, void *data, size_t size)
{
	memset(m, 0, sizeof(*m));
	m->iov.iov_base = data;
	m->iov.iov_len = size;
	m->msg.msg_iov = &m->iov;
	m->msg.msg_iovlen = 1;
	m->msg.msg_control = m->control.buf;
	m->msg.msg_controllen = sizeof(m->control.buf);
}

/**
 * fd_message_put_fd() - carry one fd in SCM_RIGHTS
 * @m:  a message from fd_message_init()
 * @fd: the fd (still the caller's: sendmsg() passes a duplicate)
 */
static inline void fd_message_put_fd(struct fd_message *m, int fd)
{
	m->msg.msg_controllen = CMSG_SPACE(sizeof(int));
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&m->msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
}
