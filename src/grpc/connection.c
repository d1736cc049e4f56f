/* Drives an nghttp2 session from the event loop; see connection.h. The shape follows
 * nghttp2's examples/libevent-server.c: mem_recv what the socket gave; what the session
 * queues is gathered with mem_send and written with one send() per batch. */
#include "connection.h"
#include "../basic/error_text.h"
#include "../basic/stream_socket.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const state_names[] = {
    [GRPC_CONNECTION_OPEN] = "open",
    [GRPC_CONNECTION_DRAINING] = "draining",
    [GRPC_CONNECTION_LINGERING] = "lingering",
    [GRPC_CONNECTION_CLOSED] = "closed",
};

static void connection_report_closed(void *data)
{
	struct grpc_connection *conn = data;

	conn->closed(conn);
}

/* The one place the state changes: checks the transition is one the lifetime allows
 * (states only move forward) and logs it. Entering CLOSED stops watching the fd and
 * queues the closed callback. */
static void connection_set_state(struct grpc_connection *conn, enum grpc_connection_state state)
{
	if (state == conn->state)
		return;
	if (state < conn->state) {
		log_error("connection fd %d: invalid state change %s -> %s", conn->fd,
			  state_names[conn->state], state_names[state]);
		return;
	}
	log_debug(4, "connection fd %d: %s -> %s", conn->fd, state_names[conn->state],
		  state_names[state]);
	conn->state = state;
	if (state == GRPC_CONNECTION_CLOSED) {
		loop_watch_remove(conn->loop, &conn->watch);
		loop_defer(conn->loop, &conn->close_later, connection_report_closed, conn);
	}
}

bool grpc_connection_is_closed(const struct grpc_connection *conn)
{
	return conn->state == GRPC_CONNECTION_CLOSED;
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
	const struct grpc_transport *t = conn->transport;
	int r = t ? t->send_pending(t->data, conn->out, conn->out_len, &conn->out_pos)
		  : stream_send_pending(conn->fd, conn->out, conn->out_len, &conn->out_pos);

	if (r == 1)
		conn->out_pos = conn->out_len = 0;
	return r;
}

/* Sends what the session has queued; called from the loop only, never inside
 * nghttp2's callbacks. Once nothing is left to do, ends the connection: at once, or
 * after a half-close when draining. */
static void connection_flush(struct grpc_connection *conn)
{
	int r;

	if (conn->state == GRPC_CONNECTION_CLOSED || conn->state == GRPC_CONNECTION_LINGERING)
		return;
	for (;;) {
		if ((r = connection_write(conn)) <= 0)
			break;
		if ((r = connection_gather(conn)) < 0) {
			log_debug(4, "HTTP/2 send on fd %d: %s", conn->fd, nghttp2_strerror(r));
			connection_set_state(conn, GRPC_CONNECTION_CLOSED);
			return;
		}
		if (conn->out_len == 0)
			break;
	}
	if (r < 0) {
		log_debug(4, "send on fd %d: %s", conn->fd, error_text(-r));
		connection_set_state(conn, GRPC_CONNECTION_CLOSED);
		return;
	}
	bool blocked = conn->out_len > 0;
	if (!blocked && !nghttp2_session_want_write(conn->session) &&
	    !nghttp2_session_want_read(conn->session)) {
		/* Closing now could reset what the peer has not read yet (a unix socket
		 * closed with unread input): when draining, half-close and wait for its EOF. */
		if (conn->state == GRPC_CONNECTION_DRAINING && half_close_start(conn->fd) == 0)
			connection_set_state(conn, GRPC_CONNECTION_LINGERING);
		else
			connection_set_state(conn, GRPC_CONNECTION_CLOSED);
		return;
	}
	/* EPOLLOUT only while the kernel's buffer is full: otherwise it fires constantly. */
	r = loop_watch_modify(conn->loop, &conn->watch, EPOLLIN | (blocked ? EPOLLOUT : 0));
	if (r < 0) {
		log_error("cannot watch connection fd %d: %s", conn->fd, error_text(-r));
		connection_set_state(conn, GRPC_CONNECTION_CLOSED);
	}
}

/* Feeds what the socket has to the session: at most CONNECTION_READ_BATCH bytes per
 * wake-up, so one busy peer cannot hold the loop. */
#define CONNECTION_READ_BATCH ((size_t)16 * 16384)

static void connection_receive_later(void *data);

