/* The benchmark's blocking gRPC client on nghttp2; see h2client.h. Output is
 * serialized with nghttp2_session_mem_send into one buffer and written with one
 * send(), input is read with poll()+recv() and fed to nghttp2_session_mem_recv. */
#include "h2client.h"
#include "basic/unix_socket.h"
#include "grpc/connection.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct h2c {
	int fd;
	int timeout_ms;
	nghttp2_session *session;
	uint8_t *out;
	size_t out_len, out_cap;
	char error[256];
};

/* The request being sent: nghttp2 pulls it through the data provider. */
struct h2c_request {
	uint8_t *data;
	size_t len, pos;
};

unsigned long long bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static void *bench_xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	if (!q) {
		fputs("plugin-bench: out of memory\n", stderr);
		abort();
	}
	return q;
}

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

static void stream_take_data(struct h2c_stream *s, const uint8_t *data, size_t len)
{
	if (s->partial_len + len > s->partial_cap) {
		s->partial_cap = (s->partial_len + len) * 2;
		s->partial = bench_xrealloc(s->partial, s->partial_cap);
	}
	memcpy(s->partial + s->partial_len, data, len);
	s->partial_len += len;
	for (;;) {
		if (s->partial_len < 5)
			return;
		size_t n = (size_t)s->partial[1] << 24 | (size_t)s->partial[2] << 16 |
			   (size_t)s->partial[3] << 8 | s->partial[4];
		if (s->partial_len < 5 + n)
			return;
		s->msg = bench_xrealloc(s->msg, n);
		memcpy(s->msg, s->partial + 5, n);
		s->msg_len = n;
		s->messages++;
		memmove(s->partial, s->partial + 5 + n, s->partial_len - 5 - n);
		s->partial_len -= 5 + n;
	}
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	(void)flags;
	(void)user_data;

	if (s)
		stream_take_data(s, data, len);
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	(void)flags;
	(void)user_data;
	(void)valuelen;

	if (s && namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
		s->status = atoi((const char *)value); /* nghttp2 NUL-terminates values */
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct h2c_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
	(void)user_data;

	if (s) {
		s->closed = true;
		s->error_code = error_code;
		s->closed_ns = bench_now_ns();
	}
	return 0;
}

/* Serializes everything nghttp2 has queued and writes it with one send(). */
static int h2c_flush(struct h2c *c)
{
	const uint8_t *chunk;
	ssize_t n;

	c->out_len = 0;
	while ((n = nghttp2_session_mem_send(c->session, &chunk)) > 0) {
		if (c->out_len + (size_t)n > c->out_cap) {
			c->out_cap = (c->out_len + (size_t)n) * 2;
			c->out = bench_xrealloc(c->out, c->out_cap);
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
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

	int r = poll(&pfd, 1, c->timeout_ms);
	if (r < 0 && errno == EINTR)
		return 0;
	if (r < 0)
		return h2c_fail(c, -errno, "poll: %s", strerror(errno));
	if (r == 0)
		return h2c_fail(c, -ETIMEDOUT, "no answer from the plugin within %d ms",
				c->timeout_ms);
	ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0)
		return h2c_fail(c, -errno, "recv from the plugin: %s", strerror(errno));
	if (n == 0)
		return h2c_fail(c, -ECONNRESET, "the plugin closed the connection");
	ssize_t used = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
	if (used < 0)
		return h2c_fail(c, -EPROTO, "HTTP/2 error from the plugin: %s",
				nghttp2_strerror((int)used));
	return nghttp2_session_want_write(c->session) ? h2c_flush(c) : 0;
}

static ssize_t read_request(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			    size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			    void *user_data)
{
	struct h2c_request *req = source->ptr;
	size_t n = req->len - req->pos;
	(void)session;
	(void)stream_id;
	(void)user_data;

	if (n > length)
		n = length;
	memcpy(buf, req->data + req->pos, n);
	req->pos += n;
	if (req->pos == req->len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

int h2c_start(struct h2c *c, struct h2c_stream *s, const char *path,
	      const ProtobufCMessage *request)
{
	size_t len = protobuf_c_message_get_packed_size(request);
	uint8_t stack[1024];
	struct h2c_request req = {.data = len + 5 <= sizeof(stack) ? stack : malloc(len + 5),
				  .len = len + 5};

	if (!req.data)
		abort();
	req.data[0] = 0;
	req.data[1] = (uint8_t)(len >> 24);
	req.data[2] = (uint8_t)(len >> 16);
	req.data[3] = (uint8_t)(len >> 8);
	req.data[4] = (uint8_t)len;
	protobuf_c_message_pack(request, req.data + 5);

	nghttp2_nv headers[] = {
	    GRPC_NV(":method", "POST"),
	    GRPC_NV(":scheme", "http"),
	    GRPC_NV(":path", path),
	    GRPC_NV(":authority", "localhost"),
	    GRPC_NV("te", "trailers"),
	    GRPC_NV("content-type", "application/grpc"),
	    GRPC_NV("user-agent", "plugin-bench"),
	};
	nghttp2_data_provider provider = {.source.ptr = &req, .read_callback = read_request};
	s->status = -1;
	s->closed = false;
	s->messages = 0;
	int32_t id = nghttp2_submit_request(c->session, NULL, headers,
					    sizeof(headers) / sizeof(headers[0]), &provider, s);
	int r = id < 0 ? h2c_fail(c, -EIO, "nghttp2_submit_request: %s", nghttp2_strerror(id))
		       : h2c_flush(c);
	/* A unix socket takes a small request whole: the provider is drained now. */
	if (r == 0 && req.pos != req.len)
		r = h2c_fail(c, -EIO, "request for %s not sent whole", path);
	if (req.data != stack)
		free(req.data);
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
		return h2c_fail(c, -EIO, "nghttp2_submit_rst_stream: %s", nghttp2_strerror(rv));
	return h2c_flush(c);
}

void h2c_stream_reset(struct h2c_stream *s)
{
	free(s->msg);
	free(s->partial);
	memset(s, 0, sizeof(*s));
}

int h2c_connect(const char *path, int timeout_ms, struct h2c **out)
{
	struct sockaddr_un addr;

	if (unix_address(&addr, path) < 0)
		return -ENAMETOOLONG;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	struct h2c *c = calloc(1, sizeof(*c));
	nghttp2_session_callbacks *callbacks;
	if (!c || nghttp2_session_callbacks_new(&callbacks) != 0)
		abort();
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
