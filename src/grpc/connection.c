/* Drives an nghttp2 session from the event loop; see connection.h. The shape follows
 * nghttp2's examples/libevent-server.c: mem_recv what the socket gave; what the session
 * queues is gathered with mem_send and written with one send() per batch. */
#include "connection.h"
#include "../basic/error_text.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void connection_report_closed(void *data)
{
	struct grpc_connection *conn = data;

	conn->closed(conn);
}

static void connection_finish(struct grpc_connection *conn)
{
	if (conn->dead)
		return;
	conn->dead = true;
	loop_watch_remove(conn->loop, &conn->watch);
	loop_defer(conn->loop, &conn->close_later, connection_report_closed, conn);
}

/* How much nghttp2 output is gathered for one send(): a unary answer (HEADERS, DATA,
 * trailers) or a batch of stream updates leaves in one syscall, not one per frame. */
#define CONNECTION_SEND_BATCH 65536

/* Appends what nghttp2 has queued to the output buffer, up to a batch. Returns 0 or
 * an nghttp2 error. */
static int connection_gather(struct grpc_connection *conn)
{
	while (conn->out_len < CONNECTION_SEND_BATCH) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(conn->session, &data);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		if (conn->out_len + (size_t)n > conn->out_cap) {
			size_t cap = conn->out_cap ? conn->out_cap : 4096;
			while (cap < conn->out_len + (size_t)n)
				cap *= 2;
			conn->out = xrealloc(conn->out, cap);
			conn->out_cap = cap;
		}
		memcpy(conn->out + conn->out_len, data, (size_t)n);
		conn->out_len += (size_t)n;
	}
	return 0;
}

/* Writes the output buffer. Returns 1 if all of it left, 0 if the socket is full
 * (wait for EPOLLOUT), -errno on a dead peer. */
static int connection_write(struct grpc_connection *conn)
{
	while (conn->out_pos < conn->out_len) {
		ssize_t n = send(conn->fd, conn->out + conn->out_pos, conn->out_len - conn->out_pos,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		conn->out_pos += (size_t)n;
	}
	conn->out_pos = conn->out_len = 0;
	return 1;
}

void grpc_connection_flush(struct grpc_connection *conn)
{
	int r;

	if (conn->receiving || conn->dead)
		return;
	for (;;) {
		if ((r = connection_write(conn)) <= 0)
			break;
		if ((r = connection_gather(conn)) < 0) {
			log_debug(4, "HTTP/2 send on fd %d: %s", conn->fd, nghttp2_strerror(r));
			connection_finish(conn);
			return;
		}
		if (conn->out_len == 0)
			break;
	}
	if (r < 0) {
		log_debug(4, "send on fd %d: %s", conn->fd, error_text(-r));
		connection_finish(conn);
		return;
	}
	bool blocked = conn->out_len > 0;
	if (!blocked && !nghttp2_session_want_write(conn->session) &&
	    !nghttp2_session_want_read(conn->session)) {
		/* Closing now could reset what the peer has not read yet (a unix socket
		 * closed with unread input): with linger, half-close and wait for its EOF. */
		if (!conn->linger || conn->lingering) {
			if (!conn->linger)
				connection_finish(conn);
			return;
		}
		conn->lingering = true;
		if (shutdown(conn->fd, SHUT_WR) < 0) {
			connection_finish(conn);
			return;
		}
	}
	/* EPOLLOUT only while the kernel's buffer is full: otherwise it fires constantly. */
	r = loop_watch_modify(conn->loop, &conn->watch, EPOLLIN | (blocked ? EPOLLOUT : 0));
	if (r < 0) {
		log_error("cannot watch connection fd %d: %s", conn->fd, error_text(-r));
		connection_finish(conn);
	}
}

static void connection_io(void *data, uint32_t events)
{
	struct grpc_connection *conn = data;
	uint8_t buf[16384];

	if (conn->lingering) {
		/* Only the peer's EOF is awaited: its input is of no use any more. */
		for (;;) {
			ssize_t n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				return;
			if (n > 0)
				continue;
			connection_finish(conn); /* EOF or an error: done either way */
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		for (;;) {
			ssize_t n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n <= 0) {
				if (n < 0)
					log_debug(4, "recv on fd %d: %s", conn->fd,
						  error_text(errno));
				connection_finish(conn);
				return;
			}
			conn->receiving = true;
			ssize_t used = nghttp2_session_mem_recv(conn->session, buf, (size_t)n);
			conn->receiving = false;
			if (used < 0) {
				log_debug(2, "HTTP/2 error on fd %d: %s", conn->fd,
					  nghttp2_strerror((int)used));
				/* Tell the peer why (GOAWAY) if we still can, then close. */
				if (connection_gather(conn) == 0)
					(void)connection_write(conn);
				connection_finish(conn);
				return;
			}
			if ((size_t)n < sizeof(buf))
				break;
		}
	}
	grpc_connection_flush(conn);
}

static void connection_flush_later(void *data)
{
	grpc_connection_flush(data);
}

void grpc_connection_flush_soon(struct grpc_connection *conn)
{
	if (!conn->receiving && !conn->dead)
		loop_defer(conn->loop, &conn->flush_later, connection_flush_later, conn);
}

int grpc_connection_init(struct grpc_connection *conn, struct loop *loop, int fd,
			 nghttp2_session *session, grpc_connection_closed_fn closed)
{
	conn->loop = loop;
	conn->fd = fd;
	conn->session = session;
	conn->closed = closed;
	conn->receiving = false;
	conn->dead = false;
	conn->linger = conn->lingering = false;
	conn->close_later = (struct loop_defer){0};
	conn->flush_later = (struct loop_defer){0};
	conn->out = NULL;
	conn->out_len = conn->out_pos = conn->out_cap = 0;
	return loop_watch_add(loop, &conn->watch, fd, EPOLLIN, connection_io, conn);
}

void grpc_connection_destroy(struct grpc_connection *conn)
{
	loop_watch_remove(conn->loop, &conn->watch);
	loop_defer_cancel(conn->loop, &conn->close_later);
	loop_defer_cancel(conn->loop, &conn->flush_later);
	free(conn->out);
	conn->out = NULL;
	conn->out_len = conn->out_pos = conn->out_cap = 0;
	nghttp2_session_del(conn->session);
	conn->session = NULL;
	if (conn->fd >= 0)
		close(conn->fd);
	conn->fd = -1;
}