static void connection_receive(struct grpc_connection *conn)
{
	const struct grpc_transport *t = conn->transport;
	uint8_t buf[16384];

	for (size_t total = 0;;) {
		if (total >= CONNECTION_READ_BATCH) {
			if (t && t->pending(t->data))
				loop_defer(conn->loop, &conn->receive_later,
					   connection_receive_later, conn);
			break;
		}
		ssize_t n = t ? t->recv(t->data, buf, sizeof(buf))
			      : recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && !t)
			n = -errno;
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN)
			break;
		if (n <= 0) {
			if (n < 0)
				log_debug(4, "recv on fd %d: %s", conn->fd, error_text((int)-n));
			connection_set_state(conn, GRPC_CONNECTION_CLOSED);
			return;
		}
		total += (size_t)n;
		ssize_t used = nghttp2_session_mem_recv(conn->session, buf, (size_t)n);
		if (used < 0) {
			log_debug(2, "HTTP/2 error on fd %d: %s", conn->fd,
				  nghttp2_strerror((int)used));
			/* Tell the peer why (GOAWAY) if we still can, then close. */
			if (connection_gather(conn) == 0)
				(void)connection_write(conn);
			connection_set_state(conn, GRPC_CONNECTION_CLOSED);
			return;
		}
		if ((size_t)n < sizeof(buf))
			break;
	}
	connection_flush(conn);
}

static void connection_receive_later(void *data)
{
	struct grpc_connection *conn = data;

	if (conn->state == GRPC_CONNECTION_OPEN || conn->state == GRPC_CONNECTION_DRAINING)
		connection_receive(conn);
}

static void connection_io(void *data, uint32_t events)
{
	struct grpc_connection *conn = data;

	if (conn->state == GRPC_CONNECTION_LINGERING) {
		/* Only the peer's EOF is awaited: its input is of no use any more. */
		if (half_close_drain(conn->fd))
			connection_set_state(conn, GRPC_CONNECTION_CLOSED);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		connection_receive(conn);
	else
		connection_flush(conn);
}

static void connection_flush_later(void *data)
{
	connection_flush(data);
}

void grpc_connection_flush_soon(struct grpc_connection *conn)
{
	if (conn->state != GRPC_CONNECTION_CLOSED)
		loop_defer(conn->loop, &conn->flush_later, connection_flush_later, conn);
}

void grpc_connection_drain(struct grpc_connection *conn)
{
	if (conn->state != GRPC_CONNECTION_OPEN)
		return;
	nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(conn->session),
			      NGHTTP2_NO_ERROR, NULL, 0);
	connection_set_state(conn, GRPC_CONNECTION_DRAINING);
	grpc_connection_flush_soon(conn);
}

static ssize_t body_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
			 uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct grpc_body *body = source->ptr;
	size_t n = body->len - body->sent;
	(void)user_data;

	if (n > length)
		n = length;
	if (n > 0)
		memcpy(buf, body->buf + body->sent, n);
	body->sent += n;
	if (body->sent < body->len)
		return (ssize_t)n;
	body->sent = body->len = 0; /* all taken: the buffer is reused for what follows */
	if (body->open)
		return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
	if (body->end) {
		int rv = body->end(body, session, stream_id);
		if (rv != 0) {
			log_error("cannot queue trailers on stream %d: %s", stream_id,
				  nghttp2_strerror(rv));
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
		*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

nghttp2_data_provider grpc_body_provider(struct grpc_body *body)
{
	return (nghttp2_data_provider){.source.ptr = body, .read_callback = body_read};
}

int grpc_connection_init(struct grpc_connection *conn, struct loop *loop, int fd,
			 nghttp2_session *session, grpc_connection_closed_fn closed)
{
	*conn = (struct grpc_connection){
	    .loop = loop,
	    .fd = fd,
	    .session = session,
	    .closed = closed,
	    .state = GRPC_CONNECTION_OPEN,
	};
	int r = loop_watch_add(loop, &conn->watch, fd, EPOLLIN, connection_io, conn);
	if (r == 0)
		grpc_connection_flush_soon(conn); /* our SETTINGS */
	return r;
}

void grpc_connection_destroy(struct grpc_connection *conn)
{
	if (conn->state != GRPC_CONNECTION_CLOSED)
		loop_watch_remove(conn->loop, &conn->watch);
	loop_defer_cancel(conn->loop, &conn->close_later);
	loop_defer_cancel(conn->loop, &conn->flush_later);
	loop_defer_cancel(conn->loop, &conn->receive_later);
	free(conn->out);
	conn->out = NULL;
	conn->out_len = conn->out_pos = conn->out_cap = 0;
	nghttp2_session_del(conn->session);
	conn->session = NULL;
	if (conn->fd >= 0)
		close(conn->fd);
	conn->fd = -1;
}
