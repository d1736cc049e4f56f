/* Drives an nghttp2 session from the event loop; see connection.h. The shape follows
 * nghttp2's examples/libevent-server.c: mem_recv what the socket gave, session_send
 * when writable. */
#include "connection.h"
#include "../log.h"

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

ssize_t grpc_connection_send_callback(nghttp2_session *session, const uint8_t *data, size_t length,
				      int flags, void *user_data)
{
	struct grpc_connection *conn = user_data;
	(void)session;
	(void)flags;

	ssize_t n = send(conn->fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EINTR)
		return NGHTTP2_ERR_WOULDBLOCK;
	log_debug(4, "send on fd %d: %s", conn->fd, strerror(errno));
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

void grpc_connection_flush(struct grpc_connection *conn)
{
	if (conn->receiving || conn->dead)
		return;
	int rv = nghttp2_session_send(conn->session);
	if (rv != 0) {
		log_debug(4, "HTTP/2 send on fd %d: %s", conn->fd, nghttp2_strerror(rv));
		connection_finish(conn);
		return;
	}
	bool want_write = nghttp2_session_want_write(conn->session);
	if (!want_write && !nghttp2_session_want_read(conn->session)) {
		connection_finish(conn);
		return;
	}
	/* EPOLLOUT only while the kernel's buffer is full: otherwise it fires constantly. */
	int r = loop_watch_modify(conn->loop, &conn->watch, EPOLLIN | (want_write ? EPOLLOUT : 0));
	if (r < 0) {
		log_error("cannot watch connection fd %d: %s", conn->fd, strerror(-r));
		connection_finish(conn);
	}
}

static void connection_io(void *data, uint32_t events)
{
	struct grpc_connection *conn = data;
	uint8_t buf[16384];

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
						  strerror(errno));
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
				(void)nghttp2_session_send(conn->session);
				connection_finish(conn);
				return;
			}
			if ((size_t)n < sizeof(buf))
				break;
		}
	}
	grpc_connection_flush(conn);
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
	conn->close_later = (struct loop_defer){0};
	return loop_watch_add(loop, &conn->watch, fd, EPOLLIN, connection_io, conn);
}

void grpc_connection_destroy(struct grpc_connection *conn)
{
	loop_watch_remove(conn->loop, &conn->watch);
	loop_defer_cancel(conn->loop, &conn->close_later);
	nghttp2_session_del(conn->session);
	conn->session = NULL;
	if (conn->fd >= 0)
		close(conn->fd);
	conn->fd = -1;
}
