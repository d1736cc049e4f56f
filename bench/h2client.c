/* The benchmark's blocking gRPC client on nghttp2; see h2client.h. Output is
 * serialized with nghttp2_session_mem_send into one buffer and written with one
 * send(), input is read with poll()+recv() and fed to nghttp2_session_mem_recv. */
#include "h2client.h"
#include "bench.h"

#include "basic/unix_socket.h"
#include "grpc/client.h"
#include "util.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct h2c {
	int fd; /* non-blocking: every wait is a poll() bounded by timeout_ms */
	int timeout_ms;
	nghttp2_session *session;
	uint8_t *out;
	size_t out_len, out_cap;
	int framing_error; /* -errno of a bad response message, set in a callback */
	char error[256];
};

static int h2c_fail(struct h2c *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int h2c_fail(struct h2c *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	return err;
}

const char *h2c_error(const struct h2c *c)
{
	return c->error;
}

/* Splits the stream's DATA into messages and keeps a copy of the last one. */
static int stream_take_data(struct h2c *c, struct h2c_stream *s, const uint8_t *data, size_t len)
{
	const uint8_t *msg;
	size_t msg_len;
	int r = grpc_reader_append(&s->reader, data, len);

	while (r == 0 && (r = grpc_reader_next(&s->reader, &msg, &msg_len)) == 1) {
		s->msg = xrealloc(s->msg, msg_len);
		memcpy(s->msg, msg, msg_len);
		s->msg_len = msg_len;
		s->messages++;
		r = 0;
	}
	if (r < 0)
		return h2c_fail(c, r, "bad gRPC message from the plugin on stream %d: %s",
				(int)s->id, strerror(-r));
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *user_data)
{
	struct h2c *c = user_data;
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	(void)flags;

	if (!s)
		return 0;
	c->framing_error = stream_take_data(c, s, data, len);
	return c->framing_error < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	(void)flags;
	(void)user_data;

	if (s && namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
		s->status = grpc_status_parse(value, valuelen);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	(void)user_data;

	if (s) {
		s->closed = true;
		s->closed_ns = bench_now_ns();
	}
	return 0;
}

/* Waits up to the timeout for events on the socket. Returns 0 or -errno. */
static int h2c_poll(struct h2c *c, short events)
{
	struct pollfd pfd = {.fd = c->fd, .events = events};
	int r;

	do
		r = poll(&pfd, 1, c->timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return h2c_fail(c, -errno, "poll on the plugin's socket: %s", strerror(errno));
	if (r == 0)
		return h2c_fail(c, -ETIMEDOUT, "no %s from the plugin within %d ms",
				events == POLLIN ? "answer" : "room to send", c->timeout_ms);
	return 0;
}

/* Serializes everything nghttp2 has queued and writes it with one send() (more only
 * if the socket is full). */
static int h2c_flush(struct h2c *c)
{
	const uint8_t *chunk;
	ssize_t n;

	c->out_len = 0;
	while ((n = nghttp2_session_mem_send(c->session, &chunk)) > 0) {
		if (c->out_len + (size_t)n > c->out_cap) {
			c->out_cap = (c->out_len + (size_t)n) * 2;
			c->out = xrealloc(c->out, c->out_cap);
		}
		memcpy(c->out + c->out_len, chunk, (size_t)n);
		c->out_len += (size_t)n;
	}
	if (n < 0)
		return h2c_fail(c, -EPROTO, "nghttp2_session_mem_send: %s",
				nghttp2_strerror((int)n));
	for (size_t pos = 0; pos < c->out_len;) {
		ssize_t w = send(c->fd, c->out + pos, c->out_len - pos, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			int r = h2c_poll(c, POLLOUT);
			if (r < 0)
				return r;
			continue;
		}
		if (w < 0)
			return h2c_fail(c, -errno, "send to the plugin: %s", strerror(errno));
		pos += (size_t)w;
	}
	return 0;
}

/* Waits for input, feeds it to the session and sends what that queued (acks,
 * window updates). */
static int h2c_read_once(struct h2c *c)
{
	uint8_t buf[65536];

	int r = h2c_poll(c, POLLIN);
	if (r < 0)
		return r;
	ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n < 0)
		return h2c_fail(c, -errno, "recv from the plugin: %s", strerror(errno));
	if (n == 0)
		return h2c_fail(c, -ECONNRESET, "the plugin closed the connection");
	ssize_t used = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
	if (c->framing_error < 0)
		return c->framing_error; /* the message is in c->error already */
	if (used < 0)
		return h2c_fail(c, -EPROTO, "HTTP/2 error from the plugin: %s",
				nghttp2_strerror((int)used));
	return nghttp2_session_want_write(c->session) ? h2c_flush(c) : 0;
}

int h2c_start(struct h2c *c, struct h2c_stream *s, const char *path,
	      const ProtobufCMessage *request)
{
	struct grpc_body body = {0};

	body.buf = grpc_frame_pack(request, &body.len);
	s->status = -1;
	s->closed = false;
	s->messages = 0;
	int32_t id = grpc_request_submit(c->session, path, &body, s);
	int r = id < 0 ? h2c_fail(c, -EIO, "cannot start %s: %s", path, nghttp2_strerror(id))
		       : h2c_flush(c);
	/* A unix socket takes a small request whole: nghttp2 has read all of body now. */
	if (r == 0 && body.len != 0)
		r = h2c_fail(c, -EIO, "request for %s not sent whole", path);
	free(body.buf);
	s->id = id;
	return r;
}

int h2c_wait_messages(struct h2c *c, struct h2c_stream *s, size_t min_messages)
{
	while (s->messages < min_messages && !s->closed) {
		int r = h2c_read_once(c);
		if (r < 0)
			return r;
	}
	return 0;
}

int h2c_wait_closed(struct h2c *c, struct h2c_stream *s)
{
	while (!s->closed) {
		int r = h2c_read_once(c);
		if (r < 0)
			return r;
	}
	return 0;
}

int h2c_cancel(struct h2c *c, struct h2c_stream *s)
{
	if (s->closed)
		return 0;
	int rv = nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
	if (rv != 0)
		return h2c_fail(c, -EIO, "nghttp2_submit_rst_stream on stream %d: %s", (int)s->id,
				nghttp2_strerror(rv));
	return h2c_flush(c);
}

void h2c_stream_reset(struct h2c_stream *s)
{
	free(s->msg);
	grpc_reader_free(&s->reader);
	memset(s, 0, sizeof(*s));
}

int h2c_connect(const char *path, int timeout_ms, struct h2c **out)
{
	int fd = unix_socket_connect(path);
	if (fd < 0)
		return fd;
	struct h2c *c = xcalloc(1, sizeof(*c));
	nghttp2_session_callbacks *callbacks;
	if (nghttp2_session_callbacks_new(&callbacks) != 0)
		abort(); /* only on out-of-memory */
	c->fd = fd;
	c->timeout_ms = timeout_ms;
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
	int rv = nghttp2_session_client_new(&c->session, callbacks, c);
	nghttp2_session_callbacks_del(callbacks);
	if (rv != 0)
		abort(); /* only on out-of-memory */
	nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, NULL, 0);
	/* The preface and SETTINGS go out with the first request. */
	*out = c;
	return 0;
}

void h2c_free(struct h2c *c)
{
	if (!c)
		return;
	nghttp2_session_del(c->session);
	close(c->fd);
	free(c->out);
	free(c);
}
