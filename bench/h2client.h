/* The benchmark's gRPC client: blocking, one unix socket, nghttp2 directly, so the
 * timed calls cost the client as little as possible and a stream can be cancelled
 * with RST_STREAM (the kubelet's way of ending ListAndWatch). Frames queued together
 * leave in one send(), as grpc-go's writer does. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h2c;

/* One call. Zero it, then h2c_start(). The last complete response message is kept
 * (msg/msg_len, owned by the stream until h2c_stream_reset). */
struct h2c_stream {
	int32_t id;
	size_t messages; /* complete response messages seen */
	uint8_t *msg;	 /* the last of them */
	size_t msg_len;
	uint8_t *partial; /* bytes of a message not complete yet */
	size_t partial_len, partial_cap;
	int status;  /* grpc-status, -1 until it arrives */
	bool closed; /* the stream ended (trailers, RST_STREAM or connection loss) */
	uint32_t error_code;
	unsigned long long closed_ns; /* monotonic time the end was seen */
};

/* Connects to the unix socket at path; every later wait gives up after timeout_ms.
 * Returns 0 or -errno (socket, connect). */
int h2c_connect(const char *path, int timeout_ms, struct h2c **out);
void h2c_free(struct h2c *c);

/* Starts a call of method path with request and sends it (one send()). Returns 0 or
 * -errno (-EIO: nghttp2 refused the request). */
int h2c_start(struct h2c *c, struct h2c_stream *s, const char *path,
	      const ProtobufCMessage *request);
/* Reads and processes input until s has min_messages messages or has ended.
 * Returns 0, -ETIMEDOUT, -ECONNRESET (peer closed) or -EPROTO (HTTP/2 error). */
int h2c_wait_messages(struct h2c *c, struct h2c_stream *s, size_t min_messages);
/* Reads until s has ended. Returns 0 or as h2c_wait_messages. */
int h2c_wait_closed(struct h2c *c, struct h2c_stream *s);
/* Cancels s with RST_STREAM(CANCEL) and sends it now. Returns 0 or -errno. */
int h2c_cancel(struct h2c *c, struct h2c_stream *s);
/* Frees what s holds; s can be started again. */
void h2c_stream_reset(struct h2c_stream *s);

/* The last error, for messages. */
const char *h2c_error(const struct h2c *c);

unsigned long long bench_now_ns(void);
